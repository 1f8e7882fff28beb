//! Starting a container: mount its rootfs, write its bundle, start its shim, and watch it
//! until it exits (then apply its restart policy or `--rm`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runtime::spec::{Bind, NetworkMode, SpecOptions, Ulimit};

use crate::container::{Container, Status};
use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

/// Per-container log rotation: docker's json-file defaults are unbounded; we keep 3 × 10 MB
/// unless `--log-opt max-size/max-file` say otherwise.
const LOG_MAX_SIZE: u64 = 10 * 1000 * 1000;
const LOG_MAX_FILES: u32 = 3;

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
            entry.update(|c| {
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
            teardown(engine, &c.id, entry).await;
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

/// Everything between "created" and a running process.
async fn launch(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    c: &Container,
) -> Result<(runtime::Shim, i32), StartFailed> {
    // The init's cgroup migration waits for an RCU grace period; start it in parallel.
    drop(tokio::task::spawn_blocking(runtime::prewarm_migration));
    // The last run's teardown, if it is still going on, finishes first.
    drop(entry.teardown.lock().await);
    let paths = entry.paths.clone();
    let images = engine.images.clone();
    let image_id = c.image_id.clone();
    let c2 = c.clone();
    let (bundle, exit_file) = tokio::task::spawn_blocking(move || -> ApiResult<_> {
        let img = images.resolve(&image_id)?;
        for d in [paths.upper(), paths.work(), paths.rootfs(), paths.bundle()] {
            std::fs::create_dir_all(&d)?;
        }
        // In a user namespace the container's root is host uid USERNS_HOST_ID: it gets layers
        // owned accordingly, and owns its writable layer.
        let layers = if userns(&c2) {
            let shift = runtime::spec::USERNS_HOST_ID;
            for d in [paths.upper(), paths.work()] {
                std::os::unix::fs::chown(&d, Some(shift), Some(shift))?;
            }
            images.layers_shifted(&img, shift)?
        } else {
            images.layers(&img)?
        };
        runtime::rootfs::unmount(&paths.rootfs())?;
        runtime::rootfs::mount_overlay(&layers, &paths.upper(), &paths.work(), &paths.rootfs())?;
        let opts = spec_options(&c2, &paths)?;
        let spec = runtime::spec::build(&opts)?;
        runtime::spec::write_bundle(&paths.bundle(), &spec)?;
        let _ = std::fs::remove_file(paths.exit_file());
        Ok((paths.bundle(), paths.exit_file()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;

    tracing::debug!(id = %c.id, "rootfs mounted and bundle written");
    let (max_size, max_files) = log_options(c);
    let req = runtime::StartRequest {
        id: c.id.clone(),
        bundle,
        tty: c.tty(),
        open_stdin: c.config.open_stdin.unwrap_or(false),
        stdin_once: c.config.stdin_once.unwrap_or(false),
        log: Some(runtime::LogConfig {
            path: entry.paths.log(&c.id),
            max_size,
            max_files,
        }),
        exit_file,
        runtime_class: crate::container_create::runtime_class(&c.host_config)?,
    };
    let shim = engine
        .runtime
        .create(req)
        .await
        .map_err(|e| start_failed(c, e))?;
    tracing::debug!(id = %c.id, "shim created the container");
    entry.set_shim(Some(shim.clone()));
    // Clients that attached before start (`docker run` does) get the shim now and must be
    // attached before the process runs, or they would miss its first output.
    crate::container_io::hand_over_pending(entry, &shim).await;
    match shim.start().await {
        Ok(pid) => {
            tracing::debug!(id = %c.id, pid, "process started");
            Ok((shim, pid))
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

fn log_options(c: &Container) -> (u64, u32) {
    let opts = c
        .host_config
        .log_config
        .as_ref()
        .and_then(|l| l.config.clone())
        .unwrap_or_default();
    let size = opts
        .get("max-size")
        .and_then(|s| parse_size(s))
        .unwrap_or(LOG_MAX_SIZE);
    let files = opts
        .get("max-file")
        .and_then(|s| s.parse().ok())
        .unwrap_or(LOG_MAX_FILES);
    (size, files.max(1))
}

/// "10m", "1g", "512k", "100" → bytes (docker's RAMInBytes for log sizes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// `--userns=private` (or `auto`) asks for a user namespace; docker's "host" or nothing
/// shares the host's.
fn userns(c: &Container) -> bool {
    matches!(
        c.host_config.userns_mode.as_deref(),
        Some("private") | Some("auto")
    )
}

/// `-v /host:/ctr[:ro|rw]`; named volumes come with the volumes issue.
pub fn parse_bind(spec: &str) -> ApiResult<Bind> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{spec}'"
            )))
        }
    };
    if !source.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid volume specification: '{spec}': named volumes are not supported yet; \
             use an absolute host path"
        )));
    }
    if !destination.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"bind\": \
             invalid mount path: '{destination}' mount path must be absolute"
        )));
    }
    let mut read_only = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => read_only = true,
            "rw" | "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave"
            | "slave" => {}
            _ => return Err(ApiError::bad_request(format!("invalid mode: {m}"))),
        }
    }
    Ok(Bind {
        source: PathBuf::from(source),
        destination: destination.to_string(),
        read_only,
    })
}

