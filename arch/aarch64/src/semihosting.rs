//! Ending a QEMU run with a status, through Arm semihosting.
//!
//! `hlt #0xf000` asks the debugger (here QEMU with `-semihosting`) to do
//! something; `SYS_EXIT` with `ADP_Stopped_ApplicationExit` ends QEMU with
//! the given status. On a real Pi, or under QEMU without `-semihosting`,
//! the same instruction traps as undefined — so the kernel calls [`exit`]
//! only when the command line said `tern.harness=1`, and the check lives
//! here, in one place.

use core::sync::atomic::{AtomicBool, Ordering};

static HARNESS: AtomicBool = AtomicBool::new(false);

/// Exit statuses the test harness reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitStatus {
    /// The scenario passed.
    Pass = 0,
    /// The scenario failed.
    Fail = 1,
    /// The kernel panicked.
    Panic = 2,
    /// The kernel took a fault at EL1.
    KernelFault = 3,
}

/// Record that a harness runs us (from `tern.harness=1`).
pub fn set_harness(present: bool) {
    HARNESS.store(present, Ordering::Relaxed);
}

/// Whether a harness runs us.
pub fn harness() -> bool {
    HARNESS.load(Ordering::Relaxed)
}

/// End the run with `status` if a harness runs us; otherwise return and let
/// the caller park the CPU.
pub fn exit_if_harness(status: ExitStatus) {
    if !harness() {
        return;
    }
    const SYS_EXIT: u64 = 0x18;
    const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;
    let block = [ADP_STOPPED_APPLICATION_EXIT, status as u64];
    // SAFETY: only reached under the harness, where QEMU runs with
    // semihosting enabled and `hlt #0xf000` is its call instruction; the
    // parameter block is a live local array it only reads.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            in("x0") SYS_EXIT,
            in("x1") block.as_ptr(),
            options(nostack),
        );
    }
}
