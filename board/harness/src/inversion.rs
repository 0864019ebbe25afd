//! The priority-inversion experiment (issue 5), a phase of the benchmark.
//!
//! **The question.** A high-priority client calls a server that
//! low-priority clients keep busy. With migrating RPC the client's own
//! thread runs the server's code, at the client's priority; with switching
//! RPC the request waits for the server's thread, which has a priority of
//! its own ([`service::SERVER_THREAD_PRIORITY`]) and may be serving a
//! low-priority client's request, or be preempted by medium-priority work
//! that has nothing to do with the server. How long does the high-priority
//! client's call take, unloaded and loaded, on each path?
//!
//! **The parts.** Two server domains run the same service ([`Spin`]: spin
//! for as many iterations as the request's label says, reply with a bare
//! header): `inversion.pool` serves its port with a pool of activations
//! only (migrating), `inversion.threads` with one server thread only
//! (switching). The client domain `inversion.client` runs, for each path
//! and each [`Load`], a high-priority client thread (priority [`HIGH`])
//! that starts the load, then [`SAMPLES`] times sleeps until the next
//! timer tick and makes one call, timed with the cycle counter around the
//! call. The load:
//!
//! - `low`: [`LOW_CLIENTS`] low-priority clients (priority [`LOW`]) that
//!   call the same server in a loop;
//! - `low+medium`: the same, and a medium-priority thread ([`MEDIUM`]:
//!   above the server thread, below the client) that, woken by the same
//!   ticks, computes for a while ([`MEDIUM_BURST`]) and makes no call.
//!
//! **Released by the timer.** A sleeper is woken at a timer tick, and the
//! tick then lets the most urgent ready thread preempt the domain code it
//! interrupted: the high-priority client's call starts wherever the load
//! happens to be — in a low client's own code, in the server's work on a
//! low client's request — the way a periodic real-time task is released.
//! (A tick that lands in the kernel, which is not preempted, wakes the
//! client but lets it run only when the kernel next blocks a thread or at
//! the tick after.) The threads of one domain share nothing but what they
//! reach through calls (their only start-up data is one word), so the
//! latencies and the signal to stop go through a small pool-served
//! service in the client domain ([`Board`]).
//!
//! The figures are the cycle counter's differences (PMCCNTR_EL0, counting
//! at EL0 and EL1, whichever thread runs), unaltered: the time the call
//! took as the caller saw it. Under QEMU with `-icount shift=0` one cycle
//! is one instruction (a nanosecond of virtual time). Lines printed:
//!
//! ```text
//! BENCH-INVERSION-SETUP calls=N work=C medium=C low_clients=N server_threads=N pool=N priority_high=P priority_medium=P priority_low=P priority_server=P unit=cycles
//! BENCH-INVERSION path=migrating-protected|switching load=unloaded|low|low+medium unit=cycles median=C min=C max=C calls=N
//! ```
//!
//! `work` and `medium` are the cycles the client measured for one
//! request's spin and one medium burst, run locally with nothing else
//! ready (the median of a few runs).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tern_aarch64::{domains, state, upcall};
use tern_core::abi::{MessageHeader, PortName};
use tern_inks::gate;
use tern_inks::service::{self, Reply, Request, Service};

tern_inks::domain!(INVERSION_POOL, "inversion.pool", server_main);
tern_inks::domain!(INVERSION_THREADS, "inversion.threads", server_main);
tern_inks::domain!(INVERSION_CLIENT, "inversion.client", client_main);

/// High-priority calls measured per path and load.
pub const SAMPLES: usize = 40;
/// Spin iterations of one request (the work the server does per call).
pub const WORK: u32 = 20_000;
/// Spin iterations of the medium-priority thread's burst.
pub const MEDIUM_BURST: u32 = 200_000;
/// Low-priority clients in the loaded runs.
pub const LOW_CLIENTS: usize = 3;
/// The high-priority client's priority.
pub const HIGH: u8 = 24;
/// The medium-priority thread's: above the server thread's, below the
/// high-priority client's.
pub const MEDIUM: u8 = 20;
/// The low-priority clients'.
pub const LOW: u8 = 4;
/// Activations in the migrating server's pool: more than the threads that
/// can be inside it at once (every low client, preempted there, and the
/// high-priority client), so the high-priority client never waits for one.
pub const POOL: usize = LOW_CLIENTS + 3;
/// Server threads of the switching server (the runtime's priority).
pub const SERVER_THREADS: usize = 1;

