//! Shared test harness: locating `../shared`, loading vectors, the corpus key.
//!
//! Later issues add the real MLflow server, the broker and devnet here, each started on an
//! ephemeral port and stopped on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use serde_json::Value;

/// An exclusive lock on a file, held until dropped: one test process at a time prepares a tool
/// several test binaries share (they run in parallel lanes under `scripts/test`).
pub struct ExclusiveFile(std::fs::File);

impl ExclusiveFile {
    /// Waits for the lock on `path` (created, with its directory).
    pub fn lock(path: &Path) -> ExclusiveFile {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open the lock file {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        ExclusiveFile(file)
    }
}

/// The project's `shared/` directory: `$ARIO_SHARED_DIR`, else `../shared` beside the repo.
/// Missing vectors are a hard failure, never a silent pass.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("ARIO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        });
    assert!(
        dir.join("vectors").is_dir(),
        "conformance data not found at {} (set ARIO_SHARED_DIR to the shared/ folder)",
        dir.display()
    );
    dir
}

/// Parses a JSON file under `shared/`.
pub fn load_json(relative: &str) -> Value {
    let path = shared_dir().join(relative);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every `*.json` file directly in `shared/<relative>` whose name starts with `prefix`, sorted.
pub fn vector_files(relative: &str, prefix: &str) -> Vec<PathBuf> {
    let dir = shared_dir().join(relative);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    files.sort();
    files
}

/// The corpus's fixed seed `0123…cdef` as a signing key.
pub const CORPUS_SEED_HEX: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The corpus's fixed public key.
pub const CORPUS_PUBLIC_HEX: &str =
    "207a067892821e25d770f1fba0c47c11ff4b813e54162ece9eb839e076231ab6";

/// The signing key of a vector's `fixed_keypair`, checked against its stated public key.
pub fn vector_key(vector: &Value) -> SigningKey {
    let pair = &vector["fixed_keypair"];
    let seed: [u8; 32] = hex_bytes(&pair["ed25519_seed_hex"])
        .try_into()
        .expect("32-byte seed");
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        hex::encode(key.verifying_key().as_bytes()),
        str_of(&pair["ed25519_public_hex"])
    );
    key
}

/// A JSON string field, or a panic naming it.
pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Decodes a hex string field.
pub fn hex_bytes(v: &Value) -> Vec<u8> {
    hex::decode(str_of(v)).unwrap_or_else(|e| panic!("bad hex {v}: {e}"))
}

pub mod devnet {
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
}

