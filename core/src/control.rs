//! Activation control: the kernel calls on activations (alerts,
//! suspension, termination, CPU state, scheduling, accounting, domain-wide
//! control), the check every way back into a domain makes — the glue's
//! APC check of Ford & Lepreau §4.2 — and what a domain's fault does.
//!
//! The chain surgery is [`crate::chain`]'s; this module checks the
//! caller's rights, calls it, and does the rest: park and wake threads,
//! write error codes into frames, give a split-off thread a kernel stack,
//! unwind a spliced activation.
//!
//! **Rights.** An activation is named by its number; the right to control
//! it belongs to its own domain (a client controls its own threads'
//! activations, a server its own). Effects reach other domains only as the
//! model allows: an alert travels up the chain as a request, a termination
//! gives the domain's own caller control back while the server's part
//! carries on. Domain-wide control is the kernel domain's.
//!
//! **The check on the way back** ([`Kernel::way_back`]): a general-path
//! return to a domain (a kernel call's end, a preemption's end, a fault
//! that aborted a call), and a thread parked by a fast path whose top
//! activation is watched, come here. If the thread has no activation left
//! (its top was terminated while it was in the kernel for it) it ends; if
//! its top activation is spliced out, it is unwound and its caller gets
//! `Terminated`; if it is suspended or held for a state operation, the
//! thread stops there (state `Suspended`) until that is undone.

use crate::abi::{Error, STATE_BYTES};
use crate::domain::{DomainId, UserRange};
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::quota::Resource;
use crate::thread::{ActivationId, ThreadId, ThreadState, UserContext};
use alloc::boxed::Box;
use alloc::vec::Vec;

/// What [`Kernel::domain_control`] does to each occupied activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainAction {
    /// Suspend it.
    Suspend,
    /// Resume it.
    Resume,
    /// Terminate it (and then the domain).
    Terminate,
}

/// What the kernel's own code does to one activation
/// ([`Kernel::control_activation`]): the activation calls of the same
/// names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationAction {
    /// `Alert`.
    Alert,
    /// `AlertBreak`.
    AlertBreak,
    /// `Terminate` (its caller's call returns `Terminated`).
    Terminate,
    /// `Suspend`.
    Suspend,
    /// `Resume`.
    Resume,
}

/// What the way back into a domain does ([`Kernel::way_back`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WayBack {
    /// Go on into the top activation from the frame.
    Go,
    /// The thread stops here (its top activation is suspended or held):
    /// wait, then check again.
    Stop,
    /// The thread has no activation left: it ends.
    End,
}

/// A domain's fault, as handled ([`Kernel::fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The domain, now terminated.
    pub domain: DomainId,
    /// Its name.
    pub name: &'static str,
    /// True if the fault was in a server activation: the thread was
    /// unwound to the caller (whose call returns `CallAborted`), and goes
    /// on from the frame; false if it was in a thread's own activation,
    /// whose upcall ends.
    pub unwound: bool,
}

impl<M: Machine> Kernel<M> {
    /// The activation numbered `number`, which `caller` may control, and
    /// the thread it is on: `NoSuchActivation` for a number naming
    /// nothing or an unoccupied activation, `NoRight` for another domain's
    /// or for one on the boot thread (the kernel's own code runs below its
    /// activations: no domain may stop, cut or end it).
    pub fn resolve(&self, caller: DomainId, number: usize) -> Result<(ActivationId, ThreadId), Error> {
        let id = u32::try_from(number)
            .ok()
            .and_then(core::num::NonZeroU32::new)
            .map(ActivationId)
            .ok_or(Error::NoSuchActivation)?;
        let activation = self.objects.activation(id).ok_or(Error::NoSuchActivation)?;
        if activation.domain != caller {
            return Err(Error::NoRight);
        }
        let thread = activation.occupant.ok_or(Error::NoSuchActivation)?;
        if !self.machine.owns_stack(thread) {
            return Err(Error::NoRight);
        }
        Ok((id, thread))
    }

