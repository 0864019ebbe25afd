//! # Exception syndrome decoding
//!
//! When a synchronous exception or SError reaches the kernel, `ESR_EL1`
//! says why: the exception class (EC, bits 31:26), whether the trapped
//! instruction was 32 bits long (IL, bit 25), and a class-specific syndrome
//! (ISS, bits 24:0). This module turns that register into words for the
//! fault report printed on the console; the caller prints the rest (the
//! domain's name, FAR and ELR). [`Syndrome`]'s `Display` gives one line,
//! such as `Data abort from a lower EL (EC 0x24, ISS 0x00004f): permission
//! fault, level 3, write`, so that a fault can be understood without
//! reaching for the Arm Architecture Reference Manual.
//!
//! It decodes only what a person debugging a fault needs first: every
//! exception class's name, and for instruction and data aborts the fault
//! status code (with its translation level) and, for data aborts, whether
//! the access was a write. It deliberately leaves out the rest of the ISS:
//! the data-abort instruction syndrome (ISV, SAS, SRT, ...) used to emulate
//! an access, the MSR/MRS operand encoding, the SVC/HVC immediate, the
//! FEAT_LPA2 level -1 and granule-protection codes beyond naming them, and
//! the ISS2 field in bits 36:32. The kernel's decisions (kill the domain,
//! handle the kernel call) are made from the class elsewhere, not from the
//! strings here.

use core::fmt;

/// The value of `ESR_ELx` at an exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syndrome(pub u64);

/// Exception class: instruction abort from a lower exception level.
const EC_INSTRUCTION_ABORT_LOWER: u8 = 0x20;
/// Exception class: instruction abort taken without a change of level.
const EC_INSTRUCTION_ABORT_CURRENT: u8 = 0x21;
/// Exception class: data abort from a lower exception level.
const EC_DATA_ABORT_LOWER: u8 = 0x24;
/// Exception class: data abort taken without a change of level.
const EC_DATA_ABORT_CURRENT: u8 = 0x25;

impl Syndrome {
    /// The exception class, `ESR[31:26]`.
    pub const fn exception_class(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// True if the trapped instruction was 32 bits long (IL, `ESR[25]`).
    pub const fn instruction_length_32(self) -> bool {
        (self.0 >> 25) & 1 == 1
    }

    /// The instruction-specific syndrome, `ESR[24:0]`.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x01ff_ffff) as u32
    }

