//! The assembly, assembled with what it takes from Rust.
//!
//! `boot.s` (start-up), `vectors.s` with `fastpath.s` (the exception
//! vectors, the RPC fast paths and the merged call path: one unit, sharing
//! macros and the trap frame's layout), `upcall.s` and `switch.s`. Every
//! constant they use — register values, frame sizes, the offsets of the
//! kernel objects' fields the fast paths walk, call numbers — is passed
//! from Rust as a `const` operand, and the neighbours the assembly loads
//! as pairs are asserted at compile time, so the two cannot disagree.

use crate::paging::MAIR_VALUE;
use crate::{fastpath, frame, machine};
use tern_core::machine::{Cpu, RpcStatistics};

/// SCTLR_EL1's reserved-one bits (Armv8.0), the value set before the MMU is on.
const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// SCTLR_EL1 for the kernel: MMU (M), data cache (C), stack alignment
/// checks at EL1 and EL0 (SA, SA0), instruction cache (I), and EL0 may use
/// `dc zva` (DZE) so memset in domains works. WFI/WFE at EL0 trap.
const SCTLR_EL1_KERNEL: u64 = SCTLR_EL1_RESET | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12) | (1 << 14);
/// TCR_EL1 without IPS and AS (filled in from the CPU's ID registers):
/// T0SZ = 25 (39-bit addresses), inner/outer write-back walks, inner
/// shareable, 4 KiB granule; TTBR1 walks disabled (EPD1) with a valid TG1.
const TCR_EL1_BASE: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 30);
/// SCR_EL3 when leaving EL3: NS, RES1 bits 4-5, HVC enabled, EL2 is AArch64.
const SCR_EL3: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10);
/// HCR_EL2: EL1 is AArch64; nothing trapped to EL2.
const HCR_EL2: u64 = 1 << 31;
/// CPTR_EL2: reserved-one bits only, so FP/SIMD is not trapped.
const CPTR_EL2: u64 = 0x33ff;

core::arch::global_asm!(
    include_str!("boot.s"),
    scr_el3 = const SCR_EL3,
    hcr_el2 = const HCR_EL2,
    cptr_el2 = const CPTR_EL2,
    sctlr_el1_reset = const SCTLR_EL1_RESET,
    sctlr_el1_kernel = const SCTLR_EL1_KERNEL,
    mair = const MAIR_VALUE,
    tcr = const TCR_EL1_BASE,
);

// copy.s, vectors.s and fastpath.s are one assembly unit: the fast paths
// share the vectors' macros and frame layout, and the copy's macro.

