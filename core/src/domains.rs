//! Protection domains: creation, termination, and lending memory into
//! their views.
//!
//! Creating a domain takes the next slot ([`DOMAIN_REGION`] bytes) of the
//! board's domain arena; the machine zeroes it (nothing of an earlier
//! tenant leaks), puts the domain's heap at its start and builds its view
//! (the kernel's, plus the region for the domain's code, tagged with the
//! domain's number as its ASID). The domain gets an empty capability space
//! (plus the name service at name 0, once there is one) and a main stack
//! carved from the top of its region; further stacks are carved below it
//! on request.
//!
//! A domain that faults (or that domain control terminates) is marked
//! dead: no upcall or call enters it again, its ports die and its name is
//! free for a new domain. Its slot — number, ASID, region — is reused by a
//! later `create_domain` once nothing is left of it: no activation of it
//! (occupied ones go as their threads unwind out of it), no port it owns
//! (busy activations keep a destroyed port until their calls end), and
//! no thread it made but ended ones, which nobody can join now and which
//! go then. Reuse unmaps the region from every other view (all of it if
//! the domain died merged; else the emptied tables its lends left), frees
//! its view's tables and drops its ASID's TLB entries
//! (`Machine::drop_domain_view`) before the new tenant's view is built and
//! its region zeroed. Numbers are reused as thread numbers are: the kernel
//! domain, the only one that names domains by number, must not keep a
//! dead domain's.
//!
//! Region layout: the first word is the domain's mode word (the
//! in-kernel-server layer writes it, the service gate reads it:
//! `REGION_MODE_OFFSET`); the domain's heap from `REGION_HEAP_OFFSET`;
//! stacks from `REGION_STACKS_OFFSET` to the end.
//!
//! Lending: a call that lends part of the client's memory to a protected
//! server maps the pages covering it into the server's view for the call;
//! the [`Ledger`](crate::lend::Ledger) counts lends in flight so that two
//! calls may lend the same page, and says what each start or end changes,
//! which the machine carries out.

use crate::abi::{DomainMode, Error};
use crate::board::DOMAIN_REGION;
use crate::capability::PortId;
use crate::capability::{Capability, CapabilitySpace, NAME_SERVICE_NAME};
use crate::domain::DomainRecord;
use crate::domain::{Domain, DomainId, DomainSpec};
use crate::frame::PhysRange;
use crate::kernel::Kernel;
use crate::lend::PageChange;
use crate::machine::{Machine, UserFrame};
use crate::quota::Resource;
use crate::thread::ThreadState;
use alloc::vec::Vec;

/// The stack of a domain's main activation (upcalls from the kernel).
pub const MAIN_STACK: u64 = 64 << 10;

/// Why a domain could not be created or entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// All arena slots are taken.
    ArenaFull,
    /// No frames for the domain's tables, or no room for a stack.
    OutOfMemory,
    /// No such domain.
    NoSuchDomain,
    /// The domain has been terminated.
    Terminated,
    /// A domain of that name exists already.
    NameTaken,
}

impl<M: Machine> Kernel<M> {
    /// Create a protected domain for `spec`.
    pub fn create_domain(&mut self, spec: &'static DomainSpec) -> Result<DomainId, DomainError> {
        if self.domain_names.contains_key(spec.name) {
            return Err(DomainError::NameTaken);
        }
        let index = match (0..self.domains.len()).find(|&index| self.reclaim(index)) {
            Some(index) => index,
            None => self.domains.len(),
        };
        let start = self.arena.start + index as u64 * DOMAIN_REGION;
        if start + DOMAIN_REGION > self.arena.end || index >= usize::from(u16::MAX) {
            return Err(DomainError::ArenaFull);
        }
        let region = PhysRange::new(start, start + DOMAIN_REGION);
        let id = DomainId(index as u16 + 1);
        let view = self.machine.new_domain_view(region, id.0).map_err(|_| DomainError::OutOfMemory)?;
        let mut space = CapabilitySpace::new();
        if let Some(port) = self.name_service {
            space.install(NAME_SERVICE_NAME, Capability { port, receive: false });
        }
        let domain = Domain { id, name: spec.name, region, view };
        self.domains_mut();
        let record = DomainRecord {
            domain,
            spec,
            alive: true,
            space,
            handles: crate::binding::HandleTable::default(),
            context: 0,
            context_is_dispatch: false,
            mode: DomainMode::Protected,
            stack_floor: region.end,
            main_stack: 0,
            account: crate::quota::Account::default(),
            restart: crate::abi::RestartPolicy::Never,
            restarts: Vec::new(),
            start_argument: 0,
            adopt: alloc::collections::VecDeque::new(),
            starter: None,
            served_by_gone_ports: 0,
        };
        match self.domains.get_mut(index) {
            Some(slot) => *slot = record,
            None => self.domains.push(record),
        }
        let main_stack = self.carve_stack(id, MAIN_STACK).ok_or(DomainError::OutOfMemory)?;
        if let Some(record) = self.domain_mut(id) {
            record.main_stack = main_stack;
        }
        self.domain_names.insert(spec.name, id);
        Ok(id)
    }

