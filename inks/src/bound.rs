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

use tern_core::abi::{Call, Error, PortName};

/// A port bound for calls (see the module's notes).
#[derive(Debug, PartialEq, Eq)]
pub struct Handle {
    number: usize,
    port: PortName,
}

/// Bind `port` (a name this domain holds a send right for): checked now,
/// not on every call. `OverQuota` when all [`tern_core::abi::HANDLES`] of
/// this domain's handles are bound.
#[inline]
pub fn bind(port: PortName) -> Result<Handle, Error> {
    let number = crate::gate::raw_call(Call::Bind, port as usize, 0, 0)?;
    Ok(Handle { number, port })
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

    /// [`Handle::call`] with unchecked buffer claims (for probes).
    #[inline(always)]
    pub fn call_raw(&self, request: (usize, usize), reply: (usize, usize)) -> Result<usize, Error> {
        #[cfg(target_os = "none")]
        {
            let status: usize;
            let value: usize;
            let offset = tern_core::board::REGION_HANDLES_OFFSET as usize
                + self.number * tern_core::board::HANDLE_RECORD_BYTES as usize;
            // SAFETY: reads the first word of this handle's record, at the
            // start of the region our stack lies in (mapped for us in
            // either mode), and branches to it. The kernel wrote it: one of
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
                    "mov     x16, sp",
                    "and     x16, x16, #{region_mask}",
                    "add     x16, x16, {offset}",
                    "ldr     x17, [x16]",
                    "blr     x17",
                    offset = in(reg) offset,
                    region_mask = const !(tern_core::board::DOMAIN_REGION - 1),
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

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn tern_bound_stale();
    fn tern_bound_trap();
    fn tern_bound_direct();
    fn tern_bound_merged();
}

/// The entries the kernel publishes in handle records, by
/// `tern_core::handle::BoundPath`: stale, trap, direct, merged.
pub fn entries() -> [u64; 4] {
    #[cfg(target_os = "none")]
    {
        [tern_bound_stale, tern_bound_trap, tern_bound_direct, tern_bound_merged].map(|entry| entry as *const () as u64)
    }
    #[cfg(not(target_os = "none"))]
    {
        [0x3000, 0x3100, 0x3200, 0x3300]
    }
}

// fn tern_bound_stale() -> (x0 StaleHandle, x1 0)
// fn tern_bound_trap(x0 handle, x1/x2 request, x3/x4 reply) -> (x0, x1)
// fn tern_bound_direct(the same) -> (x0, x1)
//
// The trap and the direct entry make the kernel call `CallBound` as the
// gate makes any (`svc`; `bl tern_kernel_entry`), keeping the return
// address on the caller's stack across it (the kernel keeps SP and
// x19-x29). All three are image code: they run at either privilege.
#[cfg(target_os = "none")]
core::arch::global_asm!(
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
    stale = const Error::StaleHandle as usize,
    call_bound = const Call::CallBound as usize,
);
