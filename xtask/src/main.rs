//! `cargo xtask`: the command line over the xtask library.
//!
//! ```text
//! cargo xtask build  [--board rpi4|virt] [--release] [--harness] | --loader [--release]
//! cargo xtask qemu   [--board rpi4|virt] [--release] [--gdb] [--scenario NAME]
//!                    [--harness] [--append ARGS] [--locations]
//! cargo xtask test   [--release]
//! cargo xtask bench  [--board virt|rpi4] [--json PATH] [--svg PATH] [--repetitions N]
//!                    [--cost exception=N,eret=N,ttbr=N,isb=N,tlbi=N[,daif=N]] | --calibrate
//! cargo xtask fuzz   [--board virt|rpi4] [--seed N] [--calls M] [--count K] [--mode M]
//!                    [--trace] [--release] [--timeout S] [--verbose]
//! cargo xtask stress [--board virt|rpi4] [--rounds N] [--release]
//! cargo xtask sdcard [--out PATH] [--device /dev/sdX] [--firmware DIR] [--release]
//!                    [--append ARGS] [--chainload]
//! cargo xtask push    [--device /dev/ttyUSB0] [--baud N] [--release] [--harness]
//! cargo xtask console [--device /dev/ttyUSB0] [--baud N] [--release] [--harness]
//! cargo xtask lint
//! cargo xtask install-qemu
//! ```
//!
//! Each board has two images (`xtask::ImageKind`): the *production* image
//! (`kernel8.img`, `tern-virt.img`: the kernel and the production servers,
//! what a person flashes or boots) and the *harness* image
//! (`kernel8-harness.img`, `tern-virt-harness.img`: that plus the test
//! servers, scenarios and benchmark).
//!
//! `build` builds one board's production image (rpi4 by default), or its
//! harness image with `--harness`, and prints where the ELF and the raw
//! image are and the raw image's size; `build --loader` builds the serial
//! chainloader instead (`tern-chainload.img`, see `docs/chainload.md`).
//! `qemu` builds and boots an image
//! with the console on the terminal: the production image, unless
//! `--harness` or `--scenario` asks for the harness image (scenarios live
//! there only); without `--board` it picks rpi4 when the installed QEMU has
//! `raspi4b`, else virt. `--scenario NAME` passes `tern.scenario=NAME` to
//! the kernel; `--harness` also passes `tern.harness=1` and enables
//! semihosting, so the kernel ends QEMU with its verdict (which becomes
//! this command's exit status). `test` is everything CI checks, in order,
//! stopping at the first failure (its images step builds all four images,
//! both kinds for both boards, and the boot tests boot the harness
//! images); `lint` is its first two steps. `install-qemu` installs QEMU >=
//! 9.0 if it is missing or too old (CI calls it).
//!
//! `bench` (virt by default) builds the release harness image, boots the
//! kernel's `bench` scenario under `-icount shift=0` on one core, and
//! prints its instruction counts as the paper's Tables 1 and 3 with the
//! targets beside them; `--json PATH` also writes them as JSON records,
//! `--svg PATH` as a bar chart of the whole-call medians (either or both),
//! `--repetitions N` passes `tern.bench.repetitions=N` (otherwise the
//! kernel chooses). It also loads the crossings plugin and prints each
//! figure's crossings and every path's measured Null stage table;
//! `--cost C` adds modeled cycles; `--calibrate` boots the `calibrate`
//! scenario instead. It fails when the run fails, never because a target
//! was missed (see `docs/bench.md`).
//!
//! `sdcard` builds the rpi4 production image and writes a bootable SD-card
//! image with it (default `target/tern-sdcard.img`, 64 MiB: an MBR and one
//! FAT32 partition holding the Pi 4 firmware, the device tree when one can
//! be had, `config.txt`, `cmdline.txt` with `--append`'s arguments, and
//! `kernel8.img`; with `--chainload` the serial chainloader takes the
//! kernel's place), without root (`xtask::sdcard`). The firmware comes from
//! `--firmware DIR`, else from Debian's `raspi-firmware` package through a
//! private apt cached under `target/` (`xtask::firmware`). `--device
//! /dev/sdX` then writes the image to a card, after checks that refuse
//! anything but an unmounted removable whole disk (the write itself opens
//! it exclusively) and a confirmation typed at the terminal, and reads it
//! back past the page cache (`xtask::card_device`).
//! `push` and `console` talk to a Raspberry Pi 4 over a USB serial adapter
//! (`--device`, default `/dev/ttyUSB0`; `--baud`, default 115200). `push`
//! builds the rpi4 kernel (production, or the harness image with
//! `--harness`; the command line comes from the card's `cmdline.txt`, so
//! there is no `--scenario`), waits for the chainloader on the Pi, sends
//! the kernel (retrying after a CRC error) and becomes the console.
//! `console` is that console alone: raw terminal, keys to the Pi, defmt
//! frames decoded with the ELF of the image named by `--release` and
//! `--harness`; Ctrl-] quits (see `xtask::serial`, `xtask::terminal`).
//!
//! `fuzz` (virt by default) builds the harness image and boots the kernel's
//! `fuzz` scenario with `tern.fuzz.seed=N tern.fuzz.calls=M` (default seed
//! 1, 100 000 calls), for `--count K` seeds from N on, and prints each
//! seed's result histogram, rate, invariants and verdict (see
//! `xtask::fuzz`); it fails if any seed failed.
//!
//! The arguments are parsed by hand: eleven subcommands and a few flags do
//! not justify clap's compile time on a two-core machine, and the parser
//! below still gives `--flag value` and `--flag=value`, errors for unknown
//! flags, and `help`.
//!
//! What it leaves out: shell completions, listing serial devices (`push`
//! and `console` take `--device`), and any configuration file. Environment knobs, for the record: `DEFMT_LOG`
//! (default `info`), `TERN_RELEASE` (tests boot release images),
//! `TERN_QEMU_JOBS` (parallel QEMUs in tests).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use xtask::qemu::{self, Launch};
use xtask::{Board, ImageKind, build_image, cargo, install, workspace_root};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build         build a kernel image      [--board rpi4|virt] [--release] [--harness]
                or the serial chainloader (tern-chainload.img)   --loader [--release]
  qemu          build and boot in QEMU    [--board rpi4|virt] [--release] [--gdb]
                                          [--scenario NAME] [--harness] [--append ARGS]
                                          [--locations]
  test          fmt, clippy, unit tests, all four images, QEMU tests   [--release]
  bench         release harness image, QEMU -icount, instruction counts as a table
                                          [--board virt|rpi4] [--json PATH]
                                          [--svg PATH] [--repetitions N]
                                          [--cost exception=N,eret=N,ttbr=N,isb=N,tlbi=N[,daif=N]]
                or: the per-crossing costs, measured   --calibrate [--board virt|rpi4]
  fuzz          harness image, the kernel-call fuzzer: histograms, rate, invariants
                                          [--board virt|rpi4] [--seed N] [--calls M]
                                          [--count K] [--mode protected|merged|both]
                                          [--trace] [--release] [--timeout S] [--verbose]
  stress        the stress and reuse scenarios, long (default: 100000 stress
                operations, 10000 domains; both boards)  [--board virt|rpi4]
                                          [--rounds N] [--release]
  sdcard        a bootable Raspberry Pi 4 SD-card image: the production kernel, or
                the serial chainloader with --chainload
                                          [--out PATH] [--device /dev/sdX]
                                          [--firmware DIR] [--release] [--append ARGS]
                                          [--chainload]
  push          send the rpi4 kernel to the chainloader over a serial cable, then be
                its console       [--device DEV] [--baud N] [--release] [--harness]
  console       serial console to a Pi 4: defmt decoded, Ctrl-] quits
                                  [--device DEV] [--baud N] [--release] [--harness]
  lint          fmt and clippy only
  install-qemu  install QEMU >= 9.0 (machine raspi4b) if needed
  help          this text

