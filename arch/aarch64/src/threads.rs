//! Threads on the processor: switching, scheduling, blocking, creation.
//!
//! A thread is based in the kernel (Ford & Lepreau §4.1). A new thread
//! starts on a fresh kernel stack in [`tern_thread_main`], which makes an
//! upcall into the thread's first activation; when that upcall ends (the
//! domain's entry returned through Exit, or faulted), the thread ends.
//!
//! The scheduler is a priority run queue with round robin among equals:
//! the timer preempts a thread running at EL0 when an equal or more urgent
//! thread is ready. Blocking is explicit: a kernel call that must wait
//! sets the thread's state, and calls [`block`], which switches to the most
//! urgent ready thread (or idles until one exists). Waking puts a thread
//! on the run queue — or, on the RPC paths, hands it the processor
//! directly without going through the queue: the RPC code decides the
//! switch inside its one critical section ([`prepare_switch`]) and carries
//! it out after ([`perform`]).
//!
//! Switching never happens while the kernel state is locked. Whoever
//! switches installs the resumed thread's view first, so a thread resumes
//! with nothing left to do.

use crate::state::{self, Kernel, KernelContext, ThreadArch};
use crate::upcall::{self, Outcome, UpcallTarget};
use crate::{cpu, memory, timer};
use alloc::boxed::Box;
use tern_core::domain::DomainId;
use tern_core::frame::{FRAME_SIZE, PhysRange};
use tern_core::thread::{ThreadId, ThreadState};

/// Bytes of a thread's kernel stack.
pub const KERNEL_STACK: usize = 16 << 10;

unsafe extern "C" {
    fn tern_switch(from: *mut KernelContext, to: *const KernelContext);
    fn tern_thread_start();
}

/// Make the boot thread (thread 0): the one running now, on the boot
/// stack, at the lowest priority.
pub fn adopt_boot_thread(kernel: &mut Kernel) -> ThreadId {
    let id = kernel.objects.new_thread(0, DomainId(0));
    if let Some(thread) = kernel.objects.thread_mut(id) {
        thread.state = ThreadState::Running;
    }
    set_arch(kernel, id, ThreadArch { context: Box::default(), kernel_stack: None });
    kernel.current = id;
    id
}

fn set_arch(kernel: &mut Kernel, id: ThreadId, arch: ThreadArch) {
    if let Some(thread) = kernel.objects.thread_mut(id) {
        thread.kernel_context = &*arch.context as *const KernelContext as u64;
    }
    let at = id.get() as usize;
    if kernel.threads.len() <= at {
        kernel.threads.resize_with(at + 1, || None);
    }
    kernel.threads[at] = Some(arch);
}

/// Charge the counter ticks since the last charge to the current thread.
fn charge(kernel: &mut Kernel) {
    let now = timer::counter();
    let elapsed = now.wrapping_sub(kernel.charged_at);
    kernel.charged_at = now;
    let current = kernel.current;
    if let Some(thread) = kernel.objects.thread_mut(current) {
        thread.cpu_time += elapsed;
    }
}

/// A thread switch decided under the state lock, to be carried out after
/// it is dropped ([`perform`]).
#[must_use]
pub struct Switch {
    from: *mut KernelContext,
    to: *const KernelContext,
    view: u64,
}

/// Decide a switch from the current thread to `next` (already off the run
/// queue, if it was on it; the caller has set the current thread's state):
/// charge the time, make `next` current and running, and note the view it
/// resumes in. `None` if `next` is the current thread.
pub fn prepare_switch(kernel: &mut Kernel, next: ThreadId) -> Option<Switch> {
    let current = kernel.current;
    if let Some(thread) = kernel.objects.thread_mut(next) {
        thread.state = ThreadState::Running;
    }
    if current == next {
        return None;
    }
    charge(kernel);
    kernel.current = next;
    let view = kernel.current_view();
    let from = kernel.thread_arch(current).map(|arch| &mut *arch.context as *mut KernelContext)?;
    let to = kernel.thread_arch(next).map(|arch| &*arch.context as *const KernelContext)?;
    Some(Switch { from, to, view })
}

