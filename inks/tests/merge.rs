//! The merge transition (`tern_inks::mode::set_mode`), run on the kernel
//! with the mock machine: what changes in every view, the TLB, the
//! activations and the gate's mode word, and `Busy` with nothing changed
//! while the domain is occupied.

use tern_core::abi::{Call, DomainMode, Error, Role};
use tern_core::board::{DOMAIN_REGION, REGION_MODE_OFFSET};
use tern_core::domain::{DomainId, DomainSpec, SharedImage};
use tern_core::frame::PhysRange;
use tern_core::kernel::{Kernel, Next};
use tern_core::machine::{Machine, RegionMapping};
use tern_core::mock::{MockFrame, MockMachine};

fn entry(_: usize) -> usize {
    0
}
static A: DomainSpec = DomainSpec { name: "a", entry, role: Role::Plain };
static B: DomainSpec = DomainSpec { name: "b", entry, role: Role::Plain };
static C: DomainSpec = DomainSpec { name: "c", entry, role: Role::Plain };

const ARENA: u64 = 0x6000_0000;
const IMAGE: PhysRange = PhysRange::new(0x1000, 0x7fff_ffff_ffff);

fn kernel() -> (Kernel<MockMachine>, DomainId, DomainId) {
    let arena = PhysRange::new(ARENA, ARENA + 4 * DOMAIN_REGION);
    let mut kernel =
        Kernel::new(MockMachine::default(), tern_inks::layer(), arena, SharedImage { read_only: IMAGE }, Vec::new());
    let a = kernel.create_domain(&A).unwrap();
    let b = kernel.create_domain(&B).unwrap();
    (kernel, a, b)
}

fn region(kernel: &Kernel<MockMachine>, id: DomainId) -> PhysRange {
    kernel.domain(id).unwrap().domain.region
}

fn view(kernel: &Kernel<MockMachine>, id: DomainId) -> u64 {
    kernel.domain(id).unwrap().domain.view
}

/// How `viewer`'s view maps `owner`'s region.
fn mapping(kernel: &Kernel<MockMachine>, viewer: u64, owner: DomainId) -> Option<RegionMapping> {
    kernel.machine.regions.get(&(viewer, region(kernel, owner).start)).copied()
}

fn mode_word(kernel: &Kernel<MockMachine>, id: DomainId) -> u64 {
    let bytes = kernel.machine.peek(region(kernel, id).start + REGION_MODE_OFFSET, 8);
    u64::from_le_bytes(bytes.try_into().unwrap())
}

#[test]
fn merging_maps_the_region_into_every_view_for_the_kernel_only_and_back() {
    let (mut kernel, a, b) = kernel();
    let kernel_view = kernel.machine.kernel_view();
    assert_eq!(mapping(&kernel, view(&kernel, a), a), Some(RegionMapping::Protected));
    assert_eq!(mapping(&kernel, kernel_view, a), None, "a protected region is in its own view only");
    assert_eq!(mapping(&kernel, view(&kernel, b), a), None);
    let flushes = kernel.machine.flushes;

    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    for viewer in [view(&kernel, a), view(&kernel, b), kernel_view] {
        assert_eq!(mapping(&kernel, viewer, a), Some(RegionMapping::Merged), "merged: in every view");
    }
    assert_eq!(mapping(&kernel, view(&kernel, b), b), Some(RegionMapping::Protected), "b untouched");
    assert_eq!(kernel.machine.flushes, flushes + 2, "break before make: flushed after the unmap and at the end");
    assert_eq!(mode_word(&kernel, a), DomainMode::Merged as u64, "the gate's mode word says merged");
    assert_eq!(kernel.domain(a).unwrap().mode, DomainMode::Merged);

    assert_eq!(kernel.set_mode(a, DomainMode::Protected), Ok(()));
    assert_eq!(mapping(&kernel, view(&kernel, a), a), Some(RegionMapping::Protected));
    assert_eq!(mapping(&kernel, kernel_view, a), None);
    assert_eq!(mapping(&kernel, view(&kernel, b), a), None);
    assert_eq!(mode_word(&kernel, a), DomainMode::Protected as u64);
    assert_eq!(kernel.domain(a).unwrap().mode, DomainMode::Protected);
}

