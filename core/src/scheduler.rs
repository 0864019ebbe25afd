//! Threads on the processor: charging, waking, choosing what runs, making
//! and ending threads, and the waits a thread can be in.
//!
//! A thread is based in the kernel (Ford & Lepreau §4.1): it begins on a
//! kernel stack of its own and makes an upcall into its first activation
//! ([`Kernel::thread_start`] says where); when that upcall ends, the thread
//! ends ([`Kernel::end_current_thread`]).
//!
//! The policy is a priority run queue with round robin among equals: the
//! timer lets an equal or more urgent ready thread take the processor from
//! a domain's code ([`Kernel::yield_now`]). A thread waits by setting its
//! state; the machine then asks [`Kernel::run_next`] what to run instead,
//! idling while nothing is ready. Waking puts a thread on the run queue —
//! or, on the RPC paths, hands it the processor directly: the switch is
//! decided here ([`Kernel::prepare_switch`]) under the kernel state and
//! carried out by the machine after it is released.
//!
//! CPU time is charged to the running thread at every switch and timer
//! tick, in the column of the domain its top activation belongs to
//! (accounting follows the thread across domains, and can be broken down
//! per domain).

use crate::abi::Error;
use crate::domain::DomainId;
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, Start, UpcallTarget, UserFrame};
use crate::quota::Resource;
use crate::thread::{ActivationId, ThreadId, ThreadState};
use alloc::vec::Vec;

/// What the processor should do about a waiting thread.
#[derive(Debug, PartialEq, Eq)]
pub enum RunNext<S> {
    /// Carry out this switch.
    Switch(S),
    /// The current thread runs on (it is no longer waiting).
    Continue,
    /// Nothing is ready: idle until an interrupt, then ask again.
    Idle,
}

impl<M: Machine> Kernel<M> {
    /// Charge the counter ticks since the last charge to the current
    /// thread, as spent in the domain of its top activation.
    pub fn charge(&mut self) {
        let now = self.machine.counter();
        let cpu = self.machine.cpu_mut();
        let elapsed = now.wrapping_sub(cpu.charged_at);
        cpu.charged_at = now;
        let current = cpu.current;
        let domain = self.current_domain();
        if let Some(thread) = self.objects.thread_mut(current) {
            thread.charge(elapsed, domain);
        }
    }

    /// Make `thread` ready.
    pub fn wake(&mut self, thread: ThreadId) {
        let Some(entry) = self.objects.thread_mut(thread) else { return };
        entry.state = ThreadState::Ready;
        let priority = entry.priority;
        self.run_queue.push(thread, priority);
    }

    /// Decide a switch from the current thread to `next` (already off the
    /// run queue, if it was on it; the caller has set the current thread's
    /// state): charge the time, make `next` current and running. `None`
    /// if `next` is the current thread.
    pub fn prepare_switch(&mut self, next: ThreadId) -> Option<M::Switch> {
        let current = self.current();
        if let Some(thread) = self.objects.thread_mut(next) {
            thread.state = ThreadState::Running;
        }
        if current == next {
            return None;
        }
        self.charge();
        self.machine.cpu_mut().current = next;
        let view = self.current_view();
        Some(self.machine.switch(current, next, view))
    }

    /// The current thread begins to wait: an alert that ends this wait
    /// (and only this one) will say so through [`Kernel::take_interrupted`].
    pub fn begin_wait(&mut self) {
        let current = self.current();
        if let Some(thread) = self.objects.thread_mut(current) {
            thread.interrupted = false;
        }
    }

    /// The current thread waits (or has just been woken): what the
    /// processor does next.
    pub fn run_next(&mut self) -> RunNext<M::Switch> {
        if let Some((next, _)) = self.run_queue.pop() {
            return match self.prepare_switch(next) {
                Some(switch) => RunNext::Switch(switch),
                None => RunNext::Continue,
            };
        }
        let current = self.current();
        let waiting = self.objects.thread(current).is_some_and(|thread| thread.state != ThreadState::Running);
        if waiting { RunNext::Idle } else { RunNext::Continue }
    }

    /// Whether an alert ended the current thread's last wait (taking the
    /// news).
    pub fn take_interrupted(&mut self) -> bool {
        let current = self.current();
        self.objects.thread_mut(current).is_some_and(|thread| core::mem::take(&mut thread.interrupted))
    }

