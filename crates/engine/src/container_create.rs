//! `POST /containers/create`: validate, merge with the image's config, persist.

use std::collections::HashMap;
use std::sync::Arc;

use bollard_stubs::models::{ContainerConfig, ContainerCreateBody, HostConfig};

use crate::container::{Container, Paths, State};
use crate::engine::new_id;
use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

/// Docker refuses memory limits below 6 MB.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

pub async fn create(
    engine: &Arc<Engine>,
    name: Option<String>,
    body: ContainerCreateBody,
) -> ApiResult<(String, Vec<String>)> {
    let image_ref = body.image.clone().unwrap_or_default();
    if image_ref.is_empty() {
        return Err(ApiError::bad_request("no image specified"));
    }
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => {
            let n = n.strip_prefix('/').unwrap_or(&n).to_string();
            validate_name(&n)?;
            n
        }
        None => generate_name(engine),
    };
    let mut host_config = body.host_config.clone().unwrap_or_default();
    validate_host_config(&host_config)?;
    default_host_config(&mut host_config)?;
    let networks = crate::container_network::resolve(
        engine,
        &mut host_config,
        body.networking_config.as_ref(),
    )?;

    let images = engine.images.clone();
    let r = image_ref.clone();
    let img = tokio::task::spawn_blocking(move || images.resolve(&r))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;

    let images = engine.images.clone();
    let i2 = img.clone();
    let raw_config = tokio::task::spawn_blocking(move || images.raw_config(&i2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let image_volumes: Vec<String> = img
        .config
        .config()
        .as_ref()
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    let config = merge_config(&body, &img, &raw_config);
    let (path, args) = command(&config)?;
    let mounts = crate::container_mounts::resolve(engine, &body, &host_config, &image_volumes)?;
    let mut container = Container {
        id: new_id(),
        name,
        created: chrono::Utc::now(),
        image: image_ref,
        image_id: img.id.clone(),
        config,
        host_config,
        path,
        args,
        state: State::default(),
        restart_count: 0,
        networks,
        mounts,
        has_been_started: false,
    };
    // A container made ahead of demand with this one's shape becomes this one.
    let claimed = engine.warm.claim(engine, &container).await;
    match &claimed {
        Some(w) => {
            tracing::debug!(id = %w.id, "claimed a warm container");
            container.id = w.id.clone();
        }
        // A start usually follows: begin the kernel's wait for its cgroup migration now.
        // (Not for a claimed container: it migrates nothing, and the move holds up every
        // fork and thread creation on the host until its grace period ends.)
        None => drop(tokio::task::spawn_blocking(runtime::prewarm_migration)),
    }
    let id = container.id.clone();
    crate::container_mounts::register(engine, &id, &container.mounts, false);
    let paths = Paths::new(&engine.config.containers_dir(), &id);
    let entry = Entry::new(container.clone(), paths.clone());
    let warm = claimed.is_some();
    *entry.warm.lock().unwrap_or_else(|e| e.into_inner()) = claimed.map(|w| w.shim);
    let saved = engine.containers.insert(entry).and_then(|()| {
        container.save(&paths).map_err(|e| {
            engine.containers.remove(&id);
            ApiError::internal(format!("save container {id}: {e}"))
        })
    });
    if let Err(e) = saved {
        crate::container_mounts::release(engine, &container, true);
        match warm {
            true => crate::container_remove::purge(engine, &id).await,
            false => drop(std::fs::remove_dir_all(&paths.dir)),
        }
        return Err(e);
    }
    let attrs = HashMap::from([
        ("name".to_string(), container.name.clone()),
        ("image".to_string(), container.image.clone()),
    ]);
    engine.events.container("create", &id, attrs);
    Ok((id, Vec::new()))
}

pub(crate) fn validate_name(name: &str) -> ApiResult<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok || name.len() < 2 {
        return Err(ApiError::bad_request(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

fn validate_host_config(hc: &HostConfig) -> ApiResult<()> {
    if let Some(m) = hc.memory.filter(|m| *m != 0) {
        if m < MIN_MEMORY {
            return Err(ApiError::bad_request("Minimum memory limit allowed is 6MB"));
        }
    }
    if let (Some(m), Some(s)) = (hc.memory, hc.memory_swap) {
        if m > 0 && s > 0 && s < m {
            return Err(ApiError::bad_request(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
    }
    if let Some(c) = hc.nano_cpus {
        if c < 0 {
            return Err(ApiError::bad_request(
                "Range of CPUs is from 0.01 to the number of CPUs",
            ));
        }
        let max = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        if c > max * 1_000_000_000 {
            return Err(ApiError::bad_request(format!(
                "Range of CPUs is from 0.01 to {max}.00, as there are only {max} CPUs available"
            )));
        }
    }
    if let Some(rp) = &hc.restart_policy {
        let name = rp.name.map(|n| n.to_string()).unwrap_or_default();
        let retries = rp.maximum_retry_count.unwrap_or(0);
        match name.as_str() {
            "" | "no" | "always" | "unless-stopped" if retries != 0 => {
                return Err(ApiError::bad_request("invalid restart policy: maximum retry count can only be used with 'on-failure'"))
            }
            _ if retries < 0 => {
                return Err(ApiError::bad_request(
                    "invalid restart policy: maximum retry count cannot be negative",
                ))
            }
            _ => {}
        }
        if hc.auto_remove == Some(true) && !matches!(name.as_str(), "" | "no") {
            return Err(ApiError::bad_request(
                "conflicting options: cannot specify both --restart and --rm",
            ));
        }
    }
    runtime_class(hc)?;
    match hc.userns_mode.as_deref().unwrap_or("") {
        "" | "host" | "private" | "auto" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid userns mode {other:?}: use host, private or auto"
            )))
        }
    }
    for b in hc.binds.iter().flatten() {
        crate::container_mounts::parse_bind(b)?;
    }
    Ok(())
}

/// What dockerd fills in on create, and clients (the Python SDK) read back.
fn default_host_config(hc: &mut HostConfig) -> ApiResult<()> {
    use bollard_stubs::models::{HostConfigLogConfig, RestartPolicy, RestartPolicyNameEnum};
    let log = hc
        .log_config
        .get_or_insert_with(HostConfigLogConfig::default);
    match log.typ.as_deref() {
        None | Some("") | Some("json-file") => log.typ = Some("json-file".into()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "logging driver {other:?} is not supported; cloudlet writes json-file logs"
            )))
        }
    }
    log.config.get_or_insert_with(HashMap::new);
    if hc
        .network_mode
        .as_deref()
        .is_none_or(|m| m.is_empty() || m == "default")
    {
        hc.network_mode = Some("bridge".into());
    }
    let rp = hc.restart_policy.get_or_insert_with(RestartPolicy::default);
    if matches!(rp.name, None | Some(RestartPolicyNameEnum::EMPTY)) {
        rp.name = Some(RestartPolicyNameEnum::NO);
    }
    rp.maximum_retry_count.get_or_insert(0);
    if hc.shm_size.is_none_or(|s| s <= 0) {
        hc.shm_size = Some(64 * 1024 * 1024);
    }
    if hc.runtime.as_deref().is_none_or(str::is_empty) {
        hc.runtime = Some("libcontainer".into());
    }
    Ok(())
}

