//! devnet in-process on an ephemeral loopback port, with its data in a temp dir.

use std::path::PathBuf;
use std::time::Duration;

use ario_mlflow_worker::arweave::http::HttpSettings;
use ario_mlflow_worker::arweave::turbo::{RetryPolicy, TurboConfig};
use ario_mlflow_worker::arweave::TurboClient;
use ario_mlflow_worker::devnet::faults::FaultRule;
use ario_mlflow_worker::devnet::{start, DevnetConfig, DevnetHandle};

/// A running devnet and the temp dir holding its data (removed on drop).
pub struct TestDevnet {
    pub handle: DevnetHandle,
    pub dir: tempfile::TempDir,
}

/// The committed throwaway receipt key (avoids an RSA-4096 keygen per test).
pub fn receipt_key() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/devnet-receipt-jwk.json")
}

/// Starts devnet with these fault flags (e.g. `["upload:503x2"]`).
pub async fn start_devnet(tls: bool, faults: &[&str]) -> TestDevnet {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, tls, faults, None).await
}

/// Starts devnet in an existing directory (restarts), optionally on a fixed address.
pub async fn start_in(
    dir: tempfile::TempDir,
    tls: bool,
    faults: &[&str],
    listen: Option<std::net::SocketAddr>,
) -> TestDevnet {
    let mut config = DevnetConfig::new(dir.path().join("data"));
    config.tls = tls;
    config.receipt_key = Some(receipt_key());
    config.faults = faults
        .iter()
        .map(|f| FaultRule::parse(f).unwrap())
        .collect();
    if let Some(addr) = listen {
        config.listen = addr;
    }
    let handle = start(config).await.unwrap();
    TestDevnet { handle, dir }
}

/// HTTP settings trusting the devnet's CA (when TLS) with a short timeout.
pub fn http_for(dn: &DevnetHandle, timeout: Duration) -> HttpSettings {
    HttpSettings {
        request_timeout: timeout,
        connect_timeout: Duration::from_secs(2),
        extra_ca_pem: dn.ca_pem().map(|p| p.as_bytes().to_vec()),
    }
}

/// Fast retries for tests: many attempts, millisecond backoff, Retry-After capped at 5 s.
pub fn fast_retry(max_attempts: usize) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
    }
}

/// A Turbo client pointed at the devnet.
pub fn turbo(dn: &DevnetHandle, retry: RetryPolicy, timeout: Duration) -> TurboClient {
    TurboClient::new(TurboConfig {
        upload_url: dn.url().parse().unwrap(),
        http: http_for(dn, timeout),
        retry,
    })
    .unwrap()
}
