//! The file server's wire protocol: operation labels, reply statuses, open
//! flags, and [`Operation`], which encodes requests for clients and
//! decodes them for the server — one piece of code for both sides, so they
//! cannot drift apart.
//!
//! Every integer is little-endian. A request's label is its operation, a
//! reply's label its status ([`OK`] or one of the errors, each named by
//! [`FsError`]). The table of operations and payloads is in the crate's
//! documentation and in `docs/servers.md`.
//!
//! Why fixed-width fields in front and the path last: the path is the one
//! field of variable length, so it needs no length prefix, and a request
//! decodes with a few `split_first_chunk`s and no allocation.
//!
//! Left out: paths as anything but UTF-8 text; a version field (the
//! protocol is as old as the image it is linked into: client and server
//! are built from this one file).

use core::mem::MaybeUninit;
use tern_core::abi::{Error, PAYLOAD_MAX};
use tern_inks::service::MessageBuffer;

/// Request label: open (or create) a file; reply: its handle (`u32`).
pub const OPEN: u32 = 1;
/// Request label: read at the handle's offset; reply: the bytes (inline),
/// or their count (`u32`) when a read-write buffer was lent.
pub const READ: u32 = 2;
/// Request label: write at the handle's offset; reply: the count (`u32`).
pub const WRITE: u32 = 3;
/// Request label: move the handle's offset; reply: the new offset (`u64`).
pub const SEEK: u32 = 4;
/// Request label: close a handle.
pub const CLOSE: u32 = 5;
/// Request label: list a directory from a cursor; reply: entries.
pub const READDIR: u32 = 6;
/// Request label: remove a file or an empty directory.
pub const UNLINK: u32 = 7;
/// Request label: make a directory.
pub const MKDIR: u32 = 8;
/// Request label: a path's kind and size; reply: [`Stat`].
pub const STAT: u32 = 9;
/// Request label: an open file's kind and size; reply: [`Stat`].
pub const FSTAT: u32 = 10;

/// Reply label: done.
pub const OK: u32 = 0;
/// Reply label: the request was malformed (short payload, unknown
/// operation or flag, a path that is not absolute UTF-8 or names `.` or
/// `..`, a read longer than a reply or a lent buffer, a seek before 0).
pub const BAD_REQUEST: u32 = 2;
/// Reply label: no such file or directory.
pub const NOT_FOUND: u32 = 3;
/// Reply label: the store's bytes or nodes would pass their bounds;
/// nothing was changed.
pub const FULL: u32 = 4;
/// Reply label: the name exists already (`mkdir`, exclusive create).
pub const EXISTS: u32 = 5;
/// Reply label: a path component (or `readdir`'s path) is a file.
pub const NOT_A_DIRECTORY: u32 = 6;
/// Reply label: the path names a directory where a file is needed.
pub const IS_A_DIRECTORY: u32 = 7;
/// Reply label: `unlink` of a directory that has entries.
pub const NOT_EMPTY: u32 = 8;
/// Reply label: the handle is not one of the calling domain's open files.
pub const BAD_HANDLE: u32 = 9;
/// Reply label: a name or a path longer than [`NAME_MAX`] / [`PATH_MAX`].
pub const NAME_TOO_LONG: u32 = 10;
/// Reply label: the calling domain holds [`HANDLES_PER_CLIENT`] open files,
/// or [`CLIENTS_MAX`] domains hold open files.
pub const TOO_MANY_OPEN: u32 = 11;
/// Reply label: the kernel would not say which domain called (the server
/// was not entered by a call: never so on the target).
pub const NO_CALLER: u32 = 12;

/// [`OPEN`] flag: create the file if it does not exist.
pub const CREATE: u32 = 1;
/// [`OPEN`] flag: empty the file.
pub const TRUNCATE: u32 = 2;
/// [`OPEN`] flag, with [`CREATE`]: [`EXISTS`] if the file exists already.
pub const EXCLUSIVE: u32 = 4;
/// Every [`OPEN`] flag; other bits are [`BAD_REQUEST`].
pub const FLAGS: u32 = CREATE | TRUNCATE | EXCLUSIVE;

/// [`SEEK`] whence: from the start.
pub const SEEK_SET: u32 = 0;
/// [`SEEK`] whence: from the current offset.
pub const SEEK_CURRENT: u32 = 1;
/// [`SEEK`] whence: from the end.
pub const SEEK_END: u32 = 2;

/// [`Stat`] kind (and readdir entry kind): a file.
pub const KIND_FILE: u8 = 1;
/// [`Stat`] kind (and readdir entry kind): a directory.
pub const KIND_DIRECTORY: u8 = 2;

