//! Threads, activations and ports: the migrating-thread model's objects.
//!
//! After Ford & Lepreau §1.1 and §4:
//!
//! - a **thread** is only the schedulable entity — priority, policy, CPU
//!   accounting, one kernel stack (owned by the arch layer) — plus a
//!   **chain of activations**, recorded here as the top activation and each
//!   activation's link to the one below it (its caller);
//! - an **activation** is an execution context in one domain: the user
//!   registers saved while it waits for a call it made, its stack, its
//!   entry point, and — for a server activation — where the reply goes. It
//!   is the user-visible point of control. A server pre-creates
//!   *unoccupied* activations in a port's **pool**; a migrating RPC takes
//!   one, and the calling thread itself runs in it;
//! - a **port** is the RPC endpoint: served by its pool (migrating), by
//!   server threads waiting in receive (switching), or both.
//!
//! Everything links by number into [`Objects`]. Its slabs hold boxed
//! objects, never moved once made, and a slab's storage doubles as a table
//! of pointers indexed by number (slot 0 unused: numbers start at 1, so
//! "none" is 0). Threads, activations and ports are `#[repr(C)]`: the
//! assembly fast path of the migrating RPC walks these same objects (the
//! arch crate passes it the field offsets), so there is one copy of the
//! state, not a shadow.
//! The chain lives in the activations (not on a kernel stack), so it can
//! later be broken at any point — termination splits a thread by cutting
//! one link.

use crate::capability::PortId;
use crate::domain::DomainId;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::num::NonZeroU32;

/// A thread's number (never 0: `Option<ThreadId>` is one word, 0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ThreadId(pub NonZeroU32);

/// An activation's number (never 0: `Option<ActivationId>` is one word,
/// 0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct ActivationId(pub NonZeroU32);

impl ThreadId {
    /// The thread numbered `number`, if it is not 0.
    pub const fn new(number: u32) -> Option<ThreadId> {
        match NonZeroU32::new(number) {
            Some(number) => Some(ThreadId(number)),
            None => None,
        }
    }

    /// Its number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

impl ActivationId {
    /// Its number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// A domain's user registers as saved in an activation: x0-x30, the stack
/// pointer, the resume address and PSTATE. 16-byte aligned, like the
/// kernel's trap frame, so that copying registers between the two uses
/// SIMD pairs (the target keeps strict alignment: see `docs/design.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct UserContext {
    /// General-purpose registers x0 to x30.
    pub x: [u64; 31],
    /// SP_EL0.
    pub sp: u64,
    /// Where to resume (ELR).
    pub pc: u64,
    /// PSTATE to resume with (SPSR).
    pub pstate: u64,
}

/// Scheduling policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Round robin among equals, preempted by the timer.
    RoundRobin,
}

/// Why a thread is not running. `repr(C, u32)`: a 32-bit tag (the
/// discriminants below) then the payload at offset 8 — the switching fast
/// path writes these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, u32)]
pub enum ThreadState {
    /// On the run queue.
    Ready = 0,
    /// On a processor.
    Running = 1,
    /// Waiting for a free activation of a port's pool.
    WaitingForActivation(PortId) = 2,
    /// A client waiting for a server thread to take its request.
    WaitingForReceiver(PortId) = 3,
    /// A client whose request a server thread is handling.
    WaitingForReply = 4,
    /// A server thread waiting in receive.
    Receiving(PortId) = 5,
    /// Waiting for another thread to end.
    Joining(ThreadId) = 6,
    /// Ended with a result.
    Ended(usize) = 7,
    /// Stopped on its way back into a suspended (or held) activation: it
    /// runs again once that activation is resumed.
    Suspended(ActivationId) = 8,
    /// Waiting for another thread to stop in this activation, to read or
    /// write its registers.
    WaitingForState(ActivationId) = 9,
    /// Sleeping until the counter passes this value.
    Sleeping(u64) = 10,
    /// Waiting in `ConsoleRead` for console input (`crate::console`).
    ReadingConsole = 11,
}

impl ThreadState {
    /// Whether an alert may end the wait with `Interrupted` (a blocking
    /// kernel call the thread is in; not a reply a server is working on,
    /// which the alert reaches through the chain instead).
    pub fn interruptible(&self) -> bool {
        matches!(
            self,
            ThreadState::WaitingForActivation(_)
                | ThreadState::WaitingForReceiver(_)
                | ThreadState::Receiving(_)
                | ThreadState::Joining(_)
                | ThreadState::WaitingForState(_)
                | ThreadState::Sleeping(_)
                | ThreadState::ReadingConsole
        )
    }
}

/// Where a reply (or a received request) must be written: a range of a
/// domain's memory, already checked to be writable by that domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The domain owning the memory.
    pub domain: DomainId,
    /// Start address.
    pub address: usize,
    /// Bytes available.
    pub capacity: usize,
}

/// A request a client thread waits to hand to a server thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    /// The client's domain.
    pub domain: DomainId,
    /// The request's address in the client's memory (checked readable).
    pub address: usize,
    /// Its length.
    pub length: usize,
}

