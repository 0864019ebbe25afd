//! The test harness's keyboard: scripted input for a captured run.
//!
//! A test that drives Tern's console as a person would gives
//! [`crate::qemu::capture_with_input`] a script of [`Step`]s: wait until
//! a text shows up in the output (the demultiplexed, decoded output the
//! test will check, so defmt frames never hide a prompt), then type some
//! bytes. [`run_script`] plays it against any child: it watches a shared
//! [`Output`] that the output reader appends to, and writes to the child's
//! standard input (QEMU's `-serial stdio` hands it to the UART).
//!
//! Typing is paced ([`PACE`] a byte): a real PL011 holds 16 or 32 bytes
//! in its receive FIFO, and a kernel that is busy when a burst arrives
//! would lose the rest on a real board (QEMU itself holds bytes back while
//! the FIFO is full, so there pacing only keeps the test honest).
//!
//! A wait that times out fails the script with [`ScriptFailure`], which
//! says which step, what it waited for, and everything printed after the
//! previous match. Each wait starts looking after where the previous one
//! matched, so two prompts with the same text are two waits.
//!
//! Left out: reading QEMU's output for anything but text (no escape-sequence
//! interpretation: the output is matched byte for byte as the kernel wrote
//! it), and typing at a real board (the serial console's job).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The time between two typed bytes.
pub const PACE: Duration = Duration::from_millis(3);

/// How often a wait looks at the output again.
const POLL: Duration = Duration::from_millis(5);

/// One step of a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Wait until this text has been printed (after the previous wait's
    /// match).
    WaitFor(&'a str),
    /// Type these bytes, one at a time ([`PACE`] apart).
    Type(&'a [u8]),
}

/// The output seen so far, shared between the thread that reads the child
/// and the script; a `Write` so that a [`crate::console::Console`] can
/// present into it.
#[derive(Clone, Debug, Default)]
pub struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    /// Nothing printed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything printed so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a script did not finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptFailure {
    /// The step that failed (0-based).
    pub step: usize,
    /// What happened.
    pub what: String,
    /// What was printed after the last match (where the wait looked).
    pub unmatched: String,
}

impl fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "script step {}: {}", self.step + 1, self.what)?;
        writeln!(f, "----- printed since the previous match -----")?;
        writeln!(f, "{}", self.unmatched.escape_debug())?;
        write!(f, "----- end -----")
    }
}

impl std::error::Error for ScriptFailure {}

