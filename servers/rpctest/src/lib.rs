//! # tern-rpctest: domains that put the RPC paths through their paces
//!
//! Three domains, all safe Rust like any server, that the kernel's `rpc-*`
//! boot scenarios start (see `docs/scenarios.md`):
//!
//! - `relay` forwards every request to the `echo` server and hands back its
//!   reply, so a client's call makes a chain across three domains
//!   (client → relay → echo) — on one thread's chain of activations when
//!   both serve with pools, across three threads when both use threads;
//! - `slow` spins for as many iterations as the request's label says, then
//!   echoes: long enough for the timer to preempt it, so several client
//!   threads overlap and a small pool runs dry. How it serves comes from
//!   its start argument (mode, pool size, threads, and whether its
//!   sidetrack handler grows the pool);
//! - `client` runs one test, chosen by its start argument, prints what it
//!   sees, and returns the number of things that went wrong (0 = pass);
//!   its [`flip_worker`] is the body of the threads the kernel starts in
//!   it while it flips `slow` between modes (`merge-flip`).
//!
//! What it leaves out: timing (the benchmark's job) and faults (the
//! containment probes').
//!
//! A test server: linked only into harness images (`board/harness`), never
//! into the production image. It depends on the in-kernel-server layer
//! (`tern-inks`), the kernel's ABI (`tern-core`) and the servers it tests
//! (for their request labels and constants; an `-api` crate per server
//! would be better), never on the arch crate; it has no `unsafe` (merging
//! it changes how far it is trusted, never its code).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use tern_core::abi::{Call, Error, MESSAGE_MAX, MessageHeader, NO_RIGHT, PortName};
use tern_inks::gate;
use tern_inks::mode::DomainMode;
use tern_inks::service::{self, Lent, MessageBuffer, Reply, Request, Service};

tern_inks::domain!(RELAY, "relay", relay_main);
tern_inks::domain!(SLOW, "slow", slow_main);
tern_inks::domain!(CLIENT, "client", client_main);

/// The client's tests (its start argument).
pub mod test {
    /// Payloads of 0, 32, 1 Ki and 32 Ki bytes to `checksum`, both ways.
    pub const PAYLOADS: usize = 1;
    /// A call through `relay` to `echo`.
    pub const NESTED: usize = 2;
    /// Three client threads at once on `slow`.
    pub const OVERLAP: usize = 3;
    /// One call on `slow` (whose pool has one activation).
    pub const SINGLE: usize = 4;
    /// Four client threads on `kv`, each with its own keys.
    pub const MANY_CLIENTS: usize = 5;
    /// Every kind of bad input, against `echo`.
    pub const BAD_INPUT: usize = 6;
    /// Payloads of 0, 32, 1 Ki and 32 Ki bytes through `echo`, whatever
    /// its mode; and a mode change asked by a protected domain.
    pub const ECHO_ROUND: usize = 7;
    /// A call that makes `slow` panic: the client gets `CallAborted`, and
    /// `slow` (terminated) answers no more.
    pub const SERVER_PANIC: usize = 8;
    /// Calls on an idempotent `slow` that the kernel restarts up to three
    /// times: a call its first instance dies in is answered by the second
    /// unseen; one that kills every instance is aborted; once the policy
    /// gives up, the port is dead.
    pub const SERVER_RESTART: usize = 9;
    /// Through a bound handle to `checksum`: payloads of 0, 32, 1 Ki and
    /// 32 Ki bytes, replies of 8, 32 and 1 Ki, as message buffers
    /// (registers when they fit), as messages in memory, and as words.
    pub const BOUND: usize = 10;
    /// Bind `checksum`, call once, and keep the handle for [`BOUND_STALE`].
    pub const BOUND_KEEP: usize = 11;
    /// The kept handle (the scenario changed `checksum`'s mode since):
    /// `StaleHandle`; a new binding works.
    pub const BOUND_STALE: usize = 12;
    /// Through a bound handle, a call that makes `slow` panic:
    /// `CallAborted`, the client's state intact; then the handle is stale.
    pub const BOUND_PANIC: usize = 13;
}

