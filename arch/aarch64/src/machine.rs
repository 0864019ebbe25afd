//! The machine interface, implemented for 64-bit Arm.
//!
//! [`Aarch64`] is what the kernel (`tern-core`) runs on: it lives inside
//! the kernel state (reached through [`crate::state`], one lock with
//! interrupts masked) and carries out what the kernel decides, with the
//! pieces of this crate that touch the hardware:
//!
//! - the processor's own state and the RPC statistics live in the fast
//!   paths' block ([`crate::fastpath::TERN_FAST`]), where the assembly
//!   reads and writes them too;
//! - views are TTBR0 values (a translation table and the domain's number as
//!   its ASID); [`crate::paging`] builds and changes the tables, [`crate::cpu`]
//!   installs them and keeps the TLB honest;
//! - domain memory is reached through the kernel's alias of the domain
//!   arena ([`crate::memory::kernel_address`]), on ranges the kernel has
//!   checked — copied with the kernel's one copy routine ([`crate::copy`]),
//!   never turned into a typed reference;
//! - each thread's kernel side is a kernel stack and a [`KernelContext`]
//!   saved while it is parked; a [`Switch`] carries two of them, decided
//!   under the lock and carried out after it ([`crate::threads::perform`]);
//!   kernel stacks are slots of chunks with a guard page below each
//!   ([`crate::stacks`]), unmapped in every view — so every view made is
//!   listed there.

use crate::fastpath::{self, DomainFast};
use crate::frame::TrapFrame;
use crate::memory::{self, IdentityTables};
use crate::paging::{self, Kind};
use crate::{copy, cpu, stacks, timer};
use alloc::boxed::Box;
use alloc::vec::Vec;
use tern_core::abi::{DomainMode, Error};
use tern_core::board::{DOMAIN_REGION, REGION_HEAP_OFFSET, REGION_STACKS_OFFSET};
use tern_core::frame::PhysRange;
use tern_core::heap::LockedHeap;
use tern_core::lend::{LentAccess, PageChange};
use tern_core::machine::{Cpu, Machine, Published, RegionMapping, RpcStatistics, UserFrame};
use tern_core::thread::{ThreadId, UserContext};

/// Bytes of a thread's kernel stack (above its unmapped guard page, see
/// [`crate::stacks`]).
pub const KERNEL_STACK: usize = 16 * 1024;

/// PSTATE of a protected domain's code: EL0t, interrupts unmasked.
pub const PSTATE_EL0T: u64 = 0b0000;
/// PSTATE of a merged domain's code: EL1t (EL1 on the domain's own stack,
/// SP_EL0, so that an exception from it arrives on the thread's kernel
/// stack like one from EL0), interrupts unmasked.
pub const PSTATE_EL1T: u64 = 0b0100;

/// The table address in a TTBR0 value (the ASID is in bits 48-63).
const ADDRESS_BITS: u64 = (1 << 48) - 1;

/// What a thread's kernel side needs saved while another thread runs
/// (`switch.s`).
#[repr(C)]
#[derive(Debug, Default)]
pub struct KernelContext {
    /// x19 to x30.
    pub registers: [u64; 12],
    /// The kernel stack pointer.
    pub stack_pointer: u64,
    /// d8 to d15.
    pub floating: [u64; 8],
    /// TPIDR_EL1: the thread's innermost upcall record.
    pub thread_pointer: u64,
}

/// A thread's kernel side (its trap frame's address lives in the thread
/// itself, `Thread::frame`, where the fast path reaches it).
#[derive(Debug)]
struct ThreadArch {
    /// Saved while not running (boxed: the switch keeps a raw pointer,
    /// also recorded in `Thread::kernel_context`).
    context: Box<KernelContext>,
    /// Its kernel stack (`None` for the boot thread, which uses the boot
    /// stack).
    kernel_stack: Option<PhysRange>,
}

/// Bytes of a thread's kernel side besides its stack (for reports).
pub const THREAD_KERNEL_SIDE_BYTES: usize = core::mem::size_of::<ThreadArch>() + core::mem::size_of::<KernelContext>();

