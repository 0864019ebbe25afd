//! # Physical frame allocator
//!
//! This module hands out 4 KiB physical frames from one contiguous span of
//! physical address space, `[base, end)`. It keeps one bit per frame in a
//! bitmap that the caller supplies: the kernel passes a static array sized
//! with [`FrameAllocator::bitmap_words`] for its board, and the tests pass a
//! `Vec`. A bit set to 1 means "in use"; every frame starts in use, and the
//! boot code then frees what the boot information says is RAM
//! ([`FrameAllocator::add_free`]) and re-reserves what must not be handed out:
//! the kernel image, the device-tree blob, firmware-reserved areas
//! ([`FrameAllocator::reserve`]). Starting from "everything is taken" is the
//! safe default: a hole in the memory map the boot code forgot about is
//! never handed out.
//!
//! A bitmap was chosen over a free list or a buddy allocator because it
//! needs no memory beyond its fixed bitmap (4 GiB of RAM is 128 KiB of bits),
//! works before any heap exists, answers "is this frame allocated?" for
//! double-free detection, and makes aligned contiguous runs (the 2 MiB-aligned
//! regions a domain's memory is built from) a simple scan. Single frames stay
//! cheap: a search hint remembers the first word that may hold a free frame,
//! and a word of 64 frames is tested at once with `trailing_ones`.
//!
//! What it leaves out, deliberately: there is no locking (the owner wraps it
//! in whatever lock it needs), no NUMA or zones, and only one span: a board
//! whose RAM has holes uses one span covering all of it and leaves the holes
//! reserved, which costs one bit per hole frame. The bitmap cannot tell a
//! frame that was *reserved* from one that was *allocated*, so
//! [`FrameAllocator::free`] on a reserved frame succeeds; the kernel must not
//! free what it did not allocate. Contiguous allocation is a linear scan,
//! fine for the rare large requests it serves, not for a hot path.

/// Size of one physical frame (the translation granule): 4 KiB.
pub const FRAME_SIZE: usize = 4096;

/// [`FRAME_SIZE`] as a physical-address quantity.
const FRAME_BYTES: u64 = FRAME_SIZE as u64;

/// Frames tracked by one word of the bitmap.
const FRAMES_PER_WORD: usize = u64::BITS as usize;

/// Half-open physical range [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First address inside the range.
    pub start: u64,
    /// First address past the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, end)`. A range with `end <= start` is empty.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Length in bytes (0 if the range is empty or inverted).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range contains no address.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if `addr` lies inside the range.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True if the two ranges share at least one address.
    pub fn overlaps(&self, other: &PhysRange) -> bool {
        self.intersection(other).is_some()
    }

    /// The addresses common to both ranges, or `None` if there are none.
    pub fn intersection(&self, other: &PhysRange) -> Option<PhysRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(PhysRange { start, end })
    }
}

/// Why a frame allocator operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The address (or part of the run) lies outside the allocator's span,
    /// or the span itself is inverted.
    OutOfRange,
    /// The address is not a multiple of [`FRAME_SIZE`].
    Misaligned,
    /// The frame is already free (a double free).
    NotAllocated,
    /// A frame count of zero.
    BadCount,
    /// The bitmap supplied to [`FrameAllocator::new`] is shorter than
    /// [`FrameAllocator::bitmap_words`] for the span.
    BitmapTooSmall,
}

/// Bitmap allocator over one span of physical memory [base, end). Bitmap
/// storage is supplied by the caller (the kernel passes a static array; tests
/// a Vec), one bit per frame, 1 = in use.
pub struct FrameAllocator<'a> {
    /// First address of the span (frame aligned).
    base: u64,
    /// First address past the span (frame aligned).
    end: u64,
    /// One bit per frame, 1 = in use. Exactly `bitmap_words` long; the bits
    /// past `total` in the last word are permanently 1.
    bitmap: &'a mut [u64],
    /// Number of frames in the span.
    total: usize,
    /// Number of frames whose bit is 0.
    free: usize,
    /// Every word below this index is entirely in use.
    hint: usize,
}

