//! Creating and starting the container (or exec) process from the shim.

use std::ffi::{OsStr, OsString};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::cgroup::Cgroups;
use crate::proto::{ProcessOverride, ShimRequest};
use crate::RuntimeClass;

/// The container (or exec) process and the shim's ends of its stdio.
pub struct Proc {
    /// The process's host pid; 0 for an exec that is not started yet.
    pub pid: i32,
    pub listener: UnixListener,
    /// stdout pipe, or the pty master.
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// stdin pipe, or a duplicate of the pty master.
    pub stdin: Option<OwnedFd>,
    pub tty: bool,
    /// The container's cgroups, resolved while it runs (for the OOM counter at exit).
    pub cgroups: Option<Cgroups>,
    /// What `start` still has to do; None once started.
    pending: Option<Pending>,
    console: Option<(UnixListener, PathBuf)>,
}

/// The descriptor on which a container created with `deferred_process` receives its
/// command (see [`super::deferred`]).
pub(super) const DEFERRED_FD: RawFd = 3;

/// Holds [`DEFERRED_FD`] with /dev/null for the shim's lifetime, so that no other descriptor
/// takes the number the container's init is given. Call before anything else opens a file.
pub(super) fn reserve_deferred_fd() -> Result<(), String> {
    let null = std::fs::File::open("/dev/null").map_err(|e| err("open /dev/null", e))?;
    if null.as_raw_fd() != DEFERRED_FD {
        nix::unistd::dup3(null.as_raw_fd(), DEFERRED_FD, OFlag::O_CLOEXEC)
            .map_err(|e| err("reserve descriptor 3", e))?;
    } else {
        std::mem::forget(null);
    }
    Ok(())
}

/// How long a deferred command may take to reach `execve` once started.
const DEFERRED_EXEC_TIMEOUT_MS: u16 = 30_000;

/// The second half of starting, run when the daemon sends `start` (after it attached).
enum Pending {
    /// libcontainer created the container; its init waits for start (and, for a deferred
    /// process, for its command on this socket).
    Init(Option<OwnedFd>),
    /// An exec is created and started in one go by libcontainer's tenant builder.
    Exec(ChildStdio),
    /// `runc create` ran; `runc start` remains.
    OciStart,
    /// `runc exec --detach` creates and starts in one go.
    OciExec(ChildStdio),
}

/// What the container process gets as stdio.
enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Console(PathBuf),
}

fn err(ctx: &str, e: impl std::fmt::Display) -> String {
    format!("{ctx}: {e}")
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err("create pipe", e))
}

fn sibling(socket: &Path, ext: &str) -> PathBuf {
    let mut p = socket.to_path_buf();
    p.set_extension(ext);
    p
}

