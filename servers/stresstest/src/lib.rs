//! # tern-stresstest: the stress scenario's domains
//!
//! Five domains, all safe Rust, that the kernel's `stress` boot scenario
//! starts and then harasses (see `docs/scenarios.md`):
//!
//! - `stress.a` → `stress.b` → `stress.c` → `stress.d`, the chain. Each is
//!   a *hop* ([`Hop`]): it checks the request (a call id and the hops it
//!   has been through), forwards it to the next hop with itself added, and
//!   hands back the next hop's answer — or, when its own call failed, an
//!   answer saying which hop's call failed and with what error. `stress.d`,
//!   the leaf, answers with the whole trail. A and B serve with pools
//!   (migrating: a worker's one thread runs in the client, A and B), B's
//!   pool growing through its sidetrack; C serves with server threads
//!   (switching: B's activation waits while C's thread runs C and D); D
//!   serves with a pool on a port declared idempotent (a call it dies in
//!   is made again to its next instance by the gate). Every hop yields in
//!   some calls and the leaf in every one, so that the kernel's boot
//!   thread, between its operations, finds calls in flight at every level.
//! - `stress.client`, whose start makes the shared record ([`Shared`]),
//!   spawns the worker threads ([`tern_inks::thread::spawn`]) and returns
//!   the record's address. Each worker calls `stress.a` in a loop — every
//!   fourth call lending it 512 bytes read-only, which A checks — until
//!   the kernel sets the record's stop word, and tallies every call before
//!   it is made (issued) and once it has come back (its outcome, exactly
//!   one): answered with the whole trail; answered with a hop's failure;
//!   an error (by code); a wrong answer (another call's id, a broken
//!   trail, a malformed message). After each call it yields and checks
//!   that its reply buffer still holds the answer it checked: a reply
//!   delivered twice, or late, would change it.
//!
//! The kernel reads the record (it is in the client's memory) to account
//! for every call: see [`Report`]. Which outcomes are legal is the
//! scenario's business, not this crate's.
//!
//! Two things the stress needs of its servers that ordinary ones may do
//! otherwise: C's server threads run a receive loop of their own that
//! waits again when an alert interrupts a receive (the service runtime's
//! threads end then), so that alerts never leave C without threads; and
//! every hop's start makes the calls that can be interrupted (to the name
//! service) again when an alert, a termination or an aborted call ends
//! them, so that a restarted instance always comes up.
//!
//! A test server: linked only into harness images (`board/harness`), never
//! into the production image; no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};
use tern_core::abi::{Error, MessageHeader, PortName};
use tern_inks::gate;
use tern_inks::service::{self, Lent, MessageView, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(CLIENT, "stress.client", client_main);
tern_inks::domain!(HOP_A, "stress.a", hop_main);
tern_inks::domain!(HOP_B, "stress.b", hop_main);
tern_inks::domain!(HOP_C, "stress.c", hop_main);
tern_inks::domain!(HOP_D, "stress.d", hop_main);

/// The client's domain name.
pub const CLIENT_NAME: &str = "stress.client";
/// The hops' domain names, in chain order (a hop's level is its index).
pub const SERVERS: [&str; 4] = ["stress.a", "stress.b", "stress.c", "stress.d"];
/// The hop served by threads (the others by pools).
pub const SWITCHING: usize = 2;
/// The last hop, whose port is idempotent.
pub const LEAF: usize = SERVERS.len() - 1;
/// Activations each pool starts with.
pub const POOL: usize = 2;
/// B's sidetrack grants one activation at a time, this many in all.
pub const GROWTH_LIMIT: usize = 2;
/// C's server threads.
pub const THREADS: usize = 2;
/// Most workers a client spawns.
pub const MAX_WORKERS: usize = 8;
/// Error codes tallied (index = code; `Error` codes are below this).
pub const CODES: usize = 32;
/// Hops that make calls of their own (all but the leaf).
pub const CALLING_HOPS: usize = LEAF;
/// Bytes a worker lends A in every fourth call.
pub const LENT_BYTES: usize = 512;

/// Stack bytes of a worker and of a C server thread.
const STACK: usize = 64 << 10;
/// Room for any request or reply of the stress protocol.
const MESSAGE_BYTES: usize = 64;
/// How many times a hop's start makes an interrupted call again.
const START_TRIES: usize = 1000;

/// Reply labels of the stress protocol. Requests carry a call id (8
/// bytes, little-endian) and the levels + 1 of the hops they went
/// through (one byte each).
pub mod label {
    /// The leaf answered: the id and the whole trail (1, 2, 3, 4).
    pub const OK: u32 = 0;
    /// A hop's own call failed: the id, the hop's level, the error code.
    pub const DOWNSTREAM: u32 = 1;
    /// A hop got an answer that was not its call's: the id, its level.
    pub const MISMATCH: u32 = 2;
    /// A hop got a request that was not well formed (wrong trail).
    pub const MALFORMED: u32 = 3;
    /// A checked the region lent with the call and found it wrong.
    pub const LENT_WRONG: u32 = 4;
}

/// A worker's counters (indices into its row of [`Shared::tallies`]).
pub mod counter {
    /// Calls about to be made.
    pub const ISSUED: usize = 0;
    /// Answered with the whole trail.
    pub const OK: usize = 1;
    /// Answered with a hop's failure ([`super::label::DOWNSTREAM`]).
    pub const DOWNSTREAM: usize = 2;
    /// Answered wrongly: another call's id, a broken trail, any other
    /// label, a malformed message.
    pub const WRONG: usize = 3;
    /// The reply buffer changed after the answer was checked (not an
    /// outcome: the call already had its one).
    pub const LATE: usize = 4;
    /// Alerts the worker found waiting at its own activation (not an
    /// outcome).
    pub const ALERTS: usize = 5;
    /// 1 once the worker has left its loop.
    pub const DONE: usize = 6;
    /// Ended with an error: `ERROR + code`.
    pub const ERROR: usize = 7;
    /// Counters per worker.
    pub const COUNT: usize = ERROR + super::CODES;
}

/// What the client's threads share, in its memory, where the kernel reads
/// it and writes the stop word. All words, so that the kernel can read it
/// as words ([`Report::from_words`]).
#[repr(C)]
#[derive(Debug)]
pub struct Shared {
    /// Non-zero: the workers leave their loop after their current call.
    pub stop: AtomicU64,
    /// A's port, in the client's space.
    pub port: AtomicU64,
    /// The next worker's index.
    pub next_worker: AtomicU64,
    /// How many workers were spawned.
    pub workers: AtomicU64,
    /// The spawned workers' thread numbers.
    pub threads: [AtomicU64; MAX_WORKERS],
    /// Each worker's counters ([`counter`]).
    pub tallies: [[AtomicU64; counter::COUNT]; MAX_WORKERS],
    /// Hops' failed calls seen in answers, by hop level and error code.
    pub downstream: [[AtomicU64; CODES]; CALLING_HOPS],
}

/// Where the stop word is in [`Shared`], in bytes.
pub const STOP_OFFSET: usize = offset_of!(Shared, stop);
/// [`Shared`]'s size in bytes.
pub const SHARED_BYTES: usize = core::mem::size_of::<Shared>();

impl Shared {
    fn new() -> Self {
        Shared {
            stop: AtomicU64::new(0),
            port: AtomicU64::new(0),
            next_worker: AtomicU64::new(0),
            workers: AtomicU64::new(0),
            threads: [const { AtomicU64::new(0) }; MAX_WORKERS],
            tallies: [const { [const { AtomicU64::new(0) }; counter::COUNT] }; MAX_WORKERS],
            downstream: [const { [const { AtomicU64::new(0) }; CODES] }; CALLING_HOPS],
        }
    }
}

/// [`Shared`] as the kernel read it: plain numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// How many workers were spawned.
    pub workers: usize,
    /// Their thread numbers.
    pub threads: [u64; MAX_WORKERS],
    /// Each worker's counters ([`counter`]).
    pub tallies: [[u64; counter::COUNT]; MAX_WORKERS],
    /// Hops' failed calls, by hop level and error code.
    pub downstream: [[u64; CODES]; CALLING_HOPS],
}

