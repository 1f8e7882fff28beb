//! `logs`.

use anyhow::Result;
use bollard::query_parameters::LogsOptions;
use bollard::Docker;
use futures::StreamExt;

use crate::units::parse_timestamp;

/// Fetch the logs of a container.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    pub container: String,
}

pub async fn logs(d: &Docker, a: LogsArgs) -> Result<i32> {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let ts = |v: &Option<String>| -> Result<i32> {
        Ok(match v {
            Some(s) => parse_timestamp(s, now)? as i32,
            None => 0,
        })
    };
    let opts = LogsOptions {
        follow: a.follow,
        stdout: true,
        stderr: true,
        since: ts(&a.since)?,
        until: ts(&a.until)?,
        timestamps: a.timestamps,
        tail: a.tail.clone(),
    };
    let mut stream = d.logs(&a.container, Some(opts));
    while let Some(item) = stream.next().await {
        crate::attach::write_output(item?)?;
    }
    Ok(0)
}
