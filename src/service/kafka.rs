//! `run --source kafka[,poll]`: a consumer-group member. Each owned partition drives the
//! pipeline over its journaled store (restored from the state topic); with `poll`, this
//! process's poller also feeds the topic; with `--kafka-format debezium`, the CDC stage re-keys
//! Debezium's records onto the event topic first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::retention::Retention;
use super::surface::{GuardParts, Surface, SurfaceConfig, SurfaceParts};
use super::ServiceError;
use crate::anchor::pipeline::{Pipeline, PipelineConfig};
use crate::anchor::Anchorer;
use crate::feed::kafka::consumer::{KafkaConsumer, OwnedPartition, PartitionWorker};
use crate::feed::kafka::producer::{feed_once, FeedProducer};
use crate::feed::kafka::rekey::{RekeyConfig, Rekeyer};
use crate::feed::kafka::KafkaSettings;
use crate::feed::poller::PollFilter;
use crate::mlflow::MlflowClient;
use crate::server::health::Check;
use crate::store::Store;

/// Between checks that the consumer and the CDC stage still run.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Kafka mode, as validated from flags.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// The cluster, the event topic and the group.
    pub settings: KafkaSettings,
    /// The CDC stage (`--kafka-format debezium`): its topic replaces `settings.topic`.
    pub rekey: Option<RekeyConfig>,
    /// Between polls of this process's poller (with `--source poll,kafka`).
    pub poll_interval: Duration,
    /// Done jobs keep their prepared bytes this long (per owned partition).
    pub retain_done: Duration,
    /// The pipeline's tuning.
    pub pipeline: PipelineConfig,
    /// The listener and probes.
    pub surface: SurfaceConfig,
}

/// Runs Kafka mode until `stop` is cancelled; `feed_store` (with `--source poll,kafka`) is the
/// poller's store. Every stage is stopped and awaited on the way out.
pub async fn run(
    mut config: KafkaConfig,
    anchorer: Anchorer,
    feed_store: Option<Store>,
    guard: Option<GuardParts>,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let start = |e: crate::feed::kafka::KafkaSetupError| ServiceError::Start(e.to_string());
    let source = anchorer.mlflow.tracking_uri().to_string();
    let mlflow = anchorer.mlflow.clone();
    let turbo = anchorer.turbo.clone();
    // Change data capture: the CDC stage re-keys Debezium's records onto the event topic, and
    // this process consumes that topic like any member.
    let rekeyer = match config.rekey.take() {
        Some(rekey) => {
            config.settings.topic = rekey.kafka.topic.clone();
            Some(Rekeyer::start(rekey, mlflow.clone()).await.map_err(start)?)
        }
        None => None,
    };
    let feed = match feed_store {
        Some(store) => {
            match FeedProducer::start(&config.settings, Default::default(), source.clone()).await {
                Ok(p) => Some((store, p)),
                Err(e) => {
                    if let Some(r) = rekeyer {
                        r.shutdown().await;
                    }
                    return Err(start(e));
                }
            }
        }
        None => None,
    };
    let consumer = match KafkaConsumer::start(
        config.settings.clone(),
        partition_worker(anchorer, config.pipeline.clone(), config.retain_done),
        source,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = rekeyer {
                r.shutdown().await;
            }
            return Err(start(e));
        }
    };
    let settings = &config.settings;
    tracing::info!(topic = %settings.topic, group = %settings.group, brokers = %settings.brokers, properties = ?settings.redacted_properties(), "consuming the change feed");
    let surface = match Surface::start(
        &config.surface,
        &mlflow,
        SurfaceParts {
            turbo: Some(turbo),
            kafka: Some(consumer.stats.clone()),
            guard,
            ..Default::default()
        },
        &stop,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            consumer.shutdown().await;
            if let Some(r) = rekeyer {
                r.shutdown().await;
            }
            return Err(e);
        }
    };
    let watched = watch(
        &config,
        &mlflow,
        &consumer,
        rekeyer.as_ref(),
        feed.as_ref(),
        &surface,
        &stop,
    )
    .await;
    if let Some(r) = rekeyer {
        r.shutdown().await;
    }
    consumer.shutdown().await;
    surface.stop().await;
    watched
}

/// Until `stop`: ticks liveness, checks the consumer and the CDC stage, and polls into the
/// topic on schedule (with `--source poll,kafka`).
async fn watch(
    config: &KafkaConfig,
    mlflow: &MlflowClient,
    consumer: &KafkaConsumer,
    rekeyer: Option<&Rekeyer>,
    feed: Option<&(Store, FeedProducer)>,
    surface: &Surface,
    stop: &CancellationToken,
) -> Result<(), ServiceError> {
    let filter = PollFilter::default();
    let mut next_poll = Instant::now();
    while !stop.is_cancelled() {
        surface.health.tick();
        if !consumer.is_running() {
            return Err(ServiceError::Stopped(
                "the Kafka consumer stopped unexpectedly".into(),
            ));
        }
        if let Some(r) = rekeyer {
            if !r.is_running() {
                return Err(ServiceError::Stopped(
                    "the CDC stage stopped unexpectedly".into(),
                ));
            }
            surface.health.report(Check::Cdc, r.stats.session());
        }
        if let Some((store, producer)) = feed {
            if Instant::now() >= next_poll {
                if let Err(e) = feed_once(mlflow, store, producer, &filter).await {
                    tracing::warn!(error = %e, "poll failed; retrying next cycle");
                }
                next_poll = Instant::now() + config.poll_interval;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = stop.cancelled() => {}
        }
    }
    Ok(())
}

/// Each owned Kafka partition runs the pipeline over its store. The pipeline's future borrows
/// its own closures (it is not `Send + 'static` as a task), so each partition drives it on a
/// blocking thread of the runtime.
fn partition_worker(
    anchorer: Anchorer,
    config: PipelineConfig,
    retain_done: Duration,
) -> PartitionWorker {
    let anchorer = Arc::new(anchorer);
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |owned: OwnedPartition| {
        let pipeline = Pipeline::shared(anchorer.clone(), owned.store, config.clone());
        let rt = runtime.clone();
        runtime.spawn_blocking(move || {
            rt.block_on(async move {
                // Retention per owned partition: compacted jobs are tombstoned on the state
                // topic in the next transaction.
                let mut retention = Retention::new(retain_done);
                while !owned.stop.is_cancelled() {
                    retention.run_if_due(&pipeline.store).await;
                    if let Err(e) = pipeline.drain(&owned.stop).await {
                        if !owned.stop.is_cancelled() {
                            tracing::warn!(partition = owned.partition, error = %e, "kafka: partition pipeline failed; rebuilding");
                            (owned.failed)();
                        }
                        break;
                    }
                    crate::telemetry::partition_open_jobs(
                        owned.partition,
                        pipeline.store.open_count(),
                    );
                    tokio::select! {
                        _ = owned.wake.notified() => {}
                        _ = owned.stop.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                crate::telemetry::partition_open_jobs(owned.partition, 0);
            })
        })
    })
}