/// The runtime class a container asks for with `--runtime`.
pub fn runtime_class(hc: &HostConfig) -> ApiResult<runtime::RuntimeClass> {
    match hc.runtime.as_deref().unwrap_or("") {
        "" | "libcontainer" | "cloudlet" => Ok(runtime::RuntimeClass::Libcontainer),
        "runc" => Ok(runtime::RuntimeClass::Runc),
        "crun" => Ok(runtime::RuntimeClass::Crun),
        other => Err(ApiError::bad_request(format!(
            "unknown or invalid runtime name: {other}"
        ))),
    }
}

/// The create request over the image's defaults, as docker merges them.
fn merge_config(
    body: &ContainerCreateBody,
    img: &image::Image,
    raw_config: &serde_json::Value,
) -> ContainerConfig {
    let ic = img.config.config().clone().unwrap_or_default();
    let mut env: Vec<String> = ic.env().clone().unwrap_or_default();
    for e in body.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    // An entrypoint given in the request resets the image's command, as docker does.
    let entrypoint_given = body.entrypoint.is_some();
    let entrypoint = match &body.entrypoint {
        Some(e) if e.len() == 1 && e[0].is_empty() => None,
        Some(e) => Some(e.clone()),
        None => ic.entrypoint().clone(),
    };
    let cmd = match &body.cmd {
        Some(c) if !c.is_empty() => Some(c.clone()),
        _ if entrypoint_given => None,
        _ => ic.cmd().clone(),
    };
    let mut labels: HashMap<String, String> = ic.labels().clone().unwrap_or_default();
    labels.extend(body.labels.clone().unwrap_or_default());
    let mut exposed = body.exposed_ports.clone().unwrap_or_default();
    for p in ic.exposed_ports().iter().flatten() {
        if !exposed.contains(p) {
            exposed.push(p.clone());
        }
    }
    let mut volumes = body.volumes.clone().unwrap_or_default();
    for v in ic.volumes().iter().flatten() {
        if !volumes.contains(v) {
            volumes.push(v.clone());
        }
    }
    let healthcheck = body
        .healthcheck
        .clone()
        .or_else(|| image_healthcheck(raw_config));
    ContainerConfig {
        hostname: body.hostname.clone().filter(|h| !h.is_empty()),
        domainname: body.domainname.clone(),
        user: body
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| ic.user().clone()),
        attach_stdin: body.attach_stdin,
        attach_stdout: body.attach_stdout,
        attach_stderr: body.attach_stderr,
        exposed_ports: Some(exposed).filter(|e| !e.is_empty()),
        tty: body.tty,
        open_stdin: body.open_stdin,
        stdin_once: body.stdin_once,
        env: Some(env),
        cmd,
        healthcheck,
        args_escaped: None,
        image: body.image.clone(),
        volumes: Some(volumes).filter(|v| !v.is_empty()),
        working_dir: body
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or_else(|| ic.working_dir().clone().filter(|w| !w.is_empty())),
        entrypoint,
        network_disabled: body.network_disabled,
        on_build: None,
        labels: Some(labels),
        stop_signal: body
            .stop_signal
            .clone()
            .or_else(|| ic.stop_signal().clone()),
        stop_timeout: body.stop_timeout,
        shell: body.shell.clone(),
    }
}

