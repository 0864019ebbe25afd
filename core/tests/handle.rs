//! Bound handles (`Bind`, `Unbind`, `CallBound`): bound once, checked
//! then; published into the client's region for its gate; stale when the
//! port dies, the server changes mode or is restarted; freed on unbind.

mod support;

use support::{STACK, Server, System};
use tern_core::abi::{Call, DomainMode, Error, HANDLES};
use tern_core::abi::{MessageHeader, NO_RIGHT, REPLY_IN_REGISTERS};
use tern_core::board::{HANDLE_RECORD_BYTES, REGION_HANDLES_OFFSET};
use tern_core::domain::DomainId;
use tern_core::handle::BoundPath;
use tern_core::kernel::Next;
use tern_core::mock::{BOUND_ENTRIES, BOUND_WORDS_GENERAL};

/// The four words of `domain`'s published record for `handle`.
fn record(system: &System, domain: DomainId, handle: usize) -> [u64; 4] {
    let at = system.region(domain) + REGION_HANDLES_OFFSET + handle as u64 * HANDLE_RECORD_BYTES;
    let bytes = system.kernel.machine.peek(at, 32);
    core::array::from_fn(|word| u64::from_le_bytes(bytes[word * 8..word * 8 + 8].try_into().unwrap()))
}

fn entry(path: BoundPath) -> u64 {
    BOUND_ENTRIES + 0x100 * path as u64
}

/// A client domain holding a send right (its name) to a pool server.
fn setup() -> (System, DomainId, Server, u32) {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 2, STACK);
    let name = system.grant(&server, client);
    (system, client, server, name)
}

/// `CallBound` through `handle` from a fresh thread of `client`.
fn call_bound(system: &mut System, client: DomainId, handle: u64) -> Next<tern_core::mock::MockSwitch> {
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 7, &[1; 8]);
    system.invoke(Call::CallBound, &[handle, request, length, reply, 64])
}

#[test]
fn a_bound_handle_is_published_and_calls_like_the_name() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(handle, 0);
    let [path, registers, port, words] = record(&system, client, handle);
    assert_eq!(path, entry(BoundPath::Trap), "a protected client: the trap");
    assert_eq!(registers, entry(BoundPath::Trap) + 0x80, "and its form for messages in registers");
    assert_eq!(port, system.kernel.objects.port_address(server.port) as u64);
    assert_eq!(words, entry(BoundPath::Trap) + 0xc0, "and its form for registers both ways");
    let free = system.pool_free(&server);
    assert_eq!(call_bound(&mut system, client, handle as u64), Next::Resume);
    assert_eq!(system.pool_free(&server), free - 1, "the call took an activation of the bound port");
    assert_eq!(system.delivered().label, 7);
}

#[test]
fn binding_checks_the_right_and_the_table_has_room_for_handles_only() {
    let (mut system, client, server, name) = setup();
    let stranger = system.domain("stranger");
    assert_eq!(system.as_domain(stranger, Call::Bind, &[name as u64]), Err(Error::NoSuchPort));
    assert_eq!(system.as_domain(client, Call::Bind, &[(1 << 32) | name as u64]), Err(Error::NoSuchPort));
    for expected in 0..HANDLES {
        assert_eq!(system.as_domain(client, Call::Bind, &[name as u64]), Ok(expected));
    }
    assert_eq!(system.as_domain(client, Call::Bind, &[name as u64]), Err(Error::OverQuota));
    assert_eq!(system.kernel.domain(client).unwrap().handles.bound(), HANDLES);
    // Unbinding frees a number for the next binding; a number naming no
    // binding is refused, as is any number past the table.
    assert_eq!(system.as_domain(client, Call::Unbind, &[3]), Ok(0));
    assert_eq!(record(&system, client, 3)[0], entry(BoundPath::Stale));
    assert_eq!(system.as_domain(client, Call::Unbind, &[3]), Err(Error::InvalidArgument));
    assert_eq!(system.as_domain(client, Call::Unbind, &[u64::MAX]), Err(Error::InvalidArgument));
    assert_eq!(call_bound(&mut system, client, 3), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::InvalidArgument));
    assert_eq!(call_bound(&mut system, client, HANDLES as u64 + 1), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::InvalidArgument));
    assert_eq!(system.as_domain(client, Call::Bind, &[name as u64]), Ok(3));
    let _ = server;
}

