//! # Boot information: what the boot loader handed over
//!
//! Tern is entered with a pointer in `x0` that means one of three things,
//! depending on who loaded it: a flattened device tree (the Raspberry Pi 4
//! firmware, and QEMU's `virt` machine, which puts one at `0x4800_0000`),
//! an ATAG list (QEMU's `raspi4b` booting a raw image leaves one at
//! `0x100`), or nothing useful at all. This module turns the first two into
//! [`BootFacts`]: the RAM ranges, the ranges the firmware asked us to keep
//! out of (the device tree's memory-reservation block), the kernel command
//! line, and where the blob itself lies, so that the kernel can reserve it
//! before handing out frames. The arch code reads the size from the header
//! ([`fdt_total_size`]), or assumes a bound for ATAGs, and passes a byte
//! slice; everything here is a pure function of that slice, so it runs in
//! host tests, and every offset and length read from the blob is checked
//! before use: malformed input is an error, never a panic or an
//! out-of-bounds read, and every loop advances, so it always ends.
//!
//! It is deliberately not a device-tree library. It walks the structure
//! block once to learn the root's `#address-cells` and `#size-cells` (so
//! their position among the root's properties does not matter) and once to
//! collect the `memory` nodes directly under the root and `/chosen`'s
//! `bootargs`; everything else (devices, interrupts, `ranges` translation,
//! `status` properties, overlays, `/reserved-memory` nodes) is skipped, since
//! Tern's boards describe their devices in code. Only one- and two-cell
//! addresses and sizes are decoded. At most [`MAX_MEMORY_RANGES`] ranges of
//! each kind are kept: further RAM ranges are dropped (losing memory is
//! safe), while further reservations are folded into the last one kept, so
//! that a reservation is never lost, at the cost of possibly reserving
//! more than asked.

use crate::frame::PhysRange;

/// The most RAM ranges, and separately reserved ranges, [`BootFacts`] keeps.
pub const MAX_MEMORY_RANGES: usize = 8;

/// Which kind of boot information was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootSource {
    /// A flattened device tree.
    DeviceTree,
    /// An ATAG list.
    Atags,
    /// Nothing recognisable: the kernel falls back to its board defaults.
    None,
}

/// What the boot loader told us about the machine.
#[derive(Debug, Clone)]
pub struct BootFacts<'a> {
    /// Where the facts came from.
    pub source: BootSource,
    /// RAM ranges; the first `memory_count` entries are valid.
    pub memory: [PhysRange; MAX_MEMORY_RANGES],
    /// Number of valid entries in `memory`.
    pub memory_count: usize,
    /// Reserved ranges from the device tree's memory-reservation block; the
    /// first `reserved_count` entries are valid.
    pub reserved: [PhysRange; MAX_MEMORY_RANGES],
    /// Number of valid entries in `reserved`.
    pub reserved_count: usize,
    /// The kernel command line, if one was given and is valid UTF-8.
    pub cmdline: Option<&'a str>,
    /// Where the FDT or ATAG blob itself lives, if known, so the kernel can
    /// reserve it.
    pub blob: Option<PhysRange>,
}

/// An unused slot of a [`BootFacts`] range array.
const NO_RANGE: PhysRange = PhysRange::new(0, 0);

impl BootFacts<'_> {
    /// The valid RAM ranges.
    pub fn memory(&self) -> &[PhysRange] {
        &self.memory[..self.memory_count.min(MAX_MEMORY_RANGES)]
    }

    /// The valid reserved ranges.
    pub fn reserved(&self) -> &[PhysRange] {
        &self.reserved[..self.reserved_count.min(MAX_MEMORY_RANGES)]
    }

    /// No boot information at all.
    pub fn none() -> BootFacts<'static> {
        BootFacts {
            source: BootSource::None,
            memory: [NO_RANGE; MAX_MEMORY_RANGES],
            memory_count: 0,
            reserved: [NO_RANGE; MAX_MEMORY_RANGES],
            reserved_count: 0,
            cmdline: None,
            blob: None,
        }
    }

    /// Record a RAM range; empty ones and those past the limit are dropped.
    fn add_memory(&mut self, range: PhysRange) {
        if !range.is_empty() && self.memory_count < MAX_MEMORY_RANGES {
            self.memory[self.memory_count] = range;
            self.memory_count += 1;
        }
    }

    /// Record a reserved range; past the limit it is merged into the last
    /// slot (which then covers both and everything between).
    fn add_reserved(&mut self, range: PhysRange) {
        if range.is_empty() {
            return;
        }
        if self.reserved_count < MAX_MEMORY_RANGES {
            self.reserved[self.reserved_count] = range;
            self.reserved_count += 1;
        } else {
            let last = &mut self.reserved[MAX_MEMORY_RANGES - 1];
            *last = PhysRange::new(last.start.min(range.start), last.end.max(range.end));
        }
    }
}