/// Carry out a switch: install the next thread's view and switch stacks.
/// Returns when the current thread runs again — in the view its switcher
/// installed for it, so nothing is left to do. Never call it holding the
/// state lock.
pub fn perform(switch: Option<Switch>) {
    if let Some(switch) = switch {
        let saved = cpu::mask_interrupts();
        cpu::switch_view(switch.view);
        // SAFETY: both contexts are boxed in the kernel state and live as
        // long as their threads; `from` is the running thread's, `to` a
        // parked or new thread's. The state lock is not held. Interrupts
        // are masked across the switch and restored by whoever resumes.
        unsafe { tern_switch(switch.from, switch.to) };
        cpu::restore_interrupts(saved);
    }
}

/// Switch from the current thread to `next` (see [`prepare_switch`]).
/// Returns when the current thread runs again.
fn switch_to(next: ThreadId) {
    perform(state::with(|kernel| prepare_switch(kernel, next)));
}

/// The current thread waits (its state says for what): run the most
/// urgent ready thread, idling until there is one. Returns when woken.
pub fn block() {
    loop {
        let next = state::with(|kernel| kernel.run_queue.pop().map(|(thread, _)| thread));
        match next {
            Some(next) => return switch_to(next),
            None => {
                let still_waiting = state::with(|kernel| {
                    let current = kernel.current;
                    kernel.objects.thread(current).is_some_and(|thread| thread.state != ThreadState::Running)
                });
                if !still_waiting {
                    return;
                }
                // Idle: let interrupts in until something becomes ready.
                cpu::enable_interrupts();
                cpu::wait_for_interrupt();
                cpu::mask_interrupts();
            }
        }
    }
}

/// Make `thread` ready.
pub fn wake(kernel: &mut Kernel, thread: ThreadId) {
    let Some(entry) = kernel.objects.thread_mut(thread) else { return };
    entry.state = ThreadState::Ready;
    let priority = entry.priority;
    kernel.run_queue.push(thread, priority);
}

/// Yield to an equal or more urgent ready thread, if there is one.
pub fn yield_now() {
    let next = state::with(|kernel| {
        let current = kernel.current;
        let priority = kernel.objects.thread(current).map_or(0, |thread| thread.priority);
        if kernel.run_queue.highest().is_some_and(|highest| highest >= priority) {
            wake(kernel, current);
            kernel.run_queue.pop().map(|(thread, _)| thread)
        } else {
            None
        }
    });
    if let Some(next) = next {
        switch_to(next);
    }
}

/// Create a thread that will upcall `entry(argument)` through the gate's
/// trampoline in `domain`, on a new stack of `stack_bytes` carved from the
/// domain's region, at `priority`. It is made ready.
pub fn create(
    kernel: &mut Kernel,
    domain: DomainId,
    entry: usize,
    argument: usize,
    priority: u8,
    stack_bytes: u64,
) -> Option<ThreadId> {
    let user_stack = crate::domains::carve_stack(kernel, domain, stack_bytes)?;
    let kernel_stack = {
        let mut frames = memory::FRAMES.lock();
        let frames = frames.as_mut()?;
        let start = frames.alloc_contiguous(KERNEL_STACK / FRAME_SIZE, FRAME_SIZE as u64)?;
        PhysRange::new(start, start + KERNEL_STACK as u64)
    };
    let creator = kernel.current_domain().unwrap_or(DomainId(0));
    let thread = kernel.objects.new_thread(priority, creator);
    let trampoline = tern_inks::gate::upcall_trampoline as extern "C" fn(usize, tern_inks::registry::Entry) -> !;
    let activation = kernel.new_activation(domain, None, trampoline as usize as u64, user_stack, stack_bytes);
    kernel.objects.push(thread, activation);
    if let Some(entry_activation) = kernel.objects.activation_mut(activation) {
        // The first upcall's registers: x0 = argument, x1 = entry.
        entry_activation.saved.x[0] = argument as u64;
        entry_activation.saved.x[1] = entry as u64;
    }
    let mut context = Box::<KernelContext>::default();
    context.stack_pointer = kernel_stack.end;
    context.registers[11] = tern_thread_start as *const () as u64; // x30: where `ret` lands
    set_arch(kernel, thread, ThreadArch { context, kernel_stack: Some(kernel_stack) });
    wake(kernel, thread);
    Some(thread)
}

