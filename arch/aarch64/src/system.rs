//! `kernel.system`: the shell's window on and lever over the kernel — a
//! kernel object invoked by RPC and served by kernel activations, like
//! `kernel.clock` (issue 16, point 2).
//!
//! It is a domain of the kernel's own code, merged into the kernel domain
//! at start, registered as `system`; its pool activations run at the
//! kernel's level with the kernel's view, so a handler reads and changes
//! the kernel's records directly (`state::with`), under the one lock, and
//! never switches threads itself. The protocol is
//! `tern_inks::system`'s: listings of threads with their chains
//! (`PS`), domains, ports and memory, as text; `MERGE` (a domain's mode,
//! `Busy` while it is occupied); and jobs: `RUN` starts a registered
//! program domain's entry on a new thread of its own (the domain is made
//! on first use, never "started"; freed once its last job has been
//! waited for, unless it is merged), and `WAIT`, `ALERT`, `ALERT_BREAK`,
//! `SUSPEND`, `RESUME`, `KILL` act on the job's *base* activation: an
//! alert there travels up the whole chain, a break cuts the job's own
//! code loose from the servers it is in, a suspension stops the job when
//! it next runs in its own code, a termination ends it.
//!
//! A job is a thread this domain made (its creator): any other thread
//! number is `NoRight`, an unknown one `InvalidArgument`. Every argument is
//! checked; a bad one is an error code in the reply label.
//!
//! Calls served: `DOMAINS` prints each domain's (the sum over its ports,
//! and over its ports that are gone: `Kernel::calls_served`), `PORTS`
//! each port's (`Port::calls_served`), exact on every path: the general
//! path counts in the port as it routes a call, the assembly fast paths
//! count in the port too (instead of machine-wide, at no extra
//! instruction), and reading the machine-wide statistics folds those in
//! (`Kernel::statistics`). Names: the kernel does not know them; `PORTS`
//! asks the name service (`LIST`: each name with the port's name in the
//! name service's space) *before* it takes the kernel's lock — an RPC
//! under the lock would deadlock the first time the name service needed
//! the kernel — then reads the name service's space to turn those names
//! into ports. If the name service does not answer (or answers with only
//! part of the list) the table comes without names (or with some) and a
//! note says so; the listing never fails for it.
//!
//! Left out: a name registered for a port that has since died shows
//! nowhere (the name service keeps it, under a dead name); and any
//! authority finer than holding a send right to `system`.

use crate::state::{self, Kernel};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::num::NonZeroU32;
use tern_core::abi::{DomainMode, Error, PortName};
use tern_core::capability::PortId;
use tern_core::control::ActivationAction;
use tern_core::domain::DomainId;
use tern_core::thread::{ActivationId, ThreadId, ThreadState};
use tern_inks::gate;
use tern_inks::service::{self, Reply, Request, Service};
use tern_inks::system as protocol;

tern_inks::domain!(SYSTEM, "kernel.system", system_main);

/// The priority a job's thread runs at: below the shell, so that a job
/// that spins never keeps the prompt from answering.
pub const JOB_PRIORITY: u8 = 8;
/// Stack of a job's thread (carved from its program's region).
pub const JOB_STACK_BYTES: u64 = 64 * 1024;

struct System;

impl Service for System {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        // Only ever served merged: protected, this code could not touch
        // the kernel's records (and would fault trying).
        if !gate::current_mode().is_merged() {
            reply.set_label(Error::NoRight as u32);
            return;
        }
        let answer = answer(request.label(), request.payload);
        match answer {
            Ok(bytes) => {
                reply.set_label(protocol::OK);
                if reply.set_payload(&bytes).is_err() {
                    reply.set_label(Error::ReplyTooLarge as u32);
                }
            }
            Err(error) => reply.set_label(error as u32),
        }
    }
}

fn system_main(mode: usize) -> usize {
    service::start(Some(protocol::NAME), System, mode)
}

