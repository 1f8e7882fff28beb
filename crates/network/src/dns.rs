//! The embedded DNS resolver at 127.0.0.11, as dockerd's: containers on user-defined
//! networks find each other by name and alias; other names go to the host's resolvers.
//!
//! Each container gets its own UDP and TCP sockets on 127.0.0.11:53, made inside its
//! namespace (all of 127.0.0.0/8 is local on its loopback, so no address or rule is
//! needed there) and served by the daemon: the socket tells which container asks, and so
//! which networks' names it may see. Forwarded queries leave from the host's namespace.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::netns;

pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);

/// What the resolver asks of the networks.
pub trait Names: Send + Sync + 'static {
    /// The addresses of `name` as container `asker` may see it (its networks only).
    fn lookup(&self, asker: &str, name: &str) -> Vec<Ipv4Addr>;
    /// Where other names go (the host's resolvers, or the container's `--dns`).
    fn upstreams(&self, asker: &str) -> Vec<SocketAddr>;
}

/// A container's resolver; stops when dropped.
#[derive(Debug)]
pub struct Resolver {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds 127.0.0.11:53 (UDP and TCP) inside the namespace at `netns`, whose loopback must
/// be up, and serves it for container `id`. Must run inside a tokio runtime.
pub fn serve(netns_path: &Path, id: &str, names: Arc<dyn Names>) -> Result<Resolver> {
    let (udp, tcp) = netns::in_netns(netns_path, || {
        let addr = SocketAddr::from((RESOLVER, 53));
        let udp = std::net::UdpSocket::bind(addr).map_err(|e| Error::io("bind dns udp", e))?;
        let tcp = std::net::TcpListener::bind(addr).map_err(|e| Error::io("bind dns tcp", e))?;
        udp.set_nonblocking(true)
            .and_then(|()| tcp.set_nonblocking(true))
            .map_err(|e| Error::io("dns sockets", e))?;
        Ok((udp, tcp))
    })?;
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(|e| Error::io("dns udp", e))?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(|e| Error::io("dns tcp", e))?;
    let udp = Arc::new(udp);
    let (id1, n1) = (id.to_string(), names.clone());
    let udp_task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let (query, udp, id, names) = (buf[..n].to_vec(), udp.clone(), id1.clone(), n1.clone());
            tokio::spawn(async move {
                if let Some(reply) = answer(&query, &id, names.as_ref()).await {
                    let _ = udp.send_to(&reply, from).await;
                }
            });
        }
    });
    let id2 = id.to_string();
    let tcp_task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = tcp.accept().await else {
                continue;
            };
            let (id, names) = (id2.clone(), names.clone());
            tokio::spawn(async move {
                let mut len = [0u8; 2];
                while conn.read_exact(&mut len).await.is_ok() {
                    let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = answer(&query, &id, names.as_ref()).await else {
                        return;
                    };
                    let mut out = (reply.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&reply);
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Resolver {
        tasks: vec![udp_task, tcp_task],
    })
}

/// The reply to one query: from the container names, or from upstream.
async fn answer(query: &[u8], asker: &str, names: &dyn Names) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    if let [q] = msg.queries() {
        let name = q
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ips = names.lookup(asker, &name);
        if !ips.is_empty() {
            let mut reply = response(&msg);
            reply.set_authoritative(true);
            if q.query_type() == RecordType::A {
                for ip in ips {
                    reply.add_answer(Record::from_rdata(q.name().clone(), TTL, RData::A(A(ip))));
                }
            }
            return reply.to_vec().ok();
        }
    }
    for upstream in names.upstreams(asker) {
        if let Some(reply) = forward(query, upstream).await {
            return Some(reply);
        }
    }
    let mut reply = response(&msg);
    reply.set_response_code(ResponseCode::ServFail);
    reply.to_vec().ok()
}

fn response(query: &Message) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_queries(query.queries().to_vec());
    reply
}

async fn forward(query: &[u8], upstream: SocketAddr) -> Option<Vec<u8>> {
    let bind: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => "[::]:0".parse().ok()?,
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect(upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    buf.truncate(n);
    Some(buf)
}

/// The nameservers of a resolv.conf text.
pub fn nameservers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    struct Fixed;
    impl Names for Fixed {
        fn lookup(&self, asker: &str, name: &str) -> Vec<Ipv4Addr> {
            match (asker, name) {
                ("c1", "web") => vec![Ipv4Addr::new(10, 0, 0, 2)],
                _ => vec![],
            }
        }
        fn upstreams(&self, _: &str) -> Vec<SocketAddr> {
            vec![]
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7)
            .add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn container_names_are_answered_and_scoped() {
        let reply = answer(&query("web.", RecordType::A), "c1", &Fixed)
            .await
            .unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.id(), 7);
        assert_eq!(m.answers().len(), 1);
        assert_eq!(
            m.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(10, 0, 0, 2)))
        );
        let aaaa = answer(&query("web.", RecordType::AAAA), "c1", &Fixed)
            .await
            .unwrap();
        let m = Message::from_vec(&aaaa).unwrap();
        assert_eq!(
            (m.response_code(), m.answers().len()),
            (ResponseCode::NoError, 0)
        );
        // Another container does not see c1's network, and there is no upstream.
        let other = answer(&query("web.", RecordType::A), "c2", &Fixed)
            .await
            .unwrap();
        let m = Message::from_vec(&other).unwrap();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
    }

    #[test]
    fn nameservers_parse() {
        let conf = "# x\nnameserver 10.0.0.53\nsearch a\nnameserver  1.1.1.1 \n";
        assert_eq!(nameservers(conf), vec!["10.0.0.53", "1.1.1.1"]);
    }
}
