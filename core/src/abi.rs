//! The kernel-call interface: numbers, registers and error codes.
//!
//! One shape for every kernel call, shared by the kernel (which decodes it
//! in the `svc` handler) and by the service gate in `tern-inks` (which
//! encodes it for domains):
//!
//! - `x8` holds the call number ([`Call`]), `x0`–`x4` the arguments, and
//!   the call is `svc #0`; two immediates name a call by themselves (the
//!   kernel's vector tells them apart before any test of `x8`, issue 15):
//!   `svc #1` is [`Call::CallBoundWords`] and `svc #2` is [`Call::Return`]
//!   with the reply's words in registers too (see there); any other
//!   immediate is `svc #0`;
//! - on return `x0` is `0` for success or an [`Error`] code, and `x1` the
//!   value of a successful call.
//!
//! The kernel restores every general-purpose register it does not return
//! a value in, so a kernel call clobbers only `x0`/`x1` as far as the caller
//! can tell. The gate still declares the C ABI's caller-saved registers as
//! clobbered, which leaves the kernel free to use the SIMD registers.
//!
//! Errors are numbers, never faults: a bad argument is always answered with
//! an error code and the caller keeps running.

/// Kernel call numbers (passed in `x8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Call {
    /// End of a migrating RPC, from the server activation: `x0`/`x1` reply
    /// address and length. Never returns to the activation, which goes back
    /// to its pool. (Number 0: the exception vector tells it with one
    /// `cbz`, the shortest dispatch, as it ends every migrating call.)
    Return = 0,
    /// Write `x1` bytes at address `x0` (UTF-8 text) to the console.
    ConsoleWrite = 1,
    /// Return the caller's domain identifier.
    WhoAmI = 2,
    /// Copy the kernel's version string into the buffer `x0` of `x1` bytes;
    /// returns the length copied.
    Version = 3,
    /// RPC: `x0` port name, `x1`/`x2` request address and length (header
    /// included), `x3`/`x4` reply buffer address and capacity. Returns the
    /// reply's length (header included) once the server has replied. The
    /// kernel picks the path: a free activation of the port's pool
    /// (migrating), a server thread (switching), or waiting for either.
    Call = 4,
    /// End the current upcall: the activation's work is done; `x0` is its
    /// result, handed to whoever made the upcall.
    Exit = 5,
    /// Create a port; the caller gets the receive right (which also lets
    /// it send). Returns the port's name in the caller's space.
    PortCreate = 6,
    /// Add `x1` unoccupied activations to the pool of port `x0` (receive
    /// right needed), each with a stack of `x3` bytes carved from the
    /// caller's region (at least [`POOL_STACK_MIN`]), entering at `x2`.
    /// Returns the pool's free count.
    PoolAdd = 7,
    /// Create a thread in the caller's domain entering at `x0` with
    /// argument `x1` at priority `x2`; its first activation gets a stack of
    /// `x3` bytes from the caller's region. Returns the thread's number.
    ThreadCreate = 8,
    /// Static-thread service: wait on port `x0` (receive right needed) for a
    /// request, copied into `x1` of capacity `x2`. Returns its length.
    Receive = 9,
    /// Static-thread service: reply `x0`/`x1` to the request this thread
    /// last received, then wait on port `x2` for the next one into `x3` of
    /// capacity `x4`. Returns the next request's length.
    ReplyReceive = 10,
    /// Give the processor to another ready thread of the same or higher
    /// priority.
    Yield = 11,
    /// Ask for a *sidetrack* upcall into `x1` whenever port `x0`'s pool is
    /// about to run out (receive right needed): the handler runs on the
    /// caller's thread, may add activations, and the RPC then proceeds.
    SidetrackSet = 12,
    /// Remember `x0` as the domain's context word (passed to every
    /// dispatch upcall: servers keep a pointer to their state in it).
    ContextSet = 13,
    /// Wait until thread `x0` (created by the caller's domain) has ended;
    /// returns its result.
    ThreadJoin = 14,
    /// Do nothing: the floor of a kernel call (entry and exit only),
    /// answered in the exception vector itself.
    Null = 15,
    /// Set domain `x0`'s mode: `x1` = 0 protected, 1 merged into the
    /// kernel domain. Only the kernel domain may (a merged domain is part
    /// of it); a protected caller gets [`Error::NoRight`]. [`Error::Busy`]
    /// while any activation of that domain is occupied.
    DomainMode = 16,
    /// [`Call::Call`] that also **lends** the server a region of the
    /// caller's memory for the duration of the call: `x5` its address, `x6`
    /// its length, with [`LEND_WRITABLE`] or'd in to let the server write
    /// it. The server sees the same address (one address space); a
    /// protected server gets the pages covering it mapped into its view
    /// for the call only, a merged one needs no mapping. Served by pool
    /// activations only ([`Error::CannotLend`] for a port served by
    /// threads, or from a merged caller to a protected server).
    CallLending = 17,
    /// The caller's own activation: the number that names it in the
    /// activation calls below (its *activation control port*, held by its
    /// domain).
    ActivationSelf = 18,
    /// Alert activation `x0` (of the caller's domain): the alert goes up
    /// its thread's chain from it, stopping at the first activation that
    /// blocks alerts; a blocking kernel call made by an activation that
    /// sees it ends [`Error::Interrupted`]. Returns how many activations it
    /// reached.
    Alert = 19,
    /// Alert activation `x0`, then break its thread's chain just above it:
    /// it gets control back at once, its call ending [`Error::Interrupted`],
    /// while the part above carries on as a thread of its own.
    AlertBreak = 20,
    /// Block (`x0` = 1) or open (`x0` = 0) alerts at the caller's own
    /// activation; opening passes a waiting alert on up. Returns 1 if they
    /// were blocked.
    AlertsBlock = 21,
    /// Returns 1 (and takes it) if an alert reached the caller's
    /// activation and it has alerts open; else 0.
    TestAlert = 22,
    /// Suspend activation `x0`: its thread stops when it would next run
    /// that activation's code (at once if it is there; work further up
    /// its chain goes on). Never waits.
    Suspend = 23,
    /// Undo [`Call::Suspend`] on activation `x0`.
    Resume = 24,
    /// Terminate activation `x0`: its thread splits. The part above it
    /// goes on (alerted), its caller gets control back at once with
    /// [`Error::Terminated`]; if the thread is in the kernel on its behalf,
    /// that part finishes and then ends. Never waits.
    Terminate = 25,
    /// Splice activation `x0` out: its caller gets [`Error::Terminated`],
    /// but only once everything above it has returned (the synchronous
    /// alternative to [`Call::Terminate`]).
    SpliceOut = 26,
    /// Copy activation `x0`'s user registers into `x1` (capacity `x2`,
    /// [`STATE_BYTES`] needed: x0-x30, SP, PC, PSTATE as 34 words). Waits
    /// until its thread is in that activation.
    GetState = 27,
    /// Set activation `x0`'s user registers from `x1` (length `x2`), the
    /// layout of [`Call::GetState`]; of PSTATE only the condition flags are
    /// taken. Waits until its thread is in that activation.
    SetState = 28,
    /// Set the priority (0-31) of the thread activation `x0` is on to `x1`;
    /// returns the old one. [`Error::Forbidden`] if an activation below it
    /// forbade it.
    SetPriority = 29,
    /// Write the accounting of the thread activation `x0` is on into `x1`
    /// (capacity `x2`) as words: priority, CPU ticks, then (domain, ticks)
    /// pairs for each domain it ran in; returns the words written.
    ThreadInfo = 30,
    /// Forbid the activations above activation `x0` from changing its
    /// thread's scheduling state.
    ForbidAbove = 31,
    /// Act on every occupied activation of domain `x0`: `x1` = 0 suspend,
    /// 1 resume, 2 terminate (the domain ends too). The kernel domain
    /// only. Returns how many activations it acted on.
    DomainControl = 32,
    /// Write the numbers of domain `x0`'s occupied activations into `x1`
    /// (capacity `x2` bytes, 4 bytes each); returns how many there are.
    /// The domain itself or the kernel domain.
    Activations = 33,
    /// Sleep for `x0` counter ticks; [`Error::Interrupted`] if an alert
    /// ends it early.
    Sleep = 34,
    /// Deliver alerts that reach the caller's activation (with alerts
    /// open) by an upcall into `x0` (in the image's code; 0: poll only):
    /// at the activation's next return from a kernel call, the thread
    /// runs the handler with x0 = the activation, on the activation's
    /// stack below where it was; the handler ends with
    /// [`Call::AlertDone`]. Lasts while the activation is occupied.
    AlertHandler = 35,
    /// End an alert handler: the activation goes on where the alert found
    /// it. `NotInCall` outside a handler.
    AlertDone = 36,
    /// Set domain `x0`'s quota for resource `x1` (0 ports, 1 threads, 2
    /// activations, 3 rights: `tern_core::quota::Resource`) to `x2`; the
    /// kernel domain only. Returns what the domain holds of it now.
    SetQuota = 37,
    /// Destroy port `x0` (the caller holds its receive right): it dies at
    /// once (callers waiting on it, queued for it or served by its threads
    /// get `PortDead` or `CallAborted`), every right to it leaves every
    /// space, its free activations are freed now and its busy ones when
    /// their calls end.
    PortDestroy = 38,
    /// Set domain `x0`'s restart policy ([`RestartPolicy`]): `x1` 0 never,
    /// 1 on a fault, 2 always (on a fault or a termination); `x2` at most
    /// that many restarts in any `x3` counter ticks (0: no limit). The
    /// kernel domain only. Returns the restarts counted in the window now.
    DomainRestart = 39,
    /// The generation of port `x0` (a name the caller holds): how many
    /// times the port's server has been restarted under it.
    PortGeneration = 40,
    /// Bind port name `x0` (a send right the caller holds) to a **bound
    /// handle**: translated and checked once, called through many times
    /// with [`Call::CallBound`]. Returns the handle's number (below
    /// [`HANDLES`]). `OverQuota` when all the domain's handles are in use.
    /// See `tern_core::handle`.
    Bind = 41,
    /// Unbind handle `x0` (stale or not): its number may be given again.
    Unbind = 42,
    /// [`Call::Call`] through handle `x0` instead of a port name (x1/x2
    /// request, x3/x4 reply buffer). `StaleHandle` once the port died, the
    /// right went or the server changed mode since the binding.
    CallBound = 43,
    /// [`Call::CallBound`] with the request in registers: x0 label |
    /// payload length << 32 (at most `8 ×` [`REGISTER_WORDS`] bytes, no
    /// right), x1-x4 the payload's words, x5 the handle, x6/x7 the reply
    /// buffer. The reply comes back in the buffer, as `CallBound`'s (the
    /// gate's stubs hand it on in registers), or in registers (x1
    /// [`REPLY_IN_REGISTERS`] | label | length << 32, x2-x5 the words):
    /// the trapping fast path enters a protected runtime's pool at the
    /// gate's register trampoline with the request in x0-x4 (another pool:
    /// the words straight onto the server activation's stack), and marks
    /// the activation, so that its return — the trampoline's `svc #2`, or
    /// any `Return`, fast or general — answers a reply that fits (no
    /// right) in registers. Elsewhere the kernel writes the message into
    /// the reply buffer first (so the buffer must hold it) and goes on as
    /// `CallBound` with it. With no buffer (x7 = 0: registers both ways,
    /// `Handle::call_words`), made by `svc #1`, the general path makes the
    /// buffer itself: a frame of [`REGISTER_WORDS`] + 2 words below the
    /// caller's SP (in its region, or `BadAddress`), the caller resuming at
    /// the gate's code that hands the reply on in registers, pops the frame
    /// and returns to x30 (`ServerLayer::bound_words_general`): `svc #1`
    /// with no buffer is a call that comes back to x30, as the gate's
    /// `svc #1; ret` does; a reply longer than the words is
    /// `ReplyTooLarge`. Made by `svc #0` (x8 = 44), no buffer is no room:
    /// `BadAddress`, and the caller resumes after its `svc` as from any
    /// call. `svc #1` makes this call whatever `x8` holds (the vector
    /// hands its general path [`CALL_BOUND_WORDS_SVC1`]), and keeps x30 as
    /// every `svc` does.
    CallBoundWords = 44,
    /// The domain that called the caller: for a pool activation (or a
    /// sidetrack), the domain of the activation below it on its thread's
    /// chain — the client whose call it serves; for a server thread
    /// between `Receive` and `ReplyReceive`, the domain of the client it
    /// serves. [`Error::NotInCall`] when the caller serves no call (or its
    /// client split off below it). A merged domain keeps its own number,
    /// so the answer is the same whichever path the call took. Servers use
    /// it to keep per-client state (`tern-fs`'s open-file tables).
    Caller = 45,
    /// Read console input: copy up to `x1` bytes of what the UART has
    /// received (and the kernel has queued since) into `x0`, writable by
    /// the caller; returns how many. Waits while nothing has arrived
    /// ([`Error::Interrupted`] if an alert ends the wait). Only the domain
    /// whose role is [`Role::Console`] may ([`Error::Forbidden`] for any
    /// other); `x1` 0 is [`Error::InvalidArgument`]. See
    /// `tern_core::console`.
    ConsoleRead = 46,
}

