//! Writing the SD-card image to a card (`cargo xtask sdcard --device
//! /dev/sdX`), and the rules that refuse anything that is not plainly a
//! card.
//!
//! Writing a disk image to the wrong device destroys it, so the device is
//! checked before the image is built and again just before writing, and
//! only then after the person at the terminal has typed the device's name
//! back (the prompt names the device, its size, model and bus). The rules,
//! each a refusal with its reason:
//!
//! 1. **Not a block device** (a typo, a regular file, a directory).
//! 2. **A partition** (`/dev/sdb1`, `/dev/mmcblk0p1`): the image holds its
//!    own partition table and goes on the whole disk; the error names it.
//! 3. **No medium** (size 0: a card reader with no card) or **smaller than
//!    the image**.
//! 4. **A system disk**: any partition of it (or the disk itself) mounted
//!    at `/`, `/boot`, `/boot/efi`, `/boot/firmware`, `/usr`, `/var` or
//!    `/home`, or used as swap (`/proc/swaps`).
//! 5. **In use underneath something else**: the disk or a partition has
//!    holders in `/sys` (LVM, dm-crypt, RAID), whatever is mounted on top.
//! 6. **Mounted** anywhere else: unmount it first. (A desktop that
//!    auto-mounts the card will do so when it is inserted: `umount` its
//!    partitions, then run the command.)
//! 7. **Not a removable device**: only a disk whose `removable` flag is
//!    set, that sits on a USB bus (its `/sys` path has a `usb` component:
//!    USB card readers and sticks), or that is an SD card in an SD/MMC slot
//!    (`mmcblkN` whose `device/type` is `SD`; a built-in eMMC says `MMC`,
//!    and its `bootN`/`rpmb` areas are never whole disks to write) is
//!    accepted; an internal SATA, NVMe or eMMC disk never is, mounted or not.
//!
//! Mounts (rules 4 and 6) are matched by device number: field 3
//! (`major:minor`) of `/proc/self/mountinfo` against the `dev` attribute of
//! the disk and of each partition in `/sys/block`, so a root file system
//! the kernel calls `/dev/root` is still found. Btrfs reports an anonymous
//! device number instead, so a mount whose source names one of the disk's
//! devices (each of a bcachefs `/dev/a:/dev/b` list too) counts as well.
//! What neither catches (a ZFS pool, named `rpool/...` with an anonymous
//! number) the kernel does: the image is written through a descriptor
//! opened with `O_EXCL`, which a block device refuses (`EBUSY`) while a file
//! system, a pool, RAID, LVM or another exclusive opener holds it; the
//! error then says so and nothing is written.
//!
//! Rule 7 still lets through a USB hard disk that is not mounted: the
//! confirmation, with its model and size, is the guard there.
//!
//! After writing and `fsync`, the image is read back through a second
//! descriptor opened with `O_DIRECT` (into 4096-byte aligned buffers), so
//! the comparison sees what the card returns, not the page cache.
//!
//! The rules are pure functions of a [`SystemView`] (the text of
//! `/proc/self/mountinfo` and `/proc/swaps` and a `/sys/block` directory),
//! so the tests run them over fake trees. Writing needs write permission on
//! the device; without it the error says how to write the image with `sudo
//! dd` instead (the xtask does not run itself under sudo).
//!
//! What it leaves out: unmounting for the person, ejecting the card
//! afterwards, Windows and macOS device names, and writing through
//! `udisks` or other desktop services.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use nix::fcntl::OFlag;

/// Mount points that make a disk a system disk.
pub const SYSTEM_MOUNT_POINTS: &[&str] = &["/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var", "/home"];

/// What the rules read of the running system.
#[derive(Debug, Clone)]
pub struct SystemView {
    /// The `/sys/block` directory (one entry per whole disk).
    pub sys_block: PathBuf,
    /// The text of `/proc/self/mountinfo`.
    pub mountinfo: String,
    /// The text of `/proc/swaps`.
    pub swaps: String,
}

impl SystemView {
    /// This machine's.
    pub fn read() -> Result<SystemView> {
        Ok(SystemView {
            sys_block: PathBuf::from("/sys/block"),
            mountinfo: std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?,
            swaps: std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
        })
    }
}

