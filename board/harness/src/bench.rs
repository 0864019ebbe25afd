//! The benchmark: the paper's Table 3, redone on 64-bit Arm.
//!
//! Two null servers — one serving its port with an activation pool only
//! (migrating), one with a server thread only (switching) — and one client
//! that calls both **with the same code** (`gate::call`), both servers
//! running the same null service through the same runtime, for Null, 32 In,
//! 1K In and 32K In. The client reads the performance counters itself, at
//! EL0, immediately around each call, in separate passes: INST_RETIRED at
//! EL0+EL1 (`whole`), at EL1 only (`kernel`), and the cycle counter
//! (`cycles`). A pass reads one counter only, so nothing but the call lies
//! between the two reads. Median and minimum over the repetitions, after a
//! warm-up. Floors: a plain indirect Rust call, the Null kernel call
//! (exception entry and exit only, answered in the vector), and a trivial
//! call (`WhoAmI`) through the general kernel-call path in Rust. The lines printed are the protocol
//! `cargo xtask bench` reads (see docs/bench.md); the figures are the
//! counters' differences, unaltered.
//!
//! The client lives here rather than under `servers/` because reading the
//! counters takes assembly. The servers are safe code.
//!
//! After the rounds, the same boot runs the priority-inversion experiment
//! ([`crate::inversion`]) and the macro benchmark `build`
//! ([`crate::build`]).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use tern_aarch64::{domains, state};
use tern_core::abi::{Call, MessageHeader, PortName};
use tern_core::domain::DomainId;
use tern_inks::gate;
use tern_inks::mode::DomainMode;
use tern_inks::service::{self, Reply, Request, Service};

tern_inks::domain!(SERVER_POOL, "bench.pool", server_main);
tern_inks::domain!(SERVER_THREADS, "bench.threads", server_main);
tern_inks::domain!(CLIENT, "bench.client", client_main);

/// Server stack size: room for a 32 KiB request and frames.
const SERVER_STACK: usize = 96 << 10;

/// The null service: replies with a bare header (label 0, no payload).
/// Both null servers run it through the same runtime (`tern_inks::service`):
/// a pool of activations for one, a server thread for the other — the same
/// server code on both paths, as the same client code calls both.
struct Null;

impl Service for Null {
    fn handle(&self, _request: &Request<'_>, reply: &mut Reply<'_>) {
        reply.set_label(0);
    }
}

/// `mode` 1: serve with a pool; 2: with one thread. Returns the port name.
fn server_main(mode: usize) -> usize {
    let Ok(port) = gate::port_create() else { return usize::MAX };
    match service::serve(Box::leak(Box::new(Null)), port, mode, 4, 1, SERVER_STACK) {
        Ok(()) => port as usize,
        Err(_) => usize::MAX,
    }
}

#[derive(Clone, Copy)]
enum Counter {
    Whole = 0,
    Kernel = 1,
    Cycles = 2,
}

impl Counter {
    fn scope(self) -> (&'static str, &'static str) {
        match self {
            Counter::Whole => ("whole", "instructions"),
            Counter::Kernel => ("kernel", "instructions"),
            Counter::Cycles => ("cycles", "cycles"),
        }
    }
}

#[inline(always)]
fn read(counter: Counter) -> u64 {
    let value: u64;
    // SAFETY: reading a PMU counter at EL0 is allowed (PMUSERENR_EL0.EN,
    // set by the kernel for the benchmark); it has no side effects.
    unsafe {
        match counter {
            Counter::Whole => core::arch::asm!("mrs {}, pmevcntr0_el0", out(reg) value, options(nomem, nostack)),
            Counter::Kernel => core::arch::asm!("mrs {}, pmevcntr1_el0", out(reg) value, options(nomem, nostack)),
            Counter::Cycles => core::arch::asm!("mrs {}, pmccntr_el0", out(reg) value, options(nomem, nostack)),
        }
    }
    value
}

