//! Restarting dead domains.
//!
//! Each domain has a [`RestartPolicy`] (never, the default; on a fault;
//! always — on a fault or a termination), bounded to so many restarts in a
//! window of counter ticks, which the kernel domain sets
//! (`Call::DomainRestart`). When a domain the policy restarts dies
//! (`Kernel::kill_domain`):
//!
//! - its ports are kept, not destroyed: every right to them stays good,
//!   and callers — those arriving, and those that were queued for its
//!   server threads — wait for activations as they would on a port whose
//!   pool is empty; its free activations go (the busy ones as their calls
//!   unwind), its server threads stop counting, and the port's generation
//!   goes up by one;
//! - a call it was serving returns `CallAborted` — or, on a port its
//!   server declared idempotent (`PORT_IDEMPOTENT` at `PortCreate`),
//!   `Restarted`, which the gate answers by making the call once more
//!   (so the client's code never sees it; a second `Restarted` reaches it
//!   as `CallAborted`);
//! - a new instance of the same server is created (a clean region: a
//!   fresh slot, zeroed; its name, spec, policy and start argument are its
//!   predecessor's) and started on a thread of its own, which nobody
//!   joins. Its first `PortCreate` calls adopt the kept ports in the order
//!   the predecessor made them (same ports, new receive names), so a
//!   server that makes its ports the same way each time serves the same
//!   ports; once its start returns, kept ports it has not adopted die.
//!
//! When the policy gives up (the window is full), or the new instance
//! cannot be made, the ports die as without a policy: callers get
//! `PortDead`.
//!
//! The alternative rejected for in-flight calls: re-issuing them inside the
//! kernel by rewinding the client to its `svc`. The fast paths save only
//! the registers a call must keep (x19–x30, SP, PC, PSTATE), not its
//! arguments, and saving those too would cost every call for the sake of
//! a crash; the gate, which made the call, still has them.

use crate::abi::{Error, RestartPolicy};
use crate::capability::{Capability, PortId};
use crate::domain::DomainId;
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::quota::Resource;
use crate::thread::ThreadId;
use alloc::vec::Vec;

/// Restart times a record keeps (those outside the window are dropped
/// too): enough for any limit a window can count.
const RESTARTS_KEPT: usize = 64;

impl<M: Machine> Kernel<M> {
    /// Set domain `id`'s restart policy; how many restarts its window
    /// counts now. `InvalidArgument` for no such live domain.
    pub fn set_restart_policy(&mut self, id: DomainId, policy: RestartPolicy) -> Result<usize, Error> {
        let now = self.machine.counter();
        let record = self.domain_mut(id).filter(|record| record.alive).ok_or(Error::InvalidArgument)?;
        record.restart = policy;
        Ok(RestartPolicy::within(&record.restarts, policy.window(), now))
    }

    /// `DomainRestart`: x0 domain, x1 policy, x2 limit, x3 window; the
    /// kernel domain only.
    pub fn domain_restart(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        if !self.is_kernel_domain(caller.domain) {
            return Err(Error::NoRight);
        }
        let domain = u16::try_from(frame.argument(0)).map(DomainId).map_err(|_| Error::InvalidArgument)?;
        let limit = u32::try_from(frame.argument(2)).map_err(|_| Error::InvalidArgument)?;
        let policy = RestartPolicy::from_code(frame.argument(1), limit, frame.argument(3) as u64)
            .ok_or(Error::InvalidArgument)?;
        self.set_restart_policy(domain, policy).map(Next::Reply)
    }

    /// Whether live domain `id`, dying now (by a fault if `faulted`), is
    /// to be restarted.
    pub(crate) fn plans_restart(&self, id: DomainId, faulted: bool) -> bool {
        let Some(record) = self.domain(id).filter(|record| record.alive) else { return false };
        record.restart.allows(faulted, &record.restarts, self.machine.counter())
    }

    /// What a call in flight on `port` returns when its server dies:
    /// `Restarted` if the port is kept for a new instance and declared
    /// idempotent, else `CallAborted`.
    pub(crate) fn aborted_call_error(&self, port: Option<PortId>) -> Error {
        match port.and_then(|port| self.objects.port(port)) {
            Some(entry) if entry.alive && entry.restarting && entry.idempotent => Error::Restarted,
            _ => Error::CallAborted,
        }
    }

    /// The server threads serving `port` will never reply: their clients'
    /// calls return (see [`Kernel::aborted_call_error`]).
    pub(crate) fn abandon_clients_of(&mut self, port: PortId) {
        let error = self.aborted_call_error(Some(port));
        let servers = self.objects.threads_where(|entry| entry.serves == Some(port) && entry.serving.is_some());
        for thread in servers {
            self.abandon_client(thread, error);
        }
    }

    /// Keep `port`, whose owner is dying, for the owner's next instance:
    /// its owner's server threads no longer serve it (clients queued for
    /// them make their calls again, and wait), its free activations go,
    /// and until a new instance adopts it, it is charged to nobody.
    pub(crate) fn keep_port(&mut self, port: PortId) {
        let Some(entry) = self.objects.port_mut(port) else { return };
        let owner = entry.owner;
        entry.generation = entry.generation.wrapping_add(1);
        entry.owner = DomainId(0);
        // A handle promised the instance it was bound to.
        self.stale_handles(|stale| stale == port);
        self.release_domain(owner, Resource::Ports, 1);
        let servers = self.objects.threads_where(|entry| entry.serves == Some(port));
        for thread in servers {
            if let Some(entry) = self.objects.thread_mut(thread) {
                entry.serves = None;
            }
        }
        self.objects.clear_receivers(port);
        if let Some(entry) = self.objects.port_mut(port) {
            entry.server_threads = 0;
        }
        self.requeue_senders(port);
        self.remove_free_activations(port);
    }

