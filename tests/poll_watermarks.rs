//! The poller's run watermark (issue 24) against a real MLflow: an idle poll reads only runs
//! finished past the newest `end_time` seen, so a run finished between two polls must still be
//! found — past the watermark at once, a few seconds below it (a late commit, a client clock
//! behind) by the overlap search, far below it by the hourly reconciliation — and a run re-opened
//! and finished again is a new event. Time passing is simulated by ageing the poller's cursor
//! (when the overlap and the reconciliation last ran), never by sleeping.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ario_mlflow_worker::feed::poller::{
    poll_once, FULL_SCAN_EVERY, RUN_OVERLAP_EVERY, RUN_WATERMARK_OVERLAP_MS,
};
use ario_mlflow_worker::mlflow::client::Request;
use ario_mlflow_worker::mlflow::{MlflowClient, MlflowConfig};
use ario_mlflow_worker::store::Store;
use common::mlflow::{venv, MlflowServer};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Registry {
    rt: tokio::runtime::Runtime,
    mlflow: MlflowClient,
    store: Store,
}

impl Registry {
    fn post(&self, path: &str, body: Value) -> Value {
        self.rt
            .block_on(self.mlflow.call::<Value>(
                "test",
                Request::post(format!("api/2.0/mlflow/{path}"), body),
            ))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A run in the default experiment, finished with the given `end_time` (what a client
    /// whose commit was late, or whose clock is behind, writes).
    fn finished_run(&self, end_time: i64) -> String {
        let created = self.post(
            "runs/create",
            json!({"experiment_id": "0", "start_time": end_time - 1_000}),
        );
        let id = created["run"]["info"]["run_id"]
            .as_str()
            .unwrap()
            .to_string();
        self.finish(&id, end_time);
        id
    }

    fn finish(&self, run_id: &str, end_time: i64) {
        self.post(
            "runs/update",
            json!({"run_id": run_id, "status": "FINISHED", "end_time": end_time}),
        );
    }

    fn poll(&self) -> u64 {
        self.rt
            .block_on(poll_once(&self.mlflow, &self.store))
            .unwrap()
            .new_jobs
    }

    fn detected(&self, run_id: &str, end_time: i64) -> bool {
        self.store
            .job(&format!("run/{run_id}@{end_time}"))
            .unwrap()
            .is_some()
    }

    fn cursor(&self) -> Value {
        self.store.cursor("runs").unwrap().unwrap_or(Value::Null)
    }

    /// Moves the cursor's record of when `field` last ran back by `by` (time passing).
    fn age(&self, field: &str, by: Duration) {
        let mut cursor = self.cursor();
        let at = cursor[field].as_i64().unwrap_or(0);
        cursor[field] = json!(at - by.as_millis() as i64);
        self.store.set_cursor("runs", &cursor).unwrap();
    }
}

#[test]
fn a_run_finished_between_two_polls_is_never_missed() {
    let Some(venv) = venv() else { return };
    let server = MlflowServer::start(&venv);
    let dir = tempfile::tempdir().unwrap();
    let r = Registry {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        mlflow: MlflowClient::new(MlflowConfig::new(server.uri.parse().unwrap())).unwrap(),
        store: Store::open(&dir.path().join("state")).unwrap(),
    };
    let t0 = now_ms();

    // The first poll reconciles: every finished run without a proof, and sets the watermark.
    let first = r.finished_run(t0);
    assert_eq!(r.poll(), 1);
    assert!(r.detected(&first, t0));
    assert_eq!(r.cursor()["last_scan"], "full", "{}", r.cursor());
    assert_eq!(r.cursor()["watermark_ms"], t0, "{}", r.cursor());

    // Between two polls: one run finishes past the watermark, another commits late with an
    // end_time a minute below it. The next poll is incremental and finds the first at once.
    let past = r.finished_run(t0 + 5_000);
    let late = r.finished_run(t0 - 60_000);
    let cursor_before = r.cursor();
    r.poll();
    assert!(r.detected(&past, t0 + 5_000), "{}", r.cursor());
    assert_eq!(r.cursor()["last_scan"], "incremental", "{}", r.cursor());
    assert_eq!(r.cursor()["watermark_ms"], t0 + 5_000);
    // The late one is found by the overlap search, which runs at least every RUN_OVERLAP_EVERY.
    if !r.detected(&late, t0 - 60_000) {
        assert_eq!(
            r.cursor()["window_scan_ms"],
            cursor_before["window_scan_ms"],
            "the overlap search ran and missed the late run"
        );
        r.age("window_scan_ms", RUN_OVERLAP_EVERY);
        r.poll();
    }
    assert!(
        r.detected(&late, t0 - 60_000),
        "a run finished a minute below the watermark is found within {RUN_OVERLAP_EVERY:?}: {}",
        r.cursor()
    );

    // A client clock an hour behind: below the overlap, so the hourly reconciliation finds it.
    let skewed_end = t0 - RUN_WATERMARK_OVERLAP_MS - 3_600_000;
    let skewed = r.finished_run(skewed_end);
    r.age("window_scan_ms", RUN_OVERLAP_EVERY);
    r.poll();
    r.age("full_scan_ms", FULL_SCAN_EVERY);
    r.poll();
    assert!(
        r.detected(&skewed, skewed_end),
        "found within {FULL_SCAN_EVERY:?}: {}",
        r.cursor()
    );

    // Re-opened and finished again: a new end_time past the watermark is a new event.
    r.post("runs/update", json!({"run_id": first, "status": "RUNNING"}));
    r.finish(&first, t0 + 10_000);
    assert_eq!(r.poll(), 1);
    assert!(r.detected(&first, t0 + 10_000));

    // Nothing new: idle polls create no job, and each event was detected once.
    for _ in 0..3 {
        assert_eq!(r.poll(), 0);
    }
    r.age("window_scan_ms", RUN_OVERLAP_EVERY);
    r.age("full_scan_ms", FULL_SCAN_EVERY);
    assert_eq!(r.poll(), 0, "a reconciliation re-detects nothing");
    assert_eq!(r.store.job_count(), 5);
}
