//! The kernel's state: one structure, one lock.
//!
//! Threads, activations, ports (in [`Objects`]), the run queue, the domain
//! table, and each thread's arch-side data (its kernel stack and saved
//! kernel context). Kernel code runs with IRQs masked on one core, so the
//! lock is never contended today; it is a lock anyway so that SMP can
//! split it later (per port and per thread) without changing callers.
//!
//! Rule: never switch threads while holding the lock — take what the
//! switch needs (two context pointers), drop the guard, then switch.

use crate::domains::DomainRecord;
use alloc::boxed::Box;
use alloc::vec::Vec;
use hashbrown::HashMap;
use tern_core::capability::PortId;
use tern_core::domain::{DomainId, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::schedule::RunQueue;
use tern_core::thread::{ActivationId, Objects, ThreadId};
use tern_inks::mode::DomainMode;

/// What a thread's kernel side needs saved while another thread runs.
#[repr(C)]
#[derive(Debug, Default)]
pub struct KernelContext {
    /// x19 to x30.
    pub registers: [u64; 12],
    /// The kernel stack pointer.
    pub stack_pointer: u64,
    /// d8 to d15.
    pub floating: [u64; 8],
    /// TPIDR_EL1: the thread's innermost upcall record.
    pub thread_pointer: u64,
}

/// Arch-side data of a thread (its trap frame's address lives in the
/// thread itself, `Thread::frame`, where the fast path reaches it).
#[derive(Debug)]
pub struct ThreadArch {
    /// Saved while not running (boxed: the switch keeps a raw pointer,
    /// also recorded in `Thread::kernel_context`).
    pub context: Box<KernelContext>,
    /// Its kernel stack (`None` for the boot thread, which uses the boot stack).
    pub kernel_stack: Option<PhysRange>,
}

/// Everything.
pub struct Kernel {
    /// Threads, activations, ports.
    pub objects: Objects,
    /// Ready threads.
    pub run_queue: RunQueue<ThreadId>,
    /// The thread on the processor.
    pub current: ThreadId,
    /// Counter value when the current thread was last charged.
    pub charged_at: u64,
    /// Domains, indexed by `DomainId - 1`.
    pub domains: Vec<DomainRecord>,
    /// Domain names.
    pub domain_names: HashMap<&'static str, DomainId>,
    /// Arch data of each thread, indexed by `ThreadId`.
    pub threads: Vec<Option<ThreadArch>>,
    /// The name service's port, once the `names` domain made it.
    pub name_service: Option<PortId>,
    /// The domain arena.
    pub arena: PhysRange,
    /// The kernel's view (TTBR0 value, ASID 0).
    pub kernel_view: u64,
    /// What every domain may read.
    pub image: SharedImage,
    /// `*const DomainFast` of each domain by number (0 unused), for the
    /// fast path.
    pub domain_table: Vec<usize>,
    /// A domain record may have changed since the fast path's blocks were
    /// refreshed (set by every mutable access to a record).
    pub domains_dirty: bool,
    /// Domains `tern.merge` asks to merge once started.
    pub merge_at_start: Vec<alloc::string::String>,
    /// The client pages lent into protected servers' views by calls in
    /// flight.
    pub lends: tern_core::lend::Ledger,
    /// Kernel stacks of ended threads, for the next threads made.
    pub spare_stacks: Vec<PhysRange>,
}

/// Counts of what the RPC paths did, for scenarios and the benchmark. One
/// copy, in the fast paths' block (`repr(C)`: the assembly counts into it
/// too); the general path reaches it through [`Kernel::statistics`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcStatistics {
    /// Calls that migrated into a pool activation, through a trap.
    pub migrated: u64,
    /// Calls that migrated into a merged pool activation from merged code
    /// without a trap (`tern_merged_call`).
    pub direct: u64,
    /// Calls handed to a waiting server thread.
    pub handed_off: u64,
    /// Calls queued behind busy server threads.
    pub queued: u64,
    /// Times a caller waited for a server (empty pool, no thread ready).
    pub waited: u64,
    /// Sidetrack upcalls made.
    pub sidetracks: u64,
    /// The longest activation chain seen.
    pub longest_chain: usize,
    /// Copies of a message with a payload (a header alone is not counted):
    /// the benchmark's copy count.
    pub payload_copies: u64,
    /// Lent regions mapped into a protected server's view (each taken
    /// out again when its call ends).
    pub lends_mapped: u64,
    /// Threads split in two by a termination or an alert-and-break.
    pub splits: u64,
}

