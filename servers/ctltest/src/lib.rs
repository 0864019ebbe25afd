//! # tern-ctltest: activation control, exercised from domains
//!
//! Three domains, all safe Rust, that the kernel's `ctl-*` boot scenarios
//! start (see `docs/scenarios.md`):
//!
//! - `ctl.top` serves requests whose label says what to do: poll for an
//!   alert with alerts open or blocked, spin (yielding) for a while and
//!   count the calls it completed, alert its own activation, lower the
//!   calling thread's priority, report the thread's priority, burn CPU, or
//!   report its counters. A call that reaches it from a client through
//!   `ctl.mid` makes a chain of three activations in three domains.
//! - `ctl.mid` forwards to `ctl.top` (with alerts blocked, as a new server
//!   activation starts, or opened first), or sleeps in the kernel; it
//!   remembers its last forwarding activation so that a later call can
//!   terminate, splice out or suspend that activation — a server
//!   controlling its own activation, the only one it has a right to.
//! - `ctl.client` runs one test (its start argument): it starts a worker
//!   thread that calls down the chain, finds the worker's activation with
//!   `activations`, acts on it while the worker is up in the servers, and
//!   checks the outcome. The worker's result comes back through
//!   `thread_join`, which follows a thread's base activation across a split.
//!
//! Everything a test asserts is printed as one line; the test returns the
//! number of things that went wrong (0 = pass).
//!
//! A test server: linked only into harness images (`board/harness`), never
//! into the production image. It depends on the in-kernel-server layer
//! (`tern-inks`) and the kernel's ABI (`tern-core`) only, never on the arch
//! crate or another server's code; it has no `unsafe` (merging it changes
//! how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use tern_core::abi::{Error, PortName};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, Reply, Request, Service};

tern_inks::domain!(TOP, "ctl.top", top_main);
tern_inks::domain!(MID, "ctl.mid", mid_main);
tern_inks::domain!(CLIENT, "ctl.client", client_main);

/// The client's tests (its start argument).
pub mod test {
    /// Alerts: from the client's activation to the top of a 3-deep chain;
    /// from the top's own activation, not below it; blocked alerts held
    /// until opened.
    pub const ALERTS: usize = 1;
    /// Blocking kernel calls end `Interrupted`: a receive, a sleep.
    pub const INTERRUPTED: usize = 2;
    /// Alert-and-break: the caller gets `Interrupted` at once, the part
    /// above completes.
    pub const ALERT_BREAK: usize = 3;
    /// Termination of the middle activation: the client gets `Terminated`
    /// at once, the top part completes on its own thread.
    pub const TERMINATE: usize = 4;
    /// Termination of an activation that is inside a kernel call.
    pub const TERMINATE_IN_KERNEL: usize = 5;
    /// Splice-out: `Terminated` only after the part above has returned.
    pub const SPLICE: usize = 6;
    /// Suspend the client's activation while its thread is up in the
    /// servers: their work goes on, the thread stops on its way back.
    pub const SUSPEND: usize = 7;
    /// Get and set state: waits for the thread to come back; the set
    /// registers are what the worker sees.
    pub const STATE: usize = 8;
    /// Priority follows the thread into the server; forbid-above stops the
    /// server lowering it; accounting charges the client for server time.
    pub const SCHEDULING: usize = 9;
    /// Bad arguments get error codes.
    pub const BAD_INPUT: usize = 10;
    /// Start two workers calling a SPIN down the chain, wait until both
    /// are in `ctl.top`, and return their thread numbers (bits 16-31 and
    /// 32-47) for the kernel's domain-control scenario.
    pub const DOMAIN_START: usize = 11;
    /// Join the two workers named in the argument (as `DOMAIN_START` gave
    /// them); bit 8 set: their calls must have come back with the middle
    /// reporting `CallAborted` from the top (the top domain was terminated
    /// under them), else completed normally.
    pub const DOMAIN_JOIN: usize = 12;
    /// Calls into a kernel object (the kernel's clock, served by kernel
    /// activations): an alert ends a sleep in it with `Interrupted`;
    /// alert-and-break gives the caller control back at once while the
    /// kernel activation finishes.
    pub const KERNEL_OBJECT: usize = 13;
    /// An alert delivered by upcall into the top server's handler, which
    /// then lets the call go on to complete normally.
    pub const ALERT_UPCALL: usize = 14;
}

