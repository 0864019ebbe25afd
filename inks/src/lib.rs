//! # tern-inks: the in-kernel-server layer
//!
//! "inks" stands for *in-kernel servers*: any server domain can be merged
//! into the kernel domain at run time, so that a migrating RPC into it
//! becomes close to a procedure call. This crate holds what makes that
//! work, between the kernel (`tern-core`, below it) and the servers
//! (`servers/*`, above it):
//!
//! - [`mode`]: a domain's mode and the merge/unmerge transition (views,
//!   TLB, activations' entries, the gate's mode word), over the kernel's
//!   state and the machine interface;
//! - [`gate`]: the *service gate*, the one place a domain's code reaches
//!   the kernel, the same in both modes (a trap while protected, a direct
//!   entry while merged), and the dispatch trampolines pool activations
//!   enter through;
//! - [`registry`]: how a server crate declares its domains (name, entry,
//!   role) so that linking the crate into an image is all it takes;
//! - [`service`]: the server runtime (pools, threads, message handling);
//! - [`Inks`]: the layer as the kernel reaches it (`tern_core::machine::
//!   Servers`).
//!
//! It must not depend on the arch crate or on any server. The merged call
//! path itself — the assembly that calls a merged server's handler from a
//! merged client without a trap — is assembled with the machine's fast
//! paths, whose checks and client exit it shares (`docs/design.md` says
//! why). Server crates are `#![forbid(unsafe_code)]`; the `svc` they need
//! lives here, behind a safe interface.
#![no_std]

extern crate alloc;

pub mod gate;
pub mod mode;
pub mod registry;
pub mod service;

pub use registry::DomainSpec;

use tern_core::abi::{DomainMode, Error};
use tern_core::domain::DomainId;
use tern_core::kernel::Kernel;
use tern_core::machine::{Machine, Servers};

/// The in-kernel-server layer, as the kernel reaches it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Inks;

impl Servers for Inks {
    fn upcall_entry() -> u64 {
        gate::upcall_trampoline as extern "C" fn(usize, registry::Entry) -> ! as usize as u64
    }

    fn entry_for_mode(entry: u64, mode: DomainMode) -> u64 {
        let (protected, merged) = (gate::dispatch_trampoline() as u64, gate::dispatch_trampoline_merged() as u64);
        match mode {
            DomainMode::Merged if entry == protected => merged,
            DomainMode::Protected if entry == merged => protected,
            _ => entry,
        }
    }

    fn set_mode<M: Machine<Servers = Self>>(
        kernel: &mut Kernel<M>,
        domain: DomainId,
        mode: DomainMode,
    ) -> Result<(), Error> {
        mode::set_mode(kernel, domain, mode)
    }
}