/// A thread.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Thread {
    /// The top of its chain of activations (first: the fast path reads it).
    pub top: Option<ActivationId>,
    /// Its number.
    pub id: ThreadId,
    /// What it is doing.
    pub state: ThreadState,
    /// The arch layer's record of the kernel call it is in (its trap
    /// frame), where whoever wakes it writes its results; 0 if none.
    pub frame: u64,
    /// Where the arch layer saves its kernel context while it is parked.
    pub kernel_context: u64,
    /// As a server thread: the client whose request it is handling.
    pub serving: Option<ThreadId>,
    /// The next thread in the queue it waits in (a port's receivers).
    pub next_queued: Option<ThreadId>,
    /// As a server thread in receive: where the next request goes
    /// (`receive_domain` 0: not receiving).
    pub receive_address: u64,
    /// Bytes available at `receive_address`.
    pub receive_capacity: u64,
    /// As a client of a server thread: where the reply goes
    /// (`reply_domain` 0: no reply expected).
    pub reply_address: u64,
    /// Bytes available at `reply_address`.
    pub reply_capacity: u64,
    /// The domain owning the receive buffer.
    pub receive_domain: DomainId,
    /// The domain owning the reply buffer.
    pub reply_domain: DomainId,
    /// The port a server thread serves (counted once in the port's
    /// `server_threads`).
    pub serves: Option<PortId>,
    /// 0 (lowest) to 31.
    pub priority: u8,
    /// Its policy.
    pub policy: Policy,
    /// The domain that created it (for joins).
    pub creator: DomainId,
    /// Counter ticks charged to it.
    pub cpu_time: u64,
    /// As a switching client queued on a port: the request it waits to
    /// hand over.
    pub pending: Option<PendingRequest>,
    /// Set after a sidetrack upcall for this port, so the retried call
    /// does not sidetrack again.
    pub sidetracked: Option<PortId>,
    /// An alert ended the blocking kernel call it was in: the call returns
    /// `Interrupted` (taken by the call when it runs again).
    pub interrupted: bool,
    /// Parked at a user boundary: its trap frame (`frame`) holds its top
    /// activation's complete user registers, and nothing in the kernel will
    /// change them before it runs again (preempted, or stopped by an APC).
    pub at_boundary: bool,
    /// After a split: the thread now carrying this one's base activation
    /// (the one a join waits for), until that thread is forgotten.
    pub base_moved_to: Option<ThreadId>,
    /// Where its CPU time went: counter ticks by the domain of the top
    /// activation when they were charged.
    pub by_domain: Vec<(DomainId, u64)>,
    /// A split-off thread's first run: resume its top activation's saved
    /// registers with this error code in x0 (0: a fresh upcall instead).
    pub resume_with: usize,
    /// It ended because the domain code in its own activation faulted.
    pub faulted: bool,
    /// Nobody will join it (the kernel started a restarted domain on it):
    /// it is forgotten once it has ended and the machine has left it.
    pub detached: bool,
    /// Made by a split (`Objects::split`): its number was never handed to
    /// a domain, so only a join following a base activation reaches it.
    pub split_off: bool,
}

impl Thread {
    /// Charge `ticks` to it, spent in `domain` (`None`: in the kernel with
    /// no activation).
    pub fn charge(&mut self, ticks: u64, domain: Option<DomainId>) {
        self.cpu_time += ticks;
        let domain = domain.unwrap_or(DomainId(0));
        match self.by_domain.iter_mut().find(|(entry, _)| *entry == domain) {
            Some((_, spent)) => *spent += ticks,
            None => self.by_domain.push((domain, ticks)),
        }
    }
}

impl Thread {
    /// Where its next request goes, while it waits in receive.
    pub fn receive_buffer(&self) -> Option<Destination> {
        (self.receive_domain.0 != 0).then_some(Destination {
            domain: self.receive_domain,
            address: self.receive_address as usize,
            capacity: self.receive_capacity as usize,
        })
    }

    /// Set (or clear) where its next request goes.
    pub fn set_receive_buffer(&mut self, buffer: Option<Destination>) {
        let buffer = buffer.unwrap_or(Destination { domain: DomainId(0), address: 0, capacity: 0 });
        self.receive_domain = buffer.domain;
        self.receive_address = buffer.address as u64;
        self.receive_capacity = buffer.capacity as u64;
    }

    /// Where its reply goes, while it waits for a server thread.
    pub fn reply_to(&self) -> Option<Destination> {
        (self.reply_domain.0 != 0).then_some(Destination {
            domain: self.reply_domain,
            address: self.reply_address as usize,
            capacity: self.reply_capacity as usize,
        })
    }

    /// Set (or clear) where its reply goes.
    pub fn set_reply_to(&mut self, reply: Option<Destination>) {
        let reply = reply.unwrap_or(Destination { domain: DomainId(0), address: 0, capacity: 0 });
        self.reply_domain = reply.domain;
        self.reply_address = reply.address as u64;
        self.reply_capacity = reply.capacity as u64;
    }
}

