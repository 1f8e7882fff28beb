//! A container's endpoints: addresses planned before it starts, veth pairs and published
//! ports once its namespace exists, all released when it stops.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::firewall::Publish;
use crate::link::{self, Inside};
use crate::model::{
    new_id, ContainerRef, Driver, Endpoint, EndpointRequest, PortMapping, PortRequest,
};
use crate::networks::{Live, Networks};
use crate::{dns, ports};

/// A container's network namespace, through its init process.
pub fn netns_of(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

impl Networks {
    /// The endpoints of a container (none unless it runs).
    pub fn endpoints(&self, container_id: &str) -> Vec<Endpoint> {
        self.state()
            .endpoints
            .get(container_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Takes an address on each network for a container about to start, so that its
    /// /etc/hosts can be written; [`Networks::attach`] makes the links.
    pub fn plan(
        &self,
        c: &ContainerRef,
        nets: &[(String, EndpointRequest)],
    ) -> Result<Vec<Endpoint>> {
        let mut st = self.state();
        let mut eps: Vec<Endpoint> = Vec::new();
        let mut failed = None;
        for (i, (net, req)) in nets.iter().enumerate() {
            match self.new_endpoint(&mut st, c, net, req, i) {
                Ok(ep) => eps.push(ep),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            for ep in &eps {
                st.addresses
                    .entry(ep.network_id.clone())
                    .or_default()
                    .release(ep.ip);
            }
            return Err(e);
        }
        let mut all = st.endpoints.remove(&c.id).unwrap_or_default();
        all.extend(eps.iter().cloned());
        if let Err(e) = self.store.save_endpoints(&c.id, &all) {
            for ep in &eps {
                st.addresses
                    .entry(ep.network_id.clone())
                    .or_default()
                    .release(ep.ip);
            }
            return Err(e);
        }
        st.endpoints.insert(c.id.clone(), all);
        Ok(eps)
    }

    fn new_endpoint(
        &self,
        st: &mut crate::networks::State,
        c: &ContainerRef,
        net: &str,
        req: &EndpointRequest,
        index: usize,
    ) -> Result<Endpoint> {
        let n = st
            .networks
            .values()
            .find(|n| n.id == net || n.name == net)
            .cloned()
            .ok_or_else(|| Error::NotFound(net.to_string()))?;
        if n.driver != Driver::Bridge {
            return Err(Error::InvalidArgument(format!(
                "container cannot be connected to network {} with other networks",
                n.name
            )));
        }
        let mine = st
            .endpoints
            .get(&c.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if mine.iter().any(|e| e.network_id == n.id) {
            return Err(Error::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            )));
        }
        if req.ip.is_some() && n.predefined {
            return Err(Error::InvalidArgument(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        let (subnet, gateway) = (n.subnet.expect("bridge"), n.gateway.expect("bridge"));
        let ip = st.addresses.entry(n.id.clone()).or_default().take(
            &subnet,
            n.ip_range.as_ref(),
            gateway,
            req.ip,
        )?;
        let used: Vec<&str> = mine.iter().map(|e| e.ifname.as_str()).collect();
        let ifname = (index..)
            .map(|i| format!("eth{i}"))
            .find(|f| !used.contains(&f.as_str()))
            .expect("unbounded");
        let mut dns_names = vec![c.name.clone()];
        dns_names.extend(req.aliases.iter().cloned());
        dns_names.push(c.id.chars().take(12).collect());
        let mut mac: [u8; 6] = rand::random();
        mac[0] = 0x02; // locally administered, unicast
        Ok(Endpoint {
            id: new_id(),
            network_id: n.id,
            container_id: c.id.clone(),
            container_name: c.name.clone(),
            ip,
            prefix_len: subnet.prefix_len(),
            gateway,
            mac: req.mac.clone().unwrap_or_else(|| format_mac(&mac)),
            host_veth: format!("veth{}", &new_id()[..7]),
            ifname,
            aliases: req.aliases.clone(),
            dns_names,
            ports: Vec::new(),
            static_ip: req.ip.is_some(),
        })
    }

    /// Makes the planned endpoints of a created container real inside its namespace
    /// (loopback only when there are none), publishes `ports` on its first endpoint and
    /// starts its resolver. On error the caller releases the container.
    pub async fn attach(
        self: &Arc<Self>,
        container_id: &str,
        netns: &Path,
        ports: &[PortRequest],
        dns_servers: &[String],
    ) -> Result<()> {
        let eps = self.endpoints(container_id);
        let mut inside = Vec::new();
        for (i, ep) in eps.iter().enumerate() {
            self.add_link(ep, netns).await?;
            inside.push(Inside {
                ifname: ep.ifname.clone(),
                address: Ipv4Net::new(ep.ip, ep.prefix_len).expect("valid prefix"),
                gateway: (i == 0).then_some(ep.gateway),
            });
        }
        let ns = netns.to_path_buf();
        tokio::task::spawn_blocking(move || link::configure_inside(&ns, inside))
            .await
            .map_err(|e| Error::Nft(e.to_string()))??;
        let mut live = Live {
            upstreams: dns_servers
                .iter()
                .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
            ..Live::default()
        };
        if let Some(first) = eps.first() {
            let mut mappings = Vec::new();
            for req in ports {
                let (m, held) = ports::hold(req).map_err(|e| match e {
                    Error::Conflict(m) | Error::InvalidArgument(m) => Error::Conflict(format!(
                        "driver failed programming external connectivity on endpoint {} ({}): {m}",
                        first.container_name, first.id
                    )),
                    e => e,
                })?;
                live.held.push(held);
                mappings.push(m);
            }
            if !mappings.is_empty() {
                // Recorded before the rules are added: a whole-table rewrite in between (a
                // network created meanwhile) then writes them too, rather than losing them.
                {
                    let mut st = self.state();
                    if let Some(e) = st
                        .endpoints
                        .get_mut(container_id)
                        .and_then(|v| v.first_mut())
                    {
                        e.ports = mappings.clone();
                    }
                    let all = st.endpoints.get(container_id).cloned().unwrap_or_default();
                    self.store.save_endpoints(container_id, &all)?;
                }
                let to = first.ip;
                let publishes: Vec<Publish<'_>> =
                    mappings.iter().map(|port| Publish { port, to }).collect();
                self.firewall.publish(&publishes).await?;
            }
        }
        if self.wants_resolver(container_id) {
            live.resolver = Some(dns::serve(netns, container_id, self.names())?);
        }
        self.live().insert(container_id.to_string(), live);
        Ok(())
    }

    async fn add_link(&self, ep: &Endpoint, netns: &Path) -> Result<()> {
        let net = self
            .state()
            .networks
            .get(&ep.network_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(ep.network_id.clone()))?;
        self.driver(&net)?.add_endpoint(&net, ep, netns).await
    }

    /// Connects a container to one more network; a running one (with `netns`) at once.
    pub async fn connect(
        self: &Arc<Self>,
        c: &ContainerRef,
        net: &str,
        req: &EndpointRequest,
        netns: Option<&Path>,
    ) -> Result<Endpoint> {
        let index = self.endpoints(&c.id).len();
        let ep = self
            .plan(c, &[(net.to_string(), req.clone())])?
            .pop()
            .expect("one endpoint planned");
        let Some(ns) = netns else {
            return Ok(ep);
        };
        let linked = async {
            self.add_link(&ep, ns).await?;
            let inside = vec![Inside {
                ifname: ep.ifname.clone(),
                address: Ipv4Net::new(ep.ip, ep.prefix_len).expect("valid prefix"),
                gateway: (index == 0).then_some(ep.gateway),
            }];
            let ns2 = ns.to_path_buf();
            tokio::task::spawn_blocking(move || link::configure_inside(&ns2, inside))
                .await
                .map_err(|e| Error::Nft(e.to_string()))?
        };
        if let Err(e) = linked.await {
            self.drop_endpoint(&c.id, &ep.network_id).await;
            return Err(e);
        }
        if self.wants_resolver(&c.id) {
            let has = self.live().get(&c.id).is_some_and(|l| l.resolver.is_some());
            if !has {
                let r = dns::serve(ns, &c.id, self.names())?;
                self.live().entry(c.id.clone()).or_default().resolver = Some(r);
            }
        }
        Ok(ep)
    }

    /// Disconnects a container from a network: its interface there goes away at once.
    pub async fn disconnect(&self, container_id: &str, net: &str) -> Result<()> {
        let n = self.get(net)?;
        if !self
            .endpoints(container_id)
            .iter()
            .any(|e| e.network_id == n.id)
        {
            return Err(Error::Forbidden(format!(
                "container {container_id} is not connected to network {}",
                n.name
            )));
        }
        self.drop_endpoint(container_id, &n.id).await;
        if !self.wants_resolver(container_id) {
            if let Some(l) = self.live().get_mut(container_id) {
                l.resolver = None;
            }
        }
        Ok(())
    }

    async fn drop_endpoint(&self, container_id: &str, network_id: &str) {
        let ep = {
            let mut st = self.state();
            let Some(eps) = st.endpoints.get_mut(container_id) else {
                return;
            };
            let Some(pos) = eps.iter().position(|e| e.network_id == network_id) else {
                return;
            };
            let ep = eps.remove(pos);
            let rest = eps.clone();
            if rest.is_empty() {
                st.endpoints.remove(container_id);
            }
            st.addresses
                .entry(ep.network_id.clone())
                .or_default()
                .release(ep.ip);
            if let Err(e) = self.store.save_endpoints(container_id, &rest) {
                tracing::warn!("{e}");
            }
            ep
        };
        self.unlink(&[ep]).await;
    }

    /// Releases everything a container holds. Its host ports, rules, names and resolver
    /// go before this returns; its links go in the background (deleting a link waits for
    /// the kernel's RCU grace period, tens of milliseconds), and its addresses are free again
    /// only once they have.
    pub async fn release(self: &Arc<Self>, container_id: &str) {
        drop(self.live().remove(container_id));
        let eps = self
            .state()
            .endpoints
            .remove(container_id)
            .unwrap_or_default();
        if eps.is_empty() {
            return;
        }
        self.unpublish(&eps).await;
        let (me, id) = (self.clone(), container_id.to_string());
        tokio::spawn(async move {
            me.delete_links(&eps).await;
            let mut st = me.state();
            for ep in &eps {
                st.addresses
                    .entry(ep.network_id.clone())
                    .or_default()
                    .release(ep.ip);
            }
            // The container may have started again meanwhile, with new endpoints.
            let now = st.endpoints.get(&id).cloned().unwrap_or_default();
            if let Err(e) = me.store.save_endpoints(&id, &now) {
                tracing::warn!("{e}");
            }
        });
    }

    /// Deletes the host ends of `eps` (their peers go with them) and their port rules.
    async fn unlink(&self, eps: &[Endpoint]) {
        self.unpublish(eps).await;
        self.delete_links(eps).await;
    }

    async fn delete_links(&self, eps: &[Endpoint]) {
        for ep in eps {
            if let Err(e) = self.endpoint_driver(ep).remove_endpoint(ep).await {
                tracing::warn!("{e}");
            }
        }
    }

    async fn unpublish(&self, eps: &[Endpoint]) {
        let ports: Vec<(PortMapping, Ipv4Addr)> = eps
            .iter()
            .flat_map(|e| e.ports.iter().map(|p| (p.clone(), e.ip)))
            .collect();
        let publishes: Vec<Publish<'_>> = ports
            .iter()
            .map(|(port, to)| Publish { port, to: *to })
            .collect();
        self.firewall.unpublish(&publishes).await;
    }

    /// After a daemon restart: the containers in `running` (id → init pid) get their
    /// ports and resolvers back; the others' endpoints are released. Then the firewall
    /// table is written anew from what is left.
    pub async fn restore(self: &Arc<Self>, running: &HashMap<String, i32>) {
        let ids: Vec<String> = self.state().endpoints.keys().cloned().collect();
        for id in ids {
            let Some(pid) = running.get(&id) else {
                self.release(&id).await;
                continue;
            };
            let ns = netns_of(*pid);
            let mut live = Live::default();
            for m in self.endpoints(&id).iter().flat_map(|e| e.ports.clone()) {
                let req = PortRequest {
                    proto: m.proto.clone(),
                    container_port: m.container_port,
                    host_ip: m.host_ip,
                    host_port: m.host_port,
                };
                match ports::hold(&req) {
                    Ok((_, held)) => live.held.push(held),
                    Err(e) => tracing::warn!(id, "hold port {}: {e}", m.host_port),
                }
            }
            if self.wants_resolver(&id) {
                match dns::serve(&ns, &id, self.names()) {
                    Ok(r) => live.resolver = Some(r),
                    Err(e) => tracing::warn!(id, "resolver: {e}"),
                }
            }
            self.live().insert(id, live);
        }
        if let Err(e) = self.sync_firewall().await {
            tracing::error!("write the firewall table: {e}");
        }
    }

    fn wants_resolver(&self, container_id: &str) -> bool {
        let st = self.state();
        st.endpoints
            .get(container_id)
            .into_iter()
            .flatten()
            .any(|e| st.networks.get(&e.network_id).is_some_and(|n| n.has_dns()))
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn names(self: &Arc<Self>) -> Arc<dyn dns::Names> {
        Arc::new(NamesOf(Arc::downgrade(self)))
    }
}

/// The resolver's view of the networks; weak, so resolvers do not keep them alive.
struct NamesOf(Weak<Networks>);

impl dns::Names for NamesOf {
    fn lookup(&self, asker: &str, name: &str) -> Vec<Ipv4Addr> {
        let Some(n) = self.0.upgrade() else {
            return Vec::new();
        };
        let st = n.state();
        let nets: Vec<&str> = st
            .endpoints
            .get(asker)
            .into_iter()
            .flatten()
            .filter(|e| st.networks.get(&e.network_id).is_some_and(|n| n.has_dns()))
            .map(|e| e.network_id.as_str())
            .collect();
        let mut ips: Vec<Ipv4Addr> = st
            .endpoints
            .values()
            .flatten()
            .filter(|e| nets.contains(&e.network_id.as_str()))
            .filter(|e| e.dns_names.iter().any(|d| d.eq_ignore_ascii_case(name)))
            .map(|e| e.ip)
            .collect();
        ips.dedup();
        ips
    }

    fn upstreams(&self, asker: &str) -> Vec<SocketAddr> {
        let Some(n) = self.0.upgrade() else {
            return Vec::new();
        };
        let own = n
            .live()
            .get(asker)
            .map(|l| l.upstreams.clone())
            .unwrap_or_default();
        match own.is_empty() {
            true => n.host_resolvers.clone(),
            false => own,
        }
    }
}

fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
