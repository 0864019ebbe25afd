//! `cargo xtask bench`: boot the kernel's benchmark, read its figures, print
//! them as the paper's Tables 1 and 3.
//!
//! The measuring happens inside the kernel: scenario `bench` times each
//! invocation path (switching threads, migrating threads between protected
//! domains, migrating threads into merged domains, and the floors: a plain
//! indirect call, a null `svc`, the general exception path and the merged
//! gate's direct kernel entry) with the PMU's INST_RETIRED event read at EL0
//! around every call, once counting EL0 and EL1 ("whole call") and once EL1
//! only ("kernel"), and prints the median and minimum over its repetitions
//! as plain console lines. Between rounds it flips domains between protected
//! and merged, so every mode is measured in the same boot. This module is
//! the host side of that arrangement, in three parts.
//!
//! **Running.** [`run`] builds the release harness image (the production
//! image has no benchmark), then boots it in QEMU with two changes to the
//! usual command line: `-icount shift=0`, without which INST_RETIRED reads
//! 0 (and with which it is exact and identical from run to run), and
//! `-smp 1` on `virt`, because QEMU's INST_RETIRED is a sum over every
//! virtual core (on `raspi4b` the three secondary cores sit in the
//! firmware's `wfe` loop and retire nothing while parked). The kernel gets
//! `tern.harness=1 tern.scenario=bench` and, with `--repetitions N`,
//! `tern.bench.repetitions=N`; semihosting is on so the kernel ends QEMU
//! with its verdict. [`qemu::run_captured`] offers no way to add QEMU
//! arguments, so [`run_captured_icount`] repeats its loop (the same
//! [`Console`] and [`LogDecoder`], a deadline, a guard that kills and reaps
//! QEMU on every way out) around [`bench_command`], which is
//! [`qemu::command`] with those two edits, and QEMU's `-plugin` option:
//! [`boot`] also builds the crossings plugin (`tools/qemu-plugin`) for the
//! host and loads it, and pairs what it counted with the figures
//! ([`crate::crossings`]), and builds the measured stage tables from its
//! histograms ([`crate::stages`]). [`calibrate`] boots the `calibrate`
//! scenario instead and prints its per-crossing costs.
//!
//! **Parsing.** [`parse`] is a pure function from the captured text to a
//! [`Report`]. A line belongs to the protocol when its first word is `BENCH`
//! or starts with `BENCH-`; everything else (the banner, log lines, the
//! verdict) is ignored. The known lines are:
//!
//! ```text
//! BENCH-BEGIN boot_id=HEX board=NAME counter=instructions|cycles repetitions=N warmup=N
//! BENCH-FLIP domain=NAME mode=protected|merged
//! BENCH path=P mode=M test=T scope=S unit=U median=N min=N samples=N
//! BENCH-COPIES path=P mode=M test=T copies=N
//! BENCH-STAGE path=P mode=M test=null side=call|return stage=NAME instructions=N
//! BENCH-MEMORY thread=N activation=N kernel_stack=N
//! BENCH-INVERSION-SETUP calls=N work=N medium=N low_clients=N server_threads=N pool=N priority_high=N priority_medium=N priority_low=N priority_server=N unit=U
//! BENCH-INVERSION path=P load=L unit=U median=N min=N max=N calls=N
//! BENCH-END
//! ```
//!
//! Their fields are `key=value` words, all required, none unknown, none
//! twice. Paths are open-ended (a path this module has never heard of gets
//! its own rows); modes ([`MODES`]), tests ([`TESTS`], including the 32 KiB
//! lend, `32kin-lent`), scopes, units, counters, sides and stage names
//! ([`STAGES`]) are closed sets. A figure is identified by (path, mode, test,
//! scope), a copy count by (path, mode, test), a stage by (path, mode, side,
//! stage); the same identity twice is a problem, as is a figure whose
//! minimum exceeds its median, a record before `BENCH-BEGIN` or after
//! `BENCH-END`, a missing `BENCH-BEGIN` or `BENCH-END`. [`parse`] returns
//! all of them, each with its line number, rather than stopping at the
//! first. `BENCH-FLIP` lines are informational: they record, in order, each
//! domain's change of mode between rounds. A line tagged `BENCH-<something
//! else>` is not an error (the kernel may learn to say more before this
//! module does) but it is shown verbatim under the tables. The two
//! `BENCH-INVERSION` lines are the priority-inversion experiment (issue 5):
//! a high-priority client's call latency to a server that low-priority
//! clients keep busy, on the two paths ([`INVERSION_PATHS`]) under each load
//! ([`LOADS`]); a row is identified by (path, load), and needs `min` ≤
//! `median` ≤ `max` and `calls` ≥ 1.
//!
//! **Rendering.** [`render`] prints, for the five tests, the figures of the
//! four compared series ([`COLUMNS`]: switching, and migrating protected →
//! protected, protected → merged, merged → merged) side by side with three
//! ratios ([`RATIOS`], two decimals, `n/a` when either side is missing or
//! the divisor is zero): one table of medians, one of minima, each with a
//! block per scope (kernel, whole call, and cycles when reported). Then the
//! floors and any other (path, mode) pairs, the per-stage breakdown of the
//! null migrating call (the paper's Table 1) for every (path, mode) with
//! `BENCH-STAGE` lines, checked against the PMU's kernel-only median for
//! the same (path, mode) but never adjusted to it, the copy counts, the
//! memory line, the priority-inversion table (median and maximum per path
//! and load, and each median ÷ its path's unloaded median), the mode
//! changes, and what the figures are (instructions
//! retired under `-icount shift=0`, not cycles: QEMU charges nothing for
//! taking or returning from an exception, so they are path lengths). The
//! targets set for the benchmark follow, each with ✓, ✗ or `?` (not
//! reported) computed from the parsed integers; a ratio target is checked
//! exactly, by cross multiplication, not on the rounded ratio shown. Figures
//! are printed as the kernel wrote them, never rounded, scaled or adjusted.
//!
//! The command fails (non-zero exit, the whole run printed) when QEMU exits
//! with anything but 0, times out, or the transcript does not parse. Missed
//! targets do not fail it: they are reported, not enforced. `--json PATH`
//! writes one record per (path, mode, test, scope), then one per row of
//! the priority-inversion experiment (test `priority-inversion`, with its
//! `load` and `max`), for tools that track figures over time (each figure
//! with its `crossings`); `--cost` adds modeled cycles to the crossings
//! tables; `--svg PATH`
//! writes the whole-call medians as a bar chart ([`crate::svg`]).
//!
//! What it leaves out: running on a real Raspberry Pi (there the cycle
//! counts would mean something; under QEMU, with `-icount shift=0`, a cycle
//! is an instruction), comparing against earlier runs, and statistics beyond
//! the kernel's own median and minimum.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::crossings::{self, Costs, Crossings};
use crate::qemu::{self, Launch, RunOutput};
pub use crate::report::*;
use crate::{Board, Image, ImageKind, build_image, install, stages};

/// The kernel scenario that runs the benchmark.
pub const SCENARIO: &str = "bench";
/// How long the benchmark boot may take before QEMU is killed.
pub const TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Rendering

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

/// The median of (path, mode, test, scope) if reported in instructions.
fn instructions(report: &Report, path: &str, mode: &str, test: &str, scope: &str) -> Option<u64> {
    report.get(path, mode, test, scope).filter(|m| m.unit == "instructions").map(|m| m.median)
}

/// A target on one figure: at most `limit`.
fn at_most(goal: &'static str, value: Option<u64>, limit: u64) -> Target {
    Target {
        goal,
        actual: value.map_or_else(|| "not reported".to_string(), |v| v.to_string()),
        verdict: value.map_or(Verdict::Unknown, |v| Verdict::from_bool(v <= limit)),
    }
}

/// Which side of its limit a ratio target wants the ratio on.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtLeast,
    AtMost,
}

/// A target on `a ÷ b` against `numerator ÷ denominator`, checked exactly
/// by cross multiplication; unknown if either is missing or `b` is zero.
fn ratio_target(goal: &'static str, a: Option<u64>, b: Option<u64>, limit: (u64, u64), bound: Bound) -> Target {
    let (numerator, denominator) = limit;
    match (a, b) {
        (Some(a), Some(b)) if b != 0 => {
            let left = u128::from(a) * u128::from(denominator);
            let right = u128::from(b) * u128::from(numerator);
            let met = match bound {
                Bound::AtLeast => left >= right,
                Bound::AtMost => left <= right,
            };
            Target { goal, actual: ratio(Some(a), Some(b)), verdict: Verdict::from_bool(met) }
        }
        _ => Target { goal, actual: "n/a".to_string(), verdict: Verdict::Unknown },
    }
}

/// The benchmark's targets, checked against the report's medians.
pub fn targets(report: &Report) -> Vec<Target> {
    let whole = |path, mode, test| instructions(report, path, mode, test, "whole");
    let switching = whole(SWITCHING, PROTECTED, "null");
    let migrating = whole(MIGRATING_PROTECTED, PROTECTED, "null");
    let to_merged = whole(MIGRATING_MERGED, SERVER_MERGED, "null");
    let both_merged = whole(MIGRATING_MERGED, BOTH_MERGED, "null");
    let copies = report.copies_of(MIGRATING_PROTECTED, PROTECTED, "32kin");
    let flips = report.flips.len();
    vec![
        at_most("migrating Null, whole call ≤ 200 instructions", migrating, 200),
        at_most(
            "migrating Null, kernel only ≤ 120 instructions",
            instructions(report, MIGRATING_PROTECTED, PROTECTED, "null", "kernel"),
            120,
        ),
        at_most("switching Null, whole call ≤ 620 instructions", switching, 620),
        ratio_target("switching ÷ migrating, Null whole call ≥ 3.0", switching, migrating, (3, 1), Bound::AtLeast),
        Target {
            goal: "migrating 32K In copies the payload once",
            actual: copies.map_or_else(|| "not reported".to_string(), |c| format!("copies={c}")),
            verdict: copies.map_or(Verdict::Unknown, |c| Verdict::from_bool(c == 1)),
        },
        at_most("merged null call (merged client → merged server), whole ≤ 30 instructions", both_merged, 30),
        ratio_target(
            "protected→merged ÷ protected→protected, Null whole ≤ 0.4",
            to_merged,
            migrating,
            (4, 10),
            Bound::AtMost,
        ),
        ratio_target(
            "32K lent to a merged server within 1.2× of Null (protected client)",
            whole(MIGRATING_MERGED, SERVER_MERGED, "32kin-lent"),
            to_merged,
            (6, 5),
            Bound::AtMost,
        ),
        ratio_target(
            "32K lent to a merged server within 1.2× of Null (merged client)",
            whole(MIGRATING_MERGED, BOTH_MERGED, "32kin-lent"),
            both_merged,
            (6, 5),
            Bound::AtMost,
        ),
        Target {
            goal: "one boot: every figure after one BENCH-BEGIN, with a mode change",
            actual: format!("{flips} mode change{}", if flips == 1 { "" } else { "s" }),
            verdict: Verdict::from_bool(flips > 0),
        },
        inversion_target(report),
    ]
}

