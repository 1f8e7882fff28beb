use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("network {0} not found")]
    NotFound(String),
    /// The Docker API answers 409.
    #[error("{0}")]
    Conflict(String),
    /// The Docker API answers 400.
    #[error("{0}")]
    InvalidArgument(String),
    /// The Docker API answers 403 (docker's "Forbidden" for the predefined networks).
    #[error("{0}")]
    Forbidden(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: {context}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("nft: {0}")]
    Nft(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            context: context.into(),
            source,
        }
    }
}
