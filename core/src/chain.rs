//! Controlling a thread spread over several domains: alerts, suspension,
//! termination that splits a thread, and who may change its scheduling
//! state (Ford & Lepreau §5.1).
//!
//! Everything here is chain surgery on [`Objects`], kept free of the arch
//! layer so the host tests exercise it: the kernel calls in the arch crate
//! check rights, call these, then do what only they can (wake or park
//! threads, give a split-off thread a kernel stack, write error codes into
//! trap frames).
//!
//! The rules, as implemented:
//!
//! - **Alerts** go *up* a chain: `alert(origin)` marks the origin and each
//!   activation above it (its callees, up to the top) pending, and stops
//!   after the first one that blocks alerts — the alert waits there until
//!   that activation opens alerts, then goes on up. Activations below the
//!   origin never see it. A thread's own activation starts with alerts
//!   open; a server activation starts with them blocked (an unwary server
//!   is not disturbed).
//! - **Splitting** cuts one link: the part of the chain from a boundary
//!   activation down moves to a new thread with the same scheduling
//!   parameters; the part above stays on the old thread (which keeps its
//!   kernel stack, so whatever it is doing — in a server, or in the kernel
//!   — goes on undisturbed).
//! - **Termination** of an activation splits below it and removes it: its
//!   caller's segment gets control back (the arch layer hands it
//!   `Terminated`), the segment above carries on with an alert.
//! - **Splice-out** (the paper's footnote 6) only marks the activation:
//!   the thread unwinds it when it comes back into it, so the caller gets
//!   control only after everything above has returned.
//! - **Forbidding**: an activation that forbids stops every activation
//!   above it from changing the thread's scheduling state; it and those
//!   below still may.

use crate::domain::DomainId;
use crate::thread::{ActivationId, Control, Objects, ThreadId};
use alloc::vec::Vec;

/// What terminating an activation did to its thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    /// The thread it was on, which keeps the part above it (and its
    /// kernel stack).
    pub thread: ThreadId,
    /// The new thread carrying its caller and everything below, if it had
    /// a caller; it must be resumed in its top activation with an error.
    pub lower: Option<ThreadId>,
    /// The lowest activation of the part above it (now with no caller), if
    /// it was not the top.
    pub upper_bottom: Option<ActivationId>,
}

impl Objects {
    /// `origin`'s thread, and the activations from `origin` up to the top
    /// of its chain, origin first. `None` if `origin` is not on a chain.
    pub fn above(&self, origin: ActivationId) -> Option<(ThreadId, Vec<ActivationId>)> {
        let thread = self.activation(origin)?.occupant?;
        let mut chain = self.chain(thread);
        let at = chain.iter().position(|&entry| entry == origin)?;
        chain.truncate(at + 1);
        chain.reverse();
        Some((thread, chain))
    }

    /// The activation directly above `activation` on its chain (the one it
    /// called), if any.
    pub fn callee(&self, activation: ActivationId) -> Option<ActivationId> {
        self.above(activation).and_then(|(_, above)| above.get(1).copied())
    }

    /// Change `activation`'s control state, keeping the general-return
    /// mark in step: an activation whose state is no longer what it started
    /// with is watched, so the kernel's fast ways back into it (and a
    /// server activation's return, which resets it) take the general path.
    fn control_mut(&mut self, activation: ActivationId, change: impl FnOnce(&mut Control)) {
        if let Some(entry) = self.activation_mut(activation) {
            change(&mut entry.control);
            if entry.control != Control::fresh(entry.port.is_some()) {
                entry.watch();
            }
        }
    }

    /// Deliver an alert at `origin`: see the module's rules. Returns the
    /// activations it reached, origin first (the last one holds it if it
    /// blocks alerts).
    pub fn alert(&mut self, origin: ActivationId) -> Vec<ActivationId> {
        let Some((_, above)) = self.above(origin) else { return Vec::new() };
        let mut reached = Vec::new();
        for activation in above {
            self.control_mut(activation, |control| control.alert_pending = true);
            reached.push(activation);
            if self.activation(activation).is_some_and(|entry| entry.control.alerts_blocked) {
                break;
            }
        }
        reached
    }

    /// Block or open alerts at `activation`; opening passes an alert
    /// waiting there on up the chain. Returns whether they were blocked.
    pub fn set_alerts_blocked(&mut self, activation: ActivationId, blocked: bool) -> bool {
        let Some(entry) = self.activation(activation) else { return false };
        let (was, pending) = (entry.control.alerts_blocked, entry.control.alert_pending);
        self.control_mut(activation, |control| control.alerts_blocked = blocked);
        if was
            && !blocked
            && pending
            && let Some(callee) = self.callee(activation)
        {
            self.alert(callee);
        }
        was
    }

