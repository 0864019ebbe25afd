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
//! 6. **Mounted** anywhere else (`/proc/mounts`): unmount it first. (A
//!    desktop that auto-mounts the card will do so when it is inserted:
//!    `umount` its partitions, then run the command.)
//! 7. **Not a removable device**: only a disk whose `removable` flag is
//!    set, that sits on a USB bus (its `/sys` path has a `usb` component:
//!    USB card readers and sticks), or that is an SD/MMC slot (`mmcblkN`,
//!    but not the `bootN`/`rpmb` areas of an eMMC) is accepted; an internal
//!    SATA or NVMe disk never is, mounted or not.
//!
//! Rule 7 still lets through a USB hard disk that is not mounted: the
//! confirmation, with its model and size, is the guard there.
//!
//! The rules are pure functions of a [`SystemView`] (the text of
//! `/proc/mounts` and `/proc/swaps` and a `/sys/block` directory), so the
//! tests run them over fake trees. Writing needs write permission on the
//! device; without it the error says how to write the image with `sudo dd`
//! instead (the xtask does not run itself under sudo).
//!
//! What it leaves out: unmounting for the person, ejecting the card
//! afterwards, Windows and macOS device names, and writing through
//! `udisks` or other desktop services.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// Mount points that make a disk a system disk.
pub const SYSTEM_MOUNT_POINTS: &[&str] = &["/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var", "/home"];

/// What the rules read of the running system.
#[derive(Debug, Clone)]
pub struct SystemView {
    /// The `/sys/block` directory (one entry per whole disk).
    pub sys_block: PathBuf,
    /// The text of `/proc/mounts`.
    pub mounts: String,
    /// The text of `/proc/swaps`.
    pub swaps: String,
}

impl SystemView {
    /// This machine's.
    pub fn read() -> Result<SystemView> {
        Ok(SystemView {
            sys_block: PathBuf::from("/sys/block"),
            mounts: std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?,
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

/// Unescapes `/proc/mounts`' octal escapes (`\040` for a space).
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
    let is_ours = |source: &str| devices.iter().any(|device| source == format!("/dev/{device}"));
    for line in system.swaps.lines().skip(1) {
        if let Some(source) = line.split_whitespace().next().filter(|source| is_ours(source)) {
            bail!("{} is a system disk: {source} is in use as swap", path.display());
        }
    }
    let mounted: Vec<(String, String)> = system
        .mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, point) = (fields.next()?, fields.next()?);
            is_ours(source).then(|| (source.to_string(), unescape(point)))
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
        let sources: Vec<&str> = mounted.iter().map(|(source, _)| source.as_str()).collect();
        bail!("{} is mounted ({}): unmount it first (`umount {}`)", path.display(), list.join(", "), sources.join(" "));
    }

    // Rule 7.
    let removable = attribute(&disk.join("removable")) == "1";
    let real = std::fs::canonicalize(&disk).unwrap_or_else(|_| disk.clone());
    let on_usb = real.components().any(|c| c.as_os_str().to_str().is_some_and(|part| part.starts_with("usb")));
    let memory_card = name.starts_with("mmcblk") && !name.contains("boot") && !name.contains("rpmb");
    let bus = if on_usb {
        "USB"
    } else if memory_card {
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
    let mut file = match std::fs::OpenOptions::new().read(true).write(true).open(&card.path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "no permission to write {}; write the image with: sudo dd if={} of={} bs=4M conv=fsync",
            card.path.display(),
            image_path.display(),
            card.path.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("opening {}", card.path.display())),
    };
    eprintln!("writing {} bytes to {} ...", image.len(), card.path.display());
    file.write_all(image).with_context(|| format!("writing {}", card.path.display()))?;
    file.sync_all().with_context(|| format!("flushing {}", card.path.display()))?;
    let mut back = vec![0u8; image.len()];
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    file.read_exact(&mut back).with_context(|| format!("reading {} back", card.path.display()))?;
    ensure!(back == image, "{} does not read back what was written", card.path.display());
    eprintln!("written and read back: {} ({})", card.path.display(), human_size(card.size));
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
            for (index, part) in parts.iter().enumerate() {
                std::fs::create_dir_all(real.join(part)).unwrap();
                std::fs::write(real.join(part).join("partition"), format!("{}\n", index + 1)).unwrap();
            }
            symlink(&real, self.root.join("block").join(name)).unwrap();
            real
        }