/// Bound handles a domain may hold at once (`Call::Bind`).
pub const HANDLES: usize = 16;

/// Payload words a bound call carries in registers, each way (the
/// register form of a bound handle's entries, `tern_inks::bound`); a
/// longer payload goes in memory.
pub const REGISTER_WORDS: usize = 4;

/// The number the exception vector puts in x8 for a [`Call::CallBoundWords`]
/// made by `svc #1` that its fast path hands to the general path: the call,
/// marked as the gate's frameless stub's (`svc #1; ret`), whose caller may
/// be resumed at x30 (see the call). Not a call number of its own: x8 =
/// this through `svc #0` is the same request.
pub const CALL_BOUND_WORDS_SVC1: usize = 0x8000 | Call::CallBoundWords as usize;

/// Set in x1 by a bound call's register form when the reply came back in
/// registers (then the label | payload length << 32, the words in x2-x5);
/// clear, x1 is the length of a reply written into the caller's buffer.
pub const REPLY_IN_REGISTERS: u64 = 1 << 63;

/// Or'd into [`Call::PortCreate`]'s `x0`: every call on the port may be
/// made twice (the server says so) — a call in flight when the server
/// dies and restarts is then re-issued once to the new instance (the
/// kernel answers it `Restarted`, which the gate re-issues) instead of
/// returning `CallAborted`.
pub const PORT_IDEMPOTENT: usize = 1;

