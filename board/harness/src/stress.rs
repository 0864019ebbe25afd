//! The `stress` scenario: threads on nested chains across five domains
//! while the kernel's own code (this boot thread) alerts, breaks,
//! terminates, suspends and resumes their activations, suspends,
//! terminates (and so restarts) and merges the domains, for a fixed number
//! of operations; then every call must be accounted for and nothing may be
//! left of it all.
//!
//! **The shape** (`tern_stresstest`): worker threads of `stress.client`
//! call `stress.a` → `stress.b` (pools: migrating) → `stress.c` (server
//! threads: switching) → `stress.d` (a pool, on an idempotent port), each
//! call carrying an id the answer must echo with the trail of the hops it
//! went through. Every hop is restarted whenever it dies
//! (`RestartPolicy::Always`, no limit).
//!
//! **The operations**, chosen by a seeded generator, one per turn, the
//! boot thread yielding after each (so the workers' calls go on between
//! them): alert a random occupied activation of the stress's domains;
//! alert-and-break one; terminate one that has a caller (a server
//! activation in a call: its caller gets `Terminated` — never a thread's
//! own first activation, whose end would end a worker or a server thread);
//! suspend one (resumed a few turns later); suspend a whole domain
//! (resumed a few turns later); terminate a hop (restarted); flip a hop
//! between protected and merged (`Busy` while occupied, a legal answer,
//! counted); or only yield. Every answer the kernel gives is counted.
//!
//! **Legal outcomes of a worker's call.** Answered with the whole trail;
//! answered by a hop whose own call failed with `CallAborted` (the next
//! hop died, or its server thread went away), `Terminated` (the
//! activation it reached was terminated) or `Interrupted` (alerted while
//! it waited, or broken off); or the worker's own call ended
//! `CallAborted`, `Terminated` or `Interrupted` for the same reasons.
//! Illegal: any other error (`PortDead` included: no port dies, every hop
//! restarts), a wrong answer (another call's id, a broken trail), a reply
//! written after the call had its answer, a call with no outcome or two.
//!
//! **The checks**: each worker's calls issued equal its outcomes, and it
//! left its loop when told (a worker that does not within a bound is a
//! hang: `FAIL`, with its thread's state and chain); every outcome legal;
//! once idle, every pool has all its activations free and C all its
//! server threads waiting; then, everything of the stress terminated and
//! reclaimed, free frames (with the kernel-stack cache's chunks), kernel heap
//! bytes, threads, activations and ports are where they were before it
//! began — measured after a warm-up round and after the kernel's tables
//! and stack cache were grown past anything the stress reaches (a domain
//! flooding its quota, the arena filled), so that the heap figure
//! compares exactly; if the stress outgrows them anyway, that is a
//! failure too, said as such.
//!
//! Also here, the deterministic reproduction of a kernel bug the stress
//! found, a boot scenario that failed before its fix: [`merged_split`].

use crate::Verdict;
use crate::setup;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tern_aarch64::state::{self, Kernel};
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, threads, timer};
use tern_core::abi::{Error, RestartPolicy};
use tern_core::control::{ActivationAction, DomainAction};
use tern_core::domain::{DomainId, UserRange};
use tern_core::machine::Machine;
use tern_core::thread::{ActivationId, ThreadId, ThreadState};
use tern_inks::mode::DomainMode;
use tern_stresstest::{self as stress, CLIENT_NAME, Report, SERVERS, counter};

/// Operations unless the command line says otherwise (`tern.rounds`).
const OPERATIONS: usize = 1000;
/// Operations of the warm-up round (at most the run's).
const WARM_UP: usize = 150;
/// Worker threads in the client.
const WORKERS: usize = 4;
/// The generator's seed.
const SEED: u64 = 0x7e4e_5eed_0001;
/// Extra yields of a yield operation (every operation yields once after
/// it): time for the workers' calls to run to their end.
const YIELDS: usize = 8;
/// Turns after which a suspension is undone: 1 to this many.
const SUSPENDED_TURNS: u64 = 8;
/// Seconds of counter time the workers have to stop once told, and the
/// servers to fall idle.
const SETTLE_SECONDS: u64 = 20;

/// The operations, in the order their counts are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Alert,
    AlertBreak,
    Terminate,
    Suspend,
    SuspendDomain,
    TerminateDomain,
    Merge,
    Yield,
}

