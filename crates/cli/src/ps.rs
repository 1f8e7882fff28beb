//! `ps`: the container list, in docker's columns and `--format` templates.

use std::io::Write;

use anyhow::Result;
use bollard::models::{ContainerSummary, PortSummary};
use bollard::query_parameters::ListContainersOptions;
use bollard::Docker;
use serde_json::{json, Value};

use crate::containers::filters;
use crate::table::{ellipsis, go_quote, print_rows, short_id, Format};
use crate::units::{go_time, human_size, time_ago};

/// List containers.
#[derive(clap::Args, Debug, Default)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    pub last: Option<i32>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

const DEFAULT: &str =
    "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Column names for `ps` fields.
pub fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "CreatedAt" => "CREATED AT".into(),
        "RunningFor" => "CREATED".into(),
        "LocalVolumes" => "LOCAL VOLUMES".into(),
        "Labels" | "Label" => "LABELS".into(),
        other => other.to_uppercase(),
    }
}

/// The PORTS column as docker shows it: ports sorted by number, address, published port and
/// protocol; runs of consecutive ports grouped (`8000-8002/tcp`, and `ip:80-81->80-81/tcp` when
/// published on the same numbers); other published ports listed last as `ip:public->private/proto`.
pub fn display_ports(ports: &[PortSummary]) -> String {
    let proto = |p: &PortSummary| {
        p.typ
            .map(|t| t.to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "tcp".into())
    };
    let mut sorted: Vec<&PortSummary> = ports.iter().collect();
    sorted.sort_by(|a, b| {
        (
            a.private_port,
            a.ip.as_deref().unwrap_or(""),
            a.public_port.unwrap_or(0),
            proto(a),
        )
            .cmp(&(
                b.private_port,
                b.ip.as_deref().unwrap_or(""),
                b.public_port.unwrap_or(0),
                proto(b),
            ))
    });
    // (ip, proto) -> current run; runs are emitted in the order their keys first appeared.
    let mut runs: Vec<((String, String), u16, u16)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut published: Vec<String> = Vec::new();
    let form = |(ip, proto): &(String, String), first: u16, last: u16| {
        let range = if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        };
        if ip.is_empty() {
            format!("{range}/{proto}")
        } else {
            format!("{}:{range}->{range}/{proto}", host(ip))
        }
    };
    for p in sorted {
        let ip = p.ip.clone().unwrap_or_default();
        let public = p.public_port.unwrap_or(0);
        if !ip.is_empty() && public != p.private_port {
            published.push(format!(
                "{}:{public}->{}/{}",
                host(&ip),
                p.private_port,
                proto(p)
            ));
            continue;
        }
        let key = (ip, proto(p));
        match runs.iter_mut().find(|(k, _, _)| *k == key) {
            Some(run) if run.2.checked_add(1) == Some(p.private_port) => run.2 = p.private_port,
            Some(run) => {
                done.push(form(&run.0, run.1, run.2));
                run.1 = p.private_port;
                run.2 = p.private_port;
            }
            None => runs.push((key, p.private_port, p.private_port)),
        }
    }
    done.extend(runs.iter().map(|(k, first, last)| form(k, *first, *last)));
    done.extend(published);
    done.join(", ")
}

/// An address as the host part of `host:port` (IPv6 in brackets).
fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The image column: a short id for image ids, and no digest unless `--no-trunc`.
fn image_name(c: &ContainerSummary, trunc: bool) -> String {
    let image = c.image.clone().unwrap_or_default();
    if image.is_empty() {
        return "<no image>".into();
    }
    if !trunc {
        return image;
    }
    if image.starts_with("sha256:") || c.image_id.as_deref().map(short_id) == Some(short_id(&image))
    {
        return short_id(&image);
    }
    match image.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => image,
    }
}

/// One row of `ps`, as the fields docker's templates know.
pub fn row(c: &ContainerSummary, trunc: bool, now: i64) -> Value {
    let id = c.id.clone().unwrap_or_default();
    let names: Vec<String> = c
        .names
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|n| n.trim_start_matches('/').to_string())
        // Names with a slash left are legacy link aliases, which docker hides.
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let command = c.command.clone().unwrap_or_default();
    let command = if trunc {
        ellipsis(&command, 20)
    } else {
        command
    };
    let created = c.created.unwrap_or(0);
    let mut labels: Vec<String> = c
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    let mut networks: Vec<String> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.keys().cloned().collect())
        .unwrap_or_default();
    networks.sort();
    let mounts: Vec<String> = c
        .mounts
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let name = m.name.clone().filter(|n| !n.is_empty());
            let n = name.unwrap_or_else(|| m.source.clone().unwrap_or_default());
            if trunc {
                ellipsis(&n, 15)
            } else {
                n
            }
        })
        .collect();
    let size = match (c.size_rw, c.size_root_fs) {
        (rw, Some(root)) if root > 0 => format!(
            "{} (virtual {})",
            human_size(rw.unwrap_or(0) as f64),
            human_size(root as f64)
        ),
        (rw, _) => human_size(rw.unwrap_or(0) as f64),
    };
    json!({
        "ID": if trunc { short_id(&id) } else { id },
        "Image": image_name(c, trunc),
        "Command": go_quote(&command),
        "CreatedAt": go_time(created),
        "RunningFor": time_ago(created, now),
        "Ports": display_ports(c.ports.as_deref().unwrap_or(&[])),
        "State": c.state.map(|s| s.to_string()).unwrap_or_default(),
        "Status": c.status.clone().unwrap_or_default(),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels.join(","),
        "Mounts": mounts.join(","),
        "Networks": networks.join(","),
        "LocalVolumes": c.mounts.as_ref().map(|m| m.iter().filter(|m| m.name.is_some()).count()).unwrap_or(0).to_string(),
    })
}

