//! The `system` protocol: the shell's window on and lever over the kernel.
//!
//! `kernel.system` (the arch crate's `system` module) is a kernel object
//! like `kernel.clock`: kernel code, merged into the kernel domain at
//! start, served by kernel activations, reached by an ordinary RPC on the
//! port it registers as [`NAME`]. This module is its wire protocol and
//! its client ([`System`]), shared by the kernel side, the shell and the
//! programs, so that the two ends cannot drift apart.
//!
//! A request's label is the operation; its payload the arguments. A reply's
//! label is [`OK`] or a kernel [`Error`]'s code (a bad argument is an error
//! code, never a panic). Listings ([`PS`], [`DOMAINS`], [`PORTS`], [`MEM`])
//! come back as text, one line per row, formatted by the kernel: the
//! kernel knows its own records, and a client only shows them.
//!
//! | label | payload | reply payload |
//! |---|---|---|
//! | [`PS`] | — | text: a line per thread and its chain |
//! | [`DOMAINS`] | — | text: a line per domain |
//! | [`PORTS`] | — | text: a line per port |
//! | [`MERGE`] | `u8` mode (0 protected, 1 merged), the domain's name | — (`Busy` while occupied; a program not yet made is made merged, one taken out with no job is freed) |
//! | [`RUN`] | `u64` argument, the program's name | `u32` job (a thread), `u32` its base activation |
//! | [`WAIT`] | `u32` job | `u8` [`RUNNING`]/[`ENDED`]/[`STOPPED`], `u64` result |
//! | [`ALERT`], [`ALERT_BREAK`], [`SUSPEND`], [`RESUME`], [`KILL`] | `u32` job | — |
//! | [`MEM`] | — | text |
//! | [`UPTIME`] | — | `u64` counter, `u64` its frequency (Hz) |
//!
//! A name that names no domain (or no registered program) is
//! `NoSuchPort`: there is nothing of that name to call. A program's domain
//! lives while it has a job (until [`WAIT`] has said it ended) or while it
//! is merged; then `kernel.system` frees it, and its arena slot with it. Numbers are
//! little-endian. A program `NAME` is the registered domain
//! `prog.NAME` ([`PROGRAM_PREFIX`]).
//!
//! Authority is a send right to the port: today the name service hands one
//! to any domain that looks `system` up (a known gap, recorded in
//! `docs/design.md`).

use crate::service::{self, MessageBuffer};
use alloc::string::String;
use alloc::vec::Vec;
use tern_core::abi::{Error, PortName};

/// The name `kernel.system` registers its port under.
pub const NAME: &str = "system";
/// Registered program domains are called this, then the program's name.
pub const PROGRAM_PREFIX: &str = "prog.";

/// Request: every thread, its state, priority, CPU time and chain.
pub const PS: u32 = 1;
/// Request: every domain.
pub const DOMAINS: u32 = 2;
/// Request: every port.
pub const PORTS: u32 = 3;
/// Request: merge a domain into the kernel domain, or take it out.
pub const MERGE: u32 = 4;
/// Request: start a program as a job.
pub const RUN: u32 = 5;
/// Request: how a job is (reaped once it has ended and been told).
pub const WAIT: u32 = 6;
/// Request: alert a job's base activation (the alert travels up its chain).
pub const ALERT: u32 = 7;
/// Request: alert-and-break at the job's base activation.
pub const ALERT_BREAK: u32 = 8;
/// Request: suspend the job's base activation.
pub const SUSPEND: u32 = 9;
/// Request: resume the job's base activation.
pub const RESUME: u32 = 10;
/// Request: terminate the job's base activation.
pub const KILL: u32 = 11;
/// Request: memory.
pub const MEM: u32 = 12;
/// Request: the counter and its frequency.
pub const UPTIME: u32 = 13;

/// Reply label: done.
pub const OK: u32 = 0;

/// [`WAIT`]: the job runs (or waits).
pub const RUNNING: u8 = 0;
/// [`WAIT`]: the job has ended (and is now forgotten).
pub const ENDED: u8 = 1;
/// [`WAIT`]: the job's base activation is suspended.
pub const STOPPED: u8 = 2;

/// Largest reply the client takes (a listing).
pub const REPLY_MAX: usize = 16 * 1024;

/// How a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Running or waiting.
    Running,
    /// Suspended.
    Stopped,
    /// Ended with this result.
    Ended(usize),
}

/// A client's handle on `system`: a send right to its port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct System {
    port: PortName,
}

impl System {
    /// `system`, looked up with the name service.
    pub fn connect() -> Result<System, Error> {
        service::lookup(NAME).map(|port| System { port })
    }

    /// One request; the reply's payload, or the error its label names.
    pub fn ask(&self, label: u32, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let mut request = MessageBuffer::with_payload_capacity(payload.len());
        request.set_label(label);
        request.set_payload(payload)?;
        let mut reply = MessageBuffer::with_payload_capacity(REPLY_MAX);
        let view = service::call(self.port, &request, &mut reply)?;
        match view.label() {
            OK => Ok(view.payload.to_vec()),
            code => Err(Error::from_code(code as usize).unwrap_or(Error::BadMessage)),
        }
    }

    /// A listing ([`PS`], [`DOMAINS`], [`PORTS`], [`MEM`]) as text.
    pub fn text(&self, label: u32) -> Result<String, Error> {
        self.ask(label, &[]).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Merge domain `name` (or take it out of the kernel domain).
    pub fn merge(&self, name: &str, merged: bool) -> Result<(), Error> {
        let mut payload = Vec::with_capacity(name.len() + 1);
        payload.push(merged as u8);
        payload.extend_from_slice(name.as_bytes());
        self.ask(MERGE, &payload).map(drop)
    }

    /// Start program `name` with `argument`: the job (its thread's number).
    pub fn run(&self, name: &str, argument: u64) -> Result<u32, Error> {
        let mut payload = Vec::with_capacity(name.len() + 8);
        payload.extend_from_slice(&argument.to_le_bytes());
        payload.extend_from_slice(name.as_bytes());
        let reply = self.ask(RUN, &payload)?;
        reply.get(..4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes).ok_or(Error::BadMessage)
    }

    /// How `job` is; once [`JobState::Ended`] has been answered the job is
    /// forgotten.
    pub fn wait(&self, job: u32) -> Result<JobState, Error> {
        let reply = self.ask(WAIT, &job.to_le_bytes())?;
        let result = reply.get(1..9).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes);
        match (reply.first(), result) {
            (Some(&RUNNING), _) => Ok(JobState::Running),
            (Some(&STOPPED), _) => Ok(JobState::Stopped),
            (Some(&ENDED), Some(result)) => Ok(JobState::Ended(result as usize)),
            _ => Err(Error::BadMessage),
        }
    }

    /// A job control ([`ALERT`], [`ALERT_BREAK`], [`SUSPEND`], [`RESUME`],
    /// [`KILL`]) on `job`.
    pub fn control(&self, label: u32, job: u32) -> Result<(), Error> {
        self.ask(label, &job.to_le_bytes()).map(drop)
    }

    /// The counter and its frequency (Hz).
    pub fn uptime(&self) -> Result<(u64, u64), Error> {
        let reply = self.ask(UPTIME, &[])?;
        let word = |at: usize| reply.get(at..at + 8).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes);
        match (word(0), word(8)) {
            (Some(counter), Some(frequency)) if frequency > 0 => Ok((counter, frequency)),
            _ => Err(Error::BadMessage),
        }
    }
}
