//! The SD-card image, read back: what `cargo xtask sdcard` writes is what
//! a Raspberry Pi 4 boots from.
//!
//! The test lays out a card the way the command does, through the xtask
//! library, but with a small made-up kernel and a `--firmware` directory
//! of dummy files (the real firmware is Broadcom's and the real kernel
//! takes a cross build; neither changes the layout). Then it reads the
//! image file back twice over: by hand, from the raw bytes (the MBR's
//! partition entry and boot signature, the FAT32 boot sector's fields),
//! so a mistake shared by the writing and reading crates still shows; and
//! through `xtask::sdcard::read_card_image` (the `mbrman` and `fatfs`
//! readers) for the file system type and every file's exact contents, with
//! `config.txt` parsed back into its keys and values.
//!
//! What it leaves out: booting the card (no QEMU machine boots from an SD
//! image through the Pi's firmware), the Debian fetch of the firmware
//! (network; `cargo xtask sdcard` without `--firmware` does that), and
//! writing to a device (`xtask::card_device`'s unit tests cover its
//! refusal rules).

use std::path::PathBuf;

use xtask::firmware::from_directory;
use xtask::sdcard::{
    CMDLINE_FILE, CONFIG_FILE, CardFiles, DEVICE_TREE_FILE, FIXUP_FILE, FatType, IMAGE_SIZE, KERNEL_FILE,
    PARTITION_START, PARTITION_TYPE, START_FILE, cmdline_txt, config_txt, parse_config, read_card_image,
    write_card_image,
};

/// A fresh scratch directory for `test`.
fn scratch(test: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("tern-sdcard-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// A little-endian u16 / u32 at `at`.
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Writes a card from a dummy firmware directory (with a device tree when
/// `with_device_tree`) and returns the files and the image's bytes.
fn card(test: &str, with_device_tree: bool) -> (CardFiles, Vec<u8>) {
    let directory = scratch(test);
    let firmware_directory = directory.join("boot");
    std::fs::create_dir_all(&firmware_directory).unwrap();
    // Sizes that cross many 512-byte clusters, contents that differ per
    // byte, so a misplaced or truncated cluster shows.
    let start: Vec<u8> = (0..700_001u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(firmware_directory.join(START_FILE), &start).unwrap();
    std::fs::write(firmware_directory.join(FIXUP_FILE), b"fixup4 table\x00\x01\x02").unwrap();
    if with_device_tree {
        std::fs::write(firmware_directory.join(DEVICE_TREE_FILE), b"\xd0\x0d\xfe\xed dummy device tree").unwrap();
    }
    let firmware = from_directory(&firmware_directory).unwrap();
    assert_eq!(firmware.start, start);
    let files = CardFiles {
        start: firmware.start,
        fixup: firmware.fixup,
        device_tree: firmware.device_tree,
        kernel: (0..300_000u32).map(|i| (i % 251) as u8).collect(),
        config: config_txt(),
        cmdline: cmdline_txt(Some("tern.scenario=domains")).unwrap(),
    };
    let out = directory.join("card").join("tern-sdcard.img");
    write_card_image(&out, &files).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&directory).unwrap();
    (files, bytes)
}

#[test]
fn the_partition_table_has_one_fat32_lba_partition() {
    let (_, image) = card("mbr", true);
    assert_eq!(image.len() as u64, IMAGE_SIZE);
    assert_eq!(&image[510..512], &[0x55, 0xAA], "MBR boot signature");
    let entry = &image[446..462];
    assert_eq!(entry[0], 0x00, "the partition is not marked active");
    assert_eq!(entry[4], 0x0C, "type FAT32 (LBA)");
    assert_eq!(u32_at(entry, 8), 8192, "starts 4 MiB in");
    assert_eq!(u32_at(entry, 12), (IMAGE_SIZE / 512) as u32 - 8192, "runs to the end of the image");
    assert!(image[462..510].iter().all(|&b| b == 0), "entries 2 to 4 are empty");

    let contents = read_card_image(&image).unwrap();
    assert_eq!(contents.partitions.len(), 1);
    let partition = &contents.partitions[0];
    assert_eq!((partition.boot, partition.kind, partition.start), (0, PARTITION_TYPE, PARTITION_START));
}

#[test]
fn the_file_system_is_fat32() {
    let (_, image) = card("fat32", true);
    let boot = &image[PARTITION_START as usize * 512..][..512];
    assert_eq!(&boot[510..512], &[0x55, 0xAA], "boot sector signature");
    assert_eq!(u16_at(boot, 11), 512, "bytes per sector");
    assert_eq!(boot[13], 1, "one sector per cluster");
    assert_eq!(u16_at(boot, 17), 0, "FAT32 has no fixed root directory");
    assert_eq!(u16_at(boot, 22), 0, "FAT32 keeps its FAT size at offset 36");
    assert_eq!(&boot[82..90], b"FAT32   ", "file system type label");
    assert_eq!(u32_at(boot, 28), PARTITION_START, "hidden sectors: the partition's start");
    // FAT32 by cluster count (what decides the type): at least 65 525.
    let total = u32_at(boot, 32);
    let first_data = u32::from(u16_at(boot, 14)) + u32::from(boot[16]) * u32_at(boot, 36);
    let clusters = (total - first_data) / u32::from(boot[13]);
    assert!(clusters >= 65_525, "{clusters} clusters is FAT16 territory");

    assert_eq!(read_card_image(&image).unwrap().fat_type, FatType::Fat32);
}

#[test]
fn every_file_is_there_with_its_exact_contents() {
    let (files, image) = card("files", true);
    let contents = read_card_image(&image).unwrap();
    let names: Vec<&str> = contents.files.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, [START_FILE, FIXUP_FILE, DEVICE_TREE_FILE, CONFIG_FILE, CMDLINE_FILE, KERNEL_FILE]);
    for (name, bytes) in files.entries() {
        assert!(contents.file(name) == Some(bytes), "{name} differs from what was written");
    }
    assert_eq!(contents.file(CMDLINE_FILE), Some(&b"tern.scenario=domains\n"[..]));
    assert!(contents.file(DEVICE_TREE_FILE).unwrap().starts_with(b"\xd0\x0d\xfe\xed"));
}

#[test]
fn config_txt_reads_back_with_every_key() {
    let (_, image) = card("config", false);
    let contents = read_card_image(&image).unwrap();
    let text = std::str::from_utf8(contents.file(CONFIG_FILE).unwrap()).unwrap();
    let keys = parse_config(text);
    let expected = [
        ("arm_64bit", "1"),
        ("kernel", "kernel8.img"),
        ("kernel_address", "0x80000"),
        ("init_uart_clock", "48000000"),
        ("enable_uart", "1"),
        ("dtoverlay", "disable-bt"),
    ];
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(keys, expected);
    assert!(text.starts_with('#'), "a comment header");
    // Without a device tree in the firmware directory, none on the card.
    assert!(contents.file(DEVICE_TREE_FILE).is_none());
    assert_eq!(contents.files.len(), 5);
}
