//! The console: a PL011 UART carrying two interleaved streams.
//!
//! Tern has one UART on every board it supports (QEMU `raspi4b` and `virt`
//! model one PL011; on a real Pi 4 it is the one on GPIO14/15). Two kinds
//! of output share it:
//!
//! - **console text** — the banner, fault reports, whatever domains print —
//!   readable in any terminal;
//! - **defmt log frames** — compact binary records decoded on the host by
//!   `cargo xtask` with the ELF's string table.
//!
//! They are separated by framing, not by channel: a defmt frame is the byte
//! `0x01`, the frame's rzCOBS encoding (which never contains `0x00`), and
//! a `0x00` terminator. Console text never contains `0x00` or `0x01` (they
//! are replaced by `?` on the way out), so the host's demultiplexer can
//! always tell the two apart, even after garbage. One lock covers the UART
//! and a frame is written while holding it, so a frame is never cut by
//! text. We chose framing over a second channel because neither QEMU board
//! models a second usable UART and semihosting does not exist on a real Pi;
//! the price is that a plain terminal shows frames as a few stray bytes
//! (use `cargo xtask qemu`, or log at a lower level, to avoid them).
//!
//! Input: the receive interrupt ([`Console::drain_received`], called by
//! the IRQ handler) moves what arrived into the kernel's console ring
//! (`tern_core::console`), for the console domain to read; nothing here
//! interprets it.
//!
//! The lock masks IRQs while held, so an interrupt handler that prints
//! cannot deadlock against the code it interrupted on the same core. A
//! fault report may *steal* the lock (see [`Console::steal`]): a kernel that
//! faulted while printing must still be able to say so.

use crate::cpu;
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use tern_core::board::UartConfig;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [u32,
    /// Flag register.
    FLAGS [
        /// Transmit FIFO full.
        TRANSMIT_FULL OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RECEIVE_EMPTY OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    /// Line control register.
    LINE_CONTROL [
        /// Word length: 0b11 = 8 bits.
        WORD_LENGTH OFFSET(5) NUMBITS(2) [EightBits = 0b11],
        /// Enable the FIFOs.
        FIFO_ENABLE OFFSET(4) NUMBITS(1) []
    ],
    /// Control register.
    CONTROL [
        /// Receive enable.
        RECEIVE_ENABLE OFFSET(9) NUMBITS(1) [],
        /// Transmit enable.
        TRANSMIT_ENABLE OFFSET(8) NUMBITS(1) [],
        /// UART enable.
        UART_ENABLE OFFSET(0) NUMBITS(1) []
    ]
];

register_structs! {
    /// The PL011's registers (Arm PrimeCell UART TRM, DDI 0183).
    Pl011Registers {
        (0x00 => data: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => flags: ReadOnly<u32, FLAGS::Register>),
        (0x1c => _reserved1),
        (0x24 => integer_baud: WriteOnly<u32>),
        (0x28 => fractional_baud: WriteOnly<u32>),
        (0x2c => line_control: ReadWrite<u32, LINE_CONTROL::Register>),
        (0x30 => control: ReadWrite<u32, CONTROL::Register>),
        (0x34 => fifo_level: ReadWrite<u32>),
        (0x38 => interrupt_mask: ReadWrite<u32>),
        (0x3c => _reserved2),
        (0x44 => interrupt_clear: WriteOnly<u32>),
        (0x48 => @END),
    }
}

/// The receive interrupts (mask, raw status and clear registers alike):
/// RXIM, the FIFO reached its level, and RTIM, bytes sat in it unread for
/// 32 bit periods.
const RECEIVE_INTERRUPTS: u32 = (1 << 4) | (1 << 6);

/// The UART's interrupt number, once its receive interrupt is enabled.
static RECEIVE_INTERRUPT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(u32::MAX);

/// The UART's interrupt number (`u32::MAX` until
/// [`Console::enable_receive_interrupt`]).
pub fn receive_interrupt() -> u32 {
    RECEIVE_INTERRUPT.load(Ordering::Relaxed)
}

/// The console: the UART's registers and the lock that serialises them.
pub struct Console {
    registers: core::sync::atomic::AtomicUsize,
    locked: AtomicBool,
}

/// The one console.
pub static CONSOLE: Console =
    Console { registers: core::sync::atomic::AtomicUsize::new(0), locked: AtomicBool::new(false) };

/// Holding the console: output goes straight to the UART. Dropping it
/// releases the lock and restores the interrupt mask.
pub struct ConsoleGuard {
    saved_interrupts: u64,
}

fn registers() -> Option<&'static Pl011Registers> {
    let base = CONSOLE.registers.load(Ordering::Relaxed);
    if base == 0 {
        return None;
    }
    // SAFETY: `base` was set by `Console::init` from the board's PL011
    // address, which the kernel maps as Device memory for its whole life.
    Some(unsafe { &*(base as *const Pl011Registers) })
}

