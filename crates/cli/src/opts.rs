//! The container flags `run` and `create` share, and their translation into the API's create body.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy,
    RestartPolicyNameEnum,
};

use crate::units::{parse_go_duration, parse_ram};

/// Container configuration flags, as `docker run`/`docker create` spell them.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ContainerOpts {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Memory limit (e.g. 32m, 1g)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Ulimit options (name=soft[:hard])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Mount a tmpfs directory (path[:options])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Bind mount a volume ([src:]dst[:opts])
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Connect a container to a network (repeat for more; the first is its mode)
    #[arg(long, visible_alias = "net")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Attach a filesystem mount to the container (type=volume|bind|tmpfs,source=…,target=…)
    #[arg(long)]
    pub mount: Vec<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N])
    #[arg(long)]
    pub restart: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Set meta data on a container
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Publish a container's port(s) to the host
    #[arg(short, long)]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
}

impl ContainerOpts {
    /// The create body for `image` running `cmd`; `attached` when the client will attach.
    pub fn to_body(
        &self,
        image: &str,
        cmd: &[String],
        attached: bool,
    ) -> Result<ContainerCreateBody> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
            env.extend(parse_env_file(&text, |k| std::env::var(k).ok())?);
        }
        for e in &self.env {
            env.push(expand_env(e, |k| std::env::var(k).ok()));
        }

        let (exposed, bindings) = parse_publish(&self.publish, &self.expose)?;
        let (binds, anonymous) = parse_volumes(&self.volume)?;
        let mut tmpfs = HashMap::new();
        for t in &self.tmpfs {
            let (path, opt) = t.split_once(':').unwrap_or((t, ""));
            if !path.starts_with('/') {
                bail!("invalid tmpfs {t:?}: mount path must be absolute");
            }
            tmpfs.insert(path.to_string(), opt.to_string());
        }

        let memory = self.memory.as_deref().map(parse_ram).transpose()?;
        let memory_swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(s) => Some(parse_ram(s)?),
            None => None,
        };
        let healthcheck = self.healthcheck()?;

        let host_config = HostConfig {
            memory,
            memory_swap,
            memory_reservation: self
                .memory_reservation
                .as_deref()
                .map(parse_ram)
                .transpose()?,
            shm_size: self.shm_size.as_deref().map(parse_ram).transpose()?,
            nano_cpus: self.cpus.map(|c| (c * 1e9).round() as i64),
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus.clone(),
            pids_limit: self.pids_limit,
            ulimits: non_empty(
                self.ulimit
                    .iter()
                    .map(|u| parse_ulimit(u))
                    .collect::<Result<Vec<_>>>()?,
            ),
            security_opt: non_empty(self.security_opt.clone()),
            readonly_rootfs: self.read_only.then_some(true),
            init: self.init.then_some(true),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            binds: non_empty(binds),
            volumes_from: non_empty(self.volumes_from.clone()),
            mounts: non_empty(
                self.mount
                    .iter()
                    .map(|m| crate::mount_opts::parse_mount(m))
                    .collect::<Result<Vec<_>>>()?,
            ),
            network_mode: self.network.first().cloned(),
            userns_mode: self.userns.clone(),
            pid_mode: self.pid.clone(),
            ipc_mode: self.ipc.clone(),
            uts_mode: self.uts.clone(),
            runtime: self.runtime.clone(),
            restart_policy: self.restart.as_deref().map(parse_restart).transpose()?,
            auto_remove: self.rm.then_some(true),
            privileged: self.privileged.then_some(true),
            cap_add: non_empty(self.cap_add.clone()),
            cap_drop: non_empty(self.cap_drop.clone()),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            publish_all_ports: self.publish_all.then_some(true),
            extra_hosts: non_empty(
                self.add_host
                    .iter()
                    .map(|h| h.replacen('=', ":", 1))
                    .collect(),
            ),
            dns: non_empty(self.dns.clone()),
            dns_search: non_empty(self.dns_search.clone()),
            dns_options: non_empty(self.dns_option.clone()),
            log_config: self.log_config()?,
            sysctls: non_empty_map(parse_pairs(&self.sysctl, "sysctl")?),
            group_add: non_empty(self.group_add.clone()),
            ..Default::default()
        };

        let interactive = self.interactive;
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: non_empty(cmd.to_vec()),
            entrypoint: self.entrypoint.as_ref().map(|e| vec![e.clone()]),
            env: non_empty(env),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            domainname: self.domainname.clone(),
            labels: non_empty_map(parse_labels(&self.label)),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            healthcheck,
            exposed_ports: non_empty(exposed),
            volumes: non_empty(anonymous),
            networking_config: self.networking_config()?,
            tty: Some(self.tty),
            open_stdin: Some(interactive),
            stdin_once: Some(interactive && attached),
            attach_stdin: Some(interactive && attached),
            attach_stdout: Some(attached),
            attach_stderr: Some(attached),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    /// Every `--network` gets an endpoint; `--network-alias` and `--ip` go with the
    /// container's only network, as the docker CLI sends them.
    fn networking_config(&self) -> Result<Option<NetworkingConfig>> {
        let legacy = !self.network_alias.is_empty() || self.ip.is_some();
        if self.network.len() > 1 && legacy {
            bail!("conflicting options: --network-alias and --ip need a single --network");
        }
        if self.network.len() < 2 && !legacy {
            return Ok(None);
        }
        let mut endpoints: HashMap<String, EndpointSettings> = self
            .network
            .iter()
            .map(|n| (n.clone(), EndpointSettings::default()))
            .collect();
        if legacy {
            let net = self
                .network
                .first()
                .cloned()
                .unwrap_or_else(|| "default".into());
            let settings = EndpointSettings {
                aliases: non_empty(self.network_alias.clone()),
                ipam_config: self.ip.clone().map(|ip| EndpointIpamConfig {
                    ipv4_address: Some(ip),
                    ..Default::default()
                }),
                ..Default::default()
            };
            endpoints.insert(net, settings);
        }
        Ok(Some(NetworkingConfig {
            endpoints_config: Some(endpoints),
        }))
    }

    fn healthcheck(&self) -> Result<Option<HealthConfig>> {
        let nanos = |v: &Option<String>| -> Result<Option<i64>> {
            v.as_deref()
                .map(|s| Ok((parse_go_duration(s)? * 1e9) as i64))
                .transpose()
        };
        let any = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_retries.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some();
        if self.no_healthcheck {
            if any {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }));
        }
        if !any {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            test: self
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".to_string(), c.clone()]),
            interval: nanos(&self.health_interval)?,
            timeout: nanos(&self.health_timeout)?,
            start_period: nanos(&self.health_start_period)?,
            retries: self.health_retries,
            ..Default::default()
        }))
    }

    fn log_config(&self) -> Result<Option<HostConfigLogConfig>> {
        if self.log_driver.is_none() && self.log_opt.is_empty() {
            return Ok(None);
        }
        Ok(Some(HostConfigLogConfig {
            typ: self.log_driver.clone(),
            config: non_empty_map(parse_pairs(&self.log_opt, "log-opt")?),
        }))
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn non_empty_map(m: HashMap<String, String>) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then_some(m)
}

