//! Verification of anchored proofs against MLflow and any gateway (spec/mlflow-profile.md §5),
//! stricter than the plugin where §7 says it is lenient:
//!
//! * **proof found** — the envelope is read through the gateway list; a gateway whose bytes do
//!   not verify (bad signature, not JSON, not the data of the item whose id is the TX) is
//!   skipped and reported, the next one is tried;
//! * **data item** — where a gateway serves the signed item (`/dataitem/{id}`), its id must be
//!   the TX, its signature valid and its data the bytes served at `/raw/{id}`; elsewhere "not
//!   checked";
//! * **key binding** — with pinned keys (`--trusted-key`) any other signer fails; without, a key
//!   that differs from the entity's `ario.public_key` tag is reported;
//! * checks 1–4 of §5.1 (signature, anchored bytes, live MLflow refetch, ar.io Verify) with the
//!   verdict rules of §5.2.
//!
//! `signed_at` and `event_id` are never re-formatted or rejected for their format (§1.2).

pub mod attestation;
pub mod audit;
pub mod chain;
pub mod checkpoint;
pub mod coverage;
pub mod report;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::arweave::{DataItem, GatewayReader};
use crate::mlflow::{MlflowClient, MlflowError, Run};
use crate::profile::registration;
use crate::profile::training::{self, TrainingFacts};
use crate::profile::{prediction, rename, tags, witness};
use crate::proof::{jcs, sha256_hex, verify_envelope, SpecVersionStatus};

pub use attestation::ArioVerifyClient;

/// One check: `ok` is `Some(true)` passed, `Some(false)` failed, `None` not run / not applicable.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Check {
    /// Tri-state outcome.
    pub ok: Option<bool>,
    /// Why (always filled, for people).
    pub reason: String,
    /// Machine-readable extras (hashes, gateway, levels…).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub detail: Map<String, Value>,
}

impl Check {
    /// A passed check.
    pub fn pass(reason: impl Into<String>) -> Check {
        Check {
            ok: Some(true),
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// A failed check.
    pub fn fail(reason: impl Into<String>) -> Check {
        Check {
            ok: Some(false),
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// A check that did not run or does not apply.
    pub fn skipped(reason: impl Into<String>) -> Check {
        Check {
            ok: None,
            reason: reason.into(),
            detail: Map::new(),
        }
    }

    /// Adds a detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Check {
        self.detail.insert(key.to_string(), value.into());
        self
    }
}

/// The four checks of spec §5.1, named as in the plugin's audit JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    /// Check 1: kernel signature and spec version.
    pub signature: Check,
    /// Check 2: the witness artifact in MLflow hashes to `payload_hash`.
    pub anchored_bytes: Check,
    /// Check 3: live MLflow rebuilt byte for byte.
    pub source_of_truth: Check,
    /// Check 4: ar.io Verify attestation.
    pub ario_attestation: Check,
}

/// The entity a proof is expected to be about (what `verify run|model|trace` asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// A training run.
    Run(String),
    /// A model version (name, version).
    ModelVersion(String, String),
    /// A trace (prediction).
    Trace(String),
    /// A dataset (name, digest).
    Dataset(String, String),
    /// Whatever the TX is about.
    Any,
}

/// The verdict on one proof.
#[derive(Debug, Clone, Serialize)]
pub struct ProofVerdict {
    /// The TX (data item id).
    pub tx_id: String,
    /// `event_type` of the envelope.
    pub event_type: Option<String>,
    /// `subject` of the envelope.
    pub subject: Option<Value>,
    /// Signer key (hex).
    pub public_key: Option<String>,
    /// `previous_hash` (payload hash for training, TX id for the rest, or GENESIS).
    pub previous_hash: Option<String>,
    /// `payload_hash`.
    pub payload_hash: Option<String>,
    /// `signed_at` as signed (advisory, never re-formatted).
    pub signed_at: Option<String>,
    /// The envelope was read from Arweave through a gateway.
    pub proof_found: Check,
    /// The served bytes are the data of the item whose id is the TX.
    pub data_item: Check,
    /// The signer is a pinned key (or the entity's `ario.public_key`).
    pub key_binding: Check,
    /// Checks 1–4.
    pub checks: Checks,
    /// The §5.2 verdict plus our stricter checks.
    pub overall_ok: bool,
    /// A training proof of a run that was re-opened and finished again: the TX of the newer
    /// proof that covers its final state (this one is superseded, not failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// The envelope as fetched.
    #[serde(skip)]
    pub envelope: Option<Value>,
}

impl ProofVerdict {
    /// A verdict for a TX whose envelope could not be read.
    fn not_found(tx_id: &str, proof_found: Check) -> ProofVerdict {
        let none = || Check::skipped("no_envelope");
        ProofVerdict {
            tx_id: tx_id.to_string(),
            event_type: None,
            subject: None,
            public_key: None,
            previous_hash: None,
            payload_hash: None,
            signed_at: None,
            proof_found,
            data_item: none(),
            key_binding: none(),
            checks: Checks {
                signature: none(),
                anchored_bytes: none(),
                source_of_truth: none(),
                ario_attestation: none(),
            },
            overall_ok: false,
            superseded_by: None,
            envelope: None,
        }
    }

