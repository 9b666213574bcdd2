//! The re-keying stage of change data capture (`feed --from-debezium`, and inside `run
//! --source kafka --kafka-format debezium`): Debezium records of MLflow's tables in, change
//! events on the keyed event topic out, **exactly once**.
//!
//! A CDC row's key is its table's primary key, not its chain: a `runs` row does not name the
//! registered model its training proof chains on. This stage reads the CDC topics as a consumer
//! group (`<group>.cdc`), decodes each record ([`debezium`]), resolves what the row does not
//! carry (a finished run's chain: one MLflow read, as `feed` does) and produces the events,
//! keyed by their chain key, to the event topic that `run --source kafka` members consume.
//!
//! * **Exactly-once hand-off.** A batch's events, its dead letters and the CDC offsets that pass
//!   it are one Kafka transaction (`send_offsets_to_transaction` with the group's current
//!   metadata). A crash or a fence before the commit aborts it; the next owner resumes from the
//!   committed offsets, so no event is produced twice and none is skipped. Records Debezium
//!   itself delivers twice (Kafka Connect is at-least-once: after a Connect crash it re-sends
//!   from its last flushed offset) carry the same commit time and LSN, hence the same dedupe
//!   key: the consumer absorbs them.
//! * **Order.** Within a CDC partition, records are in the database's commit order; a table's
//!   rows keep their key's partition, so one version's stage changes, one alias's moves are in
//!   order. A batch merges its partitions by commit position (`source.sequence` / `source.lsn`),
//!   never by arrival, keeping each partition's own order; batches are committed in sequence,
//!   and every event of one chain goes to one partition of the event topic.
//! * **Rebalances.** A batch that saw its assignment change is discarded and the partitions are
//!   rewound to their committed offsets before anything is produced.
//! * **MLflow workspaces.** A registry row names its workspace (MLflow's `workspace` column), a
//!   run or trace row its experiment, whose workspace is asked of MLflow once (`resolve`):
//!   each anchored workspace's events go to its own event topic
//!   (`KafkaSettings::in_workspace`) in the same transaction; rows of other workspaces are
//!   skipped (`other_workspace`).
//!
//! [`debezium`]: crate::feed::debezium

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{dead_letter_record, seek_to, Origin};
use super::journal::{new_producer, transaction_with_offsets, OutRecord};
use super::{
    create_topic, partition_count, Background, KafkaRunError, KafkaSettings, KafkaSetupError,
    Reporting,
};
use crate::feed::cloudevents::{self, Mode, Rejection};
use crate::feed::debezium::{self, CommitPosition, Decoded};
use crate::mlflow::MlflowClient;

mod resolve;
use resolve::{resolve, route};

/// Records taken per transaction at most.
const BATCH_MAX: usize = 500;

/// How long a batch waits for more records once it has one.
const BATCH_LINGER: Duration = Duration::from_millis(20);

/// What the stage reads and where it writes.
#[derive(Debug, Clone)]
pub struct RekeyConfig {
    /// Kafka settings; `topic` is the **event topic** produced to, `group` the base of the CDC
    /// consumer group (`<group>.cdc`), the dead-letter topic `<event topic>.dlq` unless given.
    pub kafka: KafkaSettings,
    /// The Debezium topics (`<prefix>.public.<table>`), subscribed by name.
    pub cdc_topics: Vec<String>,
    /// CloudEvents framing of the events produced.
    pub mode: Mode,
    /// The CloudEvents `source` (the tracking URI).
    pub source: String,
    /// The MLflow workspaces anchored, each with its own event topic
    /// ([`KafkaSettings::in_workspace`]); rows of any other workspace are skipped
    /// (`other_workspace`). Empty: a server without workspaces (every row is the default's).
    pub workspaces: Vec<String>,
}

impl RekeyConfig {
    /// The workspaces whose topics this stage produces to.
    pub fn lanes(&self) -> Vec<String> {
        if self.workspaces.is_empty() {
            vec![crate::mlflow::DEFAULT_WORKSPACE.to_string()]
        } else {
            self.workspaces.clone()
        }
    }

