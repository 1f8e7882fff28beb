//! The client verbs alone, wired the way the `cloudlet` binary wires them; handy for trying the
//! CLI against any Docker-API daemon: `cargo run -p cloudlet-cli --example client -- -H unix:///tmp/ref.sock ps`.

use clap::Parser;

#[derive(clap::Parser)]
#[command(
    name = "cloudlet",
    about = "cloudlet's client verbs, without the daemon"
)]
struct Cli {
    /// Daemon socket to connect to
    #[arg(short = 'H', long, env = "DOCKER_HOST", global = true)]
    host: Option<String>,
    #[command(subcommand)]
    cmd: cli::Command,
}

#[tokio::main]
async fn main() {
    let c = Cli::parse();
    let code = match cli::execute(c.host, c.cmd).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cloudlet: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
