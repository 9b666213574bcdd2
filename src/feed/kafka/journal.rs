//! The state topic's writer: every owned partition's store changes, the dead letters and the
//! events the pipeline derives, written together with the consumed offsets in **one Kafka
//! transaction** at a time (group commit), on one transactional producer per instance.
//!
//! Why this never forks a chain or anchors an event twice (docs/architecture.md §9):
//! * every transaction carries `send_offsets_to_transaction` for **every** partition this
//!   instance owns, with the consumer's current group metadata — so the group coordinator
//!   rejects the transaction of an instance that is no longer a member of the current
//!   generation (it is fenced: it aborts, and its state records never become visible);
//! * a new owner fetches the partition's committed offset with `require_stable` (librdkafka does
//!   under `isolation.level=read_committed`), which waits while another member's transaction
//!   holds pending offsets for it, and only then reads the state partition up to its last stable
//!   offset — so it sees exactly the state that matches the offsets it resumes from;
//! * the pipeline uploads only after its `sign` record is committed ([`Store::flush`] waits for
//!   the transaction), and a data item's id is fixed by its signed bytes, so a job the next owner
//!   publishes again is the same item.
//!
//! [`Store::flush`]: crate::store::Store::flush

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaRunError, KafkaSettings, Reporting};
use crate::event::ChangeEvent;
use crate::feed::cloudevents;
use crate::store::{Journal, JournalEntry, StoreError};

/// A record waiting for the next transaction.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Topic.
    pub topic: String,
    /// Partition (`None`: by key, murmur2 like Java clients).
    pub partition: Option<i32>,
    /// Key.
    pub key: Vec<u8>,
    /// Value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Pending {
    records: Vec<OutRecord>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), KafkaRunError>>>,
    offsets_dirty: bool,
}

/// What the consumer thread, the partition journals and the committer thread share.
pub struct TxnShared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Next offset to consume per owned partition of the event topic (what a transaction
    /// commits for the group).
    offsets: Mutex<BTreeMap<i32, i64>>,
    /// Held while a transaction is in flight.
    in_flight: Mutex<()>,
    /// A transaction failed: the owned partitions' state must be rebuilt from the topic.
    failed: AtomicBool,
    /// Nothing is committed until the rebuild starts (set with `failed`, cleared by
    /// [`TxnShared::begin_rebuild`]): offsets marked after a failed transaction would pass
    /// messages whose records that transaction lost.
    halted: AtomicBool,
    /// Bumped on every rebuild; records of an older generation are dropped.
    generation: AtomicU64,
    stop: AtomicBool,
    /// Transactions committed (for logs and tests).
    pub commits: AtomicU64,
}

impl std::fmt::Debug for TxnShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnShared")
            .field("generation", &self.generation.load(Ordering::SeqCst))
            .field("commits", &self.commits.load(Ordering::SeqCst))
            .finish()
    }
}

impl TxnShared {
    /// A fresh shared state.
    pub fn new() -> Arc<TxnShared> {
        Arc::new(TxnShared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            offsets: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(()),
            failed: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        })
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues records for the next transaction.
    pub fn push(&self, records: Vec<OutRecord>) {
        self.lock_pending().records.extend(records);
        self.wake.notify_all();
    }