impl Operation {
    const ALL: [Operation; 8] = [
        Operation::Alert,
        Operation::AlertBreak,
        Operation::Terminate,
        Operation::Suspend,
        Operation::SuspendDomain,
        Operation::TerminateDomain,
        Operation::Merge,
        Operation::Yield,
    ];

    /// How often it is chosen, relative to the others.
    fn weight(self) -> u64 {
        match self {
            Operation::Alert => 20,
            Operation::AlertBreak => 15,
            Operation::Terminate => 12,
            Operation::Suspend => 8,
            Operation::SuspendDomain => 6,
            Operation::TerminateDomain => 6,
            Operation::Merge => 15,
            Operation::Yield => 18,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Alert => "alert",
            Operation::AlertBreak => "alert-break",
            Operation::Terminate => "terminate",
            Operation::Suspend => "suspend",
            Operation::SuspendDomain => "suspend-domain",
            Operation::TerminateDomain => "terminate-domain",
            Operation::Merge => "merge/unmerge",
            Operation::Yield => "yield",
        }
    }
}

/// xorshift64*: small, seeded, good enough to pick operations.
struct Generator(u64);

impl Generator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `bound` (> 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn operation(&mut self) -> Operation {
        let total: u64 = Operation::ALL.iter().map(|operation| operation.weight()).sum();
        let mut pick = self.below(total);
        for operation in Operation::ALL {
            if pick < operation.weight() {
                return operation;
            }
            pick -= operation.weight();
        }
        Operation::Yield
    }
}

/// What the kernel answered each operation: how many times it did
/// something, and how many times it refused, by error.
#[derive(Default)]
struct Answers {
    /// Per operation: (done, refused by error code, nothing to act on).
    counts: [(u64, [u64; stress::CODES], u64); Operation::ALL.len()],
    /// Flips to merged and to protected.
    merged: u64,
    unmerged: u64,
}

impl Answers {
    fn index(operation: Operation) -> usize {
        Operation::ALL.iter().position(|&known| known == operation).unwrap_or(0)
    }

    fn record(&mut self, operation: Operation, answer: Result<(), Error>) {
        let entry = &mut self.counts[Self::index(operation)];
        match answer {
            Ok(()) => entry.0 += 1,
            Err(error) => entry.1[(error as usize).min(stress::CODES - 1)] += 1,
        }
    }

    fn nothing(&mut self, operation: Operation) {
        self.counts[Self::index(operation)].2 += 1;
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for operation in Operation::ALL {
            let (done, refused, nothing) = &self.counts[Self::index(operation)];
            let mut part = format!("{} {done}", operation.name());
            if operation == Operation::Merge {
                part = format!("{part} ({} merged, {} unmerged)", self.merged, self.unmerged);
            }
            if operation == Operation::Yield {
                part = format!("{part} (x{YIELDS})");
            }
            let refusals = codes(refused);
            if !refusals.is_empty() {
                part = format!("{part}, refused {refusals}");
            }
            if *nothing != 0 {
                part = format!("{part}, {nothing} with nothing to act on");
            }
            parts.push(part);
        }
        parts.join("; ")
    }
}

/// Nonzero counts by error code, as `Name n, Name n`.
fn codes(counts: &[u64]) -> String {
    let named: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|&(_, &count)| count != 0)
        .map(|(code, count)| {
            let name = Error::from_code(code).map_or("code?", Error::name);
            format!("{name} {count}")
        })
        .collect();
    named.join(", ")
}

/// What must be back where it was once the stress's objects are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Invariants {
    /// Free frames, with those of the kernel-stack cache.
    frames: usize,
    heap: usize,
    threads: usize,
    activations: usize,
    ports: usize,
}

/// How far the kernel's tables have grown (slab lengths: the most
/// threads, activations and ports there have been; domain slots): what
/// the heap figure depends on besides what is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tables {
    threads: usize,
    activations: usize,
    ports: usize,
    slots: usize,
    /// Room in the list of ended threads nobody joins, waiting to be
    /// forgotten.
    detached: usize,
}

