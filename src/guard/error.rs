//! Why the guard could not keep its state or sign an event.

use std::path::PathBuf;

/// A failure of the guard's own files or signing.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A file or directory of the state directory could not be read, created or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// `read`, `create` or `write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The kept state is not the guard's.
    #[error("{} is not the guard's state: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The management secret file exists but is empty.
    #[error("{} is empty: delete it to have a new secret generated", path.display())]
    EmptySecret {
        /// The file.
        path: PathBuf,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for the management secret: {0}")]
    Randomness(String),
    /// An event could not be signed.
    #[error("cannot sign the guard's event: {0}")]
    Sign(String),
    /// The blocking file task did not finish (the runtime is shutting down).
    #[error("the guard's file task stopped: {0}")]
    Task(String),
}

impl GuardError {
    /// `action` on `path` failed with `source`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> GuardError {
        GuardError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
