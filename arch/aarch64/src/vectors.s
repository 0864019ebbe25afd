// Exception vectors and the glue around them.
//
// Every entry saves a TrapFrame on the current kernel stack (SP_EL1),
// except a synchronous exception in the kernel itself, whose frame
// KERNEL_SYNC makes on the exception stack. The frame:
//   [0]   x0 .. x30        [248] SP_EL0     [256] ELR_EL1
//   [264] SPSR_EL1         [272] ESR_EL1    [280] FAR_EL1       (288 bytes)
// Interrupts also save all 32 SIMD registers, FPCR, FPSR and CPACR_EL1
// (whether EL0 may use FP/SIMD) after it,
// because an interrupt may land anywhere, in code that uses them; kernel
// calls and faults do not, because the service gate declares them clobbered.
//
// It is assembly because this is the code that saves the state Rust would
// otherwise clobber. The Rust side (exception.rs) only decides.

.equ FRAME_SIZE, {frame_size}
.equ IRQ_FRAME_SIZE, {irq_frame_size}
// ESR_EL1 rotated right by 25 (see DOMAIN_SYNC): `svc #0`, `svc #1`.
.equ SVC_0, (0x15 << 1) | 1
.equ SVC_1, SVC_0 | (1 << 7)
.equ SVC_2, SVC_0 | (2 << 7)

// Save x2-x30, SP_EL0, ELR and SPSR into the frame at SP (x0/x1 are
// there already), using \scratch1 and \scratch2 after they are saved.
.macro SAVE_USER scratch1, scratch2
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    SAVE_UPPER \scratch1, \scratch2
.endm

