//! # tern-hello: the first two protected domains
//!
//! `hello.ping` and `hello.pong` run at EL0, each in its own translation
//! table with its own ASID, and reach the kernel only through the service
//! gate. Each upcall prints one line saying who it is (domain number, the
//! round the kernel asked for, and the kernel's version string copied into
//! the domain's own stack) and returns a value derived from its arguments,
//! which the kernel checks — so a test sees both that the domains ran and
//! that values crossed the boundary intact both ways.
//!
//! Safe Rust only, like every server: these domains are as trusted as any
//! other EL0 code, which is to say not at all.
//!
//! A test server: linked only into harness images (`board/harness`), never
//! into the production image. It depends on the in-kernel-server layer
//! (`tern-inks`) and the kernel's ABI (`tern-core`) only, never on the arch
//! crate or another server's code; it has no `unsafe` (merging it changes
//! how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

use tern_inks::gate;

tern_inks::domain!(PING, "hello.ping", ping);
tern_inks::domain!(PONG, "hello.pong", pong);

/// What `hello.ping` returns for `round`: the kernel checks it.
pub const fn ping_answer(round: usize, domain: usize) -> usize {
    round * 1000 + domain
}

/// What `hello.pong` returns for `round`.
pub const fn pong_answer(round: usize, domain: usize) -> usize {
    round * 1000 + domain + 500
}

fn greet(role: &str, round: usize) -> usize {
    let domain = gate::who_am_i();
    let mut version = [0u8; 64];
    let version = match gate::version(&mut version) {
        Ok(length) => core::str::from_utf8(&version[..length]).unwrap_or("?"),
        Err(_) => "?",
    };
    tern_inks::println!("[hello.{role}] round {round}: hello from EL0, domain {domain}, kernel {version}");
    domain
}

fn ping(round: usize) -> usize {
    ping_answer(round, greet("ping", round))
}

fn pong(round: usize) -> usize {
    pong_answer(round, greet("pong", round))
}