/// The reply payload for one request, or the error it is refused with.
fn answer(label: u32, payload: &[u8]) -> Result<Vec<u8>, Error> {
    match label {
        protocol::PS => Ok(state::with(ps).into_bytes()),
        protocol::DOMAINS => Ok(state::with(domains).into_bytes()),
        protocol::PORTS => {
            // Asked before the kernel's lock is taken: an RPC must never be
            // made under it.
            let registered = service::list_names();
            Ok(state::with(|kernel| ports(kernel, registered)).into_bytes())
        }
        protocol::MEM => Ok(mem().into_bytes()),
        protocol::UPTIME => {
            let mut bytes = Vec::with_capacity(16);
            bytes.extend_from_slice(&crate::timer::counter().to_le_bytes());
            bytes.extend_from_slice(&crate::timer::frequency().to_le_bytes());
            Ok(bytes)
        }
        protocol::MERGE => merge(payload).map(|()| Vec::new()),
        protocol::RUN => run(payload),
        protocol::WAIT => wait(job_of(payload)?),
        protocol::ALERT => control(job_of(payload)?, ActivationAction::Alert),
        protocol::ALERT_BREAK => control(job_of(payload)?, ActivationAction::AlertBreak),
        protocol::SUSPEND => control(job_of(payload)?, ActivationAction::Suspend),
        protocol::RESUME => control(job_of(payload)?, ActivationAction::Resume),
        protocol::KILL => control(job_of(payload)?, ActivationAction::Terminate),
        _ => Err(Error::InvalidArgument),
    }
}

/// A domain's name (`kernel` for the kernel's own code).
fn domain_name(kernel: &Kernel, id: DomainId) -> &'static str {
    kernel.domain(id).map_or("kernel", |record| record.domain.name)
}

/// A thread state's name, without its payload.
fn state_name(state: ThreadState) -> &'static str {
    match state {
        ThreadState::Ready => "ready",
        ThreadState::Running => "running",
        ThreadState::WaitingForActivation(_) => "wait-activation",
        ThreadState::WaitingForReceiver(_) => "wait-receiver",
        ThreadState::WaitingForReply => "wait-reply",
        ThreadState::Receiving(_) => "receiving",
        ThreadState::Joining(_) => "joining",
        ThreadState::Ended(_) => "ended",
        ThreadState::Suspended(_) => "suspended",
        ThreadState::WaitingForState(_) => "wait-state",
        ThreadState::Sleeping(_) => "sleeping",
        ThreadState::ReadingConsole => "console-read",
    }
}

/// Counter ticks in milliseconds.
fn milliseconds(ticks: u64) -> u64 {
    ticks.saturating_mul(1000) / crate::timer::frequency().max(1)
}

/// `PS`: a line per thread (number, state, priority, CPU time with its
/// split by domain), then its chain bottom to top, the top marked `*`.
fn ps(kernel: &mut Kernel) -> String {
    kernel.charge();
    let mut text = String::new();
    let _ = writeln!(text, "thread state           prio   cpu(ms)  chain (bottom -> top*), cpu by domain");
    let ids: Vec<ThreadId> = kernel.objects.thread_ids().collect();
    for id in ids {
        let Some(thread) = kernel.objects.thread(id) else { continue };
        let mut chain: Vec<ActivationId> = kernel.objects.chain(id);
        chain.reverse();
        let mut links = String::new();
        for (at, activation) in chain.iter().enumerate() {
            let domain = kernel.objects.activation(*activation).map_or(DomainId(0), |entry| entry.domain);
            let mark = if at + 1 == chain.len() { "*" } else { "" };
            let arrow = if at == 0 { "" } else { " > " };
            let _ = write!(links, "{arrow}{}#{}{mark}", domain_name(kernel, domain), activation.0);
        }
        if links.is_empty() {
            links.push_str("(no activation)");
        }
        let mut split = String::new();
        for (domain, ticks) in &thread.by_domain {
            let _ = write!(split, " {}={}", domain_name(kernel, *domain), milliseconds(*ticks));
        }
        let _ = writeln!(
            text,
            "{:>6} {:<15} {:>4} {:>9}  {}  [{}]",
            id.0,
            state_name(thread.state),
            thread.priority,
            milliseconds(thread.cpu_time),
            links,
            split.trim_start()
        );
    }
    text
}