    /// Whether `activation` sees an alert (pending, alerts open); taking
    /// it clears it.
    pub fn take_alert(&mut self, activation: ActivationId) -> bool {
        let seen = self
            .activation(activation)
            .is_some_and(|entry| entry.control.alert_pending && !entry.control.alerts_blocked);
        if seen {
            self.control_mut(activation, |control| control.alert_pending = false);
        }
        seen
    }

    /// Whether `thread`'s top activation sees an alert: a blocking kernel
    /// call it makes must end `Interrupted`.
    pub fn top_alerted(&self, thread: ThreadId) -> bool {
        let top = self.thread(thread).and_then(|entry| entry.top);
        top.and_then(|top| self.activation(top))
            .is_some_and(|entry| entry.control.alert_pending && !entry.control.alerts_blocked)
    }

    /// Cut `thread`'s chain below the activations above `boundary`:
    /// `boundary` and everything below it move to a new thread with the
    /// same priority, policy and creator (returned, ready); the part above
    /// stays on `thread`, its lowest activation (returned) now calling
    /// nobody. `None` if `boundary` is not on `thread`'s chain.
    pub fn split(&mut self, thread: ThreadId, boundary: ActivationId) -> Option<(ThreadId, Option<ActivationId>)> {
        let chain = self.chain(thread);
        let at = chain.iter().position(|&entry| entry == boundary)?;
        let (priority, policy, creator) = {
            let entry = self.thread(thread)?;
            (entry.priority, entry.policy, entry.creator)
        };
        let lower = self.new_thread(priority, creator);
        let carries_base = chain.last().and_then(|&base| self.activation(base)).is_some_and(|base| base.port.is_none());
        if let Some(entry) = self.thread_mut(lower) {
            entry.policy = policy;
            entry.top = Some(boundary);
            entry.split_off = true;
        }
        for &activation in &chain[at..] {
            if let Some(entry) = self.activation_mut(activation) {
                entry.occupant = Some(lower);
            }
        }
        let upper_bottom = at.checked_sub(1).map(|below| chain[below]);
        self.cut_below(thread, upper_bottom);
        if carries_base && let Some(entry) = self.thread_mut(thread) {
            entry.base_moved_to = Some(lower);
        }
        Some((lower, upper_bottom))
    }

    /// Make `bottom` the lowest activation of `thread`'s chain (calling
    /// nobody), or, for `None`, leave the thread with no activation.
    fn cut_below(&mut self, thread: ThreadId, bottom: Option<ActivationId>) {
        match bottom {
            Some(bottom) => {
                if let Some(entry) = self.activation_mut(bottom) {
                    entry.caller = None;
                }
            }
            None => {
                if let Some(entry) = self.thread_mut(thread) {
                    entry.top = None;
                }
            }
        }
    }

    /// Terminate `victim`: split its thread below it (its caller's segment
    /// moves to a new thread), take it off the chain (unoccupied, its
    /// control state fresh; the arch layer returns it to its pool or
    /// forgets it), and alert the part above. `None` if it is not on a
    /// chain.
    pub fn terminate(&mut self, victim: ActivationId) -> Option<Termination> {
        let entry = self.activation(victim)?;
        let thread = entry.occupant?;
        let lower = match entry.caller {
            Some(caller) => Some(self.split(thread, caller)?.0),
            None => None,
        };
        // Now `victim` is the bottom of `thread`'s chain: take it off.
        let upper_bottom = self.callee(victim);
        self.cut_below(thread, upper_bottom);
        if let Some(entry) = self.activation_mut(victim) {
            entry.occupant = None;
            entry.caller = None;
            entry.reset_control();
        }
        if let Some(bottom) = upper_bottom {
            self.alert(bottom);
        }
        Some(Termination { thread, lower, upper_bottom })
    }

    /// Mark `victim` spliced out: when its thread comes back into it, it
    /// is popped and its caller gets `Terminated`. Alerts the part above
    /// (its work is probably no longer of value). False if it is not on a
    /// chain.
    pub fn splice(&mut self, victim: ActivationId) -> bool {
        if self.activation(victim).and_then(|entry| entry.occupant).is_none() {
            return false;
        }
        self.control_mut(victim, |control| control.spliced = true);
        if let Some(callee) = self.callee(victim) {
            if let Some(entry) = self.activation_mut(callee) {
                entry.watch();
            }
            self.alert(callee);
        }
        true
    }

