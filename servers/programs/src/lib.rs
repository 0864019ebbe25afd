//! # tern-programs: what the shell's `run` starts
//!
//! A program is a registered domain called `prog.NAME`
//! (`tern_inks::system::PROGRAM_PREFIX`): `kernel.system` makes the domain
//! the first time it is run and starts each job as a new thread upcalling
//! the domain's entry with one argument word; the entry's result is the
//! job's result (0 done, otherwise a kernel [`Error`]'s code). Programs are
//! never started at boot (the production start skips `prog.*`).
//!
//! - `prog.spin`: computes forever, testing for an alert between slices;
//!   an alert (the shell's `^C`) ends it `Interrupted`.
//! - `prog.chain`: holds a chain of `depth` calls through the [`relay`]
//!   server (`relay` → `relay` → … , then `kernel.clock`'s sleep at the
//!   top), so `ps` shows one thread across three kinds of domain. The
//!   sleep lasts `milliseconds` (0: until alerted); the alert from the
//!   job's base activation travels up to the clock's kernel activation,
//!   whose sleep ends `Interrupted`, and the chain unwinds.
//! - `prog.kvload`: `count` puts and gets on `kv`, then a line with the
//!   count and the time.
//! - `prog.callbench`: `calls` calls of a `bytes` payload to `echo` (or
//!   to its server thread, `echo.threads`), timed with the counter around
//!   the loop (two `system` calls for the counter lie outside it); the
//!   job's result is the ticks, marked [`MEASURED`]. The shell's `bench`
//!   runs it with the program's domain and `echo` protected and merged in
//!   turn, so the one loop measures every path.
//!
//! The argument words are made by [`chain_argument`] and friends, which
//! the shell uses, so both ends agree.
//!
//! Left out: arguments beyond one word (a program gets no text), standard
//! input (a job cannot read the console: the shell owns it), and `build`:
//! the shell's `run build` is `bench build`, which the kernel object
//! `kernel.build` runs (it makes, merges and measures domains, which a job
//! may not).
//!
//! A production crate (`board/image`), with no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod relay;

use alloc::format;
use tern_core::abi::{Error, PortName};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer};
use tern_inks::system::System;

tern_inks::domain!(SPIN, "prog.spin", spin_main);
tern_inks::domain!(CHAIN, "prog.chain", chain_main);
tern_inks::domain!(KVLOAD, "prog.kvload", kvload_main);
tern_inks::domain!(CALLBENCH, "prog.callbench", callbench_main);

/// Deepest chain `chain` holds.
pub const CHAIN_DEPTH_MAX: u32 = 8;
/// Longest sleep `chain` takes at the top, in milliseconds.
pub const CHAIN_SLEEP_MAX: u32 = 600_000;
/// Most operations `kvload` makes.
pub const KVLOAD_MAX: u32 = 1_000_000;
/// `kvload`'s count when none is given.
pub const KVLOAD_DEFAULT: u32 = 1000;

/// The argument word of `chain depth milliseconds`; `None` if out of range
/// (depth 1..=[`CHAIN_DEPTH_MAX`], sleep at most [`CHAIN_SLEEP_MAX`]).
pub fn chain_argument(depth: u32, milliseconds: u32) -> Option<u64> {
    ((1..=CHAIN_DEPTH_MAX).contains(&depth) && milliseconds <= CHAIN_SLEEP_MAX)
        .then(|| u64::from(depth) | (u64::from(milliseconds) << 16))
}

/// `chain`'s depth and sleep from its argument word.
pub fn chain_parts(argument: u64) -> (u32, u32) {
    ((argument & 0xffff) as u32, (argument >> 16) as u32)
}

/// The argument word of `kvload count`; `None` if out of range.
pub fn kvload_argument(count: u32) -> Option<u64> {
    (1..=KVLOAD_MAX).contains(&count).then_some(u64::from(count))
}

/// Largest payload `callbench` sends (1 KiB more would not fit the
/// argument's 24 bits; 32 KiB is the message's own limit).
pub const CALLBENCH_BYTES_MAX: u32 = tern_core::abi::PAYLOAD_MAX as u32;
/// Most calls `callbench` makes.
pub const CALLBENCH_CALLS_MAX: u32 = 100_000;
/// `callbench`'s calls when none are given.
pub const CALLBENCH_CALLS_DEFAULT: u32 = 200;
/// A job result word with this bit set is a measurement (`callbench`'s
/// ticks in the bits below), and the job is done.
pub const MEASURED: usize = 1 << 62;

