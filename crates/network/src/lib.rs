//! Container networking on one node, as dockerd's: the predefined `bridge`, `host` and
//! `none` networks, user-defined bridge networks, per-container veth pairs and addresses,
//! outbound NAT and published ports in an nftables table of our own, and an embedded DNS
//! resolver for container names.
//!
//! The seams for the cluster to come: [`ipam::AddressPool`] hands out subnets from ranges
//! (a node will be given its own), and everything a driver does to the kernel is in `link`
//! (netlink) and `firewall` (nftables), so an overlay driver can sit beside the bridge.
#![allow(clippy::result_large_err)]

mod dns;
mod endpoints;
mod error;
mod firewall;
pub mod ipam;
mod link;
mod model;
mod netns;
mod networks;
mod nfnetlink;
pub mod ports;
mod store;

pub use dns::{nameservers, RESOLVER};
pub use endpoints::netns_of;
pub use error::{Error, Result};
pub use model::{
    ContainerRef, Driver, Endpoint, EndpointRequest, Network, PortMapping, PortRequest,
};
pub use networks::{CreateNetwork, Networks, Options};
