//! The service gate: the only way a domain's code calls the kernel.
//!
//! Every kernel call has one shape (see `tern_core::abi`): number in `x8`,
//! arguments in `x0`–`x4`, status in `x0` and value in `x1`.
//! [`raw_call_number`] is the single `svc` site; everything else here is a
//! safe wrapper. The kernel checks every pointer it is given against the
//! caller's memory, so passing a wild address is safe — it returns
//! [`Error::BadAddress`] — which is why even [`console_write_raw`] can be a
//! safe function.
//!
//! The `asm!` declares the C ABI's caller-saved registers clobbered
//! (`clobber_abi("C")`), so a kernel call costs the caller what a function
//! call would, and the kernel need not preserve SIMD registers across it.
//! On AArch64 that includes d8-d15, so a function containing a kernel call
//! saves them in its prologue — a SIMD use, which after a kernel call costs
//! the trap that zeroes the SIMD registers. The wrappers are therefore
//! `#[inline(always)]`: the saves land in the caller's prologue, once,
//! instead of in a separate function entered around every call.

use tern_core::abi::{Call, Error, PortName};

/// Make kernel call `call` with up to three arguments.
#[inline(always)]
pub fn raw_call(call: Call, argument0: usize, argument1: usize, argument2: usize) -> Result<usize, Error> {
    raw_call_number(call as usize, [argument0, argument1, argument2, 0, 0])
}

/// Make kernel call `call` with up to five arguments.
#[inline(always)]
pub fn raw_call5(call: Call, arguments: [usize; 5]) -> Result<usize, Error> {
    raw_call_number(call as usize, arguments)
}

/// The gate's way into the kernel, one sequence for every kernel call:
/// read the domain's mode word (at the base of the region the stack lies
/// in), then `svc` when it is 0 (protected) or branch to the kernel's
/// direct entry when it is not (merged). Takes the call's register
/// operands; declares every caller-saved register clobbered.
#[cfg(target_os = "none")]
macro_rules! enter_kernel {
    ($($operands:tt)*) => {
        core::arch::asm!(
            "mov     x9, sp",
            "and     x9, x9, #{region_mask}",
            "ldr     x9, [x9, #{mode_offset}]",
            "cbz     x9, 1f",
            "bl      tern_kernel_entry",
            "b       2f",
            "1:",
            "svc     #0",
            "2:",
            region_mask = const !(tern_core::board::DOMAIN_REGION - 1),
            mode_offset = const tern_core::board::REGION_MODE_OFFSET,
            $($operands)*
            clobber_abi("C"),
            options(nostack),
        )
    };
}

/// Make the kernel call numbered `number` with `arguments` in x0-x4: the
/// one kernel-entry site of the gate (the number need not name a call:
/// probes use that to check the kernel's answer to unknown numbers).
///
/// How it enters depends on the domain's mode, which the kernel keeps in
/// the mode word at the start of the domain's region (found from the
/// stack pointer: every stack a domain runs on lies in its region):
/// protected, `svc` (a trap from EL0); merged, a direct branch to the
/// kernel's `tern_kernel_entry` (the code already runs at EL1). Either
/// way the kernel sees the same registers and answers the same way.
#[inline(always)]
pub fn raw_call_number(number: usize, arguments: [usize; 5]) -> Result<usize, Error> {
    #[cfg(target_os = "none")]
    {
        let status: usize;
        let value: usize;
        // SAFETY: the load reads the mode word of the region our stack is
        // in (mapped for us in either mode). `svc` enters the kernel from
        // EL0; `bl tern_kernel_entry` enters it from EL1 (merged), and the
        // kernel returns to the instruction after the `bl` as an exception
        // return would. Either way the kernel reads only the registers
        // named here, writes x0/x1, and keeps x19-x29 and SP (every
        // caller-saved register, x30 included, is declared clobbered). It
        // touches no memory of ours except through pointers it checks
        // first. Were the word to lie (the domain can write it), a
        // protected domain's direct entry would fault on its first,
        // privileged instruction, and a merged domain's `svc` still works.
        unsafe {
            enter_kernel!(
                inlateout("x0") arguments[0] => status,
                inlateout("x1") arguments[1] => value,
                in("x2") arguments[2],
                in("x3") arguments[3],
                in("x4") arguments[4],
                in("x8") number,
            );
        }
        tern_core::abi::decode_result(status, value)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (number, arguments);
        Err(Error::NoSuchCall)
    }
}

