//! # tern-chainload: receive a kernel over the UART and start it
//!
//! The loader binary (`tern-chainload.img`, built by `cargo xtask` with
//! `xtask::chainload::build_loader`). It goes on the SD card as the
//! firmware's kernel; every boot it asks on the serial line for a kernel,
//! takes one from `cargo xtask push`, checks its CRC-32 and starts it at
//! 0x80000 with the firmware's `x0` (the device tree) unchanged. The
//! protocol, the memory map and why the loader lives at 96 MiB are in the
//! library (`src/lib.rs`) and `docs/chainload.md`.
//!
//! `start.s` moves the loader to its link address and calls
//! [`loader_main`], which sets up the UART, measures the boot information
//! at `x0` (a device tree's `totalsize`) to keep the kernel clear of it
//! (parking with a message if it leaves no room), prints a banner and loops:
//! request a kernel, read a header, receive the payload straight to
//! 0x80000, check it. Any failure (a refused header, a CRC mismatch, a
//! timeout) is reported as a tag and a readable line, and it asks again;
//! success returns the entry point to `start.s`, which jumps.
//!
//! Numbers are printed by hand (hex and decimal): `core::fmt` alone would
//! double the loader's size. Nothing here can panic in practice (indices
//! are fixed-size, arithmetic does not overflow for sizes under 4 GiB);
//! the panic handler just parks the core.
//!
//! What it leaves out: everything the library's "What it leaves out"
//! lists, and any board other than the Pi 4.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod uart;

/// Built for the host (clippy, `cargo test --workspace`), the binary is a
/// placeholder: the loader exists for `aarch64-unknown-none` alone.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("tern-chainload is a boot loader for the Raspberry Pi 4: build it with `cargo xtask build --loader`");
}

