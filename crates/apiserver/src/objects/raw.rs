//! Stored objects as bytes. A LIST copies each stored object into the response and only
//! splices in its `metadata.resourceVersion`: parsing 10,000 pods into `serde_json::Value`s
//! and writing them out again was most of a LIST's time. Selectors look up the few members
//! they compare without parsing the rest.
//!
//! Written by hand because no JSON crate in the tree exposes byte spans of members cheaply
//! (serde_json's `RawValue` needs a feature this crate does not turn on, and still builds a
//! map per object). The scanner checks structure (nesting, separators, literals) and UTF-8;
//! anything it does not accept (malformed bytes, nesting deeper than serde_json's limit)
//! makes it answer `None`, and callers fall back to a full parse, which reports the error.

use std::borrow::Cow;
use std::io::Write;
use std::ops::Range;

/// serde_json's own recursion limit: deeper objects go to the full parse, which refuses them.
const MAX_DEPTH: usize = 128;

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end (one past the closing quote) of the string whose opening quote is at `i`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i += b.get(i..)?.iter().position(|&c| c == b'"' || c == b'\\')?;
        if b[i] == b'"' {
            return Some(i + 1);
        }
        // An escape: the backslash and the byte after it (`\"` must not end the string).
        i += 2;
    }
}

/// The end of the JSON value starting at `i` (after any whitespace).
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => container_end(b, i, depth),
        b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => {
            let len = b[i..]
                .iter()
                .position(|c| !matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'+' | b'.' | b'E'))
                .unwrap_or(b.len() - i);
            let lit = &b[i..i + len];
            let ok = matches!(lit, b"true" | b"false" | b"null")
                || (lit[0] == b'-' || lit[0].is_ascii_digit())
                    && lit.last().is_some_and(u8::is_ascii_digit)
                    && lit[1..]
                        .iter()
                        .all(|c| !c.is_ascii_lowercase() || *c == b'e');
            ok.then_some(i + len)
        }
        _ => None,
    }
}

/// Bytes that matter when skipping a nested value: quotes, brackets and braces.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// The end of the object or array at `i`. Follows strings and nesting (a bit per open
/// bracket, so mismatched brackets are caught) but not separators: these bytes are only
/// copied, and a per-member walk of every nested object made a LIST a third slower.
fn container_end(b: &[u8], mut i: usize, depth: usize) -> Option<usize> {
    let (mut open, mut level) = (0u128, 0usize); // bit set: an object
    loop {
        i += b
            .get(i..)?
            .iter()
            .position(|&c| STRUCTURAL[usize::from(c)])?;
        match b[i] {
            b'"' => {
                i = string_end(b, i)?;
                continue;
            }
            c @ (b'{' | b'[') => {
                if depth + level >= MAX_DEPTH {
                    return None;
                }
                open = open << 1 | u128::from(c == b'{');
                level += 1;
            }
            c => {
                if level == 0 || (open & 1 == 1) != (c == b'}') {
                    return None;
                }
                (open, level) = (open >> 1, level - 1);
                if level == 0 {
                    return Some(i + 1);
                }
            }
        }
        i += 1;
    }
}

/// Steps through the members of an object: `next` reads a key and its colon, the caller
/// moves `pos` past the value.
struct Members<'a> {
    b: &'a [u8],
    pos: usize,
    first: bool,
}

impl<'a> Members<'a> {
    /// The object whose `{` is at `i`.
    fn open(b: &'a [u8], i: usize, depth: usize) -> Option<Members<'a>> {
        (b.get(i) == Some(&b'{') && depth < MAX_DEPTH).then_some(Members {
            b,
            pos: i + 1,
            first: true,
        })
    }

    /// The next member's key span (with its quotes) and where its value starts;
    /// `Some(None)` after the closing brace (then `pos` is past it), `None` if malformed.
    fn next(&mut self) -> Option<Option<(Range<usize>, usize)>> {
        let b = self.b;
        let mut i = skip_ws(b, self.pos);
        match *b.get(i)? {
            b'}' => {
                self.pos = i + 1;
                return Some(None);
            }
            b',' if !self.first => i = skip_ws(b, i + 1),
            _ if self.first => {}
            _ => return None,
        }
        self.first = false;
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key = i..string_end(b, i)?;
        i = skip_ws(b, key.end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        Some(Some((key, skip_ws(b, i + 1))))
    }
}

/// A key as text (`span` with its quotes); keys with escapes are unescaped.
fn key_text(b: &[u8], span: Range<usize>) -> Option<Cow<'_, str>> {
    let raw = &b[span.start + 1..span.end - 1];
    if raw.contains(&b'\\') {
        serde_json::from_slice(&b[span]).ok().map(Cow::Owned)
    } else {
        std::str::from_utf8(raw).ok().map(Cow::Borrowed)
    }
}

/// The span of the value at `path` (object keys, from the top): `Some(None)` when a step is
/// missing or not an object, as a selector sees it; `None` if the bytes do not scan.
pub fn find(b: &[u8], path: &[&str]) -> Option<Option<Range<usize>>> {
    let (mut at, mut depth) = (skip_ws(b, 0), 0);
    'steps: for (n, step) in path.iter().enumerate() {
        if b.get(at) != Some(&b'{') {
            return Some(None);
        }
        let mut m = Members::open(b, at, depth)?;
        while let Some((key, vs)) = m.next()? {
            if key_text(b, key)? == *step {
                if n + 1 == path.len() {
                    return Some(Some(vs..value_end(b, vs, depth + 1)?));
                }
                (at, depth) = (vs, depth + 1);
                continue 'steps;
            }
            m.pos = value_end(b, vs, depth + 1)?;
        }
        return Some(None);
    }
    Some(None)
}

