//! # The chainload protocol: Tern kernels over the serial cable
//!
//! Copying `kernel8.img` to an SD card for every build wears out cards and
//! patience. The chainloader (`tern-chainload.img`, this package's binary)
//! goes on the card once, in the kernel's place: the Pi firmware starts it
//! at 0x80000 as it would start Tern, it moves itself out of the way,
//! asks for a kernel on the PL011 UART (GPIO14/15, 115200 8N1), receives
//! one from `cargo xtask push`, checks it and starts it at 0x80000 with
//! the firmware's `x0` (the device tree) untouched. This library is the
//! protocol both ends speak, written once: the loader links it for
//! `aarch64-unknown-none`, the xtask for the host, and its unit tests run
//! on the host.
//!
//! ## The conversation
//!
//! ```text
//! loader                                    host (cargo xtask push)
//!   banner line (text)                 ->
//!   REQUEST tag, again every second    ->   waits for a REQUEST tag
//!                                      <-   header (24 bytes)
//!   HEADER_ACCEPTED tag                ->   (or TOO_LARGE, BAD_ADDRESS,
//!                                            BAD_HEADER: the host gives up
//!                                            on the first two, retries the
//!                                            third)
//!                                      <-   payload (size bytes)
//!   LOADED tag, then jumps             ->   becomes the console
//!   (or CRC_MISMATCH / TIMEOUT, a text line saying why, and a REQUEST
//!    again: the host retries, a bounded number of times)
//! ```
//!
//! **Tags** (loader to host) are [`TAG_PREFIX`] (`00 00 'T' 'L'`) and one
//! [`Reply`] byte. The loader's text never contains `0x00`, and neither
//! does Tern's console text, so a tag cannot be mistaken for text; two
//! `0x00` in a row do not occur in the kernel's defmt stream either (each
//! frame ends with one `0x00` and the next starts with `0x01`), so a host
//! listening before the Pi resets is not fooled by the old kernel's output.
//! Around the tags the loader writes readable lines (a banner, the reason
//! for each refusal, with numbers), so a plain terminal shows what happens.
//!
//! **The header** (host to loader, [`HEADER_LEN`] bytes, little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | [`MAGIC`] `"TKRN"` |
//! | 4 | 4 | payload size in bytes, 1 to the loader's limit |
//! | 8 | 8 | load address: must be [`LOAD_ADDRESS`] |
//! | 16 | 4 | CRC-32 of the payload |
//! | 20 | 4 | CRC-32 of bytes 0..20 (the header's own check) |
//!
//! The loader finds the header by scanning for the magic (its four bytes
//! are all different, so a failed partial match can restart at the current
//! byte), which skips line noise from plugging in a cable. The header's own
//! CRC keeps a corrupted size or address from being believed: without it a
//! flipped bit in the size would make the loader wait for bytes that never
//! come, and one in the address would be refused for the wrong reason.
//!
//! **The payload** is written straight to [`LOAD_ADDRESS`] as it arrives:
//! the loader runs elsewhere ([`LINK_ADDRESS`]), so a failed transfer
//! costs nothing but a retry, and no buffer is needed. Its CRC-32 (IEEE
//! 802.3, the zlib/PNG one) is computed byte by byte as it arrives and
//! compared at the end. The loader allows [`BYTE_TIMEOUT_MS`] between
//! bytes once a header has started; past that it reports [`Reply::Timeout`]
//! and asks again.
//!
//! ## Where things are in memory
//!
//! * `0 .. 0x8_0000`: the firmware's (its spin table for cores 1-3 at
//!   `0xd8..0xf0`; QEMU's ATAG list at `0x100`): never written.
//! * [`LOAD_ADDRESS`] `.. + MAX_KERNEL_SIZE` (64 MiB): the kernel.
//! * [`LINK_ADDRESS`] (96 MiB) `.. + LOADER_WINDOW`: the running loader:
//!   code, data, stack.
//! * The device tree: the Pi firmware puts it high in the first GiB, below
//!   the VideoCore's memory; QEMU `raspi4b` passes ATAGs at `0x100`, or with
//!   `-dtb` puts the device tree at 128 MiB (after the initrd area that
//!   `hw/arm/boot.c` keeps at `min(RAM / 2, 128 MiB)`). None of those is in
//!   either window above, but the loader checks ([`size_limit`]): when
//!   `x0` holds a device tree (its big-endian magic [`DEVICE_TREE_MAGIC`];
//!   the loader reads it only where [`may_peek`] allows) the tree takes
//!   `totalsize` bytes from `x0`, anything else one byte. Boot information
//!   inside the kernel's window lowers the size limit so the kernel ends
//!   before it; boot information that covers 0x80000 or overlaps the
//!   loader's window leaves no safe place, and the loader says so and parks.
//!
//! ## What it leaves out
//!
//! Baud-rate negotiation (both ends use the rate the loader was built with,
//! [`BAUD`]), compression, resuming a broken transfer, authentication (whoever
//! holds the cable runs code: it is a developer tool), loading anywhere but
//! 0x80000, and a second core.

