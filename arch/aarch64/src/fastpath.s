// The migrating RPC fast path: Call and Return, svc to eret.
//
// seL4's fast-path shape: read-only checks first, any doubt branches to
// the general path (which gives the same answer, slower); then the point
// of no return; then the state changes. What it accepts is listed in
// fastpath.rs. Values from the caller's registers (port name, addresses,
// lengths) are checked; links the kernel maintains itself (a thread's top
// activation, a pool's head, an activation's domain) are trusted, as the
// general path guarantees them.
//
// On entry x0-x4 are the call's arguments and x8 the call number; the
// caller's gate declares x0-x18 and every SIMD register clobbered, so
// those are scratch here. x19-x30 belong to the caller until saved.
//
// Registers a server could see are cleared before it runs: x3-x30 from a
// block of zeros, and EL0 FP/SIMD access is trapped until first use, when
// the kernel zeroes the SIMD registers (exception.rs).

.equ CPACR_TRAP_EL0_SIMD, (1 << 20)

.section .text.fastpath, "ax"
.global tern_fast_call
.global tern_fast_return
.global tern_fast_reply_receive

// FAST_SAVE_USER: save the caller's EL0 registers into the trap frame the
// vector reserved at SP (x0/x1 are there already), as the general path's
// would be — a thread parked by a fast path is resumed from it
// (tern_resume_user). Clobbers x5, x6. (SAVE_USER is vectors.s's.)
.macro FAST_SAVE_USER
    SAVE_USER x5, x6
.endm

