//! Activation control: the kernel calls on activations (alerts,
//! suspension, termination, CPU state, scheduling, accounting, domain-wide
//! control) and the check every way back into a domain makes — the glue's
//! APC check of Ford & Lepreau §4.2.
//!
//! The chain surgery is `tern_core::control`'s; this module checks the
//! caller's rights, then does what only the arch layer can: park and wake
//! threads, write error codes into trap frames, give a split-off thread a
//! kernel stack, unwind a spliced activation.
//!
//! **Rights.** An activation is named by its number; the right to control
//! it belongs to its own domain (a client controls its own threads'
//! activations, a server its own). Effects reach other domains only as the
//! model allows: an alert travels up the chain as a request, a termination
//! gives the domain's own caller control back while the server's part
//! carries on. Domain-wide control is the kernel domain's.
//!
//! **The check on the way back** ([`before_user`]): a general-path return
//! to a domain (a kernel call's end, a preemption's end, a fault that
//! aborted a call), and a thread parked by a fast path whose top activation
//! is watched, come here. If the thread has no activation left (its top
//! was terminated while it was in the kernel for it) it ends; if its top
//! activation is spliced out, it is unwound and its caller gets
//! `Terminated`; if it is suspended or held for a state operation, the
//! thread stops there (state `Suspended`) until that is undone.

use crate::exception::TrapFrame;
use crate::rpc::{self, load, write_result};
use crate::state::{self, Kernel};
use crate::{cpu, threads};
use alloc::vec::Vec;
use tern_core::abi::{Error, STATE_BYTES};
use tern_core::domain::{DomainId, UserRange};
use tern_core::thread::{ActivationId, ThreadId, ThreadState, UserContext};
use tern_inks::mode::DomainMode;

/// The activation numbered `number`, which `caller` may control, and the
/// thread it is on: `NoSuchActivation` for a number naming nothing or an
/// unoccupied activation, `NoRight` for another domain's.
pub fn resolve(kernel: &Kernel, caller: DomainId, number: usize) -> Result<(ActivationId, ThreadId), Error> {
    let id = u32::try_from(number)
        .ok()
        .and_then(core::num::NonZeroU32::new)
        .map(ActivationId)
        .ok_or(Error::NoSuchActivation)?;
    let activation = kernel.objects.activation(id).ok_or(Error::NoSuchActivation)?;
    if activation.domain != caller {
        return Err(Error::NoRight);
    }
    let thread = activation.occupant.ok_or(Error::NoSuchActivation)?;
    Ok((id, thread))
}

/// The current thread's top activation.
pub fn activation_self(kernel: &Kernel) -> Result<usize, Error> {
    let top = kernel.objects.thread(kernel.current).and_then(|thread| thread.top);
    top.map(|top| top.get() as usize).ok_or(Error::NotInCall)
}

/// End `thread`'s wait with `Interrupted`: out of whatever queue it waits
/// in, its kernel call's result written, made ready. Only for a thread
/// (not the current one) in an interruptible wait.
fn interrupt(kernel: &mut Kernel, thread: ThreadId) {
    let Some(state) = kernel.objects.thread(thread).map(|entry| entry.state) else { return };
    if thread == kernel.current || !state.interruptible() {
        return;
    }
    match state {
        ThreadState::Receiving(port) => {
            kernel.objects.remove_receiver(port, thread);
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.set_receive_buffer(None);
            }
        }
        ThreadState::WaitingForActivation(port) | ThreadState::WaitingForReceiver(port) => {
            if let Some(entry) = kernel.objects.port_mut(port) {
                entry.forget_waiter(thread);
            }
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.pending = None;
                entry.set_reply_to(None);
            }
        }
        ThreadState::WaitingForState(activation) => release_hold(kernel, activation, thread),
        _ => {}
    }
    if let Some(frame) = rpc::blocked_frame(kernel, thread) {
        write_result(frame, Err(Error::Interrupted));
    }
    if let Some(entry) = kernel.objects.thread_mut(thread) {
        entry.interrupted = true;
    }
    threads::wake(kernel, thread);
}

