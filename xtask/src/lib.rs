//! # xtask: Tern's developer tasks, as a library
//!
//! Tern is a kernel, so "run it" means: cross-compile a board crate for
//! `aarch64-unknown-none`, turn the ELF into the flat image a boot loader
//! copies into RAM, start QEMU with the right machine and command line, and
//! make sense of what comes out of the emulated UART (console text mixed
//! with binary defmt log frames). None of that fits in Cargo's own commands,
//! so it lives here, in Rust, following the `cargo xtask` convention: the
//! binary (`src/main.rs`) is the command line, this library is the
//! machinery, and the integration tests (package `tern-tests`) reuse the
//! same machinery to boot every test scenario on both boards.
//!
//! The pieces:
//!
//! * [`Board`] names the two targets (Raspberry Pi 4 and QEMU's `virt`)
//!   and everything that differs between them; [`ImageKind`] the two
//!   images each board crate builds: the *production* image (the kernel
//!   and the production servers listed in `board/image`, what a person
//!   flashes) and the *harness* image (that plus the test servers,
//!   scenarios and benchmark, what the tests and the benchmark boot);
//! * [`image`] builds one of a board's images with cargo and converts it
//!   with [`elf`] (ELF → raw binary, with load-address checks), and
//!   [`harness_symbols`] lists what of the harness an ELF contains (the
//!   production-image check, `tests/tests/image.rs`);
//! * [`demux`] and [`console`] split the UART stream into text and defmt
//!   frames and print the frames as log lines;
//! * [`qemu`] finds QEMU, builds its command line and runs it, either
//!   interactively or as a test run with a timeout; [`install`] gets a new
//!   enough QEMU onto Debian-family machines;
//! * [`bench`] boots the kernel's benchmark scenario under `-icount
//!   shift=0`, parses the figures it prints and renders them as the paper's
//!   Tables 1 and 3 (`cargo xtask bench`, described in `docs/bench.md`);
//!   [`svg`] draws its whole-call figures as a bar chart; [`crossings`]
//!   builds and reads the QEMU plugin that counts each figure's
//!   exceptions, `eret`s, TTBR0 writes, `isb`s, `tlbi`s and DAIF writes,
//!   and [`stages`] turns its per-PC histograms into stage tables;
//! * [`fuzz`] boots the kernel-call fuzzer (scenario `fuzz`) for one seed
//!   or many and prints its histograms, rate and invariants (`cargo xtask
//!   fuzz`);
//! * [`stress`] boots the kernel's stress and reuse scenarios long
//!   (`cargo xtask stress`);
//! * [`sdcard`] lays out a bootable Raspberry Pi 4 SD-card image (MBR,
//!   FAT32, firmware, `config.txt`, kernel) without root, [`firmware`]
//!   finds the Pi firmware and device tree (a directory, or Debian's
//!   packages through a private apt), and [`card_device`] writes the image
//!   to a card after refusing anything that is not plainly one (`cargo
//!   xtask sdcard`, described in `docs/pi.md`);
//! * [`chainload`] builds the serial chainloader (`tern-chainload.img`)
//!   and sends kernels to it over anything `Read + Write`; [`terminal`] is
//!   the serial console (raw mode, keys to the board, defmt decoded); and
//!   [`serial`] ties them to a USB serial adapter for `cargo xtask push`
//!   and `cargo xtask console` (`docs/chainload.md`).
//!
//! It runs on the host and depends on no crate of the kernel's: it builds
//! and boots them as a user would. (It does link `tern_chainload`'s
//! library: the chainload protocol's constants, header and CRC-32, plain
//! `no_std` Rust without dependencies, shared so the protocol is written
//! once.)
//!
//! ## Crates, and why
//!
//! The build runs on two cores, so every dependency has to earn its place.
//! `defmt-decoder` is the one unavoidable crate (decoding defmt frames by
//! hand would mean re-implementing its format language), and it is not
//! small: it brings `anyhow`, `object`, `serde_json`, `defmt-parser` and
//! more. The xtask therefore uses exactly those crates for its own needs
//! and nothing else: `anyhow` for errors with context, `object` (same 0.36
//! as the decoder, read-only ELF features) for the ELF → raw conversion,
//! `serde_json` to read cargo's `--message-format=json` and so find the
//! built ELF wherever the target directory is, `defmt-parser` for the log
//! level type. `object` also reads the symbol table for the
//! production-image check, which matches raw (mangled) symbol names and so
//! needs no demangler: a crate's name appears verbatim in both the legacy
//! and the v0 mangling of its items' symbols, and `rustc-demangle` is not in
//! `Cargo.lock` (it would be a new crate, for nothing the check would find
//! that it does not find already). The command line is parsed by hand (a
//! handful of flags) rather than with clap, which would add the largest
//! compile of the lot for no behaviour worth having. Waiting with a timeout is a poll loop on
//! `Child::try_wait`, not a crate. The SD-card image adds the two crates
//! made for its formats, `mbrman` (the MBR) and `fatfs` (FAT32), whose
//! small trees and licences `Cargo.toml` lists; the firmware's `.deb` is
//! unpacked by `dpkg-deb` and `tar`, not by archive crates. The serial
//! commands add `serialport` (without its libudev feature) and, through
//! it, `nix`, whose termios calls also put the local terminal in raw mode
//! (see `Cargo.toml`).
//!
//! ## What it leaves out
//!
//! Any QEMU other than `qemu-system-aarch64` from `PATH`, QEMU
//! installation outside Debian and Ubuntu, and Windows or macOS hosts (nothing deliberately excludes them,
//! nothing tests them).

