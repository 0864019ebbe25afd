//! How a domain runs: protected, or merged into the kernel domain.
//!
//! The same server code runs either way (it calls the kernel only through
//! [`crate::gate`]); the kernel decides per domain, at boot
//! (`tern.merge=NAME,...`) and at run time ([`crate::gate::domain_mode`]).

/// A domain's mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(usize)]
pub enum DomainMode {
    /// Its own translation table and ASID; its code runs at EL0 and reaches
    /// the kernel by trapping.
    #[default]
    Protected = 0,
    /// Part of the kernel domain: its memory is EL1-only and present in
    /// every view, its code runs at EL1 (on its own stacks, SP_EL0), and a
    /// call into it switches no translation table.
    Merged = 1,
}

impl DomainMode {
    /// Decode the kernel call's mode argument.
    pub const fn from_code(code: usize) -> Option<DomainMode> {
        match code {
            0 => Some(DomainMode::Protected),
            1 => Some(DomainMode::Merged),
            _ => None,
        }
    }

    /// Whether this is [`DomainMode::Merged`].
    pub const fn is_merged(self) -> bool {
        matches!(self, DomainMode::Merged)
    }

    /// The PSTATE an upcall into a domain of this mode starts with: EL0t,
    /// or EL1t (EL1 on the domain's own stack, SP_EL0, so that an exception
    /// from it arrives on the thread's kernel stack like one from EL0).
    /// Interrupts unmasked either way.
    pub const fn entry_pstate(self) -> u64 {
        match self {
            DomainMode::Protected => 0b0000,
            DomainMode::Merged => 0b0100,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for mode in [DomainMode::Protected, DomainMode::Merged] {
            assert_eq!(DomainMode::from_code(mode as usize), Some(mode));
        }
        assert_eq!(DomainMode::from_code(2), None);
        assert_eq!(DomainMode::Merged.entry_pstate() & 0xf, 0b0100, "EL1t");
        assert_eq!(DomainMode::Protected.entry_pstate(), 0, "EL0t");
    }
}
