//! The last lines an instance printed, kept in memory while it lives (its log file keeps all),
//! and the splitter that turns an instance's raw output into those lines.

use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Longest line kept, in bytes. A process that prints without newlines must not make valet
/// buffer its whole output, so anything past this is dropped up to the next newline.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Appended to a line that was cut, so a reader knows the rest is missing.
pub const CUT_MARK: &str = " [line cut]";

/// Lines a follower may fall behind before it is told it missed some.
const FOLLOW_BACKLOG: usize = 1024;

/// A bounded ring of output lines, with live followers (`valet logs -f`, the dashboard).
#[derive(Debug)]
pub struct LogRing {
    capacity: usize,
    lines: Mutex<VecDeque<String>>,
    /// New lines for followers. Followers end (`Closed`) when the ring is dropped, which
    /// happens once the process is gone and its output is drained.
    follow: broadcast::Sender<String>,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            lines: Mutex::new(VecDeque::new()),
            follow: broadcast::channel(FOLLOW_BACKLOG).0,
        }
    }

    pub fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        // Sent under the lock, so `tail_and_follow` sees every line exactly once. Without
        // followers (the usual case) this costs one atomic load, no clone.
        if self.follow.receiver_count() > 0 {
            let _ = self.follow.send(line.clone());
        }
        lines.push_back(line);
    }

    /// The last `n` lines and every line after them, with neither a gap nor a repeat.
    pub fn tail_and_follow(&self, n: usize) -> (Vec<String>, broadcast::Receiver<String>) {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let follower = self.follow.subscribe();
        let tail = lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect();
        (tail, follower)
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// Splits a byte stream that arrives in arbitrary chunks into lines of at most
/// [`MAX_LINE_BYTES`]. Output is not trusted to be UTF-8; invalid bytes become U+FFFD.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The unfinished line so far (never longer than `MAX_LINE_BYTES`).
    partial: Vec<u8>,
    /// Set after a cut: the rest of the current line is skipped until its newline.
    skipping: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk; calls `emit` for every line it completes, without the newline.
    pub fn feed(&mut self, mut chunk: &[u8], mut emit: impl FnMut(String)) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (piece, rest) = match newline {
                Some(at) => (&chunk[..at], &chunk[at + 1..]),
                None => (chunk, &chunk[chunk.len()..]),
            };
            chunk = rest;
            if !self.skipping {
                let room = MAX_LINE_BYTES - self.partial.len();
                if piece.len() > room {
                    self.partial.extend_from_slice(&piece[..room]);
                    let mut line = self.take();
                    line.push_str(CUT_MARK);
                    emit(line);
                    self.skipping = true;
                } else {
                    self.partial.extend_from_slice(piece);
                }
            }
            if newline.is_some() {
                if self.skipping {
                    self.skipping = false;
                } else {
                    emit(self.take());
                }
            }
        }
    }

    /// Ends the stream: a last line without a newline is still a line.
    pub fn finish(&mut self, emit: impl FnOnce(String)) {
        if !self.partial.is_empty() {
            emit(self.take());
        }
        self.skipping = false;
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |l| lines.push(l));
        }
        splitter.finish(|l| lines.push(l));
        lines
    }

    #[test]
    fn lines_may_span_chunks_and_lose_their_carriage_return() {
        let lines = split(&[b"hel", b"lo\r\nwor", b"ld\n\nlast"]);
        assert_eq!(lines, ["hello", "world", "", "last"]);
    }

    #[test]
    fn a_long_line_is_cut_and_its_rest_skipped() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let lines = split(&[&long[..100], &long[100..], b"tail\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES + CUT_MARK.len());
        assert!(lines[0].ends_with(CUT_MARK));
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn endless_output_without_newline_stays_bounded() {
        let mut splitter = LineSplitter::new();
        let chunk = vec![b'y'; 4096];
        let mut count = 0;
        for _ in 0..1000 {
            splitter.feed(&chunk, |_| count += 1);
            assert!(splitter.partial.len() <= MAX_LINE_BYTES);
        }
        assert_eq!(count, 1);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(split(&[b"a\xffb\n"]), ["a\u{fffd}b"]);
    }

    #[test]
    fn followers_get_every_line_after_the_tail() {
        let ring = LogRing::new(10);
        ring.push("old".into());
        let (tail, mut follower) = ring.tail_and_follow(5);
        ring.push("new".into());
        assert_eq!(tail, ["old"]);
        assert_eq!(follower.try_recv().unwrap(), "new");
        drop(ring);
        assert!(matches!(
            follower.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn ring_keeps_the_newest_lines() {
        let ring = LogRing::new(2);
        for l in ["a", "b", "c"] {
            ring.push(l.to_string());
        }
        assert_eq!(ring.tail(10), ["b", "c"]);
        assert_eq!(ring.tail(1), ["c"]);
    }
}