mod fast_offsets {
    use core::mem::offset_of;
    use tern_core::capability::PortId;
    use tern_core::thread::{Activation, Port, Thread, UserContext};
    pub const THREAD_TOP: usize = offset_of!(Thread, top);
    pub const THREAD_ID: usize = offset_of!(Thread, id);
    const SAVED: usize = offset_of!(Activation, saved);
    pub const ACT_SAVED_X19: usize = SAVED + offset_of!(UserContext, x) + 19 * 8;
    pub const ACT_SAVED_SP: usize = SAVED + offset_of!(UserContext, sp);
    pub const ACT_SAVED_PSTATE: usize = SAVED + offset_of!(UserContext, pstate);
    pub const ACT_CALLER: usize = offset_of!(Activation, caller);
    pub const ACT_NEXT_FREE: usize = offset_of!(Activation, next_free);
    pub const ACT_PORT: usize = offset_of!(Activation, port);
    pub const ACT_DOMAIN: usize = offset_of!(Activation, domain);
    pub const ACT_SIDETRACK: usize = offset_of!(Activation, flags);
    pub const ACT_ENTRY: usize = offset_of!(Activation, entry);
    pub const ACT_REGISTER_ENTRY: usize = offset_of!(Activation, register_entry);
    pub const ACT_REGISTER_SP: usize = offset_of!(Activation, register_sp);
    pub const ACT_STACK_TOP: usize = offset_of!(Activation, stack_top);
    pub const ACT_VIEW: usize = offset_of!(Activation, view);
    pub const ACT_CONTEXT: usize = offset_of!(Activation, context);
    pub const ACT_PORT_RECORD: usize = offset_of!(Activation, port_record);
    pub const ACT_REPLY_ADDRESS: usize = offset_of!(Activation, reply_address);
    pub const ACT_REPLY_CAPACITY: usize = offset_of!(Activation, reply_capacity);
    pub const ACT_REPLY_DOMAIN: usize = offset_of!(Activation, reply_domain);
    pub const ACT_REPLY_REGISTERS: usize = offset_of!(Activation, reply_registers);
    pub const PORT_POOL_HEAD: usize = offset_of!(Port, pool_head);
    pub const PORT_WAITING: usize = offset_of!(Port, waiting);
    pub const PORT_SIDETRACK: usize = offset_of!(Port, sidetrack);
    pub const PORT_RECEIVERS_HEAD: usize = offset_of!(Port, receivers_head);
    pub const PORT_RECEIVERS_TAIL: usize = offset_of!(Port, receivers_tail);
    pub const PORT_QUEUED: usize = offset_of!(Port, queued);
    // The fast paths' per-port call counts (`Port::take_fast_counts` moves them into
    // the statistics): one `ldr`/`str` pair each, off the port's register.
    pub const PORT_FAST_MIGRATED: usize = offset_of!(Port, fast_migrated);
    pub const PORT_FAST_DIRECT: usize = offset_of!(Port, fast_direct);
    pub const PORT_FAST_HANDED_OFF: usize = offset_of!(Port, fast_handed_off);
    pub const THREAD_STATE: usize = offset_of!(Thread, state);
    /// The state's payload follows its 32-bit tag at offset 8 (`repr(C, u32)`).
    pub const THREAD_STATE_PAYLOAD: usize = THREAD_STATE + 8;
    pub const THREAD_FRAME: usize = offset_of!(Thread, frame);
    pub const THREAD_KERNEL_CONTEXT: usize = offset_of!(Thread, kernel_context);
    pub const THREAD_SERVING: usize = offset_of!(Thread, serving);
    pub const THREAD_NEXT_QUEUED: usize = offset_of!(Thread, next_queued);
    pub const THREAD_RECEIVE_ADDRESS: usize = offset_of!(Thread, receive_address);
    pub const THREAD_RECEIVE_DOMAIN: usize = offset_of!(Thread, receive_domain);
    pub const THREAD_REPLY_ADDRESS: usize = offset_of!(Thread, reply_address);
    pub const THREAD_REPLY_DOMAIN: usize = offset_of!(Thread, reply_domain);
    pub const THREAD_SERVES: usize = offset_of!(Thread, serves);
    pub const THREAD_CPU_TIME: usize = offset_of!(Thread, cpu_time);
    pub const STATE_RUNNING: u32 = 1;
    pub const STATE_WAITING_FOR_REPLY: u32 = 4;
    pub const STATE_RECEIVING: u32 = 5;
    const _: () = assert!(offset_of!(Thread, receive_capacity) == THREAD_RECEIVE_ADDRESS + 8);
    const _: () = assert!(offset_of!(Thread, reply_capacity) == THREAD_REPLY_ADDRESS + 8);
    const _: () = assert!(core::mem::size_of::<tern_core::thread::ThreadState>() == 16);
    // Neighbours the fast paths load with one `ldp`.
    use crate::fastpath::FastPath;
    const _: () = assert!(offset_of!(FastPath, activations) == offset_of!(FastPath, current) + 8);
    const _: () = assert!(offset_of!(FastPath, ports) == offset_of!(FastPath, domains) + 8);
    const _: () = assert!(THREAD_ID == THREAD_TOP + 4);
    // `adrp` alone gives the block's address.
    const _: () = assert!(core::mem::align_of::<FastPath>() == 4096);
    // `orr` with the alias offset adds it: one bit above every arena.
    const _: () = assert!(tern_core::board::ARENA_ALIAS_OFFSET.is_power_of_two());
    // The assembly's paired loads and stores rely on these neighbours.
    const _: () = assert!(offset_of!(Activation, occupant) == ACT_CALLER + 4);
    const _: () = assert!(ACT_REPLY_CAPACITY == ACT_REPLY_ADDRESS + 8);
    // CALL_PUSH writes reply_domain and reply_registers as one 32-bit word
    // (w14: the domain's number, bit 16 the byte): the byte right after the
    // 16-bit number, and the word's last byte padding before lent_address.
    const _: () = assert!(ACT_REPLY_REGISTERS == ACT_REPLY_DOMAIN + 2);
    const _: () = assert!(ACT_REPLY_DOMAIN.is_multiple_of(4));
    const _: () = assert!(offset_of!(Activation, lent_address) >= ACT_REPLY_DOMAIN + 4);
    // An upcall loads (entry, PSTATE) and (stack top, view) as pairs.
    const _: () = assert!(offset_of!(Activation, entry_pstate) == ACT_ENTRY + 8);
    // The words path loads (register entry, its stack pointer) as a pair.
    const _: () = assert!(ACT_REGISTER_SP == ACT_REGISTER_ENTRY + 8);
    const _: () = assert!(ACT_VIEW == ACT_STACK_TOP + 8);
    // The words path loads (view, context) as a pair.
    const _: () = assert!(ACT_CONTEXT == ACT_VIEW + 8);
    // ... and tests a handle's number with `ccmp` (a 5-bit immediate).
    const _: () = assert!(tern_core::abi::HANDLES >= 1 && tern_core::abi::HANDLES <= 32);
    // One 64-bit load at ACT_PORT gives the port (bits 0-31), the domain
    // (bits 32-47) and the sidetrack flag (bit 48).
    const _: () = assert!(ACT_DOMAIN == ACT_PORT + 4 && ACT_SIDETRACK == ACT_PORT + 6);
    const _: () = assert!(core::mem::size_of::<tern_core::domain::DomainId>() == 2);
    // "Carries no right" is "the header's upper 32 bits are zero".
    const _: () = assert!(tern_core::abi::NO_RIGHT == 0);
    use crate::fastpath::DomainFast;
    const _: () = assert!(offset_of!(DomainFast, region_end) == offset_of!(DomainFast, region_start) + 8);
    // The bound paths index the handles' port records from the block's
    // address, eight bytes each.
    const _: () = assert!(offset_of!(DomainFast, region_start) == 8 * tern_core::abi::HANDLES);
    const _: () = assert!(offset_of!(DomainFast, handle_ports) == 0);
    const _: () = assert!(offset_of!(DomainFast, port_word_count) == offset_of!(DomainFast, port_words) + 8);
    const _: () = assert!(offset_of!(UserContext, pc) == offset_of!(UserContext, sp) + 8);
    const _: () = assert!(core::mem::size_of::<Option<PortId>>() == 4);
    const _: () = assert!(core::mem::size_of::<Option<tern_core::thread::ActivationId>>() == 4);
}

