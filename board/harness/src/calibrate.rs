//! The `calibrate` scenario: what each crossing costs, in cycles, beyond
//! the instruction itself, for `cargo xtask bench --cost`.
//!
//! `cargo xtask bench` counts, per call, the instructions (PMU) and the
//! crossings: exceptions taken, `eret`s, TTBR0 writes, `isb`s, TLB
//! invalidations, DAIF writes (QEMU plugin). Its `--cost` option models
//! cycles as instructions + Σ count × cost, and has no built-in costs:
//! there are no public figures for the Cortex-A72. This scenario measures
//! them on the machine it runs on, with the cycle counter (PMCCNTR_EL0)
//! and INST_RETIRED (event counter 0) read around loops of 1000
//! iterations, each loop run 7 times and its smallest cycle count kept
//! (the runs least disturbed). The cost of an event is
//!
//! ```text
//! (cycles(loop with it) − cycles(same loop without it)
//!  − (instructions(with) − instructions(without))) / iterations
//! ```
//!
//! so that the loop's overhead and the instructions themselves are
//! subtracted (the model already charges one cycle per instruction).
//!
//! | cost | the loop's body, and its twin without the event |
//! |---|---|
//! | `isb` | `isb` / `nop` |
//! | `ttbr` | `msr ttbr0_el1` (its own value) + `isb` / `isb` |
//! | `tlbi` | `tlbi aside1` (the current ASID) + `dsb ish` / `nop` (the `dsb` the kernel always pairs with it is charged to the `tlbi`) |
//! | `daif` | `msr daif` (its own value) / `nop` |
//! | `eret` | an `eret` from EL1 to the next instruction at EL1 (ELR and SPSR set each time) / the same with a branch |
//! | `exception` | from a protected domain at EL0, `svc` of the Null kernel call (answered in the vector) / `nop`, minus one `eret` |
//!
//! At EL1 the loops run with interrupts masked; the EL0 loop cannot mask
//! them, and the smallest of its runs is the one without a tick. It prints
//! one `CALIBRATE` line per cost with the figures it came from, and then
//! `CALIBRATE-COST` in `--cost` syntax, rounded to whole cycles (a
//! negative difference, which noise can give, as 0).
//!
//! Under QEMU with `-icount shift=0` the cycle counter counts
//! instructions, so every cost reads 0: the scenario says so
//! (`CALIBRATE-NOTE`) when cycles and instructions differ by the same
//! amount in every loop. Without icount QEMU's cycles follow host time,
//! and the figures are noise. On a Pi 4 they are cycles.
//!
//! What it leaves out: an `eret` to EL0 (the one measured returns to EL1,
//! which may differ), TLB refills after the invalidation (the loop touches
//! few pages), and caches (every loop runs hot).

use core::arch::asm;

use tern_aarch64::{domains, kprintln};
use tern_core::abi::Call;

tern_inks::domain!(CLIENT, "calibrate.client", client_main);

/// Iterations of each loop.
const ITERATIONS: u64 = 1000;
/// Runs of each loop.
const RUNS: usize = 7;

/// Cycles and instructions of one loop (the smallest cycle count of
/// [`RUNS`] runs, and the instructions of that run).
#[derive(Clone, Copy)]
struct Loop {
    cycles: u64,
    instructions: u64,
}

/// Runs `body` [`RUNS`] times, keeps the run with the fewest cycles.
fn smallest(mut body: impl FnMut() -> Loop) -> Loop {
    (0..RUNS).map(|_| body()).min_by_key(|run| run.cycles).expect("RUNS > 0")
}

/// Defines a loop of `ITERATIONS` × `$body` between reads of both counters.
macro_rules! timed_loop {
    ($($body:literal),+ ; $($operands:tt)*) => {{
        let (cycles0, cycles1, instructions0, instructions1): (u64, u64, u64, u64);
        // SAFETY: the body is one of this module's loops: it writes only
        // the system registers it names, with the values they held (or,
        // for ELR/SPSR, a return to the next instruction at the current
        // level), and the registers declared here.
        unsafe {
            asm!(
                "mrs {c0}, pmccntr_el0",
                "mrs {i0}, pmevcntr0_el0",
                "2:",
                $($body,)+
                "subs {n}, {n}, #1",
                "b.ne 2b",
                "mrs {i1}, pmevcntr0_el0",
                "mrs {c1}, pmccntr_el0",
                c0 = out(reg) cycles0,
                i0 = out(reg) instructions0,
                i1 = out(reg) instructions1,
                c1 = out(reg) cycles1,
                n = inout(reg) ITERATIONS => _,
                $($operands)*
            );
        }
        Loop { cycles: cycles1 - cycles0, instructions: instructions1 - instructions0 }
    }};
}

/// The extra cycles per iteration of `with` over `without`, in hundredths.
fn extra(with: Loop, without: Loop) -> i64 {
    let cycles = with.cycles as i64 - without.cycles as i64;
    let instructions = with.instructions as i64 - without.instructions as i64;
    (cycles - instructions) * 100 / ITERATIONS as i64
}

