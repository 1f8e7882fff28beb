//! ResourceQuota: what an object counts against a quota (object counts, a Pod's requests
//! and limits, a claim's storage), the check of a create against `spec.hard` with
//! upstream's messages, and the quota's `status` (hard and used).
//!
//! Usage is recounted from the stored objects on each admission rather than trusted from
//! `status.used`: there is no quota controller yet, so this is how deletes are reconciled.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::limit_range::{container_resources, pod_total};
use super::quantity::{Format, Quantity};
use super::{quantities, validate_list, Resources};
use crate::catalog::Resource;
use crate::status::Cause;

/// Validation of a ResourceQuota: valid, non-negative quantities in `spec.hard`.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_list(&obj["spec"]["hard"], "spec.hard", &mut causes);
    causes
}

/// The names a quota may use to count objects of `res`: `count/<plural>[.<group>]`, and
/// for a few core kinds their legacy bare name.
fn count_names(res: &Resource) -> Vec<String> {
    let mut names = vec![if res.group.is_empty() {
        format!("count/{}", res.plural)
    } else {
        format!("count/{}.{}", res.plural, res.group)
    }];
    let legacy = [
        "pods",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    ];
    if res.group.is_empty() && legacy.contains(&res.plural.as_str()) {
        names.push(res.plural.clone());
    }
    names
}

/// Whether a Pod still counts: terminal pods release their quota, as upstream.
fn pod_counts(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

fn put(usage: &mut Resources, key: &str, q: Quantity) {
    let sum = usage.get(key).map_or(q, |u| u.add(&q));
    usage.insert(key.to_string(), sum);
}

/// What one object of `res` counts against a quota, by every name it may be counted under.
pub fn usage(res: &Resource, obj: &Value) -> Resources {
    let mut usage = Resources::new();
    let is_pod = res.group.is_empty() && res.kind == "Pod";
    if is_pod && !pod_counts(obj) {
        return usage;
    }
    for name in count_names(res) {
        put(&mut usage, &name, Quantity::from_int(1));
    }
    if is_pod {
        let overhead = quantities(&obj["spec"]["overhead"]);
        for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
            let mut total = pod_total(obj, field);
            for (k, v) in &overhead {
                put(&mut total, k, *v);
            }
            for (k, v) in total {
                put(&mut usage, &format!("{prefix}{k}"), v);
                // Bare `cpu`, `memory`, ... mean requests; hugepages only have requests.
                if field == "requests" && !k.contains('/') {
                    put(&mut usage, &k, v);
                }
            }
        }
    }
    if res.group.is_empty() && res.kind == "Service" {
        let kind = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
        let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len) as i64;
        if kind == "LoadBalancer" {
            put(&mut usage, "services.loadbalancers", Quantity::from_int(1));
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            put(&mut usage, "services.nodeports", Quantity::from_int(ports));
        }
    }
    if res.group.is_empty() && res.kind == "PersistentVolumeClaim" {
        let storage = quantities(&obj["spec"]["resources"]["requests"]).remove("storage");
        let class = obj["spec"]["storageClassName"].as_str().unwrap_or("");
        if let Some(s) = storage {
            put(&mut usage, "requests.storage", s);
            if !class.is_empty() {
                put(
                    &mut usage,
                    &format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                    s,
                );
            }
        }
        if !class.is_empty() {
            put(
                &mut usage,
                &format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
                Quantity::from_int(1),
            );
        }
    }
    usage
}

/// The resource (plural, group) whose objects a quota name counts.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        let (plural, group) = rest.split_once('.').unwrap_or((rest, ""));
        return Some((plural.to_string(), group.to_string()));
    }
    let core = |p: &str| Some((p.to_string(), String::new()));
    match name {
        "pods"
        | "services"
        | "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => core(name),
        "services.loadbalancers" | "services.nodeports" => core("services"),
        "requests.storage" => core("persistentvolumeclaims"),
        n if n.contains(".storageclass.storage.k8s.io/") => core("persistentvolumeclaims"),
        _ => core("pods"),
    }
}

/// Whether a quota's `spec.scopes` select `obj` (scopes only ever select Pods). A quota
/// with a `scopeSelector` is not enforced yet: it selects nothing.
pub fn selects(quota: &Value, res: &Resource, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if quota["spec"]["scopeSelector"].is_object() {
        return false;
    }
    if scopes.is_empty() {
        return true;
    }
    if !(res.group.is_empty() && res.kind == "Pod") {
        return false;
    }
    let best_effort = ["containers", "initContainers"].iter().all(|list| {
        obj["spec"][list].as_array().into_iter().flatten().all(|c| {
            let (req, lim) = container_resources(c);
            req.is_empty() && lim.is_empty()
        })
    });
    let terminating = obj["spec"]["activeDeadlineSeconds"].is_number();
    scopes.iter().all(|s| match *s {
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        _ => false,
    })
}