// Save x20-x30, SP_EL0, ELR and SPSR into the frame at SP, using
// \scratch1 and \scratch2: the part of a frame that always holds the
// caller's own values. Shared with the fast paths' PARK_USER (fastpath.s,
// assembled with this file).
.macro SAVE_UPPER scratch1, scratch2
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     \scratch1, sp_el0
    stp     x30, \scratch1, [sp, #240]
    mrs     \scratch1, elr_el1
    mrs     \scratch2, spsr_el1
    stp     \scratch1, \scratch2, [sp, #256]
.endm

// The whole trap frame: SAVE_USER, then ESR and FAR.
.macro SAVE_REST
    SAVE_USER x2, x3
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #272]
.endm

.macro RESTORE_AND_RETURN size
    ldp     x2, x3, [sp, #256]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el0, x2
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #\size
    eret
.endm

.macro VECTOR size, target, kind
.balign 0x80
    sub     sp, sp, #\size
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       \target
.endm

// KERNEL_SYNC: a synchronous exception in the kernel itself (current EL
// with SP_EL1): always a kernel bug, reported and never returned from.
// Its cause may be the kernel stack itself — an overflow into the guard
// page below it — so nothing is pushed there: x0 and the stack pointer at
// the exception are parked in EL0's thread registers (TPIDRRO_EL0,
// TPIDR_EL0: Tern uses neither, and no domain runs after a kernel fault),
// SP moves to the top of the exception stack (kernel.ld), and the frame
// is made there. Every entry starts again from the top: a fault in the
// report lands here too, and exception.rs stops after it. The
// domain-facing vectors and the fast paths are untouched.
.macro KERNEL_SYNC
.balign 0x80
    msr     tpidrro_el0, x0
    mov     x0, sp
    msr     tpidr_el0, x0
    adrp    x0, __exception_stack_top
    add     x0, x0, :lo12:__exception_stack_top
    mov     sp, x0
    sub     sp, sp, #FRAME_SIZE
    mrs     x0, tpidrro_el0
    stp     x0, x1, [sp, #0]
    mov     x1, #4
    b       kernel_trap_on_exception_stack
.endm

// DOMAIN_SYNC: a synchronous exception from a domain's code. Only an
// `svc` (checked in ESR, never by registers alone) may take the fast
// paths: Return, Call, ReplyReceive, Null. x9 is parked in its slot of the
// frame-to-be (below SP, which is not moved: a fast path that needs no
// frame never makes one) and becomes the scratch for the check; every
// other path starts at user_general, which makes the frame and puts x9
// back.
//
// The `svc` immediate picks the call before x8 does: ESR rotated right by
// 25 is EC << 1 | IL (0x2b for an `svc`, always a 32-bit instruction)
// with the immediate from bit 7, so the one compare that recognises
// `svc #0` (every call, by its number in x8) costs the same as the class
// test alone did, and `svc #1` (CallBoundWords, whatever x8 holds:
// `tern_bound_trap_registers`) and `svc #2` (Return with the reply in
// registers too: `tern_dispatch_trampoline_registers`) are told apart in
// not_svc, with no compare on the other calls' way (issue 15:
// CallBoundWords was the seventh test of x8). The
// merged gate's direct entry (`tern_kernel_entry`) fakes the syndrome of
// `svc #0` and keeps the x8 test below.
.macro DOMAIN_SYNC marks=0
.if \marks
.global tern_stage_entry
.global tern_stage_entry_return_end
.global tern_stage_entry_call_end
tern_stage_entry:
.endif
    stur    x9, [sp, #(72 - FRAME_SIZE)]
    mrs     x9, esr_el1
    ror     w9, w9, #25                 // EC << 1 | IL, then the ISS from bit 7
    cmp     w9, #SVC_0                  // `svc #0` from AArch64
    b.ne    not_svc
    cbz     x8, tern_fast_return        // Return is call 0
.if \marks
tern_stage_entry_return_end:
.endif
    cmp     x8, #{call}
    b.eq    tern_fast_call
.if \marks
tern_stage_entry_call_end:
.endif
    cmp     x8, #{reply_receive}
    b.eq    tern_fast_reply_receive
    cmp     x8, #{null_call}
    b.eq    null_call
    cmp     x8, #{call_lending}
    b.eq    tern_fast_call_lending
    cmp     x8, #{call_bound}
    b.eq    tern_fast_call_bound
    cmp     x8, #{call_bound_words}
    b.eq    tern_fast_call_words
    b       user_general
.endm

.section .text.vectors, "ax"
.balign 0x800
.global tern_vectors
tern_vectors:
    // Current EL with SP_EL0: merged domains, whose code runs at EL1t on
    // its own stacks (the kernel itself always runs with SP_EL1). Their
    // exceptions arrive on the thread's kernel stack exactly as a protected
    // domain's do, and are handled the same way.
.balign 0x80
    DOMAIN_SYNC
    VECTOR IRQ_FRAME_SIZE, interrupt, 1
    VECTOR FRAME_SIZE, kernel_trap, 2
    VECTOR FRAME_SIZE, kernel_trap, 3
    // Current EL with SP_EL1: the kernel itself. A synchronous exception
    // is taken on the exception stack (KERNEL_SYNC, above).
    KERNEL_SYNC
    VECTOR IRQ_FRAME_SIZE, interrupt, 5
    VECTOR FRAME_SIZE, kernel_trap, 6
    VECTOR FRAME_SIZE, kernel_trap, 7
    // Lower EL, AArch64: protected domains (DOMAIN_SYNC, above; its
    // labels mark the benchmark's stages, see bench.rs).
.balign 0x80
    DOMAIN_SYNC 1
    VECTOR IRQ_FRAME_SIZE, interrupt, 9
    VECTOR FRAME_SIZE, kernel_trap, 10
    VECTOR FRAME_SIZE, kernel_trap, 11
    // Lower EL, AArch32: Tern never runs AArch32 code.
    VECTOR FRAME_SIZE, kernel_trap, 12
    VECTOR FRAME_SIZE, kernel_trap, 13
    VECTOR FRAME_SIZE, kernel_trap, 14
    VECTOR FRAME_SIZE, kernel_trap, 15

// fn kernel_trap(kind in x1) -> !
// An exception Tern never expects, with its frame on the stack it came to.
kernel_trap:
    SAVE_REST
    add     x2, sp, #FRAME_SIZE         // the stack pointer at the exception
    mov     x0, sp
    bl      tern_kernel_trap
    b       .

// fn kernel_trap_on_exception_stack(kind in x1) -> !
// From KERNEL_SYNC: a synchronous exception at EL1, its frame on the
// exception stack; the stack pointer at the exception in TPIDR_EL0.
kernel_trap_on_exception_stack:
    SAVE_REST
    mrs     x2, tpidr_el0
    mov     x0, sp
    bl      tern_kernel_trap
    b       .

// fn domain_trap(kind in x1)
// A kernel call or a fault from EL0. Rust answers with TrapAction in
// x0/x1: x0 = 0 resumes the domain from the (possibly updated) frame,
// with EL0 FP/SIMD trapped (the SIMD registers may hold the kernel's or
// another domain's values; the first use zeroes them, see not_svc);
// otherwise the upcall that entered the domain ends with result x1.
.global domain_trap
domain_trap:
    SAVE_REST
    mov     x0, sp
    bl      tern_domain_trap
    cbnz    x0, 1f
    mov     x9, #(1 << 20)              // CPACR_EL1.FPEN: trap EL0 FP/SIMD
    msr     cpacr_el1, x9
    RESTORE_AND_RETURN FRAME_SIZE
1:  mov     x0, x1
    b       tern_upcall_finish


// fn user_general()   (x9 parked in the frame slot the vector chose)
// Anything from EL0 that no fast path answers: make the frame, put x9
// back, and take the general path. Fast paths that give up before their
// point of no return come here too, with the caller's x0-x4 and x8 as
// they were.
.global user_general
user_general:
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    ldr     x9, [sp, #72]
    mov     x1, #8
    b       domain_trap

// fn null_call()
// Answers the Null kernel call (the floor of the benchmark): x0 = 0
// (success), x1 = 0, every other register as it was.
null_call:
    mov     x0, xzr
    mov     x1, xzr
    ldur    x9, [sp, #(72 - FRAME_SIZE)]
    eret

// fn not_svc()   (w9 = ESR rotated right by 25; the caller's x9 in its slot)
// `svc #1`: CallBoundWords; `svc #2`: Return, from the runtime's register
// trampoline (the reply in registers too). EL0 touched FP/SIMD while trapped: zero the
// SIMD registers, let EL0 use them, retry the instruction. Anything else
// (another `svc` immediate too: a call by x8, as ever): the general path.
not_svc:
    cmp     w9, #SVC_1
    b.eq    tern_fast_call_words
    cmp     w9, #SVC_2
    b.eq    tern_fast_return_words
    ubfx    w9, w9, #1, #6              // the exception class
    cmp     w9, #0x07                   // trapped FP/SIMD access
    b.ne    user_general
    adrp    x9, TERN_FAST               // page-aligned: its address
    add     x9, x9, #{fast_zeros}       // 64 zero bytes: four registers a load
    ld1     {{v0.2d, v1.2d, v2.2d, v3.2d}}, [x9]
    ld1     {{v4.2d, v5.2d, v6.2d, v7.2d}}, [x9]
    ld1     {{v8.2d, v9.2d, v10.2d, v11.2d}}, [x9]
    ld1     {{v12.2d, v13.2d, v14.2d, v15.2d}}, [x9]
    ld1     {{v16.2d, v17.2d, v18.2d, v19.2d}}, [x9]
    ld1     {{v20.2d, v21.2d, v22.2d, v23.2d}}, [x9]
    ld1     {{v24.2d, v25.2d, v26.2d, v27.2d}}, [x9]
    ld1     {{v28.2d, v29.2d, v30.2d, v31.2d}}, [x9]
    msr     fpsr, xzr
    msr     fpcr, xzr
    mov     x9, #(3 << 20)              // CPACR_EL1.FPEN: EL0 may use FP/SIMD
    msr     cpacr_el1, x9
    ldur    x9, [sp, #(72 - FRAME_SIZE)]
    eret

// fn tern_resume_user()
// Where a thread parked by a fast path resumes (its kernel context's x30):
// its trap frame is at SP; go back to EL0 from it, FP/SIMD trapped. If its
// top activation is watched (suspended, held for a state operation,
// spliced out) or gone (terminated), Rust's check on the way back to a
// domain decides first (`tern_resume_check`), as every general-path
// return does.
.global tern_resume_user
tern_resume_user:
    adrp    x9, TERN_FAST
    ldp     x10, x12, [x9, #{fast_current}]
    ldr     w11, [x10, #{thread_top}]
    cbz     w11, 1f                     // no activation left: it ends
    ldr     x11, [x12, x11, lsl #3]
    ldrb    w11, [x11, #{act_flags}]
    tbz     w11, #{watched_bit}, 2f
1:  mov     x0, sp
    bl      tern_resume_check
2:  mov     x9, #(1 << 20)
    msr     cpacr_el1, x9
    RESTORE_AND_RETURN FRAME_SIZE

// fn interrupt(kind in x1)
interrupt:
    SAVE_REST
    add     x2, sp, #FRAME_SIZE
    stp     q0, q1, [x2, #0]
    stp     q2, q3, [x2, #32]
    stp     q4, q5, [x2, #64]
    stp     q6, q7, [x2, #96]
    stp     q8, q9, [x2, #128]
    stp     q10, q11, [x2, #160]
    stp     q12, q13, [x2, #192]
    stp     q14, q15, [x2, #224]
    stp     q16, q17, [x2, #256]
    stp     q18, q19, [x2, #288]
    stp     q20, q21, [x2, #320]
    stp     q22, q23, [x2, #352]
    stp     q24, q25, [x2, #384]
    stp     q26, q27, [x2, #416]
    stp     q28, q29, [x2, #448]
    stp     q30, q31, [x2, #480]
    mrs     x3, fpcr
    mrs     x4, fpsr
    str     x3, [x2, #512]
    str     x4, [x2, #520]
    mrs     x3, cpacr_el1
    str     x3, [x2, #528]
    mov     x0, sp
    bl      tern_interrupt
    add     x2, sp, #FRAME_SIZE
    ldp     q0, q1, [x2, #0]
    ldp     q2, q3, [x2, #32]
    ldp     q4, q5, [x2, #64]
    ldp     q6, q7, [x2, #96]
    ldp     q8, q9, [x2, #128]
    ldp     q10, q11, [x2, #160]
    ldp     q12, q13, [x2, #192]
    ldp     q14, q15, [x2, #224]
    ldp     q16, q17, [x2, #256]
    ldp     q18, q19, [x2, #288]
    ldp     q20, q21, [x2, #320]
    ldp     q22, q23, [x2, #352]
    ldp     q24, q25, [x2, #384]
    ldp     q26, q27, [x2, #416]
    ldp     q28, q29, [x2, #448]
    ldp     q30, q31, [x2, #480]
    ldr     x3, [x2, #512]
    ldr     x4, [x2, #520]
    msr     fpcr, x3
    msr     fpsr, x4
    ldr     x3, [x2, #528]
    msr     cpacr_el1, x3
    RESTORE_AND_RETURN IRQ_FRAME_SIZE
