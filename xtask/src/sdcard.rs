//! A bootable Raspberry Pi 4 SD-card image, written without root.
//!
//! The Pi 4's boot ROM and EEPROM boot loader read the first partition of
//! the card when it is FAT16 or FAT32, load the VideoCore firmware
//! (`start4.elf`, with its memory-split table `fixup4.dat`) from it, and
//! the firmware then reads `config.txt`, the device tree
//! (`bcm2711-rpi-4-b.dtb`), `cmdline.txt` and the kernel (`kernel8.img`),
//! and starts the kernel at EL2 on core 0. [`write_card_image`] lays out
//! exactly that as one image file:
//!
//! * sector 0: an MBR (written by the `mbrman` crate) with one primary
//!   partition of type `0x0C` (FAT32 with LBA addressing), not marked
//!   active (the Pi's loader ignores the flag; Raspberry Pi OS images do
//!   not set it either), starting at 4 MiB ([`PARTITION_START`], the
//!   erase-block alignment SD cards are laid out for) and running to the
//!   end of the image;
//! * the partition: a FAT32 volume (formatted and filled by the `fatfs`
//!   crate) holding the files of a [`CardFiles`].
//!
//! The image is [`IMAGE_SIZE`] (64 MiB). FAT32 needs at least 65 525
//! clusters; with the 60 MiB partition that leaves, only 512-byte clusters
//! give that many (about 122 000; 1 KiB clusters would give about 61 000,
//! which is FAT16), so [`format_options`] asks for FAT32 and 512-byte
//! clusters explicitly rather than trusting the formatter's own choice
//! (which picks FAT16 below 512 MiB). The FAT type is read back after
//! writing and checked.
//!
//! The formatter leaves the boot sector's "hidden sectors" field at 0;
//! [`card_image`] sets it (and its copy in the backup boot sector) to the
//! partition's first sector, as partitioning tools do, for any reader that
//! goes by it rather than by the partition table.
//!
//! The image is reproducible: the disk signature and volume id are fixed,
//! and `fatfs` is built without its `chrono` feature and given a clock
//! ([`FatEpoch`]) that always says 1980-01-01 00:00, the FAT epoch (the
//! crate's own clock without `chrono` says "month 0, day 0", which is no
//! date). Same inputs, same bytes.
//!
//! [`CardFiles`] holds the bytes of every file, not paths: where the
//! firmware came from (a directory, Debian's package) is the caller's
//! business (`crate::firmware`), and so is which kernel goes on the card:
//! the production `kernel8.img`, or with `cargo xtask sdcard --chainload`
//! the serial chainloader (`crate::chainload`) in its place, with the same
//! `config.txt`.
//!
//! [`read_card_image`] reads an image back (partition table, FAT type,
//! every file): `cargo xtask sdcard` checks what it wrote with it, and the
//! host test (`tests/tests/sdcard.rs`) uses it beside its own raw checks.
//!
//! What it leaves out: writing to a device (`crate::card_device`), cards
//! for other Pi models (`start.elf`, `bootcode.bin`), overlays (the
//! `overlays/` folder: `dtoverlay=disable-bt` finds no `disable-bt.dtbo`
//! unless one is added by hand, and the firmware then goes on without it;
//! Tern routes GPIO14/15 to the PL011 itself), sub-directories, and
//! partitions beyond the first.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
/// The FAT variants, as [`CardContents::fat_type`] reports them.
pub use fatfs::FatType;

/// The size of the whole image.
pub const IMAGE_SIZE: u64 = 64 * 1024 * 1024;
/// The sector size of the MBR and of the FAT volume.
pub const SECTOR_SIZE: u32 = 512;
/// The first sector of the partition (4 MiB in).
pub const PARTITION_START: u32 = 8192;
/// The partition type: FAT32 with LBA addressing.
pub const PARTITION_TYPE: u8 = 0x0C;
/// The FAT32 cluster size (see the module text for why so small).
pub const CLUSTER_SIZE: u32 = 512;
/// The MBR's disk signature and the volume id: "Tern" in ASCII.
pub const DISK_SIGNATURE: [u8; 4] = *b"Tern";
/// The volume label.
pub const VOLUME_LABEL: [u8; 11] = *b"TERN-BOOT  ";

