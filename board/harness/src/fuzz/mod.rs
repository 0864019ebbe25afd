//! The `fuzz` scenario: a seeded kernel-call fuzzer, and the invariants
//! the kernel must keep under it.
//!
//! `tern.scenario=fuzz` starts the servers the fuzzer talks to (`names`,
//! the kernel clock merged into the kernel domain, `echo`), a healthy
//! `client` (rpctest's) whose round of calls on `echo` must succeed
//! before and after, and then, once per mode (`tern.fuzz.mode`:
//! `protected`, `merged` or `both`, the default), a fuzzer domain
//! ([`fuzzer`]) with two victim servers of its own ([`victim`]). The
//! fuzzer makes `tern.fuzz.calls` raw kernel calls (default
//! [`DEFAULT_CALLS`]; with `both`, three quarters protected and a quarter
//! merged) from a PRNG seeded with `tern.fuzz.seed` (default
//! [`DEFAULT_SEED`]); `tern.fuzz.trace=1` prints every call.
//!
//! Each round: the fuzzer domain is made (and merged, in the merged
//! round), its setup upcall builds its shared block, the scenario writes
//! the configuration into it and starts the watchdog and four loop threads
//! in it (their first activations written into the block before they run),
//! then sleeps until the call budget is spent (or no call has been made
//! for [`HANG_SECONDS`]: a hang, reported with the last calls made, or the
//! fuzzer domain faulted: a bug of the fuzzer's), and terminates the
//! domain. Stacks carved from a region are never given back: when a
//! fuzzer domain has none left for its loops (after some two million
//! calls), the round goes on in a new one (`fuzzer::instance_names`: four
//! protected, three merged — what the arena has room for). What it prints,
//! one line each (the format `cargo xtask fuzz` and the boot test read):
//!
//! - `FUZZ-RESULTS mode=M calls=N ok=.. NoSuchCall=.. ... noreturn=..`:
//!   every call by result (`noreturn`: calls that never came back, such
//!   as `Exit`, `Return`, or a thread terminated in its call), per round
//!   and in total (`mode=all`);
//! - `FUZZ-CALLS`: per call, made/succeeded; `FUZZ-PATHS`: what the RPC
//!   paths did (migrated, handed off, splits, lends, ...);
//! - `FUZZ-RATE mode=M calls_per_second=R seconds=S` (the generic timer);
//! - `FUZZ-WATCHDOG`, `FUZZ-LOOPS`: how the run kept moving;
//! - `FUZZ-INVARIANT name=... before=... after=... back|NOT BACK|printed`:
//!   free frames (alone, and with the kernel-stack cache), kernel heap
//!   bytes, threads (slab entries and live ones), activations (all and
//!   occupied), ports, domains, and `echo`'s free pool activations,
//!   before the first round and once every fuzzer and victim domain is
//!   gone;
//! - `FUZZ-HEALTH`: the healthy client's round before and after.
//!
//! **Verdict.** The scenario fails on what must hold today: the kernel did
//! not panic or fault (the run reaches its verdict at all), no call broke a
//! rule the oracle checks (`FUZZ-ORACLE` lines), no hang, and after the
//! fuzzing the healthy client's calls to `echo` still complete, and the
//! invariants are back (see [`Figures::print_against`] for which are
//! judged and why the others are only printed).

pub mod fuzzer;
pub mod repro;
pub mod shared;
pub mod victim;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::offset_of;
use shared::{CALL_KINDS, Config, RESULT_KINDS, RING, SLOTS, Shared, call_name, port, result_name};
use tern_aarch64::semihosting::ExitStatus;
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, state, timer};
use tern_core::capability::Capability;
use tern_core::domain::DomainId;
use tern_core::machine::{Machine, RpcStatistics};
use tern_core::thread::ThreadState;
use tern_inks::mode::DomainMode;

