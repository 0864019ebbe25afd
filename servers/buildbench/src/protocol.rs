//! The protocol of `kernel.build` (`tern_image::build`), the kernel object
//! that runs this benchmark on request, and its client: the shell's
//! `bench build`. It lives here, with the workload, because the shell may
//! depend on a server crate but not on the image that composes them.
//!
//! One request, [`RUN_ALL`], payload the file count as a little-endian
//! `u32` (0: [`work::FILES_DEFAULT`](crate::work::FILES_DEFAULT)). The
//! reply's label is [`OK`] with the table as UTF-8 text, [`FAILED`] with
//! why a build failed as text, or an error's code (`InvalidArgument` for
//! a file count out of range, `NoRight` when not served merged).

use alloc::string::String;
use tern_core::abi::{Error, PortName};
use tern_inks::service::{self, MessageBuffer};

/// The name `kernel.build` registers.
pub const NAME: &str = "build";
/// Request: every configuration, the table as text.
pub const RUN_ALL: u32 = 1;
/// Reply label: done, the payload is the table.
pub const OK: u32 = 0;
/// Reply label: a build failed, the payload says why (no error code of
/// the kernel's: the number is past them all).
pub const FAILED: u32 = 0x100;
/// The most the reply's text may take.
pub const REPLY_MAX: usize = 8 * 1024;

/// Why [`Build::run_all`] has no table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The call or the request was refused with this error.
    Refused(Error),
    /// A build failed; why, in words.
    Failed(String),
}

/// A send right to `build`.
#[derive(Clone, Copy, Debug)]
pub struct Build {
    port: PortName,
}

impl Build {
    /// Look `build` up with the name service.
    pub fn connect() -> Result<Build, Error> {
        service::lookup(NAME).map(|port| Build { port })
    }

    /// Run every configuration over `files` sources (0: the default);
    /// the table.
    pub fn run_all(&self, files: u32) -> Result<String, Failure> {
        let mut request = MessageBuffer::with_payload_capacity(4);
        request.set_label(RUN_ALL);
        request.set_payload(&files.to_le_bytes()).map_err(Failure::Refused)?;
        let mut reply = MessageBuffer::with_payload_capacity(REPLY_MAX);
        let view = service::call(self.port, &request, &mut reply).map_err(Failure::Refused)?;
        let text = String::from_utf8_lossy(view.payload).into_owned();
        match view.label() {
            OK => Ok(text),
            FAILED => Err(Failure::Failed(text)),
            code => Err(Failure::Refused(Error::from_code(code as usize).unwrap_or(Error::BadMessage))),
        }
    }
}