/// The name of the VideoCore firmware file for the Pi 4.
pub const START_FILE: &str = "start4.elf";
/// The name of its memory-split table.
pub const FIXUP_FILE: &str = "fixup4.dat";
/// The name of the Pi 4 Model B device tree.
pub const DEVICE_TREE_FILE: &str = "bcm2711-rpi-4-b.dtb";
/// The name of the kernel file `config.txt` points at.
pub const KERNEL_FILE: &str = "kernel8.img";
/// The firmware's configuration file.
pub const CONFIG_FILE: &str = "config.txt";
/// The kernel command line file.
pub const CMDLINE_FILE: &str = "cmdline.txt";

/// The keys of `config.txt`, in order, with why each is there.
pub const CONFIG_KEYS: &[(&str, &str, &str)] = &[
    ("arm_64bit", "1", "start the ARM cores in AArch64 state"),
    ("kernel", KERNEL_FILE, "the kernel file to load"),
    ("kernel_address", "0x80000", "where to load it: Tern's link address"),
    ("init_uart_clock", "48000000", "the PL011's reference clock (48 MHz): Tern's baud divisors assume it"),
    ("enable_uart", "1", "a stable core clock, so the UART's timing holds"),
    ("dtoverlay", "disable-bt", "keep Bluetooth off the PL011 (Tern routes GPIO14/15 to it itself)"),
];

/// Everything that goes on the card, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFiles {
    /// `start4.elf`.
    pub start: Vec<u8>,
    /// `fixup4.dat`.
    pub fixup: Vec<u8>,
    /// `bcm2711-rpi-4-b.dtb`, if one was found; without it the firmware
    /// hands the kernel ATAGs instead of a device tree.
    pub device_tree: Option<Vec<u8>>,
    /// What is stored as `kernel8.img`: the production kernel image, or
    /// the serial chainloader (`sdcard --chainload`).
    pub kernel: Vec<u8>,
    /// The text of `config.txt` ([`config_txt`]).
    pub config: String,
    /// The text of `cmdline.txt` (the kernel command line).
    pub cmdline: String,
}

impl CardFiles {
    /// The files in the order they are written: (name on the card, bytes).
    pub fn entries(&self) -> Vec<(&'static str, &[u8])> {
        let mut entries = vec![(START_FILE, self.start.as_slice()), (FIXUP_FILE, self.fixup.as_slice())];
        if let Some(device_tree) = &self.device_tree {
            entries.push((DEVICE_TREE_FILE, device_tree.as_slice()));
        }
        entries.push((CONFIG_FILE, self.config.as_bytes()));
        entries.push((CMDLINE_FILE, self.cmdline.as_bytes()));
        entries.push((KERNEL_FILE, self.kernel.as_slice()));
        entries
    }
}

/// The text of `config.txt`: a comment header, then [`CONFIG_KEYS`], each
/// with its reason as a comment above it.
pub fn config_txt() -> String {
    let mut text = String::from(
        "# Tern on a Raspberry Pi 4: the firmware's configuration.\n\
         # Written by `cargo xtask sdcard`; the card is rewritten whole next time.\n\
         # The kernel command line is in cmdline.txt.\n",
    );
    for (key, value, why) in CONFIG_KEYS {
        text.push_str(&format!("\n# {why}\n{key}={value}\n"));
    }
    text
}

/// The text of `cmdline.txt` for the kernel arguments `append` (one line;
/// empty when there are none).
pub fn cmdline_txt(append: Option<&str>) -> Result<String> {
    let line = append.unwrap_or("").trim();
    ensure!(!line.contains(['\n', '\r']), "the kernel command line must be one line, not {line:?}");
    Ok(if line.is_empty() { String::new() } else { format!("{line}\n") })
}

/// Parses `key=value` lines (comments and blank lines skipped), as the
/// firmware reads `config.txt`; for checking what was written.
pub fn parse_config(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// The clock the FAT volume's time stamps come from: always the FAT epoch,
/// 1980-01-01 00:00:00, so the image does not depend on when it was made.
#[derive(Debug)]
pub struct FatEpoch;

impl fatfs::TimeProvider for FatEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date { year: 1980, month: 1, day: 1 }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime { date: self.get_current_date(), time: fatfs::Time { hour: 0, min: 0, sec: 0, millis: 0 } }
    }
}

/// The file system options: the fixed clock.
fn filesystem_options() -> fatfs::FsOptions {
    static CLOCK: FatEpoch = FatEpoch;
    fatfs::FsOptions::new().time_provider(&CLOCK)
}

