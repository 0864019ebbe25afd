//! Which instructions the plugin watches, told from their encodings.
//!
//! Pure functions on a 32-bit A64 instruction word, shared (by `#[path]`)
//! with the xtask, whose tests and stage attribution use the same
//! definitions. Every encoding below is the architecture's system
//! instruction class, `1101 0101 00 L op0 op1 CRn CRm op2 Rt` (L = 1 for
//! `mrs`), or a fixed word:
//!
//! | what | encoding | mask |
//! |---|---|---|
//! | `eret` (and `eretaa`, `eretab`) | `0xd69f03e0` (`0xd69f0bff`, `0xd69f0fff`) | all bits |
//! | `msr ttbr0_el1, xN` | op0 3, op1 0, CRn 2, CRm 0, op2 0: `0xd5182000` | Rt free |
//! | `isb` (any option) | `0xd50330df`, CRm free | `0xfffff0ff` |
//! | `tlbi` (any) | `sys` with op0 1, CRn 8: `0xd5088000` | op1, CRm, op2, Rt free |
//! | `msr daif, xN` | op0 3, op1 3, CRn 4, CRm 2, op2 1: `0xd51b4220` | Rt free |
//! | `msr daifset/daifclr, #imm` | `0xd50340df` / `0xd50340ff`, CRm the mask | `0xfffff0ff` |
//! | a PMU counter read | `mrs xN` of PMEVCNTR0_EL0 `0xd53be800`, PMEVCNTR1_EL0 `0xd53be820`, PMCCNTR_EL0 `0xd53b9d00` | Rt free |
//! | the harness's markers | `hint #0x7e` (a figure begins), `hint #0x7f` (it ends) | all bits |
//!
//! **The markers.** `hint #imm` is the architecture's space for hints; an
//! encoding in it that is not allocated executes as a NOP (Arm ARM,
//! "HINT"). The allocated ones sit at the bottom of the space (NOP, YIELD,
//! WFE ... at 0-7, pointer authentication at 8-31, BTI at 32-38,
//! CHKFEAT and newer at 39 and up); 0x7e and 0x7f, the last two, are
//! unallocated, so the harness can execute them on a Pi 4 and they cost
//! one NOP each, outside the measuring window. QEMU decodes an
//! unallocated hint as a NOP too.
//!
//! What it leaves out: exceptions are not an encoding (the plugin counts
//! executions of a vector entry's first instruction instead, less those
//! reached by a `b` into the table: [`branch_target`]), nor are
//! `msr` writes of other translation registers (TTBR1_EL1, TCR_EL1) or
//! `dsb`, which the benchmark does not ask about.

/// `hint #0x7e`: the harness begins measuring one figure.
pub const MARK_BEGIN: u32 = hint(0x7e);
/// `hint #0x7f`: the harness has finished measuring one figure.
pub const MARK_END: u32 = hint(0x7f);

/// The word of `hint #imm` (imm < 128).
pub const fn hint(imm: u32) -> u32 {
    0xd503_201f | (imm & 0x7f) << 5
}

/// What an instruction is, for the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Nothing the plugin watches.
    Plain,
    /// `eret`, `eretaa` or `eretab`.
    Eret,
    /// `msr ttbr0_el1, xN`.
    Ttbr0,
    /// `isb`.
    Isb,
    /// Any `tlbi`.
    Tlbi,
    /// `msr daif, xN`, `msr daifset, #imm` or `msr daifclr, #imm`.
    Daif,
    /// `mrs xN` of PMEVCNTR0_EL0, PMEVCNTR1_EL0 or PMCCNTR_EL0: an edge of
    /// a measuring window when a figure is being measured.
    CounterRead,
    /// [`MARK_BEGIN`].
    MarkBegin,
    /// [`MARK_END`].
    MarkEnd,
}

/// The class of the instruction `word`.
pub const fn classify(word: u32) -> Class {
    const RT: u32 = !0x1f;
    const SYSTEM_IMMEDIATE: u32 = 0xffff_f0ff;
    match word {
        0xd69f_03e0 | 0xd69f_0bff | 0xd69f_0fff => Class::Eret,
        MARK_BEGIN => Class::MarkBegin,
        MARK_END => Class::MarkEnd,
        _ if word & RT == 0xd518_2000 => Class::Ttbr0,
        _ if word & SYSTEM_IMMEDIATE == 0xd503_30df => Class::Isb,
        _ if word & 0xfff8_f000 == 0xd508_8000 => Class::Tlbi,
        _ if word & RT == 0xd51b_4220 => Class::Daif,
        _ if word & SYSTEM_IMMEDIATE == 0xd503_40df || word & SYSTEM_IMMEDIATE == 0xd503_40ff => Class::Daif,
        _ if word & RT == 0xd53b_e800 || word & RT == 0xd53b_e820 || word & RT == 0xd53b_9d00 => Class::CounterRead,
        _ => Class::Plain,
    }
}