/// Why boot information could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// The blob does not start with the expected magic number or tag.
    BadMagic,
    /// The slice ends before the blob says it does.
    Truncated,
    /// An offset, length, token or cell count in the blob is inconsistent.
    BadStructure,
    /// A device tree of a version this parser does not understand.
    UnsupportedVersion,
}

/// The magic number at the start of a flattened device tree.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

/// Size of the FDT header (version 17).
const FDT_HEADER_SIZE: usize = 40;

/// Structure-block tokens.
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Read a big-endian `u32` at `offset`, if it is inside `bytes`.
fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

/// Read a big-endian `u64` at `offset`, if it is inside `bytes`.
fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_be_bytes(field.try_into().ok()?))
}

/// Read a little-endian `u32` at `offset`, if it is inside `bytes`.
fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let field = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

/// The bytes before the first NUL (all of them if there is none) as UTF-8.
fn c_string(bytes: &[u8]) -> Option<&str> {
    let length = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..length]).ok()
}

/// Size of an FDT from its 40-byte header (big-endian totalsize), or None if
/// the magic is wrong.
///
/// Also `None` if `header` is too short to hold the magic and size, or if
/// the size is smaller than a header (no valid tree is).
pub fn fdt_total_size(header: &[u8]) -> Option<usize> {
    if be_u32(header, 0)? != FDT_MAGIC {
        return None;
    }
    let total = usize::try_from(be_u32(header, 4)?).ok()?;
    (total >= FDT_HEADER_SIZE).then_some(total)
}

/// One item of the structure block (NOPs are skipped).
#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    /// A node starts; its unit name (empty for the root).
    BeginNode(&'a [u8]),
    /// The current node ends.
    EndNode,
    /// A property of the current node.
    Property {
        /// Name, from the strings block, without its NUL.
        name: &'a [u8],
        /// Raw value.
        value: &'a [u8],
    },
    /// The end of the structure block.
    End,
}

/// A cursor over the structure block.
struct StructureReader<'a> {
    structure: &'a [u8],
    strings: &'a [u8],
    offset: usize,
}

impl<'a> StructureReader<'a> {
    /// Round `offset` up to the next token boundary.
    fn align(offset: usize) -> Result<usize, BootInfoError> {
        offset.checked_next_multiple_of(4).ok_or(BootInfoError::BadStructure)
    }

    /// The next token; every call advances by at least four bytes.
    fn next_token(&mut self) -> Result<Token<'a>, BootInfoError> {
        use BootInfoError::BadStructure;
        loop {
            let token = be_u32(self.structure, self.offset).ok_or(BadStructure)?;
            self.offset += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let rest = self.structure.get(self.offset..).ok_or(BadStructure)?;
                    let length = rest.iter().position(|&b| b == 0).ok_or(BadStructure)?;
                    self.offset = Self::align(self.offset + length + 1)?;
                    return Ok(Token::BeginNode(&rest[..length]));
                }
                FDT_END_NODE => return Ok(Token::EndNode),
                FDT_PROP => {
                    let length = be_u32(self.structure, self.offset).ok_or(BadStructure)?;
                    let name_offset = be_u32(self.structure, self.offset + 4).ok_or(BadStructure)?;
                    let start = self.offset + 8;
                    let end =
                        start.checked_add(usize::try_from(length).map_err(|_| BadStructure)?).ok_or(BadStructure)?;
                    let value = self.structure.get(start..end).ok_or(BadStructure)?;
                    let name_bytes = usize::try_from(name_offset)
                        .ok()
                        .and_then(|offset| self.strings.get(offset..))
                        .ok_or(BadStructure)?;
                    let name_length = name_bytes.iter().position(|&b| b == 0).ok_or(BadStructure)?;
                    self.offset = Self::align(end)?;
                    return Ok(Token::Property { name: &name_bytes[..name_length], value });
                }
                FDT_NOP => {}
                FDT_END => return Ok(Token::End),
                _ => return Err(BadStructure),
            }
        }
    }
}

