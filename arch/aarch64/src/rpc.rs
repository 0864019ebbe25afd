//! RPC: the migrating path, the switching (static-thread) path, and the
//! choice between them — all behind one client call.
//!
//! **Migrating** (Ford & Lepreau §6): the client's thread takes an
//! unoccupied activation from the port's pool; the request is copied
//! *once*, straight from the client's buffer onto that activation's stack;
//! the activation is pushed on the thread's chain, the client's registers
//! are saved in the client's activation, and the trap returns into the
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
//! **Choice** ([`tern_core::thread::Objects::route`]): a free activation
//! first; else a waiting server thread; else queue behind busy server
//! threads; else (a pool exists but is empty) wait for an activation.
//! Taking a pool's *last* activation first makes a *sidetrack* upcall into
//! the server, when it asked for one, so it can add activations; the call
//! is then retried (the client's `svc` is re-executed).
//!
//! Every check comes before any change (the seL4 fast-path shape): a bad
//! port name, a missing right, a malformed or oversized message, or a
//! buffer the caller does not own returns an error with nothing
//! delivered. A reply too large for the client's buffer is an error to the
//! client, and nothing of it is written.
//!
//! This is the general path, in Rust. It is correct first; the benchmark
//! says how long it is.

use crate::exception::TrapFrame;
use crate::state::{self, Kernel};
use crate::threads;
use crate::{cpu, memory};
use tern_core::abi::{Call, Error, LEND_MAX, LEND_WRITABLE, MessageHeader, NO_RIGHT, encode_result};
use tern_core::capability::{Capability, PortId};
use tern_core::domain::{DomainId, UserRange};
use tern_core::frame::PhysRange;
use tern_core::thread::{ActivationId, Destination, PendingRequest, Route, ThreadId, ThreadState, UserContext};
use tern_inks::mode::DomainMode;

/// Room a server activation needs below a request on its stack.
const STACK_MARGIN: u64 = 16 << 10;

/// How a kernel call's results reach the caller.
pub enum Completion {
    /// Write this into x0/x1.
    Reply(Result<usize, Error>),
    /// The frame has been set already (rewritten for a migration, or
    /// filled in by whoever woke the caller).
    FrameSet,
}

/// Save a trap frame's user registers.
pub fn save(frame: &TrapFrame) -> UserContext {
    UserContext { x: frame.x, sp: frame.sp_el0, pc: frame.elr, pstate: frame.spsr }
}

/// Load user registers into a trap frame.
pub fn load(frame: &mut TrapFrame, context: &UserContext) {
    frame.x = context.x;
    frame.sp_el0 = context.sp;
    frame.elr = context.pc;
    frame.spsr = context.pstate;
}

/// Write a call's outcome into a frame's x0/x1.
pub fn write_result(frame: &mut TrapFrame, result: Result<usize, Error>) {
    let (status, value) = encode_result(result);
    frame.x[0] = status as u64;
    frame.x[1] = value as u64;
}

/// The frame of a thread blocked in a kernel call.
pub fn blocked_frame(kernel: &mut Kernel, thread: ThreadId) -> Option<&'static mut TrapFrame> {
    let address = kernel.objects.thread(thread)?.frame as usize;
    // SAFETY: `frame` is the trap frame on the thread's own kernel stack,
    // recorded when it entered the kernel call it is blocked in; it stays
    // there until the thread runs again, and nothing else refers to it.
    (address != 0).then(|| unsafe { &mut *(address as *mut TrapFrame) })
}

/// Copy `length` bytes from `source` (readable by its domain: its region
/// or the shared image) to `destination` (a domain's region), through the
/// kernel's addresses for both.
fn copy(kernel: &mut Kernel, source: usize, destination: usize, length: usize) {
    if length == 0 {
        return;
    }
    let from = memory::kernel_address(kernel.arena, source);
    let to = memory::kernel_address(kernel.arena, destination);
    // SAFETY: both ranges were checked against their domains' records
    // (`check_readable`/`check_writable`) by the caller; the alias maps the
    // whole arena for EL1 and the image is mapped everywhere; the ranges
    // lie in different memory or are the same domain's distinct buffers.
    unsafe { core::ptr::copy(from as *const u8, to as *mut u8, length) };
    if length > MessageHeader::SIZE {
        kernel.statistics().payload_copies += 1;
    }
}

