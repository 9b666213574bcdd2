//! The guard against a real MLflow and devnet, judged by the plugin's own `VerifiedModel` gate
//! and `VerifyStatusClient`: a verified model loads; an alias moved to an unanchored version is
//! `missing` until that version is anchored; an overwritten model file is `tampered` within one
//! interval; MLflow stopped is `unavailable`; past `max_age` is `stale`; a wrong secret is 401
//! and an unknown asset 404.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{last_json_line, scenario, Lab, SEED_B64};
use common::mlflow::venv;
use common::process::free_port;
use common::process::Proc;
use common::run::{mlflow_data, show, worker};
use serde_json::Value;

/// The guard's `ario.agent/v1` envelopes on devnet.
fn agent_events(lab: &Lab) -> Vec<Value> {
    lab.dn
        .handle
        .items()
        .iter()
        .filter_map(|item| {
            let bytes =
                std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).ok()?;
            let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).ok()?;
            let env: Value = serde_json::from_slice(&parsed.data).ok()?;
            (env["spec_version"] == "ario.agent/v1").then_some(env)
        })
        .collect()
}

fn per_asset(events: &[Value], event_type: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| e["event_type"] == event_type) {
        *out.entry(
            e["payload"]["asset"]["asset_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
        .or_default() += 1;
    }
    out
}

/// The plugin's gate (tests/data/mlflow/guard_gate.py) against the worker at `base`.
fn gate(lab: &Lab, venv: &Path, base: &str, model_uri: &str, asset: &str, secret: &str) -> Value {
    let home = lab.home.path().display().to_string();
    let ca = lab.ca.display().to_string();
    let out = lab.server.python(
        venv,
        &mlflow_data("guard_gate.py"),
        &[model_uri, base, secret, asset],
        &[
            ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64),
            ("HOME", home.as_str()),
            ("REQUESTS_CA_BUNDLE", ca.as_str()),
            ("ARIO_MLFLOW_GATEWAYS", lab.gateway.as_str()),
        ],
    );
    assert!(out.status.success(), "guard_gate.py: {}", show(&out));
    last_json_line(&out.stdout)
}

/// The serialized model files (`model.pkl`, `model.skops`, … — whatever MLflow's sklearn
/// flavour wrote) under `root`.
fn model_files(root: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            model_files(&p, out);
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("model.") && n != "model.yaml")
        {
            out.push(p);
        }
    }
}

