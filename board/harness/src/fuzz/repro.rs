//! Reproductions of the kernel bugs the fuzzer found: one scenario each,
//! `fuzz-bug-NAME` for the entry `NAME` of the fuzzer's
//! `KNOWN_KERNEL_BUGS`, deterministic (no randomness, no timing race), the
//! shortest call sequence that shows the bug.
//!
//! Each says what it does, and ends `PASS` when the kernel behaves as it
//! promises. Until the bug is fixed it does not: the run stops with a
//! kernel fault (exit status 3) or ends `FAIL`. They are not boot tests
//! yet for that reason; once a bug is fixed, its scenario belongs in
//! `tests/tests/boot.rs` (check: `checks::lines` with its PASS) and its
//! entry leaves `KNOWN_KERNEL_BUGS`.
//!
//! The domains they use: `fuzz.repro.server`, served by threads, whose
//! answer to label 1 comes after a sleep (and carries no right, so that
//! `ReplyReceive` may take its fast path); `fuzz.repro.lendee`, a pool
//! entered through the gate's dispatch trampoline whose handler answers
//! with the lent region the kernel handed it (x4/x5), touching nothing;
//! `fuzz.repro.client`, which makes the calls.

use super::nap;
use alloc::format;
use alloc::string::String;
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln, state, timer};
use tern_core::abi::{Call, Error, MessageHeader};
use tern_core::thread::ThreadState;
use tern_inks::gate;
use tern_inks::mode::DomainMode;
use tern_inks::service::{self, Reply, Request, Service};

tern_inks::domain!(SERVER, "fuzz.repro.server", server_main);
tern_inks::domain!(LENDEE, "fuzz.repro.lendee", lendee_main);
tern_inks::domain!(CLIENT, "fuzz.repro.client", client_main);

use crate::Verdict;

/// What the client does (its argument's bits 32 and up; the port name in
/// the low 32).
mod op {
    /// Call the port with label 1 (the server sleeps, then answers).
    pub const CALL_SLEEPER: usize = 1;
    /// Lend 0x40 bytes at 0xffff_ffff_ffff_fff0 (a range that wraps) to
    /// the port; return the call's status, and the lend the server saw.
    pub const LEND_WRAPPING: usize = 2;
}

/// The wrapping lend.
const WRAPPING_LEND: (usize, usize) = (0xffff_ffff_ffff_fff0, 0x40);

struct Sleeper;

impl Service for Sleeper {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        if request.label() == 1 {
            // About 50 ms: long enough for the scenario to act meanwhile.
            let _ = gate::sleep(3_000_000);
        }
        reply.set_label(0);
    }
}

fn server_main(_: usize) -> usize {
    let started = (|| {
        let port = gate::port_create()?;
        let sleeper: &'static Sleeper = alloc::boxed::Box::leak(alloc::boxed::Box::new(Sleeper));
        service::serve(sleeper, port, service::MODE_THREADS, 1, 1, service::DEFAULT_STACK_BYTES).map(|()| port as usize)
    })();
    started.unwrap_or(usize::MAX)
}

/// The lendee's context record: the dispatch trampoline calls the handler
/// its first word names.
#[repr(C)]
struct LendeeContext {
    handler: gate::DispatchHandler,
}

/// Answer with a header and, as payload, the lend the kernel handed over
/// (address, length word), little-endian; touch nothing else.
extern "C" fn lendee_handler(_: usize, _: usize, _: usize, reply: *mut u8, lent: usize, word: usize) -> usize {
    let mut message = [0u8; 32];
    MessageHeader::new(0, 16).write_to(&mut message);
    message[16..24].copy_from_slice(&(lent as u64).to_le_bytes());
    message[24..32].copy_from_slice(&(word as u64).to_le_bytes());
    // SAFETY: the trampoline hands the handler MESSAGE_MAX bytes of this
    // activation's stack for the reply.
    unsafe { core::ptr::copy_nonoverlapping(message.as_ptr(), reply, message.len()) };
    message.len()
}

fn lendee_main(_: usize) -> usize {
    let started = (|| -> Result<usize, Error> {
        let port = gate::port_create()?;
        let context: &'static LendeeContext =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(LendeeContext { handler: lendee_handler }));
        gate::raw_call(Call::ContextSet, context as *const LendeeContext as usize, 0, 0)?;
        gate::pool_add(port, 1, gate::dispatch_trampoline(), service::DEFAULT_STACK_BYTES)?;
        Ok(port as usize)
    })();
    started.unwrap_or(usize::MAX)
}

