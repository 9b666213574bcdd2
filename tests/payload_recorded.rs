//! Payload builders on recorded MLflow 3.17.2 REST responses (`tests/data/mlflow/recorded/`),
//! offline. The training payload is rebuilt from a recorded `runs/get` and must equal, byte for
//! byte, the `ario/payload.json` the ar-io-mlflow plugin wrote for that same run.

use std::path::Path;

use ario_mlflow_worker::mlflow::spans::{any_value, span_attribute};
use ario_mlflow_worker::mlflow::{DatasetInput, ModelVersion, Run};
use ario_mlflow_worker::profile::alias::{self, AliasAction};
use ario_mlflow_worker::profile::prediction::{self, PredictionFacts};
use ario_mlflow_worker::profile::registration::{self, RegistrationFacts};
use ario_mlflow_worker::profile::training::{self, TrainingFacts};
use ario_mlflow_worker::profile::{promotion, PayloadError};
use ario_mlflow_worker::proof::{jcs, sha256_hex};
use serde_json::{json, Value};

fn recorded(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/mlflow/recorded")
            .join(name),
    )
    .unwrap()
}

fn recorded_run() -> Run {
    let v: Value = serde_json::from_slice(&recorded("runs_get_training.json")).unwrap();
    serde_json::from_value(v["run"].clone()).unwrap()
}

#[test]
fn training_payload_from_a_recorded_run_equals_the_plugins_bytes() {
    let run = recorded_run();
    let plugin_bytes = recorded("plugin_payload_training.json");
    let plugin: Value = serde_json::from_slice(&plugin_bytes).unwrap();
    // The checksums are what artifact hashing produced (tested live in tests/mlflow_anchor.rs).
    let checksums = serde_json::from_value(plugin["artifact_checksums"].clone()).unwrap();
    let ours = training::payload(&TrainingFacts {
        run: &run.facts(),
        checksums: &checksums,
    })
    .unwrap();
    assert_eq!(
        jcs::canonicalize_to_string(&ours).unwrap(),
        String::from_utf8(plugin_bytes).unwrap()
    );
    // What made it interesting: unicode params, a half-even tie, two dataset contexts.
    assert_eq!(ours["params"]["ünïcödé-param"], json!("値🚀 ✓"));
    assert_eq!(ours["metrics"]["exact_tie"], json!(0.007812));
    assert_eq!(ours["metrics"]["accuracy"], json!(0.973333));
    assert_eq!(ours["dataset_inputs"].as_array().unwrap().len(), 2);
}

