//! The line discipline: keystrokes in, an edited line (or a signal) and
//! the echo out.
//!
//! [`Editor::feed`] takes one byte as a terminal sends it and says what it
//! means: nothing yet (a character added, a cursor moved), a finished
//! [`Event::Line`], or an [`Event::Signal`]; what the terminal must show
//! is appended to an echo buffer as it goes (plain VT100 sequences: `ESC
//! [ n D` moves left, `ESC [ K` clears to the end of the line). It is pure
//! data, no kernel calls, so all of it is tested on the host.
//!
//! Keys: printable ASCII is inserted at the cursor; Backspace (`^H`) and
//! DEL delete before it; `^U` kills the whole line; Enter (`\r`, `\n`, or
//! `\r\n` as one) ends it; the arrows (`ESC [ A`/`B`/`C`/`D`, or the `ESC
//! O` forms) walk the history (up older, down newer, down past the newest
//! back to an empty line) and move the cursor. `^C` discards the line
//! being typed (echoing `^C`) and is [`Signal::Interrupt`]; `^Z` is
//! [`Signal::Suspend`] and leaves the line alone (nothing is echoed: the
//! shell says what it did with the job).
//!
//! Left out: bytes outside printable ASCII (UTF-8 input is ignored, for
//! now), word-wise editing (`^W`, Alt-arrows), Home/End, tab completion,
//! and lines wider than the terminal (the cursor sequences assume the line
//! fits on one row).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Longest line, in bytes: keys past it are ignored.
pub const LINE_MAX: usize = 1024;
/// Lines remembered for the arrows.
pub const HISTORY_MAX: usize = 32;

/// A key the line discipline does not keep as text but hands on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `^C`: interrupt the foreground job.
    Interrupt,
    /// `^Z`: suspend the foreground job.
    Suspend,
}

impl Signal {
    /// Its code on the wire: the control character itself.
    pub const fn code(self) -> u8 {
        match self {
            Signal::Interrupt => 0x03,
            Signal::Suspend => 0x1a,
        }
    }

    /// The signal a code stands for.
    pub const fn from_code(code: u8) -> Option<Signal> {
        match code {
            0x03 => Some(Signal::Interrupt),
            0x1a => Some(Signal::Suspend),
            _ => None,
        }
    }
}

/// What a key meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter: the line, without its terminator.
    Line(Vec<u8>),
    /// `^C` or `^Z`.
    Signal(Signal),
}

/// Where in an escape sequence the editor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After `ESC`.
    Started,
    /// After `ESC [` or `ESC O`.
    Introduced,
}

/// The line being edited, the history, and the state of the keys.
#[derive(Clone, Debug)]
pub struct Editor {
    line: Vec<u8>,
    cursor: usize,
    history: VecDeque<Vec<u8>>,
    /// Which history entry the line shows (0 newest), while browsing.
    browsing: Option<usize>,
    escape: Escape,
    /// The last key was `\r` (a `\n` right after it is the same Enter).
    after_return: bool,
}

impl Default for Editor {
    fn default() -> Self {
        Self::new()
    }
}

impl Editor {
    /// An empty line and no history.
    pub const fn new() -> Self {
        Editor {
            line: Vec::new(),
            cursor: 0,
            history: VecDeque::new(),
            browsing: None,
            escape: Escape::None,
            after_return: false,
        }
    }

    /// The line typed so far.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The cursor's place in the line.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The remembered lines, newest first.
    pub fn history(&self) -> impl Iterator<Item = &[u8]> {
        self.history.iter().map(Vec::as_slice)
    }

    /// Show the line typed so far again (after a prompt), cursor and all.
    pub fn redraw(&self, echo: &mut Vec<u8>) {
        echo.extend_from_slice(&self.line);
        move_left(echo, self.line.len() - self.cursor);
    }

