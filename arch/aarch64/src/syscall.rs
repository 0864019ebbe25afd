//! Kernel calls: decode the trap frame, check the caller's claims, act,
//! and write the result back into the frame.
//!
//! One shape for every call (`tern_core::abi`): each handler is a function
//! from the caller (the current thread's top activation and its domain)
//! and its arguments to `Result<usize, Error>`; [`dispatch`] turns that
//! into `x0`/`x1`. A pointer argument is a [`UserRange`] claim until the
//! domain's record says the caller owns it. The RPC calls live in
//! [`crate::rpc`]; they may rewrite the frame (a migration) or block.

use crate::exception::{TrapAction, TrapFrame};
use crate::rpc::{self, Completion};
use crate::state::{self, Kernel};
use crate::{control, domains, threads, upcall};
use tern_core::abi::{CONSOLE_WRITE_MAX, Call, Error, encode_result};
use tern_core::capability::Capability;
use tern_core::domain::{DomainId, UserRange};
use tern_core::thread::{Activation, ThreadId};
use tern_inks::mode::DomainMode;

/// The kernel's version, as handed to domains by [`Call::Version`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Handle the `svc` in `frame`.
pub fn dispatch(frame: &mut TrapFrame) -> TrapAction {
    // The RPC calls take the kernel state once, for everything.
    let rpc = match Call::from_number(frame.x[8] as usize) {
        Some(Call::Call | Call::CallLending) => Some(rpc::call(frame)),
        Some(Call::ReplyReceive) => Some(rpc::reply_receive(frame)),
        _ => None,
    };
    if let Some(completion) = rpc {
        if let Completion::Reply(result) = completion {
            let (status, value) = encode_result(result);
            frame.x[0] = status as u64;
            frame.x[1] = value as u64;
        }
        return TrapAction::RESUME;
    }
    let caller = state::with(|kernel| {
        rpc::register_frame(kernel, frame);
        kernel.current_domain()
    });
    let Some(caller) = caller else {
        return TrapAction::RESUME;
    };
    let arguments = [frame.x[0] as usize, frame.x[1] as usize, frame.x[2] as usize, frame.x[3] as usize];
    let completion = match Call::from_number(frame.x[8] as usize) {
        None => Completion::Reply(Err(Error::NoSuchCall)),
        Some(Call::Exit) => return exit(frame, arguments[0]),
        Some(Call::ConsoleWrite) => {
            Completion::Reply(console_write(caller, UserRange::new(arguments[0], arguments[1])))
        }
        Some(Call::WhoAmI) => Completion::Reply(Ok(caller.0 as usize)),
        Some(Call::Version) => Completion::Reply(version(caller, UserRange::new(arguments[0], arguments[1]))),
        Some(Call::Call | Call::CallLending) => rpc::call(frame),
        Some(Call::Return) => rpc::return_from_call(frame),
        Some(Call::Receive) => rpc::receive(frame),
        Some(Call::ReplyReceive) => rpc::reply_receive(frame),
        Some(Call::PortCreate) => Completion::Reply(state::with(|kernel| port_create(kernel, caller))),
        Some(Call::PoolAdd) => Completion::Reply(state::with(|kernel| {
            pool_add(kernel, caller, arguments[0] as u32, arguments[1], arguments[2] as u64, arguments[3] as u64)
        })),
        Some(Call::SidetrackSet) => Completion::Reply(state::with(|kernel| {
            sidetrack_set(kernel, caller, arguments[0] as u32, arguments[1] as u64, arguments[2] as u64)
        })),
        Some(Call::DomainMode) => Completion::Reply(state::with(|kernel| domain_mode(kernel, caller, &arguments))),
        Some(Call::ContextSet) => Completion::Reply(state::with(|kernel| {
            let record = kernel.domain_mut(caller).ok_or(Error::BadAddress)?;
            record.context = arguments[0];
            for activation in kernel.objects.activations_of(caller) {
                activation.context = arguments[0] as u64;
            }
            Ok(0)
        })),
        Some(Call::ThreadCreate) => Completion::Reply(state::with(|kernel| {
            thread_create(kernel, caller, arguments[0], arguments[1], arguments[2], arguments[3] as u64)
        })),
        Some(Call::ThreadJoin) => Completion::Reply(thread_join(caller, arguments[0])),
        Some(Call::Null) => Completion::Reply(Ok(0)),
        Some(call @ (Call::GetState | Call::SetState)) => Completion::Reply(control::state(
            caller,
            arguments[0],
            UserRange::new(arguments[1], arguments[2]),
            call == Call::SetState,
        )),
        Some(Call::Sleep) => Completion::Reply(control::sleep(arguments[0])),
        Some(Call::AlertHandler) => {
            Completion::Reply(state::with(|kernel| control::alert_handler(kernel, arguments[0])))
        }
        Some(Call::AlertDone) => match control::alert_done(frame) {
            Ok(()) => Completion::FrameSet,
            Err(error) => Completion::Reply(Err(error)),
        },
        Some(call @ (Call::ActivationSelf | Call::Alert | Call::AlertBreak | Call::AlertsBlock | Call::TestAlert)) => {
            Completion::Reply(state::with(|kernel| match call {
                Call::ActivationSelf => control::activation_self(kernel),
                Call::Alert => control::alert(kernel, caller, arguments[0]),
                Call::AlertBreak => control::alert_break(kernel, caller, arguments[0]),
                Call::AlertsBlock => control::alerts_block(kernel, arguments[0]),
                _ => control::test_alert(kernel),
            }))
        }
        Some(
            call @ (Call::Suspend
            | Call::Resume
            | Call::Terminate
            | Call::SpliceOut
            | Call::SetPriority
            | Call::ThreadInfo
            | Call::ForbidAbove
            | Call::DomainControl
            | Call::Activations),
        ) => Completion::Reply(state::with(|kernel| {
            let [first, second, third, _] = arguments;
            match call {
                Call::Suspend => control::suspend(kernel, caller, first, true),
                Call::Resume => control::suspend(kernel, caller, first, false),
                Call::Terminate => control::terminate(kernel, caller, first),
                Call::SpliceOut => control::splice_out(kernel, caller, first),
                Call::SetPriority => control::set_priority(kernel, caller, first, second),
                Call::ThreadInfo => control::thread_info(kernel, caller, first, UserRange::new(second, third)),
                Call::ForbidAbove => control::forbid_above(kernel, caller, first),
                Call::DomainControl => control::domain_control_call(kernel, caller, first, second),
                _ => control::activations(kernel, caller, first, UserRange::new(second, third)),
            }
        })),
        Some(Call::Yield) => {
            threads::yield_now();
            Completion::Reply(Ok(0))
        }
    };
    if let Completion::Reply(result) = completion {
        let (status, value) = encode_result(result);
        frame.x[0] = status as u64;
        frame.x[1] = value as u64;
    }
    TrapAction::RESUME
}

