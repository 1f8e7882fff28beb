//! RBAC authorization (Role, ClusterRole, RoleBinding, ClusterRoleBinding) and the
//! bootstrap policy upstream creates at start: `cluster-admin` for `system:masters`, and
//! discovery, health and self-review access for every authenticated user.
//!
//! The authorizer reads the bindings and roles from the store on every request: always
//! current and simple. A watch-fed cache replaces the reads when the controllers (and
//! their informers) arrive.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use store::Store;

use crate::auth::{Authorizer, Decision, User, MASTERS};
use crate::catalog::Catalog;
use crate::meta;
use crate::objects::{ListOptions, Objects};
use crate::request_info::RequestInfo;
use crate::status::ApiError;

/// The RBAC authorizer. Members of `system:masters` are allowed without a lookup, as
/// upstream's super-user group is.
pub struct Rbac {
    objects: Objects,
}

impl Rbac {
    pub fn new(store: Arc<dyn Store>) -> Rbac {
        Rbac {
            objects: Objects::new(store, Arc::new(Catalog::builtin())),
        }
    }

    async fn list(&self, plural: &str, ns: &str) -> Result<Vec<Value>, ApiError> {
        let res = self
            .objects
            .catalog
            .lookup("rbac.authorization.k8s.io", "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
        Ok(self
            .objects
            .list(&res, ns, &ListOptions::default())
            .await?
            .items)
    }

    async fn role_rules(&self, kind: &str, ns: &str, name: &str) -> Result<Vec<Value>, ApiError> {
        let (plural, ns) = match kind {
            "ClusterRole" => ("clusterroles", ""),
            "Role" => ("roles", ns),
            _ => return Ok(Vec::new()),
        };
        let res = self
            .objects
            .catalog
            .lookup("rbac.authorization.k8s.io", "v1", plural);
        let Some(res) = res else {
            return Ok(Vec::new());
        };
        let role = self.objects.get_opt(&res, ns, name).await?;
        Ok(role
            .and_then(|r| r["rules"].as_array().cloned())
            .unwrap_or_default())
    }

    /// Whether any rule bound to `user` (cluster-wide, or in `ns`) allows `request`.
    async fn allowed(&self, user: &User, request: &RequestInfo) -> Result<bool, ApiError> {
        let ns = match request {
            RequestInfo::Resource(r) => r.namespace.as_str(),
            RequestInfo::NonResource { .. } => "",
        };
        let mut bindings: Vec<(Value, &str)> = self
            .list("clusterrolebindings", "")
            .await?
            .into_iter()
            .map(|b| (b, ""))
            .collect();
        if !ns.is_empty() {
            bindings.extend(
                self.list("rolebindings", ns)
                    .await?
                    .into_iter()
                    .map(|b| (b, ns)),
            );
        }
        for (binding, ns) in &bindings {
            if !binds(binding, user) {
                continue;
            }
            let role = &binding["roleRef"];
            let (kind, name) = (
                role["kind"].as_str().unwrap_or(""),
                role["name"].as_str().unwrap_or(""),
            );
            let rules = self.role_rules(kind, ns, name).await?;
            if rules.iter().any(|rule| rule_allows(rule, request)) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl Authorizer for Rbac {
    async fn authorize(&self, user: &User, request: &RequestInfo) -> Decision {
        if user.in_group(MASTERS) {
            return Decision::Allow;
        }
        match self.allowed(user, request).await {
            Ok(true) => Decision::Allow,
            Ok(false) => Decision::Deny(String::new()),
            Err(e) => Decision::Deny(format!("RBAC: {}", e.message)),
        }
    }
}

/// Whether `binding` has a subject that is `user`.
fn binds(binding: &Value, user: &User) -> bool {
    let subjects = binding["subjects"].as_array().cloned().unwrap_or_default();
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str().unwrap_or("") {
            "User" => user.name == name,
            "Group" => user.in_group(name),
            "ServiceAccount" => {
                let ns = s["namespace"].as_str().unwrap_or("");
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Upstream's `RuleAllows`: verbs, API groups, resources (with `resource/subresource`
/// and `*/subresource` forms), resource names, or non-resource URLs (`*` suffixes).
pub fn rule_allows(rule: &Value, request: &RequestInfo) -> bool {
    let verbs = strings(&rule["verbs"]);
    if !verbs.iter().any(|v| *v == "*" || *v == request.verb()) {
        return false;
    }
    match request {
        RequestInfo::Resource(r) => {
            let groups = strings(&rule["apiGroups"]);
            if !groups.iter().any(|g| *g == "*" || *g == r.group) {
                return false;
            }
            let resources = strings(&rule["resources"]);
            let ok = if r.subresource.is_empty() {
                resources.iter().any(|x| *x == "*" || *x == r.resource)
            } else {
                let combined = format!("{}/{}", r.resource, r.subresource);
                let any = format!("*/{}", r.subresource);
                resources
                    .iter()
                    .any(|x| *x == "*" || *x == combined || *x == any)
            };
            if !ok {
                return false;
            }
            let names = strings(&rule["resourceNames"]);
            names.is_empty() || (!r.name.is_empty() && names.contains(&r.name.as_str()))
        }
        RequestInfo::NonResource { path, .. } => {
            strings(&rule["nonResourceURLs"]).iter().any(|u| {
                *u == "*"
                    || *u == path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            })
        }
    }
}

/// The bootstrap ClusterRoles and ClusterRoleBindings, as upstream names them.
fn bootstrap_policy() -> Vec<(&'static str, Value)> {
    let annotations = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels, "annotations": annotations},
               "rules": rules})
    };
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name, "labels": labels, "annotations": annotations},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    vec![
        (
            "clusterroles",
            role(
                "cluster-admin",
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                       {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:discovery",
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:basic-user",
                json!([{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                       {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
            ),
        ),
        (
            "clusterroles",
            role(
                "system:public-info-viewer",
                json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
            ),
        ),
        ("clusterrolebindings", binding("cluster-admin", &[MASTERS])),
        (
            "clusterrolebindings",
            binding("system:discovery", &["system:authenticated"]),
        ),
        (
            "clusterrolebindings",
            binding("system:basic-user", &["system:authenticated"]),
        ),
        (
            "clusterrolebindings",
            binding(
                "system:public-info-viewer",
                &["system:authenticated", "system:unauthenticated"],
            ),
        ),
    ]
}

/// Creates the bootstrap policy objects that are missing.
pub async fn bootstrap(objects: &Objects) -> Result<(), ApiError> {
    for (plural, mut obj) in bootstrap_policy() {
        let Some(res) = objects
            .catalog
            .lookup("rbac.authorization.k8s.io", "v1", plural)
        else {
            continue;
        };
        if objects.get_opt(&res, "", meta::name(&obj)).await?.is_some() {
            continue;
        }
        let m = meta::meta_mut(&mut obj);
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        match objects.create(&res, &obj).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn req(method: Method, path: &str) -> RequestInfo {
        RequestInfo::parse(&method, path, "")
    }

    #[test]
    fn rules_match_like_upstream() {
        let pods_get = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        assert!(rule_allows(
            &pods_get,
            &req(Method::GET, "/api/v1/namespaces/a/pods/x")
        ));
        assert!(!rule_allows(
            &pods_get,
            &req(Method::GET, "/api/v1/namespaces/a/pods")
        ));
        assert!(!rule_allows(
            &pods_get,
            &req(Method::GET, "/api/v1/namespaces/a/pods/x/status")
        ));
        assert!(!rule_allows(
            &pods_get,
            &req(Method::GET, "/apis/apps/v1/namespaces/a/deployments/x")
        ));
        let named = json!({"apiGroups": ["apps"], "resources": ["deployments/scale"], "resourceNames": ["web"], "verbs": ["*"]});
        assert!(rule_allows(
            &named,
            &req(
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/web/scale"
            )
        ));
        assert!(!rule_allows(
            &named,
            &req(
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/db/scale"
            )
        ));
        let urls = json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]});
        assert!(rule_allows(&urls, &req(Method::GET, "/apis/apps/v1")));
        assert!(rule_allows(&urls, &req(Method::GET, "/version")));
        assert!(!rule_allows(&urls, &req(Method::GET, "/api")));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let b = json!({"subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "name": "robot", "namespace": "ci"}]});
        let user = |name: &str, groups: &[&str]| User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        assert!(binds(&b, &user("alice", &[])));
        assert!(binds(&b, &user("bob", &["devs"])));
        assert!(binds(&b, &user("system:serviceaccount:ci:robot", &[])));
        assert!(!binds(&b, &user("system:serviceaccount:other:robot", &[])));
    }
}
