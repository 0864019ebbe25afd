//! The kernel's charging, end to end, against a model: random sequences of
//! kernel calls across three protected domains (and the kernel domain,
//! which sets quotas) on the mock machine, and a plain model of what each
//! domain holds, from which its charges follow as `core/src/quota.rs` says
//! who pays for what:
//!
//! - **ports**: the ports a domain made (`PortCreate`), alive or destroyed
//!   with calls still in them;
//! - **threads**: the threads it made (`ThreadCreate`) and those split off
//!   them by a termination, until each has ended and been joined (or its
//!   creator is gone);
//! - **activations**: its pool and sidetrack activations (`PoolAdd`,
//!   `SidetrackSet`); a thread's own first activation is part of the
//!   thread's charge;
//! - **rights**: the names in its space, live or dead — a right carried in
//!   a message, or granted, is the receiver's; a dead name until its holder
//!   learns it is dead (`PortDead`), which frees it.
//!
//! Operations: create and terminate domains (a terminated domain's slot is
//! taken by a later `create_domain` once nothing is left of it:
//! `core/src/domains.rs`), `PortCreate`, `PortDestroy` (of receive rights,
//! send rights, dead names and names that name nothing), `PoolAdd` and
//! `SidetrackSet` (also with stacks that do not fit), `ThreadCreate`,
//! kernel grants, `Call` from a thread's top domain (carrying a right, a
//! dead name, a name that names nothing, or nothing; through a sidetrack
//! when one is due), `Return` (carrying a right to the client), threads
//! ending (`Exit`, the end of a split-off segment, a thread left with
//! nothing), `ThreadJoin`, and `SetQuota` from the kernel domain, with
//! limits near what is in use so that charges are refused. Calls that
//! would block are not made (the model says when).
//!
//! The model is structural: domains (alive, quota, stack floor, names),
//! ports (owner, alive, activations, sidetrack), activations (domain,
//! port) and threads (creator, chain bottom first, ended, where the base
//! moved). After every step every kernel object agrees with it — the same
//! threads with the same chains, creators and states, the same
//! activations, ports and names — and every domain's
//! `account.used(resource)` equals what the model says it holds. At the
//! end everything is taken down: every call returns, every thread ends and
//! is joined, every port is destroyed and every dead name learnt, after
//! which every charge is zero; then the domains are terminated and made
//! again (in the first slots with nothing left, as the model predicts at
//! every creation), the other dead slots reclaimed, and the kernel holds
//! exactly the threads, activations and ports it held at the start.
//!
//! The first domain is the name service's: its first port (while there is
//! none) is installed at name 0 in every other live domain's space,
//! charged to nobody, and dies with it like any other. A dead domain's
//! reclaimed slot keeps none of its names.
//!
//! Left out: the switching path (`Receive`, `ReplyReceive`), lends,
//! restarts, and a termination whose split the creator's thread quota
//! refuses (the kernel then splices the activation out; such a
//! `terminate_domain` is not made).

mod support;

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};
use support::{STACK, System, THREAD_ENTRY};
use tern_core::abi::{Call, DomainMode, Error, MessageHeader, NO_RIGHT, Role};
use tern_core::board::{DOMAIN_REGION, REGION_STACKS_OFFSET};
use tern_core::capability::{NAME_SERVICE_NAME, PortId};
use tern_core::control::WayBack;
use tern_core::domain::{DomainId, DomainSpec};
use tern_core::domains::{DomainError, MAIN_STACK};
use tern_core::kernel::Next;
use tern_core::machine::Start;
use tern_core::quota::{Quota, Resource};
use tern_core::thread::{ActivationId, ThreadId, ThreadState, UserContext};

fn entry(_: usize) -> usize {
    0
}

/// The protected domains' specs (slot `k` of the model is the domain
/// made from `SPECS[k]`, whichever number it has). The first is the name
/// service: its first port, while there is none, is the name service,
/// which every other domain holds at name 0, charged to nobody.
static SPECS: [DomainSpec; 3] = [
    DomainSpec { name: "p0", entry, role: Role::NameService },
    DomainSpec { name: "p1", entry, role: Role::Plain },
    DomainSpec { name: "p2", entry, role: Role::Plain },
];

/// The kernel domain (merged), which alone may set quotas.
static KERNEL: DomainSpec = DomainSpec { name: "kernel", entry, role: Role::Plain };

/// Where pool activations enter (in the shared image).
const POOL_ENTRY: u64 = 0x9_0000;

/// A stack that fits once in a region's part for stacks (4 MiB, less the
/// main stack): so that `PoolAdd`, `SidetrackSet` and `ThreadCreate` run
/// out of room.
const BIG_STACK: u64 = 3 << 20;

/// A thread's stack.
const THREAD_STACK: u64 = 4096;

/// Where a domain writes requests, receives replies and writes replies
/// (in its heap part).
const REQUEST: u64 = 0x1000;
const REPLY: u64 = 0x2000;
const ANSWER: u64 = 0x3000;

fn stack_bytes(bytes: u64) -> u64 {
    (bytes + 15) & !15
}

// --- The model ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    Live { port: PortId, receive: bool },
    Dead,
}

#[derive(Clone, Debug)]
struct ModelDomain {
    /// Which spec it was made from (`None` for the kernel domain).
    slot: Option<usize>,
    alive: bool,
    limits: [u32; 4],
    /// Stacks are carved below this; `stack_base` is as low as they go.
    floor: u64,
    stack_base: u64,
    names: BTreeMap<u32, Name>,
}

#[derive(Clone, Debug)]
struct ModelPort {
    owner: DomainId,
    alive: bool,
    /// Its pool activations and its sidetrack activation, if any (the
    /// kernel's `pool_size`).
    activations: BTreeSet<ActivationId>,
    sidetrack: Option<ActivationId>,
}

#[derive(Clone, Copy, Debug)]
struct ModelActivation {
    domain: DomainId,
    port: Option<PortId>,
}

#[derive(Clone, Debug)]
struct ModelThread {
    creator: DomainId,
    /// Bottom first.
    chain: Vec<ActivationId>,
    ended: Option<usize>,
    base_moved_to: Option<u32>,
    /// Nobody will join it: forgotten once it has ended, when the next
    /// thread is made (`Kernel::reap_detached`).
    detached: bool,
    /// Made by a split (never named to a domain).
    split_off: bool,
}

/// A right a message carries, as the kernel reads it from the sender's
/// space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carried {
    Port(PortId),
    Dead,
}

#[derive(Clone, Debug, Default)]
struct Model {
    domains: BTreeMap<DomainId, ModelDomain>,
    ports: BTreeMap<PortId, ModelPort>,
    activations: BTreeMap<ActivationId, ModelActivation>,
    threads: BTreeMap<u32, ModelThread>,
    name_service: Option<PortId>,
    /// Detached threads that have ended, forgotten before the next thread
    /// is made.
    pending_reap: Vec<u32>,
}

impl Model {
    fn occupant(&self, activation: ActivationId) -> Option<u32> {
        self.threads.iter().find(|(_, thread)| thread.chain.contains(&activation)).map(|(&id, _)| id)
    }

