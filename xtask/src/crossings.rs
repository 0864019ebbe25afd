//! Crossings: what each benchmark figure's calls cross, counted by a QEMU
//! plugin in the same boot, and the cycles a cost per crossing models.
//!
//! `cargo xtask bench` counts instructions with the PMU under `-icount
//! shift=0`; QEMU charges nothing for taking an exception, `eret`, a TTBR0
//! write, `isb`, a TLB invalidation or a DAIF write, which on silicon cost
//! far more than an instruction. So the same boot also loads
//! `tern-qemu-plugin` (`tools/qemu-plugin`, built here for the host by
//! [`build_plugin`]), which counts, in each measuring window of each
//! figure (from the harness's first counter read to its second), the
//! instructions and those operations (see the plugin's `//!` for how). This
//! module is the host side:
//!
//! - [`plugin_argument`]: the `-plugin` option, with the vector table's
//!   address read from the image's ELF ([`vector_table`], symbol
//!   [`VECTORS`]) so exceptions can be counted as executions of a vector
//!   entry;
//! - [`parse_output`]: the plugin's file into [`PluginOutput`], refusing
//!   anything malformed or incomplete (an output without its `end` line
//!   means QEMU did not exit normally);
//! - [`pair`]: the k-th figure the plugin saw with the k-th `BENCH` line,
//!   failing loudly when the counts of figures or of windows differ (a
//!   figure measured without the harness's markers, or a marker without a
//!   figure, would shift every pairing after it);
//! - [`Crossings`]: per figure, the median, minimum and maximum of each
//!   count per call over the figure's windows;
//! - [`Costs`] and [`modeled`]: `--cost exception=N,eret=N,ttbr=N,isb=N,
//!   tlbi=N[,daif=N]`, cycles = instructions + Σ count × cost. There are no
//!   built-in costs: no public figures exist for the Cortex-A72, so the
//!   costs are the user's, measured with `cargo xtask bench --calibrate`
//!   on a Pi 4 (`docs/bench.md`);
//! - [`render`]: a table per (path, mode), a row per test, and the check
//!   of the plugin's instruction count against the PMU's.
//!
//! **The check.** A window's instruction count is the PMU's whole-call
//! difference by construction (the window counts its opening counter
//! read, not its closing one), so the plugin's median must equal the
//! `whole` figure of the same (path, mode, test); [`instruction_check`]
//! says whether it does, never adjusting either. The `kernel` and `cycles`
//! figures measure the same call in other passes: their windows count the
//! same instructions and crossings (EL0 and EL1 alike; the plugin does not
//! know the exception level), and the table says if any differ.
//!
//! What it leaves out: crossings of the priority-inversion rows (not
//! figures of one call); the costs of `dsb`, cache maintenance or TLB
//! misses, which the model does not count; fractional costs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use object::Endianness;
use object::elf::{FileHeader64, SHT_SYMTAB};
use object::read::elf::{FileHeader, SectionHeader, Sym};

use crate::report::{Measurement, Report};
use crate::{cargo, workspace_root};

/// The encodings the plugin watches (the plugin's own source, shared).
#[path = "../../tools/qemu-plugin/src/classify.rs"]
pub mod classify;

/// The plugin's package.
pub const PLUGIN_PACKAGE: &str = "tern-qemu-plugin";
/// The symbol of the exception vector table (`arch/aarch64/src/vectors.s`).
pub const VECTORS: &str = "tern_vectors";
/// The counts of a window, in the plugin's order.
pub const FIELDS: [&str; 7] = ["instructions", "exceptions", "erets", "ttbr0", "isb", "tlbi", "daif"];
/// The crossings among [`FIELDS`] (all but the instructions), with their
/// column headings and their key in `--cost`.
pub const CROSSINGS: [(usize, &str, &str); 6] = [
    (1, "exc", "exception"),
    (2, "eret", "eret"),
    (3, "ttbr0", "ttbr"),
    (4, "isb", "isb"),
    (5, "tlbi", "tlbi"),
    (6, "daif", "daif"),
];