/// Stack of a server activation or server thread: the runtime puts a
/// 32 KiB reply buffer (and, for threads, a request buffer) on it.
const SERVER_STACK: usize = 96 << 10;
/// Stack of a board activation (the 32 KiB reply buffer, and frames).
const BOARD_STACK: usize = 96 << 10;
/// Activations of the board: every thread of the client may be in it.
const BOARD_POOL: usize = LOW_CLIENTS + 3;
/// Stack of a low-priority client.
const LOW_STACK: usize = 16 << 10;
/// Stack of the high-priority client (calls with small buffers, a list
/// of the threads it started).
const HIGH_STACK: usize = 16 << 10;
/// Stack of the medium-priority thread (a spin, a call with small buffers).
const SMALL_STACK: usize = 4 << 10;
/// Cycles per sample the coordinator keeps the processor busy for at most
/// while it waits for a run (a sample normally takes one timer tick, 10 ms:
/// 10 million cycles under QEMU's icount).
const IDLE_FILL_PER_SAMPLE: u64 = 100_000_000;

/// The loads, in the order they are run and printed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// No client but the high-priority one uses the server.
    Unloaded,
    /// Low-priority clients keep the server busy.
    Low,
    /// Low-priority clients, and a medium-priority thread woken by the
    /// same ticks as the high-priority client.
    LowMedium,
}

impl Load {
    const ALL: [Load; 3] = [Load::Unloaded, Load::Low, Load::LowMedium];

    fn word(self) -> &'static str {
        match self {
            Load::Unloaded => "unloaded",
            Load::Low => "low",
            Load::LowMedium => "low+medium",
        }
    }
}

/// The cycle counter (PMCCNTR_EL0; the kernel lets EL0 read it for the
/// benchmark and counts at EL0 and EL1).
#[inline(always)]
fn cycles() -> u64 {
    let value: u64;
    // SAFETY: reading the cycle counter at EL0 is allowed (PMUSERENR_EL0.EN,
    // set by the kernel for the benchmark); it has no side effects.
    unsafe { core::arch::asm!("mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// The work: `iterations` dependent additions the compiler cannot fold.
#[inline(never)]
fn spin(iterations: u32) -> u32 {
    let mut count = 0u32;
    for _ in 0..iterations {
        count = core::hint::black_box(count.wrapping_add(1));
    }
    count
}

/// The service both servers run: spin for the request's label, reply with
/// a bare header.
struct Spin;

impl Service for Spin {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        core::hint::black_box(spin(request.label()));
        reply.set_label(0);
    }
}

/// `mode`: [`service::MODE_POOL`] or [`service::MODE_THREADS`]. Returns
/// the port name (`usize::MAX` if the server could not start).
fn server_main(mode: usize) -> usize {
    let Ok(port) = gate::port_create() else { return usize::MAX };
    match service::serve(Box::leak(Box::new(Spin)), port, mode, POOL, SERVER_THREADS, SERVER_STACK) {
        Ok(()) => port as usize,
        Err(_) => usize::MAX,
    }
}

/// Requests to the board (labels).
mod op {
    /// Go on or stop? Answered with an [`super::answer`] label.
    pub const POLL: u32 = 1;
    /// Sample `index` (first payload word) took `cycles` (second word).
    pub const RECORD: u32 = 2;
    /// The samples are taken: everyone stops.
    pub const STOP: u32 = 3;
    /// Something failed: everyone stops, the run is void.
    pub const FAIL: u32 = 4;
    /// The high-priority client has stopped its load and is ending.
    pub const DONE: u32 = 5;
}

/// The board's answers to [`op::POLL`] (labels).
mod answer {
    /// Go on.
    pub const GO_ON: u32 = 0;
    /// The run is over (or failed): end.
    pub const STOP: u32 = 1;
}

/// The run's shared state, behind a port of the client domain: whether
/// to stop, and the latencies recorded. Atomics only, no lock: a thread
/// may be preempted inside the board at any point, and a higher-priority
/// thread must then get through it.
struct Board {
    latencies: Vec<AtomicU64>,
    recorded: AtomicUsize,
    stopped: AtomicBool,
    failed: AtomicBool,
    done: AtomicBool,
}

impl Board {
    fn new(samples: usize) -> Self {
        Board {
            latencies: (0..samples).map(|_| AtomicU64::new(0)).collect(),
            recorded: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            done: AtomicBool::new(false),
        }
    }

    /// Start a run (no other thread of the domain is alive).
    fn reset(&self) {
        for latency in &self.latencies {
            latency.store(0, Ordering::Relaxed);
        }
        self.recorded.store(0, Ordering::Relaxed);
        self.stopped.store(false, Ordering::Relaxed);
        self.done.store(false, Ordering::Relaxed);
        self.failed.store(false, Ordering::Release);
    }

    fn record(&self, index: usize, latency: u64) {
        match self.latencies.get(index) {
            Some(slot) => {
                slot.store(latency, Ordering::Relaxed);
                self.recorded.fetch_add(1, Ordering::AcqRel);
            }
            None => self.failed.store(true, Ordering::Release),
        }
    }

    /// Every sample recorded, nothing failed.
    fn complete(&self) -> bool {
        !self.failed.load(Ordering::Acquire) && self.recorded.load(Ordering::Acquire) == self.latencies.len()
    }
}

/// The `at`-th little-endian 64-bit word of `bytes`.
fn word(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at * 8..at * 8 + 8)?.try_into().ok()?))
}

