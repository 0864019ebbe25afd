//! The kernel's table of protection domains.
//!
//! Creating a domain takes a slot from the domain arena (2 MiB, zeroed so
//! nothing of a previous tenant leaks), derives its view from the kernel's
//! table ([`tern_core::paging::derive_view`]) and gives it the next ASID.
//! A domain that faults is marked terminated: no upcall enters it again.
//! Its slot is not reused yet (a reused ASID would need a TLB flush by
//! ASID first; nothing needs reuse so far).

use crate::memory::{self, IdentityTables};
use crate::upcall::{self, Outcome, UpcallTarget};
use alloc::vec::Vec;
use hashbrown::HashMap;
use tern_core::domain::{Domain, DomainId, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::paging::{self, LEVEL2_BLOCK};
use tern_inks::DomainSpec;

/// A domain and what the kernel knows about it.
pub struct DomainRecord {
    /// The domain itself.
    pub domain: Domain,
    /// What its server declared.
    pub spec: &'static DomainSpec,
    /// False once terminated.
    pub alive: bool,
}

/// Kernel-wide facts the domain code needs.
struct Setup {
    arena: PhysRange,
    kernel_view: u64,
    image: SharedImage,
}

static SETUP: spin::Once<Setup> = spin::Once::new();

/// Every domain created so far: records indexed by `DomainId - 1`, and a
/// name index (a domain's name is unique).
pub struct DomainTable {
    records: Vec<DomainRecord>,
    by_name: HashMap<&'static str, DomainId>,
}

/// The kernel's domain table (present after [`init`]).
pub static DOMAINS: spin::Mutex<Option<DomainTable>> = spin::Mutex::new(None);

/// Record the arena, the kernel's view and the shared image (once, at boot).
pub fn init(arena: PhysRange, kernel_view: u64, image: SharedImage) {
    SETUP.call_once(|| Setup { arena, kernel_view, image });
    *DOMAINS.lock() = Some(DomainTable { records: Vec::new(), by_name: HashMap::new() });
}

fn setup() -> &'static Setup {
    SETUP.get().expect("domains used before init")
}

/// The memory every domain may read.
pub fn shared_image() -> SharedImage {
    setup().image
}

/// Why a domain could not be created or entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainError {
    /// All arena slots are taken.
    ArenaFull,
    /// No frames for the domain's tables.
    OutOfMemory,
    /// No such domain.
    NoSuchDomain,
    /// The domain has been terminated.
    Terminated,
    /// A domain of that name exists already.
    NameTaken,
}

/// Create a protected domain for `spec`.
pub fn create(spec: &'static DomainSpec) -> Result<DomainId, DomainError> {
    let setup = setup();
    let mut guard = DOMAINS.lock();
    let domains = guard.as_mut().ok_or(DomainError::NoSuchDomain)?;
    if domains.by_name.contains_key(spec.name) {
        return Err(DomainError::NameTaken);
    }
    let index = domains.records.len();
    let start = setup.arena.start + index as u64 * LEVEL2_BLOCK;
    if start + LEVEL2_BLOCK > setup.arena.end {
        return Err(DomainError::ArenaFull);
    }
    let region = PhysRange::new(start, start + LEVEL2_BLOCK);
    // The slot is part of the arena, which the frame allocator gave to the
    // kernel at boot and which no view maps yet. The kernel's view never
    // maps the arena, so the region is zeroed through the new domain's view.
    let table = {
        let mut frames = memory::FRAMES.lock();
        let frames = frames.as_mut().ok_or(DomainError::OutOfMemory)?;
        paging::derive_view(&mut IdentityTables(frames), setup.kernel_view, region)
            .map_err(|_| DomainError::OutOfMemory)?
    };
    crate::cpu::publish_tables();
    let id = DomainId(index as u16 + 1);
    let domain = Domain { id, name: spec.name, region, table };
    zero_region(&domain, setup.kernel_view);
    domains.records.push(DomainRecord { domain, spec, alive: true });
    domains.by_name.insert(spec.name, id);
    Ok(id)
}

/// Zero a new domain's region through its own view (the kernel's view does
/// not map the arena).
fn zero_region(domain: &Domain, kernel_view: u64) {
    crate::cpu::without_interrupts(|| {
        crate::cpu::switch_view(domain.translation_base());
        // SAFETY: the domain's view maps its region read-write for EL1 too;
        // the region belongs to this new domain alone and nothing runs in it.
        unsafe {
            core::ptr::write_bytes(domain.region.start as *mut u8, 0, domain.region.len() as usize);
        }
        crate::cpu::switch_view(kernel_view);
    });
}

/// Run `body` on the domain's record.
pub fn with<R>(id: DomainId, body: impl FnOnce(&mut DomainRecord) -> R) -> Option<R> {
    let mut guard = DOMAINS.lock();
    let index = (id.0 as usize).checked_sub(1)?;
    guard.as_mut()?.records.get_mut(index).map(body)
}

/// The domain called `name`, if one has been created.
pub fn find(name: &str) -> Option<DomainId> {
    DOMAINS.lock().as_ref()?.by_name.get(name).copied()
}

/// Mark a domain terminated.
pub fn terminate(id: DomainId) {
    with(id, |record| record.alive = false);
}

/// The domain's region (for probes and reports).
pub fn region(id: DomainId) -> Option<PhysRange> {
    with(id, |record| record.domain.region)
}

/// Upcall into domain `id`'s entry with `argument`.
pub fn call(id: DomainId, argument: usize) -> Result<Outcome, DomainError> {
    let target = with(id, |record| {
        if !record.alive {
            return Err(DomainError::Terminated);
        }
        Ok(UpcallTarget {
            domain: id,
            translation_base: record.domain.translation_base(),
            entry: tern_inks::gate::upcall_trampoline as extern "C" fn(usize, tern_inks::registry::Entry) -> ! as usize
                as u64,
            stack: record.domain.stack_top(),
            arguments: [argument as u64, record.spec.entry as usize as u64],
        })
    })
    .ok_or(DomainError::NoSuchDomain)??;
    Ok(upcall::upcall(target, setup().kernel_view))
}
