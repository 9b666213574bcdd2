//! The durable service against a real MLflow and devnet: `backfill` anchors every lifecycle event
//! of a seeded registry exactly once (training, datasets, registration, promotion, alias,
//! prediction), parks the run with a NaN metric with its cause, the plugin verifies what it
//! anchored, and a second backfill anchors nothing new.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::lab::{scenario, Lab, SEED_B64};
use common::mlflow::venv;
use common::run::{show, worker};
use serde_json::Value;

#[test]
fn backfill_anchors_every_event_once_and_the_plugin_verifies_them() {
    let Some(venv) = venv() else { return };
    let Lab {
        server,
        rt,
        dn,
        home,
        ca,
        gateway,
    } = Lab::start(&venv);
    let ids = scenario(&server, &venv, "svc");
    let s = |k: &str| ids[k].as_str().unwrap().to_string();

    let state = home.path().join("state");
    let env = common::lab::anchoring_env(&server.uri, &dn, &ca, &gateway, home.path(), &state);
    // A dry run reports and writes nothing; filters that select nothing anchor nothing.
    let out = worker(&env, &["backfill", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("would anchor 9 events"),
        "{}",
        show(&out)
    );
    assert!(
        text.contains("\"training_complete\": 3") && text.contains("\"prediction\": 3"),
        "{text}"
    );
    assert!(!state.exists(), "--dry-run touches no state");
    for filter in [vec!["--experiment", "0"], vec!["--since", "2099-01-01"]] {
        let mut args = vec!["backfill"];
        args.extend(filter.iter().copied());
        let out = worker(&env, &args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
    }
    assert!(
        dn.handle.items().is_empty(),
        "filtered backfills selected nothing"
    );

    let out = worker(&env, &["backfill", "--rate", "200"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    println!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("")
    );

    let status = worker(&env, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    println!("status: {}", status["counts"]);
    let counts = &status["counts"];
    for (event, n) in [
        ("training_complete", 2),
        ("dataset", 2),
        ("model_registered", 1),
        ("stage_transition", 1),
        ("alias_changed", 1),
        ("prediction", 3),
    ] {
        assert_eq!(
            counts[event]["done"].as_u64().unwrap_or(0),
            n,
            "{event} done: {counts}"
        );
    }
    let parked = status["parked"].as_array().unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0]["job"].as_str().unwrap().contains(&s("nan_run"))
            && parked[0]["error"].as_str().unwrap().contains("broken")
    );

    // Exactly one envelope per event on devnet, and no two training events share a predecessor.
    let items = dn.handle.items();
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    let mut training_prev: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        let bytes = std::fs::read(dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
        let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
        let env: Value = serde_json::from_slice(&parsed.data).unwrap();
        let key = format!(
            "{} {} {}",
            env["event_type"], env["subject"], env["payload_hash"]
        );
        *per_event.entry(key).or_default() += 1;
        if env["event_type"] == "training_complete" && env["previous_hash"] != "GENESIS" {
            *training_prev
                .entry(env["previous_hash"].to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(items.len(), 10, "2 training + 2 distinct datasets (shared by both runs) + registration + promotion + alias + 3 predictions");
    assert!(
        per_event.values().all(|n| *n == 1),
        "duplicates: {per_event:?}"
    );
    assert!(
        training_prev.values().all(|n| *n == 1),
        "fork: {training_prev:?}"
    );

    // The plugin verifies what the service anchored.
    let plugin_env = [
        ("REQUESTS_CA_BUNDLE", ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", home.path().display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", gateway.clone()),
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
        ("NO_COLOR", "1".to_string()),
    ];
    let mv = format!("{}/1", s("model_name"));
    for args in [
        vec!["verify", "run", s("run").leak() as &str],
        vec!["verify", "model", mv.as_str()],
        vec!["verify", "trace", s("trace").leak()],
        vec!["audit", mv.as_str()],
    ] {
        let out = common::plugin::run(&venv, &plugin_env, &args);
        assert!(out.status.success(), "plugin {args:?}: {}", show(&out));
    }

    // A second backfill finds nothing new to anchor.
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(dn.handle.items().len(), 10, "nothing anchored twice");

    // Versions are polled incrementally below the watermark: a new version and its stage change
    // made now are still detected, and the cursor says the scan was incremental.
    let model = s("model_name");
    let run_id = s("run");
    let http = |path: &str, body: Value| {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data",
            ])
            .arg(body.to_string())
            .arg(format!("{}/api/2.0/mlflow/{path}", server.uri))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path}: {}", show(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = http(
        "model-versions/create",
        serde_json::json!({"name": model, "source": format!("runs:/{run_id}/model"), "run_id": run_id}),
    );
    let version = created["model_version"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    http(
        "model-versions/transition-stage",
        serde_json::json!({"name": model, "version": version, "stage": "Production", "archive_existing_versions": false}),
    );
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "{}", show(&out));
    let status: Value =
        serde_json::from_slice(&worker(&env, &["status", "--json"]).stdout).unwrap();
    let cursor = status["cursors"]["model_versions"].clone();
    assert_eq!(cursor["last_scan"], "incremental", "{cursor}");
    assert_eq!(
        dn.handle.items().len(),
        12,
        "the new version's registration and promotion anchored ({cursor})"
    );
    println!("incremental version poll: {cursor}");
    common::oracle::check_items(dn.handle.items_dir());
    rt.block_on(dn.handle.shutdown());
}

/// A reboot where MLflow starts after the worker: `run` waits, saying why, instead of exiting
/// (the systemd unit would not restart an exit 2), and anchors once MLflow is up.
#[test]
fn run_waits_for_a_late_mlflow_and_answers_status_and_retry_while_running() {
    let Some(venv) = venv() else { return };
    let mut lab = Lab::start(&venv);
    let script = common::run::mlflow_data("registry_actions.py");
    let out = lab
        .server
        .python(&venv, &script, &[&lab.server.uri, "run", "late"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let run_id = common::lab::last_json_line(&out.stdout)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    lab.server.stop();
    let state = lab.home.path().join("state-late");
    let mut env = lab.worker_env(&state);
    let port = common::process::free_port();
    env.push(("ARIO_MLFLOW_LISTEN", format!("127.0.0.1:{port}")));
    env.push(("RUST_LOG", "info".into()));
    let log = lab.home.path().join("late.log");
    let mut w = common::process::Proc::worker(&env, &["run", "--poll-interval", "1"], &log);
    common::run::wait_for(
        "the worker saying it waits for MLflow",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(200),
        &[&log],
        || w.log().contains("MLflow is not reachable yet"),
    );
    // While it waits, its listener says why: alive, not ready, waiting for MLflow.
    let get =
        |path: &str| common::run::http_get(&lab.rt, &format!("http://127.0.0.1:{port}{path}"));
    let (code, body) = get("/readyz");
    assert_eq!(code, 503, "{body}");
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert!(
        ready["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("MLflow at") && w.contains("not reachable yet")),
        "{ready}"
    );
    assert_eq!(get("/healthz").0, 200);
    std::thread::sleep(std::time::Duration::from_secs(8));
    assert!(w.alive(), "the worker gave up: {}", w.log());
    lab.server.restart();
    let mlflow = ario_mlflow_worker::mlflow::MlflowClient::new(
        ario_mlflow_worker::mlflow::MlflowConfig::new(lab.server.uri.parse().unwrap()),
    )
    .unwrap();
    common::run::wait_for(
        "the run anchored once MLflow is up",
        std::time::Duration::from_secs(120),
        std::time::Duration::from_millis(500),
        &[&log],
        || {
            lab.rt
                .block_on(mlflow.get_run(&run_id))
                .ok()
                .is_some_and(|r| r.tag("ario.training_tx").is_some())
        },
    );
    assert!(
        w.log().contains("MLflow is reachable: starting"),
        "{}",
        w.log()
    );
    // The service's own listener took the port over.
    common::run::wait_for(
        "/readyz from the running service",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(300),
        &[&log],
        || get("/readyz").1.contains("\"checks\""),
    );

    // `status` and `retry` while it runs: the store is held, so both ask its listener.
    let out = common::run::worker(&env, &["status", "--json"]);
    assert!(out.status.success(), "status: {}", show(&out));
    let live: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(live["mode"], "poll", "{live}");
    assert_eq!(live["stores"][0]["workspace"], "default", "{live}");
    assert_eq!(
        live["stores"][0]["counts"]["training_complete"]["done"], 1,
        "{live}"
    );
    // Turbo refuses uploads for a while: the next run's job parks, visible without a restart…
    lab.dn
        .handle
        .add_fault(ario_mlflow_worker::devnet::faults::FaultRule::parse("upload:400").unwrap());
    let out = lab
        .server
        .python(&venv, &script, &[&lab.server.uri, "run", "late-2"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let second = common::lab::last_json_line(&out.stdout)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let parked = || {
        let out = common::run::worker(&env, &["status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["stores"][0]["parked"].as_array().cloned())
            .unwrap_or_default()
    };
    common::run::wait_for(
        "the second run parked (Turbo answers 400)",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        &[&log],
        || parked().len() == 1,
    );
    let job = parked()[0]["job"].as_str().unwrap().to_string();
    assert!(job.contains(&second), "{job}");
    let text = common::run::worker(&env, &["status"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("(poll mode): 1 store(s)") && text.contains(&format!("PARKED {job}")),
        "{text}"
    );
    // …and, Turbo back, `retry` through the listener re-queues it and wakes the pipeline.
    lab.dn.handle.clear_faults();
    let out = common::run::worker(&env, &["retry", &job]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .contains("re-queued 1 job(s); the worker at http://"),
        "retry: {}",
        show(&out)
    );
    common::run::wait_for(
        "the retried run anchored by the running worker",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        &[&log],
        || {
            lab.rt
                .block_on(mlflow.get_run(&second))
                .ok()
                .is_some_and(|r| r.tag("ario.training_tx").is_some())
        },
    );
    assert!(w.sigterm(std::time::Duration::from_secs(30)).success());
    // Stopped: the store is read directly again.
    let out = common::run::worker(&env, &["status", "--json"]);
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        offline["counts"]["training_complete"]["done"], 2,
        "{offline}"
    );
    assert!(
        offline["parked"].as_array().unwrap().is_empty(),
        "{offline}"
    );
}
