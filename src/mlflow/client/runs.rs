//! Runs, experiments and LoggedModels: reads and tag writes.

use serde_json::{json, Value};

use super::{LoggedModel, MlflowClient, MlflowError, Request, Run};

impl MlflowClient {
    /// `GET runs/get`.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            run: Run,
        }
        let r: R = self
            .call(
                "runs/get",
                Request::get("api/2.0/mlflow/runs/get", &[("run_id", run_id)]),
            )
            .await?;
        Ok(r.run)
    }

    /// `POST runs/search` over `experiments` with `filter`, every page, oldest first: the raw run
    /// objects (`info`, `data.tags`, …).
    pub async fn search_runs(
        &self,
        experiments: &[String],
        filter: &str,
    ) -> Result<Vec<Value>, MlflowError> {
        let mut out = Vec::new();
        for chunk in experiments.chunks(500) {
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({
                    "experiment_ids": chunk,
                    "filter": filter,
                    "order_by": ["attributes.start_time ASC"],
                    "max_results": 1000,
                });
                if let Some(t) = &token {
                    body["page_token"] = json!(t);
                }
                let v: Value = self
                    .call(
                        "runs/search",
                        Request::post("api/2.0/mlflow/runs/search", body),
                    )
                    .await?;
                out.extend(v["runs"].as_array().into_iter().flatten().cloned());
                match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Every active experiment id, paged (`experiments/search`): what the poller scans and what
    /// `verify`/`audit` search when they look for a run's proofs.
    pub async fn active_experiment_ids(&self) -> Result<Vec<String>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"max_results": 1000, "view_type": "ACTIVE_ONLY"});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v: Value = self
                .call(
                    "experiments/search",
                    Request::post("api/2.0/mlflow/experiments/search", body),
                )
                .await?;
            out.extend(
                v["experiments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["experiment_id"].as_str().map(str::to_owned)),
            );
            match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// One experiment tag's value (`experiments/get`); `None` when unset or empty.
    pub async fn get_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
    ) -> Result<Option<String>, MlflowError> {
        let v: Value = self
            .call(
                "experiments/get",
                Request::get(
                    "api/2.0/mlflow/experiments/get",
                    &[("experiment_id", experiment_id)],
                ),
            )
            .await?;
        Ok(v["experiment"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned))
    }

    /// `POST runs/log-batch` with tags only (one call for many tags).
    pub async fn set_run_tags(
        &self,
        run_id: &str,
        tags: &[(String, String)],
    ) -> Result<(), MlflowError> {
        if tags.is_empty() {
            return Ok(());
        }
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let _: Value = self
            .call(
                "runs/log-batch",
                Request::post(
                    "api/2.0/mlflow/runs/log-batch",
                    json!({"run_id": run_id, "tags": tags}),
                ),
            )
            .await?;
        Ok(())
    }

    /// `POST experiments/set-experiment-tag`.
    pub async fn set_experiment_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"experiment_id": experiment_id, "key": key, "value": value});
        let _: Value = self
            .call(
                "experiments/set-experiment-tag",
                Request::post("api/2.0/mlflow/experiments/set-experiment-tag", body),
            )
            .await?;
        Ok(())
    }

    /// `GET logged-models/{id}` (MLflow 3).
    pub async fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, MlflowError> {
        let v: Value = self
            .call(
                "logged-models/get",
                Request::get(format!("api/2.0/mlflow/logged-models/{model_id}"), &[]),
            )
            .await?;
        serde_json::from_value(v["model"]["info"].clone()).map_err(|e| MlflowError::Decode {
            call: "logged-models/get",
            cause: e.to_string(),
        })
    }

    /// `POST logged-models/search` in one experiment, every page.
    pub async fn search_logged_models(
        &self,
        experiment_id: &str,
        filter: &str,
    ) -> Result<Vec<LoggedModel>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"experiment_ids": [experiment_id], "filter": filter, "max_results": 1000});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v: Value = self
                .call(
                    "logged-models/search",
                    Request::post("api/2.0/mlflow/logged-models/search", body),
                )
                .await?;
            for m in v["models"].as_array().into_iter().flatten() {
                let info: LoggedModel =
                    serde_json::from_value(m["info"].clone()).map_err(|e| MlflowError::Decode {
                        call: "logged-models/search",
                        cause: e.to_string(),
                    })?;
                out.push(info);
            }
            match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }
}
