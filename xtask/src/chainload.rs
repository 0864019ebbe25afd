//! The host's side of chainloading: building the loader image, sending a
//! kernel to it, and the QEMU run the tests use.
//!
//! The loader (`board/chainload`, package `tern-chainload`) is a small
//! `no_std` binary the Pi firmware starts in the kernel's place; it asks on
//! the UART for a kernel and starts what it receives. The wire protocol is
//! defined once, in that package's library (`tern_chainload`, plain
//! `no_std` Rust with no dependencies, so the xtask links it without taking
//! any kernel code); `docs/chainload.md` tells the story.
//!
//! * [`build_loader`] builds it for `aarch64-unknown-none` the way
//!   [`crate::image`] builds kernels (cargo, then [`crate::elf::elf_to_raw`]
//!   at its link address) and writes `tern-chainload.img` beside the ELF. It
//!   refuses a raw image of [`MAX_LOADER_IMAGE`] (16 KiB) or more, or a layout whose
//!   stack ends past the loader's memory window: both would mean the
//!   loader outgrew the place the protocol gives it.
//! * [`send`] speaks the protocol over anything `Read + Write` (a serial
//!   port for `cargo xtask push`, a TCP socket into QEMU for the tests):
//!   wait for the loader's request, send the header, the payload, and read
//!   the verdict, retrying a bounded number of times after a CRC mismatch,
//!   a timeout, a corrupted header or a lost answer, giving up at once on a
//!   refusal that a retry cannot mend (too large, wrong address). A late
//!   answer to an earlier attempt, arriving while it waits for the next
//!   request, is reported ([`Progress::Late`]) and costs no attempt; the
//!   loader's `Loaded` counts only once a payload has been sent. What the loader prints
//!   between its tags is passed on as [`Progress::Loader`] lines. It returns
//!   the bytes that arrived after the loader's last tag: the kernel's first
//!   output, which the console must show.
//! * [`run_in_qemu`] boots the loader in QEMU `raspi4b` with the UART on a
//!   TCP socket, pushes the harness image through [`send`] and captures the
//!   rest like [`crate::qemu::capture`]: the end-to-end test of loader and
//!   host together (`tests/tests/chainload.rs`).
//!
//! The link must not block forever: give the serial port or socket a read
//! timeout (a `TimedOut` or `WouldBlock` error is "nothing yet", see
//! [`crate::terminal::read_some`]). Writes may time out too (a serial port's
//! timeout applies to them, and a USB adapter drains at the line's pace):
//! [`send`] takes `TimedOut`, `WouldBlock` and partial writes as "not yet"
//! and gives up only when the slowest expected line would have carried
//! the bytes and the reply timeout has passed as well; it keeps its own
//! deadlines for replies.
//!
//! CRC-32: the host uses the protocol library's (bitwise) implementation,
//! not the `crc32fast` crate: one more crate for ten lines, and one
//! definition of the checksum on both ends of one protocol. What keeps the
//! shared code honest is its known-vector tests (`"123456789"` →
//! `0xCBF43926`), run on the host.
//!
//! What it leaves out: choosing a line speed with the loader (it is fixed at
//! build time), and anything about SD cards (`cargo xtask sdcard` puts the
//! image this module builds on one).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::console::{Console, LogDecoder};
use crate::qemu::{self, Launch, Reaper, RunOutput, Slot};
use crate::terminal::{ReadSome, read_some};
use crate::{Board, ImageKind, build_image, crossings, elf, image};

pub use tern_chainload::{
    HEADER_LEN, Header, LINK_ADDRESS, LOADER_WINDOW, MAX_KERNEL_SIZE, MAX_LOADER_IMAGE, Reply, TAG_PREFIX, crc32,
};

/// The loader's cargo package and binary.
pub const LOADER_PACKAGE: &str = "tern-chainload";
/// The file name of the raw loader image, written beside its ELF.
pub const LOADER_RAW: &str = "tern-chainload.img";

/// A built loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// The ELF (for gdb).
    pub elf: PathBuf,
    /// The raw image, to be loaded at 0x80000 like a kernel.
    pub raw: PathBuf,
    /// The raw image's size in bytes (under [`MAX_LOADER_IMAGE`]).
    pub size: u64,
}

/// Builds the loader (once per process and profile) and returns its raw
/// image's path: what `cargo xtask sdcard --chainload` puts on the card as
/// the kernel file.
pub fn build_loader(release: bool) -> Result<PathBuf> {
    Ok(build(release)?.raw)
}

