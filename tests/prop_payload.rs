//! Property suite: MLflow responses → entities → the profile's payloads.
//!
//! - arbitrary JSON for each MLflow entity (runs, metrics, datasets, model versions, registered
//!   and logged models, trace infos), and arbitrary bytes, decode to the entity or to an error,
//!   never a panic;
//! - arbitrary run / version / trace JSON shaped like MLflow's (fields missing, of the wrong
//!   type, NaN and ±Infinity metrics, huge numbers, unicode keys, up to 10,000 params) yields a
//!   payload that canonicalizes, or a typed error — and the error is the one the input deserves
//!   (a non-finite metric, an ambiguous model path, nesting JCS refuses), nothing else.

#[path = "prop_support/mod.rs"]
mod prop_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ario_mlflow_worker::mlflow::spans::{root_span, span_attribute, span_latency_ms};
use ario_mlflow_worker::mlflow::{
    Alias, Dataset, DatasetInput, KeyValue, LoggedModel, Metric, ModelVersion, RegisteredModel,
    Run, TraceInfo,
};
use ario_mlflow_worker::profile::alias::{self, AliasAction};
use ario_mlflow_worker::profile::prediction::{self, PredictionFacts};
use ario_mlflow_worker::profile::registration::{self, RegistrationFacts};
use ario_mlflow_worker::profile::training::{self, TrainingFacts};
use ario_mlflow_worker::profile::{dataset, promotion, PayloadError};
use ario_mlflow_worker::proof::jcs::{self, JcsError};
use prop_support::{
    any_string, cases, check, field, json_number, json_string, json_value, object, present,
};
use proptest::prelude::*;
use serde_json::{json, Value};

/// A field: with `chaos`, sometimes of any type at all; without, the right type or missing.
fn fld<S>(chaos: bool, right: S) -> BoxedStrategy<Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    if chaos {
        field(right).boxed()
    } else {
        present(right).boxed()
    }
}

/// A field MLflow always sends (a metric's or tag's `key`, a metric's `value`): present unless
/// chaotic.
fn req<S>(chaos: bool, right: S) -> BoxedStrategy<Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    if chaos {
        field(right).boxed()
    } else {
        right.prop_map(Some).boxed()
    }
}

/// Well-formed entities (fields right or missing) three times in four, chaotic ones otherwise.
fn either<S: Strategy<Value = Value> + 'static>(make: impl Fn(bool) -> S) -> BoxedStrategy<Value> {
    prop_oneof![3 => make(false).boxed(), 1 => make(true).boxed()].boxed()
}

fn text() -> impl Strategy<Value = Value> {
    json_string(16)
}

fn key_value(chaos: bool, keys: Vec<&'static str>) -> impl Strategy<Value = Value> {
    (
        req(
            chaos,
            prop_oneof![
                3 => text(),
                1 => prop::sample::select(keys).prop_map(|k| json!(k)),
            ],
        ),
        fld(chaos, text()),
    )
        .prop_map(|(k, v)| object(vec![("key", k), ("value", v)]))
}

fn metric_value(chaos: bool) -> BoxedStrategy<Value> {
    if chaos {
        prop_oneof![
            6 => json_number(),
            1 => prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "1e400", "0x1p3", "", "3.5"])
                .prop_map(|s| json!(s)),
            1 => text(),
        ]
        .boxed()
    } else {
        // What MLflow sends: a number, or protobuf JSON's names for the non-finite ones.
        prop_oneof![
            12 => json_number(),
            1 => prop::sample::select(vec!["NaN", "Infinity", "-Infinity"]).prop_map(|s| json!(s)),
        ]
        .boxed()
    }
}

/// An integer field (timestamps, steps): any JSON number when chaotic.
fn int(chaos: bool) -> BoxedStrategy<Value> {
    if chaos {
        json_number().boxed()
    } else {
        any::<i64>().prop_map(Value::from).boxed()
    }
}

