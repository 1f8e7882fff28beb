//! A container's mounts: `-v`, `--mount`, `--volumes-from` and the image's VOLUMEs,
//! resolved once at create (named volumes made, anonymous ones made for what nothing else
//! mounts), kept in the record, mounted and filled at start, released at exit and removal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerCreateBody, HostConfig, MountPoint, MountType};
use serde::{Deserialize, Serialize};

use crate::container::Container;
use crate::error::{ApiError, ApiResult};
use crate::Engine;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bind,
    Volume,
    Tmpfs,
}

/// One resolved mount of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: Kind,
    /// A host path (bind), a volume name (volume), nothing (tmpfs).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Do not copy the image's content into a new volume (`nocopy`).
    #[serde(default)]
    pub no_copy: bool,
    /// tmpfs mount options (`size=…,mode=…`).
    #[serde(default)]
    pub tmpfs_options: String,
    /// A volume made for this container (`rm -v` removes it).
    #[serde(default)]
    pub anonymous: bool,
    /// What is bound into the container: the bind's source, or the volume's directory.
    #[serde(default)]
    pub path: PathBuf,
    /// Bind propagation (`rprivate` when empty), as `-v …:rshared` or `bind-propagation=`.
    #[serde(default)]
    pub propagation: String,
}

impl From<volume::Error> for ApiError {
    fn from(e: volume::Error) -> Self {
        let msg = e.to_string();
        match e {
            volume::Error::NotFound(_) => ApiError::not_found(msg),
            volume::Error::InUse { .. } => ApiError::conflict(msg),
            volume::Error::InvalidArgument(_) => ApiError::bad_request(msg),
            volume::Error::Io { .. } => ApiError::internal(crate::error::chain(&e)),
        }
    }
}

/// `-v src:dst[:opts]`: a host path when `src` is absolute, else a named volume.
pub fn parse_bind(spec: &str) -> ApiResult<MountSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{spec}'"
            )))
        }
    };
    if !destination.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"bind\": \
             invalid mount path: '{destination}' mount path must be absolute"
        )));
    }
    let mut m = MountSpec {
        kind: if source.starts_with('/') {
            Kind::Bind
        } else {
            Kind::Volume
        },
        source: source.to_string(),
        destination: destination.to_string(),
        read_only: false,
        no_copy: false,
        tmpfs_options: String::new(),
        anonymous: false,
        path: PathBuf::from(source),
        propagation: String::new(),
    };
    for opt in mode.split(',').filter(|m| !m.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "nocopy" => m.no_copy = true,
            "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                m.propagation = opt.to_string()
            }
            // SELinux relabelling (z, Z) has nothing to do on a host without SELinux.
            "rw" | "z" | "Z" | "copy" => {}
            _ => return Err(ApiError::bad_request(format!("invalid mode: {opt}"))),
        }
    }
    if m.kind == Kind::Volume && !m.propagation.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid mode: {}: propagation applies to bind mounts only",
            m.propagation
        )));
    }
    Ok(m)
}

