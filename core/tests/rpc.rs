//! The RPC engine on the mock machine: migrating and switching calls, the
//! choice between them, sidetracks, lends, and every bad input.

mod support;

use support::{CALL_PC, STACK, Server, System};
use tern_core::abi::{Call, Error, LEND_MAX, LEND_WRITABLE, MESSAGE_MAX, MessageHeader, NO_RIGHT, POOL_STACK_MIN};
use tern_core::capability::Capability;
use tern_core::domain::DomainId;
use tern_core::kernel::Next;
use tern_core::lend::LentAccess;
use tern_core::mock::MockSwitch;
use tern_core::scheduler::RunNext;
use tern_core::thread::{Route, ThreadState};

/// A client domain, a server with a pool of `pool`, the client's name for
/// the server's port, and the boot thread in an upcall into the client.
fn client_and_server(pool: usize) -> (System, DomainId, Server, u32) {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", pool, STACK);
    let name = system.grant(&server, client);
    system.enter(client);
    (system, client, server, name)
}

#[test]
fn a_migrating_call_copies_the_request_once_onto_the_activation_and_the_reply_once_back() {
    let (mut system, client, server, name) = client_and_server(1);
    let thread = system.boot;
    let base = system.top(thread);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    // What the sender leaves in the header's length and reserved words is
    // not looked at: the kernel stamps them.
    let length =
        system.write(request, MessageHeader { label: 7, right: NO_RIGHT, length: 999, reserved: 0xdead }, &[5; 32]);
    system.current_frame().context.x[19] = 0x1919;
    let activation = system.pool_head(&server);
    let stack_top = system.activation(activation).stack_top;

    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);

    assert_eq!(system.kernel.current(), thread, "the same thread runs on, in the server");
    let entered = system.frame(thread).context;
    let message = entered.x[0];
    assert_eq!(entered.pc, server.entry);
    assert_eq!(message, (stack_top - length) & !15, "the request is on the activation's stack");
    assert_eq!(entered.sp, message);
    assert_eq!(entered.x[1], length);
    assert_eq!(entered.x[19], 0, "none of the client's registers cross");
    assert_eq!(system.header(message), MessageHeader { label: 7, right: NO_RIGHT, length: 32, reserved: 0 });
    assert_eq!(system.kernel.machine.peek(message + 16, 32), [5; 32]);
    assert_eq!(system.chain(thread), [activation, base]);
    assert_eq!(system.activation(activation).occupant, Some(thread));
    assert_eq!(system.pool_free(&server), 0);
    assert_eq!(system.kernel.machine.view, system.view(server.domain));
    assert_eq!(system.statistics().migrated, 1);
    assert_eq!(system.statistics().payload_copies, 1, "one copy of the request");

    let answer = system.region(server.domain) + 0x1000;
    let reply_length =
        system.write(answer, MessageHeader { label: 9, right: NO_RIGHT, length: 0, reserved: 3 }, &[1, 2, 3, 4]);
    assert_eq!(system.ok(Call::Return, &[answer, reply_length]), Ok(20));

    let back = system.frame(thread).context;
    assert_eq!(back.pc, CALL_PC, "back in the client, after its call");
    assert_eq!(back.x[19], 0x1919, "the client's registers come back");
    assert_eq!(system.header(reply), MessageHeader { label: 9, right: NO_RIGHT, length: 4, reserved: 0 });
    assert_eq!(system.kernel.machine.peek(reply + 16, 4), [1, 2, 3, 4]);
    assert_eq!(system.chain(thread), [base]);
    assert_eq!(system.activation(activation).occupant, None);
    assert_eq!(system.pool_free(&server), 1, "the activation is back in its pool");
    assert_eq!(system.kernel.machine.view, system.view(client));
    assert_eq!(system.statistics().migrated, 1);
    assert_eq!(system.statistics().payload_copies, 2, "one copy each way");
}

#[test]
fn a_header_alone_is_not_counted_as_a_payload_copy() {
    let (mut system, client, server, name) = client_and_server(1);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 16)), Next::Resume);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 2, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert_eq!(system.header(reply).label, 2);
    assert_eq!(system.statistics().payload_copies, 0);
    assert_eq!(system.statistics().migrated, 1);
}

#[test]
fn a_right_carried_by_a_request_is_granted_under_the_servers_own_name() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let other = system.server("other", 0, STACK);
    let name = system.grant(&server, client);
    let carried = system.grant(&other, client);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.write(request, MessageHeader { label: 1, right: carried, length: 8, reserved: 0 }, &[0; 8]);
    assert_eq!(system.kernel.domain(server.domain).unwrap().space.name_of(other.port), None);

    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);

    let message = system.current_frame().context.x[0];
    let granted = system.header(message).right;
    assert_ne!(granted, NO_RIGHT);
    assert_eq!(
        system.kernel.domain(server.domain).unwrap().space.lookup(granted),
        Some(Capability { port: other.port, receive: false }),
        "the header names the port in the server's space, as a send right"
    );
}

