//! The shell's commands as data: parsing a typed line into a
//! [`Command`], and the shell's own formatting (jobs, the benchmark
//! table). Pure code, tested on the host; nothing here talks to a server.
//!
//! Words are split on spaces (no quoting); `write PATH TEXT` keeps the
//! rest of the line, spaces and all, as the text. A trailing `&` on `run`
//! starts the job in the background. Every mistake is a [`ParseError`]
//! saying what was expected, never a panic.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One command, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// An empty line.
    Nothing,
    /// `help`.
    Help,
    /// `ps`.
    Ps,
    /// `domains`.
    Domains,
    /// `ports`.
    Ports,
    /// `merge NAME on|off`.
    Merge {
        /// The domain.
        name: String,
        /// On (merged) or off (protected).
        on: bool,
    },
    /// `bench`.
    Bench,
    /// `bench build [FILES]` (or `run build [FILES]`): the macro benchmark
    /// `build` in every configuration, through `kernel.build`, over a tree
    /// of FILES sources (0: the default).
    BenchBuild(u32),
    /// `run PROGRAM [ARGS] [&]`.
    Run {
        /// The program's name (the domain `prog.NAME`).
        program: String,
        /// Its argument word.
        argument: u64,
        /// The line as typed (for `jobs`), without the `&`.
        line: String,
        /// Started in the background.
        background: bool,
    },
    /// `jobs`.
    Jobs,
    /// `fg [N]`.
    Fg(Option<usize>),
    /// `bg [N]`.
    Bg(Option<usize>),
    /// `kill N`.
    Kill(usize),
    /// `suspend N`.
    Suspend(usize),
    /// `resume N`.
    Resume(usize),
    /// `ls [PATH]`.
    Ls(String),
    /// `cat PATH`.
    Cat(String),
    /// `write PATH TEXT`.
    Write(String, String),
    /// `rm PATH`.
    Rm(String),
    /// `mkdir PATH`.
    Mkdir(String),
    /// `mem`.
    Mem,
    /// `uptime`.
    Uptime,
}

/// Why a line is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

/// What `help` prints.
pub const HELP: &str = "\
commands:
  help                    this list
  ps                      threads: state, priority, CPU time (by domain), chain bottom > top*
  domains                 domains: mode, ASID, region, pool free/total, occupied activations, calls served
  ports                   ports: owner, pool, server threads, calls served, registered names
  merge NAME on|off       merge a domain into the kernel domain, or take it out
  bench                   null and 1 KiB calls to echo on every path (client and echo protected or merged, switching)
  bench build [FILES]     the build benchmark in every configuration (kernel.build); run build: the same
  run PROGRAM [ARGS] [&]  start a program as a job: spin | chain N [MS] | kvload [COUNT] | callbench [BYTES [CALLS]]
  jobs, fg [N], bg [N]    list jobs; bring one to the foreground; let it run in the background
  kill N, suspend N, resume N
  ls [PATH], cat PATH, write PATH TEXT, rm PATH, mkdir PATH   the file server
  mem, uptime
keys: ^C alerts the foreground job (alert-and-break after 500 ms), ^Z suspends it
";

fn error(text: impl Into<String>) -> ParseError {
    ParseError(text.into())
}

fn number(word: &str, what: &str) -> Result<u32, ParseError> {
    word.parse().map_err(|_| error(format!("{what}: expected a number, not '{word}'")))
}

fn job_number(word: Option<&str>, command: &str) -> Result<usize, ParseError> {
    let word = word.ok_or_else(|| error(format!("usage: {command} N (a job number from `jobs`)")))?;
    word.parse().map_err(|_| error(format!("{command}: '{word}' is not a job number")))
}

fn optional_job(word: Option<&str>, command: &str) -> Result<Option<usize>, ParseError> {
    word.map(|word| job_number(Some(word), command)).transpose()
}

