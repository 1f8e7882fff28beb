//! The schemas of served kinds, named as upstream names them
//! (`io.k8s.api.apps.v1.Deployment`, `com.example.v1.Widget`).
//!
//! Built-in kinds come from k8s-openapi's `schemars` implementations (its Kubernetes 1.32
//! types, with the descriptions of the upstream Go types); custom kinds from their CRD's
//! structural schema, with `apiVersion`, `kind` and `metadata` added as upstream adds them.
//! Every top-level kind carries `x-kubernetes-group-version-kind`, which is how
//! `kubectl explain` finds the schema of the resource it was asked about.

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
    authorization::v1 as authz, autoscaling::v1 as autoscaling, autoscaling::v2 as autoscaling2,
    batch::v1 as batch, certificates::v1 as certificates, coordination::v1 as coordination,
    core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    flowcontrol::v1 as flowcontrol, networking::v1 as networking, node::v1 as node,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::catalog::Resource;

/// Which OpenAPI a schema set is for: they differ in where definitions live and in how a
/// described reference is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Swagger 2.0: `#/definitions/…`, `{"$ref", "description"}` side by side.
    V2,
    /// OpenAPI 3.0: `#/components/schemas/…`, where `$ref` siblings are ignored, so a
    /// described reference becomes `{"allOf": [{"$ref"}], "description"}` (kubectl explain
    /// reads both the field's and the referenced type's descriptions from that).
    V3,
}

impl Flavor {
    pub fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }

    /// A reference to `name` with a description of its own.
    fn described_reference(self, name: &str, description: &str) -> Value {
        match self {
            Flavor::V2 => {
                let mut r = self.reference(name);
                r["description"] = json!(description);
                r
            }
            Flavor::V3 => json!({"allOf": [self.reference(name)], "description": description}),
        }
    }

    fn generator(self) -> SchemaGenerator {
        SchemaSettings::draft07()
            .with(|s| {
                s.meta_schema = None;
                match self {
                    // draft07's transforms move `$ref` siblings into `allOf`.
                    Flavor::V3 => s.definitions_path = "/components/schemas".into(),
                    Flavor::V2 => s.transforms.clear(),
                }
            })
            .into_generator()
    }
}

/// Registers `T`'s schema (and everything it refers to); returns its name.
type Add = fn(&mut SchemaGenerator) -> String;

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: Add,
}

const fn kind<T: k8s_openapi::Resource + JsonSchema>() -> Kind {
    Kind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        add: add::<T>,
    }
}

/// The built-in kinds with a schema: what the catalog serves, the kinds its subresources
/// read and write, and the rest of Kubernetes' stable kinds so that catalog entries added
/// later get theirs.
const KINDS: &[Kind] = &[
    kind::<core::Binding>(),
    kind::<core::ComponentStatus>(),
    kind::<core::ConfigMap>(),
    kind::<core::Endpoints>(),
    kind::<core::Event>(),
    kind::<core::LimitRange>(),
    kind::<core::Namespace>(),
    kind::<core::Node>(),
    kind::<core::PersistentVolume>(),
    kind::<core::PersistentVolumeClaim>(),
    kind::<core::Pod>(),
    kind::<core::PodTemplate>(),
    kind::<core::ReplicationController>(),
    kind::<core::ResourceQuota>(),
    kind::<core::Secret>(),
    kind::<core::Service>(),
    kind::<core::ServiceAccount>(),
    kind::<admission::MutatingWebhookConfiguration>(),
    kind::<admission::ValidatingWebhookConfiguration>(),
    kind::<admission::ValidatingAdmissionPolicy>(),
    kind::<admission::ValidatingAdmissionPolicyBinding>(),
    kind::<apiextensions::CustomResourceDefinition>(),
    kind::<apiregistration::APIService>(),
    kind::<apps::ControllerRevision>(),
    kind::<apps::DaemonSet>(),
    kind::<apps::Deployment>(),
    kind::<apps::ReplicaSet>(),
    kind::<apps::StatefulSet>(),
    kind::<authn::SelfSubjectReview>(),
    kind::<authn::TokenRequest>(),
    kind::<authn::TokenReview>(),
    kind::<authz::LocalSubjectAccessReview>(),
    kind::<authz::SelfSubjectAccessReview>(),
    kind::<authz::SelfSubjectRulesReview>(),
    kind::<authz::SubjectAccessReview>(),
    kind::<autoscaling::HorizontalPodAutoscaler>(),
    kind::<autoscaling::Scale>(),
    kind::<autoscaling2::HorizontalPodAutoscaler>(),
    kind::<batch::CronJob>(),
    kind::<batch::Job>(),
    kind::<certificates::CertificateSigningRequest>(),
    kind::<coordination::Lease>(),
    kind::<discovery::EndpointSlice>(),
    kind::<events::Event>(),
    kind::<flowcontrol::FlowSchema>(),
    kind::<flowcontrol::PriorityLevelConfiguration>(),
    kind::<networking::Ingress>(),
    kind::<networking::IngressClass>(),
    kind::<networking::NetworkPolicy>(),
    kind::<node::RuntimeClass>(),
    kind::<policy::Eviction>(),
    kind::<policy::PodDisruptionBudget>(),
    kind::<rbac::ClusterRole>(),
    kind::<rbac::ClusterRoleBinding>(),
    kind::<rbac::Role>(),
    kind::<rbac::RoleBinding>(),
    kind::<scheduling::PriorityClass>(),
    kind::<storage::CSIDriver>(),
    kind::<storage::CSINode>(),
    kind::<storage::CSIStorageCapacity>(),
    kind::<storage::StorageClass>(),
    kind::<storage::VolumeAttachment>(),
];

