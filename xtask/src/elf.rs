//! Converting the kernel ELF into the raw image the boot loader expects.
//!
//! Neither the Raspberry Pi firmware nor QEMU's `-kernel` for a raw binary
//! reads ELF: they copy a flat file to a fixed address (0x80000 on the Pi,
//! 0x4008_0000 on virt) and jump to its first byte. This machine has no
//! `objcopy` and no llvm-tools (PLATFORM.md), so the xtask does what
//! `objcopy -O binary` would: take every `PT_LOAD` segment with file bytes,
//! place it at its physical load address minus the lowest one, fill the
//! gaps with zeros.
//!
//! Because a wrongly linked image fails silently (the CPU just runs
//! garbage), [`elf_to_raw`] refuses anything but a little-endian 64-bit
//! AArch64 executable whose lowest load address *and* entry point are both
//! the address the loader will use. It also refuses overlapping segments
//! and images over [`MAX_IMAGE`], which would mean a segment was linked
//! somewhere absurd.
//!
//! What it leaves out: `.bss` and other `p_filesz == 0` memory is not
//! written (the kernel zeroes it), nor are the bytes of a segment past
//! `p_filesz`; sections are ignored entirely, only program headers count;
//! no compression, no headers (the Pi's `kernel8.img` has none).

use anyhow::{Context, Result, bail, ensure};
use object::Endianness;
use object::elf::{EM_AARCH64, FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};

/// The largest raw image accepted (a kernel is a few hundred KiB).
pub const MAX_IMAGE: u64 = 256 * 1024 * 1024;

/// Flattens the loadable segments of `elf` into a raw image that must be
/// loaded (and entered) at `load_address`.
pub fn elf_to_raw(elf: &[u8], load_address: u64) -> Result<Vec<u8>> {
    let header = FileHeader64::<Endianness>::parse(elf).context("not a 64-bit ELF file")?;
    let endian = header.endian().context("unknown ELF byte order")?;
    ensure!(endian == Endianness::Little, "the kernel ELF is big-endian; expected little-endian AArch64");
    ensure!(
        header.e_machine(endian) == EM_AARCH64,
        "the kernel ELF is for machine {}, not AArch64 ({EM_AARCH64})",
        header.e_machine(endian)
    );

    // (physical address, file bytes) of every loadable segment with data.
    let mut segments = Vec::new();
    for ph in header.program_headers(endian, elf).context("reading ELF program headers")? {
        if ph.p_type(endian) != PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let data = ph.data(endian, elf).map_err(|()| anyhow::anyhow!("an ELF segment's bytes lie outside the file"))?;
        segments.push((ph.p_paddr(endian), data));
    }
    segments.sort_by_key(|&(paddr, _)| paddr);

    let Some(&(base, _)) = segments.first() else {
        bail!("the kernel ELF has no loadable segment with file contents");
    };
    let entry = header.e_entry(endian);
    if base != load_address || entry != load_address {
        bail!(
            "the kernel must be linked to load and start at {load_address:#x}, \
             but its lowest load address is {base:#x} and its entry point is {entry:#x}\n\
             segments (paddr, size): {}",
            describe(&segments)
        );
    }

    let mut end = base;
    for &(paddr, data) in &segments {
        if paddr < end {
            bail!("ELF segments overlap at {paddr:#x}: {}", describe(&segments));
        }
        end = paddr.checked_add(data.len() as u64).context("ELF segment wraps around the address space")?;
    }
    let size = end - base;
    if size > MAX_IMAGE {
        bail!(
            "the raw image would be {size} bytes (over {MAX_IMAGE}): a segment is linked far \
             from the others: {}",
            describe(&segments)
        );
    }

    let mut image = vec![0u8; size as usize];
    for &(paddr, data) in &segments {
        let at = (paddr - base) as usize;
        image[at..at + data.len()].copy_from_slice(data);
    }
    Ok(image)
}

