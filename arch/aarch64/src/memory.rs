//! Physical memory at boot: the frame allocator, the kernel heap, the
//! domain arena, and the kernel's own translation table.
//!
//! Order matters and is fixed here:
//! 1. the frame allocator learns the RAM (from the boot information or the
//!    board's default) and reserves the firmware's memory, the image and
//!    the boot blob;
//! 2. the heap takes a contiguous block of frames;
//! 3. the **domain arena** (fixed per board) is reserved and carved into
//!    8 MiB slots, one per protected domain. The arena is left *out* of the
//!    kernel's view at its own address: a domain's memory is mapped there
//!    only in its own view (tagged with its ASID), never as a global kernel
//!    mapping, so the TLB can never hold a global and a per-ASID entry for
//!    the same address. The kernel sees the whole arena a second time at
//!    [`ARENA_ALIAS_OFFSET`] above it, to copy between domains;
//! 4. the kernel's table maps the image section by section (code shared
//!    and executable, read-only data shared, data EL1-only, the boot and
//!    exception stacks' guard pages not at all), all other RAM as kernel
//!    data in blocks of at most 2 MiB (so that a block can later be split
//!    for threads' kernel stacks without touching a level-1 entry, see
//!    [`crate::stacks`]), and the devices.

use crate::cpu;
use crate::paging::{self, Kind, Table, TableMemory};
use tern_core::board::{ARENA_ALIAS_OFFSET, BoardConfig, DOMAIN_REGION, REGION_HEAP_OFFSET};
use tern_core::bootinfo::BootFacts;
use tern_core::frame::{FRAME_SIZE, FrameAllocator, PhysRange};
use tern_core::heap::LockedHeap;

/// Largest RAM window any board may declare (the frame bitmap is sized
/// for it): 3 GiB.
pub const MAXIMUM_RAM_WINDOW: u64 = 3 << 30;
/// Kernel heap size.
pub const HEAP_BYTES: usize = 8 << 20;

const BITMAP_WORDS: usize = FrameAllocator::bitmap_words(MAXIMUM_RAM_WINDOW);

struct Bitmap(core::cell::UnsafeCell<[u64; BITMAP_WORDS]>);
// SAFETY: handed out exactly once, to the frame allocator, in `init`.
unsafe impl Sync for Bitmap {}
static BITMAP: Bitmap = Bitmap(core::cell::UnsafeCell::new([0; BITMAP_WORDS]));

/// The frame allocator, once [`init`] has run.
pub static FRAMES: spin::Mutex<Option<FrameAllocator<'static>>> = spin::Mutex::new(None);

static HEAP: LockedHeap = LockedHeap::empty();

/// Bytes of kernel heap in use and free.
pub fn heap_stats() -> (usize, usize) {
    HEAP.stats()
}

/// The image's one global allocator, for the kernel and every domain.
///
/// Code in a domain allocates from the domain's own heap, which lives in
/// the first bytes of its region (a [`LockedHeap`] the kernel puts there
/// when it makes the domain); the kernel allocates from the kernel heap.
/// Which one is told by the stack pointer: domains run on stacks inside
/// their region, in the board's domain arena; the kernel never does. The
/// allocator itself is a `static` without interior mutability, so it sits
/// in read-only data that domains can read; it never touches kernel data
/// when called from a domain.
pub struct TernAllocator {
    arena_start: u64,
    arena_end: u64,
}

impl TernAllocator {
    /// The allocator for a board whose domain arena is `[start, end)`.
    pub const fn new(arena: PhysRange) -> Self {
        TernAllocator { arena_start: arena.start, arena_end: arena.end }
    }

    fn stack_pointer() -> u64 {
        let stack_pointer: u64;
        // SAFETY: reading SP has no side effects.
        unsafe { core::arch::asm!("mov {}, sp", out(reg) stack_pointer, options(nomem, nostack)) };
        stack_pointer
    }

    /// Whether the code running now is a domain's (its stack lies in the
    /// arena) rather than the kernel's.
    pub fn in_domain(&self) -> bool {
        (self.arena_start..self.arena_end).contains(&Self::stack_pointer())
    }

    fn heap(&self) -> &LockedHeap {
        let stack_pointer = Self::stack_pointer();
        if self.in_domain() {
            let region = (stack_pointer & !(DOMAIN_REGION - 1)) + REGION_HEAP_OFFSET;
            // SAFETY: every region of the arena holds the domain's heap
            // record at REGION_HEAP_OFFSET, written by `domains::create` before any code runs in
            // the domain; the domain's view maps it read-write, and the
            // domain is running (its stack is in the region).
            unsafe { &*(region as *const LockedHeap) }
        } else {
            &HEAP
        }
    }
}

