//! # tern-checksum: data that must arrive intact, both ways
//!
//! `checksum` reads every byte of its request and writes every byte of its
//! reply, so a test can check that a message crossed the kernel intact in
//! each direction, and a benchmark can set the two sizes independently
//! (a large request with a small reply, or the reverse).
//!
//! Protocol:
//!
//! - request: label = the reply payload size wanted, from
//!   [`REPLY_SIZE_MIN`] (8) to [`REPLY_SIZE_MAX`] (32 KiB); payload = any
//!   bytes, up to 32 KiB;
//! - reply, label [`OK`]: the 64-bit FNV-1a hash of the request payload
//!   ([`fnv1a64`]), 8 bytes little-endian, then `size − 8` pattern bytes,
//!   byte `i` of the pattern being `(i × 31 + 7) mod 256` ([`pattern_byte`]);
//! - reply, label [`BAD_REQUEST`], empty: the size asked for is out of
//!   range.
//!
//! The hash, the pattern and the whole check of a reply
//! ([`verify_reply`]) are public so that clients verify with the same code
//! the server answers with: a client fills its request with
//! [`fill_pattern`] (or anything), calls, and checks the reply.
//!
//! FNV-1a because it is a few lines, has no table, and catches the faults
//! that matter here (a byte dropped, moved or left stale), not because it
//! resists anyone trying to fool it.
//!
//! Left out: any state at all — the server keeps none beyond its pool
//! growth policy, so it needs no lock.
//!
//! A production server: in every image through `board/image`. It depends on
//! the in-kernel-server layer (`tern-inks`) and the kernel's ABI (`tern-
//! core`) only, never on the arch crate or another server's code; it has no
//! `unsafe` (merging it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use tern_core::abi::{Error, PAYLOAD_MAX, PortName};
use tern_inks::service::{self, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(CHECKSUM, "checksum", main);

/// The name `checksum` registers its port under.
pub const NAME: &str = "checksum";
/// Reply label: the reply holds the checksum and the pattern.
pub const OK: u32 = 0;
/// Reply label: the size asked for (the request's label) is out of range.
pub const BAD_REQUEST: u32 = 2;
/// Bytes of the checksum at the start of a reply's payload.
pub const CHECKSUM_BYTES: usize = 8;
/// Smallest reply payload a request may ask for: the checksum alone.
pub const REPLY_SIZE_MIN: usize = CHECKSUM_BYTES;
/// Largest reply payload a request may ask for.
pub const REPLY_SIZE_MAX: usize = PAYLOAD_MAX;

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME))
}

/// Byte `index` of the pattern: `(index × 31 + 7) mod 256`.
pub const fn pattern_byte(index: usize) -> u8 {
    index.wrapping_mul(31).wrapping_add(7) as u8
}

/// Fill `out` with the pattern, from byte 0 of the pattern.
pub fn fill_pattern(out: &mut [u8]) {
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = pattern_byte(index);
    }
}

/// The first index at which `bytes` departs from the pattern, if any.
pub fn pattern_mismatch(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().position(|(index, &byte)| byte != pattern_byte(index))
}

/// Whether `size` is a reply size a request may ask for.
pub fn valid_reply_size(size: usize) -> bool {
    (REPLY_SIZE_MIN..=REPLY_SIZE_MAX).contains(&size)
}

/// Write the reply to `request_payload` into `out`, whose length is the
/// reply size: the checksum, then the pattern. [`Error::InvalidArgument`]
/// (and nothing written) if that length is not a valid reply size.
pub fn encode_reply(request_payload: &[u8], out: &mut [u8]) -> Result<(), Error> {
    if !valid_reply_size(out.len()) {
        return Err(Error::InvalidArgument);
    }
    let (checksum, pattern) = out.split_at_mut(CHECKSUM_BYTES);
    checksum.copy_from_slice(&fnv1a64(request_payload).to_le_bytes());
    fill_pattern(pattern);
    Ok(())
}

/// How a reply departs from what it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The reply's payload is not the size asked for.
    Length {
        /// Size asked for.
        expected: usize,
        /// Size received.
        actual: usize,
    },
    /// The checksum is not the request payload's.
    Checksum {
        /// The request payload's hash, computed by the client.
        expected: u64,
        /// The hash in the reply.
        actual: u64,
    },
    /// The pattern is wrong from this index (counted from the first
    /// pattern byte, just after the checksum).
    Pattern {
        /// First wrong pattern byte.
        index: usize,
    },
}

