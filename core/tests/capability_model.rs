//! Capability spaces against a model: random sequences of `insert`,
//! `install`, `lookup`, `name_of` and the dead-name operations
//! (`kill_port`, `insert_dead`, `is_dead`, `forget_dead`) on a
//! [`CapabilitySpace`] and on a plain map from names to capabilities plus
//! a set of dead names, following the rules in `core/src/capability.rs`:
//!
//! - a new space holds no name; name 0 is reserved (for the name service)
//!   and `insert` never hands it out;
//! - `insert` of a right to a port the space already names returns that
//!   name (the lowest, should there be several), upgraded to receive if the
//!   new right is a receive right and never downgraded; otherwise the
//!   lowest free name above 0;
//! - `install` puts a capability at a fixed name, whatever was there (a
//!   dead name there is live again);
//! - `kill_port` makes the space's name for a port (the one `name_of`
//!   gives) a dead name: it names nothing (`lookup`, `name_of` and the
//!   fast path's word all say so), `is_dead` says so, and neither `insert`
//!   nor `insert_dead` gives it out until `forget_dead` frees it;
//!   `insert_dead` makes the lowest free name above 0 a dead name;
//! - `port_words()` has one word per name, which the RPC fast path reads
//!   (`arch/aarch64/src/fastpath.s`): bit 31 ([`RECEIVE_BIT`]) for a
//!   receive right, bits 0-30 the port's number, 0 for an empty or dead
//!   name (a dead name must not look like a live port to the fast path);
//!   a name past its end names nothing.
//!
//! Two properties: any sequence (`install` anywhere, over anything), and
//! the kernel's own use (`install` only at name 0, free or dead, of a port
//! the space does not hold yet), where moreover a space holds at most one name
//! per port, a name, once given, keeps naming the same port until that
//! port is killed, and once killed no name names it.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tern_core::capability::{Capability, CapabilitySpace, NAME_SERVICE_NAME, PortId, RECEIVE_BIT};

/// The documented space: names to capabilities, and the dead names.
#[derive(Debug, Default)]
struct Model {
    names: BTreeMap<u32, Capability>,
    dead: BTreeSet<u32>,
}

impl Model {
    fn name_of(&self, port: PortId) -> Option<u32> {
        self.names.iter().find(|(_, capability)| capability.port == port).map(|(&name, _)| name)
    }

    fn insert(&mut self, capability: Capability) -> u32 {
        if let Some(name) = self.name_of(capability.port) {
            let held = self.names.get_mut(&name).expect("named");
            held.receive |= capability.receive;
            return name;
        }
        let name = self.free_name();
        self.names.insert(name, capability);
        name
    }

    /// The lowest name above 0 that is neither in use nor dead.
    fn free_name(&self) -> u32 {
        (1..).find(|name| !self.names.contains_key(name) && !self.dead.contains(name)).expect("a free name")
    }

    fn install(&mut self, name: u32, capability: Capability) {
        self.dead.remove(&name);
        self.names.insert(name, capability);
    }

    fn kill_port(&mut self, port: PortId) -> bool {
        let Some(name) = self.name_of(port) else { return false };
        self.names.remove(&name);
        self.dead.insert(name);
        true
    }

    fn insert_dead(&mut self) -> u32 {
        let name = self.free_name();
        self.dead.insert(name);
        name
    }

    fn forget_dead(&mut self, name: u32) -> bool {
        self.dead.remove(&name)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Capability),
    Install(u32, Capability),
    Lookup(u32),
    NameOf(PortId),
    KillPort(PortId),
    InsertDead,
    IsDead(u32),
    ForgetDead(u32),
}

/// Ports: mostly a handful (so that rights to the same port meet), now and
/// then a large number, up to the largest the word encoding can carry.
fn port() -> impl Strategy<Value = PortId> {
    prop_oneof![
        6 => 1u32..=6,
        1 => 7u32..=(RECEIVE_BIT - 1),
        1 => Just(RECEIVE_BIT - 1),
    ]
    .prop_map(|number| PortId::new(number).expect("not 0"))
}

fn capability() -> impl Strategy<Value = Capability> {
    (port(), any::<bool>()).prop_map(|(port, receive)| Capability { port, receive })
}

/// Names for `install` and `lookup`: small (the space grows to the largest
/// installed name, so no huge ones), a few past anything in use.
fn name() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..=8, 1 => 9u32..=40]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => capability().prop_map(Op::Insert),
        2 => (name(), capability()).prop_map(|(name, capability)| Op::Install(name, capability)),
        2 => name().prop_map(Op::Lookup),
        2 => port().prop_map(Op::NameOf),
        2 => port().prop_map(Op::KillPort),
        1 => Just(Op::InsertDead),
        1 => name().prop_map(Op::IsDead),
        2 => name().prop_map(Op::ForgetDead),
    ]
}

/// What a fast-path word says: `None` for an empty name, else the port and
/// whether it is a receive right.
fn decode(word: u32) -> Option<(u32, bool)> {
    let number = word & !RECEIVE_BIT;
    (number != 0).then_some((number, word & RECEIVE_BIT != 0))
}

