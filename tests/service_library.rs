//! The service as a library (issue 25): `service::poll::run` in this test's process on a real
//! MLflow and devnet, without the binary — a backfill returns by itself once every event of a
//! seeded registry is closed, a `run` serves its probes and returns when its token is cancelled,
//! and neither anchors anything twice.

mod common;

use std::time::{Duration, Instant};

use ario_mlflow_worker::anchor::pipeline::PipelineConfig;
use ario_mlflow_worker::anchor::Anchorer;
use ario_mlflow_worker::cmd::settings::{anchorer, AnchorSettings};
use ario_mlflow_worker::feed::poller::PollFilter;
use ario_mlflow_worker::service::poll::{self, PollConfig, Progress};
use ario_mlflow_worker::service::surface::SurfaceConfig;
use ario_mlflow_worker::store::{Job, Store};
use clap::Parser;
use common::lab::{scenario, Lab, SEED_B64};
use common::mlflow::venv;
use common::process::free_port;
use tokio_util::sync::CancellationToken;

/// The anchoring flags, as a library user would parse them.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    settings: AnchorSettings,
}

fn lab_anchorer(lab: &Lab) -> Anchorer {
    let wallet = lab.home.path().join("wallet.json");
    // `--wallet` names a file that exists: generate it once, as `~/.ario-mlflow/wallet.json` is.
    ario_mlflow_worker::arweave::Wallet::load_or_create(None, Some(&wallet))
        .unwrap_or_else(|e| panic!("wallet: {e}"));
    let flags = Flags::try_parse_from([
        "service-library",
        "--tracking-uri",
        &lab.server.uri,
        "--upload-url",
        lab.dn.handle.url(),
        "--ca-cert",
        &lab.ca.display().to_string(),
        "--gateway-host",
        &lab.gateway,
        "--signing-key",
        SEED_B64,
        "--wallet",
        &wallet.display().to_string(),
    ])
    .unwrap_or_else(|e| panic!("flags: {e}"));
    anchorer(&flags.settings).unwrap_or_else(|e| panic!("anchorer: {e}"))
}

fn config(until_caught_up: bool, listen: Option<std::net::SocketAddr>) -> PollConfig {
    PollConfig {
        filter: PollFilter::default(),
        poll_interval: Duration::from_millis(500),
        until_caught_up,
        retain_done: Duration::from_secs(7 * 86_400),
        pipeline: PipelineConfig {
            limits: ario_mlflow_worker::anchor::resolve::Limits {
                // The test venv's runs carry the plugin's `ario.enabled`: no grace needed.
                plugin_grace: Duration::ZERO,
                ..PipelineConfig::default().limits
            },
            ..PipelineConfig::default()
        },
        surface: SurfaceConfig {
            listen,
            health_interval: Duration::from_millis(500),
            stuck_after: Duration::from_secs(60),
            coverage_interval: None,
            management_secret: Some("library-secret".into()),
        },
        webhook_secrets: Vec::new(),
        webhook_tolerance: Duration::from_secs(300),
    }
}

/// Counts what the service reports.
#[derive(Default)]
struct Seen {
    passes: usize,
    finished: bool,
}

impl Progress for Seen {
    fn pass(&mut self, _store: &Store, _mlflow_calls: u64, _open: usize) {
        self.passes += 1;
    }

    fn blocked(&mut self, _jobs: &[Job]) {}

    fn finish(&mut self) {
        self.finished = true;
    }
}

#[test]
fn the_poll_service_runs_in_process_and_stops_on_its_token() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    scenario(&lab.server, &venv, "lib");
    let state = tempfile::tempdir().unwrap();

    // Backfill: returns by itself once nothing is left to do.
    let store = Store::open(state.path()).unwrap();
    let mut seen = Seen::default();
    let started = Instant::now();
    lab.rt
        .block_on(poll::run(
            config(true, None),
            lab_anchorer(&lab),
            store,
            None,
            &mut seen,
            CancellationToken::new(),
        ))
        .unwrap_or_else(|e| panic!("backfill: {e}"));
    assert!(seen.finished && seen.passes >= 1, "progress was reported");
    let anchored = lab.dn.handle.items().len();
    let store = Store::open(state.path()).unwrap();
    let jobs = store.jobs().unwrap();
    let done = jobs.iter().filter(|j| j.state.name() == "done").count();
    assert!(
        anchored >= 9,
        "the scenario's events are on devnet: {anchored}"
    );
    assert_eq!(store.open_count(), 0, "nothing left open");
    assert!(done >= anchored, "{done} done jobs for {anchored} items");
    println!(
        "service library: backfill of {} jobs ({done} done, {anchored} items) in {:.1} s, in process",
        jobs.len(),
        started.elapsed().as_secs_f64()
    );

    // Run: serves its probes until its token is cancelled, then returns, anchoring nothing new.
    let port = free_port();
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    let base = format!("http://127.0.0.1:{port}");
    let probe = lab.rt.spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        let mut ready = false;
        while Instant::now() < deadline && !ready {
            ready = client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cancel.cancel();
        ready
    });
    let stopping = Instant::now();
    let mut quiet = Seen::default();
    lab.rt
        .block_on(poll::run(
            config(false, Some(format!("127.0.0.1:{port}").parse().unwrap())),
            lab_anchorer(&lab),
            store,
            None,
            &mut quiet,
            stop,
        ))
        .unwrap_or_else(|e| panic!("run: {e}"));
    assert!(
        lab.rt.block_on(probe).unwrap(),
        "/readyz answered 200 while running"
    );
    assert!(quiet.finished);
    assert_eq!(
        lab.dn.handle.items().len(),
        anchored,
        "nothing anchored twice"
    );
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the listener is closed once run returned"
    );
    println!(
        "service library: run ready and stopped on its token in {:.1} s",
        stopping.elapsed().as_secs_f64()
    );
}
