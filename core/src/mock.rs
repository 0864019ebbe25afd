//! A mock machine, so that the kernel runs in host tests.
//!
//! [`MockMachine`] implements [`Machine`] with plain data: memory is a
//! sparse map of pages (identity addresses, no alias), views are numbers,
//! and what a view maps is recorded (regions by mapping, lent pages by
//! access) for tests to read back. A switch is only a record of who runs
//! next: the test plays the processor, running each thread's calls with
//! that thread's own [`MockFrame`], in the order the kernel's answers
//! ([`crate::kernel::Next`]) say.
//!
//! [`no_servers`] stands in for the in-kernel-server layer: fixed entry
//! points and no mode changes (the merge transition is `tern-inks`'s, and
//! tested there on this same mock).
//!
//! Built for this crate's tests and, with the `mock` feature, for other
//! crates' tests; never in an image.

use crate::abi::{DomainMode, Error};
use crate::domain::DomainId;
use crate::frame::{FRAME_SIZE, PhysRange};
use crate::kernel::{Kernel, ServerLayer};
use crate::lend::{LentAccess, PageChange};
use crate::machine::{Cpu, Machine, Published, RegionMapping, RpcStatistics, UserFrame};
use crate::thread::{ThreadId, UserContext};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// A thread's registers at a kernel entry, as a test holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MockFrame {
    /// Everything a domain's code sees.
    pub context: UserContext,
}

impl MockFrame {
    /// A frame making kernel call `call` with `arguments` in x0 upwards,
    /// from `pc`.
    pub fn calling(call: crate::abi::Call, arguments: &[u64], pc: u64) -> Self {
        let mut frame = MockFrame::default();
        frame.context.x[..arguments.len()].copy_from_slice(arguments);
        frame.context.x[8] = call as u64;
        frame.context.pc = pc;
        frame
    }

    /// The call's outcome as the frame holds it (x0/x1).
    pub fn result(&self) -> Result<usize, Error> {
        crate::abi::decode_result(self.context.x[0] as usize, self.context.x[1] as usize)
    }
}

impl UserFrame for MockFrame {
    fn register(&self, index: usize) -> u64 {
        self.context.x[index]
    }

    fn set_register(&mut self, index: usize, value: u64) {
        self.context.x[index] = value;
    }

    fn context(&self) -> UserContext {
        self.context
    }

    fn set_context(&mut self, context: &UserContext) {
        self.context = *context;
    }

    fn repeat_call(&mut self) {
        self.context.pc -= 4;
    }
}

/// A thread switch the kernel decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockSwitch {
    /// The thread that stops running.
    pub from: ThreadId,
    /// The thread that runs next.
    pub to: ThreadId,
    /// The view it runs in.
    pub view: u64,
}

/// Where the stand-in for the in-kernel-server layer says upcalls enter
/// ([`no_servers`]).
pub const UPCALL_ENTRY: u64 = 0x8_0000;
/// Where the mock layer says the bound-handle paths start (stale, trap,
/// direct, merged: 0x100 apart; each one's register form 0x80 after it), as
/// seen in published handle records.
pub const BOUND_ENTRIES: u64 = 0x9_0000;
/// Where the stand-in layer says a general-path `CallBoundWords` with no
/// reply buffer resumes (`ServerLayer::bound_words_general`).
pub const BOUND_WORDS_GENERAL: u64 = 0x9_1004;

/// A stand-in for the in-kernel-server layer: fixed entries, no mode
/// changes (the merge transition is `tern-inks`'s, and tested there on this
/// same mock with the real layer).
pub fn no_servers<M: Machine>() -> ServerLayer<M> {
    fn refuse<M: Machine>(_: &mut Kernel<M>, _: DomainId, _: DomainMode) -> Result<(), Error> {
        Err(Error::NoSuchCall)
    }
    ServerLayer {
        upcall_entry: UPCALL_ENTRY,
        dispatch_entries: [UPCALL_ENTRY + 0x100, UPCALL_ENTRY + 0x200],
        dispatch_register_entry: UPCALL_ENTRY + 0x180,
        bound_entries: [0, 1, 2, 3].map(|path| {
            [BOUND_ENTRIES + 0x100 * path, BOUND_ENTRIES + 0x100 * path + 0x80, BOUND_ENTRIES + 0x100 * path + 0xc0]
        }),
        bound_words_general: BOUND_WORDS_GENERAL,
        set_mode: refuse,
    }
}

