//! Kernel calls: one table, one shape, one result encoding.
//!
//! Every kernel call is a method of one shape: `fn(&mut Kernel<M>, Caller,
//! &mut M::Frame) -> KernelCall<M>`. It reads its own arguments from the
//! frame (a pointer argument is a [`UserRange`] claim until the domain's
//! record says the caller owns it), checks everything before it changes
//! anything, and says what runs next ([`Next`]). [`Kernel::kernel_call`]
//! finds the handler (a total match: every call number has exactly one),
//! runs it, and writes the result into the frame — the only place a
//! result is encoded. (A match rather than a table of function pointers:
//! the compiler may then inline the small calls, which a table of
//! pointers would keep out of line.)
//!
//! The RPC calls are in `rpc`, the activation-control calls in `control`,
//! the thread calls in `scheduler`; the small ones are here.

use crate::abi::{CONSOLE_WRITE_MAX, Call, DomainMode, Error, POOL_STACK_MIN, PORT_IDEMPOTENT, Role};
use crate::capability::{Capability, NAME_SERVICE_NAME};
use crate::domain::{DomainId, UserRange};
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::quota::Resource;
use crate::rpc::port_name;
use crate::thread::Activation;

/// The kernel's version, as handed to domains by [`Call::Version`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Stack sizes a domain may ask for.
pub const STACK_SIZES: core::ops::RangeInclusive<u64> = 4096..=(4 << 20);

/// Largest pool growth in one call.
pub const POOL_ADD_MAX: usize = 64;

impl<M: Machine> Kernel<M> {
    /// The kernel call in `frame` (number in x8), made by the current
    /// thread: run it and write its result into the frame. What runs next
    /// (never [`Next::Reply`]: the reply is in the frame).
    pub fn kernel_call(&mut self, frame: &mut M::Frame) -> Next<M::Switch> {
        self.register_frame(frame);
        let number = frame.argument(8);
        let call = match number {
            crate::abi::CALL_BOUND_WORDS_SVC1 => Some(Call::CallBoundWords),
            _ => Call::from_number(number),
        };
        let outcome = match (call, self.caller()) {
            (None, _) => Err(Error::NoSuchCall),
            (Some(call), Ok(caller)) => self.dispatch(call, caller, frame),
            (Some(_), Err(error)) => Err(error),
        };
        match outcome {
            Ok(Next::Reply(value)) => {
                frame.set_result(Ok(value));
                Next::Resume
            }
            Ok(next) => next,
            Err(error) => {
                frame.set_result(Err(error));
                Next::Resume
            }
        }
    }

    /// The handler of `call`, run: every kernel call has this one shape,
    /// and every call number exactly one handler.
    fn dispatch(&mut self, call: Call, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        match call {
            Call::Return => self.return_from_call(caller, frame),
            Call::ConsoleWrite => self.console_write(caller, frame),
            Call::WhoAmI => self.who_am_i(caller, frame),
            Call::Version => self.version(caller, frame),
            Call::Call | Call::CallLending | Call::CallBound => self.call(caller, frame),
            Call::Exit => self.exit(caller, frame),
            Call::PortCreate => self.port_create(caller, frame),
            Call::PoolAdd => self.pool_add(caller, frame),
            Call::ThreadCreate => self.thread_create(caller, frame),
            Call::Receive => self.receive(caller, frame),
            Call::ReplyReceive => self.reply_receive(caller, frame),
            Call::Yield => self.yield_call(caller, frame),
            Call::SidetrackSet => self.sidetrack_set(caller, frame),
            Call::ContextSet => self.context_set(caller, frame),
            Call::ThreadJoin => self.join(caller, frame),
            Call::Null => self.null(caller, frame),
            Call::DomainMode => self.domain_mode(caller, frame),
            Call::ActivationSelf => self.activation_self(caller, frame),
            Call::Alert => self.alert(caller, frame),
            Call::AlertBreak => self.alert_break(caller, frame),
            Call::AlertsBlock => self.alerts_block(caller, frame),
            Call::TestAlert => self.test_alert(caller, frame),
            Call::Suspend => self.suspend(caller, frame),
            Call::Resume => self.resume(caller, frame),
            Call::Terminate => self.terminate(caller, frame),
            Call::SpliceOut => self.splice_out(caller, frame),
            Call::GetState => self.get_state(caller, frame),
            Call::SetState => self.set_state(caller, frame),
            Call::SetPriority => self.set_priority(caller, frame),
            Call::ThreadInfo => self.thread_info(caller, frame),
            Call::ForbidAbove => self.forbid_above(caller, frame),
            Call::DomainControl => self.domain_control_call(caller, frame),
            Call::Activations => self.activations(caller, frame),
            Call::Sleep => self.sleep(caller, frame),
            Call::AlertHandler => self.alert_handler(caller, frame),
            Call::AlertDone => self.alert_done(caller, frame),
            Call::SetQuota => self.set_quota(caller, frame),
            Call::PortDestroy => self.port_destroy(caller, frame),
            Call::DomainRestart => self.domain_restart(caller, frame),
            Call::PortGeneration => self.port_generation_call(caller, frame),
            Call::Bind => self.bind_call(caller, frame),
            Call::Unbind => self.unbind_call(caller, frame),
            Call::CallBoundWords => self.call_bound_words(caller, frame),
            Call::Caller => self.caller_domain(caller, frame),
            Call::ConsoleRead => self.console_read(caller, frame),
        }
    }

