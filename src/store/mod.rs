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
//! * signing stores the [`Prepared`](prepared::Prepared) event *and* advances the chain head in one transaction, so a
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

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::event::ChangeEvent;

mod batches;
mod error;
mod job;
mod jobs;
mod journal;
pub mod live;
mod names;
pub mod prepared;
mod queries;
pub mod report;
pub mod shrink;

pub use error::StoreError;
pub use job::{ChainHead, Job, JobState, JobSummary};
pub use journal::{Journal, JournalEntry};
pub use live::{LiveStores, StoreScope};
pub use report::{ParkedJob, StoreReport};

/// Version of the on-disk layout.
pub const SCHEMA_VERSION: u32 = 1;

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
/// fits in a few MiB, and older pages come from the OS page cache when read. At 32 MiB the
/// worker's memory still grew with its store through a 30-minute soak; at 4 MiB a steady
/// stream of 10,000 jobs runs at the same speed in flat memory (BENCHMARKS.md, *Soak*).
const CACHE_BYTES: u64 = 4 << 20;

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
        // This process may have just dropped a handle on `path` (a partition handed back and
        // re-assigned, a store reopened): sled releases its file lock a moment later.
        let db = shrink::reopen_when_released(path, &open)?;
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

    /// Whether changes are replicated to a journal (Kafka mode).
    pub fn is_journaled(&self) -> bool {
        self.journal.is_some()
    }

    fn next_seq(&self) -> Result<u64, StoreError> {
        let generated = self.db.generate_id()?;
        Ok(generated.max(self.seq_floor.fetch_add(1, Ordering::SeqCst)))
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
mod tests;