#![cfg_attr(not(test), no_std)]

/// Where the kernel goes and is started: where the Pi firmware would have
/// put `kernel8.img`.
pub const LOAD_ADDRESS: u64 = 0x8_0000;
/// The largest kernel the loader accepts: 64 MiB (a Tern image is well under
/// 1 MiB; the cap keeps the kernel clear of the loader).
pub const MAX_KERNEL_SIZE: u32 = 64 << 20;
/// Where the loader is linked and runs after moving itself: 96 MiB, above
/// the kernel's window and below the 128 MiB where QEMU puts a device tree.
pub const LINK_ADDRESS: u64 = 0x0600_0000;
/// How much memory from [`LINK_ADDRESS`] the running loader may use (image,
/// `.bss`, stack); the linker script's layout must fit (checked by the
/// xtask).
pub const LOADER_WINDOW: u64 = 64 * 1024;
/// The raw loader image must stay under this many bytes (it is a few KiB;
/// the xtask refuses a bigger build).
pub const MAX_LOADER_IMAGE: u64 = 16 * 1024;
/// The line speed both ends use.
pub const BAUD: u32 = 115_200;

const _: () = assert!(LOAD_ADDRESS + MAX_KERNEL_SIZE as u64 <= LINK_ADDRESS, "the kernel window reaches the loader");
const _: () = assert!(LINK_ADDRESS + LOADER_WINDOW <= 0x0800_0000, "the loader reaches QEMU's device tree");
const _: () = assert!(MAX_LOADER_IMAGE < LOADER_WINDOW);

/// The header's first four bytes (all different: see the module docs).
pub const MAGIC: [u8; 4] = *b"TKRN";
/// The header's length in bytes.
pub const HEADER_LEN: usize = 24;
/// What starts every tag the loader sends; one [`Reply`] byte follows.
pub const TAG_PREFIX: [u8; 4] = [0x00, 0x00, b'T', b'L'];
/// How long the loader waits for the next byte once a header has begun.
pub const BYTE_TIMEOUT_MS: u64 = 2_000;
/// How often an idle loader repeats its request.
pub const REQUEST_INTERVAL_MS: u64 = 1_000;

/// What the loader says, as the byte after [`TAG_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Ready: send a header.
    Request,
    /// The header is good: send the payload.
    HeaderAccepted,
    /// The size is 0 or over the loader's limit (not worth retrying).
    TooLarge,
    /// The load address is not [`LOAD_ADDRESS`] (not worth retrying).
    BadAddress,
    /// The header's own CRC-32 does not match (line noise: retry).
    BadHeader,
    /// The payload's CRC-32 does not match the header's (retry).
    CrcMismatch,
    /// The host stopped sending mid-header or mid-payload (retry).
    Timeout,
    /// The kernel is in place and checked; the loader jumps to it now.
    Loaded,
}

impl Reply {
    /// Every reply, for tests and tables.
    pub const ALL: [Reply; 8] = [
        Reply::Request,
        Reply::HeaderAccepted,
        Reply::TooLarge,
        Reply::BadAddress,
        Reply::BadHeader,
        Reply::CrcMismatch,
        Reply::Timeout,
        Reply::Loaded,
    ];

    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Reply::Request => b'?',
            Reply::HeaderAccepted => b'H',
            Reply::TooLarge => b'S',
            Reply::BadAddress => b'A',
            Reply::BadHeader => b'h',
            Reply::CrcMismatch => b'C',
            Reply::Timeout => b'T',
            Reply::Loaded => b'K',
        }
    }

    /// The reply a wire byte stands for.
    pub fn from_code(code: u8) -> Option<Reply> {
        Reply::ALL.into_iter().find(|reply| reply.code() == code)
    }

    /// The whole tag: prefix and code.
    pub const fn tag(self) -> [u8; 5] {
        let [a, b, c, d] = TAG_PREFIX;
        [a, b, c, d, self.code()]
    }

    /// A short description, for people.
    pub const fn describe(self) -> &'static str {
        match self {
            Reply::Request => "ready for a kernel",
            Reply::HeaderAccepted => "header accepted",
            Reply::TooLarge => "refused: size is 0 or over the loader's limit",
            Reply::BadAddress => "refused: load address is not 0x80000",
            Reply::BadHeader => "refused: the header's CRC-32 does not match (corrupted on the line)",
            Reply::CrcMismatch => "the payload's CRC-32 does not match the header's",
            Reply::Timeout => "timed out waiting for the next byte",
            Reply::Loaded => "kernel loaded and checked; starting it",
        }
    }
}

