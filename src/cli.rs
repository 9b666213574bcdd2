//! Command-line surface (clap). Flags mirror the environment names of DESIGN.md §7, so scripts
//! can use either; each subcommand's behaviour lives in its own file under `src/cmd/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

/// Anchors every MLflow lifecycle event as a signed, publicly verifiable proof on Arweave,
/// byte-compatible with the `ar-io-mlflow` plugin (`ario.mlflow/v1`).
#[derive(Debug, Parser)]
#[command(name = "ario-mlflow-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ARIO_MLFLOW_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify proofs: an envelope file offline, or a run, model version, trace or TX against
    /// MLflow and the gateways.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Verify every stage of a model version (datasets, training, registration, promotions,
    /// aliases, predictions) and print or write a text, JSON or HTML report.
    ///
    /// Exit status: 0 every anchored stage passes (at least one anchored), 1 a stage fails or
    /// nothing is anchored, 2 bad input or setup.
    #[command(disable_version_flag = true)]
    Audit(Box<AuditArgs>),
    /// Inspect the envelope signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect the funding wallet that signs data items.
    #[command(subcommand)]
    Wallet(WalletCommand),
    /// Sign a file as an ANS-104 data item with the wallet and upload it through Turbo.
    Upload(UploadArgs),
    /// Read a data item's payload back through the gateway list (`GET /raw/{id}`).
    Fetch(FetchArgs),
    /// Run the local Turbo-compatible upload service and gateway.
    Devnet(DevnetArgs),
    /// Anchor one MLflow event now (prints the TX id); the durable service reuses these steps.
    Anchor(Box<AnchorArgs>),
    /// The service: poll MLflow and anchor every lifecycle event, durably, until stopped.
    Run(Box<ServiceArgs>),
    /// Anchor everything MLflow already holds, then exit when caught up.
    Backfill(Box<ServiceArgs>),
    /// Jobs per state and event type, parked jobs with their errors, chain heads, cursors.
    Status(StatusArgs),
    /// Re-queue a parked job (or all of them) after fixing its cause.
    Retry(RetryArgs),
}

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

/// How to reach MLflow (MLflow's own environment names).
#[derive(Debug, Clone, Args)]
pub struct MlflowArgs {
    /// MLflow tracking server.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_URI",
        default_value = "http://127.0.0.1:5000"
    )]
    pub tracking_uri: url::Url,
    /// Bearer token.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_token: Option<String>,
    /// Basic-auth user.
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME", hide = true)]
    pub tracking_username: Option<String>,
    /// Basic-auth password.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_password: Option<String>,
    /// Skip TLS verification towards MLflow.
    #[arg(long, env = "MLFLOW_TRACKING_INSECURE_TLS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", hide = true)]
    pub tracking_insecure_tls: bool,
}

/// `anchor …` arguments.
#[derive(Debug, Args)]
pub struct AnchorArgs {
    /// What to anchor.
    #[command(subcommand)]
    pub what: AnchorCommand,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub settings: AnchorSettings,
    /// Print JSON lines instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `anchor` subcommands.
#[derive(Debug, Subcommand)]
pub enum AnchorCommand {
    /// A finished run's training proof.
    Run {
        /// Run id.
        run_id: String,
        /// Model artifact path to hash (default: the run's only logged model, else `model`).
        #[arg(long)]
        artifact_path: Option<String>,
    },
    /// A model version's registration proof (anchors the source run first if needed).
    Model {
        /// `<name>/<version>` (the last `/` separates the version).
        model: String,
    },
    /// A stage transition of a model version.
    Promotion {
        /// `<name>/<version>`.
        model: String,
        /// Stage before the transition (MLflow does not record it).
        #[arg(long = "from", default_value = "None")]
        from_stage: String,
        /// Stage after the transition [default: the version's current stage].
        #[arg(long = "to")]
        to_stage: Option<String>,
    },
    /// A prediction recorded as an MLflow trace.
    Trace {
        /// Trace id (`tr-…`).
        trace_id: String,
    },
    /// Each distinct dataset input of a run.
    Dataset {
        /// Run id.
        run_id: String,
    },
}

/// `wallet …` subcommands.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Print the wallet's type, address, mode and file; creates the default wallet on first use.
    Show(WalletArgs),
}

