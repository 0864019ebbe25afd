//! Kernel memory charged to the domain that asks for it: quotas, port
//! destruction, and what ended threads and destroyed ports give back.

mod support;

use support::{STACK, System, THREAD_ENTRY};
use tern_core::abi::{Call, DomainMode, Error, MessageHeader};
use tern_core::kernel::Next;
use tern_core::quota::Resource;
use tern_core::thread::ThreadState;

fn used(system: &System, domain: tern_core::domain::DomainId, resource: Resource) -> u32 {
    system.kernel.domain(domain).unwrap().account.used(resource)
}

fn limit(system: &mut System, domain: tern_core::domain::DomainId, resource: Resource, limit: u32) {
    system.kernel.domain_mut(domain).unwrap().account.set_limit(resource, limit);
}

#[test]
fn ports_over_the_quota_are_refused_and_destroyed_ones_give_it_back() {
    let mut system = System::new();
    let a = system.domain("a");
    limit(&mut system, a, Resource::Ports, 3);
    system.enter(a);
    let names: Vec<u64> = (0..3).map(|_| system.ok(Call::PortCreate, &[]).unwrap() as u64).collect();
    let ports = system.kernel.objects.port_ids().count();
    assert_eq!(system.ok(Call::PortCreate, &[]), Err(Error::OverQuota));
    assert_eq!(system.kernel.objects.port_ids().count(), ports, "nothing made");
    assert_eq!((used(&system, a, Resource::Ports), used(&system, a, Resource::Rights)), (3, 3));
    assert_eq!(system.ok(Call::PortDestroy, &[names[0]]), Ok(0));
    assert_eq!(system.kernel.objects.port_ids().count(), ports - 1, "a port with no activation goes at once");
    assert_eq!(used(&system, a, Resource::Ports), 2);
    assert_eq!(system.ok(Call::PortCreate, &[]).map(|_| ()), Ok(()), "room again");
    // Its own dead name: PortDead once, then the name is free.
    assert_eq!(system.ok(Call::PortDestroy, &[names[1]]), Ok(0));
    assert_eq!(system.ok(Call::PortDestroy, &[names[1]]), Err(Error::PortDead));
    assert_eq!(system.ok(Call::PortDestroy, &[names[1]]), Err(Error::NoSuchPort));
}

#[test]
fn pool_activations_and_threads_over_the_quota_are_refused_with_nothing_made() {
    let mut system = System::new();
    let server = system.server("server", 2, STACK);
    limit(&mut system, server.domain, Resource::Activations, 3);
    limit(&mut system, server.domain, Resource::Threads, 1);
    system.enter(server.domain);
    let floor = system.kernel.domain(server.domain).unwrap().stack_floor;
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 2, server.entry, STACK]), Err(Error::OverQuota));
    assert_eq!(system.kernel.domain(server.domain).unwrap().stack_floor, floor, "no stack carved");
    assert_eq!(system.ok(Call::PoolAdd, &[server.name as u64, 1, server.entry, STACK]), Ok(3));
    let first = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 64 << 10]).unwrap();
    let threads = system.kernel.objects.thread_count();
    assert_eq!(system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 64 << 10]), Err(Error::OverQuota));
    assert_eq!(system.kernel.objects.thread_count(), threads, "nothing made");
    assert!(first > 0);
}

#[test]
fn a_joined_thread_is_forgotten_and_gives_its_charge_back() {
    let mut system = System::new();
    let a = system.domain("a");
    let boot = system.boot;
    system.enter(a);
    let threads = system.kernel.objects.thread_count();
    let worker = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 64 << 10]).unwrap() as u32;
    let worker = tern_core::thread::ThreadId::new(worker).unwrap();
    assert_eq!(used(&system, a, Resource::Threads), 1);
    assert_eq!(system.invoke(Call::ThreadJoin, &[worker.get() as u64]), Next::BlockThenRepeat);
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Exit, &[7]), Next::ExitUpcall(7));
    system.kernel.end_current_thread(7);
    system.switch_to(boot);
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(system.current_frame().result(), Ok(7));
    assert_eq!(system.kernel.objects.thread_count(), threads, "the record is gone");
    assert_eq!(used(&system, a, Resource::Threads), 0, "and so is the charge");
    assert!(system.kernel.objects.thread(worker).is_none());
    assert_eq!(system.ok(Call::ThreadJoin, &[worker.get() as u64]), Err(Error::InvalidArgument), "joined once");
    // Its first activation went with it.
    assert!(system.kernel.objects.activations_of(a).all(|entry| entry.occupant.is_some()));
}