// SAFETY: each call is forwarded to a `LockedHeap`, whose own GlobalAlloc
// implementation upholds the contract; a block is always freed to the heap
// it came from because a domain only frees from code running on its own
// stacks, and the kernel never frees a domain's blocks.
unsafe impl core::alloc::GlobalAlloc for TernAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        if !self.in_domain() {
            // SAFETY: forwarded unchanged.
            return unsafe { self.heap().alloc(layout) };
        }
        loop {
            if let Some(block) = self.heap().try_alloc(layout) {
                return block;
            }
            give_way();
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: core::alloc::Layout) {
        if !self.in_domain() {
            // SAFETY: forwarded unchanged; see the impl's comment.
            return unsafe { self.heap().dealloc(pointer, layout) };
        }
        // SAFETY: forwarded unchanged; see the impl's comment.
        while !unsafe { self.heap().try_dealloc(pointer, layout) } {
            give_way();
        }
    }
}

/// A domain's heap is held by another of its threads: let that thread run
/// (`tern_inks::sync::give_way`: a sleep to the next tick, alerts
/// blocked). The kernel masks interrupts around its own heap use, but a
/// domain's threads are preempted at any timer tick, lock held or not,
/// and the scheduler is strictly by priority: spinning here would keep
/// the processor from a less urgent holder for good (the console's client
/// hung so: its signal thread, priority 10, spun for the heap its main
/// thread, priority 0, held).
fn give_way() {
    tern_inks::sync::give_way();
}

/// The kernel's address for byte `address` of the domain arena (its alias),
/// or the address itself outside the arena (the shared image).
pub fn kernel_address(arena: PhysRange, address: usize) -> usize {
    if arena.contains(address as u64) { address + ARENA_ALIAS_OFFSET as usize } else { address }
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __stack_guard: u8;
    static __boot_stack_bottom: u8;
    static __boot_stack_top: u8;
    static __exception_stack_bottom: u8;
    static __image_end: u8;
}

/// Where the linker put the image's parts.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Shared code.
    pub text: PhysRange,
    /// Shared read-only data (including the domain registry).
    pub read_only: PhysRange,
    /// Kernel data and .bss.
    pub data: PhysRange,
    /// The unmapped page below the boot stack.
    pub stack_guard: PhysRange,
    /// The boot stack.
    pub stack: PhysRange,
    /// The unmapped page below the exception stack.
    pub exception_stack_guard: PhysRange,
    /// The exception stack: where a synchronous exception in the kernel
    /// itself is handled (`vectors.s`), whatever became of the kernel
    /// stack it happened on.
    pub exception_stack: PhysRange,
}

impl ImageLayout {
    /// Read the layout from the linker's symbols.
    pub fn of_this_image() -> Self {
        let address = |symbol: *const u8| symbol as u64;
        let start = address(&raw const __image_start);
        let text_end = address(&raw const __text_end);
        let rodata_end = address(&raw const __rodata_end);
        let guard = address(&raw const __stack_guard);
        let stack_bottom = address(&raw const __boot_stack_bottom);
        let stack_top = address(&raw const __boot_stack_top);
        let exception_bottom = address(&raw const __exception_stack_bottom);
        let end = address(&raw const __image_end);
        ImageLayout {
            text: PhysRange::new(start, text_end),
            read_only: PhysRange::new(text_end, rodata_end),
            data: PhysRange::new(rodata_end, guard),
            stack_guard: PhysRange::new(guard, stack_bottom),
            stack: PhysRange::new(stack_bottom, stack_top),
            exception_stack_guard: PhysRange::new(stack_top, exception_bottom),
            exception_stack: PhysRange::new(exception_bottom, end),
        }
    }

    /// The whole image, `[start, end)`.
    pub fn whole(&self) -> PhysRange {
        PhysRange::new(self.text.start, self.exception_stack.end)
    }
}

/// What [`init`] set up.
#[derive(Clone, Copy, Debug)]
pub struct MemorySummary {
    /// RAM in use by Tern (inside the board's window), in bytes.
    pub ram_bytes: u64,
    /// Frames free after boot allocations.
    pub free_frames: usize,
    /// The domain arena.
    pub arena: PhysRange,
    /// The kernel's level-1 table.
    pub kernel_table: u64,
    /// The heap.
    pub heap: PhysRange,
}

/// Tables come from the frame allocator and are reached through the
/// identity map.
pub struct IdentityTables<'a>(pub &'a mut FrameAllocator<'static>);

impl TableMemory for IdentityTables<'_> {
    fn allocate_table(&mut self) -> Option<u64> {
        let address = self.0.alloc()?;
        // SAFETY: a frame just handed out by the allocator: RAM, mapped in
        // the current (boot or kernel) view, owned by nobody else.
        unsafe { (address as *mut Table).write(Table::empty()) };
        Some(address)
    }

    fn table(&mut self, address: u64) -> &mut Table {
        // SAFETY: every address passed here is a table frame this allocator
        // handed out, or read from a descriptor in such a table.
        unsafe { &mut *(address as *mut Table) }
    }

    fn free_table(&mut self, address: u64) {
        // A table frame this allocator handed out (a refusal would be a
        // double free: the frame stays out, which is safe).
        let _ = self.0.free(address);
    }
}

