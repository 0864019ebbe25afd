//! `tern-qemu-plugin`: a QEMU TCG plugin that counts what a benchmark
//! figure's calls cross: exceptions taken, `eret`s, TTBR0 writes, `isb`s,
//! TLB invalidations and DAIF writes, and the instructions themselves.
//!
//! **Why a plugin.** Under `-icount shift=0` the PMU's INST_RETIRED is
//! exact, but QEMU charges nothing for the operations that cost most on
//! silicon: taking an exception, returning from one, switching the
//! translation table, synchronising the pipeline, invalidating TLB
//! entries. So `cargo xtask bench` also counts them, from the same boot,
//! with this plugin: then a figure says not only how long a path is but
//! how many of those operations it does, and a person with per-operation
//! costs measured on a Pi 4 (`cargo xtask bench --calibrate`) can model
//! cycles from the two (`docs/bench.md`).
//!
//! **How.** At translation time every instruction is classified from its
//! encoding ([`classify`]) and gets an inline add to a counter of executed
//! instructions (QEMU's scoreboard: no call, and counted as each
//! instruction starts, so a block cut short counts only what ran). The
//! watched instructions and the vector entries also get a callback, which
//! runs a small state machine; the window's instruction count is the
//! difference of the counter between its two edges. The histogram is kept
//! by a callback per translation block of plain instructions (which QEMU
//! runs whole, taking interrupts between blocks) and per instruction in the
//! others, doing nothing outside a figure's first window. The harness executes `hint #0x7e` before it
//! measures a figure and `hint #0x7f` after: between them a figure is
//! being measured, and each read of a PMU counter (`mrs` of PMEVCNTR0_EL0,
//! PMEVCNTR1_EL0 or PMCCNTR_EL0, which the harness executes only around
//! each call) opens or closes a *window*. A window counts the instruction
//! that opens it and not the one that closes it, so its instruction count
//! is the PMU's difference between the two reads. In a window the plugin
//! counts every instruction, the exceptions (executions of the first
//! instruction of one of the 16 entries of the vector table, whose address
//! the xtask passes), and the watched instructions. For each figure it
//! keeps how many windows had each combination of counts (under icount a
//! repeated call repeats exactly, so there are few), and a per-PC
//! histogram of the figure's first window, from which the xtask builds the
//! stage tables. At exit it writes all of it to a text file (format below)
//! and the xtask pairs the k-th figure here with the k-th `BENCH` line.
//!
//! **Why declare the C API by hand.** QEMU's Debian package has the plugin
//! loader but not `qemu-plugin.h`, and the project cannot assume a C
//! compiler on CI. The plugin needs eleven functions and four types;
//! they are declared below from QEMU's documented API as of QEMU 10.0
//! (`qemu_plugin_insn_data` with its QEMU 9 signature, which copies). The
//! `qemu-plugin` crate on crates.io covers the whole API, but it brings
//! bindings generated per QEMU version, a dependency tree to vet and its
//! own licence terms to check for a project that is MIT OR Apache-2.0,
//! for eleven declarations; carrying them is cheaper and keeps the plugin
//! without dependencies. The symbols are resolved against the QEMU process
//! when it loads the plugin (a shared library may leave symbols undefined).
//!
//! **Threads.** The state sits behind one mutex. The benchmark runs QEMU
//! with `-icount`, which runs every vCPU in one thread, so the lock is
//! never contended; it is there so that the plugin stays sound anywhere.
//! Outside a figure's first window a plain block costs one atomic load.
//!
//! **Output**, one record per line:
//!
//! ```text
//! tern-qemu-plugin 1 vectors=0x40081000
//! figure index=0 windows=1000
//! window figure=0 count=1000 instructions=180 exceptions=2 erets=2 ttbr0=2 isb=2 tlbi=0 daif=0
//! pc figure=0 pc=0x40093a10 count=1
//! problem text...
//! end
//! ```
//!
//! What it leaves out: an instruction that faults is counted when it
//! starts and again when it is re-executed (a data abort inside a window
//! would add one; in the histogram, the rest of its block too); anything outside figures (the priority-inversion runs
//! read PMCCNTR_EL0 too, after the last figure, and are not windows); more
//! than the first window's histogram per figure.

