//! Small CPU operations: interrupt masking, barriers, translation-table
//! switches. Each is a line or two of assembly with a name that says what
//! it is for.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{DAIF, TTBR0_EL1};
use tock_registers::interfaces::{Readable, Writeable};

/// Run `body` with IRQs masked, restoring the previous mask afterwards.
pub fn without_interrupts<R>(body: impl FnOnce() -> R) -> R {
    let saved = mask_interrupts();
    let result = body();
    restore_interrupts(saved);
    result
}

/// Mask IRQs; returns the previous DAIF value for [`restore_interrupts`].
pub fn mask_interrupts() -> u64 {
    let saved = DAIF.get();
    // SAFETY: setting the I bit only masks IRQs; no memory is touched.
    unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack, preserves_flags)) };
    saved
}

/// Put back a DAIF value saved by [`mask_interrupts`].
pub fn restore_interrupts(saved: u64) {
    DAIF.set(saved);
}

/// Unmask IRQs.
pub fn enable_interrupts() {
    // SAFETY: clearing the I bit lets IRQs in; the vectors are installed
    // before this is first called.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack, preserves_flags)) };
}

/// Sleep until an interrupt (or event) arrives.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Install the kernel's final translation table (ASID 0) in place of the
/// boot table, and drop every TLB entry the boot table left behind.
pub fn install_kernel_table(root: u64) {
    barrier::dsb(barrier::ISHST);
    TTBR0_EL1.set(root);
    barrier::isb(barrier::SY);
    // SAFETY: TLB invalidation has no effect on memory contents; it only
    // forces later walks to read the new tables.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// After translation tables changed: make the writes visible to the table
/// walker, then drop every TLB entry of every ASID (a mode change is rare;
/// one full invalidation is simpler than a walk by address and ASID).
pub fn flush_translations() {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLB invalidation has no effect on memory contents; it only
    // forces later walks to read the current tables.
    unsafe { core::arch::asm!("tlbi vmalle1", options(nostack, preserves_flags)) };
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// Switch TTBR0 to another view (table + ASID in the top bits). No TLB
/// maintenance: views are tagged by ASID and share only global entries.
/// After entries tagged with `asid` were removed from its tables: make the
/// writes visible, then drop that ASID's TLB entries (global ones stay).
pub fn flush_asid(asid: u16) {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLB invalidation has no effect on memory contents; it only
    // forces later walks (for that ASID) to read the current tables.
    unsafe {
        core::arch::asm!("tlbi aside1, {}", in(reg) u64::from(asid) << 48, options(nostack, preserves_flags));
    }
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// After a global (kernel) mapping of `address` was removed from the
/// tables: make the writes visible, then drop every TLB entry that
/// translates it, whatever its ASID (a block entry covering it included,
/// and the walk entries above it).
pub fn flush_global_address(address: u64) {
    barrier::dsb(barrier::ISHST);
    // SAFETY: TLB invalidation has no effect on memory contents; it only
    // forces later walks for that address to read the current tables.
    unsafe {
        core::arch::asm!("tlbi vaae1, {}", in(reg) address >> 12, options(nostack, preserves_flags));
    }
    barrier::dsb(barrier::ISH);
    barrier::isb(barrier::SY);
}

/// The view (TTBR0_EL1: table and ASID) the CPU is in now.
pub fn translation() -> u64 {
    TTBR0_EL1.get()
}

/// Install a view (table and ASID) in TTBR0_EL1.
pub fn switch_view(translation_base: u64) {
    TTBR0_EL1.set(translation_base);
    barrier::isb(barrier::SY);
}

/// Make freshly written translation tables visible to the table walker.
pub fn publish_tables() {
    barrier::dsb(barrier::ISHST);
}

/// The exception level the CPU runs at now.
pub fn current_exception_level() -> u64 {
    aarch64_cpu::registers::CurrentEL.get() >> 2
}