/// After an alert reached `thread`: if it waits in a blocking kernel call
/// made by an activation that sees the alert (or by one that is gone),
/// end the wait. The alert is taken by that `Interrupted`.
fn honour_alert(kernel: &mut Kernel, thread: ThreadId) {
    let waiting = kernel.objects.thread(thread).is_some_and(|entry| entry.state.interruptible());
    if !waiting || thread == kernel.current {
        return;
    }
    let top = kernel.objects.thread(thread).and_then(|entry| entry.top);
    match top {
        Some(top) if kernel.objects.take_alert(top) => interrupt(kernel, thread),
        Some(_) => {}
        None => interrupt(kernel, thread),
    }
}

/// `Alert`.
pub fn alert(kernel: &mut Kernel, caller: DomainId, number: usize) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    let reached = kernel.objects.alert(activation).len();
    honour_alert(kernel, thread);
    Ok(reached)
}

/// `AlertsBlock`: on the caller's own activation.
pub fn alerts_block(kernel: &mut Kernel, blocked: usize) -> Result<usize, Error> {
    let blocked = match blocked {
        0 => false,
        1 => true,
        _ => return Err(Error::InvalidArgument),
    };
    let top = kernel.objects.thread(kernel.current).and_then(|thread| thread.top).ok_or(Error::NotInCall)?;
    Ok(kernel.objects.set_alerts_blocked(top, blocked) as usize)
}

/// `TestAlert`: on the caller's own activation.
pub fn test_alert(kernel: &mut Kernel) -> Result<usize, Error> {
    let top = kernel.objects.thread(kernel.current).and_then(|thread| thread.top).ok_or(Error::NotInCall)?;
    Ok(kernel.objects.take_alert(top) as usize)
}

/// Whether `thread` can be split: it has a kernel stack of its own (the
/// boot thread runs the kernel's own code below its activations).
fn splittable(kernel: &mut Kernel, thread: ThreadId) -> bool {
    kernel.thread_arch(thread).is_some_and(|arch| arch.kernel_stack.is_some())
}

/// `AlertBreak`.
pub fn alert_break(kernel: &mut Kernel, caller: DomainId, number: usize) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    let top = kernel.objects.thread(thread).and_then(|entry| entry.top);
    if top == Some(activation) {
        // Nothing above it to break off: an alert, which a blocking call
        // it is in honours.
        let reached = kernel.objects.alert(activation).len();
        honour_alert(kernel, thread);
        return Ok(reached);
    }
    if !splittable(kernel, thread) {
        return Err(Error::Busy);
    }
    let stack = threads::new_kernel_stack(kernel).ok_or(Error::OutOfMemory)?;
    let reached = kernel.objects.alert(activation).len();
    kernel.objects.take_alert(activation);
    let Some((lower, _)) = kernel.objects.split(thread, activation) else {
        kernel.spare_stacks.push(stack);
        return Err(Error::NoSuchActivation);
    };
    threads::start_split(kernel, lower, Error::Interrupted, stack);
    honour_alert(kernel, thread);
    kernel.statistics().splits += 1;
    Ok(reached)
}

/// Terminate `activation` (on `thread`): see `Call::Terminate`.
fn terminate_activation(kernel: &mut Kernel, activation: ActivationId, thread: ThreadId) -> Result<(), Error> {
    if !splittable(kernel, thread) {
        return Err(Error::Busy);
    }
    let has_caller = kernel.objects.activation(activation).is_some_and(|entry| entry.caller.is_some());
    let stack = if has_caller { Some(threads::new_kernel_stack(kernel).ok_or(Error::OutOfMemory)?) } else { None };
    if let Some(domain) = kernel.objects.activation(activation).map(|entry| entry.domain) {
        rpc::end_lend(kernel, activation, domain);
    }
    let Some(done) = kernel.objects.terminate(activation) else {
        kernel.spare_stacks.extend(stack);
        return Err(Error::NoSuchActivation);
    };
    retire(kernel, activation);
    match (done.lower, stack) {
        (Some(lower), Some(stack)) => {
            threads::start_split(kernel, lower, Error::Terminated, stack);
            kernel.statistics().splits += 1;
        }
        (_, stack) => kernel.spare_stacks.extend(stack),
    }
    // The part left on the thread: alerted (or with nothing left, to end).
    let stopped = kernel.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation));
    if stopped {
        threads::wake(kernel, thread);
    }
    honour_alert(kernel, thread);
    Ok(())
}

