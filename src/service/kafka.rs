//! `run --source kafka[,poll]`: a consumer-group member. Each owned partition drives the
//! pipeline over its journaled store (restored from the state topic); with `poll`, this
//! process's poller also feeds the topic; with `--kafka-format debezium`, the CDC stage re-keys
//! Debezium's records onto the event topic first. Several MLflow workspaces: a lane each
//! ([`run_workspaces`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::retention::Retention;
use super::surface::{GuardParts, Surface, SurfaceConfig, SurfaceParts};
use super::ServiceError;
use crate::anchor::pipeline::{Pipeline, PipelineConfig};
use crate::anchor::Anchorer;
use crate::feed::kafka::consumer::{KafkaConsumer, OwnedPartition, PartitionWorker};
use crate::feed::kafka::producer::{feed_once_with, FeedProducer};
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

/// One MLflow workspace's part of Kafka mode: its anchoring parts (`anchorer.mlflow` in the
/// workspace) and, with `--source poll,kafka`, its poller's store.
pub struct KafkaLane {
    /// The workspace (`default` on a server without workspaces).
    pub workspace: String,
    /// The anchoring parts.
    pub anchorer: Anchorer,
    /// The poller's store (`--source poll,kafka`).
    pub feed_store: Option<Store>,
}

/// Runs Kafka mode until `stop` is cancelled; `feed_store` (with `--source poll,kafka`) is the
/// poller's store. Every stage is stopped and awaited on the way out.
pub async fn run(
    config: KafkaConfig,
    anchorer: Anchorer,
    feed_store: Option<Store>,
    guard: Option<GuardParts>,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let workspace = anchorer
        .mlflow
        .workspace()
        .unwrap_or(crate::mlflow::DEFAULT_WORKSPACE)
        .to_string();
    let lane = KafkaLane {
        workspace,
        anchorer,
        feed_store,
    };
    run_workspaces(config, vec![lane], guard, stop).await
}

/// A lane's running parts.
struct Running {
    workspace: String,
    mlflow: MlflowClient,
    consumer: KafkaConsumer,
    feed: Option<(Store, FeedProducer)>,
}

/// [`run`] over several MLflow workspaces: each lane consumes its workspace's own topic in its
/// own group ([`KafkaSettings::in_workspace`]; the default workspace keeps the names it had
/// before workspaces), so dedupe keys, chains and partitions never mix workspaces. One CDC
/// stage routes every workspace's rows to its topic; one listener serves them all.
pub async fn run_workspaces(
    mut config: KafkaConfig,
    lanes: Vec<KafkaLane>,
    guard: Option<GuardParts>,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let start = |e: crate::feed::kafka::KafkaSetupError| ServiceError::Start(e.to_string());
    let Some(first) = lanes.first() else {
        return Err(ServiceError::Start("no MLflow workspace to anchor".into()));
    };
    let source = first.anchorer.mlflow.tracking_uri().to_string();
    let mlflow = first.anchorer.mlflow.clone();
    let turbo = first.anchorer.turbo.clone();
    // Change data capture: the CDC stage re-keys Debezium's records onto each workspace's
    // event topic, and this process consumes those topics like any member.
    let rekeyer = match config.rekey.take() {
        Some(rekey) => {
            config.settings.topic = rekey.kafka.topic.clone();
            Some(Rekeyer::start(rekey, mlflow.clone()).await.map_err(start)?)
        }
        None => None,
    };
    let mut running: Vec<Running> = Vec::new();
    let mut failed = None;
    // Owned partitions' stores, as the listener serves them to `status`/`retry` and the probe
    // exports their job gauges.
    let live = crate::store::LiveStores::default();
    for lane in lanes {
        let settings = config.settings.in_workspace(&lane.workspace);
        let feed = match lane.feed_store {
            Some(store) => {
                match FeedProducer::start(&settings, Default::default(), source.clone()).await {
                    Ok(p) => Some((store, p)),
                    Err(e) => {
                        failed = Some(start(e));
                        break;
                    }
                }
            }
            None => None,
        };
        let lane_mlflow = lane.anchorer.mlflow.clone();
        let worker = partition_worker(
            lane.anchorer,
            &lane.workspace,
            config.pipeline.clone(),
            config.retain_done,
            live.clone(),
        );
        let consumer =
            match start_consumer(&settings, worker, &source, config.surface.listen, &stop).await {
                Ok(Some(c)) => c,
                // Stopped by a signal while waiting for Kafka.
                Ok(None) => break,
                Err(e) => {
                    failed = Some(start(e));
                    break;
                }
            };
        tracing::info!(workspace = %lane.workspace, topic = %settings.topic, group = %settings.group, brokers = %settings.brokers, properties = ?settings.redacted_properties(), "consuming the change feed");
        running.push(Running {
            workspace: lane.workspace,
            mlflow: lane_mlflow,
            consumer,
            feed,
        });
    }
    if failed.is_none() && stop.is_cancelled() {
        for r in running {
            r.consumer.shutdown().await;
        }
        if let Some(r) = rekeyer {
            r.shutdown().await;
        }
        return Ok(());
    }
    let surface = match failed {
        Some(e) => Err(e),
        None => {
            Surface::start(
                &config.surface,
                &mlflow,
                SurfaceParts {
                    turbo: Some(turbo),
                    kafka: running.iter().map(|r| r.consumer.stats.clone()).collect(),
                    workspaces: running
                        .iter()
                        .map(|r| (r.workspace.clone(), r.mlflow.clone()))
                        .collect(),
                    guard,
                    stores: live.clone(),
                    probe_stores: false,
                    mode: "kafka",
                    ..Default::default()
                },
                &stop,
            )
            .await
        }
    };
    let watched = match surface {
        Ok(surface) => {
            let watched = watch(&config, &running, rekeyer.as_ref(), &surface, &stop).await;
            surface.stop().await;
            watched
        }
        Err(e) => Err(e),
    };
    if let Some(r) = rekeyer {
        r.shutdown().await;
    }
    for r in running {
        r.consumer.shutdown().await;
    }
    watched
}

