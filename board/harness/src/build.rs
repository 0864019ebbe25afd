//! The macro benchmark `build`, run from the kernel's side: the four
//! configurations, what each costs, and the check that they all built the
//! same thing.
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
//! returned) and [`run_all`] (all four, each printed as a `BENCH-BUILD`
//! line, the checksums compared), so that a shell step can start a build
//! and read what it cost.
//!
//! What it leaves out: repetitions (a build is long enough that one run
//! is the figure: under QEMU with `-icount shift=0` it is exact; on the Pi
//! it varies with caches and timer interrupts), and a 64-bit instruction
//! count: the Cortex-A72's event counters are 32 bits, so a build whose
//! cycle count could let the instruction counter wrap is refused rather
//! than reported short.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, state, timer};
use tern_buildbench::{driver_argument, server_argument, step, work};
use tern_core::domain::DomainId;
use tern_inks::mode::DomainMode;
use tern_inks::service::{MODE_POOL, MODE_THREADS};

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

/// The command line's `tern.build.files` (0: not given).
static FILES: AtomicUsize = AtomicUsize::new(0);

/// Remember the command line's `tern.build.files`.
pub fn set_files(files: Option<u32>) {
    FILES.store(files.map_or(0, |files| files as usize), Ordering::Relaxed);
}

/// Source files a build uses: the command line's, or
/// [`work::FILES_DEFAULT`].
pub fn files() -> usize {
    match FILES.load(Ordering::Relaxed) {
        0 => work::FILES_DEFAULT,
        given => given,
    }
}

/// The counters the window is measured with.
#[derive(Clone, Copy)]
struct Sample {
    instructions: u64,
    cycles: u64,
    ticks: u64,
    statistics: tern_core::machine::RpcStatistics,
}

impl Sample {
    fn take() -> Sample {
        let statistics = state::with(|kernel| *kernel.statistics());
        let (instructions, cycles): (u64, u64);
        // SAFETY: reads two PMU counters (EL1 may); no memory, no effects.
        unsafe {
            core::arch::asm!(
                "mrs {i}, pmevcntr0_el0",
                "mrs {c}, pmccntr_el0",
                i = out(reg) instructions,
                c = out(reg) cycles,
                options(nomem, nostack, preserves_flags)
            );
        }
        Sample { instructions, cycles, ticks: timer::counter(), statistics }
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
    let create = |name: &str| domains::create(name).map_err(|error| format!("{name}: {error:?}"));
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
        crate::setup::set_mode_once_idle(domain, DomainMode::Merged)
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
/// the expected one, a counter that may have wrapped).
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
    let before = Sample::take();
    let built = driver(step::BUILD, "build");
    let after = Sample::take();
    let built = checksum(built?, "build")?;
    match driver(step::CLEAN, "clean")? {
        0 => {}
        code => return Err(format!("{name}: cleaning up failed with code {code:#x}")),
    }
    if built != expected {
        return Err(format!("{name}: built checksum {built:016x}, expected {expected:016x}"));
    }
    let cycles = after.cycles.wrapping_sub(before.cycles);
    // The A72 retires at most three instructions a cycle: under a
    // quarter of 2^32 cycles, the 32-bit event counter cannot have wrapped.
    if cycles >= 1 << 30 {
        return Err(format!("{name}: {cycles} cycles: the 32-bit instruction counter may have wrapped"));
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

/// Every configuration, in [`CONFIGS`] order, each printed as its
/// `BENCH-BUILD` line as it ends; an error if any build failed or the
/// checksums differ.
pub fn run_all(files: usize) -> Result<Vec<Figures>, String> {
    tern_aarch64::pmu::enable();
    let mut all = Vec::with_capacity(CONFIGS.len());
    for config in CONFIGS {
        let figures = run(config, files)?;
        kprintln!("{}", figures.line());
        all.push(figures);
    }
    if all.iter().any(|figures| figures.checksum != all[0].checksum) {
        return Err("the configurations built different outputs".into());
    }
    Ok(all)
}

/// The `build` scenario: [`run_all`] with the command line's file count;
/// every path the configuration takes must have been taken, and no
/// other.
pub fn scenario() -> crate::Verdict {
    let all = run_all(files())?;
    for figures in &all {
        let taken = match figures.config {
            Config::Protected => figures.migrating > 0 && figures.switching == 0,
            Config::ServersMerged => figures.migrating > 0 && figures.merged > 0,
            Config::AllMerged => figures.merged > 0 && figures.migrating == 0,
            Config::Switching => figures.switching > 0 && figures.migrating == 0,
        };
        // (Instructions are not checked: QEMU counts them only under
        // `-icount`, which `cargo xtask bench` gives and a boot test not.)
        if !taken || figures.ticks == 0 || figures.copies == 0 {
            return Err(format!(
                "{}: the counts are not what the configuration takes: {}",
                figures.config.name(),
                figures.line()
            ));
        }
    }
    kprintln!("build: {} files, checksum {:016x} in every configuration", all[0].files, all[0].checksum);
    Ok(())
}
