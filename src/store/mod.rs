//! The durable state (sled 0.34): what the service remembers across crashes and restarts.
//!
//! Trees: `inbox` (dedupe key → first-seen time), `jobs` (key → [`Job`]), `queue` (sequence →
//! key, detection order), `open` (sequence → key of the jobs not yet closed, so finding due work
//! costs the open jobs, not the store's whole history), `chains` (chain key → [`ChainHead`]),
//! `cursors` (source → JSON), `snapshots` (what the poller last saw: stages, aliases),
//! `renames` (registered models renamed since first seen: `cur/<old>` → current name,
//! `first/<current>` → the name first seen) and `meta` (schema version).
//!
//! Invariants:
//! * detection is idempotent: a dedupe key enters the inbox and becomes a job exactly once, in
//!   one transaction;
//! * signing stores the [`Prepared`] event *and* advances the chain head in one transaction, so a
//!   job is never signed twice and a chain never has two events with the same predecessor;
//! * every transition is one transaction, and callers [`Store::flush`] before the side effect
//!   that depends on it.
//!
//! A store may carry a [`Journal`] (Kafka mode: one store per owned partition, replicated to
//! the partition's state topic). Then every changed job and chain head is handed to the journal
//! after its transaction, in order per key, and [`Store::flush`] returns only once the journal
//! says it is durable — so "signed" means "the state record is committed", and the pipeline's
//! flush-before-side-effect rule carries over unchanged. Such a store is rebuilt from the
//! journal with [`Store::restore`] before it takes an event.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::anchor::prepared::Prepared;
use crate::event::ChangeEvent;

pub mod shrink;

/// Version of the on-disk layout.
pub const SCHEMA_VERSION: u32 = 1;

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

/// Where a job is in its life (DESIGN.md §3).
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

/// The store.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    inbox: sled::Tree,
    jobs: sled::Tree,
    queue: sled::Tree,
    open: sled::Tree,
    chains: sled::Tree,
    cursors: sled::Tree,
    snapshots: sled::Tree,
    /// Registered-model renames (see the module doc).
    renames: sled::Tree,
    /// Parked jobs: sequence → key (a probe counts them without reading the history).
    parked: sled::Tree,
    /// Done jobs not compacted yet: done time ‖ sequence → key (retention reads only these).
    done: sled::Tree,
    /// Lookups by entity: `a/<name>/<alias>` → the newest alias job's key, `s/<name>/<version>/
    /// <to>/<last_updated_ms>` → a stage job's key (Kafka's duplicate check reads these, not the
    /// history).
    index: sled::Tree,
    /// Open checkpoint batches: `batch \0 seq` → the leaf (JSON the pipeline wrote).
    batches: sled::Tree,
    /// Sequence numbers handed out are above this (restored stores keep their jobs' order).
    seq_floor: Arc<AtomicU64>,
    /// Jobs in the queue (counted once on open, then kept: sled's `len` reads a whole tree).
    job_total: Arc<AtomicU64>,
    /// Replication of every change, when the store is one partition's (Kafka mode).
    journal: Option<Arc<dyn Journal>>,
    /// Held across a transaction and its journal record, so records reach the journal in
    /// transaction order.
    journal_order: Arc<Mutex<()>>,
    /// One flush at a time (see [`Store::flush`]).
    flush_lock: Arc<tokio::sync::Mutex<()>>,
    /// The state directory's lock, held while the store is open (see [`shrink::lock_dir`]).
    dir_lock: Option<Arc<std::fs::File>>,
}

/// Milliseconds since the epoch (the clock jobs are stamped with).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        cause: e.to_string(),
    })
}

/// How a detection relates to the job already holding its key.
enum Incarnation {
    /// The same change: absorbed.
    Same,
    /// The same change, and the detection knows more (a version's creation time).
    Learnt,
    /// The job was skipped as redetectable: reopen it.
    Reopen,
    /// Another entity with the same identity (a version of a model deleted and re-created):
    /// the old job moves to this key.
    New(String),
}

fn incarnation(old: &Job, event: &ChangeEvent) -> Incarnation {
    if matches!(old.state, JobState::Skipped { redetect: true, .. }) {
        return Incarnation::Reopen;
    }
    match (&old.event, event) {
        (
            ChangeEvent::ModelVersionCreated {
                created_ms: before, ..
            },
            ChangeEvent::ModelVersionCreated {
                created_ms: Some(now),
                ..
            },
        ) => match before {
            None => Incarnation::Learnt,
            Some(b) if b == now => Incarnation::Same,
            Some(b) => Incarnation::New(format!("{}@{b}", old.key)),
        },
        _ => Incarnation::Same,
    }
}

/// Reads and decodes job `key` inside a transaction (aborting with [`StoreError::NoJob`]).
fn job_in_tx(
    jobs: &sled::transaction::TransactionalTree,
    key: &str,
) -> Result<Job, ConflictableTransactionError<StoreError>> {
    let bytes = jobs
        .get(key.as_bytes())?
        .ok_or_else(|| ConflictableTransactionError::Abort(StoreError::NoJob(key.to_string())))?;
    decode(key, &bytes).map_err(ConflictableTransactionError::Abort)
}

