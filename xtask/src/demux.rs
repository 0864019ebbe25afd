//! Splitting the kernel's UART byte stream into console text and defmt frames.
//!
//! Tern's kernel has one wire to the outside world, the PL011, and two kinds
//! of output on it: plain console text for humans (banners, fault reports,
//! the `[hello.ping]` chatter of domains) and defmt log frames, which are
//! binary and mean nothing without the ELF's string table. PLATFORM.md
//! records what happens when the two simply share the wire: they corrupt
//! each other. So the kernel frames its logs, and this module undoes that.
//!
//! The framing is deliberately tiny, because the kernel side has to be
//! obviously right too:
//!
//! * console text never contains the bytes `0x00` or `0x01`;
//! * a defmt frame is `0x01`, then the frame's rzCOBS encoding (defmt's
//!   `encoding-rzcobs`, which never produces `0x00`), then `0x00`.
//!
//! [`Demux`] is the state machine that reads that grammar. It is fed
//! arbitrary chunks, exactly as they come out of a pipe, so a frame or a
//! run of text may be split anywhere; it reports [`Event`]s in arrival
//! order through a callback, lending slices instead of allocating per
//! event. Inside a frame only `0x00` is special (rzCOBS output may well
//! contain `0x01`). Two leniencies, both harmless to a well-formed stream:
//!
//! * `0x00` bytes right after `0x01` are skipped, like `defmt-decoder`'s own
//!   stream decoder skips leading zeros. defmt's `Encoder` writes a `0x00`
//!   at the start of its very first frame (to end whatever a previous boot
//!   left half-written), so a kernel that writes `0x01` and then drives the
//!   encoder still decodes. A defmt frame is never empty (it holds at least
//!   a two-byte index), so nothing is lost.
//! * A `0x00` met in text is dropped. That gives the kernel a way to
//!   resynchronise: a lone `0x00` (say, first thing in a panic handler that
//!   may have interrupted a half-written frame) ends any frame in progress
//!   and is otherwise invisible.
//!
//! What it leaves out: it does not decode anything (rzCOBS and defmt are the
//! `console` module's business, via `defmt-decoder`) and it does not
//! interpret text (no line splitting, no UTF-8 checks). Frames are capped at
//! [`MAX_FRAME`] bytes so that a lost terminator cannot make it buffer
//! forever; a longer "frame" is dropped and reported as [`Event::Overlong`].

/// The byte that opens a defmt frame.
pub const FRAME_START: u8 = 0x01;
/// The byte that closes a defmt frame.
pub const FRAME_END: u8 = 0x00;
/// The largest encoded frame accepted; a defmt log line is far smaller.
pub const MAX_FRAME: usize = 16 * 1024;

