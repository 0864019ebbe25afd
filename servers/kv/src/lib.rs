//! # tern-kv: a key-value store behind a port
//!
//! `kv` keeps byte-string keys and values in a map on its domain's heap and
//! serves three operations. It is the example of a server with shared,
//! mutable state: several clients' threads can be inside it at once (in
//! pool activations and in server threads), so the map sits behind one
//! lock, held only while the map is read or changed.
//!
//! Protocol (the request's label is the operation; reply labels are
//! statuses):
//!
//! | operation | request payload | reply |
//! |---|---|---|
//! | [`PUT`] = 1 | key length (`u16`, little-endian), key, value | [`OK`] or [`FULL`] |
//! | [`GET`] = 2 | key | [`OK`] with the value, or [`NOT_FOUND`] |
//! | [`DELETE`] = 3 | key | [`OK`] or [`NOT_FOUND`] |
//!
//! Any other label, or a `PUT` whose key length runs past its payload, is
//! answered with [`BAD_REQUEST`]. Keys and values are any bytes (the empty
//! key too); a `PUT` to an existing key replaces its value.
//!
//! [`Operation`] encodes and decodes requests, so clients build them with
//! the same code the server reads them with.
//!
//! The store is bounded ([`STORE_BYTES_MAX`] bytes of keys and values,
//! [`ENTRIES_MAX`] entries): the domain's heap is fixed in size, and a
//! client filling it must get [`FULL`], not bring the server down for
//! everyone by exhausting it.
//!
//! Left out: persistence, iteration over keys, and atomic
//! read-modify-write operations.
//!
//! A production server: in every image through `board/image`. It depends on
//! the in-kernel-server layer (`tern-inks`) and the kernel's ABI (`tern-
//! core`) only, never on the arch crate or another server's code; it has no
//! `unsafe` (merging it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use tern_core::abi::{Error, PAYLOAD_MAX, PortName};
use tern_inks::service::{self, MessageBuffer, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(KV, "kv", main);

/// The name `kv` registers its port under.
pub const NAME: &str = "kv";

/// Request label: store a value under a key.
pub const PUT: u32 = 1;
/// Request label: fetch the value stored under a key.
pub const GET: u32 = 2;
/// Request label: remove a key.
pub const DELETE: u32 = 3;

/// Reply label: done (for [`GET`], the payload is the value).
pub const OK: u32 = 0;
/// Reply label: the request was malformed or its operation unknown.
pub const BAD_REQUEST: u32 = 2;
/// Reply label: no value is stored under the key.
pub const NOT_FOUND: u32 = 3;
/// Reply label: storing the value would take the store past its bounds;
/// nothing was changed.
pub const FULL: u32 = 4;

/// Most bytes of keys and values the store holds in all.
pub const STORE_BYTES_MAX: usize = 128 * 1024;
/// Most entries the store holds.
pub const ENTRIES_MAX: usize = 1024;
/// Bytes of the key length at the start of a [`PUT`] payload.
pub const KEY_LENGTH_BYTES: usize = 2;

/// A request to the store, decoded (or to be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Store `value` under `key`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Fetch the value under `key`.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
}

impl<'a> Operation<'a> {
    /// Decode a request's label and payload; `None` if it is not one.
    pub fn decode(label: u32, payload: &'a [u8]) -> Option<Self> {
        match label {
            PUT => {
                let (length, rest) = payload.split_first_chunk::<KEY_LENGTH_BYTES>()?;
                let key_length = usize::from(u16::from_le_bytes(*length));
                let key = rest.get(..key_length)?;
                let value = rest.get(key_length..)?;
                Some(Operation::Put { key, value })
            }
            GET => Some(Operation::Get { key: payload }),
            DELETE => Some(Operation::Delete { key: payload }),
            _ => None,
        }
    }

    /// The request label for this operation.
    pub fn label(&self) -> u32 {
        match self {
            Operation::Put { .. } => PUT,
            Operation::Get { .. } => GET,
            Operation::Delete { .. } => DELETE,
        }
    }