/// What `ctl.top` does with a request (its label's low byte).
pub mod top_op {
    /// Reply at once.
    pub const NOTHING: u32 = 0;
    /// Open alerts, then poll for one (yielding) up to a bound: reply 1 if
    /// one came.
    pub const POLL_OPEN: u32 = 1;
    /// Poll with alerts blocked, then open them and test once: reply bit 0
    /// "seen while blocked", bit 1 "seen after opening".
    pub const POLL_BLOCKED: u32 = 2;
    /// Yield [`super::SPIN_YIELDS`] times, then count a completed call.
    pub const SPIN: u32 = 3;
    /// Reply the number of SPIN calls entered (bits 0-11) and completed
    /// (bits 12-23).
    pub const REPORT: u32 = 4;
    /// Open alerts, alert its own activation, test: reply bit 0 "seen",
    /// bits 8+ how many activations the alert reached.
    pub const ALERT_SELF: u32 = 5;
    /// Set the calling thread's priority to 2: reply 0, or the error code.
    pub const LOWER_PRIORITY: u32 = 6;
    /// Reply the calling thread's priority.
    pub const PRIORITY: u32 = 7;
    /// Burn CPU without yielding for a few timer ticks; reply its domain
    /// number.
    pub const BUSY: u32 = 8;
    /// Ask for alerts by upcall into a handler, open alerts, then SPIN.
    pub const HANDLER: u32 = 9;
}

/// What `ctl.mid` does (its label's second byte); the low byte goes on to
/// `ctl.top`.
pub mod mid_op {
    /// Forward with alerts blocked (as a fresh server activation is).
    pub const PASS: u32 = 0;
    /// Open alerts, then forward; after the reply, test for an alert.
    pub const OPEN: u32 = 1;
    /// Sleep in the kernel (for a long time), remembering this activation.
    pub const SLEEP: u32 = 2;
    /// Terminate the last remembered activation.
    pub const TERMINATE_LAST: u32 = 3;
    /// Splice out the last remembered activation.
    pub const SPLICE_LAST: u32 = 4;
}

/// Yields of a SPIN call.
pub const SPIN_YIELDS: usize = 40;

/// Reply bit from `ctl.mid`: it saw an alert after the forward.
const MID_SAW_ALERT: u32 = 1 << 24;
/// Reply bit from `ctl.mid`: the forward failed (the error code below).
const MID_FAILED: u32 = 1 << 31;

// ---------------------------------------------------------------------------
// ctl.top

struct Top {
    entered: AtomicU32,
    completed: AtomicU32,
}

impl Service for Top {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let answer = match request.label() & 0xff {
            top_op::POLL_OPEN => {
                let _ = gate::alerts_block(false);
                self.entered.fetch_add(1, Ordering::Relaxed);
                let mut seen = 0;
                for _ in 0..400 {
                    if gate::test_alert() {
                        seen = 1;
                        break;
                    }
                    gate::yield_now();
                }
                seen
            }
            top_op::POLL_BLOCKED => {
                self.entered.fetch_add(1, Ordering::Relaxed);
                let mut blocked_seen = 0;
                for _ in 0..SPIN_YIELDS {
                    if gate::test_alert() {
                        blocked_seen = 1;
                    }
                    gate::yield_now();
                }
                let _ = gate::alerts_block(false);
                blocked_seen | (gate::test_alert() as u32) << 1
            }
            top_op::SPIN => {
                self.entered.fetch_add(1, Ordering::Relaxed);
                for _ in 0..SPIN_YIELDS {
                    gate::yield_now();
                }
                self.completed.fetch_add(1, Ordering::Relaxed);
                1
            }
            top_op::HANDLER => {
                let _ = gate::alert_handler_set(top_alert_handler);
                let _ = gate::alerts_block(false);
                self.entered.fetch_add(1, Ordering::Relaxed);
                for _ in 0..SPIN_YIELDS {
                    gate::yield_now();
                }
                self.completed.fetch_add(1, Ordering::Relaxed);
                1
            }
            top_op::REPORT => {
                (self.entered.load(Ordering::Relaxed) & 0xfff) | (self.completed.load(Ordering::Relaxed) & 0xfff) << 12
            }
            top_op::ALERT_SELF => {
                let _ = gate::alerts_block(false);
                let reached = gate::activation_self().and_then(gate::alert).unwrap_or(0) as u32;
                gate::test_alert() as u32 | reached << 8
            }
            top_op::LOWER_PRIORITY => match gate::activation_self().and_then(|me| gate::set_priority(me, 2)) {
                Ok(_) => 0,
                Err(error) => error as u32,
            },
            top_op::PRIORITY => {
                let mut words = [0u64; 2];
                match gate::activation_self().and_then(|me| gate::thread_info(me, &mut words)) {
                    Ok(_) => words[0] as u32,
                    Err(_) => u32::MAX,
                }
            }
            top_op::BUSY => {
                let mut spin = 0u64;
                for _ in 0..BUSY_ITERATIONS {
                    spin = core::hint::black_box(spin.wrapping_add(1));
                }
                gate::who_am_i() as u32
            }
            _ => 0,
        };
        reply.set_label(answer);
    }
}

