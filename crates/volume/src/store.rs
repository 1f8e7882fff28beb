//! The volumes, their metadata on disk and their users in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A volume's metadata, kept as `<root>/<name>/volume.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created: DateTime<Utc>,
    pub labels: HashMap<String, String>,
    /// The local driver's options: `type`, `device`, `o`.
    pub options: HashMap<String, String>,
    /// Made for a container's anonymous mount (`-v /path`, an image's VOLUME).
    pub anonymous: bool,
    /// The image's content was copied in once; never again.
    pub filled: bool,
}

impl Volume {
    /// A tmpfs or bind the driver mounts on `_data` while the volume is used.
    fn mounted_kind(&self) -> Option<(&str, &str, String)> {
        let o = self.options.get("o").cloned().unwrap_or_default();
        let device = self.options.get("device").map(String::as_str).unwrap_or("");
        match self.options.get("type").map(String::as_str) {
            Some(t) if !t.is_empty() => Some((t, device, o)),
            _ if o.split(',').any(|x| x == "bind") => Some(("none", device, o)),
            _ => None,
        }
    }
}

#[derive(Default)]
struct State {
    volumes: BTreeMap<String, Volume>,
    /// Containers that use each volume (running or not, as docker counts them).
    users: HashMap<String, BTreeSet<String>>,
    /// The started containers that have each driver-mounted volume mounted.
    active: HashMap<String, BTreeSet<String>>,
}

pub struct VolumeStore {
    root: PathBuf,
    state: Mutex<State>,
}