/// An activation.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Activation {
    /// The activation below it on the thread's chain.
    pub caller: Option<ActivationId>,
    /// The thread running in it (or in something it called); `None` while
    /// it is unoccupied.
    pub occupant: Option<ThreadId>,
    /// The next free activation of its pool (while it is in the pool).
    pub next_free: Option<ActivationId>,
    /// The port whose pool it belongs to (`None` for a thread's own first
    /// activation).
    pub port: Option<PortId>,
    /// The domain it belongs to, for life.
    pub domain: DomainId,
    /// [`Activation::GENERAL_RETURN`], [`Activation::SIDETRACK`],
    /// [`Activation::LENT`]: one byte, so that the fast return tests the
    /// one bit that sends it to the general path.
    pub flags: u8,
    /// Its number.
    pub id: ActivationId,
    /// Where upcalls into it start.
    pub entry: u64,
    /// The PSTATE upcalls into it start with (EL0t for a protected domain,
    /// EL1t for a merged one): its domain's mode, kept here by the kernel
    /// (a mode changes only while none of the domain's activations is
    /// occupied).
    pub entry_pstate: u64,
    /// Where the trapping fast path of `CallBoundWords` enters it with the
    /// request in registers: the gate's register trampoline when `entry` is
    /// the protected dispatch trampoline (`ServerLayer::register_entry`),
    /// else 0 (the request goes on its stack). Kept with `entry` by the
    /// kernel; right after `entry_pstate`, which the fast path loads with it.
    pub register_entry: u64,
    /// Its stack pointer at the register entry: the top of its stack less
    /// the runtime's reply area ([`crate::abi::REPLY_AREA`]), which the
    /// register trampoline then need not reserve (beside `register_entry`,
    /// which the fast path loads with it).
    pub register_sp: u64,
    /// Top of its stack (exclusive, 16-byte aligned).
    pub stack_top: u64,
    /// The translation-table base (with ASID) its domain runs in, fixed for
    /// the domain's life: kept here so that returning into it or
    /// switching to a thread in it reads one word.
    pub view: u64,
    /// Its domain's context word, passed to upcalls into it (a copy the
    /// kernel keeps current, like `entry_pstate`).
    pub context: u64,
    /// Bytes of its stack.
    pub stack_size: u64,
    /// For a server activation in a call: where its reply goes (address,
    /// capacity; checked writable by `reply_domain` when the call began).
    pub reply_address: u64,
    /// Bytes available at `reply_address`.
    pub reply_capacity: u64,
    /// The domain owning the reply buffer.
    pub reply_domain: DomainId,
    /// Nonzero while it serves a `CallBoundWords` that the trapping fast
    /// path took: its caller's stub takes a reply in registers, which the
    /// fast return of the register trampoline (`svc #2`) then gives. That
    /// path's push writes `reply_domain` and this byte as one 32-bit word;
    /// every other push (the fast paths' with the byte 0, the general
    /// path's [`Activation::set_reply`]) clears it, so it never outlives
    /// the call that set it.
    pub reply_registers: u8,
    /// While it serves a call that lent it a region mapped into its view
    /// (flag [`Activation::LENT`]): the region's address ...
    pub lent_address: u64,
    /// ... and length, with [`crate::abi::LEND_WRITABLE`] set when the
    /// server may write it (the pages covering it are mapped).
    pub lent_length: u64,
    /// The address of its port's record (`Objects::port_address`; 0 for
    /// an activation of no port), for the fast paths' way back: the port
    /// without the port table. Set with `port`, for life; the record
    /// outlives it (a port is forgotten only with its last activation:
    /// `Kernel::remove_port_activation`, `Kernel::destroy_port`). (The
    /// activation grows 432 → 448 bytes: `saved` is 16-byte aligned.)
    pub port_record: u64,
    /// Its user registers while it waits for a call it made (the fast path
    /// reaches the small fields above with short offsets).
    pub saved: UserContext,
    /// Alerts, suspension and the other controls (general path only).
    pub control: Control,
    /// While its alert handler runs: the registers to go back to.
    pub alert_return: Option<Box<UserContext>>,
}

/// An activation's control state (Ford & Lepreau §5.1). Only the general
/// path reads it: whenever it differs from what a fresh activation of the
/// same kind starts with, the activation (or the one above a suspended one)
/// carries [`Activation::WATCHED`], so its return takes the general path,
/// which acts on it and resets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// An alert reached it and has not been taken.
    pub alert_pending: bool,
    /// Alerts stop here (pending) instead of being seen and passed up.
    pub alerts_blocked: bool,
    /// Suspended: the thread must not run its code (an APC stops it on its
    /// way back in).
    pub suspended: bool,
    /// Held for a `get_state`/`set_state`: stop the thread on its way back
    /// in, like a suspension, until the waiter is done.
    pub held: bool,
    /// Activations above it may not change the thread's scheduling state.
    pub forbid_above: bool,
    /// Spliced out: when the thread comes back into it, it is popped at
    /// once and its caller gets `Terminated`.
    pub spliced: bool,
    /// Where to upcall when an alert reaches it with alerts open (the
    /// exception-style delivery a server may ask for); 0: polling only.
    pub alert_handler: u64,
}

impl Control {
    /// What an activation starts with: a server (pool) activation with
    /// alerts blocked, a thread's own activation with them open.
    pub const fn fresh(server: bool) -> Control {
        Control {
            alert_pending: false,
            alerts_blocked: server,
            suspended: false,
            held: false,
            forbid_above: false,
            spliced: false,
            alert_handler: 0,
        }
    }

    /// Whether the thread must stop before running this activation's code.
    pub fn stops(&self) -> bool {
        self.suspended || self.held
    }
}

impl Activation {
    /// Flag: its `Return` must take the general path (a sidetrack's end,
    /// or a lent region to unmap). Bit 0: the fast path tests this bit.
    pub const GENERAL_RETURN: u8 = 1;
    /// Flag: a sidetrack activation (its upcall tells the server its pool
    /// is low).
    pub const SIDETRACK: u8 = 2;
    /// Flag: it serves a call whose lent region is mapped into its view
    /// (`lent_address`, `lent_length`), to unmap when the call ends.
    pub const LENT: u8 = 4;
    /// Flag: its control state (or that of the activation below it, which
    /// its return goes back into) needs the general path.
    pub const WATCHED: u8 = 8;

    /// Leaving its chain: its control state is fresh again, and its return
    /// no longer needs the general path for it.
    pub fn reset_control(&mut self) {
        self.control = Control::fresh(self.port.is_some());
        self.alert_return = None;
        self.flags &= !Self::WATCHED;
        self.set_lent(self.lent());
    }

    /// Mark it for the general path on return (see [`Control`]).
    pub fn watch(&mut self) {
        self.flags |= Self::WATCHED | Self::GENERAL_RETURN;
    }

