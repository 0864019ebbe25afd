//! The service runtime: what turns a plain Rust value into an RPC server,
//! and what a client uses to call one.
//!
//! # What
//!
//! A server implements [`Service`] — one method, [`Service::handle`], that
//! reads a [`Request`] and fills in a [`Reply`] — and hands a `&'static`
//! instance to [`serve`]. `serve` wires it to a port in up to two ways,
//! chosen by the `mode` the kernel gave the domain's main:
//!
//! - **migrating** (mode bit 0, [`MODE_POOL`]): a pool of activations whose
//!   entry is a dispatch function monomorphised for the service type. The
//!   client's own thread enters it with the request already copied onto the
//!   activation's stack; the reply is built in a buffer on that same stack
//!   and handed to `Return`. A *sidetrack* entry lets the service grow the
//!   pool when the kernel is about to hand out its last activation
//!   ([`Service::pool_low`]);
//! - **switching** (mode bit 1, [`MODE_THREADS`]): server threads that loop
//!   on `Receive` / `ReplyReceive`, each with its own request and reply
//!   buffers on its stack.
//!
//! The same `handle` runs either way, so a server cannot tell (and need not
//! care) which path a request took. Because `handle` sees only a
//! [`Request`] and a [`Reply`], both of which can be built from ordinary
//! byte buffers, a server's logic runs under `cargo test` on the host.
//!
//! The client side is [`MessageBuffer`] (a message under construction or a
//! reply received, over storage of any size up to [`MESSAGE_MAX`]), [`call`],
//! and the name-service calls [`register`], [`lookup`] and [`list_names`],
//! whose wire protocol is in [`naming`].
//!
//! # Why it looks like this
//!
//! - *Buffers start uninitialised.* A migrating call builds its reply in a
//!   fresh 32 KiB buffer on the activation's stack every time. Zeroing it
//!   would cost a 32 KiB memset per call — the size of the Cortex-A72's
//!   whole L1 data cache — on a path whose point is to be short. So
//!   [`MessageBuffer`] keeps a watermark of how much of its storage has been
//!   written and only ever exposes that prefix as bytes: the cost of a
//!   reply is proportional to its size. Buffers that are received into
//!   (a client's reply buffer, a server thread's request buffer) are
//!   zeroed once, the first time, and reused.
//! - *The context word names a record, not the service.* The kernel hands
//!   every dispatch upcall one word per domain. `serve` stores there the
//!   address of a small leaked record holding the migrating handler made
//!   for the service's type, the service itself (type-erased), the port
//!   and the stack size. The gate's dispatch trampoline calls the handler
//!   *from the record*, so handler and service always come from the same
//!   `serve::<S>` and agree on the type by construction — no per-call
//!   downcast (a domain that calls `serve` twice simply serves the second
//!   service from then on). The sidetrack takes the port and stack size
//!   from the record (the kernel's sidetrack upcall need not name the port
//!   in the server's space).
//! - *Errors the runtime must answer for itself* — a request that is not a
//!   well-formed message, a context word that names no service of this
//!   type — get replies with labels from the top of the `u32` range
//!   ([`LABEL_MALFORMED_REQUEST`], [`LABEL_NO_SERVICE`]), well away from the
//!   small status labels services use.
//!
//! # What it leaves out
//!
//! - One migrating service per domain: the kernel keeps one context word
//!   per domain, so a second `serve` with a pool replaces the first's
//!   context. Threads-only serving has no such limit (each thread gets its
//!   record as its argument).
//! - The context word is trusted: only this runtime can set it (the gate's
//!   `context_set` is crate-private), always to a leaked `Dispatch`.
//! - No dropping of send rights (the kernel has no call for it yet), no
//!   out-of-line payloads (messages are inline, at most [`PAYLOAD_MAX`]
//!   bytes), no timeouts.

use crate::gate;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};
use tern_core::abi::{Error, MESSAGE_MAX, MessageHeader, NAME_SERVICE, NO_RIGHT, PAYLOAD_MAX, PortName};

/// Mode bit: serve with a pool of activations (migrating RPC).
pub const MODE_POOL: usize = 1;
/// Mode bit: serve with server threads (switching, static-thread RPC).
pub const MODE_THREADS: usize = 2;
/// Both mode bits: pool and threads on the same port.
pub const MODE_BOTH: usize = MODE_POOL | MODE_THREADS;

/// Activations a server adds to its pool at start, unless it has reasons of
/// its own.
pub const DEFAULT_POOL: usize = 4;
/// Server threads a server starts, unless it has reasons of its own.
pub const DEFAULT_THREADS: usize = 2;
/// Stack bytes per activation and per server thread: room for a request of
/// up to [`MESSAGE_MAX`] bytes already on the stack (migrating) or a
/// request buffer (switching), a reply buffer of the same size, and frames.
pub const DEFAULT_STACK_BYTES: usize = 96 * 1024;
/// Stack bytes of the sidetrack activation, which only asks the service how
/// many activations to add and adds them.
pub const SIDETRACK_STACK_BYTES: usize = 16 * 1024;
/// Priority of the server threads [`serve`] creates (0 lowest, 31 highest).
pub const SERVER_THREAD_PRIORITY: u8 = 16;
/// Activations a [`PoolGrowth`] made with [`PoolGrowth::standard`] grants
/// per sidetrack upcall.
pub const POOL_GROWTH_STEP: usize = 2;
/// Activations a [`PoolGrowth`] made with [`PoolGrowth::standard`] grants in
/// all (on top of the pool the server started with).
pub const POOL_GROWTH_LIMIT: usize = 4;

pub use tern_core::abi::REGISTER_WORDS;

/// A payload as the words a register message carries it in (little-endian,
/// zero past its end); `None` if it is longer than the words.
pub(crate) fn pack_words(payload: &[u8]) -> Option<[u64; REGISTER_WORDS]> {
    let mut bytes = [0u8; 8 * REGISTER_WORDS];
    bytes.get_mut(..payload.len())?.copy_from_slice(payload);
    Some(core::array::from_fn(|index| {
        u64::from_le_bytes(bytes[8 * index..8 * index + 8].try_into().unwrap_or_default())
    }))
}

/// The bytes register-message words carry (the inverse of [`pack_words`]).
fn unpack_words(words: [u64; REGISTER_WORDS]) -> [u8; 8 * REGISTER_WORDS] {
    let mut bytes = [0u8; 8 * REGISTER_WORDS];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

/// Bytes of a message whose payload fits [`REGISTER_WORDS`]: a header and
/// the words. A [`MessageBuffer`] made by its public constructors keeps
/// this much initialised (when it has room), so that its words can be
/// loaded without looking at the payload's length.
pub const REGISTER_MESSAGE: usize = MessageHeader::SIZE + 8 * REGISTER_WORDS;

/// Reply label: the request was not a well-formed message (too short, or
/// its header disagreed with its length). Never passed to a service.
pub const LABEL_MALFORMED_REQUEST: u32 = u32::MAX;
/// Reply label: the domain's context word does not name a service of the
/// type this dispatch entry was made for (see the module documentation).
pub const LABEL_NO_SERVICE: u32 = u32::MAX - 1;
/// Reply label a service may use when its reply does not fit the reply
/// buffer it was given (the runtime's buffers always hold [`PAYLOAD_MAX`]
/// bytes, so this only happens with smaller buffers, as in tests).
pub const LABEL_REPLY_TOO_LARGE: u32 = u32::MAX - 2;

/// A server: what to do with one request.
///
/// Several threads may be inside `handle` at once (several clients'
/// threads migrated into activations, and server threads), hence `Sync`;
/// shared state goes behind a lock.
pub trait Service: Sync + 'static {
    /// Answer `request` by filling in `reply`, which starts with label 0,
    /// no right and an empty payload.
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>);

    /// Answer a request that came with a region the client lent for this
    /// call ([`gate::call_lending`]): the same address the client used, no
    /// copy, valid only until this returns (the lifetime says so). The
    /// default ignores the region and answers with [`Service::handle`].
    fn handle_lent(&self, request: &Request<'_>, lent: Lent<'_>, reply: &mut Reply<'_>) {
        let _ = lent;
        self.handle(request, reply);
    }

    /// The kernel is about to hand out the last free activation of `port`'s
    /// pool (`free` are left): return how many activations to add. Runs in
    /// the sidetrack upcall, on the client's thread, before the call goes
    /// on. The default adds none.
    fn pool_low(&self, port: PortName, free: usize) -> usize {
        let _ = (port, free);
        0
    }
}

