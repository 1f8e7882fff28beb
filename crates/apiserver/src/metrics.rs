//! `/metrics`: the API server's Prometheus metrics, named and labelled as kube-apiserver
//! names them so that its dashboards and alerts work unchanged:
//! `apiserver_request_total` (by verb, dry run, group, version, resource, subresource,
//! scope, component and code), `apiserver_request_duration_seconds` (same labels but the
//! code, upstream's buckets; long-running requests such as watches are counted when they
//! start but stay out of the histogram, as upstream keeps them out),
//! `apiserver_current_inflight_requests` and `apiserver_storage_objects` (counted in the
//! store at scrape time), plus the audit log's event and error counters.
//!
//! Label values come only from the catalog and a fixed list of subresources, never from
//! arbitrary URL segments, so that a client probing random paths cannot grow the label
//! sets (and the daemon's memory) without bound.

use axum::http::{header, HeaderMap, Method};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::catalog::Catalog;
use crate::objects::Objects;
use crate::request_info::{RequestInfo, ResourceRequest};

/// Upstream's buckets for `apiserver_request_duration_seconds` (Kubernetes 1.27+).
const DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Subresources reported by name; any other is reported as `other`.
const KNOWN_SUBRESOURCES: &[&str] = &[
    "status",
    "scale",
    "token",
    "log",
    "exec",
    "attach",
    "portforward",
    "proxy",
    "binding",
    "eviction",
    "ephemeralcontainers",
    "resize",
    "finalize",
    "approval",
];

