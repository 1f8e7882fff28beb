//! Garbage collection through ownerReferences, done by the API server when an owner is
//! deleted (until a garbage-collector controller exists): `propagationPolicy` Background
//! (the default: the owner goes at once, its dependents after), Foreground (the owner stays,
//! marked, with the `foregroundDeletion` finalizer until its dependents are gone) or Orphan
//! (`kubectl delete --cascade=orphan`: dependents lose the reference and stay).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use store::RangeRequest;

use crate::catalog::Resource;
use crate::keys;
use crate::meta;
use crate::objects::{decode_as, Objects};
use crate::status::ApiError;

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Background,
    Foreground,
    Orphan,
}

impl Policy {
    /// From DeleteOptions (`propagationPolicy`, or the older `orphanDependents`) or the
    /// query parameter of the same name.
    pub fn parse(body: &Value, query: Option<&str>) -> Result<Policy, ApiError> {
        let named = body["propagationPolicy"].as_str().or(query);
        match named {
            Some("Background") => Ok(Policy::Background),
            Some("Foreground") => Ok(Policy::Foreground),
            Some("Orphan") => Ok(Policy::Orphan),
            Some(other) => Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
            ))),
            None if body["orphanDependents"] == true => Ok(Policy::Orphan),
            None => Ok(Policy::Background),
        }
    }
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// Every object whose ownerReferences name `uid`. A namespaced owner's dependents can only
/// be in its namespace (upstream forbids the rest), so only that namespace is read; a
/// cluster-scoped owner's may be anywhere. Each delete still reads that scope once: a
/// garbage-collector controller with an owner index is what scales past that.
async fn dependents(
    objects: &Objects,
    uid: &str,
    namespace: &str,
) -> Result<Vec<(Arc<Resource>, Value)>, ApiError> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for res in objects.catalog.all() {
        let prefix = match (namespace.is_empty(), res.namespaced) {
            (true, _) => keys::collection_prefix(&res, None),
            (false, true) => keys::collection_prefix(&res, Some(namespace)),
            (false, false) => continue,
        };
        // Several versions of one resource share its storage.
        if !seen.insert(prefix.clone()) {
            continue;
        }
        let page = objects
            .store
            .range(RangeRequest {
                prefix,
                ..Default::default()
            })
            .await
            .map_err(|e| ApiError::from_store(&res, "", e))?;
        for kv in page.kvs {
            // Most objects never mention the uid: skip them without parsing.
            if !kv.value.windows(uid.len()).any(|w| w == uid.as_bytes()) {
                continue;
            }
            let obj = decode_as(&res, &kv)?;
            if owned_by(&obj, uid) {
                out.push((res.clone(), obj));
            }
        }
    }
    Ok(out)
}

/// Orphan: drops the reference to `owner`'s uid from every dependent.
pub async fn orphan(objects: &Objects, owner: &Value) -> Result<(), ApiError> {
    let uid = meta::uid(owner);
    for (res, dep) in dependents(objects, uid, meta::namespace(owner)).await? {
        let (ns, name) = (meta::namespace(&dep), meta::name(&dep));
        let r = objects
            .update(&res, ns, name, false, |mut obj| {
                if let Some(refs) = obj["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"] != uid);
                    if refs.is_empty() {
                        meta::meta_mut(&mut obj).remove("ownerReferences");
                    }
                }
                Ok(obj)
            })
            .await;
        match r {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes the dependents of the owner `uid` in `namespace` ("" for a cluster-scoped owner),
/// and theirs, with `policy` for each of them. Foreground returns only when they are gone;
/// Background does not wait for theirs.
pub fn delete_dependents(
    objects: Objects,
    uid: String,
    namespace: String,
    policy: Policy,
) -> Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send>> {
    Box::pin(async move {
        for (res, dep) in dependents(&objects, &uid, &namespace).await? {
            let (ns, name) = (meta::namespace(&dep), meta::name(&dep));
            match crate::delete::delete_with_policy(&objects, &res, ns, name, policy).await {
                Ok(()) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        if policy == Policy::Foreground {
            // Dependents held by finalizers of their own go when those are removed.
            for _ in 0..600 {
                if dependents(&objects, &uid, &namespace).await?.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    })
}

/// Background collection after `owner` is gone, logged rather than returned.
pub fn collect_in_background(objects: Objects, owner: &Value) {
    let uid = meta::uid(owner).to_string();
    let namespace = meta::namespace(owner).to_string();
    tokio::spawn(async move {
        if let Err(e) = delete_dependents(objects, uid.clone(), namespace, Policy::Background).await
        {
            tracing::warn!(
                "garbage collection of the dependents of {uid}: {}",
                e.message
            );
        }
    });
}

/// Foreground: deletes the dependents, then lets the marked owner go by removing its
/// `foregroundDeletion` finalizer.
pub fn finish_foreground(objects: Objects, res: Arc<Resource>, owner: Value) {
    tokio::spawn(async move {
        let uid = meta::uid(&owner).to_string();
        let namespace = meta::namespace(&owner).to_string();
        let deleted =
            delete_dependents(objects.clone(), uid.clone(), namespace, Policy::Foreground).await;
        if let Err(e) = deleted {
            tracing::warn!(
                "foreground deletion of the dependents of {uid}: {}",
                e.message
            );
            return;
        }
        let (ns, name) = (meta::namespace(&owner), meta::name(&owner));
        let r = objects
            .update(&res, ns, name, false, |mut obj| {
                if let Some(f) = obj["metadata"]["finalizers"].as_array_mut() {
                    f.retain(|f| f != FOREGROUND_FINALIZER);
                }
                Ok(obj)
            })
            .await;
        if let Err(e) = r
            .map(drop)
            .or_else(|e| if e.code == 404 { Ok(()) } else { Err(e) })
        {
            tracing::warn!("finish foreground deletion of {name}: {}", e.message);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policies_parse_like_upstream() {
        assert_eq!(Policy::parse(&json!({}), None).unwrap(), Policy::Background);
        assert_eq!(
            Policy::parse(&json!({"propagationPolicy": "Orphan"}), None).unwrap(),
            Policy::Orphan
        );
        assert_eq!(
            Policy::parse(&json!({}), Some("Foreground")).unwrap(),
            Policy::Foreground
        );
        assert_eq!(
            Policy::parse(&json!({"orphanDependents": true}), None).unwrap(),
            Policy::Orphan
        );
        assert_eq!(
            Policy::parse(&json!({}), Some("Sideways"))
                .unwrap_err()
                .code,
            400
        );
    }
}
