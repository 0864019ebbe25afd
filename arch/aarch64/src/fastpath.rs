//! The migrating RPC fast path's view of the kernel state.
//!
//! `fastpath.s` handles the common migrating call and return in a few
//! dozen instructions, in the seL4 fast-path shape: read-only checks first,
//! each falling back to the general path (`rpc.rs`) on any doubt; a point
//! of no return; then the state changes. It works on the same objects as
//! the general path (threads, activations and ports in `Objects`, whose
//! slabs double as pointer tables), plus one [`DomainFast`] block per
//! domain. [`FastPath`] holds where those tables are now, the processor's
//! own state (the running thread and its last charge: the switching fast
//! path changes both), the counters the fast paths keep and the zeros they
//! clear registers from; the kernel publishes into it
//! ([`Machine::publish`](tern_core::machine::Machine::publish), [`publish`])
//! every time it leaves the kernel state, so by the time any domain can
//! make a call it is exact.
//!
//! What the fast paths take — a call from a thread's own activation or,
//! by name or through a handle with the message in memory, a nested call
//! from a server activation (the words path takes the first kind only),
//! with a request of at most
//! [`FAST_PAYLOAD_MAX`] payload bytes in the caller's own region (a message
//! sent from the shared read-only image takes the general path), carrying
//! no right, and a reply buffer in the caller's region — and then:
//!
//! - **migrating**: the port's pool has a free activation and will not
//!   need a sidetrack; and the matching `Return`, when nobody waits for an
//!   activation;
//! - **switching**: the pool is empty and a server thread waits in
//!   receive: the request goes straight into its buffer and it gets the
//!   processor (the handoff); and the matching `ReplyReceive` when nobody
//!   else is queued for the server: the reply goes straight into the
//!   client's buffer and the client gets the processor back.
//!
//! A `CallLending` takes the migrating fast path too when the server is
//! merged (nothing to map: the lend is checked against the caller's region
//! and handed over as it is); a lend to a protected server needs its
//! pages mapped and takes the general path.
//!
//! Everything else — nested words calls, rights, sidetracks, queued clients,
//! every error (an oversized message included) — takes the general path, which gives the
//! same results. Both kinds get the same treatment, so the benchmark
//! compares two fast paths, not a fast path with a slow one.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use tern_core::domain::DomainId;
use tern_core::machine::{Cpu, Published, RpcStatistics};
use tern_core::thread::{Activation, Thread, ThreadId};

/// Largest payload the fast paths copy: any message's. They stopped at
/// 1 KiB while they copied 16 bytes a step; with the 128-byte copy
/// (`copy.s`) the general path's own length would be a large part of a
/// 32 KiB call (`docs/bench.md`, "One bulk copy"). Interrupts stay masked
/// through the copy either way (the general path copies under the kernel
/// state's lock).
pub const FAST_PAYLOAD_MAX: u64 = tern_core::abi::PAYLOAD_MAX as u64;

/// Where the fast paths find things, the processor's own state, the
/// statistics of both RPC paths, and a block of zeros. Fields the assembly
/// loads together with one `ldp` are neighbours (checked in `lib.rs`).
/// Page-aligned, so that one `adrp` gives its address.
#[repr(C, align(4096))]
pub struct FastPath {
    /// The running thread (`*const Thread`).
    pub current: usize,
    /// Activation pointer table (indexed by numbers the kernel keeps
    /// valid: no length needed).
    pub activations: usize,
    /// Domain table: `*const DomainFast` by domain number (0 unused).
    pub domains: usize,
    /// Port pointer table (indexed by numbers from capability words the
    /// kernel keeps valid).
    pub ports: usize,
    /// Thread pointer table.
    pub threads: usize,
    /// The processor's own state: the running thread's number and the
    /// counter at its last charge (the kernel's [`Cpu`]).
    pub cpu: Cpu,
    /// What the RPC paths did: the kernel counts here through
    /// [`Machine::statistics`](tern_core::machine::Machine::statistics), the
    /// fast paths their payload copies. Their calls they count in the port
    /// called (`Port::fast_migrated` and its neighbours), folded in here by
    /// every reader (`Kernel::statistics`): a call served is counted per
    /// port at no extra instruction.
    pub statistics: RpcStatistics,
    /// 64 zero bytes: the fast paths clear two general registers a load
    /// from them, and the SIMD first-use trap four vector registers.
    pub zeros: [u64; 8],
    /// Where the lending paths (the merged call, and the fast call into a
    /// merged server) keep a lent region's two words while they need every
    /// register (interrupts masked, one core). Zero at every other time:
    /// the fast call into a merged server hands these words over as the
    /// lend, so each path that fills them clears them again.
    pub lent: [u64; 2],
}

