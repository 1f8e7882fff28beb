//! HEALTHCHECK: runs the check as an exec on its interval and keeps the result in the
//! container's state, with `health_status` events, as docker does.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{Health, HealthStatusEnum, HealthcheckResult};

use crate::container::Status;
use crate::table::Entry;
use crate::Engine;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;
/// Docker keeps the last five results.
const KEEP: usize = 5;

fn ns(v: Option<i64>, default: Duration) -> Duration {
    match v {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The command a HEALTHCHECK test runs, or None for NONE / no check.
fn command(test: &[String]) -> Option<Vec<String>> {
    match test.first().map(String::as_str) {
        Some("CMD") => Some(test[1..].to_vec()),
        Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), test[1..].join(" ")]),
        _ => None,
    }
}

pub fn spawn(engine: Arc<Engine>, entry: Arc<Entry>) {
    let c = entry.get();
    let Some(hc) = c.config.healthcheck.clone() else {
        return;
    };
    let Some(cmd) = command(hc.test.as_deref().unwrap_or_default()) else {
        return;
    };
    let interval = ns(hc.interval, DEFAULT_INTERVAL);
    let timeout = ns(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = ns(hc.start_period, Duration::ZERO);
    let retries = hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES);
    let _ = entry.update(|c| {
        c.state.health = Some(Health {
            status: Some(HealthStatusEnum::STARTING),
            failing_streak: Some(0),
            log: Some(Vec::new()),
        })
    });
    let started = tokio::time::Instant::now();
    let mut phase = entry.phase.subscribe();
    let exits = phase.borrow().exits;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = phase.wait_for(|p| p.exits > exits) => return,
            }
            if entry.get().state.status != Status::Running {
                if entry.phase.borrow().exits > exits {
                    return;
                }
                continue;
            }
            let begun = chrono::Utc::now();
            let (code, output) = run_check(&engine, &entry, cmd.clone(), timeout).await;
            let in_start_period = started.elapsed() < start_period;
            let result = HealthcheckResult {
                start: Some(begun.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                end: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                exit_code: Some(code),
                output: Some(output),
            };
            let changed = entry.update(|c| {
                let h = c.state.health.get_or_insert_with(Health::default);
                let before = h.status;
                let log = h.log.get_or_insert_with(Vec::new);
                log.push(result);
                if log.len() > KEEP {
                    log.remove(0);
                }
                if code == 0 {
                    h.failing_streak = Some(0);
                    h.status = Some(HealthStatusEnum::HEALTHY);
                } else if !in_start_period {
                    let streak = h.failing_streak.unwrap_or(0) + 1;
                    h.failing_streak = Some(streak);
                    if streak >= retries {
                        h.status = Some(HealthStatusEnum::UNHEALTHY);
                    }
                }
                (before != h.status).then_some(h.status)
            });
            if let Ok(Some(Some(status))) = changed {
                let mut a = std::collections::HashMap::new();
                a.insert("name".to_string(), entry.get().name);
                engine
                    .events
                    .container(&format!("health_status: {status}"), &entry.id, a);
            }
        }
    });
}

/// Runs one check through the exec path and returns its exit code and (truncated) output.
async fn run_check(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    cmd: Vec<String>,
    timeout: Duration,
) -> (i64, String) {
    let config = bollard_stubs::models::ExecConfig {
        cmd: Some(cmd),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let exec = match crate::container_exec::create(engine, entry, config) {
        Ok(id) => match crate::container_exec::find(engine, &id) {
            Ok(e) => e,
            Err(e) => return (-1, e.message),
        },
        Err(e) => return (-1, e.message),
    };
    let outcome = tokio::time::timeout(timeout, async {
        let shim = crate::container_exec::prepare(engine, &exec).await?;
        let attach = shim.attach(false, true, true).await?;
        crate::container_exec::run(engine, &exec, shim).await?;
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(attach.output);
        while let Some(o) = futures::StreamExt::next(&mut stream).await {
            let (runtime::Output::Stdout(b) | runtime::Output::Stderr(b)) = o;
            if out.len() < 4096 {
                out.extend_from_slice(&b);
            }
        }
        let mut done = exec.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
        Ok::<_, crate::ApiError>((
            exec.state().exit_code.unwrap_or(-1),
            String::from_utf8_lossy(&out).into_owned(),
        ))
    })
    .await;
    engine
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&exec.id);
    match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => (-1, e.message),
        Err(_) => {
            if let Some(shim) = exec.state().shim {
                let _ = shim.signal(libc::SIGKILL).await;
            }
            (-1, format!("Health check exceeded timeout ({timeout:?})"))
        }
    }
}
