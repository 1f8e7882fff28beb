//! Named volumes on this node, as docker's `local` driver keeps them: a directory
//! `<root>/<name>/_data` per volume, or a tmpfs or a bind mounted there while a container
//! uses it (`--opt type=tmpfs`, `--opt o=bind --opt device=/path`); which containers use
//! each volume; and docker's copy-up of the image's content into a new volume.

mod copy;
mod store;

pub use copy::copy_tree;
pub use store::{dir_size, Volume, VolumeStore};

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// The Docker API answers 409.
    #[error("remove {name}: volume is in use - [{}]", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    /// The Docker API answers 400.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