fn read_header(kernel: &Kernel, address: usize) -> MessageHeader {
    let from = memory::kernel_address(kernel.arena, address);
    // SAFETY: the caller checked that at least a header's worth of bytes
    // at `address` is readable by the sending domain.
    let bytes = unsafe { core::slice::from_raw_parts(from as *const u8, MessageHeader::SIZE) };
    MessageHeader::read_from(bytes).unwrap_or_default()
}

/// Check a message claimed by `domain`: readable, at least a header and
/// at most `MESSAGE_MAX` long; the port its right names, if any.
fn check_message(
    kernel: &Kernel,
    domain: DomainId,
    claim: UserRange,
) -> Result<(MessageHeader, Option<PortId>), Error> {
    let record = kernel.domain(domain).ok_or(Error::BadAddress)?;
    let checked = record.domain.check_readable(&kernel.image, claim)?;
    MessageHeader::check_length(checked.length)?;
    let header = read_header(kernel, checked.address);
    let right = if header.right == NO_RIGHT {
        None
    } else {
        Some(record.space.lookup(header.right).ok_or(Error::NoRight)?.port)
    };
    Ok((header, right))
}

/// Stamp the header of a message of `length` bytes just delivered at
/// `address` (in `receiver`'s region): its `right` becomes `receiver`'s
/// name for `port` (granting it a send right), its `length` the payload's
/// true length and `reserved` zero, whatever the sender wrote there.
fn deliver_header(kernel: &mut Kernel, receiver: DomainId, address: usize, length: usize, port: Option<PortId>) {
    let name = match port {
        Some(port) => match kernel.domain_mut(receiver) {
            Some(record) => record.space.insert(Capability { port, receive: false }),
            None => return,
        },
        None => NO_RIGHT,
    };
    let to = memory::kernel_address(kernel.arena, address + 4);
    let payload = (length - MessageHeader::SIZE) as u32;
    // SAFETY: `address` is the start of a message just copied into the
    // receiver's region (checked writable), at least a header long, so
    // bytes 4..16 of it are the receiver's.
    unsafe {
        (to as *mut u32).write_unaligned(name);
        ((to + 4) as *mut u64).write_unaligned(u64::from(payload));
    }
}

/// Remember where the current thread's trap frame is, so whoever wakes it
/// can write its results there.
pub fn register_frame(kernel: &mut Kernel, frame: &mut TrapFrame) {
    let current = kernel.current;
    if let Some(thread) = kernel.objects.thread_mut(current) {
        thread.frame = frame as *mut TrapFrame as u64;
    }
}

/// Check `server`'s reply and, if it is good and fits, copy it into
/// `reply_to` (granting any right it carries): the reply's length, or the
/// error for the client, with nothing written.
fn deliver_reply(
    kernel: &mut Kernel,
    server: DomainId,
    reply: UserRange,
    reply_to: Destination,
) -> Result<usize, Error> {
    let (_, right) = check_message(kernel, server, reply)?;
    if reply.length > reply_to.capacity {
        return Err(Error::ReplyTooLarge);
    }
    copy(kernel, reply.address, reply_to.address, reply.length);
    deliver_header(kernel, reply_to.domain, reply_to.address, reply.length, right);
    Ok(reply.length)
}

/// The current thread, its top activation and that activation's domain.
fn caller(kernel: &Kernel) -> Result<(ThreadId, ActivationId, DomainId), Error> {
    let thread = kernel.current;
    let top = kernel.objects.thread(thread).and_then(|entry| entry.top).ok_or(Error::NotInCall)?;
    let domain = kernel.objects.activation(top).ok_or(Error::NotInCall)?.domain;
    Ok((thread, top, domain))
}

