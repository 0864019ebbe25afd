//! Building a board's kernel and turning it into a bootable raw image.
//!
//! [`build_image`] runs `cargo build -p <board package> --bin <kernel>
//! --target aarch64-unknown-none` from the workspace root, with
//! `DEFMT_LOG=info` unless the caller's environment already sets
//! `DEFMT_LOG` (defmt reads it at build time, so it decides which log
//! levels exist in the image at all). Cargo is asked for
//! `--message-format=json-render-diagnostics`: errors still reach the
//! terminal rendered as usual, while stdout carries machine-readable
//! messages, one of which names the ELF it produced. Asking cargo instead of
//! guessing `target/...` keeps `CARGO_TARGET_DIR`, `build.target-dir` and
//! friends working.
//!
//! The ELF is then flattened by [`crate::elf::elf_to_raw`] into
//! `kernel8.img` (rpi4) or `tern-virt.img` (virt) beside it, written to a
//! temporary name and renamed, so a QEMU started by another process never
//! sees half a file.
//!
//! Results are remembered per (board, profile) for the life of the process,
//! successes and failures alike: the integration tests boot a dozen
//! scenarios per board from many threads, and one build (or one build
//! error) each is what they need. Concurrent callers for the same image
//! wait for the first one's build.
//!
//! What it leaves out: it never cleans, never builds for a host target, and
//! does not rebuild within one process if sources change meanwhile.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

use crate::{Board, cargo, elf, workspace_root};

/// The target triple of every kernel build.
pub const KERNEL_TARGET: &str = "aarch64-unknown-none";

/// A built kernel: the ELF (for debuggers and the defmt table) and the raw
/// image QEMU boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The board it was built for.
    pub board: Board,
    /// Whether it is a release build.
    pub release: bool,
    /// The kernel ELF.
    pub elf: PathBuf,
    /// The raw binary (`kernel8.img` or `tern-virt.img`).
    pub raw: PathBuf,
    /// The raw binary's size in bytes.
    pub size: u64,
}

/// Builds (once per process) the kernel for `board` and converts it.
pub fn build_image(board: Board, release: bool) -> Result<Image> {
    static CACHE: [OnceLock<Result<Image, String>>; 4] = [const { OnceLock::new() }; 4];
    let slot = &CACHE[board as usize * 2 + usize::from(release)];
    slot.get_or_init(|| build_uncached(board, release).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("{e}"))
}

fn build_uncached(board: Board, release: bool) -> Result<Image> {
    let elf_path = cargo_build(board, release)?;
    let elf_bytes = std::fs::read(&elf_path).with_context(|| format!("reading {}", elf_path.display()))?;
    let raw_bytes = elf::elf_to_raw(&elf_bytes, board.load_address())
        .with_context(|| format!("converting {} to a raw image", elf_path.display()))?;
    let raw = elf_path.with_file_name(board.raw_name());
    write_atomically(&raw, &raw_bytes)?;
    Ok(Image { board, release, elf: elf_path, raw, size: raw_bytes.len() as u64 })
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

/// Runs cargo and returns the path of the kernel ELF it reports.
fn cargo_build(board: Board, release: bool) -> Result<PathBuf> {
    ensure_kernel_target()?;
    let mut cmd = Command::new(cargo());
    cmd.current_dir(workspace_root())
        .args(["build", "--package", board.package(), "--bin", board.binary()])
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
        if let Some(path) = artifact_executable(&line, board.binary()) {
            executable = Some(path);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("`cargo build -p {}` for {KERNEL_TARGET} failed ({status})", board.package());
    }
    executable
        .with_context(|| format!("cargo built {} but reported no executable named {}", board.package(), board.binary()))
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

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("img.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
