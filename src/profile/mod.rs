//! The `ario.mlflow/v1` profile (spec/mlflow-profile.md), pure: what a proof of each MLflow
//! lifecycle event *is* — its payload, its subject, where its witness artifacts live and which
//! tags name it — with no I/O, no clock and no randomness.
//!
//! The anchorer (`anchor`) and the verifier (`verify`) are two readers of this one module:
//! neither imports the other, so a proof made here and checked there cannot drift apart. It
//! imports nothing of the crate but the kernel (`proof`); MLflow's entities reach it as the
//! plain fact structs defined here (the MLflow client converts its REST types into them).
//!
//! * [`envelope`] — the nine-field envelope and its data-item tags, `GENESIS`, the spec version;
//! * [`tags`] — tag names and values shared by several event types;
//! * one module per event type: [`training`], [`dataset`], [`registration`], [`promotion`],
//!   [`rename`] (our addition),
//!   [`alias`] (our addition), [`prediction`] — each with its `EVENT_TYPE`, `payload`, `subject`,
//!   witness paths and tag names;
//! * [`round`] — Python's `round()`, which the plugin applies to metrics and latencies.

pub mod alias;
pub mod checkpoint;
pub mod dataset;
pub mod envelope;
pub mod evidence;
pub mod key_history;
pub mod prediction;
pub mod promotion;
pub mod registration;
pub mod rename;
pub mod round;
pub mod tags;
pub mod training;

pub use envelope::{APP_NAME, GENESIS, SPEC_VERSION};

use crate::proof::jcs;

/// Why a payload cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// JSON cannot represent NaN/Infinity, so the plugin's `anchor()` fails on them too.
    #[error("metric {key:?} is {value}; JSON cannot represent it, so the run cannot be anchored until it is fixed")]
    NonFiniteMetric {
        /// Metric name.
        key: String,
        /// Its value.
        value: String,
    },
    /// More than one logged model and no explicit artifact path (the plugin raises too).
    #[error("run logged several models ({0:?}); choose one with --artifact-path")]
    AmbiguousArtifactPath(Vec<String>),
    /// Canonicalization failed (a value nested deeper than JCS allows, say).
    #[error("payload cannot be canonicalized: {0}")]
    Jcs(#[from] jcs::JcsError),
}

/// Witness file names inside a per-event directory (`ario/<dir>/<event_id>/<file>`).
pub mod witness {
    /// The canonical payload bytes.
    pub const PAYLOAD_FILE: &str = "payload.json";
    /// The signed envelope, pretty-printed.
    pub const PROOF_FILE: &str = "proof.json";
    /// The upload service's receipt.
    pub const RECEIPT_FILE: &str = "receipt.json";

    /// `ario/<dir>/<id>/<file>`: the witness path of an event kept per event (promotions,
    /// aliases, predictions).
    pub fn per_event_path(dir: &str, id: &str, file: &str) -> String {
        format!("ario/{dir}/{id}/{file}")
    }
}