/// A disk that passed the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// The kernel's name for it (`sdb`, `mmcblk0`).
    pub name: String,
    /// `/dev/<name>`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Vendor and model as `/sys` reports them (may be empty).
    pub model: String,
    /// Why it counts as removable: `removable`, `USB` or `SD/MMC`.
    pub bus: &'static str,
}

/// Rule 1: `path` must be a block device; returns the kernel's name for
/// it (the file name once symbolic links such as `/dev/disk/by-id/...`
/// are resolved).
pub fn device_name(path: &Path) -> Result<String> {
    let resolved =
        std::fs::canonicalize(path).with_context(|| format!("--device {}: no such device", path.display()))?;
    let metadata = std::fs::metadata(&resolved).with_context(|| format!("--device {}", path.display()))?;
    ensure!(
        metadata.file_type().is_block_device(),
        "--device {}: not a block device (give the card's whole disk, e.g. /dev/sdb or /dev/mmcblk0)",
        path.display()
    );
    resolved
        .file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .with_context(|| format!("--device {}: no device name", path.display()))
}

/// Reads a one-line `/sys` attribute, trimmed; empty if absent.
fn attribute(path: &Path) -> String {
    std::fs::read_to_string(path).map(|text| text.trim().to_string()).unwrap_or_default()
}

/// The names of the partitions of disk `name` (entries of its `/sys`
/// directory that have a `partition` attribute).
fn partitions(disk: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(disk)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.path().join("partition").is_file())
                .filter_map(|entry| entry.file_name().to_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The holders (device-mapper, RAID) of a `/sys` block directory.
fn holders(directory: &Path) -> Vec<String> {
    std::fs::read_dir(directory.join("holders"))
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Field 3, the file system's device number (`8:17`).
    pub device: String,
    /// Field 5, where it is mounted (unescaped).
    pub point: String,
    /// The mount source, after the ` - ` separator and the file system
    /// type (`/dev/sdb1`, `/dev/root`, `rpool/ROOT`).
    pub source: String,
}

/// Parses `/proc/self/mountinfo` (lines it cannot read are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let separator = fields.iter().position(|&field| field == "-")?;
            Some(Mount {
                device: fields.get(2)?.to_string(),
                point: unescape(fields.get(4)?),
                source: unescape(fields.get(separator + 2)?),
            })
        })
        .collect()
}

