//! Bound handles, the client's side: bind a port once, call through the
//! handle (see `tern_core::handle` for the kernel's side).
//!
//! A call through a [`Handle`] makes no mode test and no port
//! translation: the gate reads the first word of the handle's record,
//! which the kernel keeps in this domain's region, and branches to it.
//! The kernel chose that entry for the pair of modes when it published the
//! record, and rewrites it when either changes:
//!
//! - `tern_bound_merged` (the kernel's, `tern-aarch64`): a merged client
//!   calling a merged server, a procedure call with no trap;
//! - `tern_bound_trap`: a protected client, the kernel call `CallBound` by
//!   `svc` (the kernel's fast path takes it as it takes `Call`);
//! - `tern_bound_direct`: a merged client calling a protected server,
//!   `CallBound` by the kernel's direct entry (also where the merged path
//!   sends what it does not take);
//! - `tern_bound_stale`: the binding no longer holds, `StaleHandle` at
//!   once.
//!
//! All three take the call in the registers `CallBound` does (x0 the
//! handle's number, x1/x2 the request, x3/x4 the reply buffer), x16 the
//! record, and x30 the return address; they answer in x0/x1 as every
//! kernel call does, and clobber what a C call may.
//!
//! A handle is not `Copy`: the number it holds is the kernel's slot, which
//! [`Handle::unbind`] gives back and the next `bind` may give to another
//! port.

use crate::service::{MessageBuffer, REGISTER_WORDS, ReplyView};
use core::mem::MaybeUninit;
use tern_core::abi::{Call, Error, PortName};

/// A port bound for calls (see the module's notes).
#[derive(Debug, PartialEq, Eq)]
pub struct Handle {
    number: usize,
    port: PortName,
    /// Where its record lies: in the region of the domain that bound it,
    /// the only domain a handle is valid in.
    record: usize,
}

/// What the bound entries answer in x1 for a reply in registers: this bit,
/// the label, and the payload's length << 32 (the words in x2-x5).
use tern_core::abi::REPLY_IN_REGISTERS;

/// A message as a bound call carries it in registers: a label and a
/// payload of at most `8 *` [`REGISTER_WORDS`] bytes, no right. The
/// server sees it as it sees any request ([`crate::service::Request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Words {
    /// label | payload length << 32.
    first: u64,
    words: [u64; REGISTER_WORDS],
}

// The payload's bytes are the words' bytes in memory order.
#[cfg(not(target_endian = "little"))]
compile_error!("`Words::payload` assumes a little-endian target");

impl Words {
    /// A message of `label` and `payload`; `None` if the payload is longer
    /// than the words hold.
    pub fn new(label: u32, payload: &[u8]) -> Option<Self> {
        let words = crate::service::pack_words(payload)?;
        Some(Words { first: u64::from(label) | (payload.len() as u64) << 32, words })
    }

    /// The label.
    pub fn label(&self) -> u32 {
        self.first as u32
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        let length = ((self.first >> 32) as usize).min(8 * REGISTER_WORDS);
        // SAFETY: `length` bytes of `words`, which are initialised `u64`s
        // (any byte of one is a valid `u8`), borrowed with `self`.
        unsafe { core::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), length) }
    }
}

/// Bind `port` (a name this domain holds a send right for): checked now,
/// not on every call. `OverQuota` when all [`tern_core::abi::HANDLES`] of
/// this domain's handles are bound.
#[inline]
pub fn bind(port: PortName) -> Result<Handle, Error> {
    let number = crate::gate::raw_call(Call::Bind, port as usize, 0, 0)?;
    let record = region_start()
        + tern_core::board::REGION_HANDLES_OFFSET as usize
        + number * tern_core::board::HANDLE_RECORD_BYTES as usize;
    Ok(Handle { number, port, record })
}

impl Handle {
    /// The kernel's number for this handle.
    pub fn number(&self) -> usize {
        self.number
    }

    /// The port name it was bound from.
    pub fn port(&self) -> PortName {
        self.port
    }