fn invariants() -> (Invariants, Tables) {
    state::with(|kernel| kernel.reclaim_dead_domains());
    let frames = frames_with_stack_cache();
    let (_, heap) = setup::kernel_memory();
    state::with(|kernel| {
        let invariants = Invariants {
            frames,
            heap,
            threads: kernel.objects.thread_count(),
            activations: kernel.objects.activation_ids().count(),
            ports: kernel.objects.port_ids().count(),
        };
        let tables = Tables {
            threads: kernel.objects.thread_table().length,
            activations: kernel.objects.activation_table().length,
            ports: kernel.objects.port_table().length,
            slots: kernel.domains.len(),
            detached: kernel.detached_ended.capacity(),
        };
        (invariants, tables)
    })
}

/// Free frames, and those the kernel-stack cache holds (its chunks,
/// whole: `stacks::cached_frames`), which a new chunk moves between.
fn frames_with_stack_cache() -> usize {
    let free = tern_aarch64::memory::FRAMES.lock().as_ref().map_or(0, |frames| frames.free_frames());
    free + tern_aarch64::stacks::cached_frames()
}

/// Grow the kernel's tables past anything the stress reaches, so that
/// its heap figure compares exactly: a domain floods ports, threads and
/// pool activations up to its quota (`probe.flood`: the most one domain
/// of the stress may hold of each, all at once — and as many kernel
/// stacks), and the arena is filled with domains; then all of it goes.
/// The list of ended threads nobody joins (forgotten when the next thread
/// is made) gets room for as many threads as a domain may hold.
fn grow_tables() -> Verdict {
    let quota = tern_core::quota::Quota::DEFAULT.limit(tern_core::quota::Resource::Threads) as usize;
    state::with(|kernel| kernel.detached_ended.reserve(quota));
    let flood = domains::create("probe.flood").map_err(|error| format!("creating the flood: {error:?}"))?;
    let flooded = domains::call(flood, 0);
    state::with(|kernel| kernel.terminate_domain(flood));
    if flooded != Ok(Outcome::Returned(3)) {
        return Err(format!("the flood ended with {flooded:?}, not with all three kinds refused"));
    }
    let mut made = Vec::new();
    for spec in tern_inks::registry::registered() {
        match state::with(|kernel| kernel.create_domain(spec)) {
            Ok(domain) => made.push(domain),
            Err(tern_core::domains::DomainError::ArenaFull) => break,
            Err(_) => {}
        }
    }
    for domain in made {
        state::with(|kernel| kernel.terminate_domain(domain));
    }
    for _ in 0..100 {
        threads::yield_now();
    }
    Ok(())
}

/// The stress: a warm-up round, the tables grown, the measured round,
/// the checks.
pub fn stress() -> Verdict {
    let operations = setup::rounds(OPERATIONS);
    let warm_up = WARM_UP.min(operations);
    round(warm_up, SEED ^ 0x5555, false)?;
    grow_tables()?;
    let (before, grown) = invariants();
    let started = timer::counter();
    let summary = round(operations, SEED, true)?;
    let (after, reached) = invariants();
    let seconds = (timer::counter() - started) as f64 / timer::frequency() as f64;
    kprintln!(
        "stress: {operations} operations (seed {SEED:#x}, {WORKERS} workers, warm-up {warm_up}) in {seconds:.1} s; {} calls, {} restarts",
        summary.calls,
        summary.restarts
    );
    kprintln!(
        "stress: after the stress's objects are gone: free frames (with the kernel-stack cache's) {} -> {}, kernel heap {} -> {} bytes, threads {} -> {}, activations {} -> {}, ports {} -> {}",
        before.frames,
        after.frames,
        before.heap,
        after.heap,
        before.threads,
        after.threads,
        before.activations,
        after.activations,
        before.ports,
        after.ports
    );
    if reached != grown {
        return Err(format!(
            "the stress grew the kernel's tables past what the warm-up grew them to ({grown:?} -> {reached:?}): the heap figures do not compare"
        ));
    }
    if after != before {
        let left = state::with(|kernel| {
            let current = kernel.current();
            let others = kernel.objects.thread_ids().filter(|&thread| thread != current);
            let described: Vec<String> = others
                .map(|thread| {
                    let entry = kernel.objects.thread(thread);
                    let (creator, moved, detached) =
                        entry.map_or((0, None, false), |e| (e.creator.0, e.base_moved_to, e.detached));
                    format!(
                        "{} (made by {creator}, base moved to {moved:?}, detached {detached})",
                        describe(kernel, thread)
                    )
                })
                .collect();
            described.join("; ")
        });
        return Err(format!("not back where it began: {before:?} -> {after:?}; threads left: [{left}]"));
    }
    kprintln!("stress: kernel invariants back where they began");
    Ok(())
}

