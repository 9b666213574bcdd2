//! Coverage: how much of this registry can be proven. MLflow reconciled against the proofs,
//! per event type — anchored and verifying, signed but never uploaded (`ario.verify_status =
//! signed` without a TX, what the plugin leaves when its upload fails), anchored but failing
//! verification, and not anchored at all — with the entities of the last three listed.
//!
//! Covered: training runs (every FINISHED run of an active experiment), registrations (every
//! model version), predictions (every OK trace). A trace served by no model known for certain
//! (no `mlflow.modelId`, or a model gone or without a run) is counted as "no model": there is
//! nothing to attribute it to, and the service skips it by the same rule — it is not a gap. Each proof found is verified like `verify
//! run|model|trace` (with `--tags-only`, only the tags are read).

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use super::{Entity, Verifier};
use crate::mlflow::MlflowError;
use crate::profile::{prediction, registration, tags, training};

/// Where one entity stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Anchored and every check passes.
    Verifying,
    /// Anchored (a TX tag) but verification fails.
    Failing,
    /// Anchored; not verified (`--tags-only`).
    Anchored,
    /// Signed, never uploaded.
    SignedOnly,
    /// No proof.
    NotAnchored,
    /// A trace served by no model known for certain: nothing to attribute a prediction to, so
    /// nothing to prove (its own category, never "not anchored").
    NoModel,
}

/// One entity that is not proven.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The envelope event type it would have.
    pub event_type: &'static str,
    /// `run/<id>`, `model/<name>/<version>`, `trace/<id>`.
    pub entity: String,
    /// Its TX, when it has one.
    pub tx_id: Option<String>,
    /// Where it stands.
    pub standing: Standing,
    /// Why (the failing check), when failing.
    pub reason: Option<String>,
}

/// Counts of one event type.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Entities MLflow holds.
    pub total: usize,
    /// Anchored and verifying.
    pub verifying: usize,
    /// Anchored, not verified (`--tags-only`).
    pub anchored: usize,
    /// Anchored but failing.
    pub failing: usize,
    /// Signed, never uploaded.
    pub signed_only: usize,
    /// No proof.
    pub not_anchored: usize,
    /// Traces served by no model (not a gap).
    pub no_model: usize,
}

/// The reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    /// The tracking server.
    pub tracking_uri: String,
    /// Whether proofs were verified (not `--tags-only`).
    pub verified: bool,
    /// Per event type.
    pub counts: std::collections::BTreeMap<&'static str, Counts>,
    /// Every entity that is not verifying (failing, signed only, not anchored).
    pub unproven: Vec<Entry>,
}

impl Coverage {
    /// Everything MLflow holds is anchored (and verifies, when verified).
    pub fn complete(&self) -> bool {
        self.unproven.is_empty()
    }
}

fn tag_of_run(run: &Value, key: &str) -> Option<String> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn tag_of_trace(trace: &Value, key: &str) -> Option<String> {
    match &trace["tags"] {
        Value::Object(m) => m.get(key).and_then(Value::as_str).map(str::to_owned),
        Value::Array(a) => a
            .iter()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
            .map(str::to_owned),
        _ => None,
    }
    .filter(|v| !v.is_empty())
}

/// One entity to judge: its event type, name, entity for the verifier, TX tag and status tag.
struct Candidate {
    event_type: &'static str,
    name: String,
    entity: Entity,
    tx: Option<String>,
    status: Option<String>,
    /// A trace with nothing to attribute it to.
    no_model: bool,
}

impl Verifier {
    /// Reconciles MLflow against the proofs; `verify` runs every proof's checks (at most
    /// `concurrency` at once).
    pub async fn coverage(
        &self,
        verify: bool,
        concurrency: usize,
    ) -> Result<Coverage, MlflowError> {
        self.reconcile(verify, concurrency, false).await
    }

    /// The gaps only, at a cost that does not grow with what is anchored (the service's
    /// periodic gauges): runs and traces without a TX tag (an `IS NULL` search each, whose
    /// answer is small on a healthy registry), every version. The runs' and traces' `anchored`
    /// counts are not known this way (0); `coverage` gives them.
    pub async fn coverage_gaps(&self) -> Result<Coverage, MlflowError> {
        self.reconcile(false, 1, true).await
    }