/// One domain as the fast path needs it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct DomainFast {
    /// Its bound handles' port records (`tern_core::handle::port_records`:
    /// the boxed record's address, 0 for a handle that is unbound or
    /// stale), for `CallBound` and `CallBoundWords`: the port without the
    /// port table. First, so that the fast paths index it from the block's
    /// address (`glue.rs` checks). Written by `publish` whenever a domain
    /// record may have changed, which every invalidation of a handle and
    /// every freeing of a port record makes so: an address here is a live
    /// port's whenever a fast path reads it.
    pub handle_ports: [u64; tern_core::abi::HANDLES],
    /// Its region.
    pub region_start: u64,
    /// End of its region.
    pub region_end: u64,
    /// Its capability words (`CapabilitySpace::port_words`).
    pub port_words: u64,
    /// How many.
    pub port_word_count: u64,
}

/// The one fast-path block (kernel data).
pub struct FastCell(pub UnsafeCell<FastPath>);

// SAFETY: written only with the kernel state locked and interrupts masked
// (through `block`), and by the fast paths, which run with interrupts
// masked on the same (single) core and never while the state is locked.
unsafe impl Sync for FastCell {}

/// The block `fastpath.s` reads.
#[unsafe(no_mangle)]
pub static TERN_FAST: FastCell = FastCell(UnsafeCell::new(FastPath {
    current: 0,
    activations: 0,
    domains: 0,
    ports: 0,
    threads: 0,
    cpu: Cpu { current: ThreadId(core::num::NonZeroU32::MIN), charged_at: 0 },
    statistics: RpcStatistics {
        migrated: 0,
        direct: 0,
        handed_off: 0,
        queued: 0,
        waited: 0,
        sidetracks: 0,
        longest_chain: 0,
        payload_copies: 0,
        lends_mapped: 0,
        splits: 0,
        restarts: 0,
        general: 0,
    },
    zeros: [0; 8],
    lent: [0; 2],
}));

/// The block, to read or change.
///
/// # Safety
/// Only with the kernel state locked and interrupts masked (the machine,
/// which lives in the kernel state, is the caller), so that no fast path
/// runs and no other borrow exists meanwhile.
pub unsafe fn block() -> &'static mut FastPath {
    // SAFETY: the caller's promise, see `FastCell`.
    unsafe { &mut *TERN_FAST.0.get() }
}

/// Whether the running thread's top activation needs the glue check on
/// the way back to it (`Kernel::way_back`): it is watched, or the thread
/// has none left. Read as the fast paths read, from this block, without
/// taking the kernel state: the common answer ("no") costs a few loads on
/// the general path's way out.
pub fn top_needs_check() -> bool {
    let saved = crate::cpu::mask_interrupts();
    // SAFETY: see `FastCell`: with interrupts masked on the one core no
    // publication runs meanwhile, and the block's `current` and
    // `activations` are kept (by publishing and by the switching fast
    // path) pointing at the running thread and the live activation table;
    // an activation number on a chain always indexes a live entry of it
    // (entry 0, "none", is null and checked).
    let needs = unsafe {
        let fast = &*TERN_FAST.0.get();
        match (fast.current as *const Thread).as_ref() {
            None => false,
            Some(thread) => match thread.top {
                None => true,
                Some(top) => {
                    let table = fast.activations as *const *const Activation;
                    (*table.add(top.get() as usize)).as_ref().is_none_or(|entry| entry.flags & Activation::WATCHED != 0)
                }
            },
        }
    };
    crate::cpu::restore_interrupts(saved);
    needs
}

/// The running thread as the fast paths know it, read without the kernel
/// state (for the kernel fault report): its number and the kernel stack
/// pointer it was last parked with (`KernelContext::stack_pointer`, which
/// lies in its own kernel stack — at the top if it has never been
/// parked); `None` before there is one.
pub fn running_thread() -> Option<(ThreadId, u64)> {
    let saved = crate::cpu::mask_interrupts();
    // SAFETY: see `FastCell` and `top_needs_check`: `current` points at the
    // running thread, kept so by publishing and by the switching fast
    // path, and its `kernel_context` at its boxed context, which lives as
    // long as the thread. Read through raw pointers; nothing is written.
    let running = unsafe {
        let thread = core::ptr::addr_of!((*TERN_FAST.0.get()).current).read() as *const Thread;
        if thread.is_null() {
            None
        } else {
            let id = core::ptr::addr_of!((*thread).id).read();
            let context = core::ptr::addr_of!((*thread).kernel_context).read() as *const crate::machine::KernelContext;
            let parked = if context.is_null() { 0 } else { core::ptr::addr_of!((*context).stack_pointer).read() };
            Some((id, parked))
        }
    };
    crate::cpu::restore_interrupts(saved);
    running
}

