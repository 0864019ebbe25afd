//! The production-image check: what a person flashes carries nothing of
//! the test harness.
//!
//! Each board crate builds two images: the production image (the kernel and
//! the servers of `board/image`) and the harness image (that plus the test
//! servers, the scenarios and the benchmark). These tests build both
//! release images for rpi4 through the xtask library (`xtask::build_image`)
//! and list, with `xtask::harness_symbols`, the ELF symbols that belong to
//! a harness crate (`tern_harness`, `tern_rpctest`, `tern_ctltest`,
//! `tern_hello`). The production image must have none. The harness image
//! must have some: that is the positive control, without which a check that
//! cannot see harness code (a stripped ELF, a changed mangling, a renamed
//! crate) would pass forever. Both raw image sizes are printed (run with
//! `--nocapture` to see them when the tests pass).
//!
//! Until the scenario and benchmark code leaves `tern-aarch64` (for the
//! harness crate), the kernel crate itself still links the test servers, so
//! the production check fails, listing them; that failure is the point of
//! the test, not a reason to ignore it.
//!
//! One board is enough: both boards' binaries are composed the same way
//! from the same crates. Release, because that is the image people flash
//! (and the one where dead code is most likely to have been dropped, so a
//! symbol found there is really linked in).
//!
//! What it leaves out: symbols are a lower bound (see `xtask::image`):
//! harness code inlined into another crate's function, or a generic of
//! another crate instantiated with a harness type, leaves no symbol of its
//! own; the check finds harness crates linked into the image, not every
//! byte they contributed.

use xtask::image::HARNESS_CRATES;
use xtask::{Board, Image, ImageKind, build_image, harness_symbols};

/// How many of the symbols found a failure message lists.
const SHOWN: usize = 8;

/// The release image of `kind` for rpi4 (built once per test process), with
/// its size printed.
fn release_image(kind: ImageKind) -> Image {
    let image = build_image(Board::Rpi4, kind, true)
        .unwrap_or_else(|e| panic!("building the rpi4 {kind} image (release): {e:#}"));
    println!("rpi4 {kind} image (release): {} ({} bytes)", image.raw.display(), image.size);
    image
}

/// The harness symbols in `image`'s ELF.
fn harness_symbols_of(image: &Image) -> Vec<String> {
    let elf = std::fs::read(&image.elf).unwrap_or_else(|e| panic!("reading {}: {e}", image.elf.display()));
    harness_symbols(&elf).unwrap_or_else(|e| panic!("reading the symbols of {}: {e:#}", image.elf.display()))
}

/// The production image has no symbol of a harness crate.
#[test]
fn rpi4_production_image_has_no_harness_symbols() {
    let production = release_image(ImageKind::Production);
    let harness = release_image(ImageKind::Harness);
    println!("raw sizes: production {} bytes, harness {} bytes", production.size, harness.size);
    let found = harness_symbols_of(&production);
    if !found.is_empty() {
        let first: Vec<&str> = found.iter().take(SHOWN).map(String::as_str).collect();
        panic!(
            "the production image {} contains {} symbol(s) of harness crates ({}); the first {}:\n  {}",
            production.elf.display(),
            found.len(),
            HARNESS_CRATES.join(", "),
            first.len(),
            first.join("\n  ")
        );
    }
}

/// Positive control: the harness image has harness symbols, so the check
/// above can see them when they are there.
#[test]
fn rpi4_harness_image_has_harness_symbols() {
    let harness = release_image(ImageKind::Harness);
    let found = harness_symbols_of(&harness);
    assert!(
        !found.is_empty(),
        "the harness image {} has no symbol of any harness crate ({}): the production-image check \
         cannot see harness code, so its passing would mean nothing",
        harness.elf.display(),
        HARNESS_CRATES.join(", ")
    );
    println!("harness image: {} harness symbol(s), e.g. {}", found.len(), found[0]);
}
