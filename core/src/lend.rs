//! Lent pages: which client pages are mapped into which protected
//! server's view, and how, while calls lend them.
//!
//! A lend is mapped page by page, so two calls in flight at once can lend
//! the same page to the same server: two client threads whose buffers
//! share a heap page, say. Refusing the second (as a plain "already
//! mapped" would) loses a good call, so the kernel counts instead: a page
//! is mapped while any lend covers it, read-write while any of those is
//! writable, and unmapped when the last one ends. The [`Ledger`] keeps the
//! counts and says what each lend's start or end must change in the
//! server's translation table; the kernel applies that (with the TLB
//! maintenance) and keeps no other record.
//!
//! Page granularity is the documented price of mapping: a server lent part
//! of a page reaches all of it, and while a read-write lend of a page is in
//! flight a read-only lend of the same page is writable too.

use crate::domain::DomainId;
use crate::frame::PhysRange;
use crate::paging::PAGE;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// How a lent page is mapped in the server's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LentAccess {
    /// The server may read it.
    ReadOnly,
    /// The server may read and write it.
    ReadWrite,
}

/// What a lend's start or end changes in a server's view, page by page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageChange {
    /// Map a page that is not mapped.
    Map(u64, LentAccess),
    /// Change a mapped page's access (break before make).
    Remap(u64, LentAccess),
    /// Unmap a page.
    Unmap(u64),
}

/// The lends covering one page of one server's view.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    read_only: u32,
    read_write: u32,
}

impl Counts {
    fn access(self) -> Option<LentAccess> {
        if self.read_write > 0 {
            Some(LentAccess::ReadWrite)
        } else if self.read_only > 0 {
            Some(LentAccess::ReadOnly)
        } else {
            None
        }
    }
}

/// The lends in flight, counted per (server, page).
#[derive(Debug, Default)]
pub struct Ledger {
    pages: HashMap<(DomainId, u64), Counts>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Ledger::default()
    }

    /// A lend of `region` (any alignment) to `server` starts: count it, and
    /// return what must change in the server's view.
    pub fn start(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange> {
        let mut changes = Vec::new();
        for page in pages_of(region) {
            let counts = self.pages.entry((server, page)).or_default();
            let before = counts.access();
            if writable {
                counts.read_write += 1;
            } else {
                counts.read_only += 1;
            }
            if let Some(change) = change(page, before, counts.access()) {
                changes.push(change);
            }
        }
        changes
    }

    /// A lend started by [`Ledger::start`] with the same arguments ends:
    /// uncount it, and return what must change in the server's view. An
    /// end without a start changes nothing.
    pub fn end(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange> {
        let mut changes = Vec::new();
        for page in pages_of(region) {
            let Some(counts) = self.pages.get_mut(&(server, page)) else { continue };
            let before = counts.access();
            let count = if writable { &mut counts.read_write } else { &mut counts.read_only };
            *count = count.saturating_sub(1);
            let after = counts.access();
            if after.is_none() {
                self.pages.remove(&(server, page));
            }
            if let Some(change) = change(page, before, after) {
                changes.push(change);
            }
        }
        changes
    }

    /// How many pages are lent to `server` now.
    pub fn pages_lent_to(&self, server: DomainId) -> usize {
        self.pages.keys().filter(|(owner, _)| *owner == server).count()
    }
}

/// The page addresses covering `region`.
fn pages_of(region: PhysRange) -> impl Iterator<Item = u64> {
    let start = region.start & !(PAGE - 1);
    let end = region.end.next_multiple_of(PAGE);
    (start..end).step_by(PAGE as usize)
}

fn change(page: u64, before: Option<LentAccess>, after: Option<LentAccess>) -> Option<PageChange> {
    match (before, after) {
        (None, Some(access)) => Some(PageChange::Map(page, access)),
        (Some(_), None) => Some(PageChange::Unmap(page)),
        (Some(old), Some(new)) if old != new => Some(PageChange::Remap(page, new)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LentAccess::{ReadOnly, ReadWrite};
    use PageChange::{Map, Remap, Unmap};

    const SERVER: DomainId = DomainId(2);
    const OTHER: DomainId = DomainId(3);

    fn region(start: u64, length: u64) -> PhysRange {
        PhysRange::new(start, start + length)
    }

    #[test]
    fn a_lone_lend_maps_its_pages_and_unmaps_them() {
        let mut ledger = Ledger::new();
        let lent = region(0x6100_0800, 0x1000);
        assert_eq!(ledger.start(SERVER, lent, false), [Map(0x6100_0000, ReadOnly), Map(0x6100_1000, ReadOnly)]);
        assert_eq!(ledger.pages_lent_to(SERVER), 2);
        assert_eq!(ledger.end(SERVER, lent, false), [Unmap(0x6100_0000), Unmap(0x6100_1000)]);
        assert_eq!(ledger.pages_lent_to(SERVER), 0);
    }

    #[test]
    fn two_lends_of_one_page_share_it_until_the_last_ends() {
        let mut ledger = Ledger::new();
        let (first, second) = (region(0x6100_0010, 100), region(0x6100_0400, 100));
        assert_eq!(ledger.start(SERVER, first, false), [Map(0x6100_0000, ReadOnly)]);
        assert_eq!(ledger.start(SERVER, second, false), []);
        assert_eq!(ledger.end(SERVER, first, false), []);
        assert_eq!(ledger.pages_lent_to(SERVER), 1);
        assert_eq!(ledger.end(SERVER, second, false), [Unmap(0x6100_0000)]);
    }

    #[test]
    fn a_writable_lend_upgrades_a_shared_page_and_its_end_downgrades_it() {
        let mut ledger = Ledger::new();
        let (reader, writer) = (region(0x6100_0010, 100), region(0x6100_0f00, 0x200));
        assert_eq!(ledger.start(SERVER, reader, false), [Map(0x6100_0000, ReadOnly)]);
        assert_eq!(ledger.start(SERVER, writer, true), [Remap(0x6100_0000, ReadWrite), Map(0x6100_1000, ReadWrite)]);
        assert_eq!(ledger.end(SERVER, writer, true), [Remap(0x6100_0000, ReadOnly), Unmap(0x6100_1000)]);
        assert_eq!(ledger.end(SERVER, reader, false), [Unmap(0x6100_0000)]);
    }

    #[test]
    fn servers_are_counted_apart() {
        let mut ledger = Ledger::new();
        let lent = region(0x6100_0000, 8);
        assert_eq!(ledger.start(SERVER, lent, true), [Map(0x6100_0000, ReadWrite)]);
        assert_eq!(ledger.start(OTHER, lent, false), [Map(0x6100_0000, ReadOnly)]);
        assert_eq!(ledger.end(SERVER, lent, true), [Unmap(0x6100_0000)]);
        assert_eq!(ledger.pages_lent_to(OTHER), 1);
    }

    #[test]
    fn an_end_without_a_start_changes_nothing() {
        let mut ledger = Ledger::new();
        assert_eq!(ledger.end(SERVER, region(0x6100_0000, 8), false), []);
        let lent = region(0x6100_0000, 8);
        ledger.start(SERVER, lent, false);
        assert_eq!(ledger.end(SERVER, lent, true), [], "a writable end of a read-only lend");
        assert_eq!(ledger.pages_lent_to(SERVER), 1);
    }
}