fn put_byte(byte: u8) {
    if let Some(uart) = registers() {
        while uart.flags.is_set(FLAGS::TRANSMIT_FULL) {
            core::hint::spin_loop();
        }
        uart.data.set(byte as u32);
    }
}

impl Console {
    /// Program the UART the way the real hardware needs it (on QEMU most of
    /// this is ignored, but the Pi needs every step): route the pins, stop
    /// the UART, drain, set the baud divisors for the board's clock, 8N1
    /// with FIFOs, clear interrupts, enable.
    pub fn init(&self, config: &UartConfig) {
        if let Some(gpio) = config.bcm2711_gpio {
            route_bcm2711_uart_pins(gpio);
        }
        // SAFETY: the board's PL011 address is an identity-mapped device
        // window in the boot map and in the kernel's tables.
        let uart = unsafe { &*(config.base as *const Pl011Registers) };
        uart.control.set(0);
        while uart.flags.is_set(FLAGS::BUSY) {
            core::hint::spin_loop();
        }
        uart.line_control.set(0); // flush the transmit FIFO
        // Divisor = clock / (16 * baud), as a 16.6 fixed-point number.
        let divisor_times_64 = (config.clock_hz as u64 * 4 + config.baud as u64 / 2) / config.baud as u64;
        uart.integer_baud.set((divisor_times_64 >> 6) as u32);
        uart.fractional_baud.set((divisor_times_64 & 0x3f) as u32);
        uart.line_control.write(LINE_CONTROL::WORD_LENGTH::EightBits + LINE_CONTROL::FIFO_ENABLE::SET);
        uart.interrupt_clear.set(0x7ff);
        uart.control.write(CONTROL::UART_ENABLE::SET + CONTROL::TRANSMIT_ENABLE::SET + CONTROL::RECEIVE_ENABLE::SET);
        self.registers.store(config.base as usize, Ordering::Release);
    }

    /// Take the console, masking IRQs until the guard drops.
    pub fn lock(&self) -> ConsoleGuard {
        let saved_interrupts = cpu::mask_interrupts();
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            core::hint::spin_loop();
        }
        ConsoleGuard { saved_interrupts }
    }

    /// Take the console even if someone holds it (after a bounded wait):
    /// for fault and panic reports only, when the holder may be the code
    /// that faulted. Starts with a lone `0x00`, which ends any defmt frame
    /// the holder may have left half-written (the host drops it otherwise).
    pub fn steal(&self) -> ConsoleGuard {
        let saved_interrupts = cpu::mask_interrupts();
        let mut spins = 0;
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
            && spins < 1_000_000
        {
            spins += 1;
            core::hint::spin_loop();
        }
        self.locked.store(true, Ordering::Relaxed);
        put_byte(0x00);
        ConsoleGuard { saved_interrupts }
    }

    /// Have the UART interrupt when bytes arrive (at the board's interrupt
    /// number, which the GIC must route): when its receive FIFO is an
    /// eighth full, or holds bytes nobody has read for a while.
    pub fn enable_receive_interrupt(&self, interrupt: u32) {
        RECEIVE_INTERRUPT.store(interrupt, Ordering::Relaxed);
        if let Some(uart) = registers() {
            uart.fifo_level.set(0); // receive and transmit levels: 1/8
            uart.interrupt_clear.set(RECEIVE_INTERRUPTS);
            uart.interrupt_mask.set(RECEIVE_INTERRUPTS);
        }
    }

    /// The receive interrupt's work: clear the interrupt, then move what
    /// the receive FIFO holds into `out` (at most its length); how many
    /// bytes. Clearing first matters: a byte that arrives after the last
    /// look at the FIFO raises the interrupt again, where clearing last
    /// would lose that interrupt (and QEMU's PL011 raises it only when the
    /// FIFO's count *reaches* the level, so the byte would sit there for
    /// good). The FIFO is read without the console's lock: the lock
    /// serialises the transmit side, which reading does not touch.
    pub fn drain_received(&self, out: &mut [u8]) -> usize {
        let Some(uart) = registers() else { return 0 };
        uart.interrupt_clear.set(RECEIVE_INTERRUPTS);
        let mut count = 0;
        while count < out.len() && !uart.flags.is_set(FLAGS::RECEIVE_EMPTY) {
            // Bits 8-11 are the byte's error flags (framing, parity,
            // break, overrun); the byte is passed on either way.
            out[count] = uart.data.get() as u8;
            count += 1;
        }
        count
    }

    /// Read a byte if one has arrived.
    pub fn try_read(&self) -> Option<u8> {
        let uart = registers()?;
        if uart.flags.is_set(FLAGS::RECEIVE_EMPTY) { None } else { Some(uart.data.get() as u8) }
    }
}

