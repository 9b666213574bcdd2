//! Registration events: a new model version → its registration payload (do the version's own
//! files, resolved from its `source` whatever the model is called, still hash to what the
//! training proof anchored?) → signed onto the source run's training TX. The training proof
//! comes first (a dependency), so the chain links.
//!
//! Witnesses are per event (`ario/registrations/<event_id>/…` on the source run) so versions
//! registered from one run never overwrite each other's; the plugin's shared
//! `ario/registration_payload.json` is claimed by the run's first registration only
//! ([`Write::SharedArtifact`]). A version with no run keeps its payload in a version tag.

use super::resolve::{plugin_present, Context, Resolution, SignPlan, Skip, SkipKind, Wait};
use super::sign::sign_event;
use super::{wallet_tags, AnchorError, Anchored, Anchorer};
use crate::event::ChangeEvent;
use crate::mlflow::{ModelVersion, Run};
use crate::profile::registration::{self, RegistrationFacts};
use crate::profile::{tags, training, witness, GENESIS};
use crate::proof::sha256_hex;
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

/// A version, its source run, and the registration TX its later events chain to.
pub type Registered = (ModelVersion, Option<Run>, String);

impl Anchorer {
    /// Anchors a model version's registration (`anchor model <name>/<version>`), its source
    /// run's training proof first when missing.
    pub async fn anchor_model_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Vec<Anchored>, AnchorError> {
        self.anchor_event(&ChangeEvent::ModelVersionCreated {
            name: name.into(),
            version: version.into(),
            created_ms: None,
        })
        .await
    }