/// Calls made when the command line names none: enough for the boot
/// tests to cover every call many times in a few seconds.
pub const DEFAULT_CALLS: u64 = 20_000;
/// The seed when the command line names none.
pub const DEFAULT_SEED: u64 = 1;
/// Seconds without a single call made before the round counts as hung.
pub const HANG_SECONDS: u64 = 30;

use crate::Verdict;

/// Run the `fuzz` scenario as the command line says.
pub fn run(options: &tern_core::cmdline::Options<'_>) -> ExitStatus {
    kprintln!("scenario fuzz: start");
    match fuzz(options) {
        Ok(()) => {
            kprintln!("scenario fuzz: PASS");
            ExitStatus::Pass
        }
        Err(reason) => {
            kprintln!("scenario fuzz: FAIL ({})", reason);
            ExitStatus::Fail
        }
    }
}

/// What one round counted.
#[derive(Default)]
struct Tally {
    attempted: u64,
    results: [u64; RESULT_KINDS],
    ticks: u64,
    violations: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.attempted += other.attempted;
        for (mine, theirs) in self.results.iter_mut().zip(other.results) {
            *mine += theirs;
        }
        self.ticks += other.ticks;
        self.violations += other.violations;
    }

    fn print(&self, mode: &str) {
        let mut line = format!("FUZZ-RESULTS mode={mode} calls={}", self.attempted);
        for (kind, count) in self.results.iter().enumerate() {
            line += &format!(" {}={count}", result_name(kind));
        }
        let returned: u64 = self.results.iter().sum();
        line += &format!(" noreturn={}", self.attempted.saturating_sub(returned));
        kprintln!("{}", line);
        let frequency = timer::frequency().max(1);
        let micros = self.ticks * 1_000_000 / frequency;
        let rate = (self.attempted * frequency).checked_div(self.ticks).unwrap_or(0);
        kprintln!(
            "FUZZ-RATE mode={} calls_per_second={} seconds={}.{:03}",
            mode,
            rate,
            micros / 1_000_000,
            micros / 1000 % 1000
        );
    }
}