/// What a round reports.
struct Summary {
    calls: u64,
    restarts: u64,
}

/// One round: start the domains, run `operations` operations against
/// them, stop the workers, check every call and the pools, and terminate
/// everything. `report`: print what happened (the warm-up round does not,
/// but checks the same).
fn round(operations: usize, seed: u64, report: bool) -> Result<Summary, String> {
    let priority = state::with(|kernel| kernel.objects.thread(kernel.current()).map_or(0, |thread| thread.priority));
    setup::start_servers(&[("names", 1)])?;
    for level in (0..SERVERS.len()).rev() {
        let name = SERVERS[level];
        let id = domains::create(name).map_err(|error| format!("creating {name}: {error:?}"))?;
        match domains::call(id, stress::hop_argument(level, priority)) {
            Ok(Outcome::Returned(0)) => {}
            other => return Err(format!("{name} did not start: {other:?}")),
        }
        let policy = RestartPolicy::Always { limit: 0, window: 0 };
        state::with(|kernel| kernel.set_restart_policy(id, policy)).map_err(|error| format!("{name}: {error}"))?;
    }
    let client = domains::create(CLIENT_NAME).map_err(|error| format!("creating the client: {error:?}"))?;
    let shared = match domains::call(client, stress::client_argument(WORKERS, priority)) {
        Ok(Outcome::Returned(address)) if address != 0 => address,
        other => return Err(format!("the client did not start: {other:?}")),
    };
    let workers: Vec<ThreadId> = read_report(client, shared)?
        .threads
        .iter()
        .take(WORKERS)
        .filter_map(|&number| ThreadId::new(number as u32))
        .collect();
    if workers.len() != WORKERS {
        return Err(format!("the client started {} workers, not {WORKERS}", workers.len()));
    }
    let restarts_before = state::with(|kernel| kernel.statistics().restarts);
    let answers = operate(operations, seed, client)?;
    let restarts = state::with(|kernel| kernel.statistics().restarts) - restarts_before;
    // Undo every suspension, and tell the workers to stop.
    for domain in stress_domains(client) {
        let _ = state::with(|kernel| kernel.domain_control(domain, DomainAction::Resume));
    }
    state::with(|kernel| kernel.copy_out(client, shared + stress::STOP_OFFSET, &1u64.to_le_bytes()))
        .map_err(|error| format!("telling the workers to stop: {error}"))?;
    settle(&workers)?;
    let done = read_report(client, shared)?;
    let left = (0..done.workers).filter(|&worker| done.tallies[worker][counter::DONE] != 1).count();
    if left != 0 {
        // The base activations' threads ended, by the kernel's account,
        // with workers still in their loops: say where everything is.
        let described = state::with(|kernel| {
            let links = workers.iter().map(|&worker| {
                let mut chain = alloc::vec![describe(kernel, worker)];
                let mut at = worker;
                while let Some(next) = kernel.objects.thread(at).and_then(|entry| entry.base_moved_to) {
                    chain.push(describe(kernel, next));
                    at = next;
                }
                chain.join(" -> ")
            });
            let inside = kernel.objects.occupied_in(client).into_iter().filter_map(|activation| {
                kernel.objects.activation(activation).and_then(|entry| entry.occupant).map(|t| describe(kernel, t))
            });
            let links: Vec<String> = links.collect();
            let inside: Vec<String> = inside.collect();
            format!("workers' joins: [{}]; threads in the client: [{}]", links.join("; "), inside.join("; "))
        });
        return Err(format!("{left} workers had not left their loops when their threads had ended: {described}"));
    }
    for &worker in &workers {
        threads::join(worker);
        state::with(|kernel| kernel.reap_joined(worker));
    }
    let tallies = read_report(client, shared)?;
    let calls = tallies.total(counter::ISSUED);
    if report {
        kprintln!("stress: operations: {}", answers.describe());
        describe_calls(&tallies);
    }
    account(&tallies)?;
    let pools = idle_pools()?;
    if report {
        kprintln!("stress: activations per pool, idle: {pools}");
    }
    // Everything of the stress goes: no restarts now.
    let everything = [CLIENT_NAME, SERVERS[0], SERVERS[1], SERVERS[2], SERVERS[3], "names"];
    for name in everything {
        if let Some(domain) = domains::find(name) {
            state::with(|kernel| {
                let _ = kernel.set_restart_policy(domain, RestartPolicy::Never);
                kernel.terminate_domain(domain);
            });
        }
    }
    // Threads left with nothing to run end as they run.
    for _ in 0..100 {
        threads::yield_now();
    }
    Ok(Summary { calls, restarts })
}