pub mod oracle {
    //! The independent ANS-104 oracle: `node shared/tools/ans104/verify_dataitem.mjs` (arbundles,
    //! the library Turbo verifies with) run on items devnet accepted. Needs node + npm; prints a
    //! notice and skips when node is absent, except under CI, where it is required.

    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    fn node_present() -> bool {
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The oracle script in a scratch copy with arbundles installed, or `None` without node.
    pub fn script() -> Option<PathBuf> {
        static SCRIPT: OnceLock<Option<PathBuf>> = OnceLock::new();
        SCRIPT
            .get_or_init(|| {
                if !node_present() {
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "node is required under CI for the ANS-104 oracle"
                    );
                    eprintln!("NOTICE: node not found; ANS-104 oracle SKIPPED");
                    return None;
                }
                let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ans104-oracle");
                // Test binaries run in parallel lanes (scripts/test): one installs.
                let _one_process = super::ExclusiveFile::lock(&dir.with_extension("lock"));
                if !dir.join("node_modules/arbundles/package.json").exists() {
                    std::fs::create_dir_all(&dir).unwrap();
                    for name in ["package.json", "verify_dataitem.mjs", "make_dataitem.mjs"] {
                        let from = super::shared_dir().join("tools/ans104").join(name);
                        std::fs::write(dir.join(name), std::fs::read(&from).unwrap()).unwrap();
                    }
                    let out = Command::new("npm")
                        .args([
                            "install",
                            "--no-audit",
                            "--no-fund",
                            "--loglevel=error",
                            "arbundles@0.11.2",
                        ])
                        .current_dir(&dir)
                        .output()
                        .expect("npm must be installed alongside node for the ANS-104 oracle");
                    assert!(
                        out.status.success(),
                        "npm install arbundles failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                Some(dir.join("verify_dataitem.mjs"))
            })
            .clone()
    }

    /// Checks every `<id>.bin` in `items_dir` with the oracle: each must be `valid` and
    /// `strictValid`, with the id we stored it under. Returns how many were checked.
    pub fn check_items(items_dir: &Path) -> usize {
        let Some(script) = script() else { return 0 };
        let mut files: Vec<PathBuf> = std::fs::read_dir(items_dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect();
        files.sort();
        for file in &files {
            // Output goes to a file: node may cut large output short on a pipe when it exits.
            let report_path = file.with_extension("oracle.json");
            let report_file = std::fs::File::create(&report_path).unwrap();
            let out = Command::new("node")
                .arg(&script)
                .arg(file)
                .stdout(report_file)
                .output()
                .unwrap();
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap_or_else(|e| {
                    panic!(
                        "oracle output for {}: {e}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let _ = std::fs::remove_file(&report_path);
            assert_eq!(
                report["valid"],
                serde_json::json!(true),
                "{}: {report}",
                file.display()
            );
            assert_eq!(
                report["strictValid"],
                serde_json::json!(true),
                "{}: {report}",
                file.display()
            );
            let stem = file.file_stem().unwrap().to_string_lossy();
            assert_eq!(
                report["id"].as_str(),
                Some(stem.as_ref()),
                "{}",
                file.display()
            );
        }
        println!("ANS-104 oracle (arbundles verify_dataitem.mjs): {} items accepted by devnet checked, all valid + strictValid", files.len());
        files.len()
    }
}

pub mod mlflow {
    //! A real MLflow server from PyPI for the tests: a venv (created on first use, reused from
    //! `$ARIO_TEST_VENV` or `~/.cache/ario-mlflow-worker/venv-mlflow`) with `mlflow`, the
    //! `ar-io-mlflow` plugin and scikit-learn, and a lean server (`--workers 1`, sqlite, proxied
    //! artifacts) on an ephemeral loopback port, stopped (whole process group) on drop.

    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    /// Pinned so the parity and cross-verification tests always meet the profile they were written for.
    pub const PIP_PACKAGES: [&str; 5] = [
        "mlflow==3.17.2",
        "ar-io-mlflow==0.3.0",
        "scikit-learn",
        "pandas",
        "boto3",
    ];

    /// Where a server keeps artifacts, and whether clients reach them through its proxy.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ArtifactMode {
        /// `--artifacts-destination DIR`: runs get `mlflow-artifacts:/…` roots (the proxy).
        Proxy,
        /// `--no-serve-artifacts --default-artifact-root file://DIR`: clients use the path.
        DirectFile,
        /// `--no-serve-artifacts --default-artifact-root s3://ROOT`: clients use the bucket,
        /// with the S3 endpoint and credentials in `env`.
        DirectS3 {
            /// `bucket/prefix`.
            root: String,
            /// `MLFLOW_S3_ENDPOINT_URL`, `AWS_*`.
            env: Vec<(String, String)>,
        },
    }

    /// MLflow 2.x (the last 2.x release) for the compatibility tests. SQLAlchemy is pinned:
    /// MLflow 2.22 imports a pool class newer SQLAlchemy releases removed.
    pub const PIP_PACKAGES_MLFLOW2: [&str; 3] =
        ["mlflow==2.22.1", "sqlalchemy==2.0.36", "scikit-learn"];

    /// The venv, created if needed; `None` (with a notice) when python3 is absent outside CI.
    pub fn venv() -> Option<PathBuf> {
        venv_with("ARIO_TEST_VENV", "venv-mlflow", &PIP_PACKAGES)
    }

    /// The MLflow 2.x venv ([`PIP_PACKAGES_MLFLOW2`]), created if needed.
    pub fn venv_mlflow2() -> Option<PathBuf> {
        venv_with(
            "ARIO_TEST_VENV_MLFLOW2",
            "venv-mlflow2",
            &PIP_PACKAGES_MLFLOW2,
        )
    }

    fn venv_with(env_var: &str, name: &str, packages: &[&str]) -> Option<PathBuf> {
        if Command::new("python3").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "python3 is required under CI for the MLflow tests"
            );
            eprintln!("NOTICE: python3 not found; MLflow integration tests SKIPPED");
            return None;
        }
        let dir = std::env::var_os(env_var)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/ario-mlflow-worker")
                    .join(name)
            });
        // Tests of one binary run in parallel threads, and binaries in parallel lanes
        // (scripts/test): one of them creates the venv.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        let _one_process = super::ExclusiveFile::lock(&dir.with_extension("lock"));
        let marker = dir.join(".ario-packages");
        let wanted = packages.join(" ");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            let started = Instant::now();
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&dir)
                .status()
                .expect("python3 -m venv");
            assert!(status.success(), "python3 -m venv {} failed", dir.display());
            let out = Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(packages)
                .output()
                .expect("pip");
            assert!(
                out.status.success(),
                "pip install failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&marker, &wanted).unwrap();
            eprintln!(
                "created MLflow venv {} in {:.0} s",
                dir.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Some(dir)
    }

    /// A running MLflow tracking server.
    pub struct MlflowServer {
        child: Child,
        venv: PathBuf,
        port: u16,
        mode: ArtifactMode,
        env: Vec<(String, String)>,
        /// `http://127.0.0.1:PORT`.
        pub uri: String,
        /// Holds the sqlite DB and the artifacts.
        pub dir: tempfile::TempDir,
    }

    impl MlflowServer {
        /// Starts a lean server with proxied artifacts and waits (up to 90 s) until `/health`
        /// answers.
        pub fn start(venv: &Path) -> MlflowServer {
            Self::start_with(venv, ArtifactMode::Proxy)
        }

        /// Starts a lean server keeping artifacts as `mode` says.
        pub fn start_with(venv: &Path, mode: ArtifactMode) -> MlflowServer {
            Self::start_env(venv, mode, &[], &[])
        }

        /// Starts a lean server with extra environment (e.g. the webhook settings) and extra
        /// `mlflow server` arguments (e.g. `--uvicorn-opts` for TLS).
        pub fn start_env(
            venv: &Path,
            mode: ArtifactMode,
            env: &[(&str, &str)],
            args: &[&str],
        ) -> MlflowServer {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(args.iter().map(|a| ("__ARG".to_string(), a.to_string())))
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = spawn(venv, port, dir.path(), &mode, &env);
            let tls = env
                .iter()
                .any(|(k, v)| k == "__ARG" && v.contains("ssl-certfile"));
            let server = MlflowServer {
                child,
                venv: venv.to_path_buf(),
                port,
                mode,
                env,
                uri: format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" }),
                dir,
            };
            if !tls {
                server.wait_ready();
            }
            server
        }

        fn wait_ready(&self) {
            let deadline = Instant::now() + Duration::from_secs(90);
            while !health(self.port) {
                assert!(
                    Instant::now() < deadline,
                    "MLflow did not become ready; log: {}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }

        /// Stops the server (same database and port kept for [`Self::restart`]).
        pub fn stop(&mut self) {
            stop_child(&mut self.child);
        }

        /// Starts it again on the same port and database.
        pub fn restart(&mut self) {
            self.child = spawn(
                &self.venv,
                self.port,
                self.dir.path(),
                &self.mode,
                &self.env,
            );
            self.wait_ready();
        }

        /// Runs a Python script from the venv with the tracking URI set.
        pub fn python(
            &self,
            venv: &Path,
            script: &Path,
            args: &[&str],
            env: &[(&str, &str)],
        ) -> Output {
            let mut cmd = Command::new(venv.join("bin/python"));
            cmd.arg(script)
                .args(args)
                .env("MLFLOW_TRACKING_URI", &self.uri);
            for (k, v) in self.client_env() {
                cmd.env(k, v);
            }
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd.output().expect("python")
        }

        /// What a client (the seeding script, the worker) needs besides the tracking URI to
        /// reach the artifacts directly: the S3 endpoint and credentials in S3 mode.
        pub fn client_env(&self) -> Vec<(String, String)> {
            match &self.mode {
                ArtifactMode::DirectS3 { env, .. } => env.clone(),
                _ => Vec::new(),
            }
        }

        /// The directory a `file://` server keeps artifacts in.
        pub fn artifact_dir(&self) -> PathBuf {
            self.dir.path().join("artifacts")
        }

        /// The server's sqlite database (for tampering tests that play a DB-level attacker).
        pub fn db_path(&self) -> PathBuf {
            self.dir.path().join("mlflow.db")
        }
    }

    fn spawn(
        venv: &Path,
        port: u16,
        dir: &Path,
        mode: &ArtifactMode,
        env: &[(String, String)],
    ) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(venv.join("bin/mlflow"));
        cmd.args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
            "--backend-store-uri",
        ])
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()));
        match mode {
            ArtifactMode::Proxy => {
                cmd.arg("--artifacts-destination")
                    .arg(dir.join("artifacts"));
            }
            ArtifactMode::DirectFile => {
                std::fs::create_dir_all(dir.join("artifacts")).unwrap();
                cmd.args(["--no-serve-artifacts", "--default-artifact-root"])
                    .arg(format!("file://{}", dir.join("artifacts").display()));
            }
            ArtifactMode::DirectS3 { root, env } => {
                cmd.args(["--no-serve-artifacts", "--default-artifact-root"])
                    .arg(format!("s3://{root}"));
                cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
        }
        for (k, v) in env {
            if k == "__ARG" {
                cmd.arg(v);
            } else {
                cmd.env(k, v);
            }
        }
        cmd.env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(Stdio::null())
            .stderr(log);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().expect("start mlflow server")
    }

    fn health(port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
    }

    /// SIGTERM to the `mlflow server` process only: it forwards the signal to its uvicorn worker
    /// and reaps it, so no orphan is left for PID 1 (signalling the whole group would orphan the
    /// worker). SIGKILL only if it has not exited after 15 s.
    /// SIGTERM to the server's whole process group (MLflow 2.x's `mlflow server` leaves its
    /// gunicorn workers running when only it is signalled), SIGKILL to the group after 15 s.
    fn stop_child(child: &mut Child) {
        let group = format!("-{}", child.id());
        let signal_group = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", group.as_str()])
                .stderr(std::process::Stdio::null())
                .status();
        };
        if let Ok(Some(_)) = child.try_wait() {
            signal_group("-TERM");
            return;
        }
        signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal_group("-KILL");
        let _ = child.kill();
        let _ = child.wait();
    }

