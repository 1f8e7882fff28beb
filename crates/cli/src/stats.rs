//! `stats`: resource usage computed from the stats documents as the docker CLI computes it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{ListContainersOptions, StatsOptions};
use bollard::Docker;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::table::{print_rows, short_id, Format};
use crate::units::{bytes_size, human_size};

/// Display a live stream of container(s) resource usage statistics.
#[derive(clap::Args, Debug, Default)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

const DEFAULT: &str = "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// Column names for `stats` fields.
pub fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "CPUPerc" => "CPU %".into(),
        "MemUsage" => "MEM USAGE / LIMIT".into(),
        "MemPerc" => "MEM %".into(),
        "NetIO" => "NET I/O".into(),
        "BlockIO" => "BLOCK I/O".into(),
        other => other.to_uppercase(),
    }
}

/// The numbers one stats document yields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub cpu_percent: f64,
    pub memory: f64,
    pub memory_limit: f64,
    pub memory_percent: f64,
    pub net_rx: f64,
    pub net_tx: f64,
    pub block_read: f64,
    pub block_write: f64,
    pub pids: u64,
}

/// CPU share of the host since the previous sample, scaled by the CPUs online; memory without
/// the inactive page cache (`total_inactive_file` on cgroup v1, `inactive_file` on v2).
pub fn usage(s: &ContainerStatsResponse) -> Usage {
    let mut u = Usage::default();
    if let (Some(cpu), Some(pre)) = (&s.cpu_stats, &s.precpu_stats) {
        let total = |c: &bollard::models::ContainerCpuStats| {
            c.cpu_usage
                .as_ref()
                .and_then(|u| u.total_usage)
                .unwrap_or(0) as f64
        };
        let cpu_delta = total(cpu) - total(pre);
        let system_delta =
            cpu.system_cpu_usage.unwrap_or(0) as f64 - pre.system_cpu_usage.unwrap_or(0) as f64;
        let mut online = f64::from(cpu.online_cpus.unwrap_or(0));
        if online == 0.0 {
            online = cpu
                .cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|p| p.len() as f64)
                .unwrap_or(0.0);
        }
        if system_delta > 0.0 && cpu_delta > 0.0 {
            u.cpu_percent = cpu_delta / system_delta * online * 100.0;
        }
    }
    if let Some(m) = &s.memory_stats {
        let usage = m.usage.unwrap_or(0);
        let cache = m
            .stats
            .as_ref()
            .and_then(|st| {
                st.get("total_inactive_file")
                    .or_else(|| st.get("inactive_file"))
                    .copied()
            })
            .filter(|c| *c < usage)
            .unwrap_or(0);
        u.memory = (usage - cache) as f64;
        u.memory_limit = m.limit.unwrap_or(0) as f64;
        if u.memory_limit > 0.0 {
            u.memory_percent = u.memory / u.memory_limit * 100.0;
        }
    }
    for n in s
        .networks
        .as_ref()
        .map(|n| n.values())
        .into_iter()
        .flatten()
    {
        u.net_rx += n.rx_bytes.unwrap_or(0) as f64;
        u.net_tx += n.tx_bytes.unwrap_or(0) as f64;
    }
    let entries = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in entries.into_iter().flatten() {
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => u.block_read += e.value.unwrap_or(0) as f64,
            Some("write") => u.block_write += e.value.unwrap_or(0) as f64,
            _ => {}
        }
    }
    u.pids = s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0);
    u
}

/// One row of the table for container `given` (the name or id the user typed, or the id).
pub fn row(given: &str, s: &ContainerStatsResponse, trunc: bool) -> Value {
    let u = usage(s);
    let id = s.id.clone().unwrap_or_else(|| given.to_string());
    json!({
        "Container": given,
        "ID": if trunc { short_id(&id) } else { id },
        "Name": s.name.clone().unwrap_or_default().trim_start_matches('/'),
        "CPUPerc": format!("{:.2}%", u.cpu_percent),
        "MemUsage": format!("{} / {}", bytes_size(u.memory), bytes_size(u.memory_limit)),
        "MemPerc": format!("{:.2}%", u.memory_percent),
        "NetIO": format!("{} / {}", human_size(u.net_rx), human_size(u.net_tx)),
        "BlockIO": format!("{} / {}", human_size(u.block_read), human_size(u.block_write)),
        "PIDs": u.pids.to_string(),
    })
}

fn print(out: &mut dyn Write, rows: &[Value], format: &Format) -> Result<()> {
    print_rows(out, format, rows, DEFAULT, &header)
}