/// The label that makes `slow` panic only in its first instance (its
/// port's generation 0); later instances answer it with their generation
/// as the label.
pub const PANIC_FIRST_LABEL: u32 = 0xdeaf;

/// The label that makes `slow` panic (a bug in a server's safe Rust, as
/// far as the kernel can tell).
pub const PANIC_LABEL: u32 = 0xdead;

/// The `slow` server's start argument: how it serves.
pub const fn slow_argument(mode: usize, pool: usize, threads: usize, grow: bool) -> usize {
    mode | pool << 8 | threads << 16 | (grow as usize) << 24
}

/// [`slow_argument`] with its port declared idempotent.
pub const fn idempotent(argument: usize) -> usize {
    argument | 1 << 25
}

/// Iterations `slow` spins for in the overlap test: several timer ticks'
/// worth under QEMU.
pub const SLOW_SPIN: u32 = 3_000_000;

// ---------------------------------------------------------------------------
// relay

struct Relay {
    next: PortName,
}

impl Service for Relay {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let mut forward = MessageBuffer::with_payload_capacity(request.payload.len());
        forward.set_label(request.label());
        let mut answer = MessageBuffer::new();
        let outcome = forward.set_payload(request.payload).and_then(|()| {
            let view = service::call(self.next, &forward, &mut answer)?;
            reply.set_label(view.label());
            reply.set_payload(view.payload)
        });
        if let Err(error) = outcome {
            reply.set_label(u32::MAX);
            let _ = reply.set_payload(error.name().as_bytes());
        }
    }
}

fn relay_main(mode: usize) -> usize {
    let started = (|| -> Result<(), Error> {
        let next = service::lookup("echo")?;
        let port = gate::port_create()?;
        service::register("relay", port)?;
        let relay: &'static Relay = Box::leak(Box::new(Relay { next }));
        service::serve(relay, port, mode, 2, 2, service::DEFAULT_STACK_BYTES)
    })();
    started.map_or_else(|error| error as usize, |()| 0)
}

// ---------------------------------------------------------------------------
// slow

struct Slow {
    grow: bool,
    granted: spin::Mutex<usize>,
    port: PortName,
}

impl Service for Slow {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        if request.label() == PANIC_LABEL {
            panic!("slow was asked to panic");
        }
        if request.label() == PANIC_FIRST_LABEL {
            match gate::port_generation(self.port) {
                Ok(0) => panic!("slow (first instance) was asked to panic"),
                Ok(generation) => reply.set_label(generation as u32),
                Err(_) => reply.set_label(u32::MAX),
            }
            return;
        }
        // Give the processor away once while this call holds its
        // activation (or server thread), so that other clients' calls find
        // the server busy whatever the host's speed: the overlap tests must
        // not depend on a timer tick landing inside the spin below.
        gate::yield_now();
        let mut spin = 0u32;
        for _ in 0..request.label() {
            spin = core::hint::black_box(spin.wrapping_add(1));
        }
        reply.set_label(0);
        let _ = reply.set_payload(request.payload);
    }

    /// A lent region, after the same yield and spin: answered as `echo`
    /// answers it (read-only echoed back, read-write reversed in place).
    fn handle_lent(&self, request: &Request<'_>, lent: Lent<'_>, reply: &mut Reply<'_>) {
        gate::yield_now();
        let mut spin = 0u32;
        for _ in 0..request.label() {
            spin = core::hint::black_box(spin.wrapping_add(1));
        }
        tern_echo::Echo::new().handle_lent(request, lent, reply);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        let mut granted = self.granted.lock();
        if self.grow && *granted < 4 {
            *granted += 2;
            2
        } else {
            0
        }
    }
}

fn slow_main(argument: usize) -> usize {
    let mode = argument & 0xff;
    let pool = (argument >> 8) & 0xff;
    let threads = (argument >> 16) & 0xff;
    let grow = (argument >> 24) & 1 == 1;
    let idempotent = (argument >> 25) & 1 == 1;
    let started = (|| -> Result<(), Error> {
        let port = if idempotent { gate::port_create_idempotent()? } else { gate::port_create()? };
        service::register("slow", port)?;
        let slow: &'static Slow = Box::leak(Box::new(Slow { grow, granted: spin::Mutex::new(0), port }));
        service::serve(slow, port, mode, pool, threads, service::DEFAULT_STACK_BYTES)
    })();
    started.map_or_else(|error| error as usize, |()| 0)
}