/// `ctl.top`'s alert handler: says where it runs, then lets the call go on.
extern "C" fn top_alert_handler(activation: usize) -> ! {
    let own = gate::activation_self() == Ok(activation);
    tern_inks::println!(
        "[ctl.top] alert handler upcalled in the alerted activation: {}",
        if own { "yes" } else { "no" }
    );
    gate::alert_done()
}

/// Iterations of a BUSY call: several timer ticks under QEMU.
pub const BUSY_ITERATIONS: u64 = 20_000_000;

/// `argument`: the service mode (1 pool, see `tern_inks::service`).
fn top_main(mode: usize) -> usize {
    service::start(Some("ctltop"), Top { entered: AtomicU32::new(0), completed: AtomicU32::new(0) }, mode)
}

// ---------------------------------------------------------------------------
// ctl.mid

struct Mid {
    top: PortName,
    last: AtomicUsize,
    /// Forward through a bound handle (bound for the call, so that a
    /// change of `ctl.top`'s mode between calls needs no rebinding): with
    /// both merged, the call to the top is the bound merged path.
    bound: bool,
}

/// Or'd into `ctl.mid`'s start argument: forward through bound handles.
pub const MID_BOUND: usize = 1 << 8;

impl Mid {
    fn forward(&self, label: u32) -> u32 {
        let mut request = MessageBuffer::new();
        request.set_label(label & 0xff);
        let mut answer = MessageBuffer::new();
        let outcome = if self.bound {
            tern_inks::bound::bind(self.top).and_then(|handle| {
                let label = handle.send(&request, &mut answer).map(|view| view.label());
                let _ = handle.unbind();
                label
            })
        } else {
            service::call(self.top, &request, &mut answer).map(|view| view.label())
        };
        match outcome {
            Ok(label) => label & 0xff_ffff,
            Err(error) => MID_FAILED | error as u32,
        }
    }
}

impl Service for Mid {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let label = request.label();
        let answer = match (label >> 8) & 0xff {
            mid_op::PASS => {
                self.last.store(gate::activation_self().unwrap_or(0), Ordering::Relaxed);
                self.forward(label)
            }
            mid_op::OPEN => {
                self.last.store(gate::activation_self().unwrap_or(0), Ordering::Relaxed);
                let _ = gate::alerts_block(false);
                let answer = self.forward(label);
                answer | if gate::test_alert() { MID_SAW_ALERT } else { 0 }
            }
            mid_op::SLEEP => {
                self.last.store(gate::activation_self().unwrap_or(0), Ordering::Relaxed);
                match gate::sleep(usize::MAX / 2) {
                    Ok(_) => 0,
                    Err(error) => MID_FAILED | error as u32,
                }
            }
            mid_op::TERMINATE_LAST => match gate::terminate(self.last.load(Ordering::Relaxed)) {
                Ok(_) => 0,
                Err(error) => MID_FAILED | error as u32,
            },
            mid_op::SPLICE_LAST => match gate::splice_out(self.last.load(Ordering::Relaxed)) {
                Ok(_) => 0,
                Err(error) => MID_FAILED | error as u32,
            },
            _ => MID_FAILED,
        };
        reply.set_label(answer);
    }
}

fn mid_main(argument: usize) -> usize {
    let (mode, bound) = (argument & !MID_BOUND, argument & MID_BOUND != 0);
    match service::lookup("ctltop") {
        Ok(top) => service::start(Some("ctlmid"), Mid { top, last: AtomicUsize::new(0), bound }, mode),
        Err(error) => error as usize,
    }
}

// ---------------------------------------------------------------------------
// ctl.client

/// The ports a test uses.
#[derive(Clone, Copy)]
struct Ports {
    mid: PortName,
    top: PortName,
}

/// One call with `label`, the reply's label (or the error).
fn ask(port: PortName, label: u32) -> Result<u32, Error> {
    let mut request = MessageBuffer::new();
    request.set_label(label);
    let mut reply = MessageBuffer::new();
    service::call(port, &request, &mut reply).map(|view| view.label())
}

