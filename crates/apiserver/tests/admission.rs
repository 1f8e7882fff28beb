//! Admission with the real kubectl: LimitRange defaults and limits, ResourceQuota
//! refusals and status, and Pod Security Admission levels from namespace labels. The
//! cluster is `common::Cluster`; kubectl 1.32 is required.

mod common;

use anyhow::Result;
use common::Cluster;

/// A pod manifest with `extra` merged into its one container.
fn pod(name: &str, container: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
  "spec": {{"containers": [{{"name": "c", "image": "busybox"{container}}}]}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_ranges_default_and_bound_container_resources() -> Result<()> {
    let c = Cluster::start().await?;
    let lr = c.write(
        "lr.yaml",
        r#"apiVersion: v1
kind: LimitRange
metadata: {name: limits}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 0.25}
    max: {cpu: "1"}
"#,
    )?;
    c.kubectl(&["apply", "-f", lr.to_str().unwrap()]).await?;
    let stored = c.json(&["get", "limitrange", "limits"]).await?;
    // Defaulted as upstream: the default request of memory is the default limit.
    assert_eq!(
        stored["spec"]["limits"][0]["defaultRequest"]["memory"],
        "128Mi"
    );

    c.kubectl(&["run", "plain", "--image=busybox"]).await?;
    let p = c.json(&["get", "pod", "plain"]).await?;
    let res = &p["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"]["cpu"], "500m", "{res}");
    assert_eq!(res["limits"]["memory"], "128Mi");
    assert_eq!(res["requests"]["cpu"], "250m");
    assert_eq!(res["requests"]["memory"], "128Mi");
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container plain; cpu, memory limit for container plain"
    );

    let big = c.write(
        "big.json",
        &pod("big", r#", "resources": {"limits": {"cpu": "2"}}"#),
    )?;
    let err = c
        .kubectl_fails(&["create", "-f", big.to_str().unwrap()])
        .await?;
    assert!(
        err.contains(
            r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
        ),
        "{err}"
    );

    let bad = c.write(
        "bad.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: bad}\nspec:\n  limits:\n  - type: Container\n    max: {cpu: lots}\n",
    )?;
    let err = c
        .kubectl_fails(&["create", "-f", bad.to_str().unwrap()])
        .await?;
    assert!(
        err.contains(r#"The LimitRange "bad" is invalid: spec.limits[0].max[cpu]: Invalid value: "lots": quantities must match"#),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_quotas_refuse_what_exceeds_them_and_track_usage() -> Result<()> {
    let c = Cluster::start().await?;
    c.kubectl(&["create", "quota", "q1", "--hard=pods=1,configmaps=5"])
        .await?;
    let q = c.json(&["get", "quota", "q1"]).await?;
    assert_eq!(q["status"]["hard"]["pods"], "1");
    assert_eq!(q["status"]["used"]["pods"], "0");

    // A server-side dry run is admitted but charges nothing.
    c.kubectl(&["run", "a", "--image=busybox", "--dry-run=server"])
        .await?;
    c.kubectl(&["run", "a", "--image=busybox"]).await?;
    let q = c.json(&["get", "quota", "q1"]).await?;
    assert_eq!(q["status"]["used"]["pods"], "1");
    let err = c.kubectl_fails(&["run", "b", "--image=busybox"]).await?;
    assert!(
        err.contains(r#"pods "b" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=1, limited: pods=1"#),
        "{err}"
    );
    let err = c
        .kubectl_fails(&["run", "b", "--image=busybox", "--dry-run=server"])
        .await?;
    assert!(err.contains("exceeded quota: q1"), "{err}");

    // Deleting frees the quota (usage is recounted at the next admission).
    c.kubectl(&["delete", "pod", "a", "--wait=false"]).await?;
    c.kubectl(&["run", "b", "--image=busybox"]).await?;

    c.kubectl(&["create", "quota", "cpu", "--hard=limits.cpu=1"])
        .await?;
    let err = c.kubectl_fails(&["run", "d", "--image=busybox"]).await?;
    assert!(
        err.contains(r#"pods "d" is forbidden: failed quota: cpu: must specify limits.cpu for: d"#),
        "{err}"
    );
    let bad = c
        .kubectl_fails(&["create", "quota", "bad", "--hard=pods=-1"])
        .await?;
    assert!(bad.contains(r#"ResourceQuota "bad" is invalid"#), "{bad}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_enforces_baseline_unless_the_namespace_says_otherwise() -> Result<()> {
    let c = Cluster::start().await?;
    let privileged = c.write(
        "priv.json",
        &pod(
            "priv",
            r#", "securityContext": {"privileged": true}, "ports": [{"containerPort": 80, "hostPort": 80}]"#,
        ),
    )?;
    let path = privileged.to_str().unwrap();
    let err = c.kubectl_fails(&["create", "-f", path]).await?;
    assert!(
        err.contains(r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": hostPort (container "c" uses hostPort 80), privileged (container "c" must not set securityContext.privileged=true)"#),
        "{err}"
    );

    c.kubectl(&["create", "namespace", "ops"]).await?;
    c.kubectl(&[
        "label",
        "namespace",
        "ops",
        "pod-security.kubernetes.io/enforce=privileged",
        "pod-security.kubernetes.io/warn=baseline",
    ])
    .await?;
    let warned = c
        .kubectl_stderr(&["create", "-n", "ops", "-f", path])
        .await?;
    assert!(
        warned.contains(r#"Warning: would violate PodSecurity "baseline:latest": hostPort"#),
        "{warned}"
    );
    c.kubectl(&["get", "pod", "-n", "ops", "priv"]).await?;

    // Workloads are warned about, not refused.
    let deploy = c.write(
        "deploy.yaml",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers: [{name: web, image: nginx}]
"#,
    )?;
    let warned = c
        .kubectl_stderr(&["create", "-f", deploy.to_str().unwrap()])
        .await?;
    assert!(
        warned.contains(
            r#"would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#
        ),
        "{warned}"
    );
    Ok(())
}
