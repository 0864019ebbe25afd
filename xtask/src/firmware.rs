//! The Raspberry Pi 4 boot firmware for `cargo xtask sdcard`: from a
//! directory, or from Debian's packages through a private apt.
//!
//! The card needs `start4.elf` and `fixup4.dat` (the VideoCore firmware
//! and its memory-split table: Broadcom's, redistributable but not free)
//! and, for a device tree, `bcm2711-rpi-4-b.dtb`. [`gather`] finds them:
//!
//! * **`--firmware DIR`**: both firmware files from DIR (an error naming
//!   the missing one otherwise), and the device tree from DIR when it is
//!   there. DIR is the `boot/` folder of the official Raspberry Pi
//!   firmware release or a Raspberry Pi OS image's boot partition.
//! * **Otherwise, Debian's `raspi-firmware` package**, through the
//!   system's package manager but without root and without touching
//!   `/etc/apt`: a [`PrivateApt`] under the cache directory
//!   (`target/sdcard-firmware/`) has its own sources file, state and cache
//!   (`apt-get -o Dir::Etc::SourceList=... -o Dir::Etc::SourceParts=<empty
//!   dir> -o Dir::State=... -o Dir::Cache=...`), `apt-get update`s only
//!   that, and `apt-get download`s the package into the cache. The
//!   package lives in Debian's `non-free-firmware` component, which
//!   machines often do not list; the private sources file asks for it (and
//!   `main`) from the mirror, with the `Signed-By` key, of the entry that
//!   already serves this system's Debian release
//!   ([`crate::install::AptSources::debian_suite`]), so local mirrors and
//!   proxies keep working and no host name is written into the project.
//!   The architecture is `arm64` whatever the host's: the files are the
//!   Pi's, not the host's. The two files are taken out of the `.deb` with
//!   `dpkg-deb --fsys-tarfile | tar -x -O` (both are on every machine that
//!   has apt; crates for `ar`, `tar` and `xz` would add three dependencies
//!   to redo what the package manager's own tools do).
//! * **The device tree, when DIR has none**: Debian's `raspi-firmware`
//!   carries no device trees; Debian takes them from its arm64 kernel
//!   package (`/usr/lib/linux-image-*/broadcom/`), as its own Pi images
//!   do. So the same private apt downloads the kernel package that
//!   `linux-image-arm64` depends on (about 60 MB, once; only the one
//!   `.dtb` is extracted and the `.deb` deleted). That is the mainline
//!   kernel's device tree, not the Raspberry Pi kernel's; the firmware
//!   fills in memory and `/chosen` (the command line) in either, which is
//!   all Tern reads. If that fails (no network, no apt), the card goes
//!   without a device tree, with a note: the firmware then hands Tern ATAGs
//!   instead, which Tern also reads.
//!
//! Fetched files are cached under the cache directory with a `SOURCE` file
//! saying which package and version they came from; later runs use the
//! cache without the network. Delete the directory to fetch again.
//!
//! When neither works, the error says what to do: pass `--firmware DIR`.
//!
//! What it leaves out: the `overlays/` folder (no Debian package carries
//! the Raspberry Pi overlays), other distributions' package managers,
//! checking the firmware's version, and refreshing the cache by itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::install::{AptSources, OsRelease, is_root};
use crate::sdcard::{DEVICE_TREE_FILE, FIXUP_FILE, START_FILE};
use crate::workspace_root;

/// Debian's package with the Pi's boot firmware.
pub const FIRMWARE_PACKAGE: &str = "raspi-firmware";
/// Debian's metapackage that depends on the current arm64 kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-arm64";
/// The components the private sources list asks for.
pub const COMPONENTS: &str = "main non-free-firmware";
/// The architecture of the packages fetched.
pub const ARCHITECTURE: &str = "arm64";

/// The firmware for the card, with where each part came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// `start4.elf`.
    pub start: Vec<u8>,
    /// `fixup4.dat`.
    pub fixup: Vec<u8>,
    /// Where the two came from, for messages.
    pub source: String,
    /// `bcm2711-rpi-4-b.dtb`, when one was found.
    pub device_tree: Option<Vec<u8>>,
    /// Where the device tree came from, or why there is none.
    pub device_tree_source: String,
}

