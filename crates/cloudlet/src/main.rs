//! cloudlet: a cloud platform in one binary.
//!
//! This file only parses the command line: `server` (server.rs) runs the engine and the
//! Kubernetes API server, `shim` is the per-container process the runtime re-executes,
//! `secrets-encrypt` (secrets_encrypt.rs) asks the server to rotate its Secret encryption
//! key, and every other verb is a Docker API client from the `cli` crate.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

mod secrets_encrypt;
mod server;
use server::ServerArgs;

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
    /// Run the cloudlet daemon: the node engine (Docker Engine API) and the Kubernetes API.
    Server(Box<ServerArgs>),
    /// Show or rotate the key that encrypts Secrets at rest (asks the running server).
    SecretsEncrypt(secrets_encrypt::Args),
    #[command(flatten)]
    Client(cli::Command),
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The shim must start before any thread exists: libcontainer forks from it.
    if argv.get(1).is_some_and(|a| a == "shim") {
        std::process::exit(runtime::shim::main(argv));
    }
    let args = Args::parse();
    let code = match args.command {
        Command::Server(s) => server::run(*s),
        Command::SecretsEncrypt(a) => secrets_encrypt::run(a),
        Command::Client(cmd) => client(args.host, cmd),
    };
    std::process::exit(code);
}

fn client(host: Option<String>, cmd: cli::Command) -> i32 {
    block_on(tokio::runtime::Builder::new_current_thread(), async {
        match cli::execute(host, cmd).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("cloudlet: {e:#}");
                1
            }
        }
    })
}

/// Runs `f` to completion on a runtime from `builder`; its value is the exit code.
fn block_on(
    mut builder: tokio::runtime::Builder,
    f: impl std::future::Future<Output = i32>,
) -> i32 {
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("cloudlet: start the async runtime: {e}");
            1
        }
    }
}
