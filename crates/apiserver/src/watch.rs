//! `?watch=1`: a stream of newline-delimited `WatchEvent`s (ADDED, MODIFIED, DELETED,
//! BOOKMARK, ERROR) over the store's watch, with upstream's resourceVersion rules:
//! unset or "0" start with the current state as ADDED events, a given version streams
//! every change after it, and a version older than the compacted history ends the watch
//! with an ERROR event carrying a 410 `Expired` Status (clients then re-list).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use store::{Event, Revision, Watch};
use tokio::sync::mpsc;

use crate::catalog::Resource;
use crate::keys;
use crate::meta;
use crate::objects::{decode, decode_as, ListOptions};
use crate::rest::{AppState, Call};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::table;

/// What a watch filters on and how it reports.
struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    /// Objects as Table rows (`kubectl get -w` asks for them).
    table: bool,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values always serialize");
    line.push(b'\n');
    Bytes::from(line)
}

fn bookmark(res: &Resource, revision: Revision, annotations: Option<Value>) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(a) = annotations {
        metadata["annotations"] = a;
    }
    event_line(
        "BOOKMARK",
        json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": metadata}),
    )
}

fn error_line(err: &ApiError) -> Bytes {
    event_line("ERROR", err.to_status())
}

pub async fn watch(state: &AppState, call: &Call) -> Result<Response, ApiError> {
    let res = call.res.clone();
    let p = &call.params;
    let mut fields_query = p.str("fieldSelector").to_string();
    if !call.req.name.is_empty() {
        // `/watch/.../name` (deprecated) watches one object.
        let by_name = format!("metadata.name={}", call.req.name);
        fields_query = if fields_query.is_empty() {
            by_name
        } else {
            format!("{fields_query},{by_name}")
        };
    }
    let filter = Filter {
        labels: LabelSelector::parse(p.str("labelSelector"))?,
        fields: FieldSelector::parse(&fields_query, &res)?,
        bookmarks: p.flag("allowWatchBookmarks"),
        table: table::wanted(&call.headers),
    };
    let timeout = p
        .int("timeoutSeconds")?
        .map(|s| Duration::from_secs(s as u64));
    let rv = p.str("resourceVersion");
    let send_initial = match p.get("sendInitialEvents") {
        Some(v) => v == "true",
        None => rv.is_empty() || rv == "0",
    };
    let ns = call.req.namespace.clone();
    let prefix = keys::collection_prefix(&res, Some(&ns));
    let (tx, rx) = mpsc::channel::<Bytes>(64);

    // The starting point: the current state (sent as ADDED events) or a given revision.
    let mut initial = Vec::new();
    let start: Revision = if send_initial {
        let opts = ListOptions {
            labels: filter.labels.clone(),
            fields: filter.fields.clone(),
            ..Default::default()
        };
        let page = state.objects.list(&res, &ns, &opts).await?;
        initial = page.items;
        if p.get("sendInitialEvents").is_none() || rv.is_empty() || rv == "0" {
            page.revision
        } else {
            page.revision.max(parse_rv(rv)?)
        }
    } else {
        parse_rv(rv)?
    };
    let store_watch = state.objects.store.watch(&prefix, start).await;

    let explicit_initial = p.get("sendInitialEvents") == Some("true");
    let objects_table = filter.table;
    let params = call.params.clone();
    let render = move |res: &Resource, obj: Value| -> Value {
        if objects_table {
            table::for_object(res, &obj, &params)
        } else {
            obj
        }
    };
    tokio::spawn(async move {
        let stream = async {
            for obj in initial {
                if tx
                    .send(event_line("ADDED", render(&res, obj)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if explicit_initial {
                let done = json!({"k8s.io/initial-events-end": "true"});
                if tx.send(bookmark(&res, start, Some(done))).await.is_err() {
                    return;
                }
            }
            let mut store_watch = match store_watch {
                Ok(w) => w,
                Err(e) => {
                    let _ = tx
                        .send(error_line(&ApiError::from_store(&res, "", e)))
                        .await;
                    return;
                }
            };
            forward(&res, &filter, &mut store_watch, &tx, &render).await;
        };
        // Ends when the client goes away, when the timeout passes, or when the store ends
        // the watch; dropping the store watch cancels it.
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stream => {}
            _ = tx.closed() => {}
            _ = deadline => {}
        }
    });

    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache, private"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

fn parse_rv(rv: &str) -> Result<Revision, ApiError> {
    rv.parse::<Revision>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {rv:?}")))
}

/// Forwards store events as watch events until the store watch ends or the client leaves.
async fn forward<R>(
    res: &Resource,
    filter: &Filter,
    store_watch: &mut Watch,
    tx: &mpsc::Sender<Bytes>,
    render: &R,
) where
    R: Fn(&Resource, Value) -> Value,
{
    while let Some(batch) = store_watch.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(error_line(&ApiError::from_store(res, "", e))).await;
                return;
            }
        };
        if batch.events.is_empty() {
            if filter.bookmarks && tx.send(bookmark(res, batch.revision, None)).await.is_err() {
                return;
            }
            continue;
        }
        for event in &batch.events {
            let line = match translate(res, event, filter) {
                Ok(Some((kind, obj))) => event_line(kind, render(res, obj)),
                Ok(None) => continue,
                Err(e) => error_line(&e),
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

/// The watch event a store event is for this watcher, if any. Selectors turn a change
/// into ADDED or DELETED when the object enters or leaves the selection, as upstream's
/// watch filtering does.
fn translate(
    res: &Resource,
    event: &Event,
    filter: &Filter,
) -> Result<Option<(&'static str, Value)>, ApiError> {
    match event {
        Event::Put { kv, prev } => {
            let obj = decode_as(res, kv)?;
            let was = match prev {
                Some(p) => Some(filter.matches(&decode(p)?)),
                None => None,
            };
            let is = filter.matches(&obj);
            Ok(match (was, is) {
                (Some(true), true) => Some(("MODIFIED", obj)),
                (Some(true), false) => Some(("DELETED", obj)),
                (_, true) => Some(("ADDED", obj)),
                (_, false) => None,
            })
        }
        Event::Delete { kv, prev } => {
            let mut obj = match prev {
                Some(p) => decode_as(res, p)?,
                None => json!({"metadata": {"name": kv.key.rsplit('/').next().unwrap_or("")}}),
            };
            meta::set_resource_version(&mut obj, kv.mod_revision);
            Ok(filter.matches(&obj).then_some(("DELETED", obj)))
        }
    }
}
