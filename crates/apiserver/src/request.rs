//! Reading a request: query parameters, the body (JSON or YAML, size-limited), and what
//! the client accepts.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::status::ApiError;

/// Largest request body accepted: upstream's limit (3 MiB; etcd's own is 1.5 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Query parameters (the last value wins when a name repeats).
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: &str) -> Params {
        Params(
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "True"))
    }

    /// A non-negative integer parameter; 400 if it is not one.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid {key} {v:?}: not a non-negative integer"
                    ))
                }),
        }
    }

    /// `dryRun=All` (the only value upstream accepts); 400 for others.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid dryRun value {other:?}: only \"All\" is supported"
            ))),
        }
    }
}

/// Reads every request's body before anything answers, so that an early answer (401, 404,
/// a bad path) never closes a connection with unread bytes in it: the kernel would reset it
/// and the client could lose the answer. Bodies over [`MAX_BODY`] get their 413 here.
pub async fn buffer_body(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    match read_body(body).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => e.into_response(),
    }
}

/// Past [`MAX_BODY`], how much more of a body is read and thrown away so that the client,
/// still sending, gets to read the 413 instead of a reset connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The body, at most [`MAX_BODY`] bytes (413 beyond).
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        } else if seen > MAX_BODY + DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::request_too_large(format!(
            "the request body is larger than the {MAX_BODY} bytes allowed"
        )));
    }
    Ok(buf.freeze())
}

pub fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// An object from a create or update body: JSON (the default), YAML, or protobuf for the
/// kinds [`crate::protobuf`] knows. 415 for other media types, 400 for bodies that do not
/// parse to an object.
pub fn decode_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    let media = ct.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?,
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body)?,
        _ => return Err(ApiError::unsupported_media_type(ct)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body is not a JSON object",
        ));
    }
    Ok(value)
}

/// Whether `Accept` asks for a media type with these parameters (e.g. `as=Table`), in any
/// of its comma-separated alternatives.
pub fn accepts(headers: &HeaderMap, param: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|alt| alt.split(';').any(|p| p.trim() == param))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_bodies() {
        let p = Params::parse("limit=5&watch=true&labelSelector=a%3Db&dryRun=All");
        assert_eq!(p.int("limit").unwrap(), Some(5));
        assert!(p.flag("watch"));
        assert_eq!(p.str("labelSelector"), "a=b");
        assert!(p.dry_run().unwrap());
        assert_eq!(
            Params::parse("limit=-1").int("limit").unwrap_err().code,
            400
        );
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        assert_eq!(
            decode_object(&h, b"kind: ConfigMap\n").unwrap()["kind"],
            "ConfigMap"
        );
        h.insert(header::CONTENT_TYPE, "application/cbor".parse().unwrap());
        assert_eq!(decode_object(&h, b"x").unwrap_err().code, 415);
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(decode_object(&h, b"[1]").unwrap_err().code, 400);
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert!(accepts(&h, "as=Table"));
    }
}
