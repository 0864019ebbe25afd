//! # tern-names: the name service
//!
//! Every domain starts with one capability: name 0
//! ([`NAME_SERVICE`](tern_core::abi::NAME_SERVICE)), a send right to the
//! port this domain creates first. Through it a server makes its port
//! findable ([`tern_inks::service::register`]) and a client finds it
//! ([`tern_inks::service::lookup`]): names are how rights get around
//! without every domain being wired to every other at boot.
//!
//! The protocol is [`tern_inks::service::naming`]: `REGISTER` carries a
//! name in its payload and the right to register in its header; `LOOKUP`
//! carries a name and is answered with the right. The table maps names to
//! port names *in this domain's space* — the kernel rewrites a right's name
//! on the way in and on the way out, so the table never holds another
//! domain's names.
//!
//! Why a server and not a kernel table: the kernel stays a mechanism for
//! moving rights; which names exist, who may take them, and what happens
//! when one is taken twice are policy, and live here (first come, first
//! served).
//!
//! Left out: unregistering (the kernel cannot yet tell us a port has died,
//! and has no call to drop a right), access control on names, and
//! notifications. A failed registration leaves this domain holding the
//! right it carried, for the same reason.
//!
//! A production server: in every image through `board/image`. It depends on
//! the in-kernel-server layer (`tern-inks`) and the kernel's ABI (`tern-
//! core`) only, never on the arch crate or another server's code; it has no
//! `unsafe` (merging it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use tern_core::abi::PortName;
use tern_inks::service::{self, PoolGrowth, Reply, Request, Service, naming};

tern_inks::domain!(NAMES, "names", main, NameService);

/// The name service's state: name → port (named in this domain's space).
#[derive(Debug)]
pub struct Names {
    table: spin::Mutex<BTreeMap<String, PortName>>,
    growth: PoolGrowth,
}

impl Names {
    /// An empty table.
    pub fn new() -> Self {
        Names { table: spin::Mutex::new(BTreeMap::new()), growth: PoolGrowth::standard() }
    }

    /// Register `port` under `name`: [`naming::OK`], or [`naming::TAKEN`] if
    /// the name is registered already for another port (the first
    /// registration stays). Registering the same port again is `OK`: a
    /// server the kernel restarted keeps its ports, and registers them
    /// again as it starts.
    pub fn register(&self, name: &str, port: PortName) -> u32 {
        let mut table = self.table.lock();
        if let Some(&registered) = table.get(name) {
            return if registered == port { naming::OK } else { naming::TAKEN };
        }
        table.insert(name.to_string(), port);
        naming::OK
    }

    /// The port registered under `name`, if any.
    pub fn lookup(&self, name: &str) -> Option<PortName> {
        self.table.lock().get(name).copied()
    }

