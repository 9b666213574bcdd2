//! The model registry: registered models, versions, aliases, webhooks, and their tags.

use serde_json::{json, Value};

use super::{MlflowClient, MlflowError, ModelVersion, RegisteredModel, Request};

impl MlflowClient {
    /// `GET model-versions/get` (includes aliases).
    pub async fn get_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let r: R = self
            .call(
                "model-versions/get",
                Request::get(
                    "api/2.0/mlflow/model-versions/get",
                    &[("name", name), ("version", version)],
                ),
            )
            .await?;
        Ok(r.model_version)
    }

    /// `GET registered-models/alias`: the version an alias points at.
    pub async fn get_model_version_by_alias(
        &self,
        name: &str,
        alias: &str,
    ) -> Result<ModelVersion, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            model_version: ModelVersion,
        }
        let r: R = self
            .call(
                "registered-models/alias",
                Request::get(
                    "api/2.0/mlflow/registered-models/alias",
                    &[("name", name), ("alias", alias)],
                ),
            )
            .await?;
        Ok(r.model_version)
    }

    /// `GET registered-models/search`, every page (1000 a page): names, tags, aliases and
    /// timestamps of every registered model.
    pub async fn search_registered_models(&self) -> Result<Vec<RegisteredModel>, MlflowError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("max_results", "1000")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let v: Value = self
                .call(
                    "registered-models/search",
                    Request::get("api/2.0/mlflow/registered-models/search", &query),
                )
                .await?;
            let page: Vec<RegisteredModel> = serde_json::from_value(v["registered_models"].clone())
                .map_err(|e| MlflowError::Decode {
                    call: "registered-models/search",
                    cause: e.to_string(),
                })?;
            out.extend(page);
            match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                Some(t) => token = t.to_string(),
                None => return Ok(out),
            }
        }
    }

    /// Registers a webhook on an MLflow 3.x server (`POST webhooks`) for `events`
    /// (`(entity, action)`, e.g. `("MODEL_VERSION", "CREATED")`); returns the webhook's id.
    pub async fn create_webhook(
        &self,
        name: &str,
        url: &str,
        events: &[(&str, &str)],
        secret: &str,
    ) -> Result<String, MlflowError> {
        let events: Vec<Value> = events
            .iter()
            .map(|(entity, action)| json!({"entity": entity, "action": action}))
            .collect();
        let v: Value = self
            .call(
                "webhooks/create",
                Request::post(
                    "api/2.0/mlflow/webhooks",
                    json!({"name": name, "url": url, "events": events, "secret": secret,
                           "description": "ario-mlflow-worker: anchor registry events at once"}),
                ),
            )
            .await?;
        v["webhook"]["webhook_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| MlflowError::Decode {
                call: "webhooks/create",
                cause: "no webhook.webhook_id in the answer".into(),
            })
    }

    /// `GET model-versions/search` with `filter`, every page.
    pub async fn search_model_versions(
        &self,
        filter: &str,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        self.model_version_pages(&[("filter", filter), ("max_results", "1000")], |_| false)
            .await
    }

    /// `GET model-versions/search` ordered by `last_updated_timestamp` DESC, paging only until a
    /// page reaches versions last updated before `since_ms` (spec/mlflow-rest.md §7: the search
    /// cannot filter on the timestamp, only order by it) — or, with `strict`, at or before it
    /// (nothing newer than the watermark is left). Returns the versions updated at or after
    /// `since_ms` (and possibly a few older ones from the last page).
    pub async fn search_model_versions_updated_since(
        &self,
        since_ms: i64,
        strict: bool,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        let older = |page: &[ModelVersion]| {
            page.iter().any(|mv| {
                let t = mv.last_updated_timestamp.unwrap_or(0);
                t < since_ms || (strict && t <= since_ms)
            })
        };
        // A first page of a few: when nothing changed (an idle poll), that is all it reads.
        let first = [
            ("order_by", "last_updated_timestamp DESC"),
            ("max_results", "5"),
        ];
        let head = self.model_version_pages(&first, |_| true).await?;
        if head.len() < 5 || older(&head) {
            return Ok(head);
        }
        let query = [
            ("order_by", "last_updated_timestamp DESC"),
            ("max_results", "200"),
        ];
        self.model_version_pages(&query, older).await
    }

    /// Pages through `model-versions/search` until the last page or until `done(page)`.
    pub(super) async fn model_version_pages(
        &self,
        query: &[(&str, &str)],
        done: impl Fn(&[ModelVersion]) -> bool,
    ) -> Result<Vec<ModelVersion>, MlflowError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = query.to_vec();
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v: Value = self
                .call(
                    "model-versions/search",
                    Request::get("api/2.0/mlflow/model-versions/search", &q),
                )
                .await?;
            let page: Vec<ModelVersion> =
                serde_json::from_value(v["model_versions"].clone()).unwrap_or_default();
            let stop = done(&page);
            out.extend(page);
            match v["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                Some(t) if !stop => token = t.to_string(),
                _ => return Ok(out),
            }
        }
    }

    /// `GET registered-models/get` (includes aliases and tags).
    pub async fn get_registered_model(&self, name: &str) -> Result<RegisteredModel, MlflowError> {
        #[derive(serde::Deserialize)]
        struct R {
            registered_model: RegisteredModel,
        }
        let r: R = self
            .call(
                "registered-models/get",
                Request::get("api/2.0/mlflow/registered-models/get", &[("name", name)]),
            )
            .await?;
        Ok(r.registered_model)
    }

    /// `POST model-versions/set-tag`.
    pub async fn set_model_version_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"name": name, "version": version, "key": key, "value": value});
        let _: Value = self
            .call(
                "model-versions/set-tag",
                Request::post("api/2.0/mlflow/model-versions/set-tag", body),
            )
            .await?;
        Ok(())
    }

    /// `POST registered-models/set-tag`.
    pub async fn set_registered_model_tag(
        &self,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), MlflowError> {
        let body = json!({"name": name, "key": key, "value": value});
        let _: Value = self
            .call(
                "registered-models/set-tag",
                Request::post("api/2.0/mlflow/registered-models/set-tag", body),
            )
            .await?;
        Ok(())
    }
}