/// Builds the plugin for the host (release) and returns the shared
/// library's path, as cargo reports it.
pub fn build_plugin() -> Result<PathBuf> {
    let mut child = Command::new(cargo())
        .current_dir(workspace_root())
        .args(["build", "--package", PLUGIN_PACKAGE, "--release", "--message-format=json-render-diagnostics"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting cargo")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut library = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Some(path) = artifact_library(&line) {
            library = Some(path);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`cargo build -p {PLUGIN_PACKAGE} --release` failed ({status})");
    }
    library.with_context(|| format!("cargo built {PLUGIN_PACKAGE} but reported no shared library"))
}

/// The shared library of a cargo `compiler-artifact` message for the plugin.
fn artifact_library(line: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != PLUGIN_PACKAGE.replace('-', "_") {
        return None;
    }
    let files = msg["filenames"].as_array()?;
    files.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".so") || f.ends_with(".dylib")).map(PathBuf::from)
}

/// A symbol of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    /// As in the ELF (mangled).
    pub name: String,
    /// Its address.
    pub address: u64,
    /// Its size (0 for an assembly label).
    pub size: u64,
    /// Whether it is global.
    pub global: bool,
    /// Whether its section holds code.
    pub code: bool,
}

/// Every named symbol of `elf`'s symbol table, in table order.
pub fn symbols(elf: &[u8]) -> Result<Vec<Symbol>> {
    let header = FileHeader64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = header.endian().context("unknown ELF byte order")?;
    let sections = header.sections(endian, elf).context("reading ELF section headers")?;
    let table = sections.symbols(endian, elf, SHT_SYMTAB).context("reading the ELF symbol table")?;
    let mut found = Vec::new();
    for symbol in table.iter() {
        let name = symbol.name(endian, table.strings()).context("reading a symbol's name")?;
        if name.is_empty() {
            continue;
        }
        let code = symbol.st_shndx(endian) != 0
            && sections
                .section(object::SectionIndex(usize::from(symbol.st_shndx(endian))))
                .is_ok_and(|s| s.sh_flags(endian) & u64::from(object::elf::SHF_EXECINSTR) != 0);
        found.push(Symbol {
            name: String::from_utf8_lossy(name).into_owned(),
            address: symbol.st_value(endian),
            size: symbol.st_size(endian),
            global: symbol.st_bind() == object::elf::STB_GLOBAL,
            code,
        });
    }
    Ok(found)
}

/// The address of [`VECTORS`] in the image's symbols.
pub fn vector_table(symbols: &[Symbol]) -> Result<u64> {
    symbols
        .iter()
        .find(|s| s.name == VECTORS)
        .map(|s| s.address)
        .with_context(|| format!("the image has no symbol `{VECTORS}` (the vector table, arch/aarch64/src/vectors.s)"))
}

/// The value of QEMU's `-plugin` option.
pub fn plugin_argument(library: &Path, out: &Path, vectors: u64) -> Result<String> {
    let (library, out) = (library.display().to_string(), out.display().to_string());
    if library.contains(',') || out.contains(',') {
        bail!("a path with a comma cannot be passed to QEMU's -plugin: {library}, {out}");
    }
    Ok(format!("{library},out={out},vectors={vectors:#x}"))
}

// ---------------------------------------------------------------------------
// The plugin's output

/// The counts of one window, in [`FIELDS`] order.
pub type Counts = [u64; 7];

/// One figure as the plugin saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginFigure {
    /// Each distinct combination of counts and how many windows had it.
    pub windows: Vec<(Counts, u64)>,
    /// Executions per PC in the figure's first window, by PC.
    pub histogram: Vec<(u64, u64)>,
}

impl PluginFigure {
    /// How many windows.
    pub fn window_count(&self) -> u64 {
        self.windows.iter().map(|w| w.1).sum()
    }
}

/// The whole of the plugin's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginOutput {
    /// The vector table it was given.
    pub vectors: u64,
    /// The figures, in the order the harness measured them.
    pub figures: Vec<PluginFigure>,
    /// What the plugin found wrong (markers out of order, ...).
    pub problems: Vec<String>,
}