/// Joins the group. A cluster not reachable yet, or an event topic not created yet (the `feed`
/// that creates it starting beside us), is waited for with backoff up to 30 s — each attempt
/// logged, and `/readyz` (a starting listener on `listen`) answering 503 with the cause —
/// instead of exiting; refused credentials, TLS failures and wrong settings end the start.
/// `None`: stopped by `stop` while waiting.
async fn start_consumer(
    settings: &KafkaSettings,
    worker: PartitionWorker,
    source: &str,
    listen: Option<std::net::SocketAddr>,
    stop: &CancellationToken,
) -> Result<Option<KafkaConsumer>, crate::feed::kafka::KafkaSetupError> {
    let mut delay = Duration::from_secs(1);
    let waiting = crate::server::starting::Waiting::default();
    let mut starting: Option<crate::server::starting::StartingListener> = None;
    let outcome = loop {
        match KafkaConsumer::start(settings.clone(), worker.clone(), source.to_string()).await {
            Err(e) if e.is_transient() => {
                waiting.set(format!("Kafka is not usable yet: {e}"));
                if let (None, Some(addr)) = (&starting, listen) {
                    match crate::server::starting::StartingListener::start(addr, waiting.clone())
                        .await
                    {
                        Ok(l) => starting = Some(l),
                        Err(e) => tracing::warn!(error = %e, "no listener while waiting for Kafka"),
                    }
                }
                tracing::warn!(error = %e, brokers = %settings.brokers, retry_in_secs = delay.as_secs(), "Kafka is not usable yet: waiting for it (stop with a signal)");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => break Ok(None),
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => break Err(e),
            Ok(c) => {
                if starting.is_some() {
                    tracing::info!(brokers = %settings.brokers, "Kafka is usable: joining the group");
                }
                break Ok(Some(c));
            }
        }
    };
    if let Some(listener) = starting {
        listener.stop().await;
    }
    outcome
}

/// Until `stop`: ticks liveness, checks the consumers and the CDC stage, and polls each
/// workspace into its topic on schedule (with `--source poll,kafka`).
async fn watch(
    config: &KafkaConfig,
    running: &[Running],
    rekeyer: Option<&Rekeyer>,
    surface: &Surface,
    stop: &CancellationToken,
) -> Result<(), ServiceError> {
    let filter = PollFilter::default();
    let mut next_poll = Instant::now();
    while !stop.is_cancelled() {
        surface.health.tick();
        if let Some(r) = running.iter().find(|r| !r.consumer.is_running()) {
            return Err(ServiceError::Stopped(format!(
                "the Kafka consumer of MLflow workspace {} stopped unexpectedly",
                r.workspace
            )));
        }
        if let Some(r) = rekeyer {
            if !r.is_running() {
                return Err(ServiceError::Stopped(
                    "the CDC stage stopped unexpectedly".into(),
                ));
            }
            surface.health.report(Check::Cdc, r.stats.session());
        }
        if Instant::now() >= next_poll {
            for r in running {
                if let Some((store, producer)) = &r.feed {
                    let tick = || surface.health.tick();
                    if let Err(e) = feed_once_with(&r.mlflow, store, producer, &filter, tick).await
                    {
                        tracing::warn!(workspace = %r.workspace, error = %e, "poll failed; retrying next cycle");
                    }
                }
            }
            next_poll = Instant::now() + config.poll_interval;
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
    workspace: &str,
    config: PipelineConfig,
    retain_done: Duration,
    live: crate::store::LiveStores,
) -> PartitionWorker {
    let anchorer = Arc::new(anchorer);
    let workspace = workspace.to_string();
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |owned: OwnedPartition| {
        let scope = crate::store::StoreScope {
            workspace: workspace.clone(),
            partition: Some(owned.partition),
        };
        let registration =
            live.insert(scope.clone(), owned.store.clone(), Some(owned.wake.clone()));
        let live = live.clone();
        let pipeline = Pipeline::shared(anchorer.clone(), owned.store, config.clone());
        let rt = runtime.clone();
        let workspace = workspace.clone();
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
                        &workspace,
                        owned.partition,
                        pipeline.store.open_count(),
                    );
                    tokio::select! {
                        _ = owned.wake.notified() => {}
                        _ = owned.stop.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
                crate::telemetry::partition_open_jobs(&workspace, owned.partition, 0);
                live.remove(&scope, registration);
            })
        })
    })
}
