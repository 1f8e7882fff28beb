//! What a request is about, worked out from its method, path and query the way upstream's
//! `RequestInfoFactory` does it: a resource request (verb, group, version, namespace,
//! resource, name, subresource) or a non-resource one (`/healthz`, discovery). Both
//! authorization and dispatch work from this.

use axum::http::Method;

/// A request for a resource under `/api/v1` or `/apis/{group}/{version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    pub group: String,
    pub version: String,
    /// Empty for cluster-scoped requests and for lists across all namespaces.
    pub namespace: String,
    pub resource: String,
    /// Empty for collection requests.
    pub name: String,
    pub subresource: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfo {
    Resource(ResourceRequest),
    /// Anything else: `verb` is the lowercased HTTP method.
    NonResource {
        verb: String,
        path: String,
    },
}

/// Subresources of a namespace, which upstream does not read as resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn query_is_true(query: &str, key: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == key && matches!(v.as_ref(), "1" | "true" | "True"))
}

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, query: &str) -> RequestInfo {
        let non_resource = || RequestInfo::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, mut rest) = match segments.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
            ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
            _ => return non_resource(),
        };
        // The deprecated `/watch/` path prefix means `?watch=true`.
        let mut watch = query_is_true(query, "watch");
        if rest.first() == Some(&"watch") {
            watch = true;
            rest = &rest[1..];
        }
        let mut namespace = "";
        if rest.first() == Some(&"namespaces") && rest.len() > 1 {
            namespace = rest[1];
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        let (resource, name, subresource) = match rest {
            [] => return non_resource(),
            [r] => (*r, "", ""),
            [r, n] => (*r, *n, ""),
            [r, n, s] => (*r, *n, *s),
            _ => return non_resource(),
        };
        // `/api/v1/namespaces/x` is the namespace x, not something inside it.
        if resource == "namespaces" {
            namespace = "";
        }
        let verb = match *method {
            Method::GET | Method::HEAD if watch => "watch",
            Method::GET | Method::HEAD if name.is_empty() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => return non_resource(),
        };
        RequestInfo::Resource(ResourceRequest {
            verb: verb.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            namespace: namespace.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
            subresource: subresource.to_string(),
        })
    }

    pub fn verb(&self) -> &str {
        match self {
            RequestInfo::Resource(r) => &r.verb,
            RequestInfo::NonResource { verb, .. } => verb,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str, query: &str) -> ResourceRequest {
        match RequestInfo::parse(&method, path, query) {
            RequestInfo::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_map_to_requests_like_upstream() {
        let r = res(Method::GET, "/api/v1/namespaces/default/configmaps", "");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("list", "default", "configmaps")
        );
        let r = res(
            Method::GET,
            "/api/v1/namespaces/default/configmaps",
            "watch=1",
        );
        assert_eq!(r.verb, "watch");
        let r = res(Method::GET, "/api/v1/watch/namespaces/default/pods/x", "");
        assert_eq!((r.verb.as_str(), r.name.as_str()), ("watch", "x"));
        let r = res(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("namespaces", "kube-system", "")
        );
        let r = res(Method::PUT, "/api/v1/namespaces/x/status", "");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("namespaces", "x", "status")
        );
        let r = res(
            Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            "",
        );
        assert_eq!(
            (r.group.as_str(), r.verb.as_str(), r.subresource.as_str()),
            ("apps", "patch", "scale")
        );
        let r = res(Method::DELETE, "/apis/apps/v1/deployments", "");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str()),
            ("deletecollection", "")
        );
        let r = res(Method::GET, "/api/v1/nodes/n1", "");
        assert_eq!((r.verb.as_str(), r.name.as_str()), ("get", "n1"));
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/healthz",
            "/version",
        ] {
            assert!(
                matches!(
                    RequestInfo::parse(&Method::GET, p, ""),
                    RequestInfo::NonResource { .. }
                ),
                "{p}"
            );
        }
    }
}