    /// `Null`: nothing (the fast path answers it; this is its general
    /// form).
    pub fn null(&mut self, _: Caller, _: &mut M::Frame) -> KernelCall<M> {
        Ok(Next::Reply(0))
    }

    /// `WhoAmI`: the caller's domain number.
    pub fn who_am_i(&mut self, caller: Caller, _: &mut M::Frame) -> KernelCall<M> {
        Ok(Next::Reply(caller.domain.0 as usize))
    }

    /// `Caller`: the domain of the client whose call the caller is
    /// serving — below its pool (or sidetrack) activation on the chain, or
    /// the client of its server thread. `NotInCall` otherwise: a thread's
    /// own activation serving nobody, or a server activation whose client
    /// split off below it (`Terminate`, `AlertBreak`).
    pub fn caller_domain(&mut self, caller: Caller, _: &mut M::Frame) -> KernelCall<M> {
        let activation = self.objects.activation(caller.activation).ok_or(Error::NotInCall)?;
        let client = if activation.port.is_some() {
            activation.caller
        } else {
            let client = self.objects.thread(caller.thread).and_then(|entry| entry.serving);
            client.and_then(|thread| self.objects.thread(thread)).and_then(|entry| entry.top)
        };
        let domain = client.and_then(|id| self.objects.activation(id)).ok_or(Error::NotInCall)?.domain;
        Ok(Next::Reply(domain.0 as usize))
    }

    /// `Exit`: ends the upcall that entered the caller's activation; only
    /// a thread's own activation (not a server activation) may.
    pub fn exit(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let base = self.objects.activation(caller.activation).is_some_and(|activation| activation.port.is_none());
        if base { Ok(Next::ExitUpcall(frame.argument(0))) } else { Err(Error::NotInCall) }
    }

    /// `Yield`.
    pub fn yield_call(&mut self, _: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        frame.set_result(Ok(0));
        Ok(self.yield_now().map_or(Next::Resume, Next::Switch))
    }

    /// `ConsoleWrite`: x0/x1 the text, readable by the caller, UTF-8, at
    /// most [`CONSOLE_WRITE_MAX`] bytes.
    pub fn console_write(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let claim = UserRange::new(frame.argument(0), frame.argument(1));
        let record = self.domain(caller.domain).ok_or(Error::BadAddress)?;
        let checked = record.domain.check_readable(&self.image, claim)?;
        if checked.length > CONSOLE_WRITE_MAX {
            return Err(Error::InvalidArgument);
        }
        let mut bytes = alloc::vec![0u8; checked.length];
        self.machine.read(checked.address, &mut bytes);
        let text = core::str::from_utf8(&bytes).map_err(|_| Error::NotUtf8)?;
        self.machine.console_write(text);
        Ok(Next::Reply(text.len()))
    }

