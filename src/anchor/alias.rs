//! Alias changes (our addition to the profile): an alias set, moved or removed → its payload →
//! signed onto the version's registration TX, witnessed per event on the version's run.

use super::promotion::EventWitness;
use super::resolve::{Context, Resolution, SignPlan, Skip, SkipKind};
use super::sign::sign_event;
use super::{per_event_witness, AnchorError, Anchorer};
use crate::mlflow::{ModelVersion, Run};
use crate::profile::alias::{self, AliasAction};
use crate::profile::witness;
use crate::store::prepared::{ArtifactContent, Prepared, TagValue, Write};

/// A proof signed up to this long before the change was seen still proves it.
const SEEN_BEFORE_TOLERANCE_MS: i64 = 60_000;

impl Anchorer {
    /// An alias set, moved or removed: waits for the target version's registration; skipped
    /// when the same change is already proven among the version's alias witnesses (a first
    /// sight — no previous version known — is proven by the alias's latest proof on that
    /// version, so a store rebuilt from scratch anchors nothing twice); else signed.
    pub async fn resolve_alias(
        &self,
        name: &str,
        alias_name: &str,
        version: Option<&str>,
        previous: Option<&str>,
        seen_ms: i64,
        ctx: &Context<'_>,
    ) -> Result<Resolution, AnchorError> {
        let (target, action) = match (version, previous) {
            (Some(v), _) => (v, AliasAction::Set),
            (None, Some(p)) => (p, AliasAction::Removed),
            (None, None) => {
                return Ok(Skip::because(
                    SkipKind::NotApplicable,
                    "alias change without a version",
                ))
            }
        };
        // A removal seen before its version existed was the deleted model's (a model deleted
        // takes its aliases with it; CDC sees those deletes).
        let before = match action {
            AliasAction::Removed => seen_ms,
            AliasAction::Set => 0,
        };
        let (mv, run, reg) = match self.registered_version(name, target, before, ctx).await? {
            Ok(parts) => parts,
            Err(r) => return Ok(r),
        };
        let prev = match action {
            AliasAction::Set => previous,
            AliasAction::Removed => None,
        };
        if let (Some(run), Some(_)) = (&run, mv.tag(&alias::tx_tag(alias_name))) {
            let action_text = match action {
                AliasAction::Set => "set",
                AliasAction::Removed => "removed",
            };
            let found = self
                .per_event_witnesses(run, alias::WITNESS_DIR)
                .await?
                .into_iter()
                .find(|w: &EventWitness| {
                    let p = &w.payload;
                    p["alias"].as_str() == Some(alias_name)
                        && p["model_version"].as_str() == Some(mv.version.as_str())
                        && p["action"].as_str() == Some(action_text)
                        && match previous {
                            // First sight: proven by the alias's latest proof on this version.
                            None => {
                                w.tx.is_some()
                                    && w.tx.as_deref() == mv.tag(&alias::tx_tag(alias_name))
                            }
                            Some(_) => {
                                p["previous_version"].as_str() == prev
                                    && w.signed_at_ms
                                        .is_some_and(|at| at >= seen_ms - SEEN_BEFORE_TOLERANCE_MS)
                            }
                        }
                });
            if let Some(w) = found {
                return Ok(Skip::anchored(
                    SkipKind::AlreadyAnchored,
                    format!("@{alias_name} → {target} is already proven"),
                    alias::EVENT_TYPE,
                    format!("{}@{alias_name}", mv.name),
                    w.tx.as_deref().unwrap_or(""),
                    &w.payload_hash,
                ));
            }
        }
        Ok(SignPlan::signed(self.prepare_alias(
            &mv,
            run.as_ref(),
            &reg,
            alias_name,
            action,
            prev,
        )?))
    }

    /// Builds and signs an alias change (our addition): witness under the version's run at
    /// `ario/aliases/<event_id>/`, TX recorded as `ario.alias_tx.<alias>` on the version.
    pub fn prepare_alias(
        &self,
        mv: &ModelVersion,
        run: Option<&Run>,
        registration_tx: &str,
        alias_name: &str,
        action: AliasAction,
        previous_version: Option<&str>,
    ) -> Result<Prepared, AnchorError> {
        let (name, version) = (&mv.name, &mv.version);
        let payload = alias::payload(name, version, alias_name, action, previous_version);
        let ev = sign_event(
            alias::EVENT_TYPE,
            alias::subject(name, alias_name, version),
            registration_tx,
            &payload,
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let signed = per_event_witness(
            run,
            alias::WITNESS_DIR,
            &ev.event_id,
            &[
                (witness::PAYLOAD_FILE, ArtifactContent::Payload),
                (witness::PROOF_FILE, ArtifactContent::Proof),
            ],
        );
        let mut anchored = per_event_witness(
            run,
            alias::WITNESS_DIR,
            &ev.event_id,
            &[(witness::RECEIPT_FILE, ArtifactContent::Receipt)],
        );
        anchored.push(Write::ModelVersionTag {
            name: name.clone(),
            version: version.clone(),
            key: alias::tx_tag(alias_name),
            value: TagValue::TxId,
        });
        Ok(Prepared::new(
            ev,
            alias::EVENT_TYPE,
            format!("{name}@{alias_name}→{version}"),
            signed,
            anchored,
        ))
    }
}
