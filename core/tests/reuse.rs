//! Reuse: a terminated domain's slot (number, ASID, region), its name, and
//! everything it held come back once nothing is left of it.

mod support;

use support::{DOMAINS, STACK, System};
use tern_core::abi::{Call, DomainMode, Role};
use tern_core::domain::{DomainId, DomainSpec};
use tern_core::domains::DomainError;
use tern_core::kernel::Next;
use tern_core::machine::RegionMapping;

fn entry(_: usize) -> usize {
    0
}

static A: DomainSpec = DomainSpec { name: "a", entry, role: Role::Plain };
static B: DomainSpec = DomainSpec { name: "b", entry, role: Role::Plain };

/// What the kernel holds, to compare before and after.
fn held(system: &System) -> (usize, usize, usize, usize) {
    let objects = &system.kernel.objects;
    (
        objects.thread_ids().count(),
        objects.activation_ids().count(),
        objects.port_ids().count(),
        system.kernel.domains.len(),
    )
}

#[test]
fn a_terminated_domains_name_slot_and_asid_are_taken_by_the_next_domain() {
    let mut system = System::new();
    let first = system.kernel.create_domain(&A).unwrap();
    let (view, region) = (system.view(first), system.region(first));
    let before = held(&system);
    // It makes a port with a pool, and a thread that ends unjoined.
    let main = system.enter(first);
    let name = system.ok(Call::PortCreate, &[]).unwrap();
    assert_eq!(system.ok(Call::PoolAdd, &[name as u64, 2, 0x9_0000, STACK]), Ok(2));
    let worker = system.ok(Call::ThreadCreate, &[support::THREAD_ENTRY as u64, 0, 4, 64 << 10]).unwrap();
    let worker = tern_core::thread::ThreadId::new(worker as u32).unwrap();
    system.leave(main);
    system.switch_to(worker);
    system.kernel.end_current_thread(0);
    system.switch_to(system.boot);
    assert_eq!(system.kernel.create_domain(&A), Err(DomainError::NameTaken), "while it lives");

    system.kernel.terminate_domain(first);
    let flushes = system.kernel.machine.asid_flushes;
    let again = system.kernel.create_domain(&A).expect("the name is free again");
    assert_eq!(again, first, "the same slot, so the same ASID");
    assert_eq!(system.region(again), region);
    assert_eq!(system.kernel.machine.dropped_views, [view], "the old view's tables given back");
    assert_eq!(system.kernel.machine.asid_flushes, flushes + 1, "its ASID's TLB entries dropped before reuse");
    assert_eq!(held(&system), before, "no thread, activation, port or slot left of the first");
    assert!(system.kernel.domain(again).unwrap().alive);
    assert_eq!(system.kernel.find_domain("a"), Some(again));
}

#[test]
fn a_slot_is_not_reused_while_a_thread_is_still_in_a_call_the_dead_domain_made() {
    let mut system = System::new();
    let a = system.kernel.create_domain(&A).unwrap();
    let b = system.server("server", 1, STACK);
    let name = system.grant(&b, a);
    let thread = system.thread(a, 5);
    system.switch_to(thread);
    let (request, reply) = (system.region(a) + 0x1000, system.region(a) + 0x2000);
    let length = system.message(request, 1, &[1; 8]);
    assert_eq!(system.call(name, (request, length), (reply, 64)), Next::Resume);
    // The thread is in the server when its own domain dies under it.
    system.kernel.terminate_domain(a);
    let other = system.kernel.create_domain(&B).unwrap();
    assert_ne!(other, a, "the dead domain's activation is still on the thread");
    // The server replies: the thread unwinds out of the dead domain.
    assert!(system.kernel.domain(a).is_some_and(|record| !record.alive));
    let answer = system.region(b.domain) + 0x1000;
    let length = system.message(answer, 2, &[]);
    assert_eq!(system.invoke(Call::Return, &[answer, length]), Next::Resume);
    // Back on the dead domain's activation, about to unwind out of it.
    let second = system.kernel.create_domain(&A).expect("the name is free");
    assert_ne!(second, a, "its activation is still on the thread");
    assert_eq!(system.way_back(false), tern_core::control::WayBack::End, "it unwinds");
    system.kernel.end_current_thread(0);
    system.switch_to(system.boot);
    system.kernel.terminate_domain(second);
    let third = system.kernel.create_domain(&A).expect("a free slot");
    assert_eq!(third, a, "nothing is left of the first dead domain once the thread is out of it");
}