/// Call `each` with the parts of `range` outside every hole (holes need
/// not be sorted; empty parts are skipped). Each recursion level removes
/// one hole from the piece it handles, so it ends.
fn subtract(range: PhysRange, holes: &[PhysRange], each: &mut impl FnMut(PhysRange)) {
    if range.is_empty() {
        return;
    }
    match holes.iter().find(|hole| hole.overlaps(&range)) {
        None => each(range),
        Some(hole) => {
            if range.start < hole.start {
                subtract(PhysRange::new(range.start, hole.start), holes, each);
            }
            if hole.end < range.end {
                subtract(PhysRange::new(hole.end, range.end), holes, each);
            }
        }
    }
}

fn round_in(range: PhysRange) -> PhysRange {
    let size = FRAME_SIZE as u64;
    PhysRange::new(range.start.div_ceil(size) * size, range.end / size * size)
}

/// Set up physical memory and the kernel's view, and switch to it.
pub fn init(board: &BoardConfig, facts: &BootFacts<'_>, image: &ImageLayout) -> Result<MemorySummary, &'static str> {
    let window = board.ram_window;
    if window.len() > MAXIMUM_RAM_WINDOW {
        return Err("the board's RAM window is larger than the frame bitmap");
    }
    // SAFETY: `init` runs once, on the boot core, before anything else
    // uses the bitmap; the allocator then owns it for the kernel's life.
    let bitmap: &'static mut [u64] = unsafe { &mut *BITMAP.0.get() };
    let mut frames = FrameAllocator::new(window.start, window.end, bitmap).map_err(|_| "bad RAM window")?;

    let mut ram: [PhysRange; 8] = [PhysRange::new(0, 0); 8];
    let mut ram_count = 0;
    let reported: &[PhysRange] =
        if facts.memory().is_empty() { core::slice::from_ref(&board.default_memory) } else { facts.memory() };
    for range in reported {
        if let Some(inside) = range.intersection(&window) {
            let inside = round_in(inside);
            if !inside.is_empty() && ram_count < ram.len() {
                ram[ram_count] = inside;
                ram_count += 1;
                frames.add_free(inside);
            }
        }
    }
    let ram = &ram[..ram_count];
    if ram.is_empty() {
        return Err("no usable RAM inside the board's window");
    }
    frames.reserve(board.firmware_reserved);
    frames.reserve(image.whole());
    if let Some(blob) = facts.blob {
        frames.reserve(blob);
    }
    for reserved in facts.reserved() {
        frames.reserve(*reserved);
    }

    let heap_frames = HEAP_BYTES / FRAME_SIZE;
    let heap_start = frames.alloc_contiguous(heap_frames, FRAME_SIZE as u64).ok_or("no room for the heap")?;
    // SAFETY: frames just allocated for the heap, mapped by the boot table,
    // used by nothing else from now on.
    unsafe { HEAP.add_region(heap_start as usize, HEAP_BYTES) };

    let arena = board.domain_arena;
    if !arena.start.is_multiple_of(DOMAIN_REGION)
        || !arena.end.is_multiple_of(DOMAIN_REGION)
        || !ram.iter().any(|range| range.start <= arena.start && arena.end <= range.end)
    {
        return Err("the board's domain arena is not aligned RAM");
    }
    if arena.end > tern_core::board::ARENA_ALIAS_OFFSET {
        // The fast paths reach the arena's alias with an `orr` of the
        // offset, which is an addition only below it.
        return Err("the board's domain arena reaches the alias offset");
    }
    frames.reserve(arena);

    let kernel_table = {
        let mut tables = IdentityTables(&mut frames);
        let root = tables.allocate_table().ok_or("no frame for the kernel's table")?;
        // No gigabyte blocks: a 2 MiB block of RAM may later be split for
        // kernel stacks' guard pages (`paging::unmap_in_block`).
        let mut map = |range: PhysRange, kind: Kind| -> Result<(), &'static str> {
            if range.is_empty() {
                return Ok(());
            }
            paging::map_at_most(&mut tables, root, range.start, range.start, range.len(), kind, paging::LEVEL2_BLOCK)
                .map_err(|_| "could not build the kernel's view")
        };
        map(image.text, Kind::SharedCode)?;
        map(image.read_only, Kind::SharedReadOnly)?;
        map(image.data, Kind::KernelData)?;
        map(image.stack, Kind::KernelData)?;
        map(image.exception_stack, Kind::KernelData)?;
        let holes = [image.whole(), arena];
        let mut failed = false;
        for range in ram {
            subtract(*range, &holes, &mut |piece| failed |= map(piece, Kind::KernelData).is_err());
        }
        if failed {
            return Err("could not map RAM in the kernel's view");
        }
        for device in board.devices {
            map(*device, Kind::Device)?;
        }
        paging::map(&mut tables, root, arena.start + ARENA_ALIAS_OFFSET, arena.start, arena.len(), Kind::KernelData)
            .map_err(|_| "could not map the arena's alias")?;
        root
    };
    cpu::publish_tables();
    cpu::install_kernel_table(kernel_table);

    let ram_bytes = ram.iter().map(PhysRange::len).sum();
    let free_frames = frames.free_frames();
    *FRAMES.lock() = Some(frames);
    Ok(MemorySummary {
        ram_bytes,
        free_frames,
        arena,
        kernel_table,
        heap: PhysRange::new(heap_start, heap_start + HEAP_BYTES as u64),
    })
}