    /// A sidetrack activation?
    pub fn is_sidetrack(&self) -> bool {
        self.flags & Self::SIDETRACK != 0
    }

    /// Record a lent region mapped for the call it serves (`None`: the
    /// call ended, nothing is lent). Keeps the general-return flag in step.
    pub fn set_lent(&mut self, region: Option<(u64, u64)>) {
        let (address, length) = region.unwrap_or((0, 0));
        self.lent_address = address;
        self.lent_length = length;
        self.flags &= !(Self::LENT | Self::GENERAL_RETURN);
        if region.is_some() {
            self.flags |= Self::LENT;
        }
        if self.flags & (Self::LENT | Self::SIDETRACK | Self::WATCHED) != 0 {
            self.flags |= Self::GENERAL_RETURN;
        }
    }

    /// The lent region mapped for the call it serves, if any.
    pub fn lent(&self) -> Option<(u64, u64)> {
        (self.flags & Self::LENT != 0).then_some((self.lent_address, self.lent_length))
    }

    /// Where its reply goes, while it serves a call.
    pub fn reply(&self) -> Destination {
        Destination {
            domain: self.reply_domain,
            address: self.reply_address as usize,
            capacity: self.reply_capacity as usize,
        }
    }

    /// Record where its reply goes.
    pub fn set_reply(&mut self, destination: Destination) {
        self.reply_domain = destination.domain;
        self.reply_registers = 0;
        self.reply_address = destination.address as u64;
        self.reply_capacity = destination.capacity as u64;
    }
}

/// A port.
#[derive(Clone, Debug)]
#[repr(C)]
pub struct Port {
    /// The first free activation of its pool (a stack linked through
    /// `next_free`: last freed, first reused — its stack is the warmest).
    pub pool_head: Option<ActivationId>,
    /// The first server thread waiting in receive (a FIFO linked through
    /// the threads' `next_queued`).
    pub receivers_head: Option<ThreadId>,
    /// The last one.
    pub receivers_tail: Option<ThreadId>,
    /// How many clients are queued in `senders` (a mirror, for the fast
    /// path).
    pub queued: u32,
    /// How many threads wait for an activation (mirrors `pool_waiters`,
    /// for the fast path, which leaves waking them to the general path).
    pub waiting: u32,
    /// The sidetrack activation, if the server asked for one.
    pub sidetrack: Option<ActivationId>,
    /// Its number.
    pub id: PortId,
    /// The domain holding its receive right.
    pub owner: DomainId,
    /// Activations of this port (its pool's and its sidetrack's), free or
    /// not: a destroyed port goes when the last of them does.
    pub pool_size: usize,
    /// Server threads of the owner that serve this port (waiting or busy).
    pub server_threads: usize,
    /// Clients waiting for a server thread.
    senders: VecDeque<ThreadId>,
    /// Clients waiting for a free activation.
    pool_waiters: VecDeque<ThreadId>,
    /// False once the owner is gone.
    pub alive: bool,
    /// Its server declared every call on it idempotent
    /// ([`PORT_IDEMPOTENT`](crate::abi::PORT_IDEMPOTENT)).
    pub idempotent: bool,
    /// How many times its owner has been restarted under it.
    pub generation: u32,
    /// Ports made before it (numbers are reused; this orders a domain's
    /// ports by when they were made).
    pub serial: u64,
    /// Its owner died and a new instance, which will adopt it, is on its
    /// way: callers wait for the new instance's activations.
    pub restarting: bool,
    /// Calls the assembly fast paths routed to it since the last fold, by
    /// path: the trapping migrating call (`migrated`), the merged call
    /// (`direct`), the switching handoff (`handed_off`). The fast paths
    /// count here, through the port record they hold in a register anyway,
    /// instead of in the machine-wide statistics: the same three
    /// instructions, a different base register. [`Port::take_fast_counts`] moves them
    /// into those statistics and into `served`.
    pub fast_migrated: u64,
    /// See `fast_migrated`.
    pub fast_direct: u64,
    /// See `fast_migrated`.
    pub fast_handed_off: u64,
    /// Calls routed to it, by any path, not counted in the `fast_*` fields
    /// above: the general path's (it counts here as it routes one: into a
    /// pool activation, to a waiting server thread or onto a busy one's
    /// queue) and the fast paths' folded ones. See [`Port::calls_served`].
    pub served: u64,
}

impl Port {
    /// Calls routed to it since it was made, by every path: what the
    /// general path counted and what the fast paths counted, folded or not.
    pub fn calls_served(&self) -> u64 {
        self.served + self.fast_migrated + self.fast_direct + self.fast_handed_off
    }

    /// Take the fast paths' counts, moving them into `served` and zeroing
    /// them: [`Port::calls_served`] stays as it was, and the caller adds
    /// exactly what the fast paths did on this port to the machine-wide
    /// statistics (`Kernel::statistics`). Migrated, direct, handed off.
    pub fn take_fast_counts(&mut self) -> [u64; 3] {
        let counts = [self.fast_migrated, self.fast_direct, self.fast_handed_off];
        self.served += counts.iter().sum::<u64>();
        self.fast_migrated = 0;
        self.fast_direct = 0;
        self.fast_handed_off = 0;
        counts
    }

    /// Queue `thread` to wait for an activation.
    pub fn wait_for_activation(&mut self, thread: ThreadId) {
        self.pool_waiters.push_back(thread);
        self.waiting = self.pool_waiters.len() as u32;
    }

    /// The next thread waiting for an activation.
    pub fn next_waiter(&mut self) -> Option<ThreadId> {
        let thread = self.pool_waiters.pop_front();
        self.waiting = self.pool_waiters.len() as u32;
        thread
    }

