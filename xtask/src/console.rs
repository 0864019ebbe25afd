//! Turning the kernel's UART stream into what a person (or a test) reads.
//!
//! [`Console`] sits between QEMU's stdout and wherever the output goes (the
//! terminal for `cargo xtask qemu`, a buffer for the integration tests). It
//! runs the bytes through the [`Demux`], writes console text through
//! unchanged and the moment it arrives (so an interactive prompt shows up
//! without a newline), and replaces each defmt frame by one line,
//! `<LEVEL padded to 5> <message>`, e.g. `INFO  memory: 1024 MiB`. If a
//! frame lands in the middle of a text line, a newline is inserted first so
//! the log line always stands on its own.
//!
//! Decoding is [`LogDecoder`]'s job, built on `defmt-decoder`: the table of
//! format strings comes out of the kernel ELF once (`Table::parse`), and
//! each frame, already cut out by the demultiplexer, is handed to a fresh
//! rzCOBS stream decoder together with its `0x00` terminator. That keeps the
//! stream decoder's buffering out of the picture: a bad frame can never
//! swallow the next one. Anything that goes wrong (bad rzCOBS, unknown
//! index, short arguments, even a panic inside the decoder) becomes the line
//! `[defmt: undecodable frame]`; the console never stops because of a frame.
//! Source locations (from DWARF) are optional and off by default: they cost
//! a DWARF walk at start-up and make lines longer.
//!
//! What it leaves out: colours, defmt timestamps (the kernel defines none,
//! and the line format has no place for one), and `println!`-style frames
//! get no level column, just their message. The frame formatter is a plain
//! closure so the presentation logic is unit-tested without an ELF.

use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Context, Result};
use defmt_decoder::{Locations, Table};
use defmt_parser::Level;

use crate::demux::{Demux, Event};

/// The line printed for a frame that cannot be decoded.
pub const UNDECODABLE: &str = "[defmt: undecodable frame]";

/// Decodes single defmt frames using the table from a kernel ELF.
pub struct LogDecoder {
    table: Option<Table>,
    locations: Option<Locations>,
}

impl LogDecoder {
    /// Reads the defmt table (and, if `locations`, the source locations)
    /// from the ELF file's bytes. An ELF without a `.defmt` section is not
    /// an error: frames then decode to a short notice.
    pub fn from_elf(elf: &[u8], locations: bool) -> Result<Self> {
        let table = Table::parse(elf).context("reading the defmt table from the kernel ELF")?;
        let locations = match (&table, locations) {
            (Some(table), true) => {
                let locs = table.get_locations(elf).context("reading defmt locations")?;
                // An ELF without debug info gives an empty map: treat as none.
                (!locs.is_empty()).then_some(locs)
            }
            _ => None,
        };
        Ok(Self { table, locations })
    }

    /// Formats one frame (its rzCOBS bytes, without `0x01`/`0x00`) as a
    /// line without the trailing newline.
    pub fn line(&self, frame: &[u8]) -> String {
        let Some(table) = &self.table else {
            return "[defmt: frame received, but the ELF has no defmt table]".to_string();
        };
        // The decoder unwraps in places; a malformed frame must not take the
        // console down with it.
        catch_unwind(AssertUnwindSafe(|| self.decode(table, frame)))
            .ok()
            .flatten()
            .unwrap_or_else(|| UNDECODABLE.to_string())
    }