/// Make the kernel call numbered `number` with all of x0-x7 as given, the
/// gate's one sequence, answering the status and value registers as they
/// came back, undecoded: for code that judges the kernel's raw answers
/// (the harness's fuzzer). The kernel checks every claim it is given, as
/// for [`raw_call_number`].
#[inline(always)]
pub fn raw_registers(number: usize, registers: [usize; 8]) -> (usize, usize) {
    #[cfg(target_os = "none")]
    {
        let status: usize;
        let value: usize;
        // SAFETY: as in `raw_call_number`, with x5-x7 passed too (the
        // kernel reads them as the call's arguments, and checks every
        // claim among them).
        unsafe {
            enter_kernel!(
                inlateout("x0") registers[0] => status,
                inlateout("x1") registers[1] => value,
                in("x2") registers[2],
                in("x3") registers[3],
                in("x4") registers[4],
                in("x5") registers[5],
                in("x6") registers[6],
                in("x7") registers[7],
                in("x8") number,
            );
        }
        (status, value)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (number, registers);
        (Error::NoSuchCall as usize, 0)
    }
}

/// RPC on `port`: `request` is a whole message (header first, see
/// [`tern_core::abi::MessageHeader`]); the reply lands in `reply`. Returns
/// the reply's length. The same call reaches a server that serves with an
/// activation pool (migrating) or with threads (switching).
///
/// A call the kernel answers `Restarted` (the server died while serving
/// it, on a port it declared idempotent, and is being restarted) is made
/// once more, to the new instance; a second `Restarted` is returned as
/// `CallAborted`. The caller never sees `Restarted`.
#[inline(always)]
pub fn call(port: PortName, request: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
    match call_raw(
        port as usize,
        (request.as_ptr() as usize, request.len()),
        (reply.as_mut_ptr() as usize, reply.len()),
    ) {
        Err(Error::Restarted) => call_again(port, request, reply),
        answer => answer,
    }
}

/// [`call`] once more, after `Restarted`: out of line, so that the way
/// every call takes pays nothing for it.
#[cold]
#[inline(never)]
pub(crate) fn call_again(port: PortName, request: &[u8], reply: &mut [u8]) -> Result<usize, Error> {
    once_more(call_raw(
        port as usize,
        (request.as_ptr() as usize, request.len()),
        (reply.as_mut_ptr() as usize, reply.len()),
    ))
}

/// The answer to a call made again: a second `Restarted` is `CallAborted`.
fn once_more(answer: Result<usize, Error>) -> Result<usize, Error> {
    match answer {
        Err(Error::Restarted) => Err(Error::CallAborted),
        answer => answer,
    }
}

/// [`call`], lending the server `lent` for the duration of the call,
/// read-only: the server sees it at the same address (mapped into its view
/// for the call if it is protected; a merged server sees it already), with
/// no copy. Served by pool activations only (`CannotLend` otherwise).
#[inline(always)]
pub fn call_lending(port: PortName, request: &[u8], reply: &mut [u8], lent: &[u8]) -> Result<usize, Error> {
    let (request, lent) = ((request.as_ptr() as usize, request.len()), (lent.as_ptr() as usize, lent.len()));
    match call_lending_raw(port, request, reply, lent) {
        Err(Error::Restarted) => call_lending_again(port, request, reply, lent),
        answer => answer,
    }
}

/// [`call_lending`] or [`call_lending_mut`] once more, after `Restarted`.
#[cold]
#[inline(never)]
fn call_lending_again(
    port: PortName,
    request: (usize, usize),
    reply: &mut [u8],
    lent: (usize, usize),
) -> Result<usize, Error> {
    once_more(call_lending_raw(port, request, reply, lent))
}