    /// Take one byte of input; what it ended, if anything. What the
    /// terminal must show goes on the end of `echo`.
    pub fn feed(&mut self, byte: u8, echo: &mut Vec<u8>) -> Option<Event> {
        let after_return = core::mem::take(&mut self.after_return);
        match (self.escape, byte) {
            (Escape::Started, b'[' | b'O') => {
                self.escape = Escape::Introduced;
                return None;
            }
            (Escape::Introduced, b'0'..=b'9' | b';') => return None,
            (Escape::Introduced, key) => {
                self.escape = Escape::None;
                self.arrow(key, echo);
                return None;
            }
            (Escape::Started, _) => self.escape = Escape::None,
            (Escape::None, _) => {}
        }
        match byte {
            0x1b => self.escape = Escape::Started,
            b'\r' | b'\n' => {
                if byte == b'\n' && after_return {
                    return None;
                }
                self.after_return = byte == b'\r';
                echo.extend_from_slice(b"\r\n");
                let line = self.take_line();
                if !line.is_empty() && self.history.front() != Some(&line) {
                    self.history.push_front(line.clone());
                    self.history.truncate(HISTORY_MAX);
                }
                return Some(Event::Line(line));
            }
            0x03 => {
                echo.extend_from_slice(b"^C\r\n");
                self.take_line();
                return Some(Event::Signal(Signal::Interrupt));
            }
            0x1a => return Some(Event::Signal(Signal::Suspend)),
            0x08 | 0x7f => self.delete_before(echo),
            0x15 => {
                self.clear_shown(echo);
                self.line.clear();
                self.cursor = 0;
                self.browsing = None;
            }
            0x20..=0x7e => self.insert(byte, echo),
            _ => {}
        }
        None
    }

    /// The line, taken (the editor starts a new, empty one).
    fn take_line(&mut self) -> Vec<u8> {
        self.cursor = 0;
        self.browsing = None;
        core::mem::take(&mut self.line)
    }

    fn insert(&mut self, byte: u8, echo: &mut Vec<u8>) {
        if self.line.len() >= LINE_MAX {
            return;
        }
        self.line.insert(self.cursor, byte);
        self.cursor += 1;
        echo.extend_from_slice(&self.line[self.cursor - 1..]);
        move_left(echo, self.line.len() - self.cursor);
    }

    fn delete_before(&mut self, echo: &mut Vec<u8>) {
        if self.cursor == 0 {
            return;
        }
        self.cursor -= 1;
        self.line.remove(self.cursor);
        echo.push(0x08);
        echo.extend_from_slice(&self.line[self.cursor..]);
        echo.push(b' ');
        move_left(echo, self.line.len() - self.cursor + 1);
    }

    /// The key that ended an `ESC [` sequence.
    fn arrow(&mut self, key: u8, echo: &mut Vec<u8>) {
        match key {
            b'A' => {
                let next = self.browsing.map_or(0, |index| index + 1);
                if next < self.history.len() {
                    self.browsing = Some(next);
                    self.show(self.history[next].clone(), echo);
                }
            }
            b'B' => match self.browsing {
                Some(0) => {
                    self.browsing = None;
                    self.show(Vec::new(), echo);
                }
                Some(index) => {
                    self.browsing = Some(index - 1);
                    self.show(self.history[index - 1].clone(), echo);
                }
                None => {}
            },
            b'C' if self.cursor < self.line.len() => {
                echo.extend_from_slice(&self.line[self.cursor..=self.cursor]);
                self.cursor += 1;
            }
            b'D' if self.cursor > 0 => {
                self.cursor -= 1;
                move_left(echo, 1);
            }
            _ => {}
        }
    }

    /// Replace the line with `line`, cursor at its end.
    fn show(&mut self, line: Vec<u8>, echo: &mut Vec<u8>) {
        self.clear_shown(echo);
        echo.extend_from_slice(&line);
        self.cursor = line.len();
        self.line = line;
    }

    /// Erase the line from the terminal: to its start, then clear.
    fn clear_shown(&self, echo: &mut Vec<u8>) {
        move_left(echo, self.cursor);
        echo.extend_from_slice(b"\x1b[K");
    }
}

