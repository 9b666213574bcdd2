//! Replication of a store's changes (Kafka mode): the records handed to a [`Journal`], and a
//! store rebuilt from them.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::{decode, done_slot, encode, entity_keys, ChainHead, Job, Store, StoreError};
use crate::event::ChangeEvent;

/// One changed record, as handed to a [`Journal`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A job as stored after the change.
    Job(Box<Job>),
    /// A chain head as stored after the change.
    Chain {
        /// The chain key.
        chain_key: String,
        /// The head.
        head: ChainHead,
    },
    /// A Done job compacted away from the journal (a tombstone on the state topic: its key is
    /// the job's record key, its value empty).
    Removed {
        /// The job key.
        job: String,
    },
}

impl JournalEntry {
    /// The record's identity (a compacted topic keeps the latest value per key).
    pub fn key(&self) -> String {
        match self {
            JournalEntry::Job(job) => format!("job/{}", job.key),
            JournalEntry::Chain { chain_key, .. } => format!("chain/{chain_key}"),
            JournalEntry::Removed { job } => format!("job/{job}"),
        }
    }

    /// Whether the record is a tombstone (written with an empty value).
    pub fn is_tombstone(&self) -> bool {
        matches!(self, JournalEntry::Removed { .. })
    }
}

/// Where a journaled store's changes become durable beyond this process.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Takes changed records, called after each transaction (in order for any one key).
    fn record(&self, entries: Vec<JournalEntry>);
    /// Resolves once everything recorded so far is durable (or the journal failed).
    fn commit(&self) -> futures::future::BoxFuture<'static, Result<(), StoreError>>;
    /// An event the pipeline derived (a run's dataset, a version a promotion waits for).
    /// `true`: the journal routed it to where it belongs (another partition, or nowhere because
    /// the feed detects it); `false`: detect it in this store.
    fn derived(&self, event: &ChangeEvent) -> bool;
}

impl Store {
    /// Puts a record read back from the journal into this store (restoring a partition's
    /// state before it takes events). Not journaled again.
    pub fn restore(&self, entry: JournalEntry) -> Result<(), StoreError> {
        match entry {
            JournalEntry::Job(job) => {
                let key = job.key.as_bytes();
                self.inbox.insert(key, encode(&job.detected_ms))?;
                // A record replaces an earlier one of the same job (compaction may not have run).
                if let Some(old) = self.jobs.get(key)? {
                    let old: Job = decode(&job.key, &old)?;
                    self.queue.remove(old.seq.to_be_bytes())?;
                    self.open.remove(old.seq.to_be_bytes())?;
                } else {
                    self.job_total.fetch_add(1, Ordering::SeqCst);
                }
                self.jobs.insert(key, encode(&job))?;
                self.queue.insert(job.seq.to_be_bytes(), key)?;
                if job.state.is_open() {
                    self.open.insert(job.seq.to_be_bytes(), key)?;
                }
                self.index_job(&job)?;
                for (k, v) in entity_keys(&job) {
                    self.index.insert(k.as_bytes(), v.as_bytes())?;
                }
                self.seq_floor.fetch_max(job.seq + 1, Ordering::SeqCst);
            }
            JournalEntry::Chain { chain_key, head } => {
                self.chains.insert(chain_key.as_bytes(), encode(&head))?;
            }
            JournalEntry::Removed { job } => self.forget(&job)?,
        }
        Ok(())
    }

    /// Drops a job restored earlier whose record was since compacted away (a tombstone): its
    /// event is anchored, and MLflow's tags say so if it is seen again.
    pub(super) fn forget(&self, key: &str) -> Result<(), StoreError> {
        if let Some(old) = self.jobs.remove(key.as_bytes())? {
            let old: Job = decode(key, &old)?;
            let seq = old.seq.to_be_bytes();
            if self.queue.remove(seq)?.is_some() {
                self.uncount_job();
            }
            self.open.remove(seq)?;
            self.parked.remove(seq)?;
            if let Some(done) = old.done_ms {
                self.done.remove(done_slot(done, old.seq))?;
            }
        }
        self.inbox.remove(key.as_bytes())?;
        Ok(())
    }

    /// Runs a mutation and hands what it changed to the journal, in order.
    pub(super) fn journaled_change<T>(
        &self,
        change: impl FnOnce() -> Result<T, StoreError>,
        entries: impl FnOnce(&T) -> Vec<JournalEntry>,
    ) -> Result<T, StoreError> {
        let Some(journal) = &self.journal else {
            return change();
        };
        let _order = self.journal_order.lock().unwrap_or_else(|p| p.into_inner());
        let out = change()?;
        let records = entries(&out);
        if !records.is_empty() {
            journal.record(records);
        }
        Ok(out)
    }
}