/// [`call_lending`], read-write: the server may write `lent`.
#[inline(always)]
pub fn call_lending_mut(port: PortName, request: &[u8], reply: &mut [u8], lent: &mut [u8]) -> Result<usize, Error> {
    let lent = (lent.as_mut_ptr() as usize, lent.len() | tern_core::abi::LEND_WRITABLE);
    let request = (request.as_ptr() as usize, request.len());
    match call_lending_raw(port, request, reply, lent) {
        Err(Error::Restarted) => call_lending_again(port, request, reply, lent),
        answer => answer,
    }
}

/// [`call_lending`] with an unchecked lend claim (address, length |
/// `LEND_WRITABLE`), for probing the kernel's checks.
#[inline(always)]
pub fn call_lending_raw(
    port: PortName,
    request: (usize, usize),
    reply: &mut [u8],
    lent: (usize, usize),
) -> Result<usize, Error> {
    #[cfg(target_os = "none")]
    {
        let status: usize;
        let value: usize;
        // SAFETY: as in `raw_call_number`, with x5/x6 carrying the lent
        // region (which the kernel checks against our memory). The region
        // stays borrowed by the caller of the safe wrappers until the call
        // returns, so the server's access to it races with nothing of ours.
        unsafe {
            enter_kernel!(
                inlateout("x0") port as usize => status,
                inlateout("x1") request.0 => value,
                in("x2") request.1,
                in("x3") reply.as_mut_ptr() as usize,
                in("x4") reply.len(),
                in("x5") lent.0,
                in("x6") lent.1,
                in("x8") Call::CallLending as usize,
            );
        }
        tern_core::abi::decode_result(status, value)
    }
    #[cfg(not(target_os = "none"))]
    {
        let _ = (port, request, reply, lent);
        Err(Error::NoSuchCall)
    }
}

/// [`call`] with unchecked buffer claims, for probing the kernel's checks.
#[inline(always)]
pub fn call_raw(port: usize, request: (usize, usize), reply: (usize, usize)) -> Result<usize, Error> {
    raw_call5(Call::Call, [port, request.0, request.1, reply.0, reply.1])
}

/// End a migrating RPC with `reply` (a whole message). Never returns.
#[inline(always)]
pub fn return_from_call(reply: &[u8]) -> ! {
    let _ = raw_call(Call::Return, reply.as_ptr() as usize, reply.len(), 0);
    loop {
        core::hint::spin_loop();
    }
}

/// This domain's mode, as the kernel last wrote it in the mode word the
/// gate reads (see [`raw_call_number`]).
#[inline(always)]
pub fn current_mode() -> crate::mode::DomainMode {
    #[cfg(target_os = "none")]
    {
        let word: usize;
        // SAFETY: reads the mode word at the start of the region our
        // stack lies in, which is mapped for us in either mode.
        unsafe {
            core::arch::asm!(
                "mov     {word}, sp",
                "and     {word}, {word}, #{region_mask}",
                "ldr     {word}, [{word}, #{mode_offset}]",
                word = out(reg) word,
                region_mask = const !(tern_core::board::DOMAIN_REGION - 1),
                mode_offset = const tern_core::board::REGION_MODE_OFFSET,
                options(nostack, readonly, preserves_flags),
            );
        }
        crate::mode::DomainMode::from_code(word).unwrap_or_default()
    }
    #[cfg(not(target_os = "none"))]
    {
        crate::mode::DomainMode::Protected
    }
}

/// Set domain `domain`'s mode (kernel domain only; `Busy` while one of its
/// activations is occupied).
#[inline(always)]
pub fn domain_mode(domain: usize, mode: crate::mode::DomainMode) -> Result<usize, Error> {
    raw_call(Call::DomainMode, domain, mode as usize, 0)
}