/// [`Call::ContextSet`]'s `x1`: the context word names a dispatch record
/// of the service runtime (`tern_inks::service`): its first word the
/// handler the dispatch trampoline calls, its second the handler for a
/// request in registers. Bound handles reach such a domain's pools by the
/// merged path's register form only when it says so (`tern_core::handle`).
pub const CONTEXT_DISPATCH_RECORD: usize = 1;

/// When the kernel restarts a dead domain (Call::DomainRestart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// A dead domain stays dead (its ports die with it).
    #[default]
    Never,
    /// Restarted after a fault, at most `limit` times in any `window`
    /// counter ticks (`limit` 0: no limit).
    OnFault {
        /// Restarts allowed in a window.
        limit: u32,
        /// The window, in counter ticks.
        window: u64,
    },
    /// Restarted after a fault or a termination, within the same bounds.
    Always {
        /// Restarts allowed in a window.
        limit: u32,
        /// The window, in counter ticks.
        window: u64,
    },
}

impl RestartPolicy {
    /// Decode [`Call::DomainRestart`]'s arguments.
    pub const fn from_code(code: usize, limit: u32, window: u64) -> Option<RestartPolicy> {
        match code {
            0 => Some(RestartPolicy::Never),
            1 => Some(RestartPolicy::OnFault { limit, window }),
            2 => Some(RestartPolicy::Always { limit, window }),
            _ => None,
        }
    }

