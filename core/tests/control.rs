//! Activation control on the mock machine: alerts across calls, threads
//! split by termination, splice-out, suspension and the way back, CPU
//! state, and accounting by domain.

mod support;

use support::{STACK, Server, System};
use tern_core::abi::{Call, DomainMode, Error, STATE_BYTES};
use tern_core::control::WayBack;
use tern_core::domain::DomainId;
use tern_core::kernel::Next;
use tern_core::machine::Start;
use tern_core::thread::{ActivationId, ThreadId, ThreadState};

/// Where a created thread in A makes its call into B.
const A_CALL_PC: u64 = 0x8_a004;

/// A thread of domain A in a chain A → B → C (B and C servers with pools
/// of one), preempted up in C; the boot thread runs, in no domain.
struct Deep {
    system: System,
    a: DomainId,
    b: Server,
    c: Server,
    thread: ThreadId,
    /// The chain, bottom first: A's activation, B's, C's.
    chain: [ActivationId; 3],
}

/// A thread of domain `a` calls `b` (its frame at [`A_CALL_PC`]), and
/// stays there: its activations, bottom first.
fn call_into(system: &mut System, a: DomainId, b: &Server, thread: ThreadId) -> [ActivationId; 2] {
    let name = system.grant(b, a);
    system.switch_to(thread);
    let base = system.top(thread);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    system.current_frame().context.pc = A_CALL_PC;
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    [base, system.top(thread)]
}

fn three_deep() -> Deep {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let c = system.server("c", 1, STACK);
    let thread = system.thread(a, 5);
    let [in_a, in_b] = call_into(&mut system, a, &b, thread);
    let b_to_c = system.grant(&c, b.domain);
    let (request, reply) = (system.region(b.domain) + 0x1000, system.region(b.domain) + 0x2000);
    let length = system.message(request, 2, &[2; 8]);
    system.current_frame().context.pc = b.entry + 0x40;
    assert_eq!(system.call(b_to_c, (request, length), (reply, 64)), Next::Resume);
    let in_c = system.top(thread);
    assert_eq!(system.chain(thread), [in_c, in_b, in_a]);
    system.switch_to(system.boot);
    Deep { system, a, b, c, thread, chain: [in_a, in_b, in_c] }
}

fn number(activation: ActivationId) -> u64 {
    activation.get() as u64
}

// ---------------------------------------------------------------------
// Alerts.

#[test]
fn an_alert_goes_up_the_chain_and_waits_at_the_first_activation_that_blocks_alerts() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [in_a, in_b] = call_into(&mut system, a, &b, thread);
    assert!(system.activation(in_b).control.alerts_blocked, "a server activation starts with alerts blocked");

    // Another thread of A alerts the client's activation.
    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Ok(2), "it reached A's activation and B's");
    system.leave(controller);
    assert!(system.activation(in_a).control.alert_pending);
    assert!(system.activation(in_b).control.alert_pending, "held at B, which blocks alerts");

    // Up in B the alert is not seen until B opens alerts.
    system.switch_to(thread);
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(0));
    assert_eq!(system.ok(Call::AlertsBlock, &[0]), Ok(1), "they were blocked");
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(1), "opened: the alert is seen, and taken");
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(0), "taken once");
}

#[test]
fn an_alert_held_at_a_blocking_activation_never_reaches_the_one_above_it() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    let controller = system.enter(deep.a);
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Ok(2));
    system.leave(controller);
    assert!(!system.activation(in_c).control.alert_pending, "C is above B, which holds it");

    system.switch_to(deep.thread);
    assert_eq!(system.ok(Call::AlertsBlock, &[0]), Ok(1));
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(0), "C has nothing to see");
    // C returns; B still holds the alert and sees it once it opens alerts.
    let answer = system.region(deep.c.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert_eq!(system.top(deep.thread), in_b);
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(0));
    assert_eq!(system.ok(Call::AlertsBlock, &[0]), Ok(1));
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(1));
}

#[test]
fn opening_alerts_below_passes_a_held_alert_on_up() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    // C opens alerts first (it is the top).
    system.switch_to(deep.thread);
    assert_eq!(system.ok(Call::AlertsBlock, &[0]), Ok(1));
    system.switch_to(system.boot);
    let controller = system.enter(deep.a);
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Ok(2), "held at B");
    system.leave(controller);
    assert!(!system.activation(in_c).control.alert_pending);
    // B opens alerts (as the kernel would on its behalf): the alert goes on up to C.
    assert!(system.kernel.objects.set_alerts_blocked(in_b, false));
    assert!(system.activation(in_c).control.alert_pending);
    system.switch_to(deep.thread);
    assert_eq!(system.ok(Call::TestAlert, &[]), Ok(1), "C sees it");
}

