//! Building a board's kernel images and turning them into bootable raw
//! images; checking that a production image carries nothing of the
//! harness.
//!
//! Each board crate has two binaries (see [`ImageKind`]): the production
//! image (`tern-rpi4`, `tern-virt`: the kernel and the servers of
//! `board/image`) and the harness image (`tern-rpi4-harness`,
//! `tern-virt-harness`: that plus the test servers, the scenarios and the
//! benchmark). [`build_image`] runs `cargo build -p <board package> --bin
//! <binary of that kind> --target aarch64-unknown-none` from the workspace
//! root, with `DEFMT_LOG=info` unless the caller's environment already sets
//! `DEFMT_LOG` (defmt reads it at build time, so it decides which log
//! levels exist in the image at all). Cargo is asked for
//! `--message-format=json-render-diagnostics`: errors still reach the
//! terminal rendered as usual, while stdout carries machine-readable
//! messages, one of which names the ELF it produced. Asking cargo instead of
//! guessing `target/...` keeps `CARGO_TARGET_DIR`, `build.target-dir` and
//! friends working.
//!
//! The ELF is then flattened by [`crate::elf::elf_to_raw`] into the raw
//! image beside it: `kernel8.img` and `kernel8-harness.img` (rpi4),
//! `tern-virt.img` and `tern-virt-harness.img` (virt). It is written to a
//! temporary name and renamed, so a QEMU started by another process never
//! sees half a file.
//!
//! Results are remembered per (board, kind, profile) for the life of the
//! process, successes and failures alike: the integration tests boot a
//! dozen scenarios per board from many threads, and one build (or one
//! build error) each is what they need. Concurrent callers for the same
//! image wait for the first one's build.
//!
//! [`harness_symbols`] is the production-image check: the symbol-table
//! entries of an ELF whose names contain one of [`HARNESS_CRATES`].
//! It reads raw (mangled) names: a crate's name appears verbatim in the
//! mangled symbol of each of its items under both Rust manglings
//! (`_ZN10tern_hello4ping17h…E`, `_RNvCs…_10tern_hello4ping`), and in the
//! defmt symbols of its log statements. It is a lower bound, not a proof of
//! absence: code of a harness crate inlined into another crate's function,
//! or a generic of another crate instantiated with a harness type (its
//! legacy-mangled name shows only the defining crate), leaves no symbol of
//! its own. The test that uses it (`tests/tests/image.rs`) also checks that
//! the harness image does have such symbols, so the check can fail.
//!
//! What it leaves out: it never cleans, never builds for a host target, and
//! does not rebuild within one process if sources change meanwhile.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

use crate::{Board, ImageKind, cargo, elf, workspace_root};

/// The target triple of every kernel build.
pub const KERNEL_TARGET: &str = "aarch64-unknown-none";

/// A built kernel: the ELF (for debuggers and the defmt table) and the raw
/// image QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The board it was built for.
    pub board: Board,
    /// Production or harness.
    pub kind: ImageKind,
    /// Whether it is a release build.
    pub release: bool,
    /// The kernel ELF.
    pub elf: PathBuf,
    /// The raw binary ([`Board::raw_name`]: `kernel8.img`,
    /// `tern-virt-harness.img`, ...).
    pub raw: PathBuf,
    /// The raw binary's size in bytes.
    pub size: u64,
}