pub async fn stats(d: &Docker, a: StatsArgs) -> Result<i32> {
    let format = Format::parse(a.format.as_deref())?;
    let trunc = !a.no_trunc;
    let names: Vec<String> = if a.containers.is_empty() {
        let opts = ListContainersOptions {
            all: a.all,
            ..Default::default()
        };
        d.list_containers(Some(opts))
            .await?
            .into_iter()
            .filter_map(|c| c.id)
            .collect()
    } else {
        a.containers.clone()
    };

    if a.no_stream {
        let opts = StatsOptions {
            stream: false,
            one_shot: false,
        };
        let samples = futures::future::join_all(names.iter().map(|n| {
            let mut s = d.stats(n, Some(opts.clone()));
            async move { s.next().await }
        }))
        .await;
        let mut rows = Vec::new();
        for (name, sample) in names.iter().zip(samples) {
            match sample {
                Some(Ok(s)) => rows.push(row(name, &s, trunc)),
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        print(&mut std::io::stdout().lock(), &rows, &format)?;
        return Ok(0);
    }

    // One stream per container; the screen is redrawn from the latest sample of each.
    let latest: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let mut tasks = Vec::new();
    for n in &names {
        let d = d.clone();
        let n = n.clone();
        let latest = latest.clone();
        tasks.push(tokio::spawn(async move {
            let opts = StatsOptions {
                stream: true,
                one_shot: false,
            };
            let mut s = d.stats(&n, Some(opts));
            while let Some(Ok(sample)) = s.next().await {
                if let Ok(mut l) = latest.lock() {
                    l.insert(n.clone(), row(&n, &sample, trunc));
                }
            }
            if let Ok(mut l) = latest.lock() {
                l.remove(&n);
            }
        }));
    }
    let tty = std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut last_draw: Option<std::time::Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let done = tasks.iter().all(|t| t.is_finished()) && !names.is_empty();
        let rows: Vec<Value> = {
            let l = latest
                .lock()
                .map_err(|_| anyhow::anyhow!("stats: poisoned lock"))?;
            names.iter().filter_map(|n| l.get(n).cloned()).collect()
        };
        // The first frame waits briefly for every container's first sample; then once a second.
        let waiting = last_draw.is_none()
            && rows.len() < names.len()
            && started.elapsed() < Duration::from_secs(2);
        let due = last_draw.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if done {
            break;
        }
        if waiting || !due {
            continue;
        }
        last_draw = Some(std::time::Instant::now());
        let mut out = std::io::stdout().lock();
        if tty {
            // Clear the screen and home the cursor, as docker does between refreshes.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        print(&mut out, &rows, &format)?;
        out.flush()?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
        ContainerMemoryStats, ContainerNetworkStats, ContainerPidsStats,
    };

    fn cpu(total: u64, system: u64) -> ContainerCpuStats {
        ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        }
    }

    fn sample() -> ContainerStatsResponse {
        ContainerStatsResponse {
            id: Some("0123456789abcdef".into()),
            name: Some("/web".into()),
            cpu_stats: Some(cpu(300_000_000, 2_000_000_000)),
            precpu_stats: Some(cpu(200_000_000, 1_000_000_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(2 * 1024 * 1024),
                limit: Some(8 * 1024 * 1024),
                stats: Some(HashMap::from([("total_inactive_file".into(), 512 * 1024)])),
                ..Default::default()
            }),
            networks: Some(HashMap::from([(
                "eth0".into(),
                ContainerNetworkStats {
                    rx_bytes: Some(1_200),
                    tx_bytes: Some(648),
                    ..Default::default()
                },
            )])),
            blkio_stats: Some(ContainerBlkioStats {
                io_service_bytes_recursive: Some(vec![
                    ContainerBlkioStatEntry {
                        op: Some("Read".into()),
                        value: Some(4_096_000),
                        ..Default::default()
                    },
                    ContainerBlkioStatEntry {
                        op: Some("write".into()),
                        value: Some(0),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            pids_stats: Some(ContainerPidsStats {
                current: Some(3),
                limit: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn percentages() {
        let u = usage(&sample());
        // 0.1 s of CPU over 1 s of system time on 2 CPUs.
        assert!((u.cpu_percent - 20.0).abs() < 1e-9);
        assert_eq!(u.memory, 1.5 * 1024.0 * 1024.0);
        assert!((u.memory_percent - 18.75).abs() < 1e-9);
        assert_eq!(u.pids, 3);
        let empty = usage(&ContainerStatsResponse::default());
        assert_eq!(empty, Usage::default());
    }

    #[test]
    fn table() {
        let mut out = Vec::new();
        print(&mut out, &[row("web", &sample(), true)], &Format::Default).unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected = "\
CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O        BLOCK I/O    PIDS
0123456789ab   web       20.00%    1.5MiB / 8MiB       18.75%    1.2kB / 648B   4.1MB / 0B   3
";
        assert_eq!(text, expected);
    }
}
