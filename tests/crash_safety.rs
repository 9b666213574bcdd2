//! Crash safety: ≥ 300 events seeded into a real MLflow, the worker (`run`) killed with SIGKILL at
//! random moments at least 20 times and restarted each time, then caught up. Afterwards:
//! * every event has exactly one envelope on devnet (duplicates = 0),
//! * no training chain has two envelopes with the same `previous_hash` (forks = 0),
//! * every `ario.*_tx` tag in MLflow points at a data item devnet holds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ario_mlflow_worker::arweave::DataItem;
use ario_mlflow_worker::mlflow::{MlflowClient, MlflowConfig};
use common::devnet::*;
use common::lab::seed_many;
use common::mlflow::{venv, MlflowServer};
use serde_json::Value;

const KILLS: usize = 20;

#[test]
fn sigkill_at_random_moments_never_loses_duplicates_or_forks() {
    let Some(venv) = venv() else { return };
    let server = MlflowServer::start(&venv);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dn = rt.block_on(start_devnet(false, &[]));
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let seeded = seed_many(&server, &venv, 140, 20, "crash");
    let events = seeded["events"].as_u64().unwrap();
    assert!(events >= 300, "{seeded}");

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
        ("HOME", home.path().display().to_string()),
        ("RUST_LOG", "warn".to_string()),
    ];
    let bin = env!("CARGO_BIN_EXE_ario-mlflow-worker");
    let started = Instant::now();
    let mut kills = 0;
    let mut rng_state = 0x5eed_u64;
    while kills < KILLS {
        let mut cmd = Command::new(bin);
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
        cmd.args(["run", "--poll-interval", "0.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait_ms = 150 + (rng_state >> 33) % 900;
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let anchored_before_catch_up = dn.handle.items().len();
    let mut cmd = Command::new(bin);
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    cmd.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
    cmd.arg("backfill");
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "final backfill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the store says, for the record (and for diagnosing a failure below).
    let mut status = Command::new(bin);
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    status.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    status.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
    status.args(["status", "--json"]);
    for (k, v) in &env {
        status.env(k, v);
    }
    let status: Value =
        serde_json::from_slice(&status.output().unwrap().stdout).unwrap_or_default();
    println!(
        "crash test: store counts {} parked {}",
        status["counts"], status["parked"]
    );
    {
        let store = ario_mlflow_worker::store::Store::open(&state).unwrap();
        for job in store.jobs().unwrap() {
            if job.state != ario_mlflow_worker::store::JobState::Done {
                println!(
                    "crash test: not done: {} {:?} {:?}",
                    job.key, job.state, job.last_error
                );
            }
        }
    }

    // Duplicates: one envelope per (event type, subject, payload).
    let items = dn.handle.items();
    let ids: BTreeSet<String> = items.iter().map(|i| i.id.clone()).collect();
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    let mut prev: BTreeMap<String, usize> = BTreeMap::new();
    let mut training_hashes: BTreeSet<String> = BTreeSet::new();
    let mut starts = 0;
    for item in &items {
        let bytes = std::fs::read(dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
        let env: Value = serde_json::from_slice(&DataItem::parse(&bytes).unwrap().data).unwrap();
        *per_event
            .entry(format!(
                "{} {} {}",
                env["event_type"], env["subject"], env["payload_hash"]
            ))
            .or_default() += 1;
        if env["event_type"] == "training_complete" {
            training_hashes.insert(env["payload_hash"].as_str().unwrap().to_string());
            match env["previous_hash"].as_str().unwrap() {
                "GENESIS" => starts += 1,
                p => *prev.entry(p.to_string()).or_default() += 1,
            }
        }
    }
    let duplicates: usize = per_event.values().map(|n| n - 1).sum();
    let forks: usize = prev.values().map(|n| n - 1).sum();
    // Linear chains: every link points at an anchored training payload, and each chain has
    // one start and one tip.
    let breaks: Vec<&String> = prev
        .keys()
        .filter(|p| !training_hashes.contains(*p))
        .collect();
    let tips: BTreeSet<&String> = training_hashes
        .iter()
        .filter(|h| !prev.contains_key(*h))
        .collect();

    // Every tag points at an item devnet holds.
    let mlflow = MlflowClient::new(MlflowConfig::new(server.uri.parse().unwrap())).unwrap();
    let mut dangling = Vec::new();
    let mut tagged = 0;
    let search: Value = rt
        .block_on(mlflow.call(
            "runs/search",
            ario_mlflow_worker::mlflow::client::Request::post(
                "api/2.0/mlflow/runs/search",
                serde_json::json!({"experiment_ids": [seeded["experiment_id"]], "max_results": 1000}),
            ),
        ))
        .unwrap();
    for run in search["runs"].as_array().unwrap() {
        for t in run["data"]["tags"].as_array().unwrap() {
            let key = t["key"].as_str().unwrap();
            if key == "ario.training_tx" || key.starts_with("ario.dataset_anchor_tx.") {
                tagged += 1;
                if !ids.contains(t["value"].as_str().unwrap()) {
                    dangling.push(format!("{key}={}", t["value"]));
                }
            }
        }
    }
    for mv in rt
        .block_on(
            mlflow.search_model_versions(&format!("name='{}'", seeded["model"].as_str().unwrap())),
        )
        .unwrap()
    {
        for key in ["ario.registration_tx", "ario.promotion_tx"] {
            match mv.tag(key) {
                Some(tx) if ids.contains(tx) => tagged += 1,
                other => dangling.push(format!("{}/{} {key}={other:?}", mv.name, mv.version)),
            }
        }
    }
    // The MLflow chain-head tags name the tips (never moved backwards by concurrent publishing).
    let experiment: Value = rt
        .block_on(mlflow.call(
            "experiments/get",
            ario_mlflow_worker::mlflow::client::Request::get(
                "api/2.0/mlflow/experiments/get",
                &[("experiment_id", seeded["experiment_id"].as_str().unwrap())],
            ),
        ))
        .unwrap();
    let mut head_tags: Vec<String> = experiment["experiment"]["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["key"] == "ario.last_training_hash")
        .map(|t| t["value"].as_str().unwrap().to_string())
        .collect();
    let rm = rt
        .block_on(mlflow.get_registered_model(seeded["model"].as_str().unwrap()))
        .unwrap();
    head_tags.extend(rm.tag("ario.last_training_hash").map(str::to_owned));
    println!(
        "crash test: chains: {starts} starts, {} tips, {} broken links, head tags {head_tags:?}",
        tips.len(),
        breaks.len()
    );
    assert!(breaks.is_empty(), "links to unknown payloads: {breaks:?}");
    assert_eq!(starts, tips.len(), "each chain has one start and one tip");
    assert_eq!(head_tags.len(), tips.len(), "one head tag per chain");
    for tag in &head_tags {
        assert!(
            tips.contains(tag),
            "head tag {tag} is not a chain tip {tips:?}"
        );
    }
    println!(
        "crash test: {events} events seeded, {kills} SIGKILLs over {:.0} s ({anchored_before_catch_up} items before the final catch-up), \
         {} items on devnet, {tagged} MLflow tags checked, duplicates = {duplicates}, forks = {forks}, dangling tags = {}",
        started.elapsed().as_secs_f64(),
        items.len(),
        dangling.len()
    );
    assert_eq!(
        items.len() as u64,
        events,
        "every event anchored exactly once"
    );
    assert_eq!(duplicates, 0, "{per_event:?}");
    assert_eq!(forks, 0, "{prev:?}");
    assert!(dangling.is_empty(), "{dangling:?}");
    assert_eq!(tagged as u64, events);
    rt.block_on(dn.handle.shutdown());
}