    /// Let an equal or more urgent ready thread run: the switch to it, if
    /// there is one (the current thread goes on the run queue).
    pub fn yield_now(&mut self) -> Option<M::Switch> {
        let current = self.current();
        let priority = self.objects.thread(current).map_or(0, |thread| thread.priority);
        if self.run_queue.highest().is_none_or(|highest| highest < priority) {
            return None;
        }
        self.wake(current);
        let (next, _) = self.run_queue.pop()?;
        self.prepare_switch(next)
    }

    /// At a timer tick: charge the running thread, and wake the sleepers
    /// whose time has come.
    pub fn tick(&mut self) {
        self.charge();
        let now = self.machine.counter();
        let due =
            self.objects.threads_where(|entry| matches!(entry.state, ThreadState::Sleeping(until) if until <= now));
        for thread in due {
            self.wake(thread);
        }
    }

    /// The current thread is parked at a user boundary (`at`: its frame
    /// holds its top activation's complete registers and nothing in the
    /// kernel will change them before it runs: a state operation may read
    /// or write them), or leaves it.
    pub fn set_boundary(&mut self, frame: &mut M::Frame, at: bool) {
        self.register_frame(frame);
        let current = self.current();
        if let Some(thread) = self.objects.thread_mut(current) {
            thread.at_boundary = at;
        }
    }

    /// Create a thread that will upcall `entry(argument)` through the
    /// gate's trampoline in `domain`, on a new stack of `stack_bytes`
    /// carved from the domain's region, at `priority`. It is made ready.
    /// `None` if there is no memory for its stacks.
    pub fn create_thread(
        &mut self,
        domain: DomainId,
        entry: usize,
        argument: usize,
        priority: u8,
        stack_bytes: u64,
    ) -> Option<ThreadId> {
        // Both stacks, or neither: the user stack is checked, the kernel
        // stack (which may have to be made) taken, and only then is the
        // user stack carved.
        self.reap_detached();
        let creator = self.current_domain().unwrap_or(DomainId(0));
        // A terminated domain runs no more code: no thread is made in it
        // (its slot may be reused once nothing of it is left).
        let alive = self.domain(domain).is_some_and(|record| record.alive);
        if !alive || !self.stacks_fit(domain, 1, stack_bytes) || !self.fits_quota(creator, Resource::Threads, 1) {
            return None;
        }
        let kernel_stack = self.machine.take_stack()?;
        let user_stack = self.carve_stack(domain, stack_bytes)?;
        let _ = self.charge_domain(creator, Resource::Threads, 1);
        let thread = self.objects.new_thread(priority, creator);
        let trampoline = self.servers.upcall_entry;
        let activation = self.new_activation(domain, None, trampoline, user_stack, stack_bytes);
        self.objects.push(thread, activation);
        if let Some(first) = self.objects.activation_mut(activation) {
            // The first upcall's registers: x0 = argument, x1 = entry.
            first.saved.x[0] = argument as u64;
            first.saved.x[1] = entry as u64;
        }
        self.start_on(thread, kernel_stack);
        Some(thread)
    }

    /// Give `thread` its kernel side on `stack` and make it ready.
    fn start_on(&mut self, thread: ThreadId, stack: M::Stack) {
        let context = self.machine.start_thread(thread, stack);
        if let Some(entry) = self.objects.thread_mut(thread) {
            entry.kernel_context = context;
        }
        self.wake(thread);
    }

    /// Start domain `domain`: a new thread (at the current thread's
    /// priority, made by the kernel) whose first activation upcalls the
    /// domain's registered entry with `argument` on the domain's main
    /// stack. The kernel starts domains this way, never on its own boot
    /// thread, whose activations no domain may then reach. The main stack
    /// serves one such start at a time: the kernel waits for each.
    pub fn start_domain(&mut self, domain: DomainId, argument: usize) -> Result<ThreadId, crate::domains::DomainError> {
        let (entry, stack) = self.domain_entry(domain)?;
        let kernel_stack = self.machine.take_stack().ok_or(crate::domains::DomainError::OutOfMemory)?;
        if let Some(record) = self.domain_mut(domain) {
            record.start_argument = argument;
        }
        let priority = self.objects.thread(self.current()).map_or(0, |thread| thread.priority);
        let thread = self.objects.new_thread(priority, DomainId(0));
        let trampoline = self.servers.upcall_entry;
        let activation = self.new_activation(domain, None, trampoline, stack, crate::domains::MAIN_STACK);
        self.objects.push(thread, activation);
        if let Some(first) = self.objects.activation_mut(activation) {
            first.saved.x[0] = argument as u64;
            first.saved.x[1] = entry as u64;
        }
        self.start_on(thread, kernel_stack);
        Ok(thread)
    }

