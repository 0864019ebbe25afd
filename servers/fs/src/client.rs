//! The client side: [`Fs`], what a shell, a compiler or a linker domain
//! holds to use the file server.
//!
//! One [`Fs`] per thread that calls (it owns its message buffers): look
//! the server up once ([`Fs::connect`]), then call methods named after the
//! operations — `open`, `read`, `write`, `seek`, `close`, `readdir`,
//! `mkdir`, `unlink`, `stat`, `fstat` — and the two a benchmark driver
//! wants most, [`Fs::read_file`] and [`Fs::write_file`].
//!
//! What it decides for its caller:
//!
//! - **Inline or lent, by size.** A read or write of at most
//!   [`INLINE_MAX`] bytes goes in the message; a longer one lends the
//!   caller's own slice to the server for the call (up to `LEND_MAX`,
//!   2 MiB, a call; more in several), so a 1 MiB file is one call and one
//!   copy each way. Where the kernel refuses a lend (`CannotLend`: the port
//!   is served by threads, or this domain is merged and `fs` protected) it
//!   goes on inline, in pieces, and stops trying to lend.
//! - **A bound handle when it can get one** (`tern_inks::bound`): the
//!   small calls (`seek`, `close`, `fstat`, short reads) then skip the
//!   port lookup in the kernel and, with both domains merged, the kernel
//!   altogether. A handle that went stale (`fs` changed mode) is bound
//!   again and the call made again — a stale handle reaches no server, so
//!   nothing is done twice. Lending calls go by name (bound handles do not
//!   lend).
//!
//! Left out: buffering (each call is a round trip: read in large pieces),
//! and sharing one [`Fs`] between threads.

use crate::protocol::{
    CREATE, EntryView, FsError, INLINE_MAX, KIND_DIRECTORY, Operation, PATH_MAX, SEEK_CURRENT, SEEK_END, SEEK_SET,
    Stat, TRUNCATE,
};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tern_core::abi::{Error, LEND_MAX, MESSAGE_MAX, PortName};
use tern_inks::bound::{self, Handle};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, MessageView};

/// Where a seek counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Whence {
    /// The start of the file.
    Start,
    /// The handle's offset.
    Current,
    /// The end of the file.
    End,
}

impl Whence {
    fn code(self) -> u32 {
        match self {
            Whence::Start => SEEK_SET,
            Whence::Current => SEEK_CURRENT,
            Whence::End => SEEK_END,
        }
    }
}

/// A directory entry, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// [`crate::KIND_FILE`] or [`KIND_DIRECTORY`].
    pub kind: u8,
    /// A file's bytes; a directory's entries.
    pub size: u64,
}

impl Entry {
    /// Whether it is a directory.
    pub fn is_directory(&self) -> bool {
        self.kind == KIND_DIRECTORY
    }
}

/// A connection to the file server.
pub struct Fs {
    port: PortName,
    bound: Option<Handle>,
    request: MessageBuffer,
    reply: MessageBuffer,
    /// Where replies to lending calls land (as bytes: the lending gate
    /// takes slices).
    lent_reply: Vec<u8>,
    /// Whether to lend for large transfers (until the kernel refuses).
    lending: bool,
    /// Calls that lent a buffer (and were answered).
    lent_calls: usize,
}

impl core::fmt::Debug for Fs {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("Fs")
            .field("port", &self.port)
            .field("bound", &self.bound.as_ref().map(Handle::number))
            .field("lending", &self.lending)
            .finish()
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Some(handle) = self.bound.take() {
            let _ = handle.unbind();
        }
    }
}

/// A payload word, or the reply was not what the operation promises.
fn reply_word(payload: &[u8]) -> Result<u32, FsError> {
    <[u8; 4]>::try_from(payload).map(u32::from_le_bytes).map_err(|_| FsError::Unexpected(crate::protocol::OK))
}

fn check_path(path: &str) -> Result<&[u8], FsError> {
    if path.len() > PATH_MAX { Err(FsError::NameTooLong) } else { Ok(path.as_bytes()) }
}

impl Fs {
    /// Look the server up by [`crate::NAME`] and connect.
    pub fn connect() -> Result<Fs, FsError> {
        Ok(Self::new(service::lookup(crate::NAME)?))
    }

    /// Use the server on `port` (a send right this domain holds).
    pub fn new(port: PortName) -> Fs {
        Fs {
            port,
            bound: bound::bind(port).ok(),
            request: MessageBuffer::new(),
            reply: MessageBuffer::new(),
            lent_reply: vec![0; MESSAGE_MAX],
            lending: true,
            lent_calls: 0,
        }
    }