/// HEALTHCHECK is not in the OCI config struct; docker keeps it in the config JSON as
/// `config.Healthcheck`.
fn image_healthcheck(raw: &serde_json::Value) -> Option<bollard_stubs::models::HealthConfig> {
    let hc = raw.get("config")?.get("Healthcheck")?;
    serde_json::from_value(hc.clone()).ok()
}

fn command(config: &ContainerConfig) -> ApiResult<(String, Vec<String>)> {
    let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    argv.extend(config.cmd.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(ApiError::bad_request("no command specified"));
    }
    let path = argv.remove(0);
    Ok((path, argv))
}

/// "adjective_noun", as docker names containers nobody named.
fn generate_name(engine: &Engine) -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "nimble", "proud", "quiet", "rapid", "sharp", "swift", "tender", "vivid", "witty", "zen",
    ];
    const RIGHT: &[&str] = &[
        "babbage", "curie", "dijkstra", "euler", "faraday", "gauss", "hopper", "hypatia", "kepler",
        "lovelace", "maxwell", "noether", "pascal", "ritchie", "shannon", "tesla", "thompson",
        "turing", "wozniak", "yonath",
    ];
    loop {
        let l = LEFT[rand::random_range(0..LEFT.len())];
        let r = RIGHT[rand::random_range(0..RIGHT.len())];
        let mut name = format!("{l}_{r}");
        if engine.containers.name_taken(&name) {
            name = format!("{name}{}", rand::random_range(0..10));
        }
        if !engine.containers.name_taken(&name) {
            return name;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("web-1.a_b").is_ok());
        assert!(validate_name("-bad").is_err());
        assert!(validate_name("a").is_err());
        assert!(validate_name("with space").is_err());
    }

    #[test]
    fn tiny_memory_is_refused() {
        let hc = HostConfig {
            memory: Some(1024),
            ..Default::default()
        };
        assert!(validate_host_config(&hc)
            .unwrap_err()
            .message
            .contains("6MB"));
    }
}
