//! The deploy tools `deploy/scripts/install-tools.sh` installs (podman, helm, kubeconform,
//! docker-compose, promtool…): found on PATH or in `~/.cache/ario-tools/bin`.

use std::path::PathBuf;
use std::process::Command;

/// A tool on PATH or in `~/.cache/ario-tools/bin`; `None` (and a message) when absent outside
/// CI, a failure under CI.
pub fn tool(name: &str) -> Option<PathBuf> {
    let cached = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".cache/ario-tools/bin").join(name))
        .ok()
        .filter(|p| p.exists());
    let found = cached.or_else(|| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "{name} is missing under CI (deploy/scripts/install-tools.sh installs it)"
        );
        println!("{name} not installed: skipped (deploy/scripts/install-tools.sh installs it)");
    }
    found
}

/// Builds the worker image `tag` from the repository's Dockerfile with this build's binary
/// (`--build-arg BINARY=prebuilt`: the `build` stage needs a Rust image this machine cannot
/// pull), stripped when `strip` is there; returns podman's output.
pub fn build_worker_image(podman: &std::path::Path, tag: &str) -> std::process::Output {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ctx = tempfile::tempdir().unwrap();
    for f in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(repo.join(f), ctx.path().join(f)).unwrap();
    }
    std::fs::create_dir_all(ctx.path().join("dist")).unwrap();
    let bin = ctx.path().join("dist/ario-mlflow-worker");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_ario-mlflow-worker"), &bin).unwrap();
    }
    Command::new(podman)
        .args([
            "build",
            "--pull=never",
            "--network",
            "host",
            "--format",
            "docker",
        ])
        .args(["--build-arg", "BINARY=prebuilt", "-t", tag])
        .arg(ctx.path())
        .output()
        .expect("podman build")
}
