//! Builds OCI runtime specs with Docker's defaults and writes bundles.
//!
//! The spec is assembled as JSON and parsed into `oci_spec::runtime::Spec`, which keeps the
//! defaults readable next to the OCI field names.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::error::IoContext;
use crate::{seccomp, user, Error};

/// Where `--init` finds tini inside the host, and where it appears in the container.
pub const TINI_HOST_PATH: &str = "/usr/bin/tini-static";
pub const INIT_PATH: &str = "/sbin/docker-init";

/// First host id of the subordinate range containers' root maps to with `userns`.
/// The engine must chown the rootfs (and writable volumes) into this range.
pub const USERNS_HOST_ID: u32 = 100_000;
/// Size of the subordinate id range.
pub const USERNS_SIZE: u32 = 65_536;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A `--ulimit name=soft:hard`; `name` as docker spells it ("nofile", "nproc", ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// Mount propagation: `rprivate` (when empty), `private`, `rshared`, `shared`, `rslave`
    /// or `slave`.
    pub propagation: String,
}

/// The container's network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// A fresh namespace with only loopback.
    #[default]
    New,
    /// The host's namespace.
    Host,
    /// Join an existing namespace (e.g. `/var/run/netns/x` or `/proc/<pid>/ns/net`).
    Path(PathBuf),
}

/// What docker's `create` options say about the container's process and sandbox.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// docker `--user`: "", "name", "uid", "uid:gid", "name:group".
    pub user: String,
    pub hostname: String,
    pub tty: bool,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp_unconfined: bool,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    /// `--tmpfs path:options`.
    pub tmpfs: Vec<(String, String)>,
    pub binds: Vec<Bind>,
    pub init: bool,
    pub userns: bool,
    pub network: NetworkMode,
    /// e.g. `/cloudlet/<id>`.
    pub cgroup_path: String,
    pub rootfs: PathBuf,
    pub shm_size: Option<i64>,
}

/// Docker's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, in number order (for `--privileged` and `ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// (path, major, minor) of the character devices every container gets.
const DEFAULT_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Normalizes "net_admin" / "CAP_NET_ADMIN" to "CAP_NET_ADMIN"; "ALL" stays "ALL".
fn normalize_cap(name: &str) -> Result<String, Error> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::InvalidArgument(format!(
            "unknown capability {name:?}"
        )))
    }
}

/// Applies docker's `--cap-add` / `--cap-drop` rules to the default set.
fn capabilities(opts: &SpecOptions) -> Result<Vec<String>, Error> {
    if opts.privileged {
        return Ok(ALL_CAPS.iter().map(|s| s.to_string()).collect());
    }
    let add = opts
        .cap_add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = opts
        .cap_drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    for c in add {
        if c != "ALL" && !caps.contains(&c) {
            caps.push(c);
        }
    }
    Ok(caps)
}

fn rlimit_type(name: &str) -> Result<&'static str, Error> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "core" => "RLIMIT_CORE",
        "cpu" => "RLIMIT_CPU",
        "data" => "RLIMIT_DATA",
        "fsize" => "RLIMIT_FSIZE",
        "locks" => "RLIMIT_LOCKS",
        "memlock" => "RLIMIT_MEMLOCK",
        "msgqueue" => "RLIMIT_MSGQUEUE",
        "nice" => "RLIMIT_NICE",
        "nofile" => "RLIMIT_NOFILE",
        "nproc" => "RLIMIT_NPROC",
        "rss" => "RLIMIT_RSS",
        "rtprio" => "RLIMIT_RTPRIO",
        "rttime" => "RLIMIT_RTTIME",
        "sigpending" => "RLIMIT_SIGPENDING",
        "stack" => "RLIMIT_STACK",
        "as" => "RLIMIT_AS",
        other => return Err(Error::InvalidArgument(format!("unknown ulimit {other:?}"))),
    })
}