/// Where the funding wallet comes from.
#[derive(Debug, Clone, Args)]
pub struct WalletArgs {
    /// Arweave JWK or Solana id.json to sign data items with [default: ~/.ario-mlflow/wallet.json].
    #[arg(long, env = "ARIO_MLFLOW_ARWEAVE_WALLET")]
    pub wallet: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// HTTP settings shared by uploads and reads.
#[derive(Debug, Clone, Args)]
pub struct ArweaveHttpArgs {
    /// Extra trusted CA certificate (PEM), e.g. the one `devnet --tls --cert-out` writes.
    #[arg(long, env = "ARIO_MLFLOW_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30, env = "ARIO_MLFLOW_HTTP_TIMEOUT")]
    pub timeout_secs: u64,
}

/// Arguments of `upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The file whose bytes become the data item's payload.
    pub file: PathBuf,
    /// Turbo upload service base URL.
    #[arg(
        long,
        env = "ARIO_MLFLOW_UPLOAD_URL",
        default_value = "https://upload.ardrive.io"
    )]
    pub upload_url: url::Url,
    /// Data item tag `NAME=VALUE` (repeatable).
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// `Content-Type` tag [default: application/json for .json files, else application/octet-stream].
    #[arg(long)]
    pub content_type: Option<String>,
    /// Attempts in total for transient failures.
    #[arg(long, default_value_t = 6)]
    pub attempts: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub wallet: WalletArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// Arguments of `fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Data item id (base64url; may start with `-`).
    #[arg(allow_hyphen_values = true)]
    pub id: String,
    /// Gateway `host[:port]` (https) or full URL; repeatable, tried in order.
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Comma-separated gateways, used when no `--gateway` is given.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Host put first in the default gateway list.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAY_HOST", hide = true)]
    pub gateway_host: Option<String>,
    /// Expected SHA-256 (hex) of the payload; gateways serving other bytes are skipped.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Write the payload here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// Arguments of `devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Address to listen on (loopback by default; port 0 picks a free port).
    #[arg(long, default_value = crate::devnet::DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,
    /// Directory for stored items, the receipt key and TLS material.
    #[arg(long, default_value = "devnet-data")]
    pub data_dir: PathBuf,
    /// Serve https with a generated CA-signed certificate for 127.0.0.1 / localhost.
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate PEM here (for REQUESTS_CA_BUNDLE or --ca-cert).
    #[arg(long, requires = "tls")]
    pub cert_out: Option<PathBuf>,
    /// Largest accepted item in bytes; larger ones get 402 "Insufficient balance".
    #[arg(long, default_value_t = crate::devnet::DEFAULT_FREE_LIMIT)]
    pub free_limit: usize,
    /// RSA-4096 JWK that signs receipts [default: generated once into the data dir].
    #[arg(long)]
    pub receipt_key: Option<PathBuf>,
    /// Fault rule `ROUTE:SPEC[xCOUNT][@PROB]`, e.g. `upload:503x3`, `upload:429/2@0.3`,
    /// `raw:reset`, `upload:delay=1500`, `raw:notfound-first=2` (repeatable).
    #[arg(long = "fault", value_parser = crate::devnet::faults::FaultRule::parse)]
    pub faults: Vec<crate::devnet::faults::FaultRule>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

