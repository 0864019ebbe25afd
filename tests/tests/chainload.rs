//! Chainload tests: the serial loader and `cargo xtask push`'s sender,
//! end to end in QEMU `raspi4b`.
//!
//! Each test boots the loader image (`tern-chainload.img`) as QEMU's
//! kernel, with its UART on a TCP socket the test listens on, semihosting
//! on and a harness command line (which QEMU passes in the ATAG list at
//! `x0` and the loader must hand on unchanged for the kernel to see it);
//! then it pushes the rpi4 harness image through the socket with
//! `xtask::chainload::send`, the code `cargo xtask push` uses, and reads
//! the kernel's output like a boot test. The verdict is QEMU's exit status
//! through semihosting, so a kernel that did not start, or started without
//! its command line, fails.
//!
//! `scenario_passes_after_a_push` pushes once; `a_corrupted_transfer_is_refused_and_retried`
//! flips a payload byte on the first attempt and checks the loader reported
//! the CRC mismatch, the sender tried again and the kernel then ran.
//!
//! What it leaves out: real hardware and line noise (a byte flipped on
//! purpose is the only fault), and timeouts mid-transfer (the loader's
//! 2 s byte timeout would make a slow test; `xtask::chainload`'s unit tests
//! cover the sender's handling of it against a fake loader:
//! `a_timeout_verdict_is_retried` and
//! `a_lost_header_acceptance_costs_one_attempt_and_its_late_timeout_none`,
//! and of a link whose writes time out). Like the boot tests, these need QEMU with
//! `raspi4b` and fail saying so when it is missing.

use std::time::Duration;

use tern_tests::checks;
use tern_tests::{Board, Transcript};
use xtask::chainload::{Progress, QemuPush, Reply, SendOptions, run_in_qemu};
use xtask::qemu::harness_cmdline;

/// A short scenario that passes: the kernel's banner and boot facts.
const SCENARIO: &str = "banner";

fn push(corrupt_attempts: u32) -> QemuPush {
    let options = SendOptions {
        attempts: 3,
        reply_timeout: Duration::from_secs(10),
        request_timeout: Some(Duration::from_secs(20)),
        corrupt_attempts,
    };
    // A push moves the whole harness image (about 0.9 MiB, debug) through
    // QEMU's emulated UART at some tens of KB/s, twice in the corrupted
    // case: three times the boot tests' allowance.
    match run_in_qemu(&harness_cmdline(SCENARIO), &options, tern_tests::timeout() * 3) {
        Ok(push) => push,
        Err(e) => panic!("could not run the chainload test: {e:#}"),
    }
}

/// Fails with the whole run unless the pushed kernel ran the scenario and
/// passed.
fn check_kernel_ran(push: &QemuPush) {
    let run = &push.run;
    let fail = |why: &str| panic!("{why}\n{run}\nprogress: {:?}", push.progress);
    if run.timed_out {
        fail("timed out");
    }
    for needle in [
        "loader: tern-chainload: Tern's serial boot loader at EL2",
        "boot information at 0x00000100",
        "push: the loader has the kernel; starting it",
    ] {
        if !run.output.contains(needle) {
            fail(&format!("the output lacks {needle:?}"));
        }
    }
    // The boot test's own contract for the scenario: the kernel's banner,
    // then its verdict, PASS, and exit status 0 (which it gives only if the
    // command line, `tern.harness=1 tern.scenario=banner`, reached it).
    checks::banner(&Transcript::new(Board::Rpi4, SCENARIO, run.clone()));
}

#[test]
fn scenario_passes_after_a_push() {
    let push = push(0);
    check_kernel_ran(&push);
    let failures: Vec<_> = push.progress.iter().filter(|p| matches!(p, Progress::Failed(_))).collect();
    assert!(failures.is_empty(), "a clean push had failures: {failures:?}\n{}", push.run);
}

#[test]
fn a_corrupted_transfer_is_refused_and_retried() {
    let push = push(1);
    check_kernel_ran(&push);
    let run = &push.run;
    assert!(
        run.output.contains("loader: tern-chainload: the payload's CRC-32 does not match the header's (header 0x"),
        "the loader did not report the CRC mismatch\n{run}"
    );
    assert!(push.progress.contains(&Progress::Failed(Reply::CrcMismatch)), "{:?}", push.progress);
    assert!(push.progress.contains(&Progress::Attempt { attempt: 2, of: 3 }), "no second attempt: {:?}", push.progress);
}
