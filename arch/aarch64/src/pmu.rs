//! The performance monitors, set up for the benchmark.
//!
//! Event counter 0 counts INST_RETIRED (event 0x08) at EL0 and EL1 (the
//! whole call); event counter 1 the same event at EL1 only (the kernel's
//! share); the cycle counter counts at EL0 and EL1. EL0 may read them
//! (PMUSERENR_EL0.EN), so a client measures its own calls without a kernel
//! call in the way. Under QEMU, INST_RETIRED is exact only with
//! `-icount shift=0`; cycles are real only on hardware. aarch64-cpu has no
//! PMU registers, hence the assembly.

const INST_RETIRED: u64 = 0x08;
/// PMEVTYPER.U: do not count at EL0.
const EXCLUDE_EL0: u64 = 1 << 30;

/// Enable the counters for EL0 reading.
pub fn enable() {
    // SAFETY: writes only PMU control registers (no memory); EL1 owns them
    // (MDCR_EL2 was set at boot to give EL1 every counter).
    unsafe {
        core::arch::asm!(
            "msr pmevtyper0_el0, {whole}",
            "msr pmevtyper1_el0, {kernel}",
            "msr pmccfiltr_el0, xzr",
            "msr pmcntenset_el0, {enable}",
            "msr pmuserenr_el0, {user}",
            "msr pmcr_el0, {control}",
            "isb",
            whole = in(reg) INST_RETIRED,
            kernel = in(reg) INST_RETIRED | EXCLUDE_EL0,
            enable = in(reg) (1u64 << 31) | 0b11,
            user = in(reg) 1u64,
            control = in(reg) 0b111u64, // E: enable; P, C: reset event and cycle counters
            options(nostack),
        );
    }
}

/// Clear event counter 0's overflow flag (PMOVSCLR_EL0 bit 0), so that
/// [`instructions_overflowed`] says whether the counter wrapped since.
pub fn clear_overflow() {
    // SAFETY: writes a PMU control register (EL1 owns the PMU); no memory.
    unsafe { core::arch::asm!("msr pmovsclr_el0, {bit}", "isb", bit = in(reg) 1u64, options(nostack)) }
}

/// Whether event counter 0 (INST_RETIRED at EL0 and EL1) has wrapped past
/// 2^32 since [`clear_overflow`] (PMOVSSET_EL0 bit 0).
pub fn instructions_overflowed() -> bool {
    let flags: u64;
    // SAFETY: reads a PMU status register (EL1 may); no memory, no effects.
    unsafe {
        core::arch::asm!("mrs {flags}, pmovsset_el0", flags = out(reg) flags, options(nomem, nostack, preserves_flags))
    }
    flags & 1 != 0
}
