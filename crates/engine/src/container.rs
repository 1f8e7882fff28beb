//! A container's record: what it was created with and what state it is in, persisted as
//! `containers/<id>/config.v2.json` on every change so a restarted daemon finds it again.

use std::io::Write;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, Health, HostConfig};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// Whether a process of the container is alive (paused processes are).
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub oom_killed: bool,
    /// Set by `stop`/`kill` from a user, so restart policies leave the container alone.
    pub manually_stopped: bool,
    pub health: Option<Health>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without docker's leading `/`.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    /// The create request merged with the image's defaults, as docker stores it.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub restart_count: i64,
    /// The networks it joins, by name, with their endpoint settings (docker's
    /// `NetworkSettings.Networks`, config part).
    #[serde(default)]
    pub networks: std::collections::HashMap<String, bollard_stubs::models::EndpointSettings>,
    /// Its mounts, resolved at create (volumes named, anonymous ones made).
    #[serde(default)]
    pub mounts: Vec<crate::container_mounts::MountSpec>,
    /// Layers were prepared and the rootfs mounted at least once.
    #[serde(default)]
    pub has_been_started: bool,
}

/// Where a container's files live.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(containers_dir: &Path, id: &str) -> Self {
        Self {
            dir: containers_dir.join(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("config.v2.json")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("fs").join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("fs").join("work")
    }
    pub fn log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}-json.log"))
    }
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn exec_exit_file(&self, exec_id: &str) -> PathBuf {
        self.dir.join("exec").join(format!("{exec_id}.exit.json"))
    }
}

impl Container {
    /// Writes the record atomically and durably: temp file, fsync, rename.
    pub fn save(&self, paths: &Paths) -> std::io::Result<()> {
        self.write(paths, true)
    }

    /// Writes the record atomically; `durable` forces it to disk first. Run-state changes
    /// need not be durable: after a power loss every container has exited anyway, and the
    /// daemon finds that out when it starts.
    pub fn write(&self, paths: &Paths, durable: bool) -> std::io::Result<()> {
        std::fs::create_dir_all(&paths.dir)?;
        let tmp = paths.dir.join(".config.v2.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, paths.record())?;
        Ok(())
    }

    pub fn load(paths: &Paths) -> std::io::Result<Container> {
        let bytes = std::fs::read(paths.record())?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    pub fn tty(&self) -> bool {
        self.config.tty.unwrap_or(false)
    }

    /// Docker's status line: "Up 3 seconds", "Exited (0) 5 seconds ago", "Created".
    pub fn status_line(&self, now: DateTime<Utc>) -> String {
        let s = &self.state;
        match s.status {
            Status::Created => "Created".into(),
            Status::Running | Status::Paused => {
                let since = s.started_at.unwrap_or(now);
                let mut line = format!("Up {}", human_duration(now - since));
                if s.status == Status::Paused {
                    line.push_str(" (Paused)");
                }
                if let Some(h) = s.health.as_ref().and_then(|h| h.status) {
                    let h = h.to_string();
                    if h == "starting" {
                        line.push_str(" (health: starting)");
                    } else if !h.is_empty() && h != "none" {
                        line.push_str(&format!(" ({h})"));
                    }
                }
                line
            }
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                s.exit_code,
                human_duration(now - s.finished_at.unwrap_or(now))
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Exited | Status::Dead => match s.finished_at {
                Some(t) => format!("Exited ({}) {} ago", s.exit_code, human_duration(now - t)),
                None => format!("Exited ({})", s.exit_code),
            },
        }
    }
}

/// go-units' HumanDuration, which docker's status lines use.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let minutes = secs / 60;
    let hours = minutes / 60;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(
            human_duration(chrono::TimeDelta::seconds(0)),
            "Less than a second"
        );
        assert_eq!(human_duration(chrono::TimeDelta::seconds(3)), "3 seconds");
        assert_eq!(
            human_duration(chrono::TimeDelta::seconds(90)),
            "About a minute"
        );
        assert_eq!(human_duration(chrono::TimeDelta::hours(5)), "5 hours");
        assert_eq!(human_duration(chrono::TimeDelta::days(3)), "3 days");
    }
}