/// Sets the "hidden sectors" field (boot sector offset 28) of the boot
/// sector and of the FAT32 backup boot sector (whose sector number is at
/// offset 50) to `hidden`.
fn set_hidden_sectors(volume: &mut [u8], hidden: u32) -> Result<()> {
    let backup = usize::from(u16::from_le_bytes([volume[50], volume[51]]));
    ensure!(backup != 0 && backup < 32, "the FAT32 volume has no backup boot sector in its reserved area");
    for sector in [0, backup] {
        let at = sector * SECTOR_SIZE as usize + 28;
        volume[at..at + 4].copy_from_slice(&hidden.to_le_bytes());
    }
    Ok(())
}

/// The formatter's options: FAT32, 512-byte clusters and sectors, the
/// fixed volume id and label.
fn format_options(partition_sectors: u32) -> fatfs::FormatVolumeOptions {
    fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .bytes_per_sector(SECTOR_SIZE as u16)
        .bytes_per_cluster(CLUSTER_SIZE)
        .total_sectors(partition_sectors)
        .volume_id(u32::from_le_bytes(DISK_SIGNATURE))
        .volume_label(VOLUME_LABEL)
}

/// The whole image, in memory.
pub fn card_image(files: &CardFiles) -> Result<Vec<u8>> {
    let mut image = vec![0u8; IMAGE_SIZE as usize];
    let disk_sectors = (IMAGE_SIZE / u64::from(SECTOR_SIZE)) as u32;
    let partition_sectors = disk_sectors - PARTITION_START;

    // The partition table. CHS addresses for a 255-head, 63-sector
    // geometry, as partitioning tools write them; nothing on the Pi reads
    // them (type 0x0C means "use the LBA fields").
    let (heads, sectors_per_track) = (255u8, 63u8);
    let cylinders = disk_sectors.div_ceil(u32::from(heads) * u32::from(sectors_per_track)) as u16;
    let chs = |lba| mbrman::CHS::from_lba_exact(lba, cylinders, heads, sectors_per_track);
    let mut cursor = Cursor::new(image.as_mut_slice());
    let mut mbr = mbrman::MBR::new_from(&mut cursor, SECTOR_SIZE, DISK_SIGNATURE).context("creating the MBR")?;
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: chs(PARTITION_START).context("CHS address of the partition's start")?,
        sys: PARTITION_TYPE,
        last_chs: chs(disk_sectors - 1).context("CHS address of the partition's end")?,
        starting_lba: PARTITION_START,
        sectors: partition_sectors,
    };
    mbr.write_into(&mut cursor).context("writing the MBR")?;

    // The FAT32 volume, inside the partition's bytes only.
    let start = PARTITION_START as usize * SECTOR_SIZE as usize;
    let volume = &mut image[start..];
    fatfs::format_volume(Cursor::new(&mut *volume), format_options(partition_sectors))
        .context("formatting the FAT32 volume")?;
    set_hidden_sectors(volume, PARTITION_START)?;
    {
        let filesystem = fatfs::FileSystem::new(Cursor::new(&mut *volume), filesystem_options())
            .context("opening the new FAT32 volume")?;
        ensure!(
            filesystem.fat_type() == fatfs::FatType::Fat32,
            "the formatter made {:?}, not FAT32",
            filesystem.fat_type()
        );
        let root = filesystem.root_dir();
        for (name, bytes) in files.entries() {
            let mut file = root.create_file(name).with_context(|| format!("creating {name} on the card"))?;
            file.truncate().with_context(|| format!("emptying {name}"))?;
            file.write_all(bytes).with_context(|| format!("writing {name} ({} bytes) to the card", bytes.len()))?;
            file.flush().with_context(|| format!("writing {name}"))?;
        }
        drop(root);
        filesystem.unmount().context("closing the FAT32 volume")?;
    }
    Ok(image)
}

/// Writes the image of `files` to `out` (through a temporary file beside
/// it, renamed when complete).
pub fn write_card_image(out: &Path, files: &CardFiles) -> Result<()> {
    let image = card_image(files)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut temporary = out.as_os_str().to_owned();
    temporary.push(".partial");
    std::fs::write(&temporary, &image).with_context(|| format!("writing {}", Path::new(&temporary).display()))?;
    std::fs::rename(&temporary, out).with_context(|| format!("renaming the image to {}", out.display()))?;
    Ok(())
}

/// The first partition of an image, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// The boot flag (0x80 active, 0 not).
    pub boot: u8,
    /// The partition type.
    pub kind: u8,
    /// The first sector.
    pub start: u32,
    /// The length in sectors.
    pub sectors: u32,
}

