//! The engine's side of networking: which networks a container joins (checked at create),
//! its addresses before it starts (for its /etc/hosts), its links once its namespace
//! exists, their release when it stops, and its view in `inspect` and `ps`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::{
    EndpointSettings, HostConfig, NetworkingConfig, PortBinding, PortSummary, PortSummaryTypeEnum,
};
use network::{Endpoint, EndpointRequest, PortRequest};
use serde_json::{json, Value};

use crate::container::{Container, Status};
use crate::error::{ApiError, ApiResult};
use crate::Engine;

/// How a container is networked, from its `NetworkMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Bridge networks: the default one or user-defined ones.
    Bridge(String),
    None,
    Host,
    /// Another container's namespace.
    Container(String),
}

pub(crate) fn mode(hc: &HostConfig) -> Mode {
    match hc.network_mode.as_deref().unwrap_or("") {
        "" | "default" | "bridge" => Mode::Bridge("bridge".into()),
        "none" => Mode::None,
        "host" => Mode::Host,
        m => match m.strip_prefix("container:") {
            Some(c) => Mode::Container(c.to_string()),
            None => Mode::Bridge(m.to_string()),
        },
    }
}

/// Checks the network options of a create request; returns the networks the container
/// joins with their endpoint settings, keyed by network name, as docker keeps them.
pub(crate) fn resolve(
    engine: &Engine,
    hc: &mut HostConfig,
    nc: Option<&NetworkingConfig>,
) -> ApiResult<HashMap<String, EndpointSettings>> {
    // The docker CLI keys the settings of the default network as "default".
    let asked: HashMap<String, EndpointSettings> = nc
        .and_then(|n| n.endpoints_config.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "default" => ("bridge".to_string(), v),
            _ => (k, v),
        })
        .collect();
    let publishes = hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
        || hc.publish_all_ports == Some(true);
    for key in hc.port_bindings.iter().flat_map(|p| p.keys()) {
        network::ports::parse_port_key(key)?;
    }
    for b in hc
        .port_bindings
        .iter()
        .flat_map(|p| p.values())
        .flatten()
        .flatten()
    {
        network::ports::parse_host_ip(b.host_ip.as_deref().unwrap_or(""))?;
        network::ports::parse_host_port(b.host_port.as_deref().unwrap_or(""))?;
    }
    match mode(hc) {
        Mode::Container(other) => {
            if publishes {
                return Err(ApiError::bad_request(
                    "conflicting options: port publishing and the container type network mode",
                ));
            }
            // 400, not docker's 404: the docker CLI takes any 404 from create for a missing
            // image and tries to pull it, which hides the real error.
            let target = engine.containers.find(&other).map_err(as_bad_request)?;
            // Docker keeps the target's id, so a rename does not break the link.
            hc.network_mode = Some(format!("container:{}", target.id));
            Ok(HashMap::new())
        }
        Mode::None | Mode::Host => {
            let name = hc.network_mode.clone().unwrap_or_default();
            Ok(HashMap::from([(name, EndpointSettings::default())]))
        }
        Mode::Bridge(primary) => {
            let mut out = HashMap::new();
            let mut names: Vec<String> = vec![primary.clone()];
            names.extend(asked.keys().filter(|k| **k != primary).cloned());
            for name in names {
                let net = engine
                    .networks
                    .get(&name)
                    .map_err(|e| as_bad_request(e.into()))?;
                if net.driver != network::Driver::Bridge {
                    return Err(ApiError::bad_request(format!(
                        "container cannot be connected to network {name} with other networks"
                    )));
                }
                let mut settings = asked.get(&name).cloned().unwrap_or_default();
                let req = endpoint_request(&settings)?;
                if net.predefined && (!req.aliases.is_empty() || req.ip.is_some()) {
                    return Err(ApiError::bad_request(if req.ip.is_some() {
                        "user specified IP address is supported on user defined networks only"
                    } else {
                        "network-scoped alias is supported only for containers in user defined networks"
                    }));
                }
                settings.network_id = Some(net.id.clone());
                out.insert(net.name.clone(), settings);
            }
            if primary == "bridge" {
                hc.network_mode = Some("bridge".into());
            }
            Ok(out)
        }
    }
}

fn as_bad_request(e: ApiError) -> ApiError {
    ApiError::bad_request(e.message)
}

fn endpoint_request(s: &EndpointSettings) -> ApiResult<EndpointRequest> {
    let ip = s
        .ipam_config
        .as_ref()
        .and_then(|i| i.ipv4_address.as_deref())
        .filter(|ip| !ip.is_empty())
        .map(|ip| {
            ip.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {ip}")))
        })
        .transpose()?;
    Ok(EndpointRequest {
        ip,
        aliases: s.aliases.clone().unwrap_or_default(),
        mac: s.mac_address.clone().filter(|m| !m.is_empty()),
    })
}

