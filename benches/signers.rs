//! Envelope signatures per second through each signer: the file key (in memory) and a PKCS#11
//! token (Debian's SoftHSM2 in a temporary directory, the key generated in it with OpenSC's
//! `pkcs11-tool`). Each signature through the token is also checked against its public key, as
//! the service does. Run with `cargo bench --bench signers` (needs `softhsm2` and `opensc`).

use std::process::Command;
use std::time::{Duration, Instant};

use ario_mlflow_worker::keys::{EnvelopeKey, KeySource, Pkcs11Config};
use ario_mlflow_worker::proof::sign_envelope;
use serde_json::json;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn rate(name: &str, threads: usize, key: &EnvelopeKey) -> f64 {
    let unsigned = json!({
        "spec_version": "ario.mlflow/v1", "event_id": "550e8400-e29b-41d4-a716-446655440000",
        "event_type": "prediction", "subject": {"type": "mlflow_trace", "trace_id": "tr-1"},
        "payload_hash": "00".repeat(32), "previous_hash": "GENESIS",
        "signed_at": "2026-12-05T00:00:00.000000+00:00",
    });
    for _ in 0..100 {
        sign_envelope(&unsigned, key).unwrap();
    }
    let started = Instant::now();
    let counts: Vec<u64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(3) {
                        sign_envelope(&unsigned, key).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let per_sec = counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64();
    println!("{name:<34} {threads} thread(s) {per_sec:>10.0} signatures/s");
    per_sec
}

fn main() {
    if !std::path::Path::new(MODULE).exists() {
        eprintln!("SoftHSM2 is not installed ({MODULE}): apt-get install softhsm2 opensc");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().join("tokens").display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
    );
    run(
        "pkcs11-tool",
        &[
            "--module",
            MODULE,
            "--token-label",
            "bench",
            "--login",
            "--pin",
            "1234",
            "--keypairgen",
            "--key-type",
            "EC:edwards25519",
            "--label",
            "k",
        ],
    );
    let token = EnvelopeKey::from_pkcs11(Pkcs11Config {
        module: MODULE.into(),
        token: "bench".into(),
        key: "k".into(),
        pin: cryptoki::types::AuthPin::new("1234".into()),
    })
    .unwrap();
    let file = EnvelopeKey::from_seed(&[7; 32], KeySource::Env);
    for threads in [1, 2] {
        let f = rate("file key", threads, &file);
        let t = rate("PKCS#11 (SoftHSM2)", threads, &token);
        println!("  file / token: {:.1}x", f / t);
    }
}
