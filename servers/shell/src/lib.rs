//! # tern-shell: the prompt a person types at
//!
//! `shell` is a protected, safe-Rust domain the production image starts
//! last (`board/image`): it prints `tern> ` through the console server and
//! runs what is typed. It holds three rights from the start: to
//! `console` (lines and signals), to `system` (`kernel.system`, the
//! kernel's records and controls: threads with their chains, domains,
//! ports, merging, jobs, memory, the counter) and to `fs` (the file
//! server); `bench build` looks up a fourth, `build` (`kernel.build`,
//! which runs the macro benchmark in every configuration and replies with
//! the table). [`command`] parses a line (host-tested); this module
//! carries commands out.
//!
//! **Jobs.** `run PROGRAM` asks `system` to start the registered program
//! domain `prog.PROGRAM` on a new thread: the job. In the foreground the
//! shell polls the job (`WAIT`, every [`POLL_MS`]) until it ends or is
//! suspended; with `&` it goes back to the prompt and reports the job's
//! end before a later prompt. Two threads: the main thread reads lines,
//! and a signal thread always waits for `^C`/`^Z` from the console (they
//! queue there when nobody waits). `^C` alerts the foreground job's base
//! activation — the alert travels up the job's chain, through every server
//! it is in — and if the job has not ended after [`GRACE_MS`], breaks the
//! chain there (alert-and-break: the job's own code gets `Interrupted` at
//! once, the servers finish on their own). `^Z` suspends the job's base
//! activation (the job stops as soon as it runs its own code) and the
//! prompt comes back; `fg` resumes it and waits again.
//!
//! The shell runs above its jobs' priority, so a job that computes forever
//! never keeps the prompt from answering.
//!
//! Left out: pipes, redirection, quoting, environment, programs with text
//! arguments (a program gets one argument word), and terminals other than
//! the one console.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod command;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use command::Command;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tern_buildbench::protocol::{Build, Failure};
use tern_console::{Console, Line, Signal};
use tern_core::abi::Error;
use tern_fs::Fs;
use tern_inks::gate;
use tern_inks::system::{self, JobState, System};

tern_inks::domain!(SHELL, "shell", main);

/// The prompt.
pub const PROMPT: &str = "tern> ";
/// How long `^C` waits for the job to end before alert-and-break.
pub const GRACE_MS: u64 = 500;
/// How often a foreground job is polled.
pub const POLL_MS: u64 = 20;
/// How long `merge` retries a busy domain.
pub const MERGE_RETRY_MS: u64 = 2000;
/// The main thread's priority (jobs run at 8, servers' own threads at 16).
pub const SHELL_PRIORITY: u8 = 20;
/// The signal thread's priority.
pub const SIGNAL_PRIORITY: u8 = 21;
/// Calls a benchmark figure is the mean of.
pub const BENCH_CALLS: u32 = 200;
/// The program `bench` runs its calls in.
const BENCH_PROGRAM: &str = "prog.callbench";

/// A job the shell started.
#[derive(Clone, Debug)]
struct Job {
    /// Its number in `jobs`.
    number: usize,
    /// Its thread (the `system` job).
    id: u32,
    /// The command line that started it.
    line: String,
}

/// What both threads share.
struct Shared {
    console: Console,
    system: System,
    /// The foreground job's thread (0: none).
    foreground: AtomicU32,
    /// Set by `^Z`: the foreground job was suspended.
    suspended: AtomicBool,
    /// The counter's frequency.
    frequency: u64,
}

impl Shared {
    fn say(&self, text: &str) {
        let _ = self.console.write(text);
    }

    fn sleep_ms(&self, milliseconds: u64) {
        let _ = gate::sleep((milliseconds * self.frequency / 1000) as usize);
    }
}

fn main(_: usize) -> usize {
    match run() {
        Ok(()) => 0,
        Err(error) => {
            let _ = gate::console_write(&format!("shell: {}\n", error.name()));
            error as usize
        }
    }
}

