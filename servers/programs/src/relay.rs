//! `relay`: the server `chain` holds its chain through.
//!
//! A request carries a depth and a sleep (counter ticks). At depth 1 the
//! relay calls `kernel.clock`'s sleep, so the top of the chain is a kernel
//! activation; deeper, it calls itself with one less, on another of its
//! pool activations. Each activation answers with what the call above it
//! answered: 0, or an error's code (`Interrupted` when an alert ended the
//! sleep). A pool activation blocks alerts unless it opens them; the
//! relay opens them in each call, so an alert from below passes on up to
//! the sleep. Its pool grows on demand (up to [`CHAIN_DEPTH_MAX`] deep chains
//! fit).
//!
//! [`CHAIN_DEPTH_MAX`]: crate::CHAIN_DEPTH_MAX

use tern_core::abi::{Error, PortName};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(RELAY, "relay", relay_main);

/// The name `relay` registers its port under.
pub const NAME: &str = "relay";
/// A sleep that lasts until an alert ends it.
pub const FOREVER: u64 = u64::MAX / 4;

/// `kernel.clock`'s request label for a sleep (its `SLEEP`).
const CLOCK_SLEEP: u32 = 1;

/// Call the relay on `port` to hold a `depth`-deep chain with a `ticks`
/// sleep at the top; how it ended.
pub fn relay(port: PortName, depth: u32, ticks: u64) -> Result<(), Error> {
    let mut payload = [0u8; 12];
    payload[..4].copy_from_slice(&depth.to_le_bytes());
    payload[4..].copy_from_slice(&ticks.to_le_bytes());
    outcome(ask(port, 0, &payload)?)
}

/// One call: its reply's label.
fn ask(port: PortName, label: u32, payload: &[u8]) -> Result<u32, Error> {
    let mut request = MessageBuffer::with_payload_capacity(payload.len());
    request.set_label(label);
    request.set_payload(payload)?;
    let mut reply = MessageBuffer::with_payload_capacity(16);
    Ok(service::call(port, &request, &mut reply)?.label())
}

/// A reply label as an outcome.
fn outcome(label: u32) -> Result<(), Error> {
    match label {
        0 => Ok(()),
        code => Err(Error::from_code(code as usize).unwrap_or(Error::BadMessage)),
    }
}

struct Relay {
    growth: PoolGrowth,
}

impl Relay {
    fn forward(payload: &[u8]) -> Result<(), Error> {
        let depth = payload.get(..4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes);
        let ticks = payload.get(4..12).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes);
        let (Some(depth), Some(ticks)) = (depth, ticks) else { return Err(Error::InvalidArgument) };
        if depth == 0 || depth > crate::CHAIN_DEPTH_MAX {
            return Err(Error::InvalidArgument);
        }
        if depth == 1 {
            let clock = service::lookup("clock")?;
            return outcome(ask(clock, CLOCK_SLEEP, &ticks.to_le_bytes())?);
        }
        relay(service::lookup(NAME)?, depth - 1, ticks)
    }
}

impl Service for Relay {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        // Alerts pass through: a relay holds nothing it must clean up, so
        // an alert from the job's base reaches the sleep at the top.
        let _ = gate::alerts_block(false);
        let label = match Relay::forward(request.payload) {
            Ok(()) => 0,
            Err(error) => error as u32,
        };
        reply.set_label(label);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

fn relay_main(mode: usize) -> usize {
    let growth = PoolGrowth::new(2, crate::CHAIN_DEPTH_MAX as usize);
    service::start(Some(NAME), Relay { growth }, mode)
}
