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
//! It also holds one piece of kernel code that needs a server crate:
//! [`build`], the runner of the macro benchmark `build` over
//! `tern-buildbench`'s domains, and `kernel.build`, the kernel object that
//! runs it for the shell's `bench build` (the kernel crates may not depend
//! on a server crate; this one may).
//!
//! It depends on the kernel crates and the production servers; what must
//! not depend on it: any kernel crate (the kernel knows no servers). What
//! does not belong here: test servers (`tern-hello`, `tern-rpctest`,
//! `tern-ctltest`) and the scenario drivers. They go into the
//! harness binaries only, and the xtask's production-image check
//! (`tests/tests/image.rs`) fails when any of their symbols turn up in a
//! production image.
//!
//! Each `use ... as _;` line only makes the crate a dependency that the
//! linker sees, which is what registers its domains. [`start`] is what a
//! production image does once the kernel is up: start every server domain
//! it carries (not the programs, `prog.*`, which the shell's `run` starts
//! as jobs, nor the benchmark's `build.*`, which [`build`] makes afresh
//! for every configuration, nor the shell), merge the kernel's own objects
//! (`kernel.clock`, `kernel.system`, `kernel.build`) into the kernel
//! domain, then start the shell, which
//! prints the `tern> ` prompt; while the shell runs, the boot thread runs
//! the builds `kernel.build` is asked for (`build::serve_pending`).
#![no_std]

extern crate alloc;

pub mod build;

// The production server domains, one line per server crate.
use tern_buildbench as _;
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
/// `clock` and `system`, and [`build`]'s): merged into the kernel domain
/// once started.
const KERNEL_OBJECTS: [&str; 3] = ["kernel.clock", "kernel.system", "kernel.build"];

/// The benchmark's domains (`build.fs`, `build.driver`, ...) are called
/// this, then their part: [`build`] makes them, never the start.
const BENCHMARK_PREFIX: &str = "build.";

/// The shell's domain, started last.
const SHELL: &str = "shell";

/// Whether the start starts `name` as a server: not a program (the shell
/// runs those as jobs), not one of the benchmark's (made per
/// configuration by [`build`]), not the shell (started last, on its own).
fn is_server(name: &str) -> bool {
    !name.starts_with(tern_inks::system::PROGRAM_PREFIX) && !name.starts_with(BENCHMARK_PREFIX) && name != SHELL
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
        match shell.map_err(reason).and_then(run_shell) {
            Ok(ended) => kprintln!("the shell ended ({:?}); starting it again", ended),
            Err(reason) => {
                kprintln!("no shell: {}; one tick line a second instead", reason);
                tern_aarch64::kernel::tick_forever()
            }
        }
    }
}

/// Run the shell's start on a thread of its own and wait for it to end;
/// how it ended. While it runs, this (boot) thread, the least urgent, also
/// runs the builds `kernel.build` is asked for ([`build::serve_pending`]):
/// it lets whatever is ready run, or waits for the next interrupt (the
/// timer's ticks at the latest; `threads::yield_or_idle`), and looks.
fn run_shell(id: tern_core::domain::DomainId) -> Result<usize, &'static str> {
    use tern_aarch64::state;
    use tern_core::thread::ThreadState;
    let thread = state::with(|kernel| kernel.start_domain(id, 0)).map_err(reason)?;
    loop {
        let (ended, moved) = state::with(|kernel| match kernel.objects.thread(thread) {
            Some(entry) => (matches!(entry.state, ThreadState::Ended(_)), entry.base_moved_to.is_some()),
            None => (true, false),
        });
        if ended || moved {
            // (A base moved elsewhere: wait for it the ordinary way.)
            let result = threads::join(thread).unwrap_or(usize::MAX);
            state::with(|kernel| kernel.reap(thread));
            return Ok(result);
        }
        build::serve_pending();
        threads::yield_or_idle();
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