/// Subresources that hold the connection open (upstream's long-running check).
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// The content type `prometheus-client` encodes (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The server's metrics. Cheap to share behind an `Arc`; counters are atomics.
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    inflight: Family<KindLabels, Gauge>,
    storage: Family<ResourceLabels, Gauge>,
    audit_events: Counter,
    audit_errors: Family<PluginLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabels, Counter>::default();
        let durations = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        let inflight = Family::<KindLabels, Gauge>::default();
        let storage = Family::<ResourceLabels, Gauge>::default();
        let audit_events = Counter::default();
        let audit_errors = Family::<PluginLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            durations.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Number of requests currently being served (long-running ones excluded), by kind",
            inflight.clone(),
        );
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind",
            storage.clone(),
        );
        registry.register(
            "apiserver_audit_event",
            "Counter of audit events generated and sent to the audit backend",
            audit_events.clone(),
        );
        registry.register(
            "apiserver_audit_error",
            "Counter of audit events that failed to be audited properly (dropped or not written)",
            audit_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            durations,
            inflight,
            storage,
            audit_events,
            audit_errors,
        }
    }

    /// Counts a finished (or, when long-running, a started) request; `elapsed` is `None`
    /// for long-running requests.
    pub fn record(&self, labels: RequestLabels, code: u16, elapsed: Option<std::time::Duration>) {
        if let Some(elapsed) = elapsed {
            self.durations
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
        self.requests
            .get_or_create(&CodeLabels {
                request: labels,
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self, mutating: bool) -> InFlight {
        let kind = KindLabels {
            request_kind: if mutating { "mutating" } else { "readOnly" },
        };
        let gauge = self.inflight.get_or_create_owned(&kind);
        gauge.inc();
        InFlight(gauge)
    }

    pub fn audit_event(&self) {
        self.audit_events.inc();
    }

    pub fn audit_error(&self) {
        self.audit_errors
            .get_or_create(&PluginLabels { plugin: "log" })
            .inc();
    }

    /// Counts the stored objects of each resource, then encodes everything.
    pub async fn render(&self, objects: &Objects) -> String {
        self.storage.clear();
        let mut seen = std::collections::HashSet::new();
        for res in objects.catalog.all() {
            let prefix = crate::keys::resource_prefix(&res);
            if !res.stored || !seen.insert(prefix.clone()) {
                continue;
            }
            let req = store::RangeRequest {
                prefix,
                count_only: true,
                ..Default::default()
            };
            if let Ok(r) = objects.store.range(req).await {
                self.storage
                    .get_or_create(&ResourceLabels {
                        resource: res.qualified(),
                    })
                    .set(r.count);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Whether the request holds its connection open: watches and the streaming subresources.
pub fn is_long_running(info: &RequestInfo) -> bool {
    match info {
        RequestInfo::Resource(r) => {
            r.verb == "watch" || LONG_RUNNING_SUBRESOURCES.contains(&r.subresource.as_str())
        }
        RequestInfo::NonResource { .. } => false,
    }
}

/// The labels of a request, as upstream's `MonitorRequest` reports them. `route` is the
/// matched route of a non-resource request (`/openapi/v3/apis/{group}/{version}`).
pub fn labels(
    info: &RequestInfo,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    route: Option<&str>,
    catalog: &Catalog,
) -> RequestLabels {
    let dry_run = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "dryRun")
        .map(|(_, v)| v.into_owned())
        .filter(|v| v == "All")
        .unwrap_or_default();
    let mut labels = RequestLabels {
        verb: method.as_str().to_string(),
        dry_run,
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: route.unwrap_or("other").to_string(),
        scope: String::new(),
        component: "apiserver".to_string(),
    };
    let RequestInfo::Resource(r) = info else {
        return labels;
    };
    if catalog.lookup(&r.group, &r.version, &r.resource).is_none() {
        return labels;
    }
    labels.verb = verb(r, headers).to_string();
    labels.group.clone_from(&r.group);
    labels.version.clone_from(&r.version);
    labels.resource.clone_from(&r.resource);
    labels.subresource = match r.subresource.as_str() {
        "" => String::new(),
        s if KNOWN_SUBRESOURCES.contains(&s) => s.to_string(),
        _ => "other".to_string(),
    };
    labels.scope = if !r.name.is_empty() {
        "resource"
    } else if !r.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    }
    .to_string();
    labels
}

/// Upstream's reported verb: the HTTP method, with LIST, WATCH, APPLY and CONNECT told
/// apart.
fn verb(r: &ResourceRequest, headers: &HeaderMap) -> &'static str {
    if matches!(
        r.subresource.as_str(),
        "exec" | "attach" | "portforward" | "proxy"
    ) {
        return "CONNECT";
    }
    match r.verb.as_str() {
        "watch" => "WATCH",
        "list" => "LIST",
        "get" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => {
            let apply = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch+yaml"));
            if apply {
                "APPLY"
            } else {
                "PATCH"
            }
        }
        "delete" | "deletecollection" => "DELETE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(method: Method, path: &str, query: &str, headers: &HeaderMap) -> RequestLabels {
        let info = RequestInfo::parse(&method, path, query);
        labels(&info, &method, headers, query, None, &Catalog::builtin())
    }

    #[test]
    fn labels_follow_upstream() {
        let none = HeaderMap::new();
        let l = labels_of(Method::GET, "/api/v1/namespaces/default/pods", "", &none);
        assert_eq!((l.verb.as_str(), l.scope.as_str()), ("LIST", "namespace"));
        let l = labels_of(Method::GET, "/api/v1/pods", "watch=true", &none);
        assert_eq!((l.verb.as_str(), l.scope.as_str()), ("WATCH", "cluster"));
        let mut apply = HeaderMap::new();
        apply.insert(
            header::CONTENT_TYPE,
            "application/apply-patch+yaml".parse().unwrap(),
        );
        let l = labels_of(
            Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/web",
            "dryRun=All",
            &apply,
        );
        assert_eq!(
            (
                l.verb.as_str(),
                l.group.as_str(),
                l.scope.as_str(),
                l.dry_run.as_str()
            ),
            ("APPLY", "apps", "resource", "All")
        );
        // Unknown resources and subresources do not become label values.
        let l = labels_of(Method::GET, "/api/v1/namespaces/a/zzz", "", &none);
        assert_eq!(
            (l.verb.as_str(), l.resource.as_str(), l.subresource.as_str()),
            ("GET", "", "other")
        );
        let l = labels_of(Method::GET, "/api/v1/namespaces/a/pods/p/zzz", "", &none);
        assert_eq!(l.subresource, "other");
    }

    #[test]
    fn encodes_counters_and_histograms() {
        let m = Metrics::new();
        let l = labels_of(Method::GET, "/api/v1/namespaces", "", &HeaderMap::new());
        m.record(l.clone(), 200, Some(std::time::Duration::from_millis(30)));
        m.record(l, 200, None);
        let _g = m.in_flight(true);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(out.contains(
            r#"apiserver_request_total{verb="LIST",dry_run="",group="",version="v1",resource="namespaces",subresource="",scope="cluster",component="apiserver",code="200"} 2"#
        ), "{out}");
        assert!(out.contains(r#"apiserver_request_duration_seconds_bucket{le="0.05",verb="LIST",dry_run="",group="",version="v1",resource="namespaces",subresource="",scope="cluster",component="apiserver"} 1"#), "{out}");
        assert!(out.contains(r#"apiserver_current_inflight_requests{request_kind="mutating"} 1"#));
    }
}