fn metric(chaos: bool) -> impl Strategy<Value = Value> {
    (
        req(chaos, text()),
        req(chaos, metric_value(chaos)),
        fld(chaos, int(chaos)),
        fld(chaos, int(chaos)),
    )
        .prop_map(|(k, v, t, s)| {
            object(vec![
                ("key", k),
                ("value", v),
                ("timestamp", t),
                ("step", s),
            ])
        })
}

fn schema_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(3).prop_map(|v| json!(serde_json::to_string(&v).unwrap_or_default())),
        text(),
        Just(Value::Null),
    ]
}

fn dataset_json(chaos: bool) -> impl Strategy<Value = Value> {
    (
        fld(chaos, text()),
        fld(chaos, text()),
        fld(chaos, text()),
        fld(chaos, text()),
        fld(chaos, schema_text()),
    )
        .prop_map(|(n, d, st, s, sc)| {
            object(vec![
                ("name", n),
                ("digest", d),
                ("source_type", st),
                ("source", s),
                ("schema", sc),
            ])
        })
}

fn dataset_input_json(chaos: bool) -> impl Strategy<Value = Value> {
    (
        fld(
            chaos,
            proptest::collection::vec(key_value(chaos, vec!["mlflow.data.context"]), 0..3)
                .prop_map(Value::Array),
        ),
        fld(chaos, dataset_json(chaos)),
    )
        .prop_map(|(t, d)| object(vec![("tags", t), ("dataset", d)]))
}

fn history_text() -> impl Strategy<Value = Value> {
    prop_oneof![
        proptest::collection::vec(
            prop_oneof![
                text().prop_map(|p| json!({"artifact_path": p})),
                json_value(2),
            ],
            0..3
        )
        .prop_map(|entries| json!(serde_json::to_string(&entries).unwrap_or_default())),
        text(),
    ]
}

/// Params: a few drawn ones, or 10,000 made from a seed.
fn params(chaos: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => proptest::collection::vec(key_value(chaos, vec!["lr", "ünï"]), 0..12).prop_map(Value::Array),
        1 => any::<u64>().prop_map(|seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            Value::Array(
                (0..10_000)
                    .map(|i| json!({"key": format!("p{i}-{}", rng.u32(..)), "value": rng.u64(..).to_string()}))
                    .collect(),
            )
        }),
    ]
}

fn run_json(chaos: bool) -> impl Strategy<Value = Value> {
    let info = (
        fld(chaos, text()),
        fld(chaos, text()),
        fld(
            chaos,
            prop_oneof![Just(json!("FINISHED")), Just(json!("RUNNING")), text()],
        ),
        fld(chaos, text()),
        fld(chaos, int(chaos)),
    )
        .prop_map(|(id, exp, status, uri, start)| {
            object(vec![
                ("run_id", id),
                ("experiment_id", exp),
                ("status", status),
                ("artifact_uri", uri),
                ("start_time", start),
            ])
        });
    let tags = (
        proptest::collection::vec(
            key_value(
                chaos,
                vec!["mlflow.source.name", "mlflow.source.git.commit"],
            ),
            0..4,
        ),
        proptest::option::of(history_text()),
    )
        .prop_map(|(mut tags, history)| {
            if let Some(h) = history {
                tags.push(json!({"key": training::LOG_MODEL_HISTORY_TAG, "value": h}));
            }
            Value::Array(tags)
        });
    let data = (
        fld(chaos, params(chaos)),
        fld(
            chaos,
            proptest::collection::vec(metric(chaos), 0..8).prop_map(Value::Array),
        ),
        fld(chaos, tags),
    )
        .prop_map(|(p, m, t)| object(vec![("params", p), ("metrics", m), ("tags", t)]));
    let inputs = fld(
        chaos,
        proptest::collection::vec(dataset_input_json(chaos), 0..4).prop_map(Value::Array),
    )
    .prop_map(|d| object(vec![("dataset_inputs", d)]));
    let outputs = fld(
        chaos,
        proptest::collection::vec(
            fld(chaos, text()).prop_map(|m| object(vec![("model_id", m)])),
            0..3,
        )
        .prop_map(Value::Array),
    )
    .prop_map(|m| object(vec![("model_outputs", m)]));
    (
        fld(chaos, info),
        fld(chaos, data),
        fld(chaos, inputs),
        fld(chaos, outputs),
    )
        .prop_map(|(i, d, inp, out)| {
            object(vec![
                ("info", i),
                ("data", d),
                ("inputs", inp),
                ("outputs", out),
            ])
        })
}

