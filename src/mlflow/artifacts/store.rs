//! Artifact stores the worker reads and writes directly, on Apache Arrow's `object_store`: S3
//! (and S3-compatible servers), Google Cloud Storage, Azure Blob / ADLS Gen2, and local or NFS
//! paths. MLflow servers started without the artifact proxy (`--no-serve-artifacts
//! --default-artifact-root s3://…`) hand out such URIs as a run's `artifact_uri`; MLflow's own
//! Python client reads and writes them directly, and so does the worker.
//!
//! Credentials come from where each ecosystem keeps them — `AWS_*` (keys, session token, web
//! identity, container and instance credentials) and MLflow's `MLFLOW_S3_ENDPOINT_URL`;
//! `GOOGLE_APPLICATION_CREDENTIALS` / `GOOGLE_SERVICE_ACCOUNT*`; `AZURE_STORAGE_*` — read by the
//! `object_store` builders. None of them is ever logged: errors name the store and the path,
//! never a key.
//!
//! One client per bucket (container, …) is built on first use and kept. Retries inside
//! `object_store` are short (the pipeline's own backoff owns the long waits), so a store that is
//! down surfaces as a transient [`ArtifactError`] in seconds, not minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use sha2::{Digest, Sha256};

use super::connector::ReqwestConnector;
use super::{ArtifactEntry, ArtifactError, ArtifactErrorKind};

/// Settings of the directly-read artifact stores (the credentials themselves stay in the
/// environment the SDKs read).
#[derive(Debug, Clone)]
pub struct ArtifactStoreConfig {
    /// `MLFLOW_S3_ENDPOINT_URL`: an S3-compatible endpoint (MinIO, Ceph, …), as MLflow reads it.
    pub s3_endpoint_url: Option<String>,
    /// Files hashed at once per model directory.
    pub concurrency: usize,
    /// Per-request timeout of the store's HTTP client.
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM) for the stores' HTTPS endpoints.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for ArtifactStoreConfig {
    fn default() -> Self {
        ArtifactStoreConfig {
            s3_endpoint_url: None,
            concurrency: 4,
            timeout: Duration::from_secs(300),
            extra_ca_pem: None,
        }
    }
}

/// Which kind of store a URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// `s3://` / `s3a://`.
    S3,
    /// `gs://`.
    Gcs,
    /// `wasbs://` / `abfss://` (and their non-TLS forms).
    Azure,
    /// `file://` or a bare path.
    Local,
}

impl StoreKind {
    /// The name used in messages.
    pub fn label(self) -> &'static str {
        match self {
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "GCS",
            StoreKind::Azure => "Azure Blob",
            StoreKind::Local => "local file system",
        }
    }

    /// What to check when the store refuses access.
    pub fn credentials_hint(self) -> &'static str {
        match self {
            StoreKind::S3 => "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_SESSION_TOKEN, AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, the instance role), MLFLOW_S3_ENDPOINT_URL for an S3-compatible server, and the bucket policy",
            StoreKind::Gcs => "check GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) and the bucket's IAM",
            StoreKind::Azure => "check AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, a SAS token or a service principal (AZURE_CLIENT_ID, …)",
            StoreKind::Local => "check that the worker runs as a user who can read (and, for witnesses, write) this path, and that the volume is mounted",
        }
    }
}

/// A parsed artifact URI: which store, which bucket (or container), which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The store kind.
    pub kind: StoreKind,
    /// Bucket, `container@account`, or empty for local paths.
    pub bucket: String,
    /// The key (local: the absolute path), without leading or trailing `/`.
    pub key: String,
}

