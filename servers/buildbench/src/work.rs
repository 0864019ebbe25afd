//! The build's work itself, with no RPC in it: the source tree's
//! generator, the compiler's tokeniser and object format, the linker's
//! output, the hash they all use, and [`expected`], the whole build done in
//! memory.
//!
//! Why it is apart from the domains: the same functions run in the
//! compiler and linker domains (between file-server calls) and in
//! [`expected`] (in one domain, no file server), so the checksum a build
//! through RPC returns can be checked against one computed without any,
//! and all of it runs under `cargo test` on the host.
//!
//! What it is not: a compiler. The "compile" tokenises (identifiers,
//! numbers, punctuation; `//` comments and white space skipped), hashes
//! every token with FNV-1a and folds the hashes into a fixed-size object
//! record; the "link" concatenates one entry per object and folds their
//! symbol buckets together. The work is proportional to the bytes, as a
//! compiler's is, and every byte of the output depends on every source
//! byte, which is what the checksum needs.

use alloc::vec::Vec;

/// The seed the tree is generated from.
pub const SEED: u64 = 0x7465_726e_2d62_7569;
/// Files in the tree unless the command line says otherwise.
pub const FILES_DEFAULT: usize = 200;
/// The most files a build takes (the file server's node and byte bounds
/// leave room for this many sources of [`SOURCE_MAX`] bytes only if most
/// are smaller: see `docs/bench.md`, "build").
pub const FILES_MAX: usize = 256;
/// Source files per directory.
pub const FILES_PER_DIRECTORY: usize = 20;
/// The smallest source file.
pub const SOURCE_MIN: usize = 2 << 10;
/// The largest source file.
pub const SOURCE_MAX: usize = 12 << 10;
/// An object file's bytes (one file-server chunk's worth or less).
pub const OBJECT_BYTES: usize = 1024;
/// Symbol buckets in an object and in the output.
pub const BUCKETS: usize = (OBJECT_BYTES - OBJECT_HEADER) / 8;
/// An object's header: magic, six counts, four bytes of zeros and the
/// digest.
const OBJECT_HEADER: usize = 40;
/// The output's header.
const OUTPUT_HEADER: usize = 32;
/// One object's entry in the output.
const OUTPUT_ENTRY: usize = 24;

/// An object file starts with these bytes.
pub const OBJECT_MAGIC: [u8; 4] = *b"TOBJ";
/// The output starts with these bytes.
pub const OUTPUT_MAGIC: [u8; 4] = *b"TOUT";

/// The directory of sources, of objects and of the output.
pub const SOURCE_ROOT: &str = "/src";
/// Where objects go.
pub const OBJECT_ROOT: &str = "/obj";
/// Where the output goes.
pub const OUTPUT_ROOT: &str = "/out";
/// The output file.
pub const OUTPUT: &str = "/out/a.out";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x100_0000_01b3;

/// FNV-1a, 64 bits, continuing from `hash`.
pub fn fnv1a_from(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME))
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

/// The build's checksum: FNV-1a of the output, top bit clear (so that a
/// domain can return it in a word whose top bit says "a checksum, not an
/// error code": [`checksum_word`]).
pub fn checksum(output: &[u8]) -> u64 {
    fnv1a(output) >> 1
}

/// The word a domain returns for a checksum: bit 63 set.
pub const fn checksum_word(checksum: u64) -> usize {
    (checksum | 1 << 63) as usize
}

/// A returned word's checksum, or `None` if it is an error code.
pub const fn checksum_of(word: usize) -> Option<u64> {
    if word as u64 & 1 << 63 != 0 { Some(word as u64 & !(1 << 63)) } else { None }
}

/// SplitMix64: small, and the same on every machine.
#[derive(Clone, Debug)]
pub struct Random(u64);

impl Random {
    /// Start from `seed`.
    pub const fn new(seed: u64) -> Self {
        Random(seed)
    }

    /// The next number.
    pub fn draw(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (not zero).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.draw() % bound
    }
}

/// The directory of source or object `index` under `root`.
pub fn directory(root: &str, index: usize) -> alloc::string::String {
    alloc::format!("{root}/d{:02}", index / FILES_PER_DIRECTORY)
}

