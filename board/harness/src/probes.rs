//! Containment probes: EL0 domains that misbehave on purpose.
//!
//! Each probe does one thing a protected domain must not be able to get
//! away with. The containment scenarios run one, check that the kernel
//! reported and terminated it, and then run healthy domains to show that
//! the kernel and everyone else carried on. They live in the arch crate,
//! not under `servers/`, because misbehaving takes `unsafe` (and, for the
//! undefined instruction, assembly), which server crates forbid.
//!
//! The kernel passes each probe its target address as the upcall argument.
//!
//! One probe is no domain's misbehaviour but a stand-in for a kernel bug:
//! `probe.kernel-stack`, run merged (at EL1, part of the kernel domain),
//! runs its thread's kernel stack into the guard page below it, as a
//! runaway recursion in the kernel would ([`recurse`], which the
//! `kernel-stack-overflow` scenarios use on the boot stack too).

use tern_inks::gate;

tern_inks::domain!(KERNEL_READ, "probe.kernel-read", read_kernel_memory);
tern_inks::domain!(KERNEL_WRITE, "probe.kernel-write", write_kernel_memory);
tern_inks::domain!(OTHER_DOMAIN, "probe.other-domain", read_other_domain);
tern_inks::domain!(EXECUTE_DATA, "probe.exec-data", execute_data);
tern_inks::domain!(UNDEFINED, "probe.undefined", undefined_instruction);
tern_inks::domain!(BAD_POINTER, "probe.bad-pointer", pass_bad_pointers);
tern_inks::domain!(FLOOD, "probe.flood", flood);
tern_inks::domain!(CHURN, "probe.churn", churn);
tern_inks::domain!(KERNEL_STACK, "probe.kernel-stack", overflow_kernel_stack);

fn read_kernel_memory(address: usize) -> usize {
    // SAFETY: none — this is the point. The address is kernel data, mapped
    // EL1-only; the read must fault and the kernel must contain it.
    unsafe { core::ptr::read_volatile(address as *const usize) }
}

fn write_kernel_memory(address: usize) -> usize {
    // SAFETY: none — deliberately writes kernel data from EL0, which the
    // page tables must refuse.
    unsafe { core::ptr::write_volatile(address as *mut usize, 0xbad) };
    0
}

fn read_other_domain(address: usize) -> usize {
    // SAFETY: none — the address is another domain's region, absent from
    // this domain's view.
    unsafe { core::ptr::read_volatile(address as *const usize) }
}

fn execute_data(_: usize) -> usize {
    // `mov x0, #42; ret` written onto the stack, then called: the stack is
    // data (execute-never at EL0), so the fetch must fault.
    let code: [u32; 2] = [0xd280_0540, 0xd65f_03c0];
    let pointer = core::hint::black_box(code.as_ptr());
    // SAFETY: none — jumping into data is what this probe tests.
    let function: extern "C" fn() -> usize = unsafe { core::mem::transmute(pointer) };
    function()
}

fn undefined_instruction(_: usize) -> usize {
    // SAFETY: none — `udf` is permanently undefined and must trap.
    unsafe { core::arch::asm!("udf #0") };
    0
}

