//! `run`, `backfill`, `status`, `retry`: the durable service over the sled store.
//!
//! `run` polls MLflow every `--poll-interval` seconds and drives the job pipeline. The first
//! SIGINT/SIGTERM stops detection, lets the in-flight step finish, flushes and exits 0; a second
//! one exits at once (the store is consistent by construction). `backfill` does the same until
//! nothing is left to do, printing progress lines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::connect::{kafka_settings, ArweaveHttpArgs, KafkaArgs, MlflowArgs};
use crate::anchor::pipeline::{retry as retry_jobs, Pipeline, PipelineConfig};
use crate::anchor::Anchorer;
use crate::arweave::turbo::{RetryPolicy, TurboConfig};
use crate::arweave::{TurboClient, Wallet};
use crate::feed::poller::{poll_filtered, PollFilter};
use crate::keys::EnvelopeKey;
use crate::store::{JobState, Store};

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

/// The HTTP listener: metrics, probes, MLflow webhooks.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of the HTTP listener (`/metrics`, `/healthz`, `/readyz`, `POST
    /// /v1/webhooks/mlflow`); `off` disables it. Loopback by default: put a proxy or a Service
    /// in front to expose it.
    #[arg(long, env = "ARIO_MLFLOW_LISTEN", default_value = crate::server::DEFAULT_LISTEN)]
    pub listen: String,
    /// Secret(s) MLflow signs webhook deliveries with, comma-separated (several during a
    /// rotation). Unset: the webhook route answers 404.
    #[arg(
        long,
        env = "ARIO_MLFLOW_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub webhook_secret: Vec<String>,
    /// Seconds a webhook's timestamp may differ from this machine's clock.
    #[arg(long, env = "ARIO_MLFLOW_WEBHOOK_TOLERANCE", default_value_t = 300)]
    pub webhook_tolerance: u64,
    /// Seconds between readiness probes of MLflow and Turbo; a check fails `/readyz` when it
    /// has not passed within three intervals.
    #[arg(long, env = "ARIO_MLFLOW_HEALTH_INTERVAL", default_value_t = 10.0)]
    pub health_interval: f64,
    /// Seconds without a pipeline tick after which `/healthz` answers 503.
    #[arg(long, env = "ARIO_MLFLOW_STUCK_AFTER", default_value_t = 300)]
    pub stuck_after: u64,
    /// Seconds between coverage passes exported as `ario_mlflow_worker_coverage_entities`
    /// (the gaps only: runs and traces without a TX tag, every version — a cost that follows
    /// the gaps, not the registry; `coverage` counts and verifies all); 0 turns it off.
    #[arg(long, env = "ARIO_MLFLOW_COVERAGE_INTERVAL", default_value_t = 300)]
    pub coverage_interval: u64,
}

/// What the guard checks with (its assets come from the `[guard]` table of `--config`).
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Read gateway for the guard's checks (repeatable) [default: the gateway host,
    /// turbo-gateway.com, ardrive.net].
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Gateways, comma-separated (replaces the defaults).
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Pinned signer key (64 hex) for the guard's checks; repeatable or comma-separated in the env.
    #[arg(
        long = "trusted-key",
        env = "ARIO_MLFLOW_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
    /// ar.io Verify base URL: the guard's checks then need this attestation level too.
    #[arg(long, env = "ARIO_MLFLOW_ARIO_VERIFY_URL")]
    pub ario_verify_url: Option<String>,
    /// Attestation level the guard's checks need (with `--ario-verify-url`).
    #[arg(long, default_value_t = 2)]
    pub min_attestation_level: u64,
}

/// The guard of `--config`'s `[guard]` table, with the verifier it checks through and the
/// management secret its endpoint requires; `None` without a policy.
pub(crate) async fn guard_from_config(
    config: Option<&std::path::Path>,
    args: &GuardArgs,
    mlflow: &crate::mlflow::MlflowClient,
    http: &ArweaveHttpArgs,
    gateway_host: &str,
    state_dir: &std::path::Path,
    signing: Option<(EnvelopeKey, Wallet, TurboClient)>,
) -> Result<Option<GuardParts>, String> {
    let Some(path) = config else { return Ok(None) };
    let Some(policy) = crate::guard::policy::GuardPolicy::load(path).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let gateways = crate::arweave::gateway::gateway_list(
        &args.gateways,
        args.gateways_env.as_deref(),
        Some(gateway_host),
    )
    .map_err(|e| e.to_string())?;
    let http = super::connect::http_settings(http)?;
    let reader = crate::arweave::GatewayReader::new(gateways, &http).map_err(|e| e.to_string())?;
    let trusted = super::verify::trusted_keys(&args.trusted_keys)?;
    let attestation = match &args.ario_verify_url {
        Some(url) => crate::verify::ArioVerifyClient::connect(url, &http).await?,
        None => None,
    };
    let verifier = crate::verify::Verifier {
        mlflow: mlflow.clone(),
        gateways: reader,
        trusted_keys: trusted,
        attestation,
        min_attestation_level: args.min_attestation_level,
        checksum_memo: Some(crate::verify::ChecksumMemo::new(
            std::time::Duration::from_secs(1),
        )),
    };
    let secret = crate::guard::management_secret(state_dir)?;
    tracing::info!(assets = policy.assets.len(), policy_hash = %policy.policy_hash(), secret_file = %state_dir.join("management-secret").display(), "guard: policy loaded");
    let mut guard = crate::guard::Guard::new(policy.clone());
    if let Some((key, wallet, turbo)) = signing {
        let events = crate::guard::events::GuardEvents::open(
            state_dir,
            key,
            wallet.signer,
            turbo,
            &policy.tenant_id,
            &policy.agent_id,
            guard.policy_hash(),
        )?;
        guard = guard.with_events(events);
    }
    Ok(Some((Arc::new(guard), Arc::new(verifier), secret)))
}

