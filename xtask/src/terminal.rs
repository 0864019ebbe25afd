//! A serial terminal for Tern: `cargo xtask console`, and what `cargo xtask
//! push` becomes once the kernel runs.
//!
//! [`run`] joins two byte streams to a person. From the board, bytes go
//! through the same [`Console`] as `cargo xtask qemu`'s (console text as it
//! comes, each defmt frame as one decoded log line); from the keyboard,
//! bytes go to the board unchanged, except [`EXIT_KEY`] (Ctrl-], as in
//! telnet and picocom), which ends the session. Ctrl-C is *not* an exit: in
//! raw mode it is an ordinary byte for the board, as on a real serial
//! terminal.
//!
//! It is generic over the streams (`Read`/`Write`, any of them a serial
//! port, a socket, a pipe or a test's buffer) and runs one thread per
//! input: the board's reader feeds the console, the keyboard's reader sends
//! chunks over a channel, and the calling thread forwards keys and watches
//! for the exit key or the board's end. A board that disappears (a USB
//! adapter unplugged, QEMU gone) ends the session with [`Ending::Board`].
//! The board stream must return from `read` now and then (a read timeout:
//! serial ports and sockets have one) so its thread can notice the end of
//! the session; the keyboard's thread is left blocked in `read` and dies
//! with the process.
//!
//! [`RawMode`] puts the local terminal in raw mode (no line editing, no
//! echo, no signals from Ctrl-C or Ctrl-Z, so every key reaches the board at
//! once) through `nix`'s termios calls, keeping output post-processing on
//! so the console's `\n` still starts a new line. It restores the saved
//! settings when dropped, which covers a normal exit and every `?` error
//! path, and from a panic hook, which covers panics: the workspace builds
//! with `panic = "abort"`, so a panic unwinds nothing and Drop alone would
//! leave the terminal raw. When standard input is not a terminal (a pipe, a
//! test), it does nothing.
//!
//! What it leaves out: signals from outside (a `kill` of the xtask leaves
//! the terminal raw: `reset` mends it), local echo, line-ending
//! translation of keys (Enter sends `\r`, as terminals do), logging to a
//! file, and Windows consoles (raw mode is a no-op there).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use anyhow::{Result, anyhow};

use crate::console::Console;

/// The key that ends a session: Ctrl-] (0x1d).
pub const EXIT_KEY: u8 = 0x1d;
/// [`EXIT_KEY`] as a person types it.
pub const EXIT_KEY_NAME: &str = "Ctrl-]";

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The person pressed [`EXIT_KEY`].
    ExitKey,
    /// The board's stream ended or failed (the text says how).
    Board(String),
}

/// What the input threads tell the session.
enum Event {
    Keys(Vec<u8>),
    KeysEnded,
    Board(String),
}

/// What one [`read_some`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSome {
    /// This many bytes (at least one).
    Bytes(usize),
    /// Nothing yet: the read timed out or was interrupted.
    Nothing,
    /// The stream ended.
    Ended,
}

/// One read from a stream that has a read timeout (a serial port, a socket,
/// a test's channel), with `TimedOut`, `WouldBlock` and `Interrupted` taken
/// as "nothing yet" rather than as errors: the read loop of the terminal
/// and of [`crate::chainload`].
pub fn read_some(stream: &mut impl Read, into: &mut [u8]) -> io::Result<ReadSome> {
    match stream.read(into) {
        Ok(0) => Ok(ReadSome::Ended),
        Ok(count) => Ok(ReadSome::Bytes(count)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(ReadSome::Nothing)
        }
        Err(error) => Err(error),
    }
}

/// The bytes of `keys` to send before the exit key, and whether the exit
/// key was among them (anything after it is dropped).
pub fn before_exit_key(keys: &[u8]) -> (&[u8], bool) {
    match keys.iter().position(|&k| k == EXIT_KEY) {
        Some(at) => (&keys[..at], true),
        None => (keys, false),
    }
}

