//! Training events (spec/mlflow-profile.md §2.1): a run that reached FINISHED, with its params,
//! latest metrics, model checksums and dataset inputs. Chained on the training chain of
//! docs/architecture.md §2, whose head is mirrored to [`CHAIN_HEAD_TAG`].

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::dataset::{schema_hash, DatasetFacts};
use super::round::python_round;
use super::PayloadError;
use crate::proof::{jcs, sha256_hex};

/// Envelope `event_type`.
pub const EVENT_TYPE: &str = "training_complete";
/// The canonical payload, under the run's artifact root.
pub const PAYLOAD_ARTIFACT: &str = "ario/payload.json";
/// The signed envelope.
pub const PROOF_ARTIFACT: &str = "ario/proof.json";
/// The upload receipt.
pub const RECEIPT_ARTIFACT: &str = "ario/receipt.json";
/// Where an earlier training proof of a run that was re-opened and finished again keeps its
/// witness (`ario/trainings/<event_id>/…`): `ario/payload.json` always holds the newest proof's,
/// the one `ario.training_tx` names, so both verifiers check the run's final state.
pub const SUPERSEDED_DIR: &str = "trainings";
/// Run tag (ours): the run's `end_time` (ms) when its newest training proof was signed, so a
/// run finished again later is told apart from the one anchored.
pub const END_TIME_TAG: &str = "ario.training_end_time";
/// Run tag: the training TX.
pub const TX_TAG: &str = "ario.training_tx";
/// Registered-model or experiment tag: the payload hash of the chain's newest training event.
pub const CHAIN_HEAD_TAG: &str = "ario.last_training_hash";
/// MLflow 2's run tag listing logged models.
pub const LOG_MODEL_HISTORY_TAG: &str = "mlflow.log-model.history";
/// Dataset-input tag naming the input's role (`training`, `eval`, …).
pub const DATASET_CONTEXT_TAG: &str = "mlflow.data.context";

/// A metric's latest value.
#[derive(Debug, Clone, PartialEq)]
pub struct LatestMetric {
    /// Metric name.
    pub key: String,
    /// Latest value (NaN and ±Infinity are refused by [`payload`]).
    pub value: f64,
}

/// One dataset input of a run: the dataset and its `mlflow.data.context` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetUse {
    /// The dataset.
    pub dataset: DatasetFacts,
    /// The input's context tag, when set.
    pub context: Option<String>,
}

/// What a training payload reads of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFacts {
    /// Run id.
    pub run_id: String,
    /// Params (MLflow keeps one value per key).
    pub params: BTreeMap<String, String>,
    /// Latest metric values, in MLflow's order (a repeated key keeps the last).
    pub metrics: Vec<LatestMetric>,
    /// The `mlflow.source.name` tag, or `""`.
    pub source_name: String,
    /// The `mlflow.source.git.commit` tag, or `""`.
    pub git_commit: String,
    /// The run's dataset inputs, in MLflow's order.
    pub dataset_inputs: Vec<DatasetUse>,
}

/// Facts a training payload is built from.
#[derive(Debug, Clone)]
pub struct TrainingFacts<'a> {
    /// The run.
    pub run: &'a RunFacts,
    /// Checksums of the model directory.
    pub checksums: &'a BTreeMap<String, String>,
}

/// Latest metric values rounded like the plugin's `normalize_floats(precision=6)`.
pub fn rounded_metrics(metrics: &[LatestMetric]) -> Result<Map<String, Value>, PayloadError> {
    let mut out = Map::new();
    for m in metrics {
        if !m.value.is_finite() {
            return Err(PayloadError::NonFiniteMetric {
                key: m.key.clone(),
                value: m.value.to_string(),
            });
        }
        out.insert(m.key.clone(), jcs::number(python_round(m.value, 6))?);
    }
    Ok(out)
}

