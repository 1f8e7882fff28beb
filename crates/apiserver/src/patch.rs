//! PATCH bodies: JSON patch (RFC 6902) and JSON merge patch (RFC 7386) through the
//! `json-patch` crate, strategic merge patch through [`crate::strategic`]. Server-side
//! apply (`application/apply-patch+yaml`) is not a patch of the object's JSON: it is
//! handled by [`crate::apply`].

use serde_json::Value;

use crate::catalog::Resource;
use crate::status::ApiError;
use crate::strategic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The patch type a Content-Type names; 415 for anything else.
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            // CBOR apply bodies are behind a feature gate upstream; not served here.
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
            )),
        }
    }
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// `current` with `body` applied as a patch of type `kind`.
pub fn apply(
    kind: PatchType,
    res: &Resource,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            let mut out = current.clone();
            json_patch::patch(&mut out, &ops)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
            Ok(out)
        }
        PatchType::Merge => {
            let patch = parse(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            let mut out = current.clone();
            json_patch::merge(&mut out, &patch);
            Ok(out)
        }
        PatchType::Strategic => {
            if !res.builtin {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "strategic merge patch is not supported for {}; use a JSON merge patch",
                        res.qualified()
                    ),
                ));
            }
            strategic::apply(current, &parse(body)?)
        }
        PatchType::Apply => Err(ApiError::internal(
            "server-side apply is not a patch of the object's JSON",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    #[test]
    fn json_and_merge_patches_apply() {
        let c = Catalog::builtin();
        let cm = c.lookup("", "v1", "configmaps").unwrap();
        let o = json!({"data": {"a": "1", "b": "2"}});
        let got = apply(PatchType::Merge, &cm, &o, br#"{"data":{"a":null,"c":"3"}}"#).unwrap();
        assert_eq!(got, json!({"data": {"b": "2", "c": "3"}}));
        let got = apply(
            PatchType::Json,
            &cm,
            &o,
            br#"[{"op":"replace","path":"/data/a","value":"9"},{"op":"remove","path":"/data/b"}]"#,
        )
        .unwrap();
        assert_eq!(got, json!({"data": {"a": "9"}}));
        let err = apply(
            PatchType::Json,
            &cm,
            &o,
            br#"[{"op":"test","path":"/data/a","value":"x"}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            apply(PatchType::Merge, &cm, &o, b"{").unwrap_err().code,
            400
        );
        assert_eq!(
            PatchType::from_content_type("text/plain").unwrap_err().code,
            415
        );
    }
}