#[test]
fn destroying_a_port_kills_every_name_for_it_and_frees_its_activations() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 2, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    // One call in flight holds one of the two activations.
    let caller = system.thread(client, 4);
    system.switch_to(caller);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let busy = system.top(caller);
    system.switch_to(boot);
    system.enter(server.domain);
    let activations = system.kernel.objects.activation_ids().count();
    assert_eq!(system.ok(Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert_eq!(system.kernel.objects.activation_ids().count(), activations - 1, "the free one went at once");
    assert!(system.kernel.objects.port(server.port).is_some(), "the port stays while a call is in it");
    assert_eq!(used(&system, server.domain, Resource::Activations), 1);
    // The call in flight ends: its activation goes, and the port with it.
    system.switch_to(caller);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert!(system.kernel.objects.activation(busy).is_none());
    assert!(system.kernel.objects.port(server.port).is_none(), "gone with its last activation");
    assert_eq!(
        (used(&system, server.domain, Resource::Activations), used(&system, server.domain, Resource::Ports)),
        (0, 0)
    );
    // The client's name is dead: PortDead once, then nothing.
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::PortDead));
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::NoSuchPort));
    // A new port may take the old number: no old name reaches it.
    system.switch_to(boot);
    let again = system.server("again", 1, STACK);
    assert_eq!(again.port, server.port, "the number is reused");
    assert_eq!(system.kernel.domain(client).unwrap().space.name_of(again.port), None);
}

#[test]
fn receivers_waiting_on_a_destroyed_port_get_port_dead() {
    let mut system = System::new();
    let server = system.server("server", 0, STACK);
    let worker = system.thread(server.domain, 4);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(system.boot);
    system.enter(server.domain);
    assert_eq!(system.ok(Call::PortDestroy, &[server.name as u64]), Ok(0));
    assert_eq!(system.state(worker), ThreadState::Ready);
    assert_eq!(system.result(worker), Err(Error::PortDead));
}

#[test]
fn a_right_the_receiver_has_no_room_for_is_over_quota_with_nothing_delivered() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let other = system.server("other", 1, STACK);
    let carried = system.grant(&other, client);
    let rights = used(&system, server.domain, Resource::Rights);
    limit(&mut system, server.domain, Resource::Rights, rights);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.write(request, MessageHeader { label: 1, right: carried, length: 0, reserved: 0 }, &[]);
    let before = system.snapshot();
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.current_frame().result(), Err(Error::OverQuota));
    system.assert_unchanged(&before, "a right the server has no room for");
}

#[test]
fn only_the_kernel_domain_sets_quotas() {
    let mut system = System::new();
    let a = system.domain("a");
    let kernel_domain = system.domain("kernel");
    system.kernel.domain_mut(kernel_domain).unwrap().mode = DomainMode::Merged;
    system.enter(a);
    assert_eq!(system.ok(Call::SetQuota, &[a.0 as u64, 0, 1000]), Err(Error::NoRight));
    system.enter(kernel_domain);
    assert_eq!(system.ok(Call::SetQuota, &[a.0 as u64, Resource::Ports as u64, 1]), Ok(0));
    assert_eq!(system.kernel.domain(a).unwrap().account.limit(Resource::Ports), 1);
    assert_eq!(system.ok(Call::SetQuota, &[a.0 as u64, 9, 1]), Err(Error::InvalidArgument));
    assert_eq!(system.ok(Call::SetQuota, &[a.0 as u64, 0, 1 << 40]), Err(Error::InvalidArgument));
}

#[test]
fn one_domain_flooding_every_kind_leaves_another_domains_calls_working() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let flood = system.domain("flood");
    system.enter(flood);
    let mut refused = [0usize; 2];
    for _ in 0..200 {
        if system.ok(Call::PortCreate, &[]) == Err(Error::OverQuota) {
            refused[0] += 1;
        }
    }
    let own = system.ok(Call::PortCreate, &[]);
    assert_eq!(own, Err(Error::OverQuota));
    for _ in 0..200 {
        if system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 4096]) == Err(Error::OverQuota) {
            refused[1] += 1;
        }
    }
    assert!(refused[0] > 0 && refused[1] > 0, "{refused:?}");
    // The other domains are served as before.
    system.switch_to(system.boot);
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 1, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
}

