//! The `copy` scenario: the kernel's copy routine (`copy.s`, the code the
//! fast paths run inline and `Machine::copy`, `read` and `write` call),
//! checked where it runs, on the kernel's target.
//!
//! Every length from 0 to 300 and a few large ones ([`LARGE`]), at every
//! misalignment of the source and of the destination (0 to 15 bytes from
//! a 16-byte boundary): the destination must hold the source's bytes, the
//! [`GUARD`] bytes on each side of it must be unchanged, and so must the
//! source. Each case has its own byte pattern, and the destination is
//! filled beforehand with bytes that differ from the expected ones
//! everywhere, so a byte left unwritten shows.
//!
//! A read outside the source leaves no trace in memory, so the source sits
//! against a guard page: in a spare kernel stack, which has an unmapped
//! page below it and, unless it is the last of its chunk, above it
//! (checked). Each case is run twice, once with the source ending within
//! 15 bytes of the stack's top and once starting within 15 bytes of its
//! bottom — for each length and destination, one source misalignment puts
//! it right against the guard — so a read past either end is a kernel
//! fault, and the scenario fails. Lengths above what fits are copied from
//! the heap (guard bytes only).
//!
//! Then [`move_bytes`], the overlapping form `Machine::copy` uses, against
//! `copy_within` for a spread of lengths and distances either way.

use crate::Verdict;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use tern_aarch64::copy::{copy_bytes, move_bytes};
use tern_aarch64::kprintln;
use tern_aarch64::state;
use tern_core::frame::PhysRange;
use tern_core::machine::Machine;

/// Lengths checked besides 0 to 300: around the loop's 128 bytes, pages,
/// the largest message (32 KiB) and a little more.
const LARGE: [usize; 8] = [383, 1024, 1039, 4093, 4096, 8197, 32 * 1024, 32 * 1024 + 31];
/// Bytes checked unchanged on each side of the destination.
const GUARD: usize = 48;
/// Misalignments tried at each end.
const ALIGNMENTS: usize = 16;

/// The byte at `index` of case `seed`'s source.
fn pattern(seed: usize, index: usize) -> u8 {
    (index.wrapping_mul(167) ^ seed.wrapping_mul(0x9e37)) as u8 ^ (index >> 8) as u8
}

/// A 16-byte-aligned scratch area of `bytes` (plus room to align).
struct Area {
    bytes: Vec<u8>,
    start: usize,
}

impl Area {
    fn new(bytes: usize) -> Area {
        let bytes = vec![0u8; bytes + 16];
        let start = bytes.as_ptr().addr().next_multiple_of(16) - bytes.as_ptr().addr();
        Area { bytes, start }
    }

    fn slice(&mut self, from: usize, length: usize) -> &mut [u8] {
        &mut self.bytes[self.start + from..self.start + from + length]
    }
}

/// Where sources are put for one case.
#[derive(Clone, Copy)]
enum Edge {
    /// Against the guard page above the stack.
    Top,
    /// Against the guard page below it.
    Bottom,
    /// In the heap (too long for the stack).
    Heap,
}

/// One case: copy `length` bytes from a source `source_offset` bytes past
/// a 16-byte boundary to a destination `destination_offset` past one.
fn case(
    length: usize,
    source_offset: usize,
    destination_offset: usize,
    edge: Edge,
    stack: PhysRange,
    heap_source: &mut Area,
    destination: &mut Area,
) -> Verdict {
    let seed = length * 1021 + source_offset * 31 + destination_offset;
    // The source: its address, as a mutable slice of scratch memory.
    let source: &mut [u8] = match edge {
        Edge::Top => {
            // End within 15 bytes of the top, at the misalignment wanted.
            let latest = stack.end as usize - length;
            let start = latest - (latest.wrapping_sub(source_offset) % ALIGNMENTS);
            // SAFETY: [start, start + length) lies in the spare kernel stack
            // this scenario took from the machine (no thread uses it until
            // it is given back), mapped read-write for EL1; nothing else
            // refers to it.
            unsafe { core::slice::from_raw_parts_mut(start as *mut u8, length) }
        }
        Edge::Bottom => {
            let start = stack.start as usize + source_offset;
            // SAFETY: as above, at the bottom of the same stack.
            unsafe { core::slice::from_raw_parts_mut(start as *mut u8, length) }
        }
        Edge::Heap => heap_source.slice(source_offset, length),
    };
    for (index, byte) in source.iter_mut().enumerate() {
        *byte = pattern(seed, index);
    }
    // The destination with its guards, every byte unlike what the copy
    // should leave there.
    let window = destination.slice(destination_offset, GUARD + length + GUARD);
    for (index, byte) in window.iter_mut().enumerate() {
        let expected = if (GUARD..GUARD + length).contains(&index) { pattern(seed, index - GUARD) } else { 0 };
        *byte = expected ^ 0xa5;
    }
    let target = window[GUARD..].as_mut_ptr();
    // SAFETY: both ranges are this scenario's own scratch memory (the
    // spare stack or the heap, Normal memory mapped for EL1), apart from
    // each other; the slices are not used across the call.
    unsafe { copy_bytes(target, source.as_ptr(), length) };
    let window = destination.slice(destination_offset, GUARD + length + GUARD);
    let wrong = window.iter().enumerate().find(|&(index, &byte)| {
        let inside = (GUARD..GUARD + length).contains(&index);
        byte != if inside { pattern(seed, index - GUARD) } else { 0xa5 }
    });
    if let Some((index, byte)) = wrong {
        let (place, at) = if index < GUARD {
            ("guard before", index as isize - GUARD as isize)
        } else if index < GUARD + length {
            ("byte", (index - GUARD) as isize)
        } else {
            ("guard after", (index - GUARD) as isize)
        };
        return Err(format!("{place} {at} is {byte:#04x}"));
    }
    if let Some(index) = (0..length).find(|&index| source[index] != pattern(seed, index)) {
        return Err(format!("source byte {index} changed"));
    }
    Ok(())
}