#[test]
fn a_nested_call_makes_a_chain_of_three_that_unwinds_in_order() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let c = system.server("c", 1, STACK);
    let a_to_b = system.grant(&b, a);
    let b_to_c = system.grant(&c, b.domain);
    let thread = system.boot;
    let base = system.enter(a);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(a_to_b, (request, length), (reply, 64)), Next::Resume);
    let in_b = system.top(thread);

    // B's activation calls C, from further on in B's code.
    let (b_request, b_reply) = (system.region(b.domain) + 0x1000, system.region(b.domain) + 0x2000);
    let b_length = system.message(b_request, 2, &[2; 8]);
    system.current_frame().context.pc = b.entry + 0x40;
    assert_eq!(system.call(b_to_c, (b_request, b_length), (b_reply, 64)), Next::Resume);
    let in_c = system.top(thread);

    assert_eq!(system.chain(thread), [in_c, in_b, base]);
    assert_eq!(system.activation(in_c).caller, Some(in_b));
    assert_eq!(system.current_frame().context.pc, c.entry);
    assert_eq!(system.kernel.machine.view, system.view(c.domain));
    assert_eq!(system.statistics().longest_chain, 3);
    assert_eq!(system.statistics().migrated, 2);

    // C returns into B.
    let c_answer = system.region(c.domain) + 0x1000;
    let c_length = system.message(c_answer, 3, &[3; 4]);
    assert_eq!(system.ok(Call::Return, &[c_answer, c_length]), Ok(20));
    assert_eq!(system.current_frame().context.pc, b.entry + 0x40, "back in B, after its call");
    assert_eq!(system.chain(thread), [in_b, base]);
    assert_eq!(system.kernel.machine.view, system.view(b.domain));
    assert_eq!(system.header(b_reply).label, 3);
    assert_eq!(system.kernel.machine.peek(b_reply + 16, 4), [3; 4]);
    assert_eq!(system.header(reply).label, 0, "nothing reached A yet");

    // B returns into A.
    let b_answer = system.region(b.domain) + 0x3000;
    let b_answer_length = system.message(b_answer, 4, &[4; 2]);
    assert_eq!(system.ok(Call::Return, &[b_answer, b_answer_length]), Ok(18));
    assert_eq!(system.current_frame().context.pc, CALL_PC, "back in A");
    assert_eq!(system.chain(thread), [base]);
    assert_eq!(system.kernel.machine.view, system.view(a));
    assert_eq!(system.header(reply).label, 4);
    assert_eq!(system.kernel.machine.peek(reply + 16, 2), [4; 2]);
    assert_eq!((system.pool_free(&b), system.pool_free(&c)), (1, 1));
    assert_eq!(system.statistics().longest_chain, 3, "the longest chain is remembered");
}

#[test]
fn a_switching_call_hands_off_to_a_receiving_thread_and_reply_receive_hands_back() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    let worker = system.thread(server.domain, 0);
    let buffer = system.region(server.domain) + 0x1000;

    // The server thread waits in Receive.
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    assert_eq!(system.state(worker), ThreadState::Receiving(server.port));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().receivers_head, Some(worker));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().server_threads, 1);
    assert!(
        matches!(system.kernel.run_next(), RunNext::Switch(MockSwitch { from, to, .. }) if from == worker && to == boot)
    );

    // The client calls: the request goes straight into the worker's buffer.
    let base = system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 7, &[7; 24]);
    let next = system.call(name, (request, length), (reply, 64));
    assert_eq!(next, Next::Switch(MockSwitch { from: boot, to: worker, view: system.view(server.domain) }));
    assert_eq!(system.kernel.current(), worker);
    assert_eq!(system.state(boot), ThreadState::WaitingForReply);
    assert_eq!(system.state(worker), ThreadState::Running);
    assert_eq!(system.result(worker), Ok(40), "the worker's Receive returns the request's length");
    assert_eq!(system.header(buffer), MessageHeader::new(7, 24));
    assert_eq!(system.kernel.machine.peek(buffer + 16, 24), [7; 24]);
    assert_eq!(system.kernel.objects.port(server.port).unwrap().receivers_head, None);
    assert_eq!(system.statistics().handed_off, 1);
    assert_eq!(system.statistics().migrated, 0);
    assert_eq!(system.statistics().payload_copies, 1);

    // The worker replies and waits again: the processor goes straight back.
    let answer = system.region(server.domain) + 0x2000;
    let answer_length = system.message(answer, 8, &[8; 10]);
    let next = system.invoke(Call::ReplyReceive, &[answer, answer_length, server.name as u64, buffer, 256]);
    assert_eq!(next, Next::Switch(MockSwitch { from: worker, to: boot, view: system.view(client) }));
    assert_eq!(system.kernel.current(), boot);
    assert_eq!(system.result(boot), Ok(26), "the client's Call returns the reply's length");
    assert_eq!(system.frame(boot).context.pc, CALL_PC);
    assert_eq!(system.header(reply), MessageHeader::new(8, 10));
    assert_eq!(system.kernel.machine.peek(reply + 16, 10), [8; 10]);
    assert_eq!(system.chain(boot), [base]);
    assert_eq!(system.state(worker), ThreadState::Receiving(server.port), "the worker receives again");
    assert_eq!(system.kernel.objects.port(server.port).unwrap().receivers_head, Some(worker));
    assert_eq!(system.kernel.objects.thread(worker).unwrap().serving, None);
    assert_eq!(system.statistics().payload_copies, 2);
}

