//! The fuzzer's shared block: what the fuzzer domain's threads share, and
//! what the kernel-side scenario reads.
//!
//! One [`Shared`] per fuzzer domain, allocated on the domain's own heap by
//! its setup upcall (so the domain reaches it at its identity address, at
//! EL0 or EL1t) and read by the scenario through the kernel's alias of the
//! arena (`Machine::read`). Every field the fuzzer's threads write while
//! others may run is an atomic: threads of one domain run interleaved
//! (preemption, splits), and the scenario reads the block at any moment.
//! The scenario writes [`Config`] (and the call budget) once, before any
//! fuzzing thread exists.
//!
//! The first word is the dispatch handler: the gate's dispatch trampoline
//! calls the function whose address is the first word the domain's context
//! word points at, and the fuzzer's context word is this block's address.
//!
//! What it leaves out: locks (nothing here needs more than one word to be
//! consistent; the ring of recent calls is a best-effort record, each entry
//! written word by word).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// `Shared::magic` once the setup upcall has built the block.
pub const MAGIC: u64 = 0x7465_726e_667a_7a31;
/// Fuzzing loops with a thread of their own that the watchdog watches:
/// slot 0 the main loop, the others workers.
pub const SLOTS: usize = 4;
/// Recent calls kept in the ring.
pub const RING: usize = 16;
/// Remembered numbers of each kind (activations, ports, threads).
pub const KNOWN: usize = 32;
/// Result kinds: 0 success, 1..=21 the kernel's errors, 22 any other code.
pub const RESULT_KINDS: usize = 23;
/// Call numbers counted one by one (0..=46); the last entry counts the
/// huge numbers the fuzzer also tries.
pub const CALL_KINDS: usize = 48;
/// The highest call number the fuzzer draws routinely.
pub const HIGHEST_CALL: usize = 46;
/// Puppet threads (see `fuzzer`), each with a word for its activation.
pub const PUPPETS: usize = 4;

/// Indices of [`Config::ports`]: names, in the fuzzer's space, of ports
/// the scenario granted it.
pub mod port {
    /// `echo`, a healthy server that must keep serving.
    pub const ECHO: usize = 0;
    /// The victim served by a pool.
    pub const VICTIM_POOL: usize = 1;
    /// The victim served by threads.
    pub const VICTIM_THREADS: usize = 2;
    /// The kernel clock (a kernel object served by kernel activations).
    pub const CLOCK: usize = 3;
    /// How many.
    pub const COUNT: usize = 4;
}

/// What the scenario tells the fuzzer (written before any fuzzing thread
/// runs, read-only afterwards).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Config {
    /// The PRNG seed.
    pub seed: u64,
    /// Kernel calls to make.
    pub calls: u64,
    /// Non-zero: print every call.
    pub trace: u64,
    /// Non-zero: this fuzzer domain is merged into the kernel domain.
    pub merged: u64,
    /// The counter's frequency (ticks per second).
    pub frequency: u64,
    /// The fuzzer's domain number.
    pub domain: u64,
    /// Its region.
    pub region_start: u64,
    /// The region's end.
    pub region_end: u64,
    /// The image's first byte (start of `.text`).
    pub image_start: u64,
    /// The end of `.text`.
    pub text_end: u64,
    /// The end of `.rodata` (what every domain may read ends here).
    pub read_only_end: u64,
    /// An address of kernel data.
    pub kernel_data: u64,
    /// An address in the kernel heap.
    pub kernel_heap: u64,
    /// The start of another (healthy) domain's region.
    pub other_region: u64,
    /// That domain's number.
    pub other_domain: u64,
    /// The victims' domain numbers (pool, threads).
    pub victims: [u64; 2],
    /// The end of the domain arena.
    pub arena_end: u64,
    /// Port names in the fuzzer's space (see [`port`]).
    pub ports: [u64; port::COUNT],
}

/// One fuzzing loop that has a thread of its own (main or worker).
#[derive(Debug, Default)]
#[repr(C)]
pub struct Slot {
    /// Its thread's base activation (0 until the loop starts).
    pub base: AtomicU32,
    /// The activation running fuzz code on that thread now (nested loops
    /// set it, each loop sets it again after every call).
    pub top: AtomicU32,
    /// Calls made by loops on the slot's thread.
    pub progress: AtomicU64,
    /// 0 running, 1 finished (its budget ran out), 2 dead (terminated or
    /// ended early: the watchdog makes a new thread), 3 given up.
    pub state: AtomicU64,
    /// How many threads the slot has had.
    pub lives: AtomicU64,
    /// The call a loop on the slot's thread is in (its number; bit 63:
    /// made from a nested loop), for the watchdog's record of stalls.
    pub current: AtomicU64,
}