    impl Drop for MlflowServer {
        fn drop(&mut self) {
            stop_child(&mut self.child);
        }
    }
}

pub mod s3 {
    //! The real S3-compatible server of `../shared/S3.md` (s3s-fs by default), started through
    //! `../shared/tools/s3/s3-local.sh` (installed there on first use, then kept under
    //! `~/.cache/ario-s3-local`). It keeps objects as plain files, so a test can compute what the
    //! store holds independently of any S3 client, and overwrite an object as an attacker would.

    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::process::Command;

    /// A running S3 server.
    pub struct S3 {
        /// `S3_ENDPOINT`, `MLFLOW_S3_ENDPOINT_URL`, `AWS_*` as the helper prints them.
        pub env: Vec<(String, String)>,
        /// The bucket.
        pub bucket: String,
        /// Where the server keeps the bucket's objects as files.
        pub bucket_dir: PathBuf,
    }

    /// Starts (or finds running) the shared S3 server.
    pub fn start() -> S3 {
        let script = super::shared_dir().join("tools/s3/s3-local.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run s3-local.sh");
        assert!(
            out.status.success(),
            "the S3 server did not start ({}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("s3-local.sh printed no {k}"))
        };
        let bucket = get("S3_BUCKET");
        let home = std::env::var_os("S3_LOCAL_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/ario-s3-local")
            });
        let bucket_dir = home.join("data-s3s-fs").join(&bucket);
        assert!(
            bucket_dir.is_dir(),
            "bucket directory {} not found",
            bucket_dir.display()
        );
        S3 {
            env,
            bucket,
            bucket_dir,
        }
    }

    impl S3 {
        /// The environment with one variable replaced (e.g. a wrong secret key).
        pub fn env_with(&self, key: &str, value: &str) -> Vec<(String, String)> {
            self.env
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if k == key {
                            value.to_string()
                        } else {
                            v.clone()
                        },
                    )
                })
                .collect()
        }

        /// `{relative path: sha256 hex}` of every file the server holds under `prefix` of the
        /// bucket, read from its data directory (not through S3).
        pub fn file_checksums(&self, prefix: &str) -> BTreeMap<String, String> {
            let root = self.bucket_dir.join(prefix.trim_matches('/'));
            super::files::checksums(&root)
        }
    }
}

