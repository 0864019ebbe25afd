//! # tern-tests: what a Tern boot must print, checked in QEMU
//!
//! The integration tests (`tests/boot.rs`) boot every test scenario of the
//! kernel on both boards, in each board's harness image, and check the
//! output contract the kernel promises; `tests/image.rs` checks that the
//! production image carries no harness code (`xtask::harness_symbols`);
//! `tests/chainload.rs` boots the serial chainloader and pushes the harness
//! image through it (`xtask::chainload::run_in_qemu`).
//! This library holds the part worth sharing and worth testing on its own:
//! [`Transcript`], one finished QEMU run split into lines with assertion
//! helpers, and [`checks`], one function per scenario stating that
//! scenario's contract. Keeping the checks here, not in the test file, lets
//! the unit tests below run them against hand-written transcripts, so the
//! assertions are known to accept a correct boot and reject broken ones
//! before a kernel exists to produce either.
//!
//! Every failure panics with the reason *and the whole run*: command line,
//! exit status, all serial output (console text and decoded defmt lines in
//! arrival order) and QEMU's stderr. A boot test that fails without showing
//! what the kernel said is a boot test nobody can fix.
//!
//! Building, booting, timeouts and log decoding are the xtask library's
//! (`xtask::run_scenario`, which always boots the harness image); this crate adds nothing to that but the
//! per-test timeout knob `TERN_TEST_TIMEOUT` (seconds, default 60).
//!
//! It depends on the xtask library only (never on a kernel crate: it sees
//! the kernel as QEMU shows it).
//!
//! What it leaves out: it does not check timing (QEMU's is not the
//! hardware's), exact wording beyond the contract's fixed strings, or
//! output the contract does not mention; and it never installs QEMU (run
//! `cargo xtask install-qemu` or `cargo xtask test`).

use std::fmt::Display;
use std::time::Duration;

pub use xtask::{Board, RunOutput};

/// One finished run of a scenario on a board.
#[derive(Debug)]
pub struct Transcript {
    /// The board it ran on.
    pub board: Board,
    /// The scenario's name as the kernel knows it (`contain-undefined`).
    pub scenario: String,
    /// Everything the run produced.
    pub run: RunOutput,
    lines: Vec<String>,
}

