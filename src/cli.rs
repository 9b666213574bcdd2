//! Command-line surface (clap). Flags mirror the environment names of docs/architecture.md §7, so scripts
//! can use either. This file only composes: each subcommand's arguments and behaviour live in
//! its own file under `src/cmd/`, which never imports this one.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::cmd::anchor::AnchorArgs;
use crate::cmd::devnet::DevnetArgs;
use crate::cmd::feed::FeedArgs;
use crate::cmd::fetch::FetchArgs;
use crate::cmd::guard::GuardCommandArgs;
use crate::cmd::keys_show::KeysCommand;
use crate::cmd::retry::RetryArgs;
use crate::cmd::run::ServiceArgs;
use crate::cmd::status::StatusArgs;
use crate::cmd::upload::UploadArgs;
use crate::cmd::verify::{AuditArgs, CoverageArgs, VerifyCommand};
use crate::cmd::wallet_show::WalletCommand;
use crate::cmd::webhook::WebhookCommand;

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
    /// TOML configuration file: every flag has a key (flag > environment > file > default).
    #[arg(long, global = true, env = crate::config::CONFIG_ENV)]
    pub config: Option<std::path::PathBuf>,
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
    /// How much of the registry can be proven: per event type, anchored and verifying, signed
    /// but never uploaded, failing, and not anchored (listed).
    ///
    /// Exit status: 0 everything anchored and verifying, 1 something is not, 2 bad input or setup.
    #[command(disable_version_flag = true)]
    Coverage(Box<CoverageArgs>),
    /// Export evidence that outlives MLflow: one signed `ario.evidence/v1` bundle of a model
    /// version (`NAME/VERSION`), a run (`--run`) or a window (`--since --until`) holding every
    /// envelope, payload byte, data item, receipt and checkpoint path its proofs rest on
    /// (`verify evidence` checks it offline).
    ///
    /// Exit status: 0 written, 1 the upload (`--anchor`) failed, 2 bad input or setup.
    #[command(disable_version_flag = true)]
    Export(Box<crate::cmd::export::ExportArgs>),
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
    /// Produce the change feed to Kafka: the poller as an idempotent producer, one CloudEvents
    /// message per event keyed by its chain key (`run --source kafka` anchors them).
    Feed(Box<FeedArgs>),
    /// Only the guard: keep re-verifying the `[guard]` assets of `--config` and serve
    /// `/v1/verify-status/{asset_id}` (and the probes and metrics), anchoring nothing else.
    Guard(Box<GuardCommandArgs>),
    /// Anchor everything MLflow already holds, then exit when caught up.
    Backfill(Box<ServiceArgs>),
    /// Jobs per state and event type, parked jobs with their errors, chain heads, cursors.
    Status(StatusArgs),
    /// Re-queue a parked job (or all of them) after fixing its cause.
    Retry(RetryArgs),
    /// MLflow webhooks: register the worker's receiver on an MLflow 3.x server.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// The configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of a command (environment + `--config` file +
    /// defaults) as TOML, each value with its source and every secret redacted. Exit status 0,
    /// or 2 when the file or a value is bad.
    Check {
        /// The command whose configuration to print.
        #[arg(long, default_value = "run")]
        command: String,
    },
    /// Print every setting of every command (flag, environment variable, config file key,
    /// default, values, meaning) as Markdown: docs/configuration-reference.md is this output.
    Reference,
}

/// Parses the command line, runs the command and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = crate::config::locate(&argv);
    let command = match &config {
        Some(path) => match crate::config::apply(Cli::command(), path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => Cli::command(),
    };
    let cli = match Cli::from_arg_matches(&command.get_matches_from(argv)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(cli.log_format);
    match cli.command {
        Command::Verify(VerifyCommand::Envelope(args)) => cmd::verify_envelope::run(&args),
        Command::Verify(VerifyCommand::Run(args)) => with_runtime(cmd::verify::run(*args)),
        Command::Verify(VerifyCommand::Model(args)) => with_runtime(cmd::verify::model(*args)),
        Command::Verify(VerifyCommand::Trace(args)) => with_runtime(cmd::verify::trace(*args)),
        Command::Verify(VerifyCommand::Tx(args)) => with_runtime(cmd::verify::tx(*args)),
        Command::Verify(VerifyCommand::Evidence(args)) => {
            with_runtime(cmd::export::verify_evidence(*args))
        }
        Command::Export(args) => with_runtime(cmd::export::export(*args)),
        Command::Audit(args) => with_runtime(cmd::verify::audit(*args)),
        Command::Coverage(args) => with_runtime(cmd::verify::coverage(*args)),
        Command::Guard(args) => with_runtime(cmd::guard::guard(*args, config.as_deref())),
        Command::Keys(KeysCommand::Show(args)) => cmd::keys_show::run(&args),
        Command::Keys(KeysCommand::Import(args)) => cmd::keys_show::import(&args),
        Command::Keys(KeysCommand::Rotate(args)) => with_runtime(cmd::keys_rotate::rotate(*args)),
        Command::Keys(KeysCommand::History(args)) => cmd::keys_rotate::show(&args),
        Command::Wallet(WalletCommand::Show(args)) => cmd::wallet_show::run(&args),
        Command::Upload(args) => with_runtime(cmd::upload::run(args)),
        Command::Fetch(args) => with_runtime(cmd::fetch::run(args)),
        Command::Devnet(args) => with_runtime(cmd::devnet::run(args)),
        Command::Anchor(args) => with_runtime(cmd::anchor::run(*args)),
        Command::Run(args) => with_runtime(cmd::run::run(*args, false, config.as_deref())),
        Command::Feed(args) => with_runtime(cmd::feed::run(*args)),
        Command::Backfill(args) => with_runtime(cmd::run::run(*args, true, config.as_deref())),
        Command::Status(args) => with_runtime(cmd::status::status(args)),
        Command::Retry(args) => with_runtime(cmd::retry::retry(args)),
        Command::Webhook(WebhookCommand::Register(args)) => {
            with_runtime(cmd::webhook::register(args))
        }
        Command::Config(ConfigCommand::Reference) => {
            use clap::CommandFactory;
            print!("{}", crate::config::reference(&Cli::command()));
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { command }) => {
            use clap::CommandFactory;
            let guard = match config
                .as_deref()
                .map(crate::guard::policy::GuardPolicy::load)
            {
                Some(Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
                Some(Ok(p)) => p,
                None => None,
            };
            match crate::config::check(Cli::command(), config.as_deref(), &command) {
                Ok(text) => {
                    print!("{text}");
                    if let Some(p) = guard {
                        println!(
                            "# [guard]: tenant {:?}, agent {:?}, {} asset(s), policy_hash {}",
                            p.tenant_id,
                            p.agent_id,
                            p.assets.len(),
                            p.policy_hash()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn with_runtime(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(future);
            // Every task of the service is awaited on its way out; anything left (a blocking
            // call that does not return) must not hold the process.
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
            code
        }
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal and never with NO_COLOR: log files and journald get plain text.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::settings::parse_since;

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
        assert_eq!(parse_since("1795475170000").unwrap(), 1795475170000);
        assert_eq!(parse_since("2026-11-01").unwrap(), 1793491200000);
        assert_eq!(parse_since("2026-11-01T00:00:01Z").unwrap(), 1793491201000);
        assert!(parse_since("yesterday").is_err());
    }
}
