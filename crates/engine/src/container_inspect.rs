//! The JSON views of containers: `GET /containers/{id}/json` and `GET /containers/json`.

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerInspectResponse, ContainerState, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryHostConfig, ContainerSummaryStateEnum, DriverData, MountPoint, NetworkSettings,
};
use chrono::SecondsFormat;
use serde_json::Value;

use crate::container::{Container, Paths, Status};
use crate::error::{ApiError, ApiResult};

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    // Docker prints the zero time for "never".
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn state_enum(s: Status) -> ContainerStateStatusEnum {
    match s {
        Status::Created => ContainerStateStatusEnum::CREATED,
        Status::Running => ContainerStateStatusEnum::RUNNING,
        Status::Paused => ContainerStateStatusEnum::PAUSED,
        Status::Restarting => ContainerStateStatusEnum::RESTARTING,
        Status::Removing => ContainerStateStatusEnum::REMOVING,
        Status::Exited => ContainerStateStatusEnum::EXITED,
        Status::Dead => ContainerStateStatusEnum::DEAD,
    }
}

fn summary_state(s: Status) -> ContainerSummaryStateEnum {
    match s {
        Status::Created => ContainerSummaryStateEnum::CREATED,
        Status::Running => ContainerSummaryStateEnum::RUNNING,
        Status::Paused => ContainerSummaryStateEnum::PAUSED,
        Status::Restarting => ContainerSummaryStateEnum::RESTARTING,
        Status::Removing => ContainerSummaryStateEnum::REMOVING,
        Status::Exited => ContainerSummaryStateEnum::EXITED,
        Status::Dead => ContainerSummaryStateEnum::DEAD,
    }
}

fn mounts(c: &Container) -> Vec<MountPoint> {
    crate::container_mounts::points(c)
}