/// A thread switch decided under the kernel state.
#[derive(Debug)]
#[must_use]
pub struct Switch {
    pub(crate) from: *mut KernelContext,
    pub(crate) to: *const KernelContext,
    pub(crate) view: u64,
}

unsafe extern "C" {
    fn tern_switch(from: *mut KernelContext, to: *const KernelContext);
    /// Where a new thread's kernel side starts (`switch.s`): it calls
    /// `threads::tern_thread_main`.
    fn tern_thread_start();
}

/// Carry out a switch: install the next thread's view and switch stacks.
/// Returns when the current thread runs again — in the view its switcher
/// installed for it, so nothing is left to do. Never call it holding the
/// state lock.
pub fn perform(switch: Switch) {
    if switch.from.is_null() || switch.to.is_null() {
        return;
    }
    let saved = cpu::mask_interrupts();
    cpu::switch_view(switch.view);
    // SAFETY: both contexts are boxed in the machine (inside the kernel
    // state) and live as long as their threads; `from` is the running
    // thread's, `to` a parked or new thread's. The state lock is not held.
    // Interrupts are masked across the switch and restored by whoever
    // resumes.
    unsafe { tern_switch(switch.from, switch.to) };
    cpu::restore_interrupts(saved);
}

/// 64-bit Arm, as the kernel sees it.
pub struct Aarch64 {
    kernel_view: u64,
    arena: PhysRange,
    threads: Vec<Option<ThreadArch>>,
    spare_stacks: Vec<PhysRange>,
    /// The slots not yet handed out of the newest chunk of kernel stacks.
    stack_chunk: PhysRange,
    /// Boxed: the fast paths hold each block's address, which must not
    /// move when the list grows.
    #[allow(clippy::vec_box)]
    domain_blocks: Vec<Box<DomainFast>>,
    domain_table: Vec<usize>,
}

impl Aarch64 {
    /// The machine, with the kernel's view installed and `arena` the
    /// domain arena (reached through its alias).
    pub fn new(kernel_view: u64, arena: PhysRange) -> Self {
        stacks::add_view(kernel_view & ADDRESS_BITS);
        Aarch64 {
            kernel_view,
            arena,
            threads: Vec::new(),
            spare_stacks: Vec::new(),
            stack_chunk: PhysRange::new(0, 0),
            domain_blocks: Vec::new(),
            domain_table: alloc::vec![0],
        }
    }

    fn set_thread(&mut self, thread: ThreadId, arch: ThreadArch) -> u64 {
        let context = &*arch.context as *const KernelContext as u64;
        let at = thread.get() as usize;
        if self.threads.len() <= at {
            self.threads.resize_with(at + 1, || None);
        }
        self.threads[at] = Some(arch);
        context
    }

    fn thread(&mut self, thread: ThreadId) -> Option<&mut ThreadArch> {
        self.threads.get_mut(thread.get() as usize)?.as_mut()
    }

    /// How `view` maps `address`: the access its leaf entry grants, or
    /// `None` if it is not mapped (for scenarios that check views).
    pub fn access_in_view(&self, view: u64, address: u64) -> Option<paging::Access> {
        let mut frames = memory::FRAMES.lock();
        let frames = frames.as_mut()?;
        paging::translate(&mut IdentityTables(frames), view & ADDRESS_BITS, address)
            .map(|(_, descriptor)| paging::Access::of(descriptor))
    }

    /// `thread`'s kernel stack (`None` for the boot thread, on the boot
    /// stack, and for no thread).
    pub fn kernel_stack_of(&self, thread: ThreadId) -> Option<PhysRange> {
        self.threads.get(thread.get() as usize)?.as_ref()?.kernel_stack
    }

    /// The threads whose kernel stack is `stack` (for the kernel fault
    /// report, when the kernel state could be taken): the one running on
    /// it, and any ended threads that had it before (their records keep
    /// the stack they gave back).
    pub fn threads_on_stack(&self, stack: PhysRange) -> impl Iterator<Item = ThreadId> + '_ {
        self.threads.iter().enumerate().filter_map(move |(number, arch)| {
            let owned = arch.as_ref()?.kernel_stack == Some(stack);
            owned.then(|| core::num::NonZeroU32::new(number as u32).map(ThreadId)).flatten()
        })
    }

    fn with_tables<R>(&mut self, body: impl FnOnce(&mut IdentityTables<'_>) -> R) -> Option<R> {
        let mut frames = memory::FRAMES.lock();
        Some(body(&mut IdentityTables(frames.as_mut()?)))
    }
}