enum Step {
    Migrated(u64),
    HandOff(Option<threads::Switch>),
    Block,
    WaitForActivation,
}

/// A region of the client's memory lent to the server for one call
/// ([`tern_core::abi::Call::CallLending`]).
#[derive(Clone, Copy, Debug)]
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
    fn from_frame(frame: &TrapFrame) -> Option<Lend> {
        (frame.x[8] == Call::CallLending as u64).then(|| Lend {
            address: frame.x[5],
            length: frame.x[6] & !(LEND_WRITABLE as u64),
            writable: frame.x[6] & LEND_WRITABLE as u64 != 0,
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

/// Check a lend by `client`: 1 byte to [`LEND_MAX`], and — from a
/// protected client — inside its own region (a merged client is part of
/// the kernel domain: its pointers are trusted, as the kernel's are).
fn check_lend(kernel: &Kernel, client: DomainId, lend: Lend) -> Result<(), Error> {
    if lend.length == 0 || lend.length > LEND_MAX as u64 {
        return Err(Error::InvalidArgument);
    }
    let record = kernel.domain(client).ok_or(Error::BadAddress)?;
    if record.mode == DomainMode::Protected {
        record.domain.check_writable(UserRange::new(lend.address as usize, lend.length as usize))?;
    }
    Ok(())
}

/// What a lend needs of server activation `activation`: `Ok(true)` to map
/// it into the server's view (protected server, another domain's pages),
/// `Ok(false)` for nothing (a merged server, which sees the caller's
/// memory already, or a server lending to itself), `CannotLend` from a
/// merged client to a protected server (its memory is EL1-only).
fn lend_needs_mapping(kernel: &Kernel, client: DomainId, activation: ActivationId) -> Result<bool, Error> {
    let server = kernel.objects.activation(activation).ok_or(Error::PortDead)?;
    if server.entry_pstate == DomainMode::Merged.entry_pstate() || server.domain == client {
        return Ok(false);
    }
    match kernel.domain(client).map(|record| record.mode) {
        Some(DomainMode::Protected) => Ok(true),
        _ => Err(Error::CannotLend),
    }
}

/// `Call`: x0 port name, x1/x2 request, x3/x4 reply buffer; and
/// `CallLending`: the same, plus x5/x6 the lent region.
pub fn call(frame: &mut TrapFrame) -> Completion {
    let port_name = frame.x[0] as u32;
    let request = UserRange::new(frame.x[1] as usize, frame.x[2] as usize);
    let reply = UserRange::new(frame.x[3] as usize, frame.x[4] as usize);
    let lend = Lend::from_frame(frame);
    loop {
        let step = state::with(|kernel| {
            register_frame(kernel, frame);
            call_step(kernel, frame, port_name, request, reply, lend)
        });
        match step {
            Err(error) => return Completion::Reply(Err(error)),
            Ok(Step::Migrated(view)) => {
                cpu::switch_view(view);
                return Completion::FrameSet;
            }
            Ok(Step::HandOff(switch)) => {
                threads::perform(switch);
                return Completion::FrameSet;
            }
            Ok(Step::Block) => {
                threads::block();
                return Completion::FrameSet;
            }
            Ok(Step::WaitForActivation) => {
                threads::block();
                if threads::take_interrupted() {
                    return Completion::Reply(Err(Error::Interrupted));
                }
            }
        }
    }
}

fn call_step(
    kernel: &mut Kernel,
    frame: &mut TrapFrame,
    port_name: u32,
    request: UserRange,
    reply: UserRange,
    lend: Option<Lend>,
) -> Result<Step, Error> {
    let (thread, client_activation, client) = caller(kernel)?;
    let record = kernel.domain(client).ok_or(Error::BadAddress)?;
    let port = record.space.lookup(port_name).ok_or(Error::NoSuchPort)?.port;
    let reply = record.domain.check_writable(reply)?;
    let (header, right) = check_message(kernel, client, request)?;
    if let Some(lend) = lend {
        check_lend(kernel, client, lend)?;
    }
    let reply_to = Destination { domain: client, address: reply.address, capacity: reply.length };
    let route = kernel.objects.route(port);
    if lend.is_some() && matches!(route, Route::HandOff(_) | Route::QueueForThread) {
        return Err(Error::CannotLend);
    }
    match route {
        Route::Migrate(_) => {
            let last = kernel.objects.pool_free(port) == 1;
            let sidetrack = kernel.objects.port(port).and_then(|entry| {
                let free = entry
                    .sidetrack
                    .filter(|&activation| kernel.objects.activation(activation).is_some_and(|a| a.occupant.is_none()));
                if last { free } else { None }
            });
            let already = kernel.objects.thread(thread).and_then(|entry| entry.sidetracked) == Some(port);
            if let (Some(sidetrack), false) = (sidetrack, already) {
                kernel.statistics().sidetracks += 1;
                return migrate_into(kernel, frame, thread, client_activation, sidetrack, None, reply_to, port, None);
            }
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.sidetracked = None;
            }
            let next = kernel.objects.port(port).and_then(|entry| entry.pool_head).ok_or(Error::PortDead)?;
            let mapped = match lend {
                Some(lend) if lend_needs_mapping(kernel, client, next)? => {
                    let server = kernel.objects.activation(next).ok_or(Error::PortDead)?.domain;
                    crate::domains::lend_map(kernel, server, lend.region(), lend.writable)?;
                    kernel.statistics().lends_mapped += 1;
                    Some(lend)
                }
                _ => None,
            };
            let activation = kernel.objects.pool_take(port).ok_or(Error::PortDead)?;
            kernel.statistics().migrated += 1;
            if let Some(entry) = kernel.objects.activation_mut(activation) {
                entry.set_lent(mapped.map(|lend| lend.registers()));
            }
            let step = migrate_into(
                kernel,
                frame,
                thread,
                client_activation,
                activation,
                Some((request, header, right)),
                reply_to,
                port,
                lend,
            );
            if step.is_err() {
                // Refused after all (a request too big for its stack, a
                // server gone): nothing may stay lent or taken.
                if let Some(server) = kernel.objects.activation(activation).map(|entry| entry.domain) {
                    end_lend(kernel, activation, server);
                }
                kernel.objects.pool_return(activation);
            }
            step
        }
        Route::HandOff(server) => {
            let destination =
                kernel.objects.thread(server).and_then(|entry| entry.receive_buffer()).ok_or(Error::PortDead)?;
            if request.length > destination.capacity {
                return Err(Error::BadMessage);
            }
            kernel.objects.pop_receiver(port);
            copy(kernel, request.address, destination.address, request.length);
            deliver_header(kernel, destination.domain, destination.address, request.length, right);
            if let Some(server_frame) = blocked_frame(kernel, server) {
                write_result(server_frame, Ok(request.length));
            }
            if let Some(entry) = kernel.objects.thread_mut(server) {
                entry.serving = Some(thread);
                entry.set_receive_buffer(None);
            }
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.state = ThreadState::WaitingForReply;
                entry.set_reply_to(Some(reply_to));
            }
            let _ = header;
            kernel.statistics().handed_off += 1;
            Ok(Step::HandOff(threads::prepare_switch(kernel, server)))
        }
        Route::QueueForThread => {
            let pending = PendingRequest { domain: client, address: request.address, length: request.length };
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.state = ThreadState::WaitingForReceiver(port);
                entry.pending = Some(pending);
                entry.set_reply_to(Some(reply_to));
            }
            if let Some(entry) = kernel.objects.port_mut(port) {
                entry.queue_sender(thread);
            }
            kernel.statistics().queued += 1;
            Ok(Step::Block)
        }
        Route::WaitForActivation => {
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.state = ThreadState::WaitingForActivation(port);
            }
            if let Some(entry) = kernel.objects.port_mut(port) {
                entry.wait_for_activation(thread);
            }
            kernel.statistics().waited += 1;
            Ok(Step::WaitForActivation)
        }
        Route::Dead => Err(Error::PortDead),
    }
}

