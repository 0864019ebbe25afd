//! # tern-fs: an in-memory file system behind a port
//!
//! `fs` keeps a tree of directories and files on its domain's heap
//! ([`tree`]) and serves it to any number of client domains, on its pool of
//! activations (and on server threads, if started with them): the client's
//! own thread migrates in, and in a merged `fs` a call is close to a
//! procedure call. It registers its port as [`NAME`] with the name service.
//!
//! ## Protocol
//!
//! The request's label is the operation, the reply's label its status;
//! integers are little-endian; a path is absolute UTF-8 (`/src/a.c`),
//! names at most [`NAME_MAX`] bytes, paths [`PATH_MAX`].
//!
//! | operation | request payload | reply payload (status [`OK`]) |
//! |---|---|---|
//! | [`OPEN`] = 1 | flags `u32` ([`CREATE`] 1, [`TRUNCATE`] 2, [`EXCLUSIVE`] 4), path | handle `u32` |
//! | [`READ`] = 2 | handle `u32`, length `u32` | the bytes at the offset (fewer at the end); with a read-write lent buffer: their count `u32`, the bytes in the buffer |
//! | [`WRITE`] = 3 | handle `u32`, the bytes — or the handle alone and the bytes in a lent buffer | count `u32` (all of them: a write is all or nothing) |
//! | [`SEEK`] = 4 | handle `u32`, whence `u32` ([`SEEK_SET`] 0, [`SEEK_CURRENT`] 1, [`SEEK_END`] 2), offset `i64` | the new offset `u64` |
//! | [`CLOSE`] = 5 | handle `u32` | — |
//! | [`READDIR`] = 6 | cursor `u32`, path | entries from the cursor'th on, as many as fit: kind `u8`, name length `u8`, size `u64`, name; none at the end |
//! | [`UNLINK`] = 7 | path | — |
//! | [`MKDIR`] = 8 | path | — |
//! | [`STAT`] = 9 | path | kind `u32` ([`KIND_FILE`] 1, [`KIND_DIRECTORY`] 2), size `u64` (a directory's: its entries) |
//! | [`FSTAT`] = 10 | handle `u32` | as `STAT` |
//!
//! Statuses, each an [`FsError`]: [`BAD_REQUEST`] 2, [`NOT_FOUND`] 3,
//! [`FULL`] 4, [`EXISTS`] 5, [`NOT_A_DIRECTORY`] 6, [`IS_A_DIRECTORY`] 7,
//! [`NOT_EMPTY`] 8, [`BAD_HANDLE`] 9, [`NAME_TOO_LONG`] 10,
//! [`TOO_MANY_OPEN`] 11, [`NO_CALLER`] 12. A refused operation changes
//! nothing.
//!
//! **Large transfers.** An inline read or write moves at most a message's
//! payload ([`tern_core::abi::PAYLOAD_MAX`], 32 KiB). For more, the client
//! lends its own buffer for the call (`gate::call_lending_mut` for a read,
//! `gate::call_lending` for a write, up to `LEND_MAX`, 2 MiB, a call): the
//! server copies straight between the file and the client's memory, one
//! copy, no message. [`Fs`] picks the way by size and falls back to
//! inline pieces where the kernel refuses a lend (`CannotLend`: a port
//! served by threads, or a merged client calling a protected `fs`).
//!
//! **Per-client open files.** Handles are not capabilities: a handle is a
//! small number in a table of the *calling domain's*, which the server
//! learns from the kernel (`gate::caller_domain`, kernel call `Caller`),
//! never from the request. So a domain can use and close only the files it
//! opened, whatever numbers it sends; another domain's handle is
//! [`BAD_HANDLE`]. A merged domain keeps its own domain number, so merging
//! the client, the server or both changes nothing. (Why this and not
//! unforgeable tokens or a port per client: `docs/servers.md`, "fs".)
//!
//! ## Bounds
//!
//! The domain's region is 8 MiB: stacks in the upper 4 (pool activations
//! of 96 KiB, server threads, the sidetrack), the heap in the lower 4. The
//! store holds at most [`STORE_BYTES_MAX`] (3 MiB) of file data in
//! [`CHUNK`]-byte chunks and [`NODES_MAX`] (1024) files and directories;
//! a client holds at most [`HANDLES_PER_CLIENT`] open files, and at most
//! [`CLIENTS_MAX`] domains hold open files at once. Past any of them the
//! answer is [`FULL`] or [`TOO_MANY_OPEN`], never a server out of memory.
//!
//! ## Left out
//!
//! Renames, links, permissions, times, shrinking a file other than to
//! zero, and closing a dead client's files (the kernel does not tell a
//! server that a client died; its handles stay until the bound). Every
//! operation runs under one lock, so a 1 MiB copy makes other clients
//! wait for it.
//!
//! A production server: in every image through `board/image`. It depends on
//! the in-kernel-server layer (`tern-inks`) and the kernel's ABI
//! (`tern-core`) only; it has no `unsafe`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod client;
pub mod protocol;
pub mod tree;

