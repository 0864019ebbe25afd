//! The kernel-call interface: numbers, registers and error codes.
//!
//! One shape for every kernel call, shared by the kernel (which decodes it
//! in the `svc` handler) and by the service gate in `tern-inks` (which
//! encodes it for domains):
//!
//! - `x8` holds the call number ([`Call`]), `x0`–`x5` the arguments;
//! - on return `x0` is `0` for success or an [`Error`] code, and `x1` the
//!   value of a successful call.
//!
//! The kernel restores every general-purpose register it does not return
//! a value in, so a kernel call clobbers only `x0`/`x1` as far as the caller
//! can tell. The gate still declares the C ABI's caller-saved registers as
//! clobbered, which leaves the kernel free to use the SIMD registers.
//!
//! Errors are numbers, never faults: a bad argument is always answered with
//! an error code and the caller keeps running.

/// Kernel call numbers (passed in `x8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Call {
    /// End the current upcall: the activation's work is done; `x0` is its
    /// result, handed to whoever made the upcall.
    Exit = 0,
    /// Write `x1` bytes at address `x0` (UTF-8 text) to the console.
    ConsoleWrite = 1,
    /// Return the caller's domain identifier.
    WhoAmI = 2,
    /// Copy the kernel's version string into the buffer `x0` of `x1` bytes;
    /// returns the length copied.
    Version = 3,
}

impl Call {
    /// Decode a call number; `None` for numbers that name no call.
    pub const fn from_number(number: usize) -> Option<Call> {
        match number {
            0 => Some(Call::Exit),
            1 => Some(Call::ConsoleWrite),
            2 => Some(Call::WhoAmI),
            3 => Some(Call::Version),
            _ => None,
        }
    }
}

/// Error codes returned in `x0` (never zero: zero means success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Error {
    /// The call number names no kernel call.
    NoSuchCall = 1,
    /// A pointer argument names memory the caller does not own (or may not
    /// access the way the call needs), or its range wraps around.
    BadAddress = 2,
    /// An argument is out of range (for example a length over a limit).
    InvalidArgument = 3,
    /// The text given to the console is not UTF-8.
    NotUtf8 = 4,
}

impl Error {
    /// Decode an error code; `None` for 0 (success) or an unknown code.
    pub const fn from_code(code: usize) -> Option<Error> {
        match code {
            1 => Some(Error::NoSuchCall),
            2 => Some(Error::BadAddress),
            3 => Some(Error::InvalidArgument),
            4 => Some(Error::NotUtf8),
            _ => None,
        }
    }

    /// The error's name, as printed in logs and by domains.
    pub const fn name(self) -> &'static str {
        match self {
            Error::NoSuchCall => "NoSuchCall",
            Error::BadAddress => "BadAddress",
            Error::InvalidArgument => "InvalidArgument",
            Error::NotUtf8 => "NotUtf8",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str(self.name())
    }
}

/// The largest single console write, in bytes.
pub const CONSOLE_WRITE_MAX: usize = 4096;

/// Encode a call's outcome into the two return registers `(x0, x1)`.
pub const fn encode_result(result: Result<usize, Error>) -> (usize, usize) {
    match result {
        Ok(value) => (0, value),
        Err(error) => (error as usize, 0),
    }
}

/// Decode the two return registers into a call's outcome. An unknown
/// non-zero code decodes as [`Error::NoSuchCall`] so that a newer kernel's
/// error never reads as success.
pub const fn decode_result(x0: usize, x1: usize) -> Result<usize, Error> {
    if x0 == 0 {
        Ok(x1)
    } else {
        match Error::from_code(x0) {
            Some(error) => Err(error),
            None => Err(Error::NoSuchCall),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_numbers_round_trip() {
        for call in [Call::Exit, Call::ConsoleWrite, Call::WhoAmI, Call::Version] {
            assert_eq!(Call::from_number(call as usize), Some(call));
        }
        assert_eq!(Call::from_number(99), None);
    }

    #[test]
    fn results_round_trip() {
        assert_eq!(decode_result(0, 42), Ok(42));
        let (x0, x1) = encode_result(Err(Error::BadAddress));
        assert_eq!((x0, x1), (2, 0));
        assert_eq!(decode_result(x0, x1), Err(Error::BadAddress));
        assert_eq!(decode_result(77, 0), Err(Error::NoSuchCall));
    }
}