/// Walk the whole structure block, checking that it is one properly nested
/// root node followed by `FDT_END`, and call `visit` with each token and the
/// depth of the node it belongs to (1 for the root node and its
/// properties, 2 for the root's children, ...).
fn walk<'a>(
    structure: &'a [u8],
    strings: &'a [u8],
    mut visit: impl FnMut(usize, Token<'a>) -> Result<(), BootInfoError>,
) -> Result<(), BootInfoError> {
    use BootInfoError::BadStructure;
    let mut reader = StructureReader { structure, strings, offset: 0 };
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let token = reader.next_token()?;
        match token {
            Token::BeginNode(_) => {
                if depth == 0 {
                    if seen_root {
                        return Err(BadStructure);
                    }
                    seen_root = true;
                }
                depth += 1;
                visit(depth, token)?;
            }
            Token::EndNode => {
                if depth == 0 {
                    return Err(BadStructure);
                }
                visit(depth, token)?;
                depth -= 1;
            }
            Token::Property { .. } => {
                if depth == 0 {
                    return Err(BadStructure);
                }
                visit(depth, token)?;
            }
            Token::End => {
                return if depth == 0 && seen_root { Ok(()) } else { Err(BadStructure) };
            }
        }
    }
}

/// Decode one `reg` cell group of `cells` (1 or 2) 32-bit cells.
fn read_cells(bytes: &[u8], cells: u32) -> Option<u64> {
    match cells {
        1 => be_u32(bytes, 0).map(u64::from),
        2 => be_u64(bytes, 0),
        _ => None,
    }
}

/// Add every (address, size) pair of a memory node's `reg` to `facts`.
fn add_memory_reg(
    facts: &mut BootFacts<'_>,
    reg: &[u8],
    address_cells: u32,
    size_cells: u32,
) -> Result<(), BootInfoError> {
    use BootInfoError::BadStructure;
    if !(1..=2).contains(&address_cells) || !(1..=2).contains(&size_cells) {
        return Err(BadStructure);
    }
    let address_bytes = address_cells as usize * 4;
    let entry_bytes = address_bytes + size_cells as usize * 4;
    if !reg.len().is_multiple_of(entry_bytes) {
        return Err(BadStructure);
    }
    for entry in reg.chunks_exact(entry_bytes) {
        let start = read_cells(entry, address_cells).ok_or(BadStructure)?;
        let size = read_cells(&entry[address_bytes..], size_cells).ok_or(BadStructure)?;
        let end = start.checked_add(size).ok_or(BadStructure)?;
        facts.add_memory(PhysRange::new(start, end));
    }
    Ok(())
}

/// Read a one-cell property value.
fn cell_value(value: &[u8]) -> Result<u32, BootInfoError> {
    if value.len() != 4 {
        return Err(BootInfoError::BadStructure);
    }
    be_u32(value, 0).ok_or(BootInfoError::BadStructure)
}

/// What the second pass remembers about a child of the root.
#[derive(Default)]
struct ChildNode<'a> {
    memory_by_name: bool,
    memory_by_type: bool,
    chosen: bool,
    reg: Option<&'a [u8]>,
}

/// `address` is where `blob` lives physically (recorded in BootFacts::blob).
///
/// `blob` may be longer than the tree; only the header's `totalsize` bytes
/// are read.
pub fn parse_fdt(blob: &[u8], address: u64) -> Result<BootFacts<'_>, BootInfoError> {
    use BootInfoError::{BadMagic, BadStructure, Truncated, UnsupportedVersion};
    let magic = be_u32(blob, 0).ok_or(Truncated)?;
    if magic != FDT_MAGIC {
        return Err(BadMagic);
    }
    if blob.len() < FDT_HEADER_SIZE {
        return Err(Truncated);
    }
    // The header is in bounds now; these reads cannot fail.
    let field = |index: usize| be_u32(blob, index * 4).unwrap_or(0) as usize;
    let (total_size, struct_offset, strings_offset, reservations_offset) = (field(1), field(2), field(3), field(4));
    let (version, last_compatible_version) = (field(5), field(6));
    let (strings_size, struct_size) = (field(8), field(9));
    if version < 16 || last_compatible_version > 17 {
        return Err(UnsupportedVersion);
    }
    if total_size < FDT_HEADER_SIZE {
        return Err(BadStructure);
    }
    let blob = blob.get(..total_size).ok_or(Truncated)?;
    let block = |offset: usize, size: usize| blob.get(offset..offset.checked_add(size)?);
    let strings = block(strings_offset, strings_size).ok_or(BadStructure)?;
    let structure = if version >= 17 {
        block(struct_offset, struct_size).ok_or(BadStructure)?
    } else {
        // Version 16 headers have no structure size.
        blob.get(struct_offset..).ok_or(BadStructure)?
    };

    let mut facts = BootFacts::none();
    facts.source = BootSource::DeviceTree;
    facts.blob = Some(PhysRange::new(address, address.saturating_add(total_size as u64)));

    // The memory-reservation block: (address, size) pairs up to (0, 0).
    let mut offset = reservations_offset;
    loop {
        let start = be_u64(blob, offset).ok_or(BadStructure)?;
        let size = be_u64(blob, offset.checked_add(8).ok_or(BadStructure)?).ok_or(BadStructure)?;
        if start == 0 && size == 0 {
            break;
        }
        let end = start.checked_add(size).ok_or(BadStructure)?;
        facts.add_reserved(PhysRange::new(start, end));
        offset += 16;
    }

    // First pass: validate the structure and find the root's cell sizes.
    let (mut address_cells, mut size_cells) = (2, 1);
    walk(structure, strings, |depth, token| {
        if let (1, Token::Property { name, value }) = (depth, token) {
            match name {
                b"#address-cells" => address_cells = cell_value(value)?,
                b"#size-cells" => size_cells = cell_value(value)?,
                _ => {}
            }
        }
        Ok(())
    })?;

    // Second pass: memory nodes and /chosen.
    let mut child = ChildNode::default();
    let mut cmdline = None;
    walk(structure, strings, |depth, token| {
        if depth != 2 {
            return Ok(());
        }
        match token {
            Token::BeginNode(name) => {
                child = ChildNode {
                    memory_by_name: name == b"memory" || name.starts_with(b"memory@"),
                    chosen: name == b"chosen",
                    ..ChildNode::default()
                };
            }
            Token::Property { name, value } => match name {
                b"device_type" => child.memory_by_type = c_string(value) == Some("memory"),
                b"reg" => child.reg = Some(value),
                b"bootargs" if child.chosen => cmdline = c_string(value),
                _ => {}
            },
            Token::EndNode => {
                if (child.memory_by_name || child.memory_by_type)
                    && let Some(reg) = child.reg
                {
                    add_memory_reg(&mut facts, reg, address_cells, size_cells)?;
                }
            }
            Token::End => {}
        }
        Ok(())
    })?;
    facts.cmdline = cmdline;
    Ok(facts)
}