// ---------------------------------------------------------------------------
// client

fn client_main(test: usize) -> usize {
    let failures = match test {
        test::PAYLOADS => payloads(),
        test::NESTED => nested(),
        test::OVERLAP => overlap(),
        test::SINGLE => single(),
        test::MANY_CLIENTS => many_clients(),
        test::BAD_INPUT => bad_input(),
        test::ECHO_ROUND => echo_round(),
        test::SERVER_PANIC => server_panic(),
        test::SERVER_RESTART => server_restart(),
        test::BOUND => bound::payloads(),
        test::BOUND_KEEP => bound::keep(),
        test::BOUND_STALE => bound::stale(),
        test::BOUND_PANIC => bound::panic(),
        _ => 1,
    };
    tern_inks::println!("[client] test {test}: {failures} failure(s)");
    failures
}

fn lookup(name: &str) -> Option<PortName> {
    match service::lookup(name) {
        Ok(port) => Some(port),
        Err(error) => {
            tern_inks::println!("[client] lookup({name}) failed: {error}");
            None
        }
    }
}

fn payloads() -> usize {
    let Some(port) = lookup("checksum") else { return 1 };
    let mut failures = 0;
    for size in [0usize, 32, 1024, 32 * 1024] {
        let reply_size = size.max(tern_checksum::REPLY_SIZE_MIN);
        let mut request = MessageBuffer::with_payload_capacity(size);
        request.set_label(reply_size as u32);
        let mut payload = vec![0u8; size];
        for (index, byte) in payload.iter_mut().enumerate() {
            *byte = (index * 7 + size) as u8;
        }
        let mut reply = MessageBuffer::new();
        let verdict = request
            .set_payload(&payload)
            .and_then(|()| service::call(port, &request, &mut reply))
            .map_err(|error| format!("{error}"))
            .and_then(|view| {
                tern_checksum::verify_reply(&payload, reply_size, view.payload)
                    .map_err(|mismatch| format!("{mismatch:?}"))
            });
        match verdict {
            Ok(()) => tern_inks::println!("[client] payload {size} in, {reply_size} back: checksums match both ways"),
            Err(why) => {
                failures += 1;
                tern_inks::println!("[client] payload {size} in, {reply_size} back: MISMATCH {why}");
            }
        }
    }
    failures
}

fn echo_once(port: PortName, text: &[u8]) -> Result<Vec<u8>, Error> {
    let mut request = MessageBuffer::with_payload_capacity(text.len());
    request.set_label(7);
    request.set_payload(text)?;
    let mut reply = MessageBuffer::new();
    let view = service::call(port, &request, &mut reply)?;
    Ok(view.payload.to_vec())
}

fn echo_round() -> usize {
    let Some(port) = lookup("echo") else { return 1 };
    let mut failures = 0;
    for size in [0usize, 32, 1024, 32 * 1024] {
        let payload: Vec<u8> = (0..size).map(|index| (index * 13 + size) as u8).collect();
        match echo_once(port, &payload) {
            Ok(answer) if answer == payload => {}
            other => {
                failures += 1;
                tern_inks::println!("[client] echo of {size} bytes answered {:?}", other.map(|answer| answer.len()));
            }
        }
    }
    tern_inks::println!("[client] echo round: {} of 4 sizes answered intact", 4 - failures);
    failures += echo_lent(port);
    // Only the kernel domain (merged domains included) may move domains
    // between modes; asking for the mode it has is a no-op.
    let me = gate::raw_call(Call::WhoAmI, 0, 0, 0).unwrap_or(0);
    let mode = gate::current_mode();
    let answer = gate::domain_mode(me, tern_inks::mode::DomainMode::Merged);
    let expected = match mode {
        tern_inks::mode::DomainMode::Protected => Err(Error::NoRight),
        tern_inks::mode::DomainMode::Merged => Ok(0),
    };
    tern_inks::println!("[client] asking to be merged, while {mode:?}: {answer:?}");
    failures + usize::from(answer != expected)
}