/// Create a port; returns its name (the caller holds the receive right).
/// In a domain the kernel restarted, the first ports made are the
/// predecessor's (see `tern_core::restart`).
#[inline(always)]
pub fn port_create() -> Result<PortName, Error> {
    raw_call(Call::PortCreate, 0, 0, 0).map(|name| name as PortName)
}

/// [`port_create`] for a server whose every call may be made twice: a
/// call in flight when it dies and is restarted is re-issued to the new
/// instance (see [`call`]) rather than aborted.
#[inline(always)]
pub fn port_create_idempotent() -> Result<PortName, Error> {
    raw_call(Call::PortCreate, tern_core::abi::PORT_IDEMPOTENT, 0, 0).map(|name| name as PortName)
}

/// The generation of `port` (a name this domain holds): how many times
/// its server has been restarted under it.
#[inline(always)]
pub fn port_generation(port: PortName) -> Result<usize, Error> {
    raw_call(Call::PortGeneration, port as usize, 0, 0)
}

/// Set `domain`'s restart policy (0 never, 1 on a fault, 2 always), at
/// most `limit` restarts in any `window` counter ticks (`limit` 0: no
/// limit). The kernel domain only. Returns the restarts its window counts.
#[inline(always)]
pub fn domain_restart(domain: usize, policy: usize, limit: u32, window: u64) -> Result<usize, Error> {
    raw_call5(Call::DomainRestart, [domain, policy, limit as usize, window as usize, 0])
}

/// Destroy `port` (this domain holds its receive right): it dies at once,
/// every name for it in every space becomes a dead name (`PortDead` once
/// to its holder), its activations go as their calls end.
#[inline(always)]
pub fn port_destroy(port: PortName) -> Result<usize, Error> {
    raw_call(Call::PortDestroy, port as usize, 0, 0)
}

/// Set `domain`'s quota for `resource` (0 ports, 1 threads, 2
/// activations, 3 rights) to `limit`: the kernel domain only. What the
/// domain holds of it now.
#[inline(always)]
pub fn set_quota(domain: usize, resource: usize, limit: usize) -> Result<usize, Error> {
    raw_call(Call::SetQuota, domain, resource, limit)
}

/// Add `count` activations entering at `entry` (a migrating dispatch
/// entry, see the `service` module) with `stack` bytes each to `port`'s pool.
#[inline(always)]
pub fn pool_add(port: PortName, count: usize, entry: usize, stack: usize) -> Result<usize, Error> {
    raw_call5(Call::PoolAdd, [port as usize, count, entry, stack, 0])
}

/// Create a thread in this domain running `entry(argument)` at `priority`
/// (0 lowest .. 31 highest) with a `stack`-byte stack. Returns its number.
#[inline(always)]
pub fn thread_create(
    entry: crate::registry::Entry,
    argument: usize,
    priority: u8,
    stack: usize,
) -> Result<usize, Error> {
    raw_call5(Call::ThreadCreate, [entry as usize, argument, priority as usize, stack, 0])
}

/// Wait for thread `thread` (created by this domain) to end; its result.
#[inline(always)]
pub fn thread_join(thread: usize) -> Result<usize, Error> {
    raw_call(Call::ThreadJoin, thread, 0, 0)
}

/// Wait on `port` for a request, copied into `buffer`; its length.
#[inline(always)]
pub fn receive(port: PortName, buffer: &mut [u8]) -> Result<usize, Error> {
    raw_call(Call::Receive, port as usize, buffer.as_mut_ptr() as usize, buffer.len())
}

/// Reply `reply` to the last request received, then wait on `port` for the
/// next one into `buffer`; its length.
#[inline(always)]
pub fn reply_receive(reply: &[u8], port: PortName, buffer: &mut [u8]) -> Result<usize, Error> {
    raw_call5(
        Call::ReplyReceive,
        [reply.as_ptr() as usize, reply.len(), port as usize, buffer.as_mut_ptr() as usize, buffer.len()],
    )
}

/// Let another ready thread of the same or higher priority run.
#[inline(always)]
pub fn yield_now() {
    let _ = raw_call(Call::Yield, 0, 0, 0);
}