#[test]
fn an_alert_reaching_an_open_server_goes_on_to_the_first_that_blocks() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    system.kernel.objects.set_alerts_blocked(in_b, false);
    let controller = system.enter(deep.a);
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Ok(3), "A, B (open) and C (blocks)");
    system.leave(controller);
    assert!(system.activation(in_b).control.alert_pending && system.activation(in_c).control.alert_pending);
}

#[test]
fn only_the_activations_own_domain_may_alert_it() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, _, _] = deep.chain;
    let controller = system.enter(deep.b.domain);
    let before = system.snapshot();
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Err(Error::NoRight));
    system.assert_unchanged(&before, "an alert from another domain");
    assert_eq!(system.ok(Call::Alert, &[0]), Err(Error::NoSuchActivation));
    assert_eq!(system.ok(Call::Alert, &[9999]), Err(Error::NoSuchActivation));
    system.leave(controller);
}

#[test]
fn an_alert_ends_a_sleep_with_interrupted() {
    let mut system = System::new();
    let a = system.domain("a");
    let sleeper = system.thread(a, 5);
    system.switch_to(sleeper);
    let own = system.top(sleeper);
    assert_eq!(system.invoke(Call::Sleep, &[1_000_000]), Next::Block);
    assert!(matches!(system.state(sleeper), ThreadState::Sleeping(_)));

    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Alert, &[number(own)]), Ok(1));
    assert_eq!(system.state(sleeper), ThreadState::Ready);
    assert_eq!(system.result(sleeper), Err(Error::Interrupted));
    assert!(!system.activation(own).control.alert_pending, "the Interrupted took the alert");
    system.leave(controller);
    system.switch_to(sleeper);
    assert!(system.kernel.take_interrupted());
}

#[test]
fn a_sleep_ends_at_the_tick_after_its_time() {
    let mut system = System::new();
    let a = system.domain("a");
    let sleeper = system.thread(a, 5);
    system.switch_to(sleeper);
    assert_eq!(system.invoke(Call::Sleep, &[100]), Next::Block);
    system.switch_to(system.boot);
    system.kernel.machine.clock += 99;
    system.kernel.tick();
    assert!(matches!(system.state(sleeper), ThreadState::Sleeping(_)));
    system.kernel.machine.clock += 1;
    system.kernel.tick();
    assert_eq!(system.state(sleeper), ThreadState::Ready);
    assert_eq!(system.result(sleeper), Ok(0));
}

#[test]
fn an_alert_ends_a_receive_with_interrupted() {
    let mut system = System::new();
    let server = system.server("server", 0, STACK);
    let worker = system.thread(server.domain, 5);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    let own = system.top(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 64]), Next::Block);

    system.switch_to(system.boot);
    let controller = system.enter(server.domain);
    assert_eq!(system.ok(Call::Alert, &[number(own)]), Ok(1));
    system.leave(controller);
    assert_eq!(system.state(worker), ThreadState::Ready);
    assert_eq!(system.result(worker), Err(Error::Interrupted));
    assert_eq!(system.kernel.objects.port(server.port).unwrap().receivers_head, None, "no longer a receiver");
}

#[test]
fn an_alert_ends_a_wait_for_an_activation_with_interrupted() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    let waiter = system.thread(a, 5);
    // The boot thread takes the only activation.
    system.enter(a);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    system.switch_to(waiter);
    let own = system.top(waiter);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::BlockThenRepeat);

    // A third thread of A alerts the waiter.
    let third = system.thread(a, 5);
    system.switch_to(third);
    assert_eq!(system.ok(Call::Alert, &[number(own)]), Ok(1));
    assert_eq!(system.state(waiter), ThreadState::Ready);
    assert_eq!(system.kernel.objects.port(b.port).unwrap().waiting, 0);
    system.switch_to(waiter);
    assert!(system.kernel.take_interrupted(), "the call is not to be made again");
    assert_eq!(system.current_frame().result(), Err(Error::Interrupted));
}

#[test]
fn an_alert_held_by_a_server_does_not_end_its_sleep() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [in_a, in_b] = call_into(&mut system, a, &b, thread);
    system.switch_to(thread);
    assert_eq!(system.invoke(Call::Sleep, &[1_000_000]), Next::Block);
    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Alert, &[number(in_a)]), Ok(2));
    system.leave(controller);
    assert!(matches!(system.state(thread), ThreadState::Sleeping(_)), "B blocks alerts: it sleeps on");
    assert!(system.activation(in_b).control.alert_pending);
}

// ---------------------------------------------------------------------
// Termination.