    /// Bytes of this operation's request payload.
    pub fn encoded_length(&self) -> usize {
        match self {
            Operation::Put { key, value } => KEY_LENGTH_BYTES + key.len() + value.len(),
            Operation::Get { key } | Operation::Delete { key } => key.len(),
        }
    }

    /// Write this operation's request payload into `out`; the bytes
    /// written. [`Error::InvalidArgument`] if a key is longer than a `u16`
    /// can say or the payload would exceed [`PAYLOAD_MAX`];
    /// [`Error::BadMessage`] if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let length = self.checked_length()?;
        let out = out.get_mut(..length).ok_or(Error::BadMessage)?;
        match self {
            Operation::Put { key, value } => {
                let (prefix, rest) = out.split_at_mut(KEY_LENGTH_BYTES);
                let (key_bytes, value_bytes) = rest.split_at_mut(key.len());
                prefix.copy_from_slice(&(key.len() as u16).to_le_bytes());
                key_bytes.copy_from_slice(key);
                value_bytes.copy_from_slice(value);
            }
            Operation::Get { key } | Operation::Delete { key } => out.copy_from_slice(key),
        }
        Ok(length)
    }

    /// Make `buffer` this operation's request: its label and payload (the
    /// right it carries, if any, is left as it was). Errors as
    /// [`Operation::encode`].
    pub fn write_request<Storage>(&self, buffer: &mut MessageBuffer<Storage>) -> Result<(), Error>
    where
        Storage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
    {
        let length = self.checked_length()?;
        self.encode(buffer.payload_mut(length)?)?;
        buffer.set_label(self.label());
        Ok(())
    }

    /// [`Operation::encoded_length`], if the operation can be sent at all.
    fn checked_length(&self) -> Result<usize, Error> {
        let length = self.encoded_length();
        let key_fits = match self {
            Operation::Put { key, .. } => key.len() <= usize::from(u16::MAX),
            Operation::Get { .. } | Operation::Delete { .. } => true,
        };
        if !key_fits || length > PAYLOAD_MAX {
            return Err(Error::InvalidArgument);
        }
        Ok(length)
    }
}

/// The map and the bytes it holds.
#[derive(Debug, Default)]
struct Table {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Bytes of all keys and values.
    bytes: usize,
}