/// A worker's argument: the ports and the label of its one call.
pub const fn worker_argument(mid: PortName, top: PortName, label: u32) -> usize {
    (mid as usize) | (top as usize) << 16 | (label as usize) << 32
}

/// A worker's result: 0 for success or the error code (bits 0-7); what
/// `ctl.top` reported right after the call returned (bits 8-31); the
/// reply's label (bits 32+).
fn worker(argument: usize) -> usize {
    let (mid, top, label) =
        ((argument & 0xffff) as PortName, ((argument >> 16) & 0xffff) as PortName, (argument >> 32) as u32);
    let outcome = ask(mid, label);
    let report = ask(top, top_op::REPORT).unwrap_or(0) as usize;
    match outcome {
        Ok(answer) => report << 8 | (answer as usize) << 32,
        Err(error) => error as usize | report << 8,
    }
}

/// The worker's parts, decoded.
struct Outcome {
    result: Result<u32, Error>,
    completed_then: u32,
}

fn decode(value: usize) -> Outcome {
    let code = value & 0xff;
    let result =
        if code == 0 { Ok((value >> 32) as u32) } else { Err(Error::from_code(code).unwrap_or(Error::NoSuchCall)) };
    Outcome { result, completed_then: ((value >> 8) as u32 >> 12) & 0xfff }
}

fn completed(ports: Ports) -> u32 {
    ask(ports.top, top_op::REPORT).map_or(0, |report| (report >> 12) & 0xfff)
}

fn entered(ports: Ports) -> u32 {
    ask(ports.top, top_op::REPORT).map_or(0, |report| report & 0xfff)
}

/// Start a thread of ours running `entry(argument)` at `priority`; its
/// number and its (base) activation, found as the one `activations` lists
/// now and did not before (the thread is ready, not yet running, but its
/// activation is occupied already).
fn spawn(entry: fn(usize) -> usize, argument: usize, priority: u8) -> Result<(usize, usize), Error> {
    let me = gate::activation_self()?;
    let before = own_activations();
    let thread = gate::thread_create(entry, argument, priority, 64 * 1024)?;
    let activation =
        own_activations().into_iter().find(|&a| a != me && !before.contains(&a)).ok_or(Error::NoSuchActivation)?;
    Ok((thread, activation))
}

/// Start a worker at `priority` calling `label` down the chain.
fn start_worker(ports: Ports, label: u32, priority: u8) -> Result<(usize, usize), Error> {
    spawn(worker, worker_argument(ports.mid, ports.top, label), priority)
}

fn own_activations() -> Vec<usize> {
    let mut out = [0u32; 16];
    let domain = gate::who_am_i();
    match gate::activations(domain, &mut out) {
        Ok(count) => out[..count.min(16)].iter().map(|&a| a as usize).collect(),
        Err(_) => Vec::new(),
    }
}

/// Yield until `count` (one of `ctl.top`'s counters) reaches `target`
/// (bounded); whether it did.
fn wait_for(count: fn(Ports) -> u32, ports: Ports, target: u32) -> bool {
    for _ in 0..4000 {
        if count(ports) >= target {
            return true;
        }
        gate::yield_now();
    }
    false
}

fn wait_entered(ports: Ports, target: u32) -> bool {
    wait_for(entered, ports, target)
}

fn wait_completed(ports: Ports, target: u32) -> bool {
    wait_for(completed, ports, target)
}

fn check(failures: &mut usize, ok: bool, what: core::fmt::Arguments<'_>) {
    tern_inks::println!("[ctl] {}: {}", what, if ok { "ok" } else { "WRONG" });
    if !ok {
        *failures += 1;
    }
}

fn label(mid: u32, top: u32) -> u32 {
    mid << 8 | top
}

fn client_main(test: usize) -> usize {
    let ports = match (service::lookup("ctlmid"), service::lookup("ctltop")) {
        (Ok(mid), Ok(top)) => Ports { mid, top },
        other => {
            tern_inks::println!("[ctl] lookups failed: {other:?}");
            return 1;
        }
    };
    let failures = match test {
        test::ALERTS => alerts(ports),
        test::INTERRUPTED => interrupted(),
        test::ALERT_BREAK => cut(ports, Cut::AlertBreak),
        test::TERMINATE => cut(ports, Cut::Terminate),
        test::TERMINATE_IN_KERNEL => terminate_in_kernel(ports),
        test::SPLICE => cut(ports, Cut::Splice),
        test::SUSPEND => suspend(ports),
        test::STATE => state(ports),
        test::SCHEDULING => scheduling(ports),
        test::BAD_INPUT => bad_input(ports),
        test::KERNEL_OBJECT => kernel_object(),
        test::ALERT_UPCALL => alert_upcall(ports),
        _ if test & 0xff == test::DOMAIN_START => return domain_start(ports),
        _ if test & 0xff == test::DOMAIN_JOIN => domain_join(test),
        _ => 1,
    };
    tern_inks::println!("[ctl] test {}: {failures} failure(s)", test & 0xff);
    failures
}

