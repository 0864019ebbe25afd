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
//!   refuses a raw image over [`MAX_LOADER_IMAGE`] (16 KiB) or a layout whose
//!   stack ends past the loader's memory window: both would mean the
//!   loader outgrew the place the protocol gives it.
//! * [`send`] speaks the protocol over anything `Read + Write` (a serial
//!   port for `cargo xtask push`, a TCP socket into QEMU for the tests):
//!   wait for the loader's request, send the header, the payload, and read
//!   the verdict, retrying a bounded number of times after a CRC mismatch,
//!   a timeout or a corrupted header, giving up at once on a refusal that a
//!   retry cannot mend (too large, wrong address). What the loader prints
//!   between its tags is passed on as [`Progress::Loader`] lines. It returns
//!   the bytes that arrived after the loader's last tag: the kernel's first
//!   output, which the console must show.
//! * [`run_in_qemu`] boots the loader in QEMU `raspi4b` with the UART on a
//!   TCP socket, pushes the harness image through [`send`] and captures the
//!   rest like [`crate::qemu::capture`]: the end-to-end test of loader and
//!   host together (`tests/tests/chainload.rs`).
//!
//! The link must not block forever on reads: give the serial port or
//! socket a read timeout (a `TimedOut` or `WouldBlock` error is "nothing
//! yet"); [`send`] keeps its own deadlines.
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

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use object::Endianness;
use object::elf::{FileHeader64, SHT_SYMTAB};
use object::read::elf::{FileHeader, Sym};

use crate::console::{Console, LogDecoder};
use crate::qemu::{self, Launch, Reaper, RunOutput, Slot};
use crate::{Board, ImageKind, build_image, elf, image};

