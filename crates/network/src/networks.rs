//! The networks of this node: the predefined `bridge`, `host` and `none`, and
//! user-defined bridge networks.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;

use crate::driver::{BridgeDriver, NetworkDriver};
use crate::error::{Error, Result};
use crate::firewall::{BridgeRules, Firewall, Publish};
use crate::ipam::{self, AddressPool, Addresses};
use crate::model::{new_id, Driver, Endpoint, Network, PortMapping};
use crate::store::Store;
use crate::{dns, link, ports};

/// How the daemon's networking is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where networks and endpoints are kept (`<data-root>/network`).
    pub dir: PathBuf,
    /// Names what this daemon makes on the host: the nftables table and the default
    /// bridge (`<prefix>0`). Two daemons on one host need two prefixes.
    pub prefix: String,
    /// The default bridge's gateway and subnet (dockerd's `--bip`), e.g. 172.17.0.1/16.
    pub bip: Option<Ipv4Net>,
    /// Where user-defined networks get their subnets.
    pub pools: Vec<AddressPool>,
    pub mtu: u32,
}

impl Options {
    pub fn new(dir: PathBuf) -> Options {
        Options {
            dir,
            prefix: "cloudlet".into(),
            bip: None,
            pools: AddressPool::defaults(),
            mtu: 1500,
        }
    }
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
}

pub(crate) struct State {
    pub networks: BTreeMap<String, Network>,
    /// By container id.
    pub endpoints: HashMap<String, Vec<Endpoint>>,
    /// By network id.
    pub addresses: HashMap<String, Addresses>,
}

/// What a running container holds besides its records: host ports and its resolver.
#[derive(Default)]
pub(crate) struct Live {
    pub held: Vec<ports::Held>,
    pub resolver: Option<dns::Resolver>,
    pub upstreams: Vec<SocketAddr>,
}

pub struct Networks {
    pub(crate) opts: Options,
    pub(crate) store: Store,
    pub(crate) firewall: Firewall,
    /// The driver of bridge networks (the only kind that makes anything on the host).
    pub(crate) bridge: Box<dyn NetworkDriver>,
    pub(crate) state: Mutex<State>,
    pub(crate) live: Mutex<HashMap<String, Live>>,
    /// Serializes changes to bridges and the firewall table.
    pub(crate) ops: tokio::sync::Mutex<()>,
    pub(crate) host_resolvers: Vec<SocketAddr>,
}

impl Networks {
    /// Loads the networks and endpoints, makes the predefined networks and the bridges.
    /// Call [`Networks::restore`] once the running containers are known.
    pub async fn open(opts: Options) -> Result<Arc<Networks>> {
        let store = Store::open(&opts.dir)?;
        let (conn, netlink, _) =
            rtnetlink::new_connection().map_err(|e| Error::io("open a netlink socket", e))?;
        tokio::spawn(conn);
        let mut networks: BTreeMap<String, Network> = store
            .networks()
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        let mut endpoints: HashMap<String, Vec<Endpoint>> = HashMap::new();
        let mut addresses: HashMap<String, Addresses> = HashMap::new();
        for (cid, eps) in store.endpoints() {
            for ep in &eps {
                addresses
                    .entry(ep.network_id.clone())
                    .or_default()
                    .mark(ep.ip);
            }
            endpoints.insert(cid, eps);
        }
        for (name, driver) in [
            ("bridge", Driver::Bridge),
            ("host", Driver::Host),
            ("none", Driver::Null),
        ] {
            if networks.values().any(|n| n.predefined && n.name == name) {
                continue;
            }
            let mut n = blank(name, driver);
            n.predefined = true;
            if driver == Driver::Bridge {
                let gw = opts
                    .bip
                    .unwrap_or_else(|| "172.17.0.1/16".parse().expect("literal"));
                n.subnet = Some(gw.trunc());
                n.gateway = Some(gw.addr());
                n.bridge = format!("{}0", opts.prefix);
                n.mtu = opts.mtu;
            }
            store.save_network(&n)?;
            networks.insert(n.id.clone(), n);
        }
        let bridge: Box<dyn NetworkDriver> = Box::new(BridgeDriver::new(netlink));
        for n in networks.values().filter(|n| n.driver == Driver::Bridge) {
            bridge.ensure(n).await?;
        }
        crate::firewall::enable_forwarding()?;
        let host_resolvers = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| dns::nameservers(&t))
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        let firewall = Firewall::new(opts.prefix.clone())?;
        Ok(Arc::new(Networks {
            opts,
            store,
            bridge,
            firewall,
            state: Mutex::new(State {
                networks,
                endpoints,
                addresses,
            }),
            live: Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            host_resolvers,
        }))
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn list(&self) -> Vec<Network> {
        self.state().networks.values().cloned().collect()
    }