/// `ESC [ n D`: the cursor `n` columns left (nothing for 0).
fn move_left(echo: &mut Vec<u8>, columns: usize) {
    if columns == 0 {
        return;
    }
    echo.extend_from_slice(b"\x1b[");
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = columns;
    while rest > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    echo.extend_from_slice(&digits[at..]);
    echo.push(b'D');
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec;

    /// Feed `keys`; the events and the echo.
    fn typed(editor: &mut Editor, keys: &[u8]) -> (Vec<Event>, Vec<u8>) {
        let mut echo = Vec::new();
        let events = keys.iter().filter_map(|&key| editor.feed(key, &mut echo)).collect();
        (events, echo)
    }

    fn line(text: &str) -> Event {
        Event::Line(text.as_bytes().to_vec())
    }

    #[test]
    fn a_line_is_echoed_and_ends_at_enter() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"hello\r");
        assert_eq!(events, [line("hello")]);
        assert_eq!(echo, b"hello\r\n");
        let (events, _) = typed(&mut editor, b"a\r\nb\n");
        assert_eq!(events, [line("a"), line("b")], "\\r\\n is one Enter");
        let (events, _) = typed(&mut editor, b"\r\r");
        assert_eq!(events, [line(""), line("")]);
    }

    #[test]
    fn backspace_and_delete_remove_the_character_before_the_cursor() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"abc\x08\x7fx\r");
        assert_eq!(events, [line("ax")]);
        assert_eq!(echo, b"abc\x08 \x1b[1D\x08 \x1b[1Dx\r\n");
        let (events, echo) = typed(&mut editor, b"\x08\x7fq\r");
        assert_eq!(events, [line("q")], "nothing to delete at the start");
        assert_eq!(echo, b"q\r\n");
    }

    #[test]
    fn control_u_kills_the_line() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"junk\x15kept\r");
        assert_eq!(events, [line("kept")]);
        assert_eq!(echo, b"junk\x1b[4D\x1b[Kkept\r\n");
    }

    #[test]
    fn arrows_walk_the_history_newest_first() {
        let mut editor = Editor::new();
        typed(&mut editor, b"one\rtwo\rtwo\rthree\r\r");
        assert_eq!(editor.history().collect::<Vec<_>>(), [&b"three"[..], b"two", b"one"], "no repeats, no empties");
        let (events, _) = typed(&mut editor, b"\x1b[A\r");
        assert_eq!(events, [line("three")]);
        let (events, _) = typed(&mut editor, b"\x1b[A\x1b[A\x1b[A\r");
        assert_eq!(events, [line("one")]);
        let (events, _) = typed(&mut editor, b"\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\x1b[A\r");
        assert_eq!(events, [line("one")], "the oldest stays");
        let (events, _) = typed(&mut editor, b"\x1bOA\x1bOA\x1b[B\r");
        assert_eq!(events, [line("one")], "ESC O forms; down goes newer");
        let (events, echo) = typed(&mut editor, b"x\x1b[A\x1b[B\r");
        assert_eq!(events, [line("")], "down past the newest: an empty line");
        assert_eq!(echo, b"x\x1b[1D\x1b[Kone\x1b[3D\x1b[K\r\n");
    }

    #[test]
    fn left_and_right_move_the_cursor_and_insertion_follows_it() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"ac\x1b[Db\x1b[C\x1b[Cd\r");
        assert_eq!(events, [line("abcd")]);
        assert_eq!(echo, b"ac\x1b[1Dbc\x1b[1Dcd\r\n");
        let (events, _) = typed(&mut editor, b"xyz\x1b[D\x1b[D\x08\r");
        assert_eq!(events, [line("yz")]);
        let (events, _) = typed(&mut editor, b"\x1b[D\x1b[5;3H\x1b[Cz\r");
        assert_eq!(events, [line("z")], "unknown sequences are skipped whole");
    }

    #[test]
    fn control_c_discards_the_line_and_control_z_keeps_it() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"half\x03");
        assert_eq!(events, [Event::Signal(Signal::Interrupt)]);
        assert_eq!(echo, b"half^C\r\n");
        assert!(editor.line().is_empty());
        let (events, echo) = typed(&mut editor, b"ab\x1acd\r");
        assert_eq!(events, [Event::Signal(Signal::Suspend), line("abcd")]);
        assert_eq!(echo, b"abcd\r\n");
        assert_eq!(editor.history().next(), Some(&b"abcd"[..]), "a ^C'd line is not remembered");
        assert_eq!(editor.history().count(), 1);
    }

    #[test]
    fn other_bytes_are_ignored_and_lines_are_bounded() {
        let mut editor = Editor::new();
        let (events, echo) = typed(&mut editor, b"\x00\x01\x07a\xc3\xa9\x1bxb\r");
        assert_eq!(events, [line("axb")], "an ESC not followed by [ or O is dropped, the next byte kept");
        assert_eq!(echo, b"axb\r\n");
        let long = vec![b'z'; LINE_MAX + 10];
        let (_, _) = typed(&mut editor, &long);
        assert_eq!(editor.line().len(), LINE_MAX);
    }

    #[test]
    fn redraw_shows_a_half_typed_line_with_its_cursor() {
        let mut editor = Editor::new();
        typed(&mut editor, b"abc\x1b[D");
        let mut echo = Vec::new();
        editor.redraw(&mut echo);
        assert_eq!(echo, b"abc\x1b[1D");
        assert_eq!(editor.cursor(), 2);
    }

    #[test]
    fn signal_codes_round_trip() {
        for signal in [Signal::Interrupt, Signal::Suspend] {
            assert_eq!(Signal::from_code(signal.code()), Some(signal));
        }
        assert_eq!(Signal::from_code(b'c'), None);
    }
}
