//! Canonical payloads, one pure builder per event (spec/mlflow-profile.md §2): fetched MLflow
//! facts in, the payload object out. Byte parity with the `ar-io-mlflow` plugin is the contract;
//! `tests/mlflow_anchor.rs` compares our bytes with the plugin's on a real run.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::mlflow::{Dataset, DatasetInput, Metric, Run};
use crate::proof::{jcs, sha256_hex};

/// Why a payload cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// JSON cannot represent NaN/Infinity, so the plugin's `anchor()` fails on them too.
    #[error("metric {key:?} is {value}; JSON cannot represent it, so the run cannot be anchored until it is fixed")]
    NonFiniteMetric {
        /// Metric name.
        key: String,
        /// Its value.
        value: String,
    },
    /// More than one logged model and no explicit artifact path (the plugin raises too).
    #[error("run logged several models ({0:?}); choose one with --artifact-path")]
    AmbiguousArtifactPath(Vec<String>),
    /// Canonicalization failed.
    #[error("payload cannot be canonicalized: {0}")]
    Jcs(#[from] jcs::JcsError),
}

/// Python's `round(x, ndigits)` for a finite double: round half to even on the *exact* binary
/// value, then back to the nearest double (CPython: `_Py_dg_dtoa` mode 3, then `strtod`).
pub fn python_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // The exact decimal expansion: a double has at most 1074 fraction digits.
    let exact = format!("{:.1080}", x.abs());
    let (int_part, frac) = exact.split_once('.').unwrap_or((&exact, ""));
    let (kept, rest) = frac.split_at(ndigits.min(frac.len()));
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(kept.bytes())
        .map(|b| b - b'0')
        .collect();
    let rest = rest.as_bytes();
    let round_up = match rest.first() {
        Some(b'6'..=b'9') => true,
        Some(b'5') => {
            rest[1..].iter().any(|&d| d != b'0') || digits.last().is_some_and(|d| d % 2 == 1)
        }
        _ => false,
    };
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let (i, f) = text.split_at(text.len() - kept.len());
    let magnitude: f64 = format!(
        "{}.{}e0",
        if i.is_empty() { "0" } else { i },
        if f.is_empty() { "0" } else { f }
    )
    .parse()
    .unwrap_or(x.abs());
    magnitude.copysign(x)
}