/// The mock machine.
pub struct MockMachine {
    /// The processor's own state.
    pub cpu: Cpu,
    /// The counter; tests move it on.
    pub clock: u64,
    /// The view installed now.
    pub view: u64,
    /// Memory, by page.
    pub memory: BTreeMap<u64, Box<[u8; FRAME_SIZE]>>,
    /// How each view maps each domain region (by region start).
    pub regions: BTreeMap<(u64, u64), RegionMapping>,
    /// Lent pages mapped into each view, and how.
    pub lent: BTreeMap<(u64, u64), LentAccess>,
    /// Full TLB flushes.
    pub flushes: usize,
    /// TLB flushes by ASID (after a lend unmapped pages).
    pub asid_flushes: usize,
    /// What domains wrote to the console.
    pub console: String,
    /// The RPC statistics.
    pub statistics: RpcStatistics,
    /// Kernel stacks that may still be made (`None`: any number).
    pub stacks_left: Option<usize>,
    /// Kernel stacks of ended threads, for reuse.
    pub spare_stacks: Vec<u32>,
    /// Which thread owns which kernel stack.
    pub stacks: BTreeMap<ThreadId, u32>,
    /// Times the fast paths' view was published.
    pub publications: usize,
    /// Each domain's handles as the fast paths read them
    /// (`handle::port_records`), by domain number - 1: rewritten when a
    /// domain record may have changed, as the AArch64 machine's domain
    /// blocks are.
    pub handle_ports: Vec<[u64; crate::abi::HANDLES]>,
    /// Views dropped (their slots reused), in order.
    pub dropped_views: Vec<u64>,
    next_stack: u32,
    next_table: u64,
}

impl Default for MockMachine {
    fn default() -> Self {
        MockMachine {
            cpu: Cpu { current: ThreadId(core::num::NonZeroU32::MIN), charged_at: 0 },
            clock: 0,
            view: MockMachine::KERNEL_VIEW,
            memory: BTreeMap::new(),
            regions: BTreeMap::new(),
            lent: BTreeMap::new(),
            flushes: 0,
            asid_flushes: 0,
            console: String::new(),
            statistics: RpcStatistics::default(),
            stacks_left: None,
            spare_stacks: Vec::new(),
            stacks: BTreeMap::new(),
            publications: 0,
            handle_ports: Vec::new(),
            dropped_views: Vec::new(),
            next_stack: 1,
            next_table: 0x10_0000,
        }
    }
}

impl MockMachine {
    /// The kernel's view.
    pub const KERNEL_VIEW: u64 = 0x1000;

    /// Write `bytes` at `address` (a test's store into a domain).
    pub fn poke(&mut self, address: u64, bytes: &[u8]) {
        for (offset, &byte) in bytes.iter().enumerate() {
            let at = address + offset as u64;
            let page = self.memory.entry(at / FRAME_SIZE as u64).or_insert_with(|| Box::new([0; FRAME_SIZE]));
            page[(at % FRAME_SIZE as u64) as usize] = byte;
        }
    }

    /// Read `length` bytes at `address` (a test's load from a domain).
    pub fn peek(&self, address: u64, length: usize) -> Vec<u8> {
        (0..length as u64)
            .map(|offset| {
                let at = address + offset;
                self.memory.get(&(at / FRAME_SIZE as u64)).map_or(0, |page| page[(at % FRAME_SIZE as u64) as usize])
            })
            .collect()
    }

    fn lend_pages(pages: PhysRange) -> impl Iterator<Item = u64> {
        (pages.start..pages.end).step_by(FRAME_SIZE)
    }
}

impl Machine for MockMachine {
    type Frame = MockFrame;
    type Switch = MockSwitch;
    type Stack = u32;

    fn cpu(&self) -> &Cpu {
        &self.cpu
    }

    fn cpu_mut(&mut self) -> &mut Cpu {
        &mut self.cpu
    }

    fn counter(&self) -> u64 {
        self.clock
    }

    fn entry_state(mode: DomainMode) -> u64 {
        match mode {
            DomainMode::Protected => 0b0000,
            DomainMode::Merged => 0b0100,
        }
    }

    fn kernel_view(&self) -> u64 {
        Self::KERNEL_VIEW
    }

    fn view(&self) -> u64 {
        self.view
    }

    fn switch_view(&mut self, view: u64) {
        self.view = view;
    }