impl Report {
    /// Decode [`Shared`] read as little-endian words (`SHARED_BYTES / 8`
    /// of them); `None` if there are too few.
    pub fn from_words(words: &[u64]) -> Option<Report> {
        let word = |offset: usize, index: usize| words.get(offset / 8 + index).copied();
        let mut report = Report {
            workers: word(offset_of!(Shared, workers), 0)? as usize,
            threads: [0; MAX_WORKERS],
            tallies: [[0; counter::COUNT]; MAX_WORKERS],
            downstream: [[0; CODES]; CALLING_HOPS],
        };
        for (index, thread) in report.threads.iter_mut().enumerate() {
            *thread = word(offset_of!(Shared, threads), index)?;
        }
        for (worker, row) in report.tallies.iter_mut().enumerate() {
            for (index, value) in row.iter_mut().enumerate() {
                *value = word(offset_of!(Shared, tallies), worker * counter::COUNT + index)?;
            }
        }
        for (hop, row) in report.downstream.iter_mut().enumerate() {
            for (code, value) in row.iter_mut().enumerate() {
                *value = word(offset_of!(Shared, downstream), hop * CODES + code)?;
            }
        }
        Some(report)
    }

    /// The outcomes worker `worker`'s calls had: every counter that is
    /// one (all but issued, late, alerts and done).
    pub fn outcomes(&self, worker: usize) -> u64 {
        self.tallies.get(worker).map_or(0, |row| {
            row[counter::OK]
                + row[counter::DOWNSTREAM]
                + row[counter::WRONG]
                + row[counter::ERROR..].iter().sum::<u64>()
        })
    }