fn parse_pairs(items: &[String], what: &str) -> Result<HashMap<String, String>> {
    items
        .iter()
        .map(|i| match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("invalid {what} {i:?}: expected key=value"),
        })
        .collect()
}

/// `-l key=value` or `-l key` (empty value).
pub fn parse_labels(items: &[String]) -> HashMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// `-e KEY` takes the value from the client's environment when it has one.
pub fn expand_env(item: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    if item.contains('=') {
        return item.to_string();
    }
    match lookup(item) {
        Some(v) => format!("{item}={v}"),
        None => item.to_string(),
    }
}

/// Parses an `--env-file` as docker does: one `KEY=VALUE` a line taken literally (no quotes, no
/// expansion), `#` comments and blank lines skipped, a bare `KEY` taken from the environment
/// (and dropped when unset).
pub fn parse_env_file(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            bail!("no variable name on line {:?} (line {})", raw, n + 1);
        }
        if key.contains(char::is_whitespace) {
            bail!("variable {key:?} contains whitespaces");
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Some(v) = lookup(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

fn parse_port_range(s: &str) -> Result<(u16, u16)> {
    let bad = || anyhow::anyhow!("invalid port {s:?}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses `-p [ip:][hostPort:]containerPort[/proto]` (ranges allowed) and `--expose`, into the
/// exposed port keys and the port bindings of the create body.
#[allow(clippy::type_complexity)]
pub fn parse_publish(
    publish: &[String],
    expose: &[String],
) -> Result<(Vec<String>, HashMap<String, Option<Vec<PortBinding>>>)> {
    let mut exposed: Vec<String> = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let add_exposed = |key: &String, exposed: &mut Vec<String>| {
        if !exposed.contains(key) {
            exposed.push(key.clone());
        }
    };
    for e in expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = parse_port_range(ports)?;
        for p in a..=b {
            add_exposed(&format!("{p}/{proto}"), &mut exposed);
        }
    }
    for spec in publish {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p),
            None => (spec.as_str(), "tcp"),
        };
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            bail!("invalid proto {proto:?} in {spec:?}");
        }
        // An IPv6 address comes in brackets: [::1]:8080:80.
        let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
            let (ip, r) = r
                .split_once("]:")
                .ok_or_else(|| anyhow::anyhow!("invalid publish {spec:?}"))?;
            (ip.to_string(), r)
        } else {
            (String::new(), rest)
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => (ip, "", *c),
            [h, c] => (ip, *h, *c),
            [i, h, c] if ip.is_empty() => (i.to_string(), *h, *c),
            _ => bail!("invalid publish {spec:?}"),
        };
        let (c0, c1) = parse_port_range(container)?;
        let host_range = if host.is_empty() {
            None
        } else {
            Some(parse_port_range(host)?)
        };
        let count = c1 - c0;
        for (i, port) in (c0..=c1).enumerate() {
            let host_port = match host_range {
                None => String::new(),
                Some((h0, h1)) if h1 - h0 == count => (h0 + i as u16).to_string(),
                // One container port to a host range: the daemon picks a free one from it.
                Some((h0, h1)) if count == 0 => format!("{h0}-{h1}"),
                Some(_) => bail!("invalid publish {spec:?}: port ranges differ in length"),
            };
            let key = format!("{port}/{proto}");
            add_exposed(&key, &mut exposed);
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(host_port),
                });
        }
    }
    Ok((exposed, bindings))
}

