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
.equ FAST_FRAME_SIZE, {frame_size}

.section .text.fastpath, "ax"
.global tern_fast_call
.global tern_fast_return

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
    ldr     w18, [x17, #{port_pool_head}]
    cbz     w18, fast_call_slow                 // no free activation
    ldr     w5, [x17, #{port_pool_free}]
    cmp     w5, #1
    b.ne    1f
    ldr     w5, [x17, #{port_sidetrack}]
    cbnz    w5, fast_call_slow                  // last one, and a sidetrack is due
1:  sub     x5, x2, #{header_size}              // payload length
    cmp     x5, #{fast_payload_max}
    b.hi    fast_call_slow                      // too short or too long
    ldp     x6, x7, [x15, #{dom_region_start}]  // the client's region
    cmp     x1, x6
    b.lo    fast_call_slow
    adds    x8, x1, x2
    b.cs    fast_call_slow
    cmp     x8, x7
    b.hi    fast_call_slow                      // request not the client's
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
2:  ldr     x14, [x12, x18, lsl #3]             // server activation
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
    b.ls    3f
    ldr     x7, [x9, #{fast_copies}]
    ldr     x8, [x7]
    add     x8, x8, #1
    str     x8, [x7]
3:  ldr     x7, [x16, #{dom_translation_base}]  // into the server
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
    add     sp, sp, #FAST_FRAME_SIZE            // the frame the vector reserved
    eret

fast_call_slow:
    mov     x8, #{call}
    b       fast_slow

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
    cmp     x0, x2
    b.lo    fast_return_slow
    adds    x4, x0, x1
    b.cs    fast_return_slow
    cmp     x4, x3
    b.hi    fast_return_slow                    // reply not the server's
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
    add     sp, sp, #FAST_FRAME_SIZE
    eret

fast_return_slow:
    mov     x8, #{return_call}
    // fall through

// The general path, with the registers as the caller left them (x0-x4
// untouched, and already saved in the frame the vector reserved; x8
// restored above).
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
