//! Container statistics and process lists from cgroups (v1, v2 and hybrid).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Error, Runtime};

/// A sample of a container's resource usage, in the units docker's stats API wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub read_at: DateTime<Utc>,
    /// Total CPU time of the container, nanoseconds.
    pub cpu_total_ns: u64,
    /// Per-CPU time (v1 only; empty on v2).
    pub cpu_per_cpu_ns: Vec<u64>,
    pub cpu_user_ns: u64,
    pub cpu_kernel_ns: u64,
    /// The host's total CPU time from /proc/stat, nanoseconds.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    pub memory_usage: u64,
    /// The limit, or the host's memory when unlimited.
    pub memory_limit: u64,
    /// inactive_file, which `docker stats` subtracts from usage.
    pub memory_cache: u64,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    pub blkio_read_bytes: u64,
    pub blkio_write_bytes: u64,
}

const ROOT: &str = "/sys/fs/cgroup";

/// Starts, on this thread, the RCU grace period that the next container's cgroup migration
/// has to wait for, so that the wait runs in parallel with the shim's start instead of on the
/// critical path. Blocks for one grace period (~16 ms here); call it from a blocking thread.
///
/// Every write to a `cgroup.procs` takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and (unless cgroups are mounted with `favordynmods`) the first writer after a quiet
/// spell waits for an RCU grace period; writers that come while that one is in progress, or
/// within a grace period after it, share it. So moving this process into the cgroup it is
/// already in (a no-op for accounting) just before a container starts makes libcontainer's
/// migration of the container's init nearly free. Calls while one is running return at once.
pub fn prewarm_migration() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static RUNNING: AtomicBool = AtomicBool::new(false);
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(procs) = own_cgroup_procs() {
        // "0" is the writing process itself, into the cgroup it is in.
        let _ = std::fs::write(procs, "0");
    }
    RUNNING.store(false, Ordering::Release);
}

/// The `cgroup.procs` file of this process's own cgroup in some hierarchy, once found.
fn own_cgroup_procs() -> Option<PathBuf> {
    static PROCS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    PROCS
        .get_or_init(|| {
            let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            text.lines().find_map(|line| {
                let mut f = line.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                // Outside our cgroup namespace's view ("/../..") there is nothing to name.
                if path.contains("..") || ctrls.starts_with("name=") {
                    return None;
                }
                let rel = path.trim_start_matches('/');
                let base = match ctrls.split(',').next()? {
                    "" if PathBuf::from(ROOT).join("cgroup.controllers").exists() => {
                        PathBuf::from(ROOT)
                    }
                    "" => PathBuf::from(ROOT).join("unified"),
                    c => PathBuf::from(ROOT).join(c),
                };
                let procs = base.join(rel).join("cgroup.procs");
                procs.exists().then_some(procs)
            })
        })
        .clone()
}

/// Where a process's cgroups are: v1 controller directories, or one v2 directory.
pub(crate) struct Cgroups {
    v1: Vec<(String, PathBuf)>,
    v2: Option<PathBuf>,
}

