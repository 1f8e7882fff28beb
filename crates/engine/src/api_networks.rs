//! The network endpoints: list, inspect, create, remove, connect, disconnect, prune.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bollard_stubs::models::EndpointSettings;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_containers::Params;
use crate::container::Status;
use crate::container_inspect::{dangling_matches, labels_match};
use crate::container_network::{self, Mode};
use crate::error::{ApiError, ApiResult};
use crate::Engine;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// A network as the API shows it; `containers` lists its endpoints (inspect only).
fn view(engine: &Engine, n: &network::Network, containers: bool) -> Value {
    let mut config = Vec::new();
    if let (Some(subnet), Some(gw)) = (n.subnet, n.gateway) {
        let mut c = json!({"Subnet": subnet.to_string(), "Gateway": gw.to_string()});
        if let Some(r) = n.ip_range {
            c["IPRange"] = json!(r.to_string());
        }
        config.push(c);
    }
    let mut eps = serde_json::Map::new();
    if containers {
        for ep in engine.networks.network_endpoints(&n.id) {
            eps.insert(
                ep.container_id.clone(),
                json!({
                    "Name": ep.container_name,
                    "EndpointID": ep.id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len),
                    "IPv6Address": "",
                }),
            );
        }
    }
    let mut options = n.options.clone();
    if n.predefined && n.driver == network::Driver::Bridge {
        options.insert("com.docker.network.bridge.name".into(), n.bridge.clone());
        options.insert(
            "com.docker.network.bridge.default_bridge".into(),
            "true".into(),
        );
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "Scope": "local",
        "Driver": n.driver.as_str(),
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": eps,
        "Options": options,
        "Labels": n.labels,
    })
}

fn matches(
    n: &network::Network,
    engine: &Engine,
    filters: &HashMap<String, Vec<String>>,
) -> ApiResult<bool> {
    for (key, values) in filters {
        let ok = match key.as_str() {
            "name" => values.iter().any(|v| n.name.contains(v.as_str())),
            "id" => values.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => values.iter().any(|v| v == n.driver.as_str()),
            "scope" => values.iter().any(|v| v == "local"),
            "type" => values.iter().any(|v| match v.as_str() {
                "builtin" => n.predefined,
                "custom" => !n.predefined,
                _ => false,
            }),
            "label" => labels_match(&n.labels, values),
            "dangling" => dangling_matches(
                !n.predefined && engine.networks.network_endpoints(&n.id).is_empty(),
                values,
            ),
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    let mut out = Vec::new();
    for n in engine.networks.list() {
        if matches(&n, &engine, &filters)? {
            out.push(view(&engine, &n, false));
        }
    }
    Ok(Json(out))
}

async fn inspect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let n = engine.networks.get(&id)?;
    Ok(Json(view(&engine, &n, true)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    attachable: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    options: HashMap<String, String>,
    labels: HashMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: String,
    config: Vec<IpamConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
    gateway: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
}

fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> ApiResult<T> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in request body: {e}")))
}

async fn create(State(engine): State<Arc<Engine>>, bytes: Bytes) -> ApiResult<impl IntoResponse> {
    let b: CreateBody = body(&bytes)?;
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request("IPv6 networks are not supported yet"));
    }
    let ipam = b.ipam.unwrap_or_default();
    if !matches!(ipam.driver.as_str(), "" | "default") {
        return Err(ApiError::bad_request(format!(
            "IPAM driver {:?} is not supported: only the default one is",
            ipam.driver
        )));
    }
    if ipam.config.len() > 1 {
        return Err(ApiError::bad_request(
            "only one IPv4 subnet per network is supported",
        ));
    }
    let cfg = ipam.config.into_iter().next().unwrap_or_default();
    if cfg.subnet.is_empty() && !(cfg.gateway.is_empty() && cfg.ip_range.is_empty()) {
        return Err(ApiError::bad_request("gateway and ip-range need a subnet"));
    }
    let n = engine
        .networks
        .create(network::CreateNetwork {
            name: b.name,
            driver: b.driver,
            subnet: Some(cfg.subnet),
            gateway: Some(cfg.gateway),
            ip_range: Some(cfg.ip_range),
            internal: b.internal,
            attachable: b.attachable,
            labels: b.labels,
            options: b.options,
        })
        .await?;
    engine.events.network("create", &n.id, &n.name);
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": n.id, "Warning": ""})),
    ))
}

