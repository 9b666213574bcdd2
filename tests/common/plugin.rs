//! The plugin's CLI, `ar-io-mlflow` from the test venv: the other implementation every proof of
//! ours must satisfy.

use std::path::Path;
use std::process::{Command, Output};

use super::lab::{Lab, SEED_B64};

/// `ar-io-mlflow ARGS` with `env` added, colour off.
pub fn run(venv: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    let mut cmd = Command::new(venv.join("bin/ar-io-mlflow"));
    cmd.args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the plugin's CLI")
}

/// What the plugin needs to verify against `lab`: devnet's CA, the test key, the lab's home,
/// its gateway and MLflow.
pub fn lab_env(lab: &Lab) -> Vec<(&'static str, String)> {
    vec![
        ("REQUESTS_CA_BUNDLE", lab.ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", lab.home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()),
        ("MLFLOW_TRACKING_URI", lab.server.uri.clone()),
    ]
}