/// A region of the client's memory lent to a migrating call, as the
/// server sees it: read-only or read-write, for the call only.
#[derive(Debug)]
pub enum Lent<'a> {
    /// The client lent it read-only.
    ReadOnly(&'a [u8]),
    /// The client lent it read-write: what the server writes, the client
    /// sees when the call returns.
    ReadWrite(&'a mut [u8]),
}

impl Lent<'_> {
    /// The bytes, whichever way they were lent.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Lent::ReadOnly(bytes) => bytes,
            Lent::ReadWrite(bytes) => bytes,
        }
    }
}

/// A received message, seen in place: its header and its payload.
///
/// The runtime only builds views whose header agrees with the payload's
/// length; a view built by hand (in a test) is taken as given, and
/// services should read the payload from [`MessageView::payload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageView<'a> {
    /// The message's header, as delivered (with `right` already rewritten
    /// by the kernel into the receiver's space).
    pub header: MessageHeader,
    /// The payload bytes after the header.
    pub payload: &'a [u8],
}

/// What a service is asked: a [`MessageView`] of the request.
pub type Request<'a> = MessageView<'a>;

/// What a client got back from [`call`]: a [`MessageView`] of the reply.
pub type ReplyView<'a> = MessageView<'a>;

impl<'a> MessageView<'a> {
    /// A view of `payload` with `label` and no right (for building requests
    /// by hand, as tests do).
    pub fn new(label: u32, payload: &'a [u8]) -> Self {
        MessageView { header: MessageHeader::new(label, payload.len()), payload }
    }

    /// The same view carrying a send right named `right`.
    pub fn with_right(mut self, right: PortName) -> Self {
        self.header.right = right;
        self
    }

    /// Decode a whole message (header first). [`Error::BadMessage`] if it
    /// is shorter than a header, longer than [`MESSAGE_MAX`], or its header's
    /// length disagrees with its size (never so for what the kernel
    /// delivered: it writes that field).
    pub fn parse(message: &'a [u8]) -> Result<Self, Error> {
        let header = MessageHeader::read_from(message).ok_or(Error::BadMessage)?;
        if !header.agrees_with(message.len()) {
            return Err(Error::BadMessage);
        }
        let payload = message.get(MessageHeader::SIZE..).ok_or(Error::BadMessage)?;
        Ok(MessageView { header, payload })
    }

    /// The message's label (an operation in a request, a status in a reply).
    pub fn label(&self) -> u32 {
        self.header.label
    }

    /// The send right the message carries, if any, named in the receiver's
    /// space.
    pub fn right(&self) -> Option<PortName> {
        (self.header.right != NO_RIGHT).then_some(self.header.right)
    }
}

/// A message being built, or a message received, over `Storage`: any
/// owned or borrowed slice of possibly uninitialised bytes, of which at
/// most [`MESSAGE_MAX`] are used.
///
/// The header lives in the first 16 bytes of the storage and is kept in
/// step with every change, so [`MessageBuffer::message`] is the message
/// ready to send. The storage need not be initialised: the buffer tracks
/// how much of it has been written and exposes only that (see the module
/// documentation for why).
///
/// - `MessageBuffer::new()` allocates a full-size buffer on the domain's
///   heap (the default storage type);
/// - `MessageBuffer::from_storage(&mut array[..])` works over a caller's
///   `[MaybeUninit<u8>; N]` — mind the stack: a full-size message is 32 KiB.
pub struct MessageBuffer<Storage = Box<[MaybeUninit<u8>]>> {
    storage: Storage,
    /// Bytes of `storage`, from the start, that hold initialised data.
    /// Always at least the header; never more than the capacity.
    initialized: usize,
}

/// What a service writes its answer into: a [`MessageBuffer`] over a
/// borrowed slice (on the activation's stack, or the server thread's).
pub type Reply<'a> = MessageBuffer<&'a mut [MaybeUninit<u8>]>;

/// Byte offsets of the header's fields.
const LABEL_AT: usize = 0;
const RIGHT_AT: usize = 4;
const LENGTH_AT: usize = 8;

impl MessageBuffer<Box<[MaybeUninit<u8>]>> {
    /// A heap-allocated buffer big enough for any message.
    pub fn new() -> Self {
        Self::with_payload_capacity(PAYLOAD_MAX)
    }

    /// A heap-allocated buffer for payloads of up to `payload_capacity`
    /// bytes (at most [`PAYLOAD_MAX`]). A reply buffer this small makes the
    /// kernel refuse longer replies with [`Error::ReplyTooLarge`].
    pub fn with_payload_capacity(payload_capacity: usize) -> Self {
        let bytes = MessageHeader::SIZE + payload_capacity.min(PAYLOAD_MAX);
        let mut buffer = Self::start(Box::new_uninit_slice(bytes));
        buffer.initialize_to(REGISTER_MESSAGE);
        buffer
    }
}

impl Default for MessageBuffer<Box<[MaybeUninit<u8>]>> {
    fn default() -> Self {
        Self::new()
    }
}

