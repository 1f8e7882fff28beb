//! `events`: the daemon's event stream, in docker's line format or a template.

use std::io::Write;

use anyhow::Result;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::StreamExt;

use crate::containers::filters;
use crate::table::Format;
use crate::units::{parse_timestamp, rfc3339_nano};

/// Get real time events from the server.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json', 'TEMPLATE')
    #[arg(long)]
    pub format: Option<String>,
}

/// `2024-01-02T15:04:05.123456789Z container start 0123… (image=busybox, name=web)`
pub fn line(e: &EventMessage) -> String {
    let when = match (e.time_nano, e.time) {
        (Some(n), _) if n != 0 => rfc3339_nano(n),
        (_, Some(t)) => rfc3339_nano(t * 1_000_000_000),
        _ => String::new(),
    };
    let typ = e.typ.map(|t| t.to_string()).unwrap_or_default();
    let action = e.action.clone().unwrap_or_default();
    let actor = e.actor.clone().unwrap_or_default();
    let mut s = format!("{when} {typ} {action} {}", actor.id.unwrap_or_default());
    let mut attrs: Vec<(String, String)> =
        actor.attributes.unwrap_or_default().into_iter().collect();
    if !attrs.is_empty() {
        attrs.sort();
        let parts: Vec<String> = attrs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(" ({})", parts.join(", ")));
    }
    s
}

/// Docker's wire form of a time flag: seconds and nanoseconds.
fn wire_time(secs: f64) -> String {
    let whole = secs.floor();
    format!(
        "{}.{:09}",
        whole as i64,
        ((secs - whole) * 1e9).round() as i64
    )
}

pub fn write_event(out: &mut dyn Write, e: &EventMessage, format: &Format) -> Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(e)?)?,
        Format::Lines(t) | Format::Table(t) => {
            writeln!(out, "{}", t.render(&serde_json::to_value(e)?))?
        }
        Format::Default => writeln!(out, "{}", line(e))?,
    }
    out.flush()?;
    Ok(())
}

pub async fn events(d: &Docker, a: EventsArgs) -> Result<i32> {
    let format = Format::parse(a.format.as_deref())?;
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let t = |v: &Option<String>| -> Result<Option<String>> {
        v.as_deref()
            .map(|s| Ok(wire_time(parse_timestamp(s, now)?)))
            .transpose()
    };
    let opts = EventsOptions {
        since: t(&a.since)?,
        until: t(&a.until)?,
        filters: Some(filters(&a.filter)?),
    };
    let mut stream = d.events(Some(opts));
    while let Some(e) = stream.next().await {
        write_event(&mut std::io::stdout().lock(), &e?, &format)?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{EventActor, EventMessageTypeEnum};
    use std::collections::HashMap;

    #[test]
    fn line_format() {
        let e = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("start".into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    ("name".into(), "web".into()),
                    ("image".into(), "busybox".into()),
                ])),
            }),
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_120_000_000),
            ..Default::default()
        };
        let l = line(&e);
        assert!(
            l.ends_with(" container start abc (image=busybox, name=web)"),
            "{l}"
        );
        assert!(l.starts_with("2023-11-1"), "{l}");
        assert!(l.contains(".12"), "{l}");
        assert_eq!(wire_time(1.5), "1.500000000");
    }
}
