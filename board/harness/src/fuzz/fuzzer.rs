//! The fuzzer domain: raw kernel calls with arbitrary registers, from
//! several threads and nested activations at once.
//!
//! `fuzz.protected` (and `fuzz.merged`, the same code merged into the
//! kernel domain) makes kernel calls with call numbers 0..=46 (and a few
//! huge ones) and arguments biased toward the values that break kernels:
//! 0, 1, -1, boundaries of its own region, of the image, of the arena;
//! kernel data, another domain's region, the arena's kernel alias,
//! wrapping ranges, huge lengths, misaligned addresses; and the numbers it
//! learns at run time — ports it made, activations it saw (`ActivationSelf`,
//! `Activations`), threads it made. Calls come from:
//!
//! - the **main loop** (slot 0) and three **workers** (slots 1-3), threads
//!   the scenario makes; the main loop avoids calls it can tell would
//!   block, the workers make them now and then (a worker that received a
//!   request replies to it with `ReplyReceive`, workers call the ports
//!   others receive on), and run above the main loop so that a worker
//!   woken runs at once;
//! - **nested loops**: a call on a port of its own with a pool runs a short
//!   loop in the pool activation (entered directly, or through the gate's
//!   dispatch trampoline, which also exercises the merged call paths), so
//!   chains grow several activations deep — also through the victim
//!   servers, which call back on a right the request carries;
//! - **children** (threads its `ThreadCreate` calls make): return at once,
//!   yield, block in receive or sleep, exit, or run a short loop;
//! - **puppets**: threads in a three-instruction assembly loop (sleep
//!   forever) whose registers `SetState` may rewrite at will;
//! - **alert handlers** and **sidetrack upcalls**, which make a few calls
//!   of their own before they end;
//! - now and then, any of these calls with an odd stack pointer (0, 128,
//!   kernel data, another domain's region...: a protected domain's SP is
//!   its own business).
//!
//! The main loop opens with two pools of its own (one entered through the
//! gate's dispatch trampoline, with a sidetrack): their stacks are too
//! large for the carving ration below to grant often.
//!
//! A **watchdog** thread (priority 31) keeps the run moving: every timer
//! tick it looks at each slot's progress; a slot that stalls gets every
//! activation of the domain resumed and its top alerted, then its stuck top
//! activation terminated, and as a last resort its base; a slot whose
//! thread died (an `Exit`, a termination) gets a new thread.
//!
//! **What the fuzzer keeps to, and why** (the domain must survive its own
//! calls for the run to go on; none of this narrows what the kernel is
//! asked to check, only what a domain would do to itself):
//!
//! - every buffer the kernel may write lies in the scratch buffer's write
//!   area, the unused top of the region, outside the region, straddles an
//!   edge of it, or is empty — never over its own stacks, heap or mode
//!   word (for a claim that starts inside the region, its first
//!   [`WRITE_PREFIX`] bytes: some calls check only what they write);
//! - every entry address (`PoolAdd`, `ThreadCreate`, `SidetrackSet`,
//!   `AlertHandler`) is one of its own functions or one the kernel must
//!   refuse (outside the image) — a thread started at a random place in
//!   the image would only kill the domain;
//! - `ThreadCreate`'s argument fits the entry it starts; `ContextSet` sets
//!   the block's address (the dispatch trampoline follows the context
//!   word);
//! - `SetState` rewrites only puppets (checked by a `GetState` first:
//!   their PC must lie in the puppet's loop); every other `SetState` names
//!   a buffer the kernel must refuse;
//! - the watchdog's activation is never a target; terminating, suspending
//!   or splicing out a slot's base is redrawn nearly always (its thread
//!   would end), the caller's own or a nested activation most of the time
//!   (it would mostly stall the loop for the watchdog to undo); the main
//!   loop suspends only puppets, and keeps alerts open on its activation;
//! - stack carving (`PoolAdd`, `ThreadCreate`, `SidetrackSet`) is rationed
//!   over the run, keeping 1.5 MiB of the region for new slot threads;
//! - the patterns of [`KNOWN_KERNEL_BUGS`] are left out, each as its entry
//!   says (`PortCreate` stops at [`PORTS_MAX`] ports, splitting calls at
//!   [`SPLITS_MAX`], ...);
//! - writable lends to `echo` (which reverses them in place) come from the
//!   write area;
//! - merged (kernel-domain) only: `DomainMode` and `DomainControl` name the
//!   victims, the fuzzer itself (`DomainMode`; `DomainControl` resume only)
//!   or numbers naming no domain — a merged domain is trusted with the
//!   whole system, and stopping `names` or `echo` would only end the run;
//!   odd stack pointers are protected only (a merged domain's gate finds
//!   its mode word through SP).
//!
//! Results are counted in the shared block (by result and by call), the
//! last calls kept in a ring, and a few rules the kernel promises are
//! checked on every result (the **oracle**): an unknown number is
//! `NoSuchCall` and a known one never is; a call that succeeded had every
//! buffer it used inside the caller's memory (the bytes it actually read
//! or wrote); `WhoAmI`, `Null`, `TestAlert`, `Sleep` and friends answer
//! what they must; a protected domain never gets `DomainMode` or
//! `DomainControl`. A violation is printed as `FUZZ-ORACLE` and fails the
//! scenario.
//!
//! Sequences are deterministic for a seed up to the interleaving of
//! threads, which depends on timer interrupts (QEMU's clock follows the
//! host's); `tern.fuzz.trace=1` prints every call.

use super::shared::{
    CALL_KINDS, KNOWN, MAGIC, PUPPETS, RING, SLOTS, Shared, call_kind, call_name, port, result_kind, slot_state,
};
use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
use tern_core::abi::{Call, Error, LEND_MAX, LEND_WRITABLE, MESSAGE_MAX, MessageHeader, PORT_IDEMPOTENT, STATE_BYTES};
use tern_core::board::{ARENA_ALIAS_OFFSET, DOMAIN_REGION, REGION_STACKS_OFFSET};
use tern_inks::gate;

tern_inks::domain!(FUZZ_PROTECTED, "fuzz.protected", fuzzer_main);
tern_inks::domain!(FUZZ_PROTECTED_2, "fuzz.protected.2", fuzzer_main);
tern_inks::domain!(FUZZ_PROTECTED_3, "fuzz.protected.3", fuzzer_main);
tern_inks::domain!(FUZZ_PROTECTED_4, "fuzz.protected.4", fuzzer_main);
tern_inks::domain!(FUZZ_MERGED, "fuzz.merged", fuzzer_main);
tern_inks::domain!(FUZZ_MERGED_2, "fuzz.merged.2", fuzzer_main);
tern_inks::domain!(FUZZ_MERGED_3, "fuzz.merged.3", fuzzer_main);

/// The fuzzer domains a round uses in turn: the region's stacks are never
/// given back, and once one domain's are used up (some two million calls)
/// the round goes on in the next. The arena (16 domains) has room for
/// these besides the servers and the victims.
pub fn instance_names(merged: bool) -> &'static [&'static str] {
    if merged {
        &["fuzz.merged", "fuzz.merged.2", "fuzz.merged.3"]
    } else {
        &["fuzz.protected", "fuzz.protected.2", "fuzz.protected.3", "fuzz.protected.4"]
    }
}

/// A kernel bug the fuzzer found, and the call pattern left out until it
/// is fixed (see `docs/fuzz.md`, which has a reproduction of each).
#[derive(Clone, Copy, Debug)]
pub struct KnownBug {
    /// A short name (also the reproduction scenario's, `fuzz-bug-NAME`).
    pub name: &'static str,
    /// What goes wrong, and what the fuzzer leaves out meanwhile.
    pub what: &'static str,
}

/// Call patterns left out because they take the kernel down: remove an
/// entry once its bug is fixed, and the fuzzer makes those calls again.
pub const KNOWN_KERNEL_BUGS: &[KnownBug] = &[
    // None now. The five the fuzzer found (switch-dead-client, port-flood,
    // split-leak, alert-low-stack, lend-wraps: `docs/fuzz.md`) are fixed;
    // their reproductions are boot tests.
];

/// Whether the fuzzer leaves out the pattern of known bug `name`.
pub fn excluded(name: &str) -> bool {
    KNOWN_KERNEL_BUGS.iter().any(|bug| bug.name == name)
}

/// The setup upcall's argument: build the shared block, return its address.
pub const SETUP: usize = 0x5e7;

/// The most ports one fuzzer domain makes (see [`KNOWN_KERNEL_BUGS`]):
/// enough for every kind of port the fuzzer uses.
pub const PORTS_MAX: u64 = 512;
/// The most successful `Terminate` and `AlertBreak` calls one fuzzer
/// domain makes (see [`KNOWN_KERNEL_BUGS`]: each split leaks a thread's
/// records): enough for several million calls.
pub const SPLITS_MAX: u64 = 4_000;
/// Bytes of the scratch buffer.
pub const SCRATCH_BYTES: usize = 192 << 10;
/// Where requests are built, in the scratch buffer.
const REQUEST_AREA: (u64, u64) = (0, 48 << 10);
/// Where the kernel's writes land.
const WRITE_AREA: (u64, u64) = (48 << 10, 96 << 10);
/// How much of a claim the kernel may write, at most, whatever length is
/// claimed (a reply, a request received: one message).
const WRITE_PREFIX: u64 = 64 << 10;
/// Dots, for console writes.
const TEXT_AREA: (u64, u64) = (144 << 10, 4 << 10);
/// Where a puppet's registers are read into and written from.
const SNAPSHOT_AREA: u64 = 148 << 10;
/// The stack of a slot's thread (the scenario's and the watchdog's).
pub const SLOT_STACK: u64 = 32 << 10;
/// The watchdog's stack.
pub const WATCHDOG_STACK: u64 = 32 << 10;
/// Region bytes kept for slot threads the watchdog makes.
const RESPAWN_RESERVE: u64 = 3 << 19;
/// The main loop's priority (the watchdog's is 31).
pub const MAIN_PRIORITY: u8 = 10;
/// The workers' priority: above the main loop, so that a worker that is
/// woken (or broken out of a wait) runs at once; they block often, and the
/// main loop runs between.
pub const WORKER_PRIORITY: u8 = 11;

/// The priority of slot `slot`'s thread.
pub const fn slot_priority(slot: usize) -> u8 {
    if slot == 0 { MAIN_PRIORITY } else { WORKER_PRIORITY }
}
/// How deep nested loops go (a request deeper than this runs no loop).
const MAX_DEPTH: u64 = 4;
/// The payload that tells a nested loop who called it: a magic word.
const REQUEST_MAGIC: u32 = 0x7a7a_f00d;
/// A child thread's argument carries this in bits 48-63.
const CHILD_MAGIC: u64 = 0xc41d;

// ---------------------------------------------------------------------------
// The kernel call itself

/// Make kernel call `number` with x0-x7 as given, through the gate's own
/// sequence (`tern_inks::gate::raw_registers`): the status and value
/// registers. The kernel touches the fuzzer's memory only through the
/// buffers it names, which it checks — and the fuzzer names only buffers
/// whose writing cannot hurt it (see the module's notes).
#[inline(always)]
fn raw(number: u64, registers: &[u64; 8]) -> (u64, u64) {
    let (status, value) = tern_inks::gate::raw_registers(number as usize, registers.map(|register| register as usize));
    (status as u64, value as u64)
}

