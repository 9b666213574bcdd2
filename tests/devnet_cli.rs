//! `ario-mlflow-worker devnet --tls` as an operator runs it: the real binary on an ephemeral
//! port, an item uploaded with the project's client, the bytes read back with curl (when
//! installed) and with the gateway reader, then a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use ario_mlflow_worker::arweave::gateway::{Gateway, GatewayReader};
use ario_mlflow_worker::arweave::http::HttpSettings;
use ario_mlflow_worker::arweave::turbo::{RetryPolicy, TurboConfig};
use ario_mlflow_worker::arweave::{DataItem, ItemSigner, Tag, TurboClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_tls_binary_serves_uploaded_bytes_to_curl() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
        .args(["devnet", "--tls", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--cert-out")
        .arg(&ca)
        .arg("--receipt-key")
        .arg(common::devnet::receipt_key())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let url = ready["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let http = HttpSettings {
        extra_ca_pem: Some(std::fs::read(&ca).unwrap()),
        request_timeout: Duration::from_secs(10),
        ..HttpSettings::default()
    };
    let client = TurboClient::new(TurboConfig {
        upload_url: url.parse().unwrap(),
        http: http.clone(),
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[42; 32]));
    let payload = br#"{"event_type":"training_complete","proof":"via devnet --tls"}"#.to_vec();
    let item = DataItem::sign(
        &signer,
        vec![Tag::new("Content-Type", "application/json")],
        payload.clone(),
        None,
        None,
    )
    .unwrap();
    let outcome = client.upload(&item.to_bytes()).await.unwrap();
    assert_eq!(outcome.receipt().unwrap().id, item.id());

    let reader = GatewayReader::new(vec![Gateway::parse(&url).unwrap()], &http).unwrap();
    assert_eq!(
        reader.fetch_raw(&item.id(), None).await.unwrap().bytes,
        payload
    );
    match Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&ca)
        .arg(format!("{url}/raw/{}", item.id()))
        .output()
    {
        Ok(out) => {
            assert!(
                out.status.success(),
                "curl: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, payload, "curl got the exact payload bytes");
        }
        Err(_) => eprintln!("NOTICE: curl not installed; read back with the gateway reader only"),
    }

    // SIGTERM: graceful stop, exit 0.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "devnet exit status {status:?}");
}
