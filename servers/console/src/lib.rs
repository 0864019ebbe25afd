//! # tern-console: the console server
//!
//! `console` owns what a person types: it is the one domain the kernel
//! lets read console input (its registration declares
//! `Role::Console`; `ConsoleRead`, kernel call 46, refuses every other
//! domain), it runs the line discipline ([`editor`]: echo, Backspace/DEL,
//! `^U`, the arrows for history and the cursor, Enter) and it recognises
//! `^C` and `^Z`, which it hands to whoever waits for signals. It writes
//! only through `ConsoleWrite`: the kernel keeps the UART's transmit side,
//! so kernel log lines and defmt frames are never cut by a domain's output
//! (see `docs/console.md` and the decision record in `docs/design.md`).
//!
//! Its main client is the shell: a thread reading lines (with a prompt),
//! and a thread waiting for signals, which acts on the foreground job.
//! The console never touches jobs: authority over them is the shell's.
//!
//! Protocol (the request's label is the operation; reply labels are
//! statuses):
//!
//! | operation | request payload | reply |
//! |---|---|---|
//! | [`READ_LINE`] = 1 | a prompt to show first (UTF-8; may be empty) | [`OK`] with the line (no terminator), [`CANCELLED`] (`^C` dropped it), [`INTERRUPTED`] |
//! | [`WRITE`] = 2 | text (UTF-8; other bytes show as U+FFFD) | [`OK`] |
//! | [`WAIT_SIGNAL`] = 3 | nothing | [`OK`] with one byte, the signal's code ([`Signal::code`]: 3 `^C`, 26 `^Z`), or [`INTERRUPTED`] |
//!
//! Any other label is answered [`BAD_REQUEST`]. [`READ_LINE`] and
//! [`WAIT_SIGNAL`] block; an alert that reaches the waiting activation
//! (the caller alerting its own thread, which the console's activation
//! lets through) ends the wait with [`INTERRUPTED`]. A line finished while
//! nobody reads is kept for the next [`READ_LINE`] (type-ahead, at most
//! [`LINES_MAX`]); so is a signal ([`SIGNALS_MAX`]). `^C` while a
//! [`READ_LINE`] waits also ends that read with [`CANCELLED`].
//!
//! **How it waits.** Nothing reads input unless someone waits for a line
//! or a signal: the first waiter becomes the *reader* (blocked in
//! `ConsoleRead`), the others sleep. When the reader has fed what it read
//! through the editor, it alerts the sleepers (a *poke*), which look for
//! what they wait for; one that is still waiting takes over reading when
//! the reader leaves. A sleeper sleeps in slices ([`SLEEP_SLICE`]), so a
//! poke that arrives just before its sleep starts costs at most one
//! slice. The state is behind one lock that a waiter never spins on: the
//! waiters run on their callers' threads, at their priorities, so a waiter
//! spinning for a lock that a less urgent caller holds would keep the
//! processor from it for good; instead it sleeps to the next tick (see
//! `tern_inks::sync::Mutex`). The server thus has no thread of its own, only its
//! pool: at rest no activation of it is occupied, so it can be merged into
//! the kernel domain, and it works the same way merged or protected.
//!
//! [`Console`] is the client API: the same encoding as the server's.
//!
//! Left out: raw mode (bytes as typed, for a full-screen program), more
//! than one terminal, UTF-8 input (see [`editor`]), and output flow
//! control.
//!
//! A production server: in every image through `board/image`. It has no
//! `unsafe` (merging it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod editor;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
pub use editor::Signal;
use editor::{Editor, Event};
use tern_core::abi::{Error, PortName};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(CONSOLE, "console", main, Console);

/// The name `console` registers its port under.
pub const NAME: &str = "console";

/// Request label: show the payload as a prompt, then wait for a line.
pub const READ_LINE: u32 = 1;
/// Request label: write the payload to the console.
pub const WRITE: u32 = 2;
/// Request label: wait for `^C` or `^Z`.
pub const WAIT_SIGNAL: u32 = 3;

/// Reply label: done (with the line or the signal).
pub const OK: u32 = 0;
/// Reply label: the operation is unknown.
pub const BAD_REQUEST: u32 = 2;
/// Reply label: an alert ended the wait.
pub const INTERRUPTED: u32 = 5;
/// Reply label: `^C` dropped the line being typed.
pub const CANCELLED: u32 = 6;

