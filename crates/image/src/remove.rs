//! `docker rmi` and `docker image prune`.

use crate::error::{Error, Result};
use crate::reference::parse_reference;
use crate::state::State;
use crate::store::{resolve_id, short_id, ImageStore, Matched, PruneReport, RemoveAction};

fn familiar(full: &str) -> String {
    parse_reference(full)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| full.to_string())
}

/// Untags everything pointing at `id` and drops its record.
fn delete_image(state: &mut State, id: &str, out: &mut Vec<RemoveAction>) {
    for t in state.tags_of(id) {
        state.tags.remove(&t);
        out.push(RemoveAction::Untagged(familiar(&t)));
    }
    if let Some(rec) = state.images.remove(id) {
        for d in rec.repo_digests {
            out.push(RemoveAction::Untagged(familiar(&d)));
        }
    }
    out.push(RemoveAction::Deleted(id.to_string()));
}

impl ImageStore {
    /// Removes a tag or an image, with docker's rules: removing by tag untags and deletes the
    /// image once no reference remains; removing by id deletes it; an image used by a
    /// container (`in_use(id)`) or, by id, one with several tags needs `force`.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<RemoveAction>, Error> {
        let mut out = Vec::new();
        {
            // in_use runs without our lock held, so it may do anything; if the reference moved
            // to another image meanwhile, ask again.
            let mut id = resolve_id(&self.lock_state(), reference)?.0;
            let mut used = in_use(&id);
            let mut state = self.lock_state();
            let matched = loop {
                let (now, matched) = resolve_id(&state, reference)?;
                if now == id {
                    break matched;
                }
                drop(state);
                id = now;
                used = in_use(&id);
                state = self.lock_state();
            };
            let short = short_id(&id);
            let tags = state.tags_of(&id);
            match matched {
                Matched::Tag(full) | Matched::Digest(full) => {
                    // Removing the last tag deletes the image too (repo digests do not keep it).
                    let last_tag = tags.iter().all(|t| *t == full);
                    if last_tag && used && !force {
                        return Err(Error::Conflict(format!(
                            "unable to remove repository reference {reference:?} (must force) - container is using its referenced image {short}"
                        )));
                    }
                    if last_tag && !used {
                        delete_image(&mut state, &id, &mut out);
                    } else {
                        state.tags.remove(&full);
                        if let Some(r) = state.images.get_mut(&id) {
                            r.repo_digests.retain(|d| *d != full);
                        }
                        out.push(RemoveAction::Untagged(familiar(&full)));
                    }
                }
                Matched::Id => {
                    if used && !force {
                        return Err(Error::Conflict(format!(
                            "unable to delete {short} (must be forced) - image is being used by a container"
                        )));
                    }
                    if tags.len() > 1 && !force {
                        return Err(Error::Conflict(format!(
                            "unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                        )));
                    }
                    if used {
                        // Forced while a container uses it: docker untags and keeps the image.
                        for t in tags {
                            state.tags.remove(&t);
                            out.push(RemoveAction::Untagged(familiar(&t)));
                        }
                    } else {
                        delete_image(&mut state, &id, &mut out);
                    }
                }
            }
            self.save_state(&state)?;
        }
        if out.iter().any(|a| matches!(a, RemoveAction::Deleted(_))) {
            self.gc()?;
        }
        Ok(out)
    }

    /// Deletes dangling (untagged) images, or with `all` every image no container uses, then
    /// collects garbage.
    pub fn prune(&self, all: bool, in_use: &dyn Fn(&str) -> bool) -> Result<PruneReport, Error> {
        let mut deleted = Vec::new();
        {
            let candidates: Vec<String> = self.lock_state().images.keys().cloned().collect();
            // Asked without our lock held, so in_use may do anything.
            let unused: Vec<String> = candidates.into_iter().filter(|id| !in_use(id)).collect();
            let mut state = self.lock_state();
            for id in unused {
                if state.images.contains_key(&id) && (all || state.tags_of(&id).is_empty()) {
                    delete_image(&mut state, &id, &mut deleted);
                }
            }
            self.save_state(&state)?;
        }
        let space_reclaimed = self.gc()?;
        Ok(PruneReport {
            deleted,
            space_reclaimed,
        })
    }
}
