//! `network create|ls|inspect|rm|connect|disconnect|prune` and `port`.

use std::collections::HashMap;

use anyhow::{bail, Result};
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListNetworksOptions, PruneNetworksOptions,
};
use bollard::Docker;
use serde_json::{json, Value};

use crate::containers::{confirm, filters};
use crate::table::{print_rows, short_id, Format, Template};
use crate::{exit_code, item_error};

/// `cloudlet network …`
#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// Create a network
    Create(NetworkCreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(NetworkLsArgs),
    /// Display detailed information on one or more networks
    Inspect(NetworkInspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(NetworkRmArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkDisconnectArgs),
    /// Remove all unused networks
    Prune(NetworkPruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct NetworkLsArgs {
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

#[derive(clap::Args, Debug)]
pub struct NetworkInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct NetworkRmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct NetworkConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(clap::Args, Debug)]
pub struct NetworkDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(clap::Args, Debug)]
pub struct NetworkPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `k=v` flags as a map.
pub(crate) fn key_values(items: &[String], what: &str) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), v.to_string()),
            None if what == "label" => m.insert(i.clone(), String::new()),
            None => bail!("invalid {what} {i:?}: want key=value"),
        };
    }
    Ok(m)
}

pub async fn run(d: &Docker, cmd: NetworkCommand) -> Result<i32> {
    match cmd {
        NetworkCommand::Create(a) => create(d, a).await,
        NetworkCommand::Ls(a) => ls(d, a).await,
        NetworkCommand::Inspect(a) => inspect(d, a).await,
        NetworkCommand::Rm(a) => rm(d, a).await,
        NetworkCommand::Connect(a) => connect(d, a).await,
        NetworkCommand::Disconnect(a) => disconnect(d, a).await,
        NetworkCommand::Prune(a) => prune(d, a).await,
    }
}

async fn create(d: &Docker, a: NetworkCreateArgs) -> Result<i32> {
    if a.subnet.is_none() && (a.gateway.is_some() || a.ip_range.is_some()) {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let config = a.subnet.clone().map(|subnet| IpamConfig {
        subnet: Some(subnet),
        gateway: a.gateway.clone(),
        ip_range: a.ip_range.clone(),
        ..Default::default()
    });
    let req = NetworkCreateRequest {
        name: a.name.clone(),
        driver: Some(a.driver.clone()),
        internal: Some(a.internal),
        attachable: Some(a.attachable),
        ipam: Some(Ipam {
            driver: Some("default".into()),
            config: Some(config.into_iter().collect()),
            options: None,
        }),
        options: Some(key_values(&a.opt, "option")?),
        labels: Some(key_values(&a.label, "label")?),
        ..Default::default()
    };
    let resp = d.create_network(req).await?;
    println!("{}", resp.id);
    Ok(0)
}

async fn ls(d: &Docker, a: NetworkLsArgs) -> Result<i32> {
    let opts = ListNetworksOptions {
        filters: Some(filters(&a.filter)?),
    };
    let mut list = d.list_networks(Some(opts)).await?;
    list.sort_by(|x, y| x.name.cmp(&y.name));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        use std::io::Write;
        for n in &list {
            let id = n.id.clone().unwrap_or_default();
            writeln!(out, "{}", if a.no_trunc { id } else { short_id(&id) })?;
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|n| {
            let id = n.id.clone().unwrap_or_default();
            json!({
                "ID": if a.no_trunc { id.clone() } else { short_id(&id) },
                "Name": n.name,
                "Driver": n.driver,
                "Scope": n.scope,
                "Internal": n.internal.unwrap_or(false),
                "Labels": n.labels.as_ref().map(|l| l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")).unwrap_or_default(),
            })
        })
        .collect();
    let format = Format::parse(a.format.as_deref())?;
    print_rows(
        &mut out,
        &format,
        &rows,
        "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &|f| match f {
            "ID" => "NETWORK ID".into(),
            other => other.to_uppercase(),
        },
    )?;
    Ok(0)
}

/// Prints documents as a JSON array, or each through a `--format` template.
pub(crate) fn print_docs(docs: &[Value], format: Option<&str>) -> Result<()> {
    match format {
        Some(f) => {
            let t = Template::parse(f)?;
            for doc in docs {
                println!("{}", t.render(doc));
            }
        }
        None => println!("{}", serde_json::to_string_pretty(docs)?),
    }
    Ok(())
}

/// Runs `f` for each name, printing docker's line for each failure; returns what
/// succeeded and whether anything failed (a lost connection is an error).
async fn each_item<T, F, Fut>(names: &[String], f: F) -> Result<(Vec<T>, bool)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
{
    let mut done = Vec::new();
    let mut failed = false;
    for name in names {
        match f(name.clone()).await {
            Ok(v) => done.push(v),
            Err(e) => {
                eprintln!("{}", item_error(e.into())?);
                failed = true;
            }
        }
    }
    Ok((done, failed))
}

/// [`each_item`], exiting 1 if anything failed.
pub(crate) async fn each<T, F, Fut>(names: &[String], f: F) -> Result<Vec<T>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
{
    match each_item(names, f).await? {
        (_, true) => Err(exit_code(1)),
        (done, false) => Ok(done),
    }
}

/// Inspects each name and prints what was found (as docker, also when some were not).
pub(crate) async fn inspect_each<T, F, Fut>(
    names: &[String],
    format: Option<&str>,
    f: F,
) -> Result<i32>
where
    T: serde::Serialize,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, bollard::errors::Error>>,
{
    let (found, failed) = each_item(names, f).await?;
    let docs = found
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    print_docs(&docs, format)?;
    match failed {
        true => Err(exit_code(1)),
        false => Ok(0),
    }
}

async fn inspect(d: &Docker, a: NetworkInspectArgs) -> Result<i32> {
    inspect_each(&a.names, a.format.as_deref(), |n| async move {
        d.inspect_network(&n, None::<InspectNetworkOptions>).await
    })
    .await
}

async fn rm(d: &Docker, a: NetworkRmArgs) -> Result<i32> {
    each(&a.names, |n| async move {
        d.remove_network(&n).await.map(|()| println!("{n}"))
    })
    .await?;
    Ok(0)
}

async fn connect(d: &Docker, a: NetworkConnectArgs) -> Result<i32> {
    let endpoint = EndpointSettings {
        aliases: (!a.alias.is_empty()).then(|| a.alias.clone()),
        ipam_config: a.ip.clone().map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip),
            ..Default::default()
        }),
        ..Default::default()
    };
    let req = NetworkConnectRequest {
        container: a.container.clone(),
        endpoint_config: Some(endpoint),
    };
    d.connect_network(&a.network, req).await?;
    Ok(0)
}