pub use client::{Entry, Fs, Whence};
pub use protocol::*;
pub use tree::{CHUNK, FileSystem, Limits, NODES_MAX, STORE_BYTES_MAX};

use tern_core::abi::{Error, PortName};
use tern_inks::gate;
use tern_inks::service::{self, Lent, PoolGrowth, Reply, Request, Service};

tern_inks::domain!(FS, "fs", main);

/// The name `fs` registers its port under.
pub const NAME: &str = "fs";

/// Who called: the calling domain's number, or the kernel's refusal.
pub type Identify = fn() -> Result<usize, Error>;

/// The file server: the file system under one lock, and how it learns who
/// called.
#[derive(Debug)]
pub struct Server {
    fs: tern_inks::sync::Mutex<FileSystem>,
    identify: Identify,
    growth: PoolGrowth,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

/// A reply that does not take what the operation answers: only with a
/// buffer smaller than the runtime's (a test's).
fn fits<T>(result: Result<T, Error>) -> Result<T, FsError> {
    result.map_err(|_| FsError::BadRequest)
}

impl Server {
    /// An empty file system with the server's bounds; the caller's identity
    /// from the kernel.
    pub fn new() -> Self {
        Self::with(FileSystem::new(), gate::caller_domain)
    }

    /// `fs`, with the caller's identity from `identify` (tests pretend to
    /// be several domains this way).
    pub fn with(fs: FileSystem, identify: Identify) -> Self {
        Server { fs: tern_inks::sync::Mutex::new(fs), identify, growth: PoolGrowth::standard() }
    }

    /// Run `with` on the file system, locked (for tests and statistics).
    pub fn inspect<Answer>(&self, with: impl FnOnce(&FileSystem) -> Answer) -> Answer {
        with(&self.fs.lock())
    }

    /// Answer `request` (with `lent`, if the client lent a buffer) as the
    /// domain `identify` names: the reply's payload is written, the status
    /// returned.
    pub fn answer(
        &self,
        request: &Request<'_>,
        lent: Option<Lent<'_>>,
        reply: &mut Reply<'_>,
        identify: Identify,
    ) -> u32 {
        match self.serve(request, lent, reply, identify) {
            Ok(()) => OK,
            Err(error) => {
                // Nothing half-written goes back with an error.
                let _ = reply.set_payload(&[]);
                error.status()
            }
        }
    }