/// Longest name of one file or directory, in bytes.
pub const NAME_MAX: usize = 64;
/// Longest path, in bytes.
pub const PATH_MAX: usize = 1024;
/// Open files one client domain may hold at once.
pub const HANDLES_PER_CLIENT: usize = 32;
/// Client domains that may hold open files at once.
pub const CLIENTS_MAX: usize = 32;

/// Most bytes a read or write moves inline, in the message: a reply's
/// payload, less room for the fields in front of a write's data. Longer
/// transfers go through a lent buffer.
pub const INLINE_MAX: usize = PAYLOAD_MAX - 8;

/// Bytes of a readdir entry before its name: kind, name length, size.
pub const ENTRY_HEADER: usize = 10;

/// Bytes of a [`Stat`] reply.
pub const STAT_BYTES: usize = 12;

/// What went wrong, by name: each server status but [`OK`], and what a
/// client can meet on the way (a kernel error, a status it does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// [`BAD_REQUEST`].
    BadRequest,
    /// [`NOT_FOUND`].
    NotFound,
    /// [`FULL`].
    Full,
    /// [`EXISTS`].
    Exists,
    /// [`NOT_A_DIRECTORY`].
    NotADirectory,
    /// [`IS_A_DIRECTORY`].
    IsADirectory,
    /// [`NOT_EMPTY`].
    NotEmpty,
    /// [`BAD_HANDLE`].
    BadHandle,
    /// [`NAME_TOO_LONG`].
    NameTooLong,
    /// [`TOO_MANY_OPEN`].
    TooManyOpen,
    /// [`NO_CALLER`].
    NoCaller,
    /// The call itself failed (the kernel's error: no server, a lend
    /// refused, ...); client side only.
    Kernel(Error),
    /// A reply label this protocol does not know, or a reply whose payload
    /// is not what its operation promises; client side only.
    Unexpected(u32),
}

impl FsError {
    /// The status a server replies with for this error
    /// ([`FsError::Kernel`] and [`FsError::Unexpected`] are never replied:
    /// [`BAD_REQUEST`]).
    pub const fn status(self) -> u32 {
        match self {
            FsError::BadRequest | FsError::Kernel(_) | FsError::Unexpected(_) => BAD_REQUEST,
            FsError::NotFound => NOT_FOUND,
            FsError::Full => FULL,
            FsError::Exists => EXISTS,
            FsError::NotADirectory => NOT_A_DIRECTORY,
            FsError::IsADirectory => IS_A_DIRECTORY,
            FsError::NotEmpty => NOT_EMPTY,
            FsError::BadHandle => BAD_HANDLE,
            FsError::NameTooLong => NAME_TOO_LONG,
            FsError::TooManyOpen => TOO_MANY_OPEN,
            FsError::NoCaller => NO_CALLER,
        }
    }

    /// A reply's status as a result: `Ok` for [`OK`].
    pub const fn check(status: u32) -> Result<(), FsError> {
        Err(match status {
            OK => return Ok(()),
            BAD_REQUEST => FsError::BadRequest,
            NOT_FOUND => FsError::NotFound,
            FULL => FsError::Full,
            EXISTS => FsError::Exists,
            NOT_A_DIRECTORY => FsError::NotADirectory,
            IS_A_DIRECTORY => FsError::IsADirectory,
            NOT_EMPTY => FsError::NotEmpty,
            BAD_HANDLE => FsError::BadHandle,
            NAME_TOO_LONG => FsError::NameTooLong,
            TOO_MANY_OPEN => FsError::TooManyOpen,
            NO_CALLER => FsError::NoCaller,
            other => FsError::Unexpected(other),
        })
    }

    /// The error's name, as a shell would print it.
    pub const fn name(self) -> &'static str {
        match self {
            FsError::BadRequest => "bad request",
            FsError::NotFound => "no such file or directory",
            FsError::Full => "file system full",
            FsError::Exists => "already exists",
            FsError::NotADirectory => "not a directory",
            FsError::IsADirectory => "is a directory",
            FsError::NotEmpty => "directory not empty",
            FsError::BadHandle => "bad handle",
            FsError::NameTooLong => "name too long",
            FsError::TooManyOpen => "too many open files",
            FsError::NoCaller => "caller unknown",
            FsError::Kernel(error) => error.name(),
            FsError::Unexpected(_) => "unexpected reply",
        }
    }
}

impl core::fmt::Display for FsError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FsError::Unexpected(label) => write!(formatter, "unexpected reply ({label})"),
            other => formatter.write_str(other.name()),
        }
    }
}

impl From<Error> for FsError {
    fn from(error: Error) -> Self {
        FsError::Kernel(error)
    }
}