pub mod bench;
pub mod card_device;
pub mod chainload;
pub mod console;
pub mod crossings;
pub mod demux;
pub mod elf;
pub mod firmware;
pub mod fuzz;
pub mod image;
pub mod install;
pub mod keyboard;
pub mod qemu;
pub mod report;
pub mod sdcard;
pub mod serial;
pub mod stages;
pub mod stress;
pub mod svg;
pub mod terminal;

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

pub use image::{Image, build_image, harness_symbols};
pub use qemu::{DEFAULT_TIMEOUT, RunOutput, run_scenario};

/// A board Tern runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Board {
    /// Raspberry Pi 4 (QEMU machine `raspi4b`).
    Rpi4,
    /// QEMU's generic `virt` machine with a Cortex-A72.
    Virt,
}

impl Board {
    /// Both boards, in the order tests and builds visit them.
    pub const ALL: [Board; 2] = [Board::Rpi4, Board::Virt];

    /// The name used on the command line (`rpi4`, `virt`).
    pub fn name(self) -> &'static str {
        match self {
            Board::Rpi4 => "rpi4",
            Board::Virt => "virt",
        }
    }

    /// Parses a command-line board name.
    pub fn from_name(name: &str) -> Option<Board> {
        match name {
            "rpi4" => Some(Board::Rpi4),
            "virt" | "qemu-virt" => Some(Board::Virt),
            _ => None,
        }
    }

    /// The cargo package of the board's kernel.
    pub fn package(self) -> &'static str {
        match self {
            Board::Rpi4 => "tern-board-rpi4",
            Board::Virt => "tern-board-virt",
        }
    }

    /// The name of the kernel binary of `kind` in that package.
    pub fn binary(self, kind: ImageKind) -> &'static str {
        match (self, kind) {
            (Board::Rpi4, ImageKind::Production) => "tern-rpi4",
            (Board::Rpi4, ImageKind::Harness) => "tern-rpi4-harness",
            (Board::Virt, ImageKind::Production) => "tern-virt",
            (Board::Virt, ImageKind::Harness) => "tern-virt-harness",
        }
    }

    /// The file name of the raw image of `kind`, written beside the ELF.
    pub fn raw_name(self, kind: ImageKind) -> &'static str {
        match (self, kind) {
            (Board::Rpi4, ImageKind::Production) => "kernel8.img",
            (Board::Rpi4, ImageKind::Harness) => "kernel8-harness.img",
            (Board::Virt, ImageKind::Production) => "tern-virt.img",
            (Board::Virt, ImageKind::Harness) => "tern-virt-harness.img",
        }
    }

    /// Where the boot loader puts the raw image and jumps to.
    pub fn load_address(self) -> u64 {
        match self {
            Board::Rpi4 => 0x8_0000,
            Board::Virt => 0x4008_0000,
        }
    }

    /// What the kernel prints after `board: `.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Board::Rpi4 => "rpi4",
            Board::Virt => "qemu-virt",
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which of a board's two images: each board crate has one binary of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// What a person flashes (or boots with `cargo xtask qemu`): the kernel
    /// and the production servers of `board/image`, nothing else.
    Production,
    /// The production image plus the test servers, scenarios and
    /// benchmark: what the boot tests and `cargo xtask bench` boot.
    Harness,
}

impl ImageKind {
    /// Both kinds, in the order builds visit them.
    pub const ALL: [ImageKind; 2] = [ImageKind::Production, ImageKind::Harness];

    /// `production` or `harness`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Production => "production",
            ImageKind::Harness => "harness",
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives one level below the workspace root")
}

/// The cargo to run: the one running us if known (`CARGO`), else `cargo`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_names_round_trip() {
        for board in Board::ALL {
            assert_eq!(Board::from_name(board.name()), Some(board));
        }
        assert_eq!(Board::from_name("pi5"), None);
    }

    #[test]
    fn every_image_has_its_own_binary_and_file() {
        let mut binaries = Vec::new();
        let mut files = Vec::new();
        for board in Board::ALL {
            for kind in ImageKind::ALL {
                binaries.push(board.binary(kind));
                files.push(board.raw_name(kind));
            }
        }
        for names in [&mut binaries, &mut files] {
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), Board::ALL.len() * ImageKind::ALL.len(), "{names:?}");
        }
        assert_eq!(Board::Rpi4.raw_name(ImageKind::Production), "kernel8.img");
        assert_eq!(Board::Virt.binary(ImageKind::Harness), "tern-virt-harness");
    }

    #[test]
    fn workspace_root_has_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
