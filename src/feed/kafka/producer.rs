//! `feed --to-kafka TOPIC`: the poller as a producer.
//!
//! Each pass polls MLflow into the feed's own store (its cursors and inbox: an event is produced
//! once per dedupe key per feed store), pins each new run's training chain (the registered model
//! its model is registered to, else its experiment — the message key, so the chain lives in one
//! partition), produces every open event idempotently (`enable.idempotence`, `acks=all`,
//! murmur2 partitioning like Java clients) and marks it produced only once the broker has acked
//! it. A crash between the ack and the mark produces the event again: consumers absorb it by its
//! dedupe key. So do they when two feeds run at once.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::{
    create_topic, partition_count, KafkaRunError, KafkaSettings, KafkaSetupError, Reporting,
};
use crate::event::{ChainOwner, ChangeEvent};
use crate::feed::cloudevents::{self, Mode};
use crate::feed::poller::{poll_filtered, PollError, PollFilter};
use crate::mlflow::{MlflowClient, MlflowError};
use crate::store::{JobState, Store, StoreError};

/// The feed's producer.
pub struct FeedProducer {
    producer: FutureProducer<Reporting>,
    reporting: Reporting,
    topic: String,
    workspace: Option<String>,
    source: String,
    mode: Mode,
}

/// Counts of one feed pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// New events detected.
    pub detected: u64,
    /// Messages produced (acked).
    pub produced: u64,
    /// Events dropped because their entity is gone.
    pub gone: u64,
    /// Produce failures (retried next pass).
    pub failed: u64,
}

/// Why a feed pass failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Polling failed.
    #[error(transparent)]
    Poll(#[from] PollError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FeedProducer {
    /// Connects (naming the cause when it cannot) and creates the topic when missing, with
    /// `settings.partitions` partitions.
    pub async fn start(
        settings: &KafkaSettings,
        mode: Mode,
        source: String,
    ) -> Result<FeedProducer, KafkaSetupError> {
        let reporting = Reporting::default();
        let producer: FutureProducer<Reporting> = settings
            .client_config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("partitioner", "murmur2_random"),
                ("linger.ms", "5"),
                ("message.timeout.ms", "30000"),
            ])
            .create_with_context(reporting.clone())?;
        let last = || reporting.last_error();
        // Create first: a producer's metadata request for a missing topic can make the broker
        // auto-create it with its own default partition count (one, usually).
        create_topic(settings, &settings.topic, settings.partitions, false, &[]).await?;
        match partition_count(producer.client(), settings, &settings.topic, last)? {
            Some(n) if n != settings.partitions => tracing::info!(
                topic = %settings.topic,
                partitions = n,
                "feed: the topic exists with its own partition count (--kafka-partitions applies only when creating it)"
            ),
            Some(_) => {}
            None => {
                return Err(KafkaSetupError::Config(format!(
                    "the topic {} could not be created",
                    settings.topic
                )))
            }
        }
        Ok(FeedProducer {
            producer,
            reporting,
            topic: settings.topic.clone(),
            workspace: settings.workspace.clone(),
            source,
            mode,
        })
    }

    /// Produces one event (its chain pinned) and waits for the broker's ack.
    pub async fn publish(&self, event: &ChangeEvent) -> Result<(), KafkaRunError> {
        let time = crate::profile::envelope::python_isoformat(time::OffsetDateTime::now_utc());
        let m = cloudevents::encode(
            event,
            &self.source,
            self.workspace.as_deref(),
            &time,
            self.mode,
        )
        .ok_or_else(|| KafkaRunError::NoPartitionKey(event.dedupe_key()))?;
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_slice()),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(m.key.as_slice())
            .payload(m.value.as_slice())
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(source, _)| KafkaRunError::Client {
                step: format!("produce to {}", self.topic),
                source: Box::new(source),
                reported: self.reporting.last_error(),
            })
    }
}

/// The training chain a finished run belongs to now: `None` when the run is gone.
pub async fn run_chain(mlflow: &MlflowClient, run_id: &str) -> Result<Option<String>, MlflowError> {
    let versions = mlflow
        .search_model_versions(&format!("run_id='{run_id}'"))
        .await?;
    if let Some(mv) = versions.first() {
        return Ok(Some(
            ChainOwner::RegisteredModel(mv.name.clone()).chain_key(),
        ));
    }
    match mlflow.get_run(run_id).await {
        Ok(run) => Ok(Some(
            ChainOwner::Experiment(run.info.experiment_id.clone()).chain_key(),
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// One pass: detect, pin, produce, mark.
pub async fn feed_once(
    mlflow: &MlflowClient,
    store: &Store,
    producer: &FeedProducer,
    filter: &PollFilter,
) -> Result<FeedStats, FeedError> {
    feed_once_with(mlflow, store, producer, filter, || {}).await
}

/// [`feed_once`], calling `progress` after the poll and after each event handled, so a long
/// first pass (a large registry's history) keeps a liveness probe answering.
pub async fn feed_once_with(
    mlflow: &MlflowClient,
    store: &Store,
    producer: &FeedProducer,
    filter: &PollFilter,
    mut progress: impl FnMut(),
) -> Result<FeedStats, FeedError> {
    let polled = poll_filtered(mlflow, store, filter).await?;
    progress();
    let mut stats = FeedStats {
        detected: polled.new_jobs,
        ..FeedStats::default()
    };
    for job in store.open_jobs()? {
        progress();
        let mut event = job.event.clone();
        if let ChangeEvent::RunFinished {
            run_id,
            chain: None,
            end_time,
        } = &event
        {
            match run_chain(mlflow, run_id).await {
                Ok(Some(chain)) => {
                    event = ChangeEvent::RunFinished {
                        run_id: run_id.clone(),
                        chain: Some(chain),
                        end_time: *end_time,
                    };
                    let pinned = event.clone();
                    store.update(&job.key, |j| j.event = pinned.clone())?;
                }
                Ok(None) => {
                    stats.gone += 1;
                    store.update(&job.key, |j| {
                        j.state = JobState::Skipped {
                            reason: "run no longer exists".into(),
                            kind: Some("gone".into()),
                            redetect: true,
                        }
                    })?;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %job.key, error = %e, "feed: cannot resolve the run's chain; retrying next pass");
                    stats.failed += 1;
                    continue;
                }
            }
        }
        match producer.publish(&event).await {
            Ok(()) => {
                stats.produced += 1;
                store.update(&job.key, |j| j.state = JobState::Done)?;
            }
            Err(e) => {
                tracing::warn!(job = %job.key, error = %e, "feed: produce failed; retrying next pass");
                stats.failed += 1;
            }
        }
    }
    store.flush().await?;
    Ok(stats)
}
