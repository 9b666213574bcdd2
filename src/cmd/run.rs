//! `run` and `backfill`: flags validated into the service's configuration, the parts built (the
//! anchorer, the store, the guard), then [`crate::service`] runs until a signal (`backfill`:
//! until nothing is left to do, printing progress).
//!
//! The first SIGINT/SIGTERM stops detection, lets the in-flight step finish, flushes and exits
//! 0; a second one exits at once (the store is consistent by construction).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::connect::{anchored_workspaces, kafka_settings, workspace_state_dir, KafkaArgs};
use super::error::{finish, CmdError};
use super::settings::{
    anchorer_keyed, anchorer_with, concurrency, parse_duration, parse_since, AnchorSettings,
};
use super::surface::{load_guard, surface_config, GuardArgs, ServerArgs};
use crate::anchor::pipeline::PipelineConfig;
use crate::feed::poller::{poll_filtered, PollFilter};
use crate::service::kafka::{KafkaConfig, KafkaLane};
use crate::service::poll::{Lane, PollConfig, Progress, Quiet};
use crate::service::shutdown;
use crate::store::{Job, JobState, Store};

/// Arguments of `run` and `backfill`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub anchor: AnchorSettings,
    /// The sled state store.
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    /// Seconds between polls (`run`).
    #[arg(long, default_value_t = 5.0)]
    pub poll_interval: f64,
    /// Seconds a dependency (e.g. a registration's training run) is waited for before the
    /// event is anchored on GENESIS.
    #[arg(long, default_value_t = 3600)]
    pub max_dependency_wait: u64,
    /// Seconds a trace that is still IN_PROGRESS, or whose spans have not arrived, is waited
    /// for before its job is parked with the reason.
    #[arg(long, env = "ARIO_MLFLOW_MAX_TRACE_WAIT", default_value_t = 900)]
    pub max_trace_wait: u64,
    /// Seconds the registrations and promotions of runs started with the ar-io-mlflow plugin
    /// installed (`ario.enabled`) are left to the plugin's own background anchoring before
    /// this service anchors what it did not (so the two never anchor one event twice).
    #[arg(long, env = "ARIO_MLFLOW_PLUGIN_GRACE", default_value_t = 120)]
    pub plugin_grace: u64,
    /// How long a finished (Done) job keeps its whole signed event in the store before it is
    /// compacted to what dedupe, chains, `status` and audit need (key, TX, payload hash, chain
    /// link, times): `7d`, `12h`, `30m`, or seconds.
    #[arg(long, env = "ARIO_MLFLOW_RETAIN_DONE", default_value = "7d", value_parser = parse_duration)]
    pub retain_done: Duration,
    /// Only runs, versions and traces created at or after this time (`2026-11-01`, an RFC 3339
    /// time, or epoch milliseconds).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<i64>,
    /// Only runs and traces of this experiment id (repeatable).
    #[arg(long = "experiment")]
    pub experiments: Vec<String>,
    /// Only versions, stages and aliases of this registered model (repeatable).
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// Detect and report what would be anchored, without anchoring or writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many MLflow REST calls per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Events resolved at once (MLflow reads and payload building); each chain is still
    /// signed in detection order.
    #[arg(long, env = "ARIO_MLFLOW_RESOLVE_CONCURRENCY", default_value_t = 4, value_parser = concurrency)]
    pub resolve_concurrency: usize,
    /// Signed events published at once (MLflow writes and uploads).
    #[arg(long, env = "ARIO_MLFLOW_PUBLISH_CONCURRENCY", default_value_t = 8, value_parser = concurrency)]
    pub publish_concurrency: usize,
    /// How predictions are anchored: `per-trace` (one proof per trace, verifiable by the
    /// plugin) or `batched` (Merkle checkpoints: one upload per `--checkpoint-size` predictions
    /// of a version; verified by `verify trace`, not by the plugin).
    #[arg(
        long,
        value_enum,
        env = "ARIO_MLFLOW_PREDICTIONS",
        default_value = "per-trace"
    )]
    pub predictions: PredictionMode,
    /// Predictions per checkpoint at most (`--predictions batched`).
    #[arg(long, env = "ARIO_MLFLOW_CHECKPOINT_SIZE", default_value_t = 256, value_parser = concurrency)]
    pub checkpoint_size: usize,
    /// Seconds after which a batch is sealed even if not full (`--predictions batched`).
    #[arg(long, env = "ARIO_MLFLOW_CHECKPOINT_INTERVAL", default_value_t = 30.0)]
    pub checkpoint_interval: f64,
    /// Where events come from (`run`): `poll` (MLflow's REST API), `kafka` (the change-event
    /// topic, as a consumer group member), or both (`poll,kafka`: the poller then produces to
    /// the topic, like `feed`, and every event is anchored from Kafka).
    #[arg(
        long = "source",
        value_enum,
        value_delimiter = ',',
        default_value = "poll",
        env = "ARIO_MLFLOW_SOURCE"
    )]
    pub sources: Vec<Source>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub guard: GuardArgs,
}