#[test]
fn terminating_the_middle_activation_splits_the_thread() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    let thread = deep.thread;
    let threads = system.kernel.objects.thread_count();
    let controller = system.enter(deep.b.domain);
    assert_eq!(system.ok(Call::Terminate, &[number(in_b)]), Ok(0));
    system.leave(controller);

    assert_eq!(system.statistics().splits, 1);
    assert_eq!(system.kernel.objects.thread_count(), threads + 1);
    let lower = system.activation(in_a).occupant.expect("A's activation is on a thread");
    assert_ne!(lower, thread, "the lower part is on a new thread");
    assert_eq!(system.chain(lower), [in_a]);
    assert_eq!(system.chain(thread), [in_c], "the old thread keeps the upper part");
    assert_eq!(system.activation(in_c).caller, None);
    assert!(system.activation(in_c).control.alert_pending, "the part above is alerted");
    assert_eq!(system.activation(in_b).occupant, None);
    assert_eq!(system.pool_free(&deep.b), 1, "the terminated activation is back in its pool");
    assert_eq!(system.state(lower), ThreadState::Ready);
    assert_eq!(system.kernel.objects.thread(lower).unwrap().priority, 5);
    assert_eq!(system.kernel.objects.thread(thread).unwrap().base_moved_to, Some(lower));

    // The new thread resumes A with Terminated as its call's result.
    system.switch_to(lower);
    match system.kernel.thread_start() {
        Some(Start::Resume(target, registers)) => {
            assert_eq!(registers.x[0], Error::Terminated as u64);
            assert_eq!(registers.x[1], 0);
            assert_eq!(registers.pc, A_CALL_PC, "after A's call");
            assert_eq!(target.view, system.view(deep.a));
        }
        other => panic!("a split thread resumes, not {other:?}"),
    }
    assert_eq!(system.current_frame().result(), Err(Error::Terminated));
    assert_eq!(system.kernel.machine.view, system.view(deep.a));

    // The upper part finishes: C's return has nobody to go back to, and
    // the thread ends.
    system.switch_to(thread);
    let answer = system.region(deep.c.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.invoke(Call::Return, &[answer, 16]), Next::EndThread(0));
    assert_eq!(system.pool_free(&deep.c), 1);
    assert!(system.chain(thread).is_empty());
    system.kernel.end_current_thread(0);
    assert_eq!(system.state(thread), ThreadState::Ended(0));
}

#[test]
fn a_split_without_a_kernel_stack_is_out_of_memory_with_nothing_changed() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [_, in_b, _] = deep.chain;
    let controller = system.enter(deep.b.domain);
    system.kernel.machine.stacks_left = Some(0);
    let before = system.snapshot();
    assert_eq!(system.invoke(Call::Terminate, &[number(in_b)]), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::OutOfMemory));
    system.assert_unchanged(&before, "a termination with no stack for the split");
    system.leave(controller);
    assert_eq!(system.chain(deep.thread), [deep.chain[2], deep.chain[1], deep.chain[0]]);
}

#[test]
fn only_the_activations_own_domain_may_terminate_it() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [_, in_b, _] = deep.chain;
    let controller = system.enter(deep.a);
    let before = system.snapshot();
    assert_eq!(system.invoke(Call::Terminate, &[number(in_b)]), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::NoRight));
    system.assert_unchanged(&before, "a termination from another domain");
    system.leave(controller);
}

#[test]
fn the_boot_thread_is_not_reachable_by_any_control_call() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    system.enter(a);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let in_b = system.top(system.boot);
    let before = system.snapshot();
    for call in [Call::Terminate, Call::SpliceOut, Call::AlertBreak, Call::Alert, Call::Suspend, Call::Resume] {
        assert_eq!(system.invoke(call, &[number(in_b)]), Next::Resume);
        assert_eq!(system.current_frame().result(), Err(Error::NoRight), "{call:?}");
    }
    assert_eq!(system.ok(Call::SetPriority, &[number(in_b), 3]), Err(Error::NoRight));
    system.assert_unchanged(&before, "controlling an activation of the boot thread");
    // A domain started on the boot thread splicing itself out would end
    // the kernel's own thread: refused too.
    let answer = system.region(b.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    let own = system.ok(Call::ActivationSelf, &[]).unwrap() as u64;
    assert_eq!(system.ok(Call::SpliceOut, &[own]), Err(Error::NoRight));
    assert_eq!(system.chain(system.boot).len(), 1, "still in its activation");
}

#[test]
fn terminating_a_server_activation_takes_back_what_was_lent_to_it() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    let lent = system.region(a) + 0x8000;
    let arguments = [name as u64, request, length, reply, 64, lent, 0x100];
    assert_eq!(system.invoke(Call::CallLending, &arguments), Next::Resume);
    let in_b = system.top(thread);
    assert_eq!(system.kernel.machine.lent.len(), 1);
    system.switch_to(system.boot);
    let controller = system.enter(b.domain);
    assert_eq!(system.ok(Call::Terminate, &[number(in_b)]), Ok(0));
    system.leave(controller);
    assert!(system.kernel.machine.lent.is_empty());
    assert_eq!(system.activation(in_b).lent(), None);
    assert_eq!(system.pool_free(&b), 1);
}

