//! Calls served, per port and per domain: the general path counts each
//! call it routes in the port's `served`; the fast paths count theirs in
//! the port's `fast_*` fields (played here by setting them, as the
//! assembly would), which a reader of the statistics folds into the
//! machine-wide figures; a port that goes leaves its count to its domain.

mod support;

use support::{STACK, Server, System};
use tern_core::abi::Call;
use tern_core::domain::DomainId;
use tern_core::kernel::Next;
use tern_core::machine::RpcStatistics;

/// The calls served `server`'s port has counted.
fn served(system: &System, server: &Server) -> u64 {
    system.kernel.objects.port(server.port).expect("the port").calls_served()
}

/// A client domain and a server with a pool of `pool`; the client's name
/// for the server's port.
fn client_and_server(pool: usize) -> (System, DomainId, Server, u32) {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", pool, STACK);
    let name = system.grant(&server, client);
    (system, client, server, name)
}

/// A call from the current thread, in `client`, with a small request.
fn call(system: &mut System, client: DomainId, name: u32, at: u64) -> Next<tern_core::mock::MockSwitch> {
    let (request, reply) = (system.region(client) + at, system.region(client) + at + 0x800);
    let length = system.message(request, 1, &[1; 8]);
    system.call(name, (request, length), (reply, 64))
}

/// The fast paths' counts, as the assembly leaves them in the port.
fn fast_counts(system: &mut System, server: &Server, migrated: u64, direct: u64, handed_off: u64) {
    let port = system.kernel.objects.port_mut(server.port).expect("the port");
    port.fast_migrated += migrated;
    port.fast_direct += direct;
    port.fast_handed_off += handed_off;
}

#[test]
fn a_migrating_call_is_served_once_and_a_waiting_one_once_it_migrates() {
    let (mut system, client, server, name) = client_and_server(1);
    let boot = system.boot;
    let second = system.thread(client, 0);
    system.enter(client);
    assert_eq!(served(&system, &server), 0);
    assert_eq!(call(&mut system, client, name, 0x1000), Next::Resume);
    assert_eq!(served(&system, &server), 1);

    // The pool is empty: the second caller waits, which is not a call served.
    system.switch_to(second);
    assert_eq!(call(&mut system, client, name, 0x3000), Next::BlockThenRepeat);
    assert_eq!(served(&system, &server), 1);

    system.switch_to(boot);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 3, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert_eq!(served(&system, &server), 1, "a return is not a call");
    system.switch_to(second);
    assert_eq!(system.repeat(), Next::Resume);
    assert_eq!(served(&system, &server), 2, "the waiter's call, once it migrated");
    assert_eq!(system.kernel.calls_served(server.domain), 2);
    assert_eq!(system.kernel.calls_served(client), 0, "a client serves nothing");
}

#[test]
fn handed_off_and_queued_calls_are_served_by_the_port() {
    let (mut system, client, server, name) = client_and_server(0);
    let boot = system.boot;
    let worker = system.thread(server.domain, 0);
    let second = system.thread(client, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    system.switch_to(boot);
    system.enter(client);
    assert!(matches!(call(&mut system, client, name, 0x1000), Next::Switch(_)), "handed off");
    assert_eq!(served(&system, &server), 1);
    system.switch_to(second);
    assert_eq!(call(&mut system, client, name, 0x3000), Next::Block, "queued");
    assert_eq!(served(&system, &server), 2);

    // The worker takes the queued request: the same call, not another.
    system.switch_to(worker);
    let answer = system.region(server.domain) + 0x2000;
    let answer_length = system.message(answer, 10, &[10; 2]);
    let next = system.invoke(Call::ReplyReceive, &[answer, answer_length, server.name as u64, buffer, 256]);
    assert_eq!(next, Next::Resume);
    assert_eq!(served(&system, &server), 2);
    let statistics = system.kernel.statistics();
    assert_eq!((statistics.handed_off, statistics.queued), (1, 1));
    assert_eq!(system.kernel.calls_served(server.domain), 2);
}

#[test]
fn a_refused_call_is_not_served() {
    let (mut system, client, server, name) = client_and_server(1);
    system.enter(client);
    let request = system.region(client) + 0x1000;
    let length = system.message(request, 1, &[1; 8]);
    let before = system.snapshot();
    let outside = system.region(server.domain);
    assert_eq!(system.call(name, (request, length), (outside, 64)), Next::Resume);
    assert!(system.current_frame().result().is_err(), "a reply buffer not the client's");
    system.assert_unchanged(&before, "a refused call");
    assert_eq!(served(&system, &server), 0);
}

#[test]
fn reading_the_statistics_folds_the_fast_paths_counts_in_exactly() {
    let (mut system, client, server, name) = client_and_server(2);
    let other = system.serve(server.domain, 1, STACK);
    system.enter(client);
    assert_eq!(call(&mut system, client, name, 0x1000), Next::Resume);
    let general = *system.kernel.statistics();
    assert_eq!(general.migrated, 1);

    fast_counts(&mut system, &server, 3, 5, 7);
    fast_counts(&mut system, &other, 11, 0, 2);
    assert_eq!(served(&system, &server), 1 + 15, "a port's figure needs no fold");
    assert_eq!(served(&system, &other), 13);
    assert_eq!(system.kernel.calls_served(server.domain), 29);

    let folded = *system.kernel.statistics();
    let expected = RpcStatistics {
        migrated: general.migrated + 3 + 11,
        direct: general.direct + 5,
        handed_off: general.handed_off + 2 + 7,
        ..general
    };
    assert_eq!(folded, expected, "the fast paths' counts, and nothing else");
    let port = system.kernel.objects.port(server.port).expect("the port");
    assert_eq!((port.fast_migrated, port.fast_direct, port.fast_handed_off, port.served), (0, 0, 0, 16));
    assert_eq!(served(&system, &other), 13, "a fold changes no port's figure");
    assert_eq!(system.kernel.calls_served(server.domain), 29);
    assert_eq!(*system.kernel.statistics(), folded, "a second read folds nothing more");
}

#[test]
fn a_destroyed_ports_calls_stay_with_its_domain_and_in_the_statistics() {
    let (mut system, client, server, name) = client_and_server(1);
    let kept = system.serve(server.domain, 1, STACK);
    system.enter(client);
    assert_eq!(call(&mut system, client, name, 0x1000), Next::Resume);
    fast_counts(&mut system, &server, 4, 0, 1);
    fast_counts(&mut system, &kept, 2, 3, 0);
    let before = system.kernel.calls_served(server.domain);
    assert_eq!(before, 1 + 5 + 5);

    // Destroyed while its one activation serves the call: it goes when the
    // call returns.
    system.kernel.destroy_port(server.port);
    assert_eq!(system.kernel.calls_served(server.domain), before);
    let answer = system.region(server.domain) + 0x1000;
    system.message(answer, 3, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, 16]), Ok(16));
    assert!(system.kernel.objects.port(server.port).is_none(), "gone with its last activation");
    assert_eq!(system.kernel.calls_served(server.domain), before, "the domain keeps the gone port's calls");

    // Destroyed idle: it goes at once.
    system.kernel.destroy_port(kept.port);
    assert!(system.kernel.objects.port(kept.port).is_none());
    assert_eq!(system.kernel.calls_served(server.domain), before);

    let statistics = *system.kernel.statistics();
    assert_eq!((statistics.migrated, statistics.direct, statistics.handed_off), (1 + 4 + 2, 3, 1));
}