fn client_main(argument: usize) -> usize {
    let port = argument as u32;
    match argument >> 32 {
        op::CALL_SLEEPER => {
            let mut request = [0u8; MessageHeader::SIZE];
            MessageHeader::new(1, 0).write_to(&mut request);
            let mut reply = [0u8; 64];
            gate::call(port, &request, &mut reply).map_or_else(|error| error as usize, |_| 0)
        }
        op::LEND_WRAPPING => {
            let mut request = [0u8; MessageHeader::SIZE];
            MessageHeader::new(0, 0).write_to(&mut request);
            let mut reply = [0u8; 64];
            let request = (request.as_ptr() as usize, request.len());
            match gate::call_lending_raw(port, request, &mut reply, WRAPPING_LEND) {
                Err(error) => error as usize,
                Ok(_) => {
                    let word = |at: usize| u64::from_le_bytes(reply[at..at + 8].try_into().unwrap_or([0; 8]));
                    tern_inks::println!(
                        "[fuzz.repro.client] the lend was accepted; the server was handed {:#x}, length word {:#x}",
                        word(16),
                        word(24)
                    );
                    0
                }
            }
        }
        _ => usize::MAX,
    }
}

/// `switch-dead-client`: a client thread calls a server served by
/// threads; while the server thread handles it (asleep), the client's
/// domain is terminated (`DomainControl` terminate, as the kernel domain
/// may; a `Terminate` of the client's activation by another of its threads
/// does the same): the client thread keeps waiting for the reply with no
/// activation left. The server's `ReplyReceive` then takes its fast path,
/// which hands the processor to the client without looking at its top
/// activation: `fast_switch` loads activation 0 (null) and faults at EL1
/// reading its view (FAR 0x30). Correct: the client thread ends (the
/// general path's glue check), and the server serves on.
pub fn switch_dead_client() -> Verdict {
    let names = domains::create("names").map_err(|error| format!("names: {error:?}"))?;
    domains::call(names, 1).map_err(|error| format!("names: {error:?}"))?;
    let (server, port) = crate::start_server("fuzz.repro.server", 0)?;
    let client = domains::create("fuzz.repro.client").map_err(|error| format!("client: {error:?}"))?;
    let name = state::with(|kernel| kernel.grant_send_right(server, port, client)).ok_or("no right")?;
    let thread = state::with(|kernel| {
        let entry = client_main as fn(usize) -> usize as usize;
        kernel.create_thread(client, entry, name as usize | op::CALL_SLEEPER << 32, 5, 64 << 10)
    })
    .ok_or("could not start the client thread")?;
    let state_of = || state::with(|kernel| kernel.objects.thread(thread).map(|entry| entry.state));
    for _ in 0..100 {
        if state_of() == Some(ThreadState::WaitingForReply) {
            break;
        }
        nap(timer::frequency() / 1000);
    }
    kprintln!("fuzz-bug-switch-dead-client: the client waits for the server thread's reply: {:?}", state_of());
    let terminated = state::with(|kernel| kernel.domain_control(client, tern_core::control::DomainAction::Terminate));
    let top = state::with(|kernel| kernel.objects.thread(thread).map(|entry| entry.top));
    kprintln!(
        "fuzz-bug-switch-dead-client: client domain terminated ({terminated:?}); the client thread is {:?} with top activation {top:?}",
        state_of()
    );
    kprintln!("fuzz-bug-switch-dead-client: the server replies when its sleep ends (a kernel fault here is the bug)");
    nap(timer::frequency() / 5);
    let ended = matches!(state_of(), Some(ThreadState::Ended(_)));
    kprintln!("fuzz-bug-switch-dead-client: after the reply the client thread is {:?}", state_of());
    if ended { Ok(()) } else { Err(format!("the client thread is {:?}, not ended", state_of())) }
}