/// `Exit`: ends the upcall that entered the caller's activation; only a
/// thread's own activation (not a server activation) may do that.
fn exit(frame: &mut TrapFrame, value: usize) -> TrapAction {
    let is_base = state::with(|kernel| {
        let current = kernel.current;
        let top = kernel.objects.thread(current).and_then(|thread| thread.top);
        top.and_then(|top| kernel.objects.activation(top)).is_some_and(|activation| activation.port.is_none())
    });
    // SAFETY: the trap handler of the innermost upcall of the current
    // thread, with interrupts masked; nothing else holds the record.
    match (is_base, unsafe { upcall::current() }) {
        (true, Some(record)) => {
            record.outcome = upcall::Outcome::Returned(value);
            TrapAction::end(value as u64)
        }
        _ => {
            let (status, value) = encode_result(Err(Error::NotInCall));
            frame.x[0] = status as u64;
            frame.x[1] = value as u64;
            TrapAction::RESUME
        }
    }
}

fn console_write(caller: DomainId, claim: UserRange) -> Result<usize, Error> {
    let image = domains::shared_image();
    let checked =
        domains::with(caller, |record| record.domain.check_readable(&image, claim)).ok_or(Error::BadAddress)??;
    if checked.length > CONSOLE_WRITE_MAX {
        return Err(Error::InvalidArgument);
    }
    // SAFETY: the range was checked to lie in the caller's region or the
    // shared read-only image, both mapped in the caller's view, which is
    // installed; nothing writes it while the caller is in the kernel.
    let bytes = unsafe { core::slice::from_raw_parts(checked.address as *const u8, checked.length) };
    let text = core::str::from_utf8(bytes).map_err(|_| Error::NotUtf8)?;
    crate::console::CONSOLE.lock().write_text(text);
    Ok(text.len())
}

fn version(caller: DomainId, claim: UserRange) -> Result<usize, Error> {
    if claim.length < VERSION.len() {
        return Err(Error::InvalidArgument);
    }
    let checked =
        domains::with(caller, |record| record.domain.check_writable(UserRange::new(claim.address, VERSION.len())))
            .ok_or(Error::BadAddress)??;
    // SAFETY: the range lies in the caller's own region, mapped read-write
    // in its view, which is installed.
    let buffer = unsafe { core::slice::from_raw_parts_mut(checked.address as *mut u8, checked.length) };
    buffer.copy_from_slice(VERSION.as_bytes());
    Ok(VERSION.len())
}