impl core::fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("FrameAllocator")
            .field("base", &format_args!("{:#x}", self.base))
            .field("end", &format_args!("{:#x}", self.end))
            .field("total_frames", &self.total)
            .field("free_frames", &self.free)
            .finish()
    }
}

/// Round `value` down to a multiple of `align` (a power of two).
const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Round `value` up to a multiple of `align` (a power of two), or `None` if
/// that overflows.
const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(bumped) => Some(align_down(bumped, align)),
        None => None,
    }
}

/// Mask of the bits `[low, high)` of a word, `0 <= low < high <= 64`.
const fn bit_mask(low: usize, high: usize) -> u64 {
    let upper = if high == FRAMES_PER_WORD { u64::MAX } else { (1u64 << high) - 1 };
    upper & !((1u64 << low) - 1)
}

impl<'a> FrameAllocator<'a> {
    /// Words of bitmap needed for a span of `bytes`.
    pub const fn bitmap_words(bytes: u64) -> usize {
        let frames = bytes.div_ceil(FRAME_BYTES);
        frames.div_ceil(FRAMES_PER_WORD as u64) as usize
    }

    /// Every frame starts IN USE (reserved); the caller frees what is RAM.
    ///
    /// `base` and `end` must be multiples of [`FRAME_SIZE`] with
    /// `base <= end`. Only the first [`Self::bitmap_words`]`(end - base)`
    /// words of `bitmap` are used.
    pub fn new(base: u64, end: u64, bitmap: &'a mut [u64]) -> Result<Self, FrameError> {
        if end < base {
            return Err(FrameError::OutOfRange);
        }
        if !base.is_multiple_of(FRAME_BYTES) || !end.is_multiple_of(FRAME_BYTES) {
            return Err(FrameError::Misaligned);
        }
        let total = usize::try_from((end - base) / FRAME_BYTES).map_err(|_| FrameError::OutOfRange)?;
        let words = Self::bitmap_words(end - base);
        if bitmap.len() < words {
            return Err(FrameError::BitmapTooSmall);
        }
        let bitmap = &mut bitmap[..words];
        bitmap.fill(u64::MAX);
        Ok(Self { base, end, bitmap, total, free: 0, hint: 0 })
    }

    /// Mark the frames wholly inside `range` free (align start up, end
    /// down); parts outside the span are ignored.
    pub fn add_free(&mut self, range: PhysRange) {
        let Some(start) = align_up(range.start.max(self.base), FRAME_BYTES) else {
            return;
        };
        let end = align_down(range.end.min(self.end), FRAME_BYTES);
        if start >= end {
            return;
        }
        let first = self.index_of(start);
        let last = self.index_of(end);
        let changed = self.set_bits(first, last, false);
        self.free += changed;
        self.hint = self.hint.min(first / FRAMES_PER_WORD);
    }

    /// Mark every frame touching `range` in use (align outward); parts
    /// outside the span are ignored.
    pub fn reserve(&mut self, range: PhysRange) {
        let start = align_down(range.start.max(self.base), FRAME_BYTES);
        // `self.end` is frame aligned, so rounding up a value no larger than
        // it cannot pass it (nor overflow).
        let end = align_up(range.end.min(self.end), FRAME_BYTES).unwrap_or(self.end);
        if start >= end {
            return;
        }
        let first = self.index_of(start);
        let last = self.index_of(end);
        let changed = self.set_bits(first, last, true);
        self.free -= changed;
    }

    /// One frame, or `None` when every frame is in use. Returns the lowest
    /// free frame's physical address.
    pub fn alloc(&mut self) -> Option<u64> {
        while self.hint < self.bitmap.len() {
            let word = self.bitmap[self.hint];
            if word != u64::MAX {
                let bit = word.trailing_ones() as usize;
                self.bitmap[self.hint] = word | (1 << bit);
                self.free -= 1;
                return Some(self.address_of(self.hint * FRAMES_PER_WORD + bit));
            }
            self.hint += 1;
        }
        None
    }

