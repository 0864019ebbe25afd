//! Protection domains and the memory they may name in kernel calls.
//!
//! A domain is a set of memory regions plus a view (translation table +
//! ASID). A domain owns one region (`DOMAIN_REGION`, 8 MiB), holding
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
//! [`DomainSpec`] is what a server crate declares about a domain (through
//! `tern_inks::domain!`): its name, its entry and its role. Left for later:
//! several regions per domain.

use crate::abi::{Error, Role};
use crate::frame::PhysRange;

/// A domain's number: its index in the kernel's domain table, also used as
/// its ASID (0 is the kernel's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct DomainId(pub u16);

/// A domain's entry point: called in the domain, on its stack, with the
/// argument the kernel chose for the upcall; its value ends the upcall.
pub type Entry = fn(usize) -> usize;

/// What a server crate declares about one of its domains (placed in the
/// image's domain registry by `tern_inks::domain!`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct DomainSpec {
    /// Unique name, `server.role` by convention (e.g. `hello.ping`).
    pub name: &'static str,
    /// Where upcalls into the domain start.
    pub entry: Entry,
    /// What the domain is to the kernel.
    pub role: Role,
}

/// A domain and what the kernel knows about it.
pub struct DomainRecord {
    /// The domain itself.
    pub domain: Domain,
    /// What its server declared.
    pub spec: &'static DomainSpec,
    /// False once terminated.
    pub alive: bool,
    /// Its port names.
    pub space: crate::capability::CapabilitySpace,
    /// Its bound handles (`Call::Bind`).
    pub handles: crate::binding::HandleTable,
    /// The word handed to its dispatch upcalls (copied into each of its
    /// activations).
    pub context: usize,
    /// Whether `context` names a dispatch record of the service runtime
    /// (`ContextSet` with `CONTEXT_DISPATCH_RECORD`).
    pub context_is_dispatch: bool,
    /// Protected or merged into the kernel domain.
    pub mode: crate::abi::DomainMode,
    /// Stacks are carved below this address.
    pub stack_floor: u64,
    /// Its main stack's top (for upcalls from the kernel).
    pub main_stack: u64,
    /// The kernel objects it holds, and its quota.
    pub account: crate::quota::Account,
    /// When it is restarted after it dies.
    pub restart: crate::abi::RestartPolicy,
    /// When (counter values) its earlier instances were restarted: the
    /// policy's window counts them.
    pub restarts: alloc::vec::Vec<u64>,
    /// The argument its entry was started with (a restart passes it
    /// again).
    pub start_argument: usize,
    /// As a restarted instance: its predecessor's ports, which its
    /// `PortCreate` calls adopt, in the order they were made.
    pub adopt: alloc::collections::VecDeque<crate::capability::PortId>,
    /// As a restarted instance: the thread running its start (its
    /// predecessor's ports it has not adopted when that ends die).
    pub starter: Option<crate::thread::ThreadId>,
    /// Calls served by its ports that are gone (their records removed):
    /// kept so that its calls served never go down (`Kernel::calls_served`).
    pub served_by_gone_ports: u64,
}

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
    /// The value that installs its view (the machine's: a translation
    /// table and the domain's ASID).
    pub view: u64,
}

fn within(outer: PhysRange, inner: PhysRange) -> bool {
    inner.start >= outer.start && inner.end <= outer.end
}

impl Domain {
    /// Check that the domain may read `claim`: it lies wholly inside the
    /// domain's own region or wholly inside the shared read-only image.
    /// A zero-length claim is checked the same way (its address must lie
    /// in, or at the end of, one of them): the kernel never takes an
    /// address on trust, however little it names.
    pub fn check_readable(&self, image: &SharedImage, claim: UserRange) -> Result<CheckedRange, Error> {
        let range = claim.as_range()?;
        if within(self.region, range) || within(image.read_only, range) {
            Ok(CheckedRange { address: claim.address, length: claim.length })
        } else {
            Err(Error::BadAddress)
        }
    }

    /// Check that the domain may write `claim`: it lies wholly inside the
    /// domain's own region (a zero-length claim too).
    pub fn check_writable(&self, claim: UserRange) -> Result<CheckedRange, Error> {
        let range = claim.as_range()?;
        if within(self.region, range) {
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
        let region = PhysRange::new(0x20_0000, 0x40_0000);
        let domain = Domain { id: DomainId(3), name: "test", region, view: 0x0003_0000_0000_9000 };
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
    fn a_zero_length_claim_is_checked_like_any_other() {
        let (domain, image) = fixture();
        assert!(domain.check_writable(UserRange::new(0x30_0000, 0)).is_ok());
        assert!(domain.check_writable(UserRange::new(0x40_0000, 0)).is_ok(), "the region's end");
        assert!(domain.check_readable(&image, UserRange::new(0x8_1000, 0)).is_ok(), "in the image");
        for outside in [0, 1, 0x1f_ffff, 0x40_0001, usize::MAX] {
            assert_eq!(
                domain.check_readable(&image, UserRange::new(outside, 0)),
                Err(Error::BadAddress),
                "{outside:#x}"
            );
            assert_eq!(domain.check_writable(UserRange::new(outside, 0)), Err(Error::BadAddress), "{outside:#x}");
        }
        assert_eq!(domain.check_writable(UserRange::new(0x8_1000, 0)), Err(Error::BadAddress), "not writable");
    }
}
