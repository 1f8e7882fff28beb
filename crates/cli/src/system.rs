//! `version` and `info`.

use anyhow::Result;
use bollard::Docker;
use serde_json::{json, Value};

use crate::table::Template;
use crate::units::bytes_size;

/// Show the version information.
#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

/// Display system-wide information.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

fn client() -> Value {
    let v = crate::api_version();
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": format!("{}.{}", v.major_version, v.minor_version),
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
    })
}

/// Go's names for architectures, which docker prints.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn version(d: &Docker, a: VersionArgs) -> Result<i32> {
    let client = client();
    if a.format.is_none() {
        println!("Client:");
        println!(" Version:           {}", s(&client, "Version"));
        println!(" API version:       {}", s(&client, "ApiVersion"));
        println!(
            " OS/Arch:           {}/{}",
            s(&client, "Os"),
            s(&client, "Arch")
        );
        println!();
    }
    let server = serde_json::to_value(d.version().await?)?;
    if let Some(f) = a.format {
        let t = Template::parse(&f)?;
        println!("{}", t.render(&json!({"Client": client, "Server": server})));
        return Ok(0);
    }
    match server["Platform"]["Name"]
        .as_str()
        .filter(|p| !p.is_empty())
    {
        Some(platform) => println!("Server: {platform}"),
        None => println!("Server:"),
    }
    println!(" Engine:");
    println!("  Version:          {}", s(&server, "Version"));
    println!(
        "  API version:      {} (minimum version {})",
        s(&server, "ApiVersion"),
        s(&server, "MinAPIVersion")
    );
    for (label, key) in [
        ("Go version:", "GoVersion"),
        ("Git commit:", "GitCommit"),
        ("Built:", "BuildTime"),
    ] {
        let mut v = s(&server, key);
        if key == "BuildTime" {
            // Docker shows the build time as Go's ANSIC layout.
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&v) {
                v = t.format("%a %b %e %H:%M:%S %Y").to_string();
            }
        }
        if !v.is_empty() {
            println!("  {label:<17} {v}");
        }
    }
    println!(
        "  OS/Arch:          {}/{}",
        s(&server, "Os"),
        s(&server, "Arch")
    );
    println!(
        "  Experimental:     {}",
        server["Experimental"].as_bool().unwrap_or(false)
    );
    for c in server["Components"].as_array().into_iter().flatten() {
        let name = c["Name"].as_str().unwrap_or("");
        if name == "Engine" {
            continue;
        }
        println!(" {name}:");
        println!("  Version:          {}", s(c, "Version"));
    }
    Ok(0)
}

pub async fn info(d: &Docker, a: InfoArgs) -> Result<i32> {
    let i = serde_json::to_value(d.info().await?)?;
    if let Some(f) = a.format {
        println!("{}", Template::parse(&f)?.render(&i));
        return Ok(0);
    }
    println!("Client:");
    println!(" Version:    {}", env!("CARGO_PKG_VERSION"));
    println!(" Context:    default");
    println!();
    println!("Server:");
    println!(" Containers: {}", s(&i, "Containers"));
    println!("  Running: {}", s(&i, "ContainersRunning"));
    println!("  Paused: {}", s(&i, "ContainersPaused"));
    println!("  Stopped: {}", s(&i, "ContainersStopped"));
    println!(" Images: {}", s(&i, "Images"));
    for (label, key) in [
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Default Runtime", "DefaultRuntime"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ] {
        let v = s(&i, key);
        if !v.is_empty() {
            println!(" {label}: {v}");
        }
    }
    if let Some(m) = i["MemTotal"].as_f64() {
        println!(" Total Memory: {}", bytes_size(m));
    }
    for (label, key) in [
        ("Name", "Name"),
        ("ID", "ID"),
        ("Docker Root Dir", "DockerRootDir"),
        ("Debug Mode", "Debug"),
        ("Experimental", "ExperimentalBuild"),
        ("Live Restore Enabled", "LiveRestoreEnabled"),
    ] {
        let v = s(&i, key);
        if !v.is_empty() {
            println!(" {label}: {v}");
        }
    }
    for w in i["Warnings"].as_array().into_iter().flatten() {
        if let Some(w) = w.as_str() {
            eprintln!("{w}");
        }
    }
    Ok(0)
}