#[test]
fn a_switching_request_too_large_for_the_receivers_buffer_is_refused_with_nothing_changed() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 32]), Next::Block);
    system.switch_to(system.boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 7, &[7; 24]);
    let before = system.snapshot();
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::BadMessage));
    system.assert_unchanged(&before, "a request larger than the receive buffer");
}

#[test]
fn clients_queue_behind_a_busy_server_thread_and_are_served_in_turn() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    let worker = system.thread(server.domain, 0);
    let second = system.thread(client, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert!(matches!(system.call(name, (request, length), (reply, 64)), Next::Switch(_)));

    // While the worker serves the boot thread, a second client queues.
    system.switch_to(second);
    let (request2, reply2) = (system.region(client) + 0x3000, system.region(client) + 0x4000);
    let length2 = system.message(request2, 2, &[2; 12]);
    assert_eq!(system.call(name, (request2, length2), (reply2, 64)), Next::Block);
    assert_eq!(system.state(second), ThreadState::WaitingForReceiver(server.port));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().queued, 1);
    assert_eq!(system.statistics().queued, 1);

    // The worker replies to the first and takes the second's request at once.
    system.switch_to(worker);
    let answer = system.region(server.domain) + 0x2000;
    let answer_length = system.message(answer, 10, &[10; 2]);
    let next = system.invoke(Call::ReplyReceive, &[answer, answer_length, server.name as u64, buffer, 256]);
    assert_eq!(next, Next::Resume, "the worker goes on with the queued request");
    assert_eq!(system.result(worker), Ok(length2 as usize));
    assert_eq!(system.header(buffer).label, 2);
    assert_eq!(system.kernel.machine.peek(buffer + 16, 12), [2; 12]);
    assert_eq!(system.result(boot), Ok(18), "the first client has its reply");
    assert_eq!(system.header(reply).label, 10);
    assert_eq!(system.state(boot), ThreadState::Ready);
    assert_eq!(system.state(second), ThreadState::WaitingForReply);
    assert_eq!(system.kernel.objects.port(server.port).unwrap().queued, 0);
}

#[test]
fn with_the_pool_busy_a_call_hands_off_to_a_receiving_server_thread() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    let worker = system.thread(server.domain, 0);
    let second = system.thread(client, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume, "the pool first");
    assert_eq!(system.statistics().migrated, 1);
    assert_eq!(system.pool_free(&server), 0);

    system.switch_to(second);
    let (request2, reply2) = (system.region(client) + 0x3000, system.region(client) + 0x4000);
    let length2 = system.message(request2, 2, &[2; 8]);
    let next = system.call(name, (request2, length2), (reply2, 64));
    assert_eq!(next, Next::Switch(MockSwitch { from: second, to: worker, view: system.view(server.domain) }));
    assert_eq!(system.result(worker), Ok(length2 as usize));
    assert_eq!(system.header(buffer).label, 2);
    assert_eq!(system.state(second), ThreadState::WaitingForReply);
    assert_eq!(system.statistics().handed_off, 1);
    assert_eq!(system.statistics().migrated, 1);
}

#[test]
fn with_the_pool_busy_and_no_server_thread_a_caller_waits_and_migrates_once_woken() {
    let (mut system, client, server, name) = client_and_server(1);
    let boot = system.boot;
    let second = system.thread(client, 0);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let activation = system.top(boot);

    system.switch_to(second);
    let second_base = system.top(second);
    let (request2, reply2) = (system.region(client) + 0x3000, system.region(client) + 0x4000);
    let length2 = system.message(request2, 2, &[2; 8]);
    assert_eq!(system.call(name, (request2, length2), (reply2, 64)), Next::BlockThenRepeat);
    assert_eq!(system.state(second), ThreadState::WaitingForActivation(server.port));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().waiting, 1);
    assert_eq!(system.statistics().waited, 1);
    assert_eq!(system.chain(second), [second_base]);

    // The first call returns: the waiter is woken.
    system.switch_to(boot);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 3, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert_eq!(system.state(second), ThreadState::Ready);
    assert_eq!(system.kernel.objects.port(server.port).unwrap().waiting, 0);

    // It makes the same call again, and migrates.
    system.switch_to(second);
    assert!(!system.kernel.take_interrupted());
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.chain(second), [activation, second_base]);
    assert_eq!(system.current_frame().context.pc, server.entry);
    assert_eq!(system.delivered().label, 2);
    assert_eq!(system.statistics().migrated, 2);
}

#[test]
fn a_caller_waiting_for_a_terminated_servers_pool_retries_and_finds_the_port_dead() {
    let (mut system, client, server, name) = client_and_server(1);
    let second = system.thread(client, 0);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    system.switch_to(second);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::BlockThenRepeat);
    system.kernel.terminate_domain(server.domain);
    assert_eq!(system.state(second), ThreadState::Ready);
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::PortDead));
}