/// Lend echo 4 KiB read-only (it answers with them) and 1000 bytes
/// read-write (it reverses them in place); the failures.
fn echo_lent(port: PortName) -> usize {
    let mut request = [0u8; MessageHeader::SIZE];
    MessageHeader::new(7, 0).write_to(&mut request);
    let mut reply = vec![0u8; MESSAGE_MAX];
    let lent: Vec<u8> = (0..4096).map(|index| (index * 31 + 5) as u8).collect();
    let read_only = match gate::call_lending(port, &request, &mut reply, &lent) {
        Ok(length) if reply.get(MessageHeader::SIZE..length) == Some(&lent[..]) => "echoed intact".to_string(),
        other => format!("answered {other:?}"),
    };
    let mut buffer: Vec<u8> = (0..1000).map(|index| index as u8).collect();
    let answer = gate::call_lending_mut(port, &request, &mut reply, &mut buffer);
    let reversed = buffer.iter().copied().eq((0..1000).rev().map(|index| index as u8));
    let read_write = match answer {
        Ok(length) if length == MessageHeader::SIZE && reversed => "reversed in place".to_string(),
        other => format!("answered {other:?}, reversed: {reversed}"),
    };
    tern_inks::println!("[client] lent 4096 bytes read-only: {read_only}; lent 1000 bytes read-write: {read_write}");
    let good = usize::from(read_only != "echoed intact") + usize::from(read_write != "reversed in place");
    good + bad_lends(port, &request, &mut reply)
}

/// Lends the kernel must refuse, whichever path (fast or general) and
/// whatever the modes: empty, over `LEND_MAX`, and — from a protected
/// client, whose pointers the kernel checks — memory not its own. The
/// failures.
fn bad_lends(port: PortName, request: &[u8], reply: &mut [u8]) -> usize {
    let request = (request.as_ptr() as usize, request.len());
    let own_region = reply.as_ptr() as usize & !((8 << 20) - 1);
    let mut cases = vec![
        ("empty", (own_region + 0x1000, 0), Error::InvalidArgument),
        ("over 2 MiB", (own_region, tern_core::abi::LEND_MAX + 1), Error::InvalidArgument),
    ];
    if gate::current_mode() == DomainMode::Protected {
        cases.push(("not the client's", (own_region + (8 << 20), 64), Error::BadAddress));
        cases.push(("running past the client's region", (own_region + (8 << 20) - 32, 64), Error::BadAddress));
    }
    let mut failures = 0;
    for (what, lent, wanted) in cases {
        let answer = gate::call_lending_raw(port, request, reply, lent);
        if answer != Err(wanted) {
            failures += 1;
            tern_inks::println!("[client] lend {what}: {answer:?}, NOT REFUSED AS EXPECTED ({wanted:?})");
        }
    }
    tern_inks::println!("[client] bad lends: {failures} not refused as expected");
    failures
}

/// A call on `port` with `label` and nothing else; the reply's label.
fn label_call(port: PortName, label: u32) -> Result<u32, Error> {
    let mut request = MessageBuffer::new();
    request.set_label(label);
    let mut reply = MessageBuffer::new();
    service::call(port, &request, &mut reply).map(|view| view.label())
}

fn server_panic() -> usize {
    let Some(port) = lookup("slow") else { return 1 };
    let call = |label: u32| label_call(port, label);
    let panicked = call(PANIC_LABEL);
    tern_inks::println!("[client] a call that makes slow panic: {panicked:?}");
    let after = call(10);
    tern_inks::println!("[client] a call to slow afterwards: {after:?}");
    usize::from(panicked != Err(Error::CallAborted)) + usize::from(after.is_ok())
}

