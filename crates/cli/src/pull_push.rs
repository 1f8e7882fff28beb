//! `pull` and `push`, with a progress bar per layer when the output is a terminal and plain
//! status lines otherwise.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use bollard::models::ProgressDetail;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions};
use bollard::Docker;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Download an image from a registry.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// NAME[:TAG|@DIGEST]
    pub image: String,
}

/// Upload an image to a registry.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    /// NAME[:TAG]
    pub image: String,
}

/// Splits `name[:tag]` (a port in the registry host is not a tag); a digest reference keeps its
/// digest in the name and has no tag.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let slash = reference.rfind('/').map(|i| i + 1).unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

/// `busybox` → `busybox:latest`, as docker names what it looks for.
pub fn with_default_tag(reference: &str) -> String {
    match split_tag(reference) {
        (name, None) if !reference.contains('@') => format!("{name}:latest"),
        _ => reference.to_string(),
    }
}

/// The fully qualified form docker prints after a pull: `docker.io/library/busybox:latest`.
pub fn fully_qualified(reference: &str) -> String {
    let r = with_default_tag(reference);
    let first = r.split('/').next().unwrap_or("");
    let has_domain =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        r
    } else if r.contains('/') {
        format!("docker.io/{r}")
    } else {
        format!("docker.io/library/{r}")
    }
}

/// Shows a JSON progress stream: bars per layer on a terminal, de-duplicated lines elsewhere.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    last: HashMap<String, String>,
    /// Lines that come after the layers ("Digest: …"), printed below the finished bars.
    trailer: Vec<String>,
    to_stderr: bool,
}

impl Progress {
    pub fn new(to_stderr: bool) -> Progress {
        let tty = if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        let multi = tty.then(|| {
            let target = if to_stderr {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::stdout()
            };
            MultiProgress::with_draw_target(target)
        });
        Progress {
            multi,
            bars: HashMap::new(),
            last: HashMap::new(),
            trailer: Vec::new(),
            to_stderr,
        }
    }

    fn line(&self, s: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(s);
            }
            None if self.to_stderr => eprintln!("{s}"),
            None => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{s}");
            }
        }
    }

    /// One message of the stream.
    pub fn update(&mut self, id: Option<&str>, status: &str, detail: Option<&ProgressDetail>) {
        let id = id.filter(|i| !i.is_empty());
        let Some(id) = id else {
            if self.multi.is_some() && !self.bars.is_empty() {
                self.trailer.push(status.to_string());
            } else if !status.is_empty() {
                self.line(status);
            }
            return;
        };
        // "<tag>: Pulling from <repo>" heads the output rather than being a layer.
        if status.starts_with("Pulling from") {
            self.line(&format!("{id}: {status}"));
            return;
        }
        let Some(multi) = &self.multi else {
            if self.last.get(id).map(String::as_str) != Some(status) {
                self.last.insert(id.to_string(), status.to_string());
                self.line(&format!("{id}: {status}"));
            }
            return;
        };
        let bar = self.bars.entry(id.to_string()).or_insert_with(|| {
            let b = ProgressBar::new(0)
                .with_style(plain_style())
                .with_prefix(id.to_string());
            multi.add(b)
        });
        match detail {
            Some(ProgressDetail {
                current: Some(cur),
                total: Some(total),
            }) if *total > 0 => {
                bar.set_style(bar_style());
                bar.set_length(*total as u64);
                bar.set_position((*cur).max(0) as u64);
            }
            _ => bar.set_style(plain_style()),
        }
        bar.set_message(status.to_string());
    }

    pub fn finish(&mut self) {
        for b in self.bars.values() {
            b.set_style(plain_style());
            b.finish();
        }
        let drew = !self.bars.is_empty() && self.multi.is_some();
        self.bars.clear();
        self.multi = None;
        if drew {
            // indicatif leaves the cursor at the end of the last bar's line.
            self.line("");
        }
        for l in std::mem::take(&mut self.trailer) {
            if !l.is_empty() {
                self.line(&l);
            }
        }
    }
}

fn plain_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Pulls `image`, showing progress on stderr (`run`) or stdout (`pull`) unless `quiet`.
pub async fn pull_image(docker: &Docker, image: &str, quiet: bool, to_stderr: bool) -> Result<()> {
    pull_with(docker, image, false, None, quiet, to_stderr).await
}

async fn pull_with(
    docker: &Docker,
    image: &str,
    all_tags: bool,
    platform: Option<String>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    let (name, tag) = split_tag(image);
    let tag = match (tag, all_tags, image.contains('@')) {
        (Some(t), _, _) => Some(t.to_string()),
        (None, false, false) => Some("latest".to_string()),
        _ => None,
    };
    let opts = CreateImageOptions {
        from_image: Some(name.to_string()),
        tag,
        platform: platform.unwrap_or_default(),
        ..Default::default()
    };
    let mut stream = docker.create_image(Some(opts), None, None);
    let mut progress = (!quiet).then(|| Progress::new(to_stderr));
    let result = async {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if let Some(p) = progress.as_mut() {
                p.update(
                    msg.id.as_deref(),
                    msg.status.as_deref().unwrap_or(""),
                    msg.progress_detail.as_ref(),
                );
            }
        }
        Ok(())
    }
    .await;
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    result
}

pub async fn pull(docker: &Docker, a: PullArgs) -> Result<i32> {
    pull_with(docker, &a.image, a.all_tags, a.platform, a.quiet, false).await?;
    if !a.all_tags {
        println!("{}", fully_qualified(&a.image));
    }
    Ok(0)
}

pub async fn push(docker: &Docker, a: PushArgs) -> Result<i32> {
    let (name, tag) = split_tag(&a.image);
    let tag = match (tag, a.all_tags) {
        (Some(t), _) => Some(t.to_string()),
        (None, false) => Some("latest".to_string()),
        (None, true) => None,
    };
    let opts = PushImageOptions {
        tag,
        ..Default::default()
    };
    let mut stream = docker.push_image(name, Some(opts), None);
    // The push stream's messages carry no layer id in bollard's model, so one bar follows the
    // current transfer and the status lines go above it.
    let tty = std::io::stdout().is_terminal() && !a.quiet;
    let bar = tty.then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
        b.enable_steady_tick(Duration::from_millis(200));
        b
    });
    let mut last = String::new();
    let result: Result<()> = async {
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            let status = msg.status.unwrap_or_default();
            if a.quiet {
                continue;
            }
            match (&bar, msg.progress_detail) {
                (
                    Some(b),
                    Some(ProgressDetail {
                        current: Some(cur),
                        total: Some(total),
                    }),
                ) if total > 0 => {
                    b.set_style(bar_style());
                    b.set_prefix("push");
                    b.set_length(total as u64);
                    b.set_position(cur.max(0) as u64);
                    b.set_message(status);
                }
                (Some(b), _) if status != last => {
                    b.println(&status);
                    last = status;
                }
                (None, _) if status != last => {
                    println!("{status}");
                    last = status;
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result?;
    if a.quiet {
        println!("{}", fully_qualified(&a.image));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_tag("busybox"), ("busybox", None));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", Some("v1"))
        );
        assert_eq!(split_tag("app@sha256:abc"), ("app@sha256:abc", None));
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("app@sha256:abc"), "app@sha256:abc");
        assert_eq!(
            fully_qualified("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(fully_qualified("me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(
            fully_qualified("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(fully_qualified("quay.io/x/y:z"), "quay.io/x/y:z");
    }
}
