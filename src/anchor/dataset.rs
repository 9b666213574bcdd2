//! Dataset events: each distinct (name, digest) dataset input of a run, anchored on its own
//! (GENESIS); step 2 tags the run with the dataset's TX.

use super::resolve::{Resolution, SignPlan, Skip, SkipKind};
use super::sign::sign_event;
use super::{AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::mlflow::{Dataset, Run};
use crate::profile::{dataset, PayloadError, GENESIS};
use crate::proof::{jcs, sha256_hex};
use crate::store::prepared::{Prepared, TagValue, Write};

impl Anchorer {
    /// What a dataset input of an anchored run becomes: skipped when the run already names its
    /// TX or no longer has it, else signed (GENESIS).
    pub async fn resolve_dataset(
        &self,
        run_id: &str,
        name: &str,
        digest: &str,
    ) -> Result<Resolution, AnchorError> {
        let run = match self.mlflow.get_run(run_id).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => {
                return Ok(Skip::because(
                    SkipKind::Gone,
                    format!("run {run_id} no longer exists"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(tx) = run.tag(&dataset::tx_tag(name)) {
            return Ok(Skip::anchored(
                SkipKind::AlreadyAnchored,
                "already anchored",
                dataset::EVENT_TYPE,
                name,
                tx,
                "",
            ));
        }
        let Some(input) = run
            .inputs
            .dataset_inputs
            .iter()
            .find(|i| i.dataset.name == name && i.dataset.digest == digest)
        else {
            return Ok(Skip::because(
                SkipKind::Gone,
                format!("dataset {name}/{digest} no longer on run {run_id}"),
            ));
        };
        Ok(SignPlan::signed(
            self.prepare_dataset(&run, &input.dataset)?,
        ))
    }

    /// Builds and signs one dataset event (GENESIS); step 2 tags the run with its TX.
    pub fn prepare_dataset(&self, run: &Run, ds: &Dataset) -> Result<Prepared, AnchorError> {
        let facts = ds.facts();
        let ev = sign_event(
            dataset::EVENT_TYPE,
            dataset::subject(&facts),
            GENESIS,
            &dataset::payload(&facts),
            &self.key,
            &self.wallet.signer,
            self.mlflow.workspace(),
        )?;
        let anchored = vec![Write::RunTags {
            run_id: run.info.run_id.clone(),
            tags: vec![(dataset::tx_tag(&ds.name), TagValue::TxId)],
        }];
        Ok(Prepared::new(
            ev,
            dataset::EVENT_TYPE,
            ds.name.clone(),
            Vec::new(),
            anchored,
        ))
    }

    /// Anchors each distinct (name, digest) dataset input of a run (`anchor dataset <run_id>`).
    pub async fn anchor_datasets(&self, run_id: &str) -> Result<Vec<Anchored>, AnchorError> {
        let run = self.mlflow.get_run(run_id).await?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for input in &run.inputs.dataset_inputs {
            let ds = &input.dataset;
            if !seen.insert((ds.name.clone(), ds.digest.clone())) {
                continue;
            }
            if let Some(tx) = run.tag(&dataset::tx_tag(&ds.name)) {
                let hash = sha256_hex(
                    &jcs::canonicalize(&dataset::payload(&ds.facts()))
                        .map_err(PayloadError::from)?,
                );
                out.push(Anchored {
                    event_type: dataset::EVENT_TYPE.into(),
                    subject: ds.name.clone(),
                    tx_id: tx.into(),
                    payload_hash: hash,
                    status: AnchorStatus::AlreadyAnchored,
                });
                continue;
            }
            let p = self.prepare_dataset(&run, ds)?;
            self.publish(&p).await?;
            out.push(Self::anchored(&p, AnchorStatus::Anchored));
        }
        Ok(out)
    }
}