/// The kernel state (present after boot).
pub static KERNEL: spin::Mutex<Option<Kernel>> = spin::Mutex::new(None);

/// Run `body` on the kernel state.
pub fn with<R>(body: impl FnOnce(&mut Kernel) -> R) -> R {
    crate::cpu::without_interrupts(|| {
        let mut guard = KERNEL.lock();
        let kernel = guard.as_mut().expect("kernel state used before boot");
        let result = body(kernel);
        crate::fastpath::refresh(kernel);
        result
    })
}

impl Kernel {
    /// What the RPC paths did, both the fast paths and the general path.
    pub fn statistics(&mut self) -> &mut RpcStatistics {
        crate::fastpath::statistics(self)
    }

    /// A domain's record.
    pub fn domain(&self, id: DomainId) -> Option<&DomainRecord> {
        self.domains.get((id.0 as usize).checked_sub(1)?)
    }

    /// A domain's record, to change.
    pub fn domain_mut(&mut self, id: DomainId) -> Option<&mut DomainRecord> {
        self.domains_dirty = true;
        self.domains.get_mut((id.0 as usize).checked_sub(1)?)
    }

    /// A thread's arch data.
    pub fn thread_arch(&mut self, id: ThreadId) -> Option<&mut ThreadArch> {
        self.threads.get_mut(id.get() as usize)?.as_mut()
    }

    /// The domain the current thread runs in (its top activation's), or
    /// `None` when it runs only in the kernel.
    pub fn current_domain(&self) -> Option<DomainId> {
        let top = self.objects.thread(self.current)?.top?;
        Some(self.objects.activation(top)?.domain)
    }

    /// The port `domain` holds a receive right to under `name`:
    /// `NoSuchPort` for a name that names nothing, `NoRight` for a send
    /// right.
    pub fn receive_right(&self, domain: DomainId, name: u32) -> Result<PortId, tern_core::abi::Error> {
        use tern_core::abi::Error;
        let capability = self.domain(domain).ok_or(Error::BadAddress)?.space.lookup(name).ok_or(Error::NoSuchPort)?;
        if capability.receive { Ok(capability.port) } else { Err(Error::NoRight) }
    }

    /// Give `to` a send right to the port `from` calls `name` (a kernel
    /// bootstrap, for scenarios that wire domains together without the
    /// name service); `to`'s name for it.
    pub fn grant_send_right(&mut self, from: DomainId, name: u32, to: DomainId) -> Option<u32> {
        let port = self.domain(from)?.space.lookup(name)?.port;
        Some(self.domain_mut(to)?.space.insert(tern_core::capability::Capability { port, receive: false }))
    }

    /// The view `domain` runs in (the kernel's for none).
    pub fn view_of(&self, domain: DomainId) -> u64 {
        self.domain(domain).map_or(self.kernel_view, |record| record.domain.translation_base())
    }

    /// Make an activation of `domain` (see `Objects::new_activation`),
    /// recording what upcalls into it need of its domain: the view it runs
    /// in, the PSTATE its mode enters with, the context word.
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
        let entry = crate::domains::entry_for_mode(entry, mode);
        let activation = self.objects.new_activation(domain, port, entry, stack_top, stack_size);
        if let Some(entry) = self.objects.activation_mut(activation) {
            entry.view = view;
            entry.entry_pstate = mode.entry_pstate();
            entry.context = context;
        }
        activation
    }

    /// The TTBR0 value for the current thread's domain (or the kernel's).
    pub fn current_view(&self) -> u64 {
        // The top activation's view: its domain's, or for a merged
        // domain's activation the view of the call that entered it.
        let top = self.objects.thread(self.current).and_then(|thread| thread.top);
        top.and_then(|top| self.objects.activation(top)).map_or(self.kernel_view, |activation| activation.view)
    }
}
