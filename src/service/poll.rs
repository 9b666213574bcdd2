//! `run --source poll` and `backfill`: poll MLflow every interval (or at once when a webhook
//! delivery wakes the loop), drain the due jobs, compact past retention — until the token is
//! cancelled, or, for `backfill`, until nothing is left to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::retention::Retention;
use super::surface::{GuardParts, Surface, SurfaceConfig, SurfaceParts};
use super::ServiceError;
use crate::anchor::pipeline::{Pipeline, PipelineConfig};
use crate::anchor::Anchorer;
use crate::feed::poller::{poll_filtered, PollFilter};
use crate::feed::webhook::WebhookReceiver;
use crate::server::health::Check;
use crate::store::{Job, Store};

/// The poll service, as validated from flags.
#[derive(Debug, Clone)]
pub struct PollConfig {
    /// What the poller reads (experiments, models, since).
    pub filter: PollFilter,
    /// Between polls.
    pub poll_interval: Duration,
    /// `backfill`: stop once every job is closed (or waits on a parked one).
    pub until_caught_up: bool,
    /// Done jobs keep their prepared bytes this long.
    pub retain_done: Duration,
    /// The pipeline's tuning.
    pub pipeline: PipelineConfig,
    /// The listener and probes.
    pub surface: SurfaceConfig,
    /// Webhook secrets (several during a rotation); empty: no webhook route.
    pub webhook_secrets: Vec<String>,
    /// How far a webhook's timestamp may be from this machine's clock.
    pub webhook_tolerance: Duration,
}

/// What a caller shows of the service's progress (`backfill` prints it; `run` logs only).
pub trait Progress: Send {
    /// After a job's step (a progress bar redraws here, throttled by the implementation).
    fn step(&mut self, _store: &Store) {}
    /// After each pass (a poll and a drain): `open` jobs are left.
    fn pass(&mut self, _store: &Store, _mlflow_calls: u64, _open: usize) {}
    /// Every open job waits on a parked one: a backfill stops here.
    fn blocked(&mut self, _jobs: &[Job]) {}
    /// The service is stopping.
    fn finish(&mut self) {}
}

/// No progress shown (`run`: the logs and metrics say it).
pub struct Quiet;

impl Progress for Quiet {}

/// Another MLflow workspace anchored beside the first: its client (which sends the workspace
/// header) and its own store, so dedupe keys, chains and snapshots never mix workspaces.
pub struct Lane {
    /// The workspace.
    pub workspace: String,
    /// The anchoring parts, `anchorer.mlflow` in the workspace.
    pub anchorer: Anchorer,
    /// The workspace's store.
    pub store: Store,
}

/// Runs the poll service over `store` until `stop` is cancelled (or, for a backfill, until
/// caught up), then stops the surface, awaits its tasks and flushes the store.
pub async fn run(
    config: PollConfig,
    anchorer: Anchorer,
    store: Store,
    guard: Option<GuardParts>,
    progress: &mut dyn Progress,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    run_workspaces(config, anchorer, store, Vec::new(), guard, progress, stop).await
}