impl UserFrame for TrapFrame {
    fn register(&self, index: usize) -> u64 {
        self.x[index]
    }

    fn set_register(&mut self, index: usize, value: u64) {
        self.x[index] = value;
    }

    fn context(&self) -> UserContext {
        UserContext { x: self.x, sp: self.sp_el0, pc: self.elr, pstate: self.spsr }
    }

    fn set_context(&mut self, context: &UserContext) {
        self.x = context.x;
        self.sp_el0 = context.sp;
        self.elr = context.pc;
        self.spsr = context.pstate;
    }

    fn repeat_call(&mut self) {
        self.elr -= 4;
    }
}

fn lent_kind(access: LentAccess) -> Kind {
    match access {
        LentAccess::ReadOnly => Kind::LentReadOnly,
        LentAccess::ReadWrite => Kind::LentReadWrite,
    }
}

fn table_error(error: paging::MapError) -> Error {
    // A refusal other than for memory would mean the kernel's records and
    // the table disagree: the call's failure, not a panic.
    if error == paging::MapError::AlreadyMapped { Error::Busy } else { Error::OutOfMemory }
}

impl Machine for Aarch64 {
    type Frame = TrapFrame;
    type Switch = Switch;
    type Stack = PhysRange;

    fn cpu(&self) -> &Cpu {
        // SAFETY: the machine is part of the kernel state, reached only
        // with it locked and interrupts masked (see `fastpath::block`).
        unsafe { &fastpath::block().cpu }
    }

    fn cpu_mut(&mut self) -> &mut Cpu {
        // SAFETY: as in `cpu`; `&mut self` keeps a second borrow from
        // being made through the machine meanwhile.
        unsafe { &mut fastpath::block().cpu }
    }

    fn counter(&self) -> u64 {
        timer::counter()
    }

    fn entry_state(mode: DomainMode) -> u64 {
        match mode {
            DomainMode::Protected => PSTATE_EL0T,
            DomainMode::Merged => PSTATE_EL1T,
        }
    }

    fn kernel_view(&self) -> u64 {
        self.kernel_view
    }

    fn view(&self) -> u64 {
        cpu::translation()
    }

    fn switch_view(&mut self, view: u64) {
        cpu::switch_view(view);
    }

    fn new_domain_view(&mut self, region: PhysRange, asid: u16) -> Result<u64, Error> {
        if stacks::views_full() {
            return Err(Error::OutOfMemory);
        }
        let kernel_view = self.kernel_view;
        let table = self
            .with_tables(|tables| paging::derive_view(tables, kernel_view, region))
            .ok_or(Error::OutOfMemory)?
            .map_err(|_| Error::OutOfMemory)?;
        cpu::publish_tables();
        stacks::add_view(table);
        let view = table | u64::from(asid) << 48;
        let alias = memory::kernel_address(self.arena, region.start as usize);
        // SAFETY: the slot belongs to the arena, which the kernel reserved
        // at boot and maps (EL1 only) at its alias; no domain uses it yet.
        unsafe { core::ptr::write_bytes(alias as *mut u8, 0, DOMAIN_REGION as usize) };
        // The heap's bookkeeping holds the addresses the domain will use
        // (its identity addresses), so it is built through the domain's
        // own view, where those are mapped (read-write for EL1 as well).
        let previous = cpu::translation();
        cpu::switch_view(view);
        // SAFETY: the domain's view maps its whole region read-write; the
        // region is zeroed and unused; interrupts are masked (the kernel
        // state is held), and the kernel's own mappings are in every view.
        unsafe {
            let heap = (region.start + REGION_HEAP_OFFSET) as *mut LockedHeap;
            heap.write(LockedHeap::empty());
            let bookkeeping = REGION_HEAP_OFFSET + core::mem::size_of::<LockedHeap>().next_multiple_of(64) as u64;
            (*heap).add_region((region.start + bookkeeping) as usize, (REGION_STACKS_OFFSET - bookkeeping) as usize);
        }
        cpu::switch_view(previous);
        Ok(view)
    }

