//! Starting a container: mount its rootfs, write its bundle, start its shim, and watch it
//! until it exits (then apply its restart policy or `--rm`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::container::{Container, Status};
use crate::container_network;
use crate::container_spec;
use crate::error::ApiError;
use crate::error::ApiResult;
use crate::table::Entry;
use crate::Engine;

/// Starts a created or exited container. `Ok(false)` when it was already running (docker
/// answers 304 then).
pub async fn start(engine: &Arc<Engine>, entry: &Arc<Entry>) -> ApiResult<bool> {
    let _op = entry.op.lock().await;
    start_locked(engine, entry).await
}

pub(crate) async fn start_locked(engine: &Arc<Engine>, entry: &Arc<Entry>) -> ApiResult<bool> {
    let c = entry.get();
    match c.state.status {
        Status::Running => return Ok(false),
        Status::Paused => {
            return Err(ApiError::conflict(
                "cannot start a paused container, try unpause instead",
            ))
        }
        Status::Removing | Status::Dead => {
            return Err(ApiError::conflict(format!(
                "container {} is marked for removal",
                c.id
            )))
        }
        _ => {}
    }
    match launch(engine, entry, &c).await {
        Ok((shim, pid)) => {
            entry.update_state(|c| {
                c.state.status = Status::Running;
                c.state.pid = pid as i64;
                c.state.started_at = Some(chrono::Utc::now());
                c.state.error.clear();
                c.state.exit_code = 0;
                c.state.oom_killed = false;
                c.state.manually_stopped = false;
                c.has_been_started = true;
            })?;
            entry.phase.send_modify(|p| p.running = true);
            engine.events.container("start", &c.id, attrs(&c));
            crate::health::spawn(engine.clone(), entry.clone());
            spawn_monitor(engine.clone(), entry.clone(), shim);
            Ok(true)
        }
        Err(StartFailed {
            error: e,
            exit_code: code,
        }) => {
            let _ = entry.update(|c| {
                c.state.status = if c.has_been_started {
                    Status::Exited
                } else {
                    Status::Created
                };
                c.state.exit_code = code;
                c.state.error = e.message.clone();
            });
            crate::container_remove::teardown(engine, &c.id).await;
            container_network::release(engine, &c.id).await;
            engine.volumes.deactivate(&c.id);
            // Attach clients waiting for this start get nothing: end their streams.
            entry
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            entry.phase.send_modify(|p| {
                p.exits += 1;
                p.exit_code = code;
            });
            // dockerd removes an --rm container whose start failed; `docker run --rm` waits
            // for that removal.
            if c.host_config.auto_remove == Some(true) {
                let (engine, entry) = (engine.clone(), entry.clone());
                tokio::spawn(async move {
                    if let Err(e) =
                        crate::container_remove::remove(&engine, &entry, true, true).await
                    {
                        tracing::warn!("auto-remove {}: {e}", entry.id);
                    }
                });
            }
            Err(e)
        }
    }
}