    /// Suspend (`true`) or resume `activation`. While suspended, the
    /// thread stops whenever it would run the activation's code; the one
    /// above it (if any) is watched so that returning into it takes the
    /// general path. Returns whether it was suspended.
    pub fn set_suspended(&mut self, activation: ActivationId, suspended: bool) -> bool {
        let was = self.activation(activation).is_some_and(|entry| entry.control.suspended);
        self.control_mut(activation, |control| control.suspended = suspended);
        self.watch_callee(activation);
        was
    }

    /// Hold (or release) `activation` for a state operation: like a
    /// suspension, but separate from it.
    pub fn set_held(&mut self, activation: ActivationId, held: bool) {
        self.control_mut(activation, |control| control.held = held);
        self.watch_callee(activation);
    }

    fn watch_callee(&mut self, activation: ActivationId) {
        if let Some(entry) = self.callee(activation).and_then(|callee| self.activation_mut(callee)) {
            entry.watch();
        }
    }

    /// Ask for alerts reaching `activation` to be delivered by an upcall
    /// into `handler` (0: by polling only).
    pub fn set_alert_handler(&mut self, activation: ActivationId, handler: u64) {
        self.control_mut(activation, |control| control.alert_handler = handler);
    }

    /// Forbid activations above `activation` from changing its thread's
    /// scheduling state.
    pub fn forbid_above(&mut self, activation: ActivationId) {
        self.control_mut(activation, |control| control.forbid_above = true);
    }

    /// Whether `activation` may change its thread's scheduling state: no
    /// activation below it forbids.
    pub fn may_schedule(&self, activation: ActivationId) -> bool {
        let mut next = self.activation(activation).and_then(|entry| entry.caller);
        while let Some(below) = next {
            let Some(entry) = self.activation(below) else { break };
            if entry.control.forbid_above {
                return false;
            }
            next = entry.caller;
        }
        true
    }

