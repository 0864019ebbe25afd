//! # Tern for QEMU `virt`: the harness image
//!
//! `tern-virt-harness.img`, the image `cargo xtask test` and `cargo xtask
//! bench` boot: the production image (this board's `config.rs` and the
//! domains of `tern_image`) plus `tern_harness`: the boot scenarios, the
//! benchmark, and the test servers they call (`tern_hello`,
//! `tern_rpctest`, `tern_ctltest`). It starts by running the scenario the
//! command line names.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod config;

// The production domains (`tern_harness`, whose `run` this image starts
// with, brings the rest).
#[cfg(target_os = "none")]
use tern_image as _;

/// Built for the host, this crate is only a placeholder: the image exists
/// for `aarch64-unknown-none` alone.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tern-virt-harness is a kernel image: build it with `cargo xtask build --board virt --harness`");
}

#[cfg(target_os = "none")]
tern_aarch64::board_entry!(config::QEMU_VIRT, tern_harness::run);
