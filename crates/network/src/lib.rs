//! Container networking on one node, as dockerd's: the predefined `bridge`, `host` and
//! `none` networks, user-defined bridge networks, per-container veth pairs and addresses,
//! outbound NAT and published ports in an nftables table of our own, and an embedded DNS
//! resolver for container names.
//!
//! The seams for the cluster to come: [`ipam::AddressPool`] hands out subnets from ranges
//! (a node will be given its own), and [`NetworkDriver`] is all that makes a network real
//! on the host (the bridge's links in `link`, over netlink), so an overlay driver can sit
//! beside [`BridgeDriver`]; NAT and published ports are in `firewall` (nftables).
#![allow(clippy::result_large_err)]

mod dns;
mod driver;
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
pub use driver::{BridgeDriver, NetworkDriver};
pub use endpoints::netns_of;
pub use error::{Error, Result};
pub use model::{
    ContainerRef, Driver, Endpoint, EndpointRequest, Network, PortMapping, PortRequest,
};
pub use networks::{CreateNetwork, Networks, Options};