    /// A counter summed over the workers.
    pub fn total(&self, counter: usize) -> u64 {
        self.tallies.iter().take(self.workers).map(|row| row.get(counter).copied().unwrap_or(0)).sum()
    }
}

/// The client's start argument: how many workers, at what priority.
pub const fn client_argument(workers: usize, priority: u8) -> usize {
    workers | (priority as usize) << 8
}

/// A hop's start argument: its level, and the priority of its server
/// threads (C's).
pub const fn hop_argument(level: usize, priority: u8) -> usize {
    level | (priority as usize) << 8
}

/// Make `call` until it ends otherwise than interrupted by the stress
/// (an alert, a termination of the activation it reached, an aborted
/// call), at most [`START_TRIES`] times.
fn persist<T>(mut call: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let mut tries = 0;
    loop {
        match call() {
            Err(Error::Interrupted | Error::Terminated | Error::CallAborted) if tries < START_TRIES => tries += 1,
            outcome => return outcome,
        }
    }
}

// ---------------------------------------------------------------------------
// The protocol

/// Write a request (label 0) carrying `id` and `trail` into `out`; its
/// length.
fn write_request(out: &mut [u8; MESSAGE_BYTES], id: u64, trail: &[u8]) -> usize {
    let length = 8 + trail.len();
    MessageHeader::new(0, length).write_to(out);
    out[16..24].copy_from_slice(&id.to_le_bytes());
    out[24..24 + trail.len()].copy_from_slice(trail);
    MessageHeader::SIZE + length
}

