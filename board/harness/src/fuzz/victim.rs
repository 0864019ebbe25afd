//! The fuzzer's victims: servers that misbehave on request.
//!
//! A victim serves one port, with a pool (`fuzz.victim.pool.*`) or with
//! server threads (`fuzz.victim.threads.*`), on the service runtime. What
//! it does with a request depends on the label's low byte:
//!
//! | label | what the victim does |
//! |---|---|
//! | 0 | answers at once, echoing the first bytes of the payload |
//! | 1 | yields one to four times, then answers |
//! | 2 | opens alerts and sleeps (the label's second byte × 10 000 counter ticks), answering with the sleep's outcome |
//! | 3 | faults (`udf`) in the middle of the call: the kernel terminates it, the client's call is aborted |
//! | 4 | (the pool victim) opens alerts and calls back on the right the request carries, with the same payload (a chain fuzzer → victim → fuzzer), answering with the outcome |
//! | 5 | spins (the second byte × 1000 iterations) so a tick may preempt it inside the call |
//! | other | answers with the label |
//!
//! So the fuzzer's threads are inside another domain while it alerts,
//! suspends, breaks and terminates them, and one call in a few thousand
//! kills the server under a client (once: a dead victim's port is dead).
//! One victim of each kind per fuzzer domain (the scenario starts them), so
//! the merged round has victims of its own.
//!
//! A test server of the harness, never in the production image; `unsafe`
//! only for the fault, which is its job.

use tern_core::abi::PortName;
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, Reply, Request, Service};

tern_inks::domain!(POOL_PROTECTED, "fuzz.victim.pool.protected", victim_main);
tern_inks::domain!(THREADS_PROTECTED, "fuzz.victim.threads.protected", victim_main);
tern_inks::domain!(POOL_MERGED, "fuzz.victim.pool.merged", victim_main);
tern_inks::domain!(THREADS_MERGED, "fuzz.victim.threads.merged", victim_main);

/// The victims' registered names for the protected or the merged fuzzer
/// domain (pool, threads).
pub fn names(merged: bool) -> [&'static str; 2] {
    if merged {
        ["fuzz.victim.pool.merged", "fuzz.victim.threads.merged"]
    } else {
        ["fuzz.victim.pool.protected", "fuzz.victim.threads.protected"]
    }
}

struct Victim {
    /// Its port, in its own space.
    port: PortName,
    /// Served by a pool (the caller's thread runs it): it calls back. A
    /// server thread does not, so that it never waits on the fuzzer.
    pool: bool,
}

impl Service for Victim {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let label = request.label();
        let parameter = (label >> 8) & 0xff;
        let answer = match label & 0xff {
            0 => {
                let _ = reply.set_payload(&request.payload[..request.payload.len().min(64)]);
                0
            }
            1 => {
                for _ in 0..=(parameter & 3) {
                    gate::yield_now();
                }
                0
            }
            2 => {
                let _ = gate::alerts_block(false);
                match gate::sleep(parameter as usize * 10_000) {
                    Ok(_) => 0,
                    Err(error) => error as u32,
                }
            }
            3 => {
                // SAFETY: none needed for the kernel — `udf` raises an
                // undefined-instruction fault in this domain's own code,
                // which the kernel contains (this victim is terminated, its
                // client's call aborted). That is this victim's purpose.
                unsafe { core::arch::asm!("udf #0x66", options(nomem, nostack)) };
                0
            }
            4 if self.pool => match request.right() {
                Some(right) => {
                    // Alerts open: the caller's alert ends a wait in it.
                    let _ = gate::alerts_block(false);
                    call_back(right, request.payload)
                }
                None => u32::MAX,
            },
            5 => {
                let mut spin = 0u32;
                for _ in 0..parameter * 1000 {
                    spin = core::hint::black_box(spin.wrapping_add(1));
                }
                spin & 1
            }
            _ => label,
        };
        reply.set_label(answer);
        if super::fuzzer::excluded("switch-dead-client") {
            // A reply carrying a right takes ReplyReceive's general path
            // (see the fuzzer's KNOWN_KERNEL_BUGS).
            reply.transfer(self.port);
        }
    }
}

/// Call `port` with `payload` (label 0); the reply's label or the error.
fn call_back(port: PortName, payload: &[u8]) -> u32 {
    let mut request = MessageBuffer::with_payload_capacity(payload.len());
    let mut answer = MessageBuffer::new();
    match request.set_payload(payload).and_then(|()| service::call(port, &request, &mut answer)) {
        Ok(view) => view.label(),
        Err(error) => 0x8000_0000 | error as u32,
    }
}

/// Serve a new port as `mode` says (the service runtime's mode bits), two
/// activations or two threads; returns the port's name.
fn victim_main(mode: usize) -> usize {
    let started = (|| {
        let port = gate::port_create()?;
        let victim: &'static Victim =
            alloc::boxed::Box::leak(alloc::boxed::Box::new(Victim { port, pool: mode & service::MODE_POOL != 0 }));
        service::serve(victim, port, mode, 2, 2, service::DEFAULT_STACK_BYTES).map(|()| port as usize)
    })();
    started.unwrap_or(usize::MAX)
}