    /// The CDC consumer group.
    pub fn group(&self) -> String {
        format!("{}.cdc", self.kafka.group)
    }
}

/// Counters of the stage (also what tests read).
#[derive(Debug)]
pub struct RekeyStats {
    /// Records taken.
    pub records: AtomicU64,
    /// Change events produced (committed).
    pub produced: AtomicU64,
    /// Records that carried no event (tombstones, other changes, unknown schemas).
    pub skipped: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Sessions restarted after a failed transaction.
    pub restarts: AtomicU64,
    /// Whether a session is up, or why not (for `/readyz`).
    session: std::sync::Mutex<Result<(), KafkaRunError>>,
}

impl Default for RekeyStats {
    fn default() -> RekeyStats {
        RekeyStats {
            records: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            session: std::sync::Mutex::new(Err(KafkaRunError::Stopped("starting"))),
        }
    }
}

impl RekeyStats {
    fn set_session(&self, state: Result<(), KafkaRunError>) {
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// `Ok` while a session is up (consumer subscribed, transactional producer initialised),
    /// else why not.
    pub fn session(&self) -> Result<(), KafkaRunError> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The running stage: stop it with [`Rekeyer::shutdown`].
pub struct Rekeyer {
    background: Background,
    /// Counters.
    pub stats: Arc<RekeyStats>,
}

impl Rekeyer {
    /// Checks the cluster, creates the event and dead-letter topics when missing (with
    /// `--kafka-partitions`), then starts consuming the CDC topics. A CDC topic that does not
    /// exist yet is normal (Debezium creates a table's topic with its first change): it is said
    /// and picked up when it appears.
    pub async fn start(
        config: RekeyConfig,
        mlflow: MlflowClient,
    ) -> Result<Rekeyer, KafkaSetupError> {
        if config.cdc_topics.is_empty() {
            return Err(KafkaSetupError::Config(
                "--kafka-format debezium needs the Debezium topics: --kafka-topic mlflow.public.runs,mlflow.public.model_versions,mlflow.public.registered_model_aliases,mlflow.public.trace_info".into(),
            ));
        }
        if let Some(t) = config.cdc_topics.iter().find(|t| **t == config.kafka.topic) {
            return Err(KafkaSetupError::Config(format!(
                "{t} is both a Debezium topic (--kafka-topic) and the event topic: give the event topic its own name"
            )));
        }
        let settings = &config.kafka;
        for workspace in config.lanes() {
            let lane = settings.in_workspace(&workspace);
            create_topic(&lane, &lane.topic, lane.partitions, false, &[]).await?;
        }
        create_topic(
            settings,
            &settings.dlq_topic(),
            settings.partitions,
            false,
            &[("max.message.bytes", "16777216")],
        )
        .await?;
        let probe: BaseConsumer<Reporting> = settings
            .client_config(&[
                ("group.id", &config.group()),
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(Reporting::default())?;
        let last = || {
            for _ in 0..10 {
                let _ = probe.poll(Duration::from_millis(50));
            }
            probe.context().last_error()
        };
        for workspace in config.lanes() {
            let topic = settings.in_workspace(&workspace).topic;
            if partition_count(probe.client(), settings, &topic, last)?.is_none() {
                return Err(KafkaSetupError::Config(format!(
                    "the event topic {topic} could not be created"
                )));
            }
        }
        for topic in &config.cdc_topics {
            if partition_count(probe.client(), settings, topic, last)?.is_none() {
                tracing::info!(topic, "cdc: topic not there yet (Debezium creates it with the table's first change); it is read when it appears");
            }
        }
        drop(probe);
        let instance = settings
            .instance_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let stats = Arc::new(RekeyStats::default());
        let handle = tokio::runtime::Handle::current();
        let background = {
            let stats = stats.clone();
            Background::spawn("kafka-cdc", move |stop| {
                run(config, instance, mlflow, handle, stop, stats)
            })?
        };
        Ok(Rekeyer { background, stats })
    }

    /// Whether the stage's thread is still running.
    pub fn is_running(&self) -> bool {
        self.background.is_running()
    }

    /// Stops after the batch in flight (committed or aborted) and leaves the group.
    pub async fn shutdown(self) {
        self.background.shutdown().await
    }
}

/// Sessions until stopped: a failed transaction ends a session, the next resumes from the
/// committed offsets.
fn run(
    config: RekeyConfig,
    instance: String,
    mlflow: MlflowClient,
    handle: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    stats: Arc<RekeyStats>,
) {
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let outcome = Session::open(&config, &instance).and_then(|s| {
            tracing::info!(topics = ?config.cdc_topics, group = %config.group(), to = %config.kafka.topic, "cdc: re-keying Debezium records onto the event topic");
            stats.set_session(Ok(()));
            s.run(&config, &mlflow, &handle, &stop, &stats)
        });
        match outcome {
            Ok(()) => {
                stats.set_session(Err(KafkaRunError::Stopped("stopped")));
                return;
            }
            Err(e) => {
                stats.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cdc: session ended; resuming from the committed offsets");
                stats.set_session(Err(e));
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(200);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The consumer's context: remembers that the assignment changed.
struct CdcMember {
    reporting: Reporting,
    rebalanced: AtomicBool,
}

impl ClientContext for CdcMember {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.reporting.log(level, fac, message)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.reporting.error(error, reason)
    }
}

impl ConsumerContext for CdcMember {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| -> Vec<String> {
            tpl.elements()
                .iter()
                .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                .collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?parts(tpl), "cdc: partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?parts(tpl), "cdc: partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "cdc: rebalance error"),
        }
        self.rebalanced.store(true, Ordering::SeqCst);
    }
}

/// One record taken from a CDC topic.
struct Taken {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    decoded: Result<Decoded, Rejection>,
}

impl Taken {
    fn position(&self) -> Option<CommitPosition> {
        self.decoded.as_ref().ok().and_then(|d| d.position)
    }
}

struct Session {
    consumer: BaseConsumer<CdcMember>,
    producer: ThreadedProducer<Reporting>,
}

impl Session {
    fn open(config: &RekeyConfig, instance: &str) -> Result<Session, KafkaRunError> {
        let group = config.group();
        let static_id = config
            .kafka
            .instance_id
            .as_ref()
            .map(|id| format!("{id}.cdc"));
        let mut defaults: Vec<(&str, &str)> = vec![
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
            ("fetch.wait.max.ms", "50"),
            ("allow.auto.create.topics", "false"),
            // A table's topic appears with its first change: find it within seconds.
            ("topic.metadata.refresh.interval.ms", "2000"),
        ];
        if let Some(id) = &static_id {
            defaults.push(("group.instance.id", id));
        }
        let consumer: BaseConsumer<CdcMember> = config
            .kafka
            .client_config(&defaults)
            .create_with_context(CdcMember {
                reporting: Reporting::default(),
                rebalanced: AtomicBool::new(false),
            })
            .map_err(|e| KafkaRunError::client("create the CDC consumer", e))?;
        let topics: Vec<&str> = config.cdc_topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| KafkaRunError::client(format!("subscribe to {topics:?}"), e))?;
        let producer = new_producer(&config.kafka, &format!("{group}.{instance}"))?;
        Ok(Session { consumer, producer })
    }

    fn run(
        self,
        config: &RekeyConfig,
        mlflow: &MlflowClient,
        handle: &tokio::runtime::Handle,
        stop: &AtomicBool,
        stats: &RekeyStats,
    ) -> Result<(), KafkaRunError> {
        let dlq = config.kafka.dlq_topic();
        // Experiment id → the anchored workspace it is in (`None`: none of them).
        let mut experiments: HashMap<String, Option<String>> = HashMap::new();
        while !stop.load(Ordering::SeqCst) {
            let batch = self.collect(config.kafka.max_message_bytes);
            if self
                .consumer
                .context()
                .rebalanced
                .swap(false, Ordering::SeqCst)
            {
                if !batch.is_empty() {
                    tracing::info!(
                        records = batch.len(),
                        "cdc: assignment changed during a batch; rewinding to the committed offsets"
                    );
                    self.rewind()?;
                }
                continue;
            }
            if batch.is_empty() {
                continue;
            }
            stats
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for t in &batch {
                let next = offsets.entry((t.topic.clone(), t.partition)).or_default();
                *next = (*next).max(t.offset + 1);
            }
            let mut records = Vec::new();
            let (mut produced, mut skipped, mut dead) = (0u64, 0u64, 0u64);
            let mut by_type: Vec<&'static str> = Vec::new();
            for t in commit_order(batch) {
                let decoded = match &t.decoded {
                    Ok(d) => d,
                    Err(rejection) => {
                        tracing::warn!(topic = %t.topic, partition = t.partition, offset = t.offset, class = rejection.class, error = %rejection.message, dlq = %dlq, "cdc: dead letter");
                        records.push(dead_letter_record(
                            Origin {
                                topic: &t.topic,
                                partition: t.partition,
                                offset: t.offset,
                                key: t.key.as_deref(),
                                value: t.value.as_deref(),
                            },
                            t.headers.clone(),
                            rejection,
                            &dlq,
                        ));
                        crate::telemetry::dead_letter(rejection.class);
                        dead += 1;
                        continue;
                    }
                };
                if let Some(s) = &decoded.skipped {
                    crate::telemetry::cdc_skipped(decoded.table_label(), s.reason);
                    if s.is_warning() {
                        tracing::warn!(topic = %t.topic, offset = t.offset, reason = s.reason, "cdc: skipped: {}", s.detail);
                    } else {
                        tracing::debug!(topic = %t.topic, offset = t.offset, reason = s.reason, "cdc: skipped: {}", s.detail);
                    }
                    if decoded.events.is_empty() {
                        skipped += 1;
                    }
                }
                if decoded.events.is_empty() {
                    continue;
                }
                let Some(workspace) =
                    route(decoded, config, mlflow, handle, stop, &mut experiments)?
                else {
                    crate::telemetry::cdc_skipped(decoded.table_label(), "other_workspace");
                    tracing::debug!(topic = %t.topic, offset = t.offset, "cdc: skipped: a row of an MLflow workspace this service does not anchor");
                    skipped += 1;
                    continue;
                };
                let client = mlflow.in_workspace(&workspace);
                let lane = config.kafka.in_workspace(&workspace);
                for event in &decoded.events {
                    let Some(event) = resolve(event, &client, handle, stop)? else {
                        continue;
                    };
                    let time = event_time(decoded.committed_ms);
                    let Some(m) = cloudevents::encode(
                        &event,
                        &config.source,
                        lane.workspace.as_deref(),
                        &time,
                        config.mode,
                    ) else {
                        return Err(KafkaRunError::NoPartitionKey(event.dedupe_key()));
                    };
                    tracing::debug!(job = %event.dedupe_key(), workspace = %workspace, topic = %t.topic, offset = t.offset, "cdc: event");
                    by_type.push(event.event_type());
                    records.push(OutRecord {
                        topic: lane.topic.clone(),
                        partition: None,
                        key: m.key,
                        value: Some(m.value),
                        headers: m.headers,
                    });
                    produced += 1;
                }
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                    .map_err(|e| KafkaRunError::client(format!("offsets of {topic}"), e))?;
            }
            let started = Instant::now();
            if let Err(e) = transaction_with_offsets(&self.producer, &self.consumer, &records, &tpl)
            {
                let _ = self.producer.abort_transaction(Duration::from_secs(10));
                return Err(KafkaRunError::Transaction(format!(
                    "{} records: {e}",
                    records.len()
                )));
            }
            stats.transactions.fetch_add(1, Ordering::Relaxed);
            stats.produced.fetch_add(produced, Ordering::Relaxed);
            stats.skipped.fetch_add(skipped, Ordering::Relaxed);
            stats.dead_letters.fetch_add(dead, Ordering::Relaxed);
            for event_type in by_type {
                crate::telemetry::cdc_event(event_type);
            }
            tracing::debug!(
                produced,
                skipped,
                dead,
                ms = started.elapsed().as_millis() as u64,
                "cdc: batch committed"
            );
        }
        // Leave the group at once (its partitions move without a session timeout).
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Up to [`BATCH_MAX`] records: waits up to 100 ms for the first, then takes what arrives
    /// within [`BATCH_LINGER`] of the last.
    fn collect(&self, max_bytes: usize) -> Vec<Taken> {
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(100);
        while batch.len() < BATCH_MAX {
            match self.consumer.poll(wait) {
                Some(Ok(m)) => {
                    let headers: Vec<(String, Vec<u8>)> = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let decoded = debezium::decode_with_headers(m.payload(), &headers, max_bytes);
                    batch.push(Taken {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers,
                        decoded,
                    });
                    wait = BATCH_LINGER;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "cdc: consumer error");
                    break;
                }
                None => break,
            }
        }
        batch
    }

    /// Seeks every assigned partition back to its committed offset (the group's last
    /// transaction).
    fn rewind(&self) -> Result<(), KafkaRunError> {
        let committed = self
            .consumer
            .committed(Duration::from_secs(30))
            .map_err(|e| KafkaRunError::client("committed offsets", e))?;
        for e in committed.elements() {
            let to = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            seek_to(&self.consumer, e.topic(), e.partition(), to)?;
        }
        Ok(())
    }
}

/// Merges a batch's partitions into commit order: each partition keeps its own order (the
/// database's), and the next record is the partition head with the lowest commit position
/// (records without one — dead letters, tombstones — go as soon as they head their partition).
fn commit_order(batch: Vec<Taken>) -> Vec<Taken> {
    let mut queues: BTreeMap<(String, i32), VecDeque<Taken>> = BTreeMap::new();
    for t in batch {
        queues
            .entry((t.topic.clone(), t.partition))
            .or_default()
            .push_back(t);
    }
    let mut queues: Vec<VecDeque<Taken>> = queues.into_values().collect();
    let mut out = Vec::new();
    loop {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|t| (t.position(), i)))
            .min_by_key(|(position, i)| (position.is_some(), *position, *i));
        let Some((_, i)) = next else {
            return out;
        };
        if let Some(t) = queues[i].pop_front() {
            out.push(t);
        }
    }
}

/// The CloudEvents `time`: when the database committed the change, else now.
fn event_time(committed_ms: Option<i64>) -> String {
    let at = committed_ms
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    crate::profile::envelope::python_isoformat(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(topic: &str, offset: i64, commit_lsn: Option<u64>) -> Taken {
        Taken {
            topic: topic.into(),
            partition: 0,
            offset,
            key: None,
            value: None,
            headers: Vec::new(),
            decoded: Ok(Decoded {
                table: String::new(),
                events: Vec::new(),
                skipped: None,
                position: commit_lsn.map(|c| CommitPosition {
                    commit_lsn: c,
                    lsn: c,
                }),
                committed_ms: None,
                workspace: None,
                experiment_id: None,
            }),
        }
    }

    #[test]
    fn a_batch_is_merged_by_commit_position_keeping_each_partitions_order() {
        let batch = vec![
            taken("aliases", 0, Some(30)),
            taken("aliases", 1, Some(10)), // behind in its partition: stays behind
            taken("versions", 0, Some(20)),
            taken("versions", 1, Some(40)),
            taken("runs", 0, None),
        ];
        let order: Vec<(String, i64)> = commit_order(batch)
            .into_iter()
            .map(|t| (t.topic, t.offset))
            .collect();
        assert_eq!(
            order,
            vec![
                ("runs".to_string(), 0),
                ("versions".to_string(), 0),
                ("aliases".to_string(), 0),
                ("aliases".to_string(), 1),
                ("versions".to_string(), 1),
            ]
        );
    }

    #[test]
    fn the_event_time_is_the_commit_time() {
        assert_eq!(
            event_time(Some(1_796_115_787_573)),
            "2026-12-01T09:03:07.573000+00:00"
        );
    }
}
