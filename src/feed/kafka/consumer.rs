//! `run --source kafka`: one member of a consumer group (`cooperative-sticky`).
//!
//! Per owned partition: a [`Store`] of its own, journaled to the same partition of the state
//! topic, and a task over it that the caller provides (the anchoring pipeline: a source only
//! detects, [`PartitionWorker`]). On assignment the partition's committed offset is
//! fetched *stably* (waiting out another member's open transaction), then its state is read back
//! from the state topic (`read_committed`, to the last stable offset) before a single message of
//! it is taken. Each message is decoded and detected into the store (the dedupe key absorbs
//! duplicates); a message that cannot be decoded goes to the dead-letter topic — in the same
//! transaction as the offset that passes it. On revocation the partition's task is stopped
//! (bounded), its last changes committed, and its store dropped. When a transaction fails
//! (fenced, broker gone) every owned partition is rebuilt the same way, and the consumer seeks
//! back to the committed offsets: nothing a failed transaction held is trusted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::journal::{run_committer, OutRecord, PartitionJournal, TxnShared};
use super::{
    create_topic, partition_count, Background, KafkaRunError, KafkaSettings, KafkaSetupError,
    Reporting,
};
use crate::event::ChangeEvent;
use crate::feed::cloudevents;
use crate::store::Store;

mod dead_letter;
mod restore;

use dead_letter::dead_letter;
pub use dead_letter::{dead_letter_record, Origin, MAX_DEAD_LETTER_BYTES};
use restore::restore;

/// Counters of one consumer (also what tests read).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Messages taken.
    pub messages: AtomicU64,
    /// New jobs detected.
    pub detected: AtomicU64,
    /// Duplicates absorbed.
    pub duplicates: AtomicU64,
    /// Dead letters produced.
    pub dead_letters: AtomicU64,
    /// Partitions assigned (restores).
    pub assigned: AtomicU64,
    /// Rebuilds after a failed transaction.
    pub rebuilds: AtomicU64,
    /// Partitions owned right now.
    pub owned: AtomicU64,
}

/// One owned partition handed to the caller's worker: anchor what its store holds until `stop`.
pub struct OwnedPartition {
    /// The partition.
    pub partition: i32,
    /// Its store (journaled to the state topic; restored already).
    pub store: Store,
    /// Cancelled when the partition is revoked or the instance stops: finish the step in flight.
    pub stop: CancellationToken,
    /// Notified when new jobs arrive.
    pub wake: Arc<tokio::sync::Notify>,
    /// Call when the store failed (a journal error): the partitions are rebuilt.
    pub failed: Arc<dyn Fn() + Send + Sync>,
}

/// What runs each owned partition (the anchoring pipeline, given by the command: a source only
/// detects). It returns the task, which must end soon after `stop` is set.
pub type PartitionWorker = Arc<dyn Fn(OwnedPartition) -> tokio::task::JoinHandle<()> + Send + Sync>;

struct PartitionRun {
    store: Store,
    stop: CancellationToken,
    wake: Arc<tokio::sync::Notify>,
    live: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// Next offset expected (earlier ones, prefetched before a seek, are ignored).
    next: i64,
}

struct Inner {
    settings: KafkaSettings,
    state_topic: String,
    dlq_topic: String,
    source: String,
    shared: Arc<TxnShared>,
    partitions: Mutex<BTreeMap<i32, PartitionRun>>,
    worker: PartitionWorker,
    stats: Arc<ConsumerStats>,
    revoke_timeout: Duration,
}

/// The consumer's context: rebalance callbacks hand partitions over.
pub struct Member {
    reporting: Reporting,
    inner: Arc<Inner>,
}

impl ClientContext for Member {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporting.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason)
    }
}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = own_partitions(tpl, &self.inner.settings.topic);
            tracing::info!(
                ?parts,
                lost = consumer.assignment_lost(),
                "kafka: partitions revoked"
            );
            self.inner.revoke(&parts);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = own_partitions(tpl, &self.inner.settings.topic);
                tracing::info!(?parts, "kafka: partitions assigned");
                if let Err(e) = self.inner.assign(consumer, &parts, false) {
                    tracing::warn!(error = %e, "kafka: could not take over partitions; rebuilding");
                    self.inner.shared.set_failed();
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "kafka: rebalance error"),
        }
    }
}

