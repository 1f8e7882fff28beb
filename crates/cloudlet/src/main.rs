//! cloudlet: a cloud platform in one binary.
//!
//! This file only parses the command line and wires crates together: `server` runs the
//! engine, `shim` is the per-container process the runtime re-executes, and every other verb
//! is a Docker API client from the `cli` crate.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cloudlet",
    version,
    about = "A cloud platform in one binary",
    disable_help_subcommand = true
)]
struct Args {
    /// Daemon socket to connect to (unix:///path or tcp://host:port), as docker's -H.
    #[arg(short = 'H', long = "host", env = "DOCKER_HOST", global = true)]
    host: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloudlet daemon: the node engine and its Docker Engine API.
    Server(ServerArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where images, containers and logs are kept.
    #[arg(long, default_value = "/var/lib/cloudlet")]
    data_dir: PathBuf,
    /// Where volatile runtime state (shim sockets) is kept.
    #[arg(long, default_value = "/run/cloudlet")]
    exec_root: PathBuf,
    /// The Docker API socket.
    #[arg(long, default_value = "/run/cloudlet/docker.sock")]
    socket: PathBuf,
    /// A registry to reach over plain HTTP (host[:port]); loopback always is. Repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The shim must start before any thread exists: libcontainer forks from it.
    if argv.get(1).is_some_and(|a| a == "shim") {
        std::process::exit(runtime::shim::main(argv));
    }
    let args = Args::parse();
    let code = match args.command {
        Command::Server(s) => server(s),
        Command::Client(cmd) => client(args.host, cmd),
    };
    std::process::exit(code);
}

fn server(s: ServerArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let shim_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cloudlet: cannot find my own executable: {e}");
            return 1;
        }
    };
    let config = engine::Config {
        data_dir: s.data_dir,
        exec_root: s.exec_root,
        socket: s.socket,
        insecure_registries: s.insecure_registries,
        shim_exe,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudlet: start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(async {
        tokio::select! {
            r = engine::serve(config) => r,
            _ = shutdown_signal() => Ok(()),
        }
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cloudlet server: {e}");
            1
        }
    }
}

/// SIGINT or SIGTERM end the daemon; containers keep running under their shims.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down; containers keep running");
}

fn client(host: Option<String>, cmd: cli::Command) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudlet: start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(cli::execute(host, cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cloudlet: {e:#}");
            1
        }
    }
}
