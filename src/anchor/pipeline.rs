//! The job state machine of DESIGN.md §3, driving jobs kept in the [`Store`].
//!
//! ```text
//! Detected ─► Waiting(dep)? ─► Signed ─► SignedWritten ─► Uploaded ─► Done
//!     │            │             │             │              │
//!     └────────────┴─────────────┴─────────────┴──────────────┴─► Parked(error) ─► (retry)
//! ```
//!
//! Each step is one store transaction, flushed before the side effect that depends on it:
//! * **sign** fixes the payload, envelope and data item (and moves the chain head) in one
//!   transaction — a signed job is never signed again; after a crash the same bytes are uploaded;
//! * step-1 writes, upload and step-2 writes are idempotent and resumable from the stored
//!   [`Prepared`] event.
//!
//! Two stages run concurrently, each with its own bound:
//! * **resolve** reads MLflow and builds payloads for up to `resolve_concurrency` jobs at once,
//!   but commits (signs) them strictly in detection order — a training run is signed onto its
//!   chain's head only at commit time, so one chain is signed in detection order and never
//!   forks;
//! * **publish** (step-1 writes, upload, step-2 writes) runs up to `publish_concurrency` signed
//!   jobs at once; jobs of one chain move the MLflow chain-head tag under a per-chain lock and
//!   only to the newest signed head.
//!
//! A job that fails before signing backs off without blocking its chain: later events of that
//! chain are signed meanwhile and the failed one is signed onto the head it finds when it
//! succeeds (the chain stays linear). Transient failures back off exponentially with jitter; permanent ones park the job with the
//! error, to be retried with `retry` once fixed. A dependency that never resolves (a source run
//! that never finishes) is waited for a bounded time, then the event is anchored on GENESIS with
//! the reason logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt, TryStreamExt};

use super::checkpoint::{CheckpointConfig, Leaf};
use super::prepared::{Prepared, Publisher};
use super::registration::{registration_anchored_writes, registration_source_run};
use super::training::training_anchored_writes;
use super::{AnchorError, Anchorer};
use crate::arweave::Receipt;
use crate::event::{ChainOwner, ChangeEvent};
use crate::mlflow::{MlflowError, Run};
use crate::profile::alias::AliasAction;
use crate::profile::{dataset, prediction, registration, tags, training};
use crate::proof::sha256_hex;
use crate::store::{Job, JobState, Store, StoreError};

/// Pipeline tuning.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// First retry delay after a transient failure.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How often a waiting job re-checks its dependency.
    pub wait_recheck: Duration,
    /// How long a dependency is waited for before anchoring on GENESIS.
    pub max_dependency_wait: Duration,
    /// Jobs resolved (MLflow reads, payload building) at once.
    pub resolve_concurrency: usize,
    /// Signed jobs published (writes, upload) at once.
    pub publish_concurrency: usize,
    /// The `source` label of this pipeline's metrics (`poll` or `kafka`).
    pub metrics_source: &'static str,
    /// Merkle-batched predictions (`--predictions batched`); `None`: one proof per trace.
    pub checkpoints: Option<CheckpointConfig>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            wait_recheck: Duration::from_secs(2),
            max_dependency_wait: Duration::from_secs(3600),
            resolve_concurrency: 4,
            publish_concurrency: 8,
            metrics_source: "poll",
            checkpoints: None,
        }
    }
}

/// Counts of one drain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainStats {
    /// Steps taken.
    pub steps: u64,
    /// Jobs that reached Done.
    pub done: u64,
    /// Jobs skipped (anchored elsewhere, deleted).
    pub skipped: u64,
    /// Jobs parked.
    pub parked: u64,
}

/// What resolving a job decided.
enum Resolution {
    /// Sign: the prepared event, the chain (key, new head) it moves, datasets to enqueue.
    Sign(
        Box<Prepared>,
        Option<(String, String)>,
        Vec<(String, String)>,
    ),
    /// A training payload to sign onto its chain's head at commit time.
    Seal(Box<TrainingDraft>),
    Skip(String),
    Wait(String),
    /// A prediction fixed as a leaf of its version's checkpoint batch.
    Leaf(Box<Leaf>),
}

/// A training run's payload, built concurrently, waiting for its chain head.
struct TrainingDraft {
    run: Run,
    payload: serde_json::Value,
    checksums: BTreeMap<String, String>,
    owner: ChainOwner,
    /// The head MLflow's tag gave, used when the store knows no head for the chain.
    mlflow_head: String,
    datasets: Vec<(String, String)>,
}