/// What [`read_card_image`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardContents {
    /// Every used entry of the partition table.
    pub partitions: Vec<PartitionEntry>,
    /// The first partition's file system.
    pub fat_type: fatfs::FatType,
    /// Its cluster size in bytes.
    pub cluster_size: u32,
    /// The files in its root directory, in directory order: (name, bytes).
    pub files: Vec<(String, Vec<u8>)>,
}

impl CardContents {
    /// The bytes of the file `name` (names compare case-insensitively, as
    /// on FAT).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, bytes)| bytes.as_slice())
    }
}

/// Reads an image back: the partition table, then the file system of the
/// first partition and every file in its root directory.
pub fn read_card_image(image: &[u8]) -> Result<CardContents> {
    let mut cursor = Cursor::new(image);
    let mbr = mbrman::MBR::read_from(&mut cursor, SECTOR_SIZE).context("reading the MBR")?;
    let partitions: Vec<PartitionEntry> = mbr
        .iter()
        .filter(|(_, entry)| entry.is_used())
        .map(|(_, entry)| PartitionEntry {
            boot: entry.boot,
            kind: entry.sys,
            start: entry.starting_lba,
            sectors: entry.sectors,
        })
        .collect();
    let Some(first) = partitions.first() else {
        bail!("the image has no partition");
    };
    let start = u64::from(first.start) * u64::from(SECTOR_SIZE);
    let end = start + u64::from(first.sectors) * u64::from(SECTOR_SIZE);
    ensure!(end <= image.len() as u64, "the first partition ends at byte {end}, past the image ({})", image.len());
    let volume = &image[start as usize..end as usize];
    // fatfs wants a writable disk even to read; a copy of the volume it is.
    let mut copy = volume.to_vec();
    let filesystem = fatfs::FileSystem::new(Cursor::new(copy.as_mut_slice()), fatfs::FsOptions::new())
        .context("opening the FAT volume of the first partition")?;
    let mut files = Vec::new();
    for entry in filesystem.root_dir().iter() {
        let entry = entry.context("reading the root directory")?;
        if !entry.is_file() {
            continue;
        }
        let mut bytes = Vec::new();
        entry.to_file().read_to_end(&mut bytes).with_context(|| format!("reading {}", entry.file_name()))?;
        files.push((entry.file_name(), bytes));
    }
    Ok(CardContents { partitions, fat_type: filesystem.fat_type(), cluster_size: filesystem.cluster_size(), files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> CardFiles {
        CardFiles {
            start: b"start".repeat(1000),
            fixup: b"fixup".to_vec(),
            device_tree: None,
            kernel: (0..=255u8).cycle().take(300_000).collect(),
            config: config_txt(),
            cmdline: cmdline_txt(Some("tern.scenario=domains")).unwrap(),
        }
    }

    #[test]
    fn config_has_every_key_once_and_parses_back() {
        let parsed = parse_config(&config_txt());
        let expected: Vec<(String, String)> =
            CONFIG_KEYS.iter().map(|(key, value, _)| (key.to_string(), value.to_string())).collect();
        assert_eq!(parsed, expected);
        assert!(config_txt().starts_with("# Tern"));
    }

    #[test]
    fn cmdline_is_one_line() {
        assert_eq!(cmdline_txt(None).unwrap(), "");
        assert_eq!(cmdline_txt(Some("  ")).unwrap(), "");
        assert_eq!(cmdline_txt(Some("tern.scenario=domains")).unwrap(), "tern.scenario=domains\n");
        assert!(cmdline_txt(Some("a\nb")).is_err());
    }

    #[test]
    fn without_a_device_tree_the_card_has_no_dtb() {
        let files = files();
        let names: Vec<&str> = files.entries().iter().map(|(name, _)| *name).collect();
        assert_eq!(names, [START_FILE, FIXUP_FILE, CONFIG_FILE, CMDLINE_FILE, KERNEL_FILE]);
        let image = card_image(&files).unwrap();
        let contents = read_card_image(&image).unwrap();
        assert_eq!(contents.fat_type, fatfs::FatType::Fat32);
        assert_eq!(contents.cluster_size, CLUSTER_SIZE);
        assert!(contents.file(DEVICE_TREE_FILE).is_none());
        assert_eq!(contents.file(KERNEL_FILE), Some(files.kernel.as_slice()));
    }

    #[test]
    fn the_image_is_reproducible() {
        let files = files();
        assert!(card_image(&files).unwrap() == card_image(&files).unwrap());
    }
}