fn path(word: Option<&str>, command: &str) -> Result<String, ParseError> {
    word.map(ToString::to_string).ok_or_else(|| error(format!("usage: {command} PATH")))
}

/// The file count of `bench build FILES`: 1 to the workload's most.
fn build_files(word: &str) -> Result<u32, ParseError> {
    let files = number(word, "build files")?;
    let most = tern_buildbench::work::FILES_MAX;
    if files == 0 || files as usize > most {
        return Err(error(format!("build: files 1..={most}")));
    }
    Ok(files)
}

/// The argument word of `program` with `arguments`.
pub fn program_argument(program: &str, arguments: &[&str]) -> Result<u64, ParseError> {
    match (program, arguments) {
        ("spin", []) => Ok(0),
        ("spin", _) => Err(error("usage: run spin")),
        ("chain", [depth]) | ("chain", [depth, _]) => {
            let depth = number(depth, "chain depth")?;
            let milliseconds = match arguments.get(1) {
                Some(word) => number(word, "chain milliseconds")?,
                None => 0,
            };
            tern_programs::chain_argument(depth, milliseconds).ok_or_else(|| {
                error(format!(
                    "chain: depth 1..={}, sleep at most {} ms",
                    tern_programs::CHAIN_DEPTH_MAX,
                    tern_programs::CHAIN_SLEEP_MAX
                ))
            })
        }
        ("chain", _) => Err(error("usage: run chain N [MS] (MS 0 or none: until ^C)")),
        ("kvload", []) => Ok(u64::from(tern_programs::KVLOAD_DEFAULT)),
        ("kvload", [count]) => tern_programs::kvload_argument(number(count, "kvload count")?)
            .ok_or_else(|| error(format!("kvload: count 1..={}", tern_programs::KVLOAD_MAX))),
        ("kvload", _) => Err(error("usage: run kvload [COUNT]")),
        ("callbench", [] | [_] | [_, _]) => {
            let bytes = arguments.first().map_or(Ok(0), |word| number(word, "callbench bytes"))?;
            let calls = match arguments.get(1) {
                Some(word) => number(word, "callbench calls")?,
                None => tern_programs::CALLBENCH_CALLS_DEFAULT,
            };
            let asked = tern_programs::Callbench { bytes, calls, target: tern_programs::Target::Pool, quiet: false };
            asked.argument().ok_or_else(|| {
                error(format!(
                    "callbench: bytes at most {}, calls 1..={}",
                    tern_programs::CALLBENCH_BYTES_MAX,
                    tern_programs::CALLBENCH_CALLS_MAX
                ))
            })
        }
        ("callbench", _) => Err(error("usage: run callbench [BYTES [CALLS]]")),
        _ => Ok(0),
    }
}

