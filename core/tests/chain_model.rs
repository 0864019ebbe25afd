//! Chain surgery against a model: random threads (each a chain of
//! activations in random domains, most from port pools) and random
//! sequences of the operations of `core/src/chain.rs` and
//! `core/src/thread.rs`, run on the real [`Objects`] and on a plain model
//! (each thread a `Vec` of activation numbers, bottom first; each
//! activation a record of its control state; each pool a stack of free
//! activations). After every step the two must agree and the real objects
//! must be well formed. A second, smaller property states the alert rule
//! alone on one chain.
//!
//! The model follows the documented rules (`core/src/chain.rs`'s module
//! docs, `docs/design.md` "Controllability: activation control"):
//!
//! - an alert goes *up* from its origin, marking each activation pending,
//!   and stops after the first that blocks alerts; nothing below the origin
//!   sees it; opening alerts where one is pending passes it on up (read
//!   as `chain.rs` implements it: any alert pending at an activation that
//!   blocks counts as waiting there, even one that had passed it while it
//!   was open — so blocking and opening again sends it up once more; the
//!   kernel's `AlertsBlock` only acts on the caller's own activation, the
//!   top, where nothing is above);
//! - split moves the boundary and everything below it to a new thread with
//!   the same priority, policy and creator; the old thread keeps the part
//!   above (and `base_moved_to` names the new thread if the base
//!   activation went with it);
//! - terminate splits below the victim, takes it off (fresh control state)
//!   and alerts the part above;
//! - splice marks the victim and alerts the part above;
//! - an activation may change its thread's scheduling state unless one
//!   below it forbids;
//! - an activation whose control state is not fresh is `WATCHED` (and so
//!   `GENERAL_RETURN`); a suspended, held or spliced activation's callee is
//!   watched too; an unoccupied one is fresh and not watched;
//! - a pool's free list holds exactly its unoccupied activations, never a
//!   sidetrack activation.
//!
//! What the kernel does around the surgery is done here the way the
//! kernel does it (`core/src/rpc.rs`, `core/src/control.rs`): a call takes
//! the pool's head (or the port's sidetrack activation) and pushes it,
//! watched if the client stops or is spliced; a return ends the lend and
//! pops, and gives a pool activation back to its pool; a terminated
//! activation goes back to its pool or, a thread's own one, is forgotten.
//! Operations the kernel only applies to occupied activations (its
//! `resolve` refuses others) are applied only to those; those the API
//! documents as refusing unoccupied activations are also tried on them.

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::{BTreeMap, BTreeSet};
use tern_core::capability::PortId;
use tern_core::chain::Termination;
use tern_core::domain::DomainId;
use tern_core::thread::{Activation, ActivationId, Control, Objects, Policy, ThreadId, ThreadState};

/// Domains 1 to `DOMAINS` own the ports and activations.
const DOMAINS: u16 = 4;

/// A lent region, for calls that lend one.
const LENT: (u64, u64) = (0x4000, 0x1000);

// --- The model ---------------------------------------------------------------

/// What a new activation starts with: a server (pool) activation with
/// alerts blocked, a thread's own activation with them open, nothing else.
fn fresh(server: bool) -> Control {
    Control { alerts_blocked: server, ..Control::default() }
}

#[derive(Clone, Debug)]
struct ModelActivation {
    domain: DomainId,
    port: Option<PortId>,
    sidetrack: bool,
    lent: bool,
    control: Control,
}

#[derive(Clone, Debug)]
struct ModelThread {
    priority: u8,
    creator: DomainId,
    /// Bottom first.
    chain: Vec<ActivationId>,
    base_moved_to: Option<ThreadId>,
}

#[derive(Debug, Default)]
struct Model {
    activations: BTreeMap<ActivationId, ModelActivation>,
    threads: BTreeMap<ThreadId, ModelThread>,
    /// Each port's free activations, the next to be taken last.
    pools: BTreeMap<PortId, Vec<ActivationId>>,
    sidetracks: BTreeMap<PortId, ActivationId>,
}

impl Model {
    /// The thread whose chain holds `activation`, and where (0: bottom).
    fn occupant(&self, activation: ActivationId) -> Option<(ThreadId, usize)> {
        self.threads
            .iter()
            .find_map(|(&thread, entry)| entry.chain.iter().position(|&on| on == activation).map(|at| (thread, at)))
    }