impl Service for Board {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        match request.label() {
            op::POLL => {
                let stop = self.stopped.load(Ordering::Acquire) || self.failed.load(Ordering::Acquire);
                reply.set_label(if stop { answer::STOP } else { answer::GO_ON });
            }
            op::RECORD => match (word(request.payload, 0), word(request.payload, 1)) {
                (Some(index), Some(latency)) => self.record(index as usize, latency),
                _ => self.failed.store(true, Ordering::Release),
            },
            op::STOP => self.stopped.store(true, Ordering::Release),
            op::DONE => self.done.store(true, Ordering::Release),
            _ => self.failed.store(true, Ordering::Release),
        }
    }
}

/// A header-only request with `label`.
fn bare(label: u32) -> [u8; MessageHeader::SIZE] {
    let mut message = [0u8; MessageHeader::SIZE];
    MessageHeader::new(label, 0).write_to(&mut message);
    message
}

/// Whether to go on (`Some(true)`), stop (`Some(false)`), or the board did
/// not answer (`None`).
fn go_on(board: PortName) -> Option<bool> {
    let mut reply = [0u8; 64];
    let length = gate::call(board, &bare(op::POLL), &mut reply).ok()?;
    match MessageHeader::read_from(reply.get(..length)?)?.label {
        answer::GO_ON => Some(true),
        answer::STOP => Some(false),
        _ => None,
    }
}

/// Tell the board `label` with up to two words.
fn tell(board: PortName, label: u32, payload: &[u64]) {
    let mut message = [0u8; MessageHeader::SIZE + 16];
    let length = payload.len().min(2) * 8;
    MessageHeader::new(label, length).write_to(&mut message);
    for (slot, value) in message[MessageHeader::SIZE..].chunks_exact_mut(8).zip(payload) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
    let mut reply = [0u8; 64];
    // Should even this fail, the coordinator finds samples missing.
    let _ = gate::call(board, &message[..MessageHeader::SIZE + length], &mut reply);
}

/// A start argument: three 16-bit fields and flags (bits 48-63).
const fn pack(first: usize, second: usize, third: usize, flags: usize) -> usize {
    first & 0xffff | (second & 0xffff) << 16 | (third & 0xffff) << 32 | flags << 48
}