/// Builds (once per process) the `kind` image for `board` and converts it.
pub fn build_image(board: Board, kind: ImageKind, release: bool) -> Result<Image> {
    const SLOTS: usize = Board::ALL.len() * ImageKind::ALL.len() * 2;
    static CACHE: [OnceLock<Result<Image, String>>; SLOTS] = [const { OnceLock::new() }; SLOTS];
    let slot = &CACHE[(board as usize * ImageKind::ALL.len() + kind as usize) * 2 + usize::from(release)];
    slot.get_or_init(|| build_uncached(board, kind, release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

fn build_uncached(board: Board, kind: ImageKind, release: bool) -> Result<Image> {
    let elf_path = cargo_build(board.package(), board.binary(kind), release)?;
    let elf_bytes = std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let raw_bytes = elf::elf_to_raw(&elf_bytes, board.load_address())
        .with_context(|| format!("converting {} to a raw image", elf_path.display()))?;
    let raw = elf_path.with_file_name(board.raw_name(kind));
    write_atomically(&raw, &raw_bytes)?;
    Ok(Image { board, kind, release, elf: elf_path, raw, size: raw_bytes.len() as u64 })
}

/// The crates whose code belongs in harness images only: the harness crate
/// (scenarios and benchmark drivers) and the test servers. (Not
/// `tern_buildbench`: the build benchmark is the production image's too,
/// behind `kernel.build` and the shell's `bench build`.) Matched against
/// symbol names as they are in the ELF, with `_` (a crate's name, not its
/// package's).
pub const HARNESS_CRATES: [&str; 6] =
    ["tern_harness", "tern_rpctest", "tern_ctltest", "tern_hello", "tern_stresstest", "tern_fstest"];

/// The names of `elf`'s symbol-table entries that belong to a harness crate
/// (contain one of [`HARNESS_CRATES`]), in symbol-table order. An ELF
/// without a symbol table is an error, not an empty list: a stripped image
/// would otherwise pass the check by saying nothing.
pub fn harness_symbols(elf: &[u8]) -> Result<Vec<String>> {
    let symbols = crate::crossings::symbols(elf)?;
    if symbols.is_empty() {
        bail!("the ELF has no symbol table (stripped?): nothing to check");
    }
    Ok(symbols
        .into_iter()
        .map(|symbol| symbol.name)
        .filter(|name| HARNESS_CRATES.iter().any(|krate| name.contains(krate)))
        .collect())
}

/// Make sure the toolchain can build for [`KERNEL_TARGET`]: when rustup
/// manages it and the target's standard library is missing, add it (once
/// per run). `rust-toolchain.toml` lists the target, but rustup installs
/// listed targets only when it installs the toolchain itself, so a machine
/// that already had `stable` lacks it. Without rustup, the toolchain is the
/// user's to set up, and cargo's own error says what is missing.
pub fn ensure_kernel_target() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| add_kernel_target().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!("{e}"))
}

fn add_kernel_target() -> Result<()> {
    let rustup =
        |args: &[&str]| Command::new("rustup").current_dir(workspace_root()).args(args).stdin(Stdio::null()).output();
    let Ok(installed) = rustup(&["target", "list", "--installed"]) else { return Ok(()) };
    if !installed.status.success()
        || String::from_utf8_lossy(&installed.stdout).lines().any(|t| t.trim() == KERNEL_TARGET)
    {
        return Ok(());
    }
    eprintln!("xtask: adding the {KERNEL_TARGET} target to the toolchain (rustup target add)");
    let added = rustup(&["target", "add", KERNEL_TARGET]).context("running rustup")?;
    if !added.status.success() {
        bail!("`rustup target add {KERNEL_TARGET}` failed: {}", String::from_utf8_lossy(&added.stderr).trim());
    }
    Ok(())
}

/// Runs cargo to build `binary` of `package` for [`KERNEL_TARGET`] and
/// returns the path of the ELF it reports (kernel images, and the
/// chainloader: `crate::chainload`).
pub(crate) fn cargo_build(package: &str, binary: &str, release: bool) -> Result<PathBuf> {
    ensure_kernel_target()?;
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args(["build", "--package", package, "--bin", binary])
        .args(["--target", KERNEL_TARGET, "--message-format=json-render-diagnostics"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if release {
        cmd.arg("--release");
    }
    if std::env::var_os("DEFMT_LOG").is_none() {
        cmd.env("DEFMT_LOG", "info");
    }
    let mut child = cmd.spawn().context("starting cargo")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Some(path) = artifact_executable(&line, binary) {
            executable = Some(path);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`cargo build -p {package} --bin {binary}` for {KERNEL_TARGET} failed ({status})");
    }
    executable.with_context(|| format!("cargo built {package} but reported no executable named {binary}"))
}

/// The `executable` of a cargo `compiler-artifact` message for binary `bin`.
fn artifact_executable(line: &str, bin: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != bin {
        return None;
    }
    let kinds = msg["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == "bin") {
        return None;
    }
    msg["executable"].as_str().map(PathBuf::from)
}

/// Writes `bytes` to `path` through a temporary name, so that a reader
/// never sees half a file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("img.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::elf::SHT_SYMTAB;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bin"],"name":"tern-rpi4"},"executable":"/t/aarch64-unknown-none/debug/tern-rpi4","fresh":true}"#;
        assert_eq!(
            artifact_executable(line, "tern-rpi4"),
            Some(PathBuf::from("/t/aarch64-unknown-none/debug/tern-rpi4"))
        );
        assert_eq!(artifact_executable(line, "tern-virt"), None);
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"tern-rpi4"},"executable":null}"#;
        assert_eq!(artifact_executable(lib, "tern-rpi4"), None);
        assert_eq!(artifact_executable(r#"{"reason":"build-finished","success":true}"#, "tern-rpi4"), None);
        assert_eq!(artifact_executable("not json", "tern-rpi4"), None);
    }

    /// Writes a minimal little-endian ELF64 file by hand with four
    /// sections (null, `.symtab`, `.strtab`, `.shstrtab`) and one symbol
    /// per name (after the null symbol); with `symtab` false, the symbol
    /// table's section is a `PROGBITS` instead (a stripped file).
    /// Hand-written on purpose, so the reader is not tested against its own
    /// writer.
    fn synth_symbols(names: &[&str], symtab: bool) -> Vec<u8> {
        const EHSIZE: usize = 64;
        const SHENTSIZE: usize = 64;
        const SYMENTSIZE: usize = 24;
        let mut strtab = vec![0u8];
        let mut syms = vec![0u8; SYMENTSIZE]; // the null symbol
        for name in names {
            syms.extend((strtab.len() as u32).to_le_bytes()); // st_name
            syms.push(0x12); // STB_GLOBAL, STT_FUNC
            syms.push(0); // st_other
            syms.extend(0u16.to_le_bytes()); // st_shndx
            syms.extend(0x8_0000u64.to_le_bytes()); // st_value
            syms.extend(4u64.to_le_bytes()); // st_size
            strtab.extend(name.as_bytes());
            strtab.push(0);
        }
        let shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0";
        let syms_at = EHSIZE;
        let strtab_at = syms_at + syms.len();
        let shstrtab_at = strtab_at + strtab.len();
        let shoff = (shstrtab_at + shstrtab.len()).next_multiple_of(8);

        let mut f = Vec::new();
        f.extend(b"\x7fELF");
        f.extend([2, 1, 1, 0]); // ELFCLASS64, little-endian, version 1, SysV
        f.extend([0; 8]);
        f.extend(2u16.to_le_bytes()); // ET_EXEC
        f.extend(object::elf::EM_AARCH64.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        f.extend(0x8_0000u64.to_le_bytes()); // e_entry
        f.extend(0u64.to_le_bytes()); // e_phoff
        f.extend((shoff as u64).to_le_bytes());
        f.extend(0u32.to_le_bytes()); // e_flags
        f.extend((EHSIZE as u16).to_le_bytes());
        f.extend(56u16.to_le_bytes()); // e_phentsize
        f.extend(0u16.to_le_bytes()); // e_phnum
        f.extend((SHENTSIZE as u16).to_le_bytes());
        f.extend(4u16.to_le_bytes()); // e_shnum
        f.extend(3u16.to_le_bytes()); // e_shstrndx
        assert_eq!(f.len(), EHSIZE);
        f.extend(&syms);
        f.extend(&strtab);
        f.extend(shstrtab);
        f.resize(shoff, 0);
        // (name offset, type, offset, size, link, entry size)
        let symtab_type = if symtab { SHT_SYMTAB } else { object::elf::SHT_PROGBITS };
        let headers = [
            (0, object::elf::SHT_NULL, 0, 0, 0, 0),
            (1, symtab_type, syms_at, syms.len(), 2, SYMENTSIZE),
            (9, object::elf::SHT_STRTAB, strtab_at, strtab.len(), 0, 0),
            (17, object::elf::SHT_STRTAB, shstrtab_at, shstrtab.len(), 0, 0),
        ];
        for (name, kind, offset, size, link, entsize) in headers {
            f.extend((name as u32).to_le_bytes());
            f.extend(kind.to_le_bytes());
            f.extend(0u64.to_le_bytes()); // sh_flags
            f.extend(0u64.to_le_bytes()); // sh_addr
            f.extend((offset as u64).to_le_bytes());
            f.extend((size as u64).to_le_bytes());
            f.extend((link as u32).to_le_bytes());
            f.extend(if kind == SHT_SYMTAB { 1u32 } else { 0 }.to_le_bytes()); // sh_info: first global
            f.extend(8u64.to_le_bytes()); // sh_addralign
            f.extend((entsize as u64).to_le_bytes());
        }
        f
    }

    #[test]
    fn harness_symbols_are_found_in_either_mangling() {
        let elf = synth_symbols(
            &[
                "_ZN9tern_core5frame8allocate17h0123456789abcdefE",
                "_ZN10tern_hello4ping17h0123456789abcdefE",
                "_RNvCs1a2b3c_12tern_rpctest4slow",
                "tern_board_main",
                "_ZN12tern_ctltest4test3run17hfedcba9876543210E",
                "_ZN12tern_harness8scenario3run17h0000000000000000E",
                "_ZN17tern_rpi4_harness4main17h0000000000000000E",
                "_ZN4tern5hello17h0000000000000000E",
            ],
            true,
        );
        assert_eq!(
            harness_symbols(&elf).unwrap(),
            [
                "_ZN10tern_hello4ping17h0123456789abcdefE",
                "_RNvCs1a2b3c_12tern_rpctest4slow",
                "_ZN12tern_ctltest4test3run17hfedcba9876543210E",
                "_ZN12tern_harness8scenario3run17h0000000000000000E",
            ]
        );
        let clean = synth_symbols(&["_ZN9tern_core4main17h0123456789abcdefE", "tern_board_main"], true);
        assert_eq!(harness_symbols(&clean).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn no_symbol_table_is_an_error_not_a_pass() {
        let stripped = synth_symbols(&["_ZN10tern_hello4ping17h0123456789abcdefE"], false);
        let err = harness_symbols(&stripped).unwrap_err().to_string();
        assert!(err.contains("no symbol table"), "{err}");
        assert!(harness_symbols(b"not an elf").is_err());
        let elf = synth_symbols(&["_ZN10tern_hello4ping17h0123456789abcdefE"], true);
        assert!(harness_symbols(&elf[..elf.len() - 10]).is_err());
    }
}