    /// Queue a client for a server thread.
    pub fn queue_sender(&mut self, thread: ThreadId) {
        self.senders.push_back(thread);
        self.queued = self.senders.len() as u32;
    }

    /// The first queued client, left in the queue.
    pub fn first_sender(&self) -> Option<ThreadId> {
        self.senders.front().copied()
    }

    /// Take `thread` out of the queues of those waiting for an activation
    /// or a server thread (an alert ended its wait); true if it was in one.
    pub fn forget_waiter(&mut self, thread: ThreadId) -> bool {
        let before = self.pool_waiters.len() + self.senders.len();
        self.pool_waiters.retain(|&waiting| waiting != thread);
        self.senders.retain(|&waiting| waiting != thread);
        self.waiting = self.pool_waiters.len() as u32;
        self.queued = self.senders.len() as u32;
        before != self.pool_waiters.len() + self.senders.len()
    }

    /// The next queued client.
    pub fn next_sender(&mut self) -> Option<ThreadId> {
        let thread = self.senders.pop_front();
        self.queued = self.senders.len() as u32;
        thread
    }
}

/// How a call on a port should proceed, decided without changing anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Migrate into this free activation.
    Migrate(ActivationId),
    /// Hand the request to this waiting server thread.
    HandOff(ThreadId),
    /// Queue behind busy server threads.
    QueueForThread,
    /// Wait for a server: an activation coming back to the pool, or the
    /// server's threads reaching `Receive`.
    WaitForActivation,
    /// Nobody will ever serve the port.
    Dead,
}

/// All threads, activations and ports.
#[derive(Debug, Default)]
pub struct Objects {
    threads: Vec<Option<Box<Thread>>>,
    activations: Vec<Option<Box<Activation>>>,
    ports: Vec<Option<Box<Port>>>,
    ports_made: u64,
}

fn insert<T>(slab: &mut Vec<Option<Box<T>>>, make: impl FnOnce(NonZeroU32) -> T) -> NonZeroU32 {
    if slab.is_empty() {
        slab.push(None); // slot 0: "none"
    }
    let at = slab.iter().skip(1).position(Option::is_none).map(|at| at + 1).unwrap_or_else(|| {
        slab.push(None);
        slab.len() - 1
    });
    let number = NonZeroU32::new(at as u32).unwrap_or(NonZeroU32::MIN);
    slab[at] = Some(Box::new(make(number)));
    number
}

fn get<T>(slab: &[Option<Box<T>>], number: u32) -> Option<&T> {
    slab.get(number as usize)?.as_deref()
}

fn get_mut<T>(slab: &mut [Option<Box<T>>], number: u32) -> Option<&mut T> {
    slab.get_mut(number as usize)?.as_deref_mut()
}

/// A slab's storage seen as a table of object pointers (null = none),
/// indexed by number, and its length: what the fast path reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointerTable {
    /// The first entry.
    pub base: usize,
    /// Entries.
    pub length: usize,
}

fn table<T>(slab: &[Option<Box<T>>]) -> PointerTable {
    // `Option<Box<T>>` has the layout of a nullable pointer (guaranteed).
    PointerTable { base: slab.as_ptr() as usize, length: slab.len() }
}

impl Objects {
    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make a ready-to-run thread with no activations.
    pub fn new_thread(&mut self, priority: u8, creator: DomainId) -> ThreadId {
        ThreadId(insert(&mut self.threads, |id| Thread {
            top: None,
            id: ThreadId(id),
            state: ThreadState::Ready,
            frame: 0,
            kernel_context: 0,
            serving: None,
            next_queued: None,
            receive_address: 0,
            receive_capacity: 0,
            reply_address: 0,
            reply_capacity: 0,
            receive_domain: DomainId(0),
            reply_domain: DomainId(0),
            serves: None,
            priority: priority.min(31),
            policy: Policy::RoundRobin,
            creator,
            cpu_time: 0,
            pending: None,
            sidetracked: None,
            interrupted: false,
            at_boundary: false,
            base_moved_to: None,
            by_domain: Vec::new(),
            resume_with: 0,
            faulted: false,
            detached: false,
            split_off: false,
        }))
    }

    /// Make an activation (unoccupied, on no chain) of `domain`; its
    /// `view`, `entry_pstate`, `register_entry` and `context` start at 0
    /// (the kernel sets them from the domain's record).
    pub fn new_activation(
        &mut self,
        domain: DomainId,
        port: Option<PortId>,
        entry: u64,
        stack_top: u64,
        stack_size: u64,
    ) -> ActivationId {
        let port_record = port.map_or(0, |port| self.port_address(port) as u64);
        ActivationId(insert(&mut self.activations, |id| Activation {
            caller: None,
            occupant: None,
            next_free: None,
            port,
            domain,
            flags: 0,
            id: ActivationId(id),
            entry,
            entry_pstate: 0,
            register_entry: 0,
            register_sp: stack_top.wrapping_sub(crate::abi::REPLY_AREA as u64),
            stack_top,
            view: 0,
            context: 0,
            stack_size,
            reply_address: 0,
            reply_capacity: 0,
            reply_domain: DomainId(0),
            reply_registers: 0,
            lent_address: 0,
            lent_length: 0,
            port_record,
            saved: UserContext::default(),
            control: Control::fresh(port.is_some()),
            alert_return: None,
        }))
    }

