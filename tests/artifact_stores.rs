//! Artifacts where they live: the same lifecycle backfilled from an MLflow server in each of
//! its three artifact modes — the proxy (`--artifacts-destination`), a bucket on a real
//! S3-compatible server read directly (`--no-serve-artifacts --default-artifact-root s3://…`),
//! and a shared path (`--default-artifact-root file://…`).
//!
//! In each mode: the training proof's `artifact_checksums` equal the SHA-256 of the model files
//! as the store holds them (hashed here from disk, not through any client); a run without a
//! model is anchored with `{}`; a run whose model files were deleted from the store is parked
//! ("no readable file"), never anchored hollow; the plugin's `verify run|model` and `audit` and
//! our `verify run` pass; overwriting a model file in the store makes our `verify run` fail
//! naming the file. With wrong S3 credentials nothing is anchored, the job parks with the S3
//! error, and after the fix `retry --all-parked` anchors it.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::lab::{last_json_line, Lab, SEED_B64};
use common::mlflow::{venv, ArtifactMode, MlflowServer};
use common::run::{mlflow_data, show, worker};
use serde_json::Value;

/// Where an artifact URI's files are on this machine's disk.
fn on_disk(uri: &str, server: &MlflowServer, s3: Option<&common::s3::S3>) -> PathBuf {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let s3 = s3.expect("an s3:// URI in a test without S3");
        assert_eq!(bucket, s3.bucket);
        return s3.bucket_dir.join(key);
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return PathBuf::from(path);
    }
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        return server
            .dir
            .path()
            .join("artifacts")
            .join(rest.trim_start_matches('/'));
    }
    panic!("unexpected artifact URI {uri}");
}