/// A file's or directory's kind and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// [`KIND_FILE`] or [`KIND_DIRECTORY`].
    pub kind: u8,
    /// A file's bytes; a directory's entries.
    pub size: u64,
}

impl Stat {
    /// Whether it is a directory.
    pub fn is_directory(&self) -> bool {
        self.kind == KIND_DIRECTORY
    }

    /// The reply payload: kind (`u32`), size (`u64`).
    pub fn encode(&self) -> [u8; STAT_BYTES] {
        let mut bytes = [0u8; STAT_BYTES];
        bytes[..4].copy_from_slice(&u32::from(self.kind).to_le_bytes());
        bytes[4..].copy_from_slice(&self.size.to_le_bytes());
        bytes
    }

    /// Decode a reply payload.
    pub fn decode(bytes: &[u8]) -> Option<Stat> {
        let (kind, size) = bytes.split_first_chunk::<4>()?;
        let kind = u8::try_from(u32::from_le_bytes(*kind)).ok()?;
        let size = u64::from_le_bytes(*<&[u8; 8]>::try_from(size).ok()?);
        Some(Stat { kind, size })
    }
}

/// One directory entry, as a readdir reply carries it (the name borrowed
/// from the reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// [`KIND_FILE`] or [`KIND_DIRECTORY`].
    pub kind: u8,
    /// A file's bytes; a directory's entries.
    pub size: u64,
    /// The name (no `/`).
    pub name: &'a str,
}

impl<'a> EntryView<'a> {
    /// Bytes this entry takes in a reply.
    pub fn encoded_length(&self) -> usize {
        ENTRY_HEADER + self.name.len()
    }

    /// Append the entry to `out` at `at`: the bytes after, or `None` (and
    /// nothing written) if it does not fit or its name is too long.
    pub fn encode_into(&self, out: &mut [u8], at: usize) -> Option<usize> {
        let end = at.checked_add(self.encoded_length())?;
        let name_length = u8::try_from(self.name.len()).ok()?;
        let slot = out.get_mut(at..end)?;
        slot[0] = self.kind;
        slot[1] = name_length;
        slot[2..ENTRY_HEADER].copy_from_slice(&self.size.to_le_bytes());
        slot[ENTRY_HEADER..].copy_from_slice(self.name.as_bytes());
        Some(end)
    }

    /// The entries of a readdir reply, in order; stops at the first that
    /// does not decode.
    pub fn decode_all(bytes: &'a [u8]) -> impl Iterator<Item = Option<EntryView<'a>>> + 'a {
        let mut rest = bytes;
        core::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let entry = (|| {
                let (header, tail) = rest.split_first_chunk::<ENTRY_HEADER>()?;
                let name_length = usize::from(header[1]);
                let name = core::str::from_utf8(tail.get(..name_length)?).ok()?;
                let size = u64::from_le_bytes(*header[2..].first_chunk::<8>()?);
                rest = &tail[name_length..];
                Some(EntryView { kind: header[0], size, name })
            })();
            if entry.is_none() {
                rest = &[];
            }
            Some(entry)
        })
    }
}

/// A request to the file server, decoded (or to be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// Open `path` with `flags`.
    Open {
        /// [`CREATE`], [`TRUNCATE`], [`EXCLUSIVE`].
        flags: u32,
        /// An absolute path.
        path: &'a [u8],
    },
    /// Read up to `length` bytes at the handle's offset.
    Read {
        /// The handle.
        handle: u32,
        /// Bytes wanted.
        length: u32,
    },
    /// Write `data` (empty when it comes in a lent buffer) at the
    /// handle's offset.
    Write {
        /// The handle.
        handle: u32,
        /// The bytes, inline.
        data: &'a [u8],
    },
    /// Move the handle's offset.
    Seek {
        /// The handle.
        handle: u32,
        /// [`SEEK_SET`], [`SEEK_CURRENT`] or [`SEEK_END`].
        whence: u32,
        /// Signed distance from `whence`.
        offset: i64,
    },
    /// Close the handle.
    Close {
        /// The handle.
        handle: u32,
    },
    /// List the directory at `path` from entry `cursor` on.
    Readdir {
        /// Entries to skip (those earlier replies carried).
        cursor: u32,
        /// An absolute path.
        path: &'a [u8],
    },
    /// Remove the file or empty directory at `path`.
    Unlink {
        /// An absolute path.
        path: &'a [u8],
    },
    /// Make a directory at `path`.
    Mkdir {
        /// An absolute path.
        path: &'a [u8],
    },
    /// Kind and size of `path`.
    Stat {
        /// An absolute path.
        path: &'a [u8],
    },
    /// Kind and size of the handle's file.
    Fstat {
        /// The handle.
        handle: u32,
    },
}