fn alerts(ports: Ports) -> usize {
    let mut failures = 0;
    // 1. From the worker's own activation, with the middle open: up to the
    // top of the three-deep chain.
    let base = entered(ports);
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::OPEN, top_op::POLL_OPEN), 0) else { return 1 };
    let inside = wait_entered(ports, base + 1);
    let reached = gate::alert(activation);
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    check(
        &mut failures,
        inside && reached == Ok(3),
        format_args!("alert from the client reached {reached:?} activations of 3"),
    );
    let answer = outcome.result.unwrap_or(0);
    check(&mut failures, answer & 0xff == 1, format_args!("the top activation saw it"));
    check(&mut failures, answer & MID_SAW_ALERT != 0, format_args!("the middle activation saw it too"));
    // 2. From the top's own activation: it sees it; nothing below does.
    let answer = ask(ports.mid, label(mid_op::OPEN, top_op::ALERT_SELF));
    let answer = answer.unwrap_or(0);
    check(
        &mut failures,
        answer & 1 == 1 && (answer >> 8) & 0xff == 1,
        format_args!("alert from the top's own activation reached only it, and it saw it"),
    );
    check(&mut failures, answer & MID_SAW_ALERT == 0, format_args!("the middle (below the origin) did not see it"));
    check(&mut failures, !gate::test_alert(), format_args!("the client (below the origin) did not see it"));
    // 3. Blocked at the top: held until opened.
    let base = entered(ports);
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::OPEN, top_op::POLL_BLOCKED), 0) else {
        return failures + 1;
    };
    let inside = wait_entered(ports, base + 1);
    let reached = gate::alert(activation);
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    let answer = outcome.result.unwrap_or(0);
    check(
        &mut failures,
        inside && reached == Ok(3),
        format_args!("alert into a top with alerts blocked reached {reached:?} (held there)"),
    );
    check(&mut failures, answer & 1 == 0, format_args!("not seen while blocked"));
    check(&mut failures, answer & 2 == 2, format_args!("seen once opened"));
    failures
}

fn interrupted() -> usize {
    let mut failures = 0;
    // A thread of ours waiting in receive on a port nobody calls.
    fn receiver(_: usize) -> usize {
        let Ok(port) = gate::port_create() else { return usize::MAX };
        let mut buffer = [0u8; 64];
        match gate::receive(port, &mut buffer) {
            Ok(_) => 0,
            Err(error) => error as usize,
        }
    }
    fn sleeper(_: usize) -> usize {
        match gate::sleep(usize::MAX / 2) {
            Ok(_) => 0,
            Err(error) => error as usize,
        }
    }
    for (what, entry) in [("receive", receiver as fn(usize) -> usize), ("sleep", sleeper)] {
        let Ok((thread, activation)) = spawn(entry, 0, 0) else { return failures + 1 };
        // Let it block.
        for _ in 0..4 {
            gate::yield_now();
        }
        let alerted = gate::alert(activation);
        let result = gate::thread_join(thread);
        check(
            &mut failures,
            alerted == Ok(1) && result == Ok(Error::Interrupted as usize),
            format_args!("a blocking {what} ended Interrupted by an alert ({result:?})"),
        );
    }
    failures
}

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    AlertBreak,
    Terminate,
    Splice,
}

