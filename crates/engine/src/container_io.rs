//! Streams to and from containers: attach (live), logs (from the json-file log), and the
//! handover that lets clients attach before the process starts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::container::Status;
use crate::error::{ApiError, ApiResult};
use crate::hijack::{frame, STDERR, STDOUT};
use crate::table::Entry;

/// A client waiting for the shim of a container that is not started yet.
pub type Pending = oneshot::Sender<(runtime::Shim, oneshot::Sender<()>)>;

/// Gives the new shim to every client that attached before start, and waits (briefly) until
/// they are attached, so they see the process's first output.
pub async fn hand_over_pending(entry: &Arc<Entry>, shim: &runtime::Shim) {
    let waiting: Vec<Pending> =
        std::mem::take(&mut *entry.pending.lock().unwrap_or_else(|e| e.into_inner()));
    let mut acks = Vec::new();
    for tx in waiting {
        let (ack_tx, ack_rx) = oneshot::channel();
        if tx.send((shim.clone(), ack_tx)).is_ok() {
            acks.push(ack_rx);
        }
    }
    for ack in acks {
        let _ = tokio::time::timeout(Duration::from_secs(5), ack).await;
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AttachOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub logs: bool,
    pub stream: bool,
}

/// Serves one attach over a hijacked connection until the process ends or the client leaves.
pub async fn attach(
    entry: Arc<Entry>,
    io: hyper::upgrade::Upgraded,
    opts: AttachOptions,
) -> ApiResult<()> {
    let c = entry.get();
    let tty = c.tty();
    let io = TokioIo::new(io);
    let (rd, mut wr) = tokio::io::split(io);
    if opts.logs {
        let log = entry.paths.log(&c.id);
        let read = runtime::logs::ReadOptions {
            follow: false,
            tail: None,
            since: None,
            until: None,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let mut s = std::pin::pin!(runtime::logs::read(&log, read));
        while let Some(Ok(e)) = s.next().await {
            let bytes = encode(tty, e.stream == runtime::logs::Stream::Stderr, &e.bytes);
            if wr.write_all(&bytes).await.is_err() {
                return Ok(());
            }
        }
    }
    if !opts.stream {
        let _ = wr.shutdown().await;
        return Ok(());
    }
    let (shim, ack) = match current_shim(&entry).await {
        Some(s) => s,
        None => {
            let _ = wr.shutdown().await;
            return Ok(());
        }
    };
    let attached = shim.attach(opts.stdin, opts.stdout, opts.stderr).await;
    if let Some(ack) = ack {
        let _ = ack.send(());
    }
    let stdin_once = c.config.stdin_once.unwrap_or(false);
    pump(rd, wr, attached?, tty, stdin_once, async {}).await;
    Ok(())
}

/// Copies between a hijacked connection and a process's streams until the process's output
/// ends; the client's EOF only closes the process's stdin (when `close_stdin` — docker's
/// StdinOnce — says so). `before_close` runs before the connection is closed.
pub async fn pump<R, W>(
    mut rd: R,
    mut wr: W,
    attach: runtime::Attach,
    tty: bool,
    close_stdin: bool,
    before_close: impl std::future::Future<Output = ()>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin,
{
    let runtime::Attach { input, output } = attach;
    let to_process = tokio::spawn(async move {
        let Some(mut input) = input else { return };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        if close_stdin {
            let _ = input.shutdown().await;
        }
    });
    let mut output = std::pin::pin!(output);
    while let Some(out) = output.next().await {
        let bytes = match out {
            runtime::Output::Stdout(b) => encode(tty, false, &b),
            runtime::Output::Stderr(b) => encode(tty, true, &b),
        };
        if wr.write_all(&bytes).await.is_err() {
            break;
        }
        let _ = wr.flush().await;
    }
    before_close.await;
    let _ = wr.shutdown().await;
    to_process.abort();
}

/// The running shim, or (for a created container) the one its start will bring.
async fn current_shim(entry: &Arc<Entry>) -> Option<(runtime::Shim, Option<oneshot::Sender<()>>)> {
    let rx = {
        let status = entry.get().state.status;
        if let Some(shim) = entry.shim() {
            return Some((shim, None));
        }
        if matches!(status, Status::Running | Status::Paused) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        entry
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    };
    let (shim, ack) = rx.await.ok()?;
    Some((shim, Some(ack)))
}

fn encode(tty: bool, stderr: bool, data: &[u8]) -> Bytes {
    if tty {
        Bytes::copy_from_slice(data)
    } else {
        frame(if stderr { STDERR } else { STDOUT }, data)
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogsOptions {
    pub follow: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

/// The body of `GET /containers/{id}/logs`: framed unless the container has a TTY. With
/// `follow`, it ends once the container has stopped and its log is drained.
pub fn logs(
    entry: Arc<Entry>,
    opts: LogsOptions,
) -> ApiResult<impl Stream<Item = Result<Bytes, std::io::Error>>> {
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("You must choose at least one stream"));
    }
    let c = entry.get();
    let tty = c.tty();
    let follow = opts.follow && c.state.status.is_running();
    let read = runtime::logs::ReadOptions {
        follow,
        tail: opts.tail,
        since: opts.since,
        until: opts.until,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let entries = runtime::logs::read(&entry.paths.log(&c.id), read);
    let entries = if follow {
        let mut phase = entry.phase.subscribe();
        let exited = async move {
            let _ = phase.wait_for(|p| !p.running).await;
            // The shim writes the last lines before it reports the exit; give the reader a
            // moment to reach them.
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        entries.take_until(Box::pin(exited)).boxed()
    } else {
        entries.boxed()
    };
    Ok(entries.filter_map(move |e| {
        let out = match e {
            Ok(e) => {
                let mut data = Vec::new();
                if opts.timestamps {
                    data.extend_from_slice(
                        e.time
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                            .as_bytes(),
                    );
                    data.push(b' ');
                }
                data.extend_from_slice(&e.bytes);
                Some(Ok(encode(
                    tty,
                    e.stream == runtime::logs::Stream::Stderr,
                    &data,
                )))
            }
            Err(e) => {
                tracing::warn!("read log: {e}");
                None
            }
        };
        futures::future::ready(out)
    }))
}
