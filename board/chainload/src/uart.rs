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

// PL011 registers (Arm PrimeCell UART TRM, DDI 0183) and bits.
const DATA: usize = 0x00;
const FLAGS: usize = 0x18;
const INTEGER_BAUD: usize = 0x24;
const FRACTIONAL_BAUD: usize = 0x28;
const LINE_CONTROL: usize = 0x2c;
const CONTROL: usize = 0x30;
const INTERRUPT_CLEAR: usize = 0x44;
const FLAG_TRANSMIT_EMPTY: u32 = 1 << 7;
const FLAG_TRANSMIT_FULL: u32 = 1 << 5;
const FLAG_RECEIVE_EMPTY: u32 = 1 << 4;
const FLAG_BUSY: u32 = 1 << 3;
const LINE_8_BITS_FIFO: u32 = (0b11 << 5) | (1 << 4);
const CONTROL_ENABLE_RX_TX: u32 = (1 << 9) | (1 << 8) | 1;

// GPIO registers.
const FUNCTION_SELECT_1: usize = 0x04;
const PULL_CONTROL_0: usize = 0xe4;

fn read(address: usize) -> u32 {
    // SAFETY: every caller passes a register of the PL011 or the GPIO block
    // above: device memory that exists on the BCM2711 (and QEMU raspi4b),
    // always readable; with the MMU off it is accessed as Device memory.
    unsafe { (address as *const u32).read_volatile() }
}

fn write(address: usize, value: u32) {
    // SAFETY: as in `read`; writing these registers affects only the UART
    // and pins 14/15 (the callers keep other pins' bits as they were).
    unsafe { (address as *mut u32).write_volatile(value) }
}

/// Routes GPIO14/15 to the UART and programs it for [`BAUD`] 8N1.
pub fn init() {
    // Pins 14 and 15: function ALT0 (bits 12-14 and 15-17 of GPFSEL1), no
    // pull-up or -down (bits 28-31 of GPIO_PUP_PDN_CNTRL_REG0).
    let select = read(GPIO_BASE + FUNCTION_SELECT_1) & !((0b111 << 12) | (0b111 << 15));
    write(GPIO_BASE + FUNCTION_SELECT_1, select | (0b100 << 12) | (0b100 << 15));
    let pull = read(GPIO_BASE + PULL_CONTROL_0) & !((0b11 << 28) | (0b11 << 30));
    write(GPIO_BASE + PULL_CONTROL_0, pull);

    write(UART_BASE + CONTROL, 0);
    while read(UART_BASE + FLAGS) & FLAG_BUSY != 0 {
        core::hint::spin_loop();
    }
    write(UART_BASE + LINE_CONTROL, 0); // flushes the transmit FIFO
    // Divisor = clock / (16 * baud) as 16.6 fixed point, rounded.
    let divisor_times_64 = (UART_CLOCK_HZ * 4 + BAUD as u64 / 2) / BAUD as u64;
    write(UART_BASE + INTEGER_BAUD, (divisor_times_64 >> 6) as u32);
    write(UART_BASE + FRACTIONAL_BAUD, (divisor_times_64 & 0x3f) as u32);
    write(UART_BASE + LINE_CONTROL, LINE_8_BITS_FIFO);
    write(UART_BASE + INTERRUPT_CLEAR, 0x7ff);
    write(UART_BASE + CONTROL, CONTROL_ENABLE_RX_TX);
}

/// Sends one byte, waiting for room in the FIFO.
#[inline(never)]
pub fn put(byte: u8) {
    while read(UART_BASE + FLAGS) & FLAG_TRANSMIT_FULL != 0 {
        core::hint::spin_loop();
    }
    write(UART_BASE + DATA, u32::from(byte));
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
    if read(UART_BASE + FLAGS) & FLAG_RECEIVE_EMPTY != 0 { None } else { Some(read(UART_BASE + DATA) as u8) }
}

/// Waits until the transmit FIFO is empty and the last byte has left the
/// wire: the kernel resets the UART first thing, which would cut it short.
pub fn flush() {
    while read(UART_BASE + FLAGS) & (FLAG_TRANSMIT_EMPTY | FLAG_BUSY) != FLAG_TRANSMIT_EMPTY {
        core::hint::spin_loop();
    }
}