    /// Forget `thread`, which has ended and been joined: its record and
    /// its kernel side go (its number may be reused). False, with nothing
    /// done, for a thread that has not ended.
    pub fn reap(&mut self, thread: ThreadId) -> bool {
        if !matches!(self.objects.thread(thread).map(|entry| entry.state), Some(ThreadState::Ended(_))) {
            return false;
        }
        if let Some(ended) = self.objects.remove_thread(thread) {
            self.release_domain(ended.creator, Resource::Threads, 1);
        }
        // Its number may be reused: it must not be reaped a second time.
        self.detached_ended.retain(|&listed| listed != thread);
        self.machine.forget_thread(thread);
        true
    }

    /// An activation a thread has left (on its way out of a call, or as
    /// the thread ends or is cut): a pool activation goes back to its pool
    /// and a thread waiting for one may have it — unless its port has been
    /// destroyed, when it goes (and the port with its last activation); a
    /// thread's own activation goes. A port's sidetrack activation stays
    /// reserved for it.
    pub fn put_back(&mut self, activation: ActivationId) {
        let Some(entry) = self.objects.activation(activation) else { return };
        let activation_domain = entry.domain;
        let Some(port) = entry.port else {
            self.objects.remove_activation(activation);
            return;
        };
        // Back to a live port's pool — unless its domain has died (the port
        // kept for a restarted instance: the activation goes).
        if self.objects.port(port).is_some_and(|entry| entry.alive && entry.owner == activation_domain) {
            if self.objects.pool_return(activation)
                && let Some(waiter) = self.objects.port_mut(port).and_then(|entry| entry.next_waiter())
            {
                self.wake(waiter);
            }
            return;
        }
        self.remove_port_activation(port, activation);
    }

    /// Forget `activation` of `port` (a destroyed one), charging its owner
    /// back; the port goes with its last activation.
    pub fn remove_port_activation(&mut self, port: crate::capability::PortId, activation: ActivationId) {
        let Some(removed) = self.objects.remove_activation(activation) else { return };
        // The domain that made it paid for it (a restarted port's owner
        // is not its predecessor).
        self.release_domain(removed.domain, Resource::Activations, 1);
        let Some(entry) = self.objects.port_mut(port) else { return };
        entry.pool_size = entry.pool_size.saturating_sub(1);
        let (owner, left, alive) = (entry.owner, entry.pool_size, entry.alive);
        if !alive && left == 0 {
            self.forget_port(port);
            self.release_domain(owner, Resource::Ports, 1);
        }
    }

    /// Start `lower`, a thread split off below a terminated (or broken
    /// off) activation (see `chain`): on `stack` (taken before the split,
    /// so that a split never lacks one), it resumes its top activation's
    /// saved registers with `error` as the result of the call that
    /// activation made.
    pub fn start_split(&mut self, lower: ThreadId, error: Error, stack: M::Stack) {
        if let Some(thread) = self.objects.thread_mut(lower) {
            thread.resume_with = error as usize;
        }
        self.follow_base(lower);
        self.start_on(lower, stack);
    }

    /// `lower`, just split off, carries the base activation of the thread
    /// above it, if it does (see `Objects::split`): what belongs to the
    /// base goes with it — the start of a restarted domain (whose end,
    /// the base's, is the start's end: `start_ended`) and, as nobody
    /// joins that thread, its being forgotten once it ends.
    fn follow_base(&mut self, lower: ThreadId) {
        let upper = self
            .objects
            .thread_ids()
            .find(|&id| self.objects.thread(id).is_some_and(|entry| entry.base_moved_to == Some(lower)));
        let Some(upper) = upper else { return };
        if self.objects.thread(upper).is_some_and(|entry| entry.detached)
            && let Some(entry) = self.objects.thread_mut(lower)
        {
            entry.detached = true;
        }
        for record in self.domains.iter_mut().filter(|record| record.starter == Some(upper)) {
            record.starter = Some(lower);
        }
    }

    /// How the current thread, running for the first time, begins: an
    /// upcall into its first activation, or (split off below a terminated
    /// activation) a return into its top one with the error. `None` if it
    /// has no activation (it then ends at once).
    pub fn thread_start(&self) -> Option<Start> {
        let thread = self.objects.thread(self.current())?;
        let activation = self.objects.activation(thread.top?)?;
        if thread.resume_with == 0 {
            return Some(Start::Upcall(UpcallTarget {
                view: activation.view,
                entry: activation.entry,
                stack: activation.stack_top,
                arguments: [activation.saved.x[0], activation.saved.x[1]],
                state: activation.entry_pstate,
            }));
        }
        let mut registers = activation.saved;
        registers.x[0] = thread.resume_with as u64;
        registers.x[1] = 0;
        let target = UpcallTarget {
            view: activation.view,
            entry: registers.pc,
            stack: registers.sp,
            arguments: [0, 0],
            state: if registers.pstate == 0 { activation.entry_pstate } else { registers.pstate },
        };
        Some(Start::Resume(target, alloc::boxed::Box::new(registers)))
    }

