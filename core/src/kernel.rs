//! The kernel's state, and what every kernel call answers with.
//!
//! One structure, [`Kernel`], holds everything the kernel knows: the
//! threads, activations and ports ([`Objects`]), the run queue, the
//! domains and their names, the lends in flight — and the [`Machine`] it
//! runs on, which keeps the processor's own state (the thread on it, the
//! last charge) and the arch side of each thread. The machine reaches the
//! structure through one lock, with interrupts masked; nothing here locks
//! or masks anything.
//!
//! Every kernel call has one shape, `fn(&mut Kernel<M>, Caller, &mut
//! M::Frame) -> Result<Next<M::Switch>, Error>` (see `syscall`): it checks
//! everything, then acts, and says what runs next. An error goes back to
//! the caller in the frame, written once, by the dispatcher.
//!
//! The modules above this one add the kernel's behaviour to this
//! structure, in layers: `scheduler` (threads on the processor), `domains`
//! (domains, their memory and views), `rpc` (the two RPC models), `control`
//! (activation control and the check on the way back into a domain),
//! `syscall` (the call table). Below it: the objects (`thread`, `chain`,
//! `capability`, `domain`, `lend`, `schedule`) and the ABI.

use crate::abi::{DomainMode, Error};
use crate::capability::{Capability, NAME_SERVICE_NAME, PortId};
use crate::domain::{DomainId, DomainRecord, SharedImage};
use crate::frame::PhysRange;
use crate::lend::Ledger;
use crate::machine::{Machine, Published, RpcStatistics};
use crate::quota::Resource;
use crate::schedule::RunQueue;
use crate::thread::{ActivationId, Objects, ThreadId, ThreadState};
use alloc::string::String;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// Who made a kernel call: the current thread, its top activation, and
/// that activation's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The thread.
    pub thread: ThreadId,
    /// Its top activation, which made the call.
    pub activation: ActivationId,
    /// The activation's domain.
    pub domain: DomainId,
}

/// What runs next, once a kernel call is done.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<S> {
    /// The caller, with this value as the call's result.
    Reply(usize),
    /// The current thread, from its frame as the call left it (rewritten
    /// for a migration: it goes on in another activation).
    Resume,
    /// Another thread, by this switch; the caller's frame is written by
    /// whoever wakes it (or was written already).
    Switch(S),
    /// The most urgent ready thread: the caller waits (its state says for
    /// what), and its frame is written by whoever wakes it.
    Block,
    /// As [`Next::Block`], and once woken the caller makes the same call
    /// again — unless an alert ended the wait, which wrote `Interrupted`.
    BlockThenRepeat,
    /// The upcall that entered the caller's activation ends with this
    /// value.
    ExitUpcall(usize),
    /// The current thread ends with this result.
    EndThread(usize),
}

/// What a kernel call answers: what runs next, or the error for the
/// caller. Every kernel call is a `fn(&mut Kernel<M>, Caller, &mut
/// M::Frame) -> KernelCall<M>` (see `syscall`).
pub type KernelCall<M> = Result<Next<<M as Machine>::Switch>, Error>;

/// What the kernel needs of the in-kernel-server layer (`tern-inks`).
///
/// That layer sits *above* the kernel (it depends on it), so the kernel
/// cannot call it by name: an image hands it to the kernel when it makes
/// the kernel ([`Kernel::new`]; `tern_inks::layer`).
pub struct ServerLayer<M: Machine> {
    /// Where every upcall into a domain starts (the gate's upcall
    /// trampoline, which runs the domain's entry and ends the upcall).
    pub upcall_entry: u64,
    /// The gate's dispatch trampoline in its protected and its merged
    /// form: a pool activation entering at one moves to the other when its
    /// domain changes mode (other entries stay as they are).
    pub dispatch_entries: [u64; 2],
    /// The gate's register trampoline: where the trapping fast path of
    /// `CallBoundWords` enters an activation whose entry is the protected
    /// dispatch trampoline, with the request in registers
    /// ([`ServerLayer::register_entry`]).
    pub dispatch_register_entry: u64,
    /// The entries a bound handle's published record leads to, by
    /// [`crate::handle::BoundPath`] (stale, trap, direct, merged): for a
    /// message in memory, for one in registers (a reply too long for them
    /// into the caller's buffer), and for one in registers both ways (no
    /// buffer: `Handle::call_words`).
    pub bound_entries: [[u64; 3]; 4],
    /// Where a `CallBoundWords` made with no reply buffer resumes when the
    /// general path takes it (`Kernel::call_bound_words`): the gate's code
    /// that takes the reply from the frame the kernel made on the caller's
    /// stack into registers, pops the frame and returns to x30. The
    /// instruction before it is an `svc #0`, so that a call made again
    /// from its saved state (`UserFrame::repeat_call`) is the `CallBound`
    /// the kernel turned it into.
    pub bound_words_general: u64,
    /// The merge transition: move a domain into a mode (`Busy`, with
    /// nothing changed, while one of its activations is occupied).
    pub set_mode: fn(&mut Kernel<M>, DomainId, DomainMode) -> Result<(), Error>,
}

