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

/// Charge the counter ticks since the last charge to the current thread,
/// as spent in the domain of its top activation. Called at every switch
/// and every timer tick, so the per-domain split is exact to a tick (a
/// migrating call crosses domains without the kernel's general path, so
/// the crossings themselves are not charged points).
pub fn charge(kernel: &mut Kernel) {
    let now = timer::counter();
    let elapsed = now.wrapping_sub(kernel.charged_at);
    kernel.charged_at = now;
    let current = kernel.current;
    let domain = kernel.current_domain();
    if let Some(thread) = kernel.objects.thread_mut(current) {
        thread.charge(elapsed, domain);
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
    state::with(|kernel| {
        let current = kernel.current;
        if let Some(thread) = kernel.objects.thread_mut(current) {
            thread.interrupted = false;
        }
    });
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

/// Whether an alert ended the current thread's last wait (taking the
/// news).
pub fn take_interrupted() -> bool {
    state::with(|kernel| {
        let current = kernel.current;
        kernel.objects.thread_mut(current).is_some_and(|thread| core::mem::take(&mut thread.interrupted))
    })
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
    let kernel_stack = new_kernel_stack(kernel)?;
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
    start_on(kernel, thread, kernel_stack);
    Some(thread)
}

/// A kernel stack for a new thread: one left by an ended thread, or fresh
/// frames.
pub fn new_kernel_stack(kernel: &mut Kernel) -> Option<PhysRange> {
    if let Some(stack) = kernel.spare_stacks.pop() {
        return Some(stack);
    }
    let mut frames = memory::FRAMES.lock();
    let frames = frames.as_mut()?;
    let start = frames.alloc_contiguous(KERNEL_STACK / FRAME_SIZE, FRAME_SIZE as u64)?;
    Some(PhysRange::new(start, start + KERNEL_STACK as u64))
}

/// Give `thread` its kernel side on `kernel_stack`, starting in
/// [`tern_thread_main`], and make it ready.
fn start_on(kernel: &mut Kernel, thread: ThreadId, kernel_stack: PhysRange) {
    let mut context = Box::<KernelContext>::default();
    context.stack_pointer = kernel_stack.end;
    context.registers[11] = tern_thread_start as *const () as u64; // x30: where `ret` lands
    set_arch(kernel, thread, ThreadArch { context, kernel_stack: Some(kernel_stack) });
    wake(kernel, thread);
}

/// Start `lower`, a thread split off below a terminated (or broken-off)
/// activation (`tern_core::control`): on `kernel_stack` (taken with
/// [`new_kernel_stack`] before the split, so that a split never lacks
/// one), it resumes its top activation's saved registers with `error` as
/// the result of the call that activation made.
pub fn start_split(kernel: &mut Kernel, lower: ThreadId, error: tern_core::abi::Error, kernel_stack: PhysRange) {
    if let Some(thread) = kernel.objects.thread_mut(lower) {
        thread.resume_with = error as usize;
    }
    start_on(kernel, lower, kernel_stack);
}

/// A new thread's first code: upcall into its first activation (or, split
/// off below a terminated activation, resume its top one with the error);
/// when that ends, end the thread.
#[unsafe(no_mangle)]
extern "C" fn tern_thread_main() -> ! {
    let target = state::with(|kernel| {
        let current = kernel.current;
        let thread = kernel.objects.thread(current)?;
        let resume_with = thread.resume_with;
        let activation = kernel.objects.activation(thread.top?)?;
        let mut registers = activation.saved;
        let target = if resume_with == 0 {
            UpcallTarget {
                domain: activation.domain,
                translation_base: activation.view,
                entry: activation.entry,
                stack: activation.stack_top,
                arguments: [activation.saved.x[0], activation.saved.x[1]],
                pstate: activation.entry_pstate,
            }
        } else {
            registers.x[0] = resume_with as u64;
            registers.x[1] = 0;
            UpcallTarget {
                domain: activation.domain,
                translation_base: activation.view,
                entry: registers.pc,
                stack: registers.sp,
                arguments: [0, 0],
                pstate: if registers.pstate == 0 { activation.entry_pstate } else { registers.pstate },
            }
        };
        Some((target, resume_with != 0, registers))
    });
    let kernel_view = state::with(|kernel| kernel.kernel_view);
    let outcome = match &target {
        Some((target, false, _)) => Some(upcall::upcall(*target, kernel_view)),
        Some((target, true, registers)) => Some(upcall::resume(*target, registers, kernel_view)),
        None => None,
    };
    let result = match outcome {
        Some(Outcome::Returned(value)) => value,
        _ => usize::MAX,
    };
    end_current_thread(result)
}

/// End the current thread with `result`: wake its joiners and never run
/// again. Its kernel stack goes on the spare list: the next thread made
/// takes it, which can only happen once this one has switched away for
/// good (one core; a thread is made by a running thread).
pub fn end_current_thread(result: usize) -> ! {
    state::with(|kernel| {
        let current = kernel.current;
        while let Some(activation) = kernel.objects.pop(current) {
            // (a thread ends with its own activation on top; a segment
            // split off a thread may end above a cut, its activations
            // going back to their pools)
            if kernel.objects.activation(activation).is_some_and(|entry| entry.port.is_some()) {
                kernel.objects.pool_return(activation);
            }
        }
        if let Some(stack) = kernel.thread_arch(current).and_then(|arch| arch.kernel_stack) {
            kernel.spare_stacks.push(stack);
        }
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

/// Wait for `thread` to end; its result. The current thread must not be
/// `thread`. A thread split since carries its base activation on as
/// another thread: the join follows it there. `InvalidArgument` if there
/// is no such thread, `Interrupted` if an alert ends the wait.
pub fn join(thread: ThreadId) -> Result<usize, tern_core::abi::Error> {
    loop {
        let state = state::with(|kernel| {
            let mut target = thread;
            while let Some(next) = kernel.objects.thread(target)?.base_moved_to {
                target = next;
            }
            let state = kernel.objects.thread(target)?.state;
            if !matches!(state, ThreadState::Ended(_)) {
                let current = kernel.current;
                if let Some(entry) = kernel.objects.thread_mut(current) {
                    entry.state = ThreadState::Joining(target);
                }
            }
            Some(state)
        })
        .ok_or(tern_core::abi::Error::InvalidArgument)?;
        if let ThreadState::Ended(result) = state {
            return Ok(result);
        }
        block();
        if take_interrupted() {
            return Err(tern_core::abi::Error::Interrupted);
        }
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