/// A client, a server with a pool of `pool` and a sidetrack activation;
/// the boot thread in the client.
fn with_sidetrack(pool: usize) -> (System, DomainId, Server, u32, u64) {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", pool, STACK);
    let name = system.grant(&server, client);
    let sidetrack_entry = server.entry + 0x800;
    let arguments = [server.name as u64, sidetrack_entry, STACK];
    assert_eq!(system.as_domain(server.domain, Call::SidetrackSet, &arguments), Ok(0));
    system.enter(client);
    (system, client, server, name, sidetrack_entry)
}

#[test]
fn taking_a_pools_last_activation_first_makes_a_sidetrack_upcall_then_the_call_is_made_again() {
    let (mut system, client, server, name, sidetrack_entry) = with_sidetrack(2);
    let sidetrack = system.kernel.objects.port(server.port).unwrap().sidetrack.unwrap();
    let second = system.thread(client, 0);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.statistics().sidetracks, 0, "two free: no sidetrack");
    assert_eq!(system.pool_free(&server), 1);

    // The second call would take the last activation: a sidetrack first.
    system.switch_to(second);
    let base = system.top(second);
    let (request2, reply2) = (system.region(client) + 0x3000, system.region(client) + 0x4000);
    let length2 = system.message(request2, 2, &[2; 8]);
    system.current_frame().context.pc = 0x8_9004;
    assert_eq!(system.call(name, (request2, length2), (reply2, 64)), Next::Resume);
    let upcall = system.current_frame().context;
    assert_eq!(system.chain(second), [sidetrack, base]);
    assert_eq!(upcall.pc, sidetrack_entry);
    assert_eq!(upcall.x[0], server.port.get() as u64, "x0: the port");
    assert_eq!(upcall.x[1], 1, "x1: the free count");
    assert_eq!(upcall.sp, system.activation(sidetrack).stack_top);
    assert_eq!(system.statistics().sidetracks, 1);
    assert_eq!(system.statistics().migrated, 1);
    assert_eq!(system.pool_free(&server), 1, "the sidetrack activation is not the pool's");

    // The server grows its pool from the sidetrack, and returns.
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 2, server.entry, STACK]), Ok(3));
    assert_eq!(system.invoke(Call::Return, &[0, 0]), Next::Resume);
    let back = system.current_frame().context;
    assert_eq!(back.pc, 0x8_9000, "the client's svc is made again");
    assert_eq!(back.x[8], Call::Call as u64);
    assert_eq!(back.x[..5], [name as u64, request2, length2, reply2, 64], "with its arguments");
    assert_eq!(system.chain(second), [base]);
    assert_eq!(system.activation(sidetrack).occupant, None);
    assert_eq!(system.kernel.objects.thread(second).unwrap().sidetracked, Some(server.port));
    assert_eq!(system.pool_free(&server), 3, "the sidetrack activation stays out of the pool");

    // The processor makes the call again: it migrates.
    system.current_frame().context.pc += 4;
    assert_eq!(system.repeat(), Next::Resume);
    let top = system.top(second);
    assert_ne!(top, sidetrack);
    assert_eq!(system.activation(top).port, Some(server.port));
    assert_eq!(system.current_frame().context.pc, server.entry);
    assert_eq!(system.delivered().label, 2);
    assert_eq!(system.statistics().migrated, 2);
    assert_eq!(system.statistics().sidetracks, 1);
    assert_eq!(system.kernel.objects.thread(second).unwrap().sidetracked, None);
}

#[test]
fn after_a_sidetrack_the_repeated_call_takes_the_last_activation_without_another() {
    let (mut system, client, server, name, _) = with_sidetrack(1);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    let last = system.pool_head(&server);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.statistics().sidetracks, 1);
    assert_eq!(system.invoke(Call::Return, &[0, 0]), Next::Resume);
    assert_eq!(system.current_frame().context.pc, CALL_PC - 4);
    system.current_frame().context.pc += 4;
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.top(system.boot), last);
    assert_eq!(system.statistics().sidetracks, 1);
    assert_eq!(system.pool_free(&server), 0);
}

// ---------------------------------------------------------------------
// Bad input: each error with nothing delivered or changed.

/// The call in the current frame fails with `error`, leaving everything
/// as it was.
fn assert_refused(system: &mut System, arguments: &[u64], call: Call, error: Error) {
    let before = system.snapshot();
    assert_eq!(system.invoke(call, arguments), Next::Resume, "{call:?} answers at once");
    assert_eq!(system.current_frame().result(), Err(error));
    system.assert_unchanged(&before, error.name());
}

/// A client and a server (pool of 1), a request and a reply buffer in the
/// client: (system, client, server, name, request, length, reply).
fn ready() -> (System, DomainId, Server, u32, u64, u64, u64) {
    let (mut system, client, server, name) = client_and_server(1);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    (system, client, server, name, request, length, reply)
}

#[test]
fn a_call_on_an_unknown_port_name_is_no_such_port() {
    let (mut system, _, _, _, request, length, reply) = ready();
    assert_refused(&mut system, &[99, request, length, reply, 64], Call::Call, Error::NoSuchPort);
}

#[test]
fn a_request_outside_the_callers_memory_is_a_bad_address() {
    let (mut system, _, server, name, _, length, reply) = ready();
    let theirs = system.region(server.domain) + 0x1000;
    system.message(theirs, 1, &[1; 8]);
    assert_refused(&mut system, &[name as u64, theirs, length, reply, 64], Call::Call, Error::BadAddress);
    assert_refused(&mut system, &[name as u64, 0x1000, length, reply, 64], Call::Call, Error::BadAddress);
    assert_refused(&mut system, &[name as u64, u64::MAX - 8, length, reply, 64], Call::Call, Error::BadAddress);
}