/// A source of change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The MLflow REST poller.
    Poll,
    /// The Kafka change-event topic.
    Kafka,
}

/// How predictions are anchored (`--predictions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictionMode {
    /// One proof per trace.
    PerTrace,
    /// Merkle-batched checkpoints per model version.
    Batched,
}

/// The pipeline's settings of `args`, checked (`backfill` seals batches when idle).
fn pipeline_config(args: &ServiceArgs, until_caught_up: bool) -> Result<PipelineConfig, CmdError> {
    let checkpoints = match args.predictions {
        PredictionMode::PerTrace => None,
        PredictionMode::Batched => {
            if !(args.checkpoint_interval.is_finite() && args.checkpoint_interval > 0.0) {
                return Err(CmdError::Usage(format!(
                    "--checkpoint-interval must be a positive number of seconds, not {}",
                    args.checkpoint_interval
                )));
            }
            Some(crate::anchor::checkpoint::CheckpointConfig {
                size: args.checkpoint_size,
                interval: Duration::from_secs_f64(args.checkpoint_interval),
                seal_when_idle: until_caught_up,
            })
        }
    };
    if checkpoints.is_some() && args.sources.contains(&Source::Kafka) {
        return Err(CmdError::usage(
            "--predictions batched keeps its open batches in the local store: use it with --source poll (not kafka)",
        ));
    }
    Ok(PipelineConfig {
        limits: crate::anchor::resolve::Limits {
            max_dependency_wait: Duration::from_secs(args.max_dependency_wait),
            max_trace_wait: Duration::from_secs(args.max_trace_wait),
            plugin_grace: Duration::from_secs(args.plugin_grace),
        },
        resolve_concurrency: args.resolve_concurrency,
        publish_concurrency: args.publish_concurrency,
        checkpoints,
        metrics_source: if args.sources.contains(&Source::Kafka) {
            "kafka"
        } else {
            PipelineConfig::default().metrics_source
        },
        ..PipelineConfig::default()
    })
}

/// The poll interval of `args`, checked.
fn poll_interval(args: &ServiceArgs) -> Result<Duration, CmdError> {
    if !args.poll_interval.is_finite() {
        return Err(CmdError::Usage(format!(
            "--poll-interval must be a number of seconds, not {}",
            args.poll_interval
        )));
    }
    Ok(Duration::from_secs_f64(args.poll_interval.max(0.1)))
}

/// Runs the service (`backfill`: until caught up); `config` is the `--config` file, whose
/// `[guard]` table starts the guard beside `run`.
pub async fn run(
    args: ServiceArgs,
    until_caught_up: bool,
    config: Option<&std::path::Path>,
) -> ExitCode {
    finish(start(args, until_caught_up, config).await)
}

