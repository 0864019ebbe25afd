//! The machine interface: everything the kernel asks of the processor and
//! the memory system it runs on, and nothing else.
//!
//! The kernel (this crate) is written against one trait, [`Machine`],
//! which the arch crate (`tern-aarch64`) implements for the real hardware
//! and [`crate::mock`] implements for host tests. It is deliberately small
//! and mechanical — every method carries out a decision the kernel has
//! already made:
//!
//! - **user frames** ([`UserFrame`]): the registers a thread entered the
//!   kernel with, read and written by the kernel calls;
//! - **CPU-local state** ([`Cpu`]): the thread on the processor and the
//!   counter value it was last charged at, reached through the machine so
//!   that more processors can come later without moving kernel code;
//! - **views**: installing a translation table and ASID, building a new
//!   domain's view, changing how a region or lent pages are mapped, with
//!   the TLB maintenance that needs;
//! - **the kernel's alias of domain memory**: copies between domains and
//!   reads and writes of a domain's memory, on ranges the kernel has
//!   checked against the domain's record (a claim is never followed
//!   unchecked, and never as a typed reference);
//! - **threads' kernel side**: kernel stacks, the saved kernel context a
//!   parked thread resumes from, and the switch between two of them
//!   (decided under the kernel state, carried out after it is released);
//! - **the counters** (the generic timer's), the console, and **publishing**
//!   what the assembly fast paths read.
//!
//! Left out on purpose: interrupt masking (the kernel state is only ever
//! reached with interrupts masked; the machine's lock does that), blocking
//! and idling (the kernel says a thread waits, [`crate::kernel::Next`]; the
//! machine's loop carries it out), and page-table formats.

use crate::abi::{DomainMode, Error, encode_result};
use crate::domain::DomainRecord;
use crate::frame::PhysRange;
use crate::lend::PageChange;
use crate::thread::{Objects, ThreadId, UserContext};

/// The registers a thread entered the kernel with (its trap frame).
pub trait UserFrame {
    /// General register `index` (0-30).
    fn register(&self, index: usize) -> u64;

    /// Argument `index` of a kernel call (register x`index`).
    fn argument(&self, index: usize) -> usize {
        self.register(index) as usize
    }

    /// Set general register `index` (0-30).
    fn set_register(&mut self, index: usize, value: u64);

    /// Everything a domain's code sees: x0-x30, SP, PC, PSTATE.
    fn context(&self) -> UserContext;

    /// Replace everything a domain's code sees.
    fn set_context(&mut self, context: &UserContext);

    /// Aim the return at the kernel call itself, so that it is made again
    /// when the thread goes back (the instruction before the return
    /// address: `svc`, or the merged gate's branch into the kernel).
    fn repeat_call(&mut self);

    /// Write a call's outcome: the one result encoding (status in x0, value
    /// in x1; see [`crate::abi`]).
    fn set_result(&mut self, result: Result<usize, Error>) {
        let (status, value) = encode_result(result);
        self.set_register(0, status as u64);
        self.set_register(1, value as u64);
    }
}

/// The processor's own state (one per processor once there are several).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// The thread on the processor.
    pub current: ThreadId,
    /// The counter's value when the current thread was last charged.
    pub charged_at: u64,
}

/// Counts of what the RPC paths did, for scenarios and the benchmark. One
/// copy, kept by the machine where its assembly fast paths count too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcStatistics {
    /// Calls that migrated into a pool activation, through a trap.
    pub migrated: u64,
    /// Calls that migrated into a merged pool activation from merged code
    /// without a trap.
    pub direct: u64,
    /// Calls handed to a waiting server thread.
    pub handed_off: u64,
    /// Calls queued behind busy server threads.
    pub queued: u64,
    /// Times a caller waited for a server (empty pool, no thread ready).
    pub waited: u64,
    /// Sidetrack upcalls made.
    pub sidetracks: u64,
    /// The longest activation chain seen.
    pub longest_chain: usize,
    /// Copies of a message with a payload (a header alone is not counted):
    /// the benchmark's copy count.
    pub payload_copies: u64,
    /// Lent regions mapped into a protected server's view (each taken
    /// out again when its call ends).
    pub lends_mapped: u64,
    /// Threads split in two by a termination or an alert-and-break.
    pub splits: u64,
    /// Dead domains restarted by their policy.
    pub restarts: u64,
    /// Calls the general path (the kernel's Rust `Call` handler, not the
    /// assembly fast paths) routed to a server: into a pool activation, to
    /// a waiting server thread or onto a busy one's queue. Each is also
    /// counted by its route above (`migrated`, `handed_off`, `queued`);
    /// this says how many of them missed the fast paths.
    pub general: u64,
}

/// How a domain's region is mapped in one view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionMapping {
    /// The domain's own view while it is protected: its code's level may
    /// read and write it, tagged with the domain's ASID.
    Protected,
    /// Every view while it is merged: the kernel's level only, global.
    Merged,
}

/// Where an upcall into a domain enters, and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpcallTarget {
    /// The view to enter in.
    pub view: u64,
    /// The entry point.
    pub entry: u64,
    /// The stack pointer.
    pub stack: u64,
    /// `x0` and `x1` on entry.
    pub arguments: [u64; 2],
    /// The processor state to enter with (the domain's mode's).
    pub state: u64,
}

/// How a new thread begins, once it first runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// An upcall into its first activation.
    Upcall(UpcallTarget),
    /// Split off below a terminated activation: resume its top
    /// activation's saved registers (x0 holding the error).
    Resume(UpcallTarget, alloc::boxed::Box<UserContext>),
}

