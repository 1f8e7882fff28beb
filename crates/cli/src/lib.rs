//! The cloudlet command line: docker's verbs, as a client of the Docker Engine API that
//! `cloudlet server` serves. Each verb lives in the module named after its operation.

use anyhow::Result;
use bollard::{ClientVersion, Docker};

mod archive;
mod attach;
mod containers;
mod events;
mod exec;
mod images;
mod inspect;
mod logs;
mod mount_opts;
mod networks;
mod opts;
mod ps;
mod pull_push;
mod run;
mod stats;
mod system;
pub mod table;
mod tty;
pub mod units;
mod volumes;

pub use archive::{ImportArgs, LoadArgs, SaveArgs};
pub use attach::AttachArgs;
pub use containers::{
    ContainersArgs, KillArgs, PruneArgs, RenameArgs, RestartArgs, RmArgs, StopArgs, TopArgs,
};
pub use events::EventsArgs;
pub use exec::ExecArgs;
pub use images::{ImagePruneArgs, ImagesArgs, RmiArgs, TagArgs};
pub use inspect::{ImageInspectArgs, InspectArgs};
pub use logs::LogsArgs;
pub use networks::{NetworkCommand, PortArgs};
pub use opts::ContainerOpts;
pub use ps::PsArgs;
pub use pull_push::{PullArgs, PushArgs};
pub use run::{CreateArgs, RunArgs, StartArgs};
pub use stats::StatsArgs;
pub use system::{InfoArgs, VersionArgs};
pub use volumes::VolumeCommand;

/// Where the daemon listens unless `-H`/`DOCKER_HOST` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/cloudlet/docker.sock";

/// The oldest API version the engine serves; every request names it so that any engine of this
/// family answers without a version handshake.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 43,
};

/// Docker's client verbs.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Return low-level information on containers or images
    Inspect(InspectArgs),
    /// List images
    Images(ImagesArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Show the cloudlet version information
    Version(VersionArgs),
    /// Display system-wide information
    Info(InfoArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
}

/// `cloudlet image …`
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
}

/// `cloudlet container …`
#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(RestartArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(ContainersArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
}

impl From<ImageCommand> for Command {
    fn from(c: ImageCommand) -> Command {
        match c {
            ImageCommand::Ls(a) => Command::Images(a),
            ImageCommand::Rm(a) => Command::Rmi(a),
            ImageCommand::Prune(a) => Command::Image(ImageCommand::Prune(a)),
            ImageCommand::Inspect(a) => Command::Image(ImageCommand::Inspect(a)),
            ImageCommand::Pull(a) => Command::Pull(a),
            ImageCommand::Push(a) => Command::Push(a),
            ImageCommand::Tag(a) => Command::Tag(a),
            ImageCommand::Load(a) => Command::Load(a),
            ImageCommand::Save(a) => Command::Save(a),
            ImageCommand::Import(a) => Command::Import(a),
        }
    }
}

/// An exit status with the message (maybe empty) to print for it; the commands return it where
/// docker exits with something other than 1, or has printed its own errors already.
#[derive(Debug)]
pub(crate) struct Exit {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Ends the command with `code`; the caller has already printed what went wrong.
pub(crate) fn exit_code(code: i32) -> anyhow::Error {
    Exit {
        code,
        message: String::new(),
    }
    .into()
}

/// The API version to speak: `DOCKER_API_VERSION` (as the docker CLI reads it), else 1.43.
pub(crate) fn api_version() -> ClientVersion {
    std::env::var("DOCKER_API_VERSION")
        .ok()
        .and_then(|v| parse_api_version(&v))
        .unwrap_or(API_VERSION)
}

fn parse_api_version(v: &str) -> Option<ClientVersion> {
    let (major, minor) = v.trim().trim_start_matches('v').split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// Connects to `host`: `unix:///path` or a bare path (a unix socket), or `tcp://host:port`.
fn connect(host: &str) -> Result<Docker, bollard::errors::Error> {
    // Requests such as `wait`, `attach` or a slow pull may rightly take hours before headers come.
    const TIMEOUT: u64 = 365 * 24 * 3600;
    let version = api_version();
    if let Some(addr) = host.strip_prefix("tcp://").or(host.strip_prefix("http://")) {
        return Docker::connect_with_http(&format!("http://{addr}"), TIMEOUT, &version);
    }
    let path = host.strip_prefix("unix://").unwrap_or(host);
    Docker::connect_with_unix(path, TIMEOUT, &version)
}

/// True when the error means nothing answered at the daemon's address.
fn is_connect_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    match e {
        E::SocketNotFoundError(_) => true,
        E::HyperLegacyError { err } => err.is_connect(),
        E::IOError { err } => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
        ),
        _ => false,
    }
}