fn run() -> Result<(), Error> {
    gate::set_priority(gate::activation_self()?, SHELL_PRIORITY)?;
    let console = Console::connect()?;
    let system = System::connect()?;
    let (_, frequency) = system.uptime()?;
    let shared = alloc::boxed::Box::leak(alloc::boxed::Box::new(Shared {
        console,
        system,
        foreground: AtomicU32::new(0),
        suspended: AtomicBool::new(false),
        frequency,
    }));
    tern_inks::thread::spawn(signals, &*shared, SIGNAL_PRIORITY, 32 * 1024)?;
    let mut shell = Shell { shared, fs: Fs::connect().ok(), jobs: Vec::new(), next_job: 1 };
    shell.shared.say("Tern shell: type help for the commands\n");
    loop {
        shell.report_ended();
        match shell.shared.console.read_line(PROMPT)? {
            Line::Text(bytes) => {
                let line = String::from_utf8_lossy(&bytes).into_owned();
                match command::parse(&line) {
                    Ok(command) => shell.execute(command),
                    Err(error) => shell.shared.say(&format!("{}\n", error.0)),
                }
            }
            Line::Cancelled | Line::Interrupted => {}
        }
    }
}

/// The signal thread: `^C` and `^Z` act on the foreground job.
fn signals(shared: &'static Shared) -> usize {
    loop {
        let signal = match shared.console.wait_signal() {
            Ok(Some(signal)) => signal,
            Ok(None) => continue,
            Err(error) => return error as usize,
        };
        let job = shared.foreground.load(Ordering::Acquire);
        if job == 0 {
            continue;
        }
        match signal {
            Signal::Interrupt => {
                let _ = shared.system.control(system::ALERT, job);
                let mut waited = 0;
                while waited < GRACE_MS && shared.foreground.load(Ordering::Acquire) == job {
                    shared.sleep_ms(POLL_MS);
                    waited += POLL_MS;
                }
                if shared.foreground.load(Ordering::Acquire) == job {
                    shared.say("^C: the job did not end; alert-and-break\n");
                    let _ = shared.system.control(system::ALERT_BREAK, job);
                }
            }
            Signal::Suspend => {
                if shared.system.control(system::SUSPEND, job).is_ok() {
                    shared.suspended.store(true, Ordering::Release);
                }
            }
        }
    }
}

/// The main thread's state.
struct Shell {
    shared: &'static Shared,
    fs: Option<Fs>,
    jobs: Vec<Job>,
    next_job: usize,
}

impl Shell {
    fn say(&self, text: &str) {
        self.shared.say(text);
    }

    fn execute(&mut self, command: Command) {
        let system = self.shared.system;
        match command {
            Command::Nothing => {}
            Command::Help => self.say(command::HELP),
            Command::Ps => self.listing(system::PS),
            Command::Domains => self.listing(system::DOMAINS),
            Command::Ports => self.listing(system::PORTS),
            Command::Mem => self.listing(system::MEM),
            Command::Uptime => match system.uptime() {
                Ok((counter, frequency)) => {
                    let milliseconds = counter * 1000 / frequency;
                    self.say(&format!(
                        "up {}.{:03} s (counter {counter} at {frequency} Hz)\n",
                        milliseconds / 1000,
                        milliseconds % 1000
                    ));
                }
                Err(error) => self.say(&format!("uptime: {}\n", error.name())),
            },
            Command::Merge { name, on } => self.merge(&name, on),
            Command::Bench => self.bench(),
            Command::BenchBuild(files) => self.bench_build(files),
            Command::Run { program, argument, line, background } => self.start(&program, argument, line, background),
            Command::Jobs => self.list_jobs(),
            Command::Fg(number) => self.fg(number),
            Command::Bg(number) => self.job_control(number, system::RESUME, "bg"),
            Command::Kill(number) => self.kill(number),
            Command::Suspend(number) => self.job_control(Some(number), system::SUSPEND, "suspend"),
            Command::Resume(number) => self.job_control(Some(number), system::RESUME, "resume"),
            Command::Ls(path) => self.ls(&path),
            Command::Cat(path) => self.fs("cat", &path, |fs, path| {
                let bytes = fs.read_file(path)?;
                let mut text = String::from_utf8_lossy(&bytes).into_owned();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                Ok(text)
            }),
            Command::Write(path, text) => {
                self.fs("write", &path, |fs, path| fs.write_file(path, text.as_bytes()).map(|()| String::new()))
            }
            Command::Rm(path) => self.fs("rm", &path, |fs, path| fs.unlink(path).map(|()| String::new())),
            Command::Mkdir(path) => self.fs("mkdir", &path, |fs, path| fs.mkdir(path).map(|()| String::new())),
        }
    }

