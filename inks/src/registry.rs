//! Domain registration through a linker section.
//!
//! A server crate declares each of its domains with [`domain!`](crate::domain):
//! the macro places a [`DomainSpec`] in the `.tern_domains` section, and the
//! kernel's linker script gathers every such record between the symbols
//! `__tern_domains_start` and `__tern_domains_end`. Linking a server crate
//! into the image registers it; nothing else needs editing. (The same idea
//! as Linux's initcalls, without any code running at registration.)
//!
//! The section lives in read-only data; records are plain data (a name and
//! a function pointer), so nothing here needs constructors.

/// A domain's entry point: called at EL0, in the domain, on the domain's
/// stack, with the argument the kernel chose for this upcall. Its return
/// value goes back to the kernel through [`gate::exit`](crate::gate::exit).
pub type Entry = fn(usize) -> usize;

/// What a server crate declares about one of its domains.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct DomainSpec {
    /// Unique name, `server.role` by convention (e.g. `hello.ping`).
    pub name: &'static str,
    /// Where upcalls into the domain start.
    pub entry: Entry,
}

/// Declare a domain: `tern_inks::domain!(PING, "hello.ping", ping);`
/// where `ping: fn(usize) -> usize`.
#[macro_export]
macro_rules! domain {
    ($item:ident, $name:expr, $entry:path) => {
        #[used]
        #[unsafe(link_section = ".tern_domains")]
        static $item: $crate::registry::DomainSpec = $crate::registry::DomainSpec { name: $name, entry: $entry };
    };
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    static __tern_domains_start: u8;
    static __tern_domains_end: u8;
}

/// Every domain registered in this image.
#[cfg(target_os = "none")]
pub fn registered() -> &'static [DomainSpec] {
    // SAFETY: the linker script places only `DomainSpec` records (all made
    // by `domain!`, `#[repr(C)]`, naturally aligned) between the two
    // symbols, in read-only data that lives as long as the image.
    unsafe {
        let start = (&raw const __tern_domains_start).cast::<DomainSpec>();
        let end = (&raw const __tern_domains_end).cast::<DomainSpec>();
        let count = (end as usize - start as usize) / core::mem::size_of::<DomainSpec>();
        core::slice::from_raw_parts(start, count)
    }
}

/// Find a registered domain by name.
#[cfg(target_os = "none")]
pub fn find(name: &str) -> Option<&'static DomainSpec> {
    registered().iter().find(|spec| spec.name == name)
}