fn fuzz(options: &tern_core::cmdline::Options<'_>) -> Verdict {
    let seed = options.fuzz_seed.unwrap_or(DEFAULT_SEED);
    let calls = options.fuzz_calls.unwrap_or(DEFAULT_CALLS);
    let mode = options.fuzz_mode.unwrap_or("both");
    let rounds: &[(DomainMode, u64)] = match mode {
        "protected" => &[(DomainMode::Protected, calls)],
        "merged" => &[(DomainMode::Merged, calls)],
        "both" => &[(DomainMode::Protected, calls - calls / 4), (DomainMode::Merged, calls / 4)],
        other => return Err(format!("tern.fuzz.mode={other}: protected, merged or both")),
    };
    kprintln!(
        "FUZZ-CONFIG seed={} calls={} mode={} trace={} board={}",
        seed,
        calls,
        mode,
        options.fuzz_trace as u8,
        tern_aarch64::kernel::board_name()
    );
    for bug in fuzzer::KNOWN_KERNEL_BUGS {
        kprintln!("FUZZ-EXCLUDED {}: {}", bug.name, bug.what);
    }
    let servers = Servers::start()?;
    let healthy = |when: &str| -> Verdict {
        let outcome = domains::call(servers.client, tern_rpctest::test::ECHO_ROUND);
        kprintln!("FUZZ-HEALTH {when}: the client's round of calls on echo: {outcome:?}");
        match outcome {
            Ok(Outcome::Returned(0)) => Ok(()),
            other => Err(format!("{when} the fuzzing, the healthy client's calls on echo ended {other:?}")),
        }
    };
    healthy("before")?;
    let before = Figures::now(&servers);
    let mut total = Tally::default();
    let mut failure = None;
    for (round, &(mode, calls)) in rounds.iter().enumerate() {
        let seed = seed.wrapping_add(round as u64 * 0x1_0000_0000);
        match fuzz_round(&servers, mode, seed, calls, options.fuzz_trace) {
            Ok((tally, None)) => total.add(&tally),
            Ok((tally, Some(reason))) => {
                total.add(&tally);
                failure = Some(reason);
                break;
            }
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
    }
    // Every fuzzer and victim domain is terminated: once their threads have
    // unwound and ended, everything they held comes back.
    let deadline = timer::counter() + 2 * timer::frequency();
    let mut after = Figures::now(&servers);
    while after.live_threads() > before.live_threads() && timer::counter() < deadline {
        nap(timer::frequency() / 100);
        after = Figures::now(&servers);
    }
    total.print("all");
    kprintln!("FUZZ-VIOLATIONS count={}", total.violations);
    let broken = before.print_against(&after);
    if let Some(reason) = failure {
        return Err(reason);
    }
    if !broken.is_empty() {
        return Err(format!("once the fuzzer's domains were gone, not back where they began: {}", broken.join(", ")));
    }
    healthy("after")?;
    if total.violations != 0 {
        return Err(format!("{} calls broke a rule the kernel promises (FUZZ-ORACLE lines)", total.violations));
    }
    Ok(())
}

/// The servers every round shares.
struct Servers {
    echo: DomainId,
    clock: DomainId,
    client: DomainId,
}

impl Servers {
    fn start() -> Result<Servers, String> {
        let start = |name: &str, argument: usize| -> Result<DomainId, String> {
            let id = domains::create(name).map_err(|error| format!("creating {name}: {error:?}"))?;
            match domains::call(id, argument) {
                Ok(Outcome::Returned(0)) => Ok(id),
                other => Err(format!("{name} did not start: {other:?}")),
            }
        };
        start("names", 1)?;
        let clock = start("kernel.clock", 1)?;
        domains::set_mode(clock, DomainMode::Merged).map_err(|error| format!("kernel.clock: {error}"))?;
        let echo = start("echo", 1)?;
        let client = domains::create("client").map_err(|error| format!("creating client: {error:?}"))?;
        tern_aarch64::threads::yield_now();
        Ok(Servers { echo, clock, client })
    }
}

/// The first port `owner` made, given to `to` as a send right: `to`'s name.
fn grant_first_port(owner: DomainId, to: DomainId) -> Option<u64> {
    state::with(|kernel| {
        let port =
            kernel.objects.port_ids().find(|&port| kernel.objects.port(port).is_some_and(|p| p.owner == owner))?;
        let name = kernel.domain_mut(to)?.space.insert(Capability { port, receive: false });
        Some(u64::from(name))
    })
}

/// Sleep for `ticks` of the counter (the boot thread waits like any).
pub(crate) fn nap(ticks: u64) {
    state::with(|kernel| {
        let until = kernel.machine.counter() + ticks;
        let current = kernel.current();
        if let Some(thread) = kernel.objects.thread_mut(current) {
            thread.state = ThreadState::Sleeping(until);
        }
    });
    tern_aarch64::threads::block();
}

/// A copy of the fuzzer's shared block at `address`.
fn snapshot(address: u64) -> Box<Shared> {
    let mut copy = Box::<Shared>::new_uninit();
    // SAFETY: the bytes of the box's own allocation, which `read` fills
    // completely below.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(copy.as_mut_ptr().cast::<u8>(), core::mem::size_of::<Shared>()) };
    state::with(|kernel| kernel.machine.read(address as usize, bytes));
    // SAFETY: every byte was written from the fuzzer's block, and any bit
    // pattern is a valid `Shared` (integers and atomics only).
    unsafe { copy.assume_init() }
}

/// One word of the fuzzer's shared block at `address` + `offset`.
fn read_word(address: u64, offset: usize) -> u64 {
    let mut word = [0u8; 8];
    state::with(|kernel| kernel.machine.read(address as usize + offset, &mut word));
    u64::from_le_bytes(word)
}

/// Write `bytes` into the fuzzer's memory at `address`.
fn write_into(domain: DomainId, address: u64, bytes: &[u8]) -> Verdict {
    state::with(|kernel| kernel.copy_out(domain, address as usize, bytes))
        .map_err(|error| format!("writing the fuzzer's configuration: {error}"))
}

/// One round: its tally, and why it failed if it did.
fn fuzz_round(
    servers: &Servers,
    mode: DomainMode,
    seed: u64,
    calls: u64,
    trace: bool,
) -> Result<(Tally, Option<String>), String> {
    let merged = mode.is_merged();
    let [pool_name, threads_name] = victim::names(merged);
    let starts = [(pool_name, tern_inks::service::MODE_POOL), (threads_name, tern_inks::service::MODE_THREADS)];
    let mut victims = [crate::start_server(starts[0].0, starts[0].1)?, crate::start_server(starts[1].0, starts[1].1)?];
    let outcome = fuzz_instances(servers, &mut victims, starts, merged, seed, calls, trace);
    // The round's victims go with it: what they hold must come back too.
    for (victim, _) in victims {
        state::with(|kernel| kernel.terminate_domain(victim));
    }
    outcome
}

fn fuzz_instances(
    servers: &Servers,
    victims: &mut [(DomainId, u32); 2],
    starts: [(&str, usize); 2],
    merged: bool,
    seed: u64,
    calls: u64,
    trace: bool,
) -> Result<(Tally, Option<String>), String> {
    let mut total = Tally::default();
    for (instance, name) in fuzzer::instance_names(merged).iter().enumerate() {
        let seed = seed ^ (instance as u64) << 48;
        let left = calls - total.attempted.min(calls);
        // A victim that died under the last fuzzer domain (they fault on
        // purpose) is made again for the next.
        for (victim, &(victim_name, mode)) in victims.iter_mut().zip(&starts) {
            let (domain, port) = *victim;
            let serving = state::with(|kernel| {
                kernel.domain(domain).is_some_and(|record| record.alive && record.space.lookup(port).is_some())
            });
            if !serving {
                state::with(|kernel| kernel.terminate_domain(domain));
                *victim = crate::start_server(victim_name, mode)?;
                kprintln!("FUZZ-NOTE mode={}: victim {victim_name} made again", mode_label(merged));
            }
        }
        let (tally, outcome) = fuzz_instance(servers, *victims, name, merged, seed, left, trace)?;
        total.add(&tally);
        match outcome {
            Instance::Done => return Ok((total, None)),
            Instance::Failed(reason) => return Ok((total, Some(reason))),
            Instance::Exhausted => {}
        }
    }
    kprintln!("FUZZ-NOTE mode={}: every fuzzer domain's region is used up: the round ends early", mode_label(merged));
    Ok((total, None))
}

fn mode_label(merged: bool) -> &'static str {
    if merged { "merged" } else { "protected" }
}