const fn field(argument: usize, at: usize) -> usize {
    (argument >> (16 * at)) & 0xffff
}

/// High-priority client flag: start the low-priority clients.
const WITH_LOW: usize = 1;
/// High-priority client flag: start the medium-priority thread.
const WITH_MEDIUM: usize = 2;

/// The high-priority client (argument: server port, board port, flags):
/// start the load, then [`SAMPLES`] times sleep until the next timer tick
/// and make one call, timed; the latencies go to the board. Then stop the
/// load and wait for it to end. Returns its failures.
fn high_main(argument: usize) -> usize {
    let (server, board) = (field(argument, 0) as PortName, field(argument, 1) as PortName);
    let flags = field(argument, 3);
    let mut load = Vec::new();
    let mut failures = 0;
    if flags & WITH_MEDIUM != 0 {
        match gate::thread_create(medium_main, board as usize, MEDIUM, SMALL_STACK) {
            Ok(thread) => load.push(thread),
            Err(_) => failures += 1,
        }
    }
    if flags & WITH_LOW != 0 {
        for _ in 0..LOW_CLIENTS {
            match gate::thread_create(low_main, pack(server as usize, board as usize, 0, 0), LOW, LOW_STACK) {
                Ok(thread) => load.push(thread),
                Err(_) => failures += 1,
            }
        }
    }
    let request = bare(WORK);
    let mut reply = [0u8; 64];
    for index in 0..SAMPLES {
        if failures > 0 {
            break;
        }
        // Woken by the tick, which then lets this thread preempt whatever
        // it interrupted (if it interrupted a domain's code).
        if gate::sleep(1).is_err() {
            failures += 1;
            break;
        }
        let before = cycles();
        let answered = gate::call(server, &request, &mut reply);
        let after = cycles();
        match answered {
            Ok(_) => tell(board, op::RECORD, &[index as u64, after.wrapping_sub(before)]),
            Err(_) => failures += 1,
        }
    }
    tell(board, if failures > 0 { op::FAIL } else { op::STOP }, &[]);
    failures += load.into_iter().map(|thread| gate::thread_join(thread).unwrap_or(1)).sum::<usize>();
    tell(board, op::DONE, &[]);
    failures
}

/// A low-priority client (argument: server port, board port): call the
/// server, ask the board whether to go on, again. Returns its failures.
fn low_main(argument: usize) -> usize {
    let (server, board) = (field(argument, 0) as PortName, field(argument, 1) as PortName);
    let request = bare(WORK);
    let mut reply = [0u8; 64];
    let mut failures = 0;
    loop {
        if gate::call(server, &request, &mut reply).is_err() {
            failures += 1;
            tell(board, op::FAIL, &[]);
        }
        match go_on(board) {
            Some(true) => {}
            Some(false) => return failures,
            None => return failures + 1,
        }
    }
}

/// The medium-priority thread (argument: board port): woken by every
/// timer tick, like the high-priority client, it computes for a while;
/// it makes no call to the server.
fn medium_main(board: usize) -> usize {
    loop {
        if gate::sleep(1).is_err() {
            return 1;
        }
        match go_on(board as PortName) {
            Some(true) => core::hint::black_box(spin(MEDIUM_BURST)),
            Some(false) => return 0,
            None => return 1,
        };
    }
}

/// The median of a few local runs of `work`, in cycles.
fn local_cycles(work: impl Fn() -> u32) -> u64 {
    let mut runs = [0u64; 5];
    for run in &mut runs {
        let before = cycles();
        core::hint::black_box(work());
        *run = cycles().wrapping_sub(before);
    }
    runs.sort_unstable();
    runs[runs.len() / 2]
}

/// The client's start argument: migrating server's port (bits 0-15),
/// switching server's port (16-31).
pub const fn client_argument(pool: usize, threads: usize) -> usize {
    pack(pool, threads, 0, 0)
}