/// The `copy` scenario.
pub fn copy() -> Verdict {
    // A spare kernel stack with unmapped guard pages on both sides.
    let mut taken = Vec::new();
    let stack = loop {
        let Some(stack) = state::with(|kernel| kernel.machine.take_stack()) else {
            break None;
        };
        taken.push(stack);
        let guarded = state::with(|kernel| {
            let view = kernel.machine.kernel_view();
            kernel.machine.access_in_view(view, stack.start - 1).is_none()
                && kernel.machine.access_in_view(view, stack.end).is_none()
                && kernel.machine.access_in_view(view, stack.start).is_some()
        });
        if guarded {
            break Some(stack);
        }
        if taken.len() == 3 {
            break None;
        }
    };
    let verdict = match stack {
        Some(stack) => run(stack),
        None => Err("no spare kernel stack between two guard pages".into()),
    };
    state::with(|kernel| taken.into_iter().for_each(|stack| kernel.machine.return_stack(stack)));
    verdict
}

fn run(stack: PhysRange) -> Verdict {
    let on_stack_max = stack.len() as usize - 2 * ALIGNMENTS;
    let longest = LARGE.into_iter().max().unwrap_or(0);
    let mut heap_source = Area::new(longest + ALIGNMENTS);
    let mut destination = Area::new(GUARD + longest + ALIGNMENTS + GUARD);
    let mut copies = 0usize;
    for length in (0..=300).chain(LARGE) {
        let edges: &[Edge] = if length <= on_stack_max { &[Edge::Top, Edge::Bottom] } else { &[Edge::Heap] };
        for &edge in edges {
            for source_offset in 0..ALIGNMENTS {
                for destination_offset in 0..ALIGNMENTS {
                    case(length, source_offset, destination_offset, edge, stack, &mut heap_source, &mut destination)
                        .map_err(|why| {
                            format!("{length} bytes, source +{source_offset}, destination +{destination_offset}: {why}")
                        })?;
                    copies += 1;
                }
            }
        }
    }
    kprintln!(
        "copy: {copies} copies right (lengths 0-300 and {LARGE:?}, every misalignment of both ends, sources against \
         guard pages up to {on_stack_max} bytes), guards untouched"
    );
    overlapping()?;
    kprintln!("copy: overlapping moves match copy_within");
    Ok(())
}

/// `move_bytes` (what `Machine::copy` does) against `copy_within`.
fn overlapping() -> Verdict {
    const SPAN: usize = 1200;
    for length in [1usize, 15, 16, 17, 128, 129, 300, 1000] {
        for distance in [1usize, 2, 7, 15, 16, 17, 100, 128, 129, 999] {
            for upward in [false, true] {
                let mut area = Area::new(SPAN + 2 * ALIGNMENTS);
                let base = 3;
                let (from, to) = if upward { (base, base + distance) } else { (base + distance, base) };
                if from.max(to) + length > SPAN {
                    continue;
                }
                let memory = area.slice(0, SPAN);
                for (index, byte) in memory.iter_mut().enumerate() {
                    *byte = pattern(length + distance, index);
                }
                let mut expected = memory.to_vec();
                expected.copy_within(from..from + length, to);
                let pointer = memory.as_mut_ptr();
                // SAFETY: both ranges lie inside `memory`, the scenario's
                // own heap bytes (Normal memory), not otherwise used
                // across the call; `move_bytes` allows overlap.
                unsafe { move_bytes(pointer.wrapping_add(to), pointer.wrapping_add(from), length) };
                if area.slice(0, SPAN) != expected.as_slice() {
                    return Err(format!("moving {length} bytes from {from} to {to} went wrong"));
                }
            }
        }
    }
    Ok(())
}
