//! Console input: what the UART receives, queued for the console domain.
//!
//! The arch layer's receive interrupt drains the UART's FIFO and hands the
//! bytes to [`Kernel::console_input`]; they wait in a bounded ring
//! ([`ConsoleInput`], [`CONSOLE_INPUT_BYTES`]) until the domain whose role
//! is [`Role::Console`] takes them with [`Call::ConsoleRead`]
//! ([`Kernel::console_read`]). A reader that finds the ring empty waits
//! (state [`ThreadState::ReadingConsole`]) and makes the call again once
//! input wakes it; an alert ends the wait with `Interrupted`, like any
//! blocking call's.
//!
//! Why a ring in the kernel and not the UART's own FIFO: the FIFO holds 16
//! (PL011 r1.3, QEMU) or 32 bytes and overflows while the console domain
//! is not running; the ring holds a few lines of typing. When it is full
//! the *newest* bytes are dropped and counted ([`ConsoleInput::dropped`]):
//! what a person typed first is what a line discipline needs first.
//!
//! Why a role: the input is one stream with one owner. Two readers would
//! each get half of every line; so the kernel names the owner by the role
//! its registration declares (never by its name), and refuses everyone
//! else with `Forbidden`.
//!
//! Left out: output (`ConsoleWrite` stays as it was: the kernel's writer
//! owns the UART's transmit side, so that log frames are never cut),
//! terminal semantics (echo, line editing, signals: the console server's,
//! `servers/console`), and more than one console.

use crate::abi::{Error, Role};
use crate::domain::UserRange;
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::thread::ThreadState;

/// Bytes of console input the kernel holds for the console domain.
pub const CONSOLE_INPUT_BYTES: usize = 1024;

/// A bounded ring of received bytes: first in, first out; full, the
/// newest are dropped and counted.
#[derive(Clone, Debug)]
pub struct ConsoleInput {
    bytes: [u8; CONSOLE_INPUT_BYTES],
    /// Where the oldest byte is.
    head: usize,
    /// Bytes held.
    length: usize,
    /// Bytes dropped because the ring was full, since boot.
    dropped: u64,
}

impl Default for ConsoleInput {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleInput {
    /// An empty ring.
    pub const fn new() -> Self {
        ConsoleInput { bytes: [0; CONSOLE_INPUT_BYTES], head: 0, length: 0, dropped: 0 }
    }

    /// Queue `input`; what does not fit is dropped (and counted). How many
    /// bytes were queued.
    pub fn push(&mut self, input: &[u8]) -> usize {
        let room = CONSOLE_INPUT_BYTES - self.length;
        let taken = input.len().min(room);
        for &byte in &input[..taken] {
            let at = (self.head + self.length) % CONSOLE_INPUT_BYTES;
            self.bytes[at] = byte;
            self.length += 1;
        }
        self.dropped += (input.len() - taken) as u64;
        taken
    }

    /// Move the oldest bytes into `out` (as many as fit); how many.
    pub fn take(&mut self, out: &mut [u8]) -> usize {
        let count = out.len().min(self.length);
        for slot in &mut out[..count] {
            *slot = self.bytes[self.head];
            self.head = (self.head + 1) % CONSOLE_INPUT_BYTES;
        }
        self.length -= count;
        count
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Bytes dropped for want of room since boot.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<M: Machine> Kernel<M> {
    /// Bytes the UART received (from the arch layer's interrupt handler):
    /// queue them and wake every thread waiting to read. Whether a thread
    /// was woken (the caller may then let it run).
    pub fn console_input(&mut self, input: &[u8]) -> bool {
        if input.is_empty() {
            return false;
        }
        self.console.push(input);
        let readers = self.objects.threads_where(|entry| entry.state == ThreadState::ReadingConsole);
        let woke = !readers.is_empty();
        for reader in readers {
            self.wake(reader);
        }
        woke
    }

    /// `ConsoleRead`: x0/x1 the buffer, writable by the caller; the
    /// console domain only.
    pub fn console_read(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let record = self.domain(caller.domain).ok_or(Error::Forbidden)?;
        if record.spec.role != Role::Console {
            return Err(Error::Forbidden);
        }
        let claim = UserRange::new(frame.argument(0), frame.argument(1));
        let checked = record.domain.check_writable(claim)?;
        if checked.length == 0 {
            return Err(Error::InvalidArgument);
        }
        if self.console.is_empty() {
            if let Some(entry) = self.objects.thread_mut(caller.thread) {
                entry.state = ThreadState::ReadingConsole;
            }
            return Ok(Next::BlockThenRepeat);
        }
        let mut bytes = alloc::vec![0u8; checked.length.min(self.console.len())];
        let count = self.console.take(&mut bytes);
        self.machine.write(checked.address, &bytes[..count]);
        Ok(Next::Reply(count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_is_first_in_first_out_across_its_end() {
        let mut ring = ConsoleInput::new();
        let mut out = [0u8; CONSOLE_INPUT_BYTES];
        for round in 0..5u8 {
            let chunk: alloc::vec::Vec<u8> = (0..700).map(|index| (index as u8).wrapping_add(round)).collect();
            assert_eq!(ring.push(&chunk), 700);
            assert_eq!(ring.take(&mut out[..300]), 300);
            assert_eq!(&out[..300], &chunk[..300]);
            assert_eq!(ring.take(&mut out), 400);
            assert_eq!(&out[..400], &chunk[300..]);
            assert!(ring.is_empty());
        }
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn a_full_ring_drops_the_newest_and_counts_them() {
        let mut ring = ConsoleInput::new();
        assert_eq!(ring.push(&[1; CONSOLE_INPUT_BYTES - 2]), CONSOLE_INPUT_BYTES - 2);
        assert_eq!(ring.push(&[2, 3, 4, 5]), 2);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.push(&[6]), 0);
        assert_eq!(ring.dropped(), 3);
        let mut out = [0u8; CONSOLE_INPUT_BYTES];
        assert_eq!(ring.take(&mut out), CONSOLE_INPUT_BYTES);
        assert_eq!(&out[CONSOLE_INPUT_BYTES - 3..], &[1, 2, 3], "the oldest kept, the newest dropped");
        assert_eq!(ring.take(&mut out), 0);
    }
}
