//! The LimitRanger admission plugin: `type: Container` defaults fill in missing requests
//! and limits of a new Pod's containers, then every LimitRange's min, max and
//! maxLimitRequestRatio (per Container and, summed, per Pod) are enforced with upstream's
//! messages.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::quantity::Quantity;
use super::{quantities, validate_list, Resources};
use crate::status::Cause;

/// Upstream's `SetDefaults_LimitRangeItem` for one `spec.limits[]` item: for containers a
/// missing default limit is the max, a missing default request the default limit, else
/// the min.
pub fn default_item(item: &mut Value) {
    if item["type"] != "Container" {
        return;
    }
    let Some(m) = item.as_object_mut() else {
        return;
    };
    for field in ["default", "defaultRequest"] {
        if !m.get(field).is_some_and(Value::is_object) {
            m.insert(field.into(), json!({}));
        }
    }
    for (from, to) in [
        ("max", "default"),
        ("default", "defaultRequest"),
        ("min", "defaultRequest"),
    ] {
        let source = m.get(from).and_then(Value::as_object).cloned();
        for (k, v) in source.into_iter().flatten() {
            if let Some(target) = m.get_mut(to).and_then(Value::as_object_mut) {
                target.entry(k).or_insert(v);
            }
        }
    }
}

/// Defaults (as upstream's decoding does) a LimitRange being created or updated.
pub fn default_object(obj: &mut Value) {
    if let Some(items) = obj["spec"]["limits"].as_array_mut() {
        items.iter_mut().for_each(default_item);
    }
}

/// Validation of a LimitRange: a type, and valid, non-negative quantities.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(items) = obj["spec"]["limits"].as_array() else {
        return vec![Cause::required("spec.limits", "")];
    };
    for (i, item) in items.iter().enumerate() {
        if item["type"].as_str().unwrap_or("").is_empty() {
            causes.push(Cause::required(&format!("spec.limits[{i}].type"), ""));
        }
        for field in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            validate_list(
                &item[field],
                &format!("spec.limits[{i}].{field}"),
                &mut causes,
            );
        }
    }
    causes
}

/// One parsed `spec.limits[]` item.
struct Item {
    kind: String,
    max: Resources,
    min: Resources,
    default: Resources,
    default_request: Resources,
    ratio: Resources,
}

fn items(range: &Value) -> Vec<Item> {
    let mut out = Vec::new();
    for item in range["spec"]["limits"].as_array().into_iter().flatten() {
        let mut item = item.clone();
        default_item(&mut item);
        out.push(Item {
            kind: item["type"].as_str().unwrap_or("").to_string(),
            max: quantities(&item["max"]),
            min: quantities(&item["min"]),
            default: quantities(&item["default"]),
            default_request: quantities(&item["defaultRequest"]),
            ratio: quantities(&item["maxLimitRequestRatio"]),
        });
    }
    out
}

