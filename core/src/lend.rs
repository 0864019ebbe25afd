//! Lent pages: which client pages are mapped into which protected
//! server's view, and how, while calls lend them.
//!
//! A lend is mapped page by page, so two calls in flight at once can lend
//! the same page to the same server: two client threads whose buffers
//! share a heap page, say. Refusing the second (as a plain "already
//! mapped" would) loses a good call, so the kernel counts instead: a page
//! is mapped while any lend covers it, read-write while any of those is
//! writable, and unmapped when the last one ends. The [`Ledger`] keeps the
//! lends in flight and says what each one's start or end must change in
//! the server's translation table; the kernel applies that (with the TLB
//! maintenance) and keeps no other record.
//!
//! Page granularity is the documented price of mapping: a server lent part
//! of a page reaches all of it, and while a read-write lend of a page is in
//! flight a read-only lend of the same page is writable too.

use crate::domain::DomainId;
use crate::frame::PhysRange;
/// Bytes of a page (a frame).
const PAGE: u64 = crate::frame::FRAME_SIZE as u64;
use alloc::vec::Vec;

/// How a lent page is mapped in the server's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LentAccess {
    /// The server may read it.
    ReadOnly,
    /// The server may read and write it.
    ReadWrite,
}

/// What a lend's start or end changes in a server's view: runs of whole
/// pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageChange {
    /// Map pages that are not mapped.
    Map(PhysRange, LentAccess),
    /// Change mapped pages' access (break before make).
    Remap(PhysRange, LentAccess),
    /// Unmap pages.
    Unmap(PhysRange),
}

/// One lend in flight: to whom, which pages, how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    server: DomainId,
    pages: PhysRange,
    writable: bool,
}

/// The lends in flight. A list, not a map of pages: a handful of lends is
/// in flight at a time, and the common case — a lend overlapping no other
/// to the same server — is one scan and one run of pages to map.
#[derive(Debug, Default)]
pub struct Ledger {
    lends: Vec<Record>,
}

impl Ledger {
    /// An empty ledger.
    pub const fn new() -> Self {
        Ledger { lends: Vec::new() }
    }

    /// A lend of `region` (any alignment) to `server` starts: record it,
    /// and hand `change` what must change in the server's view, in order.
    pub fn start(&mut self, server: DomainId, region: PhysRange, writable: bool, change: impl FnMut(PageChange)) {
        let lend = Record { server, pages: pages_covering(region), writable };
        if !self.overlaps(lend) {
            self.lends.push(lend);
            let mut change = change;
            change(PageChange::Map(lend.pages, access(writable)));
            return;
        }
        let before = self.accesses(lend);
        self.lends.push(lend);
        self.changes(lend, &before, change);
    }

    /// A lend started by [`Ledger::start`] with the same arguments ends:
    /// forget it, and hand `change` what must change in the server's view.
    /// An end without a start changes nothing.
    pub fn end(&mut self, server: DomainId, region: PhysRange, writable: bool, change: impl FnMut(PageChange)) {
        let lend = Record { server, pages: pages_covering(region), writable };
        let Some(at) = self.lends.iter().position(|&other| other == lend) else { return };
        let before = if self.lends.iter().filter(|other| overlap(**other, lend)).count() > 1 {
            self.accesses(lend)
        } else {
            Vec::new()
        };
        self.lends.swap_remove(at);
        if before.is_empty() {
            let mut change = change;
            change(PageChange::Unmap(lend.pages));
            return;
        }
        self.changes(lend, &before, change);
    }

    /// How many pages are lent to `server` now.
    #[cfg(test)]
    fn pages_lent_to(&self, server: DomainId) -> usize {
        let mut pages: Vec<u64> = self
            .lends
            .iter()
            .filter(|lend| lend.server == server)
            .flat_map(|lend| (lend.pages.start..lend.pages.end).step_by(PAGE as usize))
            .collect();
        pages.sort_unstable();
        pages.dedup();
        pages.len()
    }