    /// Calls so far that moved their bytes through a lent buffer.
    pub fn lent_calls(&self) -> usize {
        self.lent_calls
    }

    /// Whether large transfers are still lent (false once the kernel
    /// refused a lend: they go inline from then on).
    pub fn lending(&self) -> bool {
        self.lending
    }

    /// The server's port, in this domain's space.
    pub fn port(&self) -> PortName {
        self.port
    }

    /// Make `operation`; the reply's payload (its status was [`crate::OK`]).
    fn call(&mut self, operation: Operation<'_>) -> Result<&[u8], FsError> {
        operation.write_request(&mut self.request)?;
        let Fs { port, bound, request, reply, .. } = self;
        let label = match bound.as_ref().map(|handle| handle.send(request, reply)) {
            Some(Err(Error::StaleHandle)) => {
                // Bind again (or go by name), and call once more.
                if let Some(stale) = bound.take() {
                    let _ = stale.unbind();
                }
                *bound = bound::bind(*port).ok();
                match bound {
                    Some(handle) => handle.send(request, reply)?.label(),
                    None => service::call(*port, request, reply)?.label(),
                }
            }
            Some(answer) => answer?.label(),
            None => service::call(*port, request, reply)?.label(),
        };
        FsError::check(label)?;
        Ok(reply.payload())
    }

    /// Make `operation` lending `lent` (read-write if `writable`); the
    /// reply's payload. `None` if the kernel refused the lend.
    fn call_lending(&mut self, operation: Operation<'_>, lent: Lend<'_>) -> Result<Option<&[u8]>, FsError> {
        operation.write_request(&mut self.request)?;
        let request = self.request.message();
        let answer = match lent {
            Lend::Read(bytes) => gate::call_lending(self.port, request, &mut self.lent_reply, bytes),
            Lend::Write(bytes) => gate::call_lending_mut(self.port, request, &mut self.lent_reply, bytes),
        };
        let length = match answer {
            Err(Error::CannotLend) => {
                self.lending = false;
                return Ok(None);
            }
            answer => answer?,
        };
        self.lent_calls += 1;
        let view = MessageView::parse(self.lent_reply.get(..length).ok_or(FsError::Kernel(Error::BadMessage))?)?;
        FsError::check(view.label())?;
        Ok(Some(view.payload))
    }

    /// Open `path` ([`CREATE`], [`TRUNCATE`], [`crate::EXCLUSIVE`]); the
    /// handle, at offset 0.
    pub fn open(&mut self, path: &str, flags: u32) -> Result<u32, FsError> {
        let path = check_path(path)?;
        reply_word(self.call(Operation::Open { flags, path })?)
    }

    /// Read into `buffer` at the handle's offset: fills it unless the file
    /// ends first; the count (0 at the end).
    pub fn read(&mut self, handle: u32, buffer: &mut [u8]) -> Result<usize, FsError> {
        let mut done = 0;
        while done < buffer.len() {
            let rest = &mut buffer[done..];
            let (piece, count) = if rest.len() > INLINE_MAX && self.lending {
                let piece = rest.len().min(LEND_MAX);
                let operation = Operation::Read { handle, length: piece as u32 };
                match self.call_lending(operation, Lend::Write(&mut rest[..piece]))? {
                    Some(payload) => (piece, reply_word(payload)? as usize),
                    None => continue,
                }
            } else {
                let piece = rest.len().min(INLINE_MAX);
                let payload = self.call(Operation::Read { handle, length: piece as u32 })?;
                let count = payload.len().min(piece);
                rest[..count].copy_from_slice(&payload[..count]);
                (piece, count)
            };
            done += count;
            if count < piece {
                break;
            }
        }
        Ok(done)
    }