fn client_main(argument: usize) -> usize {
    let (pool, threads) = (field(argument, 0) as PortName, field(argument, 1) as PortName);
    let board: &'static Board = Box::leak(Box::new(Board::new(SAMPLES)));
    let Ok(board_port) = gate::port_create() else { return 1 };
    if board_port > 0xffff || service::serve(board, board_port, service::MODE_POOL, BOARD_POOL, 1, BOARD_STACK).is_err()
    {
        tern_inks::println!("bench: inversion: the board did not start");
        return 1;
    }
    tern_inks::println!(
        "BENCH-INVERSION-SETUP calls={SAMPLES} work={} medium={} low_clients={LOW_CLIENTS} server_threads={SERVER_THREADS} \
         pool={POOL} priority_high={HIGH} priority_medium={MEDIUM} priority_low={LOW} priority_server={} unit=cycles",
        local_cycles(|| spin(WORK)),
        local_cycles(|| spin(MEDIUM_BURST)),
        service::SERVER_THREAD_PRIORITY
    );
    let mut failures = 0;
    for (path, server) in [("migrating-protected", pool), ("switching", threads)] {
        for load in Load::ALL {
            failures += run_case(board, board_port, path, server, load);
        }
    }
    failures
}

/// One path under one load: the high-priority client starts the load,
/// takes its samples and stops the load; then print the figures.
fn run_case(board: &Board, board_port: PortName, path: &str, server: PortName, load: Load) -> usize {
    board.reset();
    let flags = match load {
        Load::Unloaded => 0,
        Load::Low => WITH_LOW,
        Load::LowMedium => WITH_LOW | WITH_MEDIUM,
    };
    let argument = pack(server as usize, board_port as usize, 0, flags);
    let failures = match gate::thread_create(high_main, argument, HIGH, HIGH_STACK) {
        Ok(thread) => {
            // This thread (the boot thread, priority 0) runs only when
            // nothing else can, and keeps the processor busy then rather
            // than idle: an idle wait under QEMU's icount advances the
            // clock slowly on raspi4b, whose other cores sit in `wfe`.
            // Far past any normal run's length it just waits.
            let deadline = cycles().saturating_add(SAMPLES as u64 * IDLE_FILL_PER_SAMPLE);
            while !board.done.load(Ordering::Acquire) && cycles() < deadline {
                core::hint::black_box(spin(WORK));
            }
            gate::thread_join(thread).unwrap_or(1)
        }
        Err(_) => 1,
    };
    let load = load.word();
    if failures > 0 || !board.complete() {
        tern_inks::println!("bench: inversion {path} {load}: failed ({failures} failures)");
        return failures.max(1);
    }
    let mut samples: Vec<u64> = board.latencies.iter().map(|latency| latency.load(Ordering::Acquire)).collect();
    samples.sort_unstable();
    tern_inks::println!(
        "BENCH-INVERSION path={path} load={load} unit=cycles median={} min={} max={} calls={}",
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
    0
}

/// The experiment, from the kernel's side: start both servers and the
/// client, give the client its rights, run it.
pub fn run() -> Result<(), String> {
    let (pool_domain, pool_port) = crate::start_server("inversion.pool", service::MODE_POOL)?;
    let (thread_domain, thread_port) = crate::start_server("inversion.threads", service::MODE_THREADS)?;
    // Let the server thread run up to its first receive.
    tern_aarch64::threads::yield_now();
    let client = domains::create("inversion.client").map_err(|error| format!("inversion.client: {error:?}"))?;
    let names = state::with(|kernel| {
        (
            kernel.grant_send_right(pool_domain, pool_port, client),
            kernel.grant_send_right(thread_domain, thread_port, client),
        )
    });
    let (Some(pool), Some(threads)) = names else {
        return Err("could not give the inversion client its rights".into());
    };
    if pool > 0xffff || threads > 0xffff {
        return Err("the inversion client's port names do not fit its argument".into());
    }
    match domains::call(client, client_argument(pool as usize, threads as usize)) {
        Ok(upcall::Outcome::Returned(0)) => Ok(()),
        other => Err(format!("the inversion client failed: {other:?}")),
    }
}