impl<Storage> MessageBuffer<Storage>
where
    Storage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
{
    /// An empty message (label 0, no right, no payload) over `storage`.
    /// [`Error::InvalidArgument`] if the storage cannot hold a header.
    pub fn from_storage(storage: Storage) -> Result<Self, Error> {
        if storage.as_ref().len() < MessageHeader::SIZE {
            return Err(Error::InvalidArgument);
        }
        let mut buffer = Self::start(storage);
        buffer.initialize_to(REGISTER_MESSAGE);
        Ok(buffer)
    }

    /// The message as the words a bound call passes in registers
    /// ([`crate::bound`]): the label, then [`REGISTER_WORDS`] payload
    /// words (bytes past the payload as they lie: the receiver sees only
    /// the payload's length) — if it fits: a payload of at most
    /// `8 * REGISTER_WORDS` bytes, no right, and the first
    /// [`REGISTER_MESSAGE`] bytes initialised (as the public constructors
    /// leave them, with room).
    #[inline(always)]
    pub(crate) fn register_words(&self) -> Option<(u64, [u64; REGISTER_WORDS])> {
        let bytes = self.initialized_bytes();
        if bytes.len() < REGISTER_MESSAGE || !bytes.as_ptr().addr().is_multiple_of(8) {
            return self.register_words_slowly();
        }
        // SAFETY: the first `REGISTER_MESSAGE` bytes are initialised (the
        // length test) and 8-byte aligned (the address test): six words,
        // read as such (the target keeps strict alignment, so this is
        // what lets the compiler load them as words rather than bytes).
        let words = unsafe { core::ptr::read(bytes.as_ptr().cast::<[u64; REGISTER_MESSAGE / 8]>()) }.map(u64::from_le);
        // label | right << 32, then length | reserved << 32.
        let length = words[1] & 0xffff_ffff;
        if words[0] >> 32 != u64::from(NO_RIGHT) || length > 8 * REGISTER_WORDS as u64 {
            return None;
        }
        Some((words[0] | length << 32, [words[2], words[3], words[4], words[5]]))
    }

    /// [`MessageBuffer::register_words`] for a buffer too small or
    /// misaligned for the word loads.
    #[cold]
    fn register_words_slowly(&self) -> Option<(u64, [u64; REGISTER_WORDS])> {
        let header = self.header();
        let payload = self.payload();
        if header.right != NO_RIGHT {
            return None;
        }
        Some((u64::from(header.label) | (payload.len() as u64) << 32, pack_words(payload)?))
    }

    /// Take a reply that came back in registers (label | payload length
    /// << 32, then the payload's words) as the message. A payload longer
    /// than the words, or than this buffer holds, is
    /// [`Error::ReplyTooLarge`] (and the buffer is cleared).
    #[inline(always)]
    pub(crate) fn accept_registers(
        &mut self,
        first: u64,
        words: [u64; REGISTER_WORDS],
    ) -> Result<MessageView<'_>, Error> {
        let length = (first >> 32) as usize & 0x7fff_ffff;
        if length > 8 * REGISTER_WORDS || MessageHeader::SIZE + length > self.capacity() {
            self.clear();
            return Err(Error::ReplyTooLarge);
        }
        let header = [first & 0xffff_ffff, length as u64];
        if self.capacity() < REGISTER_MESSAGE || !self.storage.as_ref().as_ptr().addr().is_multiple_of(8) {
            return self.accept_registers_slowly(header, words);
        }
        let message = [header[0], header[1], words[0], words[1], words[2], words[3]].map(u64::to_le);
        // SAFETY: `REGISTER_MESSAGE` bytes of our own storage (the capacity
        // test), 8-byte aligned (the address test), written whole as six
        // words: they are initialised after.
        unsafe { core::ptr::write(self.storage.as_mut().as_mut_ptr().cast::<[u64; REGISTER_MESSAGE / 8]>(), message) };
        self.initialized = self.initialized.max(REGISTER_MESSAGE);
        let payload = &self.initialized_bytes()[MessageHeader::SIZE..MessageHeader::SIZE + length];
        Ok(MessageView { header: MessageHeader::new(first as u32, length), payload })
    }

    /// [`MessageBuffer::accept_registers`] into storage too small or
    /// misaligned for the word stores (`header` checked: it fits).
    #[cold]
    fn accept_registers_slowly(
        &mut self,
        header: [u64; 2],
        words: [u64; REGISTER_WORDS],
    ) -> Result<MessageView<'_>, Error> {
        let length = header[1] as usize;
        self.initialize_to(MessageHeader::SIZE + length);
        let bytes = self.initialized_bytes_mut();
        bytes[..8].copy_from_slice(&header[0].to_le_bytes());
        bytes[8..16].copy_from_slice(&header[1].to_le_bytes());
        bytes[MessageHeader::SIZE..][..length].copy_from_slice(&unpack_words(words)[..length]);
        Ok(self.view())
    }

    /// What a call that wrote its reply into
    /// [`MessageBuffer::receive_area`] answered: the reply taken (see
    /// `accept`), or the error with the buffer cleared.
    #[inline(always)]
    pub(crate) fn take_reply(&mut self, answer: Result<usize, Error>) -> Result<MessageView<'_>, Error> {
        match answer {
            Ok(length) => self.accept(length),
            Err(error) => {
                self.clear();
                Err(error)
            }
        }
    }

    /// The storage as a claim (address, capacity) for the kernel to write
    /// a message into, without initialising it first: after a call that
    /// wrote a reply there, [`MessageBuffer::accept_kernel_written`].
    #[inline(always)]
    pub(crate) fn receive_claim(&mut self) -> (usize, usize) {
        (self.storage.as_mut().as_mut_ptr().addr(), self.capacity())
    }

    /// Take the `length` bytes a kernel call reported it wrote at the start
    /// of [`MessageBuffer::receive_claim`]'s storage (its answer says so:
    /// they are initialised now), as `accept` does.
    #[inline(always)]
    pub(crate) fn accept_kernel_written(&mut self, length: usize) -> Result<MessageView<'_>, Error> {
        self.initialized = self.initialized.max(length.min(self.capacity()));
        self.accept(length)
    }

    /// An empty message over storage known to hold at least a header.
    fn start(storage: Storage) -> Self {
        let mut buffer = MessageBuffer { storage, initialized: 0 };
        buffer.clear();
        buffer
    }

    /// Give the storage back.
    pub fn into_storage(self) -> Storage {
        self.storage
    }

    /// Bytes of a whole message (header included) this buffer can hold.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().len().min(MESSAGE_MAX)
    }

    /// Payload bytes this buffer can hold.
    pub fn payload_capacity(&self) -> usize {
        self.capacity() - MessageHeader::SIZE
    }

    /// The message's header.
    #[inline(always)]
    pub fn header(&self) -> MessageHeader {
        MessageHeader {
            label: self.label(),
            right: self.field(RIGHT_AT),
            length: self.payload_length() as u32,
            reserved: 0,
        }
    }

    /// The message's label.
    pub fn label(&self) -> u32 {
        self.field(LABEL_AT)
    }

    /// Set the message's label (an operation in a request, a status in a
    /// reply).
    pub fn set_label(&mut self, label: u32) {
        self.set_field(LABEL_AT, label);
    }

    /// The send right the message carries, if any.
    pub fn right(&self) -> Option<PortName> {
        let right = self.field(RIGHT_AT);
        (right != NO_RIGHT).then_some(right)
    }

    /// Send a right with the message: `port` names it in the sender's
    /// space; the receiver gets its own name for the same port.
    pub fn transfer(&mut self, port: PortName) {
        self.set_field(RIGHT_AT, port);
    }

    /// Send no right with the message.
    pub fn clear_right(&mut self) {
        self.set_field(RIGHT_AT, NO_RIGHT);
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let end = MessageHeader::SIZE + self.payload_length();
        &self.initialized_bytes()[MessageHeader::SIZE..end]
    }

    /// Start again: label 0, no right, empty payload. Keeps the storage
    /// (and what has been initialised of it).
    pub fn clear(&mut self) {
        let slots = &mut self.storage.as_mut()[..MessageHeader::SIZE];
        store_pair(slots, EMPTY_HEADER_WORDS);
        self.initialized = self.initialized.max(MessageHeader::SIZE);
    }

    /// Make the payload `bytes`. [`Error::BadMessage`] (and no change) if
    /// they do not fit.
    pub fn set_payload(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > self.payload_capacity() {
            return Err(Error::BadMessage);
        }
        self.put(MessageHeader::SIZE, bytes);
        self.set_payload_length(bytes.len());
        Ok(())
    }

    /// Append `bytes` to the payload. [`Error::BadMessage`] (and no change)
    /// if they do not fit.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let length = self.payload_length();
        if bytes.len() > self.payload_capacity() - length {
            return Err(Error::BadMessage);
        }
        self.put(MessageHeader::SIZE + length, bytes);
        self.set_payload_length(length + bytes.len());
        Ok(())
    }

    /// Make the payload `length` bytes long and return it to be filled in
    /// place. Bytes never written before read as zero; bytes that were part
    /// of an earlier payload keep their value. [`Error::BadMessage`] (and no
    /// change) if `length` does not fit.
    pub fn payload_mut(&mut self, length: usize) -> Result<&mut [u8], Error> {
        if length > self.payload_capacity() {
            return Err(Error::BadMessage);
        }
        let end = MessageHeader::SIZE + length;
        self.initialize_to(end);
        self.set_payload_length(length);
        Ok(&mut self.initialized_bytes_mut()[MessageHeader::SIZE..end])
    }

    /// The whole message, header first, as it goes to the kernel.
    pub fn message(&self) -> &[u8] {
        &self.initialized_bytes()[..MessageHeader::SIZE + self.payload_length()]
    }

    /// The message as a [`MessageView`] (what a receiver would see, before
    /// the kernel rewrites the right).
    pub fn view(&self) -> MessageView<'_> {
        MessageView { header: self.header(), payload: self.payload() }
    }

    /// The whole storage as bytes, for the kernel to write a message into.
    /// Initialises it all the first time (and never again).
    pub(crate) fn receive_area(&mut self) -> &mut [u8] {
        self.initialize_to(self.capacity());
        self.initialized_bytes_mut()
    }

    /// Take the `length` bytes the kernel wrote into the receive area as
    /// the message. If they are not a well-formed message the buffer is
    /// cleared and the answer is [`Error::BadMessage`].
    #[inline(always)]
    fn accept(&mut self, length: usize) -> Result<MessageView<'_>, Error> {
        let well_formed = self.initialized_bytes().get(..length).is_some_and(|bytes| MessageView::parse(bytes).is_ok());
        if !well_formed {
            self.clear();
            return Err(Error::BadMessage);
        }
        Ok(self.view())
    }

    /// Payload length as recorded in the header, never beyond what has
    /// been initialised.
    fn payload_length(&self) -> usize {
        (self.field(LENGTH_AT) as usize).min(self.initialized - MessageHeader::SIZE)
    }

    fn set_payload_length(&mut self, length: usize) {
        self.set_field(LENGTH_AT, length as u32);
    }

    fn field(&self, at: usize) -> u32 {
        let bytes = &self.initialized_bytes()[at..at + 4];
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    fn set_field(&mut self, at: usize, value: u32) {
        self.put(at, &value.to_le_bytes());
    }

    /// The initialised prefix of the storage, as bytes.
    fn initialized_bytes(&self) -> &[u8] {
        let slots = &self.storage.as_ref()[..self.initialized];
        // SAFETY: every byte below `initialized` has been written, by `put`
        // or `initialize_to` (the kernel writes only into `receive_area`,
        // which is initialised before it is handed out), and
        // `MaybeUninit<u8>` has the size, alignment and layout of `u8`.
        unsafe { &*(slots as *const [MaybeUninit<u8>] as *const [u8]) }
    }

    /// The initialised prefix of the storage, as mutable bytes.
    fn initialized_bytes_mut(&mut self) -> &mut [u8] {
        let initialized = self.initialized;
        let slots = &mut self.storage.as_mut()[..initialized];
        // SAFETY: as in `initialized_bytes`; writes through the result store
        // initialised `u8`s, so the prefix stays initialised.
        unsafe { &mut *(slots as *mut [MaybeUninit<u8>] as *mut [u8]) }
    }

    /// Zero the bytes from the watermark up to `end` (at most the
    /// capacity) and move the watermark there.
    fn initialize_to(&mut self, end: usize) {
        let end = end.min(self.capacity());
        if end > self.initialized {
            let initialized = self.initialized;
            self.storage.as_mut()[initialized..end].fill(MaybeUninit::new(0));
            self.initialized = end;
        }
    }

    /// Copy `bytes` to offset `at` (the caller has checked they fit within
    /// the capacity), zeroing any gap below `at` first so that the
    /// initialised bytes stay one prefix.
    fn put(&mut self, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        debug_assert!(end <= self.capacity());
        self.initialize_to(at);
        let slots = &mut self.storage.as_mut()[at..end];
        // SAFETY: `slots` is exactly `bytes.len()` bytes of our own storage
        // (the slice index checked the bounds), which cannot overlap the
        // shared borrow `bytes`; `MaybeUninit<u8>` has `u8`'s layout, and
        // writing initialised bytes into it is always allowed.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), slots.as_mut_ptr().cast::<u8>(), bytes.len()) };
        self.initialized = self.initialized.max(end);
    }
}