/// `key=value` words after the first word of a line, each key once.
fn fields(words: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for word in words {
        let (key, value) = word.split_once('=').ok_or_else(|| format!("`{word}` is not key=value"))?;
        if map.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("`{key}` twice"));
        }
    }
    Ok(map)
}

fn number(map: &BTreeMap<String, String>, key: &str) -> Result<u64, String> {
    let text = map.get(key).ok_or_else(|| format!("no `{key}`"))?;
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .map_err(|_| format!("`{key}={text}` is not a number"))
}

/// Parses the plugin's output file; the first problem found is the error.
pub fn parse_output(text: &str) -> Result<PluginOutput, String> {
    let mut output = PluginOutput::default();
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, first)) if first.starts_with("tern-qemu-plugin 1 ") => {
            let words: Vec<&str> = first.split_whitespace().skip(2).collect();
            output.vectors = number(&fields(&words)?, "vectors")?;
        }
        _ => return Err("not the output of tern-qemu-plugin version 1".to_string()),
    }
    let mut ended = false;
    for (index, line) in lines {
        let at = |why: String| format!("line {}: {why}: `{line}`", index + 1);
        if ended {
            return Err(at("after `end`".to_string()));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let figure_of = |map: &BTreeMap<String, String>, output: &mut PluginOutput| -> Result<usize, String> {
            let figure = number(map, "figure")? as usize;
            if figure + 1 != output.figures.len() {
                return Err(format!("figure {figure} is not the last one announced"));
            }
            Ok(figure)
        };
        match words.first().copied() {
            Some("figure") => {
                let map = fields(&words[1..]).map_err(at)?;
                if number(&map, "index").map_err(at)? as usize != output.figures.len() {
                    return Err(at("figures out of order".to_string()));
                }
                output.figures.push(PluginFigure::default());
            }
            Some("window") => {
                let map = fields(&words[1..]).map_err(at)?;
                let figure = figure_of(&map, &mut output).map_err(at)?;
                let mut counts = [0; 7];
                for (slot, name) in counts.iter_mut().zip(FIELDS) {
                    *slot = number(&map, name).map_err(at)?;
                }
                let count = number(&map, "count").map_err(at)?;
                if map.len() != FIELDS.len() + 2 {
                    return Err(at("unknown fields".to_string()));
                }
                output.figures[figure].windows.push((counts, count));
            }
            Some("pc") => {
                let map = fields(&words[1..]).map_err(at)?;
                let figure = figure_of(&map, &mut output).map_err(at)?;
                let pc = number(&map, "pc").map_err(at)?;
                output.figures[figure].histogram.push((pc, number(&map, "count").map_err(at)?));
            }
            Some("problem") => output.problems.push(line["problem".len()..].trim().to_string()),
            Some("end") if words.len() == 1 => ended = true,
            _ => return Err(at("not a line of the plugin's output".to_string())),
        }
    }
    if !ended {
        return Err("no `end` line: QEMU did not exit normally, or the plugin did not run to the end".to_string());
    }
    Ok(output)
}

// ---------------------------------------------------------------------------
// Per figure

/// One count's spread over a figure's windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// The median (the element at index n / 2 of the sorted counts, as the
    /// harness takes its own).
    pub median: u64,
    /// The smallest.
    pub min: u64,
    /// The largest.
    pub max: u64,
}

/// What one figure's calls cross, per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossings {
    /// Windows (= the figure's samples).
    pub windows: u64,
    /// Per field of [`FIELDS`].
    pub fields: [Spread; 7],
}

impl Crossings {
    /// From a figure's windows (at least one).
    pub fn of(figure: &PluginFigure) -> Crossings {
        let windows = figure.window_count();
        let spread = |field: usize| {
            let mut values: Vec<(u64, u64)> = figure.windows.iter().map(|(c, n)| (c[field], *n)).collect();
            values.sort_unstable();
            let mut seen = 0;
            let median = values
                .iter()
                .find(|(_, n)| {
                    seen += n;
                    seen > windows / 2
                })
                .map_or(0, |v| v.0);
            Spread { median, min: values.first().map_or(0, |v| v.0), max: values.last().map_or(0, |v| v.0) }
        };
        Crossings { windows, fields: std::array::from_fn(spread) }
    }