/// `DOMAINS`: a line per live domain, then the kernel's call statistics.
fn domains(kernel: &mut Kernel) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "  id name              mode       asid  region                    pool free/total  occupied     served"
    );
    // Domain numbers start at 1 (the kernel domain has none here).
    let count = kernel.domains.len();
    for index in 1..=count {
        let id = DomainId(index as u16);
        let Some(record) = kernel.domain(id) else { continue };
        if !record.alive {
            continue;
        }
        let (name, mode, region) = (record.domain.name, record.mode, record.domain.region);
        // The view's ASID (TTBR0's top 16 bits), used while it is protected.
        let asid = record.domain.view >> 48;
        let (mut free, mut total) = (0, 0);
        let ports: Vec<_> = kernel.objects.port_ids().collect();
        for port in ports {
            if kernel.objects.port(port).is_some_and(|entry| entry.owner == id && entry.alive) {
                free += kernel.objects.pool_free(port);
                total += kernel.objects.port(port).map_or(0, |entry| entry.pool_size);
            }
        }
        let occupied = kernel
            .objects
            .activation_ids()
            .filter(|activation| {
                kernel
                    .objects
                    .activation(*activation)
                    .is_some_and(|entry| entry.domain == id && entry.occupant.is_some())
            })
            .count();
        let mode = if mode.is_merged() { "merged" } else { "protected" };
        let _ = writeln!(
            text,
            "{:>4} {:<17} {:<10} {:>4}  {:#010x}+{:<#9x}  {:>5}/{:<5}        {:<8} {:>6}",
            id.0,
            name,
            mode,
            asid,
            region.start,
            region.end - region.start,
            free,
            total,
            occupied,
            kernel.calls_served(id)
        );
    }
    let statistics = *kernel.statistics();
    let _ = writeln!(
        text,
        "calls (all domains): {} migrated, {} direct, {} handed to threads, {} queued; longest chain {}; {} splits",
        statistics.migrated,
        statistics.direct,
        statistics.handed_off,
        statistics.queued,
        statistics.longest_chain,
        statistics.splits
    );
    text
}

/// `PORTS`: a line per port, with the names it is registered under
/// (`registered`: the name service's `LIST`, each port named in the name
/// service's space; without it, the table without names).
fn ports(kernel: &mut Kernel, registered: Result<(Vec<(String, PortName)>, bool), Error>) -> String {
    let (registered, complete) = registered.unwrap_or((Vec::new(), false));
    // The name service's names for ports, as the kernel's ports.
    let names_domain = kernel.name_service.and_then(|port| kernel.objects.port(port)).map(|port| port.owner);
    let space = names_domain.and_then(|id| kernel.domain(id)).map(|record| &record.space);
    let mut names: BTreeMap<PortId, Vec<String>> = BTreeMap::new();
    for (name, port) in registered {
        if let Some(capability) = space.and_then(|space| space.lookup(port)) {
            names.entry(capability.port).or_default().push(name);
        }
    }
    let mut text = String::new();
    let _ = writeln!(text, "port owner             alive  pool free/total  server threads  waiting  served  names");
    let ids: Vec<_> = kernel.objects.port_ids().collect();
    for id in ids {
        let Some(port) = kernel.objects.port(id) else { continue };
        let (owner, alive, size, threads, waiting, served) =
            (port.owner, port.alive, port.pool_size, port.server_threads, port.waiting, port.calls_served());
        let free = kernel.objects.pool_free(id);
        let registered = names.get(&id).map(|names| names.join(",")).unwrap_or_default();
        let line = format!(
            "{:>4} {:<17} {:<5}  {:>5}/{:<5}       {:>5}          {:<7} {:>6}  {}",
            id.0,
            domain_name(kernel, owner),
            if alive { "yes" } else { "no" },
            free,
            size,
            threads,
            waiting,
            served,
            registered
        );
        let _ = writeln!(text, "{}", line.trim_end());
    }
    if !complete {
        let _ = writeln!(text, "(names: the name service did not answer, or not with all of them)");
    }
    text
}