impl<Storage> core::fmt::Debug for MessageBuffer<Storage>
where
    Storage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
{
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter
            .debug_struct("MessageBuffer")
            .field("label", &self.label())
            .field("right", &self.right())
            .field("payload_length", &self.payload_length())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// RPC: send `request` on `port` and wait for the reply, which lands in
/// `reply` (overwriting what it held). Returns a view of the reply.
///
/// Errors are the kernel's (a reply longer than `reply` can hold is
/// [`Error::ReplyTooLarge`]), or [`Error::BadMessage`] if what came back
/// is not a well-formed message. On any error `reply` is left empty.
pub fn call<'reply, RequestStorage, ReplyStorage>(
    port: PortName,
    request: &MessageBuffer<RequestStorage>,
    reply: &'reply mut MessageBuffer<ReplyStorage>,
) -> Result<ReplyView<'reply>, Error>
where
    RequestStorage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
    ReplyStorage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
{
    let answer = gate::call(port, request.message(), reply.receive_area());
    reply.take_reply(answer)
}

pub mod naming {
    //! The name service's wire protocol, shared by
    //! [`register`](super::register), [`lookup`](super::lookup),
    //! [`list_names`](super::list_names) and the `names` server.
    //!
    //! - [`REGISTER`]: payload = the name ([`NAME_MAX`] bytes at most,
    //!   UTF-8, not empty); the request carries a send right to the port to
    //!   register. Reply label [`OK`], [`TAKEN`] or [`BAD_REQUEST`].
    //! - [`LOOKUP`]: payload = the name. Reply label [`OK`] carrying a send
    //!   right to the registered port, or [`NOT_FOUND`] (or
    //!   [`BAD_REQUEST`]).
    //! - [`LIST`]: no payload. Reply label [`OK`] with every registered
    //!   name and its port, or [`PARTIAL`] with those that fit in
    //!   [`LIST_MAX`] bytes (in name order: the first ones). The payload is
    //!   a sequence of entries, each the port's name *in the name service's
    //!   own space* (`u32`, little-endian), the name's length (`u8`), then
    //!   the name ([`encode_entry`], [`entries`]). No right travels: the
    //!   numbers mean something only to one who can read the name
    //!   service's space — the kernel (`kernel.system`'s `PORTS` listing);
    //!   to anyone else they say which names share a port, and how many
    //!   names there are.

    use super::MessageView;
    use alloc::vec::Vec;
    use tern_core::abi::{Error, PortName};

    /// Request label: register a name for the port whose right the request
    /// carries.
    pub const REGISTER: u32 = 1;
    /// Request label: look a name up.
    pub const LOOKUP: u32 = 2;
    /// Request label: list every name with its port.
    pub const LIST: u32 = 3;
    /// Reply label: done.
    pub const OK: u32 = 0;
    /// Reply label: the name is already registered.
    pub const TAKEN: u32 = 1;
    /// Reply label: the request was malformed (unknown operation, a name
    /// that is empty, too long or not UTF-8, or a registration carrying no
    /// right).
    pub const BAD_REQUEST: u32 = 2;
    /// Reply label: no port is registered under the name.
    pub const NOT_FOUND: u32 = 3;
    /// Reply label to [`LIST`]: the entries that fit in [`LIST_MAX`]
    /// bytes; more names are registered.
    pub const PARTIAL: u32 = 4;
    /// Longest name, in bytes.
    pub const NAME_MAX: usize = 64;
    /// Most payload bytes in a reply to [`LIST`]: at least 59 entries of
    /// the longest names (69 bytes each), 512 of 3-byte ones. A name
    /// service with more waits for a request that pages through them.
    pub const LIST_MAX: usize = 4096;
    /// An entry's bytes before its name: the port (`u32`), the length (`u8`).
    const ENTRY_HEADER: usize = 5;

    /// `bytes` as a name, if it is one: UTF-8, 1 to [`NAME_MAX`] bytes.
    pub fn valid_name(bytes: &[u8]) -> Option<&str> {
        if bytes.is_empty() || bytes.len() > NAME_MAX {
            return None;
        }
        core::str::from_utf8(bytes).ok()
    }

    /// What a reply to [`REGISTER`] means: [`OK`] is success, [`TAKEN`] is
    /// [`Error::InvalidArgument`], anything else [`Error::BadMessage`].
    pub fn register_outcome(reply: &MessageView<'_>) -> Result<(), Error> {
        match reply.label() {
            OK => Ok(()),
            TAKEN => Err(Error::InvalidArgument),
            _ => Err(Error::BadMessage),
        }
    }

    /// Append `name` and `port` to a [`LIST`] reply's payload `into`, if
    /// the entry fits within `limit` bytes in all; whether it did (nothing
    /// is appended if not). `name` must be a valid name (at most
    /// [`NAME_MAX`] bytes, so its length fits the entry's byte).
    pub fn encode_entry(into: &mut Vec<u8>, name: &str, port: PortName, limit: usize) -> bool {
        let length = u8::try_from(name.len()).ok().filter(|&length| usize::from(length) <= NAME_MAX);
        let Some(length) = length else { return false };
        if into.len() + ENTRY_HEADER + name.len() > limit {
            return false;
        }
        into.extend_from_slice(&port.to_le_bytes());
        into.push(length);
        into.extend_from_slice(name.as_bytes());
        true
    }

    /// The entries of a [`LIST`] reply's payload, (port, name) in order;
    /// they stop at the first malformed one (cut short, or a name that is
    /// not a valid name).
    pub fn entries(mut payload: &[u8]) -> impl Iterator<Item = (PortName, &str)> {
        core::iter::from_fn(move || {
            let (header, rest) = payload.split_at_checked(ENTRY_HEADER)?;
            let port = PortName::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let (name, rest) = rest.split_at_checked(usize::from(header[4]))?;
            let name = valid_name(name)?;
            payload = rest;
            Some((port, name))
        })
    }

    /// What a reply to [`LIST`] means: [`OK`] is the whole list (true),
    /// [`PARTIAL`] its first part (false); anything else
    /// [`Error::BadMessage`].
    pub fn list_outcome(reply: &MessageView<'_>) -> Result<bool, Error> {
        match (reply.label(), reply.right()) {
            (OK, None) => Ok(true),
            (PARTIAL, None) => Ok(false),
            _ => Err(Error::BadMessage),
        }
    }

    /// What a reply to [`LOOKUP`] means: [`OK`] with a right is that right,
    /// [`NOT_FOUND`] is [`Error::NoSuchPort`], anything else (including
    /// [`OK`] without a right) [`Error::BadMessage`].
    pub fn lookup_outcome(reply: &MessageView<'_>) -> Result<PortName, Error> {
        match (reply.label(), reply.right()) {
            (OK, Some(port)) => Ok(port),
            (NOT_FOUND, _) => Err(Error::NoSuchPort),
            _ => Err(Error::BadMessage),
        }
    }
}

