//! A RUN step's output: split into lines, each prefixed with the step
//! (`[build 2/5] make: …`) and handed to the progress sink (so bars keep drawing around
//! it), and the last lines kept for the error when the step fails.

use std::collections::VecDeque;

use regbuild_registry::progress::{Event, Progress};

/// Lines kept for a failing step's error.
pub const TAIL_LINES: usize = 20;
/// A line longer than this is cut (a progress bar without newlines must not grow memory).
const MAX_LINE: usize = 16 * 1024;

/// Turns output chunks into prefixed lines.
pub struct StepLog<'a> {
    prefix: String,
    progress: &'a dyn Progress,
    partial: [Vec<u8>; 2],
    /// A carriage return seen last on each stream: a redraw, unless a newline follows.
    cr: [bool; 2],
    tail: VecDeque<String>,
}

impl<'a> StepLog<'a> {
    pub fn new(prefix: String, progress: &'a dyn Progress) -> StepLog<'a> {
        StepLog {
            prefix,
            progress,
            partial: [Vec::new(), Vec::new()],
            cr: [false, false],
            tail: VecDeque::with_capacity(TAIL_LINES),
        }
    }

    /// Says a line of its own (the step's header).
    pub fn say(&mut self, text: &str) {
        self.progress
            .event(Event::StepOutput(&format!("{} {text}", self.prefix)));
    }

    /// A chunk of the step's stdout (`stream` 0) or stderr (1).
    pub fn chunk(&mut self, stream: usize, bytes: &[u8]) {
        let stream = stream.min(1);
        for &b in bytes {
            // A carriage return redraws a line (progress meters): the text after it replaces
            // the line, but `\r\n` simply ends it.
            if std::mem::take(&mut self.cr[stream]) && b != b'\n' {
                self.partial[stream].clear();
            }
            match b {
                b'\n' => self.flush(stream),
                b'\r' => self.cr[stream] = true,
                _ if self.partial[stream].len() < MAX_LINE => self.partial[stream].push(b),
                _ => {}
            }
        }
    }

    fn flush(&mut self, stream: usize) {
        let line = String::from_utf8_lossy(&self.partial[stream]).into_owned();
        self.partial[stream].clear();
        self.progress
            .event(Event::StepOutput(&format!("{} {line}", self.prefix)));
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Flushes unterminated lines and returns the last lines printed.
    pub fn finish(mut self) -> Vec<String> {
        for s in 0..2 {
            if !self.partial[s].is_empty() {
                self.flush(s);
            }
        }
        self.tail.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Capture(Mutex<Vec<String>>);
    impl Progress for Capture {
        fn event(&self, e: Event<'_>) {
            if let Event::StepOutput(l) = e {
                self.0.lock().unwrap().push(l.to_string());
            }
        }
    }

    #[test]
    fn lines_are_prefixed_split_across_chunks_and_the_tail_is_bounded() {
        let cap = Capture::default();
        let mut log = StepLog::new("[b 1/2]".into(), &cap);
        log.chunk(0, b"hel");
        log.chunk(0, b"lo\nwor");
        log.chunk(1, b"err\n");
        log.chunk(0, b"ld");
        for i in 0..30 {
            log.chunk(1, format!("{i}\n").as_bytes());
        }
        log.chunk(1, b"10%\r50%\r100%\n");
        log.chunk(1, b"dos line\r");
        log.chunk(1, b"\n");
        let tail = log.finish();
        let lines = cap.0.lock().unwrap().clone();
        assert_eq!(lines[0], "[b 1/2] hello");
        assert_eq!(lines[1], "[b 1/2] err");
        assert_eq!(lines.last().unwrap(), "[b 1/2] world");
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[TAIL_LINES - 3], "100%");
        assert_eq!(tail[TAIL_LINES - 2], "dos line", "CRLF ends a line");
        assert_eq!(tail[TAIL_LINES - 1], "world");
    }
}