        fn view(&self, mounts: &str, swaps: &str) -> SystemView {
            SystemView { sys_block: self.root.join("block"), mounts: mounts.into(), swaps: swaps.into() }
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    const GB32: u64 = 62_333_952; // sectors of a "32 GB" card
    const IMAGE: u64 = 64 << 20;
    const MOUNTS: &str = "/dev/nvme0n1p2 / ext4 rw,relatime 0 0\n\
                          /dev/nvme0n1p1 /boot/efi vfat rw 0 0\n\
                          proc /proc proc rw 0 0\n";
    const SWAPS: &str = "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme0n1p3 partition 8388604 0 -2\n";

    fn error(result: Result<Card>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn a_usb_card_reader_is_accepted_and_described() {
        let fake = Fake::new("usb");
        fake.disk("sdb", "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0", GB32, false, &["sdb1"]);
        let card = check("sdb", &fake.view(MOUNTS, SWAPS), IMAGE).unwrap();
        assert_eq!(card.path, Path::new("/dev/sdb"));
        assert_eq!(card.size, GB32 * 512);
        assert_eq!(card.model, "Generic STORAGE DEVICE");
        assert_eq!(card.bus, "USB");
        assert_eq!(human_size(card.size), "31.9 GB");
    }

    #[test]
    fn an_sd_slot_and_a_removable_disk_are_accepted() {
        let fake = Fake::new("slots");
        fake.disk("mmcblk0", "platform/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa", GB32, false, &["mmcblk0p1"]);
        fake.disk("sdc", "pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0", GB32, true, &[]);
        let view = fake.view(MOUNTS, SWAPS);
        assert_eq!(check("mmcblk0", &view, IMAGE).unwrap().bus, "SD/MMC");
        assert_eq!(check("sdc", &view, IMAGE).unwrap().bus, "removable");
    }

    #[test]
    fn a_partition_is_refused_naming_its_disk() {
        let fake = Fake::new("partition");
        fake.disk("sdb", "usb1/1-1/host7/block", GB32, true, &["sdb1", "sdb2"]);
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
        let message = error(check("nvme0n1", &fake.view(MOUNTS, ""), IMAGE));
        assert!(message.contains("system disk") && message.contains("mounted at /"), "{message}");
        // Swap alone makes a system disk.
        let message = error(check("nvme0n1", &fake.view("", SWAPS), IMAGE));
        assert!(message.contains("swap"), "{message}");
        // /boot on a USB stick still makes it a system disk.
        fake.disk("sdd", "usb3/3-2/host9", GB32, true, &["sdd1"]);
        let message = error(check("sdd", &fake.view("/dev/sdd1 /boot ext2 rw 0 0\n", ""), IMAGE));
        assert!(message.contains("system disk"), "{message}");
        // A built-in SATA disk, not mounted at all: not removable, refused.
        let message = error(check("sda", &fake.view(MOUNTS, SWAPS), IMAGE));
        assert!(message.contains("built-in disk"), "{message}");
    }

    #[test]
    fn mounted_held_empty_and_small_cards_are_refused() {
        let fake = Fake::new("busy");
        let sdb = fake.disk("sdb", "usb1/1-1/host7", GB32, true, &["sdb1", "sdb2"]);
        let mounts = "/dev/sdb1 /media/me/My\\040Card vfat rw 0 0\n";
        let message = error(check("sdb", &fake.view(mounts, ""), IMAGE));
        assert!(
            message.contains("/dev/sdb1 at /media/me/My Card") && message.contains("umount /dev/sdb1"),
            "{message}"
        );
        // Something else's name that starts the same is not ours.
        assert!(check("sdb", &fake.view("/dev/sdb10 /mnt vfat rw 0 0\n", ""), IMAGE).is_ok());
        std::fs::create_dir_all(sdb.join("sdb2/holders/dm-0")).unwrap();
        assert!(error(check("sdb", &fake.view("", ""), IMAGE)).contains("dm-0"));
        fake.disk("sde", "usb1/1-2/host8", 0, true, &[]);
        assert!(error(check("sde", &fake.view("", ""), IMAGE)).contains("no medium"));
        fake.disk("sdf", "usb1/1-3/host9", 1000, true, &[]);
        assert!(error(check("sdf", &fake.view("", ""), IMAGE)).contains("less than the image"));
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
            size: GB32 * 512,
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
