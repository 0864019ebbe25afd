//! The macro benchmark `build`, run from the kernel's side: the four
//! configurations, what each costs, and the check that they all built the
//! same thing — and `kernel.build`, the kernel object that runs them on
//! request (the shell's `bench build`).
//!
//! The domains are `tern-buildbench`'s (a driver, a compiler, a linker
//! and a file server; see that crate for the workload). For each
//! [`Config`] this makes a fresh set of them, starts the three servers on
//! pools (or on server threads, for [`Config::Switching`]), gives the
//! driver, compiler and linker their send rights, merges what the
//! configuration merges, has the driver generate the tree and compute the
//! expected checksum in memory, and then measures one thing: the driver's
//! `BUILD` step, from the kernel, around `domains::call`. Read before and
//! after it: the PMU's INST_RETIRED at EL0+EL1 (event counter 0, set up by
//! `tern_aarch64::pmu::enable`), the generic timer's counter, and the
//! kernel's RPC statistics (calls by path, payload copies). Then the tree
//! is removed and the domains terminated.
//!
//! The window holds everything the CPU did for the build: the driver,
//! both servers, the file server, the kernel, the scheduler, and the
//! thread `domains::call` starts the step on — the last the same in every
//! configuration. It is [`run`] (one configuration, its [`Figures`]
//! returned), [`run_each`] (all four, in order, each handed on as it
//! ends) and [`run_all`] (all four, each printed as a `BENCH-BUILD` line,
//! the checksums compared): the harness's `build` and `bench` scenarios
//! use the last.
//!
//! **`kernel.build`** is a domain of the kernel's own code, like
//! `kernel.clock` and `kernel.system`: the image's start merges it into
//! the kernel domain, so its pool activations run at the kernel's level,
//! where making, starting, merging and measuring domains is allowed. It
//! registers as `build` and answers one request,
//! `tern_buildbench::protocol::RUN_ALL` (payload: the file count, 0 for
//! the default): every configuration, in order, then the reply: the
//! [`table`] as text, or `FAILED` with why, or an error code. The caller's
//! thread waits in the kernel activation meanwhile (seconds, for the
//! default tree). Served protected it refuses (`NoRight`).
//!
//! What it leaves out: repetitions (a build is long enough that one run
//! is the figure: under QEMU with `-icount shift=0` it is exact; on the Pi
//! it varies with caches and timer interrupts), and a 64-bit instruction
//! count: the Cortex-A72's event counters are 32 bits, so a build whose
//! instruction counter wrapped (its overflow flag, cleared before the
//! window, is set after it) is refused rather than reported short. (The
//! check was once a cycle bound, 2^30 cycles; it refused long builds that
//! had not wrapped — under QEMU without `-icount`, whose cycle counter
//! follows host time, whenever the host was busy.)

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, state, timer};
use tern_buildbench::{driver_argument, protocol, server_argument, step, work};
use tern_core::domain::DomainId;
use tern_inks::gate;
use tern_inks::mode::DomainMode;
use tern_inks::service::{self, MODE_POOL, MODE_THREADS, Reply, Request, Service};

/// One configuration of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Config {
    /// Every domain protected; the servers on pools (migrating threads).
    Protected,
    /// The file server, compiler and linker merged, the driver protected.
    ServersMerged,
    /// All four merged.
    AllMerged,
    /// Every domain protected; the servers on server threads (switching).
    Switching,
}

/// The configurations, in the order they run (the first is the one the
/// ratios divide by).
pub const CONFIGS: [Config; 4] = [Config::Protected, Config::ServersMerged, Config::AllMerged, Config::Switching];

impl Config {
    /// Its name in `BENCH-BUILD` lines.
    pub const fn name(self) -> &'static str {
        match self {
            Config::Protected => "protected",
            Config::ServersMerged => "servers-merged",
            Config::AllMerged => "all-merged",
            Config::Switching => "switching",
        }
    }
}

/// What one build cost, and what it built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    /// The configuration.
    pub config: Config,
    /// Source files in the tree.
    pub files: usize,
    /// Instructions retired at EL0 and EL1 (the PMU's event counter 0).
    pub instructions: u64,
    /// Generic-timer counts (CNTVCT_EL0).
    pub ticks: u64,
    /// Payload copies the kernel made.
    pub copies: u64,
    /// Calls that migrated into a pool activation through a trap (fast
    /// or general path).
    pub migrating: u64,
    /// Calls from merged code into a merged pool activation, no trap.
    pub merged: u64,
    /// Calls handed to (or queued for) a server thread.
    pub switching: u64,
    /// Of all of those, the calls the kernel's general (Rust) path routed.
    pub general: u64,
    /// The output's checksum.
    pub checksum: u64,
}

