//! `Caller` (call 45): the domain whose call a server is serving, which
//! servers key per-client state by (the file server's open-file tables).
//!
//! Checked here on the mock machine: a pool activation sees its client's
//! domain, a nested call sees the domain just below it (never the chain's
//! bottom), a server thread sees the client it took the request of, merged
//! domains answer with their own numbers, and anything that serves no
//! call — a thread's own activation, a server thread between requests, an
//! activation whose client split off below it — gets `NotInCall`. Left
//! out: the fast paths, which never see this call (it is general-path
//! only, like `WhoAmI`).

mod support;

use support::{STACK, System};
use tern_core::abi::{Call, DomainMode, Error};
use tern_core::kernel::Next;

#[test]
fn a_pool_activation_sees_its_clients_domain_and_a_client_sees_none() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    system.enter(client);
    assert_eq!(system.ok(Call::Caller, &[]), Err(Error::NotInCall), "a thread's own activation serves nobody");
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.ok(Call::Caller, &[]), Ok(client.0 as usize));
    assert_eq!(system.ok(Call::WhoAmI, &[]), Ok(server.domain.0 as usize), "and it is still itself");
    let answer = system.region(server.domain) + 0x1000;
    let answer_length = system.message(answer, 0, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, answer_length]), Ok(16));
    assert_eq!(system.ok(Call::Caller, &[]), Err(Error::NotInCall), "back in the client");
}

#[test]
fn a_nested_call_sees_the_domain_just_below() {
    let mut system = System::new();
    let a = system.domain("a");
    let b = system.server("b", 1, STACK);
    let c = system.server("c", 1, STACK);
    let a_to_b = system.grant(&b, a);
    let b_to_c = system.grant(&c, b.domain);
    system.enter(a);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(a_to_b, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.ok(Call::Caller, &[]), Ok(a.0 as usize));
    let (b_request, b_reply) = (system.region(b.domain) + 0x1000, system.region(b.domain) + 0x2000);
    let b_length = system.message(b_request, 2, &[]);
    assert_eq!(system.call(b_to_c, (b_request, b_length), (b_reply, 64)), Next::Resume);
    assert_eq!(system.ok(Call::Caller, &[]), Ok(b.domain.0 as usize), "c serves b, not a");
    let answer = system.region(c.domain) + 0x1000;
    let answer_length = system.message(answer, 0, &[]);
    assert_eq!(system.ok(Call::Return, &[answer, answer_length]), Ok(16));
    assert_eq!(system.ok(Call::Caller, &[]), Ok(a.0 as usize), "back in b, which serves a");
}

#[test]
fn a_server_thread_sees_the_client_it_serves_and_none_between_requests() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 0, STACK);
    let name = system.grant(&server, client);
    let worker = system.thread(server.domain, 0);
    let buffer = system.region(server.domain) + 0x1000;
    system.switch_to(worker);
    assert_eq!(system.ok(Call::Caller, &[]), Err(Error::NotInCall), "before any request");
    assert_eq!(system.invoke(Call::Receive, &[server.name as u64, buffer, 256]), Next::Block);
    let _ = system.kernel.run_next();
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 7, &[7; 8]);
    assert!(matches!(system.call(name, (request, length), (reply, 64)), Next::Switch(_)));
    assert_eq!(system.kernel.current(), worker);
    assert_eq!(system.ok(Call::Caller, &[]), Ok(client.0 as usize));
}

#[test]
fn merged_domains_answer_with_their_own_numbers() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    for domain in [client, server.domain] {
        system.kernel.domain_mut(domain).unwrap().mode = DomainMode::Merged;
    }
    system.enter(client);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    assert_eq!(system.ok(Call::Caller, &[]), Ok(client.0 as usize), "not the kernel domain's");
}

#[test]
fn an_activation_whose_client_split_off_serves_nobody() {
    let mut system = System::new();
    let client = system.domain("client");
    let server = system.server("server", 1, STACK);
    let name = system.grant(&server, client);
    let thread = system.thread(client, 5);
    system.switch_to(thread);
    let base = system.top(thread);
    let (request, reply) = (system.region(client) + 0x1000, system.region(client) + 0x2000);
    let length = system.message(request, 1, &[]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    let in_server = system.top(thread);
    // The client's domain breaks the chain just above its own activation:
    // the part above goes on as a thread of its own, serving nobody.
    system.switch_to(system.boot);
    let controller = system.enter(client);
    assert_eq!(system.ok(Call::AlertBreak, &[u64::from(base.get())]), Ok(2));
    system.leave(controller);
    assert_eq!(system.chain(thread), [in_server], "the part above carries on");
    system.switch_to(thread);
    assert_eq!(system.ok(Call::Caller, &[]), Err(Error::NotInCall));
}