pub mod files {
    //! Hashing a directory tree on disk, as an independent check of what a store holds.

    use std::collections::BTreeMap;
    use std::path::Path;

    use sha2::{Digest, Sha256};

    /// `{relative path: sha256 hex}` of every regular file under `root` (none if missing),
    /// skipping MLflow's `registered_model_meta` and s3s-fs's own bookkeeping files.
    pub fn checksums(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    pending.push(path);
                } else if name != "registered_model_meta" && !name.starts_with(".s3s") {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    let bytes = std::fs::read(&path).unwrap();
                    out.insert(rel, hex::encode(Sha256::digest(&bytes)));
                }
            }
        }
        out
    }
}

pub mod run {
    //! Running the worker binary and reporting what a command printed.

    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// Exit status and both streams, for assertion messages.
    pub fn show(out: &Output) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs `ario-mlflow-worker ARGS` with `env` added (and `NO_COLOR` removed, so colour
    /// decisions are the binary's own).
    pub fn worker(env: &[(&str, String)], args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.env("ARIO_MLFLOW_LISTEN", "127.0.0.1:0");
        cmd.args(args).env_remove("NO_COLOR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Polls `done` every `every` until it holds; after `timeout`, prints the tail of each log
    /// (200 lines) and fails naming `what`.
    pub fn wait_for(
        what: &str,
        timeout: std::time::Duration,
        every: std::time::Duration,
        logs: &[&Path],
        mut done: impl FnMut() -> bool,
    ) {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if done() {
                return;
            }
            std::thread::sleep(every);
        }
        for log in logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {} (last 200 lines)", log.display());
            for l in &lines[lines.len().saturating_sub(200)..] {
                eprintln!("{l}");
            }
        }
        panic!("timed out after {timeout:?} waiting for {what}");
    }

    /// A file under `tests/data/mlflow/`.
    pub fn mlflow_data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/mlflow")
            .join(name)
    }
}