    fn listing(&self, label: u32) {
        match self.shared.system.text(label) {
            Ok(text) => self.say(&text),
            Err(error) => self.say(&format!("system: {}\n", error.name())),
        }
    }

    /// A file-server command: its output, or `command: path: error`.
    fn fs(&mut self, name: &str, path: &str, body: impl FnOnce(&mut Fs, &str) -> Result<String, tern_fs::FsError>) {
        if self.fs.is_none() {
            self.fs = Fs::connect().ok();
        }
        let Some(fs) = self.fs.as_mut() else {
            self.say(&format!("{name}: no file server\n"));
            return;
        };
        match body(fs, path) {
            Ok(text) => self.say(&text),
            Err(error) => self.say(&format!("{name}: {path}: {error}\n")),
        }
    }

    fn ls(&mut self, path: &str) {
        self.fs("ls", path, |fs, path| {
            let mut text = String::new();
            for entry in fs.readdir(path)? {
                if entry.is_directory() {
                    text.push_str(&format!("{}/\n", entry.name));
                } else {
                    text.push_str(&format!("{:<24} {:>8}\n", entry.name, entry.size));
                }
            }
            Ok(text)
        });
    }

    fn merge(&self, name: &str, on: bool) {
        let mut waited = 0;
        loop {
            match self.shared.system.merge(name, on) {
                Ok(()) => {
                    let now = if on { "merged into the kernel domain" } else { "protected" };
                    self.say(&format!("{name}: {now}\n"));
                    return;
                }
                Err(Error::Busy) if waited < MERGE_RETRY_MS => {
                    if waited == 0 {
                        self.say(&format!(
                            "{name} is busy: a call is in progress in one of its activations, and a domain \
                             changes mode only when none is occupied; retrying for up to {MERGE_RETRY_MS} ms\n"
                        ));
                    }
                    self.shared.sleep_ms(50);
                    waited += 50;
                }
                Err(Error::Busy) => {
                    self.say(&format!("{name}: still busy after {MERGE_RETRY_MS} ms; not changed\n"));
                    return;
                }
                Err(Error::NoSuchPort) => return self.say(&format!("merge: no domain {name}\n")),
                Err(Error::NoRight) => {
                    return self.say(&format!("merge: {name} is the kernel's own object; it stays merged\n"));
                }
                Err(error) => return self.say(&format!("merge: {name}: {}\n", error.name())),
            }
        }
    }

    /// `bench build [FILES]`: ask `build` (`kernel.build`) to run every
    /// configuration; its table. The prompt waits meanwhile (seconds).
    fn bench_build(&self, files: u32) {
        self.say("bench build: running every configuration (this takes a while)\n");
        let table = Build::connect().map_err(Failure::Refused).and_then(|build| build.run_all(files));
        match table {
            Ok(table) => self.say(&table),
            Err(Failure::Failed(why)) => self.say(&format!("bench build: failed: {why}\n")),
            Err(Failure::Refused(error)) => self.say(&format!("bench build: {}\n", error.name())),
        }
    }

