//! Shared fixtures for the kernel's host tests.
//!
//! [`System`] is a kernel on the mock machine plus what the test needs to
//! play the processor: each thread's [`MockFrame`], boxed so that it stays
//! where the kernel recorded it (the kernel writes a blocked thread's
//! results through that address), helpers to make domains and servers, to
//! write messages into a domain's memory, to make kernel calls as the
//! current thread, and to switch threads the way the machine would.
//!
//! Every test binary uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use tern_core::abi::{Call, Error, MessageHeader, Role};
use tern_core::board::DOMAIN_REGION;
use tern_core::capability::PortId;
use tern_core::domain::{DomainId, DomainSpec, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::kernel::{Kernel, Next};
use tern_core::lend::LentAccess;
use tern_core::machine::{RpcStatistics, Start};
use tern_core::mock::{MockFrame, MockMachine, MockSwitch, no_servers};
use tern_core::thread::{Activation, ActivationId, ThreadId, ThreadState, UserContext};

/// Where the domain arena starts.
pub const ARENA: u64 = 0x6000_0000;
/// How many domains the arena holds.
pub const DOMAINS: u64 = 8;
/// The shared read-only image (entries must lie in it).
pub const IMAGE: PhysRange = PhysRange::new(0x8_0000, 0x10_0000);
/// A pool activation's stack.
pub const STACK: u64 = tern_core::abi::POOL_STACK_MIN as u64;
/// Where a domain's code is when it makes a call from an upcall (the
/// address after its `svc`).
pub const CALL_PC: u64 = 0x8_8004;
/// Where created threads' code starts.
pub const THREAD_ENTRY: usize = 0x8_f000;

fn entry(_: usize) -> usize {
    0
}

/// A port of a server domain.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    /// The server's domain.
    pub domain: DomainId,
    /// The port's name in the server's space (its receive right).
    pub name: u32,
    /// The port.
    pub port: PortId,
    /// Where its pool activations enter.
    pub entry: u64,
}

/// What a failed call must leave as it was.
#[derive(Debug, PartialEq)]
pub struct State {
    statistics: RpcStatistics,
    current: ThreadId,
    view: u64,
    threads: Vec<(ThreadId, ThreadState, Vec<ActivationId>, bool)>,
    activations: Vec<(ActivationId, Option<ThreadId>, u8, bool, bool)>,
    ports: Vec<PortState>,
    rights: Vec<usize>,
    lent: BTreeMap<(u64, u64), LentAccess>,
    asid_flushes: usize,
}

/// What a failed call must leave as it was of a port.
#[derive(Debug, PartialEq)]
pub struct PortState {
    port: PortId,
    free: usize,
    receivers_head: Option<ThreadId>,
    queued: u32,
    waiting: u32,
    alive: bool,
    server_threads: usize,
    served: u64,
}

/// A snapshot of the kernel and memory.
pub struct Snapshot {
    state: State,
    memory: BTreeMap<u64, Box<[u8; 4096]>>,
}

/// A kernel on the mock machine, and the test playing its processor.
pub struct System {
    /// The kernel.
    pub kernel: Kernel<MockMachine>,
    /// Each thread's registers, at a stable address.
    pub frames: BTreeMap<ThreadId, Box<MockFrame>>,
    /// The thread the kernel started on.
    pub boot: ThreadId,
}

impl Default for System {
    fn default() -> Self {
        Self::new()
    }
}

impl System {
    /// A kernel with an empty arena of [`DOMAINS`] slots.
    pub fn new() -> Self {
        let arena = PhysRange::new(ARENA, ARENA + DOMAINS * DOMAIN_REGION);
        let kernel =
            Kernel::new(MockMachine::default(), no_servers(), arena, SharedImage { read_only: IMAGE }, Vec::new());
        let boot = kernel.current();
        System { kernel, frames: BTreeMap::new(), boot }
    }

    /// Create a protected domain called `name`.
    pub fn domain(&mut self, name: &str) -> DomainId {
        self.domain_with_role(name, Role::Plain)
    }