/// The stress's live domains: the client and the hops' current instances.
fn stress_domains(client: DomainId) -> Vec<DomainId> {
    core::iter::once(client).chain(SERVERS.iter().filter_map(|name| domains::find(name))).collect()
}

/// Run `operations` operations; what the kernel answered.
fn operate(operations: usize, seed: u64, client: DomainId) -> Result<Answers, String> {
    let mut generator = Generator(seed);
    let mut answers = Answers::default();
    // (turn to undo it at, what)
    let mut suspended: Vec<(u64, Suspended)> = Vec::new();
    for turn in 0..operations as u64 {
        let mut due = Vec::new();
        suspended.retain(|&(at, what)| {
            if at <= turn {
                due.push(what);
            }
            at > turn
        });
        for what in due {
            state::with(|kernel| match what {
                Suspended::Activation(activation) => {
                    let _ = kernel.control_activation(activation, ActivationAction::Resume);
                }
                Suspended::Domain(domain) => {
                    let _ = kernel.domain_control(domain, DomainAction::Resume);
                }
            });
        }
        let operation = generator.operation();
        let pick = generator.next();
        let later = turn + 1 + generator.below(SUSPENDED_TURNS);
        let domains = stress_domains(client);
        match operation {
            Operation::Alert | Operation::AlertBreak | Operation::Terminate | Operation::Suspend => {
                let action = match operation {
                    Operation::Alert => ActivationAction::Alert,
                    Operation::AlertBreak => ActivationAction::AlertBreak,
                    Operation::Terminate => ActivationAction::Terminate,
                    _ => ActivationAction::Suspend,
                };
                let answer = state::with(|kernel| {
                    let candidates = occupied(kernel, &domains, operation == Operation::Terminate);
                    let activation = *candidates.get(pick as usize % candidates.len().max(1))?;
                    Some((activation, kernel.control_activation(activation, action).map(|_| ())))
                });
                match answer {
                    None => answers.nothing(operation),
                    Some((activation, answer)) => {
                        if operation == Operation::Suspend && answer.is_ok() {
                            suspended.push((later, Suspended::Activation(activation)));
                        }
                        answers.record(operation, answer);
                    }
                }
            }
            Operation::SuspendDomain => {
                let domain = domains[pick as usize % domains.len()];
                let answer = state::with(|kernel| kernel.domain_control(domain, DomainAction::Suspend));
                match answer {
                    Ok(0) => answers.nothing(operation),
                    answer => {
                        suspended.push((later, Suspended::Domain(domain)));
                        answers.record(operation, answer.map(|_| ()));
                    }
                }
            }
            Operation::TerminateDomain => {
                let Some(domain) = SERVERS.get(pick as usize % SERVERS.len()).and_then(|name| domains::find(name))
                else {
                    answers.nothing(operation);
                    continue;
                };
                state::with(|kernel| kernel.terminate_domain(domain));
                answers.record(operation, Ok(()));
            }
            Operation::Merge => {
                let Some(domain) = SERVERS.get(pick as usize % SERVERS.len()).and_then(|name| domains::find(name))
                else {
                    answers.nothing(operation);
                    continue;
                };
                let (wanted, answer) = state::with(|kernel| {
                    let wanted =
                        if kernel.mode_of(domain).is_merged() { DomainMode::Protected } else { DomainMode::Merged };
                    (wanted, kernel.set_mode(domain, wanted))
                });
                match (&answer, wanted) {
                    (Ok(()), DomainMode::Merged) => answers.merged += 1,
                    (Ok(()), DomainMode::Protected) => answers.unmerged += 1,
                    (Err(Error::Busy), _) => {}
                    (Err(error), _) => return Err(format!("turn {turn}: moving a hop to {wanted:?}: {error}")),
                }
                answers.record(operation, answer);
            }
            Operation::Yield => {
                for _ in 0..YIELDS {
                    threads::yield_now();
                }
                answers.record(operation, Ok(()));
            }
        }
        threads::yield_now();
    }
    Ok(answers)
}