#[test]
fn a_request_shorter_than_a_header_or_longer_than_the_maximum_is_a_bad_message() {
    let (mut system, _, _, name, request, _, reply) = ready();
    let short = MessageHeader::SIZE as u64 - 1;
    assert_refused(&mut system, &[name as u64, request, short, reply, 64], Call::Call, Error::BadMessage);
    let long = MESSAGE_MAX as u64 + 1;
    assert_refused(&mut system, &[name as u64, request, long, reply, 64], Call::Call, Error::BadMessage);
}

#[test]
fn a_reply_buffer_the_caller_may_not_write_is_a_bad_address() {
    let (mut system, _, server, name, request, length, _) = ready();
    let image = support::IMAGE.start + 0x100;
    assert_refused(&mut system, &[name as u64, request, length, image, 64], Call::Call, Error::BadAddress);
    let theirs = system.region(server.domain) + 0x2000;
    assert_refused(&mut system, &[name as u64, request, length, theirs, 64], Call::Call, Error::BadAddress);
}

#[test]
fn a_right_the_caller_does_not_hold_is_no_right() {
    let (mut system, _, _, name, request, _, reply) = ready();
    let length = system.write(request, MessageHeader { label: 1, right: 77, length: 8, reserved: 0 }, &[1; 8]);
    assert_refused(&mut system, &[name as u64, request, length, reply, 64], Call::Call, Error::NoRight);
}

#[test]
fn a_pool_activation_stack_smaller_than_any_request_needs_is_refused() {
    // With every pool stack large enough for the largest request and the
    // margin below it, no path (general, fast, merged) has to check: the
    // fast path used not to, and a small stack's reply area overwrote the
    // server's other stacks.
    let mut system = System::new();
    let server = system.server("server", 0, STACK);
    let main = system.enter(server.domain);
    let floor = system.kernel.domain(server.domain).unwrap().stack_floor;
    for small in [4096, POOL_STACK_MIN as u64 - 16] {
        let refused = system.ok(Call::PoolAdd, &[server.name as u64, 1, server.entry, small]);
        assert_eq!(refused, Err(Error::InvalidArgument), "{small}");
    }
    assert_eq!(system.kernel.domain(server.domain).unwrap().stack_floor, floor, "nothing carved");
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 1, server.entry, POOL_STACK_MIN as u64]), Ok(1));
    system.leave(main);
}

#[test]
fn a_port_name_wider_than_a_name_is_no_such_port() {
    let (mut system, _, _, name, request, length, reply) = ready();
    for wide in [(1u64 << 32) | name as u64, u64::MAX] {
        assert_refused(&mut system, &[wide, request, length, reply, 64], Call::Call, Error::NoSuchPort);
    }
}

#[test]
fn a_call_to_a_terminated_servers_port_is_port_dead() {
    let (mut system, _, server, name, request, length, reply) = ready();
    system.kernel.terminate_domain(server.domain);
    assert_eq!(system.kernel.objects.route(server.port), Route::Dead);
    assert_refused(&mut system, &[name as u64, request, length, reply, 64], Call::Call, Error::PortDead);
}

#[test]
fn a_lend_of_nothing_or_more_than_the_maximum_is_an_invalid_argument() {
    let (mut system, client, _, name, request, length, reply) = ready();
    let lent = system.region(client) + 0x8000;
    for bad in [0, LEND_MAX as u64 + 1, LEND_WRITABLE as u64] {
        let arguments = [name as u64, request, length, reply, 64, lent, bad];
        assert_refused(&mut system, &arguments, Call::CallLending, Error::InvalidArgument);
    }
}

#[test]
fn a_lend_of_memory_the_client_does_not_own_is_a_bad_address() {
    let (mut system, _, server, name, request, length, reply) = ready();
    let theirs = system.region(server.domain) + 0x8000;
    let arguments = [name as u64, request, length, reply, 64, theirs, 0x100];
    assert_refused(&mut system, &arguments, Call::CallLending, Error::BadAddress);
}

#[test]
fn lending_to_a_port_served_only_by_threads_is_cannot_lend() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(system.boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    let lent = system.region(client) + 0x8000;
    let arguments = [name as u64, request, length, reply, 64, lent, 0x100];
    assert_refused(&mut system, &arguments, Call::CallLending, Error::CannotLend);
    assert_eq!(system.state(worker), ThreadState::Receiving(server.port), "the worker still waits");
}

#[test]
fn a_reply_too_large_for_the_clients_buffer_is_reply_too_large_to_the_client() {
    let (mut system, client, server, name, request, length, reply) = ready();
    let base = system.top(system.boot);
    assert_eq!(system.call(name, (request, length), (reply, 20)), Next::Resume);
    let answer = system.region(server.domain) + 0x1000;
    let answer_length = system.message(answer, 9, &[9; 32]);
    assert_eq!(system.ok(Call::Return, &[answer, answer_length]), Err(Error::ReplyTooLarge));
    assert_eq!(system.current_frame().context.pc, CALL_PC, "the client has control back");
    assert_eq!(system.kernel.machine.peek(reply, 64), [0; 64], "nothing of the reply was written");
    assert_eq!(system.statistics().payload_copies, 1, "only the request was copied");
    assert_eq!(system.chain(system.boot), [base]);
    assert_eq!(system.pool_free(&server), 1);
    assert_eq!(system.kernel.machine.view, system.view(client));
}

