//! Getting a QEMU that can boot a Raspberry Pi 4 (>= 9.0, machine
//! `raspi4b`) onto the machine.
//!
//! [`ensure_qemu`] probes first and does nothing if QEMU is fine. Otherwise
//! it installs through apt, printing every command before running it (with
//! `sudo` in front when not root):
//!
//! * **Debian 12 (bookworm)** ships QEMU 7.2, too old; its
//!   `bookworm-backports` suite has 10.x. If no apt source already provides
//!   `bookworm-backports`, one is added as
//!   `/etc/apt/sources.list.d/tern-bookworm-backports.sources`, copying the
//!   mirror URI and `Signed-By` of the entry that already serves suite
//!   `bookworm` of the Debian archive (deb822 `*.sources` files and
//!   one-line `*.list` / `sources.list` both count). Copying rather than
//!   naming a host keeps local mirrors and proxies working, and keeps host
//!   names out of the project. Then `apt-get update` and
//!   `apt-get install -y -t bookworm-backports qemu-system-arm`.
//! * **Newer Debian, Ubuntu and their derivatives**: `apt-get update` and
//!   `apt-get install -y qemu-system-arm`.
//! * Anything else: an error naming what to install.
//!
//! Installs run with `DEBIAN_FRONTEND=noninteractive`. Afterwards QEMU is
//! probed again, and a still-too-old QEMU is an error, not a shrug.
//!
//! Which entry is "the Debian archive" is decided from the entry alone: its
//! `Signed-By` names the Debian archive keyring, or its URI path ends in
//! `/debian`. Third-party repositories that also call their suite
//! `bookworm` (Docker, for one) match neither, and are never copied.
//!
//! What it leaves out: other package managers, building QEMU from source,
//! apt pinning (the `-t` flag is enough for one install), and removing the
//! backports source afterwards (later upgrades of QEMU come from it too).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::Board;
use crate::qemu::{self, MIN_VERSION, QEMU, QemuInfo};

/// The file this module writes to add `bookworm-backports`.
pub const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/tern-bookworm-backports.sources";

/// [`ensure_qemu`], then an error if that QEMU cannot boot `boards` (no
/// machine raspi4b for `rpi4`).
pub fn ensure_qemu_for(boards: &[Board]) -> Result<QemuInfo> {
    let info = ensure_qemu()?;
    if let Some(board) = boards.iter().find(|&&board| !info.supports(board)) {
        bail!(
            "QEMU {} has no machine raspi4b, needed by board {board}: install QEMU >= {}.{}, or use --board virt",
            info.version_string(),
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(info)
}

/// Makes sure a QEMU >= 9.0 is installed, installing it if needed, and
/// returns what is installed.
pub fn ensure_qemu() -> Result<QemuInfo> {
    match qemu::probe()? {
        Some(info) if info.new_enough() => return Ok(info),
        Some(info) => eprintln!(
            "{QEMU} {} is too old (Tern needs >= {}.{} for machine raspi4b): installing a newer one",
            info.version_string(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ),
        None => eprintln!("{QEMU} is not installed: installing it"),
    }
    install()?;
    match qemu::probe()? {
        Some(info) if info.new_enough() => {
            eprintln!("installed QEMU {}", info.version_string());
            Ok(info)
        }
        Some(info) => bail!(
            "after installing, {QEMU} is still {} (< {}.{}); install QEMU >= {}.{} providing \
             {QEMU} with machine raspi4b by hand",
            info.version_string(),
            MIN_VERSION.0,
            MIN_VERSION.1,
            MIN_VERSION.0,
            MIN_VERSION.1
        ),
        None => bail!("after installing qemu-system-arm, {QEMU} is still not on PATH"),
    }
}

/// The parts of `/etc/os-release` that matter here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`.
    pub id: String,
    /// `ID_LIKE`, e.g. `debian` for Ubuntu.
    pub id_like: Vec<String>,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub codename: String,
}

impl OsRelease {
    /// Parses the `KEY=value` lines of os-release.
    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').trim_matches('\'');
            match key.trim() {
                "ID" => os.id = value.to_string(),
                "ID_LIKE" => os.id_like = value.split_whitespace().map(String::from).collect(),
                "VERSION_CODENAME" => os.codename = value.to_string(),
                _ => {}
            }
        }
        os
    }

    fn is_debian_family(&self) -> bool {
        ["debian", "ubuntu"].iter().any(|d| self.id == *d || self.id_like.iter().any(|l| l == d))
    }
}