/// Latest metric values rounded like the plugin's `normalize_floats(precision=6)`.
pub fn rounded_metrics(metrics: &[Metric]) -> Result<Map<String, Value>, PayloadError> {
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

/// `schema_hash` (§2.0.6): JCS of the parsed schema, else the raw text, else `""`.
pub fn schema_hash(schema: Option<&str>) -> String {
    match schema.filter(|s| !s.is_empty()) {
        None => String::new(),
        Some(text) => match jcs::parse(text.as_bytes()).and_then(|v| jcs::canonicalize(&v)) {
            Ok(canonical) => sha256_hex(&canonical),
            Err(_) => sha256_hex(text.as_bytes()),
        },
    }
}

/// One `dataset_inputs` entry (§2.0.6), `context` from the `mlflow.data.context` input tag.
fn dataset_entry(input: &DatasetInput) -> Value {
    let context = input
        .tags
        .iter()
        .find(|t| t.key == "mlflow.data.context")
        .map(|t| Value::String(t.value.clone()));
    let ds = &input.dataset;
    json!({
        "name": ds.name, "source": ds.source, "source_type": ds.source_type, "digest": ds.digest,
        "schema_hash": schema_hash(ds.schema.as_deref()), "context": context.unwrap_or(Value::Null),
    })
}

/// The sorted `dataset_inputs` list: by (name, source, context, digest), no de-duplication.
pub fn dataset_inputs(inputs: &[DatasetInput]) -> Vec<Value> {
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

/// The training artifact path (§2.0.5): MLflow 2's `mlflow.log-model.history` tag, else the
/// names of MLflow 3 LoggedModel outputs (`logged_model_names`), else `"model"`.
pub fn training_artifact_path(
    run: &Run,
    logged_model_names: &[String],
) -> Result<String, PayloadError> {
    let mut paths: Vec<String> = Vec::new();
    if let Some(history) = run.tag("mlflow.log-model.history") {
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

/// `parse_runs_uri` (§2.0.5): `runs:/<run>/<path>` → (run id, path); anything else → (None, None).
pub fn parse_runs_uri(source: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = source.strip_prefix("runs:/") else {
        return (None, None);
    };
    let rest = rest.trim_start_matches('/');
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match rest.split_once('/') {
        None => (non_empty(rest), None),
        Some((run, path)) => (non_empty(run), non_empty(path)),
    }
}

/// Facts a training payload is built from.
#[derive(Debug, Clone)]
pub struct TrainingFacts<'a> {
    /// The run.
    pub run: &'a Run,
    /// Checksums of the model directory (`{}` when it could not be hashed).
    pub checksums: &'a BTreeMap<String, String>,
}

/// The training payload (§2.1).
pub fn training_payload(facts: &TrainingFacts<'_>) -> Result<Value, PayloadError> {
    let run = facts.run;
    Ok(json!({
        "event_type": "training_complete",
        "run_id": run.info.run_id,
        "params": run.params(),
        "metrics": rounded_metrics(&run.data.metrics)?,
        "artifact_checksums": facts.checksums,
        "source_name": run.tag("mlflow.source.name").unwrap_or(""),
        "git_commit": run.tag("mlflow.source.git.commit").unwrap_or(""),
        "dataset_inputs": dataset_inputs(&run.inputs.dataset_inputs),
    }))
}

/// A standalone dataset payload (§2.2): the dataset identity without `context`.
pub fn dataset_payload(ds: &Dataset) -> Value {
    json!({
        "event_type": "dataset", "name": ds.name, "source": ds.source, "source_type": ds.source_type,
        "digest": ds.digest, "schema_hash": schema_hash(ds.schema.as_deref()),
    })
}

/// The registration payload (§2.4).
pub fn registration_payload(
    model_name: &str,
    model_version: &str,
    source: &str,
    source_run_id: Option<&str>,
    artifact_verified: Option<bool>,
    artifact_hash: Option<&str>,
) -> Value {
    json!({
        "event_type": "model_registered", "model_name": model_name, "model_version": model_version,
        "source_run_id": source_run_id, "source": source, "artifact_verified": artifact_verified,
        "artifact_hash": artifact_hash,
    })
}

/// The stage-transition payload (§2.5).
pub fn promotion_payload(
    model_name: &str,
    model_version: &str,
    from_stage: &str,
    to_stage: &str,
) -> Value {
    json!({
        "event_type": "stage_transition", "model_name": model_name, "model_version": model_version,
        "from_stage": from_stage, "to_stage": to_stage,
    })
}

/// Whether an alias was set (or moved) to a version, or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasAction {
    /// Set or moved onto `model_version`.
    Set,
    /// Removed (`model_version` is the version it pointed at).
    Removed,
}

/// The alias-change payload (our addition to the profile, `event_type` `alias_changed`).
pub fn alias_payload(
    model_name: &str,
    model_version: &str,
    alias: &str,
    action: AliasAction,
    previous_version: Option<&str>,
) -> Value {
    json!({
        "event_type": "alias_changed", "model_name": model_name, "model_version": model_version, "alias": alias,
        "action": match action { AliasAction::Set => "set", AliasAction::Removed => "removed" },
        "previous_version": previous_version,
    })
}

/// `input_hash` (§2.7): the JCS of an object input as is, of anything else wrapped as
/// `{"features": …}`.
pub fn input_hash(input: &Value) -> Result<String, PayloadError> {
    let wrapped = match input {
        Value::Object(_) => input.clone(),
        other => json!({ "features": other }),
    };
    Ok(sha256_hex(&jcs::canonicalize(&wrapped)?))
}

/// `output_hash` (§2.7): the JCS of `{"prediction": output}`.
pub fn output_hash(output: &Value) -> Result<String, PayloadError> {
    Ok(sha256_hex(&jcs::canonicalize(
        &json!({ "prediction": output }),
    )?))
}

/// Facts a prediction payload is built from (an MLflow trace).
#[derive(Debug, Clone)]
pub struct PredictionFacts {
    /// The trace id, used as `decision_id` and `mlflow_trace_id`.
    pub trace_id: String,
    /// Registered model name, or `"unknown"`.
    pub model_name: String,
    /// Model version, or `"unknown"`.
    pub model_version: String,
    /// The model's source run, or `"unknown"`.
    pub run_id: String,
    /// `models:/<name>/<version>`, `models:/<model_id>`, or `"unknown"`.
    pub model_uri: String,
    /// Root span request.
    pub input: Value,
    /// Root span response.
    pub output: Value,
    /// Execution time in ms.
    pub latency_ms: f64,
}

/// The prediction payload (§2.7), from a trace.
pub fn prediction_payload(f: &PredictionFacts) -> Result<Value, PayloadError> {
    Ok(json!({
        "event_type": "prediction", "decision_id": f.trace_id, "model_name": f.model_name,
        "model_version": f.model_version, "run_id": f.run_id, "model_uri": f.model_uri,
        "input_hash": input_hash(&f.input)?, "output_hash": output_hash(&f.output)?,
        "latency_ms": jcs::number(python_round(f.latency_ms, 2))?, "artifact_verified": Value::Null,
        "mlflow_trace_id": f.trace_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlflow::KeyValue;

    #[test]
    fn python_round_is_half_even_on_the_exact_binary_value() {
        assert_eq!(python_round(2.675, 2), 2.67, "2.675 is really 2.67499999…");
        assert_eq!(
            python_round(0.0078125, 6),
            0.007812,
            "an exact tie rounds to even"
        );
        assert_eq!(
            python_round(0.0234375, 6),
            0.023438,
            "an exact tie rounds to even (up)"
        );
        assert_eq!(python_round(0.9733333333, 6), 0.973333);
        assert_eq!(python_round(-1.23456789, 6), -1.234568);
        assert_eq!(
            python_round(999999.9999995, 6),
            999999.999999,
            "just below the tie in binary (Python agrees)"
        );
        assert_eq!(python_round(999999.9999996, 6), 1000000.0);
        assert_eq!(python_round(1e-7, 6), 0.0);
        assert_eq!(python_round(1e300, 6), 1e300);
        assert_eq!(python_round(5e-324, 6), 0.0);
        assert_eq!(python_round(0.5, 0), 0.0);
        assert_eq!(python_round(1.5, 0), 2.0);
    }

    #[test]
    fn non_finite_metrics_are_a_clear_error() {
        let m = |v: f64| {
            vec![Metric {
                key: "loss".into(),
                value: v,
                timestamp: 0,
                step: 0,
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
        let input = |name: &str, ctx: Option<&str>, schema: Option<&str>| DatasetInput {
            tags: ctx
                .map(|c| {
                    vec![KeyValue {
                        key: "mlflow.data.context".into(),
                        value: c.into(),
                    }]
                })
                .unwrap_or_default(),
            dataset: Dataset {
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
    fn runs_uris_and_artifact_paths_resolve_like_the_plugin() {
        assert_eq!(
            parse_runs_uri("runs:/abc/model"),
            (Some("abc".into()), Some("model".into()))
        );
        assert_eq!(
            parse_runs_uri("runs:///abc/sub/dir/"),
            (Some("abc".into()), Some("sub/dir/".into()))
        );
        assert_eq!(parse_runs_uri("runs:/abc"), (Some("abc".into()), None));
        assert_eq!(parse_runs_uri("models:/m-1"), (None, None));
        let mut run = Run::default();
        assert_eq!(training_artifact_path(&run, &[]).unwrap(), "model");
        assert_eq!(
            training_artifact_path(&run, &["clf".into(), "clf".into()]).unwrap(),
            "clf"
        );
        assert!(training_artifact_path(&run, &["a".into(), "b".into()]).is_err());
        run.data.tags.push(KeyValue {
            key: "mlflow.log-model.history".into(),
            value: r#"[{"artifact_path":"sk"}]"#.into(),
        });
        assert_eq!(
            training_artifact_path(&run, &["ignored".into()]).unwrap(),
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

    #[test]
    fn prediction_hashes_match_the_golden_example() {
        assert_eq!(
            input_hash(&json!([78000, 0.18, 0.22, 72, 745])).unwrap(),
            "f985913dd680572d6ba3c6c34df1b35fe0f407900e64d2ee320f858d38d6c523"
        );
        assert_eq!(
            output_hash(&json!([1])).unwrap(),
            "1eee05979bc26e5bc80028d7b598a5ed9e69af39e95bca31376655e31f6d8d1f"
        );
        assert_eq!(
            input_hash(&json!({"q": "hello"})).unwrap(),
            sha256_hex(br#"{"q":"hello"}"#)
        );
    }
}
