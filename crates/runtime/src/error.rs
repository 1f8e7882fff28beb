//! The crate's error type.

/// Errors returned by the runtime crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container (or exec) process is not running, or its shim is gone.
    #[error("{0}: not running")]
    NotRunning(String),
    /// Something the caller named does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// The caller passed something malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The container process could not be started; carries the runtime's message
    /// (e.g. "executable 'nope' not found in $PATH").
    #[error("start container: {0}")]
    Start(String),
    /// An I/O operation failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// libcontainer (or an external OCI runtime) failed.
    #[error("{context}: {message}")]
    Container { context: String, message: String },
    /// The shim answered something we do not understand, or an error.
    #[error("shim {id}: {message}")]
    Shim { id: String, message: String },
}

/// Why a process could not start, in the terms docker reports (exit codes 127 and 126).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFailure {
    /// The executable (or a path it needs) does not exist.
    NotFound,
    /// It exists but may not be executed.
    PermissionDenied,
    /// Anything else (cwd, mounts, cgroups, ...).
    Other,
}

impl Error {
    /// Classifies a start failure. libcontainer and runc report these only as text, so this
    /// crate, which knows their wording, reads it here once.
    pub fn start_failure(&self) -> Option<StartFailure> {
        let Error::Start(msg) = self else { return None };
        let msg = msg.to_ascii_lowercase();
        Some(
            if msg.contains("not found in $path")
                || msg.contains("executable file not found")
                || msg.contains("no such file or directory")
            {
                StartFailure::NotFound
            } else if msg.contains("permission denied") {
                StartFailure::PermissionDenied
            } else {
                StartFailure::Other
            },
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn container(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Container {
            context: context.into(),
            message: err.to_string(),
        }
    }
}

/// Adds a context message to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, f: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::io(f(), std::io::Error::from(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_are_classified_from_runtime_wording() {
        let lc = Error::Start("x: executable '/no/such' not found in $PATH".into());
        assert_eq!(lc.start_failure(), Some(StartFailure::NotFound));
        let runc = Error::Start("exec: \"sh2\": executable file not found in $PATH".into());
        assert_eq!(runc.start_failure(), Some(StartFailure::NotFound));
        let denied = Error::Start("exec /etc: permission denied".into());
        assert_eq!(denied.start_failure(), Some(StartFailure::PermissionDenied));
        assert_eq!(
            Error::Start("bad cwd".into()).start_failure(),
            Some(StartFailure::Other)
        );
        assert_eq!(Error::NotRunning("x".into()).start_failure(), None);
    }
}