    /// The port's free pool activations (not its sidetrack).
    fn free(&self, port: PortId) -> Vec<ActivationId> {
        let entry = &self.ports[&port];
        entry
            .activations
            .iter()
            .copied()
            .filter(|&activation| Some(activation) != entry.sidetrack && self.occupant(activation).is_none())
            .collect()
    }

    /// What `domain` holds, by resource (in code order).
    fn held(&self, domain: DomainId) -> [u32; 4] {
        let ports = self.ports.values().filter(|port| port.owner == domain).count();
        let threads = self.threads.values().filter(|thread| thread.creator == domain).count();
        let activations = self
            .activations
            .values()
            .filter(|activation| activation.domain == domain && activation.port.is_some())
            .count();
        // (The name service's name, 0, is charged to nobody.)
        let rights = self
            .domains
            .get(&domain)
            .map_or(0, |record| record.names.keys().filter(|&&name| name != NAME_SERVICE_NAME).count());
        [ports as u32, threads as u32, activations as u32, rights as u32]
    }

    /// Whether `count` more of `resource` fit `domain`'s quota (the kernel,
    /// domain 0, is charged nothing).
    fn fits(&self, domain: DomainId, resource: Resource, count: u32) -> bool {
        let Some(record) = self.domains.get(&domain) else { return true };
        u64::from(self.held(domain)[resource as usize]) + u64::from(count)
            <= u64::from(record.limits[resource as usize])
    }

    fn stacks_fit(&self, domain: DomainId, count: u64, bytes: u64) -> bool {
        let record = &self.domains[&domain];
        stack_bytes(bytes) * count <= record.floor - record.stack_base
    }

    fn carve(&mut self, domain: DomainId, bytes: u64) {
        self.domains.get_mut(&domain).expect("a domain").floor -= stack_bytes(bytes);
    }

    fn name_of(&self, domain: DomainId, port: PortId) -> Option<u32> {
        self.domains[&domain]
            .names
            .iter()
            .find(|(_, name)| matches!(name, Name::Live { port: named, .. } if *named == port))
            .map(|(&name, _)| name)
    }

    fn free_name(&self, domain: DomainId) -> u32 {
        let names = &self.domains[&domain].names;
        (1..).find(|name| !names.contains_key(name)).expect("a free name")
    }

    /// Give `domain` a right to `port`: its name (an existing one for the
    /// same port, upgraded if need be).
    fn insert(&mut self, domain: DomainId, port: PortId, receive: bool) -> u32 {
        if let Some(name) = self.name_of(domain, port) {
            if let Some(Name::Live { receive: held, .. }) =
                self.domains.get_mut(&domain).and_then(|record| record.names.get_mut(&name))
            {
                *held |= receive;
            }
            return name;
        }
        let name = self.free_name(domain);
        self.domains.get_mut(&domain).expect("a domain").names.insert(name, Name::Live { port, receive });
        name
    }

    fn insert_dead(&mut self, domain: DomainId) -> u32 {
        let name = self.free_name(domain);
        self.domains.get_mut(&domain).expect("a domain").names.insert(name, Name::Dead);
        name
    }

    /// `Kernel::right`: what `name` names in `domain`'s space; a dead name
    /// is `PortDead`, and learnt (freed).
    fn right(&mut self, domain: DomainId, name: u32) -> Result<(PortId, bool), Error> {
        let names = &mut self.domains.get_mut(&domain).expect("a domain").names;
        match names.get(&name).copied() {
            Some(Name::Live { port, receive }) => Ok((port, receive)),
            Some(Name::Dead) => {
                names.remove(&name);
                Err(Error::PortDead)
            }
            None => Err(Error::NoSuchPort),
        }
    }

    fn receive_right(&mut self, domain: DomainId, name: u32) -> Result<PortId, Error> {
        match self.right(domain, name)? {
            (port, true) => Ok(port),
            (_, false) => Err(Error::NoRight),
        }
    }

    /// The right a message's header names in `domain`'s space.
    fn carried(&self, domain: DomainId, name: u32) -> Result<Option<Carried>, Error> {
        if name == NO_RIGHT {
            return Ok(None);
        }
        match self.domains[&domain].names.get(&name) {
            Some(Name::Live { port, .. }) => Ok(Some(Carried::Port(*port))),
            Some(Name::Dead) => Ok(Some(Carried::Dead)),
            None => Err(Error::NoRight),
        }
    }

    fn can_take_right(&self, receiver: DomainId, right: Option<Carried>) -> bool {
        match right {
            None => true,
            Some(Carried::Port(port)) if self.name_of(receiver, port).is_some() => true,
            Some(_) => self.fits(receiver, Resource::Rights, 1),
        }
    }

    /// `receiver` takes the right: its name for it.
    fn deliver_right(&mut self, receiver: DomainId, right: Option<Carried>) -> u32 {
        match right {
            None => NO_RIGHT,
            Some(Carried::Port(port)) => self.insert(receiver, port, false),
            Some(Carried::Dead) => self.insert_dead(receiver),
        }
    }

    /// `Kernel::put_back`: an activation a thread has left.
    fn put_back(&mut self, activation: ActivationId) {
        let entry = self.activations[&activation];
        let Some(port) = entry.port else {
            self.activations.remove(&activation);
            return;
        };
        let pooled = self.ports.get(&port).is_some_and(|port| port.alive && port.owner == entry.domain);
        if !pooled {
            self.remove_port_activation(port, activation);
        }
    }

    fn remove_port_activation(&mut self, port: PortId, activation: ActivationId) {
        self.activations.remove(&activation);
        let Some(entry) = self.ports.get_mut(&port) else { return };
        entry.activations.remove(&activation);
        if !entry.alive && entry.activations.is_empty() {
            self.ports.remove(&port);
        }
    }

    /// `Kernel::destroy_port`.
    fn destroy_port(&mut self, port: PortId) {
        let Some(entry) = self.ports.get(&port) else { return };
        if !entry.alive && entry.activations.is_empty() {
            return;
        }
        for record in self.domains.values_mut() {
            let name = record
                .names
                .iter()
                .find(|(_, name)| matches!(name, Name::Live { port: named, .. } if *named == port))
                .map(|(&name, _)| name);
            if let Some(name) = name {
                record.names.insert(name, Name::Dead);
            }
        }
        if self.name_service == Some(port) {
            self.name_service = None;
        }
        let mut free = self.free(port);
        let entry = self.ports.get_mut(&port).expect("a port");
        entry.alive = false;
        let sidetrack = entry.sidetrack.take();
        free.extend(sidetrack.filter(|&activation| self.occupant(activation).is_none()));
        for activation in free {
            self.remove_port_activation(port, activation);
        }
        if self.ports.get(&port).is_some_and(|entry| entry.activations.is_empty()) {
            self.ports.remove(&port);
        }
    }

    /// The number the kernel gives the next thread it makes: the lowest
    /// not in use (the boot thread's included).
    fn next_thread(&self, boot: u32) -> u32 {
        (1..).find(|key| *key != boot && !self.threads.contains_key(key)).expect("a number")
    }

