//! The clock: a kernel object invoked by RPC and served by kernel
//! activations (issue 5, point 7 — kernel calls that migrate).
//!
//! `kernel.clock` is a domain of the kernel's own code, merged into the
//! kernel domain as soon as it is started: its pool activations are kernel
//! activations (EL1, the kernel's view). A client reaches it with an
//! ordinary `Call` on the port it registers as `clock`, so the caller's
//! thread migrates into a kernel activation just as into any server, and
//! the controls treat it the same: an alert from the caller reaches the
//! kernel activation (which opens alerts: the kernel honours them), whose
//! blocking sleep then ends `Interrupted`; a termination or alert-and-break
//! below it gives the caller control back at once while the kernel
//! activation finishes on its own and goes back to its pool.
//!
//! Requests (the label): [`SLEEP`] with the counter ticks as a
//! little-endian `u64` payload (reply label 0, or the error's code);
//! [`NOW`] (reply payload: the counter, little-endian `u64`).

use tern_inks::gate;
use tern_inks::service::{self, Reply, Request, Service};

tern_inks::domain!(CLOCK, "kernel.clock", clock_main);

/// Request: sleep for the payload's ticks.
pub const SLEEP: u32 = 1;
/// Request: read the counter.
pub const NOW: u32 = 2;

struct Clock;

impl Service for Clock {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        match request.label() {
            SLEEP => {
                let ticks = request.payload.get(..8).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes);
                let Some(ticks) = ticks else {
                    reply.set_label(tern_core::abi::Error::BadMessage as u32);
                    return;
                };
                // A kernel activation honours alerts.
                let _ = gate::alerts_block(false);
                let outcome = gate::sleep(ticks as usize);
                reply.set_label(outcome.map_or_else(|error| error as u32, |_| 0));
            }
            NOW => {
                reply.set_label(0);
                let _ = reply.set_payload(&crate::timer::counter().to_le_bytes());
            }
            _ => reply.set_label(tern_core::abi::Error::InvalidArgument as u32),
        }
    }
}

fn clock_main(mode: usize) -> usize {
    service::start(Some("clock"), Clock, mode)
}
