//! The service as a library: the long-running modes of `run` and `backfill` as functions of a
//! typed configuration, the parts the commands built (the anchorer, the store, the guard) and
//! one [`CancellationToken`](tokio_util::sync::CancellationToken) — as mini-redis's
//! `server::run` is. Commands parse and validate flags, build the parts and print; everything
//! that runs lives here:
//!
//! * [`poll`] — the poll loop of `run --source poll` and `backfill` (detect, drain, retention);
//! * [`kafka`] — `run --source kafka[,poll]`: a consumer-group member, each owned partition
//!   driving the pipeline over its journaled store;
//! * [`surface`] — what runs beside either: the HTTP listener, the readiness probe and its store
//!   gauges, the coverage gauges and the guard, as tasks of one `JoinSet` stopped by one token
//!   and awaited on the way out;
//! * [`retention`] — compaction of Done jobs past `--retain-done`;
//! * [`shutdown`] — the one way to stop: the first SIGINT/SIGTERM cancels the token, the second
//!   exits at once.

pub mod kafka;
pub mod poll;
mod probe;
pub mod retention;
pub mod shutdown;
pub mod surface;

use crate::store::StoreError;

/// Why the service stopped other than by its token.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Refused at start: a listener address taken, a Kafka topic or group not usable, a
    /// webhook secret rejected… (the message says what to fix).
    #[error("{0}")]
    Start(String),
    /// The state store failed while running.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stage stopped unexpectedly (the Kafka consumer, the CDC stage).
    #[error("{0}")]
    Stopped(String),
}

impl ServiceError {
    /// The process exit code for this error: 1 for a stage that stopped while running, 2 for
    /// a refusal at start or a store failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServiceError::Stopped(_) => 1,
            ServiceError::Start(_) | ServiceError::Store(_) => 2,
        }
    }
}
