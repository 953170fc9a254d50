//! Signals. Shutdown is a future handed to [`crate::run`], never a global, so tests choose their
//! own trigger; this module makes the one the daemon uses.

use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

/// Install the SIGTERM and SIGINT handlers now and return a future that resolves on the first of
/// them. (SIGHUP, `systemctl reload`, reloads the configuration: `crate::run` handles it.)
///
/// The handlers are installed by this call, not when the future is first polled: a signal that
/// arrives between the daemon saying it listens and its first poll of the future would otherwise
/// meet the default action and end the process without draining. Must be called inside a tokio
/// runtime with its signal driver (`enable_all`).
pub fn terminated() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            // systemd's stop, kill's default: drain, flush, exit 0.
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            // Ctrl-C in a terminal: the same.
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    })
}