/// A suspension to undo.
#[derive(Clone, Copy, Debug)]
enum Suspended {
    Activation(ActivationId),
    Domain(DomainId),
}

/// The occupied activations of `domains` (those with a caller only, if
/// `with_caller`).
fn occupied(kernel: &Kernel, domains: &[DomainId], with_caller: bool) -> Vec<ActivationId> {
    domains
        .iter()
        .flat_map(|&domain| kernel.objects.occupied_in(domain))
        .filter(|&activation| {
            !with_caller || kernel.objects.activation(activation).is_some_and(|entry| entry.caller.is_some())
        })
        .collect()
}

/// Read the client's shared record at `address`.
fn read_report(client: DomainId, address: usize) -> Result<Report, String> {
    state::with(|kernel| {
        let record = kernel.domain(client).ok_or("no client")?;
        let checked = record
            .domain
            .check_readable(&kernel.image, UserRange::new(address, stress::SHARED_BYTES))
            .map_err(|error| format!("the client's record at {address:#x}: {error}"))?;
        let mut bytes = vec![0u8; stress::SHARED_BYTES];
        kernel.machine.read(checked.address, &mut bytes);
        let words: Vec<u64> =
            bytes.chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().unwrap_or([0; 8]))).collect();
        Report::from_words(&words).ok_or_else(|| String::from("the client's record is short"))
    })
}

/// Wait (yielding, for at most [`SETTLE_SECONDS`]) until every worker
/// has ended; a worker that has not is a hang, reported with its thread.
fn settle(workers: &[ThreadId]) -> Verdict {
    let deadline = timer::counter() + SETTLE_SECONDS * timer::frequency();
    loop {
        let stuck: Vec<ThreadId> = state::with(|kernel| {
            workers.iter().map(|&worker| carrier(kernel, worker)).filter(|&thread| !ended(kernel, thread)).collect()
        });
        if stuck.is_empty() {
            return Ok(());
        }
        if timer::counter() > deadline {
            let described: Vec<String> = state::with(|kernel| stuck.iter().map(|&t| describe(kernel, t)).collect());
            return Err(format!(
                "{} workers did not stop within {SETTLE_SECONDS} s (a hang): {}",
                stuck.len(),
                described.join("; ")
            ));
        }
        threads::yield_now();
    }
}

/// The thread carrying `thread`'s base activation now (it moves with
/// every split).
fn carrier(kernel: &Kernel, thread: ThreadId) -> ThreadId {
    let mut at = thread;
    while let Some(next) = kernel.objects.thread(at).and_then(|entry| entry.base_moved_to) {
        at = next;
    }
    at
}

fn ended(kernel: &Kernel, thread: ThreadId) -> bool {
    kernel.objects.thread(thread).is_none_or(|entry| matches!(entry.state, ThreadState::Ended(_)))
}

/// A thread's state and chain (top first: activation, domain, control).
fn describe(kernel: &Kernel, thread: ThreadId) -> String {
    let Some(entry) = kernel.objects.thread(thread) else { return format!("thread {} gone", thread.get()) };
    let chain: Vec<String> = kernel
        .objects
        .chain(thread)
        .iter()
        .map(|&activation| {
            let Some(entry) = kernel.objects.activation(activation) else { return String::from("?") };
            let name = kernel.domain(entry.domain).map_or("?", |record| record.domain.name);
            let alive = kernel.domain(entry.domain).is_some_and(|record| record.alive);
            format!(
                "{} in {name}{}{}",
                activation.get(),
                if alive { "" } else { " (dead)" },
                if entry.control.stops() { " (stopped)" } else { "" }
            )
        })
        .collect();
    format!("thread {} {:?}, chain [{}]", thread.get(), entry.state, chain.join(", "))
}

