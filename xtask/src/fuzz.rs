//! `cargo xtask fuzz`: boot the kernel-call fuzzer, one seed or many, and
//! say what it found.
//!
//! The fuzzing happens inside the kernel's harness image: scenario `fuzz`
//! (`board/harness/src/fuzz`) makes `tern.fuzz.calls` raw kernel calls from
//! a fuzzer domain seeded with `tern.fuzz.seed`, checks what the kernel
//! answers, and prints `FUZZ-*` lines and its verdict. This module builds
//! the harness image (debug unless `--release`), boots it under the
//! harness (semihosting: QEMU's exit status is the verdict — 0 pass, 1
//! fail, 2 kernel panic, 3 fault at EL1), and prints, per seed, the lines
//! that matter: the configuration and the call patterns left out for known
//! kernel bugs, the result histograms (`FUZZ-RESULTS`), the rate
//! (`FUZZ-RATE`), the invariants before and after (`FUZZ-INVARIANT`), the
//! healthy client's round before and after (`FUZZ-HEALTH`), any rule the
//! kernel broke (`FUZZ-ORACLE`), and any kernel fault or panic report.
//! `--verbose` prints every `FUZZ-*` line (per-call counts, RPC paths, the
//! watchdog's record); a failed seed prints its whole run.
//!
//! `--count K` runs K seeds from `--seed` on, as many at a time as the
//! host has cores (`TERN_QEMU_JOBS` overrides), and ends with a summary.
//! The exit status is non-zero if any seed failed.
//!
//! The timeout grows with the calls asked for (see [`timeout_for`]):
//! a debug image on `virt` makes some 50 000 to 120 000 calls a second, the
//! Pi's emulation is slower, and a seed that stalls is reported by the
//! kernel itself after 30 s without a call (`FUZZ-LAST` lines: the last
//! calls made).
//!
//! What it leaves out: shrinking a failing seed (rerun it with `--trace`
//! to see every call), and coverage measurement beyond the kernel's own
//! counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::qemu::{self, RunOutput};
use crate::{Board, ImageKind, build_image, install};

/// Calls per seed unless `--calls` says otherwise.
pub const DEFAULT_CALLS: u64 = 100_000;

/// What `cargo xtask fuzz` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The board.
    pub board: Board,
    /// The first seed.
    pub seed: u64,
    /// Calls per seed.
    pub calls: u64,
    /// `protected`, `merged` or `both` (the kernel's default), if given.
    pub mode: Option<String>,
    /// Print every call (`tern.fuzz.trace=1`).
    pub trace: bool,
    /// Boot the release image.
    pub release: bool,
    /// How many seeds, from `seed` on.
    pub count: u64,
    /// Per-seed timeout, if given.
    pub timeout: Option<Duration>,
    /// Print every `FUZZ-*` line.
    pub verbose: bool,
}

/// The kernel command line for one seed.
pub fn cmdline(seed: u64, calls: u64, mode: Option<&str>, trace: bool) -> String {
    let mut line = format!("{} tern.fuzz.seed={seed} tern.fuzz.calls={calls}", crate::qemu::harness_cmdline("fuzz"));
    if let Some(mode) = mode {
        line += &format!(" tern.fuzz.mode={mode}");
    }
    if trace {
        line += " tern.fuzz.trace=1";
    }
    line
}

/// How long one seed of `calls` calls may take: a minute for booting and
/// the fixed parts, then a pessimistic 4 000 calls a second (the Pi's
/// emulation with a debug image, tracing off; tracing is far slower, and
/// gets ten times as long).
pub fn timeout_for(calls: u64, trace: bool) -> Duration {
    let seconds = 60 + calls / 4_000;
    Duration::from_secs(if trace { seconds * 10 } else { seconds })
}

/// What one run printed, as far as this command cares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Every `FUZZ-*` line, in order.
    pub lines: Vec<String>,
    /// The `FUZZ-RESULTS mode=all` line's fields.
    pub results: BTreeMap<String, u64>,
    /// The whole run's calls a second (`FUZZ-RATE mode=all`).
    pub rate: Option<u64>,
    /// The invariants: name, before, after.
    pub invariants: Vec<(String, u64, u64)>,
    /// Kernel fault and panic report lines.
    pub kernel_trouble: Vec<String>,
    /// The scenario's verdict line, if it got that far.
    pub verdict: Option<String>,
}