/// [`raw`] with the stack pointer at `stack` for the `svc` (a protected
/// domain only: a merged one's gate finds its mode word through SP).
#[inline(always)]
fn raw_with_stack(number: u64, registers: &[u64; 8], stack: u64) -> (u64, u64) {
    let status: u64;
    let value: u64;
    // SAFETY: for the one `svc` the stack pointer holds `stack`; nothing
    // of ours is addressed through it meanwhile (no Rust code runs until
    // it is put back from x20, which the kernel keeps across the call).
    // An interrupt from EL0 lands on the kernel's stack, not ours. The
    // call made first switched our alert handler off, so the kernel
    // upcalls nothing on the odd stack; the rest is as in `raw`.
    unsafe {
        core::arch::asm!(
            "mov     x20, sp",
            "mov     sp, {stack}",
            "svc     #0",
            "mov     sp, x20",
            stack = in(reg) stack,
            inlateout("x0") registers[0] => status,
            inlateout("x1") registers[1] => value,
            in("x2") registers[2],
            in("x3") registers[3],
            in("x4") registers[4],
            in("x5") registers[5],
            in("x6") registers[6],
            in("x7") registers[7],
            in("x8") number,
            out("x20") _,
            clobber_abi("C"),
        );
    }
    (status, value)
}

/// A kernel call the fuzzer's machinery makes (not counted, not traced).
#[inline(always)]
fn quiet(call: Call, x0: u64, x1: u64, x2: u64, x3: u64) -> Result<u64, Error> {
    let (status, value) = raw(call as u64, &[x0, x1, x2, x3, 0, 0, 0, 0]);
    if status == 0 { Ok(value) } else { Err(Error::from_code(status as usize).unwrap_or(Error::NoSuchCall)) }
}

// ---------------------------------------------------------------------------
// Randomness

/// SplitMix64's finaliser: a well-mixed 64-bit function of `z`.
pub const fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64: a tiny PRNG, one word of state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number below `bound` (0 for a bound of 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.word()) * u128::from(bound)) >> 64) as u64
    }

    /// True once in `times` on average.
    pub fn one_in(&mut self, times: u64) -> bool {
        self.below(times) == 0
    }

    /// True with `percent` per cent.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------
// Where things are

/// The start of the region the current stack lies in.
#[inline(always)]
fn region_base() -> u64 {
    let stack: u64;
    // SAFETY: reading SP has no side effects.
    unsafe { core::arch::asm!("mov {}, sp", out(reg) stack, options(nomem, nostack, preserves_flags)) };
    stack & !(DOMAIN_REGION - 1)
}

/// Where the scenario leaves the shared block's address: the last word of
/// the region (the top of the domain's main stack, unused once the setup
/// upcall is over; the fuzzer never lets the kernel write there).
pub const SHARED_POINTER_OFFSET: u64 = DOMAIN_REGION - 8;

/// The shared block at `address`, if it is one of this domain's.
fn shared_at(address: u64) -> Option<&'static Shared> {
    let base = region_base();
    let size = core::mem::size_of::<Shared>() as u64;
    if address < base + 64 || address + size > base + REGION_STACKS_OFFSET || !address.is_multiple_of(64) {
        return None;
    }
    // SAFETY: the address lies in this domain's heap part of its region
    // (mapped for us), aligned; the block is read through atomics and
    // plain words written once before any thread used it. The magic word
    // says the setup upcall built it (anything else there would be heap
    // memory of ours, which we only read).
    let shared = unsafe { &*(address as *const Shared) };
    // SAFETY: as above, a plain aligned read of our own memory.
    let magic = unsafe { core::ptr::read_volatile(&raw const shared.magic) };
    (magic == MAGIC).then_some(shared)
}

/// The shared block, found through the word the scenario left at the end
/// of the region.
fn shared_from_region() -> Option<&'static Shared> {
    let word = region_base() + SHARED_POINTER_OFFSET;
    // SAFETY: the last word of our own region, mapped for us in either
    // mode; a plain aligned read.
    shared_at(unsafe { core::ptr::read_volatile(word as *const u64) })
}

fn read_u32(address: u64) -> u32 {
    // SAFETY: only called on addresses in our scratch buffer (checked by
    // the callers; any alignment): our memory; the kernel may have written
    // it for any of our threads, and a torn value is just another number
    // to the fuzzer.
    unsafe { core::ptr::read_unaligned(address as *const u32) }
}

fn write_bytes(address: u64, bytes: &[u8]) {
    // SAFETY: only called on ranges in our scratch buffer (checked by the
    // callers), which nothing but the fuzzer and the kernel (on its
    // behalf) writes; concurrent writers only make the contents random.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), address as *mut u8, bytes.len()) }
}

// ---------------------------------------------------------------------------
// Entries

/// The domain's entry: the scenario's setup upcall builds the shared block
/// and the scratch buffer on this domain's heap and returns the block's
/// address (0 if there is no memory).
fn fuzzer_main(argument: usize) -> usize {
    if argument != SETUP {
        return 0;
    }
    let Ok(scratch_layout) = core::alloc::Layout::from_size_align(SCRATCH_BYTES, 4096) else { return 0 };
    // SAFETY: non-zero sizes; the blocks come from this domain's heap
    // (the image's allocator picks it by our stack pointer) and are never
    // freed: they live as long as the domain.
    let (scratch, block) = unsafe {
        (
            alloc::alloc::alloc_zeroed(scratch_layout),
            alloc::alloc::alloc_zeroed(core::alloc::Layout::new::<Shared>()).cast::<Shared>(),
        )
    };
    if scratch.is_null() || block.is_null() {
        return 0;
    }
    let text = scratch as u64 + TEXT_AREA.0;
    // SAFETY: the text area lies inside the scratch block just allocated.
    unsafe { core::ptr::write_bytes(text as *mut u8, b'.', TEXT_AREA.1 as usize) };
    // SAFETY: a zeroed block is a valid `Shared` (integers and atomics);
    // nothing else refers to it yet.
    unsafe {
        (*block).handler = dispatch_handler as *const () as usize;
        (*block).scratch = scratch as u64;
        (*block).scratch_length = SCRATCH_BYTES as u64;
        (*block).magic = MAGIC;
    }
    let _ = quiet(Call::ContextSet, block as u64, 0, 0, 0);
    block as usize
}

/// A slot thread's argument: the block's address with the slot in the low
/// bits (the block is 64-byte aligned).
pub const fn slot_argument(shared: u64, slot: usize) -> usize {
    (shared | slot as u64) as usize
}

/// The main loop and the workers: a slot's thread.
pub fn slot_entry(argument: usize) -> usize {
    let slot = argument & 63;
    let Some(shared) = shared_at(argument as u64 & !63) else { return 1 };
    if slot >= SLOTS {
        return 1;
    }
    let me = quiet(Call::ActivationSelf, 0, 0, 0, 0).unwrap_or(0) as u32;
    let record = &shared.slots[slot];
    record.base.store(me, Relaxed);
    record.top.store(me, Relaxed);
    record.state.store(slot_state::RUNNING, Relaxed);
    let _ = quiet(Call::ContextSet, shared as *const Shared as u64, 0, 0, 0);
    let kind = if slot == 0 { Kind::Main } else { Kind::Worker };
    let seed = shared.config.seed ^ mix(slot as u64 + 1) ^ record.lives.load(Relaxed).wrapping_mul(0x51);
    let who = Who { slot: Some(slot), depth: 0, kind, activation: me };
    if slot == 0 && shared.opened.swap(1, Relaxed) == 0 {
        opening(shared, who);
    }
    run_loop(shared, who, &mut Rng::new(seed), u64::MAX);
    if record.state.load(Relaxed) == slot_state::RUNNING {
        record.state.store(slot_state::FINISHED, Relaxed);
    }
    0
}

/// The main loop's opening, before the random calls: two ports with pools
/// of the fuzzer's own — one entered through the gate's dispatch
/// trampoline (its stacks are too large for the ration to grant often),
/// with a sidetrack, one entered directly — so that nested loops, the
/// dispatch paths and sidetracks are there from the start. Made and
/// counted like any call.
fn opening(shared: &Shared, who: Who) {
    let trampoline = gate::dispatch_trampoline() as u64;
    let direct = pool_entry as *const () as u64;
    let sidetrack = sidetrack_entry as *const () as u64;
    for (entry, count, stack) in [(trampoline, 2, 96 << 10), (direct, 3, (20 << 10) as u64)] {
        if !shared.take_budget() {
            return;
        }
        let (status, port) =
            make(shared, who, &Plan { number: Call::PortCreate as u64, registers: [0; 8], special: Special::None });
        if status != 0 || !shared.take_budget() {
            return;
        }
        let registers = [port, count, entry, stack, 0, 0, 0, 0];
        let _ = make(shared, who, &Plan { number: Call::PoolAdd as u64, registers, special: Special::None });
        if entry == trampoline && shared.take_budget() {
            let registers = [port, sidetrack, 16 << 10, 0, 0, 0, 0, 0];
            let _ = make(shared, who, &Plan { number: Call::SidetrackSet as u64, registers, special: Special::None });
        }
    }
}

/// The watchdog (see the module's notes).
pub fn watchdog_entry(argument: usize) -> usize {
    let Some(shared) = shared_at(argument as u64) else { return 1 };
    let me = quiet(Call::ActivationSelf, 0, 0, 0, 0).unwrap_or(0) as u32;
    shared.watchdog.store(me, Relaxed);
    let tick = (shared.config.frequency / 100).max(1);
    let mut last = [u64::MAX; SLOTS];
    let mut stalled = [0u64; SLOTS];
    let mut rng = Rng::new(shared.config.seed ^ 0xd09);
    let (mut last_total, mut domain_stalled) = (u64::MAX, 0u64);
    loop {
        let _ = quiet(Call::Sleep, tick, 0, 0, 0);
        if shared.remaining.load(Relaxed) == 0 {
            continue;
        }
        // Whether any loop at all made a call since the last tick: a worker
        // waiting for a rendezvous is only ended when nothing moves.
        let total = shared.attempted.load(Relaxed);
        domain_stalled = if total == last_total { domain_stalled + 1 } else { 0 };
        last_total = total;
        for slot in 0..SLOTS {
            let record = &shared.slots[slot];
            match record.state.load(Relaxed) {
                slot_state::DEAD => {
                    respawn(shared, slot);
                    last[slot] = u64::MAX;
                    stalled[slot] = 0;
                    continue;
                }
                slot_state::RUNNING => {}
                _ => continue,
            }
            let current = record.current.load(Relaxed);
            shared.samples[usize::from(slot != 0)][call_kind(current & !(1 << 63))].fetch_add(1, Relaxed);
            let progress = record.progress.load(Relaxed);
            if progress != last[slot] {
                last[slot] = progress;
                stalled[slot] = 0;
                continue;
            }
            stalled[slot] += 1;
            // The main loop avoids blocking calls: a stall there is worth
            // acting on sooner than one in a worker, which blocks on purpose.
            let patience = 1;
            if stalled[slot].is_multiple_of(patience) {
                let level = stalled[slot] / patience;
                // A worker may wait for a rendezvous for a while: its base
                // goes only after half a second, or when nothing moves.
                let level =
                    if slot != 0 && level >= 11 && domain_stalled < 11 && level % 50 != 47 { 10 } else { level };
                unstick(shared, slot, level, me, &mut rng);
            }
        }
    }
}