#[test]
fn terminating_a_thread_in_a_sidetrack_keeps_the_sidetrack_activation_out_of_the_pool() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    let arguments = [b.name as u64, b.entry + 0x800, STACK];
    assert_eq!(system.as_domain(b.domain, Call::SidetrackSet, &arguments), Ok(0));
    let sidetrack = system.kernel.objects.port(b.port).unwrap().sidetrack.unwrap();
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.top(thread), sidetrack, "taking the last activation: a sidetrack upcall");

    system.switch_to(system.boot);
    let controller = system.enter(b.domain);
    assert_eq!(system.ok(Call::Terminate, &[number(sidetrack)]), Ok(0));
    system.leave(controller);
    assert_eq!(system.activation(sidetrack).occupant, None);
    assert_eq!(system.pool_free(&b), 1, "the pool holds its one activation, not the sidetrack's");
    assert_ne!(system.pool_head(&b), sidetrack, "the sidetrack activation is reserved, not pooled");
}

#[test]
fn alert_break_gives_the_caller_control_back_at_once_with_interrupted() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    let controller = system.enter(deep.a);
    assert_eq!(system.ok(Call::AlertBreak, &[number(in_a)]), Ok(2));
    system.leave(controller);
    let lower = system.activation(in_a).occupant.unwrap();
    assert_ne!(lower, deep.thread);
    assert_eq!(system.chain(lower), [in_a]);
    assert_eq!(system.chain(deep.thread), [in_c, in_b], "the part above carries on");
    assert_eq!(system.statistics().splits, 1);
    system.switch_to(lower);
    assert_eq!(system.current_frame().result(), Err(Error::Interrupted));
    assert_eq!(system.current_frame().context.pc, A_CALL_PC);
}

// ---------------------------------------------------------------------
// Splice-out.

#[test]
fn a_spliced_out_activation_is_unwound_only_when_the_thread_comes_back_into_it() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    let thread = deep.thread;
    let threads = system.kernel.objects.thread_count();
    let controller = system.enter(deep.b.domain);
    assert_eq!(system.ok(Call::SpliceOut, &[number(in_b)]), Ok(0));
    system.leave(controller);
    assert!(system.activation(in_b).control.spliced);
    assert!(system.activation(in_c).control.alert_pending, "the part above is alerted");
    assert_eq!(system.chain(thread), [in_c, in_b, in_a], "nothing is cut yet");
    assert_eq!(system.kernel.objects.thread_count(), threads);
    assert_eq!(system.statistics().splits, 0);

    // C goes on and returns into B: on the way back B is unwound, and A's
    // call ends Terminated.
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::Go, "up in C, the thread runs on");
    let answer = system.region(deep.c.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.invoke(Call::Return, &[answer, 16]), Next::Resume);
    assert_eq!(system.current_frame().context.pc, deep.b.entry + 0x40, "the return goes back into B");
    assert_eq!(system.way_back(true), WayBack::Go);
    assert_eq!(system.current_frame().context.pc, A_CALL_PC, "and on into A");
    assert_eq!(system.current_frame().result(), Err(Error::Terminated));
    assert_eq!(system.chain(thread), [in_a]);
    assert_eq!(system.activation(in_b).occupant, None);
    assert!(!system.activation(in_b).control.spliced, "its control state is fresh again");
    assert_eq!(system.pool_free(&deep.b), 1);
    assert_eq!(system.kernel.machine.view, system.view(deep.a));
}

// ---------------------------------------------------------------------
// Suspension, the way back, CPU state.

#[test]
fn a_suspended_activation_stops_its_thread_on_the_way_back_until_resumed() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [_, in_b] = call_into(&mut system, a, &b, thread);
    system.switch_to(system.boot);
    let controller = system.enter(b.domain);
    assert_eq!(system.ok(Call::Suspend, &[number(in_b)]), Ok(0), "it was not suspended");
    assert_eq!(system.ok(Call::Suspend, &[number(in_b)]), Ok(1), "it was");

    // The preempted thread, on its way back into B, stops.
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::Stop);
    assert_eq!(system.state(thread), ThreadState::Suspended(in_b));
    assert!(system.kernel.objects.thread(thread).unwrap().at_boundary);

    system.switch_to(system.boot);
    assert_eq!(system.ok(Call::Resume, &[number(in_b)]), Ok(1));
    system.leave(controller);
    assert_eq!(system.state(thread), ThreadState::Ready, "resumed: it may run");
    system.switch_to(thread);
    system.kernel.leave_stop();
    assert_eq!(system.way_back(false), WayBack::Go);
}