    fn drop_domain_view(&mut self, view: u64, region: PhysRange) {
        let kernel_root = self.kernel_view & ADDRESS_BITS;
        // The view is not installed (its domain has no activation left for
        // a thread to run in); every table it made goes back to the frames.
        // Off the list of views new stack chunks are unmapped in first: its
        // tables are about to be freed.
        stacks::remove_view(view & ADDRESS_BITS);
        self.with_tables(|tables| paging::free_view(tables, kernel_root, view & ADDRESS_BITS, region));
        cpu::publish_tables();
        cpu::flush_asid((view >> 48) as u16);
    }

    fn map_region(&mut self, view: u64, region: PhysRange, mapping: Option<RegionMapping>) -> Result<(), Error> {
        let kind = mapping.map(|mapping| match mapping {
            RegionMapping::Protected => Kind::DomainData,
            RegionMapping::Merged => Kind::MergedData,
        });
        self.with_tables(|tables| paging::remap(tables, view & ADDRESS_BITS, region, kind))
            .ok_or(Error::OutOfMemory)?
            .map_err(|_| Error::OutOfMemory)
    }

    fn flush_translations(&mut self) {
        cpu::flush_translations();
    }

    fn map_lent(&mut self, view: u64, change: PageChange) -> Result<(), Error> {
        let (root, asid) = (view & ADDRESS_BITS, (view >> 48) as u16);
        self.with_tables(|tables| match change {
            PageChange::Map(pages, access) => paging::map_pages(tables, root, pages, lent_kind(access)),
            PageChange::Unmap(pages) => {
                paging::unmap_pages(tables, root, pages);
                Ok(())
            }
            PageChange::Remap(pages, access) => {
                paging::unmap_pages(tables, root, pages);
                cpu::flush_asid(asid);
                paging::map_pages(tables, root, pages, lent_kind(access))
            }
        })
        .ok_or(Error::OutOfMemory)?
        .map_err(table_error)
    }

    fn lent_done(&mut self, view: u64, unmapped: bool) {
        cpu::publish_tables();
        if unmapped {
            cpu::flush_asid((view >> 48) as u16);
        }
    }

    fn copy(&mut self, from: usize, to: usize, length: usize) {
        let source = memory::kernel_address(self.arena, from);
        let destination = memory::kernel_address(self.arena, to);
        // SAFETY: both ranges were checked against their domains' records
        // by the kernel: Normal memory the alias maps for EL1 (the arena),
        // or the image, mapped everywhere. They overlap only when a domain
        // sends to itself from a buffer overlapping the one it receives
        // into, which `move_bytes` allows; no reference to either exists.
        unsafe { copy::move_bytes(destination as *mut u8, source as *const u8, length) };
    }

    fn read(&self, address: usize, into: &mut [u8]) {
        let source = memory::kernel_address(self.arena, address);
        // SAFETY: the kernel checked the range readable by a domain (its
        // region, reached through the alias, or the shared image, mapped
        // everywhere: Normal memory); `into` is the kernel's own memory,
        // apart from both; bytes are copied, no reference to the source is
        // made.
        unsafe { copy::copy_bytes(into.as_mut_ptr(), source as *const u8, into.len()) };
    }

    fn write(&mut self, address: usize, bytes: &[u8]) {
        let destination = memory::kernel_address(self.arena, address);
        // SAFETY: the kernel checked the range writable by a domain (its
        // region, reached through the alias: Normal memory, apart from the
        // kernel's `bytes`); bytes are copied.
        unsafe { copy::copy_bytes(destination as *mut u8, bytes.as_ptr(), bytes.len()) };
    }