/// Hands the kernel pointers the caller does not own; every call must come
/// back with an error code, and the domain keeps running. Safe code: the
/// gate lets anyone *claim* any address. Returns how many calls were
/// refused as they should be.
fn pass_bad_pointers(kernel_address: usize) -> usize {
    let own_stack = core::hint::black_box(0u8);
    let own_region = (&own_stack as *const u8 as usize) & !(tern_core::board::DOMAIN_REGION as usize - 1);
    let neighbour = own_region + tern_core::board::DOMAIN_REGION as usize;
    let text = "shared read-only text";
    let mut refused = 0;
    let mut expect = |what: &str, result: Result<usize, tern_core::abi::Error>, wanted: tern_core::abi::Error| {
        let verdict = match result {
            Err(error) if error == wanted => {
                refused += 1;
                "refused as expected"
            }
            _ => "NOT REFUSED AS EXPECTED",
        };
        tern_inks::println!("[probe.bad-pointer] {what}: {result:?} ({verdict})");
    };
    use tern_core::abi::Error;
    expect("console_write(kernel data)", gate::console_write_raw(kernel_address, 16), Error::BadAddress);
    expect("console_write(another domain's slot)", gate::console_write_raw(neighbour, 16), Error::BadAddress);
    expect("console_write(wrapping range)", gate::console_write_raw(usize::MAX - 7, 64), Error::BadAddress);
    expect("version(into read-only text)", gate::version_raw(text.as_ptr() as usize, 64), Error::BadAddress);
    expect("version(into kernel data)", gate::version_raw(kernel_address, 64), Error::BadAddress);
    expect("console_write(64 KiB)", gate::console_write_raw(own_region, 0x10000), Error::InvalidArgument);
    expect("unknown call", gate::raw_call_number(0xffff, [0; 5]), Error::NoSuchCall);
    // Claims of nothing are checked too: an address the domain does not
    // own is refused whatever the length.
    expect("console_write(null, 0)", gate::console_write_raw(0, 0), Error::BadAddress);
    expect("console_write(kernel data, 0)", gate::console_write_raw(kernel_address, 0), Error::BadAddress);
    // A name wider than a name is no name (never truncated to one).
    let port = gate::port_create().unwrap_or(1) as usize;
    expect("call(name + 2^32)", gate::call_raw(port | 1 << 32, (own_region, 16), (own_region, 16)), Error::NoSuchPort);
    // Buffers at any alignment are copied byte for byte, never taken as
    // typed slices (a misaligned one used to panic the kernel).
    match gate::thread_create(misaligned_buffers, own_region, 5, 64 << 10).and_then(gate::thread_join) {
        Ok(0) => refused += 1,
        other => tern_inks::println!("[probe.bad-pointer] misaligned buffers: {other:?} (NOT AS EXPECTED)"),
    }
    refused
}

/// Asks the kernel for as many objects of each kind as it will make —
/// ports, pool activations, threads — until it refuses (`OverQuota`, or
/// `OutOfMemory` when the domain's own region runs out of room for
/// stacks first). Returns how many kinds were refused that way (3), and
/// prints how many of each it got. The kernel must stay up, and other
/// domains served.
fn flood(_: usize) -> usize {
    use tern_core::abi::Error;
    let refused = |result: &Result<usize, Error>| matches!(result, Err(Error::OverQuota | Error::OutOfMemory));
    let mut kinds = 0;
    let mut ports = alloc::vec::Vec::new();
    let last = loop {
        match gate::port_create() {
            Ok(port) if ports.len() < 10_000 => ports.push(port),
            other => break other.map(|port| port as usize),
        }
    };
    tern_inks::println!("[probe.flood] ports: {} made, then {last:?}", ports.len());
    kinds += usize::from(refused(&last));
    let mut threads = 0;
    let last = loop {
        match gate::thread_create(ends_at_once, 0, 0, 4096) {
            Ok(_) if threads < 10_000 => threads += 1,
            other => break other,
        }
    };
    tern_inks::println!("[probe.flood] threads: {threads} made, then {last:?}");
    kinds += usize::from(refused(&last));
    let (pool, mut activations) = (ports.first().copied().unwrap_or(0), 0);
    let last = loop {
        let added = gate::pool_add(pool, 1, gate::dispatch_trampoline(), tern_core::abi::POOL_STACK_MIN);
        match added {
            Ok(_) if activations < 10_000 => activations += 1,
            other => break other,
        }
    };
    tern_inks::println!("[probe.flood] pool activations: {activations} made, then {last:?}");
    kinds += usize::from(refused(&last));
    kinds
}

fn ends_at_once(_: usize) -> usize {
    0
}

