//! The console input ring: bytes the UART received, waiting for the
//! console domain (the behaviour, `ConsoleRead` and the interrupt's
//! hand-over, is [`crate::console`]'s).
//!
//! A plain data structure in the objects' layer, so that the kernel state
//! ([`crate::kernel::Kernel`]) can hold one without importing the
//! behaviour that uses it. First in, first out; when full, the *newest*
//! bytes are dropped and counted: what a person typed first is what a line
//! discipline needs first.
//!
//! Left out: any notion of lines or of who reads (the console domain's and
//! the kernel call's).

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
