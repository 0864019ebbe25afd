//! # tern-buildbench: the macro benchmark `build`
//!
//! Shaped like the paper's macro benchmark (Ford & Lepreau timed `make` of
//! the GNU assembler: 109 s with switching threads, 107 s with migrating
//! ones): a driver that walks a tree of source files on the file server,
//! hands each to a compiler domain, then has a linker domain read every
//! object and write one output, whose checksum it returns. Four domains:
//!
//! - `build.fs`: the file server (`tern_fs::Server`, the same code as the
//!   production `fs`), served on a pool or on server threads as its start
//!   argument says, registered nowhere: it returns its port, and the
//!   kernel side gives the others send rights to it. (The production `fs`
//!   registers its name with the name service once per boot; the
//!   benchmark makes a fresh set of domains for every configuration.)
//! - `build.compiler`: a server. A request names a source and an object
//!   path; it reads the source through the file server, compiles it
//!   ([`work::compile`]: tokenise, hash, fold) and writes the object file
//!   back; the reply carries the token and line counts.
//! - `build.linker`: a server. A request names the objects' directory and
//!   the output path; it lists the directory tree, reads every object,
//!   links them ([`work::Linker`]), writes the output and replies with its
//!   checksum and the object count.
//! - `build.driver`: a client, run a step at a time by the kernel side (start
//!   argument: [`driver_argument`]): [`step::GENERATE`] writes the tree
//!   (directories and [`work::source`] files, from [`work::SEED`]);
//!   [`step::BUILD`] lists `/src`, calls the compiler for every file, then
//!   the linker, and returns the checksum ([`work::checksum_word`]);
//!   [`step::EXPECT`] computes the same checksum in memory
//!   ([`work::expected`]) without any RPC; [`step::CLEAN`] removes it all.
//!   Only `BUILD` is measured.
//!
//! Errors are codes ([`code`]): a file-server status, a kernel error
//! ([`KERNEL`] + its number), or one of this crate's ([`BAD_OBJECT`],
//! [`BAD_REPLY`], [`BAD_ARGUMENT`]). A compiler or linker reply's label is
//! such a code (0: done).
//!
//! Left out: dependencies between files (every file is compiled, as a
//! clean `make`), parallel compiles (one driver thread), and the work of a
//! real compiler; what is kept is the shape of the RPC traffic — many
//! small reads and writes through the file server from two server
//! domains, nested below the driver's calls.
//!
//! A production crate since the shell's `bench build`: the production
//! image (`tern-image`) carries these domains, but never starts them at
//! boot; its `build` module (the kernel side, also the harness's `build`
//! and `bench` scenarios') makes a fresh set for every configuration, and
//! its kernel object `kernel.build` runs the four for the shell
//! ([`protocol`]). Safe Rust, no arch crate, like every domain.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod protocol;
pub mod work;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use tern_core::abi::PortName;
use tern_fs::{Fs, FsError};
use tern_inks::gate;
use tern_inks::service::{self, MessageBuffer, Reply, Request, Service};

tern_inks::domain!(FS, "build.fs", fs_main);
tern_inks::domain!(COMPILER, "build.compiler", compiler_main);
tern_inks::domain!(LINKER, "build.linker", linker_main);
tern_inks::domain!(DRIVER, "build.driver", driver_main);

/// Error codes above the file server's statuses: a kernel error is
/// `KERNEL + its number`.
pub const KERNEL: u32 = 0x100;
/// An object file that is not one.
pub const BAD_OBJECT: u32 = 0x200;
/// A compiler or linker reply that is not what the protocol promises.
pub const BAD_REPLY: u32 = 0x201;
/// A start argument or request that makes no sense (a port name too wide,
/// too many files, a path not under `/src`).
pub const BAD_ARGUMENT: u32 = 0x202;
/// What `fs_main`, `compiler_main` and `linker_main` return when they
/// could not start.
pub const NOT_STARTED: usize = usize::MAX;

/// The compiler's and the linker's request label.
pub const REQUEST: u32 = 1;

/// The code of a file-server error.
pub fn code(error: FsError) -> u32 {
    match error {
        FsError::Kernel(error) => KERNEL + error as u32,
        FsError::Unexpected(_) => BAD_REPLY,
        other => other.status(),
    }
}

/// The driver's steps (the low four bits of its start argument).
pub mod step {
    /// Write the source tree; returns 0 or a code.
    pub const GENERATE: usize = 1;
    /// Compile every file, link; returns the checksum word or a code.
    pub const BUILD: usize = 2;
    /// The checksum a build must return, computed in memory; the checksum
    /// word.
    pub const EXPECT: usize = 3;
    /// Remove the tree, the objects and the output; returns 0 or a code.
    pub const CLEAN: usize = 4;
}

