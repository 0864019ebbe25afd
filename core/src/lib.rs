//! # tern-core: the portable kernel
//!
//! Everything in Tern that does not need to touch a register lives here, so
//! that it can be tested on the host with `cargo test -p tern-core`:
//!
//! - [`frame`]: the physical frame allocator over the board's RAM;
//! - [`heap`]: the kernel heap's allocator (behind the global allocator in the
//!   image);
//! - [`board`]: boards described as data;
//! - [`bootinfo`]: what the boot loader handed over (flattened device tree or
//!   ATAGs): memory size and kernel command line;
//! - [`cmdline`]: the kernel command line's `tern.*` options;
//! - [`esr`]: decoding an exception syndrome into words a person can read;
//! - [`paging`]: building AArch64 translation tables (one layout, many views);
//! - [`lend`]: counting the client pages lent into protected servers' views;
//! - [`abi`]: the kernel-call interface shared by the kernel and its domains;
//! - [`domain`]: protection domains, their memory, and user-pointer claims;
//! - [`capability`]: capability spaces (port names and rights);
//! - [`thread`]: threads, activations, ports — the migrating-thread objects;
//! - [`schedule`]: the priority run queue.
//!
//! The arch crate (`tern-aarch64`) drives these from the boot code and the
//! exception vectors; nothing here assumes it runs at EL1.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod abi;
pub mod board;
pub mod bootinfo;
pub mod capability;
pub mod cmdline;
pub mod control;
pub mod domain;
pub mod esr;
pub mod frame;
pub mod heap;
pub mod lend;
pub mod paging;
pub mod schedule;
pub mod thread;
