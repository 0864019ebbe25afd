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
//! Everything links by number into [`Objects`], whose slabs never move an
//! object once made, so the arch layer may keep numbers across blocking.
//! The chain lives in the activations (not on a kernel stack), so it can
//! later be broken at any point — termination splits a thread by cutting
//! one link.

use crate::capability::PortId;
use crate::domain::DomainId;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// A thread's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadId(pub u32);

/// An activation's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivationId(pub u32);

/// A domain's user registers as saved in an activation: x0-x30, the stack
/// pointer, the resume address and PSTATE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
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

/// Why a thread is not running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// On the run queue.
    Ready,
    /// On a processor.
    Running,
    /// Waiting for a free activation of a port's pool.
    WaitingForActivation(PortId),
    /// A client waiting for a server thread to take its request.
    WaitingForReceiver(PortId),
    /// A client whose request a server thread is handling.
    WaitingForReply,
    /// A server thread waiting in receive.
    Receiving(PortId),
    /// Waiting for another thread to end.
    Joining(ThreadId),
    /// Ended with a result.
    Ended(usize),
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
    /// Where the reply goes.
    pub reply: Destination,
}

/// A thread.
#[derive(Clone, Debug)]
pub struct Thread {
    /// Its number.
    pub id: ThreadId,
    /// 0 (lowest) to 31.
    pub priority: u8,
    /// Its policy.
    pub policy: Policy,
    /// What it is doing.
    pub state: ThreadState,
    /// The top of its chain of activations.
    pub top: Option<ActivationId>,
    /// The domain that created it (for joins).
    pub creator: DomainId,
    /// Counter ticks charged to it.
    pub cpu_time: u64,
    /// As a switching client: the request it waits to hand over.
    pub pending: Option<PendingRequest>,
    /// As a server thread: the client whose request it is handling.
    pub serving: Option<ThreadId>,
    /// As a server thread in receive: where the next request goes.
    pub receive_buffer: Option<Destination>,
    /// The port a server thread serves (counted once in the port's
    /// `server_threads`).
    pub serves: Option<PortId>,
    /// Set after a sidetrack upcall for this port, so the retried call
    /// does not sidetrack again.
    pub sidetracked: Option<PortId>,
}

/// What an activation is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationState {
    /// In a pool, waiting for a thread to migrate in.
    Unoccupied,
    /// A thread runs in it (or in something it called).
    Occupied(ThreadId),
}

/// An activation.
#[derive(Clone, Debug)]
pub struct Activation {
    /// Its number.
    pub id: ActivationId,
    /// The domain it belongs to, for life.
    pub domain: DomainId,
    /// The port whose pool it belongs to (`None` for a thread's own first
    /// activation).
    pub port: Option<PortId>,
    /// Occupied or not.
    pub state: ActivationState,
    /// The activation below it on the thread's chain.
    pub caller: Option<ActivationId>,
    /// Where upcalls into it start.
    pub entry: u64,
    /// Top of its stack (exclusive, 16-byte aligned).
    pub stack_top: u64,
    /// Bytes of its stack.
    pub stack_size: u64,
    /// Its user registers while it waits for a call it made.
    pub saved: UserContext,
    /// For a server activation: where its reply goes.
    pub reply: Option<Destination>,
    /// A sidetrack activation (its upcall tells the server its pool is low).
    pub sidetrack: bool,
}

/// A port.
#[derive(Clone, Debug)]
pub struct Port {
    /// Its number.
    pub id: PortId,
    /// The domain holding its receive right.
    pub owner: DomainId,
    /// Unoccupied activations ready to take a call (a stack: last freed,
    /// first reused — its stack is the warmest).
    pub pool: Vec<ActivationId>,
    /// Activations of this port, free or not.
    pub pool_size: usize,
    /// Server threads of the owner that serve this port (waiting or busy).
    pub server_threads: usize,
    /// Server threads waiting in receive.
    pub receivers: VecDeque<ThreadId>,
    /// Clients waiting for a server thread.
    pub senders: VecDeque<ThreadId>,
    /// Clients waiting for a free activation.
    pub pool_waiters: VecDeque<ThreadId>,
    /// The sidetrack activation, if the server asked for one.
    pub sidetrack: Option<ActivationId>,
    /// False once the owner is gone.
    pub alive: bool,
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
    threads: Vec<Option<Thread>>,
    activations: Vec<Option<Activation>>,
    ports: Vec<Option<Port>>,
}

fn insert<T>(slab: &mut Vec<Option<T>>, make: impl FnOnce(u32) -> T) -> u32 {
    let at = slab.iter().position(Option::is_none).unwrap_or_else(|| {
        slab.push(None);
        slab.len() - 1
    });
    slab[at] = Some(make(at as u32));
    at as u32
}

impl Objects {
    /// No objects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make a ready-to-run thread with no activations.
    pub fn new_thread(&mut self, priority: u8, creator: DomainId) -> ThreadId {
        ThreadId(insert(&mut self.threads, |id| Thread {
            id: ThreadId(id),
            priority: priority.min(31),
            policy: Policy::RoundRobin,
            state: ThreadState::Ready,
            top: None,
            creator,
            cpu_time: 0,
            pending: None,
            serving: None,
            receive_buffer: None,
            serves: None,
            sidetracked: None,
        }))
    }