    fn decode(&self, table: &Table, frame: &[u8]) -> Option<String> {
        if frame.is_empty() {
            return None;
        }
        let mut stream = table.new_stream_decoder();
        stream.received(frame);
        stream.received(&[0]);
        let frame = stream.decode().ok()?;
        let message = frame.display_message().to_string();
        let mut line = match frame.level() {
            Some(level) => format!("{:<5} {message}", level_name(level)),
            None => message,
        };
        if let Some(loc) = self.locations.as_ref().and_then(|l| l.get(&frame.index())) {
            line.push_str(&format!("  ({}:{})", loc.file.display(), loc.line));
        }
        Some(line)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

/// The presenter: demultiplexes bytes and writes text plus decoded log
/// lines to `out`, in arrival order.
pub struct Console<W, F> {
    demux: Demux,
    out: W,
    format_frame: F,
    at_line_start: bool,
}

impl<W: Write, F: FnMut(&[u8]) -> String> Console<W, F> {
    /// A console writing to `out`, formatting frames with `format_frame`
    /// (normally `|f| decoder.line(f)`).
    pub fn new(out: W, format_frame: F) -> Self {
        Self { demux: Demux::new(), out, format_frame, at_line_start: true }
    }

    /// Processes a chunk of the stream and flushes `out`.
    pub fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Self { demux, out, format_frame, at_line_start } = self;
        let mut result = Ok(());
        demux.push(bytes, |event| {
            if result.is_ok() {
                result = emit(out, format_frame, at_line_start, event);
            }
        });
        result?;
        self.out.flush()
    }

    /// Ends the stream (reporting a frame cut short) and returns `out`.
    pub fn finish(mut self) -> io::Result<W> {
        let Self { demux, out, format_frame, at_line_start } = &mut self;
        let mut result = Ok(());
        demux.finish(|event| result = emit(out, format_frame, at_line_start, event));
        result?;
        if !self.at_line_start {
            // Leave the terminal (or the buffer) at the start of a line.
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn emit<W: Write>(
    out: &mut W,
    format_frame: &mut impl FnMut(&[u8]) -> String,
    at_line_start: &mut bool,
    event: Event<'_>,
) -> io::Result<()> {
    let line = match event {
        Event::Text(text) => {
            out.write_all(text)?;
            if let Some(&last) = text.last() {
                *at_line_start = last == b'\n';
            }
            return Ok(());
        }
        Event::Frame(frame) => format_frame(frame),
        Event::Overlong => format!("[defmt: frame longer than {} bytes dropped]", crate::demux::MAX_FRAME),
        Event::Truncated(bytes) => {
            format!("[defmt: output ended inside a frame ({} bytes)]", bytes.len())
        }
    };
    if !*at_line_start {
        out.write_all(b"\n")?;
    }
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    *at_line_start = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the console over `chunks` with a fake frame formatter that
    /// shows the frame's bytes.
    fn present(chunks: &[&[u8]]) -> String {
        let mut console = Console::new(Vec::new(), |f: &[u8]| format!("INFO  frame {f:?}"));
        for chunk in chunks {
            console.feed(chunk).unwrap();
        }
        String::from_utf8(console.finish().unwrap()).unwrap()
    }

    #[test]
    fn text_and_frames_interleave_in_order() {
        assert_eq!(present(&[b"Tern\n\x01\x02\x03\x00board: rpi4\n"]), "Tern\nINFO  frame [2, 3]\nboard: rpi4\n");
    }

    #[test]
    fn frame_mid_line_gets_its_own_line() {
        assert_eq!(present(&[b"prompt> ", b"\x01\x04\x00", b"typed\n"]), "prompt> \nINFO  frame [4]\ntyped\n");
    }

    #[test]
    fn unfinished_text_line_is_closed_at_the_end() {
        assert_eq!(present(&[b"no newline"]), "no newline\n");
    }

    #[test]
    fn truncated_and_overlong_frames_are_reported() {
        assert_eq!(present(&[b"x\n\x01\x05\x05"]), "x\n[defmt: output ended inside a frame (2 bytes)]\n");
        let mut big = vec![1u8];
        big.extend(vec![7u8; crate::demux::MAX_FRAME + 1]);
        big.extend(b"\0ok\n");
        assert_eq!(
            present(&[&big]),
            format!("[defmt: frame longer than {} bytes dropped]\nok\n", crate::demux::MAX_FRAME)
        );
    }

    #[test]
    fn decoder_without_table_never_panics() {
        let decoder = LogDecoder { table: None, locations: None };
        assert!(decoder.line(&[1, 2, 3]).starts_with("[defmt:"));
    }

    /// A defmt table as `Table::parse` would build it from an ELF, written
    /// out as the JSON that `Table`'s serde derive accepts.
    fn decoder() -> LogDecoder {
        let table = serde_json::from_str(
            r#"{"timestamp": null, "bitflags": {}, "encoding": "Rzcobs", "entries": {
                "1": {"string": {"tag": "Info", "string": "memory: {=u32} MiB"}, "raw_symbol": "a"},
                "2": {"string": {"tag": "Error", "string": "bad {=u8}"}, "raw_symbol": "b"},
                "3": {"string": {"tag": "Println", "string": "plain"}, "raw_symbol": "c"}
            }}"#,
        )
        .unwrap();
        LogDecoder { table: Some(table), locations: None }
    }

    /// rzCOBS encoding without the final `0x00` (a port of defmt's encoder).
    fn rzcobs(data: &[u8]) -> Vec<u8> {
        let (mut out, mut run, mut zeros) = (Vec::new(), 0u8, 0u8);
        for &byte in data {
            if run < 7 {
                if byte == 0 {
                    zeros |= 1 << run;
                } else {
                    out.push(byte);
                }
                run += 1;
                if run == 7 && zeros != 0 {
                    out.push(zeros);
                    (run, zeros) = (0, 0);
                }
            } else if byte == 0 {
                out.push((run - 7) | 0x80);
                (run, zeros) = (0, 0);
            } else {
                out.push(byte);
                run += 1;
                if run == 134 {
                    out.push(0xFF);
                    (run, zeros) = (0, 0);
                }
            }
        }
        match run {
            0 => {}
            1..=6 => out.push((zeros | (0xFF << run)) & 0x7F),
            _ => out.push((run - 7) | 0x80),
        }
        out
    }

    #[test]
    fn decodes_real_frames() {
        let d = decoder();
        // Index 1 (u16 LE), then 1024 as u32 LE.
        assert_eq!(d.line(&rzcobs(&[1, 0, 0, 4, 0, 0])), "INFO  memory: 1024 MiB");
        assert_eq!(d.line(&rzcobs(&[2, 0, 7])), "ERROR bad 7");
        assert_eq!(d.line(&rzcobs(&[3, 0])), "plain");
    }

    #[test]
    fn bad_frames_become_one_short_line() {
        let d = decoder();
        for bad in [
            vec![],
            rzcobs(&[9, 0]),       // unknown index
            rzcobs(&[0xff, 0xff]), // unknown index
            vec![0x80],            // rzCOBS asking for more bytes than there are
            vec![0x55; 300],
        ] {
            assert_eq!(d.line(&bad), UNDECODABLE, "frame {bad:?}");
        }
    }

    #[test]
    fn whole_stream_through_console_with_real_decoder() {
        let d = decoder();
        let mut wire = b"Tern 0.1\n".to_vec();
        wire.push(1);
        wire.extend(rzcobs(&[1, 0, 0, 2, 0, 0]));
        wire.push(0);
        wire.extend(b"board: rpi4\n\x01\x80\x00done\n");
        let mut console = Console::new(Vec::new(), |f: &[u8]| d.line(f));
        for byte in wire.chunks(3) {
            console.feed(byte).unwrap();
        }
        assert_eq!(
            String::from_utf8(console.finish().unwrap()).unwrap(),
            "Tern 0.1\nINFO  memory: 512 MiB\nboard: rpi4\n[defmt: undecodable frame]\ndone\n"
        );
    }

    #[test]
    fn level_column_is_five_wide() {
        assert_eq!(format!("{:<5} m", level_name(Level::Info)), "INFO  m");
        assert_eq!(format!("{:<5} m", level_name(Level::Error)), "ERROR m");
        assert_eq!(format!("{:<5} m", level_name(Level::Warn)), "WARN  m");
    }
}
