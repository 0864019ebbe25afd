//! # Tern for QEMU `virt`: the production image
//!
//! `tern-virt.img`, the image `cargo xtask qemu --board virt` boots: the
//! kernel for this board (`config.rs`) and the production server domains
//! listed once for every board in `tern_image`, nothing else. The test
//! servers and scenarios are in the harness image (`src/harness.rs`,
//! `tern-virt-harness.img`).
//!
//! A board crate is at the top of the graph: it depends on the kernel
//! crates and the images' lists (`tern-image`, `tern-harness`), and
//! nothing depends on it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod config;

/// Built for the host, this crate is only a placeholder: the image exists
/// for `aarch64-unknown-none` alone.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tern-virt is a kernel image: build it with `cargo xtask build --board virt`");
}

#[cfg(target_os = "none")]
tern_aarch64::board_entry!(config::QEMU_VIRT, tern_image::start);