/// The point of no return of a migrating call: everything has been
/// checked. Copy the request onto the activation's stack, push it, save
/// the client, and aim the trap frame at the server's entry.
#[allow(clippy::too_many_arguments)]
fn migrate_into(
    kernel: &mut Kernel,
    frame: &mut TrapFrame,
    thread: ThreadId,
    client_activation: ActivationId,
    activation: ActivationId,
    message: Option<(UserRange, MessageHeader, Option<PortId>)>,
    reply_to: Destination,
    port: PortId,
    lend: Option<Lend>,
) -> Result<Step, Error> {
    // What an upcall needs of the server's domain (view, PSTATE, context)
    // is in the activation, where the fast path reads it too.
    let target = kernel.objects.activation(activation).ok_or(Error::PortDead)?;
    let (server, entry, stack_top, stack_size) = (target.domain, target.entry, target.stack_top, target.stack_size);
    let (own_view, pstate, context) = (target.view, target.entry_pstate, target.context);
    // A merged server runs in the caller's view (it is mapped in all of
    // them), recorded for returns into it; a protected one in its own.
    let view = if pstate == DomainMode::Merged.entry_pstate() { cpu::translation() } else { own_view };
    let length = message.map_or(0, |(request, _, _)| request.length) as u64;
    if length + STACK_MARGIN > stack_size {
        return Err(Error::BadMessage);
    }
    if !kernel.domain(server).is_some_and(|record| record.alive) {
        return Err(Error::PortDead);
    }
    // Point of no return.
    let message_address = (stack_top - length) & !15;
    if let Some((request, _, right)) = message {
        copy(kernel, request.address, message_address as usize, request.length);
        deliver_header(kernel, server, message_address as usize, request.length, right);
    }
    let client_watched = match kernel.objects.activation_mut(client_activation) {
        Some(client) => {
            client.saved = save(frame);
            client.control.stops() || client.control.spliced
        }
        None => false,
    };
    kernel.objects.push(thread, activation);
    if let Some(target) = kernel.objects.activation_mut(activation) {
        target.set_reply(reply_to);
        target.view = view;
        if client_watched {
            // The way back must stop (or unwind) there: not the fast one.
            target.watch();
        }
    }
    let depth = kernel.objects.chain(thread).len();
    kernel.statistics().longest_chain = kernel.statistics().longest_chain.max(depth);
    let mut entry_state = UserContext { sp: message_address, pc: entry, pstate, ..UserContext::default() };
    if message.is_some() {
        entry_state.x[0] = message_address;
        entry_state.x[1] = length;
        (entry_state.x[4], entry_state.x[5]) = lend.map_or((0, 0), Lend::registers);
    } else {
        // A sidetrack upcall: x0 = port (server's name for it is not
        // needed: the handler serves one port), x1 = free activations.
        entry_state.x[0] = port.get() as u64;
        entry_state.x[1] = kernel.objects.pool_free(port) as u64;
    }
    entry_state.x[2] = context;
    load(frame, &entry_state);
    Ok(Step::Migrated(view))
}