impl ConsoleGuard {
    /// Write console text: `\n` becomes `\r\n`; the framing bytes 0x00 and
    /// 0x01 become `?`.
    pub fn write_text(&mut self, text: &str) {
        for byte in text.bytes() {
            match byte {
                b'\n' => {
                    put_byte(b'\r');
                    put_byte(b'\n');
                }
                0x00 | 0x01 => put_byte(b'?'),
                _ => put_byte(byte),
            }
        }
    }
}

impl fmt::Write for ConsoleGuard {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.write_text(text);
        Ok(())
    }
}

impl Drop for ConsoleGuard {
    fn drop(&mut self) {
        CONSOLE.locked.store(false, Ordering::Release);
        cpu::restore_interrupts(self.saved_interrupts);
    }
}

/// Connect GPIO14/15 to the PL011 (function ALT0) with no pull resistors,
/// as the BCM2711 needs (its reset state leaves them as inputs).
fn route_bcm2711_uart_pins(gpio: u64) {
    const FUNCTION_SELECT_1: u64 = 0x04;
    const PULL_CONTROL_0: u64 = 0xe4;
    const ALT0: u32 = 0b100;
    // SAFETY: `gpio` is the board's GPIO block, an identity-mapped device
    // window; these two registers control only pins 10-19 and 0-15.
    unsafe {
        let select = (gpio + FUNCTION_SELECT_1) as *mut u32;
        let mut value = select.read_volatile();
        value &= !((0b111 << 12) | (0b111 << 15));
        value |= (ALT0 << 12) | (ALT0 << 15);
        select.write_volatile(value);
        let pull = (gpio + PULL_CONTROL_0) as *mut u32;
        let mut value = pull.read_volatile();
        value &= !((0b11 << 28) | (0b11 << 30));
        pull.write_volatile(value);
    }
}

/// Print console text: `kprint!("x = {}", x)`.
#[macro_export]
macro_rules! kprint {
    ($($argument:tt)*) => {{
        let mut guard = $crate::console::CONSOLE.lock();
        let _ = core::fmt::Write::write_fmt(&mut guard, format_args!($($argument)*));
    }};
}

/// Print a line of console text.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($argument:tt)*) => {{
        let mut guard = $crate::console::CONSOLE.lock();
        let _ = core::fmt::Write::write_fmt(&mut guard, format_args!($($argument)*));
        guard.write_text("\n");
    }};
}

// ---------------------------------------------------------------------------
// defmt: the log channel.

#[defmt::global_logger]
struct Logger;

/// The open frame's guard and encoder, valid between acquire and release.
struct LogState {
    guard: Option<ConsoleGuard>,
    encoder: defmt::Encoder,
}

struct LogCell(core::cell::UnsafeCell<LogState>);

// SAFETY: the state is only touched between `acquire` and `release`, which
// hold the console lock (with IRQs masked), so one core at a time.
unsafe impl Sync for LogCell {}

static LOG: LogCell = LogCell(core::cell::UnsafeCell::new(LogState { guard: None, encoder: defmt::Encoder::new() }));

fn write_encoded(bytes: &[u8]) {
    for &byte in bytes {
        put_byte(byte);
    }
}

// SAFETY: `acquire` takes the console lock and `release` gives it back, so
// frames are written one at a time and never interleave with text; defmt
// calls `write`/`flush` only between the two.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let guard = CONSOLE.lock();
        // SAFETY: we hold the console lock, so nobody else touches LOG.
        let state = unsafe { &mut *LOG.0.get() };
        state.guard = Some(guard);
        // The encoder's very first frame starts with a 0x00 separator for
        // resynchronisation; our 0x01 marker does that job, so drop it.
        state.encoder.start_frame(|_| {});
        put_byte(0x01);
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, with the console lock held.
        let state = unsafe { &mut *LOG.0.get() };
        state.encoder.end_frame(write_encoded);
        // Dropping the guard releases the console.
        state.guard = None;
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called after `acquire`, with the console lock held.
        let state = unsafe { &mut *LOG.0.get() };
        state.encoder.write(bytes, write_encoded);
    }
}

defmt::timestamp!("{=u64:us}", crate::timer::microseconds());