/// The timeout for one boot: `TERN_TEST_TIMEOUT` seconds, or 60.
pub fn timeout() -> Duration {
    std::env::var("TERN_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(xtask::DEFAULT_TIMEOUT)
}

impl Transcript {
    /// Builds the board's kernel (once per test process) and runs
    /// `scenario` under the harness; panics with a clear message if that
    /// cannot be done or if the run timed out.
    pub fn boot(board: Board, scenario: &str) -> Transcript {
        let timeout = timeout();
        let run = match xtask::run_scenario(board, scenario, timeout) {
            Ok(run) => run,
            Err(e) => panic!("{board} {scenario}: could not run the scenario: {e:#}"),
        };
        let t = Transcript::new(board, scenario, run);
        if t.run.timed_out {
            t.fail(format_args!("timed out after {} s (QEMU killed)", timeout.as_secs()));
        }
        t
    }

    /// [`Transcript::boot`] with a keyboard: `script` is typed into the
    /// console as the run goes (`xtask::keyboard`). A step that fails
    /// fails the test, saying which and showing the whole run.
    pub fn boot_with_input(board: Board, scenario: &str, script: &[xtask::keyboard::Step<'_>]) -> Transcript {
        let timeout = timeout();
        let scripted = match xtask::qemu::run_scenario_with_input(board, scenario, timeout, script) {
            Ok(scripted) => scripted,
            Err(e) => panic!("{board} {scenario}: could not run the scenario: {e:#}"),
        };
        let t = Transcript::new(board, scenario, scripted.run);
        if let Err(failure) = scripted.script {
            t.fail(failure);
        }
        if t.run.timed_out {
            t.fail(format_args!("timed out after {} s (QEMU killed)", timeout.as_secs()));
        }
        t
    }

    /// The production image (no harness, no scenario: the image a person
    /// boots) with a keyboard: `script` is typed as the run goes and QEMU
    /// is stopped once it has all been played (`xtask::qemu::
    /// run_production_with_input`). A step that fails, or a timeout, fails
    /// the test, showing the whole run. `name` names the run in messages.
    pub fn production_with_input(board: Board, name: &str, script: &[xtask::keyboard::Step<'_>]) -> Transcript {
        let timeout = timeout();
        let scripted = match xtask::qemu::run_production_with_input(board, timeout, script) {
            Ok(scripted) => scripted,
            Err(e) => panic!("{board} {name}: could not boot the production image: {e:#}"),
        };
        let t = Transcript::new(board, name, scripted.run);
        if let Err(failure) = scripted.script {
            t.fail(failure);
        }
        if t.run.timed_out {
            t.fail(format_args!("timed out after {} s (QEMU killed)", timeout.as_secs()));
        }
        t
    }

    /// A transcript of an existing run (for tests of the checks).
    pub fn new(board: Board, scenario: &str, run: RunOutput) -> Transcript {
        let lines = run.output.lines().map(str::to_string).collect();
        Transcript { board, scenario: scenario.to_string(), run, lines }
    }

    /// The serial output, line by line.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Fails the test with `why` and the whole run.
    pub fn fail(&self, why: impl Display) -> ! {
        panic!("{} {}: {why}\n\n{}", self.board, self.scenario, self.run)
    }

    /// The index of the first line at or after `from` matching `pred`.
    pub fn find(&self, from: usize, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.lines.iter().skip(from).position(|l| pred(l)).map(|i| i + from)
    }

    /// Like [`find`](Self::find), but fails the test naming `what` if no
    /// line matches.
    pub fn expect(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        self.find(from, pred).unwrap_or_else(|| {
            if from == 0 {
                self.fail(format_args!("expected {what}"))
            } else {
                self.fail(format_args!("expected {what} after output line {from}"))
            }
        })
    }

    /// Fails if any line matches `pred`.
    pub fn expect_none(&self, what: &str, pred: impl Fn(&str) -> bool) {
        if let Some(i) = self.find(0, pred) {
            self.fail(format_args!("unexpected {what} (output line {})", i + 1));
        }
    }

    /// Fails unless QEMU exited with `code`.
    pub fn expect_status(&self, code: i32) {
        if self.run.status != Some(code) {
            let got = match self.run.status {
                Some(c) => format!("{c} ({})", xtask::qemu::verdict(c)),
                None => "none (killed)".to_string(),
            };
            self.fail(format_args!("expected exit status {code} ({}), got {got}", xtask::qemu::verdict(code)));
        }
    }

    /// What every boot prints: the banner, the board line, and the defmt
    /// `memory:` log line.
    pub fn expect_boot(&self) {
        self.expect(0, "a banner line starting `Tern `", |l| l.starts_with("Tern "));
        // `board: qemu-virt`, alone or followed by details after a space.
        let board = format!("board: {}", self.board.kernel_name());
        self.expect(0, &format!("a line `{board}`"), |l| {
            l.strip_prefix(&board).is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        });
        self.expect(0, "a defmt INFO line containing `memory:`", |l| l.starts_with("INFO ") && l.contains("memory:"));
    }

    /// The `scenario <name>: PASS` line at or after `from`, no FAIL line,
    /// and exit status 0. Returns the PASS line's index.
    pub fn expect_pass(&self, from: usize) -> usize {
        let fail = format!("scenario {}: FAIL", self.scenario);
        self.expect_none(&format!("`{fail}`"), |l| l.contains(&fail));
        let pass = format!("scenario {}: PASS", self.scenario);
        let at = self.expect(from, &format!("`{pass}`"), |l| l.contains(&pass));
        self.expect_status(0);
        at
    }
}

/// Whether a test function's name is `<board>_<scenario>` with the
/// scenario's `-` as `_` (checked at compile time by the test macro).
pub const fn test_name_matches(test: &str, board: &str, scenario: &str) -> bool {
    let (t, b, s) = (test.as_bytes(), board.as_bytes(), scenario.as_bytes());
    if t.len() != b.len() + 1 + s.len() {
        return false;
    }
    let mut i = 0;
    while i < t.len() {
        let want = if i < b.len() {
            b[i]
        } else if i == b.len() || s[i - b.len() - 1] == b'-' {
            b'_'
        } else {
            s[i - b.len() - 1]
        };
        if t[i] != want {
            return false;
        }
        i += 1;
    }
    true
}

/// The contract of each scenario, one function each.
pub mod checks {
    use super::Transcript;

    /// How a contained fault is classified in its report.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FaultKind {
        /// A data or instruction abort: the report says `abort`.
        Abort,
        /// An undefined instruction: the report says `Unknown reason`.
        Undefined,
    }

    /// `banner`: the boot lines and PASS.
    pub fn banner(t: &Transcript) {
        t.expect_boot();
        t.expect_pass(0);
    }

    /// `ticks`: `tick 1` … `tick 5` in order, then PASS.
    pub fn ticks(t: &Transcript) {
        t.expect_boot();
        let mut at = 0;
        for n in 1..=5 {
            let tick = format!("tick {n}");
            at = t.expect(at, &format!("a line `{tick}` (in order)"), |l| {
                let l = l.trim_end();
                l == tick || l.strip_prefix(&tick).is_some_and(|rest| rest.starts_with(' '))
            }) + 1;
        }
        t.expect_pass(at);
    }

    /// `heap`: a line starting `heap: ok`, PASS.
    pub fn heap(t: &Transcript) {
        t.expect_boot();
        t.expect(0, "a line starting `heap: ok`", |l| l.starts_with("heap: ok"));
        t.expect_pass(0);
    }

    /// `copy`: the kernel's copy routine right at every length and
    /// alignment checked, guards untouched, and overlapping moves right.
    pub fn copy(t: &Transcript) {
        t.expect_boot();
        t.expect(0, "a line starting `copy: ` and saying the copies were right", |l| {
            l.starts_with("copy: ") && l.contains("copies right")
        });
        t.expect(0, "`copy: overlapping moves match copy_within`", |l| {
            l.starts_with("copy: overlapping moves match copy_within")
        });
        t.expect_pass(0);
    }

    /// `domains`: `[hello.ping]` and `[hello.pong]` lines, each at least
    /// twice, alternating (some ping, pong, ping or pong, ping, pong run).
    pub fn domains(t: &Transcript) {
        t.expect_boot();
        let seq: Vec<bool> = t
            .lines()
            .iter()
            .filter_map(|l| {
                if l.starts_with("[hello.ping]") {
                    Some(true)
                } else if l.starts_with("[hello.pong]") {
                    Some(false)
                } else {
                    None
                }
            })
            .collect();
        let pings = seq.iter().filter(|&&p| p).count();
        let pongs = seq.len() - pings;
        if pings < 2 || pongs < 2 {
            t.fail(format_args!(
                "expected at least 2 `[hello.ping]` and 2 `[hello.pong]` lines, got {pings} and {pongs}"
            ));
        }
        let switches = seq.windows(2).filter(|w| w[0] != w[1]).count();
        if switches < 2 {
            t.fail("`[hello.ping]` and `[hello.pong]` lines do not alternate");
        }
        t.expect_pass(0);
    }

    /// The containment scenarios: a fault report naming a `probe.` domain
    /// with ESR, FAR and ELR (and the fault's kind), then `terminated`,
    /// then a `[hello.ping]` line (another domain still runs), then PASS.
    pub fn contained(t: &Transcript, kind: FaultKind) {
        t.expect_boot();
        let report = t.expect(0, "a fault report line containing `fault in domain 'probe.`", |l| {
            l.contains("fault in domain 'probe.")
        });
        let end = t.expect(report + 1, "a line containing `terminated`", |l| l.contains("terminated"));
        let text = t.lines()[report..=end].join("\n");
        for field in ["ESR", "FAR", "ELR"] {
            if !text.contains(field) {
                t.fail(format_args!("the fault report lacks `{field}`"));
            }
        }
        match kind {
            FaultKind::Undefined if !text.contains("Unknown reason") => {
                t.fail("the fault report does not say `Unknown reason`")
            }
            // Case-insensitive: "Data Abort" and "data abort" both say it.
            FaultKind::Abort if !text.to_ascii_lowercase().contains("abort") => {
                t.fail("the fault report does not say `abort`")
            }
            _ => {}
        }
        let ping = t.expect(end + 1, "a `[hello.ping]` line after the termination (another domain still runs)", |l| {
            l.starts_with("[hello.ping]")
        });
        t.expect_pass(ping + 1);
    }

    /// `contain-bad-pointer`: the kernel refuses the pointer with
    /// `BadAddress` and nothing faults.
    pub fn bad_pointer(t: &Transcript) {
        t.expect_boot();
        t.expect(0, "a line containing `BadAddress`", |l| l.contains("BadAddress"));
        t.expect_none("a kernel call that was not refused as it should be", |l| l.contains("NOT REFUSED"));
        t.expect_none("fault report (`fault in domain`)", |l| l.contains("fault in domain"));
        t.expect_pass(0);
    }

    /// An RPC scenario: every expected line present, no refusal that went
    /// wrong, no fault, the client reported no failure, and PASS.
    pub fn rpc(t: &Transcript, expected: &[&str]) {
        expected_lines(t, expected);
        t.expect(0, "the client reporting 0 failures", |l| {
            l.starts_with("[client] test ") && l.ends_with(": 0 failure(s)")
        });
        t.expect_pass(0);
    }

    /// A scenario whose client threads the kernel starts itself (so no
    /// client test line): every expected line present, no refusal that
    /// went wrong, no fault, and PASS.
    pub fn lines(t: &Transcript, expected: &[&str]) {
        expected_lines(t, expected);
        t.expect_pass(0);
    }

    /// The kernel survives what a domain does to it (domain faults are
    /// allowed, and contained): every expected line present, no kernel
    /// panic or kernel fault, and PASS.
    pub fn survives(t: &Transcript, expected: &[&str]) {
        t.expect_boot();
        for line in expected {
            t.expect(0, &format!("a line containing `{line}`"), |l| l.contains(line));
        }
        t.expect_none("a kernel panic", |l| l.contains("kernel panic"));
        t.expect_none("a kernel fault", |l| l.starts_with("kernel fault"));
        t.expect_pass(0);
    }

    /// A server that faults inside a call: every expected line present
    /// (the fault report among them), the client reported no failure, and
    /// PASS: the kernel carried on.
    pub fn server_fault(t: &Transcript, expected: &[&str]) {
        t.expect_boot();
        for line in expected {
            t.expect(0, &format!("a line containing `{line}`"), |l| l.contains(line));
        }
        t.expect_none("a kernel panic", |l| l.contains("kernel panic"));
        t.expect(0, "the client reporting 0 failures", |l| {
            l.starts_with("[client] test ") && l.ends_with(": 0 failure(s)")
        });
        t.expect_pass(0);
    }

    /// An activation-control scenario (`ctl-*`): two rounds (servers
    /// protected, then merged), each printing every expected line (a
    /// `[ctl]` check line ends `: ok` when it held, `: WRONG` when not), no
    /// check wrong, the client reporting 0 failures both times, no fault,
    /// and PASS.
    pub fn control(t: &Transcript, expected: &[&str]) {
        t.expect_boot();
        for line in expected {
            let seen = t.lines().iter().filter(|l| l.contains(line)).count();
            if seen < 2 {
                t.fail(format_args!("expected a line containing `{line}` in both rounds, saw it {seen} time(s)"));
            }
        }
        t.expect_none("a check that went wrong", |l| l.starts_with("[ctl]") && l.ends_with(": WRONG"));
        t.expect_none("a fault report", |l| l.contains("fault in domain"));
        let passes = t.lines().iter().filter(|l| l.starts_with("[ctl] test ") && l.ends_with(": 0 failure(s)")).count();
        if passes != 2 {
            t.fail(format_args!("expected the client to report 0 failures in both rounds, saw {passes}"));
        }
        t.expect_pass(0);
    }

    fn expected_lines(t: &Transcript, expected: &[&str]) {
        t.expect_boot();
        for line in expected {
            t.expect(0, &format!("a line containing `{line}`"), |l| l.contains(line));
        }
        t.expect_none("a call not refused as it should be", |l| l.contains("NOT REFUSED"));
        t.expect_none("a fault report", |l| l.contains("fault in domain"));
    }

    /// `fuzz`: the kernel-call fuzzer (the kernel's default seed and call
    /// count) ran to its verdict: the whole-run histogram with as many
    /// calls as asked (`tern.fuzz.calls`, or the kernel's default of
    /// 20 000 — any count if the line does not say), no call broke a rule
    /// the kernel promises, the healthy client's round of calls on `echo`
    /// completed after the fuzzing, and PASS with exit status 0 (a kernel
    /// panic or fault would have ended the run with 2 or 3). The fuzzer's
    /// console output (dots, question marks) may share a line with what
    /// is checked; the invariants are printed, not judged.
    pub fn fuzz(t: &Transcript) {
        t.expect_boot();
        let results = t.expect(0, "the whole run's histogram, `FUZZ-RESULTS mode=all calls=`", |l| {
            l.contains("FUZZ-RESULTS mode=all calls=")
        });
        let calls = t.lines()[results]
            .split_whitespace()
            .find_map(|word| word.strip_prefix("calls="))
            .and_then(|number| number.parse::<u64>().ok());
        let wanted = t
            .lines()
            .iter()
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|word| word.strip_prefix("calls="))
                    .filter(|_| l.starts_with("FUZZ-CONFIG"))
            })
            .and_then(|number| number.parse::<u64>().ok());
        if calls.is_none() || calls < wanted.map(|wanted| wanted * 99 / 100) {
            t.fail(format_args!("the fuzzer made {calls:?} calls of the {wanted:?} asked"));
        }
        t.expect(0, "a `FUZZ-RATE mode=all` line", |l| l.contains("FUZZ-RATE mode=all calls_per_second="));
        t.expect(0, "`FUZZ-VIOLATIONS count=0`", |l| l.contains("FUZZ-VIOLATIONS count=0"));
        t.expect(0, "the healthy client served after the fuzzing (`FUZZ-HEALTH after: ... Ok(Returned(0))`)", |l| {
            l.starts_with("FUZZ-HEALTH after:") && l.ends_with("Ok(Returned(0))")
        });
        t.expect(0, "`FUZZ-INVARIANT` lines", |l| l.starts_with("FUZZ-INVARIANT name="));
        t.expect_pass(0);
    }

    /// `kernel-fault`: a `kernel fault` report with `ESR`, exit status 3.
    pub fn kernel_fault(t: &Transcript) {
        t.expect_boot();
        let at = t.expect(0, "a line containing `kernel fault`", |l| l.contains("kernel fault"));
        t.expect(at, "`ESR` in the kernel fault report", |l| l.contains("ESR"));
        t.expect_status(3);
    }

    /// `kernel-stack-overflow` and `kernel-stack-overflow-thread`: one
    /// report, `kernel fault: kernel stack overflow in thread N (place)`
    /// (`place` being `the kernel` or `domain 'NAME'`), with the stack and
    /// its guard page, `ESR`, and the stack pointer at the overflow — in
    /// the guard page or the stack above it, not below: the fault was
    /// taken where it happened, not after frames pushed down through the
    /// guard — then `kernel stopped` and exit status 3. No other kernel
    /// fault, no fault while reporting, no panic.
    pub fn kernel_stack_overflow(t: &Transcript, place: &str) {
        t.expect_boot();
        let wanted = format!("kernel stack overflow in thread N ({place})");
        let at = t.expect(0, &format!("a `kernel fault: {wanted}` line"), |l| {
            l.strip_prefix("kernel fault: kernel stack overflow in thread ").is_some_and(|rest| {
                let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                digits > 0 && rest[digits..].starts_with(&format!(" ({place}):"))
            })
        });
        let faults = t.lines().iter().filter(|l| l.contains("kernel fault")).count();
        if faults != 1 {
            t.fail(format_args!("expected one kernel fault report, saw {faults} lines with `kernel fault`"));
        }
        t.expect_none("a kernel panic", |l| l.contains("kernel panic"));
        let stack = t.expect(at, "the kernel stack and its guard page in the report", |l| {
            l.trim_start().starts_with("kernel stack 0x") && l.contains("its guard page 0x")
        });
        t.expect(at, "`ESR` in the report", |l| l.contains("ESR"));
        let registers = t.expect(at, "`SP` in the report", |l| l.contains("  SP 0x"));
        let stopped = t.expect(at, "`kernel stopped`", |l| l.trim() == "kernel stopped");
        if !(stack < stopped && registers < stopped) {
            t.fail("the report's lines come after `kernel stopped`");
        }
        let hex = |text: &str, after: &str| -> Option<u64> {
            let rest = &text[text.find(after)? + after.len()..];
            let digits = rest.trim_start_matches("0x");
            let end = digits.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(digits.len());
            u64::from_str_radix(&digits[..end], 16).ok()
        };
        let lines = t.lines();
        let guard = hex(&lines[stack], "its guard page ");
        // `kernel stack 0xBOTTOM..0xTOP, its guard page 0xGUARD..`
        let top = hex(&lines[stack], "..");
        let sp = hex(&lines[registers], "  SP ");
        match (guard, top, sp) {
            (Some(guard), Some(top), Some(sp)) if guard <= sp && sp < top => {}
            _ => t.fail(format_args!(
                "the stack pointer in the report ({sp:x?}) is not in the guard page or the stack ({guard:x?}..{top:x?})"
            )),
        }
        t.expect_status(3);
    }
}