    /// Whether a domain that died (by a fault if `faulted`) is restarted,
    /// given when it was restarted before (`earlier`, counter values) and
    /// the counter `now`.
    pub fn allows(self, faulted: bool, earlier: &[u64], now: u64) -> bool {
        let (limit, window) = match self {
            RestartPolicy::Never => return false,
            RestartPolicy::OnFault { .. } if !faulted => return false,
            RestartPolicy::OnFault { limit, window } | RestartPolicy::Always { limit, window } => (limit, window),
        };
        limit == 0 || Self::within(earlier, window, now) < limit as usize
    }

    /// The window the policy counts restarts in (counter ticks; 0 for
    /// `Never`).
    pub fn window(self) -> u64 {
        match self {
            RestartPolicy::Never => 0,
            RestartPolicy::OnFault { window, .. } | RestartPolicy::Always { window, .. } => window,
        }
    }

    /// How many of the restarts at `earlier` lie in the window ending now.
    pub fn within(earlier: &[u64], window: u64, now: u64) -> usize {
        earlier.iter().filter(|&&at| now.saturating_sub(at) < window).count()
    }
}

/// Bytes of an activation's state as [`Call::GetState`] writes it.
pub const STATE_BYTES: usize = 34 * 8;

/// Or'd into a lent region's length ([`Call::CallLending`], `x6`): the
/// server may write the region, not only read it.
pub const LEND_WRITABLE: usize = 1 << 63;