/// `Return`: x0/x1 reply, from a server activation.
pub fn return_from_call(frame: &mut TrapFrame) -> Completion {
    let reply = UserRange::new(frame.x[0] as usize, frame.x[1] as usize);
    let outcome = state::with(|kernel| -> Result<Option<u64>, Error> {
        let (thread, activation, server) = caller(kernel)?;
        let (port, caller_activation, reply_to, sidetrack) = {
            let entry = kernel.objects.activation(activation).ok_or(Error::NotInCall)?;
            let port = entry.port.ok_or(Error::NotInCall)?;
            (port, entry.caller, entry.reply(), entry.is_sidetrack())
        };
        let Some(caller_activation) = caller_activation else {
            // The bottom of a segment split off below a terminated
            // activation: nobody waits for this reply. The activation goes
            // back to its pool and the segment's thread ends.
            end_lend(kernel, activation, server);
            kernel.objects.pop(thread);
            kernel.objects.pool_return(activation);
            if let Some(waiter) = kernel.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
                threads::wake(kernel, waiter);
            }
            return Ok(None);
        };
        let result = if sidetrack { Ok(0) } else { deliver_reply(kernel, server, reply, reply_to) };
        end_lend(kernel, activation, server);
        kernel.objects.pop(thread);
        if !sidetrack {
            kernel.objects.pool_return(activation);
        }
        let waiter = kernel.objects.port_mut(port).and_then(|entry| entry.next_waiter());
        if let Some(waiter) = waiter {
            threads::wake(kernel, waiter);
        }
        let saved = kernel.objects.activation(caller_activation).map(|entry| entry.saved).unwrap_or_default();
        load(frame, &saved);
        if sidetrack {
            // Re-execute the client's `svc`: the call proceeds now.
            frame.elr -= 4;
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.sidetracked = Some(port);
            }
        } else {
            write_result(frame, result);
        }
        Ok(Some(kernel.current_view()))
    });
    match outcome {
        Ok(Some(view)) => {
            cpu::switch_view(view);
            Completion::FrameSet
        }
        Ok(None) => threads::end_current_thread(0),
        Err(error) => Completion::Reply(Err(error)),
    }
}