/// The ports `-p` and `-P` ask to publish.
fn port_requests(c: &Container) -> ApiResult<Vec<PortRequest>> {
    let hc = &c.host_config;
    let mut out = Vec::new();
    let bindings = hc.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        let (port, proto) = network::ports::parse_port_key(key)?;
        for b in list.iter().flatten() {
            out.push(PortRequest {
                proto: proto.clone(),
                container_port: port,
                host_ip: network::ports::parse_host_ip(b.host_ip.as_deref().unwrap_or(""))?,
                host_port: network::ports::parse_host_port(b.host_port.as_deref().unwrap_or(""))?,
            });
        }
    }
    if hc.publish_all_ports == Some(true) {
        for key in c.config.exposed_ports.iter().flatten() {
            if bindings.contains_key(key) {
                continue;
            }
            let (port, proto) = network::ports::parse_port_key(key)?;
            out.push(PortRequest {
                proto,
                container_port: port,
                host_ip: std::net::Ipv4Addr::UNSPECIFIED,
                host_port: 0,
            });
        }
    }
    out.sort_by_key(|p| (p.container_port, p.proto.clone()));
    Ok(out)
}

fn container_ref(c: &Container) -> network::ContainerRef {
    network::ContainerRef {
        id: c.id.clone(),
        name: c.name.clone(),
        hostname: c.config.hostname.clone().unwrap_or_default(),
    }
}

/// The container's networks in order: its primary network (`NetworkMode`) first.
fn joined(c: &Container) -> Vec<(String, EndpointSettings)> {
    let Mode::Bridge(primary) = mode(&c.host_config) else {
        return Vec::new();
    };
    let mut nets: Vec<(String, EndpointSettings)> = c
        .networks
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    nets.sort_by_key(|(name, s)| {
        let first = *name == primary || s.network_id.as_deref() == Some(primary.as_str());
        (!first, name.clone())
    });
    nets
}

/// What a starting container needs from its networks before its bundle is written.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    pub endpoints: Vec<Endpoint>,
    /// `container:` mode: the namespace to join.
    pub join: Option<PathBuf>,
    /// `container:` mode: the directory of the container whose namespace is joined.
    pub join_dir: Option<PathBuf>,
}

/// Takes the container's addresses (or finds the namespace it joins).
pub(crate) fn plan(engine: &Engine, c: &Container) -> ApiResult<Plan> {
    match mode(&c.host_config) {
        Mode::Container(other) => {
            let target = engine.containers.find(&other)?;
            let t = target.get();
            if t.state.status != Status::Running || t.state.pid <= 0 {
                return Err(ApiError::conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    t.id
                )));
            }
            Ok(Plan {
                join: Some(network::netns_of(t.state.pid as i32)),
                join_dir: Some(target.paths.dir.clone()),
                ..Plan::default()
            })
        }
        Mode::Bridge(_) => {
            let mut nets = Vec::new();
            for (name, s) in joined(c) {
                let net = s.network_id.clone().unwrap_or(name);
                nets.push((net, endpoint_request(&s)?));
            }
            let endpoints = engine.networks.plan(&container_ref(c), &nets)?;
            Ok(Plan {
                endpoints,
                ..Plan::default()
            })
        }
        Mode::None | Mode::Host => Ok(Plan::default()),
    }
}

/// Makes the planned links inside the created container (whose init is `pid`), publishes
/// its ports and starts its resolver. The caller releases the container on error.
pub(crate) async fn attach(engine: &Arc<Engine>, c: &Container, pid: i32) -> ApiResult<()> {
    if !matches!(mode(&c.host_config), Mode::Bridge(_) | Mode::None) {
        return Ok(());
    }
    let ports = match mode(&c.host_config) {
        Mode::Bridge(_) => port_requests(c)?,
        _ => Vec::new(),
    };
    let dns = c.host_config.dns.clone().unwrap_or_default();
    engine
        .networks
        .attach(&c.id, &network::netns_of(pid), &ports, &dns)
        .await?;
    Ok(())
}

pub(crate) async fn release(engine: &Engine, id: &str) {
    engine.networks.release(id).await;
}

