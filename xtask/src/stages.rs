//! Stage tables, measured: where the instructions of one Null call go, on
//! every path, summing exactly to the window the PMU counted (the paper's
//! Table 1, for every path instead of the one the static labels cover).
//!
//! The plugin (`tools/qemu-plugin`) keeps a per-PC histogram of the first
//! window of every figure; under icount a repeated call repeats exactly,
//! so one window is the call. For each Null whole-call figure this module
//! gives every PC a stage, from the image's symbols ([`Attributor`]):
//!
//! 1. a PC inside a sized symbol (a Rust function) belongs to that
//!    function;
//! 2. otherwise (assembly, whose labels have no size) to the nearest
//!    `tern_stage_*` label at or below it, unless that label's name ends
//!    in `_end` (the stage ended there) or a global label lies between
//!    them (another routine's entry); the word after `tern_stage_` says
//!    the stage ([`stage_of_label`]: `translate`, `checks`, `switch`,
//!    `copy`, `stats`, `entry`/`exit`; any other word is a row of its own,
//!    named after the label). Nothing depends on the labels' exact names
//!    beyond that prefix, the `_end` suffix and those words;
//! 3. otherwise to the nearest label at or below it, as a function.
//!
//! A function or label then goes to a coarse stage by [`ASSEMBLY`] (exact
//! label names) or [`RUST`] (a part of the demangled path), first match
//! first. Whatever neither table knows goes to the `other` row, which
//! names it: nothing is dropped, and every table sums to the window's
//! instructions, which [`StageTable::check`] compares with the PMU's
//! whole-call median (equal by construction of the window: it counts the
//! counter read that opens it, not the one that closes it).
//!
//! The static table the kernel prints (`BENCH-STAGE`, counted between
//! labels in the source) is kept: it splits the protected migrating call
//! into its call and return halves, which a histogram cannot (the vector
//! code runs on both). These tables cover every path, the EL0 code
//! included (the client's stub, the server's runtime and handler).
//!
//! What it leaves out: exception levels (a row says which code, not at
//! which level it ran; the `kernel` PMU figure says how much ran at EL1),
//! and v0-mangled symbols (the toolchain's default is the legacy
//! mangling; a v0 name is shown as it is).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::crossings::{PluginOutput, Symbol};
use crate::report::{Measurement, Report};

/// The coarse stages, in table order.
pub const STAGES: [&str; 18] = [
    "client stub / gate",
    "kernel entry/exit",
    "interrupt masking",
    "port translation",
    "handle translation and checks (trapping fast path)",
    "argument checks",
    "activation/thread switch",
    "client state, saved and restored",
    "message copy",
    "statistics",
    "call into the server",
    "switching fast path (unlabelled)",
    "merged call path (unlabelled)",
    "fast path (unlabelled)",
    "kernel, general path (Rust)",
    "machine layer (Rust)",
    "server runtime dispatch",
    "server handler",
];
/// The row of whatever no table knows.
pub const OTHER: &str = "other";

/// Assembly labels by exact name (`arch/aarch64/src/*.s`,
/// `inks`' dispatch trampoline), for code outside stage labels.
pub const ASSEMBLY: &[(&str, &str)] = &[
    ("tern_vectors", "kernel entry/exit"),
    ("null_call", "kernel entry/exit"),
    ("not_svc", "kernel entry/exit"),
    ("domain_trap", "kernel entry/exit"),
    ("user_general", "kernel entry/exit"),
    ("interrupt", "kernel entry/exit"),
    ("tern_resume_user", "kernel entry/exit"),
    ("tern_kernel_entry", "kernel entry/exit"),
    ("kernel_entry_trap", "kernel entry/exit"),
    ("fast_handoff", "activation/thread switch"),
    ("fast_switch", "activation/thread switch"),
    ("tern_fast_reply_receive", "switching fast path (unlabelled)"),
    ("tern_merged_call", "merged call path (unlabelled)"),
    ("tern_merged_call_lending", "merged call path (unlabelled)"),
    ("merged_call_back", "merged call path (unlabelled)"),
    ("merged_called_back", "merged call path (unlabelled)"),
    ("fast_call_merged", "merged call path (unlabelled)"),
    ("fast_call_handler", "merged call path (unlabelled)"),
    ("tern_dispatch_trampoline", "server runtime dispatch"),
    ("tern_dispatch_trampoline_registers", "server runtime dispatch"),
    ("tern_bound_merged_registers", "interrupt masking"),
    ("tern_bound_trap", "client stub / gate"),
    ("tern_bound_trap_registers", "client stub / gate"),
    ("tern_bound_direct", "client stub / gate"),
    ("tern_bound_direct_registers", "client stub / gate"),
    ("tern_fast_call_bound", "handle translation and checks (trapping fast path)"),
];
/// Rust functions by a part of their demangled path, first match first.
pub const RUST: &[(&str, &str)] = &[
    ("as tern_inks::service::Service>::handle", "server handler"),
    ("tern_inks::service::", "server runtime dispatch"),
    ("tern_inks::gate::", "client stub / gate"),
    // The measuring loop: the call's argument set-up and the inlined gate.
    ("tern_harness::bench::", "client stub / gate"),
    ("tern_core::", "kernel, general path (Rust)"),
    // The machine layer's entry points from assembly (`#[no_mangle]`).
    ("tern_domain_trap", "machine layer (Rust)"),
    ("tern_resume_check", "machine layer (Rust)"),
    ("tern_aarch64::", "machine layer (Rust)"),
];

