// The kernel's one bulk copy: every byte a kernel copies between or into
// domains' memory goes through COPY_BYTES — inline in the RPC fast paths
// and the merged call path (fastpath.s, through COPY_PAYLOAD), and as the
// function tern_copy_bytes behind Machine::copy, read and write (copy.rs).
//
// Assembly because the compiler, which keeps the target's strict alignment
// (docs/design.md, "Strict alignment stays on"), cannot be told that these
// accesses may be unaligned: for a copy it calls memmove, which moves 8
// bytes a step when both ends are aligned alike and one byte at a time
// (22 instructions for 8 bytes) when they are not.
//
// What it may assume, and why each holds:
//
// - Unaligned accesses are allowed. SCTLR_EL1.A is clear (glue.rs,
//   SCTLR_EL1_KERNEL) and every byte copied is Normal, cacheable memory:
//   domains' regions (through a domain's own view or the kernel's alias of
//   the arena), the shared image, and kernel stacks and heap (paging.rs:
//   the only Device mappings are the boards' peripherals, which no claim
//   can name — claims are checked against a domain's region or the image).
//   An unaligned `ldp`/`stp` of general registers is then architecturally
//   fine (only exclusives and atomics must be aligned), page crossings
//   included. The destination is aligned to 16 before the main loop all
//   the same, because on a real core a store that crosses a cache line
//   costs more than one that does not.
// - No fault. The caller has checked both ranges (a claim against its
//   domain's record); every byte of them is mapped for EL1 in the view
//   that runs the copy, and nothing outside them is touched (below). So a
//   copy never stops half way: a bad claim is refused before any byte
//   moves, by the checks before the fast paths' point of no return or
//   the general path's checks.
// - Only general registers. The kernel may use FP/SIMD registers during a
//   kernel call (a call clobbers them: the gate says so) and interrupts
//   save them, so q registers would be allowed here and would halve the
//   loop's instructions; they are not used so that the copy keeps working
//   in any context — at boot, in a path that later keeps a thread's
//   FP/SIMD state live across kernel entries — without that argument
//   (docs/design.md, "One copy routine").
//
// Exactly the bytes claimed: each byte of [source, source + length) is
// read once and each byte of [destination, destination + length) written
// once, in ascending address order, 16 bytes (one `ldp`, one `stp`) at a
// time where it can; never a byte before or after either range, whatever
// their alignment — the tail is taken in 64-, 32-, 16-, 8-, 4-, 2- and
// 1-byte pieces chosen by the length's low bits, not by over-reading a
// whole block.
//
// Overlap: each 16 bytes are loaded before they are stored and the copy
// moves forward, so a destination at or below the source is fine even if
// the ranges overlap (each byte of the source is read before the
// destination's stores reach it). A destination inside (source, source +
// length) is not: Machine::copy (copy.rs) splits such a copy into pieces
// that do not overlap.

// COPY_BYTES source, destination, length, s1, s2
//
// Copy \length bytes from \source to \destination (registers; \length may
// be 0). Both pointers end past the bytes copied; \length is left
// meaningless. Uses registers number \s1 and \s2 (as x and w) and the
// flags, nothing else.
//
// Instructions for n bytes: 2 per 16 of them (an `ldp` and an `stp`), 2
// per whole 128 (the loop's count and branch), and 12 more (7 when n is
// below 128: no alignment, no loop); when n is not a multiple of 16, 4
// more and 2 per set bit of its low four; when n ≥ 128 and the
// destination is not aligned to 16, 3 per set bit of the destination's
// low four. 32 KiB, aligned: 4620.
.macro COPY_BYTES source, destination, length, s1, s2
    subs    \length, \length, #128
    b.lo    .Lcopy_tail_\@                   // fewer than 128: the tail alone
    // At least 128: align the destination to 16 first (at most 15 bytes,
    // in ascending pieces: each one doubles its alignment).
    tbz     \destination, #0, .Lcopy_align_2_\@
    ldrb    w\s1, [\source], #1
    strb    w\s1, [\destination], #1
    sub     \length, \length, #1
.Lcopy_align_2_\@:
    tbz     \destination, #1, .Lcopy_align_4_\@
    ldrh    w\s1, [\source], #2
    strh    w\s1, [\destination], #2
    sub     \length, \length, #2