    /// `count` contiguous frames whose first address is a multiple of
    /// `align` bytes (power of two, >= FRAME_SIZE); e.g. 512 frames aligned
    /// to 2 MiB for a domain region.
    ///
    /// Returns `None` if no such run is free, if `count` is zero, or if
    /// `align` is not a power of two at least [`FRAME_SIZE`].
    pub fn alloc_contiguous(&mut self, count: usize, align: u64) -> Option<u64> {
        if count == 0 || !align.is_power_of_two() || align < FRAME_BYTES || count > self.free {
            return None;
        }
        // Index of the first frame whose address is `align` aligned, and the
        // distance in frames between aligned frames.
        let first_aligned = align_up(self.base, align)?;
        let step = usize::try_from(align / FRAME_BYTES).ok()?;
        let mut candidate = usize::try_from((first_aligned - self.base) / FRAME_BYTES).ok()?;
        // Nothing below the hint's word is free: start the search there.
        let floor = self.hint * FRAMES_PER_WORD;
        if candidate < floor {
            candidate += (floor - candidate).div_ceil(step) * step;
        }
        loop {
            let run_end = candidate.checked_add(count)?;
            if run_end > self.total {
                return None;
            }
            match self.last_used_in(candidate, run_end) {
                None => {
                    self.set_bits(candidate, run_end, true);
                    self.free -= count;
                    return Some(self.address_of(candidate));
                }
                // Every candidate up to `used` would include it: jump to the
                // first aligned frame past it.
                Some(used) => {
                    let skip = (used + 1 - candidate).div_ceil(step);
                    candidate = candidate.checked_add(skip.checked_mul(step)?)?;
                }
            }
        }
    }