/// The path of source `index`.
pub fn source_path(index: usize) -> alloc::string::String {
    alloc::format!("{}/f{index:03}.c", directory(SOURCE_ROOT, index))
}

/// The path of the object compiled from the source at `source`, if it
/// is one (`/src/d00/f000.c` → `/obj/d00/f000.o`).
pub fn object_path(source: &str) -> Option<alloc::string::String> {
    let rest = source.strip_prefix(SOURCE_ROOT)?.strip_suffix(".c")?;
    Some(alloc::format!("{OBJECT_ROOT}{rest}.o"))
}

/// Directories under each root a tree of `files` sources needs.
pub fn directories(files: usize) -> usize {
    files.div_ceil(FILES_PER_DIRECTORY)
}

const STEMS: [&str; 12] =
    ["alpha", "beta", "count", "index", "buffer", "node", "value", "tree", "port", "call", "reply", "chunk"];
const OPERATORS: [&str; 6] = ["+", "-", "*", "/", "<", "^"];

/// Source file `index` of the tree generated from `seed`: C-like lines
/// (comments, declarations, functions, conditions, calls) of
/// [`SOURCE_MIN`] to [`SOURCE_MAX`] bytes, cut at exactly its size.
pub fn source(seed: u64, index: usize) -> Vec<u8> {
    let mut random = Random::new(seed ^ (index as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
    let size = SOURCE_MIN + random.below((SOURCE_MAX - SOURCE_MIN + 1) as u64) as usize;
    let mut text = alloc::string::String::with_capacity(size + 96);
    let identifier = |random: &mut Random| {
        alloc::format!("{}_{}", STEMS[random.below(STEMS.len() as u64) as usize], random.below(64))
    };
    while text.len() < size {
        let (a, b, c) = (identifier(&mut random), identifier(&mut random), random.below(10_000));
        let operator = OPERATORS[random.below(OPERATORS.len() as u64) as usize];
        let line = match random.below(8) {
            0 => alloc::format!("// {a} holds the {b} of {c}\n"),
            1..=3 => alloc::format!("    let {a} = {b} {operator} {c};\n"),
            4 => alloc::format!("fn {a}({b}, n{c}) {{\n"),
            5 => "}\n".into(),
            6 => alloc::format!("    if {a} < {c} {{ {b} = {a} {operator} 0x{c:x}; }}\n"),
            _ => alloc::format!("    {a}({b}, {c});\n"),
        };
        text.push_str(&line);
    }
    let mut bytes = text.into_bytes();
    bytes.truncate(size);
    bytes
}

/// What the compiler makes of one source: counts, the digest of its token
/// stream and its symbol buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The source's bytes.
    pub source_bytes: u32,
    /// Tokens of every kind.
    pub tokens: u32,
    /// Identifier tokens.
    pub identifiers: u32,
    /// Number tokens.
    pub numbers: u32,
    /// Punctuation tokens.
    pub punctuation: u32,
    /// Lines (newlines seen).
    pub lines: u32,
    /// The token stream's digest: every token's hash, in order.
    pub digest: u64,
    /// Identifier hashes summed into buckets by hash.
    pub buckets: [u64; BUCKETS],
}

/// A token's kind, as hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Identifier = 1,
    Number = 2,
    Punctuation = 3,
}