/// Act on `slot`, stalled for `level` rounds (see the module's notes).
fn unstick(shared: &Shared, slot: usize, level: u64, me: u32, rng: &mut Rng) {
    let record = &shared.slots[slot];
    let (base, top) = (record.base.load(Relaxed), record.top.load(Relaxed));
    match level {
        2 => {
            let current = record.current.load(Relaxed);
            shared.stalls[usize::from(slot != 0)][call_kind(current & !(1 << 63))].fetch_add(1, Relaxed);
            shared.interventions[0].fetch_add(1, Relaxed);
            let area = shared.scratch + SNAPSHOT_AREA + 1024;
            let count = quiet(Call::Activations, shared.config.domain, area, 1024, 0).unwrap_or(0).min(256);
            for index in 0..count {
                let activation = read_u32(area + index * 4);
                if activation != me {
                    let _ = quiet(Call::Resume, u64::from(activation), 0, 0, 0);
                }
            }
            if shared.config.merged != 0 {
                for victim in shared.config.victims {
                    let _ = quiet(Call::DomainControl, victim, 1, 0, 0);
                }
            }
            shared.interventions[1].fetch_add(1, Relaxed);
            let _ = quiet(Call::Alert, u64::from(top), 0, 0, 0);
        }
        5 | 8 if top != base && top != me => {
            shared.interventions[2].fetch_add(1, Relaxed);
            let _ = quiet(Call::Terminate, u64::from(top), 0, 0, 0);
        }
        11.. if level % 3 == 2 && base != me => {
            // Last resort: the slot's thread goes, the watchdog makes another.
            shared.interventions[3].fetch_add(1, Relaxed);
            let current = record.current.load(Relaxed);
            shared.kills[usize::from(slot != 0)][call_kind(current & !(1 << 63))].fetch_add(1, Relaxed);
            record.state.store(slot_state::DEAD, Relaxed);
            if quiet(Call::Terminate, u64::from(base), 0, 0, 0).is_err() && rng.one_in(4) {
                let _ = quiet(Call::AlertBreak, u64::from(base), 0, 0, 0);
            }
        }
        _ => {}
    }
}

/// Make a new thread for dead `slot`, if the region has room.
fn respawn(shared: &Shared, slot: usize) {
    let record = &shared.slots[slot];
    record.lives.fetch_add(1, Relaxed);
    // The old numbers may name other activations by now.
    record.base.store(0, Relaxed);
    record.top.store(0, Relaxed);
    let argument = slot_argument(shared as *const Shared as u64, slot) as u64;
    let entry = slot_entry as fn(usize) -> usize as usize as u64;
    match quiet(Call::ThreadCreate, entry, argument, u64::from(slot_priority(slot)), SLOT_STACK) {
        Ok(_) => {
            record.state.store(slot_state::RUNNING, Relaxed);
            shared.interventions[4].fetch_add(1, Relaxed);
        }
        Err(_) => record.state.store(slot_state::GIVEN_UP, Relaxed),
    }
}

/// Where a call on one of the fuzzer's own ports enters (a pool it made
/// with this entry): x0/x1 the request on this activation's stack, x2 the
/// context word, x4/x5 a lent region. Runs a nested loop, then returns a
/// reply (sometimes a bad one).
extern "C" fn pool_entry(request: usize, length: usize, context: usize, _: usize, _: usize, _: usize) -> ! {
    let reply = match shared_at(context as u64).or_else(shared_from_region) {
        Some(shared) => {
            shared.loops[1].fetch_add(1, Relaxed);
            let area = shared.scratch + REQUEST_AREA.0 + (40 << 10);
            match nested(shared, request as u64, length as u64, Kind::Nested) {
                Reply::Good(length) => {
                    write_bytes(area, &[0u8; MessageHeader::SIZE]);
                    (area, length)
                }
                Reply::Bad(address, length) => (address.unwrap_or(area), length),
            }
        }
        None => (0, 0),
    };
    loop {
        let _ = raw(Call::Return as u64, &[reply.0, reply.1, 0, 0, 0, 0, 0, 0]);
    }
}

/// The handler the gate's dispatch trampoline calls (for pools made with
/// that entry): a nested loop, then the length of the reply it wrote into
/// the trampoline's reply area (sometimes a length the kernel must refuse).
extern "C" fn dispatch_handler(
    request: usize,
    length: usize,
    context: usize,
    reply: *mut u8,
    _: usize,
    _: usize,
) -> usize {
    // SAFETY: the trampoline (or the kernel's merged call path) hands us
    // MESSAGE_MAX bytes of this activation's stack for the reply; a header
    // with no right goes at its start.
    unsafe { core::ptr::write_bytes(reply, 0, MessageHeader::SIZE) };
    let Some(shared) = shared_at(context as u64) else { return MessageHeader::SIZE };
    shared.loops[4].fetch_add(1, Relaxed);
    match nested(shared, request as u64, length as u64, Kind::Dispatch) {
        Reply::Good(length) => length as usize,
        Reply::Bad(_, length) => length as usize,
    }
}

/// Where the sidetrack upcall enters: x0 the port (the kernel's number),
/// x1 the free activations, x2 the context word. A few calls, then
/// `Return` (the client's call is then made again).
extern "C" fn sidetrack_entry(_: usize, _: usize, context: usize) -> ! {
    if let Some(shared) = shared_at(context as u64) {
        shared.loops[3].fetch_add(1, Relaxed);
        let seed = shared.next_seed();
        let me = quiet(Call::ActivationSelf, 0, 0, 0, 0).unwrap_or(0) as u32;
        let mut rng = Rng::new(seed);
        let calls = rng.below(4);
        run_loop(
            shared,
            Who { slot: None, depth: MAX_DEPTH as u32, kind: Kind::Sidetrack, activation: me },
            &mut rng,
            calls,
        );
    }
    loop {
        let _ = raw(Call::Return as u64, &[0; 8]);
    }
}

/// The alert handler the fuzzer asks for: a few calls, then `AlertDone`.
extern "C" fn alert_handler(activation: usize) -> ! {
    if let Some(shared) = shared_from_region() {
        shared.loops[2].fetch_add(1, Relaxed);
        let mut rng = Rng::new(shared.next_seed());
        let calls = rng.below(3);
        // The slot whose loop the alert interrupted, if it was one.
        let slot = shared.slots.iter().position(|slot| {
            slot.top.load(Relaxed) == activation as u32 || slot.base.load(Relaxed) == activation as u32
        });
        let who = Who { slot, depth: MAX_DEPTH as u32, kind: Kind::Handler, activation: activation as u32 };
        run_loop(shared, who, &mut rng, calls);
    }
    loop {
        let _ = raw(Call::AlertDone as u64, &[0; 8]);
    }
}

/// What a child thread does (its argument's bits 40-43).
mod child {
    // 0: return at once (any kind not listed below).
    /// Yield a few times, then return.
    pub const YIELD: u64 = 1;
    /// Wait in receive on a port nobody calls.
    pub const RECEIVE: u64 = 2;
    /// Sleep for a tenth of a second.
    pub const SLEEP: u64 = 3;
    /// Run a short fuzzing loop.
    pub const FUZZ: u64 = 4;
    /// End its upcall with `Exit`.
    pub const EXIT: u64 = 5;
    /// How many kinds.
    pub const KINDS: u64 = 6;
}

/// A child's argument: its kind and stack (KiB), and the shared block's
/// offset in the region.
const fn child_argument(kind: u64, stack_kib: u64, shared_offset: u64) -> u64 {
    CHILD_MAGIC << 48 | kind << 40 | (stack_kib & 0xffff) << 24 | (shared_offset & 0xff_ffff)
}

/// A thread the fuzzer's `ThreadCreate` made (see [`child`]).
fn child_entry(argument: usize) -> usize {
    let argument = argument as u64;
    if argument >> 48 != CHILD_MAGIC {
        return argument as usize;
    }
    let kind = (argument >> 40) & 0xff;
    let stack_kib = (argument >> 24) & 0xffff;
    let Some(shared) = shared_at(region_base() + (argument & 0xff_ffff)) else { return 2 };
    shared.loops[5].fetch_add(1, Relaxed);
    match kind {
        child::YIELD => {
            for _ in 0..=(argument & 3) {
                let _ = quiet(Call::Yield, 0, 0, 0, 0);
            }
            0
        }
        child::RECEIVE => {
            let Ok(port) = quiet(Call::PortCreate, 0, 0, 0, 0) else { return 3 };
            let area = shared.scratch + WRITE_AREA.0;
            quiet(Call::Receive, port, area, 256, 0).map_or_else(|error| error as usize, |_| 0)
        }
        child::SLEEP => quiet(Call::Sleep, shared.config.frequency / 10, 0, 0, 0).map_or_else(|e| e as usize, |_| 0),
        child::FUZZ if stack_kib >= 32 => {
            let me = quiet(Call::ActivationSelf, 0, 0, 0, 0).unwrap_or(0) as u32;
            let mut rng = Rng::new(shared.next_seed());
            let calls = rng.below(32);
            run_loop(shared, Who { slot: None, depth: 1, kind: Kind::Child, activation: me }, &mut rng, calls);
            0
        }
        child::EXIT => {
            let _ = quiet(Call::Exit, argument & 0xff, 0, 0, 0);
            4
        }
        _ => 0,
    }
}

// The puppet: stores its activation's number where its argument points,
// then sleeps forever without using its stack, so `SetState` may rewrite
// every register but the PC and SP.
core::arch::global_asm!(
    ".section .text.tern_fuzz_puppet, \"ax\"",
    ".global tern_fuzz_puppet",
    ".global tern_fuzz_puppet_loop",
    ".global tern_fuzz_puppet_end",
    ".balign 4",
    "tern_fuzz_puppet:",
    "    mov     x20, x0",
    "    mov     x8, #{activation_self}",
    "    svc     #0",
    "    str     w1, [x20]",
    "tern_fuzz_puppet_loop:",
    "    mov     x0, #0x10000",
    "    mov     x8, #{sleep}",
    "    svc     #0",
    "    b       tern_fuzz_puppet_loop",
    "tern_fuzz_puppet_end:",
    activation_self = const Call::ActivationSelf as usize,
    sleep = const Call::Sleep as usize,
);

unsafe extern "C" {
    fn tern_fuzz_puppet();
    fn tern_fuzz_puppet_loop();
    fn tern_fuzz_puppet_end();
}

/// Where a puppet's PC is once it is in its loop (from then on, no
/// register but PC holds anything it needs).
fn puppet_range() -> (u64, u64) {
    (tern_fuzz_puppet_loop as *const () as u64, tern_fuzz_puppet_end as *const () as u64)
}