/// The driver's start argument: `step` (bits 0-3), `files` (4-15), and the
/// driver's names for the file server (16-31), the compiler (32-47) and
/// the linker (48-63). `None` if a value does not fit.
pub fn driver_argument(step: usize, files: usize, fs: u32, compiler: u32, linker: u32) -> Option<usize> {
    let fits = step < 16 && files < 1 << 12 && [fs, compiler, linker].iter().all(|&name| name < 1 << 16);
    fits.then_some(step | files << 4 | (fs as usize) << 16 | (compiler as usize) << 32 | (linker as usize) << 48)
}

/// A server's start argument: the service runtime's `mode` (bits 0-7) and
/// its name for the file server (8-); [`NOT_STARTED`]-free by
/// construction.
pub const fn server_argument(mode: usize, fs: u32) -> usize {
    mode & 0xff | (fs as usize) << 8
}

/// Serve `service` on a new port as `mode` says (a pool of four or two
/// server threads); the port's name, or [`NOT_STARTED`].
fn serve<S: Service>(service: S, mode: usize) -> usize {
    let Ok(port) = gate::port_create() else { return NOT_STARTED };
    let service: &'static S = Box::leak(Box::new(service));
    match service::serve(
        service,
        port,
        mode,
        service::DEFAULT_POOL,
        service::DEFAULT_THREADS,
        service::DEFAULT_STACK_BYTES,
    ) {
        Ok(()) => port as usize,
        Err(_) => NOT_STARTED,
    }
}

fn fs_main(mode: usize) -> usize {
    serve(tern_fs::Server::new(), mode)
}

/// The compiler: one connection to the file server, shared by the
/// activations (or threads) that serve (one at a time: a driver has one
/// thread).
struct Compiler {
    fs: tern_inks::sync::Mutex<Fs>,
}

/// A request's two paths: a length byte, the first, the second.
pub fn encode_paths(first: &str, second: &str) -> Option<Vec<u8>> {
    let length = u8::try_from(first.len()).ok()?;
    let mut bytes = Vec::with_capacity(1 + first.len() + second.len());
    bytes.push(length);
    bytes.extend_from_slice(first.as_bytes());
    bytes.extend_from_slice(second.as_bytes());
    Some(bytes)
}

/// The two paths of a request; `None` if it is not two UTF-8 paths.
pub fn decode_paths(bytes: &[u8]) -> Option<(&str, &str)> {
    let (&length, rest) = bytes.split_first()?;
    let first = rest.get(..length as usize)?;
    let second = &rest[length as usize..];
    Some((core::str::from_utf8(first).ok()?, core::str::from_utf8(second).ok()?))
}

impl Compiler {
    fn compile(&self, request: &Request<'_>) -> Result<[u8; 8], u32> {
        let (source, object) = decode_paths(request.payload).ok_or(BAD_ARGUMENT)?;
        let mut fs = self.fs.lock();
        let text = fs.read_file(source).map_err(code)?;
        let compiled = work::compile(&text);
        fs.write_file(object, &compiled.encode()).map_err(code)?;
        let mut answer = [0u8; 8];
        answer[..4].copy_from_slice(&compiled.tokens.to_le_bytes());
        answer[4..].copy_from_slice(&compiled.lines.to_le_bytes());
        Ok(answer)
    }
}

/// Put `result` in `reply`: its label the code (0 and the payload when it
/// is `Ok`).
fn answer(reply: &mut Reply<'_>, result: Result<&[u8], u32>) {
    let label = match result.map(|payload| reply.set_payload(payload)) {
        Ok(Ok(())) => 0,
        Ok(Err(error)) => KERNEL + error as u32,
        Err(code) => code,
    };
    reply.set_label(label);
}

impl Service for Compiler {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        if request.label() != REQUEST {
            return answer(reply, Err(BAD_ARGUMENT));
        }
        let result = self.compile(request);
        answer(reply, result.as_ref().map(|bytes| &bytes[..]).map_err(|&code| code));
    }
}

fn compiler_main(argument: usize) -> usize {
    let fs = Fs::new((argument >> 8) as PortName);
    serve(Compiler { fs: tern_inks::sync::Mutex::new(fs) }, argument & 0xff)
}

/// The linker: as the compiler, one connection to the file server.
struct Linker {
    fs: tern_inks::sync::Mutex<Fs>,
}

