//! NAT, port publishing and isolation between networks, in an nftables table of our own.
//!
//! Nothing outside the table is read or changed. The table is written whole, atomically,
//! whenever the set of networks changes (and at daemon start, from the persisted state);
//! published ports are elements of two maps, added and deleted one container at a time.
//! The table is written by the `nft` binary from a script on stdin (the interface nftables
//! keeps stable for rules; a few milliseconds, on network changes only); map elements go
//! over nfnetlink directly (`nfnetlink`), as they are on every start that publishes ports.
//! Both run one at a time, in order, on a thread of their own: so a port's removal is
//! never waited for (a stopping container does not pay for it) and still lands before a
//! later container publishes the same port.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::model::PortMapping;
use crate::nfnetlink::{concat, Element, Nftables, Op};

/// A bridge network as the firewall sees it.
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// A published port and the container address it leads to.
pub struct Publish<'a> {
    pub port: &'a PortMapping,
    pub to: Ipv4Addr,
}

pub struct Firewall {
    /// The table's name (`cloudlet`, or another for a second daemon on the host).
    pub table: String,
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Work for the firewall thread, and where its outcome goes (if anywhere).
struct Job {
    work: Work,
    done: Option<tokio::sync::oneshot::Sender<Result<()>>>,
}

enum Work {
    /// An nft script.
    Script(String),
    /// Map elements: added all or none; deleted one by one if the batch fails (an element
    /// already gone fails it whole).
    Elements(Op, Vec<Element>),
}

impl Firewall {
    pub fn new(table: String) -> Result<Firewall> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let t = table.clone();
        std::thread::Builder::new()
            .name("nft".into())
            .spawn(move || {
                let mut socket = None;
                for job in rx {
                    let r = match job.work {
                        Work::Script(script) => nft(&script),
                        Work::Elements(op, elements) => apply(&mut socket, &t, op, &elements),
                    };
                    if let Err(e) = &r {
                        if job.done.is_none() {
                            tracing::warn!("{e}");
                        }
                    }
                    if let Some(done) = job.done {
                        let _ = done.send(r);
                    }
                }
            })
            .map_err(|e| Error::io("spawn the nft thread", e))?;
        Ok(Firewall { table, jobs })
    }

