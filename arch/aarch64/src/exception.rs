//! What happens after the vectors (`vectors.s`) have saved a trap frame.
//!
//! The assembly only captures state; these functions decide:
//! - [`tern_domain_trap`]: a kernel call (`svc`) is handed to
//!   [`crate::syscall`]; any other synchronous exception from EL0 is a
//!   fault: it is reported with its decoded syndrome, the domain is
//!   terminated, and the upcall that entered it ends. The kernel and every
//!   other domain carry on.
//! - [`tern_kernel_trap`]: a synchronous exception at EL1 (a kernel bug) or
//!   an exception Tern never expects. Reported the same way; then the
//!   kernel stops — with exit status 3 under the test harness, parked
//!   otherwise.
//! - [`tern_interrupt`]: IRQs from either level.

use crate::console::CONSOLE;
use crate::semihosting::{self, ExitStatus};
use crate::{domains, gic, timer, upcall};
use core::fmt::Write;
use tern_core::esr::Syndrome;

/// The registers the vectors save, in the order they save them.
#[repr(C)]
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

const CLASS_SVC_FROM_AARCH64: u8 = 0x15;

fn write_registers(out: &mut impl Write, frame: &TrapFrame) {
    let _ = writeln!(
        out,
        "  ESR 0x{:016x}  FAR 0x{:016x}  ELR 0x{:016x}  SPSR 0x{:08x}",
        frame.esr, frame.far, frame.elr, frame.spsr
    );
}

/// A synchronous exception from a domain's code (EL0, or EL1t when merged).
#[unsafe(no_mangle)]
extern "C" fn tern_domain_trap(frame: &mut TrapFrame) -> TrapAction {
    let syndrome = Syndrome(frame.esr);
    if syndrome.exception_class() == CLASS_SVC_FROM_AARCH64 {
        let action = crate::syscall::dispatch(frame);
        if action.end_upcall == 0 {
            crate::control::before_user(frame, true);
        }
        return action;
    }
    let (domain, name) = crate::state::with(|kernel| {
        let domain = kernel.current_domain();
        let name = domain.and_then(|domain| kernel.domain(domain)).map_or("?", |record| record.domain.name);
        (domain, name)
    });
    let Some(domain) = domain else {
        // EL0 code running outside any activation cannot happen; treat it
        // as the kernel bug it would be.
        report_kernel_fault("exception from EL0 outside an activation", frame);
    };
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(console, "fault in domain '{}' (domain {}): {}", name, domain.0, syndrome);
        write_registers(&mut console, frame);
        let _ = writeln!(console, "domain '{}' terminated; the kernel carries on", name);
    }
    defmt::warn!("domain {=u16} terminated after a fault (ESR {=u64:#x})", domain.0, frame.esr);
    // A server activation faulted: unwind to its caller, which gets
    // CallAborted. A thread's own activation faulted: end its upcall.
    let aborted = crate::state::with(|kernel| {
        domains::terminate(kernel, domain);
        let aborted = crate::rpc::abort_call(kernel, frame);
        aborted.then(|| kernel.current_view())
    });
    if let Some(view) = aborted {
        crate::cpu::switch_view(view);
        crate::control::before_user(frame, false);
        return TrapAction::RESUME;
    }
    // SAFETY: we are the trap handler of the innermost upcall, with
    // interrupts masked; nothing else holds the record.
    if let Some(record) = unsafe { upcall::current() } {
        record.outcome = upcall::Outcome::Faulted;
    }
    TrapAction::end(0)
}

/// A synchronous exception at EL1, or any exception Tern does not expect.
#[unsafe(no_mangle)]
extern "C" fn tern_kernel_trap(frame: &TrapFrame, kind: u64) -> ! {
    let what = match kind {
        2 | 3 => "FIQ or SError from a merged domain",
        4 => "synchronous exception at EL1",
        6 | 10 => "FIQ",
        7 | 11 => "SError",
        12..=15 => "exception from AArch32",
        _ => "unexpected exception",
    };
    report_kernel_fault(what, frame)
}

fn report_kernel_fault(what: &str, frame: &TrapFrame) -> ! {
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

/// An IRQ, from a domain or the kernel. A timer tick that interrupted a
/// domain's code lets an equal or more urgent ready thread run (round
/// robin).
#[unsafe(no_mangle)]
extern "C" fn tern_interrupt(frame: &mut TrapFrame) {
    let mut ticked = false;
    while let Some(raw) = gic::acknowledge() {
        if gic::interrupt_number(raw) == crate::kernel::timer_interrupt() {
            timer::on_interrupt();
            ticked = true;
        }
        gic::end_of_interrupt(raw);
    }
    // A domain's code: EL0t (protected) or EL1t (merged); the kernel
    // itself runs at EL1h and is not preempted.
    let from_domain = matches!(frame.spsr & 0xf, 0b0000 | 0b0100);
    if ticked {
        crate::state::with(|kernel| {
            crate::threads::charge(kernel);
            crate::control::wake_sleepers(kernel);
        });
    }
    if ticked && from_domain {
        // Parked here, the thread's registers are all in `frame`: a state
        // operation may read or write them.
        let boundary = |at: bool, frame: &mut TrapFrame| {
            crate::state::with(|kernel| {
                let current = kernel.current;
                if let Some(thread) = kernel.objects.thread_mut(current) {
                    thread.at_boundary = at;
                    thread.frame = frame as *mut TrapFrame as u64;
                }
            })
        };
        boundary(true, frame);
        crate::threads::preempt();
        boundary(false, frame);
        crate::control::before_user(frame, false);
    }
}
