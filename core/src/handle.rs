//! Bound handles: a port name translated and checked once, then called
//! through many times (issue 15; LRPC's binding).
//!
//! [`Call::Bind`](crate::abi::Call::Bind) checks what every call by name
//! checks again — the caller holds a send right, the port is alive — and
//! records the result in a slot of the caller's [`HandleTable`]. The
//! kernel also **publishes** each slot into the caller's region (at
//! `REGION_HANDLES_OFFSET`, one `HANDLE_RECORD_BYTES` record per slot), so
//! the caller's gate can reach the handle's path without a kernel call:
//!
//! | word | what |
//! |---|---|
//! | 0 | the **entry** of the handle's path for a message in memory: the gate branches to it |
//! | 1 | the entry of the same path for a message in registers |
//! | 2 | the port's record (kernel address): the merged path's pool |
//! | 3 | the entry for a message in registers both ways, no reply buffer (`Handle::call_words`): from a protected client `svc #1` and nothing else, no frame (the general path makes one if it needs it: `call_bound_words`); otherwise the register entry |
//!
//! The entry is one of the layer's [`BoundPath`] entries, chosen from the
//! pair of modes: a merged client calling a merged server gets the merged
//! path (a procedure call, no trap: `tern_aarch64`'s `tern_bound_merged`);
//! any other pair the kernel call
//! [`Call::CallBound`](crate::abi::Call::CallBound), which checks the
//! handle against this table — by `svc` from a protected client, by the
//! kernel's direct entry from a merged one; a stale or unbound slot gets
//! the stale entry, which answers [`Error::StaleHandle`] without entering
//! the kernel.
//! So the gate's only mode test is that one indirect branch, and the kernel
//! rewrites it when anything it depends on changes:
//!
//! - the port dies (destroyed, its owner dies, or the owner is restarted
//!   under it): every handle to it goes **stale**;
//! - the server's domain changes mode: every handle to its ports goes
//!   stale (the client binds again and gets the new path);
//! - the client's domain changes mode: its handles are republished with
//!   the path for the new pair (the port has not changed);
//! - the client unbinds, or dies: the slot is freed.
//!
//! Why stale rather than silently rewritten for a server's change: a
//! handle promises the client the path it was bound to; a client that
//! binds again sees the change, and the kernel never sends a call made
//! for one server instance into another (restart). Rejected: a
//! generation compared on every call (a load and a compare on the fast
//! path, for what the kernel can do once, when the change happens); a
//! pointer to the handle's record in a protected domain's hands (it could
//! name any kernel address: the general path takes the handle's number
//! and checks it here).
//!
//! A protected domain can write its published records (they lie in its
//! region): that only misleads its own gate — a forged entry runs at its
//! own privilege and faults or enters the kernel, which checks the
//! number against this table. A merged domain's records are trusted, as
//! all of its code is.

use crate::abi::{DomainMode, Error, HANDLES};
pub use crate::binding::{Binding, HandleTable};
use crate::board::{HANDLE_RECORD_BYTES, REGION_HANDLES_OFFSET};
use crate::capability::PortId;
use crate::domain::DomainId;
use crate::kernel::{Caller, Kernel, KernelCall, Next};
use crate::machine::{Machine, UserFrame};
use crate::thread::Objects;

/// The bytes of a message in registers: a header and
/// [`crate::abi::REGISTER_WORDS`] words (the frame the general path makes
/// for a register call with no buffer).
pub const REGISTER_MESSAGE: usize = crate::abi::MessageHeader::SIZE + 8 * crate::abi::REGISTER_WORDS;

