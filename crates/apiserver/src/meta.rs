//! `metadata` of JSON objects: accessors, the system fields the server owns (uid,
//! creationTimestamp, resourceVersion, generation), generated names, and validation of
//! names, labels and annotations with upstream's rules and messages.

use rand::Rng;
use serde_json::{json, Map, Value};

use crate::catalog::NameRule;
use crate::status::Cause;

/// `metadata.<field>` as a string, or "".
pub fn str_field<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    str_field(obj, "name")
}

pub fn namespace(obj: &Value) -> &str {
    str_field(obj, "namespace")
}

pub fn uid(obj: &Value) -> &str {
    str_field(obj, "uid")
}

pub fn resource_version(obj: &Value) -> &str {
    str_field(obj, "resourceVersion")
}

/// `metadata`, created if missing (or replaced if it is not an object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("just made an object")
}

pub fn set_resource_version(obj: &mut Value, rv: i64) {
    meta_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
}

pub fn strip_resource_version(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// The labels of `obj` (non-string values are ignored; validation rejects them on write).
pub fn labels(obj: &Value) -> Vec<(&str, &str)> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<&str> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    !str_field(obj, "deletionTimestamp").is_empty()
}

/// Now, as upstream writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `prefix` plus five random characters, from upstream's alphabet (no vowels, no
/// look-alike digits, so generated names never spell words).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // Upstream truncates the prefix so the result fits in 63 characters.
    let prefix: String = prefix.chars().take(58).collect();
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_label(s: &str) -> bool {
    s.len() <= 63 && label_chars(s)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, whatever the length.
fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with `name` under `rule`, as upstream phrases them.
pub fn validate_name(rule: NameRule, name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                errs.push("must be no more than 253 characters".to_string());
            }
            if !name.split('.').all(is_label) {
                errs.push(SUBDOMAIN_MSG.to_string());
            }
        }
        NameRule::Label | NameRule::Dns1035 => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".to_string());
            }
            let ok = label_chars(name);
            let letter_first = name.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
            if rule == NameRule::Label && !ok {
                errs.push(LABEL_MSG.to_string());
            }
            if rule == NameRule::Dns1035 && !(ok && letter_first) {
                errs.push(DNS1035_MSG.to_string());
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                errs.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    errs.push(format!("may not contain '{bad}'"));
                }
            }
        }
    }
    errs
}

/// Checks a label or annotation key (an optional DNS-subdomain prefix and a name part).
fn validate_key(field: &str, key: &str, causes: &mut Vec<Cause>) {
    let (prefix, part) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_subdomain(prefix) {
            causes.push(Cause::invalid(
                field,
                key,
                &format!("prefix part {SUBDOMAIN_MSG}"),
            ));
        }
    }
    if part.len() > 63 {
        causes.push(Cause::invalid(
            field,
            key,
            "name part must be no more than 63 characters",
        ));
    } else if !is_qualified_part(part) {
        causes.push(Cause::invalid(field, key, QUALIFIED_MSG));
    }
}

/// Validates the parts of `metadata` every kind shares: name (under `rule`), labels and
/// annotations. Returns the causes of an Invalid error (empty if valid).
pub fn validate_meta(obj: &Value, rule: NameRule) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        causes.push(Cause::required("metadata", "metadata is required"));
        return causes;
    };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in validate_name(rule, name) {
            causes.push(Cause::invalid("metadata.name", name, &msg));
        }
    }
    match meta.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (k, v) in labels {
                validate_key("metadata.labels", k, &mut causes);
                match v.as_str() {
                    Some(v) if v.len() > 63 => causes.push(Cause::invalid(
                        "metadata.labels",
                        v,
                        "must be no more than 63 characters",
                    )),
                    Some(v) if !v.is_empty() && !is_qualified_part(v) => {
                        causes.push(Cause::invalid("metadata.labels", v, LABEL_VALUE_MSG))
                    }
                    Some(_) => {}
                    None => causes.push(Cause::invalid(
                        "metadata.labels",
                        &v.to_string(),
                        "label values must be strings",
                    )),
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.labels",
            &other.to_string(),
            "must be a map of strings",
        )),
    }
    match meta.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(annotations)) => {
            let mut total = 0;
            for (k, v) in annotations {
                validate_key("metadata.annotations", k, &mut causes);
                total += k.len() + v.as_str().map_or(0, str::len);
                if !v.is_string() {
                    causes.push(Cause::invalid(
                        "metadata.annotations",
                        &v.to_string(),
                        "annotation values must be strings",
                    ));
                }
            }
            if total > 256 * 1024 {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: "metadata.annotations".into(),
                    message: "Too long: must have at most 262144 bytes".into(),
                });
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "metadata.annotations",
            &other.to_string(),
            "must be a map of strings",
        )),
    }
    if let Some(f) = meta.get("finalizers") {
        if !f.as_array().is_some_and(|f| f.iter().all(Value::is_string)) && !f.is_null() {
            causes.push(Cause::invalid(
                "metadata.finalizers",
                &f.to_string(),
                "must be a list of strings",
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream_rules() {
        assert!(validate_name(NameRule::Subdomain, "my.app-1").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "My_App").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "-a").is_empty());
        assert!(!validate_name(NameRule::Label, "a.b").is_empty());
        assert!(validate_name(NameRule::Label, "kube-system").is_empty());
        assert!(!validate_name(NameRule::Dns1035, "1abc").is_empty());
        assert!(validate_name(NameRule::Dns1035, "abc1").is_empty());
        assert!(validate_name(NameRule::PathSegment, "system:admin").is_empty());
        assert!(!validate_name(NameRule::PathSegment, "a/b").is_empty());
        assert!(!validate_name(NameRule::Label, &"a".repeat(64)).is_empty());
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let ok =
            json!({"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "x", "e": ""}}});
        assert!(validate_meta(&ok, NameRule::Subdomain).is_empty());
        let bad = json!({"metadata": {"name": "a", "labels": {"bad key": "-x"}}});
        assert_eq!(validate_meta(&bad, NameRule::Subdomain).len(), 2);
        let bad = json!({"metadata": {"name": "a", "annotations": {"a": 1}}});
        assert_eq!(validate_meta(&bad, NameRule::Subdomain).len(), 1);
    }

    #[test]
    fn generated_names_have_five_character_suffixes() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(validate_name(NameRule::Subdomain, &n).is_empty());
    }
}