const VOLUME_OPTS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "consistent",
    "cached",
    "delegated",
];

/// Splits `-v` values into binds (`src:dst[:opts]`, named volumes included) and anonymous volumes
/// (`dst` alone). A relative source such as `./data` becomes absolute, as the docker CLI does.
pub fn parse_volumes(items: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut binds = Vec::new();
    let mut anonymous = Vec::new();
    for v in items {
        let parts: Vec<&str> = v.split(':').collect();
        match parts.as_slice() {
            [dst] => {
                if !dst.starts_with('/') {
                    bail!("invalid volume {v:?}: the destination must be an absolute path");
                }
                anonymous.push(dst.to_string());
            }
            [src, dst] | [src, dst, _] => {
                if src.is_empty() || !dst.starts_with('/') {
                    bail!("invalid volume specification: {v:?}");
                }
                if let [_, _, opts] = parts.as_slice() {
                    for o in opts.split(',') {
                        if !VOLUME_OPTS.contains(&o) {
                            bail!("invalid mode {o:?} in volume {v:?}");
                        }
                    }
                }
                let src = if src.starts_with('.') {
                    let cwd = std::env::current_dir().context("current directory")?;
                    let joined = cwd.join(src);
                    normalize(&joined)
                } else {
                    src.to_string()
                };
                let mut b = format!("{src}:{dst}");
                if let [_, _, opts] = parts.as_slice() {
                    b.push(':');
                    b.push_str(opts);
                }
                binds.push(b);
            }
            _ => bail!("invalid volume specification: {v:?}"),
        }
    }
    Ok((binds, anonymous))
}