#[test]
fn a_suspended_lower_activation_lets_the_work_above_go_on_until_it_returns_into_it() {
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [_, in_b, _] = deep.chain;
    let controller = system.enter(deep.b.domain);
    assert_eq!(system.ok(Call::Suspend, &[number(in_b)]), Ok(0));
    system.leave(controller);
    system.switch_to(deep.thread);
    assert_eq!(system.way_back(false), WayBack::Go, "C runs on");
    assert_eq!(system.ok(Call::Null, &[]), Ok(0));
    assert_eq!(system.way_back(true), WayBack::Go);
    let answer = system.region(deep.c.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.invoke(Call::Return, &[answer, 16]), Next::Resume);
    assert_eq!(system.way_back(true), WayBack::Stop, "back into B: it stops");
    assert_eq!(system.state(deep.thread), ThreadState::Suspended(in_b));
}

#[test]
fn get_state_and_set_state_read_and_write_a_parked_activations_registers() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [_, in_b] = call_into(&mut system, a, &b, thread);
    let frame = system.current_frame();
    frame.context.x[19] = 0xb19;
    frame.context.pc = b.entry + 0x80;
    frame.context.pstate = 0x3c0;
    let sp = frame.context.sp;
    system.switch_to(system.boot);
    let controller = system.enter(b.domain);
    let buffer = system.region(b.domain) + 0x3000;

    assert_eq!(system.ok(Call::GetState, &[number(in_b), buffer, STATE_BYTES as u64]), Ok(STATE_BYTES));
    let mut words = system.words(buffer, 34);
    assert_eq!(words[19], 0xb19);
    assert_eq!((words[31], words[32], words[33]), (sp, b.entry + 0x80, 0x3c0));

    words[19] = 0x5e7;
    words[32] = b.entry + 0xc0;
    words[33] = 0xf000_0000 | 0x5;
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_le_bytes()).collect();
    system.kernel.machine.poke(buffer, &bytes);
    assert_eq!(system.ok(Call::SetState, &[number(in_b), buffer, STATE_BYTES as u64]), Ok(STATE_BYTES));
    let context = system.frame(thread).context;
    assert_eq!(context.x[19], 0x5e7);
    assert_eq!(context.pc, b.entry + 0xc0);
    assert_eq!(context.pstate, 0xf000_03c0, "of PSTATE only the condition flags are taken");
    system.leave(controller);
}

#[test]
fn get_state_refuses_a_short_buffer_and_the_callers_own_thread() {
    let mut system = System::new();
    let a = system.domain("a");
    let buffer = system.region(a) + 0x3000;
    let worker = system.thread(a, 5);
    system.switch_to(worker);
    let own = system.top(worker);
    let before = system.snapshot();
    assert_eq!(system.ok(Call::GetState, &[number(own), buffer, STATE_BYTES as u64]), Err(Error::InvalidArgument));
    system.assert_unchanged(&before, "GetState on its own thread");
    system.switch_to(system.boot);
    system.enter(a);
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let other = system.top(thread);
    system.switch_to(system.boot);
    assert_eq!(system.ok(Call::GetState, &[number(other), buffer, 8]), Err(Error::InvalidArgument));
}

#[test]
fn get_state_waits_until_the_thread_stops_in_the_activation() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [_, in_b] = call_into(&mut system, a, &b, thread);
    system.current_frame().context.x[19] = 0x5157;
    assert_eq!(system.invoke(Call::Sleep, &[100]), Next::Block);

    // In a kernel call it is not at a boundary: GetState holds B and waits.
    system.switch_to(system.boot);
    system.enter(b.domain);
    let buffer = system.region(b.domain) + 0x3000;
    let arguments = [number(in_b), buffer, STATE_BYTES as u64];
    assert_eq!(system.invoke(Call::GetState, &arguments), Next::BlockThenRepeat);
    assert_eq!(system.state(system.boot), ThreadState::WaitingForState(in_b));
    assert!(system.activation(in_b).control.held);

    // The sleep ends; on its way back into B the thread stops and wakes the waiter.
    system.kernel.machine.clock += 100;
    system.kernel.tick();
    system.switch_to(thread);
    assert_eq!(system.way_back(true), WayBack::Stop);
    assert_eq!(system.state(system.boot), ThreadState::Ready);

    system.switch_to(system.boot);
    assert!(!system.kernel.take_interrupted());
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.current_frame().result(), Ok(STATE_BYTES));
    assert_eq!(system.words(buffer, 20)[19], 0x5157);
    assert!(!system.activation(in_b).control.held, "released");
    assert_eq!(system.state(thread), ThreadState::Ready, "and the thread goes on");
}

// ---------------------------------------------------------------------
// Accounting.

