//! Boards as data.
//!
//! Everything the kernel needs to know about a board is one
//! [`BoardConfig`] value, written in the board's crate (`board/rpi4`,
//! `board/qemu-virt`) and checked at compile time where it can be. Adding a
//! board means writing one of these and a linker base address, not editing
//! the kernel.

use crate::frame::PhysRange;

/// Bytes of one domain's region (and its alignment): 8 MiB, four level-2
/// blocks.
pub const DOMAIN_REGION: u64 = 8 << 20;

/// Where in a region (from its start) the kernel keeps the domain's **mode
/// word**: 0 while the domain is protected, 1 while it is merged. The
/// service gate reads it (at `SP & !(DOMAIN_REGION - 1)`) to choose between
/// trapping and calling the kernel directly, because EL0 cannot read
/// `CurrentEL`. The domain can write the word too; a protected domain that
/// sets it only makes its own gate fault (the direct entry's first
/// instruction is privileged), a merged one that clears it only traps.
pub const REGION_MODE_OFFSET: u64 = 0;

/// Where in a region (from its start) the kernel keeps the domain's
/// **bound-handle records**: [`crate::abi::HANDLES`] of
/// [`HANDLE_RECORD_BYTES`] each, written by the kernel only
/// (`tern_core::handle`). The gate reads a record's first word, the entry
/// of the handle's path, and branches to it. Like the mode word, the domain
/// can write them: a protected domain only misleads its own gate (the
/// kernel checks every bound call against its own table), and a merged
/// one is trusted.
pub const REGION_HANDLES_OFFSET: u64 = 64;

/// Bytes of one bound-handle record in a region.
pub const HANDLE_RECORD_BYTES: u64 = 32;

/// Where in a region (from its start) the domain's heap record begins:
/// after the mode word and the handle records, on its own cache line.
pub const REGION_HEAP_OFFSET: u64 = 1024;

const _: () = assert!(
    REGION_HANDLES_OFFSET + crate::abi::HANDLES as u64 * HANDLE_RECORD_BYTES <= REGION_HEAP_OFFSET,
    "the handle records overlap the heap"
);

/// Where in a region (from its start) the stacks' part begins: the heap
/// lies below it, stacks are carved from the region's end down to it.
pub const REGION_STACKS_OFFSET: u64 = 4 << 20;

/// Where the kernel sees the domain arena a second time: arena address +
/// this offset, EL1 only, global. The kernel copies between two domains
/// through it (a domain's own view maps its region at its identity
/// address, and the kernel's view does not map the arena there at all).
pub const ARENA_ALIAS_OFFSET: u64 = 0x40_0000_0000;

/// A PL011 UART.
#[derive(Clone, Copy, Debug)]
pub struct UartConfig {
    /// MMIO base of the PL011.
    pub base: u64,
    /// The UART reference clock in Hz (the Pi 4 firmware sets 48 MHz when
    /// `init_uart_clock=48000000` is in `config.txt`).
    pub clock_hz: u32,
    /// Line speed.
    pub baud: u32,
    /// The BCM2711 GPIO block, when the UART's pins need routing
    /// (GPIO14/15 to ALT0); `None` where the UART is always connected.
    pub bcm2711_gpio: Option<u64>,
    /// The UART's interrupt (its GIC interrupt number, an SPI: 32 + the
    /// SPI's index): raised when received bytes wait in its FIFO.
    pub interrupt: u32,
}

/// A GICv2 (GIC-400 on the Pi 4).
#[derive(Clone, Copy, Debug)]
pub struct GicConfig {
    /// Distributor base (GICD).
    pub distributor: u64,
    /// CPU interface base (GICC).
    pub cpu_interface: u64,
}

/// One board.
#[derive(Clone, Copy, Debug)]
pub struct BoardConfig {
    /// Short name, printed at boot (`board: <name>`).
    pub name: &'static str,
    /// What it is, for people.
    pub description: &'static str,
    /// Where the image is linked and entered.
    pub kernel_base: u64,
    /// The physical span RAM may occupy: the frame allocator covers it and
    /// the boot map marks it Normal memory. RAM reported outside it is
    /// left unused.
    pub ram_window: PhysRange,
    /// RAM to assume when the boot loader says nothing.
    pub default_memory: PhysRange,
    /// Memory inside RAM the kernel must never hand out (firmware, spin
    /// tables).
    pub firmware_reserved: PhysRange,
    /// The domain arena: where every protected domain's region lives
    /// ([`DOMAIN_REGION`]-aligned slots). Fixed per board because code in
    /// domains needs it too: the global allocator tells a domain's
    /// allocation from the kernel's by whether the stack pointer lies in it.
    pub domain_arena: PhysRange,
    /// Device windows (mapped Device-nGnRE, EL1 only).
    pub devices: &'static [PhysRange],
    /// The console UART.
    pub uart: UartConfig,
    /// The interrupt controller.
    pub gic: GicConfig,
    /// The EL1 physical timer's interrupt (a PPI).
    pub timer_interrupt: u32,
}
