//! Starting domains from the kernel's own code: at boot, and in the test
//! harness's scenarios.
//!
//! The kernel (`tern_core::domains`) makes domains and their views; [`call`]
//! runs a domain's entry on a thread of its own (an upcall into the
//! domain's main stack) and waits for it to end, while kernel calls it
//! makes are handled as any domain's. After a domain's start, it is merged
//! if the command line asked (`tern.merge`).

use crate::upcall::Outcome;
use crate::{state, threads};
use tern_core::abi::{DomainMode, Error};
use tern_core::domain::DomainId;
use tern_core::domains::DomainError;
use tern_core::frame::PhysRange;
use tern_core::machine::Machine;
use tern_inks::registry;

/// Create a protected domain for the registered domain called `name`
/// (every domain is made here: its name is kept for kernel fault
/// reports, `fastpath::name_domain`).
pub fn create(name: &str) -> Result<DomainId, DomainError> {
    let spec = registry::find(name).ok_or(DomainError::NoSuchDomain)?;
    state::with(|kernel| {
        let id = kernel.create_domain(spec)?;
        crate::fastpath::name_domain(id, spec.name);
        Ok(id)
    })
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

/// [`set_mode`], tried again after a yield while the domain is `Busy`: a
/// thread that has just been answered (a server thread that replied, the
/// upper part of a split thread) may still be on its way out of it. Gives
/// up after a thousand yields with the last answer.
pub fn set_mode_once_idle(id: DomainId, mode: DomainMode) -> Result<(), Error> {
    for _ in 0..1000 {
        match set_mode(id, mode) {
            Err(Error::Busy) => threads::yield_now(),
            outcome => return outcome,
        }
    }
    set_mode(id, mode)
}

/// Run domain `id`'s entry with `argument` and wait for it to end; how it
/// ended. It runs on a thread of its own (`Kernel::start_domain`), never on
/// the calling one: the boot thread, which runs the kernel's own code, is
/// then no domain's to reach.
pub fn call(id: DomainId, argument: usize) -> Result<Outcome, DomainError> {
    let thread = state::with(|kernel| kernel.start_domain(id, argument))?;
    let result = threads::join(thread).unwrap_or(usize::MAX);
    let (faulted, merged) = state::with(|kernel| {
        let faulted = kernel.objects.thread(thread).is_some_and(|entry| entry.faulted);
        kernel.reap(thread);
        (faulted, kernel.merge_if_asked(id))
    });
    let outcome = if faulted { Outcome::Faulted } else { Outcome::Returned(result) };
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