fn cut(ports: Ports, how: Cut) -> usize {
    let mut failures = 0;
    let (before_entered, before_completed) = (entered(ports), completed(ports));
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::PASS, top_op::SPIN), 0) else { return 1 };
    let inside = wait_entered(ports, before_entered + 1);
    let done = match how {
        Cut::AlertBreak => gate::alert_break(activation).map(|_| 0),
        Cut::Terminate => ask(ports.mid, label(mid_op::TERMINATE_LAST, 0)).map(|answer| answer as usize),
        Cut::Splice => ask(ports.mid, label(mid_op::SPLICE_LAST, 0)).map(|answer| answer as usize),
    };
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    let upper_done = wait_completed(ports, before_completed + 1);
    let (name, error) = match how {
        Cut::AlertBreak => ("alert-and-break", Error::Interrupted),
        Cut::Terminate => ("terminating the middle activation", Error::Terminated),
        Cut::Splice => ("splicing out the middle activation", Error::Terminated),
    };
    check(
        &mut failures,
        inside && done == Ok(0),
        format_args!("{name}: done while the worker was at the top ({done:?})"),
    );
    check(
        &mut failures,
        outcome.result == Err(error),
        format_args!("{name}: the worker's call returned {:?}", outcome.result),
    );
    let ordering = match how {
        Cut::Splice => outcome.completed_then == before_completed + 1,
        _ => outcome.completed_then == before_completed,
    };
    check(
        &mut failures,
        ordering,
        format_args!(
            "{name}: when the worker got control back the top had completed {} call(s) more",
            outcome.completed_then.wrapping_sub(before_completed)
        ),
    );
    check(&mut failures, upper_done, format_args!("{name}: the upper part completed its call"));
    failures
}

fn terminate_in_kernel(ports: Ports) -> usize {
    let mut failures = 0;
    let Ok((thread, _)) = start_worker(ports, label(mid_op::SLEEP, 0), 0) else { return 1 };
    for _ in 0..4 {
        gate::yield_now();
    }
    let done = ask(ports.mid, label(mid_op::TERMINATE_LAST, 0));
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    check(
        &mut failures,
        done == Ok(0),
        format_args!("terminating the middle activation while it sleeps in the kernel: {done:?}"),
    );
    check(
        &mut failures,
        outcome.result == Err(Error::Terminated),
        format_args!("the worker's call returned {:?} at once", outcome.result),
    );
    // The kernel part left behind ends on its own: the middle's
    // activation is back in its pool, so the middle still answers.
    let again = ask(ports.mid, label(mid_op::PASS, top_op::NOTHING));
    check(&mut failures, again == Ok(0), format_args!("the middle serves again afterwards ({again:?})"));
    failures
}

fn suspend(ports: Ports) -> usize {
    let mut failures = 0;
    let (before_entered, before_completed) = (entered(ports), completed(ports));
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::PASS, top_op::SPIN), 0) else { return 1 };
    let inside = wait_entered(ports, before_entered + 1);
    let suspended = gate::suspend(activation);
    // The work above goes on and completes ...
    let upper_done = wait_completed(ports, before_completed + 1);
    // ... but the worker stops on its way back in.
    for _ in 0..20 {
        gate::yield_now();
    }
    let still_there = own_activations().contains(&activation);
    check(
        &mut failures,
        inside && suspended == Ok(false),
        format_args!("suspended the worker's activation while it was at the top"),
    );
    check(&mut failures, upper_done, format_args!("the servers' part of its call completed meanwhile"));
    check(&mut failures, still_there, format_args!("the worker stayed stopped in its activation"));
    let resumed = gate::resume(activation);
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    check(
        &mut failures,
        resumed == Ok(true) && outcome.result == Ok(1),
        format_args!("resumed, its call returned {:?}", outcome.result),
    );
    failures
}

fn state(ports: Ports) -> usize {
    let mut failures = 0;
    // Get: waits until the thread is back in the activation.
    let before_entered = entered(ports);
    let before_completed = completed(ports);
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::PASS, top_op::SPIN), 0) else { return 1 };
    let inside = wait_entered(ports, before_entered + 1);
    let _ = gate::suspend(activation);
    let mut registers: gate::CpuState = [0; tern_core::abi::STATE_BYTES / 8];
    let got = gate::get_state(activation, &mut registers);
    let completed_then = completed(ports);
    check(
        &mut failures,
        inside && got.is_ok() && completed_then == before_completed + 1,
        format_args!("get_state waited for the thread to come back from the top ({got:?})"),
    );
    check(
        &mut failures,
        registers[0] == 0 && registers[1] as usize == tern_core::abi::MessageHeader::SIZE && registers[32] != 0,
        format_args!("its registers: x0 {} (success), x1 {} (the reply's length), a PC", registers[0], registers[1]),
    );
    // Set: the worker's call now returns what we wrote.
    registers[0] = Error::Busy as u64;
    registers[1] = 0;
    let set = gate::set_state(activation, &registers);
    let _ = gate::resume(activation);
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    check(
        &mut failures,
        set.is_ok() && outcome.result == Err(Error::Busy),
        format_args!("set_state: the worker's call returned {:?}, as written", outcome.result),
    );
    failures
}

