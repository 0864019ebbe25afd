// The RPC fast paths, svc to eret: Call and Return (migrating), the
// Call handoff and ReplyReceive (switching).
//
// seL4's fast-path shape: read-only checks first, any doubt branches to
// the general path (which gives the same answer, slower); then the point
// of no return; then the state changes. What they accept is listed in
// fastpath.rs. Values from the caller's registers (port name, addresses,
// lengths) are checked; links the kernel maintains itself (a thread's top
// activation, a pool's head, an activation's domain) are trusted, as the
// general path guarantees them.
//
// On entry x0-x4 are the call's arguments and x8 the call number; the
// vector parked the caller's x9 below SP, in the slot the trap frame would
// give it, and moved nothing else. The caller's gate declares x0-x18 and
// every SIMD register clobbered, so x5-x18 are scratch from the start;
// x19-x30 belong to the caller until saved. Before the point of no return
// x0-x4 and x8 are never written, so giving up is a branch to
// user_general (vectors.s).
//
// Nothing leaks across a domain boundary: a server starts with x3-x30
// cleared, a client comes back with x2-x18 cleared and its own x19-x30
// (the words paths: a server starts with the message in x0-x4, its
// context word, and only its own reply area, PSTATE and entry besides;
// a client comes back with the reply in x1-x5 and only its own SP,
// return address and PSTATE besides its x19-x30),
// and a thread parked by the switching path keeps only its own registers
// (x5-x18 are stored as zeros). EL0 FP/SIMD is trapped after every
// crossing; the first use zeroes the SIMD registers (vectors.s, not_svc).
// The clearing loads come from the zero pair in TERN_FAST (two registers
// a load).

.equ CPACR_TRAP_EL0_SIMD, (1 << 20)

.section .text.fastpath, "ax"
.global tern_fast_call
.global tern_fast_return
.global tern_fast_reply_receive
// Stage labels: the benchmark counts the instructions between them (bench.rs).
.global tern_stage_call_translate
.global tern_stage_call_checks
.global tern_stage_call_checks_end
.global tern_stage_call_switch
.global tern_stage_call_copy
.global tern_stage_call_copy_end
.global tern_stage_call_stats
.global tern_stage_call_server_exit
.global tern_stage_call_end
.global tern_stage_return_translate
.global tern_stage_return_checks
.global tern_stage_return_copy
.global tern_stage_return_copy_end
.global tern_stage_return_switch
.global tern_stage_return_client_exit
.global tern_stage_return_end