/// The state machine over a store.
pub struct Pipeline {
    /// Anchoring parts (MLflow, Turbo, keys), shared by every pipeline of the process.
    pub anchorer: Arc<Anchorer>,
    /// Durable state.
    pub store: Store,
    /// Tuning.
    pub config: PipelineConfig,
    /// One lock per training chain, held while a job moves the chain's MLflow head tag.
    pub chain_locks: ChainLocks,
}

/// Per-chain locks for the publish stage.
#[derive(Default)]
pub struct ChainLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ChainLocks {
    fn get(&self, chain_key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(chain_key.to_string()).or_default().clone()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Pipeline {
    /// A pipeline over `store`.
    pub fn new(anchorer: Anchorer, store: Store, config: PipelineConfig) -> Self {
        Pipeline::shared(Arc::new(anchorer), store, config)
    }

    /// A pipeline over `store` sharing `anchorer` with others (one per Kafka partition).
    pub fn shared(anchorer: Arc<Anchorer>, store: Store, config: PipelineConfig) -> Self {
        Pipeline {
            anchorer,
            store,
            config,
            chain_locks: ChainLocks::default(),
        }
    }

    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            mlflow: &self.anchorer.mlflow,
            turbo: &self.anchorer.turbo,
            gateway_host: &self.anchorer.gateway_host,
        }
    }

    /// Advances due jobs until none is due or `stop` says so; every job is advanced as far as it
    /// goes in one call.
    pub async fn drain(&self, stop: &AtomicBool) -> Result<DrainStats, StoreError> {
        self.drain_with(stop, |_| {}).await
    }