#[test]
fn a_full_arena_of_dead_domains_is_created_again_and_again_with_nothing_kept() {
    let mut system = System::new();
    let specs: Vec<&'static DomainSpec> = (0..DOMAINS)
        .map(|index| {
            let name: &'static str = Box::leak(format!("d{index}").into_boxed_str());
            &*Box::leak(Box::new(DomainSpec { name, entry, role: Role::Plain }))
        })
        .collect();
    let mut first_round = None;
    for round in 0..50 {
        let ids: Vec<DomainId> = specs.iter().map(|spec| system.kernel.create_domain(spec).unwrap()).collect();
        assert_eq!(system.kernel.create_domain(&A), Err(DomainError::ArenaFull), "round {round}");
        for &id in &ids {
            let main = system.enter(id);
            system.ok(Call::PortCreate, &[]).unwrap();
            system.leave(main);
            system.kernel.terminate_domain(id);
        }
        let now = held(&system);
        assert_eq!(*first_round.get_or_insert(now), now, "round {round} keeps what the first kept, no more");
    }
    assert_eq!(system.kernel.domains.len(), DOMAINS as usize);
}

#[test]
fn a_domain_that_died_merged_leaves_no_view_mapping_its_region_once_reused() {
    let mut system = System::new();
    let a = system.kernel.create_domain(&A).unwrap();
    let b = system.kernel.create_domain(&B).unwrap();
    let region = system.region(a);
    // Merged as the in-kernel-server layer would leave it: its region in
    // every view.
    system.kernel.domain_mut(a).unwrap().mode = DomainMode::Merged;
    let views = [tern_core::mock::MockMachine::KERNEL_VIEW, system.view(a), system.view(b)];
    for view in views {
        system.kernel.machine.regions.insert((view, region), RegionMapping::Merged);
    }
    system.kernel.terminate_domain(a);
    let again = system.kernel.create_domain(&A).unwrap();
    assert_eq!(again, a);
    for view in [views[0], views[2]] {
        assert_eq!(system.kernel.machine.regions.get(&(view, region)), None, "unmapped from view {view:#x}");
    }
    assert_eq!(
        system.kernel.machine.regions.get(&(system.view(again), region)),
        Some(&RegionMapping::Protected),
        "the new tenant's own"
    );
    assert_eq!(system.kernel.mode_of(again), DomainMode::Protected);
}

/// A reclaimed slot keeps nothing of its dead domain on the kernel heap
/// (before, its names and restart times stayed until the slot was reused,
/// so the heap did not come back once a domain was gone; found by the
/// stress), and a name service made later gives dead domains no name.
#[test]
fn a_reclaimed_slot_keeps_nothing_of_its_domain() {
    static NAMES: DomainSpec = DomainSpec { name: "names", entry, role: Role::NameService };
    let mut system = System::new();
    let a = system.kernel.create_domain(&A).unwrap();
    let b = system.kernel.create_domain(&B).unwrap();
    let main = system.enter(a);
    for _ in 0..5 {
        system.ok(Call::PortCreate, &[]).unwrap();
    }
    system.leave(main);
    let policy = tern_core::abi::RestartPolicy::Always { limit: 0, window: 0 };
    system.kernel.set_restart_policy(b, policy).unwrap();
    system.kernel.terminate_domain(b);
    let restarted = system.kernel.find_domain("b").expect("b restarted");
    assert_eq!(system.kernel.domain(restarted).unwrap().restarts.len(), 1);
    system.kernel.set_restart_policy(restarted, tern_core::abi::RestartPolicy::Never).unwrap();
    system.kernel.terminate_domain(restarted);
    system.kernel.terminate_domain(a);
    system.kernel.reclaim_dead_domains();
    for dead in [a, restarted] {
        let record = system.kernel.domain(dead).unwrap();
        assert!(!record.alive && record.domain.view == 0, "reclaimed");
        assert!(record.space.port_words().is_empty() && record.space.is_empty(), "no names kept");
        assert!(record.restarts.is_empty() && record.adopt.is_empty());
    }
    // A name service now: the living get its name, the dead nothing.
    let c = system.kernel.create_domain(&NAMES).unwrap();
    let main = system.enter(c);
    system.ok(Call::PortCreate, &[]).unwrap();
    system.leave(main);
    let dead = system.kernel.domains.iter().filter(|record| !record.alive);
    assert_eq!(dead.clone().count(), 1, "(the name service took the other slot)");
    assert!(dead.map(|record| record.space.port_words().len()).all(|words| words == 0));
}

#[test]
fn no_thread_is_made_in_a_terminated_domain() {
    let mut system = System::new();
    let domain = system.kernel.create_domain(&A).unwrap();
    let threads = system.kernel.objects.thread_ids().count();
    system.kernel.terminate_domain(domain);
    assert_eq!(system.kernel.create_thread(domain, support::THREAD_ENTRY, 0, 4, STACK), None);
    assert_eq!(system.kernel.objects.thread_ids().count(), threads, "nothing made, nothing half-made");
}
