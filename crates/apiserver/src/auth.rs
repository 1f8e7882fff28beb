//! Who is asking (authentication) and whether they may (authorization).
//!
//! Authentication, in upstream's order: a client certificate verified by the TLS handshake
//! (CN = user, O = groups), then a bearer ServiceAccount token signed by the cluster's key;
//! no credentials at all is anonymous, which only the health and version endpoints accept.
//! A bad token is 401 even when a certificate would have been fine, as upstream does.
//!
//! Authorization is behind the [`Authorizer`] trait so that RBAC can replace the first
//! policy, [`AllowMasters`], without touching the handlers.

use std::time::SystemTime;

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::request_info::RequestInfo;
use crate::status::ApiError;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

pub const MASTERS: &str = "system:masters";
pub const AUTHENTICATED: &str = "system:authenticated";

/// The client certificate identity of a connection, put in each request's extensions by
/// the connection layer (`None`: the client presented no certificate).
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<pki::Identity>);

/// Paths anonymous clients may read (upstream's `system:public-info-viewer`).
pub fn is_public_path(path: &str) -> bool {
    let base = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    base("/healthz") || base("/livez") || base("/readyz") || path == "/version"
}

/// Checks credentials: the certificate identity first, then `Authorization: Bearer`.
/// `Ok(None)` is anonymous. The ServiceAccount a token names is checked to still exist
/// (with the same uid) by `account_exists`.
pub async fn authenticate<F, Fut>(
    peer: &PeerIdentity,
    headers: &HeaderMap,
    tokens: &pki::ServiceAccountTokens,
    audiences: &[String],
    account_exists: F,
) -> Result<Option<User>, ApiError>
where
    F: FnOnce(String, String, String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(id) = &peer.0 {
        let mut groups = id.groups.clone();
        groups.push(AUTHENTICATED.to_string());
        return Ok(Some(User {
            name: id.user.clone(),
            groups,
        }));
    }
    let Some(token) = bearer else {
        return Ok(None);
    };
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let claims = tokens
        .verify(token, &audiences, SystemTime::now())
        .map_err(|e| {
            tracing::debug!("bearer token refused: {e}");
            ApiError::unauthorized()
        })?;
    let k = &claims.kubernetes;
    let (ns, sa) = (k.namespace.clone(), k.serviceaccount.name.clone());
    if !account_exists(ns.clone(), sa.clone(), k.serviceaccount.uid.clone()).await {
        tracing::debug!("bearer token for deleted service account {ns}/{sa}");
        return Err(ApiError::unauthorized());
    }
    Ok(Some(User {
        name: format!("system:serviceaccount:{ns}:{sa}"),
        groups: vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{ns}"),
            AUTHENTICATED.to_string(),
        ],
    }))
}

/// The decision of an [`Authorizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied; the reason is appended to the 403 message.
    Deny(String),
}

/// Decides whether `user` may do what `request` asks.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    async fn authorize(&self, user: &User, request: &RequestInfo) -> Decision;
}

/// The first policy: members of `system:masters` may do anything, nobody else anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowMasters;

#[async_trait]
impl Authorizer for AllowMasters {
    async fn authorize(&self, user: &User, _request: &RequestInfo) -> Decision {
        if user.in_group(MASTERS) {
            Decision::Allow
        } else {
            Decision::Deny(String::new())
        }
    }
}

/// The 403 upstream answers a denied request with.
pub fn forbidden(user: &User, request: &RequestInfo, reason: &str) -> ApiError {
    let mut err = match request {
        RequestInfo::Resource(r) => {
            let resource = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let qualified = if r.group.is_empty() {
                r.resource.clone()
            } else {
                format!("{}.{}", r.resource, r.group)
            };
            let subject = if r.name.is_empty() {
                qualified.clone()
            } else {
                format!("{qualified} {:?}", r.name)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            let mut err = ApiError::forbidden(format!(
                "{subject} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                user.name, r.verb, r.group
            ));
            let mut details = serde_json::json!({"kind": r.resource});
            if !r.name.is_empty() {
                details["name"] = r.name.clone().into();
            }
            if !r.group.is_empty() {
                details["group"] = r.group.clone().into();
            }
            err.details = Some(details);
            err
        }
        RequestInfo::NonResource { verb, path } => ApiError::forbidden(format!(
            "forbidden: User {:?} cannot {verb} path {path:?}",
            user.name
        )),
    };
    if !reason.is_empty() {
        err.message = format!("{}: {reason}", err.message);
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[tokio::test]
    async fn only_masters_are_allowed() {
        let admin = User {
            name: "admin".into(),
            groups: vec![MASTERS.into()],
        };
        let bob = User {
            name: "bob".into(),
            groups: vec![AUTHENTICATED.into()],
        };
        let req = RequestInfo::parse(&Method::GET, "/api/v1/namespaces/default/pods", "");
        assert_eq!(AllowMasters.authorize(&admin, &req).await, Decision::Allow);
        assert!(matches!(
            AllowMasters.authorize(&bob, &req).await,
            Decision::Deny(_)
        ));
        let err = forbidden(&bob, &req, "");
        assert_eq!(
            err.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn public_paths() {
        assert!(is_public_path("/healthz"));
        assert!(is_public_path("/readyz/ping"));
        assert!(is_public_path("/version"));
        assert!(!is_public_path("/versions"));
        assert!(!is_public_path("/api"));
    }
}