/// An activation just taken off its chain: back to its pool (a waiter may
/// have it), or — a thread's own activation — forgotten.
fn retire(kernel: &mut Kernel, activation: ActivationId) {
    match kernel.objects.activation(activation).and_then(|entry| entry.port) {
        Some(port) => {
            kernel.objects.pool_return(activation);
            if let Some(waiter) = kernel.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
                threads::wake(kernel, waiter);
            }
        }
        None => {
            kernel.objects.remove_activation(activation);
        }
    }
}

/// `Terminate`.
pub fn terminate(kernel: &mut Kernel, caller: DomainId, number: usize) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    terminate_activation(kernel, activation, thread).map(|()| 0)
}

/// `SpliceOut`.
pub fn splice_out(kernel: &mut Kernel, caller: DomainId, number: usize) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    kernel.objects.splice(activation);
    if kernel.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation)) {
        threads::wake(kernel, thread);
    }
    honour_alert(kernel, thread);
    Ok(0)
}

/// `Suspend` (`true`) and `Resume`.
pub fn suspend(kernel: &mut Kernel, caller: DomainId, number: usize, suspended: bool) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    let was = kernel.objects.set_suspended(activation, suspended);
    if !suspended {
        restart_if_free(kernel, activation, thread);
    }
    Ok(was as usize)
}

/// Let `thread`, stopped in `activation`, run on if nothing stops it there
/// any more.
fn restart_if_free(kernel: &mut Kernel, activation: ActivationId, thread: ThreadId) {
    let stops = kernel.objects.activation(activation).is_some_and(|entry| entry.control.stops());
    let stopped = kernel.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation));
    if stopped && !stops {
        threads::wake(kernel, thread);
    }
}

/// The threads waiting to read or write `activation`'s state, but for
/// `except`.
fn state_waiters(kernel: &Kernel, activation: ActivationId, except: Option<ThreadId>) -> Vec<ThreadId> {
    kernel
        .objects
        .thread_ids()
        .filter(|&id| {
            Some(id) != except
                && kernel.objects.thread(id).map(|entry| entry.state) == Some(ThreadState::WaitingForState(activation))
        })
        .collect()
}

/// `waiter` is done with (or gave up on) its hold on `activation`: the
/// last waiter lets the thread go on.
fn release_hold(kernel: &mut Kernel, activation: ActivationId, waiter: ThreadId) {
    if state_waiters(kernel, activation, Some(waiter)).is_empty() {
        kernel.objects.set_held(activation, false);
        if let Some(thread) = kernel.objects.activation(activation).and_then(|entry| entry.occupant) {
            restart_if_free(kernel, activation, thread);
        }
    }
}

/// `GetState` (`write` false) and `SetState` (`write` true): wait until
/// the thread is stopped at a user boundary in the activation, then copy.
pub fn state(caller: DomainId, number: usize, buffer: UserRange, write: bool) -> Result<usize, Error> {
    loop {
        let step = state::with(|kernel| -> Result<bool, Error> {
            let (activation, thread) = resolve(kernel, caller, number)?;
            if thread == kernel.current {
                // Its own thread: it would wait for itself.
                return Err(Error::InvalidArgument);
            }
            if buffer.length < STATE_BYTES {
                return Err(Error::InvalidArgument);
            }
            let record = kernel.domain(caller).ok_or(Error::BadAddress)?;
            let checked = if write {
                record.domain.check_readable(&kernel.image, UserRange::new(buffer.address, STATE_BYTES))?
            } else {
                record.domain.check_writable(UserRange::new(buffer.address, STATE_BYTES))?
            };
            let there =
                kernel.objects.thread(thread).is_some_and(|entry| entry.top == Some(activation) && entry.at_boundary);
            if !there {
                kernel.objects.set_held(activation, true);
                let current = kernel.current;
                if let Some(entry) = kernel.objects.thread_mut(current) {
                    entry.state = ThreadState::WaitingForState(activation);
                }
                return Ok(false);
            }
            let frame = rpc::blocked_frame(kernel, thread).ok_or(Error::Busy)?;
            let local = crate::memory::kernel_address(kernel.arena, checked.address);
            if write {
                // SAFETY: `checked` lies in the caller's region (or the
                // shared image), readable, STATE_BYTES long; read through
                // the kernel's alias of the arena.
                let words = unsafe { core::slice::from_raw_parts(local as *const u64, STATE_BYTES / 8) };
                let mut context = rpc::save(frame);
                context.x.copy_from_slice(&words[..31]);
                context.sp = words[31];
                context.pc = words[32];
                // Only the condition flags: the mode, masks and the rest
                // stay the kernel's.
                const NZCV: u64 = 0xf000_0000;
                context.pstate = (context.pstate & !NZCV) | (words[33] & NZCV);
                load(frame, &context);
            } else {
                let context = rpc::save(frame);
                // SAFETY: as above, writable by the caller.
                let words = unsafe { core::slice::from_raw_parts_mut(local as *mut u64, STATE_BYTES / 8) };
                words[..31].copy_from_slice(&context.x);
                words[31] = context.sp;
                words[32] = context.pc;
                words[33] = context.pstate;
            }
            let current = kernel.current;
            release_hold(kernel, activation, current);
            Ok(true)
        })?;
        if step {
            return Ok(STATE_BYTES);
        }
        threads::block();
        if threads::take_interrupted() {
            return Err(Error::Interrupted);
        }
    }
}

