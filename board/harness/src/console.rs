//! The console scenario: a person at the serial console, played by the
//! test's keyboard (`xtask::keyboard`).
//!
//! `console` (or `console-merged`, with the console server merged into the
//! kernel domain first) starts the name service and the console server
//! and runs `console.client`, a protected domain that talks to the console
//! the way the shell will: one thread waits for a signal from the start
//! while the main thread reads four lines (prompts `line 1> ` ..
//! `line 4> `) and writes each back as `console-client: line N: [text]`;
//! then it says `console-client: waiting for a signal` and waits for the
//! signal thread, which writes `console-client: signal Interrupt` (or
//! `Suspend`) when it gets one. The boot test (`tests/tests/boot.rs`)
//! types the lines, with Backspace, `^U` and the history, then `^C`, and
//! checks what came back.
//!
//! Without a keyboard (`cargo xtask qemu --scenario console`) it waits for
//! a person to type the same.

use crate::Verdict;
use alloc::format;
use alloc::string::String;
use tern_aarch64::upcall::Outcome;
use tern_aarch64::{domains, kprintln};
use tern_console::{Console, Line, Signal};
use tern_core::abi::Error;
use tern_inks::gate;
use tern_inks::mode::DomainMode;
use tern_inks::service::MODE_POOL;

tern_inks::domain!(CLIENT, "console.client", client_main);

/// Lines the client reads.
pub const LINES: usize = 4;

/// The scenario: the console in `mode`, the client protected.
pub fn console(mode: DomainMode) -> Verdict {
    crate::setup::start_servers(&[("names", MODE_POOL), ("console", MODE_POOL)])?;
    let console = domains::find("console").ok_or("no console domain")?;
    domains::set_mode(console, mode).map_err(|error| format!("console -> {mode:?}: {error}"))?;
    kprintln!("console: the console server is {mode:?}");
    let client = domains::create("console.client").map_err(|error| format!("console.client: {error:?}"))?;
    match domains::call(client, 0) {
        Ok(Outcome::Returned(0)) => Ok(()),
        other => Err(format!("console.client ended {other:?}")),
    }
}

fn client_main(_: usize) -> usize {
    match client() {
        Ok(()) => 0,
        Err(error) => {
            let _ = gate::console_write(&format!("console-client: {error:?}\n"));
            error as usize
        }
    }
}

/// Where the signal thread says what it got.
fn wait_for_signal(console: &'static Console) -> usize {
    let said = match console.wait_signal() {
        Ok(Some(Signal::Interrupt)) => String::from("console-client: signal Interrupt\n"),
        Ok(Some(Signal::Suspend)) => String::from("console-client: signal Suspend\n"),
        Ok(None) => String::from("console-client: the signal wait was interrupted\n"),
        Err(error) => format!("console-client: waiting for a signal: {error:?}\n"),
    };
    let _ = console.write(&said);
    0
}

fn client() -> Result<(), Error> {
    let console: &'static Console = alloc::boxed::Box::leak(alloc::boxed::Box::new(Console::connect()?));
    let signals = tern_inks::thread::spawn(wait_for_signal, console, 10, 64 * 1024)?;
    console.write("console-client: ready\n")?;
    for round in 1..=LINES {
        let said = match console.read_line(&format!("line {round}> "))? {
            Line::Text(text) => format!("console-client: line {round}: [{}]\n", String::from_utf8_lossy(&text)),
            other => format!("console-client: line {round}: {other:?}\n"),
        };
        console.write(&said)?;
    }
    console.write("console-client: waiting for a signal\n")?;
    gate::thread_join(signals)?;
    console.write("console-client: done\n")?;
    Ok(())
}