/// One piece of the stream, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Console text (any length, possibly a fragment of a line).
    Text(&'a [u8]),
    /// The rzCOBS bytes of one complete frame, without `0x01` and `0x00`.
    Frame(&'a [u8]),
    /// A frame grew past [`MAX_FRAME`]; its bytes were discarded up to the
    /// next `0x00`.
    Overlong,
    /// The stream ended inside a frame; these are the bytes received so far.
    Truncated(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: bytes are text.
    Text,
    /// After `0x01`: bytes are collected until `0x00`.
    Frame,
    /// After an overlong frame: bytes are skipped until `0x00`.
    Skip,
}

/// The demultiplexer: feed it bytes with [`Demux::push`], end with
/// [`Demux::finish`].
#[derive(Debug)]
pub struct Demux {
    state: State,
    frame: Vec<u8>,
}

impl Default for Demux {
    fn default() -> Self {
        Self::new()
    }
}

impl Demux {
    /// A demultiplexer at the start of a stream (in text).
    pub fn new() -> Self {
        Self { state: State::Text, frame: Vec::new() }
    }

    /// Consumes `bytes`, reporting every complete piece to `sink` in order.
    /// Text is reported as soon as it arrives; a frame once its `0x00` has.
    pub fn push(&mut self, mut bytes: &[u8], mut sink: impl FnMut(Event<'_>)) {
        while !bytes.is_empty() {
            match self.state {
                State::Text => {
                    match bytes.iter().position(|&b| b == FRAME_START || b == FRAME_END) {
                        None => {
                            sink(Event::Text(bytes));
                            bytes = &[];
                        }
                        Some(at) => {
                            if at > 0 {
                                sink(Event::Text(&bytes[..at]));
                            }
                            if bytes[at] == FRAME_START {
                                self.state = State::Frame;
                                self.frame.clear();
                            }
                            // A stray FRAME_END in text is dropped.
                            bytes = &bytes[at + 1..];
                        }
                    }
                }
                State::Frame if self.frame.is_empty() && bytes[0] == FRAME_END => {
                    // Leading zeros of a frame (see the module docs).
                    bytes = &bytes[1..];
                }
                State::Frame => {
                    let end = bytes.iter().position(|&b| b == FRAME_END);
                    let chunk = &bytes[..end.unwrap_or(bytes.len())];
                    if self.frame.len() + chunk.len() > MAX_FRAME {
                        self.frame.clear();
                        sink(Event::Overlong);
                        self.state = if end.is_some() { State::Text } else { State::Skip };
                    } else {
                        self.frame.extend_from_slice(chunk);
                        if end.is_some() {
                            sink(Event::Frame(&self.frame));
                            self.frame.clear();
                            self.state = State::Text;
                        }
                    }
                    bytes = match end {
                        Some(at) => &bytes[at + 1..],
                        None => &[],
                    };
                }
                State::Skip => match bytes.iter().position(|&b| b == FRAME_END) {
                    Some(at) => {
                        self.state = State::Text;
                        bytes = &bytes[at + 1..];
                    }
                    None => bytes = &[],
                },
            }
        }
    }

    /// Ends the stream: reports a frame left unfinished, if any, and resets
    /// the demultiplexer to text.
    pub fn finish(&mut self, mut sink: impl FnMut(Event<'_>)) {
        if self.state == State::Frame {
            sink(Event::Truncated(&self.frame));
        }
        self.frame.clear();
        self.state = State::Text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An owned copy of an [`Event`], to collect in tests.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        Frame(Vec<u8>),
        Overlong,
        Truncated(Vec<u8>),
    }

    fn own(event: Event<'_>) -> Owned {
        match event {
            Event::Text(t) => Owned::Text(t.to_vec()),
            Event::Frame(f) => Owned::Frame(f.to_vec()),
            Event::Overlong => Owned::Overlong,
            Event::Truncated(f) => Owned::Truncated(f.to_vec()),
        }
    }

    /// Feeds `chunks` one after the other, then finishes; merges adjacent
    /// text events so that results do not depend on chunking.
    fn run(chunks: &[&[u8]]) -> Vec<Owned> {
        let mut demux = Demux::new();
        let mut out: Vec<Owned> = Vec::new();
        let mut add = |e: Event<'_>| match (out.last_mut(), own(e)) {
            (Some(Owned::Text(prev)), Owned::Text(more)) => prev.extend(more),
            (_, e) => out.push(e),
        };
        for chunk in chunks {
            demux.push(chunk, &mut add);
        }
        demux.finish(&mut add);
        out
    }

    fn text(s: &str) -> Owned {
        Owned::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(run(&[b"Tern 0.1\nboard: rpi4\n"]), [text("Tern 0.1\nboard: rpi4\n")]);
    }

    #[test]
    fn frame_between_text() {
        let got = run(&[b"a\n\x01\x05\x01\x02\x00b\n"]);
        assert_eq!(got, [text("a\n"), Owned::Frame(vec![5, 1, 2]), text("b\n")]);
    }

    #[test]
    fn frame_split_across_every_boundary() {
        let stream: &[u8] = b"xy\x01\x10\x20\x01\x30\x00z\x01\x40\x00";
        let want = run(&[stream]);
        assert_eq!(
            want,
            [text("xy"), Owned::Frame(vec![0x10, 0x20, 0x01, 0x30]), text("z"), Owned::Frame(vec![0x40]),]
        );
        // Every split point, and byte by byte.
        for cut in 0..=stream.len() {
            assert_eq!(run(&[&stream[..cut], &stream[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), want);
    }

    #[test]
    fn back_to_back_frames() {
        let got = run(&[b"\x01\x07\x00\x01\x08\x00\x01\x09\x00"]);
        assert_eq!(got, [Owned::Frame(vec![7]), Owned::Frame(vec![8]), Owned::Frame(vec![9])]);
    }

    #[test]
    fn zeros_right_after_frame_start_are_skipped() {
        // defmt's Encoder opens its first frame with 0x00.
        let stream: &[u8] = b"a\x01\x00\x00\x01\x08\x00b";
        let want = [text("a"), Owned::Frame(vec![1, 8]), text("b")];
        assert_eq!(run(&[stream]), want);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), want);
    }

    #[test]
    fn stray_zero_in_text_is_dropped() {
        assert_eq!(run(&[b"ab\x00\x00cd"]), [text("abcd")]);
    }

    #[test]
    fn zero_resynchronises_a_half_written_frame() {
        // The kernel panicked mid-frame, wrote 0x00, then text.
        let got = run(&[b"\x01\x11\x22", b"\x00panic!\n"]);
        assert_eq!(got, [Owned::Frame(vec![0x11, 0x22]), text("panic!\n")]);
    }

    #[test]
    fn truncated_frame_is_reported_at_end() {
        assert_eq!(run(&[b"hi\x01\x09\x09"]), [text("hi"), Owned::Truncated(vec![9, 9])]);
    }

    #[test]
    fn overlong_frame_is_dropped_and_text_resumes() {
        let big = vec![0x55u8; MAX_FRAME + 1];
        let mut stream = vec![FRAME_START];
        stream.extend(&big);
        stream.extend(b"\x00after");
        assert_eq!(run(&[&stream]), [Owned::Overlong, text("after")]);
        // Same, with the overflow detected before the terminator arrives.
        let (a, b) = stream.split_at(MAX_FRAME + 2);
        assert_eq!(run(&[a, b]), [Owned::Overlong, text("after")]);
    }

    #[test]
    fn frame_of_exactly_max_size_is_kept() {
        let mut stream = vec![FRAME_START];
        stream.extend(vec![0x33u8; MAX_FRAME]);
        stream.push(FRAME_END);
        assert_eq!(run(&[&stream]), [Owned::Frame(vec![0x33; MAX_FRAME])]);
    }
}
