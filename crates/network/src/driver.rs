//! The seam between a network's bookkeeping (IPAM, endpoints, ports, DNS: `networks` and
//! `endpoints`) and what makes it real on this host. The `bridge` driver is the one there
//! is; an overlay (VXLAN between nodes, for the pod network) implements the same calls.
//! `host` and `none` networks have no driver: they make nothing.

use std::path::Path;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::link::{self, Veth};
use crate::model::{Endpoint, Network};

#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// Makes the network's host side, or checks it is there (daemon start): idempotent.
    async fn ensure(&self, net: &Network) -> Result<()>;
    /// Removes the network's host side; what is already gone is fine.
    async fn remove(&self, net: &Network) -> Result<()>;
    /// Makes an endpoint's link: its far end is born as `ep.ifname` in the namespace at
    /// `netns` (addresses and routes inside are set by the caller, the same for every
    /// driver).
    async fn add_endpoint(&self, net: &Network, ep: &Endpoint, netns: &Path) -> Result<()>;
    /// Removes an endpoint's host side (and with it the far end).
    async fn remove_endpoint(&self, ep: &Endpoint) -> Result<()>;
}

/// A Linux bridge per network, with the gateway address on it; a veth pair per endpoint
/// whose host end is a bridge port.
pub struct BridgeDriver {
    netlink: rtnetlink::Handle,
}

impl BridgeDriver {
    pub fn new(netlink: rtnetlink::Handle) -> BridgeDriver {
        BridgeDriver { netlink }
    }
}

#[async_trait]
impl NetworkDriver for BridgeDriver {
    async fn ensure(&self, net: &Network) -> Result<()> {
        let (Some(subnet), Some(gw)) = (net.subnet, net.gateway) else {
            return Err(Error::InvalidArgument(format!(
                "bridge network {} has no subnet",
                net.name
            )));
        };
        let cidr = Ipv4Net::new(gw, subnet.prefix_len()).expect("prefix from a net");
        link::ensure_bridge(&self.netlink, &net.bridge, cidr, net.mtu).await?;
        Ok(())
    }

    async fn remove(&self, net: &Network) -> Result<()> {
        link::delete(&self.netlink, &net.bridge).await
    }

    async fn add_endpoint(&self, net: &Network, ep: &Endpoint, netns: &Path) -> Result<()> {
        let index = link::index_of(&self.netlink, &net.bridge)
            .await?
            .ok_or_else(|| Error::Nft(format!("bridge {} is missing", net.bridge)))?;
        let veth = Veth {
            host_name: &ep.host_veth,
            bridge_index: index,
            peer_name: &ep.ifname,
            mtu: net.mtu,
            mac: parse_mac(&ep.mac),
        };
        link::add_veth(&self.netlink, &veth, netns).await
    }

    async fn remove_endpoint(&self, ep: &Endpoint) -> Result<()> {
        link::delete(&self.netlink, &ep.host_veth).await
    }
}

fn parse_mac(s: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, part) in out.iter_mut().zip(s.split(':')) {
        *o = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    out
}