    /// End the current thread with `result`: its activations leave their
    /// chain (a segment split off a thread may end above a cut: its
    /// activations go back to their pools), its joiners wake, and its
    /// kernel stack goes to the machine for reuse. The machine then never
    /// runs it again.
    pub fn end_current_thread(&mut self, result: usize) {
        let current = self.current();
        self.abandon_client(current, Error::CallAborted);
        self.leave_port(current);
        while let Some(activation) = self.objects.pop(current) {
            self.put_back(activation);
        }
        self.machine.thread_ended(current);
        if let Some(thread) = self.objects.thread_mut(current) {
            thread.state = ThreadState::Ended(result);
        }
        self.start_ended(current);
        // A thread split off (one whose base was carried on by another,
        // split off from it) is known only through the thread before it in
        // the chain a join follows: past its end it is a link, which is
        // cut short (the one before points past it) and it is forgotten.
        // So repeated splits keep one record, not one a split.
        // (Every thread naming it points past it, and it names nobody any
        // more: a link kept by a part cut out could be taken for the live
        // one when the next part ends, and the live one, naming a part then
        // forgotten, lost.)
        let moved_to = self.objects.thread(current).and_then(|thread| thread.base_moved_to);
        if let Some(next) = moved_to {
            let before = self.objects.threads_where(|thread| thread.base_moved_to == Some(current));
            if !before.is_empty() {
                for id in before {
                    if let Some(thread) = self.objects.thread_mut(id) {
                        thread.base_moved_to = Some(next);
                    }
                }
                if let Some(thread) = self.objects.thread_mut(current) {
                    thread.detached = true;
                    thread.base_moved_to = None;
                }
            }
        }
        // A thread split off that never carried the base (it was cut from
        // a part above an earlier split) is on no join's chain at all: it
        // is forgotten too.
        let unreachable = self.objects.thread(current).is_some_and(|thread| thread.split_off)
            && moved_to.is_none()
            && !self
                .objects
                .thread_ids()
                .any(|id| self.objects.thread(id).is_some_and(|thread| thread.base_moved_to == Some(current)));
        if unreachable && let Some(thread) = self.objects.thread_mut(current) {
            thread.detached = true;
        }
        if self.objects.thread(current).is_some_and(|thread| thread.detached) {
            self.detached_ended.push(current);
        }
        let joiners = self.objects.threads_where(|thread| thread.state == ThreadState::Joining(current));
        for joiner in joiners {
            self.wake(joiner);
        }
    }

    /// Server thread `server` will never reply to the client it serves (it
    /// ends, or its domain does): the client's call returns `error`
    /// (`CallAborted`, or `Restarted`: see `Kernel::kill_domain`).
    pub fn abandon_client(&mut self, server: ThreadId, error: Error) {
        let Some(client) = self.objects.thread_mut(server).and_then(|entry| entry.serving.take()) else { return };
        if self.objects.thread(client).is_none_or(|entry| entry.state != ThreadState::WaitingForReply) {
            return;
        }
        self.end_wait_for_reply(client, error);
    }

    /// `client`'s call, waiting for a server thread's reply that will not
    /// come, returns `error`: no reply is expected any more, and it wakes.
    pub(crate) fn end_wait_for_reply(&mut self, client: ThreadId, error: Error) {
        if let Some(frame) = self.blocked_frame(client) {
            frame.set_result(Err(error));
        }
        if let Some(entry) = self.objects.thread_mut(client) {
            entry.set_reply_to(None);
        }
        self.wake(client);
    }

    /// Server thread `thread` no longer serves the port it received on
    /// (an alert ended its receive, or it ended): it is no longer counted
    /// among the port's server threads. When the last one leaves, clients
    /// queued for a server thread would wait for ever: each makes its call
    /// again (and now waits for an activation, or finds the port dead).
    pub fn leave_port(&mut self, thread: ThreadId) {
        let Some(port) = self.objects.thread_mut(thread).and_then(|entry| entry.serves.take()) else { return };
        let Some(entry) = self.objects.port_mut(port) else { return };
        entry.server_threads = entry.server_threads.saturating_sub(1);
        if entry.server_threads == 0 {
            self.requeue_senders(port);
        }
    }