    /// End `thread`'s wait with `Interrupted`: out of whatever queue it
    /// waits in, its kernel call's result written, made ready. Only for a
    /// thread (not the current one) in an interruptible wait.
    fn interrupt(&mut self, thread: ThreadId) {
        let Some(state) = self.objects.thread(thread).map(|entry| entry.state) else { return };
        if thread == self.current() || !state.interruptible() {
            return;
        }
        match state {
            ThreadState::Receiving(port) => {
                self.objects.remove_receiver(port, thread);
                if let Some(entry) = self.objects.thread_mut(thread) {
                    entry.set_receive_buffer(None);
                }
                self.leave_port(thread);
            }
            ThreadState::WaitingForActivation(port) | ThreadState::WaitingForReceiver(port) => {
                if let Some(entry) = self.objects.port_mut(port) {
                    entry.forget_waiter(thread);
                }
                if let Some(entry) = self.objects.thread_mut(thread) {
                    entry.pending = None;
                    entry.set_reply_to(None);
                }
            }
            ThreadState::WaitingForState(activation) => self.release_hold(activation, thread),
            _ => {}
        }
        if let Some(frame) = self.blocked_frame(thread) {
            frame.set_result(Err(Error::Interrupted));
        }
        if let Some(entry) = self.objects.thread_mut(thread) {
            entry.interrupted = true;
        }
        self.wake(thread);
    }

    /// After an alert reached `thread`: if it waits in a blocking kernel
    /// call made by an activation that sees the alert (or by one that is
    /// gone), end the wait. The alert is taken by that `Interrupted`.
    fn honour_alert(&mut self, thread: ThreadId) {
        let forsaken = self
            .objects
            .thread(thread)
            .is_some_and(|entry| entry.top.is_none() && entry.state == ThreadState::WaitingForReply);
        if forsaken && thread != self.current() {
            self.forsake_reply(thread);
            return;
        }
        let waiting = self.objects.thread(thread).is_some_and(|entry| entry.state.interruptible());
        if !waiting || thread == self.current() {
            return;
        }
        match self.objects.thread(thread).and_then(|entry| entry.top) {
            Some(top) if self.objects.take_alert(top) => self.interrupt(thread),
            Some(_) => {}
            None => self.interrupt(thread),
        }
    }

    /// `client`, waiting for a server thread's reply, has lost the
    /// activation that made the call (terminated, or its domain died):
    /// nothing is left to take the reply. The server thread no longer
    /// serves it (its `ReplyReceive` is `NotInCall`, and the reply goes
    /// nowhere — not into a region that may have a new tenant by then),
    /// and the client is woken to end.
    fn forsake_reply(&mut self, client: ThreadId) {
        let servers = self.objects.threads_where(|entry| entry.serving == Some(client));
        for server in servers {
            if let Some(entry) = self.objects.thread_mut(server) {
                entry.serving = None;
            }
        }
        self.end_wait_for_reply(client, Error::Terminated);
    }

    /// Act on `activation` from the kernel's own code (the kernel domain
    /// controls every domain's activations), as the domain call of the
    /// same name would for the activation's own domain; what that call
    /// answers. `NoSuchActivation` for an unoccupied activation or none,
    /// `NoRight` for one on the boot thread (see [`Kernel::resolve`]).
    pub fn control_activation(&mut self, activation: ActivationId, action: ActivationAction) -> Result<usize, Error> {
        let domain = self.objects.activation(activation).ok_or(Error::NoSuchActivation)?.domain;
        let (activation, thread) = self.resolve(domain, activation.get() as usize)?;
        match action {
            ActivationAction::Alert => Ok(self.alert_at(activation, thread)),
            ActivationAction::AlertBreak => self.break_at(activation, thread),
            ActivationAction::Terminate => self.terminate_activation(activation, thread, Error::Terminated).map(|()| 0),
            ActivationAction::Suspend => Ok(self.objects.set_suspended(activation, true) as usize),
            ActivationAction::Resume => Ok(self.resume_at(activation, thread)),
        }
    }

    /// `Alert`.
    pub fn alert(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        Ok(Next::Reply(self.alert_at(activation, thread)))
    }

    /// Alert `activation`, on `thread`: how many activations it reached.
    fn alert_at(&mut self, activation: ActivationId, thread: ThreadId) -> usize {
        let reached = self.objects.alert(activation).len();
        self.honour_alert(thread);
        reached
    }

    /// `AlertsBlock`: on the caller's own activation.
    pub fn alerts_block(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let blocked = match frame.argument(0) {
            0 => false,
            1 => true,
            _ => return Err(Error::InvalidArgument),
        };
        Ok(Next::Reply(self.objects.set_alerts_blocked(caller.activation, blocked) as usize))
    }