#[test]
fn cpu_time_is_charged_to_the_domain_the_thread_runs_in() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let own = system.top(thread);
    system.kernel.machine.clock += 100;
    system.kernel.charge();
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    system.kernel.machine.clock += 250;
    system.kernel.charge();
    let answer = system.region(b.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    system.kernel.machine.clock += 30;

    let buffer = system.region(a) + 0x3000;
    assert_eq!(system.ok(Call::ThreadInfo, &[number(own), buffer, 64]), Ok(6));
    let words = system.words(buffer, 6);
    let priority = system.kernel.objects.thread(thread).unwrap().priority as u64;
    assert_eq!(words[..2], [priority, 380], "priority, then the total (ThreadInfo charges first)");
    let mut by_domain: Vec<(u64, u64)> = words[2..].chunks(2).map(|pair| (pair[0], pair[1])).collect();
    by_domain.sort();
    assert_eq!(by_domain, [(a.0 as u64, 130), (b.domain.0 as u64, 250)]);
    assert_eq!(by_domain.iter().map(|(_, ticks)| ticks).sum::<u64>(), words[1], "the split adds up");

    // A buffer for two words gets two.
    assert_eq!(system.ok(Call::ThreadInfo, &[number(own), buffer + 0x100, 16]), Ok(2));
    assert_eq!(system.words(buffer + 0x100, 3), [priority, 380, 0]);
}

#[test]
fn a_switch_charges_the_thread_that_ran() {
    let mut system = System::new();
    let a = system.domain("a");
    let other = system.thread(a, 5);
    system.enter(a);
    system.kernel.machine.clock += 40;
    system.switch_to(other);
    system.kernel.machine.clock += 60;
    system.switch_to(system.boot);
    let boot = system.kernel.objects.thread(system.boot).unwrap();
    assert_eq!(boot.cpu_time, 40);
    assert_eq!(boot.by_domain, [(a, 40)]);
    let other = system.kernel.objects.thread(other).unwrap();
    assert_eq!(other.cpu_time, 60);
    assert_eq!(other.by_domain, [(a, 60)]);
}

#[test]
fn set_priority_is_refused_above_an_activation_that_forbade_it() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [in_a, in_b] = call_into(&mut system, a, &b, thread);
    system.switch_to(system.boot);
    let in_domain_b = system.enter(b.domain);
    assert_eq!(system.ok(Call::SetPriority, &[number(in_b), 9]), Ok(5), "the thread's priority, from B");
    system.leave(in_domain_b);
    let in_domain_a = system.enter(a);
    assert_eq!(system.ok(Call::ForbidAbove, &[number(in_a)]), Ok(0));
    system.leave(in_domain_a);
    system.enter(b.domain);
    let before = system.snapshot();
    assert_eq!(system.ok(Call::SetPriority, &[number(in_b), 3]), Err(Error::Forbidden));
    system.assert_unchanged(&before, "a forbidden priority change");
    assert_eq!(system.kernel.objects.thread(thread).unwrap().priority, 9);
}

#[test]
fn a_sidetrack_upcall_cut_off_below_keeps_its_activation_out_of_the_pool_when_it_returns() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let name = system.grant(&b, a);
    let arguments = [b.name as u64, b.entry + 0x800, STACK];
    assert_eq!(system.as_domain(b.domain, Call::SidetrackSet, &arguments), Ok(0));
    let sidetrack = system.kernel.objects.port(b.port).unwrap().sidetrack.unwrap();
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let own = system.top(thread);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.top(thread), sidetrack);

    // A terminates the thread's own activation: the sidetrack upcall is
    // left with no caller, and its Return ends the thread.
    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Terminate, &[number(own)]), Ok(0));
    system.leave(controller);
    assert_eq!(system.chain(thread), [sidetrack]);
    system.switch_to(thread);
    assert_eq!(system.invoke(Call::Return, &[0, 0]), Next::EndThread(0));
    assert_eq!(system.activation(sidetrack).occupant, None);
    assert_eq!(system.pool_free(&b), 1, "the pool holds its one activation, not the sidetrack's");
}

#[test]
fn an_alert_handler_runs_at_the_next_return_from_a_kernel_call_and_alert_done_goes_back() {
    let mut system = System::new();
    let a = system.domain("a");
    let thread = system.thread(a, 5);
    let handler = support::IMAGE.start + 0x4000;
    system.switch_to(thread);
    let own = system.top(thread);
    assert_eq!(system.ok(Call::AlertHandler, &[handler]), Ok(0));
    assert_eq!(system.ok(Call::AlertHandler, &[0x1234]), Err(Error::BadAddress), "a handler in the image only");
    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Alert, &[number(own)]), Ok(1));
    system.leave(controller);

    // The preempted thread goes back without a handler (not at a call's end)...
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::Go);
    let sp = system.current_frame().context.sp;
    system.current_frame().context.pc = 0x8_c004;
    // ... then its next kernel call ends in the handler.
    assert_eq!(system.ok(Call::Null, &[]), Ok(0));
    assert_eq!(system.way_back(true), WayBack::Go);
    let context = system.current_frame().context;
    assert_eq!(context.pc, handler);
    assert_eq!(context.x[0], number(own));
    assert_eq!(context.sp, (sp - 256) & !15);
    assert!(!system.activation(own).control.alert_pending, "the handler took the alert");
    assert_eq!(system.invoke(Call::AlertDone, &[]), Next::Resume);
    let back = system.current_frame().context;
    assert_eq!((back.pc, back.sp), (0x8_c004, sp), "where the alert found it");
    assert_eq!(system.current_frame().result(), Ok(0), "with its call's result");
    assert_eq!(system.ok(Call::AlertDone, &[]), Err(Error::NotInCall), "outside a handler");
}

