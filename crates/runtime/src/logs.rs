//! Reads the json-file logs the shim writes (`docker logs`), following rotation.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::Error;

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub time: DateTime<Utc>,
    /// The bytes as logged, with the trailing newline when the line had one.
    pub bytes: Bytes,
}

/// What to read, as `docker logs` options.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub follow: bool,
    /// Only the last N matching entries of what exists when reading starts.
    pub tail: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub stdout: bool,
    pub stderr: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            follow: false,
            tail: None,
            since: None,
            until: None,
            stdout: true,
            stderr: true,
        }
    }
}

#[derive(Deserialize)]
struct Record {
    log: String,
    stream: String,
    time: DateTime<Utc>,
}

const POLL: Duration = Duration::from_millis(100);

/// Reads the log at `path` (and its rotated files `path.1`, … oldest last). With `follow`,
/// keeps reading new lines until the stream is dropped. Must be called within tokio.
pub fn read(path: &Path, opts: ReadOptions) -> BoxStream<'static, Result<LogEntry, Error>> {
    read_until(path, opts, std::future::pending())
}

/// Like [`read`], but a follow also ends (after draining what was written) once `stop`
/// resolves, e.g. when the container exits (`Shim::wait`).
pub fn read_until(
    path: &Path,
    opts: ReadOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> BoxStream<'static, Result<LogEntry, Error>> {
    let (tx, rx) = mpsc::channel(256);
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let watcher = tokio::spawn(async move {
        stop.await;
        flag.store(true, Ordering::SeqCst);
    });
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut r = Reader { opts, tx };
        if let Err(e) = r.run(&path, &stopped) {
            let _ = r.tx.blocking_send(Err(e));
        }
        watcher.abort();
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

struct Reader {
    opts: ReadOptions,
    tx: mpsc::Sender<Result<LogEntry, Error>>,
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

impl Reader {
    /// Parses one line; `None` for lines we skip (filtered or malformed).
    fn parse(&self, line: &[u8]) -> Option<LogEntry> {
        let rec: Record = serde_json::from_slice(line).ok()?;
        let stream = match rec.stream.as_str() {
            "stdout" if self.opts.stdout => Stream::Stdout,
            "stderr" if self.opts.stderr => Stream::Stderr,
            _ => return None,
        };
        if self.opts.since.is_some_and(|s| rec.time < s) {
            return None;
        }
        Some(LogEntry {
            stream,
            time: rec.time,
            bytes: Bytes::from(rec.log),
        })
    }

    /// Sends an entry; false when the reader should end (receiver gone or past `until`).
    fn send(&self, e: LogEntry) -> bool {
        if self.opts.until.is_some_and(|u| e.time > u) {
            return false;
        }
        self.tx.blocking_send(Ok(e)).is_ok()
    }

    fn run(&mut self, path: &Path, stopped: &AtomicBool) -> Result<(), Error> {
        // Rotated files first, oldest first, then the live file which we may follow.
        let mut files = Vec::new();
        for i in (1..1000).rev() {
            let p = rotated(path, i);
            if p.exists() {
                files.push(p);
            }
        }
        let mut tail: VecDeque<LogEntry> = VecDeque::new();
        let keep = |r: &Self, e: LogEntry, tail: &mut VecDeque<LogEntry>| -> bool {
            match r.opts.tail {
                Some(0) => true,
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(e);
                    true
                }
                None => r.send(e),
            }
        };
        for f in &files {
            let Ok(data) = std::fs::read(f) else { continue };
            for line in data.split(|b| *b == b'\n') {
                if let Some(e) = self.parse(line) {
                    if !keep(self, e, &mut tail) {
                        return Ok(());
                    }
                }
            }
        }
        let mut live = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("open log {}", path.display()), e)),
        };
        let mut buf = Vec::new();
        if let Some(f) = live.as_mut() {
            f.read_to_end(&mut buf)
                .map_err(|e| Error::io(format!("read log {}", path.display()), e))?;
        }
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in buf[..complete].split(|b| *b == b'\n') {
            if let Some(e) = self.parse(line) {
                if !keep(self, e, &mut tail) {
                    return Ok(());
                }
            }
        }
        buf.drain(..complete);
        for e in tail.drain(..) {
            if !self.send(e) {
                return Ok(());
            }
        }
        if !self.opts.follow {
            return Ok(());
        }
        self.follow(path, live, buf, stopped)
    }

    fn follow(
        &mut self,
        path: &Path,
        mut live: Option<File>,
        mut partial: Vec<u8>,
        stopped: &AtomicBool,
    ) -> Result<(), Error> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let last_round = stopped.load(Ordering::SeqCst);
            // Read what was appended to the file we hold.
            let mut progressed = false;
            if let Some(f) = live.as_mut() {
                loop {
                    let n = f
                        .read(&mut chunk)
                        .map_err(|e| Error::io(format!("read log {}", path.display()), e))?;
                    if n == 0 {
                        break;
                    }
                    progressed = true;
                    partial.extend_from_slice(&chunk[..n]);
                    while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=i).collect();
                        if let Some(e) = self.parse(&line[..i]) {
                            if !self.send(e) {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            // A rotation (or truncation) leaves our handle on an old inode or past the end.
            let current = std::fs::metadata(path).ok();
            let held = live.as_ref().and_then(|f| f.metadata().ok());
            match (current, held) {
                (Some(c), Some(h)) if c.ino() != h.ino() || c.dev() != h.dev() => {
                    live = File::open(path).ok();
                    partial.clear();
                    continue;
                }
                (Some(c), Some(_)) => {
                    if let Some(f) = live.as_mut() {
                        let pos = f.stream_position().unwrap_or(0);
                        if c.len() < pos {
                            let _ = f.seek(SeekFrom::Start(0));
                            partial.clear();
                            continue;
                        }
                    }
                }
                (Some(_), None) => {
                    live = File::open(path).ok();
                    continue;
                }
                _ => {}
            }
            if last_round && !progressed {
                return Ok(());
            }
            if self.tx.is_closed() {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }
}