#[test]
fn a_bad_reply_is_the_clients_error() {
    let (mut system, client, server, name, request, length, reply) = ready();
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let not_the_servers = system.region(client) + 0x3000;
    assert_eq!(system.ok(Call::Return, &[not_the_servers, 16]), Err(Error::BadAddress));
    assert_eq!(system.kernel.machine.peek(reply, 64), [0; 64]);
    assert_eq!(system.pool_free(&server), 1);
}

#[test]
fn return_from_a_threads_own_activation_is_not_in_call() {
    let (mut system, client, _, _, _, _, _) = ready();
    let answer = system.region(client) + 0x3000;
    system.message(answer, 1, &[]);
    assert_refused(&mut system, &[answer, 16], Call::Return, Error::NotInCall);
}

#[test]
fn receive_without_the_receive_right_is_no_right() {
    let (mut system, client, _, name, _, _, _) = ready();
    let buffer = system.region(client) + 0x3000;
    assert_refused(&mut system, &[name as u64, buffer, 64], Call::Receive, Error::NoRight);
    assert_refused(&mut system, &[55, buffer, 64], Call::Receive, Error::NoSuchPort);
}

#[test]
fn reply_receive_with_nothing_to_reply_to_is_not_in_call() {
    let (mut system, _, server, _, _, _, _) = ready();
    let boot = system.boot;
    let base = system.top(boot);
    system.kernel.leave_domain(base);
    system.enter(server.domain);
    let (answer, buffer) = (system.region(server.domain) + 0x1000, system.region(server.domain) + 0x2000);
    system.message(answer, 1, &[]);
    let arguments = [answer, 16, server.name as u64, buffer, 64];
    assert_refused(&mut system, &arguments, Call::ReplyReceive, Error::NotInCall);
    assert_eq!(system.state(boot), ThreadState::Running, "it did not become a receiver");
}

#[test]
fn an_unknown_call_number_is_no_such_call() {
    let (mut system, _, _, _, _, _, _) = ready();
    let before = system.snapshot();
    assert_eq!(system.invoke_number(99, &[]), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::NoSuchCall));
    system.assert_unchanged(&before, "an unknown call");
}

// ---------------------------------------------------------------------
// Lends.

#[test]
fn a_lend_maps_the_covering_pages_into_a_protected_server_for_the_call_only() {
    let (mut system, client, server, name, request, length, reply) = ready();
    let view = system.view(server.domain);
    let lent = system.region(client) + 0x8800;
    let arguments = [name as u64, request, length, reply, 64, lent, 0x1000];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    let pages = [lent & !0xfff, (lent & !0xfff) + 0x1000];
    let mapped: Vec<_> = system.kernel.machine.lent.iter().map(|(&key, &access)| (key, access)).collect();
    assert_eq!(mapped, [((view, pages[0]), LentAccess::ReadOnly), ((view, pages[1]), LentAccess::ReadOnly)]);
    let entered = system.current_frame().context;
    assert_eq!((entered.x[4], entered.x[5]), (lent, 0x1000), "the server is told what it was lent");
    assert_eq!(system.statistics().lends_mapped, 1);
    assert_eq!(system.kernel.machine.asid_flushes, 0);

    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert!(system.kernel.machine.lent.is_empty(), "unmapped when the call ends");
    assert_eq!(system.kernel.machine.asid_flushes, 1);
}

#[test]
fn a_writable_lend_maps_its_pages_read_write() {
    let (mut system, client, server, name, request, length, reply) = ready();
    let view = system.view(server.domain);
    let lent = system.region(client) + 0x8000;
    let arguments = [name as u64, request, length, reply, 64, lent, 0x10 | LEND_WRITABLE as u64];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    assert_eq!(system.kernel.machine.lent.get(&(view, lent)), Some(&LentAccess::ReadWrite));
    assert_eq!(system.kernel.machine.lent.len(), 1);
    assert_eq!(system.current_frame().context.x[5], 0x10 | LEND_WRITABLE as u64);
}

#[test]
fn two_lends_of_one_page_in_flight_share_it_until_the_last_ends() {
    let (mut system, client, server, name) = client_and_server(2);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    let boot = system.boot;
    let view = system.view(server.domain);
    let page = system.region(client) + 0x8000;
    let second = system.thread(client, 0);

    let arguments = [name as u64, request, length, reply, 64, page + 0x10, 0x100];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    assert_eq!(system.kernel.machine.lent.get(&(view, page)), Some(&LentAccess::ReadOnly));

    system.switch_to(second);
    let reply2 = system.region(client) + 0x4000;
    let arguments = [name as u64, request, length, reply2, 64, page + 0x400, 0x100 | LEND_WRITABLE as u64];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    assert_eq!(system.kernel.machine.lent.get(&(view, page)), Some(&LentAccess::ReadWrite), "shared, now writable");
    assert_eq!(system.kernel.machine.lent.len(), 1);
    assert_eq!(system.statistics().lends_mapped, 2);

    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert_eq!(system.kernel.machine.lent.get(&(view, page)), Some(&LentAccess::ReadOnly), "still lent, read-only");

    system.switch_to(boot);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert!(system.kernel.machine.lent.is_empty(), "the last lend's end unmaps it");
    assert_eq!(system.kernel.machine.asid_flushes, 1);
}