/// The client's loops: `svc` of the Null call, and the same with `nop`.
/// Returns the extra cycles of a round trip in hundredths, offset by
/// 2^31 so that a negative figure survives the return value.
fn client_main(_: usize) -> usize {
    let null = Call::Null as u64;
    let with = smallest(|| timed_loop!("svc #0"; inout("x8") null => _, out("x0") _, out("x1") _));
    let without = smallest(|| timed_loop!("nop";));
    (extra(with, without) + (1 << 31)) as usize
}

/// Hundredths as a decimal.
struct Hundredths(i64);

impl core::fmt::Display for Hundredths {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.unsigned_abs() / 100, self.0.unsigned_abs() % 100)
    }
}

/// The `calibrate` scenario.
pub fn run() -> crate::Verdict {
    tern_aarch64::pmu::enable();
    let (daif, ttbr0): (u64, u64);
    // SAFETY: reads of DAIF and TTBR0_EL1, then every interrupt masked
    // until the EL1 loops are done (restored below).
    unsafe {
        asm!("mrs {}, daif", "mrs {}, ttbr0_el1", "msr daifset, #0xf", out(reg) daif, out(reg) ttbr0, options(nostack));
    }
    let masked = 0x3c0u64;
    let asid = ttbr0 & (0xffff << 48);
    let nop = smallest(|| timed_loop!("nop";));
    let isb = smallest(|| timed_loop!("isb";));
    let ttbr = smallest(|| timed_loop!("msr ttbr0_el1, {t}", "isb"; t = in(reg) ttbr0));
    let tlbi = smallest(|| timed_loop!("tlbi aside1, {a}", "dsb ish"; a = in(reg) asid));
    let daif_write = smallest(|| timed_loop!("msr daif, {d}"; d = in(reg) masked));
    // EL1h (M = 0b0101) with every interrupt masked, as now; NZCV is set
    // again by the loop's `subs`.
    let spsr = masked | 0b0101;
    let eret = smallest(
        || timed_loop!("adr {x}, 3f", "msr elr_el1, {x}", "msr spsr_el1, {s}", "eret", "3:"; x = out(reg) _, s = in(reg) spsr),
    );
    let branch = smallest(
        || timed_loop!("adr {x}, 3f", "msr elr_el1, {x}", "msr spsr_el1, {s}", "b 3f", "3:"; x = out(reg) _, s = in(reg) spsr),
    );
    // SAFETY: DAIF back to what it was.
    unsafe { asm!("msr daif, {}", in(reg) daif, options(nostack)) };

    let client = domains::create("calibrate.client").map_err(|error| alloc::format!("calibrate.client: {error:?}"))?;
    let round_trip = match domains::call(client, 0) {
        Ok(tern_aarch64::upcall::Outcome::Returned(value)) => value as i64 - (1 << 31),
        other => return Err(alloc::format!("the client failed: {other:?}")),
    };
    let costs = [
        ("exception", round_trip - extra(eret, branch), "svc round trip from EL0 minus one eret"),
        ("eret", extra(eret, branch), "eret EL1 -> EL1"),
        ("ttbr", extra(ttbr, isb), "msr ttbr0_el1 + isb, minus isb"),
        ("isb", extra(isb, nop), "isb"),
        ("tlbi", extra(tlbi, nop), "tlbi aside1 + dsb ish"),
        ("daif", extra(daif_write, nop), "msr daif"),
    ];
    let loops = [nop, isb, ttbr, tlbi, daif_write, eret, branch];
    // The reads of the two counters are nested, so the cycles of a loop
    // include two instructions more than its instruction count: an
    // emulator counting instructions as cycles shows the same difference
    // in every loop.
    let emulated =
        loops.iter().all(|l| l.cycles.wrapping_sub(l.instructions) == nop.cycles.wrapping_sub(nop.instructions));
    kprintln!("CALIBRATE-BEGIN board={} iterations={ITERATIONS} runs={RUNS}", tern_aarch64::kernel::board_name());
    for (name, hundredths, what) in costs {
        kprintln!("CALIBRATE cost={name} cycles={} measured=\"{what}\"", Hundredths(hundredths));
    }
    let mut line = alloc::string::String::new();
    for (index, (name, hundredths, _)) in costs.iter().enumerate() {
        let rounded = (hundredths.max(&0) + 50) / 100;
        line.push_str(&alloc::format!("{}{name}={rounded}", if index > 0 { "," } else { "" }));
    }
    kprintln!("CALIBRATE-COST {line}");
    if emulated {
        kprintln!(
            "CALIBRATE-NOTE cycles equal instructions retired in every loop: this is an emulator (QEMU -icount), \
             and these figures are not cycles; run it on a Raspberry Pi 4"
        );
    }
    kprintln!("CALIBRATE-END");
    Ok(())
}