    /// RPC through the handle: as [`crate::gate::call`] (`request` a whole
    /// message, header first; the reply lands in `reply`; its length
    /// returned), along the path the kernel bound it to. `StaleHandle`
    /// once the binding no longer holds (bind again). A call the kernel
    /// answers `Restarted` is made once more by name, to the new instance.
    #[inline(always)]
    pub fn call(&self, request: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
        match self.call_raw((request.as_ptr() as usize, request.len()), (reply.as_mut_ptr() as usize, reply.len())) {
            Err(Error::Restarted) => crate::gate::call_again(self.port, request, reply),
            answer => answer,
        }
    }

    /// RPC through the handle with message buffers, as
    /// [`crate::service::call`]: a request whose payload fits
    /// [`REGISTER_WORDS`] words (and carries no right) travels in
    /// registers, a longer one in memory; the reply comes back in registers
    /// when it fits, else into `reply`'s storage — either way `reply` holds
    /// it after, and the view is of it. One call for both: the server sees
    /// the same request either way.
    #[inline(always)]
    pub fn send<'reply, RequestStorage, ReplyStorage>(
        &self,
        request: &MessageBuffer<RequestStorage>,
        reply: &'reply mut MessageBuffer<ReplyStorage>,
    ) -> Result<ReplyView<'reply>, Error>
    where
        RequestStorage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
        ReplyStorage: AsRef<[MaybeUninit<u8>]> + AsMut<[MaybeUninit<u8>]>,
    {
        let Some((first, words)) = request.register_words() else {
            let answer = self.call(request.message(), reply.receive_area());
            return reply.take_reply(answer);
        };
        // The kernel writes a reply too long for registers there: exactly
        // the length it answers, which is then taken as initialised.
        let area = reply.receive_claim();
        match self.call_registers(first, words, area, false) {
            Ok((value, words)) if value & REPLY_IN_REGISTERS != 0 => reply.accept_registers(value, words),
            Ok((length, _)) => reply.accept_kernel_written(length as usize),
            Err(Error::Restarted) => {
                let answer = crate::gate::call_again(self.port, request.message(), reply.receive_area());
                reply.take_reply(answer)
            }
            Err(error) => reply.take_reply(Err(error)),
        }
    }

    /// RPC through the handle with a message in registers both ways: the
    /// least a call can carry (no memory is read or written for the
    /// message on any path that keeps it in registers). A reply longer
    /// than the words is [`Error::ReplyTooLarge`].
    #[inline(always)]
    pub fn call_words(&self, request: &Words) -> Result<Words, Error> {
        // No buffer: the record's fourth word, the entry for registers both
        // ways (from a protected client `svc #1` and nothing else). The
        // record's address stands for the buffer's (a place in this
        // domain's region, and a capacity of 0).
        match self.call_registers(request.first, request.words, (self.record, 0), true) {
            Ok((value, words)) if value & REPLY_IN_REGISTERS != 0 => {
                Ok(Words { first: value & !REPLY_IN_REGISTERS, words })
            }
            // A reply the general path wrote into a buffer of none.
            Ok(_) => Err(Error::ReplyTooLarge),
            Err(Error::Restarted) => self.call_words_again(request),
            Err(error) => Err(error),
        }
    }

    /// [`Handle::call_words`] once more, by name, after `Restarted`.
    #[cold]
    #[inline(never)]
    fn call_words_again(&self, request: &Words) -> Result<Words, Error> {
        let mut message = [0u8; crate::service::REGISTER_MESSAGE];
        let mut reply = [0u8; crate::service::REGISTER_MESSAGE];
        let payload = request.payload();
        tern_core::abi::MessageHeader::new(request.label(), payload.len()).write_to(&mut message);
        message[tern_core::abi::MessageHeader::SIZE..][..payload.len()].copy_from_slice(payload);
        let length = crate::gate::call_again(
            self.port,
            &message[..tern_core::abi::MessageHeader::SIZE + payload.len()],
            &mut reply,
        )?;
        let view = crate::service::MessageView::parse(&reply[..length])?;
        Words::new(view.label(), view.payload).ok_or(Error::ReplyTooLarge)
    }

    /// The register form of a bound call: `first` the label | payload
    /// length << 32, `words` the payload; `reply` the buffer (address,
    /// capacity) a reply too long for registers is written into; or,
    /// `words_only`, none (capacity 0): registers both ways, through the
    /// record's entry for that. Answers x1 (with [`REPLY_IN_REGISTERS`] for a reply in
    /// registers, then the label and length) and the reply's words.
    #[inline(always)]
    fn call_registers(
        &self,
        first: u64,
        words: [u64; REGISTER_WORDS],
        reply: (usize, usize),
        words_only: bool,
    ) -> Result<(u64, [u64; REGISTER_WORDS]), Error> {
        #[cfg(target_os = "none")]
        {
            let (status, value): (usize, u64);
            let (out0, out1, out2, out3): (u64, u64, u64, u64);
            macro_rules! through {
                ($entry:literal) => {
                    core::arch::asm!(
                        concat!("ldr     x17, [x16, #", $entry, "]"),
                        "blr     x17",
                        in("x16") self.record,
                        inlateout("x0") first as usize => status,
                        inlateout("x1") words[0] => value,
                        inlateout("x2") words[1] => out0,
                        inlateout("x3") words[2] => out1,
                        inlateout("x4") words[3] => out2,
                        inlateout("x5") self.number => out3,
                        in("x6") reply.0,
                        in("x7") reply.1,
                        clobber_abi("C"),
                        options(nostack),
                    )
                };
            }
            // SAFETY: as in `call_raw`, with the record's second word (a
            // buffer given) or its fourth (`words_only`: none): the register forms of the
            // same entries, which take and answer these registers (the
            // fourth's protected form keeps no frame: its `svc #1` keeps
            // SP, x19-x30, and the general path resumes it at
            // `tern_bound_words_general_back`, which pops the frame the
            // kernel made and returns to x30).
            unsafe { if words_only { through!(24) } else { through!(8) } }
            if status == 0 {
                Ok((value, [out0, out1, out2, out3]))
            } else {
                Err(tern_core::abi::Error::from_code(status).unwrap_or(Error::NoSuchCall))
            }
        }
        #[cfg(not(target_os = "none"))]
        {
            let _ = (first, words, reply, words_only);
            Err(Error::NoSuchCall)
        }
    }

    /// [`Handle::call`] with unchecked buffer claims (for probes).
    #[inline(always)]
    pub fn call_raw(&self, request: (usize, usize), reply: (usize, usize)) -> Result<usize, Error> {
        #[cfg(target_os = "none")]
        {
            let status: usize;
            let value: usize;
            // SAFETY: reads the first word of this handle's record, at the
            // start of the region of the domain that bound it (ours: our
            // stack lies in it; mapped for us in either mode), and branches
            // to it. The kernel wrote it: one of
            // the three entries the module's notes list, each of which
            // takes exactly these registers, answers in x0/x1, keeps
            // x19-x29 and SP as a C function does, and touches no memory of
            // ours except through the claims it checks (general) or those a
            // merged client is trusted with (merged). Were the word to lie
            // (the domain can write it), the branch runs at our own
            // privilege: a protected domain faults or enters the kernel,
            // which checks the handle's number itself.
            unsafe {
                core::arch::asm!(
                    "ldr     x17, [x16]",
                    "blr     x17",
                    in("x16") self.record,
                    inlateout("x0") self.number => status,
                    inlateout("x1") request.0 => value,
                    in("x2") request.1,
                    in("x3") reply.0,
                    in("x4") reply.1,
                    clobber_abi("C"),
                    options(nostack),
                );
            }
            tern_core::abi::decode_result(status, value)
        }
        #[cfg(not(target_os = "none"))]
        {
            let _ = (request, reply);
            Err(Error::NoSuchCall)
        }
    }

    /// Give the handle's number back (a stale handle too).
    pub fn unbind(self) -> Result<(), Error> {
        crate::gate::raw_call(Call::Unbind, self.number, 0, 0).map(|_| ())
    }
}

