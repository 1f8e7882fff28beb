//! The local terminal: raw mode while attached to a container's TTY, and its size, sent to the
//! daemon at start and on every SIGWINCH.

use std::io::IsTerminal;

use bollard::query_parameters::{ResizeContainerTTYOptions, ResizeExecOptions};
use bollard::Docker;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// Puts stdin's terminal in raw mode and restores it when dropped, also on error paths.
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Raw mode if stdin is a terminal; `None` otherwise (piped input stays as it is).
    pub fn enable() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// The terminal's size as (rows, columns), if stdout is one.
pub fn size() -> Option<(u16, u16)> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout().size_checked()
}

/// What a resize applies to.
#[derive(Clone)]
pub enum ResizeTarget {
    Container(String),
    Exec(String),
}

async fn resize(docker: &Docker, target: &ResizeTarget) {
    let Some((h, w)) = size() else {
        return;
    };
    // A failed resize only leaves the remote size stale; it must not end the session.
    let _ = match target {
        ResizeTarget::Container(id) => {
            docker
                .resize_container_tty(
                    id,
                    ResizeContainerTTYOptions {
                        h: i32::from(h),
                        w: i32::from(w),
                    },
                )
                .await
        }
        ResizeTarget::Exec(id) => {
            docker
                .resize_exec(
                    id,
                    ResizeExecOptions {
                        h: i32::from(h),
                        w: i32::from(w),
                    },
                )
                .await
        }
    };
}

/// Sends the size now and after each SIGWINCH, until the returned task is aborted.
pub fn follow_size(docker: &Docker, target: ResizeTarget) -> tokio::task::JoinHandle<()> {
    let docker = docker.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut winch = signal(SignalKind::window_change()).ok();
        resize(&docker, &target).await;
        let Some(w) = winch.as_mut() else {
            return;
        };
        while w.recv().await.is_some() {
            resize(&docker, &target).await;
        }
    })
}