/// Fills in missing container requests and limits from the ranges' Container defaults
/// and records what was set in the `kubernetes.io/limit-ranger` annotation.
fn apply_defaults(pod: &mut Value, ranges: &[Value]) {
    let (mut requests, mut limits) = (BTreeMap::new(), BTreeMap::new());
    for range in ranges {
        for item in items(range).into_iter().filter(|i| i.kind == "Container") {
            requests.extend(item.default_request);
            limits.extend(item.default);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, prefix) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or("").to_string();
            for (field, defaults, what) in [
                ("requests", &requests, "request"),
                ("limits", &limits, "limit"),
            ] {
                let mut set = Vec::new();
                for (k, v) in defaults {
                    let res = &mut c["resources"];
                    if !res[field].is_object() {
                        res[field] = json!({});
                    }
                    if res[field].get(k).is_none() {
                        res[field][k] = json!(v.to_string());
                        set.push(k.as_str());
                    }
                }
                if !set.is_empty() {
                    notes.push(format!("{} {what} for {prefix} {name}", set.join(", ")));
                }
            }
        }
    }
    if !notes.is_empty() {
        let meta = crate::meta::meta_mut(pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        annotations["kubernetes.io/limit-ranger"] =
            json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
}

fn min_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let Some(r) = req.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if r < enforced {
        return Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but request is {r}"
        ));
    }
    match lim.get(name) {
        Some(l) if l < enforced => Some(format!(
            "minimum {name} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let Some(l) = lim.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l > enforced {
        return Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(name) {
        Some(r) if r > enforced => Some(format!(
            "maximum {name} usage per {kind} is {enforced}, but request is {r}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    name: &str,
    enforced: &Quantity,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let Some(r) = req.get(name).filter(|r| !r.is_zero()) else {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"));
    };
    let Some(l) = lim.get(name).filter(|l| !l.is_zero()) else {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"));
    };
    let observed = l.ratio(r);
    // Compared in thousandths, as upstream does for ratios that fit.
    if (observed * 1000.0).round() as i128 > enforced.milli_value() {
        return Some(format!("{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"));
    }
    None
}

fn check(kind: &str, item: &Item, req: &Resources, lim: &Resources, errs: &mut Vec<String>) {
    for (name, q) in &item.min {
        errs.extend(min_constraint(kind, name, q, req, lim));
    }
    for (name, q) in &item.max {
        errs.extend(max_constraint(kind, name, q, req, lim));
    }
    for (name, q) in &item.ratio {
        errs.extend(ratio_constraint(kind, name, q, req, lim));
    }
}

/// A container's requests and limits.
pub fn container_resources(c: &Value) -> (Resources, Resources) {
    (
        quantities(&c["resources"]["requests"]),
        quantities(&c["resources"]["limits"]),
    )
}

/// A Pod's total: the containers' sum, or an init container's if that is larger (init
/// containers run one at a time, before the others).
pub fn pod_total(pod: &Value, field: &str) -> Resources {
    let mut total = Resources::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (k, v) in quantities(&c["resources"][field]) {
            let sum = total.get(&k).map_or(v, |t| t.add(&v));
            total.insert(k, sum);
        }
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (k, v) in quantities(&c["resources"][field]) {
            if total.get(&k).is_none_or(|t| *t < v) {
                total.insert(k, v);
            }
        }
    }
    total
}

/// Defaults then checks a new Pod against the namespace's LimitRanges; the error is the
/// list of violations, in upstream's words.
pub fn admit_pod(pod: &mut Value, ranges: &[Value]) -> Result<(), Vec<String>> {
    apply_defaults(pod, ranges);
    let mut errs = Vec::new();
    for range in ranges {
        for item in items(range) {
            match item.kind.as_str() {
                "Container" => {
                    for list in ["containers", "initContainers"] {
                        for c in pod["spec"][list].as_array().into_iter().flatten() {
                            let (req, lim) = container_resources(c);
                            check("Container", &item, &req, &lim, &mut errs);
                        }
                    }
                }
                "Pod" => {
                    let (req, lim) = (pod_total(pod, "requests"), pod_total(pod, "limits"));
                    check("Pod", &item, &req, &lim, &mut errs);
                }
                _ => {}
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"kind": "LimitRange", "spec": {"limits": limits}})
    }

    #[test]
    fn container_defaults_fill_only_what_is_missing() {
        let lr = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"},
            "defaultRequest": {"cpu": "250m"}}]));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {}},
            {"name": "b", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}}}]}});
        admit_pod(&mut pod, &[lr]).unwrap();
        let a = &pod["spec"]["containers"][0]["resources"];
        // defaultRequest memory defaults to the default limit.
        assert_eq!(a["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
        assert_eq!(a["requests"], json!({"cpu": "250m", "memory": "128Mi"}));
        let b = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(b["limits"], json!({"cpu": "1", "memory": "128Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b"
        );
    }

    #[test]
    fn min_max_and_ratio_use_upstream_words() {
        let lr = range(json!([
            {"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"},
             "maxLimitRequestRatio": {"cpu": "2"}},
            {"type": "Pod", "max": {"cpu": "3"}}]));
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "32Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]}});
        let errs = admit_pod(&mut pod, &[lr]).unwrap_err();
        assert_eq!(
            errs,
            [
                "minimum memory usage per Container is 64Mi, but request is 32Mi",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
                "maximum cpu usage per Pod is 3, but limit is 4",
            ]
        );
        // The defaulted max becomes the default limit, so an empty container passes max.
        let lr = range(json!([{"type": "Container", "max": {"cpu": "1"}}]));
        let mut pod = json!({"spec": {"containers": [{"name": "a"}]}});
        admit_pod(&mut pod, &[lr]).unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
    }

    #[test]
    fn invalid_quantities_are_causes() {
        let lr =
            range(json!([{"type": "Container", "max": {"cpu": "lots"}, "min": {"cpu": "-1"}}]));
        let causes = validate(&lr);
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[0].field, "spec.limits[0].max[cpu]");
    }
}
