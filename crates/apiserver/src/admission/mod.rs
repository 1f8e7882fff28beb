//! Admission, as kube-apiserver's built-in plugins do it, between validation and storage:
//! LimitRanger (defaults, then min/max), Pod Security Admission, and ResourceQuota.
//! Creates go through [`admit_create`]; updates of Pods (and of LimitRanges and
//! ResourceQuotas) through [`UpdateCheck`].
//!
//! Quota charging is serialized per namespace inside this process: the lock taken in
//! [`admit_create`] is held (in [`Admitted`]) until the object is stored, so two racing
//! creates cannot both pass. The quota's `status` is written with the store's
//! compare-and-swap, re-checking against the latest `spec.hard`.

mod limit_range;
mod pod_security;
mod quantity;
mod resource_quota;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{json, Map, Value};
use tokio::sync::OwnedMutexGuard;

use crate::catalog::Resource;
use crate::meta;
use crate::objects::{ListOptions, Objects};
use crate::rest::{AppState, Call};
use crate::status::{ApiError, Cause};

pub use quantity::Quantity;

/// A resource list (`{cpu: 500m, memory: 1Gi}`), parsed.
pub type Resources = BTreeMap<String, Quantity>;

/// A quantity written as a string, or as a bare YAML/JSON number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The valid quantities of a resource list (invalid ones are refused by validation).
pub fn quantities(list: &Value) -> Resources {
    list.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&quantity_text(v)?).ok()?)))
        .collect()
}

/// Causes for the invalid or negative quantities of the resource list at `path`.
pub fn validate_list(list: &Value, path: &str, causes: &mut Vec<Cause>) {
    for (k, v) in list.as_object().into_iter().flatten() {
        let field = format!("{path}[{k}]");
        let text = quantity_text(v).unwrap_or_else(|| v.to_string());
        match Quantity::parse(&text) {
            Err(e) => causes.push(Cause::invalid(&field, &text, &e.to_string())),
            Ok(q) if q.is_negative() => causes.push(Cause::invalid(
                &field,
                &text,
                "must be greater than or equal to 0",
            )),
            Ok(_) => {}
        }
    }
}

/// Rewrites the quantities of a resource list in canonical form, as upstream stores them.
fn canonicalize(list: &mut Value) {
    for v in list
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        if let Some(q) = quantity_text(v).and_then(|t| Quantity::parse(&t).ok()) {
            *v = json!(q.to_string());
        }
    }
}

fn is_core(res: &Resource, kind: &str) -> bool {
    res.group.is_empty() && res.kind == kind
}

/// 403 `pods "x" is forbidden: ...`, named as upstream names an object being admitted
/// (by its generateName when the name is generated).
fn forbidden(res: &Resource, obj: &Value, why: &str) -> ApiError {
    let generate = meta::str_field(obj, "generateName");
    let name = match meta::name(obj) {
        n if !generate.is_empty() && n.starts_with(generate) => generate,
        n => n,
    };
    let mut e = ApiError::forbidden(format!("{} {name:?} is forbidden: {why}", res.qualified()));
    e.details = Some(json!({"name": name, "kind": res.plural}));
    e
}

/// Upstream's aggregate error text: one message alone, several in brackets.
fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        _ => format!("[{}]", errs.join(", ")),
    }
}

async fn list_all(objects: &Objects, res: &Resource, ns: &str) -> Result<Vec<Value>, ApiError> {
    Ok(objects.list(res, ns, &ListOptions::default()).await?.items)
}

fn core(objects: &Objects, plural: &str) -> Result<Arc<Resource>, ApiError> {
    objects
        .catalog
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("the {plural} resource is not registered")))
}

async fn namespace_labels(objects: &Objects, ns: &str) -> Result<Map<String, Value>, ApiError> {
    let res = core(objects, "namespaces")?;
    let obj = objects.get_opt(&res, "", ns).await?;
    Ok(obj
        .and_then(|o| o["metadata"]["labels"].as_object().cloned())
        .unwrap_or_default())
}

/// The pod template of a workload, for PodSecurity warnings.
fn template(res: &Resource, obj: &Value) -> Option<(Value, Value)> {
    let t = match (res.group.as_str(), res.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => &obj["spec"]["template"],
        ("batch", "CronJob") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        ("", "PodTemplate") => &obj["template"],
        _ => return None,
    };
    Some((t["metadata"].clone(), t["spec"].clone()))
}

/// What an admitted create carries to its response: warnings, and the namespace's quota
/// lock until the object is stored.
pub struct Admitted {
    warnings: Vec<String>,
    _quota_lock: Option<OwnedMutexGuard<()>>,
}

impl Admitted {
    /// Adds the warnings as `Warning: 299 - "..."` headers, as upstream.
    pub fn respond(&self, mut response: Response) -> Response {
        for w in &self.warnings {
            let text = w.replace('\\', "\\\\").replace('"', "\\\"");
            if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
                response.headers_mut().append("warning", v);
            }
        }
        response
    }
}

