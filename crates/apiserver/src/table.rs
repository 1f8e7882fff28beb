//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! which `kubectl get` prints. Columns follow upstream's printers for the common kinds;
//! every other kind gets NAME and AGE, as upstream does for kinds without printers.

use axum::http::HeaderMap;
use serde_json::{json, Value};

use crate::catalog::Resource;
use crate::meta;
use crate::objects::ListPage;
use crate::request::{accepts, Params};

/// Whether the client asked for a Table.
pub fn wanted(headers: &HeaderMap) -> bool {
    accepts(headers, "as=Table")
}

/// One column: header, type, priority (1 = only with `-o wide`) and how to fill it.
struct Column {
    name: String,
    kind: String,
    priority: u8,
    cell: Cell,
}

enum Cell {
    /// A built-in printer's function.
    Fn(fn(&Value) -> Value),
    /// A CRD's `additionalPrinterColumns` JSONPath and column type.
    Path(String, String),
}

fn col(name: &str, cell: fn(&Value) -> Value) -> Column {
    Column {
        name: name.to_string(),
        kind: "string".to_string(),
        priority: 0,
        cell: Cell::Fn(cell),
    }
}

fn wide(name: &str, cell: fn(&Value) -> Value) -> Column {
    Column {
        priority: 1,
        ..col(name, cell)
    }
}

fn int(name: &str, cell: fn(&Value) -> Value) -> Column {
    Column {
        kind: "integer".to_string(),
        ..col(name, cell)
    }
}

/// Evaluates the simple JSONPaths CRDs use: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    for segment in split_path(path) {
        let (field, mut rest) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        while let Some(end) = rest.find(']') {
            let index = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(filter) = index.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let (key, want) = filter.split_once("==")?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()?
                    .iter()
                    .find(|item| item.get(key.trim()).is_some_and(|v| scalar_text(v) == want))?;
            } else {
                cur = cur.get(index.parse::<usize>().ok()?)?;
            }
        }
    }
    Some(cur)
}

/// A scalar as a JSONPath filter compares it: strings bare, others in JSON form.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits a JSONPath on the dots outside brackets.
fn split_path(path: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out.into_iter().filter(|s| !s.is_empty()).collect()
}

fn path_cell(obj: &Value, path: &str, kind: &str) -> Value {
    match (json_path(obj, path), kind) {
        (None, _) | (Some(Value::Null), _) => Value::Null,
        (Some(Value::String(t)), "date") => json!(age_of(t)),
        (Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))), _) => v.clone(),
        (Some(v), _) => json!(v.to_string()),
    }
}

fn name(o: &Value) -> Value {
    json!(meta::name(o))
}

fn age(o: &Value) -> Value {
    json!(age_of(meta::str_field(o, "creationTimestamp")))
}

fn s(v: &Value) -> Value {
    json!(v.as_str().unwrap_or(""))
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn count(v: &Value) -> i64 {
    v.as_object().map_or(0, |m| m.len() as i64) + v.as_array().map_or(0, |a| a.len() as i64)
}

fn or_none(v: String) -> Value {
    json!(if v.is_empty() {
        "<none>".to_string()
    } else {
        v
    })
}

fn ready(o: &Value) -> Value {
    json!(format!(
        "{}/{}",
        n(&o["status"]["readyReplicas"]),
        n(&o["spec"]["replicas"])
    ))
}

fn containers(o: &Value, field: &str) -> Value {
    let list = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    json!(list
        .iter()
        .map(|c| c[field].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(","))
}

fn selector(o: &Value) -> Value {
    let labels = o["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| {
            o["spec"]["selector"]
                .as_object()
                .filter(|s| !s.contains_key("matchLabels"))
        });
    or_none(
        labels
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    )
}

fn pod_ready(o: &Value) -> Value {
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value) -> Value {
    if meta::is_deleting(o) {
        return json!("Terminating");
    }
    let reason = o["status"]["reason"].as_str().filter(|r| !r.is_empty());
    json!(reason
        .or(o["status"]["phase"].as_str())
        .unwrap_or("Pending"))
}

fn restarts(o: &Value) -> Value {
    let statuses = o["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    json!(statuses.iter().map(|c| n(&c["restartCount"])).sum::<i64>())
}

fn service_ports(o: &Value) -> Value {
    let ports = o["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let text: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", n(&p["port"])),
                None => format!("{}/{proto}", n(&p["port"])),
            }
        })
        .collect();
    or_none(text.join(","))
}