    fn serve(
        &self,
        request: &Request<'_>,
        lent: Option<Lent<'_>>,
        reply: &mut Reply<'_>,
        identify: Identify,
    ) -> Result<(), FsError> {
        let operation = Operation::decode(request.label(), request.payload).ok_or(FsError::BadRequest)?;
        let client = || identify().map_err(|_| FsError::NoCaller);
        match operation {
            Operation::Open { flags, path } => {
                let handle = self.fs.lock().open(client()?, path, flags)?;
                fits(reply.set_payload(&handle.to_le_bytes()))
            }
            Operation::Read { handle, length } => {
                let client = client()?;
                let length = length as usize;
                match lent {
                    Some(Lent::ReadWrite(buffer)) => {
                        let into = buffer.get_mut(..length).ok_or(FsError::BadRequest)?;
                        let count = self.fs.lock().read(client, handle, into)?;
                        fits(reply.set_payload(&(count as u32).to_le_bytes()))
                    }
                    Some(Lent::ReadOnly(_)) => Err(FsError::BadRequest),
                    None => {
                        let into = fits(reply.payload_mut(length))?;
                        let count = self.fs.lock().read(client, handle, into)?;
                        fits(reply.payload_mut(count).map(|_| ()))
                    }
                }
            }
            Operation::Write { handle, data } => {
                let data = match &lent {
                    Some(_) if !data.is_empty() => return Err(FsError::BadRequest),
                    Some(lent) => lent.bytes(),
                    None => data,
                };
                let count = self.fs.lock().write(client()?, handle, data)?;
                fits(reply.set_payload(&(count as u32).to_le_bytes()))
            }
            Operation::Seek { handle, whence, offset } => {
                let offset = self.fs.lock().seek(client()?, handle, whence, offset)?;
                fits(reply.set_payload(&offset.to_le_bytes()))
            }
            Operation::Close { handle } => self.fs.lock().close(client()?, handle),
            Operation::Readdir { cursor, path } => {
                let capacity = reply.payload_capacity();
                let out = fits(reply.payload_mut(capacity))?;
                let (bytes, _) = self.fs.lock().readdir(path, cursor as usize, out)?;
                fits(reply.payload_mut(bytes).map(|_| ()))
            }
            Operation::Unlink { path } => self.fs.lock().unlink(path),
            Operation::Mkdir { path } => self.fs.lock().mkdir(path),
            Operation::Stat { path } => {
                let stat = self.fs.lock().stat(path)?;
                fits(reply.set_payload(&stat.encode()))
            }
            Operation::Fstat { handle } => {
                let stat = self.fs.lock().fstat(client()?, handle)?;
                fits(reply.set_payload(&stat.encode()))
            }
        }
    }
}

impl Service for Server {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        let status = self.answer(request, None, reply, self.identify);
        reply.set_label(status);
    }

    fn handle_lent(&self, request: &Request<'_>, lent: Lent<'_>, reply: &mut Reply<'_>) {
        let status = self.answer(request, Some(lent), reply, self.identify);
        reply.set_label(status);
    }

    fn pool_low(&self, _port: PortName, _free: usize) -> usize {
        self.growth.grant()
    }
}