/// What precedes the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload size in bytes.
    pub size: u32,
    /// Where to load and start it ([`LOAD_ADDRESS`]).
    pub load_address: u64,
    /// CRC-32 of the payload.
    pub crc: u32,
}

impl Header {
    /// The header for `payload`, to load at [`LOAD_ADDRESS`]. `None` if the
    /// payload does not fit a `u32` size.
    pub fn for_payload(payload: &[u8]) -> Option<Header> {
        Some(Header { size: u32::try_from(payload.len()).ok()?, load_address: LOAD_ADDRESS, crc: crc32(payload) })
    }

    /// The bytes on the wire.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4..8].copy_from_slice(&self.size.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.load_address.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.crc.to_le_bytes());
        let check = crc32(&bytes[..20]);
        bytes[20..24].copy_from_slice(&check.to_le_bytes());
        bytes
    }

    /// Reads and checks a header: the magic and the header's CRC first
    /// ([`Reply::BadHeader`]), then the address ([`Reply::BadAddress`]),
    /// then the size against `limit` ([`Reply::TooLarge`]). A refusal
    /// carries the fields as read, for the loader's message.
    pub fn decode(bytes: &[u8; HEADER_LEN], limit: u32) -> Result<Header, Refusal> {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let load_address = u64::from(word(8)) | (u64::from(word(12)) << 32);
        let header = Header { size: word(4), load_address, crc: word(16) };
        let refuse = |reply| Err(Refusal { reply, header });
        if bytes[0..4] != MAGIC || crc32(&bytes[..20]) != word(20) {
            return refuse(Reply::BadHeader);
        }
        if header.load_address != LOAD_ADDRESS {
            return refuse(Reply::BadAddress);
        }
        if header.size == 0 || header.size > limit {
            return refuse(Reply::TooLarge);
        }
        Ok(header)
    }
}

/// Why [`Header::decode`] refused a header, with the fields it read (not to
/// be trusted after [`Reply::BadHeader`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What the loader answers.
    pub reply: Reply,
    /// The header's fields as they arrived.
    pub header: Header,
}

/// The reflected IEEE 802.3 polynomial (CRC-32 of zlib, PNG, Ethernet).
const POLYNOMIAL: u32 = 0xedb8_8320;

/// A running CRC-32, fed a byte at a time.
///
/// Bitwise, without the usual 1 KiB table, on purpose: the loader runs with
/// the MMU off, where every load is an uncached memory access, so eight
/// register-only shift-and-xor steps per byte beat a table lookup, and the
/// loader stays small. The host hashes a kernel once per push (under a
/// megabyte: milliseconds either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

impl Crc32 {
    /// A CRC over no bytes yet.
    pub const fn new() -> Crc32 {
        Crc32(!0)
    }

    /// Adds one byte.
    #[inline(always)]
    pub const fn update(self, byte: u8) -> Crc32 {
        let mut crc = self.0 ^ byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = (crc >> 1) ^ (POLYNOMIAL & (crc & 1).wrapping_neg());
            bit += 1;
        }
        Crc32(crc)
    }

    /// The CRC of the bytes so far.
    pub const fn value(self) -> u32 {
        !self.0
    }
}

/// The CRC-32 of `data`.
pub const fn crc32(data: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    let mut i = 0;
    while i < data.len() {
        crc = crc.update(data[i]);
        i += 1;
    }
    crc.value()
}

/// Matches [`MAGIC`] one byte at a time, for the loader's scan.
#[derive(Debug, Default, Clone, Copy)]
pub struct MagicScanner {
    matched: usize,
}

impl MagicScanner {
    /// Feeds one byte; true when it completes the magic (then starts over).
    pub fn push(&mut self, byte: u8) -> bool {
        if MAGIC.get(self.matched) == Some(&byte) {
            self.matched += 1;
        } else {
            // The magic's bytes are all different, so only its first byte
            // can begin a new match here.
            self.matched = usize::from(byte == MAGIC[0]);
        }
        if self.matched == MAGIC.len() {
            self.matched = 0;
            return true;
        }
        false
    }
}