#[test]
fn a_handle_goes_stale_when_its_port_dies() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(system.as_domain(server.domain, Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert_eq!(record(&system, client, handle)[0], entry(BoundPath::Stale), "the gate's branch now says stale");
    let before = system.statistics();
    assert_eq!(call_bound(&mut system, client, handle as u64), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::StaleHandle));
    assert_eq!(system.statistics().migrated, before.migrated, "nothing reached the server");
    // Binding again finds the name dead.
    assert_eq!(system.as_domain(client, Call::Bind, &[name as u64]), Err(Error::PortDead));
}

#[test]
fn a_handle_goes_stale_when_its_server_dies_and_its_client_forgets_its_own() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.terminate_domain(server.domain);
    assert_eq!(call_bound(&mut system, client, handle as u64), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::StaleHandle));

    let (mut system, client, _, name) = setup();
    system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.terminate_domain(client);
    assert_eq!(system.kernel.domain(client).unwrap().handles.bound(), 0, "a dead domain holds no handles");
}

#[test]
fn the_path_follows_the_pair_of_modes_and_a_server_flip_makes_handles_stale() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    // The client merges: its handles are rewritten for the new pair.
    system.kernel.domain_mut(client).unwrap().mode = DomainMode::Merged;
    system.kernel.republish_handles(client);
    assert_eq!(record(&system, client, handle)[0], entry(BoundPath::Direct), "merged client, protected server");
    // A server that changes mode makes them stale; a new binding gets the
    // merged path — once its pool enters at the merged dispatch (as the
    // runtime's pools do: the merge moves them there).
    system.kernel.domain_mut(server.domain).unwrap().mode = DomainMode::Merged;
    system.kernel.stale_handles_to(server.domain);
    let direct = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(record(&system, client, direct)[0], entry(BoundPath::Direct), "a pool entered elsewhere");
    assert_eq!(system.as_domain(client, Call::Unbind, &[direct as u64]), Ok(0));
    let merged_dispatch = system.kernel.servers.dispatch_entries[1];
    for activation in system.kernel.objects.activations_of(server.domain) {
        activation.entry = merged_dispatch;
    }
    let undeclared = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(record(&system, client, undeclared)[0], entry(BoundPath::Direct), "a context not declared a record");
    assert_eq!(system.as_domain(client, Call::Unbind, &[undeclared as u64]), Ok(0));
    assert_eq!(
        system.as_domain(server.domain, Call::ContextSet, &[0x1000, 2]),
        Err(Error::InvalidArgument),
        "flags that name nothing"
    );
    assert_eq!(system.as_domain(server.domain, Call::ContextSet, &[0x1000, 1]), Ok(0));
    assert_eq!(record(&system, client, handle)[0], entry(BoundPath::Stale));
    assert_eq!(system.kernel.bound_port(client, handle), Err(Error::StaleHandle));
    let again = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_ne!(again, handle, "the stale handle keeps its number until unbound");
    assert_eq!(record(&system, client, again)[0], entry(BoundPath::Merged));
    assert_eq!(system.kernel.bound_path(client, again), BoundPath::Merged);
    // Activations entering elsewhere join the pool: the direct entry.
    let server_main = system.enter(server.domain);
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 1, server.entry, STACK]), Ok(3));
    system.leave(server_main);
    assert_eq!(record(&system, client, again)[0], entry(BoundPath::Direct));
    // The client goes back: the trap again.
    system.kernel.domain_mut(client).unwrap().mode = DomainMode::Protected;
    system.kernel.republish_handles(client);
    assert_eq!(record(&system, client, again)[0], entry(BoundPath::Trap));
}

#[test]
fn a_handle_goes_stale_when_its_server_is_restarted() {
    let (mut system, client, server, name) = setup();
    system
        .kernel
        .set_restart_policy(server.domain, tern_core::abi::RestartPolicy::Always { limit: 0, window: 0 })
        .unwrap();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.terminate_domain(server.domain);
    assert!(system.kernel.objects.port(server.port).is_some_and(|port| port.alive), "kept for the new instance");
    assert_eq!(system.kernel.bound_port(client, handle), Err(Error::StaleHandle));
    assert_eq!(record(&system, client, handle)[0], entry(BoundPath::Stale));
}

