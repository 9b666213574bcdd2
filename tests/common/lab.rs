//! A real MLflow, devnet over TLS, a home directory and devnet's CA: the set-up of every
//! test that anchors or verifies against the real server.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::devnet::{start_devnet, TestDevnet};
use super::mlflow::MlflowServer;
use super::run::{mlflow_data, show};

/// The envelope key the real-MLflow tests sign with (base64 seed, also given to the plugin
/// so it never rotates its key files).
pub const SEED_B64: &str = "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=";

/// The running parts.
pub struct Lab {
    pub server: MlflowServer,
    pub rt: tokio::runtime::Runtime,
    pub dn: TestDevnet,
    pub home: tempfile::TempDir,
    pub ca: PathBuf,
    pub gateway: String,
}

impl Lab {
    /// Starts MLflow from `venv` (proxied artifacts) and devnet with TLS.
    pub fn start(venv: &Path) -> Lab {
        Self::start_with(venv, super::mlflow::ArtifactMode::Proxy)
    }

    /// Starts MLflow keeping artifacts as `mode` says, and devnet with TLS.
    pub fn start_with(venv: &Path, mode: super::mlflow::ArtifactMode) -> Lab {
        Self::around(MlflowServer::start_with(venv, mode))
    }

    /// A lab around a server the test started its own way (e.g. with `--enable-workspaces`),
    /// with devnet over TLS.
    pub fn around(server: MlflowServer) -> Lab {
        let Arweave {
            rt,
            dn,
            home,
            ca,
            gateway,
        } = Arweave::start();
        Lab {
            server,
            rt,
            dn,
            home,
            ca,
            gateway,
        }
    }
}

/// What a worker needs to anchor against `tracking_uri` and this devnet: the signing key,
/// Turbo's URL, devnet's CA, the gateway host, a state directory and a home.
pub fn anchoring_env(
    tracking_uri: &str,
    dn: &TestDevnet,
    ca: &Path,
    gateway: &str,
    home: &Path,
    state: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("MLFLOW_TRACKING_URI", tracking_uri.to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("ARIO_MLFLOW_UPLOAD_URL", dn.handle.url().to_string()),
        ("ARIO_MLFLOW_CA_CERT", ca.display().to_string()),
        ("ARIO_MLFLOW_GATEWAY_HOST", gateway.to_string()),
        ("ARIO_MLFLOW_STATE_DIR", state.display().to_string()),
        ("HOME", home.display().to_string()),
        // The test venv has the plugin installed, so every run carries `ario.enabled`; only
        // the tests of the plugin beside the service need its grace period.
        ("ARIO_MLFLOW_PLUGIN_GRACE", "0".to_string()),
    ]
}

impl Lab {
    /// [`anchoring_env`] for this lab's MLflow.
    pub fn worker_env(&self, state: &Path) -> Vec<(&'static str, String)> {
        anchoring_env(
            &self.server.uri,
            &self.dn,
            &self.ca,
            &self.gateway,
            self.home.path(),
            state,
        )
    }
}

/// The Arweave side of a lab: devnet over TLS on a runtime of its own, a home directory,
/// devnet's CA written in it, and the gateway host.
pub struct Arweave {
    pub rt: tokio::runtime::Runtime,
    pub dn: TestDevnet,
    pub home: tempfile::TempDir,
    pub ca: PathBuf,
    pub gateway: String,
}

impl Arweave {
    /// Starts devnet with TLS.
    pub fn start() -> Arweave {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dn = rt.block_on(start_devnet(true, &[]));
        let home = tempfile::tempdir().unwrap();
        let ca = home.path().join("devnet-ca.pem");
        std::fs::write(&ca, dn.handle.ca_pem().unwrap()).unwrap();
        let gateway = dn.handle.url().trim_start_matches("https://").to_string();
        Arweave {
            rt,
            dn,
            home,
            ca,
            gateway,
        }
    }
}

/// Runs `tests/data/mlflow/scenario.py` with `suffix` and returns the ids it printed.
pub fn scenario(server: &MlflowServer, venv: &Path, suffix: &str) -> Value {
    let out = server.python(
        venv,
        &mlflow_data("scenario.py"),
        &[&server.uri, suffix],
        &[],
    );
    assert!(out.status.success(), "scenario: {}", show(&out));
    last_json_line(&out.stdout)
}

/// Runs `tests/data/mlflow/seed_many.py` (RUNS finished runs with a dataset each, VERSIONS of
/// them registered and promoted) and returns the counts it printed.
pub fn seed_many(
    server: &MlflowServer,
    venv: &Path,
    runs: u32,
    versions: u32,
    suffix: &str,
) -> Value {
    let (runs, versions) = (runs.to_string(), versions.to_string());
    let out = server.python(
        venv,
        &mlflow_data("seed_many.py"),
        &[&server.uri, &runs, &versions, suffix],
        &[],
    );
    assert!(out.status.success(), "seed: {}", show(&out));
    last_json_line(&out.stdout)
}

/// The last line of `stdout` that is a JSON object (MLflow's client prints other lines).
pub fn last_json_line(stdout: &[u8]) -> Value {
    serde_json::from_slice(
        stdout
            .split(|b| *b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON line"),
    )
    .unwrap()
}