async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let n = engine.networks.get(&id)?;
    engine.networks.remove(&n.id).await?;
    engine.events.network("destroy", &n.id, &n.name);
    Ok(StatusCode::NO_CONTENT)
}

async fn prune(
    State(engine): State<Arc<Engine>>,
    Query(p): Query<Params>,
) -> ApiResult<impl IntoResponse> {
    let filters = crate::container_inspect::parse_filters(p.get("filters").map(String::as_str))?;
    if let Some(k) = filters.keys().find(|k| *k != "label") {
        return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
    }
    let e2 = engine.clone();
    let deleted = engine
        .networks
        .prune(|n| !matches(n, &e2, &filters).unwrap_or(false))
        .await;
    Ok(Json(json!({"NetworksDeleted": deleted})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointSettings>,
    force: bool,
}

async fn connect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<impl IntoResponse> {
    let b: ConnectBody = body(&bytes)?;
    let n = engine.networks.get(&id)?;
    let entry = engine.containers.find(&b.container)?;
    let _op = entry.op.lock().await;
    let c = entry.get();
    match container_network::mode(&c.host_config) {
        Mode::Bridge(_) => {}
        Mode::Host => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "container cannot be disconnected from host network or connected to host network",
            ))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "container sharing network namespace with another container or host cannot be connected to any other network",
            ))
        }
    }
    if n.driver != network::Driver::Bridge {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container cannot be disconnected from host network or connected to host network",
        ));
    }
    if c.networks.contains_key(&n.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "endpoint with name {} already exists in network {}",
                c.name, n.name
            ),
        ));
    }
    let mut settings = b.endpoint_config.unwrap_or_default();
    settings.network_id = Some(n.id.clone());
    let running = c.state.status.is_running() && c.state.pid > 0;
    if running {
        let req = network::EndpointRequest {
            ip: settings
                .ipam_config
                .as_ref()
                .and_then(|i| i.ipv4_address.as_deref())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid IPv4 address: {s}")))
                })
                .transpose()?,
            aliases: settings.aliases.clone().unwrap_or_default(),
            mac: None,
        };
        let who = network::ContainerRef {
            id: c.id.clone(),
            name: c.name.clone(),
            hostname: c.config.hostname.clone().unwrap_or_default(),
        };
        let ns = network::netns_of(c.state.pid as i32);
        engine
            .networks
            .connect(&who, &n.id, &req, Some(&ns))
            .await?;
    }
    entry.update(|c| {
        c.networks.insert(n.name.clone(), settings.clone());
    })?;
    engine.events.network("connect", &n.id, &n.name);
    Ok(StatusCode::OK)
}

async fn disconnect(
    State(engine): State<Arc<Engine>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult<impl IntoResponse> {
    let b: ConnectBody = body(&bytes)?;
    let n = engine.networks.get(&id)?;
    let entry = match engine.containers.find(&b.container) {
        Ok(e) => e,
        // `-f` also removes what a removed container left behind; there is nothing here.
        Err(_) if b.force => return Ok(StatusCode::OK),
        Err(e) => return Err(e),
    };
    let _op = entry.op.lock().await;
    let c = entry.get();
    if !c.networks.contains_key(&n.name) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("container {} is not connected to network {}", c.id, n.name),
        ));
    }
    if n.driver != network::Driver::Bridge {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "container cannot be disconnected from host network or connected to host network",
        ));
    }
    if c.state.status == Status::Running || c.state.status == Status::Paused {
        engine.networks.disconnect(&c.id, &n.id).await?;
    }
    entry.update(|c| {
        c.networks.remove(&n.name);
    })?;
    engine.events.network("disconnect", &n.id, &n.name);
    Ok(StatusCode::OK)
}