/// `lend-wraps`: a protected client lends 0x40 bytes at
/// 0xffff_ffff_ffff_fff0 — a range that wraps past the top of the address
/// space — to a merged server's pool. `tern_fast_call_lending` checks the
/// start against the client's region and `start + length` against its end
/// without an overflow check, so the lend passes and the server is handed
/// it as the client's memory (a merged server that used it would reach the
/// top of the address space and physical page 0 upward: on the Pi, the
/// firmware's page and the kernel image). Correct: `BadAddress`, as the
/// general path answers.
pub fn lend_wraps() -> Verdict {
    let names = domains::create("names").map_err(|error| format!("names: {error:?}"))?;
    domains::call(names, 1).map_err(|error| format!("names: {error:?}"))?;
    let (lendee, port) = crate::start_server("fuzz.repro.lendee", 0)?;
    domains::set_mode(lendee, DomainMode::Merged).map_err(|error| format!("merging the lendee: {error}"))?;
    let client = domains::create("fuzz.repro.client").map_err(|error| format!("client: {error:?}"))?;
    let name = state::with(|kernel| kernel.grant_send_right(lendee, port, client)).ok_or("no right")?;
    let outcome = domains::call(client, name as usize | op::LEND_WRAPPING << 32);
    let answer = match outcome {
        Ok(Outcome::Returned(0)) => String::from("accepted"),
        Ok(Outcome::Returned(code)) => {
            Error::from_code(code).map_or_else(|| format!("code {code}"), |error| format!("{error}"))
        }
        other => format!("{other:?}"),
    };
    kprintln!(
        "fuzz-bug-lend-wraps: a lend of {:#x} bytes at {:#x} (it wraps) to a merged server: {answer}",
        WRAPPING_LEND.1,
        WRAPPING_LEND.0
    );
    if answer == "BadAddress" { Ok(()) } else { Err(format!("the wrapping lend was {answer}, not BadAddress")) }
}

// ---------------------------------------------------------------------------
// Resource exhaustion and the alert handler's stack

tern_inks::domain!(EXHAUSTER, "fuzz.repro.exhauster", exhauster_main);

/// What the exhauster does (its argument's bits 32 and up).
mod exhaust {
    /// Make ports until the kernel refuses (low bits: at most this many).
    pub const PORTS: usize = 1;
    /// Split its own thread over and over (low bits: this many times).
    pub const SPLITS: usize = 2;
    /// Make a kernel call with SP = 128 while an alert handler is due.
    pub const LOW_STACK: usize = 3;
}

/// The pool entry of the splitter: break the caller's chain just above
/// the activation the request names (its base), then return (there is no
/// caller left: the split-off part ends).
extern "C" fn splitter_entry(request: usize, _: usize, _: usize, _: usize, _: usize, _: usize) -> ! {
    // SAFETY: the kernel put the request (a header and 8 bytes of payload,
    // checked by the caller's length) on this activation's stack.
    let base = unsafe { core::ptr::read_unaligned((request + MessageHeader::SIZE) as *const u64) };
    let _ = gate::alert_break(base as usize);
    gate::return_from_call(&[0u8; MessageHeader::SIZE])
}

extern "C" fn low_stack_handler(_: usize) -> ! {
    gate::alert_done()
}

fn exhauster_main(argument: usize) -> usize {
    let count = argument & 0xffff_ffff;
    match argument >> 32 {
        exhaust::PORTS => {
            for made in 0..count {
                if let Err(error) = gate::port_create() {
                    tern_inks::println!("[fuzz.repro.exhauster] port {made}: {error}");
                    return made;
                }
                if made % 10_000 == 0 {
                    tern_inks::println!("[fuzz.repro.exhauster] {made} ports made");
                }
            }
            count
        }
        exhaust::SPLITS => {
            let (Ok(port), Ok(me)) = (gate::port_create(), gate::activation_self()) else { return 0 };
            if gate::pool_add(port, 1, splitter_entry as *const () as usize, tern_core::abi::POOL_STACK_MIN).is_err() {
                return 0;
            }
            let mut request = [0u8; MessageHeader::SIZE + 8];
            MessageHeader::new(0, 8).write_to(&mut request);
            request[MessageHeader::SIZE..].copy_from_slice(&(me as u64).to_le_bytes());
            let mut reply = [0u8; 64];
            for split in 0..count {
                let answer = gate::call(port, &request, &mut reply);
                if answer != Err(Error::Interrupted) {
                    tern_inks::println!("[fuzz.repro.exhauster] split {split}: the call answered {answer:?}");
                    return split;
                }
                if split % 5_000 == 0 {
                    tern_inks::println!("[fuzz.repro.exhauster] {split} splits");
                }
            }
            count
        }
        exhaust::LOW_STACK => {
            let (Ok(_), Ok(me)) = (gate::alert_handler_set(low_stack_handler), gate::activation_self()) else {
                return 1;
            };
            // An alert held (alerts blocked) until the call below opens
            // alerts: the kernel delivers it at that call's end.
            let _ = gate::alerts_block(true);
            let _ = gate::alert(me);
            let status: usize;
            // SAFETY: for the one `svc` the stack pointer is 128 (nothing of
            // ours is on the stack across it; the kernel saves and restores
            // SP_EL0 and keeps x20); it is put back at once. If the kernel
            // upcalls the alert handler at SP - 256 it wraps, and the
            // handler's first store faults in this domain — contained.
            unsafe {
                core::arch::asm!(
                    "mov     x20, sp",
                    "mov     x9, #128",
                    "mov     sp, x9",
                    "svc     #0",
                    "mov     sp, x20",
                    inlateout("x0") 0usize => status,
                    in("x8") Call::AlertsBlock as usize,
                    out("x20") _,
                    clobber_abi("C"),
                );
            }
            status
        }
        _ => usize::MAX,
    }
}