/// Print the calls' outcomes.
fn describe_calls(report: &Report) {
    let errors: Vec<u64> = (0..stress::CODES).map(|code| report.total(counter::ERROR + code)).collect();
    kprintln!(
        "stress: calls: {} issued = {} answered whole + {} answered with a hop's failure + {} wrong + errors ({}); {} replies late, {} alerts seen by workers",
        report.total(counter::ISSUED),
        report.total(counter::OK),
        report.total(counter::DOWNSTREAM),
        report.total(counter::WRONG),
        codes(&errors),
        report.total(counter::LATE),
        report.total(counter::ALERTS)
    );
    for (hop, failures) in report.downstream.iter().enumerate() {
        let failures = codes(failures);
        if !failures.is_empty() {
            kprintln!("stress: {}'s calls to {} failed: {failures}", SERVERS[hop], SERVERS[hop + 1]);
        }
    }
}

/// Whether an error is a legal outcome of a call in the stress.
fn legal(code: usize) -> bool {
    [Error::CallAborted, Error::Terminated, Error::Interrupted].iter().any(|&error| error as usize == code)
}

/// Every call issued has exactly one outcome, and a legal one; every
/// worker left its loop.
fn account(report: &Report) -> Verdict {
    for worker in 0..report.workers {
        let row = &report.tallies[worker];
        let (issued, outcomes) = (row[counter::ISSUED], report.outcomes(worker));
        if issued != outcomes {
            return Err(format!("worker {worker}: {issued} calls issued, {outcomes} outcomes"));
        }
        if row[counter::DONE] != 1 {
            return Err(format!("worker {worker} ended without leaving its loop"));
        }
        if row[counter::WRONG] != 0 || row[counter::LATE] != 0 {
            return Err(format!(
                "worker {worker}: {} wrong answers, {} late replies",
                row[counter::WRONG],
                row[counter::LATE]
            ));
        }
        let illegal: Vec<u64> =
            (0..stress::CODES).map(|code| if legal(code) { 0 } else { row[counter::ERROR + code] }).collect();
        if illegal.iter().any(|&count| count != 0) {
            return Err(format!("worker {worker}: calls ended with {}", codes(&illegal)));
        }
    }
    for (hop, failures) in report.downstream.iter().enumerate() {
        let illegal: Vec<u64> = failures.iter().enumerate().map(|(code, &n)| if legal(code) { 0 } else { n }).collect();
        if illegal.iter().any(|&count| count != 0) {
            return Err(format!("{}'s calls ended with {}", SERVERS[hop], codes(&illegal)));
        }
    }
    kprintln!(
        "stress: every call accounted for: {} issued, {} outcomes, all legal",
        report.total(counter::ISSUED),
        (0..report.workers).map(|worker| report.outcomes(worker)).sum::<u64>()
    );
    Ok(())
}

