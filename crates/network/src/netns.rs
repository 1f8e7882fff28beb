//! Work inside a container's network namespace.
//!
//! A thread's network namespace is its own (setns with CLONE_NEWNET affects the calling
//! thread only), so the work runs on a fresh thread that joins the namespace and then ends:
//! no thread of the daemon's pools is ever left in a container's namespace. Sockets made
//! there stay in that namespace wherever they are used afterwards.

use std::path::Path;

use nix::sched::CloneFlags;

use crate::error::{Error, Result};

/// Runs `f` on a new thread inside the network namespace at `ns` (`/proc/<pid>/ns/net`).
pub fn in_netns<T, F>(ns: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let file = std::fs::File::open(ns)
        .map_err(|e| Error::io(format!("open network namespace {}", ns.display()), e))?;
    let what = ns.display().to_string();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("join network namespace {what}"), e.into()))?;
            f()
        })
        .map_err(|e| Error::io("spawn a thread", e))?
        .join()
        .unwrap_or_else(|_| Err(Error::Nft("a network namespace thread panicked".into())))
}

/// A netlink connection for the current thread's namespace, driven by a runtime of the
/// thread's own; for use inside [`in_netns`].
pub fn block_on_netlink<T>(f: impl AsyncFnOnce(rtnetlink::Handle) -> Result<T>) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("make a runtime", e))?;
    rt.block_on(async {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("open a netlink socket", e))?;
        let driver = tokio::spawn(conn);
        let out = f(handle).await;
        driver.abort();
        out
    })
}