/// Parse one typed line.
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, rest)) = words.split_first() else { return Ok(Command::Nothing) };
    let first = rest.first().copied();
    let exact =
        |command: Command| if rest.is_empty() { Ok(command) } else { Err(error(format!("{name} takes no arguments"))) };
    match name {
        "help" | "?" => exact(Command::Help),
        "ps" => exact(Command::Ps),
        "domains" => exact(Command::Domains),
        "ports" => exact(Command::Ports),
        "mem" => exact(Command::Mem),
        "uptime" => exact(Command::Uptime),
        "jobs" => exact(Command::Jobs),
        "merge" => match rest {
            [domain, "on"] => Ok(Command::Merge { name: domain.to_string(), on: true }),
            [domain, "off"] => Ok(Command::Merge { name: domain.to_string(), on: false }),
            _ => Err(error("usage: merge NAME on|off")),
        },
        "bench" => match rest {
            [] => Ok(Command::Bench),
            ["build"] => Ok(Command::BenchBuild(0)),
            ["build", files] => Ok(Command::BenchBuild(build_files(files)?)),
            _ => Err(error("usage: bench [build [FILES]]")),
        },
        "run" => {
            let (background, rest) = match rest.split_last() {
                Some((&"&", before)) => (true, before),
                _ => (false, rest),
            };
            let Some((&program, arguments)) = rest.split_first() else {
                return Err(error("usage: run PROGRAM [ARGS] [&]"));
            };
            // The benchmark is no program: the kernel object runs it, the
            // shell waits for its table.
            if program == "build" {
                return match (arguments, background) {
                    (_, true) => Err(error("run build runs in the foreground (it is bench build)")),
                    ([], false) => Ok(Command::BenchBuild(0)),
                    ([files], false) => Ok(Command::BenchBuild(build_files(files)?)),
                    _ => Err(error("usage: run build [FILES]")),
                };
            }
            let argument = program_argument(program, arguments)?;
            Ok(Command::Run { program: program.to_string(), argument, line: rest.join(" "), background })
        }
        "fg" => Ok(Command::Fg(optional_job(first, "fg")?)),
        "bg" => Ok(Command::Bg(optional_job(first, "bg")?)),
        "kill" => Ok(Command::Kill(job_number(first, "kill")?)),
        "suspend" => Ok(Command::Suspend(job_number(first, "suspend")?)),
        "resume" => Ok(Command::Resume(job_number(first, "resume")?)),
        "ls" => Ok(Command::Ls(first.unwrap_or("/").to_string())),
        "cat" => Ok(Command::Cat(path(first, "cat")?)),
        "rm" => Ok(Command::Rm(path(first, "rm")?)),
        "mkdir" => Ok(Command::Mkdir(path(first, "mkdir")?)),
        "write" => {
            let after = line["write".len()..].trim_start();
            match after.split_once(' ') {
                Some((target, text)) if !target.is_empty() => Ok(Command::Write(target.to_string(), text.to_string())),
                _ => Err(error("usage: write PATH TEXT")),
            }
        }
        _ => Err(error(format!("{name}: no such command (try help)"))),
    }
}

/// How a job ended, in words, from its result word.
pub fn ended(result: usize) -> String {
    match result {
        0 => "done".to_string(),
        measured if measured & tern_programs::MEASURED != 0 && measured != usize::MAX => "done".to_string(),
        usize::MAX => "killed".to_string(),
        code => match tern_core::abi::Error::from_code(code) {
            Some(tern_core::abi::Error::Interrupted) => "interrupted".to_string(),
            Some(error) => format!("ended: {}", error.name()),
            None => format!("ended: {code}"),
        },
    }
}

/// One row of the benchmark table: a path, then nanoseconds a call for
/// the null call and the 1 KiB call.
pub fn bench_row(path: &str, null_ns: u64, kib_ns: u64) -> String {
    format!("{path:<32} {null_ns:>8} {kib_ns:>8}\n")
}

/// The benchmark table's header.
pub fn bench_header(calls: u32) -> String {
    format!(
        "{:<32} {:>8} {:>8}   (ns a call, mean of {calls}, counter-timed)\n",
        "path (client -> echo)", "null", "1 KiB"
    )
}

/// The paths `bench` measures, in order: the client's mode (merged or
/// not), echo's mode, whom it calls, and the row's name.
pub const BENCH_PATHS: [(bool, bool, tern_programs::Target, &str); 6] = {
    use tern_programs::Target::{Pool, Thread};
    [
        (false, false, Pool, "protected -> protected"),
        (false, true, Pool, "protected -> merged"),
        (false, false, Thread, "protected -> switching"),
        (true, false, Pool, "merged -> protected"),
        (true, true, Pool, "merged -> merged"),
        (true, false, Thread, "merged -> switching"),
    ]
};