    /// Every check by its short name, in the order a failure is reported.
    pub fn named_checks(&self) -> [(&'static str, &Check); 7] {
        let c = &self.checks;
        [
            ("proof found", &self.proof_found),
            ("data item", &self.data_item),
            ("key", &self.key_binding),
            ("signature", &c.signature),
            ("anchored bytes", &c.anchored_bytes),
            ("live record", &c.source_of_truth),
            ("attestation", &c.ario_attestation),
        ]
    }

    /// The first check that failed, by its short name.
    pub fn first_failed(&self) -> Option<(&'static str, &Check)> {
        self.named_checks()
            .into_iter()
            .find(|(_, check)| check.ok == Some(false))
    }

    /// The "record matches" row of the plugin's panel: checks 2 and 3 consolidated.
    pub fn record_matches(&self) -> Check {
        let (a, s) = (&self.checks.anchored_bytes, &self.checks.source_of_truth);
        match (a.ok, s.ok) {
            (Some(false), _) => Check::fail(or(&a.reason, "anchored_bytes_mismatch")),
            (_, Some(false)) => Check::fail(or(&s.reason, "live_mlflow_mismatch")),
            (None, _) => Check::skipped(a.reason.clone()),
            (_, None) => Check::skipped(s.reason.clone()),
            _ => Check::pass("live MLflow matches anchored bytes"),
        }
    }
}

fn or(reason: &str, default: &str) -> String {
    if reason.is_empty() {
        default.to_string()
    } else {
        reason.to_string()
    }
}

/// The verifier: MLflow, the gateway list, pinned keys, and the optional ar.io Verify client.
pub struct Verifier {
    /// MLflow (witnesses, live refetch, tags).
    pub mlflow: MlflowClient,
    /// Read gateways, in order.
    pub gateways: GatewayReader,
    /// Pinned signer keys (lowercase hex); empty = not pinned.
    pub trusted_keys: Vec<String>,
    /// ar.io Verify, when configured and healthy.
    pub attestation: Option<ArioVerifyClient>,
    /// Attestation level needed to pass check 4.
    pub min_attestation_level: u64,
    /// Model checksums reused for a moment (the guard verifies a version's registration and
    /// its run's training proof one after the other: one re-hash serves both). `None`: every
    /// check hashes afresh.
    pub checksum_memo: Option<ChecksumMemo>,
}

/// Model checksums keyed by (run, artifact path), each kept for `ttl`.
#[derive(Debug)]
pub struct ChecksumMemo {
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<(String, String), MemoEntry>>,
}

/// When an entry was computed, and the checksums (`None`: no model files).
type MemoEntry = (std::time::Instant, Option<BTreeMap<String, String>>);

impl ChecksumMemo {
    /// Entries live for `ttl`.
    pub fn new(ttl: std::time::Duration) -> ChecksumMemo {
        ChecksumMemo {
            ttl,
            entries: Default::default(),
        }
    }

    fn get(&self, key: &(String, String)) -> Option<Option<BTreeMap<String, String>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() <= self.ttl);
        entries.get(key).map(|(_, c)| c.clone())
    }

    fn put(&self, key: (String, String), value: Option<BTreeMap<String, String>>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key, (std::time::Instant::now(), value));
    }
}

/// Where a proof's witness is.
enum Witness {
    /// Artifacts of a run, tried in order.
    Run(String, Vec<String>),
    /// The bytes of a tag (a version without a run, a rename).
    Tag(String, Vec<u8>),
}

/// The envelope read from a gateway, with what was learnt on the way.
struct Fetched {
    envelope: Value,
    proof_found: Check,
    data_item: Check,
}

impl Verifier {
    /// The model files' checksums, through the memo when there is one.
    pub async fn model_checksums(
        &self,
        run: &Run,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let key = (run.info.run_id.clone(), path.to_string());
        if let Some(memo) = &self.checksum_memo {
            if let Some(hit) = memo.get(&key) {
                return Ok(hit);
            }
        }
        let computed = self.mlflow.model_checksums(run, path).await?;
        if let Some(memo) = &self.checksum_memo {
            memo.put(key, computed.clone());
        }
        Ok(computed)
    }

    /// Verifies the proof anchored as `tx_id`, expected to be about `entity`.
    pub async fn verify_tx(&self, tx_id: &str, entity: &Entity) -> ProofVerdict {
        let fetched = match self.fetch(tx_id).await {
            Ok(f) => f,
            Err(check) => return ProofVerdict::not_found(tx_id, check),
        };
        self.verify_fetched(tx_id, fetched, entity).await
    }