/// `bytes` as `u32` then the rest.
fn word(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

/// Exactly one `u32`.
fn only_word(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(*<&[u8; 4]>::try_from(bytes).ok()?))
}

impl<'a> Operation<'a> {
    /// Decode a request's label and payload; `None` if it is not one.
    pub fn decode(label: u32, payload: &'a [u8]) -> Option<Self> {
        Some(match label {
            OPEN => {
                let (flags, path) = word(payload)?;
                Operation::Open { flags, path }
            }
            READ => {
                let (handle, rest) = word(payload)?;
                Operation::Read { handle, length: only_word(rest)? }
            }
            WRITE => {
                let (handle, data) = word(payload)?;
                Operation::Write { handle, data }
            }
            SEEK => {
                let (handle, rest) = word(payload)?;
                let (whence, rest) = word(rest)?;
                let offset = i64::from_le_bytes(*<&[u8; 8]>::try_from(rest).ok()?);
                Operation::Seek { handle, whence, offset }
            }
            CLOSE => Operation::Close { handle: only_word(payload)? },
            READDIR => {
                let (cursor, path) = word(payload)?;
                Operation::Readdir { cursor, path }
            }
            UNLINK => Operation::Unlink { path: payload },
            MKDIR => Operation::Mkdir { path: payload },
            STAT => Operation::Stat { path: payload },
            FSTAT => Operation::Fstat { handle: only_word(payload)? },
            _ => return None,
        })
    }

    /// The request label for this operation.
    pub fn label(&self) -> u32 {
        match self {
            Operation::Open { .. } => OPEN,
            Operation::Read { .. } => READ,
            Operation::Write { .. } => WRITE,
            Operation::Seek { .. } => SEEK,
            Operation::Close { .. } => CLOSE,
            Operation::Readdir { .. } => READDIR,
            Operation::Unlink { .. } => UNLINK,
            Operation::Mkdir { .. } => MKDIR,
            Operation::Stat { .. } => STAT,
            Operation::Fstat { .. } => FSTAT,
        }
    }

    /// Bytes of this operation's request payload.
    pub fn encoded_length(&self) -> usize {
        match self {
            Operation::Open { path, .. } | Operation::Readdir { path, .. } => 4 + path.len(),
            Operation::Read { .. } => 8,
            Operation::Write { data, .. } => 4 + data.len(),
            Operation::Seek { .. } => 16,
            Operation::Close { .. } | Operation::Fstat { .. } => 4,
            Operation::Unlink { path } | Operation::Mkdir { path } | Operation::Stat { path } => path.len(),
        }
    }

