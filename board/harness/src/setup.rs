//! What the scenarios share: making and starting domains, the command
//! line's round count, and the kernel's memory figures (moving a domain
//! into a mode once it is idle is `tern_aarch64::domains::set_mode_once_idle`,
//! shared with the production image's benchmark runner).
//!
//! Kept apart from [`crate::scenario`] (the table of scenarios and their
//! runner) so that a scenario module uses these without importing the
//! runner that imports it: the harness's modules then form layers.
//!
//! Left out: anything a single scenario alone needs (it stays in its own
//! module).

use crate::Verdict;
use alloc::format;
use alloc::string::String;
use tern_aarch64::state;
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln};
use tern_core::domain::DomainId;

/// The command line's `tern.rounds`, for scenarios that repeat.
static ROUNDS: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

pub(crate) fn rounds(default: usize) -> usize {
    match ROUNDS.load(core::sync::atomic::Ordering::Relaxed) {
        0 => default,
        given => given,
    }
}

/// Free frames and kernel heap bytes in use, once every dead domain's
/// slot that can be is reclaimed (else a dead domain's view would count).
pub(crate) fn kernel_memory() -> (usize, usize) {
    state::with(|kernel| kernel.reclaim_dead_domains());
    let frames = tern_aarch64::memory::FRAMES.lock().as_ref().map_or(0, |frames| frames.free_frames());
    (frames, tern_aarch64::memory::heap_stats().0)
}

/// Set the command line's `tern.rounds` (the runner does, before a scenario).
pub(crate) fn set_rounds(rounds: usize) {
    ROUNDS.store(rounds, core::sync::atomic::Ordering::Relaxed);
}

/// Create and start `servers` (domain name, start argument) in order, then
/// let their threads (more urgent than this boot thread) reach `Receive`.
pub(crate) fn start_servers(servers: &[(&str, usize)]) -> Verdict {
    for &(name, argument) in servers {
        let id = create(name)?;
        match domains::call(id, argument) {
            Ok(Outcome::Returned(0)) => {}
            other => return Err(format!("{name} did not start: {other:?}")),
        }
    }
    tern_aarch64::threads::yield_now();
    Ok(())
}

pub(crate) fn create(name: &str) -> Result<DomainId, String> {
    let id = domains::create(name).map_err(|error| format!("creating {name}: {error:?}"))?;
    let region = domains::region(id).unwrap_or(tern_core::frame::PhysRange::new(0, 0));
    kprintln!(
        "domain {} created: number {}, ASID {}, region 0x{:x}..0x{:x}, own translation table",
        name,
        id.0,
        id.0,
        region.start,
        region.end
    );
    Ok(id)
}
