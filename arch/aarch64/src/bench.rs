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

use crate::domains;
use crate::state;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use tern_core::abi::{Call, MessageHeader, PortName};
use tern_core::domain::DomainId;
use tern_inks::gate;
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
    Whole,
    Kernel,
    Cycles,
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
/// (median, minimum).
fn measure(counter: Counter, repetitions: usize, mut operation: impl FnMut() -> bool) -> Option<(u64, u64)> {
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

fn report(path: &str, test: &str, counter: Counter, repetitions: usize, figures: Option<(u64, u64)>) -> bool {
    let (scope, unit) = counter.scope();
    match figures {
        Some((median, minimum)) => {
            tern_inks::println!(
                "BENCH path={path} test={test} scope={scope} unit={unit} median={median} min={minimum} samples={repetitions}"
            );
            true
        }
        None => {
            tern_inks::println!("bench: {path} {test} {scope}: a call failed");
            false
        }
    }
}

const TESTS: [(&str, usize); 4] = [("null", 0), ("32in", 32), ("1kin", 1024), ("32kin", 32 * 1024)];
const COUNTERS: [Counter; 3] = [Counter::Whole, Counter::Kernel, Counter::Cycles];

fn request(payload: usize) -> Vec<u8> {
    let mut message = vec![0u8; MessageHeader::SIZE + payload];
    MessageHeader::new(1, payload).write_to(&mut message);
    for (index, byte) in message[MessageHeader::SIZE..].iter_mut().enumerate() {
        *byte = index as u8;
    }
    message
}

/// `argument`: pool port (bits 0-15), thread port (16-31), repetitions
/// (32-63); repetitions 0 means "one 32 KiB call on each path" (the
/// kernel counts the copies around it).
fn client_main(argument: usize) -> usize {
    let ports = [("switching", (argument >> 16) as u16 as PortName), ("migrating", argument as u16 as PortName)];
    let repetitions = argument >> 32;
    let mut reply = [0u8; 64];
    if repetitions == 0 {
        // Copy-count mode: one 32 KiB call on each port given (name 0 is
        // never a bench port: it is the name service's).
        let message = request(32 * 1024);
        let given = ports.iter().filter(|(_, port)| *port != 0);
        return given.filter(|(_, port)| gate::call(*port, &message, &mut reply).is_err()).count();
    }
    let mut failures = 0;
    for (path, port) in ports {
        for (test, payload) in TESTS {
            let message = request(payload);
            for counter in COUNTERS {
                let figures = measure(counter, repetitions, || gate::call(port, &message, &mut reply).is_ok());
                failures += usize::from(!report(path, test, counter, repetitions, figures));
            }
        }
    }
    let target = core::hint::black_box(floor_target as fn(usize) -> usize);
    for counter in COUNTERS {
        let figures = measure(counter, repetitions, || core::hint::black_box(target(1)) == 2);
        failures += usize::from(!report("floor-call", "null", counter, repetitions, figures));
        let figures = measure(counter, repetitions, || gate::raw_call(Call::Null, 0, 0, 0).is_ok());
        failures += usize::from(!report("floor-svc", "null", counter, repetitions, figures));
        let figures = measure(counter, repetitions, || gate::raw_call(Call::WhoAmI, 0, 0, 0).is_ok());
        failures += usize::from(!report("floor-general", "null", counter, repetitions, figures));
    }
    failures
}

#[inline(never)]
fn floor_target(value: usize) -> usize {
    value + 1
}

/// Start a bench server domain in `mode`; its port name in its own space.
fn start_server(name: &str, mode: usize) -> Result<(DomainId, u32), alloc::string::String> {
    let spec = tern_inks::registry::find(name).ok_or_else(|| alloc::format!("{name} not registered"))?;
    let domain = domains::create(spec).map_err(|error| alloc::format!("{name}: {error:?}"))?;
    match domains::call(domain, mode) {
        Ok(crate::upcall::Outcome::Returned(port)) if port < u32::MAX as usize => Ok((domain, port as u32)),
        other => Err(alloc::format!("{name} did not start: {other:?}")),
    }
}

/// The `bench` scenario.
pub fn run(repetitions: usize) -> Result<(), alloc::string::String> {
    crate::pmu::enable();
    let (pool_domain, pool_port) = start_server("bench.pool", 1)?;
    let (thread_domain, thread_port) = start_server("bench.threads", 2)?;
    // Let the server thread run up to its first receive.
    crate::threads::yield_now();
    let client = domains::create(tern_inks::registry::find("bench.client").ok_or("bench.client not registered")?)
        .map_err(|error| alloc::format!("bench.client: {error:?}"))?;
    let (pool_name, thread_name) = state::with(|kernel| {
        (
            kernel.grant_send_right(pool_domain, pool_port, client),
            kernel.grant_send_right(thread_domain, thread_port, client),
        )
    });
    let (Some(pool_name), Some(thread_name)) = (pool_name, thread_name) else {
        return Err("could not give the client its rights".into());
    };
    let ports = pool_name as usize | (thread_name as usize) << 16;
    let boot_id = crate::timer::counter();
    crate::kprintln!(
        "BENCH-BEGIN boot_id={boot_id:x} board={} counter=instructions repetitions={repetitions} warmup={}",
        crate::kernel::board_name(),
        repetitions / 10 + 10
    );
    match domains::call(client, ports | repetitions << 32) {
        Ok(crate::upcall::Outcome::Returned(0)) => {}
        other => return Err(alloc::format!("the client failed: {other:?}")),
    }
    // Count the payload copies of one 32 KiB call on each path (the reply
    // carries no payload, so every copy counted is of the request).
    for (path, only) in [("migrating", pool_name as usize), ("switching", (thread_name as usize) << 16)] {
        let before = state::with(|kernel| kernel.statistics().payload_copies);
        match domains::call(client, only) {
            Ok(crate::upcall::Outcome::Returned(0)) => {}
            other => return Err(alloc::format!("the copy-count call ({path}) failed: {other:?}")),
        }
        let after = state::with(|kernel| kernel.statistics().payload_copies);
        crate::kprintln!("BENCH-COPIES path={path} test=32kin copies={}", after - before);
    }
    crate::kprintln!(
        "BENCH-MEMORY thread={} activation={} kernel_stack={}",
        core::mem::size_of::<tern_core::thread::Thread>()
            + core::mem::size_of::<crate::state::ThreadArch>()
            + core::mem::size_of::<crate::state::KernelContext>(),
        core::mem::size_of::<tern_core::thread::Activation>(),
        crate::threads::KERNEL_STACK
    );
    crate::kprintln!("BENCH-END");
    Ok(())
}
