//! Streams between the local terminal and a container (attach, run, start -a, exec), and the
//! `attach` verb itself.

use std::io::{Read, Write};
use std::pin::Pin;

use anyhow::{bail, Result};
use bollard::container::LogOutput;
use bollard::query_parameters::{
    AttachContainerOptions, KillContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::tty::{follow_size, RawTerminal, ResizeTarget};

/// Attach local standard input, output, and error streams to a running container.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
}

pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;
pub type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Copies the container's output to stdout/stderr and, with `stdin`, the local stdin to the
/// container, until the output ends. With `tty` the local terminal goes raw meanwhile and its
/// size follows into `resize`.
pub async fn pump(
    docker: &Docker,
    mut output: Output,
    input: Input,
    stdin: bool,
    tty: bool,
    resize: Option<ResizeTarget>,
) -> Result<()> {
    let _raw = (tty && stdin).then(RawTerminal::enable).flatten();
    let resizer = match (tty, resize) {
        (true, Some(t)) => Some(follow_size(docker, t)),
        _ => None,
    };
    let writer = stdin.then(|| tokio::spawn(copy_stdin(input)));

    let result = async {
        while let Some(item) = output.next().await {
            write_output(item?)?;
        }
        Ok(())
    }
    .await;
    if let Some(r) = resizer {
        r.abort();
    }
    if let Some(w) = writer {
        w.abort();
    }
    result
}

/// Writes one piece of container output where it belongs: stderr or stdout.
pub fn write_output(item: LogOutput) -> std::io::Result<()> {
    match item {
        LogOutput::StdErr { message } => {
            let mut e = std::io::stderr().lock();
            e.write_all(&message)?;
            e.flush()
        }
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            let mut o = std::io::stdout().lock();
            o.write_all(&message)?;
            o.flush()
        }
        LogOutput::StdIn { .. } => Ok(()),
    }
}

/// Streams an attached container (signals proxied unless it has a TTY, terminal size
/// followed) until its output ends. Gives the pump's result and then the exit code, or
/// `None` when the user detached; separately, so `run --rm` can still remove an exited
/// container whose output could not all be written.
pub async fn follow_container(
    docker: &Docker,
    id: &str,
    (output, input): (Output, Input),
    stdin: bool,
    tty: bool,
    sig_proxy: bool,
) -> (Result<()>, Result<Option<i64>>) {
    let proxy = (sig_proxy && !tty).then(|| proxy_signals(docker, id));
    let resize = Some(ResizeTarget::Container(id.to_string()));
    let pumped = pump(docker, output, input, stdin, tty, resize).await;
    let exit = exit_or_detached(docker, id, stdin).await;
    if let Some(p) = proxy {
        p.abort();
    }
    (pumped, exit)
}

/// Feeds stdin to the container and closes its write side at end of input, so that programs
/// reading stdin see EOF.
async fn copy_stdin(mut input: Input) {
    // A plain thread rather than tokio's stdin: its blocking read would otherwise hold up the
    // runtime's shutdown after the container has exited.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
            return;
        }
    }
    let _ = input.shutdown().await;
}

/// Forwards SIGINT and SIGTERM received by the client to the container, as docker's
/// `--sig-proxy` does, until the returned task is aborted.
pub fn proxy_signals(docker: &Docker, id: &str) -> tokio::task::JoinHandle<()> {
    let docker = docker.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let sig = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let opts = KillContainerOptions {
                signal: sig.to_string(),
            };
            let _ = docker.kill_container(&id, Some(opts)).await;
        }
    })
}

/// Waits for the container to meet `condition` ("not-running", "next-exit", "removed") and
/// returns its exit code.
pub async fn wait_exit(docker: &Docker, id: &str, condition: &str) -> Result<i64> {
    let opts = WaitContainerOptions {
        condition: condition.to_string(),
    };
    let mut s = docker.wait_container(id, Some(opts));
    match s.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        // bollard reports a non-zero exit as an error; for us it is the answer.
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e.into()),
        None => bail!("wait {id}: the daemon closed the connection"),
    }
}

/// After the attach stream has ended: the container's exit code, or `None` when it still runs
/// because the user detached with the detach keys (which needs stdin). The daemon does not say
/// which happened, so a container still running a moment after its output closed counts as
/// detached.
pub async fn exit_or_detached(docker: &Docker, id: &str, stdin: bool) -> Result<Option<i64>> {
    let wait = wait_exit(docker, id, "not-running");
    if !stdin {
        return Ok(Some(wait.await?));
    }
    tokio::pin!(wait);
    tokio::select! {
        r = &mut wait => return Ok(Some(r?)),
        _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
    }
    let info = docker.inspect_container(id, None).await?;
    if info.state.and_then(|s| s.running) == Some(true) {
        return Ok(None);
    }
    Ok(Some(wait.await?))
}

/// Opens an attach stream to `id` (stdout and stderr, stdin if asked).
pub async fn open(
    docker: &Docker,
    id: &str,
    stdin: bool,
    detach_keys: Option<String>,
) -> Result<(Output, Input)> {
    let opts = AttachContainerOptions {
        stream: true,
        stdin,
        stdout: true,
        stderr: true,
        logs: false,
        detach_keys,
    };
    let r = docker.attach_container(id, Some(opts)).await?;
    Ok((r.output, r.input))
}

pub async fn attach(docker: &Docker, a: AttachArgs) -> Result<i32> {
    let info = docker.inspect_container(&a.container, None).await?;
    let state = info.state.clone().unwrap_or_default();
    if state.running != Some(true) {
        return Err(crate::Exit {
            code: 1,
            message: "You cannot attach to a stopped container, start it first".into(),
        }
        .into());
    }
    if state.paused == Some(true) {
        return Err(crate::Exit {
            code: 1,
            message: "You cannot attach to a paused container, unpause it first".into(),
        }
        .into());
    }
    let id = info.id.clone().unwrap_or(a.container.clone());
    let config = info.config.unwrap_or_default();
    let tty = config.tty.unwrap_or(false);
    let stdin = !a.no_stdin && config.open_stdin.unwrap_or(false);
    let streams = open(docker, &id, stdin, a.detach_keys).await?;
    let (pumped, exit) = follow_container(docker, &id, streams, stdin, tty, a.sig_proxy).await;
    pumped?;
    Ok(exit?.unwrap_or(0) as i32)
}
