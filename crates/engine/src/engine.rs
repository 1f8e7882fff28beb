//! The engine: one per node, shared by every API handler.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::container_exec::ExecEntry;
use crate::events::Events;
use crate::table::Table;
use crate::Config;

pub struct Engine {
    pub config: Config,
    pub images: image::ImageStore,
    pub runtime: runtime::Runtime,
    pub containers: Table,
    pub execs: Mutex<HashMap<String, Arc<ExecEntry>>>,
    pub events: Events,
    /// Held shared by each background release of a removed container; image removal takes
    /// it exclusively, so no layer is deleted under a mounted rootfs.
    pub purges: Arc<tokio::sync::RwLock<()>>,
    /// Containers made ahead of demand.
    pub warm: crate::warm::WarmPool,
    pub networks: Arc<network::Networks>,
    pub volumes: volume::VolumeStore,
    pub started: chrono::DateTime<chrono::Utc>,
}

impl Engine {
    /// Opens the stores under the data dir and finds the containers a previous daemon left.
    pub async fn open(
        config: Config,
    ) -> Result<Arc<Engine>, Box<dyn std::error::Error + Send + Sync>> {
        for dir in [
            &config.data_dir,
            &config.containers_dir(),
            &config.exec_root,
            &config.runtime_dir(),
        ] {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        let images = image::ImageStore::open(
            config.images_dir(),
            image::StoreOptions {
                insecure_registries: config.insecure_registries.clone(),
            },
        )?;
        let runtime = runtime::Runtime::new(config.runtime_dir(), config.shim_exe.clone());
        let warm_images = config.warm_images;
        let networks = network::Networks::open(network_options(&config)?).await?;
        let volumes = volume::VolumeStore::open(config.volumes_dir())?;
        let engine = Arc::new(Engine {
            config,
            images,
            runtime,
            containers: Table::default(),
            execs: Mutex::new(HashMap::new()),
            events: Events::default(),
            purges: Arc::default(),
            warm: crate::warm::WarmPool::new(warm_images),
            networks,
            volumes,
            started: chrono::Utc::now(),
        });
        crate::recover::recover(&engine).await;
        Ok(engine)
    }
}

fn network_options(config: &Config) -> Result<network::Options, network::Error> {
    let mut o = network::Options::new(config.network_dir());
    o.prefix = config.network_prefix.clone();
    if let Some(bip) = &config.bip {
        o.bip = Some(bip.parse().map_err(|_| {
            network::Error::InvalidArgument(format!(
                "invalid --bip {bip}: want CIDR, e.g. 172.17.0.1/16"
            ))
        })?);
    }
    if !config.address_pools.is_empty() {
        o.pools = config
            .address_pools
            .iter()
            .map(|p| network::ipam::AddressPool::parse(p))
            .collect::<Result<_, _>>()?;
    }
    Ok(o)
}

/// A random 64-hex id, as docker's.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}
