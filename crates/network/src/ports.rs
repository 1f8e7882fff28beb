//! Host ports held for published container ports.
//!
//! The nftables rules carry the traffic; a socket bound (not listening) on each published
//! host port keeps any other program, or another container, from taking it, and finds the
//! conflict when the port is already taken, as docker-proxy's bind does. `-p 80` and `-P`
//! bind port 0 and keep what the kernel picked from its ephemeral range.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::error::{Error, Result};
use crate::model::{PortMapping, PortRequest};

/// A held host port; dropping it frees the port.
#[derive(Debug)]
pub enum Held {
    Tcp(OwnedFd),
    Udp(UdpSocket),
}

/// Binds the host port `req` asks for; returns the mapping with the port actually held.
pub fn hold(req: &PortRequest) -> Result<(PortMapping, Held)> {
    let addr = SocketAddrV4::new(req.host_ip, req.host_port);
    let taken = |e: std::io::Error| {
        let what = format!("{}:{}", req.host_ip, req.host_port);
        match e.raw_os_error() {
            Some(libc::EADDRINUSE) => {
                Error::Conflict(format!("Bind for {what} failed: port is already allocated"))
            }
            Some(libc::EADDRNOTAVAIL) => Error::InvalidArgument(format!(
                "Bind for {what} failed: cannot assign requested address"
            )),
            _ => Error::io(format!("bind {what}"), e),
        }
    };
    let (held, port) = match req.proto.as_str() {
        "tcp" => {
            let fd = socket::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|e| Error::io("make a socket", e.into()))?;
            socket::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn::from(addr),
            )
            .map_err(|e| taken(e.into()))?;
            let local: SockaddrIn = socket::getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .map_err(|e| Error::io("getsockname", e.into()))?;
            (Held::Tcp(fd), local.port())
        }
        "udp" => {
            let s = UdpSocket::bind(addr).map_err(taken)?;
            let port = s
                .local_addr()
                .map_err(|e| Error::io("getsockname", e))?
                .port();
            (Held::Udp(s), port)
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid proto '{other}': only tcp and udp ports can be published"
            )))
        }
    };
    let mapping = PortMapping {
        proto: req.proto.clone(),
        container_port: req.container_port,
        host_ip: req.host_ip,
        host_port: port,
    };
    Ok((mapping, held))
}

/// `"80/tcp"` → (80, "tcp"); docker's default protocol is tcp.
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    match (port.parse::<u16>(), proto.as_str()) {
        (Ok(p), "tcp" | "udp" | "sctp") if p > 0 => Ok((p, proto)),
        _ => Err(Error::InvalidArgument(format!(
            "invalid port specification: \"{key}\""
        ))),
    }
}

/// A host port as the API gives it: "" or "0" for any, "8080", or the first of "8000-8010".
pub fn parse_host_port(s: &str) -> Result<u16> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    let first = s.split_once('-').map_or(s, |(a, _)| a);
    first
        .parse::<u16>()
        .map_err(|_| Error::InvalidArgument(format!("invalid hostPort: {s}")))
}

/// A host address as the API gives it: "" for every address.
pub fn parse_host_ip(s: &str) -> Result<Ipv4Addr> {
    match s.trim() {
        "" | "0.0.0.0" => Ok(Ipv4Addr::UNSPECIFIED),
        "::" => Ok(Ipv4Addr::UNSPECIFIED),
        ip => ip
            .parse()
            .map_err(|_| Error::InvalidArgument(format!("invalid host IP address: {ip}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse() {
        assert_eq!(parse_port_key("80/tcp").unwrap(), (80, "tcp".into()));
        assert_eq!(parse_port_key("53/UDP").unwrap(), (53, "udp".into()));
        assert_eq!(parse_port_key("8080").unwrap(), (8080, "tcp".into()));
        assert!(parse_port_key("http/tcp").is_err());
        assert_eq!(parse_host_port("").unwrap(), 0);
        assert_eq!(parse_host_port("8000-8010").unwrap(), 8000);
        assert!(parse_host_port("x").is_err());
        assert!(parse_host_ip("").unwrap().is_unspecified());
        assert!(parse_host_ip("nope").is_err());
    }

    #[test]
    fn a_held_port_cannot_be_held_twice() {
        let any = PortRequest {
            proto: "tcp".into(),
            container_port: 80,
            host_ip: Ipv4Addr::LOCALHOST,
            host_port: 0,
        };
        let (m, _held) = hold(&any).unwrap();
        assert_ne!(m.host_port, 0);
        let again = PortRequest {
            host_port: m.host_port,
            ..any.clone()
        };
        assert!(matches!(hold(&again), Err(Error::Conflict(_))));
        let udp = PortRequest {
            proto: "udp".into(),
            ..again
        };
        assert!(hold(&udp).is_ok(), "udp and tcp ports are separate");
    }
}