/// How one fuzzer domain's part of a round ended.
enum Instance {
    /// Its calls are made.
    Done,
    /// No thread could be made for any of its loops any more (its
    /// region's stacks are used up): the round goes on in a new domain.
    Exhausted,
    /// A hang, or the fuzzer domain faulted: the round fails.
    Failed(String),
}

/// One fuzzer domain (`name`) making up to `calls` calls, with the round's
/// victims (domain and port, pool then threads).
fn fuzz_instance(
    servers: &Servers,
    victims: [(DomainId, u32); 2],
    name: &str,
    merged: bool,
    seed: u64,
    calls: u64,
    trace: bool,
) -> Result<(Tally, Instance), String> {
    let label = mode_label(merged);
    let [(pool_victim, pool_port), (threads_victim, threads_port)] = victims;
    let fuzz = domains::create(name).map_err(|error| format!("creating {name}: {error:?}"))?;
    if merged {
        domains::set_mode(fuzz, DomainMode::Merged).map_err(|error| format!("merging {name}: {error}"))?;
    }
    let region = domains::region(fuzz).ok_or("the fuzzer has no region")?;
    let address = match domains::call(fuzz, fuzzer::SETUP) {
        Ok(Outcome::Returned(address)) if address != 0 => address as u64,
        other => return Err(format!("the fuzzer's setup ended {other:?}")),
    };
    if address < region.start || address + core::mem::size_of::<Shared>() as u64 > region.end {
        return Err(format!("the fuzzer's block at {address:#x} is not in its region"));
    }
    let granted = |owner: DomainId| grant_first_port(owner, fuzz).ok_or("could not give the fuzzer a port");
    let mut ports = [0u64; port::COUNT];
    ports[port::ECHO] = granted(servers.echo)?;
    ports[port::CLOCK] = granted(servers.clock)?;
    ports[port::VICTIM_POOL] = state::with(|kernel| kernel.grant_send_right(pool_victim, pool_port, fuzz))
        .ok_or("could not give the fuzzer the pool victim's port")?
        .into();
    ports[port::VICTIM_THREADS] = state::with(|kernel| kernel.grant_send_right(threads_victim, threads_port, fuzz))
        .ok_or("could not give the fuzzer the threads victim's port")?
        .into();
    let image = tern_aarch64::memory::ImageLayout::of_this_image();
    let heap_probe = Box::new(0u64);
    let echo_region = domains::region(servers.echo).ok_or("echo has no region")?;
    let config = Config {
        seed,
        calls,
        trace: trace as u64,
        merged: merged as u64,
        frequency: timer::frequency(),
        domain: u64::from(fuzz.0),
        region_start: region.start,
        region_end: region.end,
        image_start: image.text.start,
        text_end: image.text.end,
        read_only_end: image.read_only.end,
        kernel_data: timer::tick_counter_address() as u64,
        kernel_heap: &*heap_probe as *const u64 as u64,
        other_region: echo_region.start,
        other_domain: u64::from(servers.echo.0),
        victims: [u64::from(pool_victim.0), u64::from(threads_victim.0)],
        arena_end: state::with(|kernel| kernel.arena.end),
        ports,
    };
    // SAFETY: `Config` is `repr(C)` and made of `u64`s only: its bytes are
    // all initialised, and viewing them as bytes for the copy is sound.
    let config_bytes =
        unsafe { core::slice::from_raw_parts((&raw const config).cast::<u8>(), core::mem::size_of::<Config>()) };
    write_into(fuzz, address + offset_of!(Shared, config) as u64, config_bytes)?;
    write_into(fuzz, address + offset_of!(Shared, remaining) as u64, &calls.to_le_bytes())?;
    write_into(fuzz, region.start + fuzzer::SHARED_POINTER_OFFSET, &address.to_le_bytes())?;
    kprintln!(
        "FUZZ-ROUND mode={} fuzzer={} domain={} seed={} calls={} victims={},{} region={:#x}..{:#x}",
        label,
        name,
        fuzz.0,
        seed,
        calls,
        pool_victim.0,
        threads_victim.0,
        region.start,
        region.end
    );
    let paths_before = state::with(|kernel| *kernel.statistics());
    // The threads, and their first activations: written into the block
    // before any of them runs, so that the fuzzer knows from the first
    // call which activations are its watchdog's and its loops'.
    let started = state::with(|kernel| {
        let watchdog = fuzzer::watchdog_entry as fn(usize) -> usize as usize;
        let slot = fuzzer::slot_entry as fn(usize) -> usize as usize;
        let (mut firsts, mut made) = (Vec::new(), Vec::new());
        let thread = kernel.create_thread(fuzz, watchdog, address as usize, 31, fuzzer::WATCHDOG_STACK)?;
        firsts.push(kernel.objects.thread(thread)?.top?.get());
        made.push(thread);
        for index in 0..SLOTS {
            let argument = fuzzer::slot_argument(address, index);
            let priority = fuzzer::slot_priority(index);
            let thread = kernel.create_thread(fuzz, slot, argument, priority, fuzzer::SLOT_STACK)?;
            firsts.push(kernel.objects.thread(thread)?.top?.get());
            made.push(thread);
        }
        Some((firsts, made))
    });
    let Some((firsts, made)) = started else { return Err("could not start the fuzzer's threads".into()) };
    write_into(fuzz, address + offset_of!(Shared, watchdog) as u64, &firsts[0].to_le_bytes())?;
    for (index, first) in firsts[1..].iter().enumerate() {
        let at = address + (offset_of!(Shared, slots) + index * core::mem::size_of::<shared::Slot>()) as u64;
        write_into(fuzz, at + offset_of!(shared::Slot, base) as u64, &first.to_le_bytes())?;
        write_into(fuzz, at + offset_of!(shared::Slot, top) as u64, &first.to_le_bytes())?;
    }
    let frequency = timer::frequency();
    let start = timer::counter();
    let (mut last, mut last_change) = (0, start);
    let (mut died, mut exhausted) = (false, false);
    let hung = loop {
        nap(frequency / 100);
        let now = timer::counter();
        if read_word(address, offset_of!(Shared, remaining)) == 0 {
            break false;
        }
        let attempted = read_word(address, offset_of!(Shared, attempted));
        if attempted != last {
            (last, last_change) = (attempted, now);
        } else if now - last_change > HANG_SECONDS * frequency {
            break true;
        }
        if !state::with(|kernel| kernel.domain(fuzz).is_some_and(|record| record.alive)) {
            died = true;
            break false;
        }
        let given_up = (0..SLOTS).all(|slot| {
            read_word(
                address,
                offset_of!(Shared, slots)
                    + slot * core::mem::size_of::<shared::Slot>()
                    + offset_of!(shared::Slot, state),
            ) == shared::slot_state::GIVEN_UP
        });
        if given_up {
            kprintln!("FUZZ-NOTE mode={label}: {name}'s region has no stacks left for its loops: a new fuzzer goes on");
            exhausted = true;
            break false;
        }
    };
    let ticks = timer::counter() - start;
    if hung || died {
        let block = snapshot(address);
        print_ring(&block);
        print_slots(label, &block);
    }
    let terminated = state::with(|kernel| kernel.domain_control(fuzz, tern_core::control::DomainAction::Terminate));
    nap(frequency / 20);
    // The threads this scenario made are joined here (the kernel's own
    // code made them, so nobody else will): those that have ended are
    // forgotten, the rest as they end.
    state::with(|kernel| {
        for &thread in &made {
            kernel.reap_joined(thread);
        }
    });
    let block = snapshot(address);
    let paths_after = state::with(|kernel| *kernel.statistics());
    drop(heap_probe);
    let tally = Tally {
        attempted: block.attempted.load(core::sync::atomic::Ordering::Relaxed),
        results: core::array::from_fn(|kind| block.results[kind].load(core::sync::atomic::Ordering::Relaxed)),
        ticks,
        violations: block.violations.load(core::sync::atomic::Ordering::Relaxed),
    };
    tally.print(label);
    print_calls(label, &block);
    print_paths(label, &paths_before, &paths_after);
    print_slots(label, &block);
    kprintln!("FUZZ-TERMINATED mode={} activations={:?}", label, terminated);
    let outcome = if hung {
        Instance::Failed(format!(
            "the {label} round hung: no call made for {HANG_SECONDS} s ({} of {calls} made)",
            tally.attempted
        ))
    } else if died {
        Instance::Failed(format!(
            "{name} faulted (a bug of the fuzzer's, see its fault report) after {} of {calls} calls",
            tally.attempted
        ))
    } else if exhausted {
        Instance::Exhausted
    } else {
        Instance::Done
    };
    Ok((tally, outcome))
}