/// Docker's wording for an API error.
pub(crate) fn daemon_message(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { message, .. } => {
            format!("Error response from daemon: {}", message.trim_end())
        }
        E::DockerStreamError { error } => error.trim_end().to_string(),
        other => other.to_string(),
    }
}

/// The status code of an API error response, if it is one.
pub(crate) fn status_code(e: &anyhow::Error) -> Option<u16> {
    match e.downcast_ref::<bollard::errors::Error>() {
        Some(bollard::errors::Error::DockerResponseServerError { status_code, .. }) => {
            Some(*status_code)
        }
        _ => None,
    }
}

/// Prints an error once, docker's way, and picks the exit code.
fn report(err: &anyhow::Error, host: &str) -> i32 {
    for cause in err.chain() {
        // The reader went away (`| head`): nothing left to say to anyone.
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return 0;
            }
        }
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            if !exit.message.is_empty() {
                eprintln!("{}", exit.message);
            }
            return exit.code;
        }
        if let Some(e) = cause.downcast_ref::<bollard::errors::Error>() {
            if is_connect_error(e) {
                eprintln!("{}", cannot_connect(host));
            } else {
                eprintln!("{}", daemon_message(e));
            }
            return 1;
        }
    }
    eprintln!("cloudlet: {err:#}");
    1
}

fn cannot_connect(host: &str) -> String {
    format!(
        "cloudlet: cannot connect to the cloudlet daemon at {host}: is it running? \
         (start it with \"cloudlet server\" or \"make up\")"
    )
}

/// Turns a per-item failure into the line docker prints for it; connection failures abort.
pub(crate) fn item_error(err: anyhow::Error) -> Result<String> {
    match err.downcast_ref::<bollard::errors::Error>() {
        Some(e) if is_connect_error(e) => Err(err),
        Some(e) => Ok(daemon_message(e)),
        None => Ok(format!("{err:#}")),
    }
}

/// Runs one client command against the daemon at `host` (`-H`/`DOCKER_HOST`; default
/// [`DEFAULT_HOST`]) and returns the process exit code. Errors are printed here.
pub async fn execute(host: Option<String>, cmd: Command) -> Result<i32> {
    let host = host
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    let docker = match connect(&host) {
        Ok(d) => d,
        Err(e) if is_connect_error(&e) => {
            eprintln!("{}", cannot_connect(&host));
            return Ok(1);
        }
        Err(e) => {
            eprintln!("cloudlet: invalid host {host:?}: {e}");
            return Ok(1);
        }
    };
    match dispatch(&docker, cmd).await {
        Ok(code) => Ok(code),
        Err(e) => Ok(report(&e, &host)),
    }
}

