//! `cargo xtask push` and `cargo xtask console`: a Raspberry Pi 4 on a USB
//! serial adapter.
//!
//! [`console`] opens the serial device (the `serialport` crate: 8N1, no
//! flow control, a short read timeout so the terminal's threads can stop)
//! and runs [`crate::terminal::run`] on it with the local terminal in raw
//! mode, decoding defmt frames with the table of the kernel ELF the Pi
//! runs: the production rpi4 image's by default, the harness image's with
//! `--harness`, built first if needed (the build is what finds the ELF, and
//! it is quick when nothing changed).
//!
//! [`push`] builds the rpi4 kernel image (production, or harness with
//! `--harness`), opens the device, tells the person to reset the Pi, sends
//! the image to the chainloader with [`crate::chainload::send`] (progress
//! on one line of standard error, the loader's own lines as they come,
//! retries after a CRC mismatch or a timeout) and then becomes the console
//! on the same port, so nothing the kernel prints first is lost.
//!
//! Why push has `--harness` but no `--scenario`: the loader hands the
//! kernel the firmware's device tree unchanged, and the kernel command line
//! in it comes from `cmdline.txt` on the SD card; a scenario named on the
//! host could not reach the kernel without the loader editing the device
//! tree, which it deliberately does not. Put `tern.harness=1
//! tern.scenario=NAME` in `cmdline.txt` and push the harness image.
//!
//! What it leaves out: listing serial devices (the port is named with
//! `--device`; enumeration would need libudev), hardware flow control, and
//! line speeds the loader was not built for (`--baud` must match the
//! loader's [`BAUD`]; the console alone may use any speed the kernel
//! uses).

use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serialport::SerialPort;

use crate::chainload::{self, Progress, SendOptions};
use crate::console::LogDecoder;
use crate::terminal::{self, EXIT_KEY_NAME, Ending, RawMode};
use crate::{Board, ImageKind, build_image};

pub use tern_chainload::BAUD;

/// The serial device used when none is named: the usual name of the first
/// USB serial adapter on Linux.
pub const DEFAULT_DEVICE: &str = "/dev/ttyUSB0";

/// How long a read on the port waits before returning `TimedOut`.
/// serialport applies the same timeout to writes (it waits that long for
/// the tty to become writable, which Linux reports only while fewer than
/// 256 bytes are queued), so every writer here must take `TimedOut` as
/// "not yet" or write little: [`chainload::send`] retries until its own
/// deadline (a kernel is many KiB); the console's keys are a few bytes at a
/// time and leave well within 50 ms.
const READ_TIMEOUT: Duration = Duration::from_millis(50);

/// Opens `device` at `baud`, 8N1, no flow control.
pub fn open(device: &str, baud: u32) -> Result<Box<dyn SerialPort>> {
    serialport::new(device, baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(READ_TIMEOUT)
        .open()
        .with_context(|| format!("opening serial device {device} at {baud} baud"))
}

/// Where the serial line is and which kernel the Pi runs.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    /// The serial device (`/dev/ttyUSB0`).
    pub device: &'a str,
    /// Line speed.
    pub baud: u32,
    /// Release or debug kernel image.
    pub release: bool,
    /// Production (`kernel8.img`) or harness (`kernel8-harness.img`).
    pub kind: ImageKind,
}

/// `cargo xtask console`: a terminal on the Pi's console.
pub fn console(link: &Link<'_>) -> Result<Ending> {
    let image = build_image(Board::Rpi4, link.kind, link.release)?;
    let port = open(link.device, link.baud)?;
    session(port, link, &image.elf, &[])
}

/// `cargo xtask push`: send the kernel to the chainloader, then be its
/// console.
pub fn push(link: &Link<'_>) -> Result<Ending> {
    if link.baud != BAUD {
        eprintln!(
            "note: the chainloader speaks {BAUD} baud; --baud {} works only with a loader built for it",
            link.baud
        );
    }
    let image = build_image(Board::Rpi4, link.kind, link.release)?;
    let payload = std::fs::read(&image.raw).with_context(|| format!("reading {}", image.raw.display()))?;
    let mut port = open(link.device, link.baud)?;
    eprintln!(
        "push: {} ({} bytes, CRC-32 {:#010x}) over {} at {} baud",
        image.raw.display(),
        payload.len(),
        chainload::crc32(&payload),
        link.device,
        link.baud
    );
    let mut reporter = Reporter::default();
    let rest = chainload::send(&mut port, &payload, &SendOptions::default(), &mut |event| reporter.report(&event))?;
    reporter.end_line();
    session(port, link, &image.elf, &rest)
}

/// Prints [`Progress`] to standard error: a line per event, the byte count
/// rewritten in place.
#[derive(Default)]
struct Reporter {
    waiting_said: bool,
    mid_line: bool,
    last_percent: Option<usize>,
}

impl Reporter {
    fn report(&mut self, progress: &Progress) {
        match progress {
            Progress::Waiting if !self.waiting_said => {
                self.waiting_said = true;
                self.line("push: waiting for the loader — power-cycle or reset the Pi");
            }
            Progress::Waiting => {}
            Progress::Sent { done, total } => {
                let percent = done * 100 / (*total).max(1);
                if self.last_percent != Some(percent) {
                    self.last_percent = Some(percent);
                    eprint!("\rpush: {done} of {total} bytes ({percent}%)");
                    self.mid_line = true;
                }
            }
            other => {
                if let Some(line) = chainload::describe(other) {
                    self.line(&line);
                }
                self.last_percent = None;
            }
        }
    }

    fn line(&mut self, line: &str) {
        self.end_line();
        eprintln!("{line}");
    }

    fn end_line(&mut self) {
        if self.mid_line {
            eprintln!();
            self.mid_line = false;
        }
    }
}

/// The terminal session on `port`, decoding with `elf`'s defmt table.
fn session(port: Box<dyn SerialPort>, link: &Link<'_>, elf: &Path, first: &[u8]) -> Result<Ending> {
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let decoder = LogDecoder::from_elf(&elf_bytes, false)?;
    let reader = port.try_clone().context("cloning the serial port for reading")?;
    eprintln!("console: {} at {} baud, defmt from {}; {EXIT_KEY_NAME} quits", link.device, link.baud, elf.display());
    let raw = RawMode::enable()?;
    let ending = terminal::run(reader, port, io::stdin(), io::stdout(), move |frame: &[u8]| decoder.line(frame), first);
    drop(raw);
    let ending = ending?;
    match &ending {
        Ending::ExitKey => eprintln!("console: closed"),
        Ending::Board(why) => eprintln!("console: {why}"),
    }
    Ok(ending)
}
