//! # Kernel heap
//!
//! The kernel's `alloc` collections are served by [`LockedHeap`], a
//! [`spin::Mutex`] around [`Heap`]: a first-fit allocator over a free list
//! kept in address order. Each free block stores its own list node (its
//! size and a pointer to the next free block) in its first 16 bytes, so the
//! allocator needs no memory of its own and can be handed any number of
//! regions ([`Heap::add_region`]) as the kernel grows the heap. Every block,
//! free or allocated, is a multiple of 16 bytes and starts on a 16-byte
//! boundary; a request is rounded up to that, and a block is split so that
//! exactly the rounded size is handed out. Because everything is in 16-byte
//! units, the padding in front of a more strongly aligned allocation (up to
//! page alignment and beyond) is always large enough to stay on the free
//! list, and the tail after it too: no byte is ever lost to slack. Freeing
//! inserts the block at its address and merges it with the neighbours it
//! touches, so a heap whose allocations are all freed is again one block
//! per region.
//!
//! Why this design: the kernel heap is small, allocation is not on a hot
//! path (kernel objects are created at domain start-up, not per message),
//! and the code must be simple enough to trust. A first-fit, address-ordered
//! list fragments little in practice and its invariants are easy to check
//! in tests. What it leaves out: no size classes or per-CPU caches, so
//! allocation and freeing are linear in the number of free blocks; no
//! detection of double frees or of frees with the wrong layout in release
//! builds (debug builds assert that a freed block overlaps no free block);
//! no shrinking or returning memory to the frame allocator; and the lock is
//! a plain spin lock that does not mask interrupts: the kernel masks them
//! around heap use itself, and interrupt handlers never allocate. A domain's
//! heap is the same [`LockedHeap`], but a domain's threads are preempted
//! while they hold its lock: its users take it with
//! [`LockedHeap::try_alloc`] and [`LockedHeap::try_dealloc`] and give the
//! processor away while it is held (see `tern_aarch64::memory`), because a
//! thread spinning for a lock that a less urgent thread holds keeps the
//! processor from it for good under a strict-priority scheduler.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

/// Smallest block handed out or kept free, and the minimum alignment of
/// every block: room for a [`FreeBlock`] node on 64-bit targets.
const MIN_BLOCK: usize = 16;

// A free block's node must fit in the smallest block.
const _: () = assert!(core::mem::size_of::<FreeBlock>() <= MIN_BLOCK);

/// The list node stored at the start of every free block.
struct FreeBlock {
    /// Size of the free block in bytes, node included (a multiple of 16).
    size: usize,
    /// The next free block, at a higher address, or null.
    next: *mut FreeBlock,
}

/// A first-fit heap over caller-supplied regions; see the module
/// documentation. Not thread-safe by itself: see [`LockedHeap`].
pub struct Heap {
    /// Lowest-addressed free block, or null when nothing is free.
    head: *mut FreeBlock,
    /// Bytes in all regions added (after trimming to 16-byte units).
    total: usize,
    /// Bytes currently on the free list.
    free: usize,
}

// SAFETY: the heap only holds pointers into memory that `add_region`'s caller
// gave it for its exclusive use; nothing ties that memory to a thread, so
// moving the heap to another thread (under a lock) is sound.
unsafe impl Send for Heap {}

impl core::fmt::Debug for Heap {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.debug_struct("Heap").field("bytes_total", &self.total).field("bytes_free", &self.free).finish()
    }
}

impl Default for Heap {
    fn default() -> Self {
        Self::empty()
    }
}

/// The size actually reserved for `layout`: at least 16 and a multiple of
/// 16, or `None` on overflow.
fn block_size(layout: Layout) -> Option<usize> {
    let size = layout.size().max(MIN_BLOCK);
    Some(size.checked_add(MIN_BLOCK - 1)? & !(MIN_BLOCK - 1))
}