#[test]
fn a_lend_to_the_callers_own_domain_maps_nothing() {
    let mut system = System::new();
    let server = system.server("server", 1, STACK);
    system.enter(server.domain);
    let (request, reply) = (system.region(server.domain) + 0x1000, system.region(server.domain) + 0x2000);
    let length = system.message(request, 1, &[]);
    let lent = system.region(server.domain) + 0x8000;
    let arguments = [server.name as u64, request, length, reply, 64, lent, 0x100];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    assert!(system.kernel.machine.lent.is_empty());
    assert_eq!(system.statistics().lends_mapped, 0);
    assert_eq!(system.current_frame().context.x[4], lent, "the server still gets the region's registers");
}

// ---------------------------------------------------------------------
// Faults.

#[test]
fn a_fault_in_a_server_activation_unwinds_the_call_with_call_aborted() {
    let (mut system, client, server, name, request, length, reply) = ready();
    let boot = system.boot;
    let base = system.top(boot);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let frame = system.frames.get_mut(&boot).unwrap();
    let fault = system.kernel.fault(frame).expect("a domain's fault");
    assert_eq!((fault.domain, fault.unwound), (server.domain, true));
    assert_eq!(system.current_frame().result(), Err(Error::CallAborted));
    assert_eq!(system.current_frame().context.pc, CALL_PC, "back in the client");
    assert_eq!(system.chain(boot), [base]);
    assert_eq!(system.kernel.machine.view, system.view(client));
    assert!(!system.kernel.domain(server.domain).unwrap().alive);
    // Nothing of it is left: the activation the fault was in went, and
    // the port with it.
    assert!(system.kernel.objects.activation_ids().all(|a| system.activation(a).domain != server.domain));
    assert!(system.kernel.objects.port(server.port).is_none());
    // Its name is dead.
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::PortDead));
}

#[test]
fn a_switching_client_whose_server_thread_faults_gets_call_aborted() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    let worker = system.thread(server.domain, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert!(matches!(system.call(name, (request, length), (reply, 64)), Next::Switch(_)));
    assert_eq!(system.state(boot), ThreadState::WaitingForReply);

    // The server thread faults while it handles the request: its upcall ends.
    let frame = system.frames.get_mut(&worker).unwrap();
    let fault = system.kernel.fault(frame).expect("a domain's fault");
    assert_eq!((fault.domain, fault.unwound), (server.domain, false));
    system.kernel.end_current_thread(0);

    // Nobody will ever reply: the client must not wait for ever.
    assert_eq!(system.state(boot), ThreadState::Ready, "the client is woken");
    assert_eq!(system.result(boot), Err(Error::CallAborted));
}

#[test]
fn a_terminated_domain_runs_no_more_code_its_other_threads_end() {
    let mut system = System::new();
    let server = system.server("server", 0, STACK);
    let (faulty, waiting) = (system.thread(server.domain, 4), system.thread(server.domain, 4));
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(waiting);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    // Another thread of the domain faults: the whole domain is terminated,
    // and the thread waiting in it is taken out of it at once.
    system.switch_to(faulty);
    let frame = system.frames.get_mut(&faulty).unwrap();
    assert!(system.kernel.fault(frame).is_some());
    assert!(system.chain(waiting).is_empty(), "its activation is gone");
    assert_eq!(system.state(waiting), ThreadState::Ready, "woken to end");
    system.kernel.end_current_thread(usize::MAX);
    system.switch_to(waiting);
    assert_eq!(system.way_back(true), tern_core::control::WayBack::End, "it ends instead of running the domain");
}

#[test]
fn a_server_thread_leaving_its_port_is_no_longer_counted() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 4);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    assert_eq!(system.kernel.objects.port(server.port).unwrap().server_threads, 1);
    // An alert ends its receive: it has left the port.
    system.switch_to(system.boot);
    let own = system.top(worker);
    system.enter(server.domain);
    assert_eq!(system.ok(Call::Alert, &[own.get() as u64]), Ok(1));
    assert_eq!(system.result(worker), Err(Error::Interrupted));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().server_threads, 0, "uncounted");
    // A caller now waits for a server instead of queueing for a thread
    // that will never come.
    let boot = system.boot;
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::BlockThenRepeat);
    assert_eq!(system.state(boot), ThreadState::WaitingForActivation(server.port));
}