/// rlimits: the host's own NOFILE (never above its hard limit), overridden by `--ulimit`.
fn rlimits(opts: &SpecOptions) -> Result<Vec<Value>, Error> {
    let mut out: Vec<(String, u64, u64)> = Vec::new();
    if let Ok((soft, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        out.push(("RLIMIT_NOFILE".into(), soft.min(hard), hard));
    }
    for u in &opts.ulimits {
        if u.soft > u.hard {
            return Err(Error::InvalidArgument(format!(
                "ulimit {}: soft limit {} is above hard limit {}",
                u.name, u.soft, u.hard
            )));
        }
        let t = rlimit_type(&u.name)?.to_string();
        out.retain(|(n, _, _)| *n != t);
        out.push((t, u.soft, u.hard));
    }
    Ok(out
        .into_iter()
        .map(|(t, soft, hard)| json!({"type": t, "soft": soft, "hard": hard}))
        .collect())
}

/// Docker's `--tmpfs` options: nosuid,nodev,noexec unless the user says otherwise.
fn tmpfs_options(user: &str) -> Vec<String> {
    let mut opts: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    for o in user.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let opposite = match o {
            "exec" => Some("noexec"),
            "noexec" => Some("exec"),
            "suid" => Some("nosuid"),
            "nosuid" => Some("suid"),
            "dev" => Some("nodev"),
            "nodev" => Some("dev"),
            _ => None,
        };
        if let Some(opp) = opposite {
            opts.retain(|x| x != opp);
        }
        if !opts.iter().any(|x| x == o) {
            opts.push(o.to_string());
        }
    }
    opts
}

fn mounts(opts: &SpecOptions) -> Result<Vec<Value>, Error> {
    let shm = opts.shm_size.filter(|s| *s > 0).unwrap_or(64 << 20);
    let sys_opts: Vec<&str> = if opts.privileged {
        vec!["nosuid", "noexec", "nodev", "rw"]
    } else {
        vec!["nosuid", "noexec", "nodev", "ro"]
    };
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    if opts.init {
        if !Path::new(TINI_HOST_PATH).exists() {
            return Err(Error::NotFound(format!(
                "{TINI_HOST_PATH} (needed by --init; install Debian's tini package)"
            )));
        }
        m.push(json!({"destination": INIT_PATH, "type": "bind", "source": TINI_HOST_PATH, "options": ["bind", "ro", "nosuid", "nodev"]}));
    }
    for (path, o) in &opts.tmpfs {
        if !path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "tmpfs {path:?}: path must be absolute"
            )));
        }
        m.push(json!({"destination": path, "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options(o)}));
    }
    for b in &opts.binds {
        if !b.destination.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "bind {}: destination must be absolute",
                b.destination
            )));
        }
        let propagation = match b.propagation.as_str() {
            "" => "rprivate",
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave") => p,
            p => {
                return Err(Error::InvalidArgument(format!(
                    "bind {}: invalid propagation {p:?}",
                    b.destination
                )))
            }
        };
        let mut o = vec!["rbind", propagation];
        if b.read_only {
            o.push("ro");
        }
        m.push(
            json!({"destination": b.destination, "type": "bind", "source": b.source, "options": o}),
        );
    }
    Ok(m)
}

