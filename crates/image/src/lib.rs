//! cloudlet's image store: OCI content store, registry client, layer unpacking into overlayfs
//! snapshots, `docker import`/`load`/`save`, and garbage collection.

mod archive_load;
mod archive_save;
mod blob;
mod changes;
mod error;
mod fsutil;
mod gc;
mod import;
mod manifest;
mod pull;
mod push;
mod reference;
mod registry;
mod remove;
mod shift;
mod snapshot;
mod state;
mod store;
mod unpack;

pub use error::Error;
pub use import::ImportOptions;
pub use reference::{parse_reference, Reference};
pub use store::{
    Credentials, Image, ImageStore, Progress, PruneReport, RemoveAction, StoreOptions,
};