/// `verify …` subcommands.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Verify signed envelope files offline: spec version, payload hash and Ed25519 signature.
    ///
    /// Exit status: 0 all valid, 1 one is invalid, 2 one is unreadable or not JSON.
    Envelope(VerifyEnvelopeArgs),
    /// Verify a run's training proof (`ario.training_tx`).
    ///
    /// Exit status: 0 the verdict passes, 1 it fails or the run is not anchored, 2 bad input.
    Run(Box<VerifyRunArgs>),
    /// Verify a model version's registration proof (`ario.registration_tx`): `NAME/VERSION`
    /// (split at the last `/`) or `--name N --version V`.
    #[command(disable_version_flag = true)]
    Model(Box<VerifyModelArgs>),
    /// Verify a trace's prediction proof (`ario.prediction_tx`).
    Trace(Box<VerifyTraceArgs>),
    /// Verify the proof anchored as a TX, whatever it is about.
    Tx(Box<VerifyTxArgs>),
}

/// What every MLflow-backed verification needs.
#[derive(Debug, Args)]
pub struct VerifierArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    /// Read gateway `host[:port]` (https) or full URL; repeatable, tried in order.
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Comma-separated gateways, used when no `--gateway` is given.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Host put first in the default gateway list (and used in TX links).
    #[arg(
        long,
        env = "ARIO_MLFLOW_GATEWAY_HOST",
        default_value = "turbo-gateway.com"
    )]
    pub gateway_host: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
    /// Pinned signer key (64 hex); repeatable or comma-separated in the env. An envelope
    /// signed by any other key fails.
    #[arg(
        long = "trusted-key",
        env = "ARIO_MLFLOW_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
    /// ar.io Verify base URL (check 4); unset = not run.
    #[arg(long, env = "ARIO_MLFLOW_ARIO_VERIFY_URL")]
    pub ario_verify_url: Option<String>,
    /// Attestation level check 4 needs.
    #[arg(long, default_value_t = 2)]
    pub min_attestation_level: u64,
}