/// Everything between "created" and a running process: the container made ahead of demand
/// that `create` claimed for it, or a new one.
async fn launch(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    c: &Container,
) -> Result<(runtime::Shim, i32), StartFailed> {
    if let Some(shim) = entry.take_warm() {
        return launch_warm(engine, entry, c, shim).await;
    }
    // The init's cgroup migration waits for an RCU grace period; start it in parallel.
    drop(tokio::task::spawn_blocking(runtime::prewarm_migration));
    // The last run's teardown, if it is still going on, finishes first.
    drop(entry.teardown.lock().await);
    // Addresses first: the container's /etc/hosts names its own.
    let plan = container_network::plan(engine, c)?;
    let (e2, c2, paths) = (engine.clone(), c.clone(), entry.paths.clone());
    tokio::task::spawn_blocking(move || {
        container_spec::prepare(&e2.images, Some(&e2.volumes), &c2, &paths, &plan)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    tracing::debug!(id = %c.id, "rootfs mounted and bundle written");
    let req = container_spec::start_request(c, &entry.paths, false)?;
    let shim = engine
        .runtime
        .create(req)
        .await
        .map_err(|e| start_failed(c, e))?;
    tracing::debug!(id = %c.id, "shim created the container");
    connect(engine, c, &shim).await?;
    let started = run_created(entry, c, &shim, None).await?;
    if engine.warm.remember(engine, c) {
        refill_later(engine, entry, c);
    }
    Ok(started)
}

/// Starts a container made ahead of demand: the bundle is rewritten with the claimant's
/// command and host files (for exec and inspection), and the command goes with `start`.
async fn launch_warm(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    c: &Container,
    shim: runtime::Shim,
) -> Result<(runtime::Shim, i32), StartFailed> {
    let (c2, paths) = (c.clone(), entry.paths.clone());
    let process = match container_network::plan(engine, c) {
        Ok(plan) => tokio::task::spawn_blocking(move || {
            container_spec::write_bundle(&c2, &paths, &plan)?;
            container_spec::process(&c2, &paths)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?,
        Err(e) => Err(e),
    };
    tracing::debug!(id = %c.id, "bundle rewritten");
    let process = match process {
        Ok(p) => p,
        Err(e) => {
            crate::container_remove::release(engine, &c.id).await;
            return Err(e.into());
        }
    };
    connect(engine, c, &shim).await?;
    let started = run_created(entry, c, &shim, Some(process)).await;
    refill_later(engine, entry, c);
    started
}

/// Makes the container's network links in its namespace, now that its init exists; if
/// that fails, the created container goes (its addresses go with the failed start).
async fn connect(
    engine: &Arc<Engine>,
    c: &Container,
    shim: &runtime::Shim,
) -> Result<(), StartFailed> {
    if let Err(e) = container_network::attach(engine, c, shim.pid()).await {
        crate::container_remove::release(engine, &c.id).await;
        return Err(e.into());
    }
    tracing::debug!(id = %c.id, "network attached");
    Ok(())
}

/// Has the pool make the next container of `c`'s shape. Making one forks processes and
/// moves one into cgroups, which holds up forks host-wide for a moment: so not while `c`
/// starts, but once it exits or has run for a while.
fn refill_later(engine: &Arc<Engine>, entry: &Arc<Entry>, c: &Container) {
    let (e2, image_id, mut phase) = (engine.clone(), c.image_id.clone(), entry.phase.subscribe());
    let exits = phase.borrow().exits;
    tokio::spawn(async move {
        let exited = phase.wait_for(|p| p.exits > exits);
        let _ = tokio::time::timeout(crate::warm::REFILL_AFTER, exited).await;
        e2.warm.refill(&e2, &image_id);
    });
}

/// Hands the created container to waiting attach clients, then starts its process.
async fn run_created(
    entry: &Arc<Entry>,
    c: &Container,
    shim: &runtime::Shim,
    process: Option<runtime::proto::ProcessOverride>,
) -> Result<(runtime::Shim, i32), StartFailed> {
    entry.set_shim(Some(shim.clone()));
    // Clients that attached before start (`docker run` does) get the shim now and must be
    // attached before the process runs, or they would miss its first output.
    crate::container_io::hand_over_pending(entry, shim).await;
    let started = match process {
        Some(p) => shim.start_with(p).await,
        None => shim.start().await,
    };
    match started {
        Ok(pid) => {
            tracing::debug!(id = %c.id, pid, "process started");
            Ok((shim.clone(), pid))
        }
        Err(e) => {
            entry.set_shim(None);
            Err(start_failed(c, e))
        }
    }
}

/// A start that failed, with the exit code docker leaves on the container.
struct StartFailed {
    error: ApiError,
    exit_code: i64,
}

impl From<ApiError> for StartFailed {
    fn from(error: ApiError) -> Self {
        StartFailed {
            error,
            exit_code: 128,
        }
    }
}

/// A process that could not start, told in runc's words: the docker CLI matches them to
/// pick its own exit code (127 missing executable, 126 not executable, else 125).
fn start_failed(c: &Container, e: runtime::Error) -> StartFailed {
    let path = &c.path;
    let (reason, exit_code) = match e.start_failure() {
        Some(runtime::StartFailure::NotFound) if path.contains('/') => (
            format!("exec: \"{path}\": stat {path}: no such file or directory"),
            127,
        ),
        Some(runtime::StartFailure::NotFound) => (
            format!("exec: \"{path}\": executable file not found in $PATH"),
            127,
        ),
        Some(runtime::StartFailure::PermissionDenied) => {
            (format!("exec: \"{path}\": permission denied"), 126)
        }
        _ => return ApiError::from(e).into(),
    };
    let error = ApiError::bad_request(format!(
        "failed to create task for container: unable to start container process: {reason}: unknown"
    ));
    StartFailed { error, exit_code }
}

fn attrs(c: &Container) -> HashMap<String, String> {
    let mut a: HashMap<String, String> = c.config.labels.clone().unwrap_or_default();
    a.insert("name".into(), c.name.clone());
    a.insert("image".into(), c.image.clone());
    a
}

/// Watches a running container until it exits, then records the exit and applies its
/// restart policy or `--rm`.
pub fn spawn_monitor(engine: Arc<Engine>, entry: Arc<Entry>, shim: runtime::Shim) {
    tokio::spawn(async move {
        let status = shim.wait().await;
        on_exit(&engine, &entry, status).await;
    });
}

/// Records an exit (seen live, or found after a daemon restart), releases the container's
/// mount and runtime state, and applies its restart policy or `--rm`.
pub(crate) async fn on_exit(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    status: Result<runtime::ExitStatus, runtime::Error>,
) {
    let (code, oom, finished, error) = match status {
        Ok(s) => (
            s.code as i64,
            s.oom_killed,
            s.finished_at,
            s.error.unwrap_or_default(),
        ),
        Err(e) => (255, false, chrono::Utc::now(), crate::error::chain(&e)),
    };
    tracing::debug!(id = %entry.id, "exit seen");
    entry.set_shim(None);
    // Host ports and addresses go before the exit is told: `docker rm -f web && docker run
    // -p 80:80 …` must find the port free. (Cheap: rules change only for published ports.)
    container_network::release(engine, &entry.id).await;
    // Publish the exit first, so that `wait` and the CLI see it at once; the shim is still
    // cleaning up, and the teardown waits for it while holding off the next start.
    let tearing_down = entry.teardown.lock().await;
    let c = match entry.update_state(|c| {
        c.state.status = Status::Exited;
        c.state.pid = 0;
        c.state.exit_code = code;
        c.state.oom_killed = oom;
        c.state.finished_at = Some(finished);
        c.state.error = error.clone();
        c.clone()
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            entry.get()
        }
    };
    if oom {
        engine.events.container("oom", &c.id, attrs(&c));
    }
    let mut a = attrs(&c);
    a.insert("exitCode".into(), code.to_string());
    engine.events.container("die", &c.id, a);
    entry.phase.send_modify(|p| {
        p.running = false;
        p.exits += 1;
        p.exit_code = code;
        p.error = Some(error.clone()).filter(|e| !e.is_empty());
    });
    tracing::debug!(id = %entry.id, code, "exit published");
    let rt = engine.runtime.clone();
    let id = entry.id.clone();
    let _ = tokio::task::spawn_blocking(move || rt.wait_shim_exit(&id)).await;
    crate::container_remove::teardown(engine, &entry.id).await;
    engine.volumes.deactivate(&entry.id);
    drop(tearing_down);

    if should_restart(&c, code) {
        restart_later(engine.clone(), entry.clone(), &c);
    } else if c.host_config.auto_remove == Some(true) {
        if let Err(e) = crate::container_remove::remove(engine, entry, true, true).await {
            tracing::warn!("auto-remove {}: {e}", c.id);
        }
    }
}

fn should_restart(c: &Container, code: i64) -> bool {
    if c.state.manually_stopped {
        return false;
    }
    let Some(rp) = &c.host_config.restart_policy else {
        return false;
    };
    match rp.name.map(|n| n.to_string()).unwrap_or_default().as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            let max = rp.maximum_retry_count.unwrap_or(0);
            code != 0 && (max == 0 || c.restart_count < max)
        }
        _ => false,
    }
}

/// Restarts after a back-off that doubles from 100 ms up to a minute, as docker does, and is
/// reset when the container ran for ten seconds.
fn restart_later(engine: Arc<Engine>, entry: Arc<Entry>, c: &Container) {
    let ran = match (c.state.started_at, c.state.finished_at) {
        (Some(s), Some(f)) => (f - s).num_seconds(),
        _ => 0,
    };
    let attempt = if ran >= 10 {
        0
    } else {
        c.restart_count.clamp(0, 10) as u32
    };
    let delay = Duration::from_millis(100u64 << attempt).min(Duration::from_secs(60));
    let _ = entry.update(|c| c.state.status = Status::Restarting);
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let _op = entry.op.lock().await;
        let c = entry.get();
        if c.state.status != Status::Restarting || c.state.manually_stopped {
            return;
        }
        let _ = entry.update(|c| {
            c.restart_count += 1;
            c.state.status = Status::Exited;
        });
        if let Err(e) = start_locked(&engine, &entry).await {
            tracing::warn!("restart {}: {e}", entry.id);
        }
    });
}
