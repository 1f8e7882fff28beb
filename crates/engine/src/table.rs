//! The containers of this node in memory: lookup by id, name or unique id prefix, and the
//! per-container locks and signals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::container::{Container, Paths};
use crate::error::{ApiError, ApiResult};

/// What waiters (`docker wait`, `run --rm`) watch.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    /// Bumped each time the container exits.
    pub exits: u64,
    pub running: bool,
    pub removed: bool,
    pub exit_code: i64,
    pub error: Option<String>,
}

pub struct Entry {
    pub id: String,
    pub paths: Paths,
    /// The record; held only briefly, never across an await.
    pub record: Mutex<Container>,
    /// Serializes lifecycle operations (start, stop, remove, restart) on this container.
    pub op: tokio::sync::Mutex<()>,
    /// Held from an exit until its teardown is done: the exit is published first (so that
    /// `wait` answers at once) and the next start or remove waits here for the teardown.
    pub teardown: tokio::sync::Mutex<()>,
    /// The running shim, if any.
    pub shim: Mutex<Option<runtime::Shim>>,
    /// The shim of a container made ahead of demand that `create` claimed, until start.
    pub warm: Mutex<Option<runtime::Shim>>,
    pub phase: watch::Sender<Phase>,
    /// Attach clients waiting for the next start.
    pub pending: Mutex<Vec<crate::container_io::Pending>>,
}

impl Entry {
    pub fn new(container: Container, paths: Paths) -> Arc<Entry> {
        let phase = Phase {
            running: container.state.status.is_running(),
            exit_code: container.state.exit_code,
            ..Phase::default()
        };
        Arc::new(Entry {
            id: container.id.clone(),
            paths,
            record: Mutex::new(container),
            op: tokio::sync::Mutex::new(()),
            teardown: tokio::sync::Mutex::new(()),
            shim: Mutex::new(None),
            warm: Mutex::new(None),
            phase: watch::channel(phase).0,
            pending: Mutex::new(Vec::new()),
        })
    }

    pub fn get(&self) -> Container {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the record and persists it durably.
    pub fn update<R>(&self, f: impl FnOnce(&mut Container) -> R) -> ApiResult<R> {
        self.change(f, true)
    }

    /// Changes the record's run state (started, exited) and persists it without forcing
    /// it to disk (see [`Container::write`]).
    pub fn update_state<R>(&self, f: impl FnOnce(&mut Container) -> R) -> ApiResult<R> {
        self.change(f, false)
    }

    fn change<R>(&self, f: impl FnOnce(&mut Container) -> R, durable: bool) -> ApiResult<R> {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut record);
        record
            .write(&self.paths, durable)
            .map_err(|e| ApiError::internal(format!("save container {}: {e}", self.id)))?;
        Ok(r)
    }

    pub fn shim(&self) -> Option<runtime::Shim> {
        self.shim.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_shim(&self, shim: Option<runtime::Shim>) {
        *self.shim.lock().unwrap_or_else(|e| e.into_inner()) = shim;
    }

    pub fn take_warm(&self) -> Option<runtime::Shim> {
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[derive(Default)]
pub struct Table {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Entry>>,
    by_name: HashMap<String, String>,
}

impl Table {
    /// Adds a container, refusing a name in use as docker does.
    pub fn insert(&self, entry: Arc<Entry>) -> ApiResult<()> {
        let name = entry.get().name;
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = inner.by_name.get(&name) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \
                 \"{other}\". You have to remove (or rename) that container to be able to \
                 reuse that name."
            )));
        }
        inner.by_name.insert(name, entry.id.clone());
        inner.by_id.insert(entry.id.clone(), entry);
        Ok(())
    }

    pub fn remove(&self, id: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.by_id.remove(id).is_some() {
            inner.by_name.retain(|_, v| v != id);
        }
    }

    pub fn rename(&self, id: &str, new_name: &str) -> ApiResult<()> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = inner.by_name.get(new_name) {
            return Err(ApiError::conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \
                 \"{other}\". You have to remove (or rename) that container to be able to \
                 reuse that name."
            )));
        }
        inner.by_name.retain(|_, v| v != id);
        inner.by_name.insert(new_name.to_string(), id.to_string());
        Ok(())
    }

    /// By full id, name (with or without docker's `/`), or unique id prefix.
    pub fn find(&self, key: &str) -> ApiResult<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.by_id.get(key) {
            return Ok(e.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = inner.by_name.get(name) {
            if let Some(e) = inner.by_id.get(id) {
                return Ok(e.clone());
            }
        }
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut found = inner.by_id.iter().filter(|(id, _)| id.starts_with(key));
            if let Some((_, e)) = found.next() {
                if found.next().is_some() {
                    return Err(ApiError::bad_request(format!(
                        "multiple IDs found with provided prefix: {key}"
                    )));
                }
                return Ok(e.clone());
            }
        }
        Err(ApiError::no_such_container(key))
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_id.values().cloned().collect()
    }

    pub fn name_taken(&self, name: &str) -> bool {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.by_name.contains_key(name)
    }

    /// Image ids that containers use, so `rmi` and prune leave them alone.
    pub fn image_in_use(&self, image_id: &str) -> bool {
        self.all().iter().any(|e| e.get().image_id == image_id)
    }
}