    /// Return one frame obtained from [`Self::alloc`] (or reserved).
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        self.free_contiguous(addr, 1)
    }

    /// Return `count` frames starting at `addr`. All-or-nothing: every frame
    /// is checked to be in use before any is freed.
    pub fn free_contiguous(&mut self, addr: u64, count: usize) -> Result<(), FrameError> {
        if count == 0 {
            return Err(FrameError::BadCount);
        }
        if addr < self.base || addr >= self.end {
            return Err(FrameError::OutOfRange);
        }
        if !addr.is_multiple_of(FRAME_BYTES) {
            return Err(FrameError::Misaligned);
        }
        let first = self.index_of(addr);
        let last = first.checked_add(count).filter(|&last| last <= self.total).ok_or(FrameError::OutOfRange)?;
        if self.first_free_in(first, last).is_some() {
            return Err(FrameError::NotAllocated);
        }
        self.set_bits(first, last, false);
        self.free += count;
        self.hint = self.hint.min(first / FRAMES_PER_WORD);
        Ok(())
    }

    /// Number of frames currently free.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Number of frames in the span, free or not.
    pub fn total_frames(&self) -> usize {
        self.total
    }

    /// First address of the span.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// First address past the span.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Frame index of `addr`, which is frame aligned and within the span
    /// (or equal to its end).
    fn index_of(&self, addr: u64) -> usize {
        // The span's frame count fits a usize (checked in `new`).
        ((addr - self.base) / FRAME_BYTES) as usize
    }

    /// Physical address of frame `index`.
    fn address_of(&self, index: usize) -> u64 {
        self.base + index as u64 * FRAME_BYTES
    }

    /// Set (`used`) or clear the bits of frames `[first, last)`; returns how
    /// many bits changed.
    fn set_bits(&mut self, first: usize, last: usize, used: bool) -> usize {
        let mut changed = 0;
        let mut index = first;
        while index < last {
            let word_index = index / FRAMES_PER_WORD;
            let low = index % FRAMES_PER_WORD;
            let high = (last - word_index * FRAMES_PER_WORD).min(FRAMES_PER_WORD);
            let mask = bit_mask(low, high);
            let word = &mut self.bitmap[word_index];
            if used {
                changed += (!*word & mask).count_ones() as usize;
                *word |= mask;
            } else {
                changed += (*word & mask).count_ones() as usize;
                *word &= !mask;
            }
            index = (word_index + 1) * FRAMES_PER_WORD;
        }
        changed
    }

    /// Highest in-use frame index in `[first, last)`, if any.
    fn last_used_in(&self, first: usize, last: usize) -> Option<usize> {
        let mut end = last;
        while end > first {
            let word_index = (end - 1) / FRAMES_PER_WORD;
            let word_base = word_index * FRAMES_PER_WORD;
            let low = first.saturating_sub(word_base);
            let used = self.bitmap[word_index] & bit_mask(low, end - word_base);
            if used != 0 {
                return Some(word_base + (FRAMES_PER_WORD - 1 - used.leading_zeros() as usize));
            }
            end = word_base;
        }
        None
    }

    /// Lowest free frame index in `[first, last)`, if any.
    fn first_free_in(&self, first: usize, last: usize) -> Option<usize> {
        let mut index = first;
        while index < last {
            let word_index = index / FRAMES_PER_WORD;
            let word_base = word_index * FRAMES_PER_WORD;
            let high = (last - word_base).min(FRAMES_PER_WORD);
            let free = !self.bitmap[word_index] & bit_mask(index - word_base, high);
            if free != 0 {
                return Some(word_base + free.trailing_zeros() as usize);
            }
            index = word_base + FRAMES_PER_WORD;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    const MIB: u64 = 1024 * 1024;

    /// Bitmap storage for a span of `bytes`.
    fn storage(bytes: u64) -> Vec<u64> {
        vec![0; FrameAllocator::bitmap_words(bytes)]
    }

    #[test]
    fn range_arithmetic() {
        let range = PhysRange::new(0x1000, 0x3000);
        assert_eq!(range.len(), 0x2000);
        assert!(!range.is_empty());
        assert!(range.contains(0x1000));
        assert!(range.contains(0x2fff));
        assert!(!range.contains(0x3000));
        assert!(!range.contains(0xfff));
        assert!(range.overlaps(&PhysRange::new(0x2fff, 0x4000)));
        assert!(!range.overlaps(&PhysRange::new(0x3000, 0x4000)));
        assert!(!range.overlaps(&PhysRange::new(0x2000, 0x2000)));
        assert_eq!(range.intersection(&PhysRange::new(0x2000, 0x8000)), Some(PhysRange::new(0x2000, 0x3000)));
        assert_eq!(range.intersection(&PhysRange::new(0x0, 0x1000)), None);
        let inverted = PhysRange::new(0x3000, 0x1000);
        assert!(inverted.is_empty());
        assert_eq!(inverted.len(), 0);
    }

    #[test]
    fn bitmap_words_rounds_up() {
        assert_eq!(FrameAllocator::bitmap_words(0), 0);
        assert_eq!(FrameAllocator::bitmap_words(1), 1);
        assert_eq!(FrameAllocator::bitmap_words(64 * FRAME_BYTES), 1);
        assert_eq!(FrameAllocator::bitmap_words(65 * FRAME_BYTES), 2);
        // 4 GiB: 1 Mi frames, 16 Ki words.
        assert_eq!(FrameAllocator::bitmap_words(4096 * MIB), 16384);
    }

    #[test]
    fn construction_errors() {
        let mut small = vec![0u64; 1];
        assert_eq!(FrameAllocator::new(0, 65 * FRAME_BYTES, &mut small).err(), Some(FrameError::BitmapTooSmall));
        assert_eq!(FrameAllocator::new(0x800, 0x10000, &mut small).err(), Some(FrameError::Misaligned));
        assert_eq!(FrameAllocator::new(0x2000, 0x1000, &mut small).err(), Some(FrameError::OutOfRange));
        let allocator = FrameAllocator::new(0x1000, 0x1000, &mut small).unwrap();
        assert_eq!(allocator.total_frames(), 0);
    }

    #[test]
    fn everything_starts_reserved() {
        let mut bits = storage(MIB);
        let mut allocator = FrameAllocator::new(0x4000_0000, 0x4000_0000 + MIB, &mut bits).unwrap();
        assert_eq!(allocator.total_frames(), 256);
        assert_eq!(allocator.free_frames(), 0);
        assert_eq!(allocator.alloc(), None);
        assert_eq!(allocator.base(), 0x4000_0000);
        assert_eq!(allocator.end(), 0x4000_0000 + MIB);
    }

    #[test]
    fn add_free_aligns_inward_and_clips_to_span() {
        let base = 0x10_0000;
        let mut bits = storage(MIB);
        let mut allocator = FrameAllocator::new(base, base + MIB, &mut bits).unwrap();
        // Partial frames at both ends are not freed.
        allocator.add_free(PhysRange::new(base + 0x800, base + 0x3800));
        assert_eq!(allocator.free_frames(), 2);
        assert_eq!(allocator.alloc(), Some(base + 0x1000));
        assert_eq!(allocator.alloc(), Some(base + 0x2000));
        assert_eq!(allocator.alloc(), None);
        // Parts outside the span are ignored.
        allocator.add_free(PhysRange::new(0, u64::MAX));
        assert_eq!(allocator.free_frames(), 256);
        // Freeing again does not double count.
        allocator.add_free(PhysRange::new(base, base + MIB));
        assert_eq!(allocator.free_frames(), 256);
        // A range entirely outside changes nothing.
        allocator.reserve(PhysRange::new(base, base + 0x1000));
        allocator.add_free(PhysRange::new(u64::MAX - 10, u64::MAX));
        allocator.add_free(PhysRange::new(0, base));
        assert_eq!(allocator.free_frames(), 255);
    }

    #[test]
    fn reservation_aligns_outward() {
        let mut bits = storage(MIB);
        let mut allocator = FrameAllocator::new(0, MIB, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(0, MIB));
        assert_eq!(allocator.free_frames(), 256);
        // Touches frames 1, 2 and 3.
        allocator.reserve(PhysRange::new(0x1fff, 0x3001));
        assert_eq!(allocator.free_frames(), 253);
        // Reserving again changes nothing; an empty range touches nothing.
        allocator.reserve(PhysRange::new(0x2000, 0x3000));
        allocator.reserve(PhysRange::new(0x8000, 0x8000));
        assert_eq!(allocator.free_frames(), 253);
        // Outside the span: ignored.
        allocator.reserve(PhysRange::new(MIB, 2 * MIB));
        assert_eq!(allocator.free_frames(), 253);
        let mut seen = Vec::new();
        while let Some(frame) = allocator.alloc() {
            seen.push(frame);
        }
        assert_eq!(seen.len(), 253);
        assert_eq!(seen[0], 0);
        assert_eq!(seen[1], 0x4000);
        assert!(!seen.contains(&0x1000) && !seen.contains(&0x2000) && !seen.contains(&0x3000));
    }

    #[test]
    fn alloc_is_aligned_unique_and_exhausts() {
        // An odd-sized span so the last bitmap word is partial.
        let base = 0x8000_0000;
        let frames = 100u64;
        let mut bits = storage(frames * FRAME_BYTES);
        let mut allocator = FrameAllocator::new(base, base + frames * FRAME_BYTES, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(base, base + frames * FRAME_BYTES));
        let mut seen = Vec::new();
        while let Some(frame) = allocator.alloc() {
            assert_eq!(frame % FRAME_BYTES, 0);
            assert!(frame >= base && frame < base + frames * FRAME_BYTES);
            seen.push(frame);
        }
        assert_eq!(seen.len(), frames as usize);
        let mut unique = seen.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seen.len());
        assert_eq!(allocator.free_frames(), 0);
        assert_eq!(allocator.alloc(), None);
        // Freeing one low frame makes it the next one handed out (the hint
        // moves back).
        allocator.free(base + 3 * FRAME_BYTES).unwrap();
        assert_eq!(allocator.free_frames(), 1);
        assert_eq!(allocator.alloc(), Some(base + 3 * FRAME_BYTES));
        assert_eq!(allocator.alloc(), None);
    }

    #[test]
    fn free_errors() {
        let mut bits = storage(MIB);
        let mut allocator = FrameAllocator::new(MIB, 2 * MIB, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(MIB, 2 * MIB));
        let frame = allocator.alloc().unwrap();
        assert_eq!(allocator.free(frame + 1), Err(FrameError::Misaligned));
        assert_eq!(allocator.free(0), Err(FrameError::OutOfRange));
        assert_eq!(allocator.free(2 * MIB), Err(FrameError::OutOfRange));
        assert_eq!(allocator.free(frame), Ok(()));
        assert_eq!(allocator.free(frame), Err(FrameError::NotAllocated));
        assert_eq!(allocator.free_frames(), 256);
        assert_eq!(allocator.free_contiguous(frame, 0), Err(FrameError::BadCount));
    }

    #[test]
    fn contiguous_respects_alignment() {
        // The span starts off a 2 MiB boundary, so the first aligned run
        // begins 1 MiB in.
        let base = 0x4010_0000;
        let end = base + 8 * MIB;
        let mut bits = storage(end - base);
        let mut allocator = FrameAllocator::new(base, end, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(base, end));
        let region = allocator.alloc_contiguous(512, 2 * MIB).unwrap();
        assert_eq!(region % (2 * MIB), 0);
        assert_eq!(region, 0x4020_0000);
        assert_eq!(allocator.free_frames(), 2048 - 512);
        // A single frame still comes from below the region.
        assert_eq!(allocator.alloc(), Some(base));
        // A used frame inside the next aligned window pushes the search on.
        allocator.reserve(PhysRange::new(0x4060_0000, 0x4060_1000));
        let second = allocator.alloc_contiguous(512, 2 * MIB).unwrap();
        assert_eq!(second, 0x4040_0000);
        // 0x4060_0000 is blocked by the reserved frame, and there is no room
        // for another aligned 2 MiB run before the end (0x4090_0000).
        assert_eq!(allocator.alloc_contiguous(512, 2 * MIB), None);
        // Smaller alignment: fits in the 1 MiB below the first region.
        let small = allocator.alloc_contiguous(16, 64 * 1024).unwrap();
        assert_eq!(small % (64 * 1024), 0);
        assert!(small >= base + FRAME_BYTES && small + 16 * FRAME_BYTES <= 0x4020_0000);
        // Bad arguments.
        assert_eq!(allocator.alloc_contiguous(0, 2 * MIB), None);
        assert_eq!(allocator.alloc_contiguous(1, 3 * FRAME_BYTES), None);
        assert_eq!(allocator.alloc_contiguous(1, 1024), None);
    }

    #[test]
    fn contiguous_free_is_all_or_nothing() {
        let mut bits = storage(4 * MIB);
        let mut allocator = FrameAllocator::new(0, 4 * MIB, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(0, 4 * MIB));
        let run = allocator.alloc_contiguous(10, FRAME_BYTES).unwrap();
        assert_eq!(run, 0);
        let free_before = allocator.free_frames();
        // One frame too many: the eleventh is free, so nothing is freed.
        assert_eq!(allocator.free_contiguous(run, 11), Err(FrameError::NotAllocated));
        assert_eq!(allocator.free_frames(), free_before);
        // Past the end of the span.
        assert_eq!(allocator.free_contiguous(4 * MIB - FRAME_BYTES, 2), Err(FrameError::OutOfRange));
        assert_eq!(allocator.free_contiguous(run, 10), Ok(()));
        assert_eq!(allocator.free_frames(), 1024);
        assert_eq!(allocator.free_contiguous(run, 10), Err(FrameError::NotAllocated));
    }

    #[test]
    fn contiguous_exhaustion_and_reuse() {
        let mut bits = storage(4 * MIB);
        let mut allocator = FrameAllocator::new(0, 4 * MIB, &mut bits).unwrap();
        allocator.add_free(PhysRange::new(0, 4 * MIB));
        let first = allocator.alloc_contiguous(512, 2 * MIB).unwrap();
        let second = allocator.alloc_contiguous(512, 2 * MIB).unwrap();
        assert_eq!((first, second), (0, 2 * MIB));
        assert_eq!(allocator.alloc_contiguous(1, FRAME_BYTES), None);
        assert_eq!(allocator.alloc(), None);
        allocator.free_contiguous(first, 512).unwrap();
        assert_eq!(allocator.alloc_contiguous(512, 2 * MIB), Some(0));
        assert_eq!(allocator.alloc_contiguous(2048, FRAME_BYTES), None);
    }
}