#[test]
fn a_request_in_registers_is_written_out_and_called_as_a_bound_call() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    let buffer = system.region(client) + 0x3000;
    let words = [u64::from_le_bytes(*b"register"), u64::from_le_bytes(*b"s, 12345"), 0, 0];
    let first = 7 | 13 << 32;
    let free = system.pool_free(&server);
    assert_eq!(
        system
            .invoke(Call::CallBoundWords, &[first, words[0], words[1], words[2], words[3], handle as u64, buffer, 64]),
        Next::Resume
    );
    assert_eq!(system.pool_free(&server), free - 1, "the call reached the bound port's pool");
    let delivered = system.delivered();
    assert_eq!((delivered.label, delivered.length), (7, 13));

    // Too long for the words, a buffer too small for the message, or one
    // not the caller's: refused, nothing delivered.
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap() as u64;
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    let buffer = system.region(client) + 0x3000;
    let free = system.pool_free(&server);
    for (first, at, capacity, error) in [
        (1 | 33 << 32, buffer, 64, Error::InvalidArgument),
        (1 | 8 << 32, buffer, 23, Error::BadAddress),
        (1 | 8 << 32, system.region(server.domain), 64, Error::BadAddress),
    ] {
        assert_eq!(system.invoke(Call::CallBoundWords, &[first, 0, 0, 0, 0, handle, at, capacity]), Next::Resume);
        assert_eq!(system.current_frame().result(), Err(error));
    }
    assert_eq!(system.pool_free(&server), free);
}

#[test]
fn only_activations_at_the_protected_dispatch_trampoline_have_a_register_entry() {
    // The trapping fast path of CallBoundWords enters an activation at its
    // register_entry (the gate's register trampoline) when it has one, so
    // the kernel gives one exactly to activations entering at the
    // protected dispatch trampoline, whose runtime has the register
    // handler; any other entry keeps the request on the stack.
    let (mut system, _client, server, _name) = setup();
    let [protected, merged] = system.kernel.servers.dispatch_entries;
    let registers = system.kernel.servers.dispatch_register_entry;
    let server_main = system.enter(server.domain);
    assert!(system.ok(Call::PoolAdd, &[server.name as u64, 1, protected, STACK]).is_ok());
    system.leave(server_main);
    let mut seen = 0;
    for activation in system.kernel.objects.activations_of(server.domain) {
        let wanted = if activation.entry == protected { registers } else { 0 };
        assert_eq!(activation.register_entry, wanted, "entry {:#x}", activation.entry);
        assert_eq!(
            activation.register_sp,
            activation.stack_top.wrapping_sub(tern_core::abi::REPLY_AREA as u64),
            "the register trampoline's SP: its reply area, below the stack's top"
        );
        seen += usize::from(activation.entry == protected);
    }
    assert_eq!(seen, 1, "the activation just added enters at the trampoline");
    assert_eq!(system.kernel.servers.register_entry(protected), registers);
    assert_eq!(system.kernel.servers.register_entry(merged), 0, "a merged server's pool: not at EL0");
    assert_eq!(system.kernel.servers.register_entry(server.entry), 0);
}

/// `domain`'s handle `handle` as the trapping fast paths read it once the
/// kernel has published (`handle::port_records`): its port's record, or 0.
fn fast_port(system: &mut System, domain: DomainId, handle: usize) -> u64 {
    system.kernel.publish();
    system.kernel.machine.handle_ports[domain.0 as usize - 1][handle]
}

