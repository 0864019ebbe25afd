//! The kernel's bulk copy, for Rust: [`copy_bytes`] is `copy.s`'s
//! `tern_copy_bytes` (the routine the fast paths run inline, as
//! `COPY_BYTES`), and [`move_bytes`] the same for ranges that may overlap.
//! `Machine::copy`, `read` and `write` ([`crate::machine`]) use them; so
//! does the harness's `copy` scenario, which checks the routine at every
//! length up to 300 and a few large ones, at every alignment of both ends.
//!
//! Why not `core::ptr::copy`: under the target's strict alignment it is
//! the compiler's `memmove`, 4 instructions for each 8 bytes when both
//! ends are aligned alike and 22 when they are not; the routine takes 2
//! for each 16 at any alignment (see `copy.s`).
//!
//! Overlap. The routine copies forward, which is right unless the
//! destination starts inside the source. The only copy that can overlap is
//! a message a domain sends to itself (a server calling its own port) with
//! buffers it made overlap; `Machine::copy` keeps `memmove`'s promise — the
//! destination receives the source as it was — by [`pieces`]: copied from
//! the end, in pieces no longer than the distance between the two ranges,
//! so that no piece overlaps itself and none overwrites source bytes not
//! yet copied. Slow for a short distance, and only a domain's own
//! overlapping buffers pay it. The pieces are plain arithmetic, tested on
//! the host; the rest exists only for the kernel's target.

/// How to copy `length` bytes from `source` to `destination` with a copy
/// that moves forward and is right only when the destination does not
/// start inside the source: `(destination, source, length)` pieces, in
/// order. One piece when it does not; otherwise pieces of at most the
/// distance between the two, from the end back, each of which the forward
/// copy gets right and none of which overwrites source bytes a later piece
/// reads. Empty for no bytes, or when the two are the same.
pub fn pieces(destination: usize, source: usize, length: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    let distance = destination.wrapping_sub(source);
    let (step, count) = if length == 0 || distance == 0 {
        (0, 0)
    } else if distance >= length {
        (length, 1) // no overlap, or the destination below the source
    } else {
        (distance, length.div_ceil(distance))
    };
    (0..count).map(move |index| {
        let end = length - index * step;
        let piece = end.min(step);
        let start = end - piece;
        (destination + start, source + start, piece)
    })
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    /// `copy.s`: copy `length` bytes from `source` to `destination`,
    /// forward, general registers only, any alignment.
    fn tern_copy_bytes(destination: *mut u8, source: *const u8, length: usize);
}

/// Copy `length` bytes from `source` to `destination` with the kernel's
/// copy routine: each byte of both ranges touched once, nothing outside
/// them, any alignment.
///
/// # Safety
///
/// Both ranges must be mapped for EL1 as Normal memory in the current view
/// (readable and writable respectively) and must not fault; the
/// destination must not start inside the source (a destination at or
/// below the source may overlap it); nothing may hold a reference to the
/// destination bytes.
#[cfg(target_os = "none")]
#[inline]
pub unsafe fn copy_bytes(destination: *mut u8, source: *const u8, length: usize) {
    // SAFETY: the caller's promise; the routine reads and writes exactly
    // these ranges and clobbers only caller-saved registers (AAPCS64).
    unsafe { tern_copy_bytes(destination, source, length) }
}

/// [`copy_bytes`] for ranges that may overlap anyhow: the destination
/// receives the source as it was before the copy ([`pieces`]).
///
/// # Safety
///
/// As [`copy_bytes`], without the condition on overlap.
#[cfg(target_os = "none")]
pub unsafe fn move_bytes(destination: *mut u8, source: *const u8, length: usize) {
    if destination.addr().wrapping_sub(source.addr()) >= length {
        // Apart, or the destination below the source: one forward copy
        // (what `pieces` would say, without its arithmetic).
        // SAFETY: the caller's promise, and the destination does not start
        // inside the source.
        unsafe { copy_bytes(destination, source, length) };
        return;
    }
    for (to, from, piece) in pieces(destination.addr(), source.addr(), length) {
        // SAFETY: each piece lies inside the caller's ranges and does not
        // start inside its own source (`pieces`).
        unsafe { copy_bytes(destination.with_addr(to), source.with_addr(from), piece) };
    }
}

#[cfg(test)]
mod tests {
    use super::pieces;

    /// A forward copy like the routine's: ascending, each 16 bytes loaded
    /// before they are stored.
    fn forward(memory: &mut [u8], destination: usize, source: usize, length: usize) {
        let mut done = 0;
        while done < length {
            let chunk = (length - done).min(16);
            let loaded: Vec<u8> = memory[source + done..source + done + chunk].to_vec();
            memory[destination + done..destination + done + chunk].copy_from_slice(&loaded);
            done += chunk;
        }
    }

    #[test]
    fn pieces_move_like_memmove_whatever_the_overlap() {
        for length in [0usize, 1, 2, 15, 16, 17, 33, 100, 128, 300] {
            for source in [0usize, 1, 50, 128, 200] {
                for destination in 0..=400usize {
                    let mut memory: Vec<u8> = (0..800u32).map(|byte| (byte * 7 + 3) as u8).collect();
                    let mut expected = memory.clone();
                    expected.copy_within(source..source + length, destination);
                    let mut covered = 0;
                    for (to, from, piece) in pieces(destination, source, length) {
                        assert!(to >= destination && to + piece <= destination + length);
                        assert!(from >= source && from + piece <= source + length);
                        assert!(to.wrapping_sub(from) >= piece || to == from, "a piece starts inside its source");
                        forward(&mut memory, to, from, piece);
                        covered += piece;
                    }
                    if destination != source {
                        assert_eq!(covered, length);
                    }
                    assert_eq!(memory, expected, "length {length}, from {source} to {destination}");
                }
            }
        }
    }

    #[test]
    fn disjoint_ranges_are_one_piece() {
        assert_eq!(pieces(1000, 0, 1000).collect::<Vec<_>>(), [(1000, 0, 1000)]);
        assert_eq!(pieces(0, 1000, 1000).collect::<Vec<_>>(), [(0, 1000, 1000)]);
        assert_eq!(pieces(0, 10, 1000).collect::<Vec<_>>(), [(0, 10, 1000)]);
        assert_eq!(pieces(5, 5, 10).count(), 0);
        assert_eq!(pieces(5, 0, 0).count(), 0);
        assert_eq!(pieces(4, 0, 10).collect::<Vec<_>>(), [(10, 6, 4), (6, 2, 4), (4, 0, 2)]);
    }
}
