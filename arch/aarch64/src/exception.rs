//! What happens after the vectors (`vectors.s`) have saved a trap frame.
//!
//! The assembly only captures state; these functions decide:
//! - [`tern_domain_trap`]: a kernel call (`svc`, or the merged gate's
//!   direct entry) goes to the kernel (`Kernel::kernel_call`), and what it
//!   answers is carried out ([`crate::threads::carry_out`]); any other
//!   synchronous exception from a domain is a fault: it is reported with
//!   its decoded syndrome, the domain is terminated, and the thread is
//!   unwound or its upcall ends. The kernel and every other domain carry
//!   on. Every way back into a domain passes the kernel's check
//!   ([`way_back`]).
//! - [`tern_kernel_trap`]: a synchronous exception at EL1 (a kernel bug,
//!   taken on the exception stack) or an exception Tern never expects.
//!   Reported the same way — a kernel stack overflow as such, naming the
//!   thread and its domain ([`crate::stacks`]); then the kernel stops —
//!   with exit status 3 under the test harness, parked otherwise.
//! - [`tern_interrupt`]: IRQs from either level.

use crate::console::CONSOLE;
use crate::esr::Syndrome;
use crate::frame::{TrapAction, TrapFrame};
use crate::halt::{self, report_kernel_fault, write_registers};
use crate::semihosting::ExitStatus;
use crate::threads::{self, Carried};
use crate::{console, gic, stacks, state, timer, upcall};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};
use tern_core::control::WayBack;

const CLASS_SVC_FROM_AARCH64: u8 = 0x15;

/// A synchronous exception from a domain's code (EL0, or EL1t when merged).
#[unsafe(no_mangle)]
extern "C" fn tern_domain_trap(frame: &mut TrapFrame) -> TrapAction {
    if Syndrome(frame.esr).exception_class() == CLASS_SVC_FROM_AARCH64 { kernel_call(frame) } else { fault(frame) }
}

/// A kernel call: the kernel answers it; this carries the answer out (a
/// wait, a switch, the same call again after a wait) and makes the check
/// on the way back into the domain.
fn kernel_call(frame: &mut TrapFrame) -> TrapAction {
    loop {
        let next = state::with(|kernel| kernel.kernel_call(frame));
        match threads::carry_out(next, frame) {
            Carried::Resume => break,
            Carried::Repeat => continue,
            Carried::ExitUpcall(value) => return TrapAction::end(value as u64),
        }
    }
    way_back(frame, true);
    TrapAction::RESUME
}

/// Anything but a kernel call from a domain: its fault. Reported with the
/// decoded syndrome; the kernel terminates the domain and either unwinds
/// the thread to the caller of the call it faulted in (`CallAborted`), or
/// ends the upcall that entered it. The kernel and every other domain
/// carry on.
fn fault(frame: &mut TrapFrame) -> TrapAction {
    let syndrome = Syndrome(frame.esr);
    let Some(fault) = state::with(|kernel| kernel.fault(frame)) else {
        // EL0 code running outside any activation cannot happen; treat it
        // as the kernel bug it would be.
        report_kernel_fault("exception from EL0 outside an activation", frame);
    };
    {
        let mut console = CONSOLE.steal();
        let _ = writeln!(console, "fault in domain '{}' (domain {}): {}", fault.name, fault.domain.0, syndrome);
        write_registers(&mut console, frame);
        let _ = writeln!(console, "domain '{}' terminated; the kernel carries on", fault.name);
    }
    defmt::warn!("domain {=u16} terminated after a fault (ESR {=u64:#x})", fault.domain.0, frame.esr);
    if fault.unwound {
        way_back(frame, false);
        return TrapAction::RESUME;
    }
    // SAFETY: we are the trap handler of the innermost upcall, with
    // interrupts masked; nothing else holds the record.
    if let Some(record) = unsafe { upcall::current() } {
        record.outcome = upcall::Outcome::Faulted;
    }
    TrapAction::end(0)
}