/// How QEMU gets installed on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Debian 12: add backports if needed, install from it.
    Bookworm,
    /// Another Debian-family system: plain apt.
    Apt,
}

fn plan(os: &OsRelease) -> Result<Plan> {
    if os.id == "debian" && os.codename == "bookworm" {
        Ok(Plan::Bookworm)
    } else if os.is_debian_family() {
        Ok(Plan::Apt)
    } else {
        bail!(
            "cannot install QEMU automatically on this system (ID={:?}); install QEMU >= {}.{} \
             providing {QEMU} with machine raspi4b (check `{QEMU} -M help`)",
            os.id,
            MIN_VERSION.0,
            MIN_VERSION.1
        )
    }
}

fn install() -> Result<()> {
    let os = std::fs::read_to_string("/etc/os-release").map(|t| OsRelease::parse(&t)).unwrap_or_default();
    match plan(&os)? {
        Plan::Bookworm => {
            let sources = AptSources::read_system()?;
            if let Some(file) = sources.backports_provider() {
                eprintln!("bookworm-backports already configured in {}", file.display());
            } else {
                let content = sources.backports_source()?;
                write_root_file(Path::new(BACKPORTS_FILE), &content)?;
            }
            run_root(&["apt-get", "update"])?;
            run_root(&["apt-get", "install", "-y", "-t", "bookworm-backports", "qemu-system-arm"])
        }
        Plan::Apt => {
            run_root(&["apt-get", "update"])?;
            run_root(&["apt-get", "install", "-y", "qemu-system-arm"])
        }
    }
}

