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

impl Error {
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
