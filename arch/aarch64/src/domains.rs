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
//! Region layout: `[start, start + 4 MiB)` the domain's heap (its first
//! bytes hold the heap's own bookkeeping, a `LockedHeap`), `[start + 4 MiB,
//! end)` stacks.

use crate::memory::{self, IdentityTables};
use crate::state::{self, Kernel};
use crate::upcall::Outcome;
use tern_core::board::DOMAIN_REGION;
use tern_core::capability::{Capability, CapabilitySpace, NAME_SERVICE_NAME};
use tern_core::domain::{Domain, DomainId, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::heap::LockedHeap;
use tern_core::paging;
use tern_inks::DomainSpec;

/// Bytes at the start of a region given to the domain's heap.
pub const HEAP_BYTES: u64 = 4 << 20;
/// The stack of a domain's main activation (upcalls from the kernel).
pub const MAIN_STACK: u64 = 64 << 10;

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
    /// The word handed to its dispatch upcalls.
    pub context: usize,
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
            let heap = start as *mut LockedHeap;
            heap.write(LockedHeap::empty());
            let bookkeeping = core::mem::size_of::<LockedHeap>().next_multiple_of(64) as u64;
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
    Ok(crate::threads::upcall_in_new_activation(id, entry.1, argument, entry.0))
}
