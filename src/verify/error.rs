//! Why a verification step could not run (as opposed to a check that ran and failed, which is
//! a [`Check`](super::Check) in the verdict).

use crate::arweave::http::HttpSetupError;
use crate::mlflow::MlflowError;

/// A verification step could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// MLflow could not answer about something the step needs.
    #[error("{what}: {source}")]
    Mlflow {
        /// What was asked, e.g. `run 3f2a…` or `model version fraud/3`.
        what: String,
        /// MLflow's answer.
        #[source]
        source: MlflowError,
    },
    /// A payload or proof lacks a field the step needs, or holds something else.
    #[error("{0}")]
    Payload(String),
    /// A proof the step relies on (a rename proof, a run's training TX) could not be found,
    /// fetched or verified.
    #[error("{what} {tx}: {reason}")]
    Referenced {
        /// Which proof, e.g. `rename proof`.
        what: &'static str,
        /// Its TX id (or payload hash when no TX is known).
        tx: String,
        /// Why it does not hold.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    /// A verification service (ar.io Verify) is unhealthy or unreachable.
    #[error("{service} at {url} {reason}")]
    Service {
        /// The service.
        service: &'static str,
        /// Its base URL.
        url: String,
        /// What it answered, or that it could not be reached.
        reason: String,
    },
}

impl VerifyError {
    /// MLflow failed answering `what`.
    pub fn mlflow(what: impl Into<String>, source: MlflowError) -> VerifyError {
        VerifyError::Mlflow {
            what: what.into(),
            source,
        }
    }
}

/// Why a version's checkpoint records do not form one chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointChainError {
    /// A record cannot be read.
    #[error("checkpoint {tx}: {reason}")]
    Unreadable {
        /// The checkpoint's TX.
        tx: String,
        /// Why.
        reason: String,
    },
    /// Not exactly one record starts a chain.
    #[error("{0} checkpoints start a chain (GENESIS); expected 1")]
    Starts(usize),
    /// A record follows a hash that is not among them.
    #[error("a checkpoint follows {0}, which is not among them")]
    Gap(String),
    /// Two records follow the same one.
    #[error("two checkpoints follow {0} (a fork)")]
    Fork(String),
}