/// Ask for a sidetrack upcall into `entry` when `port`'s pool runs low.
#[inline(always)]
pub fn sidetrack_set(port: PortName, entry: usize, stack: usize) -> Result<usize, Error> {
    raw_call(Call::SidetrackSet, port as usize, entry, stack)
}

/// Set this domain's context word (handed to every dispatch upcall).
/// Crate-private: the service runtime turns the word back into a
/// reference, so only it may set it.
#[inline(always)]
pub(crate) fn context_set(context: usize, flags: usize) -> Result<usize, Error> {
    raw_call(Call::ContextSet, context, flags, 0)
}

/// Write text to the console.
#[inline(always)]
pub fn console_write(text: &str) -> Result<usize, Error> {
    console_write_raw(text.as_ptr() as usize, text.len())
}

/// Write `length` bytes at `address` to the console. The kernel checks that
/// the caller may read them: for probing that check.
#[inline(always)]
pub fn console_write_raw(address: usize, length: usize) -> Result<usize, Error> {
    raw_call(Call::ConsoleWrite, address, length, 0)
}

/// Read console input into `buffer`: the bytes received, at least one
/// (waiting until some arrive; `Interrupted` if an alert ends the wait).
/// The console domain's only (`Forbidden` for any other).
#[inline(always)]
pub fn console_read(buffer: &mut [u8]) -> Result<usize, Error> {
    raw_call(Call::ConsoleRead, buffer.as_mut_ptr() as usize, buffer.len(), 0)
}

/// The caller's domain number (which is also its ASID).
#[inline(always)]
pub fn who_am_i() -> usize {
    raw_call(Call::WhoAmI, 0, 0, 0).unwrap_or(0)
}

/// The domain whose call the caller is serving (`Call::Caller`): the
/// client below its pool activation, or the client of its server thread.
/// [`Error::NotInCall`] when it serves no call. What servers key
/// per-client state by.
#[inline(always)]
pub fn caller_domain() -> Result<usize, Error> {
    raw_call(Call::Caller, 0, 0, 0)
}

/// Copy the kernel's version string into `buffer`; returns the length.
#[inline(always)]
pub fn version(buffer: &mut [u8]) -> Result<usize, Error> {
    version_raw(buffer.as_mut_ptr() as usize, buffer.len())
}

/// [`version`] with an unchecked buffer claim, for probing the kernel's
/// pointer checks.
#[inline(always)]
pub fn version_raw(address: usize, length: usize) -> Result<usize, Error> {
    raw_call(Call::Version, address, length, 0)
}

/// The caller's own activation: the number naming it in the activation
/// calls (its domain holds the right to control it).
#[inline(always)]
pub fn activation_self() -> Result<usize, Error> {
    raw_call(Call::ActivationSelf, 0, 0, 0)
}

/// Alert `activation` (of this domain): the alert goes up its thread's
/// chain from it. Returns how many activations it reached.
#[inline(always)]
pub fn alert(activation: usize) -> Result<usize, Error> {
    raw_call(Call::Alert, activation, 0, 0)
}

/// Alert `activation`, then break its chain above it: its call returns
/// `Interrupted` at once, the part above carries on as another thread.
#[inline(always)]
pub fn alert_break(activation: usize) -> Result<usize, Error> {
    raw_call(Call::AlertBreak, activation, 0, 0)
}

/// Block (`true`) or open alerts at the caller's activation; whether they
/// were blocked. A server activation starts with them blocked.
#[inline(always)]
pub fn alerts_block(blocked: bool) -> Result<bool, Error> {
    raw_call(Call::AlertsBlock, blocked as usize, 0, 0).map(|was| was != 0)
}

/// Whether an alert has reached the caller's activation (and alerts are
/// open there); taking it.
#[inline(always)]
pub fn test_alert() -> bool {
    raw_call(Call::TestAlert, 0, 0, 0) == Ok(1)
}

