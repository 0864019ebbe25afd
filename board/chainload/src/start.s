// tern-chainload start-up: move out of the kernel's way, run the loader,
// start the kernel.
//
// The firmware (or QEMU -M raspi4b -kernel) copies the raw image to 0x80000
// and enters it at EL2 on core 0, x0 = the device tree (ATAGs at 0x100 on
// QEMU). The loader is linked at tern_chainload::LINK_ADDRESS (96 MiB), so
// the first thing it does, with position-independent code only, is copy
// itself there and jump; 0x80000 is then free for the kernel. x0 is kept in
// x19, callee-saved, from the first instruction to the kernel's: the Rust
// code is called with the standard ABI, which preserves it.
//
// Assembly because it runs before there is a stack, and at the wrong address
// for anything Rust would compile. Constants come from main.rs as const
// operands. The MMU stays off throughout: data accesses are then Device
// memory (uncached, so the copies need no data-cache cleaning), instruction
// fetches may be cached (so `ic iallu` before running copied code).
//
// What it leaves out: EL changes (the kernel is entered at the EL the
// loader was, and does its own), and a safe home for cores that should not
// be here: under the supported boots cores 1-3 never arrive (they wait in the
// firmware's spin table); a core that does (an ELF booted by QEMU at EL3)
// parks with `wfe` in the loader's relocated copy, memory the kernel may
// later reuse.

.section .text.boot, "ax"
.global _start

// fn _start(boot_information: usize) -> !
_start:
    mov     x19, x0                     // the boot information, for the kernel
    msr     daifset, #0xf
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, secondary

    // Copy [__loader_start, __loader_end) from where we run to where we are
    // linked (16 bytes at a time: both ends are 16-byte aligned).
    adr     x1, _start
    ldr     x2, =__loader_start
    ldr     x3, =__loader_end
1:  ldp     x4, x5, [x1], #16
    stp     x4, x5, [x2], #16
    cmp     x2, x3
    b.lo    1b

    // Zero .bss at the new place.
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b

    // Tell any waiting core the copy is there, then run from it.
3:  ldr     x1, =loader_relocated
    ldr     x2, ={relocated}
    str     x2, [x1]
    dsb     sy
    sev
    ic      iallu
    dsb     sy
    isb
    ldr     x1, =relocated
    br      x1

// fn relocated() -> !   (running at the link address)
relocated:
    // FP/SIMD must not trap at this EL: the Rust code may use its registers.
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #2
    b.ne    4f
    ldr     x2, ={cptr_el2}
    msr     cptr_el2, x2
    b       6f
4:  cmp     x1, #1
    b.ne    5f
    mov     x2, #(3 << 20)              // CPACR_EL1.FPEN
    msr     cpacr_el1, x2
    b       6f
5:  msr     cptr_el3, xzr
6:  isb
    ldr     x1, =__stack_top
    mov     sp, x1
    mov     x0, x19
    bl      loader_main                 // returns the kernel's entry point

    // The kernel's bytes were written with the MMU off (to memory, not
    // to the data cache); drop any stale instructions before running them.
    mov     x20, x0
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    mov     x0, x19                     // Linux's boot protocol: x0 = DTB,
    mov     x1, xzr                     // x1-x3 zero
    mov     x2, xzr
    mov     x3, xzr
    br      x20

// fn secondary() -> !   (a core other than 0: wait for the copy, park in it)
secondary:
    ldr     x1, =loader_relocated
    ldr     x2, ={relocated}
7:  wfe
    ldr     x3, [x1]
    cmp     x3, x2
    b.ne    7b
    ldr     x1, =park
    br      x1

// fn park() -> !
park:
    wfe
    b       park

.section .bss.loader_relocated, "aw", %nobits
.balign 8
// Holds the RELOCATED value (main.rs) once core 0 has copied the loader to its link address.
loader_relocated:
    .skip   8