/// Finished lines kept for a later [`READ_LINE`]; more are dropped.
pub const LINES_MAX: usize = 16;
/// Signals kept for a later [`WAIT_SIGNAL`]; more are dropped.
pub const SIGNALS_MAX: usize = 8;
/// How long a waiter sleeps before it looks again, in counter ticks
/// (about 35 ms on both boards' counters).
pub const SLEEP_SLICE: usize = 2_000_000;

/// What a waiter waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Line,
    Signal,
}

/// What a waiter got.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    Line(Vec<u8>),
    Cancelled,
    Signal(Signal),
}

/// The console's state, behind one lock.
#[derive(Debug, Default)]
struct State {
    editor: Editor,
    /// Finished lines (`None`: one `^C` cancelled).
    lines: VecDeque<Option<Vec<u8>>>,
    signals: VecDeque<Signal>,
    /// A waiter is in `ConsoleRead`.
    reading: bool,
    /// Waiters asleep, by activation.
    sleepers: Vec<usize>,
    /// Activations poked and not yet seen to take the poke.
    poked: Vec<usize>,
    /// [`READ_LINE`]s in progress.
    line_readers: usize,
}

impl State {
    /// Feed input through the editor; the echo.
    fn absorb(&mut self, input: &[u8]) -> Vec<u8> {
        let mut echo = Vec::new();
        for &byte in input {
            match self.editor.feed(byte, &mut echo) {
                Some(Event::Line(line)) if self.lines.len() < LINES_MAX => self.lines.push_back(Some(line)),
                Some(Event::Line(_)) | None => {}
                Some(Event::Signal(signal)) => {
                    if signal == Signal::Interrupt && self.line_readers > 0 && self.lines.len() < LINES_MAX {
                        self.lines.push_back(None);
                    }
                    if self.signals.len() < SIGNALS_MAX {
                        self.signals.push_back(signal);
                    }
                }
            }
        }
        echo
    }

    fn take(&mut self, want: Want) -> Option<Got> {
        match want {
            Want::Line => self.lines.pop_front().map(|line| line.map_or(Got::Cancelled, Got::Line)),
            Want::Signal => self.signals.pop_front().map(Got::Signal),
        }
    }

