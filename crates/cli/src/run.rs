//! `run`, `create` and `start`: create (pulling the image when it is missing), attach, start,
//! wait, with docker's exit codes (125 for our own failures, 126/127 when the command cannot run).

use anyhow::Result;
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;

use crate::attach::{follow_container, open};
use crate::opts::ContainerOpts;
use crate::{daemon_message, item_error, status_code, Exit};

/// Create and run a new container from an image.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub opts: Box<ContainerOpts>,
    /// IMAGE [COMMAND] [ARG...]: flags end at the image, as with docker.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// Create a new container.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print usage
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub opts: Box<ContainerOpts>,
    /// IMAGE [COMMAND] [ARG...]: flags end at the image, as with docker.
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// Start one or more stopped containers.
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl RunArgs {
    pub fn image(&self) -> &str {
        &self.args[0]
    }
    pub fn command(&self) -> &[String] {
        &self.args[1..]
    }
}

impl CreateArgs {
    pub fn image(&self) -> &str {
        &self.args[0]
    }
    pub fn command(&self) -> &[String] {
        &self.args[1..]
    }
}

/// Docker's status for a failed start: 127 when the command is missing, 126 when it cannot be
/// executed, 125 otherwise.
pub fn start_failure_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("not found in $PATH")
    {
        127
    } else if message.contains("permission denied") || message.contains("is a directory") {
        126
    } else {
        125
    }
}

/// Re-labels a daemon error with an exit code, keeping connection failures as they are.
fn with_code(err: anyhow::Error, code: impl Fn(&str) -> i32) -> anyhow::Error {
    match item_error(err) {
        Ok(message) => Exit {
            code: code(&message),
            message,
        }
        .into(),
        Err(e) => e,
    }
}

/// Creates the container, pulling its image first when the daemon does not have it.
async fn create_container(
    docker: &Docker,
    opts: &ContainerOpts,
    image: &str,
    cmd: &[String],
    attached: bool,
) -> Result<String> {
    let mut body = opts.to_body(image, cmd, attached).map_err(|e| Exit {
        code: 125,
        message: format!("cloudlet: {e:#}"),
    })?;
    // Attached `--rm` is done by this client after it has the exit code: with the daemon's
    // auto-remove, the container may be gone before `wait` can report it.
    if attached && opts.rm {
        if let Some(hc) = body.host_config.as_mut() {
            hc.auto_remove = None;
        }
    }
    let options = CreateContainerOptions {
        name: opts.name.clone(),
        platform: opts.platform.clone().unwrap_or_default(),
    };
    if opts.pull == "always" {
        crate::pull_push::pull_image(docker, image, opts.quiet, true)
            .await
            .map_err(|e| with_code(e, |_| 125))?;
    }
    let first = docker
        .create_container(Some(options.clone()), body.clone())
        .await;
    let created = match first {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::Error::from(e);
            if status_code(&e) != Some(404) || opts.pull == "never" {
                return Err(with_code(e, |_| 125));
            }
            eprintln!(
                "Unable to find image '{}' locally",
                crate::pull_push::with_default_tag(image)
            );
            crate::pull_push::pull_image(docker, image, opts.quiet, true)
                .await
                .map_err(|e| with_code(e, |_| 125))?;
            docker
                .create_container(Some(options), body)
                .await
                .map_err(|e| with_code(e.into(), |_| 125))?
        }
    };
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok(created.id)
}

async fn remove(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    if let Err(e) = docker.remove_container(id, Some(opts)).await {
        eprintln!("{}", daemon_message(&e));
    }
}