fn resources(opts: &SpecOptions) -> Result<Value, Error> {
    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    if opts.privileged {
        devices = vec![json!({"allow": true, "access": "rwm"})];
    } else {
        let allow = |t: &str, major: Option<i64>, minor: Option<i64>, access: &str| json!({"allow": true, "type": t, "major": major, "minor": minor, "access": access});
        devices.push(allow("c", None, None, "m"));
        devices.push(allow("b", None, None, "m"));
        for (_, major, minor) in DEFAULT_DEVICES {
            devices.push(allow("c", Some(*major), Some(*minor), "rwm"));
        }
        devices.push(allow("c", Some(136), None, "rwm")); // pty slaves
        devices.push(allow("c", Some(5), Some(2), "rwm")); // /dev/ptmx
        devices.push(allow("c", Some(10), Some(200), "rwm")); // /dev/net/tun
    }
    let mut r = json!({ "devices": devices });
    let mut memory = serde_json::Map::new();
    if let Some(limit) = opts.memory.filter(|m| *m > 0) {
        if limit < 6 << 20 {
            return Err(Error::InvalidArgument(
                "minimum memory limit allowed is 6MB".into(),
            ));
        }
        memory.insert("limit".into(), json!(limit));
        // Docker: swap defaults to twice the memory limit; -1 means unlimited swap.
        let swap = match opts.memory_swap {
            Some(s) if s > 0 => {
                if s < limit {
                    return Err(Error::InvalidArgument(
                        "minimum memoryswap limit should be larger than memory limit".into(),
                    ));
                }
                s
            }
            Some(-1) => -1,
            _ => limit * 2,
        };
        memory.insert("swap".into(), json!(swap));
    }
    if !memory.is_empty() {
        r["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(n) = opts.nano_cpus.filter(|n| *n > 0) {
        let period: u64 = 100_000;
        let quota = (n as i128 * period as i128 / 1_000_000_000) as i64;
        if quota < 1000 {
            return Err(Error::InvalidArgument(format!(
                "nano cpus {n}: range of cpus is too small"
            )));
        }
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(quota));
    }
    if let Some(s) = opts.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if !cpu.is_empty() {
        r["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = opts.pids_limit.filter(|p| *p != 0) {
        r["pids"] = json!({"limit": if p < 0 { -1 } else { p }});
    }
    Ok(r)
}

/// Builds the runtime spec for `opts` with Docker's defaults.
pub fn build(opts: &SpecOptions) -> Result<Spec, Error> {
    if opts.args.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    let user = user::resolve(&opts.rootfs, &opts.user)?;
    let caps = capabilities(opts)?;

    let mut env = opts.env.clone();
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !opts.hostname.is_empty() && !has(&env, "HOSTNAME") {
        env.insert(0, format!("HOSTNAME={}", opts.hostname));
    }
    if opts.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }

    let mut args = opts.args.clone();
    if opts.init {
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    let cwd = if opts.cwd.is_empty() {
        "/"
    } else {
        opts.cwd.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match &opts.network {
        NetworkMode::New => namespaces.push(json!({"type": "network"})),
        NetworkMode::Host => {}
        NetworkMode::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
    }

    let devices: Vec<Value> = DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| {
            json!({"path": path, "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0})
        })
        .collect();

    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources(opts)?,
        "cgroupsPath": opts.cgroup_path,
        "devices": devices,
    });
    if !opts.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        if !opts.seccomp_unconfined {
            linux["seccomp"] = seccomp::default_profile(&caps);
        }
    }
    // A shared bind needs a shared root (as docker sets it); the root is a recursive slave
    // by default, which slave binds need. The spec's values have no "r": libcontainer
    // applies them recursively.
    let shared = ["shared", "rshared"];
    if opts
        .binds
        .iter()
        .any(|b| shared.contains(&b.propagation.as_str()))
    {
        linux["rootfsPropagation"] = json!("shared");
    }
    if opts.userns {
        linux["namespaces"]
            .as_array_mut()
            .expect("namespaces is an array")
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": USERNS_HOST_ID, "size": USERNS_SIZE}]);
        linux["uidMappings"] = map.clone();
        linux["gidMappings"] = map;
    }

    let mut process = json!({
        "terminal": opts.tty,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
        },
        "rlimits": rlimits(opts)?,
    });
    // Only when set: libcontainer loads seccomp after dropping capabilities whenever the
    // field is present, even false, and that fails without no_new_privs.
    if opts.no_new_privileges {
        process["noNewPrivileges"] = json!(true);
    }
    if !user.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(user.additional_gids);
    }
    if opts.tty {
        process["consoleSize"] = json!({"height": 24, "width": 80});
    }

    let mut doc = json!({
        "ociVersion": "1.0.2",
        "root": {"path": opts.rootfs, "readonly": opts.read_only},
        "process": process,
        "mounts": mounts(opts)?,
        "linux": linux,
    });
    if !opts.hostname.is_empty() {
        doc["hostname"] = json!(opts.hostname);
    }
    if let Some(hooks) = propagation_hooks(opts) {
        doc["hooks"] = hooks;
    }
    serde_json::from_value(doc).map_err(|e| Error::InvalidArgument(format!("runtime spec: {e}")))
}

/// Bind propagation, from a `createContainer` hook (in the container's mount namespace,
/// before pivot_root): libcontainer makes binds with open_tree/move_mount and drops the
/// propagation options, so a bind of a source in a shared peer group would come out a
/// slave of it. Only where that differs from what was asked (the default is docker's
/// rprivate): a hook is a process. `mount` is util-linux's, which every Debian has.
fn propagation_hooks(opts: &SpecOptions) -> Option<Value> {
    let mount = ["/usr/bin/mount", "/bin/mount"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let mut mounts = None;
    let hooks: Vec<Value> = opts
        .binds
        .iter()
        .filter_map(|b| {
            let wanted = match b.propagation.as_str() {
                "" | "rprivate" | "private" => {
                    // Files (every container's /etc/hosts, resolv.conf, hostname) have no
                    // mounts beneath them to keep out: no hook, and no mountinfo read.
                    if !b.source.is_dir() {
                        return None;
                    }
                    let mounts = mounts.get_or_insert_with(mount_points);
                    if !on_shared_mount(&b.source, mounts) {
                        return None;
                    }
                    if b.propagation.is_empty() {
                        "rprivate"
                    } else {
                        b.propagation.as_str()
                    }
                }
                p => p,
            };
            let at = opts.rootfs.join(b.destination.trim_start_matches('/'));
            Some(json!({"path": mount, "args": ["mount", format!("--make-{wanted}"), at]}))
        })
        .collect();
    (!hooks.is_empty()).then(|| json!({ "createContainer": hooks }))
}

/// The mount points of this namespace, and whether each is in a shared peer group.
fn mount_points() -> Vec<(PathBuf, bool)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let point = PathBuf::from(f.get(4)?.replace("\\040", " "));
            let mut optional = f.get(6..)?.iter().take_while(|x| **x != "-");
            Some((point, optional.any(|o| o.starts_with("shared:"))))
        })
        .collect()
}