    /// Make a port owned by `owner`.
    pub fn new_port(&mut self, owner: DomainId) -> PortId {
        let serial = self.ports_made;
        self.ports_made += 1;
        PortId(insert(&mut self.ports, |id| Port {
            pool_head: None,
            receivers_head: None,
            receivers_tail: None,
            queued: 0,
            waiting: 0,
            sidetrack: None,
            id: PortId(id),
            owner,
            pool_size: 0,
            server_threads: 0,
            senders: VecDeque::new(),
            pool_waiters: VecDeque::new(),
            alive: true,
            idempotent: false,
            generation: 0,
            serial,
            restarting: false,
            fast_migrated: 0,
            fast_direct: 0,
            fast_handed_off: 0,
            served: 0,
        }))
    }

    /// A thread.
    pub fn thread(&self, id: ThreadId) -> Option<&Thread> {
        get(&self.threads, id.get())
    }

    /// A thread, to change.
    pub fn thread_mut(&mut self, id: ThreadId) -> Option<&mut Thread> {
        get_mut(&mut self.threads, id.get())
    }

    /// An activation.
    pub fn activation(&self, id: ActivationId) -> Option<&Activation> {
        get(&self.activations, id.get())
    }

    /// An activation, to change.
    pub fn activation_mut(&mut self, id: ActivationId) -> Option<&mut Activation> {
        get_mut(&mut self.activations, id.get())
    }

    /// A port.
    pub fn port(&self, id: PortId) -> Option<&Port> {
        get(&self.ports, id.get())
    }

