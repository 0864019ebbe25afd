//! The benchmark's figures as the kernel reports them: the protocol's
//! names (tests, scopes, modes, paths), the data model ([`Report`],
//! [`Measurement`] and the rest) and the parser of the `BENCH-*` lines
//! (see `docs/bench.md`, "The protocol"), with the two small formatters
//! every table shares. The tables, the targets and the run are
//! `crate::bench`'s; the crossings, the stage tables and the chart read
//! the report from here, so that none of them loops back through the
//! others.

use std::collections::BTreeMap;
use std::fmt;

/// The tests, in table order: (protocol name, label as in the paper).
pub const TESTS: [(&str, &str); 5] =
    [("null", "Null"), ("32in", "32 In"), ("1kin", "1K In"), ("32kin", "32K In"), ("32kin-lent", "32K Lent")];
/// The scopes, in table order: (protocol name, heading).
pub const SCOPES: [(&str, &str); 3] =
    [("kernel", "kernel only (EL1)"), ("whole", "whole call (EL0+EL1)"), ("cycles", "cycles (PMCCNTR_EL0)")];
/// The units a figure may be in.
pub const UNITS: [&str; 2] = ["instructions", "cycles"];

/// Client and server both protected.
pub const PROTECTED: &str = "protected";
/// A protected client calling a merged server.
pub const SERVER_MERGED: &str = "server-merged";
/// A merged client calling a merged server.
pub const BOTH_MERGED: &str = "both-merged";
/// The modes a figure may be measured in: (protocol name, description).
pub const MODES: [(&str, &str); 3] = [
    (PROTECTED, "protected client → protected server"),
    (SERVER_MERGED, "protected client → merged server"),
    (BOTH_MERGED, "merged client → merged server"),
];
/// The modes a `BENCH-FLIP` may put a domain in.
pub const FLIP_MODES: [&str; 2] = ["protected", "merged"];

/// Switching threads (measured in mode [`PROTECTED`]).
pub const SWITCHING: &str = "switching";
/// Migrating threads between protected domains.
pub const MIGRATING_PROTECTED: &str = "migrating-protected";
/// Migrating threads into a merged server (modes [`SERVER_MERGED`] and
/// [`BOTH_MERGED`]).
pub const MIGRATING_MERGED: &str = "migrating-merged";
/// The paths shown as floors rather than in the main tables, in order.
pub const FLOORS: [&str; 4] = ["floor-call", "floor-svc", "floor-general", "floor-entry"];

/// The series compared in the main tables: (path, mode, column heading).
pub const COLUMNS: [(&str, &str, &str); 4] = [
    (SWITCHING, PROTECTED, "switching"),
    (MIGRATING_PROTECTED, PROTECTED, "protected"),
    (MIGRATING_MERGED, SERVER_MERGED, "p→merged"),
    (MIGRATING_MERGED, BOTH_MERGED, "m→merged"),
];
/// The ratio columns of the main tables: (heading, dividend, divisor), the
/// last two indices into [`COLUMNS`].
pub const RATIOS: [(&str, usize, usize); 3] = [("sw÷mig", 0, 1), ("prot÷p→m", 1, 2), ("prot÷m→m", 1, 3)];

/// The sides of a call a stage may belong to: the client's Call trap until
/// the server runs, and the server's Return until the client runs.
pub const SIDES: [&str; 2] = ["call", "return"];
/// The stage names a `BENCH-STAGE` line may carry.
pub const STAGES: [&str; 9] =
    ["client-entry", "client-exit", "server-entry", "server-exit", "translate", "checks", "switch", "copy", "stats"];
/// The rows of the per-stage table: (label, the stages summed into it).
/// Every name in [`STAGES`] belongs to exactly one row.
pub const STAGE_ROWS: [(&str, &[&str]); 7] = [
    ("kernel entry/exit, client side", &["client-entry", "client-exit"]),
    ("kernel entry/exit, server side", &["server-entry", "server-exit"]),
    ("port translation", &["translate"]),
    ("argument checks", &["checks"]),
    ("activation switch", &["switch"]),
    ("message copy", &["copy"]),
    ("statistics", &["stats"]),
];

/// The paths of the priority-inversion experiment, in table order:
/// (protocol name, heading). Every domain is protected.
pub const INVERSION_PATHS: [(&str, &str); 2] = [(MIGRATING_PROTECTED, "migrating"), (SWITCHING, "switching")];
/// The loads of the priority-inversion experiment, in table order:
/// (protocol name, description).
pub const LOADS: [(&str, &str); 3] = [
    ("unloaded", "no other client"),
    ("low", "low-priority clients calling the server in a loop"),
    ("low+medium", "the same, and a medium-priority thread woken by the same timer ticks"),
];
/// The test name of the priority-inversion records in the JSON output.
pub const INVERSION_TEST: &str = "priority-inversion";