    /// `Kernel::kill_domain` (no restart): `None` if a termination would
    /// be refused for want of thread quota (the kernel then splices the
    /// activation out instead, which this model leaves out).
    fn kill(&mut self, domain: DomainId, boot: u32) -> Option<()> {
        self.domains.get_mut(&domain).expect("a domain").alive = false;
        let mut victims: Vec<ActivationId> = self
            .activations
            .iter()
            .filter(|&(&id, entry)| entry.domain == domain && self.occupant(id).is_some())
            .map(|(&id, _)| id)
            .collect();
        victims.sort();
        // The kernel's first termination forgets the detached threads that
        // have ended (`Kernel::reap_detached`), as a new thread does.
        if victims.iter().any(|&victim| self.occupant(victim) != Some(boot)) {
            self.reap_detached();
        }
        for victim in victims {
            let thread = self.occupant(victim).expect("occupied");
            let (chain, creator) = {
                let entry = &self.threads[&thread];
                (entry.chain.clone(), entry.creator)
            };
            let at = chain.iter().position(|&activation| activation == victim).expect("on the chain");
            if at > 0 {
                if !self.fits(creator, Resource::Threads, 1) {
                    return None;
                }
                let carries_base = self.activations[&chain[0]].port.is_none();
                let lower = self.next_thread(boot);
                self.threads.insert(
                    lower,
                    ModelThread {
                        creator,
                        chain: chain[..at].to_vec(),
                        ended: None,
                        base_moved_to: None,
                        detached: false,
                        split_off: true,
                    },
                );
                if carries_base {
                    self.threads.get_mut(&thread).expect("a thread").base_moved_to = Some(lower);
                }
            }
            self.threads.get_mut(&thread).expect("a thread").chain = chain[at + 1..].to_vec();
            self.put_back(victim);
        }
        let owned: Vec<PortId> =
            self.ports.iter().filter(|(_, entry)| entry.owner == domain).map(|(&port, _)| port).collect();
        for port in owned {
            self.destroy_port(port);
        }
        self.forget_threads(|_, thread| thread.creator == domain && thread.ended.is_some());
        Some(())
    }

    /// `thread` ends with `value` (`Kernel::end_current_thread`): a thread
    /// split off, past its end only a link in the chain a join follows, is
    /// cut out of it and forgotten with the detached ones, as is one split
    /// off that never carried the base (on no chain at all).
    fn thread_ended(&mut self, thread: u32, value: usize) {
        let moved_to = self.threads[&thread].base_moved_to;
        if let Some(next) = moved_to {
            let before: Vec<u32> = self
                .threads
                .iter()
                .filter(|(_, entry)| entry.base_moved_to == Some(thread))
                .map(|(&key, _)| key)
                .collect();
            if !before.is_empty() {
                for key in before {
                    self.threads.get_mut(&key).expect("a thread").base_moved_to = Some(next);
                }
                let entry = self.threads.get_mut(&thread).expect("a thread");
                entry.detached = true;
                entry.base_moved_to = None;
            }
        }
        // One split off that never carried the base is on no join's chain.
        let pointed = self.threads.values().any(|entry| entry.base_moved_to == Some(thread));
        let entry = self.threads.get_mut(&thread).expect("a thread");
        if entry.split_off && moved_to.is_none() && !pointed {
            entry.detached = true;
        }
        entry.ended = Some(value);
        if entry.detached {
            self.pending_reap.push(thread);
        }
    }

    /// Forget the detached threads that have ended (before a thread is
    /// made).
    fn reap_detached(&mut self) {
        let pending = core::mem::take(&mut self.pending_reap);
        self.forget_threads(|key, _| pending.contains(&key));
    }

    /// Forget the threads `which` picks (the kernel's `reap`): a thread
    /// whose base had moved to one of them no longer names it.
    fn forget_threads(&mut self, which: impl Fn(u32, &ModelThread) -> bool) {
        let gone: Vec<u32> =
            self.threads.iter().filter(|&(&key, thread)| which(key, thread)).map(|(&key, _)| key).collect();
        for key in &gone {
            self.threads.remove(key);
        }
        self.pending_reap.retain(|key| !gone.contains(key));
        for thread in self.threads.values_mut() {
            if thread.base_moved_to.is_some_and(|to| gone.contains(&to)) {
                thread.base_moved_to = None;
            }
        }
    }

    /// Whether nothing is left of dead domain `domain` (`Kernel::reclaim`).
    fn reclaimable(&self, domain: DomainId) -> bool {
        !self.domains[&domain].alive
            && !self.activations.values().any(|entry| entry.domain == domain)
            && !self.ports.values().any(|entry| entry.owner == domain)
            && !self.threads.values().any(|thread| thread.creator == domain && thread.ended.is_none())
    }
}

// --- Operations --------------------------------------------------------------

/// A port name in a domain's space: mostly one of a useful kind it
/// holds, else any it holds (live or dead), else any small number.
#[derive(Clone, Copy, Debug)]
enum NamePick {
    /// Any name it holds, live or dead.
    Held(Index),
    /// A receive right.
    Receive(Index),
    /// A right to a port with a free activation.
    Callable(Index),
    Raw(u32),
}

