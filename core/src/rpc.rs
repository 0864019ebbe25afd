//! RPC: the migrating path, the switching (static-thread) path, and the
//! choice between them — all behind one client call. This is the general
//! path; the machine's assembly fast paths take the common cases of both
//! models on the same objects and give the same results.
//!
//! **Migrating** (Ford & Lepreau §6): the client's thread takes an
//! unoccupied activation from the port's pool; the request is copied
//! *once*, straight from the client's buffer onto that activation's stack;
//! the activation is pushed on the thread's chain, the client's registers
//! are saved in the client's activation, and the thread goes on in the
//! server's dispatch entry in the server's view — no scheduler, no thread
//! switch, no reply port. The server ends with `Return`: the reply is
//! copied once, straight into the client's buffer, the activation goes
//! back to the pool, and the client's registers come back.
//!
//! **Switching** (the static-thread baseline): server threads wait in
//! `Receive`; a call hands the request to a waiting server thread (copied
//! straight into its receive buffer) and hands it the processor directly,
//! the client blocking until `ReplyReceive` copies the reply into its
//! buffer and hands the processor back. With no waiting server thread the
//! client queues on the port. Two full thread switches per round trip.
//!
//! **Choice** ([`crate::thread::Objects::route`]): a free activation first;
//! else a waiting server thread; else queue behind busy server threads;
//! else (a pool exists but is empty) wait for an activation, and make the
//! call again when one comes back. Taking a pool's *last* activation first
//! makes a *sidetrack* upcall into the server, when it asked for one, so it
//! can add activations; the call is then made again.
//!
//! **Shape** (seL4's): every check comes first — a bad port name, a missing
//! right, a malformed or oversized message, a buffer the caller does not
//! own, a dead server — and each returns its error with nothing changed. The one step
//! that can fail for want of memory (mapping a lent region into a
//! protected server's view may need a page table) comes next, all or
//! nothing. After that, the point of no return: effects that cannot fail.
//! A reply too large for the client's buffer is an error *to the client*,
//! and nothing of it is written.

use crate::abi::{Call, DomainMode, Error, LEND_MAX, LEND_WRITABLE, MessageHeader, NO_RIGHT, REPLY_IN_REGISTERS};
use crate::capability::{Capability, PortId};
use crate::domain::{DomainId, UserRange};
use crate::frame::PhysRange;
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::quota::Resource;
use crate::thread::{ActivationId, Destination, PendingRequest, Route, ThreadId, ThreadState, UserContext};

/// The right a message's header names in `space` (its sender's): none,
/// a send right to a port, or a dead name; `NoRight` for a name that names
/// nothing.
fn carried(space: &crate::capability::CapabilitySpace, name: u32) -> Result<Option<Carried>, Error> {
    if name == NO_RIGHT {
        return Ok(None);
    }
    match space.lookup(name) {
        Some(capability) => Ok(Some(Carried::Port(capability.port))),
        None if space.is_dead(name) => Ok(Some(Carried::Dead)),
        None => Err(Error::NoRight),
    }
}

/// The port name in argument `index`: `NoSuchPort` for a value wider than
/// a name (never truncated to one).
pub fn port_name(frame: &impl UserFrame, index: usize) -> Result<u32, Error> {
    u32::try_from(frame.argument(index)).map_err(|_| Error::NoSuchPort)
}

/// A region of the client's memory lent to the server for one call
/// ([`Call::CallLending`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lend {
    /// Where it starts.
    pub address: u64,
    /// Its length in bytes.
    pub length: u64,
    /// Whether the server may write it.
    pub writable: bool,
}

impl Lend {
    /// The lend a `CallLending` frame describes (`x5` address, `x6`
    /// length | `LEND_WRITABLE`); `None` for a plain `Call`.
    fn from_frame(frame: &impl UserFrame) -> Option<Lend> {
        (frame.register(8) == Call::CallLending as u64).then(|| Lend {
            address: frame.register(5),
            length: frame.register(6) & !(LEND_WRITABLE as u64),
            writable: frame.register(6) & LEND_WRITABLE as u64 != 0,
        })
    }

