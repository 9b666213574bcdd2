//! A registered version's own files: its `source` resolved to where the bytes are
//! (`runs:/<run>/<path>`, an MLflow 3 LoggedModel `models:/m-…`, another version
//! `models:/<name>/<version>` or `@<alias>`, or a plain artifact URI), whatever the model is
//! called. The anchorer (a registration's `artifact_verified`) and the verifier (its live
//! refetch) both call [`MlflowClient::version_files`], so the two can never disagree on which
//! files a version is.

use std::collections::BTreeMap;

use super::{LoggedModel, MlflowClient, MlflowError, ModelVersion};
use crate::profile::registration::{parse_source, ModelSource};

/// How many `models:/<name>/<version>` hops are followed (a copy of a copy…).
const MAX_HOPS: usize = 4;

/// The files a version serves, and where they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionFiles {
    /// `{relative path: sha256 hex}`; `None` when the source holds no file.
    pub checksums: Option<BTreeMap<String, String>>,
    /// The LoggedModel the source names (directly or through the versions it copies).
    pub logged_model: Option<LoggedModel>,
    /// What was read, for messages (`runs:/…/clf`, `models:/m-…`, the URI).
    pub resolved: String,
}

impl MlflowClient {
    /// Resolves `mv.source` to the files it names and hashes them. A store that cannot be read
    /// is an error, never fewer files; `checksums: None` means the source demonstrably holds
    /// nothing.
    pub async fn version_files(&self, mv: &ModelVersion) -> Result<VersionFiles, MlflowError> {
        let mut source = parse_source(&mv.source);
        let mut hops = 0;
        loop {
            match source {
                ModelSource::Run { run_id, path } => {
                    let run_id = if run_id.is_empty() {
                        mv.run_id.clone()
                    } else {
                        run_id
                    };
                    let run = self.get_run(&run_id).await?;
                    let checksums = self.model_checksums(&run, &path).await?;
                    return Ok(VersionFiles {
                        checksums,
                        logged_model: None,
                        resolved: format!("runs:/{run_id}/{path}"),
                    });
                }
                ModelSource::LoggedModel { model_id } => {
                    let model = self.get_logged_model(&model_id).await?;
                    let checksums = self.directory_checksums(&model.artifact_uri).await?;
                    return Ok(VersionFiles {
                        checksums,
                        resolved: format!("models:/{model_id}"),
                        logged_model: Some(model),
                    });
                }
                ModelSource::Uri(uri) => {
                    let checksums = self.directory_checksums(&uri).await?;
                    return Ok(VersionFiles {
                        checksums,
                        logged_model: None,
                        resolved: uri,
                    });
                }
                ModelSource::Version { .. } | ModelSource::Alias { .. } if hops >= MAX_HOPS => {
                    return Err(MlflowError::Decode {
                        call: "model-versions/get",
                        cause: format!(
                            "{}/{}: source {} refers to other versions more than {MAX_HOPS} times",
                            mv.name, mv.version, mv.source
                        ),
                    })
                }
                ModelSource::Version { name, version } => {
                    hops += 1;
                    source = parse_source(&self.get_model_version(&name, &version).await?.source);
                }
                ModelSource::Alias { name, alias } => {
                    hops += 1;
                    source =
                        parse_source(&self.get_model_version_by_alias(&name, &alias).await?.source);
                }
            }
        }
    }
}