impl Heap {
    /// A heap with no memory; every allocation fails until
    /// [`Self::add_region`] is called.
    pub const fn empty() -> Self {
        Self { head: ptr::null_mut(), total: 0, free: 0 }
    }

    /// Give the heap the memory `[start, start + size)`. The start is
    /// rounded up and the end down to 16-byte boundaries; a region smaller
    /// than 16 bytes after that is ignored. May be called several times
    /// (growth); a region adjacent to an earlier one merges with it.
    ///
    /// # Safety
    ///
    /// `[start, start + size)` is valid, unused, writable memory for the
    /// heap's whole life, not aliased, and does not overlap a region given
    /// before.
    pub unsafe fn add_region(&mut self, start: usize, size: usize) {
        let Some(end) = start.checked_add(size) else {
            return;
        };
        let Some(aligned_start) = start.checked_add(MIN_BLOCK - 1).map(|s| s & !(MIN_BLOCK - 1)) else {
            return;
        };
        let aligned_end = end & !(MIN_BLOCK - 1);
        if aligned_end <= aligned_start || aligned_end - aligned_start < MIN_BLOCK {
            return;
        }
        let block_bytes = aligned_end - aligned_start;
        let block = ptr::with_exposed_provenance_mut::<FreeBlock>(aligned_start);
        // SAFETY: the caller gives us this memory for the heap's life; it is
        // 16-byte aligned, at least 16 bytes, and overlaps no free block.
        unsafe { self.insert_free(block, block_bytes) };
        self.total += block_bytes;
    }

    /// Allocate a block fitting `layout`, or `None` if no free block is
    /// large enough. The block is at least 16-byte aligned.
    pub fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let size = block_size(layout)?;
        let align = layout.align().max(MIN_BLOCK);
        let mut previous: *mut FreeBlock = ptr::null_mut();
        let mut current = self.head;
        while !current.is_null() {
            // SAFETY: every pointer on the list is a live free block inside
            // memory given to `add_region` (the list invariant), 16-byte
            // aligned, holding an initialised node.
            let (block_bytes, next) = unsafe { ((*current).size, (*current).next) };
            let address = current.addr();
            // Both `address` and `align` are multiples of 16, so the front
            // padding is 0 or at least 16 bytes: big enough to stay free.
            let fits = address
                .checked_next_multiple_of(align)
                .map(|aligned| aligned - address)
                .filter(|front| front.checked_add(size).is_some_and(|needed| needed <= block_bytes));
            if let Some(front) = fits {
                let back = block_bytes - front - size;
                let base = current.cast::<u8>();
                // SAFETY: `front + size + back == block_bytes`, so every
                // pointer formed stays inside the free block at `current`,
                // and each new node lands on a 16-byte boundary within it.
                unsafe {
                    let allocation = base.add(front);
                    let successor = if back >= MIN_BLOCK {
                        let tail = base.add(front + size).cast::<FreeBlock>();
                        tail.write(FreeBlock { size: back, next });
                        tail
                    } else {
                        next
                    };
                    if front >= MIN_BLOCK {
                        // Keep the padding as the (shrunken) block at
                        // `current`; link it to the tail, if any.
                        (*current).size = front;
                        (*current).next = successor;
                    } else if previous.is_null() {
                        self.head = successor;
                    } else {
                        (*previous).next = successor;
                    }
                    self.free -= size;
                    return NonNull::new(allocation);
                }
            }
            previous = current;
            current = next;
        }
        None
    }

    /// Return a block to the heap, merging it with free neighbours.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`Self::allocate`] on this heap with this `layout`
    /// and was not freed since.
    pub unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // A layout that allocated cannot overflow here.
        let Some(size) = block_size(layout) else {
            return;
        };
        // SAFETY: by the caller's contract the block `[ptr, ptr + size)` was
        // handed out by `allocate` (16-byte aligned, exactly `size` bytes)
        // and is now unused.
        unsafe { self.insert_free(ptr.as_ptr().cast::<FreeBlock>(), size) };
    }

    /// Bytes on the free list.
    pub fn bytes_free(&self) -> usize {
        self.free
    }

    /// Bytes handed out and not yet freed (allocations are counted at their
    /// rounded-up size).
    pub fn bytes_used(&self) -> usize {
        self.total - self.free
    }

    /// Bytes in all regions given to the heap.
    pub fn bytes_total(&self) -> usize {
        self.total
    }

    /// Put `[block, block + size)` on the free list in address order,
    /// merging it with the blocks just before and after it if they touch.
    ///
    /// # Safety
    ///
    /// `block` is 16-byte aligned, `size` is a non-zero multiple of 16, and
    /// the memory is owned by the heap, writable, unused and not already on
    /// the free list.
    unsafe fn insert_free(&mut self, block: *mut FreeBlock, size: usize) {
        let address = block.addr();
        let mut previous: *mut FreeBlock = ptr::null_mut();
        let mut next = self.head;
        // SAFETY: for every dereference below, list pointers are live free
        // blocks (the list invariant); `block` is writable memory the caller
        // hands over.
        unsafe {
            while !next.is_null() && next.addr() < address {
                previous = next;
                next = (*next).next;
            }
            debug_assert!(
                previous.is_null() || previous.addr() + (*previous).size <= address,
                "heap: freed block overlaps the free block before it (double free?)"
            );
            debug_assert!(
                next.is_null() || address + size <= next.addr(),
                "heap: freed block overlaps the free block after it (double free?)"
            );
            let merged = if !previous.is_null() && previous.addr() + (*previous).size == address {
                (*previous).size += size;
                previous
            } else {
                block.write(FreeBlock { size, next });
                if previous.is_null() {
                    self.head = block;
                } else {
                    (*previous).next = block;
                }
                block
            };
            if !next.is_null() && merged.addr() + (*merged).size == next.addr() {
                (*merged).size += (*next).size;
                (*merged).next = (*next).next;
            }
        }
        self.free += size;
    }
}

