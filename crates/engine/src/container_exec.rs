//! `docker exec`: processes started in a running container, each with its own shim.

use std::sync::{Arc, Mutex};

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use tokio::sync::watch;

use crate::container::Status;
use crate::error::{ApiError, ApiResult};
use crate::table::Entry;
use crate::Engine;

pub struct ExecEntry {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub state: Mutex<ExecState>,
    /// Flips to true when the process has exited.
    pub done: watch::Sender<bool>,
}

#[derive(Default, Clone)]
pub struct ExecState {
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
    pub shim: Option<runtime::Shim>,
}

impl ExecEntry {
    pub fn state(&self) -> ExecState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// `POST /containers/{id}/exec`.
pub fn create(engine: &Arc<Engine>, entry: &Arc<Entry>, config: ExecConfig) -> ApiResult<String> {
    let c = entry.get();
    match c.state.status {
        Status::Running => {}
        Status::Paused => {
            return Err(ApiError::conflict(format!(
                "Container {} is paused, unpause the container before exec",
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
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    let id = crate::engine::new_id();
    let exec = Arc::new(ExecEntry {
        id: id.clone(),
        container_id: c.id.clone(),
        config,
        state: Mutex::new(ExecState::default()),
        done: watch::channel(false).0,
    });
    engine
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), exec);
    Ok(id)
}

pub fn find(engine: &Engine, id: &str) -> ApiResult<Arc<ExecEntry>> {
    engine
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
}

/// Creates the exec's process (not yet running): the caller attaches, then starts it.
pub async fn prepare(engine: &Arc<Engine>, exec: &Arc<ExecEntry>) -> ApiResult<runtime::Shim> {
    {
        let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.started {
            return Err(ApiError::conflict(format!(
                "Exec command {} has already run",
                exec.id
            )));
        }
        st.started = true;
    }
    let entry = engine.containers.find(&exec.container_id)?;
    let c = entry.get();
    if c.state.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let cfg = &exec.config;
    let mut env = c.config.env.clone().unwrap_or_default();
    for e in cfg.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let user_spec = cfg
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .or(c.config.user.clone());
    let user = match user_spec.filter(|u| !u.is_empty()) {
        Some(u) => {
            let r = runtime::resolve_user(&entry.paths.rootfs(), &u)?;
            Some((r.uid, r.gid, r.additional_gids))
        }
        None => None,
    };
    let exit_file = entry.paths.exec_exit_file(&exec.id);
    if let Some(dir) = exit_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let req = runtime::ExecRequest {
        container_id: c.id.clone(),
        exec_id: exec.id.clone(),
        args: cfg.cmd.clone().unwrap_or_default(),
        env,
        cwd: cfg
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .or(c.config.working_dir.clone()),
        user,
        tty: cfg.tty.unwrap_or(false),
        open_stdin: cfg.attach_stdin.unwrap_or(false),
        exit_file,
    };
    let shim = engine.runtime.create_exec(req).await.inspect_err(|_| {
        exec.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exit_code = Some(126);
        exec.done.send_replace(true);
    })?;
    Ok(shim)
}

/// Runs a prepared exec and records its exit when it ends.
pub async fn run(
    engine: &Arc<Engine>,
    exec: &Arc<ExecEntry>,
    shim: runtime::Shim,
) -> ApiResult<()> {
    let pid = shim.start().await?;
    {
        let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running = true;
        st.pid = pid as i64;
        st.shim = Some(shim.clone());
    }
    let mut attrs = std::collections::HashMap::new();
    attrs.insert("execID".to_string(), exec.id.clone());
    engine.events.container(
        &format!(
            "exec_start: {}",
            exec.config.cmd.clone().unwrap_or_default().join(" ")
        ),
        &exec.container_id,
        attrs,
    );
    let exec = exec.clone();
    let engine = engine.clone();
    tokio::spawn(async move {
        let code = match shim.wait().await {
            Ok(s) => s.code as i64,
            Err(_) => 126,
        };
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = false;
            st.exit_code = Some(code);
            st.shim = None;
        }
        exec.done.send_replace(true);
        let mut attrs = std::collections::HashMap::new();
        attrs.insert("execID".to_string(), exec.id.clone());
        attrs.insert("exitCode".to_string(), code.to_string());
        engine
            .events
            .container("exec_die", &exec.container_id, attrs);
    });
    Ok(())
}

pub fn inspect(exec: &ExecEntry) -> ExecInspectResponse {
    let st = exec.state();
    let cfg = &exec.config;
    let mut args = cfg.cmd.clone().unwrap_or_default();
    let entrypoint = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    ExecInspectResponse {
        can_remove: Some(false),
        detach_keys: Some(String::new()),
        id: Some(exec.id.clone()),
        running: Some(st.running),
        exit_code: st.exit_code,
        process_config: Some(ProcessConfig {
            privileged: cfg.privileged,
            user: cfg.user.clone(),
            tty: cfg.tty,
            entrypoint: Some(entrypoint),
            arguments: Some(args),
        }),
        open_stdin: cfg.attach_stdin,
        open_stderr: cfg.attach_stderr,
        open_stdout: cfg.attach_stdout,
        container_id: Some(exec.container_id.clone()),
        pid: Some(st.pid),
    }
}
