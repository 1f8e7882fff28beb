//! Runs the API server on 127.0.0.1 with a throw-away PKI and SQLite store, for trying
//! it with kubectl: `cargo run -p cloudlet-apiserver --example serve -- /tmp/k 6443`,
//! then `kubectl --kubeconfig /tmp/k/kubeconfig get ns`. A third argument `rbac` turns on
//! the RBAC authorizer.

use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/cloudlet-apiserver".into()),
    );
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(6443);
    let rbac = args.next().is_some_and(|a| a == "rbac");
    std::fs::create_dir_all(&dir)?;
    let pki = Arc::new(pki::Pki::load_or_create(&dir.join("pki"))?);
    let store = store::SqliteStore::open(dir.join("state.db"))?;
    let mut config = apiserver::Config::new(store.clone(), pki);
    if rbac {
        config.authorizer = Arc::new(apiserver::Rbac::new(store));
    }
    config.bind = ([127, 0, 0, 1], port).into();
    config.kubeconfig = Some(dir.join("kubeconfig"));
    apiserver::ApiServer::new(config).await?.run().await?;
    Ok(())
}
