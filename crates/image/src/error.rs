//! Errors of the image store.

use std::path::PathBuf;

/// Everything the image store can fail with. The engine maps [`Error::NotFound`] to 404,
/// [`Error::Conflict`] to 409, the bad-input kinds ([`Error::is_bad_input`]) to 400, and the
/// rest to 500.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    /// Archive or layer content refused for safety (path traversal, links out of the root,
    /// device nodes).
    #[error("{0}")]
    Unsafe(String),
    /// Malformed input that is not a reference: a bad `--change`, a broken archive.
    #[error("{0}")]
    InvalidInput(String),
    #[error("{context}")]
    Registry {
        context: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{context}: {}", path.display())]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("digest mismatch for {subject}: expected {expected}, got {actual}")]
    Digest {
        subject: String,
        expected: String,
        actual: String,
    },
    #[error("{context}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict(_))
    }

    /// True when a registry refused our credentials (or wanted some): docker answers 401.
    pub fn is_unauthorized(&self) -> bool {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
        match self {
            Error::Registry { source, .. } => match source {
                E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => true,
                E::ServerError { code, .. } => *code == 401 || *code == 403,
                E::RequestError(e) => e
                    .status()
                    .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
                E::RegistryError { envelope, .. } => envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, C::Unauthorized | C::Denied)),
                _ => false,
            },
            _ => false,
        }
    }

    /// True for errors caused by what the caller sent (HTTP 400).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidReference(_)
                | Error::Unsafe(_)
                | Error::InvalidInput(_)
                | Error::Digest { .. }
                | Error::Unsupported(_)
        )
    }

    pub(crate) fn io(
        context: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        let path = path.into();
        move |source| Error::Io {
            context,
            path,
            source,
        }
    }

    pub(crate) fn json(context: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
        let context = context.into();
        move |source| Error::Json { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
