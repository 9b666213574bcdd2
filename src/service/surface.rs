//! What runs beside the service: the HTTP listener (`/metrics`, `/healthz`, `/readyz`, the
//! webhook route, the guard's endpoints), the readiness probe, the coverage gauges and the
//! guard — tasks of one `JoinSet`, stopped by one token and awaited on the way out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::probe::{coverage_gauges, Probe};
use super::ServiceError;
use crate::arweave::TurboClient;
use crate::feed::kafka::consumer::ConsumerStats;
use crate::feed::webhook::WebhookReceiver;
use crate::mlflow::MlflowClient;
use crate::server::health::{Check, Health};
use crate::store::LiveStores;

/// Between drains of the metrics recorder's histogram samples.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// How long the listener may take to finish its in-flight requests once stopped.
const LISTENER_DRAIN: Duration = Duration::from_secs(5);

/// The guard and the verifier it checks through.
pub type GuardParts = (Arc<crate::guard::Guard>, Arc<crate::verify::Verifier>);

/// The listener and the probes, as validated from flags.
#[derive(Debug, Clone)]
pub struct SurfaceConfig {
    /// The listener's address; `None`: no listener (`--listen off`), hence no coverage gauges.
    pub listen: Option<SocketAddr>,
    /// Between readiness rounds; a check fails `/readyz` when not passed within three.
    pub health_interval: Duration,
    /// Without a pipeline tick this long, `/healthz` answers 503.
    pub stuck_after: Duration,
    /// Between coverage passes; `None`: off.
    pub coverage_interval: Option<Duration>,
    /// What `/v1/status`, `/v1/retry` and the guard's verify-status require
    /// (`X-Ario-Management-Secret`); `None` (no listener): nothing to protect.
    pub management_secret: Option<String>,
}

/// What the surface serves and probes.
#[derive(Default)]
pub struct SurfaceParts {
    /// Turbo, probed for readiness.
    pub turbo: Option<TurboClient>,
    /// The stores the service holds (one per MLflow workspace in poll mode; Kafka mode adds
    /// and removes its partitions' as they are assigned): probed, their job gauges exported
    /// (labelled with the workspace), and served to `status`/`retry` through the listener.
    pub stores: LiveStores,
    /// Whether the store check is part of readiness (poll mode: the stores exist from start).
    pub probe_stores: bool,
    /// `poll`, `kafka`, `guard` or `feed`, as `/v1/status` reports it.
    pub mode: &'static str,
    /// The MLflow workspaces whose coverage gauges are kept (each client in its workspace);
    /// empty: the surface's own client's.
    pub workspaces: Vec<(String, MlflowClient)>,
    /// The webhook receiver (poll mode with a secret).
    pub webhook: Option<Arc<WebhookReceiver>>,
    /// Kafka mode's consumers (one per MLflow workspace), probed for owned partitions.
    pub kafka: Vec<Arc<ConsumerStats>>,
    /// The guard.
    pub guard: Option<GuardParts>,
}

/// The running surface: its health (ticked by the service's loop) and its tasks.
pub struct Surface {
    /// Liveness and readiness, as `/healthz` and `/readyz` answer them.
    pub health: Arc<Health>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Surface {
    /// Binds the listener (a taken port fails here, at start), installs the metrics recorder
    /// and starts the probe, the coverage gauges and the guard — all stopped by `stop` (or by
    /// [`Surface::stop`]).
    pub async fn start(
        config: &SurfaceConfig,
        mlflow: &MlflowClient,
        parts: SurfaceParts,
        stop: &CancellationToken,
    ) -> Result<Surface, ServiceError> {
        let stop = stop.child_token();
        let interval = config.health_interval;
        let mut required = vec![Check::Mlflow];
        if parts.turbo.is_some() {
            required.push(Check::Turbo);
        }
        if parts.probe_stores {
            required.push(Check::Store);
        }
        if !parts.kafka.is_empty() {
            required.push(Check::Kafka);
        }
        let health = Arc::new(Health::new(config.stuck_after, interval * 3, &required));
        health.tick();
        let mut tasks = JoinSet::new();
        if let Some(addr) = config.listen {
            let listener = crate::server::bind(addr)
                .await
                .map_err(|e| ServiceError::Start(e.to_string()))?;
            let bound = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let metrics = match crate::telemetry::install() {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are off");
                    None
                }
            };
            if let Some(handle) = metrics.clone() {
                // Histogram samples wait in the recorder until drained: by a scrape, or here,
                // so a listener nobody scrapes does not grow the process's memory.
                let stop = stop.clone();
                tasks.spawn(async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(METRICS_UPKEEP) => handle.run_upkeep(),
                            _ = stop.cancelled() => return,
                        }
                    }
                });
            }
            let state = crate::server::ServerState {
                metrics,
                health: health.clone(),
                webhook_off_reason: if parts.webhook.is_some() {
                    String::new()
                } else if !parts.probe_stores {
                    "webhooks need the poller's store (`--source poll`)".into()
                } else {
                    "webhooks are not enabled: set ARIO_MLFLOW_WEBHOOK_SECRET to the webhook's secret".into()
                },
                webhook: parts.webhook.clone(),
                guard: parts.guard.as_ref().map(|(g, _)| g.clone()),
                management_secret: config.management_secret.clone(),
                stores: parts.stores.clone(),
                mode: parts.mode,
            };
            tracing::info!(listen = %bound, webhooks = parts.webhook.is_some(), "HTTP listener up: /metrics /healthz /readyz");
            let shutdown = stop.clone();
            tasks.spawn(async move {
                let drained = shutdown.clone();
                let serve = crate::server::serve(listener, state, async move {
                    drained.cancelled().await
                });
                // In-flight requests get a bounded time once stopped.
                let outcome = tokio::select! {
                    r = serve => Some(r),
                    _ = async { shutdown.cancelled().await; tokio::time::sleep(LISTENER_DRAIN).await } => None,
                };
                if let Some(Err(e)) = outcome {
                    tracing::warn!(error = %e, "HTTP listener stopped");
                }
            });
            if let Some(every) = config.coverage_interval {
                let mut workspaces = parts.workspaces.clone();
                if workspaces.is_empty() {
                    let name = mlflow
                        .workspace()
                        .unwrap_or(crate::mlflow::DEFAULT_WORKSPACE);
                    workspaces.push((name.to_string(), mlflow.clone()));
                }
                for (workspace, client) in workspaces {
                    tasks.spawn(coverage_gauges(workspace, client, every, stop.clone()));
                }
            }
        }
        if let Some((guard, verifier)) = parts.guard {
            tasks.spawn(guard.run(verifier, stop.clone()));
        }
        let probe = Probe {
            health: health.clone(),
            interval,
            mlflow: mlflow.clone(),
            turbo: parts.turbo,
            stores: parts.stores,
            probe_stores: parts.probe_stores,
            gauge_workspaces: parts.workspaces.iter().map(|(w, _)| w.clone()).collect(),
            kafka: parts.kafka,
        };
        tasks.spawn(probe.run(stop.clone()));
        Ok(Surface {
            health,
            tasks,
            stop,
        })
    }

    /// Stops every task and waits for each.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                tracing::warn!(error = %e, "a surface task ended abnormally");
            }
        }
    }
}
