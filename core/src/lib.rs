//! # tern-core: the kernel
//!
//! Tern's kernel proper, written against one small machine interface
//! ([`machine::Machine`]) so that all of it runs under `cargo test` on the
//! host, against a mock machine ([`mock`]), as well as on the hardware
//! (`tern-aarch64` implements the trait).
//!
//! Its modules form layers; each uses only those below it:
//!
//! 1. **data**: [`abi`] (the kernel-call interface shared with domains),
//!    [`board`] (boards as data), [`frame`] and [`heap`] (allocators),
//!    [`bootinfo`] and [`cmdline`] (what the boot loader handed over);
//! 2. **objects**: [`capability`] (port names and rights), [`domain`]
//!    (domains' memory and user-pointer claims), [`thread`] (threads,
//!    activations, ports), [`chain`] (chain surgery: alerts, splits,
//!    termination), [`schedule`] (the run queue), [`lend`] (lent pages),
//!    [`quota`] (kernel memory charged to domains), [`input`] (the console
//!    input ring);
//! 3. **the machine interface**: [`machine`];
//! 4. **the kernel state**: [`kernel`] (one structure, and what a call
//!    answers);
//! 5. **behaviour**, bottom up: [`scheduler`] (threads on the processor),
//!    [`console`] (console input, queued for the console domain),
//!    [`domains`] (creation, termination, lending), [`rpc`] (migrating and
//!    switching RPC), [`control`] (activation control, the way back into a
//!    domain, faults);
//! 6. **the call table**: [`syscall`].
//!
//! What it must not depend on: the arch crate, the in-kernel-server layer
//! (`tern-inks`, which sits above it and is handed to the kernel as a
//! [`kernel::ServerLayer`]), any server crate. Nothing here touches a
//! register or assumes it runs at EL1.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod abi;
pub mod binding;
pub mod board;
pub mod bootinfo;
pub mod capability;
pub mod chain;
pub mod cmdline;
pub mod console;
pub mod control;
pub mod domain;
pub mod domains;
pub mod frame;
pub mod handle;
pub mod heap;
pub mod input;
pub mod kernel;
pub mod lend;
pub mod machine;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod quota;
pub mod restart;
pub mod rpc;
pub mod schedule;
pub mod scheduler;
pub mod syscall;
pub mod thread;
