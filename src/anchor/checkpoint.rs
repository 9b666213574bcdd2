//! Merkle-batched prediction checkpoints (`--predictions batched`): a trace becomes a leaf
//! (its canonical prediction payload, fixed in the store), and a batch of one version's leaves
//! becomes one signed `ario.events/v1` checkpoint — one upload for up to `--checkpoint-size`
//! predictions. What a checkpoint *is* lives in [`crate::profile::checkpoint`].

use serde::{Deserialize, Serialize};

use super::pipeline::{now_ms, Pipeline};
use super::sign::{rfc3339_ms, sign_checkpoint};
use super::{AnchorError, Anchorer};
use crate::event::ChangeEvent;
use crate::profile::checkpoint::{self, BatchDocument, CheckpointLinks};
use crate::profile::prediction::{self, PredictionFacts};
use crate::proof::jcs;
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};
use crate::store::{Job, JobState, StoreError};

/// Checkpoint batching tuning.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Leaves per checkpoint at most; a full batch is sealed at once.
    pub size: usize,
    /// A batch is sealed when its oldest leaf is this old, full or not.
    pub interval: std::time::Duration,
    /// Seal every open batch as soon as nothing else is due (`backfill`: catch up now).
    pub seal_when_idle: bool,
}

/// One prediction fixed as a leaf, as kept in the store until its batch is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    /// The trace's job key.
    pub job: String,
    /// The trace.
    pub trace_id: String,
    /// The canonical prediction payload.
    pub payload: String,
    /// When it was batched (ms).
    pub batched_ms: u64,
    /// The version and its registration (the previous-checkpoint fields are filled at sealing).
    pub links: CheckpointLinks,
    /// The version's source-run artifact root (the batch document goes there).
    pub artifact_uri: String,
}

impl Leaf {
    /// The batch this leaf belongs to: one per served version.
    pub fn batch(&self) -> String {
        format!("{}/{}", self.links.model_name, self.links.model_version)
    }
}

impl Anchorer {
    /// A trace's prediction as a checkpoint leaf of its version's batch (`previous`: the
    /// version's registration TX).
    pub fn prediction_leaf(
        &self,
        facts: &PredictionFacts,
        previous: &str,
        job_trace: &str,
        artifact_uri: &str,
    ) -> Result<Leaf, AnchorError> {
        let payload = jcs::canonicalize(&prediction::payload(facts)?)
            .map_err(crate::profile::PayloadError::from)?;
        Ok(Leaf {
            job: format!("trace/{job_trace}"),
            trace_id: facts.trace_id.clone(),
            payload: String::from_utf8_lossy(&payload).into_owned(),
            batched_ms: crate::store::now_ms(),
            links: checkpoint::first_links(
                &facts.model_name,
                &facts.model_version,
                &facts.run_id,
                previous,
            ),
            artifact_uri: artifact_uri.to_string(),
        })
    }

