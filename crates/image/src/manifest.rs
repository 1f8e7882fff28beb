//! OCI and Docker schema 2 manifests and indexes, read leniently as JSON.

use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::reference::is_digest;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Media types we accept from registries, preferred first.
pub(crate) const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// A manifest or an index.
pub(crate) enum Parsed {
    Manifest {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
}

/// Parses `data`, using `hint` (a Content-Type) when the document has no `mediaType`.
pub(crate) fn parse(data: &[u8], hint: Option<&str>, subject: &str) -> Result<Parsed> {
    let raw: Raw =
        serde_json::from_slice(data).map_err(Error::json(format!("parse manifest {subject}")))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| hint.map(str::to_string))
        .unwrap_or_default();
    let bad = |why: &str| Error::InvalidInput(format!("manifest {subject}: {why}"));
    if let Some(manifests) = raw.manifests {
        if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST {
            return Err(bad("a manifest with a list of manifests"));
        }
        for m in &manifests {
            if !is_digest(&m.digest) {
                return Err(bad(&format!("unsupported digest {:?}", m.digest)));
            }
        }
        return Ok(Parsed::Index { manifests });
    }
    let config = raw.config.ok_or_else(|| bad("no config"))?;
    let layers = raw.layers.unwrap_or_default();
    for d in std::iter::once(&config).chain(&layers) {
        if !is_digest(&d.digest) {
            return Err(bad(&format!("unsupported digest {:?}", d.digest)));
        }
    }
    if let Some(d) = layers
        .iter()
        .find(|l| l.media_type.contains("foreign") || l.media_type.contains("nondistributable"))
    {
        tracing::debug!(digest = %d.digest, "foreign layer in {subject}");
    }
    let media_type = if media_type.is_empty() {
        OCI_MANIFEST.to_string()
    } else {
        media_type
    };
    Ok(Parsed::Manifest {
        media_type,
        config,
        layers,
    })
}

/// The GOARCH name of this machine, as image platforms spell it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Chooses the linux manifest for this machine (linux/amd64 here) from an index.
pub(crate) fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let arch = host_arch();
    let is_image = |d: &&Descriptor| {
        // Attestation manifests ("unknown/unknown") are never images to run.
        d.annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("vnd.docker.reference.type"))
    };
    manifests
        .iter()
        .filter(is_image)
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| {
            let mut plain = manifests
                .iter()
                .filter(is_image)
                .filter(|d| d.platform.is_none());
            plain.next()
        })
}

/// An OCI image manifest for a config and layers (`(media type, digest, size)`).
pub(crate) fn build(config: (&str, u64), layers: &[(String, String, u64)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(mt, d, s)| json!({"mediaType": mt, "digest": d, "size": s}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    });
    serde_json::to_vec(&m).expect("a json value always encodes")
}
