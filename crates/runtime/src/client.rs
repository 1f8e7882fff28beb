//! The daemon side: starting shims and talking to them over their control sockets.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::IoContext;
use crate::proto::{self, ExecSpec, ProcessOverride, Request, Response, ShimRequest};
use crate::{read_exit_file, Error, ExitStatus};

/// Which OCI runtime creates the container. The shim holds stdio and reaps in every case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeClass {
    /// youki's libcontainer, in the shim's own process.
    #[default]
    Libcontainer,
    /// The external `runc` binary.
    Runc,
    /// The external `crun` binary.
    Crun,
}

/// Where the shim writes the container's json-file log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when a file would exceed this many bytes; 0 = never.
    pub max_size: u64,
    /// Files kept including the live one (path, path.1, … path.N-1); at least 1.
    pub max_files: u32,
}

/// Start a container from a bundle written by [`crate::spec::write_bundle`].
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub log: Option<LogConfig>,
    pub exit_file: PathBuf,
    pub runtime_class: RuntimeClass,
    /// Create everything but the command: [`Shim::start_with`] brings it (libcontainer only).
    pub deferred_process: bool,
}

/// Run another process in a running container.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub container_id: String,
    pub exec_id: String,
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// (uid, gid, additional gids); None = the container's user.
    pub user: Option<(u32, u32, Vec<u32>)>,
    pub tty: bool,
    pub open_stdin: bool,
    pub exit_file: PathBuf,
}

/// Output of an attached process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// An attach session: write to `input` for the process's stdin (shut it down for EOF);
/// `output` ends when the process exited and its output is drained.
pub struct Attach {
    pub input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub output: BoxStream<'static, Output>,
}

/// Handle to the runtime: where state lives and which executable is the shim.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) state_root: PathBuf,
    shim_exe: PathBuf,
}

/// Handle to one running shim (a container's or an exec's).
#[derive(Debug, Clone)]
pub struct Shim {
    inner: Arc<ShimInner>,
}

#[derive(Debug)]
struct ShimInner {
    name: String,
    socket: PathBuf,
    exit_file: PathBuf,
    /// 0 until an exec is started.
    pid: AtomicI32,
}

/// How long a shim may take to report that the container runs (image-heavy starts included).
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container id {id:?}"
        )))
    }
}

impl Runtime {
    pub fn new(state_root: PathBuf, shim_exe: PathBuf) -> Self {
        Runtime {
            state_root,
            shim_exe,
        }
    }

    /// Where runtime state lives (libcontainer/runc roots, shim sockets).
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    pub(crate) fn libcontainer_root(&self) -> PathBuf {
        self.state_root.join("libcontainer")
    }

    /// The control socket of a container's (or exec's) shim. Unix socket paths must stay
    /// under 108 bytes, so long ids are cut to 32 characters (docker ids are unique there).
    pub(crate) fn socket_path(&self, id: &str, exec_id: Option<&str>) -> PathBuf {
        let short = |s: &str| s.chars().take(32).collect::<String>();
        let name = match exec_id {
            None => format!("{}.sock", short(id)),
            Some(e) => format!("{}.{}.sock", short(id), short(e)),
        };
        self.state_root.join("s").join(name)
    }

    fn prepare(&self) -> Result<(), Error> {
        for d in [
            self.libcontainer_root(),
            self.state_root.join("s"),
            self.state_root.join("runc"),
            self.state_root.join("crun"),
        ] {
            std::fs::create_dir_all(&d).ctx(|| format!("create {}", d.display()))?;
        }
        Ok(())
    }

    /// Starts a shim that creates and starts the container; returns once the container's
    /// process runs, or with the start error.
    pub async fn start(&self, req: StartRequest) -> Result<Shim, Error> {
        let shim = self.create(req).await?;
        shim.start().await?;
        Ok(shim)
    }

    /// Runs an exec in a running container; returns once it runs, or with the start error.
    pub async fn exec(&self, req: ExecRequest) -> Result<Shim, Error> {
        let shim = self.create_exec(req).await?;
        shim.start().await?;
        Ok(shim)
    }

    /// Starts a shim that creates the container but does not start its process yet: attach
    /// first, then call [`Shim::start`], so no early output is missed (`docker run`).
    pub async fn create(&self, req: StartRequest) -> Result<Shim, Error> {
        validate_id(&req.id)?;
        let socket = self.socket_path(&req.id, None);
        let sreq = ShimRequest {
            id: req.id.clone(),
            exec_id: None,
            state_root: self.state_root.clone(),
            socket,
            bundle: Some(req.bundle),
            tty: req.tty,
            open_stdin: req.open_stdin,
            stdin_once: req.stdin_once,
            log: req.log,
            exit_file: req.exit_file,
            runtime_class: req.runtime_class,
            exec: None,
            deferred_process: req.deferred_process,
        };
        if sreq.deferred_process && sreq.runtime_class != RuntimeClass::Libcontainer {
            return Err(Error::InvalidArgument(
                "a deferred process needs the libcontainer runtime".into(),
            ));
        }
        self.spawn(sreq).await
    }

