//! `docker import --change`: Dockerfile instructions applied to an image config.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Applies `changes` (one Dockerfile instruction each) to the docker-style `config` object
/// (`Cmd`, `Env`, …).
pub(crate) fn apply_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    for change in changes {
        for line in change.lines().map(str::trim).filter(|l| !l.is_empty()) {
            apply_one(config, line)?;
        }
    }
    Ok(())
}

fn apply_one(config: &mut Map<String, Value>, line: &str) -> Result<()> {
    let bad = |why: &str| Error::InvalidInput(format!("change {line:?}: {why}"));
    let (instr, rest) = match line.split_once(char::is_whitespace) {
        Some((i, r)) => (i.to_ascii_uppercase(), r.trim()),
        None => (line.to_ascii_uppercase(), ""),
    };
    if rest.is_empty() {
        return Err(bad("missing arguments"));
    }
    match instr.as_str() {
        "CMD" | "ENTRYPOINT" => {
            let argv = match json_array(rest) {
                Some(v) => v,
                None => vec!["/bin/sh".to_string(), "-c".to_string(), rest.to_string()],
            };
            let key = if instr == "CMD" { "Cmd" } else { "Entrypoint" };
            config.insert(key.into(), json!(argv));
        }
        "ENV" => {
            let pairs = key_values(rest).ok_or_else(|| bad("expected KEY=VALUE or KEY VALUE"))?;
            let mut env: Vec<String> = config
                .get("Env")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            for (k, v) in pairs {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config.insert("Env".into(), json!(env));
        }
        "LABEL" => {
            let pairs = key_values(rest).ok_or_else(|| bad("expected KEY=VALUE"))?;
            let labels = object_entry(config, "Labels");
            for (k, v) in pairs {
                labels.insert(k, json!(v));
            }
        }
        "EXPOSE" => {
            let ports = words(rest).ok_or_else(|| bad("unbalanced quotes"))?;
            let exposed = object_entry(config, "ExposedPorts");
            for p in ports {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let valid = !port.is_empty()
                    && port.split('-').all(|n| n.parse::<u16>().is_ok())
                    && matches!(proto, "tcp" | "udp" | "sctp");
                if !valid {
                    return Err(bad(&format!("invalid port {p:?}")));
                }
                exposed.insert(format!("{port}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let vols = match json_array(rest) {
                Some(v) => v,
                None => words(rest).ok_or_else(|| bad("unbalanced quotes"))?,
            };
            let volumes = object_entry(config, "Volumes");
            for v in vols {
                volumes.insert(v, json!({}));
            }
        }
        "USER" => {
            config.insert("User".into(), json!(rest));
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(rest));
        }
        _ => return Err(bad(&format!("{instr} is not supported by import"))),
    }
    Ok(())
}

fn object_entry<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = config.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("just made an object")
}

fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str(s).ok()
}

/// `K=V K2="v 2"` or the legacy `K value with spaces`.
fn key_values(s: &str) -> Option<Vec<(String, String)>> {
    let ws = words(s)?;
    if ws.first()?.contains('=') {
        ws.iter()
            .map(|w| {
                let (k, v) = w.split_once('=')?;
                (!k.is_empty()).then(|| (k.to_string(), v.to_string()))
            })
            .collect()
    } else {
        let (k, v) = s.split_once(char::is_whitespace)?;
        Some(vec![(k.to_string(), v.trim().to_string())])
    }
}

/// Splits on unquoted whitespace, removing quotes and backslash escapes as a shell would.
fn words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                cur.push(chars.next().unwrap_or('\\'));
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Map<String, Value> {
        let mut m = Map::new();
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut m, &changes).unwrap();
        m
    }

    #[test]
    fn cmd_forms() {
        let m = apply(&["CMD [\"sh\", \"-c\", \"echo hi\"]", "ENTRYPOINT echo hi"]);
        assert_eq!(m["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(m["Entrypoint"], json!(["/bin/sh", "-c", "echo hi"]));
    }

    #[test]
    fn env_label_expose_volume() {
        let m = apply(&[
            "ENV A=1 B=\"two words\"",
            "ENV C three four",
            "ENV A=5",
            "LABEL x=y",
            "EXPOSE 80 53/udp",
            "VOLUME /data /logs",
            "USER nobody",
            "WORKDIR /app",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(m["Env"], json!(["B=two words", "C=three four", "A=5"]));
        assert_eq!(m["Labels"], json!({"x": "y"}));
        assert_eq!(m["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(m["Volumes"], json!({"/data": {}, "/logs": {}}));
        assert_eq!(m["User"], json!("nobody"));
        assert_eq!(m["WorkingDir"], json!("/app"));
        assert_eq!(m["StopSignal"], json!("SIGINT"));
    }

    #[test]
    fn rejects_unknown() {
        let mut m = Map::new();
        assert!(apply_changes(&mut m, &["RUN echo".to_string()]).is_err());
        assert!(apply_changes(&mut m, &["EXPOSE http".to_string()]).is_err());
    }
}