    /// Clients queued on `port` for a server thread, of which there is
    /// none now, make their calls again.
    pub fn requeue_senders(&mut self, port: crate::capability::PortId) {
        let Some(entry) = self.objects.port_mut(port) else { return };
        let mut queued = Vec::new();
        while let Some(client) = entry.next_sender() {
            queued.push(client);
        }
        for client in queued {
            if let Some(frame) = self.blocked_frame(client) {
                frame.repeat_call();
            }
            if let Some(entry) = self.objects.thread_mut(client) {
                entry.pending = None;
                entry.set_reply_to(None);
            }
            self.wake(client);
        }
    }

    /// `ThreadJoin`: wait for `thread` (made by the caller's domain, not
    /// the caller's own) to end; its result.
    pub fn join(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let thread = u32::try_from(frame.argument(0)).ok().and_then(ThreadId::new).ok_or(Error::InvalidArgument)?;
        let allowed =
            caller.thread != thread && self.objects.thread(thread).is_some_and(|entry| entry.creator == caller.domain);
        if !allowed {
            return Err(Error::InvalidArgument);
        }
        match self.join_thread(thread)? {
            Some(result) => {
                self.reap_joined(thread);
                Ok(Next::Reply(result))
            }
            None => Ok(Next::BlockThenRepeat),
        }
    }

    /// `thread` has been joined: it, and the thread its base moved to
    /// after a split (whose end the join waited for), are gone.
    pub fn reap_joined(&mut self, thread: ThreadId) {
        let mut next = Some(thread);
        while let Some(id) = next {
            next = self.objects.thread(id).and_then(|entry| entry.base_moved_to);
            if !self.reap(id) {
                // Its own part has not ended yet: nobody will join it again,
                // so it is forgotten when it ends.
                if let Some(entry) = self.objects.thread_mut(id) {
                    entry.detached = true;
                }
            }
        }
    }

    /// `thread`'s result if it has ended — following its base activation
    /// to the thread that carries it since a split — or else the current
    /// thread waits for it (`None`). `InvalidArgument` if there is no such
    /// thread.
    pub fn join_thread(&mut self, thread: ThreadId) -> Result<Option<usize>, Error> {
        let mut target = thread;
        while let Some(next) = self.objects.thread(target).ok_or(Error::InvalidArgument)?.base_moved_to {
            target = next;
        }
        if let ThreadState::Ended(result) = self.objects.thread(target).ok_or(Error::InvalidArgument)?.state {
            return Ok(Some(result));
        }
        let current = self.current();
        if let Some(entry) = self.objects.thread_mut(current) {
            entry.state = ThreadState::Joining(target);
        }
        Ok(None)
    }

    /// `Sleep`: `ticks` of the counter, or until an alert.
    pub fn sleep(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let until = self.machine.counter().saturating_add(frame.argument(0) as u64);
        if let Some(entry) = self.objects.thread_mut(caller.thread) {
            entry.state = ThreadState::Sleeping(until);
        }
        // The answer unless an alert ends the sleep (which writes its own).
        frame.set_result(Ok(0));
        Ok(Next::Block)
    }

    /// Upcall into `domain` at `entry(argument)` on the current thread, in
    /// a new activation on `stack` pushed on the thread's chain: the
    /// activation and where to enter. Ended by [`Kernel::leave_domain`].
    pub fn enter_domain(
        &mut self,
        domain: DomainId,
        stack: u64,
        argument: usize,
        entry: usize,
    ) -> Option<(ActivationId, UpcallTarget)> {
        self.domain(domain)?;
        let trampoline = self.servers.upcall_entry;
        let activation = self.new_activation(domain, None, trampoline, stack, 0);
        let current = self.current();
        self.objects.push(current, activation);
        let entered = self.objects.activation(activation)?;
        Some((
            activation,
            UpcallTarget {
                view: entered.view,
                entry: trampoline,
                stack,
                arguments: [argument as u64, entry as u64],
                state: entered.entry_pstate,
            },
        ))
    }

    /// The upcall into `activation` (from [`Kernel::enter_domain`]) has
    /// ended: it leaves the chain and is forgotten.
    pub fn leave_domain(&mut self, activation: ActivationId) {
        let current = self.current();
        if self.objects.thread(current).and_then(|thread| thread.top) == Some(activation) {
            self.objects.pop(current);
        }
        self.objects.remove_activation(activation);
    }
}