/// Unescapes the kernel's octal escapes in mount fields (`\040` for a space).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(index) = rest.find('\\') {
        out.push_str(&rest[..index]);
        let code = rest.get(index + 1..index + 4).and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[index + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[index + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rules 2 to 7 for the disk called `name`.
pub fn check(name: &str, system: &SystemView, image_size: u64) -> Result<Card> {
    let disk = system.sys_block.join(name);
    if !disk.is_dir() {
        // Rule 2: a partition appears under its disk, not in /sys/block.
        let parent = std::fs::read_dir(&system.sys_block)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .find(|entry| entry.path().join(name).join("partition").is_file());
        if let Some(parent) = parent {
            bail!(
                "/dev/{name} is a partition of /dev/{}: give the whole disk (the image has its own partition table)",
                parent.file_name().to_string_lossy()
            );
        }
        bail!("/dev/{name} is not a disk the kernel lists in {}", system.sys_block.display());
    }
    let path = PathBuf::from(format!("/dev/{name}"));

    // Rule 3.
    let sectors: u64 = attribute(&disk.join("size")).parse().unwrap_or(0);
    let size = sectors * 512;
    ensure!(size > 0, "{} has no medium (size 0): is the card in the reader?", path.display());
    ensure!(size >= image_size, "{} holds {} bytes, less than the image's {image_size}", path.display(), size);

    // Rules 4 and 6: mounts and swap of the disk or any partition.
    let mut devices = vec![name.to_string()];
    devices.extend(partitions(&disk));
    let numbers: Vec<String> = devices
        .iter()
        .map(
            |device| {
                if device == name { attribute(&disk.join("dev")) } else { attribute(&disk.join(device).join("dev")) }
            },
        )
        .filter(|number| !number.is_empty())
        .collect();
    let named = |source: &str| devices.iter().any(|device| source == format!("/dev/{device}"));
    for line in system.swaps.lines().skip(1) {
        if let Some(source) = line.split_whitespace().next().filter(|source| named(source)) {
            bail!("{} is a system disk: {source} is in use as swap", path.display());
        }
    }
    let mounted: Vec<(String, String)> = parse_mountinfo(&system.mountinfo)
        .into_iter()
        .filter(|mount| numbers.contains(&mount.device) || mount.source.split(':').any(named))
        .map(|mount| {
            let source =
                if named(&mount.source) { mount.source } else { format!("{} (device {})", mount.source, mount.device) };
            (source, mount.point)
        })
        .collect();
    if let Some((source, point)) = mounted.iter().find(|(_, point)| SYSTEM_MOUNT_POINTS.contains(&point.as_str())) {
        bail!("{} is a system disk: {source} is mounted at {point}", path.display());
    }

    // Rule 5.
    let mut held = holders(&disk);
    for partition in &devices[1..] {
        held.extend(holders(&disk.join(partition)));
    }
    if !held.is_empty() {
        bail!("{} is in use by {} (LVM, encryption or RAID): not a card to overwrite", path.display(), held.join(", "));
    }

    if !mounted.is_empty() {
        let list: Vec<String> = mounted.iter().map(|(source, point)| format!("{source} at {point}")).collect();
        let points: Vec<String> = mounted
            .iter()
            .map(|(_, point)| if point.contains(' ') { format!("'{point}'") } else { point.clone() })
            .collect();
        bail!("{} is mounted ({}): unmount it first (`umount {}`)", path.display(), list.join(", "), points.join(" "));
    }

    // Rule 7.
    let removable = attribute(&disk.join("removable")) == "1";
    let real = std::fs::canonicalize(&disk).unwrap_or_else(|_| disk.clone());
    let on_usb = real.components().any(|c| c.as_os_str().to_str().is_some_and(|part| part.starts_with("usb")));
    let mmc = name.starts_with("mmcblk");
    let mmc_type = attribute(&disk.join("device/type"));
    let bus = if on_usb {
        "USB"
    } else if mmc && (name.contains("boot") || name.contains("rpmb") || mmc_type != "SD") {
        bail!(
            "{} is not an SD card (its device type is {:?}; a built-in eMMC says \"MMC\"): refused",
            path.display(),
            mmc_type
        );
    } else if mmc {
        "SD/MMC"
    } else if removable {
        "removable"
    } else {
        bail!(
            "{} is not removable, not on USB and not an SD/MMC slot: it looks like a built-in disk, refused",
            path.display()
        );
    };

    let vendor = attribute(&disk.join("device/vendor"));
    let mut model = attribute(&disk.join("device/model"));
    if model.is_empty() {
        model = attribute(&disk.join("device/name"));
    }
    let model = [vendor, model].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
    Ok(Card { name: name.to_string(), path, size, model, bus })
}

/// A size in bytes for people: GB (decimal, as cards are sold) with one
/// decimal, or MB.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000_000 { format!("{:.1} GB", bytes as f64 / 1e9) } else { format!("{} MB", bytes / 1_000_000) }
}

/// Asks on `output` to type the card's name, reads a line from `input`;
/// true only if the answer is exactly the name.
pub fn confirm(card: &Card, image: &Path, input: &mut impl BufRead, output: &mut impl Write) -> Result<bool> {
    let model = if card.model.is_empty() { "model unknown".to_string() } else { card.model.clone() };
    write!(
        output,
        "About to write {} to {}: {model}, {}, {}.\nEverything on {} will be lost. \
         Type its name ({}) to go on, anything else to stop: ",
        image.display(),
        card.path.display(),
        human_size(card.size),
        card.bus,
        card.path.display(),
        card.name
    )?;
    output.flush()?;
    let mut answer = String::new();
    input.read_line(&mut answer).context("reading the answer")?;
    Ok(answer.trim() == card.name)
}

/// Checks `device`, asks on the terminal, writes `image` (the bytes of the
/// file `image_path`) to it, and reads it back to compare.
pub fn write_to_card(device: &Path, image_path: &Path, image: &[u8]) -> Result<()> {
    let name = device_name(device)?;
    let card = check(&name, &SystemView::read()?, image.len() as u64)?;
    ensure!(
        std::io::stdin().is_terminal(),
        "--device needs a terminal to confirm on; write the image by hand instead: \
         sudo dd if={} of={} bs=4M conv=fsync",
        image_path.display(),
        card.path.display()
    );
    if !confirm(&card, image_path, &mut std::io::stdin().lock(), &mut std::io::stderr())? {
        bail!("not confirmed: {} left as it was", card.path.display());
    }
    // O_EXCL on a block device: the kernel refuses (EBUSY) while anything
    // holds it (mounted, a ZFS or bcachefs pool, RAID, LVM, an exclusive
    // opener), whatever the rules above could see.
    let opened = std::fs::OpenOptions::new().read(true).write(true).custom_flags(OFlag::O_EXCL.bits()).open(&card.path);
    let mut file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "no permission to write {}; write the image with: sudo dd if={} of={} bs=4M conv=fsync",
            card.path.display(),
            image_path.display(),
            card.path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::ResourceBusy => bail!(
            "{} is in use: the kernel refused exclusive access (EBUSY), so something holds it (a mounted file \
             system, a ZFS or bcachefs pool, RAID, LVM or another program); nothing was written",
            card.path.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("opening {}", card.path.display())),
    };
    eprintln!("writing {} bytes to {} ...", image.len(), card.path.display());
    file.write_all(image).with_context(|| format!("writing {}", card.path.display()))?;
    file.sync_all().with_context(|| format!("flushing {}", card.path.display()))?;
    read_back(&card.path, image)?;
    // The exclusive descriptor is held until the read-back is done.
    drop(file);
    eprintln!("written and read back from the card itself: {} ({})", card.path.display(), human_size(card.size));
    Ok(())
}