    /// A port, to change.
    pub fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        get_mut(&mut self.ports, id.get())
    }

    /// Every port, to change (the statistics' fold).
    pub fn ports_mut(&mut self) -> impl Iterator<Item = &mut Port> + '_ {
        self.ports.iter_mut().flatten().map(|port| &mut **port)
    }

    /// Every port's number.
    pub fn port_ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.iter().flatten().map(|port| port.id)
    }

    /// Every activation of `domain`, to update what the kernel keeps in
    /// them of their domain.
    pub fn activations_of(&mut self, domain: DomainId) -> impl Iterator<Item = &mut Activation> + '_ {
        self.activations.iter_mut().flatten().map(|entry| &mut **entry).filter(move |entry| entry.domain == domain)
    }

    /// Whether any activation of `domain` is occupied: a thread runs in it,
    /// is parked in it, or is in a call it made.
    pub fn domain_occupied(&self, domain: DomainId) -> bool {
        self.activations.iter().flatten().any(|entry| entry.domain == domain && entry.occupant.is_some())
    }

    /// Every activation's number.
    pub fn activation_ids(&self) -> impl Iterator<Item = ActivationId> + '_ {
        self.activations.iter().flatten().map(|activation| activation.id)
    }

    /// Every thread's number.
    pub fn thread_ids(&self) -> impl Iterator<Item = ThreadId> + '_ {
        self.threads.iter().flatten().map(|thread| thread.id)
    }

    /// The numbers of the threads for which `wanted` holds, collected, so
    /// that the caller may change the table while it visits them.
    pub fn threads_where(&self, wanted: impl Fn(&Thread) -> bool) -> Vec<ThreadId> {
        self.threads.iter().flatten().filter(|thread| wanted(thread)).map(|thread| thread.id).collect()
    }

    /// The thread table, for the fast path.
    pub fn thread_table(&self) -> PointerTable {
        table(&self.threads)
    }

    /// The activation table, for the fast path.
    pub fn activation_table(&self) -> PointerTable {
        table(&self.activations)
    }

    /// The port table, for the fast path.
    pub fn port_table(&self) -> PointerTable {
        table(&self.ports)
    }

    /// Where port `id`'s record lives (0: no such port), for a bound
    /// handle's published record: it stays put while the port exists.
    pub fn port_address(&self, id: PortId) -> usize {
        self.port(id).map_or(0, |port| core::ptr::from_ref(port).addr())
    }

    /// Forget an ended thread. A thread whose base had moved to it (a
    /// split) no longer names it: its number may be reused by any domain's
    /// next thread, which a join of that thread must not reach.
    pub fn remove_thread(&mut self, id: ThreadId) -> Option<Thread> {
        let removed = self.threads.get_mut(id.get() as usize)?.take().map(|thread| *thread)?;
        for thread in self.threads.iter_mut().flatten() {
            if thread.base_moved_to == Some(id) {
                thread.base_moved_to = None;
            }
        }
        Some(removed)
    }

    /// Forget a port (dead, with no activation left).
    pub fn remove_port(&mut self, id: PortId) -> Option<Port> {
        self.ports.get_mut(id.get() as usize)?.take().map(|port| *port)
    }

    /// Forget an activation that is on no chain and in no pool.
    pub fn remove_activation(&mut self, id: ActivationId) -> Option<Activation> {
        self.activations.get_mut(id.get() as usize)?.take().map(|activation| *activation)
    }

    /// Push `activation` on top of `thread`'s chain: the thread now runs
    /// in it, and the old top becomes its caller.
    pub fn push(&mut self, thread: ThreadId, activation: ActivationId) -> bool {
        let Some(caller) = self.thread(thread).map(|thread| thread.top) else { return false };
        let Some(entry) = self.activation_mut(activation) else { return false };
        if entry.occupant.is_some() {
            return false;
        }
        entry.occupant = Some(thread);
        entry.caller = caller;
        if let Some(thread) = self.thread_mut(thread) {
            thread.top = Some(activation);
        }
        true
    }

    /// Pop the top activation off `thread`'s chain; it becomes unoccupied
    /// and its caller the new top. Returns it.
    pub fn pop(&mut self, thread: ThreadId) -> Option<ActivationId> {
        let top = self.thread(thread)?.top?;
        let entry = self.activation_mut(top)?;
        let caller = entry.caller.take();
        entry.occupant = None;
        entry.reply_capacity = 0;
        entry.reset_control();
        self.thread_mut(thread)?.top = caller;
        Some(top)
    }

    /// The chain of `thread`, top first.
    pub fn chain(&self, thread: ThreadId) -> Vec<ActivationId> {
        let mut chain = Vec::new();
        let mut next = self.thread(thread).and_then(|thread| thread.top);
        while let Some(activation) = next {
            chain.push(activation);
            next = self.activation(activation).and_then(|activation| activation.caller);
        }
        chain
    }

    /// Add a made activation to `port`'s pool.
    pub fn pool_add(&mut self, port: PortId, activation: ActivationId) -> bool {
        if !self.pool_return(activation) {
            return false;
        }
        if let Some(entry) = self.port_mut(port) {
            entry.pool_size += 1;
        }
        true
    }

    /// Give a finished activation back to its port's pool. A port's
    /// sidetrack activation is reserved for sidetrack upcalls and never
    /// joins the pool (false: nothing done).
    pub fn pool_return(&mut self, activation: ActivationId) -> bool {
        let Some(entry) = self.activation(activation) else { return false };
        if entry.is_sidetrack() {
            return false;
        }
        let Some(port) = entry.port else { return false };
        let Some(head) = self.port(port).map(|entry| entry.pool_head) else { return false };
        if let Some(entry) = self.activation_mut(activation) {
            entry.next_free = head;
        }
        match self.port_mut(port) {
            Some(entry) => {
                entry.pool_head = Some(activation);
                true
            }
            None => false,
        }
    }

    /// Take a free activation out of `port`'s pool.
    pub fn pool_take(&mut self, port: PortId) -> Option<ActivationId> {
        let head = self.port(port)?.pool_head?;
        let next = self.activation_mut(head)?.next_free.take();
        let entry = self.port_mut(port)?;
        entry.pool_head = next;
        Some(head)
    }

    /// How many activations of `port`'s pool are free. Counted along the
    /// free list rather than kept in the port: the fast paths pop and push
    /// without a count to maintain, and only the general path asks.
    pub fn pool_free(&self, port: PortId) -> usize {
        let mut free = 0;
        let mut next = self.port(port).and_then(|entry| entry.pool_head);
        while let Some(activation) = next {
            free += 1;
            next = self.activation(activation).and_then(|entry| entry.next_free);
        }
        free
    }

    /// Queue `thread` as a receiver of `port` (at the back).
    pub fn push_receiver(&mut self, port: PortId, thread: ThreadId) -> bool {
        let Some(tail) = self.port(port).map(|entry| entry.receivers_tail) else { return false };
        match self.thread_mut(thread) {
            Some(entry) => entry.next_queued = None,
            None => return false,
        }
        match tail.and_then(|tail| self.thread_mut(tail)) {
            Some(last) => last.next_queued = Some(thread),
            None => {
                if let Some(entry) = self.port_mut(port) {
                    entry.receivers_head = Some(thread);
                }
            }
        }
        if let Some(entry) = self.port_mut(port) {
            entry.receivers_tail = Some(thread);
        }
        true
    }

    /// Take the first receiver of `port`.
    pub fn pop_receiver(&mut self, port: PortId) -> Option<ThreadId> {
        let head = self.port(port)?.receivers_head?;
        let next = self.thread_mut(head)?.next_queued.take();
        let entry = self.port_mut(port)?;
        entry.receivers_head = next;
        if next.is_none() {
            entry.receivers_tail = None;
        }
        Some(head)
    }

    /// Take `thread` out of `port`'s receivers; true if it was there.
    pub fn remove_receiver(&mut self, port: PortId, thread: ThreadId) -> bool {
        let mut kept = Vec::new();
        let mut found = false;
        while let Some(receiver) = self.pop_receiver(port) {
            if receiver == thread {
                found = true;
            } else {
                kept.push(receiver);
            }
        }
        for receiver in kept {
            self.push_receiver(port, receiver);
        }
        found
    }

    /// Forget every receiver of `port`.
    pub fn clear_receivers(&mut self, port: PortId) {
        while self.pop_receiver(port).is_some() {}
    }

    /// Empty `port`'s pool (its owner is gone).
    pub fn pool_clear(&mut self, port: PortId) {
        while self.pool_take(port).is_some() {}
    }

    /// Decide how a call on `port` proceeds (changes nothing).
    pub fn route(&self, port: PortId) -> Route {
        let Some(entry) = self.port(port) else { return Route::Dead };
        if let Some(activation) = entry.pool_head {
            Route::Migrate(activation)
        } else if let Some(thread) = entry.receivers_head {
            Route::HandOff(thread)
        } else if entry.server_threads > 0 {
            Route::QueueForThread
        } else if entry.alive {
            Route::WaitForActivation
        } else {
            Route::Dead
        }
    }

    /// Threads in use (for reports).
    pub fn thread_count(&self) -> usize {
        self.threads.iter().filter(|slot| slot.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_general_push_clears_the_register_reply_byte() {
        // The trapping words path sets `reply_registers` with its push; any
        // push the general path makes (`set_reply`) must clear it, or a
        // later `svc #2` return would answer in registers a caller that
        // takes its reply in its buffer.
        let mut objects = Objects::new();
        let port = objects.new_port(DomainId(2));
        let id = objects.new_activation(DomainId(2), Some(port), 0x2000, 0xa000, 0x1000);
        let activation = objects.activation_mut(id).unwrap();
        assert_eq!(activation.reply_registers, 0, "a new activation takes no reply in registers");
        activation.reply_registers = 1;
        activation.set_reply(Destination { domain: DomainId(1), address: 0x4000, capacity: 64 });
        assert_eq!(activation.reply_registers, 0);
        assert_eq!(activation.reply().address, 0x4000);
    }

    #[test]
    fn chains_grow_and_shrink_through_nested_calls() {
        let mut objects = Objects::new();
        let client = DomainId(1);
        let thread = objects.new_thread(5, client);
        let base = objects.new_activation(client, None, 0x1000, 0x9000, 0x1000);
        assert!(objects.push(thread, base));
        let port_b = objects.new_port(DomainId(2));
        let port_c = objects.new_port(DomainId(3));
        for port in [port_b, port_c] {
            let owner = objects.port(port).unwrap().owner;
            let activation = objects.new_activation(owner, Some(port), 0x2000, 0xa000, 0x1000);
            assert!(objects.pool_add(port, activation));
        }
        // A -> B -> C.
        let in_b = objects.pool_take(port_b).unwrap();
        assert!(objects.push(thread, in_b));
        let in_c = objects.pool_take(port_c).unwrap();
        assert!(objects.push(thread, in_c));
        assert_eq!(objects.chain(thread), [in_c, in_b, base]);
        let domain_c = objects.activation(in_c).unwrap().domain;
        assert!(objects.domain_occupied(domain_c), "a call in flight occupies C");
        assert_eq!(objects.activations_of(domain_c).count(), 1);
        assert!(!objects.push(thread, in_b), "an occupied activation cannot be pushed twice");
        assert_eq!(objects.activation(in_c).unwrap().occupant, Some(thread));
        assert_eq!(objects.route(port_c), Route::WaitForActivation, "C's only activation is busy");
        // C returns, then B.
        assert_eq!(objects.pop(thread), Some(in_c));
        assert!(objects.pool_return(in_c));
        assert!(!objects.domain_occupied(domain_c), "back in its pool: C is idle");
        assert!(objects.domain_occupied(client), "the thread still runs in A");
        assert_eq!(objects.route(port_c), Route::Migrate(in_c));
        assert_eq!(objects.pop(thread), Some(in_b));
        assert!(objects.pool_return(in_b));
        assert_eq!(objects.chain(thread), [base]);
        assert_eq!(objects.activation(in_b).unwrap().caller, None);
        assert!(!objects.pool_return(base), "a thread's own activation has no pool");
    }

    #[test]
    fn routes_follow_pool_then_threads_then_waiting() {
        let mut objects = Objects::new();
        let server = DomainId(2);
        let port = objects.new_port(server);
        assert_eq!(objects.route(port), Route::WaitForActivation, "no pool, no threads yet: wait for a server");
        objects.port_mut(port).unwrap().server_threads = 1;
        assert_eq!(objects.route(port), Route::QueueForThread);
        let receiver = objects.new_thread(3, server);
        let second = objects.new_thread(3, server);
        assert!(objects.push_receiver(port, receiver));
        assert!(objects.push_receiver(port, second));
        assert_eq!(objects.route(port), Route::HandOff(receiver), "first come, first served");
        assert_eq!(objects.pop_receiver(port), Some(receiver));
        assert_eq!(objects.route(port), Route::HandOff(second));
        assert_eq!(objects.pop_receiver(port), Some(second));
        assert_eq!(objects.pop_receiver(port), None);
        assert!(objects.push_receiver(port, receiver));
        assert_eq!(objects.route(port), Route::HandOff(receiver));
        let activation = objects.new_activation(server, Some(port), 0, 0, 0);
        objects.pool_add(port, activation);
        assert_eq!(objects.route(port), Route::Migrate(activation), "the pool is preferred");
        assert_eq!(objects.route(PortId::new(99).unwrap()), Route::Dead);
        let dead = objects.new_port(server);
        objects.port_mut(dead).unwrap().alive = false;
        assert_eq!(objects.route(dead), Route::Dead, "a dead port is never waited for");
    }

    #[test]
    fn slabs_reuse_numbers() {
        let mut objects = Objects::new();
        let first = objects.new_thread(1, DomainId(1));
        let second = objects.new_thread(1, DomainId(1));
        assert_ne!(first, second);
        assert_eq!(first.get(), 1, "numbers start at 1: 0 means none");
        assert!(objects.remove_thread(first).is_some());
        assert_eq!(objects.new_thread(40, DomainId(1)), first);
        assert_eq!(objects.thread(first).unwrap().priority, 31, "priority clamped");
        assert_eq!(objects.thread_count(), 2);
        let table = objects.thread_table();
        assert_eq!(table.length, 3, "slot 0 plus two threads");
    }

    #[test]
    fn pools_are_last_in_first_out_and_counted() {
        let mut objects = Objects::new();
        let server = DomainId(2);
        let port = objects.new_port(server);
        let first = objects.new_activation(server, Some(port), 0, 0, 0);
        let second = objects.new_activation(server, Some(port), 0, 0, 0);
        assert!(objects.pool_add(port, first));
        assert!(objects.pool_add(port, second));
        assert_eq!(objects.pool_free(port), 2);
        assert_eq!(objects.pool_take(port), Some(second));
        assert_eq!(objects.pool_take(port), Some(first));
        assert_eq!(objects.pool_take(port), None);
        assert_eq!(objects.pool_free(port), 0);
        assert!(objects.pool_return(first));
        objects.pool_clear(port);
        assert_eq!(objects.route(port), Route::WaitForActivation);
        let waiter = objects.new_thread(1, DomainId(1));
        objects.port_mut(port).unwrap().wait_for_activation(waiter);
        assert_eq!(objects.port(port).unwrap().waiting, 1);
        assert_eq!(objects.port_mut(port).unwrap().next_waiter(), Some(waiter));
        assert_eq!(objects.port(port).unwrap().waiting, 0);
    }
}