fn print_calls(label: &str, block: &Shared) {
    use core::sync::atomic::Ordering::Relaxed;
    let mut line = format!("FUZZ-CALLS mode={label}");
    for kind in 0..CALL_KINDS {
        line +=
            &format!(" {}={}/{}", call_name(kind), block.made[kind].load(Relaxed), block.succeeded[kind].load(Relaxed));
    }
    kprintln!("{}", line);
}

fn print_paths(label: &str, before: &RpcStatistics, after: &RpcStatistics) {
    kprintln!(
        "FUZZ-PATHS mode={} migrated={} direct={} handed_off={} queued={} waited={} sidetracks={} lends_mapped={} splits={} longest_chain={}",
        label,
        after.migrated - before.migrated,
        after.direct - before.direct,
        after.handed_off - before.handed_off,
        after.queued - before.queued,
        after.waited - before.waited,
        after.sidetracks - before.sidetracks,
        after.lends_mapped - before.lends_mapped,
        after.splits - before.splits,
        after.longest_chain
    );
}

fn print_slots(label: &str, block: &Shared) {
    use core::sync::atomic::Ordering::Relaxed;
    let lives: Vec<u64> = block.slots.iter().map(|slot| slot.lives.load(Relaxed) + 1).collect();
    let states: Vec<u64> = block.slots.iter().map(|slot| slot.state.load(Relaxed)).collect();
    let progress: Vec<u64> = block.slots.iter().map(|slot| slot.progress.load(Relaxed)).collect();
    let w = &block.interventions;
    kprintln!(
        "FUZZ-WATCHDOG mode={} resume_rounds={} alerts={} tops_terminated={} bases_terminated={} threads_made={} slot_lives={:?} slot_states={:?} slot_calls={:?}",
        label,
        w[0].load(Relaxed),
        w[1].load(Relaxed),
        w[2].load(Relaxed),
        w[3].load(Relaxed),
        w[4].load(Relaxed),
        lives,
        states,
        progress
    );
    let histograms = block
        .stalls
        .iter()
        .map(|half| ("FUZZ-STALLS", half))
        .chain(block.kills.iter().map(|half| ("FUZZ-KILLS", half)))
        .chain(block.deaths.iter().map(|half| ("FUZZ-DEATHS", half)))
        .chain(block.samples.iter().map(|half| ("FUZZ-SAMPLES", half)));
    let halves = ["main", "workers", "main", "workers", "own-call", "another-loop", "main", "workers"];
    for ((what, half), label_half) in histograms.zip(halves) {
        let mut line = format!("{what} mode={label} in={label_half}");
        for (kind, count) in half.iter().enumerate() {
            let count = count.load(Relaxed);
            if count != 0 {
                line += &format!(" {}={count}", call_name(kind));
            }
        }
        kprintln!("{}", line);
    }
    let l = &block.loops;
    kprintln!(
        "FUZZ-LOOPS mode={} loops={} nested={} alert_handlers={} sidetracks={} dispatch_handlers={} children={} ports_made={} stack_carved={} trampoline_pools={}",
        label,
        l[0].load(Relaxed),
        l[1].load(Relaxed),
        l[2].load(Relaxed),
        l[3].load(Relaxed),
        l[4].load(Relaxed),
        l[5].load(Relaxed),
        block.ports_made.load(Relaxed),
        block.carved.load(Relaxed),
        block.trampoline_pools.load(Relaxed)
    );
}