impl Figures {
    /// The `BENCH-BUILD` line (`docs/bench.md`, "The protocol").
    pub fn line(&self) -> String {
        format!(
            "BENCH-BUILD config={} files={} instructions={} ticks={} copies={} rpc.migrating={} rpc.merged={} rpc.switching={} rpc.general={} checksum={:016x}",
            self.config.name(),
            self.files,
            self.instructions,
            self.ticks,
            self.copies,
            self.migrating,
            self.merged,
            self.switching,
            self.general,
            self.checksum
        )
    }
}

/// The counters the window is measured with.
#[derive(Clone, Copy)]
struct Sample {
    instructions: u64,
    ticks: u64,
    statistics: tern_core::machine::RpcStatistics,
}

impl Sample {
    fn take() -> Sample {
        let statistics = state::with(|kernel| *kernel.statistics());
        let instructions: u64;
        // SAFETY: reads a PMU counter (EL1 may); no memory, no effects.
        unsafe {
            core::arch::asm!(
                "mrs {i}, pmevcntr0_el0",
                i = out(reg) instructions,
                options(nomem, nostack, preserves_flags)
            );
        }
        Sample { instructions, ticks: timer::counter(), statistics }
    }
}

/// The domains of one configuration.
struct Set {
    fs: DomainId,
    compiler: DomainId,
    linker: DomainId,
    driver: DomainId,
}