#[test]
fn a_domain_with_an_occupied_activation_is_busy_and_nothing_changes() {
    let (mut kernel, a, b) = kernel();
    let stack = kernel.domain(a).unwrap().main_stack;
    let (activation, _) = kernel.enter_domain(a, stack, 0, 0).unwrap();
    let (regions, flushes) = (kernel.machine.regions.clone(), kernel.machine.flushes);
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Err(Error::Busy));
    assert_eq!(kernel.machine.regions, regions, "no view changed");
    assert_eq!(kernel.machine.flushes, flushes, "no TLB flush");
    assert_eq!(mode_word(&kernel, a), 0);
    assert_eq!(kernel.domain(a).unwrap().mode, DomainMode::Protected);
    assert_eq!(kernel.set_mode(b, DomainMode::Merged), Ok(()), "another domain is free to change");
    // Once the thread has left, the change goes through.
    kernel.leave_domain(activation);
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
}

#[test]
fn the_same_mode_changes_nothing_and_a_dead_domain_is_refused() {
    let (mut kernel, a, _) = kernel();
    let flushes = kernel.machine.flushes;
    assert_eq!(kernel.set_mode(a, DomainMode::Protected), Ok(()));
    assert_eq!(kernel.machine.flushes, flushes, "nothing to do");
    kernel.terminate_domain(a);
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Err(Error::InvalidArgument));
    assert_eq!(kernel.set_mode(DomainId(9), DomainMode::Merged), Err(Error::InvalidArgument));
}

#[test]
fn activations_take_the_merged_entry_state_and_dispatch_entry_and_back() {
    let (mut kernel, a, _) = kernel();
    let dispatch = kernel.servers.dispatch_entries;
    let pooled = kernel.new_activation(a, None, dispatch[0], 0x6040_0000, 0x1000);
    let other = kernel.new_activation(a, None, 0x2000, 0x6041_0000, 0x1000);
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    let merged_state = MockMachine::entry_state(DomainMode::Merged);
    let entry = |kernel: &Kernel<MockMachine>, id| kernel.objects.activation(id).map(|e| (e.entry, e.entry_pstate));
    assert_eq!(entry(&kernel, pooled), Some((dispatch[1], merged_state)), "the merged trampoline, at EL1");
    assert_eq!(entry(&kernel, other), Some((0x2000, merged_state)), "other entries stay");
    // Made while merged: the merged form from the start.
    let late = kernel.new_activation(a, None, dispatch[0], 0x6042_0000, 0x1000);
    assert_eq!(entry(&kernel, late), Some((dispatch[1], merged_state)));
    assert_eq!(kernel.set_mode(a, DomainMode::Protected), Ok(()));
    let protected_state = MockMachine::entry_state(DomainMode::Protected);
    assert_eq!(entry(&kernel, pooled), Some((dispatch[0], protected_state)));
    assert_eq!(entry(&kernel, late), Some((dispatch[0], protected_state)));
}

#[test]
fn only_the_kernel_domain_may_ask_for_a_mode_change() {
    let (mut kernel, a, b) = kernel();
    let stack = kernel.domain(a).unwrap().main_stack;
    let (activation, _) = kernel.enter_domain(a, stack, 0, 0).unwrap();
    let mut frame = MockFrame::calling(Call::DomainMode, &[b.0 as u64, DomainMode::Merged as u64], 0x9000);
    assert_eq!(kernel.kernel_call(&mut frame), Next::Resume);
    assert_eq!(frame.result(), Err(Error::NoRight), "a protected domain may not");
    assert_eq!(kernel.domain(b).unwrap().mode, DomainMode::Protected);
    kernel.leave_domain(activation);
    // A merged domain is part of the kernel domain: it may.
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    let (activation, _) = kernel.enter_domain(a, stack, 0, 0).unwrap();
    let mut frame = MockFrame::calling(Call::DomainMode, &[b.0 as u64, DomainMode::Merged as u64], 0x9000);
    assert_eq!(kernel.kernel_call(&mut frame), Next::Resume);
    assert_eq!(frame.result(), Ok(0));
    assert_eq!(kernel.domain(b).unwrap().mode, DomainMode::Merged);
    let mut frame = MockFrame::calling(Call::DomainMode, &[b.0 as u64, 7], 0x9000);
    kernel.kernel_call(&mut frame);
    assert_eq!(frame.result(), Err(Error::InvalidArgument), "no mode 7");
    kernel.leave_domain(activation);
}