/// Measure `operation` `repetitions` times (after a warm-up) on `counter`;
/// (median, minimum). One loop per counter, each reading only its own
/// counter, so that the window between the two reads holds the operation
/// and nothing of choosing the counter (which the compiler otherwise
/// moves in or out of the window from one build to the next).
fn measure(counter: Counter, repetitions: usize, operation: impl FnMut() -> bool) -> Option<(u64, u64)> {
    match counter {
        Counter::Whole => measure_on::<{ Counter::Whole as u8 }>(repetitions, operation),
        Counter::Kernel => measure_on::<{ Counter::Kernel as u8 }>(repetitions, operation),
        Counter::Cycles => measure_on::<{ Counter::Cycles as u8 }>(repetitions, operation),
    }
}

/// One figure, between the crossings plugin's markers (`hint #0x7e`
/// before, `hint #0x7f` after: `cargo xtask bench` loads a QEMU plugin,
/// `tools/qemu-plugin`, that counts what each call crosses between this
/// figure's counter reads). Both hints are unallocated, so they execute
/// as NOPs, outside the measuring window.
#[inline(never)]
fn measure_on<const COUNTER: u8>(repetitions: usize, operation: impl FnMut() -> bool) -> Option<(u64, u64)> {
    // SAFETY: an unallocated hint: a NOP, touching nothing.
    unsafe { core::arch::asm!("hint #0x7e", options(nomem, nostack, preserves_flags)) };
    let figures = sample_on::<COUNTER>(repetitions, operation);
    // SAFETY: an unallocated hint: a NOP, touching nothing.
    unsafe { core::arch::asm!("hint #0x7f", options(nomem, nostack, preserves_flags)) };
    figures
}

/// The body of [`measure_on`], between its markers.
#[inline(always)]
fn sample_on<const COUNTER: u8>(repetitions: usize, mut operation: impl FnMut() -> bool) -> Option<(u64, u64)> {
    let counter = match COUNTER {
        0 => Counter::Whole,
        1 => Counter::Kernel,
        _ => Counter::Cycles,
    };
    for _ in 0..repetitions / 10 + 10 {
        if !operation() {
            return None;
        }
    }
    let mut samples = Vec::with_capacity(repetitions);
    for _ in 0..repetitions {
        let before = read(counter);
        let ok = operation();
        let after = read(counter);
        if !ok {
            return None;
        }
        samples.push(after.wrapping_sub(before));
    }
    samples.sort_unstable();
    Some((samples[samples.len() / 2], samples[0]))
}

fn report(
    path: &str,
    mode: &str,
    test: &str,
    counter: Counter,
    repetitions: usize,
    figures: Option<(u64, u64)>,
) -> bool {
    let (scope, unit) = counter.scope();
    match figures {
        Some((median, minimum)) => {
            tern_inks::println!(
                "BENCH path={path} mode={mode} test={test} scope={scope} unit={unit} median={median} min={minimum} samples={repetitions}"
            );
            true
        }
        None => {
            tern_inks::println!("bench: {path} ({mode}) {test} {scope}: a call failed");
            false
        }
    }
}

const TESTS: [(&str, usize); 4] = [("null", 0), ("32in", 32), ("1kin", 1024), ("32kin", 32 * 1024)];
const COUNTERS: [Counter; 3] = [Counter::Whole, Counter::Kernel, Counter::Cycles];

/// The rounds of one boot, in order, and the mode each names (the kernel
/// changes the domains' modes between them).
pub mod round {
    /// Client and both servers protected.
    pub const PROTECTED: usize = 0;
    /// `bench.pool` merged, the client protected.
    pub const SERVER_MERGED: usize = 1;
    /// `bench.pool` and the client merged.
    pub const BOTH_MERGED: usize = 2;
    /// The `mode=` word of each round.
    pub const MODES: [&str; 3] = ["protected", "server-merged", "both-merged"];
}

fn request(payload: usize) -> Vec<u8> {
    let mut message = vec![0u8; MessageHeader::SIZE + payload];
    MessageHeader::new(1, payload).write_to(&mut message);
    for (index, byte) in message[MessageHeader::SIZE..].iter_mut().enumerate() {
        *byte = index as u8;
    }
    message
}