fn describe(segments: &[(u64, &[u8])]) -> String {
    segments.iter().map(|(paddr, data)| format!("({paddr:#x}, {})", data.len())).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One program header of a synthetic ELF.
    struct Seg {
        p_type: u32,
        paddr: u64,
        data: Vec<u8>,
        /// Extra memory size beyond the file bytes (a .bss).
        bss: u64,
    }

    fn load(paddr: u64, data: &[u8]) -> Seg {
        Seg { p_type: PT_LOAD, paddr, data: data.to_vec(), bss: 0 }
    }

    /// Writes a minimal little-endian ELF64 executable by hand: header,
    /// program headers, then each segment's bytes. Hand-written on purpose,
    /// so the reader is not tested against its own writer.
    fn synth(machine: u16, entry: u64, segs: &[Seg]) -> Vec<u8> {
        const EHSIZE: u64 = 64;
        const PHENTSIZE: u64 = 56;
        let mut f = Vec::new();
        f.extend(b"\x7fELF");
        f.extend([2, 1, 1, 0]); // ELFCLASS64, little-endian, version 1, SysV
        f.extend([0; 8]);
        f.extend(2u16.to_le_bytes()); // ET_EXEC
        f.extend(machine.to_le_bytes());
        f.extend(1u32.to_le_bytes());
        f.extend(entry.to_le_bytes());
        f.extend(EHSIZE.to_le_bytes()); // e_phoff
        f.extend(0u64.to_le_bytes()); // e_shoff
        f.extend(0u32.to_le_bytes()); // e_flags
        f.extend((EHSIZE as u16).to_le_bytes());
        f.extend((PHENTSIZE as u16).to_le_bytes());
        f.extend((segs.len() as u16).to_le_bytes());
        f.extend([0; 6]); // e_shentsize, e_shnum, e_shstrndx
        assert_eq!(f.len() as u64, EHSIZE);
        let mut offset = EHSIZE + PHENTSIZE * segs.len() as u64;
        for s in segs {
            f.extend(s.p_type.to_le_bytes());
            f.extend(5u32.to_le_bytes()); // R+X
            f.extend(offset.to_le_bytes());
            f.extend((s.paddr + 0xffff_0000_0000_0000).to_le_bytes()); // vaddr differs
            f.extend(s.paddr.to_le_bytes());
            f.extend((s.data.len() as u64).to_le_bytes());
            f.extend((s.data.len() as u64 + s.bss).to_le_bytes());
            f.extend(0x1000u64.to_le_bytes());
            offset += s.data.len() as u64;
        }
        for s in segs {
            f.extend(&s.data);
        }
        f
    }

    #[test]
    fn segments_are_placed_and_gaps_zeroed() {
        let elf = synth(
            EM_AARCH64,
            0x80000,
            &[
                load(0x80010, b"data"), // out of order on purpose
                load(0x80000, b"code"),
                Seg { bss: 0x100, ..load(0x80020, b"bss!") },
                Seg {
                    p_type: 4, // PT_NOTE: ignored
                    ..load(0x10, b"note")
                },
                load(0x90000, b""), // no file bytes: ignored
            ],
        );
        let raw = elf_to_raw(&elf, 0x80000).unwrap();
        let mut want = vec![0u8; 0x24];
        want[..4].copy_from_slice(b"code");
        want[0x10..0x14].copy_from_slice(b"data");
        want[0x20..0x24].copy_from_slice(b"bss!");
        assert_eq!(raw, want);
    }

    #[test]
    fn wrong_base_or_entry_is_refused() {
        let elf = synth(EM_AARCH64, 0x80000, &[load(0x81000, b"x")]);
        let err = elf_to_raw(&elf, 0x80000).unwrap_err().to_string();
        assert!(err.contains("lowest load address is 0x81000"), "{err}");
        let elf = synth(EM_AARCH64, 0x80004, &[load(0x80000, b"x")]);
        let err = elf_to_raw(&elf, 0x80000).unwrap_err().to_string();
        assert!(err.contains("entry point is 0x80004"), "{err}");
        let elf = synth(EM_AARCH64, 0x4008_0000, &[load(0x4008_0000, b"x")]);
        assert_eq!(elf_to_raw(&elf, 0x4008_0000).unwrap(), b"x");
        assert!(elf_to_raw(&elf, 0x80000).is_err());
    }

    #[test]
    fn other_machines_overlaps_and_huge_gaps_are_refused() {
        let x86 = synth(62, 0x80000, &[load(0x80000, b"x")]);
        assert!(elf_to_raw(&x86, 0x80000).unwrap_err().to_string().contains("machine 62"));
        let overlap = synth(EM_AARCH64, 0x80000, &[load(0x80000, b"abcd"), load(0x80002, b"x")]);
        assert!(elf_to_raw(&overlap, 0x80000).unwrap_err().to_string().contains("overlap"));
        let far = synth(EM_AARCH64, 0x80000, &[load(0x80000, b"a"), load(0x8000_0000, b"b")]);
        assert!(elf_to_raw(&far, 0x80000).unwrap_err().to_string().contains("far"));
        let empty = synth(EM_AARCH64, 0x80000, &[]);
        assert!(elf_to_raw(&empty, 0x80000).is_err());
        assert!(elf_to_raw(b"not an elf", 0x80000).is_err());
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let elf = synth(EM_AARCH64, 0x80000, &[load(0x80000, b"abcdefgh")]);
        assert!(elf_to_raw(&elf[..elf.len() - 4], 0x80000).is_err());
    }
}