    /// `TestAlert`: on the caller's own activation.
    pub fn test_alert(&mut self, caller: Caller, _: &mut M::Frame) -> KernelCall<M> {
        Ok(Next::Reply(self.objects.take_alert(caller.activation) as usize))
    }

    /// `ActivationSelf`: the caller's own activation.
    pub fn activation_self(&mut self, caller: Caller, _: &mut M::Frame) -> KernelCall<M> {
        Ok(Next::Reply(caller.activation.get() as usize))
    }

    /// `AlertBreak`.
    pub fn alert_break(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        self.break_at(activation, thread).map(Next::Reply)
    }

    /// Alert `activation`, on `thread`, and break its chain above it (see
    /// `Call::AlertBreak`): how many activations the alert reached.
    fn break_at(&mut self, activation: ActivationId, thread: ThreadId) -> Result<usize, Error> {
        let top = self.objects.thread(thread).and_then(|entry| entry.top);
        if top == Some(activation) {
            // Nothing above it to break off: an alert, which a blocking
            // call it is in honours.
            let reached = self.objects.alert(activation).len();
            self.honour_alert(thread);
            return Ok(reached);
        }
        if !self.machine.owns_stack(thread) {
            return Err(Error::Busy);
        }
        self.reap_detached();
        let creator = self.objects.thread(thread).map_or(DomainId(0), |entry| entry.creator);
        if !self.fits_quota(creator, Resource::Threads, 1) {
            return Err(Error::OverQuota);
        }
        // Checks done; the stack the lower part needs is taken first, so
        // that a split never lacks one.
        let stack = self.machine.take_stack().ok_or(Error::OutOfMemory)?;
        let reached = self.objects.alert(activation).len();
        self.objects.take_alert(activation);
        let Some((lower, _)) = self.objects.split(thread, activation) else {
            self.machine.return_stack(stack);
            return Err(Error::NoSuchActivation);
        };
        let _ = self.charge_domain(creator, Resource::Threads, 1);
        self.start_split(lower, Error::Interrupted, stack);
        self.honour_alert(thread);
        self.counts().splits += 1;
        Ok(reached)
    }