/// `MEM`: frames and the kernel heap.
fn mem() -> String {
    let frames = crate::cpu::without_interrupts(|| {
        crate::memory::FRAMES.lock().as_ref().map(|frames| (frames.free_frames(), frames.total_frames()))
    });
    let (used, free) = crate::memory::heap_stats();
    let mut text = String::new();
    if let Some((free_frames, total)) = frames {
        let _ = writeln!(text, "frames: {free_frames} free of {total} (4 KiB each)");
    }
    let _ = writeln!(text, "kernel heap: {used} bytes used, {free} free");
    text
}

/// `MERGE`: the mode byte, then the domain's name. The kernel's own
/// objects (`kernel.*`) stay merged: protected, their code could not serve.
/// A registered program not yet made is made now (merged, its next jobs
/// run merged); a program taken out with no job running is freed.
fn merge(payload: &[u8]) -> Result<(), Error> {
    let (&mode, name) = payload.split_first().ok_or(Error::InvalidArgument)?;
    let mode = DomainMode::from_code(mode as usize).ok_or(Error::InvalidArgument)?;
    let name = core::str::from_utf8(name).map_err(|_| Error::InvalidArgument)?;
    if name.starts_with("kernel.") {
        return Err(Error::NoRight);
    }
    let program = name.starts_with(protocol::PROGRAM_PREFIX);
    let id = match crate::domains::find(name) {
        Some(id) => id,
        None if program && mode.is_merged() => program_domain(name)?,
        None if program && tern_inks::registry::find(name).is_some() => return Ok(()),
        None => return Err(Error::NoSuchPort),
    };
    crate::domains::set_mode(id, mode)?;
    if program {
        free_if_idle(id);
    }
    Ok(())
}

/// The jobs `kernel.system` started and has not yet reported ended: each
/// with its program's domain (a program's domain lives while it has one,
/// or while it is merged).
static JOBS: spin::Mutex<BTreeMap<ThreadId, DomainId>> = spin::Mutex::new(BTreeMap::new());

/// `body` with the jobs, interrupts masked: on one core nothing else runs
/// meanwhile, so the lock is never contended (a thread preempted holding
/// it, and a more urgent one spinning on it, would never make progress),
/// and what `body` checks and changes in the kernel's records (a free, a
/// job's thread) happens as one step.
fn with_jobs<R>(body: impl FnOnce(&mut BTreeMap<ThreadId, DomainId>) -> R) -> R {
    crate::cpu::without_interrupts(|| body(&mut JOBS.lock()))
}

/// The domain of registered program `name` (`prog.NAME`), made if it is not.
fn program_domain(name: &str) -> Result<DomainId, Error> {
    let spec = tern_inks::registry::find(name).ok_or(Error::NoSuchPort)?;
    match crate::domains::find(name) {
        Some(id) => Ok(id),
        // (No arena slot left is out of memory too: the arena is memory.)
        None => crate::domains::create(spec.name).map_err(|_| Error::OutOfMemory),
    }
}

/// Free program domain `id` (terminate it; its arena slot is reused by
/// the next domain made) if no job of it is left, it is protected, and
/// none of its activations is occupied. A merged program stays: someone
/// merged it for its next job.
fn free_if_idle(id: DomainId) {
    with_jobs(|jobs| {
        if jobs.values().any(|&domain| domain == id) {
            return;
        }
        state::with(|kernel| {
            let protected = kernel.domain(id).is_some_and(|record| record.alive && !record.mode.is_merged());
            let occupied = kernel.objects.activation_ids().any(|activation| {
                kernel
                    .objects
                    .activation(activation)
                    .is_some_and(|entry| entry.domain == id && entry.occupant.is_some())
            });
            if protected && !occupied {
                kernel.terminate_domain(id);
            }
        });
    });
}