    /// Create a protected domain called `name` that declares `role`.
    pub fn domain_with_role(&mut self, name: &str, role: Role) -> DomainId {
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        let spec: &'static DomainSpec = Box::leak(Box::new(DomainSpec { name, entry, role }));
        self.kernel.create_domain(spec).expect("a domain")
    }

    /// The start of `domain`'s region.
    pub fn region(&self, domain: DomainId) -> u64 {
        self.kernel.domain(domain).expect("a domain").domain.region.start
    }

    /// The view `domain` runs in.
    pub fn view(&self, domain: DomainId) -> u64 {
        self.kernel.domain(domain).expect("a domain").domain.view
    }

    /// `thread`'s frame (a new, zeroed one if it has none yet).
    pub fn frame(&mut self, thread: ThreadId) -> &mut MockFrame {
        self.frames.entry(thread).or_default()
    }

    /// The current thread's frame.
    pub fn current_frame(&mut self) -> &mut MockFrame {
        let current = self.kernel.current();
        self.frame(current)
    }

    /// The outcome `thread`'s frame holds.
    pub fn result(&self, thread: ThreadId) -> Result<usize, Error> {
        self.frames.get(&thread).expect("a frame").result()
    }

    /// Make kernel call `call` as the current thread: `arguments` from x0
    /// up (the rest of x0-x7 zero), the frame's pc and sp as they are.
    pub fn invoke(&mut self, call: Call, arguments: &[u64]) -> Next<MockSwitch> {
        self.invoke_number(call as u64, arguments)
    }

    /// [`System::invoke`] with a raw call number.
    pub fn invoke_number(&mut self, number: u64, arguments: &[u64]) -> Next<MockSwitch> {
        let frame = self.current_frame();
        frame.context.x[..8].fill(0);
        frame.context.x[..arguments.len()].copy_from_slice(arguments);
        frame.context.x[8] = number;
        self.repeat()
    }

    /// Make the current thread's kernel call from its frame as it is (a
    /// call to repeat after `BlockThenRepeat` or a sidetrack). A switch is
    /// carried out (its view installed).
    pub fn repeat(&mut self) -> Next<MockSwitch> {
        let current = self.kernel.current();
        let frame = self.frames.entry(current).or_default();
        let next = self.kernel.kernel_call(frame);
        if let Next::Switch(switch) = &next {
            self.kernel.machine.view = switch.view;
        }
        next
    }

    /// A kernel call that answers at once: its result.
    pub fn ok(&mut self, call: Call, arguments: &[u64]) -> Result<usize, Error> {
        assert_eq!(self.invoke(call, arguments), Next::Resume, "{call:?} answers at once");
        let current = self.kernel.current();
        self.result(current)
    }

    /// `Call` as the current thread.
    pub fn call(&mut self, name: u32, request: (u64, u64), reply: (u64, u64)) -> Next<MockSwitch> {
        self.invoke(Call::Call, &[name as u64, request.0, request.1, reply.0, reply.1])
    }

    /// An upcall into `domain` on the current thread, on its main stack:
    /// the new activation. The frame is set for the domain's code, at
    /// [`CALL_PC`].
    pub fn enter(&mut self, domain: DomainId) -> ActivationId {
        let stack = self.kernel.domain(domain).expect("a domain").main_stack;
        let (activation, target) = self.kernel.enter_domain(domain, stack, 0, 0).expect("an upcall");
        self.kernel.machine.view = target.view;
        self.current_frame().context =
            UserContext { sp: stack, pc: CALL_PC, pstate: target.state, ..Default::default() };
        activation
    }

    /// The upcall into `activation` ends.
    pub fn leave(&mut self, activation: ActivationId) {
        self.kernel.leave_domain(activation);
        self.kernel.machine.view = self.kernel.current_view();
    }

    /// Make kernel call `call` from an upcall into `domain` on the current
    /// thread.
    pub fn as_domain(&mut self, domain: DomainId, call: Call, arguments: &[u64]) -> Result<usize, Error> {
        let activation = self.enter(domain);
        let result = self.ok(call, arguments);
        self.leave(activation);
        result
    }

