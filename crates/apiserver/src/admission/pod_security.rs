//! Pod Security Admission: the Pod Security Standards' baseline and restricted checks
//! (as of Kubernetes 1.32, "latest"), with upstream's check order and wording, and the
//! namespace labels that pick the enforce and warn levels.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level and the version label beside it (`baseline:latest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: String,
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.name(), self.version)
    }
}

/// The levels a namespace asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub warn: LevelVersion,
}

/// The cluster default when a namespace has no label. Upstream's built-in default is
/// privileged; cloudlet enforces baseline, as its deployment guides recommend.
pub const DEFAULT_LEVEL: Level = Level::Baseline;

fn mode(labels: &Map<String, Value>, mode: &str, default: Level) -> LevelVersion {
    let label = |suffix: &str| {
        labels
            .get(&format!("pod-security.kubernetes.io/{mode}{suffix}"))
            .and_then(Value::as_str)
    };
    // An unparsable level fails closed, as upstream does.
    let level = match label("") {
        None => default,
        Some(l) => Level::parse(l).unwrap_or(Level::Restricted),
    };
    let version = label("-version").unwrap_or("latest").to_string();
    LevelVersion { level, version }
}

/// The policy of a namespace with `labels`; warn defaults to the enforce level.
pub fn policy(labels: &Map<String, Value>) -> Policy {
    let enforce = mode(labels, "enforce", DEFAULT_LEVEL);
    let warn = mode(labels, "warn", enforce.level);
    Policy { enforce, warn }
}

fn join_quote(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("\"{}\"", items.join("\", \""))
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Every container of the spec: init, regular and ephemeral.
fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect()
}

fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or("").to_string()
}

/// `containers "a", "b"` for the containers `bad` picks.
fn bad_containers(spec: &Value, mut bad: impl FnMut(&Value) -> bool) -> Vec<String> {
    containers(spec)
        .into_iter()
        .filter(|c| bad(c))
        .map(name)
        .collect()
}

fn setters(pod: bool, containers: &[String]) -> Vec<String> {
    let mut s = Vec::new();
    if pod {
        s.push("pod".to_string());
    }
    if !containers.is_empty() {
        s.push(format!(
            "{} {}",
            plural("container", "containers", containers.len()),
            join_quote(containers)
        ));
    }
    s
}

type Finding = (String, String);

fn app_armor(meta: &Value, spec: &Value) -> Option<Finding> {
    let allowed = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"));
    let mut values = BTreeSet::new();
    let pod_bad = spec["securityContext"]["appArmorProfile"]
        .get("type")
        .filter(|t| !allowed(t))
        .inspect(|t| {
            values.insert(t.as_str().unwrap_or("").to_string());
        })
        .is_some();
    let bad: Vec<String> = containers(spec)
        .into_iter()
        .filter_map(|c| {
            let t = c["securityContext"]["appArmorProfile"].get("type")?;
            (!allowed(t)).then(|| {
                values.insert(t.as_str().unwrap_or("").to_string());
                name(c)
            })
        })
        .collect();
    let mut setters = setters(pod_bad, &bad);
    let mut values: Vec<String> = values.into_iter().collect();
    let mut annotations: Vec<String> = meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("container.apparmor.security.beta.kubernetes.io/"))
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or("");
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (!ok).then(|| format!("{k}={v:?}"))
        })
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(plural("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    (!setters.is_empty()).then(|| {
        (
            plural(
                "forbidden AppArmor profile",
                "forbidden AppArmor profiles",
                values.len(),
            )
            .to_string(),
            format!(
                "{} must not set AppArmor profile type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        )
    })
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps(c: &Value) -> Vec<String> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn capabilities_baseline(spec: &Value) -> Option<Finding> {
    let mut caps = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
            .collect();
        let bad = !extra.is_empty();
        caps.extend(extra);
        bad
    });
    (!bad.is_empty()).then(|| {
        let caps: Vec<String> = caps.into_iter().collect();
        (
            "non-default capabilities".to_string(),
            format!(
                "{} {} must not include {} in securityContext.capabilities.add",
                plural("container", "containers", bad.len()),
                join_quote(&bad),
                join_quote(&caps)
            ),
        )
    })
}

