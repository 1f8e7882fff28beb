//! Confines `docker exec` processes the way the container's own process is confined.
//!
//! libcontainer 0.7 builds an exec ("tenant") process from the container's config but keeps
//! only its namespaces and cgroup from `linux`: the seccomp profile is dropped, so an exec'd
//! shell would run unfiltered. runc and Docker give execs the container's profile. Loading a
//! filter needs CAP_SYS_ADMIN unless no_new_privs is set (and setting it would stop `su` and
//! `sudo` in exec sessions), so the exec is started with CAP_SYS_ADMIN and CAP_SETPCAP added,
//! and this executor, the last code that runs before `execve`, loads the filter and then
//! drops the capabilities to exactly the container's sets, as libcontainer does for the init.

use libcontainer::capabilities::drop_privileges;
use libcontainer::syscall::syscall::create_syscall;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, Spec};
use serde_json::Value;

/// Capabilities the exec holds until the filter is loaded.
const FOR_SETUP: [&str; 2] = ["CAP_SYS_ADMIN", "CAP_SETPCAP"];

#[derive(Clone)]
pub(super) struct ConfinedExec {
    seccomp: LinuxSeccomp,
    caps: LinuxCapabilities,
}

impl ConfinedExec {
    /// From the container's config and the exec's process (as written to process.json):
    /// `None` when the container has no seccomp profile (unconfined or privileged). Widens
    /// `process`'s capabilities for the setup; [`Executor::exec`] narrows them again.
    pub(super) fn prepare(config: &Value, process: &mut Value) -> Result<Option<Self>, String> {
        let Some(profile) = config.pointer("/linux/seccomp").filter(|v| v.is_object()) else {
            return Ok(None);
        };
        let seccomp: LinuxSeccomp = serde_json::from_value(profile.clone())
            .map_err(|e| format!("container seccomp profile: {e}"))?;
        let caps: LinuxCapabilities = serde_json::from_value(process["capabilities"].clone())
            .map_err(|e| format!("container capabilities: {e}"))?;
        for set in ["bounding", "effective", "permitted"] {
            let list = &mut process["capabilities"][set];
            if !list.is_array() {
                *list = Value::Array(Vec::new());
            }
            if let Some(a) = list.as_array_mut() {
                for cap in FOR_SETUP {
                    if !a.iter().any(|c| c == cap) {
                        a.push(Value::from(cap));
                    }
                }
            }
        }
        Ok(Some(ConfinedExec { seccomp, caps }))
    }
}

impl Executor for ConfinedExec {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        libcontainer::seccomp::initialize_seccomp(&self.seccomp)
            .map_err(|e| ExecutorError::Other(format!("load seccomp profile: {e}")))?;
        drop_privileges(&self.caps, create_syscall().as_ref())
            .map_err(|e| ExecutorError::Other(format!("drop capabilities: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_for_setup_and_keeps_the_container_sets() {
        let config = serde_json::json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}});
        let mut p = serde_json::json!({"capabilities": {
            "bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]
        }});
        let c = ConfinedExec::prepare(&config, &mut p).unwrap().unwrap();
        assert_eq!(
            p["capabilities"]["bounding"],
            serde_json::json!(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SETPCAP"])
        );
        assert_eq!(c.caps.bounding().as_ref().unwrap().len(), 1);
        let mut q = p.clone();
        assert!(
            ConfinedExec::prepare(&serde_json::json!({"linux": {}}), &mut q)
                .unwrap()
                .is_none()
        );
        assert_eq!(q, p);
    }
}