fn scheduling(ports: Ports) -> usize {
    let mut failures = 0;
    // Priority follows the thread into the server.
    fn at_priority(argument: usize) -> usize {
        let top = argument as PortName;
        let forbid = argument >> 32 != 0;
        if forbid {
            let _ = gate::activation_self().and_then(gate::forbid_above);
        }
        let seen = ask(top, top_op::PRIORITY).unwrap_or(u32::MAX) as usize;
        let lowered = ask(top, top_op::LOWER_PRIORITY).unwrap_or(u32::MAX) as usize;
        let mut words = [0u64; 2];
        let now =
            gate::activation_self().and_then(|me| gate::thread_info(me, &mut words)).map_or(99, |_| words[0] as usize);
        seen | lowered << 8 | now << 16
    }
    for forbid in [false, true] {
        let Ok(thread) = gate::thread_create(at_priority, ports.top as usize | (forbid as usize) << 32, 9, 64 * 1024)
        else {
            return failures + 1;
        };
        let value = gate::thread_join(thread).unwrap_or(usize::MAX);
        let (seen, lowered, now) = (value & 0xff, (value >> 8) & 0xff, (value >> 16) & 0xff);
        check(&mut failures, seen == 9, format_args!("the server ran the priority-9 client's call at priority {seen}"));
        if forbid {
            check(
                &mut failures,
                lowered == Error::Forbidden as usize && now == 9,
                format_args!(
                    "forbid-above: the server's lowering was refused ({lowered}), the client kept priority {now}"
                ),
            );
        } else {
            check(
                &mut failures,
                lowered == 0 && now == 2,
                format_args!("without it the server lowered the client to {now}"),
            );
        }
    }
    // Accounting: a call that burns CPU in the top server is charged to
    // the calling thread, in the top's column.
    let me = gate::activation_self().unwrap_or(0);
    let mut before = [0u64; 16];
    let _ = gate::thread_info(me, &mut before);
    let top_domain = ask(ports.top, top_op::BUSY).unwrap_or(0) as u64;
    let mut after = [0u64; 16];
    let written = gate::thread_info(me, &mut after).unwrap_or(0);
    let in_domain =
        |words: &[u64], domain: u64| words[2..].chunks(2).find(|pair| pair[0] == domain).map_or(0, |pair| pair[1]);
    let spent = in_domain(&after[..written], top_domain) - in_domain(&before, top_domain);
    let total = after[1] - before[1];
    check(
        &mut failures,
        spent > 0 && spent <= total,
        format_args!(
            "the client thread was charged for the server's work ({spent} ticks in the top's domain of {total})"
        ),
    );
    failures
}

fn bad_input(ports: Ports) -> usize {
    let mut failures = 0;
    let me = gate::activation_self().unwrap_or(0);
    let mut registers: gate::CpuState = [0; tern_core::abi::STATE_BYTES / 8];
    let cases: [(&str, Result<usize, Error>, Error); 8] = [
        ("alert(0)", gate::alert(0), Error::NoSuchActivation),
        ("alert(a number naming nothing)", gate::alert(0xfff_fff), Error::NoSuchActivation),
        ("terminate(another domain's activation)", gate::terminate(other_domain_activation(ports)), Error::NoRight),
        ("set_priority(32)", gate::set_priority(me, 32), Error::InvalidArgument),
        ("get_state(its own activation)", gate::get_state(me, &mut registers), Error::InvalidArgument),
        ("domain_control from a protected domain", gate::domain_control(gate::who_am_i(), 0), Error::NoRight),
        ("activations(another domain)", gate::activations(gate::who_am_i() + 1, &mut [0u32; 4]), Error::NoRight),
        (
            "alerts_block(2)",
            tern_inks::gate::raw_call(tern_core::abi::Call::AlertsBlock, 2, 0, 0),
            Error::InvalidArgument,
        ),
    ];
    for (what, got, wanted) in cases {
        check(&mut failures, got == Err(wanted), format_args!("{what}: {got:?}"));
    }
    failures
}

/// A number naming another domain's activation: numbers are small, so
/// the first that is not ours and that the kernel refuses as another
/// domain's (an alert on it is refused, and so changes nothing).
fn other_domain_activation(ports: Ports) -> usize {
    let _ = ask(ports.mid, label(mid_op::PASS, top_op::NOTHING));
    let mine = own_activations();
    (1..64).find(|number| !mine.contains(number) && gate::alert(*number) == Err(Error::NoRight)).unwrap_or(0)
}

