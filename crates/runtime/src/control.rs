//! Synchronous container control from the daemon: kill, pause, resume, delete.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use libcontainer::container::{Container, ContainerStatus};

use crate::client::validate_id;
use crate::{Error, Runtime, RuntimeClass};

/// The external runtime binary for a class.
pub(crate) fn oci_binary(class: RuntimeClass) -> &'static str {
    match class {
        RuntimeClass::Runc => "runc",
        RuntimeClass::Crun => "crun",
        RuntimeClass::Libcontainer => "",
    }
}

impl Runtime {
    pub(crate) fn oci_root(&self, class: RuntimeClass) -> PathBuf {
        self.state_root.join(oci_binary(class))
    }

    /// Runs `<runc|crun> --root <root> args…`, returning its stdout.
    pub(crate) fn oci(
        &self,
        class: RuntimeClass,
        id: &str,
        args: &[&str],
    ) -> Result<String, Error> {
        let bin = oci_binary(class);
        let out = Command::new(bin)
            .arg("--root")
            .arg(self.oci_root(class))
            .args(args)
            .output()
            .map_err(|e| Error::io(format!("run {bin} for {id}"), e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if err.contains("not running")
                || err.contains("does not exist")
                || err.contains("not exist")
            {
                return Err(Error::NotRunning(id.to_string()));
            }
            Err(Error::container(
                format!("{bin} {} {id}", args.first().unwrap_or(&"")),
                err,
            ))
        }
    }

    fn load(&self, id: &str) -> Result<Container, Error> {
        let dir = self.libcontainer_root().join(id);
        let mut c = Container::load(dir).map_err(|_| Error::NotRunning(id.to_string()))?;
        c.refresh_status()
            .map_err(|e| Error::container(format!("container {id} status"), e))?;
        Ok(c)
    }

    /// The host pid of the container's init process, if it runs.
    pub(crate) fn init_pid(&self, id: &str) -> Result<i32, Error> {
        validate_id(id)?;
        match self.class_of(id)? {
            RuntimeClass::Libcontainer => {
                let c = self.load(id)?;
                match (c.status(), c.pid()) {
                    (ContainerStatus::Stopped, _) | (_, None) => {
                        Err(Error::NotRunning(id.to_string()))
                    }
                    (_, Some(pid)) => Ok(pid.as_raw()),
                }
            }
            class => {
                let out = self.oci(class, id, &["state", id])?;
                let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
                    Error::container(format!("{} state {id}", oci_binary(class)), e)
                })?;
                if v["status"] == "stopped" {
                    return Err(Error::NotRunning(id.to_string()));
                }
                v["pid"]
                    .as_i64()
                    .filter(|p| *p > 0)
                    .map(|p| p as i32)
                    .ok_or_else(|| Error::NotRunning(id.to_string()))
            }
        }
    }

    /// Sends `signal` to the container's init process.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), Error> {
        validate_id(id)?;
        let sig = nix::sys::signal::Signal::try_from(signal)
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {signal}")))?;
        match self.class_of(id)? {
            RuntimeClass::Libcontainer => {
                // Not libcontainer's kill: it rewrites the state file, racing with the shim
                // that deletes the state as soon as the process died.
                let c = self.load(id)?;
                let pid = match (c.status(), c.pid()) {
                    (ContainerStatus::Stopped, _) | (_, None) => {
                        return Err(Error::NotRunning(id.to_string()))
                    }
                    (_, Some(pid)) => pid,
                };
                match nix::sys::signal::kill(pid, sig) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::ESRCH) => return Err(Error::NotRunning(id.to_string())),
                    Err(e) => return Err(Error::io(format!("kill container {id}"), e.into())),
                }
                // A frozen process cannot die: thaw it for SIGKILL (as runc does).
                if c.status() == ContainerStatus::Paused && sig == nix::sys::signal::Signal::SIGKILL
                {
                    if let Ok(cg) = crate::cgroup::Cgroups::of_pid(pid.as_raw()) {
                        cg.thaw();
                    }
                }
                Ok(())
            }
            class => {
                self.oci(class, id, &["kill", id, &signal.to_string()])?;
                Ok(())
            }
        }
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        validate_id(id)?;
        match self.class_of(id)? {
            RuntimeClass::Libcontainer => {
                let mut c = self.load(id)?;
                match c.status() {
                    ContainerStatus::Running => {}
                    ContainerStatus::Paused => {
                        return Err(Error::InvalidArgument(format!(
                            "container {id} is already paused"
                        )))
                    }
                    _ => return Err(Error::NotRunning(id.to_string())),
                }
                c.pause()
                    .map_err(|e| Error::container(format!("pause container {id}"), e))
            }
            class => self.oci(class, id, &["pause", id]).map(drop),
        }
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        validate_id(id)?;
        match self.class_of(id)? {
            RuntimeClass::Libcontainer => {
                let mut c = self.load(id)?;
                if c.status() != ContainerStatus::Paused {
                    return Err(Error::InvalidArgument(format!(
                        "container {id} is not paused"
                    )));
                }
                c.resume()
                    .map_err(|e| Error::container(format!("resume container {id}"), e))
            }
            class => self.oci(class, id, &["resume", id]).map(drop),
        }
    }

    /// Waits until the shim of container `id` has exited. After it reports the exit, a shim
    /// still deletes the container's runtime state and cgroups; whoever reuses them (a new
    /// start, [`Runtime::delete`]) waits for that. Bounded, for a shim that hangs.
    pub fn wait_shim_exit(&self, id: &str) -> Result<(), Error> {
        validate_id(id)?;
        crate::shim::wait_lifetime_lock(&self.socket_path(id, None), Duration::from_secs(5));
        Ok(())
    }

    /// Force-removes what a container left behind: runtime state, cgroups, sockets.
    /// Idempotent. A still-running container is killed.
    pub fn delete(&self, id: &str) -> Result<(), Error> {
        validate_id(id)?;
        let dir = self.libcontainer_root().join(id);
        if dir.exists() {
            match Container::load(dir.clone()) {
                Ok(mut c) => {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!(id, error = %e, "libcontainer delete failed; removing state");
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
                Err(_) => {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        for class in [RuntimeClass::Runc, RuntimeClass::Crun] {
            if self.oci_root(class).join(id).exists() {
                if let Err(e) = self.oci(class, id, &["delete", "--force", id]) {
                    tracing::warn!(id, error = %e, "delete with {}", oci_binary(class));
                    let _ = std::fs::remove_dir_all(self.oci_root(class).join(id));
                }
            }
        }
        Ok(())
    }
}
