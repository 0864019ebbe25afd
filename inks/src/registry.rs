//! Domain registration through a linker section.
//!
//! A server crate declares each of its domains with [`domain!`](crate::domain):
//! the macro places a [`DomainSpec`] in the `.tern_domains` section, and the
//! kernel's linker script gathers every such record between the symbols
//! `__tern_domains_start` and `__tern_domains_end`. Linking a server crate
//! into the image registers it; nothing else needs editing. (The same idea
//! as Linux's initcalls, without any code running at registration.)
//!
//! The section lives in read-only data; records are plain data (a name, a
//! function pointer and a role: `tern_core::domain::DomainSpec`, defined
//! with the kernel, which keeps a reference to each domain's), so nothing
//! here needs constructors.

pub use tern_core::domain::{DomainSpec, Entry};

/// Declare a domain: `tern_inks::domain!(PING, "hello.ping", ping);`
/// where `ping: fn(usize) -> usize` (its return value goes back to the
/// kernel through [`gate::exit`](crate::gate::exit)). A domain with a role
/// beyond its own ports says so: `tern_inks::domain!(NAMES, "names", main,
/// NameService);` (see `tern_core::abi::Role`).
#[macro_export]
macro_rules! domain {
    ($item:ident, $name:expr, $entry:path) => {
        $crate::domain!($item, $name, $entry, Plain);
    };
    ($item:ident, $name:expr, $entry:path, $role:ident) => {
        #[used]
        #[unsafe(link_section = ".tern_domains")]
        static $item: $crate::registry::DomainSpec =
            $crate::registry::DomainSpec { name: $name, entry: $entry, role: $crate::registry::Role::$role };
    };
}

#[doc(hidden)]
pub use tern_core::abi::Role;

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