/// `RUN`: the argument word, then the program's name.
fn run(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let argument = payload.get(..8).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes);
    let argument = argument.ok_or(Error::InvalidArgument)?;
    let name = core::str::from_utf8(&payload[8..]).map_err(|_| Error::InvalidArgument)?;
    if name.is_empty() || name.len() > 32 {
        return Err(Error::InvalidArgument);
    }
    let full = format!("{}{name}", protocol::PROGRAM_PREFIX);
    let spec = tern_inks::registry::find(&full).ok_or(Error::NoSuchPort)?;
    let domain = program_domain(&full)?;
    let entry = spec.entry as usize;
    // The job is recorded in the same step as its thread is made, so that
    // no free of its domain comes between. (A free between the domain's
    // making and this step leaves a dead domain, in which the kernel makes
    // no thread: OutOfMemory, as for no room.)
    let made = with_jobs(|jobs| {
        let made = state::with(|kernel| {
            let thread = kernel.create_thread(domain, entry, argument as usize, JOB_PRIORITY, JOB_STACK_BYTES)?;
            let base = kernel.objects.chain(thread).last().copied()?;
            Some((thread, base))
        });
        if let Some((thread, _)) = made {
            jobs.insert(thread, domain);
        }
        made
    });
    let Some((thread, base)) = made else {
        free_if_idle(domain);
        return Err(Error::OutOfMemory);
    };
    let mut bytes = Vec::with_capacity(8);
    bytes.extend_from_slice(&thread.0.get().to_le_bytes());
    bytes.extend_from_slice(&base.0.get().to_le_bytes());
    Ok(bytes)
}

/// The job a payload names: a thread `kernel.system` made.
fn job_of(payload: &[u8]) -> Result<ThreadId, Error> {
    let number = payload.get(..4).and_then(|bytes| bytes.try_into().ok()).map(u32::from_le_bytes);
    let thread = number.and_then(NonZeroU32::new).map(ThreadId).ok_or(Error::InvalidArgument)?;
    let system = crate::domains::find("kernel.system").ok_or(Error::NoSuchPort)?;
    state::with(|kernel| match kernel.objects.thread(thread) {
        None => Err(Error::InvalidArgument),
        Some(entry) if entry.creator != system => Err(Error::NoRight),
        Some(_) => Ok(thread),
    })
}

/// The thread that carries `job`'s base activation now (a split moves it).
fn carrier(kernel: &Kernel, job: ThreadId) -> ThreadId {
    let mut target = job;
    while let Some(next) = kernel.objects.thread(target).and_then(|entry| entry.base_moved_to) {
        target = next;
    }
    target
}

/// `WAIT`: running, stopped, or ended (then forgotten, and its program's
/// domain freed if that was its last job).
fn wait(job: ThreadId) -> Result<Vec<u8>, Error> {
    let (status, result) = state::with(|kernel| {
        let target = carrier(kernel, job);
        let entry = kernel.objects.thread(target);
        match entry.map(|entry| entry.state) {
            Some(ThreadState::Ended(result)) => {
                kernel.reap_joined(job);
                (protocol::ENDED, result as u64)
            }
            _ => {
                let base = kernel.objects.chain(target).last().copied();
                let stopped = base
                    .and_then(|base| kernel.objects.activation(base))
                    .is_some_and(|activation| activation.control.suspended);
                (if stopped { protocol::STOPPED } else { protocol::RUNNING }, 0)
            }
        }
    });
    if status == protocol::ENDED {
        let domain = with_jobs(|jobs| jobs.remove(&job));
        if let Some(domain) = domain {
            free_if_idle(domain);
        }
    }
    let mut bytes = Vec::with_capacity(9);
    bytes.push(status);
    bytes.extend_from_slice(&result.to_le_bytes());
    Ok(bytes)
}

/// A control on `job`'s base activation.
fn control(job: ThreadId, action: ActivationAction) -> Result<Vec<u8>, Error> {
    state::with(|kernel| {
        let target = carrier(kernel, job);
        let base = kernel.objects.chain(target).last().copied().ok_or(Error::NoSuchActivation)?;
        kernel.control_activation(base, action)
    })
    .map(|_| Vec::new())
}