#[test]
fn the_plugins_gate_follows_the_guard_through_alias_moves_tampering_and_outages() {
    let Some(venv) = venv() else { return };
    let mut lab = Lab::start(&venv);
    let ids = scenario(&lab.server, &venv, "guard");
    let model = ids["model_name"].as_str().unwrap().to_string();
    // Version 2 comes from another run: the profile keeps a registration's witness at a fixed
    // path in its source run, so a second version of the *same* run overwrites the first's.
    let other_run = ids["parity_run"].as_str().unwrap().to_string();
    let state = lab.home.path().join("state");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = lab.worker_env(&state);
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    // Version 2, not anchored (the guard's `run` below polls another model).
    let out = lab.server.python(
        &venv,
        &mlflow_data("registry_actions.py"),
        &[&lab.server.uri, "register", &model, &other_run],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let v2 = last_json_line(&out.stdout)["version"]
        .as_str()
        .unwrap()
        .to_string();

    let config = lab.home.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\ntenant_id = \"acme\"\nagent_id = \"ci-host\"\n\n\
[[guard.asset]]\nid = \"m-prod\"\nmodel = \"{model}/1\"\ninterval = 1\nmax_age = 600\n\n\
[[guard.asset]]\nid = \"m-champ\"\nmodel = \"{model}@champion\"\ninterval = 1\nmax_age = 600\n\n\
[[guard.asset]]\nid = \"m-staging\"\nmodel = \"{model}:Staging\"\ninterval = 1\nmax_age = 600\n\n\
[[guard.asset]]\nid = \"m-short\"\nmodel = \"{model}/1\"\ninterval = 3600\nmax_age = 2\n"
        ),
    )
    .unwrap();
    let log = lab.home.path().join("run.log");
    let mut child_env = env.clone();
    child_env.push(("ARIO_MLFLOW_LISTEN", format!("127.0.0.1:{port}")));
    child_env.push(("NO_COLOR", "1".into()));
    let start = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.args([
            "--config",
            &config.display().to_string(),
            "run",
            "--poll-interval",
            "300",
            "--model",
            "not-this-one",
        ])
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        );
        for (k, v) in &child_env {
            cmd.env(k, v);
        }
        Proc::new(cmd.spawn().unwrap())
    };
    let mut run = start();
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let secret_file = state.join("management-secret");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !secret_file.exists() {
        assert!(
            Instant::now() < deadline,
            "no management secret: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let secret = std::fs::read_to_string(&secret_file)
        .unwrap()
        .trim()
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the secret file is 0600");
    }
    assert_eq!(secret.len(), 64);

    let status = |asset: &str, secret: &str| -> (u16, Value) {
        lab.rt.block_on(async {
            let r = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(format!("{base}/v1/verify-status/{asset}"))
                .header("X-Ario-Management-Secret", secret)
                .send()
                .await;
            match r {
                Ok(r) => {
                    let code = r.status().as_u16();
                    let cache = r
                        .headers()
                        .get("cache-control")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    assert!(code == 0 || cache == "no-store", "Cache-Control: {cache:?}");
                    (code, r.json().await.unwrap_or(Value::Null))
                }
                Err(_) => (0, Value::Null),
            }
        })
    };
    let wait_outcome = |asset: &str, outcome: &str, timeout: Duration| -> (Value, Duration) {
        let started = Instant::now();
        loop {
            let (code, body) = status(asset, &secret);
            if code == 200 && body["outcome"] == outcome {
                return (body, started.elapsed());
            }
            assert!(
                started.elapsed() < timeout,
                "{asset} never became {outcome}: last {code} {body}\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // Verified: the plugin's gate lets the model load; the body is what its client parses.
    let (body, took) = wait_outcome("m-prod", "verified", Duration::from_secs(60));
    println!("m-prod verified after {:.2} s: {body}", took.as_secs_f64());
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["agent_id"], "ci-host");
    assert_eq!(body["stale"], false);
    assert_eq!(body["policy_hash"].as_str().unwrap().len(), 64);
    assert_eq!(body["current_tx_id"].as_str().unwrap().len(), 43);
    wait_outcome("m-champ", "verified", Duration::from_secs(30));
    wait_outcome("m-staging", "verified", Duration::from_secs(30));
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "m-prod",
        &secret,
    );
    assert_eq!(g["loaded"], true, "{g}");
    assert_eq!(g["status"]["outcome"], "verified");

    // Wrong secret, unknown asset: the plugin's typed errors.
    let (code, _) = status("m-prod", "wrong");
    assert_eq!(code, 401);
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "m-prod",
        "wrong-secret",
    );
    assert_eq!(g["status_error"], "VerifyStatusAuthError", "{g}");
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "no-such-asset",
        &secret,
    );
    assert_eq!(g["status_error"], "VerifyStatusUnknownAssetError", "{g}");
    let (code, _) = status("no-such-asset", &secret);
    assert_eq!(code, 404);

    // Past max_age without a new check: stale (the plugin refuses a stale verdict).
    std::thread::sleep(Duration::from_secs(3));
    let (_, short) = status("m-short", &secret);
    assert_eq!(
        (short["outcome"].as_str(), short["stale"].as_bool()),
        (Some("verified"), Some(true)),
        "{short}"
    );
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "m-short",
        &secret,
    );
    assert_eq!(g["error"], "AssetStaleError", "{g}");

    // The alias moves to the unanchored version 2: missing; once anchored: verified again.
    let out = lab.server.python(
        &venv,
        &mlflow_data("registry_actions.py"),
        &[&lab.server.uri, "alias", &model, "champion", &v2],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let (body, took) = wait_outcome("m-champ", "missing", Duration::from_secs(30));
    println!(
        "alias moved → missing in {:.2} s: {}",
        took.as_secs_f64(),
        body["detail"]["reason"]
    );
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}@champion"),
        "m-champ",
        &secret,
    );
    assert_eq!(g["error"], "AssetMissingError", "{g}");
    let out = worker(&env, &["anchor", "model", &format!("{model}/{v2}")]);
    assert!(out.status.success(), "anchor model: {}", show(&out));
    let (body, _) = wait_outcome("m-champ", "verified", Duration::from_secs(30));
    assert_eq!(body["detail"]["version"], v2.as_str());

    // Overwrite the model file in the artifact store: tampered within an interval.
    let mut pickles = Vec::new();
    model_files(&lab.server.artifact_dir(), &mut pickles);
    assert!(
        !pickles.is_empty(),
        "no model file under {}",
        lab.server.artifact_dir().display()
    );
    println!("overwriting {pickles:?}");
    for p in &pickles {
        std::fs::write(p, b"not the model that was trained").unwrap();
    }
    let (body, took) = wait_outcome("m-prod", "tampered", Duration::from_secs(30));
    println!(
        "model file overwritten → tampered in {:.2} s: {} {}",
        took.as_secs_f64(),
        body["detail"]["reason"],
        body["detail"]["changed_files"]
    );
    assert!(
        body["detail"]["changed_files"]
            .to_string()
            .contains(pickles[0].file_name().unwrap().to_str().unwrap()),
        "{body}"
    );
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "m-prod",
        &secret,
    );
    assert_eq!(g["error"], "AssetTamperedError", "{g}");

    // One tamper event per asset that went verified → tampered (m-short is not re-checked
    // within the test), one missing event for the alias move; each verifies offline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = agent_events(&lab);
    while per_asset(&events, "tamper_detected").len() < 3 {
        assert!(
            Instant::now() < deadline,
            "tamper events: {events:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(300));
        events = agent_events(&lab);
    }
    let tampered = per_asset(&events, "tamper_detected");
    assert_eq!(
        tampered.values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1],
        "{tampered:?}"
    );
    assert!(
        tampered.contains_key("m-prod")
            && tampered.contains_key("m-champ")
            && tampered.contains_key("m-staging")
    );
    let missing = per_asset(&events, "asset_missing");
    assert_eq!(missing.get("m-champ"), Some(&1), "{missing:?}");
    let tamper = events
        .iter()
        .find(|e| {
            e["event_type"] == "tamper_detected" && e["payload"]["asset"]["asset_id"] == "m-prod"
        })
        .unwrap();
    println!(
        "tamper event: {}",
        serde_json::to_string(&tamper["payload"]).unwrap()
    );
    assert_eq!(
        tamper["subject"],
        serde_json::json!({"type": "agent", "tenant_id": "acme", "agent_id": "ci-host"})
    );
    assert!(tamper["payload"]["observed"]["changed_files"]
        .to_string()
        .contains("(changed)"));
    assert_ne!(
        tamper["payload"]["baseline"]["hash"],
        tamper["payload"]["observed"]["hash"]
    );
    assert_eq!(
        tamper["payload"]["baseline"]["tx_id"]
            .as_str()
            .unwrap()
            .len(),
        43
    );
    let file = lab.home.path().join("tamper.json");
    std::fs::write(&file, serde_json::to_vec(tamper).unwrap()).unwrap();
    let out = worker(
        &env,
        &["verify", "envelope", &file.display().to_string(), "--text"],
    );
    assert!(
        out.status.success(),
        "verify envelope of the tamper event: {}",
        show(&out)
    );
    let total_events = events.len();

    // MLflow stopped: unavailable (the plugin treats it as stale).
    lab.server.stop();
    let (body, took) = wait_outcome("m-staging", "unavailable", Duration::from_secs(90));
    let g = gate(
        &lab,
        &venv,
        &base,
        &format!("models:/{model}/1"),
        "m-staging",
        &secret,
    );
    assert_eq!(
        g["error"], "AssetStaleError",
        "unavailable is refused as stale: {g}"
    );
    println!(
        "MLflow stopped → unavailable in {:.2} s: {}",
        took.as_secs_f64(),
        body["detail"]["reason"]
    );
    // Restart MLflow and the worker: the kept state says "tampered" already, nothing new is signed.
    lab.server.restart();
    drop(run);
    run = start();
    let _ = &run;
    wait_outcome("m-prod", "tampered", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    // m-short (checked once an hour) was last seen verified: its first check after the restart
    // is a transition of its own, one event; the others keep exactly one each.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = agent_events(&lab);
    while !per_asset(&after, "tamper_detected").contains_key("m-short") {
        assert!(Instant::now() < deadline, "m-short: {after:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(300));
        after = agent_events(&lab);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = agent_events(&lab);
    let tampered = per_asset(&after, "tamper_detected");
    assert!(
        tampered.values().all(|n| *n == 1) && tampered.len() == 4,
        "a restart signs no second event: {tampered:?}"
    );
    assert_eq!(per_asset(&after, "asset_missing").get("m-champ"), Some(&1));
    assert_eq!(after.len(), total_events + 1);

    assert!(
        !logs().contains(&secret),
        "the management secret is never logged"
    );
    let m = lab.rt.block_on(async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let checks = common::metrics::sum(&m, "ario_mlflow_worker_guard_checks_total", &[]);
    let duration_line = m
        .lines()
        .find(|l| l.starts_with("ario_mlflow_worker_guard_check_duration_seconds_sum"))
        .unwrap_or("")
        .to_string();
    println!("guard: {checks} checks; {duration_line}");
    assert!(checks > 10.0);
}

#[test]
fn coverage_counts_verifying_failing_signed_only_and_unanchored_entities() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let ids = scenario(&lab.server, &venv, "coverage");
    let mut env = lab.worker_env(&lab.home.path().join("state"));
    env.push(("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()));
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    // After the backfill: a run never anchored, a run the plugin signed but never uploaded,
    // and the anchored registered run's param changed in the database (failing).
    let action = |args: &[&str]| {
        let mut all = vec![lab.server.uri.as_str()];
        all.extend_from_slice(args);
        let out = lab
            .server
            .python(&venv, &mlflow_data("registry_actions.py"), &all, &[]);
        assert!(out.status.success(), "{}", show(&out));
        last_json_line(&out.stdout)["run_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let never = action(&["run", "never-anchored"]);
    let signed = action(&["run", "signed-only", "ario.verify_status=signed"]);
    let registered = ids["run"].as_str().unwrap().to_string();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update params set value = value || '-tampered' where run_uuid = ? and key = 'C'\", (sys.argv[2],)); c.commit()",
        ])
        .arg(lab.server.db_path())
        .arg(&registered)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));

    let json_out = lab.home.path().join("coverage.html");
    let started = Instant::now();
    let out = worker(
        &env,
        &[
            "coverage",
            "--json",
            "--html",
            &json_out.display().to_string(),
        ],
    );
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "not everything is proven: {}",
        show(&out)
    );
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("coverage ({:.1} s): {}", took.as_secs_f64(), c["counts"]);
    let n = |t: &str, k: &str| c["counts"][t][k].as_u64().unwrap_or(99);
    // Training: parity run verifying; the registered run failing; the NaN run (parked by the
    // worker) and the new run not anchored; one signed only.
    assert_eq!(
        (
            n("training_complete", "total"),
            n("training_complete", "verifying"),
            n("training_complete", "failing"),
            n("training_complete", "signed_only"),
            n("training_complete", "not_anchored")
        ),
        (5, 1, 1, 1, 2),
        "{c}"
    );
    assert_eq!(
        (
            n("model_registered", "total"),
            n("model_registered", "verifying")
        ),
        (1, 1),
        "{c}"
    );
    assert_eq!(
        (n("prediction", "total"), n("prediction", "verifying")),
        (3, 3),
        "{c}"
    );
    let listed = |standing: &str| -> Vec<String> {
        c["unproven"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["standing"] == standing)
            .map(|e| e["entity"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        listed("not_anchored").contains(&format!("run/{never}")),
        "{c}"
    );
    assert!(
        listed("not_anchored").contains(&format!("run/{}", ids["nan_run"].as_str().unwrap())),
        "{c}"
    );
    assert_eq!(listed("signed_only"), vec![format!("run/{signed}")]);
    assert_eq!(listed("failing"), vec![format!("run/{registered}")]);
    let failing = c["unproven"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["standing"] == "failing")
        .unwrap();
    assert!(
        failing["reason"].as_str().unwrap().contains("live record"),
        "{failing}"
    );
    let html = std::fs::read_to_string(&json_out).unwrap();
    assert!(html.contains("<table>") && html.contains(&never));
    // Text, and the fast tags-only pass.
    let out = worker(&env, &["coverage", "--tags-only"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(
        text.contains("NOT ANCHORED") && text.contains("SIGNED ONLY") && !text.contains("FAILING"),
        "{text}"
    );

    // `guard` on its own: the same answer from the same checks (the changed param makes the
    // registered run's training proof fail: tampered), then SIGTERM → exit 0.
    let model = ids["model_name"].as_str().unwrap();
    let config = lab.home.path().join("guard.toml");
    std::fs::write(
        &config,
        format!("[guard]\ntenant_id = \"t\"\nagent_id = \"a\"\n[[guard.asset]]\nid = \"m\"\nmodel = \"{model}/1\"\ninterval = 1\n"),
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    cmd.args([
        "--config",
        &config.display().to_string(),
        "guard",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut guard = Proc::new(cmd.spawn().unwrap());
    let secret_file = lab.home.path().join("state").join("management-secret");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let secret = std::fs::read_to_string(&secret_file).unwrap_or_default();
        let answer = lab.rt.block_on(async {
            let r = reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/v1/verify-status/m"))
                .header("X-Ario-Management-Secret", secret.trim())
                .send()
                .await
                .ok()?;
            r.json::<Value>().await.ok()
        });
        if let Some(b) = answer.clone().filter(|b| b["outcome"] == "tampered") {
            break b;
        }
        assert!(Instant::now() < deadline, "guard command: {answer:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("guard command: {}", body["detail"]["reason"]);
    // The cost of one check, from the guard's own counters (health probes and the coverage
    // pass make their own calls: models-versions and runs/experiments/traces searches).
    std::thread::sleep(Duration::from_secs(3));
    let metrics = lab.rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let sum = |name: &str| common::metrics::sum(&metrics, name, &[]);
    let checks = sum("ario_mlflow_worker_guard_checks_total");
    let calls = sum("ario_mlflow_worker_mlflow_request_duration_seconds_count");
    let hashed = sum("ario_mlflow_worker_artifact_bytes_hashed_total");
    println!(
        "guard command: {checks} checks, {calls} MLflow requests in all ({:.1} per check), {hashed} artifact bytes hashed ({:.0} per check)",
        calls / checks.max(1.0),
        hashed / checks.max(1.0)
    );
    for l in metrics
        .lines()
        .filter(|l| l.starts_with("ario_mlflow_worker_mlflow_request_duration_seconds_count{"))
    {
        println!("  {l}");
    }
    assert!(checks >= 1.0 && hashed > 0.0);
    // `status` reaches the guard-only worker too (with the management secret of its state
    // directory): guard mode, no job store.
    let out = worker(
        &env,
        &["status", "--worker", &format!("http://127.0.0.1:{port}")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("(guard mode): 0 store(s), 0 jobs"),
        "status of the guard: {}",
        show(&out)
    );
    println!(
        "guard command: status answered: {}",
        text.lines().next().unwrap_or("")
    );
    assert!(
        metrics.contains("ario_mlflow_worker_coverage_entities{workspace=\"default\",event_type=\"training_complete\",standing=\"not_anchored\"} 2"),
        "coverage gauges: {metrics}"
    );
    let status = guard.sigterm(Duration::from_secs(20));
    assert!(status.success());
}
