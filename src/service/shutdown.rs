//! The one way to stop: a [`CancellationToken`] cancelled by the first SIGINT/SIGTERM (every
//! loop finishes the step in flight, every task is awaited, the store is flushed); a second
//! signal exits at once with 130 (the store is consistent by construction).
//!
//! A token is sticky: a task that starts waiting after the cancellation still sees it (a
//! `Notify` woken with `notify_waiters` stores no permit, so a stop during a probe pass was
//! missed).

use tokio_util::sync::CancellationToken;

/// A token cancelled by the first SIGINT/SIGTERM; the second exits the process (130). Spawned
/// on the current Tokio runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("stopping: finishing the step in flight (signal again to exit at once)");
        cancel.cancel();
        signal().await;
        std::process::exit(130);
    });
    token
}

/// Resolves on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