/// Suspend `activation`: its thread stops when it would run its code.
/// Whether it was suspended already.
#[inline(always)]
pub fn suspend(activation: usize) -> Result<bool, Error> {
    raw_call(Call::Suspend, activation, 0, 0).map(|was| was != 0)
}

/// Resume `activation`; whether it was suspended.
#[inline(always)]
pub fn resume(activation: usize) -> Result<bool, Error> {
    raw_call(Call::Resume, activation, 0, 0).map(|was| was != 0)
}

/// Terminate `activation`: its thread splits; its caller's call returns
/// `Terminated` at once; the part above goes on, alerted.
#[inline(always)]
pub fn terminate(activation: usize) -> Result<usize, Error> {
    raw_call(Call::Terminate, activation, 0, 0)
}

/// Splice `activation` out: its caller's call returns `Terminated` once
/// everything above it has returned.
#[inline(always)]
pub fn splice_out(activation: usize) -> Result<usize, Error> {
    raw_call(Call::SpliceOut, activation, 0, 0)
}

/// An activation's user registers: x0-x30, SP, PC, PSTATE.
pub type CpuState = [u64; tern_core::abi::STATE_BYTES / 8];

/// Read `activation`'s registers, waiting until its thread is in it.
#[inline(always)]
pub fn get_state(activation: usize, state: &mut CpuState) -> Result<usize, Error> {
    raw_call(Call::GetState, activation, state.as_mut_ptr() as usize, core::mem::size_of::<CpuState>())
}

/// Set `activation`'s registers (of PSTATE, the condition flags only),
/// waiting until its thread is in it.
#[inline(always)]
pub fn set_state(activation: usize, state: &CpuState) -> Result<usize, Error> {
    raw_call(Call::SetState, activation, state.as_ptr() as usize, core::mem::size_of::<CpuState>())
}

/// Set the priority of the thread `activation` is on; the old one.
/// `Forbidden` if an activation below forbade it.
#[inline(always)]
pub fn set_priority(activation: usize, priority: u8) -> Result<usize, Error> {
    raw_call(Call::SetPriority, activation, priority as usize, 0)
}

/// The accounting of the thread `activation` is on, into `words`:
/// priority, CPU ticks, then (domain, ticks) pairs. Words written.
#[inline(always)]
pub fn thread_info(activation: usize, words: &mut [u64]) -> Result<usize, Error> {
    raw_call(Call::ThreadInfo, activation, words.as_mut_ptr() as usize, words.len() * 8)
}

/// Forbid the activations above `activation` from changing its thread's
/// scheduling state.
#[inline(always)]
pub fn forbid_above(activation: usize) -> Result<usize, Error> {
    raw_call(Call::ForbidAbove, activation, 0, 0)
}

/// Suspend (0), resume (1) or terminate (2) every occupied activation of
/// `domain` (kernel domain only); how many.
#[inline(always)]
pub fn domain_control(domain: usize, action: usize) -> Result<usize, Error> {
    raw_call(Call::DomainControl, domain, action, 0)
}

/// The occupied activations of `domain` (this one, or any for the kernel
/// domain), into `out`; how many there are.
#[inline(always)]
pub fn activations(domain: usize, out: &mut [u32]) -> Result<usize, Error> {
    raw_call(Call::Activations, domain, out.as_mut_ptr() as usize, out.len() * 4)
}

/// Sleep for `ticks` of the counter; `Interrupted` if an alert ends it.
#[inline(always)]
pub fn sleep(ticks: usize) -> Result<usize, Error> {
    raw_call(Call::Sleep, ticks, 0, 0)
}

/// Have alerts that reach this activation (with alerts open) delivered by
/// an upcall into `handler` at its next return from a kernel call, instead
/// of waiting for [`test_alert`]. The handler gets the activation's number
/// and must end with [`alert_done`]. For this activation's current
/// occupancy (a server asks in each call).
#[inline(always)]
pub fn alert_handler_set(handler: extern "C" fn(usize) -> !) -> Result<usize, Error> {
    raw_call(Call::AlertHandler, handler as usize, 0, 0)
}