/// Builds the loader (once per process and profile), with its paths and size.
pub fn build(release: bool) -> Result<Loader> {
    static CACHE: [OnceLock<Result<Loader, String>>; 2] = [const { OnceLock::new() }; 2];
    CACHE[usize::from(release)]
        .get_or_init(|| build_uncached(release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

fn build_uncached(release: bool) -> Result<Loader> {
    let elf_path = image::cargo_build(LOADER_PACKAGE, LOADER_PACKAGE, release)?;
    let elf_bytes = std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let raw = elf::elf_to_raw(&elf_bytes, LINK_ADDRESS)
        .with_context(|| format!("converting {} (linked at {LINK_ADDRESS:#x}) to a raw image", elf_path.display()))?;
    check_size(raw.len() as u64, symbol(&elf_bytes, "__loader_window_end")?)?;
    let raw_path = elf_path.with_file_name(LOADER_RAW);
    image::write_atomically(&raw_path, &raw)?;
    Ok(Loader { elf: elf_path, raw: raw_path, size: raw.len() as u64 })
}

/// The loader must fit its budget: the raw image under
/// [`MAX_LOADER_IMAGE`], everything it uses (image, `.bss`, stack: up to
/// `window_end`) inside [`LOADER_WINDOW`].
fn check_size(raw: u64, window_end: u64) -> Result<()> {
    ensure!(raw < MAX_LOADER_IMAGE, "the loader image is {raw} bytes; its budget is under {MAX_LOADER_IMAGE} (16 KiB)");
    let used = window_end.checked_sub(LINK_ADDRESS).context("the loader's window ends below its start")?;
    ensure!(
        used <= LOADER_WINDOW,
        "the loader uses {used} bytes from {LINK_ADDRESS:#x} (image, .bss and stack), over its window of {LOADER_WINDOW}"
    );
    Ok(())
}

/// The value of symbol `name` in `elf` (read with [`crossings::symbols`]).
fn symbol(elf: &[u8], name: &str) -> Result<u64> {
    crossings::symbols(elf)?
        .into_iter()
        .find(|symbol| symbol.name == name)
        .map(|symbol| symbol.address)
        .with_context(|| format!("the loader ELF has no symbol {name}"))
}

/// Splits what the loader sends into text and tags ([`TAG_PREFIX`] and a
/// code byte).
#[derive(Debug, Default)]
pub struct TagScanner {
    pending: Vec<u8>,
}

impl TagScanner {
    /// Feeds one byte: returns a tag's code when it completes one; bytes
    /// that turn out not to be part of a tag are appended to `text`.
    pub fn push(&mut self, byte: u8, text: &mut Vec<u8>) -> Option<u8> {
        if self.pending.len() == TAG_PREFIX.len() {
            self.pending.clear();
            return Some(byte);
        }
        self.pending.push(byte);
        // Keep the longest tail that could still begin a tag.
        let len = self.pending.len();
        let keep =
            (0..=len.min(TAG_PREFIX.len())).rev().find(|&k| self.pending[len - k..] == TAG_PREFIX[..k]).unwrap_or(0);
        text.extend(self.pending.drain(..len - keep));
        None
    }

    /// Bytes held back as a possible tag's beginning.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

/// What [`send`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Waiting for the loader's request (printed once per attempt).
    Waiting,
    /// A line the loader printed.
    Loader(String),
    /// Sending the header, attempt `attempt` of `of`.
    Attempt {
        /// This attempt, from 1.
        attempt: u32,
        /// How many are allowed.
        of: u32,
    },
    /// Payload bytes sent so far.
    Sent {
        /// Bytes sent.
        done: usize,
        /// Bytes in all.
        total: usize,
    },
    /// The loader refused or failed this attempt.
    Failed(Reply),
    /// An answer to an earlier attempt (or a stale tag) arrived while
    /// waiting for the loader's request; it costs no attempt.
    Late(Reply),
    /// The loader has the kernel and starts it.
    Loaded,
}

/// How [`send`] behaves.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Attempts before giving up (CRC mismatches, timeouts, corrupted
    /// headers each use one).
    pub attempts: u32,
    /// How long to wait for the loader's answer to a header or a payload.
    pub reply_timeout: Duration,
    /// How long to wait for the loader's request; `None`: forever (a person
    /// resets the Pi meanwhile).
    pub request_timeout: Option<Duration>,
    /// For tests: flip one payload byte in this many first attempts (the
    /// header keeps the true CRC, so the loader must refuse them).
    pub corrupt_attempts: u32,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions { attempts: 3, reply_timeout: Duration::from_secs(5), request_timeout: None, corrupt_attempts: 0 }
    }
}

/// The payload bytes per write (and per progress report).
const CHUNK: usize = 4096;

/// Reads the loader's tags and lines from the link.
struct Listener<'a, L> {
    link: &'a mut L,
    scanner: TagScanner,
    line: Vec<u8>,
    /// Bytes read but not yet scanned (after a tag the caller stopped at).
    unread: VecDeque<u8>,
}