    async fn reconcile(
        &self,
        verify: bool,
        concurrency: usize,
        gaps_only: bool,
    ) -> Result<Coverage, MlflowError> {
        let experiments = self.mlflow.active_experiment_ids().await?;
        let mut candidates = Vec::new();
        let runs = if gaps_only {
            let unanchored = "attributes.status = 'FINISHED' and tags.`ario.training_tx` IS NULL";
            match self.mlflow.search_runs(&experiments, unanchored).await {
                Ok(r) => r,
                // MLflow 2.x has no `IS NULL` on tags: every finished run then.
                Err(MlflowError::Http { status: 400, .. }) => {
                    self.mlflow
                        .search_runs(&experiments, "attributes.status = 'FINISHED'")
                        .await?
                }
                Err(e) => return Err(e),
            }
        } else {
            self.mlflow
                .search_runs(&experiments, "attributes.status = 'FINISHED'")
                .await?
        };
        for r in &runs {
            let Some(id) = r["info"]["run_id"].as_str() else {
                continue;
            };
            candidates.push(Candidate {
                event_type: training::EVENT_TYPE,
                name: format!("run/{id}"),
                entity: Entity::Run(id.to_string()),
                tx: tag_of_run(r, training::TX_TAG),
                status: tag_of_run(r, tags::VERIFY_STATUS),
                no_model: false,
            });
        }
        let versions = self.mlflow.search_model_versions("").await?;
        for mv in &versions {
            candidates.push(Candidate {
                event_type: registration::EVENT_TYPE,
                name: format!("model/{}/{}", mv.name, mv.version),
                entity: Entity::ModelVersion(mv.name.clone(), mv.version.clone()),
                tx: mv.tag(registration::TX_TAG).map(str::to_owned),
                status: mv.tag(tags::VERIFY_STATUS).map(str::to_owned),
                no_model: false,
            });
        }
        // MLflow 2.x has no v3 traces: no predictions to cover there.
        let trace_filter = if gaps_only {
            "trace.status = 'OK' and tags.`ario.prediction_tx` IS NULL and tags.`ario.checkpoint_tx` IS NULL"
        } else {
            "trace.status = 'OK'"
        };
        let traces = self
            .mlflow
            .search_traces(&experiments, trace_filter)
            .await
            .unwrap_or_default();
        // Whether a model id names a model a prediction can be attributed to (the pipeline's
        // rule: a LoggedModel that exists and has a run), read once per model.
        let mut served: std::collections::BTreeMap<String, bool> = Default::default();
        for t in &traces {
            let Some(id) = t["trace_id"].as_str() else {
                continue;
            };
            let tx = tag_of_trace(t, prediction::TX_TAG)
                .or_else(|| tag_of_trace(t, prediction::LEGACY_TX_TAG))
                .or_else(|| tag_of_trace(t, crate::profile::checkpoint::TX_TAG));
            let model_id = t["trace_metadata"]["mlflow.modelId"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
            let no_model = match (&tx, model_id) {
                (Some(_), _) => false,
                (None, None) => true,
                (None, Some(m)) => {
                    if !served.contains_key(&m) {
                        let ok = match self.mlflow.get_logged_model(&m).await {
                            Ok(lm) => lm.source_run_id.is_some_and(|r| !r.is_empty()),
                            Err(e) if e.is_not_found() => false,
                            Err(e) => return Err(e),
                        };
                        served.insert(m.clone(), ok);
                    }
                    !served[&m]
                }
            };
            // The plugin's VerifiedModel signs before it uploads (`ario.proof_status`).
            let status = tag_of_trace(t, tags::VERIFY_STATUS).or_else(|| {
                tag_of_trace(t, prediction::PROOF_STATUS_TAG)
                    .filter(|s| s == "anchoring" || s == "failed")
                    .map(|_| tags::STATUS_SIGNED.to_string())
            });
            candidates.push(Candidate {
                event_type: prediction::EVENT_TYPE,
                name: format!("trace/{id}"),
                entity: Entity::Trace(id.to_string()),
                tx,
                status,
                no_model,
            });
        }
        let judged: Vec<(Candidate, Standing, Option<String>)> =
            futures::stream::iter(candidates.into_iter().map(|c| async move {
                match &c.tx {
                    None if c.no_model => (c, Standing::NoModel, None),
                    None if c.status.as_deref() == Some(tags::STATUS_SIGNED) => {
                        (c, Standing::SignedOnly, None)
                    }
                    None => (c, Standing::NotAnchored, None),
                    Some(_) if !verify => (c, Standing::Anchored, None),
                    Some(tx) => {
                        let v = self.verify_tx(tx, &c.entity).await;
                        if v.overall_ok {
                            (c, Standing::Verifying, None)
                        } else {
                            let reason = first_failure(&v);
                            (c, Standing::Failing, Some(reason))
                        }
                    }
                }
            }))
            .buffered(concurrency.max(1))
            .collect()
            .await;
        let mut counts: std::collections::BTreeMap<&'static str, Counts> = [
            training::EVENT_TYPE,
            registration::EVENT_TYPE,
            prediction::EVENT_TYPE,
        ]
        .into_iter()
        .map(|t| (t, Counts::default()))
        .collect();
        let mut unproven = Vec::new();
        for (c, standing, reason) in judged {
            let n = counts.entry(c.event_type).or_default();
            n.total += 1;
            match standing {
                Standing::Verifying => n.verifying += 1,
                Standing::Anchored => n.anchored += 1,
                Standing::Failing => n.failing += 1,
                Standing::SignedOnly => n.signed_only += 1,
                Standing::NotAnchored => n.not_anchored += 1,
                Standing::NoModel => n.no_model += 1,
            }
            if !matches!(
                standing,
                Standing::Verifying | Standing::Anchored | Standing::NoModel
            ) {
                unproven.push(Entry {
                    event_type: c.event_type,
                    entity: c.name,
                    tx_id: c.tx,
                    standing,
                    reason,
                });
            }
        }
        Ok(Coverage {
            tracking_uri: self.mlflow.tracking_uri().to_string(),
            verified: verify,
            counts,
            unproven,
        })
    }
}

