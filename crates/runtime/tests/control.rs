//! Pause/resume, exec, reconnect after dropping handles, stats and top.

mod common;

use std::time::Duration;

use common::Env;
use runtime::ExecRequest;

fn freezer_state(id: &str) -> String {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/freezer/cloudlet-test/{id}/freezer.state"
    ))
    .unwrap_or_default()
    .trim()
    .to_string()
}

#[tokio::test]
async fn pause_and_resume() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("pause", &["sleep", "1000"]).await;
    env.rt.pause(&id).unwrap();
    assert_eq!(freezer_state(&id), "FROZEN");
    assert!(env.rt.pause(&id).is_err());
    env.rt.resume(&id).unwrap();
    assert_eq!(freezer_state(&id), "THAWED");
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
}

#[tokio::test]
async fn exec_in_running_container() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("exec", &["sleep", "1000"]).await;
    let exit_file = env.dir.path().join("exec1.exit");
    let ex = env
        .rt
        .exec(ExecRequest {
            container_id: id.clone(),
            exec_id: "e1".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                "read x; echo hi $x $FOO; hostname; exit 7".into(),
            ],
            env: vec!["FOO=bar".into()],
            cwd: Some("/tmp".into()),
            user: None,
            tty: false,
            open_stdin: true,
            exit_file: exit_file.clone(),
        })
        .await
        .unwrap();
    assert_ne!(ex.pid(), shim.pid());
    let a = ex.attach(true, true, true).await.unwrap();
    let mut input = a.input.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, b"there\n")
        .await
        .unwrap();
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(out, "hi there bar\nbox\n");
    let st = common::wait(&ex).await;
    assert_eq!(st.code, 7);
    assert_eq!(
        runtime::read_exit_file(&exit_file).unwrap().unwrap().code,
        7
    );

    // A user exec, attached before it starts so no output is missed; and a missing executable.
    let ex = env
        .rt
        .create_exec(ExecRequest {
            container_id: id.clone(),
            exec_id: "e2".into(),
            args: vec!["sh".into(), "-c".into(), "id -u; id -g".into()],
            env: vec![],
            cwd: None,
            user: Some((65534, 65534, vec![])),
            tty: false,
            open_stdin: false,
            exit_file: env.dir.path().join("exec2.exit"),
        })
        .await
        .unwrap();
    let a = ex.attach(false, true, true).await.unwrap();
    ex.start().await.unwrap();
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(out, "65534\n65534\n");
    assert_eq!(common::wait(&ex).await.code, 0);
    let err = env
        .rt
        .exec(ExecRequest {
            container_id: id.clone(),
            exec_id: "e3".into(),
            args: vec!["nope".into()],
            env: vec![],
            cwd: None,
            user: None,
            tty: false,
            open_stdin: false,
            exit_file: env.dir.path().join("exec3.exit"),
        })
        .await
        .expect_err("exec of a missing binary fails");
    assert!(err.to_string().contains("nope"), "{err}");
    // The container is unaffected.
    // The failed exec's processes may take a moment to be gone.
    let mut pids = env.rt.pids(&id).unwrap();
    for _ in 0..50 {
        if pids.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        pids = env.rt.pids(&id).unwrap();
    }
    let desc: Vec<String> = pids
        .iter()
        .map(|p| {
            let st = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            format!("{p}: {st}")
        })
        .collect();
    assert_eq!(pids.len(), 1, "{desc:?}");
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
}

#[tokio::test]
async fn exec_with_tty() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("exectty", &["sleep", "1000"]).await;
    let ex = env
        .rt
        .exec(ExecRequest {
            container_id: id.clone(),
            exec_id: "t".into(),
            args: vec!["sh".into(), "-c".into(), "read x; tty".into()],
            env: vec![],
            cwd: None,
            user: None,
            tty: true,
            open_stdin: true,
            exit_file: env.dir.path().join("exectty.exit"),
        })
        .await
        .unwrap();
    let a = ex.attach(true, true, true).await.unwrap();
    let mut input = a.input.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, b"\n")
        .await
        .unwrap();
    let (out, _) = common::collect(a.output, Duration::from_secs(20)).await;
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(common::wait(&ex).await.code, 0);
    env.rt.kill(&id, 9).unwrap();
    common::wait(&shim).await;
}