    /// Whether any count varies between windows.
    pub fn varies(&self) -> bool {
        self.fields.iter().any(|s| s.min != s.max)
    }

    /// The JSON object for a figure's record: each count's median, and
    /// its minimum and maximum where they differ.
    pub fn json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, spread) in FIELDS.iter().zip(&self.fields) {
            map.insert((*name).to_string(), spread.median.into());
            if spread.min != spread.max {
                map.insert(format!("{name}_min"), spread.min.into());
                map.insert(format!("{name}_max"), spread.max.into());
            }
        }
        map.insert("windows".to_string(), self.windows.into());
        serde_json::Value::Object(map)
    }
}

/// Pairs the plugin's figures with the report's, in order: the k-th figure
/// the plugin saw is the k-th `BENCH` line. Any difference in the number
/// of figures, or of windows against samples, is an error, as is a
/// problem the plugin reported.
pub fn pair(measurements: &[Measurement], output: &PluginOutput) -> Result<Vec<Crossings>, String> {
    let mut problems: Vec<String> = output.problems.iter().map(|p| format!("the plugin says: {p}")).collect();
    if output.figures.len() != measurements.len() {
        problems.push(format!(
            "the plugin saw {} figures (hint #0x7e ... #0x7f in the harness) but the kernel printed {} BENCH lines",
            output.figures.len(),
            measurements.len()
        ));
    }
    for (index, (figure, m)) in output.figures.iter().zip(measurements).enumerate() {
        if figure.window_count() != m.samples {
            problems.push(format!(
                "figure {index} ({} {} {} {}): {} windows, {} samples",
                m.path,
                m.mode,
                m.test,
                m.scope,
                figure.window_count(),
                m.samples
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(output.figures.iter().map(Crossings::of).collect())
}

// ---------------------------------------------------------------------------
// The cost model

/// `--cost`: extra cycles per crossing, beyond the instruction itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// Per [`CROSSINGS`] entry, in its order (`daif` 0 when not given).
    pub per: [u64; 6],
    /// Whether `daif` was given.
    pub daif_given: bool,
}

/// Parses `exception=N,eret=N,ttbr=N,isb=N,tlbi=N[,daif=N]` (whole
/// numbers; every key but `daif` required, none twice, none unknown).
pub fn parse_costs(text: &str) -> Result<Costs, String> {
    let mut per = [None; 6];
    for item in text.split(',').filter(|i| !i.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| format!("`{item}` is not key=N"))?;
        let index = CROSSINGS
            .iter()
            .position(|c| c.2 == key)
            .ok_or_else(|| format!("unknown cost `{key}` (exception, eret, ttbr, isb, tlbi, daif)"))?;
        let value = value.parse::<u64>().map_err(|_| format!("`{item}`: the cost is a whole number of cycles"))?;
        if per[index].replace(value).is_some() {
            return Err(format!("`{key}` given twice"));
        }
    }
    let missing: Vec<&str> =
        CROSSINGS.iter().zip(&per).filter(|(c, v)| v.is_none() && c.2 != "daif").map(|(c, _)| c.2).collect();
    if !missing.is_empty() {
        return Err(format!("--cost lacks {}", missing.join(", ")));
    }
    Ok(Costs { per: per.map(|v| v.unwrap_or(0)), daif_given: per[5].is_some() })
}

/// Modeled cycles per call: the median instructions plus each crossing's
/// median count times its cost.
pub fn modeled(crossings: &Crossings, costs: &Costs) -> u128 {
    let base = u128::from(crossings.fields[0].median);
    CROSSINGS
        .iter()
        .zip(costs.per)
        .fold(base, |sum, ((field, _, _), cost)| sum + u128::from(crossings.fields[*field].median) * u128::from(cost))
}

// ---------------------------------------------------------------------------
// Rendering

/// How the plugin's instruction count of a figure compares with the PMU's
/// whole-call figure of the same call; `None` if there is none.
pub fn instruction_check(report: &Report, m: &Measurement, crossings: &Crossings) -> Option<String> {
    let pmu = report.get(&m.path, &m.mode, &m.test, "whole").filter(|w| w.unit == "instructions")?;
    let plugin = crossings.fields[0].median;
    Some(if plugin == pmu.median {
        format!("{plugin} = PMU")
    } else {
        format!("{plugin} ≠ PMU {} (by {})", pmu.median, plugin.abs_diff(pmu.median))
    })
}

/// The crossings tables: for each (path, mode), a row per test with the
/// whole-call window's medians (`*` where min ≠ max), and the modeled
/// cycles with `costs`. Then the checks.
pub fn render(report: &Report, crossings: &[Crossings], costs: Option<&Costs>) -> String {
    let mut out = String::new();
    let figure = |path: &str, mode: &str, test: &str, scope: &str| {
        report
            .measurements
            .iter()
            .position(|m| m.path == path && m.mode == mode && m.test == test && m.scope == scope)
            .and_then(|i| crossings.get(i))
    };
    let _ = writeln!(
        out,
        "\nCrossings per call (QEMU plugin, same boot; medians over the whole-call figure's windows, \
         * where min ≠ max)"
    );
    if let Some(costs) = costs {
        let given: Vec<String> =
            CROSSINGS.iter().zip(costs.per).map(|((_, _, key), cost)| format!("{key}={cost}")).collect();
        let _ = writeln!(
            out,
            "  modeled = instructions + Σ count × cost, costs (cycles) {}{}",
            given.join(","),
            if costs.daif_given { "" } else { " (daif not given: 0)" }
        );
    }
    let mut heading = format!("  {:8} {:>12}", "test", "instructions");
    for (_, name, _) in CROSSINGS {
        let _ = write!(heading, " {name:>6}");
    }
    if costs.is_some() {
        let _ = write!(heading, " {:>10}", "modeled");
    }
    let mut mismatches = Vec::new();
    let mut scope_differences = Vec::new();
    for (path, mode) in report.series() {
        let _ = writeln!(out, "  {path}, {}", crate::report::mode_text(mode));
        let _ = writeln!(out, "{heading}");
        let mut tests: Vec<&str> = Vec::new();
        for m in report.measurements.iter().filter(|m| m.path == path && m.mode == mode) {
            if !tests.contains(&m.test.as_str()) {
                tests.push(&m.test);
            }
        }
        for test in tests {
            let Some(whole) = figure(path, mode, test, "whole") else { continue };
            let cell = |s: &Spread| format!("{}{}", s.median, if s.min != s.max { "*" } else { "" });
            let label = crate::report::TESTS.iter().find(|t| t.0 == test).map_or(test, |t| t.1);
            let mut row = format!("  {label:8} {:>12}", cell(&whole.fields[0]));
            for (field, _, _) in CROSSINGS {
                let _ = write!(row, " {:>6}", cell(&whole.fields[field]));
            }
            if let Some(costs) = costs {
                let _ = write!(row, " {:>10}", modeled(whole, costs));
            }
            let _ = writeln!(out, "{row}");
            for (m, c) in report.measurements.iter().zip(crossings) {
                if m.path != path || m.mode != mode || m.test != test {
                    continue;
                }
                if m.scope == "whole" && c.fields[0].median != m.median {
                    mismatches.push(format!("{path} {mode} {test}: {}", instruction_check(report, m, c).unwrap()));
                }
                if m.scope != "whole" && c.fields.map(|s| s.median) != whole.fields.map(|s| s.median) {
                    scope_differences.push(format!("{path} {mode} {test} {}", m.scope));
                }
            }
        }
    }
    let whole_figures = report.measurements.iter().filter(|m| m.scope == "whole").count();
    if mismatches.is_empty() {
        let _ = writeln!(
            out,
            "  instructions: the plugin's median equals the PMU's whole-call median in all {whole_figures} \
             whole-call figures\n  (a window counts the counter read that opens it, not the one that closes it)"
        );
    } else {
        let _ = writeln!(out, "  instructions: the plugin and the PMU differ: {}", mismatches.join("; "));
    }
    if scope_differences.is_empty() {
        let _ = writeln!(out, "  the kernel-only and cycles passes of each call crossed the same (same medians)");
    } else {
        let _ = writeln!(out, "  medians differing from the whole-call pass: {}", scope_differences.join("; "));
    }
    out
}

/// Issue 15's crossing targets: the Null call's exceptions, `eret`s and
/// TTBR0 writes, exactly, on each lean path (by name, and through a bound
/// handle where the run has one).
pub fn targets(report: &Report, crossings: &[Crossings]) -> String {
    let mut out = String::from("\nCrossing targets (Null, per call, exactly: exceptions / erets / TTBR0 writes)\n");
    let wanted: [(&str, &str, &str, [u64; 3]); 6] = [
        ("protected→protected", "migrating-protected", "protected", [2, 2, 2]),
        ("protected→protected, bound", "bound-words", "protected", [2, 2, 2]),
        ("protected→merged", "migrating-merged", "server-merged", [1, 1, 0]),
        ("protected→merged, bound", "bound-words", "server-merged", [1, 1, 0]),
        ("merged→merged", "migrating-merged", "both-merged", [0, 0, 0]),
        ("merged→merged, bound", "bound-words", "both-merged", [0, 0, 0]),
    ];
    for (what, path, mode, want) in wanted {
        let found = report
            .measurements
            .iter()
            .position(|m| m.path == path && m.mode == mode && m.test == "null" && m.scope == "whole")
            .and_then(|i| crossings.get(i));
        let (mark, actual) = match found {
            Some(c) => {
                let got = [c.fields[1], c.fields[2], c.fields[3]];
                let exact = got.iter().zip(want).all(|(spread, want)| spread.min == want && spread.max == want);
                let text = format!("{} / {} / {}", got[0].median, got[1].median, got[2].median);
                (if exact { "✓" } else { "✗" }, text)
            }
            None => ("?", "not reported".to_string()),
        };
        let _ = writeln!(out, "  {mark} {what:28} {} / {} / {} wanted, {actual}", want[0], want[1], want[2]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
tern-qemu-plugin 1 vectors=0x40088800
figure index=0 windows=3
window figure=0 count=2 instructions=180 exceptions=2 erets=2 ttbr0=2 isb=2 tlbi=0 daif=0
window figure=0 count=1 instructions=260 exceptions=3 erets=3 ttbr0=2 isb=2 tlbi=0 daif=4
pc figure=0 pc=0x40081000 count=1
pc figure=0 pc=0x40081004 count=2
figure index=1 windows=1
window figure=1 count=1 instructions=9 exceptions=1 erets=1 ttbr0=0 isb=0 tlbi=0 daif=0
end
";

    #[test]
    fn parses_the_plugin_output() {
        let out = parse_output(OUTPUT).unwrap();
        assert_eq!(out.vectors, 0x4008_8800);
        assert_eq!(out.figures.len(), 2);
        assert_eq!(out.figures[0].windows[1], ([260, 3, 3, 2, 2, 0, 4], 1));
        assert_eq!(out.figures[0].histogram, vec![(0x4008_1000, 1), (0x4008_1004, 2)]);
        assert_eq!(out.figures[1].window_count(), 1);
        assert!(out.problems.is_empty());
    }

    #[test]
    fn refuses_incomplete_or_malformed_output() {
        assert!(parse_output(&OUTPUT.replace("end\n", "")).unwrap_err().contains("no `end`"));
        assert!(parse_output(&OUTPUT.replace("tern-qemu-plugin 1", "tern-qemu-plugin 2")).is_err());
        assert!(parse_output(&OUTPUT.replace("erets=2 ", "")).unwrap_err().contains("no `erets`"));
        assert!(parse_output(&OUTPUT.replace("index=1", "index=2")).unwrap_err().contains("out of order"));
        assert!(parse_output(&OUTPUT.replace("pc figure=0 pc=0x40081000", "pc figure=1 pc=0x40081000")).is_err());
        assert!(parse_output(&format!("{OUTPUT}figure index=2\n")).unwrap_err().contains("after `end`"));
        let with_problem = OUTPUT.replace("end\n", "problem a figure ended that never began\nend\n");
        assert_eq!(parse_output(&with_problem).unwrap().problems, vec!["a figure ended that never began"]);
    }

    #[test]
    fn spreads_are_weighted_medians() {
        let out = parse_output(OUTPUT).unwrap();
        let c = Crossings::of(&out.figures[0]);
        assert_eq!(c.windows, 3);
        assert_eq!(c.fields[0], Spread { median: 180, min: 180, max: 260 });
        assert_eq!(c.fields[6], Spread { median: 0, min: 0, max: 4 });
        assert!(c.varies());
        assert!(!Crossings::of(&out.figures[1]).varies());
        let json = c.json();
        assert_eq!(json["exceptions"], 2);
        assert_eq!(json["exceptions_max"], 3);
        assert!(json.get("ttbr0_min").is_none());
    }

    fn measurement(samples: u64) -> Measurement {
        Measurement {
            path: "floor-svc".into(),
            mode: "protected".into(),
            test: "null".into(),
            scope: "whole".into(),
            unit: "instructions".into(),
            median: 9,
            min: 9,
            samples,
        }
    }

    #[test]
    fn pairing_fails_loudly() {
        let out = parse_output(OUTPUT).unwrap();
        assert_eq!(pair(&[measurement(3), measurement(1)], &out).unwrap().len(), 2);
        assert!(pair(&[measurement(3)], &out).unwrap_err().contains("saw 2 figures"));
        assert!(pair(&[measurement(3), measurement(5)], &out).unwrap_err().contains("1 windows, 5 samples"));
        let mut troubled = out.clone();
        troubled.problems.push("figure 2 ended inside a window".into());
        assert!(pair(&[measurement(3), measurement(1)], &troubled).unwrap_err().contains("inside a window"));
    }

    #[test]
    fn cost_model() {
        let costs = parse_costs("exception=40,eret=30,ttbr=20,isb=10,tlbi=100").unwrap();
        assert_eq!(costs.per, [40, 30, 20, 10, 100, 0]);
        assert!(!costs.daif_given);
        let out = parse_output(OUTPUT).unwrap();
        // 180 + 2×40 + 2×30 + 2×20 + 2×10 + 0×100 + 0×0
        assert_eq!(modeled(&Crossings::of(&out.figures[0]), &costs), 380);
        let with_daif = parse_costs("daif=5,exception=0,eret=0,ttbr=0,isb=0,tlbi=0").unwrap();
        assert_eq!(modeled(&Crossings::of(&out.figures[1]), &with_daif), 9);
        for bad in [
            "exception=1",
            "exception=1,eret=1,ttbr=1,isb=1,tlbi=x",
            "exception=1,eret=1,ttbr=1,isb=1,tlbi=1,tlbi=2",
            "exception=1,eret=1,ttbr=1,isb=1,tlbi=1,dsb=1",
            "exception=1.5,eret=1,ttbr=1,isb=1,tlbi=1",
        ] {
            assert!(parse_costs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plugin_argument_refuses_commas() {
        let arg = plugin_argument(Path::new("/t/libp.so"), Path::new("/t/out.txt"), 0x4008_8800).unwrap();
        assert_eq!(arg, "/t/libp.so,out=/t/out.txt,vectors=0x40088800");
        assert!(plugin_argument(Path::new("/t,x/libp.so"), Path::new("/t/o"), 0).is_err());
    }

    #[test]
    fn finds_the_library_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"tern_qemu_plugin","kind":["cdylib"]},"filenames":["/w/target/release/libtern_qemu_plugin.so"]}"#;
        assert_eq!(artifact_library(line), Some(PathBuf::from("/w/target/release/libtern_qemu_plugin.so")));
        assert_eq!(artifact_library(&line.replace("tern_qemu_plugin\"", "other\"")), None);
    }
}