/// Nanoseconds a call from a measurement's ticks.
pub fn per_call_ns(ticks: u64, frequency: u64, calls: u32) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(frequency.max(1)) / u128::from(calls.max(1))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_commands_and_their_arguments() {
        assert_eq!(parse(""), Ok(Command::Nothing));
        assert_eq!(parse("  ps "), Ok(Command::Ps));
        assert_eq!(parse("merge fs on"), Ok(Command::Merge { name: "fs".into(), on: true }));
        assert_eq!(parse("merge fs off"), Ok(Command::Merge { name: "fs".into(), on: false }));
        assert!(parse("merge fs maybe").is_err());
        assert!(parse("ps now").is_err());
        assert_eq!(parse("bench build"), Ok(Command::BenchBuild(0)));
        assert_eq!(parse("bench build 20"), Ok(Command::BenchBuild(20)));
        assert_eq!(parse("run build 20"), Ok(Command::BenchBuild(20)));
        assert_eq!(parse("run build"), Ok(Command::BenchBuild(0)));
        assert!(parse("run build 20 &").is_err());
        assert!(parse("bench build 0").is_err());
        assert!(parse("bench build many").is_err());
        assert!(parse("bench build 1 2").is_err());
        assert_eq!(parse("ls"), Ok(Command::Ls("/".into())));
        assert_eq!(parse("fg"), Ok(Command::Fg(None)));
        assert_eq!(parse("fg 2"), Ok(Command::Fg(Some(2))));
        assert!(parse("kill").is_err());
        assert!(parse("kill x").is_err());
        assert!(parse("frobnicate").unwrap_err().0.contains("no such command"));
    }

    #[test]
    fn write_keeps_the_rest_of_the_line() {
        assert_eq!(parse("write /a hello  world"), Ok(Command::Write("/a".into(), "hello  world".into())));
        assert!(parse("write /a").is_err());
        assert!(parse("write").is_err());
    }

    #[test]
    fn run_makes_the_argument_word_and_sees_the_ampersand() {
        let Ok(Command::Run { program, argument, line, background }) = parse("run chain 3 2000 &") else {
            panic!("not a run");
        };
        assert_eq!((program.as_str(), line.as_str(), background), ("chain", "chain 3 2000", true));
        assert_eq!(tern_programs::chain_parts(argument), (3, 2000));
        assert!(matches!(parse("run spin"), Ok(Command::Run { background: false, argument: 0, .. })));
        assert!(parse("run chain 0").is_err());
        assert!(parse("run chain").is_err());
        assert!(parse("run spin 3").is_err());
        assert!(matches!(parse("run kvload"), Ok(Command::Run { argument: 1000, .. })));
        assert!(parse("run").is_err());
        let Ok(Command::Run { argument, .. }) = parse("run callbench 1024 50") else { panic!("not a run") };
        let asked = tern_programs::Callbench::from_argument(argument).unwrap();
        assert_eq!((asked.bytes, asked.calls, asked.quiet), (1024, 50, false));
        assert!(matches!(parse("run callbench"), Ok(Command::Run { .. })));
        assert!(parse("run callbench 40000").is_err());
        assert!(parse("run callbench 1 0").is_err());
        assert!(parse("run callbench 1 2 3").is_err());
        assert!(parse("run &").is_err());
    }

    #[test]
    fn endings_and_the_table() {
        assert_eq!(ended(0), "done");
        assert_eq!(ended(usize::MAX), "killed");
        assert_eq!(ended(tern_core::abi::Error::Interrupted as usize), "interrupted");
        assert!(ended(tern_core::abi::Error::NoSuchPort as usize).contains("NoSuchPort"));
        assert_eq!(ended(tern_programs::MEASURED | 1234), "done");
        assert_eq!(bench_row("protected", 1200, 3400), format!("{:<32} {:>8} {:>8}\n", "protected", 1200, 3400));
        assert!(bench_header(100).contains("1 KiB"));
        assert_eq!(per_call_ns(62_500, 62_500_000, 100), 10_000);
        assert_eq!(per_call_ns(5, 0, 0), 5_000_000_000);
        let merged_clients = BENCH_PATHS.iter().filter(|(client, ..)| *client).count();
        assert_eq!((BENCH_PATHS.len(), merged_clients), (6, 3));
    }
}