/// `docker inspect` of a container.
pub fn inspect(c: &Container, paths: &Paths, exec_ids: Vec<String>, size: bool) -> Value {
    let s = &c.state;
    let state = ContainerState {
        status: Some(state_enum(s.status)),
        running: Some(s.status.is_running()),
        paused: Some(s.status == Status::Paused),
        restarting: Some(s.status == Status::Restarting),
        oom_killed: Some(s.oom_killed),
        dead: Some(s.status == Status::Dead),
        pid: Some(s.pid),
        exit_code: Some(s.exit_code),
        error: Some(s.error.clone()),
        started_at: Some(rfc3339(s.started_at)),
        finished_at: Some(rfc3339(s.finished_at)),
        health: s.health.clone(),
    };
    let mut graph = HashMap::new();
    graph.insert("UpperDir".to_string(), paths.upper().display().to_string());
    graph.insert("WorkDir".to_string(), paths.work().display().to_string());
    graph.insert(
        "MergedDir".to_string(),
        paths.rootfs().display().to_string(),
    );
    let resp = ContainerInspectResponse {
        id: Some(c.id.clone()),
        created: None,
        path: Some(c.path.clone()),
        args: Some(c.args.clone()),
        state: Some(state),
        image: Some(c.image_id.clone()),
        resolv_conf_path: Some(paths.dir.join("resolv.conf").display().to_string()),
        hostname_path: Some(paths.dir.join("hostname").display().to_string()),
        hosts_path: Some(paths.dir.join("hosts").display().to_string()),
        log_path: Some(paths.log(&c.id).display().to_string()),
        name: Some(format!("/{}", c.name)),
        restart_count: Some(c.restart_count),
        driver: Some("overlay2".into()),
        platform: Some("linux".into()),
        mount_label: Some(String::new()),
        process_label: Some(String::new()),
        app_armor_profile: Some(String::new()),
        exec_ids: Some(exec_ids).filter(|e| !e.is_empty()),
        host_config: Some(c.host_config.clone()),
        graph_driver: Some(DriverData {
            name: "overlay2".into(),
            data: graph,
        }),
        size_rw: size.then(|| crate::container_remove::dir_size(&paths.upper()) as i64),
        mounts: Some(mounts(c)),
        config: Some(c.config.clone()),
        network_settings: Some(NetworkSettings {
            sandbox_key: Some(String::new()),
            ports: Some(HashMap::new()),
            networks: Some(HashMap::new()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut v = serde_json::to_value(resp).unwrap_or(Value::Null);
    v["Created"] = Value::String(rfc3339(Some(c.created)));
    v
}

/// One row of `docker ps`.
pub fn summary(c: &Container, now: chrono::DateTime<chrono::Utc>) -> ContainerSummary {
    let mut command = vec![c.path.clone()];
    command.extend(c.args.iter().cloned());
    ContainerSummary {
        id: Some(c.id.clone()),
        names: Some(vec![format!("/{}", c.name)]),
        image: Some(c.image.clone()),
        image_id: Some(c.image_id.clone()),
        command: Some(command.join(" ")),
        created: Some(c.created.timestamp()),
        ports: Some(Vec::new()),
        labels: Some(c.config.labels.clone().unwrap_or_default()),
        state: Some(summary_state(c.state.status)),
        status: Some(c.status_line(now)),
        host_config: Some(ContainerSummaryHostConfig {
            network_mode: Some(
                c.host_config
                    .network_mode
                    .clone()
                    .unwrap_or_else(|| "bridge".into()),
            ),
            ..Default::default()
        }),
        mounts: Some(mounts(c)),
        ..Default::default()
    }
}

/// Docker's `filters` query parameter: `{"status":["running"],"name":["web"]}` (or the old
/// `{"status":{"running":true}}` form).
pub fn parse_filters(raw: Option<&str>) -> ApiResult<HashMap<String, Vec<String>>> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let mut out = HashMap::new();
    let Value::Object(map) = v else {
        return Err(ApiError::bad_request("invalid filter"));
    };
    for (k, v) in map {
        let values = match v {
            Value::Array(a) => a
                .into_iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Value::Object(o) => o
                .into_iter()
                .filter(|(_, b)| b.as_bool() == Some(true))
                .map(|(k, _)| k)
                .collect(),
            Value::String(s) => vec![s],
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        };
        out.insert(k, values);
    }
    Ok(out)
}

/// The `label` filter: every `key` or `key=value` given must match.
pub fn labels_match(labels: &HashMap<String, String>, values: &[String]) -> bool {
    values.iter().all(|v| match v.split_once('=') {
        Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
        None => labels.contains_key(v.as_str()),
    })
}

/// The `dangling` filter: any of `true`/`1` or `false`/`0` given must match.
pub fn dangling_matches(dangling: bool, values: &[String]) -> bool {
    values
        .iter()
        .any(|v| matches!(v.as_str(), "true" | "1") == dangling)
}

/// Whether a container passes `docker ps --filter`s (all keys must match; any value of a key).
pub fn matches(c: &Container, filters: &HashMap<String, Vec<String>>) -> ApiResult<bool> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "id" => values.iter().any(|v| c.id.starts_with(v.as_str())),
            "name" => values
                .iter()
                .any(|v| c.name.contains(v.trim_start_matches('/'))),
            "status" => {
                for v in values {
                    if ![
                        "created",
                        "restarting",
                        "running",
                        "removing",
                        "paused",
                        "exited",
                        "dead",
                    ]
                    .contains(&v.as_str())
                    {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'status={v}'"
                        )));
                    }
                }
                values.iter().any(|v| v == c.state.status.as_str())
            }
            "exited" => {
                c.state.status == Status::Exited
                    && values
                        .iter()
                        .any(|v| v.parse::<i64>().ok() == Some(c.state.exit_code))
            }
            "label" => {
                let labels = c.config.labels.clone().unwrap_or_default();
                values.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => labels.get(k).is_some_and(|x| x == val),
                    None => labels.contains_key(v.as_str()),
                })
            }
            "ancestor" => values.iter().any(|v| {
                c.image == *v
                    || c.image_id == *v
                    || c.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.as_str())
                    || format!("{}:latest", c.image) == *v
                    || c.image == format!("{v}:latest")
            }),
            "health" => {
                let h = c
                    .state
                    .health
                    .as_ref()
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into());
                values.contains(&h)
            }
            "volume" => values.iter().any(|v| {
                crate::container_mounts::of(c)
                    .iter()
                    .any(|m| m.source == *v || m.destination == *v)
            }),
            "network" => values.iter().any(|v| {
                c.networks.contains_key(v)
                    || c.networks.values().any(|s| {
                        s.network_id
                            .as_deref()
                            .is_some_and(|id| id.starts_with(v.as_str()))
                    })
            }),
            "before" | "since" | "publish" | "expose" | "is-task" => true,
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}
