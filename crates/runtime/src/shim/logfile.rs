//! Docker's json-file log writer with size-based rotation, used by the shim.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use chrono::{SecondsFormat, Utc};

/// Docker splits lines longer than this into partial messages.
pub const MAX_LINE: usize = 16 * 1024;

pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
    /// Unterminated output per stream (0 stdout, 1 stderr), at most MAX_LINE bytes.
    pending: [Vec<u8>; 2],
}

const STREAMS: [&str; 2] = ["stdout", "stderr"];

impl LogFile {
    pub fn open(path: PathBuf, max_size: u64, max_files: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path,
            max_size,
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `data` from `stream`, emitting every complete line and 16 KiB partial chunks.
    pub fn write(&mut self, stream: usize, mut data: &[u8]) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[stream].len();
            let take = match data.iter().position(|b| *b == b'\n') {
                Some(i) if i < room => i + 1,
                _ => room.min(data.len()),
            };
            self.pending[stream].extend_from_slice(&data[..take]);
            data = &data[take..];
            let p = &self.pending[stream];
            if p.last() == Some(&b'\n') || p.len() >= MAX_LINE {
                let line = std::mem::take(&mut self.pending[stream]);
                self.emit(stream, &line);
                // Reuse the allocation for the next line.
                self.pending[stream] = line;
                self.pending[stream].clear();
            }
        }
    }

    /// Emits what is left of unterminated lines (at EOF).
    pub fn flush(&mut self) {
        for stream in 0..2 {
            if !self.pending[stream].is_empty() {
                let line = std::mem::take(&mut self.pending[stream]);
                self.emit(stream, &line);
            }
        }
        let _ = self.file.flush();
    }

    fn emit(&mut self, stream: usize, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let mut rec = String::with_capacity(line.len() + 80);
        rec.push_str("{\"log\":");
        rec.push_str(&serde_json::to_string(&text).unwrap_or_default());
        rec.push_str(",\"stream\":\"");
        rec.push_str(STREAMS[stream]);
        rec.push_str("\",\"time\":\"");
        rec.push_str(&Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true));
        rec.push_str("\"}\n");
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                // Logging must never stop the container; keep appending to the current file.
                eprintln!("shim: rotate {}: {e}", self.path.display());
            }
        }
        if self.file.write_all(rec.as_bytes()).is_ok() {
            self.size += rec.len() as u64;
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_files > 1 {
            let name = |i: u32| {
                let mut p = self.path.clone().into_os_string();
                p.push(format!(".{i}"));
                PathBuf::from(p)
            };
            let _ = std::fs::remove_file(name(self.max_files - 1));
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_rotation() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.log");
        let mut l = LogFile::open(path.clone(), 0, 1).unwrap();
        l.write(0, b"hel");
        l.write(0, b"lo\nwor");
        l.write(1, b"err\n");
        l.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["log"], "hello\n");
        assert_eq!(lines[1]["stream"], "stderr");
        assert_eq!(lines[2]["log"], "wor");

        let long = vec![b'x'; MAX_LINE + 10];
        let mut l = LogFile::open(d.path().join("long.log"), 0, 1).unwrap();
        l.write(0, &long);
        l.write(0, b"\n");
        let text = std::fs::read_to_string(d.path().join("long.log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["log"].as_str().unwrap().len(), MAX_LINE);
        assert_eq!(lines[1]["log"].as_str().unwrap().len(), 11);

        let rp = d.path().join("r.log");
        let mut l = LogFile::open(rp.clone(), 1000, 3).unwrap();
        for i in 0..200 {
            l.write(0, format!("line {i}\n").as_bytes());
        }
        for p in [
            rp.clone(),
            d.path().join("r.log.1"),
            d.path().join("r.log.2"),
        ] {
            assert!(
                std::fs::metadata(&p).unwrap().len() <= 1000,
                "{}",
                p.display()
            );
        }
        assert!(!d.path().join("r.log.3").exists());
    }
}