/// The paths a bound handle adds (`tern_inks::bound`): message buffers,
/// memory, words (registers both ways).
pub const BOUND_PATHS: [&str; 3] = ["bound", "bound-memory", "bound-words"];

/// The smallest of the Null figures of `paths` in `mode` and `scope`, and
/// which path it is.
fn best(report: &Report, paths: &[&str], mode: &str, scope: &str) -> Option<(u64, String)> {
    paths
        .iter()
        .filter_map(|path| instructions(report, path, mode, "null", scope).map(|value| (value, (*path).to_string())))
        .min()
}

/// A target on the best of several paths: at most `limit`, naming the path.
fn best_at_most(goal: &'static str, best: Option<(u64, String)>, limit: u64) -> Target {
    Target {
        goal,
        actual: best.as_ref().map_or_else(|| "not reported".to_string(), |(value, path)| format!("{value} ({path})")),
        verdict: best.map_or(Verdict::Unknown, |(value, _)| Verdict::from_bool(value <= limit)),
    }
}

/// Issue 15's targets (close to a procedure call): each lean path's Null
/// whole call (the best of the ways a client can call it: by name, or
/// through a bound handle), the switching baseline, and 32K In.
pub fn lean_targets(report: &Report) -> Vec<Target> {
    let mut into_merged = vec![MIGRATING_MERGED];
    into_merged.extend(BOUND_PATHS);
    let mut into_protected = vec![MIGRATING_PROTECTED];
    into_protected.extend(BOUND_PATHS);
    let switching = instructions(report, SWITCHING, PROTECTED, "null", "whole");
    let copies = [(MIGRATING_PROTECTED, PROTECTED), (MIGRATING_MERGED, SERVER_MERGED), (MIGRATING_MERGED, BOTH_MERGED)]
        .iter()
        .map(|(path, mode)| instructions(report, path, mode, "32kin", "whole"))
        .collect::<Option<Vec<u64>>>()
        .and_then(|values| values.into_iter().max());
    vec![
        best_at_most(
            "merged→merged Null through a handle, whole ≤ 40",
            best(report, &BOUND_PATHS, BOTH_MERGED, "whole"),
            40,
        ),
        best_at_most("protected→merged Null, whole ≤ 90", best(report, &into_merged, SERVER_MERGED, "whole"), 90),
        best_at_most("protected→protected Null, whole ≤ 150", best(report, &into_protected, PROTECTED, "whole"), 150),
        best_at_most(
            "protected→protected Null, kernel only ≤ 110",
            best(report, &into_protected, PROTECTED, "kernel"),
            110,
        ),
        at_most("switching Null, whole ≤ 411 (seL4's fastpath round trip)", switching, 411),
        at_most("switching Null, whole no worse than 376 (issue 15's starting figure)", switching, 376),
        at_most("32K In on every migrating path, whole ≤ 5000 (the largest)", copies, 5000),
    ]
}

/// Migrating RPC shows no priority inversion: under every load, the
/// high-priority client's slowest call is within 1.1× of its unloaded
/// median (the worst loaded maximum ÷ the unloaded median, checked exactly).
fn inversion_target(report: &Report) -> Target {
    let goal = "migrating: no priority inversion, every loaded call ≤ 1.1× the unloaded median";
    let unloaded = report.inversion(MIGRATING_PROTECTED, LOADS[0].0);
    let loaded: Vec<&Inversion> =
        LOADS[1..].iter().filter_map(|(load, _)| report.inversion(MIGRATING_PROTECTED, load)).collect();
    match unloaded {
        Some(u) if !loaded.is_empty() && loaded.iter().all(|l| l.unit == u.unit) => {
            let worst = loaded.iter().map(|l| l.max).max();
            ratio_target(goal, worst, Some(u.median), (11, 10), Bound::AtMost)
        }
        _ => Target { goal, actual: "not reported".to_string(), verdict: Verdict::Unknown },
    }
}

/// The label of a test (`32in` → `32 In`).
fn test_label(test: &str) -> &str {
    TESTS.iter().find(|t| t.0 == test).map_or(test, |t| t.1)
}

/// The scopes to show: kernel and whole always, cycles if any figure has
/// that scope.
fn shown_scopes(report: &Report) -> Vec<(&'static str, &'static str)> {
    SCOPES
        .iter()
        .copied()
        .filter(|(s, _)| *s != "cycles" || report.measurements.iter().any(|m| m.scope == *s))
        .collect()
}

/// The units of the figures of `series` in a scope, for a heading.
fn scope_units(report: &Report, scope: &str, series: &[(&str, &str)]) -> String {
    let mut units: Vec<&str> = Vec::new();
    for m in
        report.measurements.iter().filter(|m| m.scope == scope && series.contains(&(m.path.as_str(), m.mode.as_str())))
    {
        if !units.contains(&m.unit.as_str()) {
            units.push(&m.unit);
        }
    }
    if units.is_empty() { "(none reported)".to_string() } else { units.join(" / ") }
}

const TEST_W: usize = 8;
const NUM_W: usize = 10;
const RATIO_W: usize = 9;
const GAP: &str = "    ";
const INDENT: &str = "  ";

/// The (path, mode) pairs of [`COLUMNS`].
fn compared_series() -> Vec<(&'static str, &'static str)> {
    COLUMNS.iter().map(|c| (c.0, c.1)).collect()
}

/// What the columns of the comparison tables are.
fn column_key(out: &mut String) {
    let _ =
        writeln!(out, "Columns: {} = switching threads, {}; migrating threads:", COLUMNS[0].2, mode_text(COLUMNS[0].1));
    let migrating: Vec<String> =
        COLUMNS[1..].iter().map(|(path, mode, heading)| format!("{heading} = {path}, {}", mode_text(mode))).collect();
    let _ = writeln!(out, "{INDENT}{}.", migrating.join(&format!(";\n{INDENT}")));
    let ratios: Vec<String> =
        RATIOS.iter().map(|(h, a, b)| format!("{h} = {} ÷ {}", COLUMNS[*a].2, COLUMNS[*b].2)).collect();
    let _ = writeln!(out, "Ratios: {}.\n", ratios.join(", "));
}

/// The comparison table for one statistic (`median` or `min`): a block
/// per scope, a row per test.
fn comparison_table(out: &mut String, report: &Report, title: &str, pick: fn(&Measurement) -> u64) {
    let _ = writeln!(out, "{title}");
    for (index, (scope, label)) in shown_scopes(report).into_iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "{INDENT}{label}, {}", scope_units(report, scope, &compared_series()));
        let mut columns = format!("{INDENT}{:TEST_W$}", "test");
        for (_, _, heading) in COLUMNS {
            let _ = write!(columns, " {heading:>NUM_W$}");
        }
        for (heading, _, _) in RATIOS {
            let _ = write!(columns, " {heading:>RATIO_W$}");
        }
        let _ = writeln!(out, "{columns}");
        for (test, label) in TESTS {
            let values: Vec<Option<u64>> =
                COLUMNS.iter().map(|(path, mode, _)| report.get(path, mode, test, scope).map(pick)).collect();
            let mut row = format!("{INDENT}{label:TEST_W$}");
            for value in &values {
                let _ = write!(row, " {:>NUM_W$}", figure(*value));
            }
            for (_, a, b) in RATIOS {
                let _ = write!(row, " {:>RATIO_W$}", ratio(values[a], values[b]));
            }
            let _ = writeln!(out, "{row}");
        }
    }
}

/// Rows of median and minimum for (path, mode) pairs outside the
/// comparison (floors, pairs this module does not compare).
fn path_table(out: &mut String, report: &Report, title: &str, series: &[(&str, &str)]) {
    let scopes: Vec<_> = shown_scopes(report)
        .into_iter()
        .filter(|(s, _)| {
            report.measurements.iter().any(|m| m.scope == *s && series.contains(&(m.path.as_str(), m.mode.as_str())))
        })
        .collect();
    let path_w = series.iter().map(|s| s.0.chars().count()).max().unwrap_or(0).max(4);
    let mode_w = series.iter().map(|s| s.1.chars().count()).max().unwrap_or(0).max(4);
    let group_w = NUM_W * 2 + 1;
    let _ = writeln!(out, "{title}");
    let mut heading = format!("{:path_w$}  {:mode_w$}  {:TEST_W$}", "", "", "");
    let mut units = heading.clone();
    let mut columns = format!("{:path_w$}  {:mode_w$}  {:TEST_W$}", "path", "mode", "test");
    for (scope, label) in &scopes {
        let _ = write!(heading, "{GAP}{label:<group_w$}");
        let _ = write!(units, "{GAP}{:<group_w$}", scope_units(report, scope, series));
        let _ = write!(columns, "{GAP}{:>NUM_W$} {:>NUM_W$}", "median", "min");
    }
    for line in [heading, units, columns] {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for (path, mode) in series {
        let mut tests: Vec<&str> = Vec::new();
        for m in report.measurements.iter().filter(|m| m.path == *path && m.mode == *mode) {
            if !tests.contains(&m.test.as_str()) {
                tests.push(&m.test);
            }
        }
        tests.sort_by_key(|t| TESTS.iter().position(|k| k.0 == *t));
        for test in tests {
            let mut row = format!("{path:path_w$}  {mode:mode_w$}  {:TEST_W$}", test_label(test));
            for (scope, _) in &scopes {
                let m = report.get(path, mode, test, scope);
                let _ =
                    write!(row, "{GAP}{:>NUM_W$} {:>NUM_W$}", figure(m.map(|m| m.median)), figure(m.map(|m| m.min)));
            }
            let _ = writeln!(out, "{row}");
        }
    }
}

/// One row of a per-stage table: the instructions of its stages on each
/// side, `None` where none of them was reported on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageRow {
    /// The row's label (from [`STAGE_ROWS`]).
    pub label: &'static str,
    /// On the call side.
    pub call: Option<u128>,
    /// On the return side.
    pub ret: Option<u128>,
}

impl StageRow {
    /// Both sides together, `None` if neither was reported.
    pub fn total(&self) -> Option<u128> {
        match (self.call, self.ret) {
            (None, None) => None,
            (call, ret) => Some(call.unwrap_or(0) + ret.unwrap_or(0)),
        }
    }
}

/// The sum of `stages` on one side of (path, mode), `None` if none was
/// reported.
fn side_sum(report: &Report, path: &str, mode: &str, side: &str, stages: &[&str]) -> Option<u128> {
    stages
        .iter()
        .filter_map(|stage| report.stage(path, mode, side, stage))
        .map(u128::from)
        .fold(None, |sum, n| Some(sum.unwrap_or(0) + n))
}

