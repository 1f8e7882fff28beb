//! Label selectors (`app=web,tier in (a,b),!canary`) and field selectors
//! (`metadata.name=x,status.phase!=Running`) as upstream parses and applies them.

use serde_json::Value;

use crate::catalog::Resource;
use crate::meta;
use crate::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad_label(whole, "expected a parenthesised set of values"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn bad_label(req: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {req:?}: {why}"))
}

/// Splits `s` at the first whitespace-delimited word `word` (e.g. ` in `).
fn split_word<'a>(s: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let mut search = 0;
    while let Some(pos) = s[search..].find(word) {
        let at = search + pos;
        let before_ok = at > 0 && s[..at].ends_with(char::is_whitespace);
        let after = &s[at + word.len()..];
        let after_ok = after.starts_with(|c: char| c.is_whitespace() || c == '(');
        if before_ok && after_ok {
            return Some((&s[..at], after));
        }
        search = at + word.len();
    }
    None
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for raw in split_top_level(s) {
            let r = raw.trim();
            if r.is_empty() {
                return Err(bad_label(s, "empty requirement"));
            }
            let req = if let Some(key) = r.strip_prefix('!') {
                Requirement {
                    key: key.trim().to_string(),
                    op: Op::NotExists,
                }
            } else if let Some((k, rest)) = split_word(r, "notin") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotIn(parse_set(rest, r)?),
                }
            } else if let Some((k, rest)) = split_word(r, "in") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::In(parse_set(rest, r)?),
                }
            } else if let Some((k, v)) = r.split_once("!=") {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::NotEquals(v.trim().to_string()),
                }
            } else if let Some((k, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Equals(v.trim().to_string()),
                }
            } else if let Some((k, v)) = r.split_once('>') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| bad_label(r, "value must be an integer"))?;
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Gt(n),
                }
            } else if let Some((k, v)) = r.split_once('<') {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| bad_label(r, "value must be an integer"))?;
                Requirement {
                    key: k.trim().to_string(),
                    op: Op::Lt(n),
                }
            } else {
                Requirement {
                    key: r.to_string(),
                    op: Op::Exists,
                }
            };
            if req.key.is_empty() || req.key.contains(char::is_whitespace) {
                return Err(bad_label(r, "invalid label key"));
            }
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(&meta::labels(obj))
    }

    /// Whether an object with these labels matches (for callers that have only them).
    pub fn matches_labels(&self, labels: &[(&str, &str)]) -> bool {
        let get = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
        self.reqs.iter().all(|req| {
            let v = get(&req.key);
            match &req.op {
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Equals(want) => v == Some(want.as_str()),
                Op::NotEquals(want) => v != Some(want.as_str()),
                Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => !v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

/// A parsed field selector over the fields a resource supports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field path, wanted value, equal?)
    reqs: Vec<(String, String, bool)>,
}

/// Splits a field selector on unescaped commas and unescapes `\,`, `\=`, `\\`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = parts.last_mut().expect("never empty");
                last.push('\\');
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().expect("never empty").push(c),
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    /// Parses `s`, refusing fields `res` does not support (as upstream does, with 400).
    pub fn parse(s: &str, res: &Resource) -> Result<FieldSelector, ApiError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for part in split_escaped(s, ',') {
            let (field, value, eq) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || res.field_selectors.iter().any(|f| f == field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), unescape(value.trim()), eq));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The name this selector pins (`metadata.name=x`), if any: lets a watch or list
    /// narrow its range to one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(f, _, eq)| f == "metadata.name" && *eq)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_by(|path| {
            let mut cur = obj;
            for part in path {
                cur = cur.get(part)?;
            }
            Some(cur.clone())
        })
    }

    /// Matches with `lookup` giving the value at a field's path (object keys from the
    /// top; `None` when missing): lets a caller look fields up without a parsed object.
    pub fn matches_by(&self, mut lookup: impl FnMut(&[&str]) -> Option<Value>) -> bool {
        self.reqs.iter().all(|(field, want, eq)| {
            // Upstream's `source` selector on events means the reporting component.
            let field = if field == "source" {
                "source.component"
            } else {
                field
            };
            let path: Vec<&str> = field.split('.').collect();
            (field_text(lookup(&path)) == *want) == *eq
        })
    }
}

/// A field's value as a selector compares it: strings as they are, other scalars in
/// their JSON form, missing fields as "".
fn field_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use serde_json::json;

    #[test]
    fn label_selectors_parse_and_match() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front", "n": "5"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("!canary"));
        assert!(!m("!app"));
        assert!(m("n>3,n<6"));
        assert!(m("app in (web),tier notin (x,y)"));
        assert!(LabelSelector::parse("app=web,,").is_err());
        assert!(LabelSelector::parse("tier in front").is_err());
    }

    #[test]
    fn field_selectors_check_supported_fields() {
        let c = Catalog::builtin();
        let pods = c.lookup("", "v1", "pods").unwrap();
        let obj = json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let m = |s: &str| FieldSelector::parse(s, &pods).unwrap().matches(&obj);
        assert!(m("metadata.name=a"));
        assert!(m("metadata.namespace==x,spec.nodeName=n1"));
        assert!(m("status.phase!=Pending"));
        assert!(!m("spec.nodeName="));
        let cm = c.lookup("", "v1", "configmaps").unwrap();
        let err = FieldSelector::parse("spec.nodeName=x", &cm).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            FieldSelector::parse("metadata.name=a", &cm)
                .unwrap()
                .exact_name(),
            Some("a")
        );
    }
}
