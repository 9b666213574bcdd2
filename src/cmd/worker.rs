//! `status` and `retry` against a running worker: its listener's `GET /v1/status` and `POST
//! /v1/retry`, authenticated with the management secret. Used when `--worker` is given, or when
//! the store is held by the worker (or lives in Kafka partitions, not on this disk).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::error::CmdError;
use crate::server::jobs::{RetryAnswer, RetryRequest, WorkerStatus, SECRET_HEADER};

/// How long a request to the worker may take (a status reads every job of every store).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the running worker listens.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Ask the worker listening here (`http://HOST:PORT`, its `--listen` address) instead of
    /// opening the store; without it, the store is opened, and a running worker is asked only
    /// when it holds the store (or the state directory has none: Kafka mode).
    #[arg(long = "worker", env = "ARIO_MLFLOW_WORKER_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The worker's listen address (`run --listen`): where the worker is asked when `--worker`
    /// is not given.
    #[arg(long, env = "ARIO_MLFLOW_LISTEN", default_value = crate::server::DEFAULT_LISTEN, hide = true)]
    pub listen: String,
    /// The management secret the worker requires (a file); unset: `<state-dir>/management-secret`.
    #[arg(long, env = "ARIO_MLFLOW_MANAGEMENT_SECRET_FILE", value_name = "FILE")]
    pub management_secret_file: Option<PathBuf>,
}

impl WorkerArgs {
    /// The worker's base URL: `--worker`, else `http://` + the listen address (an unspecified
    /// address such as `0.0.0.0` is asked on loopback).
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.url {
            return url.trim_end_matches('/').to_string();
        }
        let listen = self
            .listen
            .replacen("0.0.0.0:", "127.0.0.1:", 1)
            .replacen("[::]:", "[::1]:", 1);
        format!("http://{listen}")
    }
}

/// A running worker's listener.
pub struct WorkerClient {
    http: reqwest::Client,
    base: String,
    secret: String,
}

impl WorkerClient {
    /// A client for `args`' worker; the secret is read from `--management-secret-file` or
    /// `<state_dir>/management-secret` (never generated here).
    pub fn new(args: &WorkerArgs, state_dir: &Path) -> Result<WorkerClient, CmdError> {
        let file = args
            .management_secret_file
            .clone()
            .unwrap_or_else(|| state_dir.join("management-secret"));
        let secret = crate::guard::read_management_secret(&file).map_err(|e| {
            CmdError::Setup(
                format!("{e} (the running worker's management secret: give --management-secret-file FILE)")
                    .into(),
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CmdError::Setup(Box::new(e)))?;
        Ok(WorkerClient {
            http,
            base: args.base_url(),
            secret,
        })
    }

    /// The worker's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/status` (one workspace's stores with `workspace`).
    pub async fn status(&self, workspace: Option<&str>) -> Result<WorkerStatus, CmdError> {
        let mut request = self
            .http
            .get(format!("{}/v1/status", self.base))
            .header(SECRET_HEADER, &self.secret);
        if let Some(w) = workspace {
            request = request.query(&[("workspace", w)]);
        }
        self.answer(request).await
    }

    /// `POST /v1/retry`.
    pub async fn retry(&self, request: &RetryRequest) -> Result<RetryAnswer, CmdError> {
        let request = self
            .http
            .post(format!("{}/v1/retry", self.base))
            .header(SECRET_HEADER, &self.secret)
            .json(request);
        self.answer(request).await
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CmdError> {
        let unreachable = |e: reqwest::Error| {
            CmdError::Setup(
                format!(
                    "no worker answered at {}: {e} (is it running with its listener on? give --worker http://HOST:PORT, its --listen address)",
                    self.base
                )
                .into(),
            )
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            let message = format!("the worker at {} answered {status}: {detail}", self.base);
            return Err(
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::NOT_FOUND
                {
                    CmdError::Setup(message.into())
                } else {
                    CmdError::failed(message)
                },
            );
        }
        serde_json::from_slice(&body).map_err(|e| {
            CmdError::failed(format!(
                "the worker at {} sent an answer this build cannot read: {e}",
                self.base
            ))
        })
    }
}

/// The store of a state directory, or why a running worker must be asked instead.
pub enum LocalStore {
    /// Opened (no worker holds it).
    Open(crate::store::Store),
    /// Held by a running worker, or not on this disk (Kafka mode): the reason.
    AskWorker(String),
}

/// Opens the store in `dir` without creating one: a directory without a store, or a store a
/// running worker holds, is answered with [`LocalStore::AskWorker`].
pub fn open_local(dir: &Path) -> Result<LocalStore, CmdError> {
    if !dir.join("db").exists() {
        return Ok(LocalStore::AskWorker(format!(
            "there is no state store in {}",
            dir.display()
        )));
    }
    match crate::store::Store::open(dir) {
        Ok(store) => Ok(LocalStore::Open(store)),
        Err(crate::store::StoreError::Locked(_)) => Ok(LocalStore::AskWorker(format!(
            "the state store {} is held by a running worker",
            dir.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `why` we asked the worker, joined to the worker's error when it did not answer either.
pub fn explain(why: &str, e: CmdError) -> CmdError {
    match e {
        CmdError::Setup(inner) => CmdError::Setup(format!("{why}, and {inner}").into()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, listen: &str) -> WorkerArgs {
        WorkerArgs {
            url: url.map(str::to_string),
            listen: listen.into(),
            management_secret_file: None,
        }
    }

    #[test]
    fn the_worker_is_found_at_its_listen_address() {
        assert_eq!(
            args(None, "127.0.0.1:9847").base_url(),
            "http://127.0.0.1:9847"
        );
        assert_eq!(
            args(None, "0.0.0.0:9000").base_url(),
            "http://127.0.0.1:9000"
        );
        assert_eq!(
            args(Some("http://w:1/"), "0.0.0.0:9000").base_url(),
            "http://w:1"
        );
    }

    #[test]
    fn a_missing_secret_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = WorkerClient::new(&args(None, "127.0.0.1:1"), dir.path())
            .err()
            .unwrap();
        assert!(e.to_string().contains("management-secret"), "{e}");
    }
}