pub mod lab {
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
            let server = MlflowServer::start_with(venv, mode);
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
    ) -> Vec<(String, String)> {
        [
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
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    impl Lab {
        /// [`anchoring_env`] for this lab's MLflow.
        pub fn worker_env(&self, state: &Path) -> Vec<(String, String)> {
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
}

pub mod kafka {
    //! The real Apache Kafka broker (KRaft) of `../shared/KAFKA.md`, started through
    //! `../shared/tools/kafka/kafka-local.sh` in a directory of its own, and rdkafka helpers to
    //! look at topics and groups independently of the worker.

    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    /// A message to produce: key, headers, value.
    pub type Raw = (Vec<u8>, Vec<(String, Vec<u8>)>, Vec<u8>);

    /// One message as read back.
    #[derive(Debug, Clone)]
    pub struct Record {
        pub partition: i32,
        pub offset: i64,
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: BTreeMap<String, Vec<u8>>,
    }

    impl Record {
        /// A header as text.
        pub fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        }
    }

    /// A running broker; stopped (and its directory removed) when dropped.
    pub struct Broker {
        pub bootstrap: String,
        pub dir: PathBuf,
        pub pid: u32,
        script: PathBuf,
    }

    fn script() -> PathBuf {
        super::shared_dir().join("tools/kafka/kafka-local.sh")
    }

    fn parse(out: &std::process::Output) -> (String, PathBuf, u32) {
        assert!(
            out.status.success(),
            "kafka-local.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("kafka-local.sh printed no {k}: {text}"))
                .to_string()
        };
        (
            get("KAFKA_BOOTSTRAP"),
            PathBuf::from(get("KAFKA_DIR")),
            get("KAFKA_PID").parse().unwrap_or(0),
        )
    }

    /// Starts a fresh broker.
    pub fn start() -> Broker {
        let script = script();
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .unwrap();
        let (bootstrap, dir, pid) = parse(&out);
        Broker {
            bootstrap,
            dir,
            pid,
            script,
        }
    }

    impl Broker {
        /// A handle on a broker someone else runs (nothing stopped when dropped).
        pub fn attach(bootstrap: &str) -> Broker {
            Broker {
                bootstrap: bootstrap.to_string(),
                dir: PathBuf::new(),
                pid: 0,
                script: PathBuf::new(),
            }
        }

        /// SIGTERM, and wait until it is gone.
        pub fn stop(&self) {
            let _ = Command::new("bash")
                .arg(&self.script)
                .arg("stop")
                .arg(&self.dir)
                .output();
        }

        /// Starts it again on its data (same port).
        pub fn start_again(&mut self) {
            let out = Command::new("bash")
                .arg(&self.script)
                .args(["start", "--dir"])
                .arg(&self.dir)
                .output()
                .unwrap();
            let (bootstrap, _, pid) = parse(&out);
            assert_eq!(bootstrap, self.bootstrap, "same address after a restart");
            self.pid = pid;
        }

        fn config(&self) -> ClientConfig {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &self.bootstrap)
                .set("broker.address.family", "v4");
            c
        }

        /// Creates a topic (waiting until its metadata shows every partition).
        pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
            let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
            let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
            for (k, v) in configs {
                t = t.set(k, v);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let r = rt
                .block_on(admin.create_topics(&[t], &AdminOptions::new()))
                .unwrap();
            assert!(r.iter().all(|x| x.is_ok()), "create {name}: {r:?}");
            let probe: BaseConsumer = self.config().create().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(md) = probe.fetch_metadata(Some(name), Duration::from_secs(5)) {
                    if md.topics().first().is_some_and(|t| {
                        t.error().is_none() && t.partitions().len() == partitions as usize
                    }) {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("topic {name} never showed {partitions} partitions");
        }

        /// Produces raw messages and waits for every ack.
        pub fn produce(&self, topic: &str, messages: &[Raw]) {
            let p: ThreadedProducer<DefaultProducerContext> = self
                .config()
                .set("message.max.bytes", "16777216")
                .set("partitioner", "murmur2_random")
                .create()
                .unwrap();
            for (key, headers, value) in messages {
                let mut h = OwnedHeaders::new();
                for (k, v) in headers {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v.as_slice()),
                    });
                }
                let rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic)
                    .headers(h)
                    .key(key.as_slice())
                    .payload(value.as_slice());
                p.send(rec).map_err(|(e, _)| e).unwrap();
            }
            p.flush(Duration::from_secs(30)).unwrap();
        }

        /// Every committed message of `topic`, all partitions, in partition then offset order.
        pub fn read_all(&self, topic: &str) -> Vec<Record> {
            let c: BaseConsumer = self
                .config()
                .set("group.id", "test-reader")
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .set("enable.partition.eof", "true")
                .create()
                .unwrap();
            let md = c
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let n = md.topics()[0].partitions().len();
            let mut tpl = TopicPartitionList::new();
            for p in 0..n as i32 {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .unwrap();
            }
            c.assign(&tpl).unwrap();
            let mut eof = std::collections::BTreeSet::new();
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while eof.len() < n && Instant::now() < deadline {
                match c.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                        headers: m
                            .headers()
                            .map(|hs| {
                                hs.iter()
                                    .map(|h| {
                                        (h.key.to_string(), h.value.unwrap_or_default().to_vec())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }),
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                        eof.insert(p);
                    }
                    _ => {}
                }
            }
            out.sort_by_key(|r| (r.partition, r.offset));
            out
        }

        /// The group's lag on `topic` in messages: committed messages at or after the group's
        /// committed offset (transaction markers take offsets too, so the high watermark alone
        /// would count them).
        pub fn lag(&self, group: &str, topic: &str) -> usize {
            let c: BaseConsumer = self
                .config()
                .set("group.id", group)
                .set("isolation.level", "read_committed")
                .create()
                .unwrap();
            let md = c
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .unwrap();
            let n = md.topics()[0].partitions().len() as i32;
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(topic, p);
            }
            let committed: BTreeMap<i32, i64> = c
                .committed_offsets(tpl, Duration::from_secs(10))
                .unwrap()
                .elements()
                .iter()
                .map(|e| {
                    let at = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => 0,
                    };
                    (e.partition(), at)
                })
                .collect();
            self.read_all(topic)
                .iter()
                .filter(|r| r.offset >= committed.get(&r.partition).copied().unwrap_or(0))
                .count()
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            if self.pid == 0 {
                return;
            }
            let _ = Command::new("bash")
                .arg(&self.script)
                .arg("stop")
                .arg(&self.dir)
                .arg("--purge")
                .output();
        }
    }
}