// Branch to \fail unless [\address, \end) lies in [\start, \stop) (the
// sender's region) or in the shared read-only image (from TERN_FAST in x9).
// Uses \scratch1 and \scratch2.
.macro CHECK_READABLE address, end, start, stop, scratch1, scratch2, fail
    cmp     \address, \start
    ccmp    \end, \stop, #2, hs
    b.ls    90f
    ldp     \scratch1, \scratch2, [x9, #{fast_image}]
    cmp     \address, \scratch1
    ccmp    \end, \scratch2, #2, hs
    b.hi    \fail
90:
.endm

// fn tern_fast_call()  (x0 port name, x1/x2 request, x3/x4 reply buffer)
tern_fast_call:
    adrp    x9, TERN_FAST
    add     x9, x9, :lo12:TERN_FAST
    ldr     x10, [x9, #{fast_current}]          // the thread
    ldr     w11, [x10, #{thread_top}]           // its top activation (the client's)
    ldr     x12, [x9, #{fast_activations}]
    ldr     x13, [x12, x11, lsl #3]             // client activation
    ldr     w14, [x13, #{act_port}]
    cbnz    w14, fast_call_slow                 // a nested call: general path
    ldrh    w14, [x13, #{act_domain}]
    ldr     x15, [x9, #{fast_domains}]
    ldr     x15, [x15, x14, lsl #3]             // client domain
    ldp     x16, x17, [x15, #{dom_port_words}]
    cmp     x0, x17
    b.hs    fast_call_slow                      // no such name
    ldr     w16, [x16, x0, lsl #2]
    and     w16, w16, #0x7fffffff               // port number (0: none)
    ldr     x17, [x9, #{fast_ports}]
    ldr     x17, [x17, x16, lsl #3]             // the port (table[0] is null)
    cbz     x17, fast_call_slow
1:  sub     x5, x2, #{header_size}              // payload length
    cmp     x5, #{fast_payload_max}
    b.hi    fast_call_slow                      // too short or too long
    ldp     x6, x7, [x15, #{dom_region_start}]  // the client's region
    adds    x8, x1, x2
    b.cs    fast_call_slow
    CHECK_READABLE x1, x8, x6, x7, x16, x18, fast_call_slow
    ldp     w8, w16, [x1, #4]                   // header: right, length
    cmn     w8, #1
    b.ne    fast_call_slow                      // carries a right
    cmp     w16, w5
    b.ne    fast_call_slow                      // header disagrees
    cbz     x4, 2f
    cmp     x3, x6
    b.lo    fast_call_slow
    adds    x8, x3, x4
    b.cs    fast_call_slow
    cmp     x8, x7
    b.hi    fast_call_slow                      // reply buffer not the client's
2:  ldr     w18, [x17, #{port_pool_head}]
    cbz     w18, fast_handoff                   // no free activation: a server thread?
    ldr     w5, [x17, #{port_pool_free}]
    cmp     w5, #1
    b.ne    3f
    ldr     w5, [x17, #{port_sidetrack}]
    cbnz    w5, fast_call_slow                  // last one, and a sidetrack is due
3:  ldr     x14, [x12, x18, lsl #3]             // server activation
    ldrh    w16, [x14, #{act_domain}]
    ldr     x6, [x9, #{fast_domains}]
    ldr     x16, [x6, x16, lsl #3]              // server domain

    // Point of no return.
    ldr     w6, [x14, #{act_next_free}]         // pop the pool
    str     w6, [x17, #{port_pool_head}]
    ldr     w6, [x17, #{port_pool_free}]
    sub     w6, w6, #1
    str     w6, [x17, #{port_pool_free}]
    ldr     w6, [x10, #{thread_id}]             // push on the chain
    stp     w11, w6, [x14, #{act_caller}]       // caller, occupant
    str     w18, [x10, #{thread_top}]
    stp     x3, x4, [x14, #{act_reply_address}] // where the reply goes
    ldrh    w6, [x13, #{act_domain}]
    strh    w6, [x14, #{act_reply_domain}]
    add     x6, x13, #{act_saved_x19}           // save the client
    stp     x19, x20, [x6, #0]
    stp     x21, x22, [x6, #16]
    stp     x23, x24, [x6, #32]
    stp     x25, x26, [x6, #48]
    stp     x27, x28, [x6, #64]
    stp     x29, x30, [x6, #80]
    mrs     x7, sp_el0
    mrs     x8, elr_el1
    stp     x7, x8, [x13, #{act_saved_sp}]
    mrs     x7, spsr_el1
    str     x7, [x13, #{act_saved_pstate}]
    ldr     x6, [x14, #{act_stack_top}]         // the request's place on the server's stack
    sub     x6, x6, x2
    and     x6, x6, #0xfffffffffffffff0
    ldr     x7, ={alias_offset}
    add     x7, x6, x7                          // ... as the kernel sees it
    mov     x8, x1
    mov     x11, x2
    bl      fast_copy                           // the one copy
    ldr     x7, [x9, #{fast_migrated}]
    ldr     x8, [x7]
    add     x8, x8, #1
    str     x8, [x7]
    cmp     x2, #{header_size}
    b.ls    4f
    ldr     x7, [x9, #{fast_copies}]
    ldr     x8, [x7]
    add     x8, x8, #1
    str     x8, [x7]
4:  ldr     x7, [x16, #{dom_translation_base}]  // into the server
    msr     ttbr0_el1, x7
    ldr     x7, [x14, #{act_entry}]
    msr     elr_el1, x7
    msr     sp_el0, x6
    msr     spsr_el1, xzr
    mov     x7, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x7
    mov     x0, x6                              // x0: request, x1: length, x2: context
    mov     x1, x2
    ldr     x2, [x16, #{dom_context}]
    adrp    x9, TERN_ZEROS
    add     x9, x9, :lo12:TERN_ZEROS
    ldp     x3, x4, [x9]
    ldp     x5, x6, [x9]
    ldp     x7, x8, [x9]
    ldp     x10, x11, [x9]
    ldp     x12, x13, [x9]
    ldp     x14, x15, [x9]
    ldp     x16, x17, [x9]
    ldp     x18, x19, [x9]
    ldp     x20, x21, [x9]
    ldp     x22, x23, [x9]
    ldp     x24, x25, [x9]
    ldp     x26, x27, [x9]
    ldp     x28, x29, [x9]
    ldp     x30, x9, [x9]
    add     sp, sp, #FRAME_SIZE            // the frame the vector reserved
    eret

// The switching handoff (the pool is empty): a server thread waiting in
// receive takes the request and the processor; the client waits.
fast_handoff:
    ldr     w18, [x17, #{port_receivers_head}]
    cbz     w18, fast_call_slow                 // nobody in receive
    ldr     x14, [x9, #{fast_threads}]
    ldr     x14, [x14, x18, lsl #3]             // the server thread
    ldr     x6, [x14, #({thread_receive_address} + 8)]
    cmp     x2, x6
    b.hi    fast_call_slow                      // its buffer is too small

    // Point of no return.
    FAST_SAVE_USER
    ldr     w6, [x14, #{thread_next_queued}]    // out of the receivers
    str     w6, [x17, #{port_receivers_head}]
    cbnz    w6, 1f
    str     wzr, [x17, #{port_receivers_tail}]
1:  str     wzr, [x14, #{thread_next_queued}]
    ldr     x7, [x14, #{thread_receive_address}]
    ldr     x8, ={alias_offset}
    add     x7, x7, x8
    mov     x8, x1
    mov     x11, x2
    bl      fast_copy                           // the one copy, into its buffer
    ldr     x6, [x14, #{thread_frame}]          // its results: x0 = 0, x1 = length
    stp     xzr, x2, [x6]
    ldr     w6, [x10, #{thread_id}]
    str     w6, [x14, #{thread_serving}]
    strh    wzr, [x14, #{thread_receive_domain}]
    mov     w6, #{state_running}
    str     w6, [x14, #{thread_state}]
    mov     w6, #{state_waiting_for_reply}      // the client waits for the reply
    str     w6, [x10, #{thread_state}]
    stp     x3, x4, [x10, #{thread_reply_address}]
    ldrh    w6, [x13, #{act_domain}]
    strh    w6, [x10, #{thread_reply_domain}]
    mov     x6, sp
    str     x6, [x10, #{thread_frame}]
    ldr     x7, [x9, #{fast_handed_off}]
    ldr     x8, [x7]
    add     x8, x8, #1
    str     x8, [x7]
    b       fast_switch

fast_call_slow:
    mov     x8, #{call}
    b       fast_slow

// fn tern_fast_reply_receive()  (x0/x1 reply, x2 port name, x3/x4 buffer)
// The switching path's way back: the reply goes into the waiting client's
// buffer, the server thread waits in receive again, the client gets the
// processor.
tern_fast_reply_receive:
    adrp    x9, TERN_FAST
    add     x9, x9, :lo12:TERN_FAST
    ldr     x10, [x9, #{fast_current}]          // the server thread
    ldr     w11, [x10, #{thread_serving}]
    cbz     w11, fast_reply_receive_slow        // nobody to reply to
    ldr     x12, [x9, #{fast_threads}]
    ldr     x14, [x12, x11, lsl #3]             // the client thread
    ldr     w6, [x14, #{thread_state}]
    cmp     w6, #{state_waiting_for_reply}
    b.ne    fast_reply_receive_slow
    ldr     w6, [x10, #{thread_top}]            // the server's domain
    ldr     x7, [x9, #{fast_activations}]
    ldr     x6, [x7, x6, lsl #3]
    ldrh    w13, [x6, #{act_domain}]
    ldr     x15, [x9, #{fast_domains}]
    ldr     x15, [x15, x13, lsl #3]
    ldp     x16, x17, [x15, #{dom_port_words}]  // the port: a receive right it serves
    cmp     x2, x17
    b.hs    fast_reply_receive_slow
    ldr     w16, [x16, x2, lsl #2]
    tbz     w16, #31, fast_reply_receive_slow
    and     w16, w16, #0x7fffffff
    ldr     w6, [x10, #{thread_serves}]
    cmp     w6, w16
    b.ne    fast_reply_receive_slow
    ldr     x17, [x9, #{fast_ports}]
    ldr     x17, [x17, x16, lsl #3]
    ldr     w6, [x17, #{port_queued}]
    cbnz    w6, fast_reply_receive_slow         // other clients queued
    sub     x5, x1, #{header_size}
    cmp     x5, #{fast_payload_max}
    b.hi    fast_reply_receive_slow
    ldp     x18, x7, [x14, #{thread_reply_address}]
    cmp     x1, x7
    b.hi    fast_reply_receive_slow             // too large: the general path says so
    ldp     x6, x7, [x15, #{dom_region_start}]
    adds    x8, x0, x1
    b.cs    fast_reply_receive_slow
    CHECK_READABLE x0, x8, x6, x7, x11, x15, fast_reply_receive_slow
    ldp     w8, w11, [x0, #4]
    cmn     w8, #1
    b.ne    fast_reply_receive_slow             // carries a right
    cmp     w11, w5
    b.ne    fast_reply_receive_slow             // header disagrees
    cmp     x4, #{header_size}
    b.lo    fast_reply_receive_slow
    cmp     x3, x6
    b.lo    fast_reply_receive_slow
    adds    x8, x3, x4
    b.cs    fast_reply_receive_slow
    cmp     x8, x7
    b.hi    fast_reply_receive_slow             // receive buffer not the server's

    // Point of no return.
    FAST_SAVE_USER
    ldr     x7, ={alias_offset}
    add     x7, x18, x7
    mov     x8, x0
    mov     x11, x1
    bl      fast_copy                           // the one copy, into the client's buffer
    ldr     x6, [x14, #{thread_frame}]          // the client's results
    stp     xzr, x1, [x6]
    mov     w6, #{state_running}
    str     w6, [x14, #{thread_state}]
    strh    wzr, [x14, #{thread_reply_domain}]
    str     wzr, [x10, #{thread_serving}]       // the server waits in receive again
    mov     w6, #{state_receiving}
    str     w6, [x10, #{thread_state}]
    str     w16, [x10, #{thread_state_payload}]
    stp     x3, x4, [x10, #{thread_receive_address}]
    strh    w13, [x10, #{thread_receive_domain}]
    mov     x6, sp
    str     x6, [x10, #{thread_frame}]
    str     wzr, [x10, #{thread_next_queued}]   // at the back of the receivers
    ldr     w6, [x10, #{thread_id}]
    ldr     w7, [x17, #{port_receivers_tail}]
    cbz     w7, 1f
    ldr     x7, [x12, x7, lsl #3]
    str     w6, [x7, #{thread_next_queued}]
    b       2f
1:  str     w6, [x17, #{port_receivers_head}]
2:  str     w6, [x17, #{port_receivers_tail}]
    b       fast_switch

fast_reply_receive_slow:
    mov     x8, #{reply_receive}
    b       fast_slow

// fn fast_switch(from: x10, to: x14)  (x9 = TERN_FAST)
// Charge the time to `from`, make `to` current in its view, park `from`
// (it resumes at tern_resume_user, from its trap frame at SP), and resume
// `to` wherever it was parked — tern_resume_user or the general path's
// tern_switch.
fast_switch:
    mrs     x6, cntpct_el0
    ldr     x7, [x9, #{fast_charged_at}]
    ldr     x8, [x7]
    str     x6, [x7]
    sub     x6, x6, x8
    ldr     x8, [x10, #{thread_cpu_time}]
    add     x8, x8, x6
    str     x8, [x10, #{thread_cpu_time}]
    ldr     x6, [x9, #{fast_current_id}]
    ldr     w7, [x14, #{thread_id}]
    str     w7, [x6]
    str     x14, [x9, #{fast_current}]
    ldr     w6, [x14, #{thread_top}]
    ldr     x7, [x9, #{fast_activations}]
    ldr     x6, [x7, x6, lsl #3]
    ldrh    w6, [x6, #{act_domain}]
    ldr     x7, [x9, #{fast_domains}]
    ldr     x7, [x7, x6, lsl #3]
    ldr     x7, [x7, #{dom_translation_base}]
    msr     ttbr0_el1, x7
    isb
    ldr     x6, [x10, #{thread_kernel_context}]
    mov     x7, sp
    str     x7, [x6, #{context_sp}]
    adrp    x7, tern_resume_user
    add     x7, x7, :lo12:tern_resume_user
    str     x7, [x6, #{context_x30}]
    mrs     x7, tpidr_el1
    str     x7, [x6, #{context_thread_pointer}]
    ldr     x6, [x14, #{thread_kernel_context}]
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
tern_fast_return:
    adrp    x9, TERN_FAST
    add     x9, x9, :lo12:TERN_FAST
    ldr     x10, [x9, #{fast_current}]
    ldr     w11, [x10, #{thread_top}]           // the server activation
    ldr     x12, [x9, #{fast_activations}]
    ldr     x14, [x12, x11, lsl #3]
    ldr     w15, [x14, #{act_port}]
    cbz     w15, fast_return_slow               // not a pool activation
    ldrb    w16, [x14, #{act_sidetrack}]
    cbnz    w16, fast_return_slow               // a sidetrack's end
    ldr     w16, [x14, #{act_caller}]
    cbz     w16, fast_return_slow
    ldr     x17, [x9, #{fast_ports}]
    ldr     x17, [x17, x15, lsl #3]             // its port
    ldr     w18, [x17, #{port_waiting}]
    cbnz    w18, fast_return_slow               // someone waits for an activation
    sub     x5, x1, #{header_size}
    cmp     x5, #{fast_payload_max}
    b.hi    fast_return_slow
    ldp     x6, x7, [x14, #{act_reply_address}] // the client's buffer
    cmp     x1, x7
    b.hi    fast_return_slow                    // too large: the general path says so
    ldrh    w8, [x14, #{act_domain}]
    ldr     x18, [x9, #{fast_domains}]
    ldr     x18, [x18, x8, lsl #3]              // server domain
    ldp     x2, x3, [x18, #{dom_region_start}]
    adds    x4, x0, x1
    b.cs    fast_return_slow
    CHECK_READABLE x0, x4, x2, x3, x2, x3, fast_return_slow
    ldp     w2, w3, [x0, #4]
    cmn     w2, #1
    b.ne    fast_return_slow                    // carries a right
    cmp     w3, w5
    b.ne    fast_return_slow                    // header disagrees

    // Point of no return.
    ldr     x7, ={alias_offset}
    add     x7, x6, x7
    mov     x8, x0
    mov     x11, x1
    bl      fast_copy                           // the one copy, into the client's buffer
    ldr     w11, [x10, #{thread_top}]
    str     w16, [x10, #{thread_top}]           // pop
    stp     wzr, wzr, [x14, #{act_caller}]
    str     xzr, [x14, #{act_reply_capacity}]
    ldr     w2, [x17, #{port_pool_head}]        // back to the pool
    str     w2, [x14, #{act_next_free}]
    str     w11, [x17, #{port_pool_head}]
    ldr     w2, [x17, #{port_pool_free}]
    add     w2, w2, #1
    str     w2, [x17, #{port_pool_free}]
    ldr     x13, [x12, x16, lsl #3]             // the client, again
    ldrh    w2, [x13, #{act_domain}]
    ldr     x3, [x9, #{fast_domains}]
    ldr     x3, [x3, x2, lsl #3]
    ldr     x3, [x3, #{dom_translation_base}]
    msr     ttbr0_el1, x3
    add     x2, x13, #{act_saved_x19}
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldp     x3, x4, [x13, #{act_saved_sp}]
    msr     sp_el0, x3
    msr     elr_el1, x4
    ldr     x3, [x13, #{act_saved_pstate}]
    msr     spsr_el1, x3
    mov     x3, #CPACR_TRAP_EL0_SIMD
    msr     cpacr_el1, x3
    mov     x0, xzr                             // success; x1 = reply length
    adrp    x9, TERN_ZEROS
    add     x9, x9, :lo12:TERN_ZEROS
    ldp     x2, x3, [x9]
    ldp     x4, x5, [x9]
    ldp     x6, x7, [x9]
    ldp     x8, x10, [x9]
    ldp     x11, x12, [x9]
    ldp     x13, x14, [x9]
    ldp     x15, x16, [x9]
    ldp     x17, x18, [x9]
    ldr     x9, [x9]
    add     sp, sp, #FRAME_SIZE
    eret

fast_return_slow:
    mov     x8, #{return_call}
    // fall through

// The general path, with the registers as the caller left them (x0-x4
// untouched, x0/x1 already saved in the frame the vector reserved; x8
// restored above). Only ever reached before a point of no return.
fast_slow:
    mov     x1, #8
    b       domain_trap

// fn fast_copy(source: x8, destination: x7, bytes: x11)
// Copies exactly `bytes`, 16 at a time, then the tail byte by byte, so it
// never reads past the end of the claim it was given. Clobbers x5, x7,
// x8, x11 and x18.
fast_copy:
    subs    x11, x11, #16
    b.lo    2f
1:  ldp     x5, x18, [x8], #16
    stp     x5, x18, [x7], #16
    subs    x11, x11, #16
    b.hs    1b
2:  adds    x11, x11, #16
    b.eq    4f
3:  ldrb    w5, [x8], #1
    strb    w5, [x7], #1
    subs    x11, x11, #1
    b.ne    3b
4:  ret