/// The last calls the fuzzer made, oldest first.
fn print_ring(block: &Shared) {
    use core::sync::atomic::Ordering::Relaxed;
    let next = block.ring_next.load(Relaxed);
    for index in 0..RING as u64 {
        let entry = &block.ring[((next + index) % RING as u64) as usize];
        let sequence = entry.sequence.load(Relaxed);
        if sequence == 0 {
            continue;
        }
        let (slot, depth, kind, activation) = fuzzer::describe_who(entry.who.load(Relaxed));
        let number = entry.number.load(Relaxed);
        let a: Vec<u64> = entry.arguments.iter().map(|word| word.load(Relaxed)).collect();
        let status = entry.status.load(Relaxed);
        let outcome = if status == u64::MAX {
            String::from("(no return)")
        } else {
            format!("-> {status:#x} {:#x}", entry.value.load(Relaxed))
        };
        kprintln!(
            "FUZZ-LAST #{} slot={} depth={} {} activation={} {}({}) {:#x?} {}",
            sequence,
            slot,
            depth,
            kind,
            activation,
            call_name(shared::call_kind(number)),
            number,
            a,
            outcome
        );
    }
}

/// The resource figures compared before and after.
struct Figures {
    values: Vec<(&'static str, u64)>,
}

impl Figures {
    /// Every figure once dead domains' leftovers are forgotten: ended
    /// detached threads reaped and free slots reclaimed (which frees their
    /// views' tables).
    fn now(servers: &Servers) -> Figures {
        state::with(|kernel| {
            kernel.reap_detached();
            kernel.reclaim_dead_domains();
        });
        let free_frames = tern_aarch64::memory::FRAMES.lock().as_ref().map_or(0, |frames| frames.free_frames()) as u64;
        // Frames the kernel keeps for itself as a cache: whole chunks of
        // kernel stacks (spare stacks are reused, chunks never given back).
        let cached = tern_aarch64::stacks::cached_frames() as u64;
        let (heap_used, _) = tern_aarch64::memory::heap_stats();
        let values = state::with(|kernel| {
            let objects = &kernel.objects;
            let threads = objects.thread_count() as u64;
            let live = objects
                .thread_ids()
                .filter(|&id| !matches!(objects.thread(id).map(|t| t.state), Some(ThreadState::Ended(_))))
                .count() as u64;
            let activations = objects.activation_ids().count() as u64;
            let occupied = objects
                .activation_ids()
                .filter(|&id| objects.activation(id).is_some_and(|a| a.occupant.is_some()))
                .count() as u64;
            let ports = objects.port_ids().count() as u64;
            let echo_pool = objects
                .port_ids()
                .find(|&port| objects.port(port).is_some_and(|p| p.owner == servers.echo))
                .map_or(0, |port| objects.pool_free(port) as u64);
            let alive = kernel.domains.iter().filter(|record| record.alive).count() as u64;
            alloc::vec![
                ("free_frames", free_frames),
                ("free_and_stack_cache_frames", free_frames + cached),
                ("heap_bytes", heap_used as u64),
                ("threads", threads),
                ("live_threads", live),
                ("activations", activations),
                ("occupied_activations", occupied),
                ("ports", ports),
                ("echo_pool_free", echo_pool),
                ("domains", kernel.domains.len() as u64),
                ("domains_alive", alive),
            ]
        });
        Figures { values }
    }

