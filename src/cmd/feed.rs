//! `feed --to-kafka TOPIC`: the poller as a Kafka producer (docs/kafka.md). Detection only:
//! nothing is signed or uploaded here; `run --source kafka` instances anchor what it produces.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::connect::{kafka_settings, KafkaArgs, MlflowArgs};
use super::error::{finish, CmdError};
use crate::feed::cloudevents::Mode;
use crate::feed::kafka::producer::{feed_once, FeedProducer};
use crate::feed::kafka::rekey::Rekeyer;
use crate::feed::kafka::KafkaFormat;
use crate::feed::poller::PollFilter;
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
}

/// Runs the feed until stopped (or one pass with `--once`).
pub async fn run(args: FeedArgs) -> ExitCode {
    if args.from_debezium || args.kafka.kafka_format == KafkaFormat::Debezium {
        return finish(run_from_debezium(&args).await);
    }
    finish(run_producer(&args).await)
}

/// `feed --to-kafka`: the poller as a producer.
async fn run_producer(args: &FeedArgs) -> Result<ExitCode, CmdError> {
    let mut kafka = args.kafka.clone();
    kafka.kafka_topic = args.to_kafka.clone();
    let settings = kafka_settings(&kafka)?;
    let mlflow = super::connect::mlflow_client(&args.mlflow)?;
    let store = Store::open(&args.state_dir)?;
    let producer = FeedProducer::start(
        &settings,
        args.kafka_mode,
        mlflow.tracking_uri().to_string(),
    )
    .await?;
    tracing::info!(topic = %settings.topic, brokers = %settings.brokers, properties = ?settings.redacted_properties(), "feed: producing the change feed");
    let stop = crate::service::shutdown::on_signal();
    let filter = PollFilter::default();
    loop {
        match feed_once(&mlflow, &store, &producer, &filter).await {
            Ok(s) => {
                if s.produced > 0 || s.failed > 0 {
                    tracing::info!(
                        detected = s.detected,
                        produced = s.produced,
                        failed = s.failed,
                        gone = s.gone,
                        "feed: pass"
                    );
                }
                if args.once {
                    println!(
                        "feed: {} produced, {} failed, {} gone",
                        s.produced, s.failed, s.gone
                    );
                    return Ok(if s.failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "feed: pass failed; retrying");
                if args.once {
                    return Err(CmdError::failed(e));
                }
            }
        }
        let pause = Duration::from_secs_f64(args.poll_interval.max(0.1));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// `feed --from-debezium`: the re-keying stage alone, until stopped.
async fn run_from_debezium(args: &FeedArgs) -> Result<ExitCode, CmdError> {
    let settings = kafka_settings(&args.kafka)?;
    let mlflow = super::connect::mlflow_client(&args.mlflow)?;
    let config = super::connect::rekey_config(
        &settings,
        &args.to_kafka,
        args.kafka_mode,
        mlflow.tracking_uri().to_string(),
    )?;
    let rekeyer = Rekeyer::start(config, mlflow).await?;
    let stop = crate::service::shutdown::on_signal();
    while !stop.is_cancelled() {
        if !rekeyer.is_running() {
            return Err(CmdError::Service(ServiceError::Stopped(
                "the CDC stage stopped unexpectedly".into(),
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.cancelled() => {}
        }
    }
    rekeyer.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
