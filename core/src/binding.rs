//! A domain's bound handles, as data: which port each slot was bound to,
//! and whether the binding still holds. What binding means, and how the
//! kernel keeps the slots true, is `tern_core::handle`'s; this table sits
//! low (a domain record holds one) and knows nothing of the kernel.

use crate::abi::HANDLES;
use crate::capability::PortId;

/// What one slot holds: the port it was bound to, and whether that binding
/// still holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The port.
    pub port: PortId,
    /// Set by the kernel when the port died, the right went or the server
    /// changed mode: calls get `StaleHandle`.
    pub stale: bool,
}

/// A domain's bound handles: [`HANDLES`] slots.
#[derive(Clone, Debug, Default)]
pub struct HandleTable {
    slots: [Option<Binding>; HANDLES],
}

impl HandleTable {
    /// The binding in slot `handle`, if it is one.
    pub fn get(&self, handle: usize) -> Option<Binding> {
        self.slots.get(handle).copied().flatten()
    }

    /// How many slots are bound (stale ones included).
    pub fn bound(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub(crate) fn take_free(&mut self, binding: Binding) -> Option<usize> {
        let free = self.slots.iter().position(Option::is_none)?;
        self.slots[free] = Some(binding);
        Some(free)
    }

    pub(crate) fn clear(&mut self, handle: usize) -> bool {
        self.slots.get_mut(handle).and_then(Option::take).is_some()
    }

    /// Mark stale every binding `stale` picks; the slots it changed.
    pub(crate) fn mark_stale(&mut self, mut stale: impl FnMut(&Binding) -> bool) -> alloc::vec::Vec<usize> {
        let mut changed = alloc::vec::Vec::new();
        for (slot, binding) in self.slots.iter_mut().enumerate() {
            if let Some(binding) = binding
                && !binding.stale
                && stale(binding)
            {
                binding.stale = true;
                changed.push(slot);
            }
        }
        changed
    }

    /// Forget every binding (the domain is gone).
    pub fn clear_all(&mut self) {
        self.slots = [None; HANDLES];
    }
}