    /// The registers the server's entry gets it in (`x4`, `x5`).
    fn registers(self) -> (u64, u64) {
        (self.address, self.length | if self.writable { LEND_WRITABLE as u64 } else { 0 })
    }

    fn region(self) -> PhysRange {
        PhysRange::new(self.address, self.address + self.length)
    }
}

/// A right a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carried {
    /// A send right to this port.
    Port(PortId),
    /// A dead name: it arrives as a dead name (`PortDead` when used), as
    /// it left.
    Dead,
}

/// A checked request: where it is, and the right it carries.
#[derive(Clone, Copy, Debug)]
struct Request {
    range: UserRange,
    right: Option<Carried>,
}

/// Where a migrating call enters a server activation, checked.
#[derive(Clone, Copy, Debug)]
struct EntryPoint {
    activation: ActivationId,
    domain: DomainId,
    entry: u64,
    state: u64,
    stack_top: u64,
    context: u64,
    /// The view it runs in: its domain's, or (merged) the caller's.
    view: u64,
}

impl<M: Machine> Kernel<M> {
    /// Copy `length` bytes between checked ranges (see [`Machine::copy`]),
    /// counting a copy that carries a payload.
    fn copy_message(&mut self, source: usize, destination: usize, length: usize) {
        if length == 0 {
            return;
        }
        self.machine.copy(source, destination, length);
        if length > MessageHeader::SIZE {
            self.counts().payload_copies += 1;
        }
    }

    /// The header of a message at `address`, checked readable by its
    /// sender for at least a header's length.
    fn read_header(&self, address: usize) -> MessageHeader {
        MessageHeader::from_words([self.machine.read_word(address), self.machine.read_word(address + 8)])
    }

    /// Check a message claimed by `domain`: readable, at least a header
    /// and at most `MESSAGE_MAX` long; the port its right names, if any.
    fn check_message(&self, domain: DomainId, claim: UserRange) -> Result<Request, Error> {
        let record = self.domain(domain).ok_or(Error::BadAddress)?;
        let checked = record.domain.check_readable(&self.image, claim)?;
        MessageHeader::check_length(checked.length)?;
        let header = self.read_header(checked.address);
        let right = carried(&record.space, header.right)?;
        Ok(Request { range: claim, right })
    }

    /// Stamp the header of a message of `length` bytes just delivered at
    /// `address` (in `receiver`'s region): its `right` becomes `receiver`'s
    /// name for `port` (granting it a send right), its `length` the
    /// payload's true length and `reserved` zero, whatever the sender
    /// wrote there.
    fn deliver_header(&mut self, receiver: DomainId, address: usize, length: usize, right: Option<Carried>) {
        let name = match (right, self.domain_mut(receiver)) {
            (None, _) => NO_RIGHT,
            (Some(_), None) => return,
            (Some(Carried::Port(port)), Some(record)) => {
                let new = record.space.name_of(port).is_none();
                let name = record.space.insert(Capability { port, receive: false });
                if new {
                    // (checked before: `can_take_right`)
                    let _ = record.account.charge(Resource::Rights, 1);
                }
                name
            }
            (Some(Carried::Dead), Some(record)) => {
                let _ = record.account.charge(Resource::Rights, 1);
                record.space.insert_dead()
            }
        };
        let payload = (length - MessageHeader::SIZE) as u64;
        self.machine.write_word(address + 4, u64::from(name), 4);
        self.machine.write_word(address + 8, payload, 8);
    }

