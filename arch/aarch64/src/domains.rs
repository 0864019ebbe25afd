//! Protection domains: creation, memory, and starting them.
//!
//! Creating a domain takes the next 8 MiB slot of the board's domain arena,
//! zeroes it (nothing of an earlier tenant leaks), puts the domain's heap
//! at its start, derives its view from the kernel's
//! ([`tern_core::paging::derive_view`]) and gives it the next ASID and an
//! empty capability space (plus the name service at name 0, once there is
//! one). Stacks for the domain's activations are carved from the top of
//! the region downwards, by the kernel, on request.
//!
//! A domain that faults is marked terminated: no upcall or call enters it
//! again, and its ports die. Its slot is not reused yet (a reused ASID
//! would need a TLB flush by ASID first; nothing needs reuse so far).
//!
//! Region layout: the first word is the domain's mode word (written by the
//! kernel, read by the service gate: `REGION_MODE_OFFSET`); `[start + 64,
//! start + 4 MiB)` the domain's heap (its first bytes hold the heap's own
//! bookkeeping, a `LockedHeap`); `[start + 4 MiB, end)` stacks.

use crate::memory::{self, IdentityTables};
use crate::state::{self, Kernel};
use crate::upcall::Outcome;
use tern_core::abi::Error;
use tern_core::board::{DOMAIN_REGION, REGION_HEAP_OFFSET, REGION_MODE_OFFSET};
use tern_core::capability::{Capability, CapabilitySpace, NAME_SERVICE_NAME};
use tern_core::domain::{Domain, DomainId, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::heap::LockedHeap;
use tern_core::lend::{LentAccess, PageChange};
use tern_core::paging;
use tern_inks::DomainSpec;
use tern_inks::mode::DomainMode;

/// Bytes at the start of a region given to the domain's heap.
pub const HEAP_BYTES: u64 = 4 << 20;
/// The stack of a domain's main activation (upcalls from the kernel).
pub const MAIN_STACK: u64 = 64 << 10;
/// The table address in a TTBR0 value (the ASID is in bits 48-63).
const ADDRESS_BITS: u64 = (1 << 48) - 1;

/// A domain and what the kernel knows about it.
pub struct DomainRecord {
    /// The domain itself.
    pub domain: Domain,
    /// What its server declared.
    pub spec: &'static DomainSpec,
    /// False once terminated.
    pub alive: bool,
    /// Its port names.
    pub space: CapabilitySpace,
    /// The word handed to its dispatch upcalls (copied into each of its
    /// activations).
    pub context: usize,
    /// Protected or merged into the kernel domain.
    pub mode: DomainMode,
    /// Stacks are carved below this address.
    pub stack_floor: u64,
    /// Its main stack's top (for upcalls from the kernel).
    pub main_stack: u64,
    /// What the RPC fast path reads of it (kept current by the state lock).
    pub fast: alloc::boxed::Box<crate::fastpath::DomainFast>,
}

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

/// The memory every domain may read.
pub fn shared_image() -> SharedImage {
    state::with(|kernel| kernel.image)
}

/// Carve a stack of `bytes` (rounded up to 16) from `domain`'s region;
/// its top address.
pub fn carve_stack(kernel: &mut Kernel, domain: DomainId, bytes: u64) -> Option<u64> {
    let bytes = bytes.checked_add(15)? & !15;
    let record = kernel.domain_mut(domain)?;
    let top = record.stack_floor;
    let bottom = top.checked_sub(bytes)?;
    if bottom < record.domain.region.start + HEAP_BYTES {
        return None;
    }
    record.stack_floor = bottom;
    Some(top)
}

/// Create a protected domain for `spec`.
pub fn create(spec: &'static DomainSpec) -> Result<DomainId, DomainError> {
    state::with(|kernel| {
        if kernel.domain_names.contains_key(spec.name) {
            return Err(DomainError::NameTaken);
        }
        let index = kernel.domains.len();
        let start = kernel.arena.start + index as u64 * DOMAIN_REGION;
        if start + DOMAIN_REGION > kernel.arena.end {
            return Err(DomainError::ArenaFull);
        }
        let region = PhysRange::new(start, start + DOMAIN_REGION);
        let table = {
            let mut frames = memory::FRAMES.lock();
            let frames = frames.as_mut().ok_or(DomainError::OutOfMemory)?;
            paging::derive_view(&mut IdentityTables(frames), kernel.kernel_view, region)
                .map_err(|_| DomainError::OutOfMemory)?
        };
        crate::cpu::publish_tables();
        let alias = memory::kernel_address(kernel.arena, start as usize);
        let id = DomainId(index as u16 + 1);
        let domain = Domain { id, name: spec.name, region, table };
        // SAFETY: the slot belongs to the arena, which the kernel reserved
        // at boot and maps (EL1 only) at its alias; no domain uses it yet.
        unsafe { core::ptr::write_bytes(alias as *mut u8, 0, DOMAIN_REGION as usize) };
        // The heap's bookkeeping holds the addresses the domain will use
        // (its identity addresses), so it is built through the domain's own
        // view, where those are mapped (read-write for EL1 as well).
        crate::cpu::switch_view(domain.translation_base());
        // SAFETY: the domain's view maps its whole region read-write; the
        // region is zeroed and unused; interrupts are masked (we hold the
        // kernel state), and the kernel's own mappings are in every view.
        unsafe {
            let heap = (start + REGION_HEAP_OFFSET) as *mut LockedHeap;
            heap.write(LockedHeap::empty());
            let bookkeeping = REGION_HEAP_OFFSET + core::mem::size_of::<LockedHeap>().next_multiple_of(64) as u64;
            (*heap).add_region((start + bookkeeping) as usize, (HEAP_BYTES - bookkeeping) as usize);
        }
        crate::cpu::switch_view(kernel.current_view());
        let mut space = CapabilitySpace::new();
        if let Some(port) = kernel.name_service {
            space.install(NAME_SERVICE_NAME, Capability { port, receive: false });
        }
        kernel.domains.push(DomainRecord {
            domain,
            spec,
            alive: true,
            space,
            context: 0,
            mode: DomainMode::Protected,
            stack_floor: region.end,
            main_stack: 0,
            fast: alloc::boxed::Box::default(),
        });
        let fast = kernel.domains.last().map_or(0, |record| &*record.fast as *const _ as usize);
        kernel.domain_table.push(fast);
        kernel.domains_dirty = true;
        let main_stack = carve_stack(kernel, id, MAIN_STACK).ok_or(DomainError::OutOfMemory)?;
        if let Some(record) = kernel.domain_mut(id) {
            record.main_stack = main_stack;
        }
        kernel.domain_names.insert(spec.name, id);
        Ok(id)
    })
}

/// Run `body` on the domain's record.
pub fn with<R>(id: DomainId, body: impl FnOnce(&mut DomainRecord) -> R) -> Option<R> {
    state::with(|kernel| kernel.domain_mut(id).map(body))
}

/// The domain called `name`, if one has been created.
pub fn find(name: &str) -> Option<DomainId> {
    state::with(|kernel| kernel.domain_names.get(name).copied())
}

/// Mark a domain terminated and its ports dead. Callers waiting on those
/// ports are woken: those waiting for a server retry and find the port
/// dead; those queued for a server thread get `PortDead`.
pub fn terminate(kernel: &mut Kernel, id: DomainId) {
    if let Some(record) = kernel.domain_mut(id) {
        record.alive = false;
    }
    let mut waiting = alloc::vec::Vec::new();
    let mut queued = alloc::vec::Vec::new();
    let owned: alloc::vec::Vec<_> =
        kernel.objects.port_ids().filter(|&port| kernel.objects.port(port).is_some_and(|p| p.owner == id)).collect();
    for port in owned {
        kernel.objects.pool_clear(port);
        if let Some(entry) = kernel.objects.port_mut(port) {
            entry.alive = false;
            entry.server_threads = 0;
            while let Some(thread) = entry.next_waiter() {
                waiting.push(thread);
            }
            while let Some(thread) = entry.next_sender() {
                queued.push(thread);
            }
        }
        kernel.objects.clear_receivers(port);
    }
    for thread in queued {
        if let Some(frame) = crate::rpc::blocked_frame(kernel, thread) {
            crate::rpc::write_result(frame, Err(tern_core::abi::Error::PortDead));
        }
        crate::threads::wake(kernel, thread);
    }
    for thread in waiting {
        crate::threads::wake(kernel, thread);
    }
}

/// Move domain `id` into `mode`.
///
/// Merging makes its region EL1-only and global and puts it into every
/// view — the kernel's and every other domain's — at the same addresses,
/// so every pointer its code holds stays valid; from then on upcalls into
/// it enter at EL1t. Unmerging takes the region out of the other views and
/// gives the domain its EL0 mapping back. Own view first unmapped, TLBs
/// flushed, then remapped (break-before-make: its entries change from
/// non-global to global or back).
///
/// `Busy` (nothing changed) while any of its activations is occupied: a
/// thread running or parked in it, or in a call it made. A call into it
/// that starts after the change sees the new mode.
pub fn set_mode(kernel: &mut Kernel, id: DomainId, mode: DomainMode) -> Result<(), Error> {
    let record = kernel.domain(id).filter(|record| record.alive).ok_or(Error::InvalidArgument)?;
    if record.mode == mode {
        return Ok(());
    }
    if kernel.objects.domain_occupied(id) {
        return Err(Error::Busy);
    }
    let (own, region) = (record.domain.table, record.domain.region);
    let others: alloc::vec::Vec<u64> = core::iter::once(kernel.kernel_view & ADDRESS_BITS)
        .chain(kernel.domains.iter().filter(|other| other.domain.id != id).map(|other| other.domain.table))
        .collect();
    {
        let mut frames = memory::FRAMES.lock();
        let frames = frames.as_mut().ok_or(Error::OutOfMemory)?;
        let mut tables = IdentityTables(frames);
        let (own_kind, others_kind) = match mode {
            DomainMode::Merged => (paging::Kind::MergedData, Some(paging::Kind::MergedData)),
            DomainMode::Protected => (paging::Kind::DomainData, None),
        };
        // The region is a 2 MiB-aligned slot of the arena, inside one
        // gigabyte, mapped by blocks: `remap` accepts it in every view; a
        // refusal would be a kernel bug, reported rather than half-done.
        paging::remap(&mut tables, own, region, None).map_err(|_| Error::OutOfMemory)?;
        crate::cpu::flush_translations();
        for &root in &others {
            paging::remap(&mut tables, root, region, others_kind).map_err(|_| Error::OutOfMemory)?;
        }
        paging::remap(&mut tables, own, region, Some(own_kind)).map_err(|_| Error::OutOfMemory)?;
    }
    crate::cpu::flush_translations();
    let own_view = kernel.view_of(id);
    for activation in kernel.objects.activations_of(id) {
        activation.entry_pstate = mode.entry_pstate();
        activation.entry = entry_for_mode(activation.entry, mode);
        // A merged activation runs in whichever view its caller ran in
        // (each call records it); back in protected mode, its own.
        activation.view = own_view;
    }
    let mode_word = memory::kernel_address(kernel.arena, (region.start + REGION_MODE_OFFSET) as usize);
    // SAFETY: the mode word is the first word of the domain's region, in
    // the arena the kernel reserved at boot and maps (EL1 only) at its
    // alias; an aligned word store, which the domain reads as a whole.
    unsafe { (mode_word as *mut u64).write_volatile(mode as u64) };
    if let Some(record) = kernel.domain_mut(id) {
        record.mode = mode;
    }
    Ok(())
}

/// The entry an activation of a domain in `mode` should have, given its
/// current one: the gate's dispatch trampoline has one form per mode (the
/// merged one ends the call with a direct kernel entry instead of `svc`);
/// any other entry stays as it is.
pub fn entry_for_mode(entry: u64, mode: DomainMode) -> u64 {
    let (protected, merged) =
        (tern_inks::gate::dispatch_trampoline() as u64, tern_inks::gate::dispatch_trampoline_merged() as u64);
    match mode {
        DomainMode::Merged if entry == protected => merged,
        DomainMode::Protected if entry == merged => protected,
        _ => entry,
    }
}

/// A call lends `region` to protected domain `server`: map the pages
/// covering it into the server's view, read-only or read-write when
/// `writable`. Pages another call in flight lends it already are shared
/// (counted in the kernel's [`tern_core::lend::Ledger`]; a read-only one
/// becomes writable while a writable lend covers it). `OutOfMemory`, with
/// nothing changed, if a table for a page could not be made.
pub fn lend_map(kernel: &mut Kernel, server: DomainId, region: PhysRange, writable: bool) -> Result<(), Error> {
    let mut view = LendView::of(kernel, server).ok_or(Error::PortDead)?;
    kernel.lends.start(server, region, writable, |change| view.apply(change));
    let outcome = view.finish();
    if outcome.is_err() {
        let mut view = LendView::of(kernel, server).ok_or(Error::PortDead)?;
        kernel.lends.end(server, region, writable, |change| view.apply(change));
        let _ = view.finish();
    }
    outcome
}

/// The call that lent `region` to `server` (as [`lend_map`] was told) has
/// ended or was aborted: forget it, unmapping the pages no other lend in
/// flight covers (and making read-only again those only read-only lends
/// still cover).
pub fn lend_unmap(kernel: &mut Kernel, server: DomainId, region: PhysRange, writable: bool) {
    let Some(mut view) = LendView::of(kernel, server) else { return };
    kernel.lends.end(server, region, writable, |change| view.apply(change));
    // Unmapping and downgrading make no tables, so they cannot fail.
    let _ = view.finish();
}

/// A protected server's view, while the changes a lend makes to it are
/// carried out: break before make for a page whose access changes, and a
/// flush of the server's ASID at the end once anything was unmapped (a new
/// mapping needs only to be visible to the table walk).
struct LendView {
    root: u64,
    asid: u16,
    flush: bool,
    outcome: Result<(), Error>,
}

impl LendView {
    fn of(kernel: &Kernel, server: DomainId) -> Option<LendView> {
        let record = kernel.domain(server)?;
        Some(LendView { root: record.domain.table, asid: record.domain.id.0, flush: false, outcome: Ok(()) })
    }

    fn apply(&mut self, change: PageChange) {
        let kind = |access| match access {
            LentAccess::ReadOnly => paging::Kind::LentReadOnly,
            LentAccess::ReadWrite => paging::Kind::LentReadWrite,
        };
        let mut frames = memory::FRAMES.lock();
        let Some(frames) = frames.as_mut() else {
            self.outcome = Err(Error::OutOfMemory);
            return;
        };
        let mut tables = IdentityTables(frames);
        let mapped = match change {
            PageChange::Map(pages, access) => paging::map_pages(&mut tables, self.root, pages, kind(access)),
            PageChange::Unmap(pages) => {
                paging::unmap_pages(&mut tables, self.root, pages);
                self.flush = true;
                Ok(())
            }
            PageChange::Remap(pages, access) => {
                paging::unmap_pages(&mut tables, self.root, pages);
                crate::cpu::flush_asid(self.asid);
                paging::map_pages(&mut tables, self.root, pages, kind(access))
            }
        };
        // A refusal other than for memory would mean the ledger and the
        // table disagree: the call's failure, not a panic.
        if let Err(error) = mapped {
            self.outcome = Err(if error == paging::MapError::AlreadyMapped { Error::Busy } else { Error::OutOfMemory });
        }
    }

    fn finish(self) -> Result<(), Error> {
        crate::cpu::publish_tables();
        if self.flush {
            crate::cpu::flush_asid(self.asid);
        }
        self.outcome
    }
}

/// How domain `viewer`'s view (the kernel's for `None`) maps `address`:
/// the access its leaf entry grants, or `None` if it is not mapped.
pub fn access_in_view(kernel: &Kernel, viewer: Option<DomainId>, address: u64) -> Option<paging::Access> {
    let root = match viewer {
        Some(id) => kernel.domain(id)?.domain.table,
        None => kernel.kernel_view & ADDRESS_BITS,
    };
    let mut frames = memory::FRAMES.lock();
    let frames = frames.as_mut()?;
    paging::translate(&mut IdentityTables(frames), root, address).map(|(_, descriptor)| paging::Access::of(descriptor))
}

/// The domain's region (for probes and reports).
pub fn region(id: DomainId) -> Option<PhysRange> {
    with(id, |record| record.domain.region)
}

/// Upcall into domain `id`'s entry with `argument`, on the current thread,
/// in a fresh activation on the domain's main stack; how it ended.
pub fn call(id: DomainId, argument: usize) -> Result<Outcome, DomainError> {
    let entry = with(id, |record| {
        if record.alive { Ok((record.spec.entry as usize, record.main_stack)) } else { Err(DomainError::Terminated) }
    })
    .ok_or(DomainError::NoSuchDomain)??;
    let outcome = crate::threads::upcall_in_new_activation(id, entry.1, argument, entry.0);
    merge_if_asked(id);
    Ok(outcome)
}

/// After a domain's start: merge it if `tern.merge` names it (and say so,
/// or why not).
fn merge_if_asked(id: DomainId) {
    let verdict = state::with(|kernel| {
        let record = kernel.domain(id)?;
        let name = record.spec.name;
        if record.mode == DomainMode::Merged || !kernel.merge_at_start.iter().any(|listed| listed == name) {
            return None;
        }
        Some((name, set_mode(kernel, id, DomainMode::Merged)))
    });
    match verdict {
        Some((name, Ok(()))) => crate::kprintln!("domain '{}' merged into the kernel domain (tern.merge)", name),
        Some((name, Err(error))) => crate::kprintln!("domain '{}' not merged (tern.merge): {}", name, error.name()),
        None => {}
    }
}