impl Cgroups {
    pub(crate) fn of_pid(pid: i32) -> Result<Self, Error> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| Error::io(format!("read cgroups of pid {pid}"), e))?;
        let pure_v2 = std::path::Path::new(ROOT)
            .join("cgroup.controllers")
            .exists();
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if ctrls.is_empty() {
                if pure_v2 {
                    v2 = Some(PathBuf::from(ROOT).join(rel));
                }
                continue;
            }
            for c in ctrls.split(',') {
                // Named hierarchies (name=systemd) are not the container's: the runtime
                // leaves the process where it was there.
                if c.starts_with("name=") || rel.is_empty() {
                    continue;
                }
                let dir = PathBuf::from(ROOT).join(c).join(rel);
                if dir.exists() {
                    v1.push((c.to_string(), dir));
                }
            }
        }
        Ok(Cgroups { v1, v2 })
    }

    fn v1(&self, controller: &str) -> Option<&PathBuf> {
        self.v1
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, p)| p)
    }

    fn read(&self, controller: &str, v1_file: &str, v2_file: &str) -> Option<String> {
        let path = match (self.v1(controller), &self.v2) {
            (Some(d), _) => d.join(v1_file),
            (None, Some(d)) => d.join(v2_file),
            _ => return None,
        };
        std::fs::read_to_string(path).ok()
    }

    /// Processes in the cgroup (the pids controller, else memory, else v2).
    pub(crate) fn procs(&self) -> Result<Vec<i32>, Error> {
        let dir = self
            .v1("pids")
            .or_else(|| self.v1("memory"))
            .or(self.v2.as_ref())
            .ok_or_else(|| Error::NotFound("container cgroup".into()))?;
        let text = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map_err(|e| Error::io(format!("read {}", dir.join("cgroup.procs").display()), e))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn stats(&self) -> Stats {
        let mut s = Stats {
            read_at: Utc::now(),
            ..Default::default()
        };
        let num = |t: Option<String>| t.and_then(|t| t.trim().parse::<u64>().ok());
        let kv = |t: &str, key: &str| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
            })
        };
        if self.v1("cpuacct").is_some() {
            s.cpu_total_ns = num(self.read("cpuacct", "cpuacct.usage", "")).unwrap_or(0);
            s.cpu_per_cpu_ns = self
                .read("cpuacct", "cpuacct.usage_percpu", "")
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(t) = self.read("cpuacct", "cpuacct.stat", "") {
                let tick = 1_000_000_000 / clk_tck();
                s.cpu_user_ns = kv(&t, "user").unwrap_or(0) * tick;
                s.cpu_kernel_ns = kv(&t, "system").unwrap_or(0) * tick;
            }
        } else if let Some(t) = self.read("cpu", "", "cpu.stat") {
            s.cpu_total_ns = kv(&t, "usage_usec").unwrap_or(0) * 1000;
            s.cpu_user_ns = kv(&t, "user_usec").unwrap_or(0) * 1000;
            s.cpu_kernel_ns = kv(&t, "system_usec").unwrap_or(0) * 1000;
        }
        let host_mem = host_memory();
        s.memory_usage =
            num(self.read("memory", "memory.usage_in_bytes", "memory.current")).unwrap_or(0);
        s.memory_limit = self
            .read("memory", "memory.limit_in_bytes", "memory.max")
            .and_then(|t| t.trim().parse::<u64>().ok())
            .map_or(host_mem, |l| l.min(host_mem));
        if let Some(t) = self.read("memory", "memory.stat", "memory.stat") {
            s.memory_cache = kv(&t, "total_inactive_file")
                .or_else(|| kv(&t, "inactive_file"))
                .unwrap_or(0);
        }
        s.pids_current = num(self.read("pids", "pids.current", "pids.current")).unwrap_or(0);
        s.pids_limit = num(self.read("pids", "pids.max", "pids.max"));
        if self.v1("blkio").is_some() {
            let t = self
                .read("blkio", "blkio.throttle.io_service_bytes_recursive", "")
                .filter(|t| t.lines().count() > 1)
                .or_else(|| self.read("blkio", "blkio.io_service_bytes_recursive", ""))
                .unwrap_or_default();
            for l in t.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() == 3 {
                    let v: u64 = f[2].parse().unwrap_or(0);
                    match f[1] {
                        "Read" => s.blkio_read_bytes += v,
                        "Write" => s.blkio_write_bytes += v,
                        _ => {}
                    }
                }
            }
        } else if let Some(t) = self.read("io", "", "io.stat") {
            for field in t.split_whitespace() {
                if let Some((k, v)) = field.split_once('=') {
                    let v: u64 = v.parse().unwrap_or(0);
                    match k {
                        "rbytes" => s.blkio_read_bytes += v,
                        "wbytes" => s.blkio_write_bytes += v,
                        _ => {}
                    }
                }
            }
        }
        s.system_cpu_ns = system_cpu_ns();
        s.online_cpus = online_cpus();
        s
    }

    /// Thaws a frozen cgroup (v1 freezer or v2 cgroup.freeze), ignoring errors.
    pub(crate) fn thaw(&self) {
        if let Some(d) = self.v1("freezer") {
            let _ = std::fs::write(d.join("freezer.state"), "THAWED");
        } else if let Some(d) = &self.v2 {
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
    }

    /// Removes the (empty) cgroup directories, ignoring errors.
    pub(crate) fn remove(&self) {
        for (_, d) in &self.v1 {
            let _ = std::fs::remove_dir(d);
        }
        if let Some(d) = &self.v2 {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// The memory cgroup's OOM-kill counter (v1 memory.oom_control, v2 memory.events).
    pub(crate) fn oom_kills(&self) -> u64 {
        let key = |t: &str| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == "oom_kill")
                    .then(|| v.trim().parse::<u64>().ok())
                    .flatten()
            })
        };
        self.read("memory", "memory.oom_control", "memory.events")
            .and_then(|t| key(&t))
            .unwrap_or(0)
    }
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as u32
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

/// The host's CPU time as docker computes it: the first seven fields of /proc/stat's cpu line.
fn system_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(7)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    ticks * (1_000_000_000 / clk_tck())
}

impl Runtime {
    /// Resource usage of a running container, from its cgroups.
    pub fn stats(&self, id: &str) -> Result<Stats, Error> {
        let pid = self.init_pid(id)?;
        Ok(Cgroups::of_pid(pid)?.stats())
    }

    /// The host pids of every process in the container's cgroup (for `docker top`).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let pid = self.init_pid(id)?;
        Cgroups::of_pid(pid)?.procs()
    }
}
