//! The executor of a container created ahead of demand (`ShimRequest::deferred_process`).
//!
//! The OCI model fixes a container's command when it is created, and creating is most of
//! the cost of a start (namespaces, mounts, pivot_root, cgroups, seccomp). A container made
//! ahead of demand therefore waits at libcontainer's start barrier without a command; its
//! init inherits one end of a socket pair as descriptor [`DEFERRED_FD`]. After the start
//! signal this executor, the last code before `execve`, reads the command and environment
//! (a JSON [`ProcessOverride`] line) and execs it. It answers `err <message>` if the exec
//! fails; otherwise the descriptor closes on exec and the shim reads EOF: started.
//!
//! Everything else (user, cwd, capabilities, seccomp, rlimits) was applied before the
//! barrier, exactly as for any container; the engine only hands such a container a request
//! whose bundle equals it in all but `process.args` and `process.env`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::Spec;

use super::start::DEFERRED_FD;
use crate::proto::ProcessOverride;

#[derive(Clone)]
pub(super) struct DeferredExec;

impl Executor for DeferredExec {
    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        // The command is not known yet: it is checked when it arrives. This init may wait a
        // long time at the barrier: give back the heap and text pages creating it touched.
        // SAFETY: malloc_trim only returns free heap memory to the kernel.
        unsafe { libc::malloc_trim(0) };
        super::trim_text();
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // SAFETY: DEFERRED_FD was handed to this process by the shim for this purpose and
        // nothing else in it uses that number; ManuallyDrop leaves it open for the exec,
        // where close-on-exec ends it.
        let channel = ManuallyDrop::new(unsafe { File::from_raw_fd(DEFERRED_FD) });
        let fail = |msg: String| {
            let _ = writeln!(&*channel, "err {}", msg.replace('\n', " "));
            ExecutorError::Other(msg)
        };
        let mut line = String::new();
        match BufReader::new(&*channel).read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return Err(fail("no command was sent to the container".into())),
        }
        let p: ProcessOverride =
            serde_json::from_str(&line).map_err(|e| fail(format!("bad command: {e}")))?;
        let args = match p.args.is_empty() {
            false => p.args,
            true => spec
                .process()
                .as_ref()
                .and_then(|p| p.args().clone())
                .unwrap_or_default(),
        };
        if args.is_empty() {
            return Err(fail("no command specified".into()));
        }
        if !p.env.is_empty() {
            set_env(&p.env);
        }
        let argv: Vec<std::ffi::CString> = args
            .iter()
            .map(|a| std::ffi::CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| fail("command contains a NUL byte".into()))?;
        let _ = nix::fcntl::fcntl(
            DEFERRED_FD,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        let err = match nix::unistd::execvp(&argv[0], &argv) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        // The same words libcontainer and runc use, so that the engine maps them to 127/126.
        let name = &args[0];
        Err(fail(match err {
            nix::errno::Errno::ENOENT if name.contains('/') => {
                format!("exec: \"{name}\": stat {name}: no such file or directory")
            }
            nix::errno::Errno::ENOENT => format!("executable '{name}' not found in $PATH"),
            nix::errno::Errno::EACCES => format!("exec: \"{name}\": permission denied"),
            e => format!("exec: \"{name}\": {e}"),
        }))
    }
}

/// Replaces the environment with `env` (`KEY=VALUE` entries), keeping the HOME that
/// libcontainer derived from the user when `env` has none.
fn set_env(env: &[String]) {
    let home = std::env::var_os("HOME");
    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    let mut has_home = false;
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            if !k.is_empty() {
                has_home |= k == "HOME";
                std::env::set_var(k, v);
            }
        }
    }
    if let (false, Some(h)) = (has_home, home) {
        std::env::set_var("HOME", h);
    }
}