/// The per-stage table of (path, mode): one row per [`STAGE_ROWS`] entry,
/// then the `sum` row over every stage reported.
pub fn stage_rows(report: &Report, path: &str, mode: &str) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = STAGE_ROWS
        .iter()
        .map(|(label, stages)| StageRow {
            label,
            call: side_sum(report, path, mode, "call", stages),
            ret: side_sum(report, path, mode, "return", stages),
        })
        .collect();
    rows.push(StageRow {
        label: "sum",
        call: side_sum(report, path, mode, "call", &STAGES),
        ret: side_sum(report, path, mode, "return", &STAGES),
    });
    rows
}

/// How the stages of (path, mode) add up against the PMU's kernel-only
/// Null median of the same (path, mode). Neither figure is adjusted.
pub fn stage_check(report: &Report, path: &str, mode: &str) -> String {
    let sum = side_sum(report, path, mode, "call", &STAGES).unwrap_or(0)
        + side_sum(report, path, mode, "return", &STAGES).unwrap_or(0);
    match instructions(report, path, mode, "null", "kernel") {
        None => format!("stages sum to {sum}; no kernel-only Null figure in instructions to compare with"),
        Some(pmu) if sum == u128::from(pmu) => format!("stages sum to {sum}: matches the PMU's kernel count ({pmu})"),
        Some(pmu) => {
            let pmu_wide = u128::from(pmu);
            let (by, which) = if sum > pmu_wide { (sum - pmu_wide, "more") } else { (pmu_wide - sum, "fewer") };
            format!("stages sum to {sum}: differs from the PMU's kernel count ({pmu}) by {by} ({which} in the stages)")
        }
    }
}

fn wide_figure(value: Option<u128>) -> String {
    value.map_or_else(|| "—".to_string(), |v| v.to_string())
}

/// The per-stage tables, one per (path, mode) with `BENCH-STAGE` lines.
fn stage_tables(out: &mut String, report: &Report) {
    let series = report.stage_series();
    if series.is_empty() {
        return;
    }
    let label_w = STAGE_ROWS.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let _ = writeln!(out, "\nNull migrating call by stage (the paper's Table 1), instructions");
    for (path, mode) in series {
        let _ = writeln!(out, "{INDENT}{path}, {}", mode_text(mode));
        let _ =
            writeln!(out, "{INDENT}{:label_w$} {:>NUM_W$} {:>NUM_W$} {:>NUM_W$}", "stage", "call", "return", "total");
        for row in stage_rows(report, path, mode) {
            let _ = writeln!(
                out,
                "{INDENT}{:label_w$} {:>NUM_W$} {:>NUM_W$} {:>NUM_W$}",
                row.label,
                wide_figure(row.call),
                wide_figure(row.ret),
                wide_figure(row.total())
            );
        }
        let _ = writeln!(out, "{INDENT}{}", stage_check(report, path, mode));
    }
}

const LOAD_W: usize = 10;