/// Storage big enough for any name-service message.
type NamingStorage = [MaybeUninit<u8>; MessageHeader::SIZE + naming::NAME_MAX];

/// Register `port` (a port this domain holds a right to) under `name` with
/// the name service. [`Error::InvalidArgument`] if the name is not a valid
/// name (see [`naming::valid_name`]) or is already taken; otherwise the
/// kernel's errors, or [`Error::BadMessage`] for a reply that makes no
/// sense.
pub fn register(name: &str, port: PortName) -> Result<(), Error> {
    naming::valid_name(name.as_bytes()).ok_or(Error::InvalidArgument)?;
    let mut request_storage: NamingStorage = [MaybeUninit::uninit(); MessageHeader::SIZE + naming::NAME_MAX];
    let mut reply_storage: NamingStorage = [MaybeUninit::uninit(); MessageHeader::SIZE + naming::NAME_MAX];
    let mut request = MessageBuffer::start(&mut request_storage[..]);
    request.set_label(naming::REGISTER);
    request.set_payload(name.as_bytes())?;
    request.transfer(port);
    let mut reply = MessageBuffer::start(&mut reply_storage[..]);
    naming::register_outcome(&call(NAME_SERVICE, &request, &mut reply)?)
}

/// Look `name` up with the name service: a send right to the port
/// registered under it, named in this domain's space.
/// [`Error::NoSuchPort`] if nothing is registered under it,
/// [`Error::InvalidArgument`] if it is not a valid name; otherwise the
/// kernel's errors, or [`Error::BadMessage`] for a reply that makes no
/// sense.
pub fn lookup(name: &str) -> Result<PortName, Error> {
    naming::valid_name(name.as_bytes()).ok_or(Error::InvalidArgument)?;
    let mut request_storage: NamingStorage = [MaybeUninit::uninit(); MessageHeader::SIZE + naming::NAME_MAX];
    let mut reply_storage: NamingStorage = [MaybeUninit::uninit(); MessageHeader::SIZE + naming::NAME_MAX];
    let mut request = MessageBuffer::start(&mut request_storage[..]);
    request.set_label(naming::LOOKUP);
    request.set_payload(name.as_bytes())?;
    let mut reply = MessageBuffer::start(&mut reply_storage[..]);
    naming::lookup_outcome(&call(NAME_SERVICE, &request, &mut reply)?)
}

/// Every name registered with the name service, each with its port's name
/// *in the name service's space* (see [`naming::LIST`]), in name order;
/// and whether that is all of them (false: the reply was cut at
/// [`naming::LIST_MAX`] bytes). The kernel's errors, or
/// [`Error::BadMessage`] for a reply that makes no sense.
pub fn list_names() -> Result<(Vec<(String, PortName)>, bool), Error> {
    let mut request_storage: NamingStorage = [MaybeUninit::uninit(); MessageHeader::SIZE + naming::NAME_MAX];
    let mut request = MessageBuffer::start(&mut request_storage[..]);
    request.set_label(naming::LIST);
    let mut reply = MessageBuffer::with_payload_capacity(naming::LIST_MAX);
    let reply = call(NAME_SERVICE, &request, &mut reply)?;
    let complete = naming::list_outcome(&reply)?;
    let names = naming::entries(reply.payload).map(|(port, name)| (String::from(name), port)).collect();
    Ok((names, complete))
}

/// A pool-growth policy for [`Service::pool_low`]: grants up to `step`
/// activations per sidetrack, `limit` in all. Lives in the service's state
/// (on the domain's heap); safe to share between threads.
#[derive(Debug)]
pub struct PoolGrowth {
    granted: AtomicUsize,
    step: usize,
    limit: usize,
}

impl PoolGrowth {
    /// Grant up to `step` activations at a time, `limit` in all.
    pub const fn new(step: usize, limit: usize) -> Self {
        PoolGrowth { granted: AtomicUsize::new(0), step, limit }
    }

    /// [`POOL_GROWTH_STEP`] at a time, [`POOL_GROWTH_LIMIT`] in all.
    pub const fn standard() -> Self {
        Self::new(POOL_GROWTH_STEP, POOL_GROWTH_LIMIT)
    }

    /// How many activations to add now (zero once the limit is reached).
    pub fn grant(&self) -> usize {
        let share = |granted: usize| self.step.min(self.limit.saturating_sub(granted));
        match self.granted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |granted| {
            let more = share(granted);
            (more > 0).then_some(granted + more)
        }) {
            Ok(before) => share(before),
            Err(_) => 0,
        }
    }

    /// Activations granted so far.
    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::Acquire)
    }
}

/// Serve `service` on `port` (a port this domain holds the receive right
/// to), as `mode` says:
///
/// - bit 0 ([`MODE_POOL`]): set the domain's context word, add `pool`
///   activations with `stack` bytes each entering the dispatch entry for
///   `S`, and ask for a sidetrack upcall (stack [`SIDETRACK_STACK_BYTES`])
///   that adds what [`Service::pool_low`] says;
/// - bit 1 ([`MODE_THREADS`]): create `threads` server threads at
///   [`SERVER_THREAD_PRIORITY`] with `stack` bytes each, looping on
///   receive / reply-and-receive.
///
/// Returns once everything is set up; the pool and threads keep serving.
/// [`Error::InvalidArgument`] for a mode with no bit or unknown bits, or a
/// mode bit whose count is zero; otherwise the first kernel error (what was
/// set up before it stays).
pub fn serve<S: Service>(
    service: &'static S,
    port: PortName,
    mode: usize,
    pool: usize,
    threads: usize,
    stack: usize,
) -> Result<(), Error> {
    let migrating = mode & MODE_POOL != 0;
    let switching = mode & MODE_THREADS != 0;
    if mode & !MODE_BOTH != 0 || !(migrating || switching) || (migrating && pool == 0) || (switching && threads == 0) {
        return Err(Error::InvalidArgument);
    }
    let dispatch: &'static Dispatch = Box::leak(Box::new(Dispatch::new(service, port, stack)));
    let word = core::ptr::from_ref(dispatch).expose_provenance();
    if migrating {
        gate::context_set(word, tern_core::abi::CONTEXT_DISPATCH_RECORD)?;
        gate::pool_add(port, pool, gate::dispatch_trampoline(), stack)?;
        gate::sidetrack_set(port, sidetrack_entry_address::<S>(), SIDETRACK_STACK_BYTES)?;
    }
    if switching {
        for _ in 0..threads {
            gate::thread_create(thread_loop::<S>, word, SERVER_THREAD_PRIORITY, stack)?;
        }
    }
    Ok(())
}

/// Start a server the usual way, as a domain's main does: create a port,
/// register it under `name` with the name service (`None` for the name
/// service itself, whose first port everyone already has at name 0), and
/// [`serve`] `service` as `mode` says with the default pool, threads and
/// stacks. Returns what the main returns: 0, or the first error's code.
pub fn start<S: Service>(name: Option<&str>, service: S, mode: usize) -> usize {
    let started = (|| -> Result<(), Error> {
        let port = gate::port_create()?;
        if let Some(name) = name {
            register(name, port)?;
        }
        let service: &'static S = Box::leak(Box::new(service));
        serve(service, port, mode, DEFAULT_POOL, DEFAULT_THREADS, DEFAULT_STACK_BYTES)
    })();
    started.map_or_else(|error| error as usize, |()| 0)
}

/// What the dispatch entries need to find: leaked by [`serve`], named by the
/// context word (migrating) or the thread's argument (switching).
#[repr(C)]
struct Dispatch {
    /// The migrating handler for the service's type (first: the gate's
    /// dispatch trampoline calls the handler the context word points at).
    handler: gate::DispatchHandler,
    /// The same for a request in registers (second: the bound merged
    /// path's register form calls the handler at this offset, for a domain
    /// whose context word is declared a dispatch record).
    registers: RegisterHandler,
    /// The service `serve` was given (a `&'static S` for the `S` the
    /// record was made for: see [`Dispatch::service`]).
    service: *const (),
    /// The port served, in this domain's space.
    port: PortName,
    /// Stack bytes per activation.
    stack: usize,
}

impl Dispatch {
    fn new<S: Service>(service: &'static S, port: PortName, stack: usize) -> Self {
        Dispatch {
            handler: kernel_made_handler::<S>,
            registers: bound_register_handler::<S>,
            service: core::ptr::from_ref(service).cast(),
            port,
            stack,
        }
    }