#[test]
fn domain_control_terminates_every_occupied_activation_and_gives_callers_control_back() {
    let mut system = System::new();
    let kernel_domain = system.domain("kernel");
    // The merge transition is tern-inks'; here the record says merged.
    system.kernel.domain_mut(kernel_domain).unwrap().mode = DomainMode::Merged;
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [in_a, in_b] = call_into(&mut system, a, &b, thread);
    system.switch_to(system.boot);

    let in_a_domain = system.enter(a);
    let buffer = system.region(a) + 0x3000;
    assert_eq!(
        system.ok(Call::DomainControl, &[b.domain.0 as u64, 2]),
        Err(Error::NoRight),
        "the kernel domain's only"
    );
    assert_eq!(system.ok(Call::Activations, &[b.domain.0 as u64, buffer, 16]), Err(Error::NoRight));
    system.leave(in_a_domain);

    let controller = system.enter(kernel_domain);
    let buffer = system.region(kernel_domain) + 0x3000;
    assert_eq!(system.ok(Call::Activations, &[b.domain.0 as u64, buffer, 16]), Ok(1));
    assert_eq!(system.kernel.machine.peek(buffer, 4), in_b.get().to_le_bytes());
    assert_eq!(system.ok(Call::DomainControl, &[b.domain.0 as u64, 2]), Ok(1));
    system.leave(controller);

    assert!(!system.kernel.domain(b.domain).unwrap().alive);
    let lower = system.activation(in_a).occupant.expect("A's activation is on a thread");
    assert_eq!(system.chain(lower), [in_a]);
    assert!(system.chain(thread).is_empty(), "nothing is left above");
    system.switch_to(lower);
    assert_eq!(
        system.current_frame().result(),
        Err(Error::CallAborted),
        "A has control back at once: the domain it called is gone"
    );
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::End, "the old thread ends");
}

#[test]
fn domain_control_suspends_and_resumes_a_domains_activations() {
    let mut system = System::new();
    let kernel_domain = system.domain("kernel");
    system.kernel.domain_mut(kernel_domain).unwrap().mode = DomainMode::Merged;
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let thread = system.thread(a, 5);
    let [_, in_b] = call_into(&mut system, a, &b, thread);
    system.switch_to(system.boot);
    let controller = system.enter(kernel_domain);
    assert_eq!(system.ok(Call::DomainControl, &[b.domain.0 as u64, 0]), Ok(1));
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::Stop);
    assert_eq!(system.state(thread), ThreadState::Suspended(in_b));
    system.switch_to(system.boot);
    assert_eq!(system.ok(Call::DomainControl, &[b.domain.0 as u64, 1]), Ok(1));
    assert_eq!(system.state(thread), ThreadState::Ready);
    system.leave(controller);
}

#[test]
fn an_alert_handler_for_a_call_made_with_a_stack_pointer_near_zero_does_not_panic_the_kernel() {
    let mut system = System::new();
    let a = system.domain("a");
    let thread = system.thread(a, 5);
    let handler = support::IMAGE.start + 0x4000;
    system.switch_to(thread);
    let own = system.top(thread);
    assert_eq!(system.ok(Call::AlertHandler, &[handler]), Ok(0));
    system.switch_to(system.boot);
    let controller = system.enter(a);
    assert_eq!(system.ok(Call::Alert, &[number(own)]), Ok(1));
    system.leave(controller);
    system.switch_to(thread);
    assert_eq!(system.way_back(false), WayBack::Go);
    // The domain's stack pointer is its own business, even a silly one.
    system.current_frame().context.sp = 0x40;
    assert_eq!(system.ok(Call::Null, &[]), Ok(0));
    assert_eq!(system.way_back(true), WayBack::Go);
    let context = system.current_frame().context;
    assert_eq!(context.pc, handler, "the handler runs (and faults in its own domain)");
    assert_eq!(context.sp, 0x40u64.wrapping_sub(256) & !15);
}

