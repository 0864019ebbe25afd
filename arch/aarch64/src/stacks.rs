//! Kernel stacks, their guard pages, and telling a kernel stack overflow
//! from other kernel faults.
//!
//! Every kernel stack has an unmapped guard page below it, in every view:
//!
//! - the **boot stack** (64 KiB, the boot thread's) and the **exception
//!   stack** (16 KiB, below) are in the image (`kernel.ld`); their guard
//!   pages are left out when the kernel's view is built (`memory.rs`), in
//!   the image's level-3 table, which every view shares;
//! - **threads' kernel stacks** ([`KERNEL_STACK`] bytes) are carved from
//!   2 MiB chunks of the frame allocator ([`new_chunk`]), [`SLOTS`] slots
//!   to a chunk, each slot a guard page and the stack above it. The
//!   chunk's 2 MiB block of the kernel's RAM mapping is split into pages,
//!   guard pages left out, in the kernel's level-2 table and in every
//!   domain's private copy of it (`paging::unmap_in_block`,
//!   break-before-make — safe because nothing uses a chunk just taken from
//!   the allocator), so the guard holds in every view, including views
//!   made later. A stack goes back to the machine's spare list when its
//!   thread ends and is reused with its guard; chunks are never given back.
//!
//! A stack that runs out runs into its guard page: a data abort at EL1,
//! which `vectors.s` (`KERNEL_SYNC`) takes on the **exception stack** — the
//! one vector for a synchronous exception in the kernel itself, which is
//! always a kernel bug — so that it never pushes onto the stack that ran
//! out. [`overflow`] then tells an overflow from other kernel faults and
//! finds whose stack it was without taking the kernel state, which the
//! code that overflowed may hold: the boot stack is the boot thread's (its
//! number kept when it is adopted); a chunk slot's is the running thread's
//! — as the fast paths' block says — if that thread was last parked on
//! it, and otherwise (a fault between a switch's decision and the switch)
//! the machine's records say whose, if the kernel state is free
//! (`try_lock`). Chunks and views are listed outside the heap and the
//! kernel state; nothing here allocates, no kernel object grows, and
//! making a thread costs what it did but for carving its stack.
//!
//! What it leaves out: a frame bigger than a guard page that skips it
//! (the compiler's stack probes touch every page of a big frame, so Rust
//! code cannot; hand-written assembly moving SP by more than a page
//! could), and one exception stack for the one core (SMP needs one per
//! core, found through a per-core register).

use crate::esr::{FaultKind, Syndrome};
use crate::frame::TrapFrame;
use crate::machine::KERNEL_STACK;
use crate::memory::{self, IdentityTables};
use crate::{cpu, fastpath, paging, state};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use tern_core::domain::DomainId;
use tern_core::frame::{FRAME_SIZE, PhysRange};
use tern_core::thread::{ThreadId, ThreadState};

/// Bytes of a page (and of a guard).
const PAGE: u64 = paging::PAGE;
/// Bytes of a slot: a guard page, then a kernel stack.
pub const SLOT: u64 = PAGE + KERNEL_STACK as u64;
/// Bytes of a chunk of kernel stacks: one 2 MiB block of the kernel's view.
pub const CHUNK: u64 = paging::LEVEL2_BLOCK;
/// Slots in a chunk (the pages left over at its end stay mapped, unused).
pub const SLOTS: u64 = CHUNK / SLOT;
const _: () = assert!((KERNEL_STACK as u64).is_multiple_of(PAGE) && FRAME_SIZE as u64 == PAGE && SLOTS > 0);

/// Most chunks there can be: one per 2 MiB of the largest RAM window.
const MAXIMUM_CHUNKS: usize = (memory::MAXIMUM_RAM_WINDOW / CHUNK) as usize;

/// The chunks made so far, by base address (the first [`CHUNK_COUNT`]).
static CHUNKS: [AtomicU64; MAXIMUM_CHUNKS] = [const { AtomicU64::new(0) }; MAXIMUM_CHUNKS];
static CHUNK_COUNT: AtomicUsize = AtomicUsize::new(0);
/// The boot thread's number (it runs on the boot stack).
static BOOT_THREAD: AtomicU32 = AtomicU32::new(0);

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

/// Exception class: a data abort taken without a change of level.
const CLASS_DATA_ABORT_CURRENT: u8 = 0x25;