/// End an alert handler: the activation goes on where the alert found it.
/// Called outside a handler it is a bug in the caller: it panics (which the
/// kernel contains like any fault of the domain).
#[inline(always)]
pub fn alert_done() -> ! {
    let refused = raw_call(Call::AlertDone, 0, 0, 0);
    panic!("alert_done outside an alert handler: {refused:?}")
}

/// End this upcall with `result`. Never returns.
#[inline(always)]
pub fn exit(result: usize) -> ! {
    let _ = raw_call(Call::Exit, result, 0, 0);
    // The kernel never returns from Exit; if it somehow did, do not run on.
    loop {
        core::hint::spin_loop();
    }
}

/// A migrating dispatch handler: gets the request (address and length, on
/// the activation's stack), the domain's context word, a reply buffer of
/// [`tern_core::abi::MESSAGE_MAX`] bytes, and the region the client lent
/// (address and length | `LEND_WRITABLE`; 0 and 0 for none); returns the
/// reply's length.
/// `unsafe`: a handler may rely on the guarantees of the kernel's entry
/// into a pool activation (see `service::kernel_made_handler`).
pub type DispatchHandler = unsafe extern "C" fn(usize, usize, usize, *mut u8, usize, usize) -> usize;

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn tern_dispatch_trampoline();
    fn tern_dispatch_trampoline_merged();
    fn tern_dispatch_trampoline_registers();
}

/// The address of the dispatch trampoline (`pool_add`'s entry for pools
/// served through [`DispatchHandler`]s): it makes room for the reply on
/// the activation's stack, calls the handler whose address is the first
/// word the context word points at, and ends the call with `Return`. The
/// kernel call lives in the trampoline, not in the handler, so a handler
/// that makes no kernel call of its own needs no FP/SIMD register saves in
/// its prologue — and a migrating activation, which starts afresh on every
/// call, does not pay the first-use trap that zeroes the SIMD registers.
pub fn dispatch_trampoline() -> usize {
    #[cfg(target_os = "none")]
    {
        tern_dispatch_trampoline as *const () as usize
    }
    #[cfg(not(target_os = "none"))]
    {
        0
    }
}

/// The register entry beside [`dispatch_trampoline`]: where the kernel's
/// trapping fast path of `CallBoundWords` enters a pool activation whose
/// entry is the dispatch trampoline, with the request in registers; it
/// calls the dispatch record's register handler and ends the call with
/// `svc #2` (see the assembly below).
pub fn dispatch_trampoline_registers() -> usize {
    #[cfg(target_os = "none")]
    {
        tern_dispatch_trampoline_registers as *const () as usize
    }
    #[cfg(not(target_os = "none"))]
    {
        2
    }
}

/// The merged form of [`dispatch_trampoline`]: the same, but it ends the
/// call by entering the kernel directly (its code runs at EL1) rather
/// than with `svc`. The kernel gives a merged domain's pool activations
/// this entry in place of the other, and the other back when it is
/// unmerged, so neither form tests the mode on every call.
pub fn dispatch_trampoline_merged() -> usize {
    #[cfg(target_os = "none")]
    {
        tern_dispatch_trampoline_merged as *const () as usize
    }
    #[cfg(not(target_os = "none"))]
    {
        1
    }
}

