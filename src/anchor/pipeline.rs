//! The job state machine of docs/architecture.md §3, driving jobs kept in the [`Store`].
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::checkpoint::CheckpointConfig;
use super::publish::Publisher;
use super::resolve::{Context, Limits, Resolution, SignPlan, TrainingDraft};
use super::sign::EventError;
use super::{AnchorError, Anchorer};
use crate::arweave::Receipt;
use crate::event::ChangeEvent;
use crate::proof::SignError;
use crate::store::prepared::Prepared;
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
    /// How long dependencies, incomplete traces and the plugin are waited for.
    pub limits: Limits,
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
            limits: Limits::default(),
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

pub(super) fn now_ms() -> u64 {
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
    pub async fn drain(&self, stop: &CancellationToken) -> Result<DrainStats, StoreError> {
        self.drain_with(stop, |_| {}).await
    }

    /// [`Self::drain`], calling `on_step` with each job after each step (progress reporting).
    pub async fn drain_with(
        &self,
        stop: &CancellationToken,
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
            if due.is_empty() || stop.is_cancelled() {
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
            // Signed jobs flow from the resolve stage straight into the publish stage, after the
            // jobs already signed; the channel is bounded, so resolving waits for publishing.
            let (mut signed_tx, signed_rx) =
                futures::channel::mpsc::channel::<Job>(self.config.publish_concurrency.max(1));
            let resolve = async move {
                let mut resolved = futures::stream::iter(resolving)
                    .map(|job| async move {
                        if stop.is_cancelled() {
                            return (job, None);
                        }
                        let span = tracing::info_span!("job", key = %job.key);
                        let r = self.resolve(&job).instrument(span).await;
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
            let publish = futures::stream::iter(publishing)
                .chain(signed_rx)
                .map(Ok::<Job, StoreError>)
                .try_for_each_concurrent(self.config.publish_concurrency.max(1), |job| {
                    let span = tracing::info_span!("job", key = %job.key);
                    self.publish(job, stop, &record).instrument(span)
                });
            tokio::try_join!(resolve, publish)?;
        }
        Ok(stats.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// Publishes one signed job as far as it goes (until done, parked, backing off or stopped).
    async fn publish(
        &self,
        mut job: Job,
        stop: &CancellationToken,
        record: &impl Fn(&Job),
    ) -> Result<(), StoreError> {
        while !stop.is_cancelled()
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
            .unwrap_or_else(|| d.mlflow_head.clone());
        let prepared = self.anchorer.seal_training(&d, &previous)?;
        let head = prepared.payload_hash.clone();
        let derived = d
            .datasets
            .iter()
            .map(|(name, digest)| ChangeEvent::DatasetInput {
                run_id: d.run.info.run_id.clone(),
                name: name.clone(),
                digest: digest.clone(),
            })
            .collect();
        Ok(Resolution::Sign(Box::new(SignPlan {
            prepared,
            chain: Some(super::resolve::ChainMove {
                key: chain_key,
                head,
                extends: None,
            }),
            derived,
            adopted: false,
        })))
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
            Resolution::Sign(plan) => {
                let SignPlan {
                    mut prepared,
                    chain,
                    derived,
                    adopted,
                } = *plan;
                // Derived events are detected *before* the job is signed: sled recovers a
                // prefix of its log, so a crash can never keep the signature and lose them (a
                // signed job is never resolved again, and nothing else detects them).
                for event in &derived {
                    self.store.detect_derived(event)?;
                }
                // A proof adopted from elsewhere moves its chain only if it extends the head
                // this store knows; otherwise it is uploaded without touching the chain.
                let chain = match chain {
                    Some(c) => match (&c.extends, self.store.chain_head(&c.key)?) {
                        (Some(extends), Some(head)) if &head.head != extends => {
                            tracing::warn!(job = %job.key, chain = %c.key, "adopted proof does not extend the chain head; uploaded without moving it");
                            prepared.anchored_writes.retain(|w| !w.moves_chain_head());
                            None
                        }
                        _ => Some(c),
                    },
                    None => None,
                };
                if adopted {
                    tracing::info!(job = %job.key, tx = %prepared.tx_id, "adopting a proof signed earlier and never uploaded");
                }
                if let ChangeEvent::ModelRenamed { from, to, .. } = &job.event {
                    self.store.record_rename(from, to)?;
                }
                self.store.sign(
                    &job.key,
                    &prepared,
                    chain.as_ref().map(|c| (c.key.as_str(), c.head.as_str())),
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
            Resolution::Skip(skip) => {
                tracing::info!(job = %job.key, reason = %skip.reason, kind = skip.kind.label(), "skipped");
                crate::telemetry::skipped(job.event.event_type(), skip.kind.label());
                if let (
                    ChangeEvent::ModelRenamed { from, to, .. },
                    super::resolve::SkipKind::AlreadyAnchored,
                ) = (&job.event, skip.kind)
                {
                    self.store.record_rename(from, to)?;
                }
                self.store.update(&job.key, |j| {
                    j.state = JobState::Skipped {
                        reason: skip.reason.clone(),
                        kind: Some(skip.kind.label().to_string()),
                        redetect: skip.kind.redetectable(),
                    }
                })
            }
            Resolution::Wait(wait) => {
                tracing::debug!(job = %job.key, on = %wait.on, "waiting");
                if let Some(dep) = &wait.dependency {
                    self.store.detect_derived(dep)?;
                }
                let since = match &job.state {
                    JobState::Waiting { since_ms, .. } => *since_ms,
                    _ => now_ms(),
                };
                let next = now_ms() + self.config.wait_recheck.as_millis() as u64;
                let on = wait
                    .dependency
                    .as_ref()
                    .map(|d| self.store.job_key(d))
                    .unwrap_or(wait.on);
                self.store.update(&job.key, |j| {
                    j.state = JobState::Waiting {
                        on: on.clone(),
                        since_ms: since,
                    };
                    j.next_attempt_ms = next;
                })
            }
            Resolution::Park(reason) => {
                tracing::warn!(job = %job.key, %reason, "parked");
                self.store.update(&job.key, |j| {
                    j.state = JobState::Parked {
                        error: reason.clone(),
                    };
                    j.last_error = Some(reason.clone());
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
            // A signer that cannot sign now (a token away) waits; one that needs an operator
            // (a refused PIN, another key under the label) parks, naming it.
            AnchorError::Event(EventError::Sign(SignError::Signer(f))) => !f.transient,
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

    /// Decides what a detected (or waiting) job becomes: the event type's resolution
    /// (`anchor/<type>.rs`), given how long the job has waited and the renames the store knows.
    async fn resolve(&self, job: &Job) -> Result<Resolution, AnchorError> {
        if let Some(earlier) = self.earlier_unsigned(job)? {
            // Its proof is signed first, so the signing times follow the order of the changes.
            return Ok(Resolution::Wait(super::resolve::Wait {
                on: earlier,
                dependency: None,
            }));
        }
        let renames = self.store.renames()?;
        let ctx = Context {
            limits: &self.config.limits,
            waiting_since_ms: match &job.state {
                JobState::Waiting { since_ms, .. } => Some(*since_ms),
                _ => None,
            },
            now_ms: now_ms(),
            renames: &renames,
            oneshot: false,
        };
        self.anchorer
            .resolve(&job.event, &ctx, self.config.checkpoints.is_some())
            .await
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
}

impl From<StoreError> for AnchorError {
    fn from(e: StoreError) -> Self {
        AnchorError::Inconsistent(e.to_string())
    }
}
