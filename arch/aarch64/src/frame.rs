//! The trap frame: the registers the vectors save (`vectors.s`), in the
//! order they save them, and the answer the trap handler gives the
//! assembly. The layout is the assembly's; its size is asserted here and
//! passed to it.

/// The registers the vectors save, in the order they save them, at the
/// (16-byte aligned) kernel stack pointer. Aligned to 16 in its type too,
/// so that the compiler copies its registers to and from a
/// [`UserContext`](tern_core::thread::UserContext) with SIMD pairs (the
/// target keeps strict alignment: see `docs/design.md`).
#[repr(C, align(16))]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0 to x30.
    pub x: [u64; 31],
    /// The interrupted EL0 stack pointer.
    pub sp_el0: u64,
    /// Where the exception was taken (or, for `svc`, the next instruction).
    pub elr: u64,
    /// The interrupted PSTATE.
    pub spsr: u64,
    /// The syndrome.
    pub esr: u64,
    /// The faulting address (meaningful for aborts).
    pub far: u64,
}

/// Bytes of a trap frame (`FRAME_SIZE` in `vectors.s`).
pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
/// Bytes of an interrupt frame: the trap frame, 32 SIMD registers, FPCR,
/// FPSR, CPACR_EL1 and padding.
pub const INTERRUPT_FRAME_SIZE: usize = FRAME_SIZE + 32 * 16 + 32;
const _: () = assert!(FRAME_SIZE == 288 && FRAME_SIZE.is_multiple_of(16) && INTERRUPT_FRAME_SIZE.is_multiple_of(16));

/// The answer to `domain_trap` in `vectors.s` (returned in x0/x1).
#[repr(C)]
pub struct TrapAction {
    /// Non-zero: end the current upcall instead of resuming the domain.
    pub end_upcall: u64,
    /// The upcall's result when it ends.
    pub value: u64,
}

impl TrapAction {
    /// Go back to the domain.
    pub const RESUME: TrapAction = TrapAction { end_upcall: 0, value: 0 };
    /// End the upcall with `value`.
    pub const fn end(value: u64) -> TrapAction {
        TrapAction { end_upcall: 1, value }
    }
}
