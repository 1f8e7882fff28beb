//! stop, kill, restart, pause, unpause and wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::container::Status;
use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Parses "SIGTERM", "TERM", "15" and "SIGRTMIN+3" style names, as docker's signal flag.
pub fn parse_signal(s: &str) -> ApiResult<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(off) = name
        .strip_prefix("SIGRTMIN+")
        .and_then(|n| n.parse::<i32>().ok())
    {
        return Ok(libc::SIGRTMIN() + off);
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| ApiError::bad_request(format!("Invalid signal: {s}")))
}

/// Stops with the container's stop signal, then SIGKILL after the timeout (seconds; -1 waits
/// forever). `Ok(false)` when it was not running (docker answers 304).
pub async fn stop(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    signal: Option<String>,
    timeout: Option<i64>,
) -> ApiResult<bool> {
    let _op = entry.op.lock().await;
    stop_locked(engine, entry, signal, timeout).await
}

pub(crate) async fn stop_locked(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    signal: Option<String>,
    timeout: Option<i64>,
) -> ApiResult<bool> {
    let c = entry.get();
    if c.state.status == Status::Restarting {
        entry.update(|c| {
            c.state.manually_stopped = true;
            c.state.status = Status::Exited;
        })?;
        return Ok(true);
    }
    if !c.state.status.is_running() {
        return Ok(false);
    }
    entry.update(|c| c.state.manually_stopped = true)?;
    let sig_name = signal
        .or(c.config.stop_signal.clone())
        .unwrap_or_else(|| "SIGTERM".into());
    let sig = parse_signal(&sig_name)?;
    let timeout = timeout
        .or(c.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let mut phase = entry.phase.subscribe();
    let exits = phase.borrow().exits;
    if c.state.status == Status::Paused {
        // A frozen process cannot handle its signal; thaw it first, as docker does.
        let _ = engine.runtime.resume(&c.id);
    }
    send(engine, &c.id, sig)?;
    let exited = async {
        let _ = phase.wait_for(|p| p.exits > exits || !p.running).await;
    };
    let finished = if timeout < 0 {
        exited.await;
        true
    } else {
        tokio::time::timeout(Duration::from_secs(timeout as u64), exited)
            .await
            .is_ok()
    };
    if !finished {
        tracing::info!(id = %c.id, "container did not stop within {timeout}s; killing it");
        send(engine, &c.id, libc::SIGKILL)?;
        let mut phase = entry.phase.subscribe();
        let _ = phase.wait_for(|p| p.exits > exits || !p.running).await;
    }
    engine.events.container("stop", &c.id, name_attr(&c.name));
    Ok(true)
}

fn send(engine: &Arc<Engine>, id: &str, sig: i32) -> ApiResult<()> {
    let mut a = HashMap::new();
    a.insert("signal".to_string(), sig.to_string());
    match engine.runtime.kill(id, sig) {
        Ok(()) => {
            engine.events.container("kill", id, a);
            Ok(())
        }
        // It exited meanwhile: that is what we wanted.
        Err(runtime::Error::NotRunning(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn kill(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    signal: Option<String>,
) -> ApiResult<()> {
    let c = entry.get();
    if !c.state.status.is_running() {
        return Err(ApiError::conflict(format!(
            "cannot kill container: {}: container {} is not running",
            c.name, c.id
        )));
    }
    let sig = parse_signal(signal.as_deref().unwrap_or("SIGKILL"))?;
    if sig == libc::SIGKILL || sig == libc::SIGTERM || sig == libc::SIGINT {
        entry.update(|c| c.state.manually_stopped = true)?;
    }
    send(engine, &c.id, sig)
}

pub async fn restart(
    engine: &Arc<Engine>,
    entry: &Arc<Entry>,
    signal: Option<String>,
    timeout: Option<i64>,
) -> ApiResult<()> {
    let _op = entry.op.lock().await;
    stop_locked(engine, entry, signal, timeout).await?;
    crate::container_start::start_locked(engine, entry).await?;
    entry.update(|c| c.state.manually_stopped = false)?;
    let c = entry.get();
    engine
        .events
        .container("restart", &c.id, name_attr(&c.name));
    Ok(())
}

pub async fn pause(engine: &Arc<Engine>, entry: &Arc<Entry>) -> ApiResult<()> {
    let _op = entry.op.lock().await;
    let c = entry.get();
    match c.state.status {
        Status::Running => {}
        Status::Paused => {
            return Err(ApiError::conflict(format!(
                "container {} is already paused",
                c.id
            )))
        }
        _ => {
            return Err(ApiError::conflict(format!(
                "container {} is not running",
                c.id
            )))
        }
    }
    let rt = engine.runtime.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || rt.pause(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    entry.update(|c| c.state.status = Status::Paused)?;
    engine.events.container("pause", &c.id, name_attr(&c.name));
    Ok(())
}

pub async fn unpause(engine: &Arc<Engine>, entry: &Arc<Entry>) -> ApiResult<()> {
    let _op = entry.op.lock().await;
    let c = entry.get();
    if c.state.status != Status::Paused {
        return Err(ApiError::conflict(format!(
            "container {} is not paused",
            c.id
        )));
    }
    let rt = engine.runtime.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || rt.resume(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    entry.update(|c| c.state.status = Status::Running)?;
    engine
        .events
        .container("unpause", &c.id, name_attr(&c.name));
    Ok(())
}

/// `POST /containers/{id}/wait`: "not-running" (default), "next-exit" or "removed".
/// The condition is checked and the current state taken now, so that a wait sent before
/// `start` (as the docker CLI does) counts the exit of that start; the returned future gives
/// the exit code and the error, if any.
pub fn wait(
    entry: &Arc<Entry>,
    condition: &str,
) -> ApiResult<impl std::future::Future<Output = (i64, Option<String>)> + Send + 'static> {
    if !matches!(condition, "" | "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!(
            "invalid condition: \"{condition}\""
        )));
    }
    let mut phase = entry.phase.subscribe();
    let start = phase.borrow().clone();
    let (entry, condition) = (entry.clone(), condition.to_string());
    Ok(async move {
        let r = match condition.as_str() {
            "next-exit" => phase.wait_for(|p| p.exits > start.exits || p.removed).await,
            "removed" => phase.wait_for(|p| p.removed).await,
            _ => phase.wait_for(|p| !p.running || p.removed).await,
        }
        .map(|p| p.clone());
        // A closed channel means the entry was dropped: removed.
        let p = r.unwrap_or_else(|_| entry.phase.borrow().clone());
        (p.exit_code, p.error)
    })
}

fn name_attr(name: &str) -> HashMap<String, String> {
    HashMap::from([("name".to_string(), name.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