/// The largest region one call may lend: 2 MiB.
pub const LEND_MAX: usize = 2 << 20;

impl Call {
    /// Decode a call number; `None` for numbers that name no call.
    pub const fn from_number(number: usize) -> Option<Call> {
        match number {
            0 => Some(Call::Return),
            1 => Some(Call::ConsoleWrite),
            2 => Some(Call::WhoAmI),
            3 => Some(Call::Version),
            4 => Some(Call::Call),
            5 => Some(Call::Exit),
            6 => Some(Call::PortCreate),
            7 => Some(Call::PoolAdd),
            8 => Some(Call::ThreadCreate),
            9 => Some(Call::Receive),
            10 => Some(Call::ReplyReceive),
            11 => Some(Call::Yield),
            12 => Some(Call::SidetrackSet),
            13 => Some(Call::ContextSet),
            14 => Some(Call::ThreadJoin),
            15 => Some(Call::Null),
            16 => Some(Call::DomainMode),
            17 => Some(Call::CallLending),
            18 => Some(Call::ActivationSelf),
            19 => Some(Call::Alert),
            20 => Some(Call::AlertBreak),
            21 => Some(Call::AlertsBlock),
            22 => Some(Call::TestAlert),
            23 => Some(Call::Suspend),
            24 => Some(Call::Resume),
            25 => Some(Call::Terminate),
            26 => Some(Call::SpliceOut),
            27 => Some(Call::GetState),
            28 => Some(Call::SetState),
            29 => Some(Call::SetPriority),
            30 => Some(Call::ThreadInfo),
            31 => Some(Call::ForbidAbove),
            32 => Some(Call::DomainControl),
            33 => Some(Call::Activations),
            34 => Some(Call::Sleep),
            35 => Some(Call::AlertHandler),
            36 => Some(Call::AlertDone),
            37 => Some(Call::SetQuota),
            38 => Some(Call::PortDestroy),
            39 => Some(Call::DomainRestart),
            40 => Some(Call::PortGeneration),
            41 => Some(Call::Bind),
            42 => Some(Call::Unbind),
            43 => Some(Call::CallBound),
            44 => Some(Call::CallBoundWords),
            45 => Some(Call::Caller),
            46 => Some(Call::ConsoleRead),
            _ => None,
        }
    }
}

/// Error codes returned in `x0` (never zero: zero means success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Error {
    /// The call number names no kernel call.
    NoSuchCall = 1,
    /// A pointer argument names memory the caller does not own (or may not
    /// access the way the call needs), or its range wraps around.
    BadAddress = 2,
    /// An argument is out of range (for example a length over a limit).
    InvalidArgument = 3,
    /// The text given to the console is not UTF-8.
    NotUtf8 = 4,
    /// The port name names nothing in the caller's space.
    NoSuchPort = 5,
    /// The caller holds no right that allows this (e.g. receive on a port
    /// it may only send to, or transferring a right it does not hold).
    NoRight = 6,
    /// A message (request or reply) is longer than [`MESSAGE_MAX`] or
    /// shorter than its header.
    BadMessage = 7,
    /// The reply does not fit the caller's reply buffer; nothing was
    /// delivered.
    ReplyTooLarge = 8,
    /// No memory (activation stacks, kernel objects) for the request.
    OutOfMemory = 9,
    /// The port has neither activations nor server threads, and never
    /// will (its receive right is gone).
    PortDead = 10,
    /// `Return` from something that is not a server activation, or
    /// `ReplyReceive` with nothing to reply to.
    NotInCall = 11,
    /// The server faulted (and was terminated) while handling the call.
    CallAborted = 12,
    /// The object is in use in a way that forbids the change (a domain
    /// with an occupied activation cannot change mode); nothing changed.
    Busy = 13,
    /// The region cannot be lent to that server (it is served by threads,
    /// or the caller is merged and the server protected).
    CannotLend = 14,
    /// An alert ended the blocking call (or broke the chain above it).
    Interrupted = 15,
    /// The activation the call went to was terminated (or spliced out).
    Terminated = 16,
    /// The number names no activation, or one that is not occupied.
    NoSuchActivation = 17,
    /// An activation below the caller forbade the change.
    Forbidden = 18,
    /// The domain that asked holds all the kernel objects of that kind its
    /// quota allows (`tern_core::quota`); nothing was made.
    OverQuota = 19,
    /// The server died while handling the call, on a port it declared
    /// idempotent ([`PORT_IDEMPOTENT`]), and is being restarted: the call
    /// may be made again (the gate does so once, unseen; a second
    /// `Restarted` reaches the caller as `CallAborted`).
    Restarted = 20,
    /// The bound handle no longer reaches what it was bound to: the port
    /// died, the right went, or the server changed mode since
    /// [`Call::Bind`]. Bind again (and unbind this one).
    StaleHandle = 21,
}

