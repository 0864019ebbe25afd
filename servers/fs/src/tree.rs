//! The file system itself: a tree of directories and files in memory, and
//! the open-file tables of its clients. Plain Rust over `alloc`, no kernel
//! calls, so every operation and every error is tested on the host; the
//! server (`lib.rs`) only decodes requests, asks the kernel who called,
//! and calls in here under one lock.
//!
//! # Shape
//!
//! - **Nodes** live in a slab (`Vec<Option<Node>>` and a free list), named
//!   by their index; a directory maps names to node indices in a
//!   `BTreeMap`, so listings come out sorted and a readdir cursor (an
//!   index into that order) is stable while nothing changes.
//! - **File data** is a list of [`CHUNK`]-byte chunks, allocated zeroed as
//!   a file grows. Why not a `Vec<u8>` per file: growing a 1 MiB vector
//!   reallocates it, which needs the old and the new block at once — 3 MiB
//!   for a moment on a heap of 4 — and a contiguous block that a
//!   fragmented heap may not have. Equal chunks never need more than one
//!   chunk at a time, and a freed chunk is exactly the hole the next one
//!   fits. The cost: a file's last chunk is partly unused (the bound
//!   counts whole chunks, what the heap really holds).
//! - **Bounds** ([`Limits`]): total chunk bytes, nodes, open files per
//!   client, clients with open files, name and path lengths. Every
//!   operation checks them *before* it changes anything, so a client that
//!   fills the store gets [`FsError::Full`] and nothing half-done, and the
//!   server's heap (fixed, see the crate documentation) is never
//!   exhausted — an allocation failure would kill the server for everyone.
//! - **Open files** are per client: `clients` maps the calling domain's
//!   number (from the kernel, never from the request) to its own table of
//!   slots. A handle is the slot's index in its low 8 bits and a
//!   generation above them (one counter, wrapping after 2^24 opens), so a handle closed and its slot
//!   reused is [`FsError::BadHandle`], not someone else's file; and
//!   another domain's handle names a slot in *its* table, not the
//!   caller's. A table that empties is dropped, so [`Limits::clients`]
//!   counts domains holding open files.
//! - **Unlinking an open file** removes its name at once; its data lives
//!   on (readable and writable through the handles already open) until the
//!   last of them is closed, as in Unix.
//!
//! # Left out
//!
//! Hard links, renames, permissions, times, sparse files (a write past the
//! end fills the gap with zero chunks, counted), shrinking a file except
//! to zero (`TRUNCATE`), and closing a dead client's files: the kernel
//! does not tell servers when a client dies, so its open files stay open
//! (bounded: [`Limits::handles_per_client`] per domain).

use crate::protocol::{
    CLIENTS_MAX, CREATE, EXCLUSIVE, EntryView, FLAGS, FsError, HANDLES_PER_CLIENT, KIND_DIRECTORY, KIND_FILE, NAME_MAX,
    PATH_MAX, SEEK_CURRENT, SEEK_END, SEEK_SET, Stat, TRUNCATE,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Bytes of one chunk of file data.
pub const CHUNK: usize = 4096;

/// Bytes of file data the store holds in all (whole chunks): 3 MiB. The
/// domain's heap is the 4 MiB below its stacks (`REGION_STACKS_OFFSET`);
/// the rest is for nodes, names, tables and slack (see `docs/servers.md`
/// for what the `fs` scenario measured full).
pub const STORE_BYTES_MAX: usize = 3 << 20;

/// Files and directories the store holds in all, the root included.
pub const NODES_MAX: usize = 1024;

/// The bounds of one file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of file data, counted in whole [`CHUNK`]s.
    pub bytes: usize,
    /// Nodes, the root included.
    pub nodes: usize,
    /// Open files per client.
    pub handles_per_client: usize,
    /// Clients holding open files.
    pub clients: usize,
}

impl Limits {
    /// The server's bounds.
    pub const STANDARD: Limits = Limits {
        bytes: STORE_BYTES_MAX,
        nodes: NODES_MAX,
        handles_per_client: HANDLES_PER_CLIENT,
        clients: CLIENTS_MAX,
    };
}

/// A node's index in the slab.
type NodeId = usize;

/// The root directory's index.
const ROOT: NodeId = 0;

/// Handle bits naming the slot; the generation lies above them.
const SLOT_BITS: u32 = 8;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

const _: () = assert!(HANDLES_PER_CLIENT <= SLOT_MASK as usize + 1);

/// A file's data.
#[derive(Debug, Default)]
struct File {
    chunks: Vec<Box<[u8; CHUNK]>>,
    /// Bytes in the file (the chunks hold zeros past it).
    size: usize,
}