    /// The service, as the `S` this record was made for. Only the entries
    /// made for that same `S` by the same `serve::<S>` call — the handler
    /// stored in the record, the thread loop and sidetrack entry registered
    /// beside it — ever receive this record, so the type always matches.
    fn service<S: Service>(&self) -> Option<&'static S> {
        // SAFETY: `service` was made from a `&'static S` (leaked, never
        // freed, shared only immutably) in `Dispatch::new::<S>`, and by the
        // construction above only code instantiated for that `S` reads it.
        Some(unsafe { &*self.service.cast::<S>() })
    }
}

/// The record a context word names, if it plausibly names one.
fn dispatch_from_word(word: usize) -> Option<&'static Dispatch> {
    if word == 0 || !word.is_multiple_of(core::mem::align_of::<Dispatch>()) {
        return None;
    }
    // SAFETY: the context word and a server thread's argument are set only
    // by `serve`, to the address of a `Dispatch` it leaked (so it lives as
    // long as the domain and is never written again); `gate::context_set`
    // is private to this crate, and the thread loop is private to this
    // module, so no other code can hand us a word. `Dispatch::service`
    // still checks the type.
    Some(unsafe { &*core::ptr::with_exposed_provenance::<Dispatch>(word) })
}

/// The request the kernel put on this activation's stack, if it is one.
/// `MessageHeader::new(0, 0)` (label 0, no right, no payload) as the two
/// little-endian 64-bit words of its encoding: label | right << 32, then
/// length | reserved << 32.
const EMPTY_HEADER_WORDS: [u64; 2] = [(NO_RIGHT as u64) << 32, 0];

/// Write 16 bytes as two 64-bit words with one `stp` of general registers.
///
/// Why not a plain copy: the compiler turns a 16-byte copy into one SIMD
/// load and store, and the first SIMD use after a kernel call costs the
/// trap that zeroes the SIMD registers (see the kernel's `vectors.s`). A
/// migrating activation starts afresh on every call and clears its reply
/// header every time, so that trap would be paid on every call.
#[inline(always)]
fn store_pair(slots: &mut [MaybeUninit<u8>], words: [u64; 2]) {
    assert!(slots.len() >= 16);
    #[cfg(target_os = "none")]
    {
        // SAFETY: `slots` is at least 16 writable bytes of our own storage
        // (checked above); `stp` of general registers needs no alignment
        // in Normal memory, and writes nothing else.
        unsafe {
            core::arch::asm!(
                "stp {low}, {high}, [{to}]",
                low = in(reg) words[0],
                high = in(reg) words[1],
                to = in(reg) slots.as_mut_ptr(),
                options(nostack, preserves_flags),
            );
        }
    }
    #[cfg(not(target_os = "none"))]
    {
        for (slot, byte) in slots.iter_mut().zip(words[0].to_le_bytes().into_iter().chain(words[1].to_le_bytes())) {
            slot.write(byte);
        }
    }
}

fn sidetrack_entry_address<S: Service>() -> usize {
    let entry: extern "C" fn(usize, usize, usize) -> ! = sidetrack_entry::<S>;
    entry as usize
}

/// Where a migrating call enters a pool activation (through the gate's
/// dispatch trampoline, which calls the first word of the context record,
/// or straight from the kernel's merged paths): x0/x1 the request (on this
/// stack), x2 the context word, x3 the reply area, x4/x5 what was lent.
/// Builds the reply in the reply area; returns its length.
///
/// It does not check again what the kernel guarantees (issue 15: the
/// runtime's dispatch re-checked what the kernel had stamped, 14 of its
/// 20 instructions). Rejected: keeping those checks for the protected
/// trampoline only (two handlers for one contract, and no caller but the
/// kernel either way).
///
/// # Safety
///
/// Called only through a pool activation's entry — the dispatch
/// trampoline, which only the kernel enters, at a call — or by the
/// kernel's merged paths; its address is in the [`Dispatch`] record only.
/// They guarantee: `context` is this domain's context word, which `serve`
/// set to a leaked `Dispatch` made for this `S` (the kernel copies it into
/// each activation of the domain); at `request_address` lie
/// `request_length` bytes the kernel has just written on this
/// activation's stack, a whole message (at least a header, its length
/// field stamped with the payload's true length), 16-byte aligned (the
/// request is put at the stack's top minus its length, rounded down to
/// 16); `reply_area` is `MESSAGE_MAX` bytes below it that nothing else
/// uses until this returns, 16-byte aligned; the lent region is one the
/// kernel checked and made reachable for the call, or none (address 0).
unsafe extern "C" fn kernel_made_handler<S: Service>(
    request_address: usize,
    request_length: usize,
    context: usize,
    reply_area: *mut u8,
    lent_address: usize,
    lent_word: usize,
) -> usize {
    // SAFETY: see the function's contract: a live `Dispatch` for `S`, a
    // request of `request_length` initialised bytes, a reply area of
    // `MESSAGE_MAX` bytes, both 16-byte aligned and ours alone for the
    // call.
    let (dispatch, request, storage) = unsafe {
        core::hint::assert_unchecked(
            request_address.is_multiple_of(MESSAGE_ALIGN)
                && reply_area.addr().is_multiple_of(MESSAGE_ALIGN)
                && request_length >= MessageHeader::SIZE,
        );
        let dispatch = &*core::ptr::with_exposed_provenance::<Dispatch>(context);
        let request =
            core::slice::from_raw_parts(core::ptr::with_exposed_provenance::<u8>(request_address), request_length);
        let storage = core::slice::from_raw_parts_mut(reply_area.cast::<MaybeUninit<u8>>(), MESSAGE_MAX);
        (dispatch, request, storage)
    };
    let mut reply = MessageBuffer::start(storage);
    if let (Some(service), Some(header)) = (dispatch.service::<S>(), MessageHeader::read_from(request)) {
        let payload = request.get(MessageHeader::SIZE..).unwrap_or_default();
        let request = MessageView { header, payload };
        match lent_from_registers(lent_address, lent_word) {
            Some(lent) => service.handle_lent(&request, lent, &mut reply),
            None => service.handle(&request, &mut reply),
        }
    }
    reply.message().len()
}

/// A handler only the register forms of the kernel's bound paths call —
/// the merged path (for a domain whose context word is declared a dispatch
/// record) and, for a protected server, the trapping fast path through
/// the gate's `tern_dispatch_trampoline_registers`: the request's label |
/// payload length << 32, its payload words, the context word and the
/// reply area.
type RegisterHandler = unsafe extern "C" fn(u64, u64, u64, u64, u64, usize, *mut u8) -> usize;

/// [`kernel_made_handler`] for a request that came in registers: the
/// service sees it as any request (a [`MessageView`] over the words, on
/// this stack); the reply is built in the reply area as ever (the path
/// hands it back in registers when it fits).
///
/// # Safety
///
/// As [`kernel_made_handler`]'s, without the request in memory: `first`
/// and the words are the client's registers, which any values may fill.
unsafe extern "C" fn bound_register_handler<S: Service>(
    first: u64,
    word0: u64,
    word1: u64,
    word2: u64,
    word3: u64,
    context: usize,
    reply_area: *mut u8,
) -> usize {
    // SAFETY: see the function's contract: a live `Dispatch` for `S`, a
    // reply area of `MESSAGE_MAX` bytes, 16-byte aligned and ours alone
    // for the call.
    let (dispatch, storage) = unsafe {
        core::hint::assert_unchecked(reply_area.addr().is_multiple_of(MESSAGE_ALIGN));
        let dispatch = &*core::ptr::with_exposed_provenance::<Dispatch>(context);
        let storage = core::slice::from_raw_parts_mut(reply_area.cast::<MaybeUninit<u8>>(), MESSAGE_MAX);
        (dispatch, storage)
    };
    let mut reply = MessageBuffer::start(storage);
    let bytes = unpack_words([word0, word1, word2, word3]);
    let length = ((first >> 32) as usize).min(bytes.len());
    if let Some(service) = dispatch.service::<S>() {
        let request = MessageView::new(first as u32, &bytes[..length]);
        service.handle(&request, &mut reply);
    }
    reply.message().len()
}