/// Sets up the control socket and stdio and creates the container (an exec is only
/// prepared): the process exists but runs nothing until [`Proc::start`].
pub fn create(req: &ShimRequest) -> Result<Proc, String> {
    let _ = std::fs::remove_file(&req.socket);
    let listener = UnixListener::bind(&req.socket)
        .map_err(|e| err(&format!("listen on {}", req.socket.display()), e))?;
    let _ = std::fs::set_permissions(&req.socket, std::fs::Permissions::from_mode(0o600));
    listener
        .set_nonblocking(true)
        .map_err(|e| err("control socket", e))?;

    let mut p = Proc {
        pid: 0,
        listener,
        stdout: None,
        stderr: None,
        stdin: None,
        tty: req.tty,
        cgroups: None,
        pending: None,
        console: None,
    };
    let child = if req.tty {
        let path = sibling(&req.socket, "con");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).map_err(|e| err("console socket", e))?;
        p.console = Some((l, path.clone()));
        ChildStdio::Console(path)
    } else {
        let stdin = if req.open_stdin {
            let (r, w) = pipe()?;
            p.stdin = Some(w);
            r
        } else {
            std::fs::File::open("/dev/null")
                .map_err(|e| err("open /dev/null", e))?
                .into()
        };
        let (r, stdout) = pipe()?;
        p.stdout = Some(r);
        let (r, stderr) = pipe()?;
        p.stderr = Some(r);
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        }
    };

    let created = match (req.runtime_class, &req.exec) {
        (RuntimeClass::Libcontainer, None) if req.deferred_process => {
            let (ours, theirs) = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| err("create command socket", e))?;
            in_child(move || create_init(req, child, Some(theirs)))
                .map(|pid| (pid, Pending::Init(Some(ours))))
        }
        (RuntimeClass::Libcontainer, None) => {
            in_child(move || create_init(req, child, None)).map(|pid| (pid, Pending::Init(None)))
        }
        (RuntimeClass::Libcontainer, Some(_)) => Ok((0, Pending::Exec(child))),
        (class, None) => oci_create(req, class, child).map(|pid| (pid, Pending::OciStart)),
        (_, Some(_)) => Ok((0, Pending::OciExec(child))),
    };
    match created {
        Ok((pid, pending)) => {
            p.pid = pid;
            p.pending = Some(pending);
        }
        Err(e) => {
            p.close_console();
            return Err(e);
        }
    }
    if p.pid != 0 {
        p.take_console()?;
        // libcontainer's init is in its cgroups now; a process that exits at once would
        // leave nothing to read them from after start.
        p.cgroups = Cgroups::of_pid(p.pid).ok();
    }
    Ok(p)
}

impl Proc {
    pub fn is_started(&self) -> bool {
        self.pending.is_none()
    }

    /// Starts the created process; on error the container is already cleaned up.
    pub fn start(
        &mut self,
        req: &ShimRequest,
        process: Option<&ProcessOverride>,
    ) -> Result<i32, String> {
        let Some(pending) = self.pending.take() else {
            return Ok(self.pid);
        };
        let res = match pending {
            Pending::Init(None) => in_child(|| start_init(req)).map(drop),
            Pending::Init(Some(channel)) => start_deferred(req, channel, process),
            Pending::Exec(child) => {
                in_child(move || start_exec(req, child)).map(|pid| self.pid = pid)
            }
            Pending::OciStart => oci_start(req),
            Pending::OciExec(child) => {
                let class = req.runtime_class;
                oci_create(req, class, child).map(|pid| self.pid = pid)
            }
        };
        if let Err(e) = res {
            self.close_console();
            return Err(e);
        }
        self.take_console()?;
        if req.exec.is_none() && self.cgroups.is_none() {
            self.cgroups = Cgroups::of_pid(self.pid).ok();
        }
        Ok(self.pid)
    }

    fn close_console(&mut self) {
        if let Some((_, p)) = self.console.take() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Receives the pty master once the runtime sent it.
    fn take_console(&mut self) -> Result<(), String> {
        if let Some((l, path)) = self.console.take() {
            let master = receive_master(&l);
            let _ = std::fs::remove_file(&path);
            let master = master?;
            self.stdin = Some(master.try_clone().map_err(|e| err("dup pty master", e))?);
            self.stdout = Some(master);
        }
        Ok(())
    }
}

/// Accepts the runtime's connection on the console socket and takes the pty master it sends.
fn receive_master(l: &UnixListener) -> Result<OwnedFd, String> {
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(10_000u16)).map_err(|e| err("wait for console", e))?;
    if n == 0 {
        return Err("the runtime did not send the console".into());
    }
    let (conn, _) = l.accept().map_err(|e| err("accept console", e))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| err("receive console", e))?;
    for c in msg.cmsgs().map_err(|e| err("receive console", e))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS gave us a new descriptor that nothing else owns.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err("the runtime sent no console descriptor".into())
}

fn libcontainer_root(req: &ShimRequest) -> Result<PathBuf, String> {
    let root = req.state_root.join("libcontainer");
    std::fs::create_dir_all(&root).map_err(|e| err(&format!("create {}", root.display()), e))?;
    Ok(root)
}