/// Whether `path` is on a shared mount: the closest mount point above it is shared.
fn on_shared_mount(path: &Path, mounts: &[(PathBuf, bool)]) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    mounts
        .iter()
        .filter(|(m, _)| path.starts_with(m))
        .max_by_key(|(m, _)| m.components().count())
        .is_some_and(|(_, shared)| *shared)
}

/// Writes `dir/config.json` atomically (see [`write_atomic`]).
pub fn write_bundle(dir: &Path, spec: &Spec) -> Result<(), Error> {
    std::fs::create_dir_all(dir).ctx(|| format!("create bundle {}", dir.display()))?;
    let data = serde_json::to_vec_pretty(spec)
        .map_err(|e| Error::InvalidArgument(format!("serialize runtime spec: {e}")))?;
    write_atomic(&dir.join("config.json"), &data)
}

/// Writes `path` atomically: a temp file beside it, renamed over it. Readers see the old or
/// the new content, also after this process is killed; nothing is forced to disk, since
/// nothing the runtime writes outlives the machine's uptime (containers do not survive a
/// power loss, and bundles are written anew for each start).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.ctx(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SpecOptions {
        SpecOptions {
            args: vec!["sh".into()],
            rootfs: "/nonexistent".into(),
            cgroup_path: "/cloudlet/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults() {
        let s = build(&opts()).unwrap();
        let p = s.process().as_ref().unwrap();
        let env = p.env().as_ref().unwrap();
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.iter().any(|e| e == "HOME=/"));
        let caps = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/kcore"));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 6);
    }

    #[test]
    fn bind_propagation_comes_from_a_hook() {
        let mut o = opts();
        let bind = |propagation: &str| Bind {
            source: "/nonexistent-src".into(),
            destination: "/mnt".into(),
            read_only: false,
            propagation: propagation.into(),
        };
        o.binds = vec![bind("rshared"), bind("")];
        let s = build(&o).unwrap();
        let hooks = s
            .hooks()
            .as_ref()
            .unwrap()
            .create_container()
            .clone()
            .unwrap();
        // The default bind needs one only where its source is a directory on a shared
        // mount; a missing source is neither.
        assert_eq!(hooks.len(), 1);
        let args = hooks[0].args().clone().unwrap();
        assert_eq!(args, ["mount", "--make-rshared", "/nonexistent/mnt"]);
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(linux.rootfs_propagation().as_deref(), Some("shared"));
        o.binds = vec![bind("sideways")];
        assert!(build(&o).is_err());
    }

    #[test]
    fn caps_and_limits() {
        let mut o = opts();
        o.cap_add = vec!["net_admin".into()];
        o.cap_drop = vec!["CAP_CHOWN".into()];
        o.memory = Some(32 << 20);
        o.nano_cpus = Some(1_500_000_000);
        o.pids_limit = Some(20);
        o.network = NetworkMode::Host;
        let s = build(&o).unwrap();
        let caps = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let b = caps.bounding().as_ref().unwrap();
        assert_eq!(b.len(), DEFAULT_CAPS.len());
        let r = s.linux().as_ref().unwrap().resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 20);
        assert_eq!(
            s.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .len(),
            5
        );
        o.cap_add = vec!["bogus".into()];
        assert!(build(&o).is_err());
    }

    #[test]
    fn tmpfs_opts() {
        assert_eq!(
            tmpfs_options("exec,size=1m"),
            vec!["nosuid", "nodev", "exec", "size=1m"]
        );
    }

    #[test]
    fn bundle_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let s = build(&opts()).unwrap();
        write_bundle(d.path(), &s).unwrap();
        let back = Spec::load(d.path().join("config.json")).unwrap();
        assert_eq!(
            back.process().as_ref().unwrap().args(),
            s.process().as_ref().unwrap().args()
        );
    }
}