/// What the trapping fast paths take a bound handle's port from
/// (`CallBound`, `CallBoundWords`): for each of `handles`' slots, the
/// address of its port's record, or 0 for a slot that is unbound or
/// stale, or whose port is dead or gone. The machine copies it into the
/// kernel-only domain block whenever a domain record may have changed
/// (`Published::domains_changed`), which every change here sets: bind and
/// unbind (`domain_mut`), a port's death, a restart and a server's mode
/// flip (`stale_handles`, `domains_mut`), the client's death
/// (`clear_all`, `domain_mut`), and the freeing of a port record
/// (`Kernel::forget_port`, whatever else changed). So between two
/// publications, when the fast paths run, every address here is that of
/// a live port's boxed record, exactly what the port table gives for the
/// handle's number; a stale handle reads 0 and takes the general path,
/// which answers `StaleHandle`.
pub fn port_records(handles: &HandleTable, objects: &Objects) -> [u64; HANDLES] {
    core::array::from_fn(|slot| {
        handles
            .get(slot)
            .filter(|binding| !binding.stale && objects.port(binding.port).is_some_and(|port| port.alive))
            .map_or(0, |binding| objects.port_address(binding.port) as u64)
    })
}

/// Which path a bound handle's published entry leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundPath {
    /// The handle is stale or unbound: `StaleHandle`, no kernel call.
    Stale = 0,
    /// A protected client: [`Call::CallBound`](crate::abi::Call::CallBound)
    /// by `svc`.
    Trap = 1,
    /// A merged client, a protected server: `CallBound` by the kernel's
    /// direct entry.
    Direct = 2,
    /// Merged client, merged server: the procedure-call path.
    Merged = 3,
}