mod classify;

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use classify::{Class, classify};

/// The plugin API version this plugin declares: the oldest QEMU 10.0
/// accepts (it takes 2 to 4), so that an older QEMU is refused only if it
/// lacks a function the plugin calls (loading then fails, naming it).
/// Tested with QEMU 10.0.2.
#[unsafe(no_mangle)]
pub static qemu_plugin_version: c_int = 2;

/// QEMU's plugin identifier.
type PluginId = u64;

/// QEMU's `struct qemu_plugin_tb`: a translation block being translated
/// (opaque; valid only during the translation callback).
#[repr(C)]
struct TranslationBlock {
    _opaque: [u8; 0],
}

/// QEMU's `struct qemu_plugin_insn`: one instruction of a translation
/// block (opaque; valid only during the translation callback).
#[repr(C)]
struct Instruction {
    _opaque: [u8; 0],
}

/// QEMU's `struct qemu_plugin_scoreboard`: per-vCPU storage (opaque).
#[repr(C)]
struct Scoreboard {
    _opaque: [u8; 0],
}

/// QEMU's `qemu_plugin_u64`: a 64-bit entry of a scoreboard, passed by
/// value.
#[repr(C)]
#[derive(Clone, Copy)]
struct ScoreboardU64 {
    score: *mut Scoreboard,
    offset: usize,
}

// SAFETY: the entry only names QEMU's scoreboard, which QEMU lets any
// thread add to (inline) and read (`qemu_plugin_u64_sum`).
unsafe impl Send for ScoreboardU64 {}

/// `QEMU_PLUGIN_CB_NO_REGS`: the callback reads no guest registers.
const CB_NO_REGS: c_int = 0;
/// `QEMU_PLUGIN_INLINE_ADD_U64`.
const INLINE_ADD_U64: c_int = 0;