/// The configurations of the macro benchmark `build`, in table order:
/// (protocol name, description). The first is the one ratios divide by.
pub const BUILD_CONFIGS: [(&str, &str); 4] = [
    ("protected", "every domain protected, servers on pools (migrating)"),
    ("servers-merged", "fs, compiler and linker merged, the driver protected"),
    ("all-merged", "every domain merged"),
    ("switching", "every domain protected, servers on server threads"),
];

/// The first elements of a table of pairs.
fn names(table: &[(&'static str, &'static str)]) -> Vec<&'static str> {
    table.iter().map(|pair| pair.0).collect()
}

/// The description of a mode (`server-merged` → `protected client → merged
/// server`), or the mode itself if unknown.
pub fn mode_text(mode: &str) -> &str {
    MODES.iter().find(|m| m.0 == mode).map_or(mode, |m| m.1)
}

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

/// `BENCH-FLIP`: the kernel changed a domain's mode between rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    /// The domain, as the kernel names it.
    pub domain: String,
    /// Its new mode: `protected` or `merged`.
    pub mode: String,
}

/// `BENCH`: one figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// The invocation path (`switching`, `migrating-protected`, `floor-call`, ...).
    pub path: String,
    /// The mode (`protected`, `server-merged`, `both-merged`).
    pub mode: String,
    /// The test (`null`, `32in`, `1kin`, `32kin`, `32kin-lent`).
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
    /// The mode.
    pub mode: String,
    /// The test.
    pub test: String,
    /// Copies, counted by the kernel.
    pub copies: u64,
}

/// `BENCH-STAGE`: the instructions of one stage of the null call on one
/// side, counted by the kernel between labels in its fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The invocation path.
    pub path: String,
    /// The mode.
    pub mode: String,
    /// `call` or `return`.
    pub side: String,
    /// One of [`STAGES`].
    pub stage: String,
    /// Instructions in the stage.
    pub instructions: u64,
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

/// `BENCH-INVERSION-SETUP`: how the priority-inversion experiment was run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InversionSetup {
    /// High-priority calls per (path, load).
    pub calls: u64,
    /// The server's work per request, as the client measured it locally.
    pub work: u64,
    /// The medium-priority thread's burst, measured the same way.
    pub medium: u64,
    /// Low-priority clients in the loaded runs.
    pub low_clients: u64,
    /// Server threads of the switching server.
    pub server_threads: u64,
    /// Activations in the migrating server's pool.
    pub pool: u64,
    /// The high-priority client's priority (0 lowest, 31 highest).
    pub priority_high: u64,
    /// The medium-priority thread's.
    pub priority_medium: u64,
    /// The low-priority clients'.
    pub priority_low: u64,
    /// The switching server's thread's.
    pub priority_server: u64,
    /// The unit of `work` and `medium`.
    pub unit: String,
}

/// `BENCH-INVERSION`: the high-priority client's call latency on one path
/// under one load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inversion {
    /// `migrating-protected` or `switching`.
    pub path: String,
    /// One of [`LOADS`].
    pub load: String,
    /// `cycles` or `instructions`.
    pub unit: String,
    /// Median over the calls.
    pub median: u64,
    /// Minimum.
    pub min: u64,
    /// Maximum.
    pub max: u64,
    /// How many calls.
    pub calls: u64,
}

/// `BENCH-BUILD`: one configuration of the macro benchmark `build`, the
/// counters' differences around the driver's build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// One of [`BUILD_CONFIGS`].
    pub config: String,
    /// Source files in the tree.
    pub files: u64,
    /// Instructions retired at EL0 and EL1.
    pub instructions: u64,
    /// Generic-timer counts.
    pub ticks: u64,
    /// Payload copies the kernel made.
    pub copies: u64,
    /// Calls that migrated into a pool activation through a trap.
    pub migrating: u64,
    /// Calls from merged code into a merged activation, no trap.
    pub merged: u64,
    /// Calls handed to or queued for a server thread.
    pub switching: u64,
    /// Of those, the calls the kernel's general path routed.
    pub general: u64,
    /// The output's checksum (hexadecimal, as printed).
    pub checksum: String,
}

impl Build {
    /// Every RPC the build made, by whichever path.
    pub fn calls(&self) -> u64 {
        self.migrating + self.merged + self.switching
    }
}

