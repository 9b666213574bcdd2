//! `anchor run|model|promotion|trace|dataset`: anchors one MLflow event now and prints the TX
//! id(s). Exit 0 anchored (or already anchored), 1 failed (the cause is printed), 2 bad input or
//! configuration.

use std::process::ExitCode;

use crate::anchor::{AnchorStatus, Anchored};
use crate::cli::{AnchorArgs, AnchorCommand, MlflowArgs};
use crate::mlflow::{MlflowClient, MlflowConfig};

/// MLflow configuration from the shared flags.
pub(crate) fn mlflow_config(args: &MlflowArgs) -> MlflowConfig {
    let mut config = MlflowConfig::new(args.tracking_uri.clone());
    config.token = args.tracking_token.clone().filter(|t| !t.is_empty());
    config.username = args.tracking_username.clone().filter(|u| !u.is_empty());
    config.password = args.tracking_password.clone();
    config.insecure_tls = args.tracking_insecure_tls;
    config
}

/// MLflow client from the shared flags.
pub(crate) fn mlflow_client(args: &MlflowArgs) -> Result<MlflowClient, String> {
    MlflowClient::new(mlflow_config(args)).map_err(|e| e.to_string())
}

/// Splits `<name>/<version>` at the last `/` (model names may contain `/`).
pub(crate) fn split_model(text: &str) -> Result<(String, String), String> {
    match text.rsplit_once('/') {
        Some((name, version))
            if !name.is_empty()
                && !version.is_empty()
                && version.chars().all(|c| c.is_ascii_digit()) =>
        {
            Ok((name.to_string(), version.to_string()))
        }
        _ => Err(format!(
            "expected <name>/<version> with a numeric version, got {text:?}"
        )),
    }
}

/// Runs the command.
pub async fn run(args: AnchorArgs) -> ExitCode {
    let anchorer = match super::service::anchorer(&args.settings) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
            let (name, version) = match split_model(model) {
                Ok(nv) => nv,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
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
    match result {
        Ok(events) => {
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
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
