//! `images`, `tag`, `rmi` and `image prune`.

use std::io::Write;

use anyhow::Result;
use bollard::models::ImageSummary;
use bollard::query_parameters::{
    ListImagesOptions, PruneImagesOptions, RemoveImageOptions, TagImageOptions,
};
use bollard::Docker;
use serde_json::{json, Value};

use crate::containers::{confirm, filters};
use crate::pull_push::split_tag;
use crate::table::{print_rows, short_id, Format};
use crate::units::{go_time, human_size, time_ago};
use crate::{exit_code, item_error};

/// List images.
#[derive(clap::Args, Debug, Default)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this repository ([REPOSITORY[:TAG]])
    pub repository: Option<String>,
}

/// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
#[derive(clap::Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

/// Remove one or more images.
#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Remove unused images.
#[derive(clap::Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

const DEFAULT: &str = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const DEFAULT_DIGESTS: &str =
    "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// Column names for `images` fields.
pub fn header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "SharedSize" => "SHARED SIZE".into(),
        "UniqueSize" => "UNIQUE SIZE".into(),
        "VirtualSize" => "VIRTUAL SIZE".into(),
        other => other.to_uppercase(),
    }
}

/// The rows of one image: one per tag, or a single `<none>` row.
pub fn rows(img: &ImageSummary, trunc: bool, now: i64) -> Vec<Value> {
    let id = if trunc {
        short_id(&img.id)
    } else {
        img.id.clone()
    };
    let digest_for = |repo: &str| -> String {
        img.repo_digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == repo || repo == "<none>")
                    .map(|(_, dg)| dg.to_string())
            })
            .unwrap_or_else(|| "<none>".into())
    };
    let mut pairs: Vec<(String, String)> = img
        .repo_tags
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .map(|t| {
            let (r, tag) = split_tag(t);
            (r.to_string(), tag.unwrap_or("<none>").to_string())
        })
        .collect();
    if pairs.is_empty() {
        // An untagged image still shows its repository when it has a digest for one.
        let repo = img
            .repo_digests
            .iter()
            .find_map(|d| d.split_once('@').map(|(r, _)| r.to_string()))
            .unwrap_or_else(|| "<none>".into());
        pairs.push((repo, "<none>".into()));
    }
    pairs
        .into_iter()
        .map(|(repo, tag)| {
            json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest_for(&repo),
                "ID": id,
                "CreatedSince": time_ago(img.created, now),
                "CreatedAt": go_time(img.created),
                "Size": human_size(img.size as f64),
                "SharedSize": if img.shared_size < 0 { "N/A".to_string() } else { human_size(img.shared_size as f64) },
                "UniqueSize": if img.shared_size < 0 { "N/A".to_string() } else { human_size((img.size - img.shared_size) as f64) },
                "VirtualSize": human_size(img.size as f64),
                "Containers": if img.containers < 0 { "N/A".to_string() } else { img.containers.to_string() },
            })
        })
        .collect()
}

/// Prints images as `images` does.
pub fn render(
    out: &mut dyn Write,
    images: &[ImageSummary],
    a: &ImagesArgs,
    now: i64,
) -> Result<()> {
    let trunc = !a.no_trunc;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for img in images {
            let id = if trunc {
                short_id(&img.id)
            } else {
                img.id.clone()
            };
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(());
    }
    let all: Vec<Value> = images.iter().flat_map(|i| rows(i, trunc, now)).collect();
    let format = Format::parse(a.format.as_deref())?;
    let default = if a.digests { DEFAULT_DIGESTS } else { DEFAULT };
    print_rows(out, &format, &all, default, &header)
}

pub async fn images(d: &Docker, a: ImagesArgs) -> Result<i32> {
    let mut f = filters(&a.filter)?;
    if let Some(r) = &a.repository {
        f.entry("reference".into()).or_default().push(r.clone());
    }
    let opts = ListImagesOptions {
        all: a.all,
        filters: Some(f),
        digests: a.digests,
        ..Default::default()
    };
    let list = d.list_images(Some(opts)).await?;
    render(
        &mut std::io::stdout().lock(),
        &list,
        &a,
        crate::units::now(),
    )?;
    Ok(0)
}