fn own_partitions(tpl: &TopicPartitionList, topic: &str) -> Vec<i32> {
    tpl.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| e.partition())
        .collect()
}

impl Inner {
    /// Takes over `parts`: stable committed offsets, state restored, pipelines started.
    fn assign(
        &self,
        consumer: &BaseConsumer<Member>,
        parts: &[i32],
        seek: bool,
    ) -> Result<(), KafkaRunError> {
        let topic = &self.settings.topic;
        let parts: Vec<i32> = {
            let map = self.lock();
            parts
                .iter()
                .copied()
                .filter(|p| !map.contains_key(p))
                .collect()
        };
        if parts.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            tpl.add_partition(topic, p);
        }
        // Under read_committed this is an OffsetFetch with require_stable: it waits while
        // another member's transaction holds pending offsets for these partitions.
        let committed: BTreeMap<i32, Offset> = consumer
            .committed_offsets(tpl, Duration::from_secs(30))
            .map_err(|e| {
                KafkaRunError::client(format!("committed offsets of {topic}{parts:?}"), e)
            })?
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        let mut taken = Vec::new();
        for &p in &parts {
            let next = match committed.get(&p) {
                Some(Offset::Offset(o)) => *o,
                _ => {
                    consumer
                        .fetch_watermarks(topic, p, Duration::from_secs(10))
                        .map_err(|e| {
                            KafkaRunError::client(format!("watermarks of {topic}[{p}]"), e)
                        })?
                        .0
                }
            };
            let live = Arc::new(AtomicBool::new(true));
            let journal = PartitionJournal {
                shared: self.shared.clone(),
                state_topic: self.state_topic.clone(),
                event_topic: topic.clone(),
                partition: p,
                generation: self.shared.generation(),
                live: live.clone(),
                source: self.source.clone(),
                workspace: self.settings.workspace.clone(),
            };
            let store = Store::journaled(Arc::new(journal))?;
            taken.push((p, next, live, store));
        }
        let stores: Vec<(i32, &Store)> = taken.iter().map(|(p, _, _, s)| (*p, s)).collect();
        let restored = restore(&self.settings, &self.state_topic, &stores)?;
        for (p, next, live, store) in taken {
            if seek {
                seek_to(consumer, topic, p, Offset::Offset(next))?;
            }
            self.shared.mark_offset(p, next);
            let stop = CancellationToken::new();
            let wake = Arc::new(tokio::sync::Notify::new());
            let task = self.spawn_pipeline(p, store.clone(), stop.clone(), wake.clone());
            self.stats.assigned.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                partition = p,
                restored = restored.get(&p).copied().unwrap_or(0),
                open_jobs = store.open_count(),
                resume_at = next,
                "kafka: partition state restored"
            );
            self.lock().insert(
                p,
                PartitionRun {
                    store,
                    stop,
                    wake,
                    live,
                    task,
                    next,
                },
            );
        }
        tracing::info!(partitions = ?parts, ms = started.elapsed().as_millis() as u64, "kafka: took over partitions");
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, PartitionRun>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn_pipeline(
        &self,
        partition: i32,
        store: Store,
        stop: CancellationToken,
        wake: Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        (self.worker)(OwnedPartition {
            partition,
            store,
            stop,
            wake,
            failed: Arc::new(move || shared.set_failed()),
        })
    }

    /// Stops the tasks of `parts` (bounded), commits what they wrote, and drops them.
    fn revoke(&self, parts: &[i32]) {
        let runs: Vec<(i32, PartitionRun)> = {
            let mut map = self.lock();
            parts
                .iter()
                .filter_map(|p| map.remove(p).map(|r| (*p, r)))
                .collect()
        };
        if runs.is_empty() {
            return;
        }
        for (_, r) in &runs {
            r.stop.cancel();
            r.wake.notify_one();
        }
        let deadline = Instant::now() + self.revoke_timeout;
        for (p, r) in &runs {
            while !r.task.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !r.task.is_finished() {
                tracing::warn!(partition = p, "kafka: partition task did not stop in time; aborted (its next owner resumes it)");
                r.task.abort();
            }
        }
        if let Err(e) = self.shared.commit_blocking(Duration::from_secs(15)) {
            tracing::warn!(error = %e, "kafka: last commit before handing partitions over failed (the next owner resumes from the last committed state)");
        }
        for (p, r) in runs {
            r.live.store(false, Ordering::SeqCst);
            self.shared.forget_partition(p);
        }
    }

    /// Rebuilds every owned partition from the state topic (after a failed transaction).
    fn rebuild(&self, consumer: &BaseConsumer<Member>) -> Result<(), KafkaRunError> {
        self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
        let runs: Vec<PartitionRun> = std::mem::take(&mut *self.lock()).into_values().collect();
        for r in &runs {
            r.stop.cancel();
            r.live.store(false, Ordering::SeqCst);
            r.wake.notify_one();
        }
        self.shared.begin_rebuild();
        let deadline = Instant::now() + self.revoke_timeout;
        for r in &runs {
            while !r.task.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            r.task.abort();
        }
        let assignment = consumer
            .assignment()
            .map_err(|e| KafkaRunError::client("assignment", e))?;
        let parts = own_partitions(&assignment, &self.settings.topic);
        tracing::info!(
            ?parts,
            "kafka: rebuilding partition state from the state topic"
        );
        self.assign(consumer, &parts, true)
    }

    fn handle(&self, m: &BorrowedMessage<'_>) {
        if self.shared.is_halted() {
            // A rebuild is due: it seeks back to the committed offsets.
            return;
        }
        let p = m.partition();
        let offset = m.offset();
        let mut map = self.lock();
        let Some(run) = map.get_mut(&p) else {
            // Not restored (yet): never pass a message without its state.
            drop(map);
            self.shared.set_failed();
            return;
        };
        if offset < run.next {
            return;
        }
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let headers: Vec<(String, Vec<u8>)> = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        match cloudevents::decode(
            m.key(),
            &headers,
            m.payload(),
            self.settings.max_message_bytes,
            self.settings.workspace.as_deref(),
        ) {
            Ok(event) => match same_change_seen(&run.store, &event).and_then(|seen| {
                if seen {
                    Ok(false)
                } else {
                    run.store.detect(&event)
                }
            }) {
                Ok(true) => {
                    self.stats.detected.fetch_add(1, Ordering::Relaxed);
                    crate::telemetry::detected(event.event_type(), "kafka");
                    tracing::debug!(
                        job = %event.dedupe_key(),
                        partition = p,
                        offset,
                        message_ms = m.timestamp().to_millis().unwrap_or(0),
                        "kafka: detected"
                    );
                    run.wake.notify_one();
                }
                Ok(false) => {
                    self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(partition = p, offset, error = %e, "kafka: cannot record the event; rebuilding");
                    drop(map);
                    self.shared.set_failed();
                    return;
                }
            },
            Err(rejection) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::dead_letter(rejection.class);
                tracing::warn!(
                    topic = m.topic(),
                    partition = p,
                    offset,
                    class = rejection.class,
                    error = %rejection.message,
                    dlq = %self.dlq_topic,
                    "kafka: dead letter"
                );
                self.shared
                    .push(vec![dead_letter(m, headers, &rejection, &self.dlq_topic)]);
            }
        }
        run.next = offset + 1;
        self.shared.mark_offset(p, offset + 1);
    }
}

