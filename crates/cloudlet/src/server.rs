//! `cloudlet server`: the node engine (Docker Engine API on a unix socket) and the Kubernetes
//! API server (HTTPS on 6443, over the embedded SQLite store or etcd), in one process.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Where images, containers, logs, the certificates and the SQLite store are kept.
    #[arg(long, default_value = "/var/lib/cloudlet")]
    data_dir: PathBuf,
    /// Where volatile runtime state (shim sockets) is kept.
    #[arg(long, default_value = "/run/cloudlet")]
    exec_root: PathBuf,
    /// The Docker API socket.
    #[arg(long, default_value = "/run/cloudlet/docker.sock")]
    socket: PathBuf,
    /// A registry to reach over plain HTTP (host[:port]); loopback always is. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// How many images keep a container made ahead of demand, so that the next `run` of
    /// the same image with the same options skips creating one (0: none).
    #[arg(long, default_value_t = 4)]
    warm_pool: usize,
    /// Names what the engine makes on the host for its networks: the nftables table and
    /// the default bridge (`<prefix>0`). A second daemon on one host needs another.
    #[arg(long, default_value = "cloudlet")]
    network_prefix: String,
    /// The default bridge network's address and subnet, as dockerd's --bip.
    #[arg(long, default_value = "172.17.0.1/16")]
    bip: String,
    /// Where user-defined networks get their subnets: base=CIDR,size=N (repeatable;
    /// default: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s).
    #[arg(long = "default-address-pool")]
    address_pools: Vec<String>,
    /// Do not run the node engine (a control-plane-only server).
    #[arg(long)]
    disable_engine: bool,
    /// The store: unset for SQLite in the data directory, etcd://host:port[,host:port…]
    /// for etcd.
    #[arg(long)]
    datastore_endpoint: Option<String>,
    /// CA bundle for etcd's TLS.
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
    /// The address the Kubernetes API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The Kubernetes API's port (0: any free port, written to the kubeconfig).
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// An extra name or address for the API server's certificate. Repeatable.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Where to write the admin kubeconfig (readable by root only).
    #[arg(long, default_value = apiserver::DEFAULT_KUBECONFIG)]
    write_kubeconfig: PathBuf,
    /// Pod addresses (used by the networking issues to come).
    #[arg(long, default_value = "10.42.0.0/16", value_parser = parse_cidr)]
    cluster_cidr: String,
    /// Where Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.43.0.0/16", value_parser = parse_cidr)]
    service_cidr: String,
    /// Write an audit log of API requests to this file (JSON lines of audit.k8s.io/v1
    /// Events), or to standard output with `-`. Unset: no audit log.
    #[arg(long)]
    audit_log_path: Option<PathBuf>,
    /// How much the audit log records: None, Metadata, Request or RequestResponse
    /// (Secrets and ConfigMaps are never logged beyond Metadata).
    #[arg(long, default_value = "Metadata", value_parser = str::parse::<apiserver::audit::Level>)]
    audit_level: apiserver::audit::Level,
}

/// A CIDR such as 10.43.0.0/16: checked now, used by the networking work to come.
fn parse_cidr(s: &str) -> Result<String, String> {
    let (ip, bits) = s.split_once('/').ok_or("expected ADDRESS/BITS")?;
    let ip: IpAddr = ip.parse().map_err(|e| format!("{ip}: {e}"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match bits.parse::<u8>() {
        Ok(b) if b <= max => Ok(s.to_string()),
        _ => Err(format!("prefix length must be 0..={max}")),
    }
}

pub fn run(s: ServerArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    crate::block_on(tokio::runtime::Builder::new_multi_thread(), async {
        match serve(s).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cloudlet server: {e:#}");
                1
            }
        }
    })
}

async fn serve(s: ServerArgs) -> anyhow::Result<()> {
    let api = control_plane(&s).await?;
    let engine = async {
        if s.disable_engine {
            shutdown_signal().await;
            return Ok(());
        }
        let shim_exe = std::env::current_exe().context("find my own executable")?;
        let config = engine::Config {
            data_dir: s.data_dir.clone(),
            exec_root: s.exec_root.clone(),
            socket: s.socket.clone(),
            insecure_registries: s.insecure_registries.clone(),
            shim_exe,
            warm_images: s.warm_pool,
            network_prefix: s.network_prefix.clone(),
            bip: Some(s.bip.clone()),
            address_pools: s.address_pools.clone(),
        };
        engine::serve(config, shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!("engine: {e}"))
    };
    tokio::select! {
        r = engine => r,
        r = api.run() => r.context("kubernetes API server"),
    }
}

/// The store, the cluster's certificates and the API server, ready to run.
async fn control_plane(s: &ServerArgs) -> anyhow::Result<apiserver::ApiServer> {
    let tls =
        (s.datastore_cafile.is_some() || s.datastore_certfile.is_some()).then(|| store::EtcdTls {
            ca: s.datastore_cafile.clone(),
            cert: s.datastore_certfile.clone(),
            key: s.datastore_keyfile.clone(),
        });
    let store = store::endpoint::open(s.datastore_endpoint.as_deref(), &s.data_dir, tls)
        .await
        .context("open the datastore")?;
    let pki = pki::Pki::load_or_create(&s.data_dir.join("pki")).context("certificates")?;
    let mut config = apiserver::Config::new(store.clone(), Arc::new(pki));
    config.bind = SocketAddr::new(s.bind_address, s.https_listen_port);
    config.tls_sans = s.tls_sans.iter().map(|n| pki::San::parse(n)).collect();
    config.service_cidr = s.service_cidr.clone();
    config.kubeconfig = Some(s.write_kubeconfig.clone());
    config.authorizer = Arc::new(apiserver::Rbac::new(store));
    config.audit = s
        .audit_log_path
        .clone()
        .map(|path| apiserver::audit::AuditConfig {
            path,
            level: s.audit_level,
        });
    apiserver::ApiServer::new(config)
        .await
        .context("start the Kubernetes API server")
}

/// SIGINT or SIGTERM end the daemon; containers keep running under their shims.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; containers keep running");
}
