//! # tern-aarch64: Tern on 64-bit Arm
//!
//! The part of Tern that touches the machine, and the *glue* in the paper's
//! sense (Ford & Lepreau §4.1): the code that moves a thread between
//! protection domains, the kernel included.
//!
//! - `boot.s` (+ [`kernel`]): from the boot loader's hand-off (EL3, EL2 or
//!   EL1) to EL1 with the MMU on, then the boot sequence;
//! - `vectors.s` (+ [`exception`], [`syscall`]): exception vectors, trap
//!   frames, kernel calls, fault containment;
//! - `upcall.s` (+ [`upcall`]): upcalls from the kernel-based thread into a
//!   domain, and back;
//! - [`memory`], [`domains`]: frames, heap, the kernel's view and each
//!   domain's view;
//! - [`console`], [`gic`], [`timer`], [`semihosting`]: devices;
//! - [`scenario`], [`probes`]: what a boot does, and the misbehaving
//!   domains that show containment.
//!
//! Boards are data ([`BoardConfig`]): a board crate supplies one and
//! invokes [`board_entry!`]. Assembly is in `.s` files pulled in with
//! `global_asm!`, with its constants passed from Rust so the two never
//! disagree.
#![no_std]

extern crate alloc;

pub mod bench;
pub mod console;
pub mod cpu;
pub mod domains;
pub mod exception;
pub mod gic;
pub mod kernel;
pub mod memory;
pub mod pmu;
pub mod probes;
pub mod rpc;
pub mod scenario;
pub mod semihosting;
pub mod state;
pub mod syscall;
pub mod threads;
pub mod timer;
pub mod upcall;

pub use tern_core::board::BoardConfig;
pub use tern_core::paging::Table as BootTable;
pub use tern_core::paging::boot_table;

use tern_core::paging::MAIR_VALUE;

/// SCTLR_EL1's reserved-one bits (Armv8.0), the value set before the MMU is on.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// SCTLR_EL1 for the kernel: MMU (M), data cache (C), stack alignment
/// checks at EL1 and EL0 (SA, SA0), instruction cache (I), and EL0 may use
/// `dc zva` (DZE) so memset in domains works. WFI/WFE at EL0 trap.
const SCTLR_EL1_KERNEL: u64 = SCTLR_EL1_RESET | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12) | (1 << 14);
/// TCR_EL1 without IPS and AS (filled in from the CPU's ID registers):
/// T0SZ = 25 (39-bit addresses), inner/outer write-back walks, inner
/// shareable, 4 KiB granule; TTBR1 walks disabled (EPD1) with a valid TG1.
const TCR_EL1_BASE: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 30);
/// SCR_EL3 when leaving EL3: NS, RES1 bits 4-5, HVC enabled, EL2 is AArch64.
const SCR_EL3: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10);
/// HCR_EL2: EL1 is AArch64; nothing trapped to EL2.
const HCR_EL2: u64 = 1 << 31;
/// CPTR_EL2: reserved-one bits only, so FP/SIMD is not trapped.
const CPTR_EL2: u64 = 0x33ff;

core::arch::global_asm!(
    include_str!("boot.s"),
    scr_el3 = const SCR_EL3,
    hcr_el2 = const HCR_EL2,
    cptr_el2 = const CPTR_EL2,
    sctlr_el1_reset = const SCTLR_EL1_RESET,
    sctlr_el1_kernel = const SCTLR_EL1_KERNEL,
    mair = const MAIR_VALUE,
    tcr = const TCR_EL1_BASE,
);

core::arch::global_asm!(
    include_str!("vectors.s"),
    frame_size = const exception::FRAME_SIZE,
    irq_frame_size = const exception::INTERRUPT_FRAME_SIZE,
    null_call = const tern_core::abi::Call::Null as usize,
);

core::arch::global_asm!(include_str!("upcall.s"));
core::arch::global_asm!(include_str!("switch.s"));

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    {
        let mut console = console::CONSOLE.steal();
        let _ = core::fmt::Write::write_fmt(&mut console, format_args!("kernel panic: {info}\nkernel stopped\n"));
    }
    exception::stop(semihosting::ExitStatus::Panic)
}