#[test]
fn clients_queued_for_a_server_thread_that_ends_make_their_calls_again() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 4);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    // The first client is handed off; a second queues behind it.
    let first = system.thread(client, 4);
    let second = system.thread(client, 4);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    system.switch_to(first);
    assert!(matches!(system.call(name, (request, length), (reply, 64)), Next::Switch(_)));
    system.switch_to(second);
    assert_eq!(system.call(name, (request, length), (reply + 0x100, 64)), Next::Block);
    assert_eq!(system.state(second), ThreadState::WaitingForReceiver(server.port));
    let pc = system.frame(second).context.pc;
    // The server thread ends: the first gets CallAborted, the second makes
    // its call again (its frame aims at the call, its arguments intact).
    system.switch_to(worker);
    system.kernel.end_current_thread(0);
    assert_eq!(system.result(first), Err(Error::CallAborted));
    assert_eq!(system.state(second), ThreadState::Ready);
    assert_eq!(system.frame(second).context.pc, pc - 4, "the call is made again");
    assert_eq!(system.frame(second).context.x[0], name as u64);
    assert_eq!(system.kernel.objects.port(server.port).unwrap().queued, 0);
}

// ---------------------------------------------------------------------
// Threads.

#[test]
fn a_join_waits_for_the_thread_to_end_and_returns_its_result() {
    let mut system = System::new();
    let a = system.domain("a");
    let boot = system.boot;
    system.enter(a);
    let worker = system.thread(a, 0);
    assert_eq!(system.invoke(Call::ThreadJoin, &[worker.get() as u64]), Next::BlockThenRepeat);
    assert_eq!(system.state(boot), ThreadState::Joining(worker));
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Exit, &[42]), Next::ExitUpcall(42));
    system.kernel.end_current_thread(42);
    assert_eq!(system.state(boot), ThreadState::Ready);
    system.switch_to(boot);
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.current_frame().result(), Ok(42));
}

#[test]
fn exit_from_a_server_activation_is_not_in_call() {
    let (mut system, _, _, name, request, length, reply) = ready();
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let before = system.snapshot();
    assert_eq!(system.invoke(Call::Exit, &[0]), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::NotInCall));
    system.assert_unchanged(&before, "Exit from a server activation");
}

// ---------------------------------------------------------------------
// Memory for stacks: all or nothing.

#[test]
fn a_pool_that_does_not_fit_is_out_of_memory_with_nothing_carved() {
    let mut system = System::new();
    let server = system.server("server", 1, STACK);
    let main = system.enter(server.domain);
    let floor = system.kernel.domain(server.domain).unwrap().stack_floor;
    // 64 stacks of 64 KiB (4 MiB) do not fit in what is left of the
    // region's 4 MiB of stacks: refused before the first is carved.
    let refused = system.ok(Call::PoolAdd, &[server.name as u64, 64, server.entry, STACK]);
    assert_eq!(refused, Err(Error::OutOfMemory));
    assert_eq!(system.kernel.domain(server.domain).unwrap().stack_floor, floor, "no stack carved");
    assert_eq!(system.pool_free(&server), 1, "the pool is as it was");
    // The same for a thread whose stack does not fit.
    let refused = system.ok(Call::ThreadCreate, &[support::THREAD_ENTRY as u64, 0, 1, 4 << 20]);
    assert_eq!(refused, Err(Error::OutOfMemory));
    assert_eq!(system.kernel.domain(server.domain).unwrap().stack_floor, floor);
    // What fits is carved.
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 2, server.entry, STACK]), Ok(3));
    assert_eq!(system.kernel.domain(server.domain).unwrap().stack_floor, floor - 2 * STACK);
    system.leave(main);
}

#[test]
fn a_thread_whose_kernel_stack_cannot_be_made_carves_no_user_stack() {
    let mut system = System::new();
    let a = system.domain("a");
    let main = system.enter(a);
    let floor = system.kernel.domain(a).unwrap().stack_floor;
    system.kernel.machine.stacks_left = Some(0);
    assert_eq!(system.ok(Call::ThreadCreate, &[support::THREAD_ENTRY as u64, 0, 1, STACK]), Err(Error::OutOfMemory));
    assert_eq!(system.kernel.domain(a).unwrap().stack_floor, floor, "no user stack carved for a thread never made");
    system.leave(main);
}

#[test]
fn a_switching_client_whose_domain_dies_while_served_ends_and_the_reply_goes_nowhere() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 4);
    let caller = system.thread(client, 4);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(caller);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 7, &[7; 24]);
    assert!(matches!(system.call(name, (request, length), (reply, 64)), Next::Switch(_)));
    assert_eq!(system.kernel.current(), worker);
    assert_eq!(system.state(caller), ThreadState::WaitingForReply);
    // The client's domain dies while the server thread works on its call.
    system.kernel.terminate_domain(client);
    assert!(system.chain(caller).is_empty());
    assert_eq!(system.state(caller), ThreadState::Ready, "woken to end, not waiting for ever");
    assert_eq!(system.kernel.objects.thread(worker).unwrap().serving, None);
    // The reply has nowhere to go: refused, nothing written.
    let answer = system.region(server.domain) + 0x2000;
    let answer_length = system.message(answer, 8, &[8; 10]);
    let refused = system.ok(Call::ReplyReceive, &[answer, answer_length, server.name as u64, buffer, 256]);
    assert_eq!(refused, Err(Error::NotInCall));
    assert_eq!(system.kernel.machine.peek(reply, 16), [0; 16], "nothing written into the dead client's memory");
}
