//! Requests answered without storing anything: SelfSubjectAccessReview (`kubectl auth
//! can-i`, answered by the configured authorizer, so the answer is the one a real request
//! would get), SelfSubjectReview (`kubectl auth whoami`) and TokenRequest (`kubectl create
//! token`: a signed ServiceAccount token).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::Decision;
use crate::meta;
use crate::request::decode_object;
use crate::request_info::{RequestInfo, ResourceRequest};
use crate::rest::{check_type, AppState, Call};
use crate::status::{json_response, ApiError, Cause};

pub async fn create(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let res = &call.res;
    let mut review = decode_object(&call.headers, &body)?;
    check_type(res, &mut review)?;
    let user = call.user.clone().ok_or_else(ApiError::unauthorized)?;
    match (res.group.as_str(), res.kind.as_str()) {
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {}
        ("authentication.k8s.io", "SelfSubjectReview") => {
            review["metadata"] = json!({"creationTimestamp": null});
            review["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
            return Ok(json_response(StatusCode::CREATED, &review));
        }
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    }
    let request = review_request(&review["spec"])?;
    let status = match state.authorizer.authorize(&user, &request).await {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny(reason) => json!({"allowed": false, "reason": reason}),
    };
    review["status"] = status;
    review["metadata"] = json!({"creationTimestamp": null});
    Ok(json_response(StatusCode::CREATED, &review))
}

/// The request a review's spec describes.
fn review_request(spec: &Value) -> Result<RequestInfo, ApiError> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Ok(RequestInfo::Resource(ResourceRequest {
            verb: s(r, "verb"),
            group: s(r, "group"),
            version: s(r, "version"),
            namespace: s(r, "namespace"),
            resource: s(r, "resource"),
            name: s(r, "name"),
            subresource: s(r, "subresource"),
        }));
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        return Ok(RequestInfo::NonResource {
            verb: s(n, "verb"),
            path: s(n, "path"),
        });
    }
    Err(ApiError::bad_request(
        "exactly one of spec.resourceAttributes and spec.nonResourceAttributes must be set",
    ))
}

/// Shortest token lifetime upstream accepts.
const MIN_EXPIRATION: u64 = 600;
/// Lifetime when the request names none.
const DEFAULT_EXPIRATION: u64 = 3600;

/// `POST serviceaccounts/{name}/token`: a token for that ServiceAccount, optionally bound
/// to a Pod or Node.
pub async fn token_request(
    state: &AppState,
    call: &Call,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let (ns, name) = (call.req.namespace.as_str(), call.req.name.as_str());
    let mut request = decode_object(&call.headers, &body)?;
    match (request["apiVersion"].as_str(), request["kind"].as_str()) {
        (None | Some("authentication.k8s.io/v1"), None | Some("TokenRequest")) => {}
        _ => {
            return Err(ApiError::bad_request(
                "the body must be an authentication.k8s.io/v1 TokenRequest",
            ))
        }
    }
    let sa = state.objects.get(&call.res, ns, name).await?;
    let spec = &request["spec"];
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = state.audiences.iter().take(1).cloned().collect();
    }
    let seconds = spec["expirationSeconds"]
        .as_u64()
        .unwrap_or(DEFAULT_EXPIRATION);
    if seconds < MIN_EXPIRATION {
        return Err(ApiError::invalid(
            &call.res,
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &seconds.to_string(),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let bound = &spec["boundObjectRef"];
    let object_ref = || pki::ObjectRef {
        name: bound["name"].as_str().unwrap_or("").to_string(),
        uid: bound["uid"].as_str().unwrap_or("").to_string(),
    };
    let (pod, node) = match bound["kind"].as_str() {
        Some("Pod") => (Some(object_ref()), None),
        Some("Node") => (None, Some(object_ref())),
        None | Some("") => (None, None),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "tokens cannot be bound to a {other}; only Pod and Node are supported"
            )))
        }
    };
    let now = std::time::SystemTime::now();
    let token = state
        .pki
        .service_accounts()
        .issue(
            &pki::TokenRequest {
                namespace: ns.to_string(),
                service_account: pki::ObjectRef {
                    name: name.to_string(),
                    uid: meta::uid(&sa).to_string(),
                },
                audiences: audiences.clone(),
                expiration: std::time::Duration::from_secs(seconds),
                pod,
                node,
            },
            now,
        )
        .map_err(|e| ApiError::internal(format!("issue token: {e}")))?;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(seconds as i64);
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(seconds);
    request["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    Ok(json_response(StatusCode::CREATED, &request))
}
