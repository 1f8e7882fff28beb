//! Hijacked connections (`attach`, `exec start`) and docker's stdout/stderr framing.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use hyper::upgrade::OnUpgrade;

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// One frame of docker's multiplexed stream: `[stream, 0, 0, 0, len (u32 BE)]` + payload.
pub fn frame(stream: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(stream);
    b.put_bytes(0, 3);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Takes the connection over if the client asked to upgrade (docker and bollard do):
/// answers 101 and gives the upgrade future. Without an upgrade header, `None`.
pub fn upgrade(req: &mut Request<Body>, tty: bool) -> Option<(Response<Body>, OnUpgrade)> {
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
    if !wants {
        return None;
    }
    let on = hyper::upgrade::on(req);
    let resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(header::UPGRADE, HeaderValue::from_static("tcp"))
        .header(header::CONTENT_TYPE, content_type(tty))
        .body(Body::empty())
        .expect("static response");
    Some((resp, on))
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_have_docker_header() {
        let f = super::frame(super::STDERR, b"hi");
        assert_eq!(&f[..], &[2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