/// /etc/hosts and /etc/resolv.conf for a container, as docker writes them.
pub(crate) fn etc_files(c: &Container, plan: &Plan, hostname: &str) -> (String, String) {
    let host_hosts = || std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if let Some(dir) = &plan.join_dir {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        return (read("hosts"), read("resolv.conf"));
    }
    let m = mode(&c.host_config);
    if m == Mode::Host {
        return (host_hosts(), host_resolv);
    }
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for extra in c.host_config.extra_hosts.iter().flatten() {
        if let Some((name, ip)) = extra.split_once(':') {
            let ip = if ip == "host-gateway" {
                plan.endpoints
                    .first()
                    .map(|e| e.gateway.to_string())
                    .unwrap_or_default()
            } else {
                ip.to_string()
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    match plan.endpoints.first() {
        Some(ep) => hosts.push_str(&format!("{}\t{hostname}\n", ep.ip)),
        None => hosts.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    let hc = &c.host_config;
    let embedded = matches!(&m, Mode::Bridge(n) if n != "bridge");
    let search = hc.dns_search.clone().unwrap_or_default();
    let options = hc.dns_options.clone().unwrap_or_default();
    let mut resolv = String::new();
    let host_lines = || {
        host_resolv
            .lines()
            .filter(|l| l.starts_with("search") || l.starts_with("options"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    if embedded {
        resolv.push_str(&format!("nameserver {}\n", network::RESOLVER));
    } else {
        let mut servers = hc.dns.clone().unwrap_or_default();
        if servers.is_empty() {
            // Loopback resolvers of the host cannot be reached from the container.
            servers = network::nameservers(&host_resolv)
                .into_iter()
                .filter(|s| !s.starts_with("127.") && s != "::1")
                .collect();
        }
        if servers.is_empty() {
            servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        }
        for s in servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
    }
    match (search.is_empty(), options.is_empty()) {
        (true, true) => resolv.push_str(&host_lines()),
        _ => {
            if !search.is_empty() {
                resolv.push_str(&format!("search {}\n", search.join(" ")));
            }
            if !options.is_empty() {
                resolv.push_str(&format!("options {}\n", options.join(" ")));
            }
        }
    }
    if embedded && !resolv.contains("ndots") {
        resolv.push_str("options ndots:0\n");
    }
    (hosts, resolv)
}

/// `NetworkSettings` of `docker inspect`, with the top-level fields of the default
/// network that older clients read (`.NetworkSettings.IPAddress`).
pub(crate) fn settings(engine: &Engine, c: &Container, pid: i64) -> Value {
    let eps = engine.networks.endpoints(&c.id);
    let mut networks = serde_json::Map::new();
    for (name, cfg) in &c.networks {
        let mut s = cfg.clone();
        let net_id = s
            .network_id
            .clone()
            .or_else(|| engine.networks.get(name).ok().map(|n| n.id));
        if let Some(ep) = eps.iter().find(|e| Some(&e.network_id) == net_id.as_ref()) {
            s.endpoint_id = Some(ep.id.clone());
            s.ip_address = Some(ep.ip.to_string());
            s.ip_prefix_len = Some(ep.prefix_len as i64);
            s.gateway = Some(ep.gateway.to_string());
            s.mac_address = Some(ep.mac.clone());
            s.dns_names = Some(ep.dns_names.clone());
        }
        s.network_id = net_id;
        networks.insert(name.clone(), serde_json::to_value(s).unwrap_or(Value::Null));
    }
    let first = eps.first();
    json!({
        "Bridge": "",
        "SandboxID": if pid > 0 { c.id.clone() } else { String::new() },
        "SandboxKey": if pid > 0 { format!("/proc/{pid}/ns/net") } else { String::new() },
        "Ports": port_map(c, &eps),
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null,
        "SecondaryIPv6Addresses": null,
        "EndpointID": first.map(|e| e.id.clone()).unwrap_or_default(),
        "Gateway": first.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": first.map(|e| e.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": first.map(|e| e.prefix_len).unwrap_or(0),
        "IPv6Gateway": "",
        "MacAddress": first.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// `NetworkSettings.Ports`: every exposed or published port, with its host bindings
/// while the container runs (null when it has none).
fn port_map(c: &Container, eps: &[Endpoint]) -> HashMap<String, Option<Vec<PortBinding>>> {
    let mut out: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if mode(&c.host_config) == Mode::Host {
        return out;
    }
    for key in c.config.exposed_ports.iter().flatten() {
        out.insert(key.clone(), None);
    }
    for key in c.host_config.port_bindings.iter().flat_map(|p| p.keys()) {
        out.insert(key.clone(), None);
    }
    for m in eps.iter().flat_map(|e| e.ports.iter()) {
        let key = format!("{}/{}", m.container_port, m.proto);
        out.entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(m.host_ip.to_string()),
                host_port: Some(m.host_port.to_string()),
            });
    }
    out
}

/// The PORTS of a `docker ps` row, and its networks.
pub(crate) fn summary(engine: &Engine, c: &Container) -> (Vec<PortSummary>, Value) {
    let eps = engine.networks.endpoints(&c.id);
    let mut ports = Vec::new();
    for (key, bindings) in port_map(c, &eps) {
        let Ok((port, proto)) = network::ports::parse_port_key(&key) else {
            continue;
        };
        let typ = match proto.as_str() {
            "udp" => PortSummaryTypeEnum::UDP,
            "sctp" => PortSummaryTypeEnum::SCTP,
            _ => PortSummaryTypeEnum::TCP,
        };
        match bindings {
            None => ports.push(PortSummary {
                private_port: port,
                typ: Some(typ),
                ..Default::default()
            }),
            Some(list) => ports.extend(list.into_iter().map(|b| PortSummary {
                ip: b.host_ip,
                private_port: port,
                public_port: b.host_port.and_then(|p| p.parse().ok()),
                typ: Some(typ),
            })),
        }
    }
    ports.sort_by_key(|p| (p.private_port, p.public_port));
    let nets = settings(engine, c, 0)["Networks"].clone();
    (ports, json!({ "Networks": nets }))
}
