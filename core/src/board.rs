//! Boards as data.
//!
//! Everything the kernel needs to know about a board is one
//! [`BoardConfig`] value, written in the board's crate (`board/rpi4`,
//! `board/qemu-virt`) and checked at compile time where it can be. Adding a
//! board means writing one of these and a linker base address, not editing
//! the kernel.

use crate::frame::PhysRange;

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
    /// Device windows (mapped Device-nGnRE, EL1 only).
    pub devices: &'static [PhysRange],
    /// The console UART.
    pub uart: UartConfig,
    /// The interrupt controller.
    pub gic: GicConfig,
    /// The EL1 physical timer's interrupt (a PPI).
    pub timer_interrupt: u32,
}
