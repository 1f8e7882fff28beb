//! Networks and endpoints on disk: `networks/<id>.json` (written durably: a network the
//! API acknowledged survives a crash) and `endpoints/<container id>.json` (atomic, not
//! forced to disk: after a power loss no container is running, so none holds an address).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};
use crate::model::{Endpoint, Network};

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        for d in [dir.join("networks"), dir.join("endpoints")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::io(format!("create {}", d.display()), e))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    pub fn networks(&self) -> Vec<Network> {
        load_all(&self.dir.join("networks"))
    }

    pub fn endpoints(&self) -> Vec<(String, Vec<Endpoint>)> {
        load_all::<Vec<Endpoint>>(&self.dir.join("endpoints"))
            .into_iter()
            .filter_map(|eps| Some((eps.first()?.container_id.clone(), eps)))
            .collect()
    }

    pub fn save_network(&self, n: &Network) -> Result<()> {
        write(
            &self.dir.join("networks").join(format!("{}.json", n.id)),
            n,
            true,
        )
    }

    pub fn delete_network(&self, id: &str) -> Result<()> {
        remove(&self.dir.join("networks").join(format!("{id}.json")))
    }

    /// Writes a container's endpoints; none removes its file.
    pub fn save_endpoints(&self, container_id: &str, eps: &[Endpoint]) -> Result<()> {
        let path = self
            .dir
            .join("endpoints")
            .join(format!("{container_id}.json"));
        match eps.is_empty() {
            true => remove(&path),
            false => write(&path, &eps, false),
        }
    }
}

fn load_all<T: DeserializeOwned>(dir: &Path) -> Vec<T> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            match serde_json::from_slice(&bytes) {
                Ok(v) => Some(v),
                Err(err) => {
                    tracing::warn!("skip {}: {err}", e.path().display());
                    None
                }
            }
        })
        .collect()
}

fn write<T: Serialize + ?Sized>(path: &Path, value: &T, durable: bool) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| Error::io("encode", e.into()))?;
    let ctx = |e| Error::io(format!("write {}", path.display()), e);
    let mut f = std::fs::File::create(&tmp).map_err(ctx)?;
    f.write_all(&bytes).map_err(ctx)?;
    if durable {
        f.sync_all().map_err(ctx)?;
    }
    std::fs::rename(&tmp, path).map_err(ctx)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", path.display()), e))
        }
        _ => Ok(()),
    }
}