#[test]
fn a_dead_name_carried_in_a_message_arrives_dead() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let gone = system.server("gone", 0, STACK);
    let dead = system.grant(&gone, client);
    let main = system.enter(gone.domain);
    assert_eq!(system.ok(Call::PortDestroy, &[gone.name as u64]), Ok(0));
    system.leave(main);
    assert!(system.kernel.domain(client).unwrap().space.is_dead(dead));
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.write(request, MessageHeader { label: 1, right: dead, length: 0, reserved: 0 }, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let delivered = system.delivered();
    assert_ne!(delivered.right, 0, "a name arrives");
    let space = &system.kernel.domain(server.domain).unwrap().space;
    assert!(space.is_dead(delivered.right), "and it is dead");
    assert_eq!(space.lookup(delivered.right), None);
}

#[test]
fn a_thread_whose_split_off_base_was_joined_directly_is_still_joined_and_uncharged() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let other = system.domain("other");
    let boot = system.boot;
    // A thread of the client's, in a call into the server when the server
    // dies: its base moves to a thread split off below the server's
    // activation, and the part left (nothing) ends.
    system.enter(client);
    let thread = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 4, 64 << 10]).unwrap() as u32;
    let thread = tern_core::thread::ThreadId::new(thread).unwrap();
    system.switch_to(thread);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    system.switch_to(boot);
    system.kernel.terminate_domain(server.domain);
    let lower = system.kernel.objects.thread(thread).unwrap().base_moved_to.expect("split");
    system.switch_to(thread);
    assert_eq!(system.way_back(false), tern_core::control::WayBack::End, "nothing is left of it");
    system.kernel.end_current_thread(0);
    system.switch_to(lower);
    assert_eq!(system.invoke(Call::Exit, &[5]), Next::ExitUpcall(5));
    system.kernel.end_current_thread(5);
    system.switch_to(boot);
    assert_eq!(used(&system, client, Resource::Threads), 2);
    // The client joins the split-off thread by its number: it goes.
    assert_eq!(system.as_domain(client, Call::ThreadJoin, &[lower.get() as u64]), Ok(5));
    assert!(system.kernel.objects.thread(lower).is_none());
    // Another domain's new thread takes the number, and ends.
    system.enter(other);
    let stranger = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 4, 64 << 10]).unwrap() as u32;
    system.leave(system.top(boot));
    assert_eq!(stranger, lower.get(), "the number is reused");
    let stranger = tern_core::thread::ThreadId::new(stranger).unwrap();
    system.switch_to(stranger);
    assert_eq!(system.invoke(Call::Exit, &[9]), Next::ExitUpcall(9));
    system.kernel.end_current_thread(9);
    system.switch_to(boot);
    // The first thread is joined on its own (its base's thread is gone),
    // not through the stranger that has its base's old number.
    assert_eq!(system.as_domain(client, Call::ThreadJoin, &[thread.get() as u64]), Ok(0));
    assert!(system.kernel.objects.thread(thread).is_none());
    assert_eq!(used(&system, client, Resource::Threads), 0, "nothing of it is charged");
    assert_eq!(
        system.as_domain(other, Call::ThreadJoin, &[stranger.get() as u64]),
        Ok(9),
        "the stranger is its creator's"
    );
    assert_eq!(used(&system, other, Resource::Threads), 0);
}

#[test]
fn learning_the_name_services_death_gives_back_no_right_it_was_not_charged_for() {
    fn entry(_: usize) -> usize {
        0
    }
    static NAMES: tern_core::domain::DomainSpec =
        tern_core::domain::DomainSpec { name: "names", entry, role: tern_core::abi::Role::NameService };
    let mut system = System::new();
    let names = system.kernel.create_domain(&NAMES).unwrap();
    let service = system.as_domain(names, Call::PortCreate, &[]).unwrap();
    let a = system.domain("a");
    assert!(system.kernel.domain(a).unwrap().space.lookup(0).is_some(), "the name service at name 0");
    assert_eq!(used(&system, a, Resource::Rights), 0, "charged to nobody");
    system.as_domain(a, Call::PortCreate, &[]).unwrap();
    assert_eq!(used(&system, a, Resource::Rights), 1);
    assert_eq!(system.as_domain(names, Call::PortDestroy, &[service as u64]), Ok(0));
    assert!(system.kernel.domain(a).unwrap().space.is_dead(0));
    assert_eq!(system.as_domain(a, Call::PortDestroy, &[0]), Err(Error::PortDead));
    assert_eq!(used(&system, a, Resource::Rights), 1, "its own port's right is still charged");
}

