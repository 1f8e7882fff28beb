//! Finding the containers a previous daemon left, after a restart or a `kill -9`.
//!
//! Running containers kept running under their shims: reconnect to them. Those whose shim is
//! gone are marked exited with the code the shim recorded. Then restart policies apply.
//! Containers made ahead of demand (see `warm`) are removed.

use std::sync::Arc;

use crate::container::{Container, Paths, Status};
use crate::table::Entry;
use crate::Engine;

pub async fn recover(engine: &Arc<Engine>) {
    let dir = engine.config.containers_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for d in rd.flatten() {
        let id = d.file_name().to_string_lossy().into_owned();
        let paths = Paths::new(&dir, &id);
        if !paths.record().exists() {
            // A container made ahead of demand (it has no record): it dies with its daemon.
            crate::container_remove::purge(engine, &id).await;
            continue;
        }
        let c = match Container::load(&paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("skip container {id}: {e}");
                continue;
            }
        };
        if c.state.status == Status::Removing {
            crate::container_remove::purge(engine, &id).await;
            continue;
        }
        let entry = Entry::new(c.clone(), paths.clone());
        if let Err(e) = engine.containers.insert(entry.clone()) {
            tracing::warn!("skip container {id}: {e}");
            continue;
        }
        let running = c.state.status.is_running();
        crate::container_mounts::register(engine, &id, &c.mounts, running);
        if c.state.status.is_running() || c.state.status == Status::Restarting {
            reattach(engine, &entry).await;
        } else if c.state.status == Status::Created && engine.runtime.connect(&id).await.is_ok() {
            // Claimed ahead of demand but not started: its start will make it anew.
            crate::container_remove::release(engine, &id).await;
        }
    }
    // Running containers keep their addresses, ports and resolvers; the others' go. Then
    // the firewall table is written anew.
    let running = engine
        .containers
        .all()
        .iter()
        .map(|e| e.get())
        .filter(|c| c.state.status.is_running() && c.state.pid > 0)
        .map(|c| (c.id, c.state.pid as i32))
        .collect();
    engine.networks.restore(&running).await;
    // Restart policies also apply when the daemon starts.
    for entry in engine.containers.all() {
        let c = entry.get();
        // Restarting: on_exit above already scheduled it.
        if c.state.status.is_running()
            || c.state.status == Status::Restarting
            || c.state.manually_stopped
        {
            continue;
        }
        let policy = c
            .host_config
            .restart_policy
            .as_ref()
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .unwrap_or_default();
        let restart = match policy.as_str() {
            "always" | "unless-stopped" => c.has_been_started,
            "on-failure" => c.state.exit_code != 0 && c.has_been_started,
            _ => false,
        };
        if restart {
            if let Err(e) = crate::container_start::start(engine, &entry).await {
                tracing::warn!("restart {} at daemon start: {e}", c.id);
            }
        }
    }
}

async fn reattach(engine: &Arc<Engine>, entry: &Arc<Entry>) {
    match engine.runtime.connect(&entry.id).await {
        Ok(shim) => {
            tracing::info!(id = %entry.id, "reconnected to running container");
            entry.set_shim(Some(shim.clone()));
            entry.phase.send_modify(|p| p.running = true);
            crate::health::spawn(engine.clone(), entry.clone());
            crate::container_start::spawn_monitor(engine.clone(), entry.clone(), shim);
        }
        Err(_) => {
            // The shim is gone: the container exited while no daemon watched. Its shim left
            // the exit in the exit file, unless it was killed itself.
            let status = match runtime::read_exit_file(&entry.paths.exit_file()) {
                Ok(Some(s)) => s,
                _ => runtime::ExitStatus {
                    code: 255,
                    oom_killed: false,
                    finished_at: chrono::Utc::now(),
                    error: Some("shim disappeared".into()),
                },
            };
            crate::container_start::on_exit(engine, entry, Ok(status)).await;
        }
    }
}