fn checksums() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(any_string(12), "[0-9a-f]{64}", 0..5)
}

/// How the generated inputs ended, printed so a suite that only ever hits one branch shows.
#[derive(Default)]
struct Outcomes {
    undecodable: AtomicUsize,
    payloads: AtomicUsize,
    refused: AtomicUsize,
}

impl Outcomes {
    fn print(&self, what: &str) {
        println!(
            "  {what}: {} undecodable, {} payloads built, {} refused with the typed error",
            self.undecodable.load(Relaxed),
            self.payloads.load(Relaxed),
            self.refused.load(Relaxed)
        );
    }
}

#[test]
fn training_payloads_from_arbitrary_runs_canonicalize_or_fail_for_a_reason() {
    let seen = Outcomes::default();
    check(
        "training payload from arbitrary run JSON",
        cases(1),
        (
            either(run_json),
            checksums(),
            proptest::collection::vec(text(), 0..3),
        ),
        |(json, checksums, logged_names)| {
            let Ok(run) = serde_json::from_value::<Run>(json) else {
                seen.undecodable.fetch_add(1, Relaxed);
                return Ok(());
            };
            let facts = run.facts();
            let result = training::payload(&TrainingFacts {
                run: &facts,
                checksums: &checksums,
            });
            let has_non_finite = run.data.metrics.iter().any(|m| !m.value.is_finite());
            match result {
                Ok(p) => {
                    seen.payloads.fetch_add(1, Relaxed);
                    prop_assert!(!has_non_finite, "a non-finite metric was signed");
                    let bytes = jcs::canonicalize(&p)
                        .map_err(|e| TestCaseError::fail(format!("payload: {e}")))?;
                    prop_assert!(!bytes.is_empty());
                    prop_assert_eq!(p["run_id"].as_str(), Some(run.info.run_id.as_str()));
                    prop_assert_eq!(
                        p["params"].as_object().map(|m| m.len()),
                        Some(run.params().len())
                    );
                    for m in &run.data.metrics {
                        prop_assert!(p["metrics"][&m.key].is_number(), "metric {}", m.key);
                    }
                    prop_assert_eq!(
                        p["dataset_inputs"].as_array().map(Vec::len),
                        Some(run.inputs.dataset_inputs.len())
                    );
                    prop_assert_eq!(
                        training::artifact_hash(&checksums).is_some(),
                        !checksums.is_empty()
                    );
                }
                Err(PayloadError::NonFiniteMetric { key, .. }) => {
                    seen.refused.fetch_add(1, Relaxed);
                    prop_assert!(has_non_finite, "NonFiniteMetric({}) without one", key);
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected: {other}"))),
            }
            for input in &run.inputs.dataset_inputs {
                let facts = input.dataset.facts();
                prop_assert!(jcs::canonicalize(&dataset::payload(&facts)).is_ok());
                prop_assert!(jcs::canonicalize(&dataset::subject(&facts)).is_ok());
            }
            let names: Vec<String> = logged_names
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            match training::artifact_path(run.tag(training::LOG_MODEL_HISTORY_TAG), &names) {
                Ok(path) => prop_assert!(!path.is_empty()),
                Err(PayloadError::AmbiguousArtifactPath(paths)) => {
                    prop_assert!(paths.len() >= 2)
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected: {other}"))),
            }
            Ok(())
        },
    );
    seen.print("runs");
}

fn model_version_json(chaos: bool) -> impl Strategy<Value = Value> {
    (
        fld(chaos, text()),
        fld(
            chaos,
            prop_oneof![(0u32..100).prop_map(|v| json!(v.to_string())), text()],
        ),
        fld(
            chaos,
            prop_oneof![
                prop::sample::select(vec!["None", "Staging", "Production", "Archived"])
                    .prop_map(|s| json!(s)),
                text()
            ],
        ),
        fld(
            chaos,
            prop_oneof![
                "[a-z0-9]{0,8}".prop_map(|r| json!(format!("runs:/{r}/model"))),
                "[a-z0-9/]{0,12}".prop_map(|r| json!(format!("runs:/{r}"))),
                "[a-z0-9-]{0,8}".prop_map(|m| json!(format!("models:/{m}"))),
                text(),
            ],
        ),
        fld(
            chaos,
            prop_oneof!["[a-z0-9]{0,8}".prop_map(|r| json!(r)), text()],
        ),
        fld(
            chaos,
            proptest::collection::vec(key_value(chaos, vec!["ario.registration_tx"]), 0..3)
                .prop_map(Value::Array),
        ),
        fld(
            chaos,
            proptest::collection::vec(text(), 0..3).prop_map(Value::Array),
        ),
        fld(chaos, int(chaos)),
    )
        .prop_map(|(n, v, stage, source, run_id, tags, aliases, updated)| {
            object(vec![
                ("name", n),
                ("version", v),
                ("current_stage", stage),
                ("source", source),
                ("run_id", run_id),
                ("tags", tags),
                ("aliases", aliases),
                ("last_updated_timestamp", updated),
            ])
        })
}

#[test]
fn version_payloads_from_arbitrary_versions_canonicalize() {
    check(
        "registration/promotion/alias payloads from arbitrary version JSON",
        cases(1),
        (
            either(model_version_json),
            proptest::option::of(any::<bool>()),
            proptest::option::of("[0-9a-f]{64}"),
            any_string(8),
            text(),
        ),
        |(json, verified, hash, alias_name, from_stage)| {
            let Ok(mv) = serde_json::from_value::<ModelVersion>(json) else {
                return Ok(());
            };
            let source_run =
                registration::source_run(&mv.name, &mv.version, &mv.run_id, &mv.source);
            let (from_source, _) = registration::parse_runs_uri(&mv.source);
            match &source_run {
                Ok(Some(run)) => prop_assert!(
                    *run == mv.run_id || Some(run) == from_source.as_ref(),
                    "source run {} is neither run_id nor the runs:/ source",
                    run
                ),
                Ok(None) => prop_assert!(mv.run_id.is_empty() && from_source.is_none()),
                Err(e) => prop_assert!(
                    !mv.run_id.is_empty() && from_source.as_deref().is_some_and(|s| s != mv.run_id),
                    "mismatch reported without one: {}",
                    e
                ),
            }
            let registration = registration::payload(&RegistrationFacts {
                model_name: &mv.name,
                model_version: &mv.version,
                source: &mv.source,
                source_run_id: source_run.ok().flatten().as_deref(),
                artifact_verified: verified,
                artifact_hash: hash.as_deref(),
                artifact_checksums: None,
            });
            prop_assert!(jcs::canonicalize(&registration).is_ok());
            prop_assert!(jcs::canonicalize(&registration::subject(&mv.name, &mv.version)).is_ok());
            let from = from_stage.as_str().unwrap_or("None");
            let promotion = promotion::payload(&mv.name, &mv.version, from, &mv.current_stage);
            prop_assert!(jcs::canonicalize(&promotion).is_ok());
            for action in [AliasAction::Set, AliasAction::Removed] {
                let a = alias::payload(&mv.name, &mv.version, &alias_name, action, Some(from));
                prop_assert!(jcs::canonicalize(&a).is_ok());
            }
            prop_assert!(
                jcs::canonicalize(&alias::subject(&mv.name, &alias_name, &mv.version)).is_ok()
            );
            Ok(())
        },
    );
}

/// An OTLP `AnyValue` as MLflow 3 writes span attributes, nested up to `depth`.
fn any_value_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        text().prop_map(|s| json!({"string_value": s})),
        any::<bool>().prop_map(|b| json!({"bool_value": b})),
        prop_oneof![
            any::<i64>().prop_map(|i| json!(i.to_string())),
            text(),
            json_number()
        ]
        .prop_map(|i| json!({"int_value": i})),
        json_number().prop_map(|d| json!({"double_value": d})),
        json_value(2),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5)
                .prop_map(|vs| json!({"array_value": {"values": vs}})),
            proptest::collection::vec((text(), inner), 0..5).prop_map(|kvs| {
                let values: Vec<Value> = kvs
                    .into_iter()
                    .map(|(k, v)| json!({"key": k, "value": v}))
                    .collect();
                json!({"kvlist_value": {"values": values}})
            }),
        ]
    })
}