#[test]
fn nan_metrics_in_a_recorded_run_are_a_clear_error() {
    let mut v: Value = serde_json::from_slice(&recorded("runs_get_training.json")).unwrap();
    v["run"]["data"]["metrics"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key": "broken", "value": "NaN", "timestamp": 1, "step": 0}));
    let run: Run = serde_json::from_value(v["run"].clone()).unwrap();
    let err = training::payload(&TrainingFacts {
        run: &run.facts(),
        checksums: &Default::default(),
    })
    .unwrap_err();
    assert!(
        matches!(err, PayloadError::NonFiniteMetric { ref key, .. } if key == "broken"),
        "{err}"
    );
}

#[test]
fn many_dataset_inputs_and_empty_artifact_folders() {
    let mut run = recorded_run();
    let template = run.inputs.dataset_inputs[0].clone();
    run.inputs.dataset_inputs = (0..60)
        .rev()
        .map(|i| {
            let mut d: DatasetInput = template.clone();
            d.dataset.name = format!("ds-{:02}", i % 20);
            d.dataset.digest = format!("{i:08x}");
            d
        })
        .collect();
    let empty = Default::default();
    let p = training::payload(&TrainingFacts {
        run: &run.facts(),
        checksums: &empty,
    })
    .unwrap();
    let names: Vec<(String, String)> = p["dataset_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 60, "no de-duplication");
    assert_eq!(names, sorted, "sorted by (name, source, context, digest)");
    assert_eq!(p["artifact_checksums"], json!({}));
    assert_eq!(
        training::artifact_hash(&empty),
        None,
        "no ario.artifact_hash for an empty tree"
    );
}

#[test]
fn registration_payload_from_a_recorded_model_version() {
    let v: Value = serde_json::from_slice(&recorded("model_version_get.json")).unwrap();
    let mv: ModelVersion = serde_json::from_value(v["model_version"].clone()).unwrap();
    assert!(
        mv.source.starts_with("models:/m-"),
        "MLflow 3 records the LoggedModel as the source"
    );
    let (run_from_source, path) = registration::parse_runs_uri(&mv.source);
    assert_eq!((run_from_source, path), (None, None));
    let p = registration::payload(&RegistrationFacts {
        model_name: &mv.name,
        model_version: &mv.version,
        source: &mv.source,
        source_run_id: Some(&mv.run_id),
        artifact_verified: Some(true),
        artifact_hash: Some("ab"),
        artifact_checksums: None,
    });
    assert_eq!(
        jcs::canonicalize_to_string(&p).unwrap(),
        format!(
            r#"{{"artifact_hash":"ab","artifact_verified":true,"event_type":"model_registered","model_name":"{}","model_version":"1","source":"{}","source_run_id":"{}"}}"#,
            mv.name, mv.source, mv.run_id
        )
    );
    let nulls = registration::payload(&RegistrationFacts {
        model_name: "m",
        model_version: "2",
        source: "s3://x",
        source_run_id: None,
        artifact_verified: None,
        artifact_hash: None,
        artifact_checksums: None,
    });
    assert_eq!(nulls["source_run_id"], Value::Null);
    assert_eq!(nulls["artifact_verified"], Value::Null);
}

#[test]
fn promotion_and_alias_payloads() {
    let p = promotion::payload("m/with/slash", "3", "None", "Production");
    assert_eq!(
        jcs::canonicalize_to_string(&p).unwrap(),
        r#"{"event_type":"stage_transition","from_stage":"None","model_name":"m/with/slash","model_version":"3","to_stage":"Production"}"#
    );
    let a = alias::payload("m", "2", "champion", AliasAction::Set, Some("1"));
    assert_eq!(
        jcs::canonicalize_to_string(&a).unwrap(),
        r#"{"action":"set","alias":"champion","event_type":"alias_changed","model_name":"m","model_version":"2","previous_version":"1"}"#
    );
    assert_eq!(
        alias::payload("m", "2", "champion", AliasAction::Removed, None)["action"],
        json!("removed")
    );
}

#[test]
fn prediction_payload_from_a_recorded_trace() {
    let v: Value = serde_json::from_slice(&recorded("trace_get.json")).unwrap();
    let spans = v["trace"]["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| {
            s.get("parent_span_id")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .unwrap();
    let input = span_attribute(root, "mlflow.spanInputs").unwrap();
    let output = span_attribute(root, "mlflow.spanOutputs").unwrap();
    assert_eq!(input, json!({"features": [0.1, 0.2, 0.3]}));
    // The trace's own preview agrees with the decoded span attributes.
    let preview: Value = serde_json::from_str(
        v["trace"]["trace_info"]["trace_metadata"]["mlflow.traceInputs"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(preview, input);
    let trace_id = v["trace"]["trace_info"]["trace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let facts = PredictionFacts {
        trace_id: trace_id.clone(),
        model_name: "unknown".into(),
        model_version: "unknown".into(),
        run_id: "unknown".into(),
        model_uri: "unknown".into(),
        input: input.clone(),
        output: output.clone(),
        latency_ms: 1.23456,
    };
    let p = prediction::payload(&facts).unwrap();
    assert_eq!(p["decision_id"], json!(trace_id));
    assert_eq!(
        p["input_hash"],
        json!(sha256_hex(br#"{"features":[0.1,0.2,0.3]}"#))
    );
    assert_eq!(
        p["output_hash"],
        json!(sha256_hex(
            format!(
                r#"{{"prediction":{}}}"#,
                jcs::canonicalize_to_string(&output).unwrap()
            )
            .as_bytes()
        ))
    );
    assert_eq!(p["latency_ms"], json!(1.23));
    assert_eq!(any_value(&json!({"int_value": "42"})), json!(42));
}
