//! The shim's poll(2) loop: process output to the log and attached clients, client stdin to
//! the process, control requests, reaping, and the exit record.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::logfile::LogFile;
use super::start::Proc;
use crate::exit::write_exit_file;
use crate::proto::{Request, Response, FRAME_STDERR, FRAME_STDOUT};
use crate::{ExitStatus, RuntimeClass};

/// A slow attached client may queue this much output before we drop it.
const CLIENT_BUF_MAX: usize = 4 << 20;
/// How long to keep reading output after the process exited (grandchildren may hold pipes).
const DRAIN: Duration = Duration::from_secs(2);
const MAX_REQUEST: usize = 64 * 1024;

enum Mode {
    /// Reading the request line.
    Request(Vec<u8>),
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Waiting,
    /// Answered; close once the answer is flushed.
    Done,
}

struct Client {
    sock: UnixStream,
    mode: Mode,
    out: Vec<u8>,
    /// The client finished sending (EOF); stop polling it for input.
    read_closed: bool,
    dead: bool,
}

impl Client {
    fn queue(&mut self, data: &[u8]) {
        if self.out.len() + data.len() > CLIENT_BUF_MAX {
            self.dead = true;
            return;
        }
        self.out.extend_from_slice(data);
    }

    fn respond(&mut self, r: &Response) {
        let mut line = serde_json::to_vec(r).unwrap_or_default();
        line.push(b'\n');
        self.queue(&line);
    }

    fn frame(&mut self, kind: u8, data: &[u8]) {
        let mut head = [0u8; 5];
        head[0] = kind;
        head[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
        self.queue(&head);
        self.queue(data);
    }

    fn flush(&mut self) {
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }
}

struct Shim<'a> {
    req: &'a crate::proto::ShimRequest,
    st: Proc,
    log: Option<LogFile>,
    clients: Vec<Client>,
    stdin_buf: Vec<u8>,
    close_stdin: bool,
    exit_code: Option<i32>,
    /// Why `start` failed; the shim then records it and exits.
    start_error: Option<String>,
    final_status: Option<ExitStatus>,
    /// Trim the text pages at the next turn of the loop, once the answer has gone out.
    trim_pending: bool,
}

fn sigchld() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask
}

/// Runs `f` (which forks the process) with the signal state a container should inherit:
/// nothing blocked, SIGPIPE default. Exits that happen meanwhile are reaped afterwards.
fn with_child_signals<T>(f: impl FnOnce() -> T) -> T {
    use nix::sys::signal::{signal, SigHandler};
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&sigchld()), None);
    // SAFETY: restoring default dispositions installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let r = f();
    // SAFETY: ignoring a signal installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigchld()), None);
    r
}

pub fn serve(req: &crate::proto::ShimRequest, st: Proc, log: Option<LogFile>) -> i32 {
    // SIGCHLD through a signalfd; the sweep below catches exits from before the mask.
    let mask = sigchld();
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    let sigfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(_) => return 1,
    };
    for fd in [&st.stdout, &st.stderr, &st.stdin].into_iter().flatten() {
        set_nonblocking(fd);
    }
    let mut shim = Shim {
        req,
        st,
        log,
        clients: Vec::new(),
        stdin_buf: Vec::new(),
        close_stdin: false,
        exit_code: None,
        start_error: None,
        final_status: None,
        trim_pending: false,
    };
    shim.reap();
    super::trim_text();
    shim.run(&sigfd);
    0
}

fn set_nonblocking(fd: &OwnedFd) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}

