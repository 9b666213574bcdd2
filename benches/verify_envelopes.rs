//! `verify envelope` throughput over 10,000 envelope files on one core: writes 10,000 signed
//! `ario.mlflow/v1` envelopes (plugin-sized, ~570 bytes) to a temp dir, then times the release
//! binary verifying all of them in one invocation, pinned to CPU 0 with `taskset` when present.
//! Run with `cargo bench --bench verify_envelopes` (N overrides the count).

use std::process::Command;
use std::time::Instant;

use ario_mlflow_worker::proof::{jcs, sha256_hex, sign_envelope};
use ed25519_dalek::SigningKey;
use serde_json::json;

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let payload = json!({"event_type": "training_complete", "run_id": format!("{i:032x}"),
            "params": {"C": "0.5"}, "metrics": {"accuracy": 0.95}});
        let hash = sha256_hex(&jcs::canonicalize(&payload).unwrap());
        let unsigned = json!({
            "event_id": format!("00000000-0000-4000-8000-{i:012}"), "event_type": "training_complete",
            "subject": {"type": "mlflow_run", "run_id": format!("{i:032x}")},
            "payload_hash": hash, "previous_hash": "GENESIS",
            "signed_at": "2026-06-10T12:00:00.123456+00:00", "spec_version": "ario.mlflow/v1"
        });
        let env = sign_envelope(&unsigned, &key).unwrap();
        let path = dir.path().join(format!("{i:05}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&env).unwrap()).unwrap();
        files.push(path);
    }
    let bin = env!("CARGO_BIN_EXE_ario-mlflow-worker");
    let pinned = Command::new("taskset").arg("--version").output().is_ok();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["verify", "envelope", "--text"]).args(&files);
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("PASS "))
        .count();
    assert_eq!(passed, n, "every envelope verified");
    println!(
        "verify envelope: {n} files in {secs:.2} s = {:.0} envelopes/s ({}; includes process start, reading each file and printing a line each)",
        n as f64 / secs,
        if pinned { "one core, taskset -c 0" } else { "taskset absent: not pinned" }
    );
}