/// The training payloads devnet holds, by run id, read back from the runs' witness artifacts.
fn anchored_training_runs(dn: &common::devnet::TestDevnet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in dn.handle.items() {
        let bytes = std::fs::read(dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
        let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
        let env: Value = serde_json::from_slice(&parsed.data).unwrap();
        if env["event_type"] == "training_complete" {
            out.insert(
                env["subject"]["run_id"].as_str().unwrap().to_string(),
                env["payload_hash"].as_str().unwrap().to_string(),
            );
        }
    }
    out
}

fn plugin(venv: &std::path::Path, env: &[(&str, String)], args: &[&str]) {
    let out = common::plugin::run(venv, env, args);
    assert!(out.status.success(), "plugin {args:?}: {}", show(&out));
}

/// The whole story in one mode.
fn lifecycle(mode: ArtifactMode, label: &str, s3: Option<&common::s3::S3>) {
    let Some(venv) = venv() else { return };
    let lab = Lab::start_with(&venv, mode);
    let (server, dn, home, ca, gateway) = (&lab.server, &lab.dn, &lab.home, &lab.ca, &lab.gateway);
    let suffix = format!("{label}-{}", std::process::id());
    let out = server.python(&venv, &mlflow_data("stores.py"), &[&suffix], &[]);
    assert!(out.status.success(), "seed: {}", show(&out));
    let ids = last_json_line(&out.stdout);
    let s = |k: &str| ids[k].as_str().unwrap().to_string();
    println!(
        "[{label}] run artifact root {}, model root {}",
        s("run_root"),
        s("model_root")
    );
    match label {
        "s3" => assert!(s("model_root").starts_with("s3://"), "{ids}"),
        "file" => assert!(s("model_root").starts_with("file://"), "{ids}"),
        _ => assert!(s("model_root").starts_with("mlflow-artifacts:"), "{ids}"),
    }
    // The model files as the store holds them, hashed from disk.
    let model_dir = on_disk(&s("model_root"), server, s3);
    let expected = common::files::checksums(&model_dir);
    assert!(
        expected.contains_key("MLmodel") && expected.len() >= 3,
        "model files in {}: {expected:?}",
        model_dir.display()
    );
    // The third run's model disappears from the store (an operator's cleanup, a lifecycle rule).
    let deleted = on_disk(&s("deleted_model_root"), server, s3);
    std::fs::remove_dir_all(&deleted).unwrap();

    let state = home.path().join("state");
    let mut env: Vec<(&str, String)> = lab.worker_env(&state);
    env.push(("ARIO_MLFLOW_GATEWAYS", gateway.clone()));
    let client_env = server.client_env();
    for (k, v) in &client_env {
        env.push((k.as_str(), v.clone()));
    }
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "[{label}] backfill: {}", show(&out));
    let status: Value =
        serde_json::from_slice(&worker(&env, &["status", "--json"]).stdout).unwrap();
    println!("[{label}] status: {}", status["counts"]);

    // Anchored: the run with a model (its real checksums) and the run without one (`{}`).
    let anchored = anchored_training_runs(dn);
    assert!(anchored.contains_key(&s("run")), "[{label}] {anchored:?}");
    assert!(
        anchored.contains_key(&s("no_model_run")),
        "[{label}] {anchored:?}"
    );
    let payload_of = |run_root: &str| -> Value {
        let dir = on_disk(run_root, server, s3);
        serde_json::from_slice(&std::fs::read(dir.join("ario/payload.json")).unwrap()).unwrap()
    };
    let payload = payload_of(&s("run_root"));
    let committed: BTreeMap<String, String> =
        serde_json::from_value(payload["artifact_checksums"].clone()).unwrap();
    assert_eq!(
        committed, expected,
        "[{label}] artifact_checksums vs the store's own bytes"
    );
    println!(
        "[{label}] artifact_checksums = the store's {} files",
        committed.len()
    );

    // Parked, never hollow: the run whose model files are gone.
    assert!(
        !anchored.contains_key(&s("deleted_run")),
        "[{label}] a run whose model files are gone was anchored"
    );
    let parked = status["parked"].as_array().unwrap();
    let job = parked
        .iter()
        .find(|p| p["job"].as_str().unwrap_or("").contains(&s("deleted_run")))
        .unwrap_or_else(|| panic!("[{label}] deleted-model run not parked: {status:#}"));
    let error = job["error"].as_str().unwrap_or("");
    assert!(
        error.contains("no readable file") || error.contains("not readable"),
        "[{label}] {error}"
    );
    println!("[{label}] parked as it should be: {error}");

    // The plugin and we verify the anchored proofs.
    let mut plugin_env: Vec<(&str, String)> = vec![
        ("REQUESTS_CA_BUNDLE", ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", gateway.clone()),
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
        ("NO_COLOR", "1".to_string()),
    ];
    for (k, v) in &client_env {
        plugin_env.push((k.as_str(), v.clone()));
    }
    let mv = format!("{}/1", s("model_name"));
    plugin(&venv, &plugin_env, &["verify", "run", &s("run")]);
    plugin(&venv, &plugin_env, &["verify", "model", &mv]);
    plugin(&venv, &plugin_env, &["audit", &mv]);
    // The plugin's `verify run` cannot verify a run without a model at all (its re-hash of
    // `runs:/<run>/model` raises: `live_refetch_incomplete`, for its own `{}` proofs too); ours
    // verifies both.
    for run in [s("run"), s("no_model_run")] {
        let out = worker(&env, &["verify", "run", &run]);
        assert!(
            out.status.success(),
            "[{label}] our verify {run}: {}",
            show(&out)
        );
    }

    // Tampering through the store: our verify names the changed file.
    let victim = model_dir.join("MLmodel");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.extend_from_slice(b"\n# tampered\n");
    std::fs::write(&victim, bytes).unwrap();
    let out = worker(&env, &["verify", "run", &s("run"), "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "[{label}] tampered: {}",
        show(&out)
    );
    assert!(
        text.contains("MLmodel"),
        "[{label}] the changed file is named: {text}"
    );
    println!("[{label}] tampered MLmodel: verify run fails naming it");
    lab.rt.block_on(lab.dn.handle.shutdown());
}

#[test]
fn proxied_artifacts_are_hashed_verified_and_never_hollow() {
    lifecycle(ArtifactMode::Proxy, "proxy", None);
}

#[test]
fn artifacts_on_a_shared_path_are_read_directly() {
    lifecycle(ArtifactMode::DirectFile, "file", None);
}

#[test]
fn artifacts_in_s3_are_read_directly() {
    let s3 = common::s3::start();
    let root = format!("{}/direct-{}", s3.bucket, std::process::id());
    lifecycle(
        ArtifactMode::DirectS3 {
            root,
            env: s3.env.clone(),
        },
        "s3",
        Some(&s3),
    );
}

#[test]
fn wrong_s3_credentials_park_the_job_and_anchor_nothing_until_fixed() {
    let Some(venv) = venv() else { return };
    let s3 = common::s3::start();
    let root = format!("{}/creds-{}", s3.bucket, std::process::id());
    let lab = Lab::start_with(
        &venv,
        ArtifactMode::DirectS3 {
            root,
            env: s3.env.clone(),
        },
    );
    let (server, dn, home) = (&lab.server, &lab.dn, &lab.home);
    let out = server.python(&venv, &mlflow_data("stores.py"), &["creds"], &[]);
    assert!(out.status.success(), "seed: {}", show(&out));
    let ids = last_json_line(&out.stdout);
    let run = ids["run"].as_str().unwrap().to_string();
    let state = home.path().join("state");
    let base: Vec<(&str, String)> = lab.worker_env(&state);
    fn with<'a>(
        base: &[(&'a str, String)],
        s3_env: &'a [(String, String)],
    ) -> Vec<(&'a str, String)> {
        let mut env = base.to_vec();
        for (k, v) in s3_env {
            env.push((k.as_str(), v.clone()));
        }
        env
    }
    let wrong = s3.env_with("AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let out = worker(&with(&base, &wrong), &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    assert!(
        !anchored_training_runs(dn).contains_key(&run),
        "anchored with credentials that cannot read the model"
    );
    let status: Value =
        serde_json::from_slice(&worker(&with(&base, &wrong), &["status", "--json"]).stdout)
            .unwrap();
    let parked = status["parked"].as_array().unwrap();
    let job = parked
        .iter()
        .find(|p| p["job"].as_str().unwrap_or("").contains(run.as_str()))
        .unwrap_or_else(|| panic!("not parked with wrong credentials: {status:#}"));
    let error = job["error"].as_str().unwrap_or("");
    assert!(
        error.contains("S3") && error.contains("AWS_ACCESS_KEY_ID"),
        "the cause and the fix: {error}"
    );
    assert!(
        !error.contains("not-the-secret"),
        "a secret in an error: {error}"
    );
    println!("wrong credentials: parked with {error}");

    // Fixed: retry the parked jobs, and the model's real checksums are anchored.
    let right = with(&base, &s3.env);
    let out = worker(&right, &["retry", "--all-parked"]);
    assert!(out.status.success(), "retry: {}", show(&out));
    let out = worker(&right, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    assert!(
        anchored_training_runs(dn).contains_key(&run),
        "anchored after the credentials were fixed"
    );
    let model_dir = on_disk(ids["model_root"].as_str().unwrap(), server, Some(&s3));
    let payload: Value = serde_json::from_slice(
        &std::fs::read(
            on_disk(ids["run_root"].as_str().unwrap(), server, Some(&s3)).join("ario/payload.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let committed: BTreeMap<String, String> =
        serde_json::from_value(payload["artifact_checksums"].clone()).unwrap();
    assert_eq!(committed, common::files::checksums(&model_dir));
    lab.rt.block_on(lab.dn.handle.shutdown());
}