impl Error {
    /// Decode an error code; `None` for 0 (success) or an unknown code.
    pub const fn from_code(code: usize) -> Option<Error> {
        match code {
            1 => Some(Error::NoSuchCall),
            2 => Some(Error::BadAddress),
            3 => Some(Error::InvalidArgument),
            4 => Some(Error::NotUtf8),
            5 => Some(Error::NoSuchPort),
            6 => Some(Error::NoRight),
            7 => Some(Error::BadMessage),
            8 => Some(Error::ReplyTooLarge),
            9 => Some(Error::OutOfMemory),
            10 => Some(Error::PortDead),
            11 => Some(Error::NotInCall),
            12 => Some(Error::CallAborted),
            13 => Some(Error::Busy),
            14 => Some(Error::CannotLend),
            15 => Some(Error::Interrupted),
            16 => Some(Error::Terminated),
            17 => Some(Error::NoSuchActivation),
            18 => Some(Error::Forbidden),
            19 => Some(Error::OverQuota),
            20 => Some(Error::Restarted),
            21 => Some(Error::StaleHandle),
            _ => None,
        }
    }

    /// The error's name, as printed in logs and by domains.
    pub const fn name(self) -> &'static str {
        match self {
            Error::NoSuchCall => "NoSuchCall",
            Error::BadAddress => "BadAddress",
            Error::InvalidArgument => "InvalidArgument",
            Error::NotUtf8 => "NotUtf8",
            Error::NoSuchPort => "NoSuchPort",
            Error::NoRight => "NoRight",
            Error::BadMessage => "BadMessage",
            Error::ReplyTooLarge => "ReplyTooLarge",
            Error::OutOfMemory => "OutOfMemory",
            Error::PortDead => "PortDead",
            Error::NotInCall => "NotInCall",
            Error::CallAborted => "CallAborted",
            Error::Busy => "Busy",
            Error::CannotLend => "CannotLend",
            Error::Interrupted => "Interrupted",
            Error::Terminated => "Terminated",
            Error::NoSuchActivation => "NoSuchActivation",
            Error::Forbidden => "Forbidden",
            Error::OverQuota => "OverQuota",
            Error::Restarted => "Restarted",
            Error::StaleHandle => "StaleHandle",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The largest single console write, in bytes.
pub const CONSOLE_WRITE_MAX: usize = 4096;

/// A port's name in one domain's capability space.
pub type PortName = u32;

/// The name every domain's space gives the name service's port.
pub const NAME_SERVICE: PortName = 0;

/// "No right carried" in [`MessageHeader::right`]. Name 0 is the name
/// service's in every space, so it never needs to travel; the fast paths
/// test "no right" as "the header's upper half is zero".
pub const NO_RIGHT: u32 = 0;

/// The largest inline payload of one message, each way.
pub const PAYLOAD_MAX: usize = 32 * 1024;

/// The largest message: header plus payload.
pub const MESSAGE_MAX: usize = MessageHeader::SIZE + PAYLOAD_MAX;

/// Every message (request or reply) starts with this header.
///
/// - `label`: what the message means (an operation code, or a status in a
///   reply) — the kernel does not look at it;
/// - `right`: a port name in the *sender's* space whose send right travels
///   with the message, or [`NO_RIGHT`]; the kernel rewrites it to the
///   receiver's name for the same port;
/// - `length` and `reserved`: written by the kernel on delivery — the
///   payload bytes after the header (the message length given to the
///   kernel minus [`MessageHeader::SIZE`]) and zero — so a receiver can
///   trust them; what the sender left there is not looked at. The length
///   travels once, in the call's registers, and is never checked twice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MessageHeader {
    /// Operation or status; the kernel passes it through.
    pub label: u32,
    /// A port name carrying a send right, or [`NO_RIGHT`].
    pub right: u32,
    /// Payload length in bytes (written by the kernel on delivery).
    pub length: u32,
    /// Reserved, zero (written by the kernel on delivery).
    pub reserved: u32,
}

impl MessageHeader {
    /// Bytes of the header.
    pub const SIZE: usize = 16;