impl<M: Machine> ServerLayer<M> {
    /// The entry an activation of a domain in `mode` should have, given its
    /// current one.
    pub fn entry_for_mode(&self, entry: u64, mode: DomainMode) -> u64 {
        let [protected, merged] = self.dispatch_entries;
        match mode {
            DomainMode::Merged if entry == protected => merged,
            DomainMode::Protected if entry == merged => protected,
            _ => entry,
        }
    }

    /// The register entry of an activation entering at `entry`
    /// (`Activation::register_entry`): the register trampoline for the
    /// protected dispatch trampoline, 0 for any other entry.
    pub fn register_entry(&self, entry: u64) -> u64 {
        if entry == self.dispatch_entries[0] { self.dispatch_register_entry } else { 0 }
    }
}

/// The kernel: its state, on a machine.
pub struct Kernel<M: Machine> {
    /// The machine it runs on.
    pub machine: M,
    /// The in-kernel-server layer above it.
    pub servers: ServerLayer<M>,
    /// Threads, activations, ports.
    pub objects: Objects,
    /// Ready threads.
    pub run_queue: RunQueue<ThreadId>,
    /// Domains, indexed by `DomainId - 1`.
    pub domains: Vec<DomainRecord>,
    /// Domain names.
    pub domain_names: HashMap<&'static str, DomainId>,
    /// Detached threads that have ended, to forget once the machine has
    /// left them (`Kernel::reap_detached`).
    pub detached_ended: Vec<ThreadId>,
    /// The name service's port, once the name-service domain made it.
    pub name_service: Option<PortId>,
    /// The domain arena: every domain's region is a slot of it.
    pub arena: PhysRange,
    /// What every domain may read.
    pub image: SharedImage,
    /// The client pages lent into protected servers' views by calls in
    /// flight.
    pub lends: Ledger,
    /// Domains `tern.merge` asks to merge once started.
    pub merge_at_start: Vec<String>,
    /// Console input waiting for the console domain (`crate::console`).
    pub console: crate::input::ConsoleInput,
    /// A domain record may have changed since the fast paths' view of them
    /// was last published.
    domains_changed: bool,
}

impl<M: Machine> Kernel<M> {
    /// A kernel with no domains on `machine`, below `servers`, whose
    /// domains live in `arena` and may read `image`; the thread running
    /// now (on the boot stack) becomes its first thread.
    pub fn new(
        machine: M,
        servers: ServerLayer<M>,
        arena: PhysRange,
        image: SharedImage,
        merge_at_start: Vec<String>,
    ) -> Self {
        let mut kernel = Kernel {
            machine,
            servers,
            objects: Objects::new(),
            run_queue: RunQueue::new(),
            domains: Vec::new(),
            domain_names: HashMap::new(),
            detached_ended: Vec::new(),
            name_service: None,
            arena,
            image,
            lends: Ledger::new(),
            merge_at_start,
            console: crate::input::ConsoleInput::new(),
            domains_changed: true,
        };
        let boot = kernel.objects.new_thread(0, DomainId(0));
        let context = kernel.machine.adopt_thread(boot);
        if let Some(thread) = kernel.objects.thread_mut(boot) {
            thread.state = ThreadState::Running;
            thread.kernel_context = context;
        }
        let now = kernel.machine.counter();
        *kernel.machine.cpu_mut() = crate::machine::Cpu { current: boot, charged_at: now };
        kernel
    }