impl Set {
    fn all(&self) -> [(DomainId, &'static str); 4] {
        [
            (self.fs, "build.fs"),
            (self.compiler, "build.compiler"),
            (self.linker, "build.linker"),
            (self.driver, "build.driver"),
        ]
    }
}

/// A domain's start: the word it returned, or why not.
fn start(domain: DomainId, argument: usize, what: &str) -> Result<usize, String> {
    match domains::call(domain, argument) {
        Ok(Outcome::Returned(word)) => Ok(word),
        other => Err(format!("{what}: {other:?}")),
    }
}

/// A server's start: its port (in its space).
fn start_server(domain: DomainId, argument: usize, what: &str) -> Result<u32, String> {
    match start(domain, argument, what)? {
        port if port < u32::MAX as usize => Ok(port as u32),
        _ => Err(format!("{what} did not start")),
    }
}

/// Give `to` a send right to `from`'s port `port`; its name there.
fn grant(from: DomainId, port: u32, to: DomainId) -> Result<u32, String> {
    state::with(|kernel| kernel.grant_send_right(from, port, to)).ok_or_else(|| "a send right refused".into())
}

/// Make the domains, start the servers, hand out the rights, merge; the
/// set and the driver's names for (fs, compiler, linker).
fn set_up(config: Config) -> Result<(Set, [u32; 3]), String> {
    let create = |name: &str| {
        domains::create(name).map_err(|error| match error {
            tern_core::domains::DomainError::ArenaFull => {
                format!("{name}: no arena slot left (the benchmark needs four; `domains` lists what holds them)")
            }
            error => format!("{name}: {error:?}"),
        })
    };
    let set = Set {
        fs: create("build.fs")?,
        compiler: create("build.compiler")?,
        linker: create("build.linker")?,
        driver: create("build.driver")?,
    };
    let mode = if config == Config::Switching { MODE_THREADS } else { MODE_POOL };
    let fs_port = start_server(set.fs, mode, "build.fs")?;
    let compiler_fs = grant(set.fs, fs_port, set.compiler)?;
    let linker_fs = grant(set.fs, fs_port, set.linker)?;
    let compiler_port = start_server(set.compiler, server_argument(mode, compiler_fs), "build.compiler")?;
    let linker_port = start_server(set.linker, server_argument(mode, linker_fs), "build.linker")?;
    let names = [
        grant(set.fs, fs_port, set.driver)?,
        grant(set.compiler, compiler_port, set.driver)?,
        grant(set.linker, linker_port, set.driver)?,
    ];
    // Server threads (more urgent than this one) reach their receive.
    tern_aarch64::threads::yield_now();
    let merged: &[DomainId] = match config {
        Config::Protected | Config::Switching => &[],
        Config::ServersMerged => &[set.fs, set.compiler, set.linker],
        Config::AllMerged => &[set.fs, set.compiler, set.linker, set.driver],
    };
    for &domain in merged {
        domains::set_mode_once_idle(domain, DomainMode::Merged)
            .map_err(|error| format!("merging domain {}: {error}", domain.0))?;
    }
    Ok((set, names))
}

/// Terminate the set (whatever happened before).
fn tear_down(set: &Set) {
    state::with(|kernel| {
        for (domain, _) in set.all() {
            kernel.terminate_domain(domain);
        }
    });
    tern_aarch64::threads::yield_now();
    state::with(|kernel| kernel.reclaim_dead_domains());
}

/// Run one build in `config` over a tree of `files` sources; its figures,
/// or why it failed (a driver step's error code, a checksum that is not
/// the expected one, an instruction counter that wrapped).
pub fn run(config: Config, files: usize) -> Result<Figures, String> {
    if files == 0 || files > work::FILES_MAX {
        return Err(format!("{files} files: from 1 to {}", work::FILES_MAX));
    }
    let (set, [fs, compiler, linker]) = set_up(config)?;
    let result = measure(config, files, &set, [fs, compiler, linker]);
    tear_down(&set);
    result
}

fn measure(config: Config, files: usize, set: &Set, [fs, compiler, linker]: [u32; 3]) -> Result<Figures, String> {
    let argument = |step: usize| {
        driver_argument(step, files, fs, compiler, linker).ok_or_else(|| String::from("port names too wide"))
    };
    let name = config.name();
    let driver = |step: usize, what: &str| -> Result<usize, String> {
        start(set.driver, argument(step)?, &format!("{name}: the driver's {what}"))
    };
    let checksum = |word: usize, what: &str| {
        work::checksum_of(word).ok_or_else(|| format!("{name}: the driver's {what} failed with code {word:#x}"))
    };
    match driver(step::GENERATE, "generate")? {
        0 => {}
        code => return Err(format!("{name}: generating the tree failed with code {code:#x}")),
    }
    let expected = checksum(driver(step::EXPECT, "expect")?, "expect")?;
    tern_aarch64::pmu::clear_overflow();
    let before = Sample::take();
    let built = driver(step::BUILD, "build");
    let after = Sample::take();
    let wrapped = tern_aarch64::pmu::instructions_overflowed();
    let built = checksum(built?, "build")?;
    match driver(step::CLEAN, "clean")? {
        0 => {}
        code => return Err(format!("{name}: cleaning up failed with code {code:#x}")),
    }
    if built != expected {
        return Err(format!("{name}: built checksum {built:016x}, expected {expected:016x}"));
    }
    // The event counter is 32 bits: its overflow flag, cleared before the
    // window, says whether it wrapped within it (a wrapped count is
    // refused, not reported short).
    if wrapped {
        return Err(format!("{name}: the 32-bit instruction counter wrapped (over 2^32 instructions)"));
    }
    let (a, b) = (after.statistics, before.statistics);
    Ok(Figures {
        config,
        files,
        instructions: after.instructions.wrapping_sub(before.instructions) & u64::from(u32::MAX),
        ticks: after.ticks - before.ticks,
        copies: a.payload_copies - b.payload_copies,
        migrating: a.migrated - b.migrated,
        merged: a.direct - b.direct,
        switching: (a.handed_off + a.queued) - (b.handed_off + b.queued),
        general: a.general - b.general,
        checksum: built,
    })
}

/// Every configuration, in [`CONFIGS`] order, each handed to `each` as it
/// ends; the figures, or why a build failed (the checksums are not
/// compared here).
pub fn run_each(files: usize, mut each: impl FnMut(&Figures)) -> Result<Vec<Figures>, String> {
    tern_aarch64::pmu::enable();
    let mut all = Vec::with_capacity(CONFIGS.len());
    for config in CONFIGS {
        let figures = run(config, files)?;
        each(&figures);
        all.push(figures);
    }
    Ok(all)
}

/// Every configuration, in [`CONFIGS`] order, each printed as its
/// `BENCH-BUILD` line as it ends; an error if any build failed or the
/// checksums differ.
pub fn run_all(files: usize) -> Result<Vec<Figures>, String> {
    let all = run_each(files, |figures| kprintln!("{}", figures.line()))?;
    if !same_checksum(&all) {
        return Err("the configurations built different outputs".into());
    }
    Ok(all)
}

/// Whether every build made the same output.
pub fn same_checksum(all: &[Figures]) -> bool {
    all.windows(2).all(|pair| pair[0].checksum == pair[1].checksum)
}

/// `part / whole` to two decimals, or `-` when `whole` is 0 (QEMU counts
/// no instructions without `-icount`).
fn ratio(part: u64, whole: u64) -> String {
    match (u128::from(part) * 100).checked_div(u128::from(whole)) {
        Some(hundredths) => format!("{}.{:02}", hundredths / 100, hundredths % 100),
        None => String::from("-"),
    }
}

/// The figures as the shell prints them: a row a configuration
/// (instructions, ticks, payload copies, calls by path, checksum, and
/// instructions and ticks as ratios to the protected configuration's),
/// then whether every configuration built the same output.
pub fn table(all: &[Figures]) -> String {
    let mut text = String::new();
    let Some(first) = all.first() else { return text };
    let _ = writeln!(text, "build: {} files, {} configurations", first.files, all.len());
    let _ = writeln!(
        text,
        "{:<15} {:>12} {:>10} {:>7} {:>9} {:>7} {:>9} {:>7}  {:<16} {:>6} {:>6}",
        "config",
        "instructions",
        "ticks",
        "copies",
        "migrating",
        "merged",
        "switching",
        "general",
        "checksum",
        "inst/p",
        "tick/p"
    );
    for figures in all {
        let _ = writeln!(
            text,
            "{:<15} {:>12} {:>10} {:>7} {:>9} {:>7} {:>9} {:>7}  {:016x} {:>6} {:>6}",
            figures.config.name(),
            figures.instructions,
            figures.ticks,
            figures.copies,
            figures.migrating,
            figures.merged,
            figures.switching,
            figures.general,
            figures.checksum,
            ratio(figures.instructions, first.instructions),
            ratio(figures.ticks, first.ticks),
        );
    }
    if same_checksum(all) {
        let _ = writeln!(text, "the same checksum in every configuration: {:016x}", first.checksum);
    } else {
        let _ = writeln!(text, "the checksums differ: the configurations built different outputs");
    }
    text
}

tern_inks::domain!(KERNEL_BUILD, "kernel.build", build_main);

/// Polls (10 ms each) a request waits for the boot thread to take it.
const UNTAKEN_POLLS: u32 = 200;

/// A request being served (a second one is `Busy`).
static BUSY: AtomicBool = AtomicBool::new(false);
/// The file count a request asked for, until the boot thread takes it (0:
/// none).
static ASKED: AtomicUsize = AtomicUsize::new(0);
/// The boot thread's answer: the table, or why not.
static ANSWER: spin::Mutex<Option<Result<String, String>>> = spin::Mutex::new(None);

/// Run the build a request asked for, if one did, and leave the answer
/// for its activation. Called by the image's boot thread, which runs
/// kernel code outside any activation: making, starting and waiting for
/// domains (`domains::call`) blocks the calling thread in the kernel's
/// own code, which a kernel activation (merged code, entering the kernel
/// only through its gate) may not do.
pub fn serve_pending() {
    let files = ASKED.swap(0, Ordering::Acquire);
    if files != 0 {
        let answer = run_each(files, |_| {}).map(|all| table(&all));
        *ANSWER.lock() = Some(answer);
    }
}

/// `kernel.build`'s service.
struct Build;

impl Service for Build {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        // Only ever served merged: protected, this code could not make
        // or measure domains.
        if !gate::current_mode().is_merged() {
            reply.set_label(tern_core::abi::Error::NoRight as u32);
            return;
        }
        let files = request.payload.get(..4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes);
        let files = match (request.label(), files) {
            (protocol::RUN_ALL, Some(0)) => work::FILES_DEFAULT,
            (protocol::RUN_ALL, Some(files)) if (files as usize) <= work::FILES_MAX => files as usize,
            _ => {
                reply.set_label(tern_core::abi::Error::InvalidArgument as u32);
                return;
            }
        };
        if BUSY.swap(true, Ordering::Acquire) {
            reply.set_label(tern_core::abi::Error::Busy as u32);
            return;
        }
        // The boot thread runs it (below); this activation polls for the
        // answer, sleeping between looks (an alert only cuts a sleep short).
        ASKED.store(files, Ordering::Release);
        let poll = (tern_aarch64::timer::frequency() / 100) as usize;
        let mut polls = 0;
        let answer = loop {
            let _ = gate::sleep(poll);
            if let Some(answer) = ANSWER.lock().take() {
                break answer;
            }
            polls += 1;
            // Not taken within the time: withdraw it (if the boot thread
            // takes it meanwhile, wait for its answer as ever).
            if polls >= UNTAKEN_POLLS && ASKED.compare_exchange(files, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break Err(String::from(
                    "not started within 2 s: a more urgent thread keeps the boot thread from running it (a spinning job? see jobs, kill)",
                ));
            }
        };
        BUSY.store(false, Ordering::Release);
        let (label, text) = match answer {
            Ok(text) => (protocol::OK, text),
            Err(why) => (protocol::FAILED, why),
        };
        reply.set_label(label);
        if reply.set_payload(text.as_bytes()).is_err() {
            reply.set_label(tern_core::abi::Error::ReplyTooLarge as u32);
        }
    }
}

fn build_main(mode: usize) -> usize {
    service::start(Some(protocol::NAME), Build, mode)
}