    fn start(&mut self, program: &str, argument: u64, line: String, background: bool) {
        let id = match self.shared.system.run(program, argument) {
            Ok(id) => id,
            Err(Error::NoSuchPort) => {
                return self.say(&format!("run: no program {program}\n"));
            }
            Err(error) => return self.say(&format!("run: {program}: {}\n", error.name())),
        };
        let number = self.next_job;
        self.next_job += 1;
        self.jobs.push(Job { number, id, line });
        if !background {
            self.enter_foreground(id);
        }
        self.say(&format!("[{number}] thread {id}\n"));
        if !background {
            self.wait_foreground(number);
        }
    }

    fn find(&self, number: Option<usize>) -> Option<Job> {
        match number {
            Some(number) => self.jobs.iter().find(|job| job.number == number).cloned(),
            None => self.jobs.last().cloned(),
        }
    }

    fn forget(&mut self, number: usize) {
        self.jobs.retain(|job| job.number != number);
    }

    /// Make job `id` the foreground job — before it is announced, so that
    /// a `^C` or `^Z` typed as soon as the announcement shows reaches it.
    fn enter_foreground(&self, id: u32) {
        self.shared.suspended.store(false, Ordering::Release);
        self.shared.foreground.store(id, Ordering::Release);
    }

    /// Wait for job `number`, in the foreground ([`Shell::enter_foreground`]),
    /// until it ends or `^Z` suspends it.
    fn wait_foreground(&mut self, number: usize) {
        let Some(job) = self.find(Some(number)) else { return };
        loop {
            if self.shared.suspended.swap(false, Ordering::AcqRel) {
                self.say(&format!("\n[{number}] suspended  {}\n", job.line));
                break;
            }
            match self.shared.system.wait(job.id) {
                Ok(JobState::Ended(result)) => {
                    self.say(&format!("[{number}] {}  {}\n", command::ended(result), job.line));
                    self.forget(number);
                    break;
                }
                Ok(JobState::Running | JobState::Stopped) => self.shared.sleep_ms(POLL_MS),
                Err(error) => {
                    self.say(&format!("[{number}] lost: {}\n", error.name()));
                    self.forget(number);
                    break;
                }
            }
        }
        self.shared.foreground.store(0, Ordering::Release);
    }

    /// Report background jobs that have ended, and forget them.
    fn report_ended(&mut self) {
        let jobs = self.jobs.clone();
        for job in jobs {
            match self.shared.system.wait(job.id) {
                Ok(JobState::Ended(result)) => {
                    self.say(&format!("[{}] {}  {}\n", job.number, command::ended(result), job.line));
                    self.forget(job.number);
                }
                Ok(_) => {}
                Err(_) => self.forget(job.number),
            }
        }
    }

    fn list_jobs(&mut self) {
        self.report_ended();
        for job in &self.jobs {
            let state = match self.shared.system.wait(job.id) {
                Ok(JobState::Stopped) => "suspended",
                Ok(_) => "running",
                Err(_) => "unknown",
            };
            self.say(&format!("[{}] {:<9} thread {:<4} {}\n", job.number, state, job.id, job.line));
        }
    }

    fn fg(&mut self, number: Option<usize>) {
        let Some(job) = self.find(number) else { return self.say("fg: no such job\n") };
        self.enter_foreground(job.id);
        let _ = self.shared.system.control(system::RESUME, job.id);
        self.say(&format!("{}\n", job.line));
        self.wait_foreground(job.number);
    }

    fn job_control(&mut self, number: Option<usize>, label: u32, name: &str) {
        let Some(job) = self.find(number) else { return self.say(&format!("{name}: no such job\n")) };
        match self.shared.system.control(label, job.id) {
            Ok(()) if name == "bg" => self.say(&format!("[{}] {} &\n", job.number, job.line)),
            Ok(()) => {}
            Err(error) => self.say(&format!("{name}: {}\n", error.name())),
        }
    }