pub mod process {
    //! Processes a test starts: a free port, and one child type that is killed on drop, stops
    //! on SIGTERM within a deadline (or fails the test with its log's tail), and is SIGKILLed on
    //! demand.

    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant};

    /// A loopback port free right now.
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A child process (the worker, usually), killed on drop.
    pub struct Proc {
        child: Child,
        log: Option<PathBuf>,
    }

    impl Proc {
        /// Takes a spawned child.
        pub fn new(child: Child) -> Proc {
            Proc { child, log: None }
        }

        /// Takes a spawned child whose stderr goes to `log` (shown when it fails to stop).
        pub fn logged(child: Child, log: &Path) -> Proc {
            Proc {
                child,
                log: Some(log.to_path_buf()),
            }
        }

        /// Starts the worker binary with `env` and `args`, its stderr to `log` (appended).
        pub fn worker(env: &[(&str, String)], args: &[&str], log: &Path) -> Proc {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
            cmd.args(args).stdout(Stdio::null()).stderr(file);
            for (k, v) in env {
                cmd.env(k, v);
            }
            Proc::logged(cmd.spawn().expect("start the worker"), log)
        }

        /// The process id.
        pub fn id(&self) -> u32 {
            self.child.id()
        }

        /// The log so far ("" without one).
        pub fn log(&self) -> String {
            self.log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default()
        }

        /// Whether it still runs.
        pub fn alive(&mut self) -> bool {
            matches!(self.child.try_wait(), Ok(None))
        }

        /// SIGKILL, and wait until it is gone.
        pub fn kill9(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        /// SIGTERM, and its exit status once it stopped; fails the test (with the log's tail)
        /// when it is still running after `within`.
        pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
            sigterm(&mut self.child, within, self.log.as_deref())
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            self.kill9();
        }
    }

    /// SIGTERM to `child` and its exit status; kills it and fails the test when it does not
    /// stop within `within` (showing the tail of `log`, its stderr, when given).
    pub fn sigterm(child: &mut Child, within: Duration, log: Option<&Path>) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = log
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "the process did not stop within {within:?} of SIGTERM; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
