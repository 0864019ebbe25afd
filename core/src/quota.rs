//! What a domain may make the kernel hold: kernel memory charged to the
//! domain that asks for it.
//!
//! The kernel's heap and frames are finite, and a domain's requests are the
//! only thing that makes them grow: ports, threads (each with a 16 KiB
//! kernel stack), activations, the rights in its capability space. Each
//! domain has an [`Account`]: a [`Quota`] per [`Resource`], set when the
//! domain is made (the defaults below) and changed only by the kernel
//! domain (`SetQuota`), and what it uses now. A request over the quota is
//! refused with `OverQuota` — to that domain alone: nothing another domain
//! does can spend this one's quota, and no domain's requests can exhaust
//! the kernel (the defaults, times the arena's slots, fit the kernel heap
//! with room to spare; `docs/design.md`).
//!
//! Who pays: the domain that makes the request — `PortCreate` a port and a
//! right, `PoolAdd` and `SidetrackSet` activations, `ThreadCreate` a thread
//! (its first activation and its kernel stack included), a right granted
//! in a message the receiving domain (whose space grows: a space holds one
//! name per port, so a sender can make it grow at most once per port it
//! holds). A thread split off by a termination is the thread's creator's.
//! What the kernel makes for itself (the threads that start domains, the
//! name service's right in every space) is charged to nobody. Charges end
//! when the object goes: a port destroyed, a thread ended and joined (or
//! its creator gone), an activation removed.
//!
//! Left out: lend records (one per call in flight, so bounded by the
//! activations and threads already charged) and a domain's own heap and
//! stacks (its region, not the kernel's).

use crate::abi::Error;

/// A kind of kernel object a domain is charged for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Resource {
    /// Ports it created (alive, or dead with activations still out).
    Ports = 0,
    /// Threads it created, running or ended and not yet joined.
    Threads = 1,
    /// Activations of its pools (and sidetrack activations).
    Activations = 2,
    /// Rights (names) in its capability space.
    Rights = 3,
}

impl Resource {
    /// Every resource, in code order.
    pub const ALL: [Resource; 4] = [Resource::Ports, Resource::Threads, Resource::Activations, Resource::Rights];

    /// Decode the `SetQuota` call's resource argument.
    pub const fn from_code(code: usize) -> Option<Resource> {
        match code {
            0 => Some(Resource::Ports),
            1 => Some(Resource::Threads),
            2 => Some(Resource::Activations),
            3 => Some(Resource::Rights),
            _ => None,
        }
    }
}

/// How much of each resource a domain may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota(pub [u32; 4]);

impl Quota {
    /// A new domain's quota: 64 ports, 64 threads, 256 activations, 512
    /// rights. At most 16 domains fit the boards' arenas, so all of them
    /// together hold at most 1,024 threads' kernel records and 16 MiB of
    /// kernel stacks (frames), 4,096 activations (about 1.7 MiB of kernel
    /// heap), 1,024 ports and 8,192 rights — well inside the 8 MiB kernel
    /// heap.
    pub const DEFAULT: Quota = Quota([64, 64, 256, 512]);

    /// The limit for `resource`.
    pub const fn limit(&self, resource: Resource) -> u32 {
        self.0[resource as usize]
    }
}

/// A domain's quota and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    quota: Quota,
    used: [u32; 4],
}

impl Default for Account {
    fn default() -> Self {
        Account::new(Quota::DEFAULT)
    }
}

impl Account {
    /// An account holding nothing, under `quota`.
    pub const fn new(quota: Quota) -> Self {
        Account { quota, used: [0; 4] }
    }

    /// What it holds of `resource`.
    pub const fn used(&self, resource: Resource) -> u32 {
        self.used[resource as usize]
    }

    /// Its limit for `resource`.
    pub const fn limit(&self, resource: Resource) -> u32 {
        self.quota.limit(resource)
    }

    /// Whether `count` more of `resource` fit (the check before a charge).
    pub fn fits(&self, resource: Resource, count: u32) -> bool {
        self.used(resource).checked_add(count).is_some_and(|total| total <= self.limit(resource))
    }

    /// Take `count` of `resource`: `OverQuota`, with nothing taken, if
    /// they do not fit.
    pub fn charge(&mut self, resource: Resource, count: u32) -> Result<(), Error> {
        if !self.fits(resource, count) {
            return Err(Error::OverQuota);
        }
        self.used[resource as usize] += count;
        Ok(())
    }

    /// Give back `count` of `resource` (never below nothing).
    pub fn release(&mut self, resource: Resource, count: u32) {
        let used = &mut self.used[resource as usize];
        *used = used.saturating_sub(count);
    }

    /// Set the limit for `resource` (below what is held only refuses new
    /// charges; nothing held is taken away).
    pub fn set_limit(&mut self, resource: Resource, limit: u32) {
        self.quota.0[resource as usize] = limit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_stop_at_the_limit_and_releases_give_back() {
        let mut account = Account::new(Quota([2, 1, 0, 3]));
        assert_eq!(account.charge(Resource::Ports, 2), Ok(()));
        assert_eq!(account.charge(Resource::Ports, 1), Err(Error::OverQuota));
        assert_eq!(account.used(Resource::Ports), 2, "a refused charge takes nothing");
        account.release(Resource::Ports, 1);
        assert_eq!(account.charge(Resource::Ports, 1), Ok(()));
        assert_eq!(account.charge(Resource::Activations, 1), Err(Error::OverQuota), "a zero quota");
        assert_eq!(account.charge(Resource::Rights, u32::MAX), Err(Error::OverQuota), "no overflow");
        account.release(Resource::Threads, 5);
        assert_eq!(account.used(Resource::Threads), 0, "never below nothing");
        account.set_limit(Resource::Ports, 1);
        assert_eq!(account.charge(Resource::Ports, 1), Err(Error::OverQuota), "lowered below use");
        assert_eq!(account.used(Resource::Ports), 2);
        for (code, resource) in Resource::ALL.iter().enumerate() {
            assert_eq!(Resource::from_code(code), Some(*resource));
        }
        assert_eq!(Resource::from_code(4), None);
    }
}