/// `SetPriority`.
pub fn set_priority(kernel: &mut Kernel, caller: DomainId, number: usize, priority: usize) -> Result<usize, Error> {
    let (activation, thread) = resolve(kernel, caller, number)?;
    if priority > 31 {
        return Err(Error::InvalidArgument);
    }
    if !kernel.objects.may_schedule(activation) {
        return Err(Error::Forbidden);
    }
    let entry = kernel.objects.thread_mut(thread).ok_or(Error::NoSuchActivation)?;
    let old = entry.priority;
    entry.priority = priority as u8;
    let ready = entry.state == ThreadState::Ready;
    if ready && kernel.run_queue.remove(thread) {
        kernel.run_queue.push(thread, priority as u8);
    }
    Ok(old as usize)
}

/// `ForbidAbove`.
pub fn forbid_above(kernel: &mut Kernel, caller: DomainId, number: usize) -> Result<usize, Error> {
    let (activation, _) = resolve(kernel, caller, number)?;
    kernel.objects.forbid_above(activation);
    Ok(0)
}

/// `ThreadInfo`: priority, CPU ticks, then (domain, ticks) pairs.
pub fn thread_info(kernel: &mut Kernel, caller: DomainId, number: usize, buffer: UserRange) -> Result<usize, Error> {
    let (_, thread) = resolve(kernel, caller, number)?;
    threads::charge(kernel);
    let entry = kernel.objects.thread(thread).ok_or(Error::NoSuchActivation)?;
    let mut words: Vec<u64> = alloc::vec![entry.priority as u64, entry.cpu_time];
    for &(domain, ticks) in &entry.by_domain {
        words.extend([domain.0 as u64, ticks]);
    }
    let fits = (buffer.length / 8).min(words.len());
    let checked = kernel
        .domain(caller)
        .ok_or(Error::BadAddress)?
        .domain
        .check_writable(UserRange::new(buffer.address, fits * 8))?;
    let local = crate::memory::kernel_address(kernel.arena, checked.address);
    // SAFETY: `checked` lies in the caller's region, writable, `fits`
    // words long; written through the kernel's alias of the arena.
    let out = unsafe { core::slice::from_raw_parts_mut(local as *mut u64, fits) };
    out.copy_from_slice(&words[..fits]);
    Ok(fits)
}

/// What [`domain_control`] does to each occupied activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainAction {
    /// Suspend it.
    Suspend,
    /// Resume it.
    Resume,
    /// Terminate it (and then the domain).
    Terminate,
}

/// Act on every occupied activation of `domain`; how many.
pub fn domain_control(kernel: &mut Kernel, domain: DomainId, action: DomainAction) -> Result<usize, Error> {
    kernel.domain(domain).ok_or(Error::InvalidArgument)?;
    let occupied = kernel.objects.occupied_in(domain);
    let mut acted = 0;
    for activation in occupied {
        let Some(thread) = kernel.objects.activation(activation).and_then(|entry| entry.occupant) else { continue };
        match action {
            DomainAction::Suspend => {
                kernel.objects.set_suspended(activation, true);
            }
            DomainAction::Resume => {
                kernel.objects.set_suspended(activation, false);
                restart_if_free(kernel, activation, thread);
            }
            DomainAction::Terminate => {
                if terminate_activation(kernel, activation, thread).is_err() {
                    continue;
                }
            }
        }
        acted += 1;
    }
    if action == DomainAction::Terminate {
        crate::domains::terminate(kernel, domain);
    }
    Ok(acted)
}