/// How a stored object is served in a list.
pub struct Rewrite<'a> {
    /// Its mod revision, which replaces any stored `metadata.resourceVersion`.
    pub resource_version: i64,
    /// Drop `kind` and `apiVersion` (typed lists carry them only on the list).
    pub drop_type: bool,
    /// Serve with this `apiVersion` (custom resources read through another version).
    pub api_version: Option<&'a str>,
}

/// Appends the stored object `b` to `out` as `rw` says. Members keep their order and bytes;
/// the resourceVersion goes where a sorted map would put it, so the result equals what
/// serializing the parsed, edited object gives for the (sorted) bytes the store holds.
/// `None`, with `out` unchanged, if `b` is not a JSON object with a `metadata` object.
pub fn write_item(out: &mut Vec<u8>, b: &[u8], rw: &Rewrite) -> Option<()> {
    let mark = out.len();
    let done = splice(out, b, rw);
    if done.is_none() {
        out.truncate(mark);
    }
    done
}

fn splice(out: &mut Vec<u8>, b: &[u8], rw: &Rewrite) -> Option<()> {
    std::str::from_utf8(b).ok()?;
    let mut m = Members::open(b, skip_ws(b, 0), 0)?;
    let (mut saw_meta, mut saw_version) = (false, false);
    out.push(b'{');
    let mut comma = false;
    let sep = |out: &mut Vec<u8>, comma: &mut bool| {
        if std::mem::replace(comma, true) {
            out.push(b',');
        }
    };
    while let Some((key, vs)) = m.next()? {
        match &*key_text(b, key.clone())? {
            "kind" | "apiVersion" if rw.drop_type => m.pos = value_end(b, vs, 1)?,
            "apiVersion" if rw.api_version.is_some() => {
                m.pos = value_end(b, vs, 1)?;
                sep(out, &mut comma);
                out.extend_from_slice(b"\"apiVersion\":");
                serde_json::to_writer(&mut *out, &rw.api_version).ok()?;
                saw_version = true;
            }
            "metadata" if !saw_meta => {
                sep(out, &mut comma);
                out.extend_from_slice(&b[key.start..vs]);
                m.pos = splice_metadata(out, b, vs, rw.resource_version)?;
                saw_meta = true;
            }
            // A repeated `metadata` would win over the spliced one: parse instead.
            "metadata" => return None,
            _ => {
                m.pos = value_end(b, vs, 1)?;
                sep(out, &mut comma);
                out.extend_from_slice(&b[key.start..m.pos]);
            }
        }
    }
    if skip_ws(b, m.pos) != b.len() || !saw_meta {
        return None;
    }
    if let (Some(v), false) = (rw.api_version, saw_version) {
        out.extend_from_slice(b",\"apiVersion\":");
        serde_json::to_writer(&mut *out, v).ok()?;
    }
    out.push(b'}');
    Some(())
}