fn span_json(chaos: bool) -> impl Strategy<Value = Value> {
    let attrs = prop_oneof![
        proptest::collection::vec(
            (
                prop_oneof![
                    Just(json!("mlflow.spanInputs")),
                    Just(json!("mlflow.spanOutputs")),
                    text()
                ],
                any_value_json()
            )
                .prop_map(|(k, v)| json!({"key": k, "value": v})),
            0..4
        )
        .prop_map(Value::Array),
        // MLflow 2.x style: JSON-encoded strings in an object.
        (json_value(3), json_value(3)).prop_map(|(i, o)| json!({
            "mlflow.spanInputs": serde_json::to_string(&i).unwrap_or_default(),
            "mlflow.spanOutputs": o,
        })),
        json_value(2),
    ];
    let nanos = || {
        prop_oneof![
            any::<u64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n.to_string())),
            text(),
        ]
    };
    (
        fld(chaos, prop_oneof![Just(json!("")), text()]),
        fld(chaos, attrs),
        fld(chaos, nanos()),
        fld(chaos, nanos()),
    )
        .prop_map(|(parent, attrs, start, end)| {
            object(vec![
                ("parent_span_id", parent),
                ("attributes", attrs),
                ("start_time_unix_nano", start),
                ("end_time_unix_nano", end),
            ])
        })
}