    fn new_domain_view(&mut self, region: PhysRange, asid: u16) -> Result<u64, Error> {
        let pages = region.start / FRAME_SIZE as u64..region.end / FRAME_SIZE as u64;
        self.memory.retain(|page, _| !pages.contains(page));
        let view = self.next_table | (asid as u64) << 48;
        self.next_table += FRAME_SIZE as u64;
        self.regions.insert((view, region.start), RegionMapping::Protected);
        Ok(view)
    }

    fn drop_domain_view(&mut self, view: u64, region: PhysRange) {
        self.regions.retain(|&(of, _), _| of != view);
        self.lent.retain(|&(of, _), _| of != view);
        let _ = region;
        self.asid_flushes += 1;
        self.dropped_views.push(view);
    }

    fn map_region(&mut self, view: u64, region: PhysRange, mapping: Option<RegionMapping>) -> Result<(), Error> {
        match mapping {
            Some(mapping) => self.regions.insert((view, region.start), mapping),
            None => self.regions.remove(&(view, region.start)),
        };
        Ok(())
    }

    fn flush_translations(&mut self) {
        self.flushes += 1;
    }

    fn map_lent(&mut self, table: u64, change: PageChange) -> Result<(), Error> {
        match change {
            PageChange::Map(pages, access) => {
                if Self::lend_pages(pages).any(|page| self.lent.contains_key(&(table, page))) {
                    return Err(Error::Busy);
                }
                for page in Self::lend_pages(pages) {
                    self.lent.insert((table, page), access);
                }
            }
            PageChange::Remap(pages, access) => {
                for page in Self::lend_pages(pages) {
                    self.lent.insert((table, page), access);
                }
            }
            PageChange::Unmap(pages) => {
                for page in Self::lend_pages(pages) {
                    self.lent.remove(&(table, page));
                }
            }
        }
        Ok(())
    }

    fn lent_done(&mut self, _: u64, unmapped: bool) {
        self.asid_flushes += usize::from(unmapped);
    }

    fn copy(&mut self, from: usize, to: usize, length: usize) {
        let bytes = self.peek(from as u64, length);
        self.poke(to as u64, &bytes);
    }

    fn read(&self, address: usize, into: &mut [u8]) {
        into.copy_from_slice(&self.peek(address as u64, into.len()));
    }

    fn write(&mut self, address: usize, bytes: &[u8]) {
        self.poke(address as u64, bytes);
    }

    fn read_word(&self, address: usize) -> u64 {
        let mut word = [0; 8];
        word.copy_from_slice(&self.peek(address as u64, 8));
        u64::from_le_bytes(word)
    }

    fn write_word(&mut self, address: usize, value: u64, bytes: usize) {
        self.poke(address as u64, &value.to_le_bytes()[..bytes.min(8)]);
    }

    fn take_stack(&mut self) -> Option<u32> {
        if let Some(stack) = self.spare_stacks.pop() {
            return Some(stack);
        }
        match &mut self.stacks_left {
            Some(0) => return None,
            Some(left) => *left -= 1,
            None => {}
        }
        self.next_stack += 1;
        Some(self.next_stack)
    }

    fn return_stack(&mut self, stack: u32) {
        self.spare_stacks.push(stack);
    }

    fn start_thread(&mut self, thread: ThreadId, stack: u32) -> u64 {
        self.stacks.insert(thread, stack);
        0x4000_0000 + u64::from(thread.get()) * 0x100
    }

    fn adopt_thread(&mut self, _: ThreadId) -> u64 {
        0x4000_0000
    }

    fn owns_stack(&self, thread: ThreadId) -> bool {
        self.stacks.contains_key(&thread)
    }

    fn thread_ended(&mut self, thread: ThreadId) {
        if let Some(stack) = self.stacks.remove(&thread) {
            self.spare_stacks.push(stack);
        }
    }

    fn forget_thread(&mut self, thread: ThreadId) {
        self.stacks.remove(&thread);
    }

    fn switch(&mut self, from: ThreadId, to: ThreadId, view: u64) -> MockSwitch {
        MockSwitch { from, to, view }
    }

    fn console_write(&mut self, text: &str) {
        self.console.push_str(text);
    }

    fn statistics(&mut self) -> &mut RpcStatistics {
        &mut self.statistics
    }

    fn publish(&mut self, published: Published<'_>) {
        self.publications += 1;
        if published.domains_changed {
            self.handle_ports = published
                .domains
                .iter()
                .map(|record| crate::handle::port_records(&record.handles, published.objects))
                .collect();
        }
    }
}
