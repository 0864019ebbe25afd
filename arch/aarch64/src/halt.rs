//! Stopping: a kernel fault or bug reported on the console, and the end of
//! a run — under the test harness QEMU exits with the status, otherwise
//! the core parks for good.

use crate::console::CONSOLE;
use crate::esr::Syndrome;
use crate::frame::TrapFrame;
use crate::semihosting::{self, ExitStatus};
use core::fmt::Write;

/// Write a frame's exception registers.
pub fn write_registers(out: &mut impl Write, frame: &TrapFrame) {
    let _ = writeln!(
        out,
        "  ESR 0x{:016x}  FAR 0x{:016x}  ELR 0x{:016x}  SPSR 0x{:08x}",
        frame.esr, frame.far, frame.elr, frame.spsr
    );
}

/// A kernel invariant does not hold: say so and stop, as for a fault at
/// EL1.
pub fn report_kernel_bug(what: &str) -> ! {
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(console, "kernel bug: {}", what);
        let _ = writeln!(console, "kernel stopped");
    }
    stop(ExitStatus::KernelFault)
}

/// A fault at EL1 (or an exception Tern never expects): say what, with
/// the frame's registers, and stop.
pub fn report_kernel_fault(what: &str, frame: &TrapFrame) -> ! {
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(console, "kernel fault: {}: {}", what, Syndrome(frame.esr));
        write_registers(&mut console, frame);
        let _ = writeln!(console, "  x0 0x{:x}  x1 0x{:x}  x30 0x{:x}", frame.x[0], frame.x[1], frame.x[30]);
        let _ = writeln!(console, "kernel stopped");
    }
    stop(ExitStatus::KernelFault)
}

/// End the run (under the harness) or park this core for good.
pub fn stop(status: ExitStatus) -> ! {
    semihosting::exit_if_harness(status);
    crate::cpu::mask_interrupts();
    loop {
        crate::cpu::wait_for_interrupt();
    }
}
