//! Console input on the mock machine: `ConsoleRead` is the console
//! domain's only, copies what the interrupt handler queued, waits while
//! nothing has arrived (woken by input, ended by an alert), and checks its
//! buffer like any user claim.

mod support;

use support::System;
use tern_core::abi::{Call, Error, Role};
use tern_core::input::CONSOLE_INPUT_BYTES;
use tern_core::kernel::Next;
use tern_core::thread::ThreadState;

/// A system with a console domain and a thread in it (current).
fn console() -> (System, tern_core::domain::DomainId, tern_core::thread::ThreadId) {
    let mut system = System::new();
    let domain = system.domain_with_role("console", Role::Console);
    let reader = system.thread(domain, 5);
    system.switch_to(reader);
    (system, domain, reader)
}

#[test]
fn only_the_console_domain_may_read() {
    let mut system = System::new();
    let plain = system.domain("plain");
    let names = system.domain_with_role("names", Role::NameService);
    system.kernel.console_input(b"secret");
    for domain in [plain, names] {
        let thread = system.thread(domain, 5);
        system.switch_to(thread);
        let buffer = system.region(domain) + 0x1000;
        assert_eq!(system.ok(Call::ConsoleRead, &[buffer, 16]), Err(Error::Forbidden));
    }
    assert_eq!(system.kernel.console.len(), 6, "nothing was taken");
}

#[test]
fn queued_input_is_copied_at_once_in_order() {
    let (mut system, domain, _) = console();
    let buffer = system.region(domain) + 0x1000;
    assert!(!system.kernel.console_input(b"hello\r"), "nobody waited");
    assert_eq!(system.ok(Call::ConsoleRead, &[buffer, 4]), Ok(4));
    assert_eq!(system.kernel.machine.peek(buffer, 4), b"hell");
    assert_eq!(system.ok(Call::ConsoleRead, &[buffer, 64]), Ok(2));
    assert_eq!(system.kernel.machine.peek(buffer, 2), b"o\r");
}

#[test]
fn a_reader_waits_for_input_and_reads_it_when_woken() {
    let (mut system, domain, reader) = console();
    let buffer = system.region(domain) + 0x1000;
    assert_eq!(system.invoke(Call::ConsoleRead, &[buffer, 64]), Next::BlockThenRepeat);
    assert_eq!(system.state(reader), ThreadState::ReadingConsole);

    system.switch_to(system.boot);
    assert!(system.kernel.console_input(b"ab"), "the reader was woken");
    assert_eq!(system.state(reader), ThreadState::Ready);
    system.switch_to(reader);
    assert!(!system.kernel.take_interrupted());
    assert_eq!(system.repeat(), Next::Resume, "the repeated call finds the input");
    assert_eq!(system.result(reader), Ok(2));
    assert_eq!(system.kernel.machine.peek(buffer, 2), b"ab");
}

#[test]
fn an_alert_ends_the_wait_with_interrupted() {
    let (mut system, domain, reader) = console();
    let own = system.top(reader);
    let buffer = system.region(domain) + 0x1000;
    assert_eq!(system.invoke(Call::ConsoleRead, &[buffer, 64]), Next::BlockThenRepeat);
    system.switch_to(system.boot);
    let controller = system.enter(domain);
    assert_eq!(system.ok(Call::Alert, &[own.get() as u64]), Ok(1));
    system.leave(controller);
    assert_eq!(system.state(reader), ThreadState::Ready);
    assert_eq!(system.result(reader), Err(Error::Interrupted));
    system.switch_to(reader);
    assert!(system.kernel.take_interrupted(), "the call is not made again");
    assert!(!system.kernel.console_input(b"x"), "no reader waits any more");
}

#[test]
fn bad_buffers_are_refused_and_take_nothing() {
    let (mut system, domain, _) = console();
    system.kernel.console_input(b"abc");
    let region = system.region(domain);
    let other = system.domain("other");
    let elsewhere = system.region(other) + 0x1000;
    assert_eq!(system.ok(Call::ConsoleRead, &[region + 0x1000, 0]), Err(Error::InvalidArgument));
    assert_eq!(system.ok(Call::ConsoleRead, &[elsewhere, 16]), Err(Error::BadAddress), "another domain's memory");
    assert_eq!(system.ok(Call::ConsoleRead, &[u64::MAX - 4, 16]), Err(Error::BadAddress), "wraps");
    assert_eq!(system.ok(Call::ConsoleRead, &[0x8_0000, 16]), Err(Error::BadAddress), "the read-only image");
    assert_eq!(system.kernel.console.len(), 3);
}

#[test]
fn input_past_the_ring_is_dropped_and_counted() {
    let (mut system, domain, _) = console();
    system.kernel.console_input(&[b'a'; CONSOLE_INPUT_BYTES]);
    system.kernel.console_input(b"lost");
    assert_eq!(system.kernel.console.dropped(), 4);
    let buffer = system.region(domain) + 0x1000;
    assert_eq!(system.ok(Call::ConsoleRead, &[buffer, 4096]), Ok(CONSOLE_INPUT_BYTES));
    assert!(system.kernel.machine.peek(buffer, CONSOLE_INPUT_BYTES).iter().all(|&byte| byte == b'a'));
}