    /// Terminate `activation` (on `thread`): see `Call::Terminate`.
    pub(crate) fn terminate_activation(
        &mut self,
        activation: ActivationId,
        thread: ThreadId,
        error: Error,
    ) -> Result<(), Error> {
        if !self.machine.owns_stack(thread) {
            return Err(Error::Busy);
        }
        self.reap_detached();
        let has_caller = self.objects.activation(activation).is_some_and(|entry| entry.caller.is_some());
        let creator = self.objects.thread(thread).map_or(DomainId(0), |entry| entry.creator);
        if has_caller && !self.fits_quota(creator, Resource::Threads, 1) {
            return Err(Error::OverQuota);
        }
        let stack = if has_caller { Some(self.machine.take_stack().ok_or(Error::OutOfMemory)?) } else { None };
        if let Some(domain) = self.objects.activation(activation).map(|entry| entry.domain) {
            self.end_lend(activation, domain);
        }
        let Some(done) = self.objects.terminate(activation) else {
            if let Some(stack) = stack {
                self.machine.return_stack(stack);
            }
            return Err(Error::NoSuchActivation);
        };
        self.put_back(activation);
        match (done.lower, stack) {
            (Some(lower), Some(stack)) => {
                let _ = self.charge_domain(creator, Resource::Threads, 1);
                self.start_split(lower, error, stack);
                self.counts().splits += 1;
            }
            (_, Some(stack)) => self.machine.return_stack(stack),
            (_, None) => {}
        }
        // The part left on the thread: alerted (or with nothing left, to end).
        let stopped = self.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation));
        if stopped {
            self.wake(thread);
        }
        self.honour_alert(thread);
        Ok(())
    }

    /// `Terminate`.
    pub fn terminate(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        self.terminate_activation(activation, thread, Error::Terminated).map(|()| Next::Reply(0))
    }

    /// `SpliceOut`.
    pub fn splice_out(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        self.objects.splice(activation);
        if self.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation)) {
            self.wake(thread);
        }
        self.honour_alert(thread);
        Ok(Next::Reply(0))
    }

    /// `Suspend`.
    pub fn suspend(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, _) = self.resolve(caller.domain, frame.argument(0))?;
        Ok(Next::Reply(self.objects.set_suspended(activation, true) as usize))
    }

    /// `Resume`.
    pub fn resume(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        Ok(Next::Reply(self.resume_at(activation, thread)))
    }

    /// Resume `activation`, on `thread`: whether it was suspended.
    fn resume_at(&mut self, activation: ActivationId, thread: ThreadId) -> usize {
        let was = self.objects.set_suspended(activation, false);
        self.restart_if_free(activation, thread);
        was as usize
    }

    /// Let `thread`, stopped in `activation`, run on if nothing stops it
    /// there any more.
    fn restart_if_free(&mut self, activation: ActivationId, thread: ThreadId) {
        let stops = self.objects.activation(activation).is_some_and(|entry| entry.control.stops());
        let stopped = self.objects.thread(thread).map(|entry| entry.state) == Some(ThreadState::Suspended(activation));
        if stopped && !stops {
            self.wake(thread);
        }
    }

    /// The threads waiting to read or write `activation`'s state, but for
    /// `except`.
    fn state_waiters(&self, activation: ActivationId, except: Option<ThreadId>) -> Vec<ThreadId> {
        self.objects
            .threads_where(|entry| Some(entry.id) != except && entry.state == ThreadState::WaitingForState(activation))
    }

    /// `waiter` is done with (or gave up on) its hold on `activation`: the
    /// last waiter lets the thread go on.
    fn release_hold(&mut self, activation: ActivationId, waiter: ThreadId) {
        if self.state_waiters(activation, Some(waiter)).is_empty() {
            self.objects.set_held(activation, false);
            if let Some(thread) = self.objects.activation(activation).and_then(|entry| entry.occupant) {
                self.restart_if_free(activation, thread);
            }
        }
    }

    /// `GetState`.
    pub fn get_state(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        self.state(caller, frame, false)
    }

    /// `SetState`.
    pub fn set_state(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        self.state(caller, frame, true)
    }

    /// `GetState` (`write` false) and `SetState` (`write` true): once the
    /// thread is stopped at a user boundary in the activation, copy its
    /// registers out of (or into) the caller's buffer; until then, hold it
    /// there and wait.
    fn state(&mut self, caller: Caller, frame: &mut M::Frame, write: bool) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        let buffer = UserRange::new(frame.argument(1), frame.argument(2));
        if thread == caller.thread {
            // Its own thread: it would wait for itself.
            return Err(Error::InvalidArgument);
        }
        if buffer.length < STATE_BYTES {
            return Err(Error::InvalidArgument);
        }
        let record = self.domain(caller.domain).ok_or(Error::BadAddress)?;
        let claim = UserRange::new(buffer.address, STATE_BYTES);
        let checked = if write {
            record.domain.check_readable(&self.image, claim)?
        } else {
            record.domain.check_writable(claim)?
        };
        let there = self.objects.thread(thread).is_some_and(|entry| entry.top == Some(activation) && entry.at_boundary);
        if !there {
            self.objects.set_held(activation, true);
            if let Some(entry) = self.objects.thread_mut(caller.thread) {
                entry.state = ThreadState::WaitingForState(activation);
            }
            return Ok(Next::BlockThenRepeat);
        }
        let mut bytes = [0u8; STATE_BYTES];
        if write {
            self.machine.read(checked.address, &mut bytes);
        }
        let frame = self.blocked_frame(thread).ok_or(Error::Busy)?;
        let mut context = frame.context();
        if write {
            let word = |index: usize| {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
                u64::from_le_bytes(word)
            };
            for (index, register) in context.x.iter_mut().enumerate() {
                *register = word(index);
            }
            context.sp = word(31);
            context.pc = word(32);
            // Only the condition flags: the mode, masks and the rest stay
            // the kernel's.
            const NZCV: u64 = 0xf000_0000;
            context.pstate = (context.pstate & !NZCV) | (word(33) & NZCV);
            frame.set_context(&context);
        } else {
            let tail = [context.sp, context.pc, context.pstate];
            let words = context.x.iter().chain(&tail);
            for (index, word) in words.enumerate() {
                bytes[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
            }
            self.machine.write(checked.address, &bytes);
        }
        self.release_hold(activation, caller.thread);
        Ok(Next::Reply(STATE_BYTES))
    }

    /// `SetPriority`.
    pub fn set_priority(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, thread) = self.resolve(caller.domain, frame.argument(0))?;
        let priority = frame.argument(1);
        if priority > 31 {
            return Err(Error::InvalidArgument);
        }
        if !self.objects.may_schedule(activation) {
            return Err(Error::Forbidden);
        }
        let entry = self.objects.thread_mut(thread).ok_or(Error::NoSuchActivation)?;
        let old = entry.priority;
        entry.priority = priority as u8;
        let ready = entry.state == ThreadState::Ready;
        if ready && self.run_queue.remove(thread) {
            self.run_queue.push(thread, priority as u8);
        }
        Ok(Next::Reply(old as usize))
    }

    /// `ForbidAbove`.
    pub fn forbid_above(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (activation, _) = self.resolve(caller.domain, frame.argument(0))?;
        self.objects.forbid_above(activation);
        Ok(Next::Reply(0))
    }

    /// `ThreadInfo`: priority, CPU ticks, then (domain, ticks) pairs, as
    /// many words as fit the buffer.
    pub fn thread_info(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (_, thread) = self.resolve(caller.domain, frame.argument(0))?;
        let buffer = UserRange::new(frame.argument(1), frame.argument(2));
        self.charge();
        let entry = self.objects.thread(thread).ok_or(Error::NoSuchActivation)?;
        let mut words: Vec<u64> = alloc::vec![entry.priority as u64, entry.cpu_time];
        for &(domain, ticks) in &entry.by_domain {
            words.extend([domain.0 as u64, ticks]);
        }
        let fits = (buffer.length / 8).min(words.len());
        let bytes: Vec<u8> = words[..fits].iter().flat_map(|word| word.to_le_bytes()).collect();
        self.copy_out(caller.domain, buffer.address, &bytes)?;
        Ok(Next::Reply(fits))
    }

    /// Act on every occupied activation of `domain`; how many.
    pub fn domain_control(&mut self, domain: DomainId, action: DomainAction) -> Result<usize, Error> {
        self.domain(domain).ok_or(Error::InvalidArgument)?;
        if action == DomainAction::Terminate {
            return Ok(self.terminate_domain(domain));
        }
        let occupied = self.objects.occupied_in(domain);
        let mut acted = 0;
        for activation in occupied {
            let Some(thread) = self.objects.activation(activation).and_then(|entry| entry.occupant) else { continue };
            match action {
                DomainAction::Suspend => {
                    self.objects.set_suspended(activation, true);
                }
                DomainAction::Resume => {
                    self.objects.set_suspended(activation, false);
                    self.restart_if_free(activation, thread);
                }
                DomainAction::Terminate => {}
            }
            acted += 1;
        }
        Ok(acted)
    }

    /// `DomainControl`: the kernel domain only.
    pub fn domain_control_call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        if !self.is_kernel_domain(caller.domain) {
            return Err(Error::NoRight);
        }
        let domain = u16::try_from(frame.argument(0)).map(DomainId).map_err(|_| Error::InvalidArgument)?;
        let action = match frame.argument(1) {
            0 => DomainAction::Suspend,
            1 => DomainAction::Resume,
            2 => DomainAction::Terminate,
            _ => return Err(Error::InvalidArgument),
        };
        self.domain_control(domain, action).map(Next::Reply)
    }

    /// `Activations`: the domain itself or the kernel domain.
    pub fn activations(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let domain = u16::try_from(frame.argument(0)).map(DomainId).map_err(|_| Error::InvalidArgument)?;
        let buffer = UserRange::new(frame.argument(1), frame.argument(2));
        if domain != caller.domain && !self.is_kernel_domain(caller.domain) {
            return Err(Error::NoRight);
        }
        self.domain(domain).ok_or(Error::InvalidArgument)?;
        let found = self.objects.occupied_in(domain);
        let fits = (buffer.length / 4).min(found.len());
        let bytes: Vec<u8> = found[..fits].iter().flat_map(|activation| activation.get().to_le_bytes()).collect();
        self.copy_out(caller.domain, buffer.address, &bytes)?;
        Ok(Next::Reply(found.len()))
    }

    /// `AlertHandler`: on the caller's own activation.
    pub fn alert_handler(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let entry = frame.argument(0);
        if entry != 0 && !self.image.read_only.contains(entry as u64) {
            return Err(Error::BadAddress);
        }
        self.objects.set_alert_handler(caller.activation, entry as u64);
        Ok(Next::Reply(0))
    }

    /// `AlertDone`: back to where the alert found the activation.
    pub fn alert_done(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let saved = self
            .objects
            .activation_mut(caller.activation)
            .and_then(|entry| entry.alert_return.take())
            .ok_or(Error::NotInCall)?;
        frame.set_context(&saved);
        Ok(Next::Resume)
    }

    /// The check on every way back into a domain (see the module's notes),
    /// for the current thread going back from `frame`. `call_boundary`:
    /// the way back ends a kernel call (every caller-saved register, SIMD
    /// included, is the kernel's to clobber), where an alert handler may
    /// be upcalled.
    pub fn way_back(&mut self, frame: &mut M::Frame, call_boundary: bool) -> WayBack {
        loop {
            let current = self.current();
            let Some(top) = self.objects.thread(current).map(|entry| entry.top) else { return WayBack::Go };
            let Some(top) = top else { return WayBack::End };
            let Some(control) = self.objects.activation(top).map(|entry| entry.control) else { return WayBack::End };
            if control.spliced {
                if !self.unwind_spliced(frame, current, top) {
                    return WayBack::End;
                }
                continue;
            }
            if call_boundary && self.deliver_alert(frame, top) {
                return WayBack::Go;
            }
            if control.stops() {
                self.register_frame(frame);
                if let Some(entry) = self.objects.thread_mut(current) {
                    entry.state = ThreadState::Suspended(top);
                    entry.at_boundary = true;
                }
                for waiter in self.state_waiters(top, None) {
                    self.wake(waiter);
                }
                return WayBack::Stop;
            }
            return WayBack::Go;
        }
    }

    /// The current thread, stopped by [`Kernel::way_back`], runs again.
    pub fn leave_stop(&mut self) {
        let current = self.current();
        if let Some(entry) = self.objects.thread_mut(current) {
            entry.at_boundary = false;
        }
    }

    /// The exception-style delivery: if an alert reached `top` (alerts
    /// open) and it asked for a handler, take the alert and aim `frame` at
    /// the handler, keeping the registers it would have gone back to. Only
    /// at a kernel call's end and not inside a handler.
    fn deliver_alert(&mut self, frame: &mut M::Frame, top: ActivationId) -> bool {
        let Some(entry) = self.objects.activation(top) else { return false };
        if entry.control.alert_handler == 0 || entry.alert_return.is_some() || !self.objects.take_alert(top) {
            return false;
        }
        let Some(entry) = self.objects.activation_mut(top) else { return false };
        let saved = frame.context();
        let mut handler = UserContext {
            pc: entry.control.alert_handler,
            // Below where it was, 16-byte aligned, leaving what it had. The
            // stack pointer is the domain's to keep: one too low wraps, and
            // the handler faults in its own domain, which is contained.
            sp: saved.sp.wrapping_sub(256) & !15,
            pstate: saved.pstate,
            x: [0; 31],
        };
        handler.x[0] = top.get() as u64;
        entry.alert_return = Some(Box::new(saved));
        frame.set_context(&handler);
        true
    }

    /// Unwind spliced-out `top` of `thread`: off the chain, back to its
    /// pool; its caller's registers into `frame` with `Terminated`, in its
    /// view. False if it had no caller (the thread ends).
    fn unwind_spliced(&mut self, frame: &mut M::Frame, thread: ThreadId, top: ActivationId) -> bool {
        let Some((caller, domain)) = self.objects.activation(top).map(|entry| (entry.caller, entry.domain)) else {
            return false;
        };
        self.end_lend(top, domain);
        self.objects.pop(thread);
        self.put_back(top);
        let Some(saved) = caller.and_then(|caller| self.objects.activation(caller)).map(|entry| entry.saved) else {
            return false;
        };
        frame.set_context(&saved);
        frame.set_result(Err(Error::Terminated));
        let view = self.current_view();
        self.machine.switch_view(view);
        true
    }

    /// The current thread's domain code faulted (anything but a kernel
    /// call), with its registers in `frame`: the domain is terminated; a
    /// fault in a server activation unwinds the thread to its caller,
    /// whose call returns `CallAborted`. `None` for a thread with no
    /// activation (the machine's bug, not a domain's).
    pub fn fault(&mut self, frame: &mut M::Frame) -> Option<Fault> {
        let domain = self.current_domain()?;
        let name = self.domain(domain).map_or("?", |record| record.domain.name);
        self.kill_domain(domain, true);
        let unwound = self.abort_call(frame);
        if unwound {
            let view = self.current_view();
            self.machine.switch_view(view);
        } else {
            let current = self.current();
            if let Some(thread) = self.objects.thread_mut(current) {
                thread.faulted = true;
            }
        }
        Some(Fault { domain, name, unwound })
    }
}