/// Everything the space says agrees with the model.
fn check(space: &CapabilitySpace, model: &Model) -> Result<(), TestCaseError> {
    let words = space.port_words();
    prop_assert!(!words.is_empty(), "name 0 is reserved: it always has a word");
    let highest = model.names.keys().next_back().copied().unwrap_or(0);
    prop_assert!(
        words.len() > highest as usize,
        "a word for every name in use ({} words, name {highest})",
        words.len()
    );
    let last_dead = model.dead.iter().next_back().copied().unwrap_or(0);
    for name in 0..(words.len() as u32).max(last_dead + 1) + 4 {
        let expected = model.names.get(&name).copied();
        prop_assert_eq!(space.lookup(name), expected, "lookup({})", name);
        let dead = model.dead.contains(&name);
        prop_assert_eq!(space.is_dead(name), dead, "is_dead({})", name);
        prop_assert!(!(dead && expected.is_some()), "model: name {} both dead and in use", name);
        let word = words.get(name as usize).copied();
        let decoded = word.and_then(decode);
        prop_assert_eq!(
            decoded,
            expected.map(|capability| (capability.port.get(), capability.receive)),
            "port_words()[{}] = {:?} (the fast path's reading of lookup)",
            name,
            word
        );
    }
    prop_assert_eq!(space.len(), model.names.len());
    prop_assert_eq!(space.is_empty(), model.names.is_empty());
    for number in 1..=8 {
        let port = PortId::new(number).expect("not 0");
        prop_assert_eq!(space.name_of(port), model.name_of(port), "name_of(port {})", number);
    }
    for capability in model.names.values() {
        prop_assert_eq!(space.name_of(capability.port), model.name_of(capability.port));
    }
    // What the next `insert` of a new port or `insert_dead` would take:
    // never a dead name (checked on a copy, so the space is unchanged).
    let mut copy = space.clone();
    let fresh = copy.insert_dead();
    prop_assert_eq!(fresh, model.free_name(), "the next free name (insert_dead on a copy)");
    Ok(())
}

/// Run `ops` on both, checking every answer and then everything.
fn run(ops: &[Op], kernel_use: bool) -> Result<(), TestCaseError> {
    let mut space = CapabilitySpace::new();
    let mut model = Model::default();
    // Kernel use: the port each name in use was given for (until the
    // port is killed).
    let mut given: BTreeMap<u32, PortId> = BTreeMap::new();
    check(&space, &model)?;
    prop_assert!(space.is_empty(), "a new space names nothing");
    for op in ops {
        match *op {
            Op::Insert(capability) => {
                let named = model.name_of(capability.port).is_some();
                let name = space.insert(capability);
                prop_assert_eq!(name, model.insert(capability), "insert({:?})", capability);
                prop_assert!(named || name != NAME_SERVICE_NAME, "insert never gives out the name service's name");
                let held = space.lookup(name).expect("just inserted");
                prop_assert_eq!(held.port, capability.port);
                prop_assert!(held.receive || !capability.receive, "a receive right is never lost by insert");
                given.entry(name).or_insert(capability.port);
            }
            Op::Install(name, capability) => {
                let kernel_like = name == NAME_SERVICE_NAME
                    && !model.names.contains_key(&name)
                    && model.name_of(capability.port).is_none();
                if kernel_use && !kernel_like {
                    continue;
                }
                space.install(name, capability);
                model.install(name, capability);
                prop_assert_eq!(space.lookup(name), Some(capability), "install({}, {:?})", name, capability);
                given.entry(name).or_insert(capability.port);
            }
            Op::Lookup(name) => {
                prop_assert_eq!(space.lookup(name), model.names.get(&name).copied(), "lookup({})", name)
            }
            Op::NameOf(port) => prop_assert_eq!(space.name_of(port), model.name_of(port), "name_of({:?})", port),
            Op::KillPort(port) => {
                let name = model.name_of(port);
                prop_assert_eq!(space.kill_port(port), model.kill_port(port), "kill_port({:?})", port);
                if let Some(name) = name {
                    prop_assert!(space.is_dead(name), "name {} of killed {:?} is dead", name, port);
                    prop_assert_eq!(space.lookup(name), None, "name {} of killed {:?} names nothing", name, port);
                    prop_assert_eq!(space.port_words()[name as usize], 0, "the fast path sees no port at {}", name);
                    given.remove(&name);
                }
                if kernel_use {
                    prop_assert_eq!(space.name_of(port), None, "no name is left for killed {:?}", port);
                }
            }
            Op::InsertDead => {
                let name = space.insert_dead();
                prop_assert_eq!(name, model.insert_dead(), "insert_dead()");
                prop_assert!(name != NAME_SERVICE_NAME, "insert_dead never gives out the name service's name");
                prop_assert!(space.is_dead(name) && space.lookup(name).is_none());
            }
            Op::IsDead(name) => prop_assert_eq!(space.is_dead(name), model.dead.contains(&name), "is_dead({})", name),
            Op::ForgetDead(name) => {
                prop_assert_eq!(space.forget_dead(name), model.forget_dead(name), "forget_dead({})", name);
                prop_assert!(!space.is_dead(name));
            }
        }
        check(&space, &model)?;
        if kernel_use {
            let mut ports: Vec<PortId> = model.names.values().map(|capability| capability.port).collect();
            ports.sort();
            let count = ports.len();
            ports.dedup();
            prop_assert_eq!(ports.len(), count, "at most one name per port");
            for (&name, &port) in &given {
                prop_assert_eq!(
                    space.lookup(name).map(|capability| capability.port),
                    Some(port),
                    "name {} is stable",
                    name
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any sequence: every answer and every fast-path word agree with the
    /// model, and nothing panics.
    #[test]
    fn capability_space_matches_model(ops in prop::collection::vec(op(), 0..48)) {
        run(&ops, false)?;
    }

    /// The kernel's use (`install` only of the name service, at name 0,
    /// into a space not holding it, and with name 0 free or dead):
    /// besides, one name per port, names never change meaning while their
    /// port lives, and a killed port has no name left.
    #[test]
    fn capability_names_are_stable_and_unique_in_kernel_use(ops in prop::collection::vec(op(), 0..48)) {
        run(&ops, true)?;
    }
}
