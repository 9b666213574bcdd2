//! MLflow REST entities, deserialized leniently: every field the server may omit has a default,
//! and metric values accept protobuf-JSON's `"NaN"` / `"Infinity"` strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::profile::dataset::DatasetFacts;
use crate::profile::training::{self, DatasetUse, LatestMetric, RunFacts};

/// A `{key, value}` pair (params, tags).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A metric's latest value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metric {
    /// Metric name.
    pub key: String,
    /// Latest value (may be NaN or ±Infinity).
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    /// Client timestamp (ms).
    #[serde(default)]
    pub timestamp: i64,
    /// Step.
    #[serde(default)]
    pub step: i64,
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(f64),
        S(String),
    }
    match Num::deserialize(d)? {
        Num::N(x) => Ok(x),
        Num::S(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

/// Run identity and lifecycle.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInfo {
    /// Run id.
    #[serde(default)]
    pub run_id: String,
    /// Experiment id.
    #[serde(default)]
    pub experiment_id: String,
    /// `RUNNING`, `FINISHED`, `FAILED`, `KILLED`, `SCHEDULED`.
    #[serde(default)]
    pub status: String,
    /// Client-clock start (ms).
    #[serde(default)]
    pub start_time: Option<i64>,
    /// Client-clock end (ms).
    #[serde(default)]
    pub end_time: Option<i64>,
    /// Artifact root, e.g. `mlflow-artifacts:/1/<run>/artifacts`.
    #[serde(default)]
    pub artifact_uri: String,
    /// `active` or `deleted`.
    #[serde(default)]
    pub lifecycle_stage: String,
}

/// Params, latest metrics and tags.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunData {
    /// Params.
    #[serde(default)]
    pub params: Vec<KeyValue>,
    /// Latest metric values.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

/// A dataset entity as MLflow stores it (`source`, `schema`, `profile` are JSON strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Dataset {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Digest.
    #[serde(default)]
    pub digest: String,
    /// Source type (`local`, `s3`, `code`, …).
    #[serde(default)]
    pub source_type: String,
    /// JSON-encoded source.
    #[serde(default)]
    pub source: String,
    /// JSON-encoded schema, possibly empty.
    #[serde(default)]
    pub schema: Option<String>,
}

impl Dataset {
    /// The dataset as the profile reads it.
    pub fn facts(&self) -> DatasetFacts {
        DatasetFacts {
            name: self.name.clone(),
            digest: self.digest.clone(),
            source_type: self.source_type.clone(),
            source: self.source.clone(),
            schema: self.schema.clone(),
        }
    }
}

/// One dataset input of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DatasetInput {
    /// Input tags (`mlflow.data.context`, …).
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// The dataset.
    #[serde(default)]
    pub dataset: Dataset,
}

/// A run's inputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunInputs {
    /// Dataset inputs in logged order.
    #[serde(default)]
    pub dataset_inputs: Vec<DatasetInput>,
}

/// One LoggedModel output of a run (MLflow 3).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelOutput {
    /// LoggedModel id (`m-…`).
    #[serde(default)]
    pub model_id: String,
}

/// A run's outputs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunOutputs {
    /// LoggedModels produced by the run.
    #[serde(default)]
    pub model_outputs: Vec<ModelOutput>,
}

/// A run as `runs/get` returns it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Run {
    /// Identity and lifecycle.
    #[serde(default)]
    pub info: RunInfo,
    /// Params, metrics, tags.
    #[serde(default)]
    pub data: RunData,
    /// Dataset inputs.
    #[serde(default)]
    pub inputs: RunInputs,
    /// Model outputs.
    #[serde(default)]
    pub outputs: RunOutputs,
}

impl Run {
    /// The value of a run tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// Params as a sorted map.
    pub fn params(&self) -> BTreeMap<String, String> {
        self.data
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect()
    }

    /// The run as the profile's training payload reads it.
    pub fn facts(&self) -> RunFacts {
        let tag = |k: &str| self.tag(k).unwrap_or("").to_string();
        RunFacts {
            run_id: self.info.run_id.clone(),
            params: self.params(),
            metrics: self
                .data
                .metrics
                .iter()
                .map(|m| LatestMetric {
                    key: m.key.clone(),
                    value: m.value,
                })
                .collect(),
            source_name: tag("mlflow.source.name"),
            git_commit: tag("mlflow.source.git.commit"),
            dataset_inputs: self
                .inputs
                .dataset_inputs
                .iter()
                .map(|input| DatasetUse {
                    dataset: input.dataset.facts(),
                    context: input
                        .tags
                        .iter()
                        .find(|t| t.key == training::DATASET_CONTEXT_TAG)
                        .map(|t| t.value.clone()),
                })
                .collect(),
        }
    }
}

/// An MLflow 3 LoggedModel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LoggedModel {
    /// `m-…`.
    #[serde(default)]
    pub model_id: String,
    /// Experiment id.
    #[serde(default)]
    pub experiment_id: String,
    /// Name (the artifact path it was logged under).
    #[serde(default)]
    pub name: String,
    /// Artifact root.
    #[serde(default)]
    pub artifact_uri: String,
    /// The run that produced it.
    #[serde(default)]
    pub source_run_id: Option<String>,
}

/// An alias → version pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Alias {
    /// Alias name.
    pub alias: String,
    /// Version it points at.
    pub version: String,
}

/// A registered model.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegisteredModel {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Aliases.
    #[serde(default)]
    pub aliases: Vec<Alias>,
    /// Creation (ms): kept across a rename, new when a model is deleted and re-created.
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    /// Last update (ms).
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
}

impl RegisteredModel {
    /// The value of a registered-model tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// A model version.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelVersion {
    /// Registered model name.
    #[serde(default)]
    pub name: String,
    /// Version number as a string.
    #[serde(default)]
    pub version: String,
    /// `None`, `Staging`, `Production`, `Archived`.
    #[serde(default)]
    pub current_stage: String,
    /// Source URI (`runs:/…` or `models:/m-…`).
    #[serde(default)]
    pub source: String,
    /// Source run id, when known.
    #[serde(default)]
    pub run_id: String,
    /// `READY`, `PENDING_REGISTRATION`, `FAILED_REGISTRATION`.
    #[serde(default)]
    pub status: String,
    /// Creation (ms).
    #[serde(default)]
    pub creation_timestamp: Option<i64>,
    /// Last update (ms).
    #[serde(default)]
    pub last_updated_timestamp: Option<i64>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<KeyValue>,
    /// Aliases (only from `model-versions/get`).
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ModelVersion {
    /// The value of a model-version tag.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// Trace metadata (v3 `trace_info`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TraceInfo {
    /// `tr-…`.
    #[serde(default)]
    pub trace_id: String,
    /// RFC 3339 request time.
    #[serde(default)]
    pub request_time: Option<String>,
    /// Protobuf duration, e.g. `"0.193s"`.
    #[serde(default)]
    pub execution_duration: Option<String>,
    /// `OK`, `ERROR`, `IN_PROGRESS`.
    #[serde(default)]
    pub state: String,
    /// Metadata (`mlflow.modelId`, `mlflow.sourceRun`, `mlflow.traceInputs`, …).
    #[serde(default)]
    pub trace_metadata: BTreeMap<String, String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl TraceInfo {
    /// Execution time in milliseconds, from the protobuf duration string.
    pub fn execution_ms(&self) -> Option<f64> {
        let d = self.execution_duration.as_deref()?.strip_suffix('s')?;
        d.parse::<f64>().ok().map(|s| s * 1000.0)
    }
}