.Lcopy_align_4_\@:
    tbz     \destination, #2, .Lcopy_align_8_\@
    ldr     w\s1, [\source], #4
    str     w\s1, [\destination], #4
    sub     \length, \length, #4
.Lcopy_align_8_\@:
    tbz     \destination, #3, .Lcopy_aligned_\@
    ldr     x\s1, [\source], #8
    str     x\s1, [\destination], #8
    sub     \length, \length, #8
.Lcopy_aligned_\@:
    tbnz    \length, #63, .Lcopy_tail_\@     // the alignment left fewer than 128
    // 128 bytes a step. From here on \length counts the bytes left minus
    // 128. The first pair moves both pointers on by 128; the other seven
    // are addressed back from there, so the step runs in ascending order
    // with one write-back per pointer.
.Lcopy_block_\@:
    ldp     x\s1, x\s2, [\source], #128
    stp     x\s1, x\s2, [\destination], #128
    ldp     x\s1, x\s2, [\source, #-112]
    stp     x\s1, x\s2, [\destination, #-112]
    ldp     x\s1, x\s2, [\source, #-96]
    stp     x\s1, x\s2, [\destination, #-96]
    ldp     x\s1, x\s2, [\source, #-80]
    stp     x\s1, x\s2, [\destination, #-80]
    ldp     x\s1, x\s2, [\source, #-64]
    stp     x\s1, x\s2, [\destination, #-64]
    ldp     x\s1, x\s2, [\source, #-48]
    stp     x\s1, x\s2, [\destination, #-48]
    ldp     x\s1, x\s2, [\source, #-32]
    stp     x\s1, x\s2, [\destination, #-32]
    ldp     x\s1, x\s2, [\source, #-16]
    stp     x\s1, x\s2, [\destination, #-16]
    subs    \length, \length, #128
    b.hs    .Lcopy_block_\@
    // The tail: \length is (bytes left) - 128 with 0 ≤ bytes left < 128,
    // so its low seven bits are the bytes left; each set bit is one piece.
.Lcopy_tail_\@:
    tbz     \length, #6, .Lcopy_tail_32_\@
    ldp     x\s1, x\s2, [\source], #64
    stp     x\s1, x\s2, [\destination], #64
    ldp     x\s1, x\s2, [\source, #-48]
    stp     x\s1, x\s2, [\destination, #-48]
    ldp     x\s1, x\s2, [\source, #-32]
    stp     x\s1, x\s2, [\destination, #-32]
    ldp     x\s1, x\s2, [\source, #-16]
    stp     x\s1, x\s2, [\destination, #-16]
.Lcopy_tail_32_\@:
    tbz     \length, #5, .Lcopy_tail_16_\@
    ldp     x\s1, x\s2, [\source], #32
    stp     x\s1, x\s2, [\destination], #32
    ldp     x\s1, x\s2, [\source, #-16]
    stp     x\s1, x\s2, [\destination, #-16]
.Lcopy_tail_16_\@:
    tbz     \length, #4, .Lcopy_tail_small_\@
    ldp     x\s1, x\s2, [\source], #16
    stp     x\s1, x\s2, [\destination], #16
.Lcopy_tail_small_\@:
    tst     \length, #15
    b.eq    .Lcopy_done_\@                   // (messages are often whole 16s)
    tbz     \length, #3, .Lcopy_tail_4_\@
    ldr     x\s1, [\source], #8
    str     x\s1, [\destination], #8
.Lcopy_tail_4_\@:
    tbz     \length, #2, .Lcopy_tail_2_\@
    ldr     w\s1, [\source], #4
    str     w\s1, [\destination], #4
.Lcopy_tail_2_\@:
    tbz     \length, #1, .Lcopy_tail_1_\@
    ldrh    w\s1, [\source], #2
    strh    w\s1, [\destination], #2
.Lcopy_tail_1_\@:
    tbz     \length, #0, .Lcopy_done_\@
    ldrb    w\s1, [\source], #1
    strb    w\s1, [\destination], #1
.Lcopy_done_\@:
.endm

// fn tern_copy_bytes(destination: x0, source: x1, length: x2)
//
// COPY_BYTES as an AAPCS64 function, for Rust (copy.rs): clobbers x0-x4
// and the flags, all caller-saved.
.section .text.tern_copy_bytes, "ax"
.global tern_copy_bytes
.balign 64
tern_copy_bytes:
    COPY_BYTES x1, x0, x2, 3, 4
    ret