    /// Whether a lend in the ledger shares a page with `lend` (same server).
    fn overlaps(&self, lend: Record) -> bool {
        self.lends.iter().any(|&other| overlap(other, lend))
    }

    /// The access each page of `lend` has now.
    fn accesses(&self, lend: Record) -> Vec<Option<LentAccess>> {
        (lend.pages.start..lend.pages.end)
            .step_by(PAGE as usize)
            .map(|page| {
                let covering =
                    self.lends.iter().filter(|other| other.server == lend.server && other.pages.contains(page));
                covering.fold(None, |access, other| match (access, other.writable) {
                    (_, true) | (Some(LentAccess::ReadWrite), _) => Some(LentAccess::ReadWrite),
                    _ => Some(LentAccess::ReadOnly),
                })
            })
            .collect()
    }

    /// What changed in `lend`'s pages from `before` to now, as runs,
    /// handed to `emit`.
    fn changes(&self, lend: Record, before: &[Option<LentAccess>], mut emit: impl FnMut(PageChange)) {
        let after = self.accesses(lend);
        let mut changes: Vec<PageChange> = Vec::new();
        for (index, (&old, &new)) in before.iter().zip(&after).enumerate() {
            let page = lend.pages.start + index as u64 * PAGE;
            let next = PhysRange::new(page, page + PAGE);
            let change = match (old, new) {
                (None, Some(access)) => PageChange::Map(next, access),
                (Some(_), None) => PageChange::Unmap(next),
                (Some(old), Some(new)) if old != new => PageChange::Remap(next, new),
                _ => continue,
            };
            match (changes.last_mut(), change) {
                (Some(PageChange::Map(run, a)), PageChange::Map(_, b))
                | (Some(PageChange::Remap(run, a)), PageChange::Remap(_, b))
                    if run.end == page && *a == b =>
                {
                    run.end = next.end
                }
                (Some(PageChange::Unmap(run)), PageChange::Unmap(_)) if run.end == page => run.end = next.end,
                _ => changes.push(change),
            }
        }
        changes.into_iter().for_each(&mut emit);
    }
}

/// Whether two lends share a page of one server's view.
fn overlap(one: Record, other: Record) -> bool {
    one.server == other.server && one.pages.start < other.pages.end && other.pages.start < one.pages.end
}

fn access(writable: bool) -> LentAccess {
    if writable { LentAccess::ReadWrite } else { LentAccess::ReadOnly }
}