#[cfg(test)]
mod tests {
    use super::checks::{self, FaultKind};
    use super::*;
    use std::panic::{UnwindSafe, catch_unwind};

    fn transcript(board: Board, scenario: &str, status: i32, body: &str) -> Transcript {
        let name = board.kernel_name();
        let output = format!("Tern 0.1.0\nboard: {name}\nINFO  memory: 1024 MiB\n{body}");
        Transcript::new(
            board,
            scenario,
            RunOutput {
                status: Some(status),
                output,
                timed_out: false,
                stderr: String::new(),
                command: "qemu-system-aarch64 (test)".into(),
            },
        )
    }

    /// Runs `check` and returns its panic message, if it failed.
    fn failure(check: impl FnOnce() + UnwindSafe) -> Option<String> {
        catch_unwind(check).err().map(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    }

    fn accepts(t: Transcript, check: fn(&Transcript)) {
        if let Some(msg) = failure(move || check(&t)) {
            panic!("check rejected a good transcript: {msg}");
        }
    }

    fn rejects(t: Transcript, check: fn(&Transcript), reason: &str) {
        let msg = failure(move || check(&t)).expect("check accepted a bad transcript");
        assert!(msg.contains(reason), "expected {reason:?} in: {msg}");
        // The whole run is in the message.
        assert!(msg.contains("----- serial output -----\nTern 0.1"), "{msg}");
    }

    #[test]
    fn names_of_tests() {
        assert!(test_name_matches("rpi4_banner", "rpi4", "banner"));
        assert!(test_name_matches("virt_contain_undefined", "virt", "contain-undefined"));
        assert!(!test_name_matches("virt_contain_undefined", "rpi4", "contain-undefined"));
        assert!(!test_name_matches("virt_contain_undefine", "virt", "contain-undefined"));
        assert!(!test_name_matches("virtcontain_undefined", "virt", "contain-undefined"));
    }

    #[test]
    fn banner() {
        let pass = "scenario banner: PASS\n";
        accepts(transcript(Board::Rpi4, "banner", 0, pass), checks::banner);
        accepts(transcript(Board::Virt, "banner", 0, pass), checks::banner);
        rejects(transcript(Board::Rpi4, "banner", 1, pass), checks::banner, "expected exit status 0");
        rejects(transcript(Board::Rpi4, "banner", 0, ""), checks::banner, "`scenario banner: PASS`");
        // The board line must match the board booted.
        let mut t = transcript(Board::Rpi4, "banner", 0, pass);
        t = Transcript::new(Board::Virt, "banner", t.run);
        rejects(t, checks::banner, "board: qemu-virt");
        // Details may follow the board name, but not more name.
        let details = "board: qemu-virt (QEMU virt, cortex-a72)";
        let run = |b: &str| RunOutput {
            output: format!("Tern 0.1\n{b}\nINFO  memory: 1 GiB\nscenario banner: PASS\n"),
            ..transcript(Board::Virt, "banner", 0, "").run
        };
        accepts(Transcript::new(Board::Virt, "banner", run(details)), checks::banner);
        let longer = Transcript::new(Board::Virt, "banner", run("board: qemu-virtual"));
        rejects(longer, checks::banner, "board: qemu-virt");
        // The memory line must be a decoded defmt INFO line.
        let t = Transcript::new(
            Board::Rpi4,
            "banner",
            RunOutput {
                output: "Tern 0.1\nboard: rpi4\nmemory: 1 GiB\nscenario banner: PASS\n".into(),
                ..transcript(Board::Rpi4, "banner", 0, "").run
            },
        );
        rejects(t, checks::banner, "defmt INFO line");
    }

    #[test]
    fn ticks() {
        let good = "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\nscenario ticks: PASS\n";
        accepts(transcript(Board::Virt, "ticks", 0, good), checks::ticks);
        let swapped = "tick 1\ntick 3\ntick 2\ntick 4\ntick 5\nscenario ticks: PASS\n";
        rejects(transcript(Board::Virt, "ticks", 0, swapped), checks::ticks, "`tick 3`");
        let ten = "tick 10\ntick 2\ntick 3\ntick 4\ntick 5\nscenario ticks: PASS\n";
        rejects(transcript(Board::Virt, "ticks", 0, ten), checks::ticks, "`tick 1`");
    }

    #[test]
    fn heap() {
        accepts(transcript(Board::Rpi4, "heap", 0, "heap: ok (3 allocations)\nscenario heap: PASS\n"), checks::heap);
        rejects(transcript(Board::Rpi4, "heap", 0, "scenario heap: PASS\n"), checks::heap, "heap: ok");
    }

    #[test]
    fn domains() {
        let good = "[hello.ping] 1\n[hello.pong] 1\n[hello.ping] 2\n[hello.pong] 2\nscenario domains: PASS\n";
        accepts(transcript(Board::Virt, "domains", 0, good), checks::domains);
        let lumped = "[hello.ping] 1\n[hello.ping] 2\n[hello.pong] 1\n[hello.pong] 2\nscenario domains: PASS\n";
        rejects(transcript(Board::Virt, "domains", 0, lumped), checks::domains, "do not alternate");
        let few = "[hello.ping] 1\n[hello.pong] 1\nscenario domains: PASS\n";
        rejects(transcript(Board::Virt, "domains", 0, few), checks::domains, "got 1 and 1");
    }

    const CONTAINED: &str = "\
[hello.ping] 1
fault in domain 'probe.undefined': Unknown reason
  ESR 0x02000000  FAR 0x0  ELR 0x400000
domain 'probe.undefined' terminated
[hello.pong] 1
[hello.ping] 2
scenario contain-undefined: PASS
";

    #[test]
    fn contained() {
        let undefined = |t: &Transcript| checks::contained(t, FaultKind::Undefined);
        let abort = |t: &Transcript| checks::contained(t, FaultKind::Abort);
        accepts(transcript(Board::Rpi4, "contain-undefined", 0, CONTAINED), undefined);
        rejects(transcript(Board::Rpi4, "contain-undefined", 0, CONTAINED), abort, "`abort`");
        let data = CONTAINED
            .replace("Unknown reason", "Data Abort, translation fault")
            .replace("contain-undefined", "contain-kernel-read");
        accepts(transcript(Board::Virt, "contain-kernel-read", 0, &data), abort);
        let no_far = CONTAINED.replace("FAR 0x0", "");
        rejects(transcript(Board::Rpi4, "contain-undefined", 0, &no_far), undefined, "lacks `FAR`");
        let no_ping_after = CONTAINED.replace("[hello.ping] 2\n", "");
        rejects(
            transcript(Board::Rpi4, "contain-undefined", 0, &no_ping_after),
            undefined,
            "another domain still runs",
        );
        let not_terminated = CONTAINED.replace("terminated", "stopped");
        rejects(transcript(Board::Rpi4, "contain-undefined", 0, &not_terminated), undefined, "`terminated`");
        let wrong_domain = CONTAINED.replace("'probe.", "'hello.");
        rejects(transcript(Board::Rpi4, "contain-undefined", 0, &wrong_domain), undefined, "fault report");
    }

    #[test]
    fn bad_pointer() {
        let good = "write: Err(BadAddress)\nscenario contain-bad-pointer: PASS\n";
        accepts(transcript(Board::Rpi4, "contain-bad-pointer", 0, good), checks::bad_pointer);
        let faulted = format!("fault in domain 'probe.x'\n{good}");
        rejects(
            transcript(Board::Rpi4, "contain-bad-pointer", 0, &faulted),
            checks::bad_pointer,
            "unexpected fault report",
        );
    }

    #[test]
    fn kernel_fault() {
        let good = "kernel fault at EL1: Data Abort\n  ESR 0x96000004 FAR 0x0 ELR 0x80123\n";
        accepts(transcript(Board::Virt, "kernel-fault", 3, good), checks::kernel_fault);
        rejects(transcript(Board::Virt, "kernel-fault", 2, good), checks::kernel_fault, "got 2 (kernel panic)");
        rejects(transcript(Board::Virt, "kernel-fault", 3, "kernel fault\n"), checks::kernel_fault, "`ESR`");
    }

    const OVERFLOW: &str = "\
thread 1 recursing on the boot stack 0x40100000..0x40110000 (guard page 0x400ff000) with the kernel state held
kernel fault: kernel stack overflow in thread 1 (the kernel): Data abort at the current EL (EC 0x25, ISS 0x000047): translation fault, level 3, write
  kernel stack 0x40100000..0x40110000, its guard page 0x400ff000..0x40100000
  ESR 0x0000000096000047  FAR 0x00000000400ffc50  ELR 0x0000000040089830  SPSR 0x000003c5
  x0 0x400ffc58  x1 0x0  x30 0x40089880  SP 0x400ffc50
kernel stopped
";

    #[test]
    fn kernel_stack_overflow() {
        let kernel = |t: &Transcript| checks::kernel_stack_overflow(t, "the kernel");
        let probe = |t: &Transcript| checks::kernel_stack_overflow(t, "domain 'probe.kernel-stack'");
        let name = "kernel-stack-overflow";
        accepts(transcript(Board::Virt, name, 3, OVERFLOW), kernel);
        let in_probe = OVERFLOW.replace("thread 1 (the kernel)", "thread 2 (domain 'probe.kernel-stack')");
        accepts(transcript(Board::Rpi4, "kernel-stack-overflow-thread", 3, &in_probe), probe);
        rejects(transcript(Board::Virt, name, 3, &in_probe), kernel, "(the kernel)");
        rejects(transcript(Board::Virt, name, 3, OVERFLOW), probe, "probe.kernel-stack");
        rejects(transcript(Board::Virt, name, 2, OVERFLOW), kernel, "got 2 (kernel panic)");
        let no_thread = OVERFLOW.replace("in thread 1 (", "in thread (");
        rejects(transcript(Board::Virt, name, 3, &no_thread), kernel, "kernel stack overflow in thread N");
        // Frames pushed on down through the guard page: the stack pointer
        // ends up below it.
        let below = OVERFLOW.replace("SP 0x400ffc50", "SP 0x400feff0");
        rejects(transcript(Board::Virt, name, 3, &below), kernel, "not in the guard page or the stack");
        let refault = format!("{OVERFLOW}kernel fault while reporting a kernel fault: ESR 0x0\n");
        rejects(transcript(Board::Virt, name, 3, &refault), kernel, "one kernel fault report");
        let plain = OVERFLOW.replace("kernel stack overflow in thread 1 (the kernel)", "synchronous exception at EL1");
        rejects(transcript(Board::Virt, name, 3, &plain), kernel, "kernel stack overflow");
        let no_sp = OVERFLOW.replace("  SP 0x400ffc50", "");
        rejects(transcript(Board::Virt, name, 3, &no_sp), kernel, "`SP`");
    }

    const FUZZED: &str = "\
FUZZ-CONFIG seed=1 calls=20000 mode=both trace=0 board=qemu-virt
FUZZ-HEALTH before: the client's round of calls on echo: Ok(Returned(0))
..?..FUZZ-RESULTS mode=protected calls=15000 ok=6000 noreturn=3
..FUZZ-RESULTS mode=all calls=20000 ok=8000 noreturn=5
FUZZ-RATE mode=all calls_per_second=60000 seconds=0.333
FUZZ-VIOLATIONS count=0
FUZZ-INVARIANT name=threads before=1 after=200
FUZZ-HEALTH after: the client's round of calls on echo: Ok(Returned(0))
scenario fuzz: PASS
";

    #[test]
    fn fuzz() {
        accepts(transcript(Board::Virt, "fuzz", 0, FUZZED), checks::fuzz);
        rejects(transcript(Board::Virt, "fuzz", 3, FUZZED), checks::fuzz, "got 3 (fault at EL1)");
        let short = FUZZED.replace("mode=all calls=20000", "mode=all calls=1200");
        rejects(transcript(Board::Virt, "fuzz", 0, &short), checks::fuzz, "made Some(1200) calls");
        let broken = FUZZED.replace("count=0", "count=2");
        rejects(transcript(Board::Virt, "fuzz", 0, &broken), checks::fuzz, "FUZZ-VIOLATIONS count=0");
        let unhealthy =
            FUZZED.replace("after: the client's round of calls on echo: Ok(Returned(0))", "after: Ok(Faulted)");
        rejects(transcript(Board::Rpi4, "fuzz", 0, &unhealthy), checks::fuzz, "healthy client");
        let no_histogram = FUZZED.replace("..FUZZ-RESULTS mode=all", "..FUZZ-RESULTS mode=most");
        rejects(transcript(Board::Rpi4, "fuzz", 0, &no_histogram), checks::fuzz, "histogram");
    }

    #[test]
    fn failing_scenario_is_reported_as_such() {
        let body = "scenario heap: FAIL\n";
        rejects(transcript(Board::Rpi4, "heap", 1, body), checks::banner, "unexpected `scenario heap: FAIL`");
    }
}