impl File {
    /// Copy from `offset` into `out` (as much as the file has); the count.
    fn read(&self, offset: u64, out: &mut [u8]) -> usize {
        let Ok(start) = usize::try_from(offset) else { return 0 };
        let count = out.len().min(self.size.saturating_sub(start));
        let mut done = 0;
        while done < count {
            let at = start + done;
            let within = at % CHUNK;
            let step = (CHUNK - within).min(count - done);
            out[done..done + step].copy_from_slice(&self.chunks[at / CHUNK][within..within + step]);
            done += step;
        }
        count
    }

    /// Chunks needed to hold `end` bytes.
    fn chunks_for(end: usize) -> usize {
        end.div_ceil(CHUNK)
    }

    /// Copy `data` in at `offset`, growing the file (the caller has checked
    /// that the chunks fit).
    fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        while self.chunks.len() < Self::chunks_for(end) {
            self.chunks.push(Box::new([0; CHUNK]));
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let within = at % CHUNK;
            let step = (CHUNK - within).min(data.len() - done);
            self.chunks[at / CHUNK][within..within + step].copy_from_slice(&data[done..done + step]);
            done += step;
        }
        self.size = self.size.max(end);
    }
}

#[derive(Debug)]
enum Body {
    Directory(BTreeMap<Box<str>, NodeId>),
    File(File),
}

#[derive(Debug)]
struct Node {
    body: Body,
    /// Whether a directory names it (false once unlinked).
    linked: bool,
    /// Handles open on it, across all clients.
    open: u32,
}

impl Node {
    fn stat(&self) -> Stat {
        match &self.body {
            Body::Directory(entries) => Stat { kind: KIND_DIRECTORY, size: entries.len() as u64 },
            Body::File(file) => Stat { kind: KIND_FILE, size: file.size as u64 },
        }
    }
}

/// One open file of a client.
#[derive(Clone, Copy, Debug)]
struct Open {
    node: NodeId,
    offset: u64,
    generation: u32,
}

/// One client's open files.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<Option<Open>>,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

/// The file system: the tree, its clients' tables, and what they hold.
#[derive(Debug)]
pub struct FileSystem {
    nodes: Vec<Option<Node>>,
    free: Vec<NodeId>,
    clients: BTreeMap<usize, Table>,
    limits: Limits,
    /// Nodes in use, the root included.
    node_count: usize,
    /// Chunks of file data in use.
    chunk_count: usize,
    /// The generation the next handle gets (never 0, so no handle is 0):
    /// one counter for all clients, so that a table dropped and made again
    /// does not hand out its old handles again.
    next_generation: u32,
}

impl Default for FileSystem {
    fn default() -> Self {
        Self::new()
    }
}

/// A path's components: absolute, UTF-8, no NUL, no `.` or `..`; empty
/// components (`//`, a trailing `/`) are skipped. `/` is no components.
fn components(path: &[u8]) -> Result<Vec<&str>, FsError> {
    if path.len() > PATH_MAX {
        return Err(FsError::NameTooLong);
    }
    let text = core::str::from_utf8(path).map_err(|_| FsError::BadRequest)?;
    if !text.starts_with('/') || text.contains('\0') {
        return Err(FsError::BadRequest);
    }
    let parts: Vec<&str> = text.split('/').filter(|part| !part.is_empty()).collect();
    for part in &parts {
        if *part == "." || *part == ".." {
            return Err(FsError::BadRequest);
        }
        if part.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
    }
    Ok(parts)
}

impl FileSystem {
    /// An empty file system (the root directory only) with the server's
    /// bounds.
    pub fn new() -> Self {
        Self::with_limits(Limits::STANDARD)
    }

