//! A store of years (issue 24): bytes per stored event and what a periodic probe costs.
//!
//! 1. **Bytes per event**: N Done per-trace predictions with realistic prepared events (a
//!    ~560-byte canonical payload, a ~790-byte envelope, an Ed25519 data item, the MLflow writes)
//!    — the JSON record as an older build wrote it (bytes as arrays of numbers), as written now
//!    (base64), and after compaction (`--retain-done`); plus the store's size on disk as written,
//!    after compaction, and after the next open rewrote the mostly free file.
//! 2. **Probe cost** at 10,000 and 1,000,000 stored jobs (N: `STORE_JOBS`): what `/readyz`'s store
//!    probe, the backfill progress and `status` read — `parked_count()`, `open_count()`,
//!    `job_count()`, `due()` — against the full scan they replaced (`jobs()` filtered for parked).
//!
//! 3. **Memory under a steady stream**: `STORE_STEADY` (default 10,000) jobs written 10 at a time
//!    (detected, signed, Done), retention compacting them every 50 — the process's RSS every
//!    tenth of the way: flat once sled's page cache (4 MiB) is full.
//!
//! Run with `cargo bench --bench store_size` (`STORE_JOBS=10000,1000000` by default). For the
//! service's allocator setting, run it with `MALLOC_ARENA_MAX=2` (the binary sets it itself).

use std::time::Instant;

use ario_mlflow_worker::event::ChangeEvent;
use ario_mlflow_worker::store::prepared::{ArtifactContent, Prepared, TagValue, Write};
use ario_mlflow_worker::store::{JobState, Store};

fn prediction(i: usize) -> Prepared {
    let trace = format!("tr-{i:032x}");
    let payload = format!(
        r#"{{"artifact_verified":null,"decision_id":"{trace}","event_type":"prediction","input_hash":"{:064x}","latency_ms":12.34,"mlflow_trace_id":"{trace}","model_name":"fraud-detector","model_uri":"models:/fraud-detector/3","model_version":"3","output_hash":"{:064x}","run_id":"{:032x}"}}"#,
        i,
        i + 1,
        i + 2
    );
    let envelope = serde_json::json!({
        "event_id": format!("{:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b", i),
        "event_type": "prediction",
        "payload_hash": format!("{:064x}", i * 7),
        "previous_hash": "rYRZGche0rb9qjjkO73Md4lf7lprWM6CnpgTgkEQGJY",
        "public_key": "207a067892821e25d770f1fba0c47c11ff4b813e54162ece9eb839e076231ab6",
        "signature": "29c8ae0da0669e245fe1a876b2acebb535e64c2eb3ec89d6d19dec427f43a6dbbd5b59ee048ec58a90fadcc96cc7ebcd3d6d253ef0ec68283dedb696874e9508",
        "signed_at": "2026-12-04T20:29:26.613033+00:00",
        "spec_version": "ario.mlflow/v1",
        "subject": {"type": "mlflow_prediction", "decision_id": trace, "model_run_id": format!("{:032x}", i + 2), "trace_id": trace},
    });
    // An Ed25519 data item: signature, owner, flags, 6 tags, the envelope's JCS as data.
    let data = serde_json::to_vec(&envelope).unwrap_or_default();
    let mut item = vec![2u8, 0];
    item.extend(std::iter::repeat_n(0xab, 64 + 32 + 2 + 16 + 180));
    item.extend(&data);
    Prepared {
        event_type: "prediction".into(),
        subject: trace.clone(),
        payload_hash: format!("{:064x}", i * 7),
        payload_bytes: payload.clone().into_bytes(),
        envelope,
        item,
        tx_id: format!("{:043}", i),
        signed_writes: vec![
            Write::Artifact {
                artifact_uri: format!("mlflow-artifacts:/1/{:032x}/artifacts", i + 2),
                path: format!("ario/predictions/{trace}/payload.json"),
                content: ArtifactContent::Payload,
            },
            Write::TraceTag {
                trace_id: trace.clone(),
                key: "ario.payload_json".into(),
                value: TagValue::Text(payload),
            },
        ],
        anchored_writes: vec![Write::TraceTag {
            trace_id: trace,
            key: "ario.prediction_tx".into(),
            value: TagValue::TxId,
        }],
    }
}

