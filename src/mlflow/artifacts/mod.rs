//! MLflow artifacts where they live: the tracking server's proxy (`mlflow-artifacts:/…`) or,
//! for servers that hand out the store's own URIs, S3, GCS, Azure Blob and local or NFS paths
//! read directly ([`store`]). The store is chosen by the URI's scheme; every read, hash and
//! write of the worker (training and registration checksums, witness artifacts, verification's
//! re-hash) goes through [`MlflowClient`]'s methods here, so they work the same on every store.
//!
//! * Listing is recursive; downloads for hashing are **streamed into SHA-256** (constant memory,
//!   no temp files), several files of a directory at once (bounded).
//! * [`MlflowClient::model_checksums`] mirrors how MLflow 3's `runs:/<run>/<path>` resolves a
//!   model directory — the run's own `<path>/` files, overlaid by the files of the LoggedModel of
//!   that run named `<path>` — so the checksums equal what the plugin's
//!   `mlflow.artifacts.download_artifacts(run_id, path)` + `os.walk` produce.
//! * A store that cannot be read is an [`ArtifactError`], never an empty result: the caller
//!   decides (the anchorer waits or parks; it never signs a proof that commits to no files
//!   because the files could not be read).

mod connector;
mod proxy;
pub mod store;

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};

pub use proxy::proxy_root;
pub use store::{ArtifactStoreConfig, StoreKind};

use super::client::{MlflowClient, MlflowError};
use super::types::Run;
use store::locate;

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

/// What went wrong with a directly-read artifact store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactErrorKind {
    /// The object or bucket does not exist.
    NotFound,
    /// The store refused the credentials or the access (401/403).
    Denied,
    /// The store could not be reached or answered 5xx (retried later).
    Unavailable,
    /// The URI's scheme or form is not one the worker reads.
    Unsupported,
    /// The store client cannot be configured (missing region, bad endpoint, …).
    Misconfigured,
}

/// A failed artifact-store operation: what, where, why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("artifact store: {cause} [{uri}]{}", self.fix().map(|f| format!("; {f}")).unwrap_or_default())]
pub struct ArtifactError {
    /// The artifact URI (no credentials are ever part of one here).
    pub uri: String,
    /// The kind of failure.
    pub kind: ArtifactErrorKind,
    /// What failed, in words.
    pub cause: String,
}

impl ArtifactError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        self.kind == ArtifactErrorKind::Unavailable
    }

    /// The likely fix.
    pub fn fix(&self) -> Option<String> {
        let kind = locate(&self.uri).ok().flatten().map(|l| l.kind);
        match self.kind {
            ArtifactErrorKind::Denied => kind.map(|k| k.credentials_hint().to_string()),
            ArtifactErrorKind::Unavailable => {
                Some("the store is unreachable or failing; the worker retries with backoff".into())
            }
            ArtifactErrorKind::NotFound => Some(
                "the file MLflow lists is not in the store (deleted or moved?); restore it, then `retry`".into(),
            ),
            ArtifactErrorKind::Misconfigured => kind.map(|k| k.credentials_hint().to_string()),
            ArtifactErrorKind::Unsupported => None,
        }
    }

    /// Maps an `object_store` error, keeping its message but never a credential.
    fn from_store(uri: &str, kind: StoreKind, op: &str, e: object_store::Error) -> Self {
        use object_store::Error as E;
        let (error_kind, what) = match &e {
            E::NotFound { .. } => (ArtifactErrorKind::NotFound, "not found"),
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                (ArtifactErrorKind::Denied, "access denied")
            }
            E::NotSupported { .. } | E::NotImplemented { .. } => {
                (ArtifactErrorKind::Unsupported, "not supported")
            }
            // Wrapped request errors (a listing's, say) keep the HTTP status only in their text.
            other => match http_status(other) {
                Some(401 | 403) => (ArtifactErrorKind::Denied, "access denied"),
                Some(404) => (ArtifactErrorKind::NotFound, "not found"),
                Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                    (ArtifactErrorKind::Misconfigured, "refused")
                }
                // Transport failures, 408/429 and 5xx after the client's own short retries.
                _ => (ArtifactErrorKind::Unavailable, "failed"),
            },
        };
        ArtifactError {
            uri: uri.to_string(),
            kind: error_kind,
            cause: format!("{} {op} {what}: {e}", kind.label()),
        }
    }
}

/// The HTTP status an `object_store` error carries in its message chain
/// (`… non-2xx status code: 403 Forbidden …`), if any: its retry error type is not public.
fn http_status(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if let Some(at) = text.find("status code: ") {
            let digits: String = text[at + 13..].chars().take(3).collect();
            if let Ok(code) = digits.parse::<u16>() {
                return Some(code);
            }
        }
        next = err.source();
    }
    None
}

