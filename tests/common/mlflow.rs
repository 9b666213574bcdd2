//! A real MLflow server from PyPI for the tests: a venv (created on first use, reused from
//! `$ARIO_TEST_VENV` or `~/.cache/ario-mlflow-worker/venv-mlflow`) with `mlflow`, the
//! `ar-io-mlflow` plugin and scikit-learn, and a lean server (`--workers 1`, sqlite, proxied
//! artifacts) on an ephemeral loopback port, stopped (whole process group) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Pinned so the parity and cross-verification tests always meet the profile they were written
/// for. One package per line; `scripts/prefetch-test-deps` (run by `.ci/run` while the crate
/// builds) creates the venv from the same file, with the same marker and lock.
pub const PIP_PACKAGES: &str = include_str!("../data/mlflow/venv-mlflow.txt");

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
pub const PIP_PACKAGES_MLFLOW2: &str = include_str!("../data/mlflow/venv-mlflow2.txt");

/// The venv, created if needed; `None` (with a notice) when python3 is absent outside CI.
pub fn venv() -> Option<PathBuf> {
    venv_with("ARIO_TEST_VENV", "venv-mlflow", PIP_PACKAGES)
}

/// The MLflow 2.x venv ([`PIP_PACKAGES_MLFLOW2`]), created if needed.
pub fn venv_mlflow2() -> Option<PathBuf> {
    venv_with(
        "ARIO_TEST_VENV_MLFLOW2",
        "venv-mlflow2",
        PIP_PACKAGES_MLFLOW2,
    )
}

fn venv_with(env_var: &str, name: &str, packages: &str) -> Option<PathBuf> {
    let packages: Vec<&str> = packages.split_whitespace().collect();
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
            .args(&packages)
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

/// A Fernet key made by the venv's `cryptography` (MLflow encrypts webhook secrets with it).
pub fn fernet_key(venv: &Path) -> String {
    let out = std::process::Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// MLflow's settings for webhooks delivered to a loopback http receiver, secrets encrypted
/// with `key`.
pub fn webhook_env(key: &str) -> [(&'static str, &str); 4] {
    [
        ("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY", key),
        ("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https"),
        ("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true"),
        ("MLFLOW_WEBHOOK_CACHE_TTL", "1"),
    ]
}
