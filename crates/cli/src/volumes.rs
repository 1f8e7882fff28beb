//! `volume create|ls|inspect|rm|prune`.

use std::io::Write;

use anyhow::Result;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, PruneVolumesOptions, RemoveVolumeOptions};
use bollard::Docker;
use serde_json::{json, Value};

use crate::containers::{confirm, filters};
use crate::networks::{each, inspect_each, key_values};
use crate::table::{print_rows, Format};
use crate::units::human_size;

/// `cloudlet volume …`
#[derive(clap::Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

#[derive(clap::Args, Debug)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short, long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
}

pub async fn run(d: &Docker, cmd: VolumeCommand) -> Result<i32> {
    match cmd {
        VolumeCommand::Create(a) => {
            let req = VolumeCreateRequest {
                name: a.name.clone(),
                driver: Some(a.driver.clone()),
                driver_opts: Some(key_values(&a.opt, "option")?),
                labels: Some(key_values(&a.label, "label")?),
                ..Default::default()
            };
            let v = d.create_volume(req).await?;
            println!("{}", v.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let opts = ListVolumesOptions {
                filters: Some(filters(&a.filter)?),
            };
            let mut list = d
                .list_volumes(Some(opts))
                .await?
                .volumes
                .unwrap_or_default();
            list.sort_by(|x, y| x.name.cmp(&y.name));
            let mut out = std::io::stdout().lock();
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
                return Ok(0);
            }
            let rows: Vec<Value> = list
                .iter()
                .map(|v| json!({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": "local"}))
                .collect();
            let format = Format::parse(a.format.as_deref())?;
            print_rows(
                &mut out,
                &format,
                &rows,
                "{{.Driver}}\t{{.Name}}",
                &|f| match f {
                    "Name" => "VOLUME NAME".into(),
                    other => other.to_uppercase(),
                },
            )?;
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            inspect_each(&a.names, a.format.as_deref(), |n| async move {
                d.inspect_volume(&n).await
            })
            .await
        }
        VolumeCommand::Rm(a) => {
            let force = a.force;
            each(&a.names, |n| async move {
                let opts = RemoveVolumeOptions { force };
                d.remove_volume(&n, Some(opts))
                    .await
                    .map(|()| println!("{n}"))
            })
            .await?;
            Ok(0)
        }
        VolumeCommand::Prune(a) => {
            let warning = match a.all {
                true => "WARNING! This will remove all local volumes not used by at least one container.",
                false => "WARNING! This will remove anonymous local volumes not used by at least one container.",
            };
            if !a.force && !confirm(warning) {
                return Ok(0);
            }
            let mut f = filters(&a.filter)?;
            if a.all {
                f.insert("all".into(), vec!["true".into()]);
            }
            let resp = d
                .prune_volumes(Some(PruneVolumesOptions { filters: Some(f) }))
                .await?;
            let deleted = resp.volumes_deleted.unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for v in &deleted {
                    println!("{v}");
                }
                println!();
            }
            let freed = resp.space_reclaimed.unwrap_or(0) as f64;
            println!("Total reclaimed space: {}", human_size(freed));
            Ok(0)
        }
    }
}