    /// One `ldr` in `asm!`: the kernel runs on Normal memory with
    /// SCTLR_EL1.A clear, so an unaligned load is allowed, while the
    /// compiler (which keeps the target's strict alignment: see
    /// `docs/design.md`) would make eight byte loads of it.
    #[inline]
    fn read_word(&self, address: usize) -> u64 {
        let source = memory::kernel_address(self.arena, address);
        let word: u64;
        // SAFETY: the kernel checked the 8 bytes readable by a domain (its
        // region, reached through the alias, or the shared image), Normal
        // memory; `ldr` reads those 8 bytes only.
        unsafe {
            core::arch::asm!("ldr {word}, [{source}]", source = in(reg) source, word = out(reg) word,
                options(readonly, nostack, preserves_flags));
        }
        word
    }

    /// One `str` in `asm!`, as in `read_word`.
    #[inline]
    fn write_word(&mut self, address: usize, value: u64, bytes: usize) {
        let destination = memory::kernel_address(self.arena, address);
        // SAFETY: the kernel checked the bytes writable by a domain (its
        // region, reached through the alias), Normal memory; the store
        // writes `bytes` (4 or 8) of them only.
        unsafe {
            if bytes == 4 {
                core::arch::asm!("str {value:w}, [{destination}]", destination = in(reg) destination,
                    value = in(reg) value, options(nostack, preserves_flags));
            } else {
                core::arch::asm!("str {value}, [{destination}]", destination = in(reg) destination,
                    value = in(reg) value, options(nostack, preserves_flags));
            }
        }
    }

    /// A spare stack (its guard page still unmapped), or the next slot of
    /// the newest chunk, or the first of a new chunk (`stacks::new_chunk`).
    fn take_stack(&mut self) -> Option<PhysRange> {
        if let Some(stack) = self.spare_stacks.pop() {
            return Some(stack);
        }
        if self.stack_chunk.len() < stacks::SLOT {
            self.stack_chunk = stacks::new_chunk()?;
        }
        let stack = stacks::stack_of_slot(self.stack_chunk.start);
        self.stack_chunk.start += stacks::SLOT;
        Some(stack)
    }

    fn return_stack(&mut self, stack: PhysRange) {
        self.spare_stacks.push(stack);
    }

    fn start_thread(&mut self, thread: ThreadId, stack: PhysRange) -> u64 {
        let mut context = Box::<KernelContext>::default();
        context.stack_pointer = stack.end;
        context.registers[11] = tern_thread_start as *const () as u64; // x30: where `ret` lands
        self.set_thread(thread, ThreadArch { context, kernel_stack: Some(stack) })
    }

    fn adopt_thread(&mut self, thread: ThreadId) -> u64 {
        stacks::set_boot_thread(thread);
        self.set_thread(thread, ThreadArch { context: Box::default(), kernel_stack: None })
    }

    fn owns_stack(&self, thread: ThreadId) -> bool {
        self.threads.get(thread.get() as usize).and_then(Option::as_ref).is_some_and(|arch| arch.kernel_stack.is_some())
    }

    fn thread_ended(&mut self, thread: ThreadId) {
        // The next thread made takes the stack, which can only happen once
        // this one has switched away for good (one core; a thread is made
        // by a running thread).
        if let Some(stack) = self.thread(thread).and_then(|arch| arch.kernel_stack) {
            self.spare_stacks.push(stack);
        }
    }

    fn forget_thread(&mut self, thread: ThreadId) {
        if let Some(slot) = self.threads.get_mut(thread.get() as usize) {
            *slot = None;
        }
    }

    fn switch(&mut self, from: ThreadId, to: ThreadId, view: u64) -> Switch {
        let from = self.thread(from).map_or(core::ptr::null_mut(), |arch| &mut *arch.context as *mut KernelContext);
        let to = self.thread(to).map_or(core::ptr::null(), |arch| &*arch.context as *const KernelContext);
        Switch { from, to, view }
    }

    fn console_write(&mut self, text: &str) {
        crate::console::CONSOLE.lock().write_text(text);
    }

    fn statistics(&mut self) -> &mut RpcStatistics {
        // SAFETY: as in `cpu_mut`.
        unsafe { &mut fastpath::block().statistics }
    }

    fn publish(&mut self, published: Published<'_>) {
        fastpath::publish(published, &mut self.domain_blocks, &mut self.domain_table);
    }
}
