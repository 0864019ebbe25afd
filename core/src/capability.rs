//! Capability spaces: a domain's port names and the rights behind them.
//!
//! A port name is a small integer, an index into the domain's table, so
//! translating it on the RPC path is a bounds check and a load (the paper's
//! "port translation" went from 206 instructions to 12 for the same reason:
//! first-hand knowledge instead of a hash lookup). Name 0 is reserved in
//! every space for the name service.
//!
//! Rights: a *receive* right (held by the port's creator; it lets the
//! holder serve the port and also send to it) or a *send* right. A domain
//! holds at most one name per port: transferring a right it already has
//! returns the existing name, so names do not pile up.
//!
//! A destroyed port's names become *dead names* in every space
//! ([`CapabilitySpace::kill_port`]): they name no port (so the port's number
//! can be reused), are not given out again, and tell their holder
//! `PortDead` the first time it uses one — which frees the name.
//!
//! Left out: send-once rights and reference counts.

use alloc::vec::Vec;

/// A port, kernel-wide. Never zero, so `Option<PortId>` is one 32-bit
/// word with 0 for "none" (the layout the RPC fast path reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct PortId(pub core::num::NonZeroU32);

impl PortId {
    /// The port numbered `number`, if it is not 0.
    pub const fn new(number: u32) -> Option<PortId> {
        match core::num::NonZeroU32::new(number) {
            Some(number) => Some(PortId(number)),
            None => None,
        }
    }

    /// Its number.
    pub const fn get(self) -> u32 {
        self.0.get()
    }
}

/// What a name in a capability space stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// The port.
    pub port: PortId,
    /// True for the receive right (which implies send).
    pub receive: bool,
}

/// One domain's names.
///
/// Besides the slots, the space keeps `ports`: for each name, the port's
/// number (0 for none) with [`RECEIVE_BIT`] set for a receive right — a
/// plain array of words that the RPC fast path indexes by name.
#[derive(Clone, Debug, Default)]
pub struct CapabilitySpace {
    slots: Vec<Option<Capability>>,
    ports: Vec<u32>,
    /// Dead names (see the module's notes), by name.
    dead: Vec<bool>,
}

/// In [`CapabilitySpace::port_words`]: the name is a receive right.
pub const RECEIVE_BIT: u32 = 1 << 31;

/// The name reserved for the name service in every space.
pub const NAME_SERVICE_NAME: u32 = 0;

impl CapabilitySpace {
    /// An empty space (name 0 reserved).
    pub fn new() -> Self {
        CapabilitySpace { slots: alloc::vec![None], ports: alloc::vec![0], dead: Vec::new() }
    }

    /// One word per name: the port's number (0 for none), with
    /// [`RECEIVE_BIT`] for a receive right.
    pub fn port_words(&self) -> &[u32] {
        &self.ports
    }

    fn sync(&mut self, name: usize) {
        if self.ports.len() < self.slots.len() {
            self.ports.resize(self.slots.len(), 0);
        }
        self.ports[name] = self.slots[name]
            .map_or(0, |capability| capability.port.get() | if capability.receive { RECEIVE_BIT } else { 0 });
    }

    /// What `name` stands for.
    pub fn lookup(&self, name: u32) -> Option<Capability> {
        self.slots.get(name as usize).copied().flatten()
    }

    /// The name this space already has for `port`, if any.
    pub fn name_of(&self, port: PortId) -> Option<u32> {
        self.slots.iter().position(|slot| slot.is_some_and(|capability| capability.port == port)).map(|at| at as u32)
    }

    /// Give the space `capability`: an existing name for the same port is
    /// reused (upgraded to receive if needed), else the lowest free name
    /// above 0.
    pub fn insert(&mut self, capability: Capability) -> u32 {
        if let Some(name) = self.name_of(capability.port) {
            if let Some(Some(existing)) = self.slots.get_mut(name as usize) {
                existing.receive |= capability.receive;
            }
            self.sync(name as usize);
            return name;
        }
        let at = match self.free_name() {
            Some(at) => {
                self.slots[at] = Some(capability);
                at
            }
            None => {
                self.slots.push(Some(capability));
                self.slots.len() - 1
            }
        };
        self.sync(at);
        at as u32
    }

    /// The lowest name that is neither in use nor dead, if any below the
    /// table's end.
    fn free_name(&self) -> Option<usize> {
        let dead = &self.dead;
        self.slots
            .iter()
            .enumerate()
            .skip(1)
            .position(|(at, slot)| slot.is_none() && !dead.get(at).copied().unwrap_or(false))
            .map(|at| at + 1)
    }

    /// Port `port` is gone: its name here (if any) becomes a dead name;
    /// whether there was one.
    pub fn kill_port(&mut self, port: PortId) -> bool {
        let Some(name) = self.name_of(port) else { return false };
        self.slots[name as usize] = None;
        if self.dead.len() <= name as usize {
            self.dead.resize(name as usize + 1, false);
        }
        self.dead[name as usize] = true;
        self.sync(name as usize);
        true
    }

    /// A new dead name (a dead name carried in a message arrives as one):
    /// the name.
    pub fn insert_dead(&mut self) -> u32 {
        let at = self.free_name().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if self.dead.len() <= at {
            self.dead.resize(at + 1, false);
        }
        self.dead[at] = true;
        self.sync(at);
        at as u32
    }

    /// Whether `name` is a dead name.
    pub fn is_dead(&self, name: u32) -> bool {
        self.dead.get(name as usize).copied().unwrap_or(false)
    }

    /// The holder has learned that dead name `name` is dead: it is free
    /// again. Whether it was a dead name.
    pub fn forget_dead(&mut self, name: u32) -> bool {
        match self.dead.get_mut(name as usize) {
            Some(dead) if *dead => {
                *dead = false;
                true
            }
            _ => false,
        }
    }

    /// Put `capability` at a fixed `name` (the name service at 0).
    pub fn install(&mut self, name: u32, capability: Capability) {
        let at = name as usize;
        if self.slots.len() <= at {
            self.slots.resize(at + 1, None);
        }
        self.slots[at] = Some(capability);
        if let Some(dead) = self.dead.get_mut(at) {
            *dead = false;
        }
        self.sync(at);
    }

    /// How many names are in use.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_some()).count()
    }

    /// True when no name is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(number: u32) -> PortId {
        PortId::new(number).unwrap()
    }

    #[test]
    fn names_are_small_reused_and_unique_per_port() {
        let mut space = CapabilitySpace::new();
        assert_eq!(space.lookup(0), None, "name 0 is reserved but empty until installed");
        let first = space.insert(Capability { port: port(7), receive: false });
        assert_eq!(first, 1);
        let second = space.insert(Capability { port: port(9), receive: true });
        assert_eq!(second, 2);
        assert_eq!(space.insert(Capability { port: port(7), receive: false }), 1, "same port, same name");
        assert_eq!(space.insert(Capability { port: port(7), receive: true }), 1);
        assert_eq!(space.lookup(1), Some(Capability { port: port(7), receive: true }), "upgraded");
        assert_eq!(space.lookup(99), None);
        space.install(0, Capability { port: port(1), receive: false });
        assert_eq!(space.lookup(0).map(|capability| capability.port), Some(port(1)));
        assert_eq!(space.name_of(port(9)), Some(2));
        assert_eq!(space.len(), 3);
        assert_eq!(space.port_words(), [1, 7 | RECEIVE_BIT, 9 | RECEIVE_BIT], "the fast path's words agree");
        assert_eq!(PortId::new(0), None);
    }
}
