//! The periodic passes beside the service: the readiness probe (MLflow, Turbo, the store and its
//! gauges, Kafka's partitions) and the coverage gauges. Both read counters, indexes and gaps,
//! never the history.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::arweave::TurboClient;
use crate::feed::kafka::consumer::ConsumerStats;
use crate::mlflow::MlflowClient;
use crate::server::health::{Check, Health};
use crate::store::{LiveStores, Store, StoreError};

/// The coverage gaps every `every`, as gauges (tags only, and only what is not anchored: its
/// cost follows the gaps, not the registry; the `coverage` command counts and verifies all).
pub(super) async fn coverage_gauges(
    workspace: String,
    mlflow: MlflowClient,
    every: Duration,
    stop: CancellationToken,
) {
    let gateways = match crate::arweave::gateway::gateway_list(&[], None, None) {
        Ok(g) => g,
        Err(_) => return,
    };
    let Ok(reader) = crate::arweave::GatewayReader::new(gateways, &Default::default()) else {
        return;
    };
    let verifier = crate::verify::Verifier {
        mlflow,
        gateways: reader,
        trusted_keys: Vec::new(),
        key_history: None,
        attestation: None,
        min_attestation_level: 2,
        checksum_memo: None,
        evidence: None,
    };
    loop {
        // The gaps only: a periodic pass must not read everything ever anchored.
        let pass = tokio::select! {
            pass = verifier.coverage_gaps() => pass,
            _ = stop.cancelled() => return,
        };
        match pass {
            Ok(c) => {
                for (event_type, n) in &c.counts {
                    for (standing, count) in [
                        ("anchored", n.anchored),
                        ("signed_only", n.signed_only),
                        ("not_anchored", n.not_anchored),
                        ("no_model", n.no_model),
                    ] {
                        // Runs and traces anchored are not counted by the gaps pass.
                        if standing == "anchored"
                            && *event_type != crate::profile::registration::EVENT_TYPE
                        {
                            continue;
                        }
                        crate::telemetry::coverage(&workspace, event_type, standing, count);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(workspace = %workspace, error = %e, "coverage pass failed; retrying next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// What the readiness probe checks.
pub(super) struct Probe {
    pub health: std::sync::Arc<Health>,
    pub interval: Duration,
    pub mlflow: MlflowClient,
    pub turbo: Option<TurboClient>,
    pub stores: LiveStores,
    pub probe_stores: bool,
    /// Workspaces whose job gauges are kept (zero when no store of theirs is live).
    pub gauge_workspaces: Vec<String>,
    pub kafka: Vec<std::sync::Arc<ConsumerStats>>,
}

impl Probe {
    /// One round every interval until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.round() => {}
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// One readiness round: MLflow, Turbo, the store (with its gauges), Kafka's partitions.
    async fn round(&self) {
        let health = &self.health;
        let turbo_info = async {
            match &self.turbo {
                Some(t) => Some(t.info().await),
                None => None,
            }
        };
        // MLflow answered the poller since the last round: no extra request (an idle poll is
        // what the tracking server pays for this service). Within one interval, so the check
        // stays fresh for readiness (3 intervals) whoever reports it.
        let mlflow_probe = async {
            if health.passed_within(Check::Mlflow, self.interval.min(Duration::from_secs(10))) {
                None
            } else {
                Some(
                    self.mlflow
                        .search_model_versions("name='__ario_probe__'")
                        .await,
                )
            }
        };
        let (m, t) = tokio::join!(mlflow_probe, turbo_info);
        if let Some(m) = m {
            health.report(Check::Mlflow, m.map(|_| ()));
        }
        if let Some(t) = t {
            health.report(Check::Turbo, t.map(|_| ()));
        }
        let stores = self.stores.snapshot();
        if self.probe_stores || !stores.is_empty() {
            // The open-jobs index and the parked counter, read off the runtime (sled I/O);
            // per workspace, summed over its stores (Kafka mode: its owned partitions').
            let mut by_workspace: BTreeMap<String, Vec<Store>> = self
                .gauge_workspaces
                .iter()
                .map(|w| (w.clone(), Vec::new()))
                .collect();
            for (scope, live) in stores {
                by_workspace
                    .entry(scope.workspace)
                    .or_default()
                    .push(live.store);
            }
            let read = tokio::task::spawn_blocking(move || {
                by_workspace
                    .iter()
                    .try_for_each(|(workspace, stores)| store_gauges(workspace, stores))
            });
            let result = match read.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if self.probe_stores {
                health.report(Check::Store, result);
            } else if let Err(e) = result {
                tracing::warn!(error = %e, "job gauges: a partition's store could not be read");
            }
        }
        if !self.kafka.is_empty() {
            let owned: usize = self
                .kafka
                .iter()
                .map(|s| s.owned.load(Ordering::Relaxed) as usize)
                .sum();
            health.report(
                Check::Kafka,
                if owned > 0 {
                    Ok(())
                } else {
                    Err("no partition assigned (more instances than partitions, or still joining the group)")
                },
            );
        }
    }
}

/// The job gauges of a workspace's stores: open jobs per state, parked jobs, the oldest open
/// job's age, size — summed over the stores (zero when it has none live).
fn store_gauges(workspace: &str, stores: &[Store]) -> Result<(), StoreError> {
    let mut per_state: BTreeMap<&'static str, usize> = [
        "detected",
        "waiting",
        "signed",
        "signed_written",
        "uploaded",
        "parked",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    let now = crate::store::now_ms();
    let mut oldest: Option<u64> = None;
    let mut parked = 0;
    let mut bytes = 0;
    for store in stores {
        let open = store.open_jobs()?;
        for job in &open {
            *per_state.entry(job.state.name()).or_default() += 1;
        }
        parked += store.parked_count();
        bytes += store.size_on_disk();
        if let Some(t) = open.iter().map(|j| j.detected_ms).min() {
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
    }
    per_state.insert("parked", parked);
    let oldest = oldest.map(|t| Duration::from_millis(now.saturating_sub(t)));
    let states: Vec<(&'static str, usize)> = per_state.into_iter().collect();
    crate::telemetry::store_gauges(workspace, &states, oldest, bytes);
    Ok(())
}
