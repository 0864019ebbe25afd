//! Deterministic reproductions of kernel bugs the stress found, each a
//! boot scenario that failed before its fix.

use crate::scenario::{self, Verdict};
use alloc::format;
use alloc::vec::Vec;
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, state, threads};
use tern_core::abi::Error;
use tern_core::control::ActivationAction;
use tern_core::thread::ThreadId;
use tern_inks::mode::DomainMode;

/// Two workers of `ctl.client` are up in `ctl.top` through `ctl.mid`, both
/// merged: mid called top as a procedure (the merged call path, no trap).
/// The kernel alert-breaks each worker's activation in mid, below top's:
/// mid's call returns `Interrupted` on a new thread, and top's activation,
/// its caller gone, goes on. When top's handler returns, the merged call
/// path must not go back to a caller that is not there (it loaded the
/// client activation numbered 0 and faulted at EL1; found by the stress):
/// the general `Return` ends that part of the thread.
pub fn merged_split() -> Verdict {
    scenario::start_servers(&[("names", 1), ("ctl.top", 1), ("ctl.mid", 1)])?;
    let [top, mid] = ["ctl.top", "ctl.mid"].map(domains::find);
    let (top, mid) = top.zip(mid).ok_or("no ctl servers")?;
    for server in [top, mid] {
        domains::set_mode(server, DomainMode::Merged).map_err(|error| format!("merging: {error}"))?;
    }
    let client = domains::create("ctl.client").map_err(|error| format!("creating the client: {error:?}"))?;
    let workers = match domains::call(client, tern_ctltest::test::DOMAIN_START) {
        Ok(Outcome::Returned(threads)) if threads != 0 => [threads >> 16 & 0xffff, threads >> 32 & 0xffff],
        other => return Err(format!("the workers did not start: {other:?}")),
    };
    let broken: Vec<Result<usize, Error>> = state::with(|kernel| {
        let in_mid = kernel.objects.occupied_in(mid);
        in_mid
            .into_iter()
            .map(|activation| kernel.control_activation(activation, ActivationAction::AlertBreak))
            .collect()
    });
    kprintln!("merged-split: alert-broke the workers' activations in merged ctl.mid below merged ctl.top: {broken:?}");
    let settled = (0..10_000).any(|_| {
        threads::yield_now();
        state::with(|kernel| kernel.objects.occupied_in(top).is_empty() && kernel.objects.occupied_in(mid).is_empty())
    });
    let mut ended = 0;
    for worker in workers.iter().filter_map(|&number| ThreadId::new(number as u32)) {
        ended += usize::from(threads::join(worker).is_some());
        state::with(|kernel| kernel.reap_joined(worker));
    }
    kprintln!("merged-split: top's parts returned to nobody and ended: {settled}; workers joined: {ended}");
    if broken != [Ok(1), Ok(1)] || !settled || ended != 2 {
        return Err("the split merged call did not end cleanly".into());
    }
    Ok(())
}
