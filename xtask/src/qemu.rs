//! Finding QEMU, building its command line, and running it.
//!
//! Tern boots under `qemu-system-aarch64` on two machines: `raspi4b`, which
//! needs QEMU 9.0 or newer, and `virt`. [`probe`] asks the QEMU on `PATH`
//! for its version and machine list; [`command`] builds the invocation for
//! a [`Launch`]; then there are two ways to run it.
//!
//! **Interactive** ([`run_interactive`], behind `cargo xtask qemu`): the
//! UART is `-serial mon:stdio`, QEMU's stdin is the terminal (so the
//! console takes input and Ctrl-A X quits), and its stdout is a pipe into a
//! [`Console`], which prints text as it comes and defmt frames as log lines.
//!
//! **Captured** ([`run_scenario`], behind the integration tests, always
//! with the board's harness image): stdin is null, stdout goes through the
//! same [`Console`] into a buffer, stderr is collected, and the run has a
//! deadline: when it passes, QEMU is killed and reaped, and the result says
//! `timed_out`. Any early return (an error reading a pipe, a panic in the
//! caller) also kills and reaps QEMU, through a drop guard. The kernel is
//! told it runs under the harness (`tern.harness=1 tern.scenario=<name>`)
//! and QEMU gets semihosting, so the kernel ends the run with `SYS_EXIT`
//! and QEMU's exit status is the verdict: 0 pass, 1 fail, 2 kernel panic, 3
//! fault at EL1.
//!
//! **Captured with a keyboard** ([`capture_with_input`], behind the
//! console tests): as captured, but stdin is a pipe that a script types
//! into, waiting for texts in the decoded output first
//! ([`crate::keyboard`]); a step that fails kills QEMU and is reported
//! with the transcript.
//!
//! Captured runs are rationed to one per host core (override with
//! `TERN_QEMU_JOBS`): the test harness starts every test at once, and
//! emulated cores starved of host time would turn into false timeouts. The
//! timeout clock starts once a run has its slot.
//!
//! What it leaves out: no QEMU monitor (`-monitor none`), no display, no
//! networking or storage, no choice of QEMU binary other than `PATH`'s
//! `qemu-system-aarch64`; the gdb stub is always port 1234.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::console::{Console, LogDecoder};
use crate::keyboard::{Output, PACE, ScriptFailure, Step, run_script};
use crate::{Board, Image, ImageKind, build_image};

/// The QEMU binary, looked up on `PATH`.
pub const QEMU: &str = "qemu-system-aarch64";
/// The oldest QEMU with the `raspi4b` machine.
pub const MIN_VERSION: (u32, u32) = (9, 0);
/// How long a captured run may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the installed QEMU is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuInfo {
    /// Major, minor, micro.
    pub version: (u32, u32, u32),
    /// Whether `-M help` lists `raspi4b`.
    pub raspi4b: bool,
}

impl QemuInfo {
    /// Whether this QEMU is at least [`MIN_VERSION`].
    pub fn new_enough(&self) -> bool {
        (self.version.0, self.version.1) >= MIN_VERSION
    }

    /// The version as `x.y.z`.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// Whether this QEMU can boot `board`.
    pub fn supports(&self, board: Board) -> bool {
        match board {
            Board::Rpi4 => self.raspi4b,
            Board::Virt => true,
        }
    }
}

/// Asks `qemu-system-aarch64` on `PATH` what it is; `None` if not installed.
pub fn probe() -> Result<Option<QemuInfo>> {
    let version = match Command::new(QEMU).arg("--version").stdin(Stdio::null()).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("running `{QEMU} --version`")),
    };
    let text = String::from_utf8_lossy(&version.stdout);
    let version =
        parse_version(&text).with_context(|| format!("unexpected output from `{QEMU} --version`: {text:?}"))?;
    let machines = Command::new(QEMU)
        .args(["-M", "help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{QEMU} -M help`"))?;
    let raspi4b = has_machine(&String::from_utf8_lossy(&machines.stdout), "raspi4b");
    Ok(Some(QemuInfo { version, raspi4b }))
}

/// Parses `QEMU emulator version 10.0.2 (Debian ...)`.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text.split_whitespace().skip_while(|w| *w != "version").nth(1)?;
    let mut parts = word.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let micro = parts.next().flatten().unwrap_or(0);
    Some((major, minor, micro))
}