fn identifier_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn identifier_rest(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Compile `source`: tokenise, hash every token, fold.
pub fn compile(source: &[u8]) -> Object {
    let mut object = Object {
        source_bytes: source.len() as u32,
        tokens: 0,
        identifiers: 0,
        numbers: 0,
        punctuation: 0,
        lines: 0,
        digest: FNV_OFFSET,
        buckets: [0; BUCKETS],
    };
    let mut at = 0;
    while at < source.len() {
        let byte = source[at];
        if byte == b'\n' {
            object.lines += 1;
            at += 1;
            continue;
        }
        if byte.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        if source[at..].starts_with(b"//") {
            at += source[at..].iter().position(|&b| b == b'\n').unwrap_or(source.len() - at);
            continue;
        }
        let start = at;
        let kind = if identifier_start(byte) {
            at += source[at..].iter().position(|&b| !identifier_rest(b)).unwrap_or(source.len() - at);
            Kind::Identifier
        } else if byte.is_ascii_digit() {
            // Digits and what may follow them in a literal (`0x1f`, `10u8`).
            at += source[at..].iter().position(|&b| !identifier_rest(b)).unwrap_or(source.len() - at);
            Kind::Number
        } else {
            at += 1;
            Kind::Punctuation
        };
        let hash = fnv1a_from(fnv1a(&[kind as u8]), &source[start..at]);
        object.tokens += 1;
        object.digest = (object.digest ^ hash).wrapping_mul(FNV_PRIME).rotate_left(17);
        match kind {
            Kind::Identifier => {
                object.identifiers += 1;
                let bucket = &mut object.buckets[(hash % BUCKETS as u64) as usize];
                *bucket = bucket.wrapping_add(hash);
            }
            Kind::Number => object.numbers += 1,
            Kind::Punctuation => object.punctuation += 1,
        }
    }
    object
}

impl Object {
    /// The object file: [`OBJECT_MAGIC`], the six counts, the digest and
    /// the buckets, little-endian; [`OBJECT_BYTES`] long.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(OBJECT_BYTES);
        bytes.extend_from_slice(&OBJECT_MAGIC);
        for count in [self.source_bytes, self.tokens, self.identifiers, self.numbers, self.punctuation, self.lines] {
            bytes.extend_from_slice(&count.to_le_bytes());
        }
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&self.digest.to_le_bytes());
        for bucket in self.buckets {
            bytes.extend_from_slice(&bucket.to_le_bytes());
        }
        bytes
    }

    /// Read an object file back; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Object> {
        if bytes.len() != OBJECT_BYTES || bytes[..4] != OBJECT_MAGIC {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let long = |at: usize| u64::from(word(at)) | u64::from(word(at + 4)) << 32;
        let mut buckets = [0; BUCKETS];
        for (index, bucket) in buckets.iter_mut().enumerate() {
            *bucket = long(OBJECT_HEADER + 8 * index);
        }
        Some(Object {
            source_bytes: word(4),
            tokens: word(8),
            identifiers: word(12),
            numbers: word(16),
            punctuation: word(20),
            lines: word(24),
            digest: long(32),
            buckets,
        })
    }
}

/// The linker's state: one entry per object added, and the buckets
/// folded together.
#[derive(Clone, Debug)]
pub struct Linker {
    entries: Vec<u8>,
    objects: u32,
    tokens: u64,
    source_bytes: u64,
    buckets: [u64; BUCKETS],
}

impl Default for Linker {
    fn default() -> Self {
        Self::new()
    }
}

impl Linker {
    /// Nothing linked yet.
    pub fn new() -> Self {
        Linker { entries: Vec::new(), objects: 0, tokens: 0, source_bytes: 0, buckets: [0; BUCKETS] }
    }

    /// Add the object at `path`.
    pub fn add(&mut self, path: &str, object: &Object) {
        self.entries.extend_from_slice(&fnv1a(path.as_bytes()).to_le_bytes());
        self.entries.extend_from_slice(&object.digest.to_le_bytes());
        self.entries.extend_from_slice(&object.tokens.to_le_bytes());
        self.entries.extend_from_slice(&object.lines.to_le_bytes());
        self.objects += 1;
        self.tokens += u64::from(object.tokens);
        self.source_bytes += u64::from(object.source_bytes);
        for (into, from) in self.buckets.iter_mut().zip(object.buckets) {
            *into = into.rotate_left(5) ^ from;
        }
    }

    /// Objects added.
    pub fn objects(&self) -> u32 {
        self.objects
    }

    /// The output: [`OUTPUT_MAGIC`], the object count, the tokens and
    /// source bytes in all, the entries in the order added, the buckets.
    pub fn output(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(OUTPUT_HEADER + self.objects as usize * OUTPUT_ENTRY + BUCKETS * 8);
        bytes.extend_from_slice(&OUTPUT_MAGIC);
        bytes.extend_from_slice(&self.objects.to_le_bytes());
        bytes.extend_from_slice(&self.tokens.to_le_bytes());
        bytes.extend_from_slice(&self.source_bytes.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&self.entries);
        for bucket in self.buckets {
            bytes.extend_from_slice(&bucket.to_le_bytes());
        }
        bytes
    }
}

