//! Detection and every job transition, each one transaction (signing moves the chain head in the
//! same one; retention compacts Done jobs to their summary).

use std::sync::atomic::Ordering;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use super::prepared::Prepared;
use super::{
    decode, done_slot, encode, entity_keys, incarnation, job_in_tx, now_ms, tx_err, ChainHead,
    Incarnation, Job, JobState, JobSummary, JournalEntry, Store, StoreError,
};
use crate::event::ChangeEvent;

impl Store {
    /// Brings the parked and done indexes in line with `job` (outside a transaction: restores
    /// and migrations).
    pub(super) fn index_job(&self, job: &Job) -> Result<(), StoreError> {
        let seq = job.seq.to_be_bytes();
        if matches!(job.state, JobState::Parked { .. }) {
            self.parked.insert(seq, job.key.as_bytes())?;
        } else {
            self.parked.remove(seq)?;
        }
        if job.state == JobState::Done && job.prepared.is_some() {
            let at = job.done_ms.unwrap_or(job.detected_ms);
            self.done
                .insert(done_slot(at, job.seq), job.key.as_bytes())?;
        }
        Ok(())
    }

    /// Records an event the pipeline derived from another (a run's datasets, a dependency):
    /// a journaled store lets the journal route it to the partition it belongs to.
    pub fn detect_derived(&self, event: &ChangeEvent) -> Result<bool, StoreError> {
        if let Some(journal) = &self.journal {
            if journal.derived(event) {
                return Ok(false);
            }
        }
        let new = self.detect(event)?;
        if new {
            crate::telemetry::detected(event.event_type(), "derived");
        }
        Ok(new)
    }

    /// Records a detected event; `true` when it is new (a job was created, or a job skipped
    /// as redetectable was reopened), `false` when its dedupe key was seen before. Inbox entry,
    /// job and queue slot are one transaction. A registry event about a renamed model is keyed
    /// by the name the store first knew it by, so the same change seen under both names is one
    /// job.
    pub fn detect(&self, event: &ChangeEvent) -> Result<bool, StoreError> {
        let key = self.job_key(event);
        let seq = self.next_seq()?;
        let now = now_ms();
        let job = Job {
            key: key.clone(),
            seq,
            event: event.clone(),
            state: JobState::Detected,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            prepared: None,
            chain_key: None,
            detected_ms: now,
            done_ms: None,
            summary: None,
        };
        self.journaled_change(
            || {
                (
                    &self.inbox,
                    &self.jobs,
                    &self.queue,
                    &self.open,
                    &self.index,
                )
                    .transaction(|(inbox, jobs, queue, open, index)| {
                        if inbox.get(key.as_bytes())?.is_some() {
                            let Some(bytes) = jobs.get(key.as_bytes())? else {
                                return Ok(None);
                            };
                            let mut old: Job = decode(&key, &bytes)
                                .map_err(ConflictableTransactionError::Abort)?;
                            match incarnation(&old, event) {
                                Incarnation::Same => return Ok(None),
                                Incarnation::Learnt => {
                                    // The same version, now with its creation time.
                                    old.event = event.clone();
                                    jobs.insert(key.as_bytes(), encode(&old))?;
                                    return Ok(None);
                                }
                                Incarnation::Reopen => {
                                    // Skipped because the entity was gone or not ready: seen
                                    // again, it is reopened (a restored run, say).
                                    old.event = event.clone();
                                    old.state = JobState::Detected;
                                    old.attempts = 0;
                                    old.next_attempt_ms = 0;
                                    old.last_error = None;
                                    jobs.insert(key.as_bytes(), encode(&old))?;
                                    open.insert(&old.seq.to_be_bytes(), key.as_bytes())?;
                                    return Ok(Some(old));
                                }
                                Incarnation::New(archived) => {
                                    // A model deleted and re-created: the earlier version's job
                                    // moves aside under `<key>@<created>`, the new one takes the
                                    // key.
                                    let mut moved = old.clone();
                                    moved.key = archived.clone();
                                    jobs.insert(archived.as_bytes(), encode(&moved))?;
                                    inbox.insert(archived.as_bytes(), encode(&now))?;
                                    queue.insert(&old.seq.to_be_bytes(), archived.as_bytes())?;
                                    if old.state.is_open() {
                                        open.insert(&old.seq.to_be_bytes(), archived.as_bytes())?;
                                    }
                                }
                            }
                        }
                        inbox.insert(key.as_bytes(), encode(&now))?;
                        jobs.insert(key.as_bytes(), encode(&job))?;
                        queue.insert(&seq.to_be_bytes(), key.as_bytes())?;
                        open.insert(&seq.to_be_bytes(), key.as_bytes())?;
                        for (k, v) in entity_keys(&job) {
                            index.insert(k.as_bytes(), v.as_bytes())?;
                        }
                        Ok(Some(job.clone()))
                    })
                    .map_err(|e: TransactionError<StoreError>| tx_err(e))
            },
            |changed| match changed {
                Some(j) => vec![JournalEntry::Job(Box::new(j.clone()))],
                None => Vec::new(),
            },
        )
        .map(|changed| {
            // A new job (not one reopened under its old sequence number) takes a queue slot.
            if changed.as_ref().is_some_and(|j| j.seq == seq) {
                self.job_total.fetch_add(1, Ordering::SeqCst);
            }
            changed.is_some()
        })
    }

    /// The key of `event`'s job: its dedupe key, with a renamed model's name replaced by the
    /// name the store first knew it by.
    pub fn job_key(&self, event: &ChangeEvent) -> String {
        match event.model_name().and_then(|n| self.first_name(n)) {
            Some(first) if !matches!(event, ChangeEvent::ModelRenamed { .. }) => {
                event.with_model_name(&first).dedupe_key()
            }
            _ => event.dedupe_key(),
        }
    }