/// A join that returns because the thread its base moved to has ended
/// forgets the joined thread if it has ended too; if the part left on it
/// has not, it is marked detached and forgotten once it ends (before the
/// next thread is made, `Kernel::reap_detached`), so it does not stay
/// charged to its creator, who has no reason to join it again.
#[test]
fn a_thread_joined_before_its_own_part_ended_is_forgotten_once_it_ends() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let boot = system.boot;
    system.enter(client);
    let thread = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 4, 64 << 10]).unwrap() as u32;
    system.leave(system.top(boot));
    let thread = tern_core::thread::ThreadId::new(thread).unwrap();
    system.switch_to(thread);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    system.switch_to(boot);
    system.kernel.terminate_domain(server.domain);
    let lower = system.kernel.objects.thread(thread).unwrap().base_moved_to.expect("split");
    // The base's thread ends first, and the client's join returns.
    system.switch_to(lower);
    assert_eq!(system.invoke(Call::Exit, &[5]), Next::ExitUpcall(5));
    system.kernel.end_current_thread(5);
    system.switch_to(boot);
    assert_eq!(system.as_domain(client, Call::ThreadJoin, &[thread.get() as u64]), Ok(5));
    // Then the part left on the thread (nothing) ends.
    system.switch_to(thread);
    assert_eq!(system.way_back(false), tern_core::control::WayBack::End);
    system.kernel.end_current_thread(0);
    system.switch_to(boot);
    assert!(system.kernel.objects.thread(thread).is_some(), "not while the machine may still be on its stack");
    let threads = system.kernel.objects.thread_count();
    // Even at a quota of one thread, the next is made: the ended one is
    // forgotten first.
    system.kernel.domain_mut(client).unwrap().account.set_limit(Resource::Threads, 1);
    system.enter(client);
    let next = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 4, 64 << 10]);
    assert!(next.is_ok(), "{next:?}");
    assert_eq!(system.kernel.objects.thread_count(), threads, "joined and ended: forgotten before a thread is made");
    assert_eq!(used(&system, client, Resource::Threads), 1, "charged for the new thread only");
}

/// A thread of A calls B, whose activation calls C. The kernel breaks A's
/// activation off below B's: the part above (B's and C's activations)
/// goes on, on the old thread. Then it breaks B's activation off below
/// C's: B's part is split off that upper part — a thread made by a split
/// that never carries the thread's base, so no join can reach it. B's
/// handler, told `Interrupted`, returns to nobody and that thread ends;
/// then C's does, and the old thread ends. Done more times than A's
/// thread quota: each such part must be forgotten once it has ended, else
/// they pile up charged to A and its next splits are refused `OverQuota`
/// (found by the stress, as `OverQuota` refusals of alert-breaks and
/// terminations in its long runs).
#[test]
fn a_part_split_off_an_upper_part_is_forgotten_once_it_ends() {
    use tern_core::control::ActivationAction;
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let c = system.server("c", 1, STACK);
    let a_to_b = system.grant(&b, a);
    let b_to_c = system.grant(&c, b.domain);
    let controller = system.enter(a);
    let worker = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 64 << 10]).unwrap() as u32;
    let worker = tern_core::thread::ThreadId::new(worker).unwrap();
    system.leave(controller);
    let threads = system.kernel.objects.thread_count();
    let rounds = 3 * tern_core::quota::Quota::DEFAULT.limit(Resource::Threads);
    let mut carrier = worker;
    let end_with_return = |system: &mut System, domain| {
        let answer = system.region(domain) + 0x3000;
        system.message(answer, 1, &[]);
        assert_eq!(system.invoke(Call::Return, &[answer, 16]), Next::EndThread(0));
        system.kernel.end_current_thread(0);
    };
    for round in 0..rounds {
        system.switch_to(carrier);
        let base = system.top(carrier);
        let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
        let length = system.message(request, 1, &[]);
        assert_eq!(system.call(a_to_b, (request, length), (reply, 64)), Next::Resume);
        let in_b = system.top(carrier);
        let (b_request, b_reply) = (system.region(b.domain) + 0x1000, system.region(b.domain) + 0x2000);
        let b_length = system.message(b_request, 2, &[]);
        assert_eq!(system.call(b_to_c, (b_request, b_length), (b_reply, 64)), Next::Resume);
        let upper = carrier;
        system.switch_to(system.boot);
        let broken = system.kernel.control_activation(base, ActivationAction::AlertBreak);
        assert!(broken.is_ok(), "round {round}: {broken:?}");
        let lower = system.activation(base).occupant.unwrap();
        let broken = system.kernel.control_activation(in_b, ActivationAction::AlertBreak);
        assert!(broken.is_ok(), "round {round}: {broken:?}");
        let b_part = system.activation(in_b).occupant.unwrap();
        // B's part returns to nobody, then C's: both end.
        system.frames.remove(&b_part);
        system.switch_to(b_part);
        end_with_return(&mut system, b.domain);
        system.switch_to(upper);
        end_with_return(&mut system, c.domain);
        system.frames.remove(&lower);
        system.switch_to(lower);
        assert_eq!(system.current_frame().result(), Err(Error::Interrupted), "round {round}");
        carrier = lower;
        assert!(used(&system, a, Resource::Threads) <= 4, "round {round}: A's charge grows");
    }
    assert!(system.kernel.objects.thread_count() <= threads + 3, "parts pile up");
}