/// Upstream's Pod defaulting that admission depends on: a limit without a request sets
/// the request. Quantities are stored canonical.
fn default_pod(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let res = &mut c["resources"];
            if let Some(limits) = res["limits"].as_object().cloned() {
                if !res["requests"].is_object() {
                    res["requests"] = json!({});
                }
                for (k, v) in limits {
                    res["requests"]
                        .as_object_mut()
                        .map(|r| r.entry(k).or_insert(v));
                }
            }
            if res.is_object() {
                canonicalize(&mut res["requests"]);
                canonicalize(&mut res["limits"]);
            }
        }
    }
}

/// Admits a new object before it is stored: may default it (LimitRange defaults, a
/// quota's status), refuses it (403 or 422), and returns the warnings. A dry run writes
/// nothing.
pub async fn admit_create(
    state: &AppState,
    call: &Call,
    obj: &mut Value,
) -> Result<Admitted, ApiError> {
    let res = &call.res;
    let objects = &state.objects;
    let ns = call.req.namespace.as_str();
    let mut warnings = Vec::new();
    if is_core(res, "LimitRange") {
        let causes = limit_range::validate(obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, meta::name(obj), causes));
        }
        limit_range::default_object(obj);
    }
    if is_core(res, "ResourceQuota") {
        let causes = resource_quota::validate(obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(res, meta::name(obj), causes));
        }
        canonicalize(&mut obj["spec"]["hard"]);
    }
    if is_core(res, "Pod") {
        default_pod(obj);
        let ranges = list_all(objects, &*core(objects, "limitranges")?, ns).await?;
        if let Err(errs) = limit_range::admit_pod(obj, &ranges) {
            return Err(forbidden(res, obj, &aggregate(&errs)));
        }
    }
    let pod = if is_core(res, "Pod") {
        Some((obj["metadata"].clone(), obj["spec"].clone()))
    } else {
        template(res, obj)
    };
    if let Some((pod_meta, spec)) = pod {
        let policy = pod_security::policy(&namespace_labels(objects, ns).await?);
        if is_core(res, "Pod") {
            let found = pod_security::check(policy.enforce.level, &pod_meta, &spec);
            if !found.is_empty() {
                let why = format!(
                    "violates PodSecurity \"{}\": {}",
                    policy.enforce,
                    pod_security::describe(&found)
                );
                return Err(forbidden(res, obj, &why));
            }
        }
        // Workloads are only warned about: their pods are refused when they are created.
        let found = pod_security::check(policy.warn.level, &pod_meta, &spec);
        if !found.is_empty() {
            warnings.push(format!(
                "would violate PodSecurity \"{}\": {}",
                policy.warn,
                pod_security::describe(&found)
            ));
        }
    }
    let quota_lock = if res.namespaced && res.stored {
        admit_quota(objects, res, ns, obj, call.params.dry_run()?).await?
    } else {
        None
    };
    Ok(Admitted {
        warnings,
        _quota_lock: quota_lock,
    })
}

/// One lock per store and namespace: quota admissions in a namespace take turns.
fn namespace_lock(objects: &Objects, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = HashMap<(usize, String), Arc<tokio::sync::Mutex<()>>>;
    static LOCKS: LazyLock<Mutex<Locks>> = LazyLock::new(Default::default);
    let store = Arc::as_ptr(&objects.store) as *const u8 as usize;
    let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry((store, ns.to_string())).or_default().clone()
}

/// The usage of `quota`'s hard names in `ns`, recounted from the stored objects.
async fn recount(
    objects: &Objects,
    ns: &str,
    quota: &Value,
    hard: &Resources,
) -> Result<Resources, ApiError> {
    let mut by_resource: BTreeMap<(String, String), Vec<&String>> = BTreeMap::new();
    for name in hard.keys() {
        if let Some(r) = resource_quota::counted_resource(name) {
            by_resource.entry(r).or_default().push(name);
        }
    }
    let mut used = Resources::new();
    for ((plural, group), names) in by_resource {
        let Some(res) = objects
            .catalog
            .all()
            .into_iter()
            .find(|r| r.plural == plural && r.group == group && r.stored && r.namespaced)
        else {
            continue;
        };
        for obj in list_all(objects, &res, ns).await? {
            if !resource_quota::selects(quota, &res, &obj) {
                continue;
            }
            let usage = resource_quota::usage(&res, &obj);
            for name in &names {
                if let Some(q) = usage.get(*name) {
                    let sum = used.get(*name).map_or(*q, |u| u.add(q));
                    used.insert((*name).clone(), sum);
                }
            }
        }
    }
    Ok(used)
}

fn plus(used: &Resources, delta: &Resources) -> Resources {
    let mut out = used.clone();
    for (k, d) in delta {
        let sum = out.get(k).map_or(*d, |u| u.add(d));
        out.insert(k.clone(), sum);
    }
    out
}