    fn live_threads(&self) -> u64 {
        self.values.iter().find(|(name, _)| *name == "live_threads").map_or(0, |&(_, value)| value)
    }

    /// Print every figure against `after`; the names of those that must
    /// come back and did not. Judged: the kernel objects (threads, live
    /// ones, activations, occupied ones, ports), `echo`'s free pool
    /// activations, the live domains, and the frames, free or held by the
    /// kernel-stack cache. Printed only: free frames alone (a new chunk of
    /// kernel stacks is kept for reuse), heap bytes (the kernel's tables —
    /// object slabs, capability spaces, queues, domain records — stay at
    /// their high-water mark; the `reuse` scenario judges the heap, after a
    /// warm-up), and the domain records (slots, reused).
    fn print_against(&self, after: &Figures) -> Vec<&'static str> {
        const PRINTED_ONLY: [&str; 3] = ["free_frames", "heap_bytes", "domains"];
        let mut broken = Vec::new();
        for ((name, before), (_, after)) in self.values.iter().zip(&after.values) {
            let judged = !PRINTED_ONLY.contains(name);
            let verdict = match (judged, before == after) {
                (false, _) => "printed",
                (true, true) => "back",
                (true, false) => "NOT BACK",
            };
            kprintln!("FUZZ-INVARIANT name={} before={} after={} {}", name, before, after, verdict);
            if judged && before != after {
                broken.push(*name);
            }
        }
        broken
    }
}