/// The domain's main: create a port, register it as [`NAME`], serve it as
/// `mode` says.
fn main(mode: usize) -> usize {
    service::start(Some(NAME), Server::new(), mode)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::mem::MaybeUninit;
    use tern_core::abi::PAYLOAD_MAX;
    use tern_inks::service::{MessageBuffer, MessageView};

    fn as_a() -> Result<usize, Error> {
        Ok(7)
    }
    fn as_b() -> Result<usize, Error> {
        Ok(8)
    }
    fn nobody() -> Result<usize, Error> {
        Err(Error::NotInCall)
    }

    /// Send `operation` through the protocol to `server` as `who`, lending
    /// `lent`; the reply's label and payload.
    fn ask(server: &Server, who: Identify, operation: Operation<'_>, lent: Option<Lent<'_>>) -> (u32, Vec<u8>) {
        let mut request = MessageBuffer::new();
        operation.write_request(&mut request).unwrap();
        let mut storage = MessageBuffer::new().into_storage();
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        let status = server.answer(&request.view(), lent, &mut reply, who);
        (status, reply.payload().to_vec())
    }

    fn word(bytes: &[u8]) -> u32 {
        u32::from_le_bytes(bytes.try_into().unwrap())
    }

    #[test]
    fn every_operation_through_the_protocol() {
        let server = Server::with(FileSystem::new(), as_a);
        assert_eq!(ask(&server, as_a, Operation::Mkdir { path: b"/src" }, None), (OK, vec![]));
        let (status, handle) = ask(&server, as_a, Operation::Open { flags: CREATE, path: b"/src/a.c" }, None);
        assert_eq!(status, OK);
        let handle = word(&handle);
        let (status, count) = ask(&server, as_a, Operation::Write { handle, data: b"hello, file" }, None);
        assert_eq!((status, word(&count)), (OK, 11));
        let (status, offset) = ask(&server, as_a, Operation::Seek { handle, whence: SEEK_SET, offset: 7 }, None);
        assert_eq!((status, offset), (OK, 7u64.to_le_bytes().to_vec()));
        assert_eq!(ask(&server, as_a, Operation::Read { handle, length: 100 }, None), (OK, b"file".to_vec()));
        let stat = Stat { kind: KIND_FILE, size: 11 }.encode().to_vec();
        assert_eq!(ask(&server, as_a, Operation::Fstat { handle }, None), (OK, stat.clone()));
        assert_eq!(ask(&server, as_a, Operation::Stat { path: b"/src/a.c" }, None), (OK, stat));
        let (status, listing) = ask(&server, as_a, Operation::Readdir { cursor: 0, path: b"/src" }, None);
        assert_eq!(status, OK);
        let entries: Vec<_> = EntryView::decode_all(&listing).map(Option::unwrap).collect();
        assert_eq!(entries, [EntryView { kind: KIND_FILE, size: 11, name: "a.c" }]);
        assert_eq!(ask(&server, as_a, Operation::Readdir { cursor: 1, path: b"/src" }, None), (OK, vec![]));
        assert_eq!(ask(&server, as_a, Operation::Close { handle }, None), (OK, vec![]));
        assert_eq!(ask(&server, as_a, Operation::Unlink { path: b"/src/a.c" }, None), (OK, vec![]));
        assert_eq!(ask(&server, as_a, Operation::Unlink { path: b"/src" }, None), (OK, vec![]));
    }

    #[test]
    fn every_error_has_its_status() {
        let server = Server::with(FileSystem::new(), as_a);
        let status = |operation| ask(&server, as_a, operation, None).0;
        assert_eq!(status(Operation::Open { flags: 0, path: b"/none" }), NOT_FOUND);
        assert_eq!(status(Operation::Mkdir { path: b"/d" }), OK);
        assert_eq!(status(Operation::Mkdir { path: b"/d" }), EXISTS);
        assert_eq!(status(Operation::Open { flags: CREATE, path: b"/d/f" }), OK);
        assert_eq!(status(Operation::Mkdir { path: b"/d/f/g" }), NOT_A_DIRECTORY);
        assert_eq!(status(Operation::Open { flags: 0, path: b"/d" }), IS_A_DIRECTORY);
        assert_eq!(status(Operation::Unlink { path: b"/d" }), NOT_EMPTY);
        assert_eq!(status(Operation::Close { handle: 12345 }), BAD_HANDLE);
        let long = [b'x'; NAME_MAX + 2];
        let mut path = vec![b'/'];
        path.extend_from_slice(&long);
        assert_eq!(status(Operation::Mkdir { path: &path }), NAME_TOO_LONG);
        assert_eq!(status(Operation::Mkdir { path: b"relative" }), BAD_REQUEST);
        assert_eq!(status(Operation::Read { handle: 1, length: 4 }), BAD_HANDLE);
        let handle = word(&ask(&server, as_a, Operation::Open { flags: 0, path: b"/d/f" }, None).1);
        assert_eq!(status(Operation::Read { handle, length: (PAYLOAD_MAX + 1) as u32 }), BAD_REQUEST);
        assert_eq!(status(Operation::Seek { handle, whence: SEEK_SET, offset: -1 }), BAD_REQUEST);
        for _ in 2..HANDLES_PER_CLIENT {
            assert_eq!(status(Operation::Open { flags: 0, path: b"/d/f" }), OK);
        }
        assert_eq!(status(Operation::Open { flags: 0, path: b"/d/f" }), TOO_MANY_OPEN);
        assert_eq!(ask(&server, nobody, Operation::Open { flags: 0, path: b"/d/f" }, None).0, NO_CALLER);
        assert_eq!(ask(&server, nobody, Operation::Stat { path: b"/d/f" }, None).0, OK, "paths need no caller");
        let mut storage = [MaybeUninit::uninit(); 64];
        let mut reply = MessageBuffer::from_storage(&mut storage[..]).unwrap();
        assert_eq!(server.answer(&MessageView::new(99, b""), None, &mut reply, as_a), BAD_REQUEST);
        assert_eq!(server.answer(&MessageView::new(CLOSE, b"\0\0"), None, &mut reply, as_a), BAD_REQUEST);
        let full = Server::with(FileSystem::with_limits(Limits { bytes: CHUNK, ..Limits::STANDARD }), as_a);
        let handle = word(&ask(&full, as_a, Operation::Open { flags: CREATE, path: b"/f" }, None).1);
        let data = [1u8; CHUNK + 1];
        assert_eq!(ask(&full, as_a, Operation::Write { handle, data: &data }, None), (FULL, vec![]));
    }

    #[test]
    fn another_clients_handle_is_refused() {
        let server = Server::with(FileSystem::new(), as_a);
        let handle = word(&ask(&server, as_a, Operation::Open { flags: CREATE, path: b"/mine" }, None).1);
        for operation in [
            Operation::Read { handle, length: 4 },
            Operation::Write { handle, data: b"x" },
            Operation::Seek { handle, whence: SEEK_SET, offset: 0 },
            Operation::Fstat { handle },
            Operation::Close { handle },
        ] {
            assert_eq!(ask(&server, as_b, operation, None).0, BAD_HANDLE, "{operation:?}");
        }
        assert_eq!(ask(&server, as_a, Operation::Close { handle }, None).0, OK, "still the owner's");
    }

    #[test]
    fn large_transfers_go_through_lent_buffers() {
        let server = Server::with(FileSystem::new(), as_a);
        let handle = word(&ask(&server, as_a, Operation::Open { flags: CREATE, path: b"/big" }, None).1);
        let data: Vec<u8> = (0..1u32 << 20).map(|index| (index ^ index >> 9) as u8).collect();
        let write = Operation::Write { handle, data: b"" };
        let (status, count) = ask(&server, as_a, write, Some(Lent::ReadOnly(&data)));
        assert_eq!((status, word(&count)), (OK, 1 << 20));
        let inline_and_lent = Operation::Write { handle, data: b"x" };
        assert_eq!(ask(&server, as_a, inline_and_lent, Some(Lent::ReadOnly(&data))).0, BAD_REQUEST);
        ask(&server, as_a, Operation::Seek { handle, whence: SEEK_SET, offset: 0 }, None);
        let mut back = vec![0u8; (1 << 20) + 100];
        let read = Operation::Read { handle, length: back.len() as u32 };
        let (status, count) = ask(&server, as_a, read, Some(Lent::ReadWrite(&mut back)));
        assert_eq!((status, word(&count)), (OK, 1 << 20));
        assert!(back[..1 << 20] == data[..]);
        let too_long = Operation::Read { handle, length: 10 };
        assert_eq!(ask(&server, as_a, too_long, Some(Lent::ReadWrite(&mut [0; 9]))).0, BAD_REQUEST);
        assert_eq!(ask(&server, as_a, too_long, Some(Lent::ReadOnly(&[0; 10]))).0, BAD_REQUEST);
        let stat = Operation::Stat { path: b"/big" };
        assert_eq!(ask(&server, as_a, stat, Some(Lent::ReadOnly(&[0; 10]))).0, OK, "other operations ignore a lend");
    }

    /// On an x86 host the gate answers `NoSuchCall`; on an AArch64 host its
    /// `svc` would reach the host's kernel, so this is not run there.
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn starting_off_the_target_reports_the_gate_error() {
        assert_eq!(main(service::MODE_THREADS), Error::NoSuchCall as usize);
        let server = Server::new();
        assert_eq!(ask(&server, server.identify, Operation::Open { flags: CREATE, path: b"/f" }, None).0, NO_CALLER);
    }
}
