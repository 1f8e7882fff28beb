#![recursion_limit = "512"]
//! The node engine: the containers and images of this node, served as the Docker Engine API.
//!
//! `Engine` composes the `image` store and the `runtime`; the `api_*` modules translate the
//! Docker Engine API to engine operations, and `server` serves them on a unix socket.

mod api_containers;
mod api_exec;
mod api_images;
mod api_networks;
mod api_system;
mod api_volumes;
mod config;
mod container;
mod container_create;
mod container_exec;
mod container_inspect;
mod container_io;
mod container_mounts;
mod container_network;
mod container_remove;
mod container_spec;
mod container_start;
mod container_stats;
mod container_stop;
mod engine;
mod error;
mod events;
mod health;
mod hijack;
mod recover;
mod server;
mod table;
mod warm;

pub use config::Config;
pub use engine::Engine;
pub use error::ApiError;
pub use server::serve;

/// The Docker Engine API version this engine speaks; clients negotiate down from it.
pub const API_VERSION: &str = "1.47";
/// The oldest API version accepted, as dockerd's default minimum.
pub const MIN_API_VERSION: &str = "1.24";
