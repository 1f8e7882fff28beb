//! `docker stats` and `docker top`, from the container's cgroup and /proc.

use std::sync::Arc;

use bollard_stubs::models::ContainerTopResponse;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

/// One stats sample in the Docker API's shape; `pre` is the previous sample for CPU %.
pub fn sample(engine: &Engine, entry: &Entry, pre: Option<&Value>) -> ApiResult<Value> {
    let c = entry.get();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let zero = json!({"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0}, "system_cpu_usage": 0, "online_cpus": 0, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}});
    if !c.state.status.is_running() {
        return Ok(json!({
            "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
            "id": c.id, "name": format!("/{}", c.name),
            "pids_stats": {}, "blkio_stats": {}, "cpu_stats": zero, "precpu_stats": zero,
            "memory_stats": {}, "num_procs": 0, "storage_stats": {},
        }));
    }
    let s = engine.runtime.stats(&c.id)?;
    let cpu = json!({
        "cpu_usage": {
            "total_usage": s.cpu_total_ns,
            "percpu_usage": s.cpu_per_cpu_ns,
            "usage_in_kernelmode": s.cpu_kernel_ns,
            "usage_in_usermode": s.cpu_user_ns,
        },
        "system_cpu_usage": s.system_cpu_ns,
        "online_cpus": s.online_cpus,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    });
    let blkio = |op: &str, v: u64| json!({"major": 0, "minor": 0, "op": op, "value": v});
    let (pre_cpu, pre_read) = match pre {
        Some(p) => (p["cpu_stats"].clone(), p["read"].clone()),
        None => (zero, json!("0001-01-01T00:00:00Z")),
    };
    Ok(json!({
        "read": now,
        "preread": pre_read,
        "id": c.id,
        "name": format!("/{}", c.name),
        "num_procs": 0,
        "pids_stats": {"current": s.pids_current, "limit": s.pids_limit},
        "blkio_stats": {"io_service_bytes_recursive": [blkio("read", s.blkio_read_bytes), blkio("write", s.blkio_write_bytes)]},
        "cpu_stats": cpu,
        "precpu_stats": pre_cpu,
        "memory_stats": {
            "usage": s.memory_usage,
            "limit": s.memory_limit,
            "stats": {"inactive_file": s.memory_cache, "total_inactive_file": s.memory_cache, "cache": s.memory_cache},
        },
        "storage_stats": {},
    }))
}

/// `GET /containers/{id}/top`: `ps` columns for the processes of the container's cgroup.
pub fn top(engine: &Arc<Engine>, entry: &Entry, ps_args: &str) -> ApiResult<ContainerTopResponse> {
    let c = entry.get();
    if !c.state.status.is_running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let pids = engine.runtime.pids(&c.id)?;
    let args = if ps_args.is_empty() { "-ef" } else { ps_args };
    let out = std::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .map_err(|e| ApiError::internal(format!("run ps: {e}")))?;
    if !out.status.success() {
        return Err(ApiError::internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let titles: Vec<String> = header.split_whitespace().map(String::from).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
    let mut processes = Vec::new();
    for line in lines {
        // The last column (CMD) may hold spaces: split into at most len(titles) fields.
        let fields: Vec<String> = split_columns(line, titles.len());
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pids.contains(&pid) {
            processes.push(fields);
        }
    }
    Ok(ContainerTopResponse {
        titles: Some(titles),
        processes: Some(processes),
    })
}

fn split_columns(line: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while out.len() + 1 < n {
        match rest.find(char::is_whitespace) {
            Some(i) => {
                out.push(rest[..i].to_string());
                rest = rest[i..].trim_start();
            }
            None => break,
        }
    }
    out.push(rest.to_string());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ps_columns_keep_the_command_whole() {
        let cols = super::split_columns("root   42  1  0 10:00 ?  00:00:00 sleep 100", 8);
        assert_eq!(cols[1], "42");
        assert_eq!(cols[7], "sleep 100");
    }
}