/// Whether `qemu -M help` output lists machine `name`.
pub fn has_machine(help: &str, name: &str) -> bool {
    help.lines().any(|line| line.split_whitespace().next() == Some(name))
}

/// The installed QEMU, checked once per process, as an error if missing or
/// too old (tests do not install anything; `cargo xtask test` does first).
pub fn installed() -> Result<QemuInfo> {
    static INFO: OnceLock<Result<QemuInfo, String>> = OnceLock::new();
    INFO.get_or_init(|| match probe() {
        Ok(Some(info)) if info.new_enough() => Ok(info),
        Ok(Some(info)) => Err(format!(
            "{QEMU} is version {}, Tern needs >= {}.{} (machine raspi4b): run `cargo xtask install-qemu`",
            info.version_string(),
            MIN_VERSION.0,
            MIN_VERSION.1
        )),
        Ok(None) => Err(format!(
            "{QEMU} is not installed (Tern needs QEMU >= {}.{} with machine raspi4b): \
             run `cargo xtask install-qemu`",
            MIN_VERSION.0, MIN_VERSION.1
        )),
        Err(e) => Err(format!("{e:#}")),
    })
    .clone()
    .map_err(|e| anyhow!("{e}"))
}

/// Everything that decides one QEMU invocation.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    /// The machine to emulate.
    pub board: Board,
    /// The raw image to boot.
    pub image: &'a Path,
    /// The kernel command line (`-append`).
    pub cmdline: String,
    /// Enable semihosting so the kernel can exit QEMU with a status.
    pub semihosting: bool,
    /// Start halted, with the gdb stub on port 1234.
    pub gdb: bool,
    /// Multiplex the monitor onto the serial port (`mon:stdio`) so Ctrl-A
    /// X works from a terminal; plain `stdio` otherwise.
    pub interactive: bool,
}

impl<'a> Launch<'a> {
    /// A run under the test harness: `image` with `cmdline`, semihosting
    /// on, no gdb, not interactive.
    pub fn harness(image: &'a Image, cmdline: &str) -> Self {
        Launch {
            board: image.board,
            image: &image.raw,
            cmdline: cmdline.to_string(),
            semihosting: true,
            gdb: false,
            interactive: false,
        }
    }
}

/// The command line for `launch`.
pub fn command(launch: &Launch<'_>) -> Command {
    command_with_serial(launch, if launch.interactive { "mon:stdio" } else { "stdio" })
}

/// The command line for `launch` with the UART on `serial` (a QEMU
/// `-serial` backend, e.g. `tcp:127.0.0.1:4000` for the chainload tests)
/// instead of standard I/O.
pub fn command_with_serial(launch: &Launch<'_>, serial: &str) -> Command {
    let mut cmd = Command::new(QEMU);
    match launch.board {
        Board::Rpi4 => cmd.args(["-M", "raspi4b"]),
        Board::Virt => cmd.args(["-M", "virt", "-cpu", "cortex-a72", "-m", "1G", "-smp", "2"]),
    };
    cmd.arg("-kernel").arg(launch.image);
    cmd.arg("-append").arg(&launch.cmdline);
    cmd.args(["-display", "none", "-monitor", "none", "-serial", serial]);
    if launch.semihosting {
        cmd.args(["-semihosting-config", "enable=on,target=native"]);
    }
    if launch.gdb {
        cmd.args(["-s", "-S"]);
    }
    cmd
}

/// The kernel command line that runs `scenario` under the test harness.
pub fn harness_cmdline(scenario: &str) -> String {
    format!("tern.harness=1 tern.scenario={scenario}")
}

/// A command as one shell-like line, for messages.
pub fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@".contains(c)) {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The result of a captured run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// QEMU's exit code; `None` if it was killed (timeout) or died by signal.
    pub status: Option<i32>,
    /// The serial output: console text and decoded defmt lines, in order,
    /// with `\r\n` turned into `\n`.
    pub output: String,
    /// Whether the run hit its timeout and was killed.
    pub timed_out: bool,
    /// What QEMU itself wrote to stderr (warnings, errors).
    pub stderr: String,
    /// The QEMU command line, for messages.
    pub command: String,
}