    /// A header for `length` payload bytes, no right.
    pub const fn new(label: u32, length: usize) -> Self {
        MessageHeader { label, right: NO_RIGHT, length: length as u32, reserved: 0 }
    }

    /// Encode into the first 16 bytes of `out` (little-endian).
    pub fn write_to(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.label.to_le_bytes());
        out[4..8].copy_from_slice(&self.right.to_le_bytes());
        out[8..12].copy_from_slice(&self.length.to_le_bytes());
        out[12..16].copy_from_slice(&self.reserved.to_le_bytes());
    }

    /// Decode from its two little-endian 64-bit words (label and right,
    /// length and reserved).
    pub const fn from_words(words: [u64; 2]) -> Self {
        MessageHeader {
            label: words[0] as u32,
            right: (words[0] >> 32) as u32,
            length: words[1] as u32,
            reserved: (words[1] >> 32) as u32,
        }
    }

    /// Decode from the first 16 bytes of `bytes`; `None` if shorter.
    pub fn read_from(bytes: &[u8]) -> Option<Self> {
        let word = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        Some(MessageHeader { label: word(0)?, right: word(4)?, length: word(8)?, reserved: word(12)? })
    }

    /// Whether `total` bytes is a message length the kernel carries: at
    /// least a header, at most [`MESSAGE_MAX`].
    pub fn check_length(total: usize) -> Result<(), Error> {
        if (Self::SIZE..=MESSAGE_MAX).contains(&total) { Ok(()) } else { Err(Error::BadMessage) }
    }

    /// Whether this header, as delivered, agrees with the `total` length
    /// delivered (the kernel's stamp; a receiver's check on what it got).
    pub fn agrees_with(&self, total: usize) -> bool {
        Self::check_length(total).is_ok() && self.length as usize == total - Self::SIZE && self.reserved == 0
    }
}

/// Bytes the dispatch trampoline reserves for the reply below a request
/// on a pool activation's stack: [`MESSAGE_MAX`], kept 16-byte aligned.
/// (Defined once here for the gate's trampoline and the fast paths.)
pub const REPLY_AREA: usize = MESSAGE_MAX.next_multiple_of(16);
const _: () = assert!(REPLY_AREA.is_multiple_of(16) && REPLY_AREA >= MESSAGE_MAX);

/// Room a pool activation needs below a request on its stack: the reply
/// area the dispatch trampoline reserves ([`REPLY_AREA`]) and 16 KiB for
/// the handler's frames.
pub const STACK_MARGIN: usize = REPLY_AREA + (16 << 10);

/// The smallest stack a pool activation may have ([`Call::PoolAdd`]): the
/// largest request ([`MESSAGE_MAX`]) and the margin below it. Every path
/// (the general one, the fast ones, the merged call) may then put any
/// request on any pool activation's stack without checking its size.
pub const POOL_STACK_MIN: usize = MESSAGE_MAX.next_multiple_of(16) + STACK_MARGIN;

/// A domain's mode ([`Call::DomainMode`]'s `x1`).
///
/// The same server code runs either way (it reaches the kernel only
/// through the service gate); the kernel keeps the mode in the domain's
/// record and the in-kernel-server layer (`tern-inks`) carries out the
/// change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(usize)]
pub enum DomainMode {
    /// Its own translation table and ASID; its code runs at the
    /// processor's user level and reaches the kernel by trapping.
    #[default]
    Protected = 0,
    /// Part of the kernel domain: its memory is the kernel's only and
    /// present in every view, its code runs at the kernel's level (on its
    /// own stacks), and a call into it switches no translation table.
    Merged = 1,
}