images: each board has a production image (the kernel and its production servers:
kernel8.img, tern-virt.img) and a harness image (plus test servers, scenarios and the
benchmark: kernel8-harness.img, tern-virt-harness.img). build and qemu use the
production image unless --harness (or, for qemu, --scenario) is given.

options:
  --board B       rpi4 or virt (default: rpi4; for qemu, virt if QEMU lacks raspi4b;
                  for bench, virt)
  --release       build with the release profile
  --gdb           start halted with a gdb stub on :1234
  --scenario N    boot the harness image with tern.scenario=N on the kernel command line
  --harness       (build) the harness image instead of the production one;
                  (qemu) boot the harness image with tern.harness=1 and semihosting:
                  the kernel exits QEMU with 0 pass, 1 fail, 2 panic, 3 EL1 fault
  --append ARGS   more kernel command-line arguments (sdcard: the card's cmdline.txt)
  --locations     show the source location of each defmt log line
  --json PATH     (bench) also write the figures as JSON records to PATH
  --svg PATH      (bench) also write the whole-call medians as an SVG bar chart to PATH
  --repetitions N (bench) add tern.bench.repetitions=N (default: the kernel's)
  --cost C        (bench) add a modeled-cycles column: instructions + crossings x cost,
                  C = exception=N,eret=N,ttbr=N,isb=N,tlbi=N[,daif=N] (cycles; no defaults)
  --calibrate     (bench) boot the calibrate scenario instead: per-crossing costs in
                  --cost syntax, measured with PMCCNTR_EL0 (cycles on a Pi 4 only)
  --seed N        (fuzz) the first seed (default 1)
  --calls M       (fuzz) kernel calls per seed (default 100000)
  --count K       (fuzz) run K seeds, N to N+K-1 (default 1)
  --mode M        (fuzz) fuzz from a protected domain, a merged one, or both (default)
  --trace         (fuzz) print every call the fuzzer makes (slow)
  --timeout S     (fuzz) seconds per seed (default: 60 + calls / 4000)
  --verbose       (fuzz) print every FUZZ- line (per-call counts, RPC paths, watchdog)
  --out PATH      (sdcard) where to write the image (default target/tern-sdcard.img)
  --device DEV    (sdcard) also write it to the card DEV (a whole disk, e.g. /dev/sdb),
                  after checks and a typed confirmation; refuses mounted, system and
                  non-removable disks and partitions
  --firmware DIR  (sdcard) take start4.elf, fixup4.dat (and bcm2711-rpi-4-b.dtb) from
                  DIR, e.g. the boot/ folder of the Raspberry Pi firmware release;
                  default: Debian's raspi-firmware package, fetched once into target/
  --chainload     (sdcard) put the serial chainloader on the card instead of the kernel;
                  then `cargo xtask push` sends kernels over the cable
  --loader        (build) build the serial chainloader instead of a kernel
  --device DEV    (push, console) the serial device (default /dev/ttyUSB0)
  --baud N        (push, console) line speed (default 115200, the chainloader's)
  --harness       (push, console) also: push the harness image / decode with its ELF;
                  the scenario comes from cmdline.txt on the card
";

/// The flags `build` accepts.
const BUILD_FLAGS: &[&str] = &["--board", "--release", "--harness", "--loader"];
/// The flags `push` and `console` accept.
const SERIAL_FLAGS: &[&str] = &["--device", "--baud", "--release", "--harness"];
/// The flags `qemu` accepts.
const QEMU_FLAGS: &[&str] = &["--board", "--release", "--gdb", "--scenario", "--harness", "--append", "--locations"];
/// The flags `bench` accepts.
const BENCH_FLAGS: &[&str] = &["--board", "--json", "--svg", "--repetitions", "--cost", "--calibrate"];
/// The flags `fuzz` accepts.
const FUZZ_FLAGS: &[&str] =
    &["--board", "--seed", "--calls", "--count", "--mode", "--trace", "--release", "--timeout", "--verbose"];

/// The flags `sdcard` accepts.
const SDCARD_FLAGS: &[&str] = &["--out", "--device", "--firmware", "--release", "--append", "--chainload"];

/// Parsed options; which ones a command accepts is checked per command.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    board: Option<Board>,
    release: bool,
    gdb: bool,
    scenario: Option<String>,
    harness: bool,
    append: Option<String>,
    locations: bool,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    repetitions: Option<u64>,
    cost: Option<xtask::crossings::Costs>,
    calibrate: bool,
    seed: Option<u64>,
    calls: Option<u64>,
    count: Option<u64>,
    mode: Option<String>,
    trace: bool,
    timeout: Option<u64>,
    verbose: bool,
    out: Option<PathBuf>,
    firmware: Option<PathBuf>,
    chainload: bool,
    loader: bool,
    device: Option<String>,
    baud: Option<u32>,
}

/// Parse `value` of `flag` as a whole number, at least `least`.
fn number(flag: &str, value: &str, least: u64) -> Result<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= least)
        .with_context(|| format!("`{flag}` needs a whole number of at least {least}, not `{value}`"))
}