/// The guard of `config` with its signing parts (see [`guard_from_config`]).
async fn load_guard(
    config: Option<&std::path::Path>,
    args: &GuardArgs,
    anchor: &AnchorSettings,
    mlflow: &crate::mlflow::MlflowClient,
    turbo: &TurboClient,
    state_dir: &std::path::Path,
) -> Result<Option<GuardParts>, String> {
    let signing = guard_signing(anchor, turbo)?;
    guard_from_config(
        config,
        args,
        mlflow,
        &anchor.http,
        &anchor.gateway_host,
        state_dir,
        Some(signing),
    )
    .await
}

/// The envelope key, the wallet and Turbo the guard signs and uploads its events with (loaded
/// like the anchorer's: the same files and environment).
fn guard_signing(
    s: &AnchorSettings,
    turbo: &TurboClient,
) -> Result<(EnvelopeKey, Wallet, TurboClient), String> {
    let key = EnvelopeKey::load_or_create(s.signing_key.as_deref(), s.key_dir.as_deref())
        .map_err(|e| e.to_string())?;
    let wallet = Wallet::load_or_create(s.wallet.as_deref(), None).map_err(|e| e.to_string())?;
    Ok((key, wallet, turbo.clone()))
}

/// The guard, the verifier it checks through, and the management secret.
pub(crate) type GuardParts = (
    Arc<crate::guard::Guard>,
    Arc<crate::verify::Verifier>,
    String,
);

/// A source of change events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// The MLflow REST poller.
    Poll,
    /// The Kafka change-event topic.
    Kafka,
}

/// Parses a duration: `7d`, `12h`, `30m`, `45s`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 7d, 12h, 30m, 45s, or seconds)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use d, h, m or s)"
            ))
        }
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--since`: `YYYY-MM-DD` (UTC midnight), RFC 3339, or epoch milliseconds.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &date_format)
        .map(|d| (d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            format!("{text:?} is not a date (YYYY-MM-DD), an RFC 3339 time or epoch milliseconds")
        })
}

/// A concurrency bound: 1 to 256.
fn concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a number from 1 to 256")),
    }
}

/// Everything needed to sign and upload (shared by `anchor`, `run`, `backfill`).
#[derive(Debug, Args)]
pub struct AnchorSettings {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    /// Turbo upload service base URL.
    #[arg(
        long,
        env = "ARIO_MLFLOW_UPLOAD_URL",
        default_value = "https://upload.ardrive.io"
    )]
    pub upload_url: url::Url,
    /// Host used in `ario.arweave_url` tags.
    #[arg(
        long,
        env = "ARIO_MLFLOW_GATEWAY_HOST",
        default_value = "turbo-gateway.com"
    )]
    pub gateway_host: String,
    /// What a prediction writes back to its trace: `minimal` (the payload witness artifact,
    /// `ario.payload_json`, `ario.prediction_tx`: 3 MLflow calls, enough for both `verify
    /// trace` commands) or `full` (also the plugin's mirror tags and the proof artifact: 12).
    #[arg(
        long,
        value_enum,
        env = "ARIO_MLFLOW_PREDICTION_TAGS",
        default_value = "minimal"
    )]
    pub prediction_tags: crate::anchor::prediction::PredictionTags,
    /// Directory of the plugin-format envelope key files [default: ~/.ario-mlflow/keys].
    #[arg(long, global = true, env = "ARIO_MLFLOW_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Base64 of the 32-byte Ed25519 envelope seed; wins over key files.
    #[arg(
        long = "signing-key",
        env = "ARIO_MLFLOW_SIGNING_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub signing_key: Option<String>,
    /// Arweave JWK or Solana id.json that signs data items [default: ~/.ario-mlflow/wallet.json].
    #[arg(long, global = true, env = "ARIO_MLFLOW_ARWEAVE_WALLET")]
    pub wallet: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// How predictions are anchored (`--predictions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictionMode {
    /// One proof per trace.
    PerTrace,
    /// Merkle-batched checkpoints per model version.
    Batched,
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sled state store.
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The job key (dedupe key) to retry, e.g. `mv/model/3`.
    #[arg(required_unless_present = "all_parked")]
    pub job_key: Option<String>,
    /// Retry every parked job.
    #[arg(long)]
    pub all_parked: bool,
    /// The sled state store.
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
}