/// Play `script` against a child that writes into `output` and reads
/// `input`, until `deadline`; `stop` set (the child ended) ends a wait at
/// once. Bytes are typed `pace` apart.
pub fn run_script(
    script: &[Step<'_>],
    output: &Output,
    mut input: impl Write,
    deadline: Instant,
    pace: Duration,
    stop: &AtomicBool,
) -> Result<(), ScriptFailure> {
    let mut from = 0;
    for (index, step) in script.iter().enumerate() {
        let fail = |what: String, from: usize| ScriptFailure {
            step: index,
            what,
            unmatched: String::from_utf8_lossy(output.bytes().get(from..).unwrap_or_default()).into_owned(),
        };
        match *step {
            Step::WaitFor(text) => loop {
                let seen = output.bytes();
                if let Some(at) = find(&seen[from.min(seen.len())..], text.as_bytes()) {
                    from += at + text.len();
                    break;
                }
                if stop.load(Ordering::Acquire) {
                    return Err(fail(format!("the run ended before {text:?} was printed"), from));
                }
                if Instant::now() >= deadline {
                    return Err(fail(format!("timed out waiting for {text:?}"), from));
                }
                thread::sleep(POLL);
            },
            Step::Type(bytes) => {
                for &byte in bytes {
                    if let Err(error) = input.write_all(&[byte]).and_then(|()| input.flush()) {
                        return Err(fail(format!("typing {:?}: {error}", byte as char), from));
                    }
                    thread::sleep(pace);
                }
            }
        }
    }
    Ok(())
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// The write end of an in-memory pipe.
    struct Pipe(mpsc::Sender<u8>);

    impl Write for Pipe {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            for &byte in bytes {
                self.0.send(byte).map_err(|_| std::io::ErrorKind::BrokenPipe)?;
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A fake child: prints a prompt, echoes what it reads, and at `\r`
    /// prints the line back in brackets and prompts again. Ends when its
    /// input closes.
    fn fake_shell(output: Output) -> (Pipe, thread::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel::<u8>();
        let handle = thread::spawn(move || {
            let mut out = output;
            let mut line = Vec::new();
            out.write_all(b"boot noise\n> ").unwrap();
            for byte in receiver {
                if byte == b'\r' {
                    let text = format!("\r\n[{}]\n> ", String::from_utf8_lossy(&line));
                    out.write_all(text.as_bytes()).unwrap();
                    line.clear();
                } else {
                    line.push(byte);
                    out.write_all(&[byte]).unwrap();
                }
            }
        });
        (Pipe(sender), handle)
    }

    fn soon(seconds: u64) -> Instant {
        Instant::now() + Duration::from_secs(seconds)
    }

    #[test]
    fn a_script_waits_types_and_sees_the_answers() {
        let output = Output::new();
        let (input, child) = fake_shell(output.clone());
        let script = [
            Step::WaitFor("> "),
            Step::Type(b"ls\r"),
            Step::WaitFor("[ls]"),
            Step::WaitFor("> "),
            Step::Type(b"x\r"),
            Step::WaitFor("[x]\n> "),
        ];
        let stop = AtomicBool::new(false);
        assert_eq!(run_script(&script, &output, input, soon(10), Duration::ZERO, &stop), Ok(()));
        child.join().unwrap();
        assert_eq!(String::from_utf8(output.bytes()).unwrap(), "boot noise\n> ls\r\n[ls]\n> x\r\n[x]\n> ");
    }

    #[test]
    fn each_wait_looks_after_the_previous_match() {
        let output = Output::new();
        let (input, child) = fake_shell(output.clone());
        // One prompt printed: the second wait for it must not match it.
        let script = [Step::WaitFor("> "), Step::WaitFor("> ")];
        let stop = AtomicBool::new(false);
        let failure = run_script(&script, &output, input, Instant::now() + Duration::from_millis(200), PACE, &stop)
            .expect_err("only one prompt was printed");
        assert_eq!(failure.step, 1);
        assert!(failure.what.contains("timed out waiting for \"> \""), "{failure}");
        assert_eq!(failure.unmatched, "");
        child.join().unwrap();
    }

    #[test]
    fn a_timeout_shows_what_was_printed_instead() {
        let output = Output::new();
        let (input, child) = fake_shell(output.clone());
        let script = [Step::WaitFor("boot"), Step::Type(b"hi\r"), Step::WaitFor("[bye]")];
        let stop = AtomicBool::new(false);
        let failure = run_script(&script, &output, input, Instant::now() + Duration::from_millis(300), PACE, &stop)
            .expect_err("nothing prints [bye]");
        assert_eq!(failure.step, 2);
        assert_eq!(failure.unmatched, " noise\n> hi\r\n[hi]\n> ");
        let shown = failure.to_string();
        assert!(shown.contains("script step 3: timed out waiting for \"[bye]\""), "{shown}");
        assert!(shown.contains("[hi]"), "{shown}");
        child.join().unwrap();
    }

    #[test]
    fn a_run_that_ends_ends_the_wait() {
        let output = Output::new();
        let stop = AtomicBool::new(true);
        let failure = run_script(&[Step::WaitFor("never")], &output, std::io::sink(), soon(10), PACE, &stop)
            .expect_err("the run has ended");
        assert!(failure.what.contains("the run ended"), "{failure}");
    }

    #[test]
    fn typing_into_a_closed_pipe_fails_the_step() {
        let (sender, receiver) = mpsc::channel();
        drop(receiver);
        let stop = AtomicBool::new(false);
        let failure = run_script(&[Step::Type(b"a")], &Output::new(), Pipe(sender), soon(10), PACE, &stop)
            .expect_err("nobody reads");
        assert_eq!(failure.step, 0);
        assert!(failure.what.starts_with("typing 'a'"), "{failure}");
    }
}