pub async fn run(docker: &Docker, a: RunArgs) -> Result<i32> {
    let opts = &a.opts;
    let id = create_container(docker, opts, a.image(), a.command(), !a.detach).await?;
    let start = || async {
        docker
            .start_container(&id, None::<StartContainerOptions>)
            .await
            .map_err(|e| with_code(e.into(), start_failure_code))
    };
    if a.detach {
        start().await?;
        println!("{id}");
        return Ok(0);
    }

    let stdin = opts.interactive;
    let streams = open(docker, &id, stdin, a.detach_keys.clone())
        .await
        .map_err(|e| with_code(e, |_| 125))?;
    if let Err(e) = start().await {
        if opts.rm {
            remove(docker, &id).await;
        }
        return Err(e);
    }
    let (pumped, code) = follow_container(docker, &id, streams, stdin, opts.tty, a.sig_proxy).await;
    // A detached container keeps running; only an exited one is removed.
    if opts.rm && matches!(code, Ok(Some(_))) {
        remove(docker, &id).await;
    }
    pumped?;
    Ok(code?.unwrap_or(0) as i32)
}

pub async fn create(docker: &Docker, a: CreateArgs) -> Result<i32> {
    let id = create_container(docker, &a.opts, a.image(), a.command(), false).await?;
    println!("{id}");
    Ok(0)
}

pub async fn start(docker: &Docker, a: StartArgs) -> Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(Exit {
                code: 1,
                message: "you cannot start and attach multiple containers at once".into(),
            }
            .into());
        }
        return start_attached(docker, &a).await;
    }
    let mut failed = Vec::new();
    for c in &a.containers {
        match docker
            .start_container(c, None::<StartContainerOptions>)
            .await
        {
            Ok(()) => println!("{c}"),
            Err(e) => {
                eprintln!("{}", item_error(e.into())?);
                failed.push(c.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        Err(Exit {
            code: 1,
            message: format!("Error: failed to start containers: {}", failed.join(", ")),
        }
        .into())
    }
}

async fn start_attached(docker: &Docker, a: &StartArgs) -> Result<i32> {
    let info = docker.inspect_container(&a.containers[0], None).await?;
    let id = info.id.clone().unwrap_or_else(|| a.containers[0].clone());
    let config = info.config.unwrap_or_default();
    let tty = config.tty.unwrap_or(false);
    let stdin = a.interactive && config.open_stdin.unwrap_or(false);
    let streams = open(docker, &id, stdin, a.detach_keys.clone()).await?;
    docker
        .start_container(&id, None::<StartContainerOptions>)
        .await
        .map_err(|e| with_code(e.into(), |_| 1))?;
    let (pumped, exit) = follow_container(docker, &id, streams, stdin, tty, true).await;
    pumped?;
    Ok(exit?.unwrap_or(0) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::parse;
    use crate::Command;

    #[test]
    fn run_flags_and_command() {
        let Command::Run(r) = parse(&[
            "run",
            "-d",
            "--rm",
            "-h",
            "box",
            "-m",
            "32m",
            "-e",
            "A=1",
            "--name",
            "web",
            "-p",
            "8080:80",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ]) else {
            panic!()
        };
        assert!(r.detach && r.opts.rm);
        assert_eq!(r.opts.hostname.as_deref(), Some("box"));
        assert_eq!(r.opts.memory.as_deref(), Some("32m"));
        assert_eq!(r.image(), "busybox");
        assert_eq!(r.command(), ["sh", "-c", "echo -n hi"]);
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let Command::Run(r) = parse(&["run", "-it", "busybox", "ls", "-l", "-d"]) else {
            panic!()
        };
        assert!(r.opts.interactive && r.opts.tty && !r.detach);
        assert_eq!(r.command(), ["ls", "-l", "-d"]);
        let Command::Run(r) = parse(&["run", "busybox", "-d"]) else {
            panic!()
        };
        assert!(!r.detach);
        assert_eq!(r.command(), ["-d"]);
        let Command::Create(c) = parse(&["create", "--net", "none", "busybox"]) else {
            panic!()
        };
        assert_eq!(c.opts.network, ["none"]);
        assert!(c.command().is_empty());
    }

    #[test]
    fn start_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(start_failure_code("cgroup failure"), 125);
    }
}