    /// Runs work after that before it; waits for it unless `wait` is false.
    async fn run(&self, work: Work, wait: bool) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            work,
            done: wait.then_some(tx),
        };
        self.jobs
            .send(job)
            .map_err(|_| Error::Nft("the nft thread is gone".into()))?;
        match wait {
            true => rx
                .await
                .unwrap_or_else(|_| Err(Error::Nft("the nft thread is gone".into()))),
            false => Ok(()),
        }
    }

    /// Writes the whole table: replaces what was there in one transaction.
    pub async fn sync(&self, bridges: &[BridgeRules], publishes: &[Publish<'_>]) -> Result<()> {
        self.run(Work::Script(self.render(bridges, publishes)), true)
            .await
    }

    fn render(&self, bridges: &[BridgeRules], publishes: &[Publish<'_>]) -> String {
        let t = &self.table;
        let mut s = format!("table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n");
        let names: Vec<String> = bridges
            .iter()
            .map(|b| format!("\"{}\"", b.bridge))
            .collect();
        s.push_str("  set bridges { type ifname;");
        if !names.is_empty() {
            let _ = write!(s, " elements = {{ {} }};", names.join(", "));
        }
        s.push_str(" }\n");
        s.push_str(&map_decl(
            "publish_any",
            "inet_proto . inet_service",
            publishes,
            false,
        ));
        s.push_str(&map_decl(
            "publish_addr",
            "ipv4_addr . inet_proto . inet_service",
            publishes,
            true,
        ));
        s.push_str(
            "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; \
             fib daddr type local jump publish; }\n\
             \x20 chain output { type nat hook output priority -100; policy accept; \
             fib daddr type local jump publish; }\n\
             \x20 chain publish {\n\
             \x20   dnat ip to ip daddr . meta l4proto . th dport map @publish_addr\n\
             \x20   dnat ip to meta l4proto . th dport map @publish_any\n  }\n",
        );
        s.push_str(
            "  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n",
        );
        // Published ports reached at 127.0.0.1 leave through the bridge with a loopback
        // source: give them the bridge's address so the container can answer.
        s.push_str("    ip saddr 127.0.0.0/8 oifname @bridges masquerade\n");

        for b in bridges.iter().filter(|b| !b.internal) {
            let _ = writeln!(
                s,
                "    ip saddr {} oifname != \"{}\" masquerade",
                b.subnet, b.bridge
            );
            // A container reaching a published port through a host address (hairpin) on
            // its own bridge: the answer must come back through the host to be un-NATed,
            // not straight to the client, so the client's address becomes the gateway's.
            // (The input interface is unknown here when br_netfilter is loaded.)
            let _ = writeln!(
                s,
                "    ip saddr {} oifname \"{}\" ct status dnat masquerade",
                b.subnet, b.bridge
            );
        }
        s.push_str("  }\n");
        s.push_str("  chain forward { type filter hook forward priority filter; policy accept;\n");
        for b in bridges.iter().filter(|b| b.internal) {
            let _ = writeln!(s, "    iifname \"{0}\" oifname != \"{0}\" drop", b.bridge);
            let _ = writeln!(s, "    oifname \"{0}\" iifname != \"{0}\" drop", b.bridge);
        }
        // Published ports answer whoever reaches the host, containers on other networks
        // included; only the ports our DNAT made.
        s.push_str("    ct status dnat accept\n");
        for b in bridges {
            // Networks do not reach each other; a container on two networks reaches both
            // through its own interfaces, which needs no forwarding.
            let _ = writeln!(
                s,
                "    iifname \"{0}\" oifname @bridges oifname != \"{0}\" drop",
                b.bridge
            );
        }
        s.push_str("  }\n}\n");
        s
    }

    /// Adds published ports to the maps.
    pub async fn publish(&self, publishes: &[Publish<'_>]) -> Result<()> {
        self.run(Work::Elements(Op::Add, elements(publishes)), true)
            .await
    }

    /// Removes published ports from the maps, without waiting; ports already gone are fine.
    pub async fn unpublish(&self, publishes: &[Publish<'_>]) {
        let _ = self
            .run(Work::Elements(Op::Delete, elements(publishes)), false)
            .await;
    }

    /// Removes the table (a test daemon's cleanup).
    pub async fn remove(&self) -> Result<()> {
        let t = &self.table;
        let script = format!("table ip {t} {{}}\ndelete table ip {t}\n");
        self.run(Work::Script(script), true).await
    }
}

/// The map elements that publish `publishes`, in the kernel's layout.
fn elements(publishes: &[Publish<'_>]) -> Vec<Element> {
    publishes
        .iter()
        .map(|p| {
            let proto = [proto_number(&p.port.proto)];
            let port = p.port.host_port.to_be_bytes();
            let (map, key) = match p.port.host_ip.is_unspecified() {
                true => ("publish_any", concat(&[&proto, &port])),
                false => (
                    "publish_addr",
                    concat(&[&p.port.host_ip.octets(), &proto, &port]),
                ),
            };
            let value = concat(&[&p.to.octets(), &p.port.container_port.to_be_bytes()]);
            Element { map, key, value }
        })
        .collect()
}

fn proto_number(proto: &str) -> u8 {
    match proto {
        "udp" => libc::IPPROTO_UDP as u8,
        "sctp" => libc::IPPROTO_SCTP as u8,
        _ => libc::IPPROTO_TCP as u8,
    }
}

/// Applies map elements over the thread's netlink socket (opened on first use, and again
/// after a socket error).
fn apply(socket: &mut Option<Nftables>, table: &str, op: Op, elements: &[Element]) -> Result<()> {
    let what = || match op {
        Op::Add => "publish ports",
        Op::Delete => "unpublish ports",
    };
    let nft = match socket {
        Some(s) => s,
        None => socket
            .insert(Nftables::open().map_err(|e| Error::io("open an nftables netlink socket", e))?),
    };
    match nft.apply(table, op, elements) {
        Ok(()) => Ok(()),
        Err(_) if op == Op::Delete && elements.len() > 1 => {
            for e in elements {
                let _ = nft.apply(table, op, std::slice::from_ref(e));
            }
            Ok(())
        }
        Err(e) if op == Op::Delete && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => {
            // A fresh socket for the next batch: this one may hold a late answer.
            *socket = None;
            Err(Error::io(format!("{} in table ip {table}", what()), e))
        }
    }
}

fn key(p: &PortMapping) -> (&'static str, String) {
    if p.host_ip.is_unspecified() {
        ("publish_any", format!("{} . {}", p.proto, p.host_port))
    } else {
        (
            "publish_addr",
            format!("{} . {} . {}", p.host_ip, p.proto, p.host_port),
        )
    }
}

fn map_decl(name: &str, key_type: &str, publishes: &[Publish<'_>], by_addr: bool) -> String {
    let elements: Vec<String> = publishes
        .iter()
        .filter(|p| p.port.host_ip.is_unspecified() != by_addr)
        .map(|p| format!("{} : {} . {}", key(p.port).1, p.to, p.port.container_port))
        .collect();
    let mut s = format!("  map {name} {{ type {key_type} : ipv4_addr . inet_service;");
    if !elements.is_empty() {
        let _ = write!(s, " elements = {{ {} }};", elements.join(", "));
    }
    s.push_str(" }\n");
    s
}

/// Runs an nft script.
fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("run nft (is the nftables package installed?)", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::io("write to nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("wait for nft", e))?;
    if !out.status.success() {
        return Err(Error::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Lets the host route between its interfaces and our bridges (as dockerd does).
pub fn enable_forwarding() -> Result<()> {
    let p = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(p, "1").map_err(|e| Error::io(format!("write {p}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_nat_isolation_and_ports() {
        let fw = Firewall::new("t".into()).unwrap();
        let bridges = [
            BridgeRules {
                bridge: "t0".into(),
                subnet: "10.1.0.0/24".parse().unwrap(),
                internal: false,
            },
            BridgeRules {
                bridge: "br-x".into(),
                subnet: "10.2.0.0/24".parse().unwrap(),
                internal: true,
            },
        ];
        let any = PortMapping {
            proto: "tcp".into(),
            container_port: 80,
            host_ip: Ipv4Addr::UNSPECIFIED,
            host_port: 8080,
        };
        let one = PortMapping {
            proto: "udp".into(),
            container_port: 53,
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: 5353,
        };
        let to = Ipv4Addr::new(10, 1, 0, 2);
        let s = fw.render(
            &bridges,
            &[Publish { port: &any, to }, Publish { port: &one, to }],
        );
        assert!(
            s.starts_with("table ip t {}\ndelete table ip t\n"),
            "replaced atomically"
        );
        assert!(
            s.contains("elements = { tcp . 8080 : 10.1.0.2 . 80 }"),
            "{s}"
        );
        assert!(
            s.contains("elements = { 127.0.0.1 . udp . 5353 : 10.1.0.2 . 53 }"),
            "{s}"
        );
        assert!(
            s.contains("ip saddr 10.1.0.0/24 oifname != \"t0\" masquerade"),
            "{s}"
        );
        assert!(
            !s.contains("ip saddr 10.2.0.0/24"),
            "internal networks are not masqueraded"
        );
        assert!(
            s.contains("iifname \"br-x\" oifname != \"br-x\" drop"),
            "{s}"
        );
        assert!(
            s.contains("iifname \"t0\" oifname @bridges oifname != \"t0\" drop"),
            "{s}"
        );
        let e = elements(&[Publish { port: &one, to }]);
        assert_eq!(e[0].map, "publish_addr");
        assert_eq!(e[0].key, [127, 0, 0, 1, 17, 0, 0, 0, 0x14, 0xe9, 0, 0]);
        assert_eq!(e[0].value, [10, 1, 0, 2, 0, 53, 0, 0]);
    }
}