fn trace_info_json(chaos: bool) -> impl Strategy<Value = Value> {
    let string_map = || {
        proptest::collection::btree_map(
            prop_oneof![Just("mlflow.modelId".to_string()), any_string(8)],
            any_string(12),
            0..4,
        )
        .prop_map(|m| json!(m))
    };
    (
        fld(chaos, text()),
        fld(
            chaos,
            prop_oneof![finite_seconds().prop_map(|s| json!(s)), text(),],
        ),
        fld(
            chaos,
            prop_oneof![Just(json!("OK")), Just(json!("IN_PROGRESS")), text()],
        ),
        fld(chaos, string_map()),
        fld(chaos, string_map()),
    )
        .prop_map(|(id, duration, state, metadata, tags)| {
            object(vec![
                ("trace_id", id),
                ("execution_duration", duration),
                ("state", state),
                ("trace_metadata", metadata),
                ("tags", tags),
            ])
        })
}

/// `execution_duration` as protobuf JSON writes it (`"1.5s"`), and some that are not.
fn finite_seconds() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100_000, 0u32..1_000_000).prop_map(|(s, n)| format!("{s}.{n:06}s")),
        Just("infs".to_string()),
        Just("NaNs".to_string()),
        Just("1e400s".to_string()),
        "[0-9.e+-]{0,8}s",
    ]
}

