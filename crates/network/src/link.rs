//! Links, addresses and routes over netlink: bridges and veth pairs on the host, and a
//! container's interfaces inside its namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::error::{Error, Result};
use crate::netns;

/// Whether a netlink error is the kernel's `errno`.
fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The index of link `name`, if it exists.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(Error::netlink(format!("find link {name}"), e)),
    }
}

/// Makes bridge `name` with `gateway` on it and brings it up; what exists already is kept.
pub async fn ensure_bridge(h: &Handle, name: &str, gateway: Ipv4Net, mtu: u32) -> Result<u32> {
    let index = match index_of(h, name).await? {
        Some(i) => i,
        None => {
            let add = h
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute();
            match add.await {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(e) => return Err(Error::netlink(format!("add bridge {name}"), e)),
            }
            index_of(h, name)
                .await?
                .ok_or_else(|| Error::Nft(format!("bridge {name} vanished")))?
        }
    };
    let add = h
        .address()
        .add(index, IpAddr::V4(gateway.addr()), gateway.prefix_len())
        .execute();
    match add.await {
        Ok(()) => {}
        Err(e) if is_errno(&e, libc::EEXIST) => {}
        Err(e) => return Err(Error::netlink(format!("address {gateway} on {name}"), e)),
    }
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("bring {name} up"), e))?;
    // Published ports answer on 127.0.0.1 too: such packets leave through the bridge with a
    // loopback source (then masqueraded), which the kernel allows only where route_localnet
    // is set. Only on our bridge.
    let sysctl = format!("/proc/sys/net/ipv4/conf/{name}/route_localnet");
    std::fs::write(&sysctl, "1").map_err(|e| Error::io(format!("write {sysctl}"), e))?;
    Ok(index)
}

/// Deletes link `name` (a veth takes its peer along); a missing link is not an error.
pub async fn delete(h: &Handle, name: &str) -> Result<()> {
    let Some(index) = index_of(h, name).await? else {
        return Ok(());
    };
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(e) => Err(Error::netlink(format!("delete link {name}"), e)),
    }
}

/// One end of a container's veth pair, as it is made.
pub struct Veth<'a> {
    pub host_name: &'a str,
    pub bridge_index: u32,
    pub peer_name: &'a str,
    pub mtu: u32,
    pub mac: [u8; 6],
}

/// Makes a veth pair whose host end is a port of the bridge, up, and whose other end is
/// born in the namespace at `netns`.
pub async fn add_veth(h: &Handle, v: &Veth<'_>, netns: &Path) -> Result<()> {
    let ns = std::fs::File::open(netns)
        .map_err(|e| Error::io(format!("open network namespace {}", netns.display()), e))?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(v.peer_name.to_string())
        .mtu(v.mtu)
        .address(v.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let msg = LinkVeth::new(v.host_name, v.peer_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(v.mtu)
        .controller(v.bridge_index)
        .up()
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("add veth {}", v.host_name), e))?;
    // Hairpin: a container reaching its own published port through a host address. Where
    // br_netfilter is loaded, that DNAT happens in the bridge, which then sends the frame
    // back out of the port it came in by, which a bridge port refuses unless hairpin is on.
    let sysfs = format!("/sys/class/net/{}/brport/hairpin_mode", v.host_name);
    std::fs::write(&sysfs, "1").map_err(|e| Error::io(format!("write {sysfs}"), e))
}

/// What a container's end of a veth pair gets inside its namespace.
pub struct Inside {
    pub ifname: String,
    pub address: Ipv4Net,
    /// The default route, for the container's first network.
    pub gateway: Option<Ipv4Addr>,
}

/// Brings up loopback and `ifaces` in the namespace at `netns`, with their addresses and
/// the default route.
pub fn configure_inside(netns: &Path, ifaces: Vec<Inside>) -> Result<()> {
    netns::in_netns(netns, move || {
        netns::block_on_netlink(async move |h: Handle| {
            let lo = index_of(&h, "lo").await?.unwrap_or(1);
            h.link()
                .set(LinkUnspec::new_with_index(lo).up().build())
                .execute()
                .await
                .map_err(|e| Error::netlink("bring lo up", e))?;
            for i in ifaces {
                let index = index_of(&h, &i.ifname)
                    .await?
                    .ok_or_else(|| Error::Nft(format!("{} missing in the container", i.ifname)))?;
                h.address()
                    .add(index, IpAddr::V4(i.address.addr()), i.address.prefix_len())
                    .execute()
                    .await
                    .map_err(|e| {
                        Error::netlink(format!("address {} on {}", i.address, i.ifname), e)
                    })?;
                h.link()
                    .set(LinkUnspec::new_with_index(index).up().build())
                    .execute()
                    .await
                    .map_err(|e| Error::netlink(format!("bring {} up", i.ifname), e))?;
                if let Some(gw) = i.gateway {
                    let route = RouteMessageBuilder::<Ipv4Addr>::new()
                        .gateway(gw)
                        .output_interface(index)
                        .build();
                    h.route()
                        .add(route)
                        .execute()
                        .await
                        .map_err(|e| Error::netlink(format!("default route via {gw}"), e))?;
                }
            }
            Ok(())
        })
    })
}

/// The subnets routed on this host, to keep new networks from overlapping them.
pub fn host_routes() -> Vec<(Ipv4Net, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if mask == 0 {
                return None; // the default route overlaps everything
            }
            let addr = Ipv4Addr::from(u32::from_be(dest));
            let prefix = u32::from_be(mask).count_ones() as u8;
            Some((Ipv4Net::new(addr, prefix).ok()?, f[0].to_string()))
        })
        .collect()
}