/// Everything a complete benchmark transcript says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The `BENCH-BEGIN` line.
    pub begin: Begin,
    /// The mode changes, in order.
    pub flips: Vec<Flip>,
    /// The figures, in the order the kernel printed them.
    pub measurements: Vec<Measurement>,
    /// The copy counts, in order.
    pub copies: Vec<Copies>,
    /// The stage counts, in order.
    pub stages: Vec<Stage>,
    /// The memory line, if printed.
    pub memory: Option<Memory>,
    /// The priority-inversion experiment's set-up line, if printed.
    pub inversion_setup: Option<InversionSetup>,
    /// The priority-inversion experiment's rows, in order.
    pub inversions: Vec<Inversion>,
    /// The macro benchmark's configurations, in order.
    pub builds: Vec<Build>,
    /// `BENCH-*` lines of a kind this module does not know, verbatim.
    pub unrecognised: Vec<String>,
}

/// The distinct pairs of `pairs`, in order of first appearance.
fn first_appearances<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for pair in pairs {
        if !seen.contains(&pair) {
            seen.push(pair);
        }
    }
    seen
}

impl Report {
    /// The figure for (path, mode, test, scope), if reported.
    pub fn get(&self, path: &str, mode: &str, test: &str, scope: &str) -> Option<&Measurement> {
        self.measurements.iter().find(|m| m.path == path && m.mode == mode && m.test == test && m.scope == scope)
    }

    /// The copy count for (path, mode, test), if reported.
    pub fn copies_of(&self, path: &str, mode: &str, test: &str) -> Option<u64> {
        self.copies.iter().find(|c| c.path == path && c.mode == mode && c.test == test).map(|c| c.copies)
    }

    /// The instructions of (path, mode, side, stage), if reported.
    pub fn stage(&self, path: &str, mode: &str, side: &str, stage: &str) -> Option<u64> {
        self.stages
            .iter()
            .find(|s| s.path == path && s.mode == mode && s.side == side && s.stage == stage)
            .map(|s| s.instructions)
    }

    /// The (path, mode) pairs with figures, in order of first appearance.
    pub fn series(&self) -> Vec<(&str, &str)> {
        first_appearances(self.measurements.iter().map(|m| (m.path.as_str(), m.mode.as_str())))
    }

    /// The priority-inversion row for (path, load), if reported.
    pub fn inversion(&self, path: &str, load: &str) -> Option<&Inversion> {
        self.inversions.iter().find(|i| i.path == path && i.load == load)
    }

    /// The macro benchmark's figures for `config`, if reported.
    pub fn build(&self, config: &str) -> Option<&Build> {
        self.builds.iter().find(|b| b.config == config)
    }

