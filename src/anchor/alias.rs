//! Alias changes (our addition to the profile): an alias set, moved or removed → its payload →
//! signed onto the version's registration TX, witnessed per event on the version's run.

use super::prepared::{ArtifactContent, Prepared, TagValue, Write};
use super::sign::sign_event;
use super::{per_event_witness, AnchorError, Anchorer};
use crate::mlflow::{ModelVersion, Run};
use crate::profile::alias::{self, AliasAction};
use crate::profile::witness;

impl Anchorer {
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