/// The directory fetched firmware is cached in: `sdcard-firmware` in
/// cargo's target directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn cache_dir() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("sdcard-firmware")
}

/// The error text when no firmware can be had.
fn what_to_do() -> String {
    format!(
        "pass `--firmware DIR` with {START_FILE}, {FIXUP_FILE} (and {DEVICE_TREE_FILE}) from the `boot/` \
         folder of the official Raspberry Pi firmware release, or from any Raspberry Pi OS image's boot partition"
    )
}

/// Finds the firmware: from `directory` if given, else from Debian's
/// packages through a private apt cached in `cache`.
pub fn gather(directory: Option<&Path>, cache: &Path) -> Result<Firmware> {
    // One private apt for both packages, set up (and `apt-get update`d)
    // only when something is not cached.
    let mut apt = LazyApt::new(cache);
    let mut firmware = match directory {
        Some(directory) => from_directory(directory)?,
        None => {
            from_debian(cache, &mut apt).with_context(|| format!("getting the Pi firmware failed; {}", what_to_do()))?
        }
    };
    if firmware.device_tree.is_none() {
        match device_tree_from_debian(cache, &mut apt) {
            Ok((bytes, source)) => {
                firmware.device_tree = Some(bytes);
                firmware.device_tree_source = source;
            }
            Err(error) => {
                firmware.device_tree_source = format!("none ({error:#})");
            }
        }
    }
    Ok(firmware)
}

/// Reads `start4.elf`, `fixup4.dat` and, if present, the device tree from
/// `directory`.
pub fn from_directory(directory: &Path) -> Result<Firmware> {
    ensure!(directory.is_dir(), "--firmware {}: not a directory", directory.display());
    let read = |name: &str| {
        let path = directory.join(name);
        std::fs::read(&path).with_context(|| format!("--firmware {}: cannot read {name}", directory.display()))
    };
    let start = read(START_FILE)?;
    let fixup = read(FIXUP_FILE)?;
    let device_tree_path = directory.join(DEVICE_TREE_FILE);
    let (device_tree, device_tree_source) = if device_tree_path.is_file() {
        let bytes =
            std::fs::read(&device_tree_path).with_context(|| format!("reading {}", device_tree_path.display()))?;
        (Some(bytes), device_tree_path.display().to_string())
    } else {
        (None, format!("none in {}", directory.display()))
    };
    Ok(Firmware { start, fixup, source: directory.display().to_string(), device_tree, device_tree_source })
}

/// The cached files of `part` (`raspi-firmware`, `device-tree`) with the
/// text of their `SOURCE` file, if all of `names` are there.
fn cached(cache: &Path, part: &str, names: &[&str]) -> Option<(Vec<Vec<u8>>, String)> {
    let directory = cache.join(part);
    let source = std::fs::read_to_string(directory.join("SOURCE")).ok()?;
    let files = names.iter().map(|name| std::fs::read(directory.join(name)).ok()).collect::<Option<Vec<_>>>()?;
    Some((files, format!("{} (cached in {})", source.trim(), directory.display())))
}

/// Stores `files` and their `SOURCE` text as `part` of the cache.
fn store(cache: &Path, part: &str, files: &[(&str, &[u8])], source: &str) -> Result<()> {
    let directory = cache.join(part);
    std::fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
    for (name, bytes) in files {
        std::fs::write(directory.join(name), bytes).with_context(|| format!("writing {name} into the cache"))?;
    }
    // SOURCE last: its presence says the rest is complete.
    std::fs::write(directory.join("SOURCE"), format!("{source}\n")).context("writing the cache's SOURCE file")
}

/// A [`PrivateApt`] opened on first use, then shared.
#[derive(Debug)]
pub struct LazyApt<'a> {
    cache: &'a Path,
    apt: Option<PrivateApt>,
}