    fn occupied(&self) -> Vec<ActivationId> {
        self.threads
            .values()
            .flat_map(|entry| entry.chain.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn control(&mut self, activation: ActivationId) -> &mut Control {
        &mut self.activations.get_mut(&activation).expect("a modelled activation").control
    }

    /// `activation` and those above it, origin first.
    fn above(&self, activation: ActivationId) -> Option<(ThreadId, Vec<ActivationId>)> {
        let (thread, at) = self.occupant(activation)?;
        Some((thread, self.threads[&thread].chain[at..].to_vec()))
    }

    fn callee(&self, activation: ActivationId) -> Option<ActivationId> {
        self.above(activation).and_then(|(_, above)| above.get(1).copied())
    }

    fn alert(&mut self, origin: ActivationId) -> Vec<ActivationId> {
        let Some((_, above)) = self.above(origin) else { return Vec::new() };
        let mut reached = Vec::new();
        for activation in above {
            let control = self.control(activation);
            control.alert_pending = true;
            reached.push(activation);
            if control.alerts_blocked {
                break;
            }
        }
        reached
    }

    fn set_alerts_blocked(&mut self, activation: ActivationId, blocked: bool) -> bool {
        let control = self.control(activation);
        let (was, pending) = (control.alerts_blocked, control.alert_pending);
        control.alerts_blocked = blocked;
        if was
            && !blocked
            && pending
            && let Some(callee) = self.callee(activation)
        {
            self.alert(callee);
        }
        was
    }

    fn take_alert(&mut self, activation: ActivationId) -> bool {
        let control = self.control(activation);
        let seen = control.alert_pending && !control.alerts_blocked;
        if seen {
            control.alert_pending = false;
        }
        seen
    }

    fn top_alerted(&self, thread: ThreadId) -> bool {
        self.threads[&thread].chain.last().is_some_and(|top| {
            self.activations[top].control.alert_pending && !self.activations[top].control.alerts_blocked
        })
    }

    fn new_thread_id(&self) -> ThreadId {
        (1..).filter_map(ThreadId::new).find(|id| !self.threads.contains_key(id)).expect("a free number")
    }

    fn split(&mut self, thread: ThreadId, boundary: ActivationId) -> Option<(ThreadId, Option<ActivationId>)> {
        let entry = self.threads.get(&thread)?;
        let at = entry.chain.iter().position(|&on| on == boundary)?;
        let lower_chain = entry.chain[..=at].to_vec();
        let upper = entry.chain[at + 1..].to_vec();
        let carries_base = self.activations[&lower_chain[0]].port.is_none();
        let lower = self.new_thread_id();
        let (priority, creator) = (entry.priority, entry.creator);
        self.threads.insert(lower, ModelThread { priority, creator, chain: lower_chain, base_moved_to: None });
        let entry = self.threads.get_mut(&thread).expect("still there");
        entry.chain = upper;
        if carries_base {
            entry.base_moved_to = Some(lower);
        }
        Some((lower, entry.chain.first().copied()))
    }

    fn terminate(&mut self, victim: ActivationId) -> Option<Termination> {
        let (thread, at) = self.occupant(victim)?;
        let lower = match at.checked_sub(1) {
            Some(below) => Some(self.split(thread, self.threads[&thread].chain[below])?.0),
            None => None,
        };
        let chain = &mut self.threads.get_mut(&thread).expect("there").chain;
        assert_eq!(chain.first(), Some(&victim), "model: the victim is now the bottom");
        chain.remove(0);
        let upper_bottom = chain.first().copied();
        let entry = self.activations.get_mut(&victim).expect("modelled");
        entry.control = fresh(entry.port.is_some());
        if let Some(bottom) = upper_bottom {
            self.alert(bottom);
        }
        Some(Termination { thread, lower, upper_bottom })
    }

    fn splice(&mut self, victim: ActivationId) -> bool {
        if self.occupant(victim).is_none() {
            return false;
        }
        self.control(victim).spliced = true;
        if let Some(callee) = self.callee(victim) {
            self.alert(callee);
        }
        true
    }

    fn may_schedule(&self, activation: ActivationId) -> bool {
        match self.occupant(activation) {
            Some((thread, at)) => {
                !self.threads[&thread].chain[..at].iter().any(|below| self.activations[below].control.forbid_above)
            }
            None => true,
        }
    }

    /// Take `top` off its chain: fresh again.
    fn pop(&mut self, thread: ThreadId) -> Option<ActivationId> {
        let top = self.threads.get_mut(&thread)?.chain.pop()?;
        let entry = self.activations.get_mut(&top).expect("modelled");
        entry.control = fresh(entry.port.is_some());
        Some(top)
    }

    fn occupied_in(&self, domain: DomainId) -> Vec<ActivationId> {
        self.occupied().into_iter().filter(|activation| self.activations[activation].domain == domain).collect()
    }
}

// --- Generated cases ---------------------------------------------------------

#[derive(Clone, Debug)]
struct PortSetup {
    owner: u16,
    pool: usize,
    sidetrack: bool,
}

#[derive(Clone, Debug)]
struct ThreadSetup {
    priority: u8,
    creator: u16,
    base_domain: u16,
}

#[derive(Clone, Debug)]
struct Setup {
    ports: Vec<PortSetup>,
    threads: Vec<ThreadSetup>,
}

/// One step. `Index`es pick among what exists when the step runs: "any"
/// among all activations, "occupied" among those on a chain.
#[derive(Clone, Debug)]
enum Op {
    /// A call by a thread on a port: the pool's head (or, `sidetrack`, the
    /// port's sidetrack activation if free) pushed, lending a region if
    /// `lend`.
    Call {
        thread: Index,
        port: Index,
        lend: bool,
        sidetrack: bool,
    },
    /// The thread's top activation returns.
    Return {
        thread: Index,
    },
    /// `push` of an occupied activation: refused.
    PushOccupied {
        thread: Index,
        activation: Index,
    },
    Alert {
        any: Index,
    },
    AlertsBlocked {
        occupied: Index,
        blocked: bool,
    },
    TakeAlert {
        occupied: Index,
    },
    /// Split at a boundary on the thread's chain.
    Split {
        thread: Index,
        at: Index,
    },
    /// Split with any activation as the boundary (refused unless it is on
    /// the thread's chain).
    SplitAny {
        thread: Index,
        any: Index,
    },
    Terminate {
        any: Index,
    },
    Splice {
        any: Index,
    },
    Suspend {
        occupied: Index,
        suspended: bool,
    },
    Hold {
        occupied: Index,
        held: bool,
    },
    ForbidAbove {
        occupied: Index,
    },
    AlertHandler {
        occupied: Index,
        handler: u64,
    },
    /// `SetPriority` through an activation: refused if one below forbids.
    SetPriority {
        occupied: Index,
        priority: u8,
    },
}

fn setup() -> impl Strategy<Value = Setup> {
    let port = (1..=DOMAINS, 0usize..=4, prop::bool::weighted(0.4)).prop_map(|(owner, pool, sidetrack)| PortSetup {
        owner,
        pool,
        sidetrack,
    });
    let thread = (0u8..=40, 1..=DOMAINS, 1..=DOMAINS).prop_map(|(priority, creator, base_domain)| ThreadSetup {
        priority,
        creator,
        base_domain,
    });
    (prop::collection::vec(port, 1..=4), prop::collection::vec(thread, 1..=3))
        .prop_map(|(ports, threads)| Setup { ports, threads })
}

fn op() -> impl Strategy<Value = Op> {
    let i = any::<Index>;
    prop_oneof![
        8 => (i(), i(), prop::bool::weighted(0.2), prop::bool::weighted(0.2))
            .prop_map(|(thread, port, lend, sidetrack)| Op::Call { thread, port, lend, sidetrack }),
        3 => i().prop_map(|thread| Op::Return { thread }),
        1 => (i(), i()).prop_map(|(thread, activation)| Op::PushOccupied { thread, activation }),
        3 => i().prop_map(|any| Op::Alert { any }),
        3 => (i(), any::<bool>()).prop_map(|(occupied, blocked)| Op::AlertsBlocked { occupied, blocked }),
        2 => i().prop_map(|occupied| Op::TakeAlert { occupied }),
        2 => (i(), i()).prop_map(|(thread, at)| Op::Split { thread, at }),
        1 => (i(), i()).prop_map(|(thread, any)| Op::SplitAny { thread, any }),
        2 => i().prop_map(|any| Op::Terminate { any }),
        2 => i().prop_map(|any| Op::Splice { any }),
        2 => (i(), any::<bool>()).prop_map(|(occupied, suspended)| Op::Suspend { occupied, suspended }),
        2 => (i(), any::<bool>()).prop_map(|(occupied, held)| Op::Hold { occupied, held }),
        1 => i().prop_map(|occupied| Op::ForbidAbove { occupied }),
        1 => (i(), prop_oneof![Just(0u64), Just(0x8_0000u64)])
            .prop_map(|(occupied, handler)| Op::AlertHandler { occupied, handler }),
        1 => (i(), 0u8..=31).prop_map(|(occupied, priority)| Op::SetPriority { occupied, priority }),
    ]
}

// --- Running both ------------------------------------------------------------

struct World {
    objects: Objects,
    model: Model,
    ports: Vec<PortId>,
}

fn build(setup: &Setup) -> World {
    let mut objects = Objects::new();
    let mut model = Model::default();
    let mut ports = Vec::new();
    for port_setup in &setup.ports {
        let owner = DomainId(port_setup.owner);
        let port = objects.new_port(owner);
        ports.push(port);
        let free = model.pools.entry(port).or_default();
        for _ in 0..port_setup.pool {
            let activation = objects.new_activation(owner, Some(port), 0x1000, 0x9000, 0x1000);
            assert!(objects.pool_add(port, activation), "pool_add of a new activation");
            free.push(activation);
            let record = ModelActivation {
                domain: owner,
                port: Some(port),
                sidetrack: false,
                lent: false,
                control: fresh(true),
            };
            model.activations.insert(activation, record);
        }
        if port_setup.sidetrack {
            // As `Kernel::sidetrack_set` makes it.
            let activation = objects.new_activation(owner, Some(port), 0x1000, 0x9000, 0x1000);
            let entry = objects.activation_mut(activation).expect("made");
            entry.flags |= Activation::SIDETRACK | Activation::GENERAL_RETURN;
            objects.port_mut(port).expect("made").sidetrack = Some(activation);
            assert!(!objects.pool_add(port, activation), "a sidetrack activation never joins the pool");
            model.sidetracks.insert(port, activation);
            let record =
                ModelActivation { domain: owner, port: Some(port), sidetrack: true, lent: false, control: fresh(true) };
            model.activations.insert(activation, record);
        }
    }
    for thread_setup in &setup.threads {
        let creator = DomainId(thread_setup.creator);
        let thread = objects.new_thread(thread_setup.priority, creator);
        assert_eq!(thread, model.new_thread_id(), "threads are numbered from 1, lowest free first");
        let base_domain = DomainId(thread_setup.base_domain);
        let base = objects.new_activation(base_domain, None, 0x1000, 0x9000, 0x1000);
        assert!(objects.push(thread, base));
        let record =
            ModelActivation { domain: base_domain, port: None, sidetrack: false, lent: false, control: fresh(false) };
        model.activations.insert(base, record);
        let priority = thread_setup.priority.min(31);
        model.threads.insert(thread, ModelThread { priority, creator, chain: vec![base], base_moved_to: None });
    }
    World { objects, model, ports }
}

fn pick<T: Copy>(items: &[T], index: Index) -> Option<T> {
    (!items.is_empty()).then(|| items[index.index(items.len())])
}

impl World {
    fn threads(&self) -> Vec<ThreadId> {
        self.model.threads.keys().copied().collect()
    }

    fn all(&self) -> Vec<ActivationId> {
        self.model.activations.keys().copied().collect()
    }

    fn flags(&self, activation: ActivationId) -> u8 {
        self.objects.activation(activation).expect("exists").flags
    }

    /// A thread's top activation returns, as `Kernel::leave_pool_activation`
    /// (or, for a thread's own activation, the thread's end) has it.
    fn return_from(&mut self, thread: ThreadId) -> Result<(), TestCaseError> {
        if let Some(&top) = self.model.threads[&thread].chain.last() {
            self.objects.activation_mut(top).expect("exists").set_lent(None);
            self.model.activations.get_mut(&top).expect("modelled").lent = false;
        }
        let popped = self.objects.pop(thread);
        prop_assert_eq!(popped, self.model.pop(thread), "pop({:?})", thread);
        if let Some(activation) = popped {
            self.give_back(activation)?;
        }
        Ok(())
    }

    /// An activation off its chain goes back to its pool, unless it is a
    /// sidetrack activation (refused) or a thread's own (kept, unoccupied).
    fn give_back(&mut self, activation: ActivationId) -> Result<(), TestCaseError> {
        let entry = self.model.activations[&activation].clone();
        if let Some(port) = entry.port {
            let returned = self.objects.pool_return(activation);
            prop_assert_eq!(returned, !entry.sidetrack, "pool_return({:?}) (a sidetrack one is refused)", activation);
            if returned {
                self.model.pools.get_mut(&port).expect("a port").push(activation);
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let threads = self.threads();
        let all = self.all();
        let occupied = self.model.occupied();
        match *op {
            Op::Call { thread, port, lend, sidetrack } => {
                let (Some(thread), Some(port)) = (pick(&threads, thread), pick(&self.ports, port)) else {
                    return Ok(());
                };
                let reserved = self.model.sidetracks.get(&port).copied();
                let target = match reserved {
                    Some(reserved) if sidetrack && self.model.occupant(reserved).is_none() => Some(reserved),
                    _ => {
                        let taken = self.objects.pool_take(port);
                        let expected = self.model.pools.get_mut(&port).expect("a port").pop();
                        prop_assert_eq!(taken, expected, "pool_take({:?}): the last freed first", port);
                        taken
                    }
                };
                let Some(target) = target else { return Ok(()) };
                let client = self.model.threads[&thread].chain.last().copied();
                let client_stops = client.is_some_and(|client| {
                    let control = self.model.activations[&client].control;
                    control.suspended || control.held || control.spliced
                });
                prop_assert!(
                    self.objects.push(thread, target),
                    "push({:?}, {:?}) of an unoccupied activation",
                    thread,
                    target
                );
                self.model.threads.get_mut(&thread).expect("there").chain.push(target);
                let entry = self.objects.activation_mut(target).expect("exists");
                if client_stops {
                    entry.watch();
                }
                if lend && reserved != Some(target) {
                    entry.set_lent(Some(LENT));
                    self.model.activations.get_mut(&target).expect("modelled").lent = true;
                }
            }
            Op::Return { thread } => {
                let Some(thread) = pick(&threads, thread) else { return Ok(()) };
                self.return_from(thread)?;
            }
            Op::PushOccupied { thread, activation } => {
                let (Some(thread), Some(activation)) = (pick(&threads, thread), pick(&occupied, activation)) else {
                    return Ok(());
                };
                prop_assert!(!self.objects.push(thread, activation), "push of occupied {:?} refused", activation);
            }
            Op::Alert { any } => {
                let Some(origin) = pick(&all, any) else { return Ok(()) };
                let above = self.objects.above(origin).map(|(_, above)| above).unwrap_or_default();
                let reached = self.objects.alert(origin);
                prop_assert_eq!(&reached, &self.model.alert(origin), "alert({:?})", origin);
                // The rule, spelled out: a prefix of the chain from the
                // origin up, through open activations, ending at the top
                // or at the first that blocks.
                prop_assert_eq!(&reached[..], &above[..reached.len()], "alerts go up from the origin");
                for (at, &activation) in reached.iter().enumerate() {
                    let control = self.objects.activation(activation).expect("exists").control;
                    prop_assert!(control.alert_pending);
                    let last = at + 1 == reached.len();
                    prop_assert!(last || !control.alerts_blocked, "an alert stops at the first that blocks");
                    prop_assert!(
                        !last || control.alerts_blocked || at + 1 == above.len(),
                        "an alert goes on to the top"
                    );
                }
            }
            Op::AlertsBlocked { occupied: index, blocked } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                let was = self.objects.set_alerts_blocked(activation, blocked);
                prop_assert_eq!(was, self.model.set_alerts_blocked(activation, blocked), "set_alerts_blocked");
            }
            Op::TakeAlert { occupied: index } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                prop_assert_eq!(self.objects.take_alert(activation), self.model.take_alert(activation), "take_alert");
            }
            Op::Split { thread, at } => {
                let Some(thread) = pick(&threads, thread) else { return Ok(()) };
                let Some(boundary) = pick(&self.model.threads[&thread].chain, at) else { return Ok(()) };
                self.split(thread, boundary)?;
            }
            Op::SplitAny { thread, any } => {
                let (Some(thread), Some(boundary)) = (pick(&threads, thread), pick(&all, any)) else { return Ok(()) };
                self.split(thread, boundary)?;
            }
            Op::Terminate { any } => {
                let Some(victim) = pick(&all, any) else { return Ok(()) };
                let occupied = self.model.occupant(victim).is_some();
                if occupied {
                    // `Kernel::terminate_activation` ends its lend first.
                    self.objects.activation_mut(victim).expect("exists").set_lent(None);
                    self.model.activations.get_mut(&victim).expect("modelled").lent = false;
                }
                let before = self.model.occupant(victim).map(|(thread, _)| self.model.threads[&thread].clone());
                let done = self.objects.terminate(victim);
                let expected = self.model.terminate(victim);
                prop_assert_eq!(done, expected, "terminate({:?})", victim);
                let (Some(done), Some(before)) = (done, before) else { return Ok(()) };
                let at = before.chain.iter().position(|&on| on == victim).expect("on it");
                prop_assert_eq!(
                    self.objects.chain(done.thread),
                    reversed(&before.chain[at + 1..]),
                    "the part above stays"
                );
                if let Some(lower) = done.lower {
                    prop_assert_eq!(self.objects.chain(lower), reversed(&before.chain[..at]), "the part below moves");
                    self.same_parameters(done.thread, lower)?;
                }
                let entry = self.objects.activation(victim).expect("still there");
                prop_assert_eq!((entry.occupant, entry.caller), (None, None), "the victim is off the chain");
                prop_assert_eq!(entry.control, fresh(entry.port.is_some()), "the victim is fresh");
                // `Kernel::retire`: back to its pool, or forgotten.
                if self.model.activations[&victim].port.is_some() {
                    self.give_back(victim)?;
                } else {
                    prop_assert!(self.objects.remove_activation(victim).is_some());
                    self.model.activations.remove(&victim);
                }
            }
            Op::Splice { any } => {
                let Some(victim) = pick(&all, any) else { return Ok(()) };
                prop_assert_eq!(self.objects.splice(victim), self.model.splice(victim), "splice({:?})", victim);
            }
            Op::Suspend { occupied: index, suspended } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                let was = self.objects.set_suspended(activation, suspended);
                let control = self.model.control(activation);
                prop_assert_eq!(was, control.suspended, "set_suspended returns what it was");
                control.suspended = suspended;
            }
            Op::Hold { occupied: index, held } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                self.objects.set_held(activation, held);
                self.model.control(activation).held = held;
            }
            Op::ForbidAbove { occupied: index } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                self.objects.forbid_above(activation);
                self.model.control(activation).forbid_above = true;
            }
            Op::AlertHandler { occupied: index, handler } => {
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                self.objects.set_alert_handler(activation, handler);
                self.model.control(activation).alert_handler = handler;
            }
            Op::SetPriority { occupied: index, priority } => {
                // As `Kernel::set_priority`.
                let Some(activation) = pick(&occupied, index) else { return Ok(()) };
                let may = self.objects.may_schedule(activation);
                prop_assert_eq!(may, self.model.may_schedule(activation), "may_schedule({:?})", activation);
                if may {
                    let (thread, _) = self.model.occupant(activation).expect("occupied");
                    let real = self.objects.activation(activation).and_then(|entry| entry.occupant);
                    prop_assert_eq!(real, Some(thread));
                    self.objects.thread_mut(thread).expect("there").priority = priority;
                    self.model.threads.get_mut(&thread).expect("there").priority = priority;
                }
            }
        }
        Ok(())
    }

    fn split(&mut self, thread: ThreadId, boundary: ActivationId) -> Result<(), TestCaseError> {
        let before = self.model.threads[&thread].clone();
        let done = self.objects.split(thread, boundary);
        prop_assert_eq!(done, self.model.split(thread, boundary), "split({:?}, {:?})", thread, boundary);
        let Some((lower, upper_bottom)) = done else { return Ok(()) };
        let at = before.chain.iter().position(|&on| on == boundary).expect("on it");
        prop_assert_eq!(self.objects.chain(lower), reversed(&before.chain[..=at]), "the boundary and below move");
        prop_assert_eq!(self.objects.chain(thread), reversed(&before.chain[at + 1..]), "the part above stays");
        prop_assert_eq!(upper_bottom, before.chain.get(at + 1).copied());
        prop_assert_eq!(self.objects.thread(lower).expect("made").state, ThreadState::Ready, "the new thread is ready");
        self.same_parameters(thread, lower)
    }

    fn same_parameters(&self, thread: ThreadId, lower: ThreadId) -> Result<(), TestCaseError> {
        let (old, new) = (self.objects.thread(thread).expect("there"), self.objects.thread(lower).expect("made"));
        prop_assert_eq!(
            (new.priority, new.policy, new.creator),
            (old.priority, old.policy, old.creator),
            "a split-off thread has the same priority, policy and creator"
        );
        Ok(())
    }

    /// Everything the real objects say agrees with the model, and they are
    /// well formed.
    fn check(&self) -> Result<(), TestCaseError> {
        let objects = &self.objects;
        let model = &self.model;
        let real_threads: Vec<ThreadId> = objects.thread_ids().collect();
        prop_assert_eq!(&real_threads, &self.threads(), "threads");
        let real_activations: Vec<ActivationId> = objects.activation_ids().collect();
        prop_assert_eq!(&real_activations, &self.all(), "activations");

        // Chains: walked by hand, bounded (a cycle must not hang the test).
        let mut on_chain: BTreeMap<ActivationId, ThreadId> = BTreeMap::new();
        for &thread in &real_threads {
            let mut chain = Vec::new();
            let mut next = objects.thread(thread).expect("listed").top;
            while let Some(activation) = next {
                prop_assert!(!chain.contains(&activation), "{:?}: its caller links cycle: {:?}", thread, chain);
                let entry = objects.activation(activation);
                prop_assert!(entry.is_some(), "{:?}: its chain links to missing {:?}", thread, activation);
                chain.push(activation);
                next = entry.expect("checked").caller;
            }
            for &activation in &chain {
                let other = on_chain.insert(activation, thread);
                prop_assert!(other.is_none(), "{:?} on two chains: {:?} and {:?}", activation, other, thread);
            }
            chain.reverse();
            let expected = &model.threads[&thread];
            prop_assert_eq!(&chain, &expected.chain, "{:?}'s chain, bottom first", thread);
            let entry = objects.thread(thread).expect("listed");
            prop_assert_eq!(entry.priority, expected.priority, "{:?}'s priority", thread);
            prop_assert_eq!(entry.creator, expected.creator, "{:?}'s creator", thread);
            prop_assert_eq!(entry.policy, Policy::RoundRobin);
            prop_assert_eq!(entry.base_moved_to, expected.base_moved_to, "{:?}'s base_moved_to", thread);
            prop_assert_eq!(objects.top_alerted(thread), model.top_alerted(thread), "top_alerted({:?})", thread);
        }

        // Activations: occupancy, control state, flags.
        for &activation in &real_activations {
            let entry = objects.activation(activation).expect("listed");
            let expected = &model.activations[&activation];
            let thread = on_chain.get(&activation).copied();
            prop_assert_eq!(entry.occupant, thread, "{:?}'s occupant is the thread whose chain holds it", activation);
            prop_assert_eq!((entry.domain, entry.port), (expected.domain, expected.port));
            prop_assert_eq!(entry.control, expected.control, "{:?}'s control state", activation);
            let flags = entry.flags;
            let watched = flags & Activation::WATCHED != 0;
            prop_assert_eq!(flags & Activation::SIDETRACK != 0, expected.sidetrack, "{:?}: SIDETRACK", activation);
            prop_assert_eq!(flags & Activation::LENT != 0, expected.lent, "{:?}: LENT", activation);
            prop_assert_eq!(entry.lent(), expected.lent.then_some(LENT));
            let needs_general = flags & (Activation::LENT | Activation::SIDETRACK | Activation::WATCHED) != 0;
            prop_assert_eq!(
                flags & Activation::GENERAL_RETURN != 0,
                needs_general,
                "{:?}: GENERAL_RETURN exactly when lent, sidetrack or watched (flags {:#x})",
                activation,
                flags
            );
            let fresh_state = fresh(expected.port.is_some());
            if entry.control != fresh_state {
                prop_assert!(
                    watched,
                    "{:?}: control state {:?} is not fresh but not WATCHED",
                    activation,
                    entry.control
                );
            }
            if thread.is_none() {
                prop_assert_eq!(entry.caller, None, "unoccupied {:?} calls nobody", activation);
                prop_assert_eq!(entry.control, fresh_state, "unoccupied {:?} is fresh", activation);
                prop_assert!(!watched, "unoccupied {:?} is not watched", activation);
                prop_assert!(entry.alert_return.is_none());
            } else {
                prop_assert_eq!(entry.next_free, None, "occupied {:?} is in no free list", activation);
            }
        }

        // A stopping or spliced activation watches the way back into it.
        for &activation in on_chain.keys() {
            let control = objects.activation(activation).expect("listed").control;
            if (control.stops() || control.spliced)
                && let Some(callee) = model.callee(activation)
            {
                prop_assert!(
                    self.flags(callee) & Activation::WATCHED != 0,
                    "{:?} stops or is spliced ({:?}) but its callee {:?} is not watched",
                    activation,
                    control,
                    callee
                );
            }
        }

        // Pools: the free list is exactly the unoccupied pool activations.
        for &port in &self.ports {
            let entry = objects.port(port).expect("made");
            let mut free = Vec::new();
            let mut next = entry.pool_head;
            while let Some(activation) = next {
                prop_assert!(!free.contains(&activation), "{:?}'s free list cycles: {:?}", port, free);
                free.push(activation);
                next = objects.activation(activation).and_then(|entry| entry.next_free);
            }
            let mut expected: Vec<ActivationId> = model.pools[&port].clone();
            expected.reverse();
            prop_assert_eq!(&free, &expected, "{:?}'s free list, head first", port);
            prop_assert_eq!(objects.pool_free(port), free.len());
            let unoccupied: BTreeSet<ActivationId> = real_activations
                .iter()
                .copied()
                .filter(|activation| {
                    let entry = objects.activation(*activation).expect("listed");
                    entry.port == Some(port) && entry.occupant.is_none() && !entry.is_sidetrack()
                })
                .collect();
            prop_assert_eq!(free.iter().copied().collect::<BTreeSet<_>>(), unoccupied, "{:?}: free = unoccupied", port);
            prop_assert_eq!(entry.sidetrack, model.sidetracks.get(&port).copied());
            if let Some(sidetrack) = entry.sidetrack {
                prop_assert!(!free.contains(&sidetrack), "{:?}'s sidetrack activation is in its pool", port);
            }
        }

        // Queries.
        for &activation in &real_activations {
            prop_assert_eq!(objects.above(activation), model.above(activation), "above({:?})", activation);
            prop_assert_eq!(objects.callee(activation), model.callee(activation), "callee({:?})", activation);
            prop_assert_eq!(
                objects.may_schedule(activation),
                model.may_schedule(activation),
                "may_schedule({:?})",
                activation
            );
        }
        for domain in (0..=DOMAINS + 1).map(DomainId) {
            let expected = model.occupied_in(domain);
            prop_assert_eq!(objects.occupied_in(domain), expected.clone(), "occupied_in({:?})", domain);
            prop_assert_eq!(objects.domain_occupied(domain), !expected.is_empty(), "domain_occupied({:?})", domain);
        }
        Ok(())
    }
}

