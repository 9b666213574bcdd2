//! Running the worker binary and reporting what a command printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `GET url` on `rt`: the status code and the body (a listener's `/healthz`, `/readyz`, …).
pub fn http_get(rt: &tokio::runtime::Runtime, url: &str) -> (u16, String) {
    rt.block_on(async {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

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
