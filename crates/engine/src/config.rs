use std::path::PathBuf;

/// How `cloudlet server` runs the engine.
#[derive(Clone, Debug)]
pub struct Config {
    /// Persistent state: images, containers, logs (`/var/lib/cloudlet`).
    pub data_dir: PathBuf,
    /// Volatile state: runtime and shim sockets (`/run/cloudlet`).
    pub exec_root: PathBuf,
    /// The Docker API socket (`/run/cloudlet/docker.sock`).
    pub socket: PathBuf,
    /// Registries reached over plain HTTP, as `host[:port]`; loopback always is.
    pub insecure_registries: Vec<String>,
    /// The binary re-executed as `cloudlet shim`.
    pub shim_exe: PathBuf,
    /// How many images get a container made ahead of demand (0: none); see `warm`.
    pub warm_images: usize,
    /// Names the host objects this daemon makes: its nftables table and default bridge
    /// (`<prefix>0`).
    pub network_prefix: String,
    /// The default bridge's address and subnet (`--bip`, e.g. 172.17.0.1/16).
    pub bip: Option<String>,
    /// Where user-defined networks get subnets (`base=CIDR,size=N`, repeatable).
    pub address_pools: Vec<String>,
}

impl Config {
    pub fn containers_dir(&self) -> PathBuf {
        self.data_dir.join("containers")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("image")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.data_dir.join("volumes")
    }
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join("network")
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
}
