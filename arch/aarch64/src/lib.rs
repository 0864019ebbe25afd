//! # tern-aarch64: the machine
//!
//! The part of Tern that touches 64-bit Arm: start-up, the exception
//! vectors and the *glue* in the paper's sense (Ford & Lepreau §4.1) — the
//! code that moves a thread between protection domains, the kernel
//! included — the assembly fast paths, the MMU, and the devices. The
//! kernel itself (`tern-core`) runs on it through one trait,
//! `tern_core::machine::Machine`, which [`machine::Aarch64`] implements.
//! It decides nothing: every policy is the kernel's.
//!
//! - `boot.s` (+ [`kernel`]): from the boot loader's hand-off (EL3, EL2 or
//!   EL1) to EL1 with the MMU on, then the boot sequence and the image's
//!   own start ([`kernel::Init`]);
//! - `vectors.s`, `fastpath.s` (+ [`exception`], [`fastpath`]): exception
//!   vectors, trap frames, the RPC fast paths and the merged call path
//!   (assembled as one unit), trap capture; every kernel call, fault and
//!   interrupt handed to the kernel, and its answer carried out
//!   ([`threads`]);
//! - `upcall.s`, `switch.s` (+ [`upcall`], [`threads`]): upcalls from a
//!   kernel-based thread into a domain and back, thread switches;
//! - [`machine`], [`state`]: the machine interface's implementation, and
//!   the one lock the kernel state sits behind;
//! - [`memory`], [`paging`], [`cpu`]: frames, the heap and the allocator
//!   every domain shares, translation tables, TLB maintenance;
//! - [`stacks`]: kernel stacks with a guard page below each, and telling
//!   a kernel stack overflow (taken on the exception stack) from other
//!   kernel faults;
//! - [`console`], [`gic`], [`timer`], [`pmu`], [`semihosting`]: devices;
//! - [`domains`], [`clock`]: starting domains from the kernel's own code,
//!   and the kernel object served by kernel activations;
//! - [`esr`]: syndromes in words;
//! - `copy.s` (+ [`copy`]): the one bulk copy, inline in the fast paths
//!   and behind the machine interface's copies.
//!
//! Boards are data ([`BoardConfig`]): a board crate supplies one and
//! invokes [`board_entry!`]. Assembly is in `.s` files pulled in with
//! `global_asm!`, with its constants passed from Rust so the two never
//! disagree. What it must not depend on: any server crate (images compose
//! servers; the kernel knows none). [`paging`], [`esr`] and the arithmetic
//! of [`copy`] are plain Rust and are tested on the host; everything else
//! exists only for the kernel's target.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod copy;
pub mod esr;
pub mod paging;

#[cfg(target_os = "none")]
pub mod clock;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod cpu;
#[cfg(target_os = "none")]
pub mod domains;
#[cfg(target_os = "none")]
pub mod exception;
#[cfg(target_os = "none")]
pub mod fastpath;
#[cfg(target_os = "none")]
pub mod frame;
#[cfg(target_os = "none")]
pub mod gic;
#[cfg(target_os = "none")]
mod glue;
#[cfg(target_os = "none")]
pub mod halt;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod machine;
#[cfg(target_os = "none")]
pub mod memory;
#[cfg(target_os = "none")]
pub mod pmu;
#[cfg(target_os = "none")]
pub mod semihosting;
#[cfg(target_os = "none")]
pub mod stacks;
#[cfg(target_os = "none")]
pub mod state;
#[cfg(target_os = "none")]
pub mod system;
#[cfg(target_os = "none")]
pub mod threads;
#[cfg(target_os = "none")]
pub mod timer;
#[cfg(target_os = "none")]
pub mod upcall;

pub use paging::Table as BootTable;
pub use paging::boot_table;
pub use tern_core::board::BoardConfig;

/// The image's panic handler (installed by [`board_entry!`], which knows
/// the board's domain arena through `allocator`).
///
/// One image holds the kernel and every domain, so a server's safe Rust
/// can panic too (an index out of bounds, say). A panic in a domain's code
/// — protected at EL0 or merged at EL1t, told apart from the kernel by the
/// stack pointer lying in the arena, as the allocator tells heaps apart —
/// is that domain's fault, not the kernel's: it reports the panic through
/// the gate and raises an undefined-instruction exception, which the
/// kernel contains like any fault of a domain (the domain is terminated;
/// a call it was serving returns `CallAborted` to its client). Only a
/// panic in the kernel stops the machine.
#[cfg(target_os = "none")]
pub fn panic(allocator: &memory::TernAllocator, info: &core::panic::PanicInfo<'_>) -> ! {
    if allocator.in_domain() {
        tern_inks::println!("panic in domain code: {}", info.message());
        loop {
            // SAFETY: `udf` only raises an undefined-instruction exception
            // in the domain's own code, which the kernel's domain fault
            // path contains; nothing here returns.
            unsafe { core::arch::asm!("udf #0", options(nomem, nostack)) };
        }
    }
    {
        let mut console = console::CONSOLE.steal();
        let _ = core::fmt::Write::write_fmt(&mut console, format_args!("kernel panic: {info}\nkernel stopped\n"));
    }
    halt::stop(semihosting::ExitStatus::Panic)
}
