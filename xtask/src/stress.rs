//! `cargo xtask stress`: the kernel's `stress` and `reuse` scenarios, long.
//!
//! `cargo xtask test` boots both scenarios short (their defaults: 1,000
//! stress operations, 300 domains made and terminated). This boots the
//! board's harness image twice per board with `tern.rounds=N`: the stress
//! scenario (`--rounds N`, 100,000 operations unless told otherwise) and
//! the reuse scenario (10,000 domains and 100,000 threads). It prints the
//! summary lines each scenario prints (`stress: ...`, `reuse: ...`) and
//! its verdict; a failed run also gets its whole output, and the command
//! exits non-zero if any run failed. Without `--board` it runs on both
//! boards, virt first.
//!
//! What it leaves out: choosing the seed (the scenario has one, printed),
//! and running the two scenarios in parallel (each boot already keeps a
//! host core busy; one after the other, a failure is easy to read).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::qemu::{self, RunOutput};
use crate::{Board, ImageKind, build_image, install};

/// Stress operations unless `--rounds` says otherwise.
pub const STRESS_ROUNDS: u64 = 100_000;
/// Domains the reuse scenario makes and terminates (ten threads each).
pub const REUSE_ROUNDS: u64 = 10_000;

/// `cargo xtask stress` usage (also in `cargo xtask help`).
pub const USAGE: &str = "\
usage: cargo xtask stress [--board virt|rpi4] [--rounds N] [--release]

Boots the harness image with tern.scenario=stress tern.rounds=N (default 100000)
and then tern.scenario=reuse tern.rounds=10000, on the given board (default: both,
virt first); prints their summary lines and verdicts; exits non-zero on a failure.
";

/// What `cargo xtask stress` was asked.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// The boards, in order.
    pub boards: Vec<Board>,
    /// Stress operations.
    pub rounds: u64,
    /// Boot release images.
    pub release: bool,
}

/// Parse `cargo xtask stress`'s arguments (`--flag value` or
/// `--flag=value`).
pub fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options { boards: vec![Board::Virt, Board::Rpi4], rounds: STRESS_ROUNDS, release: false };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || match inline.clone() {
            Some(value) => Ok(value),
            None => args.next().cloned().with_context(|| format!("`{flag}` needs a value")),
        };
        match flag {
            "--board" => {
                let name = value()?;
                let board =
                    Board::from_name(&name).with_context(|| format!("unknown board `{name}` (rpi4 or virt)"))?;
                options.boards = vec![board];
            }
            "--rounds" => {
                let text = value()?;
                options.rounds = text
                    .parse::<u64>()
                    .ok()
                    .filter(|&rounds| (1..=u64::from(u32::MAX)).contains(&rounds))
                    .with_context(|| format!("`--rounds` needs a positive whole number, not `{text}`"))?;
            }
            "--release" if inline.is_none() => options.release = true,
            _ => bail!("unexpected argument `{arg}`\n{USAGE}"),
        }
    }
    Ok(options)
}

/// How long a run of `scenario` with `rounds` may take: generous (a slow
/// host, a debug image), so that only a hang hits it.
pub fn timeout(scenario: &str, rounds: u64) -> Duration {
    let per_round = if scenario == "reuse" { Duration::from_millis(30) } else { Duration::from_millis(5) };
    Duration::from_secs(300) + per_round * u32::try_from(rounds).unwrap_or(u32::MAX)
}

/// The lines of `output` that summarise `scenario`: those it prints about
/// itself (`NAME: ...`) and its verdict (`scenario NAME: ...`).
pub fn summary<'a>(output: &'a str, scenario: &str) -> Vec<&'a str> {
    let own = format!("{scenario}: ");
    let verdict = format!("scenario {scenario}: ");
    output
        .lines()
        .filter(|line| line.starts_with(&own) || (line.starts_with(&verdict) && !line.ends_with(": start")))
        .collect()
}

