//! What is persisted about networks and their endpoints.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The driver of a network, as docker names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A Linux bridge with its own subnet: the default network and user-defined ones.
    Bridge,
    /// The host's namespace (the predefined `host` network).
    Host,
    /// Loopback only (the predefined `none` network).
    Null,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Host => "host",
            Driver::Null => "null",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: Driver,
    pub created: DateTime<Utc>,
    /// Bridge networks only.
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    /// `--ip-range`: where dynamic addresses come from (the subnet if unset).
    pub ip_range: Option<Ipv4Net>,
    /// The Linux bridge (bridge networks only).
    pub bridge: String,
    pub internal: bool,
    pub attachable: bool,
    pub mtu: u32,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
    /// `bridge`, `host` and `none`: made by the daemon, never removed.
    pub predefined: bool,
}

impl Network {
    /// Docker's default bridge does not resolve container names; user-defined bridges do.
    pub fn has_dns(&self) -> bool {
        self.driver == Driver::Bridge && !self.predefined
    }
}

/// A published port: the container's port, and where on the host it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// "tcp", "udp" or "sctp".
    pub proto: String,
    pub container_port: u16,
    /// 0.0.0.0 for every address of the host.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// A port the user asked to publish; `host_port` 0 means any free port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// What a container asks of one of its networks (docker's EndpointSettings, the config part).
#[derive(Clone, Debug, Default)]
pub struct EndpointRequest {
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias`.
    pub aliases: Vec<String>,
    pub mac: Option<String>,
}

/// The container an endpoint is for.
#[derive(Clone, Debug)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
    pub hostname: String,
}

/// A container's attachment to a network: its address, interface and published ports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    pub container_name: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The interface in the container (eth0, eth1, …).
    pub ifname: String,
    pub aliases: Vec<String>,
    /// Names this endpoint answers to in the embedded DNS.
    pub dns_names: Vec<String>,
    pub ports: Vec<PortMapping>,
    /// The address was asked for with `--ip`.
    #[serde(default)]
    pub static_ip: bool,
}

/// A random 64-hex id, as docker's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
