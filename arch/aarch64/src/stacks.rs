//! Threads' kernel stacks, with a guard page below each.
//!
//! Every kernel stack has an unmapped guard page below it, in every view.
//! The boot stack's is in the image (`kernel.ld`), left out when the
//! kernel's view is built (`memory.rs`), in the image's level-3 table,
//! which every view shares. **Threads' kernel stacks** ([`KERNEL_STACK`]
//! bytes) are carved from 2 MiB chunks of the frame allocator
//! ([`new_chunk`]), [`SLOTS`] slots to a chunk, each slot a guard page and
//! the stack above it. The chunk's 2 MiB block of the kernel's RAM mapping
//! is split into pages, guard pages left out, in the kernel's level-2
//! table and in every domain's private copy of it
//! (`paging::unmap_in_block`, break-before-make — safe because nothing
//! uses a chunk just taken from the allocator), so the guard holds in
//! every view, including views made later; every view made is listed here
//! ([`add_view`]). A stack goes back to the machine's spare list when its
//! thread ends and is reused with its guard; chunks are never given back.
//! The list of views is kept outside the heap and the kernel state:
//! nothing here allocates, no kernel object grows, and making a thread
//! costs what it did but for carving its stack.
//!
//! What it leaves out: a frame bigger than a guard page that skips it
//! (the compiler's stack probes touch every page of a big frame, so Rust
//! code cannot; hand-written assembly moving SP by more than a page
//! could).

use crate::machine::KERNEL_STACK;
use crate::memory::{self, IdentityTables};
use crate::{cpu, paging};
use core::cell::UnsafeCell;
use tern_core::frame::{FRAME_SIZE, PhysRange};

/// Bytes of a page (and of a guard).
const PAGE: u64 = paging::PAGE;
/// Bytes of a slot: a guard page, then a kernel stack.
pub const SLOT: u64 = PAGE + KERNEL_STACK as u64;
/// Bytes of a chunk of kernel stacks: one 2 MiB block of the kernel's view.
pub const CHUNK: u64 = paging::LEVEL2_BLOCK;
/// Slots in a chunk (the pages left over at its end stay mapped, unused).
pub const SLOTS: u64 = CHUNK / SLOT;
const _: () = assert!((KERNEL_STACK as u64).is_multiple_of(PAGE) && FRAME_SIZE as u64 == PAGE && SLOTS > 0);

/// Most views there can be: the kernel's and one per domain (a board's
/// domain arena holds far fewer regions).
pub const MAXIMUM_VIEWS: usize = 256;

/// Every view's root table, the kernel's first: each chunk's guard pages
/// are unmapped in all of them. Outside the kernel state and the heap, so
/// that keeping it changes neither.
struct Views(UnsafeCell<([u64; MAXIMUM_VIEWS], usize)>);

// SAFETY: changed and read only with the kernel state held (by the
// machine, when a view or a chunk is made), interrupts masked.
unsafe impl Sync for Views {}

static VIEWS: Views = Views(UnsafeCell::new(([0; MAXIMUM_VIEWS], 0)));

/// Whether no more views can be listed (the machine refuses to make one).
pub fn views_full() -> bool {
    // SAFETY: see `Views`.
    unsafe { (*VIEWS.0.get()).1 == MAXIMUM_VIEWS }
}

/// List a view's root table (the kernel's when the machine is made, then
/// each domain's), with the kernel state held.
pub fn add_view(root: u64) {
    // SAFETY: see `Views`; no other reference to it exists meanwhile.
    let (views, count) = unsafe { &mut *VIEWS.0.get() };
    if *count < MAXIMUM_VIEWS {
        views[*count] = root;
        *count += 1;
    }
}

/// A new chunk of kernel stacks: its slots (guard page first) as one
/// range, with every guard page unmapped in every view listed
/// ([`add_view`]); `None` if there is no 2 MiB of free memory (or no frame
/// for the table that splits it). Called with the kernel state held
/// (interrupts masked).
pub fn new_chunk() -> Option<PhysRange> {
    // SAFETY: see `Views`.
    let (views, count) = unsafe { &*VIEWS.0.get() };
    let views = &views[..*count];
    let mut frames = memory::FRAMES.lock();
    let frames = frames.as_mut()?;
    let start = frames.alloc_contiguous((CHUNK / PAGE) as usize, CHUNK)?;
    let slots = PhysRange::new(start, start + SLOTS * SLOT);
    let guard = |page: u64| slots.contains(page) && (page - start).is_multiple_of(SLOT);
    // Nothing uses the chunk yet (it was free until now), so the block may
    // be unmapped meanwhile: the break-before-make is safe.
    let split = paging::unmap_in_block(&mut IdentityTables(frames), views, start, guard, cpu::flush_global_address);
    if split.is_err() {
        // Refused before anything changed: the chunk goes back.
        let _ = frames.free_contiguous(start, (CHUNK / PAGE) as usize);
        return None;
    }
    cpu::publish_tables();
    Some(slots)
}

/// The kernel stack of the slot at `slot` (above its guard page).
pub fn stack_of_slot(slot: u64) -> PhysRange {
    PhysRange::new(slot + PAGE, slot + SLOT)
}