impl fmt::Display for RunOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        match (self.timed_out, self.status) {
            (true, _) => writeln!(f, "status: killed after timeout")?,
            (false, Some(code)) => writeln!(f, "status: exit code {code} ({})", verdict(code))?,
            (false, None) => writeln!(f, "status: killed by a signal")?,
        }
        writeln!(f, "----- serial output -----")?;
        f.write_str(&self.output)?;
        if !self.output.is_empty() && !self.output.ends_with('\n') {
            writeln!(f)?;
        }
        writeln!(f, "----- end of serial output -----")?;
        if !self.stderr.trim().is_empty() {
            writeln!(f, "----- QEMU stderr -----\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

/// What the kernel's semihosting exit code means.
pub fn verdict(code: i32) -> &'static str {
    match code {
        0 => "scenario passed",
        1 => "scenario failed",
        2 => "kernel panic",
        3 => "fault at EL1",
        _ => "unknown code",
    }
}

/// Whether `TERN_RELEASE` asks the tests for release images.
pub fn release_from_env() -> bool {
    std::env::var("TERN_RELEASE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Builds the harness image for `board` (once per process; release if
/// `TERN_RELEASE=1`) and runs `scenario` under the harness.
pub fn run_scenario(board: Board, scenario: &str, timeout: Duration) -> Result<RunOutput> {
    if scenario.is_empty() || scenario.contains(char::is_whitespace) {
        bail!("scenario name {scenario:?} must be one non-empty word");
    }
    let qemu = installed()?;
    if !qemu.supports(board) {
        bail!(
            "the installed QEMU {} has no machine raspi4b, needed by board {board} \
             (install QEMU >= {}.{}: `cargo xtask install-qemu`)",
            qemu.version_string(),
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    let image = build_image(board, ImageKind::Harness, release_from_env())?;
    run_captured(&image, &harness_cmdline(scenario), timeout)
}

/// [`run_scenario`] with a keyboard: `script` is typed into the UART as
/// [`capture_with_input`] plays it.
pub fn run_scenario_with_input(
    board: Board,
    scenario: &str,
    timeout: Duration,
    script: &[Step<'_>],
) -> Result<ScriptedRun> {
    if scenario.is_empty() || scenario.contains(char::is_whitespace) {
        bail!("scenario name {scenario:?} must be one non-empty word");
    }
    let qemu = installed()?;
    if !qemu.supports(board) {
        bail!("the installed QEMU {} has no machine raspi4b, needed by board {board}", qemu.version_string());
    }
    let image = build_image(board, ImageKind::Harness, release_from_env())?;
    capture_with_input(command(&Launch::harness(&image, &harness_cmdline(scenario))), &image.elf, timeout, script)
}

/// Builds the production image for `board` (once per process; release if
/// `TERN_RELEASE=1`) and boots it with a keyboard: `script` is typed into
/// the UART as [`capture_with_input`] plays it, and once every step has
/// been played QEMU is stopped (a production image never exits by itself:
/// it sits at the shell's prompt). The run counts as ended, not timed
/// out, when the script finished.
pub fn run_production_with_input(board: Board, timeout: Duration, script: &[Step<'_>]) -> Result<ScriptedRun> {
    let qemu = installed()?;
    if !qemu.supports(board) {
        bail!("the installed QEMU {} has no machine raspi4b, needed by board {board}", qemu.version_string());
    }
    let image = build_image(board, ImageKind::Production, release_from_env())?;
    let launch = Launch::harness(&image, "");
    capture_scripted(command(&launch), &image.elf, timeout, Some(script), true)
}

/// Boots `image` with `cmdline` under semihosting, no stdin, capturing
/// output, killing QEMU after `timeout`.
pub fn run_captured(image: &Image, cmdline: &str, timeout: Duration) -> Result<RunOutput> {
    capture(command(&Launch::harness(image, cmdline)), &image.elf, timeout)
}

/// Runs a prepared QEMU command with no stdin, capturing its output
/// (console text and decoded defmt lines, with `elf`'s table), killing and
/// reaping QEMU after `timeout`. Shared by the tests' runner and the
/// benchmark (which adds its own QEMU arguments).
pub fn capture(cmd: Command, elf: &Path, timeout: Duration) -> Result<RunOutput> {
    Ok(capture_scripted(cmd, elf, timeout, None, false)?.run)
}

/// A captured run with typed input: what it printed, and how its script
/// went.
#[derive(Debug, Clone)]
pub struct ScriptedRun {
    /// The run, as [`capture`] reports it.
    pub run: RunOutput,
    /// Whether every step of the script was played.
    pub script: Result<(), ScriptFailure>,
}

/// [`capture`] with a keyboard: QEMU's stdin (the UART) is typed into as
/// `script` says ([`crate::keyboard`]), waiting for texts in the decoded
/// output. A step that fails kills QEMU at once; the run's own ending
/// (exit or timeout) is as [`capture`]'s.
pub fn capture_with_input(cmd: Command, elf: &Path, timeout: Duration, script: &[Step<'_>]) -> Result<ScriptedRun> {
    capture_scripted(cmd, elf, timeout, Some(script), false)
}

fn capture_scripted(
    mut cmd: Command,
    elf: &Path,
    timeout: Duration,
    script: Option<&[Step<'_>]>,
    end_after_script: bool,
) -> Result<ScriptedRun> {
    let elf = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let decoder = LogDecoder::from_elf(&elf, false)?;
    let command_line = display_command(&cmd);
    let stdin = if script.is_some() { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());

    let _slot = Slot::acquire();
    let mut child = Reaper(cmd.spawn().with_context(|| format!("starting {command_line}"))?);
    let started = Instant::now();
    let mut stdout = child.0.stdout.take().expect("stdout is piped");
    let mut stderr = child.0.stderr.take().expect("stderr is piped");
    let keyboard = child.0.stdin.take();
    let output = Output::new();
    let presented = output.clone();
    let out_thread = thread::spawn(move || -> io::Result<()> {
        let mut console = Console::new(presented, |frame: &[u8]| decoder.line(frame));
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => console.feed(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        console.finish().map(drop)
    });
    let err_thread = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });

    let (ended, failed, played) = (AtomicBool::new(false), AtomicBool::new(false), AtomicBool::new(false));
    let (timed_out, status, script) = thread::scope(|scope| -> Result<_> {
        let player = match (script, keyboard) {
            (Some(script), Some(keyboard)) => {
                let (output, ended, failed, done) = (&output, &ended, &failed, &played);
                Some(scope.spawn(move || {
                    let played = run_script(script, output, keyboard, started + timeout, PACE, ended);
                    failed.store(played.is_err(), Ordering::Release);
                    done.store(played.is_ok(), Ordering::Release);
                    played
                }))
            }
            _ => None,
        };
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.0.try_wait().context("waiting for QEMU")? {
                break status.code();
            }
            if started.elapsed() >= timeout {
                timed_out = true;
                child.kill_and_reap();
                break None;
            }
            if failed.load(Ordering::Acquire) {
                // A step failed: the run cannot go as the test meant.
                child.kill_and_reap();
                break None;
            }
            if end_after_script && played.load(Ordering::Acquire) {
                // Every step played: what the test meant to see is there
                // (a moment more lets the last echo arrive).
                thread::sleep(Duration::from_millis(200));
                child.kill_and_reap();
                break None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        ended.store(true, Ordering::Release);
        let script = match player {
            Some(player) => player.join().map_err(|_| anyhow!("the script player panicked"))?,
            None => Ok(()),
        };
        Ok((timed_out, status, script))
    })?;

    out_thread.join().map_err(|_| anyhow!("the output reader panicked"))?.context("reading QEMU's output")?;
    let stderr = err_thread.join().unwrap_or_default();
    Ok(ScriptedRun {
        run: RunOutput {
            status,
            output: String::from_utf8_lossy(&output.bytes()).replace("\r\n", "\n"),
            timed_out,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            command: command_line,
        },
        script,
    })
}

/// Boots interactively: stdin is the terminal, the serial output goes
/// through a [`Console`] to our stdout. Returns QEMU's exit status.
pub fn run_interactive(launch: &Launch<'_>, elf: &Path, locations: bool) -> Result<ExitStatus> {
    let elf_bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
    let decoder = LogDecoder::from_elf(&elf_bytes, locations)?;
    let mut cmd = command(launch);
    let command_line = display_command(&cmd);
    eprintln!("$ {command_line}");
    cmd.stdin(Stdio::inherit()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = Reaper(cmd.spawn().with_context(|| format!("starting {QEMU}"))?);
    let mut stdout = child.0.stdout.take().expect("stdout is piped");
    let mut console = Console::new(io::stdout(), |frame: &[u8]| decoder.line(frame));
    let mut buf = [0u8; 4096];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            // If our stdout fails, the guard kills QEMU on return.
            Ok(n) => console.feed(&buf[..n]).context("writing to the terminal")?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading QEMU's output"),
        }
    }
    console.finish().context("writing to the terminal")?.flush()?;
    child.0.wait().context("waiting for QEMU")
}

/// Owns a QEMU process: kills and reaps it when dropped, so no path out of a
/// run (error, panic, timeout) leaves it running.
pub(crate) struct Reaper(pub(crate) Child);

impl Reaper {
    pub(crate) fn kill_and_reap(&mut self) {
        // Killing an already-exited child is harmless; wait() reaps it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            self.kill_and_reap();
        }
    }
}

/// A permit to run one captured QEMU (see the module docs).
pub(crate) struct Slot;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn max_slots() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("TERN_QEMU_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

impl Slot {
    pub(crate) fn acquire() -> Slot {
        let (busy, freed) = &SLOTS;
        let mut busy = busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy >= max_slots() {
            busy = freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (busy, freed) = &SLOTS;
        *busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_versions() {
        assert_eq!(
            parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"),
            Some((10, 0, 2))
        );
        assert_eq!(parse_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"), Some((7, 2, 15)));
        assert_eq!(parse_version("QEMU emulator version 9.1.0-rc2"), Some((9, 1, 0)));
        assert_eq!(parse_version("QEMU emulator version 9"), Some((9, 0, 0)));
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn version_threshold() {
        let info = |version| QemuInfo { version, raspi4b: true };
        assert!(!info((7, 2, 15)).new_enough());
        assert!(!info((8, 2, 99)).new_enough());
        assert!(info((9, 0, 0)).new_enough());
        assert!(info((10, 0, 2)).new_enough());
    }

    #[test]
    fn finds_machines_in_help() {
        let help = "Supported machines are:\nraspi3b              Raspberry Pi 3B (revision 1.2)\n\
                    raspi4b              Raspberry Pi 4B (revision 1.5)\nvirt                 QEMU 10.0 ARM Virtual Machine (alias of virt-10.0)\n";
        assert!(has_machine(help, "raspi4b"));
        assert!(has_machine(help, "virt"));
        assert!(!has_machine(help, "raspi4"));
        assert!(!has_machine("raspi3b  Raspberry Pi 3B, not raspi4b\n", "raspi4b"));
    }

    #[test]
    fn command_lines_match_the_platform() {
        let image = Path::new("/k/kernel8.img");
        let mut launch = Launch {
            board: Board::Rpi4,
            image,
            cmdline: harness_cmdline("ticks"),
            semihosting: true,
            gdb: false,
            interactive: false,
        };
        assert_eq!(
            display_command(&command(&launch)),
            "qemu-system-aarch64 -M raspi4b -kernel /k/kernel8.img -append \
             'tern.harness=1 tern.scenario=ticks' -display none -monitor none -serial stdio \
             -semihosting-config enable=on,target=native"
        );
        launch.board = Board::Virt;
        launch.cmdline = String::new();
        launch.semihosting = false;
        launch.gdb = true;
        launch.interactive = true;
        assert_eq!(
            display_command(&command(&launch)),
            "qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1G -smp 2 -kernel /k/kernel8.img \
             -append '' -display none -monitor none -serial mon:stdio -s -S"
        );
    }

    #[test]
    fn run_output_display_has_everything() {
        let run = RunOutput {
            status: Some(3),
            output: "Tern 0.1\nkernel fault".into(),
            timed_out: false,
            stderr: "qemu: warning\n".into(),
            command: "qemu-system-aarch64 -M virt".into(),
        };
        let text = run.to_string();
        for needle in ["exit code 3 (fault at EL1)", "Tern 0.1\nkernel fault\n", "qemu: warning", "-M virt"] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }

    /// A captured run of a stand-in process (`sh`) exercising timeout,
    /// kill and reap without QEMU.
    #[test]
    fn reaper_kills_on_drop() {
        let child = Command::new("sh").args(["-c", "sleep 30"]).stdin(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        drop(Reaper(child));
        // The process is gone (reaped, so not even a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