    /// A server domain called `name` with a port and a pool of `pool`
    /// activations (none for 0) with stacks of `stack` bytes.
    pub fn server(&mut self, name: &str, pool: usize, stack: u64) -> Server {
        let domain = self.domain(name);
        self.serve(domain, pool, stack)
    }

    /// A port of `domain` with a pool of `pool` activations (none for 0).
    pub fn serve(&mut self, domain: DomainId, pool: usize, stack: u64) -> Server {
        let entry = 0x9_0000 + 0x1000 * domain.0 as u64;
        let main = self.enter(domain);
        let name = self.ok(Call::PortCreate, &[]).expect("a port") as u32;
        if pool > 0 {
            assert_eq!(self.ok(Call::PoolAdd, &[name as u64, pool as u64, entry, stack]), Ok(pool));
        }
        self.leave(main);
        let port = self.kernel.domain(domain).and_then(|record| record.space.lookup(name)).expect("the port").port;
        Server { domain, name, port, entry }
    }

    /// Give `to` a send right to `server`'s port: `to`'s name for it.
    pub fn grant(&mut self, server: &Server, to: DomainId) -> u32 {
        self.kernel.grant_send_right(server.domain, server.name, to).expect("a send right")
    }

    /// Write a message (`header`, then `payload`) at `at`: its length.
    pub fn write(&mut self, at: u64, header: MessageHeader, payload: &[u8]) -> u64 {
        let mut bytes = vec![0u8; MessageHeader::SIZE + payload.len()];
        header.write_to(&mut bytes);
        bytes[MessageHeader::SIZE..].copy_from_slice(payload);
        self.kernel.machine.poke(at, &bytes);
        bytes.len() as u64
    }

    /// Write a message labelled `label` carrying `payload` at `at`: its
    /// length.
    pub fn message(&mut self, at: u64, label: u32, payload: &[u8]) -> u64 {
        self.write(at, MessageHeader::new(label, payload.len()), payload)
    }

    /// The header of the message the current thread's frame points at
    /// with x0 (a request, just delivered on a server activation's stack).
    pub fn delivered(&mut self) -> MessageHeader {
        let at = self.current_frame().context.x[0];
        self.header(at)
    }

    /// The header of the message at `at`.
    pub fn header(&self, at: u64) -> MessageHeader {
        MessageHeader::read_from(&self.kernel.machine.peek(at, MessageHeader::SIZE)).expect("a header")
    }

    /// `count` little-endian words at `at`.
    pub fn words(&self, at: u64, count: usize) -> Vec<u64> {
        let bytes = self.kernel.machine.peek(at, count * 8);
        bytes.chunks(8).map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes"))).collect()
    }

    /// Create a thread in `domain` at `priority` (ready, not yet run).
    pub fn thread(&mut self, domain: DomainId, priority: u8) -> ThreadId {
        self.kernel.create_thread(domain, THREAD_ENTRY, 0, priority, STACK).expect("a thread")
    }

    /// Give the processor to `thread`, as the machine would: a running
    /// current thread is preempted (parked at a user boundary, made
    /// ready), a waiting one stays waiting. A thread running for the first
    /// time begins as [`Kernel::thread_start`] says.
    pub fn switch_to(&mut self, thread: ThreadId) {
        let current = self.kernel.current();
        if current == thread {
            return;
        }
        if self.state(current) == ThreadState::Running {
            let frame = self.frames.entry(current).or_default();
            self.kernel.set_boundary(frame, true);
            self.kernel.wake(current);
        }
        self.kernel.run_queue.remove(thread);
        let switch = self.kernel.prepare_switch(thread).expect("a switch");
        assert_eq!((switch.from, switch.to), (current, thread));
        self.kernel.machine.view = switch.view;
        if !self.frames.contains_key(&thread) {
            let context = match self.kernel.thread_start().expect("an activation to start in") {
                Start::Upcall(target) => {
                    let mut context =
                        UserContext { sp: target.stack, pc: target.entry, pstate: target.state, ..Default::default() };
                    context.x[..2].copy_from_slice(&target.arguments);
                    context
                }
                Start::Resume(_, registers) => *registers,
            };
            self.frame(thread).context = context;
        }
        let frame = self.frames.entry(thread).or_default();
        self.kernel.set_boundary(frame, false);
    }