/// `run` waits for an MLflow that is not up yet (a reboot where it starts after the worker):
/// connection refused, timeouts and 5xx answers are retried with backoff up to 30 s, each said in
/// the log and — the listener serving meanwhile — by `/readyz` (503, what it waits for and the
/// last error; `/healthz` 200); a signal ends the wait (exit 0). What can never work (a bad URL,
/// refused credentials, an answer that is not MLflow's) is still reported by `start` as exit 2.
/// Returns false when stopped by a signal.
async fn wait_for_mlflow(
    mlflow: &crate::mlflow::MlflowClient,
    listen: Option<std::net::SocketAddr>,
) -> Result<bool, CmdError> {
    let mut delay = Duration::from_secs(1);
    let mut starting: Option<crate::server::starting::StartingListener> = None;
    let waiting = crate::server::starting::Waiting::default();
    let ready = loop {
        match mlflow.list_workspaces().await {
            Err(e) if e.is_transient() => {
                waiting.set(format!(
                    "MLflow at {} is not reachable yet: {e}",
                    mlflow.tracking_uri()
                ));
                if let (None, Some(addr)) = (&starting, listen) {
                    starting = Some(
                        crate::server::starting::StartingListener::start(addr, waiting.clone())
                            .await
                            .map_err(|e| CmdError::Setup(Box::new(e)))?,
                    );
                }
                tracing::warn!(
                    tracking_uri = %mlflow.tracking_uri(),
                    error = %e,
                    retry_in_secs = delay.as_secs(),
                    "MLflow is not reachable yet: waiting for it (stop with a signal)"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::service::shutdown::signal() => break false,
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            _ => {
                if starting.is_some() {
                    tracing::info!(tracking_uri = %mlflow.tracking_uri(), "MLflow is reachable: starting");
                }
                break true;
            }
        }
    };
    // The service's own listener binds the same address next.
    if let Some(listener) = starting {
        listener.stop().await;
    }
    Ok(ready)
}

async fn start(
    args: ServiceArgs,
    until_caught_up: bool,
    config: Option<&std::path::Path>,
) -> Result<ExitCode, CmdError> {
    let filter = PollFilter {
        experiments: args.experiments.clone(),
        models: args.models.clone(),
        since_ms: args.since,
    };
    if args.dry_run {
        return dry_run(&args, &filter).await;
    }
    let surface = surface_config(&args.server, &args.state_dir)?;
    let pipeline = pipeline_config(&args, until_caught_up)?;
    let poll_interval = poll_interval(&args)?;
    let kafka = args.sources.contains(&Source::Kafka);
    if kafka && until_caught_up {
        return Err(CmdError::usage(
            "backfill polls MLflow; --source kafka is for `run`",
        ));
    }
    let mut mlflow_config = super::connect::service_mlflow_config(&args.anchor.mlflow)?;
    mlflow_config.max_calls_per_sec = args.rate;
    let mut anchorer = anchorer_with(&args.anchor, mlflow_config.clone())?;
    // Kafka's flags are checked before MLflow is asked anything.
    let kafka_parts = if kafka {
        let settings = kafka_settings(&args.kafka)?;
        let rekey = if args.kafka.kafka_format == crate::feed::kafka::KafkaFormat::Debezium {
            if args.sources.contains(&Source::Poll) {
                return Err(CmdError::usage("--kafka-format debezium carries every change MLflow's database makes: use --source kafka alone (not poll,kafka)"));
            }
            Some(super::connect::rekey_config(
                &settings,
                &args.kafka.kafka_events_topic,
                Default::default(),
                anchorer.mlflow.tracking_uri().to_string(),
            )?)
        } else {
            None
        };
        Some((settings, rekey))
    } else {
        None
    };
    if !until_caught_up && !wait_for_mlflow(&anchorer.mlflow, surface.listen).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let workspaces = anchored_workspaces(&args.anchor.mlflow, &anchorer.mlflow).await?;
    // Without a workspace header; every workspace's client shares its pool and rate limit.
    let base = anchorer.mlflow.clone();
    if let Some(first) = workspaces.first() {
        anchorer.mlflow = base.in_workspace(first);
    }
    if let Err(e) = anchorer
        .mlflow
        .search_model_versions("name='__ario_probe__'")
        .await
    {
        return Err(CmdError::Setup(
            format!(
                "MLflow is not usable at {}: {e}",
                anchorer.mlflow.tracking_uri()
            )
            .into(),
        ));
    }
    if let Some((settings, mut rekey)) = kafka_parts {
        if let Some(rekey) = &mut rekey {
            rekey.workspaces = workspaces.clone();
        }
        if args.server.webhook_secret.iter().any(|s| !s.is_empty()) {
            tracing::warn!("webhooks are served with `--source poll` only; in Kafka mode the route answers 404 (run `feed` with the poller instead)");
        }
        let guard = load_guard(
            config,
            &args.guard,
            &args.anchor,
            &anchorer.mlflow,
            &anchorer.turbo,
            &args.state_dir,
        )
        .await?;
        let feed_store = |w: &String| -> Result<Option<Store>, CmdError> {
            match args.sources.contains(&Source::Poll) {
                true => Ok(Some(Store::open(&workspace_state_dir(
                    &args.state_dir,
                    Some(w),
                ))?)),
                false => Ok(None),
            }
        };
        let default = crate::mlflow::DEFAULT_WORKSPACE.to_string();
        let first = workspaces.first().unwrap_or(&default);
        let key = anchorer.key.clone();
        let mut lanes = vec![KafkaLane {
            workspace: first.clone(),
            feed_store: feed_store(first)?,
            anchorer,
        }];
        for w in workspaces.iter().skip(1) {
            // The same key and wallet (loaded again from the same place), another workspace.
            let mut lane = anchorer_keyed(&args.anchor, mlflow_config.clone(), key.clone())?;
            lane.mlflow = base.in_workspace(w);
            lanes.push(KafkaLane {
                workspace: w.clone(),
                anchorer: lane,
                feed_store: feed_store(w)?,
            });
        }
        let config = KafkaConfig {
            settings,
            rekey,
            poll_interval,
            retain_done: args.retain_done,
            pipeline,
            surface,
        };
        let stop = shutdown::on_signal();
        crate::service::kafka::run_workspaces(config, lanes, guard, stop).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&workspace_state_dir(&args.state_dir, workspaces.first()))?;
    let mut lanes = Vec::new();
    for w in workspaces.iter().skip(1) {
        // The same key and wallet (loaded again from the same place), another workspace.
        let mut lane = anchorer_keyed(&args.anchor, mlflow_config.clone(), anchorer.key.clone())?;
        lane.mlflow = base.in_workspace(w);
        lanes.push(Lane {
            workspace: w.clone(),
            anchorer: lane,
            store: Store::open(&workspace_state_dir(&args.state_dir, Some(w)))?,
        });
    }
    if !workspaces.is_empty() {
        tracing::info!(?workspaces, "anchoring MLflow workspaces");
    }
    let guard = if until_caught_up {
        None
    } else {
        load_guard(
            config,
            &args.guard,
            &args.anchor,
            &anchorer.mlflow,
            &anchorer.turbo,
            &args.state_dir,
        )
        .await?
    };
    let config = PollConfig {
        filter,
        poll_interval,
        until_caught_up,
        retain_done: args.retain_done,
        pipeline,
        surface,
        webhook_secrets: args.server.webhook_secret.clone(),
        webhook_tolerance: Duration::from_secs(args.server.webhook_tolerance),
    };
    // A progress bar on a terminal, plain periodic lines otherwise (logs, CI); `run` logs only.
    let mut progress: Box<dyn Progress> = if !until_caught_up {
        Box::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Lines::new())
    };
    let stop = shutdown::on_signal();
    crate::service::poll::run_workspaces(
        config,
        anchorer,
        store,
        lanes,
        guard,
        progress.as_mut(),
        stop,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Says which jobs wait on a parked one (a backfill stops there).
fn print_blocked(jobs: &[Job]) {
    for job in jobs {
        println!(
            "backfill: {} waits on a parked job ({}); fix the cause and `retry` it",
            job.key,
            match &job.state {
                JobState::Waiting { on, .. } => on.as_str(),
                _ => "",
            }
        );
    }
}

/// `backfill` on a terminal: a bar of closed jobs over all jobs (counters, never the history).
struct Bar {
    bar: indicatif::ProgressBar,
    drawn: Instant,
}

impl Bar {
    fn new() -> Bar {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} events  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        Bar {
            bar,
            drawn: Instant::now(),
        }
    }

    /// Progress: closed jobs over all jobs, and what is done per event type.
    fn draw(&mut self, store: &Store) {
        let total = store.job_count();
        let open = store.open_count();
        let parked = store.parked_count();
        self.bar.set_length(total as u64);
        self.bar.set_position(total.saturating_sub(open) as u64);
        self.bar.set_message(if parked > 0 {
            format!("{parked} parked")
        } else {
            String::new()
        });
        self.drawn = Instant::now();
    }
}

impl Progress for Bar {
    fn step(&mut self, store: &Store) {
        // Redrawn at most every 200 ms while the pipeline drains.
        if self.drawn.elapsed() > Duration::from_millis(200) {
            self.draw(store);
        }
    }

    fn pass(&mut self, store: &Store, _mlflow_calls: u64, _open: usize) {
        self.draw(store);
    }

    fn blocked(&mut self, jobs: &[Job]) {
        print_blocked(jobs);
    }

    fn finish(&mut self) {
        self.bar.finish();
    }
}

/// `backfill` in logs: a line every 5 seconds and when done.
struct Lines {
    started: Instant,
    printed: Instant,
}

impl Lines {
    fn new() -> Lines {
        Lines {
            started: Instant::now(),
            printed: Instant::now(),
        }
    }
}

impl Progress for Lines {
    fn pass(&mut self, store: &Store, mlflow_calls: u64, open: usize) {
        if self.printed.elapsed() > Duration::from_secs(5) || open == 0 {
            // Counters and indexes, never the whole history.
            println!(
                "backfill: {} jobs ({} open, {} parked) after {:.1} s, {} MLflow calls",
                store.job_count(),
                store.open_count(),
                store.parked_count(),
                self.started.elapsed().as_secs_f64(),
                mlflow_calls
            );
            self.printed = Instant::now();
        }
    }

    fn blocked(&mut self, jobs: &[Job]) {
        print_blocked(jobs);
    }
}

/// `--dry-run`: detect into a throwaway store and report what would be anchored.
async fn dry_run(args: &ServiceArgs, filter: &PollFilter) -> Result<ExitCode, CmdError> {
    let mlflow = super::connect::mlflow_client(&args.anchor.mlflow)?;
    let store = Store::temporary()?;
    let stats = poll_filtered(&mlflow, &store, filter)
        .await
        .map_err(CmdError::failed)?;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for job in store.jobs().unwrap_or_default() {
        *counts.entry(job.event.event_type()).or_default() += 1;
    }
    println!("dry run: would anchor {} events {counts:?} (plus the dataset inputs of each run); nothing was written", stats.new_jobs);
    Ok(ExitCode::SUCCESS)
}