/// See [`test::SERVER_RESTART`]; `slow` is idempotent and restarted on a
/// fault at most three times.
fn server_restart() -> usize {
    let Some(port) = lookup("slow") else { return 1 };
    let call = |label: u32| label_call(port, label);
    let mut failures = 0;
    let mut check = |what: &str, answer: Result<u32, Error>, expected: Result<u32, Error>| {
        let ok = answer == expected;
        failures += usize::from(!ok);
        tern_inks::println!("[client] {what}: {answer:?} ({})", if ok { "as expected" } else { "NOT AS EXPECTED" });
    };
    check("a call the first instance dies in, answered by the second", call(PANIC_FIRST_LABEL), Ok(1));
    check("a call afterwards", call(10), Ok(0));
    let generation = gate::port_generation(port);
    check("the port's generation", generation.map(|g| g as u32), Ok(1));
    check("a call every instance dies in (two restarts)", call(PANIC_LABEL), Err(Error::CallAborted));
    check("a call to the fourth instance", call(PANIC_FIRST_LABEL), Ok(3));
    check("its death is one restart too many", call(PANIC_LABEL), Err(Error::CallAborted));
    check("the port once the policy gave up", call(10), Err(Error::PortDead));
    failures
}

/// The argument of [`flip_worker`]: which worker it is and how many
/// calls it makes.
pub const fn flip_argument(worker: usize, calls: usize) -> usize {
    worker | calls << 8
}

/// One of the client threads the kernel's `merge-flip` scenario starts
/// while it flips `slow` between modes: `calls` calls on `slow` (copied
/// payloads of four sizes, 4 KiB lent read-only, 1000 bytes lent
/// read-write), each answer checked byte for byte, yielding after every
/// call (`slow` yields inside each) so the flipper finds `slow` both idle
/// and in use. A lend from a
/// merged client to a protected server is refused with `CannotLend` (the
/// documented rule) and counted apart; anything else that is not the
/// right answer is a failure. Returns the failures.
pub fn flip_worker(argument: usize) -> usize {
    let (worker, calls) = (argument & 0xff, argument >> 8);
    let Some(port) = lookup("slow") else { return 1 };
    let (mut failures, mut refused) = (0, 0);
    let mut request = [0u8; MessageHeader::SIZE];
    MessageHeader::new(50, 0).write_to(&mut request);
    let mut reply = vec![0u8; MESSAGE_MAX];
    for call in 0..calls {
        let seed = worker * 7919 + call * 31;
        let answer = match call % 4 {
            kind @ (0 | 3) => {
                let size = if kind == 3 { 100 } else { [0usize, 32, 1024, 32 * 1024][(call / 4) % 4] };
                let payload: Vec<u8> = (0..size).map(|index| (index + seed) as u8).collect();
                let mut message = MessageBuffer::with_payload_capacity(size);
                message.set_label(50);
                let mut answer = MessageBuffer::new();
                message
                    .set_payload(&payload)
                    .and_then(|()| service::call(port, &message, &mut answer))
                    .map(|view| view.payload == &payload[..])
            }
            1 => {
                let lent: Vec<u8> = (0..4096).map(|index| (index * 3 + seed) as u8).collect();
                gate::call_lending(port, &request, &mut reply, &lent)
                    .map(|length| reply.get(MessageHeader::SIZE..length) == Some(&lent[..]))
            }
            _ => {
                let mut lent: Vec<u8> = (0..1000).map(|index| (index + seed) as u8).collect();
                gate::call_lending_mut(port, &request, &mut reply, &mut lent)
                    .map(|_| lent.iter().copied().eq((0..1000).rev().map(|index| (index + seed) as u8)))
            }
        };
        match answer {
            Ok(true) => {}
            Err(Error::CannotLend) if gate::current_mode() == DomainMode::Merged => refused += 1,
            other => {
                failures += 1;
                tern_inks::println!("[client] flip worker {worker}, call {call}: {other:?}");
            }
        }
        // One to three yields, varying per call, so the workers drift out
        // of step and the flipper finds `slow` idle now and then.
        for _ in 0..=(call + worker) % 3 {
            gate::yield_now();
        }
    }
    tern_inks::println!("[client] flip worker {worker}: {calls} calls, {failures} failed ({refused} lends refused)");
    failures
}

