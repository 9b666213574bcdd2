//! Why the store failed.

use super::SCHEMA_VERSION;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error("the state store {0} is in use by another process (one worker per store; stop the other or use another --state-dir)")]
    Locked(String),
    /// The store was written by an incompatible version.
    #[error(
        "the state store {path} has schema version {found}, this build expects {SCHEMA_VERSION}"
    )]
    Schema {
        /// Store path.
        path: String,
        /// Version found.
        found: u32,
    },
    /// sled failed.
    #[error("state store error: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not decode.
    #[error("state store holds an unreadable record for {key}: {cause}")]
    Corrupt {
        /// The key.
        key: String,
        /// Cause.
        cause: String,
    },
    /// A transition names a job that does not exist.
    #[error("no job {0}")]
    NoJob(String),
    /// The journal (Kafka state topic) did not take the change.
    #[error("state journal: {0}")]
    Journal(String),
    /// The flush task did not finish (it panicked or the runtime is shutting down).
    #[error("store flush did not finish: {0}")]
    Flush(String),
    /// Rewriting a mostly free store failed (the store is left as it was, or the swap resumes
    /// on the next open).
    #[error("state store shrink: {0}")]
    Shrink(String),
}
