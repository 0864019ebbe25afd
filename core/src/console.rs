//! Console input: what the UART receives, queued for the console domain.
//!
//! The arch layer's receive interrupt drains the UART's FIFO and hands the
//! bytes to [`Kernel::console_input`]; they wait in a bounded ring
//! ([`crate::input::ConsoleInput`], the objects' layer, so that the kernel
//! state holds it without importing this behaviour) until the domain whose role
//! is [`Role::Console`] takes them with [`crate::abi::Call::ConsoleRead`]
//! ([`Kernel::console_read`]). A reader that finds the ring empty waits
//! (state [`ThreadState::ReadingConsole`]) and makes the call again once
//! input wakes it; an alert ends the wait with `Interrupted`, like any
//! blocking call's.
//!
//! Why a ring in the kernel and not the UART's own FIFO: the FIFO holds 16
//! (PL011 r1.3, QEMU) or 32 bytes and overflows while the console domain
//! is not running; the ring holds a few lines of typing. When it is full
//! the *newest* bytes are dropped and counted (`ConsoleInput::dropped`):
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
