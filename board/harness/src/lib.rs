//! # tern-harness: what only test images carry
//!
//! A *harness image* is the production image plus this crate: the boot
//! scenarios the integration tests run ([`scenario`]), the misbehaving
//! domains that show containment ([`probes`]), the benchmark's driver and
//! servers ([`bench`]), the `build` scenario over the production image's
//! runner of the macro benchmark (`tern_image::build`) ([`build`]), the crossing-cost calibration ([`calibrate`]),
//! the check of the kernel's copy routine ([`copy`]), the console
//! scenario's client ([`console`]), the
//! priority-inversion experiment
//! ([`inversion`]), the kernel-call fuzzer and its scenario ([`fuzz`]),
//! and the test servers they use (`tern-hello`,
//! `tern-rpctest`, `tern-ctltest`, `tern-stresstest`, `tern-fstest`).
//! `cargo xtask test` and `cargo xtask
//! bench` build harness images; the image a person flashes carries none of
//! it (`cargo xtask test` checks the production image's symbols).
//!
//! [`run`] is the harness image's start ([`tern_aarch64::kernel::Init`]):
//! the scenario `tern.scenario=NAME` names. The probes need `unsafe` and
//! assembly (misbehaving is their point), which server crates forbid: that
//! is why they live here, not in `servers/`.
//!
//! What it must not be: a dependency of any kernel crate (core, arch,
//! inks) or of the production image.
#![no_std]

extern crate alloc;

/// What a scenario, or a part of one, comes to: passed, or why not.
pub(crate) type Verdict = Result<(), alloc::string::String>;

pub mod bench;
pub mod build;
pub mod calibrate;
pub mod console;
pub mod copy;
pub mod fuzz;
pub mod inversion;
pub mod probes;
pub mod scenario;
mod setup;
pub mod stress;

pub use scenario::run;

use alloc::string::String;
use tern_aarch64::{domains, upcall::Outcome};
use tern_core::domain::DomainId;

/// Create the registered domain `name` and start it with `mode` (the
/// service runtime's mode bits); the domain and its port's name in its
/// own space, which it returns from its start.
pub(crate) fn start_server(name: &str, mode: usize) -> Result<(DomainId, u32), String> {
    let domain = domains::create(name).map_err(|error| alloc::format!("{name}: {error:?}"))?;
    match domains::call(domain, mode) {
        Ok(Outcome::Returned(port)) if port < u32::MAX as usize => Ok((domain, port as u32)),
        other => Err(alloc::format!("{name} did not start: {other:?}")),
    }
}