/// The call id a payload starts with.
fn id_of(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

/// Whether `trail` is exactly the hops before `level` (1 ..= level).
fn trail_before(trail: &[u8], level: usize) -> bool {
    trail.len() == level && trail.iter().enumerate().all(|(index, &hop)| hop as usize == index + 1)
}

/// The byte at `index` of the region lent with call `id`.
fn lent_byte(id: u64, index: usize) -> u8 {
    (id >> ((index % 8) * 8)) as u8 ^ (index as u8).wrapping_mul(31)
}

// ---------------------------------------------------------------------------
// The hops

/// One hop of the chain.
struct Hop {
    /// Its place in the chain (an index into [`SERVERS`]).
    level: usize,
    /// The next hop's port, in this domain's space (none for the leaf).
    next: Option<PortName>,
    /// Its own port.
    port: PortName,
    /// How its pool grows (B's), if it does.
    growth: Option<PoolGrowth>,
}

impl Hop {
    /// Answer a request's payload (and the region lent with it, if any)
    /// into `out`: the reply's label and payload length.
    fn answer(&self, payload: &[u8], lent: Option<&[u8]>, out: &mut [u8; MESSAGE_BYTES]) -> (u32, usize) {
        let Some(id) = id_of(payload) else { return (label::MALFORMED, 0) };
        out[..8].copy_from_slice(&id.to_le_bytes());
        out[8] = self.level as u8;
        let trail = &payload[8..];
        if !trail_before(trail, self.level) {
            return (label::MALFORMED, 9);
        }
        if let Some(bytes) = lent
            && !bytes.iter().enumerate().all(|(index, &byte)| byte == lent_byte(id, index))
        {
            return (label::LENT_WRONG, 9);
        }
        let mut onward = [0u8; SERVERS.len()];
        onward[..trail.len()].copy_from_slice(trail);
        onward[trail.len()] = self.level as u8 + 1;
        let onward = &onward[..=trail.len()];
        if id % SERVERS.len() as u64 == self.level as u64 {
            gate::yield_now();
        }
        let Some(next) = self.next else {
            // The leaf: yield while the whole chain is in flight, answer.
            gate::yield_now();
            out[8..8 + onward.len()].copy_from_slice(onward);
            return (label::OK, 8 + onward.len());
        };
        let mut request = [0u8; MESSAGE_BYTES];
        let length = write_request(&mut request, id, onward);
        let mut reply = [0u8; MESSAGE_BYTES];
        match gate::call(next, &request[..length], &mut reply) {
            Ok(length) => match MessageView::parse(&reply[..length]) {
                Ok(view) if id_of(view.payload) == Some(id) && view.payload.len() <= MESSAGE_BYTES => {
                    // The next hop's answer, as it is: the client checks it.
                    out[..view.payload.len()].copy_from_slice(view.payload);
                    (view.label(), view.payload.len())
                }
                _ => (label::MISMATCH, 9),
            },
            Err(error) => {
                out[9] = error as u8;
                (label::DOWNSTREAM, 10)
            }
        }
    }
}

impl Service for Hop {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let mut out = [0u8; MESSAGE_BYTES];
        let (label, length) = self.answer(request.payload, None, &mut out);
        reply.set_label(label);
        let _ = reply.set_payload(&out[..length]);
    }

    fn handle_lent(&self, request: &Request<'_>, lent: Lent<'_>, reply: &mut Reply<'_>) {
        let mut out = [0u8; MESSAGE_BYTES];
        let (label, length) = self.answer(request.payload, Some(lent.bytes()), &mut out);
        reply.set_label(label);
        let _ = reply.set_payload(&out[..length]);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.as_ref().map_or(0, PoolGrowth::grant)
    }
}

/// A hop's start: find the next hop, make (or, restarted, adopt) its
/// port, register it, serve.
fn hop_main(argument: usize) -> usize {
    let (level, priority) = (argument & 0xff, (argument >> 8) as u8);
    let Some(&name) = SERVERS.get(level) else { return Error::InvalidArgument as usize };
    let started = (|| -> Result<(), Error> {
        let next = match SERVERS.get(level + 1) {
            Some(next) => Some(persist(|| service::lookup(next))?),
            None => None,
        };
        let port = if level == LEAF { gate::port_create_idempotent()? } else { gate::port_create()? };
        persist(|| service::register(name, port))?;
        let growth = (level == 1).then(|| PoolGrowth::new(1, GROWTH_LIMIT));
        let hop: &'static Hop = Box::leak(Box::new(Hop { level, next, port, growth }));
        if level == SWITCHING {
            for _ in 0..THREADS {
                tern_inks::thread::spawn(hop_thread, hop, priority, STACK)?;
            }
            Ok(())
        } else {
            service::serve(hop, port, service::MODE_POOL, POOL, 0, service::DEFAULT_STACK_BYTES)
        }
    })();
    started.map_or_else(|error| error as usize, |()| 0)
}

