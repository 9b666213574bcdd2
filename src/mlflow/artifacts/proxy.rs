//! Artifacts through MLflow's proxy (`/api/2.0/mlflow-artifacts/artifacts/<root>/<path>`), for
//! `mlflow-artifacts:` roots: listing one directory at a time, downloads **streamed into
//! SHA-256** (constant memory, no temp files), and uploads as a raw `PUT` (the proxy overwrites
//! silently, which makes write-back idempotent). Every call is retried on transient failures.

use backon::Retryable;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ArtifactEntry;
use crate::mlflow::client::{MlflowClient, MlflowError, Request};

/// The proxy path of an artifact root URI (`mlflow-artifacts:/1/<run>/artifacts` → `1/<run>/artifacts`).
pub fn proxy_root(artifact_uri: &str) -> Result<String, MlflowError> {
    let rest = artifact_uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| {
            MlflowError::Unsupported(format!(
                "artifact root {artifact_uri:?} is not served by the MLflow server's artifact proxy"
            ))
        })?;
    // `mlflow-artifacts://host:port/path` names the server explicitly; the path is what matters.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
        None => rest,
    };
    Ok(path.trim_matches('/').to_string())
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
    pub(super) async fn proxy_list_dir(
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

    /// SHA-256 of one artifact file, streamed (retried from the start on transient failures).
    pub(super) async fn proxy_hash(
        &self,
        proxy_path: &str,
    ) -> Result<([u8; 32], u64), MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        (|| async {
            self.throttle().await;
            self.count_call();
            let started = std::time::Instant::now();
            let response = self
                .authorize(self.http.get(url.clone()))
                .send()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            let status = response.status().as_u16();
            crate::telemetry::mlflow_request("mlflow-artifacts", Some(status), started.elapsed());
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
            crate::telemetry::bytes_hashed(size);
            Ok((hasher.finalize().into(), size))
        })
        .retry(self.backoff())
        .when(MlflowError::is_transient)
        .await
    }

    /// Downloads one (small) artifact whole, e.g. a witness `payload.json`.
    pub(super) async fn proxy_download(&self, proxy_path: &str) -> Result<Vec<u8>, MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        (|| async {
            self.throttle().await;
            self.count_call();
            let started = std::time::Instant::now();
            let response = self
                .authorize(self.http.get(url.clone()))
                .send()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            let status = response.status().as_u16();
            crate::telemetry::mlflow_request("mlflow-artifacts", Some(status), started.elapsed());
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport("mlflow-artifacts/download", &e))?;
            if status != 200 {
                let message: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
                return Err(MlflowError::Http {
                    call: "mlflow-artifacts/download",
                    status: if missing_file_answer(status, &bytes) {
                        404
                    } else {
                        status
                    },
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
    pub(super) async fn proxy_upload(
        &self,
        proxy_path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        let url = self.artifact_url(proxy_path)?;
        let body = bytes::Bytes::from(bytes);
        (|| async {
            self.throttle().await;
            self.count_call();
            let started = std::time::Instant::now();
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
            crate::telemetry::mlflow_request("mlflow-artifacts", Some(status), started.elapsed());
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
}

/// Whether an error answer to an artifact download means the file does not exist: MLflow 3
/// answers 404, MLflow 2.x a 500 `INTERNAL_ERROR` carrying the store's own "no such file"
/// (seen with 2.22.1 on a local artifact root: `[Errno 2] No such file or directory`), which
/// must not be retried as a server failure.
fn missing_file_answer(status: u16, body: &[u8]) -> bool {
    if status == 404 {
        return true;
    }
    if status != 500 {
        return false;
    }
    let body = String::from_utf8_lossy(body);
    body.contains("INTERNAL_ERROR")
        && [
            "No such file or directory",
            "NoSuchKey",
            "(404)",
            "BlobNotFound",
        ]
        .iter()
        .any(|m| body.contains(m))
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
    }

    #[test]
    fn mlflow_2s_internal_error_for_a_missing_file_is_a_404() {
        // MLflow 2.22.1's answer for a file its local artifact root does not hold.
        let missing = br#"{"error_code": "INTERNAL_ERROR", "message": "The following failures occurred while downloading one or more artifacts from /tmp/a/artifacts:\n##### File 0/r/x.json #####\n[Errno 2] No such file or directory: '/tmp/a/artifacts/0/r/x.json'"}"#;
        assert!(missing_file_answer(500, missing));
        assert!(missing_file_answer(404, b""));
        // A server failure stays one (retried).
        assert!(!missing_file_answer(
            500,
            br#"{"error_code": "INTERNAL_ERROR", "message": "database is locked"}"#
        ));
        assert!(!missing_file_answer(503, missing));
    }
}
