//! Artifacts through MLflow's proxy (`/api/2.0/mlflow-artifacts/artifacts/<root>/<path>`).
//!
//! * Listing is recursive over the proxy's directory listing.
//! * Downloads for hashing are **streamed into SHA-256**: constant memory, no temp files.
//! * Uploads are a raw `PUT` (the proxy overwrites silently, which makes write-back idempotent).
//! * [`MlflowClient::model_checksums`] mirrors how MLflow 3's `runs:/<run>/<path>` resolves a
//!   model directory — the run's own `<path>/` files, overlaid by the files of the LoggedModel of
//!   that run named `<path>` — so the checksums equal what the plugin's
//!   `mlflow.artifacts.download_artifacts(run_id, path)` + `os.walk` produce.

use std::collections::BTreeMap;

use backon::Retryable;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client::{MlflowClient, MlflowError, Request};
use super::types::Run;

/// MLflow registry bookkeeping files excluded from checksums at any depth (spec §2.0.4).
pub const EXCLUDED_ARTIFACT_NAMES: [&str; 1] = ["registered_model_meta"];

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Path relative to the listed root.
    pub path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (files).
    pub size: Option<u64>,
}

/// The proxy path of an artifact root URI (`mlflow-artifacts:/1/<run>/artifacts` → `1/<run>/artifacts`).
pub fn proxy_root(artifact_uri: &str) -> Result<String, MlflowError> {
    let rest = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| {
            MlflowError::Unsupported(format!(
            "artifact root {artifact_uri:?} is not served by the MLflow server's artifact proxy; \
             start the server with --serve-artifacts / --artifacts-destination"
        ))
        })?;
    // `mlflow-artifacts://host:port/path` names the server explicitly; the path is what matters.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
}

