//! The REST client proper: one retrying request helper and one method per MLflow call.

use std::fmt;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::artifacts::store::ObjectStores;
use super::artifacts::{ArtifactError, ArtifactStoreConfig};
use super::types::*;

mod registry;
mod runs;
mod traces;

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
    /// The MLflow workspace every call is made in (`X-MLFLOW-WORKSPACE`; `MLFLOW_WORKSPACE`):
    /// `None` sends no header — a server without workspaces refuses one.
    pub workspace: Option<String>,
}

impl fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowConfig")
            .field("tracking_uri", &self.tracking_uri.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("insecure_tls", &self.insecure_tls)
            .field("workspace", &self.workspace)
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
            workspace: None,
        }
    }
}

/// The header that selects a workspace on a server run with `--enable-workspaces`.
pub const WORKSPACE_HEADER: &str = "X-MLFLOW-WORKSPACE";

/// The workspace a server without workspaces puts everything in, and the one a proof made
/// before workspaces belongs to.
pub const DEFAULT_WORKSPACE: &str = "default";

/// Whether `name` is a name MLflow gives a workspace: 2 to 63 lowercase letters, digits and
/// inner hyphens (MLflow 3.17's `WorkspaceNameValidator`; a DNS label, as Kubernetes
/// namespaces). Nothing else can name a store directory, a topic suffix or a metric label.
pub fn is_workspace_name(name: &str) -> bool {
    (2..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
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

    /// The workspace every call is made in (`None`: no header, the server's default).
    pub fn workspace(&self) -> Option<&str> {
        self.config.workspace.as_deref()
    }

    /// The same client (connection pool, artifact stores, rate limit) making its calls in
    /// `workspace`. The default workspace is asked without the header, as before workspaces —
    /// the same answers on a multi-tenant server, and the only way on a server without them.
    pub fn in_workspace(&self, workspace: &str) -> MlflowClient {
        let mut client = self.clone();
        client.config.workspace = Some(workspace.to_string()).filter(|w| w != DEFAULT_WORKSPACE);
        client
    }

    /// Whether experiment `id` exists in this client's workspace (another workspace's answers
    /// "does not exist").
    pub async fn experiment_exists(&self, id: &str) -> Result<bool, MlflowError> {
        let asked: Result<serde_json::Value, MlflowError> = self
            .call(
                "experiments/get",
                Request::get("api/2.0/mlflow/experiments/get", &[("experiment_id", id)]),
            )
            .await;
        match asked {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The workspaces these credentials can see, in the server's order; `Ok(None)` when the
    /// server runs without workspaces. MLflow 3.17 answers that with HTTP 503 ("disabled
    /// because the server is running without workspaces support"), older servers with 404 or
    /// `FEATURE_DISABLED`: asked once, a 503 naming workspaces is not retried.
    pub async fn list_workspaces(&self) -> Result<Option<Vec<String>>, MlflowError> {
        let mut plain = self.clone();
        plain.config.workspace = None;
        let request = Request::get("api/3.0/mlflow/workspaces", &[]);
        let name = "workspaces/list";
        let first = plain.send_once(name, &request).await;
        let text = match first {
            Err(MlflowError::Http {
                status,
                code,
                message,
                ..
            }) if status == 404
                || code.as_deref() == Some("FEATURE_DISABLED")
                || code.as_deref() == Some("ENDPOINT_NOT_FOUND")
                || (status == 503 && message.contains("workspace")) =>
            {
                return Ok(None)
            }
            Err(e) if e.is_transient() => {
                (|| async { plain.send_once(name, &request).await })
                    .retry(plain.backoff())
                    .when(MlflowError::is_transient)
                    .await?
            }
            other => other?,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| MlflowError::Decode {
            call: name,
            cause: e.to_string(),
        })?;
        Ok(Some(
            v["workspaces"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w["name"].as_str().map(str::to_owned))
                .collect(),
        ))
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
        let req = match &self.config.workspace {
            Some(w) => req.header(WORKSPACE_HEADER, w),
            None => req,
        };
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
}