/// The target of `b label` (immediate, unconditional, not `bl`) at `pc`.
/// The merged gate's direct kernel entry branches into the vector table
/// without taking an exception; the plugin tells that branch from an
/// exception by it.
pub const fn branch_target(word: u32, pc: u64) -> Option<u64> {
    if word & 0xfc00_0000 != 0x1400_0000 {
        return None;
    }
    // imm26, in instructions, sign-extended.
    let offset = ((word << 6) as i32 >> 6) as i64 * 4;
    Some(pc.wrapping_add(offset as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as an assembler writes them (checked against `llvm-mc
    /// -triple=aarch64 -mattr=+v8.3a,+tlb-rmi -show-encoding` when written).
    #[test]
    fn classifies_the_watched_instructions() {
        let cases: &[(u32, Class, &str)] = &[
            (0xd69f_03e0, Class::Eret, "eret"),
            (0xd69f_0bff, Class::Eret, "eretaa"),
            (0xd69f_0fff, Class::Eret, "eretab"),
            (0xd518_2000, Class::Ttbr0, "msr ttbr0_el1, x0"),
            (0xd518_2009, Class::Ttbr0, "msr ttbr0_el1, x9"),
            (0xd503_3fdf, Class::Isb, "isb"),
            (0xd508_871f, Class::Tlbi, "tlbi vmalle1"),
            (0xd508_8340, Class::Tlbi, "tlbi aside1is, x0"),
            (0xd508_8760, Class::Tlbi, "tlbi vaae1, x0"),
            (0xd50c_8720, Class::Tlbi, "tlbi alle2 (any tlbi counts)"),
            (0xd508_8621, Class::Tlbi, "tlbi rvae1, x1"),
            (0xd51b_4220, Class::Daif, "msr daif, x0"),
            (0xd51b_423e, Class::Daif, "msr daif, x30"),
            (0xd503_42df, Class::Daif, "msr daifset, #2"),
            (0xd503_4fdf, Class::Daif, "msr daifset, #15"),
            (0xd503_42ff, Class::Daif, "msr daifclr, #2"),
            (0xd53b_e800, Class::CounterRead, "mrs x0, pmevcntr0_el0"),
            (0xd53b_e828, Class::CounterRead, "mrs x8, pmevcntr1_el0"),
            (0xd53b_9d01, Class::CounterRead, "mrs x1, pmccntr_el0"),
            (0xd503_2fdf, Class::MarkBegin, "hint #0x7e"),
            (0xd503_2fff, Class::MarkEnd, "hint #0x7f"),
        ];
        for &(word, class, text) in cases {
            assert_eq!(classify(word), class, "{text} ({word:#010x})");
        }
    }

    #[test]
    fn neighbours_are_plain() {
        let cases: &[(u32, &str)] = &[
            (0xd503_201f, "nop"),
            (0xd503_203f, "yield"),
            (0xd503_207f, "wfi"),
            (0xd503_233f, "paciasp"),
            (0xd503_241f, "bti"),
            (0xd503_3f9f, "dsb sy"),
            (0xd503_3bbf, "dmb ish"),
            (0xd538_2000, "mrs x0, ttbr0_el1 (a read, not a write)"),
            (0xd518_2020, "msr ttbr1_el1, x0"),
            (0xd518_2040, "msr tcr_el1, x0"),
            (0xd53b_4220, "mrs x0, daif"),
            (0xd51b_e800, "msr pmevcntr0_el0, x0 (a write)"),
            (0xd53b_e840, "mrs x0, pmevcntr2_el0"),
            (0xd53b_9c00, "mrs x0, pmcr_el0"),
            (0xd50b_7520, "ic ivau, x0"),
            (0xd508_7800, "at s1e1r, x0"),
            (0xd65f_03c0, "ret"),
            (0xd400_0001, "svc #0"),
            (0xd503_2fbf, "hint #0x7d"),
        ];
        for &(word, text) in cases {
            assert_eq!(classify(word), Class::Plain, "{text} ({word:#010x})");
        }
    }

    #[test]
    fn branch_targets() {
        assert_eq!(branch_target(0x1400_0004, 0x1000), Some(0x1010), "b .+16");
        assert_eq!(branch_target(0x17ff_fffc, 0x1000), Some(0x0ff0), "b .-16");
        assert_eq!(branch_target(0x9400_0004, 0x1000), None, "bl");
        assert_eq!(branch_target(0x5400_0080, 0x1000), None, "b.eq");
    }

    #[test]
    fn hint_words() {
        assert_eq!(hint(0), 0xd503_201f, "nop");
        assert_eq!(MARK_BEGIN, 0xd503_2fdf);
        assert_eq!(MARK_END, 0xd503_2fff);
    }
}