    /// The (path, mode) pairs with stage counts, in order of first
    /// appearance.
    pub fn stage_series(&self) -> Vec<(&str, &str)> {
        first_appearances(self.stages.iter().map(|s| (s.path.as_str(), s.mode.as_str())))
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
    /// `BENCH-FLIP ...`
    Flip(Flip),
    /// `BENCH ...`
    Measurement(Measurement),
    /// `BENCH-COPIES ...`
    Copies(Copies),
    /// `BENCH-STAGE ...`
    Stage(Stage),
    /// `BENCH-MEMORY ...`
    Memory(Memory),
    /// `BENCH-INVERSION-SETUP ...`
    InversionSetup(InversionSetup),
    /// `BENCH-INVERSION ...`
    Inversion(Inversion),
    /// `BENCH-BUILD ...`
    Build(Build),
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

/// The fields of `BENCH-BEGIN`.
fn begin_line(f: &mut Fields<'_>) -> Result<Line, String> {
    let boot_id = f.text("boot_id")?;
    let hex = boot_id.strip_prefix("0x").unwrap_or(boot_id);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`boot_id={boot_id}` is not hexadecimal"));
    }
    Ok(Line::Begin(Begin {
        boot_id: boot_id.to_string(),
        board: f.text("board")?.to_string(),
        counter: f.one_of("counter", &UNITS)?,
        repetitions: f.number("repetitions")?,
        warmup: f.number("warmup")?,
    }))
}

/// The fields of `BENCH`.
fn measurement_line(f: &mut Fields<'_>) -> Result<Line, String> {
    let m = Measurement {
        path: f.text("path")?.to_string(),
        mode: f.one_of("mode", &names(&MODES))?,
        test: f.one_of("test", &names(&TESTS))?,
        scope: f.one_of("scope", &names(&SCOPES))?,
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
    Ok(Line::Measurement(m))
}

/// The fields of `BENCH-STAGE`: stages are counted on the null call only,
/// so its test must be `null` (and is not kept).
fn stage_line(f: &mut Fields<'_>) -> Result<Line, String> {
    let path = f.text("path")?.to_string();
    let mode = f.one_of("mode", &names(&MODES))?;
    f.one_of("test", &["null"])?;
    Ok(Line::Stage(Stage {
        path,
        mode,
        side: f.one_of("side", &SIDES)?,
        stage: f.one_of("stage", &STAGES)?,
        instructions: f.number("instructions")?,
    }))
}

/// The fields of `BENCH-INVERSION-SETUP`.
fn inversion_setup_line(f: &mut Fields<'_>) -> Result<Line, String> {
    Ok(Line::InversionSetup(InversionSetup {
        calls: f.number("calls")?,
        work: f.number("work")?,
        medium: f.number("medium")?,
        low_clients: f.number("low_clients")?,
        server_threads: f.number("server_threads")?,
        pool: f.number("pool")?,
        priority_high: f.number("priority_high")?,
        priority_medium: f.number("priority_medium")?,
        priority_low: f.number("priority_low")?,
        priority_server: f.number("priority_server")?,
        unit: f.one_of("unit", &UNITS)?,
    }))
}

/// The fields of `BENCH-INVERSION`.
fn inversion_line(f: &mut Fields<'_>) -> Result<Line, String> {
    let i = Inversion {
        path: f.one_of("path", &names(&INVERSION_PATHS))?,
        load: f.one_of("load", &names(&LOADS))?,
        unit: f.one_of("unit", &UNITS)?,
        median: f.number("median")?,
        min: f.number("min")?,
        max: f.number("max")?,
        calls: f.number("calls")?,
    };
    if i.calls == 0 {
        return Err("`calls=0`: a row needs at least one call".to_string());
    }
    if i.min > i.median || i.median > i.max {
        return Err(format!("min {}, median {} and max {} are not in order", i.min, i.median, i.max));
    }
    Ok(Line::Inversion(i))
}

/// The fields of `BENCH-BUILD`.
fn build_line(f: &mut Fields<'_>) -> Result<Line, String> {
    let config = f.one_of("config", &names(&BUILD_CONFIGS))?;
    let files = f.number("files")?;
    let instructions = f.number("instructions")?;
    let ticks = f.number("ticks")?;
    let copies = f.number("copies")?;
    let migrating = f.number("rpc.migrating")?;
    let merged = f.number("rpc.merged")?;
    let switching = f.number("rpc.switching")?;
    let general = f.number("rpc.general")?;
    let checksum = f.text("checksum")?;
    if checksum.len() != 16 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`checksum={checksum}` is not 16 hexadecimal digits"));
    }
    if files == 0 {
        return Err("`files=0`: a build needs a file".to_string());
    }
    let b = Build {
        config,
        files,
        instructions,
        ticks,
        copies,
        migrating,
        merged,
        switching,
        general,
        checksum: checksum.to_string(),
    };
    if b.general > b.calls() {
        return Err(format!("{} calls by the general path, of {} in all", b.general, b.calls()));
    }
    Ok(Line::Build(b))
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
    let known = [
        "BENCH",
        "BENCH-BEGIN",
        "BENCH-FLIP",
        "BENCH-COPIES",
        "BENCH-STAGE",
        "BENCH-MEMORY",
        "BENCH-INVERSION-SETUP",
        "BENCH-INVERSION",
        "BENCH-BUILD",
        "BENCH-END",
    ];
    if !known.contains(&tag) {
        return Ok(Some(Line::Unrecognised(line.to_string())));
    }
    let mut f = Fields::new(words)?;
    let parsed = match tag {
        "BENCH-BEGIN" => begin_line(&mut f)?,
        "BENCH-FLIP" => {
            Line::Flip(Flip { domain: f.text("domain")?.to_string(), mode: f.one_of("mode", &FLIP_MODES)? })
        }
        "BENCH" => measurement_line(&mut f)?,
        "BENCH-COPIES" => Line::Copies(Copies {
            path: f.text("path")?.to_string(),
            mode: f.one_of("mode", &names(&MODES))?,
            test: f.one_of("test", &names(&TESTS))?,
            copies: f.number("copies")?,
        }),
        "BENCH-STAGE" => stage_line(&mut f)?,
        "BENCH-MEMORY" => Line::Memory(Memory {
            thread: f.number("thread")?,
            activation: f.number("activation")?,
            kernel_stack: f.number("kernel_stack")?,
        }),
        "BENCH-INVERSION-SETUP" => inversion_setup_line(&mut f)?,
        "BENCH-INVERSION" => inversion_line(&mut f)?,
        "BENCH-BUILD" => build_line(&mut f)?,
        "BENCH-END" => Line::End,
        _ => unreachable!("tag {tag} is known but not handled"),
    };
    f.done()?;
    Ok(Some(parsed))
}

/// The records of a transcript as they are collected, before the checks
/// that need the whole of it.
#[derive(Default)]
struct Collected {
    flips: Vec<Flip>,
    measurements: Vec<Measurement>,
    copies: Vec<Copies>,
    stages: Vec<Stage>,
    memory: Option<Memory>,
    inversion_setup: Option<InversionSetup>,
    inversions: Vec<Inversion>,
    builds: Vec<Build>,
    unrecognised: Vec<String>,
}

impl Collected {
    /// Adds a record line (anything but `BENCH-BEGIN` and `BENCH-END`), or
    /// says why it cannot be added.
    fn add(&mut self, line: Line) -> Result<(), &'static str> {
        match line {
            Line::Flip(f) => self.flips.push(f),
            Line::Measurement(m) => {
                if self
                    .measurements
                    .iter()
                    .any(|o| o.path == m.path && o.mode == m.mode && o.test == m.test && o.scope == m.scope)
                {
                    return Err("this path, mode, test and scope were already reported");
                }
                self.measurements.push(m);
            }
            Line::Copies(c) => {
                if self.copies.iter().any(|o| o.path == c.path && o.mode == c.mode && o.test == c.test) {
                    return Err("copies for this path, mode and test were already reported");
                }
                self.copies.push(c);
            }
            Line::Stage(s) => {
                if self
                    .stages
                    .iter()
                    .any(|o| o.path == s.path && o.mode == s.mode && o.side == s.side && o.stage == s.stage)
                {
                    return Err("this stage and side were already reported for this path and mode");
                }
                self.stages.push(s);
            }
            Line::Memory(_) if self.memory.is_some() => return Err("a second BENCH-MEMORY"),
            Line::Memory(m) => self.memory = Some(m),
            Line::InversionSetup(_) if self.inversion_setup.is_some() => return Err("a second BENCH-INVERSION-SETUP"),
            Line::InversionSetup(s) => self.inversion_setup = Some(s),
            Line::Inversion(i) => {
                if self.inversions.iter().any(|o| o.path == i.path && o.load == i.load) {
                    return Err("this path and load were already reported");
                }
                self.inversions.push(i);
            }
            Line::Build(b) => {
                if self.builds.iter().any(|o| o.config == b.config) {
                    return Err("this build configuration was already reported");
                }
                self.builds.push(b);
            }
            Line::Unrecognised(text) => self.unrecognised.push(text),
            Line::Begin(_) | Line::End => unreachable!("BENCH-BEGIN and BENCH-END are not records"),
        }
        Ok(())
    }
}