/// Whom `callbench` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `echo`'s port, served by its pool (migrating).
    Pool,
    /// `echo.threads`, served by its server thread (switching).
    Thread,
}

/// What `callbench` is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Callbench {
    /// Payload bytes of each request (and so of each reply).
    pub bytes: u32,
    /// Calls made.
    pub calls: u32,
    /// Whom.
    pub target: Target,
    /// Print nothing (the shell's `bench` makes the table).
    pub quiet: bool,
}

impl Callbench {
    const THREAD: u64 = 1 << 48;
    const QUIET: u64 = 1 << 49;

    /// Its argument word; `None` if out of range (bytes at most
    /// [`CALLBENCH_BYTES_MAX`], calls 1..=[`CALLBENCH_CALLS_MAX`]).
    pub fn argument(self) -> Option<u64> {
        let fits = self.bytes <= CALLBENCH_BYTES_MAX && (1..=CALLBENCH_CALLS_MAX).contains(&self.calls);
        let thread = if self.target == Target::Thread { Self::THREAD } else { 0 };
        let quiet = if self.quiet { Self::QUIET } else { 0 };
        fits.then(|| u64::from(self.bytes) | (u64::from(self.calls) << 24) | thread | quiet)
    }

    /// The request an argument word makes; `None` if it is not one
    /// [`Callbench::argument`] makes.
    pub fn from_argument(word: u64) -> Option<Callbench> {
        let target = if word & Self::THREAD != 0 { Target::Thread } else { Target::Pool };
        let asked = Callbench {
            bytes: (word & 0xff_ffff) as u32,
            calls: ((word >> 24) & 0xff_ffff) as u32,
            target,
            quiet: word & Self::QUIET != 0,
        };
        (asked.argument() == Some(word)).then_some(asked)
    }
}

/// Write a line to the console (best effort: a program's output is
/// advice).
fn say(text: &str) {
    let _ = gate::console_write(text);
}

/// The result word of an outcome.
fn result(outcome: Result<(), Error>) -> usize {
    outcome.map_or_else(|error| error as usize, |()| 0)
}

fn spin_main(_: usize) -> usize {
    let _ = gate::alerts_block(false);
    let mut sum: u64 = 0;
    loop {
        for step in 0..20_000u64 {
            sum = core::hint::black_box(sum.wrapping_mul(31).wrapping_add(step));
        }
        if gate::test_alert() {
            return Error::Interrupted as usize;
        }
    }
}

fn chain_main(argument: usize) -> usize {
    let _ = gate::alerts_block(false);
    result(chain(argument as u64))
}

fn chain(argument: u64) -> Result<(), Error> {
    let (depth, milliseconds) = chain_parts(argument);
    if chain_argument(depth, milliseconds).is_none() {
        return Err(Error::InvalidArgument);
    }
    let ticks = if milliseconds == 0 {
        relay::FOREVER
    } else {
        let (_, frequency) = System::connect()?.uptime()?;
        u64::from(milliseconds) * frequency / 1000
    };
    let port = service::lookup(relay::NAME)?;
    relay::relay(port, depth, ticks)
}

fn kvload_main(argument: usize) -> usize {
    let _ = gate::alerts_block(false);
    result(kvload(argument as u32))
}

fn kvload(count: u32) -> Result<(), Error> {
    if kvload_argument(count).is_none() {
        return Err(Error::InvalidArgument);
    }
    let system = System::connect()?;
    let port = service::lookup(tern_kv::NAME)?;
    let (start, frequency) = system.uptime()?;
    for round in 0..count {
        let key = format!("kvload.{}", round % 64);
        let value = format!("{round}");
        kv(port, tern_kv::Operation::Put { key: key.as_bytes(), value: value.as_bytes() })?;
        kv(port, tern_kv::Operation::Get { key: key.as_bytes() })?;
        if gate::test_alert() {
            say(&format!("kvload: interrupted after {round} puts and gets\n"));
            return Err(Error::Interrupted);
        }
    }
    let (end, _) = system.uptime()?;
    let milliseconds = end.saturating_sub(start) * 1000 / frequency;
    say(&format!("kvload: {count} puts and {count} gets on kv in {milliseconds} ms\n"));
    Ok(())
}

