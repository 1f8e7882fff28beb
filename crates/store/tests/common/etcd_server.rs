//! A real etcd for tests: Debian's etcd-server on free loopback ports, in a temporary
//! directory, killed on drop. Shared by the store's tests and the cloudlet binary's.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Where Debian's etcd-server puts etcd. CI installs it; without it the etcd tests fail.
pub const ETCD: &str = "/usr/bin/etcd";

/// A real etcd on loopback with free ports and a data directory of its own (on tmpfs when
/// there is one: fsyncs there cost nothing). Killed when dropped.
pub struct EtcdServer {
    child: Child,
    _dir: TempDir,
    /// `http://127.0.0.1:PORT` (`https://` with TLS flags).
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    /// Starts etcd; `tls_flags` (cert and key flags) switch its client URL to https.
    pub fn start(tls_flags: &[String]) -> EtcdServer {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the etcd tests need a real etcd (Debian package etcd-server)"
        );
        let mut last_log = String::new();
        // A port picked as free can be taken by another test before etcd binds it: retry.
        for _ in 0..5 {
            match Self::try_start(tls_flags) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!("etcd did not start; its last log:\n{last_log}");
    }

    fn try_start(tls_flags: &[String]) -> Result<EtcdServer, String> {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = tempfile::Builder::new()
            .prefix("cloudlet-etcd-")
            .tempdir_in(base)
            .map_err(|e| e.to_string())?;
        let (client, peer) = (free_port(), free_port());
        let scheme = if tls_flags.is_empty() {
            "http"
        } else {
            "https"
        };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log_path = dir.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let child = Command::new(ETCD)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            // A one-member cluster elects itself; short ticks make that take milliseconds.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=50")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .args(tls_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {ETCD}: {e}"))?;
        let mut server = EtcdServer {
            child,
            _dir: dir,
            endpoint: client_url,
        };
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("etcd exited ({status}):\n{}", read_log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", client)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("etcd did not listen in time:\n{}", read_log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