fn nested() -> usize {
    let Some(port) = lookup("relay") else { return 1 };
    match echo_once(port, b"through three domains") {
        Ok(answer) if answer == b"through three domains" => {
            tern_inks::println!("[client] relay -> echo answered intact");
            0
        }
        other => {
            tern_inks::println!("[client] relay -> echo answered {other:?}");
            1
        }
    }
}

fn slow_call(port: usize) -> usize {
    let mut request = MessageBuffer::with_payload_capacity(8);
    request.set_label(SLOW_SPIN);
    let token = (port as u64).to_le_bytes();
    let mut reply = MessageBuffer::new();
    let answer = request.set_payload(&token).and_then(|()| service::call(port as PortName, &request, &mut reply));
    match answer {
        Ok(view) if view.payload == token => 0,
        other => {
            tern_inks::println!("[client] slow call answered {other:?}");
            1
        }
    }
}

fn run_threads(count: usize, entry: fn(usize) -> usize, argument: impl Fn(usize) -> usize) -> usize {
    let mut threads = Vec::new();
    for index in 0..count {
        match gate::thread_create(entry, argument(index), 8, 64 * 1024) {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                tern_inks::println!("[client] thread_create failed: {error}");
                return 1;
            }
        }
    }
    threads.into_iter().map(|thread| gate::thread_join(thread).unwrap_or(1)).sum()
}

fn overlap() -> usize {
    let Some(port) = lookup("slow") else { return 1 };
    let failures = run_threads(3, slow_call, |_| port as usize);
    tern_inks::println!("[client] three overlapping calls on slow: {failures} failed");
    failures
}

fn single() -> usize {
    let Some(port) = lookup("slow") else { return 1 };
    let mut request = MessageBuffer::with_payload_capacity(8);
    request.set_label(10);
    let mut reply = MessageBuffer::new();
    let answer = request.set_payload(b"sidetrk!").and_then(|()| service::call(port, &request, &mut reply));
    match answer {
        Ok(view) if view.payload == b"sidetrk!" => {
            tern_inks::println!("[client] one call on slow: answered");
            0
        }
        other => {
            tern_inks::println!("[client] one call on slow: {other:?}");
            1
        }
    }
}

fn kv_worker(argument: usize) -> usize {
    let port = (argument & 0xffff) as PortName;
    let worker = argument >> 16;
    let mut failures = 0;
    for round in 0..20 {
        let key = format!("worker{worker}-key{round}");
        let value = format!("value {round} of worker {worker}");
        let put = tern_kv::Operation::Put { key: key.as_bytes(), value: value.as_bytes() };
        let get = tern_kv::Operation::Get { key: key.as_bytes() };
        let mut request = MessageBuffer::new();
        let mut reply = MessageBuffer::new();
        let stored = put.write_request(&mut request).and_then(|()| service::call(port, &request, &mut reply));
        if !matches!(stored, Ok(ref view) if view.label() == tern_kv::OK) {
            failures += 1;
            continue;
        }
        let fetched = get.write_request(&mut request).and_then(|()| service::call(port, &request, &mut reply));
        if !matches!(fetched, Ok(ref view) if view.label() == tern_kv::OK && view.payload == value.as_bytes()) {
            failures += 1;
        }
    }
    failures
}

fn many_clients() -> usize {
    let Some(port) = lookup("kv") else { return 1 };
    let failures = run_threads(4, kv_worker, |index| port as usize | index << 16);
    tern_inks::println!("[client] four client threads, 20 puts and gets each on kv: {failures} failed");
    failures
}

fn header_message(label: u32, right: u32, length: u32, total: usize) -> Vec<u8> {
    let mut message = vec![0u8; total];
    MessageHeader { label, right, length, reserved: 0 }.write_to(&mut message);
    message
}