/// Take a view's root table off the list (its domain's slot is being
/// reused and the table freed), with the kernel state held.
pub fn remove_view(root: u64) {
    // SAFETY: see `Views`; no other reference to it exists meanwhile.
    let (views, count) = unsafe { &mut *VIEWS.0.get() };
    if let Some(at) = views[..*count].iter().position(|&listed| listed == root) {
        *count -= 1;
        views[at] = views[*count];
        views[*count] = 0;
    }
}

/// Frames the kernel-stack cache holds: every chunk made, whole (its
/// stacks in use, or spare for the next thread; chunks are never given
/// back).
pub fn cached_frames() -> usize {
    CHUNK_COUNT.load(Ordering::Acquire) * (CHUNK / PAGE) as usize
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
    let count = CHUNK_COUNT.load(Ordering::Relaxed);
    if count == MAXIMUM_CHUNKS {
        return None;
    }
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
    CHUNKS[count].store(start, Ordering::Relaxed);
    CHUNK_COUNT.store(count + 1, Ordering::Release);
    Some(slots)
}

/// The kernel stack of the slot at `slot` (above its guard page).
pub fn stack_of_slot(slot: u64) -> PhysRange {
    PhysRange::new(slot + PAGE, slot + SLOT)
}

/// Record the boot thread's number.
pub fn set_boot_thread(thread: ThreadId) {
    BOOT_THREAD.store(thread.get(), Ordering::Relaxed);
}

/// A kernel stack that ran out.
#[derive(Clone, Copy, Debug)]
pub struct Overflow {
    /// The stack.
    pub stack: PhysRange,
    /// The thread that runs on it (the boot thread on the boot stack);
    /// `None` if that could not be told (the kernel state is held).
    pub thread: Option<ThreadId>,
    /// The domain of its top activation and the domain's name (`None`:
    /// it ran only in the kernel).
    pub domain: Option<(DomainId, &'static str)>,
}

/// Whether the synchronous exception at EL1 in `frame`, taken with the
/// stack pointer at `stack_pointer`, is a kernel stack overflow, and
/// whose stack ran out.
///
/// An overflow is a translation fault on a data access at EL1, within a
/// page of the stack pointer (a push below a stack's bottom, or a stack
/// probe, touches the guard page right below it), in a kernel stack's
/// guard page: the boot stack's or a chunk slot's. Reading a guard page
/// from far above it (the `kernel-fault` scenario reads the boot stack's
/// from deep inside the boot stack) is no overflow.
pub fn overflow(frame: &TrapFrame, stack_pointer: u64) -> Option<Overflow> {
    let syndrome = Syndrome(frame.esr);
    let translation = syndrome.fault_status().is_some_and(|status| status.kind == FaultKind::Translation);
    if syndrome.exception_class() != CLASS_DATA_ABORT_CURRENT
        || !translation
        || frame.far.abs_diff(stack_pointer) >= PAGE
    {
        return None;
    }
    let guard = frame.far & !(PAGE - 1);
    let boot = memory::ImageLayout::of_this_image();
    if guard == boot.stack_guard.start {
        let thread = core::num::NonZeroU32::new(BOOT_THREAD.load(Ordering::Relaxed)).map(ThreadId);
        return Some(Overflow { stack: boot.stack, thread, domain: thread.and_then(fastpath::where_thread_is) });
    }
    let chunk = guard & !(CHUNK - 1);
    let count = CHUNK_COUNT.load(Ordering::Acquire);
    let known = CHUNKS[..count].iter().any(|base| base.load(Ordering::Relaxed) == chunk);
    if !known || !(guard - chunk).is_multiple_of(SLOT) || (guard - chunk) / SLOT >= SLOTS {
        return None;
    }
    let stack = stack_of_slot(guard);
    let parked_here = |parked: u64| stack.start < parked && parked <= stack.end;
    let thread = match fastpath::running_thread() {
        Some((running, parked)) if parked_here(parked) => Some(running),
        _ => state::KERNEL.try_lock().and_then(|kernel| {
            let kernel = kernel.as_ref()?;
            let alive = |id: &ThreadId| {
                kernel.objects.thread(*id).is_some_and(|thread| !matches!(thread.state, ThreadState::Ended(_)))
            };
            kernel.machine.threads_on_stack(stack).find(alive)
        }),
    };
    Some(Overflow { stack, thread, domain: thread.and_then(fastpath::where_thread_is) })
}