/// On a thread of its own (whose activations the domain may name): the
/// calls that write arrays into the caller's memory, into buffers at odd
/// addresses. Returns 0 when each answered as it should.
fn misaligned_buffers(region: usize) -> usize {
    use tern_core::abi::Error;
    let mut wrong = 0;
    let mut check = |what: &str, ok: bool| {
        tern_inks::println!("[probe.bad-pointer] {what}: {}", if ok { "as expected" } else { "NOT AS EXPECTED" });
        wrong += usize::from(!ok);
    };
    let me = gate::activation_self().unwrap_or(0);
    let domain = gate::who_am_i();
    let mut words = [0u64; 16];
    let odd = words.as_mut_ptr() as usize + 1;
    let written = gate::raw_call(tern_core::abi::Call::ThreadInfo, me, odd, 64);
    check("thread_info(own activation, odd address)", matches!(written, Ok(2..=8)));
    let activations = gate::raw_call(tern_core::abi::Call::Activations, domain, odd + 1, 64);
    check("activations(own domain, odd address)", matches!(activations, Ok(1..)));
    let nothing = gate::raw_call(tern_core::abi::Call::Activations, domain, 0, 0);
    check("activations(own domain, null, 0)", nothing == Err(Error::BadAddress));
    let _ = region;
    core::hint::black_box(&words);
    wrong
}

/// One short life, for the reuse scenario: a port with a pool (as a
/// server makes), `threads` threads that end at once — the even ones
/// joined, the odd ones left for the kernel to forget when the domain is
/// gone — and a call to `echo` lending it a page (a name looked up, a
/// lend record, a right). Returns how many of these went wrong.
fn churn(threads: usize) -> usize {
    use tern_core::abi::MessageHeader;
    let mut wrong = 0;
    match gate::port_create() {
        Ok(port) => {
            let added = gate::pool_add(port, 2, gate::dispatch_trampoline(), tern_core::abi::POOL_STACK_MIN);
            wrong += usize::from(added != Ok(2));
        }
        Err(_) => wrong += 1,
    }
    for index in 0..threads {
        match gate::thread_create(ends_at_once, index, 5, 4096) {
            Ok(thread) if index % 2 == 0 => wrong += usize::from(gate::thread_join(thread) != Ok(0)),
            Ok(_) => {}
            Err(_) => wrong += 1,
        }
    }
    let Ok(echo) = tern_inks::service::lookup("echo") else { return wrong + 1 };
    let mut request = [0u8; MessageHeader::SIZE];
    MessageHeader::new(7, 0).write_to(&mut request);
    let mut reply = alloc::vec![0u8; 4096 + MessageHeader::SIZE];
    let lent: alloc::vec::Vec<u8> = (0..4096).map(|index| (index * 7) as u8).collect();
    match gate::call_lending(echo, &request, &mut reply, &lent) {
        Ok(length) if reply.get(MessageHeader::SIZE..length) == Some(&lent[..]) => {}
        _ => wrong += 1,
    }
    wrong
}

/// Recursion with a 1 KiB frame that never ends (its limit is out of
/// reach, but the compiler cannot know that): what runs a kernel stack
/// into its guard page in the `kernel-stack-overflow` scenarios.
#[inline(never)]
pub extern "C" fn recurse(depth: usize) -> usize {
    let mut frame = [0u8; 1024];
    frame[depth % 1024] = depth as u8;
    let frame = core::hint::black_box(&mut frame);
    if depth == core::hint::black_box(usize::MAX) {
        return 0;
    }
    recurse(depth + 1).wrapping_add(usize::from(frame[depth.wrapping_mul(7) % 1024]))
}

/// Run merged (EL1t, on the domain's stack): step onto the thread's
/// kernel stack (SP_EL1, what the kernel runs on for this thread) and
/// recurse there until the guard page below it stops the recursion. The
/// kernel must report a kernel stack overflow in this thread, in this
/// domain, and stop. Protected (at EL0), the first instruction is
/// refused as an undefined instruction, like any domain's fault.
fn overflow_kernel_stack(_: usize) -> usize {
    // SAFETY: none — overflowing a kernel stack is the point. Interrupts
    // are masked so that the overflow is the one exception; SP_EL1 is the
    // thread's 16-byte aligned kernel stack pointer, below everything its
    // upcall saved there; `recurse` never returns.
    unsafe {
        core::arch::asm!(
            "msr daifset, #3",
            "msr spsel, #1",
            "mov x0, xzr",
            "bl {recurse}",
            "udf #0",
            recurse = sym recurse,
            options(noreturn),
        )
    }
}

/// `probe.kernel-stack`'s entry, for a thread made in it.
pub fn overflow_kernel_stack_entry() -> usize {
    overflow_kernel_stack as fn(usize) -> usize as usize
}
