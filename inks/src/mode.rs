//! A domain's mode, and moving a domain between modes: the merge.
//!
//! The same server code runs either way (it calls the kernel only through
//! [`crate::gate`]); the kernel keeps each domain's mode in its record
//! ([`DomainMode`] is part of the kernel-call ABI, so it is defined in
//! `tern-core` and re-exported here), and this module carries out the
//! change, at boot (`tern.merge=NAME,...`) or at run time (the
//! `DomainMode` kernel call, which reaches [`set_mode`] through the layer
//! the kernel was given, [`crate::layer`]).
//!
//! Merging domain D makes its region the kernel's only and global, and
//! puts it into every view — the kernel's and every other domain's — at
//! the same addresses, so every pointer its code holds stays valid; from
//! then on upcalls into it enter at the kernel's level, through the merged
//! form of the gate's dispatch trampoline, and the gate's mode word (the
//! first word of its region) tells its code to enter the kernel by a
//! direct branch. Unmerging takes the region out of the other views and
//! gives the domain its own mapping back. The domain's own view is
//! unmapped first, the TLBs flushed, then remapped (break-before-make: its
//! entries change from non-global to global or back).
//!
//! `Busy` (nothing changed) while any of its activations is occupied: a
//! thread running or parked in it, or in a call it made. A call into it
//! that starts after the change sees the new mode.

use alloc::vec::Vec;
use tern_core::abi::Error;
use tern_core::board::REGION_MODE_OFFSET;
use tern_core::domain::DomainId;
use tern_core::kernel::Kernel;
use tern_core::machine::{Machine, RegionMapping};

pub use tern_core::abi::DomainMode;

/// Move domain `id` into `mode` (see the module's notes).
pub fn set_mode<M: Machine>(kernel: &mut Kernel<M>, id: DomainId, mode: DomainMode) -> Result<(), Error> {
    let record = kernel.domain(id).filter(|record| record.alive).ok_or(Error::InvalidArgument)?;
    if record.mode == mode {
        return Ok(());
    }
    if kernel.objects.domain_occupied(id) {
        return Err(Error::Busy);
    }
    let (own, region) = (record.domain.view, record.domain.region);
    // Every other view: the kernel's and each domain's, dead ones' too
    // (a thread still unwinding out of a dead domain may run merged code
    // in its view) — but not a reclaimed slot's, which has none (0).
    let others: Vec<u64> = core::iter::once(kernel.machine.kernel_view())
        .chain(
            kernel
                .domains
                .iter()
                .filter(|other| other.domain.id != id && other.domain.view != 0)
                .map(|other| other.domain.view),
        )
        .collect();
    let (own_mapping, others_mapping) = match mode {
        DomainMode::Merged => (RegionMapping::Merged, Some(RegionMapping::Merged)),
        DomainMode::Protected => (RegionMapping::Protected, None),
    };
    // The region is an aligned slot of the arena: every view accepts it;
    // a refusal would be a kernel bug, reported rather than half-done.
    kernel.machine.map_region(own, region, None)?;
    kernel.machine.flush_translations();
    for &view in &others {
        kernel.machine.map_region(view, region, others_mapping)?;
    }
    kernel.machine.map_region(own, region, Some(own_mapping))?;
    kernel.machine.flush_translations();
    let own_view = kernel.view_of(id);
    let layer = &kernel.servers;
    for activation in kernel.objects.activations_of(id) {
        activation.entry_pstate = M::entry_state(mode);
        activation.entry = layer.entry_for_mode(activation.entry, mode);
        activation.register_entry = layer.register_entry(activation.entry);
        // A merged activation runs in whichever view its caller ran in
        // (each call records it); back in protected mode, its own.
        activation.view = own_view;
    }
    kernel.machine.write((region.start + REGION_MODE_OFFSET) as usize, &(mode as u64).to_le_bytes());
    if let Some(record) = kernel.domain_mut(id) {
        record.mode = mode;
    }
    Ok(())
}
