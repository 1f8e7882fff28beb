//! Column alignment like Go's `text/tabwriter` as the docker CLI configures it, and the small
//! subset of Go templates that `--format` flags use.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Result};
use serde_json::Value;

/// Writes tab-separated lines aligned in columns: each cell is padded to the widest cell in its
/// column plus `padding`, at least `min_width`; the last cell of a line is not padded.
pub fn write_aligned(
    out: &mut dyn Write,
    lines: &[Vec<String>],
    min_width: usize,
    padding: usize,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = Vec::new();
    for line in lines {
        for (i, cell) in line.iter().enumerate().take(line.len().saturating_sub(1)) {
            let w = cell.chars().count();
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(w);
        }
    }
    for line in lines {
        let mut s = String::new();
        for (i, cell) in line.iter().enumerate() {
            s.push_str(cell);
            if i + 1 < line.len() {
                let width = (widths[i] + padding).max(min_width);
                let pad = width - cell.chars().count();
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{s}")?;
    }
    Ok(())
}

/// Docker's table layout: tabwriter(minwidth 10, padding 3).
pub fn write_table(out: &mut dyn Write, lines: &[Vec<String>]) -> std::io::Result<()> {
    write_aligned(out, lines, 10, 3)
}

/// Cuts `s` to `max` characters, the last one an ellipsis, as docker's `Ellipsis` does.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The short form of an id: without `sha256:`, 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Quotes like Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How a list command prints: docker's default table, a template, a template table, or JSON lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Default,
    Table(Template),
    Lines(Template),
    Json,
}

impl Format {
    /// Parses a `--format` value. `table` alone means the default table.
    pub fn parse(value: Option<&str>) -> Result<Format> {
        let Some(v) = value else {
            return Ok(Format::Default);
        };
        // Docker accepts the escapes `\t` and `\n` typed literally on the command line.
        let v = v.replace("\\t", "\t").replace("\\n", "\n");
        match v.trim() {
            "" | "table" => Ok(Format::Default),
            "json" => Ok(Format::Json),
            _ => {
                if let Some(rest) = v.strip_prefix("table") {
                    if rest.starts_with(char::is_whitespace) {
                        return Ok(Format::Table(Template::parse(rest.trim_start())?));
                    }
                }
                Ok(Format::Lines(Template::parse(&v)?))
            }
        }
    }
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// `{{.A.B}}` (empty path: `{{.}}`).
    Field(Vec<String>),
    /// `{{json .A}}`.
    Json(Vec<String>),
    /// `{{.Label "key"}}` or `{{index .Labels "key"}}`: one key of a map field.
    Index(Vec<String>, String),
    /// `{{upper .A}}`, `{{lower .A}}`, `{{title .A}}`.
    Func(String, Vec<String>),
}

/// A parsed Go-template subset: text with `{{.Path}}`, `{{json .Path}}`, `{{index .M "k"}}`,
/// `{{.Label "k"}}`, `{{upper/lower/title .Path}}` actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

fn parse_path(s: &str) -> Result<Vec<String>> {
    let Some(rest) = s.strip_prefix('.') else {
        bail!("template: unsupported expression {s:?}");
    };
    if rest.is_empty() {
        return Ok(vec![]);
    }
    Ok(rest.split('.').map(str::to_string).collect())
}

fn unquote(s: &str) -> Result<String> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        return Ok(t[1..t.len() - 1].to_string());
    }
    bail!("template: expected a quoted string, got {s:?}")
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let Some(end) = rest[start..].find("}}") else {
                bail!("template: unclosed action in {src:?}");
            };
            let action = rest[start + 2..start + end]
                .trim_matches('-')
                .trim()
                .to_string();
            rest = &rest[start + end + 2..];
            let words: Vec<&str> = action.splitn(2, char::is_whitespace).collect();
            let piece = match words.as_slice() {
                [p] => Piece::Field(parse_path(p)?),
                ["json", p] => Piece::Json(parse_path(p.trim())?),
                ["index", args] => {
                    let (p, key) = args
                        .trim()
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| anyhow::anyhow!("template: index needs a key"))?;
                    Piece::Index(parse_path(p)?, unquote(key)?)
                }
                [f @ ("upper" | "lower" | "title"), p] => {
                    Piece::Func(f.to_string(), parse_path(p.trim())?)
                }
                [p, key] if p.starts_with('.') => {
                    // `.Label "k"` is a method in docker's formatters; the map lives at `Labels`.
                    let mut path = parse_path(p)?;
                    if let Some(last) = path.last_mut() {
                        if last == "Label" {
                            *last = "Labels".into();
                        }
                    }
                    Piece::Index(path, unquote(key)?)
                }
                _ => bail!("template: unsupported action {{{{{action}}}}}"),
            };
            pieces.push(piece);
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template { pieces })
    }

    /// Renders against a JSON value (a row or an inspect document).
    pub fn render(&self, v: &Value) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(path) => out.push_str(&go_string(lookup(v, path))),
                Piece::Json(path) => {
                    out.push_str(&serde_json::to_string(lookup(v, path)).unwrap_or_default())
                }
                Piece::Index(path, key) => {
                    let m = lookup(v, path);
                    let item = match m {
                        Value::Object(o) => o.get(key).unwrap_or(&Value::Null),
                        // Row values keep labels as "k=v,k2=v2".
                        Value::String(s) => {
                            let found = s.split(',').find_map(|kv| {
                                kv.split_once('=')
                                    .filter(|(k, _)| k == key)
                                    .map(|(_, v)| v.to_string())
                            });
                            out.push_str(&found.unwrap_or_default());
                            continue;
                        }
                        _ => &Value::Null,
                    };
                    if !item.is_null() {
                        out.push_str(&go_string(item));
                    }
                }
                Piece::Func(f, path) => {
                    let s = go_string(lookup(v, path));
                    out.push_str(&match f.as_str() {
                        "upper" => s.to_uppercase(),
                        "lower" => s.to_lowercase(),
                        _ => {
                            let mut c = s.chars();
                            match c.next() {
                                Some(first) => first.to_uppercase().chain(c).collect(),
                                None => s,
                            }
                        }
                    });
                }
            }
        }
        out
    }

    /// The header line of a `table` template: field names mapped through `header`, literal text
    /// kept (so the tab separators survive).
    pub fn header(&self, header: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(path)
                | Piece::Json(path)
                | Piece::Func(_, path)
                | Piece::Index(path, _) => {
                    let name = path.last().map(String::as_str).unwrap_or("");
                    out.push_str(&header(name));
                }
            }
        }
        out
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> &'a Value {
    let mut cur = v;
    for key in path {
        cur = match cur {
            Value::Object(o) => o.get(key).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    cur
}

/// Prints a value the way Go's template engine prints the equivalent Go value.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_string).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(o) => {
            let sorted: BTreeMap<_, _> = o.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Prints rows (JSON objects of display strings) in the chosen format. `default` holds the
/// columns of the default table; `header` names a field's column.
pub fn print_rows(
    out: &mut dyn Write,
    format: &Format,
    rows: &[Value],
    default: &str,
    header: &dyn Fn(&str) -> String,
) -> Result<()> {
    match format {
        Format::Json => {
            for r in rows {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Format::Lines(t) => {
            for r in rows {
                writeln!(out, "{}", t.render(r))?;
            }
        }
        Format::Default | Format::Table(_) => {
            let parsed;
            let t = match format {
                Format::Table(t) => t,
                _ => {
                    parsed = Template::parse(default)?;
                    &parsed
                }
            };
            let mut lines = vec![split_cells(&t.header(header))];
            lines.extend(rows.iter().map(|r| split_cells(&t.render(r))));
            write_table(out, &lines)?;
        }
    }
    Ok(())
}

fn split_cells(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligned() {
        let mut out = Vec::new();
        let lines = vec![
            vec!["CONTAINER ID".into(), "IMAGE".into(), "NAMES".into()],
            vec!["0123456789ab".into(), "busybox".into(), "web".into()],
        ];
        write_table(&mut out, &lines).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONTAINER ID   IMAGE     NAMES\n0123456789ab   busybox   web\n"
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(
            ellipsis("docker-entrypoint.sh nginx", 20),
            "docker-entrypoint.s…"
        );
        assert_eq!(ellipsis("sh", 20), "sh");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(go_quote("echo \"hi\"\n"), "\"echo \\\"hi\\\"\\n\"");
    }

    #[test]
    fn templates() {
        let v = json!({"ID": "abc", "State": {"Status": "running", "Pid": 42, "Ok": true},
            "Env": ["A=1", "B=2"], "Labels": {"x": "1", "a": "2"}, "Row": "k=v,k2=v2"});
        let r = |t: &str| Template::parse(t).unwrap().render(&v);
        assert_eq!(r("{{.ID}}"), "abc");
        assert_eq!(
            r("id={{.ID}} {{.State.Status}}/{{.State.Pid}}"),
            "id=abc running/42"
        );
        assert_eq!(r("{{ .State.Ok }}"), "true");
        assert_eq!(r("{{.Env}}"), "[A=1 B=2]");
        assert_eq!(r("{{.Labels}}"), "map[a:2 x:1]");
        assert_eq!(
            r("{{json .State}}"),
            r#"{"Ok":true,"Pid":42,"Status":"running"}"#
        );
        assert_eq!(r("{{index .Labels \"x\"}}"), "1");
        assert_eq!(r("{{.Row.Label \"k2\"}}"), "");
        assert_eq!(r("{{upper .ID}}"), "ABC");
        assert_eq!(r("{{.Missing}}"), "<no value>");
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(Format::parse(None).unwrap(), Format::Default);
        assert_eq!(Format::parse(Some("table")).unwrap(), Format::Default);
        assert_eq!(Format::parse(Some("json")).unwrap(), Format::Json);
        assert!(matches!(
            Format::parse(Some("table {{.ID}}\\t{{.Names}}")).unwrap(),
            Format::Table(_)
        ));
        let rows = vec![json!({"ID": "abc", "Names": "web"})];
        let header = |f: &str| match f {
            "ID" => "CONTAINER ID".to_string(),
            other => other.to_uppercase(),
        };
        let mut out = Vec::new();
        let f = Format::parse(Some("table {{.ID}}\\t{{.Names}}")).unwrap();
        print_rows(&mut out, &f, &rows, "", &header).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        let mut out = Vec::new();
        let f = Format::parse(Some("{{.Names}}: {{.ID}}")).unwrap();
        print_rows(&mut out, &f, &rows, "", &header).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "web: abc\n");
        let mut out = Vec::new();
        print_rows(&mut out, &Format::Json, &rows, "", &header).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\"}\n"
        );
    }
}
