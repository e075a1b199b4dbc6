//! Following a try's log as it grows: the new lines since the last look, and the last line
//! (what a running Spark job last said), for live progress in `dagctl test` and
//! `dagctl trigger --wait`.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// Most bytes read in one [`LogTail::poll`]; the rest waits for the next one.
const READ_LIMIT: u64 = 1 << 20;
/// Longest line kept whole; a longer one is cut (a log line is for a person to read).
const LINE_LIMIT: usize = 4096;

pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
    last: Option<String>,
}

impl LogTail {
    pub fn new(path: PathBuf) -> LogTail {
        LogTail { path, offset: 0, partial: String::new(), last: None }
    }

    /// The lines completed since the last call (a file that does not exist yet has none). A
    /// carriage return rewrites the line in progress, as on a terminal: only its final state
    /// is a line.
    pub fn poll(&mut self) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else { return Vec::new() };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Truncated or replaced: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let Ok(n) = file.take(READ_LIMIT).read_to_end(&mut bytes) else { return Vec::new() };
        self.offset += n as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let mut lines = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            let line = clean(&line);
            if !line.is_empty() {
                self.last = Some(line.clone());
            }
            lines.push(line);
        }
        if self.partial.len() > LINE_LIMIT * 4 {
            let keep = clean(&self.partial);
            self.partial = keep;
        }
        let pending = clean(&self.partial);
        if !pending.is_empty() {
            self.last = Some(pending);
        }
        lines
    }

    /// The line in progress (not ended by a newline), taken as ended: for a log that is done.
    pub fn finish(&mut self) -> Option<String> {
        let line = clean(&std::mem::take(&mut self.partial));
        (!line.is_empty()).then_some(line)
    }

    /// The last non-empty line seen, the one in progress included.
    pub fn last_line(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

/// A line as a person reads it: what follows its last carriage return, without control
/// characters or the trailing newline, at most [`LINE_LIMIT`] bytes.
fn clean(line: &str) -> String {
    let line = line.trim_end_matches(['\n', '\r']);
    let line = line.rsplit('\r').next().unwrap_or("");
    let mut out: String = line.chars().filter(|c| !c.is_control() || *c == '\t').collect();
    if out.len() > LINE_LIMIT {
        let mut cut = LINE_LIMIT;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn follows_a_growing_file_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut tail = LogTail::new(path.clone());
        assert!(tail.poll().is_empty(), "no file yet");
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "one\ntw").unwrap();
        assert_eq!(tail.poll(), ["one"]);
        assert_eq!(tail.last_line(), Some("tw"));
        write!(f, "o\n[Stage 1:>  (0 + 1) / 2]\r[Stage 1:=> (1 + 1) / 2]\rdone\n").unwrap();
        assert_eq!(tail.poll(), ["two", "done"]);
        write!(f, "\x1b[31mred\x1b[0m\n\n").unwrap();
        assert_eq!(tail.poll(), ["[31mred[0m", ""]);
        assert_eq!(tail.last_line(), Some("[31mred[0m"), "an empty line does not hide the last one");
        write!(f, "no newline at the end").unwrap();
        assert!(tail.poll().is_empty());
        assert_eq!(tail.finish().as_deref(), Some("no newline at the end"));
    }
}