/// A new thread's first code: upcall into its first activation; when that
/// ends, end the thread.
#[unsafe(no_mangle)]
extern "C" fn tern_thread_main() -> ! {
    let target = state::with(|kernel| {
        let current = kernel.current;
        let top = kernel.objects.thread(current)?.top?;
        let activation = kernel.objects.activation(top)?;
        Some(UpcallTarget {
            domain: activation.domain,
            translation_base: activation.view,
            entry: activation.entry,
            stack: activation.stack_top,
            arguments: [activation.saved.x[0], activation.saved.x[1]],
            pstate: activation.entry_pstate,
        })
    });
    let result = match target.map(|target| upcall::upcall(target, state::with(|kernel| kernel.kernel_view))) {
        Some(Outcome::Returned(value)) => value,
        _ => usize::MAX,
    };
    end_current_thread(result)
}

/// End the current thread with `result`: wake its joiners and never run
/// again. (Its kernel stack stays allocated: reclaiming the stack one runs
/// on needs another thread to do it, which waits for thread reaping.)
fn end_current_thread(result: usize) -> ! {
    state::with(|kernel| {
        let current = kernel.current;
        kernel.objects.pop(current);
        if let Some(thread) = kernel.objects.thread_mut(current) {
            thread.state = ThreadState::Ended(result);
        }
        let joiners: alloc::vec::Vec<ThreadId> = kernel
            .objects
            .thread_ids()
            .filter(|&id| kernel.objects.thread(id).is_some_and(|thread| thread.state == ThreadState::Joining(current)))
            .collect();
        for joiner in joiners {
            wake(kernel, joiner);
        }
    });
    block();
    unreachable!("an ended thread was scheduled again");
}

/// Wait for `thread` to end; its result (or `None` if there is no such
/// thread). The current thread must not be `thread`.
pub fn join(thread: ThreadId) -> Option<usize> {
    loop {
        let state = state::with(|kernel| {
            let state = kernel.objects.thread(thread)?.state;
            if !matches!(state, ThreadState::Ended(_)) {
                let current = kernel.current;
                if let Some(entry) = kernel.objects.thread_mut(current) {
                    entry.state = ThreadState::Joining(thread);
                }
            }
            Some(state)
        })?;
        if let ThreadState::Ended(result) = state {
            return Some(result);
        }
        block();
    }
}

/// Upcall into `domain` at `entry(argument)` on the current thread, in a
/// new activation on `stack` pushed on the thread's chain and removed
/// afterwards. Used by the kernel to start domains.
pub fn upcall_in_new_activation(domain: DomainId, stack: u64, argument: usize, entry: usize) -> Outcome {
    let prepared = state::with(|kernel| {
        let trampoline = tern_inks::gate::upcall_trampoline as extern "C" fn(usize, tern_inks::registry::Entry) -> !;
        kernel.domain(domain)?;
        let activation = kernel.new_activation(domain, None, trampoline as usize as u64, stack, 0);
        let current = kernel.current;
        kernel.objects.push(current, activation);
        let entered = kernel.objects.activation(activation)?;
        Some((
            activation,
            UpcallTarget {
                domain,
                translation_base: entered.view,
                entry: trampoline as usize as u64,
                stack,
                arguments: [argument as u64, entry as u64],
                pstate: entered.entry_pstate,
            },
            kernel.kernel_view,
        ))
    });
    let Some((activation, target, kernel_view)) = prepared else { return Outcome::Faulted };
    let outcome = upcall::upcall(target, kernel_view);
    state::with(|kernel| {
        let current = kernel.current;
        if kernel.objects.thread(current).and_then(|thread| thread.top) == Some(activation) {
            kernel.objects.pop(current);
        }
        kernel.objects.remove_activation(activation);
    });
    outcome
}

/// From the timer interrupt, when it interrupted EL0: let an equal or more
/// urgent ready thread run (round robin).
pub fn preempt() {
    yield_now();
}