/// Whether `event` is a change the store already has under another dedupe key: two feeds (or
/// a feed restarted on a fresh store) see the same alias move at different times (`seen_ms`),
/// or the same stage change from a different snapshot (`from`). The alias move is the same
/// when the newest recorded move of that alias has the same target and predecessor; the stage
/// change when a recorded one reached the same stage at the same `last_updated_timestamp`.
fn same_change_seen(store: &Store, event: &ChangeEvent) -> Result<bool, crate::store::StoreError> {
    match event {
        ChangeEvent::AliasChanged {
            name,
            alias,
            version,
            previous,
            ..
        } => Ok(store.newest_alias_job(name, alias)?.is_some_and(|j| {
            matches!(&j.event, ChangeEvent::AliasChanged { version: v, previous: p, .. } if v == version && p == previous)
        })),
        ChangeEvent::StageChanged {
            name,
            version,
            to,
            last_updated_ms,
            ..
        } => store.stage_change_seen(name, version, to, *last_updated_ms),
        _ => Ok(false),
    }
}

/// Seeks `topic[p]` to `next`, retrying while the partition is not fetch-ready yet.
pub(super) fn seek_to<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    p: i32,
    next: Offset,
) -> Result<(), KafkaRunError> {
    let mut attempts = 0;
    loop {
        match consumer.seek(topic, p, next, Duration::from_secs(5)) {
            Ok(()) => return Ok(()),
            Err(e) if attempts >= 49 => {
                return Err(KafkaRunError::client(
                    format!("seek {topic}[{p}] to {next:?}"),
                    e,
                ))
            }
            Err(_) => attempts += 1,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running consumer: stop it with [`KafkaConsumer::shutdown`].
pub struct KafkaConsumer {
    background: Background,
    /// Counters.
    pub stats: Arc<ConsumerStats>,
}

impl KafkaConsumer {
    /// Checks the topics (creating the state and dead-letter topics when missing), joins the
    /// group and starts consuming. Setup errors (unreachable cluster, bad credentials, a topic
    /// that does not exist) are returned before anything runs.
    pub async fn start(
        settings: KafkaSettings,
        worker: PartitionWorker,
        source: String,
    ) -> Result<KafkaConsumer, KafkaSetupError> {
        let state_topic = settings.state_topic();
        let dlq_topic = settings.dlq_topic();
        let probe: BaseConsumer<Reporting> = settings
            .client_config(&[
                ("group.id", &settings.group),
                // Asking for a missing topic must not create it with the broker's defaults.
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(Reporting::default())?;
        // Errors reach the context when the client is polled.
        let last = || {
            for _ in 0..10 {
                let _ = probe.poll(Duration::from_millis(50));
            }
            probe.context().last_error()
        };
        let n = partition_count(probe.client(), &settings, &settings.topic, last)?.ok_or_else(
            || KafkaSetupError::MissingTopic {
                topic: settings.topic.clone(),
                brokers: settings.brokers.clone(),
            },
        )?;
        create_topic(&settings, &state_topic, n, true, &[]).await?;
        create_topic(
            &settings,
            &dlq_topic,
            n,
            false,
            &[("max.message.bytes", "16777216")],
        )
        .await?;
        match partition_count(probe.client(), &settings, &state_topic, last)? {
            Some(m) if m == n => {}
            Some(m) => {
                return Err(KafkaSetupError::Config(format!(
                    "the state topic {state_topic} has {m} partitions, the event topic {} has {n}: they must be co-partitioned (give --kafka-state-topic a new name, or recreate it with {n})",
                    settings.topic
                )))
            }
            None => {
                return Err(KafkaSetupError::Config(format!(
                    "the state topic {state_topic} could not be created"
                )))
            }
        }
        drop(probe);
        let instance = settings
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let transactional_id = format!("{}.{}.{instance}", settings.group, settings.topic);
        let stats = Arc::new(ConsumerStats::default());
        let shared = TxnShared::new();
        let inner = Arc::new(Inner {
            state_topic,
            dlq_topic,
            source,
            shared: shared.clone(),
            partitions: Mutex::new(BTreeMap::new()),
            worker,
            stats: stats.clone(),
            revoke_timeout: Duration::from_secs(10),
            settings: settings.clone(),
        });
        // A stable instance id is also the static group membership id: a restarted instance
        // takes its partitions back at once (no session timeout), and its previous incarnation
        // is fenced by the coordinator.
        let static_member: Vec<(&str, &str)> = match &settings.instance_id {
            Some(id) => vec![("group.instance.id", id.as_str())],
            None => Vec::new(),
        };
        let mut defaults: Vec<(&str, &str)> = vec![
            ("group.id", &settings.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("fetch.wait.max.ms", "50"),
            ("queued.max.messages.kbytes", "8192"),
        ];
        defaults.extend(static_member);
        let consumer: BaseConsumer<Member> = settings
            .client_config(&defaults)
            .create_with_context(Member {
                reporting: Reporting::default(),
                inner: inner.clone(),
            })?;
        let consumer = Arc::new(consumer);
        consumer.subscribe(&[settings.topic.as_str()])?;
        let committer = {
            let (shared, consumer, settings) = (shared.clone(), consumer.clone(), settings.clone());
            std::thread::Builder::new()
                .name("kafka-txn".into())
                .spawn(move || run_committer(shared, consumer, settings, transactional_id))
                .map_err(|e| KafkaSetupError::Config(e.to_string()))?
        };
        let background = Background::spawn("kafka-consumer", move |stop| {
            consume(consumer, inner, stop, committer)
        })?;
        Ok(KafkaConsumer { background, stats })
    }

    /// Whether the consumer thread is still running.
    pub fn is_running(&self) -> bool {
        self.background.is_running()
    }

    /// Stops taking messages, finishes the in-flight steps (bounded), commits and leaves the
    /// group.
    pub async fn shutdown(self) {
        self.background.shutdown().await
    }
}

/// Lag per owned partition (the high watermark, asked of the broker, minus the consumer's
/// position) and the owned count, as metrics; partitions no longer owned drop to 0.
fn report_lag(consumer: &BaseConsumer<Member>, inner: &Inner, before: &[i32]) -> Vec<i32> {
    let topic = inner.settings.topic.as_str();
    let next: Vec<(i32, i64)> = inner.lock().iter().map(|(p, run)| (*p, run.next)).collect();
    for p in before {
        if !next.iter().any(|(q, _)| q == p) {
            crate::telemetry::kafka_lag(topic, *p, None);
        }
    }
    // The consumer's position steps over transaction markers (which count in the high
    // watermark but are never delivered); before the first fetch it is unset.
    let positions = consumer.position().ok();
    for (p, next_offset) in &next {
        let position = positions
            .as_ref()
            .and_then(|tpl| tpl.find_partition(topic, *p))
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(0);
        let at = position.max(*next_offset).max(0);
        if let Ok((_, high)) = consumer.fetch_watermarks(topic, *p, Duration::from_millis(500)) {
            if high >= 0 {
                crate::telemetry::kafka_lag(topic, *p, Some(high - at));
            }
        }
    }
    inner
        .stats
        .owned
        .store(next.len() as u64, Ordering::Relaxed);
    crate::telemetry::kafka_partitions(next.len());
    next.into_iter().map(|(p, _)| p).collect()
}

fn consume(
    consumer: Arc<BaseConsumer<Member>>,
    inner: Arc<Inner>,
    stop: Arc<AtomicBool>,
    committer: std::thread::JoinHandle<()>,
) {
    let mut last_poll_error = Instant::now() - Duration::from_secs(60);
    let mut last_lag = Instant::now();
    let mut reported: Vec<i32> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if last_lag.elapsed() > Duration::from_secs(5) {
            last_lag = Instant::now();
            reported = report_lag(&consumer, &inner, &reported);
        }
        if inner.shared.take_failure() {
            if let Err(e) = inner.rebuild(&consumer) {
                tracing::warn!(error = %e, "kafka: rebuild failed; retrying");
                inner.shared.set_failed();
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => inner.handle(&m),
            Some(Err(e)) if last_poll_error.elapsed() > Duration::from_secs(5) => {
                tracing::warn!(error = %e, "kafka: consumer error");
                last_poll_error = Instant::now();
            }
            _ => {}
        }
    }
    let owned: Vec<i32> = inner.lock().keys().copied().collect();
    inner.revoke(&owned);
    inner.shared.stop();
    let _ = committer.join();
    // Dropping the last handle closes the consumer: it leaves the group at once.
    drop(consumer);
}