/// The start of the region this code's stack lies in: the running
/// domain's.
fn region_start() -> usize {
    #[cfg(target_os = "none")]
    {
        let stack: usize;
        // SAFETY: reads the stack pointer, nothing else.
        unsafe { core::arch::asm!("mov {}, sp", out(reg) stack, options(nomem, nostack, preserves_flags)) };
        stack & !(tern_core::board::DOMAIN_REGION as usize - 1)
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn tern_bound_stale();
    fn tern_bound_trap();
    fn tern_bound_trap_registers();
    fn tern_bound_direct();
    fn tern_bound_direct_registers();
    fn tern_bound_merged();
    fn tern_bound_merged_registers();
    fn tern_bound_trap_words();
    fn tern_bound_words_general_back();
}

/// The entries the kernel publishes in handle records, by
/// `tern_core::handle::BoundPath` (stale, trap, direct, merged): for a
/// message in memory, for one in registers, and for one in registers both
/// ways with no reply buffer (`Handle::call_words`).
pub fn entries() -> [[u64; 3]; 4] {
    #[cfg(target_os = "none")]
    {
        let address = |entry: unsafe extern "C" fn()| entry as *const () as u64;
        [
            [address(tern_bound_stale), address(tern_bound_stale), address(tern_bound_stale)],
            [address(tern_bound_trap), address(tern_bound_trap_registers), address(tern_bound_trap_words)],
            [address(tern_bound_direct), address(tern_bound_direct_registers), address(tern_bound_direct_registers)],
            [address(tern_bound_merged), address(tern_bound_merged_registers), address(tern_bound_merged_registers)],
        ]
    }
    #[cfg(not(target_os = "none"))]
    {
        [0, 1, 2, 3].map(|path| [0x3000 + 0x100 * path, 0x3080 + 0x100 * path, 0x30c0 + 0x100 * path])
    }
}

// The frame the kernel makes for a words call with no buffer is the one
// tern_bound_words_general_back pops.
const _: () = assert!(crate::service::REGISTER_MESSAGE == tern_core::handle::REGISTER_MESSAGE);

/// Where a words call with no buffer resumes when the kernel's general
/// path takes it (`tern_core::kernel::ServerLayer::bound_words_general`).
pub fn words_general() -> u64 {
    #[cfg(target_os = "none")]
    {
        tern_bound_words_general_back as *const () as u64
    }
    #[cfg(not(target_os = "none"))]
    {
        0x3404
    }
}

// fn tern_bound_stale() -> (x0 StaleHandle, x1 0)   (both forms)
// fn tern_bound_trap(x0 handle, x1/x2 request, x3/x4 reply) -> (x0, x1)
// fn tern_bound_direct(the same) -> (x0, x1)
// fn tern_bound_trap_registers(x0 label | length << 32, x1-x4 words,
//                              x5 handle, x6/x7 reply) -> (x0, x1)
// fn tern_bound_direct_registers(the same) -> (x0, x1)
//
// The trap and the direct entry make the kernel call `CallBound` as the
// gate makes any (`svc`; `bl tern_kernel_entry`), keeping the return
// address on the caller's stack across it (the kernel keeps SP and
// x19-x29). Their register forms make `CallBoundWords`, the request in
// registers; the reply comes back in the caller's buffer, or, when it
// gave none (capacity 0), into the frame and from there in registers.
// The trap makes it as `svc #1`, which names `CallBoundWords` by itself
// (the kernel's vector tells it apart by the immediate, before any test
// of x8; the kernel's vectors.s), so x8 is not set for it.
// fn tern_bound_trap_words(x0 label | length << 32, x1-x4 words, x5
//                          handle, x6 anything in our region, x7 0)
//                          -> (x0, x1-x5)
//
// The register form both ways, no buffer (`Handle::call_words`), from a
// protected client: `svc #1` and nothing else. No frame: the `svc` keeps
// SP and x19-x30 (x30 too: an exception leaves it, and every way back —
// the fast paths' saved state, the general path's frame — restores it).
// The trapping fast path answers in registers; when the general path
// takes the call it makes the frame a framed stub would have made, below
// SP (`tern_core::handle`'s `call_bound_words`), and resumes the caller at
// tern_bound_words_general_back, which hands a reply written there on in
// registers (a longer one is ReplyTooLarge), pops the frame and returns to
// x30 as this would have. The `svc #0` before it: a call made again from
// that saved state (a sidetrack, a requeued sender) is the CallBound the
// kernel turned it into (x8 and x0-x4 as it rewrote them).
// All of them are image code: they run at either privilege.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    // Frame: x29/x30; a reply area of a register message; the caller's
    // reply capacity. The kernel call is `CallBoundWords` (the registers
    // as they came); the reply comes back in registers (x1 with
    // REPLY_IN_REGISTERS: the trapping fast path's, from a protected
    // runtime's register trampoline), or goes into the caller's buffer,
    // or, when it gave none (capacity 0), into the frame, and from there
    // back in registers.
    // (x29 is the kernel's to keep, as x19-x28; x30 is saved, as a merged
    // caller's `bl` needs.) Frame: the caller's reply capacity and x30,
    // then the reply area, one register message.
    ".macro TERN_BOUND_WORDS",
    "    stp     x7, x30, [sp, #-64]!",
    "    cbnz    x7, 1f",
    "    add     x6, sp, #16",
    "    mov     x7, #{register_message}",
    "1:",
    ".endm",
    ".macro TERN_BOUND_UNSPILL",
    "    tbnz    x1, #63, 2f",
    "    cbnz    x0, 2f",
    "    ldr     x9, [sp]",
    "    cbnz    x9, 2f",
    "    ldr     w2, [sp, #16]",
    "    sub     x3, x1, #{header}",
    "    orr     x1, x2, x3, lsl #32",
    "    orr     x1, x1, #(1 << 63)",
    "    ldp     x2, x3, [sp, #32]",
    "    ldp     x4, x5, [sp, #48]",
    "2:  ldp     x9, x30, [sp], #64",
    "    ret",
    ".endm",
    ".section .text.tern_bound, \"ax\"",
    ".global tern_bound_stale",
    "tern_bound_stale:",
    "    mov     x0, #{stale}",
    "    mov     x1, xzr",
    "    ret",
    ".global tern_bound_trap",
    "tern_bound_trap:",
    "    str     x30, [sp, #-16]!",
    "    mov     x8, #{call_bound}",
    "    svc     #0",
    "    ldr     x30, [sp], #16",
    "    ret",
    ".global tern_bound_direct",
    "tern_bound_direct:",
    "    str     x30, [sp, #-16]!",
    "    mov     x8, #{call_bound}",
    "    bl      tern_kernel_entry",
    "    ldr     x30, [sp], #16",
    "    ret",
    ".global tern_bound_trap_registers",
    "tern_bound_trap_registers:",
    "    TERN_BOUND_WORDS",
    "    svc     #1",
    "    TERN_BOUND_UNSPILL",
    ".global tern_bound_trap_words",
    "tern_bound_trap_words:",
    "    svc     #1",
    "    ret",
    ".global tern_bound_words_general",
    "tern_bound_words_general:",
    "    svc     #0",
    ".global tern_bound_words_general_back",
    "tern_bound_words_general_back:",
    "    cbnz    x0, 2f",
    "    tbnz    x1, #63, 2f",
    "    ldr     w2, [sp]",
    "    sub     x3, x1, #{header}",
    "    orr     x1, x2, x3, lsl #32",
    "    orr     x1, x1, #(1 << 63)",
    "    ldp     x2, x3, [sp, #16]",
    "    ldp     x4, x5, [sp, #32]",
    "2:  add     sp, sp, #{register_message}",
    "    ret",
    ".global tern_bound_direct_registers",
    "tern_bound_direct_registers:",
    "    TERN_BOUND_WORDS",
    "    mov     x8, #{call_bound_words}",
    "    bl      tern_kernel_entry",
    "    TERN_BOUND_UNSPILL",
    stale = const Error::StaleHandle as usize,
    call_bound = const Call::CallBound as usize,
    call_bound_words = const Call::CallBoundWords as usize,
    header = const tern_core::abi::MessageHeader::SIZE,
    register_message = const crate::service::REGISTER_MESSAGE,
);
