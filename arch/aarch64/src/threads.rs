//! Carrying out what the kernel decides about threads: switches, waits,
//! thread start and end (`switch.s` does the register work).
//!
//! The kernel (`tern_core::scheduler`) decides: which thread runs next, who
//! is woken, where a new thread begins. This module only does it: a
//! [`Switch`] decided under the kernel state is performed after the lock is
//! dropped (`machine::perform`); a waiting thread gives the processor to whatever
//! the kernel says runs next, idling with interrupts open while nothing is
//! ready ([`block`]); a new thread's first code ([`tern_thread_main`])
//! makes the upcall the kernel describes, and ends the thread when it
//! returns. Whoever switches installs the resumed thread's view first, so
//! a thread resumes with nothing left to do.
//!
//! [`carry_out`] turns a kernel call's answer (`Next`) into these steps,
//! for the trap handler.

use crate::frame::TrapFrame;
use crate::machine::{Switch, perform};
use crate::state;
use crate::upcall::{self, Outcome};
use crate::{cpu, halt};
use tern_core::domain::DomainId;
use tern_core::kernel::Next;
use tern_core::machine::{Machine, Start, UserFrame};
use tern_core::scheduler::RunNext;
use tern_core::thread::ThreadId;

/// The current thread waits (its state says for what): run what the
/// kernel says runs next, idling until something is ready. Returns when
/// the thread is woken.
pub fn block() {
    state::with(|kernel| kernel.begin_wait());
    loop {
        match state::with(|kernel| kernel.run_next()) {
            RunNext::Switch(switch) => return perform(switch),
            RunNext::Continue => return,
            RunNext::Idle => {
                // Let interrupts in until something becomes ready.
                cpu::enable_interrupts();
                cpu::wait_for_interrupt();
                cpu::mask_interrupts();
            }
        }
    }
}

/// Yield to an equal or more urgent ready thread, if there is one.
pub fn yield_now() {
    if let Some(switch) = state::with(|kernel| kernel.yield_now()) {
        perform(switch);
    }
}

/// Yield as [`yield_now`]; if no other thread is ready, wait for an
/// interrupt with interrupts open first (as [`block`] idles). For kernel
/// code that polls (the boot thread runs with interrupts masked): spinning
/// on `yield_now` alone never lets the timer's tick in, so threads that
/// sleep — one that gave way on a lock, for instance — would never wake.
pub fn yield_or_idle() {
    match state::with(|kernel| kernel.yield_now()) {
        Some(switch) => perform(switch),
        None => {
            cpu::enable_interrupts();
            cpu::wait_for_interrupt();
            cpu::mask_interrupts();
        }
    }
}

/// What the trap handler does after a kernel call ([`carry_out`]).
pub enum Carried {
    /// Go back to the current thread from the frame.
    Resume,
    /// Make the same kernel call again (the frame is as it was).
    Repeat,
    /// End the upcall that entered the domain, with this value.
    ExitUpcall(usize),
}

/// Carry out a kernel call's answer for the current thread, whose frame is
/// `frame`.
#[inline]
pub fn carry_out(next: Next<Switch>, frame: &mut TrapFrame) -> Carried {
    match next {
        Next::Reply(_) | Next::Resume => Carried::Resume,
        Next::Switch(switch) => {
            perform(switch);
            Carried::Resume
        }
        Next::Block => {
            block();
            Carried::Resume
        }
        Next::BlockThenRepeat => {
            block();
            // An alert that ended the wait has written its Interrupted.
            if state::with(|kernel| kernel.take_interrupted()) { Carried::Resume } else { Carried::Repeat }
        }
        Next::ExitUpcall(value) => {
            // SAFETY: the trap handler of the innermost upcall of the
            // current thread, with interrupts masked; nothing else holds
            // the record.
            match unsafe { upcall::current() } {
                Some(record) => {
                    record.outcome = Outcome::Returned(value);
                    Carried::ExitUpcall(value)
                }
                None => {
                    frame.set_result(Err(tern_core::abi::Error::NotInCall));
                    Carried::Resume
                }
            }
        }
        Next::EndThread(result) => end_current_thread(result),
    }
}

/// A new thread's first code: the upcall (or, split off below a
/// terminated activation, the return into its top activation with the
/// error) the kernel describes; when that ends, end the thread.
#[unsafe(no_mangle)]
pub extern "C" fn tern_thread_main() -> ! {
    let (start, kernel_view) = state::with(|kernel| (kernel.thread_start(), kernel.machine.kernel_view()));
    let outcome = match start {
        Some(Start::Upcall(target)) => upcall::upcall(target, kernel_view),
        Some(Start::Resume(target, registers)) => {
            // Out of the box before the thread runs on: this frame is never
            // unwound (the thread ends in `end_current_thread`), so a box
            // kept in it would never be freed — one a split.
            let registers = {
                let boxed = registers;
                *boxed
            };
            upcall::resume(target, &registers, kernel_view)
        }
        None => Outcome::Faulted,
    };
    let result = match outcome {
        Outcome::Returned(value) => value,
        _ => usize::MAX,
    };
    end_current_thread(result)
}

/// End the current thread with `result` and never run it again.
pub fn end_current_thread(result: usize) -> ! {
    state::with(|kernel| kernel.end_current_thread(result));
    block();
    // An ended thread is never made ready again; were it, stop here
    // rather than run on with no activation.
    halt::report_kernel_bug("an ended thread was scheduled again")
}

/// Make a thread in `domain` that upcalls `entry(argument)` at
/// `priority` on a stack of `stack_bytes` (for the kernel's own use at
/// boot and in scenarios); `None` if there is no memory for it.
pub fn create(domain: DomainId, entry: usize, argument: usize, priority: u8, stack_bytes: u64) -> Option<ThreadId> {
    state::with(|kernel| kernel.create_thread(domain, entry, argument, priority, stack_bytes))
}

/// Wait (from the kernel's own code) for `thread` to end; its result, or
/// `None` if there is no such thread. A thread split since carries its
/// base activation on as another thread: the wait follows it.
pub fn join(thread: ThreadId) -> Option<usize> {
    loop {
        match state::with(|kernel| kernel.join_thread(thread)) {
            Ok(Some(result)) => return Some(result),
            Ok(None) => block(),
            Err(_) => return None,
        }
    }
}
