//! `anchor run|model|promotion|trace|dataset`: anchors one MLflow event now and prints the TX
//! id(s). Exit 0 anchored (or already anchored), 1 failed (the cause is printed), 2 bad input or
//! configuration.

use std::process::ExitCode;

use crate::anchor::{AnchorStatus, Anchored};
use clap::{Args, Subcommand};

use super::error::{finish, CmdError};
use super::settings::AnchorSettings;

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

/// Splits `<name>/<version>` at the last `/` (model names may contain `/`).
pub(crate) fn split_model(text: &str) -> Result<(String, String), CmdError> {
    match text.rsplit_once('/') {
        Some((name, version))
            if !name.is_empty()
                && !version.is_empty()
                && version.chars().all(|c| c.is_ascii_digit()) =>
        {
            Ok((name.to_string(), version.to_string()))
        }
        _ => Err(CmdError::Usage(format!(
            "expected <name>/<version> with a numeric version, got {text:?}"
        ))),
    }
}

/// Runs the command.
pub async fn run(args: AnchorArgs) -> ExitCode {
    finish(anchor(args).await)
}

async fn anchor(args: AnchorArgs) -> Result<ExitCode, CmdError> {
    let anchorer = super::settings::anchorer(&args.settings)?;
    let started = std::time::Instant::now();
    let result = match &args.what {
        AnchorCommand::Run {
            run_id,
            artifact_path,
        } => anchorer
            .anchor_run(run_id, artifact_path.as_deref())
            .await
            .map(|a| vec![a]),
        AnchorCommand::Dataset { run_id } => anchorer.anchor_datasets(run_id).await,
        AnchorCommand::Trace { trace_id } => anchorer.anchor_trace(trace_id).await,
        AnchorCommand::Model { model } | AnchorCommand::Promotion { model, .. } => {
            let (name, version) = split_model(model)?;
            match &args.what {
                AnchorCommand::Promotion {
                    from_stage,
                    to_stage,
                    ..
                } => {
                    anchorer
                        .anchor_promotion(&name, &version, from_stage, to_stage.as_deref())
                        .await
                }
                _ => anchorer.anchor_model_version(&name, &version).await,
            }
        }
    };
    let events = result.map_err(CmdError::failed)?;
    for a in &events {
        print_event(a, args.json);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        mlflow_calls = anchorer.mlflow.calls_made(),
        "anchor done"
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"mlflow_calls": anchorer.mlflow.calls_made(), "elapsed_ms": started.elapsed().as_millis() as u64})
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(a: &Anchored, json: bool) {
    let status = match a.status {
        AnchorStatus::Anchored => "anchored",
        AnchorStatus::Resumed => "resumed",
        AnchorStatus::AlreadyAnchored => "already-anchored",
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"event_type": a.event_type, "subject": a.subject, "tx_id": a.tx_id, "payload_hash": a.payload_hash, "status": status})
        );
    } else {
        println!(
            "{}  {:<18} {:<16} {}",
            a.tx_id, a.event_type, status, a.subject
        );
    }
}