    /// How many names are registered.
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no name is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

impl Service for Names {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let name = naming::valid_name(request.payload);
        let status = match (request.label(), name, request.right()) {
            (naming::REGISTER, Some(name), Some(port)) => self.register(name, port),
            (naming::LOOKUP, Some(name), _) => match self.lookup(name) {
                Some(port) => {
                    reply.transfer(port);
                    naming::OK
                }
                None => naming::NOT_FOUND,
            },
            _ => naming::BAD_REQUEST,
        };
        reply.set_label(status);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create the port (the kernel makes the first port of
/// the domain named `names` everyone's name 0) and serve it as `mode` says.
fn main(mode: usize) -> usize {
    service::start(None, Names::new(), mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::MaybeUninit;
    use tern_core::abi::Error;
    use tern_inks::service::{MessageBuffer, MessageView};

    /// Run one request through `handle`; the reply's label and right.
    fn ask(names: &Names, request: MessageView<'_>) -> (u32, Option<PortName>) {
        let mut storage = [MaybeUninit::uninit(); 128];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        names.handle(&request, &mut reply);
        assert!(reply.payload().is_empty());
        (reply.label(), reply.right())
    }

    fn register(names: &Names, name: &[u8], port: PortName) -> (u32, Option<PortName>) {
        ask(names, MessageView::new(naming::REGISTER, name).with_right(port))
    }

    fn lookup(names: &Names, name: &[u8]) -> (u32, Option<PortName>) {
        ask(names, MessageView::new(naming::LOOKUP, name))
    }

    #[test]
    fn registered_names_are_found_with_their_right() {
        let names = Names::new();
        assert_eq!(register(&names, b"echo", 7), (naming::OK, None));
        assert_eq!(register(&names, b"kv", 9), (naming::OK, None));
        assert_eq!(lookup(&names, b"echo"), (naming::OK, Some(7)));
        assert_eq!(lookup(&names, b"kv"), (naming::OK, Some(9)));
        assert_eq!(lookup(&names, b"echo"), (naming::OK, Some(7)), "a lookup does not use the name up");
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn unknown_names_are_not_found() {
        let names = Names::new();
        assert!(names.is_empty());
        assert_eq!(lookup(&names, b"nobody"), (naming::NOT_FOUND, None));
        register(&names, b"echo", 7);
        assert_eq!(lookup(&names, b"ech"), (naming::NOT_FOUND, None));
        assert_eq!(lookup(&names, b"echo2"), (naming::NOT_FOUND, None));
    }

    #[test]
    fn the_first_registration_of_a_name_stays() {
        let names = Names::new();
        assert_eq!(register(&names, b"echo", 7), (naming::OK, None));
        assert_eq!(register(&names, b"echo", 8), (naming::TAKEN, None));
        assert_eq!(lookup(&names, b"echo"), (naming::OK, Some(7)));
        assert_eq!(register(&names, b"echo", 7), (naming::OK, None), "the same port again: a restart");
    }

    #[test]
    fn malformed_requests_are_refused() {
        let names = Names::new();
        let long = [b'n'; naming::NAME_MAX + 1];
        assert_eq!(ask(&names, MessageView::new(naming::REGISTER, b"echo")), (naming::BAD_REQUEST, None), "no right");
        assert_eq!(register(&names, b"", 7), (naming::BAD_REQUEST, None));
        assert_eq!(register(&names, &long, 7), (naming::BAD_REQUEST, None));
        assert_eq!(register(&names, &[0xc3, 0x28], 7), (naming::BAD_REQUEST, None));
        assert_eq!(lookup(&names, &long), (naming::BAD_REQUEST, None));
        assert_eq!(ask(&names, MessageView::new(99, b"echo")), (naming::BAD_REQUEST, None));
        assert!(names.is_empty());
        assert_eq!(register(&names, &long[..naming::NAME_MAX], 7), (naming::OK, None));
    }

    #[test]
    fn client_side_decoding_agrees_with_the_server() {
        let names = Names::new();
        let mut storage = [MaybeUninit::uninit(); 128];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        names.handle(&MessageView::new(naming::REGISTER, b"echo").with_right(4), &mut reply);
        assert_eq!(naming::register_outcome(&reply.view()), Ok(()));
        reply.clear();
        names.handle(&MessageView::new(naming::REGISTER, b"echo").with_right(5), &mut reply);
        assert_eq!(naming::register_outcome(&reply.view()), Err(Error::InvalidArgument));
        reply.clear();
        names.handle(&MessageView::new(naming::LOOKUP, b"echo"), &mut reply);
        assert_eq!(naming::lookup_outcome(&reply.view()), Ok(4));
        reply.clear();
        names.handle(&MessageView::new(naming::LOOKUP, b"none"), &mut reply);
        assert_eq!(naming::lookup_outcome(&reply.view()), Err(Error::NoSuchPort));
    }

    #[test]
    fn the_pool_grows_a_little_and_then_stops() {
        let names = Names::new();
        let mut total = 0;
        for _ in 0..10 {
            total += names.pool_low(0, 1);
        }
        assert_eq!(total, service::POOL_GROWTH_LIMIT);
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_POOL), Error::NoSuchCall as usize);
    }
}
