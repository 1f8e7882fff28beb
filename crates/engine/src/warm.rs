//! Containers made ahead of demand, so that a `run` skips most of a container's creation.
//!
//! Creating a container (namespaces, mounts, pivot_root, cgroups, seccomp) is most of the
//! cost of `docker run`. After a container of an image starts the usual way, the pool makes
//! one more of the same shape (same image, options and bundle, a fresh id) and leaves it
//! waiting at the start barrier without a command (`StartRequest::deferred_process`). A
//! later `create` whose container has exactly that shape, in all but its command and
//! environment, takes it over: it gets the waiting container's id, and its start only sends
//! the command. The pool then makes the next one in the background.
//!
//! The pool is invisible to the Docker API: a waiting container has no record (no
//! `config.v2.json`), is not in the container table, and does not keep its image from
//! being removed (the image's slot is dropped first). A daemon that was killed leaves them
//! behind; [`crate::recover`] purges them. At most `images` images are kept warm, and an
//! image's slot is dropped after [`IDLE`] without a claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::container::{Container, Paths};
use crate::container_remove::purge;
use crate::container_spec;
use crate::Engine;

/// How long an image stays warm without being claimed.
pub const IDLE: Duration = Duration::from_secs(10 * 60);

/// How long after a claimed container started the next one is made, unless it exits first.
pub const REFILL_AFTER: Duration = Duration::from_millis(100);

/// The longest a `create` waits for a container being made for it.
const FILL_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct WarmPool {
    /// Images kept warm at most; 0 turns the pool off.
    images: usize,
    slots: Mutex<HashMap<String, Slot>>,
}

/// One image's warm container and the container it is shaped after.
struct Slot {
    template: Container,
    ready: Option<Ready>,
    filling: Option<tokio::task::JoinHandle<()>>,
    /// Woken when a fill ends, parked or not.
    filled: Arc<tokio::sync::Notify>,
    used: Instant,
}

struct Ready {
    id: String,
    shim: runtime::Shim,
    shape: serde_json::Value,
}

/// A waiting container handed to `create`: its id becomes the new container's.
pub struct Claimed {
    pub id: String,
    pub shim: runtime::Shim,
}