/// Builds the anchoring parts from flags; every startup error says what to fix.
pub(crate) fn anchorer(s: &AnchorSettings) -> Result<Anchorer, String> {
    let mlflow = super::connect::mlflow_client(&s.mlflow)?;
    let key = EnvelopeKey::load_or_create(s.signing_key.as_deref(), s.key_dir.as_deref())
        .map_err(|e| e.to_string())?;
    let wallet = Wallet::load_or_create(s.wallet.as_deref(), None).map_err(|e| e.to_string())?;
    let http = super::connect::http_settings(&s.http)?;
    let turbo = TurboClient::new(TurboConfig {
        upload_url: s.upload_url.clone(),
        http,
        retry: RetryPolicy::default(),
    })
    .map_err(|e| e.to_string())?;
    Ok(Anchorer {
        mlflow,
        turbo,
        key,
        wallet,
        gateway_host: s.gateway_host.clone(),
        prediction_tags: s.prediction_tags,
        traces: Default::default(),
        served_models: Default::default(),
    })
}

/// The listener and the readiness probe, running beside the service until `stop`.
struct Surface {
    health: Arc<crate::server::health::Health>,
    server: Option<tokio::task::JoinHandle<()>>,
    shutdown: Arc<tokio::sync::Notify>,
}

impl Surface {
    /// Binds the listener (a taken port fails here, at startup), installs the metrics recorder
    /// and starts the probe of MLflow, Turbo and the store (the store's gauges with it).
    async fn start(
        args: &ServerArgs,
        mlflow: &crate::mlflow::MlflowClient,
        turbo: Option<&TurboClient>,
        store: Option<Store>,
        webhook: Option<Arc<crate::feed::webhook::WebhookReceiver>>,
        kafka: Option<Arc<crate::feed::kafka::consumer::ConsumerStats>>,
        guard: Option<GuardParts>,
    ) -> Result<Surface, String> {
        use crate::server::health::{Check, Health};
        let interval = Duration::from_secs_f64(args.health_interval.clamp(0.1, 3600.0));
        let mut required = vec![Check::Mlflow];
        if turbo.is_some() {
            required.push(Check::Turbo);
        }
        if store.is_some() {
            required.push(Check::Store);
        }
        if kafka.is_some() {
            required.push(Check::Kafka);
        }
        let health = Arc::new(Health::new(
            Duration::from_secs(args.stuck_after.max(1)),
            interval * 3,
            &required,
        ));
        health.tick();
        let shutdown = Arc::new(tokio::sync::Notify::new());
        let server = if args.listen.eq_ignore_ascii_case("off") {
            None
        } else {
            let addr: std::net::SocketAddr = args.listen.parse().map_err(|_| {
                format!(
                    "--listen {:?} is not an address like 127.0.0.1:9847 (or `off`)",
                    args.listen
                )
            })?;
            let listener = crate::server::bind(addr).await.map_err(|e| e.to_string())?;
            let bound = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let metrics = match crate::telemetry::install() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are off");
                    None
                }
            };
            let state = crate::server::ServerState {
                metrics,
                health: health.clone(),
                webhook_off_reason: if webhook.is_some() {
                    String::new()
                } else if store.is_none() {
                    "webhooks need the poller's store (`--source poll`)".into()
                } else {
                    "webhooks are not enabled: set ARIO_MLFLOW_WEBHOOK_SECRET to the webhook's secret".into()
                },
                webhook: webhook.clone(),
                guard: guard.as_ref().map(|(g, _, _)| g.clone()),
                management_secret: guard.as_ref().map(|(_, _, s)| s.clone()),
            };
            tracing::info!(listen = %bound, webhooks = webhook.is_some(), "HTTP listener up: /metrics /healthz /readyz");
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                if let Err(e) =
                    crate::server::serve(listener, state, async move { stop.notified().await })
                        .await
                {
                    tracing::warn!(error = %e, "HTTP listener stopped");
                }
            }))
        };
        if let Some((guard, verifier, _)) = guard {
            let stop = shutdown.clone();
            tokio::spawn(guard.run(verifier, stop));
        }
        if args.coverage_interval > 0 && !args.listen.eq_ignore_ascii_case("off") {
            let every = Duration::from_secs(args.coverage_interval);
            let stop = shutdown.clone();
            let mlflow = mlflow.clone();
            tokio::spawn(async move { coverage_gauges(mlflow, every, stop).await });
        }
        let probe_health = health.clone();
        let mlflow = mlflow.clone();
        let turbo = turbo.cloned();
        let probe_stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                probe(
                    &probe_health,
                    interval,
                    &mlflow,
                    turbo.as_ref(),
                    store.as_ref(),
                    kafka.as_deref(),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = probe_stop.notified() => break,
                }
            }
        });
        Ok(Surface {
            health,
            server,
            shutdown,
        })
    }

    async fn stop(self) {
        self.shutdown.notify_waiters();
        if let Some(server) = self.server {
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

/// The coverage gaps every `every`, as gauges (tags only, and only what is not anchored: its
/// cost follows the gaps, not the registry; the `coverage` command counts and verifies all).
async fn coverage_gauges(
    mlflow: crate::mlflow::MlflowClient,
    every: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let gateways = match crate::arweave::gateway::gateway_list(&[], None, None) {
        Ok(g) => g,
        Err(_) => return,
    };
    let Ok(reader) = crate::arweave::GatewayReader::new(gateways, &Default::default()) else {
        return;
    };
    let verifier = crate::verify::Verifier {
        mlflow,
        gateways: reader,
        trusted_keys: Vec::new(),
        attestation: None,
        min_attestation_level: 2,
        checksum_memo: None,
    };
    loop {
        // The gaps only: a periodic pass must not read everything ever anchored.
        match verifier.coverage_gaps().await {
            Ok(c) => {
                for (event_type, n) in &c.counts {
                    for (standing, count) in [
                        ("anchored", n.anchored),
                        ("signed_only", n.signed_only),
                        ("not_anchored", n.not_anchored),
                        ("no_model", n.no_model),
                    ] {
                        // Runs and traces anchored are not counted by the gaps pass.
                        if standing == "anchored"
                            && *event_type != crate::profile::registration::EVENT_TYPE
                        {
                            continue;
                        }
                        crate::telemetry::coverage(event_type, standing, count);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "coverage pass failed; retrying next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return,
        }
    }
}

/// One readiness round (every `interval`): MLflow, Turbo, the store (with its gauges), Kafka's
/// partitions.
async fn probe(
    health: &crate::server::health::Health,
    interval: Duration,
    mlflow: &crate::mlflow::MlflowClient,
    turbo: Option<&TurboClient>,
    store: Option<&Store>,
    kafka: Option<&crate::feed::kafka::consumer::ConsumerStats>,
) {
    use crate::server::health::Check;
    let turbo_info = async {
        match turbo {
            Some(t) => Some(t.info().await),
            None => None,
        }
    };
    // MLflow answered the poller since the last round: no extra request (an idle poll is what
    // the tracking server pays for this service). Within one interval, so the check stays
    // fresh for readiness (3 intervals) whoever reports it.
    let mlflow_probe = async {
        if health.passed_within(Check::Mlflow, interval.min(Duration::from_secs(10))) {
            None
        } else {
            Some(mlflow.search_model_versions("name='__ario_probe__'").await)
        }
    };
    let (m, t) = tokio::join!(mlflow_probe, turbo_info);
    if let Some(m) = m {
        health.report(Check::Mlflow, m.map(|_| ()).map_err(|e| e.to_string()));
    }
    if let Some(t) = t {
        health.report(Check::Turbo, t.map(|_| ()));
    }
    if let Some(store) = store {
        match store.open_jobs() {
            Ok(open) => {
                let mut per_state: BTreeMap<&'static str, usize> = [
                    "detected",
                    "waiting",
                    "signed",
                    "signed_written",
                    "uploaded",
                    "parked",
                ]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
                for job in &open {
                    *per_state.entry(job.state.name()).or_default() += 1;
                }
                per_state.insert("parked", store.parked_count());
                let now = crate::store::now_ms();
                let oldest = open
                    .iter()
                    .map(|j| j.detected_ms)
                    .min()
                    .map(|t| Duration::from_millis(now.saturating_sub(t)));
                let states: Vec<(&'static str, usize)> = per_state.into_iter().collect();
                crate::telemetry::store_gauges(&states, oldest, store.size_on_disk());
                health.report(Check::Store, Ok(()));
            }
            Err(e) => health.report(Check::Store, Err(e.to_string())),
        }
    }
    if let Some(stats) = kafka {
        let owned = stats.owned.load(Ordering::Relaxed);
        health.report(
            Check::Kafka,
            if owned > 0 {
                Ok(())
            } else {
                Err("no partition assigned (more instances than partitions, or still joining the group)".into())
            },
        );
    }
}

/// Runs the service (`backfill`: until caught up); `config` is the `--config` file, whose
/// `[guard]` table starts the guard beside `run`.
pub async fn run(
    args: ServiceArgs,
    until_caught_up: bool,
    config: Option<&std::path::Path>,
) -> ExitCode {
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let filter = PollFilter {
        experiments: args.experiments.clone(),
        models: args.models.clone(),
        since_ms: args.since,
    };
    if args.dry_run {
        return dry_run(&args, &filter).await;
    }
    let mut anchorer = match anchorer(&args.anchor) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if let Some(rate) = args.rate {
        let mut config = match super::connect::mlflow_config(&args.anchor.mlflow) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        config.max_calls_per_sec = Some(rate);
        anchorer.mlflow = match crate::mlflow::MlflowClient::new(config) {
            Ok(m) => m,
            Err(e) => return fail(e.to_string()),
        };
    }
    if let Err(e) = anchorer
        .mlflow
        .search_model_versions("name='__ario_probe__'")
        .await
    {
        return fail(format!(
            "MLflow is not usable at {}: {e}",
            anchorer.mlflow.tracking_uri()
        ));
    }
    let checkpoints = match args.predictions {
        PredictionMode::PerTrace => None,
        PredictionMode::Batched => {
            if !(args.checkpoint_interval.is_finite() && args.checkpoint_interval > 0.0) {
                return fail(format!(
                    "--checkpoint-interval must be a positive number of seconds, not {}",
                    args.checkpoint_interval
                ));
            }
            Some(crate::anchor::checkpoint::CheckpointConfig {
                size: args.checkpoint_size,
                interval: Duration::from_secs_f64(args.checkpoint_interval),
                seal_when_idle: until_caught_up,
            })
        }
    };
    if checkpoints.is_some() && args.sources.contains(&Source::Kafka) {
        return fail(
            "--predictions batched keeps its open batches in the local store: use it with --source poll (not kafka)".into(),
        );
    }
    let pipeline_config = PipelineConfig {
        limits: crate::anchor::resolve::Limits {
            max_dependency_wait: Duration::from_secs(args.max_dependency_wait),
            max_trace_wait: Duration::from_secs(args.max_trace_wait),
            plugin_grace: Duration::from_secs(args.plugin_grace),
        },
        resolve_concurrency: args.resolve_concurrency,
        publish_concurrency: args.publish_concurrency,
        checkpoints,
        ..PipelineConfig::default()
    };
    if args.sources.contains(&Source::Kafka) {
        if until_caught_up {
            return fail("backfill polls MLflow; --source kafka is for `run`".into());
        }
        let pipeline_config = PipelineConfig {
            metrics_source: "kafka",
            ..pipeline_config
        };
        return run_kafka(&args, anchorer, pipeline_config, config).await;
    }
    let store = match Store::open(&args.state_dir) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let detect_lock: Arc<tokio::sync::Mutex<()>> = Default::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let webhook = if args.server.webhook_secret.iter().any(|s| !s.is_empty()) {
        match crate::feed::webhook::WebhookReceiver::new(
            args.server.webhook_secret.clone(),
            Duration::from_secs(args.server.webhook_tolerance),
            store.clone(),
            detect_lock.clone(),
            wake.clone(),
        ) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let guard = if until_caught_up {
        None
    } else {
        match load_guard(
            config,
            &args.guard,
            &args.anchor,
            &anchorer.mlflow,
            &anchorer.turbo,
            &args.state_dir,
        )
        .await
        {
            Ok(g) => g,
            Err(e) => return fail(e),
        }
    };
    let surface = match Surface::start(
        &args.server,
        &anchorer.mlflow,
        Some(&anchorer.turbo),
        Some(store.clone()),
        webhook,
        None,
        guard,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let health = surface.health.clone();
    let pipeline = Pipeline::new(anchorer, store, pipeline_config);
    let stop = Arc::new(AtomicBool::new(false));
    super::devnet::stop_on_signal(stop.clone());
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut last_blocked_check = Instant::now();
    // A progress bar on a terminal, plain periodic lines otherwise (logs, CI).
    use std::io::IsTerminal;
    let bar = (until_caught_up && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} events  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    });
    let mut last_compaction: Option<Instant> = None;
    loop {
        health.tick();
        // Retention: Done jobs older than --retain-done keep only their summary (hourly, or
        // sooner for a short retention).
        if last_compaction.is_none_or(|t| t.elapsed() > compaction_every(args.retain_done)) {
            last_compaction = Some(Instant::now());
            compact_store(&pipeline.store, args.retain_done).await;
        }
        let last_poll = Instant::now();
        let polled = {
            let _webhooks_wait = detect_lock.lock().await;
            poll_filtered(&pipeline.anchorer.mlflow, &pipeline.store, &filter).await
        };
        match polled {
            Ok(p) => {
                if p.failed_queries == 0 {
                    health.report(crate::server::health::Check::Mlflow, Ok(()));
                }
                if p.new_jobs > 0 {
                    tracing::info!(new_jobs = p.new_jobs, seen = p.seen, "detected")
                }
            }
            Err(e) => tracing::warn!(error = %e, "poll failed; retrying next cycle"),
        }
        let drained = match &bar {
            // Drain in small slices so the bar moves.
            Some(bar) => {
                let mut last = Instant::now();
                pipeline
                    .drain_with(&stop, |_| {
                        health.tick();
                        if last.elapsed() > Duration::from_millis(200) {
                            report_bar(bar, &pipeline.store);
                            last = Instant::now();
                        }
                    })
                    .await
            }
            None => pipeline.drain_with(&stop, |_| health.tick()).await,
        };
        if let Err(e) = drained {
            return fail(e.to_string());
        }
        // The open-jobs index: cheap however long the store's history is. A backfill is also
        // caught up when every open job waits on a parked one (nothing moves until `retry`).
        let mut open = pipeline.store.open_count();
        // That check reads every open job, so it runs at most every few seconds, not per pass.
        if until_caught_up && open > 0 && last_blocked_check.elapsed() > Duration::from_secs(5) {
            last_blocked_check = Instant::now();
            let blocked = pipeline.store.blocked_on_parked().unwrap_or_default();
            if blocked.len() == open {
                for job in &blocked {
                    println!(
                        "backfill: {} waits on a parked job ({}); fix the cause and `retry` it",
                        job.key,
                        match &job.state {
                            JobState::Waiting { on, .. } => on.as_str(),
                            _ => "",
                        }
                    );
                }
                open = 0;
            }
        }
        if let Some(bar) = &bar {
            report_bar(bar, &pipeline.store);
        } else if until_caught_up && (last_report.elapsed() > Duration::from_secs(5) || open == 0) {
            // Counters and indexes, never the whole history.
            let store = &pipeline.store;
            println!(
                "backfill: {} jobs ({} open, {} parked) after {:.1} s, {} MLflow calls",
                store.job_count(),
                store.open_count(),
                store.parked_count(),
                started.elapsed().as_secs_f64(),
                pipeline.anchorer.mlflow.calls_made()
            );
            last_report = Instant::now();
        }
        if stop.load(Ordering::SeqCst) || (until_caught_up && open == 0) {
            break;
        }
        // Jobs that wait (a dependency, a retry backoff) come due between polls, and a webhook
        // delivery wakes the loop at once: drain at least every second, poll on schedule.
        let poll_every = Duration::from_secs_f64(if until_caught_up {
            0.5
        } else {
            args.poll_interval.max(0.1)
        });
        let next_poll = last_poll + poll_every;
        loop {
            let now = Instant::now();
            if now >= next_poll || stop.load(Ordering::SeqCst) {
                break;
            }
            let nap = (next_poll - now).min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = wake.notified() => {}
            }
            health.tick();
            if pipeline.store.open_count() > 0 {
                if let Err(e) = pipeline.drain_with(&stop, |_| health.tick()).await {
                    return fail(e.to_string());
                }
            }
        }
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    surface.stop().await;
    match pipeline.store.flush().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// Each owned Kafka partition runs the pipeline over its store. The pipeline's future borrows
/// its own closures (it is not `Send + 'static` as a task), so each partition drives it on a
/// blocking thread of the runtime.
fn partition_worker(
    anchorer: Anchorer,
    config: PipelineConfig,
    retain_done: Duration,
) -> crate::feed::kafka::consumer::PartitionWorker {
    let anchorer = Arc::new(anchorer);
    let runtime = tokio::runtime::Handle::current();
    Arc::new(move |owned: crate::feed::kafka::consumer::OwnedPartition| {
        let pipeline = Pipeline::shared(anchorer.clone(), owned.store, config.clone());
        let rt = runtime.clone();
        runtime.spawn_blocking(move || {
            rt.block_on(async move {
                let mut last_compaction: Option<Instant> = None;
                while !owned.stop.load(Ordering::SeqCst) {
                    // Retention per owned partition: compacted jobs are tombstoned on the state
                    // topic in the next transaction.
                    if last_compaction.is_none_or(|t| t.elapsed() > compaction_every(retain_done)) {
                        last_compaction = Some(Instant::now());
                        compact_store(&pipeline.store, retain_done).await;
                    }
                    if let Err(e) = pipeline.drain(&owned.stop).await {
                        if !owned.stop.load(Ordering::SeqCst) {
                            tracing::warn!(partition = owned.partition, error = %e, "kafka: partition pipeline failed; rebuilding");
                            (owned.failed)();
                        }
                        break;
                    }
                    tokio::select! {
                        _ = owned.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    }
                }
            })
        })
    })
}

/// `run --source kafka[,poll]`: a consumer group member; with `poll`, the poller feeds the
/// topic from this process too.
async fn run_kafka(
    args: &ServiceArgs,
    anchorer: Anchorer,
    config: PipelineConfig,
    config_file: Option<&std::path::Path>,
) -> ExitCode {
    use crate::feed::kafka::consumer::KafkaConsumer;
    use crate::feed::kafka::producer::{feed_once, FeedProducer};
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let mut settings = match kafka_settings(&args.kafka) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let source = anchorer.mlflow.tracking_uri().to_string();
    let mlflow = anchorer.mlflow.clone();
    let turbo = anchorer.turbo.clone();
    // Change data capture: the CDC stage re-keys Debezium's records onto the event topic, and
    // this process consumes that topic like any member.
    let rekeyer = if args.kafka.kafka_format == crate::feed::kafka::KafkaFormat::Debezium {
        if args.sources.contains(&Source::Poll) {
            return fail("--kafka-format debezium carries every change MLflow's database makes: use --source kafka alone (not poll,kafka)".into());
        }
        let rekey = match super::connect::rekey_config(
            &settings,
            &args.kafka.kafka_events_topic,
            Default::default(),
            source.clone(),
        ) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        settings.topic = rekey.kafka.topic.clone();
        match crate::feed::kafka::rekey::Rekeyer::start(rekey, mlflow.clone()).await {
            Ok(r) => Some(r),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        None
    };
    let feed = if args.sources.contains(&Source::Poll) {
        let store = match Store::open(&args.state_dir) {
            Ok(s) => s,
            Err(e) => return fail(e.to_string()),
        };
        match FeedProducer::start(&settings, Default::default(), source.clone()).await {
            Ok(p) => Some((store, p)),
            Err(e) => return fail(e.to_string()),
        }
    } else {
        None
    };
    let consumer = match KafkaConsumer::start(
        settings.clone(),
        partition_worker(anchorer, config, args.retain_done),
        source,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = rekeyer {
                r.shutdown().await;
            }
            return fail(e.to_string());
        }
    };
    tracing::info!(topic = %settings.topic, group = %settings.group, brokers = %settings.brokers, properties = ?settings.redacted_properties(), "consuming the change feed");
    if args.server.webhook_secret.iter().any(|s| !s.is_empty()) {
        tracing::warn!("webhooks are served with `--source poll` only; in Kafka mode the route answers 404 (run `feed` with the poller instead)");
    }
    let guard = match load_guard(
        config_file,
        &args.guard,
        &args.anchor,
        &mlflow,
        &turbo,
        &args.state_dir,
    )
    .await
    {
        Ok(g) => g,
        Err(e) => {
            consumer.shutdown().await;
            return fail(e);
        }
    };
    let surface = match Surface::start(
        &args.server,
        &mlflow,
        Some(&turbo),
        None,
        None,
        Some(consumer.stats.clone()),
        guard,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            consumer.shutdown().await;
            return fail(e);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    super::devnet::stop_on_signal(stop.clone());
    let filter = PollFilter::default();
    let mut next_poll = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        surface.health.tick();
        if !consumer.is_running() {
            eprintln!("error: the Kafka consumer stopped unexpectedly");
            return ExitCode::from(1);
        }
        if let Some(r) = &rekeyer {
            if !r.is_running() {
                eprintln!("error: the CDC stage stopped unexpectedly");
                return ExitCode::from(1);
            }
            surface
                .health
                .report(crate::server::health::Check::Cdc, r.stats.session());
        }
        if let Some((store, producer)) = &feed {
            if Instant::now() >= next_poll {
                if let Err(e) = feed_once(&mlflow, store, producer, &filter).await {
                    tracing::warn!(error = %e, "poll failed; retrying next cycle");
                }
                next_poll = Instant::now() + Duration::from_secs_f64(args.poll_interval.max(0.1));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(r) = rekeyer {
        r.shutdown().await;
    }
    consumer.shutdown().await;
    surface.stop().await;
    ExitCode::SUCCESS
}

/// Progress: closed jobs over all jobs, and what is done per event type.
fn report_bar(bar: &indicatif::ProgressBar, store: &Store) {
    let total = store.job_count();
    let open = store.open_count();
    let parked = store.parked_count();
    bar.set_length(total as u64);
    bar.set_position(total.saturating_sub(open) as u64);
    bar.set_message(if parked > 0 {
        format!("{parked} parked")
    } else {
        String::new()
    });
}

/// How often retention compacts the store: half the retention, between a minute and an hour.
fn compaction_every(retain: Duration) -> Duration {
    (retain / 2).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

/// Compacts the Done jobs of `store` older than `retain`, on the blocking pool (sled I/O).
pub(crate) async fn compact_store(store: &Store, retain: Duration) {
    let store = store.clone();
    let before = crate::store::now_ms().saturating_sub(retain.as_millis() as u64);
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || store.compact(before)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            jobs = n,
            took_ms = started.elapsed().as_millis() as u64,
            "store: done jobs past retention compacted"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "store compaction failed; retrying in an hour"),
        Err(e) => tracing::warn!(error = %e, "store compaction did not finish"),
    }
}

/// `--dry-run`: detect into a throwaway store and report what would be anchored.
async fn dry_run(args: &ServiceArgs, filter: &PollFilter) -> ExitCode {
    let mlflow = match super::connect::mlflow_client(&args.anchor.mlflow) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let store = match Store::temporary() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match poll_filtered(&mlflow, &store, filter).await {
        Ok(stats) => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for job in store.jobs().unwrap_or_default() {
                *counts.entry(job.event.event_type()).or_default() += 1;
            }
            println!("dry run: would anchor {} events {counts:?} (plus the dataset inputs of each run); nothing was written", stats.new_jobs);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `status`.
pub fn status(args: &StatusArgs) -> ExitCode {
    let store = match Store::open(&args.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let jobs = store.jobs().unwrap_or_default();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for j in &jobs {
        *counts
            .entry(j.event.event_type().to_string())
            .or_default()
            .entry(j.state.name().to_string())
            .or_default() += 1;
    }
    let parked: Vec<serde_json::Value> = jobs
        .iter()
        .filter_map(|j| match &j.state {
            JobState::Parked { error } => {
                Some(serde_json::json!({"job": j.key, "error": error, "attempts": j.attempts}))
            }
            _ => None,
        })
        .collect();
    let chains: BTreeMap<String, String> = store
        .chain_heads()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, h)| (k, h.head))
        .collect();
    let cursors: BTreeMap<String, serde_json::Value> =
        store.cursors().unwrap_or_default().into_iter().collect();
    let doc = serde_json::json!({
        "jobs": jobs.len(), "counts": counts, "parked": parked, "chain_heads": chains,
        "cursors": cursors, "store_bytes": store.size_on_disk(),
    });
    if args.json {
        println!("{doc}");
    } else {
        println!("{} jobs, store {} bytes", jobs.len(), store.size_on_disk());
        for (event, states) in &counts {
            println!("  {event:<18} {states:?}");
        }
        for p in &parked {
            println!(
                "  PARKED {} — {}",
                p["job"].as_str().unwrap_or(""),
                p["error"].as_str().unwrap_or("")
            );
        }
        for (chain, head) in &chains {
            println!("  chain {chain} → {head}");
        }
    }
    ExitCode::SUCCESS
}

/// `retry`.
pub fn retry(args: &RetryArgs) -> ExitCode {
    let store = match Store::open(&args.state_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let key = if args.all_parked {
        None
    } else {
        args.job_key.as_deref()
    };
    match retry_jobs(&store, key)
        .and_then(|n| futures::executor::block_on(store.flush()).map(|()| n))
    {
        Ok(0) => {
            eprintln!("no parked job matched");
            ExitCode::from(1)
        }
        Ok(n) => {
            println!("re-queued {n} job(s); the running service (or the next run/backfill) picks them up");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Arguments of `guard`.
#[derive(Debug, Args)]
pub struct GuardCommandArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub anchor: AnchorSettings,
    /// Where the guard keeps its state (the management secret, kept outcomes, events).
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub guard: GuardArgs,
}

/// `guard`: only the guard and the listener (no anchoring), until a signal.
pub async fn guard(args: GuardCommandArgs, config: Option<&std::path::Path>) -> ExitCode {
    let fail = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(2)
    };
    let anchorer = match anchorer(&args.anchor) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let parts = match load_guard(config, &args.guard, &args.anchor, &anchorer.mlflow, &anchorer.turbo, &args.state_dir).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return fail(
                "the guard needs a policy: --config FILE (or ARIO_MLFLOW_CONFIG) with a [guard] table and [[guard.asset]] entries".into(),
            )
        }
        Err(e) => return fail(e),
    };
    let surface = match Surface::start(
        &args.server,
        &anchorer.mlflow,
        Some(&anchorer.turbo),
        None,
        None,
        None,
        Some(parts),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    super::devnet::stop_on_signal(stop.clone());
    while !stop.load(Ordering::SeqCst) {
        surface.health.tick();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    surface.stop().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("7w").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }
}
