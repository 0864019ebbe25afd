//! Boot scenarios: what the kernel does after booting.
//!
//! `tern.scenario=NAME` on the command line picks one; each prints what it
//! does and ends with `scenario NAME: PASS` or `scenario NAME: FAIL (why)`.
//! The integration tests (`tests/`) boot one scenario per test and read
//! that line and the exit status. Without a scenario the kernel runs the
//! demo: the domains, then one tick line a second, forever.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tern_aarch64::semihosting::ExitStatus;
use tern_aarch64::state::{self, Kernel};
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{cpu, domains, kprintln, timer};
use tern_core::domain::DomainId;
use tern_core::domains::DomainError;
use tern_core::machine::RpcStatistics;
use tern_ctltest::test as ctltest;
use tern_inks::mode::DomainMode;
use tern_rpctest::{slow_argument, test};

pub(crate) use crate::Verdict;
use crate::setup::{create, kernel_memory, rounds, start_servers};
use tern_aarch64::domains::set_mode_once_idle;

/// A scenario: its name and what it runs.
type Scenario = (&'static str, fn() -> Verdict);

/// The scenarios, by name.
const SCENARIOS: &[Scenario] = &[
    ("banner", banner),
    ("ticks", ticks),
    ("heap", heap),
    ("copy", crate::copy::copy),
    ("domains", two_domains),
    ("contain-kernel-read", contain_kernel_read),
    ("contain-kernel-write", contain_kernel_write),
    ("contain-other-domain", contain_other_domain),
    ("contain-exec-data", contain_execute_data),
    ("contain-undefined", contain_undefined),
    ("contain-bad-pointer", contain_bad_pointer),
    ("kernel-fault", kernel_fault),
    ("kernel-stack-overflow", kernel_stack_overflow),
    ("kernel-stack-overflow-thread", kernel_stack_overflow_thread),
    ("rpc-payloads-migrating", || {
        rpc(&[("names", 1), ("checksum", 1)], test::PAYLOADS, |s| s.migrated >= 4, "migrated")
    }),
    ("rpc-payloads-switching", || {
        rpc(&[("names", 1), ("checksum", 2)], test::PAYLOADS, |s| s.handed_off >= 4, "handed off")
    }),
    ("rpc-nested-migrating", || {
        rpc(&[("names", 1), ("echo", 1), ("relay", 1)], test::NESTED, |s| s.longest_chain >= 3, "three-deep chain")
    }),
    ("rpc-nested-switching", || {
        rpc(&[("names", 1), ("echo", 2), ("relay", 2)], test::NESTED, |s| s.handed_off >= 2, "handed off twice")
    }),
    ("rpc-empty-pool-fallback", || {
        let slow = slow_argument(3, 1, 1, false);
        rpc(&[("names", 1), ("slow", slow)], test::OVERLAP, |s| s.handed_off + s.queued >= 1, "fell back to a thread")
    }),
    ("rpc-empty-pool-wait", || {
        let slow = slow_argument(1, 1, 0, false);
        rpc(&[("names", 1), ("slow", slow)], test::OVERLAP, |s| s.waited >= 1, "waited for an activation")
    }),
    ("rpc-sidetrack", || {
        let slow = slow_argument(1, 1, 0, true);
        rpc(&[("names", 1), ("slow", slow)], test::SINGLE, |s| s.sidetracks >= 1 && s.waited == 0, "sidetracked")
    }),
    ("rpc-many-clients", || rpc(&[("names", 1), ("kv", 3)], test::MANY_CLIENTS, |_| true, "served")),
    ("rpc-bad-input-migrating", || rpc(&[("names", 1), ("echo", 1)], test::BAD_INPUT, |s| s.migrated >= 2, "migrated")),
    ("merge-echo", merge_echo),
    ("fs", file_server),
    ("build", crate::build::scenario),
    ("quota-flood", quota_flood),
    ("reuse", reuse),
    ("stress", crate::stress::stress),
    ("merge-flip", merge_flip),
    ("merged-split", crate::stress::merged_split),
    ("server-panic-protected", || server_panic(DomainMode::Protected, DomainMode::Protected)),
    ("server-panic-merged", || server_panic(DomainMode::Merged, DomainMode::Protected)),
    ("server-panic-both-merged", || server_panic(DomainMode::Merged, DomainMode::Merged)),
    ("restart-migrating", || restart(tern_rpctest::slow_argument(1, 1, 0, false), DomainMode::Protected)),
    ("restart-switching", || restart(tern_rpctest::slow_argument(2, 0, 1, false), DomainMode::Protected)),
    ("restart-merged", || restart(tern_rpctest::slow_argument(1, 1, 0, false), DomainMode::Merged)),
    ("bound", bound),
    ("console", || crate::console::console(DomainMode::Protected)),
    ("console-merged", || crate::console::console(DomainMode::Merged)),
    ("bound-panic", || server_panic_in(DomainMode::Merged, DomainMode::Merged, tern_rpctest::test::BOUND_PANIC)),
    ("bound-panic-protected", || {
        server_panic_in(DomainMode::Protected, DomainMode::Protected, tern_rpctest::test::BOUND_PANIC)
    }),
    ("ctl-alerts", || ctl(ctltest::ALERTS)),
    ("ctl-alerts-bound", || ctl_bound(ctltest::ALERTS)),
    ("ctl-alert-break-bound", || ctl_bound(ctltest::ALERT_BREAK)),
    ("ctl-terminate-bound", || ctl_bound(ctltest::TERMINATE)),
    ("ctl-splice-bound", || ctl_bound(ctltest::SPLICE)),
    ("ctl-suspend-bound", || ctl_bound(ctltest::SUSPEND)),
    ("ctl-state-bound", || ctl_bound(ctltest::STATE)),
    ("ctl-interrupted", || ctl(ctltest::INTERRUPTED)),
    ("ctl-alert-break", || ctl(ctltest::ALERT_BREAK)),
    ("ctl-terminate", || ctl(ctltest::TERMINATE)),
    ("ctl-terminate-in-kernel", || ctl(ctltest::TERMINATE_IN_KERNEL)),
    ("ctl-splice", || ctl(ctltest::SPLICE)),
    ("ctl-suspend", || ctl(ctltest::SUSPEND)),
    ("ctl-state", || ctl(ctltest::STATE)),
    ("ctl-scheduling", || ctl(ctltest::SCHEDULING)),
    ("ctl-bad-input", || ctl(ctltest::BAD_INPUT)),
    ("ctl-kernel-object", || ctl(ctltest::KERNEL_OBJECT)),
    ("ctl-alert-upcall", || ctl(ctltest::ALERT_UPCALL)),
    ("ctl-domain", ctl_domain),
    ("rpc-bad-input-switching", || {
        rpc(&[("names", 1), ("echo", 2)], test::BAD_INPUT, |s| s.handed_off >= 2, "handed off")
    }),
    // The kernel bugs the fuzzer found (`fuzz::repro`): they pass once fixed.
    ("fuzz-bug-switch-dead-client", crate::fuzz::repro::switch_dead_client),
    ("fuzz-bug-lend-wraps", crate::fuzz::repro::lend_wraps),
    ("fuzz-bug-port-flood", crate::fuzz::repro::port_flood),
    ("fuzz-bug-split-leak", crate::fuzz::repro::split_leak),
    ("fuzz-bug-alert-low-stack", crate::fuzz::repro::alert_low_stack),
];

/// A protected domain asks for ports, pool activations and threads until
/// the kernel refuses each (its quota, or its own region); the kernel's
/// heap grows by a bounded amount, and another domain's calls to `echo`
/// still complete.
fn quota_flood() -> Verdict {
    start_servers(&[("names", 1), ("echo", 1)])?;
    let client = create("client")?;
    let flood = create("probe.flood")?;
    let (heap_before, _) = tern_aarch64::memory::heap_stats();
    let refused = domains::call(flood, 0);
    let (heap_after, _) = tern_aarch64::memory::heap_stats();
    kprintln!("quota-flood: every kind refused: {refused:?}; kernel heap {heap_before} -> {heap_after} bytes in use");
    if refused != Ok(Outcome::Returned(3)) {
        return Err(format!("the flood ended with {refused:?}, not with all three kinds refused"));
    }
    match domains::call(client, test::ECHO_ROUND) {
        Ok(Outcome::Returned(0)) => Ok(()),
        other => Err(format!("another domain's calls after the flood: {other:?}")),
    }
}

/// Domains made and terminated by the reuse scenario unless the command
/// line says otherwise (`tern.rounds=N`), and threads each makes.
const REUSE_DOMAINS: usize = 300;
const REUSE_THREADS: usize = 10;

/// Create and terminate many domains (`tern.rounds`, 300 by default),
/// each making a port with a pool, ten threads (half joined, half left
/// unjoined) and a lending call to `echo`, every seventh merged before it
/// is terminated: every slot, ASID, view, kernel
/// stack, thread, activation and port comes back, so that after a
/// warm-up (which grows the kernel's tables and stack cache to their
/// working size) the free frames and kernel heap bytes end where they
/// began, and the arena never fills.
fn reuse() -> Verdict {
    start_servers(&[("names", 1), ("echo", 1)])?;
    let total = rounds(REUSE_DOMAINS);
    let warm_up = 32.min(total);
    let mut before = kernel_memory();
    let started = timer::counter();
    let mut highest = 0;
    for round in 0..total {
        if round == warm_up {
            before = kernel_memory();
        }
        let id = domains::create("probe.churn").map_err(|error| format!("domain {round}: {error:?}"))?;
        highest = highest.max(id.0);
        match domains::call(id, REUSE_THREADS) {
            Ok(Outcome::Returned(0)) => {}
            other => return Err(format!("domain {round} (number {}): {other:?}", id.0)),
        }
        // Its unjoined threads end.
        tern_aarch64::threads::yield_now();
        // Every seventh dies merged: its region is in every view then.
        if round % 7 == 3 {
            domains::set_mode(id, DomainMode::Merged).map_err(|error| format!("merging domain {round}: {error:?}"))?;
        }
        state::with(|kernel| kernel.terminate_domain(id));
        if (round + 1) % 1000 == 0 {
            kprintln!("reuse: {} domains made and gone", round + 1);
        }
    }
    let after = kernel_memory();
    let seconds = (timer::counter() - started) as f64 / timer::frequency() as f64;
    kprintln!(
        "reuse: {total} domains and {} threads made and gone in {seconds:.1} s; highest domain number {highest}",
        total * REUSE_THREADS,
    );
    kprintln!(
        "reuse: after {warm_up} to warm up: free frames {} -> {}, kernel heap in use {} -> {} bytes",
        before.0,
        after.0,
        before.1,
        after.1
    );
    if after != before {
        return Err(format!("kernel memory not given back: (frames, heap) {before:?} -> {after:?}"));
    }
    match domains::call(create("client")?, test::ECHO_ROUND) {
        Ok(Outcome::Returned(0)) => Ok(()),
        other => Err(format!("a client after the churn: {other:?}")),
    }
}

/// Flip `echo` between modes with a client calling it before and after
/// each change: the same answers every time; a domain with threads parked
/// in it is `Busy`; a protected domain may not ask.
fn merge_echo() -> Verdict {
    start_servers(&[("names", 1), ("echo", 1), ("checksum", 2)])?;
    let echo = domains::find("echo").ok_or("no echo")?;
    let client = create("client")?;
    let round = |label: &str| -> Verdict {
        let counts = || state::with(|kernel| (kernel.statistics().migrated, kernel.statistics().direct));
        let before = counts();
        let outcome = domains::call(client, test::ECHO_ROUND);
        let after = counts();
        let (trapped, direct) = (after.0 - before.0, after.1 - before.1);
        kprintln!(
            "merge-echo: round with echo {label}: {outcome:?}, {trapped} calls migrated by trap, {direct} without"
        );
        // What was lent to echo is gone from its view once the calls have
        // returned: no page of the client's region is mapped there (unless
        // the client is merged, when all of it is, EL1 only).
        let (lends, visible, client_merged) = state::with(|kernel| {
            (
                kernel.statistics().lends_mapped,
                pages_reachable(kernel, client, echo),
                kernel.mode_of(client).is_merged(),
            )
        });
        kprintln!(
            "merge-echo: {} lends mapped into echo's view so far; client pages echo can reach after the round: {visible}",
            lends
        );
        if visible != 0 && !client_merged {
            return Err(format!("{visible} pages of the client still reachable from echo after the round"));
        }
        match outcome {
            Ok(Outcome::Returned(0)) if trapped + direct >= 4 => Ok(()),
            other => Err(format!("round with echo {label}: {other:?}")),
        }
    };
    round("protected")?;
    let inside = domains::region(echo).ok_or("no region")?.start + 0x1000;
    let steps = [
        (echo, "echo", DomainMode::Merged, "merged"),
        (client, "client", DomainMode::Merged, "and client merged"),
        (client, "client", DomainMode::Protected, "merged, client protected again"),
        (echo, "echo", DomainMode::Protected, "protected again"),
    ];
    for (domain, name, mode, label) in steps {
        let changed = domains::set_mode(domain, mode);
        kprintln!("merge-echo: {name} -> {mode:?}: {changed:?}");
        changed.map_err(|error| format!("{name} -> {mode:?}: {error}"))?;
        let mode = state::with(|kernel| kernel.domain(echo).map(|record| record.mode)).ok_or("no echo")?;
        // Echo's memory as its own view, the client's and the kernel's map
        // it now. Merged, it is EL1-only there, so a round that works
        // proves echo's code ran at EL1 (at EL0 its first stack access
        // would fault and abort the call).
        let (own, client_view, kernel_view) = state::with(|kernel| {
            let access = |viewer| domains::access_in_view(kernel, viewer, inside);
            (access(Some(echo)), access(Some(client)), access(None))
        });
        let described = |access: Option<tern_aarch64::paging::Access>| match access {
            None => "unmapped",
            Some(access) if access.user_write && !access.global => "EL0 read-write, this ASID",
            Some(access) if !access.user_read && access.kernel_write && access.global => "EL1 only, global",
            Some(_) => "something else",
        };
        let seen = [described(own), described(client_view), described(kernel_view)];
        kprintln!("merge-echo: echo's memory in echo's / the client's / the kernel's view: {}", seen.join(" / "));
        let wanted = match mode {
            DomainMode::Merged => ["EL1 only, global"; 3],
            DomainMode::Protected => ["EL0 read-write, this ASID", "unmapped", "unmapped"],
        };
        if seen != wanted {
            return Err(format!("echo {label}: its memory is mapped {seen:?}, not {wanted:?}"));
        }
        round(label)?;
    }
    let checksum = domains::find("checksum").ok_or("no checksum")?;
    let busy = domains::set_mode(checksum, DomainMode::Merged);
    kprintln!("merge-echo: checksum (server threads parked in receive) -> Merged: {busy:?}");
    if busy != Err(tern_core::abi::Error::Busy) {
        return Err(format!("checksum with threads in it: {busy:?}, not Busy"));
    }
    Ok(())
}

/// A server (`slow`, in `mode`) panics in the middle of a call from a
/// client in `client_mode`: the panic is the domain's fault, contained
/// like any other (reported, domain terminated), the client gets
/// `CallAborted`, and the kernel carries on.
fn server_panic(mode: DomainMode, client_mode: DomainMode) -> Verdict {
    server_panic_in(mode, client_mode, tern_rpctest::test::SERVER_PANIC)
}

/// `slow` in `mode`, the client in `client_mode`, the client's `test`
/// (`SERVER_PANIC`, or `BOUND_PANIC`: through a bound handle, the client's
/// state intact, the handle stale after): `slow` is dead after.
fn server_panic_in(mode: DomainMode, client_mode: DomainMode, test: usize) -> Verdict {
    start_servers(&[("names", 1), ("slow", tern_rpctest::slow_argument(1, 2, 0, false))])?;
    let slow = domains::find("slow").ok_or("no slow")?;
    domains::set_mode(slow, mode).map_err(|error| format!("slow: {error}"))?;
    let client = create("client")?;
    domains::set_mode(client, client_mode).map_err(|error| format!("client: {error}"))?;
    match domains::call(client, test) {
        Ok(Outcome::Returned(0)) => {}
        other => return Err(format!("the client reported {other:?}")),
    }
    let alive = state::with(|kernel| kernel.domain(slow).is_some_and(|record| record.alive));
    kprintln!("server-panic: slow ({mode:?}) alive after its panic: {alive}");
    if alive { Err("slow survived its panic".into()) } else { Ok(()) }
}

/// `slow`, idempotent, restarted on a fault at most three times a minute
/// (served by its pool, or by a server thread; first in `mode`, its
/// restarted instances protected): the client's calls see the first
/// restart not at all, a call that kills every instance aborted, and the
/// port dead once the policy gives up (`tern_rpctest::test::SERVER_RESTART`).
fn restart(argument: usize, mode: DomainMode) -> Verdict {
    start_servers(&[("names", 1), ("slow", tern_rpctest::idempotent(argument))])?;
    let slow = domains::find("slow").ok_or("no slow")?;
    domains::set_mode(slow, mode).map_err(|error| format!("slow: {error}"))?;
    let policy = tern_core::abi::RestartPolicy::OnFault { limit: 3, window: 60 * timer::frequency() };
    state::with(|kernel| kernel.set_restart_policy(slow, policy)).map_err(|error| format!("policy: {error}"))?;
    let client = create("client")?;
    let outcome = domains::call(client, tern_rpctest::test::SERVER_RESTART);
    let restarts = state::with(|kernel| kernel.statistics().restarts);
    kprintln!("restart: slow restarted {restarts} times; the client reported {outcome:?}");
    match outcome {
        Ok(Outcome::Returned(0)) if restarts == 3 => Ok(()),
        other => Err(format!("the client reported {other:?} after {restarts} restarts")),
    }
}

/// Bound handles (`tern_inks::bound`) in every pair of modes: the client's
/// payloads through a handle to `checksum` (served by its pool), as
/// message buffers, in memory and as words; then a handle kept across a
/// change of `checksum`'s mode is stale and a new binding works.
fn bound() -> Verdict {
    start_servers(&[("names", 1), ("checksum", 1)])?;
    let checksum = domains::find("checksum").ok_or("no checksum")?;
    let client = create("client")?;
    let run = |test: usize, what: &str| match domains::call(client, test) {
        Ok(Outcome::Returned(0)) => Ok(()),
        other => Err(format!("{what}: the client reported {other:?}")),
    };
    for (server_mode, client_mode) in [
        (DomainMode::Protected, DomainMode::Protected),
        (DomainMode::Merged, DomainMode::Protected),
        (DomainMode::Merged, DomainMode::Merged),
        (DomainMode::Protected, DomainMode::Merged),
    ] {
        domains::set_mode(checksum, server_mode).map_err(|error| format!("checksum: {error}"))?;
        domains::set_mode(client, client_mode).map_err(|error| format!("client: {error}"))?;
        let before = state::with(|kernel| *kernel.statistics());
        run(tern_rpctest::test::BOUND, &format!("checksum {server_mode:?}, client {client_mode:?}"))?;
        let after = state::with(|kernel| *kernel.statistics());
        let both_merged = server_mode.is_merged() && client_mode.is_merged();
        if both_merged && after.direct == before.direct {
            return Err("no call took the merged path with both merged".into());
        }
        kprintln!(
            "bound: checksum {server_mode:?}, client {client_mode:?}: payloads pass ({} calls by the merged path, {} migrated)",
            after.direct - before.direct,
            after.migrated - before.migrated
        );
    }
    for (from, to) in [(DomainMode::Protected, DomainMode::Merged), (DomainMode::Merged, DomainMode::Protected)] {
        domains::set_mode(checksum, from).map_err(|error| format!("checksum: {error}"))?;
        run(tern_rpctest::test::BOUND_KEEP, "keeping a handle")?;
        domains::set_mode(checksum, to).map_err(|error| format!("checksum: {error}"))?;
        run(tern_rpctest::test::BOUND_STALE, "the kept handle")?;
        kprintln!("bound: a handle kept across checksum {from:?} -> {to:?} is stale; a new one works");
    }
    Ok(())
}

/// An activation-control test of `ctl.client` (see `tern_ctltest`), in two
/// rounds: the two servers protected, then both merged into the kernel
/// domain (the client stays protected). The same outcome both times.
fn ctl(test: usize) -> Verdict {
    ctl_with(test, 1)
}

/// [`ctl`] with `ctl.mid` forwarding to `ctl.top` through bound handles:
/// in the merged round, the middle's calls to the top take the bound
/// merged path, and the test's alerts, splits, suspensions and
/// terminations reach threads inside it.
fn ctl_bound(test: usize) -> Verdict {
    ctl_with(test, 1 | tern_ctltest::MID_BOUND)
}

fn ctl_with(test: usize, mid: usize) -> Verdict {
    start_servers(&[("names", 1), ("kernel.clock", 1), ("ctl.top", 1), ("ctl.mid", mid)])?;
    let clock = domains::find("kernel.clock").ok_or("no kernel.clock")?;
    domains::set_mode(clock, DomainMode::Merged).map_err(|error| format!("kernel.clock: {error}"))?;
    let servers = [domains::find("ctl.top").ok_or("no ctl.top")?, domains::find("ctl.mid").ok_or("no ctl.mid")?];
    let client = create("ctl.client")?;
    for mode in [DomainMode::Protected, DomainMode::Merged] {
        for server in servers {
            set_mode_once_idle(server, mode).map_err(|error| format!("{mode:?}: {error}"))?;
        }
        let splits = || state::with(|kernel| kernel.statistics().splits);
        let direct = || state::with(|kernel| kernel.statistics().direct);
        let (before, direct_before) = (splits(), direct());
        kprintln!("ctl: round with the servers {}", if mode.is_merged() { "merged" } else { "protected" });
        match domains::call(client, test) {
            Ok(Outcome::Returned(0)) => {}
            other => return Err(format!("the client reported {other:?} with the servers {mode:?}")),
        }
        kprintln!("ctl: threads split in this round: {}", splits() - before);
        if mid & tern_ctltest::MID_BOUND != 0 && mode.is_merged() {
            // The middle's calls to the top: the bound merged path.
            let calls = direct() - direct_before;
            kprintln!("ctl: calls by the merged path in this round: {calls}");
            if calls == 0 {
                return Err("ctl.mid's bound calls did not take the merged path".into());
            }
        }
    }
    Ok(())
}

/// Domain-wide control with other domains' threads inside: two workers of
/// `ctl.client` are up in `ctl.top` (through `ctl.mid`). Suspending
/// `ctl.top` stops them there (their calls make no progress however long
/// the boot thread yields); resuming lets them complete. Done with the
/// servers protected, then merged. Then, protected again, terminating
/// `ctl.top` with the workers inside gives each of them back to `ctl.mid`
/// at once (its call to the top returns `CallAborted`, which it reports to
/// the client) and ends the domain.
fn ctl_domain() -> Verdict {
    use tern_core::control::DomainAction;
    start_servers(&[("names", 1), ("ctl.top", 1), ("ctl.mid", 1)])?;
    let top = domains::find("ctl.top").ok_or("no ctl.top")?;
    let servers = [top, domains::find("ctl.mid").ok_or("no ctl.mid")?];
    let client = create("ctl.client")?;
    let occupied = || state::with(|kernel| kernel.objects.occupied_in(top).len());
    let start = || match domains::call(client, ctltest::DOMAIN_START) {
        Ok(Outcome::Returned(threads)) if threads != 0 => Ok(threads),
        other => Err(format!("the workers did not start: {other:?}")),
    };
    let join = |threads: usize, terminated: bool| match domains::call(
        client,
        ctltest::DOMAIN_JOIN | threads | if terminated { 0x100 } else { 0 },
    ) {
        Ok(Outcome::Returned(0)) => Ok(()),
        other => Err(format!("the workers' outcome: {other:?}")),
    };
    let act = |action| state::with(|kernel| kernel.domain_control(top, action)).map_err(|error| format!("{error}"));
    let set_modes = |mode| -> Verdict {
        for server in servers {
            set_mode_once_idle(server, mode).map_err(|error| format!("{error}"))?;
        }
        Ok(())
    };
    for mode in [DomainMode::Protected, DomainMode::Merged] {
        set_modes(mode)?;
        let threads = start()?;
        let inside = occupied();
        let suspended = act(DomainAction::Suspend)?;
        for _ in 0..300 {
            tern_aarch64::threads::yield_now();
        }
        let still = occupied();
        let resumed = act(DomainAction::Resume)?;
        join(threads, false)?;
        kprintln!(
            "ctl-domain: servers {mode:?}: {inside} activations of ctl.top occupied; suspended {suspended}; after 300 yields {still} still occupied; resumed {resumed}; {} after",
            occupied()
        );
        if inside != 2 || suspended != 2 || still != 2 || resumed != 2 || occupied() != 0 {
            return Err(format!("suspend/resume of ctl.top ({mode:?}) did not hold the workers"));
        }
    }
    set_modes(DomainMode::Protected)?;
    let threads = start()?;
    let inside = occupied();
    let terminated = act(DomainAction::Terminate)?;
    let (left, alive) =
        state::with(|kernel| (kernel.objects.occupied_in(top).len(), kernel.domain(top).is_some_and(|r| r.alive)));
    join(threads, true)?;
    kprintln!(
        "ctl-domain: terminated ctl.top with {inside} client threads inside: {terminated} activations terminated, {left} left, alive: {alive}"
    );
    if inside != 2 || terminated != 2 || left != 0 || alive {
        return Err("terminating ctl.top did not end it and free its callers".into());
    }
    Ok(())
}

/// The file server through RPC (`tern_fstest`): `fs` served by its pool,
/// `fs.client` running every operation and error (a 1 MiB file through
/// lent buffers among them), in every pair of modes of server and client;
/// in each, a handle `fs.client` keeps is refused to `fs.peer` (in the
/// other mode) and still works for its owner. Then the store is filled
/// until `Full` (bytes, then nodes), the server's heap measured full and
/// emptied again, and the room checked back.
fn file_server() -> Verdict {
    use tern_fstest::{test as fstest, with_handle};
    start_servers(&[("names", 1), ("fs", tern_inks::service::MODE_POOL)])?;
    let server = domains::find("fs").ok_or("no fs")?;
    let client = create("fs.client")?;
    let peer = create("fs.peer")?;
    let run = |domain: DomainId, argument: usize, what: &str| match domains::call(domain, argument) {
        Ok(Outcome::Returned(value)) => Ok(value),
        other => Err(format!("{what}: {other:?}")),
    };
    let other = |mode: DomainMode| if mode.is_merged() { DomainMode::Protected } else { DomainMode::Merged };
    for (server_mode, client_mode) in [
        (DomainMode::Protected, DomainMode::Protected),
        (DomainMode::Merged, DomainMode::Protected),
        (DomainMode::Merged, DomainMode::Merged),
        (DomainMode::Protected, DomainMode::Merged),
    ] {
        set_mode_once_idle(server, server_mode).map_err(|error| format!("fs -> {server_mode:?}: {error}"))?;
        set_mode_once_idle(client, client_mode).map_err(|error| format!("fs.client -> {client_mode:?}: {error}"))?;
        set_mode_once_idle(peer, other(client_mode)).map_err(|error| format!("fs.peer: {error}"))?;
        let label = format!("fs {server_mode:?}, client {client_mode:?}, peer {:?}", other(client_mode));
        let lends = || state::with(|kernel| kernel.statistics().lends_mapped);
        let before = lends();
        let failures = run(client, fstest::ROUND, &label)?;
        kprintln!("fs: {label}: round with {failures} failure(s), {} lends mapped into fs", lends() - before);
        if failures != 0 {
            return Err(format!("{label}: {failures} check(s) failed"));
        }
        let handle = run(client, fstest::KEEP, &label)?;
        if handle == 0 || handle > u32::MAX as usize {
            return Err(format!("{label}: the owner could not open /shared"));
        }
        let stolen = run(peer, with_handle(fstest::STEAL, handle as u32), &label)?;
        let released = run(client, with_handle(fstest::RELEASE, handle as u32), &label)?;
        kprintln!("fs: {label}: another domain's handle refused ({stolen} failures), its owner's kept ({released})");
        if stolen + released != 0 {
            return Err(format!("{label}: per-client handles: {stolen} + {released} failures"));
        }
    }
    set_mode_once_idle(server, DomainMode::Protected).map_err(|error| format!("fs: {error}"))?;
    set_mode_once_idle(client, DomainMode::Protected).map_err(|error| format!("fs.client: {error}"))?;
    let heap = || -> Result<(usize, usize), String> {
        let region = domains::region(server).ok_or("no region")?;
        let address = region.start + tern_core::board::ARENA_ALIAS_OFFSET + tern_core::board::REGION_HEAP_OFFSET;
        // SAFETY: every domain's region holds its heap record at
        // `REGION_HEAP_OFFSET`, written when the domain was made; the
        // kernel's view maps the arena read-write at its alias; `fs` is
        // idle (no call in it), so its heap's lock is free and nothing
        // changes the record while it is read.
        Ok(unsafe { &*(address as *const tern_core::heap::LockedHeap) }.stats())
    };
    let empty = heap()?;
    let filled = run(client, fstest::FILL, "fill")?;
    let full = heap()?;
    let emptied = run(client, fstest::EMPTY, "empty")?;
    let after = heap()?;
    kprintln!(
        "fs: heap of fs (bytes used, free): empty {empty:?}, full {full:?}, emptied again {after:?}; fill {filled} and empty {emptied} failure(s)"
    );
    if filled + emptied != 0 {
        return Err(format!("filling the store: {filled} + {emptied} failures"));
    }
    Ok(())
}

/// How many pages of `owner`'s region `viewer` can read at EL0 (its code's
/// level when protected): after a call that lent `viewer` part of
/// `owner`'s memory has returned, none.
fn pages_reachable(kernel: &Kernel, owner: DomainId, viewer: DomainId) -> usize {
    kernel.domain(owner).map_or(0, |record| {
        let region = record.domain.region;
        (region.start..region.end)
            .step_by(tern_aarch64::paging::PAGE as usize)
            .filter(|&page| domains::access_in_view(kernel, Some(viewer), page).is_some_and(|a| a.user_read))
            .count()
    })
}

/// Client threads in the client's domain call `slow` (a pool of two for
/// three threads; every call yields while it holds an activation) while
/// this boot thread flips `slow` between protected and merged after every
/// yield: a flip while any call is in `slow` is refused `Busy` and nothing
/// changes, one between calls takes effect for the next call. Every call
/// must come back right (no call lost or corrupted), both flips and `Busy`
/// must have happened, and nothing lent stays reachable. Two rounds: a
/// protected client, then a merged one (whose calls into merged `slow`
/// take the direct path).
fn merge_flip() -> Verdict {
    const WORKERS: usize = 3;
    const CALLS: usize = 40;
    let slow_start = tern_rpctest::slow_argument(1, 2, 0, false);
    start_servers(&[("names", 1), ("slow", slow_start)])?;
    let slow = domains::find("slow").ok_or("no slow")?;
    let client = create("client")?;
    for client_mode in [DomainMode::Protected, DomainMode::Merged] {
        domains::set_mode(client, client_mode).map_err(|error| format!("client -> {client_mode:?}: {error}"))?;
        let before = state::with(|kernel| *kernel.statistics());
        let threads = state::with(|kernel| {
            let priority = kernel.objects.thread(kernel.current()).map_or(0, |thread| thread.priority);
            (0..WORKERS)
                .map(|worker| {
                    let argument = tern_rpctest::flip_argument(worker, CALLS);
                    let entry = tern_rpctest::flip_worker as fn(usize) -> usize as usize;
                    kernel.create_thread(client, entry, argument, priority, 64 << 10)
                })
                .collect::<Option<Vec<_>>>()
        })
        .ok_or("could not start the client threads")?;
        // (to merged, to protected, refused Busy)
        let mut flips = [0usize; 3];
        let mut turns = 0usize;
        while state::with(|kernel| {
            threads.iter().any(|&thread| {
                kernel
                    .objects
                    .thread(thread)
                    .is_some_and(|t| !matches!(t.state, tern_core::thread::ThreadState::Ended(_)))
            })
        }) {
            turns += 1;
            if turns > 1_000_000 {
                // What each unfinished worker is doing, and slow's ports.
                state::with(|kernel| {
                    for &thread in &threads {
                        if let Some(entry) = kernel.objects.thread(thread) {
                            let chain: Vec<u32> =
                                kernel.objects.chain(thread).iter().map(|activation| activation.0.get()).collect();
                            kprintln!("merge-flip: thread {} {:?} chain {:?}", thread.0, entry.state, chain);
                        }
                    }
                    let ports: Vec<_> = kernel.objects.port_ids().collect();
                    for port in ports {
                        if let Some(entry) = kernel.objects.port(port).filter(|entry| entry.owner == slow) {
                            kprintln!(
                                "merge-flip: slow's port {}: {} of {} free, {} waiting, mode {:?}",
                                port.get(),
                                kernel.objects.pool_free(port),
                                entry.pool_size,
                                entry.waiting,
                                kernel.mode_of(slow)
                            );
                        }
                    }
                });
                return Err("the client threads did not finish".into());
            }
            let (wanted, changed) = state::with(|kernel| {
                let wanted = if kernel.mode_of(slow).is_merged() { DomainMode::Protected } else { DomainMode::Merged };
                (wanted, kernel.set_mode(slow, wanted))
            });
            match (changed, wanted) {
                (Ok(()), DomainMode::Merged) => flips[0] += 1,
                (Ok(()), DomainMode::Protected) => flips[1] += 1,
                (Err(tern_core::abi::Error::Busy), _) => flips[2] += 1,
                (Err(error), _) => return Err(format!("slow -> {wanted:?}: {error}")),
            }
            // (Idle when the workers all sleep: a worker that gave way on
            // its domain's heap wakes only at the timer's tick, which this
            // thread, interrupts masked, must let in.)
            tern_aarch64::threads::yield_or_idle();
        }
        let failures: usize = threads.iter().map(|&thread| tern_aarch64::threads::join(thread).unwrap_or(1)).sum();
        let (after, reachable) = state::with(|kernel| (*kernel.statistics(), pages_reachable(kernel, client, slow)));
        let (trapped, direct) = (after.migrated - before.migrated, after.direct - before.direct);
        let waited = after.waited - before.waited;
        kprintln!(
            "merge-flip: client {client_mode:?}: {WORKERS} threads, {} calls, {failures} failed; slow merged {} times and protected {} times under them, {} flips refused Busy",
            WORKERS * CALLS,
            flips[0],
            flips[1],
            flips[2]
        );
        kprintln!(
            "merge-flip: client {client_mode:?}: {trapped} calls migrated by trap, {direct} without, {waited} waited for an activation; client pages slow can reach now: {reachable}"
        );
        if failures != 0 {
            return Err(format!("{failures} calls lost or corrupted with a {client_mode:?} client"));
        }
        if flips.contains(&0) {
            return Err(format!("flips (merged, protected, Busy) {flips:?}: each kind must have happened"));
        }
        if client_mode == DomainMode::Protected && reachable != 0 {
            return Err(format!("{reachable} client pages reachable from slow after the calls"));
        }
        if client_mode.is_merged() && direct == 0 {
            return Err("a merged client never called merged slow directly".into());
        }
    }
    for (domain, name) in [(slow, "slow"), (client, "client")] {
        domains::set_mode(domain, DomainMode::Protected)
            .map_err(|error| format!("{name} back to protected: {error}"))?;
    }
    Ok(())
}

/// Start `servers` (domain name, start argument) in order, run the
/// `client` domain's `test`, and check the RPC paths' counters with
/// `taken` (described by `what`).
fn rpc(servers: &[(&str, usize)], test: usize, taken: fn(&RpcStatistics) -> bool, what: &str) -> Verdict {
    start_servers(servers)?;
    let client = create("client")?;
    let outcome = domains::call(client, test);
    let statistics = state::with(|kernel| *kernel.statistics());
    kprintln!(
        "rpc: migrated {}, handed off {}, queued {}, waited {}, sidetracks {}, longest chain {}",
        statistics.migrated,
        statistics.handed_off,
        statistics.queued,
        statistics.waited,
        statistics.sidetracks,
        statistics.longest_chain
    );
    match outcome {
        Ok(Outcome::Returned(0)) => {}
        other => return Err(format!("the client reported {other:?}")),
    }
    if taken(&statistics) { Ok(()) } else { Err(format!("expected the calls to have {what}")) }
}

/// Samples per benchmark figure unless the command line says otherwise.
const BENCH_REPETITIONS: usize = 1000;

/// Run the scenario the command line names (or the demo) and say how it
/// went: the harness image's [`tern_aarch64::kernel::Init`].
pub fn run(options: &tern_core::cmdline::Options<'_>) -> ExitStatus {
    let name = options.scenario;
    crate::build::set_files(options.build_files);
    if let Some(rounds) = options.rounds {
        crate::setup::set_rounds(rounds as usize);
    }
    if name == Some("bench") {
        let repetitions = options.bench_repetitions.map_or(BENCH_REPETITIONS, |n| n as usize);
        return finish("bench", crate::bench::run(repetitions));
    }
    if name == Some("calibrate") {
        return finish("calibrate", crate::calibrate::run());
    }
    if name == Some("fuzz") {
        return crate::fuzz::run(options);
    }
    let Some(name) = name else {
        demo();
    };
    let Some((_, scenario)) = SCENARIOS.iter().find(|(known, _)| *known == name) else {
        let known: Vec<&str> = SCENARIOS.iter().map(|(known, _)| *known).collect();
        kprintln!("scenario {}: FAIL (no such scenario; known: {})", name, known.join(", "));
        return ExitStatus::Fail;
    };
    kprintln!("scenario {}: start", name);
    finish(name, scenario())
}

fn finish(name: &str, verdict: Verdict) -> ExitStatus {
    match verdict {
        Ok(()) => {
            kprintln!("scenario {}: PASS", name);
            ExitStatus::Pass
        }
        Err(reason) => {
            kprintln!("scenario {}: FAIL ({})", name, reason);
            ExitStatus::Fail
        }
    }
}

fn banner() -> Verdict {
    // The banner has been printed by the boot sequence; reaching here means
    // memory, interrupts and the timer came up.
    Ok(())
}

/// Wait until the tick count reaches `target`, printing each new tick;
/// gives up after `seconds` of counter time.
fn watch_ticks(target: u64, seconds: u64) -> Verdict {
    let deadline = timer::counter() + timer::frequency() * seconds;
    let start = timer::ticks();
    let mut seen = 0;
    cpu::enable_interrupts();
    while seen < target {
        cpu::wait_for_interrupt();
        let now = timer::ticks() - start;
        // A tick can land between enabling interrupts and `wfi`, so more
        // than one may be new: report each.
        while seen < now.min(target) {
            seen += 1;
            kprintln!("tick {}", seen);
        }
        if timer::counter() > deadline {
            cpu::mask_interrupts();
            return Err(format!("only {} ticks in {} s", seen, seconds));
        }
    }
    cpu::mask_interrupts();
    Ok(())
}

fn ticks() -> Verdict {
    kprintln!("timer: {} Hz counter, {} Hz ticks", timer::frequency(), timer::TICK_HZ);
    watch_ticks(5, 5)
}

fn heap() -> Verdict {
    let (used_before, _) = tern_aarch64::memory::heap_stats();
    {
        let numbers: Vec<u64> = (0..10_000).collect();
        let sum: u64 = numbers.iter().sum();
        if sum != 10_000 * 9_999 / 2 {
            return Err(format!("vector sum {sum}"));
        }
        let boxed = Box::new([7u8; 4096]);
        let mut map: hashbrown::HashMap<u64, String> = hashbrown::HashMap::new();
        for key in 0..1000u64 {
            map.insert(key * 7919, format!("value {key}"));
        }
        for key in (0..1000u64).step_by(2) {
            map.remove(&(key * 7919));
        }
        let remaining = map.len();
        let correct = (1..1000u64).step_by(2).all(|key| map.get(&(key * 7919)) == Some(&format!("value {key}")));
        let (used_peak, free) = tern_aarch64::memory::heap_stats();
        if remaining != 500 || !correct || boxed.iter().any(|&byte| byte != 7) {
            return Err(format!("hash map holds {remaining} entries, contents correct: {correct}"));
        }
        kprintln!("heap: {} bytes in use with a 1000-entry hash map built, {} free", used_peak, free);
    }
    let (used_after, _) = tern_aarch64::memory::heap_stats();
    if used_after != used_before {
        return Err(format!("{used_before} bytes in use before, {used_after} after everything was dropped"));
    }
    kprintln!("heap: ok (Vec, Box, String and hashbrown::HashMap; every byte returned)");
    Ok(())
}

fn expect_return(id: DomainId, argument: usize, wanted: usize) -> Verdict {
    match domains::call(id, argument) {
        Ok(Outcome::Returned(value)) if value == wanted => Ok(()),
        other => {
            Err(format!("upcall into domain {} with {} gave {:?}, wanted Returned({})", id.0, argument, other, wanted))
        }
    }
}

fn ping_pong(ping: DomainId, pong: DomainId, rounds: core::ops::RangeInclusive<usize>) -> Verdict {
    for round in rounds {
        expect_return(ping, round, tern_hello::ping_answer(round, ping.0 as usize))?;
        expect_return(pong, round, tern_hello::pong_answer(round, pong.0 as usize))?;
    }
    Ok(())
}

fn two_domains() -> Verdict {
    let ping = create("hello.ping")?;
    let pong = create("hello.pong")?;
    if domains::find("hello.ping") != Some(ping) || domains::find("hello.pong") != Some(pong) {
        return Err("the kernel's name index lost a domain".into());
    }
    let again = domains::create("hello.ping");
    if again != Err(DomainError::NameTaken) {
        return Err(format!("a second hello.ping was not refused: {again:?}"));
    }
    kprintln!("switching views by ASID, no TLB flush: ping, pong, ping, pong, ...");
    ping_pong(ping, pong, 1..=3)
}

/// Run `probe` with `argument` between healthy domains; it must fault, be
/// terminated, stay terminated, and leave the others running.
fn contain(probe_name: &str, argument: impl FnOnce(DomainId) -> usize) -> Verdict {
    let ping = create("hello.ping")?;
    let pong = create("hello.pong")?;
    let probe = create(probe_name)?;
    ping_pong(ping, pong, 1..=1)?;
    match domains::call(probe, argument(ping)) {
        Ok(Outcome::Faulted) => {}
        other => return Err(format!("{probe_name} was not stopped: {other:?}")),
    }
    match domains::call(probe, 0) {
        Err(DomainError::Terminated) => {}
        other => return Err(format!("a terminated domain could be entered again: {other:?}")),
    }
    ping_pong(ping, pong, 2..=2)
}

fn contain_kernel_read() -> Verdict {
    contain("probe.kernel-read", |_| timer::tick_counter_address())
}

fn contain_kernel_write() -> Verdict {
    contain("probe.kernel-write", |_| timer::tick_counter_address())
}

fn contain_other_domain() -> Verdict {
    contain("probe.other-domain", |ping| domains::region(ping).map_or(0, |region| region.start as usize + 64))
}

fn contain_execute_data() -> Verdict {
    contain("probe.exec-data", |_| 0)
}

fn contain_undefined() -> Verdict {
    contain("probe.undefined", |_| 0)
}

fn contain_bad_pointer() -> Verdict {
    const EXPECTED_REFUSALS: usize = 11;
    let ping = create("hello.ping")?;
    let probe = create("probe.bad-pointer")?;
    match domains::call(probe, timer::tick_counter_address()) {
        Ok(Outcome::Returned(EXPECTED_REFUSALS)) => {}
        other => return Err(format!("probe.bad-pointer ended with {other:?}, wanted Returned({EXPECTED_REFUSALS})")),
    }
    // Domains run on threads of their own: the kernel's boot thread, which
    // runs this scenario, never holds an activation a domain could name.
    let boot_activations = state::with(|kernel| kernel.objects.chain(kernel.current()).len());
    kprintln!("contain-bad-pointer: activations on the boot thread: {boot_activations}");
    if boot_activations != 0 {
        return Err(format!("the boot thread holds {boot_activations} activations"));
    }
    expect_return(ping, 1, tern_hello::ping_answer(1, ping.0 as usize))
}

fn kernel_fault() -> Verdict {
    let image = tern_aarch64::memory::ImageLayout::of_this_image();
    kprintln!("reading the boot stack's guard page (0x{:x}) at EL1", image.stack_guard.start);
    // SAFETY: none — a deliberate kernel fault; the guard page is unmapped
    // and the fault handler stops the kernel before this returns.
    let value = unsafe { core::ptr::read_volatile(image.stack_guard.start as *const u64) };
    Err(format!("the read returned 0x{value:x} instead of faulting"))
}

/// The boot thread runs the boot stack into its guard page, with the
/// kernel state held (as kernel code mostly runs): the kernel must report
/// a kernel stack overflow in the boot thread, in the kernel, and stop
/// with status 3 — the report taken on the exception stack, not a fault
/// again in the vector, and without the lock.
fn kernel_stack_overflow() -> Verdict {
    let image = tern_aarch64::memory::ImageLayout::of_this_image();
    let thread = state::with(|kernel| kernel.current());
    kprintln!(
        "thread {} recursing on the boot stack 0x{:x}..0x{:x} (guard page 0x{:x}) with the kernel state held",
        thread.get(),
        image.stack.start,
        image.stack.end,
        image.stack_guard.start
    );
    let depth = state::with(|_| crate::probes::recurse(0));
    Err(format!("the recursion came back (0x{depth:x}) instead of overflowing the boot stack"))
}

/// A thread of `probe.kernel-stack`, merged (so that its code runs at
/// EL1), runs its own kernel stack into the guard page below it. Its stack
/// comes from a chunk made after three domains' views were: the guard
/// page must be unmapped, and the stack mapped, in every one of them and
/// in the kernel's. The kernel must report a kernel stack overflow in
/// that thread, in that domain, and stop with status 3.
fn kernel_stack_overflow_thread() -> Verdict {
    let ping = create("hello.ping")?;
    let pong = create("hello.pong")?;
    let probe = create("probe.kernel-stack")?;
    ping_pong(ping, pong, 1..=1)?;
    domains::set_mode(probe, DomainMode::Merged).map_err(|error| format!("probe.kernel-stack -> Merged: {error}"))?;
    let entry = crate::probes::overflow_kernel_stack_entry();
    let made = state::with(|kernel| {
        let priority = kernel.objects.thread(kernel.current()).map_or(0, |thread| thread.priority);
        let thread = kernel.create_thread(probe, entry, 0, priority, 16 << 10)?;
        let stack = kernel.machine.kernel_stack_of(thread)?;
        let guard = stack.start - tern_aarch64::paging::PAGE;
        let viewers = [None, Some(ping), Some(pong), Some(probe)];
        let unmapped =
            viewers.iter().filter(|&&viewer| domains::access_in_view(kernel, viewer, guard).is_none()).count();
        let mapped = viewers
            .iter()
            .filter(|&&viewer| {
                domains::access_in_view(kernel, viewer, stack.start).is_some()
                    && domains::access_in_view(kernel, viewer, stack.end - 8).is_some()
            })
            .count();
        Some((thread, stack, guard, unmapped, mapped))
    });
    let (thread, stack, guard, unmapped, mapped) = made.ok_or("could not start a thread in probe.kernel-stack")?;
    kprintln!(
        "thread {} of probe.kernel-stack: kernel stack 0x{:x}..0x{:x}, guard page 0x{:x} unmapped in {} of 4 views (the kernel's, hello.ping's, hello.pong's, the probe's), the stack mapped in {}",
        thread.get(),
        stack.start,
        stack.end,
        guard,
        unmapped,
        mapped
    );
    if unmapped != 4 || mapped != 4 {
        return Err(format!("guard page unmapped in {unmapped} views, stack mapped in {mapped}: wanted 4 and 4"));
    }
    let result = tern_aarch64::threads::join(thread);
    Err(format!("thread {} ended ({result:?}) instead of overflowing its kernel stack", thread.get()))
}

fn demo() -> ! {
    let result = (|| -> Verdict {
        let ping = create("hello.ping")?;
        let pong = create("hello.pong")?;
        ping_pong(ping, pong, 1..=2)
    })();
    if let Err(reason) = result {
        kprintln!("demo: {}", reason);
    }
    kprintln!("demo: one tick line a second (Ctrl-A X leaves QEMU)");
    tern_aarch64::kernel::tick_forever()
}