/// Parses an artifact URI the worker can reach directly; `Ok(None)` for the MLflow proxy's
/// `mlflow-artifacts:` scheme (served by the tracking server, not here).
pub fn locate(uri: &str) -> Result<Option<Location>, ArtifactError> {
    if uri.starts_with("mlflow-artifacts:") {
        return Ok(None);
    }
    let unsupported = |why: String| ArtifactError {
        uri: uri.to_string(),
        kind: ArtifactErrorKind::Unsupported,
        cause: why,
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        // A bare path, as MLflow records `--default-artifact-root /mnt/mlflow`.
        if uri.starts_with('/') {
            return Ok(Some(Location {
                kind: StoreKind::Local,
                bucket: String::new(),
                key: uri.trim_matches('/').to_string(),
            }));
        }
        return Err(unsupported(format!(
            "artifact root {uri:?} is neither a URI nor an absolute path"
        )));
    };
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    let key = key.trim_matches('/').to_string();
    let kind = match scheme.to_ascii_lowercase().as_str() {
        "s3" | "s3a" => StoreKind::S3,
        "gs" => StoreKind::Gcs,
        "wasbs" | "wasb" | "abfss" | "abfs" => StoreKind::Azure,
        "file" => {
            // file:///abs/path (empty authority) or file://localhost/abs/path.
            if !(authority.is_empty() || authority == "localhost") {
                return Err(unsupported(format!(
                    "file URI {uri:?} names host {authority:?}; mount that share and use a local path"
                )));
            }
            return Ok(Some(Location {
                kind: StoreKind::Local,
                bucket: String::new(),
                key,
            }));
        }
        other => {
            return Err(unsupported(format!(
                "artifact store scheme {other:?} is not supported (supported: mlflow-artifacts, s3, gs, wasbs/abfss, file and absolute paths); serve the artifacts through the MLflow proxy (--serve-artifacts) instead"
            )))
        }
    };
    if authority.is_empty() {
        return Err(unsupported(format!("artifact URI {uri:?} names no bucket")));
    }
    Ok(Some(Location {
        kind,
        bucket: authority.to_string(),
        key,
    }))
}

/// The directly-read stores, built on first use per bucket.
#[derive(Debug)]
pub struct ObjectStores {
    config: ArtifactStoreConfig,
    stores: Mutex<HashMap<(StoreKind, String), Arc<dyn ObjectStore>>>,
}