/// Most domains whose names the kernel fault report can give.
pub const NAMED_DOMAINS: usize = 256;

/// Domains' names by number (0 unused), kept where the kernel fault report
/// finds them without the kernel state, which the code that faulted may
/// hold ([`where_thread_is`]). Outside the heap, the kernel state and the
/// domain blocks, so that keeping them changes none of those.
struct NameCell(UnsafeCell<[&'static str; NAMED_DOMAINS]>);

// SAFETY: written only when a domain is made, with the kernel state locked
// and interrupts masked ([`name_domain`]); read only by the kernel fault
// report, after which the kernel never runs again.
unsafe impl Sync for NameCell {}

static DOMAIN_NAMES: NameCell = NameCell(UnsafeCell::new([""; NAMED_DOMAINS]));

/// Keep domain `id`'s name for the kernel fault report (with the kernel
/// state held: `domains::create`, through which every domain is made).
pub fn name_domain(id: DomainId, name: &'static str) {
    // SAFETY: see `NameCell`; no other reference to it exists meanwhile.
    let names = unsafe { &mut *DOMAIN_NAMES.0.get() };
    if let Some(slot) = names.get_mut(id.0 as usize) {
        *slot = name;
    }
}

/// Where thread `id` is, read as the fast paths read it — from this block,
/// without taking the kernel state: the domain of its top activation with
/// the domain's name (empty if not kept), or `None` when it has no
/// activation (it runs only in the kernel).
///
/// Only for the kernel fault report, which never returns to the code that
/// faulted: `id` must be a live thread's (the owner of a kernel stack that
/// was running); a record half-written by the faulting code reads wrong
/// here, or faults the report, which the report's own guard catches
/// (`exception.rs`). Nothing is written.
pub fn where_thread_is(id: ThreadId) -> Option<(DomainId, &'static str)> {
    let saved = crate::cpu::mask_interrupts();
    // SAFETY: see `FastCell`, and `top_needs_check`, which follows the same
    // pointers: with interrupts masked on the one core no publication runs
    // meanwhile; `threads`, `activations` and `domains` point at the live
    // tables, whose entries for a live thread, an activation on its chain
    // and that activation's domain are live (null ones are checked). Read
    // through raw pointers, copied out; the name is a `&'static str`.
    let place = unsafe {
        let fast = TERN_FAST.0.get();
        let threads = core::ptr::addr_of!((*fast).threads).read() as *const *const Thread;
        let activations = core::ptr::addr_of!((*fast).activations).read() as *const *const Activation;
        let thread = if threads.is_null() { core::ptr::null() } else { threads.add(id.get() as usize).read() };
        let top = if thread.is_null() { None } else { core::ptr::addr_of!((*thread).top).read() };
        let activation = match top {
            Some(top) if !activations.is_null() => activations.add(top.get() as usize).read(),
            _ => core::ptr::null(),
        };
        if activation.is_null() {
            None
        } else {
            let domain = core::ptr::addr_of!((*activation).domain).read();
            let names = &*DOMAIN_NAMES.0.get();
            Some((domain, names.get(domain.0 as usize).copied().unwrap_or("")))
        }
    };
    crate::cpu::restore_interrupts(saved);
    place
}

/// Bring the block up to date with the kernel state: the tables always,
/// the domain blocks when a domain record may have changed (their storage,
/// `domain_blocks`, and the table of pointers to them, `domain_table`,
/// are the machine's).
#[allow(clippy::vec_box)] // (the blocks' addresses must not move: see `Aarch64`)
#[inline]
pub fn publish(published: Published<'_>, domain_blocks: &mut Vec<Box<DomainFast>>, domain_table: &mut Vec<usize>) {
    if published.domains_changed {
        while domain_blocks.len() < published.domains.len() {
            domain_blocks.push(Box::default());
        }
        domain_table.clear();
        domain_table.push(0);
        for (record, fast) in published.domains.iter().zip(domain_blocks.iter_mut()) {
            let words = record.space.port_words();
            fast.region_start = record.domain.region.start;
            fast.region_end = record.domain.region.end;
            fast.port_words = words.as_ptr() as u64;
            fast.port_word_count = words.len() as u64;
            fast.handle_ports = tern_core::handle::port_records(&record.handles, published.objects);
            domain_table.push(&**fast as *const DomainFast as usize);
        }
    }
    // SAFETY: publishing runs with the kernel state locked and interrupts
    // masked (the machine is part of the kernel state).
    let fast = unsafe { block() };
    let objects = published.objects;
    fast.current = objects.thread(fast.cpu.current).map_or(0, |thread| thread as *const Thread as usize);
    fast.activations = objects.activation_table().base;
    fast.ports = objects.port_table().base;
    fast.threads = objects.thread_table().base;
    fast.domains = domain_table.as_ptr() as usize;
}