    /// The thread on the processor.
    pub fn current(&self) -> ThreadId {
        self.machine.cpu().current
    }

    /// What the RPC paths did, fast paths and general path together: the
    /// fast paths' per-port counts are folded in first
    /// (`Port::take_fast_counts`), so
    /// every reader sees exact figures. For readers (its cost grows with
    /// the ports); the general path counts through `counts`.
    pub fn statistics(&mut self) -> &mut RpcStatistics {
        let statistics = self.machine.statistics();
        for port in self.objects.ports_mut() {
            fold(statistics, port.take_fast_counts());
        }
        statistics
    }

    /// The statistics as they are, without the fold: what the general path
    /// counts into (an increment must not walk the ports).
    pub(crate) fn counts(&mut self) -> &mut RpcStatistics {
        self.machine.statistics()
    }

    /// Calls served by domain `id`: those routed to each port it owns, and
    /// to the ports it owned that are gone (`DomainRecord::served_by_gone_ports`),
    /// so the figure never goes down while the domain lives. 0 for no such
    /// domain.
    pub fn calls_served(&self, id: DomainId) -> u64 {
        let Some(record) = self.domain(id) else { return 0 };
        let ports = self.objects.port_ids().filter_map(|port| self.objects.port(port));
        record.served_by_gone_ports
            + ports.filter(|port| port.owner == id).map(crate::thread::Port::calls_served).sum::<u64>()
    }

    /// Forget port `port` (dead, with no activation left): its fast-path
    /// counts are folded into the statistics first and its calls served
    /// credited to its owner, so neither figure loses them.
    pub(crate) fn forget_port(&mut self, port: PortId) -> Option<crate::thread::Port> {
        let mut entry = self.objects.remove_port(port)?;
        // Its record is freed: the fast paths' copies of the handles' port
        // records are written again before any domain runs
        // (`handle::port_records`; no live handle names it, this makes
        // sure no copy does either).
        self.domains_changed = true;
        fold(self.machine.statistics(), entry.take_fast_counts());
        if let Some(record) = self.domain_mut(entry.owner) {
            record.served_by_gone_ports += entry.served;
        }
        Some(entry)
    }

    /// A domain's record.
    pub fn domain(&self, id: DomainId) -> Option<&DomainRecord> {
        self.domains.get((id.0 as usize).checked_sub(1)?)
    }

    /// A domain's record, to change.
    pub fn domain_mut(&mut self, id: DomainId) -> Option<&mut DomainRecord> {
        self.domains_changed = true;
        self.domains.get_mut((id.0 as usize).checked_sub(1)?)
    }

    /// Every domain's record, to change.
    pub fn domains_mut(&mut self) -> &mut [DomainRecord] {
        self.domains_changed = true;
        &mut self.domains
    }

    /// The domain called `name`, if one has been created.
    pub fn find_domain(&self, name: &str) -> Option<DomainId> {
        self.domain_names.get(name).copied()
    }

    /// A domain's mode (protected if there is no such domain).
    pub fn mode_of(&self, id: DomainId) -> DomainMode {
        self.domain(id).map_or(DomainMode::Protected, |record| record.mode)
    }

    /// Whether `domain` is part of the kernel domain (merged): the
    /// kernel's own rights are its.
    pub fn is_kernel_domain(&self, domain: DomainId) -> bool {
        self.mode_of(domain).is_merged()
    }

    /// The domain the current thread runs in (its top activation's), or
    /// `None` when it runs only in the kernel.
    pub fn current_domain(&self) -> Option<DomainId> {
        let top = self.objects.thread(self.current())?.top?;
        Some(self.objects.activation(top)?.domain)
    }

    /// Who is making a kernel call: `NotInCall` for a thread with no
    /// activation (which cannot make one).
    pub fn caller(&self) -> Result<Caller, Error> {
        let thread = self.current();
        let activation = self.objects.thread(thread).and_then(|entry| entry.top).ok_or(Error::NotInCall)?;
        let domain = self.objects.activation(activation).ok_or(Error::NotInCall)?.domain;
        Ok(Caller { thread, activation, domain })
    }

