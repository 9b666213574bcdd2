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
    /// Verify proofs (offline checks of envelopes).
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Inspect the envelope signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `verify …` subcommands.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Verify one signed envelope file: spec version, payload hash and Ed25519 signature.
    ///
    /// Exit status: 0 valid, 1 invalid, 2 unreadable or not JSON.
    Envelope(VerifyEnvelopeArgs),
}

/// Arguments of `verify envelope`.
#[derive(Debug, Args)]
pub struct VerifyEnvelopeArgs {
    /// Envelope JSON file, or `-` for standard input.
    pub file: PathBuf,
    /// The external payload's stored bytes (e.g. `ario/payload.json`), hashed as they are.
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
        Command::Keys(KeysCommand::Show(args)) => cmd::keys_show::run(&args),
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