    /// Make an activation (unoccupied, on no chain).
    pub fn new_activation(
        &mut self,
        domain: DomainId,
        port: Option<PortId>,
        entry: u64,
        stack_top: u64,
        stack_size: u64,
    ) -> ActivationId {
        ActivationId(insert(&mut self.activations, |id| Activation {
            id: ActivationId(id),
            domain,
            port,
            state: ActivationState::Unoccupied,
            caller: None,
            entry,
            stack_top,
            stack_size,
            saved: UserContext::default(),
            reply: None,
            sidetrack: false,
        }))
    }

    /// Make a port owned by `owner`.
    pub fn new_port(&mut self, owner: DomainId) -> PortId {
        PortId(insert(&mut self.ports, |id| Port {
            id: PortId(id),
            owner,
            pool: Vec::new(),
            pool_size: 0,
            server_threads: 0,
            receivers: VecDeque::new(),
            senders: VecDeque::new(),
            pool_waiters: VecDeque::new(),
            sidetrack: None,
            alive: true,
        }))
    }

    /// A thread.
    pub fn thread(&self, id: ThreadId) -> Option<&Thread> {
        self.threads.get(id.0 as usize)?.as_ref()
    }

    /// A thread, to change.
    pub fn thread_mut(&mut self, id: ThreadId) -> Option<&mut Thread> {
        self.threads.get_mut(id.0 as usize)?.as_mut()
    }

    /// An activation.
    pub fn activation(&self, id: ActivationId) -> Option<&Activation> {
        self.activations.get(id.0 as usize)?.as_ref()
    }

    /// An activation, to change.
    pub fn activation_mut(&mut self, id: ActivationId) -> Option<&mut Activation> {
        self.activations.get_mut(id.0 as usize)?.as_mut()
    }

    /// A port.
    pub fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.0 as usize)?.as_ref()
    }

    /// A port, to change.
    pub fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(id.0 as usize)?.as_mut()
    }

    /// Forget an ended thread.
    pub fn remove_thread(&mut self, id: ThreadId) -> Option<Thread> {
        self.threads.get_mut(id.0 as usize)?.take()
    }

    /// Forget an activation that is on no chain and in no pool.
    pub fn remove_activation(&mut self, id: ActivationId) -> Option<Activation> {
        self.activations.get_mut(id.0 as usize)?.take()
    }

    /// Push `activation` on top of `thread`'s chain: the thread now runs
    /// in it, and the old top becomes its caller.
    pub fn push(&mut self, thread: ThreadId, activation: ActivationId) -> bool {
        let Some(caller) = self.thread(thread).map(|thread| thread.top) else { return false };
        let Some(entry) = self.activation_mut(activation) else { return false };
        if entry.state != ActivationState::Unoccupied {
            return false;
        }
        entry.state = ActivationState::Occupied(thread);
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
        entry.state = ActivationState::Unoccupied;
        entry.reply = None;
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
        let Some(entry) = self.port_mut(port) else { return false };
        entry.pool.push(activation);
        entry.pool_size += 1;
        true
    }

    /// Give a finished activation back to its port's pool.
    pub fn pool_return(&mut self, activation: ActivationId) -> bool {
        let Some(port) = self.activation(activation).and_then(|activation| activation.port) else { return false };
        match self.port_mut(port) {
            Some(entry) => {
                entry.pool.push(activation);
                true
            }
            None => false,
        }
    }

    /// Decide how a call on `port` proceeds (changes nothing).
    pub fn route(&self, port: PortId) -> Route {
        let Some(entry) = self.port(port) else { return Route::Dead };
        if let Some(&activation) = entry.pool.last() {
            Route::Migrate(activation)
        } else if let Some(&thread) = entry.receivers.front() {
            Route::HandOff(thread)
        } else if entry.server_threads > 0 {
            Route::QueueForThread
        } else if entry.alive {
            Route::WaitForActivation
        } else {
            Route::Dead
        }
    }

    /// Take a free activation out of `port`'s pool.
    pub fn pool_take(&mut self, port: PortId) -> Option<ActivationId> {
        self.port_mut(port)?.pool.pop()
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
        assert!(!objects.push(thread, in_b), "an occupied activation cannot be pushed twice");
        assert_eq!(objects.activation(in_c).unwrap().state, ActivationState::Occupied(thread));
        assert_eq!(objects.route(port_c), Route::WaitForActivation, "C's only activation is busy");
        // C returns, then B.
        assert_eq!(objects.pop(thread), Some(in_c));
        assert!(objects.pool_return(in_c));
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
        objects.port_mut(port).unwrap().receivers.push_back(receiver);
        assert_eq!(objects.route(port), Route::HandOff(receiver));
        let activation = objects.new_activation(server, Some(port), 0, 0, 0);
        objects.pool_add(port, activation);
        assert_eq!(objects.route(port), Route::Migrate(activation), "the pool is preferred");
        assert_eq!(objects.route(PortId(99)), Route::Dead);
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
        assert!(objects.remove_thread(first).is_some());
        assert_eq!(objects.new_thread(40, DomainId(1)), first);
        assert_eq!(objects.thread(first).unwrap().priority, 31, "priority clamped");
        assert_eq!(objects.thread_count(), 2);
    }
}