    /// [`Self::drain`], calling `on_step` with each job after each step (progress reporting).
    pub async fn drain_with(
        &self,
        stop: &AtomicBool,
        on_step: impl FnMut(&Job),
    ) -> Result<DrainStats, StoreError> {
        let stats = Mutex::new(DrainStats::default());
        let on_step = Mutex::new(on_step);
        let record = |job: &Job| {
            {
                let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
                st.steps += 1;
                match job.state {
                    JobState::Done => st.done += 1,
                    JobState::Skipped { .. } => st.skipped += 1,
                    JobState::Parked { .. } => st.parked += 1,
                    _ => {}
                }
            }
            (on_step.lock().unwrap_or_else(|p| p.into_inner()))(job);
        };
        loop {
            self.seal_batches(false).await?;
            let mut due = self.store.due(now_ms())?;
            if due.is_empty() && self.seal_batches(true).await? > 0 {
                due = self.store.due(now_ms())?;
            }
            if due.is_empty() || stop.load(Ordering::SeqCst) {
                break;
            }
            let (resolving, publishing): (Vec<Job>, Vec<Job>) = due
                .into_iter()
                .partition(|j| matches!(j.state, JobState::Detected | JobState::Waiting { .. }));
            // Predictions come in volume: read their traces in bulk before resolving them.
            let traces: Vec<String> = resolving
                .iter()
                .filter_map(|j| match &j.event {
                    ChangeEvent::TraceLogged { trace_id } => Some(trace_id.clone()),
                    _ => None,
                })
                .collect();
            self.anchorer.prefetch_traces(&traces).await;
            // Signed jobs flow from the resolve stage straight into the publish stage.
            let (mut signed_tx, signed_rx) = futures::channel::mpsc::unbounded::<Job>();
            for job in publishing {
                let _ = signed_tx.unbounded_send(job);
            }
            let resolve = async move {
                let mut resolved = futures::stream::iter(resolving)
                    .map(|job| async move {
                        if stop.load(Ordering::SeqCst) {
                            return (job, None);
                        }
                        let r = self.resolve(&job).await;
                        (job, Some(r))
                    })
                    .buffered(self.config.resolve_concurrency.max(1));
                // `buffered` yields in detection order: commits (signing) are sequential.
                while let Some((job, r)) = resolved.next().await {
                    let Some(r) = r else { continue };
                    let after = self.settle(&job, r)?;
                    self.store.flush().await?;
                    record(&after);
                    if after.state == JobState::Signed {
                        let _ = signed_tx.send(after).await;
                    }
                }
                drop(signed_tx);
                Ok::<(), StoreError>(())
            };
            let publish = signed_rx
                .map(Ok::<Job, StoreError>)
                .try_for_each_concurrent(self.config.publish_concurrency.max(1), |job| {
                    self.publish(job, stop, &record)
                });
            tokio::try_join!(resolve, publish)?;
        }
        Ok(stats.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// Publishes one signed job as far as it goes (until done, parked, backing off or stopped).
    async fn publish(
        &self,
        mut job: Job,
        stop: &AtomicBool,
        record: &impl Fn(&Job),
    ) -> Result<(), StoreError> {
        while !stop.load(Ordering::SeqCst)
            && matches!(
                job.state,
                JobState::Signed | JobState::SignedWritten | JobState::Uploaded { .. }
            )
            && job.next_attempt_ms <= now_ms()
        {
            job = self.step(job).await?;
            record(&job);
        }
        Ok(())
    }

    /// Takes one step of one job and returns it as stored afterwards.
    pub async fn step(&self, job: Job) -> Result<Job, StoreError> {
        let key = job.key.clone();
        let publisher = self.publisher();
        let missing =
            || AnchorError::Inconsistent(format!("{key}: signed job without its prepared event"));
        let result: Result<JobState, AnchorError> = match (&job.state, &job.prepared) {
            (JobState::Detected | JobState::Waiting { .. }, _) => {
                let r = self.resolve(&job).await;
                let after = self.settle(&job, r)?;
                self.store.flush().await?;
                return Ok(after);
            }
            (JobState::Signed, Some(p)) => publisher
                .write_signed(p)
                .await
                .map(|()| JobState::SignedWritten)
                .map_err(AnchorError::from),
            (JobState::SignedWritten, Some(p)) => publisher
                .upload(p)
                .await
                .map(|receipt| JobState::Uploaded {
                    // A receipt is plain strings and numbers: it always has a JSON form.
                    receipt: receipt.and_then(|r| serde_json::to_value(r).ok()),
                })
                .map_err(AnchorError::from),
            (JobState::Uploaded { receipt }, Some(p)) => {
                match receipt
                    .as_ref()
                    .map(|v| serde_json::from_value::<Receipt>(v.clone()))
                    .transpose()
                {
                    Ok(receipt) => self
                        .write_anchored(&job, p, receipt.as_ref())
                        .await
                        .map(|()| JobState::Done),
                    Err(e) => Err(AnchorError::Inconsistent(format!(
                        "{key}: the stored upload receipt cannot be read ({e})"
                    ))),
                }
            }
            (JobState::Signed | JobState::SignedWritten | JobState::Uploaded { .. }, None) => {
                Err(missing())
            }
            (
                JobState::Done
                | JobState::Skipped { .. }
                | JobState::Parked { .. }
                | JobState::Batched { .. }
                | JobState::Sealed { .. },
                _,
            ) => return Ok(job),
        };
        let after = match result {
            Ok(state) => self.store.update(&key, |j| {
                j.state = state.clone();
                j.last_error = None;
                j.next_attempt_ms = 0;
                // Backoff grows over consecutive failures of one step, not over a job's life.
                j.attempts = 0;
            })?,
            Err(e) => self.failed(&job, e)?,
        };
        // After signing, every step only repeats idempotent work if its record is lost, so a
        // journaled store need not wait for its transaction here (sled still flushes).
        self.store.flush_progress().await?;
        if after.state == JobState::Done {
            tracing::info!(job = %key, tx = %after.prepared.as_ref().map(|p| p.tx_id.as_str()).unwrap_or(""), "anchored");
        }
        self.count(&after);
        Ok(after)
    }

    /// Records what resolving decided (or the failure), signing a training draft onto its
    /// chain's current head. Called in detection order, never concurrently.
    fn settle(&self, job: &Job, r: Result<Resolution, AnchorError>) -> Result<Job, StoreError> {
        let r = match r {
            Ok(Resolution::Seal(draft)) => self.seal(*draft),
            other => other,
        };
        let after = match r {
            Ok(r) => self.apply_resolution(job, r),
            Err(e) => self.failed(job, e),
        }?;
        self.count(&after);
        Ok(after)
    }

    /// Signs a training draft onto the head the store knows for its chain (or MLflow's).
    fn seal(&self, d: TrainingDraft) -> Result<Resolution, AnchorError> {
        let chain_key = d.owner.chain_key();
        let previous = self
            .store
            .chain_head(&chain_key)?
            .map(|h| h.head)
            .unwrap_or(d.mlflow_head);
        let prepared =
            self.anchorer
                .seal_training(&d.run, &d.payload, &d.checksums, &previous, &d.owner)?;
        let head = prepared.payload_hash.clone();
        Ok(Resolution::Sign(
            Box::new(prepared),
            Some((chain_key, head)),
            d.datasets,
        ))
    }

    /// Step-2 writes. A training job moves its chain's MLflow head tag only while it is the
    /// newest signed job of the chain (under the chain's lock), so concurrent publishing never
    /// moves the tag backwards.
    async fn write_anchored(
        &self,
        job: &Job,
        p: &Prepared,
        receipt: Option<&Receipt>,
    ) -> Result<(), AnchorError> {
        let publisher = self.publisher();
        let Some(chain_key) = &job.chain_key else {
            return Ok(publisher.write_anchored(p, receipt).await?);
        };
        let lock = self.chain_locks.get(chain_key);
        let _held = lock.lock().await;
        let newest = self
            .store
            .chain_head(chain_key)?
            .is_none_or(|h| h.job == job.key);
        if newest {
            return Ok(publisher.write_anchored(p, receipt).await?);
        }
        let mut older = p.clone();
        older.anchored_writes.retain(|w| !w.moves_chain_head());
        Ok(publisher.write_anchored(&older, receipt).await?)
    }

    /// Records a resolution. Signing is the one transaction that stores the prepared event and
    /// moves the chain head; a signed training run's datasets become jobs of their own.
    fn apply_resolution(&self, job: &Job, r: Resolution) -> Result<Job, StoreError> {
        match r {
            Resolution::Sign(prepared, chain, datasets) => {
                // The datasets are detected *before* the run is signed: sled recovers a prefix
                // of its log, so a crash can never keep the signature and lose them (a signed
                // run is never resolved again, and nothing else detects its datasets).
                if let ChangeEvent::RunFinished { run_id, .. } = &job.event {
                    for (name, digest) in datasets {
                        self.store.detect_derived(&ChangeEvent::DatasetInput {
                            run_id: run_id.clone(),
                            name,
                            digest,
                        })?;
                    }
                }
                self.store.sign(
                    &job.key,
                    &prepared,
                    chain.as_ref().map(|(k, h)| (k.as_str(), h.as_str())),
                )
            }
            Resolution::Leaf(leaf) => {
                let value = serde_json::to_value(&*leaf).unwrap_or_default();
                self.store.add_leaf(&job.key, &leaf.batch(), &value)
            }
            Resolution::Seal(_) => Err(StoreError::Corrupt {
                key: job.key.clone(),
                cause: "training draft reached the store unsealed".into(),
            }),
            Resolution::Skip(reason) => {
                tracing::info!(job = %job.key, %reason, "skipped");
                self.store.update(&job.key, |j| {
                    j.state = JobState::Skipped {
                        reason: reason.clone(),
                    }
                })
            }
            Resolution::Wait(on) => {
                tracing::debug!(job = %job.key, %on, "waiting on a dependency");
                let since = match &job.state {
                    JobState::Waiting { since_ms, .. } => *since_ms,
                    _ => now_ms(),
                };
                let next = now_ms() + self.config.wait_recheck.as_millis() as u64;
                self.store.update(&job.key, |j| {
                    j.state = JobState::Waiting {
                        on: on.clone(),
                        since_ms: since,
                    };
                    j.next_attempt_ms = next;
                })
            }
        }
    }

    /// Counts a job's new state in the metrics (terminal states and failed attempts).
    fn count(&self, after: &Job) {
        use crate::telemetry as t;
        let event_type = after.event.event_type();
        let source = self.config.metrics_source;
        match &after.state {
            JobState::Done => {
                t::job_outcome(t::EVENTS_ANCHORED, event_type, source);
                let age = now_ms().saturating_sub(after.detected_ms);
                t::anchored_after(event_type, Duration::from_millis(age));
            }
            JobState::Skipped { .. } => t::job_outcome(t::EVENTS_SKIPPED, event_type, source),
            JobState::Parked { .. } => t::job_outcome(t::EVENTS_PARKED, event_type, source),
            _ if after.last_error.is_some() && after.attempts > 0 => {
                t::job_outcome(t::EVENTS_FAILED, event_type, source)
            }
            _ => {}
        }
    }

    fn failed(&self, job: &Job, e: AnchorError) -> Result<Job, StoreError> {
        let permanent = match &e {
            AnchorError::Upload(t) => t.is_permanent(),
            AnchorError::Mlflow(m) => !m.is_transient(),
            AnchorError::Payload(_) | AnchorError::Event(_) | AnchorError::Inconsistent(_) => true,
            AnchorError::NotReady(_) => false,
        };
        let message = e.to_string();
        let attempts = job.attempts + 1;
        let backoff = self
            .config
            .min_backoff
            .saturating_mul(1u32 << attempts.min(16))
            .min(self.config.max_backoff);
        let jitter = fastrand::u64(0..=backoff.as_millis() as u64 / 4 + 1);
        let next = now_ms() + backoff.as_millis() as u64 + jitter;
        if permanent {
            tracing::warn!(job = %job.key, error = %message, "parked");
        } else {
            tracing::warn!(job = %job.key, error = %message, retry_in_ms = next - now_ms(), "transient failure; will retry");
        }
        self.store.update(&job.key, |j| {
            j.attempts = attempts;
            j.last_error = Some(message.clone());
            if permanent {
                j.state = JobState::Parked {
                    error: message.clone(),
                };
            } else {
                j.next_attempt_ms = next;
            }
        })
    }

    fn waited_too_long(&self, job: &Job) -> bool {
        matches!(&job.state, JobState::Waiting { since_ms, .. } if now_ms().saturating_sub(*since_ms) > self.config.max_dependency_wait.as_millis() as u64)
    }

    /// Seals the open checkpoint batches that are full or whose oldest leaf is older than the
    /// interval — every non-empty one with `idle` when the config says to seal when idle.
    /// Each seal is one store transaction, flushed before anything is published. Returns how
    /// many checkpoints were sealed.
    async fn seal_batches(&self, idle: bool) -> Result<usize, StoreError> {
        let Some(config) = &self.config.checkpoints else {
            return Ok(0);
        };
        if idle && !config.seal_when_idle {
            return Ok(0);
        }
        let size = config.size.max(1);
        let interval = config.interval.as_millis() as u64;
        let mut sealed = 0;
        for (batch, slots) in self.store.batches()? {
            let mut leaves: Vec<(u64, Leaf)> = Vec::new();
            for (seq, value) in slots {
                match serde_json::from_value::<Leaf>(value) {
                    Ok(leaf) => leaves.push((seq, leaf)),
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            key: batch.clone(),
                            cause: format!("a checkpoint leaf cannot be read: {e}"),
                        })
                    }
                }
            }
            let mut rest = leaves.as_slice();
            while !rest.is_empty() {
                let oldest = rest.iter().map(|(_, l)| l.batched_ms).min().unwrap_or(0);
                let take = if rest.len() >= size {
                    size
                } else if idle || now_ms().saturating_sub(oldest) >= interval {
                    rest.len()
                } else {
                    break;
                };
                let (now, later) = rest.split_at(take);
                if let Err(e) = self.seal_one(&batch, now).await {
                    tracing::error!(%batch, error = %e, "cannot seal a checkpoint; its leaves stay batched");
                    break;
                }
                sealed += 1;
                rest = later;
            }
        }
        Ok(sealed)
    }

    /// Signs and seals one checkpoint over `leaves` (one version's, in batching order), chained
    /// to the version's previous checkpoint (the store's chain head).
    async fn seal_one(&self, batch: &str, leaves: &[(u64, Leaf)]) -> Result<(), AnchorError> {
        let first = &leaves[0].1;
        let chain_key = crate::profile::checkpoint::chain_key(
            &first.links.model_name,
            &first.links.model_version,
        );
        let mut links = first.links.clone();
        if let Some(head) = self.store.chain_head(&chain_key)? {
            let previous = self.store.job(&head.job)?.and_then(|j| j.prepared);
            links.previous_hash = head.head.clone();
            links.previous_tx = previous.map(|p| p.tx_id).unwrap_or_default();
        }
        let just_leaves: Vec<Leaf> = leaves.iter().map(|(_, l)| l.clone()).collect();
        let prepared = self.anchorer.prepare_checkpoint(&just_leaves, &links)?;
        let event = ChangeEvent::PredictionCheckpoint {
            name: links.model_name.clone(),
            version: links.model_version.clone(),
            tx_id: prepared.tx_id.clone(),
        };
        let head = prepared.payload_hash.clone();
        let job = Job {
            key: event.dedupe_key(),
            seq: 0,
            event,
            state: JobState::Signed,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            prepared: Some(prepared),
            chain_key: Some(chain_key.clone()),
            detected_ms: leaves.iter().map(|(_, l)| l.batched_ms).min().unwrap_or(0),
        };
        let members: Vec<(u64, String)> = leaves.iter().map(|(s, l)| (*s, l.job.clone())).collect();
        self.store
            .seal(batch, &members, &job, (&chain_key, &head))?;
        self.store.flush().await?;
        tracing::info!(checkpoint = %job.key, leaves = leaves.len(), "sealed");
        Ok(())
    }

    /// Decides what a detected (or waiting) job becomes, signing it when it can.
    async fn resolve(&self, job: &Job) -> Result<Resolution, AnchorError> {
        let a = &self.anchorer;
        if let Some(earlier) = self.earlier_unsigned(job)? {
            // Its proof is signed first, so the signing times follow the order of the changes.
            return Ok(Resolution::Wait(earlier));
        }
        match &job.event {
            ChangeEvent::PredictionCheckpoint { .. } => Ok(Resolution::Skip(
                "a checkpoint is created signed; this one lost its prepared event".into(),
            )),
            ChangeEvent::RunFinished { run_id, chain } => {
                let run = match a.mlflow.get_run(run_id).await {
                    Ok(r) => r,
                    Err(e) if e.is_not_found() => {
                        return Ok(Resolution::Skip(format!("run {run_id} no longer exists")))
                    }
                    Err(e) => return Err(e.into()),
                };
                if run.tag(training::TX_TAG).is_some() {
                    return Ok(Resolution::Skip(
                        "already anchored (ario.training_tx present)".into(),
                    ));
                }
                if run.info.lifecycle_stage == "deleted" {
                    return Ok(Resolution::Skip("run deleted".into()));
                }
                // A chain pinned by the source (Kafka: the partition that owns it) wins.
                let (mlflow_head, owner) = match chain.as_deref().map(ChainOwner::from_chain_key) {
                    Some(Some(owner)) => (a.chain_head_of(&owner).await?, owner),
                    Some(None) => {
                        return Err(AnchorError::Inconsistent(format!(
                        "{}: the event names chain {:?}, which is neither rm/<name> nor exp/<id>",
                        job.key,
                        chain.as_deref().unwrap_or("")
                    )))
                    }
                    None => a.training_chain_head(&run).await?,
                };
                let chain_key = owner.chain_key();
                let prepared = if run.tag(tags::PAYLOAD_HASH).is_some() {
                    // Signed elsewhere (the plugin offline) and never uploaded: publish that proof.
                    let proof = a
                        .mlflow
                        .download_run_artifact(&run, training::PROOF_ARTIFACT)
                        .await?;
                    let payload = a
                        .mlflow
                        .download_run_artifact(&run, training::PAYLOAD_ARTIFACT)
                        .await?;
                    let hash = sha256_hex(&payload);
                    a.restore(
                        &proof,
                        payload,
                        training::EVENT_TYPE,
                        run_id.clone(),
                        training_anchored_writes(&run, &owner, &hash),
                    )?
                } else {
                    let (payload, checksums) = a.training_payload(&run, None).await?;
                    return Ok(Resolution::Seal(Box::new(TrainingDraft {
                        datasets: run_datasets(&run),
                        run,
                        payload,
                        checksums,
                        owner,
                        mlflow_head,
                    })));
                };
                let datasets = run_datasets(&run);
                let head = prepared.payload_hash.clone();
                Ok(Resolution::Sign(
                    Box::new(prepared),
                    Some((chain_key, head)),
                    datasets,
                ))
            }
            ChangeEvent::DatasetInput {
                run_id,
                name,
                digest,
            } => {
                let run = a.mlflow.get_run(run_id).await?;
                if run.tag(&dataset::tx_tag(name)).is_some() {
                    return Ok(Resolution::Skip("already anchored".into()));
                }
                let Some(input) = run
                    .inputs
                    .dataset_inputs
                    .iter()
                    .find(|i| &i.dataset.name == name && &i.dataset.digest == digest)
                else {
                    return Ok(Resolution::Skip(format!(
                        "dataset {name}/{digest} no longer on run {run_id}"
                    )));
                };
                Ok(Resolution::Sign(
                    Box::new(a.prepare_dataset(&run, &input.dataset)?),
                    None,
                    Vec::new(),
                ))
            }
            ChangeEvent::ModelVersionCreated { name, version } => {
                let mv = match a.mlflow.get_model_version(name, version).await {
                    Ok(mv) => mv,
                    Err(e) if e.is_not_found() => {
                        return Ok(Resolution::Skip(format!(
                            "{name}/{version} no longer exists"
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                if mv.tag(registration::TX_TAG).is_some() {
                    return Ok(Resolution::Skip(
                        "already anchored (ario.registration_tx present)".into(),
                    ));
                }
                let source_run_id = registration_source_run(&mv)?;
                let mut run = None;
                if let Some(run_id) = &source_run_id {
                    let r = a.mlflow.get_run(run_id).await?;
                    if r.tag(training::TX_TAG).is_none() && !self.waited_too_long(job) {
                        if r.info.status == "FINISHED" {
                            self.store
                                .detect_derived(&ChangeEvent::run(run_id.clone()))?;
                        }
                        return Ok(Resolution::Wait(format!("run/{run_id}")));
                    }
                    if r.tag(training::TX_TAG).is_none() {
                        tracing::warn!(job = %job.key, run_id, "source run never got a training proof; registration chains to GENESIS");
                    }
                    run = Some(r);
                }
                if let (Some(r), Some(_)) = (&run, mv.tag(tags::PAYLOAD_HASH)) {
                    let proof = a
                        .mlflow
                        .download_run_artifact(r, registration::PROOF_ARTIFACT)
                        .await?;
                    let payload = a
                        .mlflow
                        .download_run_artifact(r, registration::PAYLOAD_ARTIFACT)
                        .await?;
                    let p = a.restore(
                        &proof,
                        payload,
                        registration::EVENT_TYPE,
                        format!("{name}/{version}"),
                        registration_anchored_writes(&mv, run.as_ref()),
                    )?;
                    return Ok(Resolution::Sign(Box::new(p), None, Vec::new()));
                }
                Ok(Resolution::Sign(
                    Box::new(
                        a.prepare_registration(&mv, run.as_ref(), source_run_id.as_deref())
                            .await?,
                    ),
                    None,
                    Vec::new(),
                ))
            }
            ChangeEvent::StageChanged {
                name,
                version,
                from,
                to,
                ..
            } => {
                let (mv, run, reg) = match self.registered(job, name, version).await? {
                    Ok(parts) => parts,
                    Err(r) => return Ok(r),
                };
                Ok(Resolution::Sign(
                    Box::new(a.prepare_promotion(&mv, run.as_ref(), &reg, from, to)?),
                    None,
                    Vec::new(),
                ))
            }
            ChangeEvent::AliasChanged {
                name,
                alias,
                version,
                previous,
                ..
            } => {
                let (target, action) = match (version, previous) {
                    (Some(v), _) => (v.clone(), AliasAction::Set),
                    (None, Some(p)) => (p.clone(), AliasAction::Removed),
                    (None, None) => {
                        return Ok(Resolution::Skip("alias change without a version".into()))
                    }
                };
                let (mv, run, reg) = match self.registered(job, name, &target).await? {
                    Ok(parts) => parts,
                    Err(r) => return Ok(r),
                };
                let prev = if action == AliasAction::Set {
                    previous.as_deref()
                } else {
                    None
                };
                Ok(Resolution::Sign(
                    Box::new(a.prepare_alias(&mv, run.as_ref(), &reg, alias, action, prev)?),
                    None,
                    Vec::new(),
                ))
            }
            ChangeEvent::TraceLogged { trace_id } => {
                let (info, spans) = match a.take_trace(trace_id).await {
                    Ok(t) => t,
                    Err(e) if e.is_not_found() => {
                        return Ok(Resolution::Skip(format!(
                            "trace {trace_id} no longer exists"
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                if info.tags.contains_key(prediction::TX_TAG) {
                    return Ok(Resolution::Skip(
                        "already anchored (ario.prediction_tx present)".into(),
                    ));
                }
                let mut out = Vec::new();
                let wait_for_registration = !self.waited_too_long(job);
                if self.config.checkpoints.is_some() {
                    match a
                        .prediction_leaf(&info, &spans, &job.key, !wait_for_registration)
                        .await
                    {
                        Ok(Some(leaf)) => return Ok(Resolution::Leaf(Box::new(leaf))),
                        // Served by no anchored version: anchored on its own, below.
                        Ok(None) => {}
                        Err(AnchorError::NotReady(on)) => return Ok(Resolution::Wait(on)),
                        Err(e) => return Err(e),
                    }
                }
                match a
                    .prepare_prediction(&info, &spans, &mut out, !wait_for_registration)
                    .await
                {
                    Ok(p) => Ok(Resolution::Sign(Box::new(p), None, Vec::new())),
                    Err(AnchorError::NotReady(on)) => Ok(Resolution::Wait(on)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// An earlier-detected open job about the same alias (or the same version's stage) that is
    /// not signed yet. Alias and stage proofs chain to the registration TX, not to each other:
    /// their `signed_at` is what orders them, so a later change of one alias or one version's
    /// stage is signed only after the earlier one (jobs resolve concurrently).
    fn earlier_unsigned(&self, job: &Job) -> Result<Option<String>, StoreError> {
        let same = |other: &ChangeEvent| match (&job.event, other) {
            (
                ChangeEvent::AliasChanged { name, alias, .. },
                ChangeEvent::AliasChanged {
                    name: n, alias: a, ..
                },
            ) => name == n && alias == a,
            (
                ChangeEvent::StageChanged { name, version, .. },
                ChangeEvent::StageChanged {
                    name: n,
                    version: v,
                    ..
                },
            ) => name == n && version == v,
            _ => false,
        };
        if !matches!(
            job.event,
            ChangeEvent::AliasChanged { .. } | ChangeEvent::StageChanged { .. }
        ) {
            return Ok(None);
        }
        Ok(self
            .store
            .first_open_before(job.seq, |other| {
                same(&other.event)
                    && matches!(other.state, JobState::Detected | JobState::Waiting { .. })
            })?
            .map(|other| other.key))
    }

    /// The version, its run, and its registration TX — or the resolution to take while the
    /// registration is not anchored yet (its job is enqueued if missing).
    async fn registered(
        &self,
        job: &Job,
        name: &str,
        version: &str,
    ) -> Result<
        Result<
            (
                crate::mlflow::ModelVersion,
                Option<crate::mlflow::Run>,
                String,
            ),
            Resolution,
        >,
        AnchorError,
    > {
        let a = &self.anchorer;
        let mv = match a.mlflow.get_model_version(name, version).await {
            Ok(mv) => mv,
            Err(e) if e.is_not_found() => {
                return Ok(Err(Resolution::Skip(format!(
                    "{name}/{version} no longer exists"
                ))))
            }
            Err(e) => return Err(e.into()),
        };
        let reg = match mv.tag(registration::TX_TAG) {
            Some(tx) => tx.to_string(),
            None if !self.waited_too_long(job) => {
                self.store
                    .detect_derived(&ChangeEvent::ModelVersionCreated {
                        name: name.into(),
                        version: version.into(),
                    })?;
                return Ok(Err(Resolution::Wait(format!("mv/{name}/{version}"))));
            }
            None => crate::profile::GENESIS.to_string(),
        };
        let run = if mv.run_id.is_empty() {
            None
        } else {
            match a.mlflow.get_run(&mv.run_id).await {
                Ok(r) => Some(r),
                Err(MlflowError::Http { status: 404, .. }) => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Ok((mv, run, reg)))
    }
}

/// A run's dataset inputs (name, digest), first occurrence of each.
fn run_datasets(run: &Run) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    run.inputs
        .dataset_inputs
        .iter()
        .map(|i| (i.dataset.name.clone(), i.dataset.digest.clone()))
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

impl From<StoreError> for AnchorError {
    fn from(e: StoreError) -> Self {
        AnchorError::Inconsistent(e.to_string())
    }
}

/// Re-queues parked jobs: a job parked after signing resumes publishing its stored bytes; one
/// parked before signing is resolved again. Returns how many were re-queued.
pub fn retry(store: &Store, key: Option<&str>) -> Result<usize, StoreError> {
    let mut n = 0;
    for job in store.jobs()? {
        if key.is_some_and(|k| k != job.key) || !matches!(job.state, JobState::Parked { .. }) {
            continue;
        }
        store.update(&job.key, |j| {
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