impl ObjectStores {
    /// Stores configured by `config` (nothing is connected until used).
    pub fn new(config: ArtifactStoreConfig) -> Self {
        ObjectStores {
            config,
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// Files hashed at once per directory.
    pub fn concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    fn store(&self, uri: &str, at: &Location) -> Result<Arc<dyn ObjectStore>, ArtifactError> {
        let mut stores = self
            .stores
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(s) = stores.get(&(at.kind, at.bucket.clone())) {
            return Ok(s.clone());
        }
        let connector = ReqwestConnector {
            timeout: self.config.timeout,
            extra_ca_pem: self.config.extra_ca_pem.clone(),
        };
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        };
        let misconfigured = |e: object_store::Error| ArtifactError {
            uri: uri.to_string(),
            kind: ArtifactErrorKind::Misconfigured,
            cause: format!("cannot configure the {} client: {e}", at.kind.label()),
        };
        let built: Arc<dyn ObjectStore> = match at.kind {
            StoreKind::S3 => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&at.bucket)
                    .with_http_connector(connector)
                    .with_retry(retry);
                if std::env::var_os("AWS_REGION").is_none()
                    && std::env::var_os("AWS_DEFAULT_REGION").is_none()
                {
                    b = b.with_region("us-east-1");
                }
                if let Some(endpoint) = &self.config.s3_endpoint_url {
                    b = b
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                Arc::new(b.build().map_err(misconfigured)?)
            }
            StoreKind::Gcs => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&at.bucket)
                    .with_http_connector(connector)
                    .with_retry(retry)
                    .build()
                    .map_err(misconfigured)?,
            ),
            StoreKind::Azure => {
                let (container, account) = at
                    .bucket
                    .split_once('@')
                    .map(|(c, host)| (c, host.split('.').next().unwrap_or(host)))
                    .ok_or_else(|| ArtifactError {
                        uri: uri.to_string(),
                        kind: ArtifactErrorKind::Unsupported,
                        cause: "an Azure artifact URI must be <scheme>://<container>@<account>.<host>/<path>".into(),
                    })?;
                Arc::new(
                    MicrosoftAzureBuilder::from_env()
                        .with_account(account)
                        .with_container_name(container)
                        .with_http_connector(connector)
                        .with_retry(retry)
                        .build()
                        .map_err(misconfigured)?,
                )
            }
            StoreKind::Local => Arc::new(LocalFileSystem::new()),
        };
        stores.insert((at.kind, at.bucket.clone()), built.clone());
        Ok(built)
    }

    fn path(at: &Location) -> StorePath {
        StorePath::from(at.key.as_str())
    }

    /// Every file below `uri`, paths relative to it, sorted. A missing local directory is empty;
    /// a missing bucket is an error (it would otherwise look like "no model files").
    pub async fn list_files(
        &self,
        uri: &str,
        at: &Location,
    ) -> Result<Vec<ArtifactEntry>, ArtifactError> {
        let store = self.store(uri, at)?;
        let prefix = Self::path(at);
        let listed: Result<Vec<_>, _> = store.list(Some(&prefix)).try_collect().await;
        let objects = match listed {
            Ok(o) => o,
            Err(object_store::Error::NotFound { .. }) if at.kind == StoreKind::Local => Vec::new(),
            Err(e) => return Err(ArtifactError::from_store(uri, at.kind, "list", e)),
        };
        let base = prefix.as_ref();
        let mut out: Vec<ArtifactEntry> = objects
            .into_iter()
            .filter_map(|meta| {
                let full = meta.location.as_ref();
                let rel = if base.is_empty() {
                    full
                } else {
                    full.strip_prefix(base)?.strip_prefix('/')?
                };
                (!rel.is_empty()).then(|| ArtifactEntry {
                    path: rel.to_string(),
                    is_dir: false,
                    size: Some(meta.size),
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The immediate entries of one directory (files and subdirectories).
    pub async fn list_dir(
        &self,
        uri: &str,
        at: &Location,
    ) -> Result<Vec<ArtifactEntry>, ArtifactError> {
        let store = self.store(uri, at)?;
        let prefix = Self::path(at);
        let listing = match store.list_with_delimiter(Some(&prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) if at.kind == StoreKind::Local => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(ArtifactError::from_store(uri, at.kind, "list", e)),
        };
        let name = |p: &StorePath| p.filename().unwrap_or_default().to_string();
        let mut out: Vec<ArtifactEntry> = listing
            .common_prefixes
            .iter()
            .map(|p| ArtifactEntry {
                path: name(p),
                is_dir: true,
                size: None,
            })
            .chain(listing.objects.iter().map(|m| ArtifactEntry {
                path: name(&m.location),
                is_dir: false,
                size: Some(m.size),
            }))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// SHA-256 and size of one object, streamed.
    pub async fn hash(&self, uri: &str, at: &Location) -> Result<([u8; 32], u64), ArtifactError> {
        let store = self.store(uri, at)?;
        let result = store
            .get(&Self::path(at))
            .await
            .map_err(|e| ArtifactError::from_store(uri, at.kind, "read", e))?;
        let mut stream = result.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ArtifactError::from_store(uri, at.kind, "read", e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        crate::telemetry::bytes_hashed(size);
        Ok((hasher.finalize().into(), size))
    }

    /// One (small) object whole.
    pub async fn get(&self, uri: &str, at: &Location) -> Result<Vec<u8>, ArtifactError> {
        let store = self.store(uri, at)?;
        let bytes = store
            .get(&Self::path(at))
            .await
            .map_err(|e| ArtifactError::from_store(uri, at.kind, "read", e))?
            .bytes()
            .await
            .map_err(|e| ArtifactError::from_store(uri, at.kind, "read", e))?;
        Ok(bytes.to_vec())
    }

    /// Writes one object (overwrites: the same bytes give the same result).
    pub async fn put(&self, uri: &str, at: &Location, bytes: Vec<u8>) -> Result<(), ArtifactError> {
        let store = self.store(uri, at)?;
        store
            .put(&Self::path(at), PutPayload::from(bytes))
            .await
            .map_err(|e| ArtifactError::from_store(uri, at.kind, "write", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_name_their_store_bucket_and_key() {
        let at = locate("s3://mlflow/1/abc/artifacts/").unwrap().unwrap();
        assert_eq!(
            (at.kind, at.bucket.as_str(), at.key.as_str()),
            (StoreKind::S3, "mlflow", "1/abc/artifacts")
        );
        let at = locate("gs://b/x").unwrap().unwrap();
        assert_eq!((at.kind, at.key.as_str()), (StoreKind::Gcs, "x"));
        let at = locate("wasbs://c@acct.blob.core.windows.net/p/q")
            .unwrap()
            .unwrap();
        assert_eq!(
            (at.kind, at.bucket.as_str(), at.key.as_str()),
            (StoreKind::Azure, "c@acct.blob.core.windows.net", "p/q")
        );
        let at = locate("file:///srv/mlflow/1").unwrap().unwrap();
        assert_eq!(
            (at.kind, at.key.as_str()),
            (StoreKind::Local, "srv/mlflow/1")
        );
        let at = locate("/srv/mlflow/2").unwrap().unwrap();
        assert_eq!(
            (at.kind, at.key.as_str()),
            (StoreKind::Local, "srv/mlflow/2")
        );
        assert_eq!(locate("mlflow-artifacts:/1/abc/artifacts").unwrap(), None);
        for bad in [
            "hdfs://nn/x",
            "dbfs:/x",
            "relative/path",
            "s3:///nokey",
            "file://host/x",
        ] {
            let e = locate(bad).unwrap_err();
            assert_eq!(e.kind, ArtifactErrorKind::Unsupported, "{bad}: {e}");
        }
    }
}