fn node_status(o: &Value) -> Value {
    let conditions = o["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.map(|c| c["status"].as_str().unwrap_or("")) {
        Some("True") => "Ready".to_string(),
        _ => "NotReady".to_string(),
    };
    if o["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn endpoints(o: &Value) -> Value {
    let mut out = Vec::new();
    for subset in o["subsets"].as_array().cloned().unwrap_or_default() {
        for addr in subset["addresses"].as_array().cloned().unwrap_or_default() {
            for port in subset["ports"].as_array().cloned().unwrap_or_default() {
                out.push(format!(
                    "{}:{}",
                    addr["ip"].as_str().unwrap_or(""),
                    n(&port["port"])
                ));
            }
        }
    }
    or_none(out.join(","))
}

/// The columns of `res` (NAME first and AGE somewhere, as upstream prints them).
fn columns(res: &Resource) -> Vec<Column> {
    if !res.builtin && !res.printer_columns.is_empty() {
        let mut cols = vec![col("Name", name)];
        cols.extend(res.printer_columns.iter().map(|c| Column {
            name: c.name.clone(),
            kind: if c.kind == "date" {
                "string".to_string()
            } else {
                c.kind.clone()
            },
            priority: c.priority,
            cell: Cell::Path(c.json_path.clone(), c.kind.clone()),
        }));
        return cols;
    }
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Namespace") => vec![
            col("Name", name),
            col("Status", |o| s(&o["status"]["phase"])),
            col("Age", age),
        ],
        ("", "ConfigMap") => vec![
            col("Name", name),
            int("Data", |o| {
                json!(count(&o["data"]) + count(&o["binaryData"]))
            }),
            col("Age", age),
        ],
        ("", "Secret") => vec![
            col("Name", name),
            col("Type", |o| s(&o["type"])),
            int("Data", |o| json!(count(&o["data"]))),
            col("Age", age),
        ],
        ("", "ServiceAccount") => vec![
            col("Name", name),
            int("Secrets", |o| json!(count(&o["secrets"]))),
            col("Age", age),
        ],
        ("", "Pod") => vec![
            col("Name", name),
            col("Ready", pod_ready),
            col("Status", pod_status),
            int("Restarts", restarts),
            col("Age", age),
            wide("IP", |o| {
                or_none(o["status"]["podIP"].as_str().unwrap_or("").to_string())
            }),
            wide("Node", |o| {
                or_none(o["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            }),
        ],
        ("", "Service") => vec![
            col("Name", name),
            col("Type", |o| {
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP"))
            }),
            col("Cluster-IP", |o| {
                or_none(o["spec"]["clusterIP"].as_str().unwrap_or("").to_string())
            }),
            col("External-IP", |o| {
                let ips = o["spec"]["externalIPs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                or_none(
                    ips.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
            col("Port(s)", service_ports),
            col("Age", age),
            wide("Selector", |o| {
                let sel = o["spec"]["selector"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                or_none(
                    sel.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }),
        ],
        ("", "Endpoints") => vec![
            col("Name", name),
            col("Endpoints", endpoints),
            col("Age", age),
        ],
        ("", "Node") => vec![
            col("Name", name),
            col("Status", node_status),
            col("Roles", |_| json!("<none>")),
            col("Age", age),
            col("Version", |o| s(&o["status"]["nodeInfo"]["kubeletVersion"])),
        ],
        ("", "Event") => vec![
            col("Last Seen", |o| {
                json!(age_of(
                    o["lastTimestamp"]
                        .as_str()
                        .unwrap_or(meta::str_field(o, "creationTimestamp"))
                ))
            }),
            col("Type", |o| s(&o["type"])),
            col("Reason", |o| s(&o["reason"])),
            col("Object", |o| {
                let io = &o["involvedObject"];
                json!(format!(
                    "{}/{}",
                    io["kind"].as_str().unwrap_or("").to_ascii_lowercase(),
                    io["name"].as_str().unwrap_or("")
                ))
            }),
            col("Message", |o| s(&o["message"])),
        ],
        ("apps", "Deployment") => vec![
            col("Name", name),
            col("Ready", ready),
            int("Up-to-date", |o| json!(n(&o["status"]["updatedReplicas"]))),
            int("Available", |o| json!(n(&o["status"]["availableReplicas"]))),
            col("Age", age),
            wide("Containers", |o| containers(o, "name")),
            wide("Images", |o| containers(o, "image")),
            wide("Selector", selector),
        ],
        ("apps", "ReplicaSet") => vec![
            col("Name", name),
            int("Desired", |o| json!(n(&o["spec"]["replicas"]))),
            int("Current", |o| json!(n(&o["status"]["replicas"]))),
            int("Ready", |o| json!(n(&o["status"]["readyReplicas"]))),
            col("Age", age),
            wide("Containers", |o| containers(o, "name")),
            wide("Images", |o| containers(o, "image")),
            wide("Selector", selector),
        ],
        ("apps", "StatefulSet") => vec![col("Name", name), col("Ready", ready), col("Age", age)],
        ("apps", "DaemonSet") => vec![
            col("Name", name),
            int("Desired", |o| {
                json!(n(&o["status"]["desiredNumberScheduled"]))
            }),
            int("Current", |o| {
                json!(n(&o["status"]["currentNumberScheduled"]))
            }),
            int("Ready", |o| json!(n(&o["status"]["numberReady"]))),
            int("Up-to-date", |o| {
                json!(n(&o["status"]["updatedNumberScheduled"]))
            }),
            int("Available", |o| json!(n(&o["status"]["numberAvailable"]))),
            col("Age", age),
        ],
        ("batch", "Job") => vec![
            col("Name", name),
            col("Status", |o| {
                let conditions = o["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let done = |t: &str| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == t && c["status"] == "True")
                };
                json!(if done("Complete") {
                    "Complete"
                } else if done("Failed") {
                    "Failed"
                } else {
                    "Running"
                })
            }),
            col("Completions", |o| {
                json!(format!(
                    "{}/{}",
                    n(&o["status"]["succeeded"]),
                    o["spec"]["completions"].as_i64().unwrap_or(1)
                ))
            }),
            col("Age", age),
        ],
        ("batch", "CronJob") => vec![
            col("Name", name),
            col("Schedule", |o| s(&o["spec"]["schedule"])),
            col("Suspend", |o| {
                json!(if o["spec"]["suspend"] == true {
                    "True"
                } else {
                    "False"
                })
            }),
            int("Active", |o| json!(count(&o["status"]["active"]))),
            col("Age", age),
        ],
        _ => vec![col("Name", name), col("Age", age)],
    }
}

/// How `Age` reads: upstream's `HumanDuration`.
fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    let (years, days) = (hours / 24 / 365, (hours / 24) % 365);
    if hours < 24 * 365 * 8 && days != 0 {
        return format!("{years}y{days}d");
    }
    format!("{years}y")
}

fn age_of(timestamp: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

fn column_definitions(cols: &[Column]) -> Value {
    json!(cols
        .iter()
        .map(|c| json!({
            "name": c.name,
            "type": c.kind,
            "format": if c.name == "Name" { "name" } else { "" },
            "description": "",
            "priority": c.priority,
        }))
        .collect::<Vec<_>>())
}

/// The `object` of a row: the whole object with `includeObject=Object`, nothing with
/// `None`, otherwise (the default) its metadata as a PartialObjectMetadata.
fn row_object(obj: &Value, params: &Params) -> Value {
    match params.str("includeObject") {
        "Object" => obj.clone(),
        "None" => Value::Null,
        _ => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        }),
    }
}

fn row(cols: &[Column], obj: &Value, params: &Params) -> Value {
    let cells: Vec<Value> = cols
        .iter()
        .map(|c| match &c.cell {
            Cell::Fn(f) => f(obj),
            Cell::Path(path, kind) => path_cell(obj, path, kind),
        })
        .collect();
    json!({"cells": cells, "object": row_object(obj, params)})
}

pub fn for_list(res: &Resource, page: &ListPage, params: &Params) -> Value {
    let cols = columns(res);
    let rows: Vec<Value> = page.items.iter().map(|o| row(&cols, o, params)).collect();
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(&cols),
        "rows": rows,
    })
}

pub fn for_object(res: &Resource, obj: &Value, params: &Params) -> Value {
    let cols = columns(res);
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": meta::resource_version(obj)},
        "columnDefinitions": column_definitions(&cols),
        "rows": [row(&cols, obj, params)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(60 * 45), "45m");
        assert_eq!(human_duration(3600 * 5 + 60 * 3), "5h3m");
        assert_eq!(human_duration(3600 * 24 * 3), "3d");
        assert_eq!(human_duration(3600 * 24 * 400), "400d");
    }

    #[test]
    fn tables_have_upstream_columns() {
        let c = Catalog::builtin();
        let cm = c.lookup("", "v1", "configmaps").unwrap();
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": meta::now()}, "data": {"x": "1", "y": "2"}});
        let t = for_object(&cm, &obj, &Params::default());
        assert_eq!(t["rows"][0]["cells"], json!(["a", 2, "0s"]));
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn json_paths_for_printer_columns() {
        let o = json!({"spec": {"size": 3, "items": ["a", "b"]},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(json_path(&o, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&o, ".spec.items[1]"), Some(&json!("b")));
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            Some(&json!("True"))
        );
        assert_eq!(json_path(&o, ".spec.missing"), None);
    }
}