    /// Short name of the class, e.g. "Unknown reason (undefined
    /// instruction)" for 0x00, "SVC from AArch64" for 0x15, "Data abort
    /// from a lower EL" for 0x24; anything else "Reserved or unhandled
    /// class".
    pub fn class_name(self) -> &'static str {
        match self.exception_class() {
            0x00 => "Unknown reason (undefined instruction)",
            0x01 => "Trapped WFI/WFE",
            0x03 => "Trapped MCR/MRC (coprocessor 15) from AArch32",
            0x04 => "Trapped MCRR/MRRC (coprocessor 15) from AArch32",
            0x05 => "Trapped MCR/MRC (coprocessor 14) from AArch32",
            0x06 => "Trapped LDC/STC from AArch32",
            0x07 => "Trapped FP/SIMD access",
            0x0a => "Trapped LD64B/ST64B",
            0x0c => "Trapped MRRC (coprocessor 14) from AArch32",
            0x0d => "Branch target exception",
            0x0e => "Illegal execution state",
            0x11 => "SVC from AArch32",
            0x12 => "HVC from AArch32",
            0x13 => "SMC from AArch32",
            0x15 => "SVC from AArch64",
            0x16 => "HVC from AArch64",
            0x17 => "SMC from AArch64",
            0x18 => "Trapped MSR/MRS/system instruction",
            0x19 => "Trapped SVE access",
            0x1a => "Trapped ERET",
            0x1b => "Trapped TSTART",
            0x1c => "Pointer authentication failure",
            0x1d => "Trapped SME access",
            0x1f => "Implementation-defined exception to EL3",
            EC_INSTRUCTION_ABORT_LOWER => "Instruction abort from a lower EL",
            EC_INSTRUCTION_ABORT_CURRENT => "Instruction abort at the current EL",
            0x22 => "PC alignment fault",
            EC_DATA_ABORT_LOWER => "Data abort from a lower EL",
            EC_DATA_ABORT_CURRENT => "Data abort at the current EL",
            0x26 => "SP alignment fault",
            0x27 => "Memory copy/set operation exception",
            0x28 => "Trapped floating-point exception from AArch32",
            0x2c => "Trapped floating-point exception from AArch64",
            0x2f => "SError interrupt",
            0x30 => "Breakpoint from a lower EL",
            0x31 => "Breakpoint at the current EL",
            0x32 => "Software step from a lower EL",
            0x33 => "Software step at the current EL",
            0x34 => "Watchpoint from a lower EL",
            0x35 => "Watchpoint at the current EL",
            0x38 => "BKPT instruction (AArch32)",
            0x3a => "Vector catch (AArch32)",
            0x3c => "BRK instruction",
            _ => "Reserved or unhandled class",
        }
    }

    /// True for instruction and data aborts (classes 0x20, 0x21, 0x24,
    /// 0x25).
    pub fn is_abort(self) -> bool {
        matches!(
            self.exception_class(),
            EC_INSTRUCTION_ABORT_LOWER | EC_INSTRUCTION_ABORT_CURRENT | EC_DATA_ABORT_LOWER | EC_DATA_ABORT_CURRENT
        )
    }

    /// True for data aborts (classes 0x24 and 0x25).
    fn is_data_abort(self) -> bool {
        matches!(self.exception_class(), EC_DATA_ABORT_LOWER | EC_DATA_ABORT_CURRENT)
    }

    /// For aborts: the fault status code (DFSC/IFSC, `ISS[5:0]`) in words:
    /// "translation fault, level 2", "access flag fault, level 3",
    /// "permission fault, level 1", "alignment fault", "synchronous
    /// external abort", "address size fault, level 0", ... ; None for
    /// non-aborts.
    pub fn fault_status(self) -> Option<FaultStatus> {
        self.is_abort().then(|| FaultStatus::from_code((self.iss() & 0x3f) as u8))
    }

    /// For data aborts: true if the access was a write (WnR, ISS bit 6).
    /// None for others.
    pub fn is_write(self) -> Option<bool> {
        self.is_data_abort().then_some(self.iss() & (1 << 6) != 0)
    }
}

/// What kind of fault an abort's fault status code reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The address is wider than the configured output or input size.
    AddressSize,
    /// No valid translation (a descriptor at `level` was invalid).
    Translation,
    /// The access flag of the descriptor was clear.
    AccessFlag,
    /// The access was not permitted by the descriptor's permissions.
    Permission,
    /// An unaligned access where alignment is required.
    Alignment,
    /// The memory system returned an error; with a level, during the
    /// translation-table walk at that level.
    SynchronousExternal,
    /// More than one TLB entry matched the address.
    TlbConflict,
    /// Any other code (the raw 6-bit fault status code): tag check, parity
    /// or ECC errors, level -1 faults, granule protection, and reserved or
    /// implementation-defined codes.
    Other(u8),
}

/// A decoded fault status code (DFSC/IFSC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultStatus {
    /// The kind of fault.
    pub kind: FaultKind,
    /// The translation level (0 to 3) at which it happened, when the code
    /// says.
    pub level: Option<u8>,
}

impl FaultStatus {
    /// Decode a 6-bit fault status code.
    pub const fn from_code(code: u8) -> Self {
        let code = code & 0x3f;
        let level = code & 0b11;
        let (kind, level) = match code {
            0x00..=0x03 => (FaultKind::AddressSize, Some(level)),
            0x04..=0x07 => (FaultKind::Translation, Some(level)),
            0x08..=0x0b => (FaultKind::AccessFlag, Some(level)),
            0x0c..=0x0f => (FaultKind::Permission, Some(level)),
            0x10 => (FaultKind::SynchronousExternal, None),
            0x14..=0x17 => (FaultKind::SynchronousExternal, Some(level)),
            0x21 => (FaultKind::Alignment, None),
            0x30 => (FaultKind::TlbConflict, None),
            _ => (FaultKind::Other(code), None),
        };
        Self { kind, level }
    }
}