/// The runtime's view of a container: docker's create options, translated.
fn spec_options(c: &Container, paths: &crate::container::Paths) -> ApiResult<SpecOptions> {
    let hc = &c.host_config;
    let hostname = c
        .config
        .hostname
        .clone()
        .unwrap_or_else(|| c.id[..12].to_string());
    let mut env = c.config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
    }
    if c.tty() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let mut binds = Vec::new();
    for b in hc.binds.iter().flatten() {
        let bind = parse_bind(b)?;
        if !bind.source.exists() {
            // Docker creates a missing host directory for -v.
            std::fs::create_dir_all(&bind.source)?;
        }
        binds.push(bind);
    }
    binds.extend(etc_files(c, paths, &hostname)?);
    let mut no_new_privileges = false;
    let mut seccomp_unconfined = false;
    for opt in hc.security_opt.iter().flatten() {
        match opt.replace('=', ":").as_str() {
            "no-new-privileges" | "no-new-privileges:true" => no_new_privileges = true,
            "no-new-privileges:false" => no_new_privileges = false,
            "seccomp:unconfined" => seccomp_unconfined = true,
            o if o.starts_with("label") || o.starts_with("apparmor") => {}
            o => {
                return Err(ApiError::bad_request(format!(
                    "Invalid --security-opt: {o:?}"
                )))
            }
        }
    }
    let network = match hc.network_mode.as_deref().unwrap_or("") {
        "host" => NetworkMode::Host,
        _ => NetworkMode::New,
    };
    let mut args = vec![c.path.clone()];
    args.extend(c.args.iter().cloned());
    Ok(SpecOptions {
        args,
        env,
        cwd: c.config.working_dir.clone().unwrap_or_else(|| "/".into()),
        user: c.config.user.clone().unwrap_or_default(),
        hostname,
        tty: c.tty(),
        read_only: hc.readonly_rootfs.unwrap_or(false),
        privileged: hc.privileged.unwrap_or(false),
        cap_add: hc.cap_add.clone().unwrap_or_default(),
        cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        no_new_privileges,
        seccomp_unconfined,
        memory: hc.memory.filter(|m| *m > 0),
        memory_swap: hc.memory_swap.filter(|m| *m != 0),
        nano_cpus: hc.nano_cpus.filter(|n| *n > 0),
        cpu_shares: hc.cpu_shares.filter(|n| *n > 0).map(|n| n as u64),
        pids_limit: hc.pids_limit.filter(|n| *n > 0),
        ulimits: hc
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit {
                name: u.name.clone().unwrap_or_default(),
                soft: u.soft.unwrap_or(0) as u64,
                hard: u.hard.unwrap_or(0) as u64,
            })
            .collect(),
        tmpfs: hc.tmpfs.clone().unwrap_or_default().into_iter().collect(),
        binds,
        init: hc.init.unwrap_or(false),
        userns: userns(c),
        network,
        cgroup_path: format!("/cloudlet/{}", c.id),
        rootfs: paths.rootfs(),
        shm_size: hc.shm_size.filter(|s| *s > 0),
    })
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, written per container and bind-mounted,
/// as docker does.
fn etc_files(
    c: &Container,
    paths: &crate::container::Paths,
    hostname: &str,
) -> ApiResult<Vec<Bind>> {
    let host_net = c.host_config.network_mode.as_deref() == Some("host");
    let hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let mut h = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n",
        );
        for extra in c.host_config.extra_hosts.iter().flatten() {
            if let Some((name, ip)) = extra.split_once(':') {
                h.push_str(&format!("{ip}\t{name}\n"));
            }
        }
        h.push_str(&format!("127.0.1.1\t{hostname}\n"));
        h
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ("hosts", hosts, "/etc/hosts"),
        ("resolv.conf", resolv, "/etc/resolv.conf"),
    ];
    let mut binds = Vec::new();
    for (file, content, dest) in files {
        let path = paths.dir.join(file);
        std::fs::write(&path, content)?;
        binds.push(Bind {
            source: path,
            destination: dest.into(),
            read_only: false,
        });
    }
    Ok(binds)
}

fn attrs(c: &Container) -> HashMap<String, String> {
    let mut a: HashMap<String, String> = c.config.labels.clone().unwrap_or_default();
    a.insert("name".into(), c.name.clone());
    a.insert("image".into(), c.image.clone());
    a
}

/// Releases what a stopped container holds on the host: its rootfs mount and runtime state.
pub async fn teardown(engine: &Arc<Engine>, id: &str, entry: &Arc<Entry>) {
    let rootfs = entry.paths.rootfs();
    let rt = engine.runtime.clone();
    let id = id.to_string();
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
    entry.set_shim(None);
    // Publish the exit first, so that `wait` and the CLI see it at once; the shim is still
    // cleaning up, and the teardown waits for it while holding off the next start.
    let tearing_down = entry.teardown.lock().await;
    let c = match entry.update(|c| {
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
    let rt = engine.runtime.clone();
    let id = entry.id.clone();
    let _ = tokio::task::spawn_blocking(move || rt.wait_shim_exit(&id)).await;
    teardown(engine, &entry.id, entry).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let b = parse_bind("/srv/www:/www:ro").unwrap();
        assert_eq!(b.source, PathBuf::from("/srv/www"));
        assert_eq!(b.destination, "/www");
        assert!(b.read_only);
        assert!(parse_bind("/a:b").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("justone").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10m"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("512k"), Some(512 * 1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
}