/// Slot states.
pub mod slot_state {
    /// Fuzzing.
    pub const RUNNING: u64 = 0;
    /// Its loop ran out of budget and returned.
    pub const FINISHED: u64 = 1;
    /// Its thread is gone (or going): make another.
    pub const DEAD: u64 = 2;
    /// No thread could be made for it.
    pub const GIVEN_UP: u64 = 3;
}

/// One recent call.
#[derive(Debug, Default)]
#[repr(C)]
pub struct RingEntry {
    /// Which call it was (1-based; 0: empty).
    pub sequence: AtomicU64,
    /// Who made it: slot (bits 0-7, 0xff none), depth (8-15), kind
    /// (16-23), the calling activation (32-63).
    pub who: AtomicU64,
    /// The call number (x8).
    pub number: AtomicU64,
    /// x0-x6.
    pub arguments: [AtomicU64; 7],
    /// x0 on return (`u64::MAX` while it has not returned).
    pub status: AtomicU64,
    /// x1 on return.
    pub value: AtomicU64,
}

/// The shared block (see the module's notes).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Shared {
    /// The dispatch handler (first: the gate's trampoline calls it).
    pub handler: usize,
    /// [`MAGIC`] once built.
    pub magic: u64,
    /// The scenario's settings.
    pub config: Config,
    /// The scratch buffer: where every kernel write the fuzzer asks for
    /// lands (see `fuzzer`).
    pub scratch: u64,
    /// Its bytes.
    pub scratch_length: u64,
    /// Calls left to make (the scenario sets it; loops take from it).
    pub remaining: AtomicU64,
    /// Calls made.
    pub attempted: AtomicU64,
    /// Calls returned, by result kind.
    pub results: [AtomicU64; RESULT_KINDS],
    /// Calls made, by call number.
    pub made: [AtomicU64; CALL_KINDS],
    /// Calls that succeeded, by call number.
    pub succeeded: [AtomicU64; CALL_KINDS],
    /// Where the next ring entry goes.
    pub ring_next: AtomicU64,
    /// The last [`RING`] calls.
    pub ring: [RingEntry; RING],
    /// The watched loops.
    pub slots: [Slot; SLOTS],
    /// The watchdog's activation (the fuzzer never targets it).
    pub watchdog: AtomicU32,
    /// Watchdog interventions: resume-all rounds, alerts, terminations of
    /// a stuck top, terminations of a base, threads made for dead slots.
    pub interventions: [AtomicU64; 5],
    /// Activations the fuzzer learnt of.
    pub known_activations: [AtomicU32; KNOWN],
    /// Port names it learnt of (bit 31: it holds the receive right).
    pub known_ports: [AtomicU32; KNOWN],
    /// Ports (names) with a pool it added to.
    pub pooled_ports: [AtomicU32; 8],
    /// Ports a thread of the fuzzer waited in receive on.
    pub served_ports: [AtomicU32; 8],
    /// Threads it made.
    pub known_threads: [AtomicU32; KNOWN],
    /// The puppets' activations (0: none).
    pub puppets: [AtomicU32; PUPPETS],
    /// Stack bytes carved from the region by the fuzzer's own calls (an
    /// upper bound).
    pub carved: AtomicU64,
    /// Ports made.
    pub ports_made: AtomicU64,
    /// Calls whose result broke a rule the kernel promises.
    pub violations: AtomicU64,
    /// Loops started (all kinds), nested loops, alert handlers run,
    /// sidetracks taken, dispatch handlers run, children started.
    pub loops: [AtomicU64; 6],
    /// Successful `Terminate` and `AlertBreak` calls (each may split a
    /// thread).
    pub splitting: AtomicU64,
    /// Non-zero once the main loop made its opening calls.
    pub opened: AtomicU64,
    /// Pools added with the gate's dispatch trampoline as the entry.
    pub trampoline_pools: AtomicU64,
    /// Seeds handed to loops that start.
    pub sequence: AtomicU64,
    /// Stalls the watchdog acted on, by the call the slot was in (the
    /// first half: the main loop's; the second: the workers').
    pub stalls: [[AtomicU64; CALL_KINDS]; 2],
    /// Every tick, the call each slot's loop is in (the watchdog's
    /// sampling profile; main, then the workers).
    pub samples: [[AtomicU64; CALL_KINDS]; 2],
    /// Slot threads the watchdog ended, by the call the slot was in.
    pub kills: [[AtomicU64; CALL_KINDS]; 2],
    /// Slot deaths by cause: its own call (`Exit`, terminating or
    /// splicing out its own base), another loop's termination or splice of
    /// its base, by call number ([`CALL_KINDS`] entries each).
    pub deaths: [[AtomicU64; CALL_KINDS]; 2],
}