/// [`run`] over several MLflow workspaces: the first (`anchorer`, `store`: the default
/// workspace when it is anchored) owns the listener's store gauges; each of `lanes` polls and
/// drains its own pipeline beside it, on the same schedule and token. The webhook route
/// records each delivery in its workspace's store.
pub async fn run_workspaces(
    config: PollConfig,
    anchorer: Anchorer,
    store: Store,
    lanes: Vec<Lane>,
    guard: Option<GuardParts>,
    progress: &mut dyn Progress,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let detect_lock: Arc<tokio::sync::Mutex<()>> = Default::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let workspace = anchorer
        .mlflow
        .workspace()
        .unwrap_or(crate::mlflow::DEFAULT_WORKSPACE)
        .to_string();
    // Each other lane: its own detect lock and wake, shared with the webhook route.
    let locks: Vec<(Arc<tokio::sync::Mutex<()>>, Arc<tokio::sync::Notify>)> =
        lanes.iter().map(|_| Default::default()).collect();
    let webhook = if config.webhook_secrets.iter().any(|s| !s.is_empty()) {
        let mut receiver = WebhookReceiver::new(
            config.webhook_secrets.clone(),
            config.webhook_tolerance,
            store.clone(),
            detect_lock.clone(),
            wake.clone(),
        )
        .map_err(|e| ServiceError::Start(e.to_string()))?
        .in_workspace(&workspace);
        for (lane, (lock, lane_wake)) in lanes.iter().zip(&locks) {
            receiver = receiver.with_workspace(
                &lane.workspace,
                lane.store.clone(),
                lock.clone(),
                lane_wake.clone(),
            );
        }
        Some(Arc::new(receiver))
    } else {
        None
    };
    // The stores the listener serves to `status`/`retry` (a retry wakes the lane's loop).
    let live = crate::store::LiveStores::default();
    let scope = |workspace: &str| crate::store::StoreScope {
        workspace: workspace.to_string(),
        partition: None,
    };
    live.insert(scope(&workspace), store.clone(), Some(wake.clone()));
    for (lane, (_, lane_wake)) in lanes.iter().zip(&locks) {
        live.insert(
            scope(&lane.workspace),
            lane.store.clone(),
            Some(lane_wake.clone()),
        );
    }
    let surface = Surface::start(
        &config.surface,
        &anchorer.mlflow,
        SurfaceParts {
            turbo: Some(anchorer.turbo.clone()),
            stores: live,
            probe_stores: true,
            mode: "poll",
            workspaces: std::iter::once((workspace.clone(), anchorer.mlflow.clone()))
                .chain(
                    lanes
                        .iter()
                        .map(|l| (l.workspace.clone(), l.anchorer.mlflow.clone())),
                )
                .collect(),
            webhook,
            kafka: Vec::new(),
            guard,
        },
        &stop,
    )
    .await?;
    let pipeline = Pipeline::new(anchorer, store, config.pipeline.clone());
    let others: Vec<(String, Pipeline)> = lanes
        .into_iter()
        .map(|l| {
            (
                l.workspace,
                Pipeline::new(l.anchorer, l.store, config.pipeline.clone()),
            )
        })
        .collect();
    // The other lanes: no progress.
    let mut quiet: Vec<Quiet> = others.iter().map(|_| Quiet).collect();
    let main = poll_loop(
        &config,
        &workspace,
        &pipeline,
        &surface,
        &detect_lock,
        &wake,
        progress,
        &stop,
    );
    let rest = futures::future::try_join_all(others.iter().zip(&locks).zip(quiet.iter_mut()).map(
        |(((w, p), (lock, lane_wake)), q)| {
            poll_loop(&config, w, p, &surface, lock, lane_wake, q, &stop)
        },
    ));
    let result = futures::future::try_join(main, rest).await;
    progress.finish();
    surface.stop().await;
    result?;
    pipeline.store.flush().await?;
    for (_, p) in &others {
        p.store.flush().await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    config: &PollConfig,
    workspace: &str,
    pipeline: &Pipeline,
    surface: &Surface,
    detect_lock: &tokio::sync::Mutex<()>,
    wake: &tokio::sync::Notify,
    progress: &mut dyn Progress,
    stop: &CancellationToken,
) -> Result<(), ServiceError> {
    let health = &surface.health;
    let mut last_blocked_check = Instant::now();
    let mut retention = Retention::new(config.retain_done);
    loop {
        health.tick();
        retention.run_if_due(&pipeline.store).await;
        let last_poll = Instant::now();
        let polled = {
            let _webhooks_wait = detect_lock.lock().await;
            poll_filtered(&pipeline.anchorer.mlflow, &pipeline.store, &config.filter).await
        };
        let polled_ok = polled.is_ok();
        match polled {
            Ok(p) => {
                if p.failed_queries == 0 {
                    health.pass(Check::Mlflow);
                }
                if p.new_jobs > 0 {
                    tracing::info!(new_jobs = p.new_jobs, seen = p.seen, "detected")
                }
            }
            Err(e) => tracing::warn!(error = %e, "poll failed; retrying next cycle"),
        }
        pipeline
            .drain_with(stop, |_| {
                health.tick();
                progress.step(&pipeline.store);
            })
            .await?;
        // The open-jobs index: cheap however long the store's history is. A backfill is also
        // caught up when every open job waits on a parked one (nothing moves until `retry`).
        let mut open = pipeline.store.open_count();
        // That check reads every open job, so it runs at most every few seconds, not per pass.
        if config.until_caught_up
            && open > 0
            && last_blocked_check.elapsed() > Duration::from_secs(5)
        {
            last_blocked_check = Instant::now();
            let blocked = pipeline.store.blocked_on_parked().unwrap_or_default();
            if blocked.len() == open {
                progress.blocked(&blocked);
                open = 0;
            }
        }
        crate::telemetry::poll_pass(workspace, polled_ok);
        crate::telemetry::open_jobs(workspace, pipeline.store.open_count());
        progress.pass(&pipeline.store, pipeline.anchorer.mlflow.calls_made(), open);
        if stop.is_cancelled() || (config.until_caught_up && open == 0) {
            return Ok(());
        }
        // Jobs that wait (a dependency, a retry backoff) come due between polls, and a webhook
        // delivery wakes the loop at once: drain at least every second, poll on schedule.
        let poll_every = if config.until_caught_up {
            Duration::from_millis(500)
        } else {
            config.poll_interval
        };
        let next_poll = last_poll + poll_every;
        loop {
            let now = Instant::now();
            if now >= next_poll || stop.is_cancelled() {
                break;
            }
            let nap = (next_poll - now).min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = wake.notified() => {}
                _ = stop.cancelled() => {}
            }
            health.tick();
            if pipeline.store.open_count() > 0 {
                pipeline.drain_with(stop, |_| health.tick()).await?;
                crate::telemetry::open_jobs(workspace, pipeline.store.open_count());
            }
        }
        if stop.is_cancelled() {
            return Ok(());
        }
    }
}