/// What the fast paths read, handed to [`Machine::publish`].
pub struct Published<'a> {
    /// Threads, activations, ports.
    pub objects: &'a Objects,
    /// The domains, by number - 1.
    pub domains: &'a [DomainRecord],
    /// Whether a domain record may have changed since the last time.
    pub domains_changed: bool,
}

/// The processor and memory system the kernel runs on.
pub trait Machine: Sized {
    /// A thread's registers at a kernel entry.
    type Frame: UserFrame;
    /// A thread switch decided under the kernel state, carried out after
    /// it is released.
    type Switch;
    /// A kernel stack.
    type Stack: Copy;

    /// The processor's own state.
    fn cpu(&self) -> &Cpu;

    /// The processor's own state, to change.
    fn cpu_mut(&mut self) -> &mut Cpu;

    /// The free-running counter (the generic timer's), in ticks.
    fn counter(&self) -> u64;

    /// The processor state an upcall into a domain in `mode` enters with.
    fn entry_state(mode: DomainMode) -> u64;

    /// The kernel's own view (installs its table with ASID 0).
    fn kernel_view(&self) -> u64;

    /// The view installed now.
    fn view(&self) -> u64;

    /// Install a view (no TLB maintenance: views are told apart by ASID).
    fn switch_view(&mut self, view: u64);

    /// Prepare `region` for a new protected domain numbered `asid`: zero
    /// it, set up the domain heap's bookkeeping at its start, and build
    /// its view (the kernel's, plus the region for its code's level); the
    /// value that installs the view. `OutOfMemory` if no frames are left
    /// for the view's tables.
    fn new_domain_view(&mut self, region: PhysRange, asid: u16) -> Result<u64, Error>;

    /// A dead domain's `view` of `region` will never be installed again
    /// (its slot is being reused): free the tables it made, and drop every
    /// TLB entry tagged with its ASID, which the slot's next tenant gets.
    fn drop_domain_view(&mut self, view: u64, region: PhysRange);

    /// Map `region` into `view` as `mapping`, or unmap it (`None`). No TLB
    /// maintenance: see [`Machine::flush_translations`].
    fn map_region(&mut self, view: u64, region: PhysRange, mapping: Option<RegionMapping>) -> Result<(), Error>;

    /// Make table changes visible and drop every TLB entry of every ASID.
    fn flush_translations(&mut self);

    /// Carry out one change a lend makes to a protected server's `view`;
    /// a change of access is break-before-make.
    fn map_lent(&mut self, view: u64, change: PageChange) -> Result<(), Error>;

    /// After a lend's changes to `view`: make them visible, and drop the
    /// view's TLB entries if anything was unmapped.
    fn lent_done(&mut self, view: u64, unmapped: bool);

    /// Copy `length` bytes from `from` (readable by its domain: its region
    /// or the shared image) to `to` (a domain's region), both checked by
    /// the caller, through the kernel's alias of domain memory.
    fn copy(&mut self, from: usize, to: usize, length: usize);

    /// Read checked memory of a domain (or the shared image).
    fn read(&self, address: usize, into: &mut [u8]);

    /// Write checked memory of a domain.
    fn write(&mut self, address: usize, bytes: &[u8]);

    /// Read the 64-bit little-endian word at `address` in checked memory,
    /// whatever its alignment (a message header's fields: one access, not
    /// the byte accesses the compiler makes of an unaligned field).
    fn read_word(&self, address: usize) -> u64;

    /// Write the low `bytes` (4 or 8) bytes of `value`, little-endian, at
    /// `address` in checked memory, whatever its alignment.
    fn write_word(&mut self, address: usize, value: u64, bytes: usize);

    /// A kernel stack for a new thread: one an ended thread left, or new.
    fn take_stack(&mut self) -> Option<Self::Stack>;

    /// Give back a stack taken for a thread that was not made.
    fn return_stack(&mut self, stack: Self::Stack);

    /// Give `thread` its kernel side on `stack`, to begin (when it first
    /// runs) as the kernel's `Kernel::thread_start` says. The address of
    /// its saved kernel context (`Thread::kernel_context`).
    fn start_thread(&mut self, thread: ThreadId, stack: Self::Stack) -> u64;

    /// Give the thread running now, on the boot stack, its kernel side.
    /// The address of its saved kernel context.
    fn adopt_thread(&mut self, thread: ThreadId) -> u64;

    /// Whether `thread` runs on a kernel stack of its own (the boot
    /// thread does not: the kernel's own code lies below its activations,
    /// so it can be neither split nor ended).
    fn owns_stack(&self, thread: ThreadId) -> bool;

    /// `thread` has ended and will never run again: its kernel stack is
    /// free for the next thread made (once the machine has left it).
    fn thread_ended(&mut self, thread: ThreadId);

    /// Ended thread `thread` is gone for good (it has switched away for the
    /// last time, and its record is being removed): drop its saved kernel
    /// context.
    fn forget_thread(&mut self, thread: ThreadId);

    /// The switch from thread `from` to `to`, to resume in `view`.
    fn switch(&mut self, from: ThreadId, to: ThreadId, view: u64) -> Self::Switch;

    /// Write text to the console.
    fn console_write(&mut self, text: &str);

    /// The RPC statistics, to read or count into.
    fn statistics(&mut self) -> &mut RpcStatistics;

    /// Bring what the assembly fast paths read up to date.
    fn publish(&mut self, published: Published<'_>);
}