fn read_fd(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

impl Shim<'_> {
    fn run(&mut self, sigfd: &SignalFd) {
        let mut buf = [0u8; 32 * 1024];
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.start_error.is_some() {
                self.finish();
                return;
            }
            if std::mem::take(&mut self.trim_pending) {
                super::trim_text();
            }
            if self.exit_code.is_some() {
                let deadline = *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN);
                let drained = self.st.stdout.is_none() && self.st.stderr.is_none();
                if drained || Instant::now() >= deadline {
                    self.finish();
                    return;
                }
            }
            let timeout = match drain_deadline {
                Some(d) => {
                    let ms = d
                        .saturating_duration_since(Instant::now())
                        .as_millis()
                        .min(60_000) as u16;
                    PollTimeout::from(ms.max(1))
                }
                None => PollTimeout::NONE,
            };

            // Poll set: signalfd, listener, stdout, stderr, stdin, then each client.
            let mut fds: Vec<PollFd> = Vec::with_capacity(5 + self.clients.len());
            fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
            fds.push(PollFd::new(self.st.listener.as_fd(), PollFlags::POLLIN));
            let none = PollFlags::empty();
            fn ev(
                o: &Option<OwnedFd>,
                f: PollFlags,
            ) -> Option<(std::os::fd::BorrowedFd<'_>, PollFlags)> {
                o.as_ref().map(|fd| (fd.as_fd(), f))
            }
            let std_fds = [
                ev(&self.st.stdout, PollFlags::POLLIN),
                ev(&self.st.stderr, PollFlags::POLLIN),
                ev(
                    &self.st.stdin,
                    if self.stdin_buf.is_empty() {
                        none
                    } else {
                        PollFlags::POLLOUT
                    },
                ),
            ];
            // A placeholder keeps indices stable for absent descriptors.
            let placeholder = sigfd.as_fd();
            for f in &std_fds {
                match f {
                    Some((fd, flags)) => fds.push(PollFd::new(*fd, *flags)),
                    None => fds.push(PollFd::new(placeholder, none)),
                }
            }
            for c in &self.clients {
                let mut f = PollFlags::empty();
                if !c.read_closed {
                    f |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    f |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.sock.as_fd(), f));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            let ready = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
            let r: Vec<PollFlags> = (0..fds.len()).map(ready).collect();
            drop(fds);

            if r[0].contains(PollFlags::POLLIN) {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                self.reap();
            }
            if !r[1].is_empty() {
                self.accept();
            }
            for (i, stream) in [(2usize, 0usize), (3, 1)] {
                if r[i].is_empty() {
                    continue;
                }
                let fd = if stream == 0 {
                    &self.st.stdout
                } else {
                    &self.st.stderr
                };
                let Some(fd) = fd.as_ref() else { continue };
                match read_fd(fd, &mut buf) {
                    Ok(0) | Err(Errno::EIO) => self.close_output(stream),
                    Ok(n) => {
                        let data = &buf[..n];
                        self.output(stream, data);
                    }
                    Err(Errno::EAGAIN) => {}
                    Err(_) => self.close_output(stream),
                }
            }
            if !r[4].is_empty() {
                self.write_stdin();
            }
            for (i, flags) in r.iter().enumerate().skip(5) {
                let ci = i - 5;
                if ci >= self.clients.len() {
                    break;
                }
                let hangup = flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
                if self.clients[ci].read_closed {
                    // POLLHUP is reported even when not asked for: the peer is gone for good.
                    if hangup {
                        self.clients[ci].dead = true;
                        continue;
                    }
                } else if hangup || flags.contains(PollFlags::POLLIN) {
                    self.client_input(ci, &mut buf);
                }
                if flags.contains(PollFlags::POLLOUT) {
                    self.clients[ci].flush();
                }
            }
            if self.close_stdin && self.stdin_buf.is_empty() && !self.st.tty {
                self.st.stdin = None;
            }
            self.clients
                .retain(|c| !(c.dead || (matches!(c.mode, Mode::Done) && c.out.is_empty())));
        }
    }

    fn close_output(&mut self, stream: usize) {
        if stream == 0 {
            self.st.stdout = None;
        } else {
            self.st.stderr = None;
        }
    }

    fn output(&mut self, stream: usize, data: &[u8]) {
        if let Some(l) = self.log.as_mut() {
            l.write(stream, data);
        }
        let kind = if stream == 0 {
            FRAME_STDOUT
        } else {
            FRAME_STDERR
        };
        for c in &mut self.clients {
            if let Mode::Attached { stdout, stderr, .. } = c.mode {
                if (stream == 0 && stdout) || (stream == 1 && stderr) {
                    c.frame(kind, data);
                    c.flush();
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = self.st.stdin.as_ref() else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match nix::unistd::write(fd, &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The reader is gone (EPIPE): nothing will ever read this.
                    self.stdin_buf.clear();
                    self.st.stdin = None;
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.st.listener.accept() {
                Ok((sock, _)) => {
                    let _ = sock.set_nonblocking(true);
                    self.clients.push(Client {
                        sock,
                        mode: Mode::Request(Vec::new()),
                        out: Vec::new(),
                        read_closed: false,
                        dead: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn client_input(&mut self, ci: usize, buf: &mut [u8]) {
        let n = match self.clients[ci].sock.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return
            }
            Err(_) => {
                self.clients[ci].dead = true;
                return;
            }
        };
        if n == 0 {
            let c = &mut self.clients[ci];
            c.read_closed = true;
            match c.mode {
                Mode::Attached { stdin: true, .. } => {
                    if self.req.stdin_once {
                        self.close_stdin = true;
                    }
                }
                Mode::Attached { .. } | Mode::Waiting | Mode::Done => {}
                Mode::Request(_) => c.dead = true,
            }
            return;
        }
        let data = &buf[..n];
        match &mut self.clients[ci].mode {
            Mode::Request(pending) => {
                pending.extend_from_slice(data);
                let Some(nl) = pending.iter().position(|b| *b == b'\n') else {
                    if pending.len() > MAX_REQUEST {
                        self.clients[ci].dead = true;
                    }
                    return;
                };
                let rest = pending.split_off(nl + 1);
                let line = std::mem::take(pending);
                self.handle_request(ci, &line, &rest);
            }
            Mode::Attached { stdin: true, .. } if self.st.stdin.is_some() && !self.close_stdin => {
                self.stdin_buf.extend_from_slice(data);
                self.write_stdin();
            }
            // Anything else a client sends is ignored.
            _ => {}
        }
    }

    fn handle_request(&mut self, ci: usize, line: &[u8], rest: &[u8]) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                let c = &mut self.clients[ci];
                c.respond(&Response {
                    error: Some(format!("bad request: {e}")),
                    ..Default::default()
                });
                c.mode = Mode::Done;
                c.flush();
                return;
            }
        };
        let pid = self.st.pid;
        let mut resp = Response {
            pid: Some(pid),
            ..Default::default()
        };
        let mut mode = Mode::Done;
        // Signalling pid 0 would hit the shim's own process group.
        let needs_process = matches!(req, Request::Signal { .. } | Request::Resize { .. });
        if pid == 0 && needs_process {
            resp.error = Some("process not started".into());
            let c = &mut self.clients[ci];
            c.respond(&resp);
            c.mode = Mode::Done;
            c.flush();
            return;
        }
        match req {
            Request::Start { process } => {
                if !self.st.is_started() {
                    let req = self.req;
                    let st = &mut self.st;
                    match with_child_signals(|| st.start(req, process.as_ref())) {
                        Ok(p) => {
                            resp.pid = Some(p);
                            for fd in [&self.st.stdout, &self.st.stderr, &self.st.stdin]
                                .into_iter()
                                .flatten()
                            {
                                set_nonblocking(fd);
                            }
                        }
                        Err(e) => {
                            let e = e.replace('\n', " ");
                            resp.error = Some(e.clone());
                            self.start_error = Some(e);
                        }
                    }
                    self.reap();
                    self.trim_pending = true;
                }
            }
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = stdin && self.req.open_stdin;
                mode = Mode::Attached {
                    stdin,
                    stdout,
                    stderr,
                };
                if self.final_status.is_some() {
                    mode = Mode::Done;
                }
            }
            Request::Resize { height, width } => {
                if let Some(fd) = self.st.stdout.as_ref().filter(|_| self.st.tty) {
                    let ws = libc::winsize {
                        ws_row: height,
                        ws_col: width,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
                    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    if rc != 0 {
                        resp.error =
                            Some(format!("resize tty: {}", std::io::Error::last_os_error()));
                    }
                }
            }
            Request::Signal { sig } => {
                let r = Signal::try_from(sig)
                    .map_err(|e| e.to_string())
                    .and_then(|s| {
                        nix::sys::signal::kill(Pid::from_raw(pid), s).map_err(|e| e.to_string())
                    });
                if let Err(e) = r {
                    resp.error = Some(format!("signal {sig} to {pid}: {e}"));
                }
            }
            Request::Wait => match &self.final_status {
                Some(st) => resp.exit = Some(st.clone()),
                None => mode = Mode::Waiting,
            },
            Request::Info => resp.exit_file = Some(self.req.exit_file.clone()),
        }
        let waiting = matches!(mode, Mode::Waiting);
        let c = &mut self.clients[ci];
        if !waiting {
            c.respond(&resp);
        }
        c.mode = mode;
        c.flush();
        if !rest.is_empty() {
            if let Mode::Attached { stdin: true, .. } = c.mode {
                self.stdin_buf.extend_from_slice(rest);
                self.write_stdin();
            }
        }
    }

    /// Reaps every exited child; records the main process's exit code.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) => {
                    if p.as_raw() == self.st.pid {
                        self.exit_code = Some(code);
                    }
                }
                Ok(WaitStatus::Signaled(p, sig, _)) => {
                    if p.as_raw() == self.st.pid {
                        self.exit_code = Some(128 + sig as i32);
                    }
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// The process exited and its output is drained: record, tell everyone, then clean up.
    /// Cleaning up (libcontainer's delete walks procfs and removes the cgroups: milliseconds)
    /// comes after the exit is reported, off the path of `docker run`; the daemon waits for
    /// this process to exit (its lifetime lock) before it reuses the container's state.
    fn finish(&mut self) {
        if let Some(l) = self.log.as_mut() {
            l.flush();
        }
        let status = if let Some(e) = &self.start_error {
            // Proc::start already removed the container.
            super::record_start_error(self.req, e)
        } else {
            let status = ExitStatus {
                code: self.exit_code.unwrap_or(-1),
                oom_killed: self.st.cgroups.as_ref().is_some_and(|c| c.oom_kills() > 0),
                finished_at: Utc::now(),
                error: None,
            };
            let _ = write_exit_file(&self.req.exit_file, &status);
            status
        };
        self.final_status = Some(status.clone());
        for c in &mut self.clients {
            match c.mode {
                Mode::Waiting => {
                    c.respond(&Response {
                        pid: Some(self.st.pid),
                        exit: Some(status.clone()),
                        ..Default::default()
                    });
                }
                Mode::Request(_) => c.dead = true,
                _ => {}
            }
            c.mode = Mode::Done;
            c.flush();
        }
        // Stop accepting: new clients fall back to the exit file.
        let _ = std::fs::remove_file(&self.req.socket);
        let deadline = Instant::now() + DRAIN;
        while self.clients.iter().any(|c| !c.dead && !c.out.is_empty()) && Instant::now() < deadline
        {
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .filter(|c| !c.dead && !c.out.is_empty())
                .map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = poll(&mut fds, PollTimeout::from(100u16));
            drop(fds);
            for c in &mut self.clients {
                if !c.dead {
                    c.flush();
                }
            }
        }
        // Closing the connections ends attached clients' streams now, not after the cleanup.
        self.clients.clear();
        if self.start_error.is_none() && self.req.exec.is_none() {
            self.delete_container();
            if let Some(c) = &self.st.cgroups {
                c.remove();
            }
        }
    }

    fn delete_container(&self) {
        match self.req.runtime_class {
            RuntimeClass::Libcontainer => {
                let dir = self.req.state_root.join("libcontainer").join(&self.req.id);
                // The state file may be mid-rewrite (pause/resume from the daemon): retry.
                let mut deleted = false;
                for _ in 0..5 {
                    match libcontainer::container::Container::load(dir.clone()) {
                        Ok(mut c) => {
                            deleted = c.delete(true).is_ok();
                            break;
                        }
                        Err(_) if !dir.exists() => break,
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                if !deleted {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            class => {
                let bin = crate::control::oci_binary(class);
                let _ = std::process::Command::new(bin)
                    .arg("--root")
                    .arg(self.req.state_root.join(bin))
                    .args(["delete", "--force", &self.req.id])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}