/// `DomainControl`: the kernel domain only.
pub fn domain_control_call(
    kernel: &mut Kernel,
    caller: DomainId,
    domain: usize,
    action: usize,
) -> Result<usize, Error> {
    if kernel.domain(caller).is_none_or(|record| record.mode != DomainMode::Merged) {
        return Err(Error::NoRight);
    }
    let domain = u16::try_from(domain).map(DomainId).map_err(|_| Error::InvalidArgument)?;
    let action = match action {
        0 => DomainAction::Suspend,
        1 => DomainAction::Resume,
        2 => DomainAction::Terminate,
        _ => return Err(Error::InvalidArgument),
    };
    domain_control(kernel, domain, action)
}

/// `Activations`: the domain itself or the kernel domain.
pub fn activations(kernel: &mut Kernel, caller: DomainId, domain: usize, buffer: UserRange) -> Result<usize, Error> {
    let domain = u16::try_from(domain).map(DomainId).map_err(|_| Error::InvalidArgument)?;
    let merged = kernel.domain(caller).is_some_and(|record| record.mode == DomainMode::Merged);
    if domain != caller && !merged {
        return Err(Error::NoRight);
    }
    kernel.domain(domain).ok_or(Error::InvalidArgument)?;
    let found = kernel.objects.occupied_in(domain);
    let fits = (buffer.length / 4).min(found.len());
    let checked = kernel
        .domain(caller)
        .ok_or(Error::BadAddress)?
        .domain
        .check_writable(UserRange::new(buffer.address, fits * 4))?;
    let local = crate::memory::kernel_address(kernel.arena, checked.address);
    // SAFETY: `checked` lies in the caller's region, writable, `fits`
    // 4-byte entries long; written through the kernel's alias.
    let out = unsafe { core::slice::from_raw_parts_mut(local as *mut u32, fits) };
    for (slot, activation) in out.iter_mut().zip(&found) {
        *slot = activation.get();
    }
    Ok(found.len())
}

/// `Sleep`: `ticks` of the counter, or until an alert.
pub fn sleep(ticks: usize) -> Result<usize, Error> {
    let until = crate::timer::counter().saturating_add(ticks as u64);
    state::with(|kernel| {
        let current = kernel.current;
        if let Some(entry) = kernel.objects.thread_mut(current) {
            entry.state = ThreadState::Sleeping(until);
        }
    });
    threads::block();
    if threads::take_interrupted() { Err(Error::Interrupted) } else { Ok(0) }
}

/// At a timer tick: wake the sleepers whose time has come.
pub fn wake_sleepers(kernel: &mut Kernel) {
    let now = crate::timer::counter();
    let due: Vec<ThreadId> = kernel
        .objects
        .thread_ids()
        .filter(|&id| matches!(kernel.objects.thread(id).map(|entry| entry.state), Some(ThreadState::Sleeping(until)) if until <= now))
        .collect();
    for thread in due {
        threads::wake(kernel, thread);
    }
}

