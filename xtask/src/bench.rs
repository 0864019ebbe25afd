//! `cargo xtask bench`: boot the kernel's benchmark, read its figures, print
//! them as the paper's Table 3.
//!
//! The measuring happens inside the kernel: scenario `bench` times each
//! invocation path (switching threads, migrating threads, and two floors, a
//! plain indirect call and a null `svc`) with the PMU's INST_RETIRED event
//! read at EL0 around every call, once counting EL0 and EL1 ("whole call")
//! and once EL1 only ("kernel"), and prints the median and minimum over its
//! repetitions as plain console lines. This module is the host side of that
//! arrangement, in three parts.
//!
//! **Running.** [`run`] builds the release image, then boots it in QEMU with
//! two changes to the usual command line: `-icount shift=0`, without which
//! INST_RETIRED reads 0 (and with which it is exact and identical from run to
//! run), and `-smp 1` on `virt`, because QEMU's INST_RETIRED is a sum over
//! every virtual core (on `raspi4b` the three secondary cores sit in the
//! firmware's `wfe` loop and retire nothing while parked). The kernel gets
//! `tern.harness=1 tern.scenario=bench` and, with `--repetitions N`,
//! `tern.bench.repetitions=N`; semihosting is on so the kernel ends QEMU with
//! its verdict. [`qemu::run_captured`] offers no way to add QEMU arguments,
//! so [`run_captured_icount`] repeats its loop (the same [`Console`] and
//! [`LogDecoder`], a deadline, a guard that kills and reaps QEMU on every
//! way out) around [`bench_command`], which is [`qemu::command`] with those
//! two edits.
//!
//! **Parsing.** [`parse`] is a pure function from the captured text to a
//! [`Report`]. A line belongs to the protocol when its first word is `BENCH`
//! or starts with `BENCH-`; everything else (the banner, log lines, the
//! verdict) is ignored. The known lines are `BENCH-BEGIN`, `BENCH`,
//! `BENCH-COPIES`, `BENCH-MEMORY` and `BENCH-END`; their fields are
//! `key=value` words, all required, none unknown, none twice. Paths are
//! open-ended (a path this module has never heard of gets its own rows);
//! tests, scopes, units and counters are closed sets. A figure whose minimum
//! exceeds its median, a record measured twice, a record before
//! `BENCH-BEGIN` or after `BENCH-END`, a missing `BENCH-BEGIN` or
//! `BENCH-END`: each is a problem, and [`parse`] returns all of them, each
//! with its line number, rather than stopping at the first. A line tagged
//! `BENCH-<something else>` is not an error (the kernel may learn to say more
//! before this module does) but it is shown verbatim under the tables.
//!
//! **Rendering.** [`render`] prints, for the tests Null, 32 In, 1K In and
//! 32K In, the switching and migrating figures side by side per scope with
//! their ratio (switching ÷ migrating, two decimals, `n/a` when either side
//! is missing or migrating is zero): one table of medians, one of minima,
//! then the floors and any other paths, the copy counts, the memory line,
//! and what the figures are (instructions retired under `-icount shift=0`,
//! not cycles: QEMU charges nothing for taking or returning from an
//! exception, so they are path lengths). A `cycles` scope, when the kernel
//! reports one, gets its own column group with its unit. The targets set for
//! the benchmark follow, each with ✓, ✗ or `?` (not reported) computed from
//! the parsed integers; a ratio target is checked exactly, by cross
//! multiplication, not on the rounded ratio shown. Figures are printed as
//! the kernel wrote them, never rounded, scaled or adjusted.
//!
//! The command fails (non-zero exit, the whole run printed) when QEMU exits
//! with anything but 0, times out, or the transcript does not parse. Missed
//! targets do not fail it: they are reported, not enforced. `--json PATH`
//! writes one record per (path, test, scope) for tools that track figures
//! over time.
//!
//! What it leaves out: running on a real Raspberry Pi (there the cycle
//! counts would mean something; under QEMU, with `-icount shift=0`, a cycle
//! is an instruction), comparing against earlier runs, statistics beyond the
//! kernel's own median and minimum, and the per-stage breakdown of the null
//! path (the paper's Table 1), which has no protocol line yet.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::qemu::{self, Launch, RunOutput};
use crate::{Board, Image, build_image, install};

/// The kernel scenario that runs the benchmark.
pub const SCENARIO: &str = "bench";
/// How long the benchmark boot may take before QEMU is killed.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// The tests, in table order: (protocol name, label as in the paper).
pub const TESTS: [(&str, &str); 4] = [("null", "Null"), ("32in", "32 In"), ("1kin", "1K In"), ("32kin", "32K In")];
/// The scopes, in column order: (protocol name, column heading).
pub const SCOPES: [(&str, &str); 3] =
    [("kernel", "kernel only (EL1)"), ("whole", "whole call (EL0+EL1)"), ("cycles", "cycles (PMCCNTR_EL0)")];
/// The units a figure may be in.
pub const UNITS: [&str; 2] = ["instructions", "cycles"];
/// The two paths the main tables compare.
pub const SWITCHING: &str = "switching";
/// See [`SWITCHING`].
pub const MIGRATING: &str = "migrating";
/// The paths shown as floors rather than in the main tables.
pub const FLOORS: [&str; 2] = ["floor-call", "floor-svc"];

// ---------------------------------------------------------------------------
// The protocol

/// `BENCH-BEGIN`: what the run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begin {
    /// Identifies the boot (hex, as the kernel printed it).
    pub boot_id: String,
    /// The board as the kernel names it.
    pub board: String,
    /// `instructions` or `cycles`.
    pub counter: String,
    /// Measured repetitions per figure.
    pub repetitions: u64,
    /// Unmeasured repetitions before them.
    pub warmup: u64,
}

