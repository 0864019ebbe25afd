//! The GICv2 interrupt controller (GIC-400 on the Raspberry Pi 4, the
//! emulated GICv2 on QEMU `virt`).
//!
//! Tern uses two interrupts so far: the EL1 physical timer (PPI 30) and
//! the console UART's (an SPI, the board's: see `console`). The
//! distributor must be enabled by the kernel: the Pi firmware's armstub
//! leaves it off.
//!
//! Security state: the Pi firmware and QEMU both start Tern in the
//! non-secure world, where the group registers are read-as-zero /
//! write-ignored and the interrupts are already Group 1; QEMU `virt` without
//! EL3 has no security extension and takes the value we write. Tern asks for
//! Group 0 and enables both groups at the CPU interface with FIQs off
//! (group 0 then signals as IRQ): whichever case holds, the timer arrives as
//! an IRQ and IAR returns its number, never the 1022 that a Group 1
//! interrupt acknowledged through a secure view without AckCtl would give.

use tern_core::board::GicConfig;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    /// Distributor registers (GICv2 architecture specification, 4.3).
    DistributorRegisters {
        (0x000 => control: ReadWrite<u32>),
        (0x004 => type_register: ReadOnly<u32>),
        (0x008 => _reserved0),
        (0x080 => group: [ReadWrite<u32>; 32]),
        (0x100 => set_enable: [ReadWrite<u32>; 32]),
        (0x180 => clear_enable: [ReadWrite<u32>; 32]),
        (0x200 => _reserved1),
        (0x400 => priority: [ReadWrite<u32>; 255]),
        (0x7fc => _reserved2),
        (0x800 => targets: [ReadWrite<u32>; 255]),
        (0xbfc => _reserved3),
        (0x1000 => @END),
    }
}

register_structs! {
    /// CPU interface registers (GICv2 architecture specification, 4.4).
    CpuInterfaceRegisters {
        (0x00 => control: ReadWrite<u32>),
        (0x04 => priority_mask: ReadWrite<u32>),
        (0x08 => binary_point: ReadWrite<u32>),
        (0x0c => acknowledge: ReadOnly<u32>),
        (0x10 => end_of_interrupt: WriteOnly<u32>),
        (0x14 => @END),
    }
}

/// Interrupt numbers at or above this are special (1020-1023): nothing to
/// handle.
const FIRST_SPECIAL: u32 = 1020;

static BASES: spin::Once<GicConfig> = spin::Once::new();

fn distributor() -> &'static DistributorRegisters {
    let config = BASES.get().expect("GIC used before init");
    // SAFETY: the board's GIC distributor is an identity-mapped device window.
    unsafe { &*(config.distributor as *const DistributorRegisters) }
}

fn cpu_interface() -> &'static CpuInterfaceRegisters {
    let config = BASES.get().expect("GIC used before init");
    // SAFETY: the board's GIC CPU interface is an identity-mapped device window.
    unsafe { &*(config.cpu_interface as *const CpuInterfaceRegisters) }
}

/// Bring up the distributor and this core's CPU interface with every
/// interrupt disabled.
pub fn init(config: &GicConfig) {
    BASES.call_once(|| *config);
    let distributor = distributor();
    distributor.control.set(0);
    let lines = ((distributor.type_register.get() & 0x1f) + 1) * 32;
    for word in 0..(lines / 32) as usize {
        distributor.clear_enable[word].set(u32::MAX);
        distributor.group[word].set(0);
    }
    distributor.control.set(0b11); // forward Group 0 and Group 1
    let cpu = cpu_interface();
    cpu.priority_mask.set(0xff);
    cpu.binary_point.set(0);
    cpu.control.set(0b11); // enable both groups; FIQEn = 0: all as IRQ
}

/// Enable interrupt `number` at a middle priority. A shared peripheral
/// interrupt (32 and up) is also sent to CPU 0: a multi-core GIC-400
/// leaves an SPI's targets empty, and an SPI with no target never arrives.
pub fn enable(number: u32) {
    let distributor = distributor();
    let word = (number / 4) as usize;
    let shift = (number % 4) * 8;
    let priority = distributor.priority[word].get() & !(0xff << shift);
    distributor.priority[word].set(priority | (0x80 << shift));
    if number >= 32 {
        let targets = distributor.targets[word].get() & !(0xff << shift);
        distributor.targets[word].set(targets | (0x01 << shift));
    }
    distributor.set_enable[(number / 32) as usize].set(1 << (number % 32));
}

/// Acknowledge the highest-priority pending interrupt: its raw IAR value,
/// or `None` when nothing is pending (spurious).
pub fn acknowledge() -> Option<u32> {
    let raw = cpu_interface().acknowledge.get();
    if raw & 0x3ff >= FIRST_SPECIAL { None } else { Some(raw) }
}

/// Signal the end of handling for an IAR value from [`acknowledge`].
pub fn end_of_interrupt(raw: u32) {
    cpu_interface().end_of_interrupt.set(raw);
}

/// The interrupt number in an IAR value.
pub const fn interrupt_number(raw: u32) -> u32 {
    raw & 0x3ff
}