    /// Starts an exec shim without starting the exec's process; see [`Runtime::create`].
    /// Its [`Shim::pid`] is 0 until [`Shim::start`].
    pub async fn create_exec(&self, req: ExecRequest) -> Result<Shim, Error> {
        validate_id(&req.container_id)?;
        validate_id(&req.exec_id)?;
        if req.args.is_empty() {
            return Err(Error::InvalidArgument("exec: no command specified".into()));
        }
        let class = self.class_of(&req.container_id)?;
        let socket = self.socket_path(&req.container_id, Some(&req.exec_id));
        let sreq = ShimRequest {
            id: req.container_id.clone(),
            exec_id: Some(req.exec_id.clone()),
            state_root: self.state_root.clone(),
            socket,
            bundle: None,
            tty: req.tty,
            open_stdin: req.open_stdin,
            // docker exec -i: stdin closes when the client's stdin ends.
            stdin_once: true,
            log: None,
            exit_file: req.exit_file,
            runtime_class: class,
            exec: Some(ExecSpec {
                args: req.args,
                env: req.env,
                cwd: req.cwd,
                user: req.user,
            }),
            deferred_process: false,
        };
        self.spawn(sreq).await
    }

    async fn spawn(&self, sreq: ShimRequest) -> Result<Shim, Error> {
        self.prepare()?;
        let name = match &sreq.exec_id {
            None => sreq.id.clone(),
            Some(e) => format!("{} exec {e}", sreq.id),
        };
        if UnixStream::connect(&sreq.socket).await.is_ok() {
            return Err(Error::InvalidArgument(format!("{name}: already running")));
        }
        let _ = std::fs::remove_file(&sreq.socket);
        match std::fs::remove_file(&sreq.exit_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {}", sreq.exit_file.display()), e));
            }
            _ => {}
        }
        let mut req_file = sreq.socket.clone();
        req_file.set_extension("json");
        let data = serde_json::to_vec(&sreq).expect("shim request serializes");
        crate::spec::write_atomic(&req_file, &data)?;

        let mut child = tokio::process::Command::new(&self.shim_exe)
            .arg("shim")
            .arg(&req_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ctx(|| format!("spawn shim {} for {name}", self.shim_exe.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        // The shim forks, its first process exits at once; the detached one reports on the
        // inherited pipe: "created <pid>" or "error <message>".
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, async {
            BufReader::new(stdout).read_line(&mut line).await
        })
        .await;
        let _ = child.wait().await;
        let _ = std::fs::remove_file(&req_file);
        match read {
            Err(_) => {
                return Err(Error::Start(format!(
                    "{name}: shim did not report within {START_TIMEOUT:?}"
                )))
            }
            Ok(Err(e)) => return Err(Error::io(format!("read shim report for {name}"), e)),
            Ok(Ok(_)) => {}
        }
        let line = line.trim_end();
        if let Some(pid) = line.strip_prefix("created ") {
            let pid = pid.parse().map_err(|_| Error::Shim {
                id: name.clone(),
                message: format!("bad report {line:?}"),
            })?;
            return Ok(Shim {
                inner: Arc::new(ShimInner {
                    name,
                    socket: sreq.socket,
                    exit_file: sreq.exit_file,
                    pid: AtomicI32::new(pid),
                }),
            });
        }
        if let Some(msg) = line.strip_prefix("error ") {
            return Err(Error::Start(format!("{name}: {msg}")));
        }
        Err(Error::Start(format!(
            "{name}: shim exited without reporting ({line:?})"
        )))
    }

    /// Finds the shim of a running container again (e.g. after a daemon restart).
    pub async fn connect(&self, id: &str) -> Result<Shim, Error> {
        validate_id(id)?;
        self.connect_socket(id.to_string(), self.socket_path(id, None))
            .await
    }

    /// Finds the shim of a running exec again.
    pub async fn connect_exec(&self, id: &str, exec_id: &str) -> Result<Shim, Error> {
        validate_id(id)?;
        validate_id(exec_id)?;
        let name = format!("{id} exec {exec_id}");
        self.connect_socket(name, self.socket_path(id, Some(exec_id)))
            .await
    }

    async fn connect_socket(&self, name: String, socket: PathBuf) -> Result<Shim, Error> {
        let resp = request(&name, &socket, &Request::Info).await?;
        let pid = resp.pid.ok_or_else(|| Error::Shim {
            id: name.clone(),
            message: "info without pid".into(),
        })?;
        Ok(Shim {
            inner: Arc::new(ShimInner {
                name,
                socket,
                exit_file: resp.exit_file.unwrap_or_default(),
                pid: AtomicI32::new(pid),
            }),
        })
    }

    /// Which runtime class created container `id` (from where its state lives).
    pub(crate) fn class_of(&self, id: &str) -> Result<RuntimeClass, Error> {
        if self.libcontainer_root().join(id).exists() {
            Ok(RuntimeClass::Libcontainer)
        } else if self.state_root.join("runc").join(id).exists() {
            Ok(RuntimeClass::Runc)
        } else if self.state_root.join("crun").join(id).exists() {
            Ok(RuntimeClass::Crun)
        } else {
            Err(Error::NotRunning(id.to_string()))
        }
    }
}

/// Sends one request and reads the one-line response.
async fn request(name: &str, socket: &Path, req: &Request) -> Result<Response, Error> {
    let (mut rd, _wr) = open(name, socket, req).await?;
    read_response(name, &mut rd).await
}

async fn open(
    name: &str,
    socket: &Path,
    req: &Request,
) -> Result<
    (
        BufReader<tokio::net::unix::OwnedReadHalf>,
        tokio::net::unix::OwnedWriteHalf,
    ),
    Error,
> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|_| Error::NotRunning(name.to_string()))?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    wr.write_all(&line)
        .await
        .map_err(|_| Error::NotRunning(name.to_string()))?;
    Ok((BufReader::new(rd), wr))
}