/// A fault in a server activation: the server domain has been terminated;
/// unwind the thread to the caller, which gets `CallAborted`. Returns
/// false if the top activation is not a server activation.
pub fn abort_call(kernel: &mut Kernel, frame: &mut TrapFrame) -> bool {
    let Ok((thread, activation, _)) = caller(kernel) else { return false };
    let Some(caller_activation) = kernel.objects.activation(activation).and_then(|entry| entry.port.and(entry.caller))
    else {
        return false;
    };
    if let Some(server) = kernel.objects.activation(activation).map(|entry| entry.domain) {
        end_lend(kernel, activation, server);
    }
    kernel.objects.pop(thread);
    let saved = kernel.objects.activation(caller_activation).map(|entry| entry.saved).unwrap_or_default();
    load(frame, &saved);
    write_result(frame, Err(Error::CallAborted));
    true
}

/// The call `activation` (of `server`) served has ended: take back what
/// was lent to it, if anything was mapped.
pub fn end_lend(kernel: &mut Kernel, activation: ActivationId, server: DomainId) {
    let lent = kernel.objects.activation(activation).and_then(|entry| entry.lent());
    if let Some((address, word)) = lent {
        let (length, writable) = (word & !(LEND_WRITABLE as u64), word & LEND_WRITABLE as u64 != 0);
        crate::domains::lend_unmap(kernel, server, PhysRange::new(address, address + length), writable);
        if let Some(entry) = kernel.objects.activation_mut(activation) {
            entry.set_lent(None);
        }
    }
}

/// `Receive`: x0 port, x1/x2 buffer.
pub fn receive(frame: &mut TrapFrame) -> Completion {
    let port_name = frame.x[0] as u32;
    let buffer = UserRange::new(frame.x[1] as usize, frame.x[2] as usize);
    receive_next(port_name, buffer)
}