#[tokio::test]
async fn shim_survives_dropped_handles_and_reconnects() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("reconnect", &["sleep", "1000"]).await;
    let pid = shim.pid();
    // The shim (the container's parent, as subreaper) is detached from us: not our child,
    // in its own session, so killing the daemon (even its whole process group) spares it.
    let field = |p: i32, n: usize| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace().nth(n).unwrap().parse().unwrap()
    };
    let shim_pid = field(pid, 1);
    assert_ne!(shim_pid, std::process::id() as i32);
    assert_ne!(field(shim_pid, 1), std::process::id() as i32);
    assert_eq!(
        field(shim_pid, 3),
        shim_pid,
        "the shim leads its own session"
    );
    drop(shim);
    // The daemon side holds nothing now; find the shim again.
    let again = env.rt.connect(&id).await.unwrap();
    assert_eq!(again.pid(), pid);
    assert!(env.rt.pids(&id).unwrap().contains(&pid));
    env.rt.kill(&id, 9).unwrap();
    let st = common::wait(&again).await;
    assert_eq!(st.code, 137);
    assert!(matches!(
        env.rt.connect(&id).await,
        Err(runtime::Error::NotRunning(_))
    ));
    env.rt.delete(&id).unwrap();
    env.rt.delete(&id).unwrap();
}

#[tokio::test]
async fn stats_and_pids() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env
        .run("stats", &["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = env.rt.stats(&id).unwrap();
    assert!(s.memory_usage > 0, "{s:?}");
    assert_eq!(s.pids_current, 3, "{s:?}");
    assert!(s.cpu_total_ns > 0, "{s:?}");
    assert!(s.system_cpu_ns > 0 && s.online_cpus > 0);
    assert_eq!(env.rt.pids(&id).unwrap().len(), 3);
    env.rt.kill(&id, 9).unwrap();
    assert_eq!(common::wait(&shim).await.code, 137);
    assert!(env.rt.stats(&id).is_err());
}

/// Prints the idle shim's resident memory (the target is ≤ 2 MiB in release builds); the
/// shim is the container init's parent, since it is the subreaper.
#[tokio::test]
async fn idle_shim_memory() {
    require_root!();
    let env = Env::new();
    let (id, shim) = env.run("rss", &["sleep", "1000"]).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", shim.pid())).unwrap();
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let shim_status = std::fs::read_to_string(format!("/proc/{ppid}/status")).unwrap();
    let rss = shim_status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap();
    let name = shim_status.lines().next().unwrap();
    eprintln!("idle shim {ppid} ({name}): {rss}");
    if let Ok(r) = std::fs::read_to_string(format!("/proc/{ppid}/smaps_rollup")) {
        eprintln!("{r}");
    }
    if std::env::var_os("SHIM_SMAPS").is_some() {
        let smaps = std::fs::read_to_string(format!("/proc/{ppid}/smaps")).unwrap_or_default();
        let mut cur = String::new();
        for l in smaps.lines() {
            if l.contains('-') && !l.starts_with(|c: char| c.is_ascii_uppercase()) {
                cur = l.to_string();
            } else if l.starts_with("Rss:") && !l.contains(" 0 kB") {
                eprintln!("{l:>20}  {cur}");
            }
        }
    }
    assert!(name.contains("cloudlet-runtim"), "{name}");
    env.rt.kill(&id, 9).unwrap();
    common::wait(&shim).await;
}

/// An exec gets the container's seccomp filter and exactly its capabilities (libcontainer's
/// own exec path would leave it unfiltered).
#[tokio::test]
async fn exec_is_confined_like_the_container() {
    require_root!();
    let env = Env::new();
    let (id, _shim) = env.run("confined", &["sleep", "1000"]).await;
    let exit_file = env.dir.path().join("exec-confined.exit");
    let ex = env
        .rt
        .create_exec(ExecRequest {
            container_id: id.clone(),
            exec_id: "c1".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                "for p in 1 self; do grep -E '^(Seccomp|CapEff|CapBnd|CapPrm):' /proc/$p/status; done"
                    .into(),
            ],
            env: vec![],
            cwd: None,
            user: None,
            tty: false,
            open_stdin: false,
            exit_file,
        })
        .await
        .unwrap();
    let a = ex.attach(false, true, true).await.unwrap();
    ex.start().await.unwrap();
    let (out, err) = common::collect(a.output, Duration::from_secs(20)).await;
    assert_eq!(common::wait(&ex).await.code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    let (init, exec) = lines.split_at(4);
    assert_eq!(
        init, exec,
        "the exec differs from the container's init:\n{out}"
    );
    assert!(init.contains(&"Seccomp:\t2"), "{out}");
    env.rt.kill(&id, 9).unwrap();
}