    /// Reclaim now every dead domain's slot that is free (see the module's
    /// notes) rather than when a domain is next created, and forget the
    /// ended threads nobody will join (`Kernel::reap_detached`) rather
    /// than when a thread is next made; how many slots are empty.
    pub fn reclaim_dead_domains(&mut self) -> usize {
        self.reap_detached();
        (0..self.domains.len()).filter(|&index| self.reclaim(index)).count()
    }

    /// Whether the slot at `index` held a dead domain of which nothing is
    /// left, and is now empty (see the module's notes): its ended threads
    /// are forgotten, its region unmapped from every view if it died
    /// merged, its view dropped. Nothing changes if it is not free.
    fn reclaim(&mut self, index: usize) -> bool {
        let Some(record) = self.domains.get(index).filter(|record| !record.alive) else { return false };
        if record.domain.view == 0 {
            return true; // reclaimed before, and the creation then failed
        }
        let (id, view, region) = (record.domain.id, record.domain.view, record.domain.region);
        let objects = &self.objects;
        let current = self.current();
        let remains = objects.activation_ids().any(|a| objects.activation(a).is_some_and(|entry| entry.domain == id))
            || objects.port_ids().any(|port| objects.port(port).is_some_and(|entry| entry.owner == id))
            || objects.thread_ids().any(|thread| {
                objects.thread(thread).is_some_and(|entry| {
                    entry.creator == id && (thread == current || !matches!(entry.state, ThreadState::Ended(_)))
                })
            });
        if remains {
            return false;
        }
        let orphans = objects.threads_where(|entry| entry.creator == id);
        for thread in orphans {
            self.reap(thread);
        }
        // Out of every other view: all of it if it died merged; else the
        // tables that lends of its pages left there (emptied, kept for the
        // next lend, of which there will be none).
        let others = self.domains.iter().filter(|other| other.domain.id != id && other.domain.view != 0);
        let views: Vec<u64> =
            core::iter::once(self.machine.kernel_view()).chain(others.map(|other| other.domain.view)).collect();
        for other in views {
            // No page of it is lent now (no call it made is in flight), so
            // unmapping an aligned slot of the arena is never refused.
            let _ = self.machine.map_region(other, region, None);
        }
        self.machine.flush_translations();
        self.machine.drop_domain_view(view, region);
        if let Some(record) = self.domain_mut(id) {
            record.domain.view = 0;
            // Nothing of it stays on the kernel heap until the slot is
            // reused: its names (and what they were charged), its restart
            // times, the ports it was to adopt (none by now).
            record.space = CapabilitySpace::default();
            for resource in Resource::ALL {
                let used = record.account.used(resource);
                record.account.release(resource, used);
            }
            record.restarts = Vec::new();
            record.adopt = alloc::collections::VecDeque::new();
        }
        true
    }

    /// Where to upcall into domain `id`'s entry: its entry and main stack;
    /// `Terminated` for a dead domain.
    pub fn domain_entry(&self, id: DomainId) -> Result<(usize, u64), DomainError> {
        let record = self.domain(id).ok_or(DomainError::NoSuchDomain)?;
        if !record.alive {
            return Err(DomainError::Terminated);
        }
        Ok((record.spec.entry as usize, record.main_stack))
    }

    /// Terminate domain `id` (domain control, or the kernel's own code):
    /// see [`Kernel::kill_domain`]; it is restarted if its policy says
    /// `Always`.
    pub fn terminate_domain(&mut self, id: DomainId) -> usize {
        self.kill_domain(id, false)
    }

