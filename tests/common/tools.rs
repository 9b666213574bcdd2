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
