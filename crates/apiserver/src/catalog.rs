//! The table of resources the server knows: one entry per (group, version, plural), with
//! what discovery advertises about it (kind, names, scope, verbs, categories, subresources)
//! and the few per-kind rules the generic handlers need (name format, whether
//! `metadata.generation` tracks the spec, extra field selectors).
//!
//! The built-in entries mirror upstream's discovery documents for Kubernetes 1.32. The
//! table sits behind an `RwLock` so that CustomResourceDefinitions can add and remove
//! entries while the server runs.

use std::sync::{Arc, RwLock};

/// A subresource the generic handlers serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: writes change only `.status`, main-resource writes leave it alone.
    Status,
    /// `/scale`: an `autoscaling/v1` Scale view of `.spec.replicas`.
    Scale,
    /// `serviceaccounts/{name}/token`: TokenRequest, issuing a ServiceAccount token.
    Token,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Token => "token",
        }
    }

    /// The group, version and kind the subresource reads and writes.
    pub fn kind(self, parent: &Resource) -> (&str, &str, &str) {
        match self {
            Subresource::Status => (&parent.group, &parent.version, &parent.kind),
            Subresource::Scale => ("autoscaling", "v1", "Scale"),
            Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        }
    }

    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Token => &["create"],
        }
    }
}

/// Which validation a kind applies to `metadata.name` (upstream's `ValidateNameFunc`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds.
    Subdomain,
    /// RFC 1123 label: Namespaces.
    Label,
    /// RFC 1035 label (starts with a letter): Services.
    Dns1035,
    /// Anything usable as a path segment: RBAC objects (`system:...` names).
    PathSegment,
}

/// One served resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    pub name_rule: NameRule,
    /// `metadata.generation` is set on create and bumped when `.spec` changes.
    pub generation: bool,
    /// Field selectors accepted beyond `metadata.name` and `metadata.namespace`.
    pub field_selectors: Vec<String>,
    /// A built-in kind (lists omit the items' kind/apiVersion, as upstream's typed lists do).
    pub builtin: bool,
    /// DELETE answers with the deleted object rather than a success Status (pods do).
    pub return_deleted: bool,
    /// Kept in the store. Review resources (SelfSubjectAccessReview) are answered and
    /// forgotten.
    pub stored: bool,
    /// For custom resources: the version's structural schema (`openAPIV3Schema`).
    pub schema: Option<Arc<serde_json::Value>>,
    /// For custom resources: `additionalPrinterColumns` (name, type, JSON path, priority).
    pub printer_columns: Vec<PrinterColumn>,
}

/// A Table column a CRD adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    /// A simple JSONPath: `.spec.replicas`.
    pub json_path: String,
    pub priority: u8,
}

