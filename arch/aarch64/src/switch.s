// Thread switch: from one kernel stack to another.
//
// A thread that is not running is parked inside the kernel, in a call to
// tern_switch, on its own kernel stack. Switching saves what the C ABI
// says a callee must preserve (x19-x30, SP, d8-d15), plus TPIDR_EL1 (the
// thread's innermost upcall record), into the outgoing thread's
// KernelContext, and loads the incoming one's; `ret` then returns into
// wherever the incoming thread called tern_switch — or, for a new thread,
// into tern_thread_start.
//
// KernelContext layout (threads.rs): [0] x19 .. [88] x30, [96] SP,
// [104] d8 .. [160] d15, [168] TPIDR_EL1.

.section .text.switch, "ax"
.global tern_switch
.global tern_thread_start

// fn tern_switch(from: *mut KernelContext, to: *const KernelContext)
tern_switch:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    mrs     x9, tpidr_el1
    str     x9, [x0, #168]
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ldr     x9, [x1, #168]
    msr     tpidr_el1, x9
    ret

// fn tern_thread_start() -> !
// Where a new thread's first switch lands: a fresh kernel stack.
tern_thread_start:
    mov     x29, xzr
    bl      tern_thread_main
    b       .