/// Upstream's "must specify" constraint: a quota on cpu or memory requires every
/// container to state them.
pub fn constraints(hard: &Resources, pod: &Value) -> Result<(), String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: BTreeSet<&str> = VALIDATED
        .into_iter()
        .filter(|r| hard.contains_key(*r))
        .collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let (req, lim) = container_resources(c);
            for r in &required {
                let (field, name) = match r.split_once('.') {
                    Some(("limits", n)) => (&lim, n),
                    Some((_, n)) => (&req, n),
                    None => (&req, *r),
                };
                if !field.contains_key(name) {
                    let c = c["name"].as_str().unwrap_or("").to_string();
                    missing.entry(r).or_default().insert(c);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, cs)| {
            format!(
                "{r} for: {}",
                cs.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// `k=v,k=v` sorted by name, as upstream's `prettyPrint`.
fn pretty(list: &Resources) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The check of one quota: `used` (without the new object) plus `delta` against `hard`.
/// Only names the object adds to are checked, as upstream.
pub fn check(
    name: &str,
    hard: &Resources,
    used: &Resources,
    delta: &Resources,
) -> Result<(), String> {
    let (mut requested, mut failed_used, mut failed_hard) =
        (Resources::new(), Resources::new(), Resources::new());
    for (k, limit) in hard {
        let Some(d) = delta.get(k).filter(|d| !d.is_zero()) else {
            continue;
        };
        let u = used
            .get(k)
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSI));
        if u.add(d) > *limit {
            requested.insert(k.clone(), *d);
            failed_used.insert(k.clone(), u);
            failed_hard.insert(k.clone(), *limit);
        }
    }
    if requested.is_empty() {
        return Ok(());
    }
    Err(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        pretty(&requested),
        pretty(&failed_used),
        pretty(&failed_hard)
    ))
}

/// The quota's `status`: `hard` as in the spec (canonical), `used` for each hard name.
pub fn status(hard: &Resources, used: &Resources) -> Value {
    let canon = |l: &Resources| -> serde_json::Map<String, Value> {
        l.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect()
    };
    let used: Resources = hard
        .keys()
        .map(|k| {
            let u = used
                .get(k)
                .copied()
                .unwrap_or(Quantity::zero(Format::DecimalSI));
            (k.clone(), u)
        })
        .collect();
    json!({"hard": canon(hard), "used": canon(&used)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pods_count_their_requests_limits_and_themselves() {
        let c = Catalog::builtin();
        let pods = c.lookup("", "v1", "pods").unwrap();
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}});
        let u = usage(&pods, &pod);
        assert_eq!(u["pods"], q("1"));
        assert_eq!(u["count/pods"], q("1"));
        assert_eq!(u["requests.cpu"], q("2"));
        assert_eq!(u["cpu"], q("2"));
        assert_eq!(u["requests.memory"].to_string(), "128Mi");
        assert_eq!(u["limits.cpu"], q("500m"));
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage(&pods, &done).is_empty());
        let deploy = c.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(
            usage(&deploy, &json!({})).keys().collect::<Vec<_>>(),
            ["count/deployments.apps"]
        );
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("deployments".into(), "apps".into()))
        );
        assert_eq!(
            counted_resource("limits.memory"),
            Some(("pods".into(), "".into()))
        );
    }

    #[test]
    fn checks_read_like_upstream() {
        let hard: Resources = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("1")),
        ]
        .into();
        let used: Resources = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("500m")),
        ]
        .into();
        let delta: Resources = [
            ("pods".to_string(), q("1")),
            ("requests.cpu".to_string(), q("500m")),
        ]
        .into();
        assert_eq!(
            check("q1", &hard, &used, &delta).unwrap_err(),
            "exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let delta: Resources = [("requests.cpu".to_string(), q("600m"))].into();
        assert_eq!(
            check("q1", &hard, &used, &delta).unwrap_err(),
            "exceeded quota: q1, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        let pod = json!({"spec": {"containers": [{"name": "c1"}, {"name": "c2", "resources": {"limits": {"cpu": "1"}}}]}});
        let hard: Resources = [
            ("limits.cpu".to_string(), q("2")),
            ("memory".to_string(), q("1Gi")),
        ]
        .into();
        assert_eq!(
            constraints(&hard, &pod).unwrap_err(),
            "must specify limits.cpu for: c1; memory for: c1,c2"
        );
        let s = status(&hard, &Resources::new());
        assert_eq!(s["used"], json!({"limits.cpu": "0", "memory": "0"}));
        assert_eq!(s["hard"]["memory"], "1Gi");
    }

    #[test]
    fn scopes_select_pods() {
        let c = Catalog::builtin();
        let pods = c.lookup("", "v1", "pods").unwrap();
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        assert!(selects(
            &quota,
            &pods,
            &json!({"spec": {"containers": [{"name": "a"}]}})
        ));
        let burst = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(!selects(&quota, &pods, &burst));
        let cms = c.lookup("", "v1", "configmaps").unwrap();
        assert!(!selects(&quota, &cms, &json!({})));
        assert!(selects(&json!({"spec": {}}), &cms, &json!({})));
    }
}
