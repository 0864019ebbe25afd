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
//! production image does once the kernel is up: start every server domain
//! it carries (not the programs, `prog.*`, which the shell's `run` starts
//! as jobs, nor the shell), merge the kernel's own objects (`kernel.clock`,
//! `kernel.system`) into the kernel domain, then start the shell, which
//! prints the `tern> ` prompt.
#![no_std]

// The production server domains, one line per server crate.
use tern_checksum as _;
use tern_console as _;
use tern_echo as _;
use tern_fs as _;
use tern_kv as _;
use tern_names as _;
use tern_programs as _;
use tern_shell as _;

use tern_aarch64::semihosting::ExitStatus;
use tern_aarch64::{domains, kprintln, threads};
use tern_core::abi::{DomainMode, Role};
use tern_core::cmdline::Options;
use tern_inks::registry;
use tern_inks::service::MODE_POOL;

/// The kernel objects served by kernel activations (the arch crate's
/// `clock` and `system`): merged into the kernel domain once started.
const KERNEL_OBJECTS: [&str; 2] = ["kernel.clock", "kernel.system"];

/// The shell's domain, started last.
const SHELL: &str = "shell";

/// Whether the start starts `name` as a server: not a program (the shell
/// runs those as jobs), not the shell (started last, on its own).
fn is_server(name: &str) -> bool {
    !name.starts_with(tern_inks::system::PROGRAM_PREFIX) && name != SHELL
}

/// The production image's start ([`tern_aarch64::kernel::Init`]): every
/// registered server domain is created and started with a pool of
/// activations (the name service first, so that the others can register
/// with it), the kernel's objects are merged into the kernel domain, and
/// then the shell runs (started again should it ever end).
pub fn start(_: &Options<'_>) -> ExitStatus {
    let domains = registry::registered();
    let servers = || domains.iter().filter(|spec| is_server(spec.name));
    let name_service = servers().filter(|spec| spec.role == Role::NameService);
    for spec in name_service.chain(servers().filter(|spec| spec.role != Role::NameService)) {
        let started = domains::create(spec.name).map_err(reason).and_then(|id| match domains::call(id, MODE_POOL) {
            Ok(tern_aarch64::upcall::Outcome::Returned(0)) => Ok(id),
            Ok(other) => {
                kprintln!("domain {} did not start: {:?}", spec.name, other);
                Err("did not start")
            }
            Err(error) => Err(reason(error)),
        });
        match started {
            Ok(id) if KERNEL_OBJECTS.contains(&spec.name) => match domains::set_mode(id, DomainMode::Merged) {
                Ok(()) => kprintln!("domain {} started, merged into the kernel domain", spec.name),
                Err(error) => kprintln!("domain {} started, not merged: {}", spec.name, error),
            },
            Ok(id) => kprintln!("domain {} started (domain {}, serving with a pool)", spec.name, id.0),
            Err(reason) => kprintln!("domain {}: {}", spec.name, reason),
        }
        // Let the domain's own threads (more urgent than this one) settle.
        threads::yield_now();
    }
    kprintln!("Tern is up: the shell follows (Ctrl-A X leaves QEMU)");
    loop {
        let shell = domains::find(SHELL).map_or_else(|| domains::create(SHELL), Ok);
        match shell.map_err(reason).map(|id| domains::call(id, 0)) {
            Ok(ended) => kprintln!("the shell ended ({:?}); starting it again", ended),
            Err(reason) => {
                kprintln!("no shell: {}; one tick line a second instead", reason);
                tern_aarch64::kernel::tick_forever()
            }
        }
    }
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
