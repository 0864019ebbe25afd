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
//! - [`thread`]: threads sharing state in safe code ([`thread::spawn`]);
//! - [`sync`]: the lock for that state ([`sync::Mutex`]: the taker gives
//!   way while another thread holds it, never spins);
//! - [`layer`]: the layer as the kernel is handed it
//!   (`tern_core::kernel::ServerLayer`).
//!
//! It must not depend on the arch crate or on any server. The merged call
//! path itself — the assembly that calls a merged server's handler from a
//! merged client without a trap — is assembled with the machine's fast
//! paths, whose checks and client exit it shares (`docs/design.md` says
//! why). Server crates are `#![forbid(unsafe_code)]`; the `svc` they need
//! lives here, behind a safe interface.
#![no_std]

extern crate alloc;

pub mod bound;
pub mod gate;
pub mod mode;
pub mod registry;
pub mod service;
pub mod sync;
pub mod system;
pub mod thread;

pub use registry::DomainSpec;

use tern_core::kernel::ServerLayer;
use tern_core::machine::Machine;

/// The layer as the kernel is given it when an image makes the kernel: the
/// gate's upcall and dispatch entries, and the merge transition.
pub fn layer<M: Machine>() -> ServerLayer<M> {
    ServerLayer {
        upcall_entry: gate::upcall_trampoline as extern "C" fn(usize, registry::Entry) -> ! as usize as u64,
        dispatch_entries: [gate::dispatch_trampoline() as u64, gate::dispatch_trampoline_merged() as u64],
        dispatch_register_entry: gate::dispatch_trampoline_registers() as u64,
        bound_entries: bound::entries(),
        bound_words_general: bound::words_general(),
        set_mode: mode::set_mode::<M>,
    }
}
