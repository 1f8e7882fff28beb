//! The per-container shim: `<cloudlet> shim <request.json>`.
//!
//! The daemon writes a [`crate::proto::ShimRequest`] to a file and runs its own binary as
//! `shim <file>` with a pipe on stdout. The shim forks once (the first process exits at once,
//! so the shim is reparented away from the daemon), starts a new session, becomes a child
//! subreaper, creates the container (libcontainer in-process, or runc/crun), and reports
//! `created <pid>` (0 for an exec, which is created at start) or `error <message>` on that
//! pipe. The daemon may attach, then sends `start`. The shim serves the control socket ([`crate::proto`]) from a single-threaded poll(2) loop, copies output to the
//! json-file log and to attached clients, reaps the process, writes the exit file and
//! removes the container's runtime state before it exits.
//!
//! It must run before any threads exist (libcontainer forks), so the binary's `main` calls
//! [`main`] before it starts tokio.

mod deferred;
mod exec_confine;
mod io;
mod logfile;
mod start;

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use chrono::Utc;
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{fork, setsid, ForkResult};

use crate::exit::write_exit_file;
use crate::proto::ShimRequest;
use crate::ExitStatus;

/// Entry point of `<exe> shim <request.json>`; `args` is the whole argv (or starts at
/// "shim"). Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let Some(pos) = args.iter().position(|a| a == "shim") else {
        eprintln!("shim: usage: <exe> shim <request.json>");
        return 2;
    };
    let Some(req_path) = args.get(pos + 1) else {
        eprintln!("shim: usage: <exe> shim <request.json>");
        return 2;
    };
    let req: ShimRequest = match std::fs::read(req_path)
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            println!(
                "error read shim request {}: {e}",
                Path::new(req_path).display()
            );
            return 1;
        }
    };

    close_inherited_fds();
    // Descriptor 3 is where a container made ahead of demand receives its command
    // (start::DEFERRED_FD); hold it with /dev/null so nothing else lands there.
    if let Err(e) = start::reserve_deferred_fd() {
        println!("error {e}");
        return 1;
    }

    // SAFETY: the caller guarantees the process is single-threaded (no tokio yet), so the
    // child may keep running arbitrary code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error fork shim: {e}");
            return 1;
        }
    }
    let _ = setsid();
    // Held until this process exits: the daemon waits for it before reusing the container's
    // runtime state, which this shim may still be deleting after it has reported the exit.
    let _lifetime = req.exec.is_none().then(|| hold_lifetime_lock(&req.socket));
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and affects only us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Containers inherit our dispositions and mask through libcontainer's clone: give them
    // the defaults (Rust ignores SIGPIPE before main).
    // SAFETY: setting a signal to its default disposition installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);

    // The report pipe is our stdout; stdin/stdout become /dev/null so nothing else writes to it.
    let report = nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).ok();
    redirect_null(&[0, 1]);
    let mut report = report.map(|fd| {
        // SAFETY: `fd` is a fresh descriptor from dup that nothing else owns.
        std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    let code = run(&req, &mut report);
    // Make sure the daemon is never left waiting.
    if let Some(mut r) = report.take() {
        let _ = writeln!(r, "error shim exited before the container started");
    }
    code
}

/// Where a shim's lifetime lock lives, beside its socket.
pub(crate) fn lifetime_lock_path(socket: &Path) -> std::path::PathBuf {
    socket.with_extension("lock")
}

/// Takes the shim's lifetime lock (an exclusive flock, close-on-exec so the container's
/// process never holds it). The kernel drops it when the shim exits, however it exits.
fn hold_lifetime_lock(socket: &Path) -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lifetime_lock_path(socket))
        .ok()?;
    // SAFETY: flock on a descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (r == 0).then_some(f)
}

/// Waits (up to `limit`) until no shim holds the lifetime lock next to `socket`, then
/// removes the lock file. Bounded so that a shim that never got its container started
/// cannot hold up the caller forever.
pub(crate) fn wait_lifetime_lock(socket: &Path, limit: std::time::Duration) {
    let path = lifetime_lock_path(socket);
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return;
    };
    let deadline = std::time::Instant::now() + limit;
    // SAFETY (both calls): flock on a descriptor we own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                "shim for {} still running; not waiting for it",
                socket.display()
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let _ = std::fs::remove_file(&path);
}

/// Closes every descriptor but stdio: the shim lives long, and whatever the daemon leaked
/// into it (pipes, sockets) would stay open as long as the container runs.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: nothing in the shim owns these yet (we are at the start of main); the
        // directory handle from read_dir is already closed, so a stale number fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

fn redirect_null(fds: &[i32]) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in fds {
            let _ = nix::unistd::dup2(null.as_raw_fd(), *fd);
        }
    }
}

/// Docker's exit code for a process that never started.
fn start_error_code(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        128
    }
}

/// Writes the exit record of a process that never started.
fn record_start_error(req: &ShimRequest, msg: &str) -> ExitStatus {
    let status = ExitStatus {
        code: start_error_code(msg),
        oom_killed: false,
        finished_at: Utc::now(),
        error: Some(msg.to_string()),
    };
    let _ = write_exit_file(&req.exit_file, &status);
    status
}

fn run(req: &ShimRequest, report: &mut Option<std::fs::File>) -> i32 {
    // A log that cannot be written is a start error, before anything runs.
    let log = match &req.log {
        None => Ok(None),
        Some(l) => logfile::LogFile::open(l.path.clone(), l.max_size, l.max_files)
            .map(Some)
            .map_err(|e| format!("open log {}: {e}", l.path.display())),
    };
    let created = log.and_then(|log| start::create(req).map(|c| (c, log)));
    let (created, log) = match created {
        Ok(s) => s,
        Err(msg) => {
            let msg = msg.replace('\n', " ");
            record_start_error(req, &msg);
            if let Some(mut r) = report.take() {
                let _ = writeln!(r, "error {msg}");
            }
            let _ = std::fs::remove_file(&req.socket);
            return 1;
        }
    };
    // From here on we write to sockets whose peers may vanish.
    // SAFETY: ignoring a signal installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // The daemon attaches, then asks the shim to start the process over the socket.
    if let Some(mut r) = report.take() {
        let _ = writeln!(r, "created {}", created.pid);
    }
    redirect_null(&[2]);
    io::serve(req, created, log)
}

/// Drops the shim's executable pages from its page tables so an idle shim only keeps what
/// its loop touches: creating the container ran through megabytes of code that an idle shim
/// never needs again. The pages stay in the page cache and fault back in on use.
pub(crate) fn trim_text() {
    let here = trim_text as *const () as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // Only the read-only executable mapping holding this very function: text is never
        // written, so dropping it loses nothing (data and relro pages may be dirty).
        if perms != "r-xp" {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        if (start..end).contains(&here) {
            // SAFETY: the range is a private, read-only, executable file mapping of our own
            // binary; MADV_DONTNEED on it only drops clean PTEs, which refault from the file
            // with identical contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        }
    }
}
