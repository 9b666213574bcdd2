//! What `status` shows of one store, and what `retry` does to it — jobs per event type and state, parked jobs with their
//! errors, chain heads, cursors, size — built the same way offline (the CLI opening the store)
//! and online (a running worker answering `GET /v1/status` over its listener).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{JobState, Store, StoreError};

/// One parked job: what stopped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedJob {
    /// The job key (dedupe key), what `retry` takes.
    pub job: String,
    /// Why it was parked.
    pub error: String,
    /// Attempts made before parking.
    pub attempts: u32,
}

/// One store's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreReport {
    /// Jobs in the store (open and closed, until compaction forgets them).
    pub jobs: usize,
    /// Event type → state → jobs.
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    /// The parked jobs.
    pub parked: Vec<ParkedJob>,
    /// Chain key → head (transaction id of the chain's last event).
    pub chain_heads: BTreeMap<String, String>,
    /// Source cursors (what the poller has read up to).
    pub cursors: BTreeMap<String, serde_json::Value>,
    /// Bytes on disk (0 for a store held in memory, e.g. a Kafka partition's).
    pub store_bytes: u64,
}

impl Store {
    /// Re-queues parked jobs (`key`: that one only): a job parked after signing resumes
    /// publishing its stored bytes (it is never signed again); one parked before signing is
    /// resolved again. Returns how many were re-queued. The pipeline finds them on its next
    /// pass (`retry`, offline or through a running worker's listener).
    pub fn requeue_parked(&self, key: Option<&str>) -> Result<usize, StoreError> {
        let mut n = 0;
        for job in self.jobs()? {
            if key.is_some_and(|k| k != job.key) || !matches!(job.state, JobState::Parked { .. }) {
                continue;
            }
            self.update(&job.key, |j| {
                j.state = if j.prepared.is_some() {
                    JobState::Signed
                } else {
                    JobState::Detected
                };
                j.attempts = 0;
                j.next_attempt_ms = 0;
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The store's status (reads every job: a command's cost, not a periodic one).
    pub fn report(&self) -> Result<StoreReport, StoreError> {
        let jobs = self.jobs()?;
        let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for j in &jobs {
            *counts
                .entry(j.event.event_type().to_string())
                .or_default()
                .entry(j.state.name().to_string())
                .or_default() += 1;
        }
        let parked = jobs
            .iter()
            .filter_map(|j| match &j.state {
                JobState::Parked { error } => Some(ParkedJob {
                    job: j.key.clone(),
                    error: error.clone(),
                    attempts: j.attempts,
                }),
                _ => None,
            })
            .collect();
        Ok(StoreReport {
            jobs: jobs.len(),
            counts,
            parked,
            chain_heads: self
                .chain_heads()?
                .into_iter()
                .map(|(k, h)| (k, h.head))
                .collect(),
            cursors: self.cursors()?.into_iter().collect(),
            store_bytes: self.size_on_disk(),
        })
    }
}