    /// Write this operation's request payload into `out`; the bytes
    /// written. [`Error::InvalidArgument`] if it would pass
    /// [`PAYLOAD_MAX`]; [`Error::BadMessage`] if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let length = self.encoded_length();
        if length > PAYLOAD_MAX {
            return Err(Error::InvalidArgument);
        }
        let out = out.get_mut(..length).ok_or(Error::BadMessage)?;
        let (head, tail): (&[u32], &[u8]) = match *self {
            Operation::Open { flags, path } => (&[flags], path),
            Operation::Read { handle, length } => (&[handle, length], &[]),
            Operation::Write { handle, data } => (&[handle], data),
            Operation::Seek { handle, whence, offset } => {
                out[..4].copy_from_slice(&handle.to_le_bytes());
                out[4..8].copy_from_slice(&whence.to_le_bytes());
                out[8..].copy_from_slice(&offset.to_le_bytes());
                return Ok(length);
            }
            Operation::Close { handle } | Operation::Fstat { handle } => (&[handle], &[]),
            Operation::Readdir { cursor, path } => (&[cursor], path),
            Operation::Unlink { path } | Operation::Mkdir { path } | Operation::Stat { path } => (&[], path),
        };
        for (slot, value) in out.chunks_exact_mut(4).zip(head) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        out[4 * head.len()..].copy_from_slice(tail);
        Ok(length)
    }

    /// Make `buffer` this operation's request (label and payload). Errors
    /// as [`Operation::encode`].
    pub fn write_request<Storage>(&self, buffer: &mut MessageBuffer<Storage>) -> Result<(), Error>
    where
        Storage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
    {
        let length = self.encoded_length();
        if length > PAYLOAD_MAX {
            return Err(Error::InvalidArgument);
        }
        self.encode(buffer.payload_mut(length)?)?;
        buffer.set_label(self.label());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_through_the_encoding() {
        let operations = [
            Operation::Open { flags: CREATE | TRUNCATE, path: b"/src/a.c" },
            Operation::Read { handle: 0x1234_5678, length: 1 << 20 },
            Operation::Write { handle: 7, data: b"hello" },
            Operation::Write { handle: 7, data: b"" },
            Operation::Seek { handle: 3, whence: SEEK_END, offset: -5 },
            Operation::Close { handle: 9 },
            Operation::Readdir { cursor: 4, path: b"/" },
            Operation::Unlink { path: b"/x" },
            Operation::Mkdir { path: b"/d" },
            Operation::Stat { path: b"" },
            Operation::Fstat { handle: 1 },
        ];
        for operation in operations {
            let mut bytes = [0u8; 64];
            let length = operation.encode(&mut bytes).unwrap();
            assert_eq!(length, operation.encoded_length());
            assert_eq!(Operation::decode(operation.label(), &bytes[..length]), Some(operation), "{operation:?}");
        }
        let mut bytes = [0u8; 16];
        assert_eq!(Operation::Read { handle: 1, length: 2 }.encode(&mut bytes), Ok(8));
        assert_eq!(&bytes[..8], b"\x01\0\0\0\x02\0\0\0");
    }

    #[test]
    fn malformed_requests_do_not_decode() {
        assert_eq!(Operation::decode(OPEN, b"\x01\0\0"), None);
        assert_eq!(Operation::decode(READ, b"\x01\0\0\0\x02\0\0"), None);
        assert_eq!(Operation::decode(READ, b"\x01\0\0\0\x02\0\0\0\0"), None);
        assert_eq!(Operation::decode(SEEK, &[0; 15]), None);
        assert_eq!(Operation::decode(CLOSE, &[0; 5]), None);
        assert_eq!(Operation::decode(FSTAT, &[]), None);
        assert_eq!(Operation::decode(0, b"/"), None);
        assert_eq!(Operation::decode(11, b"/"), None);
    }

    #[test]
    fn encoding_refuses_what_cannot_be_sent() {
        let data = [0u8; PAYLOAD_MAX - 3];
        let mut out = [0u8; PAYLOAD_MAX + 8];
        assert_eq!(Operation::Write { handle: 1, data: &data }.encode(&mut out), Err(Error::InvalidArgument));
        assert_eq!(Operation::Write { handle: 1, data: &data[1..] }.encode(&mut out), Ok(PAYLOAD_MAX));
        assert_eq!(Operation::Stat { path: b"/abc" }.encode(&mut [0u8; 3]), Err(Error::BadMessage));
    }

    #[test]
    fn statuses_and_errors_correspond() {
        for status in [OK, BAD_REQUEST, NOT_FOUND, FULL, EXISTS, NOT_A_DIRECTORY, IS_A_DIRECTORY, NOT_EMPTY] {
            assert_eq!(FsError::check(status).map_or_else(FsError::status, |()| OK), status);
        }
        for status in [BAD_HANDLE, NAME_TOO_LONG, TOO_MANY_OPEN, NO_CALLER] {
            assert_eq!(FsError::check(status).unwrap_err().status(), status);
        }
        assert_eq!(FsError::check(1), Err(FsError::Unexpected(1)));
        assert_eq!(FsError::check(99), Err(FsError::Unexpected(99)));
        assert_eq!(FsError::NotFound.name(), "no such file or directory");
        assert_eq!(alloc::format!("{}", FsError::Kernel(Error::CannotLend)), "CannotLend");
    }

    #[test]
    fn stats_and_entries_round_trip() {
        let stat = Stat { kind: KIND_FILE, size: 1 << 40 };
        assert_eq!(Stat::decode(&stat.encode()), Some(stat));
        assert_eq!(Stat::decode(&[0; 11]), None);
        let entries = [
            EntryView { kind: KIND_DIRECTORY, size: 2, name: "src" },
            EntryView { kind: KIND_FILE, size: 20_000, name: "a.c" },
        ];
        let mut out = [0u8; 64];
        let mut at = 0;
        for entry in &entries {
            at = entry.encode_into(&mut out, at).unwrap();
        }
        assert_eq!(at, 2 * ENTRY_HEADER + 6);
        let decoded: Option<alloc::vec::Vec<_>> = EntryView::decode_all(&out[..at]).collect();
        assert_eq!(decoded.unwrap(), entries);
        assert_eq!(entries[0].encode_into(&mut out, 60), None, "does not fit");
        let broken: alloc::vec::Vec<_> = EntryView::decode_all(&out[..at - 1]).collect();
        assert_eq!(broken.last(), Some(&None), "a truncated entry decodes as None, last");
    }
}