impl<L: Read> Listener<'_, L> {
    /// The next reply other than a (repeated) request, unless `want_request`;
    /// `None` when `timeout` passes first.
    fn next(
        &mut self,
        timeout: Option<Duration>,
        want_request: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<Reply>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            while let Some(byte) = self.unread.pop_front() {
                let mut text = Vec::new();
                let code = self.scanner.push(byte, &mut text);
                self.take_text(&text, progress);
                let Some(code) = code else { continue };
                match Reply::from_code(code) {
                    Some(Reply::Request) if !want_request => {}
                    Some(reply) => return Ok(Some(reply)),
                    None => progress(Progress::Loader(format!("[unknown tag {code:#04x}]"))),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            match read_some(self.link, &mut chunk).context("reading from the serial link")? {
                ReadSome::Bytes(count) => self.unread.extend(&chunk[..count]),
                ReadSome::Nothing => {}
                ReadSome::Ended => bail!("the serial link closed"),
            }
        }
    }

    /// Collects text into lines and reports each whole line.
    fn take_text(&mut self, text: &[u8], progress: &mut dyn FnMut(Progress)) {
        for &byte in text {
            match byte {
                b'\n' => {
                    let line = String::from_utf8_lossy(&self.line).trim_end_matches('\r').to_string();
                    self.line.clear();
                    if !line.trim().is_empty() {
                        progress(Progress::Loader(line));
                    }
                }
                0 => {}
                _ => self.line.push(byte),
            }
        }
    }
}

/// Writes all of `bytes` to `link`, or fails once `deadline` has passed.
///
/// A serial port with a timeout returns `TimedOut` when its output queue
/// stays full that long (serialport waits for the port to be writable, and
/// Linux calls a tty writable only when fewer than 256 bytes are queued);
/// a non-blocking socket returns `WouldBlock`; either may take part of a
/// chunk. All of those mean "not yet", where `write_all` would give up.
fn write_patiently<W: Write + ?Sized>(link: &mut W, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match link.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => rest = &rest[written..],
            Err(error) if matches!(error.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the link took {} of {} bytes before the deadline",
                            bytes.len() - rest.len(),
                            bytes.len()
                        ),
                    ));
                }
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// How long `bytes` take on the slowest link [`send`] expects.
fn transfer_time(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / SLOWEST_LINK)
}

