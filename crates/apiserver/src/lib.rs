//! A Kubernetes-compatible API server over cloudlet's revisioned store.
//!
//! Objects are generic JSON (`serde_json::Value`) described by a run-time [`Catalog`] of
//! resources, so built-in kinds and custom resources (added when their CRD is created)
//! share one code path. The store's revision is the resourceVersion; keys are
//! `/registry/{group}/{plural}/...` (see [`keys`]). Requests are JSON or YAML, or protobuf
//! for the kinds kubectl's typed clients send; responses are JSON (or a Table).
//!
//! Start it with:
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn store::Store>, pki: std::sync::Arc<pki::Pki>) -> Result<(), apiserver::Error> {
//! let mut config = apiserver::Config::new(store.clone(), pki);
//! // Optional: authorize by RBAC objects instead of "system:masters only".
//! config.authorizer = std::sync::Arc::new(apiserver::Rbac::new(store));
//! apiserver::ApiServer::new(config).await?.run().await
//! # }
//! ```

mod admission;
mod apply;
pub mod audit;
pub mod auth;
pub mod catalog;
mod crd;
mod defaults;
mod delete;
mod discovery;
mod encrypt;
mod field_diff;
mod field_types;
mod fieldset;
mod gc;
pub mod keys;
mod managed_fields;
pub mod meta;
mod metrics;
mod objects;
mod openapi;
mod patch;
mod protobuf;
pub mod rbac;
mod request;
pub mod request_info;
mod rest;
mod review;
pub mod selector;
mod server;
mod services;
pub mod status;
mod strategic;
mod table;
mod watch;
mod write;

pub use auth::{AllowMasters, Authorizer, Decision, User};
pub use catalog::{Catalog, Resource};
pub use discovery::KUBERNETES_VERSION;
pub use rbac::Rbac;
pub use server::{server_url, ApiServer, Config, Error, DEFAULT_KUBECONFIG, DEFAULT_NAMESPACES};
pub use status::ApiError;