#[cfg(target_os = "none")]
mod loader {
    use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, CurrentEL};
    use tern_chainload::{
        BYTE_TIMEOUT_MS, HEADER_LEN, Header, LINK_ADDRESS, LOAD_ADDRESS, MagicScanner, REQUEST_INTERVAL_MS, Refusal,
        Reply, boot_information_len, may_peek, size_limit,
    };
    use tock_registers::interfaces::Readable;

    use crate::uart;

    /// What `start.s` stores once the loader has been copied, so that a
    /// stray core knows it may jump to the copy (any unlikely value would do).
    const RELOCATED: u64 = 0x7465_726e_2d63_6c64;
    /// CPTR_EL2's reserved-one bits only: FP/SIMD not trapped (as the
    /// kernel's start-up sets it).
    const CPTR_EL2: u64 = 0x33ff;

    core::arch::global_asm!(
        include_str!("start.s"),
        relocated = const RELOCATED,
        cptr_el2 = const CPTR_EL2,
    );

    /// Counter ticks per millisecond (CNTFRQ_EL0; 54 MHz on a Pi 4 if the
    /// firmware left it unset).
    fn ticks_per_ms() -> u64 {
        match CNTFRQ_EL0.get() {
            0 => 54_000,
            hz => hz / 1000,
        }
    }

    /// Counter ticks to wait after finding the receive FIFO empty before
    /// polling it again (about 2 us): hammering the UART's registers
    /// starves QEMU's I/O thread, which fills the FIFO (a push into QEMU
    /// ran at 4.7 KB/s without it, 8 KB/s with it); on a Pi it costs nothing:
    /// the 32-byte FIFO holds 2.8 ms of data at 115200 baud (and still 320 us
    /// at 1 Mbaud).
    const BACKOFF_TICKS: u64 = 100;

    /// A byte, or `None` when `timeout_ms` pass without one.
    fn get_within(timeout_ms: u64) -> Option<u8> {
        let start = CNTPCT_EL0.get();
        let limit = timeout_ms.saturating_mul(ticks_per_ms());
        loop {
            if let Some(byte) = uart::try_get() {
                return Some(byte);
            }
            let now = CNTPCT_EL0.get();
            if now.wrapping_sub(start) >= limit {
                return None;
            }
            // Back off a few microseconds before polling again.
            while CNTPCT_EL0.get().wrapping_sub(now) < BACKOFF_TICKS {
                core::hint::spin_loop();
            }
        }
    }

    #[inline(never)]
    fn text(line: &str) {
        uart::put_all(line.as_bytes());
    }

    #[inline(never)]
    fn hex(value: u64, digits: u32) {
        uart::put_all(b"0x");
        for shift in (0..digits).rev() {
            let nibble = ((value >> (shift * 4)) & 0xf) as u8;
            uart::put(if nibble < 10 { b'0' + nibble } else { b'a' + nibble - 10 });
        }
    }

    #[inline(never)]
    fn decimal(value: u64) {
        // All twenty digits from the right, then without the leading zeros.
        let mut digits = [0u8; 20];
        let mut rest = value;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let first = digits.iter().position(|&digit| digit != b'0').unwrap_or(digits.len() - 1);
        uart::put_all(digits.get(first..).unwrap_or_default());
    }

    /// Why one attempt failed, with what is worth printing.
    enum Failure {
        Refused(Reply, Header),
        BadHeader,
        Crc { expected: u32, received: u32 },
        Timeout { received: u32, expected: u32 },
    }

    /// Asks for a kernel until a header arrives, then receives and checks
    /// it. On success the kernel is at [`LOAD_ADDRESS`], whole.
    fn receive(limit: u32) -> Result<Header, Failure> {
        uart::put_all(&Reply::Request.tag());
        let mut scanner = MagicScanner::default();
        loop {
            match get_within(REQUEST_INTERVAL_MS) {
                Some(byte) if scanner.push(byte) => break,
                Some(_) => {}
                None => uart::put_all(&Reply::Request.tag()),
            }
        }
        let mut bytes = [0u8; HEADER_LEN];
        for (at, slot) in bytes.iter_mut().enumerate() {
            *slot = match tern_chainload::MAGIC.get(at) {
                Some(&magic) => magic,
                None => get_within(BYTE_TIMEOUT_MS)
                    .ok_or(Failure::Timeout { received: at as u32, expected: HEADER_LEN as u32 })?,
            };
        }
        let header = match Header::decode(&bytes, limit) {
            Ok(header) => header,
            Err(Refusal { reply: Reply::BadHeader, .. }) => return Err(Failure::BadHeader),
            Err(Refusal { reply, header }) => return Err(Failure::Refused(reply, header)),
        };
        uart::put_all(&Reply::HeaderAccepted.tag());

        let destination = LOAD_ADDRESS as *mut u8;
        let mut crc = tern_chainload::Crc32::new();
        for offset in 0..header.size {
            let byte =
                get_within(BYTE_TIMEOUT_MS).ok_or(Failure::Timeout { received: offset, expected: header.size })?;
            // SAFETY: offset < size <= limit <= MAX_KERNEL_SIZE, so the byte
            // lands in [LOAD_ADDRESS, LOAD_ADDRESS + limit). That is RAM (the
            // first 64.5 MiB, on every Pi 4) below the loader's window
            // (LINK_ADDRESS, checked at compile time in the library), above
            // the firmware's spin table (below LOAD_ADDRESS), and clear of the
            // boot information: `size_limit` chose `limit` so the range ends
            // before `[x0, x0 + len)` (len: a device tree's `totalsize`, else
            // 1) and refused when that range covers LOAD_ADDRESS. Nothing
            // else there is in use, and no Rust reference points into it.
            unsafe { destination.add(offset as usize).write_volatile(byte) };
            crc = crc.update(byte);
        }
        if crc.value() != header.crc {
            return Err(Failure::Crc { expected: header.crc, received: crc.value() });
        }
        Ok(header)
    }

    fn report(failure: &Failure, limit: u32) {
        let reply = match failure {
            Failure::Refused(reply, _) => *reply,
            Failure::BadHeader => Reply::BadHeader,
            Failure::Crc { .. } => Reply::CrcMismatch,
            Failure::Timeout { .. } => Reply::Timeout,
        };
        text("tern-chainload: ");
        text(reply.describe());
        match *failure {
            Failure::Refused(_, header) => {
                text(" (size ");
                decimal(header.size.into());
                text(", limit ");
                decimal(limit.into());
                text(", address ");
                hex(header.load_address, 16);
                text(")");
            }
            Failure::BadHeader => {}
            Failure::Crc { expected, received } => {
                text(" (header ");
                hex(expected.into(), 8);
                text(", received ");
                hex(received.into(), 8);
                text(")");
            }
            Failure::Timeout { received, expected } => {
                text(" (after ");
                decimal(received.into());
                text(" of ");
                decimal(expected.into());
                text(" bytes)");
            }
        }
        text("\r\n");
        uart::put_all(&reply.tag());
    }

    /// The loader, called by `start.s` on core 0 at [`LINK_ADDRESS`] with
    /// the boot information the firmware passed; returns the kernel's entry
    /// point once one has arrived whole.
    #[unsafe(no_mangle)]
    extern "C" fn loader_main(boot_information: u64) -> u64 {
        uart::init();
        let len = if may_peek(boot_information) {
            let words = boot_information as *const u32;
            // SAFETY: `may_peek` allows only an 8-byte aligned address with
            // its eight bytes below 1 GiB: RAM on every Pi 4 and on QEMU
            // raspi4b, so two aligned 32-bit reads cannot fault; they only
            // read, and no Rust reference aliases that memory.
            let (magic, total_size) = unsafe { (words.read_volatile(), words.add(1).read_volatile()) };
            boot_information_len(u32::from_be(magic), u32::from_be(total_size))
        } else {
            1
        };
        text("\r\ntern-chainload: Tern's serial boot loader at EL");
        decimal(CurrentEL.get() >> 2);
        text(", running at ");
        hex(LINK_ADDRESS, 8);
        text("; boot information at ");
        hex(boot_information, 8);
        text(" (");
        decimal(len);
        text(" bytes)");
        let limit = match size_limit(boot_information, len) {
            Ok(limit) => limit,
            Err(clash) => {
                text("\r\ntern-chainload: the boot information ");
                text(clash.describe());
                text(": nowhere safe to load a kernel; parked\r\n");
                uart::flush();
                park();
            }
        };
        text("\r\ntern-chainload: send a kernel for ");
        hex(LOAD_ADDRESS, 8);
        text(" (at most ");
        decimal(limit.into());
        text(" bytes) with `cargo xtask push`\r\n");
        loop {
            match receive(limit) {
                Ok(header) => {
                    text("tern-chainload: ");
                    decimal(header.size.into());
                    text(" bytes, CRC-32 ");
                    hex(header.crc.into(), 8);
                    text(" ok; starting the kernel at ");
                    hex(LOAD_ADDRESS, 8);
                    text("\r\n");
                    uart::put_all(&Reply::Loaded.tag());
                    uart::flush();
                    return LOAD_ADDRESS;
                }
                Err(failure) => report(&failure, limit),
            }
        }
    }

    /// Stops this core for good.
    fn park() -> ! {
        loop {
            aarch64_cpu::asm::wfe();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        text("\r\ntern-chainload: panic; parked\r\n");
        park()
    }
}