    fn kill(&mut self, number: usize) {
        let Some(job) = self.find(Some(number)) else { return self.say("kill: no such job\n") };
        if let Err(error) = self.shared.system.control(system::KILL, job.id) {
            return self.say(&format!("kill: {}\n", error.name()));
        }
        for _ in 0..50 {
            if let Ok(JobState::Ended(_)) = self.shared.system.wait(job.id) {
                // Whatever its thread's last word, the job was killed.
                self.say(&format!("[{}] killed  {}\n", job.number, job.line));
                self.forget(job.number);
                return;
            }
            self.shared.sleep_ms(POLL_MS);
        }
    }

    /// `bench`: null and 1 KiB calls to `echo` on every path. The calls
    /// are made by the program `callbench`, run as a job, so that the
    /// client can be protected or merged: for each row the shell merges
    /// (or takes out) `prog.callbench` and `echo`, runs the job, and reads
    /// its ticks. Both are protected again at the end. A `^C` stops it.
    fn bench(&mut self) {
        let mut table = command::bench_header(BENCH_CALLS);
        let mut failed = None;
        for (client, server, target, path) in command::BENCH_PATHS {
            let modes =
                self.merge_quietly(BENCH_PROGRAM, client).and_then(|()| self.merge_quietly(tern_echo::NAME, server));
            let row = modes.map_err(|error| format!("merge: {}", error.name())).and_then(|()| {
                let null = self.measure(0, target)?;
                let kib = self.measure(1024, target)?;
                Ok((null, kib))
            });
            match row {
                Ok((null, kib)) => table.push_str(&command::bench_row(path, null, kib)),
                Err(why) => {
                    table.push_str(&format!("{path:<32} ({why})\n"));
                    failed = Some(why);
                    break;
                }
            }
        }
        let _ = self.merge_quietly(tern_echo::NAME, false);
        let _ = self.merge_quietly(BENCH_PROGRAM, false);
        if failed.is_none() {
            table.push_str("client: the job prog.callbench; switching: echo.threads' server thread, protected\n");
        }
        self.say(&table);
    }

    /// Merge `name` (or take it out), waiting out `Busy` for up to
    /// [`MERGE_RETRY_MS`] (a thread just answered may still be on its way
    /// out of it); the last answer.
    fn merge_quietly(&self, name: &str, on: bool) -> Result<(), Error> {
        let mut waited = 0;
        loop {
            match self.shared.system.merge(name, on) {
                Err(Error::Busy) if waited < MERGE_RETRY_MS => {
                    self.shared.sleep_ms(10);
                    waited += 10;
                }
                outcome => return outcome,
            }
        }
    }

    /// One `callbench` job of [`BENCH_CALLS`] calls of `bytes` to `target`,
    /// in the foreground (so that `^C` reaches it): nanoseconds a call, or
    /// why not.
    fn measure(&mut self, bytes: u32, target: tern_programs::Target) -> Result<u64, String> {
        let asked = tern_programs::Callbench { bytes, calls: BENCH_CALLS, target, quiet: true };
        let argument = asked.argument().ok_or_else(|| String::from("callbench: bad request"))?;
        let name = &BENCH_PROGRAM[system::PROGRAM_PREFIX.len()..];
        let id = self.shared.system.run(name, argument).map_err(|error| format!("run: {}", error.name()))?;
        self.enter_foreground(id);
        let result = loop {
            match self.shared.system.wait(id) {
                Ok(JobState::Ended(result)) => break Ok(result),
                Ok(JobState::Running) => self.shared.sleep_ms(1),
                Ok(JobState::Stopped) => {
                    let _ = self.shared.system.control(system::KILL, id);
                    self.shared.sleep_ms(POLL_MS);
                }
                Err(error) => break Err(format!("wait: {}", error.name())),
            }
        };
        self.shared.foreground.store(0, Ordering::Release);
        self.shared.suspended.store(false, Ordering::Release);
        match result? {
            measured if measured & tern_programs::MEASURED != 0 && measured != usize::MAX => {
                let ticks = (measured & !tern_programs::MEASURED) as u64;
                Ok(command::per_call_ns(ticks, self.shared.frequency, BENCH_CALLS))
            }
            code => Err(command::ended(code)),
        }
    }
}