/// The client's start argument: pool port (bits 0-15), thread port
/// (16-31), round (32-35), repetitions (36-63); repetitions 0 means "one
/// 32 KiB call on each port given" (the kernel counts the copies).
pub const fn client_argument(pool: usize, threads: usize, round: usize, repetitions: usize) -> usize {
    pool | threads << 16 | round << 32 | repetitions << 36
}

fn client_main(argument: usize) -> usize {
    let (pool, threads) = (argument as u16 as PortName, (argument >> 16) as u16 as PortName);
    let round = (argument >> 32) & 0xf;
    let repetitions = argument >> 36;
    let mut reply = [0u8; 64];
    if repetitions == 0 {
        // Copy-count mode: one 32 KiB call on each port given (name 0 is
        // never a bench port: it is the name service's).
        let message = request(32 * 1024);
        let given = [pool, threads].into_iter().filter(|port| *port != 0);
        return given.filter(|port| gate::call(*port, &message, &mut reply).is_err()).count();
    }
    let Some(mode) = round::MODES.get(round) else { return 1 };
    let paths: &[(&str, PortName)] = match round {
        round::PROTECTED => &[("switching", threads), ("migrating-protected", pool)],
        _ => &[("migrating-merged", pool)],
    };
    let mut failures = 0;
    for &(path, port) in paths {
        for (test, payload) in TESTS {
            let message = request(payload);
            for counter in COUNTERS {
                let figures = measure(counter, repetitions, || gate::call(port, &message, &mut reply).is_ok());
                failures += usize::from(!report(path, mode, test, counter, repetitions, figures));
            }
        }
        if path == "switching" {
            continue; // lending needs a pool (a server thread cannot take a lend)
        }
        let header = request(0);
        let lent = vec![7u8; 32 * 1024];
        for counter in COUNTERS {
            let figures =
                measure(counter, repetitions, || gate::call_lending(port, &header, &mut reply, &lent).is_ok());
            failures += usize::from(!report(path, mode, "32kin-lent", counter, repetitions, figures));
        }
    }
    // The pool again, through a bound handle (`tern_inks::bound`): bound
    // once per round, as the mode pair decides its path; called with
    // message buffers (`bound`: the request and the reply in registers
    // when they fit, as Null and 32 In do) and with the message in memory
    // (`bound-memory`).
    let Ok(handle) = tern_inks::bound::bind(pool) else { return failures + 1 };
    let mut reply_buffer = service::MessageBuffer::with_payload_capacity(64);
    for (test, payload) in TESTS {
        let message = request(payload);
        // (Room for a register message, as any buffer of 32 payload bytes
        // or more has: see `MessageBuffer::register_words`.)
        let mut buffer = service::MessageBuffer::with_payload_capacity(payload.max(service::REGISTER_WORDS * 8));
        buffer.set_label(1);
        failures += usize::from(buffer.set_payload(&message[MessageHeader::SIZE..]).is_err());
        for counter in COUNTERS {
            let figures = measure(
                counter,
                repetitions,
                #[inline(always)]
                || handle.send(&buffer, &mut reply_buffer).is_ok(),
            );
            failures += usize::from(!report("bound", mode, test, counter, repetitions, figures));
        }
        for counter in COUNTERS {
            let figures = measure(counter, repetitions, || handle.call(&message, &mut reply).is_ok());
            failures += usize::from(!report("bound-memory", mode, test, counter, repetitions, figures));
        }
        // The same request as `Words` (`call_words`: registers both ways),
        // where it fits.
        if let Some(words) = tern_inks::bound::Words::new(1, &message[MessageHeader::SIZE..]) {
            for counter in COUNTERS {
                let figures = measure(counter, repetitions, || handle.call_words(&words).is_ok());
                failures += usize::from(!report("bound-words", mode, test, counter, repetitions, figures));
            }
        }
    }
    failures += usize::from(handle.unbind().is_err());
    let target = core::hint::black_box(floor_target as fn(usize) -> usize);
    for counter in COUNTERS {
        let figures = measure(counter, repetitions, || core::hint::black_box(target(1)) == 2);
        failures += usize::from(!report("floor-call", mode, "null", counter, repetitions, figures));
        // The Null kernel call: `svc` while protected, the gate's direct
        // entry while merged.
        let floor = if round == round::BOTH_MERGED { "floor-entry" } else { "floor-svc" };
        let figures = measure(counter, repetitions, || gate::raw_call(Call::Null, 0, 0, 0).is_ok());
        failures += usize::from(!report(floor, mode, "null", counter, repetitions, figures));
        if round == round::PROTECTED {
            let figures = measure(counter, repetitions, || gate::raw_call(Call::WhoAmI, 0, 0, 0).is_ok());
            failures += usize::from(!report("floor-general", mode, "null", counter, repetitions, figures));
        }
    }
    failures
}

