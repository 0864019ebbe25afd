//! Shell tests: the production image, driven through the serial console
//! as a person would, on both boards.
//!
//! Each test boots the image a person boots (`cargo xtask qemu`: no
//! harness, no scenario) and types at the `tern> ` prompt with the test
//! harness's keyboard (`xtask::keyboard`): every step waits for what the
//! shell prints before typing on, so the script itself checks most of the
//! session; QEMU is stopped once the script has been played. One session a
//! board covers every point of issue 16's shell tests, to keep the suite
//! short: `help`; `ps` while a 3-deep chain runs (`run chain 3 &`) shows
//! the chain with its domains, bottom to top, the top marked; `^C` on that
//! chain in the foreground ends it (the alert travels up to the clock's
//! sleep); `merge fs on`, then `cat` of a file written with `write` still
//! works, `domains` shows the calls fs has served and `ports` its port
//! under the name it registered, and `merge fs off`; `run spin` then `^C`
//! ends it interrupted; `run chain 3 1500` then `^Z` suspends it (prompt
//! back, `jobs` shows it suspended) and `fg` finishes it; and each
//! file-server error a person can cause from the prompt, by name; and
//! `bench build 20` (the macro
//! benchmark through `kernel.build`, over a small tree to stay quick)
//! prints a row for each of the four configurations, all with one
//! checksum, and says so — run last, so that it also shows the programs'
//! domains were given back (it needs four free arena slots); and `bench`
//! prints a row with two figures for each of the six paths.
//!
//! What it leaves out: the figures of `bench` and `bench build` (timing,
//! not behaviour; the benchmark suite's business), and typing at a real
//! board.

use tern_tests::{Board, Transcript};
use xtask::keyboard::Step;

const PROMPT: &str = "tern> ";

/// The session both boards play.
const SESSION: &[Step<'static>] = &[
    Step::WaitFor(PROMPT),
    Step::Type(b"help\r"),
    Step::WaitFor("keys: ^C alerts the foreground job"),
    Step::WaitFor(PROMPT),
    // Null and 1 KiB calls on every path: the job `callbench`, with it and
    // echo merged or protected in turn.
    Step::Type(b"bench\r"),
    Step::WaitFor("client: the job prog.callbench"),
    Step::WaitFor(PROMPT),
    // A 3-deep chain in the background, seen by ps.
    Step::Type(b"run chain 3 &\r"),
    Step::WaitFor("[1] thread"),
    Step::WaitFor(PROMPT),
    Step::Type(b"ps\r"),
    Step::WaitFor("kernel.clock#"),
    Step::WaitFor(PROMPT),
    // In the foreground, ^C ends it: the alert reaches the sleep at the top.
    Step::Type(b"fg 1\r"),
    Step::WaitFor("fg 1\r\nchain 3\r\n"),
    Step::Type(b"\x03"),
    Step::WaitFor("[1] interrupted  chain 3"),
    Step::WaitFor(PROMPT),
    // The file server merged, then protected again.
    Step::Type(b"write /note hello from the shell\r"),
    Step::WaitFor(PROMPT),
    Step::Type(b"merge fs on\r"),
    Step::WaitFor("fs: merged into the kernel domain"),
    Step::WaitFor(PROMPT),
    Step::Type(b"cat /note\r"),
    Step::WaitFor("hello from the shell"),
    Step::WaitFor(PROMPT),
    // The listings: calls served by each domain, each port's names.
    Step::Type(b"domains\r"),
    Step::WaitFor("calls (all domains)"),
    Step::WaitFor(PROMPT),
    Step::Type(b"ports\r"),
    Step::WaitFor("served  names"),
    Step::WaitFor(PROMPT),
    Step::Type(b"merge fs off\r"),
    Step::WaitFor("fs: protected"),
    Step::WaitFor(PROMPT),
    // A job that computes: ^C ends it.
    Step::Type(b"run spin\r"),
    Step::WaitFor("[2] thread"),
    Step::Type(b"\x03"),
    Step::WaitFor("[2] interrupted  spin"),
    Step::WaitFor(PROMPT),
    // A job in a chain: ^Z stops it, fg finishes it.
    Step::Type(b"run chain 3 1500\r"),
    Step::WaitFor("[3] thread"),
    Step::Type(b"\x1a"),
    Step::WaitFor("[3] suspended  chain 3 1500"),
    Step::WaitFor(PROMPT),
    Step::Type(b"jobs\r"),
    Step::WaitFor("[3] suspended"),
    Step::WaitFor(PROMPT),
    Step::Type(b"fg\r"),
    Step::WaitFor("[3] done  chain 3 1500"),
    Step::WaitFor(PROMPT),
    // Each file-server error a person can cause, by name.
    Step::Type(b"cat /nope\r"),
    Step::WaitFor("cat: /nope: no such file or directory"),
    Step::WaitFor(PROMPT),
    Step::Type(b"mkdir /d\r"),
    Step::WaitFor(PROMPT),
    Step::Type(b"mkdir /d\r"),
    Step::WaitFor("mkdir: /d: already exists"),
    Step::WaitFor(PROMPT),
    Step::Type(b"ls /note\r"),
    Step::WaitFor("ls: /note: not a directory"),
    Step::WaitFor(PROMPT),
    Step::Type(b"cat /d\r"),
    Step::WaitFor("cat: /d: is a directory"),
    Step::WaitFor(PROMPT),
    Step::Type(b"write /d/f x\r"),
    Step::WaitFor(PROMPT),
    Step::Type(b"rm /d\r"),
    Step::WaitFor("rm: /d: directory not empty"),
    Step::WaitFor(PROMPT),
    Step::Type(b"rm /nope\r"),
    Step::WaitFor("rm: /nope: no such file or directory"),
    Step::WaitFor(PROMPT),
    // The build benchmark over a small tree, through `kernel.build`, last:
    // its four domains need four free arena slots, so the programs run
    // above must have given theirs back.
    Step::Type(b"bench build 20\r"),
    Step::WaitFor("the same checksum in every configuration"),
    Step::WaitFor(PROMPT),
];

