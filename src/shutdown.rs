//! Signals. Shutdown is a future handed to [`crate::run`], never a global, so tests choose their
//! own trigger; this module makes the one the daemon uses.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves on the first SIGTERM or SIGINT. (SIGHUP, `systemctl reload`, reloads the
/// configuration: `crate::run` handles it.)
pub async fn terminated() {
    // Installing handlers only fails when the runtime has no signal driver, a programming error.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        // systemd's stop, kill's default: drain, flush, exit 0.
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        // Ctrl-C in a terminal: the same.
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