/// One `dataset_inputs` entry (§2.0.6).
fn dataset_entry(input: &DatasetUse) -> Value {
    let ds = &input.dataset;
    json!({
        "name": ds.name, "source": ds.source, "source_type": ds.source_type, "digest": ds.digest,
        "schema_hash": schema_hash(ds.schema.as_deref()),
        "context": input.context.clone().map(Value::String).unwrap_or(Value::Null),
    })
}

/// The sorted `dataset_inputs` list: by (name, source, context, digest), no de-duplication.
pub fn dataset_inputs(inputs: &[DatasetUse]) -> Vec<Value> {
    let mut entries: Vec<Value> = inputs.iter().map(dataset_entry).collect();
    let key = |v: &Value| -> [String; 4] {
        ["name", "source", "context", "digest"].map(|k| v[k].as_str().unwrap_or("").to_string())
    };
    entries.sort_by_key(key);
    entries
}

/// `ario.artifact_hash`: SHA-256 of the JCS of the checksum map, only when it is non-empty.
pub fn artifact_hash(checksums: &BTreeMap<String, String>) -> Option<String> {
    if checksums.is_empty() {
        return None;
    }
    let map: Map<String, Value> = checksums
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    jcs::canonicalize(&Value::Object(map))
        .ok()
        .map(|bytes| sha256_hex(&bytes))
}

/// The training artifact path (§2.0.5): MLflow 2's `mlflow.log-model.history` tag (its text is
/// `log_model_history`), else the names of MLflow 3 LoggedModel outputs (`logged_model_names`),
/// else `"model"`.
pub fn artifact_path(
    log_model_history: Option<&str>,
    logged_model_names: &[String],
) -> Result<String, PayloadError> {
    let mut paths: Vec<String> = Vec::new();
    if let Some(history) = log_model_history {
        if let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(history) {
            for e in entries {
                if let Some(p) = e["artifact_path"].as_str().filter(|p| !p.is_empty()) {
                    paths.push(p.to_string());
                }
            }
        }
    }
    if paths.is_empty() {
        paths.extend(logged_model_names.iter().filter(|n| !n.is_empty()).cloned());
    }
    let mut unique: Vec<String> = Vec::new();
    for p in paths {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    match unique.len() {
        0 => Ok("model".into()),
        1 => Ok(unique.remove(0)),
        _ => Err(PayloadError::AmbiguousArtifactPath(unique)),
    }
}

/// The training payload (§2.1).
pub fn payload(facts: &TrainingFacts<'_>) -> Result<Value, PayloadError> {
    let run = facts.run;
    Ok(json!({
        "event_type": EVENT_TYPE,
        "run_id": run.run_id,
        "params": run.params,
        "metrics": rounded_metrics(&run.metrics)?,
        "artifact_checksums": facts.checksums,
        "source_name": run.source_name,
        "git_commit": run.git_commit,
        "dataset_inputs": dataset_inputs(&run.dataset_inputs),
    }))
}

/// `ario/trainings/<event_id>/<file>`: the witness of a superseded training proof.
pub fn superseded_path(event_id: &str, file: &str) -> String {
    super::witness::per_event_path(SUPERSEDED_DIR, event_id, file)
}

/// The payload keys a re-opened run can change (what [`payload`] reads of the run, without the
/// artifact checksums): comparing them with an anchored payload tells whether the run changed
/// since, without re-hashing its model.
pub const RUN_STATE_KEYS: [&str; 5] = [
    "params",
    "metrics",
    "source_name",
    "git_commit",
    "dataset_inputs",
];

/// The keys of [`RUN_STATE_KEYS`] whose anchored value differs from the live one (a key the
/// anchored payload does not have is not compared, as the plugin's check 3).
pub fn changed_run_state(anchored: &Value, live: &Value) -> Vec<&'static str> {
    RUN_STATE_KEYS
        .into_iter()
        .filter(|k| {
            anchored.get(*k).is_some()
                && jcs::canonicalize(&anchored[*k]).ok() != jcs::canonicalize(&live[*k]).ok()
        })
        .collect()
}

