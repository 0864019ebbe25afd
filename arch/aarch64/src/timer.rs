//! The EL1 physical timer: periodic ticks.
//!
//! The generic timer's frequency differs by board (62.5 MHz in QEMU, 54 MHz
//! on a real Pi 4), so it is always read from CNTFRQ_EL0. Each tick re-arms
//! the timer relative to now (TVAL): simple, and a late tick never causes a
//! burst of catch-up interrupts.

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTP_CTL_EL0, CNTP_TVAL_EL0, CNTPCT_EL0};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use tock_registers::interfaces::{Readable, Writeable};

/// Ticks per second.
pub const TICK_HZ: u32 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);
static INTERVAL: AtomicU32 = AtomicU32::new(0);
static INTERRUPT: AtomicU32 = AtomicU32::new(u32::MAX);

/// The counter's frequency in Hz.
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// The counter's current value.
pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

/// Microseconds since the counter started (for log timestamps).
pub fn microseconds() -> u64 {
    let frequency = frequency().max(1);
    (counter() as u128 * 1_000_000 / frequency as u128) as u64
}

/// Start periodic ticks at [`TICK_HZ`], arriving as interrupt `interrupt`
/// (the board's). The GIC must route it for them to arrive.
pub fn start(interrupt: u32) {
    INTERRUPT.store(interrupt, Ordering::Relaxed);
    let interval = (frequency() / TICK_HZ as u64) as u32;
    INTERVAL.store(interval, Ordering::Relaxed);
    CNTP_TVAL_EL0.set(interval as u64);
    CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
}

/// The timer's interrupt number (once started).
pub fn interrupt() -> u32 {
    INTERRUPT.load(Ordering::Relaxed)
}

/// Handle the timer interrupt: count the tick and re-arm.
pub fn on_interrupt() {
    CNTP_TVAL_EL0.set(INTERVAL.load(Ordering::Relaxed) as u64);
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since [`start`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The address of the tick counter: kernel data that the containment
/// probes try to reach from EL0.
pub fn tick_counter_address() -> usize {
    &TICKS as *const AtomicU64 as usize
}
