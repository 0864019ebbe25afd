//! # QEMU `virt` (cortex-a72), as data
//!
//! QEMU's `virt` machine with a GICv2 and one PL011; shared by both of this
//! board's images (`src/main.rs`, `src/harness.rs`). The raw image is
//! loaded at 0x4008_0000 and entered at EL1 with x0 pointing at the device
//! tree (0x4800_0000), which gives the RAM size and the command line
//! (`-append`). Secondary cores stay powered off (PSCI CPU_ON is never
//! called) until Tern grows SMP.

use tern_aarch64::BoardConfig;
use tern_core::board::{GicConfig, UartConfig};
use tern_core::frame::PhysRange;

/// QEMU `virt` as Tern uses it.
pub const QEMU_VIRT: BoardConfig = BoardConfig {
    name: "qemu-virt",
    description: "QEMU virt, cortex-a72, GICv2",
    kernel_base: 0x4008_0000,
    ram_window: PhysRange::new(0x4000_0000, 0x1_0000_0000),
    default_memory: PhysRange::new(0x4000_0000, 0x4800_0000),
    firmware_reserved: PhysRange::new(0x4000_0000, 0x4008_0000),
    domain_arena: PhysRange::new(0x6000_0000, 0x6800_0000),
    devices: &[PhysRange::new(0x0800_0000, 0x0802_0000), PhysRange::new(0x0900_0000, 0x0900_1000)],
    // The PL011 is SPI 1 (the device tree QEMU builds for `virt` says so).
    uart: UartConfig { base: 0x0900_0000, clock_hz: 24_000_000, baud: 115_200, bcm2711_gpio: None, interrupt: 32 + 1 },
    gic: GicConfig { distributor: 0x0800_0000, cpu_interface: 0x0801_0000 },
    timer_interrupt: 30,
};