/// The envelope subject.
pub fn subject(run_id: &str) -> Value {
    json!({"type": "mlflow_run", "run_id": run_id})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_metrics_are_a_clear_error() {
        let m = |v: f64| {
            vec![LatestMetric {
                key: "loss".into(),
                value: v,
            }]
        };
        assert!(matches!(
            rounded_metrics(&m(f64::NAN)),
            Err(PayloadError::NonFiniteMetric { .. })
        ));
        assert!(rounded_metrics(&m(f64::INFINITY))
            .unwrap_err()
            .to_string()
            .contains("loss"));
        assert_eq!(rounded_metrics(&m(1.0)).unwrap()["loss"], json!(1.0));
    }

    #[test]
    fn dataset_inputs_sort_and_hash_schemas_like_the_plugin() {
        let input = |name: &str, ctx: Option<&str>, schema: Option<&str>| DatasetUse {
            context: ctx.map(str::to_owned),
            dataset: DatasetFacts {
                name: name.into(),
                digest: "d".into(),
                source_type: "local".into(),
                source: "{}".into(),
                schema: schema.map(str::to_owned),
            },
        };
        let list = dataset_inputs(&[
            input("b", Some("eval"), Some("not json")),
            input("a", None, None),
            input("b", Some("training"), Some(r#"{"x": [1]}"#)),
        ]);
        let names: Vec<(&str, &Value)> = list
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), &v["context"]))
            .collect();
        assert_eq!(
            names,
            [
                ("a", &Value::Null),
                ("b", &json!("eval")),
                ("b", &json!("training"))
            ]
        );
        assert_eq!(list[0]["schema_hash"], json!(""));
        assert_eq!(list[1]["schema_hash"], json!(sha256_hex(b"not json")));
        assert_eq!(list[2]["schema_hash"], json!(sha256_hex(br#"{"x":[1]}"#)));
    }

    #[test]
    fn run_state_changes_are_named_and_formatting_is_not_a_change() {
        let anchored = json!({"params": {"a": "1"}, "metrics": {"m": 1.0}, "source_name": "",
            "git_commit": "", "artifact_checksums": {"x": "1"}});
        let same = json!({"params": {"a": "1"}, "metrics": {"m": 1}, "source_name": "",
            "git_commit": "", "dataset_inputs": [], "artifact_checksums": {"x": "2"}});
        assert!(
            changed_run_state(&anchored, &same).is_empty(),
            "checksums and absent keys are not compared"
        );
        let more = json!({"params": {"a": "1"}, "metrics": {"m": 1, "eval": 0.5}, "source_name": "",
            "git_commit": ""});
        assert_eq!(changed_run_state(&anchored, &more), ["metrics"]);
    }

    #[test]
    fn artifact_paths_resolve_like_the_plugin() {
        assert_eq!(artifact_path(None, &[]).unwrap(), "model");
        assert_eq!(
            artifact_path(None, &["clf".into(), "clf".into()]).unwrap(),
            "clf"
        );
        assert!(artifact_path(None, &["a".into(), "b".into()]).is_err());
        assert_eq!(
            artifact_path(Some(r#"[{"artifact_path":"sk"}]"#), &["ignored".into()]).unwrap(),
            "sk"
        );
    }

    #[test]
    fn artifact_hash_matches_the_golden_example() {
        let map: BTreeMap<String, String> = [
            (
                "MLmodel",
                "088f2db249a81e5458e71ac2fd2330fd43c39e389e8f35ed8262b338fa0cd9c6",
            ),
            (
                "model.pkl",
                "32ad9eb9527f0f606ecf7c35c7dd5d734d2f563968a98f0ef3695a3c77427fa0",
            ),
            (
                "requirements.txt",
                "b6ab5e88e450b666e6d60fdaa36f33f5962c592b8862c42d409442030549fc26",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            artifact_hash(&map).as_deref(),
            Some("14c277ee735b66690dede9eaae6ddef9ecb726b55b6ead61b8c36fd265114ed4")
        );
        assert_eq!(artifact_hash(&BTreeMap::new()), None);
    }
}