/// The lent region the kernel handed this call, if any (address 0 or
/// length 0: none).
fn lent_from_registers<'a>(address: usize, word: usize) -> Option<Lent<'a>> {
    let writable = word & tern_core::abi::LEND_WRITABLE != 0;
    let length = word & !tern_core::abi::LEND_WRITABLE;
    if address == 0 || length == 0 || length > tern_core::abi::LEND_MAX || address.checked_add(length).is_none() {
        return None;
    }
    let pointer = core::ptr::with_exposed_provenance_mut::<u8>(address);
    // SAFETY: the kernel passes a lent region only with the call that lent
    // it: it checked the range against the client's memory and mapped the
    // pages covering it into this domain's view (read-write only when the
    // client lent it so), or, for a merged domain, the range is already
    // reachable. It stays so until this activation's `Return`, which comes
    // after the handler this reference is given to has returned (the
    // lifetime cannot outlive the handler's call). The client borrowed it
    // (shared or exclusively) for the whole call, so nothing of the
    // client's writes it meanwhile.
    Some(unsafe {
        if writable {
            Lent::ReadWrite(core::slice::from_raw_parts_mut(pointer, length))
        } else {
            Lent::ReadOnly(core::slice::from_raw_parts(pointer, length))
        }
    })
}

/// Where the sidetrack upcall enters, on the client's thread, when the
/// port's pool is about to run out: x1 the free activations, x2 the
/// context word. x0 (the port, as the kernel names it) is not used: the
/// port in this domain's space is in the context record.
extern "C" fn sidetrack_entry<S: Service>(_port: usize, free_activations: usize, context: usize) -> ! {
    if let Some(dispatch) = dispatch_from_word(context)
        && let Some(service) = dispatch.service::<S>()
    {
        let count = service.pool_low(dispatch.port, free_activations);
        if count > 0 {
            // Out of memory or the like: the call goes on with the pool it
            // has, which is all a sidetrack can promise anyway.
            let _ = gate::pool_add(dispatch.port, count, gate::dispatch_trampoline(), dispatch.stack);
        }
    }
    gate::return_from_call(&[])
}

/// Where messages start: the kernel puts a migrating request 16-byte
/// aligned, and the runtime's own buffers are [`MessageStorage`].
const MESSAGE_ALIGN: usize = 16;

/// Storage for one whole message, 16-byte aligned like the messages the
/// kernel delivers, so that the compiler reads and writes its header with
/// word accesses.
#[repr(C, align(16))]
struct MessageStorage([MaybeUninit<u8>; MESSAGE_MAX]);

impl MessageStorage {
    fn new() -> Self {
        MessageStorage([MaybeUninit::uninit(); MESSAGE_MAX])
    }
}

const _: () = assert!(core::mem::align_of::<MessageStorage>() == MESSAGE_ALIGN);