pub async fn tag(d: &Docker, a: TagArgs) -> Result<i32> {
    let (repo, tag) = split_tag(&a.target);
    let opts = TagImageOptions {
        repo: Some(repo.to_string()),
        tag: Some(tag.unwrap_or("latest").to_string()),
    };
    d.tag_image(&a.source, Some(opts)).await?;
    Ok(0)
}

pub async fn rmi(d: &Docker, a: RmiArgs) -> Result<i32> {
    let mut failed = false;
    for image in &a.images {
        let opts = RemoveImageOptions {
            force: a.force,
            noprune: a.no_prune,
            ..Default::default()
        };
        match d.remove_image(image, Some(opts), None).await {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(del) = i.deleted {
                        println!("Deleted: {del}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{}", item_error(e.into())?);
                failed = true;
            }
        }
    }
    if failed {
        Err(exit_code(1))
    } else {
        Ok(0)
    }
}

pub async fn prune(d: &Docker, a: ImagePruneArgs) -> Result<i32> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(0);
    }
    let mut f = filters(&a.filter)?;
    if a.all {
        f.insert("dangling".into(), vec!["false".into()]);
    }
    let r = d
        .prune_images(Some(PruneImagesOptions { filters: Some(f) }))
        .await?;
    let deleted = r.images_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Images:");
        for i in deleted {
            if let Some(u) = i.untagged {
                println!("untagged: {u}");
            }
            if let Some(del) = i.deleted {
                println!("deleted: {del}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size(r.space_reclaimed.unwrap_or(0) as f64)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ImageSummary> {
        vec![
            ImageSummary {
                id: "sha256:af4709625109e3e4a3a5f33bf9bdbe7bd09ec0e7b4c0ab9b1f1b2b5d0c8e8a1a"
                    .into(),
                repo_tags: vec!["busybox:latest".into(), "localhost:5000/busybox:v1".into()],
                repo_digests: vec!["busybox@sha256:abcd".into()],
                created: 1000 - 14 * 86400,
                size: 4_261_550,
                ..Default::default()
            },
            ImageSummary {
                id: "sha256:0123456789abcdef".into(),
                created: 1000 - 90,
                size: 1_234,
                ..Default::default()
            },
        ]
    }

    fn render_str(a: &ImagesArgs) -> String {
        let mut out = Vec::new();
        render(&mut out, &sample(), a, 1000).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_table() {
        let out = render_str(&ImagesArgs::default());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
        );
        assert!(lines[0].starts_with("REPOSITORY               TAG       IMAGE ID       CREATED"));
        assert_eq!(
            lines[1],
            "busybox                  latest    af4709625109   2 weeks ago          4.26MB"
        );
        assert_eq!(
            lines[2],
            "localhost:5000/busybox   v1        af4709625109   2 weeks ago          4.26MB"
        );
        assert_eq!(
            lines[3],
            "<none>                   <none>    0123456789ab   About a minute ago   1.23kB"
        );
    }

    #[test]
    fn digests_quiet_and_format() {
        let d = ImagesArgs {
            digests: true,
            ..Default::default()
        };
        let out = render_str(&d);
        assert!(out.lines().next().unwrap().contains("DIGEST"));
        assert!(out.lines().nth(1).unwrap().contains("sha256:abcd"));
        assert!(out.lines().nth(2).unwrap().contains("<none>"));
        let q = ImagesArgs {
            quiet: true,
            ..Default::default()
        };
        assert_eq!(render_str(&q), "af4709625109\n0123456789ab\n");
        let f = ImagesArgs {
            format: Some("{{.Repository}}:{{.Tag}} {{.Size}}".into()),
            ..Default::default()
        };
        assert_eq!(
            render_str(&f),
            "busybox:latest 4.26MB\nlocalhost:5000/busybox:v1 4.26MB\n<none>:<none> 1.23kB\n"
        );
    }
}