    /// The occupied activations of `domain`: those a thread runs in, is
    /// parked in, or is in a call from.
    pub fn occupied_in(&self, domain: DomainId) -> Vec<ActivationId> {
        self.activation_ids()
            .filter(|&id| self.activation(id).is_some_and(|entry| entry.domain == domain && entry.occupant.is_some()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::PortId;

    /// A thread of domain 1 in a chain 1 → 2 → 3 (the two servers with pool
    /// activations): the thread and its activations, bottom first.
    fn three_deep(objects: &mut Objects) -> (ThreadId, [ActivationId; 3], [PortId; 2]) {
        let thread = objects.new_thread(7, DomainId(1));
        let base = objects.new_activation(DomainId(1), None, 0, 0, 0);
        assert!(objects.push(thread, base));
        let mut ports = [PortId::new(1).unwrap(); 2];
        let mut chain = [base; 3];
        for (at, domain) in [DomainId(2), DomainId(3)].into_iter().enumerate() {
            let port = objects.new_port(domain);
            let activation = objects.new_activation(domain, Some(port), 0, 0, 0);
            assert!(objects.pool_add(port, activation));
            let taken = objects.pool_take(port).unwrap();
            assert!(objects.push(thread, taken));
            ports[at] = port;
            chain[at + 1] = taken;
        }
        (thread, chain, ports)
    }

    fn pending(objects: &Objects, activation: ActivationId) -> bool {
        objects.activation(activation).unwrap().control.alert_pending
    }

    #[test]
    fn alerts_go_up_from_their_origin_and_wait_at_blocked_activations() {
        let mut objects = Objects::new();
        let (thread, [a, b, c], _) = three_deep(&mut objects);
        assert!(objects.activation(b).unwrap().control.alerts_blocked, "a new server activation blocks alerts");
        assert!(!objects.activation(a).unwrap().control.alerts_blocked, "a thread's own activation does not");
        // B blocks: the alert from A waits at B; C does not see it.
        assert_eq!(objects.alert(a), [a, b]);
        assert!(pending(&objects, a) && pending(&objects, b) && !pending(&objects, c));
        assert!(!objects.take_alert(b), "blocked: not seen");
        assert!(!objects.top_alerted(thread));
        // Both servers open alerts: B's passes on to C, the top.
        objects.set_alerts_blocked(c, false);
        assert!(objects.set_alerts_blocked(b, false), "was blocked");
        assert!(pending(&objects, c), "opened at B, the alert went on to C");
        assert!(objects.top_alerted(thread));
        assert!(objects.take_alert(c));
        assert!(!objects.take_alert(c), "taken once");
        assert!(objects.activation(c).unwrap().flags & crate::thread::Activation::WATCHED != 0);
        // An alert from the middle never reaches below its origin.
        let mut objects = Objects::new();
        let (_, [a, b, c], _) = three_deep(&mut objects);
        objects.set_alerts_blocked(b, false);
        objects.set_alerts_blocked(c, false);
        assert_eq!(objects.alert(b), [b, c]);
        assert!(!pending(&objects, a), "not below the origin");
        assert!(pending(&objects, c), "the top");
    }

    #[test]
    fn popping_resets_a_server_activation_for_its_next_call() {
        let mut objects = Objects::new();
        let (thread, [_, _, c], _) = three_deep(&mut objects);
        objects.set_alerts_blocked(c, false);
        objects.alert(c);
        assert_eq!(objects.pop(thread), Some(c));
        let entry = objects.activation(c).unwrap();
        assert_eq!(entry.control, Control::fresh(true));
        assert_eq!(entry.flags & crate::thread::Activation::GENERAL_RETURN, 0, "fast again");
    }

    #[test]
    fn terminating_the_middle_splits_the_thread_in_two() {
        let mut objects = Objects::new();
        let (thread, [a, b, c], [port_b, _]) = three_deep(&mut objects);
        objects.set_alerts_blocked(c, false);
        let done = objects.terminate(b).unwrap();
        let lower = done.lower.unwrap();
        assert_eq!(done.thread, thread);
        assert_eq!(done.upper_bottom, Some(c));
        assert_eq!(objects.chain(thread), [c], "the upper part stays, C now calls nobody");
        assert_eq!(objects.activation(c).unwrap().caller, None);
        assert_eq!(objects.chain(lower), [a], "the caller's part moved");
        assert_eq!(objects.activation(a).unwrap().occupant, Some(lower));
        assert_eq!(objects.thread(lower).unwrap().priority, 7, "same scheduling parameters");
        assert_eq!(objects.thread(thread).unwrap().base_moved_to, Some(lower), "joins follow the base");
        assert!(pending(&objects, c), "the upper part is alerted");
        let victim = objects.activation(b).unwrap();
        assert_eq!((victim.occupant, victim.caller), (None, None));
        assert!(objects.pool_return(b));
        assert_eq!(objects.pool_take(port_b), Some(b), "the victim can serve again");
    }

    #[test]
    fn terminating_the_top_leaves_the_kernel_part_behind() {
        let mut objects = Objects::new();
        let (thread, [a, b, c], _) = three_deep(&mut objects);
        let done = objects.terminate(c).unwrap();
        assert_eq!(done.upper_bottom, None);
        assert_eq!(objects.thread(thread).unwrap().top, None, "nothing left above: it self-destructs");
        assert_eq!(objects.chain(done.lower.unwrap()), [b, a]);
        // The base: no caller, so no lower part; the rest goes on.
        let mut objects = Objects::new();
        let (thread, [a, b, c], _) = three_deep(&mut objects);
        let done = objects.terminate(a).unwrap();
        assert_eq!((done.lower, done.upper_bottom), (None, Some(b)));
        assert_eq!(objects.chain(thread), [c, b]);
        assert_eq!(objects.split(thread, a), None, "a is on no chain now");
    }

    #[test]
    fn splitting_above_a_caller_breaks_the_chain_there() {
        let mut objects = Objects::new();
        let (thread, [a, b, c], _) = three_deep(&mut objects);
        let (lower, upper_bottom) = objects.split(thread, b).unwrap();
        assert_eq!(upper_bottom, Some(c));
        assert_eq!(objects.chain(lower), [b, a]);
        assert_eq!(objects.chain(thread), [c]);
    }

    #[test]
    fn forbidding_stops_only_the_activations_above() {
        let mut objects = Objects::new();
        let (_, [a, b, c], _) = three_deep(&mut objects);
        assert!(objects.may_schedule(c));
        objects.forbid_above(b);
        assert!(!objects.may_schedule(c), "above the forbidding activation");
        assert!(objects.may_schedule(b), "the forbidding activation itself");
        assert!(objects.may_schedule(a), "below it");
    }

    #[test]
    fn suspending_watches_the_way_back_in() {
        let mut objects = Objects::new();
        let (_, [a, b, c], _) = three_deep(&mut objects);
        assert!(!objects.set_suspended(a, true));
        let flags = objects.activation(b).unwrap().flags;
        assert_ne!(flags & crate::thread::Activation::GENERAL_RETURN, 0, "B's return goes the general way");
        assert!(objects.activation(a).unwrap().control.stops());
        assert!(objects.set_suspended(a, false));
        assert!(objects.splice(b));
        assert!(objects.activation(b).unwrap().control.spliced);
        assert_ne!(objects.activation(c).unwrap().flags & crate::thread::Activation::GENERAL_RETURN, 0);
        assert_eq!(objects.occupied_in(DomainId(3)), [c]);
    }
}