impl VolumeStore {
    pub fn open(root: PathBuf) -> Result<VolumeStore> {
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        let mut volumes = BTreeMap::new();
        for e in std::fs::read_dir(&root)
            .map_err(|e| Error::io("read volumes", e))?
            .flatten()
        {
            let meta = e.path().join("volume.json");
            match std::fs::read(&meta).map(|b| serde_json::from_slice::<Volume>(&b)) {
                Ok(Ok(v)) => {
                    volumes.insert(v.name.clone(), v);
                }
                Ok(Err(err)) => tracing::warn!("skip {}: {err}", meta.display()),
                // A volume whose creation did not finish.
                Err(_) => {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(VolumeStore {
            root,
            state: Mutex::new(State {
                volumes,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.root.join(name).join("_data")
    }

    /// Creates a volume, or returns the existing one of that name (as docker does); no name
    /// makes an anonymous volume with a random one.
    pub fn create(
        &self,
        name: Option<&str>,
        driver: Option<&str>,
        labels: HashMap<String, String>,
        options: HashMap<String, String>,
    ) -> Result<Volume> {
        let driver = driver.filter(|d| !d.is_empty()).unwrap_or("local");
        if driver != "local" {
            return Err(Error::InvalidArgument(format!(
                "create {}: error looking up volume plugin {driver}: plugin \"{driver}\" not found",
                name.unwrap_or("")
            )));
        }
        for key in options.keys() {
            if !matches!(key.as_str(), "type" | "device" | "o" | "size") {
                return Err(Error::InvalidArgument(format!(
                    "create {}: invalid option key: {key:?}",
                    name.unwrap_or("")
                )));
            }
        }
        let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), false),
            None => (hex::encode(rand::random::<[u8; 32]>()), true),
        };
        validate_name(&name)?;
        let mut st = self.state();
        if let Some(v) = st.volumes.get(&name) {
            return Ok(v.clone());
        }
        let v = Volume {
            name: name.clone(),
            driver: driver.into(),
            created: Utc::now(),
            labels,
            options,
            anonymous,
            filled: false,
        };
        let data = self.mountpoint(&name);
        std::fs::create_dir_all(&data)
            .map_err(|e| Error::io(format!("create {}", data.display()), e))?;
        self.save(&v)?;
        st.volumes.insert(name, v.clone());
        Ok(v)
    }

    fn save(&self, v: &Volume) -> Result<()> {
        let path = self.root.join(&v.name).join("volume.json");
        let tmp = path.with_extension("json.tmp");
        let ctx = |e| Error::io(format!("write {}", path.display()), e);
        let bytes = serde_json::to_vec(v).map_err(|e| ctx(e.into()))?;
        let mut f = std::fs::File::create(&tmp).map_err(ctx)?;
        f.write_all(&bytes).map_err(ctx)?;
        f.sync_all().map_err(ctx)?;
        std::fs::rename(&tmp, &path).map_err(ctx)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        self.state()
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    pub fn list(&self) -> Vec<Volume> {
        self.state().volumes.values().cloned().collect()
    }

    /// The containers that use a volume.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.state()
            .users
            .get(name)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a volume nobody uses; `force` only makes a missing volume fine.
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let mut st = self.state();
        if !st.volumes.contains_key(name) {
            return match force {
                true => Ok(()),
                false => Err(Error::NotFound(name.to_string())),
            };
        }
        let users: Vec<String> = st.users.get(name).into_iter().flatten().cloned().collect();
        if !users.is_empty() {
            return Err(Error::InUse {
                name: name.to_string(),
                users,
            });
        }
        // The metadata goes first: a crash halfway leaves a directory that open() clears.
        let dir = self.root.join(name);
        let meta = dir.join("volume.json");
        std::fs::remove_file(&meta)
            .map_err(|e| Error::io(format!("remove {}", meta.display()), e))?;
        st.volumes.remove(name);
        drop(st);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove {}", dir.display()), e))
    }

    /// Removes unused volumes (anonymous ones only unless `all`) that `keep` does not
    /// keep; returns their names and the bytes freed.
    pub fn prune(&self, all: bool, keep: impl Fn(&Volume) -> bool) -> (Vec<String>, u64) {
        let candidates: Vec<Volume> = {
            let st = self.state();
            st.volumes
                .values()
                .filter(|v| st.users.get(&v.name).is_none_or(|u| u.is_empty()))
                .filter(|v| all || v.anonymous)
                .filter(|v| !keep(v))
                .cloned()
                .collect()
        };
        let mut names = Vec::new();
        let mut freed = 0;
        for v in candidates {
            let size = self.size(&v.name);
            if self.remove(&v.name, false).is_ok() {
                freed += size;
                names.push(v.name);
            }
        }
        (names, freed)
    }

    /// Bytes under a volume's data directory.
    pub fn size(&self, name: &str) -> u64 {
        dir_size(&self.mountpoint(name))
    }

    /// Records that `container` uses `name` (at create, and again when the daemon starts).
    pub fn add_user(&self, name: &str, container: &str) {
        self.state()
            .users
            .entry(name.to_string())
            .or_default()
            .insert(container.to_string());
    }

    /// Forgets `container` as a user of every volume; returns the volumes it used.
    pub fn remove_user(&self, container: &str) -> Vec<String> {
        let mut st = self.state();
        let mut used = Vec::new();
        for (name, users) in st.users.iter_mut() {
            if users.remove(container) {
                used.push(name.clone());
            }
        }
        st.users.retain(|_, u| !u.is_empty());
        used
    }

    /// Makes the volume ready for a starting container: mounts a tmpfs or bind volume for
    /// its first user. Returns the host path to bind into the container.
    pub fn activate(&self, name: &str, container: &str) -> Result<PathBuf> {
        let mut st = self.state();
        let v = st
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let data = self.mountpoint(name);
        if let Some((fstype, device, o)) = v.mounted_kind() {
            let users = st.active.entry(name.to_string()).or_default();
            if users.is_empty() && !is_mountpoint(&data) {
                mount(fstype, device, &o, &data)?;
            }
            users.insert(container.to_string());
        }
        Ok(data)
    }

    /// A container stopped: volumes it was the last to use are unmounted.
    pub fn deactivate(&self, container: &str) {
        let mut st = self.state();
        let mut idle = Vec::new();
        for (name, users) in st.active.iter_mut() {
            if users.remove(container) && users.is_empty() {
                idle.push(name.clone());
            }
        }
        for name in idle {
            st.active.remove(&name);
            let data = self.mountpoint(&name);
            if let Err(e) = nix::mount::umount2(&data, nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!("unmount {}: {e}", data.display());
            }
        }
    }

    /// Counts a running container that kept a volume mounted across a daemon restart.
    pub fn reactivate(&self, name: &str, container: &str) {
        let mut st = self.state();
        if st
            .volumes
            .get(name)
            .is_some_and(|v| v.mounted_kind().is_some())
        {
            st.active
                .entry(name.to_string())
                .or_default()
                .insert(container.to_string());
        }
    }

    /// Docker's copy-up: fills a volume from `src` (the image's content at the mount
    /// point) if it was never filled and is empty. Needs the volume active.
    pub fn fill_from(&self, name: &str, src: &Path) -> Result<()> {
        let mut v = self.get(name)?;
        if v.filled {
            return Ok(());
        }
        let data = self.mountpoint(name);
        let empty = std::fs::read_dir(&data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty && src.is_dir() {
            crate::copy_tree(src, &data)?;
            // The volume's root takes the image directory's owner and mode, as docker's does.
            if let Ok(md) = std::fs::metadata(src) {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let _ = std::os::unix::fs::chown(&data, Some(md.uid()), Some(md.gid()));
                let _ = std::fs::set_permissions(
                    &data,
                    std::fs::Permissions::from_mode(md.mode() & 0o7777),
                );
            }
        }
        v.filled = true;
        self.save(&v)?;
        if let Some(x) = self.state().volumes.get_mut(name) {
            x.filled = true;
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(Error::InvalidArgument(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        ))),
    }
}

fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

fn mount(fstype: &str, device: &str, o: &str, target: &Path) -> Result<()> {
    use nix::mount::MsFlags;
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in o.split(',').filter(|x| !x.is_empty()) {
        match opt {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    let data = data.join(",");
    let source = if device.is_empty() { fstype } else { device };
    let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(fstype);
    nix::mount::mount(
        Some(source),
        target,
        fstype,
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(|e| Error::io(format!("mount {source} on {}", target.display()), e.into()))
}

/// Bytes under a directory, without following links.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_created_once_and_refuse_removal_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let s = VolumeStore::open(dir.path().to_path_buf()).unwrap();
        let v = s
            .create(Some("data"), None, HashMap::new(), HashMap::new())
            .unwrap();
        assert!(!v.anonymous && s.mountpoint("data").is_dir());
        let again = s
            .create(Some("data"), None, HashMap::new(), HashMap::new())
            .unwrap();
        assert_eq!(again.created, v.created);
        assert!(s
            .create(Some("/bad"), None, HashMap::new(), HashMap::new())
            .is_err());
        assert!(s
            .create(Some("x"), Some("nfs"), HashMap::new(), HashMap::new())
            .is_err());
        s.add_user("data", "c1");
        assert!(matches!(s.remove("data", false), Err(Error::InUse { .. })));
        assert_eq!(s.remove_user("c1"), vec!["data".to_string()]);
        s.remove("data", false).unwrap();
        assert!(matches!(s.get("data"), Err(Error::NotFound(_))));
        assert!(s.remove("data", true).is_ok());
        // Metadata survives a reopen; prune takes anonymous ones unless told all.
        s.create(Some("kept"), None, HashMap::new(), HashMap::new())
            .unwrap();
        let anon = s
            .create(None, None, HashMap::new(), HashMap::new())
            .unwrap();
        let s = VolumeStore::open(dir.path().to_path_buf()).unwrap();
        let (pruned, _) = s.prune(false, |_| false);
        assert_eq!(pruned, vec![anon.name]);
        assert_eq!(s.prune(true, |_| false).0, vec!["kept".to_string()]);
    }

    #[test]
    fn copy_up_happens_once_into_an_empty_volume() {
        let dir = tempfile::tempdir().unwrap();
        let img = tempfile::tempdir().unwrap();
        std::fs::write(img.path().join("passwd"), "root").unwrap();
        let s = VolumeStore::open(dir.path().to_path_buf()).unwrap();
        s.create(Some("etc"), None, HashMap::new(), HashMap::new())
            .unwrap();
        s.fill_from("etc", img.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(s.mountpoint("etc").join("passwd")).unwrap(),
            "root"
        );
        std::fs::remove_file(s.mountpoint("etc").join("passwd")).unwrap();
        s.fill_from("etc", img.path()).unwrap();
        assert!(
            !s.mountpoint("etc").join("passwd").exists(),
            "filled only once"
        );
    }
}