    pub(super) fn uncount_job(&self) {
        let _ = self
            .job_total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Applies `change` to a job in one transaction (its open-index entry included) and returns
    /// the new job.
    pub fn update(&self, key: &str, change: impl Fn(&mut Job)) -> Result<Job, StoreError> {
        self.journaled_change(
            || self.update_local(key, &change),
            |job| vec![JournalEntry::Job(Box::new(job.clone()))],
        )
    }

    pub(super) fn update_local(
        &self,
        key: &str,
        change: &impl Fn(&mut Job),
    ) -> Result<Job, StoreError> {
        let now = now_ms();
        (&self.jobs, &self.open, &self.parked, &self.done)
            .transaction(|(jobs, open, parked, done)| {
                let mut job = job_in_tx(jobs, key)?;
                change(&mut job);
                let seq = job.seq.to_be_bytes();
                if job.state == JobState::Done && job.done_ms.is_none() {
                    job.done_ms = Some(now);
                    if job.prepared.is_some() {
                        done.insert(done_slot(now, job.seq), key.as_bytes())?;
                    }
                }
                jobs.insert(key.as_bytes(), encode(&job))?;
                if job.state.is_open() {
                    open.insert(&seq, key.as_bytes())?;
                } else {
                    open.remove(&seq)?;
                }
                if matches!(job.state, JobState::Parked { .. }) {
                    parked.insert(&seq, key.as_bytes())?;
                } else {
                    parked.remove(&seq)?;
                }
                Ok(job)
            })
            .map_err(tx_err)
    }

    /// Compacts the Done jobs that finished before `before_ms`: each keeps its key (dedupe),
    /// state, times and a [`JobSummary`] (TX, payload hash, chain link), and drops its prepared
    /// event's bytes; a journaled store writes a tombstone for it (the state topic forgets it;
    /// MLflow's tags recognise the event if it is seen again). Reads only the Done jobs not yet
    /// compacted. Returns how many were compacted.
    pub fn compact(&self, before_ms: u64) -> Result<usize, StoreError> {
        let end = done_slot(before_ms, 0);
        let due: Vec<(sled::IVec, String)> = self
            .done
            .range(..end)
            .map(|e| {
                let (slot, key) = e?;
                Ok((slot, String::from_utf8_lossy(&key).into_owned()))
            })
            .collect::<Result<_, StoreError>>()?;
        let mut n = 0;
        for (slot, key) in due {
            let compacted = self.journaled_change(
                || {
                    (&self.jobs, &self.done)
                        .transaction(|(jobs, done)| {
                            done.remove(&slot)?;
                            let Some(bytes) = jobs.get(key.as_bytes())? else {
                                return Ok(false);
                            };
                            let mut job: Job = decode(&key, &bytes)
                                .map_err(ConflictableTransactionError::Abort)?;
                            let Some(p) = job.prepared.take() else {
                                return Ok(false);
                            };
                            job.summary = Some(JobSummary {
                                event_type: p.event_type.clone(),
                                tx_id: p.tx_id.clone(),
                                payload_hash: p.payload_hash.clone(),
                                previous_hash: p.envelope["previous_hash"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_string(),
                            });
                            jobs.insert(key.as_bytes(), encode(&job))?;
                            Ok(true)
                        })
                        .map_err(tx_err)
                },
                |done| {
                    if *done {
                        vec![JournalEntry::Removed { job: key.clone() }]
                    } else {
                        Vec::new()
                    }
                },
            )?;
            n += usize::from(compacted);
        }
        Ok(n)
    }

    /// Signs a job: stores its [`Prepared`] event and, for chained events, moves the chain head
    /// — in one transaction. Refuses a job that is already signed (it must never be re-signed).
    pub fn sign(
        &self,
        key: &str,
        prepared: &Prepared,
        chain: Option<(&str, &str)>,
    ) -> Result<Job, StoreError> {
        self.journaled_change(
            || self.sign_local(key, prepared, chain),
            |job| {
                let mut out = vec![JournalEntry::Job(Box::new(job.clone()))];
                if let Some((chain_key, head)) = chain {
                    out.push(JournalEntry::Chain {
                        chain_key: chain_key.to_string(),
                        head: ChainHead {
                            head: head.to_string(),
                            job: key.to_string(),
                        },
                    });
                }
                out
            },
        )
    }

    pub(super) fn sign_local(
        &self,
        key: &str,
        prepared: &Prepared,
        chain: Option<(&str, &str)>,
    ) -> Result<Job, StoreError> {
        (&self.jobs, &self.chains)
            .transaction(|(jobs, chains)| {
                let mut job = job_in_tx(jobs, key)?;
                if job.prepared.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Corrupt {
                        key: key.to_string(),
                        cause: "job is already signed; refusing to sign it again".into(),
                    }));
                }
                job.prepared = Some(prepared.clone());
                job.state = JobState::Signed;
                job.last_error = None;
                job.attempts = 0;
                job.next_attempt_ms = 0;
                if let Some((chain_key, head)) = chain {
                    job.chain_key = Some(chain_key.to_string());
                    chains.insert(
                        chain_key.as_bytes(),
                        encode(&ChainHead {
                            head: head.to_string(),
                            job: key.to_string(),
                        }),
                    )?;
                }
                jobs.insert(key.as_bytes(), encode(&job))?;
                Ok(job)
            })
            .map_err(tx_err)
    }
}
