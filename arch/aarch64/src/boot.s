// Tern start-up: from the boot loader's hand-off to the first Rust.
//
// Entered at the image's link address on every core the loader starts, with
// x0 = boot information (a device tree, an ATAG list, or nothing):
//   - Raspberry Pi 4 firmware and QEMU raspi4b (raw kernel8.img): EL2, core 0
//     only; cores 1-3 wait in the firmware's spin table.
//   - QEMU virt (raw image): EL1, x0 = device tree.
//   - QEMU raspi4b with an ELF: EL3, all four cores at once.
// It is assembly because nothing here may use the stack, SIMD registers or
// unaligned accesses before the MMU is on (all memory is Device memory then).
//
// Constants come from Rust through global_asm! operands (see boot.rs).

.section .text.boot, "ax"
.global _start

// fn _start(boot_information: usize) -> !
_start:
    mov     x19, x0
    mrs     x20, CurrentEL              // remembered for the banner
    lsr     x20, x20, #2
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, park                    // only core 0 boots; others idle
    mrs     x1, CurrentEL
    lsr     x1, x1, #2
    cmp     x1, #3
    b.eq    from_el3
    cmp     x1, #2
    b.eq    from_el2
    b       at_el1

// fn from_el3() -> !   (ELF boots on raspi4b)
from_el3:
    msr     cptr_el3, xzr               // no FP/SIMD traps to EL3
    ldr     x1, ={scr_el3}
    msr     scr_el3, x1
    mov     x1, #0x3c9                  // EL2h, interrupts masked
    msr     spsr_el3, x1
    adr     x1, from_el2
    msr     elr_el3, x1
    eret

// fn from_el2() -> !   (the Pi firmware's hand-off)
from_el2:
    ldr     x1, ={hcr_el2}
    msr     hcr_el2, x1
    mov     x1, #3                      // EL1 may use the physical timer and counter
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr
    ldr     x1, ={cptr_el2}
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    mrs     x1, pmcr_el0                // MDCR_EL2.HPMN = every counter, no traps
    ubfx    x1, x1, #11, #5
    msr     mdcr_el2, x1
    mrs     x1, midr_el1
    msr     vpidr_el2, x1
    mrs     x1, mpidr_el1
    msr     vmpidr_el2, x1
    ldr     x1, ={sctlr_el1_reset}
    msr     sctlr_el1, x1
    mov     x1, #0x3c5                  // EL1h, interrupts masked
    msr     spsr_el2, x1
    adr     x1, at_el1
    msr     elr_el2, x1
    eret

// fn at_el1() -> !
at_el1:
    mov     x1, #(3 << 20)              // CPACR_EL1.FPEN: FP/SIMD usable (Rust needs it)
    msr     cpacr_el1, x1
    isb
    ldr     x1, =__boot_stack_top
    mov     sp, x1
    ldr     x1, =tern_vectors
    msr     vbar_el1, x1

    // MMU on with the compile-time boot table (whole gigabytes, identity).
    ldr     x1, ={mair}
    msr     mair_el1, x1
    mrs     x2, id_aa64mmfr0_el1
    and     x3, x2, #0xf                // PARange -> TCR.IPS (capped at 48 bits)
    cmp     x3, #5
    mov     x4, #5
    csel    x3, x3, x4, ls
    ldr     x1, ={tcr}
    bfi     x1, x3, #32, #3
    ubfx    x4, x2, #4, #4              // ASIDBits: 0b0010 means 16-bit ASIDs
    cmp     x4, #2
    b.ne    1f
    orr     x1, x1, #(1 << 36)          // TCR.AS
1:  msr     tcr_el1, x1
    ldr     x1, =TERN_BOOT_TABLE
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    ldr     x1, ={sctlr_el1_kernel}
    msr     sctlr_el1, x1
    isb

    // Zero .bss (16-byte aligned at both ends by the linker script).
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:  mov     x0, x19
    mov     x1, x20
    bl      tern_board_main

// fn park() -> !
park:
    wfe
    b       park