    async fn verify_fetched(&self, tx_id: &str, f: Fetched, entity: &Entity) -> ProofVerdict {
        let env = &f.envelope;
        let text = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_owned);
        let event_type = text("event_type");
        let mut proof_found = f.proof_found;
        // A proof anchored before its model was renamed names the former name: it is about the
        // version asked for when a verifying rename proof of the model says so.
        let mut lookup_name = None;
        if let Some(why) = subject_mismatch(env, entity) {
            match self.renamed_subject(env, entity).await {
                Ok(Some((former, rename_tx))) => {
                    proof_found = proof_found
                        .with("anchored_as", former.clone())
                        .with("rename_tx", rename_tx);
                    proof_found.reason = format!(
                        "{} (anchored as {former}; renamed since, rename proof verified)",
                        proof_found.reason
                    );
                    if let Entity::ModelVersion(name, _) = entity {
                        lookup_name = Some(name.clone());
                    }
                }
                Ok(None) | Err(_) => {
                    let extra = match self.renamed_subject(env, entity).await {
                        Err(e) => format!("; {e}"),
                        _ => String::new(),
                    };
                    proof_found =
                        Check::fail(format!("proof is about another entity: {why}{extra}")).with(
                            "served_by",
                            proof_found
                                .detail
                                .get("served_by")
                                .cloned()
                                .unwrap_or(Value::Null),
                        );
                }
            }
        }
        let signature = signature_check(env);
        let (anchored_bytes, payload_bytes, superseded_by) = self
            .anchored_bytes(env, tx_id, lookup_name.as_deref())
            .await;
        let source_of_truth = match (&payload_bytes, &superseded_by) {
            (Some(_), Some(newer)) => Check::skipped(format!(
                "superseded: the run was re-opened after this proof and its final state is proven by {newer}"
            ))
            .with("superseded_by", newer.clone()),
            (Some(bytes), None) => self.source_of_truth(event_type.as_deref(), bytes).await,
            (None, _) => Check::skipped("no_payload_to_compare"),
        };
        let ario_attestation = match &self.attestation {
            None => Check::skipped("ario_verify_not_enabled"),
            Some(client) => client.attest(tx_id, self.min_attestation_level).await,
        };
        let key_binding = self.key_binding(env, entity).await;
        let mut verdict = ProofVerdict {
            tx_id: tx_id.to_string(),
            event_type,
            subject: env.get("subject").cloned(),
            public_key: text("public_key"),
            previous_hash: text("previous_hash"),
            payload_hash: text("payload_hash"),
            signed_at: env.get("signed_at").map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            proof_found,
            data_item: f.data_item,
            key_binding,
            checks: Checks {
                signature,
                anchored_bytes,
                source_of_truth,
                ario_attestation,
            },
            overall_ok: false,
            superseded_by,
            envelope: Some(f.envelope.clone()),
        };
        verdict.overall_ok = overall(&verdict);
        verdict
    }

    /// When `entity` is a model version whose proof names another model: the former name and
    /// the rename proof's TX, if the model's rename proof verifies (signature, the payload in
    /// its tag, a pinned or matching key) and lists that name among its former names; an error
    /// saying why not when there is a rename proof that does not hold.
    async fn renamed_subject(
        &self,
        env: &Value,
        entity: &Entity,
    ) -> Result<Option<(String, String)>, String> {
        let Entity::ModelVersion(name, version) = entity else {
            return Ok(None);
        };
        let subject = env.get("subject").cloned().unwrap_or(Value::Null);
        let (Some(old), Some(v)) = (
            subject.get("name").and_then(value_text),
            subject.get("version").and_then(value_text),
        ) else {
            return Ok(None);
        };
        if &v != version || &old == name {
            return Ok(None);
        }
        let former = self.former_names(name).await?;
        Ok(former
            .1
            .iter()
            .any(|n| n == &old)
            .then(|| (format!("{old}/{v}"), former.0)))
    }

    /// The names registered model `name` had before, from its newest rename proof, verified:
    /// (the rename TX, the former names). No rename proof: none.
    pub async fn former_names(&self, name: &str) -> Result<(String, Vec<String>), String> {
        let rm = match self.mlflow.get_registered_model(name).await {
            Ok(rm) => rm,
            Err(e) => return Err(format!("registered model {name}: {e}")),
        };
        let Some(tx) = rm.tag(rename::TX_TAG).map(str::to_owned) else {
            return Ok((String::new(), Vec::new()));
        };
        let fetched = self
            .fetch(&tx)
            .await
            .map_err(|c| format!("rename proof {tx}: {}", c.reason))?;
        let env = &fetched.envelope;
        if !verify_envelope(env, None).overall {
            return Err(format!("rename proof {tx}: its signature does not verify"));
        }
        let key = env["public_key"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !self.trusted_keys.is_empty() && !self.trusted_keys.contains(&key) {
            return Err(format!(
                "rename proof {tx}: signed by {key}, which is not a pinned key"
            ));
        }
        if env["subject"]["name"].as_str() != Some(name) {
            return Err(format!("rename proof {tx} is about another model"));
        }
        let event_id = env["event_id"].as_str().unwrap_or("");
        let payload = rm
            .tag(&rename::payload_tag(event_id))
            .ok_or_else(|| format!("rename proof {tx}: its payload tag is missing"))?;
        if Some(sha256_hex(payload.as_bytes()).as_str()) != env["payload_hash"].as_str() {
            return Err(format!(
                "rename proof {tx}: its payload tag does not hash to the proof's payload_hash"
            ));
        }
        let payload = jcs::parse(payload.as_bytes())
            .map_err(|e| format!("rename proof {tx}: payload: {e}"))?;
        Ok((tx, rename::former_names(&payload)))
    }

    /// Reads the envelope of `tx_id`, trying gateways in order and skipping any whose bytes do
    /// not verify (reported in `proof_found.detail.skipped`).
    async fn fetch(&self, tx_id: &str) -> Result<Fetched, Check> {
        if !crate::arweave::gateway::is_arweave_id(tx_id) {
            return Err(Check::fail(format!(
                "{tx_id:?} is not an Arweave id (43 base64url characters)"
            )));
        }
        let mut skipped: Vec<Value> = Vec::new();
        let mut first_bad: Option<Fetched> = None;
        for gateway in self.gateways.gateways() {
            let (bytes, _) = match self.gateways.fetch_from(gateway, tx_id).await {
                Ok(b) => b,
                Err(cause) => {
                    skipped
                        .push(serde_json::json!({"gateway": gateway.to_string(), "cause": cause}));
                    continue;
                }
            };
            let data_item = match self.gateways.fetch_data_item(gateway, tx_id).await {
                Ok(Some(item)) => data_item_check(tx_id, &item, &bytes),
                Ok(None) => Check::skipped("not checked: the gateway serves no signed data item"),
                Err(e) => Check::skipped(format!("not checked: data item unreadable ({e})")),
            };
            let envelope = jcs::parse(&bytes).ok().filter(Value::is_object);
            let problem = match (&envelope, data_item.ok) {
                (None, _) => Some("served bytes that are not a JSON envelope".to_string()),
                (_, Some(false)) => Some(format!("served altered bytes ({})", data_item.reason)),
                (Some(env), _) if !verify_envelope(env, None).signature_valid => {
                    Some("served an envelope whose signature does not verify".to_string())
                }
                _ => None,
            };
            match (problem, envelope) {
                (None, Some(envelope)) => {
                    let mut found = Check::pass(format!("envelope retrieved from {gateway}"))
                        .with("served_by", gateway.to_string());
                    if !skipped.is_empty() {
                        found = found.with("skipped", Value::Array(skipped));
                    }
                    return Ok(Fetched {
                        envelope,
                        proof_found: found,
                        data_item,
                    });
                }
                (Some(problem), envelope) => {
                    skipped.push(
                        serde_json::json!({"gateway": gateway.to_string(), "cause": problem}),
                    );
                    if first_bad.is_none() {
                        if let Some(envelope) = envelope {
                            first_bad = Some(Fetched {
                                envelope,
                                proof_found: Check::skipped(""),
                                data_item,
                            });
                        }
                    }
                }
                (None, None) => unreachable!("no problem implies an envelope"),
            }
        }
        // No gateway served a good copy: verify the first bad one so the failure has a reason.
        match first_bad {
            Some(mut f) => {
                f.proof_found =
                    Check::pass("envelope retrieved, but no gateway served a copy that verifies")
                        .with("skipped", Value::Array(skipped));
                Ok(f)
            }
            None => Err(Check::fail(format!("no gateway served {tx_id}"))
                .with("skipped", Value::Array(skipped))),
        }
    }

    /// Pinned keys, else the entity's `ario.public_key` tag.
    async fn key_binding(&self, env: &Value, entity: &Entity) -> Check {
        let Some(key) = env.get("public_key").and_then(Value::as_str) else {
            return Check::fail("envelope has no public_key");
        };
        let key = key.to_ascii_lowercase();
        if !self.trusted_keys.is_empty() {
            return if self.trusted_keys.contains(&key) {
                Check::pass("signed by a pinned key").with("public_key", key)
            } else {
                Check::fail(format!("signed by {key}, which is not a pinned key"))
                    .with("public_key", key)
            };
        }
        match self.entity_key_tag(entity).await {
            Some(tag) if tag.eq_ignore_ascii_case(&key) => {
                Check::skipped("matches the entity's ario.public_key tag (no key pinned)")
                    .with("public_key", key)
            }
            Some(tag) => Check::skipped(format!(
                "WARNING: signer {key} differs from the entity's ario.public_key tag {tag}; pin keys with --trusted-key"
            ))
            .with("public_key", key)
            .with("tag", tag),
            None => Check::skipped("no key pinned (--trusted-key) and no ario.public_key tag to compare")
                .with("public_key", key),
        }
    }

    async fn entity_key_tag(&self, entity: &Entity) -> Option<String> {
        let tag = tags::PUBLIC_KEY;
        match entity {
            Entity::Run(id) => self
                .mlflow
                .get_run(id)
                .await
                .ok()?
                .tag(tag)
                .map(str::to_owned),
            Entity::ModelVersion(n, v) => {
                let mv = self.mlflow.get_model_version(n, v).await.ok()?;
                if let Some(t) = mv.tag(tag) {
                    return Some(t.to_string());
                }
                let run = self.mlflow.get_run(&mv.run_id).await.ok()?;
                run.tag(tag).map(str::to_owned)
            }
            Entity::Trace(id) => self
                .mlflow
                .get_trace_info(id)
                .await
                .ok()?
                .tags
                .get(tag)
                .cloned(),
            Entity::Dataset(..) | Entity::Any => None,
        }
    }

    /// Check 2: the witness named by the subject hashes to `payload_hash`. Returns the check,
    /// the witness bytes, and — for a training proof superseded by a newer one of the same run —
    /// the newer proof's TX. `lookup_name` is the model's current name when the proof names a
    /// former one.
    async fn anchored_bytes(
        &self,
        env: &Value,
        tx_id: &str,
        lookup_name: Option<&str>,
    ) -> (Check, Option<Vec<u8>>, Option<String>) {
        let subject = env.get("subject").cloned().unwrap_or(Value::Null);
        let s = |k: &str| subject.get(k).and_then(value_text);
        let event_type = env.get("event_type").and_then(Value::as_str).unwrap_or("");
        let event_id = s("event_id").or_else(|| env.get("event_id").and_then(value_text));
        let stored = env
            .get("payload_hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut superseded_by = None;
        // Where the witness may be: (run, paths in order) or the bytes of a tag.
        let located: Result<Witness, Check> = match subject.get("type").and_then(Value::as_str) {
            Some("mlflow_run") => match s("run_id") {
                Some(run) => {
                    let mut paths = vec![training::PAYLOAD_ARTIFACT.to_string()];
                    if let Some(id) = &event_id {
                        paths.push(training::superseded_path(id, witness::PAYLOAD_FILE));
                    }
                    Ok(Witness::Run(run, paths))
                }
                None => Err(Check::fail("subject_missing_run_id")),
            },
            Some(t @ ("mlflow_model_version" | "mlflow_model_alias")) => {
                match (
                    lookup_name.map(str::to_owned).or_else(|| s("name")),
                    s("version"),
                ) {
                    (Some(name), Some(version)) => {
                        match self.mlflow.get_model_version(&name, &version).await {
                            Ok(mv) => {
                                let paths: Option<Vec<String>> = if t == "mlflow_model_alias" {
                                    event_id
                                        .as_ref()
                                        .map(|id| vec![format!("ario/aliases/{id}/payload.json")])
                                } else {
                                    match event_type {
                                        // Ours per event first, then the plugin's one per run.
                                        "model_registered" => Some(
                                            event_id
                                                .iter()
                                                .map(|id| {
                                                    registration::witness_path(
                                                        id,
                                                        witness::PAYLOAD_FILE,
                                                    )
                                                })
                                                .chain([registration::PAYLOAD_ARTIFACT.into()])
                                                .collect(),
                                        ),
                                        "stage_transition" => event_id.as_ref().map(|id| {
                                            vec![format!("ario/promotions/{id}/payload.json")]
                                        }),
                                        _ => Some(vec![training::PAYLOAD_ARTIFACT.into()]),
                                    }
                                };
                                match paths {
                                    None => Err(Check::fail("subject_missing_event_id")),
                                    // A version with no run keeps its registration payload in
                                    // a version tag.
                                    Some(_)
                                        if mv.run_id.is_empty()
                                            && event_type == "model_registered" =>
                                    {
                                        match mv.tag(registration::PAYLOAD_TAG) {
                                            Some(text) => Ok(Witness::Tag(
                                                registration::PAYLOAD_TAG.into(),
                                                text.as_bytes().to_vec(),
                                            )),
                                            None => Err(Check::fail(format!(
                                                "download_failed: {name}/{version} has no run and no {} tag",
                                                registration::PAYLOAD_TAG
                                            ))),
                                        }
                                    }
                                    Some(p) => Ok(Witness::Run(mv.run_id, p)),
                                }
                            }
                            Err(e) => {
                                Err(Check::fail(format!("could_not_resolve_model_version: {e}")))
                            }
                        }
                    }
                    _ => Err(Check::fail("subject_missing_name_or_version")),
                }
            }
            Some("mlflow_prediction") => match (s("decision_id"), s("model_run_id")) {
                (Some(d), Some(r)) => Ok(Witness::Run(
                    r,
                    vec![format!("ario/predictions/{d}/payload.json")],
                )),
                _ => Err(Check::fail("subject_missing_decision_id_or_run_id")),
            },
            Some(rename::SUBJECT_TYPE) => match (s("name"), &event_id) {
                (Some(name), Some(id)) => match self.mlflow.get_registered_model(&name).await {
                    Ok(rm) => match rm.tag(&rename::payload_tag(id)) {
                        Some(text) => Ok(Witness::Tag(
                            rename::payload_tag(id),
                            text.as_bytes().to_vec(),
                        )),
                        None => Err(Check::fail(format!(
                            "download_failed: {name} has no {} tag",
                            rename::payload_tag(id)
                        ))),
                    },
                    Err(e) => Err(Check::fail(format!(
                        "could_not_resolve_registered_model: {e}"
                    ))),
                },
                _ => Err(Check::fail("subject_missing_name_or_event_id")),
            },
            Some("mlflow_trace" | "mlflow_decision") => {
                Err(Check::skipped("legacy_subject_type_no_artifact"))
            }
            Some("mlflow_dataset") => Err(Check::skipped("mlflow_check_deferred_for_subject")),
            other => Err(Check::skipped(format!(
                "unknown_subject_type: '{}'",
                other.unwrap_or("")
            ))),
        };
        let (path, bytes) = match located {
            Err(c) => return (c, None, None),
            Ok(Witness::Tag(tag, bytes)) => (format!("tag {tag}"), bytes),
            Ok(Witness::Run(run_id, paths)) => {
                let run = match self.mlflow.get_run(&run_id).await {
                    Ok(r) => r,
                    Err(e) => {
                        return (
                            Check::fail(format!("download_failed: run {run_id}: {e}"))
                                .with("artifact_expected", paths[0].clone()),
                            None,
                            None,
                        )
                    }
                };
                // The first path whose bytes hash to the proof; else the first readable one
                // (its mismatch is the failure), else the first error.
                let mut first: Option<(String, Result<Vec<u8>, MlflowError>)> = None;
                let mut matched = None;
                for path in &paths {
                    let got = self.mlflow.download_run_artifact(&run, path).await;
                    if matches!(&got, Ok(b) if sha256_hex(b) == stored) {
                        matched = Some((path.clone(), got));
                        break;
                    }
                    let readable = got.is_ok();
                    if first.as_ref().is_none_or(|(_, f)| f.is_err() && readable) {
                        first = Some((path.clone(), got));
                    }
                }
                let (path, got) = matched.or(first).unwrap_or_else(|| {
                    (
                        String::new(),
                        Err(MlflowError::Unsupported("no witness path".into())),
                    )
                });
                let bytes = match got {
                    Ok(b) => b,
                    Err(e) => {
                        return (
                            Check::fail(format!("download_failed: {e}"))
                                .with("artifact_expected", paths.join(" or ")),
                            None,
                            None,
                        )
                    }
                };
                if event_type == training::EVENT_TYPE && path != training::PAYLOAD_ARTIFACT {
                    let newer = run.tag(training::TX_TAG).unwrap_or("");
                    if newer != tx_id && !newer.is_empty() {
                        superseded_by = Some(newer.to_string());
                    }
                }
                (path, bytes)
            }
        };
        let computed = sha256_hex(&bytes);
        let check = if computed == stored {
            Check::pass(format!("{path} hashes to payload_hash"))
        } else {
            Check::fail(format!(
                "anchored_bytes_mismatch: {path} hashes to {computed}, the proof commits to {stored}"
            ))
        }
        .with("computed_hash", computed)
        .with("stored_hash", stored)
        .with("artifact_expected", path);
        (check, Some(bytes), superseded_by)
    }

    async fn download(&self, run_id: &str, path: &str) -> Result<Vec<u8>, MlflowError> {
        let run = self.mlflow.get_run(run_id).await?;
        self.mlflow.download_run_artifact(&run, path).await
    }

    /// Check 3: the anchored payload overlaid with what live MLflow says now must canonicalize
    /// to the anchored bytes.
    async fn source_of_truth(&self, event_type: Option<&str>, bytes: &[u8]) -> Check {
        let original = match jcs::parse(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Check::fail("payload_parse_failed: not a JSON object"),
            Err(e) => return Check::fail(format!("payload_parse_failed: {e}")),
        };
        let live = match event_type {
            Some("training_complete") => self.live_training(&original).await,
            Some("model_registered") => self.live_registration(&original).await,
            Some("prediction") => self.live_prediction(&original).await,
            _ => {
                return Check::skipped("no_live_fields_for_event_type").with(
                    "note",
                    "MLflow keeps no live state this event can be re-derived from",
                )
            }
        };
        let overlay = match live {
            Ok(o) => o,
            Err(detail) => return Check::fail("live_refetch_incomplete").with("detail", detail),
        };
        // A prediction's live record is its whole payload (the trace tag): compared whole, so
        // a tag emptied or cut down fails (the plugin overlays only the keys present).
        let whole = event_type == Some("prediction");
        let mut rebuilt = if whole { Map::new() } else { original.clone() };
        let mut changed: Vec<String> = if whole {
            original
                .keys()
                .filter(|k| !overlay.contains_key(*k))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for (k, v) in &overlay {
            let canonical = |x: &Value| jcs::canonicalize(x).ok();
            if original.get(k).and_then(canonical) != canonical(v) {
                changed.push(k.clone());
            }
            rebuilt.insert(k.clone(), v.clone());
        }
        let fields: Vec<Value> = overlay.keys().map(|k| Value::String(k.clone())).collect();
        match jcs::canonicalize(&Value::Object(rebuilt)) {
            Ok(b) if b == bytes => Check::pass("live MLflow matches anchored bytes")
                .with("live_fields_refetched", fields),
            Ok(_) => {
                changed.sort();
                // Which model files changed, went missing or appeared, by name.
                let files = match (
                    original.get("artifact_checksums"),
                    overlay.get("artifact_checksums"),
                ) {
                    (Some(Value::Object(then)), Some(Value::Object(now))) => {
                        changed_files(then, now)
                    }
                    _ => Vec::new(),
                };
                let mut reason = format!(
                    "live_mlflow_mismatch: {} changed since anchoring",
                    if changed.is_empty() {
                        "formatting".into()
                    } else {
                        changed.join(", ")
                    }
                );
                if !files.is_empty() {
                    reason.push_str(&format!(" (files: {})", files.join(", ")));
                }
                let check = Check::fail(reason).with(
                    "changed_fields",
                    changed.into_iter().map(Value::String).collect::<Vec<_>>(),
                );
                if files.is_empty() {
                    check
                } else {
                    check.with(
                        "changed_files",
                        files.into_iter().map(Value::String).collect::<Vec<_>>(),
                    )
                }
            }
            Err(e) => Check::fail(format!("live_refetch_failed: {e}")),
        }
    }

    async fn live_training(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let run_id = original
            .get("run_id")
            .and_then(Value::as_str)
            .ok_or("payload has no run_id")?;
        let run = self
            .mlflow
            .get_run(run_id)
            .await
            .map_err(|e| format!("run {run_id}: {e}"))?;
        let path = self.logged_model_path(&run).await;
        let checksums = match self.model_checksums(&run, &path).await {
            Ok(Some(c)) => c,
            Ok(None) => BTreeMap::new(),
            Err(e) => return Err(format!("artifacts under {path}: {e}")),
        };
        let live = training::payload(&TrainingFacts {
            run: &run.facts(),
            checksums: &checksums,
        })
        .map_err(|e| e.to_string())?;
        let mut keys = vec![
            "params",
            "metrics",
            "source_name",
            "git_commit",
            "artifact_checksums",
        ];
        if original.contains_key("dataset_inputs") {
            keys.push("dataset_inputs");
        }
        Ok(keys
            .into_iter()
            .filter_map(|k| live.get(k).map(|v| (k.to_string(), v.clone())))
            .collect())
    }

    /// §5.1 check 3: exactly one logged-model path → it, otherwise `model`.
    async fn logged_model_path(&self, run: &Run) -> String {
        let mut names = Vec::new();
        for output in &run.outputs.model_outputs {
            if let Ok(m) = self.mlflow.get_logged_model(&output.model_id).await {
                names.push(m.name);
            }
        }
        training::artifact_path(run.tag(training::LOG_MODEL_HISTORY_TAG), &names)
            .unwrap_or_else(|_| "model".into())
    }

    /// Check 3 of a registration: the files the payload's `source` names re-hashed now (the
    /// same resolution the anchorer used, whatever the model is called), the source run's
    /// `ario.artifact_hash` read now; `artifact_verified` recomputed from the two, and the file
    /// map itself when the payload committed to it.
    async fn live_registration(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let text = |k: &str| {
            original
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let source = text("source");
        let run_id = text("source_run_id");
        let run = if run_id.is_empty() {
            None
        } else {
            Some(
                self.mlflow
                    .get_run(&run_id)
                    .await
                    .map_err(|e| format!("run {run_id}: {e}"))?,
            )
        };
        let tag = run
            .as_ref()
            .and_then(|r| r.tag(tags::ARTIFACT_HASH))
            .map(str::to_owned);
        // The version as the payload describes it: its source and run.
        let described = crate::mlflow::ModelVersion {
            name: text("model_name"),
            version: text("model_version"),
            source: source.clone(),
            run_id,
            ..Default::default()
        };
        let checksums = self
            .version_checksums(&described)
            .await
            .map_err(|e| format!("the files of {source}: {e}"))?;
        let actual = checksums.as_ref().and_then(training::artifact_hash);
        let verified = match (&tag, &checksums) {
            (Some(t), Some(_)) => Value::Bool(actual.as_deref() == Some(t.as_str())),
            _ => Value::Null,
        };
        let mut m = Map::new();
        m.insert(
            "artifact_hash".into(),
            tag.map(Value::String).unwrap_or(Value::Null),
        );
        m.insert("artifact_verified".into(), verified);
        if original.contains_key(registration::ARTIFACT_CHECKSUMS_KEY) {
            m.insert(
                registration::ARTIFACT_CHECKSUMS_KEY.into(),
                serde_json::to_value(checksums.unwrap_or_default()).unwrap_or(Value::Null),
            );
        }
        Ok(m)
    }

    /// A version's files' checksums (its `source` resolved as the anchorer does), through the
    /// memo when there is one.
    pub async fn version_checksums(
        &self,
        mv: &crate::mlflow::ModelVersion,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let key = (format!("source:{}", mv.source), mv.run_id.clone());
        if let Some(memo) = &self.checksum_memo {
            if let Some(hit) = memo.get(&key) {
                return Ok(hit);
            }
        }
        let computed = self.mlflow.version_files(mv).await?.checksums;
        if let Some(memo) = &self.checksum_memo {
            memo.put(key, computed.clone());
        }
        Ok(computed)
    }

    async fn live_prediction(
        &self,
        original: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let trace_id = original
            .get("mlflow_trace_id")
            .and_then(Value::as_str)
            .ok_or("payload has no mlflow_trace_id")?;
        let info = self
            .mlflow
            .get_trace_info(trace_id)
            .await
            .map_err(|e| format!("trace {trace_id}: {e}"))?;
        let text = info
            .tags
            .get(prediction::PAYLOAD_JSON_TAG)
            .ok_or("trace has no ario.payload_json tag (pruned?)")?;
        match jcs::parse(text.as_bytes()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("ario.payload_json is not a JSON object".into()),
            Err(e) => Err(format!("ario.payload_json: {e}")),
        }
    }

    /// `--write-back`: tags an entity as verified, only for a passing verdict with a passing
    /// attestation (the plugin writes "verified" for any answer, even level 0; we do not).
    pub async fn write_back(
        &self,
        entity: &Entity,
        v: &ProofVerdict,
    ) -> Result<Vec<String>, String> {
        let att = &v.checks.ario_attestation;
        if !v.overall_ok || att.ok != Some(true) {
            return Ok(Vec::new());
        }
        let mut tags: Vec<(String, String)> = vec![(tags::VERIFY_STATUS.into(), "verified".into())];
        for (key, field) in [
            ("ario.attestation_level", "attestation_level"),
            ("ario.report_url", "report_url"),
            ("ario.attested_by", "attested_by"),
            ("ario.attested_at", "attested_at"),
        ] {
            if let Some(value) = att.detail.get(field).and_then(value_text) {
                tags.push((key.into(), value));
            }
        }
        let written: Vec<String> = tags.iter().map(|(k, _)| k.clone()).collect();
        let result = match entity {
            Entity::Run(id) => self.mlflow.set_run_tags(id, &tags).await,
            Entity::ModelVersion(n, ver) => {
                for (k, value) in &tags {
                    self.mlflow
                        .set_model_version_tag(n, ver, k, value)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Entity::Trace(id) => {
                for (k, value) in &tags {
                    self.mlflow
                        .set_trace_tag(id, k, value)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Entity::Dataset(..) | Entity::Any => return Ok(Vec::new()),
        };
        result.map_err(|e| e.to_string())?;
        Ok(written)
    }
}

/// A JSON scalar as text (versions may be numbers in old subjects).
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Check 1 (§5.1): kernel verification without payload bytes; legacy accepted and flagged.
pub fn signature_check(env: &Value) -> Check {
    let v = verify_envelope(env, None);
    let status = match v.spec_version_status {
        SpecVersionStatus::Supported => "supported",
        SpecVersionStatus::Legacy => "legacy",
        SpecVersionStatus::Unsupported => "unsupported",
    };
    let check = if v.overall {
        Check::pass(if v.legacy_envelope {
            "signature valid (legacy envelope without spec_version)"
        } else {
            "signature valid"
        })
    } else if v.spec_version_status == SpecVersionStatus::Unsupported {
        Check::fail("unsupported_spec_version")
    } else {
        Check::fail(
            v.reason
                .clone()
                .unwrap_or_else(|| "signature_invalid".into()),
        )
    };
    check
        .with("signature_valid", v.signature_valid)
        .with("spec_version_status", status)
        .with("legacy_envelope", v.legacy_envelope)
}

/// The served payload must be the data of a valid item whose id is the TX.
fn data_item_check(tx_id: &str, item: &[u8], served: &[u8]) -> Check {
    let item = match DataItem::parse(item) {
        Ok(i) => i,
        // Some gateways answer unknown paths with a page of their own: not evidence either way.
        Err(e) => {
            return Check::skipped(format!(
                "not checked: the gateway's /dataitem answer is not an ANS-104 item ({e})"
            ))
        }
    };
    if let Err(e) = item.verify() {
        return Check::fail(format!("the data item's signature does not verify: {e}"));
    }
    if item.id() != tx_id {
        return Check::fail(format!("the data item's id is {}, not the TX", item.id()));
    }
    if item.data != served {
        return Check::fail("the bytes served at /raw differ from the data item's data");
    }
    Check::pass("the served bytes are the data of the signed item whose id is the TX")
        .with("owner", item.owner_address())
}

/// Why an envelope is not about `entity` (None when it is, or when nothing was expected).
fn subject_mismatch(env: &Value, entity: &Entity) -> Option<String> {
    let subject = env.get("subject")?;
    let s = |k: &str| subject.get(k).and_then(value_text);
    match entity {
        Entity::Any => None,
        Entity::Run(id) => (s("run_id").as_deref() != Some(id.as_str()))
            .then(|| format!("subject {subject} is not run {id}")),
        Entity::ModelVersion(n, v) => (s("name").as_deref() != Some(n.as_str())
            || s("version").as_deref() != Some(v.as_str()))
        .then(|| format!("subject {subject} is not {n}/{v}")),
        Entity::Dataset(name, digest) => (s("name").as_deref() != Some(name.as_str())
            || s("digest").as_deref() != Some(digest.as_str()))
        .then(|| format!("subject {subject} is not dataset {name}@{digest}")),
        Entity::Trace(id) => {
            let trace = s("trace_id").or_else(|| s("decision_id"));
            (trace.as_deref() != Some(id.as_str()))
                .then(|| format!("subject {subject} is not trace {id}"))
        }
    }
}

/// §5.2, plus our checks: any failure fails; for training, registration and prediction a check
/// 1–3 that could not run fails too; otherwise at least one check must pass.
pub fn overall(v: &ProofVerdict) -> bool {
    let c = &v.checks;
    let all = [
        &v.proof_found,
        &v.data_item,
        &v.key_binding,
        &c.signature,
        &c.anchored_bytes,
        &c.source_of_truth,
        &c.ario_attestation,
    ];
    if v.proof_found.ok != Some(true) || all.iter().any(|k| k.ok == Some(false)) {
        return false;
    }
    let required = matches!(
        v.event_type.as_deref(),
        Some("training_complete" | "model_registered" | "prediction")
    );
    // A superseded training proof has no live state to match (the run moved on, proven by
    // the newer proof); its witness still binds it.
    let live = if v.superseded_by.is_some() {
        vec![&c.signature, &c.anchored_bytes]
    } else {
        vec![&c.signature, &c.anchored_bytes, &c.source_of_truth]
    };
    if required && live.iter().any(|k| k.ok.is_none()) {
        return false;
    }
    c.signature.ok == Some(true)
}

/// The model files whose checksum differs between what was anchored and what the store holds
/// now: `path (changed)`, `path (missing)`, `path (added)`, sorted by path.
fn changed_files(then: &Map<String, Value>, now: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, hash) in then {
        match now.get(path) {
            Some(h) if h == hash => {}
            Some(_) => out.push(format!("{path} (changed)")),
            None => out.push(format!("{path} (missing)")),
        }
    }
    for path in now.keys().filter(|p| !then.contains_key(*p)) {
        out.push(format!("{path} (added)"));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_model_files_are_named() {
        let m = |pairs: &[(&str, &str)]| -> Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect()
        };
        let then = m(&[("MLmodel", "a"), ("model.pkl", "b"), ("gone.txt", "c")]);
        let now = m(&[("MLmodel", "x"), ("model.pkl", "b"), ("new.txt", "d")]);
        assert_eq!(
            changed_files(&then, &now),
            ["MLmodel (changed)", "gone.txt (missing)", "new.txt (added)"]
        );
    }
    use crate::arweave::{ItemSigner, Tag};

    #[test]
    fn served_bytes_are_checked_against_the_signed_item() {
        let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
        let tags = vec![Tag::new("Content-Type", "application/json")];
        let item = DataItem::sign(&signer, tags, b"{\"a\":1}".to_vec(), None, None).unwrap();
        let bytes = item.to_bytes();
        let id = item.id();
        assert_eq!(data_item_check(&id, &bytes, b"{\"a\":1}").ok, Some(true));
        let altered = data_item_check(&id, &bytes, b"{\"a\":2}");
        assert_eq!(altered.ok, Some(false));
        assert!(altered.reason.contains("differ"), "{}", altered.reason);
        assert_eq!(
            data_item_check("x".repeat(43).as_str(), &bytes, b"{\"a\":1}").ok,
            Some(false)
        );
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            data_item_check(&id, &tampered, b"{\"a\":1}").ok,
            Some(false),
            "bad signature"
        );
        let page = data_item_check(&id, b"<html>not found</html>", b"{\"a\":1}");
        assert_eq!(
            page.ok, None,
            "a gateway page is not evidence: {}",
            page.reason
        );
    }

    #[test]
    fn a_proof_about_another_entity_is_refused() {
        let env = serde_json::json!({"subject": {"type": "mlflow_run", "run_id": "r1"}});
        assert!(subject_mismatch(&env, &Entity::Run("r1".into())).is_none());
        assert!(subject_mismatch(&env, &Entity::Run("r2".into())).is_some());
        assert!(subject_mismatch(&env, &Entity::Any).is_none());
        let mv = serde_json::json!({"subject": {"type": "mlflow_model_version", "name": "m", "version": 3}});
        assert!(subject_mismatch(&mv, &Entity::ModelVersion("m".into(), "3".into())).is_none());
        assert!(subject_mismatch(&mv, &Entity::ModelVersion("m".into(), "4".into())).is_some());
    }
}