    /// The way back into the current thread's top activation from its
    /// frame (see [`Kernel::way_back`]).
    pub fn way_back(&mut self, call_boundary: bool) -> tern_core::control::WayBack {
        let current = self.kernel.current();
        let frame = self.frames.entry(current).or_default();
        let way = self.kernel.way_back(frame, call_boundary);
        self.kernel.machine.view = self.kernel.current_view();
        way
    }

    /// `thread`'s chain, top first.
    pub fn chain(&self, thread: ThreadId) -> Vec<ActivationId> {
        self.kernel.objects.chain(thread)
    }

    /// `thread`'s top activation.
    pub fn top(&self, thread: ThreadId) -> ActivationId {
        self.kernel.objects.thread(thread).and_then(|entry| entry.top).expect("an activation")
    }

    /// `thread`'s state.
    pub fn state(&self, thread: ThreadId) -> ThreadState {
        self.kernel.objects.thread(thread).expect("a thread").state
    }

    /// An activation.
    pub fn activation(&self, activation: ActivationId) -> &Activation {
        self.kernel.objects.activation(activation).expect("an activation")
    }

    /// What the RPC paths counted.
    pub fn statistics(&self) -> RpcStatistics {
        self.kernel.machine.statistics
    }

    /// Free activations in `server`'s pool.
    pub fn pool_free(&self, server: &Server) -> usize {
        self.kernel.objects.pool_free(server.port)
    }

    /// The next activation `server`'s pool would give.
    pub fn pool_head(&self, server: &Server) -> ActivationId {
        self.kernel.objects.port(server.port).and_then(|port| port.pool_head).expect("a free activation")
    }

    /// The kernel's state and memory now.
    pub fn snapshot(&self) -> Snapshot {
        let objects = &self.kernel.objects;
        let threads = objects
            .thread_ids()
            .map(|id| {
                let thread = objects.thread(id).expect("a thread");
                (id, thread.state, objects.chain(id), thread.interrupted)
            })
            .collect();
        let activations = objects
            .activation_ids()
            .map(|id| {
                let activation = objects.activation(id).expect("an activation");
                let control = activation.control;
                (id, activation.occupant, activation.flags, control.alert_pending, control.spliced)
            })
            .collect();
        let ports = objects
            .port_ids()
            .map(|id| {
                let port = objects.port(id).expect("a port");
                PortState {
                    port: id,
                    free: objects.pool_free(id),
                    receivers_head: port.receivers_head,
                    queued: port.queued,
                    waiting: port.waiting,
                    alive: port.alive,
                    server_threads: port.server_threads,
                    served: port.calls_served(),
                }
            })
            .collect();
        let machine = &self.kernel.machine;
        Snapshot {
            state: State {
                statistics: machine.statistics,
                current: self.kernel.current(),
                view: machine.view,
                threads,
                activations,
                ports,
                rights: self.kernel.domains.iter().map(|record| record.space.len()).collect(),
                lent: machine.lent.clone(),
                asid_flushes: machine.asid_flushes,
            },
            memory: machine.memory.clone(),
        }
    }

    /// Assert that nothing changed since `before`: kernel objects,
    /// statistics, lends, and every byte of memory.
    pub fn assert_unchanged(&self, before: &Snapshot, what: &str) {
        let now = self.snapshot();
        assert_eq!(now.state, before.state, "{what}: the kernel's state changed");
        let pages: Vec<u64> = before.memory.keys().chain(now.memory.keys()).copied().collect();
        let changed: Vec<u64> = pages
            .into_iter()
            .filter(|page| {
                let zero = [0u8; 4096];
                let old = before.memory.get(page).map_or(&zero, |bytes| &**bytes);
                let new = now.memory.get(page).map_or(&zero, |bytes| &**bytes);
                old != new
            })
            .map(|page| page * 4096)
            .collect();
        assert!(changed.is_empty(), "{what}: memory changed in the pages at {changed:x?}");
    }
}