/// First tag of an ATAG list.
pub const ATAG_CORE: u32 = 0x5441_0001;
/// A RAM range: size then start, both `u32`.
pub const ATAG_MEM: u32 = 0x5441_0002;
/// The kernel command line, NUL terminated.
pub const ATAG_CMDLINE: u32 = 0x5441_0009;
/// The end of the list.
pub const ATAG_NONE: u32 = 0;

/// True if `words` starts with an ATAG_CORE tag (little-endian u32
/// size-in-words then tag).
///
/// The size must be 2 (no payload) or 5 (flags, page size, root device), the
/// two sizes ATAG_CORE can have, which keeps stray memory from passing.
pub fn looks_like_atags(bytes: &[u8]) -> bool {
    matches!(le_u32(bytes, 0), Some(2 | 5)) && le_u32(bytes, 4) == Some(ATAG_CORE)
}

/// Parse an ATAG list at physical `address` (recorded in
/// [`BootFacts::blob`], up to and including the terminating tag).
///
/// The list ends at ATAG_NONE or exactly at the end of `bytes`. A tag
/// cut off by the end of the slice is [`BootInfoError::Truncated`]; a tag
/// claiming fewer than two words, or an ATAG_MEM without its two payload
/// words, is [`BootInfoError::BadStructure`].
pub fn parse_atags(bytes: &[u8], address: u64) -> Result<BootFacts<'_>, BootInfoError> {
    use BootInfoError::{BadMagic, BadStructure, Truncated};
    if !looks_like_atags(bytes) {
        return Err(if bytes.len() < 8 { Truncated } else { BadMagic });
    }
    let mut facts = BootFacts::none();
    facts.source = BootSource::Atags;
    let mut offset = 0usize;
    while offset < bytes.len() {
        let size_words = le_u32(bytes, offset).ok_or(Truncated)?;
        let tag = le_u32(bytes, offset + 4).ok_or(Truncated)?;
        if tag == ATAG_NONE {
            offset += 8;
            break;
        }
        if size_words < 2 {
            return Err(BadStructure);
        }
        let size_bytes = usize::try_from(size_words).ok().and_then(|words| words.checked_mul(4)).ok_or(Truncated)?;
        let end = offset.checked_add(size_bytes).ok_or(Truncated)?;
        let payload = bytes.get(offset + 8..end).ok_or(Truncated)?;
        match tag {
            ATAG_MEM => {
                let size = le_u32(payload, 0).ok_or(BadStructure)?;
                let start = le_u32(payload, 4).ok_or(BadStructure)?;
                let start = u64::from(start);
                facts.add_memory(PhysRange::new(start, start + u64::from(size)));
            }
            ATAG_CMDLINE => facts.cmdline = c_string(payload),
            _ => {}
        }
        offset = end;
    }
    facts.blob = Some(PhysRange::new(address, address.saturating_add(offset as u64)));
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Builds flattened device trees for the tests.
    struct FdtBuilder {
        structure: Vec<u8>,
        strings: Vec<u8>,
        reservations: Vec<(u64, u64)>,
        version: u32,
        last_compatible_version: u32,
    }

    impl FdtBuilder {
        fn new() -> Self {
            Self {
                structure: Vec::new(),
                strings: Vec::new(),
                reservations: Vec::new(),
                version: 17,
                last_compatible_version: 16,
            }
        }

        fn token(&mut self, token: u32) -> &mut Self {
            self.structure.extend_from_slice(&token.to_be_bytes());
            self
        }

        fn pad(&mut self) {
            while !self.structure.len().is_multiple_of(4) {
                self.structure.push(0);
            }
        }

        fn begin(&mut self, name: &str) -> &mut Self {
            self.token(FDT_BEGIN_NODE);
            self.structure.extend_from_slice(name.as_bytes());
            self.structure.push(0);
            self.pad();
            self
        }

        fn end(&mut self) -> &mut Self {
            self.token(FDT_END_NODE)
        }

        fn property(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let name_offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.token(FDT_PROP);
            self.structure.extend_from_slice(&(value.len() as u32).to_be_bytes());
            self.structure.extend_from_slice(&name_offset.to_be_bytes());
            self.structure.extend_from_slice(value);
            self.pad();
            self
        }

        fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let value: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.property(name, &value)
        }

        fn string(&mut self, name: &str, value: &str) -> &mut Self {
            let mut bytes = value.as_bytes().to_vec();
            bytes.push(0);
            self.property(name, &bytes)
        }

        fn reserve(&mut self, start: u64, size: u64) -> &mut Self {
            self.reservations.push((start, size));
            self
        }

        fn build(&self) -> Vec<u8> {
            let reservations_offset = FDT_HEADER_SIZE;
            let mut body = Vec::new();
            for &(start, size) in self.reservations.iter().chain(&[(0, 0)]) {
                body.extend_from_slice(&start.to_be_bytes());
                body.extend_from_slice(&size.to_be_bytes());
            }
            let struct_offset = reservations_offset + body.len();
            body.extend_from_slice(&self.structure);
            body.extend_from_slice(&FDT_END.to_be_bytes());
            let struct_size = self.structure.len() + 4;
            let strings_offset = reservations_offset + body.len();
            body.extend_from_slice(&self.strings);
            let total = FDT_HEADER_SIZE + body.len();
            let header = [
                FDT_MAGIC,
                total as u32,
                struct_offset as u32,
                strings_offset as u32,
                reservations_offset as u32,
                self.version,
                self.last_compatible_version,
                0,
                self.strings.len() as u32,
                struct_size as u32,
            ];
            let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
            blob.extend_from_slice(&body);
            blob
        }
    }

    /// A tree like the Raspberry Pi 4 (8 GB) firmware's: 2 address cells,
    /// 1 size cell, four RAM ranges in one node, a spin-table reservation.
    fn pi4_like_tree() -> Vec<u8> {
        let mut builder = FdtBuilder::new();
        builder
            .reserve(0, 0x1000)
            .begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .string("model", "Raspberry Pi 4 Model B")
            .begin("chosen")
            .string("bootargs", "coherent_pool=1M tern.log=debug")
            .end()
            .begin("memory@0")
            .string("device_type", "memory")
            .cells(
                "reg",
                &[
                    0x0,
                    0x0,
                    0x3b40_0000, //
                    0x0,
                    0x4000_0000,
                    0xbc00_0000, //
                    0x1,
                    0x0,
                    0x8000_0000, //
                    0x1,
                    0x8000_0000,
                    0x8000_0000,
                ],
            )
            .end()
            .begin("soc")
            .begin("memory@7e000000") // Not under the root: ignored.
            .cells("reg", &[0x7e00_0000, 0x1000])
            .end()
            .end()
            .end();
        builder.build()
    }

    #[test]
    fn total_size_from_header() {
        let blob = pi4_like_tree();
        assert_eq!(fdt_total_size(&blob[..40]), Some(blob.len()));
        let mut bad = blob.clone();
        bad[0] ^= 1;
        assert_eq!(fdt_total_size(&bad), None);
        assert_eq!(fdt_total_size(&blob[..6]), None);
        let mut tiny = blob[..40].to_vec();
        tiny[4..8].copy_from_slice(&8u32.to_be_bytes());
        assert_eq!(fdt_total_size(&tiny), None);
    }

    #[test]
    fn pi4_memory_reservation_and_bootargs() {
        let blob = pi4_like_tree();
        let facts = parse_fdt(&blob, 0x2eff_2000).unwrap();
        assert_eq!(facts.source, BootSource::DeviceTree);
        assert_eq!(
            facts.memory(),
            &[
                PhysRange::new(0, 0x3b40_0000),
                PhysRange::new(0x4000_0000, 0xfc00_0000),
                PhysRange::new(0x1_0000_0000, 0x1_8000_0000),
                PhysRange::new(0x1_8000_0000, 0x2_0000_0000),
            ]
        );
        assert_eq!(facts.reserved(), &[PhysRange::new(0, 0x1000)]);
        assert_eq!(facts.cmdline, Some("coherent_pool=1M tern.log=debug"));
        assert_eq!(facts.blob, Some(PhysRange::new(0x2eff_2000, 0x2eff_2000 + blob.len() as u64)));
    }

    #[test]
    fn two_memory_nodes_with_two_and_one_cells() {
        let mut builder = FdtBuilder::new();
        builder
            .begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[1])
            .begin("memory@40000000")
            .cells("reg", &[0, 0x4000_0000, 0x0800_0000])
            .end()
            .begin("memory@100000000")
            .cells("reg", &[1, 0, 0x1000_0000])
            .end()
            .end();
        let blob = builder.build();
        let facts = parse_fdt(&blob, 0x4800_0000).unwrap();
        assert_eq!(
            facts.memory(),
            &[PhysRange::new(0x4000_0000, 0x4800_0000), PhysRange::new(0x1_0000_0000, 0x1_1000_0000),]
        );
        assert!(facts.reserved().is_empty());
        assert_eq!(facts.cmdline, None);
    }

    #[test]
    fn one_one_cells_device_type_and_default_cells() {
        let mut builder = FdtBuilder::new();
        builder
            .begin("")
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .begin("sdram@0") // Recognised by device_type alone.
            .cells("reg", &[0x0, 0x1000_0000, 0x2000_0000, 0x1000_0000])
            .string("device_type", "memory")
            .end()
            .begin("flash@0") // Neither name nor type: ignored.
            .cells("reg", &[0x0, 0x100])
            .end()
            .end();
        let blob = builder.build();
        let facts = parse_fdt(&blob, 0).unwrap();
        assert_eq!(facts.memory(), &[PhysRange::new(0, 0x1000_0000), PhysRange::new(0x2000_0000, 0x3000_0000),]);

        // No cell properties at all: the defaults are 2 and 1.
        let mut builder = FdtBuilder::new();
        builder.begin("").begin("memory").cells("reg", &[0, 0x4000_0000, 0x4000_0000]).end().end();
        let blob = builder.build();
        let facts = parse_fdt(&blob, 0).unwrap();
        assert_eq!(facts.memory(), &[PhysRange::new(0x4000_0000, 0x8000_0000)]);
    }

    #[test]
    fn root_cells_after_children_still_apply() {
        let mut builder = FdtBuilder::new();
        builder
            .begin("")
            .begin("memory@0")
            .cells("reg", &[0x0, 0x1000])
            .end()
            .cells("#address-cells", &[1])
            .cells("#size-cells", &[1])
            .end();
        let blob = builder.build();
        let facts = parse_fdt(&blob, 0).unwrap();
        assert_eq!(facts.memory(), &[PhysRange::new(0, 0x1000)]);
    }

    #[test]
    fn reservations_and_overflow_folding() {
        let mut builder = FdtBuilder::new();
        for index in 0..10u64 {
            builder.reserve(0x10_0000 * (index + 1), 0x1000);
        }
        builder.reserve(0x5000, 0); // Empty: not recorded, not the end.
        builder.reserve(0x2000, 0x1000);
        builder.begin("").end();
        let blob = builder.build();
        let facts = parse_fdt(&blob, 0).unwrap();
        assert_eq!(facts.reserved_count, MAX_MEMORY_RANGES);
        assert_eq!(facts.reserved()[0], PhysRange::new(0x10_0000, 0x10_1000));
        // The last slot covers the eighth entry and every later one
        // (0x80_0000.., 0x90_0000.., 0xa0_0000.., 0x2000..).
        assert_eq!(facts.reserved()[7], PhysRange::new(0x2000, 0xa0_1000));
    }

    #[test]
    fn bootargs_edge_cases() {
        let tree = |value: &[u8]| {
            let mut builder = FdtBuilder::new();
            builder
                .begin("")
                .begin("chosen")
                .property("bootargs", value)
                .end()
                .begin("other") // bootargs outside /chosen: ignored.
                .string("bootargs", "wrong")
                .end()
                .end();
            builder.build()
        };
        assert_eq!(parse_fdt(&tree(b"a b\0"), 0).unwrap().cmdline, Some("a b"));
        assert_eq!(parse_fdt(&tree(b"no-nul"), 0).unwrap().cmdline, Some("no-nul"));
        assert_eq!(parse_fdt(&tree(b"\xff\xfe\0"), 0).unwrap().cmdline, None);
    }

    #[test]
    fn header_errors() {
        let blob = pi4_like_tree();
        let mut bad = blob.clone();
        bad[3] = 0xee;
        assert_eq!(parse_fdt(&bad, 0).unwrap_err(), BootInfoError::BadMagic);
        assert_eq!(parse_fdt(&[], 0).unwrap_err(), BootInfoError::Truncated);
        let mut old = blob.clone();
        old[20..24].copy_from_slice(&15u32.to_be_bytes());
        assert_eq!(parse_fdt(&old, 0).unwrap_err(), BootInfoError::UnsupportedVersion);
        let mut future = blob.clone();
        future[24..28].copy_from_slice(&18u32.to_be_bytes());
        assert_eq!(parse_fdt(&future, 0).unwrap_err(), BootInfoError::UnsupportedVersion);
        // A longer slice than the tree is fine.
        let mut padded = blob.clone();
        padded.extend_from_slice(&[0xff; 64]);
        assert_eq!(parse_fdt(&padded, 0).unwrap().memory_count, 4);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let blob = pi4_like_tree();
        for length in 0..blob.len() {
            assert_eq!(parse_fdt(&blob[..length], 0).unwrap_err(), BootInfoError::Truncated, "length {length}");
        }
        assert!(parse_fdt(&blob, 0).is_ok());
    }

    #[test]
    fn structure_errors() {
        // Bad cell count for memory decoding.
        let mut builder = FdtBuilder::new();
        builder.begin("").cells("#address-cells", &[3]).begin("memory@0").cells("reg", &[0, 0, 0, 0x1000]).end().end();
        assert_eq!(parse_fdt(&builder.build(), 0).unwrap_err(), BootInfoError::BadStructure);
        // A reg that is not a whole number of entries.
        let mut builder = FdtBuilder::new();
        builder.begin("").begin("memory").cells("reg", &[0, 0]).end().end();
        assert_eq!(parse_fdt(&builder.build(), 0).unwrap_err(), BootInfoError::BadStructure);
        // An unclosed root node.
        let mut builder = FdtBuilder::new();
        builder.begin("").begin("memory");
        assert_eq!(parse_fdt(&builder.build(), 0).unwrap_err(), BootInfoError::BadStructure);
        // Two roots.
        let mut builder = FdtBuilder::new();
        builder.begin("").end().begin("").end();
        assert_eq!(parse_fdt(&builder.build(), 0).unwrap_err(), BootInfoError::BadStructure);
        // An unknown token.
        let mut builder = FdtBuilder::new();
        builder.begin("").token(7).end();
        assert_eq!(parse_fdt(&builder.build(), 0).unwrap_err(), BootInfoError::BadStructure);
        // NOPs are fine.
        let mut builder = FdtBuilder::new();
        builder.token(FDT_NOP).begin("").token(FDT_NOP).end();
        assert!(parse_fdt(&builder.build(), 0).is_ok());
    }

    /// Deterministic xorshift64 generator.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Whatever the result, its counts are in range and its slices valid.
    fn check_sane(facts: &BootFacts<'_>) {
        assert!(facts.memory_count <= MAX_MEMORY_RANGES);
        assert!(facts.reserved_count <= MAX_MEMORY_RANGES);
        assert!(facts.memory().iter().all(|range| !range.is_empty()));
    }

    #[test]
    fn fdt_bit_flips_and_noise_never_panic() {
        let blob = pi4_like_tree();
        let mut outcomes = [0usize; 2];
        for byte in 0..blob.len() {
            for bit in 0..8 {
                let mut mutated = blob.clone();
                mutated[byte] ^= 1 << bit;
                match parse_fdt(&mutated, 0) {
                    Ok(facts) => {
                        check_sane(&facts);
                        outcomes[0] += 1;
                    }
                    Err(_) => outcomes[1] += 1,
                }
            }
        }
        // Flips in string contents are harmless; flips in the header are
        // not: both outcomes must occur.
        assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");

        let mut state = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            let mut mutated = blob.clone();
            for _ in 0..1 + xorshift(&mut state) % 8 {
                let index = (xorshift(&mut state) % blob.len() as u64) as usize;
                mutated[index] = xorshift(&mut state) as u8;
            }
            let cut = blob.len() - (xorshift(&mut state) % 8) as usize;
            if let Ok(facts) = parse_fdt(&mutated[..cut], 0) {
                check_sane(&facts);
            }
        }
    }

    /// Builds an ATAG list from (tag, payload words) pairs, starting with
    /// ATAG_CORE and ending with ATAG_NONE.
    fn atags(tags: &[(u32, &[u32])]) -> Vec<u8> {
        let mut words = vec![5, ATAG_CORE, 0, 4096, 0];
        for &(tag, payload) in tags {
            words.push(payload.len() as u32 + 2);
            words.push(tag);
            words.extend_from_slice(payload);
        }
        words.extend_from_slice(&[0, ATAG_NONE]);
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// A command-line payload: the string, NUL terminated, in words.
    fn cmdline_words(text: &str) -> Vec<u32> {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        while !bytes.len().is_multiple_of(4) {
            bytes.push(0);
        }
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
    }

    #[test]
    fn atags_memory_and_cmdline() {
        let cmdline = cmdline_words("console=ttyAMA0 tern.log=info");
        let bytes = atags(&[
            (ATAG_MEM, &[0x3c00_0000, 0]),
            (0x5441_0004, &[1, 2, 3]), // An unrelated tag: skipped.
            (ATAG_CMDLINE, &cmdline),
            (ATAG_MEM, &[0x1000_0000, 0x4000_0000]),
        ]);
        assert!(looks_like_atags(&bytes));
        let mut with_garbage = bytes.clone();
        with_garbage.extend_from_slice(&[0xff; 32]); // Past ATAG_NONE: unread.
        let facts = parse_atags(&with_garbage, 0x100).unwrap();
        assert_eq!(facts.source, BootSource::Atags);
        assert_eq!(facts.memory(), &[PhysRange::new(0, 0x3c00_0000), PhysRange::new(0x4000_0000, 0x5000_0000),]);
        assert_eq!(facts.cmdline, Some("console=ttyAMA0 tern.log=info"));
        assert_eq!(facts.blob, Some(PhysRange::new(0x100, 0x100 + bytes.len() as u64)));
        assert!(facts.reserved().is_empty());
    }

    #[test]
    fn atags_end_at_slice_end_without_none() {
        let bytes = atags(&[(ATAG_MEM, &[0x1000, 0x8000])]);
        let without_none = &bytes[..bytes.len() - 8];
        let facts = parse_atags(without_none, 0).unwrap();
        assert_eq!(facts.memory(), &[PhysRange::new(0x8000, 0x9000)]);
        assert_eq!(facts.blob, Some(PhysRange::new(0, without_none.len() as u64)));
    }

    #[test]
    fn atag_errors() {
        assert!(!looks_like_atags(&[]));
        assert!(!looks_like_atags(&[0; 64]));
        assert_eq!(parse_atags(&[0; 4], 0).unwrap_err(), BootInfoError::Truncated);
        assert_eq!(parse_atags(&[0; 64], 0).unwrap_err(), BootInfoError::BadMagic);
        // A device tree is not an ATAG list.
        assert_eq!(parse_atags(&pi4_like_tree(), 0).unwrap_err(), BootInfoError::BadMagic);
        // Size 0 on a real tag: an error, not an endless loop.
        let mut zero = atags(&[(ATAG_MEM, &[0x1000, 0])]);
        zero[20..24].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse_atags(&zero, 0).unwrap_err(), BootInfoError::BadStructure);
        // ATAG_MEM without its payload.
        let short = atags(&[(ATAG_MEM, &[0x1000])]);
        assert_eq!(parse_atags(&short, 0).unwrap_err(), BootInfoError::BadStructure);
        // A tag running past the end.
        let bytes = atags(&[(ATAG_MEM, &[0x1000, 0])]);
        assert_eq!(parse_atags(&bytes[..28], 0).unwrap_err(), BootInfoError::Truncated);
        // Invalid UTF-8 in the command line: no command line.
        let bytes = atags(&[(ATAG_CMDLINE, &[0x00ff_feff])]);
        let facts = parse_atags(&bytes, 0).unwrap();
        assert_eq!(facts.cmdline, None);
    }

    #[test]
    fn atag_truncation_and_noise_never_panic() {
        let cmdline = cmdline_words("root=/dev/mmcblk0p2");
        let bytes = atags(&[(ATAG_MEM, &[0x3c00_0000, 0]), (ATAG_CMDLINE, &cmdline)]);
        for length in 0..bytes.len() {
            if let Ok(facts) = parse_atags(&bytes[..length], 0) {
                check_sane(&facts);
                // Only cuts at a tag boundary parse.
                assert!([20, 36, bytes.len() - 8].contains(&length), "{length}");
            }
        }
        let mut state = 0x0bad_cafe_f00d_d00d;
        for _ in 0..20_000 {
            let mut mutated = bytes.clone();
            for _ in 0..1 + xorshift(&mut state) % 4 {
                let index = (xorshift(&mut state) % bytes.len() as u64) as usize;
                mutated[index] = xorshift(&mut state) as u8;
            }
            if let Ok(facts) = parse_atags(&mutated, 0) {
                check_sane(&facts);
            }
        }
    }
}