fn callbench_main(argument: usize) -> usize {
    let _ = gate::alerts_block(false);
    match Callbench::from_argument(argument as u64) {
        Some(asked) => callbench(asked).map_or_else(|error| error as usize, |ticks| MEASURED | ticks as usize),
        None => Error::InvalidArgument as usize,
    }
}

/// The calls `asked` says, timed: the counter ticks they took.
fn callbench(asked: Callbench) -> Result<u64, Error> {
    let system = System::connect()?;
    let name = match asked.target {
        Target::Pool => tern_echo::NAME,
        Target::Thread => tern_echo::THREADS_NAME,
    };
    let port = service::lookup(name)?;
    let payload = alloc::vec![0x5a_u8; asked.bytes as usize];
    let mut request = MessageBuffer::with_payload_capacity(payload.len());
    request.set_label(1);
    request.set_payload(&payload)?;
    let mut reply = MessageBuffer::with_payload_capacity(payload.len());
    // One call first, outside the window (the first call of a job finds
    // its reply buffer cold), and as the check that echo answers right.
    let answered = service::call(port, &request, &mut reply)?;
    if answered.label() != 1 || answered.payload.len() != payload.len() {
        return Err(Error::BadMessage);
    }
    let (start, frequency) = system.uptime()?;
    for _ in 0..asked.calls {
        service::call(port, &request, &mut reply)?;
    }
    let (end, _) = system.uptime()?;
    let ticks = end.saturating_sub(start);
    if !asked.quiet {
        let nanoseconds = ticks * 1_000_000_000 / frequency / u64::from(asked.calls);
        say(&format!("callbench: {} calls of {} bytes to {name}: {nanoseconds} ns each\n", asked.calls, asked.bytes));
    }
    Ok(ticks)
}

/// One `kv` operation; its reply label must be `OK`.
fn kv(port: PortName, operation: tern_kv::Operation<'_>) -> Result<(), Error> {
    let mut request = MessageBuffer::with_payload_capacity(operation.encoded_length());
    operation.write_request(&mut request)?;
    let mut reply = MessageBuffer::with_payload_capacity(256);
    match service::call(port, &request, &mut reply)?.label() {
        tern_kv::OK => Ok(()),
        _ => Err(Error::BadMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_words_round_trip_and_refuse_what_is_out_of_range() {
        assert_eq!(chain_parts(chain_argument(3, 2000).unwrap()), (3, 2000));
        assert_eq!(chain_parts(chain_argument(1, 0).unwrap()), (1, 0));
        assert_eq!(chain_argument(0, 0), None);
        assert_eq!(chain_argument(CHAIN_DEPTH_MAX + 1, 0), None);
        assert_eq!(chain_argument(2, CHAIN_SLEEP_MAX + 1), None);
        assert_eq!(kvload_argument(0), None);
        assert_eq!(kvload_argument(10), Some(10));
    }

    #[test]
    fn callbench_words_round_trip_and_refuse_what_is_out_of_range() {
        let asked = Callbench { bytes: 1024, calls: 200, target: Target::Thread, quiet: true };
        assert_eq!(Callbench::from_argument(asked.argument().unwrap()), Some(asked));
        let plain = Callbench { bytes: 0, calls: 1, target: Target::Pool, quiet: false };
        assert_eq!(Callbench::from_argument(plain.argument().unwrap()), Some(plain));
        assert_eq!(Callbench { calls: 0, ..plain }.argument(), None);
        assert_eq!(Callbench { calls: CALLBENCH_CALLS_MAX + 1, ..plain }.argument(), None);
        assert_eq!(Callbench { bytes: CALLBENCH_BYTES_MAX + 1, ..plain }.argument(), None);
        assert_eq!(Callbench::from_argument(0), None);
        assert_eq!(Callbench::from_argument(1 << 60 | 1 << 24), None);
    }
}
