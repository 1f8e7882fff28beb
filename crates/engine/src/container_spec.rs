//! The runtime's view of a container: docker's create options translated to an OCI bundle
//! and a shim request, and the rootfs they run on.

use std::path::PathBuf;

use runtime::spec::{Bind, NetworkMode, SpecOptions, Ulimit};

use crate::container::{Container, Paths};
use crate::container_network::{self, Plan};
use crate::error::{ApiError, ApiResult};

/// Per-container log rotation: docker's json-file defaults are unbounded; we keep 3 × 10 MB
/// unless `--log-opt max-size/max-file` say otherwise.
const LOG_MAX_SIZE: u64 = 10 * 1000 * 1000;
const LOG_MAX_FILES: u32 = 3;

pub(crate) fn log_options(c: &Container) -> (u64, u32) {
    let opts = c
        .host_config
        .log_config
        .as_ref()
        .and_then(|l| l.config.clone())
        .unwrap_or_default();
    let size = opts
        .get("max-size")
        .and_then(|s| parse_size(s))
        .unwrap_or(LOG_MAX_SIZE);
    let files = opts
        .get("max-file")
        .and_then(|s| s.parse().ok())
        .unwrap_or(LOG_MAX_FILES);
    (size, files.max(1))
}

/// "10m", "1g", "512k", "100" → bytes (docker's RAMInBytes for log sizes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

/// `--userns=private` (or `auto`) asks for a user namespace; docker's "host" or nothing
/// shares the host's.
fn userns(c: &Container) -> bool {
    matches!(
        c.host_config.userns_mode.as_deref(),
        Some("private") | Some("auto")
    )
}

/// The runtime's view of a container: docker's create options, translated. `join` is the
/// namespace of the container whose network it shares (`--network container:…`).
fn spec_options(c: &Container, paths: &Paths, join: Option<&PathBuf>) -> ApiResult<SpecOptions> {
    let hc = &c.host_config;
    let hostname = hostname(c);
    let mut env = c.config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.insert(1.min(env.len()), format!("HOSTNAME={hostname}"));
    }
    if c.tty() && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let (mut binds, mount_tmpfs) = crate::container_mounts::for_spec(c);
    binds.extend(ETC_FILES.iter().map(|(file, dest)| Bind {
        source: paths.dir.join(file),
        destination: (*dest).into(),
        read_only: false,
        propagation: String::new(),
    }));
    let mut no_new_privileges = false;
    let mut seccomp_unconfined = false;
    for opt in hc.security_opt.iter().flatten() {
        match opt.replace('=', ":").as_str() {
            "no-new-privileges" | "no-new-privileges:true" => no_new_privileges = true,
            "no-new-privileges:false" => no_new_privileges = false,
            "seccomp:unconfined" => seccomp_unconfined = true,
            o if o.starts_with("label") || o.starts_with("apparmor") => {}
            o => {
                return Err(ApiError::bad_request(format!(
                    "Invalid --security-opt: {o:?}"
                )))
            }
        }
    }
    let network = match (container_network::mode(hc), join) {
        (container_network::Mode::Host, _) => NetworkMode::Host,
        (_, Some(ns)) => NetworkMode::Path(ns.clone()),
        _ => NetworkMode::New,
    };
    let mut args = vec![c.path.clone()];
    args.extend(c.args.iter().cloned());
    Ok(SpecOptions {
        args,
        env,
        cwd: c.config.working_dir.clone().unwrap_or_else(|| "/".into()),
        user: c.config.user.clone().unwrap_or_default(),
        hostname,
        tty: c.tty(),
        read_only: hc.readonly_rootfs.unwrap_or(false),
        privileged: hc.privileged.unwrap_or(false),
        cap_add: hc.cap_add.clone().unwrap_or_default(),
        cap_drop: hc.cap_drop.clone().unwrap_or_default(),
        no_new_privileges,
        seccomp_unconfined,
        memory: hc.memory.filter(|m| *m > 0),
        memory_swap: hc.memory_swap.filter(|m| *m != 0),
        nano_cpus: hc.nano_cpus.filter(|n| *n > 0),
        cpu_shares: hc.cpu_shares.filter(|n| *n > 0).map(|n| n as u64),
        pids_limit: hc.pids_limit.filter(|n| *n > 0),
        ulimits: hc
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit {
                name: u.name.clone().unwrap_or_default(),
                soft: u.soft.unwrap_or(0) as u64,
                hard: u.hard.unwrap_or(0) as u64,
            })
            .collect(),
        tmpfs: hc
            .tmpfs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(mount_tmpfs)
            .collect(),
        binds,
        init: hc.init.unwrap_or(false),
        userns: userns(c),
        network,
        cgroup_path: format!("/cloudlet/{}", c.id),
        rootfs: paths.rootfs(),
        shm_size: hc.shm_size.filter(|s| *s > 0),
    })
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, written per container and bind-mounted,
/// as docker does: (file in the container's directory, path in the container).
const ETC_FILES: [(&str, &str); 3] = [
    ("hostname", "/etc/hostname"),
    ("hosts", "/etc/hosts"),
    ("resolv.conf", "/etc/resolv.conf"),
];