impl Shared {
    /// Take one call from the budget; false when it is spent.
    pub fn take_budget(&self) -> bool {
        self.remaining.fetch_update(Relaxed, Relaxed, |left| left.checked_sub(1)).is_ok()
    }

    /// The next seed for a loop that starts (deterministic given the
    /// order loops start in).
    pub fn next_seed(&self) -> u64 {
        let n = self.sequence.fetch_add(1, Relaxed);
        crate::fuzz::fuzzer::mix(self.config.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

/// What index of [`Shared::results`] a returned status goes to.
pub const fn result_kind(status: u64) -> usize {
    if status < RESULT_KINDS as u64 - 1 { status as usize } else { RESULT_KINDS - 1 }
}

/// What index of [`Shared::made`] a call number goes to.
pub const fn call_kind(number: u64) -> usize {
    if number <= HIGHEST_CALL as u64 { number as usize } else { CALL_KINDS - 1 }
}

/// A name for a result kind.
pub fn result_name(kind: usize) -> &'static str {
    match kind {
        0 => "ok",
        RESULT_KINDS.. => "other",
        code if code == RESULT_KINDS - 1 => "unknown_code",
        code => tern_core::abi::Error::from_code(code).map_or("?", tern_core::abi::Error::name),
    }
}

/// A name for a call kind.
pub fn call_name(kind: usize) -> &'static str {
    use tern_core::abi::Call;
    let Some(call) = Call::from_number(kind) else {
        return if kind == CALL_KINDS - 1 { "huge" } else { "unknown" };
    };
    match call {
        Call::Return => "Return",
        Call::ConsoleWrite => "ConsoleWrite",
        Call::WhoAmI => "WhoAmI",
        Call::Version => "Version",
        Call::Call => "Call",
        Call::Exit => "Exit",
        Call::PortCreate => "PortCreate",
        Call::PoolAdd => "PoolAdd",
        Call::ThreadCreate => "ThreadCreate",
        Call::Receive => "Receive",
        Call::ReplyReceive => "ReplyReceive",
        Call::Yield => "Yield",
        Call::SidetrackSet => "SidetrackSet",
        Call::ContextSet => "ContextSet",
        Call::ThreadJoin => "ThreadJoin",
        Call::Null => "Null",
        Call::DomainMode => "DomainMode",
        Call::CallLending => "CallLending",
        Call::ActivationSelf => "ActivationSelf",
        Call::Alert => "Alert",
        Call::AlertBreak => "AlertBreak",
        Call::AlertsBlock => "AlertsBlock",
        Call::TestAlert => "TestAlert",
        Call::Suspend => "Suspend",
        Call::Resume => "Resume",
        Call::Terminate => "Terminate",
        Call::SpliceOut => "SpliceOut",
        Call::GetState => "GetState",
        Call::SetState => "SetState",
        Call::SetPriority => "SetPriority",
        Call::ThreadInfo => "ThreadInfo",
        Call::ForbidAbove => "ForbidAbove",
        Call::DomainControl => "DomainControl",
        Call::Activations => "Activations",
        Call::Sleep => "Sleep",
        Call::AlertHandler => "AlertHandler",
        Call::AlertDone => "AlertDone",
        Call::SetQuota => "SetQuota",
        Call::PortDestroy => "PortDestroy",
        Call::DomainRestart => "DomainRestart",
        Call::PortGeneration => "PortGeneration",
        Call::Bind => "Bind",
        Call::Unbind => "Unbind",
        Call::CallBound => "CallBound",
        Call::CallBoundWords => "CallBoundWords",
        Call::Caller => "Caller",
        Call::ConsoleRead => "ConsoleRead",
    }
}