/// The key-value server's state.
#[derive(Debug)]
pub struct Store {
    table: tern_inks::sync::Mutex<Table>,
    growth: PoolGrowth,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store { table: tern_inks::sync::Mutex::new(Table::default()), growth: PoolGrowth::standard() }
    }

    /// Store `value` under `key`: [`OK`], or [`FULL`] (and no change) if the
    /// store would pass [`STORE_BYTES_MAX`] or [`ENTRIES_MAX`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> u32 {
        let mut table = self.table.lock();
        let (replaced_bytes, new_entries) = match table.entries.get(key) {
            Some(old) => (key.len() + old.len(), 0),
            None => (0, 1),
        };
        let bytes = table.bytes - replaced_bytes + key.len() + value.len();
        if bytes > STORE_BYTES_MAX || table.entries.len() + new_entries > ENTRIES_MAX {
            return FULL;
        }
        table.entries.insert(key.to_vec(), value.to_vec());
        table.bytes = bytes;
        OK
    }

    /// Call `with` on the value under `key` (`None` if there is none),
    /// while the store is locked.
    pub fn get<Answer>(&self, key: &[u8], with: impl FnOnce(Option<&[u8]>) -> Answer) -> Answer {
        with(self.table.lock().entries.get(key).map(Vec::as_slice))
    }

    /// Remove `key`: [`OK`], or [`NOT_FOUND`].
    pub fn delete(&self, key: &[u8]) -> u32 {
        let mut table = self.table.lock();
        match table.entries.remove(key) {
            Some(value) => {
                table.bytes -= key.len() + value.len();
                OK
            }
            None => NOT_FOUND,
        }
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values stored.
    pub fn bytes(&self) -> usize {
        self.table.lock().bytes
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Service for Store {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let status = match Operation::decode(request.label(), request.payload) {
            Some(Operation::Put { key, value }) => self.put(key, value),
            Some(Operation::Get { key }) => self.get(key, |value| match value {
                // A stored value came in a request payload, so it fits a
                // reply payload; the fallback is for smaller test buffers.
                Some(value) => match reply.set_payload(value) {
                    Ok(()) => OK,
                    Err(_) => service::LABEL_REPLY_TOO_LARGE,
                },
                None => NOT_FOUND,
            }),
            Some(Operation::Delete { key }) => self.delete(key),
            None => BAD_REQUEST,
        };
        reply.set_label(status);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create a port, register it as [`NAME`], serve it as
/// `mode` says.
fn main(mode: usize) -> usize {
    service::start(Some(NAME), Store::new(), mode)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec;
    use tern_inks::service::MessageView;

    /// Send `operation` through the protocol to `store`; the reply's label
    /// and payload.
    fn ask(store: &Store, operation: Operation<'_>) -> (u32, Vec<u8>) {
        let mut request = MessageBuffer::new();
        operation.write_request(&mut request).unwrap();
        let mut storage = MessageBuffer::new().into_storage();
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        store.handle(&request.view(), &mut reply);
        (reply.label(), reply.payload().to_vec())
    }

    fn put(store: &Store, key: &[u8], value: &[u8]) -> u32 {
        let (label, payload) = ask(store, Operation::Put { key, value });
        assert!(payload.is_empty());
        label
    }

    fn get(store: &Store, key: &[u8]) -> (u32, Vec<u8>) {
        ask(store, Operation::Get { key })
    }

    fn delete(store: &Store, key: &[u8]) -> u32 {
        ask(store, Operation::Delete { key }).0
    }

    #[test]
    fn operations_round_trip_through_the_encoding() {
        let operations = [
            Operation::Put { key: b"key", value: b"value" },
            Operation::Put { key: b"", value: b"" },
            Operation::Put { key: b"k", value: &[0; 100] },
            Operation::Get { key: b"key" },
            Operation::Delete { key: b"" },
        ];
        for operation in operations {
            let mut bytes = [0u8; 256];
            let length = operation.encode(&mut bytes).unwrap();
            assert_eq!(length, operation.encoded_length());
            assert_eq!(Operation::decode(operation.label(), &bytes[..length]), Some(operation));
        }
        let mut bytes = [0u8; 16];
        assert_eq!(Operation::Put { key: b"ab", value: b"cd" }.encode(&mut bytes), Ok(6));
        assert_eq!(&bytes[..6], b"\x02\x00abcd");
    }

    #[test]
    fn malformed_requests_do_not_decode() {
        assert_eq!(Operation::decode(PUT, b""), None);
        assert_eq!(Operation::decode(PUT, b"\x05"), None);
        assert_eq!(Operation::decode(PUT, b"\x05\x00abc"), None);
        assert_eq!(Operation::decode(PUT, b"\x03\x00abc"), Some(Operation::Put { key: b"abc", value: b"" }));
        assert_eq!(Operation::decode(0, b"abc"), None);
        assert_eq!(Operation::decode(4, b"abc"), None);
        let store = Store::new();
        let mut storage = [MaybeUninit::uninit(); 64];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        store.handle(&MessageView::new(PUT, b"\xff\xff"), &mut reply);
        assert_eq!(reply.label(), BAD_REQUEST);
        store.handle(&MessageView::new(99, b"key"), &mut reply);
        assert_eq!(reply.label(), BAD_REQUEST);
        assert!(store.is_empty());
    }

    #[test]
    fn encoding_refuses_what_cannot_be_sent() {
        let long_key = vec![0u8; usize::from(u16::MAX) + 1];
        let mut big = vec![0u8; 2 * PAYLOAD_MAX];
        assert_eq!(Operation::Put { key: &long_key, value: b"" }.encode(&mut big), Err(Error::InvalidArgument));
        let value = vec![0u8; PAYLOAD_MAX - 3];
        assert_eq!(Operation::Put { key: b"ab", value: &value }.encode(&mut big), Err(Error::InvalidArgument));
        assert_eq!(Operation::Put { key: b"a", value: &value }.encode(&mut big), Ok(PAYLOAD_MAX));
        assert_eq!(Operation::Get { key: b"abc" }.encode(&mut [0u8; 2]), Err(Error::BadMessage));
        let mut request = MessageBuffer::with_payload_capacity(4);
        assert_eq!(Operation::Get { key: b"abcde" }.write_request(&mut request), Err(Error::BadMessage));
    }

    #[test]
    fn put_get_delete() {
        let store = Store::new();
        assert_eq!(get(&store, b"a"), (NOT_FOUND, vec![]));
        assert_eq!(put(&store, b"a", b"one"), OK);
        assert_eq!(put(&store, b"b", b"two"), OK);
        assert_eq!(get(&store, b"a"), (OK, b"one".to_vec()));
        assert_eq!(get(&store, b"b"), (OK, b"two".to_vec()));
        assert_eq!(put(&store, b"a", b"uno"), OK, "a put replaces");
        assert_eq!(get(&store, b"a"), (OK, b"uno".to_vec()));
        assert_eq!(delete(&store, b"a"), OK);
        assert_eq!(delete(&store, b"a"), NOT_FOUND);
        assert_eq!(get(&store, b"a"), (NOT_FOUND, vec![]));
        assert_eq!(get(&store, b"b"), (OK, b"two".to_vec()));
        assert_eq!((store.len(), store.bytes()), (1, 4));
    }

    #[test]
    fn empty_keys_and_values_are_values_too() {
        let store = Store::new();
        assert_eq!(put(&store, b"", b""), OK);
        assert_eq!(get(&store, b""), (OK, vec![]));
        assert_eq!(put(&store, b"k", b""), OK);
        assert_eq!(get(&store, b"k"), (OK, vec![]));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_largest_value_comes_back_whole() {
        let store = Store::new();
        let value: Vec<u8> = (0..PAYLOAD_MAX - 3).map(|index| index as u8).collect();
        assert_eq!(put(&store, b"k", &value), OK);
        assert_eq!(get(&store, b"k"), (OK, value));
    }

    #[test]
    fn the_store_is_bounded_in_bytes() {
        let store = Store::new();
        let value = vec![7u8; 16 * 1024 - 1];
        for key in 0..8u8 {
            assert_eq!(put(&store, &[key], &value), OK, "{key}");
        }
        assert_eq!(store.bytes(), STORE_BYTES_MAX);
        assert_eq!(put(&store, b"x", b""), FULL);
        assert_eq!(put(&store, &[0], &[1; 16 * 1024]), FULL, "growing a value past the bound");
        assert_eq!(get(&store, &[0]), (OK, value.clone()), "a refused put changes nothing");
        assert_eq!(put(&store, &[0], b"small"), OK, "shrinking a value is fine");
        assert_eq!(put(&store, b"x", b""), OK);
        assert_eq!(delete(&store, &[1]), OK);
        assert_eq!(store.bytes(), STORE_BYTES_MAX - 2 * 16 * 1024 + 6 + 1);
    }

    #[test]
    fn the_store_is_bounded_in_entries() {
        let store = Store::new();
        for key in 0..ENTRIES_MAX as u16 {
            assert_eq!(store.put(&key.to_le_bytes(), b""), OK);
        }
        assert_eq!(store.put(b"one more", b""), FULL);
        assert_eq!(store.put(&0u16.to_le_bytes(), b"replacing is fine"), OK);
        assert_eq!(store.delete(&0u16.to_le_bytes()), OK);
        assert_eq!(store.put(b"one more", b""), OK);
    }

    #[test]
    fn a_reply_buffer_too_small_is_reported() {
        let store = Store::new();
        store.put(b"k", b"a value longer than the buffer");
        let mut storage = [MaybeUninit::uninit(); 24];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        store.handle(&MessageView::new(GET, b"k"), &mut reply);
        assert_eq!(reply.label(), service::LABEL_REPLY_TOO_LARGE);
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_THREADS), Error::NoSuchCall as usize);
    }
}
