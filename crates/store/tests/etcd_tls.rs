//! The etcd backend over TLS with a client certificate, against a real etcd that
//! requires one.

mod common;

use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use store::{EtcdStore, EtcdTls, Store};

use common::{EtcdServer, TestPki};

fn make_pki() -> TestPki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    write("ca.pem", ca_params.self_signed(&ca_key).unwrap().pem());
    let issuer = Issuer::new(ca_params, ca_key);

    for (name, san, usage) in [
        ("server", "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth),
        ("client", "client.test", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let mut params = CertificateParams::new(vec![san.to_string()]).unwrap();
        params.extended_key_usages.push(usage);
        let key = KeyPair::generate().unwrap();
        write(
            &format!("{name}.pem"),
            params.signed_by(&key, &issuer).unwrap().pem(),
        );
        write(&format!("{name}-key.pem"), key.serialize_pem());
    }
    TestPki { dir }
}

#[tokio::test]
async fn connects_with_client_certificates() {
    let pki = make_pki();
    let flag = |name: &str, file: &str| format!("--{name}={}", pki.path(file).display());
    let server = EtcdServer::start(&[
        flag("cert-file", "server.pem"),
        flag("key-file", "server-key.pem"),
        flag("trusted-ca-file", "ca.pem"),
        "--client-cert-auth".to_string(),
    ]);
    let endpoints = [server.endpoint.clone()];

    let store = EtcdStore::connect(&endpoints, Some(pki.client_tls()))
        .await
        .unwrap();
    let kv = store.create("/tls/a", b"secret".to_vec()).await.unwrap();
    assert_eq!(store.get("/tls/a", 0).await.unwrap(), Some(kv));

    // Without a client certificate, etcd refuses.
    let no_cert = EtcdTls {
        ca: Some(pki.path("ca.pem")),
        ..Default::default()
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        EtcdStore::connect(&endpoints, Some(no_cert)),
    )
    .await
    .expect("connect gives up");
    assert!(refused.is_err(), "connected without a client certificate");
}
