//! A polled PL011 driver, the least the loader needs: set the Pi 4's UART
//! up exactly as Tern does, send a byte, take a byte if one is there, wait
//! until everything sent has left.
//!
//! Why not the kernel's driver (`tern_aarch64::console`)? It cannot be had
//! without the kernel: the arch crate brings the kernel's start-up code
//! (its own `_start`), vectors, the defmt logger and `tern-core`, which
//! would collide with this binary and take it far past its 16 KiB. The
//! register values below are the kernel's, from `board/rpi4/src/config.rs`
//! and `arch/aarch64/src/console.rs`: PL011 at 0xfe20_1000 clocked at 48 MHz
//! (`init_uart_clock=48000000` in config.txt), 115200 8N1 with FIFOs,
//! GPIO14/15 in function ALT0 without pulls. QEMU `raspi4b` models the same
//! addresses.
//!
//! What it leaves out: interrupts, flow control, error flags (a framing or
//! overrun error shows up as a wrong CRC-32 and a retry), any other board.

use tern_chainload::BAUD;

/// The BCM2711's PL011 (UART0), in the low-peripheral mode the firmware sets.
const UART_BASE: usize = 0xfe20_1000;
/// The BCM2711's GPIO block.
const GPIO_BASE: usize = 0xfe20_0000;
/// The UART's reference clock (config.txt's `init_uart_clock`).
const UART_CLOCK_HZ: u64 = 48_000_000;

// PL011 flag and control bits (Arm PrimeCell UART TRM, DDI 0183).
const FLAG_TRANSMIT_EMPTY: u32 = 1 << 7;
const FLAG_TRANSMIT_FULL: u32 = 1 << 5;
const FLAG_RECEIVE_EMPTY: u32 = 1 << 4;
const FLAG_BUSY: u32 = 1 << 3;
const LINE_8_BITS_FIFO: u32 = (0b11 << 5) | (1 << 4);
const CONTROL_ENABLE_RX_TX: u32 = (1 << 9) | (1 << 8) | 1;

/// The registers the loader touches: only these can be read or written.
#[derive(Clone, Copy)]
enum Register {
    /// PL011 data.
    Data,
    /// PL011 flags.
    Flags,
    /// PL011 integer baud-rate divisor.
    IntegerBaud,
    /// PL011 fractional baud-rate divisor.
    FractionalBaud,
    /// PL011 line control.
    LineControl,
    /// PL011 control.
    Control,
    /// PL011 interrupt clear.
    InterruptClear,
    /// GPIO function select for pins 10-19 (GPFSEL1).
    FunctionSelect1,
    /// GPIO pull-up/-down for pins 0-15 (GPIO_PUP_PDN_CNTRL_REG0).
    PullControl0,
}

impl Register {
    /// Its address: a fixed offset from the UART's or the GPIO block's base.
    const fn address(self) -> usize {
        match self {
            Register::Data => UART_BASE,
            Register::Flags => UART_BASE + 0x18,
            Register::IntegerBaud => UART_BASE + 0x24,
            Register::FractionalBaud => UART_BASE + 0x28,
            Register::LineControl => UART_BASE + 0x2c,
            Register::Control => UART_BASE + 0x30,
            Register::InterruptClear => UART_BASE + 0x44,
            Register::FunctionSelect1 => GPIO_BASE + 0x04,
            Register::PullControl0 => GPIO_BASE + 0xe4,
        }
    }
}

fn read(register: Register) -> u32 {
    // SAFETY: `Register` names only 32-bit registers of the PL011 and the
    // GPIO block at their fixed BCM2711 addresses (also modelled by QEMU
    // raspi4b): aligned device memory, always readable; with the MMU off it
    // is accessed as Device memory. Reading them has no side effect the
    // loader does not intend (Data pops a received byte).
    unsafe { (register.address() as *const u32).read_volatile() }
}

fn write(register: Register, value: u32) {
    // SAFETY: as in `read`; writing these registers affects only the UART
    // and pins 14/15 (the callers keep other pins' bits as they were).
    unsafe { (register.address() as *mut u32).write_volatile(value) }
}

/// Routes GPIO14/15 to the UART and programs it for [`BAUD`] 8N1.
pub fn init() {
    // Pins 14 and 15: function ALT0 (bits 12-14 and 15-17 of GPFSEL1), no
    // pull-up or -down (bits 28-31 of GPIO_PUP_PDN_CNTRL_REG0).
    let select = read(Register::FunctionSelect1) & !((0b111 << 12) | (0b111 << 15));
    write(Register::FunctionSelect1, select | (0b100 << 12) | (0b100 << 15));
    let pull = read(Register::PullControl0) & !((0b11 << 28) | (0b11 << 30));
    write(Register::PullControl0, pull);

    write(Register::Control, 0);
    while read(Register::Flags) & FLAG_BUSY != 0 {
        core::hint::spin_loop();
    }
    write(Register::LineControl, 0); // flushes the transmit FIFO
    // Divisor = clock / (16 * baud) as 16.6 fixed point, rounded.
    let divisor_times_64 = (UART_CLOCK_HZ * 4 + BAUD as u64 / 2) / BAUD as u64;
    write(Register::IntegerBaud, (divisor_times_64 >> 6) as u32);
    write(Register::FractionalBaud, (divisor_times_64 & 0x3f) as u32);
    write(Register::LineControl, LINE_8_BITS_FIFO);
    write(Register::InterruptClear, 0x7ff);
    write(Register::Control, CONTROL_ENABLE_RX_TX);
}

/// Sends one byte, waiting for room in the FIFO.
#[inline(never)]
pub fn put(byte: u8) {
    while read(Register::Flags) & FLAG_TRANSMIT_FULL != 0 {
        core::hint::spin_loop();
    }
    write(Register::Data, u32::from(byte));
}

/// Sends bytes.
#[inline(never)]
pub fn put_all(bytes: &[u8]) {
    for &byte in bytes {
        put(byte);
    }
}

/// A received byte, if one is waiting.
pub fn try_get() -> Option<u8> {
    if read(Register::Flags) & FLAG_RECEIVE_EMPTY != 0 { None } else { Some(read(Register::Data) as u8) }
}

/// Waits until the transmit FIFO is empty and the last byte has left the
/// wire: the kernel resets the UART first thing, which would cut it short.
pub fn flush() {
    while read(Register::Flags) & (FLAG_TRANSMIT_EMPTY | FLAG_BUSY) != FLAG_TRANSMIT_EMPTY {
        core::hint::spin_loop();
    }
}
