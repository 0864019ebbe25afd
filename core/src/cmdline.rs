//! The kernel command line: `tern.*` options.
//!
//! The command line comes from the boot loader (`/chosen/bootargs` in the
//! device tree on a real Pi 4 and on QEMU `virt`; `ATAG_CMDLINE` on QEMU
//! `raspi4b`). Tern reads only words that start with `tern.`; the rest
//! (the Pi firmware adds many) is ignored.
//!
//! - `tern.scenario=NAME` picks the boot scenario (see the arch crate's
//!   `scenario` module); without it the kernel runs its interactive demo.
//! - `tern.bench.repetitions=N` sets the benchmark's samples per figure.
//! - `tern.build.files=N` sets the source files of the `build` macro
//!   benchmark's tree (the `build` and `bench` scenarios).
//! - `tern.rounds=N` sets how many rounds a repeating scenario runs (the
//!   reuse scenario's domains, for one).
//! - `tern.merge=NAME,NAME,...` merges the named server domains into the
//!   kernel domain as soon as each has started (see `docs/design.md`, "In-kernel
//!   servers"); the mode can change again at run time.
//! - `tern.harness=1` says a test harness runs the kernel under QEMU with
//!   semihosting enabled: only then does the kernel end the run through a
//!   semihosting exit (an `hlt` instruction, which would trap on a real Pi).
//! - `tern.fuzz.seed=N`, `tern.fuzz.calls=N`, `tern.fuzz.mode=NAME` and
//!   `tern.fuzz.trace=1` configure the harness's kernel-call fuzzer
//!   (scenario `fuzz`): the PRNG's seed, how many kernel calls to make,
//!   from which kind of domain (`protected`, `merged` or `both`), and
//!   whether to print every call as it is made.

/// Options parsed from the kernel command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options<'a> {
    /// `tern.scenario=NAME`, if given.
    pub scenario: Option<&'a str>,
    /// `tern.harness=1` (also accepted: `tern.harness`, `=true`, `=yes`).
    pub harness: bool,
    /// `tern.bench.repetitions=N`: samples per benchmark figure.
    pub bench_repetitions: Option<u32>,
    /// `tern.build.files=N`: source files of the `build` benchmark.
    pub build_files: Option<u32>,
    /// `tern.merge=NAME,...`: domains to merge once started.
    pub merge: Option<&'a str>,
    /// `tern.rounds=N`: rounds of a repeating scenario.
    pub rounds: Option<u32>,
    /// `tern.fuzz.seed=N`: the fuzzer's seed.
    pub fuzz_seed: Option<u64>,
    /// `tern.fuzz.calls=N`: how many kernel calls the fuzzer makes.
    pub fuzz_calls: Option<u64>,
    /// `tern.fuzz.mode=NAME`: the fuzzer's domain mode(s).
    pub fuzz_mode: Option<&'a str>,
    /// `tern.fuzz.trace=1`: print every call the fuzzer makes.
    pub fuzz_trace: bool,
}

impl Options<'_> {
    /// Whether `tern.merge` names the domain `name`.
    pub fn merges(&self, name: &str) -> bool {
        self.merge.is_some_and(|list| list.split(',').any(|listed| listed == name))
    }
}

/// Parse the options out of a command line. Unknown `tern.` words are
/// returned through `unknown` so the kernel can warn about them.
pub fn parse<'a>(line: &'a str, mut unknown: impl FnMut(&'a str)) -> Options<'a> {
    let mut options = Options::default();
    for word in line.split_ascii_whitespace() {
        let Some(rest) = word.strip_prefix("tern.") else {
            continue;
        };
        let (key, value) = match rest.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (rest, None),
        };
        match (key, value) {
            ("scenario", Some(name)) if !name.is_empty() => options.scenario = Some(name),
            ("harness", None | Some("1" | "true" | "yes")) => options.harness = true,
            ("harness", Some("0" | "false" | "no")) => options.harness = false,
            ("merge", Some(list)) if !list.is_empty() => options.merge = Some(list),
            ("bench.repetitions", Some(number)) if number.parse::<u32>().is_ok_and(|n| n > 0) => {
                options.bench_repetitions = number.parse().ok()
            }
            ("build.files", Some(number)) if number.parse::<u32>().is_ok_and(|n| n > 0) => {
                options.build_files = number.parse().ok()
            }
            ("rounds", Some(number)) if number.parse::<u32>().is_ok_and(|n| n > 0) => {
                options.rounds = number.parse().ok()
            }
            ("fuzz.seed", Some(number)) if number.parse::<u64>().is_ok() => options.fuzz_seed = number.parse().ok(),
            ("fuzz.calls", Some(number)) if number.parse::<u64>().is_ok_and(|n| n > 0) => {
                options.fuzz_calls = number.parse().ok()
            }
            ("fuzz.mode", Some(name)) if !name.is_empty() => options.fuzz_mode = Some(name),
            ("fuzz.trace", None | Some("1" | "true" | "yes")) => options.fuzz_trace = true,
            ("fuzz.trace", Some("0" | "false" | "no")) => options.fuzz_trace = false,
            _ => unknown(word),
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_tern_options_among_others() {
        let mut unknown = alloc::vec::Vec::new();
        let line = "console=ttyAMA0 tern.harness=1 coherent_pool=1M tern.scenario=ticks tern.bogus tern.bench.repetitions=50 tern.rounds=7 tern.build.files=12";
        let options = parse(line, |word| unknown.push(word));
        assert_eq!(options.scenario, Some("ticks"));
        assert!(options.harness);
        assert_eq!(unknown, ["tern.bogus"]);
        assert_eq!(options.bench_repetitions, Some(50));
        assert_eq!(options.rounds, Some(7));
        assert_eq!(options.build_files, Some(12));
        let mut rejected = alloc::vec::Vec::new();
        parse("tern.bench.repetitions=0 tern.bench.repetitions=x tern.build.files=0", |word| rejected.push(word));
        assert_eq!(rejected.len(), 3, "zero and non-numbers are refused");
    }

    #[test]
    fn merge_lists_domains() {
        let options = parse("tern.merge=kv,echo", |_| panic!("known"));
        assert!(options.merges("kv") && options.merges("echo"));
        assert!(!options.merges("names") && !options.merges("k") && !options.merges(""));
        assert!(!parse("", |_| {}).merges("kv"));
        let mut unknown = alloc::vec::Vec::new();
        parse("tern.merge=", |word| unknown.push(word));
        assert_eq!(unknown, ["tern.merge="]);
    }

    #[test]
    fn fuzz_options() {
        let options = parse("tern.fuzz.seed=0 tern.fuzz.calls=1000000 tern.fuzz.mode=merged tern.fuzz.trace", |_| {
            panic!("known")
        });
        assert_eq!(options.fuzz_seed, Some(0));
        assert_eq!(options.fuzz_calls, Some(1_000_000));
        assert_eq!(options.fuzz_mode, Some("merged"));
        assert!(options.fuzz_trace);
        assert!(!parse("tern.fuzz.trace=1 tern.fuzz.trace=0", |_| {}).fuzz_trace);
        let mut rejected = alloc::vec::Vec::new();
        parse("tern.fuzz.calls=0 tern.fuzz.seed=-1 tern.fuzz.calls=x tern.fuzz.mode=", |word| rejected.push(word));
        assert_eq!(rejected.len(), 4, "zero calls, negative or non-numbers and an empty mode are refused");
    }

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(parse("", |_| panic!("no words")), Options::default());
        let options = parse("tern.harness=0 tern.scenario=", |_| {});
        assert!(!options.harness);
        assert_eq!(options.scenario, None);
    }
}