/// A server thread: receive a request, handle it, reply and receive the
/// next, until the kernel refuses to wait (the thread then ends with the
/// error's code).
fn thread_loop<S: Service>(argument: usize) -> usize {
    let Some(dispatch) = dispatch_from_word(argument) else {
        return Error::InvalidArgument as usize;
    };
    let Some(service) = dispatch.service::<S>() else {
        return Error::InvalidArgument as usize;
    };
    let port = dispatch.port;
    let mut request_storage = MessageStorage::new();
    let mut reply_storage = MessageStorage::new();
    let mut request = MessageBuffer::start(&mut request_storage.0[..]);
    let mut reply = MessageBuffer::start(&mut reply_storage.0[..]);
    let mut next = gate::receive(port, request.receive_area());
    loop {
        let length = match next {
            Ok(length) => length,
            Err(error) => return error as usize,
        };
        reply.clear();
        match request.accept(length) {
            Ok(view) => service.handle(&view, &mut reply),
            Err(_) => reply.set_label(LABEL_MALFORMED_REQUEST),
        }
        next = gate::reply_receive(reply.message(), port, request.receive_area());
        if next.is_err() {
            // Refused before waiting (nothing to reply to, say): the reply
            // is lost either way; wait afresh, and end if that fails too.
            next = gate::receive(port, request.receive_area());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage<const N: usize>() -> [MaybeUninit<u8>; N] {
        [MaybeUninit::uninit(); N]
    }

    #[test]
    fn a_new_buffer_is_an_empty_message() {
        let buffer = MessageBuffer::new();
        assert_eq!(buffer.capacity(), MESSAGE_MAX);
        assert_eq!(buffer.payload_capacity(), PAYLOAD_MAX);
        assert_eq!(buffer.label(), 0);
        assert_eq!(buffer.right(), None);
        assert_eq!(buffer.payload(), &[] as &[u8]);
        assert_eq!(buffer.message().len(), MessageHeader::SIZE);
        assert_eq!(MessageView::parse(buffer.message()), Ok(MessageView::new(0, &[])));
    }

    #[test]
    fn building_a_message_keeps_the_header_in_step() {
        let mut buffer = MessageBuffer::with_payload_capacity(64);
        buffer.set_label(7);
        buffer.transfer(3);
        buffer.write(b"hello, ").unwrap();
        buffer.write(b"world").unwrap();
        assert_eq!(buffer.payload(), b"hello, world");
        let view = MessageView::parse(buffer.message()).unwrap();
        assert_eq!(view, MessageView::new(7, b"hello, world").with_right(3));
        assert_eq!(view, buffer.view());
        assert_eq!(buffer.header(), MessageHeader { label: 7, right: 3, length: 12, reserved: 0 });
        buffer.clear_right();
        assert_eq!(buffer.right(), None);
        buffer.set_payload(b"short").unwrap();
        assert_eq!(buffer.payload(), b"short");
        assert_eq!(buffer.message().len(), MessageHeader::SIZE + 5);
        buffer.clear();
        assert_eq!(buffer.view(), MessageView::new(0, &[]));
    }

    #[test]
    fn payloads_that_do_not_fit_change_nothing() {
        let mut buffer = MessageBuffer::with_payload_capacity(8);
        assert_eq!(buffer.payload_capacity(), 8);
        buffer.set_payload(b"12345").unwrap();
        assert_eq!(buffer.write(b"6789"), Err(Error::BadMessage));
        assert_eq!(buffer.set_payload(b"123456789"), Err(Error::BadMessage));
        assert_eq!(buffer.payload_mut(9).map(|bytes| bytes.len()), Err(Error::BadMessage));
        assert_eq!(buffer.payload(), b"12345");
        buffer.write(b"678").unwrap();
        assert_eq!(buffer.payload(), b"12345678");
        let oversized = MessageBuffer::with_payload_capacity(PAYLOAD_MAX + 100);
        assert_eq!(oversized.capacity(), MESSAGE_MAX);
    }

    #[test]
    fn payload_mut_zeroes_fresh_bytes_and_keeps_old_ones() {
        let mut bytes = storage::<64>();
        let mut buffer = MessageBuffer::from_storage(&mut bytes[..]).unwrap();
        buffer.set_payload(b"abcd").unwrap();
        buffer.set_payload(b"").unwrap();
        let payload = buffer.payload_mut(8).unwrap();
        assert_eq!(payload, b"abcd\0\0\0\0");
        payload[4..].copy_from_slice(b"efgh");
        assert_eq!(buffer.payload(), b"abcdefgh");
        assert_eq!(buffer.header().length, 8);
    }

    #[test]
    fn storage_smaller_than_a_header_is_refused() {
        let mut bytes = storage::<15>();
        assert_eq!(MessageBuffer::from_storage(&mut bytes[..]).map(|_| ()), Err(Error::InvalidArgument));
        let mut exact = storage::<16>();
        let buffer = MessageBuffer::from_storage(&mut exact[..]).unwrap();
        assert_eq!(buffer.payload_capacity(), 0);
    }

    #[test]
    fn storage_larger_than_a_message_is_used_up_to_a_message() {
        let buffer = MessageBuffer::from_storage(Box::new_uninit_slice(MESSAGE_MAX + 64)).unwrap();
        assert_eq!(buffer.capacity(), MESSAGE_MAX);
        assert_eq!(buffer.into_storage().len(), MESSAGE_MAX + 64);
    }

    #[test]
    fn received_messages_are_checked() {
        let mut buffer = MessageBuffer::with_payload_capacity(32);
        let area = buffer.receive_area();
        assert_eq!(area.len(), MessageHeader::SIZE + 32);
        MessageHeader { label: 9, right: 4, length: 3, reserved: 0 }.write_to(area);
        area[16..19].copy_from_slice(b"xyz");
        let view = buffer.accept(19).unwrap();
        assert_eq!(view, MessageView::new(9, b"xyz").with_right(4));
        assert_eq!(buffer.payload(), b"xyz");

        // A header that disagrees with the length delivered.
        let area = buffer.receive_area();
        MessageHeader::new(1, 10).write_to(area);
        assert_eq!(buffer.accept(19).map(|_| ()), Err(Error::BadMessage));
        assert_eq!(buffer.view(), MessageView::new(0, &[]));
        // A length beyond the buffer.
        assert_eq!(buffer.accept(1000).map(|_| ()), Err(Error::BadMessage));
    }

    #[test]
    fn parsing_refuses_what_is_not_a_message() {
        assert_eq!(MessageView::parse(&[0; 15]), Err(Error::BadMessage));
        let mut bytes = [0u8; 20];
        MessageHeader::new(5, 4).write_to(&mut bytes);
        assert_eq!(MessageView::parse(&bytes).map(|view| view.label()), Ok(5));
        assert_eq!(MessageView::parse(&bytes[..19]), Err(Error::BadMessage));
        MessageHeader::new(5, 5).write_to(&mut bytes);
        assert_eq!(MessageView::parse(&bytes), Err(Error::BadMessage));
    }

    /// A request as the kernel leaves it on an activation's stack, and a
    /// reply area below it: the dispatch handlers answer through the
    /// record, for the record's service type.
    #[test]
    fn the_dispatch_handlers_answer_for_their_service() {
        static COUNTER: Counter = Counter;
        let record: &'static Dispatch = Box::leak(Box::new(Dispatch::new(&COUNTER, 5, 4096)));
        let context = core::ptr::from_ref(record).expose_provenance();
        #[repr(C, align(16))]
        struct Request([u8; 32]);
        let mut request = Request([0; 32]);
        MessageHeader::new(41, 16).write_to(&mut request.0);
        let mut reply = Box::new(MessageStorage::new());
        let area = reply.0.as_mut_ptr().cast::<u8>();
        // SAFETY: as the kernel calls it: the record `serve` would make, a
        // whole 16-byte aligned message, a reply area of `MESSAGE_MAX`
        // bytes, 16-byte aligned, nothing lent.
        let length = unsafe { (record.handler)(request.0.as_ptr().expose_provenance(), 32, context, area, 0, 0) };
        assert_eq!(length, MessageHeader::SIZE);
        // SAFETY: the handler wrote `length` bytes at the area's start.
        let written = unsafe { core::slice::from_raw_parts(area, length) };
        assert_eq!(MessageView::parse(written).map(|view| view.label()), Ok(42));
        // The same request in registers: label | length << 32, the words.
        // SAFETY: as above, the request in registers.
        let length = unsafe { (record.registers)(41 | 16 << 32, 1, 2, 3, 4, context, area) };
        // SAFETY: as above.
        let written = unsafe { core::slice::from_raw_parts(area, length) };
        assert_eq!(MessageView::parse(written).map(|view| view.label()), Ok(42));
    }

    struct Counter;
    impl Service for Counter {
        fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
            reply.set_label(request.label() + 1);
        }
    }

    struct Other;
    impl Service for Other {
        fn handle(&self, _: &Request<'_>, _: &mut Reply<'_>) {}
    }

    #[test]
    fn the_empty_header_words_encode_an_empty_header() {
        let mut encoded = [0u8; MessageHeader::SIZE];
        MessageHeader::new(0, 0).write_to(&mut encoded);
        let mut slots = [MaybeUninit::<u8>::uninit(); MessageHeader::SIZE];
        store_pair(&mut slots, EMPTY_HEADER_WORDS);
        // SAFETY: `store_pair` wrote all 16 bytes.
        let written: [u8; MessageHeader::SIZE] = unsafe { core::mem::transmute(slots) };
        assert_eq!(written, encoded);
    }

    #[test]
    fn dispatch_records_carry_their_service_and_its_handler() {
        static COUNTER: Counter = Counter;
        static OTHER: Other = Other;
        let record: &'static Dispatch = Box::leak(Box::new(Dispatch::new(&COUNTER, 5, 4096)));
        let word = core::ptr::from_ref(record).expose_provenance();
        let found = dispatch_from_word(word).unwrap();
        assert_eq!((found.port, found.stack), (5, 4096));
        assert!(found.service::<Counter>().is_some_and(|service| core::ptr::eq(service, &COUNTER)));
        let handler: gate::DispatchHandler = kernel_made_handler::<Counter>;
        assert!(core::ptr::fn_addr_eq(found.handler, handler), "the record holds the handler for its own type");
        let other = Dispatch::new(&OTHER, 6, 8192);
        let other_handler: gate::DispatchHandler = kernel_made_handler::<Other>;
        assert!(core::ptr::fn_addr_eq(other.handler, other_handler));
        assert!(!core::ptr::fn_addr_eq(other.handler, handler), "another type, another handler");
        assert!(dispatch_from_word(0).is_none());
        assert!(dispatch_from_word(word + 1).is_none());
    }

    #[test]
    fn a_service_handles_hand_built_requests() {
        let mut bytes = storage::<64>();
        let mut reply = MessageBuffer::from_storage(&mut bytes[..]).unwrap();
        Counter.handle(&MessageView::new(41, b"x"), &mut reply);
        assert_eq!(reply.label(), 42);
        assert_eq!(Counter.pool_low(0, 1), 0);
    }

    #[test]
    fn serve_checks_its_mode_and_counts() {
        static COUNTER: Counter = Counter;
        for (mode, pool, threads) in [(0, 4, 2), (4, 4, 2), (5, 4, 2), (MODE_POOL, 0, 2), (MODE_THREADS, 4, 0)] {
            assert_eq!(serve(&COUNTER, 1, mode, pool, threads, 4096), Err(Error::InvalidArgument), "{mode}");
        }
    }

    /// Off the target the gate answers every call with `NoSuchCall` — on an
    /// x86 host. (On an AArch64 host the gate's `svc` would reach the host's
    /// kernel, so these are not run there.)
    #[test]
    #[cfg(not(target_os = "none"))]
    fn valid_arguments_reach_the_gate() {
        static COUNTER: Counter = Counter;
        assert_eq!(serve(&COUNTER, 1, MODE_BOTH, 4, 2, 4096), Err(Error::NoSuchCall));
        assert_eq!(lookup("echo"), Err(Error::NoSuchCall));
        assert_eq!(register("echo", 1), Err(Error::NoSuchCall));
    }

    #[test]
    fn pool_growth_grants_in_steps_up_to_its_limit() {
        let growth = PoolGrowth::new(2, 5);
        assert_eq!([growth.grant(), growth.grant(), growth.grant(), growth.grant()], [2, 2, 1, 0]);
        assert_eq!(growth.granted(), 5);
        let standard = PoolGrowth::standard();
        assert_eq!(standard.grant(), POOL_GROWTH_STEP);
        assert_eq!(PoolGrowth::new(3, 0).grant(), 0);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(naming::valid_name(b"echo"), Some("echo"));
        assert_eq!(naming::valid_name(b""), None);
        assert_eq!(naming::valid_name(&[b'a'; naming::NAME_MAX]).map(str::len), Some(naming::NAME_MAX));
        assert_eq!(naming::valid_name(&[b'a'; naming::NAME_MAX + 1]), None);
        assert_eq!(naming::valid_name(&[0xff, 0xfe]), None);
        assert_eq!(register("", 1), Err(Error::InvalidArgument));
        assert_eq!(lookup(core::str::from_utf8(&[b'a'; 65]).unwrap()), Err(Error::InvalidArgument));
    }

    #[test]
    fn name_service_replies_are_decoded() {
        use naming::*;
        assert_eq!(register_outcome(&MessageView::new(OK, &[])), Ok(()));
        assert_eq!(register_outcome(&MessageView::new(TAKEN, &[])), Err(Error::InvalidArgument));
        assert_eq!(register_outcome(&MessageView::new(BAD_REQUEST, &[])), Err(Error::BadMessage));
        assert_eq!(lookup_outcome(&MessageView::new(OK, &[]).with_right(6)), Ok(6));
        assert_eq!(lookup_outcome(&MessageView::new(OK, &[])), Err(Error::BadMessage));
        assert_eq!(lookup_outcome(&MessageView::new(NOT_FOUND, &[])), Err(Error::NoSuchPort));
        assert_eq!(lookup_outcome(&MessageView::new(LABEL_NO_SERVICE, &[])), Err(Error::BadMessage));
    }
}