/// A bottom-first slice as `Objects::chain` gives it, top first.
fn reversed(chain: &[ActivationId]) -> Vec<ActivationId> {
    chain.iter().rev().copied().collect()
}

impl World {
    /// `op` with its choices resolved, for the trace a failure prints.
    fn describe(&self, op: &Op) -> String {
        let (threads, all, occupied) = (self.threads(), self.all(), self.model.occupied());
        let thread = |index: Index| pick(&threads, index).map(|thread| thread.get());
        let any = |index: Index| pick(&all, index).map(|activation| activation.get());
        let occupied = |index: Index| pick(&occupied, index).map(|activation| activation.get());
        match *op {
            Op::Call { thread: t, port, lend, sidetrack } => format!(
                "call: thread {:?} on port {:?}{}{}",
                thread(t),
                pick(&self.ports, port).map(PortId::get),
                if lend { ", lending" } else { "" },
                if sidetrack { ", sidetrack if free" } else { "" }
            ),
            Op::Return { thread: t } => format!("return: thread {:?}'s top", thread(t)),
            Op::PushOccupied { thread: t, activation } => {
                format!("push(thread {:?}, occupied {:?})", thread(t), occupied(activation))
            }
            Op::Alert { any: a } => format!("alert({:?})", any(a)),
            Op::AlertsBlocked { occupied: a, blocked } => format!("set_alerts_blocked({:?}, {blocked})", occupied(a)),
            Op::TakeAlert { occupied: a } => format!("take_alert({:?})", occupied(a)),
            Op::Split { thread: t, at } => {
                let boundary = pick(&threads, t).and_then(|t| pick(&self.model.threads[&t].chain, at));
                format!("split(thread {:?}, {:?})", thread(t), boundary.map(ActivationId::get))
            }
            Op::SplitAny { thread: t, any: a } => format!("split(thread {:?}, {:?})", thread(t), any(a)),
            Op::Terminate { any: a } => format!("terminate({:?})", any(a)),
            Op::Splice { any: a } => format!("splice({:?})", any(a)),
            Op::Suspend { occupied: a, suspended } => format!("set_suspended({:?}, {suspended})", occupied(a)),
            Op::Hold { occupied: a, held } => format!("set_held({:?}, {held})", occupied(a)),
            Op::ForbidAbove { occupied: a } => format!("forbid_above({:?})", occupied(a)),
            Op::AlertHandler { occupied: a, handler } => format!("set_alert_handler({:?}, {handler:#x})", occupied(a)),
            Op::SetPriority { occupied: a, priority } => format!("set priority {priority} through {:?}", occupied(a)),
        }
    }