#[test]
fn a_reclaimed_slot_has_no_view_to_map_a_merged_region_into() {
    let (mut kernel, a, b) = kernel();
    let dropped = view(&kernel, b);
    kernel.terminate_domain(b);
    assert_eq!(kernel.reclaim_dead_domains(), 1, "b's slot is reclaimed: its view dropped");
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    let touched: Vec<u64> = kernel.machine.regions.keys().map(|&(viewer, _)| viewer).collect();
    assert!(!touched.contains(&0), "no table at 0 (on the machine: a fault at EL1)");
    assert!(!touched.contains(&dropped), "nothing mapped into a dropped view");
    assert_eq!(kernel.set_mode(a, DomainMode::Protected), Ok(()));
    // A dead slot not yet reclaimed keeps its view, which does get the
    // merged region (a thread unwinding out of it may run merged code).
    let (c, d) = (kernel.create_domain(&B).unwrap(), kernel.create_domain(&C).unwrap());
    kernel.terminate_domain(d);
    assert_eq!(kernel.set_mode(c, DomainMode::Merged), Ok(()));
    assert_eq!(mapping(&kernel, view(&kernel, d), c), Some(RegionMapping::Merged));
}

/// The first word of `domain`'s published record for bound handle `handle`.
fn bound_entry(kernel: &Kernel<MockMachine>, domain: DomainId, handle: usize) -> u64 {
    let at = region(kernel, domain).start
        + tern_core::board::REGION_HANDLES_OFFSET
        + handle as u64 * tern_core::board::HANDLE_RECORD_BYTES;
    u64::from_le_bytes(kernel.machine.peek(at, 8).try_into().unwrap())
}

#[test]
fn a_server_flip_makes_bound_handles_stale_and_a_client_flip_rewrites_their_path() {
    let (mut kernel, a, b) = kernel();
    let port = kernel.objects.new_port(b);
    let server_name =
        kernel.domain_mut(b).unwrap().space.insert(tern_core::capability::Capability { port, receive: true });
    let name = kernel.grant_send_right(b, server_name, a).unwrap();
    let [stale, trap, direct, merged] = tern_inks::bound::entries().map(|[memory, _, _]| memory);
    // (as `serve` declares the runtime's dispatch record)
    kernel.domain_mut(b).unwrap().context_is_dispatch = true;
    let handle = kernel.bind(a, name).unwrap();
    assert_eq!(bound_entry(&kernel, a, handle), trap);

    // The server merges: the handle is stale; a new binding traps (the
    // client is still protected).
    assert_eq!(kernel.set_mode(b, DomainMode::Merged), Ok(()));
    assert_eq!(bound_entry(&kernel, a, handle), stale);
    assert_eq!(kernel.bound_port(a, handle), Err(Error::StaleHandle));
    let again = kernel.bind(a, name).unwrap();
    assert_eq!(bound_entry(&kernel, a, again), trap);

    // The client merges: its live handle is rewritten to the merged path,
    // the stale one stays stale; and back.
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    assert_eq!(bound_entry(&kernel, a, again), merged);
    assert_eq!(bound_entry(&kernel, a, handle), stale);
    assert_eq!(kernel.bound_port(a, again), Ok(port));
    assert_eq!(kernel.set_mode(a, DomainMode::Protected), Ok(()));
    assert_eq!(bound_entry(&kernel, a, again), trap);
    // A protected server and a merged client: the direct entry.
    assert_eq!(kernel.set_mode(b, DomainMode::Protected), Ok(()));
    let third = kernel.bind(a, name).unwrap();
    assert_eq!(kernel.set_mode(a, DomainMode::Merged), Ok(()));
    assert_eq!(bound_entry(&kernel, a, third), direct);
}