/// Parses the options after the subcommand; `allowed` lists the flags the
/// subcommand accepts.
fn parse_options(args: &[String], allowed: &[&str]) -> Result<Options> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if !allowed.contains(&flag) {
            bail!("unexpected argument `{arg}` (see `cargo xtask help`)");
        }
        let takes_value = matches!(
            flag,
            "--board"
                | "--scenario"
                | "--append"
                | "--json"
                | "--svg"
                | "--repetitions"
                | "--cost"
                | "--seed"
                | "--calls"
                | "--count"
                | "--mode"
                | "--timeout"
                | "--out"
                | "--device"
                | "--firmware"
                | "--baud"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => args.next().cloned().with_context(|| format!("`{flag}` needs a value"))?,
            }
        } else {
            if inline.is_some() {
                bail!("`{flag}` takes no value");
            }
            String::new()
        };
        match flag {
            "--board" => {
                opts.board =
                    Some(Board::from_name(&value).with_context(|| format!("unknown board `{value}` (rpi4 or virt)"))?)
            }
            "--release" => opts.release = true,
            "--gdb" => opts.gdb = true,
            "--scenario" => opts.scenario = Some(value),
            "--harness" => opts.harness = true,
            "--append" => opts.append = Some(value),
            "--locations" => opts.locations = true,
            "--json" => opts.json = Some(PathBuf::from(value)),
            "--svg" => opts.svg = Some(PathBuf::from(value)),
            "--repetitions" => {
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("`--repetitions` needs a positive whole number, not `{value}`"))?;
                opts.repetitions = Some(n);
            }
            "--cost" => {
                opts.cost = Some(
                    xtask::crossings::parse_costs(&value).map_err(|why| anyhow::anyhow!("`--cost {value}`: {why}"))?,
                )
            }
            "--calibrate" => opts.calibrate = true,
            "--seed" => opts.seed = Some(number(flag, &value, 0)?),
            "--calls" => opts.calls = Some(number(flag, &value, 1)?),
            "--count" => opts.count = Some(number(flag, &value, 1)?),
            "--timeout" => opts.timeout = Some(number(flag, &value, 1)?),
            "--mode" => {
                if !matches!(value.as_str(), "protected" | "merged" | "both") {
                    bail!("`--mode` is protected, merged or both, not `{value}`");
                }
                opts.mode = Some(value);
            }
            "--trace" => opts.trace = true,
            "--verbose" => opts.verbose = true,
            "--out" => opts.out = Some(PathBuf::from(value)),
            "--firmware" => opts.firmware = Some(PathBuf::from(value)),
            "--chainload" => opts.chainload = true,
            "--loader" => opts.loader = true,
            "--device" => opts.device = Some(value),
            "--baud" => {
                let baud = number(flag, &value, 50)?;
                opts.baud = Some(u32::try_from(baud).with_context(|| format!("`--baud {value}` is too large"))?);
            }
            _ => unreachable!("flag {flag} is allowed but not handled"),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::from(2));
    };
    match command.as_str() {
        "build" => build(parse_options(rest, BUILD_FLAGS)?),
        "qemu" => run_qemu(parse_options(rest, QEMU_FLAGS)?),
        "test" => test(parse_options(rest, &["--release"])?.release, true),
        "bench" => {
            let opts = parse_options(rest, BENCH_FLAGS)?;
            let board = opts.board.unwrap_or(Board::Virt);
            if opts.calibrate {
                if opts.json.is_some() || opts.svg.is_some() || opts.repetitions.is_some() || opts.cost.is_some() {
                    bail!("`--calibrate` takes only `--board`");
                }
                xtask::bench::calibrate(board)?;
                return Ok(ExitCode::SUCCESS);
            }
            let outputs = xtask::bench::Outputs { json: opts.json.as_deref(), svg: opts.svg.as_deref() };
            xtask::bench::run(board, outputs, opts.repetitions, opts.cost.as_ref())?;
            Ok(ExitCode::SUCCESS)
        }
        "fuzz" => {
            let opts = parse_options(rest, FUZZ_FLAGS)?;
            let request = xtask::fuzz::Request {
                board: opts.board.unwrap_or(Board::Virt),
                seed: opts.seed.unwrap_or(1),
                calls: opts.calls.unwrap_or(xtask::fuzz::DEFAULT_CALLS),
                mode: opts.mode,
                trace: opts.trace,
                release: opts.release,
                count: opts.count.unwrap_or(1),
                timeout: opts.timeout.map(std::time::Duration::from_secs),
                verbose: opts.verbose,
            };
            let passed = xtask::fuzz::run(&request)?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        "stress" => xtask::stress::main(rest),
        "sdcard" => sdcard(parse_options(rest, SDCARD_FLAGS)?),
        "push" | "console" => serial(command, parse_options(rest, SERIAL_FLAGS)?),
        "lint" => {
            parse_options(rest, &[])?;
            test(false, false)
        }
        "install-qemu" => {
            parse_options(rest, &[])?;
            let info = install::ensure_qemu()?;
            println!("QEMU {} ok (raspi4b: {})", info.version_string(), if info.raspi4b { "yes" } else { "no" });
            Ok(ExitCode::SUCCESS)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
}

/// Which image `build` and `qemu` use: the harness image when `--harness`
/// or `--scenario` asks for it (scenarios belong to the harness image),
/// else the production image.
fn image_kind(opts: &Options) -> ImageKind {
    if opts.harness || opts.scenario.is_some() { ImageKind::Harness } else { ImageKind::Production }
}

/// The profile's name, for messages.
fn profile(release: bool) -> &'static str {
    if release { "release" } else { "debug" }
}

fn build(opts: Options) -> Result<ExitCode> {
    if opts.loader {
        if opts.board.is_some() || opts.harness {
            bail!("`--loader` takes only `--release` (the chainloader is for the Pi 4 alone)");
        }
        let loader = xtask::chainload::build(opts.release)?;
        println!("rpi4 serial chainloader ({})", profile(opts.release));
        println!("elf:   {}", loader.elf.display());
        println!("image: {} ({} bytes)", loader.raw.display(), loader.size);
        return Ok(ExitCode::SUCCESS);
    }
    let board = opts.board.unwrap_or(Board::Rpi4);
    let kind = image_kind(&opts);
    let image = build_image(board, kind, opts.release)?;
    println!("{board} {kind} image ({})", profile(opts.release));
    println!("elf:   {}", image.elf.display());
    println!("image: {} ({} bytes)", image.raw.display(), image.size);
    Ok(ExitCode::SUCCESS)
}

fn run_qemu(opts: Options) -> Result<ExitCode> {
    let info = install::ensure_qemu()?;
    let board = match opts.board {
        Some(board) => {
            if !info.supports(board) {
                bail!("QEMU {} has no machine raspi4b; install QEMU >= 9.0 or use --board virt", info.version_string());
            }
            board
        }
        None if info.raspi4b => Board::Rpi4,
        None => {
            eprintln!("note: QEMU {} has no raspi4b machine: booting board virt", info.version_string());
            Board::Virt
        }
    };
    let kind = image_kind(&opts);
    let image = build_image(board, kind, opts.release)?;
    let mut cmdline = Vec::new();
    if opts.harness {
        cmdline.push("tern.harness=1".to_string());
    }
    if let Some(scenario) = &opts.scenario {
        cmdline.push(format!("tern.scenario={scenario}"));
    }
    cmdline.extend(opts.append.clone());
    let launch = Launch {
        board,
        image: &image.raw,
        cmdline: cmdline.join(" "),
        semihosting: opts.harness,
        gdb: opts.gdb,
        interactive: true,
    };
    if opts.gdb {
        eprintln!("QEMU starts halted; attach with: gdb-multiarch {} -ex 'target remote :1234'", image.elf.display());
    }
    eprintln!("booting the {board} {kind} image (Ctrl-A X quits QEMU, Ctrl-A H lists the other keys)");
    let status = qemu::run_interactive(&launch, &image.elf, opts.locations)?;
    match status.code() {
        Some(code) if opts.harness => {
            eprintln!("QEMU exited with {code}: {}", qemu::verdict(code));
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)))
        }
        Some(0) => Ok(ExitCode::SUCCESS),
        Some(code) => {
            eprintln!("QEMU exited with {code}");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)))
        }
        None => {
            eprintln!("QEMU was killed ({status})");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `sdcard`: firmware, production kernel, image, and (with `--device`) the
/// card.
fn sdcard(opts: Options) -> Result<ExitCode> {
    use xtask::{card_device, firmware, sdcard};
    let out = opts.out.clone().unwrap_or_else(|| workspace_root().join("target").join("tern-sdcard.img"));
    let cmdline = sdcard::cmdline_txt(opts.append.as_deref())?;
    // The device is checked before the slow steps, so a wrong one fails at
    // once; it is checked again just before writing.
    let device = opts.device.as_deref().map(std::path::Path::new);
    if let Some(device) = device {
        let name = card_device::device_name(device)?;
        card_device::check(&name, &card_device::SystemView::read()?, sdcard::IMAGE_SIZE)?;
    }
    let firmware = firmware::gather(opts.firmware.as_deref(), &firmware::cache_dir())?;
    // The kernel file: the production image, or with `--chainload` the
    // serial chainloader that receives kernels from `cargo xtask push`.
    let (kernel_path, kernel_what) = if opts.chainload {
        (xtask::chainload::build_loader(opts.release)?, "the serial chainloader: `cargo xtask push` sends the kernel")
    } else {
        (build_image(Board::Rpi4, ImageKind::Production, opts.release)?.raw, "rpi4 production image")
    };
    let kernel = std::fs::read(&kernel_path).with_context(|| format!("reading {}", kernel_path.display()))?;
    let files = sdcard::CardFiles {
        start: firmware.start,
        fixup: firmware.fixup,
        device_tree: firmware.device_tree,
        kernel,
        config: sdcard::config_txt(),
        cmdline,
    };
    sdcard::write_card_image(&out, &files)?;
    let bytes = std::fs::read(&out).with_context(|| format!("reading {} back", out.display()))?;
    let contents = sdcard::read_card_image(&bytes)?;
    for (name, expected) in files.entries() {
        if contents.file(name) != Some(expected) {
            bail!("{} does not read back {name} as written", out.display());
        }
    }
    println!("SD card image: {} ({} bytes)", out.display(), bytes.len());
    println!(
        "  partition 1: FAT32 ({:?}, {}-byte clusters), type 0x{:02x}, sectors {}..{}",
        contents.fat_type,
        contents.cluster_size,
        sdcard::PARTITION_TYPE,
        sdcard::PARTITION_START,
        sdcard::PARTITION_START + contents.partitions[0].sectors
    );
    for (name, bytes) in files.entries() {
        println!("  {name:<21} {:>9} bytes", bytes.len());
    }
    println!("firmware:    {}", firmware.source);
    println!("device tree: {}", firmware.device_tree_source);
    if files.device_tree.is_none() {
        println!(
            "note: no {} on the card: the firmware will hand Tern ATAGs instead of a device tree",
            sdcard::DEVICE_TREE_FILE
        );
    }
    println!("kernel:      {} ({}, {kernel_what})", kernel_path.display(), profile(opts.release));
    println!("command line: {:?}", files.cmdline.trim_end());
    match device {
        Some(device) => card_device::write_to_card(device, &out, &bytes)?,
        None => println!(
            "write it to a card with `cargo xtask sdcard --device /dev/sdX`, or: sudo dd if={} of=/dev/sdX bs=4M conv=fsync",
            out.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `push` or `console` over a serial device.
fn serial(command: &str, opts: Options) -> Result<ExitCode> {
    let link = xtask::serial::Link {
        device: opts.device.as_deref().unwrap_or(xtask::serial::DEFAULT_DEVICE),
        baud: opts.baud.unwrap_or(xtask::serial::BAUD),
        release: opts.release,
        kind: image_kind(&opts),
    };
    let ending = if command == "push" { xtask::serial::push(&link)? } else { xtask::serial::console(&link)? };
    Ok(match ending {
        xtask::terminal::Ending::ExitKey => ExitCode::SUCCESS,
        xtask::terminal::Ending::Board(_) => ExitCode::FAILURE,
    })
}

/// Prints a step header.
fn header(step: &str) {
    println!("\n==> {step}");
}

/// Runs cargo with `args` from the workspace root, failing on non-zero.
fn cargo_step(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(cargo())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .context("starting cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The server crates: built for the kernel target and tested on the host.
const SERVER_CRATES: &[&str] = &[
    "tern-names",
    "tern-echo",
    "tern-checksum",
    "tern-kv",
    "tern-fs",
    "tern-console",
    "tern-programs",
    "tern-shell",
    "tern-stresstest",
    "tern-buildbench",
];

/// The kernel crates, checked by clippy for the kernel target (with the
/// servers and `tern-rpctest`).
const KERNEL_CRATES: &[&str] = &[
    "tern-board-rpi4",
    "tern-chainload",
    "tern-board-virt",
    "tern-image",
    "tern-harness",
    "tern-aarch64",
    "tern-inks",
    "tern-hello",
    "tern-core",
    "tern-rpctest",
    "tern-ctltest",
    "tern-fstest",
];

/// The crates with host tests besides the servers: the kernel (on its mock
/// machine), the machine's plain-Rust parts (translation tables,
/// syndromes), the in-kernel-server layer, the tools.
const HOST_TESTED: &[&str] = &["tern-core", "tern-aarch64", "tern-inks", "xtask", "tern-qemu-plugin", "tern-chainload"];

/// `-p NAME` for each of `lists`' crates, after `command`.
fn packages<'a>(command: &[&'a str], lists: &[&[&'a str]]) -> Vec<&'a str> {
    let mut arguments = command.to_vec();
    for name in lists.iter().flat_map(|list| list.iter()) {
        arguments.extend(["-p", name]);
    }
    arguments
}

/// `test` (everything) or `lint` (steps 1 and 2 only).
fn test(release: bool, everything: bool) -> Result<ExitCode> {
    let total = if everything { 6 } else { 2 };
    header(&format!("[1/{total}] formatting"));
    cargo_step(&["fmt", "--all", "--", "--check"], &[])?;

    header(&format!("[2/{total}] clippy"));
    let mut host = packages(&["clippy"], &[HOST_TESTED, SERVER_CRATES, &["tern-tests"]]);
    host.extend(["--all-targets", "--", "-D", "warnings"]);
    cargo_step(&host, &[])?;
    xtask::image::ensure_kernel_target()?;
    let mut kernel = packages(&["clippy", "--target", xtask::image::KERNEL_TARGET], &[KERNEL_CRATES, SERVER_CRATES]);
    kernel.extend(["--", "-D", "warnings"]);
    cargo_step(&kernel, &[])?;
    if !everything {
        println!("\nlint: ok");
        return Ok(ExitCode::SUCCESS);
    }

    header(&format!("[3/{total}] host unit tests"));
    cargo_step(&packages(&["test"], &[HOST_TESTED, SERVER_CRATES]), &[])?;

    header(&format!(
        "[4/{total}] kernel images ({}; production and harness, both boards) and the chainloader",
        profile(release)
    ));
    for board in Board::ALL {
        for kind in ImageKind::ALL {
            let image = build_image(board, kind, release)?;
            println!("{board} {kind}: {} ({} bytes)", image.raw.display(), image.size);
        }
    }
    let loader = xtask::chainload::build(release)?;
    println!("rpi4 chainloader: {} ({} bytes)", loader.raw.display(), loader.size);

    header(&format!("[5/{total}] QEMU"));
    let info = install::ensure_qemu()?;
    println!("QEMU {} (raspi4b: {})", info.version_string(), if info.raspi4b { "yes" } else { "no" });

    header(&format!("[6/{total}] QEMU integration tests (both boards)"));
    let env: &[(&str, &str)] = if release { &[("TERN_RELEASE", "1")] } else { &[] };
    // `--tests`: lib and integration tests, no doc-tests, so the last
    // runner line is the boot tests' own count.
    cargo_step(&["test", "-p", "tern-tests", "--tests"], env)?;

    println!("\ntest: all steps passed");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    const ALL: &[&str] = QEMU_FLAGS;

    #[test]
    fn parses_flags_both_ways() {
        let o = parse_options(&args("--board virt --release --scenario=ticks --gdb"), ALL).unwrap();
        assert_eq!(
            o,
            Options {
                board: Some(Board::Virt),
                release: true,
                gdb: true,
                scenario: Some("ticks".into()),
                ..Options::default()
            }
        );
        let o = parse_options(&["--append".into(), "a=1 b=2".into()], ALL).unwrap();
        assert_eq!(o.append.as_deref(), Some("a=1 b=2"));
        let o = parse_options(&["--append=x=y".into()], ALL).unwrap();
        assert_eq!(o.append.as_deref(), Some("x=y"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_options(&args("--board pi5"), ALL).is_err());
        assert!(parse_options(&args("--board"), ALL).is_err());
        assert!(parse_options(&args("--gdb"), &["--board"]).is_err());
        assert!(parse_options(&args("--release=yes"), ALL).is_err());
        assert!(parse_options(&args("stray"), ALL).is_err());
        assert!(parse_options(&args("--json out.json"), ALL).is_err());
        assert!(parse_options(&args("--svg out.svg"), ALL).is_err());
    }

    #[test]
    fn build_takes_harness_and_nothing_qemu_only() {
        let o = parse_options(&args("--board virt --release --harness"), BUILD_FLAGS).unwrap();
        assert_eq!(o, Options { board: Some(Board::Virt), release: true, harness: true, ..Options::default() });
        assert_eq!(image_kind(&o), ImageKind::Harness);
        let o = parse_options(&args("--board rpi4"), BUILD_FLAGS).unwrap();
        assert_eq!(image_kind(&o), ImageKind::Production);
        for bad in ["--scenario ticks", "--gdb", "--append x=1", "--locations", "--json j", "--harness=1"] {
            assert!(parse_options(&args(bad), BUILD_FLAGS).is_err(), "{bad}");
        }
    }

    #[test]
    fn qemu_boots_production_unless_harness_or_scenario() {
        let kind = |line: &str| image_kind(&parse_options(&args(line), QEMU_FLAGS).unwrap());
        assert_eq!(kind(""), ImageKind::Production);
        assert_eq!(kind("--board virt --release --gdb --append tern.merge=checksum"), ImageKind::Production);
        assert_eq!(kind("--harness"), ImageKind::Harness);
        assert_eq!(kind("--scenario domains"), ImageKind::Harness);
        assert_eq!(kind("--scenario=ticks --harness"), ImageKind::Harness);
    }

    #[test]
    fn parses_serial_flags() {
        let o = parse_options(&args("--device /dev/ttyACM0 --baud=921600 --release --harness"), SERIAL_FLAGS).unwrap();
        assert_eq!(
            o,
            Options {
                device: Some("/dev/ttyACM0".into()),
                baud: Some(921_600),
                release: true,
                harness: true,
                ..Options::default()
            }
        );
        assert_eq!(image_kind(&o), ImageKind::Harness);
        assert_eq!(parse_options(&[], SERIAL_FLAGS).unwrap(), Options::default());
        for bad in ["--baud", "--baud fast", "--baud 0", "--device", "--scenario ticks", "--board rpi4", "--loader"] {
            assert!(parse_options(&args(bad), SERIAL_FLAGS).is_err(), "{bad}");
        }
        let o = parse_options(&args("--loader --release"), BUILD_FLAGS).unwrap();
        assert!(o.loader && o.release);
    }

    #[test]
    fn parses_fuzz_flags() {
        let o = parse_options(
            &args("--board rpi4 --seed 0 --calls=1000000 --count 50 --mode merged --trace --release --timeout 600 --verbose"),
            FUZZ_FLAGS,
        )
        .unwrap();
        assert_eq!(
            o,
            Options {
                board: Some(Board::Rpi4),
                seed: Some(0),
                calls: Some(1_000_000),
                count: Some(50),
                mode: Some("merged".into()),
                trace: true,
                release: true,
                timeout: Some(600),
                verbose: true,
                ..Options::default()
            }
        );
        assert_eq!(parse_options(&[], FUZZ_FLAGS).unwrap(), Options::default());
        for bad in ["--calls 0", "--count 0", "--seed -1", "--mode sideways", "--calls", "--trace=1", "--json x"] {
            assert!(parse_options(&args(bad), FUZZ_FLAGS).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_sdcard_flags() {
        let o = parse_options(
            &args("--out card.img --device=/dev/sdb --firmware fw/boot --release --append tern.scenario=domains --chainload"),
            SDCARD_FLAGS,
        )
        .unwrap();
        assert_eq!(
            o,
            Options {
                out: Some(PathBuf::from("card.img")),
                device: Some("/dev/sdb".into()),
                firmware: Some(PathBuf::from("fw/boot")),
                chainload: true,
                release: true,
                append: Some("tern.scenario=domains".into()),
                ..Options::default()
            }
        );
        assert_eq!(parse_options(&[], SDCARD_FLAGS).unwrap(), Options::default());
        for bad in ["--out", "--device", "--firmware", "--board rpi4", "--harness", "--scenario x", "--release=1"] {
            assert!(parse_options(&args(bad), SDCARD_FLAGS).is_err(), "{bad}");
        }
        assert!(parse_options(&args("--out x.img"), QEMU_FLAGS).is_err());
    }

    #[test]
    fn parses_bench_flags() {
        const BENCH: &[&str] = BENCH_FLAGS;
        let o =
            parse_options(&args("--board rpi4 --json out/b.json --svg=out/b.svg --repetitions=500"), BENCH).unwrap();
        assert_eq!(
            o,
            Options {
                board: Some(Board::Rpi4),
                json: Some(PathBuf::from("out/b.json")),
                svg: Some(PathBuf::from("out/b.svg")),
                repetitions: Some(500),
                ..Options::default()
            }
        );
        let o = parse_options(&args("--svg chart.svg"), BENCH).unwrap();
        assert_eq!(o, Options { svg: Some(PathBuf::from("chart.svg")), ..Options::default() });
        assert_eq!(parse_options(&[], BENCH).unwrap(), Options::default());
        let o = parse_options(&args("--cost exception=40,eret=30,ttbr=20,isb=10,tlbi=100"), BENCH).unwrap();
        assert_eq!(o.cost.map(|c| c.per), Some([40, 30, 20, 10, 100, 0]));
        let o = parse_options(&args("--calibrate --board rpi4"), BENCH).unwrap();
        assert!(o.calibrate);
        for bad in [
            "--cost",
            "--cost exception=1",
            "--cost exception=1,eret=1,ttbr=1,isb=1,tlbi=1,dsb=1",
            "--calibrate=yes",
            "--repetitions 0",
            "--repetitions -3",
            "--repetitions many",
            "--repetitions",
            "--json",
            "--svg",
            "--release",
        ] {
            assert!(parse_options(&args(bad), BENCH).is_err(), "{bad}");
        }
    }
}
