//! The exit file a shim leaves behind: how the process ended.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;

/// How a container or exec process ended, as docker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code; 128+signal for a signal death.
    pub code: i32,
    /// The memory cgroup's OOM killer fired while the container ran.
    pub oom_killed: bool,
    pub finished_at: DateTime<Utc>,
    /// Why the process never started, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads an exit file; `Ok(None)` when the process has not exited (no file yet).
pub fn read_exit_file(path: &Path) -> Result<Option<ExitStatus>, Error> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::InvalidArgument(format!("exit file {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read exit file {}", path.display()), e)),
    }
}

pub(crate) fn write_exit_file(path: &Path, status: &ExitStatus) -> Result<(), Error> {
    let data = serde_json::to_vec(status).expect("exit status serializes");
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    crate::spec::write_atomic(path, &data)
}
