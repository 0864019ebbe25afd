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
//! carries a name and is answered with the right; `LIST` is answered with
//! every name and its port's name in this domain's space, no right (what
//! `kernel.system` needs to print the names beside the ports: the kernel
//! can read this domain's space, nobody else can). The table maps names to
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
use alloc::vec::Vec;
use tern_core::abi::PortName;
use tern_inks::service::{self, PoolGrowth, Reply, Request, Service, naming};

tern_inks::domain!(NAMES, "names", main, NameService);

/// The name service's state: name → port (named in this domain's space).
#[derive(Debug)]
pub struct Names {
    table: tern_inks::sync::Mutex<BTreeMap<String, PortName>>,
    growth: PoolGrowth,
}

impl Names {
    /// An empty table.
    pub fn new() -> Self {
        Names { table: tern_inks::sync::Mutex::new(BTreeMap::new()), growth: PoolGrowth::standard() }
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

    /// The [`naming::LIST`] reply: its payload (every name and its port,
    /// in name order, as many as fit in [`naming::LIST_MAX`] bytes) and
    /// whether all fit.
    pub fn list(&self) -> (Vec<u8>, bool) {
        let table = self.table.lock();
        let mut payload = Vec::new();
        let complete =
            table.iter().all(|(name, &port)| naming::encode_entry(&mut payload, name, port, naming::LIST_MAX));
        (payload, complete)
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
            (naming::LIST, None, None) if request.payload.is_empty() => {
                let (payload, complete) = self.list();
                if reply.set_payload(&payload).is_err() {
                    naming::PARTIAL // no entry at all: a reply buffer under LIST_MAX (not the runtime's)
                } else if complete {
                    naming::OK
                } else {
                    naming::PARTIAL
                }
            }
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

    /// A `LIST` request's reply: its label and payload.
    fn list(names: &Names) -> (u32, Vec<u8>) {
        let mut storage = alloc::vec![MaybeUninit::uninit(); 16 + naming::LIST_MAX];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        names.handle(&MessageView::new(naming::LIST, b""), &mut reply);
        assert_eq!(reply.right(), None, "a list carries no right");
        assert_eq!(naming::list_outcome(&reply.view()), Ok(reply.label() == naming::OK));
        (reply.label(), reply.payload().to_vec())
    }

    #[test]
    fn list_answers_every_name_with_its_port_in_name_order() {
        let names = Names::new();
        assert_eq!(list(&names), (naming::OK, Vec::new()), "nothing registered");
        register(&names, b"kv", 9);
        register(&names, b"echo", 7);
        register(&names, b"echo2", 7);
        let (label, payload) = list(&names);
        assert_eq!(label, naming::OK);
        let mut expected = Vec::new();
        expected.extend_from_slice(&7u32.to_le_bytes());
        expected.push(4);
        expected.extend_from_slice(b"echo");
        assert_eq!(&payload[..9], &expected[..], "port (u32 little-endian), length, name");
        let entries: Vec<(PortName, &str)> = naming::entries(&payload).collect();
        assert_eq!(entries, [(7, "echo"), (7, "echo2"), (9, "kv")]);
        assert_eq!(payload.len(), 3 * 5 + 4 + 5 + 2);
    }

    #[test]
    fn a_list_longer_than_its_limit_is_cut_at_an_entry_and_says_so() {
        let names = Names::new();
        // 64 names of 64 bytes: 69 bytes an entry, 59 fit in 4096.
        for index in 0..64u32 {
            let name = alloc::format!("{index:02}{}", "n".repeat(naming::NAME_MAX - 2));
            assert_eq!(register(&names, name.as_bytes(), index + 1), (naming::OK, None));
        }
        let (label, payload) = list(&names);
        assert_eq!(label, naming::PARTIAL);
        let entries: Vec<(PortName, &str)> = naming::entries(&payload).collect();
        assert_eq!(entries.len(), naming::LIST_MAX / (5 + naming::NAME_MAX));
        assert_eq!(payload.len(), entries.len() * (5 + naming::NAME_MAX), "whole entries only");
        assert!(entries.iter().enumerate().all(|(at, &(port, _))| port == at as u32 + 1), "the first ones, in order");
    }

    #[test]
    fn a_list_request_with_a_payload_or_a_right_is_refused() {
        let names = Names::new();
        register(&names, b"echo", 7);
        assert_eq!(ask(&names, MessageView::new(naming::LIST, b"echo")), (naming::BAD_REQUEST, None));
        assert_eq!(ask(&names, MessageView::new(naming::LIST, b"").with_right(3)), (naming::BAD_REQUEST, None));
    }

    #[test]
    fn list_entries_stop_at_the_first_malformed_one() {
        let mut payload = Vec::new();
        assert!(naming::encode_entry(&mut payload, "echo", 7, naming::LIST_MAX));
        assert!(naming::encode_entry(&mut payload, "kv", 9, naming::LIST_MAX));
        let limit = payload.len() + 6;
        assert!(!naming::encode_entry(&mut payload, "fs", 2, limit), "over the limit: nothing appended");
        assert_eq!(payload.len(), 9 + 7);
        let whole: Vec<_> = naming::entries(&payload).collect();
        assert_eq!(whole, [(7, "echo"), (9, "kv")]);
        let cut: Vec<_> = naming::entries(&payload[..payload.len() - 1]).collect();
        assert_eq!(cut, [(7, "echo")], "a cut entry is not one");
        let mut bad = payload.clone();
        bad[4] = 0; // an empty name
        assert_eq!(naming::entries(&bad).count(), 0);
        let mut long = Vec::new();
        assert!(!naming::encode_entry(&mut long, &"n".repeat(naming::NAME_MAX + 1), 1, naming::LIST_MAX));
        assert!(long.is_empty());
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_POOL), Error::NoSuchCall as usize);
    }
}