fn port_create(kernel: &mut Kernel, caller: DomainId) -> Result<usize, Error> {
    let is_names = kernel.domain(caller).ok_or(Error::BadAddress)?.domain.name == "names";
    let port = kernel.objects.new_port(caller);
    let record = kernel.domain_mut(caller).ok_or(Error::BadAddress)?;
    let name = record.space.insert(Capability { port, receive: true });
    if is_names && kernel.name_service.is_none() {
        // The first port of the `names` domain is the name service: every
        // domain, now and later, gets a send right to it at name 0.
        kernel.name_service = Some(port);
        kernel.domains_dirty = true;
        for record in kernel.domains.iter_mut() {
            if record.domain.id != caller {
                record.space.install(tern_core::capability::NAME_SERVICE_NAME, Capability { port, receive: false });
            }
        }
    }
    Ok(name as usize)
}

/// Stack sizes a domain may ask for.
const STACK_SIZES: core::ops::RangeInclusive<u64> = 4096..=(4 << 20);

/// Largest pool growth in one call.
const POOL_ADD_MAX: usize = 64;

fn pool_add(
    kernel: &mut Kernel,
    caller: DomainId,
    name: u32,
    count: usize,
    entry: u64,
    stack: u64,
) -> Result<usize, Error> {
    let port = kernel.receive_right(caller, name)?;
    if !(1..=POOL_ADD_MAX).contains(&count) || !STACK_SIZES.contains(&stack) {
        return Err(Error::InvalidArgument);
    }
    let image = kernel.image;
    if !image.read_only.contains(entry) {
        return Err(Error::BadAddress);
    }
    for _ in 0..count {
        let top = domains::carve_stack(kernel, caller, stack).ok_or(Error::OutOfMemory)?;
        let activation = kernel.new_activation(caller, Some(port), entry, top, stack);
        kernel.objects.pool_add(port, activation);
    }
    while let Some(waiter) = kernel.objects.port_mut(port).and_then(|entry| entry.next_waiter()) {
        threads::wake(kernel, waiter);
    }
    Ok(kernel.objects.pool_free(port))
}

fn sidetrack_set(kernel: &mut Kernel, caller: DomainId, name: u32, entry: u64, stack: u64) -> Result<usize, Error> {
    let port = kernel.receive_right(caller, name)?;
    if !STACK_SIZES.contains(&stack) {
        return Err(Error::InvalidArgument);
    }
    if !kernel.image.read_only.contains(entry) {
        return Err(Error::BadAddress);
    }
    let top = domains::carve_stack(kernel, caller, stack).ok_or(Error::OutOfMemory)?;
    let activation = kernel.new_activation(caller, Some(port), entry, top, stack);
    if let Some(entry) = kernel.objects.activation_mut(activation) {
        entry.flags |= Activation::SIDETRACK | Activation::GENERAL_RETURN;
    }
    if let Some(entry) = kernel.objects.port_mut(port) {
        entry.sidetrack = Some(activation);
    }
    Ok(0)
}

fn thread_create(
    kernel: &mut Kernel,
    caller: DomainId,
    entry: usize,
    argument: usize,
    priority: usize,
    stack: u64,
) -> Result<usize, Error> {
    if priority > 31 || !STACK_SIZES.contains(&stack) {
        return Err(Error::InvalidArgument);
    }
    if !kernel.image.read_only.contains(entry as u64) {
        return Err(Error::BadAddress);
    }
    threads::create(kernel, caller, entry, argument, priority as u8, stack)
        .map(|thread| thread.get() as usize)
        .ok_or(Error::OutOfMemory)
}

fn thread_join(caller: DomainId, thread: usize) -> Result<usize, Error> {
    let thread = u32::try_from(thread).ok().and_then(ThreadId::new).ok_or(Error::InvalidArgument)?;
    let allowed = state::with(|kernel| {
        kernel.current != thread && kernel.objects.thread(thread).is_some_and(|entry| entry.creator == caller)
    });
    if !allowed {
        return Err(Error::InvalidArgument);
    }
    threads::join(thread)
}

/// `DomainMode`: only the kernel domain (a merged caller) may move a domain
/// between modes.
fn domain_mode(kernel: &mut Kernel, caller: DomainId, arguments: &[usize; 4]) -> Result<usize, Error> {
    if kernel.domain(caller).is_none_or(|record| record.mode != DomainMode::Merged) {
        return Err(Error::NoRight);
    }
    let mode = DomainMode::from_code(arguments[1]).ok_or(Error::InvalidArgument)?;
    let target = u16::try_from(arguments[0]).map(DomainId).map_err(|_| Error::InvalidArgument)?;
    domains::set_mode(kernel, target, mode).map(|()| 0)
}