    /// By full id, name, or unique id prefix, as docker resolves network references.
    pub fn get(&self, name_or_id: &str) -> Result<Network> {
        let st = self.state();
        if let Some(n) = st.networks.get(name_or_id) {
            return Ok(n.clone());
        }
        if let Some(n) = st.networks.values().find(|n| n.name == name_or_id) {
            return Ok(n.clone());
        }
        let mut by_prefix = st
            .networks
            .values()
            .filter(|n| n.id.starts_with(name_or_id));
        match (by_prefix.next(), by_prefix.next(), name_or_id.is_empty()) {
            (Some(n), None, false) => Ok(n.clone()),
            (Some(_), Some(_), false) => Err(Error::InvalidArgument(format!(
                "network {name_or_id} is ambiguous"
            ))),
            _ => Err(Error::NotFound(name_or_id.to_string())),
        }
    }

    /// The endpoints on a network, one per running container attached to it.
    pub fn network_endpoints(&self, network_id: &str) -> Vec<Endpoint> {
        let st = self.state();
        let mut eps: Vec<Endpoint> = st
            .endpoints
            .values()
            .flatten()
            .filter(|e| e.network_id == network_id)
            .cloned()
            .collect();
        eps.sort_by(|a, b| a.container_name.cmp(&b.container_name));
        eps
    }