#[inline(never)]
fn floor_target(value: usize) -> usize {
    value + 1
}

/// The `bench` scenario.
pub fn run(repetitions: usize) -> Result<(), alloc::string::String> {
    tern_aarch64::pmu::enable();
    let (pool_domain, pool_port) = crate::start_server("bench.pool", 1)?;
    let (thread_domain, thread_port) = crate::start_server("bench.threads", 2)?;
    // Let the server thread run up to its first receive.
    tern_aarch64::threads::yield_now();
    let client = domains::create("bench.client").map_err(|error| alloc::format!("bench.client: {error:?}"))?;
    let (pool_name, thread_name) = state::with(|kernel| {
        (
            kernel.grant_send_right(pool_domain, pool_port, client),
            kernel.grant_send_right(thread_domain, thread_port, client),
        )
    });
    let (Some(pool_name), Some(thread_name)) = (pool_name, thread_name) else {
        return Err("could not give the client its rights".into());
    };
    let boot_id = tern_aarch64::timer::counter();
    tern_aarch64::kprintln!(
        "BENCH-BEGIN boot_id={boot_id:x} board={} counter=instructions repetitions={repetitions} warmup={}",
        tern_aarch64::kernel::board_name(),
        repetitions / 10 + 10
    );
    let (pool, threads) = (pool_name as usize, thread_name as usize);
    // One boot, three rounds: the modes change between them.
    let flips: [&[(DomainId, &str, DomainMode)]; 3] =
        [&[], &[(pool_domain, "bench.pool", DomainMode::Merged)], &[(client, "bench.client", DomainMode::Merged)]];
    for (round, flip) in flips.iter().enumerate() {
        for &(domain, name, mode) in *flip {
            flip_mode(domain, name, mode)?;
        }
        match domains::call(client, client_argument(pool, threads, round, repetitions)) {
            Ok(tern_aarch64::upcall::Outcome::Returned(0)) => {}
            other => return Err(alloc::format!("the client failed in round {}: {other:?}", round::MODES[round])),
        }
    }
    flip_mode(client, "bench.client", DomainMode::Protected)?;
    flip_mode(pool_domain, "bench.pool", DomainMode::Protected)?;
    // Count the payload copies of one 32 KiB call on each path (the reply
    // carries no payload, so every copy counted is of the request).
    for (path, only) in
        [("migrating-protected", client_argument(pool, 0, 0, 0)), ("switching", client_argument(0, threads, 0, 0))]
    {
        let before = state::with(|kernel| kernel.statistics().payload_copies);
        match domains::call(client, only) {
            Ok(tern_aarch64::upcall::Outcome::Returned(0)) => {}
            other => return Err(alloc::format!("the copy-count call ({path}) failed: {other:?}")),
        }
        let after = state::with(|kernel| kernel.statistics().payload_copies);
        tern_aarch64::kprintln!("BENCH-COPIES path={path} mode=protected test=32kin copies={}", after - before);
    }
    stages();
    crate::inversion::run()?;
    // The macro benchmark: a build through the file server in each
    // configuration (`tern_image::build`).
    tern_image::build::run_all(crate::build::files())?;
    tern_aarch64::kprintln!(
        "BENCH-MEMORY thread={} activation={} kernel_stack={}",
        core::mem::size_of::<tern_core::thread::Thread>() + tern_aarch64::machine::THREAD_KERNEL_SIDE_BYTES,
        core::mem::size_of::<tern_core::thread::Activation>(),
        tern_aarch64::machine::KERNEL_STACK
    );
    tern_aarch64::kprintln!("BENCH-END");
    Ok(())
}