/// The global-allocator wrapper: a `spin::Mutex<Heap>`. (The kernel masks
/// interrupts around it itself; interrupt handlers never allocate.)
pub struct LockedHeap(spin::Mutex<Heap>);

impl core::fmt::Debug for LockedHeap {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (used, free) = self.stats();
        formatter.debug_struct("LockedHeap").field("bytes_used", &used).field("bytes_free", &free).finish()
    }
}

impl Default for LockedHeap {
    fn default() -> Self {
        Self::empty()
    }
}

impl LockedHeap {
    /// A locked heap with no memory, usable in a `static`.
    pub const fn empty() -> Self {
        Self(spin::Mutex::new(Heap::empty()))
    }

    /// Give the heap the memory `[start, start + size)`; see
    /// [`Heap::add_region`].
    ///
    /// # Safety
    ///
    /// As for [`Heap::add_region`]: the memory is valid, unused, writable,
    /// unaliased and the heap's for its whole life.
    pub unsafe fn add_region(&self, start: usize, size: usize) {
        // SAFETY: the caller upholds `Heap::add_region`'s contract.
        unsafe { self.0.lock().add_region(start, size) }
    }

    /// As [`GlobalAlloc::alloc`], but `None` at once, with nothing done,
    /// while another thread holds the lock.
    pub fn try_alloc(&self, layout: Layout) -> Option<*mut u8> {
        let mut heap = self.0.try_lock()?;
        Some(heap.allocate(layout).map_or(ptr::null_mut(), NonNull::as_ptr))
    }