/// The checksum of building the tree of `files` sources from `seed`, done
/// in memory: what a build through the file server must return.
pub fn expected(seed: u64, files: usize) -> u64 {
    let mut linker = Linker::new();
    for index in 0..files {
        let object = compile(&source(seed, index));
        // The encoding round trip, as through the file server.
        let object = Object::decode(&object.encode()).unwrap_or(object);
        let path = object_path(&source_path(index)).unwrap_or_default();
        linker.add(&path, &object);
    }
    checksum(&linker.output())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn sources_are_deterministic_and_in_bounds() {
        for index in 0..FILES_DEFAULT {
            let text = source(SEED, index);
            assert!((SOURCE_MIN..=SOURCE_MAX).contains(&text.len()), "{index}: {}", text.len());
            assert_eq!(text, source(SEED, index));
        }
        assert_ne!(source(SEED, 0), source(SEED, 1));
        assert_ne!(source(SEED, 0), source(SEED ^ 1, 0));
    }

    #[test]
    fn the_default_tree_fits_the_file_server() {
        // Sources, objects and the output, each in whole 4 KiB chunks, and
        // the nodes: what `docs/bench.md` quotes.
        let chunk = 4096;
        let sources: usize = (0..FILES_DEFAULT).map(|index| source(SEED, index).len().div_ceil(chunk)).sum();
        let output = (OUTPUT_HEADER + FILES_DEFAULT * OUTPUT_ENTRY + BUCKETS * 8).div_ceil(chunk);
        let chunks = sources + FILES_DEFAULT * OBJECT_BYTES.div_ceil(chunk) + output;
        let nodes = 2 * FILES_DEFAULT + 2 * directories(FILES_DEFAULT) + 3 + 1;
        std::println!("chunks {chunks} ({sources} of sources) of 768, nodes {nodes} of 1024");
        assert!(chunks * chunk <= (3 << 20) * 9 / 10, "{chunks} chunks: less than 10% to spare");
        assert!(nodes <= 1024);
    }

    #[test]
    fn the_tokeniser_counts_each_kind() {
        let object = compile(b"let a_1 = b2 + 0x1f; // c d e\nf(1)\n");
        assert_eq!((object.identifiers, object.numbers, object.punctuation), (4, 2, 5));
        assert_eq!((object.tokens, object.lines, object.source_bytes), (11, 2, 35));
        assert_ne!(compile(b"a b").digest, compile(b"b a").digest, "the digest follows the order");
        assert_eq!(compile(b"a  b // x").digest, compile(b"a b").digest, "space and comments are not tokens");
        assert_eq!(compile(b"").tokens, 0);
        assert_eq!(compile(b"//").tokens, 0);
        assert_eq!(compile(&[0xff, 0x80]).punctuation, 2, "any byte is a token");
    }

    #[test]
    fn objects_round_trip() {
        let object = compile(&source(SEED, 3));
        let bytes = object.encode();
        assert_eq!(bytes.len(), OBJECT_BYTES);
        assert_eq!(Object::decode(&bytes), Some(object));
        assert_eq!(Object::decode(&bytes[1..]), None);
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Object::decode(&bad), None);
    }

    #[test]
    fn paths_follow_the_tree() {
        assert_eq!(source_path(0), "/src/d00/f000.c");
        assert_eq!(source_path(47), "/src/d02/f047.c");
        assert_eq!(object_path("/src/d02/f047.c").as_deref(), Some("/obj/d02/f047.o"));
        assert_eq!(object_path("/etc/f.c"), None);
        assert_eq!(object_path("/src/d00/f.h"), None);
        assert_eq!(directories(200), 10);
        assert_eq!(directories(201), 11);
    }

    #[test]
    fn the_checksum_depends_on_every_file_and_fits_a_tagged_word() {
        let all = expected(SEED, 12);
        assert_eq!(all, expected(SEED, 12));
        assert_ne!(all, expected(SEED, 11));
        assert_ne!(all, expected(SEED ^ 1, 12));
        assert_eq!(all >> 63, 0);
        assert_eq!(checksum_of(checksum_word(all)), Some(all));
        assert_eq!(checksum_of(7), None);
        let mut linker = Linker::new();
        linker.add("/obj/x.o", &compile(b"x"));
        assert_eq!(linker.objects(), 1);
        assert_eq!(linker.output().len(), OUTPUT_HEADER + OUTPUT_ENTRY + BUCKETS * 8);
    }
}
