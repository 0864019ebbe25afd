//! The `build` scenario and the command line's `tern.build.files`: the
//! macro benchmark's runner (`tern_image::build`: the configurations, what
//! each costs, the `BENCH-BUILD` lines, the checksum check) is the
//! production image's, shared with its kernel object `kernel.build`; what
//! is the harness's is the file count a boot asks for and the check that
//! every configuration took the paths it should.

use alloc::format;
use core::sync::atomic::{AtomicUsize, Ordering};
use tern_aarch64::kprintln;
use tern_buildbench::work;
use tern_image::build::{Config, run_all};

/// The command line's `tern.build.files` (0: not given).
static FILES: AtomicUsize = AtomicUsize::new(0);

/// Remember the command line's `tern.build.files`.
pub fn set_files(files: Option<u32>) {
    FILES.store(files.map_or(0, |files| files as usize), Ordering::Relaxed);
}

/// Source files a build uses: the command line's, or
/// [`work::FILES_DEFAULT`].
pub fn files() -> usize {
    match FILES.load(Ordering::Relaxed) {
        0 => work::FILES_DEFAULT,
        given => given,
    }
}

/// The `build` scenario: [`run_all`] with the command line's file count;
/// every path the configuration takes must have been taken, and no
/// other.
pub fn scenario() -> crate::Verdict {
    let all = run_all(files())?;
    for figures in &all {
        let taken = match figures.config {
            Config::Protected => figures.migrating > 0 && figures.switching == 0,
            Config::ServersMerged => figures.migrating > 0 && figures.merged > 0,
            Config::AllMerged => figures.merged > 0 && figures.migrating == 0,
            Config::Switching => figures.switching > 0 && figures.migrating == 0,
        };
        // (Instructions are not checked: QEMU counts them only under
        // `-icount`, which `cargo xtask bench` gives and a boot test not.)
        if !taken || figures.ticks == 0 || figures.copies == 0 {
            return Err(format!(
                "{}: the counts are not what the configuration takes: {}",
                figures.config.name(),
                figures.line()
            ));
        }
    }
    kprintln!("build: {} files, checksum {:016x} in every configuration", all[0].files, all[0].checksum);
    Ok(())
}