fn builder(req: &ShimRequest, child: ChildStdio) -> Result<ContainerBuilder, String> {
    let root = libcontainer_root(req)?;
    let b = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_root_path(root)
        .map_err(|e| e.to_string())?
        .validate_id()
        .map_err(|e| e.to_string())?;
    Ok(match child {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => b.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr),
        ChildStdio::Console(path) => b.with_console_socket(Some(path)),
    })
}

/// Removes whatever a failed create left behind (state directory, cgroups).
fn cleanup(req: &ShimRequest) {
    let dir = req.state_root.join("libcontainer").join(&req.id);
    if let Ok(mut c) = Container::load(dir.clone()) {
        let _ = c.delete(true);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` in a short-lived child process and returns its result. libcontainer's work
/// touches megabytes of code and heap; doing it in a child keeps the long-lived shim small.
/// `f` must not need anything back but the number (fds it owns are closed in the shim).
fn in_child(f: impl FnOnce() -> Result<i32, String>) -> Result<i32, String> {
    use std::io::{Read, Write};
    let (r, w) = pipe()?;
    // SAFETY: the shim is single-threaded, so the child may run arbitrary code; it leaves
    // with _exit and never returns into the shim's code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            // One line: the container's init inherits the pipe until it execs, so the shim
            // cannot wait for EOF.
            let msg = match f() {
                Ok(n) => format!("ok {n}\n"),
                Err(e) => format!("err {}\n", e.replace('\n', " ")),
            };
            let _ = std::fs::File::from(w).write_all(msg.as_bytes());
            // SAFETY: _exit ends the child without running the shim's destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(w);
            let mut out = Vec::new();
            let mut f = std::fs::File::from(r);
            let mut byte = [0u8; 1];
            let res = loop {
                match f.read(&mut byte) {
                    Ok(0) => break Ok(()),
                    Ok(_) if byte[0] == b'\n' => break Ok(()),
                    Ok(_) => out.push(byte[0]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let _ = nix::sys::wait::waitpid(child, None);
            res.map_err(|e| err("read helper result", e))?;
            let out = String::from_utf8_lossy(&out);
            if let Some(n) = out.strip_prefix("ok ") {
                n.parse().map_err(|e| err("helper result", e))
            } else if let Some(e) = out.strip_prefix("err ") {
                Err(e.to_string())
            } else {
                Err("helper process died".into())
            }
        }
        Err(e) => Err(err("fork", e)),
    }
}

fn create_init(
    req: &ShimRequest,
    child: ChildStdio,
    deferred: Option<OwnedFd>,
) -> Result<i32, String> {
    let bundle = req.bundle.clone().ok_or("no bundle in request")?;
    let mut b = builder(req, child)?;
    if let Some(fd) = deferred {
        // dup2 leaves the new descriptor inheritable: the init gets it as DEFERRED_FD.
        nix::unistd::dup2(fd.as_raw_fd(), DEFERRED_FD)
            .map_err(|e| err("pass command socket", e))?;
        b = b
            .with_preserved_fds(1)
            .with_executor(super::deferred::DeferredExec);
    }
    let c = b
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| {
            // "container already exists" must not remove the running one.
            if !matches!(e, libcontainer::error::LibcontainerError::Exist) {
                cleanup(req);
            }
            e.to_string()
        })?;
    c.pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| "container has no pid".into())
}

fn start_init(req: &ShimRequest) -> Result<i32, String> {
    let dir = req.state_root.join("libcontainer").join(&req.id);
    let mut c = Container::load(dir).map_err(|e| err(&format!("load container {}", req.id), e))?;
    c.start().map_err(|e| {
        let _ = c.delete(true);
        cleanup(req);
        e.to_string()
    })?;
    Ok(0)
}

/// Starts a container created with a deferred process: sends its command, gives the start
/// signal, and reads the executor's answer (EOF once it exec'd, or `err <message>`).
fn start_deferred(
    req: &ShimRequest,
    channel: OwnedFd,
    process: Option<&ProcessOverride>,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    let mut line =
        serde_json::to_vec(&process.cloned().unwrap_or_default()).map_err(|e| err("command", e))?;
    line.push(b'\n');
    let mut channel = std::fs::File::from(channel);
    channel
        .write_all(&line)
        .map_err(|e| err("send command", e))?;
    in_child(|| start_init(req))?;
    let mut fds = [PollFd::new(channel.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(DEFERRED_EXEC_TIMEOUT_MS))
        .map_err(|e| err("wait for the command to start", e))?;
    if ready == 0 {
        // Still not exec'd: it runs as far as we can tell; its exit will tell the rest.
        return Ok(());
    }
    let mut answer = String::new();
    let _ = BufReader::new(&channel).read_line(&mut answer);
    match answer.trim_end().strip_prefix("err ") {
        None => Ok(()),
        Some(msg) => {
            cleanup(req);
            Err(msg.to_string())
        }
    }
}

/// Writes the exec's process.json: the container's process with the exec's command, env,
/// cwd, user and terminal (so it keeps the container's capabilities and rlimits). Also
/// returns, when `confine` (libcontainer, whose exec path drops the profile; runc applies it
/// itself), the executor that applies the container's seccomp profile, if it has one.
fn write_process(
    req: &ShimRequest,
    bundle: &Path,
    confine: bool,
) -> Result<(PathBuf, Option<super::exec_confine::ConfinedExec>), String> {
    let exec = req.exec.as_ref().ok_or("no exec in request")?;
    let cfg =
        std::fs::read(bundle.join("config.json")).map_err(|e| err("read container config", e))?;
    let mut spec: serde_json::Value =
        serde_json::from_slice(&cfg).map_err(|e| err("parse container config", e))?;
    let mut p = spec["process"].take();
    if !p.is_object() {
        return Err("container config has no process".into());
    }
    p["args"] = serde_json::json!(exec.args);
    let mut env: Vec<String> = p["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for e in &exec.env {
        let key = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p["env"] = serde_json::json!(env);
    if let Some(cwd) = exec.cwd.as_ref().filter(|c| !c.is_empty()) {
        p["cwd"] = serde_json::json!(cwd);
    }
    if let Some((uid, gid, gids)) = &exec.user {
        p["user"] = serde_json::json!({"uid": uid, "gid": gid, "additionalGids": gids});
    }
    p["terminal"] = serde_json::json!(req.tty);
    if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    let confined = match confine {
        true => super::exec_confine::ConfinedExec::prepare(&spec, &mut p)?,
        false => None,
    };
    let path = sibling(&req.socket, "process.json");
    let data = serde_json::to_vec(&p).map_err(|e| err("serialize process", e))?;
    crate::spec::write_atomic(&path, &data).map_err(|e| e.to_string())?;
    Ok((path, confined))
}

fn start_exec(req: &ShimRequest, child: ChildStdio) -> Result<i32, String> {
    let root = libcontainer_root(req)?;
    let c = Container::load(root.join(&req.id))
        .map_err(|e| err(&format!("load container {}", req.id), e))?;
    let (process, confined) = write_process(req, c.bundle(), true)?;
    let mut b = builder(req, child)?;
    if let Some(executor) = confined {
        b = b.with_executor(executor);
    }
    let res = b
        .as_tenant()
        .with_process(Some(&process))
        .with_detach(true)
        .build();
    let _ = std::fs::remove_file(&process);
    res.map(|p| p.as_raw()).map_err(|e| e.to_string())
}

/// The last error message an OCI runtime wrote to its json log.
fn oci_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error")
            .then(|| v["msg"].as_str().map(str::to_owned))
            .flatten()
    })
}

/// Runs `<runc|crun> --root … --log … args`; on failure returns the runtime's error message.
fn oci_run(req: &ShimRequest, args: &[&OsStr], stdio: Option<[Stdio; 3]>) -> Result<(), String> {
    let bin = crate::control::oci_binary(req.runtime_class);
    let root = req.state_root.join(bin);
    std::fs::create_dir_all(&root).map_err(|e| err(&format!("create {}", root.display()), e))?;
    let log = sibling(&req.socket, "oci.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(&root)
        .arg("--log")
        .arg(&log)
        .arg("--log-format")
        .arg("json")
        .args(args);
    match stdio {
        Some([i, o, e]) => cmd.stdin(i).stdout(o).stderr(e),
        None => cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    };
    let out = cmd.output().map_err(|e| err(&format!("run {bin}"), e));
    let res = match out {
        Err(e) => Err(e),
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(oci_error(&log).unwrap_or_else(|| {
            let s = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if s.is_empty() {
                format!("{bin} {:?} failed: {}", args.first(), out.status)
            } else {
                s
            }
        })),
    };
    let _ = std::fs::remove_file(&log);
    res
}

fn oci_delete(req: &ShimRequest) {
    let bin = crate::control::oci_binary(req.runtime_class);
    let _ = Command::new(bin)
        .arg("--root")
        .arg(req.state_root.join(bin))
        .args(["delete", "--force", &req.id])
        .stderr(Stdio::null())
        .status();
}

/// `runc create` for a container, `runc exec --detach` for an exec; returns the pid.
fn oci_create(req: &ShimRequest, class: RuntimeClass, child: ChildStdio) -> Result<i32, String> {
    let bin = crate::control::oci_binary(class);
    let pid_file = sibling(&req.socket, "pid");
    let _ = std::fs::remove_file(&pid_file);
    let (stdio, console) = match child {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (Some([stdin.into(), stdout.into(), stderr.into()]), None),
        ChildStdio::Console(p) => (None, Some(p)),
    };
    let mut args: Vec<OsString> = Vec::new();
    match &req.exec {
        None => {
            let bundle = req.bundle.as_ref().ok_or("no bundle in request")?;
            args.extend(["create".into(), "--bundle".into(), bundle.into()]);
        }
        Some(_) => {
            let bundle = oci_bundle(bin, &req.state_root.join(bin), &req.id)?;
            let (process, _) = write_process(req, &bundle, false)?;
            args.extend([
                "exec".into(),
                "--detach".into(),
                "--process".into(),
                process.into(),
            ]);
        }
    }
    args.extend(["--pid-file".into(), pid_file.clone().into()]);
    if let Some(c) = &console {
        args.extend(["--console-socket".into(), c.into()]);
    }
    args.push(req.id.clone().into());
    let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let created = oci_run(req, &argv, stdio);
    if req.exec.is_some() {
        let _ = std::fs::remove_file(sibling(&req.socket, "process.json"));
    }
    if let Err(e) = created {
        if req.exec.is_none() && !e.contains("already exists") {
            oci_delete(req);
        }
        return Err(e);
    }
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(|e| err("read pid file", e))
        .and_then(|t| t.trim().parse().map_err(|e| err("parse pid file", e)));
    let _ = std::fs::remove_file(&pid_file);
    if pid.is_err() && req.exec.is_none() {
        oci_delete(req);
    }
    pid
}

fn oci_start(req: &ShimRequest) -> Result<(), String> {
    oci_run(req, &["start".as_ref(), req.id.as_ref()], None).inspect_err(|_| oci_delete(req))
}

/// The bundle of a container an OCI runtime created (for exec's process.json).
fn oci_bundle(bin: &str, root: &Path, id: &str) -> Result<PathBuf, String> {
    let out = Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["state", id])
        .output()
        .map_err(|e| err(&format!("run {bin} state"), e))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("container {id} not found by {bin}"))?;
    v["bundle"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| format!("{bin} state {id}: no bundle"))
}
