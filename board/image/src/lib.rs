//! # tern-image: what a production Tern image carries
//!
//! A Tern image is a kernel plus the server domains linked into it: a
//! server crate registers its domains through a linker section
//! (`tern_inks::domain!`), so linking the crate is all it takes to put its
//! domains in the image, and leaving it out is all it takes to keep them
//! out. This crate is the list of the domains a *production* image carries,
//! the image a person flashes onto a Raspberry Pi or boots in QEMU to use
//! Tern: each board crate's production binary (`tern-rpi4`, `tern-virt`)
//! links this crate and no server crate of its own, and each board's
//! harness binary (`tern-rpi4-harness`, `tern-virt-harness`) links this
//! crate too, then adds the test servers on top. So both kinds of image of
//! both boards share one list, and the production list cannot drift
//! between boards.
//!
//! **Adding a domain crate to the production images** is one dependency in
//! `board/image/Cargo.toml` and one line in the list below. Nothing else
//! needs editing: no board crate, no kernel code.
//!
//! It depends on the kernel crates and the production servers; what must
//! not depend on it: any kernel crate (the kernel knows no servers). What
//! does not belong here: test servers (`tern-hello`, `tern-rpctest`,
//! `tern-ctltest`) and the scenario and benchmark drivers. They go into the
//! harness binaries only, and the xtask's production-image check
//! (`tests/tests/image.rs`) fails when any of their symbols turn up in a
//! production image.
//!
//! Each `use ... as _;` line only makes the crate a dependency that the
//! linker sees, which is what registers its domains. [`start`] is what a
//! production image does once the kernel is up: start every domain it
//! carries, then show that it runs (a tick line a second; a shell comes
//! later).
#![no_std]

// The production server domains, one line per server crate.
use tern_checksum as _;
use tern_console as _;
use tern_echo as _;
use tern_fs as _;
use tern_kv as _;
use tern_names as _;

use tern_aarch64::semihosting::ExitStatus;
use tern_aarch64::{domains, kprintln, threads};
use tern_core::abi::{DomainMode, Role};
use tern_core::cmdline::Options;
use tern_inks::registry;
use tern_inks::service::MODE_POOL;

/// The kernel object served by kernel activations (the arch crate's
/// `clock`): merged into the kernel domain once started.
const KERNEL_CLOCK: &str = "kernel.clock";

/// The production image's start ([`tern_aarch64::kernel::Init`]): every
/// registered domain is created and started with a pool of activations
/// (the name service first, so that the others can register with it),
/// the kernel's clock is merged into the kernel domain, and then one tick
/// line a second, forever.
pub fn start(_: &Options<'_>) -> ExitStatus {
    let domains = registry::registered();
    let name_service = domains.iter().filter(|spec| spec.role == Role::NameService);
    for spec in name_service.chain(domains.iter().filter(|spec| spec.role != Role::NameService)) {
        let started = domains::create(spec.name).map_err(reason).and_then(|id| match domains::call(id, MODE_POOL) {
            Ok(tern_aarch64::upcall::Outcome::Returned(0)) => Ok(id),
            Ok(other) => {
                kprintln!("domain {} did not start: {:?}", spec.name, other);
                Err("did not start")
            }
            Err(error) => Err(reason(error)),
        });
        match started {
            Ok(id) if spec.name == KERNEL_CLOCK => match domains::set_mode(id, DomainMode::Merged) {
                Ok(()) => kprintln!("domain {} started, merged into the kernel domain", spec.name),
                Err(error) => kprintln!("domain {} started, not merged: {}", spec.name, error),
            },
            Ok(id) => kprintln!("domain {} started (domain {}, serving with a pool)", spec.name, id.0),
            Err(reason) => kprintln!("domain {}: {}", spec.name, reason),
        }
        // Let the domain's own threads (more urgent than this one) settle.
        threads::yield_now();
    }
    kprintln!("Tern is up: one tick line a second (Ctrl-A X leaves QEMU)");
    tern_aarch64::kernel::tick_forever()
}

/// Why a domain could not be created or started, in words.
fn reason(error: tern_core::domains::DomainError) -> &'static str {
    use tern_core::domains::DomainError;
    match error {
        DomainError::ArenaFull => "no arena slot left",
        DomainError::OutOfMemory => "out of memory",
        DomainError::NoSuchDomain => "not registered",
        DomainError::Terminated => "terminated",
        DomainError::NameTaken => "created already",
    }
}