/// Once the workers have stopped: wait (bounded) until no call is in any
/// hop, then check that every pool has all its activations free and the
/// switching hop all its threads waiting. What was found, as text.
fn idle_pools() -> Result<String, String> {
    let deadline = timer::counter() + SETTLE_SECONDS * timer::frequency();
    loop {
        let busy = state::with(|kernel| {
            SERVERS.iter().filter_map(|name| kernel.find_domain(name)).any(|domain| {
                kernel.objects.occupied_in(domain).iter().any(|&activation| {
                    let thread = kernel.objects.activation(activation).and_then(|entry| entry.occupant);
                    let receiving = thread.and_then(|thread| kernel.objects.thread(thread)).is_some_and(|entry| {
                        matches!(entry.state, ThreadState::Receiving(_)) && entry.top == Some(activation)
                    });
                    !receiving
                })
            })
        });
        if !busy {
            break;
        }
        if timer::counter() > deadline {
            let described = state::with(|kernel| {
                let mut lines = Vec::new();
                for domain in SERVERS.iter().filter_map(|name| kernel.find_domain(name)) {
                    for activation in kernel.objects.occupied_in(domain) {
                        if let Some(thread) = kernel.objects.activation(activation).and_then(|entry| entry.occupant) {
                            lines.push(describe(kernel, thread));
                        }
                    }
                }
                lines.join("; ")
            });
            return Err(format!("calls still in the hops {SETTLE_SECONDS} s after the workers stopped: {described}"));
        }
        threads::yield_now();
    }
    state::with(|kernel| {
        let mut found = Vec::new();
        for (level, name) in SERVERS.iter().enumerate() {
            let domain = kernel.find_domain(name).ok_or_else(|| format!("{name} is not there"))?;
            let ports: Vec<_> = kernel
                .objects
                .port_ids()
                .filter(|&port| kernel.objects.port(port).is_some_and(|entry| entry.owner == domain))
                .collect();
            let [port] = ports[..] else { return Err(format!("{name} owns {} ports, not one", ports.len())) };
            let entry = kernel.objects.port(port).ok_or("no port")?;
            if level == stress::SWITCHING {
                let mut receivers = 0;
                let mut next = entry.receivers_head;
                while let Some(thread) = next {
                    receivers += 1;
                    next = kernel.objects.thread(thread).and_then(|entry| entry.next_queued);
                }
                if entry.server_threads != stress::THREADS || receivers != stress::THREADS {
                    return Err(format!(
                        "{name}: {} server threads, {receivers} receiving, not {}",
                        entry.server_threads,
                        stress::THREADS
                    ));
                }
                found.push(format!("{name} {receivers} server threads receiving"));
                continue;
            }
            let sidetrack = usize::from(entry.sidetrack.is_some());
            let pool = entry.pool_size - sidetrack;
            let free = kernel.objects.pool_free(port);
            let grows = if level == 1 { stress::GROWTH_LIMIT } else { 0 };
            if free != pool || !(stress::POOL..=stress::POOL + grows).contains(&pool) {
                return Err(format!(
                    "{name}: {free} of {pool} pool activations free (it starts with {})",
                    stress::POOL
                ));
            }
            found.push(format!("{name} {free}/{pool} free"));
        }
        Ok(found.join(", "))
    })
}

/// Two workers of `ctl.client` are up in `ctl.top` through `ctl.mid`, both
/// merged: mid called top as a procedure (the merged call path, no trap).
/// The kernel alert-breaks each worker's activation in mid, below top's:
/// mid's call returns `Interrupted` on a new thread, and top's activation,
/// its caller gone, goes on. When top's handler returns, the merged call
/// path must not go back to a caller that is not there (it loaded the
/// client activation numbered 0 and faulted at EL1; found by the stress):
/// the general `Return` ends that part of the thread.
pub fn merged_split() -> Verdict {
    setup::start_servers(&[("names", 1), ("ctl.top", 1), ("ctl.mid", 1)])?;
    let [top, mid] = ["ctl.top", "ctl.mid"].map(domains::find);
    let (top, mid) = top.zip(mid).ok_or("no ctl servers")?;
    for server in [top, mid] {
        domains::set_mode(server, DomainMode::Merged).map_err(|error| format!("merging: {error}"))?;
    }
    let client = domains::create("ctl.client").map_err(|error| format!("creating the client: {error:?}"))?;
    let workers = match domains::call(client, tern_ctltest::test::DOMAIN_START) {
        Ok(Outcome::Returned(threads)) if threads != 0 => [threads >> 16 & 0xffff, threads >> 32 & 0xffff],
        other => return Err(format!("the workers did not start: {other:?}")),
    };
    let broken: Vec<Result<usize, Error>> = state::with(|kernel| {
        let in_mid = kernel.objects.occupied_in(mid);
        in_mid
            .into_iter()
            .map(|activation| kernel.control_activation(activation, ActivationAction::AlertBreak))
            .collect()
    });
    kprintln!("merged-split: alert-broke the workers' activations in merged ctl.mid below merged ctl.top: {broken:?}");
    let settled = (0..10_000).any(|_| {
        threads::yield_now();
        state::with(|kernel| kernel.objects.occupied_in(top).is_empty() && kernel.objects.occupied_in(mid).is_empty())
    });
    let mut ended = 0;
    for worker in workers.iter().filter_map(|&number| ThreadId::new(number as u32)) {
        ended += usize::from(threads::join(worker).is_some());
        state::with(|kernel| kernel.reap_joined(worker));
    }
    kprintln!("merged-split: top's parts returned to nobody and ended: {settled}; workers joined: {ended}");
    if broken != [Ok(1), Ok(1)] || !settled || ended != 2 {
        return Err("the split merged call did not end cleanly".into());
    }
    Ok(())
}