/// Words for the fault status codes that [`FaultKind`] does not name.
fn other_fault_description(code: u8) -> Option<&'static str> {
    Some(match code {
        0x11 => "synchronous tag check fault",
        0x12 => "synchronous external abort on translation table walk, level -2",
        0x13 => "synchronous external abort on translation table walk, level -1",
        0x18 => "synchronous parity or ECC error",
        0x1b => "synchronous parity or ECC error on translation table walk, level -1",
        0x1c..=0x1f => "synchronous parity or ECC error on translation table walk",
        0x22 => "granule protection fault on translation table walk, level -2",
        0x23 => "granule protection fault on translation table walk, level -1",
        0x24..=0x27 => "granule protection fault on translation table walk",
        0x28 => "granule protection fault",
        0x29 => "address size fault, level -1",
        0x2a => "translation fault, level -2",
        0x2b => "translation fault, level -1",
        0x2c => "address size fault, level -2",
        0x31 => "unsupported atomic hardware update fault",
        0x34 => "implementation-defined fault (lockdown)",
        0x35 => "implementation-defined fault (unsupported exclusive or atomic access)",
        _ => return None,
    })
}

impl fmt::Display for FaultStatus {
    /// E.g. "permission fault, level 3".
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.kind {
            FaultKind::AddressSize => "address size fault",
            FaultKind::Translation => "translation fault",
            FaultKind::AccessFlag => "access flag fault",
            FaultKind::Permission => "permission fault",
            FaultKind::Alignment => "alignment fault",
            FaultKind::SynchronousExternal if self.level.is_some() => {
                "synchronous external abort on translation table walk"
            }
            FaultKind::SynchronousExternal => "synchronous external abort",
            FaultKind::TlbConflict => "TLB conflict abort",
            FaultKind::Other(code) => {
                return match other_fault_description(code) {
                    Some(description) => write!(formatter, "{description} (FSC 0x{code:02x})"),
                    None => write!(formatter, "reserved fault status code 0x{code:02x}"),
                };
            }
        };
        formatter.write_str(name)?;
        if let Some(level) = self.level {
            write!(formatter, ", level {level}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Syndrome {
    /// One line: `<class name> (EC 0x24, ISS 0x00004f)[: <fault status>, <read|write>]`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} (EC 0x{:02x}, ISS 0x{:06x})", self.class_name(), self.exception_class(), self.iss())?;
        if let Some(status) = self.fault_status() {
            write!(formatter, ": {status}")?;
            if let Some(write) = self.is_write() {
                formatter.write_str(if write { ", write" } else { ", read" })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn data_abort_lower_el_permission_write() {
        // 0x9200004f: EC = 0b100100 (0x24), IL = 1, ISS = 0x4f:
        // WnR (bit 6) = 1, DFSC = 0b001111 (permission fault, level 3).
        let syndrome = Syndrome(0x9200_004f);
        assert_eq!(syndrome.exception_class(), 0x24);
        assert!(syndrome.instruction_length_32());
        assert_eq!(syndrome.iss(), 0x4f);
        assert_eq!(syndrome.class_name(), "Data abort from a lower EL");
        assert!(syndrome.is_abort());
        assert_eq!(syndrome.fault_status(), Some(FaultStatus { kind: FaultKind::Permission, level: Some(3) }));
        assert_eq!(syndrome.is_write(), Some(true));
        assert_eq!(
            format!("{syndrome}"),
            "Data abort from a lower EL (EC 0x24, ISS 0x00004f): permission fault, level 3, write"
        );
    }

    #[test]
    fn data_abort_current_el_translation_read() {
        // 0x96000007: EC = 0b100101 (0x25), IL = 1, ISS = 0x07: WnR = 0,
        // DFSC = 0b000111 (translation fault, level 3).
        let syndrome = Syndrome(0x9600_0007);
        assert_eq!(syndrome.exception_class(), 0x25);
        assert!(syndrome.instruction_length_32());
        assert_eq!(syndrome.class_name(), "Data abort at the current EL");
        assert_eq!(syndrome.fault_status(), Some(FaultStatus { kind: FaultKind::Translation, level: Some(3) }));
        assert_eq!(syndrome.is_write(), Some(false));
        assert_eq!(
            format!("{syndrome}"),
            "Data abort at the current EL (EC 0x25, ISS 0x000007): translation fault, level 3, read"
        );
    }

    #[test]
    fn instruction_abort_lower_el_permission() {
        // 0x8200000f: EC = 0b100000 (0x20), IL = 1, IFSC = 0b001111
        // (permission fault, level 3); no WnR for instruction aborts.
        let syndrome = Syndrome(0x8200_000f);
        assert_eq!(syndrome.exception_class(), 0x20);
        assert_eq!(syndrome.class_name(), "Instruction abort from a lower EL");
        assert!(syndrome.is_abort());
        assert_eq!(syndrome.fault_status(), Some(FaultStatus { kind: FaultKind::Permission, level: Some(3) }));
        assert_eq!(syndrome.is_write(), None);
        assert_eq!(
            format!("{syndrome}"),
            "Instruction abort from a lower EL (EC 0x20, ISS 0x00000f): permission fault, level 3"
        );
    }

    #[test]
    fn unknown_reason() {
        // 0x02000000: EC = 0, IL = 1, ISS = 0.
        let syndrome = Syndrome(0x0200_0000);
        assert_eq!(syndrome.exception_class(), 0);
        assert!(syndrome.instruction_length_32());
        assert_eq!(syndrome.iss(), 0);
        assert_eq!(syndrome.class_name(), "Unknown reason (undefined instruction)");
        assert!(!syndrome.is_abort());
        assert_eq!(syndrome.fault_status(), None);
        assert_eq!(syndrome.is_write(), None);
        assert_eq!(format!("{syndrome}"), "Unknown reason (undefined instruction) (EC 0x00, ISS 0x000000)");
    }

    #[test]
    fn svc_zero_from_aarch64() {
        // 0x56000000: EC = 0b010101 (0x15), IL = 1, ISS = imm16 = 0.
        let syndrome = Syndrome(0x5600_0000);
        assert_eq!(syndrome.exception_class(), 0x15);
        assert!(syndrome.instruction_length_32());
        assert_eq!(syndrome.iss(), 0);
        assert_eq!(syndrome.class_name(), "SVC from AArch64");
        assert_eq!(syndrome.fault_status(), None);
        assert_eq!(format!("{syndrome}"), "SVC from AArch64 (EC 0x15, ISS 0x000000)");
        // IL clear and high bits (ISS2, RES0) do not leak into the fields.
        let odd = Syndrome(0x1f_5400_0123);
        assert_eq!(odd.exception_class(), 0x15);
        assert!(!odd.instruction_length_32());
        assert_eq!(odd.iss(), 0x123);
    }

    #[test]
    fn class_names() {
        let name = |class: u64| Syndrome(class << 26).class_name();
        assert_eq!(name(0x07), "Trapped FP/SIMD access");
        assert_eq!(name(0x0e), "Illegal execution state");
        assert_eq!(name(0x18), "Trapped MSR/MRS/system instruction");
        assert_eq!(name(0x22), "PC alignment fault");
        assert_eq!(name(0x26), "SP alignment fault");
        assert_eq!(name(0x2f), "SError interrupt");
        assert_eq!(name(0x3c), "BRK instruction");
        assert_eq!(name(0x16), "HVC from AArch64");
        assert_eq!(name(0x17), "SMC from AArch64");
        assert_eq!(name(0x32), "Software step from a lower EL");
        assert_eq!(name(0x35), "Watchpoint at the current EL");
        for reserved in [0x02, 0x08, 0x14, 0x1e, 0x23, 0x3f] {
            assert_eq!(name(reserved), "Reserved or unhandled class", "{reserved:#x}");
        }
    }

    #[test]
    fn fault_status_codes() {
        let status = |code: u8| FaultStatus::from_code(code);
        assert_eq!(format!("{}", status(0x06)), "translation fault, level 2");
        assert_eq!(format!("{}", status(0x0b)), "access flag fault, level 3");
        assert_eq!(format!("{}", status(0x0d)), "permission fault, level 1");
        assert_eq!(format!("{}", status(0x00)), "address size fault, level 0");
        assert_eq!(format!("{}", status(0x21)), "alignment fault");
        assert_eq!(format!("{}", status(0x10)), "synchronous external abort");
        assert_eq!(format!("{}", status(0x15)), "synchronous external abort on translation table walk, level 1");
        assert_eq!(status(0x30).kind, FaultKind::TlbConflict);
        assert_eq!(format!("{}", status(0x30)), "TLB conflict abort");
        assert_eq!(status(0x11).kind, FaultKind::Other(0x11));
        assert_eq!(format!("{}", status(0x11)), "synchronous tag check fault (FSC 0x11)");
        assert_eq!(format!("{}", status(0x3f)), "reserved fault status code 0x3f");
        // Only the low six bits count.
        assert_eq!(status(0x47), status(0x07));
        // Not an abort: no fault status even if ISS[5:0] is non-zero.
        assert_eq!(Syndrome(0x5600_0007).fault_status(), None);
    }
}