/// `BENCH`: one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The invocation path (`switching`, `migrating`, `floor-call`, ...).
    pub path: String,
    /// The test (`null`, `32in`, `1kin`, `32kin`).
    pub test: String,
    /// `whole`, `kernel` or `cycles`.
    pub scope: String,
    /// `instructions` or `cycles`.
    pub unit: String,
    /// Median over the samples.
    pub median: u64,
    /// Minimum over the samples.
    pub min: u64,
    /// How many samples.
    pub samples: u64,
}

/// `BENCH-COPIES`: how many times a path copied a test's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copies {
    /// The invocation path.
    pub path: String,
    /// The test.
    pub test: String,
    /// Copies, counted by the kernel.
    pub copies: u64,
}

/// `BENCH-MEMORY`: kernel memory per thread and per activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Bytes per thread, stacks excluded.
    pub thread: u64,
    /// Bytes per activation, stacks excluded.
    pub activation: u64,
    /// Bytes of one kernel stack.
    pub kernel_stack: u64,
}

/// Everything a complete benchmark transcript says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The `BENCH-BEGIN` line.
    pub begin: Begin,
    /// The figures, in the order the kernel printed them.
    pub measurements: Vec<Measurement>,
    /// The copy counts, in order.
    pub copies: Vec<Copies>,
    /// The memory line, if printed.
    pub memory: Option<Memory>,
    /// `BENCH-*` lines of a kind this module does not know, verbatim.
    pub unrecognised: Vec<String>,
}

impl Report {
    /// The figure for (path, test, scope), if reported.
    pub fn get(&self, path: &str, test: &str, scope: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.path == path && m.test == test && m.scope == scope)
    }

    /// The copy count for (path, test), if reported.
    pub fn copies_of(&self, path: &str, test: &str) -> Option<u64> {
        self.copies.iter().find(|c| c.path == path && c.test == test).map(|c| c.copies)
    }

    /// The paths reported, in order of first appearance.
    pub fn paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = Vec::new();
        for m in &self.measurements {
            if !paths.contains(&m.path.as_str()) {
                paths.push(&m.path);
            }
        }
        paths
    }
}

/// Everything wrong with a transcript, one entry per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseErrors(pub Vec<String>);

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the benchmark output is not usable:")?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

/// One protocol line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `BENCH-BEGIN ...`
    Begin(Begin),
    /// `BENCH ...`
    Measurement(Measurement),
    /// `BENCH-COPIES ...`
    Copies(Copies),
    /// `BENCH-MEMORY ...`
    Memory(Memory),
    /// `BENCH-END`
    End,
    /// `BENCH-<unknown> ...`, kept verbatim.
    Unrecognised(String),
}

/// The `key=value` fields of a line, consumed one by one so leftovers can be
/// reported.
struct Fields<'a>(BTreeMap<&'a str, &'a str>);

