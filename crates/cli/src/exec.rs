//! `exec`: a process in a running container, attached like `run`, ending with its exit code.

use std::time::Duration;

use anyhow::{Context, Result};
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;

use crate::attach::pump;
use crate::opts::{expand_env, parse_env_file};
use crate::tty::ResizeTarget;

/// Execute a command in a running container.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub async fn exec(d: &Docker, a: ExecArgs) -> Result<i32> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
        env.extend(parse_env_file(&text, |k| std::env::var(k).ok())?);
    }
    env.extend(
        a.env
            .iter()
            .map(|e| expand_env(e, |k| std::env::var(k).ok())),
    );
    let attached = !a.detach;
    let config = CreateExecOptions::<String> {
        attach_stdin: Some(a.interactive && attached),
        attach_stdout: Some(attached),
        attach_stderr: Some(attached),
        tty: Some(a.tty),
        detach_keys: a.detach_keys.clone(),
        env: (!env.is_empty()).then_some(env),
        cmd: Some(a.command.clone()),
        privileged: Some(a.privileged),
        user: a.user.clone(),
        working_dir: a.workdir.clone(),
    };
    let id = d.create_exec(&a.container, config).await?.id;
    let start = StartExecOptions {
        detach: a.detach,
        tty: a.tty,
        output_capacity: None,
    };
    match d.start_exec(&id, Some(start)).await? {
        StartExecResults::Detached => return Ok(0),
        StartExecResults::Attached { output, input } => {
            pump(
                d,
                output,
                input,
                a.interactive,
                a.tty,
                Some(ResizeTarget::Exec(id.clone())),
            )
            .await?;
        }
    }
    // The stream can end a moment before the daemon records the exit code.
    for _ in 0..100 {
        let info = d.inspect_exec(&id).await?;
        if info.running != Some(true) {
            return Ok(info.exit_code.unwrap_or(0) as i32);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use crate::tests::parse;
    use crate::Command;

    #[test]
    fn exec_flags() {
        let Command::Exec(e) = parse(&["exec", "-it", "-e", "A=1", "web", "sh", "-c", "ls -l"])
        else {
            panic!()
        };
        assert!(e.interactive && e.tty && !e.detach);
        assert_eq!(e.container, "web");
        assert_eq!(e.command, ["sh", "-c", "ls -l"]);
    }
}
