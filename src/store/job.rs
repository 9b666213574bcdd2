//! A job and what it keeps: its state, its prepared event or compacted summary, chain heads.

use serde::{Deserialize, Serialize};

use super::prepared::Prepared;
use crate::event::ChangeEvent;

/// Where a job is in its life (docs/architecture.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Detected, nothing decided yet.
    Detected,
    /// Waiting for a dependency (e.g. the run's training TX) since a time.
    Waiting {
        /// What it waits for.
        on: String,
        /// Since when (ms).
        since_ms: u64,
    },
    /// Signed: the payload, envelope and item bytes are fixed.
    Signed,
    /// Step-1 write-back done (witness and pending tags in MLflow).
    SignedWritten,
    /// Turbo accepted the item.
    Uploaded {
        /// The upload service's receipt as JSON, kept verbatim (none after a 202). The store
        /// does not know its shape: the pipeline that wrote it reads it back.
        receipt: Option<serde_json::Value>,
    },
    /// A prediction fixed as a leaf of its version's open checkpoint batch
    /// (`--predictions batched`); the batch's sealing moves it on.
    Batched {
        /// The batch (`name/version`).
        batch: String,
    },
    /// A prediction sealed into a checkpoint: the checkpoint's job anchors it.
    Sealed {
        /// The checkpoint job's key.
        checkpoint: String,
        /// The prediction's leaf index in the checkpoint.
        leaf_index: u64,
    },
    /// Recorded in MLflow; finished.
    Done,
    /// Nothing to do (e.g. the plugin anchored it already).
    Skipped {
        /// Why.
        reason: String,
        /// The kind of skip (`already_anchored`, `plugin`, `gone`, `no_model`,
        /// `not_applicable`), for counting; absent in records written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// The entity may come back (a run restored, re-finished, a version re-created): a
        /// later detection of the same key reopens the job instead of being absorbed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        redetect: bool,
    },
    /// A permanent error; needs `retry` after the cause is fixed.
    Parked {
        /// The error.
        error: String,
    },
}

impl JobState {
    /// Short name for status output.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Detected => "detected",
            JobState::Waiting { .. } => "waiting",
            JobState::Signed => "signed",
            JobState::SignedWritten => "signed_written",
            JobState::Uploaded { .. } => "uploaded",
            JobState::Batched { .. } => "batched",
            JobState::Sealed { .. } => "sealed",
            JobState::Done => "done",
            JobState::Skipped { .. } => "skipped",
            JobState::Parked { .. } => "parked",
        }
    }

    /// Whether the job still has work to do.
    pub fn is_open(&self) -> bool {
        !matches!(
            self,
            JobState::Done
                | JobState::Skipped { .. }
                | JobState::Parked { .. }
                | JobState::Sealed { .. }
        )
    }
}

/// One event's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The dedupe key.
    pub key: String,
    /// Detection order.
    pub seq: u64,
    /// What was detected.
    pub event: ChangeEvent,
    /// Where it is.
    pub state: JobState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this time (ms).
    pub next_attempt_ms: u64,
    /// The last error, kept for `status`.
    pub last_error: Option<String>,
    /// The signed event, once signed (never rebuilt).
    pub prepared: Option<Prepared>,
    /// The chain it belongs to, once known.
    pub chain_key: Option<String>,
    /// When it was detected (ms).
    pub detected_ms: u64,
    /// When it reached Done (ms); absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_ms: Option<u64>,
    /// What a Done job keeps of its signed event once compacted (after `--retain-done`): the
    /// prepared event's bytes are dropped, this stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<JobSummary>,
}

impl Job {
    /// The event's TX, whether the job still holds its prepared event or only its summary.
    pub fn tx_id(&self) -> Option<&str> {
        self.prepared
            .as_ref()
            .map(|p| p.tx_id.as_str())
            .or_else(|| self.summary.as_ref().map(|s| s.tx_id.as_str()))
    }
}

/// What a compacted Done job keeps: enough for dedupe, chains, `status` and audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The envelope `event_type`.
    pub event_type: String,
    /// The TX (data item id).
    pub tx_id: String,
    /// SHA-256 of the payload.
    pub payload_hash: String,
    /// The envelope's `previous_hash` (the chain link).
    pub previous_hash: String,
}

/// A chain's head: the value the next event on it must carry as `previous_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Payload hash (training chains) or TX id.
    pub head: String,
    /// The job that set it.
    pub job: String,
}