/// The `key=value` words of `line` (others skipped).
pub fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Read a run's output. A line counts when it starts with `FUZZ-` (the
/// console may have put the fuzzer's own console output, dots and
/// question marks, in front of it: that is cut off).
pub fn parse(output: &str) -> Report {
    let mut report = Report::default();
    for line in output.lines() {
        let line = line.trim_end();
        if let Some(at) = line.find("FUZZ-") {
            let line = &line[at..];
            report.lines.push(line.to_string());
            let values = fields(line);
            let number = |key: &str| values.get(key).and_then(|value| value.parse::<u64>().ok());
            if line.starts_with("FUZZ-RESULTS ") && values.get("mode").map(String::as_str) == Some("all") {
                report.results = values
                    .iter()
                    .filter(|(key, _)| key.as_str() != "mode")
                    .filter_map(|(key, value)| Some((key.clone(), value.parse().ok()?)))
                    .collect();
            } else if line.starts_with("FUZZ-RATE ") && values.get("mode").map(String::as_str) == Some("all") {
                report.rate = number("calls_per_second");
            } else if line.starts_with("FUZZ-INVARIANT ")
                && let (Some(name), Some(before), Some(after)) = (values.get("name"), number("before"), number("after"))
            {
                report.invariants.push((name.clone(), before, after));
            }
        } else if line.contains("kernel fault") || line.contains("kernel panic") || line.contains("kernel bug") {
            report.kernel_trouble.push(line.to_string());
        } else if let Some(at) = line.find("scenario fuzz: ")
            && !line.ends_with(": start")
        {
            report.verdict = Some(line[at..].to_string());
        }
    }
    report
}

/// The lines to show for one seed: the essentials, or (`verbose`) every
/// `FUZZ-*` line.
pub fn summary_lines(report: &Report, verbose: bool) -> Vec<String> {
    const ESSENTIAL: [&str; 9] = [
        "FUZZ-CONFIG",
        "FUZZ-EXCLUDED",
        "FUZZ-RESULTS",
        "FUZZ-RATE",
        "FUZZ-INVARIANT",
        "FUZZ-HEALTH",
        "FUZZ-VIOLATIONS",
        "FUZZ-ORACLE",
        "FUZZ-NOTE",
    ];
    let mut shown: Vec<String> = report
        .lines
        .iter()
        .filter(|line| verbose || ESSENTIAL.iter().any(|tag| line.split_whitespace().next() == Some(*tag)))
        .cloned()
        .collect();
    shown.extend(report.kernel_trouble.iter().cloned());
    shown.extend(report.verdict.iter().cloned());
    shown
}

/// How one seed went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Whether it passed (exit status 0, a PASS line).
    pub passed: bool,
    /// QEMU's exit status as words.
    pub status: String,
    /// Calls a second, if reported.
    pub rate: Option<u64>,
}

fn describe(run: &RunOutput) -> String {
    match (run.timed_out, run.status) {
        (true, _) => "killed after the timeout".to_string(),
        (false, Some(code)) => format!("exit status {code} ({})", qemu::verdict(code)),
        (false, None) => "killed by a signal".to_string(),
    }
}