    /// Domain `id` dies (by a fault if `faulted`): it runs no more code.
    /// Every occupied activation of it is terminated (the thread splits:
    /// a caller whose call it was serving gets `CallAborted` — or
    /// `Restarted`, see below — at once, the part above carries on,
    /// alerted) — but for the current thread's, whose fault or call is
    /// being handled, and the boot thread's, which cannot be split: those
    /// are spliced out, so that the thread is unwound (its caller gets
    /// `Terminated`) when it comes back into them. Clients its server
    /// threads were serving get `CallAborted` (nobody will reply). Its
    /// ports die (callers waiting for a server retry and find the port
    /// dead; those queued for a server thread get `PortDead`) — unless
    /// its restart policy restarts it: then they wait for the new
    /// instance, which adopts them (`restart`), and calls it was serving
    /// on ports declared idempotent get `Restarted`. The threads it made
    /// that have ended are forgotten. How many activations were
    /// terminated or spliced.
    pub fn kill_domain(&mut self, id: DomainId, faulted: bool) -> usize {
        let restart = self.plans_restart(id, faulted);
        let Some(record) = self.domain_mut(id) else { return 0 };
        record.alive = false;
        record.handles.clear_all();
        let name = record.domain.name;
        // Its ports, and those kept for it to adopt that it has not yet.
        let unadopted = core::mem::take(&mut record.adopt);
        if self.domain_names.get(name) == Some(&id) {
            self.domain_names.remove(name);
        }
        let mut owned = self.ports_owned_by(id);
        owned.extend(unadopted);
        owned.sort_by_key(|&port| self.objects.port(port).map_or(0, |entry| entry.serial));
        if restart {
            for &port in &owned {
                if let Some(entry) = self.objects.port_mut(port) {
                    entry.restarting = true;
                }
            }
        }
        for &port in &owned {
            self.abandon_clients_of(port);
        }
        let occupied = self.objects.occupied_in(id);
        let mut ended = 0;
        for activation in occupied {
            let Some(entry) = self.objects.activation(activation) else { continue };
            let Some(thread) = entry.occupant else { continue };
            let error = self.aborted_call_error(entry.port);
            let here = thread == self.current() || !self.machine.owns_stack(thread);
            if here || self.terminate_activation(activation, thread, error).is_err() {
                self.objects.splice(activation);
            }
            ended += 1;
        }
        for &port in &owned {
            if restart {
                self.keep_port(port);
            } else {
                self.destroy_port(port);
            }
        }
        // Threads it made that have ended will never be joined now.
        let finished =
            self.objects.threads_where(|entry| entry.creator == id && matches!(entry.state, ThreadState::Ended(_)));
        for thread in finished {
            self.reap(thread);
        }
        if restart {
            self.restart(id, owned);
        }
        ended
    }

    /// Port `port` dies now (see `Call::PortDestroy`): callers waiting for
    /// one of its activations retry and find it dead; callers queued for
    /// one of its server threads get `PortDead`; its server threads waiting
    /// in receive get `PortDead`, those serving a client see the client's
    /// call aborted; every name for it becomes a dead name (so none names
    /// it any more, and its number may be reused once it is gone); its free
    /// activations go now, its busy ones when their calls end (`put_back`),
    /// and the port with the last of them.
    pub fn destroy_port(&mut self, port: PortId) {
        let Some(entry) = self.objects.port_mut(port) else { return };
        if !entry.alive && entry.pool_size == 0 {
            return;
        }
        entry.alive = false;
        entry.restarting = false;
        entry.server_threads = 0;
        self.stale_handles(|stale| stale == port);
        let Some(entry) = self.objects.port_mut(port) else { return };
        let mut waiting = Vec::new();
        let mut queued = Vec::new();
        while let Some(thread) = entry.next_waiter() {
            waiting.push(thread);
        }
        while let Some(thread) = entry.next_sender() {
            queued.push(thread);
        }
        let mut receivers = Vec::new();
        while let Some(thread) = self.objects.pop_receiver(port) {
            receivers.push(thread);
        }
        for thread in queued.iter().chain(&receivers) {
            if let Some(frame) = self.blocked_frame(*thread) {
                frame.set_result(Err(Error::PortDead));
            }
            if let Some(entry) = self.objects.thread_mut(*thread) {
                entry.pending = None;
                entry.set_reply_to(None);
                entry.set_receive_buffer(None);
            }
        }
        for thread in waiting.into_iter().chain(queued).chain(receivers) {
            self.wake(thread);
        }
        let servers = self.objects.threads_where(|entry| entry.serves == Some(port));
        for thread in servers {
            self.abandon_client(thread, Error::CallAborted);
            if let Some(entry) = self.objects.thread_mut(thread) {
                entry.serves = None;
            }
        }
        for thread in self.objects.thread_ids().collect::<Vec<_>>() {
            if let Some(entry) = self.objects.thread_mut(thread)
                && entry.sidetracked == Some(port)
            {
                entry.sidetracked = None;
            }
        }
        // Every name for it dies (still charged to its holder until the
        // holder learns of it, `Kernel::right`).
        for record in self.domains_mut() {
            record.space.kill_port(port);
        }
        if self.name_service == Some(port) {
            self.name_service = None;
        }
        self.remove_free_activations(port);
        let gone = self.objects.port(port).is_some_and(|entry| entry.pool_size == 0);
        if gone && let Some(entry) = self.forget_port(port) {
            self.release_domain(entry.owner, Resource::Ports, 1);
        }
    }