/// Change a domain's mode between rounds, and say so.
fn flip_mode(domain: DomainId, name: &str, mode: DomainMode) -> Result<(), alloc::string::String> {
    domains::set_mode(domain, mode).map_err(|error| alloc::format!("{name} -> {mode:?}: {error}"))?;
    let word = match mode {
        DomainMode::Protected => "protected",
        DomainMode::Merged => "merged",
    };
    tern_aarch64::kprintln!("BENCH-FLIP domain={name} mode={word}");
    Ok(())
}

// Stage labels in vectors.s and fastpath.s, in code order.
unsafe extern "C" {
    static tern_stage_entry: u8;
    static tern_stage_entry_return_end: u8;
    static tern_stage_entry_call_end: u8;
    static tern_stage_call_translate: u8;
    static tern_stage_call_checks: u8;
    static tern_stage_call_checks_end: u8;
    static tern_stage_call_switch: u8;
    static tern_stage_call_copy: u8;
    static tern_stage_call_copy_end: u8;
    static tern_stage_call_stats: u8;
    static tern_stage_call_server_exit: u8;
    static tern_stage_call_end: u8;
    static tern_stage_return_translate: u8;
    static tern_stage_return_checks: u8;
    static tern_stage_return_copy: u8;
    static tern_stage_return_copy_end: u8;
    static tern_stage_return_switch: u8;
    static tern_stage_return_client_exit: u8;
    static tern_stage_return_end: u8;
}

/// Print the null migrating call's path by stage (the paper's Table 1):
/// instructions between the stage labels of the code a null call runs
/// (straight-line between them: a null request skips the payload copy,
/// and a pool with more than one free activation skips the sidetrack
/// check, which are the `_end` labels). `cargo xtask bench` compares the
/// sum with the PMU's kernel-only count of the same call.
fn stages() {
    let at = |label: &u8| label as *const u8 as usize;
    let count = |from: &u8, to: &u8| (at(to) - at(from)) / 4;
    // SAFETY: only the labels' addresses are taken; nothing is read.
    let lines = unsafe {
        [
            ("call", "client-entry", count(&tern_stage_entry, &tern_stage_entry_call_end)),
            ("call", "translate", count(&tern_stage_call_translate, &tern_stage_call_checks)),
            ("call", "checks", count(&tern_stage_call_checks, &tern_stage_call_checks_end)),
            ("call", "switch", count(&tern_stage_call_switch, &tern_stage_call_copy)),
            ("call", "copy", count(&tern_stage_call_copy, &tern_stage_call_copy_end)),
            ("call", "stats", count(&tern_stage_call_stats, &tern_stage_call_server_exit)),
            ("call", "server-exit", count(&tern_stage_call_server_exit, &tern_stage_call_end)),
            ("return", "server-entry", count(&tern_stage_entry, &tern_stage_entry_return_end)),
            ("return", "translate", count(&tern_stage_return_translate, &tern_stage_return_checks)),
            ("return", "checks", count(&tern_stage_return_checks, &tern_stage_return_copy)),
            ("return", "copy", count(&tern_stage_return_copy, &tern_stage_return_copy_end)),
            ("return", "switch", count(&tern_stage_return_switch, &tern_stage_return_client_exit)),
            ("return", "client-exit", count(&tern_stage_return_client_exit, &tern_stage_return_end)),
        ]
    };
    for (side, stage, instructions) in lines {
        tern_aarch64::kprintln!(
            "BENCH-STAGE path=migrating-protected mode=protected test=null side={side} stage={stage} instructions={instructions}"
        );
    }
}