/// Resolves the create request's mounts and makes named and anonymous volumes as needed;
/// the caller registers the container as their user ([`register`]) and keeps them in the
/// record.
pub(crate) fn resolve(
    engine: &Engine,
    body: &ContainerCreateBody,
    hc: &HostConfig,
    image_volumes: &[String],
) -> ApiResult<Vec<MountSpec>> {
    let mut out: Vec<MountSpec> = Vec::new();
    for b in hc.binds.iter().flatten() {
        out.push(parse_bind(b)?);
    }
    for m in hc.mounts.iter().flatten() {
        let target = m.target.clone().unwrap_or_default();
        if !target.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid mount config: invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        let source = m.source.clone().unwrap_or_default();
        let spec = match m.typ {
            Some(MountType::BIND) => {
                if !source.starts_with('/') {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": invalid mount path: '{source}' mount path must be absolute"
                    )));
                }
                if !Path::new(&source).exists() {
                    return Err(ApiError::bad_request(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {source}"
                    )));
                }
                MountSpec {
                    kind: Kind::Bind,
                    propagation: m
                        .bind_options
                        .as_ref()
                        .and_then(|o| o.propagation)
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    ..blank(source, target)
                }
            }
            Some(MountType::VOLUME) | None => MountSpec {
                kind: Kind::Volume,
                no_copy: m
                    .volume_options
                    .as_ref()
                    .and_then(|o| o.no_copy)
                    .unwrap_or(false),
                ..blank(source, target)
            },
            Some(MountType::TMPFS) => {
                let mut opts = Vec::new();
                if let Some(o) = &m.tmpfs_options {
                    if let Some(s) = o.size_bytes.filter(|s| *s > 0) {
                        opts.push(format!("size={s}"));
                    }
                    if let Some(mode) = o.mode.filter(|m| *m > 0) {
                        opts.push(format!("mode={mode:o}"));
                    }
                }
                MountSpec {
                    kind: Kind::Tmpfs,
                    tmpfs_options: opts.join(","),
                    ..blank(String::new(), target)
                }
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "mount type {other} is not supported"
                )))
            }
        };
        out.push(MountSpec {
            read_only: m.read_only.unwrap_or(false),
            ..spec
        });
    }
    for from in hc.volumes_from.iter().flatten() {
        let (name, mode) = from.split_once(':').unwrap_or((from, ""));
        let other = engine
            .containers
            .find(name)
            .map_err(|e| ApiError::bad_request(e.message))?
            .get();
        for m in other.mounts.iter().filter(|m| m.kind != Kind::Tmpfs) {
            let read_only = match mode {
                "ro" => true,
                "rw" => false,
                "" => m.read_only,
                _ => return Err(ApiError::bad_request(format!("invalid mode: {mode}"))),
            };
            out.push(MountSpec {
                read_only,
                anonymous: false,
                ..m.clone()
            });
        }
    }
    // `-v /path` and the image's VOLUMEs: anonymous volumes where nothing else mounts.
    let mut anonymous: Vec<String> = body.volumes.clone().unwrap_or_default();
    anonymous.extend(image_volumes.iter().cloned());
    for dest in anonymous {
        if !dest.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid volume specification: '{dest}': mount path must be absolute"
            )));
        }
        if !out.iter().any(|m| m.destination == dest) {
            out.push(MountSpec {
                kind: Kind::Volume,
                anonymous: true,
                ..blank(String::new(), dest)
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for m in &out {
        if !seen.insert(m.destination.trim_end_matches('/').to_string()) {
            return Err(ApiError::bad_request(format!(
                "Duplicate mount point: {}",
                m.destination
            )));
        }
    }
    // Volumes last, once the request is known to be good.
    for m in out.iter_mut().filter(|m| m.kind == Kind::Volume) {
        let name = (!m.source.is_empty()).then_some(m.source.as_str());
        let labels = HashMap::new();
        let v = engine.volumes.create(name, None, labels, HashMap::new())?;
        m.path = engine.volumes.mountpoint(&v.name);
        m.source = v.name;
    }
    Ok(out)
}

/// Records `id` as a user of its volumes (at create, and when the daemon starts again);
/// a running one also as having them mounted.
pub(crate) fn register(engine: &Engine, id: &str, mounts: &[MountSpec], running: bool) {
    for m in mounts.iter().filter(|m| m.kind == Kind::Volume) {
        engine.volumes.add_user(&m.source, id);
        if running {
            engine.volumes.reactivate(&m.source, id);
        }
    }
}

fn blank(source: String, destination: String) -> MountSpec {
    MountSpec {
        kind: Kind::Bind,
        path: PathBuf::from(&source),
        source,
        destination,
        read_only: false,
        no_copy: false,
        tmpfs_options: String::new(),
        anonymous: false,
        propagation: String::new(),
    }
}

/// The mounts of a record (older records kept only `Binds`).
pub(crate) fn of(c: &Container) -> Vec<MountSpec> {
    if !c.mounts.is_empty() {
        return c.mounts.clone();
    }
    c.host_config
        .binds
        .iter()
        .flatten()
        .filter_map(|b| parse_bind(b).ok())
        .collect()
}

/// The bind mounts (bind sources and volume directories) and tmpfs mounts, for the bundle.
pub(crate) fn for_spec(c: &Container) -> (Vec<runtime::spec::Bind>, Vec<(String, String)>) {
    let mut binds = Vec::new();
    let mut tmpfs = Vec::new();
    for m in of(c) {
        match m.kind {
            Kind::Bind | Kind::Volume => binds.push(runtime::spec::Bind {
                source: m.path,
                destination: m.destination,
                read_only: m.read_only,
                propagation: m.propagation,
            }),
            Kind::Tmpfs => tmpfs.push((m.destination, m.tmpfs_options)),
        }
    }
    (binds, tmpfs)
}

/// At start, over the mounted rootfs: mounts driver-backed volumes and copies the image's
/// content into new volumes (docker's copy-up); creates missing bind sources as docker does
/// for `-v`. Blocking.
pub(crate) fn prepare(
    volumes: &volume::VolumeStore,
    c: &Container,
    rootfs: &Path,
) -> ApiResult<()> {
    for m in of(c) {
        match m.kind {
            Kind::Bind if !Path::new(&m.source).exists() => std::fs::create_dir_all(&m.source)?,
            Kind::Volume => {
                volumes.activate(&m.source, &c.id)?;
                if !m.no_copy {
                    if let Some(src) = inside(rootfs, &m.destination) {
                        volumes.fill_from(&m.source, &src)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `dest` under `rootfs`, if it resolves inside it (an image's symlink must not lead the
/// copy to the host).
fn inside(rootfs: &Path, dest: &str) -> Option<PathBuf> {
    let p = rootfs
        .join(dest.trim_start_matches('/'))
        .canonicalize()
        .ok()?;
    let root = rootfs.canonicalize().ok()?;
    p.starts_with(&root).then_some(p)
}

/// At removal: the container no longer uses its volumes; with `-v`, its anonymous volumes
/// that nobody else uses go.
pub(crate) fn release(engine: &Engine, c: &Container, remove_anonymous: bool) {
    engine.volumes.deactivate(&c.id);
    engine.volumes.remove_user(&c.id);
    if remove_anonymous {
        for m in of(c)
            .iter()
            .filter(|m| m.kind == Kind::Volume && m.anonymous)
        {
            if let Err(e) = engine.volumes.remove(&m.source, true) {
                tracing::debug!("keep volume {}: {e}", m.source);
            }
        }
    }
}

/// `Mounts` of `docker inspect` and `docker ps`.
pub(crate) fn points(c: &Container) -> Vec<MountPoint> {
    of(c)
        .into_iter()
        .map(|m| {
            let (typ, name, source, driver) = match m.kind {
                Kind::Bind => ("bind", None, m.source.clone(), None),
                Kind::Volume => (
                    "volume",
                    Some(m.source.clone()),
                    m.path.display().to_string(),
                    Some("local".to_string()),
                ),
                Kind::Tmpfs => ("tmpfs", None, String::new(), None),
            };
            MountPoint {
                typ: serde_json::from_value(serde_json::json!(typ)).ok(),
                name,
                source: Some(source),
                destination: Some(m.destination),
                driver,
                mode: Some(if m.read_only {
                    "ro".into()
                } else {
                    String::new()
                }),
                rw: Some(!m.read_only),
                propagation: Some(match (m.kind, m.propagation.as_str()) {
                    (Kind::Bind, "") => "rprivate".into(),
                    (Kind::Bind, p) => p.to_string(),
                    _ => String::new(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_like_docker() {
        let b = parse_bind("/srv/www:/www:ro").unwrap();
        assert_eq!(
            (
                b.kind,
                b.source.as_str(),
                b.destination.as_str(),
                b.read_only
            ),
            (Kind::Bind, "/srv/www", "/www", true)
        );
        let v = parse_bind("data:/var/lib/data:nocopy").unwrap();
        assert_eq!(
            (v.kind, v.source.as_str(), v.no_copy),
            (Kind::Volume, "data", true)
        );
        assert!(parse_bind("/a:b").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("justone").is_err());
    }
}