fn join(a: &str, b: &str) -> String {
    match (a.trim_matches('/'), b.trim_matches('/')) {
        ("", b) => b.to_string(),
        (a, "") => a.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}

impl MlflowClient {
    fn artifact_url(&self, path: &str) -> Result<url::Url, MlflowError> {
        let mut url = url::Url::parse(&self.url("api/2.0/mlflow-artifacts/artifacts"))
            .map_err(|e| MlflowError::Unsupported(format!("bad tracking URI: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| MlflowError::Unsupported("tracking URI cannot be a base".into()))?
            .extend(path.split('/').filter(|s| !s.is_empty()));
        Ok(url)
    }

    /// Lists one directory under a proxy path; a missing directory is empty.
    pub async fn list_artifact_dir(
        &self,
        proxy_path: &str,
    ) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let v: Value = self
            .call(
                "mlflow-artifacts/list",
                Request::get(
                    "api/2.0/mlflow-artifacts/artifacts",
                    &[("path", proxy_path)],
                ),
            )
            .await?;
        Ok(v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let name = f["path"].as_str()?;
                Some(ArtifactEntry {
                    path: name.rsplit('/').next().unwrap_or(name).to_string(),
                    is_dir: f["is_dir"].as_bool().unwrap_or(false),
                    size: f["file_size"]
                        .as_u64()
                        .or_else(|| f["file_size"].as_str().and_then(|s| s.parse().ok())),
                })
            })
            .collect())
    }

    /// Every file below `proxy_path`, with paths relative to it (`/`-separated), sorted.
    pub async fn list_artifact_files(
        &self,
        proxy_path: &str,
    ) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(rel) = pending.pop() {
            for entry in self.list_artifact_dir(&join(proxy_path, &rel)).await? {
                let path = join(&rel, &entry.path);
                if entry.is_dir {
                    pending.push(path);
                } else {
                    out.push(ArtifactEntry { path, ..entry });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// SHA-256 of one artifact file, streamed (retried from the start on transient failures).
    pub async fn hash_artifact(&self, proxy_path: &str) -> Result<([u8; 32], u64), MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        (|| async {
            self.throttle().await;
            self.count_call();
            let response = self
                .authorize(self.http.get(url.clone()))
                .send()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            let status = response.status().as_u16();
            if status != 200 {
                let message: String = response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect();
                return Err(MlflowError::Http {
                    call: "mlflow-artifacts/download",
                    status,
                    code: None,
                    message,
                });
            }
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok((hasher.finalize().into(), size))
        })
        .retry(self.backoff())
        .when(MlflowError::is_transient)
        .await
    }

    /// Downloads one (small) artifact whole, e.g. a witness `payload.json`.
    pub async fn download_artifact(&self, proxy_path: &str) -> Result<Vec<u8>, MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        (|| async {
            self.throttle().await;
            self.count_call();
            let response = self
                .authorize(self.http.get(url.clone()))
                .send()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            if status != 200 {
                let message: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                return Err(MlflowError::Http {
                    call: "mlflow-artifacts/download",
                    status,
                    code: None,
                    message,
                });
            }
            Ok(bytes.to_vec())
        })
        .retry(self.backoff())
        .when(MlflowError::is_transient)
        .await
    }

    /// Uploads bytes to a proxy path (overwrites; same bytes → same result).
    pub async fn upload_artifact(
        &self,
        proxy_path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        let body = bytes::Bytes::from(bytes);
        (|| async {
            self.throttle().await;
            self.count_call();
            let response = self
                .authorize(
                    self.http
                        .put(url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .body(body.clone()),
                )
                .send()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/upload", &e))?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(());
            }
            let message: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            Err(MlflowError::Http {
                call: "mlflow-artifacts/upload",
                status,
                code: None,
                message,
            })
        })
        .retry(self.backoff())
        .when(MlflowError::is_transient)
        .await
    }

    /// Writes a file into a run's artifacts (`<run artifact root>/<path>`).
    pub async fn upload_run_artifact(
        &self,
        run: &Run,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let root = proxy_root(&run.info.artifact_uri)?;
        self.upload_artifact(&join(&root, path), bytes).await
    }

    /// Reads a file from a run's artifacts.
    pub async fn download_run_artifact(
        &self,
        run: &Run,
        path: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        let root = proxy_root(&run.info.artifact_uri)?;
        self.download_artifact(&join(&root, path)).await
    }

    /// `{relative path: sha256 hex}` of the model directory `runs:/<run>/<artifact_path>`, as
    /// MLflow 3 resolves it (run files overlaid by the same-named LoggedModel of the run);
    /// `registered_model_meta` files are excluded. `Ok(None)` when neither exists.
    pub async fn model_checksums(
        &self,
        run: &Run,
        artifact_path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let mut sources: Vec<String> = Vec::new();
        let run_dir = join(&proxy_root(&run.info.artifact_uri)?, artifact_path);
        let run_files = self.list_artifact_files(&run_dir).await?;
        if !run_files.is_empty() {
            sources.push(run_dir);
        }
        let model_name = artifact_path
            .trim_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        let rest = artifact_path
            .trim_matches('/')
            .split_once('/')
            .map(|(_, r)| r)
            .unwrap_or("");
        if !model_name.is_empty() {
            let filter = format!("name = '{}'", model_name.replace('\'', "\\'"));
            let models = match self
                .search_logged_models(&run.info.experiment_id, &filter)
                .await
            {
                Ok(models) => models,
                // MLflow 2 servers have no LoggedModels.
                Err(MlflowError::Http { status: 404, .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            if let Some(model) = models
                .into_iter()
                .find(|m| m.source_run_id.as_deref() == Some(run.info.run_id.as_str()))
            {
                sources.push(join(&proxy_root(&model.artifact_uri)?, rest));
            }
        }
        if sources.is_empty() {
            return Ok(None);
        }
        let mut checksums = BTreeMap::new();
        for source in sources {
            for file in self.list_artifact_files(&source).await? {
                let basename = file.path.rsplit('/').next().unwrap_or(&file.path);
                if EXCLUDED_ARTIFACT_NAMES.contains(&basename) {
                    continue;
                }
                let (digest, _) = self.hash_artifact(&join(&source, &file.path)).await?;
                checksums.insert(file.path.clone(), hex::encode(digest));
            }
        }
        Ok(Some(checksums))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_roots_strip_the_scheme_and_host() {
        assert_eq!(
            proxy_root("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxy_root("mlflow-artifacts://srv:5000/1/models/m-1/artifacts").unwrap(),
            "1/models/m-1/artifacts"
        );
        assert!(proxy_root("s3://bucket/x").is_err());
        assert_eq!(join("a/", "/b"), "a/b");
        assert_eq!(join("", "b"), "b");
    }
}
