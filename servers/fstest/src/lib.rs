//! # tern-fstest: client domains for the file server's boot scenario
//!
//! Two domains with the same code, `fs.client` and `fs.peer`, that the
//! harness's `fs` scenario runs tests in (chosen by the start argument;
//! each prints what it sees and returns its failures, or a handle):
//!
//! - [`test::ROUND`]: everything through RPC with [`tern_fs::Fs`] — mkdir,
//!   a 1 MiB file written and read back (lent buffers where the kernel
//!   allows; compared and checksummed), seek in every way, readdir, stat,
//!   small inline files, every error the protocol names but `Full`, and
//!   everything removed again;
//! - [`test::KEEP`], [`test::STEAL`], [`test::RELEASE`]: one domain opens a
//!   file and keeps the handle (returned to the scenario), the other tries
//!   every handle operation with that number and must be refused
//!   `BadHandle` each time, then the owner uses and closes it;
//! - [`test::FILL`], [`test::EMPTY`]: fill the store with 512 KiB files
//!   until `Full`, then with empty files until the nodes are `Full`
//!   (the scenario measures the server's heap in between), then remove it
//!   all and check the room is back.
//!
//! A test server: linked only into harness images. Safe Rust, no arch
//! crate, like every domain.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tern_fs::{CREATE, EXCLUSIVE, Fs, FsError, KIND_DIRECTORY, KIND_FILE, NAME_MAX, Stat, TRUNCATE, Whence};
use tern_inks::println;

tern_inks::domain!(CLIENT, "fs.client", main);
tern_inks::domain!(PEER, "fs.peer", main);

/// The tests, by start argument (the low 8 bits; a handle above them).
pub mod test {
    /// Every operation and error through RPC; returns failures.
    pub const ROUND: usize = 1;
    /// Open `/shared` and keep it open; returns the handle (0: failed).
    pub const KEEP: usize = 2;
    /// Use the handle in the argument's upper bits: every use must be
    /// `BadHandle`; returns failures.
    pub const STEAL: usize = 3;
    /// Use, then close the handle in the upper bits and remove `/shared`;
    /// returns failures.
    pub const RELEASE: usize = 4;
    /// Fill the store until `Full` (bytes, then nodes); returns failures.
    pub const FILL: usize = 5;
    /// Remove what `FILL` made and check the room is back; returns
    /// failures.
    pub const EMPTY: usize = 6;
}

/// The start argument for `test` with `handle`.
pub const fn with_handle(test: usize, handle: u32) -> usize {
    test | (handle as usize) << 8
}

/// Bytes of the large file.
pub const LARGE: usize = 1 << 20;
/// Bytes of each file `FILL` writes.
pub const FILL_FILE: usize = 512 << 10;

fn main(argument: usize) -> usize {
    let mut fs = match Fs::connect() {
        Ok(fs) => fs,
        Err(error) => {
            println!("[fs test] no file server: {error}");
            return 1;
        }
    };
    let handle = (argument >> 8) as u32;
    match argument & 0xff {
        test::ROUND => round(&mut fs),
        test::KEEP => keep(&mut fs),
        test::STEAL => steal(&mut fs, handle),
        test::RELEASE => release(&mut fs, handle),
        test::FILL => fill(&mut fs),
        test::EMPTY => empty(&mut fs),
        _ => 1,
    }
}

/// FNV-1a over `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3))
}

/// Counts failures and prints each check.
struct Checks {
    failures: usize,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool) {
        if ok {
            println!("[fs test] {what}: ok");
        } else {
            self.failures += 1;
            println!("[fs test] {what}: FAILED");
        }
    }

    fn expect<T: core::fmt::Debug + PartialEq>(&mut self, what: &str, got: T, wanted: T) {
        if got == wanted {
            println!("[fs test] {what}: {got:?}: ok");
        } else {
            self.failures += 1;
            println!("[fs test] {what}: {got:?}, wanted {wanted:?}: FAILED");
        }
    }
}

