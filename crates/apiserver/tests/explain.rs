//! `kubectl explain` (which reads /openapi/v3) and /openapi/v2, with the real kubectl
//! against the shared test cluster (`common::Cluster`). kubectl is required: these tests
//! fail, saying so, when it is missing.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::Cluster;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_built_in_kinds() -> Result<()> {
    let c = Cluster::start().await?;
    let out = c.kubectl(&["explain", "deployment.spec.strategy"]).await?;
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "The deployment strategy to use to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "type\t<string>",
        // The description of `type`, from the Go type's doc comment (wrapped by kubectl).
        "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". Default is",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }

    let out = c.kubectl(&["explain", "pods"]).await?;
    for want in [
        "KIND:       Pod",
        "VERSION:    v1",
        "Pod is a collection of containers that can run on a host.",
        "metadata\t<ObjectMeta>",
        "spec\t<PodSpec>",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("-required-"), "{out}");

    let out = c.kubectl(&["explain", "pod.spec.containers.image"]).await?;
    assert!(out.contains("FIELD: image <string>"), "{out}");
    assert!(out.contains("Container image name."), "{out}");

    let out = c.kubectl(&["explain", "configmap", "--recursive"]).await?;
    for want in [
        "binaryData\t<map[string]string>",
        "data\t<map[string]string>",
        "immutable\t<boolean>",
        "    ownerReferences\t<[]OwnerReference>",
        "      uid\t<string> -required-",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }

    let out = c.kubectl(&["explain", "svc.spec.ports"]).await?;
    for want in [
        "FIELD: ports <[]ServicePort>",
        "port\t<integer> -required-",
        "targetPort\t<IntOrString>",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }
    Ok(())
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: gizmos
    kind: Gizmo
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: A Gizmo is a test resource.
        type: object
        properties:
          spec:
            description: What the gizmo should be.
            type: object
            required: [size]
            properties:
              size:
                description: SIZE_DOC
                type: integer
              tags:
                type: array
                items: {type: string}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_custom_resources_and_follow_crd_changes() -> Result<()> {
    let c = Cluster::start().await?;
    let crd = c.write(
        "crd.yaml",
        &CRD.replace("SIZE_DOC", "How big the gizmo is."),
    )?;
    c.kubectl(&["apply", "-f", crd.to_str().unwrap()]).await?;
    c.kubectl(&[
        "wait",
        "--for=condition=established",
        "crd/gizmos.example.com",
        "--timeout=10s",
    ])
    .await?;
    let out = c.kubectl(&["explain", "gizmo.spec"]).await?;
    for want in [
        "GROUP:      example.com",
        "KIND:       Gizmo",
        "FIELD: spec <Object>",
        "What the gizmo should be.",
        "size\t<integer> -required-",
        "How big the gizmo is.",
        "tags\t<[]string>",
    ] {
        assert!(out.contains(want), "lacks {want:?}:\n{out}");
    }
    let out = c.kubectl(&["explain", "gizmos"]).await?;
    assert!(out.contains("A Gizmo is a test resource."), "{out}");
    assert!(out.contains("metadata\t<ObjectMeta>"), "{out}");

    // A changed schema changes the document's hash, so kubectl's cache is not used.
    std::fs::write(&crd, CRD.replace("SIZE_DOC", "Now measured in furlongs."))?;
    c.kubectl(&["apply", "-f", crd.to_str().unwrap()]).await?;
    let mut out = String::new();
    for _ in 0..50 {
        out = c.kubectl(&["explain", "gizmo.spec.size"]).await?;
        if out.contains("Now measured in furlongs.") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("explain still shows the old schema:\n{out}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_v2_is_served_as_json_only() -> Result<()> {
    let c = Cluster::start().await?;
    let doc: Value = serde_json::from_str(&c.kubectl(&["get", "--raw", "/openapi/v2"]).await?)?;
    assert_eq!(doc["swagger"], "2.0");
    let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}])
    );
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    assert!(doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["get"].is_object());

    // client-go asks for protobuf only; it must hear that it will not get it.
    let (code, _) = c
        .admin_get(
            "/openapi/v2",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .await?;
    assert_eq!(code, 406);
    let (code, body) = c.admin_get("/openapi/v2", "application/json").await?;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body)?["swagger"], "2.0");
    Ok(())
}