/// The stage a `tern_stage_*` label opens, `None` for an `_end` label.
pub fn stage_of_label(label: &str) -> Option<String> {
    let rest = label.strip_prefix("tern_stage_")?;
    if rest.ends_with("_end") {
        return None;
    }
    let stage = [
        ("translate", "port translation"),
        ("checks", "argument checks"),
        ("switch", "activation/thread switch"),
        ("pool", "activation/thread switch"),
        ("copy", "message copy"),
        ("registers", "message copy"),
        ("stats", "statistics"),
        ("entry", "kernel entry/exit"),
        ("exit", "kernel entry/exit"),
        ("mask", "interrupt masking"),
        ("unmask", "interrupt masking"),
        ("save", "client state, saved and restored"),
        ("restore", "client state, saved and restored"),
        ("handler", "call into the server"),
    ]
    .iter()
    .find(|(word, _)| rest.split('_').any(|w| w == *word))
    .map_or_else(|| format!("stage {rest}"), |(_, stage)| (*stage).to_string());
    Some(stage)
}

/// Demangles a legacy Rust symbol (`_ZN...E`), dropping the hash; any
/// other name is returned as it is.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else { return name.to_string() };
    let mut parts = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(length) = rest[..digits].parse::<usize>() else { return name.to_string() };
        let Some(part) = rest.get(digits..digits + length) else { return name.to_string() };
        parts.push(part);
        rest = &rest[digits + length..];
    }
    if parts
        .last()
        .is_some_and(|p| p.len() == 17 && p.starts_with('h') && p[1..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        parts.pop();
    }
    let parts: Vec<&str> =
        parts.iter().map(|p| p.strip_prefix('_').filter(|p| p.starts_with('$')).unwrap_or(p)).collect();
    let mut text = parts.join("::");
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$LP$", "("),
        ("$RP$", ")"),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u7e$", "~"),
        ("..", "::"),
    ] {
        text = text.replace(from, to);
    }
    text
}

/// Gives PCs their stage from the image's symbols.
pub struct Attributor {
    /// Code symbols by address (section names and `$x`/`$d` mapping
    /// symbols left out).
    labels: Vec<Symbol>,
}

impl Attributor {
    /// From the image's symbol table.
    pub fn new(symbols: &[Symbol]) -> Self {
        let mut labels: Vec<Symbol> = symbols
            .iter()
            .filter(|s| s.code && !s.name.starts_with('$') && !s.name.starts_with('.'))
            .cloned()
            .collect();
        labels.sort_by_key(|s| (s.address, s.name.starts_with("tern_stage_")));
        Attributor { labels }
    }

    /// (stage, what it was attributed by: a label or a demangled function).
    pub fn attribute(&self, pc: u64) -> (String, String) {
        let below = self.labels.partition_point(|s| s.address <= pc);
        let before = &self.labels[..below];
        if let Some(function) = before.iter().rev().find(|s| s.size > 0 && pc < s.address + s.size) {
            return by_name(&function.name);
        }
        let mut global_between = false;
        for label in before.iter().rev() {
            if label.name.starts_with("tern_stage_") {
                if global_between {
                    break;
                }
                return match stage_of_label(&label.name) {
                    Some(stage) => (stage, label.name.clone()),
                    None => self.nearest_plain(before),
                };
            }
            if label.size > 0 && pc >= label.address + label.size {
                break; // a function ends between the stage label and the PC
            }
            global_between |= label.global;
        }
        self.nearest_plain(before)
    }

    fn nearest_plain(&self, before: &[Symbol]) -> (String, String) {
        match before.iter().rev().find(|s| !s.name.starts_with("tern_stage_")) {
            Some(label) => by_name(&label.name),
            None => (OTHER.to_string(), "(no symbol)".to_string()),
        }
    }
}