impl NamePick {
    fn resolve(self, model: &Model, domain: DomainId) -> u32 {
        let names = &model.domains[&domain].names;
        let pick = |index: Index, candidates: Vec<u32>| {
            (!candidates.is_empty()).then(|| candidates[index.index(candidates.len())])
        };
        let live = |want: &dyn Fn(PortId, bool) -> bool| -> Vec<u32> {
            names
                .iter()
                .filter(|(_, name)| matches!(name, Name::Live { port, receive } if want(*port, *receive)))
                .map(|(&name, _)| name)
                .collect()
        };
        let chosen = match self {
            NamePick::Raw(name) => return name,
            NamePick::Held(index) => pick(index, names.keys().copied().collect()),
            NamePick::Receive(index) => pick(index, live(&|_, receive| receive)),
            NamePick::Callable(index) => pick(index, live(&|port, _| !model.free(port).is_empty())),
        };
        let any = match self {
            NamePick::Held(index) | NamePick::Receive(index) | NamePick::Callable(index) => index,
            NamePick::Raw(_) => unreachable!(),
        };
        chosen.or_else(|| pick(any, names.keys().copied().collect())).unwrap_or(1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Terminate(usize),
    PortCreate(usize),
    PortDestroy(usize, NamePick),
    PoolAdd(usize, NamePick, u64, bool),
    Sidetrack(usize, NamePick, bool),
    ThreadCreate(usize, bool),
    Grant(usize, NamePick, usize),
    Call(Index, NamePick, Option<NamePick>),
    Return(Index, Option<NamePick>),
    End(Index, u8),
    /// Join a thread (mostly an ended one) from its creator, or from the
    /// domain of this slot.
    Join(Option<usize>, Index),
    /// A new limit: what is used plus this (at least 0), or the default.
    SetQuota(usize, usize, Option<i8>),
}

fn slot() -> impl Strategy<Value = usize> {
    0..SPECS.len()
}

/// Names, weighted: (held, receive rights, callable, raw).
fn names(weights: [u32; 4]) -> impl Strategy<Value = NamePick> {
    prop_oneof![
        weights[0] => any::<Index>().prop_map(NamePick::Held),
        weights[1] => any::<Index>().prop_map(NamePick::Receive),
        weights[2] => any::<Index>().prop_map(NamePick::Callable),
        weights[3] => (0u32..8).prop_map(NamePick::Raw),
    ]
}

/// The right a message carries: none, a name held (live or dead), or a
/// name that may name nothing.
fn carry() -> impl Strategy<Value = Option<NamePick>> {
    prop_oneof![3 => Just(None), 4 => names([4, 1, 0, 1]).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => slot().prop_map(Op::Create),
        2 => slot().prop_map(Op::Terminate),
        3 => slot().prop_map(Op::PortCreate),
        3 => (slot(), names([3, 3, 0, 1])).prop_map(|(slot, name)| Op::PortDestroy(slot, name)),
        3 => (slot(), names([1, 6, 0, 1]), 1u64..=3, prop::bool::weighted(0.15))
            .prop_map(|(slot, name, count, big)| Op::PoolAdd(slot, name, count, big)),
        1 => (slot(), names([1, 6, 0, 1]), prop::bool::weighted(0.2))
            .prop_map(|(slot, name, big)| Op::Sidetrack(slot, name, big)),
        3 => (slot(), prop::bool::weighted(0.1)).prop_map(|(slot, big)| Op::ThreadCreate(slot, big)),
        3 => (slot(), names([3, 2, 0, 1]), slot()).prop_map(|(from, name, to)| Op::Grant(from, name, to)),
        12 => (any::<Index>(), names([2, 0, 8, 1]), carry())
            .prop_map(|(thread, name, carry)| Op::Call(thread, name, carry)),
        8 => (any::<Index>(), carry()).prop_map(|(thread, carry)| Op::Return(thread, carry)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(thread, value)| Op::End(thread, value)),
        3 => (prop::option::weighted(0.2, slot()), any::<Index>()).prop_map(|(slot, thread)| Op::Join(slot, thread)),
        3 => (slot(), 0usize..4, prop_oneof![4 => (-1i8..=2).prop_map(Some), 1 => Just(None)])
            .prop_map(|(slot, resource, limit)| Op::SetQuota(slot, resource, limit)),
    ]
}

// --- The kernel and the model together ----------------------------------------

struct Harness {
    system: System,
    model: Model,
    kernel_domain: DomainId,
    /// The domain each spec was last made into (alive or dead).
    slots: [Option<DomainId>; 3],
    /// Threads, activations and ports the kernel held at the start.
    start: (usize, usize, usize),
}

fn thread_id(key: u32) -> ThreadId {
    ThreadId::new(key).expect("not 0")
}

impl Harness {
    fn new() -> Self {
        let mut system = System::new();
        let boot = system.boot;
        system.frame(boot);
        let kernel_domain = system.kernel.create_domain(&KERNEL).expect("the kernel domain");
        system.kernel.domain_mut(kernel_domain).expect("a record").mode = DomainMode::Merged;
        let mut model = Model::default();
        let record = system.kernel.domain(kernel_domain).expect("a record");
        model.domains.insert(
            kernel_domain,
            ModelDomain {
                slot: None,
                alive: true,
                limits: Quota::DEFAULT.0,
                floor: record.stack_floor,
                stack_base: record.domain.region.start + REGION_STACKS_OFFSET,
                names: BTreeMap::new(),
            },
        );
        let start = counts(&system);
        Harness { system, model, kernel_domain, slots: [None; 3], start }
    }

    /// The live domain made from spec `slot`, if any.
    fn alive(&self, slot: usize) -> Option<DomainId> {
        self.slots[slot].filter(|id| self.model.domains.get(id).is_some_and(|record| record.alive))
    }

    fn as_domain(&mut self, domain: DomainId, call: Call, arguments: &[u64]) -> Result<usize, Error> {
        self.system.as_domain(domain, call, arguments)
    }

    /// Give the processor to `thread` (as `System::switch_to`, but a thread
    /// with no activation that has never run is let be: false, it ends at
    /// once).
    fn run(&mut self, thread: ThreadId) -> bool {
        let system = &mut self.system;
        let current = system.kernel.current();
        if current != thread {
            if system.state(current) == ThreadState::Running {
                let frame = system.frames.entry(current).or_default();
                system.kernel.set_boundary(frame, true);
                system.kernel.wake(current);
            }
            system.kernel.run_queue.remove(thread);
            let switch = system.kernel.prepare_switch(thread).expect("a switch");
            system.kernel.machine.view = switch.view;
        }
        if !system.frames.contains_key(&thread) {
            let context = match system.kernel.thread_start() {
                None => return false,
                Some(Start::Upcall(target)) => {
                    let mut context =
                        UserContext { sp: target.stack, pc: target.entry, pstate: target.state, ..Default::default() };
                    context.x[..2].copy_from_slice(&target.arguments);
                    context
                }
                Some(Start::Resume(_, registers)) => *registers,
            };
            system.frame(thread).context = context;
        }
        let frame = system.frames.entry(thread).or_default();
        system.kernel.set_boundary(frame, false);
        true
    }

    fn back_to_boot(&mut self) {
        let boot = self.system.boot;
        self.system.switch_to(boot);
    }

    /// Forget the frames of threads the kernel has forgotten (their
    /// numbers may be reused).
    fn forget_frames(&mut self) {
        let objects = &self.system.kernel.objects;
        self.system.frames.retain(|&thread, _| objects.thread(thread).is_some());
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Create(slot) => self.create(slot)?,
            Op::Terminate(slot) => self.terminate(slot)?,
            Op::PortCreate(slot) => {
                if let Some(domain) = self.alive(slot) {
                    self.port_create(domain)?;
                }
            }
            Op::PortDestroy(slot, pick) => {
                if let Some(domain) = self.alive(slot) {
                    let name = pick.resolve(&self.model, domain);
                    self.port_destroy(domain, name)?;
                }
            }
            Op::PoolAdd(slot, pick, count, big) => self.pool_add(slot, pick, count, big)?,
            Op::Sidetrack(slot, pick, big) => self.sidetrack(slot, pick, big)?,
            Op::ThreadCreate(slot, big) => self.thread_create(slot, big)?,
            Op::Grant(from, pick, to) => self.grant(from, pick, to)?,
            Op::Call(thread, pick, carry) => {
                let can_call = |thread: &ModelThread| thread.ended.is_none() && !thread.chain.is_empty();
                if let Some(thread) = self.pick_thread(thread, can_call) {
                    self.call(thread, pick, carry)?;
                }
            }
            Op::Return(thread, carry) => {
                let model = &self.model;
                let in_call = |thread: &ModelThread| {
                    thread.ended.is_none()
                        && thread.chain.last().is_some_and(|top| model.activations[top].port.is_some())
                };
                if let Some(thread) = self.pick_thread(thread, in_call) {
                    self.return_from(thread, carry)?;
                }
            }
            Op::End(thread, value) => {
                let model = &self.model;
                let can_end = |thread: &ModelThread| {
                    thread.ended.is_none()
                        && match thread.chain[..] {
                            [] => true,
                            [base] => model.activations[&base].port.is_none(),
                            _ => false,
                        }
                };
                if let Some(thread) = self.pick_thread(thread, can_end) {
                    self.end(thread, value as usize)?;
                }
            }
            Op::Join(slot, thread) => {
                if let Some(thread) = self.pick_thread(thread, |thread| thread.ended.is_some()) {
                    let domain = match slot {
                        Some(slot) => self.alive(slot),
                        None => Some(self.model.threads[&thread].creator)
                            .filter(|creator| self.model.domains[creator].alive),
                    };
                    if let Some(domain) = domain {
                        self.join(domain, thread)?;
                    }
                }
            }
            Op::SetQuota(slot, resource, limit) => self.set_quota(slot, resource, limit)?,
        }
        self.forget_frames();
        self.check()
    }

    /// A thread for which `fits` holds, if there is one, else any.
    fn pick_thread(&self, index: Index, fits: impl Fn(&ModelThread) -> bool) -> Option<u32> {
        let fitting: Vec<u32> =
            self.model.threads.iter().filter(|(_, thread)| fits(thread)).map(|(&key, _)| key).collect();
        let candidates = if fitting.is_empty() { self.model.threads.keys().copied().collect() } else { fitting };
        (!candidates.is_empty()).then(|| candidates[index.index(candidates.len())])
    }

    fn create(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let spec = &SPECS[slot];
        if self.alive(slot).is_some() {
            prop_assert_eq!(self.system.kernel.create_domain(spec), Err(DomainError::NameTaken));
            return Ok(());
        }
        let records = self.system.kernel.domains.len();
        let reused = (1..=records as u16).map(DomainId).find(|&id| self.model.reclaimable(id));
        let expected = match reused {
            Some(id) => Ok(id),
            None if records < support::DOMAINS as usize => Ok(DomainId(records as u16 + 1)),
            None => Err(DomainError::ArenaFull),
        };
        let made = self.system.kernel.create_domain(spec);
        prop_assert_eq!(
            made,
            expected,
            "create_domain({}): the first slot with nothing left, else a new one",
            spec.name
        );
        let Ok(id) = made else { return Ok(()) };
        if reused.is_some() {
            // Its predecessor's ended threads are forgotten with it.
            self.model.forget_threads(|_, thread| thread.creator == id);
            for (other, entry) in self.slots.iter_mut().enumerate() {
                if *entry == Some(id) && other != slot {
                    *entry = None;
                }
            }
        }
        let record = self.system.kernel.domain(id).expect("a record");
        let region = record.domain.region;
        prop_assert_eq!(region.start, support::ARENA + (id.0 as u64 - 1) * DOMAIN_REGION);
        // A new domain holds the name service, if there is one, at name 0.
        let names = self
            .model
            .name_service
            .map(|port| (NAME_SERVICE_NAME, Name::Live { port, receive: false }))
            .into_iter()
            .collect();
        self.model.domains.insert(
            id,
            ModelDomain {
                slot: Some(slot),
                alive: true,
                limits: Quota::DEFAULT.0,
                floor: region.end - stack_bytes(MAIN_STACK),
                stack_base: region.start + REGION_STACKS_OFFSET,
                names,
            },
        );
        self.slots[slot] = Some(id);
        Ok(())
    }

    fn terminate(&mut self, slot: usize) -> Result<(), TestCaseError> {
        let Some(id) = self.slots[slot] else { return Ok(()) };
        if !self.model.domains.contains_key(&id) || self.model.domains[&id].slot != Some(slot) {
            return Ok(());
        }
        let mut next = self.model.clone();
        if next.kill(id, self.system.boot.get()).is_none() {
            // A split would be refused for the creator's thread quota: the
            // kernel splices instead, which the model leaves out.
            return Ok(());
        }
        self.system.kernel.terminate_domain(id);
        self.model = next;
        Ok(())
    }

    fn port_create(&mut self, domain: DomainId) -> Result<(), TestCaseError> {
        let fits = self.model.fits(domain, Resource::Ports, 1) && self.model.fits(domain, Resource::Rights, 1);
        let result = self.as_domain(domain, Call::PortCreate, &[0]);
        if !fits {
            prop_assert_eq!(result, Err(Error::OverQuota), "PortCreate over the quota");
            return Ok(());
        }
        let name = self.model.free_name(domain);
        prop_assert_eq!(result, Ok(name as usize), "PortCreate: the lowest free name");
        let port =
            self.system.kernel.domain(domain).and_then(|record| record.space.lookup(name)).expect("a right").port;
        prop_assert!(!self.model.ports.contains_key(&port), "{:?} is new", port);
        self.model
            .ports
            .insert(port, ModelPort { owner: domain, alive: true, activations: BTreeSet::new(), sidetrack: None });
        self.model.insert(domain, port, true);
        let names = self.model.domains[&domain].slot.is_some_and(|slot| SPECS[slot].role == Role::NameService);
        if names && self.model.name_service.is_none() {
            // The name service: every other live domain holds it at name 0
            // (over a dead name there); a dead one's space is left alone.
            self.model.name_service = Some(port);
            for (&other, record) in self.model.domains.iter_mut() {
                if other != domain && record.alive {
                    record.names.insert(NAME_SERVICE_NAME, Name::Live { port, receive: false });
                }
            }
        }
        Ok(())
    }

    fn port_destroy(&mut self, domain: DomainId, name: u32) -> Result<(), TestCaseError> {
        let expected = self.model.receive_right(domain, name).map(|port| {
            self.model.destroy_port(port);
            0
        });
        let result = self.as_domain(domain, Call::PortDestroy, &[name as u64]);
        prop_assert_eq!(result, expected, "PortDestroy({})", name);
        Ok(())
    }

    /// New activations of `domain` (not in the model), in number order.
    fn new_activations(&self, domain: DomainId) -> Vec<ActivationId> {
        let objects = &self.system.kernel.objects;
        objects
            .activation_ids()
            .filter(|id| !self.model.activations.contains_key(id))
            .filter(|&id| objects.activation(id).is_some_and(|entry| entry.domain == domain))
            .collect()
    }

    fn pool_add(&mut self, slot: usize, pick: NamePick, count: u64, big: bool) -> Result<(), TestCaseError> {
        let Some(domain) = self.alive(slot) else { return Ok(()) };
        let name = pick.resolve(&self.model, domain);
        let stack = if big { BIG_STACK } else { STACK };
        let expected = self.model.receive_right(domain, name).and_then(|port| {
            if !self.model.stacks_fit(domain, count, stack) {
                return Err(Error::OutOfMemory);
            }
            if !self.model.fits(domain, Resource::Activations, count as u32) {
                return Err(Error::OverQuota);
            }
            Ok(port)
        });
        let result = self.as_domain(domain, Call::PoolAdd, &[name as u64, count, POOL_ENTRY, stack]);
        match expected {
            Err(error) => prop_assert_eq!(result, Err(error), "PoolAdd({}, {}, {:#x})", name, count, stack),
            Ok(port) => {
                let made = self.new_activations(domain);
                prop_assert_eq!(made.len() as u64, count, "PoolAdd made {} activations", count);
                for &activation in &made {
                    self.model.activations.insert(activation, ModelActivation { domain, port: Some(port) });
                    self.model.ports.get_mut(&port).expect("a port").activations.insert(activation);
                    self.model.carve(domain, stack);
                }
                prop_assert_eq!(result, Ok(self.model.free(port).len()), "PoolAdd answers the free activations");
            }
        }
        Ok(())
    }

    fn sidetrack(&mut self, slot: usize, pick: NamePick, big: bool) -> Result<(), TestCaseError> {
        let Some(domain) = self.alive(slot) else { return Ok(()) };
        let name = pick.resolve(&self.model, domain);
        let stack = if big { BIG_STACK } else { STACK };
        let expected = self.model.receive_right(domain, name).and_then(|port| {
            if self.model.ports[&port].sidetrack.is_some() {
                return Err(Error::Busy);
            }
            if !self.model.stacks_fit(domain, 1, stack) {
                return Err(Error::OutOfMemory);
            }
            if !self.model.fits(domain, Resource::Activations, 1) {
                return Err(Error::OverQuota);
            }
            Ok(port)
        });
        let result = self.as_domain(domain, Call::SidetrackSet, &[name as u64, POOL_ENTRY, stack]);
        match expected {
            Err(error) => prop_assert_eq!(result, Err(error), "SidetrackSet({})", name),
            Ok(port) => {
                prop_assert_eq!(result, Ok(0), "SidetrackSet({})", name);
                let made = self.new_activations(domain);
                prop_assert_eq!(made.len(), 1);
                self.model.activations.insert(made[0], ModelActivation { domain, port: Some(port) });
                let entry = self.model.ports.get_mut(&port).expect("a port");
                entry.activations.insert(made[0]);
                entry.sidetrack = Some(made[0]);
                self.model.carve(domain, stack);
            }
        }
        Ok(())
    }

    fn thread_create(&mut self, slot: usize, big: bool) -> Result<(), TestCaseError> {
        let Some(domain) = self.alive(slot) else { return Ok(()) };
        let stack = if big { BIG_STACK } else { THREAD_STACK };
        self.model.reap_detached();
        let expected = if !self.model.fits(domain, Resource::Threads, 1) {
            Err(Error::OverQuota)
        } else if !self.model.stacks_fit(domain, 1, stack) {
            Err(Error::OutOfMemory)
        } else {
            Ok(())
        };
        let result = self.as_domain(domain, Call::ThreadCreate, &[THREAD_ENTRY as u64, 0, 4, stack]);
        match expected {
            Err(error) => prop_assert_eq!(result, Err(error), "ThreadCreate"),
            Ok(()) => {
                prop_assert!(result.is_ok(), "ThreadCreate: {:?}", result);
                let thread = result.expect("a thread") as u32;
                prop_assert_eq!(thread, self.model.next_thread(self.system.boot.get()), "the lowest free number");
                let made = self.new_activations(domain);
                prop_assert_eq!(made.len(), 1, "its first activation");
                self.model.activations.insert(made[0], ModelActivation { domain, port: None });
                self.model.threads.insert(
                    thread,
                    ModelThread {
                        creator: domain,
                        chain: vec![made[0]],
                        ended: None,
                        base_moved_to: None,
                        detached: false,
                        split_off: false,
                    },
                );
                self.model.carve(domain, stack);
            }
        }
        Ok(())
    }

    fn grant(&mut self, from: usize, pick: NamePick, to: usize) -> Result<(), TestCaseError> {
        let (Some(from), Some(to)) = (self.alive(from), self.alive(to)) else { return Ok(()) };
        let name = pick.resolve(&self.model, from);
        let expected = match self.model.domains[&from].names.get(&name) {
            Some(&Name::Live { port, .. }) if self.model.can_take_right(to, Some(Carried::Port(port))) => {
                Some(self.model.insert(to, port, false))
            }
            _ => None,
        };
        let granted = self.system.kernel.grant_send_right(from, name, to);
        prop_assert_eq!(granted, expected, "grant_send_right({:?}, {}, {:?})", from, name, to);
        Ok(())
    }

    /// The domain `thread`'s top activation is in, if it has one.
    fn top_domain(&self, thread: u32) -> Option<(ActivationId, DomainId)> {
        let top = *self.model.threads[&thread].chain.last()?;
        Some((top, self.model.activations[&top].domain))
    }

    fn call(&mut self, thread: u32, pick: NamePick, carry: Option<NamePick>) -> Result<(), TestCaseError> {
        if self.model.threads[&thread].ended.is_some() {
            return Ok(());
        }
        let Some((_, domain)) = self.top_domain(thread) else { return Ok(()) };
        prop_assert!(self.model.domains[&domain].alive, "thread {} runs in dead {:?}", thread, domain);
        let name = pick.resolve(&self.model, domain);
        let carried_name = carry.map_or(NO_RIGHT, |carry| carry.resolve(&self.model, domain));
        // The checks, in the kernel's order.
        let mut next = self.model.clone();
        let checked = next.right(domain, name).and_then(|(port, _)| {
            let right = next.carried(domain, carried_name)?;
            let owner = next.ports[&port].owner;
            if !next.can_take_right(owner, right) {
                return Err(Error::OverQuota);
            }
            Ok((port, owner, right))
        });
        let route = checked.map(|(port, owner, right)| {
            let free = next.free(port);
            // Taking the pool's last activation makes the sidetrack upcall
            // first, if the port has a free sidetrack activation.
            let sidetrack = next.ports[&port]
                .sidetrack
                .filter(|&activation| free.len() == 1 && next.occupant(activation).is_none());
            (port, owner, right, free, sidetrack)
        });
        if matches!(&route, Ok((_, _, _, free, _)) if free.is_empty()) {
            return Ok(()); // it would wait for an activation
        }
        let kernel_thread = thread_id(thread);
        self.run(kernel_thread);
        let region = self.system.region(domain);
        let header = MessageHeader { label: 1, right: carried_name, length: 0, reserved: 0 };
        let length = self.system.write(region + REQUEST, header, &[]);
        let answer = self.system.call(name, (region + REQUEST, length), (region + REPLY, 64));
        prop_assert_eq!(&answer, &Next::Resume, "Call answers at once");
        match route {
            Err(error) => {
                let result = self.system.current_frame().result();
                prop_assert_eq!(result, Err(error), "Call({}) carrying {}", name, carried_name);
                self.model = next;
            }
            Ok((port, owner, right, free, sidetrack)) => {
                if let Some(sidetrack) = sidetrack {
                    // The pool's last activation: the sidetrack upcall
                    // first, then the call again.
                    prop_assert_eq!(self.system.top(kernel_thread), sidetrack, "the sidetrack upcall is due");
                    prop_assert_eq!(self.system.invoke(Call::Return, &[0, 0]), Next::Resume);
                    prop_assert_eq!(self.system.repeat(), Next::Resume, "the call made again");
                }
                let entered = self.system.top(kernel_thread);
                prop_assert!(free.contains(&entered), "{:?} is a free activation of {:?}", entered, port);
                let delivered = next.deliver_right(owner, right);
                prop_assert_eq!(
                    self.system.delivered().right,
                    delivered,
                    "the request's right, as the server names it"
                );
                next.threads.get_mut(&thread).expect("a thread").chain.push(entered);
                self.model = next;
            }
        }
        self.back_to_boot();
        Ok(())
    }

    fn return_from(&mut self, thread: u32, carry: Option<NamePick>) -> Result<(), TestCaseError> {
        let entry = &self.model.threads[&thread];
        if entry.ended.is_some() {
            return Ok(());
        }
        let Some((top, server)) = self.top_domain(thread) else { return Ok(()) };
        if self.model.activations[&top].port.is_none() {
            return Ok(());
        }
        let client = entry.chain.len().checked_sub(2).map(|below| self.model.activations[&entry.chain[below]].domain);
        let carried_name = carry.map_or(NO_RIGHT, |carry| carry.resolve(&self.model, server));
        let kernel_thread = thread_id(thread);
        self.run(kernel_thread);
        let answer = self.system.region(server) + ANSWER;
        let header = MessageHeader { label: 2, right: carried_name, length: 0, reserved: 0 };
        let length = self.system.write(answer, header, &[]);
        let next = self.system.invoke(Call::Return, &[answer, length]);
        match client {
            None => {
                // The bottom of a segment split off below a terminated
                // activation: nobody waits; the thread ends.
                prop_assert_eq!(next, Next::EndThread(0), "a return with nobody to return to ends the thread");
                self.system.kernel.end_current_thread(0);
                self.model.put_back(top);
                self.model.threads.get_mut(&thread).expect("a thread").chain.pop();
                self.model.thread_ended(thread, 0);
            }
            Some(client) => {
                prop_assert_eq!(next, Next::Resume, "Return");
                let expected = self.model.carried(server, carried_name).and_then(|right| {
                    if !self.model.can_take_right(client, right) {
                        return Err(Error::OverQuota);
                    }
                    Ok(right)
                });
                let result = self.system.current_frame().result();
                match expected {
                    Err(error) => prop_assert_eq!(result, Err(error), "the client's result"),
                    Ok(right) => {
                        prop_assert_eq!(result, Ok(length as usize), "the client's result");
                        let name = self.model.deliver_right(client, right);
                        let reply = self.system.region(client) + REPLY;
                        prop_assert_eq!(
                            self.system.header(reply).right,
                            name,
                            "the reply's right, as the client names it"
                        );
                    }
                }
                self.model.put_back(top);
                self.model.threads.get_mut(&thread).expect("a thread").chain.pop();
            }
        }
        self.back_to_boot();
        Ok(())
    }

    fn end(&mut self, thread: u32, value: usize) -> Result<(), TestCaseError> {
        let entry = &self.model.threads[&thread];
        if entry.ended.is_some() {
            return Ok(());
        }
        let kernel_thread = thread_id(thread);
        match entry.chain[..] {
            [] => {
                // Nothing left of it (its activations were terminated): it
                // ends as soon as it runs.
                if self.run(kernel_thread) {
                    prop_assert_eq!(self.system.way_back(false), WayBack::End, "a thread with nothing left ends");
                }
                self.system.kernel.end_current_thread(0);
                self.model.thread_ended(thread, 0);
            }
            [base] if self.model.activations[&base].port.is_none() => {
                self.run(kernel_thread);
                prop_assert_eq!(self.system.invoke(Call::Exit, &[value as u64]), Next::ExitUpcall(value));
                self.system.kernel.end_current_thread(value);
                self.model.put_back(base);
                self.model.threads.get_mut(&thread).expect("a thread").chain.clear();
                self.model.thread_ended(thread, value);
            }
            _ => return Ok(()),
        }
        self.back_to_boot();
        Ok(())
    }

    fn join(&mut self, domain: DomainId, thread: u32) -> Result<(), TestCaseError> {
        let mut expected = Err(Error::InvalidArgument);
        let mut reaped = Vec::new();
        let mut detach = Vec::new();
        if self.model.threads[&thread].creator == domain {
            // The thread its base moved to (links to forgotten threads are
            // gone).
            let mut target = thread;
            while let Some(next) = self.model.threads[&target].base_moved_to {
                target = next;
            }
            match self.model.threads[&target].ended {
                Some(value) => {
                    expected = Ok(value);
                    let mut next = Some(thread);
                    while let Some(key) = next {
                        let entry = &self.model.threads[&key];
                        next = entry.base_moved_to;
                        if entry.ended.is_some() {
                            reaped.push(key);
                        } else {
                            detach.push(key);
                        }
                    }
                }
                None => return Ok(()), // it would wait
            }
        }
        let result = self.as_domain(domain, Call::ThreadJoin, &[thread as u64]);
        prop_assert_eq!(result, expected, "ThreadJoin({}) from {:?}", thread, domain);
        self.model.forget_threads(|key, _| reaped.contains(&key));
        for key in detach {
            self.model.threads.get_mut(&key).expect("a thread").detached = true;
        }
        Ok(())
    }

    fn set_quota(&mut self, slot: usize, code: usize, limit: Option<i8>) -> Result<(), TestCaseError> {
        let Some(domain) = self.alive(slot) else { return Ok(()) };
        let resource = Resource::from_code(code).expect("a resource");
        let used = self.model.held(domain)[code];
        let limit = match limit {
            Some(delta) => (i64::from(used) + i64::from(delta)).max(0) as u32,
            None => Quota::DEFAULT.limit(resource),
        };
        let kernel_domain = self.kernel_domain;
        let result = self.as_domain(kernel_domain, Call::SetQuota, &[domain.0 as u64, code as u64, limit as u64]);
        prop_assert_eq!(result, Ok(used as usize), "SetQuota answers what is used");
        self.model.domains.get_mut(&domain).expect("a domain").limits[code] = limit;
        Ok(())
    }

    /// Everything the kernel holds agrees with the model, and every
    /// domain's charges with what it holds.
    fn check(&self) -> Result<(), TestCaseError> {
        let kernel = &self.system.kernel;
        let objects = &kernel.objects;
        prop_assert_eq!(kernel.current(), self.system.boot, "back on the boot thread");
        // Threads.
        let threads: BTreeSet<u32> =
            objects.thread_ids().filter(|&thread| thread != self.system.boot).map(ThreadId::get).collect();
        let modelled: BTreeSet<u32> = self.model.threads.keys().copied().collect();
        prop_assert_eq!(&threads, &modelled, "the threads");
        for (&key, thread) in &self.model.threads {
            let entry = objects.thread(thread_id(key)).expect("a thread");
            prop_assert_eq!(entry.creator, thread.creator, "thread {}'s creator", key);
            let mut chain = objects.chain(thread_id(key));
            chain.reverse();
            prop_assert_eq!(&chain, &thread.chain, "thread {}'s chain, bottom first", key);
            match thread.ended {
                Some(value) => prop_assert_eq!(entry.state, ThreadState::Ended(value), "thread {} ended", key),
                None => prop_assert!(!matches!(entry.state, ThreadState::Ended(_)), "thread {} has not ended", key),
            }
            prop_assert_eq!(
                entry.base_moved_to.map(ThreadId::get),
                thread.base_moved_to,
                "thread {}'s base moved",
                key
            );
        }
        // Activations.
        let activations: BTreeSet<ActivationId> = objects.activation_ids().collect();
        let modelled: BTreeSet<ActivationId> = self.model.activations.keys().copied().collect();
        prop_assert_eq!(&activations, &modelled, "the activations");
        for (&id, activation) in &self.model.activations {
            let entry = objects.activation(id).expect("an activation");
            prop_assert_eq!((entry.domain, entry.port), (activation.domain, activation.port), "{:?}", id);
            prop_assert_eq!(entry.occupant.map(ThreadId::get), self.model.occupant(id), "{:?}'s occupant", id);
        }
        // Ports.
        let ports: BTreeSet<PortId> = objects.port_ids().collect();
        let modelled: BTreeSet<PortId> = self.model.ports.keys().copied().collect();
        prop_assert_eq!(&ports, &modelled, "the ports");
        for (&id, port) in &self.model.ports {
            let entry = objects.port(id).expect("a port");
            prop_assert_eq!((entry.owner, entry.alive), (port.owner, port.alive), "{:?}", id);
            prop_assert_eq!(entry.pool_size, port.activations.len(), "{:?}'s activations", id);
            prop_assert_eq!(entry.sidetrack, port.sidetrack, "{:?}'s sidetrack", id);
            prop_assert_eq!(objects.pool_free(id), self.model.free(id).len(), "{:?}'s free activations", id);
        }
        // Domains: names and charges.
        prop_assert_eq!(kernel.domains.len(), self.model.domains.len(), "domain records");
        for (&id, domain) in &self.model.domains {
            let record = kernel.domain(id).expect("a record");
            prop_assert_eq!(record.alive, domain.alive, "{:?} alive", id);
            prop_assert_eq!(record.stack_floor, domain.floor, "{:?}'s stack floor", id);
            let last = domain.names.keys().next_back().copied().unwrap_or(0);
            for name in 0..=last + 2 {
                let expected = domain.names.get(&name).copied();
                let live = record
                    .space
                    .lookup(name)
                    .map(|capability| Name::Live { port: capability.port, receive: capability.receive });
                let dead = record.space.is_dead(name).then_some(Name::Dead);
                prop_assert!(live.is_none() || dead.is_none(), "{:?}: name {} both live and dead", id, name);
                prop_assert_eq!(live.or(dead), expected, "{:?}: name {}", id, name);
            }
            let held = self.model.held(id);
            for resource in Resource::ALL {
                prop_assert_eq!(
                    record.account.used(resource),
                    held[resource as usize],
                    "{:?} ({}) is charged for its {:?}",
                    id,
                    if domain.alive { "alive" } else { "dead" },
                    resource
                );
                prop_assert_eq!(record.account.limit(resource), domain.limits[resource as usize]);
            }
        }
        Ok(())
    }

    /// Take everything down: every call returns, every thread ends and is
    /// joined, every port is destroyed, every dead name learnt — then
    /// nothing is charged; terminate and make the domains again — then the
    /// kernel holds what it held at the start.
    fn tear_down(&mut self) -> Result<(), TestCaseError> {
        // Quotas back to the defaults, so that nothing below is refused.
        for slot in 0..SPECS.len() {
            for code in 0..Resource::ALL.len() {
                self.step(&Op::SetQuota(slot, code, None))?;
            }
        }
        // Unwind every thread and end it.
        while let Some(thread) = self.model.threads.iter().find(|(_, thread)| thread.ended.is_none()).map(|(&k, _)| k) {
            let top = self.top_domain(thread).map(|(top, _)| self.model.activations[&top].port.is_some());
            match top {
                Some(true) => self.return_from(thread, None)?,
                _ => self.end(thread, 0)?,
            }
            self.forget_frames();
            self.check()?;
        }
        // Join them from their creators (those whose creator is alive).
        let joins: Vec<(u32, DomainId)> = self
            .model
            .threads
            .iter()
            .filter(|(_, thread)| self.model.domains[&thread.creator].alive)
            .map(|(&key, thread)| (key, thread.creator))
            .collect();
        for (thread, creator) in joins {
            if self.model.threads.contains_key(&thread) {
                self.join(creator, thread)?;
                self.forget_frames();
                self.check()?;
            }
        }
        // Destroy every port, then learn every dead name.
        for learn in [false, true] {
            for slot in 0..SPECS.len() {
                let Some(domain) = self.alive(slot) else { continue };
                let names: Vec<u32> = self.model.domains[&domain]
                    .names
                    .iter()
                    .filter(|(_, name)| learn || matches!(name, Name::Live { receive: true, .. }))
                    .map(|(&name, _)| name)
                    .collect();
                for name in names {
                    self.port_destroy(domain, name)?;
                    self.check()?;
                }
            }
        }
        for slot in 0..SPECS.len() {
            let Some(domain) = self.alive(slot) else { continue };
            let used: Vec<u32> = Resource::ALL
                .iter()
                .map(|&resource| self.system.kernel.domain(domain).unwrap().account.used(resource))
                .collect();
            prop_assert_eq!(used, vec![0; 4], "{:?} holds nothing, and is charged nothing: {:#?}", domain, self.model);
        }
        // Terminate them all and make them again: nothing more in the
        // kernel than at the start.
        for slot in 0..SPECS.len() {
            if self.alive(slot).is_some() {
                self.step(&Op::Terminate(slot))?;
            }
        }
        // What is left: ended threads whose creators died, forgotten when
        // their slots are reused.
        for (key, thread) in &self.model.threads {
            prop_assert!(
                thread.ended.is_some() && !self.model.domains[&thread.creator].alive,
                "thread {} is left: {:?}",
                key,
                thread
            );
        }
        for (slot, spec) in SPECS.iter().enumerate() {
            self.step(&Op::Create(slot))?;
            prop_assert!(self.alive(slot).is_some(), "{} made again", spec.name);
        }
        // Slots not taken again: their dead domains' ended threads go when
        // the kernel reclaims them.
        let empty = self.system.kernel.reclaim_dead_domains();
        let dead: Vec<DomainId> =
            self.model.domains.iter().filter(|(_, domain)| !domain.alive).map(|(&id, _)| id).collect();
        for &id in &dead {
            prop_assert!(self.model.reclaimable(id), "nothing is left of dead {:?}", id);
            self.model.forget_threads(|_, thread| thread.creator == id);
            // A reclaimed slot keeps none of its dead domain's names.
            if let Some(record) = self.model.domains.get_mut(&id) {
                record.names.clear();
            }
        }
        prop_assert_eq!(empty, dead.len(), "every dead domain's slot is empty");
        self.check()?;
        prop_assert_eq!(counts(&self.system), self.start, "threads, activations and ports as at the start");
        for slot in 0..SPECS.len() {
            let domain = self.alive(slot).expect("alive");
            let record = self.system.kernel.domain(domain).unwrap();
            for resource in Resource::ALL {
                prop_assert_eq!(record.account.used(resource), 0);
            }
        }
        Ok(())
    }
}

/// Threads, activations and ports the kernel holds.
fn counts(system: &System) -> (usize, usize, usize) {
    let objects = &system.kernel.objects;
    (objects.thread_ids().count(), objects.activation_ids().count(), objects.port_ids().count())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new();
    // Every domain exists at first, with a port served by a pool of two
    // that the others hold send rights to, and a thread; the operations
    // kill and remake them.
    // (Name 1: a new domain's first port.)
    for slot in 0..SPECS.len() {
        harness.step(&Op::Create(slot))?;
        harness.step(&Op::PortCreate(slot))?;
        harness.step(&Op::PoolAdd(slot, NamePick::Raw(1), 2, false))?;
        harness.step(&Op::ThreadCreate(slot, false))?;
    }
    for from in 0..SPECS.len() {
        for to in (0..SPECS.len()).filter(|&to| to != from) {
            harness.step(&Op::Grant(from, NamePick::Raw(1), to))?;
        }
    }
    for op in ops {
        harness.step(op)?;
    }
    harness.tear_down()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random kernel calls across three domains: after every step the
    /// kernel's objects and every domain's charges agree with the model;
    /// taken down, nothing is charged and nothing is left.
    #[test]
    fn charges_follow_what_each_domain_holds(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