impl Linker {
    fn link(&self, request: &Request<'_>) -> Result<[u8; 12], u32> {
        let (objects, output) = decode_paths(request.payload).ok_or(BAD_ARGUMENT)?;
        let mut fs = self.fs.lock();
        let mut linker = work::Linker::new();
        // Directories and files in name order (as `readdir` gives them).
        for directory in fs.readdir(objects).map_err(code)? {
            if !directory.is_directory() {
                continue;
            }
            let under = alloc::format!("{objects}/{}", directory.name);
            for file in fs.readdir(&under).map_err(code)? {
                let path = alloc::format!("{under}/{}", file.name);
                let bytes = fs.read_file(&path).map_err(code)?;
                let object = work::Object::decode(&bytes).ok_or(BAD_OBJECT)?;
                linker.add(&path, &object);
            }
        }
        let output_bytes = linker.output();
        fs.write_file(output, &output_bytes).map_err(code)?;
        let mut answer = [0u8; 12];
        answer[..8].copy_from_slice(&work::checksum(&output_bytes).to_le_bytes());
        answer[8..].copy_from_slice(&linker.objects().to_le_bytes());
        Ok(answer)
    }
}

impl Service for Linker {
    fn handle(&self, request: &Request<'_>, reply: &mut Reply<'_>) {
        if request.label() != REQUEST {
            return answer(reply, Err(BAD_ARGUMENT));
        }
        let result = self.link(request);
        answer(reply, result.as_ref().map(|bytes| &bytes[..]).map_err(|&code| code));
    }
}

fn linker_main(argument: usize) -> usize {
    let fs = Fs::new((argument >> 8) as PortName);
    serve(Linker { fs: tern_inks::sync::Mutex::new(fs) }, argument & 0xff)
}

/// The driver's view of one step's ports and size.
struct Driver {
    files: usize,
    fs: PortName,
    compiler: PortName,
    linker: PortName,
}

fn driver_main(argument: usize) -> usize {
    let driver = Driver {
        files: (argument >> 4) & 0xfff,
        fs: (argument >> 16) as u16 as PortName,
        compiler: (argument >> 32) as u16 as PortName,
        linker: (argument >> 48) as u16 as PortName,
    };
    if driver.files == 0 || driver.files > work::FILES_MAX {
        return BAD_ARGUMENT as usize;
    }
    let done = |result: Result<(), u32>| result.map_or_else(|code| code as usize, |()| 0);
    match argument & 0xf {
        step::GENERATE => done(driver.generate()),
        step::BUILD => driver.build().map_or_else(|code| code as usize, work::checksum_word),
        step::EXPECT => work::checksum_word(work::expected(work::SEED, driver.files)),
        step::CLEAN => done(driver.clean()),
        _ => BAD_ARGUMENT as usize,
    }
}

/// Call `port` with `payload`; the reply's payload (its label was 0) in
/// `reply`.
fn call<'reply>(
    port: PortName,
    payload: &[u8],
    request: &mut MessageBuffer,
    reply: &'reply mut MessageBuffer,
) -> Result<&'reply [u8], u32> {
    request.set_label(REQUEST);
    request.set_payload(payload).map_err(|error| KERNEL + error as u32)?;
    let view = service::call(port, request, reply).map_err(|error| KERNEL + error as u32)?;
    match view.label() {
        0 => Ok(view.payload),
        code => Err(code),
    }
}

impl Driver {
    fn generate(&self) -> Result<(), u32> {
        let mut fs = Fs::new(self.fs);
        for root in [work::SOURCE_ROOT, work::OBJECT_ROOT, work::OUTPUT_ROOT] {
            fs.mkdir(root).map_err(code)?;
        }
        for directory in 0..work::directories(self.files) {
            let index = directory * work::FILES_PER_DIRECTORY;
            for root in [work::SOURCE_ROOT, work::OBJECT_ROOT] {
                fs.mkdir(&work::directory(root, index)).map_err(code)?;
            }
        }
        for index in 0..self.files {
            fs.write_file(&work::source_path(index), &work::source(work::SEED, index)).map_err(code)?;
        }
        Ok(())
    }