impl<'a> Fields<'a> {
    fn new(words: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!("`{word}` is not key=value"));
            };
            if key.is_empty() || value.is_empty() {
                return Err(format!("`{word}` has an empty key or value"));
            }
            if map.insert(key, value).is_some() {
                return Err(format!("field `{key}` appears twice"));
            }
        }
        Ok(Self(map))
    }

    fn text(&mut self, key: &str) -> Result<&'a str, String> {
        self.0.remove(key).ok_or_else(|| format!("field `{key}` is missing"))
    }

    fn one_of(&mut self, key: &str, allowed: &[&str]) -> Result<String, String> {
        let value = self.text(key)?;
        if allowed.contains(&value) {
            Ok(value.to_string())
        } else {
            Err(format!("`{key}={value}`: expected one of {}", allowed.join(", ")))
        }
    }

    fn number(&mut self, key: &str) -> Result<u64, String> {
        let value = self.text(key)?;
        // `u64::from_str` accepts a leading `+`; the protocol has digits only.
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{key}={value}` is not a decimal number"));
        }
        value.parse().map_err(|_| format!("`{key}={value}` is out of range"))
    }

    /// Fails if any field was not consumed.
    fn done(self) -> Result<(), String> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(_) => {
                let keys: Vec<&str> = self.0.keys().copied().collect();
                Err(format!("unknown field(s) {}", keys.join(", ")))
            }
        }
    }
}

/// Parses one line of console output: `Ok(None)` if it is not a benchmark
/// line, an error message if it is one but malformed.
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim_end();
    let mut words = line.split_whitespace();
    let Some(tag) = words.next() else { return Ok(None) };
    if (tag != "BENCH" && !tag.starts_with("BENCH-")) || line.starts_with(char::is_whitespace) {
        return Ok(None);
    }
    let known = ["BENCH", "BENCH-BEGIN", "BENCH-COPIES", "BENCH-MEMORY", "BENCH-END"];
    if !known.contains(&tag) {
        return Ok(Some(Line::Unrecognised(line.to_string())));
    }
    let mut f = Fields::new(words)?;
    let parsed = match tag {
        "BENCH-BEGIN" => {
            let boot_id = f.text("boot_id")?;
            let hex = boot_id.strip_prefix("0x").unwrap_or(boot_id);
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("`boot_id={boot_id}` is not hexadecimal"));
            }
            Line::Begin(Begin {
                boot_id: boot_id.to_string(),
                board: f.text("board")?.to_string(),
                counter: f.one_of("counter", &UNITS)?,
                repetitions: f.number("repetitions")?,
                warmup: f.number("warmup")?,
            })
        }
        "BENCH" => {
            let tests: Vec<&str> = TESTS.iter().map(|t| t.0).collect();
            let scopes: Vec<&str> = SCOPES.iter().map(|s| s.0).collect();
            let m = Measurement {
                path: f.text("path")?.to_string(),
                test: f.one_of("test", &tests)?,
                scope: f.one_of("scope", &scopes)?,
                unit: f.one_of("unit", &UNITS)?,
                median: f.number("median")?,
                min: f.number("min")?,
                samples: f.number("samples")?,
            };
            if m.samples == 0 {
                return Err("`samples=0`: a figure needs at least one sample".to_string());
            }
            if m.min > m.median {
                return Err(format!("min {} is above median {}", m.min, m.median));
            }
            Line::Measurement(m)
        }
        "BENCH-COPIES" => {
            let tests: Vec<&str> = TESTS.iter().map(|t| t.0).collect();
            Line::Copies(Copies {
                path: f.text("path")?.to_string(),
                test: f.one_of("test", &tests)?,
                copies: f.number("copies")?,
            })
        }
        "BENCH-MEMORY" => Line::Memory(Memory {
            thread: f.number("thread")?,
            activation: f.number("activation")?,
            kernel_stack: f.number("kernel_stack")?,
        }),
        "BENCH-END" => Line::End,
        _ => unreachable!("tag {tag} is known but not handled"),
    };
    f.done()?;
    Ok(Some(parsed))
}

/// Parses a whole run's output into a [`Report`], or lists every problem.
pub fn parse(output: &str) -> Result<Report, ParseErrors> {
    let mut problems = Vec::new();
    let mut begin: Option<Begin> = None;
    let mut ended = false;
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut copies: Vec<Copies> = Vec::new();
    let mut memory = None;
    let mut unrecognised = Vec::new();
    for (index, text) in output.lines().enumerate() {
        let number = index + 1;
        let line = match parse_line(text) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(why) => {
                problems.push(format!("line {number}: {why}: `{}`", text.trim_end()));
                continue;
            }
        };
        let mut problem = |why: &str| problems.push(format!("line {number}: {why}: `{}`", text.trim_end()));
        if ended {
            problem("after BENCH-END");
            continue;
        }
        match line {
            Line::Begin(b) if begin.is_none() => begin = Some(b),
            Line::Begin(_) => problem("a second BENCH-BEGIN"),
            _ if begin.is_none() => problem("before BENCH-BEGIN"),
            Line::Measurement(m) => {
                if measurements.iter().any(|o| o.path == m.path && o.test == m.test && o.scope == m.scope) {
                    problem("this path, test and scope were already reported");
                } else {
                    measurements.push(m);
                }
            }
            Line::Copies(c) => {
                if copies.iter().any(|o| o.path == c.path && o.test == c.test) {
                    problem("copies for this path and test were already reported");
                } else {
                    copies.push(c);
                }
            }
            Line::Memory(m) if memory.is_none() => memory = Some(m),
            Line::Memory(_) => problem("a second BENCH-MEMORY"),
            Line::End => ended = true,
            Line::Unrecognised(text) => unrecognised.push(text),
        }
    }
    if begin.is_none() {
        problems.push("no BENCH-BEGIN line: the benchmark did not start".to_string());
    } else if !ended {
        problems.push("no BENCH-END line: the benchmark did not finish".to_string());
    }
    match begin {
        Some(begin) if problems.is_empty() => Ok(Report { begin, measurements, copies, memory, unrecognised }),
        _ => Err(ParseErrors(problems)),
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// switching ÷ migrating, two decimals; `n/a` if either is missing or the
/// divisor is zero.
pub fn ratio(switching: Option<u64>, migrating: Option<u64>) -> String {
    match (switching, migrating) {
        (Some(s), Some(m)) if m != 0 => format!("{:.2}", s as f64 / m as f64),
        _ => "n/a".to_string(),
    }
}

/// Whether a target is met: yes, no, or cannot tell (figure not reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Met.
    Met,
    /// Missed.
    Missed,
    /// The figures it needs were not reported (or not in instructions).
    Unknown,
}

impl Verdict {
    fn from_bool(met: bool) -> Self {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    /// ✓, ✗ or ?.
    pub fn mark(self) -> &'static str {
        match self {
            Verdict::Met => "✓",
            Verdict::Missed => "✗",
            Verdict::Unknown => "?",
        }
    }
}

/// One target and how the run did against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What is required, in words.
    pub goal: &'static str,
    /// The reported figure (or `not reported`).
    pub actual: String,
    /// Met, missed or unknown.
    pub verdict: Verdict,
}

/// The median of (path, null, scope) if reported in instructions.
fn null_instructions(report: &Report, path: &str, scope: &str) -> Option<u64> {
    report.get(path, "null", scope).filter(|m| m.unit == "instructions").map(|m| m.median)
}

/// The benchmark's targets, checked against the report's medians.
pub fn targets(report: &Report) -> Vec<Target> {
    let at_most = |goal, value: Option<u64>, limit: u64| Target {
        goal,
        actual: value.map_or_else(|| "not reported".to_string(), |v| v.to_string()),
        verdict: value.map_or(Verdict::Unknown, |v| Verdict::from_bool(v <= limit)),
    };
    let switching_whole = null_instructions(report, SWITCHING, "whole");
    let migrating_whole = null_instructions(report, MIGRATING, "whole");
    let ratio_target = match (switching_whole, migrating_whole) {
        // s / m >= 3, exactly: s >= 3 m.
        (Some(s), Some(m)) if m != 0 => Target {
            goal: "switching ÷ migrating, Null whole call ≥ 3.0",
            actual: ratio(Some(s), Some(m)),
            verdict: Verdict::from_bool(u128::from(s) >= 3 * u128::from(m)),
        },
        _ => Target {
            goal: "switching ÷ migrating, Null whole call ≥ 3.0",
            actual: "n/a".to_string(),
            verdict: Verdict::Unknown,
        },
    };
    let copies = report.copies_of(MIGRATING, "32kin");
    vec![
        at_most("migrating Null, whole call ≤ 200 instructions", migrating_whole, 200),
        at_most("migrating Null, kernel only ≤ 120 instructions", null_instructions(report, MIGRATING, "kernel"), 120),
        at_most("switching Null, whole call ≤ 620 instructions", switching_whole, 620),
        ratio_target,
        Target {
            goal: "migrating 32K In copies the payload once",
            actual: copies.map_or_else(|| "not reported".to_string(), |c| format!("copies={c}")),
            verdict: copies.map_or(Verdict::Unknown, |c| Verdict::from_bool(c == 1)),
        },
    ]
}

/// The label of a test (`32in` → `32 In`).
fn test_label(test: &str) -> &str {
    TESTS.iter().find(|t| t.0 == test).map_or(test, |t| t.1)
}

/// The scopes to show as column groups: kernel and whole always, cycles if
/// any figure has that scope.
fn shown_scopes(report: &Report) -> Vec<(&'static str, &'static str)> {
    SCOPES
        .iter()
        .copied()
        .filter(|(s, _)| *s != "cycles" || report.measurements.iter().any(|m| m.scope == *s))
        .collect()
}

/// The units of the figures in a scope, for a column group's heading.
fn scope_units(report: &Report, scope: &str, paths: &[&str]) -> String {
    let mut units: Vec<&str> = Vec::new();
    for m in report.measurements.iter().filter(|m| m.scope == scope && paths.contains(&m.path.as_str())) {
        if !units.contains(&m.unit.as_str()) {
            units.push(&m.unit);
        }
    }
    if units.is_empty() { "(none reported)".to_string() } else { units.join(" / ") }
}

fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| v.to_string())
}

const TEST_W: usize = 8;
const NUM_W: usize = 10;
const RATIO_W: usize = 7;
const GAP: &str = "    ";
/// switching, migrating, ratio.
const GROUP_W: usize = NUM_W + 1 + NUM_W + 1 + RATIO_W;

/// The switching/migrating table for one statistic (`median` or `min`).
fn comparison_table(out: &mut String, report: &Report, title: &str, pick: fn(&Measurement) -> u64) {
    let scopes = shown_scopes(report);
    let _ = writeln!(out, "{title}");
    let mut heading = format!("{:TEST_W$}", "");
    let mut units = format!("{:TEST_W$}", "");
    let mut columns = format!("{:TEST_W$}", "test");
    for (scope, label) in &scopes {
        let _ = write!(heading, "{GAP}{label:<GROUP_W$}");
        let _ = write!(units, "{GAP}{:<GROUP_W$}", scope_units(report, scope, &[SWITCHING, MIGRATING]));
        let _ = write!(columns, "{GAP}{:>NUM_W$} {:>NUM_W$} {:>RATIO_W$}", SWITCHING, MIGRATING, "ratio");
    }
    for line in [heading, units, columns] {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for (test, label) in TESTS {
        let mut row = format!("{label:TEST_W$}");
        for (scope, _) in &scopes {
            let s = report.get(SWITCHING, test, scope).map(pick);
            let m = report.get(MIGRATING, test, scope).map(pick);
            let _ = write!(row, "{GAP}{:>NUM_W$} {:>NUM_W$} {:>RATIO_W$}", figure(s), figure(m), ratio(s, m));
        }
        let _ = writeln!(out, "{row}");
    }
}

/// Rows of median and minimum for paths outside the comparison (floors,
/// paths this module does not know).
fn path_table(out: &mut String, report: &Report, title: &str, paths: &[&str]) {
    let scopes: Vec<_> = shown_scopes(report)
        .into_iter()
        .filter(|(s, _)| report.measurements.iter().any(|m| m.scope == *s && paths.contains(&m.path.as_str())))
        .collect();
    let path_w = paths.iter().map(|p| p.len()).max().unwrap_or(0).max(4);
    let group_w = NUM_W * 2 + 1;
    let _ = writeln!(out, "{title}");
    let mut heading = format!("{:path_w$}  {:TEST_W$}", "", "");
    let mut units = heading.clone();
    let mut columns = format!("{:path_w$}  {:TEST_W$}", "path", "test");
    for (scope, label) in &scopes {
        let _ = write!(heading, "{GAP}{label:<group_w$}");
        let _ = write!(units, "{GAP}{:<group_w$}", scope_units(report, scope, paths));
        let _ = write!(columns, "{GAP}{:>NUM_W$} {:>NUM_W$}", "median", "min");
    }
    for line in [heading, units, columns] {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for path in paths {
        let mut tests: Vec<&str> = Vec::new();
        for m in report.measurements.iter().filter(|m| m.path == *path) {
            if !tests.contains(&m.test.as_str()) {
                tests.push(&m.test);
            }
        }
        tests.sort_by_key(|t| TESTS.iter().position(|k| k.0 == *t));
        for test in tests {
            let mut row = format!("{path:path_w$}  {:TEST_W$}", test_label(test));
            for (scope, _) in &scopes {
                let m = report.get(path, test, scope);
                let _ =
                    write!(row, "{GAP}{:>NUM_W$} {:>NUM_W$}", figure(m.map(|m| m.median)), figure(m.map(|m| m.min)));
            }
            let _ = writeln!(out, "{row}");
        }
    }
}

/// A human description of the sample counts.
fn samples_text(report: &Report) -> String {
    let min = report.measurements.iter().map(|m| m.samples).min();
    let max = report.measurements.iter().map(|m| m.samples).max();
    match (min, max) {
        (Some(a), Some(b)) if a == b => format!("{a} samples per figure"),
        (Some(a), Some(b)) => format!("{a} to {b} samples per figure"),
        _ => "no figures".to_string(),
    }
}

/// The whole printed report for a run on `board`.
pub fn render(report: &Report, board: Board) -> String {
    let mut out = String::new();
    let b = &report.begin;
    let _ = writeln!(
        out,
        "Tern benchmark: board {board} (kernel says {}), boot {}, counter {}\n\
         {} repetitions after {} warm-up; {}\n",
        b.board,
        b.boot_id,
        b.counter,
        b.repetitions,
        b.warmup,
        samples_text(report)
    );
    comparison_table(&mut out, report, "Median (ratio = switching ÷ migrating)", |m| m.median);
    out.push('\n');
    comparison_table(&mut out, report, "Minimum (ratio = switching ÷ migrating)", |m| m.min);

    let paths = report.paths();
    let floors: Vec<&str> = FLOORS.iter().copied().filter(|f| paths.contains(f)).collect();
    if !floors.is_empty() {
        out.push('\n');
        path_table(&mut out, report, "Floors", &floors);
    }
    let others: Vec<&str> =
        paths.iter().copied().filter(|p| ![SWITCHING, MIGRATING].contains(p) && !FLOORS.contains(p)).collect();
    if !others.is_empty() {
        out.push('\n');
        path_table(&mut out, report, "Other paths", &others);
    }

    out.push('\n');
    for c in &report.copies {
        let _ = writeln!(out, "copies: {} {}: {}", c.path, test_label(&c.test), c.copies);
    }
    match report.memory {
        Some(m) => {
            let _ = writeln!(
                out,
                "memory: {} bytes per thread, {} bytes per activation (stacks excluded); kernel stack {} bytes",
                m.thread, m.activation, m.kernel_stack
            );
        }
        None => out.push_str("memory: not reported\n"),
    }
    for line in &report.unrecognised {
        let _ = writeln!(out, "not understood by this xtask, shown as printed: {line}");
    }

    out.push_str(
        "\nFigures are instructions retired (PMU event 0x08, INST_RETIRED) under QEMU -icount shift=0, \
         not cycles.\nQEMU charges nothing for exception entry or return (an svc/eret round trip reads \
         3 instructions),\nso these are path lengths. Kernel only = EL1 filter; whole call = EL0+EL1, \
         as the client sees it.\n",
    );
    if report.measurements.iter().any(|m| m.unit == "cycles") {
        out.push_str(
            "Figures in cycles are PMCCNTR_EL0 as reported; under QEMU -icount shift=0 one cycle is \
             one instruction,\nso cycles mean something only on a real Raspberry Pi.\n",
        );
    }
    out.push_str(
        "Reference, same ruler: seL4 Call 191 + ReplyRecv 215, round trip 411 instructions \
         (1249 with the fastpath off).\n",
    );

    out.push_str("\nTargets (reported, not enforced; medians)\n");
    let targets = targets(report);
    let goal_w = targets.iter().map(|t| t.goal.chars().count()).max().unwrap_or(0);
    for t in &targets {
        let pad = goal_w - t.goal.chars().count();
        let _ = writeln!(out, "  {} {}{:pad$}  {}", t.verdict.mark(), t.goal, "", t.actual);
    }
    out
}

/// One JSON record per (path, test, scope), in the kernel's order.
pub fn json_records(report: &Report, board: Board) -> serde_json::Value {
    report
        .measurements
        .iter()
        .map(|m| {
            json!({
                "path": m.path,
                "test": m.test,
                "scope": m.scope,
                "median": m.median,
                "min": m.min,
                "unit": m.unit,
                "samples": m.samples,
                "board": board.name(),
                "boot_id": report.begin.boot_id,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running

/// The kernel command line for a benchmark run.
pub fn cmdline(repetitions: Option<u64>) -> String {
    let mut line = qemu::harness_cmdline(SCENARIO);
    if let Some(n) = repetitions {
        let _ = write!(line, " tern.bench.repetitions={n}");
    }
    line
}

/// The QEMU command for a benchmark boot: [`qemu::command`] with `-smp 1`
/// on virt and `-icount shift=0` added.
pub fn bench_command(launch: &Launch<'_>) -> Command {
    let base = qemu::command(launch);
    let mut cmd = Command::new(base.get_program());
    let mut args: Vec<&OsStr> = base.get_args().collect();
    if launch.board == Board::Virt {
        match args.iter().position(|a| *a == "-smp") {
            Some(i) if i + 1 < args.len() => args[i + 1] = OsStr::new("1"),
            _ => args.extend([OsStr::new("-smp"), OsStr::new("1")]),
        }
    }
    cmd.args(args).args(["-icount", "shift=0"]);
    cmd
}

/// Boots `image` for the benchmark and captures its output (the loop of
/// [`qemu::run_captured`], around [`bench_command`]).
pub fn run_captured_icount(image: &Image, cmdline: &str, timeout: Duration) -> Result<RunOutput> {
    let cmd = bench_command(&Launch::harness(image, cmdline));
    eprintln!("$ {}", qemu::display_command(&cmd));
    let started = Instant::now();
    let run = qemu::capture(cmd, &image.elf, timeout)?;
    eprintln!("QEMU ran for {:.1} s", started.elapsed().as_secs_f64());
    Ok(run)
}

/// Why a finished run is a failure, if it is one (besides parse problems).
fn run_failure(run: &RunOutput) -> Option<String> {
    match (run.timed_out, run.status) {
        (true, _) => Some(format!("QEMU was killed after the {} s timeout", TIMEOUT.as_secs())),
        (false, Some(0)) => None,
        (false, Some(code)) => Some(format!("QEMU exited with {code} ({})", qemu::verdict(code))),
        (false, None) => Some("QEMU was killed by a signal".to_string()),
    }
}

/// `cargo xtask bench`: build, boot, parse, print, optionally write JSON.
/// An error means the run failed (the run's output has been printed).
pub fn run(board: Board, json_path: Option<&Path>, repetitions: Option<u64>) -> Result<()> {
    let info = install::ensure_qemu()?;
    if !info.supports(board) {
        bail!("QEMU {} has no machine raspi4b; install QEMU >= 9.0 or use --board virt", info.version_string());
    }
    let image = build_image(board, true)?;
    eprintln!("benchmarking {board} (release image; timeout {} s)", TIMEOUT.as_secs());
    let run = run_captured_icount(&image, &cmdline(repetitions), TIMEOUT)?;
    let parsed = parse(&run.output);
    let mut problems: Vec<String> = run_failure(&run).into_iter().collect();
    if let Err(errors) = &parsed {
        problems.push(errors.to_string());
    }
    if !problems.is_empty() {
        eprint!("{run}");
        bail!("the benchmark run failed:\n{}", problems.join("\n"));
    }
    let report = parsed.expect("no problems means it parsed");
    print!("{}", render(&report, board));
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&json_records(&report, board))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {} records to {}", report.measurements.len(), path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete, well-formed transcript, with the noise a real boot has
    /// around the protocol lines.
    const GOOD: &str = "\
Tern 0.1.0 on qemu-virt
INFO  memory: 1024 MiB
scenario bench: start
BENCH-BEGIN boot_id=1f2e3d4c board=qemu-virt counter=instructions repetitions=1000 warmup=100
BENCH path=switching test=null scope=kernel unit=instructions median=480 min=470 samples=1000
BENCH path=switching test=null scope=whole unit=instructions median=600 min=590 samples=1000
BENCH path=migrating test=null scope=kernel unit=instructions median=110 min=108 samples=1000
BENCH path=migrating test=null scope=whole unit=instructions median=180 min=179 samples=1000
BENCH path=switching test=32in scope=whole unit=instructions median=650 min=640 samples=1000
BENCH path=migrating test=32in scope=whole unit=instructions median=0 min=0 samples=1000
BENCH path=floor-call test=null scope=whole unit=instructions median=12 min=12 samples=1000
BENCH path=floor-svc test=null scope=whole unit=instructions median=9 min=9 samples=1000
BENCH path=floor-svc test=null scope=kernel unit=instructions median=3 min=3 samples=1000
BENCH path=migrating-merged test=null scope=whole unit=instructions median=40 min=40 samples=1000
BENCH-COPIES path=migrating test=32kin copies=1
BENCH-MEMORY thread=512 activation=96 kernel_stack=16384
BENCH-END
scenario bench: PASS
";

    fn good() -> Report {
        parse(GOOD).unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text).unwrap_err().0
    }

    const BEGIN: &str = "BENCH-BEGIN boot_id=ab board=rpi4 counter=cycles repetitions=5 warmup=1\n";

    #[test]
    fn parses_a_good_transcript() {
        let r = good();
        assert_eq!(
            r.begin,
            Begin {
                boot_id: "1f2e3d4c".into(),
                board: "qemu-virt".into(),
                counter: "instructions".into(),
                repetitions: 1000,
                warmup: 100
            }
        );
        assert_eq!(r.measurements.len(), 10);
        assert_eq!(
            r.get("migrating", "null", "whole"),
            Some(&Measurement {
                path: "migrating".into(),
                test: "null".into(),
                scope: "whole".into(),
                unit: "instructions".into(),
                median: 180,
                min: 179,
                samples: 1000
            })
        );
        assert_eq!(r.copies_of("migrating", "32kin"), Some(1));
        assert_eq!(r.memory, Some(Memory { thread: 512, activation: 96, kernel_stack: 16384 }));
        assert_eq!(r.paths(), ["switching", "migrating", "floor-call", "floor-svc", "migrating-merged"]);
        assert!(r.unrecognised.is_empty());
    }

    #[test]
    fn ignores_lines_that_are_not_the_protocol() {
        let text = format!(
            "{BEGIN}BENCHMARK starting\nINFO  BENCH path=x\n  BENCH-END indented\nbench: BENCH-END\n\
             BENCH-END\r\n"
        );
        let r = parse(&text).unwrap();
        assert!(r.measurements.is_empty());
    }

    #[test]
    fn keeps_unknown_kinds_verbatim() {
        let text = format!("{BEGIN}BENCH-STAGE name=port-translation median=12\nBENCH-END\n");
        assert_eq!(parse(&text).unwrap().unrecognised, ["BENCH-STAGE name=port-translation median=12"]);
    }

    #[test]
    fn missing_end_and_begin_are_errors() {
        let cut = GOOD.split("BENCH-END").next().unwrap();
        let p = problems(cut);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("no BENCH-END"), "{p:?}");

        let p = problems("Tern 0.1.0\nscenario bench: FAIL (no such scenario; known: banner)\n");
        assert_eq!(p, ["no BENCH-BEGIN line: the benchmark did not start"]);

        let p = problems("BENCH path=switching test=null scope=whole unit=instructions median=1 min=1 samples=1\n");
        assert!(p[0].starts_with("line 1: before BENCH-BEGIN"), "{p:?}");
        assert!(p[1].contains("no BENCH-BEGIN"), "{p:?}");
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let bad = [
            ("BENCH path=switching test=null scope=whole unit=instructions median=1 min=1", "`samples` is missing"),
            ("BENCH path=switching test=64in scope=whole unit=instructions median=1 min=1 samples=1", "test=64in"),
            ("BENCH path=switching test=null scope=user unit=instructions median=1 min=1 samples=1", "scope=user"),
            ("BENCH path=switching test=null scope=whole unit=ns median=1 min=1 samples=1", "unit=ns"),
            ("BENCH path=switching test=null scope=whole unit=instructions median=1.5 min=1 samples=1", "decimal"),
            ("BENCH path=switching test=null scope=whole unit=instructions median=+1 min=1 samples=1", "decimal"),
            ("BENCH path=switching test=null scope=whole unit=instructions median=-1 min=1 samples=1", "decimal"),
            (
                "BENCH path=switching test=null scope=whole unit=instructions median=99999999999999999999 min=1 \
                 samples=1",
                "out of range",
            ),
            ("BENCH path=switching test=null scope=whole unit=instructions median=5 min=6 samples=1", "above median"),
            ("BENCH path=switching test=null scope=whole unit=instructions median=5 min=5 samples=0", "samples=0"),
            ("BENCH path=switching test=null scope=whole unit=instructions median=5 min=5 samples=1 p90=7", "p90"),
            ("BENCH path=switching path=x test=null scope=whole", "twice"),
            ("BENCH path=switching test=null scope=whole oops", "not key=value"),
            ("BENCH path= test=null", "empty"),
            ("BENCH-COPIES path=migrating test=32kin copies=one", "decimal"),
            ("BENCH-MEMORY thread=1 activation=2", "kernel_stack"),
            ("BENCH-END now", "not key=value"),
        ];
        for (line, needle) in bad {
            let p = problems(&format!("{BEGIN}{line}\nBENCH-END\n"));
            assert_eq!(p.len(), 1, "{line}: {p:?}");
            assert!(p[0].starts_with("line 2: ") && p[0].contains(needle), "{line}: {p:?}");
        }
        let p = problems("BENCH-BEGIN boot_id=xyz board=virt counter=instructions repetitions=1 warmup=0\nBENCH-END\n");
        assert!(p[0].contains("not hexadecimal"), "{p:?}");
        let p = problems("BENCH-BEGIN boot_id=1 board=virt counter=steps repetitions=1 warmup=0\nBENCH-END\n");
        assert!(p[0].contains("counter=steps"), "{p:?}");
    }

    #[test]
    fn sequence_errors_are_all_reported() {
        let m = "BENCH path=migrating test=null scope=whole unit=instructions median=5 min=5 samples=1\n";
        let text = format!(
            "{BEGIN}{m}{m}{BEGIN}BENCH-MEMORY thread=1 activation=1 kernel_stack=1\n\
             BENCH-MEMORY thread=1 activation=1 kernel_stack=1\nBENCH-COPIES path=a test=null copies=1\n\
             BENCH-COPIES path=a test=null copies=2\nBENCH-END\n{m}"
        );
        let p = problems(&text);
        let expect = [
            "line 3: this path, test and scope",
            "line 4: a second BENCH-BEGIN",
            "line 6: a second BENCH-MEMORY",
            "line 8: copies for this path and test",
            "line 10: after BENCH-END",
        ];
        assert_eq!(p.len(), expect.len(), "{p:?}");
        for (got, want) in p.iter().zip(expect) {
            assert!(got.starts_with(want), "{got} vs {want}");
        }
    }

    #[test]
    fn ratio_arithmetic() {
        assert_eq!(ratio(Some(600), Some(180)), "3.33");
        assert_eq!(ratio(Some(1128), Some(213)), "5.30");
        assert_eq!(ratio(Some(2), Some(3)), "0.67");
        assert_eq!(ratio(Some(5), Some(5)), "1.00");
        assert_eq!(ratio(Some(0), Some(7)), "0.00");
        assert_eq!(ratio(Some(5), Some(0)), "n/a");
        assert_eq!(ratio(None, Some(5)), "n/a");
        assert_eq!(ratio(Some(5), None), "n/a");
        assert_eq!(ratio(Some(u64::MAX), Some(u64::MAX)), "1.00");
    }

    /// The row of `label` in the first table titled `title`.
    fn row<'a>(text: &'a str, title: &str, label: &str) -> Vec<&'a str> {
        let table = text.split(title).nth(1).unwrap();
        let line = table.lines().find(|l| l.starts_with(label)).unwrap();
        line[label.len()..].split_whitespace().collect()
    }

    #[test]
    fn renders_medians_minima_and_ratios() {
        let text = render(&good(), Board::Virt);
        // kernel: switching, migrating, ratio; whole: the same.
        assert_eq!(row(&text, "Median", "Null "), ["480", "110", "4.36", "600", "180", "3.33"]);
        assert_eq!(row(&text, "Minimum", "Null "), ["470", "108", "4.35", "590", "179", "3.30"]);
        // Missing kernel figures; a zero migrating median.
        assert_eq!(row(&text, "Median", "32 In"), ["—", "—", "n/a", "650", "0", "n/a"]);
        assert_eq!(row(&text, "Median", "32K In"), ["—", "—", "n/a", "—", "—", "n/a"]);
        // No cycles scope: no cycles columns.
        assert!(!text.contains("PMCCNTR_EL0)"), "{text}");
        // Floors and the unknown path get rows of their own.
        assert_eq!(row(&text, "Floors", "floor-svc"), ["Null", "3", "3", "9", "9"]);
        assert_eq!(row(&text, "Floors", "floor-call"), ["Null", "—", "—", "12", "12"]);
        assert_eq!(row(&text, "Other paths", "migrating-merged"), ["Null", "40", "40"]);
        for needle in [
            "board virt (kernel says qemu-virt), boot 1f2e3d4c",
            "1000 repetitions after 100 warm-up; 1000 samples per figure",
            "copies: migrating 32K In: 1",
            "memory: 512 bytes per thread, 96 bytes per activation (stacks excluded); kernel stack 16384 bytes",
            "instructions retired",
            "-icount shift=0, not cycles",
            "charges nothing for exception entry or return",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn renders_cycles_when_reported() {
        let text = format!(
            "{BEGIN}BENCH path=switching test=null scope=cycles unit=cycles median=900 min=850 samples=5\n\
             BENCH path=migrating test=null scope=cycles unit=cycles median=300 min=290 samples=5\nBENCH-END\n"
        );
        let text = render(&parse(&text).unwrap(), Board::Rpi4);
        assert!(text.contains("cycles (PMCCNTR_EL0)"), "{text}");
        assert_eq!(row(&text, "Median", "Null "), ["—", "—", "n/a", "—", "—", "n/a", "900", "300", "3.00"]);
        assert!(text.contains("cycles mean something only on a real Raspberry Pi"), "{text}");
        assert!(text.contains("memory: not reported"), "{text}");
    }

    #[test]
    fn targets_are_computed_from_the_figures() {
        let t = targets(&good());
        let verdicts: Vec<Verdict> = t.iter().map(|t| t.verdict).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Met, Met, Met, Met, Met]);
        assert_eq!(t[3].actual, "3.33");

        // Exactly on the limits is met; one over is missed.
        let with = |s_whole: u64, m_whole: u64, m_kernel: u64, copies: u64| {
            format!(
                "{BEGIN}BENCH path=switching test=null scope=whole unit=instructions median={s_whole} min=1 samples=1\n\
                 BENCH path=migrating test=null scope=whole unit=instructions median={m_whole} min=1 samples=1\n\
                 BENCH path=migrating test=null scope=kernel unit=instructions median={m_kernel} min=1 samples=1\n\
                 BENCH-COPIES path=migrating test=32kin copies={copies}\nBENCH-END\n"
            )
        };
        let v = |text: String| targets(&parse(&text).unwrap()).iter().map(|t| t.verdict).collect::<Vec<_>>();
        assert_eq!(v(with(600, 200, 120, 1)), [Met, Met, Met, Met, Met]);
        assert_eq!(v(with(621, 201, 121, 2)), [Missed, Missed, Missed, Met, Missed]);
        // 2999 / 1000 = 2.999 prints as "3.00" but is below 3.0: missed.
        let t = targets(&parse(&with(2999, 1000, 100, 1)).unwrap());
        assert_eq!((t[3].actual.as_str(), t[3].verdict), ("3.00", Missed));

        // Nothing reported: unknown, never met.
        let t = targets(&parse(&format!("{BEGIN}BENCH-END\n")).unwrap());
        assert!(t.iter().all(|t| t.verdict == Unknown), "{t:?}");
        // Cycles are not instructions: the instruction targets do not apply.
        let text = format!(
            "{BEGIN}BENCH path=migrating test=null scope=whole unit=cycles median=10 min=10 samples=1\nBENCH-END\n"
        );
        assert_eq!(targets(&parse(&text).unwrap())[0].verdict, Unknown);
    }

    #[test]
    fn json_has_one_record_per_figure() {
        let records = json_records(&good(), Board::Virt);
        let records = records.as_array().unwrap();
        assert_eq!(records.len(), 10);
        assert_eq!(
            records[3],
            json!({"path": "migrating", "test": "null", "scope": "whole", "median": 180, "min": 179,
                   "unit": "instructions", "samples": 1000, "board": "virt", "boot_id": "1f2e3d4c"})
        );
    }

    #[test]
    fn command_has_icount_and_one_core() {
        let image = Path::new("/k/tern-virt.img");
        let mut launch = Launch {
            board: Board::Virt,
            image,
            cmdline: cmdline(Some(50)),
            semihosting: true,
            gdb: false,
            interactive: false,
        };
        let line = qemu::display_command(&bench_command(&launch));
        assert_eq!(
            line,
            "qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1G -smp 1 -kernel /k/tern-virt.img -append \
             'tern.harness=1 tern.scenario=bench tern.bench.repetitions=50' -display none -monitor none \
             -serial stdio -semihosting-config enable=on,target=native -icount shift=0"
        );
        launch.board = Board::Rpi4;
        launch.cmdline = cmdline(None);
        let line = qemu::display_command(&bench_command(&launch));
        assert!(line.starts_with("qemu-system-aarch64 -M raspi4b -kernel"), "{line}");
        assert!(line.contains("'tern.harness=1 tern.scenario=bench'") && line.ends_with("-icount shift=0"), "{line}");
        assert!(!line.contains("-smp"), "{line}");
    }

    #[test]
    fn failed_runs_are_failures() {
        let run = |status, timed_out| RunOutput {
            status,
            output: String::new(),
            timed_out,
            stderr: String::new(),
            command: String::new(),
        };
        assert_eq!(run_failure(&run(Some(0), false)), None);
        assert!(run_failure(&run(Some(1), false)).unwrap().contains("scenario failed"));
        assert!(run_failure(&run(None, true)).unwrap().contains("timeout"));
        assert!(run_failure(&run(None, false)).unwrap().contains("signal"));
    }
}