/// What the session must show beyond what the script waited for: the
/// chain in `ps`, bottom to top with the top marked, and no tick line, no
/// fault, no panic.
fn check_session(t: &Transcript) {
    let chain = t.expect(0, "a `ps` line with the job's chain", |line| line.contains("prog.chain#"));
    let line = &t.lines()[chain];
    let links: Vec<&str> = line
        .split("  ")
        .find(|part| part.contains("prog.chain#"))
        .map(|part| part.split(" > ").collect())
        .unwrap_or_default();
    let domains: Vec<&str> = links.iter().map(|link| link.split('#').next().unwrap_or("").trim()).collect();
    if domains != ["prog.chain", "relay", "relay", "relay", "kernel.clock"] {
        t.fail(format_args!("the chain in `ps` is {domains:?}, not prog.chain > relay x3 > kernel.clock: {line:?}"));
    }
    if !links.last().is_some_and(|top| top.ends_with('*'))
        || links.iter().filter(|link| link.ends_with('*')).count() != 1
    {
        t.fail(format_args!("`ps` must mark the top of the chain, and only it, with `*`: {line:?}"));
    }
    // `bench`: a row for each path, each with two figures.
    let header = t.expect(0, "the `bench` table", |line| line.starts_with("path (client -> echo)"));
    let paths = [
        "protected -> protected",
        "protected -> merged",
        "protected -> switching",
        "merged -> protected",
        "merged -> merged",
        "merged -> switching",
    ];
    for (line, path) in t.lines()[header + 1..].iter().zip(paths) {
        let figures: Vec<u64> =
            line.strip_prefix(path).unwrap_or("").split_whitespace().filter_map(|word| word.parse().ok()).collect();
        if figures.len() != 2 || figures.contains(&0) {
            t.fail(format_args!("the `bench` row for {path} should carry two figures (ns a call): {line:?}"));
        }
    }
    // `domains`: the file server has served calls (the write and the cat,
    // the cat merged: counted by the fast path in the port); `ports`: its
    // port is listed with the name it registered.
    let row = t.expect(0, "the `domains` row of fs", |line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        columns.get(1) == Some(&"fs") && matches!(columns.get(2), Some(&"merged" | &"protected"))
    });
    let served = t.lines()[row].split_whitespace().last().and_then(|figure| figure.parse::<u64>().ok());
    if served.is_none_or(|served| served == 0) {
        t.fail(format_args!("`domains` must show fs with calls served: {:?}", t.lines()[row]));
    }
    t.expect(0, "a `ports` line of fs's port with its name", |line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        columns.get(1) == Some(&"fs") && columns.get(2) == Some(&"yes") && columns.last() == Some(&"fs")
    });
    // `bench build 20`: a row for each configuration, one checksum.
    let header = t.expect(0, "the `bench build` table", |line| line.starts_with("build: 20 files, 4 configurations"));
    let rows: Vec<&str> = t.lines()[header + 2..].iter().take(4).map(String::as_str).collect();
    let names: Vec<&str> = rows.iter().map(|row| row.split_whitespace().next().unwrap_or("")).collect();
    if names != ["protected", "servers-merged", "all-merged", "switching"] {
        t.fail(format_args!("the `bench build` rows are {names:?}, not the four configurations: {rows:?}"));
    }
    let checksums: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|row| row.split_whitespace().nth(8)).collect();
    let agreed = t.expect(header, "the checksums' verdict", |line| line.starts_with("the same checksum in every"));
    if checksums.len() != 1 || !checksums.iter().all(|sum| t.lines()[agreed].ends_with(sum)) {
        t.fail(format_args!("`bench build` printed checksums {checksums:?}: not one, the verdict's"));
    }
    t.expect_none("a tick line", |line| line.starts_with("tick "));
    t.expect_none("a fault or a panic", |line| line.contains("fault in domain") || line.contains("panic"));
}

#[test]
fn rpi4_shell() {
    check_session(&Transcript::production_with_input(Board::Rpi4, "shell", SESSION));
}

#[test]
fn virt_shell() {
    check_session(&Transcript::production_with_input(Board::Virt, "shell", SESSION));
}