/// The whole pages covering `region`.
fn pages_covering(region: PhysRange) -> PhysRange {
    PhysRange::new(region.start & !(PAGE - 1), region.end.next_multiple_of(PAGE))
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

    fn pages(start: u64, count: u64) -> PhysRange {
        region(start, count * PAGE)
    }

    /// `Ledger::start` and `Ledger::end` with the changes collected.
    trait Collect {
        fn start(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange>;
        fn end(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange>;
    }

    impl Collect for Ledger {
        fn start(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange> {
            let mut changes = Vec::new();
            Ledger::start(self, server, region, writable, |change| changes.push(change));
            changes
        }

        fn end(&mut self, server: DomainId, region: PhysRange, writable: bool) -> Vec<PageChange> {
            let mut changes = Vec::new();
            Ledger::end(self, server, region, writable, |change| changes.push(change));
            changes
        }
    }

    #[test]
    fn a_lone_lend_maps_its_pages_and_unmaps_them() {
        let mut ledger = Ledger::new();
        let lent = region(0x6100_0800, 0x1000);
        assert_eq!(Collect::start(&mut ledger, SERVER, lent, false), [Map(pages(0x6100_0000, 2), ReadOnly)]);
        assert_eq!(ledger.pages_lent_to(SERVER), 2);
        assert_eq!(Collect::end(&mut ledger, SERVER, lent, false), [Unmap(pages(0x6100_0000, 2))]);
        assert_eq!(ledger.pages_lent_to(SERVER), 0);
    }

    #[test]
    fn two_lends_of_one_page_share_it_until_the_last_ends() {
        let mut ledger = Ledger::new();
        let (first, second) = (region(0x6100_0010, 100), region(0x6100_0400, 100));
        assert_eq!(Collect::start(&mut ledger, SERVER, first, false), [Map(pages(0x6100_0000, 1), ReadOnly)]);
        assert_eq!(Collect::start(&mut ledger, SERVER, second, false), []);
        assert_eq!(Collect::end(&mut ledger, SERVER, first, false), []);
        assert_eq!(ledger.pages_lent_to(SERVER), 1);
        assert_eq!(Collect::end(&mut ledger, SERVER, second, false), [Unmap(pages(0x6100_0000, 1))]);
    }

    #[test]
    fn a_writable_lend_upgrades_a_shared_page_and_its_end_downgrades_it() {
        let mut ledger = Ledger::new();
        let (reader, writer) = (region(0x6100_0010, 100), region(0x6100_0f00, 0x200));
        assert_eq!(Collect::start(&mut ledger, SERVER, reader, false), [Map(pages(0x6100_0000, 1), ReadOnly)]);
        assert_eq!(
            Collect::start(&mut ledger, SERVER, writer, true),
            [Remap(pages(0x6100_0000, 1), ReadWrite), Map(pages(0x6100_1000, 1), ReadWrite)]
        );
        assert_eq!(
            Collect::end(&mut ledger, SERVER, writer, true),
            [Remap(pages(0x6100_0000, 1), ReadOnly), Unmap(pages(0x6100_1000, 1))]
        );
        assert_eq!(Collect::end(&mut ledger, SERVER, reader, false), [Unmap(pages(0x6100_0000, 1))]);
    }

    #[test]
    fn changes_come_in_runs_of_pages() {
        let mut ledger = Ledger::new();
        let (middle, wide) = (pages(0x6100_2000, 1), pages(0x6100_0000, 5));
        assert_eq!(Collect::start(&mut ledger, SERVER, middle, true), [Map(middle, ReadWrite)]);
        assert_eq!(
            Collect::start(&mut ledger, SERVER, wide, false),
            [Map(pages(0x6100_0000, 2), ReadOnly), Map(pages(0x6100_3000, 2), ReadOnly)]
        );
        assert_eq!(Collect::end(&mut ledger, SERVER, middle, true), [Remap(middle, ReadOnly)]);
        assert_eq!(Collect::end(&mut ledger, SERVER, wide, false), [Unmap(wide)]);
        assert_eq!(ledger.pages_lent_to(SERVER), 0);
    }

    #[test]
    fn servers_are_counted_apart() {
        let mut ledger = Ledger::new();
        let lent = region(0x6100_0000, 8);
        assert_eq!(Collect::start(&mut ledger, SERVER, lent, true), [Map(pages(0x6100_0000, 1), ReadWrite)]);
        assert_eq!(Collect::start(&mut ledger, OTHER, lent, false), [Map(pages(0x6100_0000, 1), ReadOnly)]);
        assert_eq!(Collect::end(&mut ledger, SERVER, lent, true), [Unmap(pages(0x6100_0000, 1))]);
        assert_eq!(ledger.pages_lent_to(OTHER), 1);
    }

    #[test]
    fn an_end_without_a_start_changes_nothing() {
        let mut ledger = Ledger::new();
        assert_eq!(Collect::end(&mut ledger, SERVER, region(0x6100_0000, 8), false), []);
        let lent = region(0x6100_0000, 8);
        Collect::start(&mut ledger, SERVER, lent, false);
        assert_eq!(Collect::end(&mut ledger, SERVER, lent, true), [], "a writable end of a read-only lend");
        assert_eq!(ledger.pages_lent_to(SERVER), 1);
    }
}