    /// Whether `receiver` can take a right to `port` (none: trivially): it
    /// holds one already (a space holds one name per port: the name is
    /// reused), or one more fits its quota.
    fn can_take_right(&self, receiver: DomainId, right: Option<Carried>) -> bool {
        let Some(right) = right else { return true };
        self.domain(receiver).is_none_or(|record| {
            let held = matches!(right, Carried::Port(port) if record.space.name_of(port).is_some());
            held || record.account.fits(Resource::Rights, 1)
        })
    }

    /// Deliver `request` to `destination` (checked writable, large enough):
    /// the one copy, and the header stamped.
    fn deliver(&mut self, request: Request, destination: Destination) {
        self.copy_message(request.range.address, destination.address, request.range.length);
        self.deliver_header(destination.domain, destination.address, request.range.length, request.right);
    }

    /// Check `server`'s reply and, if it is good and fits, copy it into
    /// `reply_to` (granting any right it carries): the reply's length, or
    /// the error for the client, with nothing written.
    fn deliver_reply(&mut self, server: DomainId, reply: UserRange, reply_to: Destination) -> Result<usize, Error> {
        let request = self.check_message(server, reply)?;
        if reply.length > reply_to.capacity {
            return Err(Error::ReplyTooLarge);
        }
        if !self.can_take_right(reply_to.domain, request.right) {
            return Err(Error::OverQuota);
        }
        self.deliver(request, reply_to);
        Ok(reply.length)
    }

    /// Check a lend by `client`: 1 byte to [`LEND_MAX`], and — from a
    /// protected client — inside its own region (a merged client is part
    /// of the kernel domain: its pointers are trusted, as the kernel's
    /// are).
    fn check_lend(&self, client: DomainId, lend: Lend) -> Result<(), Error> {
        if lend.length == 0 || lend.length > LEND_MAX as u64 {
            return Err(Error::InvalidArgument);
        }
        let record = self.domain(client).ok_or(Error::BadAddress)?;
        if record.mode == DomainMode::Protected {
            record.domain.check_writable(UserRange::new(lend.address as usize, lend.length as usize))?;
        }
        Ok(())
    }

    /// What a lend needs of a call from `client` into `server`: `Ok(true)`
    /// to map it into the server's view (a protected server, another
    /// domain's pages), `Ok(false)` for nothing (a merged server sees the
    /// caller's memory already; a server lending to itself), `CannotLend`
    /// from a merged client to a protected server (its memory is the
    /// kernel's only).
    fn lend_needs_mapping(&self, client: DomainId, server: DomainId) -> Result<bool, Error> {
        if self.mode_of(server).is_merged() || server == client {
            return Ok(false);
        }
        match self.domain(client).map(|record| record.mode) {
            Some(DomainMode::Protected) => Ok(true),
            _ => Err(Error::CannotLend),
        }
    }

    /// Check that a call may enter `activation`: its domain is alive.
    /// (Its stack has room for any request and the margin below it:
    /// `PoolAdd` refuses smaller stacks, see `abi::POOL_STACK_MIN`; a
    /// sidetrack upcall carries no request.)
    fn check_entry(&self, activation: ActivationId) -> Result<EntryPoint, Error> {
        let target = self.objects.activation(activation).ok_or(Error::PortDead)?;
        let record = self.domain(target.domain).filter(|record| record.alive).ok_or(Error::PortDead)?;
        // A merged server runs in the caller's view (it is mapped in all
        // of them), recorded for returns into it; a protected one in its
        // own.
        let view = if record.mode.is_merged() { self.machine.view() } else { target.view };
        Ok(EntryPoint {
            activation,
            domain: target.domain,
            entry: target.entry,
            state: target.entry_pstate,
            stack_top: target.stack_top,
            context: target.context,
            view,
        })
    }

