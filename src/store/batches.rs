//! Checkpoint batches: leaves added as prediction jobs are signed, sealed into one checkpoint.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{
    batch_slot, decode, encode, job_in_tx, now_ms, tx_err, ChainHead, Job, JobState, Store,
    StoreError,
};

impl Store {
    /// Fixes a prediction job as a leaf of `batch` (one transaction: the job's state and the
    /// leaf). A job already batched or sealed is left as it is.
    pub fn add_leaf(
        &self,
        key: &str,
        batch: &str,
        leaf: &serde_json::Value,
    ) -> Result<Job, StoreError> {
        if self.journal.is_some() {
            return Err(StoreError::Journal(
                "checkpoint batches are kept only in a local store (poll mode)".into(),
            ));
        }
        (&self.jobs, &self.batches)
            .transaction(|(jobs, batches)| {
                let mut job = job_in_tx(jobs, key)?;
                if matches!(
                    job.state,
                    JobState::Batched { .. } | JobState::Sealed { .. }
                ) {
                    return Ok(job);
                }
                job.state = JobState::Batched {
                    batch: batch.to_string(),
                };
                job.last_error = None;
                job.attempts = 0;
                job.next_attempt_ms = 0;
                jobs.insert(key.as_bytes(), encode(&job))?;
                batches.insert(batch_slot(batch, job.seq), encode(leaf))?;
                Ok(job)
            })
            .map_err(tx_err)
    }

    /// Every open batch: its leaves as (job seq, leaf), in batching order.
    pub fn batches(&self) -> Result<BTreeMap<String, Vec<(u64, serde_json::Value)>>, StoreError> {
        let mut out: BTreeMap<String, Vec<(u64, serde_json::Value)>> = BTreeMap::new();
        for entry in self.batches.iter() {
            let (k, v) = entry?;
            let split = k.len().saturating_sub(9);
            if k.len() < 9 || k[split] != 0 {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    cause: "not a batch slot".into(),
                });
            }
            let batch = String::from_utf8_lossy(&k[..split]).into_owned();
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k[split + 1..]);
            let leaf = decode(&batch, &v)?;
            out.entry(batch)
                .or_default()
                .push((u64::from_be_bytes(seq), leaf));
        }
        Ok(out)
    }

    /// Seals leaves of `batch` into the signed `checkpoint` job in one transaction: the job is
    /// created (signed, with its prepared event), its chain head moved, the leaves leave the
    /// batch and their jobs become [`JobState::Sealed`] at their index. `members` are (job seq,
    /// job key) in leaf order. A crash leaves either the open batch or the sealed checkpoint.
    pub fn seal(
        &self,
        batch: &str,
        members: &[(u64, String)],
        checkpoint: &Job,
        chain: (&str, &str),
    ) -> Result<(), StoreError> {
        let key = checkpoint.key.clone();
        let mut job = checkpoint.clone();
        job.seq = self.next_seq()?;
        job.state = JobState::Signed;
        job.chain_key = Some(chain.0.to_string());
        (
            &self.jobs,
            &self.queue,
            &self.open,
            &self.inbox,
            &self.chains,
            &self.batches,
        )
            .transaction(|(jobs, queue, open, inbox, chains, batches)| {
                if inbox.get(key.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Corrupt {
                        key: key.clone(),
                        cause: "checkpoint sealed twice".into(),
                    }));
                }
                for (index, (seq, member)) in members.iter().enumerate() {
                    if batches.remove(batch_slot(batch, *seq))?.is_none() {
                        return Err(ConflictableTransactionError::Abort(StoreError::Corrupt {
                            key: member.clone(),
                            cause: format!("not a leaf of the open batch {batch}"),
                        }));
                    }
                    let mut m = job_in_tx(jobs, member)?;
                    m.state = JobState::Sealed {
                        checkpoint: key.clone(),
                        leaf_index: index as u64,
                    };
                    jobs.insert(member.as_bytes(), encode(&m))?;
                    open.remove(&m.seq.to_be_bytes())?;
                }
                inbox.insert(key.as_bytes(), encode(&now_ms()))?;
                jobs.insert(key.as_bytes(), encode(&job))?;
                queue.insert(&job.seq.to_be_bytes(), key.as_bytes())?;
                open.insert(&job.seq.to_be_bytes(), key.as_bytes())?;
                chains.insert(
                    chain.0.as_bytes(),
                    encode(&ChainHead {
                        head: chain.1.to_string(),
                        job: key.clone(),
                    }),
                )?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.job_total.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