/// The reply a nested loop ends with.
enum Reply {
    /// A good reply of this length (a header with no right, then
    /// whatever the buffer holds).
    Good(u64),
    /// One the kernel must refuse: at this address (`None`: the usual
    /// buffer), this long.
    Bad(Option<u64>, u64),
}

/// A nested loop in a pool activation, for the request at `request`
/// (`length` bytes), and the reply to end it with.
fn nested(shared: &Shared, request: u64, length: u64, kind: Kind) -> Reply {
    let me = quiet(Call::ActivationSelf, 0, 0, 0, 0).unwrap_or(0) as u32;
    let header = MessageHeader::SIZE as u64;
    // SAFETY: the kernel put `length` bytes of request at `request` on
    // this activation's stack (our memory); read only when the length
    // covers what is read.
    let word = |at: u64| unsafe { core::ptr::read_unaligned((request + at) as *const u64) };
    let (slot, depth, seed) = if length >= header + 16 && word(header) as u32 == REQUEST_MAGIC {
        let about = word(header) >> 32;
        let slot = (about & 0xff) as usize;
        (if slot < SLOTS { Some(slot) } else { None }, (about >> 8) & 0xff, word(header + 8))
    } else {
        (None, MAX_DEPTH, shared.next_seed())
    };
    let previous = slot.map(|slot| shared.slots[slot].top.swap(me, Relaxed));
    let mut rng = Rng::new(seed);
    if depth < MAX_DEPTH {
        let calls = rng.below(8);
        run_loop(shared, Who { slot, depth: depth as u32, kind, activation: me }, &mut rng, calls);
    }
    if let (Some(slot), Some(previous)) = (slot, previous) {
        shared.slots[slot].top.store(previous, Relaxed);
    }
    // A good reply mostly; sometimes one the kernel must refuse (the
    // client then gets the error).
    match rng.below(16) {
        0 => Reply::Bad(None, 8),
        1 => Reply::Bad(Some(shared.config.kernel_data), 16),
        2 => Reply::Bad(None, MESSAGE_MAX as u64 + 1),
        3 => Reply::Bad(Some(u64::MAX - 7), 16),
        4 => Reply::Bad(None, 0),
        5 => Reply::Bad(None, u64::MAX),
        _ => Reply::Good(header + rng.below(64)),
    }
}

// ---------------------------------------------------------------------------
// The loop

/// Which kind of loop makes a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Main,
    Worker,
    Nested,
    Dispatch,
    Child,
    Sidetrack,
    Handler,
}

/// Who makes a call.
#[derive(Clone, Copy, Debug)]
struct Who {
    /// The slot of the thread the loop runs on, when known.
    slot: Option<usize>,
    /// How deep in nested calls.
    depth: u32,
    kind: Kind,
    /// The calling activation.
    activation: u32,
}

impl Who {
    /// Whether this loop may make calls that block for long: workers and
    /// children may (something else will wake or break them); the main
    /// loop, and whatever runs on its thread or on a thread it cannot know,
    /// mostly avoid them.
    fn may_block(&self) -> bool {
        match self.kind {
            Kind::Child => true,
            Kind::Sidetrack | Kind::Handler => false,
            _ => self.slot.is_some_and(|slot| slot > 0),
        }
    }

    fn word(&self) -> u64 {
        self.slot.map_or(0xff, |slot| slot as u64)
            | u64::from(self.depth) << 8
            | (self.kind as u64) << 16
            | u64::from(self.activation) << 32
    }
}

/// Make up to `calls` calls from `who` (fewer once the budget is spent).
fn run_loop(shared: &Shared, who: Who, rng: &mut Rng, calls: u64) {
    shared.loops[0].fetch_add(1, Relaxed);
    let mut state = LoopState::default();
    for _ in 0..calls {
        if !shared.take_budget() {
            break;
        }
        if let Some(slot) = who.slot {
            shared.slots[slot].progress.fetch_add(1, Relaxed);
            shared.slots[slot].top.store(who.activation, Relaxed);
        }
        let may_block = who.may_block() && rng.percent(15);
        let plan = Generator { shared, who, rng: &mut *rng, may_block, state: &mut state }.plan();
        match plan.special {
            Special::PuppetState(target) => puppet_state(shared, who, rng, target),
            Special::OddStack(_) => {
                // No handler to deliver an alert to at the odd SP: the
                // kernel would run it there (the domain's stack pointer is
                // its own business), and it would fault — in the fuzzer,
                // which would end its round. (Before the alert-low-stack
                // fix, a debug kernel panicked instead.)
                let off = Plan { number: Call::AlertHandler as u64, registers: [0; 8], special: Special::None };
                let _ = make(shared, who, &off);
                if shared.take_budget() {
                    let _ = make(shared, who, &plan);
                }
            }
            _ => {
                let (status, _) = make(shared, who, &plan);
                follow(shared, &mut state, &plan, status);
            }
        }
    }
}

/// What a call's outcome means for the loop's next calls.
fn follow(shared: &Shared, state: &mut LoopState, plan: &Plan, status: u64) {
    match Call::from_number(plan.number as usize) {
        Some(Call::Receive) if status == 0 => state.serving = Some(plan.registers[0]),
        Some(Call::ReplyReceive) if status == 0 => state.serving = Some(plan.registers[2]),
        Some(Call::ReplyReceive) if status == Error::NotInCall as u64 => state.serving = None,
        Some(Call::Receive | Call::ReplyReceive) => {}
        _ => return,
    }
    let _ = shared;
}

/// A planned call.
#[derive(Clone, Copy, Debug)]
struct Plan {
    number: u64,
    registers: [u64; 8],
    special: Special,
}

/// What a plan needs beyond the call itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    /// The call may end this slot's thread: mark it dead first (undone if
    /// the call comes back refused).
    Ends(usize),
    /// Read a puppet's registers, then write them back changed.
    PuppetState(u64),
    /// Make the call with this stack pointer (protected only).
    OddStack(u64),
}

/// Make `plan`'s call, record it, learn from it and check it: its status
/// and value.
fn make(shared: &Shared, who: Who, plan: &Plan) -> (u64, u64) {
    let sequence = shared.attempted.fetch_add(1, Relaxed) + 1;
    shared.made[call_kind(plan.number)].fetch_add(1, Relaxed);
    let entry = &shared.ring[(shared.ring_next.fetch_add(1, Relaxed) % RING as u64) as usize];
    entry.status.store(u64::MAX, Relaxed);
    entry.sequence.store(sequence, Relaxed);
    entry.who.store(who.word(), Relaxed);
    entry.number.store(plan.number, Relaxed);
    for (slot, value) in entry.arguments.iter().zip(plan.registers) {
        slot.store(value, Relaxed);
    }
    if shared.config.trace != 0 {
        let r = &plan.registers;
        tern_inks::println!(
            "FUZZ-TRACE #{} who={:#x} {}({}) x0={:#x} x1={:#x} x2={:#x} x3={:#x} x4={:#x} x5={:#x} x6={:#x}",
            sequence,
            who.word(),
            call_name(call_kind(plan.number)),
            plan.number,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6]
        );
    }
    if let Special::Ends(slot) = plan.special {
        shared.slots[slot].state.store(slot_state::DEAD, Relaxed);
        shared.deaths[0][call_kind(plan.number)].fetch_add(1, Relaxed);
    }
    if let Some(slot) = who.slot {
        shared.slots[slot].current.store(plan.number | u64::from(who.depth != 0) << 63, Relaxed);
    }
    let (status, value) = match plan.special {
        Special::OddStack(stack) => raw_with_stack(plan.number, &plan.registers, stack),
        _ => raw(plan.number, &plan.registers),
    };
    if entry.sequence.load(Relaxed) == sequence {
        entry.status.store(status, Relaxed);
        entry.value.store(value, Relaxed);
    }
    if let Special::Ends(slot) = plan.special
        && status != 0
        && shared.slots[slot].state.load(Relaxed) == slot_state::DEAD
    {
        shared.slots[slot].state.store(slot_state::RUNNING, Relaxed);
        shared.deaths[0][call_kind(plan.number)].fetch_sub(1, Relaxed);
    }
    shared.results[result_kind(status)].fetch_add(1, Relaxed);
    if status == 0 {
        shared.succeeded[call_kind(plan.number)].fetch_add(1, Relaxed);
    }
    if shared.config.trace != 0 {
        tern_inks::println!("FUZZ-TRACE #{} -> {:#x} {:#x}", sequence, status, value);
    }
    learn(shared, plan, status, value);
    if let Some(rule) = oracle(shared, plan, status, value) {
        let count = shared.violations.fetch_add(1, Relaxed);
        if count < 20 {
            let r = &plan.registers;
            tern_inks::println!(
                "FUZZ-ORACLE #{} {}({}) x0={:#x} x1={:#x} x2={:#x} x3={:#x} x4={:#x} x5={:#x} x6={:#x} -> {:#x} {:#x}: {}",
                sequence,
                call_name(call_kind(plan.number)),
                plan.number,
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                status,
                value,
                rule
            );
        }
    }
    (status, value)
}

/// Rewrite a puppet's registers: read them (`GetState`), and if the PC is
/// in the puppet's loop, write them back with x0-x30 and the flags made up.
fn puppet_state(shared: &Shared, who: Who, rng: &mut Rng, target: u64) {
    let snapshot = shared.scratch + SNAPSHOT_AREA;
    let get = Plan {
        number: Call::GetState as u64,
        registers: [target, snapshot, STATE_BYTES as u64, rng.word(), rng.word(), 0, 0, 0],
        special: Special::None,
    };
    let _ = make(shared, who, &get);
    let pc = u64::from(read_u32(snapshot + 32 * 8)) | u64::from(read_u32(snapshot + 32 * 8 + 4)) << 32;
    let (start, end) = puppet_range();
    if !(start..end).contains(&pc) || !shared.take_budget() {
        return;
    }
    let mut state = LoopState::default();
    for index in 0..31 {
        let value = Generator { shared, who, rng: &mut *rng, may_block: false, state: &mut state }.any();
        write_bytes(snapshot + index * 8, &value.to_le_bytes());
    }
    write_bytes(snapshot + 33 * 8, &rng.word().to_le_bytes());
    let set = Plan {
        number: Call::SetState as u64,
        registers: [target, snapshot, STATE_BYTES as u64, rng.word(), 0, 0, 0, 0],
        special: Special::None,
    };
    let _ = make(shared, who, &set);
}

// ---------------------------------------------------------------------------
// What the fuzzer learns

fn remember(table: &[AtomicU32], value: u32, rng_word: u64) {
    if value != 0 {
        table[(rng_word % table.len() as u64) as usize].store(value, Relaxed);
    }
}