impl DomainMode {
    /// Decode the kernel call's mode argument.
    pub const fn from_code(code: usize) -> Option<DomainMode> {
        match code {
            0 => Some(DomainMode::Protected),
            1 => Some(DomainMode::Merged),
            _ => None,
        }
    }

    /// Whether this is [`DomainMode::Merged`].
    pub const fn is_merged(self) -> bool {
        matches!(self, DomainMode::Merged)
    }
}

/// What a domain is to the kernel, declared with its registration (never
/// recognised by its name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum Role {
    /// A domain like any other.
    #[default]
    Plain = 0,
    /// The name service: the first port it creates becomes name
    /// [`NAME_SERVICE`] in every domain's space, now and later.
    NameService = 1,
    /// The console: owns the console's input (the only domain that may
    /// make [`Call::ConsoleRead`]). One domain at a time, in practice: the
    /// kernel does not stop two such domains from reading by turns.
    Console = 2,
}

/// Encode a call's outcome into the two return registers `(x0, x1)`.
pub const fn encode_result(result: Result<usize, Error>) -> (usize, usize) {
    match result {
        Ok(value) => (0, value),
        Err(error) => (error as usize, 0),
    }
}

/// Decode the two return registers into a call's outcome. An unknown
/// non-zero code decodes as [`Error::NoSuchCall`] so that a newer kernel's
/// error never reads as success.
pub const fn decode_result(x0: usize, x1: usize) -> Result<usize, Error> {
    if x0 == 0 {
        Ok(x1)
    } else {
        match Error::from_code(x0) {
            Some(error) => Err(error),
            None => Err(Error::NoSuchCall),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_numbers_round_trip() {
        for number in 0..=45 {
            let call = Call::from_number(number).expect("numbers 0..=45 are calls");
            assert_eq!(call as usize, number);
        }
        assert_eq!(Call::from_number(46), Some(Call::ConsoleRead));
        assert_eq!(Call::from_number(47), None);
        assert_eq!(Call::from_number(99), None);
    }

    #[test]
    fn results_round_trip() {
        assert_eq!(decode_result(0, 42), Ok(42));
        let (x0, x1) = encode_result(Err(Error::BadAddress));
        assert_eq!((x0, x1), (2, 0));
        assert_eq!(decode_result(x0, x1), Err(Error::BadAddress));
        assert_eq!(decode_result(77, 0), Err(Error::NoSuchCall));
        assert_eq!(Error::from_code(22), None);
        for code in 1..=21 {
            let error = Error::from_code(code).expect("codes 1..=21 are errors");
            assert_eq!(error as usize, code);
            assert_eq!(decode_result(code, 0), Err(error));
        }
    }

    #[test]
    fn modes_round_trip() {
        for mode in [DomainMode::Protected, DomainMode::Merged] {
            assert_eq!(DomainMode::from_code(mode as usize), Some(mode));
        }
        assert_eq!(DomainMode::from_code(2), None);
        assert!(DomainMode::Merged.is_merged() && !DomainMode::Protected.is_merged());
    }

    #[test]
    fn headers_round_trip_and_check_lengths() {
        let header = MessageHeader { label: 7, right: 3, length: 32, reserved: 0 };
        let mut bytes = [0u8; 48];
        header.write_to(&mut bytes);
        assert_eq!(MessageHeader::read_from(&bytes), Some(header));
        assert_eq!(MessageHeader::read_from(&bytes[..15]), None);
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(MessageHeader::from_words([word(0), word(8)]), header);
        assert!(header.agrees_with(48));
        assert!(!header.agrees_with(47));
        assert!(!MessageHeader { reserved: 1, ..header }.agrees_with(48));
        assert_eq!(MessageHeader::check_length(15), Err(Error::BadMessage));
        assert_eq!(MessageHeader::check_length(16), Ok(()));
        assert_eq!(MessageHeader::check_length(MESSAGE_MAX), Ok(()));
        assert_eq!(MessageHeader::check_length(MESSAGE_MAX + 1), Err(Error::BadMessage));
        assert!(MessageHeader::new(0, PAYLOAD_MAX).agrees_with(MESSAGE_MAX));
    }
}
