//! # tern-echo: the server that does nothing, measurably
//!
//! `echo` answers every request with the request's own label and payload.
//! It is the RPC benchmark's baseline: with no work in the server, the
//! time of a round trip is the time of the RPC mechanism itself (plus one
//! copy of the payload each way), so the migrating and switching paths can
//! be compared directly (Ford & Lepreau's null RPC), and payload sizes
//! from 0 to 32 KiB show what copying costs.
//!
//! It also serves as the plainest example of a server: a unit of state
//! (here only the pool-growth policy), a `handle` that fills in the reply,
//! and a main that creates a port, registers it as `echo` and serves it.
//!
//! A second domain, `echo.threads`, serves the same `Echo` on a port
//! registered as [`THREADS_NAME`] with one server thread only: the
//! switching (static-thread) baseline the shell's `bench` compares the
//! migrating paths with. A domain of its own, not a second port of
//! `echo`'s: a server thread occupies an activation of its domain for
//! good, and a domain with an occupied activation cannot change mode, so
//! `echo` itself could no longer be merged.
//!
//! Left out: the right a request may carry is not sent back (a right
//! arriving here stays in this domain's space; the kernel has no call to
//! drop it), and nothing is logged per request, which would dwarf what is
//! being measured.
//!
//! A production server: in every image through `board/image`. It depends on
//! the in-kernel-server layer (`tern-inks`) and the kernel's ABI (`tern-
//! core`) only, never on the arch crate or another server's code; it has no
//! `unsafe` (merging it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use tern_core::abi::PortName;
use tern_inks::service::{self, Lent, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(ECHO, "echo", main);
tern_inks::domain!(ECHO_THREADS, "echo.threads", threads_main);

/// The name `echo` registers its port under.
pub const NAME: &str = "echo";
/// The name its second port, served by a server thread only, is
/// registered under.
pub const THREADS_NAME: &str = "echo.threads";
/// Server threads serving [`THREADS_NAME`].
pub const THREADS: usize = 1;

/// The echo server's state: only how far its pool may grow.
#[derive(Debug)]
pub struct Echo {
    growth: PoolGrowth,
}

impl Echo {
    /// A fresh server.
    pub const fn new() -> Self {
        Echo { growth: PoolGrowth::standard() }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Service for Echo {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        reply.set_label(request.label());
        if reply.set_payload(request.payload).is_err() {
            // Only a reply buffer smaller than a message (in tests) gets here.
            reply.set_label(service::LABEL_REPLY_TOO_LARGE);
        }
    }

    /// A lent region: read-only, echoed back as the reply's payload;
    /// read-write, reversed in place (the reply carries no payload).
    fn handle_lent(&self, request: &Request<'_>, lent: Lent<'_>, reply: &mut Reply<'_>) {
        reply.set_label(request.label());
        let answered = match lent {
            Lent::ReadOnly(bytes) => reply.set_payload(bytes),
            Lent::ReadWrite(bytes) => {
                bytes.reverse();
                Ok(())
            }
        };
        if answered.is_err() {
            reply.set_label(service::LABEL_REPLY_TOO_LARGE);
        }
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create a port, register it as [`NAME`], serve it as
/// `mode` says.
fn main(mode: usize) -> usize {
    service::start(Some(NAME), Echo::new(), mode)
}

/// `echo.threads`' main: create a port, register it as [`THREADS_NAME`],
/// serve it with [`THREADS`] server thread, whatever the mode (this
/// domain is the switching baseline). 0, or the first error's code.
fn threads_main(_mode: usize) -> usize {
    let threads = || -> Result<(), tern_core::abi::Error> {
        let port = tern_inks::gate::port_create()?;
        service::register(THREADS_NAME, port)?;
        let echo: &'static Echo = alloc::boxed::Box::leak(alloc::boxed::Box::new(Echo::new()));
        service::serve(echo, port, service::MODE_THREADS, 1, THREADS, service::DEFAULT_STACK_BYTES)
    };
    threads().map_or_else(|error| error as usize, |()| 0)
}

#[cfg(test)]
mod tests {
    use tern_core::abi::Error;
    extern crate std;

    use super::*;
    use std::vec::Vec;
    use tern_core::abi::PAYLOAD_MAX;
    use tern_inks::service::{MessageBuffer, MessageView};

    #[test]
    fn replies_repeat_label_and_payload() {
        let echo = Echo::new();
        let mut storage = MessageBuffer::new().into_storage();
        let payloads: [&[u8]; 3] = [b"", b"hello", &[0xa5; 1000]];
        for (label, payload) in (0u32..).zip(payloads) {
            let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
            echo.handle(&MessageView::new(label, payload), &mut reply);
            assert_eq!(reply.label(), label);
            assert_eq!(reply.payload(), payload);
            assert_eq!(reply.right(), None);
        }
    }

    #[test]
    fn the_largest_payload_comes_back_whole() {
        let payload: Vec<u8> = (0..PAYLOAD_MAX).map(|index| (index % 251) as u8).collect();
        let mut storage = MessageBuffer::new().into_storage();
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        Echo::new().handle(&MessageView::new(u32::MAX - 100, &payload), &mut reply);
        assert_eq!(reply.label(), u32::MAX - 100);
        assert_eq!(reply.payload(), &payload[..]);
        assert_eq!(reply.message().len(), 16 + PAYLOAD_MAX);
    }

    #[test]
    fn rights_are_not_sent_back() {
        let mut storage = [core::mem::MaybeUninit::uninit(); 64];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        Echo::new().handle(&MessageView::new(1, b"x").with_right(3), &mut reply);
        assert_eq!(reply.right(), None);
    }

    #[test]
    fn a_reply_buffer_too_small_is_reported() {
        let mut storage = [core::mem::MaybeUninit::uninit(); 20];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        Echo::new().handle(&MessageView::new(1, b"too long"), &mut reply);
        assert_eq!(reply.label(), service::LABEL_REPLY_TOO_LARGE);
        assert!(reply.payload().is_empty());
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_BOTH), Error::NoSuchCall as usize);
    }
}