async fn dispatch(d: &Docker, cmd: Command) -> Result<i32> {
    match cmd {
        Command::Run(a) => run::run(d, a).await,
        Command::Create(a) => run::create(d, a).await,
        Command::Start(a) => run::start(d, a).await,
        Command::Ps(a) => ps::ps(d, a).await,
        Command::Logs(a) => logs::logs(d, a).await,
        Command::Exec(a) => exec::exec(d, a).await,
        Command::Stop(a) => containers::stop(d, a).await,
        Command::Kill(a) => containers::kill(d, a).await,
        Command::Restart(a) => containers::restart(d, a).await,
        Command::Pause(a) => containers::pause(d, a).await,
        Command::Unpause(a) => containers::unpause(d, a).await,
        Command::Wait(a) => containers::wait(d, a).await,
        Command::Rm(a) => containers::rm(d, a).await,
        Command::Rename(a) => containers::rename(d, a).await,
        Command::Attach(a) => attach::attach(d, a).await,
        Command::Top(a) => containers::top(d, a).await,
        Command::Stats(a) => stats::stats(d, a).await,
        Command::Inspect(a) => inspect::inspect(d, a).await,
        Command::Images(a) => images::images(d, a).await,
        Command::Network(c) => networks::run(d, c).await,
        Command::Volume(c) => volumes::run(d, c).await,
        Command::Port(a) => networks::port(d, a).await,
        Command::Pull(a) => pull_push::pull(d, a).await,
        Command::Push(a) => pull_push::push(d, a).await,
        Command::Tag(a) => images::tag(d, a).await,
        Command::Rmi(a) => images::rmi(d, a).await,
        Command::Load(a) => archive::load(d, a).await,
        Command::Save(a) => archive::save(d, a).await,
        Command::Import(a) => archive::import(d, a).await,
        Command::Events(a) => events::events(d, a).await,
        Command::Version(a) => system::version(d, a).await,
        Command::Info(a) => system::info(d, a).await,
        Command::Image(ImageCommand::Prune(a)) => images::prune(d, a).await,
        Command::Image(ImageCommand::Inspect(a)) => inspect::image_inspect(d, a).await,
        Command::Image(other) => Box::pin(dispatch(d, other.into())).await,
        Command::Container(c) => match c {
            ContainerCommand::Ls(a) => ps::ps(d, a).await,
            ContainerCommand::Run(a) => run::run(d, a).await,
            ContainerCommand::Create(a) => run::create(d, a).await,
            ContainerCommand::Start(a) => run::start(d, a).await,
            ContainerCommand::Stop(a) => containers::stop(d, a).await,
            ContainerCommand::Kill(a) => containers::kill(d, a).await,
            ContainerCommand::Restart(a) => containers::restart(d, a).await,
            ContainerCommand::Pause(a) => containers::pause(d, a).await,
            ContainerCommand::Unpause(a) => containers::unpause(d, a).await,
            ContainerCommand::Wait(a) => containers::wait(d, a).await,
            ContainerCommand::Rm(a) => containers::rm(d, a).await,
            ContainerCommand::Rename(a) => containers::rename(d, a).await,
            ContainerCommand::Logs(a) => logs::logs(d, a).await,
            ContainerCommand::Exec(a) => exec::exec(d, a).await,
            ContainerCommand::Attach(a) => attach::attach(d, a).await,
            ContainerCommand::Top(a) => containers::top(d, a).await,
            ContainerCommand::Stats(a) => stats::stats(d, a).await,
            ContainerCommand::Inspect(a) => inspect::inspect(d, a).await,
            ContainerCommand::Prune(a) => containers::prune(d, a).await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Stands in for the binary's top-level parser.
    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    pub(crate) fn parse(args: &[&str]) -> Command {
        let mut v = vec!["cloudlet"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).unwrap().cmd
    }

    #[test]
    fn parser_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// The binary's shape: `server` beside the flattened client verbs, and a global `-H`.
    #[derive(clap::Parser, Debug)]
    struct Binary {
        #[arg(short = 'H', long, env = "CLOUDLET_TEST_HOST", global = true)]
        host: Option<String>,
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        Server,
        #[command(flatten)]
        Client(Command),
    }

    #[test]
    fn flattens_into_the_binary() {
        use clap::CommandFactory;
        Binary::command().debug_assert();
        let b = Binary::try_parse_from([
            "cloudlet",
            "-H",
            "unix:///x.sock",
            "run",
            "-h",
            "box",
            "busybox",
        ])
        .unwrap();
        assert_eq!(b.host.as_deref(), Some("unix:///x.sock"));
        assert!(matches!(b.cmd, Top::Client(Command::Run(_))));
        let b = Binary::try_parse_from(["cloudlet", "ps", "-H", "tcp://h:2375", "-a"]).unwrap();
        assert_eq!(b.host.as_deref(), Some("tcp://h:2375"));
        let b = Binary::try_parse_from(["cloudlet", "image", "prune", "-af"]).unwrap();
        assert!(matches!(
            b.cmd,
            Top::Client(Command::Image(ImageCommand::Prune(_)))
        ));
        assert!(matches!(
            Binary::try_parse_from(["cloudlet", "server"]).unwrap().cmd,
            Top::Server
        ));
    }

    #[test]
    fn command_stays_small() {
        // The binary puts `Command` in an enum beside small variants; clippy's
        // large_enum_variant fires past a 200-byte difference, hence the boxed run options.
        assert!(
            std::mem::size_of::<Command>() <= 200,
            "{}",
            std::mem::size_of::<Command>()
        );
    }

    #[test]
    fn groups_map_to_verbs() {
        assert!(matches!(
            parse(&["image", "ls", "-q"]),
            Command::Image(ImageCommand::Ls(_))
        ));
        assert!(matches!(
            parse(&["container", "ls", "-a"]),
            Command::Container(ContainerCommand::Ls(_))
        ));
        let c: Command = ImageCommand::Ls(ImagesArgs::default()).into();
        assert!(matches!(c, Command::Images(_)));
    }

    #[test]
    fn api_versions() {
        let v = parse_api_version("1.41").unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        assert!(parse_api_version("latest").is_none());
    }

    #[tokio::test]
    async fn refused_connection_is_one_line_and_exit_1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.sock");
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let code = execute(Some(path.display().to_string()), parse(&["images"]))
            .await
            .unwrap();
        assert_eq!(code, 1);
    }

    #[tokio::test]
    async fn no_daemon_is_one_line_and_exit_1() {
        let dir = tempfile::tempdir().unwrap();
        let sock = format!("unix://{}/none.sock", dir.path().display());
        let code = execute(Some(sock), parse(&["ps"])).await.unwrap();
        assert_eq!(code, 1);
    }
}