fn round(fs: &mut Fs) -> usize {
    let mut checks = Checks { failures: 0 };
    let c = &mut checks;
    c.expect("mkdir /t", fs.mkdir("/t"), Ok(()));
    c.expect("mkdir /t/sub", fs.mkdir("/t/sub"), Ok(()));

    // A mebibyte, through lent buffers where the kernel allows.
    let data: Vec<u8> = (0..LARGE as u32).map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let lent_before = fs.lent_calls();
    c.expect("write_file /t/big (1 MiB)", fs.write_file("/t/big", &data), Ok(()));
    c.expect("stat /t/big", fs.stat("/t/big"), Ok(Stat { kind: KIND_FILE, size: LARGE as u64 }));
    let back = fs.read_file("/t/big");
    let same = back.as_ref().is_ok_and(|back| *back == data);
    let sums = (checksum(&data), back.as_ref().map_or(0, |back| checksum(back)));
    c.check(
        &format!(
            "read_file /t/big: {} bytes, checksum {:#x} / {:#x}, equal",
            back.map_or(0, |b| b.len()),
            sums.0,
            sums.1
        ),
        same && sums.0 == sums.1,
    );
    println!(
        "[fs test] the 1 MiB write and read took {} lent calls (lending {})",
        fs.lent_calls() - lent_before,
        if fs.lending() { "allowed" } else { "refused: inline pieces" }
    );

    // Seek every way.
    let handle = fs.open("/t/big", 0);
    c.check("open /t/big", handle.is_ok());
    let handle = handle.unwrap_or(0);
    c.expect("seek start+1000", fs.seek(handle, Whence::Start, 1000), Ok(1000));
    let mut piece = [0u8; 16];
    c.expect(
        "read 16 there",
        fs.read(handle, &mut piece).map(|count| (count, piece == data[1000..1016])),
        Ok((16, true)),
    );
    c.expect("seek current-6", fs.seek(handle, Whence::Current, -6), Ok(1010));
    c.expect("seek end-10", fs.seek(handle, Whence::End, -10), Ok(LARGE as u64 - 10));
    let mut tail = [0u8; 100];
    c.expect(
        "read 100 at the end",
        fs.read(handle, &mut tail).map(|count| (count, tail[..10] == data[LARGE - 10..])),
        Ok((10, true)),
    );
    c.expect("seek before the start", fs.seek(handle, Whence::Start, -1), Err(FsError::BadRequest));
    c.expect("fstat", fs.fstat(handle).map(|stat| stat.size), Ok(LARGE as u64));
    c.expect("close", fs.close(handle), Ok(()));
    c.expect("close again", fs.close(handle), Err(FsError::BadHandle));

    // Small files, inline.
    c.expect("write_file /t/small", fs.write_file("/t/small", b"hello, fs"), Ok(()));
    c.expect("read_file /t/small", fs.read_file("/t/small").map(String::from_utf8), Ok(Ok("hello, fs".into())));
    let names: Result<Vec<(String, u8, u64)>, FsError> =
        fs.readdir("/t").map(|entries| entries.into_iter().map(|entry| (entry.name, entry.kind, entry.size)).collect());
    c.expect(
        "readdir /t",
        names,
        Ok(vec![
            ("big".into(), KIND_FILE, LARGE as u64),
            ("small".into(), KIND_FILE, 9),
            ("sub".into(), KIND_DIRECTORY, 0),
        ]),
    );

    // Every error.
    let long = format!("/t/{}", "n".repeat(NAME_MAX + 1));
    c.expect("open a missing file", fs.open("/t/none", 0), Err(FsError::NotFound));
    c.expect("create exclusive an existing file", fs.open("/t/big", CREATE | EXCLUSIVE), Err(FsError::Exists));
    c.expect("mkdir an existing directory", fs.mkdir("/t/sub"), Err(FsError::Exists));
    c.expect("open under a file", fs.open("/t/big/x", CREATE), Err(FsError::NotADirectory));
    c.expect("readdir a file", fs.readdir("/t/small").map(|_| ()), Err(FsError::NotADirectory));
    c.expect("open a directory", fs.open("/t/sub", 0), Err(FsError::IsADirectory));
    c.expect("unlink a full directory", fs.unlink("/t"), Err(FsError::NotEmpty));
    c.expect("close a handle never given", fs.close(0xdead_0001), Err(FsError::BadHandle));
    c.expect("mkdir a name too long", fs.mkdir(&long), Err(FsError::NameTooLong));
    c.expect("stat a relative path", fs.stat("relative"), Err(FsError::BadRequest));
    c.expect("open with an unknown flag", fs.open("/t/big", 0x80), Err(FsError::BadRequest));

    // Truncate, then clean up.
    let handle = fs.open("/t/big", TRUNCATE).unwrap_or(0);
    c.expect("truncated", fs.fstat(handle).map(|stat| stat.size), Ok(0));
    c.expect("close it", fs.close(handle), Ok(()));
    for path in ["/t/big", "/t/small", "/t/sub", "/t"] {
        c.expect(&format!("unlink {path}"), fs.unlink(path), Ok(()));
    }
    c.expect("readdir / at the end", fs.readdir("/").map(|entries| entries.len()), Ok(0));
    println!("[fs test] round: {} failure(s)", checks.failures);
    checks.failures
}