/// Bytes per read of [`read_back`].
const READ_BACK_CHUNK: usize = 256 * 1024;

/// A read buffer at a 4096-byte boundary, as `O_DIRECT` needs (the
/// alignment of a device's logical block, 512 or 4096 bytes).
#[repr(C, align(4096))]
struct Aligned([u8; READ_BACK_CHUNK]);

/// Reads the first `image.len()` bytes of `device` with `O_DIRECT` (from
/// the device, not the page cache) and compares them with `image`.
fn read_back(device: &Path, image: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_DIRECT.bits())
        .open(device)
        .with_context(|| format!("opening {} to read it back (O_DIRECT)", device.display()))?;
    let mut chunk = Box::new(Aligned([0; READ_BACK_CHUNK]));
    let mut offset = 0;
    while offset < image.len() {
        // Whole aligned chunks at aligned offsets; only the device's end
        // could make a read short.
        let count = match file.read(&mut chunk.0) {
            Ok(0) => bail!("{} ended after {offset} bytes while reading it back", device.display()),
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {} back", device.display())),
        };
        let compared = count.min(image.len() - offset);
        ensure!(
            chunk.0[..compared] == image[offset..offset + compared],
            "{} does not read back what was written (a difference within bytes {offset}..{}): a failing card?",
            device.display(),
            offset + compared
        );
        offset += compared;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake `/sys` with one disk per call of [`Fake::disk`].
    struct Fake {
        root: PathBuf,
    }

    impl Fake {
        fn new(test: &str) -> Fake {
            let root = std::env::temp_dir().join(format!("tern-card-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("block")).unwrap();
            Fake { root }
        }

        /// A disk `name` of `sectors`, its device directory under
        /// `devices/<bus path>`, linked from `block/<name>` as in /sys.
        fn disk(&self, name: &str, bus_path: &str, sectors: u64, removable: bool, parts: &[&str]) -> PathBuf {
            let real = self.root.join("devices").join(bus_path).join("block").join(name);
            std::fs::create_dir_all(real.join("device")).unwrap();
            std::fs::write(real.join("size"), format!("{sectors}\n")).unwrap();
            std::fs::write(real.join("removable"), if removable { "1\n" } else { "0\n" }).unwrap();
            std::fs::write(real.join("device/vendor"), "Generic \n").unwrap();
            std::fs::write(real.join("device/model"), "STORAGE DEVICE  \n").unwrap();
            std::fs::write(real.join("dev"), format!("{}\n", device_number(name))).unwrap();
            for (index, part) in parts.iter().enumerate() {
                std::fs::create_dir_all(real.join(part)).unwrap();
                std::fs::write(real.join(part).join("partition"), format!("{}\n", index + 1)).unwrap();
                std::fs::write(real.join(part).join("dev"), format!("{}\n", device_number(part))).unwrap();
            }
            symlink(&real, self.root.join("block").join(name)).unwrap();
            real
        }

        fn view(&self, mountinfo: &str, swaps: &str) -> SystemView {
            SystemView { sys_block: self.root.join("block"), mountinfo: mountinfo.into(), swaps: swaps.into() }
        }
    }

    /// The device number Linux gives `name` (sd, nvme and mmcblk disks
    /// and their partitions), as `/sys` and mountinfo write it.
    fn device_number(name: &str) -> String {
        let trailing = |text: &str| {
            let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            text[text.len() - digits..].parse::<u32>().unwrap_or(0)
        };
        if let Some(rest) = name.strip_prefix("sd") {
            let disk = u32::from(rest.as_bytes()[0] - b'a');
            format!("8:{}", disk * 16 + trailing(rest))
        } else if let Some(rest) = name.strip_prefix("nvme0n1") {
            format!("259:{}", trailing(rest))
        } else if let Some(rest) = name.strip_prefix("mmcblk") {
            let (disk, part) = rest.split_once('p').unwrap_or((rest, "0"));
            format!("179:{}", trailing(disk) * 8 + part.parse::<u32>().unwrap_or(0))
        } else {
            panic!("no device number for {name}")
        }
    }

    /// Mountinfo lines: (device name or `major:minor`, mount point as the
    /// kernel escapes it, file system, source).
    fn mountinfo(entries: &[(&str, &str, &str, &str)]) -> String {
        let mut text = String::from("22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n");
        for (index, (device, point, kind, source)) in entries.iter().enumerate() {
            let number = if device.contains(':') { device.to_string() } else { device_number(device) };
            text.push_str(&format!(
                "{} 1 {number} / {point} rw,relatime shared:{index} - {kind} {source} rw\n",
                30 + index
            ));
        }
        text
    }

    impl Fake {
        /// Writes a `/sys` attribute of disk `name`.
        fn set(&self, name: &str, attribute: &str, value: &str) {
            std::fs::write(self.root.join("block").join(name).join(attribute), format!("{value}\n")).unwrap();
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// The sectors of a "32 GB" card.
    const CARD_32GB_SECTORS: u64 = 62_333_952;
    const IMAGE: u64 = 64 << 20;

    /// This machine's root and EFI partitions on an NVMe disk.
    fn system_mounts() -> String {
        mountinfo(&[("nvme0n1p2", "/", "ext4", "/dev/nvme0n1p2"), ("nvme0n1p1", "/boot/efi", "vfat", "/dev/nvme0n1p1")])
    }
    const SWAPS: &str = "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p3 partition 8388604 0 -2\n";

    fn error(result: Result<Card>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn a_usb_card_reader_is_accepted_and_described() {
        let fake = Fake::new("usb");
        fake.disk(
            "sdb",
            "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0",
            CARD_32GB_SECTORS,
            false,
            &["sdb1"],
        );
        let card = check("sdb", &fake.view(&system_mounts(), SWAPS), IMAGE).unwrap();
        assert_eq!(card.path, Path::new("/dev/sdb"));
        assert_eq!(card.size, CARD_32GB_SECTORS * 512);
        assert_eq!(card.model, "Generic STORAGE DEVICE");
        assert_eq!(card.bus, "USB");
        assert_eq!(human_size(card.size), "31.9 GB");
    }

    #[test]
    fn an_sd_slot_and_a_removable_disk_are_accepted() {
        let fake = Fake::new("slots");
        fake.disk("mmcblk0", "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa", CARD_32GB_SECTORS, false, &["mmcblk0p1"]);
        fake.set("mmcblk0", "device/type", "SD");
        fake.disk("sdc", "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0", CARD_32GB_SECTORS, true, &[]);
        let view = fake.view(&system_mounts(), SWAPS);
        assert_eq!(check("mmcblk0", &view, IMAGE).unwrap().bus, "SD/MMC");
        assert_eq!(check("sdc", &view, IMAGE).unwrap().bus, "removable");
    }

    #[test]
    fn a_partition_is_refused_naming_its_disk() {
        let fake = Fake::new("partition");
        fake.disk("sdb", "usb1/1-1/host7/block", CARD_32GB_SECTORS, true, &["sdb1", "sdb2"]);
        let message = error(check("sdb2", &fake.view("", ""), IMAGE));
        assert!(message.contains("partition of /dev/sdb"), "{message}");
        assert!(error(check("sdz", &fake.view("", ""), IMAGE)).contains("not a disk"));
    }

    #[test]
    fn system_disks_are_refused() {
        let fake = Fake::new("system");
        fake.disk(
            "nvme0n1",
            "pci0000:00/0000:00:1d.0/nvme/nvme0",
            1_000_215_216,
            false,
            &["nvme0n1p1", "nvme0n1p2", "nvme0n1p3"],
        );
        fake.disk("sda", "pci0000:00/0000:00:17.0/ata1/host0", 1_953_525_168, false, &["sda1"]);
        // The root disk: refused for "/" even if it claimed to be removable.
        let message = error(check("nvme0n1", &fake.view(&system_mounts(), ""), IMAGE));
        assert!(message.contains("system disk") && message.contains("mounted at /"), "{message}");
        // Swap alone makes a system disk.
        let message = error(check("nvme0n1", &fake.view("", SWAPS), IMAGE));
        assert!(message.contains("swap"), "{message}");
        // /boot on a USB stick still makes it a system disk.
        fake.disk("sdd", "usb3/3-2/host9", CARD_32GB_SECTORS, true, &["sdd1"]);
        let message = error(check("sdd", &fake.view(&mountinfo(&[("sdd1", "/boot", "ext2", "/dev/sdd1")]), ""), IMAGE));
        assert!(message.contains("system disk"), "{message}");
        // A built-in SATA disk, not mounted at all: not removable, refused.
        let message = error(check("sda", &fake.view(&system_mounts(), SWAPS), IMAGE));
        assert!(message.contains("built-in disk"), "{message}");
    }

    #[test]
    fn mounted_held_empty_and_small_cards_are_refused() {
        let fake = Fake::new("busy");
        let sdb = fake.disk("sdb", "usb1/1-1/host7", CARD_32GB_SECTORS, true, &["sdb1", "sdb2"]);
        let mounts = mountinfo(&[("sdb1", "/media/me/My\\040Card", "vfat", "/dev/sdb1")]);
        let message = error(check("sdb", &fake.view(&mounts, ""), IMAGE));
        assert!(
            message.contains("/dev/sdb1 at /media/me/My Card") && message.contains("umount '/media/me/My Card'"),
            "{message}"
        );
        // Something else's name that starts the same is not ours.
        let other = mountinfo(&[("259:12", "/mnt", "vfat", "/dev/sdb10")]);
        assert!(check("sdb", &fake.view(&other, ""), IMAGE).is_ok());
        // Btrfs: an anonymous device number, but the source names ours.
        let btrfs = mountinfo(&[("0:37", "/srv", "btrfs", "/dev/sdb2")]);
        assert!(error(check("sdb", &fake.view(&btrfs, ""), IMAGE)).contains("/dev/sdb2 at /srv"));
        // bcachefs over several devices, one of them ours.
        let bcachefs = mountinfo(&[("0:38", "/pool", "bcachefs", "/dev/sdc1:/dev/sdb1")]);
        assert!(error(check("sdb", &fake.view(&bcachefs, ""), IMAGE)).contains("/pool"));
        std::fs::create_dir_all(sdb.join("sdb2/holders/dm-0")).unwrap();
        assert!(error(check("sdb", &fake.view("", ""), IMAGE)).contains("dm-0"));
        fake.disk("sde", "usb1/1-2/host8", 0, true, &[]);
        assert!(error(check("sde", &fake.view("", ""), IMAGE)).contains("no medium"));
        fake.disk("sdf", "usb1/1-3/host9", 1000, true, &[]);
        assert!(error(check("sdf", &fake.view("", ""), IMAGE)).contains("less than the image"));
    }

    #[test]
    fn mounts_are_matched_by_device_number_not_by_name() {
        let fake = Fake::new("dev-root");
        fake.disk("sdb", "usb1/1-1/host7", CARD_32GB_SECTORS, true, &["sdb1", "sdb2"]);
        // A root file system the kernel calls /dev/root, on our sdb2 (8:18).
        let root = mountinfo(&[("8:18", "/", "ext4", "/dev/root")]);
        let message = error(check("sdb", &fake.view(&root, ""), IMAGE));
        assert!(
            message.contains("system disk") && message.contains("/dev/root (device 8:18) is mounted at /"),
            "{message}"
        );
        // The same name on another disk's number is not ours.
        let elsewhere = mountinfo(&[("259:2", "/", "ext4", "/dev/root")]);
        assert!(check("sdb", &fake.view(&elsewhere, ""), IMAGE).is_ok());
        // Mounted by number under a name that is no /dev path at all.
        let odd = mountinfo(&[("8:17", "/media/card", "vfat", "systemd-1")]);
        assert!(error(check("sdb", &fake.view(&odd, ""), IMAGE)).contains("umount /media/card"));
        // The whole disk's own number counts too.
        let whole = mountinfo(&[("8:16", "/var", "ext4", "/dev/disk/by-label/DATA")]);
        assert!(error(check("sdb", &fake.view(&whole, ""), IMAGE)).contains("system disk"));
    }

    #[test]
    fn an_emmc_is_refused_and_only_an_sd_card_passes_as_sd_mmc() {
        let fake = Fake::new("emmc");
        let host = "platform/fe340000.mmc/mmc_host/mmc0/mmc0:0001";
        fake.disk("mmcblk0", host, CARD_32GB_SECTORS, false, &["mmcblk0p1", "mmcblk0p2"]);
        fake.set("mmcblk0", "device/type", "MMC");
        fake.disk("mmcblk0boot0", host, CARD_32GB_SECTORS, false, &[]);
        fake.set("mmcblk0boot0", "device/type", "MMC");
        fake.disk("mmcblk1", "platform/fe300000.mmc/mmc_host/mmc1/mmc1:aaaa", CARD_32GB_SECTORS, false, &[]);
        fake.set("mmcblk1", "device/type", "SD");
        fake.disk("mmcblk2", "platform/fe310000.mmc/mmc_host/mmc2/mmc2:0001", CARD_32GB_SECTORS, false, &[]);
        let view = fake.view("", "");
        let message = error(check("mmcblk0", &view, IMAGE));
        assert!(message.contains("not an SD card") && message.contains("\"MMC\""), "{message}");
        assert!(error(check("mmcblk0boot0", &view, IMAGE)).contains("not an SD card"));
        assert!(error(check("mmcblk2", &view, IMAGE)).contains("not an SD card"), "no type: refused");
        assert_eq!(check("mmcblk1", &view, IMAGE).unwrap().bus, "SD/MMC");
    }

    #[test]
    fn mountinfo_is_parsed_past_optional_fields() {
        let text = "36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
                    bad line\n";
        let mount = Mount { device: "98:0".into(), point: "/mnt 2".into(), source: "/dev/root".into() };
        assert_eq!(parse_mountinfo(text), [mount]);
    }

    #[test]
    fn only_block_devices_pass_rule_one() {
        let fake = Fake::new("block");
        let file = fake.root.join("disk.img");
        std::fs::write(&file, b"not a disk").unwrap();
        assert!(format!("{:#}", device_name(&file).unwrap_err()).contains("not a block device"));
        assert!(format!("{:#}", device_name(&fake.root).unwrap_err()).contains("not a block device"));
        assert!(format!("{:#}", device_name(&fake.root.join("missing")).unwrap_err()).contains("no such device"));
        // /dev/loop0 or the like, where there is one: a block device, named.
        if let Some(block) = ["/dev/loop0", "/dev/sda", "/dev/vda"].iter().find(|p| Path::new(p).exists()) {
            assert_eq!(device_name(Path::new(block)).unwrap(), Path::new(block).file_name().unwrap().to_str().unwrap());
        }
    }

    #[test]
    fn confirmation_needs_the_exact_name() {
        let card = Card {
            name: "sdb".into(),
            path: "/dev/sdb".into(),
            size: CARD_32GB_SECTORS * 512,
            model: "Generic STORAGE DEVICE".into(),
            bus: "USB",
        };
        let image = Path::new("target/tern-sdcard.img");
        let mut prompt = Vec::new();
        assert!(confirm(&card, image, &mut &b"sdb\n"[..], &mut prompt).unwrap());
        let prompt = String::from_utf8(prompt).unwrap();
        assert!(prompt.contains("/dev/sdb: Generic STORAGE DEVICE, 31.9 GB, USB"), "{prompt}");
        for answer in ["yes\n", "y\n", "/dev/sdb\n", "sdb1\n", ""] {
            assert!(!confirm(&card, image, &mut answer.as_bytes(), &mut Vec::new()).unwrap(), "{answer:?}");
        }
    }
}