    /// `Call`: x0 port name, x1/x2 request, x3/x4 reply buffer;
    /// `CallLending`: the same, plus x5/x6 the lent region; and
    /// `CallBound`: as `Call`, with x0 a bound handle (`handle`).
    pub fn call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port = if frame.register(8) == Call::CallBound as u64 {
            self.bound_port(caller.domain, frame.argument(0))?
        } else {
            self.right(caller.domain, port_name(frame, 0)?)?.port
        };
        let request = UserRange::new(frame.register(1) as usize, frame.register(2) as usize);
        let reply = UserRange::new(frame.register(3) as usize, frame.register(4) as usize);
        let lend = Lend::from_frame(frame);
        self.call_port(caller, frame, port, request, reply, lend)
    }

    /// A call to `port` with the request and reply buffer (and the lend)
    /// as given, whatever registers the caller made it with: the frame is
    /// only saved (for its return, or for the call to be made again), never
    /// read for arguments here. `call` and the register form
    /// (`call_bound_words`) meet here.
    pub(crate) fn call_port(
        &mut self,
        caller: Caller,
        frame: &mut M::Frame,
        port: PortId,
        request: UserRange,
        reply: UserRange,
        lend: Option<Lend>,
    ) -> KernelCall<M> {
        let record = self.domain(caller.domain).ok_or(Error::BadAddress)?;
        let reply = record.domain.check_writable(reply)?;
        let request = self.check_message(caller.domain, request)?;
        if let Some(lend) = lend {
            self.check_lend(caller.domain, lend)?;
        }
        let reply_to = Destination { domain: caller.domain, address: reply.address, capacity: reply.length };
        // Whatever path it takes, a request reaches the port's owner (only
        // it holds the receive right): it must be able to take the right
        // the request carries.
        let owner = self.objects.port(port).map_or(DomainId(0), |entry| entry.owner);
        if !self.can_take_right(owner, request.right) {
            return Err(Error::OverQuota);
        }
        let route = self.objects.route(port);
        if lend.is_some() && matches!(route, Route::HandOff(_) | Route::QueueForThread) {
            return Err(Error::CannotLend);
        }
        let routed = matches!(route, Route::Migrate(_) | Route::HandOff(_) | Route::QueueForThread);
        let outcome = match route {
            Route::Migrate(next) => self.call_migrating(caller, frame, port, next, request, reply_to, lend),
            Route::HandOff(server) => self.hand_off(caller, port, server, request, reply_to),
            Route::QueueForThread => {
                let pending = PendingRequest {
                    domain: caller.domain,
                    address: request.range.address,
                    length: request.range.length,
                };
                if let Some(entry) = self.objects.thread_mut(caller.thread) {
                    entry.state = ThreadState::WaitingForReceiver(port);
                    entry.pending = Some(pending);
                    entry.set_reply_to(Some(reply_to));
                }
                if let Some(entry) = self.objects.port_mut(port) {
                    entry.queue_sender(caller.thread);
                }
                self.counts().queued += 1;
                self.count_served(port);
                Ok(Next::Block)
            }
            Route::WaitForActivation => {
                if let Some(entry) = self.objects.thread_mut(caller.thread) {
                    entry.state = ThreadState::WaitingForActivation(port);
                }
                if let Some(entry) = self.objects.port_mut(port) {
                    entry.wait_for_activation(caller.thread);
                }
                self.counts().waited += 1;
                Ok(Next::BlockThenRepeat)
            }
            Route::Dead => Err(Error::PortDead),
        };
        // Counted once the call is on its way (a refused one changes
        // nothing, not even this).
        if routed && outcome.is_ok() {
            self.counts().general += 1;
        }
        outcome
    }

    /// One more call routed to `port` by the general path (each route
    /// counts it where it counts the call in the statistics).
    fn count_served(&mut self, port: PortId) {
        if let Some(entry) = self.objects.port_mut(port) {
            entry.served += 1;
        }
    }

    /// The sidetrack activation of `port` if this call must take it first:
    /// the pool is down to its last activation, the server asked for a
    /// sidetrack, it is free, and this thread's call has not just made
    /// one.
    fn sidetrack_due(&self, thread: ThreadId, port: PortId) -> Option<ActivationId> {
        if self.objects.pool_free(port) != 1 {
            return None;
        }
        let sidetrack = self.objects.port(port)?.sidetrack?;
        let free = self.objects.activation(sidetrack)?.occupant.is_none();
        let already = self.objects.thread(thread).and_then(|entry| entry.sidetracked) == Some(port);
        (free && !already).then_some(sidetrack)
    }

    #[allow(clippy::too_many_arguments)]
    fn call_migrating(
        &mut self,
        caller: Caller,
        frame: &mut M::Frame,
        port: PortId,
        next: ActivationId,
        request: Request,
        reply_to: Destination,
        lend: Option<Lend>,
    ) -> KernelCall<M> {
        if let Some(sidetrack) = self.sidetrack_due(caller.thread, port) {
            let target = self.check_entry(sidetrack)?;
            // Point of no return.
            self.counts().sidetracks += 1;
            let free = self.objects.pool_free(port) as u64;
            let arguments = [port.get() as u64, free, target.context, 0, 0, 0];
            return Ok(self.migrate(caller, frame, target, reply_to, target.stack_top, arguments));
        }
        let target = self.check_entry(next)?;
        let mapped = match lend {
            Some(lend) if self.lend_needs_mapping(caller.domain, target.domain)? => Some(lend),
            _ => None,
        };
        if let Some(lend) = mapped {
            // The one step that can still fail (a page table for the lent
            // pages), all or nothing.
            self.lend_map(target.domain, lend.region(), lend.writable)?;
            self.counts().lends_mapped += 1;
        }
        // Point of no return.
        if let Some(entry) = self.objects.thread_mut(caller.thread) {
            entry.sidetracked = None;
        }
        self.objects.pool_take(port);
        self.counts().migrated += 1;
        self.count_served(port);
        if let Some(entry) = self.objects.activation_mut(next) {
            entry.set_lent(mapped.map(Lend::registers));
        }
        let length = request.range.length as u64;
        let message_address = (target.stack_top - length) & !15;
        self.deliver(request, Destination { domain: target.domain, address: message_address as usize, capacity: 0 });
        let (lent_address, lent_length) = lend.map_or((0, 0), Lend::registers);
        let arguments = [message_address, length, target.context, 0, lent_address, lent_length];
        Ok(self.migrate(caller, frame, target, reply_to, message_address, arguments))
    }

    /// The effects of a migrating call, after every check: push the
    /// activation, save the client, and aim the frame at the server's
    /// entry, on `stack`, with `arguments` in x0-x5.
    fn migrate(
        &mut self,
        caller: Caller,
        frame: &mut M::Frame,
        target: EntryPoint,
        reply_to: Destination,
        stack: u64,
        arguments: [u64; 6],
    ) -> Next<M::Switch> {
        let client_watched = match self.objects.activation_mut(caller.activation) {
            Some(client) => {
                client.saved = frame.context();
                client.control.stops() || client.control.spliced
            }
            None => false,
        };
        self.objects.push(caller.thread, target.activation);
        if let Some(entered) = self.objects.activation_mut(target.activation) {
            entered.set_reply(reply_to);
            entered.view = target.view;
            if client_watched {
                // The way back must stop (or unwind) there: not the fast one.
                entered.watch();
            }
        }
        let depth = self.objects.chain(caller.thread).len();
        self.counts().longest_chain = self.counts().longest_chain.max(depth);
        let mut entry_state =
            UserContext { sp: stack, pc: target.entry, pstate: target.state, ..UserContext::default() };
        entry_state.x[..6].copy_from_slice(&arguments);
        frame.set_context(&entry_state);
        self.machine.switch_view(target.view);
        Next::Resume
    }

    /// The switching handoff: the request goes straight into waiting
    /// server thread `server`'s buffer, the client waits for the reply, and
    /// the server gets the processor.
    fn hand_off(
        &mut self,
        caller: Caller,
        port: PortId,
        server: ThreadId,
        request: Request,
        reply_to: Destination,
    ) -> KernelCall<M> {
        let destination =
            self.objects.thread(server).and_then(|entry| entry.receive_buffer()).ok_or(Error::PortDead)?;
        if request.range.length > destination.capacity {
            return Err(Error::BadMessage);
        }
        // Point of no return.
        self.objects.pop_receiver(port);
        self.deliver(request, destination);
        if let Some(server_frame) = self.blocked_frame(server) {
            server_frame.set_result(Ok(request.range.length));
        }
        if let Some(entry) = self.objects.thread_mut(server) {
            entry.serving = Some(caller.thread);
            entry.set_receive_buffer(None);
        }
        if let Some(entry) = self.objects.thread_mut(caller.thread) {
            entry.state = ThreadState::WaitingForReply;
            entry.set_reply_to(Some(reply_to));
        }
        self.counts().handed_off += 1;
        self.count_served(port);
        Ok(self.prepare_switch(server).map_or(Next::Resume, Next::Switch))
    }

    /// `Return`: x0/x1 reply, from a server activation.
    pub fn return_from_call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let reply = UserRange::new(frame.register(0) as usize, frame.register(1) as usize);
        let entry = self.objects.activation(caller.activation).ok_or(Error::NotInCall)?;
        let port = entry.port.ok_or(Error::NotInCall)?;
        let (client_activation, reply_to, sidetrack) = (entry.caller, entry.reply(), entry.is_sidetrack());
        // The words path's mark (`Activation::reply_registers`): its caller
        // takes a reply that fits in registers.
        let registers = entry.reply_registers != 0;
        let Some(client_activation) = client_activation else {
            // The bottom of a segment split off below a terminated
            // activation: nobody waits for this reply. The activation goes
            // back to its pool and the segment's thread ends.
            self.leave_pool_activation(caller);
            return Ok(Next::EndThread(0));
        };
        let in_registers = if sidetrack || !registers { None } else { self.reply_words(caller.domain, reply) };
        let result = match (sidetrack, in_registers) {
            (true, _) => Ok(0),
            (false, Some(_)) => Ok(0),
            (false, None) => self.deliver_reply(caller.domain, reply, reply_to),
        };
        self.leave_pool_activation(caller);
        let saved = self.objects.activation(client_activation).map(|entry| entry.saved).unwrap_or_default();
        frame.set_context(&saved);
        if let Some(words) = in_registers {
            // As the fast paths answer it (`tern_fast_return_words`): x0 = 0,
            // x1 = REPLY_IN_REGISTERS | label | length << 32, x2-x5 the words.
            frame.set_register(0, 0);
            for (index, word) in words.into_iter().enumerate() {
                frame.set_register(1 + index, word);
            }
        } else if sidetrack {
            // Make the client's call again: it proceeds now.
            frame.repeat_call();
            if let Some(entry) = self.objects.thread_mut(caller.thread) {
                entry.sidetracked = Some(port);
            }
        } else {
            frame.set_result(result);
        }
        let view = self.current_view();
        self.machine.switch_view(view);
        Ok(Next::Resume)
    }

    /// `server`'s reply as a words call's caller takes it in registers: x1
    /// `REPLY_IN_REGISTERS | label | length << 32`, then the payload's
    /// words (zero past its length: nothing else of the server's goes with
    /// them). `None` when it does not fit (a payload longer than
    /// [`crate::abi::REGISTER_WORDS`] words, a right, or not a good
    /// message): the caller's buffer takes it, or its error (a words call
    /// without one gets `ReplyTooLarge`, nothing delivered).
    fn reply_words(&self, server: DomainId, reply: UserRange) -> Option<[u64; 1 + crate::abi::REGISTER_WORDS]> {
        let request = self.check_message(server, reply).ok()?;
        let payload = reply.length - MessageHeader::SIZE;
        if request.right.is_some() || payload > 8 * crate::abi::REGISTER_WORDS {
            return None;
        }
        let record = self.domain(server)?;
        let at = record.domain.check_readable(&self.image, reply).ok()?.address;
        let mut bytes = [0u8; 8 * crate::abi::REGISTER_WORDS];
        self.machine.read(at + MessageHeader::SIZE, &mut bytes[..payload]);
        let label = self.read_header(at).label;
        let mut words = [0u64; 1 + crate::abi::REGISTER_WORDS];
        words[0] = REPLY_IN_REGISTERS | u64::from(label) | (payload as u64) << 32;
        for (word, chunk) in words[1..].iter_mut().zip(bytes.chunks_exact(8)) {
            *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        }
        Some(words)
    }

    /// The call `caller`'s activation served is over: what was lent to it
    /// is taken back, it leaves the chain and is put back (its pool, a
    /// waiting thread, or — a sidetrack activation — reserved again).
    fn leave_pool_activation(&mut self, caller: Caller) {
        self.end_lend(caller.activation, caller.domain);
        self.objects.pop(caller.thread);
        self.put_back(caller.activation);
    }

    /// A fault in a server activation (its domain has been terminated):
    /// unwind the thread to the caller, whose call returns `CallAborted`
    /// (or `Restarted`: see `Kernel::kill_domain`).
    /// False if the top activation is not a server activation.
    pub fn abort_call(&mut self, frame: &mut M::Frame) -> bool {
        let Ok(caller) = self.caller() else { return false };
        let Some(client) = self.objects.activation(caller.activation).and_then(|entry| entry.port.and(entry.caller))
        else {
            return false;
        };
        let error = self.aborted_call_error(self.objects.activation(caller.activation).and_then(|entry| entry.port));
        self.end_lend(caller.activation, caller.domain);
        self.objects.pop(caller.thread);
        // Its domain is dead: the activation goes (and its port with its
        // last one), not back to a pool.
        self.put_back(caller.activation);
        let saved = self.objects.activation(client).map(|entry| entry.saved).unwrap_or_default();
        frame.set_context(&saved);
        frame.set_result(Err(error));
        true
    }

    /// The call `activation` (of `server`) served has ended: take back
    /// what was lent to it, if anything was mapped.
    pub fn end_lend(&mut self, activation: ActivationId, server: DomainId) {
        let lent = self.objects.activation(activation).and_then(|entry| entry.lent());
        if let Some((address, word)) = lent {
            let (length, writable) = (word & !(LEND_WRITABLE as u64), word & LEND_WRITABLE as u64 != 0);
            self.lend_unmap(server, PhysRange::new(address, address + length), writable);
            if let Some(entry) = self.objects.activation_mut(activation) {
                entry.set_lent(None);
            }
        }
    }

    /// `Receive`: x0 port, x1/x2 buffer.
    pub fn receive(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port_name = port_name(frame, 0)?;
        let buffer = UserRange::new(frame.argument(1), frame.argument(2));
        self.receive_next(caller, port_name, buffer)
    }

    fn receive_next(&mut self, caller: Caller, port_name: u32, buffer: UserRange) -> KernelCall<M> {
        let (thread, server) = (caller.thread, caller.domain);
        let port = self.receive_right(server, port_name)?;
        let buffer = self.domain(server).ok_or(Error::BadAddress)?.domain.check_writable(buffer)?;
        let destination = Destination { domain: server, address: buffer.address, capacity: buffer.length };
        // A queued client first: checked before anything changes.
        let queued = self.objects.port(port).and_then(|entry| entry.first_sender());
        let pending = match queued {
            Some(client) => {
                let pending = self.objects.thread(client).and_then(|entry| entry.pending).ok_or(Error::PortDead)?;
                if pending.length > destination.capacity {
                    return Err(Error::BadMessage);
                }
                Some((client, pending))
            }
            None => None,
        };
        // Point of no return.
        let first_time = self.objects.thread(thread).is_some_and(|entry| entry.serves != Some(port));
        if first_time {
            if let Some(entry) = self.objects.thread_mut(thread) {
                entry.serves = Some(port);
            }
            if let Some(entry) = self.objects.port_mut(port) {
                entry.server_threads += 1;
            }
            // Callers waiting for a server may now queue for this thread.
            while let Some(waiter) = self.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
                self.wake(waiter);
            }
        }
        if let Some((client, pending)) = pending {
            self.objects.port_mut(port).and_then(|entry| entry.next_sender());
            let header = self.read_header(pending.address);
            let right =
                self.domain(pending.domain).and_then(|record| carried(&record.space, header.right).ok()).flatten();
            let request = Request { range: UserRange::new(pending.address, pending.length), right };
            self.deliver(request, destination);
            if let Some(entry) = self.objects.thread_mut(client) {
                entry.state = ThreadState::WaitingForReply;
                entry.pending = None;
            }
            if let Some(entry) = self.objects.thread_mut(thread) {
                entry.serving = Some(client);
            }
            return Ok(Next::Reply(pending.length));
        }
        if let Some(entry) = self.objects.thread_mut(thread) {
            entry.state = ThreadState::Receiving(port);
            entry.set_receive_buffer(Some(destination));
        }
        self.objects.push_receiver(port, thread);
        Ok(Next::Block)
    }

    /// `ReplyReceive`: x0/x1 reply, x2 port, x3/x4 buffer.
    pub fn reply_receive(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let reply = UserRange::new(frame.register(0) as usize, frame.register(1) as usize);
        let port_name = port_name(frame, 2)?;
        let buffer = UserRange::new(frame.register(3) as usize, frame.register(4) as usize);
        let (thread, server) = (caller.thread, caller.domain);
        // Checks first: the receive half's arguments, then the reply.
        let port = self.receive_right(server, port_name)?;
        let buffer = self.domain(server).ok_or(Error::BadAddress)?.domain.check_writable(buffer)?;
        let client = self.objects.thread(thread).and_then(|entry| entry.serving).ok_or(Error::NotInCall)?;
        let reply_to = self.objects.thread(client).and_then(|entry| entry.reply_to()).ok_or(Error::NotInCall)?;
        let next = self.objects.port(port).and_then(|entry| entry.first_sender());
        let next_length = next.and_then(|next| self.objects.thread(next)).and_then(|entry| entry.pending);
        if next_length.is_some_and(|pending| pending.length > buffer.length) {
            // The next queued request would not fit: refused before the
            // reply goes anywhere.
            return Err(Error::BadMessage);
        }
        // Point of no return (a bad reply is the client's error).
        let result = self.deliver_reply(server, reply, reply_to);
        if let Some(client_frame) = self.blocked_frame(client) {
            client_frame.set_result(result);
        }
        if let Some(entry) = self.objects.thread_mut(thread) {
            entry.serving = None;
        }
        if let Some(entry) = self.objects.thread_mut(client) {
            entry.set_reply_to(None);
        }
        if self.objects.port(port).is_some_and(|entry| entry.queued > 0) {
            // Others wait for this server: the client queues, the server
            // takes the next request.
            self.wake(client);
            return self.receive_next(caller, port_name, UserRange::new(buffer.address, buffer.length));
        }
        // Nobody waits: become a receiver and hand the processor straight
        // back to the client.
        if let Some(entry) = self.objects.thread_mut(thread) {
            entry.state = ThreadState::Receiving(port);
            entry.set_receive_buffer(Some(Destination {
                domain: server,
                address: buffer.address,
                capacity: buffer.length,
            }));
        }
        self.objects.push_receiver(port, thread);
        Ok(self.prepare_switch(client).map_or(Next::Block, Next::Switch))
    }
}
