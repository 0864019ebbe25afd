//! The benchmark's crossings, end to end: a short `cargo xtask bench` run
//! (20 repetitions per figure, the tests' image profile) with the QEMU
//! plugin loaded, through the same `xtask::bench::boot` the command uses.
//!
//! It checks what the crossings promise, not what they amount to: every
//! figure's JSON record carries its crossings; the plugin's instructions
//! per call equal the PMU's for every whole-call figure; the null `svc`
//! floor crosses exactly one exception and one `eret` per call (that is
//! what it is); every Null stage table sums to its window and matches the
//! PMU. The crossings of the RPC paths themselves are reported by the
//! benchmark, not asserted here: they change with the kernel.
//!
//! The same run includes the macro benchmark `build`: every configuration
//! reported, the same checksum in each, every count non-zero.
//!
//! And the `calibrate` scenario prints its costs in `--cost` syntax (the
//! figures themselves mean nothing under QEMU).
//!
//! What it leaves out: the rpi4 board (the plugin and the markers are the
//! same on both; one short boot keeps `cargo xtask test` quick).

use std::time::Duration;

use xtask::Board;
use xtask::bench::{self, MIGRATING_PROTECTED, PROTECTED};

#[test]
fn virt_bench_counts_crossings_for_every_figure() {
    xtask::qemu::installed().expect("QEMU");
    let run = bench::boot(Board::Virt, xtask::qemu::release_from_env(), Some(20)).unwrap_or_else(|e| panic!("{e:#}"));
    print!("{}", xtask::crossings::render(&run.report, &run.crossings, None));
    print!("{}", xtask::stages::render(&run.stages));
    let records = bench::json_records(&run.report, Board::Virt, Some(&run.crossings));
    let figures: Vec<&serde_json::Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["test"] != bench::INVERSION_TEST && r["test"] != bench::BUILD_TEST)
        .collect();
    assert_eq!(figures.len(), run.report.measurements.len());
    for record in &figures {
        for field in xtask::crossings::FIELDS {
            assert!(record["crossings"][field].is_u64(), "no crossings.{field} in {record}");
        }
        if record["scope"] == "whole" {
            assert_eq!(record["crossings"]["instructions"], record["median"], "{record}");
        }
    }
    let svc = figures
        .iter()
        .find(|r| r["path"] == "floor-svc" && r["mode"] == PROTECTED && r["test"] == "null" && r["scope"] == "whole")
        .expect("a floor-svc Null figure");
    assert_eq!(svc["crossings"]["exceptions"], 1, "{svc}");
    assert_eq!(svc["crossings"]["erets"], 1, "{svc}");
    assert!(svc["crossings"].get("exceptions_max").is_none(), "min ≠ max: {svc}");
    assert!(run.stages.iter().any(|t| t.path == MIGRATING_PROTECTED), "no stage table for the migrating path");
    for table in &run.stages {
        assert_eq!(table.total, table.pmu, "{} {}: {}", table.path, table.mode, table.check());
    }
    // The macro benchmark ran in every configuration, built the same
    // output, and counted under -icount.
    assert_eq!(run.report.builds.len(), bench::BUILD_CONFIGS.len());
    for build in &run.report.builds {
        assert_eq!(build.checksum, run.report.builds[0].checksum, "{build:?}");
        assert!(build.instructions > 0 && build.ticks > 0 && build.copies > 0 && build.calls() > 0, "{build:?}");
    }
}

#[test]
fn virt_calibrate_prints_costs() {
    let run = xtask::run_scenario(Board::Virt, bench::CALIBRATE_SCENARIO, Duration::from_secs(60)).expect("boot");
    assert_eq!(run.status, Some(0), "{run}");
    let lines = bench::calibrate_lines(&run.output).unwrap_or_else(|why| panic!("{why}\n{run}"));
    assert_eq!(lines.iter().filter(|l| l.starts_with("CALIBRATE cost=")).count(), 6, "{run}");
}