pub use tern_chainload::{
    Crc32, HEADER_LEN, Header, LINK_ADDRESS, LOAD_ADDRESS, LOADER_WINDOW, MAX_KERNEL_SIZE, MAX_LOADER_IMAGE, Reply,
    TAG_PREFIX, crc32,
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
    /// The raw image's size in bytes (at most [`MAX_LOADER_IMAGE`]).
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

/// The loader must fit its budget: the raw image at most
/// [`MAX_LOADER_IMAGE`], everything it uses (image, `.bss`, stack: up to
/// `window_end`) inside [`LOADER_WINDOW`].
fn check_size(raw: u64, window_end: u64) -> Result<()> {
    ensure!(raw <= MAX_LOADER_IMAGE, "the loader image is {raw} bytes, over its budget of {MAX_LOADER_IMAGE}");
    let used = window_end.checked_sub(LINK_ADDRESS).context("the loader's window ends below its start")?;
    ensure!(
        used <= LOADER_WINDOW,
        "the loader uses {used} bytes from {LINK_ADDRESS:#x} (image, .bss and stack), over its window of {LOADER_WINDOW}"
    );
    Ok(())
}

/// The value of symbol `name` in `elf`.
fn symbol(elf: &[u8], name: &str) -> Result<u64> {
    let header = FileHeader64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = header.endian().context("unknown ELF byte order")?;
    let sections = header.sections(endian, elf).context("reading ELF section headers")?;
    let symbols = sections.symbols(endian, elf, SHT_SYMTAB).context("reading the ELF symbol table")?;
    for sym in symbols.iter() {
        if sym.name(endian, symbols.strings()).ok() == Some(name.as_bytes()) {
            return Ok(sym.st_value(endian));
        }
    }
    bail!("the loader ELF has no symbol {name}")
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
    unread: Vec<u8>,
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
            while !self.unread.is_empty() {
                let byte = self.unread.remove(0);
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
            let mut buf = [0u8; 4096];
            match self.link.read(&mut buf) {
                Ok(0) => bail!("the serial link closed"),
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading from the serial link"),
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

/// Sends `image` to a chainloader at the other end of `link` and returns
/// the bytes that followed its last tag (the kernel's first output).
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
    let mut listener = Listener { link, scanner: TagScanner::default(), line: Vec::new(), unread: Vec::new() };
    let attempts = options.attempts.max(1);
    let mut last_failure = None;
    for attempt in 1..=attempts {
        progress(Progress::Waiting);
        match listener.next(options.request_timeout, true, progress)? {
            None => {
                bail!("no request from the loader within {} s", options.request_timeout.unwrap_or_default().as_secs())
            }
            Some(Reply::Request) => {}
            Some(Reply::Loaded) => {
                // A late verdict on the previous attempt: the kernel runs.
                return Ok(loaded(&mut listener, progress));
            }
            Some(other) => {
                // A late answer to an earlier attempt; wait for the request.
                progress(Progress::Failed(other));
                continue;
            }
        }
        progress(Progress::Attempt { attempt, of: attempts });
        listener.link.write_all(&header_bytes).context("writing the header")?;
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
        for (index, chunk) in payload.chunks(CHUNK).enumerate() {
            listener.link.write_all(chunk).context("writing the kernel")?;
            progress(Progress::Sent { done: (index * CHUNK + chunk.len()), total: image.len() });
        }
        listener.link.flush().context("writing the kernel")?;
        // Writes return once the bytes are buffered (a socket takes them
        // all at once), so allow for the loader still receiving them.
        let transfer = Duration::from_secs_f64(image.len() as f64 / SLOWEST_LINK);
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
/// carries 11 520): it bounds how long the loader may take to receive what
/// the link has buffered.
const SLOWEST_LINK: f64 = 5_000.0;

/// Reports the kernel loaded; returns the bytes after the loader's last tag.
fn loaded<L: Read>(listener: &mut Listener<'_, L>, progress: &mut dyn FnMut(Progress)) -> Vec<u8> {
    progress(Progress::Loaded);
    let mut rest = listener.scanner.pending().to_vec();
    rest.append(&mut listener.unread);
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
    let err_thread = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let stream = accept_within(&listener, &mut child, timeout, started)?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut link = stream;

    let mut transcript = Vec::new();
    let mut progress = Vec::new();
    let sent = send(&mut link, &payload, options, &mut |p| {
        if let Some(line) = describe(&p) {
            transcript.extend_from_slice(line.as_bytes());
            transcript.push(b'\n');
        }
        progress.push(p);
    });
    let mut console = Console::new(transcript, |frame: &[u8]| decoder.line(frame));
    let mut timed_out = false;
    let mut status = None;
    match sent {
        Ok(rest) => {
            console.feed(&rest)?;
            let mut buf = [0u8; 4096];
            loop {
                match link.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => console.feed(&buf[..n])?,
                    Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
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
    let stderr = err_thread.join().unwrap_or_default();
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
    fn host_crc_matches_known_vectors() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414f_a339);
        assert_eq!(crc32(&[0u8; 32]), 0x190a_55ad);
    }

    #[test]
    fn header_encoding_is_fixed() {
        let header = Header::for_payload(b"123456789").unwrap();
        let bytes = header.encode();
        let mut expected = b"TKRN".to_vec();
        expected.extend(9u32.to_le_bytes());
        expected.extend(0x8_0000u64.to_le_bytes());
        expected.extend(0xcbf4_3926u32.to_le_bytes());
        expected.extend(crc32(&expected).to_le_bytes());
        assert_eq!(bytes.to_vec(), expected);
        assert_eq!(bytes.len(), HEADER_LEN);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(check_size(4096, LINK_ADDRESS + 0x5000).is_ok());
        assert!(check_size(MAX_LOADER_IMAGE + 1, LINK_ADDRESS + 0x5000).is_err());
        assert!(check_size(4096, LINK_ADDRESS + LOADER_WINDOW + 1).is_err());
        assert!(check_size(4096, LINK_ADDRESS - 1).is_err());
    }

    fn scan(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut scanner = TagScanner::default();
        let (mut text, mut tags) = (Vec::new(), Vec::new());
        for &b in bytes {
            tags.extend(scanner.push(b, &mut text));
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

    /// A fake loader: answers the host's writes as the real one would,
    /// from a script of replies, so [`send`] is tested without QEMU.
    struct FakeLoader {
        to_host: VecDeque<u8>,
        received: Vec<u8>,
        expect: usize,
        crc: u32,
        verdicts: VecDeque<Reply>,
    }

    impl FakeLoader {
        fn new(verdicts: &[Reply]) -> FakeLoader {
            let mut to_host = VecDeque::from(b"tern-chainload: banner\r\n".to_vec());
            to_host.extend(Reply::Request.tag());
            FakeLoader {
                to_host,
                received: Vec::new(),
                expect: HEADER_LEN,
                crc: 0,
                verdicts: verdicts.iter().copied().collect(),
            }
        }
    }

    impl Read for FakeLoader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.to_host.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = buf.len().min(self.to_host.len());
            for slot in &mut buf[..n] {
                *slot = self.to_host.pop_front().unwrap();
            }
            Ok(n)
        }
    }

    impl Write for FakeLoader {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.received.extend_from_slice(buf);
            while self.received.len() >= self.expect {
                let chunk: Vec<u8> = self.received.drain(..self.expect).collect();
                if chunk.len() == HEADER_LEN && chunk.starts_with(b"TKRN") && self.expect == HEADER_LEN {
                    let header = Header::decode(chunk.as_slice().try_into().unwrap(), MAX_KERNEL_SIZE);
                    match header {
                        Ok(h) => {
                            self.to_host.extend(Reply::HeaderAccepted.tag());
                            self.expect = h.size as usize;
                            self.crc = h.crc;
                        }
                        Err(reply) => {
                            self.to_host.extend(reply.tag());
                            self.to_host.extend(Reply::Request.tag());
                        }
                    }
                } else {
                    let checked = if crc32(&chunk) == self.crc { Reply::Loaded } else { Reply::CrcMismatch };
                    let verdict = self.verdicts.pop_front().unwrap_or(checked);
                    self.to_host.extend(b"tern-chainload: verdict\r\n");
                    self.to_host.extend(verdict.tag());
                    if verdict == Reply::Loaded {
                        self.to_host.extend(b"Tern kernel says hi");
                    } else {
                        self.to_host.extend(Reply::Request.tag());
                    }
                    self.expect = HEADER_LEN;
                }
            }
            Ok(buf.len())
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
        let rest = send(&mut loader, &[7u8; 10_000], &quick(), &mut |p| seen.push(p)).unwrap();
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
        let image: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        send(&mut loader, &image, &options, &mut |p| seen.push(p)).unwrap();
        let failures: Vec<_> = seen.iter().filter(|p| matches!(p, Progress::Failed(_))).collect();
        assert_eq!(failures, [&Progress::Failed(Reply::CrcMismatch)]);
        assert_eq!(seen.last(), Some(&Progress::Loaded));
    }

    #[test]
    fn send_gives_up_after_its_attempts() {
        let mut loader = FakeLoader::new(&[Reply::CrcMismatch; 5]);
        let err = send(&mut loader, &[1u8; 100], &quick(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("gave up after 3 attempts"), "{err}");
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
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = send(&mut Silent, &[1u8; 100], &quick(), &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("no request from the loader"), "{err}");
        assert!(send(&mut Silent, &[], &quick(), &mut |_| {}).is_err());
    }
}