/// Check a reply's payload against the request payload sent and the size
/// asked for.
pub fn verify_reply(request_payload: &[u8], size: usize, reply_payload: &[u8]) -> Result<(), Mismatch> {
    if reply_payload.len() != size || size < CHECKSUM_BYTES {
        return Err(Mismatch::Length { expected: size, actual: reply_payload.len() });
    }
    let (checksum, pattern) = reply_payload.split_at(CHECKSUM_BYTES);
    let mut word = [0u8; CHECKSUM_BYTES];
    word.copy_from_slice(checksum);
    let (expected, actual) = (fnv1a64(request_payload), u64::from_le_bytes(word));
    if expected != actual {
        return Err(Mismatch::Checksum { expected, actual });
    }
    match pattern_mismatch(pattern) {
        Some(index) => Err(Mismatch::Pattern { index }),
        None => Ok(()),
    }
}

/// The checksum server's state: only how far its pool may grow.
#[derive(Debug)]
pub struct Checksum {
    growth: PoolGrowth,
}

impl Checksum {
    /// A fresh server.
    pub const fn new() -> Self {
        Checksum { growth: PoolGrowth::standard() }
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

impl Service for Checksum {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let size = request.label() as usize;
        if !valid_reply_size(size) {
            reply.set_label(BAD_REQUEST);
            return;
        }
        match reply.payload_mut(size) {
            Ok(out) => {
                // The size was checked above, so this cannot fail.
                let _ = encode_reply(request.payload, out);
                reply.set_label(OK);
            }
            Err(_) => reply.set_label(service::LABEL_REPLY_TOO_LARGE),
        }
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create a port, register it as [`NAME`], serve it as
/// `mode` says.
fn main(mode: usize) -> usize {
    service::start(Some(NAME), Checksum::new(), mode)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::mem::MaybeUninit;
    use std::vec;
    use tern_inks::service::{MessageBuffer, MessageView};

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_pattern_is_as_specified() {
        assert_eq!([pattern_byte(0), pattern_byte(1), pattern_byte(2)], [7, 38, 69]);
        assert_eq!(pattern_byte(8), (8 * 31 + 7) as u8);
        let mut bytes = [0u8; 300];
        fill_pattern(&mut bytes);
        assert_eq!(pattern_mismatch(&bytes), None);
        bytes[257] ^= 1;
        assert_eq!(pattern_mismatch(&bytes), Some(257));
    }

    /// Ask the server for `size` bytes about `payload`; the reply's label
    /// and payload.
    fn ask(payload: &[u8], size: u32) -> (u32, vec::Vec<u8>) {
        let mut storage = MessageBuffer::new().into_storage();
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        Checksum::new().handle(&MessageView::new(size, payload), &mut reply);
        (reply.label(), reply.payload().to_vec())
    }

    #[test]
    fn replies_verify_at_every_edge_size() {
        let mut request = vec![0u8; PAYLOAD_MAX];
        fill_pattern(&mut request);
        for request_size in [0, 1, 100, PAYLOAD_MAX] {
            for size in [REPLY_SIZE_MIN, 9, 4096, REPLY_SIZE_MAX] {
                let payload = &request[..request_size];
                let (label, reply) = ask(payload, size as u32);
                assert_eq!(label, OK);
                assert_eq!(verify_reply(payload, size, &reply), Ok(()), "{request_size} -> {size}");
            }
        }
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        for size in [0, 7, REPLY_SIZE_MAX as u32 + 1, u32::MAX] {
            assert_eq!(ask(b"data", size), (BAD_REQUEST, vec![]), "{size}");
        }
    }

    #[test]
    fn verification_finds_each_kind_of_damage() {
        let (_, good) = ask(b"request", 64);
        assert_eq!(verify_reply(b"request", 64, &good), Ok(()));
        assert_eq!(verify_reply(b"request", 65, &good), Err(Mismatch::Length { expected: 65, actual: 64 }));
        assert_eq!(verify_reply(b"request", 4, &good[..4]), Err(Mismatch::Length { expected: 4, actual: 4 }));
        assert!(matches!(verify_reply(b"requesT", 64, &good), Err(Mismatch::Checksum { .. })));
        let mut damaged = good.clone();
        damaged[CHECKSUM_BYTES + 10] = 0;
        assert_eq!(verify_reply(b"request", 64, &damaged), Err(Mismatch::Pattern { index: 10 }));
    }

    #[test]
    fn encoding_checks_the_size() {
        let mut short = [0u8; 7];
        assert_eq!(encode_reply(b"", &mut short), Err(Error::InvalidArgument));
        assert_eq!(short, [0; 7]);
        let mut exact = [0u8; 8];
        encode_reply(b"a", &mut exact).unwrap();
        assert_eq!(exact, 0xaf63_dc4c_8601_ec8cu64.to_le_bytes());
    }

    #[test]
    fn a_reply_buffer_too_small_is_reported() {
        let mut storage = [MaybeUninit::uninit(); 32];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        Checksum::new().handle(&MessageView::new(64, b"x"), &mut reply);
        assert_eq!(reply.label(), service::LABEL_REPLY_TOO_LARGE);
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_POOL), Error::NoSuchCall as usize);
    }
}