/// The check on every way back into a domain (see the module's notes).
/// Returns when the thread may go on into its top activation from
/// `frame`; never returns if the thread ends. `call_boundary`: the way back
/// ends a kernel call (every caller-saved register, SIMD included, is the
/// kernel's to clobber), where an alert handler may be upcalled.
pub fn before_user(frame: &mut TrapFrame, call_boundary: bool) {
    enum Next {
        Go,
        Again(u64),
        Stop,
        End,
    }
    // The common case (not watched), read without taking the state.
    if !crate::fastpath::top_needs_check() {
        return;
    }
    loop {
        let next = state::with(|kernel| {
            let current = kernel.current;
            let Some(top) = kernel.objects.thread(current).map(|entry| entry.top) else { return Next::Go };
            let Some(top) = top else { return Next::End };
            let Some(control) = kernel.objects.activation(top).map(|entry| entry.control) else { return Next::End };
            if control.spliced {
                return unwind_spliced(kernel, frame, current, top).map_or(Next::End, Next::Again);
            }
            if call_boundary && deliver_alert(kernel, frame, top) {
                return Next::Go;
            }
            if control.stops() {
                if let Some(entry) = kernel.objects.thread_mut(current) {
                    entry.state = ThreadState::Suspended(top);
                    entry.at_boundary = true;
                    entry.frame = frame as *mut TrapFrame as u64;
                }
                for waiter in state_waiters(kernel, top, None) {
                    threads::wake(kernel, waiter);
                }
                return Next::Stop;
            }
            Next::Go
        });
        match next {
            Next::Go => return,
            Next::Again(view) => cpu::switch_view(view),
            Next::Stop => {
                threads::block();
                state::with(|kernel| {
                    let current = kernel.current;
                    if let Some(entry) = kernel.objects.thread_mut(current) {
                        entry.at_boundary = false;
                    }
                });
            }
            Next::End => threads::end_current_thread(usize::MAX),
        }
    }
}

/// The exception-style delivery: if an alert reached `top` (alerts open)
/// and it asked for a handler, take the alert and aim `frame` at the
/// handler, keeping the registers it would have gone back to. Only at a
/// kernel call's end (see [`before_user`]) and not inside a handler.
fn deliver_alert(kernel: &mut Kernel, frame: &mut TrapFrame, top: ActivationId) -> bool {
    let Some(entry) = kernel.objects.activation(top) else { return false };
    if entry.control.alert_handler == 0 || entry.alert_return.is_some() || !kernel.objects.take_alert(top) {
        return false;
    }
    let Some(entry) = kernel.objects.activation_mut(top) else { return false };
    let saved = rpc::save(frame);
    let handler = UserContext {
        pc: entry.control.alert_handler,
        // Below where it was, 16-byte aligned, leaving what it had.
        sp: (saved.sp - 256) & !15,
        pstate: saved.pstate,
        x: {
            let mut x = [0; 31];
            x[0] = top.get() as u64;
            x
        },
    };
    entry.alert_return = Some(alloc::boxed::Box::new(saved));
    load(frame, &handler);
    true
}

/// `AlertHandler`: on the caller's own activation.
pub fn alert_handler(kernel: &mut Kernel, entry: usize) -> Result<usize, Error> {
    if entry != 0 && !kernel.image.read_only.contains(entry as u64) {
        return Err(Error::BadAddress);
    }
    let top = kernel.objects.thread(kernel.current).and_then(|thread| thread.top).ok_or(Error::NotInCall)?;
    kernel.objects.set_alert_handler(top, entry as u64);
    Ok(0)
}

/// `AlertDone`: back to where the alert found the activation.
pub fn alert_done(frame: &mut TrapFrame) -> Result<(), Error> {
    state::with(|kernel| {
        let top = kernel.objects.thread(kernel.current).and_then(|thread| thread.top).ok_or(Error::NotInCall)?;
        let saved =
            kernel.objects.activation_mut(top).and_then(|entry| entry.alert_return.take()).ok_or(Error::NotInCall)?;
        load(frame, &saved);
        Ok(())
    })
}

/// Unwind spliced-out `top` of `thread`: off the chain, back to its pool;
/// its caller's registers into `frame` with `Terminated`. The view to
/// return in, or `None` if it had no caller (the thread ends).
fn unwind_spliced(kernel: &mut Kernel, frame: &mut TrapFrame, thread: ThreadId, top: ActivationId) -> Option<u64> {
    let (caller, domain) = kernel.objects.activation(top).map(|entry| (entry.caller, entry.domain))?;
    rpc::end_lend(kernel, top, domain);
    kernel.objects.pop(thread);
    retire(kernel, top);
    let caller = caller?;
    let saved: UserContext = kernel.objects.activation(caller).map(|entry| entry.saved)?;
    load(frame, &saved);
    write_result(frame, Err(Error::Terminated));
    Some(kernel.current_view())
}

/// Where `tern_resume_user` asks: a thread parked by a fast path whose top
/// activation is watched or gone.
#[unsafe(no_mangle)]
extern "C" fn tern_resume_check(frame: &mut TrapFrame) {
    // (A fast-parked thread resumes at the end of a kernel call.)
    before_user(frame, true);
}