fn hostname(c: &Container) -> String {
    c.config
        .hostname
        .clone()
        .unwrap_or_else(|| c.id[..12].to_string())
}

/// Writes the [`ETC_FILES`] the spec binds from the host (rewritten in place, so a container
/// made ahead of demand sees its claimant's).
fn write_host_files(c: &Container, paths: &Paths, plan: &Plan) -> ApiResult<()> {
    let hostname = hostname(c);
    let (hosts, resolv) = container_network::etc_files(c, plan, &hostname);
    let contents = [format!("{hostname}\n"), hosts, resolv];
    for ((file, _), content) in ETC_FILES.iter().zip(contents) {
        std::fs::write(paths.dir.join(file), content)?;
    }
    Ok(())
}

/// Mounts the container's rootfs and writes its bundle and host files; blocking. Returns
/// the bundle directory.
pub(crate) fn prepare(
    images: &image::ImageStore,
    volumes: Option<&volume::VolumeStore>,
    c: &Container,
    paths: &Paths,
    plan: &Plan,
) -> ApiResult<PathBuf> {
    let img = images.resolve(&c.image_id)?;
    for d in [paths.upper(), paths.work(), paths.rootfs(), paths.bundle()] {
        std::fs::create_dir_all(&d)?;
    }
    // In a user namespace the container's root is host uid USERNS_HOST_ID: it gets layers
    // owned accordingly, and owns its writable layer.
    let layers = if userns(c) {
        let shift = runtime::spec::USERNS_HOST_ID;
        for d in [paths.upper(), paths.work()] {
            std::os::unix::fs::chown(&d, Some(shift), Some(shift))?;
        }
        images.layers_shifted(&img, shift)?
    } else {
        images.layers(&img)?
    };
    runtime::rootfs::unmount(&paths.rootfs())?;
    runtime::rootfs::mount_overlay(&layers, &paths.upper(), &paths.work(), &paths.rootfs())?;
    if let Some(volumes) = volumes {
        crate::container_mounts::prepare(volumes, c, &paths.rootfs())?;
    }
    write_bundle(c, paths, plan)?;
    let _ = std::fs::remove_file(paths.exit_file());
    Ok(paths.bundle())
}

/// Writes the host files and the bundle's config.json for `c` (over a mounted rootfs).
pub(crate) fn write_bundle(c: &Container, paths: &Paths, plan: &Plan) -> ApiResult<()> {
    write_host_files(c, paths, plan)?;
    let spec = runtime::spec::build(&spec_options(c, paths, plan.join.as_ref())?)?;
    runtime::spec::write_bundle(&paths.bundle(), &spec)?;
    Ok(())
}

/// What the shim is asked to do for `c`.
pub(crate) fn start_request(
    c: &Container,
    paths: &Paths,
    deferred_process: bool,
) -> ApiResult<runtime::StartRequest> {
    let (max_size, max_files) = log_options(c);
    Ok(runtime::StartRequest {
        id: c.id.clone(),
        bundle: paths.bundle(),
        tty: c.tty(),
        open_stdin: c.config.open_stdin.unwrap_or(false),
        stdin_once: c.config.stdin_once.unwrap_or(false),
        log: Some(runtime::LogConfig {
            path: paths.log(&c.id),
            max_size,
            max_files,
        }),
        exit_file: paths.exit_file(),
        runtime_class: crate::container_create::runtime_class(&c.host_config)?,
        deferred_process,
    })
}

/// Everything the runtime is told about `c` except its command and environment: two
/// containers with equal shapes differ only in what a deferred process brings at start.
/// Networking is set up after creation, in the container's own namespace, so it is not part
/// of the shape; containers that join another's namespace are never made ahead of demand.
pub(crate) fn shape(c: &Container, paths: &Paths) -> ApiResult<serde_json::Value> {
    let spec = runtime::spec::build(&spec_options(c, paths, None)?)?;
    let mut spec = serde_json::to_value(&spec).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(p) = spec.get_mut("process").and_then(|p| p.as_object_mut()) {
        p.remove("args");
        p.remove("env");
        // Capability sets serialize from hash sets, in no fixed order.
        for set in p
            .get_mut("capabilities")
            .and_then(|c| c.as_object_mut())
            .into_iter()
            .flat_map(|c| c.values_mut())
        {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    let req = start_request(c, paths, true)?;
    Ok(serde_json::json!({
        "spec": spec,
        "tty": req.tty,
        "stdin": [req.open_stdin, req.stdin_once],
        "log": req.log.map(|l| (l.max_size, l.max_files)),
        "class": format!("{:?}", req.runtime_class),
    }))
}

/// The command and environment of `c`, for a container made ahead of demand.
pub(crate) fn process(c: &Container, paths: &Paths) -> ApiResult<runtime::proto::ProcessOverride> {
    let opts = spec_options(c, paths, None)?;
    Ok(runtime::proto::ProcessOverride {
        args: opts.args,
        env: opts.env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10m"), Some(10 * 1024 * 1024));
        assert_eq!(parse_size("512k"), Some(512 * 1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
}
