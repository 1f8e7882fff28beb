//! `inspect` and `image inspect`: the API's documents as a pretty JSON array, or through a
//! `--format` template.

use std::io::Write;

use anyhow::Result;
use bollard::query_parameters::InspectContainerOptions;
use bollard::Docker;
use serde::Serialize;
use serde_json::Value;

use crate::table::Template;
use crate::{exit_code, item_error, status_code};

/// Return low-level information on containers or images.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only inspect objects of the given type (container, image)
    #[arg(long = "type")]
    pub typ: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short, long)]
    pub size: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Display detailed information on one or more images.
#[derive(clap::Args, Debug)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Writes documents as docker does: a JSON array indented by four spaces, or one rendered
/// template per document.
pub fn render(out: &mut dyn Write, docs: &[Value], format: Option<&str>) -> Result<()> {
    match format.map(|f| f.replace("\\t", "\t").replace("\\n", "\n")) {
        Some(f) if !f.is_empty() && f != "json" => {
            let t = Template::parse(&f)?;
            for d in docs {
                writeln!(out, "{}", t.render(d))?;
            }
        }
        Some(f) if f == "json" => {
            for d in docs {
                writeln!(out, "{}", serde_json::to_string(d)?)?;
            }
        }
        _ => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            docs.serialize(&mut ser)?;
            if docs.is_empty() {
                buf = b"[]".to_vec();
            }
            out.write_all(&buf)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

async fn container_doc(d: &Docker, name: &str, size: bool) -> Result<Value> {
    let opts = InspectContainerOptions { size };
    Ok(serde_json::to_value(
        d.inspect_container(name, Some(opts)).await?,
    )?)
}

async fn image_doc(d: &Docker, name: &str) -> Result<Value> {
    Ok(serde_json::to_value(d.inspect_image(name).await?)?)
}

pub async fn inspect(d: &Docker, a: InspectArgs) -> Result<i32> {
    let mut docs = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let found = match a.typ.as_deref() {
            Some("container") => container_doc(d, name, a.size).await,
            Some("image") => image_doc(d, name).await,
            Some(other) => {
                return Err(crate::Exit {
                    code: 1,
                    message: format!("\"{other}\" is not a valid value for --type"),
                }
                .into())
            }
            None => match container_doc(d, name, a.size).await {
                Err(e) if status_code(&e) == Some(404) => match image_doc(d, name).await {
                    Err(e) if status_code(&e) == Some(404) => {
                        Err(anyhow::anyhow!("Error: No such object: {name}"))
                    }
                    other => other,
                },
                other => other,
            },
        };
        match found {
            Ok(doc) => docs.push(doc),
            Err(e) => {
                eprintln!("{}", item_error(e)?);
                failed = true;
            }
        }
    }
    render(&mut std::io::stdout().lock(), &docs, a.format.as_deref())?;
    if failed {
        return Err(exit_code(1));
    }
    Ok(0)
}

pub async fn image_inspect(d: &Docker, a: ImageInspectArgs) -> Result<i32> {
    inspect(
        d,
        InspectArgs {
            format: a.format,
            typ: Some("image".into()),
            size: false,
            names: a.names,
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pretty_array() {
        let mut out = Vec::new();
        render(
            &mut out,
            &[json!({"Id": "abc", "State": {"Status": "running"}})],
            None,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[\n    {\n        \"Id\": \"abc\",\n        \"State\": {\n            \"Status\": \"running\"\n        }\n    }\n]\n"
        );
        let mut out = Vec::new();
        render(&mut out, &[], None).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
    }

    #[test]
    fn format() {
        let mut out = Vec::new();
        let docs = [json!({"State": {"Status": "exited", "ExitCode": 3}})];
        render(
            &mut out,
            &docs,
            Some("{{.State.Status}} {{.State.ExitCode}}"),
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "exited 3\n");
    }
}