fn bytes_per_event(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut new_json = 0usize;
    let mut old_json = 0usize;
    for i in 0..n {
        let ev = ChangeEvent::TraceLogged {
            trace_id: format!("tr-{i:032x}"),
        };
        store.detect(&ev).unwrap();
        let key = ev.dedupe_key();
        let p = prediction(i);
        store.sign(&key, &p, None).unwrap();
        let job = store.update(&key, |j| j.state = JobState::Done).unwrap();
        new_json += serde_json::to_vec(&job).unwrap().len();
        // The same record as builds before this one wrote it: bytes as arrays of numbers.
        let mut old = serde_json::to_value(&job).unwrap();
        old["prepared"]["payload_bytes"] = serde_json::json!(p.payload_bytes);
        old["prepared"]["item"] = serde_json::json!(p.item);
        old_json += serde_json::to_vec(&old).unwrap().len();
    }
    store.flush_blocking();
    let on_disk = store.size_on_disk();
    store.compact(u64::MAX).unwrap();
    let compacted_json: usize = store
        .jobs()
        .unwrap()
        .iter()
        .map(|j| serde_json::to_vec(j).unwrap().len())
        .sum();
    store.flush_blocking();
    let compacted_on_disk = store.size_on_disk();
    drop(store);
    // Reopened: the file, mostly space freed by retention, is rewritten (store::shrink).
    let t = Instant::now();
    let store = Store::open(dir.path()).unwrap();
    let reopened = t.elapsed();
    let shrunk_on_disk = store.size_on_disk();
    assert_eq!(store.job_count(), n);
    println!("bytes per stored per-trace prediction ({n} Done jobs):");
    println!(
        "  record as before (bytes as number arrays)  {:>6} B",
        old_json / n
    );
    println!(
        "  record now (bytes as base64)               {:>6} B",
        new_json / n
    );
    println!(
        "  record compacted after --retain-done       {:>6} B",
        compacted_json / n
    );
    println!(
        "  store on disk per event: {:.0} B written, {:.0} B after compaction (sled reuses the space), \
         {:.0} B after the next open rewrote it ({:.1} s)",
        on_disk as f64 / n as f64,
        compacted_on_disk as f64 / n as f64,
        shrunk_on_disk as f64 / n as f64,
        reopened.as_secs_f64()
    );
}

fn probes(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let ev = ChangeEvent::TraceLogged {
            trace_id: format!("tr-{i:032x}"),
        };
        store.detect(&ev).unwrap();
        let key = ev.dedupe_key();
        // 10 open, 5 parked, the rest Done (compacted, as after retention).
        if i >= 15 {
            store.update(&key, |j| j.state = JobState::Done).unwrap();
        } else if i >= 10 {
            store
                .update(&key, |j| j.state = JobState::Parked { error: "x".into() })
                .unwrap();
        }
    }
    println!(
        "\nprobe cost with {n} stored jobs (built in {:.0} s):",
        t.elapsed().as_secs_f64()
    );
    let time = |name: &str, reps: usize, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let mut found = 0;
        for _ in 0..reps {
            found = f();
        }
        println!(
            "  {name:<46} {found:>8}  {:>10.3} ms per call",
            t.elapsed().as_secs_f64() * 1000.0 / reps as f64
        );
    };
    time("parked_count() (index)", 100, &|| store.parked_count());
    time("open_count() (index)", 100, &|| store.open_count());
    time("job_count() (queue length)", 100, &|| store.job_count());
    time("due() (open-jobs index)", 100, &|| {
        store.due(u64::MAX).unwrap().len()
    });
    // The process's memory with every job written and the indexes probed (sled's page cache is
    // capped; the earlier parts of this benchmark are in it too).
    println!(
        "  process RSS with them written and probed   {:>8.1} MiB (store {:.1} MiB on disk)",
        rss_kib() as f64 / 1024.0,
        store.size_on_disk() as f64 / 1048576.0
    );
    time("before: every job read for parked ones", 1, &|| {
        store
            .jobs()
            .unwrap()
            .iter()
            .filter(|j| matches!(j.state, JobState::Parked { .. }))
            .count()
    });
    // Reopened: a file that is mostly garbage is rewritten (store::shrink); `due()` again on the
    // rewritten indexes (the open-jobs index saw a million insertions and removals).
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir.path()).unwrap();
    println!(
        "  reopened in {:.1} s: store {:.1} MiB on disk",
        t.elapsed().as_secs_f64(),
        store.size_on_disk() as f64 / 1048576.0
    );
    time("due() after the reopen", 100, &|| {
        store.due(u64::MAX).unwrap().len()
    });
    assert_eq!(store.job_count(), n);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn steady(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut samples = Vec::new();
    for i in 0..n {
        let ev = ChangeEvent::TraceLogged {
            trace_id: format!("tr-{i:032x}"),
        };
        store.detect(&ev).unwrap();
        let key = ev.dedupe_key();
        store.sign(&key, &prediction(i), None).unwrap();
        store.update(&key, |j| j.state = JobState::Done).unwrap();
        if i % 50 == 49 {
            store.compact(u64::MAX).unwrap();
            store.due(u64::MAX).unwrap();
        }
        if (i + 1) % (n / 10).max(1) == 0 {
            samples.push(format!("{:.1}", rss_kib() as f64 / 1024.0));
        }
    }
    println!(
        "\nsteady stream of {n} jobs ({:.0} jobs/s): RSS MiB every tenth: {}",
        n as f64 / t.elapsed().as_secs_f64(),
        samples.join(" ")
    );
}

fn main() {
    steady(
        std::env::var("STORE_STEADY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
    );
    bytes_per_event(
        std::env::var("STORE_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000),
    );
    let sizes = std::env::var("STORE_JOBS").unwrap_or_else(|_| "10000,1000000".into());
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        probes(n);
    }
}