core::arch::global_asm!(
    include_str!("copy.s"),
    include_str!("vectors.s"),
    include_str!("fastpath.s"),
    irq_frame_size = const frame::INTERRUPT_FRAME_SIZE,
    null_call = const tern_core::abi::Call::Null as usize,
    fast_current = const core::mem::offset_of!(fastpath::FastPath, current),
    fast_activations = const core::mem::offset_of!(fastpath::FastPath, activations),
    fast_domains = const core::mem::offset_of!(fastpath::FastPath, domains),
    port_fast_migrated = const fast_offsets::PORT_FAST_MIGRATED,
    port_fast_direct = const fast_offsets::PORT_FAST_DIRECT,
    fast_lent = const core::mem::offset_of!(fastpath::FastPath, lent),
    call_lending = const tern_core::abi::Call::CallLending as usize,
    lend_max = const tern_core::abi::LEND_MAX,
    lend_length_mask = const !tern_core::abi::LEND_WRITABLE,
    fast_copies = const core::mem::offset_of!(fastpath::FastPath, statistics)
        + core::mem::offset_of!(RpcStatistics, payload_copies),
    fast_longest_chain = const core::mem::offset_of!(fastpath::FastPath, statistics)
        + core::mem::offset_of!(RpcStatistics, longest_chain),
    dom_region_start = const core::mem::offset_of!(fastpath::DomainFast, region_start),
    dom_port_words = const core::mem::offset_of!(fastpath::DomainFast, port_words),
    handles = const tern_core::abi::HANDLES,
    call_bound = const tern_core::abi::Call::CallBound as usize,
    call_bound_words = const tern_core::abi::Call::CallBoundWords as usize,
    call_bound_words_svc1 = const tern_core::abi::CALL_BOUND_WORDS_SVC1,
    register_message = const tern_core::abi::MessageHeader::SIZE + 8 * tern_core::abi::REGISTER_WORDS,
    thread_top = const fast_offsets::THREAD_TOP,
    thread_id = const fast_offsets::THREAD_ID,
    act_saved_x19 = const fast_offsets::ACT_SAVED_X19,
    act_saved_sp = const fast_offsets::ACT_SAVED_SP,
    act_saved_pstate = const fast_offsets::ACT_SAVED_PSTATE,
    act_caller = const fast_offsets::ACT_CALLER,
    act_next_free = const fast_offsets::ACT_NEXT_FREE,
    act_port = const fast_offsets::ACT_PORT,
    act_domain = const fast_offsets::ACT_DOMAIN,
    no_right_mask = const 0xffff_ffff_0000_0000u64,
    sidetrack_bit = const (fast_offsets::ACT_SIDETRACK - fast_offsets::ACT_PORT) * 8
        + tern_core::thread::Activation::GENERAL_RETURN.trailing_zeros() as usize,
    act_flags = const fast_offsets::ACT_SIDETRACK,
    watched_bit = const tern_core::thread::Activation::WATCHED.trailing_zeros() as usize,
    act_entry = const fast_offsets::ACT_ENTRY,
    act_entry_pstate = const fast_offsets::ACT_ENTRY + 8,
    act_register_entry = const fast_offsets::ACT_REGISTER_ENTRY,
    act_view = const fast_offsets::ACT_VIEW,
    act_stack_top = const fast_offsets::ACT_STACK_TOP,
    act_context = const fast_offsets::ACT_CONTEXT,
    act_port_record = const fast_offsets::ACT_PORT_RECORD,
    act_reply_address = const fast_offsets::ACT_REPLY_ADDRESS,
    act_reply_domain = const fast_offsets::ACT_REPLY_DOMAIN,
    act_reply_registers = const fast_offsets::ACT_REPLY_REGISTERS,
    port_pool_head = const fast_offsets::PORT_POOL_HEAD,
    port_waiting = const fast_offsets::PORT_WAITING,
    port_sidetrack = const fast_offsets::PORT_SIDETRACK,
    header_size = const tern_core::abi::MessageHeader::SIZE,
    fast_payload_max = const fastpath::FAST_PAYLOAD_MAX,
    alias_offset = const tern_core::board::ARENA_ALIAS_OFFSET,
    call = const tern_core::abi::Call::Call as usize,
    return_call = const tern_core::abi::Call::Return as usize,
    frame_size = const frame::FRAME_SIZE,
    reply_receive = const tern_core::abi::Call::ReplyReceive as usize,
    fast_threads = const core::mem::offset_of!(fastpath::FastPath, threads),
    fast_cpu_current = const core::mem::offset_of!(fastpath::FastPath, cpu) + core::mem::offset_of!(Cpu, current),
    port_fast_handed_off = const fast_offsets::PORT_FAST_HANDED_OFF,
    fast_charged_at = const core::mem::offset_of!(fastpath::FastPath, cpu) + core::mem::offset_of!(Cpu, charged_at),
    fast_zeros = const core::mem::offset_of!(fastpath::FastPath, zeros),
    port_receivers_head = const fast_offsets::PORT_RECEIVERS_HEAD,
    port_receivers_tail = const fast_offsets::PORT_RECEIVERS_TAIL,
    port_queued = const fast_offsets::PORT_QUEUED,
    thread_state = const fast_offsets::THREAD_STATE,
    thread_state_payload = const fast_offsets::THREAD_STATE_PAYLOAD,
    thread_frame = const fast_offsets::THREAD_FRAME,
    thread_kernel_context = const fast_offsets::THREAD_KERNEL_CONTEXT,
    thread_serving = const fast_offsets::THREAD_SERVING,
    thread_next_queued = const fast_offsets::THREAD_NEXT_QUEUED,
    thread_receive_address = const fast_offsets::THREAD_RECEIVE_ADDRESS,
    thread_receive_domain = const fast_offsets::THREAD_RECEIVE_DOMAIN,
    thread_reply_address = const fast_offsets::THREAD_REPLY_ADDRESS,
    thread_reply_domain = const fast_offsets::THREAD_REPLY_DOMAIN,
    thread_serves = const fast_offsets::THREAD_SERVES,
    thread_cpu_time = const fast_offsets::THREAD_CPU_TIME,
    state_running = const fast_offsets::STATE_RUNNING,
    state_waiting_for_reply = const fast_offsets::STATE_WAITING_FOR_REPLY,
    state_receiving = const fast_offsets::STATE_RECEIVING,
    context_sp = const core::mem::offset_of!(machine::KernelContext, stack_pointer),
    context_x30 = const core::mem::offset_of!(machine::KernelContext, registers) + 11 * 8,
    context_floating = const core::mem::offset_of!(machine::KernelContext, floating),
    context_thread_pointer = const core::mem::offset_of!(machine::KernelContext, thread_pointer),
    pstate_el1t = const machine::PSTATE_EL1T,
    svc_syndrome = const (0x15u64 << 26) | (1 << 25),
    message_payload_max = const tern_core::abi::MESSAGE_MAX - tern_core::abi::MessageHeader::SIZE,
    handle_port = const 16,
    register_bytes = const 8 * tern_core::abi::REGISTER_WORDS,
    reply_pages = const tern_core::abi::REPLY_AREA >> 12,
    reply_rest = const tern_core::abi::REPLY_AREA & 0xfff,
);

core::arch::global_asm!(include_str!("upcall.s"));
core::arch::global_asm!(include_str!("switch.s"));