impl<M: Machine> Kernel<M> {
    /// `Bind`: x0 a port name the caller holds a send right for; returns
    /// the handle's number.
    pub fn bind_call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let name = crate::rpc::port_name(frame, 0)?;
        self.bind(caller.domain, name).map(Next::Reply)
    }

    /// `CallBoundWords` on the general path (see the call's notes): the
    /// message from the registers written into the reply buffer, then
    /// called through the handle's port with it (`call_port`), the
    /// caller's registers left as they are, so that a call made again is
    /// the words call again. `InvalidArgument` for a payload longer than
    /// the words; `BadAddress` for a buffer the caller may not write or
    /// too small for the message.
    ///
    /// With no buffer (x7 = 0: the register form both ways,
    /// `Handle::call_words`, whose entry keeps no frame) the kernel makes
    /// the one the gate's stub would have made: [`REGISTER_MESSAGE`] bytes
    /// below the caller's SP, checked writable in its region; SP is moved
    /// below it and the caller resumes at the layer's
    /// `bound_words_general`, which hands a reply written there on in
    /// registers, pops the frame and returns to x30 (an `svc` keeps it).
    /// Every way back (the reply, an error, `CallAborted` after a fault, an
    /// alert) resumes there from the state saved now, and a call made again
    /// from it (`repeat_call`: a sidetrack, a requeued sender) is the
    /// `svc #0` before that code, `CallBound` as rewritten here. The
    /// handle is checked first: a stale one gets `StaleHandle` with the
    /// frame untouched.
    pub fn call_bound_words(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let first = frame.register(0);
        let length = (first >> 32) as usize;
        if length > 8 * crate::abi::REGISTER_WORDS {
            return Err(Error::InvalidArgument);
        }
        let total = crate::abi::MessageHeader::SIZE + length;
        let handle = frame.register(5);
        // The handle first: a stale one gets `StaleHandle`, nothing written.
        let port = self.bound_port(caller.domain, handle as usize)?;
        let mut context = frame.context();
        // No buffer: a frame of the kernel's making, for the gate's
        // frameless stub (`svc #1`, resumed at x30) only; by `svc #0` it is
        // no room (below).
        let by_svc1 = frame.argument(8) == crate::abi::CALL_BOUND_WORDS_SVC1;
        let own_frame = by_svc1 && frame.register(7) == 0;
        let buffer = if own_frame {
            let below = context.sp.checked_sub(REGISTER_MESSAGE as u64).ok_or(Error::BadAddress)?;
            crate::domain::UserRange::new(below as usize, REGISTER_MESSAGE)
        } else {
            crate::domain::UserRange::new(frame.register(6) as usize, frame.register(7) as usize)
        };
        if buffer.length < total {
            return Err(Error::BadAddress);
        }
        let record = self.domain(caller.domain).ok_or(Error::BadAddress)?;
        let at = record.domain.check_writable(buffer)?.address;
        let mut message = [0u8; REGISTER_MESSAGE];
        crate::abi::MessageHeader::new(first as u32, length).write_to(&mut message);
        for (index, chunk) in message[crate::abi::MessageHeader::SIZE..].chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&frame.register(1 + index).to_le_bytes());
        }
        self.machine.write(at, &message[..total]);
        if own_frame {
            // The frame is the caller's from here: it resumes below it,
            // after the gate's `svc #0`, so that a call made again is the
            // `CallBound` these registers say.
            context.sp = buffer.address as u64;
            context.pc = self.servers.bound_words_general;
            frame.set_context(&context);
            for (index, value) in
                [handle, buffer.address as u64, total as u64, buffer.address as u64, buffer.length as u64]
                    .into_iter()
                    .enumerate()
            {
                frame.set_register(index, value);
            }
            frame.set_register(8, crate::abi::Call::CallBound as u64);
        }
        // Otherwise the registers stay the words call's: made again (after
        // a sidetrack, a wait for an activation, a requeue), its `svc #1`
        // reads the words request again.
        let request = crate::domain::UserRange::new(buffer.address, total);
        self.call_port(caller, frame, port, request, buffer, None)
    }

    /// Bind `domain`'s name `name` (see [`Kernel::bind_call`]).
    pub fn bind(&mut self, domain: DomainId, name: u32) -> Result<usize, Error> {
        let port = self.right(domain, name)?.port;
        if !self.objects.port(port).is_some_and(|entry| entry.alive) {
            return Err(Error::PortDead);
        }
        let record = self.domain_mut(domain).ok_or(Error::BadAddress)?;
        let handle = record.handles.take_free(Binding { port, stale: false }).ok_or(Error::OverQuota)?;
        self.publish_handle(domain, handle);
        Ok(handle)
    }

    /// `Unbind`: x0 a handle number; `InvalidArgument` if it names none.
    pub fn unbind_call(&mut self, caller: Caller, frame: &mut M::Frame) -> KernelCall<M> {
        let handle = frame.argument(0);
        let record = self.domain_mut(caller.domain).ok_or(Error::BadAddress)?;
        if !record.handles.clear(handle) {
            return Err(Error::InvalidArgument);
        }
        self.publish_handle(caller.domain, handle);
        Ok(Next::Reply(0))
    }

    /// The port `domain`'s handle `handle` reaches, for a call through it:
    /// `InvalidArgument` for a number that names no binding, `StaleHandle`
    /// for one that no longer holds. The stale flag is the whole answer,
    /// as for the fast paths (which read it as a port number of 0): a
    /// right leaves a space only when its port dies, which marks every
    /// handle to it stale.
    pub fn bound_port(&self, domain: DomainId, handle: usize) -> Result<PortId, Error> {
        let record = self.domain(domain).ok_or(Error::BadAddress)?;
        let binding = record.handles.get(handle).ok_or(Error::InvalidArgument)?;
        if binding.stale {
            return Err(Error::StaleHandle);
        }
        debug_assert!(
            record.space.name_of(binding.port).is_some() && self.objects.port(binding.port).is_some_and(|p| p.alive),
            "a live handle whose right or port is gone: whatever removed it did not mark the handle stale"
        );
        Ok(binding.port)
    }

    /// Every handle, in every domain, to a port `stale` picks goes stale.
    pub fn stale_handles(&mut self, mut stale: impl FnMut(PortId) -> bool) {
        let mut changed = alloc::vec::Vec::new();
        for record in self.domains.iter_mut().filter(|record| record.alive) {
            for slot in record.handles.mark_stale(|binding| stale(binding.port)) {
                changed.push((record.domain.id, slot));
            }
        }
        if !changed.is_empty() {
            // (the fast paths' copy of the tables)
            self.domains_mut();
        }
        for (domain, slot) in changed {
            self.publish_handle(domain, slot);
        }
    }

    /// Every handle to a port `server` owns goes stale (it changed mode).
    pub fn stale_handles_to(&mut self, server: DomainId) {
        let owned = self.ports_owned_by(server);
        self.stale_handles(|port| owned.contains(&port));
    }

    /// The ports `server` holds the receive right of.
    pub(crate) fn ports_owned_by(&self, server: DomainId) -> alloc::vec::Vec<PortId> {
        self.objects
            .port_ids()
            .filter(|&port| self.objects.port(port).is_some_and(|entry| entry.owner == server))
            .collect()
    }

    /// Publish all of `domain`'s handles again (it changed mode: the path
    /// of each depends on the pair of modes).
    pub fn republish_handles(&mut self, domain: DomainId) {
        for handle in 0..HANDLES {
            if self.domain(domain).is_some_and(|record| record.handles.get(handle).is_some()) {
                self.publish_handle(domain, handle);
            }
        }
    }

    /// The path `domain`'s handle `handle` takes now.
    pub fn bound_path(&self, domain: DomainId, handle: usize) -> BoundPath {
        let Some(record) = self.domain(domain) else { return BoundPath::Stale };
        let Some(binding) = record.handles.get(handle).filter(|binding| !binding.stale) else {
            return BoundPath::Stale;
        };
        let server = self.objects.port(binding.port).and_then(|entry| self.domain(entry.owner));
        match (record.mode, server.map(|server| server.mode)) {
            (DomainMode::Protected, _) => BoundPath::Trap,
            (DomainMode::Merged, Some(DomainMode::Merged)) if self.merged_dispatch_only(binding.port) => {
                BoundPath::Merged
            }
            (DomainMode::Merged, _) => BoundPath::Direct,
        }
    }

    /// Whether every activation of `port` enters at the merged form of the
    /// gate's dispatch trampoline: the merged path calls the runtime's
    /// handlers directly, so it takes only such a port (`PoolAdd` of any
    /// other entry makes its handles stale: `pool_added`).
    fn merged_dispatch_only(&self, port: PortId) -> bool {
        let merged = self.servers.dispatch_entries[1];
        let owner = self.objects.port(port).and_then(|entry| self.domain(entry.owner));
        if !owner.is_some_and(|owner| owner.context_is_dispatch) {
            return false;
        }
        self.objects.activation_ids().filter_map(|id| self.objects.activation(id)).all(|activation| {
            activation.port != Some(port)
                || activation.entry == merged
                || self.objects.port(port).is_some_and(|entry| entry.sidetrack == Some(activation.id))
        })
    }

    /// Activations entering at `entry` were added to `port`'s pool: if not
    /// at the dispatch trampoline, the handles to it are republished (the
    /// merged path no longer takes it: they get the direct entry).
    pub fn pool_added(&mut self, port: PortId, entry: u64) {
        if !self.servers.dispatch_entries.contains(&entry) {
            self.republish_handles_to(|bound| bound == port);
        }
    }

    /// Republish the handles to `server`'s ports (what its context word
    /// names changed).
    pub fn republish_handles_to_domain(&mut self, server: DomainId) {
        let owned = self.ports_owned_by(server);
        self.republish_handles_to(|port| owned.contains(&port));
    }

    /// Republish every live handle to a port `to` picks.
    fn republish_handles_to(&mut self, mut to: impl FnMut(PortId) -> bool) {
        let mut bound = alloc::vec::Vec::new();
        for record in self.domains.iter().filter(|record| record.alive) {
            for slot in 0..HANDLES {
                if record.handles.get(slot).is_some_and(|binding| to(binding.port)) {
                    bound.push((record.domain.id, slot));
                }
            }
        }
        for (domain, slot) in bound {
            self.publish_handle(domain, slot);
        }
    }

    /// Write `domain`'s record for handle `handle` into its region (see the
    /// module's notes).
    fn publish_handle(&mut self, domain: DomainId, handle: usize) {
        let path = self.bound_path(domain, handle);
        let Some(record) = self.domain(domain) else { return };
        let port_record = record.handles.get(handle).map_or(0, |binding| self.objects.port_address(binding.port));
        let [memory, registers, words_only] = self.servers.bound_entries[path as usize];
        let words = [memory, registers, port_record as u64, words_only];
        let at = record.domain.region.start + REGION_HANDLES_OFFSET + handle as u64 * HANDLE_RECORD_BYTES;
        for (index, word) in words.into_iter().enumerate() {
            self.machine.write_word(at as usize + 8 * index, word, 8);
        }
    }
}