const _: () = {
    // MagicScanner's restart rule needs the magic's bytes to differ.
    let mut i = 0;
    while i < MAGIC.len() {
        let mut j = i + 1;
        while j < MAGIC.len() {
            assert!(MAGIC[i] != MAGIC[j]);
            j += 1;
        }
        i += 1;
    }
};

/// A flattened device tree's first word (big-endian in memory).
pub const DEVICE_TREE_MAGIC: u32 = 0xd00d_feed;
/// The loader reads the boot information's first eight bytes only below
/// this address (1 GiB: RAM on every Pi 4 and on QEMU `raspi4b`), and only
/// at an 8-byte aligned address (as a device tree must be), so the read
/// cannot fault.
pub const PEEK_LIMIT: u64 = 1 << 30;

/// Whether the loader may read the eight bytes at `boot_information` (see
/// [`PEEK_LIMIT`]).
pub const fn may_peek(boot_information: u64) -> bool {
    boot_information.is_multiple_of(8) && boot_information <= PEEK_LIMIT - 8
}

/// How many bytes from `x0` the boot information takes, from its first two
/// big-endian words (as read, converted to numbers): a device tree's
/// `totalsize` (at least 1), or 1 for anything else (ATAGs, or nothing the
/// loader could read): of those only the first byte is known to be taken.
pub const fn boot_information_len(magic: u32, total_size: u32) -> u64 {
    if magic == DEVICE_TREE_MAGIC && total_size > 0 { total_size as u64 } else { 1 }
}

/// Why the loader cannot take a kernel at all with this boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// It overlaps the loader's own window at [`LINK_ADDRESS`].
    LoaderWindow,
    /// It covers [`LOAD_ADDRESS`] (starting there or below and running into
    /// the kernel's window): no kernel fits before it.
    KernelAddress,
}

impl Clash {
    /// A short description, for people.
    pub const fn describe(self) -> &'static str {
        match self {
            Clash::LoaderWindow => "overlaps the loader's own memory",
            Clash::KernelAddress => "covers the kernel's load address 0x80000",
        }
    }
}