    /// The head of a version's checkpoint chain as MLflow records it: the newest uploaded
    /// checkpoint (`ario.last_checkpoint_tx`) and its record hash, read from its batch document
    /// on the version's run. `None` when the version has none.
    pub async fn checkpoint_head(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<(String, String)>, AnchorError> {
        let mv = match self.mlflow.get_model_version(name, version).await {
            Ok(mv) => mv,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(tx) = mv.tag(checkpoint::VERSION_TX_TAG).map(str::to_owned) else {
            return Ok(None);
        };
        let run = self.mlflow.get_run(&mv.run_id).await?;
        let bytes = self
            .mlflow
            .download_run_artifact(&run, &checkpoint::batch_path(&tx))
            .await?;
        let doc: BatchDocument = serde_json::from_slice(&bytes).map_err(|e| {
            AnchorError::Inconsistent(format!(
                "{name}/{version}: the batch document of checkpoint {tx} cannot be read ({e}); refusing to start its chain again"
            ))
        })?;
        let hash = doc.envelope["payload_hash"]
            .as_str()
            .filter(|h| *h == crate::proof::sha256_hex(&hex::decode(&doc.record_bytes).unwrap_or_default()))
            .ok_or_else(|| {
                AnchorError::Inconsistent(format!(
                    "{name}/{version}: checkpoint {tx}'s batch document does not hash to its envelope"
                ))
            })?;
        Ok(Some((hash.to_string(), tx)))
    }

    /// Signs a checkpoint over `leaves` (one version's, in leaf order) chained by `links`, with
    /// its MLflow writes: the batch document before the upload; the version's and every trace's
    /// `ario.checkpoint_tx` after it.
    pub fn prepare_checkpoint(
        &self,
        leaves: &[Leaf],
        links: &CheckpointLinks,
    ) -> Result<Prepared, AnchorError> {
        let first = leaves
            .first()
            .ok_or_else(|| AnchorError::Inconsistent("an empty checkpoint batch".into()))?;
        let ids: Vec<String> = leaves.iter().map(|l| l.trace_id.clone()).collect();
        let payloads: Vec<Vec<u8>> = leaves
            .iter()
            .map(|l| l.payload.clone().into_bytes())
            .collect();
        let (hashes, batch_leaves) = checkpoint::batch_leaves(&ids, &payloads);
        let time = |ms: u64| {
            rfc3339_ms(
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            )
        };
        let start = leaves.iter().map(|l| l.batched_ms).min().unwrap_or(0);
        let end = leaves.iter().map(|l| l.batched_ms).max().unwrap_or(0);
        let record = checkpoint::record(links, &hashes, &time(start), &time(end));
        let ev = sign_checkpoint(
            &record,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let tx_id = ev.item.id();
        let doc = BatchDocument {
            schema: checkpoint::BATCH_SCHEMA.into(),
            checkpoint_tx: tx_id.clone(),
            envelope: ev.envelope.clone(),
            record_bytes: hex::encode(&ev.payload_bytes),
            leaves: batch_leaves,
        };
        let doc_text = serde_json::to_string(&doc).map_err(|e| {
            AnchorError::Inconsistent(format!("cannot serialize the batch document: {e}"))
        })?;
        let signed = vec![Write::Artifact {
            artifact_uri: first.artifact_uri.clone(),
            path: checkpoint::batch_path(&tx_id),
            content: ArtifactContent::Document(doc_text),
        }];
        let mut anchored = vec![Write::ModelVersionTag {
            name: links.model_name.clone(),
            version: links.model_version.clone(),
            key: checkpoint::VERSION_TX_TAG.into(),
            value: TagValue::TxId,
        }];
        anchored.extend(leaves.iter().map(|l| Write::TraceTag {
            trace_id: l.trace_id.clone(),
            key: checkpoint::TX_TAG.into(),
            value: TagValue::TxId,
        }));
        Ok(Prepared::new(
            ev,
            checkpoint::EVENT_TYPE,
            format!(
                "{}/{} ({} predictions)",
                links.model_name,
                links.model_version,
                leaves.len()
            ),
            signed,
            anchored,
        ))
    }
}

/// Sealing: the pipeline turns batched prediction leaves into signed checkpoint jobs.
impl Pipeline {
    /// Seals the open checkpoint batches that are full or whose oldest leaf is older than the
    /// interval — every non-empty one with `idle` when the config says to seal when idle.
    /// Each seal is one store transaction, flushed before anything is published. Returns how
    /// many checkpoints were sealed.
    pub(super) async fn seal_batches(&self, idle: bool) -> Result<usize, StoreError> {
        let Some(config) = &self.config.checkpoints else {
            return Ok(0);
        };
        if idle && !config.seal_when_idle {
            return Ok(0);
        }
        let size = config.size.max(1);
        let interval = config.interval.as_millis() as u64;
        let mut sealed = 0;
        for (batch, slots) in self.store.batches()? {
            let mut leaves: Vec<(u64, Leaf)> = Vec::new();
            for (seq, value) in slots {
                match serde_json::from_value::<Leaf>(value) {
                    Ok(leaf) => leaves.push((seq, leaf)),
                    Err(e) => {
                        return Err(StoreError::Corrupt {
                            key: batch.clone(),
                            cause: format!("a checkpoint leaf cannot be read: {e}"),
                        })
                    }
                }
            }
            let mut rest = leaves.as_slice();
            while !rest.is_empty() {
                let oldest = rest.iter().map(|(_, l)| l.batched_ms).min().unwrap_or(0);
                let take = if rest.len() >= size {
                    size
                } else if idle || now_ms().saturating_sub(oldest) >= interval {
                    rest.len()
                } else {
                    break;
                };
                let (now, later) = rest.split_at(take);
                if let Err(e) = self.seal_one(&batch, now).await {
                    tracing::error!(%batch, error = %e, "cannot seal a checkpoint; its leaves stay batched");
                    break;
                }
                sealed += 1;
                rest = later;
            }
        }
        Ok(sealed)
    }

    /// Signs and seals one checkpoint over `leaves` (one version's, in batching order), chained
    /// to the version's previous checkpoint (the store's chain head).
    async fn seal_one(&self, batch: &str, leaves: &[(u64, Leaf)]) -> Result<(), AnchorError> {
        let first = &leaves[0].1;
        let chain_key = crate::profile::checkpoint::chain_key(
            &first.links.model_name,
            &first.links.model_version,
        );
        let mut links = first.links.clone();
        if let Some(head) = self.store.chain_head(&chain_key)? {
            let previous = self.store.job(&head.job)?;
            links.previous_hash = head.head.clone();
            links.previous_tx = previous
                .as_ref()
                .and_then(|j| j.tx_id())
                .unwrap_or_default()
                .to_string();
        } else if let Some((record_hash, tx)) = self
            .anchorer
            .checkpoint_head(&links.model_name, &links.model_version)
            .await?
        {
            // A store that never saw this chain (new, or lost): continue the chain MLflow
            // records instead of starting a second one at GENESIS.
            links.previous_hash = record_hash;
            links.previous_tx = tx;
        }
        let just_leaves: Vec<Leaf> = leaves.iter().map(|(_, l)| l.clone()).collect();
        let prepared = self.anchorer.prepare_checkpoint(&just_leaves, &links)?;
        let event = ChangeEvent::PredictionCheckpoint {
            name: links.model_name.clone(),
            version: links.model_version.clone(),
            tx_id: prepared.tx_id.clone(),
        };
        let head = prepared.payload_hash.clone();
        let job = Job {
            key: event.dedupe_key(),
            seq: 0,
            event,
            state: JobState::Signed,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            prepared: Some(prepared),
            chain_key: Some(chain_key.clone()),
            detected_ms: leaves.iter().map(|(_, l)| l.batched_ms).min().unwrap_or(0),
            done_ms: None,
            summary: None,
        };
        let members: Vec<(u64, String)> = leaves.iter().map(|(s, l)| (*s, l.job.clone())).collect();
        self.store
            .seal(batch, &members, &job, (&chain_key, &head))?;
        self.store.flush().await?;
        tracing::info!(checkpoint = %job.key, leaves = leaves.len(), "sealed");
        Ok(())
    }
}