fn domain_start(ports: Ports) -> usize {
    let before = entered(ports);
    let mut threads = 0;
    for at in [16, 32] {
        match start_worker(ports, label(mid_op::PASS, top_op::SPIN), 0) {
            Ok((thread, _)) => threads |= thread << at,
            Err(_) => return 0,
        }
    }
    if !wait_entered(ports, before + 2) {
        return 0;
    }
    tern_inks::println!("[ctl] two workers are in ctl.top");
    threads
}

fn domain_join(argument: usize) -> usize {
    let mut failures = 0;
    let terminated = argument & 0x100 != 0;
    for at in [16, 32] {
        let outcome = decode(gate::thread_join((argument >> at) & 0xffff).unwrap_or(usize::MAX));
        let wanted = if terminated { MID_FAILED | Error::CallAborted as u32 } else { 1 };
        check(
            &mut failures,
            outcome.result == Ok(wanted),
            format_args!(
                "a worker's call came back {} ({:?})",
                if terminated { "with the middle told CallAborted" } else { "completed" },
                outcome.result.map(|label| label & !MID_FAILED)
            ),
        );
    }
    failures
}

/// The kernel clock's requests (see the kernel's `clock` module).
const CLOCK_SLEEP: u32 = 1;
const CLOCK_NOW: u32 = 2;

fn clock_sleep(clock: usize) -> usize {
    let mut request = MessageBuffer::with_payload_capacity(8);
    request.set_label(CLOCK_SLEEP);
    let mut reply = MessageBuffer::new();
    let outcome = request
        .set_payload(&(u64::MAX / 4).to_le_bytes())
        .and_then(|()| service::call(clock as PortName, &request, &mut reply).map(|view| view.label()));
    match outcome {
        Ok(label) => (label as usize) << 32,
        Err(error) => error as usize,
    }
}

fn kernel_object() -> usize {
    let mut failures = 0;
    let clock = match service::lookup("clock") {
        Ok(clock) => clock,
        Err(error) => {
            tern_inks::println!("[ctl] lookup(clock): {error}");
            return 1;
        }
    };
    for breaking in [false, true] {
        let Ok((thread, activation)) = spawn(clock_sleep, clock as usize, 0) else { return failures + 1 };
        for _ in 0..4 {
            gate::yield_now();
        }
        let acted = if breaking { gate::alert_break(activation) } else { gate::alert(activation) };
        let result = gate::thread_join(thread).unwrap_or(usize::MAX);
        if breaking {
            check(
                &mut failures,
                acted == Ok(2) && result == Error::Interrupted as usize,
                format_args!(
                    "alert-and-break below a sleep in the kernel clock: the caller got Interrupted at once ({acted:?}, {result:#x})"
                ),
            );
        } else {
            check(
                &mut failures,
                acted == Ok(2) && result == (Error::Interrupted as usize) << 32,
                format_args!(
                    "an alert reached the kernel activation: its sleep ended Interrupted ({acted:?}, {result:#x})"
                ),
            );
        }
    }
    // The kernel activation left behind by the break has finished and is
    // back in its pool: the clock answers.
    let mut served = false;
    for _ in 0..50 {
        let mut request = MessageBuffer::new();
        request.set_label(CLOCK_NOW);
        let mut reply = MessageBuffer::new();
        if service::call(clock, &request, &mut reply).is_ok_and(|view| view.label() == 0 && view.payload.len() == 8) {
            served = true;
            break;
        }
        gate::yield_now();
    }
    let free = own_activations().len();
    check(&mut failures, served && free == 1, format_args!("the kernel clock answers afterwards"));
    failures
}

fn alert_upcall(ports: Ports) -> usize {
    let mut failures = 0;
    let base = entered(ports);
    let Ok((thread, activation)) = start_worker(ports, label(mid_op::OPEN, top_op::HANDLER), 0) else { return 1 };
    let inside = wait_entered(ports, base + 1);
    let reached = gate::alert(activation);
    let outcome = decode(gate::thread_join(thread).unwrap_or(usize::MAX));
    check(
        &mut failures,
        inside && reached == Ok(3),
        format_args!("alerted the worker while the top waited with a handler ({reached:?})"),
    );
    check(
        &mut failures,
        outcome.result.map(|answer| answer & 0xff) == Ok(1),
        format_args!(
            "after its handler the top's call completed normally ({:?})",
            outcome.result.map(|answer| answer & 0xff)
        ),
    );
    failures
}
