//! MLflow workspaces (issue 26) against a real MLflow 3.17.2 run with `--enable-workspaces`:
//! two workspaces holding the same experiment and model names and the same version numbers,
//! a full lifecycle in each (`scenario.py`: runs with dataset inputs, a registered version, a
//! stage, an alias, a served-model trace).
//!
//! `backfill` finds both workspaces, anchors every entity once per workspace — each workspace
//! in a store of its own, so `scenario-model-ws/1` of one never stands for the other's — and
//! the non-default workspace's data items carry the signed `MLflow-Workspace` tag while the
//! envelopes keep the profile's shape. Our `verify`/`audit --workspace` and the plugin's
//! `ar-io-mlflow verify` under `MLFLOW_WORKSPACE` pass in both; a proof of `team-b` checked in
//! the default workspace fails as a proof about another entity.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use ario_mlflow_worker::arweave::DataItem;
use common::lab::{last_json_line, Lab};
use common::mlflow::{venv, ArtifactMode, MlflowServer};
use common::run::{mlflow_data, show, worker};
use serde_json::{json, Value};

const OTHER: &str = "team-b";

/// MLflow with workspaces, and devnet.
fn lab(venv: &Path) -> Lab {
    Lab::around(MlflowServer::start_env(
        venv,
        ArtifactMode::Proxy,
        &[],
        &["--enable-workspaces"],
    ))
}

/// The scenario in `workspace` (`None`: the default one, as a client without workspaces).
fn seed(lab: &Lab, venv: &Path, workspace: Option<&str>) -> Value {
    let env: Vec<(&str, &str)> = workspace
        .map(|w| ("MLFLOW_WORKSPACE", w))
        .into_iter()
        .collect();
    let out = lab.server.python(
        venv,
        &mlflow_data("scenario.py"),
        &[&lab.server.uri, "ws"],
        &env,
    );
    assert!(
        out.status.success(),
        "scenario in {workspace:?}: {}",
        show(&out)
    );
    last_json_line(&out.stdout)
}

/// The envelopes devnet holds, by the workspace their data item names (`default` untagged),
/// each with its TX.
fn anchored(lab: &Lab) -> BTreeMap<String, Vec<(String, Value)>> {
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for stored in lab.dn.handle.items() {
        let bytes = std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", stored.id)))
            .expect("the stored item");
        let item = DataItem::parse(&bytes).expect("an ANS-104 item");
        let workspace = item
            .tags
            .iter()
            .find(|t| t.name == b"MLflow-Workspace")
            .map(|t| String::from_utf8_lossy(&t.value).into_owned())
            .unwrap_or_else(|| "default".into());
        let envelope: Value = serde_json::from_slice(&item.data).expect("a JSON envelope");
        out.entry(workspace)
            .or_default()
            .push((stored.id.clone(), envelope));
    }
    out
}

/// `event_type subject` of each envelope, sorted (a subject is JSON: names and versions).
fn events(envelopes: &[(String, Value)]) -> Vec<String> {
    let mut out: Vec<String> = envelopes
        .iter()
        .map(|(_, e)| format!("{} {}", e["event_type"], e["subject"]))
        .collect();
    out.sort();
    out
}

fn plugin_verify(
    lab: &Lab,
    venv: &Path,
    workspace: Option<&str>,
    kind: &str,
    target: &str,
) -> bool {
    let mut env = common::plugin::lab_env(lab);
    env.extend(workspace.map(|w| ("MLFLOW_WORKSPACE", w.to_string())));
    let out = common::plugin::run(venv, &env, &["verify", kind, target]);
    if !out.status.success() {
        eprintln!(
            "plugin verify {kind} {target} in {workspace:?}: {}",
            show(&out)
        );
    }
    out.status.success()
}