    /// `port`'s free activations go: its pool's and an unoccupied sidetrack
    /// activation (its owner is dying, or it is).
    pub(crate) fn remove_free_activations(&mut self, port: PortId) {
        let mut free = Vec::new();
        while let Some(activation) = self.objects.pool_take(port) {
            free.push(activation);
        }
        let sidetrack = self.objects.port_mut(port).and_then(|entry| entry.sidetrack.take());
        free.extend(
            sidetrack.filter(|&activation| {
                self.objects.activation(activation).is_some_and(|entry| entry.occupant.is_none())
            }),
        );
        for activation in free {
            self.remove_port_activation(port, activation);
        }
    }

    /// After domain `id` started: merge it if `tern.merge` names it. The
    /// domain's name and the outcome, if it was asked for.
    pub fn merge_if_asked(&mut self, id: DomainId) -> Option<(&'static str, Result<(), Error>)> {
        let record = self.domain(id)?;
        let name = record.spec.name;
        if record.mode.is_merged() || !self.merge_at_start.iter().any(|listed| listed == name) {
            return None;
        }
        Some((name, self.set_mode(id, DomainMode::Merged)))
    }

    /// A call lends `region` to protected domain `server`: map the pages
    /// covering it into the server's view, read-only or read-write when
    /// `writable`. Pages another call in flight lends it already are
    /// shared (a read-only one becomes writable while a writable lend
    /// covers it). `OutOfMemory`, with nothing changed, if a table for a
    /// page could not be made.
    pub fn lend_map(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Result<(), Error> {
        let view = self.domain(server).ok_or(Error::PortDead)?.domain.view;
        let Kernel { lends, machine, .. } = self;
        let mut changes = LendChanges { machine, view, unmapped: false, outcome: Ok(()) };
        lends.start(server, region, writable, |change| changes.apply(change));
        let outcome = changes.finish();
        if outcome.is_err() {
            self.lend_unmap(server, region, writable);
        }
        outcome
    }

    /// The call that lent `region` to `server` (as [`Kernel::lend_map`]
    /// was told) has ended or was aborted: forget it, unmapping the pages
    /// no other lend in flight covers (and making read-only again those
    /// only read-only lends still cover).
    pub fn lend_unmap(&mut self, server: DomainId, region: PhysRange, writable: bool) {
        let Some(view) = self.domain(server).map(|record| record.domain.view) else { return };
        let Kernel { lends, machine, .. } = self;
        let mut changes = LendChanges { machine, view, unmapped: false, outcome: Ok(()) };
        lends.end(server, region, writable, |change| changes.apply(change));
        // Unmapping and downgrading make no tables, so they cannot fail.
        let _ = changes.finish();
    }
}

/// A protected server's view while the changes a lend makes to it are
/// carried out by the machine.
struct LendChanges<'a, M: Machine> {
    machine: &'a mut M,
    view: u64,
    unmapped: bool,
    outcome: Result<(), Error>,
}

impl<M: Machine> LendChanges<'_, M> {
    fn apply(&mut self, change: PageChange) {
        self.unmapped |= matches!(change, PageChange::Unmap(_));
        if let Err(error) = self.machine.map_lent(self.view, change) {
            self.outcome = Err(error);
        }
    }

    fn finish(self) -> Result<(), Error> {
        self.machine.lent_done(self.view, self.unmapped);
        self.outcome
    }
}