async fn read_response(
    name: &str,
    rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Result<Response, Error> {
    let mut line = String::new();
    let n = rd
        .read_line(&mut line)
        .await
        .map_err(|_| Error::NotRunning(name.to_string()))?;
    if n == 0 {
        return Err(Error::NotRunning(name.to_string()));
    }
    let resp: Response = serde_json::from_str(&line).map_err(|e| Error::Shim {
        id: name.to_string(),
        message: format!("bad response: {e}"),
    })?;
    if let Some(e) = resp.error {
        return Err(Error::Shim {
            id: name.to_string(),
            message: e,
        });
    }
    Ok(resp)
}

impl Shim {
    /// The container's (or exec's) process id on the host (0 for an exec not started yet).
    pub fn pid(&self) -> i32 {
        self.inner.pid.load(Ordering::SeqCst)
    }

    /// Starts the created process; returns its pid, or the start error (then the shim
    /// records the error in the exit file and exits). Starting twice is harmless.
    pub async fn start(&self) -> Result<i32, Error> {
        self.start_request(Request::Start { process: None }).await
    }

    /// Starts a container created with `deferred_process`, running `process` in it.
    pub async fn start_with(&self, process: ProcessOverride) -> Result<i32, Error> {
        self.start_request(Request::Start {
            process: Some(process),
        })
        .await
    }

    async fn start_request(&self, req: Request) -> Result<i32, Error> {
        let name = &self.inner.name;
        match request(name, &self.inner.socket, &req).await {
            Ok(resp) => {
                let pid = resp.pid.unwrap_or(0);
                self.inner.pid.store(pid, Ordering::SeqCst);
                Ok(pid)
            }
            Err(Error::Shim { message, .. }) => Err(Error::Start(format!("{name}: {message}"))),
            Err(Error::NotRunning(_)) => match read_exit_file(&self.inner.exit_file)? {
                Some(ExitStatus { error: Some(e), .. }) => {
                    Err(Error::Start(format!("{name}: {e}")))
                }
                _ => Err(Error::NotRunning(name.clone())),
            },
            Err(e) => Err(e),
        }
    }

    /// Attaches to the process's stdio; see [`crate::proto`] for the wire format.
    pub async fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<Attach, Error> {
        let name = &self.inner.name;
        let req = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        let (mut rd, wr) = open(name, &self.inner.socket, &req).await?;
        read_response(name, &mut rd).await?;
        let input: Option<Pin<Box<dyn AsyncWrite + Send>>> =
            if stdin { Some(Box::pin(wr)) } else { None };
        let output = futures::stream::unfold(rd, |mut rd| async move {
            let mut head = [0u8; proto::FRAME_HEADER];
            rd.read_exact(&mut head).await.ok()?;
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut buf = vec![0u8; len];
            rd.read_exact(&mut buf).await.ok()?;
            let out = match head[0] {
                proto::FRAME_STDERR => Output::Stderr(Bytes::from(buf)),
                _ => Output::Stdout(Bytes::from(buf)),
            };
            Some((out, rd))
        });
        Ok(Attach {
            input,
            output: Box::pin(output),
        })
    }

    /// Resizes the process's terminal.
    pub async fn resize(&self, height: u16, width: u16) -> Result<(), Error> {
        request(
            &self.inner.name,
            &self.inner.socket,
            &Request::Resize { height, width },
        )
        .await?;
        Ok(())
    }

    /// Sends `sig` to the process.
    pub async fn signal(&self, sig: i32) -> Result<(), Error> {
        request(
            &self.inner.name,
            &self.inner.socket,
            &Request::Signal { sig },
        )
        .await?;
        Ok(())
    }

    /// Waits for the process to exit; works after the shim is gone (reads the exit file).
    pub async fn wait(&self) -> Result<ExitStatus, Error> {
        match request(&self.inner.name, &self.inner.socket, &Request::Wait).await {
            Ok(Response { exit: Some(st), .. }) => return Ok(st),
            Ok(_) | Err(Error::NotRunning(_)) => {}
            Err(e) => return Err(e),
        }
        // The shim writes the exit file before it stops answering; allow for a shim that
        // is in the middle of exiting.
        for _ in 0..50 {
            if let Some(st) = read_exit_file(&self.inner.exit_file)? {
                return Ok(st);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::NotRunning(self.inner.name.clone()))
    }
}
