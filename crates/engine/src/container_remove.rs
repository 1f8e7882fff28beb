//! rm, rename and prune.

use std::collections::HashMap;
use std::sync::Arc;

use crate::container::{Paths, Status};
use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

/// Removes a container; a running one only with `force` (then it is killed first).
pub async fn remove(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    force: bool,
    volumes: bool,
) -> ApiResult<()> {
    let _op = entry.op.lock().await;
    let c = entry.get();
    if c.state.status.is_running() {
        if !force {
            let hint = if c.state.status == Status::Paused {
                "Unpause and then stop the container before attempting removal or force remove"
            } else {
                "Stop the container before attempting removal or force remove"
            };
            return Err(ApiError::conflict(format!(
                "cannot remove container \"/{}\": container is {}: {hint}",
                c.name,
                c.state.status.as_str()
            )));
        }
        entry.update(|c| c.state.manually_stopped = true)?;
        if c.state.status == Status::Paused {
            let _ = engine.runtime.resume(&c.id);
        }
        let mut phase = entry.phase.subscribe();
        match engine.runtime.kill(&c.id, libc::SIGKILL) {
            Ok(()) | Err(runtime::Error::NotRunning(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = phase.wait_for(|p| !p.running).await;
    }
    // Once the record says Removing, the removal is as good as done: a daemon that dies
    // before the host side is released finishes it when it starts again. Like dockerd's
    // removal, it is not forced to disk: a power loss right after may bring the container
    // back as exited, and no acknowledged container is ever lost.
    entry.update_state(|c| c.state.status = Status::Removing)?;
    drop(entry.take_warm());
    let (purging, e2, entry2) = (
        engine.purges.clone().read_owned().await,
        engine.clone(),
        entry.clone(),
    );
    tokio::spawn(async move {
        // An exit's teardown still in flight finishes first.
        let _tearing_down = entry2.teardown.lock().await;
        purge(&e2, &entry2.id).await;
        drop(purging);
    });
    engine.containers.remove(&c.id);
    crate::container_mounts::release(engine, &c, volumes);
    entry.phase.send_modify(|p| {
        p.removed = true;
        p.running = false;
    });
    let attrs = HashMap::from([
        ("name".to_string(), c.name.clone()),
        ("image".to_string(), c.image),
    ]);
    engine.events.container("destroy", &c.id, attrs);
    Ok(())
}

/// Releases what an exited container holds on the host: its runtime state and rootfs mount.
pub(crate) async fn teardown(engine: &Arc<Engine>, id: &str) {
    let (rt, id) = (engine.runtime.clone(), id.to_string());
    let rootfs = Paths::new(&engine.config.containers_dir(), &id).rootfs();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = rt.delete(&id) {
            tracing::warn!("delete runtime state of {id}: {e}");
        }
        if let Err(e) = runtime::rootfs::unmount(&rootfs) {
            tracing::warn!("unmount {}: {e}", rootfs.display());
        }
    })
    .await;
}

/// Releases what any container holds on the host, killing a process that is still waiting
/// to start or running, and waiting for its shim: [`teardown`] after that. Its directory
/// stays.
pub(crate) async fn release(engine: &Arc<Engine>, id: &str) {
    let (rt, id2) = (engine.runtime.clone(), id.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = rt.kill(&id2, libc::SIGKILL);
        let _ = rt.wait_shim_exit(&id2);
    })
    .await;
    teardown(engine, id).await;
}

/// [`release`], then removes the container's directory.
pub(crate) async fn purge(engine: &Arc<Engine>, id: &str) {
    release(engine, id).await;
    let dir = Paths::new(&engine.config.containers_dir(), id).dir;
    let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("{}: {e}", dir.display()))
        }
        _ => Ok(()),
    })
    .await;
    if let Ok(Err(e)) = removed {
        tracing::warn!("remove container {id}: {e}");
    }
}

pub async fn rename(engine: &Arc<Engine>, entry: &Arc<Entry>, new_name: &str) -> ApiResult<()> {
    let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
    if new_name.is_empty() {
        return Err(ApiError::bad_request(
            "Neither old nor new names may be empty",
        ));
    }
    let old = entry.get().name;
    if old == new_name {
        return Err(ApiError::bad_request(
            "Renaming a container with the same name as its current name",
        ));
    }
    crate::container_create::validate_name(new_name)?;
    engine.containers.rename(&entry.id, new_name)?;
    entry.update(|c| c.name = new_name.to_string())?;
    let attrs = HashMap::from([
        ("name".to_string(), new_name.to_string()),
        ("oldName".to_string(), format!("/{old}")),
    ]);
    engine.events.container("rename", &entry.id, attrs);
    Ok(())
}

/// `POST /containers/prune`: removes every stopped container; returns ids and bytes freed.
pub async fn prune(engine: &Arc<Engine>) -> ApiResult<(Vec<String>, u64)> {
    let mut deleted = Vec::new();
    let mut reclaimed = 0;
    for entry in engine.containers.all() {
        let c = entry.get();
        if matches!(
            c.state.status,
            Status::Created | Status::Exited | Status::Dead
        ) {
            reclaimed += dir_size(&entry.paths.upper());
            remove(engine, &entry, false, false).await?;
            deleted.push(c.id);
        }
    }
    Ok((deleted, reclaimed))
}

/// Bytes under a directory, without following links; for SizeRw and prune reports.
pub fn dir_size(path: &std::path::Path) -> u64 {
    volume::dir_size(path)
}
