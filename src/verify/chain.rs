//! `--chain`: follows `previous_hash` back to GENESIS and reports every link and break.
//!
//! Training events point at the previous training *payload hash* (spec §2.8): its TX is found
//! through the run that carries that hash (`ario.payload_hash` tag, the chain-head record in
//! MLflow). Registrations, promotions, aliases and predictions point at a *TX id* directly.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};

use super::{signature_check, Verifier, VerifyError};
use crate::mlflow::client::Request;
use crate::profile::training;
use crate::profile::GENESIS as GENESIS_LITERAL;

/// One envelope on the way back.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    /// Its TX.
    pub tx_id: String,
    /// Its event type.
    pub event_type: Option<String>,
    /// Its payload hash.
    pub payload_hash: Option<String>,
    /// What it points at.
    pub previous_hash: Option<String>,
    /// Signature valid, and (for a training predecessor) its payload hash is the one pointed at.
    pub ok: bool,
    /// Why not, or "linked".
    pub reason: String,
}

/// The walk from a proof back to GENESIS.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChainReport {
    /// Predecessors, nearest first.
    pub links: Vec<ChainLink>,
    /// The walk ended at GENESIS with every link valid.
    pub reached_genesis: bool,
    /// Breaks found (unresolvable pointers, invalid links, loops).
    pub breaks: Vec<String>,
}

/// Longest walk before giving up (a guard against pathological chains).
const MAX_LINKS: usize = 100_000;

impl Verifier {
    /// Walks back from an envelope.
    pub async fn walk_chain(&self, start: &Value) -> ChainReport {
        let mut report = ChainReport::default();
        let mut current = start.clone();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        loop {
            let event_type = current["event_type"].as_str().unwrap_or("").to_string();
            let Some(previous) = current["previous_hash"].as_str().map(str::to_owned) else {
                report
                    .breaks
                    .push("an envelope without previous_hash".into());
                return report;
            };
            if previous == GENESIS_LITERAL {
                report.reached_genesis = report.breaks.is_empty();
                return report;
            }
            if !seen.insert(previous.clone()) || report.links.len() >= MAX_LINKS {
                report
                    .breaks
                    .push(format!("loop or over-long chain at {previous}"));
                return report;
            }
            let is_hash = event_type == "training_complete";
            let tx = if is_hash {
                match self.training_tx_for_payload(&previous).await {
                    Ok(tx) => tx,
                    Err(why) => {
                        report.breaks.push(format!("{previous}: {why}"));
                        return report;
                    }
                }
            } else {
                previous.clone()
            };
            let verdict = self.fetch(&tx).await;
            let fetched = match verdict {
                Ok(f) => f,
                Err(check) => {
                    report.breaks.push(format!("{tx}: {}", check.reason));
                    report.links.push(ChainLink {
                        tx_id: tx,
                        event_type: None,
                        payload_hash: None,
                        previous_hash: None,
                        ok: false,
                        reason: check.reason,
                    });
                    return report;
                }
            };
            let env = fetched.envelope;
            let sig = signature_check(&env);
            let payload_hash = env["payload_hash"].as_str().map(str::to_owned);
            let mut reason = "linked".to_string();
            let mut ok = sig.ok == Some(true) && fetched.data_item.ok != Some(false);
            if !ok {
                reason = format!("{} {}", sig.reason, fetched.data_item.reason)
                    .trim()
                    .to_string();
            } else if is_hash && payload_hash.as_deref() != Some(previous.as_str()) {
                ok = false;
                reason = format!("TX {tx} does not carry payload hash {previous}");
            }
            if !ok {
                report.breaks.push(format!("{tx}: {reason}"));
            }
            report.links.push(ChainLink {
                tx_id: tx,
                event_type: env["event_type"].as_str().map(str::to_owned),
                payload_hash,
                previous_hash: env["previous_hash"].as_str().map(str::to_owned),
                ok,
                reason,
            });
            if !ok {
                return report;
            }
            current = env;
        }
    }

    /// The training TX of the run whose proof carries `payload_hash`.
    async fn training_tx_for_payload(&self, payload_hash: &str) -> Result<String, VerifyError> {
        let experiments = self
            .mlflow
            .active_experiment_ids()
            .await
            .map_err(|e| VerifyError::mlflow("cannot list experiments", e))?;
        let filter = format!("tags.`ario.payload_hash` = '{payload_hash}'");
        for chunk in experiments.chunks(500) {
            let v: Value = self
                .mlflow
                .call(
                    "runs/search",
                    Request::post(
                        "api/2.0/mlflow/runs/search",
                        json!({"experiment_ids": chunk, "filter": filter, "max_results": 10}),
                    ),
                )
                .await
                .map_err(|e| VerifyError::mlflow("cannot search runs", e))?;
            for run in v["runs"].as_array().into_iter().flatten() {
                let tx = run["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["key"] == training::TX_TAG)
                    .and_then(|t| t["value"].as_str());
                if let Some(tx) = tx {
                    return Ok(tx.to_string());
                }
            }
        }
        Err(VerifyError::Payload(
            "no anchored run carries this training payload hash (deleted run, or anchored elsewhere)"
                .into(),
        ))
    }
}