    pub async fn create(&self, req: CreateNetwork) -> Result<Network> {
        let _ops = self.ops.lock().await;
        if !matches!(req.driver.as_str(), "" | "bridge") {
            return Err(Error::NotFound(format!("plugin \"{}\"", req.driver)));
        }
        validate_name(&req.name)?;
        if self.state().networks.values().any(|n| n.name == req.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let mut n = blank(&req.name, Driver::Bridge);
        n.internal = req.internal;
        n.attachable = req.attachable;
        n.labels = req.labels;
        n.mtu = match req.options.get("com.docker.network.driver.mtu") {
            Some(m) => m
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("invalid mtu {m:?}")))?,
            None => self.opts.mtu,
        };
        n.bridge = match req.options.get("com.docker.network.bridge.name") {
            Some(b) if b.is_empty() || b.len() > 15 => {
                return Err(Error::InvalidArgument(format!("invalid bridge name {b:?}")))
            }
            Some(b) => b.clone(),
            None => format!("br-{}", &n.id[..12]),
        };
        n.options = req.options;
        let (subnet, gateway, range) =
            self.pick_addresses(&req.subnet, &req.gateway, &req.ip_range)?;
        n.subnet = Some(subnet);
        n.gateway = Some(gateway);
        n.ip_range = range;
        self.driver(&n)?.ensure(&n).await?;
        let mut saved = self.store.save_network(&n);
        if saved.is_ok() {
            self.state().networks.insert(n.id.clone(), n.clone());
            saved = self.sync_firewall().await;
        }
        if let Err(e) = saved {
            self.state().networks.remove(&n.id);
            let _ = self.store.delete_network(&n.id);
            let _ = self.bridge.remove(&n).await;
            let _ = self.sync_firewall().await;
            return Err(e);
        }
        Ok(n)
    }

    /// The subnet, gateway and range of a new network: as given (checked against every
    /// network and route on the host), or the first free subnet of the pools.
    fn pick_addresses(
        &self,
        subnet: &Option<String>,
        gateway: &Option<String>,
        range: &Option<String>,
    ) -> Result<(Ipv4Net, Ipv4Addr, Option<Ipv4Net>)> {
        let mut taken: Vec<Ipv4Net> = self
            .state()
            .networks
            .values()
            .filter_map(|n| n.subnet)
            .collect();
        taken.extend(link::host_routes().into_iter().map(|(net, _)| net));
        let subnet = match subnet.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                let net: Ipv4Net = s.parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "invalid subnet {s}: want CIDR notation, e.g. 10.1.0.0/24"
                    ))
                })?;
                if net.prefix_len() > 30 {
                    return Err(Error::InvalidArgument(format!("subnet {s} is too small")));
                }
                if net != net.trunc() {
                    return Err(Error::InvalidArgument(format!(
                        "invalid subnet {s}: it should be {}",
                        net.trunc()
                    )));
                }
                if taken.iter().any(|t| ipam::overlaps(t, &net)) {
                    return Err(Error::Forbidden(
                        "invalid pool request: Pool overlaps with other one on this address space"
                            .into(),
                    ));
                }
                net
            }
            None => ipam::pick_subnet(&self.opts.pools, &taken).ok_or_else(|| {
                Error::Forbidden(
                    "could not find an available, non-overlapping IPv4 address pool among the \
                     defaults to assign to the network"
                        .into(),
                )
            })?,
        };
        let gateway = match gateway.as_deref().filter(|s| !s.is_empty()) {
            Some(g) => {
                let ip: Ipv4Addr = g
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("invalid gateway {g}")))?;
                if !subnet.contains(&ip) || ip == subnet.network() || ip == subnet.broadcast() {
                    return Err(Error::InvalidArgument(format!(
                        "invalid gateway {g}: it is not a host address of subnet {subnet}"
                    )));
                }
                ip
            }
            None => subnet
                .hosts()
                .next()
                .expect("a subnet of /30 or larger has hosts"),
        };
        let range = match range.as_deref().filter(|s| !s.is_empty()) {
            Some(r) => {
                let net: Ipv4Net = r
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("invalid ip-range {r}")))?;
                if !subnet.contains(&net) {
                    return Err(Error::InvalidArgument(format!(
                        "ip-range {r} is not within subnet {subnet}"
                    )));
                }
                Some(net)
            }
            None => None,
        };
        Ok((subnet, gateway, range))
    }

    pub async fn remove(&self, name_or_id: &str) -> Result<()> {
        let _ops = self.ops.lock().await;
        let n = self.get(name_or_id)?;
        if n.predefined {
            return Err(Error::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !self.network_endpoints(&n.id).is_empty() {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.store.delete_network(&n.id)?;
        {
            let mut st = self.state();
            st.networks.remove(&n.id);
            st.addresses.remove(&n.id);
        }
        if let Ok(driver) = self.driver(&n) {
            driver.remove(&n).await?;
        }
        self.sync_firewall().await
    }

    /// Removes every user-defined network without endpoints; returns their names.
    pub async fn prune(&self, keep: impl Fn(&Network) -> bool) -> Vec<String> {
        let mut removed = Vec::new();
        for n in self.list() {
            if n.predefined || keep(&n) || !self.network_endpoints(&n.id).is_empty() {
                continue;
            }
            if self.remove(&n.id).await.is_ok() {
                removed.push(n.name);
            }
        }
        removed
    }

    /// Writes the firewall table from the networks and published ports.
    pub(crate) async fn sync_firewall(&self) -> Result<()> {
        let (bridges, ports) = {
            let st = self.state();
            let bridges: Vec<BridgeRules> = st
                .networks
                .values()
                .filter(|n| n.driver == Driver::Bridge)
                .map(|n| BridgeRules {
                    bridge: n.bridge.clone(),
                    subnet: n.subnet.expect("bridge networks have subnets"),
                    internal: n.internal,
                })
                .collect();
            let ports: Vec<(PortMapping, Ipv4Addr)> = st
                .endpoints
                .values()
                .flatten()
                .flat_map(|e| e.ports.iter().map(move |p| (p.clone(), e.ip)))
                .collect();
            (bridges, ports)
        };
        let publishes: Vec<Publish<'_>> = ports
            .iter()
            .map(|(port, to)| Publish { port, to: *to })
            .collect();
        self.firewall.sync(&bridges, &publishes).await
    }

    /// Removes what this daemon made on the host: its bridges and firewall table (for a
    /// daemon that goes away for good, such as a test's).
    pub async fn remove_host_state(&self) -> Result<()> {
        for n in self.list() {
            if let Ok(driver) = self.driver(&n) {
                driver.remove(&n).await?;
            }
        }
        self.firewall.remove().await
    }

    /// What makes network `n` real on the host; `host` and `none` have nothing to make.
    pub(crate) fn driver(&self, n: &Network) -> Result<&dyn NetworkDriver> {
        match n.driver {
            Driver::Bridge => Ok(self.bridge.as_ref()),
            Driver::Host | Driver::Null => Err(Error::InvalidArgument(format!(
                "network {} has no links of its own",
                n.name
            ))),
        }
    }

    /// The driver of an endpoint's network (the bridge's if the network is gone).
    pub(crate) fn endpoint_driver(&self, ep: &Endpoint) -> &dyn NetworkDriver {
        let net = self.state().networks.get(&ep.network_id).cloned();
        net.and_then(|n| self.driver(&n).ok())
            .unwrap_or(self.bridge.as_ref())
    }
}

fn blank(name: &str, driver: Driver) -> Network {
    Network {
        id: new_id(),
        name: name.to_string(),
        driver,
        created: chrono::Utc::now(),
        subnet: None,
        gateway: None,
        ip_range: None,
        bridge: String::new(),
        internal: false,
        attachable: false,
        mtu: 0,
        labels: HashMap::new(),
        options: HashMap::new(),
        predefined: false,
    }
}

fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if matches!(name, "bridge" | "host" | "none" | "default") {
        return Err(Error::Forbidden(format!(
            "{name} is a pre-defined network and cannot be created"
        )));
    }
    Ok(())
}