/// Resolves `.` and `..` without touching the disk.
fn normalize(p: &std::path::Path) -> String {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit name=soft[:hard]`.
pub fn parse_ulimit(s: &str) -> Result<ResourcesUlimits> {
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {s}"))?;
    if !ULIMITS.contains(&name) {
        bail!("invalid ulimit type: {name}");
    }
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let num = |v: &str| -> Result<i64> {
        v.parse()
            .map_err(|_| anyhow::anyhow!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard && hard != -1 {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let name = match name {
        "no" | "" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => bail!("invalid restart policy {s:?}"),
    };
    let maximum_retry_count = if count.is_empty() {
        None
    } else {
        if name != RestartPolicyNameEnum::ON_FAILURE {
            bail!("invalid restart policy {s:?}: maximum retry count only applies to on-failure");
        }
        Some(
            count
                .parse()
                .with_context(|| format!("invalid restart policy {s:?}"))?,
        )
    };
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn env_file() {
        let text = "# comment\n\nA=1\n  B = two words \nC=\"quoted\"\nHOME\nUNSET_VAR\nD=\n";
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        // "B " has a space in its name: docker rejects the file.
        assert!(parse_env_file(text, lookup).is_err());
        assert!(parse_env_file("B C=1", lookup).is_err());
        assert!(parse_env_file("=1", lookup).is_err());
        assert_eq!(
            parse_env_file("A=1\n#x\nC=\"q\"\nHOME\nUNSET_VAR\nD=\n", lookup).unwrap(),
            strings(&["A=1", "C=\"q\"", "HOME=/root", "D="])
        );
    }

    #[test]
    fn env_flag() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(expand_env("A=1", lookup), "A=1");
        assert_eq!(expand_env("HOME", lookup), "HOME=/root");
        assert_eq!(expand_env("NOPE", lookup), "NOPE");
    }

    #[test]
    fn publish() {
        let (exposed, b) = parse_publish(
            &strings(&[
                "8080:80",
                "127.0.0.1:5353:53/udp",
                "9000",
                "[::1]:7000:70",
                "1000-1001:2000-2001",
            ]),
            &strings(&["443"]),
        )
        .unwrap();
        assert_eq!(
            exposed,
            strings(&["443/tcp", "80/tcp", "53/udp", "9000/tcp", "70/tcp", "2000/tcp", "2001/tcp"])
        );
        let one = |k: &str| b[k].as_ref().unwrap()[0].clone();
        assert_eq!(one("80/tcp").host_port.as_deref(), Some("8080"));
        assert_eq!(one("80/tcp").host_ip.as_deref(), Some(""));
        assert_eq!(one("53/udp").host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(one("9000/tcp").host_port.as_deref(), Some(""));
        assert_eq!(one("70/tcp").host_ip.as_deref(), Some("::1"));
        assert_eq!(one("2001/tcp").host_port.as_deref(), Some("1001"));
        assert!(parse_publish(&strings(&["80/icmp"]), &[]).is_err());
        assert!(parse_publish(&strings(&["a:b"]), &[]).is_err());
        assert!(parse_publish(&strings(&["1-3:1-2"]), &[]).is_err());
    }

    #[test]
    fn volumes() {
        let (binds, anon) = parse_volumes(&strings(&[
            "/data",
            "/host:/c",
            "named:/n:ro",
            "/h:/x:ro,z",
        ]))
        .unwrap();
        assert_eq!(anon, strings(&["/data"]));
        assert_eq!(binds, strings(&["/host:/c", "named:/n:ro", "/h:/x:ro,z"]));
        let (binds, _) = parse_volumes(&strings(&["./d:/d"])).unwrap();
        assert!(
            binds[0].starts_with('/') && binds[0].ends_with("/d:/d"),
            "{binds:?}"
        );
        assert!(parse_volumes(&strings(&["rel"])).is_err());
        assert!(parse_volumes(&strings(&["/a:rel"])).is_err());
        assert!(parse_volumes(&strings(&["/a:/b:bogus"])).is_err());
    }

    #[test]
    fn ulimits() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        let u = parse_ulimit("nproc=64").unwrap();
        assert_eq!((u.soft, u.hard), (Some(64), Some(64)));
        assert!(parse_ulimit("nofile=2048:1024").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=x").is_err());
    }

    #[test]
    fn restart() {
        let r = parse_restart("on-failure:3").unwrap();
        assert_eq!(r.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(r.maximum_retry_count, Some(3));
        assert_eq!(
            parse_restart("always").unwrap().name,
            Some(RestartPolicyNameEnum::ALWAYS)
        );
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
    }

    #[test]
    fn body() {
        let opts = ContainerOpts {
            memory: Some("32m".into()),
            cpus: Some(1.5),
            env: strings(&["A=1"]),
            label: strings(&["k=v", "flag"]),
            entrypoint: Some(String::new()),
            health_cmd: Some("true".into()),
            health_interval: Some("5s".into()),
            tmpfs: strings(&["/run:size=1m"]),
            rm: true,
            interactive: true,
            ..Default::default()
        };
        let b = opts
            .to_body("busybox", &strings(&["sh", "-c", "true"]), true)
            .unwrap();
        let hc = b.host_config.as_ref().unwrap();
        assert_eq!(hc.memory, Some(32 << 20));
        assert_eq!(hc.nano_cpus, Some(1_500_000_000));
        assert_eq!(hc.auto_remove, Some(true));
        assert_eq!(hc.tmpfs.as_ref().unwrap()["/run"], "size=1m");
        assert_eq!(b.entrypoint, Some(vec![String::new()]));
        assert_eq!(b.labels.as_ref().unwrap()["flag"], "");
        assert_eq!(b.cmd.as_ref().unwrap().len(), 3);
        assert_eq!(b.open_stdin, Some(true));
        assert_eq!(b.stdin_once, Some(true));
        let h = b.healthcheck.unwrap();
        assert_eq!(h.test.unwrap(), strings(&["CMD-SHELL", "true"]));
        assert_eq!(h.interval, Some(5_000_000_000));
        let none = ContainerOpts {
            no_healthcheck: true,
            ..Default::default()
        };
        let b = none.to_body("busybox", &[], false).unwrap();
        assert_eq!(b.healthcheck.unwrap().test.unwrap(), strings(&["NONE"]));
        assert_eq!(b.cmd, None);
        assert_eq!(b.attach_stdout, Some(false));
    }
}
