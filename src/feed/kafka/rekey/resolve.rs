//! What a CDC row does not carry, asked of MLflow: the anchored workspace a record belongs to
//! (runs and traces through their experiment) and a finished run's chain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::super::producer::run_chain;
use super::super::KafkaRunError;
use super::RekeyConfig;
use crate::event::ChangeEvent;
use crate::feed::debezium::Decoded;
use crate::mlflow::MlflowClient;

/// How long an MLflow read that keeps failing is retried before the batch is given up (the
/// consumer would leave the group after `max.poll.interval.ms`, 300 s).
const RESOLVE_PATIENCE: Duration = Duration::from_secs(240);

/// The anchored workspace a record's events belong to (`None`: one this service does not
/// anchor): the row's `workspace` column (the registry's tables), else its experiment's
/// workspace (runs and traces; asked of MLflow once per experiment, in each anchored workspace
/// — an experiment never moves), else the default (MLflow 2.x).
pub(super) fn route(
    decoded: &Decoded,
    config: &RekeyConfig,
    mlflow: &MlflowClient,
    handle: &tokio::runtime::Handle,
    stop: &AtomicBool,
    experiments: &mut HashMap<String, Option<String>>,
) -> Result<Option<String>, KafkaRunError> {
    if config.workspaces.is_empty() {
        return Ok(Some(crate::mlflow::DEFAULT_WORKSPACE.to_string()));
    }
    let workspace = match (&decoded.workspace, &decoded.experiment_id) {
        (Some(w), _) => Some(w.clone()),
        (None, Some(id)) => match experiments.get(id) {
            Some(known) => known.clone(),
            None => {
                let found = experiment_workspace(id, config, mlflow, handle, stop)?;
                experiments.insert(id.clone(), found.clone());
                found
            }
        },
        (None, None) => Some(crate::mlflow::DEFAULT_WORKSPACE.to_string()),
    };
    Ok(workspace.filter(|w| config.workspaces.contains(w)))
}

/// The anchored workspace experiment `id` is in (`None`: in none of them).
fn experiment_workspace(
    id: &str,
    config: &RekeyConfig,
    mlflow: &MlflowClient,
    handle: &tokio::runtime::Handle,
    stop: &AtomicBool,
) -> Result<Option<String>, KafkaRunError> {
    for workspace in &config.workspaces {
        let client = mlflow.in_workspace(workspace);
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            match handle.block_on(client.experiment_exists(id)) {
                Ok(true) => return Ok(Some(workspace.clone())),
                Ok(false) => break,
                Err(e) if started.elapsed() < RESOLVE_PATIENCE && !stop.load(Ordering::SeqCst) => {
                    tracing::warn!(experiment_id = id, workspace, error = %e, "cdc: cannot read the experiment from MLflow; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    return Err(KafkaRunError::RunChain {
                        run_id: format!("(experiment {id})"),
                        cause: e.to_string(),
                    })
                }
            }
        }
    }
    Ok(None)
}

/// What the row does not carry: a finished run's chain (`None`: the run is gone).
pub(super) fn resolve(
    event: &ChangeEvent,
    mlflow: &MlflowClient,
    handle: &tokio::runtime::Handle,
    stop: &AtomicBool,
) -> Result<Option<ChangeEvent>, KafkaRunError> {
    let ChangeEvent::RunFinished {
        run_id,
        chain: None,
        end_time,
    } = event
    else {
        return Ok(Some(event.clone()));
    };
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    loop {
        match handle.block_on(run_chain(mlflow, run_id)) {
            Ok(Some(chain)) => {
                return Ok(Some(ChangeEvent::RunFinished {
                    run_id: run_id.clone(),
                    chain: Some(chain),
                    end_time: *end_time,
                }))
            }
            Ok(None) => {
                tracing::info!(
                    run_id,
                    "cdc: the finished run no longer exists in MLflow; skipped"
                );
                return Ok(None);
            }
            Err(e) if started.elapsed() < RESOLVE_PATIENCE && !stop.load(Ordering::SeqCst) => {
                tracing::warn!(run_id, error = %e, "cdc: cannot read the run's registered model from MLflow; retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(KafkaRunError::RunChain {
                    run_id: run_id.clone(),
                    cause: e.to_string(),
                })
            }
        }
    }
}