/// `<root>/<path>` for any artifact URI (`/` between, none doubled).
pub fn join_uri(root: &str, path: &str) -> String {
    match (root.trim_end_matches('/'), path.trim_matches('/')) {
        (r, "") => r.to_string(),
        ("", p) => p.to_string(),
        (r, p) => format!("{r}/{p}"),
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.trim_matches('/'), b.trim_matches('/')) {
        ("", b) => b.to_string(),
        (a, "") => a.to_string(),
        (a, b) => format!("{a}/{b}"),
    }
}

impl MlflowClient {
    /// Lists one directory of an artifact URI (files and subdirectories); a missing directory is
    /// empty.
    pub async fn list_artifact_dir(&self, uri: &str) -> Result<Vec<ArtifactEntry>, MlflowError> {
        match locate(uri)? {
            None => self.proxy_list_dir(&proxy_root(uri)?).await,
            Some(at) => Ok(self.stores.list_dir(uri, &at).await?),
        }
    }

    /// Every file below an artifact URI, with paths relative to it (`/`-separated), sorted.
    pub async fn list_artifact_files(&self, uri: &str) -> Result<Vec<ArtifactEntry>, MlflowError> {
        let Some(at) = locate(uri)? else {
            let root = proxy_root(uri)?;
            let mut out = Vec::new();
            let mut pending = vec![String::new()];
            while let Some(rel) = pending.pop() {
                for entry in self.proxy_list_dir(&join(&root, &rel)).await? {
                    let path = join(&rel, &entry.path);
                    if entry.is_dir {
                        pending.push(path);
                    } else {
                        out.push(ArtifactEntry { path, ..entry });
                    }
                }
            }
            out.sort_by(|a, b| a.path.cmp(&b.path));
            return Ok(out);
        };
        Ok(self.stores.list_files(uri, &at).await?)
    }

    /// SHA-256 and size of one artifact file, streamed.
    pub async fn hash_artifact(&self, uri: &str) -> Result<([u8; 32], u64), MlflowError> {
        match locate(uri)? {
            None => self.proxy_hash(&proxy_root(uri)?).await,
            Some(at) => Ok(self.stores.hash(uri, &at).await?),
        }
    }

    /// Downloads one (small) artifact whole, e.g. a witness `payload.json`.
    pub async fn download_artifact(&self, uri: &str) -> Result<Vec<u8>, MlflowError> {
        match locate(uri)? {
            None => self.proxy_download(&proxy_root(uri)?).await,
            Some(at) => Ok(self.stores.get(uri, &at).await?),
        }
    }

    /// Writes one artifact (overwrites; the same bytes give the same result).
    pub async fn upload_artifact(&self, uri: &str, bytes: Vec<u8>) -> Result<(), MlflowError> {
        match locate(uri)? {
            None => self.proxy_upload(&proxy_root(uri)?, bytes).await,
            Some(at) => Ok(self.stores.put(uri, &at, bytes).await?),
        }
    }

    /// Writes a file into a run's artifacts (`<run artifact root>/<path>`).
    pub async fn upload_run_artifact(
        &self,
        run: &Run,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), MlflowError> {
        self.upload_artifact(&join_uri(&run.info.artifact_uri, path), bytes)
            .await
    }

    /// Reads a file from a run's artifacts.
    pub async fn download_run_artifact(
        &self,
        run: &Run,
        path: &str,
    ) -> Result<Vec<u8>, MlflowError> {
        self.download_artifact(&join_uri(&run.info.artifact_uri, path))
            .await
    }