    /// What `domain` holds under `name`: `NoSuchPort` for a name that names
    /// nothing; `PortDead` for a dead name (whose port was destroyed),
    /// which frees it: its holder now knows.
    pub fn right(&mut self, domain: DomainId, name: u32) -> Result<Capability, Error> {
        let record = self.domain(domain).ok_or(Error::BadAddress)?;
        if let Some(capability) = record.space.lookup(name) {
            return Ok(capability);
        }
        if !record.space.is_dead(name) {
            return Err(Error::NoSuchPort);
        }
        if let Some(record) = self.domain_mut(domain) {
            record.space.forget_dead(name);
            // The name service's name was charged to nobody (`quota`).
            if name != NAME_SERVICE_NAME {
                record.account.release(Resource::Rights, 1);
            }
        }
        Err(Error::PortDead)
    }

    /// The port `domain` holds a receive right to under `name`: as
    /// [`Kernel::right`], and `NoRight` for a send right.
    pub fn receive_right(&mut self, domain: DomainId, name: u32) -> Result<PortId, Error> {
        let capability = self.right(domain, name)?;
        if capability.receive { Ok(capability.port) } else { Err(Error::NoRight) }
    }

    /// Give `to` a send right to the port `from` calls `name` (a kernel
    /// bootstrap, for wiring domains together without the name service);
    /// `to`'s name for it.
    pub fn grant_send_right(&mut self, from: DomainId, name: u32, to: DomainId) -> Option<u32> {
        let port = self.domain(from)?.space.lookup(name)?.port;
        let record = self.domain_mut(to)?;
        if record.space.name_of(port).is_none() {
            record.account.charge(Resource::Rights, 1).ok()?;
        }
        Some(record.space.insert(Capability { port, receive: false }))
    }

    /// The view `domain` runs in (the kernel's for none).
    pub fn view_of(&self, domain: DomainId) -> u64 {
        self.domain(domain).map_or(self.machine.kernel_view(), |record| record.domain.view)
    }

    /// The view the current thread runs in: its top activation's (for a
    /// merged domain's activation, the view of the call that entered it),
    /// or the kernel's.
    pub fn current_view(&self) -> u64 {
        let top = self.objects.thread(self.current()).and_then(|thread| thread.top);
        top.and_then(|top| self.objects.activation(top)).map_or(self.machine.kernel_view(), |entry| entry.view)
    }

    /// Make an activation of `domain` (see `Objects::new_activation`),
    /// recording what upcalls into it need of its domain: the view it runs
    /// in, the state its mode enters with, the entry its mode uses, the
    /// context word.
    pub fn new_activation(
        &mut self,
        domain: DomainId,
        port: Option<PortId>,
        entry: u64,
        stack_top: u64,
        stack_size: u64,
    ) -> ActivationId {
        let view = self.view_of(domain);
        let (mode, context) =
            self.domain(domain).map_or((DomainMode::Protected, 0), |record| (record.mode, record.context as u64));
        let entry = self.servers.entry_for_mode(entry, mode);
        let activation = self.objects.new_activation(domain, port, entry, stack_top, stack_size);
        if let Some(made) = self.objects.activation_mut(activation) {
            made.view = view;
            made.entry_pstate = M::entry_state(mode);
            made.register_entry = self.servers.register_entry(entry);
            made.context = context;
        }
        activation
    }

    /// Whether `count` stacks of `bytes` each fit in what is left of
    /// `domain`'s region for stacks (the check before carving them).
    pub fn stacks_fit(&self, domain: DomainId, count: u64, bytes: u64) -> bool {
        let Some(record) = self.domain(domain) else { return false };
        let room = record.stack_floor.saturating_sub(record.domain.region.start + crate::board::REGION_STACKS_OFFSET);
        bytes.checked_add(15).and_then(|rounded| (rounded & !15).checked_mul(count)).is_some_and(|need| need <= room)
    }

