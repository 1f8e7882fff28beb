//! Verbs that act on existing containers: stop, kill, restart, pause, unpause, wait, rm, rename,
//! top, prune.

use std::future::Future;
use std::io::{BufRead, Write};

use anyhow::Result;
use bollard::query_parameters::{
    KillContainerOptions, PruneContainersOptions, RemoveContainerOptions, RenameContainerOptions,
    RestartContainerOptions, StopContainerOptions, TopOptions,
};
use bollard::Docker;

use crate::attach::wait_exit;
use crate::table::write_aligned;
use crate::units::human_size;
use crate::{exit_code, item_error};

/// One or more containers.
#[derive(clap::Args, Debug)]
pub struct ContainersArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Stop (or restart) one or more running containers.
#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub time: Option<i32>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Kill one or more running containers.
#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `restart` takes `stop`'s flags: the stop half is a stop.
pub type RestartArgs = StopArgs;

/// Remove one or more containers.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short, long)]
    pub link: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Rename a container.
#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

/// Display the running processes of a container.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// Remove all stopped containers.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// Applies `f` to each container, printing what it returns, and docker's error line for each
/// failure; exits 1 if any failed.
async fn each<F, Fut>(containers: &[String], f: F) -> Result<i32>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let mut failed = false;
    for c in containers {
        match f(c.clone()).await {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{}", item_error(e)?);
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

pub async fn stop(d: &Docker, a: StopArgs) -> Result<i32> {
    each(&a.containers, |c| {
        let opts = StopContainerOptions {
            t: a.time,
            signal: a.signal.clone(),
        };
        async move {
            d.stop_container(&c, Some(opts)).await?;
            Ok(c)
        }
    })
    .await
}

pub async fn kill(d: &Docker, a: KillArgs) -> Result<i32> {
    each(&a.containers, |c| {
        let opts = KillContainerOptions {
            signal: a.signal.clone(),
        };
        async move {
            d.kill_container(&c, Some(opts)).await?;
            Ok(c)
        }
    })
    .await
}

pub async fn restart(d: &Docker, a: RestartArgs) -> Result<i32> {
    each(&a.containers, |c| {
        let opts = RestartContainerOptions {
            t: a.time,
            signal: a.signal.clone(),
        };
        async move {
            d.restart_container(&c, Some(opts)).await?;
            Ok(c)
        }
    })
    .await
}

pub async fn pause(d: &Docker, a: ContainersArgs) -> Result<i32> {
    each(&a.containers, |c| async move {
        d.pause_container(&c).await?;
        Ok(c)
    })
    .await
}

pub async fn unpause(d: &Docker, a: ContainersArgs) -> Result<i32> {
    each(&a.containers, |c| async move {
        d.unpause_container(&c).await?;
        Ok(c)
    })
    .await
}

pub async fn wait(d: &Docker, a: ContainersArgs) -> Result<i32> {
    each(&a.containers, |c| async move {
        Ok(wait_exit(d, &c, "not-running").await?.to_string())
    })
    .await
}

pub async fn rm(d: &Docker, a: RmArgs) -> Result<i32> {
    each(&a.containers, |c| {
        let opts = RemoveContainerOptions {
            force: a.force,
            v: a.volumes,
            link: a.link,
        };
        async move {
            d.remove_container(&c, Some(opts)).await?;
            Ok(c)
        }
    })
    .await
}

pub async fn rename(d: &Docker, a: RenameArgs) -> Result<i32> {
    let opts = RenameContainerOptions {
        name: a.new_name.clone(),
    };
    d.rename_container(&a.container, opts).await?;
    Ok(0)
}

pub async fn top(d: &Docker, a: TopArgs) -> Result<i32> {
    let mut opts = TopOptions::default();
    if !a.ps_args.is_empty() {
        opts.ps_args = a.ps_args.join(" ");
    }
    let r = d.top_processes(&a.container, Some(opts)).await?;
    let mut lines = vec![r.titles.unwrap_or_default()];
    lines.extend(r.processes.unwrap_or_default());
    // docker top aligns with a wider minimum column than its other tables.
    write_aligned(&mut std::io::stdout().lock(), &lines, 20, 3)?;
    Ok(0)
}

/// Asks on the terminal; anything but y/yes declines.
pub fn confirm(warning: &str) -> bool {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// `--filter k=v` flags as the API's filter map.
pub fn filters(items: &[String]) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut m: std::collections::HashMap<String, Vec<String>> = Default::default();
    for f in items {
        let Some((k, v)) = f.split_once('=') else {
            anyhow::bail!("bad format of filter (expected name=value): {f}");
        };
        m.entry(k.trim().to_ascii_lowercase())
            .or_default()
            .push(v.to_string());
    }
    Ok(m)
}

pub async fn prune(d: &Docker, a: PruneArgs) -> Result<i32> {
    if !a.force && !confirm("WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let opts = PruneContainersOptions {
        filters: Some(filters(&a.filter)?),
    };
    let r = d.prune_containers(Some(opts)).await?;
    let deleted = r.containers_deleted.unwrap_or_default();
    if !deleted.is_empty() {
        println!("Deleted Containers:");
        for id in deleted {
            println!("{id}");
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

    #[test]
    fn filter_flags() {
        let f = filters(&[
            "status=exited".into(),
            "label=a=b".into(),
            "status=created".into(),
        ])
        .unwrap();
        assert_eq!(f["status"], ["exited", "created"]);
        assert_eq!(f["label"], ["a=b"]);
        assert!(filters(&["nonsense".into()]).is_err());
    }

    #[test]
    fn top_takes_ps_options() {
        let crate::Command::Top(t) = crate::tests::parse(&["top", "web", "-o", "pid,comm"]) else {
            panic!()
        };
        assert_eq!(t.container, "web");
        assert_eq!(t.ps_args, ["-o", "pid,comm"]);
    }
}
