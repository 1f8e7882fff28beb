//! Service ClusterIPs and NodePorts, allocated when a Service is created as upstream's
//! allocators do: a ClusterIP from `--service-cidr` (the first address is kept for the
//! `kubernetes` Service), NodePorts from 30000-32767. Each address or port in use is a key
//! in the store (`/registry/ranges/…`), created atomically, so two creates racing never get
//! the same one, and deleted with the Service.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use store::Store;

use crate::catalog::Resource;
use crate::status::{ApiError, Cause};

const IPS: &str = "/registry/ranges/serviceips/";
const PORTS: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

#[derive(Debug, Clone, Copy)]
pub struct ServiceRanges {
    base: u32,
    size: u32,
}

pub fn is_service(res: &Resource) -> bool {
    res.group.is_empty() && res.plural == "services"
}

impl ServiceRanges {
    /// An IPv4 CIDR such as 10.43.0.0/16.
    pub fn parse(cidr: &str) -> Result<ServiceRanges, String> {
        let (ip, bits) = cidr.split_once('/').ok_or("expected ADDRESS/BITS")?;
        let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|_| format!("bad prefix length {bits:?}"))?;
        if !(8..=30).contains(&bits) {
            return Err("the service CIDR must be between /8 and /30".into());
        }
        let size = 1u32 << (32 - bits);
        Ok(ServiceRanges {
            base: u32::from(ip) & !(size - 1),
            size,
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size - 1
    }

    /// Assigns `spec.clusterIP(s)` and missing NodePorts, claiming each; returns the claim
    /// keys, for [`release_keys`] if the create then fails.
    pub async fn allocate(
        &self,
        store: &dyn Store,
        res: &Resource,
        svc: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        let mut claimed = Vec::new();
        let r = self.allocate_into(store, res, svc, &mut claimed).await;
        if r.is_err() {
            release_keys(store, &claimed).await;
        }
        r.map(|()| claimed)
    }

    async fn allocate_into(
        &self,
        store: &dyn Store,
        res: &Resource,
        svc: &mut Value,
        claimed: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let owner = format!(
            "{}/{}",
            svc["metadata"]["namespace"].as_str().unwrap_or(""),
            svc["metadata"]["name"].as_str().unwrap_or("")
        );
        let kind = svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        if kind == "ExternalName" {
            return Ok(());
        }
        match svc["spec"]["clusterIP"].as_str().unwrap_or("") {
            "None" => {}
            "" => {
                let ip = self.claim_free_ip(store, &owner, claimed).await?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
            wanted => {
                let field = "spec.clusterIP";
                let ip: Ipv4Addr = wanted
                    .parse()
                    .map_err(|_| invalid(res, svc, field, wanted, "must be a valid IP address"))?;
                if !self.contains(ip) {
                    return Err(invalid(
                        res,
                        svc,
                        field,
                        wanted,
                        "provided IP is not in the valid range",
                    ));
                }
                let key = format!("{IPS}{ip}");
                if !claim(store, &key, &owner).await? {
                    return Err(invalid(
                        res,
                        svc,
                        field,
                        wanted,
                        "provided IP is already allocated",
                    ));
                }
                claimed.push(key);
                svc["spec"]["clusterIPs"] = json!([wanted]);
            }
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
            for i in 0..count {
                let field = format!("spec.ports[{i}].nodePort");
                let port = match svc["spec"]["ports"][i]["nodePort"].as_u64() {
                    Some(p) => {
                        let p = p as u32;
                        if !NODE_PORTS.contains(&p) {
                            return Err(invalid(res, svc, &field, &p.to_string(), "provided port is not in the valid range. The range of valid ports is 30000-32767"));
                        }
                        let key = format!("{PORTS}{p}");
                        if !claim(store, &key, &owner).await? {
                            return Err(invalid(
                                res,
                                svc,
                                &field,
                                &p.to_string(),
                                "provided port is already allocated",
                            ));
                        }
                        claimed.push(key);
                        p
                    }
                    None => self.claim_free_port(store, &owner, claimed).await?,
                };
                svc["spec"]["ports"][i]["nodePort"] = json!(port);
            }
        }
        Ok(())
    }

    async fn claim_free_ip(
        &self,
        store: &dyn Store,
        owner: &str,
        claimed: &mut Vec<String>,
    ) -> Result<Ipv4Addr, ApiError> {
        // Usable: base+2 ..= base+size-2 (base+1 is the `kubernetes` Service's).
        let usable = self.size.saturating_sub(3).max(1);
        let start = rand::rng().random_range(0..usable);
        for i in 0..usable {
            let ip = Ipv4Addr::from(self.base + 2 + (start + i) % usable);
            let key = format!("{IPS}{ip}");
            if claim(store, &key, owner).await? {
                claimed.push(key);
                return Ok(ip);
            }
        }
        Err(ApiError::internal(
            "the service CIDR has no free address left",
        ))
    }

    async fn claim_free_port(
        &self,
        store: &dyn Store,
        owner: &str,
        claimed: &mut Vec<String>,
    ) -> Result<u32, ApiError> {
        let n = NODE_PORTS.end() - NODE_PORTS.start() + 1;
        let start = rand::rng().random_range(0..n);
        for i in 0..n {
            let port = NODE_PORTS.start() + (start + i) % n;
            let key = format!("{PORTS}{port}");
            if claim(store, &key, owner).await? {
                claimed.push(key);
                return Ok(port);
            }
        }
        Err(ApiError::internal("no free NodePort left"))
    }
}

/// Creates the claim key; false if someone holds it.
async fn claim(store: &dyn Store, key: &str, owner: &str) -> Result<bool, ApiError> {
    match store.create(key, owner.as_bytes().to_vec()).await {
        Ok(_) => Ok(true),
        Err(store::Error::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(ApiError::internal(format!("allocate {key}: {e}"))),
    }
}

pub async fn release_keys(store: &dyn Store, keys: &[String]) {
    for k in keys {
        let _ = store.delete(k, 0).await;
    }
}

/// Frees what a deleted Service held.
pub async fn release(store: &dyn Store, svc: &Value) {
    let mut keys = Vec::new();
    if let Some(ip) = svc["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| ip.parse::<Ipv4Addr>().is_ok())
    {
        keys.push(format!("{IPS}{ip}"));
    }
    for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(port) = p["nodePort"].as_u64() {
            keys.push(format!("{PORTS}{port}"));
        }
    }
    release_keys(store, &keys).await;
}

fn invalid(res: &Resource, svc: &Value, field: &str, value: &str, detail: &str) -> ApiError {
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    ApiError::invalid(res, name, vec![Cause::invalid(field, value, detail)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn allocates_distinct_addresses_and_ports_and_frees_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = store::SqliteStore::open(dir.path().join("db")).unwrap();
        let r = ServiceRanges::parse("10.43.0.0/29").unwrap();
        let res = crate::catalog::Catalog::builtin()
            .lookup("", "v1", "services")
            .unwrap();
        let mut ips = Vec::new();
        for i in 0..5 {
            let mut svc = json!({"metadata": {"namespace": "d", "name": format!("s{i}")},
                "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
            r.allocate(s.as_ref(), &res, &mut svc).await.unwrap();
            let port = svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u32;
            assert!(NODE_PORTS.contains(&port));
            ips.push(svc);
        }
        // A /29 has 6 usable addresses, one kept for `kubernetes`: 5 Services fill it.
        let mut full = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(
            r.allocate(s.as_ref(), &res, &mut full)
                .await
                .unwrap_err()
                .code,
            500
        );
        let mut taken = json!({"metadata": {"name": "y"},
            "spec": {"clusterIP": ips[0]["spec"]["clusterIP"].clone()}});
        assert_eq!(
            r.allocate(s.as_ref(), &res, &mut taken)
                .await
                .unwrap_err()
                .code,
            422
        );
        let mut outside = json!({"metadata": {"name": "z"}, "spec": {"clusterIP": "10.99.0.1"}});
        assert_eq!(
            r.allocate(s.as_ref(), &res, &mut outside)
                .await
                .unwrap_err()
                .code,
            422
        );
        release(s.as_ref(), &ips[0]).await;
        let mut again = json!({"metadata": {"name": "w"}, "spec": {}});
        r.allocate(s.as_ref(), &res, &mut again).await.unwrap();
        assert_eq!(again["spec"]["clusterIP"], ips[0]["spec"]["clusterIP"]);
        let mut headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}});
        assert!(r
            .allocate(s.as_ref(), &res, &mut headless)
            .await
            .unwrap()
            .is_empty());
    }
}