/// The stage of a function or label by [`ASSEMBLY`] and [`RUST`].
fn by_name(name: &str) -> (String, String) {
    if let Some((_, stage)) = ASSEMBLY.iter().find(|(label, _)| *label == name) {
        return ((*stage).to_string(), name.to_string());
    }
    let readable = demangle(name);
    match RUST.iter().find(|(part, _)| readable.contains(part)) {
        Some((_, stage)) => ((*stage).to_string(), readable),
        None => (OTHER.to_string(), readable),
    }
}

/// One row: a stage, its instructions, and what contributed, most first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    /// One of [`STAGES`], a `stage <word>` row, or [`OTHER`].
    pub stage: String,
    /// Instructions executed in it.
    pub instructions: u64,
    /// The labels and functions it is made of, with their instructions.
    pub from: Vec<(String, u64)>,
}

/// The stage table of one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageTable {
    /// The figure's path.
    pub path: String,
    /// Its mode.
    pub mode: String,
    /// The rows, in [`STAGES`] order, then others; empty stages left out.
    pub rows: Vec<StageRow>,
    /// The window's instructions (the rows' sum).
    pub total: u64,
    /// The PMU's median for the figure.
    pub pmu: u64,
}

impl StageTable {
    /// Builds the table of one window's histogram.
    pub fn new(m: &Measurement, histogram: &[(u64, u64)], attributor: &Attributor) -> StageTable {
        let mut stages: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for &(pc, count) in histogram {
            let (stage, from) = attributor.attribute(pc);
            *stages.entry(stage).or_default().entry(from).or_default() += count;
        }
        let order =
            |stage: &str| STAGES.iter().position(|s| *s == stage).unwrap_or(STAGES.len() + usize::from(stage == OTHER));
        let mut rows: Vec<StageRow> = stages
            .into_iter()
            .map(|(stage, from)| {
                let mut from: Vec<(String, u64)> = from.into_iter().collect();
                from.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                StageRow { instructions: from.iter().map(|f| f.1).sum(), stage, from }
            })
            .collect();
        rows.sort_by(|a, b| order(&a.stage).cmp(&order(&b.stage)).then_with(|| a.stage.cmp(&b.stage)));
        StageTable {
            path: m.path.clone(),
            mode: m.mode.clone(),
            total: rows.iter().map(|r| r.instructions).sum(),
            rows,
            pmu: m.median,
        }
    }

    /// How the sum compares with the PMU.
    pub fn check(&self) -> String {
        if self.total == self.pmu {
            format!("sum {} = the PMU's whole-call median", self.total)
        } else {
            format!(
                "sum {} ≠ the PMU's whole-call median {} (by {}): the window recorded differs from the median one",
                self.total,
                self.pmu,
                self.total.abs_diff(self.pmu)
            )
        }
    }
}

/// The stage tables of every Null whole-call figure, in the kernel's order.
pub fn tables(report: &Report, output: &PluginOutput, symbols: &[Symbol]) -> Vec<StageTable> {
    let attributor = Attributor::new(symbols);
    report
        .measurements
        .iter()
        .zip(&output.figures)
        .filter(|(m, _)| m.test == "null" && m.scope == "whole" && m.unit == "instructions")
        .map(|(m, figure)| StageTable::new(m, &figure.histogram, &attributor))
        .collect()
}

/// How many contributors a row names.
const NAMED: usize = 3;