    /// Dead domain `old` is restarted: a new instance of its server, to
    /// adopt `ports` (kept, in the order they were made), started on a
    /// thread nobody joins. If none can be made, the ports die.
    pub(crate) fn restart(&mut self, old: DomainId, ports: Vec<PortId>) {
        let now = self.machine.counter();
        let Some(record) = self.domain(old) else { return };
        let (spec, policy, argument) = (record.spec, record.restart, record.start_argument);
        let window = policy.window();
        let mut restarts: Vec<u64> =
            record.restarts.iter().copied().filter(|&at| now.saturating_sub(at) < window).collect();
        restarts.push(now);
        let skip = restarts.len().saturating_sub(RESTARTS_KEPT);
        restarts.drain(..skip);
        self.reap_detached();
        let started = self.create_domain(spec).map_err(|_| ()).and_then(|new| {
            if let Some(record) = self.domain_mut(new) {
                record.restart = policy;
                record.restarts = restarts;
                record.adopt = ports.iter().copied().collect();
            }
            match self.start_domain(new, argument) {
                Ok(thread) => {
                    if let Some(entry) = self.objects.thread_mut(thread) {
                        entry.detached = true;
                    }
                    if let Some(record) = self.domain_mut(new) {
                        record.starter = Some(thread);
                    }
                    Ok(())
                }
                Err(_) => {
                    if let Some(record) = self.domain_mut(new) {
                        record.adopt.clear();
                        record.restart = RestartPolicy::Never;
                    }
                    self.kill_domain(new, false);
                    Err(())
                }
            }
        });
        match started {
            Ok(()) => self.counts().restarts += 1,
            Err(()) => {
                for port in ports {
                    self.destroy_port(port);
                }
            }
        }
    }

    /// The first kept port waiting for restarted domain `domain` to adopt
    /// it: now its port, under a new receive name (charged like a new
    /// port; `OverQuota` with nothing changed if it cannot be). `None` if
    /// none waits.
    pub(crate) fn adopt_port(&mut self, domain: DomainId, idempotent: bool) -> Option<Result<u32, Error>> {
        let record = self.domain(domain)?;
        let port = *record.adopt.front()?;
        if !record.account.fits(Resource::Ports, 1) || !record.account.fits(Resource::Rights, 1) {
            return Some(Err(Error::OverQuota));
        }
        // Point of no return.
        let _ = self.charge_domain(domain, Resource::Ports, 1);
        let _ = self.charge_domain(domain, Resource::Rights, 1);
        if let Some(entry) = self.objects.port_mut(port) {
            entry.owner = domain;
            entry.restarting = false;
            entry.idempotent = idempotent;
        }
        let record = self.domain_mut(domain)?;
        record.adopt.pop_front();
        Some(Ok(record.space.insert(Capability { port, receive: true })))
    }

    /// `thread` ends: if it ran a restarted domain's start, the kept
    /// ports that domain has not adopted die (nothing will adopt them).
    pub(crate) fn start_ended(&mut self, thread: ThreadId) {
        let Some(index) = self.domains.iter().position(|record| record.starter == Some(thread)) else { return };
        let ports: Vec<PortId> = match self.domains.get_mut(index) {
            Some(record) => {
                record.starter = None;
                record.adopt.drain(..).collect()
            }
            None => return,
        };
        for port in ports {
            self.destroy_port(port);
        }
    }

    /// Forget detached threads — the starts of restarted domains, and
    /// threads joined (through the thread their base moved to) before
    /// their own part ended — that have ended and that the machine has
    /// left. Cheap when there are none: called before a thread is made.
    pub fn reap_detached(&mut self) {
        if self.detached_ended.is_empty() {
            return;
        }
        let current = self.current();
        let ended: Vec<ThreadId> = self.detached_ended.iter().copied().filter(|&thread| thread != current).collect();
        self.detached_ended.retain(|&thread| thread == current);
        for thread in ended {
            self.reap(thread);
        }
    }

    /// The generation of the port `name` names in `domain`'s space: how
    /// many times its server has been restarted under it.
    pub fn port_generation(&self, domain: DomainId, name: u32) -> Option<u32> {
        let port = self.domain(domain)?.space.lookup(name)?.port;
        self.objects.port(port).map(|entry| entry.generation)
    }

    /// `PortGeneration`: x0 a port name the caller holds.
    pub fn port_generation_call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let port = self.right(caller.domain, crate::rpc::port_name(frame, 0)?)?.port;
        let generation = self.objects.port(port).map_or(0, |entry| entry.generation);
        Ok(Next::Reply(generation as usize))
    }
}

#[cfg(test)]
mod tests {
    use crate::abi::RestartPolicy;

    #[test]
    fn a_policy_counts_restarts_in_its_window() {
        let policy = RestartPolicy::OnFault { limit: 2, window: 100 };
        assert!(policy.allows(true, &[], 1000));
        assert!(policy.allows(true, &[950], 1000));
        assert!(!policy.allows(true, &[950, 990], 1000), "two in the last 100 ticks");
        assert!(policy.allows(true, &[850, 990], 1000), "one of them is out of the window");
        assert!(!policy.allows(false, &[], 1000), "a termination is no fault");
        let always = RestartPolicy::Always { limit: 1, window: 10 };
        assert!(always.allows(false, &[], 5) && !always.allows(true, &[0], 5));
        assert!(RestartPolicy::Always { limit: 0, window: 0 }.allows(false, &[1, 2, 3], 4), "0: no limit");
        assert!(!RestartPolicy::Never.allows(true, &[], 0));
        assert_eq!(RestartPolicy::from_code(3, 0, 0), None);
    }
}