    /// Sets the next offset of an owned partition (the message before it is durable in its
    /// store, or dead-lettered in the queued records).
    pub fn mark_offset(&self, partition: i32, next: i64) {
        self.offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, next);
        self.lock_pending().offsets_dirty = true;
        self.wake.notify_all();
    }

    /// Stops committing offsets of a partition (it was revoked).
    pub fn forget_partition(&self, partition: i32) {
        self.offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
    }

    /// A future that resolves once everything queued so far is committed.
    pub fn commit(&self) -> tokio::sync::oneshot::Receiver<Result<(), KafkaRunError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock_pending().waiters.push(tx);
        self.wake.notify_all();
        rx
    }

    /// Waits (blocking) until everything queued so far is committed.
    pub fn commit_blocking(&self, timeout: Duration) -> Result<(), KafkaRunError> {
        let rx = self.commit();
        let deadline = Instant::now() + timeout;
        let mut rx = rx;
        loop {
            match rx.try_recv() {
                Ok(r) => return r,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(KafkaRunError::State("the committer stopped"))
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                    if Instant::now() > deadline {
                        return Err(KafkaRunError::State("timed out waiting for it"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// Whether a transaction failed since the last [`Self::take_failure`].
    pub fn take_failure(&self) -> bool {
        self.failed.swap(false, Ordering::SeqCst)
    }

    /// Marks the state as needing a rebuild (a transaction failed, a partition task hit a
    /// journal error): from now on nothing is committed until [`Self::begin_rebuild`].
    pub fn set_failed(&self) {
        self.halted.store(true, Ordering::SeqCst);
        self.failed.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    /// Whether commits are halted until a rebuild.
    pub fn is_halted(&self) -> bool {
        self.halted.load(Ordering::SeqCst)
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Starts a rebuild: drops everything queued (failing its waiters), forgets the offsets,
    /// bumps the generation and waits until no transaction is in flight.
    pub fn begin_rebuild(&self) {
        {
            let mut p = self.lock_pending();
            self.generation.fetch_add(1, Ordering::SeqCst);
            p.records.clear();
            p.offsets_dirty = false;
            for w in p.waiters.drain(..) {
                let _ = w.send(Err(KafkaRunError::State(
                    "the partition state is being rebuilt",
                )));
            }
        }
        self.offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        drop(self.in_flight.lock().unwrap_or_else(|p| p.into_inner()));
        // Anything queued between the failure and here belongs to the old state.
        {
            let mut p = self.lock_pending();
            p.records.clear();
            p.offsets_dirty = false;
            for w in p.waiters.drain(..) {
                let _ = w.send(Err(KafkaRunError::State(
                    "the partition state is being rebuilt",
                )));
            }
            self.halted.store(false, Ordering::SeqCst);
        }
    }

    /// Asks the committer thread to finish.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }
}

/// One owned partition's journal: its store's changes go to the same partition of the state
/// topic.
#[derive(Debug)]
pub struct PartitionJournal {
    /// Shared transaction state.
    pub shared: Arc<TxnShared>,
    /// State topic.
    pub state_topic: String,
    /// Event topic (derived events go there).
    pub event_topic: String,
    /// The partition.
    pub partition: i32,
    /// The generation it was created in.
    pub generation: u64,
    /// False once the partition is revoked.
    pub live: Arc<AtomicBool>,
    /// `ce_source` of derived events.
    pub source: String,
    /// Their MLflow workspace (`None`: the default).
    pub workspace: Option<String>,
}

impl PartitionJournal {
    fn current(&self) -> bool {
        self.live.load(Ordering::SeqCst) && self.shared.generation() == self.generation
    }
}

impl Journal for PartitionJournal {
    fn record(&self, entries: Vec<JournalEntry>) {
        if !self.current() {
            return;
        }
        let records = entries
            .into_iter()
            .map(|e| OutRecord {
                topic: self.state_topic.clone(),
                partition: Some(self.partition),
                key: e.key().into_bytes(),
                // A compacted job leaves a tombstone: the compacted topic then forgets it.
                value: (!e.is_tombstone()).then(|| serde_json::to_vec(&e).unwrap_or_default()),
                headers: Vec::new(),
            })
            .collect();
        self.shared.push(records);
    }

    fn commit(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        if !self.current() {
            return Box::pin(async {
                Err(StoreError::Journal(
                    "the partition is no longer owned by this instance".into(),
                ))
            });
        }
        let rx = self.shared.commit();
        Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StoreError::Journal(e.to_string())),
                Err(_) => Err(StoreError::Journal("the committer stopped".into())),
            }
        })
    }

    fn derived(&self, event: &ChangeEvent) -> bool {
        let time = crate::profile::envelope::python_isoformat(time::OffsetDateTime::now_utc());
        match cloudevents::encode(
            event,
            &self.source,
            self.workspace.as_deref(),
            &time,
            cloudevents::Mode::Binary,
        ) {
            Some(m) if self.current() => {
                self.shared.push(vec![OutRecord {
                    topic: self.event_topic.clone(),
                    partition: None,
                    key: m.key,
                    value: Some(m.value),
                    headers: m.headers,
                }]);
            }
            Some(_) => {}
            // A run whose chain is not known here: the feed detects it (it polls every
            // finished run without a training proof) with its chain pinned.
            None => tracing::debug!(event = %event.dedupe_key(), "derived event left to the feed"),
        }
        true
    }
}

/// The transactional producer's settings.
pub fn producer_config(settings: &KafkaSettings, transactional_id: &str) -> rdkafka::ClientConfig {
    settings.client_config(&[
        ("transactional.id", transactional_id),
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("partitioner", "murmur2_random"),
        ("transaction.timeout.ms", "10000"),
        ("linger.ms", "1"),
        ("message.timeout.ms", "10000"),
        // Dead letters keep the original value (up to MAX_DEAD_LETTER_BYTES).
        ("message.max.bytes", "16777216"),
    ])
}

/// Runs transactions until stopped (its own thread: every call here blocks).
pub fn run_committer<C: ConsumerContext + 'static>(
    shared: Arc<TxnShared>,
    consumer: Arc<BaseConsumer<C>>,
    settings: KafkaSettings,
    transactional_id: String,
) {
    let mut producer: Option<ThreadedProducer<Reporting>> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if producer.is_none() {
            match new_producer(&settings, &transactional_id) {
                Ok(p) => {
                    producer = Some(p);
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: transactional producer not ready; retrying");
                    fail_waiters(&shared, &e);
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(p) = producer.as_ref() else { continue };
        let (records, waiters, generation) = {
            let mut pending = shared.lock_pending();
            while pending.records.is_empty()
                && pending.waiters.is_empty()
                && !pending.offsets_dirty
                && !shared.stop.load(Ordering::SeqCst)
            {
                pending = shared
                    .wake
                    .wait_timeout(pending, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if shared.stop.load(Ordering::SeqCst)
                && pending.records.is_empty()
                && pending.waiters.is_empty()
            {
                return;
            }
            pending.offsets_dirty = false;
            (
                std::mem::take(&mut pending.records),
                std::mem::take(&mut pending.waiters),
                shared.generation(),
            )
        };
        let in_flight = shared.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let offsets = shared
            .offsets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // `begun`: a transaction was started (only then is there something to abort and a
        // failure to rebuild from).
        let (result, begun) = if shared.is_halted() {
            (
                Err(KafkaRunError::State(
                    "halted until the partition state is rebuilt",
                )),
                false,
            )
        } else if generation != shared.generation() {
            (
                Err(KafkaRunError::State("the partition state is being rebuilt")),
                false,
            )
        } else if records.is_empty() && offsets.is_empty() {
            (Ok(()), false)
        } else if offsets.is_empty() {
            // Records of partitions no longer owned: never written unfenced.
            (
                Err(KafkaRunError::State(
                    "no partition is owned; records dropped",
                )),
                false,
            )
        } else {
            let started = Instant::now();
            let r = transaction(p, consumer.as_ref(), &settings.topic, &records, &offsets);
            tracing::debug!(
                records = records.len(),
                waiters = waiters.len(),
                partitions = offsets.len(),
                ms = started.elapsed().as_millis() as u64,
                ok = r.is_ok(),
                "kafka: state transaction"
            );
            (r, true)
        };
        drop(in_flight);
        match result {
            Ok(()) => {
                shared.commits.fetch_add(1, Ordering::SeqCst);
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) if !begun => {
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, records = records.len(), "kafka: state transaction failed; the owned partitions are rebuilt from the state topic");
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                shared.set_failed();
                if p.abort_transaction(Duration::from_secs(10)).is_err() {
                    // A fatal error (e.g. fenced by another producer with our id): start over.
                    producer = None;
                }
            }
        }
    }
}

fn fail_waiters(shared: &TxnShared, error: &KafkaRunError) {
    let mut pending = shared.lock_pending();
    for w in pending.waiters.drain(..) {
        let _ = w.send(Err(error.clone()));
    }
    if !pending.records.is_empty() {
        pending.records.clear();
        shared.set_failed();
    }
}

/// A transactional producer with id `id`, its transactions initialised (which fences an
/// earlier producer with the same id and aborts what it left open).
pub fn new_producer(
    settings: &KafkaSettings,
    id: &str,
) -> Result<ThreadedProducer<Reporting>, KafkaRunError> {
    let p: ThreadedProducer<Reporting> = producer_config(settings, id)
        .create_with_context(Reporting::default())
        .map_err(|e| KafkaRunError::client("create the transactional producer", e))?;
    p.init_transactions(Duration::from_secs(15))
        .map_err(|source| KafkaRunError::Client {
            step: format!("init transactions of {id}"),
            source: Box::new(source),
            reported: p.context().last_error(),
        })?;
    Ok(p)
}

fn transaction<C: ConsumerContext>(
    p: &ThreadedProducer<Reporting>,
    consumer: &BaseConsumer<C>,
    event_topic: &str,
    records: &[OutRecord],
    offsets: &BTreeMap<i32, i64>,
) -> Result<(), KafkaRunError> {
    let mut tpl = TopicPartitionList::new();
    for (part, next) in offsets {
        tpl.add_partition_offset(event_topic, *part, Offset::Offset(*next))
            .map_err(|e| KafkaRunError::client("offsets", e))?;
    }
    transaction_with_offsets(p, consumer, records, &tpl)
}

/// One transaction: `records` produced, then `offsets` (the next offset to consume per
/// partition) committed for `consumer`'s group with its current metadata — a member the group
/// has moved on from is fenced here — then committed. On error the caller aborts.
pub fn transaction_with_offsets<C: ConsumerContext>(
    p: &ThreadedProducer<Reporting>,
    consumer: &BaseConsumer<C>,
    records: &[OutRecord],
    offsets: &TopicPartitionList,
) -> Result<(), KafkaRunError> {
    let err = KafkaRunError::client;
    p.begin_transaction().map_err(|e| err("begin", e))?;
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(rdkafka::message::Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&r.topic)
                .key(r.key.as_slice())
                .headers(headers.clone());
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            if let Some(part) = r.partition {
                rec = rec.partition(part);
            }
            match p.send(rec) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => std::thread::sleep(Duration::from_millis(5)),
                Err((e, _)) => return Err(err("produce", e)),
            }
        }
    }
    let meta = consumer
        .group_metadata()
        .ok_or(KafkaRunError::NoGroupMetadata)?;
    p.send_offsets_to_transaction(offsets, &meta, Duration::from_secs(10))
        .map_err(|e| err("send offsets (fenced if the group moved on)", e))?;
    p.commit_transaction(Duration::from_secs(30))
        .map_err(|e| err("commit", e))
}