    /// `Version`: the version string into the buffer x0/x1.
    pub fn version(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let claim = UserRange::new(frame.argument(0), frame.argument(1));
        if claim.length < VERSION.len() {
            return Err(Error::InvalidArgument);
        }
        self.copy_out(caller.domain, claim.address, VERSION.as_bytes())?;
        Ok(Next::Reply(VERSION.len()))
    }

    /// `PortCreate`: x0 flags (`PORT_IDEMPOTENT`). A port whose receive
    /// right the caller holds — for a restarted domain, the next of its
    /// predecessor's ports (`crate::restart`). The first port of the
    /// name-service domain is the name service: every domain, now and
    /// later, gets a send right to it at name 0.
    pub fn port_create(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let flags = frame.argument(0);
        if flags & !PORT_IDEMPOTENT != 0 {
            return Err(Error::InvalidArgument);
        }
        let idempotent = flags & PORT_IDEMPOTENT != 0;
        // A restarted server's first ports are its predecessor's.
        if let Some(adopted) = self.adopt_port(caller.domain, idempotent) {
            return adopted.map(|name| Next::Reply(name as usize));
        }
        let record = self.domain(caller.domain).ok_or(Error::BadAddress)?;
        let names = record.spec.role == Role::NameService && self.name_service.is_none();
        if !record.account.fits(Resource::Ports, 1) || !record.account.fits(Resource::Rights, 1) {
            return Err(Error::OverQuota);
        }
        // Point of no return.
        let _ = self.charge_domain(caller.domain, Resource::Ports, 1);
        let _ = self.charge_domain(caller.domain, Resource::Rights, 1);
        let port = self.objects.new_port(caller.domain);
        if let Some(entry) = self.objects.port_mut(port) {
            entry.idempotent = idempotent;
        }
        let record = self.domain_mut(caller.domain).ok_or(Error::BadAddress)?;
        let name = record.space.insert(Capability { port, receive: true });
        if names {
            self.name_service = Some(port);
            for record in self.domains_mut() {
                // (A dead domain calls nobody: its space is left alone.)
                if record.domain.id != caller.domain && record.alive {
                    record.space.install(NAME_SERVICE_NAME, Capability { port, receive: false });
                }
            }
        }
        Ok(Next::Reply(name as usize))
    }

