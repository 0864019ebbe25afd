//! # The Raspberry Pi 4 Model B, as data
//!
//! Where the BCM2711's peripherals are, how its UART is clocked, where the
//! firmware leaves things; shared by both of this board's images
//! (`src/main.rs`, `src/harness.rs`). The image is linked and entered at
//! 0x80000 at EL2, exactly as the Pi firmware (and QEMU `raspi4b`, which
//! mimics it) leaves it; cores 1-3 stay parked in the firmware's spin table
//! (its mailboxes at 0xd8..0xf0 are left untouched) until Tern grows SMP.
//!
//! RAM: the firmware's device tree (or QEMU's ATAGs) says how much; Tern
//! uses what lies below 3 GiB for now (the 0xC000_0000 gigabyte holds the
//! peripherals in the low-peripheral mode the firmware sets up).

use tern_aarch64::BoardConfig;
use tern_core::board::{GicConfig, UartConfig};
use tern_core::frame::PhysRange;

/// The BCM2711 as Tern uses it.
pub const RASPBERRY_PI_4: BoardConfig = BoardConfig {
    name: "rpi4",
    description: "Raspberry Pi 4 Model B, BCM2711, GIC-400",
    kernel_base: 0x8_0000,
    ram_window: PhysRange::new(0, 0xc000_0000),
    default_memory: PhysRange::new(0, 0x3b40_0000),
    firmware_reserved: PhysRange::new(0, 0x8_0000),
    domain_arena: PhysRange::new(0x2000_0000, 0x2800_0000),
    devices: &[PhysRange::new(0xfe00_0000, 0x1_0000_0000)],
    // UART0 is VideoCore interrupt 57; the GIC-400 sees the VideoCore's
    // interrupts from SPI 64 on, so SPI 121 = INTID 153 (QEMU's `raspi4b`
    // wires its PL011 to the same SPI).
    uart: UartConfig {
        base: 0xfe20_1000,
        clock_hz: 48_000_000,
        baud: 115_200,
        bcm2711_gpio: Some(0xfe20_0000),
        interrupt: 32 + 121,
    },
    gic: GicConfig { distributor: 0xff84_1000, cpu_interface: 0xff84_2000 },
    timer_interrupt: 30,
};
