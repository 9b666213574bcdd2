//! Upload round trip against devnet (loopback, http): the median (and p90/p99) of 1,000
//! sequential uploads, then throughput with 32 concurrent uploads. Client and devnet share
//! this process and the machine's cores, so the numbers include devnet's own work (parsing,
//! Ed25519 verification, fsync of item + metadata, an RSA-4096 receipt signature per upload).
//! Run: `cargo bench --bench turbo_upload`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ario_mlflow_worker::arweave::http::HttpSettings;
use ario_mlflow_worker::arweave::turbo::{RetryPolicy, TurboConfig};
use ario_mlflow_worker::arweave::{DataItem, ItemSigner, Tag, TurboClient};
use ario_mlflow_worker::devnet::{start, DevnetConfig};

fn items(n: usize, offset: usize) -> Vec<Vec<u8>> {
    let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
    (0..n)
        .map(|i| {
            // A realistic ~570-byte envelope-sized payload with the plugin's six tags.
            let payload = format!(
                r#"{{"event_id":"{:036}","event_type":"training_complete","pad":"{}"}}"#,
                i + offset,
                "x".repeat(480)
            );
            let tags = vec![
                Tag::new("Content-Type", "application/json"),
                Tag::new("App-Name", "ar-io-mlflow"),
                Tag::new("App-Version", "ario-mlflow-worker/bench"),
                Tag::new("Event-Type", "training_complete"),
                Tag::new("Event-Id", format!("{:036}", i + offset)),
                Tag::new("Chain-Prev", "GENESIS"),
            ];
            DataItem::sign(&signer, tags, payload.into_bytes(), None, None)
                .unwrap()
                .to_bytes()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().join("data"));
    config.receipt_key = Some(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/devnet-receipt-jwk.json"
        )
        .into(),
    );
    let devnet = start(config).await.unwrap();
    let client = TurboClient::new(TurboConfig {
        upload_url: devnet.url().parse().unwrap(),
        http: HttpSettings::default(),
        retry: RetryPolicy::default(),
    })
    .unwrap();

    for warm in items(20, 1_000_000) {
        client.upload(&warm).await.unwrap();
    }
    let sequential = items(1_000, 0);
    let mut latencies = Vec::with_capacity(sequential.len());
    let started = Instant::now();
    for item in &sequential {
        let t = Instant::now();
        client.upload(item).await.unwrap();
        latencies.push(t.elapsed());
    }
    let total = started.elapsed();
    latencies.sort();
    println!(
        "sequential: {} uploads in {:.2} s — median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {:.0} uploads/s",
        latencies.len(),
        total.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.9).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len() as f64 / total.as_secs_f64()
    );

    let concurrent = Arc::new(items(2_000, 10_000));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (client, concurrent, next) = (client.clone(), concurrent.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = concurrent.get(i) else { break };
                    client.upload(item).await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let total = started.elapsed();
    println!(
        "32 concurrent: {} uploads in {:.2} s — {:.0} uploads/s",
        concurrent.len(),
        total.as_secs_f64(),
        concurrent.len() as f64 / total.as_secs_f64()
    );
    assert_eq!(devnet.items().len(), 20 + 1_000 + 2_000);

    // What one upload costs devnet in receipt signing alone (RSA-4096 PSS), for context.
    let (signer, _) =
        ario_mlflow_worker::arweave::wallet::load_file(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/devnet-receipt-jwk.json"
        )))
        .unwrap();
    let ItemSigner::Arweave(key) = signer else {
        unreachable!("the receipt key is RSA")
    };
    let t = Instant::now();
    for i in 0..50u64 {
        ario_mlflow_worker::arweave::Receipt::issue(&key, "id", "owner", i, 1, vec![]).unwrap();
    }
    println!(
        "devnet receipt signature (RSA-4096 PSS): {:.2} ms each",
        t.elapsed().as_secs_f64() * 1e3 / 50.0
    );
    devnet.shutdown().await;
}