    /// `PoolAdd`: x0 port, x1 count, x2 entry, x3 stack bytes.
    pub fn pool_add(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port = self.receive_right(caller.domain, port_name(frame, 0)?)?;
        let (count, entry, stack) = (frame.argument(1), frame.register(2), frame.register(3));
        if !(1..=POOL_ADD_MAX).contains(&count) || !STACK_SIZES.contains(&stack) || stack < POOL_STACK_MIN as u64 {
            return Err(Error::InvalidArgument);
        }
        if !self.image.read_only.contains(entry) {
            return Err(Error::BadAddress);
        }
        if !self.stacks_fit(caller.domain, count as u64, stack) {
            return Err(Error::OutOfMemory);
        }
        self.charge_domain(caller.domain, Resource::Activations, count as u32)?;
        // Point of no return: every stack fits, every activation is paid for.
        for _ in 0..count {
            let top = self.carve_stack(caller.domain, stack).ok_or(Error::OutOfMemory)?;
            let activation = self.new_activation(caller.domain, Some(port), entry, top, stack);
            self.objects.pool_add(port, activation);
        }
        while let Some(waiter) = self.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
            self.wake(waiter);
        }
        self.pool_added(port, entry);
        Ok(Next::Reply(self.objects.pool_free(port)))
    }

    /// `SidetrackSet`: x0 port, x1 entry, x2 stack bytes.
    pub fn sidetrack_set(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port = self.receive_right(caller.domain, port_name(frame, 0)?)?;
        let (entry, stack) = (frame.register(1), frame.register(2));
        if !STACK_SIZES.contains(&stack) {
            return Err(Error::InvalidArgument);
        }
        if !self.image.read_only.contains(entry) {
            return Err(Error::BadAddress);
        }
        if self.objects.port(port).is_some_and(|entry| entry.sidetrack.is_some()) {
            // One sidetrack activation a port: a second would be lost.
            return Err(Error::Busy);
        }
        if !self.stacks_fit(caller.domain, 1, stack) {
            return Err(Error::OutOfMemory);
        }
        self.charge_domain(caller.domain, Resource::Activations, 1)?;
        // Point of no return.
        let top = self.carve_stack(caller.domain, stack).ok_or(Error::OutOfMemory)?;
        let activation = self.new_activation(caller.domain, Some(port), entry, top, stack);
        if let Some(made) = self.objects.activation_mut(activation) {
            made.flags |= Activation::SIDETRACK | Activation::GENERAL_RETURN;
        }
        if let Some(entry) = self.objects.port_mut(port) {
            entry.sidetrack = Some(activation);
            entry.pool_size += 1;
        }
        Ok(Next::Reply(0))
    }

    /// `ContextSet`: x0 the domain's context word, into each of its
    /// activations too; x1 `CONTEXT_DISPATCH_RECORD` if it names a
    /// dispatch record (other bits: `InvalidArgument`).
    pub fn context_set(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (context, flags) = (frame.argument(0), frame.argument(1));
        if flags & !crate::abi::CONTEXT_DISPATCH_RECORD != 0 {
            return Err(Error::InvalidArgument);
        }
        let record = self.domain_mut(caller.domain).ok_or(Error::BadAddress)?;
        record.context = context;
        record.context_is_dispatch = flags & crate::abi::CONTEXT_DISPATCH_RECORD != 0;
        for activation in self.objects.activations_of(caller.domain) {
            activation.context = context as u64;
        }
        // The merged path to its pools depends on what the word names.
        self.republish_handles_to_domain(caller.domain);
        Ok(Next::Reply(0))
    }

    /// `ThreadCreate`: x0 entry, x1 argument, x2 priority, x3 stack bytes.
    pub fn thread_create(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let (entry, argument, priority, stack) =
            (frame.argument(0), frame.argument(1), frame.argument(2), frame.register(3));
        if priority > 31 || !STACK_SIZES.contains(&stack) {
            return Err(Error::InvalidArgument);
        }
        if !self.image.read_only.contains(entry as u64) {
            return Err(Error::BadAddress);
        }
        self.reap_detached();
        if !self.fits_quota(caller.domain, Resource::Threads, 1) {
            return Err(Error::OverQuota);
        }
        let thread =
            self.create_thread(caller.domain, entry, argument, priority as u8, stack).ok_or(Error::OutOfMemory)?;
        Ok(Next::Reply(thread.get() as usize))
    }

    /// `SetQuota`: the kernel domain only.
    pub fn set_quota(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        if !self.is_kernel_domain(caller.domain) {
            return Err(Error::NoRight);
        }
        let domain = u16::try_from(frame.argument(0)).map(DomainId).map_err(|_| Error::InvalidArgument)?;
        let resource = Resource::from_code(frame.argument(1)).ok_or(Error::InvalidArgument)?;
        let limit = u32::try_from(frame.argument(2)).map_err(|_| Error::InvalidArgument)?;
        let record = self.domain_mut(domain).ok_or(Error::InvalidArgument)?;
        record.account.set_limit(resource, limit);
        Ok(Next::Reply(record.account.used(resource) as usize))
    }

    /// `PortDestroy`: x0 a port the caller holds the receive right to.
    pub fn port_destroy(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port = self.receive_right(caller.domain, port_name(frame, 0)?)?;
        self.destroy_port(port);
        Ok(Next::Reply(0))
    }

    /// `DomainMode`: only the kernel domain (a merged caller) may move a
    /// domain between modes.
    pub fn domain_mode(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        if !self.is_kernel_domain(caller.domain) {
            return Err(Error::NoRight);
        }
        let mode = DomainMode::from_code(frame.argument(1)).ok_or(Error::InvalidArgument)?;
        let target = u16::try_from(frame.argument(0)).map(DomainId).map_err(|_| Error::InvalidArgument)?;
        self.set_mode(target, mode).map(|()| Next::Reply(0))
    }
}