    /// The version an event names: under `name`, else under the model's current name when it
    /// was renamed since; `created_ms` (when known) must be the version's creation time, so a
    /// model deleted and re-created under the same name is not taken for the old one.
    pub async fn locate_version(
        &self,
        name: &str,
        version: &str,
        created_ms: Option<i64>,
        ctx: &Context<'_>,
    ) -> Result<Option<ModelVersion>, AnchorError> {
        let mut names = vec![name.to_string()];
        names.extend(ctx.current_name(name));
        for n in names {
            match self.mlflow.get_model_version(&n, version).await {
                Ok(mv) if created_ms.is_none() || mv.creation_timestamp == created_ms => {
                    return Ok(Some(mv))
                }
                Ok(_) => continue,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// A new model version:
    /// * gone (deleted, or re-created since: another creation time) → skipped;
    /// * `ario.registration_tx` present → already anchored;
    /// * its source run's training proof missing → wait for it (GENESIS after the limit);
    /// * its run started with the plugin installed, and younger than the grace period → wait,
    ///   the plugin may be anchoring it;
    /// * signed elsewhere and never uploaded (`ario.payload_hash` and a witness that hashes to
    ///   it) → that proof, adopted;
    /// * otherwise a new proof over the version's own files.
    pub async fn resolve_registration(
        &self,
        name: &str,
        version: &str,
        created_ms: Option<i64>,
        ctx: &Context<'_>,
    ) -> Result<Resolution, AnchorError> {
        let Some(mv) = self.locate_version(name, version, created_ms, ctx).await? else {
            return Ok(Skip::because(
                SkipKind::Gone,
                format!("{name}/{version} no longer exists"),
            ));
        };
        let label = format!("{}/{}", mv.name, mv.version);
        if let Some(tx) = mv.tag(registration::TX_TAG) {
            return Ok(Skip::anchored(
                SkipKind::AlreadyAnchored,
                "already anchored (ario.registration_tx present)",
                registration::EVENT_TYPE,
                label,
                tx,
                mv.tag(tags::PAYLOAD_HASH).unwrap_or(""),
            ));
        }
        match mv.status.as_str() {
            "" | "READY" => {}
            "FAILED_REGISTRATION" => {
                return Ok(Skip::because(
                    SkipKind::NotApplicable,
                    format!("{label}: registration failed in MLflow"),
                ))
            }
            other if ctx.expired(ctx.limits.max_dependency_wait) && !ctx.oneshot => {
                return Ok(Resolution::Park(format!(
                    "{label} is still {other} after {:?}",
                    ctx.limits.max_dependency_wait
                )))
            }
            other => return Ok(Wait::on(format!("{label} is {other}"))),
        }
        let source_run_id = registration_source_run(&mv)?;
        let run = match &source_run_id {
            Some(id) => Some(self.mlflow.get_run(id).await?),
            None => None,
        };
        if let Some(r) = &run {
            if r.tag(training::TX_TAG).is_none() {
                if !ctx.expired(ctx.limits.max_dependency_wait) || ctx.oneshot {
                    if r.info.status == "FINISHED" && r.info.lifecycle_stage != "deleted" {
                        return Ok(Wait::for_event(ChangeEvent::run_finished(
                            r.info.run_id.clone(),
                            r.info.end_time,
                        )));
                    }
                    if !ctx.oneshot {
                        return Ok(Wait::on(format!("run/{}", r.info.run_id)));
                    }
                }
                tracing::warn!(version = %label, run_id = %r.info.run_id, "source run never got a training proof; registration chains to GENESIS");
            }
            // The one-shot command acts when asked; the service leaves the plugin its grace.
            if plugin_present(r) && !ctx.oneshot {
                let age = ctx
                    .now_ms
                    .saturating_sub(mv.creation_timestamp.unwrap_or(0).max(0) as u64);
                let grace = ctx.limits.plugin_grace.as_millis() as u64;
                if age < grace {
                    return Ok(Wait::on(format!(
                        "{label}: its run was started with the ar-io-mlflow plugin, which may be anchoring it (grace {} s left)",
                        (grace - age) / 1000 + 1
                    )));
                }
            }
        }
        if let Some(hash) = mv.tag(tags::PAYLOAD_HASH) {
            if let Some(p) = self.pending_registration(&mv, run.as_ref(), hash).await? {
                return Ok(SignPlan::adopted(p, None));
            }
        }
        self.sign_registration(&mv, run.as_ref(), source_run_id.as_deref())
            .await
    }

    /// A registration signed elsewhere and never uploaded whose witness still hashes to the
    /// version's `ario.payload_hash` (ours per event, or the plugin's shared one), restored for
    /// upload. `None` when no such witness is found (a new proof is then signed).
    async fn pending_registration(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        payload_hash: &str,
    ) -> Result<Option<Prepared>, AnchorError> {
        let Some(run) = run else { return Ok(None) };
        let read = |path: String| async move {
            match self.mlflow.download_run_artifact(run, &path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(AnchorError::from(e)),
            }
        };
        let mut candidates: Vec<(String, String)> = Vec::new();
        let dir = crate::mlflow::artifacts::join_uri(
            &run.info.artifact_uri,
            &format!("ario/{}", registration::WITNESS_DIR),
        );
        for entry in self.mlflow.list_artifact_dir(&dir).await? {
            if entry.is_dir {
                let id = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                candidates.push((
                    registration::witness_path(id, witness::PAYLOAD_FILE),
                    registration::witness_path(id, witness::PROOF_FILE),
                ));
            }
        }
        candidates.push((
            registration::PAYLOAD_ARTIFACT.into(),
            registration::PROOF_ARTIFACT.into(),
        ));
        for (payload_path, proof_path) in candidates {
            let Some(payload) = read(payload_path.clone()).await? else {
                continue;
            };
            if sha256_hex(&payload) != payload_hash {
                continue;
            }
            let Some(proof) = read(proof_path).await? else {
                continue;
            };
            let p = self.restore(
                &proof,
                payload,
                registration::EVENT_TYPE,
                format!("{}/{}", mv.name, mv.version),
                registration_anchored_writes(mv, Some(run), None),
            )?;
            let about = &p.envelope["subject"];
            if about["version"].as_str() == Some(mv.version.as_str()) {
                tracing::info!(version = %format!("{}/{}", mv.name, mv.version), witness = %payload_path, "adopting a registration signed earlier and never uploaded");
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    /// Signs a registration over the version's own files: `artifact_verified` compares them
    /// with the source run's `ario.artifact_hash`; with no such hash the payload commits to the
    /// files themselves; a version with no run whose source holds no file is skipped (its proof
    /// would commit to nothing). A store that cannot be read is an error, never "no files".
    async fn sign_registration(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        source_run_id: Option<&str>,
    ) -> Result<Resolution, AnchorError> {
        let (name, version) = (&mv.name, &mv.version);
        let files = self.mlflow.version_files(mv).await?;
        let expected = run
            .and_then(|r| r.tag(tags::ARTIFACT_HASH))
            .map(str::to_owned);
        let actual = files.checksums.as_ref().and_then(training::artifact_hash);
        let (artifact_verified, own_files) = match (&expected, &files.checksums) {
            (Some(e), Some(_)) => (Some(actual.as_deref() == Some(e.as_str())), None),
            // Nothing to compare with: the version commits to its files themselves.
            (None, Some(c)) => (None, Some(c)),
            // No files at the source: as the plugin, nothing is verified — the proof still
            // binds the version to its source run, whose training proof it chains to.
            (_, None) if run.is_some() => (None, None),
            (_, None) => {
                return Ok(Skip::because(
                    SkipKind::NotApplicable,
                    format!(
                        "{name}/{version}: its source {} holds no files and it has no run: nothing to commit to",
                        mv.source
                    ),
                ))
            }
        };
        let previous = run
            .and_then(|r| r.tag(training::TX_TAG))
            .unwrap_or(GENESIS)
            .to_string();
        let payload = registration::payload(&RegistrationFacts {
            model_name: name,
            model_version: version,
            source: &mv.source,
            source_run_id,
            artifact_verified,
            artifact_hash: expected.as_deref(),
            artifact_checksums: own_files,
        });
        let ev = sign_event(
            registration::EVENT_TYPE,
            registration::subject(name, version),
            &previous,
            &payload,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let mut signed = Vec::new();
        match run {
            Some(r) => {
                let root = &r.info.artifact_uri;
                for (file, content) in [
                    (witness::PAYLOAD_FILE, ArtifactContent::Payload),
                    (witness::PROOF_FILE, ArtifactContent::Proof),
                ] {
                    signed.push(Write::Artifact {
                        artifact_uri: root.clone(),
                        path: registration::witness_path(&ev.event_id, file),
                        content,
                    });
                }
                // The plugin's one-per-run witness, for the run's first registration only (and
                // only while it is free or ours): the version the plugin can check.
                if self.first_version_of_run(mv, r).await? {
                    for (path, content) in [
                        (registration::PAYLOAD_ARTIFACT, ArtifactContent::Payload),
                        (registration::PROOF_ARTIFACT, ArtifactContent::Proof),
                    ] {
                        signed.push(Write::SharedArtifact {
                            artifact_uri: root.clone(),
                            path: path.into(),
                            content,
                            claim: registration::PAYLOAD_ARTIFACT.into(),
                        });
                    }
                }
            }
            None => signed.push(Write::ModelVersionTag {
                name: name.clone(),
                version: version.clone(),
                key: registration::PAYLOAD_TAG.into(),
                value: TagValue::Text(String::from_utf8_lossy(&ev.payload_bytes).into_owned()),
            }),
        }
        let mut version_tags = vec![
            (tags::VERIFY_STATUS, tags::STATUS_SIGNED.to_string()),
            (tags::PUBLIC_KEY, self.key.public_key_hex()),
            (tags::PAYLOAD_HASH, ev.payload_hash.clone()),
            (tags::WALLET_MODE, wallet_tags(&self.wallet)[0].1.clone()),
        ];
        if let Some(v) = artifact_verified {
            version_tags.push((registration::ARTIFACT_VERIFIED_TAG, v.to_string()));
        }
        signed.extend(
            version_tags
                .into_iter()
                .map(|(k, v)| Write::ModelVersionTag {
                    name: name.clone(),
                    version: version.clone(),
                    key: k.into(),
                    value: TagValue::Text(v),
                }),
        );
        let anchored = registration_anchored_writes(mv, run, Some(&ev.event_id));
        Ok(SignPlan::signed(Prepared::new(
            ev,
            registration::EVENT_TYPE,
            format!("{name}/{version}"),
            signed,
            anchored,
        )))
    }

    /// Whether `mv` is the first version registered from run `run` (by creation time, across
    /// every model): the one whose proof the plugin's shared witness holds.
    async fn first_version_of_run(
        &self,
        mv: &ModelVersion,
        run: &Run,
    ) -> Result<bool, AnchorError> {
        let versions = self
            .mlflow
            .search_model_versions(&format!("run_id='{}'", run.info.run_id))
            .await?;
        let first = versions.iter().min_by_key(|v| {
            (
                v.creation_timestamp.unwrap_or(i64::MAX),
                v.name.clone(),
                v.version.parse::<u64>().unwrap_or(u64::MAX),
            )
        });
        Ok(first.is_none_or(|f| f.name == mv.name && f.version == mv.version))
    }

    /// The version, its run, and its registration TX — or the resolution to take while the
    /// registration is not anchored yet (waiting on it; GENESIS once waited too long). A change
    /// seen at `seen_ms` (0: not checked) before the version was created was an earlier
    /// model's, and is skipped.
    pub async fn registered_version(
        &self,
        name: &str,
        version: &str,
        seen_ms: i64,
        ctx: &Context<'_>,
    ) -> Result<Result<Registered, Resolution>, AnchorError> {
        let Some(mv) = self.locate_version(name, version, None, ctx).await? else {
            return Ok(Err(Skip::because(
                SkipKind::Gone,
                format!("{name}/{version} no longer exists"),
            )));
        };
        // A change seen before the version existed is about an earlier model of that name
        // (deleted and re-created since): not this version's.
        if seen_ms > 0 && mv.creation_timestamp.is_some_and(|c| c > seen_ms) {
            return Ok(Err(Skip::because(
                SkipKind::Gone,
                format!(
                    "{name}/{version} was created after this change was seen: the change was the deleted model's"
                ),
            )));
        }
        let reg = match mv.tag(registration::TX_TAG) {
            Some(tx) => tx.to_string(),
            None if !ctx.expired(ctx.limits.max_dependency_wait) || ctx.oneshot => {
                let dependency = ChangeEvent::ModelVersionCreated {
                    name: mv.name.clone(),
                    version: mv.version.clone(),
                    created_ms: mv.creation_timestamp,
                };
                return Ok(Err(Wait::for_event(dependency)));
            }
            None => GENESIS.to_string(),
        };
        let run = if mv.run_id.is_empty() {
            None
        } else {
            match self.mlflow.get_run(&mv.run_id).await {
                Ok(r) => Some(r),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Ok((mv, run, reg)))
    }
}

/// The source run of a registration: the version's `run_id`, else the `runs:/` source; an
/// error when both are present and disagree (the plugin refuses too).
pub fn registration_source_run(mv: &ModelVersion) -> Result<Option<String>, AnchorError> {
    registration::source_run(&mv.name, &mv.version, &mv.run_id, &mv.source)
        .map_err(|e| AnchorError::Inconsistent(e.to_string()))
}

/// Step-2 writes of a registration: its receipt (per event, and in the plugin's shared place
/// when this event claimed it), the TX and URL tags. `event_id` is `None` for a proof signed
/// elsewhere (its witness stays where it is).
pub fn registration_anchored_writes(
    mv: &ModelVersion,
    run: Option<&Run>,
    event_id: Option<&str>,
) -> Vec<Write> {
    let mut out = Vec::new();
    if let Some(r) = run {
        if let Some(id) = event_id {
            out.push(Write::Artifact {
                artifact_uri: r.info.artifact_uri.clone(),
                path: registration::witness_path(id, witness::RECEIPT_FILE),
                content: ArtifactContent::Receipt,
            });
        }
        out.push(Write::SharedArtifact {
            artifact_uri: r.info.artifact_uri.clone(),
            path: registration::RECEIPT_ARTIFACT.into(),
            content: ArtifactContent::Receipt,
            claim: registration::PAYLOAD_ARTIFACT.into(),
        });
    }
    for (k, v) in [
        (registration::TX_TAG, TagValue::TxId),
        (tags::ARWEAVE_URL, TagValue::ArweaveUrl),
        (
            tags::VERIFY_STATUS,
            TagValue::Text(tags::STATUS_ANCHORED.into()),
        ),
    ] {
        out.push(Write::ModelVersionTag {
            name: mv.name.clone(),
            version: mv.version.clone(),
            key: k.into(),
            value: v,
        });
    }
    out
}
