//! Transient faults during a run: devnet answers ≥ 30 % of uploads with 5xx, some with 429 +
//! Retry-After, some too slowly (timeouts), and MLflow is stopped for 30 s mid-run. Everything
//! still ends anchored exactly once, nothing transient is parked, and SIGTERM stops the worker
//! cleanly (exit 0).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::devnet::*;
use common::lab::seed_many;
use common::mlflow::{venv, MlflowServer};
use serde_json::Value;

#[test]
fn transient_devnet_faults_and_an_mlflow_outage_end_fully_anchored() {
    let Some(venv) = venv() else { return };
    let mut server = MlflowServer::start(&venv);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let faults = [
        "upload:503@0.3",
        "upload:502@0.05",
        "upload:429/1@0.1",
        "upload:delay=1500@0.05",
        "status:503@0.3",
    ];
    let dn = rt.block_on(start_devnet(false, &faults));
    let home = tempfile::tempdir().unwrap();
    let seeded = seed_many(&server, &venv, 50, 10, "faults");
    let events = seeded["events"].as_u64().unwrap() as usize;

    let state = home.path().join("state");
    let env = [
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
        (
            "ARIO_MLFLOW_SIGNING_KEY",
            "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=".to_string(),
        ),
        ("ARIO_MLFLOW_UPLOAD_URL", dn.handle.url().to_string()),
        (
            "ARIO_MLFLOW_GATEWAY_HOST",
            dn.handle.url().trim_start_matches("http://").to_string(),
        ),
        ("ARIO_MLFLOW_STATE_DIR", state.display().to_string()),
        ("ARIO_MLFLOW_HTTP_TIMEOUT", "1".to_string()),
        ("HOME", home.path().display().to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let bin = env!("CARGO_BIN_EXE_ario-mlflow-worker");
    let mut cmd = Command::new(bin);
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    cmd.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
    cmd.args(["run", "--poll-interval", "0.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut worker = cmd.spawn().unwrap();

    // Stop MLflow for 30 s once a part of the work is done.
    let started = Instant::now();
    while dn.handle.items().len() < events / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {} items",
            dn.handle.items().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    let stopped_at = dn.handle.items().len();
    std::thread::sleep(Duration::from_secs(30));
    server.restart();

    let deadline = Instant::now() + Duration::from_secs(300);
    while dn.handle.items().len() < events {
        assert!(
            Instant::now() < deadline,
            "only {} of {events} anchored",
            dn.handle.items().len()
        );
        assert!(
            worker.try_wait().unwrap().is_none(),
            "the worker exited during the faults"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Let the last write-backs land, then stop gracefully.
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(worker.id().to_string())
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = worker.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "SIGTERM → exit 0, got {status:?}");

    let mut cmd = Command::new(bin);
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    cmd.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
    cmd.args(["status", "--json"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let report: Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    println!(
        "faults: {events} events, {} items on devnet ({stopped_at} before MLflow stopped for 30 s), {:.0} s, status {}",
        dn.handle.items().len(),
        started.elapsed().as_secs_f64(),
        report["counts"]
    );
    assert_eq!(dn.handle.items().len(), events, "exactly once");
    assert!(
        report["parked"].as_array().unwrap().is_empty(),
        "nothing transient parked: {}",
        report["parked"]
    );
    rt.block_on(dn.handle.shutdown());
}