fn learn(shared: &Shared, plan: &Plan, status: u64, value: u64) {
    let r = &plan.registers;
    let salt = mix(value ^ shared.attempted.load(Relaxed));
    if status != 0 {
        return;
    }
    match Call::from_number(plan.number as usize) {
        Some(Call::PortCreate) => {
            shared.ports_made.fetch_add(1, Relaxed);
            remember(&shared.known_ports, value as u32 | 1 << 31, salt);
        }
        Some(Call::PoolAdd) => {
            shared.carved.fetch_add(r[1] * r[3].next_multiple_of(16), Relaxed);
            if r[2] == gate::dispatch_trampoline() as u64 {
                shared.trampoline_pools.fetch_add(1, Relaxed);
            }
            remember(&shared.pooled_ports, r[0] as u32, salt);
        }
        Some(Call::ThreadCreate) => {
            shared.carved.fetch_add(r[3].next_multiple_of(16), Relaxed);
            let quick = (r[1] >> 48 == CHILD_MAGIC && matches!((r[1] >> 40) & 0xff, 0 | 1 | 5)) as u32;
            remember(&shared.known_threads, value as u32 | quick << 31, salt);
        }
        Some(Call::SidetrackSet) => {
            shared.carved.fetch_add(r[2].next_multiple_of(16), Relaxed);
        }
        Some(Call::ActivationSelf) => remember(&shared.known_activations, value as u32, salt),
        Some(Call::Activations) if r[0] == shared.config.domain => {
            let written = value.min(r[2] / 4).min(64);
            if in_scratch(shared, r[1], written * 4) {
                for index in 0..written {
                    let activation = read_u32(r[1] + index * 4);
                    if activation != shared.watchdog.load(Relaxed) {
                        remember(&shared.known_activations, activation, mix(salt + index));
                    }
                }
            }
        }
        Some(Call::Receive) if value >= 16 && in_scratch(shared, r[1], 8) => {
            let right = read_u32(r[1] + 4);
            remember(&shared.known_ports, right, salt);
        }
        Some(Call::Terminate | Call::AlertBreak) if status == 0 => {
            shared.splitting.fetch_add(1, Relaxed);
            forget_base(shared, r[0], call_kind(plan.number), plan.number == Call::Terminate as u64);
        }
        Some(Call::SpliceOut) => forget_base(shared, r[0], call_kind(plan.number), true),
        _ => {}
    }
}

/// A `Terminate` or `SpliceOut` (`ends`) of `target` succeeded: if it was
/// a slot's base, that slot's thread is gone (or going).
fn forget_base(shared: &Shared, target: u64, kind: usize, ends: bool) {
    if !ends {
        return;
    }
    for record in &shared.slots {
        if u64::from(record.base.load(Relaxed)) == target
            && record.state.swap(slot_state::DEAD, Relaxed) == slot_state::RUNNING
        {
            shared.deaths[1][kind].fetch_add(1, Relaxed);
        }
    }
}

fn in_scratch(shared: &Shared, address: u64, length: u64) -> bool {
    address >= shared.scratch
        && address.checked_add(length).is_some_and(|end| end <= shared.scratch + shared.scratch_length)
}

// ---------------------------------------------------------------------------
// The oracle

/// The rule a call's result broke, if any (see the module's notes).
fn oracle(shared: &Shared, plan: &Plan, status: u64, value: u64) -> Option<&'static str> {
    let config = &shared.config;
    let r = &plan.registers;
    let known = Call::from_number(plan.number as usize).is_some();
    if !known {
        return (status != Error::NoSuchCall as u64).then_some("an unknown call number was not refused NoSuchCall");
    }
    if status == Error::NoSuchCall as u64 {
        return Some("a known call number was refused NoSuchCall");
    }
    let merged = config.merged != 0;
    let call = Call::from_number(plan.number as usize)?;
    let kernel_domain_call =
        matches!(call, Call::DomainMode | Call::DomainControl | Call::SetQuota | Call::DomainRestart);
    if !merged && kernel_domain_call && status != Error::NoRight as u64 {
        return Some("a protected domain was not refused NoRight for a kernel-domain call");
    }
    if call == Call::ConsoleRead && status != Error::Forbidden as u64 {
        return Some("a domain without the console role was not refused Forbidden for ConsoleRead");
    }
    if status != 0 {
        return None;
    }
    let within = |start: u64, end: u64, address: u64, length: u64| {
        length == 0 || address.checked_add(length).is_some_and(|last| address >= start && last <= end)
    };
    let writable = |address: u64, length: u64| within(config.region_start, config.region_end, address, length);
    let readable = |address: u64, length: u64| {
        writable(address, length) || within(config.image_start, config.read_only_end, address, length)
    };
    let in_image = |entry: u64| (config.image_start..config.read_only_end).contains(&entry);
    let stack_ok = |bytes: u64| (4096..=(4 << 20)).contains(&bytes);
    let broken = match call {
        Call::ConsoleWrite => !readable(r[0], r[1]) || r[1] > 4096 || value != r[1],
        Call::WhoAmI => value != config.domain,
        // Whoever called into the fuzzer: itself, or a victim calling back.
        Call::Caller => value != config.domain && !config.victims.contains(&value),
        Call::Version => !writable(r[0], value) || r[1] < value,
        Call::Call | Call::CallLending => {
            let lent = r[6] & !(LEND_WRITABLE as u64);
            let lend_bad = call == Call::CallLending
                && (lent == 0 || lent > LEND_MAX as u64 || (!merged && !writable(r[5], lent)));
            !readable(r[1], r[2])
                || !writable(r[3], r[4])
                || !(16..=MESSAGE_MAX as u64).contains(&r[2])
                || value > r[4]
                || value < 16
                || lend_bad
        }
        Call::PoolAdd => !(1..=64).contains(&r[1]) || !stack_ok(r[3]) || !in_image(r[2]),
        Call::ThreadCreate => r[2] > 31 || !stack_ok(r[3]) || !in_image(r[0]),
        Call::Receive => !writable(r[1], r[2]) || value > r[2],
        Call::ReplyReceive => !writable(r[3], r[4]) || value > r[4],
        Call::SidetrackSet => !stack_ok(r[2]) || !in_image(r[1]),
        Call::Null | Call::Sleep => value != 0,
        Call::AlertsBlock => r[0] > 1 || value > 1,
        Call::TestAlert => value > 1,
        Call::ActivationSelf => value == 0,
        Call::GetState => !writable(r[1], STATE_BYTES as u64) || r[2] < STATE_BYTES as u64,
        Call::SetState => !readable(r[1], STATE_BYTES as u64) || r[2] < STATE_BYTES as u64,
        Call::SetPriority => r[1] > 31 || value > 31,
        Call::ThreadInfo => !writable(r[1], value * 8) || value * 8 > r[2],
        Call::Activations => !writable(r[1], value.min(r[2] / 4) * 4),
        Call::AlertHandler => r[0] != 0 && !in_image(r[0]),
        Call::DomainControl => r[1] > 2,
        Call::PortCreate => r[0] & !(PORT_IDEMPOTENT as u64) != 0,
        Call::SetQuota => r[1] > 3 || r[2] > u64::from(u32::MAX),
        Call::DomainRestart => r[1] > 2 || r[2] > u64::from(u32::MAX),
        _ => false,
    };
    broken.then_some("a call succeeded with an argument the kernel must refuse")
}

// ---------------------------------------------------------------------------
// Making up calls

struct Generator<'a> {
    shared: &'a Shared,
    who: Who,
    rng: &'a mut Rng,
    /// This call may be one that blocks (decided per call: a loop that
    /// may block does so now and then, not all the time).
    may_block: bool,
    /// What the loop is in the middle of.
    state: &'a mut LoopState,
}

/// What a loop is in the middle of: the stateful sequences.
#[derive(Clone, Copy, Debug, Default)]
struct LoopState {
    /// A port this loop's thread received a request on (it serves a
    /// client until it replies).
    serving: Option<u64>,
}

/// Lengths worth trying.
const LENGTHS: [u64; 24] = [
    0,
    1,
    7,
    8,
    15,
    16,
    17,
    64,
    100,
    271,
    272,
    273,
    4095,
    4096,
    4097,
    MESSAGE_MAX as u64 - 1,
    MESSAGE_MAX as u64,
    MESSAGE_MAX as u64 + 1,
    LEND_MAX as u64,
    LEND_MAX as u64 + 1,
    8 << 20,
    1 << 32,
    u64::MAX,
    u64::MAX / 2,
];

