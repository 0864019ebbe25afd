//! Kernel calls: decode the trap frame, check the caller's claims, act,
//! and write the result back into the frame.
//!
//! One shape for every call (`tern_core::abi`): each handler is a safe
//! function from the caller's domain and arguments to
//! `Result<usize, Error>`; [`dispatch`] turns that into `x0`/`x1`. A pointer
//! argument is a [`UserRange`] claim until the domain's record says the
//! caller owns it; then, and only then, the kernel touches it — through the
//! caller's own view, which is installed while the call runs.

use crate::exception::{TrapAction, TrapFrame};
use crate::{domains, upcall};
use tern_core::abi::{CONSOLE_WRITE_MAX, Call, Error, encode_result};
use tern_core::domain::{DomainId, UserRange};

/// The kernel's version, as handed to domains by [`Call::Version`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Handle the `svc` in `frame`.
pub fn dispatch(frame: &mut TrapFrame) -> TrapAction {
    // SAFETY: called from the trap handler of the innermost upcall with
    // interrupts masked; no other reference to the record is live.
    let Some(record) = (unsafe { upcall::current() }) else {
        return TrapAction::RESUME;
    };
    let caller = record.domain;
    let arguments = [frame.x[0] as usize, frame.x[1] as usize, frame.x[2] as usize];
    let result = match Call::from_number(frame.x[8] as usize) {
        None => Err(Error::NoSuchCall),
        Some(Call::Exit) => {
            record.outcome = upcall::Outcome::Returned(arguments[0]);
            return TrapAction::end(arguments[0] as u64);
        }
        Some(Call::ConsoleWrite) => console_write(caller, UserRange::new(arguments[0], arguments[1])),
        Some(Call::WhoAmI) => Ok(caller.0 as usize),
        Some(Call::Version) => version(caller, UserRange::new(arguments[0], arguments[1])),
        Some(_) => Err(Error::NoSuchCall),
    };
    let (status, value) = encode_result(result);
    frame.x[0] = status as u64;
    frame.x[1] = value as u64;
    TrapAction::RESUME
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