/// A Done job's slot in the done index: done time, then sequence number (big-endian, so the
/// index is in completion order).
fn done_slot(done_ms: u64, seq: u64) -> Vec<u8> {
    let mut k = done_ms.to_be_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The entity-index entries of a job (alias and stage changes), key → job key.
fn entity_keys(job: &Job) -> Vec<(String, String)> {
    match &job.event {
        ChangeEvent::AliasChanged { name, alias, .. } => {
            vec![(format!("a/{name}/{alias}"), job.key.clone())]
        }
        ChangeEvent::StageChanged {
            name,
            version,
            to,
            last_updated_ms,
            ..
        } => vec![(
            format!("s/{name}/{version}/{to}/{last_updated_ms}"),
            job.key.clone(),
        )],
        _ => Vec::new(),
    }
}

/// A leaf's slot in the batches tree: the batch, a 0 byte, the job's sequence number.
fn batch_slot(batch: &str, seq: u64) -> Vec<u8> {
    let mut k = batch.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Every (key, decoded value) of a tree, in key order.
fn entries<T: for<'de> Deserialize<'de>>(
    tree: &sled::Tree,
) -> Result<Vec<(String, T)>, StoreError> {
    tree.iter()
        .map(|e| {
            let (k, v) = e?;
            let k = String::from_utf8_lossy(&k).into_owned();
            let value = decode(&k, &v)?;
            Ok((k, value))
        })
        .collect()
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

/// sled's page cache for an on-disk store. sled's default (1 GiB) lets a long-lived service's
/// memory follow the size of its history; the hot set (open jobs, indexes, recent dedupe keys)
/// is a few MiB, and older pages come from the OS page cache when read.
const CACHE_BYTES: u64 = 32 << 20;

impl Store {
    /// Opens (creating) the store at `path`; a store held by another process is a clear error.
    ///
    /// A store whose file is mostly space freed by retention is rewritten first (see
    /// [`shrink`]), and a rewrite a crash interrupted is finished.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open = |path: &Path| {
            sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_BYTES)
                .open()
                .map_err(|e| match e {
                    sled::Error::Io(io)
                        if io.to_string().contains("lock")
                            || io.kind() == std::io::ErrorKind::WouldBlock =>
                    {
                        StoreError::Locked(path.display().to_string())
                    }
                    other => StoreError::Sled(other),
                })
        };
        // Held by another process: refused before anything in the directory is touched.
        let dir_lock = shrink::lock_dir(path)?;
        shrink::recover(path)?;
        let db = open(path)?;
        let (db, _) = shrink::shrink_if_mostly_free(
            db,
            path,
            shrink::SHRINK_MIN_BYTES,
            shrink::SHRINK_RATIO,
            open,
        )?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(v) => {
                let found: u32 = decode("schema_version", &v)?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: path.display().to_string(),
                        found,
                    });
                }
            }
            None => {
                meta.insert("schema_version", encode(&SCHEMA_VERSION))?;
            }
        }
        let mut store = Store::with_trees(db, None)?;
        store.dir_lock = Some(Arc::new(dir_lock));
        if meta.get("open_index")?.is_none() {
            // A store written before the open-jobs index: build it once from the queue.
            for job in store.jobs()? {
                if job.state.is_open() {
                    store
                        .open
                        .insert(job.seq.to_be_bytes(), job.key.as_bytes())?;
                }
            }
            meta.insert("open_index", encode(&true))?;
            store.db.flush()?;
        }
        if meta.get("indexes_v2")?.is_none() {
            // A store written before the parked/done/entity indexes and byte-string encoding:
            // every job is read once, re-encoded (its bytes as base64) and indexed.
            let started = std::time::Instant::now();
            let mut n = 0usize;
            for job in store.jobs()? {
                store.jobs.insert(job.key.as_bytes(), encode(&job))?;
                store.index_job(&job)?;
                for (k, v) in entity_keys(&job) {
                    store.index.insert(k.as_bytes(), v.as_bytes())?;
                }
                n += 1;
            }
            meta.insert("indexes_v2", encode(&true))?;
            store.db.flush()?;
            if n > 0 {
                tracing::info!(
                    jobs = n,
                    took_ms = started.elapsed().as_millis() as u64,
                    "state store migrated (byte strings, parked/done/entity indexes)"
                );
            }
        }
        Ok(store)
    }

    fn with_trees(db: sled::Db, journal: Option<Arc<dyn Journal>>) -> Result<Store, StoreError> {
        let queue = db.open_tree("queue")?;
        let floor = match queue.last()? {
            Some((k, _)) => k
                .as_ref()
                .try_into()
                .map(|b: [u8; 8]| u64::from_be_bytes(b) + 1)
                .unwrap_or(0),
            None => 0,
        };
        let job_total = Arc::new(AtomicU64::new(queue.len() as u64));
        Ok(Store {
            inbox: db.open_tree("inbox")?,
            jobs: db.open_tree("jobs")?,
            queue,
            open: db.open_tree("open")?,
            chains: db.open_tree("chains")?,
            cursors: db.open_tree("cursors")?,
            snapshots: db.open_tree("snapshots")?,
            renames: db.open_tree("renames")?,
            parked: db.open_tree("parked")?,
            done: db.open_tree("done")?,
            index: db.open_tree("index")?,
            batches: db.open_tree("batches")?,
            db,
            seq_floor: Arc::new(AtomicU64::new(floor)),
            job_total,
            journal,
            journal_order: Arc::new(Mutex::new(())),
            flush_lock: Default::default(),
            dir_lock: None,
        })
    }

    /// A throwaway store in a temporary location (for `--dry-run`), removed when dropped.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Store::with_trees(db, None)
    }

    /// A throwaway store whose changes are replicated to `journal` (one Kafka partition's
    /// state: the journal is the durable copy, this store its working cache).
    pub fn journaled(journal: Arc<dyn Journal>) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .cache_capacity(4 << 20)
            .open()?;
        Store::with_trees(db, Some(journal))
    }

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
    fn forget(&self, key: &str) -> Result<(), StoreError> {
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

    /// Brings the parked and done indexes in line with `job` (outside a transaction: restores
    /// and migrations).
    fn index_job(&self, job: &Job) -> Result<(), StoreError> {
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

    /// Whether changes are replicated to a journal (Kafka mode).
    pub fn is_journaled(&self) -> bool {
        self.journal.is_some()
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        let generated = self.db.generate_id()?;
        Ok(generated.max(self.seq_floor.fetch_add(1, Ordering::SeqCst)))
    }

    /// Runs a mutation and hands what it changed to the journal, in order.
    fn journaled_change<T>(
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

    /// Waits until everything written so far is on disk — and, for a journaled store, durable
    /// in the journal.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.journal {
            // The journal is the durable copy; the local store is a temporary cache.
            Some(journal) => journal.commit().await,
            None => {
                // sled 0.34's `flush_async` deadlocks when called concurrently (sled issue
                // #1308, fixed on its main branch, never released): seen here as a hung
                // `backfill` on one CPU, every sled-io thread waiting in `make_stable` and a
                // transaction waiting for their read locks. A blocking `flush` on the blocking
                // pool, one at a time, does the same job without the async flusher.
                let _one = self.flush_lock.lock().await;
                if tokio::runtime::Handle::try_current().is_err() {
                    // Outside a Tokio runtime (a plain executor): flush on this thread.
                    self.db.flush()?;
                    return Ok(());
                }
                let db = self.db.clone();
                tokio::task::spawn_blocking(move || db.flush())
                    .await
                    .map_err(|e| StoreError::Flush(e.to_string()))??;
                Ok(())
            }
        }
    }

    /// [`Self::flush`] for a step whose loss would only repeat idempotent work (publishing a
    /// signed job: MLflow writes, the upload of fixed bytes): a sled store flushes as usual; a
    /// journaled store leaves the record to the next transaction instead of waiting for it.
    pub async fn flush_progress(&self) -> Result<(), StoreError> {
        match &self.journal {
            Some(_) => Ok(()),
            None => self.flush().await,
        }
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

    /// The name the store first knew a renamed model by (`None`: never renamed).
    pub fn first_name(&self, name: &str) -> Option<String> {
        let v = self.renames.get(format!("first/{name}")).ok()??;
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Every rename known: former name → current name.
    pub fn renames(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut out = BTreeMap::new();
        for entry in self.renames.scan_prefix("cur/") {
            let (k, v) = entry?;
            out.insert(
                String::from_utf8_lossy(&k[4..]).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
        Ok(out)
    }

    /// Records that registered model `from` is now called `to`, and moves what the store keeps
    /// under the old name to the new one: the poller's stage and alias snapshots, the training
    /// and checkpoint chain heads (when the new name has none), and every open job's event and
    /// signed MLflow writes (so in-flight jobs follow the model instead of failing on the old
    /// name). Idempotent.
    pub fn record_rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        let first = self.first_name(from).unwrap_or_else(|| from.to_string());
        for entry in self.renames.scan_prefix("cur/") {
            let (k, v) = entry?;
            if v.as_ref() == from.as_bytes() {
                self.renames.insert(k, to.as_bytes())?;
            }
        }
        self.renames.insert(format!("cur/{from}"), to.as_bytes())?;
        self.renames.remove(format!("cur/{to}"))?;
        self.renames.remove(format!("first/{from}"))?;
        if first != to {
            self.renames
                .insert(format!("first/{to}"), first.as_bytes())?;
        } else {
            self.renames.remove(format!("first/{to}"))?;
        }
        // Snapshots: `stage/<name>/<version>` and `aliases/<name>`.
        let stage_prefix = format!("stage/{from}/");
        for entry in self.snapshots.scan_prefix(stage_prefix.as_bytes()) {
            let (k, v) = entry?;
            let version = String::from_utf8_lossy(&k[stage_prefix.len()..]).into_owned();
            if !version.contains('/') {
                self.snapshots
                    .insert(format!("stage/{to}/{version}").as_bytes(), v)?;
                self.snapshots.remove(k)?;
            }
        }
        if let Some(v) = self.snapshots.remove(format!("aliases/{from}"))? {
            self.snapshots.insert(format!("aliases/{to}"), v)?;
        }
        // Chain heads.
        let mut moved = Vec::new();
        let old_rm = format!("rm/{from}");
        let old_checkpoints = format!("mlflow-predictions:{from}/");
        for entry in self.chains.iter() {
            let (k, v) = entry?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let new_key = if key == old_rm {
                format!("rm/{to}")
            } else if let Some(version) = key.strip_prefix(&old_checkpoints) {
                format!("mlflow-predictions:{to}/{version}")
            } else {
                continue;
            };
            if self.chains.get(new_key.as_bytes())?.is_none() {
                moved.push((new_key, decode::<ChainHead>(&key, &v)?));
            }
        }
        for (key, head) in moved {
            self.journaled_change(
                || {
                    self.chains.insert(key.as_bytes(), encode(&head))?;
                    Ok(())
                },
                |_| {
                    vec![JournalEntry::Chain {
                        chain_key: key.clone(),
                        head: head.clone(),
                    }]
                },
            )?;
        }
        // Open jobs follow the model.
        for job in self.open_jobs()? {
            if job.event.model_name() != Some(from)
                && !job.prepared.as_ref().is_some_and(|p| p.names_model(from))
            {
                continue;
            }
            self.update(&job.key, |j| {
                if j.event.model_name() == Some(from) {
                    j.event = j.event.with_model_name(to);
                }
                if let Some(p) = &mut j.prepared {
                    p.rename_model(from, to);
                }
            })?;
        }
        Ok(())
    }

    /// Removes a snapshot (a deleted model's, without events).
    pub fn remove_snapshot(&self, key: &str) -> Result<(), StoreError> {
        self.snapshots.remove(key.as_bytes())?;
        Ok(())
    }

    /// Every snapshot key starting with `prefix`.
    pub fn snapshot_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.snapshots
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// One job.
    pub fn job(&self, key: &str) -> Result<Option<Job>, StoreError> {
        self.jobs
            .get(key.as_bytes())?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Every job, in detection order.
    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self.queue.iter() {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Jobs not yet closed (not Done, Skipped or Parked), in detection order.
    pub fn open_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        for entry in self.open.iter() {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// The earliest-detected open job detected before `seq` that `pred` accepts (reads only
    /// the open jobs before it, in detection order, and stops at the first match).
    pub fn first_open_before(
        &self,
        seq: u64,
        pred: impl Fn(&Job) -> bool,
    ) -> Result<Option<Job>, StoreError> {
        for entry in self.open.range(..seq.to_be_bytes()) {
            let (_, key) = entry?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if let Some(job) = self.job(&key)? {
                if pred(&job) {
                    return Ok(Some(job));
                }
            }
        }
        Ok(None)
    }

    /// How many jobs are not yet closed.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Open jobs that cannot move until someone acts: waiting on a job that is parked (or on
    /// one that itself waits on a parked job). `backfill` is caught up when only these remain.
    pub fn blocked_on_parked(&self) -> Result<Vec<Job>, StoreError> {
        let open = self.open_jobs()?;
        let mut out = Vec::new();
        for job in open {
            let mut on = match &job.state {
                JobState::Waiting { on, .. } => on.clone(),
                _ => continue,
            };
            // Follow the chain of waits (bounded: a cycle is not "blocked on parked").
            for _ in 0..8 {
                match self.job(&on)?.map(|j| j.state) {
                    Some(JobState::Parked { .. }) => {
                        out.push(job);
                        break;
                    }
                    Some(JobState::Waiting { on: next, .. }) => on = next,
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Parked jobs (an index: constant cost however long the history).
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Every job recorded and not forgotten (a counter: constant cost).
    pub fn job_count(&self) -> usize {
        self.job_total.load(Ordering::SeqCst) as usize
    }

    fn uncount_job(&self) {
        let _ = self
            .job_total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Done jobs still holding their prepared event (not compacted yet).
    pub fn uncompacted_done_count(&self) -> usize {
        self.done.len()
    }

    /// The newest job recorded for alias `alias` of model `name` (an index lookup).
    pub fn newest_alias_job(&self, name: &str, alias: &str) -> Result<Option<Job>, StoreError> {
        match self.index.get(format!("a/{name}/{alias}"))? {
            Some(k) => self.job(&String::from_utf8_lossy(&k)),
            None => Ok(None),
        }
    }

    /// Whether a stage change of `name`/`version` to `to` at `last_updated_ms` is recorded.
    pub fn stage_change_seen(
        &self,
        name: &str,
        version: &str,
        to: &str,
        last_updated_ms: i64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .index
            .get(format!("s/{name}/{version}/{to}/{last_updated_ms}"))?
            .is_some())
    }

    /// Open jobs due at `now_ms`, in detection order.
    pub fn due(&self, now: u64) -> Result<Vec<Job>, StoreError> {
        Ok(self
            .open_jobs()?
            .into_iter()
            .filter(|j| {
                j.state.is_open()
                    && !matches!(j.state, JobState::Batched { .. })
                    && j.next_attempt_ms <= now
            })
            .collect())
    }

    /// Applies `change` to a job in one transaction (its open-index entry included) and returns
    /// the new job.
    pub fn update(&self, key: &str, change: impl Fn(&mut Job)) -> Result<Job, StoreError> {
        self.journaled_change(
            || self.update_local(key, &change),
            |job| vec![JournalEntry::Job(Box::new(job.clone()))],
        )
    }

    fn update_local(&self, key: &str, change: &impl Fn(&mut Job)) -> Result<Job, StoreError> {
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

    fn sign_local(
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

    /// A chain's head.
    pub fn chain_head(&self, chain_key: &str) -> Result<Option<ChainHead>, StoreError> {
        self.chains
            .get(chain_key.as_bytes())?
            .map(|v| decode(chain_key, &v))
            .transpose()
    }

    /// Every chain head.
    pub fn chain_heads(&self) -> Result<Vec<(String, ChainHead)>, StoreError> {
        entries(&self.chains)
    }

    /// A source cursor (JSON).
    pub fn cursor(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.cursors
            .get(name.as_bytes())?
            .map(|v| decode(name, &v))
            .transpose()
    }

    /// Saves a source cursor.
    pub fn set_cursor(&self, name: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.cursors.insert(name.as_bytes(), encode(value))?;
        Ok(())
    }

    /// Every cursor.
    pub fn cursors(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        entries(&self.cursors)
    }

    /// What the poller last saw under `key` (a version's stage, a model's aliases).
    pub fn snapshot(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.snapshots
            .get(key.as_bytes())?
            .map(|v| decode(key, &v))
            .transpose()
    }

    /// Saves a snapshot.
    pub fn set_snapshot(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.snapshots.insert(key.as_bytes(), encode(value))?;
        Ok(())
    }

    /// Flushes to disk on this thread (benchmarks, tools; the service uses [`Self::flush`]).
    pub fn flush_blocking(&self) {
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "store flush failed");
        }
    }

    /// Size of the store on disk, in bytes.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(tx: &str) -> Prepared {
        Prepared {
            event_type: "training_complete".into(),
            subject: "r".into(),
            payload_hash: "h".into(),
            payload_bytes: b"{}".to_vec(),
            envelope: serde_json::json!({}),
            item: vec![1],
            tx_id: tx.into(),
            signed_writes: vec![],
            anchored_writes: vec![],
        }
    }

    #[test]
    fn detection_is_idempotent_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ChangeEvent::run("a");
        let b = ChangeEvent::TraceLogged {
            trace_id: "t".into(),
        };
        assert!(store.detect(&a).unwrap());
        assert!(store.detect(&b).unwrap());
        assert!(!store.detect(&a).unwrap(), "the same dedupe key is one job");
        let keys: Vec<String> = store.jobs().unwrap().into_iter().map(|j| j.key).collect();
        assert_eq!(keys, ["run/a", "trace/t"]);
        assert_eq!(store.job_count(), 2);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.job_count(), 2, "counted again on open");
    }

    #[test]
    fn the_job_count_follows_restores_and_tombstones() {
        let source = Store::temporary().unwrap();
        for id in ["a", "b", "c"] {
            source.detect(&ChangeEvent::run(id)).unwrap();
        }
        let store = Store::temporary().unwrap();
        for job in source.jobs().unwrap() {
            store
                .restore(JournalEntry::Job(Box::new(job.clone())))
                .unwrap();
            // A later record of the same job replaces it.
            store.restore(JournalEntry::Job(Box::new(job))).unwrap();
        }
        assert_eq!(store.job_count(), 3);
        store
            .restore(JournalEntry::Removed {
                job: "run/b".into(),
            })
            .unwrap();
        store
            .restore(JournalEntry::Removed {
                job: "run/b".into(),
            })
            .unwrap();
        assert_eq!((store.job_count(), store.queue.len()), (2, 2));
        assert!(store.detect(&ChangeEvent::run("d")).unwrap());
        assert_eq!(store.job_count(), 3);
    }

    #[test]
    fn jobs_waiting_on_parked_jobs_are_blocked_and_others_are_not() {
        let store = Store::temporary().unwrap();
        for id in ["a", "b"] {
            store.detect(&ChangeEvent::run(id)).unwrap();
        }
        for (name, on) in [("m", "run/a"), ("n", "run/b"), ("o", "mv/m/1")] {
            store
                .detect(&ChangeEvent::ModelVersionCreated {
                    name: name.into(),
                    version: "1".into(),
                    created_ms: None,
                })
                .unwrap();
            store
                .update(&format!("mv/{name}/1"), |j| {
                    j.state = JobState::Waiting {
                        on: on.into(),
                        since_ms: 0,
                    }
                })
                .unwrap();
        }
        store
            .update("run/a", |j| {
                j.state = JobState::Parked { error: "x".into() }
            })
            .unwrap();
        let blocked: Vec<String> = store
            .blocked_on_parked()
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        // mv/m/1 waits on parked run/a; mv/o/1 waits on mv/m/1; mv/n/1 waits on open run/b.
        assert_eq!(blocked, ["mv/m/1", "mv/o/1"]);
    }

    #[test]
    fn only_open_jobs_are_indexed_for_due_work() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for id in ["a", "b", "c"] {
                store.detect(&ChangeEvent::run(id)).unwrap();
            }
            assert_eq!(store.open_count(), 3);
            store.update("run/a", |j| j.state = JobState::Done).unwrap();
            store
                .update("run/b", |j| {
                    j.state = JobState::Parked { error: "x".into() }
                })
                .unwrap();
            let due: Vec<String> = store
                .due(u64::MAX)
                .unwrap()
                .into_iter()
                .map(|j| j.key)
                .collect();
            assert_eq!(due, ["run/c"]);
            assert_eq!(
                store.jobs().unwrap().len(),
                3,
                "closed jobs stay for status"
            );
            // Re-opening (retry) puts the job back in the index, in detection order.
            store
                .update("run/b", |j| j.state = JobState::Detected)
                .unwrap();
            let due: Vec<String> = store
                .due(u64::MAX)
                .unwrap()
                .into_iter()
                .map(|j| j.key)
                .collect();
            assert_eq!(due, ["run/b", "run/c"]);
            // A store written before the index existed: drop it and its marker.
            store.open.clear().unwrap();
            store
                .db
                .open_tree("meta")
                .unwrap()
                .remove("open_index")
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.open_count(), 2, "rebuilt from the jobs on open");
        let due: Vec<String> = store
            .due(u64::MAX)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(due, ["run/b", "run/c"]);
    }

    #[test]
    fn a_job_is_signed_once_and_its_chain_head_moves_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.detect(&ChangeEvent::run("a")).unwrap();
        let job = store
            .sign("run/a", &prepared("tx1"), Some(("rm/m", "hash-a")))
            .unwrap();
        assert_eq!(job.state, JobState::Signed);
        assert_eq!(
            store.chain_head("rm/m").unwrap().unwrap(),
            ChainHead {
                head: "hash-a".into(),
                job: "run/a".into()
            }
        );
        let again = store.sign("run/a", &prepared("tx2"), Some(("rm/m", "hash-b")));
        assert!(again.is_err(), "never signed twice");
        assert_eq!(
            store.chain_head("rm/m").unwrap().unwrap().head,
            "hash-a",
            "a refused signing leaves the head alone"
        );
        assert_eq!(
            store.job("run/a").unwrap().unwrap().prepared.unwrap().tx_id,
            "tx1"
        );
    }

    #[test]
    fn everything_survives_a_reopen_and_a_second_opener_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .detect(&ChangeEvent::ModelVersionCreated {
                    name: "m".into(),
                    version: "1".into(),
                    created_ms: None,
                })
                .unwrap();
            store
                .update("mv/m/1", |j| {
                    j.state = JobState::Parked {
                        error: "HTTP 402".into(),
                    }
                })
                .unwrap();
            store
                .set_cursor("poller", &serde_json::json!({"wm": 5}))
                .unwrap();
            assert!(matches!(
                Store::open(dir.path()),
                Err(StoreError::Locked(_)) | Err(StoreError::Sled(_))
            ));
            futures::executor::block_on(store.flush()).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.job("mv/m/1").unwrap().unwrap().state,
            JobState::Parked {
                error: "HTTP 402".into()
            }
        );
        assert_eq!(
            store.cursor("poller").unwrap(),
            Some(serde_json::json!({"wm": 5}))
        );
        assert!(
            store.due(u64::MAX).unwrap().is_empty(),
            "parked jobs are not due"
        );
    }

    #[test]
    fn a_job_skipped_as_gone_reopens_when_seen_again_and_others_do_not() {
        let store = Store::temporary().unwrap();
        let run = ChangeEvent::run_finished("r", Some(5));
        assert!(store.detect(&run).unwrap());
        let skip = |redetect: bool| JobState::Skipped {
            reason: "run deleted".into(),
            kind: Some("gone".into()),
            redetect,
        };
        store.update("run/r@5", |j| j.state = skip(true)).unwrap();
        assert_eq!(store.open_count(), 0);
        assert!(store.detect(&run).unwrap(), "restored: reopened");
        let job = store.job("run/r@5").unwrap().unwrap();
        assert_eq!(job.state, JobState::Detected);
        assert_eq!(store.open_count(), 1);
        store.update("run/r@5", |j| j.state = skip(false)).unwrap();
        assert!(
            !store.detect(&run).unwrap(),
            "an ordinary skip absorbs repeats"
        );
    }

    #[test]
    fn a_recreated_version_is_a_new_job_and_the_old_one_moves_aside() {
        let store = Store::temporary().unwrap();
        let mv = |created: Option<i64>| ChangeEvent::ModelVersionCreated {
            name: "m".into(),
            version: "1".into(),
            created_ms: created,
        };
        // A webhook (no creation time), then the poller: the same version, learnt.
        assert!(store.detect(&mv(None)).unwrap());
        assert!(!store.detect(&mv(Some(10))).unwrap());
        store
            .update("mv/m/1", |j| j.state = JobState::Done)
            .unwrap();
        assert!(!store.detect(&mv(Some(10))).unwrap());
        // Deleted and re-created: another creation time is another version.
        assert!(store.detect(&mv(Some(20))).unwrap());
        let new = store.job("mv/m/1").unwrap().unwrap();
        assert_eq!(new.state, JobState::Detected);
        assert!(matches!(
            &new.event,
            ChangeEvent::ModelVersionCreated {
                created_ms: Some(20),
                ..
            }
        ));
        let old = store.job("mv/m/1@10").unwrap().unwrap();
        assert_eq!(
            (old.key.as_str(), &old.state),
            ("mv/m/1@10", &JobState::Done)
        );
        assert_eq!(store.jobs().unwrap().len(), 2);
        assert_eq!(
            store.job_count(),
            store.queue.len(),
            "the counter follows the queue"
        );
    }

    #[test]
    fn a_rename_moves_snapshots_chains_and_open_jobs_and_keys_stay_one() {
        let store = Store::temporary().unwrap();
        store
            .set_snapshot("stage/old/1", &serde_json::json!("Staging"))
            .unwrap();
        store
            .set_snapshot("aliases/old", &serde_json::json!({"live": "1"}))
            .unwrap();
        store
            .detect(&ChangeEvent::ModelVersionCreated {
                name: "old".into(),
                version: "2".into(),
                created_ms: Some(3),
            })
            .unwrap();
        store.detect(&ChangeEvent::run("r")).unwrap();
        store
            .sign("run/r", &prepared("tx"), Some(("rm/old", "h1")))
            .unwrap();
        store.record_rename("old", "new").unwrap();
        assert_eq!(
            store.snapshot("stage/new/1").unwrap(),
            Some(serde_json::json!("Staging"))
        );
        assert_eq!(store.snapshot("stage/old/1").unwrap(), None);
        assert!(store.snapshot("aliases/new").unwrap().is_some());
        assert_eq!(store.chain_head("rm/new").unwrap().unwrap().head, "h1");
        let open = store.job("mv/old/2").unwrap().unwrap();
        assert_eq!(
            open.event.model_name(),
            Some("new"),
            "the open job follows the model"
        );
        // Seen again under the new name: the same job.
        assert!(!store
            .detect(&ChangeEvent::ModelVersionCreated {
                name: "new".into(),
                version: "2".into(),
                created_ms: Some(3),
            })
            .unwrap());
        assert_eq!(
            store.renames().unwrap().get("old").map(String::as_str),
            Some("new")
        );
        // Renamed again: the first name still keys it; back to the first name: no rename left.
        store.record_rename("new", "newer").unwrap();
        assert_eq!(store.first_name("newer").as_deref(), Some("old"));
        assert_eq!(
            store.renames().unwrap().get("old").map(String::as_str),
            Some("newer")
        );
        store.record_rename("newer", "old").unwrap();
        assert_eq!(store.first_name("old"), None);
        assert!(!store.renames().unwrap().contains_key("old"));
    }

    #[test]
    fn done_jobs_past_retention_keep_only_their_summary_and_stay_deduped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in ["a", "b"] {
            store.detect(&ChangeEvent::run(id)).unwrap();
        }
        let mut p = prepared("tx-a");
        p.envelope = serde_json::json!({"previous_hash": "GENESIS"});
        p.payload_bytes = vec![7; 2000];
        store.sign("run/a", &p, Some(("exp/1", "h"))).unwrap();
        store.update("run/a", |j| j.state = JobState::Done).unwrap();
        store
            .update("run/b", |j| {
                j.state = JobState::Parked { error: "x".into() }
            })
            .unwrap();
        assert_eq!(store.parked_count(), 1);
        assert_eq!(store.uncompacted_done_count(), 1);
        let before = store.jobs.get("run/a").unwrap().unwrap().len();
        // Not due yet.
        assert_eq!(store.compact(0).unwrap(), 0);
        assert_eq!(store.compact(now_ms() + 1).unwrap(), 1);
        let job = store.job("run/a").unwrap().unwrap();
        assert!(job.prepared.is_none());
        assert_eq!(job.tx_id(), Some("tx-a"));
        assert_eq!(job.summary.as_ref().unwrap().previous_hash, "GENESIS");
        let after = store.jobs.get("run/a").unwrap().unwrap().len();
        assert!(after * 5 < before, "{before} → {after} bytes");
        assert!(
            !store.detect(&ChangeEvent::run("a")).unwrap(),
            "still deduped"
        );
        assert_eq!(store.uncompacted_done_count(), 0);
        assert_eq!(store.compact(now_ms() + 1).unwrap(), 0, "compacted once");
        // Retried, a parked job leaves the parked index.
        store
            .update("run/b", |j| j.state = JobState::Detected)
            .unwrap();
        assert_eq!(store.parked_count(), 0);
    }

    /// Records what a journaled store hands its journal, as the Kafka state topic would.
    #[derive(Debug, Default)]
    struct RecordingJournal(std::sync::Mutex<Vec<JournalEntry>>);

    impl Journal for RecordingJournal {
        fn record(&self, entries: Vec<JournalEntry>) {
            self.0.lock().unwrap().extend(entries);
        }
        fn commit(&self) -> futures::future::BoxFuture<'static, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
        fn derived(&self, _: &ChangeEvent) -> bool {
            false
        }
    }

    #[test]
    fn a_compacted_job_is_a_tombstone_on_the_journal_and_a_restore_keeps_the_chain() {
        let journal = Arc::new(RecordingJournal::default());
        let store = Store::journaled(journal.clone()).unwrap();
        for id in ["a", "b"] {
            store.detect(&ChangeEvent::run(id)).unwrap();
        }
        let mut p = prepared("tx-a");
        p.envelope = serde_json::json!({"previous_hash": "GENESIS"});
        store.sign("run/a", &p, Some(("exp/1", "h-a"))).unwrap();
        store.update("run/a", |j| j.state = JobState::Done).unwrap();
        assert_eq!(store.compact(now_ms() + 1).unwrap(), 1);
        let entries = journal.0.lock().unwrap().clone();
        let last = entries.last().unwrap();
        assert!(last.is_tombstone(), "{last:?}");
        assert_eq!(last.key(), "job/run/a");
        // A compacted topic keeps the last record per key; a new owner restores from it.
        let mut latest: BTreeMap<String, JournalEntry> = BTreeMap::new();
        for e in entries {
            latest.insert(e.key(), e);
        }
        let restored = Store::journaled(Arc::new(RecordingJournal::default())).unwrap();
        for e in latest.into_values() {
            restored.restore(e).unwrap();
        }
        assert!(restored.job("run/a").unwrap().is_none(), "tombstoned");
        assert_eq!(restored.job_count(), 1, "run/b only");
        assert_eq!(restored.chain_head("exp/1").unwrap().unwrap().head, "h-a");
        assert!(restored
            .job("run/b")
            .unwrap()
            .is_some_and(|j| j.state.is_open()));
    }

    #[test]
    fn an_old_store_migrates_on_open_keeping_dedupe_chains_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.detect(&ChangeEvent::run("a")).unwrap();
            store
                .sign("run/a", &prepared("tx-a"), Some(("exp/1", "h1")))
                .unwrap();
            store.detect(&ChangeEvent::run("p")).unwrap();
            store
                .update("run/p", |j| {
                    j.state = JobState::Parked { error: "x".into() }
                })
                .unwrap();
            // As an older build wrote it: bytes as arrays of numbers, no indexes.
            let job = store.job("run/a").unwrap().unwrap();
            let mut v = serde_json::to_value(&job).unwrap();
            v["prepared"]["item"] = serde_json::json!([1, 2, 3]);
            v["prepared"]["payload_bytes"] = serde_json::json!([123, 125]);
            store
                .jobs
                .insert("run/a", serde_json::to_vec(&v).unwrap())
                .unwrap();
            store.parked.clear().unwrap();
            store
                .db
                .open_tree("meta")
                .unwrap()
                .remove("indexes_v2")
                .unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let job = store.job("run/a").unwrap().unwrap();
        assert_eq!(job.prepared.as_ref().unwrap().item, vec![1, 2, 3]);
        let raw = String::from_utf8(store.jobs.get("run/a").unwrap().unwrap().to_vec()).unwrap();
        assert!(raw.contains(r#""item":"AQID""#), "re-encoded: {raw}");
        assert_eq!(store.parked_count(), 1, "the parked index is built");
        assert_eq!(store.chain_head("exp/1").unwrap().unwrap().head, "h1");
        assert!(!store.detect(&ChangeEvent::run("a")).unwrap());
    }

    #[test]
    fn alias_and_stage_changes_are_found_by_index() {
        let store = Store::temporary().unwrap();
        let alias = |version: &str, seen_ms| ChangeEvent::AliasChanged {
            name: "m".into(),
            alias: "champion".into(),
            version: Some(version.into()),
            previous: None,
            seen_ms,
        };
        store.detect(&alias("1", 1)).unwrap();
        store.detect(&alias("2", 2)).unwrap();
        let newest = store.newest_alias_job("m", "champion").unwrap().unwrap();
        assert_eq!(newest.key, "alias/m/champion/2/2");
        store
            .detect(&ChangeEvent::StageChanged {
                name: "m".into(),
                version: "1".into(),
                from: "None".into(),
                to: "Staging".into(),
                last_updated_ms: 5,
            })
            .unwrap();
        assert!(store.stage_change_seen("m", "1", "Staging", 5).unwrap());
        assert!(!store.stage_change_seen("m", "1", "Staging", 6).unwrap());
    }
}