/// A server thread of the switching hop: receive, answer, reply and
/// receive the next; an alert that ends a receive is a reason to wait
/// again, not to stop (see the crate's notes). Ends when the kernel
/// refuses to wait for another reason.
fn hop_thread(hop: &'static Hop) -> usize {
    let mut request = [0u8; MESSAGE_BYTES];
    let mut reply = [0u8; MESSAGE_BYTES];
    let mut next = gate::receive(hop.port, &mut request);
    loop {
        let length = match next {
            Ok(length) => length,
            Err(Error::Interrupted) => {
                next = gate::receive(hop.port, &mut request);
                continue;
            }
            Err(error) => return error as usize,
        };
        let mut out = [0u8; MESSAGE_BYTES];
        let (label, answer) = match request.get(..length).map(MessageView::parse) {
            Some(Ok(view)) => hop.answer(view.payload, None, &mut out),
            _ => (label::MALFORMED, 0),
        };
        MessageHeader::new(label, answer).write_to(&mut reply);
        reply[MessageHeader::SIZE..MessageHeader::SIZE + answer].copy_from_slice(&out[..answer]);
        next = gate::reply_receive(&reply[..MessageHeader::SIZE + answer], hop.port, &mut request);
        if next.is_err() {
            // Refused before it waited (its client gone, say): the reply
            // is lost either way; wait afresh.
            next = gate::receive(hop.port, &mut request);
        }
    }
}

// ---------------------------------------------------------------------------
// The client

/// The client's start: the shared record, the workers; the record's
/// address (0 if something failed).
fn client_main(argument: usize) -> usize {
    let (workers, priority) = ((argument & 0xff).min(MAX_WORKERS), (argument >> 8) as u8);
    let shared: &'static Shared = Box::leak(Box::new(Shared::new()));
    let Ok(port) = persist(|| service::lookup(SERVERS[0])) else { return 0 };
    shared.port.store(port as u64, Ordering::Relaxed);
    shared.workers.store(workers as u64, Ordering::Relaxed);
    for slot in &shared.threads[..workers] {
        match tern_inks::thread::spawn(worker, shared, priority, STACK) {
            Ok(thread) => slot.store(thread as u64, Ordering::Relaxed),
            Err(_) => return 0,
        }
    }
    core::ptr::from_ref(shared).addr()
}

/// Wrong answers a worker describes on the console (the rest are only
/// counted).
const WRONG_SHOWN: u64 = 4;

/// A worker: calls to A until told to stop, each tallied (see the crate's
/// notes); 0.
fn worker(shared: &'static Shared) -> usize {
    let index = shared.next_worker.fetch_add(1, Ordering::Relaxed) as usize;
    let Some(tally) = shared.tallies.get(index) else { return 1 };
    let count = |counter: usize| {
        tally[counter].fetch_add(1, Ordering::Relaxed);
    };
    let port = shared.port.load(Ordering::Relaxed) as PortName;
    let mut request = [0u8; MESSAGE_BYTES];
    let mut reply = [0u8; MESSAGE_BYTES];
    let mut lent = [0u8; LENT_BYTES];
    let mut sequence = 0u64;
    while shared.stop.load(Ordering::Acquire) == 0 {
        sequence += 1;
        let id = (index as u64 + 1) << 40 | sequence;
        let length = write_request(&mut request, id, &[]);
        reply.fill(0);
        count(counter::ISSUED);
        let answer = if sequence.is_multiple_of(4) {
            for (index, byte) in lent.iter_mut().enumerate() {
                *byte = lent_byte(id, index);
            }
            gate::call_lending(port, &request[..length], &mut reply, &lent)
        } else {
            gate::call(port, &request[..length], &mut reply)
        };
        let outcome = match answer {
            Ok(length) => judge(shared, &reply, length, id),
            Err(error) => Err(counter::ERROR + (error as usize).min(CODES - 1)),
        };
        let kept = reply;
        match outcome {
            Ok(counter) => count(counter),
            Err(counter) => {
                if counter == counter::WRONG && tally[counter::WRONG].load(Ordering::Relaxed) < WRONG_SHOWN {
                    let shown = answer.map(|length| &kept[..length.min(MESSAGE_BYTES)]);
                    tern_inks::println!("[stress.client] worker {index}, call {id:#x}: wrong answer {shown:?}");
                }
                count(counter);
            }
        }
        // Nobody may write the reply buffer now: the call had its answer.
        gate::yield_now();
        if reply != kept {
            count(counter::LATE);
        }
        if gate::test_alert() {
            count(counter::ALERTS);
        }
    }
    tally[counter::DONE].store(1, Ordering::Release);
    0
}