async fn disconnect(d: &Docker, a: NetworkDisconnectArgs) -> Result<i32> {
    let req = NetworkDisconnectRequest {
        container: a.container.clone(),
        force: Some(a.force),
    };
    d.disconnect_network(&a.network, req).await?;
    Ok(0)
}

async fn prune(d: &Docker, a: NetworkPruneArgs) -> Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(0);
    }
    let opts = PruneNetworksOptions {
        filters: Some(filters(&a.filter)?),
    };
    let resp = d.prune_networks(Some(opts)).await?;
    let deleted = resp.networks_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Networks:");
        for n in deleted {
            println!("{n}");
        }
    }
    Ok(0)
}

/// List port mappings or a specific mapping for the container.
#[derive(clap::Args, Debug)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub port: Option<String>,
}

pub async fn port(d: &Docker, a: PortArgs) -> Result<i32> {
    let c = d
        .inspect_container(&a.container, None::<InspectContainerOptions>)
        .await?;
    let ports = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
    let want = a.port.as_ref().map(|p| match p.contains('/') {
        true => p.clone(),
        false => format!("{p}/tcp"),
    });
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| {
        let (n, proto) = k.split_once('/').unwrap_or((k, ""));
        (n.parse::<u32>().unwrap_or(0), proto.to_string())
    });
    let mut found = false;
    for key in keys {
        if want.as_ref().is_some_and(|w| w != key) {
            continue;
        }
        for b in ports[key].iter().flatten() {
            found = true;
            let ip = b.host_ip.clone().unwrap_or_default();
            let port = b.host_port.clone().unwrap_or_default();
            match &want {
                Some(_) => println!("{ip}:{port}"),
                None => println!("{key} -> {ip}:{port}"),
            }
        }
    }
    if let (Some(w), false) = (&want, found) {
        bail!("No public port '{w}' published for {}", a.container);
    }
    Ok(0)
}