#[test]
fn every_workspace_is_anchored_once_and_verifies_in_its_own_workspace() {
    let Some(venv) = venv() else { return };
    let lab = lab(&venv);
    let created = lab.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/3.0/mlflow/workspaces", lab.server.uri))
            .json(&json!({"name": OTHER, "description": "the second tenant"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(created, 201, "create workspace {OTHER}");
    let default_ids = seed(&lab, &venv, None);
    let other_ids = seed(&lab, &venv, Some(OTHER));
    let model = default_ids["model_name"].as_str().unwrap().to_string();
    assert_eq!(other_ids["model_name"].as_str(), Some(model.as_str()));

    // 1. One backfill finds both workspaces and anchors each entity once per workspace.
    let state = lab.home.path().join("state");
    let env = lab.worker_env(&state);
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    assert!(
        state.join("workspaces").join(OTHER).is_dir(),
        "the other workspace has a store of its own"
    );
    let first = anchored(&lab);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        ["default", OTHER],
        "proofs of both workspaces, nothing else"
    );
    let (d, o) = (events(&first["default"]), events(&first[OTHER]));
    println!(
        "workspaces: {} proofs in default, {} in {OTHER}",
        d.len(),
        o.len()
    );
    for (w, list) in [("default", &d), (OTHER, &o)] {
        let mut unique = list.clone();
        unique.dedup();
        assert_eq!(&unique, list, "an event of {w} anchored twice");
    }
    // The same lifecycle in each: the same event types on the same names and versions (the
    // run ids differ).
    let kinds = |list: &[String]| -> Vec<String> {
        let mut k: Vec<String> = list
            .iter()
            .map(|e| e.split(' ').next().unwrap_or("").to_string())
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&d), kinds(&o), "the same lifecycle anchored in both");
    for t in [
        "\"training_complete\"",
        "\"model_registered\"",
        "\"stage_transition\"",
        "\"alias_changed\"",
        "\"dataset\"",
        "\"prediction\"",
    ] {
        assert!(
            kinds(&o).iter().any(|k| k == t),
            "{t} anchored in {OTHER}: {o:?}"
        );
    }
    // The envelopes carry no workspace (the profile's shape); only the data item's tag does.
    for (_, e) in first.values().flatten() {
        assert!(e.get("workspace").is_none() && e["subject"].get("workspace").is_none());
    }

    // 2. Nothing twice: a second backfill anchors nothing.
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "second backfill: {}", show(&out));
    let again = anchored(&lab);
    assert_eq!(
        again.values().map(Vec::len).sum::<usize>(),
        first.values().map(Vec::len).sum::<usize>(),
        "the second backfill anchored again"
    );

    // 3. Each workspace verifies in itself: ours (--workspace) and the plugin's
    //    (MLFLOW_WORKSPACE).
    let version = format!("{model}/1");
    for (workspace, ids) in [(None, &default_ids), (Some(OTHER), &other_ids)] {
        let run = ids["run"].as_str().unwrap();
        let trace = ids["trace"].as_str().unwrap();
        let mut env = env.clone();
        if let Some(w) = workspace {
            env.push(("ARIO_MLFLOW_WORKSPACES", w.to_string()));
        }
        for args in [
            vec!["verify", "run", run],
            vec!["verify", "model", version.as_str()],
            vec!["verify", "trace", trace],
            vec!["audit", version.as_str()],
        ] {
            let out = worker(&env, &args);
            assert!(
                out.status.success(),
                "{args:?} in {workspace:?}: {}",
                show(&out)
            );
        }
        assert!(
            plugin_verify(&lab, &venv, workspace, "model", &version),
            "the plugin verifies {version} in {workspace:?}"
        );
        assert!(
            plugin_verify(&lab, &venv, workspace, "run", run),
            "the plugin verifies run {run} in {workspace:?}"
        );
    }

    // 4. A proof of team-b's version is about another entity in the default workspace.
    let (tx, _) = first[OTHER]
        .iter()
        .find(|(_, e)| e["event_type"] == "model_registered")
        .expect("team-b's registration proof");
    let out = worker(&env, &["verify", "tx", tx, "--json"]);
    assert!(
        !out.status.success(),
        "verify tx in default: {}",
        show(&out)
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        verdict.to_string().contains("made in MLflow workspace"),
        "the verdict names the workspace: {verdict}"
    );
    let mut in_other = env.clone();
    in_other.push(("ARIO_MLFLOW_WORKSPACES", OTHER.to_string()));
    let out = worker(&in_other, &["verify", "tx", tx]);
    assert!(out.status.success(), "verify tx in {OTHER}: {}", show(&out));
}

#[test]
fn a_server_without_workspaces_gets_no_header_and_several_workspaces_need_run() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let state = lab.home.path().join("state");
    let mut env = lab.worker_env(&state);
    // No workspaces on this server: the backfill sends no header (the server would answer
    // FEATURE_DISABLED) and keeps the state directory as it always was.
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    assert!(!state.join("workspaces").exists());
    // One workspace per verify; a name that is no workspace name is refused before any call.
    env.push(("ARIO_MLFLOW_WORKSPACES", "a,b".to_string()));
    let out = worker(&env, &["coverage", "--tags-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("one MLflow workspace"),
        "{}",
        show(&out)
    );
    env.pop();
    env.push(("ARIO_MLFLOW_WORKSPACES", "../x".to_string()));
    let out = worker(&env, &["backfill"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