    /// The build: list the sources, compile each, link; the checksum.
    fn build(&self) -> Result<u64, u32> {
        let mut fs = Fs::new(self.fs);
        let mut sources: Vec<String> = Vec::new();
        for directory in fs.readdir(work::SOURCE_ROOT).map_err(code)? {
            let under = alloc::format!("{}/{}", work::SOURCE_ROOT, directory.name);
            for file in fs.readdir(&under).map_err(code)? {
                sources.push(alloc::format!("{under}/{}", file.name));
            }
        }
        drop(fs);
        let mut request = MessageBuffer::new();
        let mut reply = MessageBuffer::new();
        for source in &sources {
            let object = work::object_path(source).ok_or(BAD_ARGUMENT)?;
            let payload = encode_paths(source, &object).ok_or(BAD_ARGUMENT)?;
            let counts = call(self.compiler, &payload, &mut request, &mut reply)?;
            if counts.len() != 8 {
                return Err(BAD_REPLY);
            }
        }
        let payload = encode_paths(work::OBJECT_ROOT, work::OUTPUT).ok_or(BAD_ARGUMENT)?;
        let linked = call(self.linker, &payload, &mut request, &mut reply)?;
        let (checksum, objects) = match (linked.get(..8), linked.get(8..12)) {
            (Some(checksum), Some(objects)) if linked.len() == 12 => (
                u64::from_le_bytes(checksum.try_into().map_err(|_| BAD_REPLY)?),
                u32::from_le_bytes(objects.try_into().map_err(|_| BAD_REPLY)?),
            ),
            _ => return Err(BAD_REPLY),
        };
        if objects as usize != sources.len() || sources.len() != self.files || checksum >> 63 != 0 {
            return Err(BAD_REPLY);
        }
        Ok(checksum)
    }

    fn clean(&self) -> Result<(), u32> {
        let mut fs = Fs::new(self.fs);
        for root in [work::SOURCE_ROOT, work::OBJECT_ROOT, work::OUTPUT_ROOT] {
            for entry in fs.readdir(root).map_err(code)? {
                let path = alloc::format!("{root}/{}", entry.name);
                if entry.is_directory() {
                    for file in fs.readdir(&path).map_err(code)? {
                        fs.unlink(&alloc::format!("{path}/{}", file.name)).map_err(code)?;
                    }
                }
                fs.unlink(&path).map_err(code)?;
            }
            fs.unlink(root).map_err(code)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::abi::Error;

    #[test]
    fn arguments_pack_and_refuse_what_does_not_fit() {
        let word = driver_argument(step::BUILD, 200, 3, 4, 65535).unwrap();
        assert_eq!((word & 0xf, word >> 4 & 0xfff, word >> 16 & 0xffff), (2, 200, 3));
        assert_eq!((word >> 32 & 0xffff, word >> 48), (4, 65535));
        assert_eq!(driver_argument(step::BUILD, 4096, 1, 2, 3), None);
        assert_eq!(driver_argument(step::BUILD, 1, 1 << 16, 2, 3), None);
        assert_eq!(driver_argument(16, 1, 1, 2, 3), None);
        assert_eq!(server_argument(service::MODE_THREADS, 7), 2 | 7 << 8);
    }

    #[test]
    fn paths_travel_in_one_payload() {
        let bytes = encode_paths("/src/d00/f000.c", "/obj/d00/f000.o").unwrap();
        assert_eq!(decode_paths(&bytes), Some(("/src/d00/f000.c", "/obj/d00/f000.o")));
        assert_eq!(decode_paths(&[]), None);
        assert_eq!(decode_paths(&[5, b'a']), None);
        assert_eq!(decode_paths(&[1, 0xff]), None);
        assert_eq!(encode_paths(&"x".repeat(256), "y"), None);
    }

    #[test]
    fn codes_keep_file_server_statuses_apart_from_kernel_errors() {
        assert_eq!(code(FsError::Full), tern_fs::FULL);
        assert_eq!(code(FsError::Kernel(Error::PortDead)), KERNEL + Error::PortDead as u32);
        assert_eq!(code(FsError::Unexpected(9)), BAD_REPLY);
        assert!(work::checksum_of(BAD_ARGUMENT as usize).is_none());
    }

    /// Off the target every call is `NoSuchCall` (on an x86 host; on an
    /// AArch64 host the gate's `svc` would reach the host's kernel).
    #[test]
    #[cfg(not(target_arch = "aarch64"))]
    fn off_the_target_the_steps_report_the_gate_error() {
        let no_call = (KERNEL + Error::NoSuchCall as u32) as usize;
        assert_eq!(driver_main(driver_argument(step::GENERATE, 3, 1, 2, 3).unwrap()), no_call);
        assert_eq!(driver_main(driver_argument(step::BUILD, 3, 1, 2, 3).unwrap()), no_call);
        assert_eq!(driver_main(driver_argument(step::BUILD, 0, 1, 2, 3).unwrap()), BAD_ARGUMENT as usize);
        let expected = driver_main(driver_argument(step::EXPECT, 3, 1, 2, 3).unwrap());
        assert_eq!(work::checksum_of(expected), Some(work::expected(work::SEED, 3)));
        assert_eq!(fs_main(service::MODE_POOL), NOT_STARTED);
    }
}
