//! Traces: search, infos and spans (one by one or in bulk), tags.

use serde_json::{json, Value};

use super::{MlflowClient, MlflowError, Request, TraceInfo};

impl MlflowClient {
    /// `POST traces/search` (v3) over `experiments` with `filter`, every page, oldest first: the
    /// raw trace infos (`trace_id`, `tags`, …).
    pub async fn search_traces(
        &self,
        experiments: &[String],
        filter: &str,
    ) -> Result<Vec<Value>, MlflowError> {
        let mut out = Vec::new();
        for chunk in experiments.chunks(100) {
            let locations: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": id}}))
                .collect();
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({
                    "locations": locations,
                    "filter": filter,
                    "order_by": ["timestamp_ms ASC"],
                    "max_results": 500,
                });
                if let Some(t) = &token {
                    body["page_token"] = json!(t);
                }
                let v: Value = self
                    .call(
                        "traces/search",
                        Request::post("api/3.0/mlflow/traces/search", body),
                    )
                    .await?;
                out.extend(v["traces"].as_array().into_iter().flatten().cloned());
                match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// `GET traces/{id}` (v3): the trace's info and tags.
    pub async fn get_trace_info(&self, trace_id: &str) -> Result<TraceInfo, MlflowError> {
        let v: Value = self
            .call(
                "traces/get-info",
                Request::get(format!("api/3.0/mlflow/traces/{trace_id}"), &[]),
            )
            .await?;
        serde_json::from_value(v["trace"]["trace_info"].clone()).map_err(|e| MlflowError::Decode {
            call: "traces/get-info",
            cause: e.to_string(),
        })
    }

    /// `GET traces/get` (v3): the trace's spans (OTLP-like JSON).
    pub async fn get_trace_spans(&self, trace_id: &str) -> Result<Vec<Value>, MlflowError> {
        let v: Value = self
            .call(
                "traces/get",
                Request::get("api/3.0/mlflow/traces/get", &[("trace_id", trace_id)]),
            )
            .await?;
        Ok(v["trace"]["spans"].as_array().cloned().unwrap_or_default())
    }

    /// `GET traces/get` (v3): the trace's info and its spans in one call.
    pub async fn get_trace(&self, trace_id: &str) -> Result<(TraceInfo, Vec<Value>), MlflowError> {
        let v: Value = self
            .call(
                "traces/get",
                Request::get("api/3.0/mlflow/traces/get", &[("trace_id", trace_id)]),
            )
            .await?;
        let info = serde_json::from_value(v["trace"]["trace_info"].clone()).map_err(|e| {
            MlflowError::Decode {
                call: "traces/get",
                cause: e.to_string(),
            }
        })?;
        Ok((
            info,
            v["trace"]["spans"].as_array().cloned().unwrap_or_default(),
        ))
    }

    /// `GET traces/batchGet` (MLflow 3's v3 API; a `GET` with repeated `trace_ids`, not the
    /// `POST` one might expect): infos and spans of many traces in one call. `Ok(None)` when the
    /// server has no such endpoint (MLflow 2.x, older 3.x): read trace by trace then. Traces the
    /// server does not know are absent from the answer.
    pub async fn batch_get_traces(
        &self,
        trace_ids: &[String],
    ) -> Result<Option<Vec<(TraceInfo, Vec<Value>)>>, MlflowError> {
        let query: Vec<(&str, &str)> = trace_ids
            .iter()
            .map(|t| ("trace_ids", t.as_str()))
            .collect();
        let v: Value = match self
            .call(
                "traces/batch-get",
                Request::get("api/3.0/mlflow/traces/batchGet", &query),
            )
            .await
        {
            Ok(v) => v,
            Err(MlflowError::Http {
                status: 404 | 405 | 501,
                ..
            }) => return Ok(None),
            Err(MlflowError::Http { code: Some(c), .. }) if c == "ENDPOINT_NOT_FOUND" => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for t in v["traces"].as_array().into_iter().flatten() {
            let info: TraceInfo = serde_json::from_value(t["trace_info"].clone()).map_err(|e| {
                MlflowError::Decode {
                    call: "traces/batch-get",
                    cause: e.to_string(),
                }
            })?;
            out.push((info, t["spans"].as_array().cloned().unwrap_or_default()));
        }
        Ok(Some(out))
    }

    /// `PATCH traces/{id}/tags` (v3).
    pub async fn set_trace_tag(
        &self,
        trace_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let _: Value = self
            .call(
                "traces/set-tag",
                Request::patch(
                    format!("api/3.0/mlflow/traces/{trace_id}/tags"),
                    json!({"key": key, "value": value}),
                ),
            )
            .await?;
        Ok(())
    }
}
