//! Container lifecycle for cloudlet: OCI bundles with Docker's defaults, a per-container shim
//! built on youki's `libcontainer` (or an external runc/crun), json-file logs, exec, attach,
//! signals, pause/resume and cgroup statistics.
//!
//! The daemon side ([`Runtime`], [`Shim`]) is async; the shim ([`shim::main`]) is a plain
//! single-threaded process started by re-executing the daemon's own binary as `<exe> shim …`.
//!
//! # Using it from the engine
//! - The binary's `main` must call [`shim::main`] when `argv[1] == "shim"`, before it starts
//!   tokio or any thread.
//! - `docker run` (attached): [`Runtime::create`], [`Shim::attach`], then [`Shim::start`], so
//!   no early output is missed; `docker start -d`: [`Runtime::start`]. Exec likewise:
//!   [`Runtime::create_exec`] + attach + start, or [`Runtime::exec`].
//! - After a daemon restart, [`Runtime::connect`] finds running shims again; a shim that is
//!   gone answers `NotRunning`, and its exit file (written before the shim stops answering)
//!   says how the container ended. [`Runtime::delete`] removes what a container left behind.
//! - Shims are double-forked and lead their own session: they are reparented to init (or
//!   to the nearest child subreaper). If the daemon makes itself a subreaper, it must reap
//!   exited shims (`waitpid(-1)`) itself.
//! - With `SpecOptions::userns`, container root is host uid/gid [`spec::USERNS_HOST_ID`]
//!   (65536 ids): the engine must chown the rootfs snapshot and writable volumes into that
//!   range (`chown -R -h 100000:100000` shifted by the original ids). Host networking with a
//!   user namespace cannot mount a fresh sysfs.
//! - `--privileged` grants every capability, all device-cgroup access and no seccomp or
//!   masked paths, but does not bind the host's device nodes into /dev.
//! - Control sockets live in `<state_root>/s/`, named after the first 32 characters of the
//!   container id (and exec id): ids must be unique in those characters (docker's hex ids are).

mod cgroup;
mod client;
mod control;
mod error;
mod exit;
pub mod logs;
pub mod proto;
pub mod rootfs;
mod seccomp;
pub mod shim;
pub mod spec;
mod user;

pub use cgroup::{prewarm_migration, Stats};
pub use client::{
    Attach, ExecRequest, LogConfig, Output, Runtime, RuntimeClass, Shim, StartRequest,
};
pub use error::{Error, StartFailure};
pub use exit::{read_exit_file, ExitStatus};
pub use user::{resolve as resolve_user, ResolvedUser};
