//! `feed --to-kafka TOPIC`: the poller as a Kafka producer (docs/kafka.md). Detection only:
//! nothing is signed or uploaded here; `run --source kafka` instances anchor what it produces.
//! With `--listen` it serves `/metrics`, `/healthz` and `/readyz` like `run`, so a feed that
//! stops passing is seen (`ArioMlflowFeedStopped`, docs/operations.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::connect::{
    anchored_workspaces, kafka_settings, workspace_state_dir, KafkaArgs, MlflowArgs,
};
use super::error::{finish, CmdError};
use crate::feed::cloudevents::Mode;
use crate::feed::kafka::producer::{feed_once_with, FeedProducer, FeedStats};
use crate::feed::kafka::rekey::Rekeyer;
use crate::feed::kafka::KafkaFormat;
use crate::feed::poller::PollFilter;
use crate::mlflow::MlflowClient;
use crate::server::health::Check;
use crate::service::surface::{Surface, SurfaceConfig, SurfaceParts};
use crate::service::ServiceError;
use crate::store::Store;

/// Arguments of `feed`.
#[derive(Debug, Args)]
pub struct FeedArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaArgs,
    /// Produce the change feed to this topic (created with --kafka-partitions when missing;
    /// overrides --kafka-topic).
    #[arg(long, value_name = "TOPIC")]
    pub to_kafka: String,
    /// CloudEvents framing of each message.
    #[arg(long, value_enum, default_value_t = Mode::Binary)]
    pub kafka_mode: Mode,
    /// The feed's own store (cursors, what it produced).
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-feed-state")]
    pub state_dir: PathBuf,
    /// Seconds between polls.
    #[arg(long, default_value_t = 5.0)]
    pub poll_interval: f64,
    /// One pass, then exit (0 when everything detected was produced).
    #[arg(long, conflicts_with = "from_debezium")]
    pub once: bool,
    /// Instead of polling MLflow, re-key Debezium's change records of MLflow's database
    /// (`--kafka-topic` = the CDC topics, comma-separated) onto `--to-kafka`, transactionally
    /// with the CDC offsets (implies `--kafka-format debezium`).
    #[arg(long)]
    pub from_debezium: bool,
    /// Address of an HTTP listener for `/metrics`, `/healthz` and `/readyz` (what the dead-feed
    /// alert scrapes); `off`, the default outside the container image, runs none. Give the
    /// feed its own address when it shares a host with `run`.
    #[arg(long, env = "ARIO_MLFLOW_LISTEN", default_value = "off")]
    pub listen: String,
    /// Seconds without a completed pass after which the listener's `/healthz` answers 503.
    #[arg(long, env = "ARIO_MLFLOW_STUCK_AFTER", default_value_t = 300)]
    pub stuck_after: u64,
}

/// Between the listener's readiness probes of MLflow.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// The listener of `--listen` (`None`: `off`, or `--once`), started before the first pass so
/// `/healthz` answers while the feed works.
async fn start_listener(
    args: &FeedArgs,
    mlflow: &MlflowClient,
    stop: &CancellationToken,
) -> Result<Option<Surface>, CmdError> {
    let listen = super::surface::parse_listen(&args.listen)?;
    let Some(addr) = listen.filter(|_| !args.once) else {
        return Ok(None);
    };
    let config = SurfaceConfig {
        listen: Some(addr),
        health_interval: HEALTH_INTERVAL,
        stuck_after: Duration::from_secs(args.stuck_after.max(1)),
        coverage_interval: None,
        management_secret: None,
    };
    let parts = SurfaceParts {
        mode: "feed",
        ..SurfaceParts::default()
    };
    Ok(Some(Surface::start(&config, mlflow, parts, stop).await?))
}

/// Runs the feed until stopped (or one pass with `--once`).
pub async fn run(args: FeedArgs) -> ExitCode {
    if args.from_debezium || args.kafka.kafka_format == KafkaFormat::Debezium {
        return finish(run_from_debezium(&args).await);
    }
    finish(run_producer(&args).await)
}

/// The workspaces the feed covers (every one visible, or the ones named; empty: a server
/// without workspaces) and the client without a workspace header.
async fn feed_workspaces(args: &FeedArgs) -> Result<(MlflowClient, Vec<String>), CmdError> {
    let base = MlflowClient::new(super::connect::service_mlflow_config(&args.mlflow)?)?;
    let workspaces = anchored_workspaces(&args.mlflow, &base).await?;
    Ok((base, workspaces))
}