fn keep(fs: &mut Fs) -> usize {
    let handle = fs.write_file("/shared", b"the owner's").and_then(|()| fs.open("/shared", 0));
    println!("[fs test] the owner opened /shared: {:?}", handle.map(|_| "a handle"));
    handle.map_or(0, |handle| handle as usize)
}

fn steal(fs: &mut Fs, handle: u32) -> usize {
    let mut checks = Checks { failures: 0 };
    let mut bytes = [0u8; 8];
    checks.expect("another domain's handle: read", fs.read(handle, &mut bytes), Err(FsError::BadHandle));
    checks.expect("another domain's handle: write", fs.write(handle, b"mine now"), Err(FsError::BadHandle));
    checks.expect("another domain's handle: seek", fs.seek(handle, Whence::Start, 0), Err(FsError::BadHandle));
    checks.expect("another domain's handle: fstat", fs.fstat(handle), Err(FsError::BadHandle));
    checks.expect("another domain's handle: close", fs.close(handle), Err(FsError::BadHandle));
    checks.failures
}

fn release(fs: &mut Fs, handle: u32) -> usize {
    let mut checks = Checks { failures: 0 };
    let mut bytes = [0u8; 16];
    let read = fs.read(handle, &mut bytes).map(|count| bytes[..count].to_vec());
    checks.expect("the owner's handle still reads", read, Ok(b"the owner's".to_vec()));
    checks.expect("the owner closes it", fs.close(handle), Ok(()));
    checks.expect("unlink /shared", fs.unlink("/shared"), Ok(()));
    checks.failures
}

fn fill(fs: &mut Fs) -> usize {
    let mut checks = Checks { failures: 0 };
    let data = vec![0x5a; FILL_FILE];
    let _ = fs.mkdir("/fill");
    let mut files = 0;
    let outcome = loop {
        match fs.write_file(&format!("/fill/{files}"), &data) {
            Ok(()) => files += 1,
            Err(error) => break error,
        }
        if files > 64 {
            break FsError::BadRequest;
        }
    };
    println!("[fs test] filled with {files} files of {} KiB, then: {outcome}", FILL_FILE >> 10);
    checks.expect("writing past the byte bound", outcome, FsError::Full);
    let mut nodes = 0;
    let outcome = loop {
        match fs.open(&format!("/fill/e{nodes}"), CREATE).and_then(|handle| fs.close(handle)) {
            Ok(()) => nodes += 1,
            Err(error) => break error,
        }
        if nodes > 4096 {
            break FsError::BadRequest;
        }
    };
    println!("[fs test] then {nodes} empty files, then: {outcome}");
    checks.expect("creating past the node bound", outcome, FsError::Full);
    checks.expect("the server still answers", fs.stat("/fill").map(|stat| stat.kind), Ok(KIND_DIRECTORY));
    checks.failures
}

fn empty(fs: &mut Fs) -> usize {
    let mut checks = Checks { failures: 0 };
    let entries = fs.readdir("/fill").unwrap_or_default();
    let removed = entries.iter().filter(|entry| fs.unlink(&format!("/fill/{}", entry.name)).is_ok()).count();
    checks.expect("removed every file", removed, entries.len());
    checks.expect("unlink /fill", fs.unlink("/fill"), Ok(()));
    checks.expect("a 1 MiB file fits again", fs.write_file("/again", &vec![1; LARGE]), Ok(()));
    checks.expect("unlink /again", fs.unlink("/again"), Ok(()));
    checks.failures
}