unsafe extern "C" {
    fn qemu_plugin_register_vcpu_tb_trans_cb(id: PluginId, cb: extern "C" fn(PluginId, *mut TranslationBlock));
    fn qemu_plugin_tb_n_insns(tb: *const TranslationBlock) -> usize;
    fn qemu_plugin_tb_get_insn(tb: *const TranslationBlock, index: usize) -> *mut Instruction;
    fn qemu_plugin_insn_vaddr(insn: *const Instruction) -> u64;
    fn qemu_plugin_insn_data(insn: *const Instruction, dest: *mut c_void, len: usize) -> usize;
    fn qemu_plugin_register_vcpu_tb_exec_cb(
        tb: *mut TranslationBlock,
        cb: extern "C" fn(c_uint, *mut c_void),
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_register_vcpu_insn_exec_cb(
        insn: *mut Instruction,
        cb: extern "C" fn(c_uint, *mut c_void),
        flags: c_int,
        userdata: *mut c_void,
    );
    fn qemu_plugin_scoreboard_new(element_size: usize) -> *mut Scoreboard;
    fn qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(
        insn: *mut Instruction,
        op: c_int,
        entry: ScoreboardU64,
        imm: u64,
    );
    fn qemu_plugin_u64_sum(entry: ScoreboardU64) -> u64;
    fn qemu_plugin_register_atexit_cb(id: PluginId, cb: extern "C" fn(PluginId, *mut c_void), userdata: *mut c_void);
}

/// The counts of one window, in output order.
type Counts = [u64; 7];
/// The names of [`Counts`]' fields in the output.
const FIELDS: [&str; 7] = ["instructions", "exceptions", "erets", "ttbr0", "isb", "tlbi", "daif"];
const INSTRUCTIONS: usize = 0;
const EXCEPTIONS: usize = 1;

/// One translated instruction, as its execution callback sees it (leaked:
/// QEMU may run a translation for the rest of the run).
struct Watched {
    pc: u64,
    class: Class,
    /// The first instruction of a vector table entry.
    exception: bool,
    /// A `b` to the first instruction of a vector table entry: the entry
    /// it reaches is not an exception.
    into_vectors: bool,
}

/// A translation block of plain instructions only (none watched, no
/// vector entry), as its execution callback sees it (leaked, like
/// [`Watched`]).
struct Block {
    pcs: Box<[u64]>,
}

/// One figure: from `hint #0x7e` to `hint #0x7f`.
#[derive(Default)]
struct Figure {
    /// The window being counted, if one is open, and the executed
    /// instructions when it opened.
    window: Option<(Counts, u64)>,
    /// How many windows had each combination of counts.
    windows: BTreeMap<Counts, u64>,
    /// Executions per PC in the figure's first window.
    histogram: BTreeMap<u64, u64>,
}

impl Figure {
    /// Whether the figure's first window is open.
    fn recording(&self) -> bool {
        self.window.is_some() && self.windows.is_empty()
    }

    fn count(&mut self, watched: &Watched, exception: bool) {
        let recording = self.recording();
        let Some((window, _)) = self.window.as_mut() else { return };
        if exception {
            window[EXCEPTIONS] += 1;
        }
        let field = match watched.class {
            Class::Eret => Some(2),
            Class::Ttbr0 => Some(3),
            Class::Isb => Some(4),
            Class::Tlbi => Some(5),
            Class::Daif => Some(6),
            _ => None,
        };
        if let Some(field) = field {
            window[field] += 1;
        }
        if recording {
            *self.histogram.entry(watched.pc).or_default() += 1;
        }
    }

    fn record_block(&mut self, block: &Block) {
        if self.recording() {
            for pc in &block.pcs {
                *self.histogram.entry(*pc).or_default() += 1;
            }
        }
    }
}

/// Everything the plugin keeps.
struct State {
    out: String,
    vectors: u64,
    /// Instructions executed (all vCPUs), added to inline.
    executed: Option<ScoreboardU64>,
    /// The last watched instruction was a branch into the vector table.
    branched: bool,
    figure: Option<Figure>,
    figures: Vec<Figure>,
    problems: Vec<String>,
}

impl State {
    fn new(out: String, vectors: u64, executed: Option<ScoreboardU64>) -> State {
        State { out, vectors, executed, branched: false, figure: None, figures: Vec::new(), problems: Vec::new() }
    }

    /// `watched` runs; `now` says how many instructions have run (only
    /// asked for at a counter read).
    fn executed(&mut self, watched: &Watched, now: impl FnOnce() -> u64) {
        let exception = watched.exception && !self.branched;
        self.branched = watched.into_vectors;
        match (watched.class, self.figure.as_mut()) {
            (Class::MarkBegin, open) => {
                if open.is_some() {
                    self.problems.push(format!("figure {} began before the last one ended", self.figures.len() + 1));
                    self.end_figure();
                }
                self.figure = Some(Figure::default());
            }
            (Class::MarkEnd, None) => {
                self.problems.push(format!("a figure ended that never began (after figure {})", self.figures.len()))
            }
            (Class::MarkEnd, Some(_)) => self.end_figure(),
            (Class::CounterRead, Some(figure)) => match figure.window.take() {
                None => {
                    figure.window = Some(([0; 7], now()));
                    figure.count(watched, exception);
                }
                Some((mut window, start)) => {
                    window[INSTRUCTIONS] = now().wrapping_sub(start);
                    *figure.windows.entry(window).or_default() += 1;
                }
            },
            (_, Some(figure)) => figure.count(watched, exception),
            (_, None) => {}
        }
        RECORDING.store(self.figure.as_ref().is_some_and(Figure::recording), Ordering::Relaxed);
    }

    fn end_figure(&mut self) {
        let Some(figure) = self.figure.take() else { return };
        if figure.window.is_some() {
            self.problems.push(format!("figure {} ended inside a window", self.figures.len()));
        }
        self.figures.push(figure);
    }

    fn report(&self) -> String {
        let mut out = format!("tern-qemu-plugin 1 vectors={:#x}\n", self.vectors);
        for (index, figure) in self.figures.iter().enumerate() {
            let windows: u64 = figure.windows.values().sum();
            let _ = writeln!(out, "figure index={index} windows={windows}");
            for (counts, count) in &figure.windows {
                let _ = write!(out, "window figure={index} count={count}");
                for (name, value) in FIELDS.iter().zip(counts) {
                    let _ = write!(out, " {name}={value}");
                }
                out.push('\n');
            }
            for (pc, count) in &figure.histogram {
                let _ = writeln!(out, "pc figure={index} pc={pc:#x} count={count}");
            }
        }
        if self.figure.is_some() {
            let _ = writeln!(out, "problem figure {} never ended", self.figures.len());
        }
        for problem in &self.problems {
            let _ = writeln!(out, "problem {problem}");
        }
        out.push_str("end\n");
        out
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);
/// Whether a figure's first window is open: the only thing a plain block
/// or instruction looks at otherwise.
static RECORDING: AtomicBool = AtomicBool::new(false);

fn with_state(f: impl FnOnce(&mut State)) {
    let mut guard = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(state) = guard.as_mut() {
        f(state);
    }
}

extern "C" fn instruction_executed(_vcpu: c_uint, userdata: *mut c_void) {
    // SAFETY: `userdata` is the `Watched` leaked for this instruction in
    // `translated`; it is never freed or written again.
    let watched = unsafe { &*(userdata as *const Watched) };
    if watched.class == Class::Plain
        && !watched.exception
        && !watched.into_vectors
        && !RECORDING.load(Ordering::Relaxed)
    {
        return;
    }
    with_state(|state| {
        let executed = state.executed;
        // SAFETY: the entry is the scoreboard made at install, never freed.
        let now = || executed.map_or(0, |entry| unsafe { qemu_plugin_u64_sum(entry) });
        state.executed(watched, now);
    });
}

extern "C" fn block_executed(_vcpu: c_uint, userdata: *mut c_void) {
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: `userdata` is the `Block` leaked for this translation block
    // in `translated`; it is never freed or written again.
    let block = unsafe { &*(userdata as *const Block) };
    with_state(|state| {
        if let Some(figure) = state.figure.as_mut() {
            figure.record_block(block);
        }
    });
}

/// Classifies a translation block's instructions; every one gets the
/// inline add. A block of plain instructions only gets one callback for
/// the whole block (for the histogram); any other one per instruction.
extern "C" fn translated(_id: PluginId, tb: *mut TranslationBlock) {
    let (mut vectors, mut counter) = (0, None);
    with_state(|state| (vectors, counter) = (state.vectors, state.executed));
    // SAFETY: QEMU passes a translation block that is valid for the
    // duration of this callback; the instructions are fetched from it
    // by index below its count, and used only in this callback.
    unsafe {
        let count = qemu_plugin_tb_n_insns(tb);
        let mut watched = Vec::with_capacity(count);
        for index in 0..count {
            let insn = qemu_plugin_tb_get_insn(tb, index);
            let pc = qemu_plugin_insn_vaddr(insn);
            let mut bytes = [0u8; 4];
            let size = qemu_plugin_insn_data(insn, bytes.as_mut_ptr().cast(), bytes.len());
            let class = if size == 4 { classify(u32::from_le_bytes(bytes)) } else { Class::Plain };
            let entry_of_vectors = |address: u64| {
                let offset = address.wrapping_sub(vectors);
                vectors != 0 && offset < 0x800 && offset % 0x80 == 0
            };
            let exception = entry_of_vectors(pc);
            let into_vectors =
                size == 4 && classify::branch_target(u32::from_le_bytes(bytes), pc).is_some_and(entry_of_vectors);
            if let Some(entry) = counter {
                qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(insn, INLINE_ADD_U64, entry, 1);
            }
            watched.push((insn, Watched { pc, class, exception, into_vectors }));
        }
        if watched.iter().all(|(_, w)| w.class == Class::Plain && !w.exception && !w.into_vectors) {
            let block = Box::into_raw(Box::new(Block { pcs: watched.iter().map(|(_, w)| w.pc).collect() }));
            qemu_plugin_register_vcpu_tb_exec_cb(tb, block_executed, CB_NO_REGS, block.cast());
            return;
        }
        for (insn, w) in watched {
            let leaked = Box::into_raw(Box::new(w));
            qemu_plugin_register_vcpu_insn_exec_cb(insn, instruction_executed, CB_NO_REGS, leaked.cast());
        }
    }
}

extern "C" fn exiting(_id: PluginId, _userdata: *mut c_void) {
    with_state(|state| {
        if let Err(error) = std::fs::write(&state.out, state.report()) {
            eprintln!("tern-qemu-plugin: writing {}: {error}", state.out);
        }
    });
}

/// Parses the plugin's arguments: `out=PATH` (required) and
/// `vectors=0xADDRESS` (the vector table; without it no exception is
/// counted).
fn arguments<'a>(words: impl Iterator<Item = &'a str>) -> Result<(String, u64), String> {
    let (mut out, mut vectors) = (None, 0);
    for word in words {
        match word.split_once('=') {
            Some(("out", path)) if !path.is_empty() => out = Some(path.to_string()),
            Some(("vectors", hex)) => {
                vectors = u64::from_str_radix(hex.trim_start_matches("0x"), 16)
                    .map_err(|_| format!("`vectors={hex}` is not a hexadecimal address"))?;
                if vectors % 0x800 != 0 {
                    return Err(format!("`vectors={hex}` is not 2 KiB aligned, as a vector table is"));
                }
            }
            _ => return Err(format!("unknown argument `{word}` (out=PATH, vectors=0xADDRESS)")),
        }
    }
    Ok((out.ok_or("no `out=PATH` argument")?, vectors))
}

/// Called by QEMU when it loads the plugin.
///
/// # Safety
///
/// QEMU's contract: `info` points to its `qemu_info_t` (whose first field
/// is the target name), `argv` to `argc` NUL-terminated strings, all valid
/// during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn qemu_plugin_install(
    id: PluginId,
    info: *const *const c_char,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: per QEMU's contract above; `target_name` is the first
    // member of `qemu_info_t`.
    let target = unsafe { CStr::from_ptr(*info) }.to_string_lossy();
    if target != "aarch64" {
        eprintln!("tern-qemu-plugin: target {target}, not aarch64");
        return 1;
    }
    let count = usize::try_from(argc).unwrap_or(0);
    // SAFETY: per QEMU's contract above.
    let words: Vec<String> =
        (0..count).map(|i| unsafe { CStr::from_ptr(*argv.add(i)) }.to_string_lossy().into_owned()).collect();
    let (out, vectors) = match arguments(words.iter().map(String::as_str)) {
        Ok(parsed) => parsed,
        Err(why) => {
            eprintln!("tern-qemu-plugin: {why}");
            return 1;
        }
    };
    // SAFETY: a scoreboard of one u64 per vCPU, made from the install
    // function as the API allows; QEMU keeps it until the plugin goes.
    let score = unsafe { qemu_plugin_scoreboard_new(std::mem::size_of::<u64>()) };
    if score.is_null() {
        eprintln!("tern-qemu-plugin: QEMU gave no scoreboard");
        return 1;
    }
    let executed = ScoreboardU64 { score, offset: 0 };
    *STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(State::new(out, vectors, Some(executed)));
    // SAFETY: registering callbacks with the identifier QEMU gave us, as
    // its API requires, from the install function.
    unsafe {
        qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
        qemu_plugin_register_atexit_cb(id, exiting, std::ptr::null_mut());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(class: Class) -> Watched {
        Watched { pc: 0x1000, class, exception: false, into_vectors: false }
    }

    fn state() -> State {
        State::new(String::new(), 0x800, None)
    }

    #[test]
    fn windows_count_from_edge_to_edge() {
        let mut s = state();
        let plain = watched(Class::Plain);
        let read = watched(Class::CounterRead);
        let entry = Watched { pc: 0xa00, class: Class::Plain, exception: true, into_vectors: false };
        let branch = Watched { pc: 0x1100, class: Class::Plain, exception: false, into_vectors: true };
        let never = || -> u64 { panic!("asked for the count outside a counter read") };
        s.executed(&plain, never); // outside any figure
        s.executed(&watched(Class::MarkBegin), never);
        s.executed(&plain, never); // warm-up: no window
        for round in 0..3 {
            s.executed(&read, || 100 * round);
            s.executed(&plain, never);
            s.executed(&entry, never);
            s.executed(&branch, never); // into the vectors: the entry after it is no exception
            s.executed(&entry, never);
            s.executed(&watched(Class::Eret), never);
            s.executed(&watched(Class::Ttbr0), never);
            s.executed(&read, || 100 * round + 5);
        }
        s.executed(&watched(Class::MarkEnd), never);
        s.executed(&read, never); // after the figure: ignored
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.figures.len(), 1);
        assert_eq!(s.figures[0].windows, BTreeMap::from([([5, 1, 1, 1, 0, 0, 0], 3)]));
        // Watched instructions are recorded one by one (plain blocks by
        // their own callback); the first window only.
        assert_eq!(s.figures[0].histogram, BTreeMap::from([(0x1000, 4), (0xa00, 2), (0x1100, 1)]));
        let report = s.report();
        assert!(
            report
                .contains("window figure=0 count=3 instructions=5 exceptions=1 erets=1 ttbr0=1 isb=0 tlbi=0 daif=0\n")
        );
        assert!(report.ends_with("end\n"));
    }

    #[test]
    fn blocks_feed_the_first_window_histogram_only() {
        let mut s = state();
        let block = Block { pcs: vec![0x2000, 0x2004].into_boxed_slice() };
        s.executed(&watched(Class::MarkBegin), || 0);
        for _ in 0..2 {
            s.executed(&watched(Class::CounterRead), || 0);
            s.figure.as_mut().unwrap().record_block(&block);
            s.executed(&watched(Class::CounterRead), || 3);
        }
        assert_eq!(s.figure.as_ref().unwrap().histogram, BTreeMap::from([(0x1000, 1), (0x2000, 1), (0x2004, 1)]));
    }

    #[test]
    fn unbalanced_markers_are_problems() {
        let mut s = state();
        s.executed(&watched(Class::MarkEnd), || 0);
        s.executed(&watched(Class::MarkBegin), || 0);
        s.executed(&watched(Class::CounterRead), || 0);
        s.executed(&watched(Class::MarkBegin), || 0);
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert!(s.report().contains("problem figure 1 never ended"));
    }

    #[test]
    fn parses_arguments() {
        assert_eq!(arguments(["out=/tmp/x", "vectors=0x40081000"].into_iter()), Ok(("/tmp/x".into(), 0x4008_1000)));
        assert!(arguments(["vectors=0x40081000"].into_iter()).is_err());
        assert!(arguments(["out=/tmp/x", "vectors=0x40081004"].into_iter()).is_err());
        assert!(arguments(["out=/tmp/x", "verbose"].into_iter()).is_err());
    }
}