/// Sends `image` to a chainloader at the other end of `link` and returns
/// the bytes that followed its last tag (the kernel's first output).
///
/// An attempt begins with the loader's request; what arrives before it
/// (a late verdict on an earlier attempt, a stale tag from an earlier
/// session) is reported as [`Progress::Late`] and costs no attempt. A
/// `Loaded` counts only after this call has sent a payload.
pub fn send<L: Read + Write>(
    link: &mut L,
    image: &[u8],
    options: &SendOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<u8>> {
    ensure!(
        image.len() as u64 <= u64::from(MAX_KERNEL_SIZE),
        "the kernel is {} bytes, over the loader's limit of {MAX_KERNEL_SIZE}",
        image.len()
    );
    ensure!(!image.is_empty(), "the kernel image is empty");
    let header = Header::for_payload(image).context("the kernel is too large for the protocol")?;
    let header_bytes = header.encode();
    let mut listener = Listener { link, scanner: TagScanner::default(), line: Vec::new(), unread: VecDeque::new() };
    let attempts = options.attempts.max(1);
    let mut payload_sent = false;
    let mut last_failure = None;
    for attempt in 1..=attempts {
        progress(Progress::Waiting);
        loop {
            match listener.next(options.request_timeout, true, progress)? {
                None => bail!(
                    "no request from the loader within {} s",
                    options.request_timeout.unwrap_or_default().as_secs()
                ),
                Some(Reply::Request) => break,
                // The verdict on the payload already sent, late: the kernel runs.
                Some(Reply::Loaded) if payload_sent => return Ok(loaded(&mut listener, progress)),
                Some(late) => progress(Progress::Late(late)),
            }
        }
        progress(Progress::Attempt { attempt, of: attempts });
        let deadline = Instant::now() + transfer_time(HEADER_LEN) + options.reply_timeout;
        write_patiently(listener.link, &header_bytes, deadline).context("writing the header")?;
        listener.link.flush().context("writing the header")?;
        match listener.next(Some(options.reply_timeout), false, progress)? {
            Some(Reply::HeaderAccepted) => {}
            Some(reply @ (Reply::TooLarge | Reply::BadAddress)) => {
                progress(Progress::Failed(reply));
                bail!("the loader refused the kernel: {}", reply.describe());
            }
            Some(reply) => {
                progress(Progress::Failed(reply));
                last_failure = Some(reply.describe().to_string());
                continue;
            }
            None => {
                last_failure = Some("no answer to the header".to_string());
                continue;
            }
        }
        let mut payload = std::borrow::Cow::Borrowed(image);
        if attempt <= options.corrupt_attempts {
            payload.to_mut()[image.len() / 2] ^= 0x20;
        }
        payload_sent = true;
        // Writes return once the bytes are queued (a socket takes them all
        // at once), so the slowest link's time bounds both the writing and
        // the loader's receiving what is still queued.
        let transfer = transfer_time(image.len());
        let deadline = Instant::now() + transfer + options.reply_timeout;
        for (index, chunk) in payload.chunks(CHUNK).enumerate() {
            write_patiently(listener.link, chunk, deadline).context("writing the kernel")?;
            progress(Progress::Sent { done: (index * CHUNK + chunk.len()), total: image.len() });
        }
        listener.link.flush().context("writing the kernel")?;
        match listener.next(Some(options.reply_timeout + transfer), false, progress)? {
            Some(Reply::Loaded) => return Ok(loaded(&mut listener, progress)),
            Some(reply) => {
                progress(Progress::Failed(reply));
                last_failure = Some(reply.describe().to_string());
            }
            None => last_failure = Some("no answer after the kernel was sent".to_string()),
        }
    }
    bail!("gave up after {attempts} attempts (last: {})", last_failure.unwrap_or_else(|| "no failure recorded".into()))
}

/// The slowest link [`send`] expects, in bytes per second (115200 baud
/// carries 11 520): it bounds how long writing the kernel, and the
/// loader's receiving what the link has queued, may take.
const SLOWEST_LINK: f64 = 5_000.0;

/// Reports the kernel loaded; returns the bytes after the loader's last tag.
fn loaded<L: Read>(listener: &mut Listener<'_, L>, progress: &mut dyn FnMut(Progress)) -> Vec<u8> {
    progress(Progress::Loaded);
    let mut rest = listener.scanner.pending().to_vec();
    rest.extend(listener.unread.drain(..));
    rest
}

/// A line for a person, or `None` for progress not worth a line of its own.
pub fn describe(progress: &Progress) -> Option<String> {
    match progress {
        Progress::Waiting => None,
        Progress::Loader(line) => Some(format!("loader: {line}")),
        Progress::Attempt { attempt, of } => Some(format!("push: sending the kernel (attempt {attempt} of {of})")),
        Progress::Sent { .. } => None,
        Progress::Failed(reply) => Some(format!("push: {}", reply.describe())),
        Progress::Late(reply) => Some(format!("push: a late answer from the loader, ignored: {}", reply.describe())),
        Progress::Loaded => Some("push: the loader has the kernel; starting it".to_string()),
    }
}

/// The result of [`run_in_qemu`]: the run, and the [`send`] it did.
#[derive(Debug)]
pub struct QemuPush {
    /// QEMU's exit (the kernel's verdict through semihosting) and the
    /// whole serial transcript: the push's progress lines (`push: ...`,
    /// `loader: ...`), then the kernel's output with defmt decoded.
    pub run: RunOutput,
    /// What [`send`] reported, in order.
    pub progress: Vec<Progress>,
}

/// Boots the loader in QEMU `raspi4b` with its UART on a TCP socket and
/// `cmdline` on the kernel command line (QEMU passes it in the ATAG list at
/// `x0`, which the loader hands on), pushes the rpi4 harness image with
/// [`send`] (`options`), then captures what the kernel prints until QEMU
/// exits or `timeout` (from QEMU's start) passes.
pub fn run_in_qemu(cmdline: &str, options: &SendOptions, timeout: Duration) -> Result<QemuPush> {
    crate::install::ensure_qemu_for(&[Board::Rpi4])?;
    let release = qemu::release_from_env();
    let loader = build(release)?;
    let kernel = build_image(Board::Rpi4, ImageKind::Harness, release)?;
    let payload = std::fs::read(&kernel.raw).with_context(|| format!("reading {}", kernel.raw.display()))?;
    let elf = std::fs::read(&kernel.elf).with_context(|| format!("reading {}", kernel.elf.display()))?;
    let decoder = LogDecoder::from_elf(&elf, false)?;

    // We listen, QEMU connects: no window in which another process could
    // take a port we picked.
    let listener = TcpListener::bind("127.0.0.1:0").context("listening on a local TCP port")?;
    let port = listener.local_addr()?.port();
    let launch = Launch {
        board: Board::Rpi4,
        image: &loader.raw,
        cmdline: cmdline.to_string(),
        semihosting: true,
        gdb: false,
        interactive: false,
    };
    let mut cmd = qemu::command_with_serial(&launch, &format!("tcp:127.0.0.1:{port}"));
    // One host thread for all four emulated cores: cores 1-3 spin in the
    // firmware stub's `wfe` loop, which TCG runs as a busy loop; with a
    // thread each they starve QEMU's I/O thread on a small host, and the
    // UART then takes in 20 KB/s instead of 400.
    cmd.args(["-accel", "tcg,thread=single"]);
    let command_line = qemu::display_command(&cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());

    let _slot = Slot::acquire();
    let started = Instant::now();
    let mut child = Reaper(cmd.spawn().with_context(|| format!("starting {command_line}"))?);
    let mut stderr = child.0.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let stream = accept_within(&listener, &mut child, timeout, started)?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut link = stream;

    let mut transcript = Vec::new();
    let mut progress = Vec::new();
    let sent = send(&mut link, &payload, options, &mut |event| {
        if let Some(line) = describe(&event) {
            transcript.extend_from_slice(line.as_bytes());
            transcript.push(b'\n');
        }
        progress.push(event);
    });
    let mut console = Console::new(transcript, |frame: &[u8]| decoder.line(frame));
    let mut timed_out = false;
    let mut status = None;
    match sent {
        Ok(rest) => {
            console.feed(&rest)?;
            let mut chunk = [0u8; 4096];
            loop {
                match read_some(&mut link, &mut chunk) {
                    Ok(ReadSome::Bytes(count)) => console.feed(&chunk[..count])?,
                    Ok(ReadSome::Nothing) => {}
                    Ok(ReadSome::Ended) | Err(_) => break,
                }
                if started.elapsed() >= timeout {
                    timed_out = true;
                    break;
                }
            }
        }
        Err(e) => console.feed(format!("push failed: {e:#}\n").as_bytes())?,
    }
    // QEMU exits with the verdict right after the kernel's last output;
    // give it a moment, then stop it.
    let wait_until = Instant::now() + Duration::from_secs(5);
    while status.is_none() && !timed_out {
        if let Some(exit) = child.0.try_wait().context("waiting for QEMU")? {
            status = exit.code();
            break;
        }
        if Instant::now() >= wait_until || started.elapsed() >= timeout {
            timed_out = true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.kill_and_reap();
    let output = console.finish()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(QemuPush {
        run: RunOutput {
            status,
            output: String::from_utf8_lossy(&output).replace("\r\n", "\n"),
            timed_out,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            command: command_line,
        },
        progress,
    })
}

/// Waits for QEMU to connect to `listener`, failing if QEMU exits first or
/// `timeout` (counted from `started`) passes.
fn accept_within(
    listener: &TcpListener,
    child: &mut Reaper,
    timeout: Duration,
    started: Instant,
) -> Result<std::net::TcpStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accepting QEMU's serial connection"),
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("QEMU exited ({status}) before connecting its serial port");
        }
        if started.elapsed() >= timeout {
            bail!("QEMU did not connect its serial port within {} s", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(4096, LINK_ADDRESS + 0x5000).is_ok());
        assert!(check_size(MAX_LOADER_IMAGE - 1, LINK_ADDRESS + 0x5000).is_ok());
        assert!(check_size(MAX_LOADER_IMAGE, LINK_ADDRESS + 0x5000).is_err(), "the budget is under 16 KiB");
        assert!(check_size(4096, LINK_ADDRESS + LOADER_WINDOW + 1).is_err());
        assert!(check_size(4096, LINK_ADDRESS - 1).is_err());
    }

    fn scan(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut scanner = TagScanner::default();
        let (mut text, mut tags) = (Vec::new(), Vec::new());
        for &byte in bytes {
            tags.extend(scanner.push(byte, &mut text));
        }
        (text, tags)
    }

    #[test]
    fn tags_are_cut_out_of_text() {
        let mut wire = b"hello\r\n".to_vec();
        wire.extend(Reply::Request.tag());
        wire.extend(b"x\0y\0\0\0");
        wire.extend(Reply::Loaded.tag());
        wire.extend(b"\0\0T");
        let (text, tags) = scan(&wire);
        assert_eq!(tags, [b'?', b'K']);
        // Of the five zeros before the second tag, the first three are
        // text (a tag has two); the unfinished prefix at the end is held back.
        assert_eq!(text, b"hello\r\nx\0y\0\0\0");
    }

    /// How the fake loader answers a good header.
    #[derive(Debug, Clone, Copy)]
    enum HeaderAnswer {
        /// This reply instead of `HeaderAccepted` (then a request again).
        Refuse(Reply),
        /// Accepted, but the tag is lost on the line: after a while (its
        /// byte timeout) the loader reports `Timeout` and asks again.
        Lost,
    }

    /// A fake loader: answers the host's writes as the real one would,
    /// from a script of replies, so [`send`] is tested without QEMU.
    struct FakeLoader {
        to_host: VecDeque<u8>,
        /// What the loader will say once its byte timeout has passed.
        after_timeout: Option<(Instant, Vec<u8>)>,
        received: Vec<u8>,
        expect: usize,
        crc: u32,
        header_answers: VecDeque<HeaderAnswer>,
        verdicts: VecDeque<Reply>,
        payloads: usize,
    }

    /// The fake's byte timeout (the real loader's is 2 s).
    const FAKE_BYTE_TIMEOUT: Duration = Duration::from_millis(300);

    impl FakeLoader {
        fn new(verdicts: &[Reply]) -> FakeLoader {
            let mut to_host = VecDeque::from(b"tern-chainload: banner\r\n".to_vec());
            to_host.extend(Reply::Request.tag());
            FakeLoader {
                to_host,
                after_timeout: None,
                received: Vec::new(),
                expect: HEADER_LEN,
                crc: 0,
                header_answers: VecDeque::new(),
                verdicts: verdicts.iter().copied().collect(),
                payloads: 0,
            }
        }

        fn answering_headers(mut self, answers: &[HeaderAnswer]) -> FakeLoader {
            self.header_answers = answers.iter().copied().collect();
            self
        }

        /// A reply and a text line, then (unless it started a kernel) a
        /// request again, as the real loader says them.
        fn say(&mut self, reply: Reply) {
            self.to_host.extend(format!("tern-chainload: {}\r\n", reply.describe()).bytes());
            self.to_host.extend(reply.tag());
            if reply != Reply::Loaded {
                self.to_host.extend(Reply::Request.tag());
            }
        }
    }

    impl Read for FakeLoader {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            if let Some((due, _)) = &self.after_timeout
                && Instant::now() >= *due
            {
                let (_, words) = self.after_timeout.take().unwrap();
                self.to_host.extend(words);
            }
            if self.to_host.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let count = into.len().min(self.to_host.len());
            for slot in &mut into[..count] {
                *slot = self.to_host.pop_front().unwrap();
            }
            Ok(count)
        }
    }

    impl Write for FakeLoader {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.received.extend_from_slice(bytes);
            while self.received.len() >= self.expect {
                let chunk: Vec<u8> = self.received.drain(..self.expect).collect();
                if self.expect == HEADER_LEN && chunk.starts_with(b"TKRN") {
                    match Header::decode(chunk.as_slice().try_into().unwrap(), MAX_KERNEL_SIZE) {
                        Ok(header) => match self.header_answers.pop_front() {
                            None => {
                                self.to_host.extend(Reply::HeaderAccepted.tag());
                                self.expect = header.size as usize;
                                self.crc = header.crc;
                            }
                            Some(HeaderAnswer::Refuse(reply)) => self.say(reply),
                            Some(HeaderAnswer::Lost) => {
                                let mut words = b"tern-chainload: timed out\r\n".to_vec();
                                words.extend(Reply::Timeout.tag());
                                words.extend(Reply::Request.tag());
                                self.after_timeout = Some((Instant::now() + FAKE_BYTE_TIMEOUT, words));
                            }
                        },
                        Err(refusal) => self.say(refusal.reply),
                    }
                } else {
                    self.payloads += 1;
                    let checked = if crc32(&chunk) == self.crc { Reply::Loaded } else { Reply::CrcMismatch };
                    let verdict = self.verdicts.pop_front().unwrap_or(checked);
                    self.say(verdict);
                    if verdict == Reply::Loaded {
                        self.to_host.extend(b"Tern kernel says hi");
                    }
                    self.expect = HEADER_LEN;
                }
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A congested serial adapter: every other write times out (the port's
    /// timeout passed with the queue still full), the others take at most
    /// 100 bytes.
    struct Congested {
        loader: FakeLoader,
        writes: usize,
    }

    impl Read for Congested {
        fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
            self.loader.read(into)
        }
    }

    impl Write for Congested {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.writes % 2 == 1 {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.loader.write(&bytes[..bytes.len().min(100)])
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn quick() -> SendOptions {
        SendOptions {
            reply_timeout: Duration::from_millis(200),
            request_timeout: Some(Duration::from_millis(200)),
            ..SendOptions::default()
        }
    }

    #[test]
    fn send_retries_after_a_crc_mismatch_and_returns_the_kernels_first_bytes() {
        let mut loader = FakeLoader::new(&[Reply::CrcMismatch]);
        let mut seen = Vec::new();
        let rest = send(&mut loader, &[7u8; 10_000], &quick(), &mut |event| seen.push(event)).unwrap();
        assert_eq!(rest, b"Tern kernel says hi");
        assert!(seen.contains(&Progress::Loader("tern-chainload: banner".into())), "{seen:?}");
        assert!(seen.contains(&Progress::Failed(Reply::CrcMismatch)), "{seen:?}");
        assert!(seen.contains(&Progress::Attempt { attempt: 2, of: 3 }), "{seen:?}");
        assert_eq!(seen.last(), Some(&Progress::Loaded));
    }

    #[test]
    fn a_corrupted_payload_is_refused_and_sent_again() {
        let mut loader = FakeLoader::new(&[]);
        let options = SendOptions { corrupt_attempts: 1, ..quick() };
        let mut seen = Vec::new();
        let image: Vec<u8> = (0..5000u32).map(|index| index as u8).collect();
        send(&mut loader, &image, &options, &mut |event| seen.push(event)).unwrap();
        let failures: Vec<_> = seen.iter().filter(|event| matches!(event, Progress::Failed(_))).collect();
        assert_eq!(failures, [&Progress::Failed(Reply::CrcMismatch)]);
        assert_eq!(seen.last(), Some(&Progress::Loaded));
    }

    #[test]
    fn send_gives_up_after_its_attempts() {
        let mut loader = FakeLoader::new(&[Reply::CrcMismatch; 5]);
        let error = send(&mut loader, &[1u8; 100], &quick(), &mut |_| {}).unwrap_err().to_string();
        assert!(error.contains("gave up after 3 attempts"), "{error}");
        assert_eq!(loader.payloads, 3);
    }

    #[test]
    fn a_congested_link_that_times_out_and_takes_part_of_each_write_gets_everything() {
        let mut link = Congested { loader: FakeLoader::new(&[]), writes: 0 };
        let image: Vec<u8> = (0..20_000u32).map(|index| (index * 7) as u8).collect();
        let mut seen = Vec::new();
        let rest = send(&mut link, &image, &quick(), &mut |event| seen.push(event)).unwrap();
        assert_eq!(rest, b"Tern kernel says hi");
        assert_eq!(link.loader.payloads, 1);
        assert!(!seen.iter().any(|event| matches!(event, Progress::Failed(_))), "{seen:?}");
        assert!(link.writes > 2 * image.len() / 100, "{} writes", link.writes);
    }

    #[test]
    fn a_link_that_never_takes_a_byte_fails_at_the_deadline() {
        struct Stuck(FakeLoader);
        impl Read for Stuck {
            fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
                self.0.read(into)
            }
        }
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::TimedOut.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let started = Instant::now();
        let error = send(&mut Stuck(FakeLoader::new(&[])), &[1u8; 100], &quick(), &mut |_| {}).unwrap_err();
        assert!(format!("{error:#}").contains("writing the header"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_timeout_verdict_is_retried() {
        let mut loader = FakeLoader::new(&[Reply::Timeout]);
        let mut seen = Vec::new();
        send(&mut loader, &[3u8; 1000], &quick(), &mut |event| seen.push(event)).unwrap();
        assert!(seen.contains(&Progress::Failed(Reply::Timeout)), "{seen:?}");
        assert!(seen.contains(&Progress::Attempt { attempt: 2, of: 3 }), "{seen:?}");
        assert_eq!(loader.payloads, 2);
    }

    #[test]
    fn a_bad_header_is_sent_again() {
        let mut loader = FakeLoader::new(&[]).answering_headers(&[HeaderAnswer::Refuse(Reply::BadHeader)]);
        let mut seen = Vec::new();
        send(&mut loader, &[3u8; 1000], &quick(), &mut |event| seen.push(event)).unwrap();
        assert!(seen.contains(&Progress::Failed(Reply::BadHeader)), "{seen:?}");
        assert!(seen.contains(&Progress::Attempt { attempt: 2, of: 3 }), "{seen:?}");
        assert_eq!(loader.payloads, 1);
    }

    #[test]
    fn refusals_a_retry_cannot_mend_end_the_push_at_once() {
        for refusal in [Reply::TooLarge, Reply::BadAddress] {
            let mut loader = FakeLoader::new(&[]).answering_headers(&[HeaderAnswer::Refuse(refusal)]);
            let mut seen = Vec::new();
            let error = send(&mut loader, &[3u8; 1000], &quick(), &mut |event| seen.push(event)).unwrap_err();
            assert_eq!(error.to_string(), format!("the loader refused the kernel: {}", refusal.describe()));
            assert_eq!(seen.last(), Some(&Progress::Failed(refusal)));
            assert!(!seen.contains(&Progress::Attempt { attempt: 2, of: 3 }), "{seen:?}");
            assert_eq!(loader.payloads, 0);
        }
    }

    #[test]
    fn a_lost_header_acceptance_costs_one_attempt_and_its_late_timeout_none() {
        // Two attempts: the first loses its HeaderAccepted; the loader's
        // Timeout for it arrives while the host waits for the next request,
        // and must not use up the second attempt.
        let mut loader = FakeLoader::new(&[]).answering_headers(&[HeaderAnswer::Lost]);
        let options = SendOptions {
            attempts: 2,
            reply_timeout: Duration::from_millis(100),
            request_timeout: Some(Duration::from_secs(5)),
            ..SendOptions::default()
        };
        let mut seen = Vec::new();
        let rest = send(&mut loader, &[9u8; 3000], &options, &mut |event| seen.push(event)).unwrap();
        assert_eq!(rest, b"Tern kernel says hi");
        assert!(seen.contains(&Progress::Late(Reply::Timeout)), "{seen:?}");
        assert!(seen.contains(&Progress::Attempt { attempt: 2, of: 2 }), "{seen:?}");
        assert_eq!(loader.payloads, 1);
    }

    #[test]
    fn a_stale_loaded_before_anything_was_sent_is_not_success() {
        // A tag left over from an earlier session, before the new request.
        let mut loader = FakeLoader::new(&[]);
        let stale: Vec<u8> = Reply::Loaded.tag().into_iter().chain(Reply::CrcMismatch.tag()).collect();
        for &byte in stale.iter().rev() {
            loader.to_host.push_front(byte);
        }
        let mut seen = Vec::new();
        let rest = send(&mut loader, &[5u8; 2000], &quick(), &mut |event| seen.push(event)).unwrap();
        assert_eq!(rest, b"Tern kernel says hi");
        assert_eq!(loader.payloads, 1, "the kernel was sent");
        let late: Vec<_> = seen.iter().filter(|event| matches!(event, Progress::Late(_))).collect();
        assert_eq!(late, [&Progress::Late(Reply::Loaded), &Progress::Late(Reply::CrcMismatch)]);
        assert!(seen.contains(&Progress::Attempt { attempt: 1, of: 3 }), "{seen:?}");
    }

    #[test]
    fn send_fails_without_a_loader() {
        struct Silent;
        impl Read for Silent {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        impl Write for Silent {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let error = send(&mut Silent, &[1u8; 100], &quick(), &mut |_| {}).unwrap_err().to_string();
        assert!(error.contains("no request from the loader"), "{error}");
        assert!(send(&mut Silent, &[], &quick(), &mut |_| {}).is_err());
    }
}
