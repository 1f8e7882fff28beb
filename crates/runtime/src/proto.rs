//! The shim's control-socket protocol.
//!
//! A client connects to the shim's unix socket and sends ONE request as a JSON line:
//!
//! - `{"op":"start"}`: start a created process (answers once it runs, or with the error;
//!   after a start error the shim exits). A container created with `deferred_process` takes
//!   its command here: `{"op":"start","process":{"args":[…],"env":[…]}}`.
//! - `{"op":"attach","stdin":true,"stdout":true,"stderr":false}`
//! - `{"op":"resize","height":24,"width":80}`
//! - `{"op":"signal","sig":15}`
//! - `{"op":"wait"}`
//! - `{"op":"info"}`
//!
//! The shim answers with one JSON line, a [`Response`]: `{"pid":123}` on success (`wait`
//! answers only once the process has exited, with `exit` set) or `{"error":"…"}`.
//!
//! After a successful `attach` the connection carries streams:
//! - shim → client: frames of `[kind: u8][len: u32 big-endian][len bytes]`, kind 1 = stdout,
//!   2 = stderr; the shim closes the connection when the process exited and its output is
//!   drained.
//! - client → shim (if `stdin`): raw bytes for the process's stdin; the client's half-close
//!   (EOF) closes the process's stdin when the container was started with `stdin_once`.
//!
//! Output produced while no client is attached goes only to the log.

use serde::{Deserialize, Serialize};

use crate::ExitStatus;

pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
pub const FRAME_HEADER: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Start {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        process: Option<ProcessOverride>,
    },
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Resize {
        height: u16,
        width: u16,
    },
    Signal {
        sig: i32,
    },
    Wait,
    Info,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The request sent from the daemon to a new shim, as JSON in a file named on its command
/// line (`<exe> shim <request.json>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimRequest {
    /// The libcontainer/runc container id.
    pub id: String,
    /// For exec shims: the exec id (names the socket); None for the container's own shim.
    #[serde(default)]
    pub exec_id: Option<String>,
    pub state_root: std::path::PathBuf,
    pub socket: std::path::PathBuf,
    pub bundle: Option<std::path::PathBuf>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub log: Option<crate::LogConfig>,
    pub exit_file: std::path::PathBuf,
    pub runtime_class: crate::RuntimeClass,
    /// Exec only.
    #[serde(default)]
    pub exec: Option<ExecSpec>,
    /// Create the container with everything but its command, which `start` brings (a
    /// container made ahead of demand; libcontainer only).
    #[serde(default)]
    pub deferred_process: bool,
}

/// The command of a container created with `deferred_process`: it replaces the bundle's
/// `process.args` and `process.env` right before `execve`. Everything else about the process
/// (user, cwd, capabilities, rlimits) was fixed when the container was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOverride {
    pub args: Vec<String>,
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32, Vec<u32>)>,
}