// fn tern_dispatch_trampoline(request: x0, length: x1, context: x2) -> !
// fn tern_dispatch_trampoline_merged(request: x0, length: x1, context: x2) -> !
// fn tern_dispatch_trampoline_registers(first: x0, words: x1-x4, context: x5) -> !
//
// Only the kernel enters them, at a call, with the context word of a
// domain using them: `serve` sets it to its `Dispatch` record (the
// handler, then the register handler). A domain that uses the trampoline
// with a context of its own making gets what it named called in its own
// domain: a bad word faults there, and its client gets `CallAborted`.
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".macro TERN_DISPATCH",
    "    sub     sp, sp, #{reply_pages}, lsl #12",
    "    sub     sp, sp, #{reply_rest}",
    "    mov     x3, sp",
    "    ldr     x9, [x2]",
    "    blr     x9",
    "    mov     x1, x0",
    "    mov     x0, sp",
    "    mov     x8, #{return_call}",
    ".endm",
    ".section .text.tern_dispatch_trampoline, \"ax\"",
    ".global tern_dispatch_trampoline",
    "tern_dispatch_trampoline:",
    "    TERN_DISPATCH",
    "    svc     #0",
    "1:  b       1b",
    ".global tern_dispatch_trampoline_merged",
    "tern_dispatch_trampoline_merged:",
    "    TERN_DISPATCH",
    "    bl      tern_kernel_entry",
    "1:  b       1b",
    // The register entry: where the kernel's fast path for `CallBoundWords`
    // enters a pool whose entry is `tern_dispatch_trampoline` (protected),
    // with the request in registers (x0 label | length << 32, x1-x4 the
    // words, x5 the context word; SP and x6 the reply area, REPLY_AREA
    // below the stack's top, as the trampoline reserves it). It calls the
    // record's second word, the register handler, and ends the call with
    // `svc #2`: Return whatever x8 holds, of the reply at SP, x0 its length
    // (the handler's result), with the reply's header word in x6 and its
    // four payload words in x2-x5, which the kernel hands the client
    // instead when it asked for registers. The words are zeroed before
    // the handler runs, so those past the reply's length are zeros, never
    // an earlier call's reply.
    ".global tern_dispatch_trampoline_registers",
    "tern_dispatch_trampoline_registers:",
    "    stp     xzr, xzr, [sp, #16]",
    "    stp     xzr, xzr, [sp, #32]",
    "    ldr     x9, [x5, #8]",
    "    blr     x9",
    "    ldr     x6, [sp]",
    "    ldp     x2, x3, [sp, #16]",
    "    ldp     x4, x5, [sp, #32]",
    "    svc     #2",
    "1:  b       1b",
    reply_pages = const tern_core::abi::REPLY_AREA >> 12,
    reply_rest = const tern_core::abi::REPLY_AREA & 0xfff,
    return_call = const Call::Return as usize,
);

/// Where every upcall into a domain starts: runs the domain's entry with
/// the kernel's argument and hands its result back through [`exit`]. The
/// kernel enters here at EL0 with `x0` = argument and `x1` = entry.
///
/// `extern "C"` fixes which registers the arguments arrive in; the entry is
/// a Rust function pointer, which is a plain code address in `x1` — the
/// kernel only copies it from the domain's registration record.
#[allow(improper_ctypes_definitions)]
pub extern "C" fn upcall_trampoline(argument: usize, entry: crate::registry::Entry) -> ! {
    exit(entry(argument))
}

/// A small formatter that writes into a stack buffer and sends it to the
/// console in one kernel call (domains have no heap yet).
pub struct ConsoleLine {
    buffer: [u8; 256],
    length: usize,
}

impl ConsoleLine {
    /// An empty line.
    pub const fn new() -> Self {
        ConsoleLine { buffer: [0; 256], length: 0 }
    }

    /// Send the text so far (if any) and start again.
    pub fn flush(&mut self) -> Result<usize, Error> {
        let result = match core::str::from_utf8(&self.buffer[..self.length]) {
            Ok(text) => console_write(text),
            Err(_) => Err(Error::NotUtf8),
        };
        self.length = 0;
        result
    }
}

impl Default for ConsoleLine {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Write for ConsoleLine {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for &byte in text.as_bytes() {
            if self.length == self.buffer.len() {
                self.flush().map_err(|_| core::fmt::Error)?;
            }
            self.buffer[self.length] = byte;
            self.length += 1;
        }
        Ok(())
    }
}

/// Print formatted text from a domain: `tern_inks::println!("x = {}", x)`.
#[macro_export]
macro_rules! println {
    ($($argument:tt)*) => {{
        let mut line = $crate::gate::ConsoleLine::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($argument)*));
        let _ = core::fmt::Write::write_str(&mut line, "\n");
        let _ = line.flush();
    }};
}