/// Whether this process runs as root (effective user id 0).
pub(crate) fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs an apt command as root, printing it first.
fn run_root(args: &[&str]) -> Result<()> {
    const ENV: &str = "DEBIAN_FRONTEND=noninteractive";
    let mut cmd;
    if is_root() {
        eprintln!("$ {ENV} {}", args.join(" "));
        cmd = Command::new(args[0]);
        cmd.args(&args[1..]).env("DEBIAN_FRONTEND", "noninteractive");
    } else {
        eprintln!("$ sudo {ENV} {}", args.join(" "));
        cmd = Command::new("sudo");
        cmd.arg(ENV).args(args);
    }
    let status = cmd.stdin(Stdio::null()).status().with_context(|| format!("starting {}", args[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Writes a root-owned file, printing what is written.
fn write_root_file(path: &Path, content: &str) -> Result<()> {
    if is_root() {
        eprintln!("$ cat > {} <<'EOF'\n{content}EOF", path.display());
        return std::fs::write(path, content).with_context(|| format!("writing {}", path.display()));
    }
    eprintln!("$ sudo tee {} <<'EOF'\n{content}EOF", path.display());
    let mut child = Command::new("sudo")
        .arg("tee")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting sudo tee")?;
    child.stdin.take().expect("stdin is piped").write_all(content.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("writing {} failed ({status})", path.display());
    }
    Ok(())
}

/// One apt source entry, from either file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptEntry {
    /// The file it came from.
    pub file: PathBuf,
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
    /// Archive URIs.
    pub uris: Vec<String>,
    /// Suites, e.g. `bookworm`, `bookworm-updates`.
    pub suites: Vec<String>,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
    /// The `Signed-By` value as written (a path, fingerprints, or an inline
    /// key with its deb822 continuation lines).
    pub signed_by: Option<String>,
}

impl AptEntry {
    fn is_deb(&self) -> bool {
        self.types.iter().any(|t| t == "deb")
    }

    fn serves(&self, suite: &str) -> bool {
        self.is_deb() && self.suites.iter().any(|s| s == suite)
    }

    /// Whether this looks like the Debian archive (or a mirror of it).
    fn is_debian_archive(&self) -> bool {
        let keyring = self.signed_by.as_deref().is_some_and(|s| s.contains("debian-archive-keyring"));
        let path = self.uris.first().map(|u| u.trim_end_matches('/')).is_some_and(|u| u.ends_with("/debian"));
        keyring || path
    }
}

/// Parses a deb822 `.sources` file. Disabled stanzas (`Enabled: no`) are
/// left out.
pub fn parse_deb822(file: &Path, text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    // Fields of the current stanza: (name lower-cased, value with
    // continuation lines joined by '\n' and their indentation kept).
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        if fields.is_empty() {
            return;
        }
        let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let words =
            |name: &str| get(name).map(|v| v.split_whitespace().map(String::from).collect()).unwrap_or_default();
        let enabled = get("enabled").is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
        if enabled {
            entries.push(AptEntry {
                file: file.to_path_buf(),
                types: words("types"),
                uris: words("uris"),
                suites: words("suites"),
                components: words("components"),
                signed_by: get("signed-by").map(|v| v.trim_end().to_string()),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push('\n');
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    flush(&mut fields);
    entries
}

/// Parses one-line `deb [options] uri suite components...` sources.
pub fn parse_one_line(file: &Path, text: &str) -> Vec<AptEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((kind, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        let mut rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let Some((opts, after)) = opts.split_once(']') else {
                continue;
            };
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(v.to_string());
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        entries.push(AptEntry {
            file: file.to_path_buf(),
            types: vec![kind.to_string()],
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(String::from).collect(),
            signed_by,
        });
    }
    entries
}

/// All apt source entries of a system.
#[derive(Debug, Default)]
pub struct AptSources {
    /// Every enabled entry found.
    pub entries: Vec<AptEntry>,
}

impl AptSources {
    /// Reads `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`.
    pub fn read_system() -> Result<AptSources> {
        Self::read_dir(Path::new("/etc/apt"))
    }

    /// Reads the apt configuration under `etc_apt` (a directory laid out
    /// like `/etc/apt`).
    pub fn read_dir(etc_apt: &Path) -> Result<AptSources> {
        let mut sources = AptSources::default();
        let list = etc_apt.join("sources.list");
        if let Ok(text) = std::fs::read_to_string(&list) {
            sources.entries.extend(parse_one_line(&list, &text));
        }
        let dir = etc_apt.join("sources.list.d");
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        for file in files {
            let ext = file.extension().and_then(|e| e.to_str());
            if !matches!(ext, Some("list" | "sources")) {
                continue;
            }
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            if ext == Some("sources") {
                sources.entries.extend(parse_deb822(&file, &text));
            } else {
                sources.entries.extend(parse_one_line(&file, &text));
            }
        }
        Ok(sources)
    }

    /// The file of an entry that already serves `bookworm-backports`.
    pub fn backports_provider(&self) -> Option<&Path> {
        self.entries.iter().find(|e| e.serves("bookworm-backports")).map(|e| e.file.as_path())
    }

    /// The entry serving suite `bookworm` of the Debian archive.
    pub fn debian_bookworm(&self) -> Option<&AptEntry> {
        self.debian_suite("bookworm")
    }

    /// The entry serving `suite` (a codename such as `bookworm` or
    /// `trixie`) of the Debian archive.
    pub fn debian_suite(&self, suite: &str) -> Option<&AptEntry> {
        self.entries.iter().find(|e| e.serves(suite) && e.is_debian_archive())
    }

    /// The deb822 text of a `bookworm-backports` source modelled on the
    /// Debian `bookworm` entry.
    pub fn backports_source(&self) -> Result<String> {
        let base = self.debian_bookworm().with_context(|| {
            format!(
                "no apt source serves suite `bookworm` of the Debian archive, so the mirror for \
                 bookworm-backports is unknown; add bookworm-backports to apt's sources by hand \
                 and install qemu-system-arm from it (QEMU >= {}.{})",
                MIN_VERSION.0, MIN_VERSION.1
            )
        })?;
        let components = if base.components.is_empty() { "main".to_string() } else { base.components.join(" ") };
        let mut text = format!(
            "# Added by `cargo xtask install-qemu` (Tern): Debian's bookworm-backports suite,\n\
             # for QEMU >= {}.{} (machine raspi4b). Mirror and key copied from\n\
             # {}.\n\
             Types: deb\nURIs: {}\nSuites: bookworm-backports\nComponents: {components}\n",
            MIN_VERSION.0,
            MIN_VERSION.1,
            base.file.display(),
            base.uris[0],
        );
        if let Some(signed_by) = &base.signed_by {
            text.push_str(&format!("Signed-By: {signed_by}\n"));
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_SOURCES: &str = "\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn os_release() {
        let os =
            OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n");
        assert_eq!(plan(&os).unwrap(), Plan::Bookworm);
        let ubuntu = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n");
        assert_eq!(plan(&ubuntu).unwrap(), Plan::Apt);
        let mint = OsRelease::parse("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(plan(&mint).unwrap(), Plan::Apt);
        let trixie = OsRelease::parse("ID=debian\nVERSION_CODENAME=trixie\n");
        assert_eq!(plan(&trixie).unwrap(), Plan::Apt);
        let fedora = OsRelease::parse("ID=fedora\n");
        assert!(plan(&fedora).unwrap_err().to_string().contains("raspi4b"));
    }

    #[test]
    fn deb822_backports_copies_mirror_and_key() {
        let sources =
            AptSources { entries: parse_deb822(&p("/etc/apt/sources.list.d/debian.sources"), DEBIAN_SOURCES) };
        assert_eq!(sources.entries.len(), 2);
        assert_eq!(sources.backports_provider(), None);
        let text = sources.backports_source().unwrap();
        assert!(text.contains("\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"), "{text}");
        // The written file reads back as a backports provider.
        let back = parse_deb822(&p(BACKPORTS_FILE), &text);
        assert_eq!(back.len(), 1);
        assert!(back[0].serves("bookworm-backports"));
    }

    #[test]
    fn existing_backports_is_detected_and_disabled_stanzas_ignored() {
        let manual = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\nComponents: main\n";
        let sources = AptSources { entries: parse_deb822(&p("/x/manual.sources"), manual) };
        assert_eq!(sources.backports_provider(), Some(p("/x/manual.sources").as_path()));
        let disabled = format!("{manual}Enabled: no\n");
        let sources = AptSources { entries: parse_deb822(&p("/x/off.sources"), &disabled) };
        assert_eq!(sources.backports_provider(), None);
    }

    #[test]
    fn one_line_sources() {
        let list = "# comment\n\
                    deb [arch=amd64 signed-by=/usr/share/keyrings/docker.gpg] https://docker.example/linux/debian-docker bookworm stable\n\
                    deb http://mirror.example/debian/ bookworm main contrib\n\
                    deb-src http://mirror.example/debian/ bookworm main\n";
        let sources = AptSources { entries: parse_one_line(&p("/etc/apt/sources.list"), list) };
        assert_eq!(sources.entries.len(), 3);
        let base = sources.debian_bookworm().unwrap();
        assert_eq!(base.uris, ["http://mirror.example/debian/"]);
        let text = sources.backports_source().unwrap();
        assert!(
            text.contains(
                "URIs: http://mirror.example/debian/\nSuites: bookworm-backports\nComponents: main contrib\n"
            ),
            "{text}"
        );
        assert!(!text.contains("Signed-By"));
    }

    #[test]
    fn third_party_bookworm_is_not_the_debian_archive() {
        let other = "Types: deb\nURIs: https://vendor.example/apt\nSuites: bookworm\nComponents: stable\nSigned-By: /usr/share/keyrings/vendor.gpg\n";
        let sources = AptSources { entries: parse_deb822(&p("/x/vendor.sources"), other) };
        assert!(sources.debian_bookworm().is_none());
        assert!(sources.backports_source().is_err());
    }

    #[test]
    fn inline_signed_by_keeps_its_continuation_lines() {
        let inline = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL\n -----END PGP PUBLIC KEY BLOCK-----\n";
        let sources = AptSources { entries: parse_deb822(&p("/x/inline.sources"), inline) };
        let text = sources.backports_source().unwrap();
        assert!(text.ends_with("Signed-By: \n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL\n -----END PGP PUBLIC KEY BLOCK-----\n"), "{text}");
        // Picked by URI (no keyring name), and the result parses back.
        let back = parse_deb822(&p("/x/b.sources"), &text);
        assert_eq!(back[0].signed_by, sources.entries[0].signed_by);
    }

    #[test]
    fn reads_a_directory_like_etc_apt() {
        let dir = std::env::temp_dir().join(format!("tern-apt-test-{}", std::process::id()));
        let d = dir.join("sources.list.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("debian.sources"), DEBIAN_SOURCES).unwrap();
        std::fs::write(d.join("old.list.disabled"), "deb http://x/debian bookworm-backports main\n").unwrap();
        let sources = AptSources::read_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(sources.entries.len(), 2);
        assert_eq!(sources.backports_provider(), None);
        assert!(sources.debian_bookworm().is_some());
    }
}