    /// The chains, bottom first, for the trace.
    fn chains(&self) -> String {
        let chains: Vec<String> = self
            .model
            .threads
            .iter()
            .map(|(thread, entry)| {
                let chain: Vec<u32> = entry.chain.iter().map(|activation| activation.get()).collect();
                format!("thread {}: {chain:?}", thread.get())
            })
            .collect();
        chains.join(", ")
    }
}

fn run(setup: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = build(setup);
    let mut trace = vec![format!("set up: {}", world.chains())];
    let failed = |trace: &[String], error: TestCaseError| {
        TestCaseError::fail(format!(
            "{error}\nsteps (activations by number, chains bottom first):\n  {}",
            trace.join("\n  ")
        ))
    };
    world.check().map_err(|error| failed(&trace, error))?;
    for op in ops {
        trace.push(world.describe(op));
        let done = world.step(op);
        trace.push(format!("  then {}", world.chains()));
        done.and_then(|()| world.check()).map_err(|error| failed(&trace, error))?;
    }
    Ok(())
}

/// The alert rule alone, stated directly: on one chain whose activations
/// block alerts or not (`blocked`, bottom first), an alert at `origin`
/// marks exactly the activations from the origin up to the first one at or
/// above it that blocks (or the top), and no other; opening alerts at that
/// one then carries the alert on up to the next that blocks.
fn alert_rule(blocked: &[bool], origin: usize) -> Result<(), TestCaseError> {
    let mut objects = Objects::new();
    let thread = objects.new_thread(3, DomainId(1));
    let base = objects.new_activation(DomainId(1), None, 0, 0, 0);
    prop_assert!(objects.push(thread, base));
    let mut chain = vec![base];
    for at in 1..blocked.len() {
        let domain = DomainId(1 + (at as u16 % DOMAINS));
        let port = objects.new_port(domain);
        let activation = objects.new_activation(domain, Some(port), 0, 0, 0);
        prop_assert!(objects.pool_add(port, activation));
        prop_assert_eq!(objects.pool_take(port), Some(activation));
        prop_assert!(objects.push(thread, activation));
        chain.push(activation);
    }
    for (&activation, &blocked) in chain.iter().zip(blocked) {
        objects.set_alerts_blocked(activation, blocked);
    }
    let stop = |from: usize| (from..chain.len()).find(|&at| blocked[at]).unwrap_or(chain.len() - 1);
    let holder = stop(origin);
    let reached = objects.alert(chain[origin]);
    prop_assert_eq!(&reached[..], &chain[origin..=holder], "alert at {} of {:?}", origin, blocked);
    for (at, &activation) in chain.iter().enumerate() {
        let pending = objects.activation(activation).expect("made").control.alert_pending;
        prop_assert_eq!(
            pending,
            (origin..=holder).contains(&at),
            "activation {} of {:?}, alert at {}",
            at,
            blocked,
            origin
        );
    }
    if holder + 1 < chain.len() {
        prop_assert!(objects.set_alerts_blocked(chain[holder], false), "the holder blocked alerts");
        let next = stop(holder + 1);
        for (at, &activation) in chain.iter().enumerate() {
            let pending = objects.activation(activation).expect("made").control.alert_pending;
            prop_assert_eq!(pending, (origin..=next).contains(&at), "opened at {}: activation {}", holder, at);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// An alert reaches exactly the origin and those above it up to the
    /// first that blocks; opening there passes it on to the next.
    #[test]
    fn alerts_go_up_to_the_first_that_blocks(
        (blocked, origin) in prop::collection::vec(any::<bool>(), 1..8)
            .prop_flat_map(|blocked| { let depth = blocked.len(); (Just(blocked), 0..depth) })
    ) {
        alert_rule(&blocked, origin)?;
    }

    /// Random threads and random surgery: the real objects stay well
    /// formed and agree with the model after every step.
    #[test]
    fn chain_surgery_matches_model(setup in setup(), ops in prop::collection::vec(op(), 1..80)) {
        run(&setup, &ops)?;
    }
}