impl Generator<'_> {
    fn config(&self) -> &super::shared::Config {
        &self.shared.config
    }

    /// A value of any kind, biased to boundaries and known numbers.
    fn any(&mut self) -> u64 {
        match self.rng.below(12) {
            0 => self.rng.pick(&[0, 1, 2, 3, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1]),
            1 => self.rng.pick(&[u32::MAX as u64, 1 << 32, (1 << 32) + 1, 0xffff, 0x1_0000, 255, 256]),
            2 => self.rng.below(64),
            3 => self.rng.below(1 << 16),
            4 => self.rng.word(),
            5 | 6 => self.address(),
            7 => self.length(),
            8 => self.known_activation(),
            9 => self.known_port(),
            10 => self.known_thread(),
            _ => self.rng.below(32),
        }
    }

    fn length(&mut self) -> u64 {
        if self.rng.percent(25) { self.rng.below(512) } else { self.rng.pick(&LENGTHS) }
    }

    /// An address of any kind.
    fn address(&mut self) -> u64 {
        let config = *self.config();
        let (start, end) = (config.region_start, config.region_end);
        let scratch = self.shared.scratch;
        match self.rng.below(20) {
            0..=4 => scratch + self.rng.below(self.shared.scratch_length) + self.rng.pick(&[0, 0, 0, 1, 3, 7]),
            5 => self.rng.pick(&[start, start + 1, start - 1, start + 8, start + 64]),
            6 => self.rng.pick(&[end, end - 1, end - 8, end - 16, end + 1, end - 4096]),
            7 => start + self.rng.below(DOMAIN_REGION),
            8 => self.rng.pick(&[
                config.image_start,
                config.image_start - 1,
                config.text_end - 4,
                config.text_end,
                config.read_only_end - 1,
                config.read_only_end,
                config.read_only_end - 16,
            ]),
            9 => config.image_start + self.rng.below(config.read_only_end - config.image_start),
            10 => self.rng.pick(&[config.kernel_data, config.kernel_heap, config.kernel_data + 0x1000]),
            11 => self.rng.pick(&[config.other_region, config.other_region + 0x1000, config.other_region - 1]),
            12 => start + ARENA_ALIAS_OFFSET + self.rng.below(DOMAIN_REGION),
            13 => self.rng.pick(&[0, 8, 0x1000, 0x0900_0000, config.arena_end, config.arena_end - 1]),
            14 => self.rng.pick(&[u64::MAX, u64::MAX - 7, u64::MAX - 15, 1 << 63, 1 << 48, 0xffff_0000_0000_0000]),
            15 => self.rng.pick(&[1 << 39, (1 << 39) - 8, 0x8000_0000, 0xdead_0000]),
            16 => tern_fuzz_puppet as *const () as u64,
            _ => scratch + WRITE_AREA.0 + self.rng.below(WRITE_AREA.1),
        }
    }

    /// A claim the kernel may read: anything (the kernel checks it).
    fn read_claim(&mut self) -> (u64, u64) {
        let address = self.address();
        let length =
            if self.rng.percent(10) { (u64::MAX - address).wrapping_add(1 + self.rng.below(3)) } else { self.length() };
        (address, length)
    }

    /// A claim the kernel may write, kept off the fuzzer's own memory (see
    /// the module's notes).
    fn write_claim(&mut self) -> (u64, u64) {
        let (address, length) = if self.rng.percent(55) {
            let length = if self.rng.percent(60) {
                self.rng.pick(&[16, 64, 256, 272, 1024, 4096, MESSAGE_MAX as u64])
            } else {
                self.length()
            };
            let room = WRITE_AREA.1.saturating_sub(length.min(WRITE_AREA.1));
            (self.shared.scratch + WRITE_AREA.0 + self.rng.below(room + 1), length)
        } else {
            self.read_claim()
        };
        self.safe_write(address, length)
    }

    /// `(address, length)`, or a stand-in in the write area if the kernel
    /// could accept it and write over the fuzzer's own memory.
    ///
    /// Calls that write a prefix of the claim (`Version`, `GetState`,
    /// `ThreadInfo`, `Activations`) check only that prefix, so the length
    /// claimed says little: a claim that starts inside the region must
    /// have its first [`WRITE_PREFIX`] bytes (or all of it, if shorter) in
    /// a part of the region that may be written; otherwise its address
    /// moves to the write area, its length (huge, wrapping or not) stays.
    /// One that starts outside the region is refused whatever its length.
    fn safe_write(&mut self, address: u64, length: u64) -> (u64, u64) {
        if length == 0 || !self.writable_at(address, length.min(WRITE_PREFIX)) {
            return (address, length);
        }
        (self.shared.scratch + WRITE_AREA.0, length)
    }

    /// Whether `address` lies in the fuzzer's region and the `prefix`
    /// bytes there are not all in a part of it the kernel may write.
    fn writable_at(&self, address: u64, prefix: u64) -> bool {
        let config = self.config();
        if !(config.region_start..config.region_end).contains(&address) {
            return false;
        }
        let end = address.saturating_add(prefix);
        let area = self.shared.scratch + WRITE_AREA.0;
        // The top of the region is the main stack, unused once the setup
        // upcall is over — but for its last 64 bytes (the block's address).
        let top = config.region_end - tern_core::domains::MAIN_STACK;
        let safe = (address >= area && end <= area + WRITE_AREA.1) || (address >= top && end <= config.region_end - 64);
        !safe
    }

    /// A region to lend `echo` writable (it reverses it in place): if the
    /// kernel would accept it (all of it inside the fuzzer's region), all
    /// of it must lie in the write area.
    fn safe_lend(&mut self, address: u64, length: u64) -> (u64, u64) {
        let config = self.config();
        let Some(end) = address.checked_add(length) else { return (address, length) };
        let accepted = length != 0 && address >= config.region_start && end <= config.region_end;
        let area = self.shared.scratch + WRITE_AREA.0;
        if !accepted || (address >= area && end <= area + WRITE_AREA.1) {
            return (address, length);
        }
        (area, length.min(WRITE_AREA.1))
    }

    /// A claim for `ConsoleWrite`: short text from the text area when it
    /// is valid, else one the kernel must refuse (or an empty one).
    fn console_claim(&mut self) -> (u64, u64) {
        let text = self.shared.scratch + TEXT_AREA.0;
        match self.rng.below(8) {
            0 => (text + self.rng.below(64), self.rng.below(4)),
            1 => (text + TEXT_AREA.1 - 2, self.rng.pick(&[2, 3, 4097])),
            2 => (self.address(), 0),
            3 => (text, self.rng.pick(&[4097, 8192, u64::MAX, 1 << 32])),
            4 => {
                // Invalid UTF-8 from the scratch buffer, refused NotUtf8.
                let at = self.shared.scratch + WRITE_AREA.0 + 40_000;
                write_bytes(at, &[0xff, 0xfe, b'x', 0xc3]);
                (at, self.rng.pick(&[1, 2, 4]))
            }
            _ => {
                let (address, length) = self.read_claim();
                let config = self.config();
                let inside = |start: u64, end: u64| {
                    address.checked_add(length).is_some_and(|last| address >= start && last <= end)
                };
                if length != 0
                    && length <= 4096
                    && (inside(config.region_start, config.region_end)
                        || inside(config.image_start, config.read_only_end))
                {
                    // Readable: it would print whatever is there. Keep the
                    // console readable: empty instead.
                    (address, 0)
                } else {
                    (address, length)
                }
            }
        }
    }

    fn known_activation(&mut self) -> u64 {
        u64::from(self.shared.known_activations[self.rng.below(KNOWN as u64) as usize].load(Relaxed))
    }

    fn known_port(&mut self) -> u64 {
        u64::from(self.shared.known_ports[self.rng.below(KNOWN as u64) as usize].load(Relaxed) & !(1 << 31))
    }

    fn known_thread(&mut self) -> u64 {
        u64::from(self.shared.known_threads[self.rng.below(KNOWN as u64) as usize].load(Relaxed) & !(1 << 31))
    }

    fn pooled_port(&mut self) -> Option<u64> {
        let table = &self.shared.pooled_ports;
        let at = self.rng.below(table.len() as u64) as usize;
        (0..table.len())
            .map(|step| table[(at + step) % table.len()].load(Relaxed))
            .find(|&port| port != 0)
            .map(u64::from)
    }

    /// A port name to call or serve.
    fn port(&mut self) -> u64 {
        let ports = self.config().ports;
        match self.rng.below(16) {
            0..=3 => ports[port::ECHO],
            4 | 5 => ports[port::VICTIM_POOL],
            6 => ports[port::VICTIM_THREADS],
            7 => ports[port::CLOCK],
            8 => 0,
            9..=11 => self.pooled_port().unwrap_or(ports[port::ECHO]),
            // A port a worker received on: a worker's call may wait for
            // its server thread (the main loop's may not).
            12 if self.may_block => {
                let table = &self.shared.served_ports;
                u64::from(table[self.rng.below(table.len() as u64) as usize].load(Relaxed))
            }
            13 => self.known_port(),
            14 => self.rng.below(24),
            _ => self.any(),
        }
    }

    /// A port this domain holds the receive right to, mostly.
    fn own_port(&mut self) -> u64 {
        let table = &self.shared.known_ports;
        let at = self.rng.below(KNOWN as u64) as usize;
        let held = (0..KNOWN).map(|step| table[(at + step) % KNOWN].load(Relaxed)).find(|word| word & 1 << 31 != 0);
        match (held, self.rng.below(8)) {
            (Some(word), 0..=5) => u64::from(word & !(1 << 31)),
            (_, 6) => self.known_port(),
            _ => self.rng.below(24),
        }
    }

    /// An activation number to act on. `danger`: the call may stop or end
    /// it, so the fuzzer's own loops are redrawn most of the time.
    fn activation(&mut self, danger: bool) -> u64 {
        for _ in 0..4 {
            let target = match self.rng.below(20) {
                0..=7 => self.known_activation(),
                8 | 9 => u64::from(self.who.activation),
                10 => {
                    let slot = &self.shared.slots[self.rng.below(SLOTS as u64) as usize];
                    u64::from(if self.rng.percent(50) { slot.base.load(Relaxed) } else { slot.top.load(Relaxed) })
                }
                11 | 12 => u64::from(self.shared.puppets[self.rng.below(PUPPETS as u64) as usize].load(Relaxed)),
                13..=16 => self.rng.below(64),
                17 => self.rng.pick(&[0, u64::MAX, 1 << 32, (1 << 32) + 1, u32::MAX as u64]),
                _ => self.any(),
            };
            if target == u64::from(self.shared.watchdog.load(Relaxed)) {
                continue;
            }
            // A slot's base ends its thread (the watchdog makes another,
            // from the region's rationed stacks): very rarely. Its current
            // activation or a nested one only ends a nested call.
            if danger && self.is_base(target) && !self.rng.one_in(2000) {
                continue;
            }
            if danger && self.ours(target) && !self.rng.one_in(16) {
                continue;
            }
            return target;
        }
        0
    }

    /// A stack pointer no sane code would call the kernel with.
    fn odd_stack(&mut self) -> u64 {
        let config = self.config();
        self.rng.pick(&[
            0,
            8,
            128,
            255,
            256,
            4096,
            !15,
            config.kernel_data & !15,
            config.region_start,
            config.region_end,
            self.shared.scratch + WRITE_AREA.0 + WRITE_AREA.1,
            config.other_region + 4096,
        ])
    }

    /// Whether `target` is a slot's base activation.
    fn is_base(&self, target: u64) -> bool {
        self.shared.slots.iter().any(|slot| target == u64::from(slot.base.load(Relaxed)))
    }

    /// Whether `target` is the caller's activation or a slot's base or top.
    fn ours(&self, target: u64) -> bool {
        target == u64::from(self.who.activation)
            || self
                .shared
                .slots
                .iter()
                .any(|slot| target == u64::from(slot.base.load(Relaxed)) || target == u64::from(slot.top.load(Relaxed)))
    }

    fn priority(&mut self) -> u64 {
        if self.rng.percent(85) { self.rng.below(32) } else { self.rng.pick(&[32, 255, u64::MAX, 1 << 32, 1 << 8]) }
    }

    /// How many stack bytes a carving call may still take, the run being
    /// as far along as it is (see the module's notes).
    fn carving_allowance(&self) -> u64 {
        let room = REGION_STACKS_OFFSET
            - SLOT_STACK * (SLOTS as u64 + 1)
            - WATCHDOG_STACK
            - tern_core::domains::MAIN_STACK
            - RESPAWN_RESERVE;
        let config = self.config();
        let done = self.shared.attempted.load(Relaxed).min(config.calls);
        let allowance = (256 << 10) + (room - (256 << 10)) * done / config.calls.max(1);
        allowance.saturating_sub(self.shared.carved.load(Relaxed))
    }

    /// Stack bytes for a carving call whose entry needs `least`: valid,
    /// mostly, unless the ration is spent.
    fn stack(&mut self, least: u64, count: u64) -> u64 {
        let valid = match self.rng.below(10) {
            // The largest size there is: more than the region has left
            // (`OutOfMemory`, nothing carved).
            0 if self.rng.one_in(4) => return 4 << 20,
            0 => self.rng.pick(&[0, 4095, (4 << 20) + 1, u64::MAX, 1 << 32]),
            1 => 4096,
            _ => least + self.rng.below(4) * 4096 + self.rng.pick(&[0, 0, 8, 100]),
        };
        if (4096..=4 << 20).contains(&valid)
            && valid.next_multiple_of(16).saturating_mul(count.max(1)) > self.carving_allowance()
        {
            return self.rng.pick(&[0, (4 << 20) + 1, 4095]);
        }
        valid
    }

    /// An entry the kernel must refuse (outside the image).
    fn bad_entry(&mut self) -> u64 {
        let config = self.config();
        let (start, end, data) = (config.image_start, config.read_only_end, config.kernel_data);
        self.rng.pick(&[0, 1, start - 4, end, end + 4096, data, u64::MAX, self.shared.scratch])
    }

    /// The request of a call on `target`: a header in the request area
    /// (mostly well-formed), and sometimes a claim the kernel must refuse.
    fn request(&mut self, target: u64) -> (u64, u64) {
        if self.rng.percent(12) {
            return self.read_claim();
        }
        let at = self.shared.scratch
            + REQUEST_AREA.0
            + if self.rng.percent(80) { self.rng.below(1024) * 16 } else { self.rng.below(16 << 10) };
        let ports = self.config().ports;
        let own_pool = self.shared.pooled_ports.iter().any(|port| u64::from(port.load(Relaxed)) == target);
        let victim = target == ports[port::VICTIM_POOL] || target == ports[port::VICTIM_THREADS];
        let pool_victim = target == ports[port::VICTIM_POOL];
        let callback = self.pooled_port();
        let label: u32 = if target == ports[port::CLOCK] {
            // NOW mostly; SLEEP (which blocks) from loops that may block.
            if self.may_block && self.rng.percent(40) { 1 } else { self.rng.pick(&[2, 2, 2, 0, 7]) }
        } else if victim {
            let kind = match self.rng.below(100) {
                0 | 1 => 3,
                1..=15 if self.may_block => 2,
                // A call back only into a pool of ours, from the pool
                // victim (whose thread is ours: alerts reach it).
                16..=30 if pool_victim && callback.is_some() => 4,
                31..=40 => 5,
                41..=55 => 1,
                _ => 0,
            };
            kind | (self.rng.below(256) as u32) << 8
        } else {
            self.rng.word() as u32
        };
        let right = match self.rng.below(10) {
            _ if label & 0xff == 4 && pool_victim => callback.unwrap_or(0),
            0..=5 => 0,
            6 | 7 => self.pooled_port().unwrap_or(0),
            8 => self.known_port(),
            _ => self.rng.below(32),
        } as u32;
        let payload = match self.rng.below(20) {
            0..=11 => 16,
            12 => 0,
            13 => 8,
            14 => 1000,
            15 => 1024 + 16,
            16 => 4096,
            17 => tern_core::abi::PAYLOAD_MAX as u64,
            18 => tern_core::abi::PAYLOAD_MAX as u64 + 1,
            _ => self.rng.below(200),
        };
        let length = MessageHeader::SIZE as u64 + payload;
        let mut header = [0u8; 32];
        header[0..4].copy_from_slice(&label.to_le_bytes());
        header[4..8].copy_from_slice(&right.to_le_bytes());
        header[8..16].copy_from_slice(&self.rng.word().to_le_bytes());
        let depth = u64::from(self.who.depth) + 1;
        let about = self.who.slot.map_or(0xff, |slot| slot as u64) | depth << 8;
        let magic = if own_pool || victim || self.rng.percent(50) { REQUEST_MAGIC } else { 0 };
        header[16..24].copy_from_slice(&(u64::from(magic) | about << 32).to_le_bytes());
        header[24..32].copy_from_slice(&self.rng.word().to_le_bytes());
        write_bytes(at, &header);
        (at, length)
    }

    /// A lend for `CallLending` on `target`.
    fn lend(&mut self, target: u64) -> (u64, u64) {
        let writable = if self.rng.percent(40) { LEND_WRITABLE as u64 } else { 0 };
        let (address, length) = match self.rng.below(10) {
            0..=5 => {
                let length = self.rng.pick(&[1, 16, 100, 1000, 4096, 8192, 64 << 10]);
                let room = WRITE_AREA.1 - length.min(WRITE_AREA.1);
                (self.shared.scratch + WRITE_AREA.0 + self.rng.below(room + 1), length)
            }
            6 => (self.shared.scratch + WRITE_AREA.0, self.rng.pick(&[0, LEND_MAX as u64, LEND_MAX as u64 + 1])),
            _ => self.read_claim(),
        };
        let ports = self.config().ports;
        let maybe_merged = target as u32 == ports[port::CLOCK] as u32
            || (self.config().merged != 0
                && (target as u32 == ports[port::VICTIM_POOL] as u32
                    || target as u32 == ports[port::VICTIM_THREADS] as u32
                    || self.shared.pooled_ports.iter().any(|port| port.load(Relaxed) == target as u32)));
        let (address, length) = if excluded("lend-wraps")
            && maybe_merged
            && address.checked_add(length & !(LEND_WRITABLE as u64)).is_none()
        {
            (self.shared.scratch + WRITE_AREA.0, length)
        } else {
            (address, length)
        };
        let (address, length) = if target == self.config().ports[port::ECHO] && writable != 0 {
            self.safe_lend(address, length & !(LEND_WRITABLE as u64))
        } else {
            (address, length)
        };
        (address, (length & !(LEND_WRITABLE as u64)) | writable)
    }

    fn number(&mut self) -> u64 {
        match self.rng.below(1000) {
            0..=4 => self.rng.pick(&[(1 << 32) | 15, (1 << 32) | 4, 1 << 32, u64::MAX, 1 << 63, 256 + 15, 0x100]),
            5..=39 => 37 + self.rng.below(4),
            40..=79 => 41 + self.rng.below(6),
            _ => self.rng.below(37),
        }
    }

    /// A call to make.
    fn plan(&mut self) -> Plan {
        if let Some(port) = self.state.serving
            && self.rng.percent(60)
        {
            // A thread serving a client replies, then waits for the next.
            let (reply, length) = self.request(0);
            let (buffer, capacity) = self.write_claim();
            let mut registers = [reply, length, port, buffer, capacity, 0, 0, 0];
            if excluded("switch-dead-client") {
                let right = self.pooled_port().unwrap_or(self.config().ports[port::ECHO]) as u32;
                if in_scratch(self.shared, reply, 8) {
                    write_bytes(reply + 4, &right.max(1).to_le_bytes());
                } else {
                    registers[0] = self.shared.scratch + WRITE_AREA.0;
                }
            }
            return Plan { number: Call::ReplyReceive as u64, registers, special: Special::None };
        }
        loop {
            let number = self.number();
            if let Some(plan) = self.plan_for(number) {
                return plan;
            }
        }
    }

    /// A plan for `number`, or `None` to draw another number.
    fn plan_for(&mut self, number: u64) -> Option<Plan> {
        let mut r = [0u64; 8];
        for register in &mut r {
            *register = self.any();
        }
        let mut special = Special::None;
        let may_block = self.may_block;
        let config = *self.config();
        let merged = config.merged != 0;
        let shared_address = self.shared as *const Shared as u64;
        let base_slot = match self.who.kind {
            Kind::Main | Kind::Worker if self.who.depth == 0 => self.who.slot,
            // A handler runs in the activation the alert found: maybe a
            // slot's base.
            Kind::Handler => {
                self.who.slot.filter(|&slot| self.shared.slots[slot].base.load(Relaxed) == self.who.activation)
            }
            _ => None,
        };
        let Some(call) = Call::from_number(number as usize) else {
            return Some(Plan { number, registers: r, special });
        };
        if matches!(call, Call::Terminate | Call::AlertBreak)
            && excluded("split-leak")
            && self.shared.splitting.load(Relaxed) >= SPLITS_MAX
        {
            // Numbers that name no activation: refused, nothing split.
            r[0] = self.rng.pick(&[0, u64::MAX, 1 << 32]);
            return Some(Plan { number, registers: r, special });
        }
        if !merged && call != Call::AlertHandler && self.rng.one_in(400) {
            // The same call with an odd stack pointer (a protected domain's
            // SP is its own business: the kernel must not care).
            let stack = self.odd_stack();
            if let Some(plan) = self.plan_for(number)
                && matches!(plan.special, Special::None)
            {
                return Some(Plan { special: Special::OddStack(stack), ..plan });
            }
        }
        match call {
            Call::Return => (r[0], r[1]) = self.request(0),
            Call::ConsoleWrite => (r[0], r[1]) = self.console_claim(),
            Call::Version => (r[0], r[1]) = self.write_claim(),
            // Only the console domain may read console input: the
            // fuzzer's domains are refused before any wait.
            Call::ConsoleRead => (r[0], r[1]) = self.write_claim(),
            Call::Call | Call::CallLending => {
                let target = self.port();
                let own_pool = self.shared.pooled_ports.iter().any(|port| u64::from(port.load(Relaxed)) == target);
                if own_pool && u64::from(self.who.depth) >= MAX_DEPTH - 1 {
                    return None;
                }
                let served = self.shared.served_ports[self.rng.below(8) as usize].load(Relaxed);
                let target =
                    if self.may_block && served != 0 && self.rng.percent(25) { u64::from(served) } else { target };
                r[0] = if self.rng.one_in(20) { target | self.rng.pick(&[1 << 32, 1 << 63]) } else { target };
                (r[1], r[2]) = self.request(target);
                (r[3], r[4]) = if self.rng.percent(70) {
                    let length = self.rng.pick(&[MESSAGE_MAX as u64, 4096, 1024, 64, 16, 15]);
                    let at = self.shared.scratch + WRITE_AREA.0 + self.rng.below(1024) * 16;
                    self.safe_write(at, length)
                } else {
                    self.write_claim()
                };
                (r[5], r[6]) = self.lend(target);
                let known = target == config.ports[port::ECHO]
                    || target == config.ports[port::CLOCK]
                    || target == 0
                    || own_pool
                    || target == config.ports[port::VICTIM_POOL]
                    || target == config.ports[port::VICTIM_THREADS];
                if !may_block && !known && !self.rng.one_in(50) {
                    // An own port with no pool: the call would wait.
                    return None;
                }
            }
            Call::Exit => {
                if (base_slot.is_some() || self.who.kind == Kind::Handler) && !self.rng.one_in(2000) {
                    return None;
                }
                special = base_slot.map_or(Special::None, Special::Ends);
            }
            Call::PortCreate => {
                if excluded("port-flood") && self.shared.ports_made.load(Relaxed) >= PORTS_MAX {
                    return None;
                }
                // Flags: none, idempotent, or bits that name nothing.
                r[0] = self.rng.pick(&[0, 0, 0, PORT_IDEMPOTENT as u64, 2, u64::MAX]);
            }
            Call::PortDestroy => {
                // Its own ports now and then (they die: callers get
                // `PortDead`), else names it may not destroy.
                r[0] = if self.rng.one_in(8) { self.own_port() } else { self.port() };
            }
            Call::PortGeneration | Call::Bind => r[0] = self.port(),
            Call::Unbind => r[0] = self.rng.pick(&[0, 0, 1, 2, 15, 16, u64::MAX]),
            Call::CallBound => {
                // Through a handle bound to any port it drew (its own,
                // with no pool, included): the call may wait.
                if !self.may_block {
                    return None;
                }
                r[0] = self.rng.pick(&[0, 0, 0, 1, 2, 3, 15, 16, 1 << 32]);
                (r[1], r[2]) = self.request(0);
                (r[3], r[4]) = self.write_claim();
            }
            Call::CallBoundWords => {
                // The request in registers: a label and a length (now and
                // then too long), words, a handle, a reply buffer.
                if !self.may_block {
                    return None;
                }
                r[0] = u64::from(self.rng.word() as u32) | self.rng.pick(&[0, 8, 13, 32, 33, 1 << 31]) << 32;
                (r[1], r[2], r[3], r[4]) = (self.rng.word(), self.rng.word(), self.rng.word(), self.rng.word());
                r[5] = self.rng.pick(&[0, 0, 0, 1, 2, 15, 16, 1 << 32]);
                (r[6], r[7]) = self.write_claim();
            }
            Call::SetQuota => {
                // The kernel domain's: refused to a protected fuzzer; the
                // merged one sets its victims' and its own, never below
                // what a domain needs to go on, or names nothing.
                r[0] = self.rng.pick(&[config.victims[0], config.victims[1], config.domain, 0, 99, 1 << 16]);
                r[1] = self.rng.pick(&[0, 1, 2, 3, 4, u64::MAX]);
                let real = config.victims.contains(&r[0]) || r[0] == config.domain;
                r[2] = if real {
                    self.rng.pick(&[64, 256, 512, 1 << 20])
                } else {
                    self.rng.pick(&[0, 1, 64, 1 << 32, u64::MAX])
                };
            }
            Call::DomainRestart => {
                // Policies for domains that are not there, or "never" for
                // its own victims (a restarted victim would be a new one).
                r[0] = self.rng.pick(&[config.victims[0], config.victims[1], 0, 99, 1 << 16]);
                let real = config.victims.contains(&r[0]);
                r[1] = if real { 0 } else { self.rng.pick(&[0, 1, 2, 3, u64::MAX]) };
                r[2] = self.rng.pick(&[0, 1, 3, 1 << 32, u64::MAX]);
                r[3] = self.rng.pick(&[0, 1, 1000, u64::MAX]);
            }
            Call::PoolAdd => {
                r[0] = self.own_port();
                r[1] = match self.rng.below(10) {
                    0..=5 => 1,
                    6 => 2,
                    7 => self.rng.pick(&[0, 64, 65, u64::MAX, 1 << 32 | 1]),
                    _ => self.rng.below(4),
                };
                let trampoline = self.rng.percent(25);
                match self.rng.below(10) {
                    0 | 1 => {
                        r[2] = self.bad_entry();
                        r[3] = self.stack(16 << 10, 0);
                    }
                    _ if trampoline => {
                        r[2] = gate::dispatch_trampoline() as u64;
                        r[3] = self.stack(96 << 10, r[1]);
                        if (4096..(96 << 10)).contains(&r[3]) {
                            r[3] = 0;
                        }
                    }
                    _ => {
                        r[2] = pool_entry as *const () as u64;
                        r[3] = self.stack((16 << 10) + 512, r[1]);
                    }
                }
            }
            Call::ThreadCreate => {
                let offset = shared_address - config.region_start;
                match self.rng.below(10) {
                    0..=5 => {
                        r[0] = child_entry as fn(usize) -> usize as usize as u64;
                        r[3] = self.stack(4096, 1);
                        let kind = self.rng.below(child::KINDS);
                        let kind = if kind == child::FUZZ && r[3] < (32 << 10) { child::YIELD } else { kind };
                        r[1] = if self.rng.one_in(20) { self.any() } else { child_argument(kind, r[3] >> 10, offset) };
                    }
                    6 | 7 => {
                        let slot = self.rng.below(PUPPETS as u64) as usize;
                        r[0] = tern_fuzz_puppet as *const () as u64;
                        r[1] = &self.shared.puppets[slot] as *const AtomicU32 as u64;
                        r[3] = self.stack(4096, 1);
                    }
                    _ => {
                        r[0] = self.bad_entry();
                        r[3] = self.stack(4096, 0);
                    }
                }
                r[2] = self.priority();
            }
            Call::Receive => {
                let served = self.shared.served_ports[self.rng.below(8) as usize].load(Relaxed);
                r[0] = if served != 0 && self.rng.percent(40) { u64::from(served) } else { self.own_port() };
                (r[1], r[2]) = self.write_claim();
                if !may_block && !self.rng.one_in(1000) {
                    // Refused before it waits: a bad buffer.
                    (r[1], r[2]) = (config.kernel_data, 64);
                } else if self.rng.percent(70) {
                    // A buffer a request fits (else the call is refused),
                    // and the port where callers will look for a server.
                    (r[1], r[2]) = (self.shared.scratch + WRITE_AREA.0 + self.rng.below(64) * 64, MESSAGE_MAX as u64);
                    remember(&self.shared.served_ports, r[0] as u32, self.rng.word());
                }
            }
            Call::ReplyReceive => {
                (r[0], r[1]) = self.request(0);
                if excluded("switch-dead-client") && in_scratch(self.shared, r[0], 8) {
                    // The reply carries a right: the general path takes it.
                    let right = self.pooled_port().unwrap_or(self.config().ports[port::ECHO]) as u32;
                    write_bytes(r[0] + 4, &right.max(1).to_le_bytes());
                }
                r[2] = self.own_port();
                (r[3], r[4]) = self.write_claim();
            }
            Call::SidetrackSet => {
                r[0] = self.own_port();
                if self.rng.percent(70) {
                    r[1] = sidetrack_entry as *const () as u64;
                    r[2] = self.stack(16 << 10, 1);
                } else {
                    r[1] = self.bad_entry();
                    r[2] = self.stack(16 << 10, 0);
                }
            }
            Call::ContextSet => r[0] = shared_address,
            Call::ThreadJoin => {
                let word = self.shared.known_threads[self.rng.below(KNOWN as u64) as usize].load(Relaxed);
                r[0] = match self.rng.below(6) {
                    0..=2 => u64::from(word & !(1 << 31)),
                    3 => self.rng.below(64),
                    _ => self.rng.pick(&[0, u64::MAX, 1 << 32, (1 << 32) | u64::from(word & 0xffff)]),
                };
                let quick = word & 1 << 31 != 0 && r[0] == u64::from(word & !(1 << 31));
                if !may_block && !quick && r[0] < (1 << 16) && !self.rng.one_in(100) {
                    return None;
                }
            }
            Call::DomainMode => {
                if merged {
                    r[0] =
                        self.rng.pick(&[config.victims[0], config.victims[1], config.domain, 0, 99, 1 << 16, u64::MAX]);
                    r[1] = self.rng.pick(&[0, 1, 1, 2, u64::MAX]);
                }
            }
            Call::Alert | Call::TestAlert | Call::ForbidAbove => r[0] = self.activation(false),
            Call::AlertBreak => r[0] = self.activation(false),
            Call::Suspend | Call::Terminate | Call::SpliceOut => {
                r[0] = self.activation(true);
                if matches!(call, Call::Terminate | Call::SpliceOut)
                    && let Some(slot) = base_slot
                    && r[0] == u64::from(self.shared.slots[slot].base.load(Relaxed))
                {
                    special = Special::Ends(slot);
                }
                if call == Call::Suspend && !may_block && !self.rng.one_in(8) {
                    // Suspending activations of its own thread would stop it
                    // until the watchdog comes: the main loop only suspends
                    // puppets and numbers it does not own.
                    r[0] = self.rng.pick(&[
                        u64::from(self.shared.puppets[0].load(Relaxed)),
                        u64::from(self.shared.puppets[1].load(Relaxed)),
                        0,
                        1 << 32,
                    ]);
                    if self.ours(r[0]) || self.is_base(r[0]) {
                        // A puppet's number now names one of the loops'.
                        r[0] = 0;
                    }
                }
            }
            Call::Resume => r[0] = self.activation(false),
            Call::AlertsBlock => {
                r[0] = self.rng.pick(&[0, 0, 1, 1, 2, u64::MAX]);
                if base_slot.is_some() && r[0] == 1 && !self.rng.one_in(50) {
                    // A slot's own activation keeps alerts open, so the
                    // watchdog's alert ends any wait it gets into.
                    r[0] = 0;
                }
            }
            Call::GetState => {
                r[0] = self.activation(false);
                (r[1], r[2]) = self.write_claim();
                if self.rng.percent(50) {
                    r[2] = self.rng.pick(&[272, 271, 273, 0, u64::MAX]);
                    (r[1], r[2]) = self.safe_write(r[1], r[2]);
                }
                if may_block && self.rng.percent(40) {
                    let puppet = self.shared.puppets[self.rng.below(PUPPETS as u64) as usize].load(Relaxed);
                    if puppet != 0 {
                        special = Special::PuppetState(u64::from(puppet));
                    }
                } else if !may_block && r[0] != u64::from(self.who.activation) && !self.rng.one_in(100) {
                    // A valid one waits for the target: its own activation
                    // (InvalidArgument) or a bad buffer instead.
                    if self.rng.percent(50) {
                        r[0] = u64::from(self.who.activation);
                    } else {
                        r[1] = config.kernel_data;
                    }
                }
            }
            Call::SetState => {
                r[0] = self.activation(false);
                // Only puppets are rewritten (through `PuppetState`): every
                // other SetState names a buffer the kernel must refuse.
                (r[1], r[2]) = match self.rng.below(4) {
                    0 => (config.kernel_data, STATE_BYTES as u64),
                    1 => (self.shared.scratch + SNAPSHOT_AREA, self.rng.below(STATE_BYTES as u64)),
                    2 => (config.other_region, STATE_BYTES as u64),
                    _ => (u64::MAX - 100, STATE_BYTES as u64),
                };
            }
            Call::SetPriority => {
                r[0] = self.activation(false);
                r[1] = self.priority();
            }
            Call::ThreadInfo => {
                r[0] = self.activation(false);
                (r[1], r[2]) = self.write_claim();
            }
            Call::DomainControl => {
                if merged {
                    r[0] = self.rng.pick(&[config.victims[0], config.victims[1], config.domain, 0, 99, 1 << 16]);
                    r[1] = self.rng.pick(&[0, 1, 1, 2, 3, u64::MAX]);
                    if r[0] == config.domain {
                        r[1] = 1;
                    }
                }
            }
            Call::Activations => {
                r[0] = self.rng.pick(&[
                    config.domain,
                    config.domain,
                    config.domain,
                    config.other_domain,
                    config.victims[0],
                    0,
                    1 << 16,
                ]);
                (r[1], r[2]) = self.write_claim();
            }
            Call::Sleep => {
                r[0] = self.rng.pick(&[0, 1, config.frequency / 400, config.frequency / 200, config.frequency / 100]);
                if self.rng.one_in(8) {
                    // For ever (until an alert).
                    r[0] = self.rng.pick(&[u64::MAX, 1 << 62]);
                }
                if !may_block {
                    if !self.rng.one_in(200) {
                        return None;
                    }
                    r[0] = 0;
                }
            }
            Call::AlertHandler => {
                r[0] = match self.rng.below(10) {
                    0..=4 => alert_handler as *const () as u64,
                    5..=7 => 0,
                    _ => self.bad_entry(),
                };
            }
            Call::WhoAmI | Call::Yield | Call::Null | Call::ActivationSelf | Call::AlertDone | Call::Caller => {}
        }
        Some(Plan { number, registers: r, special })
    }
}

/// The name of what a ring entry's `who` word says.
pub fn describe_who(word: u64) -> (u64, u64, &'static str, u64) {
    let kind = match (word >> 16) & 0xff {
        0 => "main",
        1 => "worker",
        2 => "nested",
        3 => "dispatch",
        4 => "child",
        5 => "sidetrack",
        6 => "handler",
        _ => "?",
    };
    (word & 0xff, (word >> 8) & 0xff, kind, word >> 32)
}

const _: () = assert!(CALL_KINDS == super::shared::HIGHEST_CALL + 2);