/// Run the exhauster's `what` with `count` on a thread of its own (the
/// boot thread cannot be split), at priority 0 so that this boot thread
/// shares the processor; how it ended and the kernel heap afterwards.
fn exhaust(what: usize, count: usize) -> Result<(Option<usize>, usize), String> {
    let domain = domains::create("fuzz.repro.exhauster").map_err(|error| format!("exhauster: {error:?}"))?;
    let thread = state::with(|kernel| {
        let entry = exhauster_main as fn(usize) -> usize as usize;
        kernel.create_thread(domain, entry, count | what << 32, 0, 64 << 10)
    })
    .ok_or("could not start the exhauster")?;
    let (before, _) = tern_aarch64::memory::heap_stats();
    kprintln!("fuzz-bug: kernel heap in use before: {before} bytes");
    let result = tern_aarch64::threads::join(thread);
    let (after, free) = tern_aarch64::memory::heap_stats();
    kprintln!("fuzz-bug: kernel heap in use after: {after} bytes ({free} free)");
    Ok((result, after))
}

/// `port-flood`: a protected domain makes ports until the kernel refuses.
/// Ports are never freed and nothing limits how many a domain makes, so
/// the kernel heap (8 MiB) runs out and the kernel panics in its
/// allocator ("memory allocation failed"); each `PortCreate` also searches
/// the domain's names linearly, with interrupts masked. Correct: a limit,
/// or `OutOfMemory` before the heap is gone; the kernel carries on.
pub fn port_flood() -> Verdict {
    let (made, _) = exhaust(exhaust::PORTS, 200_000)?;
    kprintln!("fuzz-bug-port-flood: the domain made {made:?} ports and the kernel carries on");
    match made {
        Some(made) if made < 200_000 => Ok(()),
        other => Err(format!("{other:?} ports made, none refused")),
    }
}

/// `split-leak`: a protected domain splits its own thread over and over
/// (a call into its pool whose activation breaks the chain below it with
/// `AlertBreak`; the split-off part ends at once). Every split makes a
/// thread, and an ended thread's records are never freed, so the kernel
/// heap runs out and the kernel panics in its allocator. Correct: ended
/// threads freed (or splits refused `OutOfMemory`); the kernel carries on.
pub fn split_leak() -> Verdict {
    let (splits, heap) = exhaust(exhaust::SPLITS, 100_000)?;
    kprintln!("fuzz-bug-split-leak: {splits:?} splits; the kernel carries on with {heap} heap bytes in use");
    match splits {
        Some(100_000) if heap < 1 << 20 => Ok(()),
        other => Err(format!("{other:?} splits, {heap} heap bytes still in use")),
    }
}

/// `alert-low-stack`: a protected domain with an alert handler and an
/// alert held makes the call that opens alerts with its stack pointer at
/// 128. At that call's end the kernel delivers the alert on the domain's
/// stack "below where it was": `(sp - 256) & !15` underflows — a panic
/// ("attempt to subtract with overflow") in a debug kernel; a release one
/// wraps and the handler faults in the domain. Correct: no panic (refuse
/// or defer the delivery, or deliver and let the domain fault).
pub fn alert_low_stack() -> Verdict {
    let domain = domains::create("fuzz.repro.exhauster").map_err(|error| format!("exhauster: {error:?}"))?;
    let thread = state::with(|kernel| {
        let entry = exhauster_main as fn(usize) -> usize as usize;
        kernel.create_thread(domain, entry, exhaust::LOW_STACK << 32, 5, 64 << 10)
    })
    .ok_or("could not start the exhauster")?;
    let result = tern_aarch64::threads::join(thread);
    kprintln!("fuzz-bug-alert-low-stack: the domain's thread ended {result:?}; the kernel carries on");
    Ok(())
}