#[test]
fn the_fast_paths_copy_of_a_handle_is_its_port_record_until_the_handle_goes() {
    // Bound: the record's address, the port table's entry for its number.
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    let address = system.kernel.objects.port_address(server.port) as u64;
    assert_ne!(address, 0);
    assert_eq!(fast_port(&mut system, client, handle), address);
    assert_eq!(fast_port(&mut system, client, handle + 1), 0, "an unbound slot");
    // Unbound.
    assert_eq!(system.as_domain(client, Call::Unbind, &[handle as u64]), Ok(0));
    assert_eq!(fast_port(&mut system, client, handle), 0);

    // The port destroyed, its record freed, a new port made (whose record
    // may lie where the old one did): the old handle stays 0, a new one
    // gets the new record.
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(system.as_domain(server.domain, Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert!(system.kernel.objects.port(server.port).is_none(), "no activation was busy: the record is freed");
    assert_eq!(fast_port(&mut system, client, handle), 0, "stale");
    let other = system.serve(server.domain, 1, STACK);
    let other_name = system.grant(&other, client);
    let fresh = system.as_domain(client, Call::Bind, &[other_name as u64]).unwrap();
    assert_eq!(fast_port(&mut system, client, handle), 0, "still stale, whatever lies at its old address");
    assert_eq!(fast_port(&mut system, client, fresh), system.kernel.objects.port_address(other.port) as u64);

    // Its server dies; its client dies.
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_ne!(fast_port(&mut system, client, handle), 0);
    system.kernel.terminate_domain(server.domain);
    assert_eq!(fast_port(&mut system, client, handle), 0);
    let (mut system, client, _, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.terminate_domain(client);
    assert_eq!(fast_port(&mut system, client, handle), 0);

    // Its server changes mode.
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.domain_mut(server.domain).unwrap().mode = DomainMode::Merged;
    system.kernel.stale_handles_to(server.domain);
    assert_eq!(fast_port(&mut system, client, handle), 0);

    // Its server is restarted: the port lives on for the new instance, the
    // handle does not.
    let (mut system, client, server, name) = setup();
    system
        .kernel
        .set_restart_policy(server.domain, tern_core::abi::RestartPolicy::Always { limit: 0, window: 0 })
        .unwrap();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    system.kernel.terminate_domain(server.domain);
    assert!(system.kernel.objects.port(server.port).is_some_and(|port| port.alive));
    assert_eq!(fast_port(&mut system, client, handle), 0);
}

#[test]
fn freeing_a_port_record_rewrites_the_fast_paths_copies() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_ne!(fast_port(&mut system, client, handle), 0);
    // Whatever the fast paths held is replaced at the next publication
    // once a port's record is freed (here: one no handle names).
    let unbound = system.serve(server.domain, 1, STACK);
    system.kernel.publish();
    system.kernel.machine.handle_ports.clear();
    assert_eq!(system.as_domain(server.domain, Call::PortDestroy, &[unbound.name as u64]), Ok(0));
    assert!(system.kernel.objects.port(unbound.port).is_none());
    assert_eq!(fast_port(&mut system, client, handle), system.kernel.objects.port_address(server.port) as u64);
}

/// A words call (`CallBoundWords`) from a fresh thread of `client`, its SP
/// at `sp` and its `svc` just before `CALL_PC`, with no reply buffer
/// (x7 = 0, as `Handle::call_words` makes it): label 7, 13 payload bytes.
fn call_words_unbuffered(
    system: &mut System,
    client: DomainId,
    handle: u64,
    sp: u64,
) -> Next<tern_core::mock::MockSwitch> {
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    system.current_frame().context.sp = sp;
    system.current_frame().context.pc = support::CALL_PC;
    let words = [u64::from_le_bytes(*b"register"), u64::from_le_bytes(*b"s, 12345"), 0, 0];
    let record = system.region(client) + REGION_HANDLES_OFFSET;
    // (As the vector hands the general path an `svc #1`.)
    system.invoke_number(
        tern_core::abi::CALL_BOUND_WORDS_SVC1 as u64,
        &[7 | 13 << 32, words[0], words[1], words[2], words[3], handle, record, 0],
    )
}

#[test]
fn a_words_call_with_no_buffer_gets_a_frame_the_kernel_makes_on_the_general_path() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap() as u64;
    let sp = system.region(client) + 0x5000;
    let free = system.pool_free(&server);
    assert_eq!(call_words_unbuffered(&mut system, client, handle, sp), Next::Resume);
    assert_eq!(system.pool_free(&server), free - 1, "the call reached the bound port's pool");
    let delivered = system.delivered();
    assert_eq!((delivered.label, delivered.length), (7, 13));
    // What the client resumes with, whatever ends the call: SP below the
    // frame, at the gate's words return, the call made again a CallBound.
    let thread = system.kernel.current();
    let client_activation = system.chain(thread)[1];
    let saved = system.activation(client_activation).saved;
    assert_eq!((saved.sp, saved.pc), (sp - 48, BOUND_WORDS_GENERAL));
    assert_eq!(saved.x[8], Call::CallBound as u64);
    assert_eq!(saved.x[..5], [handle, sp - 48, 29, sp - 48, 48]);
    // The reply goes into the frame (the gate's code hands it on).
    let answer = system.region(server.domain) + 0x1000;
    let length = system.message(answer, 9, &[1, 2, 3, 4]);
    assert_eq!(system.ok(Call::Return, &[answer, length]), Ok(20));
    let back = system.frame(thread).context;
    assert_eq!((back.sp, back.pc), (sp - 48, BOUND_WORDS_GENERAL));
    assert_eq!(system.header(sp - 48), MessageHeader { label: 9, right: NO_RIGHT, length: 4, reserved: 0 });
    assert_eq!(system.kernel.machine.peek(sp - 48 + 16, 4), [1, 2, 3, 4]);

    // A reply longer than the frame: ReplyTooLarge.
    assert_eq!(call_words_unbuffered(&mut system, client, handle, sp), Next::Resume);
    let answer = system.region(server.domain) + 0x1000;
    let length = system.message(answer, 9, &[1; 33]);
    assert_eq!(system.invoke(Call::Return, &[answer, length]), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::ReplyTooLarge));

    // A stale handle: StaleHandle, the frame untouched; SP at the bottom of
    // the region (no room below it in the caller's memory): BadAddress.
    // Nothing delivered either way.
    let free = system.pool_free(&server);
    let bottom = system.region(client);
    assert_eq!(call_words_unbuffered(&mut system, client, handle, bottom + 16), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::BadAddress));
    assert_eq!(system.as_domain(server.domain, Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert_eq!(call_words_unbuffered(&mut system, client, handle, sp), Next::Resume);
    let frame = system.current_frame();
    assert_eq!(frame.result(), Err(Error::StaleHandle));
    assert_eq!((frame.context.sp, frame.context.pc), (sp, support::CALL_PC));
    assert!(system.pool_free(&server) <= free);

    // By `svc #0` (x8 = CallBoundWords), no buffer is no room: BadAddress,
    // the caller resumed where it was, its stack untouched, nothing
    // delivered: the kernel makes a frame, and resumes at x30, only for
    // the gate's `svc #1`.
    let handle = system.as_domain(client, Call::Bind, &[name as u64]);
    assert_eq!(handle, Err(Error::PortDead));
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap() as u64;
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    system.current_frame().context.sp = sp;
    system.current_frame().context.pc = support::CALL_PC;
    system.kernel.machine.poke(sp - 48, &[0xee; 48]);
    let free = system.pool_free(&server);
    assert_eq!(system.invoke(Call::CallBoundWords, &[7 | 13 << 32, 1, 2, 3, 4, handle, 0, 0]), Next::Resume);
    let frame = system.current_frame();
    assert_eq!(frame.result(), Err(Error::BadAddress));
    assert_eq!((frame.context.sp, frame.context.pc), (sp, support::CALL_PC));
    assert_eq!(system.kernel.machine.peek(sp - 48, 48), [0xee; 48]);
    assert_eq!(system.pool_free(&server), free);
}

#[test]
fn a_words_calls_reply_comes_back_in_registers_from_the_general_return() {
    // The fast words path marks the server activation; whatever Return ends
    // its call (here the general one) answers a reply that fits in registers.
    for (payload, buffer) in [(&[1u8, 2, 3, 4, 5, 6, 7, 8, 9][..], false), (&[1; 33][..], false), (&[1; 33][..], true)]
    {
        let (mut system, client, server, name) = setup();
        let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap() as u64;
        let thread = system.thread(client, 5);
        system.switch_to(thread);
        let reply = system.region(client) + 0x3000;
        let (at, capacity) = if buffer { (reply, 64) } else { (reply, 48) };
        assert_eq!(system.invoke(Call::CallBoundWords, &[7, 0, 0, 0, 0, handle, at, capacity]), Next::Resume);
        let top = system.chain(thread)[0];
        system.kernel.objects.activation_mut(top).unwrap().reply_registers = 1;
        if !buffer {
            // (as the fast path records a call with no buffer)
            let entry = system.kernel.objects.activation_mut(top).unwrap();
            let reply_to = entry.reply();
            entry.set_reply(tern_core::thread::Destination { capacity: 0, ..reply_to });
            entry.reply_registers = 1;
        }
        system.kernel.machine.poke(reply, &[0xee; 64]);
        let answer = system.region(server.domain) + 0x1000;
        let length = system.message(answer, 9, payload);
        assert_eq!(system.invoke(Call::Return, &[answer, length]), Next::Resume);
        let back = system.frame(thread).context;
        if payload.len() <= 32 {
            assert_eq!(back.x[0], 0, "success");
            assert_eq!(back.x[1], REPLY_IN_REGISTERS | 9 | 9 << 32);
            assert_eq!(back.x[2], u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
            assert_eq!(back.x[3..6], [9, 0, 0], "zero past the reply's length");
            assert_eq!(system.kernel.machine.peek(reply, 64), [0xee; 64], "nothing written into memory");
        } else if buffer {
            assert_eq!(system.result(thread), Ok(49), "too long for registers: into the buffer");
            assert_eq!(system.header(reply).length, 33);
        } else {
            assert_eq!(system.result(thread), Err(Error::ReplyTooLarge), "no buffer to take it");
            assert_eq!(system.kernel.machine.peek(reply, 64), [0xee; 64]);
        }
    }
}

#[test]
fn a_pool_activation_keeps_its_ports_record_which_outlives_it() {
    let (mut system, client, server, name) = setup();
    let address = system.kernel.objects.port_address(server.port) as u64;
    for activation in system.kernel.objects.activations_of(server.domain) {
        assert_eq!(activation.port_record, address, "the fast paths' way back reads the port from it");
    }
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap();
    assert_eq!(call_bound(&mut system, client, handle as u64), Next::Resume);
    let thread = system.kernel.current();
    let busy = system.chain(thread)[0];
    let base = system.chain(thread)[1];
    assert_eq!(system.activation(base).port_record, 0, "a thread's own activation serves no port");
    // The port destroyed while the call runs: its record stays while the
    // busy activation does, and goes with it.
    assert_eq!(system.as_domain(server.domain, Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert_eq!(system.kernel.objects.port_address(server.port) as u64, address);
    assert_eq!(system.activation(busy).port_record, address);
    let answer = system.region(server.domain) + 0x1000;
    let length = system.message(answer, 9, &[]);
    assert_eq!(system.invoke(Call::Return, &[answer, length]), Next::Resume);
    assert!(system.kernel.objects.activation(busy).is_none());
    assert!(system.kernel.objects.port(server.port).is_none(), "the port went with its last activation");
}

/// A words call with a reply buffer (the framed stub's) from a fresh
/// thread of `client`: label 7, 13 payload bytes; its registers, and what
/// the kernel answered.
fn call_words_buffered(
    system: &mut System,
    client: DomainId,
    handle: u64,
) -> ([u64; 8], tern_core::thread::ThreadId, Next<tern_core::mock::MockSwitch>) {
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    let buffer = system.region(client) + 0x5000;
    let words = [7 | 13 << 32, 1, 2, 0, 0, handle, buffer, 48];
    (words, thread, system.invoke(Call::CallBoundWords, &words))
}

/// The general path makes a framed words call a `CallBound`, but what the
/// caller resumes from, or is made again from (a wait for an activation,
/// a sidetrack, a requeue), keeps the words call's own registers: its
/// `svc #1`, made again, must read the words request, not the
/// `CallBound`'s registers as one.
#[test]
fn a_framed_words_call_keeps_its_registers_for_a_call_made_again() {
    let (mut system, client, server, name) = setup();
    let handle = system.as_domain(client, Call::Bind, &[name as u64]).unwrap() as u64;
    // Migrated: the client's saved state has its words.
    let (words, thread, next) = call_words_buffered(&mut system, client, handle);
    assert_eq!(next, Next::Resume);
    assert_eq!(system.delivered().length, 13, "the request went as a message");
    let saved = system.activation(system.chain(thread)[1]).saved;
    assert_eq!(saved.x[..8], words);
    assert_eq!(saved.x[8], Call::CallBoundWords as u64);
    // The pool used up: the caller waits, to make its call again, from
    // its words.
    while system.pool_free(&server) > 0 {
        let _ = call_bound(&mut system, client, handle);
    }
    let (words, thread, _) = call_words_buffered(&mut system, client, handle);
    let frame = system.frame(thread).context;
    assert_eq!(frame.x[..8], words);
    assert_eq!(frame.x[8], Call::CallBoundWords as u64);
}