/// What an answer of `length` bytes in `reply` to call `id` counts as:
/// `Ok(counter)` for a right answer, `Err(counter::WRONG)` for a wrong one.
fn judge(shared: &Shared, reply: &[u8], length: usize, id: u64) -> Result<usize, usize> {
    let view = reply.get(..length).map(MessageView::parse).and_then(Result::ok).ok_or(counter::WRONG)?;
    if id_of(view.payload) != Some(id) {
        return Err(counter::WRONG);
    }
    let rest = &view.payload[8..];
    match view.label() {
        label::OK if trail_before(rest, SERVERS.len()) => Ok(counter::OK),
        label::DOWNSTREAM => match rest {
            &[hop, code] if (hop as usize) < CALLING_HOPS && (code as usize) < CODES => {
                shared.downstream[hop as usize][code as usize].fetch_add(1, Ordering::Relaxed);
                Ok(counter::DOWNSTREAM)
            }
            _ => Err(counter::WRONG),
        },
        _ => Err(counter::WRONG),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_their_id_and_trail() {
        let mut out = [0u8; MESSAGE_BYTES];
        let length = write_request(&mut out, 0x1234_5678_9abc, &[1, 2]);
        assert_eq!(length, MessageHeader::SIZE + 10);
        let view = MessageView::parse(&out[..length]).unwrap();
        assert_eq!(id_of(view.payload), Some(0x1234_5678_9abc));
        assert!(trail_before(&view.payload[8..], 2));
        assert!(!trail_before(&view.payload[8..], 1) && !trail_before(&view.payload[8..], 3));
        assert!(!trail_before(&[2, 1], 2), "in order");
        assert_eq!(id_of(&[1, 2, 3]), None);
    }

    #[test]
    fn the_leaf_answers_with_the_whole_trail() {
        let leaf = Hop { level: LEAF, next: None, port: 1, growth: None };
        let mut out = [0u8; MESSAGE_BYTES];
        let mut payload = [0u8; 8 + LEAF];
        payload[..8].copy_from_slice(&77u64.to_le_bytes());
        payload[8..].copy_from_slice(&[1, 2, 3]);
        // (Off the target the leaf's yield is a refused kernel call.)
        assert_eq!(leaf.answer(&payload, None, &mut out), (label::OK, 12));
        assert_eq!(&out[8..12], &[1, 2, 3, 4]);
        assert_eq!(leaf.answer(&payload[..10], None, &mut out), (label::MALFORMED, 9), "a trail cut short");
        assert_eq!(leaf.answer(&payload[..5], None, &mut out).0, label::MALFORMED, "no id");
    }

    #[test]
    fn a_lend_must_hold_the_calls_pattern() {
        let first = Hop { level: 0, next: None, port: 1, growth: None };
        let id = 0x0102_0304_0506_0708;
        let lent: alloc::vec::Vec<u8> = (0..LENT_BYTES).map(|index| lent_byte(id, index)).collect();
        let mut out = [0u8; MESSAGE_BYTES];
        let payload = id.to_le_bytes();
        assert_eq!(first.answer(&payload, Some(&lent), &mut out).0, label::OK, "a leaf at level 0 answers");
        let mut spoiled = lent.clone();
        spoiled[100] ^= 1;
        assert_eq!(first.answer(&payload, Some(&spoiled), &mut out), (label::LENT_WRONG, 9));
        assert_ne!(lent_byte(id, 0), lent_byte(id + 1, 0), "another call, another pattern");
    }

    #[test]
    fn answers_are_judged_by_id_trail_and_label() {
        let shared = Shared::new();
        let reply = |label: u32, payload: &[u8]| {
            let mut message = [0u8; MESSAGE_BYTES];
            MessageHeader::new(label, payload.len()).write_to(&mut message);
            message[16..16 + payload.len()].copy_from_slice(payload);
            (message, 16 + payload.len())
        };
        let mut good = [0u8; 12];
        good[..8].copy_from_slice(&5u64.to_le_bytes());
        good[8..].copy_from_slice(&[1, 2, 3, 4]);
        let (message, length) = reply(label::OK, &good);
        assert_eq!(judge(&shared, &message, length, 5), Ok(counter::OK));
        assert_eq!(judge(&shared, &message, length, 6), Err(counter::WRONG), "another call's answer");
        assert_eq!(judge(&shared, &message, length - 1, 5), Err(counter::WRONG), "cut short");
        let (message, length) = reply(label::OK, &good[..11]);
        assert_eq!(judge(&shared, &message, length, 5), Err(counter::WRONG), "the trail lacks the leaf");
        let mut failed = [0u8; 10];
        failed[..8].copy_from_slice(&5u64.to_le_bytes());
        failed[8..].copy_from_slice(&[1, Error::CallAborted as u8]);
        let (message, length) = reply(label::DOWNSTREAM, &failed);
        assert_eq!(judge(&shared, &message, length, 5), Ok(counter::DOWNSTREAM));
        assert_eq!(shared.downstream[1][Error::CallAborted as usize].load(Ordering::Relaxed), 1);
        let (message, length) = reply(label::MISMATCH, &failed[..9]);
        assert_eq!(judge(&shared, &message, length, 5), Err(counter::WRONG));
    }

    #[test]
    fn the_report_reads_the_shared_record_as_words() {
        let shared = Shared::new();
        shared.workers.store(2, Ordering::Relaxed);
        shared.threads[1].store(42, Ordering::Relaxed);
        shared.tallies[1][counter::ISSUED].store(10, Ordering::Relaxed);
        shared.tallies[1][counter::OK].store(7, Ordering::Relaxed);
        shared.tallies[1][counter::ERROR + Error::Interrupted as usize].store(3, Ordering::Relaxed);
        shared.tallies[1][counter::LATE].store(9, Ordering::Relaxed);
        shared.downstream[2][Error::Terminated as usize].store(4, Ordering::Relaxed);
        // As the kernel reads it: every field a word, in order.
        let mut words = alloc::vec::Vec::new();
        words.extend(
            [&shared.stop, &shared.port, &shared.next_worker, &shared.workers].map(|w| w.load(Ordering::Relaxed)),
        );
        words.extend(shared.threads.iter().map(|w| w.load(Ordering::Relaxed)));
        words.extend(shared.tallies.iter().flatten().map(|w| w.load(Ordering::Relaxed)));
        words.extend(shared.downstream.iter().flatten().map(|w| w.load(Ordering::Relaxed)));
        assert_eq!(words.len() * 8, SHARED_BYTES, "nothing but words, no padding");
        let report = Report::from_words(&words).unwrap();
        assert_eq!((report.workers, report.threads[1]), (2, 42));
        assert_eq!(report.outcomes(1), 10, "late is no outcome");
        assert_eq!(report.total(counter::ISSUED), 10);
        assert_eq!(report.downstream[2][Error::Terminated as usize], 4);
        assert_eq!(Report::from_words(&words[..words.len() - 1]), None);
        assert_eq!(STOP_OFFSET, 0);
    }
}