/// Prints containers as `ps` does.
pub fn render(
    out: &mut dyn Write,
    containers: &[ContainerSummary],
    a: &PsArgs,
    now: i64,
) -> Result<()> {
    let trunc = !a.no_trunc;
    if a.quiet {
        for c in containers {
            let id = c.id.clone().unwrap_or_default();
            writeln!(out, "{}", if trunc { short_id(&id) } else { id })?;
        }
        return Ok(());
    }
    let rows: Vec<Value> = containers.iter().map(|c| row(c, trunc, now)).collect();
    let format = Format::parse(a.format.as_deref())?;
    let default = if a.size {
        format!("{DEFAULT}\t{{{{.Size}}}}")
    } else {
        DEFAULT.to_string()
    };
    print_rows(out, &format, &rows, &default, &header)
}

pub async fn ps(d: &Docker, a: PsArgs) -> Result<i32> {
    let limit = if a.latest { Some(1) } else { a.last };
    let opts = ListContainersOptions {
        all: a.all || limit.is_some(),
        limit,
        // As docker does, a template that shows sizes asks the daemon for them.
        size: a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size")),
        filters: Some(filters(&a.filter)?),
    };
    let list = d.list_containers(Some(opts)).await?;
    render(
        &mut std::io::stdout().lock(),
        &list,
        &a,
        crate::units::now(),
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerSummaryStateEnum, PortSummaryTypeEnum};

    fn sample() -> Vec<ContainerSummary> {
        vec![
            ContainerSummary {
                id: Some("f2a9c6d1e0b7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3".into()),
                names: Some(vec!["/web".into()]),
                image: Some("nginx@sha256:0123".into()),
                command: Some("/docker-entrypoint.sh nginx -g 'daemon off;'".into()),
                created: Some(1000),
                ports: Some(vec![
                    PortSummary {
                        ip: Some("0.0.0.0".into()),
                        private_port: 80,
                        public_port: Some(8080),
                        typ: Some(PortSummaryTypeEnum::TCP),
                    },
                    PortSummary {
                        ip: None,
                        private_port: 53,
                        public_port: None,
                        typ: Some(PortSummaryTypeEnum::UDP),
                    },
                ]),
                state: Some(ContainerSummaryStateEnum::RUNNING),
                status: Some("Up 3 seconds".into()),
                ..Default::default()
            },
            ContainerSummary {
                id: Some("0123456789abcdef0123".into()),
                names: Some(vec!["/old".into()]),
                image: Some("busybox".into()),
                command: Some("sh".into()),
                created: Some(1000 - 7200),
                state: Some(ContainerSummaryStateEnum::EXITED),
                status: Some("Exited (0) 5 seconds ago".into()),
                ..Default::default()
            },
        ]
    }

    fn render_str(a: &PsArgs) -> String {
        let mut out = Vec::new();
        render(&mut out, &sample(), a, 1002).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_table() {
        let out = render_str(&PsArgs::default());
        let expected = "\
CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS                     PORTS                          NAMES
f2a9c6d1e0b7   nginx     \"/docker-entrypoint.…\"   2 seconds ago   Up 3 seconds               53/udp, 0.0.0.0:8080->80/tcp   web
0123456789ab   busybox   \"sh\"                     2 hours ago     Exited (0) 5 seconds ago                                  old
";
        assert_eq!(out, expected);
    }

    #[test]
    fn ports() {
        let p = |ip: Option<&str>, private: u16, public: Option<u16>, udp: bool| PortSummary {
            ip: ip.map(str::to_string),
            private_port: private,
            public_port: public,
            typ: Some(if udp {
                PortSummaryTypeEnum::UDP
            } else {
                PortSummaryTypeEnum::TCP
            }),
        };
        assert_eq!(
            display_ports(&[
                p(Some("::"), 80, Some(8080), false),
                p(Some("0.0.0.0"), 80, Some(8080), false),
                p(None, 8001, None, false),
                p(None, 8000, None, false),
                p(None, 8002, None, false),
                p(None, 9000, None, false),
                p(Some("0.0.0.0"), 53, Some(53), true),
            ]),
            "8000-8002/tcp, 0.0.0.0:53->53/udp, 9000/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
        );
        assert_eq!(display_ports(&[]), "");
    }

    #[test]
    fn quiet_and_templates() {
        let q = PsArgs {
            quiet: true,
            ..Default::default()
        };
        assert_eq!(render_str(&q), "f2a9c6d1e0b7\n0123456789ab\n");
        let f = PsArgs {
            format: Some("{{.Names}} {{.State}} {{.Image}}".into()),
            no_trunc: true,
            ..Default::default()
        };
        assert_eq!(
            render_str(&f),
            "web running nginx@sha256:0123\nold exited busybox\n"
        );
        let t = PsArgs {
            format: Some("table {{.ID}}\\t{{.Status}}".into()),
            ..Default::default()
        };
        assert_eq!(
            render_str(&t),
            "CONTAINER ID   STATUS\nf2a9c6d1e0b7   Up 3 seconds\n0123456789ab   Exited (0) 5 seconds ago\n"
        );
        let j = PsArgs {
            format: Some("json".into()),
            ..Default::default()
        };
        let first: Value = serde_json::from_str(render_str(&j).lines().next().unwrap()).unwrap();
        assert_eq!(first["Names"], "web");
        assert_eq!(first["RunningFor"], "2 seconds ago");
    }
}