fn first_failure(v: &super::ProofVerdict) -> String {
    match v.first_failed() {
        Some((name, check)) => format!("{name}: {}", check.reason),
        None => "a required check could not run".into(),
    }
}

/// The text report.
pub fn coverage_text(c: &Coverage) -> String {
    let mut out = format!(
        "Coverage of {}{}\n\n{:<20} {:>6} {:>10} {:>8} {:>12} {:>13} {:>9}\n",
        c.tracking_uri,
        if c.verified {
            ""
        } else {
            " (tags only, not verified)"
        },
        "event type",
        "total",
        if c.verified { "verifying" } else { "anchored" },
        "failing",
        "signed only",
        "not anchored",
        "no model"
    );
    for (t, n) in &c.counts {
        out.push_str(&format!(
            "{:<20} {:>6} {:>10} {:>8} {:>12} {:>13} {:>9}\n",
            t,
            n.total,
            if c.verified { n.verifying } else { n.anchored },
            n.failing,
            n.signed_only,
            n.not_anchored,
            n.no_model
        ));
    }
    if !c.unproven.is_empty() {
        out.push_str("\nNot proven:\n");
        for e in &c.unproven {
            let standing = match e.standing {
                Standing::Failing => "FAILING",
                Standing::SignedOnly => "SIGNED ONLY",
                Standing::NotAnchored => "NOT ANCHORED",
                _ => "",
            };
            out.push_str(&format!(
                "  {standing:<13} {:<18} {}{}\n",
                e.event_type,
                e.entity,
                e.reason
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// A self-contained HTML report.
pub fn coverage_html(c: &Coverage) -> String {
    use super::report::esc;
    let mut rows = String::new();
    for (t, n) in &c.counts {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(t),
            n.total,
            if c.verified { n.verifying } else { n.anchored },
            n.failing,
            n.signed_only,
            n.not_anchored,
            n.no_model
        ));
    }
    let mut list = String::new();
    for e in &c.unproven {
        list.push_str(&format!(
            "<tr><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.standing,
            esc(e.event_type),
            esc(&e.entity),
            esc(e.reason.as_deref().unwrap_or(""))
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Coverage</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body><h1>Coverage of {}</h1><table><tr><th>event type</th><th>total</th><th>{}</th><th>failing</th><th>signed only</th><th>not anchored</th><th>no model</th></tr>{rows}</table><h2>Not proven</h2><table><tr><th>standing</th><th>event type</th><th>entity</th><th>reason</th></tr>{list}</table></body></html>",
        esc(&c.tracking_uri),
        if c.verified { "verifying" } else { "anchored" }
    )
}