#[test]
fn a_thread_that_splits_itself_again_and_again_keeps_one_record_not_one_a_split() {
    let mut system = System::new();
    let a = system.domain("a");
    let own = system.serve(a, 1, STACK);
    let name = own.name;
    let first = system.thread(a, 5);
    let mut current = first;
    let mut counts = Vec::new();
    for _ in 0..50 {
        system.switch_to(current);
        let base = system.top(current);
        let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
        let length = system.message(request, 1, &[]);
        assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
        // In its own pool: break the chain below, at its base.
        assert_eq!(system.ok(Call::AlertBreak, &[number(base)]), Ok(2), "it and the pool activation above");
        let lower = system.activation(base).occupant.expect("the base carried on by a new thread");
        let answer = system.region(a) + 0x3000;
        let answer_length = system.message(answer, 2, &[]);
        assert_eq!(system.invoke(Call::Return, &[answer, answer_length]), Next::EndThread(0));
        system.kernel.end_current_thread(0);
        // (Its number may be reused once it is forgotten: the mock's frame
        // for it goes now.)
        if current != first {
            system.frames.remove(&current);
        }
        system.switch_to(lower);
        assert_eq!(system.current_frame().result(), Err(Error::Interrupted));
        current = lower;
        counts.push(system.kernel.objects.thread_count());
    }
    assert!(counts[1..].iter().all(|&count| count == counts[1]), "one record, whatever the splits: {counts:?}");
    assert!(system.kernel.objects.thread(first).is_some(), "the first stays, to be joined");
}

// ---------------------------------------------------------------------
// Control from the kernel's own code.

#[test]
fn the_kernel_controls_any_domains_activation_as_its_own_domain_would() {
    use tern_core::control::ActivationAction;
    let mut deep = three_deep();
    let system = &mut deep.system;
    let [in_a, in_b, in_c] = deep.chain;
    // From the boot thread, in no domain: no caller's rights are asked for.
    assert_eq!(system.kernel.control_activation(in_a, ActivationAction::Alert), Ok(2), "A's, then B's (which blocks)");
    assert!(system.activation(in_b).control.alert_pending);
    assert!(!system.activation(in_c).control.alert_pending, "held by B");
    assert_eq!(system.kernel.control_activation(in_c, ActivationAction::Suspend), Ok(0));
    assert_eq!(system.kernel.control_activation(in_c, ActivationAction::Suspend), Ok(1), "it was suspended");
    system.switch_to(deep.thread);
    assert_eq!(system.way_back(false), WayBack::Stop);
    system.switch_to(system.boot);
    assert_eq!(system.kernel.control_activation(in_c, ActivationAction::Resume), Ok(1));
    assert_eq!(system.state(deep.thread), ThreadState::Ready, "resumed: it may run");

    // Breaking below B: A's call returns Interrupted on a new thread.
    assert_eq!(system.kernel.control_activation(in_a, ActivationAction::AlertBreak), Ok(2), "A's and B's");
    let lower = system.activation(in_a).occupant.expect("A's activation is on a thread");
    assert_ne!(lower, deep.thread);
    assert_eq!(system.chain(deep.thread), [in_c, in_b]);
    assert_eq!(system.kernel.objects.thread(lower).unwrap().resume_with, Error::Interrupted as usize);

    // Terminating C: B's call returns Terminated on another new thread.
    assert_eq!(system.kernel.control_activation(in_c, ActivationAction::Terminate), Ok(0));
    let below = system.activation(in_b).occupant.expect("B's activation is on a thread");
    assert_ne!(below, deep.thread);
    assert_eq!(system.chain(below), [in_b]);
    assert_eq!(system.activation(in_c).occupant, None);
    assert_eq!(system.pool_free(&deep.c), 1, "C's activation is back in its pool");
    assert_eq!(system.kernel.objects.thread(below).unwrap().resume_with, Error::Terminated as usize);
    assert_eq!(system.statistics().splits, 2);

    // Unoccupied now, or never made: nothing to act on.
    assert_eq!(system.kernel.control_activation(in_c, ActivationAction::Alert), Err(Error::NoSuchActivation));
    let none = ActivationId(core::num::NonZeroU32::new(999).unwrap());
    assert_eq!(system.kernel.control_activation(none, ActivationAction::Terminate), Err(Error::NoSuchActivation));
}

#[test]
fn the_kernel_cannot_control_the_boot_threads_own_activations_either() {
    use tern_core::control::ActivationAction;
    let mut system = System::new();
    let a = system.domain("a");
    let own = system.enter(a);
    let before = system.snapshot();
    for action in [
        ActivationAction::Alert,
        ActivationAction::AlertBreak,
        ActivationAction::Terminate,
        ActivationAction::Suspend,
        ActivationAction::Resume,
    ] {
        assert_eq!(system.kernel.control_activation(own, action), Err(Error::NoRight), "{action:?}");
    }
    system.assert_unchanged(&before, "controlling the boot thread's activation");
}