/// Runs a session: `from_board` through a [`Console`] (frames formatted by
/// `format_frame`) to `out`, starting with `first` (bytes already read from
/// the board, e.g. what followed the loader's last tag), and `keys` to
/// `to_board` until the exit key or the board's end. See the module docs.
pub fn run<R, W, K, O, F>(
    mut from_board: R,
    mut to_board: W,
    mut keys: K,
    out: O,
    format_frame: F,
    first: &[u8],
) -> Result<Ending>
where
    R: Read + Send + 'static,
    W: Write,
    K: Read + Send + 'static,
    O: Write + Send + 'static,
    F: FnMut(&[u8]) -> String + Send + 'static,
{
    let (events, inbox) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));

    let board_events = events.clone();
    let board_stop = Arc::clone(&stop);
    let first = first.to_vec();
    let board = thread::spawn(move || -> io::Result<O> {
        let mut console = Console::new(out, format_frame);
        // A failure to show the board's output (standard output closed)
        // ends the session like the board's end, and is returned as well.
        let mut output_failed = console.feed(&first).err();
        let mut chunk = [0u8; 4096];
        let why = loop {
            if let Some(error) = &output_failed {
                break Some(format!("writing the board's output: {error}"));
            }
            if board_stop.load(Ordering::Relaxed) {
                break None;
            }
            match read_some(&mut from_board, &mut chunk) {
                Ok(ReadSome::Bytes(count)) => output_failed = console.feed(&chunk[..count]).err(),
                Ok(ReadSome::Nothing) => {}
                Ok(ReadSome::Ended) => break Some("the board's stream ended".to_string()),
                Err(error) => break Some(format!("reading from the board: {error}")),
            }
        };
        let out = console.finish();
        if let Some(why) = why {
            let _ = board_events.send(Event::Board(why));
        }
        match output_failed {
            Some(error) => Err(error),
            None => out,
        }
    });

    thread::spawn(move || {
        let mut typed = [0u8; 256];
        loop {
            match keys.read(&mut typed) {
                Ok(0) => break,
                Ok(count) => {
                    if events.send(Event::Keys(typed[..count].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = events.send(Event::KeysEnded);
    });

    let ending = loop {
        match inbox.recv() {
            Ok(Event::Keys(bytes)) => {
                let (send, exit) = before_exit_key(&bytes);
                if !send.is_empty() {
                    let written = to_board.write_all(send).and_then(|()| to_board.flush());
                    if let Err(e) = written {
                        break Ending::Board(format!("writing to the board: {e}"));
                    }
                }
                if exit {
                    break Ending::ExitKey;
                }
            }
            // No more keys (standard input is not a terminal and ended):
            // keep showing the board until it ends.
            Ok(Event::KeysEnded) => {}
            Ok(Event::Board(why)) => break Ending::Board(why),
            Err(_) => break Ending::Board("the board's reader stopped".to_string()),
        }
    };
    stop.store(true, Ordering::Relaxed);
    let out = board.join().map_err(|_| anyhow!("the board's reader panicked"))?;
    out.map_err(|e| anyhow!("writing the board's output: {e}"))?.flush()?;
    Ok(ending)
}

/// The local terminal in raw mode until dropped (see the module docs).
pub struct RawMode {
    #[cfg(unix)]
    active: bool,
}

#[cfg(unix)]
mod saved {
    use std::sync::{Mutex, Once};

    use nix::sys::termios::{SetArg, Termios, tcsetattr};

    /// The settings to restore, while raw mode is on.
    pub static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

    /// Puts back the saved settings, if any (idempotent).
    pub fn restore() {
        let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(termios) = saved {
            let _ = tcsetattr(0, SetArg::TCSANOW, &termios);
        }
    }

    /// Makes every panic restore the terminal before it is reported.
    pub fn install_panic_hook() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
    }
}

impl RawMode {
    /// Raw mode on standard input, if it is a terminal.
    #[cfg(unix)]
    pub fn enable() -> Result<RawMode> {
        use std::io::IsTerminal;

        use anyhow::Context;
        use nix::sys::termios::{OutputFlags, SetArg, cfmakeraw, tcgetattr, tcsetattr};

        if !io::stdin().is_terminal() {
            return Ok(RawMode { active: false });
        }
        let original = tcgetattr(0).context("reading the terminal's settings")?;
        let mut raw = original.clone();
        cfmakeraw(&mut raw);
        // Keep `\n` -> `\r\n` on output: the console writes plain `\n`.
        raw.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
        *saved::SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        saved::install_panic_hook();
        if let Err(e) = tcsetattr(0, SetArg::TCSANOW, &raw) {
            saved::restore();
            return Err(e).context("putting the terminal in raw mode");
        }
        Ok(RawMode { active: true })
    }

    /// Raw mode is not implemented here: the terminal stays as it is.
    #[cfg(not(unix))]
    pub fn enable() -> Result<RawMode> {
        Ok(RawMode {})
    }

    /// Whether the terminal was switched (standard input is a terminal).
    pub fn active(&self) -> bool {
        #[cfg(unix)]
        return self.active;
        #[cfg(not(unix))]
        false
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        #[cfg(unix)]
        saved::restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[test]
    fn exit_key_cuts_the_keys() {
        assert_eq!(before_exit_key(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(before_exit_key(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(before_exit_key(b"\x1d"), (&b""[..], true));
        assert_eq!(before_exit_key(b"\x03"), (&b"\x03"[..], false), "Ctrl-C goes to the board");
    }

    /// A board stream fed from a channel: `WouldBlock` while nothing is
    /// there (like a port with a read timeout), end of stream when the
    /// sender is dropped.
    struct Board(mpsc::Receiver<Vec<u8>>);

    impl Read for Board {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            match self.0.recv_timeout(Duration::from_millis(10)) {
                Ok(bytes) => {
                    into[..bytes.len()].copy_from_slice(&bytes);
                    Ok(bytes.len())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => Err(io::ErrorKind::WouldBlock.into()),
                Err(mpsc::RecvTimeoutError::Disconnected) => Ok(0),
            }
        }
    }

    /// A shared buffer the test can read after the session.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Keys that arrive only when the test says so.
    struct Keys(mpsc::Receiver<Vec<u8>>);

    impl Read for Keys {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            match self.0.recv() {
                Ok(bytes) => {
                    into[..bytes.len()].copy_from_slice(&bytes);
                    Ok(bytes.len())
                }
                Err(_) => Ok(0),
            }
        }
    }

    fn frame(f: &[u8]) -> String {
        format!("INFO  frame {f:?}")
    }

    #[test]
    fn keys_go_to_the_board_until_the_exit_key() {
        let (board_tx, board_rx) = mpsc::channel();
        let (keys_tx, keys_rx) = mpsc::channel();
        let out = Shared::default();
        let sent = Shared::default();
        board_tx.send(b"Tern\r\n\x01\x02\x00".to_vec()).unwrap();
        keys_tx.send(b"help\r".to_vec()).unwrap();
        keys_tx.send(b"q\x1dnot sent".to_vec()).unwrap();
        let ending = run(Board(board_rx), sent.clone(), Keys(keys_rx), out.clone(), frame, b"first bytes\r\n").unwrap();
        assert_eq!(ending, Ending::ExitKey);
        assert_eq!(*sent.0.lock().unwrap(), b"help\rq");
        // Output was in order (board output may or may not have arrived
        // before the exit key; here it was sent first).
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("first bytes\r\n"), "{text:?}");
        drop(board_tx);
    }

    #[test]
    fn the_board_going_away_ends_the_session() {
        let (board_tx, board_rx) = mpsc::channel();
        let (_keys_tx, keys_rx) = mpsc::channel::<Vec<u8>>();
        let out = Shared::default();
        board_tx.send(b"Tern\r\n\x01\x02\x03\x00bye".to_vec()).unwrap();
        drop(board_tx);
        let ending = run(Board(board_rx), io::sink(), Keys(keys_rx), out.clone(), frame, b"").unwrap();
        assert_eq!(ending, Ending::Board("the board's stream ended".into()));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "Tern\r\nINFO  frame [2, 3]\nbye\n");
    }

    #[test]
    fn raw_mode_without_a_terminal_is_a_no_op() {
        // Under `cargo test` standard input is usually not a terminal; if it
        // is, the guard switches it and restores it at once.
        use std::io::IsTerminal;
        let guard = RawMode::enable().unwrap();
        assert_eq!(guard.active(), cfg!(unix) && io::stdin().is_terminal());
        drop(guard);
    }

    /// Output that fails every write, like a closed standard output.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn failing_output_ends_the_session() {
        let (board_tx, board_rx) = mpsc::channel();
        let (keys_tx, keys_rx) = mpsc::channel::<Vec<u8>>();
        board_tx.send(b"Tern\r\n".to_vec()).unwrap();
        // The board and the keys both stay open: only the output's failure
        // can end this session.
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = done_tx.send(run(Board(board_rx), io::sink(), Keys(keys_rx), Closed, frame, b""));
        });
        let result = done_rx.recv_timeout(Duration::from_secs(10)).expect("the session hung");
        let message = format!("{:#}", result.unwrap_err());
        assert!(message.contains("writing the board's output"), "{message}");
        drop((board_tx, keys_tx));
    }
}