/// Parses a whole run's output into a [`Report`], or lists every problem.
pub fn parse(output: &str) -> Result<Report, ParseErrors> {
    let mut problems = Vec::new();
    let mut begin: Option<Begin> = None;
    let mut ended = false;
    let mut collected = Collected::default();
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
        let why = match line {
            _ if ended => Err("after BENCH-END"),
            Line::Begin(b) if begin.is_none() => {
                begin = Some(b);
                Ok(())
            }
            Line::Begin(_) => Err("a second BENCH-BEGIN"),
            _ if begin.is_none() => Err("before BENCH-BEGIN"),
            Line::End => {
                ended = true;
                Ok(())
            }
            record => collected.add(record),
        };
        if let Err(why) = why {
            problems.push(format!("line {number}: {why}: `{}`", text.trim_end()));
        }
    }
    if begin.is_none() {
        problems.push("no BENCH-BEGIN line: the benchmark did not start".to_string());
    } else if !ended {
        problems.push("no BENCH-END line: the benchmark did not finish".to_string());
    }
    match begin {
        Some(begin) if problems.is_empty() => {
            let Collected {
                flips,
                measurements,
                copies,
                stages,
                memory,
                inversion_setup,
                inversions,
                builds,
                unrecognised,
            } = collected;
            Ok(Report {
                begin,
                flips,
                measurements,
                copies,
                stages,
                memory,
                inversion_setup,
                inversions,
                builds,
                unrecognised,
            })
        }
        _ => Err(ParseErrors(problems)),
    }
}

/// `a ÷ b`, two decimals; `n/a` if either is missing or the divisor is zero.
pub fn ratio(a: Option<u64>, b: Option<u64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0 => format!("{:.2}", a as f64 / b as f64),
        _ => "n/a".to_string(),
    }
}

/// A figure as the tables print it (`—` when not reported).
pub fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "—".to_string(), |v| v.to_string())
}