impl Resource {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` or `deployments.apps`: how upstream names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// A group and the versions served for it, preferred first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub versions: Vec<String>,
}

/// The run-time registry of resources. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Catalog {
    resources: RwLock<Vec<Arc<Resource>>>,
}

impl Catalog {
    /// A catalog with every built-in resource.
    pub fn builtin() -> Catalog {
        let catalog = Catalog::default();
        for r in builtin_resources() {
            catalog.add(r);
        }
        catalog
    }

    /// Adds `resource`, replacing an entry for the same group, version and plural.
    pub fn add(&self, resource: Resource) {
        let mut all = self.resources.write().unwrap_or_else(|p| p.into_inner());
        let resource = Arc::new(resource);
        match all.iter_mut().find(|r| {
            r.group == resource.group
                && r.version == resource.version
                && r.plural == resource.plural
        }) {
            Some(slot) => *slot = resource,
            None => all.push(resource),
        }
    }

    /// Removes the entry for `group`/`version`/`plural`; true if there was one.
    pub fn remove(&self, group: &str, version: &str, plural: &str) -> bool {
        let mut all = self.resources.write().unwrap_or_else(|p| p.into_inner());
        let before = all.len();
        all.retain(|r| !(r.group == group && r.version == version && r.plural == plural));
        all.len() != before
    }

    /// Removes every custom (non-built-in) version of `group`/`plural`.
    pub fn remove_custom(&self, group: &str, plural: &str) {
        let mut all = self.resources.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|r| r.builtin || !(r.group == group && r.plural == plural));
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The resource serving `kind` in `group`/`version`.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        self.read()
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Every resource, in registration order.
    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.read().clone()
    }

    /// The resources of one group version, in registration order.
    pub fn resources(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.read()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }

    /// Groups in registration order (the core group, named "", first).
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        for r in self.read().iter() {
            match groups.iter_mut().find(|g| g.name == r.group) {
                Some(g) if !g.versions.contains(&r.version) => g.versions.push(r.version.clone()),
                Some(_) => {}
                None => groups.push(Group {
                    name: r.group.clone(),
                    versions: vec![r.version.clone()],
                }),
            }
        }
        groups
    }

    /// The namespaced resources, one entry per group and plural (the first version
    /// registered): what deleting a namespace has to empty.
    pub fn namespaced_storage(&self) -> Vec<Arc<Resource>> {
        let mut out: Vec<Arc<Resource>> = Vec::new();
        for r in self.read().iter().filter(|r| r.namespaced && r.stored) {
            if !out
                .iter()
                .any(|o| o.group == r.group && o.plural == r.plural)
            {
                out.push(r.clone());
            }
        }
        out
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Resource>>> {
        self.resources.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The verbs of an ordinary resource.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A compact description of one built-in, turned into a [`Resource`] by [`builtin_resources`].
struct Def {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    categories: &'static [&'static str],
    status: bool,
    scale: bool,
    generation: bool,
    name_rule: NameRule,
    fields: &'static [&'static str],
    verbs: &'static [&'static str],
    token: bool,
}

const fn def(group: &'static str, kind: &'static str, plural: &'static str) -> Def {
    Def {
        group,
        kind,
        plural,
        short: &[],
        namespaced: true,
        categories: &[],
        status: false,
        scale: false,
        generation: false,
        name_rule: NameRule::Subdomain,
        fields: &[],
        verbs: ALL_VERBS,
        token: false,
    }
}

impl Def {
    const fn cluster(mut self) -> Def {
        self.namespaced = false;
        self
    }
    const fn short(mut self, short: &'static [&'static str]) -> Def {
        self.short = short;
        self
    }
    const fn all(mut self) -> Def {
        self.categories = &["all"];
        self
    }
    const fn status(mut self) -> Def {
        self.status = true;
        self
    }
    /// A workload: status, scale (if `scale`), generation, category "all".
    const fn workload(mut self, scale: bool) -> Def {
        self.status = true;
        self.scale = scale;
        self.generation = true;
        self.categories = &["all"];
        self
    }
    const fn generation(mut self) -> Def {
        self.generation = true;
        self
    }
    const fn names(mut self, rule: NameRule) -> Def {
        self.name_rule = rule;
        self
    }
    const fn fields(mut self, fields: &'static [&'static str]) -> Def {
        self.fields = fields;
        self
    }
    const fn token(mut self) -> Def {
        self.token = true;
        self
    }
    const fn verbs(mut self, verbs: &'static [&'static str]) -> Def {
        self.verbs = verbs;
        self
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Upstream's built-in resources that this server stores (Kubernetes 1.32 discovery).
fn builtin_defs() -> Vec<Def> {
    use NameRule::*;
    vec![
        // core/v1
        def("", "Namespace", "namespaces")
            .cluster()
            .short(&["ns"])
            .status()
            .names(Label)
            .fields(&["status.phase"]),
        def("", "Pod", "pods")
            .short(&["po"])
            .all()
            .status()
            .fields(POD_FIELDS),
        def("", "Service", "services")
            .short(&["svc"])
            .all()
            .status()
            .names(Dns1035),
        def("", "Endpoints", "endpoints").short(&["ep"]),
        def("", "ConfigMap", "configmaps").short(&["cm"]),
        def("", "Secret", "secrets").fields(&["type"]),
        def("", "ServiceAccount", "serviceaccounts")
            .short(&["sa"])
            .token(),
        def("", "Node", "nodes")
            .cluster()
            .short(&["no"])
            .status()
            .fields(&["spec.unschedulable"]),
        def("", "Event", "events")
            .short(&["ev"])
            .fields(EVENT_FIELDS),
        def("", "PersistentVolume", "persistentvolumes")
            .cluster()
            .short(&["pv"])
            .status(),
        def("", "PersistentVolumeClaim", "persistentvolumeclaims")
            .short(&["pvc"])
            .status(),
        def("", "LimitRange", "limitranges").short(&["limits"]),
        def("", "ResourceQuota", "resourcequotas")
            .short(&["quota"])
            .status(),
        // apps/v1
        def("apps", "Deployment", "deployments")
            .short(&["deploy"])
            .workload(true),
        def("apps", "ReplicaSet", "replicasets")
            .short(&["rs"])
            .workload(true)
            .fields(&["status.replicas"]),
        def("apps", "StatefulSet", "statefulsets")
            .short(&["sts"])
            .workload(true),
        def("apps", "DaemonSet", "daemonsets")
            .short(&["ds"])
            .workload(false),
        def("apps", "ControllerRevision", "controllerrevisions"),
        // batch/v1
        def("batch", "Job", "jobs")
            .workload(false)
            .fields(&["status.successful"]),
        def("batch", "CronJob", "cronjobs")
            .short(&["cj"])
            .workload(false),
        // coordination.k8s.io/v1
        def("coordination.k8s.io", "Lease", "leases"),
        // rbac.authorization.k8s.io/v1
        def("rbac.authorization.k8s.io", "Role", "roles").names(PathSegment),
        def("rbac.authorization.k8s.io", "ClusterRole", "clusterroles")
            .cluster()
            .names(PathSegment),
        def("rbac.authorization.k8s.io", "RoleBinding", "rolebindings").names(PathSegment),
        def(
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            "clusterrolebindings",
        )
        .cluster()
        .names(PathSegment),
        // discovery.k8s.io/v1
        def("discovery.k8s.io", "EndpointSlice", "endpointslices"),
        // networking.k8s.io/v1
        def("networking.k8s.io", "Ingress", "ingresses")
            .short(&["ing"])
            .status()
            .generation(),
        def("networking.k8s.io", "IngressClass", "ingressclasses")
            .cluster()
            .generation(),
        def("networking.k8s.io", "NetworkPolicy", "networkpolicies")
            .short(&["netpol"])
            .generation(),
        // policy/v1
        def("policy", "PodDisruptionBudget", "poddisruptionbudgets")
            .short(&["pdb"])
            .status()
            .generation(),
        // storage.k8s.io/v1
        def("storage.k8s.io", "StorageClass", "storageclasses")
            .cluster()
            .short(&["sc"]),
        // events.k8s.io/v1
        def("events.k8s.io", "Event", "events").short(&["ev"]),
        // authentication.k8s.io/v1 and authorization.k8s.io/v1: answered, not stored
        // (`kubectl auth whoami`, `kubectl auth can-i`).
        def(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
        )
        .cluster()
        .verbs(&["create"]),
        def(
            "authorization.k8s.io",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
        )
        .cluster()
        .verbs(&["create"]),
        // apiextensions.k8s.io/v1
        def(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        )
        .cluster()
        .short(&["crd", "crds"])
        .status()
        .generation(),
    ]
}

fn builtin_resources() -> Vec<Resource> {
    let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    builtin_defs()
        .into_iter()
        .map(|d| {
            let mut categories = strings(d.categories);
            if d.group == "apiextensions.k8s.io" {
                categories.push("api-extensions".into());
            }
            let mut verbs = strings(d.verbs);
            if d.kind == "Namespace" {
                // Upstream has no deletecollection for namespaces.
                verbs.retain(|v| v != "deletecollection");
            }
            let mut subresources = Vec::new();
            if d.scale {
                subresources.push(Subresource::Scale);
            }
            if d.status {
                subresources.push(Subresource::Status);
            }
            if d.token {
                subresources.push(Subresource::Token);
            }
            Resource {
                group: d.group.to_string(),
                version: "v1".to_string(),
                kind: d.kind.to_string(),
                plural: d.plural.to_string(),
                singular: d.kind.to_ascii_lowercase(),
                short_names: strings(d.short),
                namespaced: d.namespaced,
                verbs,
                categories,
                subresources,
                name_rule: d.name_rule,
                generation: d.generation,
                field_selectors: strings(d.fields),
                builtin: true,
                return_deleted: d.kind == "Pod",
                stored: d.verbs.contains(&"get"),
                schema: None,
                printer_columns: Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_found_by_plural_and_kind() {
        let c = Catalog::builtin();
        let d = c.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.qualified(), "deployments.apps");
        assert!(d.has(Subresource::Scale) && d.has(Subresource::Status));
        assert_eq!(
            c.by_kind("", "v1", "ConfigMap").unwrap().plural,
            "configmaps"
        );
        assert!(!c.lookup("", "v1", "namespaces").unwrap().namespaced);
        assert_eq!(c.groups()[0].name, "");
        // Core and events.k8s.io events are distinct entries.
        assert!(c.lookup("events.k8s.io", "v1", "events").is_some());
    }

    #[test]
    fn entries_can_be_added_and_removed_at_run_time() {
        let c = Catalog::builtin();
        let mut r = (*c.lookup("", "v1", "configmaps").unwrap()).clone();
        r.group = "example.com".into();
        r.kind = "Widget".into();
        r.plural = "widgets".into();
        r.builtin = false;
        c.add(r);
        assert!(c.groups().iter().any(|g| g.name == "example.com"));
        assert!(c.remove("example.com", "v1", "widgets"));
        assert!(c.lookup("example.com", "v1", "widgets").is_none());
    }
}