    /// Forget one poke of `activation`; whether there was one.
    fn take_poke(&mut self, activation: usize) -> bool {
        match self.poked.iter().position(|&poked| poked == activation) {
            Some(at) => {
                self.poked.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

/// The console server's state.
#[derive(Debug)]
pub struct ConsoleServer {
    state: tern_inks::sync::Mutex<State>,
    growth: PoolGrowth,
}

impl Default for ConsoleServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleServer {
    /// A console with an empty line and no history.
    pub fn new() -> Self {
        ConsoleServer { state: tern_inks::sync::Mutex::new(State::default()), growth: PoolGrowth::standard() }
    }

    /// The state (`tern_inks::sync::Mutex`: while another thread holds
    /// it, this one gives way to the next timer tick, alerts blocked, so
    /// that a poke or the caller's alert stays pending for the wait it is
    /// meant for instead of ending this one).
    fn lock(&self) -> spin::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Wait for what `want` names, reading input while nobody else does.
    fn wait(&self, want: Want) -> Result<Got, Error> {
        let me = gate::activation_self()?;
        // A server activation starts with alerts blocked: open them, so
        // that pokes (and the caller's own alerts) end its waits.
        let was_blocked = gate::alerts_block(false)?;
        let outcome = self.wait_open(me, want);
        let mut state = self.lock();
        state.sleepers.retain(|&sleeper| sleeper != me);
        let stale = state.take_poke(me);
        drop(state);
        if stale {
            gate::test_alert();
        }
        let _ = gate::alerts_block(was_blocked);
        outcome
    }

    fn wait_open(&self, me: usize, want: Want) -> Result<Got, Error> {
        let mut input = [0u8; 64];
        loop {
            let mut state = self.lock();
            state.sleepers.retain(|&sleeper| sleeper != me);
            if state.poked.contains(&me) && gate::test_alert() {
                // A poke that arrived while this activation was not
                // waiting: taken now, so that it cannot end a wait later.
                state.take_poke(me);
            }
            if let Some(got) = state.take(want) {
                drop(state);
                // Someone else may now have to read.
                self.poke_sleepers();
                return Ok(got);
            }
            if !state.reading {
                state.reading = true;
                drop(state);
                let read = gate::console_read(&mut input);
                let mut state = self.lock();
                state.reading = false;
                match read {
                    Ok(count) => {
                        let echo = state.absorb(&input[..count]);
                        drop(state);
                        write_text(&echo);
                        self.poke_sleepers();
                    }
                    Err(Error::Interrupted) if state.take_poke(me) => {}
                    Err(error) => {
                        drop(state);
                        self.poke_sleepers();
                        return Err(error);
                    }
                }
                continue;
            }
            state.sleepers.push(me);
            drop(state);
            match gate::sleep(SLEEP_SLICE) {
                Ok(_) => {}
                Err(Error::Interrupted) if self.lock().take_poke(me) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Alert every sleeper, so that each looks again.
    fn poke_sleepers(&self) {
        let sleepers = {
            let mut state = self.lock();
            let sleepers = core::mem::take(&mut state.sleepers);
            state.poked.extend_from_slice(&sleepers);
            sleepers
        };
        for sleeper in sleepers {
            if gate::alert(sleeper).is_err() {
                self.lock().take_poke(sleeper);
            }
        }
    }

    /// [`READ_LINE`]: the prompt, then (after what was typed ahead of it)
    /// the next line.
    fn read_line(&self, prompt: &[u8]) -> Result<Got, Error> {
        let mut shown = prompt.to_vec();
        {
            let mut state = self.lock();
            state.line_readers += 1;
            state.editor.redraw(&mut shown);
        }
        write_text(&shown);
        let got = self.wait(Want::Line);
        self.lock().line_readers -= 1;
        got
    }
}

/// Write bytes to the console as text (invalid UTF-8 shows as U+FFFD), in
/// pieces `ConsoleWrite` takes. The editor's `\r\n` goes as `\n`: the
/// kernel's writer turns every `\n` into `\r\n` itself.
fn write_text(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let mut end = rest.len().min(tern_core::abi::CONSOLE_WRITE_MAX);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let _ = gate::console_write(&rest[..end]);
        rest = &rest[end..];
    }
}

impl Service for ConsoleServer {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let got = match request.label() {
            READ_LINE => self.read_line(request.payload),
            WAIT_SIGNAL => self.wait(Want::Signal),
            WRITE => {
                write_text(request.payload);
                reply.set_label(OK);
                return;
            }
            _ => {
                reply.set_label(BAD_REQUEST);
                return;
            }
        };
        let (label, payload): (u32, &[u8]) = match &got {
            Ok(Got::Line(line)) => (OK, line),
            Ok(Got::Signal(signal)) => (OK, &[signal.code()]),
            Ok(Got::Cancelled) => (CANCELLED, &[]),
            Err(_) => (INTERRUPTED, &[]),
        };
        // A line is at most `editor::LINE_MAX` bytes: it fits any reply.
        let label = if reply.set_payload(payload).is_ok() { label } else { service::LABEL_REPLY_TOO_LARGE };
        reply.set_label(label);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create a port, register it as [`NAME`], serve it as
/// `mode` says (a pool: the waits need activations, not threads).
fn main(mode: usize) -> usize {
    service::start(Some(NAME), ConsoleServer::new(), mode)
}

// ---------------------------------------------------------------------------
// The client API.

/// What [`Console::read_line`] got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, without its terminator.
    Text(Vec<u8>),
    /// `^C` dropped the line being typed.
    Cancelled,
    /// An alert ended the wait.
    Interrupted,
}

/// A client's handle on the console: a send right to its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    port: PortName,
}

/// Storage for a request or a reply: a header and a line.
type Storage = [MaybeUninit<u8>; tern_core::abi::MessageHeader::SIZE + editor::LINE_MAX + 256];

impl Console {
    /// The console, looked up with the name service.
    pub fn connect() -> Result<Console, Error> {
        service::lookup(NAME).map(Console::on)
    }

    /// The console served on `port` (a send right this domain holds).
    pub const fn on(port: PortName) -> Console {
        Console { port }
    }

    /// One request: its label and payload; the reply's label and payload
    /// (into `answer`, as much as fits).
    fn ask(&self, label: u32, payload: &[u8], answer: &mut Vec<u8>) -> Result<u32, Error> {
        let mut request = MessageBuffer::with_payload_capacity(payload.len());
        request.set_label(label);
        request.set_payload(payload)?;
        let mut storage: Storage =
            [MaybeUninit::uninit(); tern_core::abi::MessageHeader::SIZE + editor::LINE_MAX + 256];
        let mut reply = MessageBuffer::from_storage(&mut storage[..])?;
        let view = service::call(self.port, &request, &mut reply)?;
        answer.clear();
        answer.extend_from_slice(view.payload);
        Ok(view.label())
    }

    /// Show `prompt`, then wait for a line.
    pub fn read_line(&self, prompt: &str) -> Result<Line, Error> {
        let mut answer = Vec::new();
        match self.ask(READ_LINE, prompt.as_bytes(), &mut answer)? {
            OK => Ok(Line::Text(answer)),
            CANCELLED => Ok(Line::Cancelled),
            INTERRUPTED => Ok(Line::Interrupted),
            _ => Err(Error::BadMessage),
        }
    }

    /// Write `text`.
    pub fn write(&self, text: &str) -> Result<(), Error> {
        let mut answer = Vec::new();
        match self.ask(WRITE, text.as_bytes(), &mut answer)? {
            OK => Ok(()),
            _ => Err(Error::BadMessage),
        }
    }

    /// Wait for `^C` or `^Z`; `None` if an alert ended the wait.
    pub fn wait_signal(&self) -> Result<Option<Signal>, Error> {
        let mut answer = Vec::new();
        match (self.ask(WAIT_SIGNAL, &[], &mut answer)?, answer.as_slice()) {
            (OK, &[code]) => Signal::from_code(code).map(Some).ok_or(Error::BadMessage),
            (INTERRUPTED, _) => Ok(None),
            _ => Err(Error::BadMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use tern_inks::service::MessageView;

    #[test]
    fn typed_ahead_lines_and_signals_wait_for_their_readers() {
        let mut state = State::default();
        let echo = state.absorb(b"one\rtw\x03\x1athree\r");
        assert_eq!(echo, b"one\r\ntw^C\r\nthree\r\n");
        assert_eq!(state.take(Want::Line), Some(Got::Line(b"one".to_vec())));
        assert_eq!(state.take(Want::Line), Some(Got::Line(b"three".to_vec())), "no reader: ^C cancels nothing queued");
        assert_eq!(state.take(Want::Line), None);
        assert_eq!(state.take(Want::Signal), Some(Got::Signal(Signal::Interrupt)));
        assert_eq!(state.take(Want::Signal), Some(Got::Signal(Signal::Suspend)));
        assert_eq!(state.take(Want::Signal), None);
    }

    #[test]
    fn control_c_cancels_a_waiting_read() {
        let mut state = State { line_readers: 1, ..State::default() };
        state.absorb(b"half\x03");
        assert_eq!(state.take(Want::Line), Some(Got::Cancelled));
        assert_eq!(state.take(Want::Signal), Some(Got::Signal(Signal::Interrupt)));
    }

    #[test]
    fn the_queues_are_bounded() {
        let mut state = State::default();
        for _ in 0..LINES_MAX + 3 {
            state.absorb(b"x\r\x03");
        }
        assert_eq!(state.lines.len(), LINES_MAX);
        assert_eq!(state.signals.len(), SIGNALS_MAX);
    }

    #[test]
    fn pokes_are_counted_per_activation() {
        let mut state = State { poked: alloc::vec![4, 7, 4], ..State::default() };
        assert!(state.take_poke(4));
        assert!(state.take_poke(4));
        assert!(!state.take_poke(4));
        assert!(state.take_poke(7));
    }

    #[test]
    fn unknown_operations_are_bad_requests() {
        let server = ConsoleServer::new();
        let mut storage = [MaybeUninit::uninit(); 64];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        server.handle(&MessageView::new(99, b""), &mut reply);
        assert_eq!(reply.label(), BAD_REQUEST);
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host
    /// its `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_POOL), Error::NoSuchCall as usize);
    }
}