/// The tables as text.
pub fn render(tables: &[StageTable]) -> String {
    if tables.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nNull call by stage, measured (QEMU plugin: per-PC histogram of one whole-call window, attributed by symbol)\n",
    );
    let width = tables.iter().flat_map(|t| &t.rows).map(|r| r.stage.chars().count()).max().unwrap_or(0).max(5);
    for table in tables {
        let _ = writeln!(out, "  {}, {}", table.path, crate::report::mode_text(&table.mode));
        for row in &table.rows {
            let named: Vec<String> = row.from.iter().take(NAMED).map(|(name, n)| format!("{name} {n}")).collect();
            let more =
                if row.from.len() > NAMED { format!(", +{} more", row.from.len() - NAMED) } else { String::new() };
            let _ = writeln!(out, "    {:width$} {:>6}  {}{more}", row.stage, row.instructions, named.join(", "));
        }
        let _ = writeln!(out, "    {:width$} {:>6}  {}", "total", table.total, table.check());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbol(name: &str, address: u64, size: u64, global: bool) -> Symbol {
        Symbol { name: name.into(), address, size, global, code: true }
    }

    fn image() -> Vec<Symbol> {
        vec![
            symbol("tern_vectors", 0x800, 0, true),
            symbol("tern_stage_entry", 0xc00, 0, true),
            symbol("tern_stage_entry_call_end", 0xc20, 0, true),
            symbol("tern_fast_call", 0x1000, 0, true),
            symbol("tern_stage_call_translate", 0x1000, 0, true),
            symbol("tern_stage_call_checks", 0x1010, 0, true),
            symbol("fast_local", 0x1020, 0, false), // a local label inside a stage
            symbol("tern_stage_call_frobnicate", 0x1030, 0, true),
            symbol("tern_stage_call_end", 0x1040, 0, true),
            symbol("fast_switch", 0x1050, 0, false),
            symbol("tern_stage_return_copy", 0x1060, 0, true),
            symbol("tern_fast_reply_receive", 0x1070, 0, true), // global: ends the open stage
            symbol("_ZN9tern_inks4gate4call17h0123456789abcdefE", 0x2000, 0x40, true),
            symbol(
                "_ZN73_$LT$tern_harness..bench..Null$u20$as$u20$tern_inks..service..Service$GT$6handle17h0123456789abcdefE",
                0x2040,
                0x10,
                false,
            ),
            symbol("_ZN7mystery5thing17h0123456789abcdefE", 0x2050, 0x10, false),
            symbol(".text", 0x2060, 0, false),
            symbol("$x", 0x2060, 0, false),
        ]
    }

    #[test]
    fn attributes_by_label_and_function() {
        let a = Attributor::new(&image());
        let stage = |pc| a.attribute(pc).0;
        assert_eq!(stage(0x800), "kernel entry/exit");
        assert_eq!(stage(0xc04), "kernel entry/exit");
        assert_eq!(a.attribute(0xc24), ("kernel entry/exit".into(), "tern_vectors".into()), "after an _end label");
        assert_eq!(stage(0x1000), "port translation");
        assert_eq!(stage(0x1024), "argument checks", "a local label does not end a stage");
        assert_eq!(a.attribute(0x1030), ("stage call_frobnicate".into(), "tern_stage_call_frobnicate".into()));
        assert_eq!(stage(0x1054), "activation/thread switch");
        assert_eq!(stage(0x1074), "switching fast path (unlabelled)", "a global label ends a stage");
        assert_eq!(a.attribute(0x2004), ("client stub / gate".into(), "tern_inks::gate::call".into()));
        assert_eq!(stage(0x2044), "server handler");
        assert_eq!(a.attribute(0x2054), (OTHER.into(), "mystery::thing".into()));
        assert_eq!(a.attribute(0x10), (OTHER.into(), "(no symbol)".into()));
    }

    #[test]
    fn stage_words() {
        assert_eq!(stage_of_label("tern_stage_return_client_exit").as_deref(), Some("kernel entry/exit"));
        assert_eq!(stage_of_label("tern_stage_call_copy_end"), None);
        assert_eq!(stage_of_label("tern_stage_call_stats").as_deref(), Some("statistics"));
        assert_eq!(stage_of_label("tern_vectors"), None);
    }

    #[test]
    fn demangles_legacy_names() {
        assert_eq!(
            demangle("_ZN12tern_harness5bench10measure_on17h0462a29b59225841E"),
            "tern_harness::bench::measure_on"
        );
        assert_eq!(
            demangle(
                "_ZN73_$LT$tern_harness..bench..Null$u20$as$u20$tern_inks..service..Service$GT$6handle17h0123456789abcdefE"
            ),
            "<tern_harness::bench::Null as tern_inks::service::Service>::handle"
        );
        assert_eq!(demangle("tern_fast_call"), "tern_fast_call");
        assert_eq!(demangle("_ZN3bad"), "_ZN3bad");
    }

    #[test]
    fn tables_sum_to_the_window_and_name_the_unknown() {
        let m = Measurement {
            path: "migrating-protected".into(),
            mode: "protected".into(),
            test: "null".into(),
            scope: "whole".into(),
            unit: "instructions".into(),
            median: 10,
            min: 10,
            samples: 5,
        };
        let histogram = [(0x1000, 2), (0x1004, 1), (0x1024, 3), (0x2004, 1), (0x2054, 3)];
        let table = StageTable::new(&m, &histogram, &Attributor::new(&image()));
        assert_eq!(table.total, 10);
        let rows: Vec<(&str, u64)> = table.rows.iter().map(|r| (r.stage.as_str(), r.instructions)).collect();
        assert_eq!(rows, [("client stub / gate", 1), ("port translation", 3), ("argument checks", 3), (OTHER, 3)]);
        assert_eq!(table.rows[3].from, vec![("mystery::thing".to_string(), 3)]);
        assert!(table.check().starts_with("sum 10 = "));
        let shorter = StageTable { pmu: 12, ..table };
        assert!(shorter.check().contains("≠ the PMU's whole-call median 12 (by 2)"));
        let text = render(&[shorter]);
        assert!(text.contains("other"), "{text}");
        assert!(text.contains("mystery::thing 3"), "{text}");
    }
}