/// The check on every way back into a domain (the kernel's
/// `way_back`), carried out: a thread stopped there waits until it may go
/// on; one with no activation left ends. The common case — the top
/// activation is not watched — is read from the fast paths' block without
/// taking the kernel state.
pub fn way_back(frame: &mut TrapFrame, call_boundary: bool) {
    if !crate::fastpath::top_needs_check() {
        return;
    }
    loop {
        match state::with(|kernel| kernel.way_back(frame, call_boundary)) {
            WayBack::Go => return,
            WayBack::Stop => {
                threads::block();
                state::with(|kernel| kernel.leave_stop());
            }
            WayBack::End => threads::end_current_thread(usize::MAX),
        }
    }
}

/// Where `tern_resume_user` asks: a thread parked by a fast path whose top
/// activation is watched or gone. (A fast-parked thread resumes at the
/// end of a kernel call.)
#[unsafe(no_mangle)]
extern "C" fn tern_resume_check(frame: &mut TrapFrame) {
    way_back(frame, true);
}

/// A synchronous exception at EL1 (on the exception stack, `kind` 4), or
/// any exception Tern does not expect; `stack_pointer` is the kernel stack
/// pointer when it was taken. A kernel stack overflow is told apart and
/// reported as such ([`stacks::overflow`]). A fault in the report itself
/// (taken afresh on the exception stack) gets a one-line report; a third
/// stops without a word.
#[unsafe(no_mangle)]
extern "C" fn tern_kernel_trap(frame: &TrapFrame, kind: u64, stack_pointer: u64) -> ! {
    static ENTERED: AtomicU32 = AtomicU32::new(0);
    match ENTERED.fetch_add(1, Ordering::Relaxed) {
        0 => {}
        1 => halt::report_nested_fault(frame, stack_pointer),
        _ => halt::stop(ExitStatus::KernelFault),
    }
    if kind == 4
        && let Some(overflow) = stacks::overflow(frame, stack_pointer)
    {
        halt::report_stack_overflow(&overflow, frame, stack_pointer);
    }
    let what = match kind {
        2 | 3 => "FIQ or SError from a merged domain",
        4 => "synchronous exception at EL1",
        6 | 10 => "FIQ",
        7 | 11 => "SError",
        12..=15 => "exception from AArch32",
        _ => "unexpected exception",
    };
    halt::report_kernel_trap(what, frame, stack_pointer)
}

/// An IRQ, from a domain or the kernel. A timer tick that interrupted a
/// domain's code lets an equal or more urgent ready thread run (round
/// robin).
#[unsafe(no_mangle)]
extern "C" fn tern_interrupt(frame: &mut TrapFrame) {
    let mut ticked = false;
    let mut woke_reader = false;
    while let Some(raw) = gic::acknowledge() {
        let number = gic::interrupt_number(raw);
        if number == timer::interrupt() {
            timer::on_interrupt();
            ticked = true;
        } else if number == console::receive_interrupt() {
            let mut received = [0u8; 64];
            loop {
                let count = CONSOLE.drain_received(&mut received);
                if count == 0 {
                    break;
                }
                woke_reader |= state::with(|kernel| kernel.console_input(&received[..count]));
            }
        }
        gic::end_of_interrupt(raw);
    }
    // A domain's code: EL0t (protected) or EL1t (merged); the kernel
    // itself runs at EL1h and is not preempted.
    let from_domain = matches!(frame.spsr & 0xf, 0b0000 | 0b0100);
    if ticked {
        state::with(|kernel| kernel.tick());
    }
    // A woken console reader runs now if it is at least as urgent as what
    // was interrupted, not at the next tick: typing is answered at once.
    if (ticked || woke_reader) && from_domain {
        // Parked here, the thread's registers are all in `frame`: a state
        // operation may read or write them.
        state::with(|kernel| kernel.set_boundary(frame, true));
        threads::yield_now();
        state::with(|kernel| kernel.set_boundary(frame, false));
        way_back(frame, false);
    }
}