fn bad_input() -> usize {
    let Some(port) = lookup("echo") else { return 1 };
    let mut failures = 0;
    let mut expect = |what: &str, result: Result<usize, Error>, wanted: Error| {
        let verdict = if result == Err(wanted) { "refused as expected" } else { "NOT REFUSED AS EXPECTED" };
        failures += usize::from(result != Err(wanted));
        tern_inks::println!("[client] {what}: {result:?} ({verdict})");
    };
    let good = header_message(1, NO_RIGHT, 4, MessageHeader::SIZE + 4);
    let mut reply = vec![0u8; 256];
    expect("unknown port name", gate::call(999, &good, &mut reply), Error::NoSuchPort);
    let carrying = header_message(1, 77, 0, MessageHeader::SIZE);
    expect("carrying a right not held", gate::call(port, &carrying, &mut reply), Error::NoRight);
    let oversized = header_message(1, NO_RIGHT, (MESSAGE_MAX) as u32, MESSAGE_MAX + MessageHeader::SIZE);
    expect("payload over 32 KiB", gate::call(port, &oversized, &mut reply), Error::BadMessage);
    expect("shorter than a header", gate::call(port, &good[..8], &mut reply), Error::BadMessage);
    let own_region = reply.as_ptr() as usize & !((8 << 20) - 1);
    let elsewhere = own_region + (8 << 20);
    expect(
        "request in memory not owned",
        gate::call_raw(port as usize, (elsewhere, 64), (reply.as_mut_ptr() as usize, reply.len())),
        Error::BadAddress,
    );
    let read_only = "read-only text used as a reply buffer";
    expect(
        "reply buffer not writable",
        gate::call_raw(port as usize, (good.as_ptr() as usize, good.len()), (read_only.as_ptr() as usize, 64)),
        Error::BadAddress,
    );
    let big = header_message(1, NO_RIGHT, 1024, MessageHeader::SIZE + 1024);
    let mut small = vec![0u8; 64];
    expect("reply larger than the buffer", gate::call(port, &big, &mut small), Error::ReplyTooLarge);
    let mut buffer = vec![0u8; 64];
    expect("receive with only a send right", gate::receive(port, &mut buffer), Error::NoRight);
    expect("return outside a call", gate::raw_call(Call::Return, 0, 0, 0), Error::NotInCall);
    // The kernel writes the header's length and reserved fields itself: a
    // sender's wrong ones never reach the server (whose runtime would
    // answer a disagreeing header as a malformed request).
    let mut lying = header_message(1, NO_RIGHT, 100, MessageHeader::SIZE + 4);
    lying[12] = 0x5a;
    let stamped = gate::call(port, &lying, &mut reply).map(|length| MessageHeader::read_from(&reply[..length]));
    let expected = MessageHeader { label: 1, right: NO_RIGHT, length: 4, reserved: 0 };
    let verdict = if stamped == Ok(Some(expected)) { "stamped as expected" } else { "NOT STAMPED AS EXPECTED" };
    failures += usize::from(stamped != Ok(Some(expected)));
    tern_inks::println!("[client] header with a wrong length: {stamped:?} ({verdict})");
    // Nothing was half-delivered: the next good call works.
    match gate::call(port, &good, &mut reply) {
        Ok(length) if length == good.len() => tern_inks::println!("[client] a good call afterwards: answered"),
        other => {
            failures += 1;
            tern_inks::println!("[client] a good call afterwards: {other:?}");
        }
    }
    failures
}

// ---------------------------------------------------------------------------
// bound handles

mod bound {
    use super::{PANIC_LABEL, lookup};
    use alloc::vec;
    use tern_core::abi::Error;
    use tern_inks::bound::{self, Handle, Words};
    use tern_inks::service::MessageBuffer;

    /// The handle [`keep`] made, for [`stale`] (another upcall).
    static KEPT: spin::Mutex<Option<Handle>> = spin::Mutex::new(None);