    /// An empty file system with `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        let root = Node { body: Body::Directory(BTreeMap::new()), linked: true, open: 0 };
        FileSystem {
            nodes: alloc::vec![Some(root)],
            free: Vec::new(),
            clients: BTreeMap::new(),
            limits,
            node_count: 1,
            chunk_count: 0,
            next_generation: 0,
        }
    }

    /// Bytes of file data held (whole chunks).
    pub fn bytes(&self) -> usize {
        self.chunk_count * CHUNK
    }

    /// Nodes in use, the root included.
    pub fn nodes(&self) -> usize {
        self.node_count
    }

    /// Open files `client` holds.
    pub fn open_files(&self, client: usize) -> usize {
        self.clients.get(&client).map_or(0, |table| table.slots.iter().flatten().count())
    }

    fn node(&self, id: NodeId) -> &Node {
        // Every index reachable from the root or a table names a live node.
        self.nodes[id].as_ref().expect("a live node")
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id].as_mut().expect("a live node")
    }

    fn entries(&self, id: NodeId) -> Result<&BTreeMap<Box<str>, NodeId>, FsError> {
        match &self.node(id).body {
            Body::Directory(entries) => Ok(entries),
            Body::File(_) => Err(FsError::NotADirectory),
        }
    }

    fn entries_mut(&mut self, id: NodeId) -> &mut BTreeMap<Box<str>, NodeId> {
        match &mut self.node_mut(id).body {
            Body::Directory(entries) => entries,
            Body::File(_) => unreachable!("checked a directory"),
        }
    }

    /// The node `parts` name.
    fn resolve(&self, parts: &[&str]) -> Result<NodeId, FsError> {
        parts.iter().try_fold(ROOT, |at, part| self.entries(at)?.get(*part).copied().ok_or(FsError::NotFound))
    }

    /// The directory that holds the last of `parts` (not the root: the
    /// caller handles `/`), and that last name.
    fn parent<'p>(&self, parts: &[&'p str]) -> Result<(NodeId, &'p str), FsError> {
        let (last, up) = parts.split_last().ok_or(FsError::BadRequest)?;
        let parent = self.resolve(up)?;
        self.entries(parent)?;
        Ok((parent, last))
    }

    fn add_node(&mut self, body: Body) -> Result<NodeId, FsError> {
        if self.node_count >= self.limits.nodes {
            return Err(FsError::Full);
        }
        let node = Some(Node { body, linked: true, open: 0 });
        self.node_count += 1;
        Ok(match self.free.pop() {
            Some(id) => {
                self.nodes[id] = node;
                id
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        })
    }

    /// Free a node nobody names or holds open.
    fn drop_node(&mut self, id: NodeId) {
        if let Some(node) = self.nodes[id].take() {
            if let Body::File(file) = node.body {
                self.chunk_count -= file.chunks.len();
            }
            self.node_count -= 1;
            self.free.push(id);
        }
    }

    /// The open file `handle` names in `client`'s table.
    fn open_entry(&mut self, client: usize, handle: u32) -> Result<&mut Open, FsError> {
        let table = self.clients.get_mut(&client).ok_or(FsError::BadHandle)?;
        let slot = table.slots.get_mut((handle & SLOT_MASK) as usize).ok_or(FsError::BadHandle)?;
        match slot {
            Some(open) if open.generation == handle >> SLOT_BITS => Ok(open),
            _ => Err(FsError::BadHandle),
        }
    }

    /// A free slot in `client`'s table (made if need be), or why not.
    fn free_slot(&self, client: usize) -> Result<(), FsError> {
        match self.clients.get(&client) {
            Some(table) if table.slots.iter().flatten().count() >= self.limits.handles_per_client => {
                Err(FsError::TooManyOpen)
            }
            Some(_) => Ok(()),
            None if self.clients.len() >= self.limits.clients => Err(FsError::TooManyOpen),
            None => Ok(()),
        }
    }

    /// Open `path` for `client` with `flags` ([`CREATE`], [`TRUNCATE`],
    /// [`EXCLUSIVE`]); a handle in `client`'s table, offset 0.
    pub fn open(&mut self, client: usize, path: &[u8], flags: u32) -> Result<u32, FsError> {
        if flags & !FLAGS != 0 {
            return Err(FsError::BadRequest);
        }
        let parts = components(path)?;
        if parts.is_empty() {
            return Err(FsError::IsADirectory);
        }
        let (parent, name) = self.parent(&parts)?;
        self.free_slot(client)?;
        let node = match self.entries(parent)?.get(name).copied() {
            Some(_) if flags & (CREATE | EXCLUSIVE) == CREATE | EXCLUSIVE => return Err(FsError::Exists),
            Some(id) => match &mut self.node_mut(id).body {
                Body::Directory(_) => return Err(FsError::IsADirectory),
                Body::File(file) => {
                    if flags & TRUNCATE != 0 {
                        let freed = core::mem::take(file).chunks.len();
                        self.chunk_count -= freed;
                    }
                    id
                }
            },
            None if flags & CREATE == 0 => return Err(FsError::NotFound),
            None => {
                let id = self.add_node(Body::File(File::default()))?;
                self.entries_mut(parent).insert(name.into(), id);
                id
            }
        };
        self.node_mut(node).open += 1;
        self.next_generation = (self.next_generation % (u32::MAX >> SLOT_BITS)) + 1;
        let generation = self.next_generation;
        let table = self.clients.entry(client).or_default();
        let open = Some(Open { node, offset: 0, generation });
        let slot = match table.slots.iter().position(Option::is_none) {
            Some(slot) => {
                table.slots[slot] = open;
                slot
            }
            None => {
                table.slots.push(open);
                table.slots.len() - 1
            }
        };
        Ok(generation << SLOT_BITS | slot as u32)
    }

    /// Read into `out` at the handle's offset (as much as the file has
    /// there); the count, by which the offset moves.
    pub fn read(&mut self, client: usize, handle: u32, out: &mut [u8]) -> Result<usize, FsError> {
        let Open { node, offset, .. } = *self.open_entry(client, handle)?;
        let count = match &self.node(node).body {
            Body::File(file) => file.read(offset, out),
            Body::Directory(_) => return Err(FsError::IsADirectory),
        };
        self.open_entry(client, handle)?.offset += count as u64;
        Ok(count)
    }

    /// Write `data` at the handle's offset, all or nothing (a gap past the
    /// end reads as zeros); the count, by which the offset moves.
    pub fn write(&mut self, client: usize, handle: u32, data: &[u8]) -> Result<usize, FsError> {
        let Open { node, offset, .. } = *self.open_entry(client, handle)?;
        let end = usize::try_from(offset).ok().and_then(|offset| offset.checked_add(data.len()));
        let chunks_now = match &self.node(node).body {
            Body::File(file) => file.chunks.len(),
            Body::Directory(_) => return Err(FsError::IsADirectory),
        };
        let needed = match end {
            _ if data.is_empty() => chunks_now,
            Some(end) if end <= self.limits.bytes => File::chunks_for(end).max(chunks_now),
            _ => return Err(FsError::Full),
        };
        let more = needed - chunks_now;
        if (self.chunk_count + more) * CHUNK > self.limits.bytes {
            return Err(FsError::Full);
        }
        if !data.is_empty() {
            self.chunk_count += more;
            if let Body::File(file) = &mut self.node_mut(node).body {
                file.write(offset as usize, data);
            }
        }
        self.open_entry(client, handle)?.offset += data.len() as u64;
        Ok(data.len())
    }

    /// Move the handle's offset to `offset` from `whence` ([`SEEK_SET`],
    /// [`SEEK_CURRENT`], [`SEEK_END`]); the new offset. Past the end is
    /// allowed (a read there gets nothing, a write fills the gap); before
    /// the start is [`FsError::BadRequest`].
    pub fn seek(&mut self, client: usize, handle: u32, whence: u32, offset: i64) -> Result<u64, FsError> {
        let Open { node, offset: now, .. } = *self.open_entry(client, handle)?;
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CURRENT => now,
            SEEK_END => self.node(node).stat().size,
            _ => return Err(FsError::BadRequest),
        };
        let target = base.checked_add_signed(offset).ok_or(FsError::BadRequest)?;
        self.open_entry(client, handle)?.offset = target;
        Ok(target)
    }

    /// Close the handle: its slot is free, and a file unlinked meanwhile
    /// goes once its last handle does.
    pub fn close(&mut self, client: usize, handle: u32) -> Result<(), FsError> {
        let node = self.open_entry(client, handle)?.node;
        if let Some(table) = self.clients.get_mut(&client) {
            table.slots[(handle & SLOT_MASK) as usize] = None;
            if table.is_empty() {
                self.clients.remove(&client);
            }
        }
        let entry = self.node_mut(node);
        entry.open -= 1;
        if entry.open == 0 && !entry.linked {
            self.drop_node(node);
        }
        Ok(())
    }

    /// The kind and size of the handle's file.
    pub fn fstat(&mut self, client: usize, handle: u32) -> Result<Stat, FsError> {
        let node = self.open_entry(client, handle)?.node;
        Ok(self.node(node).stat())
    }

    /// The kind and size of what `path` names.
    pub fn stat(&self, path: &[u8]) -> Result<Stat, FsError> {
        Ok(self.node(self.resolve(&components(path)?)?).stat())
    }

    /// Make a directory at `path` (its parent must exist).
    pub fn mkdir(&mut self, path: &[u8]) -> Result<(), FsError> {
        let parts = components(path)?;
        if parts.is_empty() {
            return Err(FsError::Exists);
        }
        let (parent, name) = self.parent(&parts)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(FsError::Exists);
        }
        let id = self.add_node(Body::Directory(BTreeMap::new()))?;
        self.entries_mut(parent).insert(name.into(), id);
        Ok(())
    }

    /// Remove the file or empty directory at `path` (not `/`). An open
    /// file's data stays until its last handle is closed.
    pub fn unlink(&mut self, path: &[u8]) -> Result<(), FsError> {
        let parts = components(path)?;
        if parts.is_empty() {
            return Err(FsError::BadRequest);
        }
        let (parent, name) = self.parent(&parts)?;
        let id = self.entries(parent)?.get(name).copied().ok_or(FsError::NotFound)?;
        if let Body::Directory(entries) = &self.node(id).body
            && !entries.is_empty()
        {
            return Err(FsError::NotEmpty);
        }
        self.entries_mut(parent).remove(name);
        let node = self.node_mut(id);
        node.linked = false;
        if node.open == 0 {
            self.drop_node(id);
        }
        Ok(())
    }

    /// Encode the entries of the directory at `path`, from the `cursor`th
    /// on (in name order), into `out`, as many as fit; the bytes written
    /// and the entries they hold (none: the listing is done).
    pub fn readdir(&self, path: &[u8], cursor: usize, out: &mut [u8]) -> Result<(usize, usize), FsError> {
        let entries = self.entries(self.resolve(&components(path)?)?)?;
        let (mut at, mut count) = (0, 0);
        for (name, &id) in entries.iter().skip(cursor) {
            let Stat { kind, size } = self.node(id).stat();
            match (EntryView { kind, size, name }).encode_into(out, at) {
                Some(end) => at = end,
                None => break,
            }
            count += 1;
        }
        Ok((at, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ENTRY_HEADER, INLINE_MAX};
    use alloc::string::String;
    use alloc::vec;

    const A: usize = 7;
    const B: usize = 8;

    fn listing(fs: &FileSystem, path: &str) -> Vec<(String, u8, u64)> {
        let mut all = Vec::new();
        let mut out = vec![0u8; 64];
        loop {
            let (bytes, count) = fs.readdir(path.as_bytes(), all.len(), &mut out).unwrap();
            if count == 0 {
                return all;
            }
            for entry in EntryView::decode_all(&out[..bytes]) {
                let entry = entry.unwrap();
                all.push((entry.name.into(), entry.kind, entry.size));
            }
        }
    }

    #[test]
    fn files_are_created_written_read_and_sought() {
        let mut fs = FileSystem::new();
        assert_eq!(fs.mkdir(b"/src"), Ok(()));
        let handle = fs.open(A, b"/src/a.c", CREATE).unwrap();
        assert_eq!(fs.write(A, handle, b"int main;"), Ok(9));
        assert_eq!(fs.stat(b"/src/a.c"), Ok(Stat { kind: KIND_FILE, size: 9 }));
        assert_eq!(fs.seek(A, handle, SEEK_SET, 4), Ok(4));
        let mut out = [0u8; 16];
        assert_eq!(fs.read(A, handle, &mut out), Ok(5));
        assert_eq!(&out[..5], b"main;");
        assert_eq!(fs.read(A, handle, &mut out), Ok(0), "at the end");
        assert_eq!(fs.seek(A, handle, SEEK_CURRENT, -5), Ok(4));
        assert_eq!(fs.seek(A, handle, SEEK_END, -9), Ok(0));
        assert_eq!(fs.seek(A, handle, SEEK_END, -10), Err(FsError::BadRequest), "before the start");
        assert_eq!(fs.seek(A, handle, 3, 0), Err(FsError::BadRequest), "unknown whence");
        assert_eq!(fs.seek(A, handle, SEEK_SET, 20), Ok(20), "past the end");
        assert_eq!(fs.read(A, handle, &mut out), Ok(0));
        assert_eq!(fs.write(A, handle, b"!"), Ok(1));
        assert_eq!(fs.seek(A, handle, SEEK_SET, 0), Ok(0));
        assert_eq!(fs.read(A, handle, &mut out), Ok(16));
        assert_eq!(&out, b"int main;\0\0\0\0\0\0\0", "the gap reads as zeros");
        assert_eq!(fs.fstat(A, handle), Ok(Stat { kind: KIND_FILE, size: 21 }));
        assert_eq!(fs.close(A, handle), Ok(()));
        assert_eq!(fs.close(A, handle), Err(FsError::BadHandle), "closed already");
        assert_eq!(fs.open_files(A), 0);
        assert_eq!(fs.bytes(), CHUNK);
    }

    #[test]
    fn open_flags_truncate_exclusive_and_refusals() {
        let mut fs = FileSystem::new();
        assert_eq!(fs.open(A, b"/f", 0), Err(FsError::NotFound));
        assert_eq!(fs.open(A, b"/f", TRUNCATE), Err(FsError::NotFound));
        let first = fs.open(A, b"/f", CREATE | EXCLUSIVE).unwrap();
        assert_eq!(fs.open(A, b"/f", CREATE | EXCLUSIVE), Err(FsError::Exists));
        fs.write(A, first, &[1; 5000]).unwrap();
        assert_eq!(fs.bytes(), 2 * CHUNK);
        let again = fs.open(A, b"/f", CREATE).unwrap();
        assert_ne!(again, first);
        assert_eq!(fs.fstat(A, again).unwrap().size, 5000, "no truncate: kept");
        let truncated = fs.open(A, b"/f", TRUNCATE).unwrap();
        assert_eq!(fs.fstat(A, truncated).unwrap().size, 0);
        assert_eq!(fs.bytes(), 0, "its chunks are freed");
        assert_eq!(fs.open(A, b"/f", 8), Err(FsError::BadRequest), "unknown flag");
        assert_eq!(fs.open(A, b"/", CREATE), Err(FsError::IsADirectory));
        fs.mkdir(b"/d").unwrap();
        assert_eq!(fs.open(A, b"/d", 0), Err(FsError::IsADirectory));
        assert_eq!(fs.open(A, b"/d", CREATE | EXCLUSIVE), Err(FsError::Exists));
        assert_eq!(fs.open(A, b"/f/x", CREATE), Err(FsError::NotADirectory));
        assert_eq!(fs.open(A, b"/none/x", CREATE), Err(FsError::NotFound));
        assert_eq!(fs.open_files(A), 3);
    }

    #[test]
    fn paths_are_checked() {
        let mut fs = FileSystem::new();
        for bad in [&b"relative"[..], b"", b"/a/../b", b"/./a", b"/a\0b", b"/\xff"] {
            assert_eq!(fs.mkdir(bad), Err(FsError::BadRequest), "{bad:?}");
            assert_eq!(fs.stat(bad), Err(FsError::BadRequest), "{bad:?}");
        }
        let long = alloc::format!("/{}", "n".repeat(NAME_MAX + 1));
        assert_eq!(fs.mkdir(long.as_bytes()), Err(FsError::NameTooLong));
        assert_eq!(fs.open(A, long.as_bytes(), CREATE), Err(FsError::NameTooLong));
        let longest = alloc::format!("/{}", "n".repeat(NAME_MAX));
        assert_eq!(fs.mkdir(longest.as_bytes()), Ok(()));
        let deep = "/d".repeat(PATH_MAX / 2 + 1);
        assert_eq!(fs.stat(deep.as_bytes()), Err(FsError::NameTooLong));
        assert_eq!(fs.mkdir(b"//x//"), Ok(()), "empty components are skipped");
        assert_eq!(fs.stat(b"/x").map(|stat| stat.kind), Ok(KIND_DIRECTORY));
        assert_eq!(fs.stat(b"/"), Ok(Stat { kind: KIND_DIRECTORY, size: 2 }));
    }

    #[test]
    fn directories_are_made_listed_and_removed() {
        let mut fs = FileSystem::new();
        assert_eq!(fs.mkdir(b"/"), Err(FsError::Exists));
        fs.mkdir(b"/src").unwrap();
        assert_eq!(fs.mkdir(b"/src"), Err(FsError::Exists));
        assert_eq!(fs.mkdir(b"/no/such"), Err(FsError::NotFound));
        for name in ["b.c", "a.c", "c.h"] {
            let handle = fs.open(A, alloc::format!("/src/{name}").as_bytes(), CREATE).unwrap();
            fs.write(A, handle, name.as_bytes()).unwrap();
            fs.close(A, handle).unwrap();
        }
        fs.mkdir(b"/src/sub").unwrap();
        assert_eq!(fs.mkdir(b"/src/a.c/x"), Err(FsError::NotADirectory));
        let expected =
            [("a.c", KIND_FILE, 3), ("b.c", KIND_FILE, 3), ("c.h", KIND_FILE, 3), ("sub", KIND_DIRECTORY, 0)];
        let expected: Vec<(String, u8, u64)> =
            expected.iter().map(|(name, kind, size)| ((*name).into(), *kind, *size)).collect();
        assert_eq!(listing(&fs, "/src"), expected, "in name order, in several replies");
        assert_eq!(listing(&fs, "/"), vec![("src".into(), KIND_DIRECTORY, 4)]);
        assert_eq!(fs.readdir(b"/src/a.c", 0, &mut [0; 64]), Err(FsError::NotADirectory));
        assert_eq!(fs.readdir(b"/nothing", 0, &mut [0; 64]), Err(FsError::NotFound));
        assert_eq!(fs.readdir(b"/src", 99, &mut [0; 64]), Ok((0, 0)));
        assert_eq!(fs.readdir(b"/src", 0, &mut [0; ENTRY_HEADER + 2]), Ok((0, 0)), "too small for one");
        assert_eq!(fs.unlink(b"/src"), Err(FsError::NotEmpty));
        assert_eq!(fs.unlink(b"/"), Err(FsError::BadRequest));
        assert_eq!(fs.unlink(b"/src/zzz"), Err(FsError::NotFound));
        assert_eq!(fs.unlink(b"/src/a.c/x"), Err(FsError::NotADirectory));
        for name in ["a.c", "b.c", "c.h", "sub"] {
            assert_eq!(fs.unlink(alloc::format!("/src/{name}").as_bytes()), Ok(()));
        }
        assert_eq!(fs.unlink(b"/src"), Ok(()));
        assert_eq!(fs.stat(b"/src"), Err(FsError::NotFound));
        assert_eq!((fs.nodes(), fs.bytes()), (1, 0), "everything given back");
    }

    #[test]
    fn an_unlinked_open_file_lives_until_closed() {
        let mut fs = FileSystem::new();
        let handle = fs.open(A, b"/tmp", CREATE).unwrap();
        fs.write(A, handle, b"still here").unwrap();
        assert_eq!(fs.unlink(b"/tmp"), Ok(()));
        assert_eq!(fs.stat(b"/tmp"), Err(FsError::NotFound));
        assert_eq!(fs.open(A, b"/tmp", 0), Err(FsError::NotFound));
        let mut out = [0u8; 10];
        fs.seek(A, handle, SEEK_SET, 0).unwrap();
        assert_eq!(fs.read(A, handle, &mut out), Ok(10));
        assert_eq!(&out, b"still here");
        assert_eq!((fs.nodes(), fs.bytes()), (2, CHUNK));
        fs.close(A, handle).unwrap();
        assert_eq!((fs.nodes(), fs.bytes()), (1, 0));
    }

    #[test]
    fn handles_are_per_client() {
        let mut fs = FileSystem::new();
        let mine = fs.open(A, b"/a", CREATE).unwrap();
        let theirs = fs.open(B, b"/a", 0).unwrap();
        assert_eq!(mine & SLOT_MASK, theirs & SLOT_MASK, "the same slot, in two tables");
        fs.write(A, mine, b"from a").unwrap();
        let mut out = [0u8; 6];
        assert_eq!(fs.read(B, theirs, &mut out), Ok(6), "B's offset is its own");
        fs.close(B, theirs).unwrap();
        assert_eq!(fs.read(B, mine, &mut out), Err(FsError::BadHandle), "A's handle means nothing to B");
        assert_eq!(fs.write(B, mine, b"x"), Err(FsError::BadHandle));
        assert_eq!(fs.seek(B, mine, SEEK_SET, 0), Err(FsError::BadHandle));
        assert_eq!(fs.fstat(B, mine), Err(FsError::BadHandle));
        assert_eq!(fs.close(B, mine), Err(FsError::BadHandle));
        assert_eq!(fs.fstat(A, mine).map(|stat| stat.size), Ok(6), "and A's is untouched");
        assert_eq!(fs.close(A, mine ^ 1 << SLOT_BITS), Err(FsError::BadHandle), "wrong generation");
        assert_eq!(fs.close(A, mine | 5), Err(FsError::BadHandle), "no such slot");
        fs.close(A, mine).unwrap();
        let reused = fs.open(A, b"/a", 0).unwrap();
        assert_eq!(reused & SLOT_MASK, mine & SLOT_MASK, "the slot is reused");
        assert_eq!(fs.close(A, mine), Err(FsError::BadHandle), "the old handle is not the new one");
        assert_eq!(fs.close(A, reused), Ok(()));
    }

    #[test]
    fn open_tables_are_bounded() {
        let mut fs = FileSystem::new();
        let handles: Vec<u32> = (0..HANDLES_PER_CLIENT)
            .map(|index| fs.open(A, alloc::format!("/f{index}").as_bytes(), CREATE).unwrap())
            .collect();
        assert_eq!(fs.open(A, b"/f0", 0), Err(FsError::TooManyOpen));
        assert_eq!(fs.open(A, b"/new", CREATE), Err(FsError::TooManyOpen));
        assert_eq!(fs.stat(b"/new"), Err(FsError::NotFound), "nothing made for a refused open");
        assert!(fs.open(B, b"/f0", 0).is_ok(), "another client has a table of its own");
        fs.close(A, handles[3]).unwrap();
        assert!(fs.open(A, b"/f0", 0).is_ok());
        let mut fs = FileSystem::new();
        fs.open(0, b"/f", CREATE).unwrap();
        for client in 1..CLIENTS_MAX {
            fs.open(client, b"/f", 0).unwrap();
        }
        assert_eq!(fs.open(CLIENTS_MAX, b"/f", 0), Err(FsError::TooManyOpen), "clients are bounded too");
        let handle = fs.open(5, b"/f", 0).unwrap();
        fs.close(5, handle).unwrap();
        assert_eq!(fs.open(CLIENTS_MAX, b"/f", 0), Err(FsError::TooManyOpen), "client 5 still holds one");
    }

    #[test]
    fn a_file_of_a_mebibyte_comes_back_whole() {
        let mut fs = FileSystem::new();
        let data: Vec<u8> = (0..1 << 20).map(|index: u32| (index * 7 + (index >> 12)) as u8).collect();
        let handle = fs.open(A, b"/big", CREATE).unwrap();
        // In odd pieces, across chunk boundaries.
        for piece in data.chunks(INLINE_MAX - 1) {
            assert_eq!(fs.write(A, handle, piece), Ok(piece.len()));
        }
        assert_eq!(fs.fstat(A, handle).unwrap().size, 1 << 20);
        assert_eq!(fs.bytes(), 1 << 20);
        fs.seek(A, handle, SEEK_SET, 0).unwrap();
        let mut back = vec![0u8; (1 << 20) + 10];
        assert_eq!(fs.read(A, handle, &mut back), Ok(1 << 20));
        assert!(back[..1 << 20] == data[..], "the same bytes");
        fs.seek(A, handle, SEEK_SET, 12345).unwrap();
        let mut middle = vec![0u8; 3 * CHUNK];
        assert_eq!(fs.read(A, handle, &mut middle), Ok(3 * CHUNK));
        assert!(middle[..] == data[12345..12345 + 3 * CHUNK]);
        // Overwriting in the middle does not grow it.
        fs.seek(A, handle, SEEK_SET, 100).unwrap();
        fs.write(A, handle, &[0xee; 10_000]).unwrap();
        assert_eq!((fs.fstat(A, handle).unwrap().size, fs.bytes()), (1 << 20, 1 << 20));
    }

    #[test]
    fn the_store_is_bounded_in_bytes() {
        let mut fs = FileSystem::new();
        let handle = fs.open(A, b"/big", CREATE).unwrap();
        let piece = vec![9u8; 1 << 20];
        for _ in 0..3 {
            assert_eq!(fs.write(A, handle, &piece), Ok(1 << 20));
        }
        assert_eq!(fs.bytes(), STORE_BYTES_MAX);
        assert_eq!(fs.write(A, handle, b"x"), Err(FsError::Full));
        let other = fs.open(A, b"/other", CREATE).unwrap();
        assert_eq!(fs.write(A, other, b"x"), Err(FsError::Full), "no chunk left for another file");
        assert_eq!(fs.write(A, other, b""), Ok(0), "writing nothing needs nothing");
        assert_eq!(fs.fstat(A, handle).unwrap().size, 3 << 20, "a refused write changes nothing");
        assert_eq!(fs.seek(A, handle, SEEK_SET, 1 << 40), Ok(1 << 40));
        assert_eq!(fs.write(A, handle, b"x"), Err(FsError::Full), "far past the end");
        fs.seek(A, handle, SEEK_SET, i64::MAX).unwrap();
        assert_eq!(fs.seek(A, handle, SEEK_CURRENT, i64::MAX), Ok(u64::MAX - 1));
        assert_eq!(fs.seek(A, handle, SEEK_CURRENT, 2), Err(FsError::BadRequest), "past u64");
        assert_eq!(fs.write(A, handle, b"x"), Err(FsError::Full), "an end that overflows");
        fs.seek(A, handle, SEEK_SET, 0).unwrap();
        assert_eq!(fs.write(A, handle, &piece), Ok(1 << 20), "overwriting needs no more");
        fs.close(A, handle).unwrap();
        fs.unlink(b"/big").unwrap();
        assert_eq!(fs.bytes(), 0);
        assert_eq!(fs.write(A, other, &piece), Ok(1 << 20), "and the room is back");
    }

    #[test]
    fn the_store_is_bounded_in_nodes() {
        let mut fs = FileSystem::new();
        fs.mkdir(b"/d").unwrap();
        for index in 2..NODES_MAX {
            let handle = fs.open(A, alloc::format!("/d/{index}").as_bytes(), CREATE).unwrap();
            fs.close(A, handle).unwrap();
        }
        assert_eq!(fs.nodes(), NODES_MAX);
        assert_eq!(fs.open(A, b"/d/one-more", CREATE), Err(FsError::Full));
        assert_eq!(fs.mkdir(b"/e"), Err(FsError::Full));
        assert_eq!(fs.stat(b"/d/one-more"), Err(FsError::NotFound));
        assert!(fs.open(A, b"/d/2", CREATE).is_ok(), "opening what exists needs no node");
        fs.unlink(b"/d/3").unwrap();
        assert_eq!(fs.mkdir(b"/e"), Ok(()));
    }

    #[test]
    fn small_limits_are_kept_too() {
        let limits = Limits { bytes: 2 * CHUNK, nodes: 3, handles_per_client: 1, clients: 1 };
        let mut fs = FileSystem::with_limits(limits);
        let handle = fs.open(A, b"/a", CREATE).unwrap();
        assert_eq!(fs.write(A, handle, &[1; CHUNK + 1]), Ok(CHUNK + 1));
        assert_eq!(fs.write(A, handle, &[1; CHUNK]), Err(FsError::Full));
        assert_eq!(fs.write(A, handle, &[1; CHUNK - 1]), Ok(CHUNK - 1), "up to the last chunk's end");
        assert_eq!(fs.open(A, b"/a", 0), Err(FsError::TooManyOpen));
        assert_eq!(fs.open(B, b"/a", 0), Err(FsError::TooManyOpen));
        fs.mkdir(b"/d").unwrap();
        assert_eq!(fs.mkdir(b"/e"), Err(FsError::Full));
    }
}