    /// As [`GlobalAlloc::dealloc`], but false at once, with nothing done,
    /// while another thread holds the lock.
    ///
    /// # Safety
    ///
    /// As for [`GlobalAlloc::dealloc`]: `ptr` came from this heap with
    /// `layout` and has not been freed since.
    pub unsafe fn try_dealloc(&self, ptr: *mut u8, layout: Layout) -> bool {
        let Some(mut heap) = self.0.try_lock() else { return false };
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
            unsafe { heap.deallocate(block, layout) }
        }
        true
    }

    /// `(bytes used, bytes free)`.
    pub fn stats(&self) -> (usize, usize) {
        let heap = self.0.lock();
        (heap.bytes_used(), heap.bytes_free())
    }
}

// SAFETY: `alloc` returns either null or a block from `Heap::allocate`,
// which is at least `layout.size()` bytes, aligned to `layout.align()`, and
// not handed out again until it is freed; `dealloc` only returns blocks the
// caller got from `alloc` with the same layout. The mutex serialises access.
unsafe impl GlobalAlloc for LockedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` was returned by `alloc`
            // on this allocator with this layout and not freed since.
            unsafe { self.0.lock().deallocate(block, layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A heap over a zeroed `Vec<u128>` of `bytes` bytes (16-byte aligned).
    struct Arena {
        heap: Heap,
        _storage: Vec<u128>,
        start: usize,
        len: usize,
    }

    fn arena(bytes: usize) -> Arena {
        let mut storage = vec![0u128; bytes / 16];
        let start = storage.as_mut_ptr() as usize;
        let mut heap = Heap::empty();
        // SAFETY: the storage lives in the arena as long as the heap and is
        // used by nothing else.
        unsafe { heap.add_region(start, bytes) };
        Arena { heap, _storage: storage, start, len: bytes }
    }

    /// The free list as (address, size) pairs, checking its invariants.
    fn free_blocks(heap: &Heap) -> Vec<(usize, usize)> {
        let mut blocks = Vec::new();
        let mut current = heap.head;
        while !current.is_null() {
            // SAFETY: list invariant.
            let (size, next) = unsafe { ((*current).size, (*current).next) };
            blocks.push((current.addr(), size));
            current = next;
        }
        for window in blocks.windows(2) {
            // Address ordered, and merged: never touching.
            assert!(window[0].0 + window[0].1 < window[1].0, "{blocks:x?}");
        }
        for &(address, size) in &blocks {
            assert_eq!(address % 16, 0);
            assert!(size >= MIN_BLOCK && size % 16 == 0);
        }
        assert_eq!(blocks.iter().map(|b| b.1).sum::<usize>(), heap.bytes_free());
        blocks
    }

    /// Deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    #[test]
    fn empty_heap_fails() {
        let mut heap = Heap::empty();
        assert_eq!(heap.allocate(Layout::new::<u64>()), None);
        assert_eq!((heap.bytes_total(), heap.bytes_free()), (0, 0));
    }

    #[test]
    fn region_is_trimmed_to_16_byte_units() {
        let mut storage = vec![0u128; 16];
        let start = storage.as_mut_ptr() as usize;
        let mut heap = Heap::empty();
        // SAFETY: the storage outlives the heap and is used by nothing else.
        unsafe { heap.add_region(start + 3, 200) };
        // [start + 16, start + 192): 176 bytes.
        assert_eq!(heap.bytes_total(), 176);
        assert_eq!(free_blocks(&heap), vec![(start + 16, 176)]);
        // Too small once trimmed: ignored.
        let mut tiny = Heap::empty();
        // SAFETY: as above (the heap never touches an ignored region).
        unsafe { tiny.add_region(start + 1, 20) };
        assert_eq!(tiny.bytes_total(), 0);
    }

    #[test]
    fn small_allocations_are_rounded_and_adjacent() {
        let mut arena = arena(4096);
        let first = arena.heap.allocate(Layout::from_size_align(1, 1).unwrap()).unwrap();
        let second = arena.heap.allocate(Layout::from_size_align(17, 1).unwrap()).unwrap();
        assert_eq!(first.as_ptr() as usize, arena.start);
        assert_eq!(second.as_ptr() as usize, arena.start + 16);
        assert_eq!(arena.heap.bytes_used(), 16 + 32);
        assert_eq!(free_blocks(&arena.heap), vec![(arena.start + 48, 4096 - 48)]);
        // SAFETY: both came from this heap with these layouts.
        unsafe {
            arena.heap.deallocate(first, Layout::from_size_align(1, 1).unwrap());
            assert_eq!(free_blocks(&arena.heap).len(), 2);
            arena.heap.deallocate(second, Layout::from_size_align(17, 1).unwrap());
        }
        assert_eq!(free_blocks(&arena.heap), vec![(arena.start, 4096)]);
    }

    #[test]
    fn large_alignment_keeps_front_padding_free() {
        let mut arena = arena(64 * 1024);
        let small = arena.heap.allocate(Layout::new::<u64>()).unwrap();
        for align in [32, 64, 128, 256, 512, 1024, 2048, 4096] {
            let layout = Layout::from_size_align(48, align).unwrap();
            let free_before = arena.heap.bytes_free();
            let block = arena.heap.allocate(layout).unwrap();
            assert_eq!(block.as_ptr() as usize % align, 0, "align {align}");
            // Exactly the rounded size left the free list: the padding
            // stayed free.
            assert_eq!(arena.heap.bytes_free(), free_before - 48);
            // SAFETY: just allocated with this layout.
            unsafe { arena.heap.deallocate(block, layout) };
            assert_eq!(arena.heap.bytes_free(), free_before);
        }
        // SAFETY: allocated above with this layout.
        unsafe { arena.heap.deallocate(small, Layout::new::<u64>()) };
        assert_eq!(free_blocks(&arena.heap), vec![(arena.start, arena.len)]);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut arena = arena(1024);
        let layout = Layout::from_size_align(100, 8).unwrap(); // 112 bytes
        let mut blocks = Vec::new();
        while let Some(block) = arena.heap.allocate(layout) {
            blocks.push(block);
        }
        assert_eq!(blocks.len(), 1024 / 112);
        assert_eq!(arena.heap.bytes_free(), 1024 % 112);
        assert_eq!(arena.heap.allocate(Layout::from_size_align(2048, 8).unwrap()), None);
        assert_eq!(arena.heap.allocate(Layout::from_size_align(isize::MAX as usize - 15, 16).unwrap()), None);
        // A request fitting the remaining 16-byte tail still succeeds.
        assert!(arena.heap.allocate(Layout::new::<u64>()).is_some());
        assert_eq!(arena.heap.allocate(Layout::new::<u8>()), None);
        assert_eq!(arena.heap.bytes_free(), 0);
        assert!(free_blocks(&arena.heap).is_empty());
    }

    #[test]
    fn random_cycles_never_overlap_and_fully_coalesce() {
        // Two regions of one buffer with a gap between them, so they cannot
        // merge into one block.
        let bytes = 256 * 1024;
        let mut storage = vec![0u128; bytes / 16];
        let start = storage.as_mut_ptr() as usize;
        let half = bytes / 2;
        let mut heap = Heap::empty();
        // SAFETY: the storage outlives the heap; the two regions are
        // disjoint and used by nothing else.
        unsafe {
            heap.add_region(start + half + 256, half - 256);
            heap.add_region(start, half - 256);
        }
        let total = bytes - 512;
        assert_eq!(heap.bytes_total(), total);
        assert_eq!(free_blocks(&heap).len(), 2);

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut live: Vec<(usize, usize, Layout)> = Vec::new();
        let mut failures = 0;
        for round in 0..20_000 {
            // Keep a few hundred blocks live: enough to fragment the heap,
            // not so many that most requests fail.
            let allocate = live.is_empty() || (live.len() < 250 && rng.below(100) < 55);
            if allocate {
                let size = match rng.below(10) {
                    0 => 1 + rng.below(8192) as usize,
                    1..=3 => 1 + rng.below(512) as usize,
                    _ => 1 + rng.below(64) as usize,
                };
                let align = 1usize << rng.below(13);
                let layout = Layout::from_size_align(size, align).unwrap();
                match heap.allocate(layout) {
                    Some(block) => {
                        let address = block.as_ptr() as usize;
                        assert_eq!(address % align, 0);
                        assert!(address >= start && address + size <= start + bytes);
                        let region_end = if address < start + half { start + half - 256 } else { start + bytes };
                        assert!(address + size <= region_end, "block crosses a region end");
                        for &(other, other_size, _) in &live {
                            assert!(address + size <= other || other + other_size <= address, "round {round}: overlap");
                        }
                        // Scribble over the block to catch list corruption.
                        // SAFETY: the block is ours, `size` bytes long.
                        unsafe { ptr::write_bytes(block.as_ptr(), 0xa5, size) };
                        live.push((address, size, layout));
                    }
                    None => failures += 1,
                }
            } else {
                let index = rng.below(live.len() as u64) as usize;
                let (address, _, layout) = live.swap_remove(index);
                // SAFETY: allocated above with this layout, freed once.
                unsafe {
                    heap.deallocate(NonNull::new(address as *mut u8).unwrap(), layout);
                }
            }
            if round % 1000 == 0 {
                free_blocks(&heap);
            }
            let used: usize = live.iter().map(|&(_, _, l)| block_size(l).unwrap()).sum();
            assert_eq!(heap.bytes_used(), used);
        }
        assert!(failures < 100, "too many failures: {failures}");
        for (address, _, layout) in live.drain(..) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { heap.deallocate(NonNull::new(address as *mut u8).unwrap(), layout) };
        }
        assert_eq!(heap.bytes_free(), heap.bytes_total());
        assert_eq!(heap.bytes_used(), 0);
        assert_eq!(free_blocks(&heap), vec![(start, half - 256), (start + half + 256, half - 256)]);
    }

    #[test]
    fn adjacent_regions_merge() {
        let mut storage = vec![0u128; 64];
        let start = storage.as_mut_ptr() as usize;
        let mut heap = Heap::empty();
        // SAFETY: disjoint halves of storage that outlives the heap.
        unsafe {
            heap.add_region(start + 512, 512);
            heap.add_region(start, 512);
        }
        assert_eq!(free_blocks(&heap), vec![(start, 1024)]);
        assert!(heap.allocate(Layout::from_size_align(1024, 16).unwrap()).is_some());
    }

    #[test]
    fn global_alloc_and_realloc() {
        let mut storage = vec![0u128; 4096 / 16];
        let locked = LockedHeap::empty();
        // SAFETY: the storage outlives the heap and is used by nothing else.
        unsafe { locked.add_region(storage.as_mut_ptr() as usize, 4096) };
        assert_eq!(locked.stats(), (0, 4096));
        let layout = Layout::from_size_align(40, 8).unwrap();
        // SAFETY: non-zero layout; the pointers are used within their sizes
        // and freed once with their layouts.
        unsafe {
            let block = locked.alloc(layout);
            assert!(!block.is_null());
            for index in 0..40 {
                block.add(index).write(index as u8);
            }
            assert_eq!(locked.stats(), (48, 4096 - 48));
            let grown = locked.realloc(block, layout, 400);
            assert!(!grown.is_null());
            for index in 0..40 {
                assert_eq!(grown.add(index).read(), index as u8);
            }
            let grown_layout = Layout::from_size_align(400, 8).unwrap();
            assert_eq!(locked.stats().0, 400);
            assert!(locked.alloc(Layout::from_size_align(8192, 8).unwrap()).is_null());
            locked.dealloc(grown, grown_layout);
        }
        assert_eq!(locked.stats(), (0, 4096));
    }
}
