//! Proof-kernel throughput: JCS canonicalization, envelope signing and verification.
//! Run with `cargo bench --bench kernel`; prints operations per second on one core.

use std::time::{Duration, Instant};

use ario_mlflow_worker::proof::{jcs, sha256_hex, sign_envelope, verify_envelope_text};
use ed25519_dalek::SigningKey;
use serde_json::json;

fn measure(name: &str, mut op: impl FnMut()) {
    for _ in 0..100 {
        op();
    }
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < Duration::from_secs(2) {
        op();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>10.0} ops/s  ({:.1} µs/op, n={n})",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let payload = json!({
        "event_type": "training_complete", "run_id": "3f2a9c1b7d4e4f0a8b6c5d4e3f2a1b0c",
        "params": (0..20).map(|i| (format!("param_{i}"), json!(format!("{}", i * 7)))).collect::<serde_json::Map<_, _>>(),
        "metrics": (0..20).map(|i| (format!("metric_{i}"), json!(i as f64 / 7.0))).collect::<serde_json::Map<_, _>>(),
        "artifact_checksums": (0..10).map(|i| (format!("file_{i}"), json!(sha256_hex(&[i])))).collect::<serde_json::Map<_, _>>(),
    });
    let payload_bytes = jcs::canonicalize(&payload).unwrap();
    let unsigned = json!({
        "event_id": "550e8400-e29b-41d4-a716-446655440000", "event_type": "training_complete",
        "subject": {"type": "mlflow_run", "run_id": "3f2a9c1b7d4e4f0a8b6c5d4e3f2a1b0c"},
        "payload_hash": sha256_hex(&payload_bytes), "previous_hash": "GENESIS",
        "signed_at": "2026-06-10T12:00:00.123456+00:00", "spec_version": "ario.mlflow/v1"
    });
    let envelope = serde_json::to_vec(&sign_envelope(&unsigned, &key).unwrap()).unwrap();
    println!(
        "payload {} bytes, envelope {} bytes",
        payload_bytes.len(),
        envelope.len()
    );
    measure("jcs::canonicalize(training payload)", || {
        std::hint::black_box(jcs::canonicalize(&payload).unwrap());
    });
    measure("sign_envelope", || {
        std::hint::black_box(sign_envelope(&unsigned, &key).unwrap());
    });
    measure("verify_envelope_text (+payload bytes)", || {
        assert!(
            verify_envelope_text(&envelope, Some(&payload_bytes))
                .unwrap()
                .overall
        );
    });
}