/// Output and side-effect flags of `verify run|model|trace|tx`.
#[derive(Debug, Args)]
pub struct VerifyOutputArgs {
    /// Follow `previous_hash` back to GENESIS and report every link and break.
    #[arg(long)]
    pub chain: bool,
    /// On a passing verdict with a passing attestation, tag the entity
    /// `ario.verify_status=verified` plus the attestation fields.
    #[arg(long)]
    pub write_back: bool,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `verify run`.
#[derive(Debug, Args)]
pub struct VerifyRunArgs {
    /// Run id.
    pub run_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// A model version: `NAME/VERSION` or `--name N --version V`.
#[derive(Debug, Args)]
pub struct ModelTargetArgs {
    /// `NAME/VERSION` (the name may contain `/`: split at the last one).
    pub model: Option<String>,
    /// Registered model name (instead of `NAME/VERSION`).
    #[arg(long, requires = "version")]
    pub name: Option<String>,
    /// Version (with `--name`).
    #[arg(long, requires = "name")]
    pub version: Option<String>,
}

/// Arguments of `verify model`.
#[derive(Debug, Args)]
pub struct VerifyModelArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: ModelTargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Arguments of `verify trace`.
#[derive(Debug, Args)]
pub struct VerifyTraceArgs {
    /// Trace id (`tr-…`).
    pub trace_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Arguments of `verify tx`.
#[derive(Debug, Args)]
pub struct VerifyTxArgs {
    /// Data item id (base64url; may start with `-`).
    #[arg(allow_hyphen_values = true)]
    pub tx_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Report formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Aligned rows for people.
    Text,
    /// `ario.mlflow.audit/v1` plus our additions.
    Json,
    /// One self-contained HTML page.
    Html,
}

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: ModelTargetArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Predictions to verify: a number (the first N found) or `all`.
    #[arg(long, default_value = "5", value_parser = parse_predictions)]
    pub predictions: crate::verify::audit::PredictionSample,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
}

fn parse_predictions(text: &str) -> Result<crate::verify::audit::PredictionSample, String> {
    use crate::verify::audit::PredictionSample;
    if text == "all" {
        return Ok(PredictionSample::All);
    }
    text.parse()
        .map(PredictionSample::Count)
        .map_err(|_| format!("{text:?} is neither a number nor `all`"))
}

/// Arguments of `verify envelope`.
#[derive(Debug, Args)]
pub struct VerifyEnvelopeArgs {
    /// Envelope JSON file(s), or `-` for standard input. With several files each gets a
    /// verdict (one JSON object per line, or one text line each).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The external payload's stored bytes (e.g. `ario/payload.json`), hashed as they are
    /// (one envelope file only).
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// Print a one-line human summary instead of the JSON verdict.
    #[arg(long)]
    pub text: bool,
}

/// `keys …` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the envelope public key (hex) and where it came from; creates the key files on
    /// first use, so the key can be published before the first proof.
    Show(KeyArgs),
}

/// Where the signing key is looked up.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Directory of the plugin-format key files [default: ~/.ario-mlflow/keys].
    #[arg(long, env = "ARIO_MLFLOW_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Base64 of the 32-byte Ed25519 seed; wins over key files.
    #[arg(
        long = "signing-key",
        env = "ARIO_MLFLOW_SIGNING_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub signing_key: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses the command line, runs the command and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Verify(VerifyCommand::Envelope(args)) => cmd::verify_envelope::run(&args),
        Command::Verify(VerifyCommand::Run(args)) => with_runtime(cmd::verify::run(*args)),
        Command::Verify(VerifyCommand::Model(args)) => with_runtime(cmd::verify::model(*args)),
        Command::Verify(VerifyCommand::Trace(args)) => with_runtime(cmd::verify::trace(*args)),
        Command::Verify(VerifyCommand::Tx(args)) => with_runtime(cmd::verify::tx(*args)),
        Command::Audit(args) => with_runtime(cmd::verify::audit(*args)),
        Command::Keys(KeysCommand::Show(args)) => cmd::keys_show::run(&args),
        Command::Wallet(WalletCommand::Show(args)) => cmd::wallet_show::run(&args),
        Command::Upload(args) => with_runtime(cmd::upload::run(args)),
        Command::Fetch(args) => with_runtime(cmd::fetch::run(args)),
        Command::Devnet(args) => with_runtime(cmd::devnet::run(args)),
        Command::Anchor(args) => with_runtime(cmd::anchor::run(*args)),
        Command::Run(args) => with_runtime(cmd::service::run(*args, false)),
        Command::Backfill(args) => with_runtime(cmd::service::run(*args, true)),
        Command::Status(args) => cmd::service::status(&args),
        Command::Retry(args) => cmd::service::retry(&args),
    }
}

fn with_runtime(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A concurrency bound: 1 to 256.
fn concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a number from 1 to 256")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "ario-mlflow-worker",
            "verify",
            "model",
            "--name",
            "team/model",
            "--version",
            "3",
        ])
        .unwrap();
        match cli.command {
            Command::Verify(VerifyCommand::Model(a)) => {
                assert_eq!(
                    (a.target.name.as_deref(), a.target.version.as_deref()),
                    (Some("team/model"), Some("3"))
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_starting_with_a_hyphen_are_ids_not_flags() {
        let cli = Cli::try_parse_from([
            "ario-mlflow-worker",
            "fetch",
            "-2tK6oSnUfmCuYnbpHZ6xvzhJ1lb8MQ7YUSMlQl0NIo",
            "-o",
            "out.json",
        ])
        .unwrap();
        match cli.command {
            Command::Fetch(args) => {
                assert_eq!(args.id, "-2tK6oSnUfmCuYnbpHZ6xvzhJ1lb8MQ7YUSMlQl0NIo");
                assert_eq!(
                    args.output.as_deref(),
                    Some(std::path::Path::new("out.json"))
                );
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn since_accepts_dates_rfc3339_and_epoch_ms() {
        assert_eq!(parse_since("1795475170000"), Ok(1795475170000));
        assert_eq!(parse_since("2026-11-01"), Ok(1793491200000));
        assert_eq!(parse_since("2026-11-01T00:00:01Z"), Ok(1793491201000));
        assert!(parse_since("yesterday").is_err());
    }
}