    /// `{relative path: sha256 hex}` of the model directory `runs:/<run>/<artifact_path>`, as
    /// MLflow 3 resolves it (run files overlaid by the same-named LoggedModel of the run);
    /// `registered_model_meta` files are excluded. `Ok(None)` when neither holds a file — the
    /// run demonstrably has no model there. Any listing or read failure is an error, never a
    /// smaller map: a file that is listed but cannot be read fails the whole directory.
    pub async fn model_checksums(
        &self,
        run: &Run,
        artifact_path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let mut sources: Vec<(String, Vec<ArtifactEntry>)> = Vec::new();
        let run_dir = join_uri(&run.info.artifact_uri, artifact_path);
        let run_files = self.list_artifact_files(&run_dir).await?;
        if !run_files.is_empty() {
            sources.push((run_dir, run_files));
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
                let dir = join_uri(&model.artifact_uri, rest);
                let files = self.list_artifact_files(&dir).await?;
                if files.is_empty() {
                    // The run logged this model, yet the store holds nothing for it: not "no
                    // model" but files that cannot be read.
                    return Err(ArtifactError {
                        uri: dir,
                        kind: ArtifactErrorKind::NotFound,
                        cause: format!(
                            "run {} logged model {:?} ({}), but its artifact directory is empty or not readable",
                            run.info.run_id, model_name, model.model_id
                        ),
                    }
                    .into());
                }
                sources.push((dir, files));
            }
        }
        self.hash_sources(sources).await
    }

    /// `{relative path: sha256 hex}` of every file below one artifact directory URI (MLflow's
    /// `registered_model_meta` excluded); `Ok(None)` when it holds no file.
    pub async fn directory_checksums(
        &self,
        uri: &str,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        let files = self.list_artifact_files(uri).await?;
        if files.is_empty() {
            return Ok(None);
        }
        self.hash_sources(vec![(uri.to_string(), files)]).await
    }

    /// Hashes every listed file of every source (later sources overlay earlier ones on the same
    /// relative path); `None` when there is none.
    async fn hash_sources(
        &self,
        sources: Vec<(String, Vec<ArtifactEntry>)>,
    ) -> Result<Option<BTreeMap<String, String>>, MlflowError> {
        if sources.is_empty() {
            return Ok(None);
        }
        let concurrency = self.stores.concurrency();
        let mut checksums = BTreeMap::new();
        for (source, files) in sources {
            let wanted = files.into_iter().filter(|f| {
                let basename = f.path.rsplit('/').next().unwrap_or(&f.path);
                !EXCLUDED_ARTIFACT_NAMES.contains(&basename)
            });
            let hashed: Vec<(String, String)> = futures::stream::iter(wanted)
                .map(|file| {
                    let uri = join_uri(&source, &file.path);
                    async move {
                        let (digest, _) = self
                            .hash_artifact(&uri)
                            .await
                            .map_err(|e| listed_but_unreadable(e, &uri))?;
                        Ok::<_, MlflowError>((file.path, hex::encode(digest)))
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect()
                .await?;
            checksums.extend(hashed);
        }
        Ok(Some(checksums))
    }
}

/// A listed file that then cannot be read is named as such.
fn listed_but_unreadable(e: MlflowError, uri: &str) -> MlflowError {
    match e {
        MlflowError::Artifact(a) if a.kind == ArtifactErrorKind::NotFound => {
            MlflowError::Artifact(ArtifactError {
                cause: format!("listed but not readable: {}", a.cause),
                ..a
            })
        }
        MlflowError::Http { status: 404, .. } => MlflowError::Artifact(ArtifactError {
            uri: uri.to_string(),
            kind: ArtifactErrorKind::NotFound,
            cause: format!("listed but not readable through the MLflow proxy: {e}"),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_join_with_one_slash() {
        assert_eq!(
            join_uri("s3://b/1/r/artifacts/", "/model/"),
            "s3://b/1/r/artifacts/model"
        );
        assert_eq!(
            join_uri("mlflow-artifacts:/1/r", "ario/proof.json"),
            "mlflow-artifacts:/1/r/ario/proof.json"
        );
        assert_eq!(join_uri("file:///srv/a", ""), "file:///srv/a");
        assert_eq!(join("a/", "/b"), "a/b");
        assert_eq!(join("", "b"), "b");
    }

    #[test]
    fn a_wrapped_403_is_access_denied_and_a_503_is_transient() {
        let wrapped = |text: &str| object_store::Error::Generic {
            store: "S3",
            source: text.to_string().into(),
        };
        let e = ArtifactError::from_store(
            "s3://b/k",
            StoreKind::S3,
            "list",
            wrapped("Error performing list request: Server returned non-2xx status code: 403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code></Error>"),
        );
        assert_eq!(e.kind, ArtifactErrorKind::Denied, "{e}");
        assert!(!e.is_transient());
        let e = ArtifactError::from_store(
            "s3://b/k",
            StoreKind::S3,
            "list",
            wrapped("Server returned non-2xx status code: 503 Service Unavailable"),
        );
        assert!(e.is_transient(), "{e}");
        let e = ArtifactError::from_store(
            "s3://b/k",
            StoreKind::S3,
            "list",
            wrapped("error sending request: connection refused"),
        );
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn errors_say_what_where_and_the_fix() {
        let e = ArtifactError {
            uri: "s3://bucket/1/r/artifacts/model/model.pkl".into(),
            kind: ArtifactErrorKind::Denied,
            cause: "S3 read access denied: 403".into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("s3://bucket/1/r/artifacts/model/model.pkl"),
            "{text}"
        );
        assert!(text.contains("AWS_ACCESS_KEY_ID"), "{text}");
        assert!(!e.is_transient());
        let down = ArtifactError {
            kind: ArtifactErrorKind::Unavailable,
            ..e
        };
        assert!(down.is_transient());
    }
}
