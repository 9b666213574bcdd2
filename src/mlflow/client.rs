//! The REST client proper: one retrying request helper and one method per MLflow call.

use std::fmt;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use url::Url;

use super::artifacts::store::ObjectStores;
use super::artifacts::{ArtifactError, ArtifactStoreConfig};
use super::types::*;

/// How to reach and authenticate to MLflow.
#[derive(Clone)]
pub struct MlflowConfig {
    /// Tracking server base URL (`MLFLOW_TRACKING_URI`).
    pub tracking_uri: Url,
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`).
    pub token: Option<String>,
    /// Basic-auth user (`MLFLOW_TRACKING_USERNAME`).
    pub username: Option<String>,
    /// Basic-auth password (`MLFLOW_TRACKING_PASSWORD`).
    pub password: Option<String>,
    /// Skip TLS verification (`MLFLOW_TRACKING_INSECURE_TLS=true`).
    pub insecure_tls: bool,
    /// Extra CA bundle (PEM) trusted for MLflow (`MLFLOW_TRACKING_SERVER_CERT_PATH`), besides
    /// the system store and the web roots.
    pub server_ca_pem: Option<Vec<u8>>,
    /// Client certificate and private key (PEM, one file, as MLflow's
    /// `MLFLOW_TRACKING_CLIENT_CERT_PATH`) for servers that require mutual TLS.
    pub client_identity_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per call for transient failures (429, 5xx, transport).
    pub max_attempts: usize,
    /// First retry delay.
    pub min_delay: Duration,
    /// At most this many REST calls per second (`None`: unlimited).
    pub max_calls_per_sec: Option<f64>,
    /// Artifact stores read directly (S3, GCS, Azure, files) when runs name them.
    pub artifact_stores: ArtifactStoreConfig,
}

impl fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowConfig")
            .field("tracking_uri", &self.tracking_uri.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("insecure_tls", &self.insecure_tls)
            .finish_non_exhaustive()
    }
}

impl MlflowConfig {
    /// Defaults for a tracking URI: no auth, 30 s timeout, 5 attempts.
    pub fn new(tracking_uri: Url) -> Self {
        MlflowConfig {
            tracking_uri,
            token: None,
            username: None,
            password: None,
            insecure_tls: false,
            server_ca_pem: None,
            client_identity_pem: None,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            min_delay: Duration::from_millis(200),
            max_calls_per_sec: None,
            artifact_stores: ArtifactStoreConfig::default(),
        }
    }
}

/// A failed MLflow call. The `call` names the REST endpoint, so messages say what failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MlflowError {
    /// The server answered with an error status.
    #[error("MLflow {call} failed: HTTP {status}{}: {message}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Http {
        /// The REST call.
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// MLflow `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`).
        code: Option<String>,
        /// Server message.
        message: String,
    },
    /// The server could not be reached (after retries).
    #[error("MLflow {call} failed: cannot reach {uri}: {cause} (is the tracking server running? check MLFLOW_TRACKING_URI)")]
    Transport {
        /// The REST call.
        call: &'static str,
        /// Tracking URI.
        uri: String,
        /// Cause.
        cause: String,
    },
    /// The answer was not what the call returns.
    #[error("MLflow {call} returned an unexpected body: {cause}")]
    Decode {
        /// The REST call.
        call: &'static str,
        /// Cause.
        cause: String,
    },
    /// Something this client cannot do (e.g. an artifact store the server does not proxy).
    #[error("{0}")]
    Unsupported(String),
    /// A directly-read artifact store failed.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

impl MlflowError {
    /// Whether the entity does not exist (404, `RESOURCE_DOES_NOT_EXIST`, or an artifact a
    /// directly-read store does not hold).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MlflowError::Http { status: 404, .. })
            || matches!(self, MlflowError::Http { code: Some(c), .. } if c == "RESOURCE_DOES_NOT_EXIST")
            || matches!(self, MlflowError::Artifact(a) if a.kind == crate::mlflow::artifacts::ArtifactErrorKind::NotFound)
    }

    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, MlflowError::Transport { .. })
            || matches!(self, MlflowError::Http { status, .. } if *status == 429 || *status >= 500)
            || matches!(self, MlflowError::Artifact(a) if a.is_transient())
    }
}

/// The MLflow REST client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    pub(crate) http: reqwest::Client,
    pub(crate) config: MlflowConfig,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    next_slot: std::sync::Arc<tokio::sync::Mutex<tokio::time::Instant>>,
    /// Directly-read artifact stores, one client per bucket, shared by clones.
    pub(crate) stores: std::sync::Arc<ObjectStores>,
}

/// What one request is: method, path (relative to the tracking URI), query and JSON body.
pub struct Request {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path relative to the tracking URI, e.g. `api/2.0/mlflow/runs/get`.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// JSON body.
    pub body: Option<Value>,
}

impl Request {
    /// A GET with query parameters.
    pub fn get(path: impl Into<String>, query: &[(&str, &str)]) -> Self {
        Request {
            method: reqwest::Method::GET,
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
        }
    }

    /// A POST with a JSON body.
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Request {
            method: reqwest::Method::POST,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
        }
    }

    /// A PATCH with a JSON body.
    pub fn patch(path: impl Into<String>, body: Value) -> Self {
        Request {
            method: reqwest::Method::PATCH,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
        }
    }
}

impl MlflowClient {
    /// Builds a client.
    pub fn new(config: MlflowConfig) -> Result<MlflowClient, MlflowError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(config.insecure_tls)
            .user_agent(concat!("ario-mlflow-worker/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.server_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                MlflowError::Unsupported(format!(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH is not a PEM certificate bundle: {e}"
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &config.client_identity_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| {
                MlflowError::Unsupported(format!(
                    "MLFLOW_TRACKING_CLIENT_CERT_PATH must hold the client certificate and its private key (PEM): {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| {
            MlflowError::Unsupported(format!("cannot build the MLflow HTTP client: {e}"))
        })?;
        let stores = std::sync::Arc::new(ObjectStores::new(config.artifact_stores.clone()));
        Ok(MlflowClient {
            http,
            config,
            calls: Default::default(),
            next_slot: std::sync::Arc::new(tokio::sync::Mutex::new(tokio::time::Instant::now())),
            stores,
        })
    }

    /// The tracking URI.
    pub fn tracking_uri(&self) -> &Url {
        &self.config.tracking_uri
    }

    /// REST calls made so far (for measurements).
    pub fn calls_made(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.config.tracking_uri.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    pub(crate) fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = &self.config.token {
            req.bearer_auth(token)
        } else if let Some(user) = &self.config.username {
            req.basic_auth(user, self.config.password.as_deref())
        } else {
            req
        }
    }

    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.min_delay)
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.config.max_attempts.saturating_sub(1))
            .with_jitter()
    }

    pub(crate) fn count_call(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for the next call slot when a rate limit is set (`--rate`).
    pub(crate) async fn throttle(&self) {
        let Some(rate) = self.config.max_calls_per_sec.filter(|r| *r > 0.0) else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        let wait_until = {
            let mut next = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(wait_until).await;
    }

    /// Sends `request` (retrying transient failures) and decodes the JSON answer; `name` is the
    /// REST call named in errors.
    pub async fn call<T: DeserializeOwned>(
        &self,
        name: &'static str,
        request: Request,
    ) -> Result<T, MlflowError> {
        let text = (|| async { self.send_once(name, &request).await })
            .retry(self.backoff())
            .when(MlflowError::is_transient)
            .notify(|e, d| tracing::warn!(call = name, error = %e, retry_in_ms = d.as_millis() as u64, "MLflow call failed; retrying"))
            .await?;
        let body = if text.trim().is_empty() {
            "{}"
        } else {
            text.as_str()
        };
        serde_json::from_str(body).map_err(|e| MlflowError::Decode {
            call: name,
            cause: e.to_string(),
        })
    }

    async fn send_once(
        &self,
        name: &'static str,
        request: &Request,
    ) -> Result<String, MlflowError> {
        self.throttle().await;
        self.count_call();
        let mut req = self
            .http
            .request(request.method.clone(), self.url(&request.path))
            .query(&request.query);
        if let Some(body) = &request.body {
            req = req.json(body);
        }
        let started = std::time::Instant::now();
        let response = match self.authorize(req).send().await {
            Ok(r) => r,
            Err(e) => {
                crate::telemetry::mlflow_request(&request.path, None, started.elapsed());
                return Err(self.transport(name, &e));
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await;
        crate::telemetry::mlflow_request(&request.path, Some(status), started.elapsed());
        let text = text.map_err(|e| self.transport(name, &e))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let code = parsed
            .as_ref()
            .and_then(|v| v["error_code"].as_str())
            .map(str::to_owned);
        let message = parsed
            .as_ref()
            .and_then(|v| v["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(MlflowError::Http {
            call: name,
            status,
            code,
            message,
        })
    }

    pub(crate) fn transport(&self, name: &'static str, e: &reqwest::Error) -> MlflowError {
        // The whole chain: the root cause (e.g. `invalid peer certificate: UnknownIssuer`) is
        // what an operator needs, and reqwest keeps it several sources deep.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(src) = source {
            let text = src.to_string();
            if !cause.contains(&text) {
                cause.push_str(&format!(": {text}"));
            }
            source = src.source();
        }
        MlflowError::Transport {
            call: name,
            uri: self.config.tracking_uri.to_string(),
            cause,
        }
    }

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
    async fn model_version_pages(
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