fn receive_next(port_name: u32, buffer: UserRange) -> Completion {
    let outcome = state::with(|kernel| -> Result<Option<usize>, Error> {
        let (thread, _, server) = caller(kernel)?;
        let port = kernel.receive_right(server, port_name)?;
        let buffer = kernel.domain(server).ok_or(Error::BadAddress)?.domain.check_writable(buffer)?;
        let first_time = kernel.objects.thread(thread).is_some_and(|entry| entry.serves != Some(port));
        if first_time {
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.serves = Some(port);
            }
            if let Some(entry) = kernel.objects.port_mut(port) {
                entry.server_threads += 1;
            }
            // Callers waiting for a server may now queue for this thread.
            while let Some(waiter) = kernel.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
                threads::wake(kernel, waiter);
            }
        }
        let destination = Destination { domain: server, address: buffer.address, capacity: buffer.length };
        // A queued client first.
        let queued = kernel.objects.port_mut(port).and_then(|entry| entry.next_sender());
        if let Some(client) = queued {
            let pending = kernel.objects.thread(client).and_then(|entry| entry.pending).ok_or(Error::PortDead)?;
            if pending.length > destination.capacity {
                // Put it back: this buffer cannot take it.
                if let Some(entry) = kernel.objects.port_mut(port) {
                    entry.requeue_sender(client);
                }
                return Err(Error::BadMessage);
            }
            let right = {
                let header = read_header(kernel, pending.address);
                if header.right == NO_RIGHT {
                    None
                } else {
                    kernel.domain(pending.domain).and_then(|record| record.space.lookup(header.right)).map(|c| c.port)
                }
            };
            copy(kernel, pending.address, destination.address, pending.length);
            deliver_header(kernel, server, destination.address, pending.length, right);
            if let Some(entry) = kernel.objects.thread_mut(client) {
                entry.state = ThreadState::WaitingForReply;
                entry.pending = None;
            }
            if let Some(entry) = kernel.objects.thread_mut(thread) {
                entry.serving = Some(client);
            }
            return Ok(Some(pending.length));
        }
        if let Some(entry) = kernel.objects.thread_mut(thread) {
            entry.state = ThreadState::Receiving(port);
            entry.set_receive_buffer(Some(destination));
        }
        kernel.objects.push_receiver(port, thread);
        Ok(None)
    });
    match outcome {
        Err(error) => Completion::Reply(Err(error)),
        Ok(Some(length)) => Completion::Reply(Ok(length)),
        Ok(None) => {
            threads::block();
            Completion::FrameSet
        }
    }
}

/// `ReplyReceive`: x0/x1 reply, x2 port, x3/x4 buffer.
pub fn reply_receive(frame: &mut TrapFrame) -> Completion {
    let reply = UserRange::new(frame.x[0] as usize, frame.x[1] as usize);
    let port_name = frame.x[2] as u32;
    let buffer = UserRange::new(frame.x[3] as usize, frame.x[4] as usize);
    enum Next {
        TakeQueued,
        HandBack(Option<threads::Switch>),
    }
    let outcome = state::with(|kernel| -> Result<Next, Error> {
        register_frame(kernel, frame);
        let (thread, _, server) = caller(kernel)?;
        // Checks first: the receive half's arguments, then the reply.
        let port = kernel.receive_right(server, port_name)?;
        let buffer = kernel.domain(server).ok_or(Error::BadAddress)?.domain.check_writable(buffer)?;
        let client = kernel.objects.thread(thread).and_then(|entry| entry.serving).ok_or(Error::NotInCall)?;
        let reply_to = kernel.objects.thread(client).and_then(|entry| entry.reply_to()).ok_or(Error::NotInCall)?;
        let result = deliver_reply(kernel, server, reply, reply_to);
        if let Some(client_frame) = blocked_frame(kernel, client) {
            write_result(client_frame, result);
        }
        if let Some(entry) = kernel.objects.thread_mut(thread) {
            entry.serving = None;
        }
        if let Some(entry) = kernel.objects.thread_mut(client) {
            entry.set_reply_to(None);
        }
        if kernel.objects.port(port).is_some_and(|entry| entry.queued > 0) {
            // Others wait for this server: the client queues, the server
            // takes the next request.
            threads::wake(kernel, client);
            return Ok(Next::TakeQueued);
        }
        // Nobody waits: become a receiver and hand the processor straight
        // back to the client.
        if let Some(entry) = kernel.objects.thread_mut(thread) {
            entry.state = ThreadState::Receiving(port);
            entry.set_receive_buffer(Some(Destination {
                domain: server,
                address: buffer.address,
                capacity: buffer.length,
            }));
        }
        kernel.objects.push_receiver(port, thread);
        Ok(Next::HandBack(threads::prepare_switch(kernel, client)))
    });
    match outcome {
        Err(error) => Completion::Reply(Err(error)),
        Ok(Next::TakeQueued) => receive_next(port_name, buffer),
        Ok(Next::HandBack(switch)) => {
            threads::perform(switch);
            Completion::FrameSet
        }
    }
}