impl<'a> LazyApt<'a> {
    /// Nothing opened yet; [`LazyApt::get`] opens under `cache`.
    pub fn new(cache: &'a Path) -> LazyApt<'a> {
        LazyApt { cache, apt: None }
    }

    /// The private apt, opened (lists updated) the first time.
    pub fn get(&mut self) -> Result<&PrivateApt> {
        if self.apt.is_none() {
            self.apt = Some(PrivateApt::open(self.cache)?);
        }
        Ok(self.apt.as_ref().expect("opened above"))
    }
}

/// `start4.elf` and `fixup4.dat` from Debian's `raspi-firmware` (cached).
pub fn from_debian(cache: &Path, apt: &mut LazyApt<'_>) -> Result<Firmware> {
    const PART: &str = "raspi-firmware";
    if let Some((mut files, source)) = cached(cache, PART, &[START_FILE, FIXUP_FILE]) {
        let fixup = files.pop().expect("two files");
        let start = files.pop().expect("two files");
        return Ok(Firmware { start, fixup, source, device_tree: None, device_tree_source: String::new() });
    }
    let apt = apt.get()?;
    let version = apt.field(FIRMWARE_PACKAGE, "Version")?;
    eprintln!("fetching Debian's {FIRMWARE_PACKAGE} {version} (arm64, {}) with a private apt", apt.suite);
    let deb = apt.download(FIRMWARE_PACKAGE)?;
    let start = extract(&deb, &format!("*/raspi-firmware/{START_FILE}"))?;
    let fixup = extract(&deb, &format!("*/raspi-firmware/{FIXUP_FILE}"))?;
    std::fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    let source = format!("Debian package {FIRMWARE_PACKAGE} {version} ({}, non-free-firmware)", apt.suite);
    store(cache, PART, &[(START_FILE, &start), (FIXUP_FILE, &fixup)], &source)?;
    Ok(Firmware {
        start,
        fixup,
        source: format!("{source} (cached in {})", cache.join(PART).display()),
        device_tree: None,
        device_tree_source: String::new(),
    })
}

/// The Pi 4 device tree from Debian's arm64 kernel package (cached): the
/// bytes and where they came from.
pub fn device_tree_from_debian(cache: &Path, apt: &mut LazyApt<'_>) -> Result<(Vec<u8>, String)> {
    const PART: &str = "device-tree";
    if let Some((mut files, source)) = cached(cache, PART, &[DEVICE_TREE_FILE]) {
        return Ok((files.pop().expect("one file"), source));
    }
    let apt = apt.get()?;
    let depends = apt.field(KERNEL_METAPACKAGE, "Depends")?;
    let kernel = first_dependency(&depends)
        .with_context(|| format!("{KERNEL_METAPACKAGE} depends on no kernel package (`{depends}`)"))?;
    let version = apt.field(&kernel, "Version")?;
    let size = apt.field(&kernel, "Size").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    eprintln!(
        "fetching the Pi 4 device tree from Debian's kernel package {kernel} {version} ({} MB, once)",
        size / 1_000_000
    );
    let deb = apt.download(&kernel)?;
    let bytes = extract(&deb, &format!("*/broadcom/{DEVICE_TREE_FILE}"));
    std::fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    let bytes = bytes?;
    let source = format!("Debian package {kernel} {version} ({}, broadcom/{DEVICE_TREE_FILE})", apt.suite);
    store(cache, PART, &[(DEVICE_TREE_FILE, &bytes)], &source)?;
    Ok((bytes, format!("{source} (cached in {})", cache.join(PART).display())))
}

/// The package name of the first alternative of the first entry of a
/// `Depends:` field (`linux-image-6.1.0-50-arm64 (= 6.1.176-1), ...`).
pub fn first_dependency(depends: &str) -> Option<String> {
    let first = depends.split(',').next()?.split('|').next()?.trim();
    let name = first.split([' ', '(', ':']).next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The one file of a `.deb`'s data matching `pattern` (a tar wildcard),
/// through `dpkg-deb --fsys-tarfile DEB | tar -x -O --wildcards PATTERN`.
fn extract(deb: &Path, pattern: &str) -> Result<Vec<u8>> {
    let mut unpack = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting dpkg-deb (Debian's dpkg)")?;
    let data = unpack.stdout.take().expect("stdout is piped");
    let output = Command::new("tar")
        .args(["-x", "-O", "--wildcards", pattern])
        .stdin(Stdio::from(data))
        .stderr(Stdio::inherit())
        .output()
        .context("starting tar")?;
    let status = unpack.wait().context("waiting for dpkg-deb")?;
    ensure!(status.success(), "`dpkg-deb --fsys-tarfile {}` failed ({status})", deb.display());
    ensure!(output.status.success(), "no {pattern} in {} (tar: {})", deb.display(), output.status);
    ensure!(!output.stdout.is_empty(), "{pattern} in {} is empty", deb.display());
    Ok(output.stdout)
}

/// An apt of its own under the cache directory: own sources file, empty
/// sources directory, own lists, status and archives. Reads the system's
/// configuration otherwise (proxies keep working) and writes nothing
/// outside its directory.
#[derive(Debug)]
pub struct PrivateApt {
    /// Its directory (`<cache>/apt`).
    pub root: PathBuf,
    /// The Debian suite it fetches from (this system's release).
    pub suite: String,
}

/// The text of the private sources file: one deb822 stanza for `suite`'s
/// [`COMPONENTS`] for [`ARCHITECTURE`], with the mirror and `Signed-By` of
/// the system's entry for that suite of the Debian archive.
pub fn private_sources(sources: &AptSources, suite: &str) -> Result<String> {
    let base = sources.debian_suite(suite).with_context(|| {
        format!("no apt source of this system serves suite `{suite}` of the Debian archive, so its mirror is unknown")
    })?;
    let mut text = format!(
        "# Written by `cargo xtask sdcard` (Tern) for its private apt: mirror and key\n\
         # copied from {}.\n\
         Types: deb\nURIs: {}\nSuites: {suite}\nComponents: {COMPONENTS}\nArchitectures: {ARCHITECTURE}\n",
        base.file.display(),
        base.uris[0],
    );
    if let Some(signed_by) = &base.signed_by {
        text.push_str(&format!("Signed-By: {signed_by}\n"));
    }
    Ok(text)
}

impl PrivateApt {
    /// Sets up the private apt under `cache` for this system's Debian
    /// release and updates its package lists.
    pub fn open(cache: &Path) -> Result<PrivateApt> {
        let os = std::fs::read_to_string("/etc/os-release").map(|t| OsRelease::parse(&t)).unwrap_or_default();
        ensure!(
            os.id == "debian" && !os.codename.is_empty(),
            "fetching the firmware needs Debian's apt (this is ID={:?}, VERSION_CODENAME={:?})",
            os.id,
            os.codename
        );
        let text = private_sources(&AptSources::read_system()?, &os.codename)?;
        let apt = PrivateApt { root: cache.join("apt"), suite: os.codename };
        for directory in ["parts", "state/lists/partial", "cache/archives/partial", "downloads"] {
            let path = apt.root.join(directory);
            std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        }
        std::fs::write(apt.root.join("sources.sources"), text).context("writing the private sources file")?;
        let status = apt.root.join("state/status");
        if !status.exists() {
            std::fs::write(&status, "").context("writing the private apt's empty status file")?;
        }
        apt.run("apt-get", &["update"], None)?;
        Ok(apt)
    }

    /// The `-o` options that make apt use this directory.
    pub fn options(&self) -> Vec<String> {
        let at = |path: &str| self.root.join(path).display().to_string();
        let mut options = vec![
            format!("Dir::Etc::SourceList={}", at("sources.sources")),
            format!("Dir::Etc::SourceParts={}", at("parts")),
            format!("Dir::State={}", at("state")),
            format!("Dir::State::status={}", at("state/status")),
            format!("Dir::Cache={}", at("cache")),
            format!("APT::Architecture={ARCHITECTURE}"),
            format!("APT::Architectures::={ARCHITECTURE}"),
            "Acquire::Languages=none".to_string(),
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".to_string(),
            "Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled=false".to_string(),
        ];
        if is_root() {
            // As root apt downloads as user _apt, who may not write into
            // the cache; the files are only ever read by dpkg-deb here.
            options.push("APT::Sandbox::User=root".to_string());
        }
        options.into_iter().flat_map(|option| ["-o".to_string(), option]).collect()
    }

    /// Runs `program` (`apt-get`, `apt-cache`) with the private options and
    /// `args` (in `directory` if given), printing the command; returns its
    /// standard output (its errors go to the terminal).
    fn run(&self, program: &str, args: &[&str], directory: Option<&Path>) -> Result<String> {
        eprintln!("$ {program} -q -o Dir::...={} {}", self.root.display(), args.join(" "));
        let mut command = Command::new(program);
        command.arg("-q").args(self.options()).args(args).stdin(Stdio::null()).stderr(Stdio::inherit());
        if let Some(directory) = directory {
            command.current_dir(directory);
        }
        let output = command.output().with_context(|| format!("starting {program} (Debian's apt)"))?;
        if !output.status.success() {
            bail!(
                "`{program} {}` with the private apt under {} failed ({})",
                args.join(" "),
                self.root.display(),
                output.status
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The value of `field` of the candidate version of `package`.
    pub fn field(&self, package: &str, field: &str) -> Result<String> {
        let text = self.run("apt-cache", &["show", "--no-all-versions", package], None)?;
        let prefix = format!("{field}:");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.trim().to_string())
            .with_context(|| format!("apt-cache shows no {field} for {package}"))
    }

    /// Downloads `package`'s `.deb` into the private downloads directory
    /// and returns its path.
    pub fn download(&self, package: &str) -> Result<PathBuf> {
        let directory = self.root.join("downloads");
        self.run("apt-get", &["download", package], Some(&directory))?;
        let prefix = format!("{package}_");
        let mut found: Vec<PathBuf> = std::fs::read_dir(&directory)
            .with_context(|| format!("reading {}", directory.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        found.pop().with_context(|| format!("apt-get download {package} left no .deb in {}", directory.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::parse_deb822;

    fn scratch(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("tern-firmware-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn private_sources_copy_mirror_and_key_and_ask_for_non_free_firmware() {
        let system = "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie trixie-updates\nComponents: main\n\
                      Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        let sources = AptSources { entries: parse_deb822(Path::new("/etc/apt/sources.list.d/debian.sources"), system) };
        let text = private_sources(&sources, "trixie").unwrap();
        let back = parse_deb822(Path::new("private.sources"), &text);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].uris, ["http://mirror.example/debian"]);
        assert_eq!(back[0].suites, ["trixie"]);
        assert_eq!(back[0].components, ["main", "non-free-firmware"]);
        assert_eq!(back[0].signed_by.as_deref(), Some("/usr/share/keyrings/debian-archive-keyring.gpg"));
        assert!(text.contains("Architectures: arm64\n"));
        assert!(private_sources(&sources, "bookworm").is_err());
    }

    #[test]
    fn first_dependency_takes_the_package_name() {
        assert_eq!(
            first_dependency("linux-image-6.1.0-50-arm64 (= 6.1.176-1)").as_deref(),
            Some("linux-image-6.1.0-50-arm64")
        );
        assert_eq!(first_dependency("a | b, c").as_deref(), Some("a"));
        assert_eq!(first_dependency("a:arm64 (>= 1)").as_deref(), Some("a"));
        assert_eq!(first_dependency(""), None);
    }

    #[test]
    fn a_directory_needs_both_firmware_files_and_may_have_a_device_tree() {
        let directory = scratch("directory");
        std::fs::write(directory.join(START_FILE), b"start").unwrap();
        let error = from_directory(&directory).unwrap_err().to_string();
        assert!(error.contains(FIXUP_FILE), "{error}");
        std::fs::write(directory.join(FIXUP_FILE), b"fixup").unwrap();
        let firmware = from_directory(&directory).unwrap();
        assert_eq!((firmware.start.as_slice(), firmware.fixup.as_slice()), (&b"start"[..], &b"fixup"[..]));
        assert_eq!(firmware.device_tree, None);
        std::fs::write(directory.join(DEVICE_TREE_FILE), b"dtb").unwrap();
        assert_eq!(from_directory(&directory).unwrap().device_tree.as_deref(), Some(&b"dtb"[..]));
        assert!(from_directory(&directory.join("missing")).is_err());
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn the_cache_is_used_only_when_complete() {
        let cache = scratch("cache");
        store(&cache, "raspi-firmware", &[(START_FILE, b"s"), (FIXUP_FILE, b"f")], "test source").unwrap();
        let mut apt = LazyApt::new(&cache);
        let firmware = from_debian(&cache, &mut apt).unwrap();
        assert!(apt.apt.is_none(), "a complete cache opens no apt");
        assert_eq!(firmware.start, b"s");
        assert!(firmware.source.starts_with("test source (cached in "), "{}", firmware.source);
        std::fs::remove_file(cache.join("raspi-firmware").join(FIXUP_FILE)).unwrap();
        assert!(cached(&cache, "raspi-firmware", &[START_FILE, FIXUP_FILE]).is_none());
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