/// Copies the metadata object at `i` without its resourceVersion and with `rv` in its
/// sorted place; returns the end of the stored metadata.
fn splice_metadata(out: &mut Vec<u8>, b: &[u8], i: usize, rv: i64) -> Option<usize> {
    let mut m = Members::open(b, i, 1)?;
    out.push(b'{');
    let (mut comma, mut placed) = (false, false);
    let put_rv = |out: &mut Vec<u8>, comma: bool| {
        let sep = if comma { "," } else { "" };
        write!(out, "{sep}\"resourceVersion\":\"{rv}\"").expect("writes to a Vec");
    };
    while let Some((key, vs)) = m.next()? {
        let end = value_end(b, vs, 2)?;
        m.pos = end;
        let name = key_text(b, key.clone())?;
        if name == "resourceVersion" {
            continue;
        }
        if !placed && *name > *"resourceVersion" {
            put_rv(out, comma);
            (comma, placed) = (true, true);
        }
        if std::mem::replace(&mut comma, true) {
            out.push(b',');
        }
        out.extend_from_slice(&b[key.start..end]);
    }
    if !placed {
        put_rv(out, comma);
    }
    out.push(b'}');
    Some(m.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What the full parse serves: the object with its resourceVersion set, edited as `rw` says.
    fn parsed(b: &[u8], rw: &Rewrite) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(b).unwrap();
        v["metadata"]["resourceVersion"] = json!(rw.resource_version.to_string());
        let m = v.as_object_mut().unwrap();
        if rw.drop_type {
            m.remove("kind");
            m.remove("apiVersion");
        }
        if let Some(av) = rw.api_version {
            m.insert("apiVersion".into(), json!(av));
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn spliced(b: &[u8], rw: &Rewrite) -> Option<Vec<u8>> {
        let mut out = b"[".to_vec();
        let r = write_item(&mut out, b, rw);
        assert!(
            r.is_some() || out == b"[",
            "a failed splice leaves out as it was"
        );
        r.map(|()| out[1..].to_vec())
    }

    const TYPED: Rewrite = Rewrite {
        resource_version: 42,
        drop_type: true,
        api_version: None,
    };

    #[test]
    fn splices_like_a_full_parse() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "d"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7", "uid": "u"}}),
            json!({"metadata": {"resourceVersion": "1"}}),
            json!({"metadata": {}}),
            json!({"metadata": {"uid": "x", "zz": [1, 2.5, -3e5, true, null]}}),
            // Nested "metadata" and "resourceVersion" keys belong to someone else.
            json!({"metadata": {"annotations": {"metadata": "{\"resourceVersion\":\"9\"}", "resourceVersion": "x"}, "name": "n"},
                   "spec": {"template": {"metadata": {"resourceVersion": "3", "labels": {"a": "b"}}}}}),
            // Escapes and unicode in keys and values.
            json!({"metadata": {"name": "q\"uo\\te}{", "labels": {"k\"]": "wé🚀\u{1}\n"}}, "data": {"\u{2028}": "\\"}}),
            json!({"kind": "Pod", "metadata": {"managedFields": [{"fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]}}),
        ];
        for obj in objects {
            let b = serde_json::to_vec(&obj).unwrap();
            for rw in [
                TYPED,
                Rewrite {
                    resource_version: 1234567890123,
                    drop_type: false,
                    api_version: None,
                },
                Rewrite {
                    resource_version: 5,
                    drop_type: false,
                    api_version: Some("example.com/v2"),
                },
            ] {
                let (got, want) = (spliced(&b, &rw).unwrap(), parsed(&b, &rw));
                if rw.api_version.is_some() && obj.get("apiVersion").is_none() {
                    // Added at the end, not in sorted order.
                    let value = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
                    assert_eq!(value(&got), value(&want));
                } else {
                    let text = |b| String::from_utf8(b).unwrap();
                    assert_eq!(text(got), text(want));
                }
            }
        }
    }

    #[test]
    fn whitespace_and_unsorted_members_keep_their_meaning() {
        let b = br#" { "metadata" : { "uid" : "u" , "resourceVersion" : "old", "a": [ ] } , "kind":"Pod" } "#;
        let got: Value = serde_json::from_slice(&spliced(b, &TYPED).unwrap()).unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"uid": "u", "a": [], "resourceVersion": "42"}})
        );
    }

    #[test]
    fn refuses_what_it_cannot_splice() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            br#"{"metadata": "x"}"#,
            br#"{"metadata": {}, "metadata": {}}"#,
            br#"{"metadata": {"a": 1,}}"#,
            br#"{"metadata": {"a": tru}}"#,
            br#"{"metadata": {"a": "unterminated}}"#,
            br#"{"metadata": {"a" 1}}"#,
            br#"{"metadata": {}} x"#,
            br#"{"metadata": {"a": [{"b": [1}]}]}"#,
            br#"{"metadata": {"a": {"b": "}"}}"#,
            b"{\"metadata\": {\"a\": \"\xff\"}}",
        ] {
            assert_eq!(
                spliced(bad, &TYPED),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!(
            r#"{{"metadata": {{}}, "x": {}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(spliced(deep.as_bytes(), &TYPED), None);
    }

    #[test]
    fn finds_members_by_path() {
        let obj = json!({"spec": {"metadata": {"labels": {"x": "spec"}}, "nodeName": "n1"},
                         "metadata": {"name": "a", "labels": {"app": "w\"eb"}}, "status": "s"});
        let b = serde_json::to_vec(&obj).unwrap();
        let at = |path: &[&str]| {
            find(&b, path)
                .unwrap()
                .map(|r| serde_json::from_slice::<Value>(&b[r]).unwrap())
        };
        assert_eq!(at(&["metadata", "labels"]), Some(json!({"app": "w\"eb"})));
        assert_eq!(at(&["spec", "nodeName"]), Some(json!("n1")));
        assert_eq!(at(&["spec", "missing"]), None);
        assert_eq!(at(&["status", "phase"]), None);
        let escaped = br#"{"meta\u0064ata": {"name": "e"}}"#;
        let name = find(escaped, &["metadata", "name"]).unwrap().unwrap();
        assert_eq!(&escaped[name], br#""e""#);
        assert_eq!(
            find(br#"{"metadata": {"name": }"#, &["metadata", "name"]),
            None
        );
    }
}