    /// Carve a stack of `bytes` (rounded up to 16) from `domain`'s region,
    /// below its heap's end; its top address. `None` (nothing carved) if it
    /// does not fit.
    pub fn carve_stack(&mut self, domain: DomainId, bytes: u64) -> Option<u64> {
        if !self.stacks_fit(domain, 1, bytes) {
            return None;
        }
        let record = self.domain_mut(domain)?;
        let top = record.stack_floor;
        record.stack_floor = top - ((bytes + 15) & !15);
        Some(top)
    }

    /// Copy `bytes` out to `domain`'s memory at `address`, once the
    /// domain's record says it may write there (`BadAddress`, with
    /// nothing written, if not).
    pub fn copy_out(&mut self, domain: DomainId, address: usize, bytes: &[u8]) -> Result<(), Error> {
        let record = self.domain(domain).ok_or(Error::BadAddress)?;
        let checked = record.domain.check_writable(crate::domain::UserRange::new(address, bytes.len()))?;
        self.machine.write(checked.address, bytes);
        Ok(())
    }

    /// Remember where the current thread's frame is, so whoever wakes it
    /// can write its results there.
    pub fn register_frame(&mut self, frame: &mut M::Frame) {
        let current = self.current();
        if let Some(thread) = self.objects.thread_mut(current) {
            thread.frame = frame as *mut M::Frame as u64;
        }
    }

    /// The frame of `thread`, blocked in a kernel call (or parked at a
    /// user boundary).
    pub fn blocked_frame(&mut self, thread: ThreadId) -> Option<&mut M::Frame> {
        let address = self.objects.thread(thread)?.frame as usize;
        // SAFETY: a thread's `frame` is the frame the machine gave the
        // kernel when the thread entered the kernel call it is blocked in
        // (or was parked at a boundary with), recorded by
        // `register_frame`; the machine keeps it where it is until the
        // thread runs again, and nothing else refers to it meanwhile. The
        // borrow of the kernel keeps a second reference from being made.
        (address != 0).then(|| unsafe { &mut *(address as *mut M::Frame) })
    }

    /// Charge `domain` for `count` of `resource` (`OverQuota`, with
    /// nothing charged, if they do not fit). The kernel itself (domain 0)
    /// is charged nothing.
    pub fn charge_domain(&mut self, domain: DomainId, resource: Resource, count: u32) -> Result<(), Error> {
        match self.domains.get_mut((domain.0 as usize).wrapping_sub(1)) {
            Some(record) => record.account.charge(resource, count),
            None => Ok(()),
        }
    }

    /// Whether `count` more of `resource` fit `domain`'s quota.
    pub fn fits_quota(&self, domain: DomainId, resource: Resource, count: u32) -> bool {
        self.domain(domain).is_none_or(|record| record.account.fits(resource, count))
    }

    /// Give back `count` of `resource` to `domain`'s account.
    pub fn release_domain(&mut self, domain: DomainId, resource: Resource, count: u32) {
        if let Some(record) = self.domains.get_mut((domain.0 as usize).wrapping_sub(1)) {
            record.account.release(resource, count);
        }
    }

    /// Move domain `id` into `mode` (the in-kernel-server layer's
    /// transition: `Busy` while one of its activations is occupied).
    pub fn set_mode(&mut self, id: DomainId, mode: DomainMode) -> Result<(), Error> {
        let transition = self.servers.set_mode;
        transition(self, id, mode)?;
        // Bound handles: to its ports, stale (their clients bind again and
        // get the path for the new pair); its own, the path for the new pair.
        self.stale_handles_to(id);
        self.republish_handles(id);
        Ok(())
    }

    /// Hand the machine what its fast paths read (after every change of
    /// the kernel state, before any domain runs).
    #[inline]
    pub fn publish(&mut self) {
        let domains_changed = core::mem::take(&mut self.domains_changed);
        self.machine.publish(Published { objects: &self.objects, domains: &self.domains, domains_changed });
    }
}

/// Add a port's fast-path counts (`Port::take_fast_counts`: migrated,
/// direct, handed off) to the machine-wide statistics.
fn fold(statistics: &mut RpcStatistics, [migrated, direct, handed_off]: [u64; 3]) {
    statistics.migrated += migrated;
    statistics.direct += direct;
    statistics.handed_off += handed_off;
}