    /// Write all of `data` at the handle's offset; its length. Each piece
    /// (up to 2 MiB lent, or [`INLINE_MAX`] inline) is all or nothing: a
    /// [`FsError::Full`] part-way leaves the pieces before it written.
    pub fn write(&mut self, handle: u32, data: &[u8]) -> Result<usize, FsError> {
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            if rest.len() > INLINE_MAX && self.lending {
                let piece = rest.len().min(LEND_MAX);
                match self.call_lending(Operation::Write { handle, data: &[] }, Lend::Read(&rest[..piece]))? {
                    Some(payload) => done += reply_word(payload)? as usize,
                    None => continue,
                }
            } else {
                let piece = rest.len().min(INLINE_MAX);
                done += reply_word(self.call(Operation::Write { handle, data: &rest[..piece] })?)? as usize;
            }
        }
        Ok(done)
    }

    /// Move the handle's offset; the new one.
    pub fn seek(&mut self, handle: u32, whence: Whence, offset: i64) -> Result<u64, FsError> {
        let payload = self.call(Operation::Seek { handle, whence: whence.code(), offset })?;
        <[u8; 8]>::try_from(payload).map(u64::from_le_bytes).map_err(|_| FsError::Unexpected(crate::protocol::OK))
    }

    /// Close the handle.
    pub fn close(&mut self, handle: u32) -> Result<(), FsError> {
        self.call(Operation::Close { handle }).map(|_| ())
    }

    /// The entries of the directory at `path`, in name order (as many
    /// calls as it takes).
    pub fn readdir(&mut self, path: &str) -> Result<Vec<Entry>, FsError> {
        let path = check_path(path)?;
        let mut entries = Vec::new();
        loop {
            let cursor = u32::try_from(entries.len()).map_err(|_| FsError::BadRequest)?;
            let before = entries.len();
            for entry in EntryView::decode_all(self.call(Operation::Readdir { cursor, path })?) {
                let entry = entry.ok_or(FsError::Unexpected(crate::protocol::OK))?;
                entries.push(Entry { name: entry.name.into(), kind: entry.kind, size: entry.size });
            }
            if entries.len() == before {
                return Ok(entries);
            }
        }
    }

    /// Make a directory.
    pub fn mkdir(&mut self, path: &str) -> Result<(), FsError> {
        let path = check_path(path)?;
        self.call(Operation::Mkdir { path }).map(|_| ())
    }

    /// Remove a file or an empty directory.
    pub fn unlink(&mut self, path: &str) -> Result<(), FsError> {
        let path = check_path(path)?;
        self.call(Operation::Unlink { path }).map(|_| ())
    }

    /// The kind and size of what `path` names.
    pub fn stat(&mut self, path: &str) -> Result<Stat, FsError> {
        let path = check_path(path)?;
        Stat::decode(self.call(Operation::Stat { path })?).ok_or(FsError::Unexpected(crate::protocol::OK))
    }

    /// The kind and size of the handle's file.
    pub fn fstat(&mut self, handle: u32) -> Result<Stat, FsError> {
        Stat::decode(self.call(Operation::Fstat { handle })?).ok_or(FsError::Unexpected(crate::protocol::OK))
    }

    /// The whole file at `path`.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        let handle = self.open(path, 0)?;
        let result = (|| -> Result<Vec<u8>, FsError> {
            let size = usize::try_from(self.fstat(handle)?.size).map_err(|_| FsError::Full)?;
            let mut bytes = vec![0u8; size];
            let count = self.read(handle, &mut bytes)?;
            bytes.truncate(count);
            Ok(bytes)
        })();
        let closed = self.close(handle);
        let bytes = result?;
        closed.map(|()| bytes)
    }

    /// Make the file at `path` hold `data` (created, or emptied first).
    pub fn write_file(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let handle = self.open(path, CREATE | TRUNCATE)?;
        let written = self.write(handle, data);
        let closed = self.close(handle);
        written?;
        closed
    }
}

/// A lend, and which way.
enum Lend<'a> {
    /// Read-only, for a write.
    Read(&'a [u8]),
    /// Read-write, for a read.
    Write(&'a mut [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Off the target every call is `NoSuchCall` (on an x86 host; on an
    /// AArch64 host the gate's `svc` would reach the host's kernel).
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn off_the_target_calls_report_the_gate_error() {
        assert_eq!(Fs::connect().map(|_| ()), Err(FsError::Kernel(Error::NoSuchCall)));
        let mut fs = Fs::new(3);
        assert_eq!(fs.stat("/"), Err(FsError::Kernel(Error::NoSuchCall)));
        assert_eq!(fs.read(1, &mut [0; 4]), Err(FsError::Kernel(Error::NoSuchCall)));
        assert_eq!(fs.read(1, &mut vec![0; 100_000]), Err(FsError::Kernel(Error::NoSuchCall)));
        assert_eq!(fs.write(1, &[]), Ok(0), "nothing to write: no call");
        let long = "/".repeat(PATH_MAX + 1);
        assert_eq!(fs.mkdir(&long), Err(FsError::NameTooLong));
        assert_eq!(Whence::End.code(), SEEK_END);
        assert!(alloc::format!("{fs:?}").contains("lending: true"));
    }
}
