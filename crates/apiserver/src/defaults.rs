//! Defaulting of the built-in kinds: the values upstream's `SetDefaults_*` functions fill
//! in when a field is left out, for the fields clients and `kubectl describe` look at
//! (Pod restart and DNS policy, container pull policy and port protocol, Deployment
//! strategy and history limits, Service type and ports, Job and CronJob policies).
//! Only missing fields are set, so defaulting twice changes nothing.

use serde_json::{json, Map, Value};

use crate::catalog::Resource;

/// Sets `key` to `value` in `map` if it is missing.
fn or(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

fn object<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

/// Upstream's image pull policy default: Always for `:latest` or untagged images.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        return "IfNotPresent";
    } else {
        name.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None | Some("latest") => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("").to_string();
    let Some(m) = c.as_object_mut() else { return };
    or(m, "terminationMessagePath", json!("/dev/termination-log"));
    or(m, "terminationMessagePolicy", json!("File"));
    if !image.is_empty() {
        or(m, "imagePullPolicy", json!(pull_policy(&image)));
    }
    or(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            or(p, "protocol", json!("TCP"));
        }
    }
}

/// A PodSpec (of a Pod or of a template).
fn pod_spec(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(container);
        }
    }
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    or(m, "restartPolicy", json!("Always"));
    or(m, "terminationGracePeriodSeconds", json!(30));
    or(m, "dnsPolicy", json!("ClusterFirst"));
    or(m, "securityContext", json!({}));
    or(m, "schedulerName", json!("default-scheduler"));
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template") {
        if let Some(s) = t.get_mut("spec") {
            pod_spec(s);
        }
    }
}

/// Fills in the defaults of `obj`, a `res`.
pub fn apply(res: &Resource, obj: &mut Value) {
    if !res.builtin {
        return;
    }
    let kind = res.kind.as_str();
    if res.group.is_empty() && kind == "Pod" {
        if let Some(spec) = obj.get_mut("spec") {
            pod_spec(spec);
        }
        return;
    }
    if res.group.is_empty() && kind == "Service" {
        let Some(spec) = object(obj, "spec") else {
            return;
        };
        let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
        or(spec, "type", json!("ClusterIP"));
        if !external {
            or(spec, "sessionAffinity", json!("None"));
        }
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                or(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    or(p, "targetPort", port);
                }
            }
        }
        return;
    }
    let Some(spec) = object(obj, "spec") else {
        return;
    };
    match (res.group.as_str(), kind) {
        ("apps", "Deployment") => {
            or(spec, "replicas", json!(1));
            or(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            );
            if let Some(s) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
                if s.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("RollingUpdate")
                    == "RollingUpdate"
                {
                    or(s, "type", json!("RollingUpdate"));
                    or(
                        s,
                        "rollingUpdate",
                        json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                    );
                }
            }
            or(spec, "revisionHistoryLimit", json!(10));
            or(spec, "progressDeadlineSeconds", json!(600));
            template(spec);
        }
        ("apps", "ReplicaSet") => {
            or(spec, "replicas", json!(1));
            template(spec);
        }
        ("apps", "StatefulSet") => {
            or(spec, "replicas", json!(1));
            or(spec, "podManagementPolicy", json!("OrderedReady"));
            or(spec, "revisionHistoryLimit", json!(10));
            or(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            template(spec);
        }
        ("apps", "DaemonSet") => {
            or(spec, "revisionHistoryLimit", json!(10));
            or(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            template(spec);
        }
        ("batch", "Job") => {
            or(spec, "backoffLimit", json!(6));
            or(spec, "completionMode", json!("NonIndexed"));
            or(spec, "suspend", json!(false));
            if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                // Jobs' pods must not restart Always; upstream requires it set, kubectl sets Never.
                pod_spec(t);
            }
        }
        ("batch", "CronJob") => {
            or(spec, "concurrencyPolicy", json!("Allow"));
            or(spec, "suspend", json!(false));
            or(spec, "successfulJobsHistoryLimit", json!(3));
            or(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.get_mut("jobTemplate").and_then(|j| j.get_mut("spec")) {
                if let Some(js) = job.as_object_mut() {
                    or(js, "backoffLimit", json!(6));
                    template(js);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn deployments_and_services_get_upstream_defaults() {
        let c = Catalog::builtin();
        let d = c.lookup("apps", "v1", "deployments").unwrap();
        let mut obj = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "nginx:1.27"}]}}}});
        apply(&d, &mut obj);
        assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(obj["spec"]["revisionHistoryLimit"], 10);
        let pod = &obj["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        let before = obj.clone();
        apply(&d, &mut obj);
        assert_eq!(obj, before, "defaulting is idempotent");
        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply(&d, &mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));

        let svc = c.lookup("", "v1", "services").unwrap();
        let mut obj = json!({"spec": {"ports": [{"port": 80}]}});
        apply(&svc, &mut obj);
        assert_eq!(
            obj["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(obj["spec"]["type"], "ClusterIP");
        assert_eq!(pull_policy("registry:5000/app"), "Always");
        assert_eq!(pull_policy("registry:5000/app:v1"), "IfNotPresent");
    }
}