    /// One checksum call through `handle`, in each of the ways the client
    /// API offers that fits: the failures.
    fn checksum_calls(handle: &Handle, size: usize, reply_size: usize) -> usize {
        let mut payload = vec![0u8; size];
        tern_checksum::fill_pattern(&mut payload);
        let check = |how: &str, outcome: Result<alloc::vec::Vec<u8>, Error>| match outcome
            .map_err(|error| alloc::format!("{error}"))
            .and_then(|reply| {
                tern_checksum::verify_reply(&payload, reply_size, &reply).map_err(|why| alloc::format!("{why:?}"))
            }) {
            Ok(()) => 0,
            Err(why) => {
                tern_inks::println!("[client] bound {how}: {size} in, {reply_size} back: MISMATCH {why}");
                1
            }
        };
        let mut request = MessageBuffer::with_payload_capacity(size);
        request.set_label(reply_size as u32);
        let mut failures = usize::from(request.set_payload(&payload).is_err());
        let mut reply = MessageBuffer::new();
        failures += check("send", handle.send(&request, &mut reply).map(|view| view.payload.to_vec()));
        let mut raw = vec![0u8; tern_core::abi::MESSAGE_MAX];
        failures += check(
            "call",
            handle.call(request.message(), &mut raw).and_then(|length| {
                let view = tern_inks::service::MessageView::parse(&raw[..length])?;
                Ok(view.payload.to_vec())
            }),
        );
        if let Some(words) = Words::new(reply_size as u32, &payload) {
            let answer = handle.call_words(&words);
            if reply_size <= 32 {
                failures += check("words", answer.map(|words| words.payload().to_vec()));
            } else if answer != Err(Error::ReplyTooLarge) {
                tern_inks::println!("[client] bound words: a {reply_size}-byte reply gave {answer:?}");
                failures += 1;
            }
        }
        failures
    }

    pub fn payloads() -> usize {
        let Some(port) = lookup("checksum") else { return 1 };
        let Ok(handle) = bound::bind(port) else { return 1 };
        let mut failures = 0;
        for size in [0usize, 8, 32, 1024, 32 * 1024] {
            for reply_size in [8usize, 32, 1024] {
                failures += checksum_calls(&handle, size, reply_size);
            }
        }
        tern_inks::println!("[client] bound: payloads 0 to 32 KiB each way, three ways: {failures} failure(s)");
        failures + usize::from(handle.unbind().is_err())
    }

    pub fn keep() -> usize {
        let Some(port) = lookup("checksum") else { return 1 };
        let Ok(handle) = bound::bind(port) else { return 1 };
        let failures = checksum_calls(&handle, 32, 8);
        *KEPT.lock() = Some(handle);
        failures
    }

    pub fn stale() -> usize {
        let Some(old) = KEPT.lock().take() else { return 1 };
        let request = Words::new(8, &[1, 2, 3]).unwrap_or_default();
        let answer = old.call_words(&request);
        let mut raw = [0u8; 64];
        let answer_memory = old.call(&[0u8; 16], &mut raw);
        tern_inks::println!("[client] the kept handle after checksum changed mode: {answer:?}, {answer_memory:?}");
        let mut failures = usize::from(answer != Err(Error::StaleHandle));
        failures += usize::from(answer_memory != Err(Error::StaleHandle));
        let Ok(again) = bound::bind(old.port()) else { return failures + 1 };
        failures += checksum_calls(&again, 32, 8);
        failures += usize::from(old.unbind().is_err());
        failures + usize::from(again.unbind().is_err())
    }

    pub fn panic() -> usize {
        let Some(port) = lookup("slow") else { return 1 };
        let Ok(handle) = bound::bind(port) else { return 1 };
        // Values the call must not disturb: in callee-saved registers
        // and on the stack across it.
        let sentinel = core::hint::black_box([0x5eed_u64, 0xface, 0xc0de, 0xbeef]);
        let request = Words::new(PANIC_LABEL, &[]).unwrap_or_default();
        let answer = handle.call_words(&request);
        let intact = core::hint::black_box(sentinel) == [0x5eed, 0xface, 0xc0de, 0xbeef];
        let after = handle.call_words(&Words::new(10, &[]).unwrap_or_default());
        tern_inks::println!(
            "[client] bound: a call that makes slow panic: {answer:?}; state intact: {intact}; the handle after: {after:?}"
        );
        usize::from(answer != Err(Error::CallAborted))
            + usize::from(!intact)
            + usize::from(after != Err(Error::StaleHandle))
            + usize::from(handle.unbind().is_err())
    }
}
