//! AArch64 translation tables for one address space seen through many views.
//!
//! Tern has one virtual layout: every object has one address, the same in
//! every domain that may touch it (identity mapping, VA = PA). Protection
//! comes from *views*: each protected domain has its own translation table
//! (TTBR0 + an ASID) that differs from the kernel's only in the entry that
//! maps the domain's own region. Everything the kernel maps is global
//! (nG = 0) and identical in every view, so entering the kernel never
//! changes TTBR0, and switching between domains never flushes the TLB.
//!
//! Geometry: 4 KiB granule, 39-bit virtual addresses (TCR.T0SZ = 25), so a
//! walk starts at level 1 (1 GiB per entry), then level 2 (2 MiB), then
//! level 3 (4 KiB). [`map`] picks the largest block that fits each piece.
//!
//! A domain's view is made by [`derive_view`]: a copy of the kernel's level
//! 1 table plus a private copy of the one level-2 table that covers the
//! domain's region; every other subtree (the image's level-3 tables, device
//! windows) stays shared. Merging a domain later means rewriting that one
//! entry, which is why regions are 2 MiB aligned.
//!
//! Holes in the kernel's memory: [`unmap_in_block`] unmaps pages of one
//! 2 MiB block in every view (the guard pages below threads' kernel
//! stacks), splitting the block into pages if need be, break-before-make.
//!
//! What this leaves out: splitting an existing block to map something
//! smaller inside it (an error instead: Tern maps each range once), freeing
//! tables, and the TLB and cache maintenance, which belong to the arch crate
//! (`unmap_in_block` calls back for it between break and make).
//! The boot table, built at compile time by [`boot_table`], maps whole
//! gigabytes and exists only to turn the MMU on before any Rust runs.

use tern_core::frame::PhysRange;

/// Entries in one translation table.
pub const ENTRIES: usize = 512;
/// Bytes covered by one level-1 entry.
pub const LEVEL1_BLOCK: u64 = 1 << 30;
/// Bytes covered by one level-2 entry.
pub const LEVEL2_BLOCK: u64 = 1 << 21;
/// Bytes covered by one level-3 entry (a page).
pub const PAGE: u64 = 1 << 12;
/// Size of the virtual address space (TCR.T0SZ = 25).
pub const VIRTUAL_SPAN: u64 = 1 << 39;

/// One translation table, as the hardware reads it.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    /// A table with every entry invalid.
    pub const fn empty() -> Table {
        Table([0; ENTRIES])
    }
}

/// Memory attribute index into MAIR_EL1: Device-nGnRE.
pub const MAIR_DEVICE: u64 = 0;
/// Memory attribute index into MAIR_EL1: Normal, write-back cacheable.
pub const MAIR_NORMAL: u64 = 1;
/// The MAIR_EL1 value matching the two indices above.
pub const MAIR_VALUE: u64 = 0x04 | (0xff << 8);

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_SHIFT: u64 = 2;
const AP_EL0: u64 = 1 << 6;
const AP_READ_ONLY: u64 = 1 << 7;
const SHARE_INNER: u64 = 3 << 8;
const SHARE_OUTER: u64 = 2 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const NOT_GLOBAL: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

/// What a mapping is for; each kind fixes memory type, access and
/// execute permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Kernel data: EL1 read-write, never executable, global.
    KernelData,
    /// The image's code: read-only at EL1 and EL0, executable at both,
    /// global (shared by every domain).
    SharedCode,
    /// The image's read-only data: read-only at EL1 and EL0, never
    /// executable, global.
    SharedReadOnly,
    /// A device window: Device-nGnRE, EL1 read-write, never executable.
    Device,
    /// A protected domain's own memory: EL0 and EL1 read-write, never
    /// executable (data is data), not global (tagged with the view's ASID).
    DomainData,
    /// A merged domain's memory: part of the kernel domain — EL1 read-write,
    /// never executable, global (the same entry in every view).
    MergedData,
    /// Pages lent to a protected server for one call, read-only: EL0 and
    /// EL1 may read, never executable, not global.
    LentReadOnly,
    /// Pages lent to a protected server for one call, read-write: EL0 and
    /// EL1 may read and write, never executable, not global.
    LentReadWrite,
}