/// The kernel-size limit when the boot information (`x0`) takes
/// `[start, start + len)`: [`MAX_KERNEL_SIZE`], or less so that the kernel
/// ends where a device tree inside its window begins; a [`Clash`] when it
/// overlaps the loader's window or covers [`LOAD_ADDRESS`]. Whatever it
/// returns, `[LOAD_ADDRESS, LOAD_ADDRESS + limit)` and `[start, start +
/// len)` do not overlap.
pub fn size_limit(start: u64, len: u64) -> Result<u32, Clash> {
    let end = start.saturating_add(len);
    let overlaps = |from: u64, to: u64| start < to && end > from;
    if overlaps(LINK_ADDRESS, LINK_ADDRESS + LOADER_WINDOW) {
        return Err(Clash::LoaderWindow);
    }
    if start <= LOAD_ADDRESS && end > LOAD_ADDRESS {
        return Err(Clash::KernelAddress);
    }
    if start > LOAD_ADDRESS && start < LOAD_ADDRESS + MAX_KERNEL_SIZE as u64 {
        // Below 64 MiB + 0x80000, so the difference fits a u32.
        return Ok((start - LOAD_ADDRESS) as u32);
    }
    Ok(MAX_KERNEL_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_known_vectors() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xe8b7_be43);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414f_a339);
        let mut running = Crc32::new();
        for &b in b"123456789" {
            running = running.update(b);
        }
        assert_eq!(running.value(), 0xcbf4_3926);
    }

    #[test]
    fn header_round_trips_and_has_a_fixed_layout() {
        let header = Header::for_payload(b"123456789").unwrap();
        assert_eq!(header, Header { size: 9, load_address: 0x8_0000, crc: 0xcbf4_3926 });
        let bytes = header.encode();
        assert_eq!(&bytes[..20], b"TKRN\x09\0\0\0\0\0\x08\0\0\0\0\0\x26\x39\xf4\xcb");
        assert_eq!(u32::from_le_bytes(bytes[20..].try_into().unwrap()), crc32(&bytes[..20]));
        assert_eq!(Header::decode(&bytes, MAX_KERNEL_SIZE), Ok(header));
    }

    #[test]
    fn header_refusals() {
        let good = Header::for_payload(&[1; 100]).unwrap();
        let refused = |header: Header, limit| Header::decode(&header.encode(), limit).unwrap_err();
        assert_eq!(refused(good, 99), Refusal { reply: Reply::TooLarge, header: good });
        let empty = Header { size: 0, ..good };
        assert_eq!(refused(empty, 99), Refusal { reply: Reply::TooLarge, header: empty });
        let elsewhere = Header { load_address: 0x4008_0000, ..good };
        assert_eq!(refused(elsewhere, 100), Refusal { reply: Reply::BadAddress, header: elsewhere });
        for at in 0..HEADER_LEN {
            let mut bytes = good.encode();
            bytes[at] ^= 0x10;
            let reply = Header::decode(&bytes, MAX_KERNEL_SIZE).map_err(|refusal| refusal.reply);
            assert_eq!(reply, Err(Reply::BadHeader), "flipped byte {at}");
        }
    }

    #[test]
    fn replies_have_distinct_codes() {
        for reply in Reply::ALL {
            assert_eq!(Reply::from_code(reply.code()), Some(reply));
            assert_ne!(reply.code(), 0);
        }
        assert_eq!(Reply::from_code(b'x'), None);
        assert_eq!(Reply::Loaded.tag(), [0, 0, b'T', b'L', b'K']);
    }

    #[test]
    fn magic_is_found_after_noise() {
        let mut scanner = MagicScanner::default();
        let stream = b"\xffTKTTKRxTKRN";
        let hits: Vec<usize> =
            stream.iter().enumerate().filter(|&(_, &byte)| scanner.push(byte)).map(|(index, _)| index).collect();
        assert_eq!(hits, [stream.len() - 1]);
    }

    #[test]
    fn size_limit_keeps_the_kernel_clear_of_the_boot_information() {
        let max = Ok(MAX_KERNEL_SIZE);
        // ATAGs at 0x100 (QEMU), a tree high in the first GiB (the Pi), a
        // tree at 128 MiB (QEMU -dtb): all out of the way.
        assert_eq!(size_limit(0x100, 1), max);
        assert_eq!(size_limit(0x2eff_0000, 0xc000), max);
        assert_eq!(size_limit(0x0800_0000, 0x1_0000), max);
        // A tree just below 0x80000 that ends before it.
        assert_eq!(size_limit(0x7_0000, 0x1_0000), max);
        // Inside the kernel's window: the kernel ends where it starts,
        // whatever its size.
        assert_eq!(size_limit(0x10_0000, 1), Ok(0x8_0000));
        assert_eq!(size_limit(0x10_0000, 0x1_0000), Ok(0x8_0000));
        assert_eq!(size_limit(LOAD_ADDRESS + MAX_KERNEL_SIZE as u64 - 1, 8), Ok(MAX_KERNEL_SIZE - 1));
        assert_eq!(size_limit(LOAD_ADDRESS + MAX_KERNEL_SIZE as u64, 1), max);
        // Covering 0x80000: from below, or starting there.
        assert_eq!(size_limit(0x7_0000, 0x1_0001), Err(Clash::KernelAddress));
        assert_eq!(size_limit(LOAD_ADDRESS, 1), Err(Clash::KernelAddress));
        // Overlapping the loader: inside, from below, or from the kernel's window.
        assert_eq!(size_limit(LINK_ADDRESS + 0x100, 0x100), Err(Clash::LoaderWindow));
        assert_eq!(size_limit(LINK_ADDRESS - 0x100, 0x101), Err(Clash::LoaderWindow));
        assert_eq!(size_limit(LINK_ADDRESS - 0x100, 0x100), max);
        assert_eq!(size_limit(LINK_ADDRESS + LOADER_WINDOW, 0x100), max);
        assert_eq!(size_limit(0x100_0000, 0x600_0000), Err(Clash::LoaderWindow));
        // No overflow at the top of the address space.
        assert_eq!(size_limit(u64::MAX - 4, u64::MAX), max);
    }

    #[test]
    fn boot_information_is_measured_only_for_a_device_tree() {
        assert_eq!(boot_information_len(DEVICE_TREE_MAGIC, 0xc123), 0xc123);
        assert_eq!(boot_information_len(DEVICE_TREE_MAGIC, 0), 1);
        assert_eq!(boot_information_len(0x5441_0001, 0x0000_0002), 1, "an ATAG header is not a tree");
        assert_eq!(boot_information_len(0xedfe_0dd0, 0xc123), 1, "the magic is big-endian");
        assert!(may_peek(0x100) && may_peek(0x2eff_0000) && may_peek(0));
        assert!(may_peek(PEEK_LIMIT - 8));
        assert!(!may_peek(0x104) && !may_peek(PEEK_LIMIT) && !may_peek(u64::MAX - 7));
    }
}
