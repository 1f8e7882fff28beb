//! Image references, normalized as docker does (`busybox` is `docker.io/library/busybox:latest`).

use std::fmt;

use crate::error::{Error, Result};

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A normalized image reference. A reference without a digest always has a tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Parses and normalizes a reference: `docker.io` is the default registry, single names on it get
/// the `library/` prefix, and `latest` is the default tag when there is no digest.
pub fn parse_reference(s: &str) -> Result<Reference> {
    let bad = || Error::InvalidReference(s.to_string());
    if s.is_empty() || s.len() > 4096 {
        return Err(bad());
    }
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            if !is_digest(d) {
                return Err(bad());
            }
            (n, Some(d.to_string()))
        }
        None => (s, None),
    };
    let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            (&name_tag[..i], Some(name_tag[i + 1..].to_string()))
        }
        None => (name_tag, None),
    };
    if let Some(t) = &tag {
        if !is_tag(t) {
            return Err(bad());
        }
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    if !is_registry(&registry) {
        return Err(bad());
    }
    let registry = match registry.as_str() {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        _ => registry,
    };
    if path.is_empty() || !path.split('/').all(is_path_component) {
        return Err(bad());
    }
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (t, _) => t,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

impl Reference {
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The full name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The familiar name without tag or digest: `busybox`, `127.0.0.1:5000/demo/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        }
    }

    /// The full normalized form: `docker.io/library/busybox:latest`.
    pub fn full(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The same name with only the given tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same name with only the given digest.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                DEFAULT_TAG.to_string(),
            ),
        }
    }
}

/// The familiar form: `busybox:latest`, `127.0.0.1:5000/demo/app:1`, `busybox@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.familiar_name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

pub(crate) fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn is_registry(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c))
}

/// One path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
    {
        return false;
    }
    // Separators other than dash runs and "__" may not repeat.
    !c.contains("..") && !c.contains("___") && !c.contains("._") && !c.contains("_.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_docker_hub_names() {
        let r = parse_reference("busybox").unwrap();
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        assert_eq!(r.to_string(), "busybox:latest");
        let r = parse_reference("index.docker.io/library/busybox:1").unwrap();
        assert_eq!(r.to_string(), "busybox:1");
        let r = parse_reference("user/app:v1").unwrap();
        assert_eq!(r.full(), "docker.io/user/app:v1");
        assert_eq!(r.to_string(), "user/app:v1");
    }

    #[test]
    fn keeps_registries_with_ports() {
        let r = parse_reference("127.0.0.1:5000/demo/app:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "demo/app");
        assert_eq!(r.to_string(), "127.0.0.1:5000/demo/app:1");
        let r = parse_reference("localhost/app").unwrap();
        assert_eq!(r.full(), "localhost/app:latest");
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse_reference(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.to_string(), format!("busybox@{d}"));
        assert!(parse_reference("busybox@sha256:abc").is_err());
    }

    #[test]
    fn rejects_bad_names() {
        for s in ["", "Busybox", "a//b", "a:", "a:-x", "-a", "a/../b", "a b"] {
            assert!(parse_reference(s).is_err(), "{s}");
        }
    }
}
