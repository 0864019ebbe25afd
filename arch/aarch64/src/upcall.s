// Upcalls: the kernel-based thread steps out into a domain, and comes back.
//
// Threads in Tern are based in the kernel (Ford & Lepreau, section 4.1): a
// thread starts in kernel mode and makes an *upcall* into a domain to run
// its code. tern_upcall saves the kernel's callee-saved state on the kernel
// stack, records where in the UpcallRecord, and erets into the domain with
// every other register cleared (nothing of the kernel's leaks out). When
// the domain ends the upcall (the Exit call, or a fault that terminates
// it), the trap glue jumps to tern_upcall_finish, which drops whatever the
// trap left on the kernel stack and returns from tern_upcall as if it were
// an ordinary call. TPIDR_EL1 points at the innermost record; records are
// chained through `previous`, so upcalls may nest.
//
// UpcallRecord layout (see upcall.rs): [0] saved kernel SP, [8] entry PC,
// [16] user SP, [24] x0, [32] x1, [40] TTBR0, [48] previous record,
// [56] PSTATE to enter with (EL0t, or EL1t for a merged domain), [64] 0, or
// the x0-x30 to resume with (a split-off segment going back to its top
// activation; the record's entry, stack and PSTATE are then the saved ones).

.section .text.upcall, "ax"
.global tern_upcall
.global tern_upcall_finish

// fn tern_upcall(record: *mut UpcallRecord)
// Called with interrupts masked; the domain runs with them unmasked.
tern_upcall:
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x9, sp
    str     x9, [x0, #0]
    mrs     x10, tpidr_el1
    str     x10, [x0, #48]
    msr     tpidr_el1, x0
    ldp     x10, x11, [x0, #8]
    ldp     x12, x13, [x0, #24]
    ldr     x14, [x0, #40]
    msr     ttbr0_el1, x14
    msr     elr_el1, x10
    msr     sp_el0, x11
    ldr     x14, [x0, #56]
    msr     spsr_el1, x14               // EL0t or EL1t, interrupts unmasked
    movi    v0.2d, #0
    movi    v1.2d, #0
    movi    v2.2d, #0
    movi    v3.2d, #0
    movi    v4.2d, #0
    movi    v5.2d, #0
    movi    v6.2d, #0
    movi    v7.2d, #0
    movi    v8.2d, #0
    movi    v9.2d, #0
    movi    v10.2d, #0
    movi    v11.2d, #0
    movi    v12.2d, #0
    movi    v13.2d, #0
    movi    v14.2d, #0
    movi    v15.2d, #0
    movi    v16.2d, #0
    movi    v17.2d, #0
    movi    v18.2d, #0
    movi    v19.2d, #0
    movi    v20.2d, #0
    movi    v21.2d, #0
    movi    v22.2d, #0
    movi    v23.2d, #0
    movi    v24.2d, #0
    movi    v25.2d, #0
    movi    v26.2d, #0
    movi    v27.2d, #0
    movi    v28.2d, #0
    movi    v29.2d, #0
    movi    v30.2d, #0
    movi    v31.2d, #0
    mov     x9, #(3 << 20)              // CPACR_EL1.FPEN: registers are clean,
    msr     cpacr_el1, x9               // EL0 may use FP/SIMD
    ldr     x30, [x0, #64]
    cbnz    x30, 1f                     // resuming saved registers
    mov     x0, x12
    mov     x1, x13
    mov     x2, xzr
    mov     x3, xzr
    mov     x4, xzr
    mov     x5, xzr
    mov     x6, xzr
    mov     x7, xzr
    mov     x8, xzr
    mov     x9, xzr
    mov     x10, xzr
    mov     x11, xzr
    mov     x12, xzr
    mov     x13, xzr
    mov     x14, xzr
    mov     x15, xzr
    mov     x16, xzr
    mov     x17, xzr
    mov     x18, xzr
    mov     x19, xzr
    mov     x20, xzr
    mov     x21, xzr
    mov     x22, xzr
    mov     x23, xzr
    mov     x24, xzr
    mov     x25, xzr
    mov     x26, xzr
    mov     x27, xzr
    mov     x28, xzr
    mov     x29, xzr
    mov     x30, xzr
    isb
    eret
    // A split-off segment resumes its top activation: x0-x30 from the
    // saved registers at x30 (its SP, PC and PSTATE are in the record).
1:  ldp     x0, x1, [x30, #0]
    ldp     x2, x3, [x30, #16]
    ldp     x4, x5, [x30, #32]
    ldp     x6, x7, [x30, #48]
    ldp     x8, x9, [x30, #64]
    ldp     x10, x11, [x30, #80]
    ldp     x12, x13, [x30, #96]
    ldp     x14, x15, [x30, #112]
    ldp     x16, x17, [x30, #128]
    ldp     x18, x19, [x30, #144]
    ldp     x20, x21, [x30, #160]
    ldp     x22, x23, [x30, #176]
    ldp     x24, x25, [x30, #192]
    ldp     x26, x27, [x30, #208]
    ldp     x28, x29, [x30, #224]
    ldr     x30, [x30, #240]
    isb
    eret

// fn tern_upcall_finish() -> !   (returns from tern_upcall)
// Entered from the trap glue with interrupts masked, on the same kernel stack.
tern_upcall_finish:
    mrs     x9, tpidr_el1
    ldr     x10, [x9, #0]
    mov     sp, x10
    ldr     x10, [x9, #48]
    msr     tpidr_el1, x10
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