/// ResourceQuota admission of a create of `obj`, a `res`: refuses it when a quota in the
/// namespace would be exceeded, else charges the quotas' `status.used`. A new quota
/// gets its status here.
async fn admit_quota(
    objects: &Objects,
    res: &Resource,
    ns: &str,
    obj: &mut Value,
    dry_run: bool,
) -> Result<Option<OwnedMutexGuard<()>>, ApiError> {
    let quota_res = core(objects, "resourcequotas")?;
    let is_quota = is_core(res, "ResourceQuota");
    if !is_quota && list_all(objects, &quota_res, ns).await?.is_empty() {
        return Ok(None);
    }
    let guard = namespace_lock(objects, ns).lock_owned().await;
    let delta = resource_quota::usage(res, obj);
    let mut charges = Vec::new();
    for quota in list_all(objects, &quota_res, ns).await? {
        if !resource_quota::selects(&quota, res, obj) {
            continue;
        }
        let name = meta::name(&quota).to_string();
        let hard = quantities(&quota["spec"]["hard"]);
        if is_core(res, "Pod") {
            resource_quota::constraints(&hard, obj)
                .map_err(|e| forbidden(res, obj, &format!("failed quota: {name}: {e}")))?;
        }
        if !hard
            .keys()
            .any(|k| delta.get(k).is_some_and(|d| !d.is_zero()))
        {
            continue;
        }
        let used = recount(objects, ns, &quota, &hard).await?;
        resource_quota::check(&name, &hard, &used, &delta).map_err(|e| forbidden(res, obj, &e))?;
        charges.push((name, used));
    }
    if is_quota {
        let hard = quantities(&obj["spec"]["hard"]);
        let mut used = recount(objects, ns, obj, &hard).await?;
        if resource_quota::selects(obj, res, obj) {
            used = plus(&used, &delta);
        }
        obj["status"] = resource_quota::status(&hard, &used);
    }
    if dry_run {
        return Ok(Some(guard));
    }
    for (name, used) in charges {
        // Compare-and-swap on the quota: a concurrent change of its hard limits is seen.
        objects
            .update(&quota_res, ns, &name, false, |mut quota| {
                let hard = quantities(&quota["spec"]["hard"]);
                resource_quota::check(&name, &hard, &used, &delta)
                    .map_err(|e| forbidden(res, obj, &e))?;
                quota["status"] = resource_quota::status(&hard, &plus(&used, &delta));
                Ok(quota)
            })
            .await?;
    }
    Ok(Some(guard))
}

/// Admission of updates: PodSecurity for Pods, validation and status upkeep for
/// LimitRanges and ResourceQuotas. Built before the update's read-modify-write loop
/// (it reads the namespace), applied inside it.
pub struct UpdateCheck {
    policy: Option<pod_security::Policy>,
}

impl UpdateCheck {
    pub async fn prepare(objects: &Objects, call: &Call) -> Result<UpdateCheck, ApiError> {
        let policy = if is_core(&call.res, "Pod") && call.req.subresource.is_empty() {
            Some(pod_security::policy(
                &namespace_labels(objects, &call.req.namespace).await?,
            ))
        } else {
            None
        };
        Ok(UpdateCheck { policy })
    }

    pub fn check(&self, call: &Call, old: &Value, new: &mut Value) -> Result<(), ApiError> {
        let res = &call.res;
        if !call.req.subresource.is_empty() {
            return Ok(());
        }
        if is_core(res, "LimitRange") {
            let causes = limit_range::validate(new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(res, meta::name(new), causes));
            }
            limit_range::default_object(new);
        }
        if is_core(res, "ResourceQuota") {
            let causes = resource_quota::validate(new);
            if !causes.is_empty() {
                return Err(ApiError::invalid(res, meta::name(new), causes));
            }
            canonicalize(&mut new["spec"]["hard"]);
            // The quota controller's job upstream: status.hard follows the spec; usage of
            // new names is counted at the next admission in the namespace.
            let hard = quantities(&new["spec"]["hard"]);
            new["status"] = resource_quota::status(&hard, &quantities(&old["status"]["used"]));
        }
        if let Some(policy) = &self.policy {
            // Upstream re-evaluates only updates that can change what the pod runs.
            let changed = old["spec"] != new["spec"]
                || old["metadata"]["annotations"] != new["metadata"]["annotations"];
            let found = pod_security::check(policy.enforce.level, &new["metadata"], &new["spec"]);
            if changed && !found.is_empty() {
                let why = format!(
                    "violates PodSecurity \"{}\": {}",
                    policy.enforce,
                    pod_security::describe(&found)
                );
                return Err(forbidden(res, new, &why));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_limits_default_requests_and_quantities_become_canonical() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "resources": {
            "limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"memory": 1073741824}}}]}});
        default_pod(&mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1073741824"}})
        );
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }
}
