//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! decoded to the same JSON the object would have been sent as.
//!
//! kubectl's typed clients (`kubectl create configmap|secret|namespace|deployment|...`)
//! send protobuf and do not fall back to JSON on a 415, so the server has to read it.
//! No Rust crate maps Kubernetes protobuf to JSON (k8s-pb has typed prost structs only), so
//! this is a small schema-driven decoder: the wire format is a `k8s\0` magic followed by a
//! `runtime.Unknown` envelope (type meta + raw message), and the tables below give, for
//! the kinds kubectl creates, each field's number, JSON name and type. Fields not in the
//! tables are skipped (logged at debug level); kinds not in them get a 415.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::status::ApiError;

/// How a field is encoded and how it reads in JSON.
#[derive(Clone, Copy)]
enum T {
    /// Scalars of Go's non-pointer fields: always encoded, and omitted from JSON when zero
    /// (`omitempty`).
    Str,
    Bool,
    I32,
    I64,
    /// Scalars of Go's pointer fields: encoded only when set, so zero is a real value.
    OptBool,
    OptI32,
    OptI64,
    Msg(&'static [F]),
    /// An embedded struct whose fields JSON shows inline (`LocalObjectReference`).
    Inline(&'static [F]),
    /// `metav1.Time`: seconds and nanos, RFC 3339 in JSON.
    Time,
    IntOrString,
    /// `resource.Quantity`: its string form.
    Quantity,
    MapStr,
    /// `map[string][]byte`: base64 values in JSON.
    MapBytes,
    MapQuantity,
}

/// One field: protobuf number, JSON name, type, repeated.
#[derive(Clone, Copy)]
struct F(u32, &'static str, T, bool);

const fn f(tag: u32, name: &'static str, ty: T) -> F {
    F(tag, name, ty, false)
}
const fn r(tag: u32, name: &'static str, ty: T) -> F {
    F(tag, name, ty, true)
}

use T::*;

const OWNER_REFERENCE: &[F] = &[
    f(5, "apiVersion", Str),
    f(1, "kind", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(6, "controller", OptBool),
    f(7, "blockOwnerDeletion", OptBool),
];
const OBJECT_META: &[F] = &[
    f(1, "name", Str),
    f(2, "generateName", Str),
    f(3, "namespace", Str),
    f(5, "uid", Str),
    f(6, "resourceVersion", Str),
    f(7, "generation", I64),
    f(8, "creationTimestamp", Time),
    f(9, "deletionTimestamp", Time),
    f(10, "deletionGracePeriodSeconds", OptI64),
    f(11, "labels", MapStr),
    f(12, "annotations", MapStr),
    r(13, "ownerReferences", Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Str),
];
const LABEL_SELECTOR_REQUIREMENT: &[F] =
    &[f(1, "key", Str), f(2, "operator", Str), r(3, "values", Str)];
const LABEL_SELECTOR: &[F] = &[
    f(1, "matchLabels", MapStr),
    r(2, "matchExpressions", Msg(LABEL_SELECTOR_REQUIREMENT)),
];
const LOCAL_OBJECT_REFERENCE: &[F] = &[f(1, "name", Str)];
const OBJECT_REFERENCE: &[F] = &[
    f(1, "kind", Str),
    f(2, "namespace", Str),
    f(3, "name", Str),
    f(4, "uid", Str),
    f(5, "apiVersion", Str),
    f(6, "resourceVersion", Str),
    f(7, "fieldPath", Str),
];
const KEY_SELECTOR: &[F] = &[
    f(1, "", Inline(LOCAL_OBJECT_REFERENCE)),
    f(2, "key", Str),
    f(3, "optional", OptBool),
];
const OBJECT_FIELD_SELECTOR: &[F] = &[f(1, "apiVersion", Str), f(2, "fieldPath", Str)];
const RESOURCE_FIELD_SELECTOR: &[F] = &[
    f(1, "containerName", Str),
    f(2, "resource", Str),
    f(3, "divisor", Quantity),
];
const ENV_VAR_SOURCE: &[F] = &[
    f(1, "fieldRef", Msg(OBJECT_FIELD_SELECTOR)),
    f(2, "resourceFieldRef", Msg(RESOURCE_FIELD_SELECTOR)),
    f(3, "configMapKeyRef", Msg(KEY_SELECTOR)),
    f(4, "secretKeyRef", Msg(KEY_SELECTOR)),
];
const ENV_VAR: &[F] = &[
    f(1, "name", Str),
    f(2, "value", Str),
    f(3, "valueFrom", Msg(ENV_VAR_SOURCE)),
];
const CONTAINER_PORT: &[F] = &[
    f(1, "name", Str),
    f(2, "hostPort", I32),
    f(3, "containerPort", I32),
    f(4, "protocol", Str),
    f(5, "hostIP", Str),
];
const RESOURCE_REQUIREMENTS: &[F] = &[f(1, "limits", MapQuantity), f(2, "requests", MapQuantity)];
const CONTAINER: &[F] = &[
    f(1, "name", Str),
    f(2, "image", Str),
    r(3, "command", Str),
    r(4, "args", Str),
    f(5, "workingDir", Str),
    r(6, "ports", Msg(CONTAINER_PORT)),
    r(7, "env", Msg(ENV_VAR)),
    f(8, "resources", Msg(RESOURCE_REQUIREMENTS)),
    f(13, "terminationMessagePath", Str),
    f(14, "imagePullPolicy", Str),
    f(16, "stdin", Bool),
    f(17, "stdinOnce", Bool),
    f(18, "tty", Bool),
    f(20, "terminationMessagePolicy", Str),
    f(24, "restartPolicy", Str),
];
const TOLERATION: &[F] = &[
    f(1, "key", Str),
    f(2, "operator", Str),
    f(3, "value", Str),
    f(4, "effect", Str),
    f(5, "tolerationSeconds", OptI64),
];
const POD_SPEC: &[F] = &[
    r(20, "initContainers", Msg(CONTAINER)),
    r(2, "containers", Msg(CONTAINER)),
    f(3, "restartPolicy", Str),
    f(4, "terminationGracePeriodSeconds", OptI64),
    f(5, "activeDeadlineSeconds", OptI64),
    f(6, "dnsPolicy", Str),
    f(7, "nodeSelector", MapStr),
    f(8, "serviceAccountName", Str),
    f(9, "serviceAccount", Str),
    f(21, "automountServiceAccountToken", OptBool),
    f(10, "nodeName", Str),
    f(11, "hostNetwork", Bool),
    f(12, "hostPID", Bool),
    f(13, "hostIPC", Bool),
    r(15, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    f(16, "hostname", Str),
    f(17, "subdomain", Str),
    f(19, "schedulerName", Str),
    r(22, "tolerations", Msg(TOLERATION)),
    f(24, "priorityClassName", Str),
    f(25, "priority", OptI32),
    f(29, "runtimeClassName", Str),
    f(30, "enableServiceLinks", OptBool),
    f(31, "preemptionPolicy", Str),
];
const POD_TEMPLATE_SPEC: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(POD_SPEC)),
];

const CONFIG_MAP: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapStr),
    f(3, "binaryData", MapBytes),
    f(4, "immutable", OptBool),
];
const SECRET: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "data", MapBytes),
    f(3, "type", Str),
    f(4, "stringData", MapStr),
    f(5, "immutable", OptBool),
];
const NAMESPACE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(&[r(1, "finalizers", Str)])),
    f(3, "status", Msg(&[f(1, "phase", Str)])),
];
const SERVICE_ACCOUNT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "secrets", Msg(OBJECT_REFERENCE)),
    r(3, "imagePullSecrets", Msg(LOCAL_OBJECT_REFERENCE)),
    f(4, "automountServiceAccountToken", OptBool),
];
const ROLLING_UPDATE: &[F] = &[
    f(1, "maxUnavailable", IntOrString),
    f(2, "maxSurge", IntOrString),
];
const DEPLOYMENT: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            f(1, "replicas", OptI32),
            f(2, "selector", Msg(LABEL_SELECTOR)),
            f(3, "template", Msg(POD_TEMPLATE_SPEC)),
            f(
                4,
                "strategy",
                Msg(&[
                    f(1, "type", Str),
                    f(2, "rollingUpdate", Msg(ROLLING_UPDATE)),
                ]),
            ),
            f(5, "minReadySeconds", I32),
            f(6, "revisionHistoryLimit", OptI32),
            f(7, "paused", Bool),
            f(9, "progressDeadlineSeconds", OptI32),
        ]),
    ),
];
const SERVICE_PORT: &[F] = &[
    f(1, "name", Str),
    f(2, "protocol", Str),
    f(6, "appProtocol", Str),
    f(3, "port", I32),
    f(4, "targetPort", IntOrString),
    f(5, "nodePort", I32),
];
const SERVICE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            r(1, "ports", Msg(SERVICE_PORT)),
            f(2, "selector", MapStr),
            f(3, "clusterIP", Str),
            r(18, "clusterIPs", Str),
            f(4, "type", Str),
            r(5, "externalIPs", Str),
            f(7, "sessionAffinity", Str),
            f(8, "loadBalancerIP", Str),
            r(9, "loadBalancerSourceRanges", Str),
            f(10, "externalName", Str),
            f(11, "externalTrafficPolicy", Str),
            f(13, "publishNotReadyAddresses", Bool),
            r(19, "ipFamilies", Str),
            f(17, "ipFamilyPolicy", Str),
            f(21, "loadBalancerClass", Str),
            f(22, "internalTrafficPolicy", Str),
        ]),
    ),
];
const JOB_SPEC: &[F] = &[
    f(1, "parallelism", OptI32),
    f(2, "completions", OptI32),
    f(3, "activeDeadlineSeconds", OptI64),
    f(7, "backoffLimit", OptI32),
    f(4, "selector", Msg(LABEL_SELECTOR)),
    f(5, "manualSelector", OptBool),
    f(6, "template", Msg(POD_TEMPLATE_SPEC)),
    f(8, "ttlSecondsAfterFinished", OptI32),
    f(9, "completionMode", Str),
    f(10, "suspend", OptBool),
];
const JOB: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(2, "spec", Msg(JOB_SPEC)),
];
const CRON_JOB: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            f(1, "schedule", Str),
            f(8, "timeZone", Str),
            f(2, "startingDeadlineSeconds", OptI64),
            f(3, "concurrencyPolicy", Str),
            f(4, "suspend", OptBool),
            f(
                5,
                "jobTemplate",
                Msg(&[
                    f(1, "metadata", Msg(OBJECT_META)),
                    f(2, "spec", Msg(JOB_SPEC)),
                ]),
            ),
            f(6, "successfulJobsHistoryLimit", OptI32),
            f(7, "failedJobsHistoryLimit", OptI32),
        ]),
    ),
];
const POLICY_RULE: &[F] = &[
    r(1, "verbs", Str),
    r(2, "apiGroups", Str),
    r(3, "resources", Str),
    r(4, "resourceNames", Str),
    r(5, "nonResourceURLs", Str),
];
const ROLE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
];
const CLUSTER_ROLE: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "rules", Msg(POLICY_RULE)),
    f(
        3,
        "aggregationRule",
        Msg(&[r(1, "clusterRoleSelectors", Msg(LABEL_SELECTOR))]),
    ),
];
const SUBJECT: &[F] = &[
    f(1, "kind", Str),
    f(2, "apiGroup", Str),
    f(3, "name", Str),
    f(4, "namespace", Str),
];
const ROLE_BINDING: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    r(2, "subjects", Msg(SUBJECT)),
    f(
        3,
        "roleRef",
        Msg(&[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)]),
    ),
];
const RESOURCE_QUOTA: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[f(1, "hard", MapQuantity), r(2, "scopes", Str)]),
    ),
];
const SELF_SUBJECT_ACCESS_REVIEW: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            f(
                1,
                "resourceAttributes",
                Msg(&[
                    f(1, "namespace", Str),
                    f(2, "verb", Str),
                    f(3, "group", Str),
                    f(4, "version", Str),
                    f(5, "resource", Str),
                    f(6, "subresource", Str),
                    f(7, "name", Str),
                ]),
            ),
            f(
                2,
                "nonResourceAttributes",
                Msg(&[f(1, "path", Str), f(2, "verb", Str)]),
            ),
        ]),
    ),
];
const TOKEN_REQUEST: &[F] = &[
    f(1, "metadata", Msg(OBJECT_META)),
    f(
        2,
        "spec",
        Msg(&[
            r(1, "audiences", Str),
            f(4, "expirationSeconds", OptI64),
            f(
                3,
                "boundObjectRef",
                Msg(&[
                    f(1, "kind", Str),
                    f(2, "apiVersion", Str),
                    f(3, "name", Str),
                    f(4, "uid", Str),
                ]),
            ),
        ]),
    ),
];
const SELF_SUBJECT_REVIEW: &[F] = &[f(1, "metadata", Msg(OBJECT_META))];
const DELETE_OPTIONS: &[F] = &[
    f(1, "gracePeriodSeconds", OptI64),
    f(
        2,
        "preconditions",
        Msg(&[f(1, "uid", Str), f(2, "resourceVersion", Str)]),
    ),
    f(3, "orphanDependents", OptBool),
    f(4, "propagationPolicy", Str),
    r(5, "dryRun", Str),
];