// PARK_USER: make the trap frame a parked thread resumes from
// (tern_resume_user) at SP: x0-x4 and x19-x30 as the caller left them,
// x5-x18 as zeros (they hold the kernel's scratch by now, and the caller's
// gate gave them up), then SP_EL0, ELR and SPSR. Clobbers \scratch1 and
// \scratch2.
.macro PARK_USER scratch1, scratch2
    stp     x0, x1, [sp, #0]
    stp     x2, x3, [sp, #16]
    stp     x4, xzr, [sp, #32]
    stp     xzr, xzr, [sp, #48]
    stp     xzr, xzr, [sp, #64]
    stp     xzr, xzr, [sp, #80]
    stp     xzr, xzr, [sp, #96]
    stp     xzr, xzr, [sp, #112]
    stp     xzr, xzr, [sp, #128]
    stp     xzr, x19, [sp, #144]
    SAVE_UPPER \scratch1, \scratch2
.endm

// SAVE_CALLEE_SAVED: store x19-x30 in the saved state of the activation
// at \act (a client making a call: what its return gives back).
.macro SAVE_CALLEE_SAVED act
    stp     x19, x20, [\act, #{act_saved_x19}]
    stp     x21, x22, [\act, #({act_saved_x19} + 16)]
    stp     x23, x24, [\act, #({act_saved_x19} + 32)]
    stp     x25, x26, [\act, #({act_saved_x19} + 48)]
    stp     x27, x28, [\act, #({act_saved_x19} + 64)]
    stp     x29, x30, [\act, #({act_saved_x19} + 80)]
.endm

// SAVE_MERGED_CLIENT: a merged client (at EL1t) calling a merged server,
// saved in its activation (x13) so that a fault in the server unwinds to
// it as to any client: SP, return address, PSTATE, x19-x30; and the view
// it runs in, for the server activation (x8), which runs in it too.
// Clobbers \scratch.
.macro SAVE_MERGED_CLIENT scratch
    mov     \scratch, sp
    stp     \scratch, x30, [x13, #{act_saved_sp}]
    mov     \scratch, #{pstate_el1t}
    str     \scratch, [x13, #{act_saved_pstate}]
    SAVE_CALLEE_SAVED x13
    mrs     \scratch, ttbr0_el1
    str     \scratch, [x8, #{act_view}]
.endm

// SAVE_TRAPPED_CLIENT: a client that trapped in (SP_EL0, ELR, SPSR and
// x19-x30), saved in its activation (x13); \a, \b, \c are clobbered.
.macro SAVE_TRAPPED_CLIENT a, b, c
    mrs     \a, sp_el0
    mrs     \b, elr_el1
    mrs     \c, spsr_el1
    SAVE_CALLEE_SAVED x13
    stp     \a, \b, [x13, #{act_saved_sp}]
    str     \c, [x13, #{act_saved_pstate}]
.endm

// ZERO: clear the registers listed, two at a time with an `ldp` from
// TERN_FAST's zero pair (x9 holds TERN_FAST's address), an odd last one
// with an `ldr`. List x9 last if it goes too: it is the base until then.
.macro ZERO first, second, rest:vararg
.ifb \second
    ldr     \first, [x9, #{fast_zeros}]
.else
    ldp     \first, \second, [x9, #{fast_zeros}]
.ifnb \rest
    ZERO \rest
.endif
.endif
.endm

// CALL_PUSH: a call's point of no return, the first stores of every path:
// pop the pool (x17 the port, w12 the next free), push the server
// activation (x8, number w16) on the thread (x10) above its top (w11),
// the thread's number \number; the reply buffer (\lo, \hi) and the
// client's domain (w14) for the way back, with the reply_registers byte
// (w14's bit 16: set only by the words path; 0 for every other).
.macro CALL_PUSH number, lo, hi
    str     w12, [x17, #{port_pool_head}]       // pop the pool (w12: the next free, or 0)
    stp     w11, \number, [x8, #{act_caller}]   // push on the chain: caller, occupant
    str     w16, [x10, #{thread_top}]
    stp     \lo, \hi, [x8, #{act_reply_address}] // where the reply goes
    str     w14, [x8, #{act_reply_domain}]      // reply_domain, reply_registers
.endm

// MERGED_BACK_CHECKS: back from a merged handler, interrupts masked: x9
// TERN_FAST, x10 the thread, x12 the activation table, w11 the server
// activation's number, x14 the activation, w16 its caller's number, x13
// its port word, x17 the port. The general return (merged_return_trap)
// when its caller split off below it, a sidetrack is due, or someone
// waits for an activation.
.macro MERGED_BACK_CHECKS
    msr     daifset, #3
    adrp    x9, TERN_FAST
    ldp     x10, x12, [x9, #{fast_current}]
    ldr     w11, [x10, #{thread_top}]
    ldr     x14, [x12, x11, lsl #3]             // the server activation
    ldr     w16, [x14, #{act_caller}]
    cbz     w16, merged_return_trap             // its caller split off below it: the general return ends this part
    ldr     x13, [x14, #{act_port}]             // port | domain << 32 | flags << 48
    tbnz    x13, #{sidetrack_bit}, merged_return_trap // the general return is due
    ldr     x17, [x14, #{act_port_record}]      // its port (the record outlives its activations)
    ldr     w5, [x17, #{port_waiting}]
    cbnz    w5, merged_return_trap              // someone waits for an activation
.endm

// WORDS_CLIENT_EXIT: the end of every way back that answers in registers
// (x1-x5 the reply, x13 the client activation, x19-x28 the client's
// already): x29/x30, SP, return address and PSTATE from its activation,
// FP/SIMD trapped, x0 = 0 (success), and nothing else of the server's or
// the kernel's left (x6-x8 end as the client's own SP, return address and
// PSTATE); back to it.
.macro WORDS_CLIENT_EXIT
    ldp     x29, x30, [x13, #({act_saved_x19} + 80)]
    ldp     x6, x7, [x13, #{act_saved_sp}]
    ldr     x8, [x13, #{act_saved_pstate}]
    msr     sp_el0, x6
    msr     elr_el1, x7
    msr     spsr_el1, x8
    mov     x10, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x10
    ZERO    x0, x10, x11, x12, x13, x14, x15, x16, x17, x18, x9
    eret
.endm

// RETURN_POOL: every way back's point of no return, the chain and pool
// half: pop the server activation (x14, number w11) off the thread (x10),
// whose top is its caller (w16) again, and put it back in its port's (x17)
// pool (the registers MERGED_BACK_CHECKS and the fast returns' checks
// leave); register number \s is clobbered.
.macro RETURN_POOL s
    str     w16, [x10, #{thread_top}]           // pop
    stp     wzr, wzr, [x14, #{act_caller}]
    ldr     w\s, [x17, #{port_pool_head}]        // back to the pool
    str     w\s, [x14, #{act_next_free}]
    str     w11, [x17, #{port_pool_head}]
.endm

// COPY_PAYLOAD: copy \bytes from \source to \destination with the
// kernel's one copy (COPY_BYTES, copy.s: 128 bytes a step, exactly the
// bytes claimed, never more). Advances both pointers, leaves \bytes
// meaningless; uses registers number \s1 and \s2. Then counts one payload
// copy in TERN_FAST (x9).
.macro COPY_PAYLOAD source, destination, bytes, s1, s2
    COPY_BYTES \source, \destination, \bytes, \s1, \s2
    ldr     x\s1, [x9, #{fast_copies}]
    add     x\s1, x\s1, #1
    str     x\s1, [x9, #{fast_copies}]
.endm

// CALL_CHECKS: everything a call is checked for before its point of no
// return, shared by the trapping fast call and the merged call. x9 holds
// TERN_FAST; x0-x4 are the call. Any doubt branches to \slow, an empty
// pool to \empty. A call from an activation that is itself serving one
// (nested) is taken like any (the stats stage counts its chain's depth);
// \merged_only sends a pool not entered through
// the merged dispatch trampoline to \slow; \stages emits the benchmark's
// stage labels inside it (once: they are global). Falls through with x10 the
// thread, w11 its top (the client) activation's number, w7 the thread's
// number, x13 the client activation, w14 its domain number, x17 the port,
// x8 the server activation, w16 its number, w12 the next free one (or 0),
// x18 the payload length and x5 the header's first word (label | right
// << 32). x6, x15 and x16 are clobbered.
.macro CALL_CHECKS payload_max, slow, empty, merged_only, stages, bound=0
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldp     w11, w7, [x10, #{thread_top}]       // its top activation; w7: its number
    ldr     x13, [x12, x11, lsl #3]             // the client activation
    ldrh    w14, [x13, #{act_domain}]
    ldp     x15, x16, [x9, #{fast_domains}]     // the domain table, the port table
    ldr     x8, [x15, x14, lsl #3]              // the client's domain
.if \bound
    cmp     x0, #{handles}
    b.hs    \slow                               // no such handle
    ldr     x17, [x8, x0, lsl #3]               // its port's record (0: unbound, stale or dead; handle_ports is the block's first field)
.else
    ldp     x5, x6, [x8, #{dom_port_words}]
    cmp     x0, x6
    b.hs    \slow                               // no such name
    ldr     w5, [x5, x0, lsl #2]
    and     w5, w5, #0x7fffffff                 // port number (0: none)
    ldr     x17, [x16, x5, lsl #3]              // the port (table[0] is null)
.endif
    cbz     x17, \slow
.if \stages
tern_stage_call_checks:
.endif
    sub     x18, x2, #{header_size}             // payload length
    cmp     x18, #\payload_max
    b.hi    \slow                               // too short or too long
    ldp     x5, x6, [x8, #{dom_region_start}]   // the client's region
    adds    x16, x1, x2
    ccmp    x1, x5, #0, cc                      // (wrapped: C clear, so the next test fails)
    ccmp    x16, x6, #2, hs
    b.hi    \slow                               // request not the client's
    adds    x16, x3, x4
    ccmp    x3, x5, #0, cc                      // (wrapped: C clear, so the next test fails)
    ccmp    x16, x6, #2, hs
    b.hi    \slow                               // reply buffer not the client's
    ldr     x5, [x1]                            // header: label | right << 32
    tst     x5, #{no_right_mask}
    b.ne    \slow                               // carries a right
    ldr     w16, [x17, #{port_pool_head}]
    cbz     w16, \empty                         // no free activation
    ldr     x8, [x12, x16, lsl #3]              // the server activation
.if \merged_only
    ldr     x6, [x8, #{act_entry}]
    adr     x15, tern_dispatch_trampoline_merged                 // (one instruction: the image is under 1 MiB; the linker says if not)
    cmp     x6, x15
    b.ne    \slow                               // not a merged dispatch pool
.endif
    ldr     w12, [x8, #{act_next_free}]
    cbnz    w12, .Lchecked\@
.if \stages
tern_stage_call_checks_end:                     // (not on the path when the pool has more)
.endif
    ldr     w12, [x17, #{port_sidetrack}]
    cbnz    w12, \slow                          // the last one, and a sidetrack is due
.Lchecked\@:
.endm

// fn tern_fast_call()  (x0 port name, x1/x2 request, x3/x4 reply buffer)
//
// Registers: x9 TERN_FAST, then those CALL_CHECKS leaves (the header's
// second word, length and reserved, is the kernel's to write).
tern_fast_call:
tern_stage_call_translate:
    adrp    x9, TERN_FAST                       // page-aligned: its address
    CALL_CHECKS {fast_payload_max}, fast_call_slow, fast_handoff, 0, 1

    // Point of no return.
fast_call_commit:
tern_stage_call_switch:
    CALL_PUSH w7, x3, x4
    SAVE_TRAPPED_CLIENT x3, x4, x7
    ldp     x3, x16, [x8, #{act_stack_top}]     // the request's place on its stack; its view
    sub     x3, x3, x2
    and     x3, x3, #0xfffffffffffffff0
    orr     x4, x3, #{alias_offset}             // ... as the kernel sees it
tern_stage_call_copy:
    stp     x5, x18, [x4], #16                  // the one copy: the header (length stamped),
    cbz     x18, 2f
tern_stage_call_copy_end:                       // (not on the path without a payload)
    add     x1, x1, #{header_size}
    COPY_PAYLOAD x1, x4, x18, 5, 6            // then the payload
2:
tern_stage_call_stats:                          // one more call served by the port (x17)
    ldr     x5, [x17, #{port_fast_migrated}]
    add     x5, x5, #1
    str     x5, [x17, #{port_fast_migrated}]
    ldr     w5, [x13, #{act_port}]
    cbnz    w5, fast_call_nested                // from a server activation: a deeper chain
tern_stage_call_server_exit:
    ldp     x5, x6, [x8, #{act_entry}]          // into the server: its entry, its mode's PSTATE
    mov     x1, x2                              // x0: request, x1: length, x2: context
    ldr     x2, [x8, #{act_context}]
    tbnz    x6, #2, fast_call_merged            // EL1t: a merged server
    msr     ttbr0_el1, x16
    msr     elr_el1, x5
    msr     sp_el0, x3
    msr     spsr_el1, x6                        // EL0t, or EL1t for a merged domain
    mov     x5, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x5
    mov     x0, x3
    ZERO    x3, x4, x5, x6, x7, x8, x10, x11, x12, x13, x14, x15, x16, x17, x18, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30, x9
    eret
tern_stage_call_end:

// A call from an activation that is itself serving one (x13; a nested
// call): the chain is three or more deep now, and the statistics' longest
// chain counts it, as the general path counts every chain it makes (the
// walk down the callers costs only nested calls). Then on as any call.
// x5, x6, x12, x14 and x15 are free here.
fast_call_nested:
    ldr     x12, [x9, #({fast_current} + 8)]    // the activation table
    mov     x6, #2                              // the server and its client
    mov     x14, x13
1:  ldr     w15, [x14, #{act_caller}]
    cbz     w15, 2f
    add     x6, x6, #1
    ldr     x14, [x12, x15, lsl #3]
    b       1b
2:  ldr     x5, [x9, #{fast_longest_chain}]
    cmp     x6, x5
    b.ls    tern_stage_call_server_exit
    str     x6, [x9, #{fast_longest_chain}]
    b       tern_stage_call_server_exit

// Into a merged server: it is part of the kernel domain, mapped (EL1,
// global) in every view, so it runs in the caller's view (recorded in its
// activation, for a return to it from a call it makes) with no TTBR0
// write, and nothing of the caller's needs hiding from it: no clearing.
fast_call_merged:
    mrs     x16, ttbr0_el1
    str     x16, [x8, #{act_view}]
    adr     x7, tern_dispatch_trampoline_merged                 // (one instruction: the image is under 1 MiB; the linker says if not)
    cmp     x5, x7
    b.eq    fast_call_handler
    msr     elr_el1, x5
    msr     sp_el0, x3
    msr     spsr_el1, x6
    mov     x0, x3
    ldp     x4, x5, [x9, #{fast_lent}]          // what is lent (zeros unless a lending call stashed it)
    stp     xzr, xzr, [x9, #{fast_lent}]
    eret

// A merged dispatch pool: rather than enter its trampoline (which would
// call the handler and come back with a second kernel entry for Return),
// call the handler from here, as the merged call does: at EL1t (SP_EL0,
// the activation's stack, reply area below the request), interrupts
// enabled; MERGED_BACK 1 takes the reply and returns to the client. A
// fault in the handler unwinds to the client like any fault in a server.
fast_call_handler:
    msr     spsel, #0
    sub     x7, x3, #{reply_pages}, lsl #12     // the reply area, below the request
    sub     x7, x7, #{reply_rest}
    mov     sp, x7
    mov     x0, x3                              // handler(request, length, context, reply area, lent)
    mov     x3, x7
    ldp     x4, x5, [x9, #{fast_lent}]
    stp     xzr, xzr, [x9, #{fast_lent}]
    ldr     x9, [x2]
    msr     daifclr, #3
    blr     x9
    b       merged_called_back

// fn tern_fast_call_lending()  (as tern_fast_call; x5/x6 the lent region,
// address and length | LEND_WRITABLE)
//
// Only into a merged server's dispatch pool: it runs in the caller's view,
// so nothing is mapped; the lend is checked (1 byte to LEND_MAX, inside
// the client's region) and handed to the server as it is, in x4/x5. A lend
// to a protected server (its pages must be mapped) and anything in doubt
// take the general path. The lend waits in TERN_FAST's `lent` pair, which
// is zero except between such a stash and its use (fast_call_merged, the
// merged call, or the way out to the general path all clear it).
.global tern_fast_call_lending
tern_fast_call_lending:
    adrp    x9, TERN_FAST
    stp     x5, x6, [x9, #{fast_lent}]
    CALL_CHECKS {fast_payload_max}, fast_lending_slow, fast_lending_slow, 1, 0
    // x0-x4 stay the call's (the general path may need them); x5 is
    // borrowed and the header reloaded into it.
    ldr     x15, [x9, #{fast_domains}]
    ldr     x15, [x15, x14, lsl #3]             // the client's domain
    ldr     x6, [x9, #{fast_lent}]              // the lent address ...
    ldr     x5, [x15, #{dom_region_start}]
    cmp     x6, x5
    b.lo    fast_lending_slow                   // ... below the client's region
    ldr     x5, [x9, #({fast_lent} + 8)]
    and     x5, x5, #{lend_length_mask}         // its length
    cbz     x5, fast_lending_slow
    cmp     x5, #{lend_max}
    b.hi    fast_lending_slow
    adds    x6, x6, x5
    b.cs    fast_lending_slow                   // ... wrapping past the top
    ldr     x5, [x15, #({dom_region_start} + 8)]
    cmp     x6, x5
    b.hi    fast_lending_slow                   // ... past the client's region
    ldr     x5, [x1]                            // the header again
    b       fast_call_commit

fast_lending_slow:
    ldp     x5, x6, [x9, #{fast_lent}]
    stp     xzr, xzr, [x9, #{fast_lent}]
    mov     x8, #{call_lending}
    b       user_general

// The switching handoff (the pool is empty): a server thread waiting in
// receive takes the request and the processor; the client waits. w7 is
// still the client thread's number, w14 its domain's.
fast_handoff:
    ldr     w16, [x17, #{port_receivers_head}]
    cbz     w16, fast_call_slow                 // nobody in receive
    ldr     x12, [x9, #{fast_threads}]
    ldr     x12, [x12, x16, lsl #3]             // the server thread
    ldr     x6, [x12, #({thread_receive_address} + 8)]
    cmp     x2, x6
    b.hi    fast_call_slow                      // its buffer is too small

    // Point of no return.
    sub     sp, sp, #FRAME_SIZE
    PARK_USER x6, x8                            // (x5 is still the header)
    ldr     w6, [x12, #{thread_next_queued}]    // out of the receivers
    str     w6, [x17, #{port_receivers_head}]
    cbnz    w6, 1f
    str     wzr, [x17, #{port_receivers_tail}]
1:  str     wzr, [x12, #{thread_next_queued}]
    ldr     x16, [x12, #{thread_receive_address}]
    orr     x16, x16, #{alias_offset}
    stp     x5, x18, [x16], #16                 // the one copy, into its buffer: the header (length stamped),
    cbz     x18, 2f
    add     x1, x1, #{header_size}
    COPY_PAYLOAD x1, x16, x18, 5, 6           // then the payload
2:  ldr     x6, [x12, #{thread_frame}]          // its results: x0 = 0, x1 = length
    stp     xzr, x2, [x6]
    str     w7, [x12, #{thread_serving}]
    strh    wzr, [x12, #{thread_receive_domain}]
    mov     w6, #{state_running}
    str     w6, [x12, #{thread_state}]
    mov     w6, #{state_waiting_for_reply}      // the client waits for the reply
    str     w6, [x10, #{thread_state}]
    stp     x3, x4, [x10, #{thread_reply_address}]
    strh    w14, [x10, #{thread_reply_domain}]
    mov     x6, sp
    str     x6, [x10, #{thread_frame}]
    ldr     x6, [x17, #{port_fast_handed_off}]    // one more call served by the port
    add     x6, x6, #1
    str     x6, [x17, #{port_fast_handed_off}]
    b       fast_switch

fast_call_slow:
    mov     x8, #{call}
    b       user_general

// fn tern_fast_call_bound()  (x0 a bound handle, x1/x2 request, x3/x4
// reply buffer)
//
// `tern_fast_call` through a bound handle: the port is the record the
// kernel keeps for the handle in the domain's fast-path block
// (`DomainFast::handle_ports`; 0, and so the general path and its
// `StaleHandle`, for a stale or unbound one) instead of the name's. That
// address is trusted as the port table's entries are: the kernel writes
// the block from its handle table before any domain runs after a handle
// goes stale, is unbound or its port's record is freed
// (`tern_core::handle::port_records`), so it is a live port's record
// whenever this runs (one core, interrupts masked). A switching server is
// left to the general path.
tern_fast_call_bound:
    adrp    x9, TERN_FAST
    CALL_CHECKS {fast_payload_max}, fast_bound_slow, fast_bound_slow, 0, 0, 1
    b       fast_call_commit

fast_bound_slow:
    mov     x8, #{call_bound}
    b       user_general

// fn tern_fast_call_words()  (x0 label | payload length << 32, x1-x4 the
// payload's words, x5 a bound handle, x6/x7 the reply buffer)
//
// `CallBoundWords`: `tern_fast_call_bound` with the request in registers.
// Nothing of the client's memory is read for it: no request buffer to
// check, no header to load; the words go straight onto the server
// activation's stack, in the top REGISTER_MESSAGE bytes (all four words:
// the stack beyond the message's length is the server's own, and what
// the words carry beyond it is the client's own, sent to the server it
// called). From the statistics on, the call is `tern_fast_call`'s. Anything
// in doubt: the general path (`call_bound_words`), registers untouched.
tern_fast_call_words:
    adrp    x9, TERN_FAST
tern_stage_call_words_checks:
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldp     w11, w15, [x10, #{thread_top}]      // its top activation; w15: its number
    ldr     x13, [x12, x11, lsl #3]             // the client activation
    ldr     w14, [x13, #{act_port}]
    cbnz    w14, fast_words_slow                // a nested call: the general path
    ldrh    w14, [x13, #{act_domain}]
    ldr     x16, [x9, #{fast_domains}]
    ldr     x17, [x16, x14, lsl #3]             // the client's domain
    ldp     x16, x8, [x17, #{dom_region_start}] // the reply buffer: the client's
    adds    x18, x6, x7
    ccmp    x6, x16, #0, cc                     // (wrapped: C clear, so the next test fails)
    ccmp    x18, x8, #2, hs
    b.hi    fast_words_slow
    lsr     x18, x0, #32                        // the payload's length
    cmp     x18, #{register_bytes}
    ccmp    x5, #({handles} - 1), #2, ls        // (too long: C set, Z clear, so hi) the handle's number
    b.hi    fast_words_slow                     // too long for the words, or no such handle
    ldr     x17, [x17, x5, lsl #3]              // its port's record (0: unbound, stale or dead; handle_ports is the block's first field)
    cbz     x17, fast_words_slow
    ldr     w16, [x17, #{port_pool_head}]
    cbz     w16, fast_words_slow                // no free activation
    ldr     x8, [x12, x16, lsl #3]              // the server activation
    ldr     w12, [x8, #{act_next_free}]
    cbnz    w12, 1f
    ldr     w12, [x17, #{port_sidetrack}]
    cbnz    w12, fast_words_slow                // the last one, and a sidetrack is due

    // Point of no return.
1:
tern_stage_call_words_switch:
    orr     w14, w14, #(1 << 16)                // reply_registers: the stub takes a reply in registers
    CALL_PUSH w15, x6, x7
    SAVE_TRAPPED_CLIENT x6, x7, x15
tern_stage_call_words_registers:
    ldp     x7, x6, [x8, #{act_register_entry}] // its register entry, its stack pointer there
    cbz     x7, tern_stage_call_words_copy      // none (not the runtime's trampoline): the request in memory
tern_stage_call_words_stats:
    ldr     x5, [x17, #{port_fast_migrated}]    // one more call served by the port (x17; tern_stage_call_stats' count, for this path)
    add     x5, x5, #1
    str     x5, [x17, #{port_fast_migrated}]
tern_stage_call_words_server_exit:
    // Into a protected runtime's pool at the trampoline's register entry
    // (`tern_dispatch_trampoline_registers`, the activation's
    // register_entry, which the kernel keeps only beside the protected
    // dispatch trampoline's entry: `ServerLayer::register_entry`): the request stays where
    // the client put it, x0 label | length << 32 and x1-x4 the words (the
    // length checked above; the words past it are the client's own, sent
    // to the server it called), x5 the context word; SP and x6 the
    // runtime's reply area, below the stack's top (register_sp).
    // Nothing else of the client's (nor of the kernel's) in x6-x30.
    ldr     x15, [x8, #{act_entry_pstate}]      // its mode's PSTATE
    ldp     x16, x5, [x8, #{act_view}]          // its view, its context word
    msr     ttbr0_el1, x16
    msr     elr_el1, x7
    msr     sp_el0, x6
    msr     spsr_el1, x15                       // EL0t: the protected trampoline's pools are protected
    mov     x16, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x16
    // Left as they are, being the server's own or public: x6 its reply
    // area, x7 the trampoline's address (image code), x15 its PSTATE. The
    // rest, the client's or the kernel's, cleared.
    ZERO    x8, x10, x11, x12, x13, x14, x16, x17, x18, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30, x9
    eret
tern_stage_call_words_end:

    // Any other pool (a merged server's, or one entered elsewhere): the
    // request written on its stack as a message, and on as tern_fast_call
    // — but for a merged dispatch pool, whose reply comes back in
    // registers when it fits (below).
tern_stage_call_words_copy:
    ldp     x6, x16, [x8, #{act_stack_top}]     // its stack's top; its view
    sub     x6, x6, #{register_message}         // the request's place (the top is 16-aligned)
    orr     x7, x6, #{alias_offset}             // ... as the kernel sees it
    mov     w12, w0                             // the header: label, no right,
    stp     x12, x18, [x7]                      // the length stamped
    stp     x1, x2, [x7, #16]                   // the words
    stp     x3, x4, [x7, #32]
    add     x2, x18, #{header_size}             // x2: the request's length, x3: where
    mov     x3, x6
    ldp     x5, x15, [x8, #{act_entry}]         // its entry, its mode's PSTATE
    tbz     x15, #2, tern_stage_call_stats      // EL0t: a protected pool entered elsewhere
    adr     x7, tern_dispatch_trampoline_merged                 // (one instruction: the image is under 1 MiB; the linker says if not)
    cmp     x5, x7
    b.ne    tern_stage_call_stats               // a merged pool entered elsewhere

    // A merged dispatch pool: its handler called from here, as
    // fast_call_handler calls it (EL1t on the activation's stack, the
    // reply area below the request, interrupts enabled; a fault in it
    // unwinds to the client like any fault in a server), with the reply's
    // words zeroed first (nothing of the server's earlier replies goes
    // back past this one's length, as the protected runtime's register
    // trampoline does for its own). Back: a reply that fits the words,
    // with no right, goes to the client in registers (x1-x5, as
    // tern_fast_return_words answers); a longer one the way
    // merged_called_back takes it (into the client's buffer; with none,
    // the general Return's ReplyTooLarge).
    ldr     x5, [x17, #{port_fast_migrated}]    // one more call served by the port (x17)
    add     x5, x5, #1
    str     x5, [x17, #{port_fast_migrated}]
    mrs     x16, ttbr0_el1                      // it runs in the caller's view (for a call it makes)
    str     x16, [x8, #{act_view}]
    msr     spsel, #0
    sub     x7, x3, #{reply_pages}, lsl #12     // the reply area, below the request
    sub     x7, x7, #{reply_rest}
    mov     sp, x7
    stp     xzr, xzr, [x7, #16]                 // the reply's words, zeroed
    stp     xzr, xzr, [x7, #32]
    mov     x0, x3                              // handler(request, length, context, reply area, nothing lent)
    mov     x1, x2
    ldr     x2, [x8, #{act_context}]
    mov     x3, x7
    ldp     x4, x5, [x9, #{fast_zeros}]
    ldr     x9, [x2]
    msr     daifclr, #3
    blr     x9
    MERGED_BACK_CHECKS
    subs    x5, x0, #{header_size}
    b.lo    merged_return_trap                  // not a message
    cmp     x5, #{register_bytes}
    b.hi    .Lmerged_called_back_copy             // too long for registers
    ldr     x1, [sp]                            // the header: label | right << 32
    tst     x1, #{no_right_mask}
    b.ne    merged_return_trap                  // carries a right
    orr     x1, x1, x5, lsl #32                 // label | length << 32, in registers
    orr     x1, x1, #(1 << 63)
    ldp     x2, x3, [sp, #16]                   // the words
    ldp     x4, x5, [sp, #32]
    RETURN_POOL 6
    ldr     x13, [x12, x16, lsl #3]             // the client, again
    msr     spsel, #1                           // back on the kernel stack
    // Its view is the one the handler ran in; x19-x28 still hold its
    // values (the handler is a procedure); x29/x30, SP, return address and
    // PSTATE from its activation.
    WORDS_CLIENT_EXIT

fast_words_slow:
    // By `svc #1` (the gate's frameless stub, resumed at x30 if the kernel
    // makes its frame) or by `svc #0` with x8 = CallBoundWords (a direct
    // entry writes an `svc #0` syndrome too): the general path is told.
    mrs     x8, esr_el1
    tbnz    x8, #0, 1f                          // ISS imm16 = 1
    mov     x8, #{call_bound_words}
    b       user_general
1:  mov     x8, #{call_bound_words_svc1}
    b       user_general

// fn tern_fast_reply_receive()  (x0/x1 reply, x2 port name, x3/x4 buffer)
// The switching path's way back: the reply goes into the waiting client's
// buffer, the server thread waits in receive again, the client gets the
// processor.
//
// Registers, once loaded: x10 the server thread, x12 the client thread,
// w13 the server's domain number, x15 the server's domain, w5 the port's
// number, x17 the port, x16 the client's buffer, x18 the payload length.
tern_fast_reply_receive:
    adrp    x9, TERN_FAST                       // page-aligned: its address
    ldp     x10, x7, [x9, #{fast_current}]      // the server thread, the activation table
    ldr     w11, [x10, #{thread_serving}]
    cbz     w11, fast_reply_receive_slow        // nobody to reply to
    ldr     x12, [x9, #{fast_threads}]
    ldr     x12, [x12, x11, lsl #3]             // the client thread
    ldr     w6, [x12, #{thread_state}]
    cmp     w6, #{state_waiting_for_reply}
    b.ne    fast_reply_receive_slow
    ldr     w6, [x10, #{thread_top}]            // the server's domain
    ldr     x6, [x7, x6, lsl #3]
    ldrh    w13, [x6, #{act_domain}]
    ldp     x15, x16, [x9, #{fast_domains}]     // the domain table, the port table
    ldr     x15, [x15, x13, lsl #3]
    ldp     x5, x6, [x15, #{dom_port_words}]    // the port: a receive right it serves
    cmp     x2, x6
    b.hs    fast_reply_receive_slow
    ldr     w5, [x5, x2, lsl #2]
    tbz     w5, #31, fast_reply_receive_slow
    and     w5, w5, #0x7fffffff
    ldr     w6, [x10, #{thread_serves}]
    cmp     w6, w5
    b.ne    fast_reply_receive_slow
    ldr     x17, [x16, x5, lsl #3]
    ldr     w6, [x17, #{port_queued}]
    cbnz    w6, fast_reply_receive_slow         // other clients queued
    sub     x18, x1, #{header_size}
    cmp     x18, #{fast_payload_max}
    b.hi    fast_reply_receive_slow
    ldp     x16, x7, [x12, #{thread_reply_address}]
    cmp     x1, x7
    b.hi    fast_reply_receive_slow             // too large: the general path says so
    ldp     x6, x7, [x15, #{dom_region_start}]  // the server's region
    adds    x8, x0, x1
    ccmp    x0, x6, #0, cc                      // (wrapped: C clear, so the next test fails)
    ccmp    x8, x7, #2, hs
    b.hi    fast_reply_receive_slow             // reply not the server's
    cmp     x4, #{header_size}
    b.lo    fast_reply_receive_slow
    adds    x8, x3, x4
    ccmp    x3, x6, #0, cc                      // (wrapped: C clear, so the next test fails)
    ccmp    x8, x7, #2, hs
    b.hi    fast_reply_receive_slow             // receive buffer not the server's
    ldr     x6, [x0]                            // the reply's header: label | right << 32
    tst     x6, #{no_right_mask}
    b.ne    fast_reply_receive_slow             // carries a right

    // Point of no return.
    sub     sp, sp, #FRAME_SIZE
    PARK_USER x8, x11
    orr     x16, x16, #{alias_offset}
    stp     x6, x18, [x16], #16                 // the one copy, into the client's buffer: the header (length stamped),
    cbz     x18, 1f
    add     x0, x0, #{header_size}
    COPY_PAYLOAD x0, x16, x18, 6, 7           // then the payload
1:  ldr     x6, [x12, #{thread_frame}]          // the client's results
    stp     xzr, x1, [x6]
    mov     w6, #{state_running}
    str     w6, [x12, #{thread_state}]
    strh    wzr, [x12, #{thread_reply_domain}]
    str     wzr, [x10, #{thread_serving}]       // the server waits in receive again
    mov     w6, #{state_receiving}
    str     w6, [x10, #{thread_state}]
    str     w5, [x10, #{thread_state_payload}]
    stp     x3, x4, [x10, #{thread_receive_address}]
    strh    w13, [x10, #{thread_receive_domain}]
    mov     x6, sp
    str     x6, [x10, #{thread_frame}]
    str     wzr, [x10, #{thread_next_queued}]   // at the back of the receivers
    ldr     w6, [x10, #{thread_id}]
    ldr     w7, [x17, #{port_receivers_tail}]
    cbz     w7, 2f
    ldr     x8, [x9, #{fast_threads}]
    ldr     x7, [x8, x7, lsl #3]
    str     w6, [x7, #{thread_next_queued}]
    b       3f
2:  str     w6, [x17, #{port_receivers_head}]
3:  str     w6, [x17, #{port_receivers_tail}]
    b       fast_switch

fast_reply_receive_slow:
    mov     x8, #{reply_receive}
    b       user_general

// fn fast_switch(from: x10, to: x12)  (x9 = TERN_FAST)
// Charge the time to `from`, make `to` current in its view, park `from`
// (it resumes at tern_resume_user, from its trap frame at SP), and resume
// `to` wherever it was parked — tern_resume_user or the general path's
// tern_switch.
fast_switch:
    mrs     x6, cntpct_el0
    ldr     x8, [x9, #{fast_charged_at}]
    str     x6, [x9, #{fast_charged_at}]
    sub     x6, x6, x8
    ldr     x8, [x10, #{thread_cpu_time}]
    add     x8, x8, x6
    str     x8, [x10, #{thread_cpu_time}]
    ldr     w7, [x12, #{thread_id}]
    str     w7, [x9, #{fast_cpu_current}]       // the processor's current thread
    str     x12, [x9, #{fast_current}]
    ldr     w6, [x12, #{thread_top}]
    ldr     x7, [x9, #{fast_activations}]
    ldr     x6, [x7, x6, lsl #3]
    ldr     x7, [x6, #{act_view}]
    msr     ttbr0_el1, x7
    isb
    ldr     x6, [x10, #{thread_kernel_context}]
    mov     x7, sp
    str     x7, [x6, #{context_sp}]
    adr     x7, tern_resume_user                 // (one instruction: the image is under 1 MiB; the linker says if not)
    str     x7, [x6, #{context_x30}]
    mrs     x7, tpidr_el1
    str     x7, [x6, #{context_thread_pointer}]
    ldr     x6, [x12, #{thread_kernel_context}]
    ldp     x19, x20, [x6, #0]
    ldp     x21, x22, [x6, #16]
    ldp     x23, x24, [x6, #32]
    ldp     x25, x26, [x6, #48]
    ldp     x27, x28, [x6, #64]
    ldp     x29, x30, [x6, #80]
    ldr     x7, [x6, #{context_sp}]
    mov     sp, x7
    ldp     d8, d9, [x6, #{context_floating}]
    ldp     d10, d11, [x6, #({context_floating} + 16)]
    ldp     d12, d13, [x6, #({context_floating} + 32)]
    ldp     d14, d15, [x6, #({context_floating} + 48)]
    ldr     x7, [x6, #{context_thread_pointer}]
    msr     tpidr_el1, x7
    ret

// fn tern_fast_return()  (x0/x1 reply)
//
// Registers, once loaded: x9 TERN_FAST, x10 the thread, w11 its top (the
// server) activation's number, x12 the activation table, x14 the server
// activation, x13 its port | domain << 32 | sidetrack << 48, w16 the
// client activation's number, x15 the domain table, x17 the port, x2 the
// client's buffer, x5 the payload length.
tern_fast_return:
tern_stage_return_translate:
    adrp    x9, TERN_FAST                       // page-aligned: its address
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldr     w11, [x10, #{thread_top}]
    ldr     x14, [x12, x11, lsl #3]             // the server activation
    ldr     w16, [x14, #{act_caller}]
    cbz     w16, fast_return_slow               // not in a call
    ldr     x13, [x14, #{act_port}]             // port | domain << 32 | sidetrack << 48
    cbz     w13, fast_return_slow               // not a pool's
    tbnz    x13, #{sidetrack_bit}, fast_return_slow // a sidetrack's end
    ldp     x15, x17, [x9, #{fast_domains}]     // the domain table, the port table
    ldr     x17, [x17, w13, uxtw #3]            // its port
tern_stage_return_checks:
    ldr     w5, [x17, #{port_waiting}]
    cbnz    w5, fast_return_slow                // someone waits for an activation
    sub     x5, x1, #{header_size}
    cmp     x5, #{fast_payload_max}
    b.hi    fast_return_slow
    ldp     x2, x3, [x14, #{act_reply_address}] // the client's buffer
    cmp     x1, x3
    b.hi    fast_return_slow                    // too large: the general path says so
    ubfx    x4, x13, #32, #16
    ldr     x4, [x15, x4, lsl #3]               // the server's domain
    ldp     x3, x4, [x4, #{dom_region_start}]
    adds    x6, x0, x1
    ccmp    x0, x3, #0, cc                      // (wrapped: C clear, so the next test fails)
    ccmp    x6, x4, #2, hs
    b.hi    fast_return_slow                    // reply not the server's
    ldr     x3, [x0]                            // the reply's header: label | right << 32
    tst     x3, #{no_right_mask}
    b.ne    fast_return_slow                    // carries a right

    // Point of no return.
tern_stage_return_copy:
    orr     x2, x2, #{alias_offset}
    stp     x3, x5, [x2], #16                   // the one copy, into the client's buffer: the header (length stamped),
    cbz     x5, 1f
tern_stage_return_copy_end:                     // (not on the path without a payload)
    add     x0, x0, #{header_size}
    COPY_PAYLOAD x0, x2, x5, 3, 4             // then the payload
1:
tern_stage_return_switch:
    RETURN_POOL 3
tern_stage_return_client_exit:
    ldr     x13, [x12, x16, lsl #3]             // the client, again
    ldr     x3, [x13, #{act_view}]
    msr     ttbr0_el1, x3
fast_return_restore:
    ldp     x19, x20, [x13, #{act_saved_x19}]
    ldp     x21, x22, [x13, #({act_saved_x19} + 16)]
    ldp     x23, x24, [x13, #({act_saved_x19} + 32)]
    ldp     x25, x26, [x13, #({act_saved_x19} + 48)]
    ldp     x27, x28, [x13, #({act_saved_x19} + 64)]
// The end of a trapped call into a merged handler (x13 the client): x19-x28
// still hold the client's values (the kernel left them alone on the way in,
// and the handler, a procedure, kept them); x29 and x30 are restored.
fast_return_restore_frame:
    ldp     x29, x30, [x13, #({act_saved_x19} + 80)]
    ldp     x3, x4, [x13, #{act_saved_sp}]
    ldr     x5, [x13, #{act_saved_pstate}]
    msr     sp_el0, x3
    msr     elr_el1, x4
    msr     spsr_el1, x5
    mov     x3, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x3
    ZERO    x0, x2, x3, x4, x5, x6, x7, x8, x10, x11, x12, x13, x14, x15, x16, x17, x18, x9 // x0 = 0: success; x1 = reply length
    eret
tern_stage_return_end:

fast_return_slow:
    mov     x8, #{return_call}
    b       user_general

// fn tern_fast_return_words()  (`svc #2`: x0 the reply's length, the
// reply at SP; x2-x5 its payload's words and x6 its header's first word,
// loaded by the runtime's register trampoline)
//
// The return of an activation the words path entered (its reply_registers
// byte): the reply goes back in registers, x1 REPLY_IN_REGISTERS | label |
// length << 32 and x2-x5 the words as the server gave them (its runtime
// zeroes them before the handler writes its reply, so nothing else of the
// server's goes with them), and neither the server's memory nor the
// client's buffer is touched: nothing to check there. Anything else — the
// byte clear (the caller takes the reply in its buffer), a reply too long
// for the words or carrying a right, and every doubt of tern_fast_return —
// is the general Return of the reply at SP (x0 its address, x1 its
// length: fast_return_words_slow), as `svc #0` with x8 = 0 would be.
//
// Registers: as tern_fast_return (x9, x10, w11, x12, x14, x13, w16, x17);
// x7 the payload length.
tern_fast_return_words:
tern_stage_return_words_translate:
    adrp    x9, TERN_FAST                       // page-aligned: its address
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldr     w11, [x10, #{thread_top}]
    ldr     x14, [x12, x11, lsl #3]             // the server activation
    ldrb    w7, [x14, #{act_reply_registers}]
    cbz     w7, fast_return_words_slow          // its caller takes the reply in its buffer (or it serves no words call)
    ldr     w16, [x14, #{act_caller}]
    cbz     w16, fast_return_words_slow         // not in a call
    ldr     x13, [x14, #{act_port}]             // port | domain << 32 | sidetrack << 48 (a pool's:
    tbnz    x13, #{sidetrack_bit}, fast_return_words_slow // only the words path sets the byte, pushing one)
    ldr     x17, [x14, #{act_port_record}]      // its port (the record outlives its activations)
tern_stage_return_words_checks:
    ldr     w7, [x17, #{port_waiting}]
    cbnz    w7, fast_return_words_slow          // someone waits for an activation
    sub     x7, x0, #{header_size}              // the payload's length
    cmp     x7, #{register_bytes}
    b.hi    fast_return_words_slow              // too long for registers, or not a message
    tst     x6, #{no_right_mask}
    b.ne    fast_return_words_slow              // carries a right

    // Point of no return.
tern_stage_return_words_registers:
    orr     x1, x6, x7, lsl #32                 // label | length << 32,
    orr     x1, x1, #(1 << 63)                  // in registers
tern_stage_return_words_switch:
    RETURN_POOL 7
tern_stage_return_words_client_exit:
    ldr     x13, [x12, x16, lsl #3]             // the client, again
    ldr     x7, [x13, #{act_view}]
    msr     ttbr0_el1, x7
    ldp     x19, x20, [x13, #{act_saved_x19}]
    ldp     x21, x22, [x13, #({act_saved_x19} + 16)]
    ldp     x23, x24, [x13, #({act_saved_x19} + 32)]
    ldp     x25, x26, [x13, #({act_saved_x19} + 48)]
    ldp     x27, x28, [x13, #({act_saved_x19} + 64)]
    WORDS_CLIENT_EXIT
tern_stage_return_words_end:

fast_return_words_slow:
    mov     x1, x0                              // Return's x0/x1: the reply at SP, its length
    mrs     x0, sp_el0
    mov     x8, #{return_call}
    b       user_general

// fn tern_kernel_entry()   (EL1t: merged code; x8 the call, x0-x4 its
// arguments, x30 where to return)
//
// A merged domain's service gate branches here instead of `svc`. A Call
// first tries the merged path below (no trap at all); everything else —
// and a Call that path does not take — enters the kernel exactly as an
// `svc` from EL1t would: interrupts masked, ELR = the return address,
// SPSR = EL1t with interrupts unmasked, ESR = an SVC syndrome (which is
// what tells the kernel this is a call and not a fault), onto the
// thread's kernel stack (SP_EL1), and into the vector for "current EL
// with SP_EL0". From there every path is the one an `svc` takes, and its
// `eret` returns to x30.
.global tern_kernel_entry
tern_kernel_entry:
    cmp     x8, #{call}
    b.eq    tern_merged_call
    cmp     x8, #{call_lending}
    b.eq    tern_merged_call_lending
kernel_entry_trap:
    msr     daifset, #3
    msr     elr_el1, x30
    mov     x9, #{pstate_el1t}
    msr     spsr_el1, x9
    mov     x9, #{svc_syndrome}
    msr     esr_el1, x9
    msr     spsel, #1
    b       tern_vectors

// fn tern_merged_call()   (EL1t: x0 port name, x1/x2 request, x3/x4
// reply buffer, x30 where to return; SP the caller's stack)
//
// A merged (or kernel) client calling a merged server: no trap, no view
// change, no register clearing. The same checks as the trapping fast
// path, then: pop an activation from the pool and push it on the thread's
// chain, save the client (SP, return address, PSTATE and x19-x30, so that
// a fault in the server unwinds to it as to any client), copy the request
// onto the activation's stack, and call the service's handler there as a
// procedure, interrupts enabled. Its return: the reply is copied straight
// into the client's buffer, the activation goes back to the pool, and
// this returns to the client. Only pools entered through the merged
// dispatch trampoline are called this way (the handler is the first word
// of their context record); anything else, and anything in doubt, takes
// the kernel entry above.
//
// Registers: x9 TERN_FAST, then those CALL_CHECKS leaves (the same
// checks as the trapping fast call, with a merged server's payload limit
// and no nested-call test: a merged server calling on is a procedure
// call like any other).
.macro MERGED_CALL lending, trap
    msr     daifset, #3
    adrp    x9, TERN_FAST
.if \lending
    stp     x5, x6, [x9, #{fast_lent}]          // the lent region, until the handler's call
    and     x6, x6, #{lend_length_mask}         // 1 byte to LEND_MAX (the client's pointer
    cbz     x6, \trap                           // is trusted: it is part of the kernel domain)
    cmp     x6, #{lend_max}
    b.hi    \trap
.endif
    CALL_CHECKS {message_payload_max}, \trap, \trap, 1, 0
    MERGED_COMMIT \lending, 0
.endm

// MERGED_COMMIT: the merged call from its point of no return (registers
// as CALL_CHECKS leaves them): the activation popped and pushed, the
// client saved, the request copied, the handler called (the first word of
// the context record, as the dispatch trampoline calls it). \bound: the
// bound merged path (nothing lent).
.macro MERGED_COMMIT lending, bound
    // Point of no return.
    CALL_PUSH w7, x3, x4
    SAVE_MERGED_CLIENT x6
    ldr     x6, [x8, #{act_stack_top}]          // the request's place on its stack
    sub     x6, x6, x2
    and     x6, x6, #0xfffffffffffffff0
    mov     x7, x6
    stp     x5, x18, [x7], #16                  // the one copy: the header (length stamped),
    cbz     x18, 2\@f
    add     x1, x1, #{header_size}
    COPY_PAYLOAD x1, x7, x18, 5, 15           // then the payload
2\@:  ldr     x5, [x17, #{port_fast_direct}]      // one more call served by the port
    add     x5, x5, #1
    str     x5, [x17, #{port_fast_direct}]
    sub     x3, x6, #{reply_pages}, lsl #12     // the reply area, below the request
    sub     x3, x3, #{reply_rest}
    mov     sp, x3
    mov     x0, x6                              // handler(request, length, context, reply area)
    mov     x1, x2
    ldr     x2, [x8, #{act_context}]
.if \lending
    ldp     x4, x5, [x9, #{fast_lent}]          // what was lent: the same address, no mapping
    stp     xzr, xzr, [x9, #{fast_lent}]
.else
    ldp     x4, x5, [x9, #{fast_zeros}]         // nothing lent
.endif
    ldr     x9, [x2]
    msr     daifclr, #3
    blr     x9

.endm

// fn tern_bound_merged()   (EL1t: a merged client's call through a bound
// handle to a merged server; x16 the handle's record, x0 its number,
// x1/x2 request, x3/x4 reply buffer, x30 where to return)
//
// The merged call without what binding settled (`tern_core::handle`):
// the port comes from the record, not from translating a name; every
// activation of its pool enters through the merged dispatch (the kernel
// publishes this entry only then, and republishes the handle when that
// changes); the client, part of the kernel domain, is not checked for
// owning its buffers. What can change from call to call still is: the
// message's length and right, a free activation, the sidetrack. Anything
// else goes to the direct entry (`tern_bound_direct`, the kernel call
// `CallBound`), as it came.
.global tern_bound_merged
tern_bound_merged:
    msr     daifset, #3
    ldr     x17, [x16, #{handle_port}]          // the port
    adrp    x9, TERN_FAST
    sub     x18, x2, #{header_size}             // payload length
    cmp     x18, #{message_payload_max}
    b.hi    bound_general                       // too short or too long
    ldr     x5, [x1]                            // header: label | right << 32
    tst     x5, #{no_right_mask}
    b.ne    bound_general                       // carries a right
    ldr     w16, [x17, #{port_pool_head}]
    cbz     w16, bound_general                  // no free activation
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldr     x8, [x12, x16, lsl #3]              // the server activation
    ldp     w11, w7, [x10, #{thread_top}]       // its top activation; w7: its number
    ldr     x13, [x12, x11, lsl #3]             // the client activation
    ldrh    w14, [x13, #{act_domain}]
    ldr     w12, [x8, #{act_next_free}]
    cbnz    w12, 1f
    ldr     w12, [x17, #{port_sidetrack}]
    cbnz    w12, bound_general                  // the last one, and a sidetrack is due
1:  MERGED_COMMIT 0, 1
    b       merged_call_back

bound_general:
    msr     daifclr, #3
    b       tern_bound_direct

// fn tern_bound_merged_registers()   (EL1t: the register form of
// tern_bound_merged; x16 the handle's record, x0 label | payload length
// << 32, x1-x4 the payload's words, x5 the handle's number, x6/x7 the
// client's reply buffer, x30 where to return)
//
// As tern_bound_merged, but nothing to check in the message (it is only
// registers) and nothing to copy: the handler gets the registers. The
// reply comes back in registers when it fits (x1 = 1 << 63 | label |
// length << 32, x2-x5 its words), else into the client's buffer (x1 = its
// length), as the memory form's does.
.global tern_bound_merged_registers
tern_bound_merged_registers:
    msr     daifset, #3
tern_stage_bound_pool_find:                     // (stage labels: the bench's measured table)
    ldr     x17, [x16, #{handle_port}]          // the port
    adrp    x9, TERN_FAST
    ldr     w16, [x17, #{port_pool_head}]
    cbz     w16, bound_registers_general        // no free activation
    ldp     x10, x12, [x9, #{fast_current}]     // the thread, the activation table
    ldr     x8, [x12, x16, lsl #3]              // the server activation
    ldp     w11, w18, [x10, #{thread_top}]      // its top activation; w18: its number
    ldr     x13, [x12, x11, lsl #3]             // the client activation
    ldrh    w14, [x13, #{act_domain}]
    ldr     w12, [x8, #{act_next_free}]
    cbnz    w12, tern_stage_bound_pool_push
    ldr     w12, [x17, #{port_sidetrack}]
    cbnz    w12, bound_registers_general        // the last one, and a sidetrack is due

    // Point of no return. (The reply buffer: where a reply too long for
    // registers goes.)
tern_stage_bound_pool_push:
    CALL_PUSH w18, x6, x7
tern_stage_bound_save_client:
    SAVE_MERGED_CLIENT x14
tern_stage_bound_stats:
    ldr     x14, [x17, #{port_fast_direct}]     // one more call served by the port (x17)
    add     x14, x14, #1
    str     x14, [x17, #{port_fast_direct}]
tern_stage_bound_handler_call:
    ldr     x14, [x8, #{act_stack_top}]         // the reply area, at the stack's top
    sub     x6, x14, #{reply_pages}, lsl #12
    sub     x6, x6, #{reply_rest}
    mov     sp, x6
    ldr     x5, [x8, #{act_context}]            // handler(first, words, context, reply area)
    ldr     x9, [x5, #8]                        // (the record's register handler)
    msr     daifclr, #3
    blr     x9

    // Back: x0 the reply's length, the reply at SP. The checks of
    // MERGED_BACK (the general return when the chain split, a sidetrack
    // or a waiting client is due).
tern_stage_bound_back_checks:
    MERGED_BACK_CHECKS
tern_stage_bound_reply_registers:
    subs    x5, x0, #{header_size}
    b.lo    merged_return_trap                  // not a message
    cmp     x5, #{register_bytes}
    b.hi    merged_back_copy                    // too long for registers: into the buffer
    ldp     x1, x6, [sp]                        // the header: label | right << 32
    tst     x1, #{no_right_mask}
    b.ne    merged_return_trap                  // carries a right
    orr     x1, x1, x5, lsl #32                 // label | length << 32, in registers
    orr     x1, x1, #(1 << 63)
    ldp     x2, x3, [sp, #16]                   // the words
    ldp     x4, x5, [sp, #32]
tern_stage_bound_back_pool_pop:
    RETURN_POOL 6
tern_stage_bound_back_restore_client:
    ldr     x13, [x12, x16, lsl #3]             // the client, again
    ldp     x6, x30, [x13, #{act_saved_sp}]
    mov     sp, x6
    mov     x0, xzr                             // x0 = 0: success
tern_stage_bound_back_unmask:
    msr     daifclr, #3
    ret
tern_stage_bound_end:                           // (what follows is no part of this path)

bound_registers_general:
    msr     daifclr, #3
    b       tern_bound_direct_registers

tern_merged_call_lending:
    MERGED_CALL 1, merged_lending_trap
    b       merged_call_back

tern_merged_call:
    MERGED_CALL 0, merged_call_trap

// MERGED_BACK: back from a merged server's handler, called as a procedure
// at EL1t on its activation's stack (x0 = the reply's length, the reply
// at SP): the reply checked and copied into the client's buffer, the
// activation popped and pooled, and the client resumed — by `ret` for a
// merged client (\trapped = 0), by the fast return's client exit (`eret`,
// registers cleared; no view switch: the handler ran in the client's
// view) for one that trapped in (\trapped = 1), whose buffer the kernel
// reaches through its alias.
.macro MERGED_BACK trapped
    MERGED_BACK_CHECKS
.if \trapped == 0
merged_back_copy:                               // (the register form's reply too long for registers)
.else
.Lmerged_called_back_copy:                        // (the words path's reply too long for registers)
.endif
    ldp     x2, x3, [x14, #{act_reply_address}] // the client's buffer
    cmp     x0, x3
    b.hi    merged_return_trap                  // too large: the general path says so
    subs    x5, x0, #{header_size}
    b.lo    merged_return_trap                  // not a message
    ldr     x3, [sp]                            // the reply's header
    tst     x3, #{no_right_mask}
    b.ne    merged_return_trap                  // carries a right
    mov     x4, sp
.if \trapped
    orr     x2, x2, #{alias_offset}
.endif
    stp     x3, x5, [x2], #16                   // the one copy: the header (length stamped),
    cbz     x5, 3\@f
    add     x4, x4, #{header_size}
    COPY_PAYLOAD x4, x2, x5, 3, 6             // then the payload
3\@:
    RETURN_POOL 3
    mov     x1, x0                              // x1 = reply length
    ldr     x13, [x12, x16, lsl #3]             // the client, again
.if \trapped
    msr     spsel, #1                           // back on the kernel stack
    b       fast_return_restore_frame           // (its view is the one the handler ran in)
.else
    ldp     x3, x30, [x13, #{act_saved_sp}]
    mov     sp, x3
    mov     x0, xzr                             // x0 = 0: success
    msr     daifclr, #3
    ret
.endif
.endm

merged_call_back:
    MERGED_BACK 0

merged_called_back:
    MERGED_BACK 1

merged_call_trap:
    mov     x8, #{call}
    b       kernel_entry_trap

merged_lending_trap:
    ldp     x5, x6, [x9, #{fast_lent}]
    stp     xzr, xzr, [x9, #{fast_lent}]
    mov     x8, #{call_lending}
    b       kernel_entry_trap

// The reply needs the general Return: hand it over as the merged dispatch
// trampoline would (x0 the reply, x1 its length), from a place that spins
// if the Return is refused, as the trampoline does.
merged_return_trap:
    mov     x1, x0
    mov     x0, sp
    mov     x8, #{return_call}
    adr     x30, 4f
    b       kernel_entry_trap
4:  b       4b