impl Kind {
    /// The descriptor bits for a block or page of this kind (without the
    /// address and without the level-dependent low bits).
    pub const fn attributes(self) -> u64 {
        match self {
            Kind::KernelData => (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | PXN | UXN,
            Kind::SharedCode => (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | AP_EL0 | AP_READ_ONLY,
            Kind::SharedReadOnly => {
                (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | AP_EL0 | AP_READ_ONLY | PXN | UXN
            }
            Kind::Device => (MAIR_DEVICE << ATTR_SHIFT) | SHARE_OUTER | ACCESS_FLAG | PXN | UXN,
            Kind::DomainData => {
                (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | AP_EL0 | NOT_GLOBAL | PXN | UXN
            }
            Kind::MergedData => (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | PXN | UXN,
            Kind::LentReadOnly => {
                (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | AP_EL0 | AP_READ_ONLY | NOT_GLOBAL | PXN | UXN
            }
            Kind::LentReadWrite => Kind::DomainData.attributes(),
        }
    }
}

/// Access rights a leaf descriptor grants, decoded (for tests and for the
/// kernel's own checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// EL0 may read.
    pub user_read: bool,
    /// EL0 may write.
    pub user_write: bool,
    /// EL0 may execute.
    pub user_execute: bool,
    /// EL1 may write.
    pub kernel_write: bool,
    /// EL1 may execute.
    pub kernel_execute: bool,
    /// The entry is global (not tagged with an ASID).
    pub global: bool,
    /// Device memory.
    pub device: bool,
}

impl Access {
    /// Decode a leaf descriptor.
    pub const fn of(descriptor: u64) -> Access {
        let el0 = descriptor & AP_EL0 != 0;
        let read_only = descriptor & AP_READ_ONLY != 0;
        // A page writable at EL0 is never executable at EL1 (the
        // architecture's implicit PXN).
        let user_writable = el0 && !read_only;
        Access {
            user_read: el0,
            user_write: user_writable,
            user_execute: el0 && descriptor & UXN == 0,
            kernel_write: !read_only,
            kernel_execute: descriptor & PXN == 0 && !user_writable,
            global: descriptor & NOT_GLOBAL == 0,
            device: (descriptor >> ATTR_SHIFT) & 7 == MAIR_DEVICE,
        }
    }
}

/// Where translation tables come from and how the caller reaches them.
///
/// The kernel implements it over the frame allocator and the identity
/// mapping; the host tests over a map of boxed tables.
pub trait TableMemory {
    /// A fresh zeroed table; its physical address.
    fn allocate_table(&mut self) -> Option<u64>;
    /// The table at physical address `address`, for reading and writing.
    fn table(&mut self, address: u64) -> &mut Table;
    /// Give back a table no descriptor refers to any more.
    fn free_table(&mut self, address: u64);
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Address or size not page aligned, or zero size.
    Misaligned,
    /// The range leaves the 39-bit virtual space.
    OutOfRange,
    /// Part of the range is mapped already.
    AlreadyMapped,
    /// No memory for a table.
    OutOfTables,
    /// A block to split is not mapped alike in every view, or lies in a
    /// gigabyte mapped by a level-1 block ([`unmap_in_block`]).
    NotSplittable,
}

fn index(address: u64, level: u32) -> usize {
    ((address >> (12 + 9 * (3 - level))) & 0x1ff) as usize
}

const fn block_size(level: u32) -> u64 {
    1 << (12 + 9 * (3 - level))
}

/// Map `[virtual_start, virtual_start + size)` to physical memory starting
/// at `physical_start`, with the attributes of `kind`, into the table tree
/// rooted (level 1) at `root`.
pub fn map(
    memory: &mut impl TableMemory,
    root: u64,
    virtual_start: u64,
    physical_start: u64,
    size: u64,
    kind: Kind,
) -> Result<(), MapError> {
    map_at_most(memory, root, virtual_start, physical_start, size, kind, LEVEL1_BLOCK)
}

/// [`map`], with blocks of at most `largest` bytes ([`LEVEL1_BLOCK`],
/// [`LEVEL2_BLOCK`] or [`PAGE`]). The kernel maps its RAM in blocks of at
/// most 2 MiB, so that [`unmap_in_block`] never has to split a gigabyte.
pub fn map_at_most(
    memory: &mut impl TableMemory,
    root: u64,
    virtual_start: u64,
    physical_start: u64,
    size: u64,
    kind: Kind,
    largest: u64,
) -> Result<(), MapError> {
    if size == 0 || !(virtual_start | physical_start | size).is_multiple_of(PAGE) {
        return Err(MapError::Misaligned);
    }
    let end = virtual_start.checked_add(size).ok_or(MapError::OutOfRange)?;
    if end > VIRTUAL_SPAN {
        return Err(MapError::OutOfRange);
    }
    let mut virtual_address = virtual_start;
    while virtual_address < end {
        let physical = physical_start + (virtual_address - virtual_start);
        let remaining = end - virtual_address;
        // The largest block (level 1 or 2) or page that fits here.
        let level = (1..=3)
            .find(|&level| {
                let block = block_size(level);
                block <= largest && (virtual_address | physical).is_multiple_of(block) && remaining >= block
            })
            .unwrap_or(3);
        map_one(memory, root, virtual_address, physical, level, kind)?;
        virtual_address += block_size(level);
    }
    Ok(())
}

#[inline(always)]
fn map_one(
    memory: &mut impl TableMemory,
    root: u64,
    virtual_address: u64,
    physical: u64,
    leaf_level: u32,
    kind: Kind,
) -> Result<(), MapError> {
    let mut table = root;
    for level in 1..leaf_level {
        let slot = index(virtual_address, level);
        let entry = memory.table(table).0[slot];
        table = if entry & VALID == 0 {
            let next = memory.allocate_table().ok_or(MapError::OutOfTables)?;
            memory.table(table).0[slot] = next | VALID | TABLE_OR_PAGE;
            next
        } else if entry & TABLE_OR_PAGE != 0 {
            entry & ADDRESS_MASK
        } else {
            return Err(MapError::AlreadyMapped);
        };
    }
    let slot = index(virtual_address, leaf_level);
    let leaf = &mut memory.table(table).0[slot];
    if *leaf & VALID != 0 {
        return Err(MapError::AlreadyMapped);
    }
    let low_bits = if leaf_level == 3 { VALID | TABLE_OR_PAGE } else { VALID };
    *leaf = physical | kind.attributes() | low_bits;
    Ok(())
}

/// Walk the tree for `virtual_address`: the physical address it maps to
/// and the leaf descriptor, or `None` when it is not mapped.
pub fn translate(memory: &mut impl TableMemory, root: u64, virtual_address: u64) -> Option<(u64, u64)> {
    if virtual_address >= VIRTUAL_SPAN {
        return None;
    }
    let mut table = root;
    for level in 1..=3 {
        let entry = memory.table(table).0[index(virtual_address, level)];
        if entry & VALID == 0 {
            return None;
        }
        let is_leaf = level == 3 || entry & TABLE_OR_PAGE == 0;
        if is_leaf {
            let offset = virtual_address & (block_size(level) - 1);
            return Some(((entry & ADDRESS_MASK & !(block_size(level) - 1)) + offset, entry));
        }
        table = entry & ADDRESS_MASK;
    }
    None
}

/// Make a domain's view of the kernel's tree rooted at `kernel_root`: a
/// new level-1 table that shares every subtree with the kernel's except the
/// level-2 table covering `private_region`, which is copied, and in which
/// the region is then mapped as [`Kind::DomainData`]. The region must be
/// 2 MiB aligned, at most 1 GiB and inside one gigabyte, and not mapped by
/// the kernel's tree. Returns the new root.
pub fn derive_view(
    memory: &mut impl TableMemory,
    kernel_root: u64,
    private_region: PhysRange,
) -> Result<u64, MapError> {
    let start = private_region.start;
    let size = private_region.end.saturating_sub(start);
    if size == 0 || !start.is_multiple_of(LEVEL2_BLOCK) || !size.is_multiple_of(LEVEL2_BLOCK) {
        return Err(MapError::Misaligned);
    }
    if private_region.end > VIRTUAL_SPAN {
        return Err(MapError::OutOfRange);
    }
    if start / LEVEL1_BLOCK != (private_region.end - 1) / LEVEL1_BLOCK {
        return Err(MapError::OutOfRange);
    }
    let root = memory.allocate_table().ok_or(MapError::OutOfTables)?;
    let kernel_entries = memory.table(kernel_root).0;
    memory.table(root).0 = kernel_entries;
    let slot = index(start, 1);
    let entry = kernel_entries[slot];
    if entry & VALID != 0 && entry & TABLE_OR_PAGE == 0 {
        memory.free_table(root);
        return Err(MapError::AlreadyMapped);
    }
    let Some(private_level2) = memory.allocate_table() else {
        memory.free_table(root);
        return Err(MapError::OutOfTables);
    };
    if entry & VALID != 0 {
        let shared = memory.table(entry & ADDRESS_MASK).0;
        memory.table(private_level2).0 = shared;
    }
    memory.table(root).0[slot] = private_level2 | VALID | TABLE_OR_PAGE;
    if let Err(error) = map(memory, root, start, start, size, Kind::DomainData) {
        free_view(memory, kernel_root, root, private_region);
        return Err(error);
    }
    Ok(root)
}

/// Free the tables [`derive_view`] made for the view `root` of
/// `private_region` (and any level-3 table mapping pages into it since, as
/// lent pages): its level-1 table, its private level-2 table, and every
/// level-3 table under that which is not the kernel's (`kernel_root`'s).
/// The view must not be installed, and its ASID's TLB entries must be
/// dropped by the caller.
pub fn free_view(memory: &mut impl TableMemory, kernel_root: u64, root: u64, private_region: PhysRange) {
    let slot = index(private_region.start, 1);
    let private_entry = memory.table(root).0[slot];
    let kernel_entry = memory.table(kernel_root).0[slot];
    if private_entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE && private_entry != kernel_entry {
        let private_level2 = private_entry & ADDRESS_MASK;
        let private = memory.table(private_level2).0;
        let shared = if kernel_entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
            memory.table(kernel_entry & ADDRESS_MASK).0
        } else {
            [0; ENTRIES]
        };
        for (entry, kernel) in private.iter().zip(shared.iter()) {
            if entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE && entry != kernel {
                memory.free_table(entry & ADDRESS_MASK);
            }
        }
        memory.free_table(private_level2);
    }
    memory.free_table(root);
}

/// Rewrite how the tree rooted at `root` maps `region` (identity, 2 MiB
/// aligned, inside one gigabyte): with `Some(kind)` every 2 MiB block of it
/// becomes a block of that kind, whatever was there; with `None` it is
/// unmapped. The level-2 table covering it is created if missing (only
/// when mapping). Used to move a domain's memory between views when it is
/// merged or unmerged; the caller does the TLB maintenance (and, when an
/// entry changes from one valid mapping to another, unmaps first:
/// break-before-make).
pub fn remap(memory: &mut impl TableMemory, root: u64, region: PhysRange, kind: Option<Kind>) -> Result<(), MapError> {
    let start = region.start;
    let size = region.end.saturating_sub(start);
    if size == 0 || !start.is_multiple_of(LEVEL2_BLOCK) || !size.is_multiple_of(LEVEL2_BLOCK) {
        return Err(MapError::Misaligned);
    }
    if region.end > VIRTUAL_SPAN || start / LEVEL1_BLOCK != (region.end - 1) / LEVEL1_BLOCK {
        return Err(MapError::OutOfRange);
    }
    let slot = index(start, 1);
    let entry = memory.table(root).0[slot];
    let level2 = if entry & VALID == 0 {
        if kind.is_none() {
            return Ok(());
        }
        let fresh = memory.allocate_table().ok_or(MapError::OutOfTables)?;
        memory.table(root).0[slot] = fresh | VALID | TABLE_OR_PAGE;
        fresh
    } else if entry & TABLE_OR_PAGE == 0 {
        return Err(MapError::AlreadyMapped);
    } else {
        entry & ADDRESS_MASK
    };
    // Refuse before changing anything: a block split into pages here is
    // not a domain region — unless no page of it is mapped (a level-3
    // table left empty by lent pages coming back, see `unmap_pages`),
    // which is replaced and freed. Such a table is the view's own: only
    // lends make level-3 tables in a domain region's gigabyte-slot, and
    // they lend into protected servers' views, never the kernel's, whose
    // entries every view's copy shares.
    let first = index(start, 2);
    let count = (size / LEVEL2_BLOCK) as usize;
    let entries = memory.table(level2).0;
    for &entry in &entries[first..first + count] {
        if entry & VALID != 0
            && entry & TABLE_OR_PAGE != 0
            && memory.table(entry & ADDRESS_MASK).0.iter().any(|&page| page & VALID != 0)
        {
            return Err(MapError::AlreadyMapped);
        }
    }
    let table = memory.table(level2);
    let mut emptied = [0u64; ENTRIES];
    for (at, entry) in table.0[first..first + count].iter_mut().enumerate() {
        let block = start + at as u64 * LEVEL2_BLOCK;
        if *entry & (VALID | TABLE_OR_PAGE) == VALID | TABLE_OR_PAGE {
            emptied[at] = *entry & ADDRESS_MASK;
        }
        *entry = kind.map_or(0, |kind| block | kind.attributes() | VALID);
    }
    for &table in emptied[..count].iter().filter(|&&table| table != 0) {
        memory.free_table(table);
    }
    Ok(())
}

/// Map each page of `range` (identity, page aligned) into the tree at
/// `root` as a level-3 page of `kind`, making level-2 and level-3 tables
/// where there are none. Refuses — before changing anything — a page that
/// is mapped already (by a page or a block), so it never replaces a
/// mapping. Used to lend a client's pages to a protected server for one
/// call; [`unmap_pages`] undoes it.
pub fn map_pages(memory: &mut impl TableMemory, root: u64, range: PhysRange, kind: Kind) -> Result<(), MapError> {
    let (start, end) = (range.start, range.end);
    if end <= start || !(start | end).is_multiple_of(PAGE) {
        return Err(MapError::Misaligned);
    }
    if end > VIRTUAL_SPAN {
        return Err(MapError::OutOfRange);
    }
    if (start..end).step_by(PAGE as usize).any(|page| translate(memory, root, page).is_some()) {
        return Err(MapError::AlreadyMapped);
    }
    for page in (start..end).step_by(PAGE as usize) {
        if let Err(error) = map_one(memory, root, page, page, 3, kind) {
            unmap_pages(memory, root, PhysRange::new(start, page));
            return Err(error);
        }
    }
    Ok(())
}

/// Unmap the level-3 pages of `range` (identity, page aligned) in the tree
/// at `root`; blocks and tables are left alone (an emptied level-3 table
/// stays, for the next lend). The caller does the TLB maintenance.
pub fn unmap_pages(memory: &mut impl TableMemory, root: u64, range: PhysRange) {
    for page in (range.start..range.end).step_by(PAGE as usize) {
        let mut table = root;
        for level in 1..=3 {
            let slot = index(page, level);
            let entry = memory.table(table).0[slot];
            if entry & VALID == 0 || (level < 3 && entry & TABLE_OR_PAGE == 0) {
                break;
            }
            if level == 3 {
                memory.table(table).0[slot] = 0;
            } else {
                table = entry & ADDRESS_MASK;
            }
        }
    }
}

/// Unmap the pages of one 2 MiB block of kernel memory for which `hole`
/// says so, in every view: the trees rooted at `roots` (the kernel's and
/// every domain's). Used to make the guard pages below threads' kernel
/// stacks.
///
/// Which tables that touches: every root maps the block through a level-1
/// table entry (the kernel maps RAM in blocks of at most 2 MiB,
/// [`map_at_most`]) into a level-2 table — the kernel's, shared by every
/// view whose own region lies in another gigabyte, or a domain's private
/// copy of it ([`derive_view`]) for the gigabyte its region is in. The
/// level-2 entry must be the same in all of them (a domain's private
/// copy differs from the kernel's only in its region's entries). If it is
/// a 2 MiB block, a level-3 table mapping every page of the block as the
/// block did, but the holes, is made and replaces the block in *each* of
/// those level-2 tables, break-before-make: all of them are cleared,
/// `flush(block)` is called (the caller drops the block's TLB entries),
/// and only then is the table installed. Nothing in the block may be
/// used meanwhile (the caller's promise: say, memory just taken from the
/// frame allocator). If it is a level-3 table already, that table is
/// shared by every view (made before the views that copy it, or installed
/// in all of them here): the holes' entries are cleared in it, then
/// `flush(page)` is called for each. Later views copy the kernel's tables
/// and so see the holes too.
///
/// Refuses, before changing anything, a block that is not mapped the
/// same way in every view, a root that maps its gigabyte with a level-1
/// block, and (with [`MapError::OutOfTables`]) the want of a table.
pub fn unmap_in_block(
    memory: &mut impl TableMemory,
    roots: &[u64],
    block: u64,
    hole: impl Fn(u64) -> bool,
    mut flush: impl FnMut(u64),
) -> Result<(), MapError> {
    if !block.is_multiple_of(LEVEL2_BLOCK) {
        return Err(MapError::Misaligned);
    }
    if block >= VIRTUAL_SPAN {
        return Err(MapError::OutOfRange);
    }
    // Every root's level-2 table for the block's gigabyte (the kernel's
    // or a private copy; shared ones are met more than once, harmlessly),
    // and the same entry for the block in all of them.
    let slot = index(block, 2);
    let Some(&first) = roots.first() else { return Ok(()) };
    let first = level2_table(memory, first, block).ok_or(MapError::NotSplittable)?;
    let entry = memory.table(first).0[slot];
    if entry & VALID == 0 {
        return Err(MapError::NotSplittable);
    }
    for &root in roots {
        let table = level2_table(memory, root, block).ok_or(MapError::NotSplittable)?;
        if memory.table(table).0[slot] != entry {
            return Err(MapError::NotSplittable);
        }
    }
    let pages = (0..ENTRIES as u64).map(|at| block + at * PAGE);
    if entry & TABLE_OR_PAGE != 0 {
        let level3 = entry & ADDRESS_MASK;
        for (at, page) in pages.enumerate() {
            if hole(page) && memory.table(level3).0[at] & VALID != 0 {
                memory.table(level3).0[at] = 0;
                flush(page);
            }
        }
        return Ok(());
    }
    let level3 = memory.allocate_table().ok_or(MapError::OutOfTables)?;
    let attributes = entry & !ADDRESS_MASK & !(VALID | TABLE_OR_PAGE);
    let output = entry & ADDRESS_MASK & !(LEVEL2_BLOCK - 1);
    for (at, page) in pages.enumerate() {
        let descriptor = (output + at as u64 * PAGE) | attributes | VALID | TABLE_OR_PAGE;
        memory.table(level3).0[at] = if hole(page) { 0 } else { descriptor };
    }
    for &root in roots {
        if let Some(table) = level2_table(memory, root, block) {
            memory.table(table).0[slot] = 0;
        }
    }
    flush(block);
    for &root in roots {
        if let Some(table) = level2_table(memory, root, block) {
            memory.table(table).0[slot] = level3 | VALID | TABLE_OR_PAGE;
        }
    }
    Ok(())
}

/// The level-2 table the tree at `root` maps `address`'s gigabyte with, if
/// it uses one (not a gigabyte block, not nothing).
fn level2_table(memory: &mut impl TableMemory, root: u64, address: u64) -> Option<u64> {
    let entry = memory.table(root).0[index(address, 1)];
    (entry & VALID != 0 && entry & TABLE_OR_PAGE != 0).then_some(entry & ADDRESS_MASK)
}

/// The boot-time level-1 table for an identity map of whole gigabytes:
/// `normal` ranges as kernel memory (Normal, EL1 read-write, executable at
/// EL1 so the kernel can run from it), `device` ranges as Device memory.
/// Ranges are rounded out to gigabytes. Built at compile time; used only to
/// turn the MMU on before Rust code runs.
pub const fn boot_table(normal: &[PhysRange], device: &[PhysRange]) -> Table {
    let mut table = Table::empty();
    let normal_bits = (MAIR_NORMAL << ATTR_SHIFT) | SHARE_INNER | ACCESS_FLAG | UXN | VALID;
    let device_bits = (MAIR_DEVICE << ATTR_SHIFT) | SHARE_OUTER | ACCESS_FLAG | PXN | UXN | VALID;
    let mut pass = 0;
    while pass < 2 {
        let (ranges, bits) = if pass == 0 { (normal, normal_bits) } else { (device, device_bits) };
        let mut range = 0;
        while range < ranges.len() {
            let mut gigabyte = ranges[range].start / LEVEL1_BLOCK;
            while gigabyte * LEVEL1_BLOCK < ranges[range].end && gigabyte < ENTRIES as u64 {
                table.0[gigabyte as usize] = (gigabyte * LEVEL1_BLOCK) | bits;
                gigabyte += 1;
            }
            range += 1;
        }
        pass += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use std::collections::HashMap;

    struct HostTables {
        tables: HashMap<u64, Box<Table>>,
        next: u64,
        limit: usize,
    }

    impl HostTables {
        fn new() -> Self {
            HostTables { tables: HashMap::new(), next: 0x10_0000_0000, limit: usize::MAX }
        }
    }

    impl TableMemory for HostTables {
        fn allocate_table(&mut self) -> Option<u64> {
            if self.tables.len() >= self.limit {
                return None;
            }
            let address = self.next;
            self.next += PAGE;
            self.tables.insert(address, Box::new(Table::empty()));
            Some(address)
        }
        fn table(&mut self, address: u64) -> &mut Table {
            self.tables.get_mut(&address).expect("a table this test allocated")
        }
        fn free_table(&mut self, address: u64) {
            assert!(self.tables.remove(&address).is_some(), "freeing a table this test did not allocate");
        }
    }

    fn kernel_tree(memory: &mut HostTables) -> u64 {
        let root = memory.allocate_table().unwrap();
        // An image at 0x80000: 1 page code, 1 page rodata, 2 pages data.
        map(memory, root, 0x8_0000, 0x8_0000, 0x1000, Kind::SharedCode).unwrap();
        map(memory, root, 0x8_1000, 0x8_1000, 0x1000, Kind::SharedReadOnly).unwrap();
        map(memory, root, 0x8_2000, 0x8_2000, 0x2000, Kind::KernelData).unwrap();
        // RAM from 2 MiB to 64 MiB as kernel data, with a hole for domains
        // at [32 MiB, 40 MiB).
        map(memory, root, 0x20_0000, 0x20_0000, 0x1e0_0000, Kind::KernelData).unwrap();
        map(memory, root, 0x280_0000, 0x280_0000, 0x180_0000, Kind::KernelData).unwrap();
        map(memory, root, 0xfe00_0000, 0xfe00_0000, 0x40_0000, Kind::Device).unwrap();
        root
    }

    #[test]
    fn picks_largest_blocks_and_translates() {
        let mut memory = HostTables::new();
        let root = kernel_tree(&mut memory);
        let (physical, descriptor) = translate(&mut memory, root, 0x8_0123).unwrap();
        assert_eq!(physical, 0x8_0123);
        let code = Access::of(descriptor);
        assert!(code.user_execute && code.kernel_execute && !code.user_write && !code.kernel_write);
        let data = Access::of(translate(&mut memory, root, 0x8_3ff8).unwrap().1);
        assert!(!data.user_read && data.kernel_write && !data.kernel_execute && data.global);
        // 2 MiB blocks for the RAM: level-2 leaf (low bits 0b01).
        let (_, ram) = translate(&mut memory, root, 0x40_0000).unwrap();
        assert_eq!(ram & 3, 1);
        assert!(Access::of(translate(&mut memory, root, 0xfe20_1000).unwrap().1).device);
        assert_eq!(translate(&mut memory, root, 0x250_0000), None, "domain hole stays unmapped");
        assert_eq!(translate(&mut memory, root, 0x1_0000_0000), None);
        // root + L2 for GiB 0 + L3 for the image's 2 MiB + L2 for GiB 3.
        assert_eq!(memory.tables.len(), 4);
    }

    #[test]
    fn rejects_bad_ranges() {
        let mut memory = HostTables::new();
        let root = kernel_tree(&mut memory);
        assert_eq!(map(&mut memory, root, 0x123, 0, 0x1000, Kind::KernelData), Err(MapError::Misaligned));
        assert_eq!(map(&mut memory, root, 0, 0, 0, Kind::KernelData), Err(MapError::Misaligned));
        assert_eq!(
            map(&mut memory, root, VIRTUAL_SPAN - 0x1000, 0, 0x2000, Kind::KernelData),
            Err(MapError::OutOfRange)
        );
        assert_eq!(map(&mut memory, root, 0x8_1000, 0x8_1000, 0x1000, Kind::KernelData), Err(MapError::AlreadyMapped));
        // A page inside a 2 MiB block is refused, not split.
        assert_eq!(
            map(&mut memory, root, 0x40_1000, 0x40_1000, 0x1000, Kind::KernelData),
            Err(MapError::AlreadyMapped)
        );
        memory.limit = memory.tables.len();
        assert_eq!(
            map(&mut memory, root, 0x4000_0000, 0x4000_0000, 0x1000, Kind::KernelData),
            Err(MapError::OutOfTables)
        );
    }

    #[test]
    fn views_share_everything_but_the_private_region() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        let region_a = PhysRange::new(0x200_0000, 0x220_0000);
        let region_b = PhysRange::new(0x220_0000, 0x240_0000);
        let view_a = derive_view(&mut memory, kernel, region_a).unwrap();
        let view_b = derive_view(&mut memory, kernel, region_b).unwrap();
        let own = Access::of(translate(&mut memory, view_a, 0x200_0010).unwrap().1);
        assert!(own.user_read && own.user_write && !own.user_execute && !own.kernel_execute);
        assert!(!own.global, "domain memory is tagged with the view's ASID");
        assert_eq!(translate(&mut memory, view_a, 0x220_0000), None, "b's region is absent from a");
        assert_eq!(translate(&mut memory, view_b, 0x200_0000), None, "a's region is absent from b");
        assert_eq!(translate(&mut memory, kernel, 0x200_0000), None, "and from the kernel's view");
        // Kernel mappings identical in the view, and the image's level-3
        // table is the same physical table (shared subtree).
        for address in [0x8_0000, 0x8_2000, 0x40_0000, 0xfe20_1000] {
            assert_eq!(translate(&mut memory, view_a, address), translate(&mut memory, kernel, address));
        }
        let kernel_level2 = memory.table(kernel).0[0] & ADDRESS_MASK;
        let view_level2 = memory.table(view_a).0[0] & ADDRESS_MASK;
        assert_ne!(kernel_level2, view_level2, "the covering level-2 table is private");
        let kernel_first = memory.table(kernel_level2).0[0];
        assert_eq!(kernel_first, memory.table(view_level2).0[0]);
        let kernel_devices = memory.table(kernel).0[3];
        assert_eq!(kernel_devices, memory.table(view_a).0[3], "device subtree shared");
        assert_eq!(derive_view(&mut memory, kernel, PhysRange::new(0x201_0000, 0x221_0000)), Err(MapError::Misaligned));
        assert_eq!(
            derive_view(&mut memory, kernel, PhysRange::new(0x40_0000, 0x60_0000)),
            Err(MapError::AlreadyMapped),
            "a region the kernel maps cannot become private"
        );
    }

    #[test]
    fn merging_moves_a_region_between_views() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        let region_a = PhysRange::new(0x200_0000, 0x240_0000);
        let region_b = PhysRange::new(0x240_0000, 0x280_0000);
        let view_a = derive_view(&mut memory, kernel, region_a).unwrap();
        let view_b = derive_view(&mut memory, kernel, region_b).unwrap();
        // Merge a: EL1-only and global in a's own view, b's and the kernel's.
        for root in [view_a, view_b, kernel] {
            remap(&mut memory, root, region_a, Some(Kind::MergedData)).unwrap();
            let merged = Access::of(translate(&mut memory, root, 0x230_0008).unwrap().1);
            assert!(!merged.user_read && merged.kernel_write && merged.global && !merged.kernel_execute);
        }
        assert_eq!(translate(&mut memory, view_b, 0x220_0000).unwrap().0, 0x220_0000, "same address everywhere");
        assert!(Access::of(translate(&mut memory, view_b, 0x240_0000).unwrap().1).user_write, "b keeps its own");
        // Unmerge a: its own view gets its EL0 mapping back, the others lose it.
        remap(&mut memory, view_a, region_a, Some(Kind::DomainData)).unwrap();
        for root in [view_b, kernel] {
            remap(&mut memory, root, region_a, None).unwrap();
            assert_eq!(translate(&mut memory, root, 0x200_0000), None);
        }
        let own = Access::of(translate(&mut memory, view_a, 0x23f_fff8).unwrap().1);
        assert!(own.user_write && !own.global);
        // The rest of the kernel's gigabyte is untouched throughout.
        assert_eq!(translate(&mut memory, view_a, 0x40_0000), translate(&mut memory, kernel, 0x40_0000));
        assert!(translate(&mut memory, view_b, 0x280_0000).is_some());
        // Bad regions.
        assert_eq!(remap(&mut memory, kernel, PhysRange::new(0x201_0000, 0x221_0000), None), Err(MapError::Misaligned));
        assert_eq!(
            remap(&mut memory, kernel, PhysRange::new(0x3fe0_0000, 0x4020_0000), None),
            Err(MapError::OutOfRange),
            "a region across gigabytes"
        );
        // Pages inside (the image's level-3 table) are not a region to move.
        assert_eq!(
            remap(&mut memory, kernel, PhysRange::new(0, 0x20_0000), Some(Kind::MergedData)),
            Err(MapError::AlreadyMapped)
        );
        // Mapping into a gigabyte the tree does not cover yet makes its table.
        remap(&mut memory, kernel, PhysRange::new(0x4000_0000, 0x4020_0000), Some(Kind::MergedData)).unwrap();
        assert!(translate(&mut memory, kernel, 0x4000_0000).is_some());
    }

    #[test]
    fn a_freed_view_gives_back_exactly_the_tables_it_made() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        let kernel_tables = memory.tables.len();
        let server_region = PhysRange::new(0x6000_0000, 0x6080_0000);
        let server = derive_view(&mut memory, kernel, server_region).unwrap();
        assert_eq!(memory.tables.len(), kernel_tables + 2, "a level-1 and a private level-2 table");
        // Lent pages elsewhere in the gigabyte add a level-3 table of its own.
        map_pages(&mut memory, server, PhysRange::new(0x6090_1000, 0x6090_3000), Kind::LentReadOnly).unwrap();
        assert_eq!(memory.tables.len(), kernel_tables + 3);
        free_view(&mut memory, kernel, server, server_region);
        assert_eq!(memory.tables.len(), kernel_tables, "every table of the view, none of the kernel's");
        assert!(translate(&mut memory, kernel, 0x8_0000).is_some(), "the kernel's view intact");
    }

    #[test]
    fn lent_pages_come_and_go_without_touching_the_rest() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        let server_region = PhysRange::new(0x6000_0000, 0x6080_0000);
        let client_region = PhysRange::new(0x6080_0000, 0x6100_0000);
        let server = derive_view(&mut memory, kernel, server_region).unwrap();
        let lent = PhysRange::new(0x6090_1000, 0x6090_9000);
        assert_eq!(translate(&mut memory, server, lent.start), None, "the client's memory is not in the server's view");
        map_pages(&mut memory, server, lent, Kind::LentReadOnly).unwrap();
        for page in (lent.start..lent.end).step_by(PAGE as usize) {
            let (physical, descriptor) = translate(&mut memory, server, page + 8).expect("lent page mapped");
            assert_eq!(physical, page + 8);
            let access = Access::of(descriptor);
            assert!(access.user_read && !access.user_write && !access.global);
        }
        assert_eq!(translate(&mut memory, server, lent.start - PAGE), None, "only the lent pages");
        assert_eq!(translate(&mut memory, server, lent.end), None, "only the lent pages");
        assert_eq!(map_pages(&mut memory, server, lent, Kind::LentReadWrite), Err(MapError::AlreadyMapped));
        assert_eq!(
            map_pages(&mut memory, server, PhysRange::new(0x6000_0000, 0x6000_1000), Kind::LentReadOnly),
            Err(MapError::AlreadyMapped),
            "the server's own block is never replaced"
        );
        unmap_pages(&mut memory, server, lent);
        assert_eq!(translate(&mut memory, server, lent.start), None);
        assert!(translate(&mut memory, server, server_region.start).is_some(), "its own region untouched");
        map_pages(&mut memory, server, lent, Kind::LentReadWrite).unwrap();
        assert!(Access::of(translate(&mut memory, server, lent.start).unwrap().1).user_write);
        assert_eq!(
            remap(&mut memory, server, client_region, Some(Kind::MergedData)),
            Err(MapError::AlreadyMapped),
            "a client with pages lent cannot be merged over them"
        );
        unmap_pages(&mut memory, server, lent);
        let tables = memory.tables.len();
        remap(&mut memory, server, client_region, Some(Kind::MergedData)).expect("an emptied lend table is replaced");
        assert!(!Access::of(translate(&mut memory, server, lent.start).unwrap().1).user_read);
        assert_eq!(memory.tables.len(), tables - 1, "and given back");
    }

    #[test]
    fn at_most_two_megabytes_never_maps_a_gigabyte() {
        let mut memory = HostTables::new();
        let root = memory.allocate_table().unwrap();
        map_at_most(&mut memory, root, 0x4000_0000, 0x4000_0000, LEVEL1_BLOCK, Kind::KernelData, LEVEL2_BLOCK).unwrap();
        assert_eq!(memory.table(root).0[1] & 3, 3, "a level-1 table entry, not a gigabyte block");
        assert_eq!(translate(&mut memory, root, 0x5000_0000).unwrap().1 & 3, 1, "2 MiB blocks below it");
        let other = memory.allocate_table().unwrap();
        map(&mut memory, other, 0x4000_0000, 0x4000_0000, LEVEL1_BLOCK, Kind::KernelData).unwrap();
        assert_eq!(memory.table(other).0[1] & 3, 1, "map takes the gigabyte block");
    }

    /// The guard pages of a chunk of kernel stacks: every fifth page.
    fn guard(page: u64) -> bool {
        (page / PAGE).is_multiple_of(5)
    }

    #[test]
    fn holes_in_a_block_hold_in_every_view() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        // a's region shares the gigabyte of the block (a private copy of
        // its level-2 table); the block is RAM at [4 MiB, 6 MiB).
        let view_a = derive_view(&mut memory, kernel, PhysRange::new(0x200_0000, 0x240_0000)).unwrap();
        let block = 0x40_0000;
        let mut flushed = Vec::new();
        unmap_in_block(&mut memory, &[kernel, view_a], block, guard, |address| flushed.push(address)).unwrap();
        assert_eq!(flushed, [block], "one flush, for the block, between break and make");
        let later = derive_view(&mut memory, kernel, PhysRange::new(0x240_0000, 0x280_0000)).unwrap();
        for root in [kernel, view_a, later] {
            for page in (block..block + LEVEL2_BLOCK).step_by(PAGE as usize) {
                let mapped = translate(&mut memory, root, page + 8);
                if guard(page) {
                    assert_eq!(mapped, None, "guard page {page:#x} unmapped in every view");
                } else {
                    let (physical, descriptor) = mapped.expect("the rest of the block stays mapped");
                    assert_eq!(physical, page + 8);
                    assert_eq!(descriptor & 3, 3, "as a page");
                    let data = Access::of(descriptor);
                    assert!(data.kernel_write && !data.user_read && !data.kernel_execute && data.global);
                }
            }
            // The neighbouring blocks are untouched.
            assert_eq!(translate(&mut memory, root, block + LEVEL2_BLOCK).unwrap().1 & 3, 1);
        }
        // One level-3 table, the same in every view.
        let level3 = |memory: &mut HostTables, root: u64| {
            let level2 = memory.table(root).0[0] & ADDRESS_MASK;
            memory.table(level2).0[index(block, 2)]
        };
        let shared = level3(&mut memory, kernel);
        assert_eq!(level3(&mut memory, view_a), shared);
        assert_eq!(level3(&mut memory, later), shared);

        // Split already: more holes are cleared in the shared table, each
        // flushed.
        let mut flushed = Vec::new();
        let one = |page: u64| page == block + 3 * PAGE;
        unmap_in_block(&mut memory, &[kernel, view_a, later], block, one, |address| flushed.push(address)).unwrap();
        assert_eq!(flushed, [block + 3 * PAGE]);
        for root in [kernel, view_a, later] {
            assert_eq!(translate(&mut memory, root, block + 3 * PAGE), None);
            assert!(translate(&mut memory, root, block + 4 * PAGE).is_some());
        }
    }