/// A thread of A calling B is split three times over (the kernel breaks
/// its base activation off while it is in B, and again in the part that
/// carries it, and again), its split-off parts taking thread numbers below
/// its own; then the parts left in B return to nobody and end, the second
/// before the third, then the original's. However the parts end, the join
/// on the thread A made must follow its base to the part carrying it now.
/// (Before, a part past its end was cut out of the chain but kept its own
/// link; a later part's end then redirected that dead link instead of the
/// live one, and the live one, left naming a part forgotten soon after,
/// was cleared: the join returned the original's result while the base
/// ran on — found by the stress as workers "ended" inside their loops.)
#[test]
fn a_join_follows_the_base_through_every_split() {
    use tern_core::control::ActivationAction;
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 4, STACK);
    let name = system.grant(&b, a);
    let controller = system.enter(a);
    let create = |system: &mut System| {
        let thread = system.ok(Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 1, 64 << 10]).unwrap() as u32;
        tern_core::thread::ThreadId::new(thread).unwrap()
    };
    // Threads made before the worker, ended and forgotten: their numbers,
    // below the worker's, go to the parts split off it.
    let fillers: Vec<_> = (0..3).map(|_| create(&mut system)).collect();
    let worker = create(&mut system);
    system.leave(controller);
    for filler in fillers {
        system.switch_to(filler);
        assert_eq!(system.invoke(Call::Exit, &[0]), Next::ExitUpcall(0));
        system.kernel.end_current_thread(0);
        system.switch_to(system.boot);
        system.kernel.join_thread(filler).unwrap();
        system.kernel.reap_joined(filler);
    }
    // Three splits; each leaves a part in B: the worker's own, then two.
    let mut carrier = worker;
    let mut in_b = Vec::new();
    for split in 0..3 {
        system.switch_to(carrier);
        let base = system.top(carrier);
        let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
        let length = system.message(request, 1, &[]);
        assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
        system.switch_to(system.boot);
        assert!(system.kernel.control_activation(base, ActivationAction::AlertBreak).is_ok(), "split {split}");
        let lower = system.activation(base).occupant.unwrap();
        assert!(lower.get() < worker.get(), "a part below the worker's number");
        in_b.push(carrier);
        system.frames.remove(&lower);
        carrier = lower;
    }
    // The parts in B return to nobody and end: the second, the third, the
    // worker's own (a split in between forgets the ended ones).
    let end_in_b = |system: &mut System, part| {
        system.switch_to(part);
        let answer = system.region(b.domain) + 0x3000;
        system.message(answer, 1, &[]);
        assert_eq!(system.invoke(Call::Return, &[answer, 16]), Next::EndThread(0));
        system.kernel.end_current_thread(0);
    };
    end_in_b(&mut system, in_b[1]);
    end_in_b(&mut system, in_b[2]);
    system.switch_to(system.boot);
    system.kernel.reap_detached();
    end_in_b(&mut system, in_b[0]);
    system.switch_to(system.boot);
    assert_eq!(system.kernel.join_thread(worker), Ok(None), "the base runs on, in {carrier:?}");
    system.kernel.objects.thread_mut(system.boot).unwrap().state = ThreadState::Running;
    // The base's part ends: the join has its result.
    system.switch_to(carrier);
    assert_eq!(system.invoke(Call::Exit, &[7]), Next::ExitUpcall(7));
    system.kernel.end_current_thread(7);
    system.switch_to(system.boot);
    assert_eq!(system.kernel.join_thread(worker), Ok(Some(7)));
}
