//! Stopping: a kernel fault or bug reported on the console, and the end of
//! a run — under the test harness QEMU exits with the status, otherwise
//! the core parks for good.

use crate::console::CONSOLE;
use crate::esr::Syndrome;
use crate::frame::TrapFrame;
use crate::semihosting::{self, ExitStatus};
use crate::stacks::Overflow;
use core::fmt::{self, Write};
use tern_core::frame::PhysRange;
use tern_core::thread::ThreadId;

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
    report(format_args!("{what}"), frame, None, None)
}

/// An exception at EL1 (or one Tern never expects) taken with the kernel
/// stack pointer at `stack_pointer`: as [`report_kernel_fault`], with the
/// stack pointer.
pub fn report_kernel_trap(what: &str, frame: &TrapFrame, stack_pointer: u64) -> ! {
    report(format_args!("{what}"), frame, Some(stack_pointer), None)
}

/// A kernel stack ran out (`vectors.s` took the fault on the exception
/// stack): say whose, which stack, and the registers, and stop.
pub fn report_stack_overflow(overflow: &Overflow, frame: &TrapFrame, stack_pointer: u64) -> ! {
    let (stack, at) = (Some(overflow.stack), Some(stack_pointer));
    let Some(thread) = overflow.thread.map(ThreadId::get) else {
        let what = "kernel stack overflow in a thread not told (the kernel state is held)";
        report(format_args!("{what}"), frame, at, stack)
    };
    match overflow.domain {
        None => report(format_args!("kernel stack overflow in thread {thread} (the kernel)"), frame, at, stack),
        Some((domain, "")) => {
            report(format_args!("kernel stack overflow in thread {thread} (domain {})", domain.0), frame, at, stack)
        }
        Some((_, name)) => {
            report(format_args!("kernel stack overflow in thread {thread} (domain '{name}')"), frame, at, stack)
        }
    }
}

/// A fault while reporting a kernel fault (on the exception stack, taken
/// afresh): say so in as few words as will do, and stop.
pub fn report_nested_fault(frame: &TrapFrame, stack_pointer: u64) -> ! {
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(
            console,
            "kernel fault while reporting a kernel fault: ESR 0x{:x} FAR 0x{:x} ELR 0x{:x} SP 0x{:x}",
            frame.esr, frame.far, frame.elr, stack_pointer
        );
        let _ = writeln!(console, "kernel stopped");
    }
    stop(ExitStatus::KernelFault)
}

fn report(what: fmt::Arguments<'_>, frame: &TrapFrame, stack_pointer: Option<u64>, stack: Option<PhysRange>) -> ! {
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(console, "kernel fault: {}: {}", what, Syndrome(frame.esr));
        if let Some(stack) = stack {
            let _ = writeln!(
                console,
                "  kernel stack 0x{:x}..0x{:x}, its guard page 0x{:x}..0x{:x}",
                stack.start,
                stack.end,
                stack.start.saturating_sub(crate::paging::PAGE),
                stack.start
            );
        }
        write_registers(&mut console, frame);
        let _ = write!(console, "  x0 0x{:x}  x1 0x{:x}  x30 0x{:x}", frame.x[0], frame.x[1], frame.x[30]);
        if let Some(stack_pointer) = stack_pointer {
            let _ = write!(console, "  SP 0x{stack_pointer:x}");
        }
        let _ = writeln!(console);
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