/// `feed --to-kafka`: the poller as a producer — with MLflow workspaces, each polled into its
/// own topic (`<topic>.workspace.<name>`, the default workspace's is `<topic>`) from its own
/// store (`<state-dir>/workspaces/<name>`).
async fn run_producer(args: &FeedArgs) -> Result<ExitCode, CmdError> {
    let mut kafka = args.kafka.clone();
    kafka.kafka_topic = args.to_kafka.clone();
    let settings = kafka_settings(&kafka)?;
    let (base, workspaces) = feed_workspaces(args).await?;
    let mut lanes = Vec::new();
    let default = vec![crate::mlflow::DEFAULT_WORKSPACE.to_string()];
    for w in if workspaces.is_empty() {
        &default
    } else {
        &workspaces
    } {
        let lane = settings.in_workspace(w);
        let producer =
            FeedProducer::start(&lane, args.kafka_mode, base.tracking_uri().to_string()).await?;
        let store = Store::open(&workspace_state_dir(&args.state_dir, Some(w)))?;
        tracing::info!(workspace = %w, topic = %lane.topic, brokers = %lane.brokers, properties = ?lane.redacted_properties(), "feed: producing the change feed");
        lanes.push((w.clone(), base.in_workspace(w), store, producer));
    }
    let stop = crate::service::shutdown::on_signal();
    let surface = start_listener(args, &base, &stop).await?;
    let filter = PollFilter::default();
    loop {
        let mut total = FeedStats::default();
        let mut failed_pass = None;
        for (workspace, mlflow, store, producer) in &lanes {
            // Liveness follows the pass, event by event: a large first pass is not "stuck".
            let tick = || {
                if let Some(surface) = &surface {
                    surface.health.tick();
                }
            };
            match feed_once_with(mlflow, store, producer, &filter, tick).await {
                Ok(s) => {
                    crate::telemetry::poll_pass(workspace, true);
                    crate::telemetry::feed_pass("poll", workspace);
                    if s.produced > 0 || s.failed > 0 {
                        tracing::info!(
                            workspace = %workspace,
                            detected = s.detected,
                            produced = s.produced,
                            failed = s.failed,
                            gone = s.gone,
                            "feed: pass"
                        );
                    }
                    total.produced += s.produced;
                    total.failed += s.failed;
                    total.gone += s.gone;
                }
                Err(e) => {
                    crate::telemetry::poll_pass(workspace, false);
                    tracing::warn!(workspace = %workspace, error = %e, "feed: pass failed; retrying");
                    failed_pass = Some(e);
                }
            }
        }
        if args.once {
            if let Some(e) = failed_pass {
                return Err(CmdError::failed(e));
            }
            println!(
                "feed: {} produced, {} failed, {} gone",
                total.produced, total.failed, total.gone
            );
            return Ok(if total.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        if let Some(surface) = &surface {
            surface.health.tick();
        }
        let pause = Duration::from_secs_f64(args.poll_interval.max(0.1));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Some(surface) = surface {
        surface.stop().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `feed --from-debezium`: the re-keying stage alone, until stopped.
async fn run_from_debezium(args: &FeedArgs) -> Result<ExitCode, CmdError> {
    let settings = kafka_settings(&args.kafka)?;
    // The flags are checked before MLflow is asked anything.
    let base = MlflowClient::new(super::connect::service_mlflow_config(&args.mlflow)?)?;
    let mut config = super::connect::rekey_config(
        &settings,
        &args.to_kafka,
        args.kafka_mode,
        base.tracking_uri().to_string(),
    )?;
    let (mlflow, workspaces) = feed_workspaces(args).await?;
    config.workspaces = workspaces;
    let stop = crate::service::shutdown::on_signal();
    let surface = start_listener(args, &mlflow, &stop).await?;
    let rekeyer = Rekeyer::start(config, mlflow).await?;
    let mut last_report = None::<std::time::Instant>;
    let outcome = loop {
        if stop.is_cancelled() {
            break Ok(ExitCode::SUCCESS);
        }
        if !rekeyer.is_running() {
            break Err(CmdError::Service(ServiceError::Stopped(
                "the CDC stage stopped unexpectedly".into(),
            )));
        }
        // Once a second: the listener's liveness, the stage's session, the dead-feed gauge.
        if last_report.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            last_report = Some(std::time::Instant::now());
            let session = rekeyer.stats.session();
            if session.is_ok() {
                crate::telemetry::feed_pass("debezium", "");
            }
            if let Some(surface) = &surface {
                surface.health.tick();
                surface.health.report(Check::Cdc, session);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.cancelled() => {}
        }
    };
    rekeyer.shutdown().await;
    if let Some(surface) = surface {
        surface.stop().await;
    }
    outcome
}