impl WarmPool {
    pub fn new(images: usize) -> WarmPool {
        WarmPool {
            images,
            slots: Mutex::default(),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The waiting container of `c`'s image if it has `c`'s shape (`c.id` is ignored). One
    /// that is still being made is waited for: that is quicker than making another.
    pub async fn claim(&self, engine: &Engine, c: &Container) -> Option<Claimed> {
        let filled = {
            let slots = self.slots();
            let slot = slots.get(&c.image_id)?;
            let in_flight = slot.filling.as_ref().is_some_and(|h| !h.is_finished());
            if slot.ready.is_some() || !in_flight || !same_shape(engine, &slot.template, c) {
                None
            } else {
                Some(slot.filled.clone())
            }
        };
        if let Some(filled) = filled {
            let _ = tokio::time::timeout(FILL_WAIT, filled.notified()).await;
        }
        self.take(engine, c)
    }

    fn take(&self, engine: &Engine, c: &Container) -> Option<Claimed> {
        let mut slots = self.slots();
        let slot = slots.get_mut(&c.image_id)?;
        let ready = slot.ready.as_ref()?;
        let mut candidate = c.clone();
        candidate.id = ready.id.clone();
        let paths = Paths::new(&engine.config.containers_dir(), &ready.id);
        if container_spec::shape(&candidate, &paths).ok()? != ready.shape {
            tracing::debug!(image = %c.image_id, "warm container has another shape");
            return None;
        }
        slot.used = Instant::now();
        let ready = slot.ready.take()?;
        Some(Claimed {
            id: ready.id,
            shim: ready.shim,
        })
    }

    /// After `c` started the usual way: its shape is the one kept waiting for its image from
    /// now on (a waiting container of another shape goes). True if the caller should
    /// [`WarmPool::refill`].
    pub fn remember(&self, engine: &Arc<Engine>, c: &Container) -> bool {
        if self.images == 0 || !warmable(c) {
            return false;
        }
        let mut stale = Vec::new();
        {
            let mut slots = self.slots();
            let slot = slots.entry(c.image_id.clone()).or_insert_with(|| Slot {
                template: c.clone(),
                ready: None,
                filling: None,
                filled: Arc::default(),
                used: Instant::now(),
            });
            slot.template = c.clone();
            slot.used = Instant::now();
            if let Some(r) = &slot.ready {
                let mut t = c.clone();
                t.id = r.id.clone();
                let paths = Paths::new(&engine.config.containers_dir(), &r.id);
                if container_spec::shape(&t, &paths).ok().as_ref() != Some(&r.shape) {
                    tracing::debug!(image = %c.image_id, "new shape for warm containers");
                    stale.extend(slot.ready.take().map(|r| r.id));
                }
            }
            // Least recently used images beyond the limit go.
            while slots.len() > self.images {
                let Some(oldest) = slots
                    .iter()
                    .min_by_key(|(_, s)| s.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(s) = slots.remove(&oldest) {
                    stale.extend(s.ready.map(|r| r.id));
                }
            }
        }
        for id in stale {
            tokio::spawn(purge_owned(engine.clone(), id));
        }
        true
    }

    /// Makes the next waiting container for `image_id`, unless one waits or is being made.
    pub fn refill(&self, engine: &Arc<Engine>, image_id: &str) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(image_id) else {
            return;
        };
        if slot.ready.is_some() || slot.filling.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let template = slot.template.clone();
        slot.filling = Some(tokio::spawn(fill(engine.clone(), template)));
    }

    /// Drops `image_id`'s slot (before the image is removed), destroying its container.
    pub async fn drain_image(&self, engine: &Arc<Engine>, image_id: &str) {
        let slot = self.slots().remove(image_id);
        if let Some(s) = slot {
            drop_slot(engine, s).await;
        }
    }

    /// Drops every slot: at shutdown, and before image prunes.
    pub async fn drain(&self, engine: &Arc<Engine>) {
        let all: Vec<Slot> = self.slots().drain().map(|(_, s)| s).collect();
        for s in all {
            drop_slot(engine, s).await;
        }
    }

    /// Drops the slots unclaimed for [`IDLE`].
    pub async fn expire(&self, engine: &Arc<Engine>) {
        let idle: Vec<Slot> = {
            let mut slots = self.slots();
            let keys: Vec<String> = slots
                .iter()
                .filter(|(_, s)| s.used.elapsed() >= IDLE)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| slots.remove(k)).collect()
        };
        for s in idle {
            drop_slot(engine, s).await;
        }
    }
}

/// Whether `a` and `b` would make containers of one shape (given the same id).
fn same_shape(engine: &Engine, a: &Container, b: &Container) -> bool {
    let mut a = a.clone();
    a.id = b.id.clone();
    let paths = Paths::new(&engine.config.containers_dir(), &b.id);
    match (
        container_spec::shape(&a, &paths),
        container_spec::shape(b, &paths),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Only what the bundle and the shim request fully describe can be made ahead of demand.
fn warmable(c: &Container) -> bool {
    // Joining another container's namespace is decided when the container is made; and a
    // volume may be a tmpfs or bind mounted, or filled, only when its container starts.
    !c.mounts
        .iter()
        .any(|m| m.kind == crate::container_mounts::Kind::Volume)
        && !matches!(
            crate::container_network::mode(&c.host_config),
            crate::container_network::Mode::Container(_)
        )
        && matches!(
            crate::container_create::runtime_class(&c.host_config),
            Ok(runtime::RuntimeClass::Libcontainer)
        )
}

async fn drop_slot(engine: &Arc<Engine>, s: Slot) {
    // A fill in flight finds its slot gone and destroys what it made.
    if let Some(h) = s.filling {
        let _ = h.await;
    }
    if let Some(r) = s.ready {
        drop(r.shim);
        purge(engine, &r.id).await;
    }
}

async fn purge_owned(engine: Arc<Engine>, id: String) {
    purge(&engine, &id).await;
}

/// Makes one waiting container shaped after `template` and parks it in its image's slot.
async fn fill(engine: Arc<Engine>, template: Container) {
    let mut c = template;
    c.id = crate::engine::new_id();
    let paths = Paths::new(&engine.config.containers_dir(), &c.id);
    let made = make(&engine, &c, &paths).await;
    let (shim, shape) = match made {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(image = %c.image_id, "no warm container: {e}");
            if let Some(slot) = engine.warm.slots().get(&c.image_id) {
                slot.filled.notify_waiters();
            }
            purge(&engine, &c.id).await;
            return;
        }
    };
    let parked = {
        let mut slots = engine.warm.slots();
        match slots.get_mut(&c.image_id) {
            Some(slot) if slot.ready.is_none() => {
                slot.ready = Some(Ready {
                    id: c.id.clone(),
                    shim,
                    shape,
                });
                slot.filled.notify_waiters();
                true
            }
            Some(slot) => {
                slot.filled.notify_waiters();
                false
            }
            None => false,
        }
    };
    tracing::debug!(id = %c.id, parked, "made a warm container");
    if !parked {
        purge(&engine, &c.id).await;
    }
}

async fn make(
    engine: &Arc<Engine>,
    c: &Container,
    paths: &Paths,
) -> Result<(runtime::Shim, serde_json::Value), String> {
    let (images, c2, p2) = (engine.images.clone(), c.clone(), paths.clone());
    let shape = tokio::task::spawn_blocking(move || {
        container_spec::prepare(&images, None, &c2, &p2, &Default::default())?;
        container_spec::shape(&c2, &p2)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.message)?;
    let req = container_spec::start_request(c, paths, true).map_err(|e| e.message)?;
    let shim = engine
        .runtime
        .create(req)
        .await
        .map_err(|e| e.to_string())?;
    Ok((shim, shape))
}
