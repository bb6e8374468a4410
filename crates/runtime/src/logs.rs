//! The last lines an instance printed, kept in memory while it lives (its log file keeps all).

use std::collections::VecDeque;
use std::sync::Mutex;

/// A bounded ring of output lines.
#[derive(Debug)]
pub struct LogRing {
    capacity: usize,
    lines: Mutex<VecDeque<String>>,
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), lines: Mutex::new(VecDeque::new()) }
    }

    pub fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().skip(lines.len().saturating_sub(n)).cloned().collect()
    }
}