/// Whether the run passed: exit status 0 and the scenario's PASS line.
pub fn passed(run: &RunOutput, scenario: &str) -> bool {
    let pass = format!("scenario {scenario}: PASS");
    !run.timed_out && run.status == Some(0) && run.output.lines().any(|line| line == pass)
}

/// `cargo xtask stress ARGS`.
pub fn main(args: &[String]) -> Result<ExitCode> {
    let options = parse(args)?;
    install::ensure_qemu_for(&options.boards)?;
    let mut failed = Vec::new();
    for &board in &options.boards {
        let image = build_image(board, ImageKind::Harness, options.release)?;
        for (scenario, rounds) in [("stress", options.rounds), ("reuse", REUSE_ROUNDS)] {
            let limit = timeout(scenario, rounds);
            println!("\n==> {board}: {scenario}, tern.rounds={rounds} (timeout {} s)", limit.as_secs());
            let cmdline = format!("{} tern.rounds={rounds}", qemu::harness_cmdline(scenario));
            let started = Instant::now();
            let run = qemu::run_captured(&image, &cmdline, limit)?;
            for line in summary(&run.output, scenario) {
                println!("{line}");
            }
            let ok = passed(&run, scenario);
            if !ok {
                eprint!("{run}");
                failed.push(format!("{board} {scenario}"));
            }
            let verdict = if ok { "PASS" } else { "FAIL" };
            println!("{board} {scenario}: {verdict} ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    if failed.is_empty() {
        println!("\nstress: all runs passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nstress: failed: {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_are_both_boards_and_the_long_run() {
        let options = parse(&[]).unwrap();
        assert_eq!(options, Options { boards: vec![Board::Virt, Board::Rpi4], rounds: STRESS_ROUNDS, release: false });
    }

    #[test]
    fn flags_both_ways() {
        let options = parse(&args("--board rpi4 --rounds=2500 --release")).unwrap();
        assert_eq!(options, Options { boards: vec![Board::Rpi4], rounds: 2500, release: true });
        let options = parse(&args("--board=virt --rounds 7")).unwrap();
        assert_eq!((options.boards, options.rounds), (vec![Board::Virt], 7));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "--board pi5",
            "--board",
            "--rounds 0",
            "--rounds -1",
            "--rounds many",
            "--rounds 99999999999",
            "--release=1",
            "--seed 3",
            "stray",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_summary_is_the_scenarios_own_lines_and_verdict() {
        let output = "Tern 0.1\nscenario stress: start\nstress: calls: 5 issued\n[stress.client] noise\n\
                      reuse: not this one\nstress: kernel invariants back where they began\nscenario stress: PASS\n";
        assert_eq!(
            summary(output, "stress"),
            ["stress: calls: 5 issued", "stress: kernel invariants back where they began", "scenario stress: PASS"]
        );
        assert_eq!(summary(output, "reuse"), ["reuse: not this one"]);
    }

    #[test]
    fn a_run_passes_with_status_zero_and_its_pass_line_only() {
        let run = |status, output: &str, timed_out| RunOutput {
            status,
            output: output.into(),
            timed_out,
            stderr: String::new(),
            command: String::new(),
        };
        assert!(passed(&run(Some(0), "x\nscenario stress: PASS\n", false), "stress"));
        assert!(!passed(&run(Some(1), "scenario stress: FAIL (why)\n", false), "stress"));
        assert!(!passed(&run(Some(0), "scenario reuse: PASS\n", false), "stress"), "another scenario's");
        assert!(!passed(&run(None, "scenario stress: PASS\n", true), "stress"), "timed out");
        assert!(!passed(&run(Some(0), "no verdict\n", false), "stress"));
    }

    #[test]
    fn timeouts_grow_with_the_rounds() {
        assert!(timeout("stress", STRESS_ROUNDS) > timeout("stress", 1000));
        assert!(timeout("reuse", REUSE_ROUNDS) > timeout("reuse", 300));
        assert!(timeout("stress", 1) >= Duration::from_secs(300));
    }
}