fn builtin(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// Upstream's definition name of a custom kind: the group's DNS labels reversed.
fn custom_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The schema names of one resource's kind and list kind.
pub struct Names {
    pub kind: String,
    /// None for kinds that cannot be listed (reviews).
    pub list: Option<String>,
}

/// The schemas of a set of resources, gathered into one definitions map.
pub struct Schemas {
    flavor: Flavor,
    generator: SchemaGenerator,
    /// Hand-built schemas (custom kinds, lists), added after the generated ones.
    extra: Map<String, Value>,
    /// Definition name → group, version, kind.
    gvks: Vec<(String, [String; 3])>,
    /// `apiVersion`, `kind` and `metadata` as every built-in kind describes them.
    type_meta: Option<Map<String, Value>>,
}

impl Schemas {
    pub fn new(flavor: Flavor) -> Schemas {
        Schemas {
            flavor,
            generator: flavor.generator(),
            extra: Map::new(),
            gvks: Vec::new(),
            type_meta: None,
        }
    }

    /// Adds the schemas of `r`'s kind and list kind, if it has a schema: a built-in kind
    /// k8s-openapi knows, or a custom kind with a structural schema.
    pub fn add(&mut self, r: &Resource) -> Option<Names> {
        self.add_kind(&r.group, &r.version, &r.kind, r.schema.as_deref())
            .map(|kind| {
                let list = r.allows("list").then(|| self.add_list(r, &kind));
                Names { kind, list }
            })
    }

    /// Adds a kind without list (a subresource's), returning its name.
    pub fn add_kind(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
        custom: Option<&Value>,
    ) -> Option<String> {
        let gvk = [group.to_string(), version.to_string(), kind.to_string()];
        let name = match (builtin(group, version, kind), custom) {
            (Some(k), _) => (k.add)(&mut self.generator),
            (None, Some(schema)) => {
                let name = custom_name(group, version, kind);
                let schema = self.custom(schema);
                self.extra.insert(name.clone(), schema);
                name
            }
            (None, None) => return None,
        };
        self.gvks.push((name.clone(), gvk));
        Some(name)
    }

    fn type_meta(&mut self) -> Map<String, Value> {
        if self.type_meta.is_none() {
            let mut cm = core::ConfigMap::json_schema(&mut self.generator).to_value();
            let mut props = cm["properties"].take();
            let mut meta = Map::new();
            for key in ["apiVersion", "kind"] {
                meta.insert(key.into(), props[key].take());
            }
            let description = props["metadata"]["description"].as_str().unwrap_or("");
            let object_meta = add::<ObjectMeta>(&mut self.generator);
            meta.insert(
                "metadata".into(),
                self.flavor.described_reference(&object_meta, description),
            );
            self.type_meta = Some(meta);
        }
        self.type_meta.clone().unwrap_or_default()
    }

    /// A CRD's schema as upstream publishes it: with `apiVersion`, `kind` and an
    /// ObjectMeta `metadata`; for Swagger 2.0 without what only OpenAPI 3 has.
    fn custom(&mut self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        if self.flavor == Flavor::V2 {
            strip_v3_only(&mut schema);
        }
        let meta = self.type_meta();
        if let Value::Object(obj) = &mut schema {
            obj.entry("type").or_insert_with(|| json!("object"));
            let props = obj.entry("properties").or_insert_with(|| json!({}));
            if let Value::Object(props) = props {
                props.extend(meta);
            }
        }
        schema
    }

    fn add_list(&mut self, r: &Resource, kind_name: &str) -> String {
        let name = format!("{kind_name}List");
        let mut props = self.type_meta();
        let list_meta = add::<ListMeta>(&mut self.generator);
        props.insert(
            "metadata".into(),
            self.flavor.described_reference(
                &list_meta,
                "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            ),
        );
        props.insert(
            "items".into(),
            json!({
                "description": format!("List of {}.", r.plural),
                "type": "array",
                "items": self.flavor.reference(kind_name),
            }),
        );
        let schema = json!({
            "description": format!("{} is a list of {}.", r.list_kind(), r.kind),
            "type": "object",
            "required": ["items"],
            "properties": props,
        });
        self.extra.insert(name.clone(), schema);
        self.gvks.push((
            name.clone(),
            [r.group.clone(), r.version.clone(), r.list_kind()],
        ));
        name
    }

    /// The definitions, each top-level kind marked with its group, version and kind.
    pub fn finish(mut self) -> Map<String, Value> {
        let mut defs = self.generator.take_definitions(true);
        defs.extend(std::mem::take(&mut self.extra));
        for (name, [group, version, kind]) in self.gvks {
            let Some(Value::Object(def)) = defs.get_mut(&name) else {
                continue;
            };
            // k8s-openapi requires `metadata` because its Rust field is not optional;
            // upstream never does.
            if let Some(Value::Array(required)) = def.get_mut("required") {
                required.retain(|f| f != "metadata");
                if required.is_empty() {
                    def.remove("required");
                }
            }
            let gvk = json!({"group": group, "kind": kind, "version": version});
            let list = def
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Value::Array(list) = list {
                if !list.contains(&gvk) {
                    list.push(gvk);
                }
            }
        }
        defs
    }
}

/// Removes the OpenAPI 3 keywords Swagger 2.0 has no place for.
fn strip_v3_only(v: &mut Value) {
    match v {
        Value::Object(obj) => {
            for key in ["nullable", "oneOf", "anyOf", "not"] {
                obj.remove(key);
            }
            obj.values_mut().for_each(strip_v3_only);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_v3_only),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn builtin_kinds_have_described_references_and_gvks() {
        let c = Catalog::builtin();
        let mut s = Schemas::new(Flavor::V3);
        let names = s
            .add(&c.lookup("apps", "v1", "deployments").unwrap())
            .unwrap();
        assert_eq!(names.kind, "io.k8s.api.apps.v1.Deployment");
        let defs = s.finish();
        let d = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(d.get("required").is_none());
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy["description"].is_string());
        assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert_eq!(
            defs["io.k8s.api.apps.v1.DeploymentList"]["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.Deployment"
        );
        // Every catalog kind has a schema.
        let mut s = Schemas::new(Flavor::V2);
        for r in c.all() {
            assert!(s.add(&r).is_some(), "{}", r.kind);
        }
    }

    #[test]
    fn custom_kinds_get_type_meta() {
        let mut s = Schemas::new(Flavor::V2);
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
            "description": "The widget.", "nullable": true}}});
        let name = s
            .add_kind("example.com", "v1", "Widget", Some(&schema))
            .unwrap();
        assert_eq!(name, "com.example.v1.Widget");
        let defs = s.finish();
        let w = &defs["com.example.v1.Widget"];
        assert_eq!(
            w["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(w["properties"]["apiVersion"]["description"].is_string());
        assert!(w["properties"]["spec"].get("nullable").is_none());
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
    }
}
