//! Starting domains from the kernel's own code: at boot, and in the test
//! harness's scenarios.
//!
//! The kernel (`tern_core::domains`) makes domains and their views; what
//! needs this machine is the *upcall*: the current thread steps out of the
//! kernel into a domain's entry on its main stack ([`call`]), which runs
//! until the domain ends the upcall (or faults), while kernel calls it
//! makes are handled as any domain's. After a domain's first start, it is
//! merged if the command line asked (`tern.merge`).

use crate::state;
use crate::upcall::{self, Outcome};
use tern_core::abi::{DomainMode, Error};
use tern_core::domain::DomainId;
use tern_core::domains::DomainError;
use tern_core::frame::PhysRange;
use tern_core::machine::Machine;
use tern_inks::registry;

/// Create a protected domain for the registered domain called `name`.
pub fn create(name: &str) -> Result<DomainId, DomainError> {
    let spec = registry::find(name).ok_or(DomainError::NoSuchDomain)?;
    state::with(|kernel| kernel.create_domain(spec))
}

/// The domain called `name`, if one has been created.
pub fn find(name: &str) -> Option<DomainId> {
    state::with(|kernel| kernel.find_domain(name))
}

/// The domain's region.
pub fn region(id: DomainId) -> Option<PhysRange> {
    state::with(|kernel| kernel.domain(id).map(|record| record.domain.region))
}

/// Move domain `id` into `mode` (the in-kernel-server layer's transition;
/// `Busy` while it is occupied).
pub fn set_mode(id: DomainId, mode: DomainMode) -> Result<(), Error> {
    state::with(|kernel| kernel.set_mode(id, mode))
}

/// Upcall into domain `id`'s entry with `argument`, on the current thread,
/// in a fresh activation on the domain's main stack; how it ended.
pub fn call(id: DomainId, argument: usize) -> Result<Outcome, DomainError> {
    let prepared = state::with(|kernel| {
        let (entry, stack) = kernel.domain_entry(id)?;
        let kernel_view = kernel.machine.kernel_view();
        Ok(kernel.enter_domain(id, stack, argument, entry).map(|entered| (entered, kernel_view)))
    })?;
    let Some(((activation, target), kernel_view)) = prepared else { return Ok(Outcome::Faulted) };
    let outcome = upcall::upcall(target, kernel_view);
    let merged = state::with(|kernel| {
        kernel.leave_domain(activation);
        kernel.merge_if_asked(id)
    });
    match merged {
        Some((name, Ok(()))) => crate::kprintln!("domain '{}' merged into the kernel domain (tern.merge)", name),
        Some((name, Err(error))) => crate::kprintln!("domain '{}' not merged (tern.merge): {}", name, error.name()),
        None => {}
    }
    Ok(outcome)
}

/// How domain `viewer`'s view (the kernel's for `None`) maps `address`:
/// the access its leaf entry grants, or `None` if it is not mapped.
pub fn access_in_view(kernel: &state::Kernel, viewer: Option<DomainId>, address: u64) -> Option<crate::paging::Access> {
    let view = match viewer {
        Some(id) => kernel.domain(id)?.domain.view,
        None => kernel.machine.kernel_view(),
    };
    kernel.machine.access_in_view(view, address)
}