#[test]
fn prediction_payloads_from_arbitrary_traces_canonicalize_or_fail_for_a_reason() {
    let seen = Outcomes::default();
    check(
        "prediction payload from arbitrary trace JSON",
        cases(1),
        (
            either(trace_info_json),
            proptest::collection::vec(either(span_json), 0..4),
        ),
        |(info_json, spans)| {
            let Ok(info) = serde_json::from_value::<TraceInfo>(info_json) else {
                seen.undecodable.fetch_add(1, Relaxed);
                return Ok(());
            };
            let Some(root) = root_span(&spans) else {
                seen.undecodable.fetch_add(1, Relaxed);
                return Ok(());
            };
            let input = span_attribute(root, "mlflow.spanInputs").unwrap_or(Value::Null);
            let output = span_attribute(root, "mlflow.spanOutputs").unwrap_or(Value::Null);
            let latency_ms = span_latency_ms(root)
                .or_else(|| info.execution_ms())
                .unwrap_or(0.0);
            let facts = PredictionFacts {
                trace_id: info.trace_id.clone(),
                model_name: prediction::UNKNOWN.into(),
                model_version: prediction::UNKNOWN.into(),
                run_id: prediction::UNKNOWN.into(),
                model_uri: prediction::UNKNOWN.into(),
                input,
                output,
                latency_ms,
            };
            match prediction::payload(&facts) {
                Ok(p) => {
                    seen.payloads.fetch_add(1, Relaxed);
                    prop_assert!(jcs::canonicalize(&p).is_ok());
                    prop_assert!(latency_ms.is_finite());
                    prop_assert_eq!(p["decision_id"].as_str(), Some(info.trace_id.as_str()));
                }
                Err(PayloadError::Jcs(JcsError::NonFiniteNumber(_))) => {
                    seen.refused.fetch_add(1, Relaxed);
                    prop_assert!(!latency_ms.is_finite(), "latency {} refused", latency_ms)
                }
                Err(PayloadError::Jcs(JcsError::TooDeep)) => {
                    seen.refused.fetch_add(1, Relaxed);
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected: {other}"))),
            }
            prop_assert!(jcs::canonicalize(&prediction::subject(&info.trace_id, "r")).is_ok());
            Ok(())
        },
    );
    seen.print("traces");
}

/// Decodes `json` as every MLflow entity type; any outcome but a panic is fine.
fn decode_all(json: &Value) {
    let _ = serde_json::from_value::<Run>(json.clone());
    let _ = serde_json::from_value::<Metric>(json.clone());
    let _ = serde_json::from_value::<KeyValue>(json.clone());
    let _ = serde_json::from_value::<Dataset>(json.clone());
    let _ = serde_json::from_value::<DatasetInput>(json.clone());
    let _ = serde_json::from_value::<ModelVersion>(json.clone());
    let _ = serde_json::from_value::<RegisteredModel>(json.clone());
    let _ = serde_json::from_value::<LoggedModel>(json.clone());
    let _ = serde_json::from_value::<Alias>(json.clone());
    if let Ok(info) = serde_json::from_value::<TraceInfo>(json.clone()) {
        let _ = info.execution_ms();
    }
    if let Ok(run) = serde_json::from_value::<Run>(json.clone()) {
        let _ = run.facts();
        let _ = run.tag("mlflow.source.name");
    }
}

#[test]
fn mlflow_entities_decode_or_error_on_any_input() {
    check(
        "MLflow entity decoding on arbitrary JSON",
        cases(1),
        // Boxed: a union of these strategies' value trees, held inline, overflows a debug
        // test thread's stack.
        prop_oneof![
            json_value(5).boxed(),
            run_json(true).boxed(),
            model_version_json(true).boxed(),
            trace_info_json(true).boxed(),
            metric(true).boxed(),
            dataset_input_json(true).boxed(),
        ],
        |json| {
            decode_all(&json);
            for value in json.as_object().into_iter().flat_map(|m| m.values()) {
                decode_all(value);
            }
            if let Some(spans) = json.as_array() {
                if let Some(root) = root_span(spans) {
                    let _ = span_attribute(root, "mlflow.spanInputs");
                    let _ = span_latency_ms(root);
                }
            }
            Ok(())
        },
    );
    check(
        "MLflow entity decoding on arbitrary bytes",
        cases(1),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256).boxed(),
            run_json(false)
                .prop_map(|v| {
                    let mut t = serde_json::to_vec(&v).unwrap_or_default();
                    let n = t.len();
                    if n > 0 {
                        t[n / 2] = b'{';
                    }
                    t
                })
                .boxed(),
        ],
        |bytes| {
            let _ = serde_json::from_slice::<Run>(&bytes);
            let _ = serde_json::from_slice::<ModelVersion>(&bytes);
            let _ = serde_json::from_slice::<TraceInfo>(&bytes);
            let _ = serde_json::from_slice::<RegisteredModel>(&bytes);
            let _ = serde_json::from_slice::<LoggedModel>(&bytes);
            Ok(())
        },
    );
}