/// The priority-inversion experiment: a row per load, median, maximum and
/// median ÷ the same path's unloaded median for each path; then how it was
/// run. Nothing if the kernel did not run it.
fn inversion_table(out: &mut String, report: &Report) {
    if report.inversions.is_empty() && report.inversion_setup.is_none() {
        return;
    }
    let mut units: Vec<&str> = Vec::new();
    for i in &report.inversions {
        if !units.contains(&i.unit.as_str()) {
            units.push(&i.unit);
        }
    }
    let units = if units.is_empty() { "(none reported)".to_string() } else { units.join(" / ") };
    let calls = report.inversion_setup.as_ref().map_or_else(|| "?".to_string(), |s| s.calls.to_string());
    let _ = writeln!(
        out,
        "\nPriority inversion: a high-priority client's call to a server that lower-priority work keeps busy"
    );
    let _ = writeln!(
        out,
        "{INDENT}{units}, per call as the client saw it; median and maximum of {calls} calls; \
         ÷unloaded = median ÷ the path's unloaded median"
    );
    let group_w = NUM_W * 2 + RATIO_W + 2;
    let mut heading = format!("{INDENT}{:LOAD_W$}", "");
    let mut columns = format!("{INDENT}{:LOAD_W$}", "load");
    for (_, label) in INVERSION_PATHS {
        let _ = write!(heading, "{GAP}{label:<group_w$}");
        let _ = write!(columns, "{GAP}{:>NUM_W$} {:>NUM_W$} {:>RATIO_W$}", "median", "max", "÷unloaded");
    }
    for line in [heading, columns] {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for (load, _) in LOADS {
        let mut row = format!("{INDENT}{load:LOAD_W$}");
        for (path, _) in INVERSION_PATHS {
            let this = report.inversion(path, load);
            let unloaded = report.inversion(path, LOADS[0].0).filter(|u| this.is_some_and(|t| t.unit == u.unit));
            let _ = write!(
                row,
                "{GAP}{:>NUM_W$} {:>NUM_W$} {:>RATIO_W$}",
                figure(this.map(|i| i.median)),
                figure(this.map(|i| i.max)),
                ratio(this.map(|i| i.median), unloaded.map(|u| u.median))
            );
        }
        let _ = writeln!(out, "{row}");
    }
    match &report.inversion_setup {
        Some(s) => {
            let _ = writeln!(
                out,
                "{INDENT}high-priority client: priority {}, one call after each timer tick; work per request: {} {};\n\
                 {INDENT}switching server: {} thread(s) at priority {}; migrating server: a pool of {} activations (the \
                 caller's thread runs the work, at the caller's priority)",
                s.priority_high, s.work, s.unit, s.server_threads, s.priority_server, s.pool
            );
            let _ = writeln!(
                out,
                "{INDENT}loads: unloaded = {}; low = {} low-priority clients (priority {}) calling the server in a \
                 loop;\n{INDENT}low+medium = the same, and a medium-priority thread (priority {}; {} {} of computing at \
                 every tick, no calls)",
                LOADS[0].1, s.low_clients, s.priority_low, s.priority_medium, s.medium, s.unit
            );
        }
        None => out.push_str("  set-up: not reported\n"),
    }
    if units.contains("cycles") {
        out.push_str(
            "  (PMCCNTR_EL0: under QEMU -icount shift=0 one cycle is one instruction, 1 ns of virtual time)\n",
        );
    }
}

/// The mode changes, in order, on one line.
pub fn flips_text(report: &Report) -> String {
    if report.flips.is_empty() {
        return "mode changes in this boot: none reported".to_string();
    }
    let flips: Vec<String> = report.flips.iter().map(|f| format!("{}→{}", f.domain, f.mode)).collect();
    format!("mode changes in this boot: {}", flips.join(", "))
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

/// The floors and the other (path, mode) pairs, each as a table if any.
fn other_tables(out: &mut String, report: &Report) {
    let series = report.series();
    let mut floors: Vec<(&str, &str)> = series.iter().copied().filter(|s| FLOORS.contains(&s.0)).collect();
    floors.sort_by_key(|s| FLOORS.iter().position(|f| *f == s.0));
    if !floors.is_empty() {
        out.push('\n');
        path_table(out, report, "Floors", &floors);
    }
    let compared = compared_series();
    let others: Vec<(&str, &str)> =
        series.iter().copied().filter(|s| !compared.contains(s) && !FLOORS.contains(&s.0)).collect();
    if !others.is_empty() {
        out.push('\n');
        path_table(out, report, "Other paths", &others);
    }
}

/// Copies, memory, mode changes and unrecognised lines.
fn facts(out: &mut String, report: &Report) {
    for c in &report.copies {
        let _ = writeln!(out, "copies: {} ({}) {}: {}", c.path, c.mode, test_label(&c.test), c.copies);
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
    let _ = writeln!(out, "{}", flips_text(report));
    for line in &report.unrecognised {
        let _ = writeln!(out, "not understood by this xtask, shown as printed: {line}");
    }
}

/// What the figures are.
fn notes(out: &mut String, report: &Report) {
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
}

/// The test name of the macro benchmark's records in the JSON output.
pub const BUILD_TEST: &str = "build";

/// `a ÷ base` as a number, if both are there and `base` is not zero.
fn fraction(a: u64, base: Option<u64>) -> Option<f64> {
    base.filter(|&b| b != 0).map(|b| a as f64 / b as f64)
}

/// The macro benchmark `build`: one row per configuration, with ratios
/// to all-protected; nothing if the run did not include it.
fn build_table(out: &mut String, report: &Report) {
    let Some(first) = report.builds.first() else { return };
    let base = report.build(BUILD_CONFIGS[0].0);
    let _ = writeln!(
        out,
        "\nMacro benchmark `build`: {} source files compiled and linked through the file server \
         (the driver's build step;\ninstructions EL0+EL1, generic-timer ticks, payload copies; × = ÷ protected; \
         RPCs by path, `general` of them through the kernel's Rust path)",
        first.files
    );
    let _ = writeln!(
        out,
        "{INDENT}{:<15} {:>12} {:>6} {:>10} {:>6} {:>7} {:>6}  {:>9} {:>7} {:>9} {:>7}  checksum",
        "config", "instructions", "×", "ticks", "×", "copies", "×", "migrating", "merged", "switching", "general"
    );
    let times = |value: u64, pick: fn(&Build) -> u64| ratio(Some(value), base.map(pick));
    for b in &report.builds {
        let _ = writeln!(
            out,
            "{INDENT}{:<15} {:>12} {:>6} {:>10} {:>6} {:>7} {:>6}  {:>9} {:>7} {:>9} {:>7}  {}",
            b.config,
            b.instructions,
            times(b.instructions, |b| b.instructions),
            b.ticks,
            times(b.ticks, |b| b.ticks),
            b.copies,
            times(b.copies, |b| b.copies),
            b.migrating,
            b.merged,
            b.switching,
            b.general,
            b.checksum
        );
    }
    let same = report.builds.iter().all(|b| b.checksum == first.checksum);
    let _ = writeln!(
        out,
        "{INDENT}{}",
        if same { "the same checksum in every configuration" } else { "THE CHECKSUMS DIFFER between configurations" }
    );
    for (config, text) in BUILD_CONFIGS {
        let _ = writeln!(out, "{INDENT}  {config}: {text}");
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
    column_key(&mut out);
    comparison_table(&mut out, report, "Median", |m| m.median);
    out.push('\n');
    comparison_table(&mut out, report, "Minimum", |m| m.min);
    other_tables(&mut out, report);
    stage_tables(&mut out, report);
    inversion_table(&mut out, report);
    build_table(&mut out, report);
    out.push('\n');
    facts(&mut out, report);
    notes(&mut out, report);

    for (heading, targets) in [
        ("\nTargets (reported, not enforced; medians)\n", targets(report)),
        (
            "\nIssue 15's targets (close to a procedure call; the best of each pair's paths, named)\n",
            lean_targets(report),
        ),
    ] {
        out.push_str(heading);
        let goal_w = targets.iter().map(|t| t.goal.chars().count()).max().unwrap_or(0);
        for t in &targets {
            let pad = goal_w - t.goal.chars().count();
            let _ = writeln!(out, "  {} {}{:pad$}  {}", t.verdict.mark(), t.goal, "", t.actual);
        }
    }
    out
}

/// One JSON record per (path, mode, test, scope), in the kernel's order,
/// then one per priority-inversion row (test [`INVERSION_TEST`], mode
/// `protected`, scope `cycles` for a row in cycles, with its `load` and
/// `max`), then one per configuration of the macro benchmark (test
/// [`BUILD_TEST`], `config`, `files`, `instructions`, `ticks`, `copies`,
/// `rpc` {`migrating`, `merged`, `switching`, `general`}, `checksum`, and
/// `ratio` {`instructions`, `ticks`, `copies`}: each ÷ the `protected`
/// configuration's, `null` without it).
pub fn json_records(report: &Report, board: Board, crossings: Option<&[Crossings]>) -> serde_json::Value {
    let figures = report.measurements.iter().enumerate().map(|(index, m)| {
        let mut record = json!({
            "path": m.path,
            "mode": m.mode,
            "test": m.test,
            "scope": m.scope,
            "median": m.median,
            "min": m.min,
            "unit": m.unit,
            "samples": m.samples,
            "board": board.name(),
            "boot_id": report.begin.boot_id,
        });
        if let Some(c) = crossings.and_then(|c| c.get(index)) {
            record["crossings"] = c.json();
        }
        record
    });
    let inversions = report.inversions.iter().map(|i| {
        json!({
            "path": i.path,
            "mode": PROTECTED,
            "test": INVERSION_TEST,
            "load": i.load,
            "scope": if i.unit == "cycles" { "cycles" } else { "whole" },
            "median": i.median,
            "min": i.min,
            "max": i.max,
            "unit": i.unit,
            "samples": i.calls,
            "board": board.name(),
            "boot_id": report.begin.boot_id,
        })
    });
    let base = report.build(BUILD_CONFIGS[0].0);
    let builds = report.builds.iter().map(|b| {
        json!({
            "test": BUILD_TEST,
            "config": b.config,
            "files": b.files,
            "instructions": b.instructions,
            "ticks": b.ticks,
            "copies": b.copies,
            "rpc": {
                "migrating": b.migrating,
                "merged": b.merged,
                "switching": b.switching,
                "general": b.general,
            },
            "checksum": b.checksum,
            "ratio": {
                "instructions": fraction(b.instructions, base.map(|p| p.instructions)),
                "ticks": fraction(b.ticks, base.map(|p| p.ticks)),
                "copies": fraction(b.copies, base.map(|p| p.copies)),
            },
            "board": board.name(),
            "boot_id": report.begin.boot_id,
        })
    });
    figures.chain(inversions).chain(builds).collect()
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
/// [`qemu::run_captured`], around [`bench_command`] and, if given, QEMU's
/// `-plugin` option).
pub fn run_captured_icount(image: &Image, cmdline: &str, plugin: Option<&str>, timeout: Duration) -> Result<RunOutput> {
    let mut cmd = bench_command(&Launch::harness(image, cmdline));
    if let Some(plugin) = plugin {
        cmd.args(["-plugin", plugin]);
    }
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

/// Where `cargo xtask bench` writes its figures besides the terminal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outputs<'a> {
    /// `--json PATH`: the figures as JSON records.
    pub json: Option<&'a Path>,
    /// `--svg PATH`: the whole-call medians as a bar chart.
    pub svg: Option<&'a Path>,
}

/// One benchmark boot, parsed: the kernel's figures, what the plugin
/// counted for each, and the stage tables built from its histograms.
#[derive(Debug, Clone)]
pub struct Bench {
    /// The kernel's figures.
    pub report: Report,
    /// Per figure, in the report's order.
    pub crossings: Vec<Crossings>,
    /// The per-stage tables of the Null whole-call figures.
    pub stages: Vec<stages::StageTable>,
}

/// Builds the harness image (`release` or not) and the plugin, boots the
/// benchmark with the plugin loaded, and parses both outputs. An error
/// means the run failed (the run's output has been printed).
pub fn boot(board: Board, release: bool, repetitions: Option<u64>) -> Result<Bench> {
    let image = build_image(board, ImageKind::Harness, release)?;
    let library = crossings::build_plugin()?;
    let elf = std::fs::read(&image.elf).with_context(|| format!("reading {}", image.elf.display()))?;
    let symbols = crossings::symbols(&elf)?;
    let vectors = crossings::vector_table(&symbols)?;
    let out = image.elf.with_file_name(format!("{}-crossings.txt", board.raw_name(ImageKind::Harness)));
    let _ = std::fs::remove_file(&out);
    let plugin = crossings::plugin_argument(&library, &out, vectors)?;
    eprintln!(
        "benchmarking {board} ({} harness image; timeout {} s)",
        if release { "release" } else { "debug" },
        TIMEOUT.as_secs()
    );
    let run = run_captured_icount(&image, &cmdline(repetitions), Some(&plugin), TIMEOUT)?;
    let parsed = parse(&run.output);
    let mut problems: Vec<String> = run_failure(&run).into_iter().collect();
    if let Err(errors) = &parsed {
        problems.push(errors.to_string());
    }
    let plugin_output = std::fs::read_to_string(&out)
        .map_err(|e| format!("reading the plugin's output {}: {e}", out.display()))
        .and_then(|text| {
            crossings::parse_output(&text).map_err(|e| format!("the plugin's output {}: {e}", out.display()))
        });
    let paired = match (&parsed, &plugin_output) {
        (Ok(report), Ok(output)) => crossings::pair(&report.measurements, output).map_err(|e| problems.push(e)).ok(),
        (_, Err(e)) => {
            problems.push(e.clone());
            None
        }
        _ => None,
    };
    if !problems.is_empty() {
        eprint!("{run}");
        bail!("the benchmark run failed:\n{}", problems.join("\n"));
    }
    let report = parsed.expect("no problems means it parsed");
    let crossings = paired.expect("no problems means it paired");
    let output = plugin_output.expect("no problems means the plugin's output parsed");
    let stages = stages::tables(&report, &output, &symbols);
    Ok(Bench { report, crossings, stages })
}

/// `cargo xtask bench`: build, boot, parse, print, optionally write JSON and
/// an SVG chart. An error means the run failed (the run's output has been
/// printed).
pub fn run(board: Board, outputs: Outputs<'_>, repetitions: Option<u64>, costs: Option<&Costs>) -> Result<()> {
    install::ensure_qemu_for(&[board])?;
    let Bench { report, crossings, stages } = boot(board, true, repetitions)?;
    print!("{}", render(&report, board));
    print!("{}", crossings::render(&report, &crossings, costs));
    print!("{}", crossings::targets(&report, &crossings));
    print!("{}", stages::render(&stages));
    if let Some(path) = outputs.json {
        let records = json_records(&report, board, Some(&crossings));
        let count = records.as_array().map_or(0, Vec::len);
        let text = serde_json::to_string_pretty(&records)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {count} records to {}", path.display());
    }
    if let Some(path) = outputs.svg {
        std::fs::write(path, crate::svg::bench_chart(&report, board))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote chart to {}", path.display());
    }
    Ok(())
}

/// The kernel scenario that measures the per-crossing costs.
pub const CALIBRATE_SCENARIO: &str = "calibrate";

/// The `CALIBRATE*` lines of a calibrate run, or why there are none.
pub fn calibrate_lines(output: &str) -> Result<Vec<&str>, String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim_end)
        .filter(|l| l.split_whitespace().next().is_some_and(|w| w.starts_with("CALIBRATE")))
        .collect();
    let cost = lines.iter().filter(|l| l.starts_with("CALIBRATE-COST ")).count();
    if cost != 1 || lines.last() != Some(&"CALIBRATE-END") {
        return Err("the calibrate scenario did not print one CALIBRATE-COST line and CALIBRATE-END".to_string());
    }
    if let Some(line) = lines.iter().find_map(|l| l.strip_prefix("CALIBRATE-COST ")) {
        crossings::parse_costs(line).map_err(|why| format!("CALIBRATE-COST is not --cost syntax: {why}"))?;
    }
    Ok(lines)
}

/// `cargo xtask bench --calibrate`: boots the `calibrate` scenario of the
/// release harness image under `-icount shift=0` (as the benchmark) and
/// prints its costs, with the note that under QEMU they are not cycles.
pub fn calibrate(board: Board) -> Result<()> {
    install::ensure_qemu_for(&[board])?;
    let image = build_image(board, ImageKind::Harness, true)?;
    let run = run_captured_icount(&image, &qemu::harness_cmdline(CALIBRATE_SCENARIO), None, TIMEOUT)?;
    let lines = calibrate_lines(&run.output);
    let problems: Vec<String> = run_failure(&run).into_iter().chain(lines.as_ref().err().cloned()).collect();
    if !problems.is_empty() {
        eprint!("{run}");
        bail!("the calibrate run failed:\n{}", problems.join("\n"));
    }
    for line in lines.expect("no problems") {
        println!("{line}");
    }
    println!(
        "\nThis ran in QEMU: its cycle counter counts instructions, so these costs are not cycles.\n\
         On a Raspberry Pi 4, boot the release kernel8-harness.img with `tern.harness=1 tern.scenario=calibrate`\n\
         and paste its CALIBRATE-COST line: cargo xtask bench --cost <that line> (docs/bench.md)."
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A complete, well-formed transcript, with the noise a real boot has
    /// around the protocol lines.
    pub(crate) const GOOD: &str = "\
Tern 0.1.0 on qemu-virt
INFO  memory: 1024 MiB
scenario bench: start
BENCH-BEGIN boot_id=1f2e3d4c board=qemu-virt counter=instructions repetitions=1000 warmup=100
BENCH path=switching mode=protected test=null scope=kernel unit=instructions median=480 min=470 samples=1000
BENCH path=switching mode=protected test=null scope=whole unit=instructions median=600 min=590 samples=1000
BENCH path=migrating-protected mode=protected test=null scope=kernel unit=instructions median=110 min=108 samples=1000
BENCH path=migrating-protected mode=protected test=null scope=whole unit=instructions median=180 min=179 samples=1000
BENCH path=switching mode=protected test=32in scope=whole unit=instructions median=650 min=640 samples=1000
BENCH path=migrating-protected mode=protected test=32in scope=whole unit=instructions median=0 min=0 samples=1000
BENCH path=floor-call mode=protected test=null scope=whole unit=instructions median=12 min=12 samples=1000
BENCH path=floor-svc mode=protected test=null scope=whole unit=instructions median=9 min=9 samples=1000
BENCH path=floor-svc mode=protected test=null scope=kernel unit=instructions median=3 min=3 samples=1000
BENCH-FLIP domain=bench.pool mode=merged
BENCH path=migrating-merged mode=server-merged test=null scope=kernel unit=instructions median=40 min=40 samples=1000
BENCH path=migrating-merged mode=server-merged test=null scope=whole unit=instructions median=72 min=70 samples=1000
BENCH path=migrating-merged mode=server-merged test=32kin-lent scope=whole unit=instructions median=86 min=85 samples=1000
BENCH path=floor-entry mode=server-merged test=null scope=kernel unit=instructions median=5 min=5 samples=1000
BENCH-FLIP domain=bench.client mode=merged
BENCH path=migrating-merged mode=both-merged test=null scope=whole unit=instructions median=24 min=24 samples=1000
BENCH path=migrating-merged mode=both-merged test=32kin-lent scope=whole unit=instructions median=28 min=28 samples=1000
BENCH path=migrating-odd mode=protected test=null scope=whole unit=instructions median=40 min=40 samples=1000
BENCH-COPIES path=migrating-protected mode=protected test=32kin copies=1
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=client-entry instructions=14
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=translate instructions=9
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=checks instructions=6
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=switch instructions=20
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=copy instructions=2
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=stats instructions=4
BENCH-STAGE path=migrating-protected mode=protected test=null side=call stage=server-exit instructions=8
BENCH-STAGE path=migrating-protected mode=protected test=null side=return stage=server-entry instructions=12
BENCH-STAGE path=migrating-protected mode=protected test=null side=return stage=translate instructions=5
BENCH-STAGE path=migrating-protected mode=protected test=null side=return stage=switch instructions=18
BENCH-STAGE path=migrating-protected mode=protected test=null side=return stage=stats instructions=3
BENCH-STAGE path=migrating-protected mode=protected test=null side=return stage=client-exit instructions=9
BENCH-STAGE path=migrating-merged mode=server-merged test=null side=call stage=client-entry instructions=10
BENCH-STAGE path=migrating-merged mode=server-merged test=null side=call stage=translate instructions=9
BENCH-STAGE path=migrating-merged mode=server-merged test=null side=call stage=switch instructions=12
BENCH-STAGE path=migrating-merged mode=server-merged test=null side=return stage=client-exit instructions=6
BENCH-MEMORY thread=512 activation=96 kernel_stack=16384
BENCH-INVERSION-SETUP calls=40 work=900 medium=9000 low_clients=3 server_threads=1 pool=6 priority_high=24 \
priority_medium=20 priority_low=4 priority_server=16 unit=cycles
BENCH-INVERSION path=migrating-protected load=unloaded unit=cycles median=1000 min=1000 max=1000 calls=40
BENCH-INVERSION path=migrating-protected load=low unit=cycles median=1000 min=1000 max=1000 calls=40
BENCH-INVERSION path=migrating-protected load=low+medium unit=cycles median=1000 min=990 max=1050 calls=40
BENCH-INVERSION path=switching load=unloaded unit=cycles median=1100 min=1100 max=1150 calls=40
BENCH-INVERSION path=switching load=low unit=cycles median=1650 min=1100 max=2200 calls=40
BENCH-END
scenario bench: PASS
";

    pub(crate) fn good() -> Report {
        parse(GOOD).unwrap()
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text).unwrap_err().0
    }

    const BEGIN: &str = "BENCH-BEGIN boot_id=ab board=rpi4 counter=cycles repetitions=5 warmup=1\n";

    /// A `BENCH` line in instructions with min = median and one sample.
    fn figure_line(path: &str, mode: &str, test: &str, scope: &str, median: u64) -> String {
        format!(
            "BENCH path={path} mode={mode} test={test} scope={scope} unit=instructions median={median} min={median} \
             samples=1\n"
        )
    }

    /// A transcript of `BEGIN`, `lines` and `BENCH-END`.
    fn transcript(lines: &[String]) -> String {
        format!("{BEGIN}{}BENCH-END\n", lines.concat())
    }

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
        assert_eq!(r.measurements.len(), 16);
        assert_eq!(
            r.get(MIGRATING_PROTECTED, PROTECTED, "null", "whole"),
            Some(&Measurement {
                path: "migrating-protected".into(),
                mode: "protected".into(),
                test: "null".into(),
                scope: "whole".into(),
                unit: "instructions".into(),
                median: 180,
                min: 179,
                samples: 1000
            })
        );
        assert_eq!(r.get(MIGRATING_MERGED, SERVER_MERGED, "null", "whole").map(|m| m.median), Some(72));
        assert_eq!(r.get(MIGRATING_MERGED, BOTH_MERGED, "null", "whole").map(|m| m.median), Some(24));
        assert_eq!(r.get(MIGRATING_PROTECTED, SERVER_MERGED, "null", "whole"), None);
        assert_eq!(r.copies_of(MIGRATING_PROTECTED, PROTECTED, "32kin"), Some(1));
        assert_eq!(r.copies_of(MIGRATING_PROTECTED, BOTH_MERGED, "32kin"), None);
        assert_eq!(r.memory, Some(Memory { thread: 512, activation: 96, kernel_stack: 16384 }));
        assert_eq!(
            r.series(),
            [
                ("switching", "protected"),
                ("migrating-protected", "protected"),
                ("floor-call", "protected"),
                ("floor-svc", "protected"),
                ("migrating-merged", "server-merged"),
                ("floor-entry", "server-merged"),
                ("migrating-merged", "both-merged"),
                ("migrating-odd", "protected"),
            ]
        );
        assert_eq!(
            r.flips,
            [
                Flip { domain: "bench.pool".into(), mode: "merged".into() },
                Flip { domain: "bench.client".into(), mode: "merged".into() }
            ]
        );
        assert_eq!(r.stages.len(), 16);
        assert_eq!(r.stage(MIGRATING_PROTECTED, PROTECTED, "return", "switch"), Some(18));
        assert_eq!(r.stage(MIGRATING_PROTECTED, PROTECTED, "return", "copy"), None);
        assert_eq!(r.stage_series(), [("migrating-protected", "protected"), ("migrating-merged", "server-merged")]);
        assert!(r.unrecognised.is_empty());
    }

    #[test]
    fn ignores_lines_that_are_not_the_protocol() {
        let text = format!(
            "{BEGIN}BENCHMARK starting\nINFO  BENCH path=x\n  BENCH-END indented\nbench: BENCH-END\n\
             BENCH-END\r\n"
        );
        let r = parse(&text).unwrap();
        assert!(r.measurements.is_empty() && r.flips.is_empty() && r.stages.is_empty());
    }

    #[test]
    fn keeps_unknown_kinds_verbatim() {
        let text = format!("{BEGIN}BENCH-TRACE name=port-translation median=12\nBENCH-END\n");
        assert_eq!(parse(&text).unwrap().unrecognised, ["BENCH-TRACE name=port-translation median=12"]);
    }

    #[test]
    fn missing_end_and_begin_are_errors() {
        let cut = GOOD.split("BENCH-END").next().unwrap();
        let p = problems(cut);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("no BENCH-END"), "{p:?}");

        let p = problems("Tern 0.1.0\nscenario bench: FAIL (no such scenario; known: banner)\n");
        assert_eq!(p, ["no BENCH-BEGIN line: the benchmark did not start"]);

        let p = problems(&figure_line("switching", "protected", "null", "whole", 1));
        assert!(p[0].starts_with("line 1: before BENCH-BEGIN"), "{p:?}");
        assert!(p[1].contains("no BENCH-BEGIN"), "{p:?}");

        let p = problems("BENCH-FLIP domain=a mode=merged\n");
        assert!(p[0].starts_with("line 1: before BENCH-BEGIN"), "{p:?}");
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let m = "BENCH path=switching mode=protected";
        let bad = [
            (format!("{m} test=null scope=whole unit=instructions median=1 min=1"), "`samples` is missing"),
            (format!("{m} test=64in scope=whole unit=instructions median=1 min=1 samples=1"), "test=64in"),
            (format!("{m} test=null scope=user unit=instructions median=1 min=1 samples=1"), "scope=user"),
            (format!("{m} test=null scope=whole unit=ns median=1 min=1 samples=1"), "unit=ns"),
            (format!("{m} test=null scope=whole unit=instructions median=1.5 min=1 samples=1"), "decimal"),
            (format!("{m} test=null scope=whole unit=instructions median=+1 min=1 samples=1"), "decimal"),
            (format!("{m} test=null scope=whole unit=instructions median=-1 min=1 samples=1"), "decimal"),
            (
                format!("{m} test=null scope=whole unit=instructions median=99999999999999999999 min=1 samples=1"),
                "out of range",
            ),
            (format!("{m} test=null scope=whole unit=instructions median=5 min=6 samples=1"), "above median"),
            (format!("{m} test=null scope=whole unit=instructions median=5 min=5 samples=0"), "samples=0"),
            (format!("{m} test=null scope=whole unit=instructions median=5 min=5 samples=1 p90=7"), "p90"),
            ("BENCH path=switching path=x test=null scope=whole".into(), "twice"),
            (format!("{m} test=null scope=whole oops"), "not key=value"),
            ("BENCH path= test=null".into(), "empty"),
            ("BENCH-COPIES path=migrating mode=protected test=32kin copies=one".into(), "decimal"),
            ("BENCH-MEMORY thread=1 activation=2".into(), "kernel_stack"),
            ("BENCH-END now".into(), "not key=value"),
            ("BENCH-FLIP domain=bench.pool mode=fused".into(), "`mode=fused`: expected one of protected, merged"),
            ("BENCH-FLIP mode=merged".into(), "`domain` is missing"),
            ("BENCH-FLIP domain=a mode=merged when=3".into(), "unknown field(s) when"),
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
    fn mode_is_required_and_validated() {
        let bad = [
            (
                "BENCH path=switching test=null scope=whole unit=instructions median=1 min=1 samples=1",
                "`mode` is missing",
            ),
            (
                "BENCH path=switching mode=merged test=null scope=whole unit=instructions median=1 min=1 samples=1",
                "`mode=merged`: expected one of protected, server-merged, both-merged",
            ),
            ("BENCH-COPIES path=migrating-protected test=32kin copies=1", "`mode` is missing"),
            ("BENCH-COPIES path=migrating-protected mode=fast test=32kin copies=1", "mode=fast"),
            ("BENCH-STAGE path=p test=null side=call stage=copy instructions=1", "`mode` is missing"),
            ("BENCH-STAGE path=p mode=Protected test=null side=call stage=copy instructions=1", "mode=Protected"),
        ];
        for (line, needle) in bad {
            let p = problems(&format!("{BEGIN}{line}\nBENCH-END\n"));
            assert_eq!(p.len(), 1, "{line}: {p:?}");
            assert!(p[0].starts_with("line 2: ") && p[0].contains(needle), "{line}: {p:?}");
        }
        for mode in ["protected", "server-merged", "both-merged"] {
            let r = parse(&transcript(&[figure_line("x", mode, "null", "whole", 7)])).unwrap();
            assert_eq!(r.measurements[0].mode, mode);
        }
    }

    #[test]
    fn accepts_the_lent_test() {
        let line = "BENCH path=migrating-merged mode=both-merged test=32kin-lent scope=whole unit=instructions \
                    median=28 min=27 samples=3";
        let Ok(Some(Line::Measurement(m))) = parse_line(line) else { panic!("{line} did not parse") };
        assert_eq!((m.test.as_str(), m.median, m.min), ("32kin-lent", 28, 27));
        assert_eq!(test_label("32kin-lent"), "32K Lent");
        let copies = parse_line("BENCH-COPIES path=migrating-merged mode=both-merged test=32kin-lent copies=0");
        assert!(matches!(copies, Ok(Some(Line::Copies(Copies { copies: 0, .. })))), "{copies:?}");
        assert!(
            parse_line(
                "BENCH path=a mode=protected test=32kin-lend scope=whole unit=instructions median=1 \
                            min=1 samples=1"
            )
            .is_err()
        );
    }

    #[test]
    fn parses_stage_lines() {
        let line = "BENCH-STAGE path=migrating-merged mode=both-merged test=null side=return stage=client-exit \
                    instructions=7";
        assert_eq!(
            parse_line(line),
            Ok(Some(Line::Stage(Stage {
                path: "migrating-merged".into(),
                mode: "both-merged".into(),
                side: "return".into(),
                stage: "client-exit".into(),
                instructions: 7
            })))
        );
        let s = "BENCH-STAGE path=p mode=protected";
        let bad = [
            (format!("{s} test=32in side=call stage=copy instructions=1"), "`test=32in`: expected one of null"),
            (format!("{s} test=null side=reply stage=copy instructions=1"), "side=reply"),
            (format!("{s} test=null side=call stage=lookup instructions=1"), "stage=lookup"),
            (format!("{s} test=null side=call stage=copy instructions=x"), "decimal"),
            (format!("{s} test=null side=call stage=copy"), "`instructions` is missing"),
            (format!("{s} side=call stage=copy instructions=1"), "`test` is missing"),
            (format!("{s} test=null side=call stage=copy instructions=1 median=1"), "unknown field(s) median"),
        ];
        for (line, needle) in bad {
            let p = problems(&format!("{BEGIN}{line}\nBENCH-END\n"));
            assert_eq!(p.len(), 1, "{line}: {p:?}");
            assert!(p[0].starts_with("line 2: ") && p[0].contains(needle), "{line}: {p:?}");
        }
    }

    #[test]
    fn duplicate_stages_are_errors() {
        let stage = |mode: &str, side: &str, name: &str, n: u64| {
            format!(
                "BENCH-STAGE path=migrating-merged mode={mode} test=null side={side} stage={name} instructions={n}\n"
            )
        };
        // The same (side, stage) in another mode or on the other side is new.
        let fine = [
            stage("server-merged", "call", "copy", 1),
            stage("both-merged", "call", "copy", 1),
            stage("server-merged", "return", "copy", 1),
            stage("server-merged", "call", "stats", 1),
        ];
        assert_eq!(parse(&transcript(&fine)).unwrap().stages.len(), 4);
        // Twice in the same (path, mode): a problem, even with another count.
        let mut twice = fine.to_vec();
        twice.push(stage("server-merged", "call", "copy", 2));
        let p = problems(&transcript(&twice));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("line 6: this stage and side were already reported"), "{p:?}");
    }

    #[test]
    fn sequence_errors_are_all_reported() {
        let m = figure_line("migrating-protected", "protected", "null", "whole", 5);
        let other_mode = figure_line("migrating-protected", "server-merged", "null", "whole", 5);
        let text = format!(
            "{BEGIN}{m}{m}{BEGIN}BENCH-MEMORY thread=1 activation=1 kernel_stack=1\n\
             BENCH-MEMORY thread=1 activation=1 kernel_stack=1\nBENCH-COPIES path=a mode=protected test=null copies=1\n\
             BENCH-COPIES path=a mode=protected test=null copies=2\n{other_mode}\
             BENCH-COPIES path=a mode=both-merged test=null copies=2\nBENCH-END\n{m}BENCH-FLIP domain=a mode=merged\n"
        );
        let p = problems(&text);
        let expect = [
            "line 3: this path, mode, test and scope",
            "line 4: a second BENCH-BEGIN",
            "line 6: a second BENCH-MEMORY",
            "line 8: copies for this path, mode and test",
            "line 12: after BENCH-END",
            "line 13: after BENCH-END",
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

    /// The figures of the first row starting with `label` after each of
    /// `markers` in turn.
    fn row<'a>(text: &'a str, markers: &[&str], label: &str) -> Vec<&'a str> {
        let mut rest = text;
        for marker in markers {
            let at = rest.find(marker).unwrap_or_else(|| panic!("{marker:?} missing from\n{text}"));
            rest = &rest[at + marker.len()..];
        }
        let line = rest.lines().map(str::trim_start).find(|l| l.starts_with(label)).unwrap();
        line[label.len()..].split_whitespace().collect()
    }

    #[test]
    fn renders_medians_minima_and_ratios() {
        let text = render(&good(), Board::Virt);
        let heading = row(&text, &["Median", "kernel only (EL1), instructions"], "test");
        assert_eq!(heading, ["switching", "protected", "p→merged", "m→merged", "sw÷mig", "prot÷p→m", "prot÷m→m"]);
        // switching, protected, p→merged, m→merged, then the three ratios.
        let median_kernel = ["Median", "kernel only (EL1)"];
        let median_whole = ["Median", "whole call (EL0+EL1)"];
        assert_eq!(row(&text, &median_kernel, "Null"), ["480", "110", "40", "—", "4.36", "2.75", "n/a"]);
        assert_eq!(row(&text, &median_whole, "Null"), ["600", "180", "72", "24", "3.33", "2.50", "7.50"]);
        assert_eq!(row(&text, &["Minimum", "whole call"], "Null"), ["590", "179", "70", "24", "3.30", "2.56", "7.46"]);
        // Missing figures; a zero migrating median; the lent test's row.
        assert_eq!(row(&text, &median_kernel, "32 In"), ["—", "—", "—", "—", "n/a", "n/a", "n/a"]);
        assert_eq!(row(&text, &median_whole, "32 In"), ["650", "0", "—", "—", "n/a", "n/a", "n/a"]);
        assert_eq!(row(&text, &median_whole, "32K In"), ["—", "—", "—", "—", "n/a", "n/a", "n/a"]);
        assert_eq!(row(&text, &median_whole, "32K Lent"), ["—", "—", "86", "28", "n/a", "n/a", "n/a"]);
        // No cycles scope: no cycles block.
        assert!(!text.contains("PMCCNTR_EL0)"), "{text}");
        // Floors, with their mode, in the floors' order; the unknown path.
        assert_eq!(row(&text, &["Floors"], "floor-call"), ["protected", "Null", "—", "—", "12", "12"]);
        assert_eq!(row(&text, &["Floors"], "floor-svc"), ["protected", "Null", "3", "3", "9", "9"]);
        assert_eq!(row(&text, &["Floors"], "floor-entry"), ["server-merged", "Null", "5", "5", "—", "—"]);
        let floors = &text[text.find("Floors").unwrap()..];
        assert!(floors.find("floor-svc").unwrap() < floors.find("floor-entry").unwrap(), "{text}");
        assert_eq!(row(&text, &["Other paths"], "migrating-odd"), ["protected", "Null", "40", "40"]);
        for needle in [
            "board virt (kernel says qemu-virt), boot 1f2e3d4c",
            "1000 repetitions after 100 warm-up; 1000 samples per figure",
            "p→merged = migrating-merged, protected client → merged server",
            "m→merged = migrating-merged, merged client → merged server",
            "prot÷p→m = protected ÷ p→merged",
            "copies: migrating-protected (protected) 32K In: 1",
            "memory: 512 bytes per thread, 96 bytes per activation (stacks excluded); kernel stack 16384 bytes",
            "mode changes in this boot: bench.pool→merged, bench.client→merged\n",
            "instructions retired",
            "-icount shift=0, not cycles",
            "charges nothing for exception entry or return",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
        assert_eq!(text.matches("mode changes in this boot").count(), 1, "{text}");
    }

    #[test]
    fn renders_cycles_when_reported() {
        let text = format!(
            "{BEGIN}BENCH path=switching mode=protected test=null scope=cycles unit=cycles median=900 min=850 \
             samples=5\nBENCH path=migrating-protected mode=protected test=null scope=cycles unit=cycles median=300 \
             min=290 samples=5\nBENCH-END\n"
        );
        let text = render(&parse(&text).unwrap(), Board::Rpi4);
        assert_eq!(
            row(&text, &["Median", "cycles (PMCCNTR_EL0), cycles"], "Null"),
            ["900", "300", "—", "—", "3.00", "n/a", "n/a"]
        );
        assert_eq!(row(&text, &["Median", "whole call"], "Null"), ["—", "—", "—", "—", "n/a", "n/a", "n/a"]);
        assert!(text.contains("cycles mean something only on a real Raspberry Pi"), "{text}");
        assert!(text.contains("memory: not reported"), "{text}");
        assert!(text.contains("mode changes in this boot: none reported"), "{text}");
        assert!(!text.contains("by stage"), "{text}");
    }

    #[test]
    fn every_stage_has_exactly_one_row() {
        for stage in STAGES {
            let rows = STAGE_ROWS.iter().filter(|(_, stages)| stages.contains(&stage)).count();
            assert_eq!(rows, 1, "{stage}");
        }
        let named: usize = STAGE_ROWS.iter().map(|(_, stages)| stages.len()).sum();
        assert_eq!(named, STAGES.len());
    }

    #[test]
    fn stage_table_sums_and_cross_check() {
        let r = good();
        let rows = stage_rows(&r, MIGRATING_PROTECTED, PROTECTED);
        let cells: Vec<_> = rows.iter().map(|r| (r.label, r.call, r.ret, r.total())).collect();
        assert_eq!(
            cells,
            [
                ("kernel entry/exit, client side", Some(14), Some(9), Some(23)),
                ("kernel entry/exit, server side", Some(8), Some(12), Some(20)),
                ("port translation", Some(9), Some(5), Some(14)),
                ("argument checks", Some(6), None, Some(6)),
                ("activation switch", Some(20), Some(18), Some(38)),
                ("message copy", Some(2), None, Some(2)),
                ("statistics", Some(4), Some(3), Some(7)),
                ("sum", Some(63), Some(47), Some(110)),
            ]
        );
        assert_eq!(
            stage_check(&r, MIGRATING_PROTECTED, PROTECTED),
            "stages sum to 110: matches the PMU's kernel count (110)"
        );
        assert_eq!(
            stage_check(&r, MIGRATING_MERGED, SERVER_MERGED),
            "stages sum to 37: differs from the PMU's kernel count (40) by 3 (fewer in the stages)"
        );
        // Nothing to compare with: said so, not guessed.
        assert_eq!(
            stage_check(&r, MIGRATING_MERGED, BOTH_MERGED),
            "stages sum to 0; no kernel-only Null figure in instructions to compare with"
        );

        let text = render(&r, Board::Virt);
        let protected = ["by stage", "migrating-protected, protected client → protected server"];
        assert_eq!(row(&text, &protected, "stage"), ["call", "return", "total"]);
        assert_eq!(row(&text, &protected, "kernel entry/exit, client side"), ["14", "9", "23"]);
        assert_eq!(row(&text, &protected, "message copy"), ["2", "—", "2"]);
        assert_eq!(row(&text, &protected, "sum"), ["63", "47", "110"]);
        let merged = ["by stage", "migrating-merged, protected client → merged server"];
        assert_eq!(row(&text, &merged, "kernel entry/exit, server side"), ["—", "—", "—"]);
        assert_eq!(row(&text, &merged, "sum"), ["31", "6", "37"]);
        assert!(text.contains("Null migrating call by stage (the paper's Table 1)"), "{text}");
        assert!(text.contains("stages sum to 110: matches the PMU's kernel count (110)"), "{text}");
        assert!(text.contains("differs from the PMU's kernel count (40) by 3"), "{text}");
    }

    #[test]
    fn stage_check_counts_more_in_the_stages() {
        let text = transcript(&[
            figure_line("m", "protected", "null", "kernel", 10),
            "BENCH-STAGE path=m mode=protected test=null side=call stage=copy instructions=12\n".to_string(),
        ]);
        assert_eq!(
            stage_check(&parse(&text).unwrap(), "m", "protected"),
            "stages sum to 12: differs from the PMU's kernel count (10) by 2 (more in the stages)"
        );
    }

    /// A transcript with every figure the targets read.
    #[allow(clippy::too_many_arguments)]
    fn for_targets(
        s_whole: u64,
        m_whole: u64,
        m_kernel: u64,
        copies: u64,
        to_merged: u64,
        to_merged_lent: u64,
        both: u64,
        both_lent: u64,
        flip: bool,
        inversion_max: u64,
    ) -> String {
        let mut lines = vec![
            figure_line(SWITCHING, PROTECTED, "null", "whole", s_whole),
            figure_line(MIGRATING_PROTECTED, PROTECTED, "null", "whole", m_whole),
            figure_line(MIGRATING_PROTECTED, PROTECTED, "null", "kernel", m_kernel),
            format!("BENCH-COPIES path=migrating-protected mode=protected test=32kin copies={copies}\n"),
            figure_line(MIGRATING_MERGED, SERVER_MERGED, "null", "whole", to_merged),
            figure_line(MIGRATING_MERGED, SERVER_MERGED, "32kin-lent", "whole", to_merged_lent),
            figure_line(MIGRATING_MERGED, BOTH_MERGED, "null", "whole", both),
            figure_line(MIGRATING_MERGED, BOTH_MERGED, "32kin-lent", "whole", both_lent),
            inversion_row(MIGRATING_PROTECTED, "unloaded", 1000, 1000),
            inversion_row(MIGRATING_PROTECTED, "low", 1000, inversion_max),
        ];
        if flip {
            lines.insert(4, "BENCH-FLIP domain=bench.pool mode=merged\n".to_string());
        }
        transcript(&lines)
    }

    /// A `BENCH-INVERSION` line in cycles over 5 calls, min = median.
    fn inversion_row(path: &str, load: &str, median: u64, max: u64) -> String {
        format!("BENCH-INVERSION path={path} load={load} unit=cycles median={median} min={median} max={max} calls=5\n")
    }

    fn verdicts(text: &str) -> Vec<Verdict> {
        targets(&parse(text).unwrap()).iter().map(|t| t.verdict).collect()
    }

    #[test]
    fn lean_targets_take_the_best_path_and_name_it() {
        use Verdict::*;
        let text = transcript(&[
            figure_line("bound-words", BOTH_MERGED, "null", "whole", 40),
            figure_line("bound-memory", BOTH_MERGED, "null", "whole", 41),
            figure_line(MIGRATING_MERGED, SERVER_MERGED, "null", "whole", 91),
            figure_line("bound-words", SERVER_MERGED, "null", "whole", 95),
            figure_line(MIGRATING_PROTECTED, PROTECTED, "null", "whole", 150),
            figure_line(MIGRATING_PROTECTED, PROTECTED, "null", "kernel", 111),
            figure_line("bound-memory", PROTECTED, "null", "kernel", 110),
            figure_line(SWITCHING, PROTECTED, "null", "whole", 377),
            figure_line(MIGRATING_PROTECTED, PROTECTED, "32kin", "whole", 5000),
            figure_line(MIGRATING_MERGED, SERVER_MERGED, "32kin", "whole", 4000),
        ]);
        let t = lean_targets(&parse(&text).unwrap());
        let actual: Vec<&str> = t.iter().map(|t| t.actual.as_str()).collect();
        assert_eq!(
            actual,
            [
                "40 (bound-words)",
                "91 (migrating-merged)",
                "150 (migrating-protected)",
                "110 (bound-memory)",
                "377",
                "377",
                "not reported"
            ]
        );
        assert_eq!(t.iter().map(|t| t.verdict).collect::<Vec<_>>(), [Met, Missed, Met, Met, Met, Missed, Unknown]);
    }

    #[test]
    fn targets_are_computed_from_the_figures() {
        use Verdict::*;
        let t = targets(&good());
        assert_eq!(t.iter().map(|t| t.verdict).collect::<Vec<_>>(), [Met; 11]);
        let actual: Vec<&str> = t.iter().map(|t| t.actual.as_str()).collect();
        assert_eq!(
            actual,
            ["180", "110", "600", "3.33", "copies=1", "24", "0.40", "1.19", "1.17", "2 mode changes", "1.05"]
        );

        // Exactly on the limits is met; one over is missed.
        assert_eq!(verdicts(&for_targets(600, 200, 120, 1, 80, 96, 30, 36, true, 1100)), [Met; 11]);
        assert_eq!(
            verdicts(&for_targets(621, 201, 121, 2, 81, 98, 31, 38, false, 1101)),
            [Missed, Missed, Missed, Met, Missed, Missed, Missed, Missed, Missed, Missed, Missed]
        );
        // 2999 / 1000 = 2.999 prints as "3.00" but is below 3.0: missed.
        let t = targets(&parse(&for_targets(2999, 1000, 100, 1, 80, 96, 30, 36, true, 1000)).unwrap());
        assert_eq!((t[3].actual.as_str(), t[3].verdict), ("3.00", Missed));
        // 401 / 1000 prints as "0.40" but is above 0.4: missed.
        let t = targets(&parse(&for_targets(3000, 1000, 100, 1, 401, 481, 30, 36, true, 1000)).unwrap());
        assert_eq!((t[6].actual.as_str(), t[6].verdict), ("0.40", Missed));
        assert_eq!(t[7].verdict, Met);

        // Nothing reported: unknown, never met; no flip is a miss.
        let t = targets(&parse(&transcript(&[])).unwrap());
        let mut expect = [Unknown; 11];
        expect[9] = Missed;
        assert_eq!(t.iter().map(|t| t.verdict).collect::<Vec<_>>(), expect, "{t:?}");
        assert_eq!(t[9].actual, "0 mode changes");
        assert_eq!(t[10].actual, "not reported");
        // A zero divisor cannot be judged.
        let v = verdicts(&for_targets(600, 0, 100, 1, 0, 0, 0, 0, true, 1000));
        assert_eq!((v[3], v[6], v[7], v[8]), (Unknown, Unknown, Unknown, Unknown));
        // Partial figures: only what is there is judged.
        let text = transcript(&[
            figure_line(MIGRATING_MERGED, BOTH_MERGED, "null", "whole", 20),
            figure_line(MIGRATING_MERGED, SERVER_MERGED, "32kin-lent", "whole", 20),
        ]);
        let v = verdicts(&text);
        assert_eq!((v[5], v[6], v[7], v[8]), (Met, Unknown, Unknown, Unknown));
        // Cycles are not instructions: the instruction targets do not apply.
        let text = transcript(&[
            "BENCH path=migrating-protected mode=protected test=null scope=whole unit=cycles median=10 min=10 \
             samples=1\n"
                .to_string(),
        ]);
        assert_eq!(verdicts(&text)[0], Unknown);
        // Mode matters: a protected figure under another mode is not read.
        let text = transcript(&[figure_line(MIGRATING_PROTECTED, SERVER_MERGED, "null", "whole", 10)]);
        assert_eq!(verdicts(&text)[0], Unknown);
    }

    #[test]
    fn renders_targets() {
        let text = render(&parse(&for_targets(621, 201, 121, 2, 81, 98, 31, 38, false, 1101)).unwrap(), Board::Virt);
        for needle in [
            "✗ merged null call (merged client → merged server), whole ≤ 30 instructions",
            "✗ protected→merged ÷ protected→protected, Null whole ≤ 0.4",
            "✗ 32K lent to a merged server within 1.2× of Null (protected client)",
            "✗ 32K lent to a merged server within 1.2× of Null (merged client)",
            "✗ one boot: every figure after one BENCH-BEGIN, with a mode change",
            "✓ switching ÷ migrating, Null whole call ≥ 3.0",
            "✗ migrating: no priority inversion, every loaded call ≤ 1.1× the unloaded median",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn lists_mode_changes_in_order() {
        let text = transcript(&[
            "BENCH-FLIP domain=bench.client mode=merged\n".to_string(),
            "BENCH-FLIP domain=bench.pool mode=merged\n".to_string(),
            "BENCH-FLIP domain=bench.client mode=protected\n".to_string(),
        ]);
        let r = parse(&text).unwrap();
        assert_eq!(
            flips_text(&r),
            "mode changes in this boot: bench.client→merged, bench.pool→merged, bench.client→protected"
        );
        assert_eq!(flips_text(&parse(&transcript(&[])).unwrap()), "mode changes in this boot: none reported");
    }

    #[test]
    fn json_has_one_record_per_figure() {
        let records = json_records(&good(), Board::Virt, None);
        let records = records.as_array().unwrap();
        assert_eq!(records.len(), 16 + 5);
        assert_eq!(
            records[3],
            json!({"path": "migrating-protected", "mode": "protected", "test": "null", "scope": "whole",
                   "median": 180, "min": 179, "unit": "instructions", "samples": 1000, "board": "virt",
                   "boot_id": "1f2e3d4c"})
        );
        assert_eq!(records[14]["mode"], "both-merged");
        assert_eq!(records[14]["test"], "32kin-lent");
        assert!(records.iter().all(|r| r["boot_id"] == "1f2e3d4c" && r["board"] == "virt"));
        let modes: Vec<&str> = records.iter().filter_map(|r| r["mode"].as_str()).collect();
        assert_eq!(modes.len(), 21);
        // The priority-inversion rows follow the figures, in the kernel's order.
        assert_eq!(
            records[18],
            json!({"path": "migrating-protected", "mode": "protected", "test": "priority-inversion",
                   "load": "low+medium", "scope": "cycles", "median": 1000, "min": 990, "max": 1050,
                   "unit": "cycles", "samples": 40, "board": "virt", "boot_id": "1f2e3d4c"})
        );
        assert!(records[..16].iter().all(|r| r["test"] != INVERSION_TEST && r.get("load").is_none()));
        assert!(records[16..].iter().all(|r| r["test"] == INVERSION_TEST));
    }

    #[test]
    fn parses_inversion_lines() {
        let r = good();
        assert_eq!(
            r.inversion_setup,
            Some(InversionSetup {
                calls: 40,
                work: 900,
                medium: 9000,
                low_clients: 3,
                server_threads: 1,
                pool: 6,
                priority_high: 24,
                priority_medium: 20,
                priority_low: 4,
                priority_server: 16,
                unit: "cycles".into(),
            })
        );
        assert_eq!(r.inversions.len(), 5);
        assert_eq!(
            r.inversion(SWITCHING, "low"),
            Some(&Inversion {
                path: "switching".into(),
                load: "low".into(),
                unit: "cycles".into(),
                median: 1650,
                min: 1100,
                max: 2200,
                calls: 40
            })
        );
        assert_eq!(r.inversion(SWITCHING, "low+medium"), None);
        assert!(r.unrecognised.is_empty());
        // Without the experiment's lines, a transcript is still complete.
        let r = parse(&transcript(&[])).unwrap();
        assert!(r.inversion_setup.is_none() && r.inversions.is_empty());
    }

    #[test]
    fn malformed_inversion_lines_are_errors() {
        let i = "BENCH-INVERSION path=switching load=low unit=cycles";
        let setup = "BENCH-INVERSION-SETUP calls=1 work=2 medium=3 low_clients=4 server_threads=1 pool=6 \
                     priority_high=24 priority_medium=20 priority_low=4 priority_server=16";
        let bad = [
            (format!("{i} median=2 min=1 max=3"), "`calls` is missing"),
            (format!("{i} median=2 min=3 max=3 calls=1"), "min 3, median 2 and max 3 are not in order"),
            (format!("{i} median=4 min=1 max=3 calls=1"), "not in order"),
            (format!("{i} median=2 min=1 max=3 calls=0"), "calls=0"),
            (format!("{i} median=2 min=1 max=x calls=1"), "decimal"),
            (format!("{i} median=2 min=1 max=3 calls=1 p99=3"), "unknown field(s) p99"),
            (
                "BENCH-INVERSION path=migrating load=low unit=cycles median=1 min=1 max=1 calls=1".into(),
                "path=migrating",
            ),
            ("BENCH-INVERSION path=switching load=high unit=cycles median=1 min=1 max=1 calls=1".into(), "load=high"),
            ("BENCH-INVERSION path=switching load=low unit=ns median=1 min=1 max=1 calls=1".into(), "unit=ns"),
            (format!("{setup} unit=cycles extra=1"), "unknown field(s) extra"),
            (setup.to_string(), "`unit` is missing"),
            (setup.replace("pool=6", "pool=six") + " unit=cycles", "decimal"),
        ];
        for (line, needle) in bad {
            let p = problems(&format!("{BEGIN}{line}\nBENCH-END\n"));
            assert_eq!(p.len(), 1, "{line}: {p:?}");
            assert!(p[0].starts_with("line 2: ") && p[0].contains(needle), "{line}: {p:?}");
        }
        // The same (path, load) twice, a second set-up line: problems; the
        // same load on the other path is new.
        let text = transcript(&[
            format!("{setup} unit=cycles\n"),
            inversion_row(SWITCHING, "low", 5, 6),
            inversion_row(MIGRATING_PROTECTED, "low", 5, 6),
            inversion_row(SWITCHING, "low", 5, 7),
            format!("{setup} unit=cycles\n"),
        ]);
        let p = problems(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("line 5: this path and load were already reported"), "{p:?}");
        assert!(p[1].starts_with("line 6: a second BENCH-INVERSION-SETUP"), "{p:?}");
    }

    #[test]
    fn renders_the_inversion_table() {
        let text = render(&good(), Board::Virt);
        let marker = ["Priority inversion"];
        assert_eq!(row(&text, &marker, "load"), ["median", "max", "÷unloaded", "median", "max", "÷unloaded"]);
        assert_eq!(row(&text, &marker, "unloaded"), ["1000", "1000", "1.00", "1100", "1150", "1.00"]);
        assert_eq!(row(&text, &marker, "low "), ["1000", "1000", "1.00", "1650", "2200", "1.50"]);
        assert_eq!(row(&text, &marker, "low+medium"), ["1000", "1050", "1.00", "—", "—", "n/a"]);
        for needle in [
            "cycles, per call as the client saw it; median and maximum of 40 calls",
            "high-priority client: priority 24, one call after each timer tick; work per request: 900 cycles",
            "switching server: 1 thread(s) at priority 16; migrating server: a pool of 6 activations",
            "low = 3 low-priority clients (priority 4)",
            "medium-priority thread (priority 20; 9000 cycles of computing at every tick, no calls)",
            "one cycle is one instruction",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
        let heading = text.lines().find(|l| l.contains("migrating") && l.contains("switching") && !l.contains('='));
        assert!(heading.is_some(), "{text}");
        // Not run: no table at all.
        let text = render(&parse(&transcript(&[])).unwrap(), Board::Virt);
        assert!(!text.contains("Priority inversion"), "{text}");
    }

    #[test]
    fn inversion_target_needs_both_rows_in_one_unit() {
        let judge = |lines: &[String]| targets(&parse(&transcript(lines)).unwrap())[10].clone();
        let unloaded = inversion_row(MIGRATING_PROTECTED, "unloaded", 1000, 1000);
        let low = inversion_row(MIGRATING_PROTECTED, "low", 1000, 1100);
        let medium = inversion_row(MIGRATING_PROTECTED, "low+medium", 1000, 1101);
        assert_eq!(judge(&[unloaded.clone(), low.clone()]).verdict, Verdict::Met);
        // The worst loaded row decides.
        let t = judge(&[unloaded.clone(), low.clone(), medium]);
        assert_eq!((t.actual.as_str(), t.verdict), ("1.10", Verdict::Missed));
        assert_eq!(judge(std::slice::from_ref(&low)).verdict, Verdict::Unknown);
        assert_eq!(judge(std::slice::from_ref(&unloaded)).verdict, Verdict::Unknown);
        // Switching rows are not read; another unit is not compared.
        let switching = inversion_row(SWITCHING, "low", 1000, 9000);
        assert_eq!(judge(&[unloaded.clone(), low.clone(), switching]).verdict, Verdict::Met);
        let other_unit = low.replace("unit=cycles", "unit=instructions");
        assert_eq!(judge(&[unloaded, other_unit]).verdict, Verdict::Unknown);
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

    /// A `BENCH-BUILD` line for `config` with `instructions`, ticks
    /// 1000, the RPC counts and `checksum`.
    pub(crate) fn build_line(config: &str, instructions: u64, rpc: [u64; 4], checksum: &str) -> String {
        let [migrating, merged, switching, general] = rpc;
        format!(
            "BENCH-BUILD config={config} files=200 instructions={instructions} ticks=1000 copies=50 \
             rpc.migrating={migrating} rpc.merged={merged} rpc.switching={switching} rpc.general={general} \
             checksum={checksum}\n"
        )
    }

    pub(crate) fn with_builds() -> String {
        transcript(&[
            build_line("protected", 2000, [100, 0, 0, 90], "00000000deadbeef"),
            build_line("servers-merged", 1500, [20, 80, 0, 0], "00000000deadbeef"),
            build_line("all-merged", 1000, [0, 100, 0, 0], "00000000deadbeef"),
            build_line("switching", 3000, [0, 0, 100, 95], "00000000deadbeef"),
        ])
    }

    #[test]
    fn parses_build_lines_and_reports_ratios() {
        let report = parse(&with_builds()).unwrap();
        assert_eq!(report.builds.len(), 4);
        let merged = report.build("servers-merged").unwrap();
        assert_eq!((merged.instructions, merged.migrating, merged.merged, merged.calls()), (1500, 20, 80, 100));
        assert_eq!(merged.checksum, "00000000deadbeef");
        let text = render(&report, Board::Virt);
        assert!(text.contains("Macro benchmark `build`: 200 source files"), "{text}");
        assert!(text.contains("the same checksum in every configuration"), "{text}");
        let row = text.lines().find(|l| l.trim_start().starts_with("switching ")).unwrap();
        assert!(row.contains(" 3000 ") && row.contains(" 1.50 "), "{row}");
        let records = json_records(&report, Board::Virt, None);
        let builds: Vec<_> = records.as_array().unwrap().iter().filter(|r| r["test"] == BUILD_TEST).collect();
        assert_eq!(builds.len(), 4);
        assert_eq!(builds[2]["config"], "all-merged");
        assert_eq!(builds[2]["rpc"]["merged"], 100);
        assert_eq!(builds[2]["ratio"]["instructions"], 0.5);
        assert_eq!(builds[0]["ratio"]["copies"], 1.0);
        assert_eq!(builds[3]["checksum"], "00000000deadbeef");
    }

    #[test]
    fn refuses_bad_build_lines() {
        let line = |text: &str| parse_line(text).unwrap_err();
        assert!(line(&build_line("merged", 1, [1, 0, 0, 0], "00000000deadbeef")).contains("expected one of"));
        assert!(line(&build_line("protected", 1, [1, 0, 0, 0], "xyz")).contains("16 hexadecimal"));
        assert!(line(&build_line("protected", 1, [1, 0, 0, 2], "00000000deadbeef")).contains("general path"));
        assert!(line("BENCH-BUILD config=protected files=200").contains("missing"));
        let twice = transcript(&[
            build_line("protected", 1, [1, 0, 0, 0], "00000000deadbeef"),
            build_line("protected", 2, [1, 0, 0, 0], "00000000deadbeef"),
        ]);
        assert!(parse(&twice).unwrap_err().0[0].contains("already reported"));
        let differ = transcript(&[
            build_line("protected", 1, [1, 0, 0, 0], "00000000deadbeef"),
            build_line("switching", 2, [0, 0, 1, 0], "00000000deadbeee"),
        ]);
        assert!(render(&parse(&differ).unwrap(), Board::Virt).contains("THE CHECKSUMS DIFFER"));
        assert!(parse(&transcript(&[])).unwrap().builds.is_empty());
        assert!(!render(&good(), Board::Virt).contains("Macro benchmark"));
    }
}
