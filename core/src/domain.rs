//! Protection domains and the memory they may name in kernel calls.
//!
//! A domain is a set of memory regions plus a view (translation table +
//! ASID). In this first version a domain owns one 2 MiB region, holding
//! its stack and whatever else it writes; the image's code and read-only
//! data are shared by every domain.
//!
//! A pointer a domain passes to the kernel is only a *claim* until it has
//! been checked against the caller's memory: [`UserRange`] is that claim,
//! and the only ways to turn it into something the kernel may touch are
//! [`Domain::check_readable`] and [`Domain::check_writable`]. The check is
//! against the kernel's own record of what the domain owns, not against the
//! page tables, so a kernel call can never be talked into faulting.
//!
//! Left for later: several regions per domain, lent regions, merged mode
//! (the `tern-inks` crate's business), and activation pools.

use crate::abi::Error;
use crate::frame::PhysRange;

/// A domain's number: its index in the kernel's domain table, also used as
/// its ASID (0 is the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct DomainId(pub u16);

/// A range of memory named by a domain in a kernel call: unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRange {
    /// The claimed start address.
    pub address: usize,
    /// The claimed length in bytes.
    pub length: usize,
}

impl UserRange {
    /// Record a claim (no check happens here).
    pub const fn new(address: usize, length: usize) -> Self {
        UserRange { address, length }
    }

    fn as_range(self) -> Result<PhysRange, Error> {
        let end = self.address.checked_add(self.length).ok_or(Error::BadAddress)?;
        Ok(PhysRange::new(self.address as u64, end as u64))
    }
}

/// A claim that has been checked: the memory belongs to the domain it was
/// checked against and may be accessed the way the check said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedRange {
    /// Start address (identity-mapped: virtual = physical).
    pub address: usize,
    /// Length in bytes.
    pub length: usize,
}

/// What every domain may read: the image's code and read-only data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedImage {
    /// `[start of .text, end of .rodata)`.
    pub read_only: PhysRange,
}

/// A protection domain.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Its number and ASID.
    pub id: DomainId,
    /// Its name, as registered (for reports).
    pub name: &'static str,
    /// Its own memory, mapped EL0 read-write in its view only.
    pub region: PhysRange,
    /// Physical address of its level-1 translation table.
    pub table: u64,
}

fn within(outer: PhysRange, inner: PhysRange) -> bool {
    inner.start >= outer.start && inner.end <= outer.end
}

impl Domain {
    /// The value for TTBR0_EL1 that installs this domain's view.
    pub const fn translation_base(&self) -> u64 {
        self.table | ((self.id.0 as u64) << 48)
    }

    /// Highest usable stack address in the domain's region (16-byte aligned).
    pub const fn stack_top(&self) -> u64 {
        self.region.end - 16
    }

    /// Check that the domain may read `claim`: it lies wholly inside the
    /// domain's own region or wholly inside the shared read-only image.
    /// A zero-length claim is accepted anywhere that is not wrapping.
    pub fn check_readable(&self, image: &SharedImage, claim: UserRange) -> Result<CheckedRange, Error> {
        let range = claim.as_range()?;
        if claim.length == 0 || within(self.region, range) || within(image.read_only, range) {
            Ok(CheckedRange { address: claim.address, length: claim.length })
        } else {
            Err(Error::BadAddress)
        }
    }

    /// Check that the domain may write `claim`: it lies wholly inside the
    /// domain's own region.
    pub fn check_writable(&self, claim: UserRange) -> Result<CheckedRange, Error> {
        let range = claim.as_range()?;
        if claim.length == 0 || within(self.region, range) {
            Ok(CheckedRange { address: claim.address, length: claim.length })
        } else {
            Err(Error::BadAddress)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (Domain, SharedImage) {
        let domain =
            Domain { id: DomainId(3), name: "test", region: PhysRange::new(0x20_0000, 0x40_0000), table: 0x9000 };
        (domain, SharedImage { read_only: PhysRange::new(0x8_0000, 0x9_0000) })
    }

    #[test]
    fn own_region_and_image_are_readable_nothing_else() {
        let (domain, image) = fixture();
        assert!(domain.check_readable(&image, UserRange::new(0x20_0000, 0x20_0000)).is_ok());
        assert!(domain.check_readable(&image, UserRange::new(0x8_1000, 16)).is_ok());
        assert_eq!(domain.check_readable(&image, UserRange::new(0x3f_fff0, 0x20)), Err(Error::BadAddress));
        assert_eq!(domain.check_readable(&image, UserRange::new(0x8_ffff, 2)), Err(Error::BadAddress));
        assert_eq!(domain.check_readable(&image, UserRange::new(0x9_0000, 8)), Err(Error::BadAddress));
        assert_eq!(domain.check_readable(&image, UserRange::new(usize::MAX - 4, 16)), Err(Error::BadAddress));
    }

    #[test]
    fn only_own_region_is_writable() {
        let (domain, _) = fixture();
        assert!(domain.check_writable(UserRange::new(0x30_0000, 64)).is_ok());
        assert_eq!(domain.check_writable(UserRange::new(0x8_1000, 16)), Err(Error::BadAddress));
        assert_eq!(domain.check_writable(UserRange::new(0x1f_ffff, 2)), Err(Error::BadAddress));
    }

    #[test]
    fn translation_base_carries_the_asid() {
        let (domain, _) = fixture();
        assert_eq!(domain.translation_base(), 0x0003_0000_0000_9000);
        assert_eq!(domain.stack_top(), 0x3f_fff0);
    }
}
