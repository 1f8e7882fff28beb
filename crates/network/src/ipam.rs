//! Address management: subnets for new networks out of address pools, and addresses for
//! endpoints inside a network's subnet.
//!
//! Pools are ranges cut into subnets of one size, as dockerd's `default-address-pools`; a
//! node of a cluster will later be handed its own range the same way.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::error::{Error, Result};

/// A range cut into subnets of `size` bits of prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPool {
    pub base: Ipv4Net,
    pub size: u8,
}

impl AddressPool {
    /// `base=172.18.0.0/16,size=24` (dockerd's `--default-address-pool` form).
    pub fn parse(s: &str) -> Result<AddressPool> {
        let (mut base, mut size) = (None, None);
        for part in s.split(',') {
            match part.split_once('=') {
                Some(("base", v)) => base = v.parse::<Ipv4Net>().ok(),
                Some(("size", v)) => size = v.parse::<u8>().ok(),
                _ => {}
            }
        }
        match (base, size) {
            (Some(base), Some(size)) if size >= base.prefix_len() && size <= 30 => {
                Ok(AddressPool { base, size })
            }
            _ => Err(Error::InvalidArgument(format!(
                "invalid address pool {s:?}: want base=CIDR,size=N with N between the base's \
                 prefix length and 30"
            ))),
        }
    }

    /// Docker's defaults: 172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 in /20s.
    pub fn defaults() -> Vec<AddressPool> {
        let mut pools: Vec<AddressPool> = (17..=31u8)
            .map(|b| AddressPool {
                base: Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("literal"),
                size: 16,
            })
            .collect();
        pools.push(AddressPool {
            base: "192.168.0.0/16".parse().expect("literal"),
            size: 20,
        });
        pools
    }
}

/// The first subnet of the pools that overlaps none of `taken`.
pub fn pick_subnet(pools: &[AddressPool], taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    pools.iter().find_map(|p| {
        p.base
            .subnets(p.size)
            .ok()?
            .find(|s| !taken.iter().any(|t| overlaps(s, t)))
    })
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The addresses in use in one network's subnet.
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    used: BTreeSet<Ipv4Addr>,
}

impl Addresses {
    pub fn mark(&mut self, ip: Ipv4Addr) {
        self.used.insert(ip);
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// Takes `requested`, or the lowest free host address of `range` (within `subnet`),
    /// never the subnet's network, broadcast or gateway address.
    pub fn take(
        &mut self,
        subnet: &Ipv4Net,
        range: Option<&Ipv4Net>,
        gateway: Ipv4Addr,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let reserved =
            |ip: Ipv4Addr| ip == gateway || ip == subnet.network() || ip == subnet.broadcast();
        if let Some(ip) = requested {
            if !subnet.contains(&ip) {
                return Err(Error::InvalidArgument(format!(
                    "invalid address {ip}: it does not belong to any of this network's subnets"
                )));
            }
            if reserved(ip) || self.used.contains(&ip) {
                return Err(Error::Conflict(format!("Address already in use: {ip}")));
            }
            self.used.insert(ip);
            return Ok(ip);
        }
        let range = range.unwrap_or(subnet);
        let found = range
            .hosts()
            .find(|ip| subnet.contains(ip) && !reserved(*ip) && !self.used.contains(ip));
        match found {
            Some(ip) => {
                self.used.insert(ip);
                Ok(ip)
            }
            None => Err(Error::Conflict(format!(
                "no available IPv4 addresses on this network's address pools: {subnet}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_skip_what_is_taken() {
        let pools = AddressPool::defaults();
        let taken: Vec<Ipv4Net> = vec!["172.17.0.0/16".parse().unwrap()];
        assert_eq!(
            pick_subnet(&pools, &taken),
            Some("172.18.0.0/16".parse().unwrap())
        );
        let p = AddressPool::parse("base=10.9.0.0/16,size=24").unwrap();
        assert_eq!(p.size, 24);
        assert!(AddressPool::parse("base=10.9.0.0/16").is_err());
        assert!(AddressPool::parse("base=10.9.0.0/16,size=8").is_err());
    }

    #[test]
    fn addresses_are_unique_and_skip_the_gateway() {
        let subnet: Ipv4Net = "10.1.0.0/29".parse().unwrap();
        let gw: Ipv4Addr = "10.1.0.1".parse().unwrap();
        let mut a = Addresses::default();
        assert_eq!(
            a.take(&subnet, None, gw, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 2)
        );
        assert_eq!(
            a.take(&subnet, None, gw, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 3)
        );
        let want = Ipv4Addr::new(10, 1, 0, 6);
        assert_eq!(a.take(&subnet, None, gw, Some(want)).unwrap(), want);
        assert!(matches!(
            a.take(&subnet, None, gw, Some(want)),
            Err(Error::Conflict(_))
        ));
        assert!(a
            .take(&subnet, None, gw, Some(Ipv4Addr::new(10, 2, 0, 1)))
            .is_err());
        a.take(&subnet, None, gw, None).unwrap();
        a.take(&subnet, None, gw, None).unwrap();
        assert!(
            a.take(&subnet, None, gw, None).is_err(),
            "/29 has 5 hosts past the gateway"
        );
        a.release(Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(
            a.take(&subnet, None, gw, None).unwrap(),
            Ipv4Addr::new(10, 1, 0, 2)
        );
    }
}