/// Run the fuzzer as `request` says; true if every seed passed.
pub fn run(request: &Request) -> Result<bool> {
    install::ensure_qemu_for(&[request.board])?;
    let image = build_image(request.board, ImageKind::Harness, request.release)?;
    let timeout = request.timeout.unwrap_or_else(|| timeout_for(request.calls, request.trace));
    let profile = if request.release { "release" } else { "debug" };
    eprintln!(
        "fuzzing on {}: seed{} {}{}, {} calls each ({profile} harness image, timeout {} s per seed)",
        request.board,
        if request.count == 1 { "" } else { "s" },
        request.seed,
        if request.count == 1 { String::new() } else { format!("..={}", request.seed + request.count - 1) },
        request.calls,
        timeout.as_secs()
    );
    let next = AtomicU64::new(0);
    let outcomes = Mutex::new(Vec::new());
    let printing = Mutex::new(());
    let jobs = std::env::var("TERN_QEMU_JOBS")
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|&jobs| jobs > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .min(request.count);
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= request.count {
                        return;
                    }
                    let seed = request.seed + index;
                    let line = cmdline(seed, request.calls, request.mode.as_deref(), request.trace);
                    let run = match qemu::run_captured(&image, &line, timeout) {
                        Ok(run) => run,
                        Err(error) => {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                            return;
                        }
                    };
                    let report = parse(&run.output);
                    let passed = run.status == Some(0)
                        && report.verdict.as_deref() == Some("scenario fuzz: PASS")
                        && !run.timed_out;
                    let _guard = printing.lock().unwrap_or_else(|e| e.into_inner());
                    println!("\n==> seed {seed}: {}", describe(&run));
                    if passed || request.trace {
                        for line in summary_lines(&report, request.verbose || request.trace) {
                            println!("{line}");
                        }
                    } else {
                        print!("{run}");
                    }
                    outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(Outcome {
                        seed,
                        passed,
                        status: describe(&run),
                        rate: report.rate,
                    });
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    outcomes.sort_by_key(|outcome| outcome.seed);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|outcome| !outcome.passed).collect();
    if request.count > 1 {
        let rates: Vec<u64> = outcomes.iter().filter_map(|outcome| outcome.rate).collect();
        let mean = if rates.is_empty() { 0 } else { rates.iter().sum::<u64>() / rates.len() as u64 };
        println!(
            "\nfuzz: {} of {} seeds passed on {} ({} calls each, {mean} calls/s on average)",
            outcomes.len() - failed.len(),
            outcomes.len(),
            request.board,
            request.calls
        );
        for outcome in &failed {
            println!("  seed {}: {}", outcome.seed, outcome.status);
        }
    }
    Ok(failed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
Tern 0.1.0: migrating threads on AArch64
scenario fuzz: start
FUZZ-CONFIG seed=7 calls=1000 mode=both trace=0 board=qemu-virt
FUZZ-EXCLUDED lend-wraps: something
..?..FUZZ-RESULTS mode=protected calls=750 ok=300 NoSuchCall=40 noreturn=2
FUZZ-RATE mode=protected calls_per_second=50000 seconds=0.015
FUZZ-CALLS mode=protected Return=1/0
FUZZ-RESULTS mode=all calls=1000 ok=400 NoSuchCall=50 noreturn=3
FUZZ-RATE mode=all calls_per_second=48000 seconds=0.020
FUZZ-INVARIANT name=free_frames before=100 after=90
FUZZ-INVARIANT name=threads before=1 after=17
FUZZ-HEALTH after: the client's round of calls on echo: Ok(Returned(0))
scenario fuzz: PASS
";

    #[test]
    fn reads_the_figures() {
        let report = parse(OUTPUT);
        assert_eq!(report.results.get("calls"), Some(&1000));
        assert_eq!(report.results.get("ok"), Some(&400));
        assert_eq!(report.results.get("noreturn"), Some(&3));
        assert_eq!(report.rate, Some(48_000));
        assert_eq!(report.invariants, [("free_frames".to_string(), 100, 90), ("threads".to_string(), 1, 17)]);
        assert_eq!(report.verdict.as_deref(), Some("scenario fuzz: PASS"));
        assert!(report.lines.iter().any(|line| line.starts_with("FUZZ-RESULTS mode=protected")), "console dots cut");
        assert!(report.kernel_trouble.is_empty());
    }

    #[test]
    fn shows_the_essentials_or_everything() {
        let report = parse(OUTPUT);
        let short = summary_lines(&report, false);
        assert!(short.iter().any(|line| line.starts_with("FUZZ-RESULTS mode=all")));
        assert!(!short.iter().any(|line| line.starts_with("FUZZ-CALLS")));
        assert_eq!(short.last().map(String::as_str), Some("scenario fuzz: PASS"));
        assert!(summary_lines(&report, true).iter().any(|line| line.starts_with("FUZZ-CALLS")));
    }

    #[test]
    fn reports_kernel_faults() {
        let report =
            parse("FUZZ-CONFIG seed=1\nkernel fault: synchronous exception at EL1: Data abort\nkernel stopped\n");
        assert_eq!(report.kernel_trouble, ["kernel fault: synchronous exception at EL1: Data abort"]);
        assert_eq!(report.verdict, None);
        let report = parse("scenario fuzz: FAIL (the protected round hung)\n");
        assert_eq!(report.verdict.as_deref(), Some("scenario fuzz: FAIL (the protected round hung)"));
    }

    #[test]
    fn command_lines_and_timeouts() {
        assert_eq!(
            cmdline(3, 20_000, None, false),
            "tern.harness=1 tern.scenario=fuzz tern.fuzz.seed=3 tern.fuzz.calls=20000"
        );
        assert_eq!(
            cmdline(0, 5, Some("merged"), true),
            "tern.harness=1 tern.scenario=fuzz tern.fuzz.seed=0 tern.fuzz.calls=5 tern.fuzz.mode=merged tern.fuzz.trace=1"
        );
        assert_eq!(timeout_for(0, false), Duration::from_secs(60));
        assert_eq!(timeout_for(1_000_000, false), Duration::from_secs(310));
        assert_eq!(timeout_for(1_000, true), Duration::from_secs(600));
    }
}