    #[test]
    fn refuses_to_split_what_it_cannot() {
        let mut memory = HostTables::new();
        let kernel = kernel_tree(&mut memory);
        let view_a = derive_view(&mut memory, kernel, PhysRange::new(0x200_0000, 0x240_0000)).unwrap();
        let nothing = |_: u64| panic!("nothing to flush");
        assert_eq!(unmap_in_block(&mut memory, &[kernel], 0x40_1000, guard, nothing), Err(MapError::Misaligned));
        // A gigabyte block.
        let gigabyte = memory.allocate_table().unwrap();
        map(&mut memory, gigabyte, 0x4000_0000, 0x4000_0000, LEVEL1_BLOCK, Kind::KernelData).unwrap();
        assert_eq!(unmap_in_block(&mut memory, &[gigabyte], 0x4000_0000, guard, nothing), Err(MapError::NotSplittable));
        // Views that disagree about the block (here: a's own region).
        let level2 = memory.table(view_a).0[0] & ADDRESS_MASK;
        let before = memory.table(level2).0[index(0x200_0000, 2)];
        assert_eq!(
            unmap_in_block(&mut memory, &[kernel, view_a], 0x200_0000, guard, nothing),
            Err(MapError::NotSplittable)
        );
        assert_eq!(memory.table(level2).0[index(0x200_0000, 2)], before, "nothing changed");
        // No table to split into: nothing changed either.
        memory.limit = memory.tables.len();
        assert_eq!(
            unmap_in_block(&mut memory, &[kernel, view_a], 0x40_0000, guard, nothing),
            Err(MapError::OutOfTables)
        );
        assert!(translate(&mut memory, view_a, 0x40_0000).is_some());
        assert_eq!(translate(&mut memory, kernel, 0x40_0000).unwrap().1 & 3, 1, "still a block");
    }

    #[test]
    fn boot_table_maps_gigabytes() {
        let table = boot_table(&[PhysRange::new(0, 0x8000_0000)], &[PhysRange::new(0xfe00_0000, 0x1_0000_0000)]);
        assert_eq!(table.0[0] & 3, 1);
        assert_eq!(table.0[1] & ADDRESS_MASK, LEVEL1_BLOCK);
        assert_eq!(table.0[2], 0);
        assert!(Access::of(table.0[3]).device);
        assert!(Access::of(table.0[0]).kernel_execute && !Access::of(table.0[0]).user_read);
    }
}