fn host_namespaces(spec: &Value) -> Option<Finding> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    (!set.is_empty()).then(|| ("host namespaces".to_string(), set.join(", ")))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec["volumes"].as_array().into_iter().flatten()
}

fn host_path_volumes(spec: &Value) -> Option<Finding> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| v.get("hostPath").is_some())
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes".to_string(),
            format!(
                "{} {}",
                plural("volume", "volumes", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn host_ports(spec: &Value) -> Option<Finding> {
    let mut ports = BTreeSet::new();
    let bad = bad_containers(spec, |c| {
        let found: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64().filter(|p| *p != 0))
            .map(|p| p.to_string())
            .collect();
        let bad = !found.is_empty();
        ports.extend(found);
        bad
    });
    (!bad.is_empty()).then(|| {
        let ports: Vec<String> = ports.into_iter().collect();
        (
            "hostPort".to_string(),
            format!(
                "{} {} {} {} {}",
                plural("container", "containers", bad.len()),
                join_quote(&bad),
                plural("uses", "use", bad.len()),
                plural("hostPort", "hostPorts", ports.len()),
                ports.join(", ")
            ),
        )
    })
}

fn privileged(spec: &Value) -> Option<Finding> {
    let bad = bad_containers(spec, |c| c["securityContext"]["privileged"] == true);
    (!bad.is_empty()).then(|| {
        (
            "privileged".to_string(),
            format!(
                "{} {} must not set securityContext.privileged=true",
                plural("container", "containers", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn proc_mount(spec: &Value) -> Option<Finding> {
    let mut types = BTreeSet::new();
    let bad = bad_containers(spec, |c| match c["securityContext"]["procMount"].as_str() {
        Some(t) if t != "Default" => {
            types.insert(t.to_string());
            true
        }
        _ => false,
    });
    (!bad.is_empty()).then(|| {
        let types: Vec<String> = types.into_iter().collect();
        (
            "procMount".to_string(),
            format!(
                "{} {} must not set securityContext.procMount to {}",
                plural("container", "containers", bad.len()),
                join_quote(&bad),
                join_quote(&types)
            ),
        )
    })
}

fn se_linux(spec: &Value) -> Option<Finding> {
    const TYPES: &[&str] = &[
        "",
        "container_t",
        "container_init_t",
        "container_kvm_t",
        "container_engine_t",
    ];
    let (mut types, mut user, mut role) = (BTreeSet::new(), false, false);
    let mut bad_opts = |o: &Value| {
        let Some(o) = o.as_object() else { return false };
        let mut bad = false;
        let t = o.get("type").and_then(Value::as_str).unwrap_or("");
        if !TYPES.contains(&t) {
            types.insert(t.to_string());
            bad = true;
        }
        if !o
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            user = true;
            bad = true;
        }
        if !o
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            role = true;
            bad = true;
        }
        bad
    };
    let pod_bad = bad_opts(&spec["securityContext"]["seLinuxOptions"]);
    let bad: Vec<String> = containers(spec)
        .into_iter()
        .filter(|c| bad_opts(&c["securityContext"]["seLinuxOptions"]))
        .map(name)
        .collect();
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !types.is_empty() {
        let types: Vec<String> = types.into_iter().collect();
        data.push(format!(
            "{} {}",
            plural("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if user {
        data.push("user may not be set".to_string());
    }
    if role {
        data.push("role may not be set".to_string());
    }
    Some((
        "seLinuxOptions".to_string(),
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    ))
}

/// Seccomp, baseline (`Unconfined` forbidden) or restricted (also required).
fn seccomp(spec: &Value, restricted: bool) -> Option<Finding> {
    let valid = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"));
    let mut values = BTreeSet::new();
    let pod_type = spec["securityContext"]["seccompProfile"].get("type");
    let pod_bad = pod_type.is_some_and(|t| !valid(t));
    if let Some(t) = pod_type.filter(|t| !valid(t)) {
        values.insert(t.as_str().unwrap_or("").to_string());
    }
    let pod_set = pod_type.is_some_and(valid);
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match c["securityContext"]["seccompProfile"].get("type") {
            Some(t) if !valid(t) => {
                values.insert(t.as_str().unwrap_or("").to_string());
                explicit.push(name(c));
            }
            Some(_) => {}
            None if !pod_set => implicit.push(name(c)),
            None => {}
        }
    }
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        let values: Vec<String> = values.into_iter().collect();
        return Some((
            "seccompProfile".to_string(),
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        ));
    }
    (restricted && !implicit.is_empty()).then(|| {
        (
            "seccompProfile".to_string(),
            format!(
                "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                plural("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn sysctls(spec: &Value) -> Option<Finding> {
    let bad: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".to_string(), bad.join(", ")))
}

fn host_process(spec: &Value) -> Option<Finding> {
    let set = |sc: &Value| sc["windowsOptions"]["hostProcess"] == true;
    let bad = bad_containers(spec, |c| set(&c["securityContext"]));
    let setters = setters(set(&spec["securityContext"]), &bad);
    (!setters.is_empty()).then(|| {
        (
            "hostProcess".to_string(),
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters.join(" and ")
            ),
        )
    })
}

fn windows(spec: &Value) -> bool {
    spec["os"]["name"] == "windows"
}

fn allow_privilege_escalation(spec: &Value) -> Option<Finding> {
    if windows(spec) {
        return None;
    }
    let bad = bad_containers(spec, |c| {
        c["securityContext"]["allowPrivilegeEscalation"] != false
    });
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".to_string(),
            format!(
                "{} {} must set securityContext.allowPrivilegeEscalation=false",
                plural("container", "containers", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn capabilities_restricted(spec: &Value) -> Option<Finding> {
    if windows(spec) {
        return None;
    }
    let mut caps = BTreeSet::new();
    let no_drop = bad_containers(spec, |c| {
        !c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL")
    });
    let adding = bad_containers(spec, |c| {
        let extra: Vec<String> = added_caps(c)
            .into_iter()
            .filter(|a| a != "NET_BIND_SERVICE")
            .collect();
        let bad = !extra.is_empty();
        caps.extend(extra);
        bad
    });
    let mut details = Vec::new();
    if !no_drop.is_empty() {
        details.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            plural("container", "containers", no_drop.len()),
            join_quote(&no_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = caps.into_iter().collect();
        details.push(format!(
            "{} {} must not include {} in securityContext.capabilities.add",
            plural("container", "containers", adding.len()),
            join_quote(&adding),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".to_string(), details.join("; ")))
}

fn restricted_volumes(spec: &Value) -> Option<Finding> {
    const ALLOWED: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut types = BTreeSet::new();
    let bad: Vec<String> = volumes(spec)
        .filter(|v| {
            let kinds: Vec<&String> = v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
                .filter(|k| *k != "name")
                .collect();
            if kinds.iter().any(|k| ALLOWED.contains(&k.as_str())) {
                return false;
            }
            types.insert(
                kinds
                    .first()
                    .map_or("unknown".to_string(), |k| k.to_string()),
            );
            true
        })
        .map(name)
        .collect();
    (!bad.is_empty()).then(|| {
        let types: Vec<String> = types.into_iter().collect();
        (
            "restricted volume types".to_string(),
            format!(
                "{} {} {} {} {}",
                plural("volume", "volumes", bad.len()),
                join_quote(&bad),
                plural("uses", "use", bad.len()),
                plural(
                    "restricted volume type",
                    "restricted volume types",
                    types.len()
                ),
                join_quote(&types)
            ),
        )
    })
}

fn run_as_non_root(spec: &Value) -> Option<Finding> {
    let pod = &spec["securityContext"]["runAsNonRoot"];
    let pod_bad = *pod == false;
    let pod_ok = *pod == true;
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for c in containers(spec) {
        match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(false) => explicit.push(name(c)),
            Some(true) => {}
            None if !pod_ok => implicit.push(name(c)),
            None => {}
        }
    }
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        return Some((
            "runAsNonRoot != true".to_string(),
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        (
            "runAsNonRoot != true".to_string(),
            format!(
                "pod or {} {} must set securityContext.runAsNonRoot=true",
                plural("container", "containers", implicit.len()),
                join_quote(&implicit)
            ),
        )
    })
}

fn run_as_user(spec: &Value) -> Option<Finding> {
    let bad = bad_containers(spec, |c| c["securityContext"]["runAsUser"] == 0);
    let setters = setters(spec["securityContext"]["runAsUser"] == 0, &bad);
    (!setters.is_empty()).then(|| {
        (
            "runAsUser=0".to_string(),
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        )
    })
}

/// The violations of `level` by a pod (or template) with `meta` and `spec`, in upstream's
/// order: baseline checks by ID, then restricted ones (which replace the baseline
/// capabilities, hostPath and seccomp checks).
pub fn check(level: Level, meta: &Value, spec: &Value) -> Vec<Finding> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let r = level == Level::Restricted;
    let mut out: Vec<Option<Finding>> = vec![
        app_armor(meta, spec),
        if r { None } else { capabilities_baseline(spec) },
        host_namespaces(spec),
        if r { None } else { host_path_volumes(spec) },
        host_ports(spec),
        privileged(spec),
        proc_mount(spec),
        se_linux(spec),
        if r { None } else { seccomp(spec, false) },
        sysctls(spec),
        host_process(spec),
    ];
    if r {
        out.extend([
            allow_privilege_escalation(spec),
            capabilities_restricted(spec),
            restricted_volumes(spec),
            run_as_non_root(spec),
            run_as_user(spec),
            if windows(spec) {
                None
            } else {
                seccomp(spec, true)
            },
        ]);
    }
    out.into_iter().flatten().collect()
}

/// `reason (detail), reason (detail)`.
pub fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|(reason, detail)| format!("{reason} ({detail})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn baseline_refuses_what_upstream_refuses() {
        let spec = json!({"hostNetwork": true, "hostPID": true,
            "securityContext": {"sysctls": [{"name": "kernel.msgmax"}, {"name": "net.ipv4.tcp_syncookies"}]},
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}],
            "containers": [
                {"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]},
                    "seccompProfile": {"type": "Unconfined"}, "procMount": "Unmasked"},
                 "ports": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "d", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}, "seLinuxOptions": {"type": "spc_t"}}}]});
        let found = check(Level::Baseline, &json!({}), &spec);
        assert_eq!(
            describe(&found),
            "non-default capabilities (containers \"c\", \"d\" must not include \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add), \
host namespaces (hostNetwork=true, hostPID=true), \
hostPath volumes (volume \"root\"), \
hostPort (container \"c\" uses hostPort 8080), \
privileged (container \"c\" must not set securityContext.privileged=true), \
procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\"), \
seLinuxOptions (container \"d\" set forbidden securityContext.seLinuxOptions: type \"spc_t\"), \
seccompProfile (container \"c\" must not set securityContext.seccompProfile.type to \"Unconfined\"), \
forbidden sysctls (kernel.msgmax)"
        );
        let plain = json!({"containers": [{"name": "c", "image": "busybox"}]});
        assert!(check(Level::Baseline, &json!({}), &plain).is_empty());
        assert!(check(Level::Privileged, &json!({}), &spec).is_empty());
    }

    #[test]
    fn restricted_requires_hardening() {
        let plain = json!({"containers": [{"name": "c"}], "volumes": [{"name": "h", "hostPath": {"path": "/"}}]});
        assert_eq!(
            describe(&check(Level::Restricted, &json!({}), &plain)),
            "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), \
unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), \
restricted volume types (volume \"h\" uses restricted volume type \"hostPath\"), \
runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), \
seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        let hardened = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
        assert!(check(Level::Restricted, &json!({}), &hardened).is_empty());
    }

    #[test]
    fn namespace_labels_pick_levels() {
        let labels = |v: Value| v.as_object().unwrap().clone();
        let p = policy(&labels(json!({})));
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.level, Level::Baseline);
        let p = policy(&labels(
            json!({"pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/warn-version": "v1.32"}),
        ));
        assert_eq!(p.enforce.level, Level::Privileged);
        assert_eq!(p.warn.to_string(), "restricted:v1.32");
        let p = policy(&labels(
            json!({"pod-security.kubernetes.io/enforce": "bogus"}),
        ));
        assert_eq!(p.enforce.level, Level::Restricted);
    }
}