/// The schema of `kind` in `api_version`, if this decoder knows it.
fn schema(api_version: &str, kind: &str) -> Option<&'static [F]> {
    Some(match (api_version, kind) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Service") => SERVICE,
        ("v1", "ResourceQuota") => RESOURCE_QUOTA,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        ("batch/v1", "Job") => JOB,
        ("batch/v1", "CronJob") => CRON_JOB,
        ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
        ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => SELF_SUBJECT_ACCESS_REVIEW,
        ("authentication.k8s.io/v1", "TokenRequest") => TOKEN_REQUEST,
        ("authentication.k8s.io/v1", "SelfSubjectReview") => SELF_SUBJECT_REVIEW,
        (_, "DeleteOptions") => DELETE_OPTIONS,
        _ => return None,
    })
}

const MAGIC: &[u8] = b"k8s\0";

fn malformed(why: &str) -> ApiError {
    ApiError::bad_request(format!("error decoding protobuf body: {why}"))
}

/// A protobuf wire-format reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if n > self.buf.len() {
            return Err(malformed("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value, or None at the end.
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ApiError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| malformed("bad field number"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| malformed("bad length"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            w => return Err(malformed(&format!("unsupported wire type {w}"))),
        };
        Ok(Some((tag, wire)))
    }
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ApiError> {
    let mut reader = Reader { buf };
    let mut out = Vec::new();
    while let Some(field) = reader.field()? {
        out.push(field);
    }
    Ok(out)
}

fn string(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| malformed("string is not UTF-8"))
}

fn time(bytes: &[u8]) -> Result<Option<String>, ApiError> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (tag, wire) in fields(bytes)? {
        match (tag, wire) {
            (1, Wire::Varint(v)) => secs = v as i64,
            (2, Wire::Varint(v)) => nanos = i64::from(v as i32),
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    let t =
        chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| malformed("time out of range"))?;
    Ok(Some(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// A map entry: key (1) and value (2).
fn entry(bytes: &[u8]) -> Result<(String, Option<&[u8]>), ApiError> {
    let (mut key, mut value) = (String::new(), None);
    for (tag, wire) in fields(bytes)? {
        match (tag, wire) {
            (1, Wire::Bytes(b)) => key = string(b)?,
            (2, Wire::Bytes(b)) => value = Some(b),
            _ => {}
        }
    }
    Ok((key, value))
}

/// One scalar or message value of type `ty`; None for a zero value JSON would omit.
fn value(ty: T, wire: &Wire<'_>) -> Result<Option<Value>, ApiError> {
    Ok(match (ty, wire) {
        (Str, Wire::Bytes(b)) => Some(json!(string(b)?)).filter(|_| !b.is_empty()),
        (Bool, Wire::Varint(v)) => Some(json!(true)).filter(|_| *v != 0),
        (I32 | I64, Wire::Varint(0)) => None,
        (OptBool, Wire::Varint(v)) => Some(json!(*v != 0)),
        (I32 | OptI32, Wire::Varint(v)) => Some(json!(*v as i32)),
        (I64 | OptI64, Wire::Varint(v)) => Some(json!(*v as i64)),
        (Msg(schema), Wire::Bytes(b)) => Some(message(schema, b)?),
        (Time, Wire::Bytes(b)) => time(b)?.map(Value::String),
        (Quantity, Wire::Bytes(b)) => {
            let mut s = String::new();
            for (tag, w) in fields(b)? {
                if let (1, Wire::Bytes(v)) = (tag, w) {
                    s = string(v)?;
                }
            }
            Some(json!(s))
        }
        (IntOrString, Wire::Bytes(b)) => {
            let (mut is_string, mut int, mut text) = (false, 0i32, String::new());
            for (tag, w) in fields(b)? {
                match (tag, w) {
                    (1, Wire::Varint(v)) => is_string = v == 1,
                    (2, Wire::Varint(v)) => int = v as i32,
                    (3, Wire::Bytes(v)) => text = string(v)?,
                    _ => {}
                }
            }
            Some(if is_string { json!(text) } else { json!(int) })
        }
        _ => return Err(malformed("field has an unexpected wire type")),
    })
}

fn message(schema: &[F], buf: &[u8]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (tag, wire) in fields(buf)? {
        let Some(&F(_, name, ty, repeated)) = schema.iter().find(|f| f.0 == tag) else {
            tracing::debug!("protobuf: skipping unknown field {tag}");
            continue;
        };
        match ty {
            MapStr | MapBytes | MapQuantity => {
                let Wire::Bytes(b) = wire else {
                    return Err(malformed("map entry has an unexpected wire type"));
                };
                let (key, v) = entry(b)?;
                let v = match (ty, v) {
                    (MapStr, v) => json!(string(v.unwrap_or_default())?),
                    (MapBytes, v) => json!(STANDARD.encode(v.unwrap_or_default())),
                    (_, Some(v)) => value(Quantity, &Wire::Bytes(v))?.unwrap_or(json!("")),
                    (_, None) => json!(""),
                };
                let map = out.entry(name).or_insert_with(|| json!({}));
                map[key] = v;
            }
            Inline(schema) => {
                if let Wire::Bytes(b) = wire {
                    if let Value::Object(inner) = message(schema, b)? {
                        out.extend(inner);
                    }
                }
            }
            _ if repeated => {
                // Repeated scalars may come packed.
                let items = match (ty, &wire) {
                    (Bool | I32 | I64 | OptBool | OptI32 | OptI64, Wire::Bytes(b)) => {
                        let mut r = Reader { buf: b };
                        let mut items = Vec::new();
                        while !r.buf.is_empty() {
                            items.push(value(ty, &Wire::Varint(r.varint()?))?);
                        }
                        items
                    }
                    // An empty string in a list still counts.
                    (Str, Wire::Bytes(b)) => vec![Some(json!(string(b)?))],
                    _ => vec![value(ty, &wire)?],
                };
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.extend(items.into_iter().flatten());
                }
            }
            _ => {
                if let Some(v) = value(ty, &wire)? {
                    out.insert(name.to_string(), v);
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body to the object's JSON form.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| malformed("missing the k8s protobuf prefix"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (tag, wire) in fields(envelope)? {
        match (tag, wire) {
            (1, Wire::Bytes(b)) => {
                for (t, w) in fields(b)? {
                    match (t, w) {
                        (1, Wire::Bytes(v)) => api_version = string(v)?,
                        (2, Wire::Bytes(v)) => kind = string(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            (3, Wire::Bytes(b)) if !b.is_empty() => {
                return Err(malformed("compressed protobuf bodies are not supported"))
            }
            _ => {}
        }
    }
    let schema = schema(&api_version, &kind).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("protobuf encoding of {kind} ({api_version}) is not supported; send application/json"),
        )
    })?;
    let mut obj = message(schema, raw.unwrap_or_default())?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(tag: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn varint_field(tag: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3, out);
        varint(v, out);
    }

    #[test]
    fn decodes_a_configmap_as_kubectl_sends_it() {
        let mut meta = Vec::new();
        bytes_field(1, b"c1", &mut meta);
        bytes_field(2, b"", &mut meta);
        bytes_field(8, b"", &mut meta); // zero creationTimestamp
        let mut label = Vec::new();
        bytes_field(1, b"app", &mut label);
        bytes_field(2, b"web", &mut label);
        bytes_field(11, &label, &mut meta);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        let mut entry = Vec::new();
        bytes_field(1, b"a", &mut entry);
        bytes_field(2, b"b", &mut entry);
        bytes_field(2, &entry, &mut cm);
        varint_field(4, 1, &mut cm);
        varint_field(99, 7, &mut cm); // unknown: skipped
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"ConfigMap", &mut type_meta);
        let mut body = MAGIC.to_vec();
        bytes_field(1, &type_meta, &mut body);
        bytes_field(2, &cm, &mut body);
        bytes_field(3, b"", &mut body);
        bytes_field(4, b"", &mut body);
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c1", "labels": {"app": "web"}},
                   "data": {"a": "b"}, "immutable": true})
        );
        assert_eq!(decode(b"{}").unwrap_err().code, 400);
        let mut other = MAGIC.to_vec();
        let mut tm = Vec::new();
        bytes_field(2, b"Pod", &mut tm);
        bytes_field(1, &tm, &mut other);
        assert_eq!(decode(&other).unwrap_err().code, 415);
    }

    #[test]
    fn int_or_string_and_negative_ints() {
        let mut port = Vec::new();
        varint_field(3, 80, &mut port);
        let mut target = Vec::new();
        varint_field(1, 1, &mut target);
        bytes_field(3, b"http", &mut target);
        bytes_field(4, &target, &mut port);
        assert_eq!(
            message(SERVICE_PORT, &port).unwrap(),
            json!({"port": 80, "targetPort": "http"})
        );
        let mut spec = Vec::new();
        varint_field(1, (-1i64) as u64, &mut spec);
        let v = message(JOB_SPEC, &spec).unwrap();
        assert_eq!(v["parallelism"], -1);
    }
}
