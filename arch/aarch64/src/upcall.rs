//! Upcalls from the kernel-based thread into a domain (see `upcall.s`).
//!
//! [`upcall`] runs a domain's entry at EL0 and returns how it ended: the
//! value it passed to Exit, or the fact that it faulted and was terminated.
//! The record lives on the kernel stack of the caller for the duration of
//! the upcall; the trap handlers find the innermost one through TPIDR_EL1.

use crate::cpu;
use tern_core::machine::UpcallTarget;
use tern_core::thread::UserContext;

/// How an upcall ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (never seen by the caller of [`upcall`]).
    Running,
    /// The domain ended the upcall with this value.
    Returned(usize),
    /// The domain faulted and has been terminated.
    Faulted,
}

/// The part of an upcall record that `upcall.s` reads and writes, at
/// fixed offsets.
#[repr(C)]
struct GlueState {
    kernel_stack: u64,
    entry: u64,
    user_stack: u64,
    argument0: u64,
    argument1: u64,
    translation_base: u64,
    previous: u64,
    pstate: u64,
    resume: u64,
}

/// The upcall record: the glue's state first (TPIDR_EL1 points at both),
/// then what Rust keeps.
#[repr(C)]
pub struct UpcallRecord {
    glue: GlueState,
    /// Set by the trap handlers when the upcall ends.
    pub outcome: Outcome,
}

unsafe extern "C" {
    fn tern_upcall(record: *mut GlueState);
}

/// Make an upcall and wait for it to end. On return the kernel's own view
/// is back in TTBR0.
pub fn upcall(target: UpcallTarget, kernel_view: u64) -> Outcome {
    upcall_with(target, None, kernel_view)
}

/// [`upcall`] that resumes saved registers instead of entering fresh:
/// `registers` supplies x0-x30 (the target's entry, stack and PSTATE are
/// the saved PC, SP and PSTATE). A thread split off below a terminated
/// activation goes back to its top activation this way.
pub fn resume(target: UpcallTarget, registers: &UserContext, kernel_view: u64) -> Outcome {
    upcall_with(target, Some(registers), kernel_view)
}

fn upcall_with(target: UpcallTarget, registers: Option<&UserContext>, kernel_view: u64) -> Outcome {
    let mut record = UpcallRecord {
        glue: GlueState {
            kernel_stack: 0,
            entry: target.entry,
            user_stack: target.stack,
            argument0: target.arguments[0],
            argument1: target.arguments[1],
            translation_base: target.view,
            previous: 0,
            pstate: target.state,
            resume: registers.map_or(0, |registers| registers as *const _ as u64),
        },
        outcome: Outcome::Running,
    };
    let saved = cpu::mask_interrupts();
    // SAFETY: the record outlives the upcall (tern_upcall returns only once
    // the upcall has ended, through tern_upcall_finish); the target view
    // maps the entry (shared code) and the stack (the domain's region), and
    // the kernel's global mappings are present in it, so the trap vectors
    // keep working while it is installed.
    unsafe { tern_upcall(&raw mut record.glue) };
    cpu::switch_view(kernel_view);
    cpu::restore_interrupts(saved);
    record.outcome
}

/// The innermost upcall in progress on this core.
///
/// # Safety
/// Only from a trap handler running on behalf of that upcall (interrupts
/// masked), while no other reference to the record is live.
pub unsafe fn current() -> Option<&'static mut UpcallRecord> {
    let pointer: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, tpidr_el1", out(reg) pointer, options(nomem, nostack)) };
    // SAFETY: TPIDR_EL1 is either 0 or points at the live record of the
    // innermost upcall (set by tern_upcall, restored by tern_upcall_finish);
    // the caller guarantees exclusive access.
    unsafe { (pointer as *mut UpcallRecord).as_mut() }
}
