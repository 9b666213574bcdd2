//! The platform surface against the real things: `/metrics` parsed by Prometheus' own
//! `promtool` with counters that match what was anchored, `/healthz` and `/readyz` flipping as
//! MLflow stops and starts, and MLflow 3.17's own webhook deliveries anchoring a version and an
//! alias with the poller idle — while forged, stale, replayed and oversized deliveries record
//! nothing.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::lab::{last_json_line, scenario, Lab, SEED_B64};
use common::mlflow::{venv, ArtifactMode, MlflowServer};
use common::process::free_port;
use common::process::Proc;
use common::run::{mlflow_data, show, worker};
use serde_json::Value;

/// Starts the worker with `env` and `args`, its stderr to `log`; killed on drop.
fn start_worker(env: &[(&str, String)], args: &[&str], log: PathBuf) -> Proc {
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
    // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
    cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
    cmd.args(args)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::logged(cmd.spawn().expect("start the worker"), &log)
}

/// The graceful path's deadline.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// One HTTP request to the worker's listener: (status, body).
fn http(
    rt: &tokio::runtime::Runtime,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, String) {
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.request(method.parse().unwrap(), url).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.text().await.unwrap_or_default())
            }
            Err(e) => (0, e.to_string()),
        }
    })
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    log: &dyn Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; worker log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `promtool check metrics` over the exposition (Prometheus' own parser and linter). Under CI
/// it must be there (`.ci/run` installs it).
fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(std::env::var("CI").is_err(), "promtool is missing under CI");
        println!("promtool not installed: exposition not checked by Prometheus' parser");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "promtool check metrics: ok ({} lines)",
        text.lines().count()
    );
}

fn worker_env(lab: &Lab, state: &Path, listen: &str) -> Vec<(&'static str, String)> {
    let mut env = lab.worker_env(state);
    env.push(("ARIO_MLFLOW_LISTEN", listen.to_string()));
    env
}

#[test]
fn metrics_count_what_was_anchored_and_probes_follow_mlflow() {
    let Some(venv) = venv() else { return };
    let mut lab = Lab::start(&venv);
    scenario(&lab.server, &venv, "metrics");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let state = lab.home.path().join("state");
    let env = worker_env(&lab, &state, &format!("127.0.0.1:{port}"));

    // A backfill serves the listener too: scrape it while it works.
    let mut backfill = start_worker(
        &env,
        &["backfill", "--rate", "40", "--health-interval", "0.5"],
        lab.home.path().join("backfill.log"),
    );
    let mut scraped_during = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while backfill.alive() {
        assert!(
            Instant::now() < deadline,
            "backfill did not finish: {}",
            backfill.log()
        );
        let (status, text) = http(&lab.rt, "GET", &format!("{base}/metrics"), &[], vec![]);
        if status == 200 && text.contains("ario_mlflow_worker_events_detected_total") {
            scraped_during = Some(text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        backfill.sigterm(STOP_WITHIN).success(),
        "backfill: {}",
        backfill.log()
    );
    let during = scraped_during.expect("/metrics answered while the backfill ran");
    promtool_check(&during);
    assert!(
        common::metrics::sum(
            &during,
            "ario_mlflow_worker_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ) == 1.0
    );
    let anchored_by_backfill = lab.dn.handle.items().len();
    assert!(anchored_by_backfill > 0);
    assert!(
        common::metrics::sum(&during, "ario_mlflow_worker_events_anchored_total", &[])
            <= anchored_by_backfill as f64
    );

    // `run` over the same store, then one more lifecycle: its counters match the uploads.
    let mut run = start_worker(
        &env,
        &["run", "--poll-interval", "0.5", "--health-interval", "0.5"],
        lab.home.path().join("run.log"),
    );
    let log = || std::fs::read_to_string(lab.home.path().join("run.log")).unwrap_or_default();
    wait_for(
        "/readyz 200",
        Duration::from_secs(30),
        || http(&lab.rt, "GET", &format!("{base}/readyz"), &[], vec![]).0 == 200,
        &log,
    );
    scenario(&lab.server, &venv, "metrics2");
    let mut text = String::new();
    let progress = std::cell::RefCell::new(String::new());
    wait_for(
        "the second scenario anchored",
        Duration::from_secs(120),
        || {
            let items = lab.dn.handle.items().len();
            text = http(&lab.rt, "GET", &format!("{base}/metrics"), &[], vec![]).1;
            let anchored =
                common::metrics::sum(&text, "ario_mlflow_worker_events_anchored_total", &[]);
            *progress.borrow_mut() = format!("{items} uploads ({anchored_by_backfill} by the backfill), {anchored} anchored by the counters");
            // The second scenario's datasets are the first's (same digests): 8 new uploads.
            items >= anchored_by_backfill + 8 && anchored as usize == items - anchored_by_backfill
        },
        &|| format!("{}\n{}", progress.borrow(), log()),
    );
    promtool_check(&text);
    let anchored = common::metrics::sum(&text, "ario_mlflow_worker_events_anchored_total", &[]);
    let uploads = lab.dn.handle.items().len() - anchored_by_backfill;
    println!("run: {anchored} anchored by the counters, {uploads} uploads on devnet");
    assert_eq!(anchored as usize, uploads, "{text}");
    for (event_type, n) in [
        ("model_registered", 1.0),
        ("alias_changed", 1.0),
        ("prediction", 3.0),
    ] {
        assert_eq!(
            common::metrics::sum(
                &text,
                "ario_mlflow_worker_events_anchored_total",
                &[("event_type", event_type), ("source", "poll")]
            ),
            n,
            "{event_type}: {text}"
        );
    }
    assert!(
        common::metrics::sum(&text, "ario_mlflow_worker_events_parked_total", &[]) >= 1.0,
        "the NaN run parks"
    );
    assert!(
        common::metrics::sum(
            &text,
            "ario_mlflow_worker_turbo_responses_total",
            &[("status_class", "2xx")]
        ) >= uploads as f64
    );
    assert!(
        common::metrics::sum(
            &text,
            "ario_mlflow_worker_mlflow_request_duration_seconds_count",
            &[("endpoint", "runs"), ("status_class", "2xx")]
        ) > 0.0
    );
    assert!(
        common::metrics::sum(
            &text,
            "ario_mlflow_worker_anchor_latency_seconds_count",
            &[]
        ) == anchored
    );
    assert!(common::metrics::sum(&text, "ario_mlflow_worker_store_size_bytes", &[]) > 0.0);
    assert!(text.contains("ario_mlflow_worker_jobs{workspace=\"default\",state=\"parked\"}"));
    assert!(!text.contains(SEED_B64), "no secret in the metrics");

    // Probes: MLflow down → not ready (the loop still ticks: alive); back → ready.
    let (status, body) = http(&lab.rt, "GET", &format!("{base}/healthz"), &[], vec![]);
    assert_eq!(status, 200, "{body}");
    lab.server.stop();
    wait_for(
        "/readyz 503 with MLflow down",
        Duration::from_secs(60),
        || {
            let (s, b) = http(&lab.rt, "GET", &format!("{base}/readyz"), &[], vec![]);
            s == 503
                && serde_json::from_str::<Value>(&b).is_ok_and(|v| {
                    v["checks"]["mlflow"]["ok"] == false && v["checks"]["turbo"]["ok"] == true
                })
        },
        &log,
    );
    let (status, body) = http(&lab.rt, "GET", &format!("{base}/healthz"), &[], vec![]);
    assert_eq!(status, 200, "liveness is not readiness: {body}");
    let (_, body) = http(&lab.rt, "GET", &format!("{base}/readyz"), &[], vec![]);
    println!("readyz with MLflow down: {body}");
    lab.server.restart();
    wait_for(
        "/readyz 200 again",
        Duration::from_secs(60),
        || http(&lab.rt, "GET", &format!("{base}/readyz"), &[], vec![]).0 == 200,
        &log,
    );
    assert!(run.sigterm(STOP_WITHIN).success(), "run: {}", run.log());
    let (status, _) = http(&lab.rt, "GET", &format!("{base}/healthz"), &[], vec![]);
    assert_eq!(status, 0, "the listener stops with the service");
}

/// MLflow with webhooks enabled for a loopback http receiver.
fn webhook_server(venv: &Path) -> MlflowServer {
    let key = common::mlflow::fernet_key(venv);
    MlflowServer::start_env(
        venv,
        ArtifactMode::Proxy,
        &common::mlflow::webhook_env(&key),
        &[],
    )
}

#[test]
fn webhooks_from_mlflow_anchor_at_once_and_forgeries_record_nothing() {
    let Some(venv) = venv() else { return };
    let mut lab = Lab::start(&venv);
    lab.server = webhook_server(&venv);
    let ids = scenario(&lab.server, &venv, "hook");
    let model = ids["model_name"].as_str().unwrap().to_string();
    let run_id = ids["run"].as_str().unwrap().to_string();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let secret = "whsec-test-0123456789";
    let state = lab.home.path().join("state");
    let mut env = worker_env(&lab, &state, &format!("127.0.0.1:{port}"));
    env.push((
        "ARIO_MLFLOW_WEBHOOK_SECRET",
        format!("rotated-out,{secret}"),
    ));

    // The register command: printed, then made against the real server.
    let receiver = format!("{base}/v1/webhooks/mlflow");
    let out = worker(
        &env,
        &[
            "webhook",
            "register",
            "--receiver-url",
            &receiver,
            "--print",
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success()
            && printed.contains("/api/2.0/mlflow/webhooks")
            && !printed.contains(secret),
        "{}",
        show(&out)
    );
    let out = worker(&env, &["webhook", "register", "--receiver-url", &receiver]);
    assert!(out.status.success(), "{}", show(&out));
    println!(
        "{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );

    // The poller runs once at start, then not for 5 minutes: anything anchored later came by
    // webhook.
    let mut run = start_worker(
        &env,
        &["run", "--poll-interval", "300", "--health-interval", "0.5"],
        lab.home.path().join("run.log"),
    );
    let log = || std::fs::read_to_string(lab.home.path().join("run.log")).unwrap_or_default();
    let anchored_now = |lab: &Lab| lab.dn.handle.items().len();
    // The first poll's backlog (the scenario: 11 uploads, the NaN run parked) settles.
    wait_for(
        "the first poll's backlog anchored",
        Duration::from_secs(120),
        || anchored_now(&lab) >= 10,
        &log,
    );
    common::metrics::no_open_jobs(&format!("127.0.0.1:{port}"), Duration::from_secs(60));
    let before = anchored_now(&lab);
    let started = Instant::now();
    let out = lab.server.python(
        &venv,
        &mlflow_data("registry_actions.py"),
        &[&lab.server.uri, "register", &model, &run_id],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let version = last_json_line(&out.stdout)["version"]
        .as_str()
        .unwrap()
        .to_string();
    let tag_of = |lab: &Lab, tag: &str| -> Option<String> {
        let url = format!(
            "{}/api/2.0/mlflow/model-versions/get?name={model}&version={version}",
            lab.server.uri
        );
        let (_, body) = http(&lab.rt, "GET", &url, &[], vec![]);
        let v: Value = serde_json::from_str(&body).ok()?;
        v["model_version"]["tags"]
            .as_array()?
            .iter()
            .find(|t| t["key"] == tag)
            .map(|t| t["value"].as_str().unwrap_or("").to_string())
    };
    wait_for(
        "the new version anchored through the webhook",
        Duration::from_secs(60),
        || tag_of(&lab, "ario.registration_tx").is_some(),
        &log,
    );
    let latency = started.elapsed();
    println!(
        "version {version} registered → anchored in {:.2} s with the poller idle",
        latency.as_secs_f64()
    );
    assert!(latency < Duration::from_secs(60));
    assert!(log().contains("webhook: detected"), "{}", log());
    let out = lab.server.python(
        &venv,
        &mlflow_data("registry_actions.py"),
        &[&lab.server.uri, "alias", &model, "hooked", &version],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    wait_for(
        "the alias anchored through the webhook",
        Duration::from_secs(60),
        || tag_of(&lab, "ario.alias_tx.hooked").is_some(),
        &log,
    );
    let after_mlflow = anchored_now(&lab);
    assert_eq!(
        after_mlflow,
        before + 2,
        "one version, one alias: nothing doubled"
    );

    // Forgeries and mistakes: refused, nothing recorded.
    let body = format!(
        r#"{{"entity":"model_version","action":"created","timestamp":"2026-12-01T00:00:00+00:00","data":{{"name":"{model}","version":"99"}}}}"#
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = |id: &str, ts: u64, body: &[u8], key: &str| -> Vec<(&'static str, String)> {
        let sig = ario_mlflow_worker::feed::webhook::sign(key, id, &ts.to_string(), body);
        vec![
            ("content-type", "application/json".into()),
            ("x-mlflow-delivery-id", id.into()),
            ("x-mlflow-timestamp", ts.to_string()),
            ("x-mlflow-signature", format!("v1,{sig}")),
        ]
    };
    let metrics = || http(&lab.rt, "GET", &format!("{base}/metrics"), &[], vec![]).1;
    let detected =
        |text: &str| common::metrics::sum(text, "ario_mlflow_worker_events_detected_total", &[]);
    let before_forgeries = detected(&metrics());
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, Vec<u8>, u16)> = vec![
        (
            "forged signature",
            signed("f-1", now, body.as_bytes(), "not-the-secret"),
            body.clone().into_bytes(),
            401,
        ),
        (
            "no signature",
            vec![
                ("x-mlflow-delivery-id", "f-2".into()),
                ("x-mlflow-timestamp", now.to_string()),
            ],
            body.clone().into_bytes(),
            401,
        ),
        (
            "stale timestamp",
            signed("f-3", now - 600, body.as_bytes(), secret),
            body.clone().into_bytes(),
            401,
        ),
        (
            "2 MiB body",
            signed("f-4", now, &vec![b' '; 2 << 20], secret),
            vec![b' '; 2 << 20],
            413,
        ),
        (
            "malformed body",
            signed("f-5", now, b"{\"entity\":", secret),
            b"{\"entity\":".to_vec(),
            400,
        ),
    ];
    for (what, headers, body, expected) in cases {
        let (status, answer) = http(&lab.rt, "POST", &receiver, &headers, body);
        println!("{what}: HTTP {status} {answer}");
        assert_eq!(status, expected, "{what}: {answer}");
    }
    // A replay of an accepted delivery: the first is taken (a tag event: acknowledged, ignored),
    // the second refused.
    let tag_body = format!(
        r#"{{"entity":"model_version_tag","action":"set","data":{{"name":"{model}","version":"1","key":"k","value":"v"}}}}"#
    );
    let headers = signed("replay-1", now, tag_body.as_bytes(), secret);
    let (first, _) = http(
        &lab.rt,
        "POST",
        &receiver,
        &headers,
        tag_body.clone().into_bytes(),
    );
    let (second, answer) = http(&lab.rt, "POST", &receiver, &headers, tag_body.into_bytes());
    assert_eq!((first, second), (200, 409), "{answer}");
    common::metrics::no_open_jobs(&format!("127.0.0.1:{port}"), Duration::from_secs(60));
    let text = metrics();
    assert_eq!(
        detected(&text),
        before_forgeries,
        "no refused delivery recorded an event"
    );
    assert_eq!(anchored_now(&lab), after_mlflow);
    for outcome in [
        "unauthorized",
        "stale",
        "too_large",
        "malformed",
        "replayed",
    ] {
        assert!(
            common::metrics::sum(
                &text,
                "ario_mlflow_worker_webhook_deliveries_total",
                &[("outcome", outcome)]
            ) >= 1.0,
            "{outcome}: {text}"
        );
    }
    assert!(!log().contains(secret), "the secret never reaches the log");
    assert!(run.sigterm(STOP_WITHIN).success());
    let status = worker(&env, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["parked"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p["job"].as_str().unwrap().contains("/99")),
        "{status}"
    );
}

#[test]
fn config_file_sits_under_env_and_flags_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    let file = d("worker.toml");
    let secret_seed = "c2VjcmV0LXNlZWQtbm90LXJlYWwtMDEyMzQ1Njc4OQ==";
    std::fs::write(
        &file,
        format!(
            "state_dir = \"{}\"\npoll_interval = 2\nsigning_key = \"{secret_seed}\"\n\n[mlflow]\ntracking_uri = \"http://mlflow.internal:5000\"\n\n[kafka]\nbrokers = \"k1:9092\"\nproperty = [\"security.protocol=SASL_SSL\", \"sasl.mechanism=SCRAM-SHA-512\"]\nsasl_password = \"kafka-pass-not-real\"\n\n[webhook]\nsecret = \"hook-secret-not-real\"\n",
            d("from-file").display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = file.display().to_string();
    let run = |env: &[(&str, String)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.args(args)
            .env_remove("ARIO_MLFLOW_STATE_DIR")
            .env_remove("MLFLOW_TRACKING_URI");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // file > default, env > file, flag > env: the store `status` looks for says which won (none
    // exists and no worker runs: it names the directory it looked in, and creates nothing).
    let looked_in = |out: &Output, name: &str| {
        out.status.code() == Some(2)
            && String::from_utf8_lossy(&out.stderr)
                .contains(&format!("there is no state store in {}", d(name).display()))
    };
    let out = run(
        &[("ARIO_MLFLOW_CONFIG", config.clone())],
        &["status", "--json"],
    );
    assert!(
        looked_in(&out, "from-file"),
        "the file's state_dir is used: {}",
        show(&out)
    );
    assert!(!d("from-file").exists(), "status creates no store");
    let out = run(
        &[("ARIO_MLFLOW_STATE_DIR", d("from-env").display().to_string())],
        &["--config", &config, "status"],
    );
    assert!(looked_in(&out, "from-env"), "{}", show(&out));
    let out = run(
        &[(
            "ARIO_MLFLOW_STATE_DIR",
            d("from-env-2").display().to_string(),
        )],
        &[
            "status",
            "--config",
            &config,
            "--state-dir",
            &d("from-flag").display().to_string(),
        ],
    );
    assert!(
        looked_in(&out, "from-flag"),
        "the flag wins: {}",
        show(&out)
    );

    // config check: the effective values with their sources, no secret.
    let out = run(
        &[("MLFLOW_TRACKING_URI", "http://from-env:5000".into())],
        &["config", "check", "--config", &config],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(out.status.success(), "{}", show(&out));
    for line in [
        "tracking_uri = \"http://from-env:5000/\"  # env MLFLOW_TRACKING_URI",
        "poll_interval = \"2\"  # file",
        "kafka_brokers = \"k1:9092\"  # file",
        "# signing_key = \"<redacted>\"  # file",
        "# kafka_sasl_password = \"<redacted>\"  # file",
        "# webhook_secret = [\"<redacted>\"]  # file",
        "publish_concurrency = \"8\"  # default",
    ] {
        assert!(
            text.contains(line) || text.contains(&line.replace("5000/", "5000")),
            "missing {line:?} in:\n{text}"
        );
    }
    for secret in [secret_seed, "kafka-pass-not-real", "hook-secret-not-real"] {
        assert!(!text.contains(secret) && !String::from_utf8_lossy(&out.stderr).contains(secret));
    }
    // Its output is itself a config file: loaded back, the same settings (secrets left out).
    let again = d("again.toml");
    std::fs::write(&again, &text).unwrap();
    let out = run(
        &[],
        &["config", "check", "--config", again.to_str().unwrap()],
    );
    let reread = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", show(&out));
    for line in [
        "poll_interval = \"2\"  # file",
        "kafka_brokers = \"k1:9092\"  # file",
    ] {
        assert!(reread.contains(line), "missing {line:?} in:\n{reread}");
    }

    // Unknown keys and bad values: exit 2, naming the key and the file.
    for (content, expected) in [
        ("poll_intervall = 2\n", "unknown key `poll_intervall`"),
        ("[kafka]\nbrokerz = \"x\"\n", "unknown key `kafka.brokerz`"),
        (
            "poll_interval = \"soon\"\n",
            "key `poll_interval`: invalid value 'soon'",
        ),
        ("resolve_concurrency = 999\n", "key `resolve_concurrency`"),
        ("source = [\"poll\", \"carrier-pigeon\"]\n", "key `source`"),
    ] {
        let bad = d("bad.toml");
        std::fs::write(&bad, content).unwrap();
        for args in [vec!["config", "check"], vec!["status"]] {
            let out = run(&[("ARIO_MLFLOW_CONFIG", bad.display().to_string())], &args);
            let err = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(out.status.code(), Some(2), "{content}: {}", show(&out));
            assert!(
                err.contains(expected) && err.contains(&bad.display().to_string()),
                "{content}: {err}"
            );
        }
    }

    // One meaning per key: `predictions` is run's mode, `prediction_sample` audit's sample.
    let modes = d("modes.toml");
    std::fs::write(
        &modes,
        "predictions = \"batched\"\nprediction_sample = \"all\"\n",
    )
    .unwrap();
    for (command, line) in [
        ("run", "predictions = \"batched\"  # file"),
        ("audit", "prediction_sample = \"all\"  # file"),
        ("export", "prediction_sample = \"all\"  # file"),
    ] {
        let out = run(
            &[("ARIO_MLFLOW_CONFIG", modes.display().to_string())],
            &["config", "check", "--command", command],
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{command}: {}", show(&out));
        assert!(
            text.contains(line),
            "{command}: missing {line:?} in:\n{text}"
        );
    }
}

#[test]
fn tls_trusts_the_system_store_and_mlflow_s_own_cert_variables() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let Some(venv) = venv() else { return };
    let home = tempfile::tempdir().unwrap();
    let h = |name: &str| home.path().join(name);
    let bare = |env: &[(&str, String)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.args(args)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .env_remove("ARIO_MLFLOW_CA_CERT")
            .env("HOME", home.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };

    // Devnet over TLS, trusted only through SSL_CERT_FILE (the system-store variable).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dn = rt.block_on(common::devnet::start_devnet(true, &[]));
    std::fs::write(h("devnet-ca.pem"), dn.handle.ca_pem().unwrap()).unwrap();
    std::fs::write(h("hello.txt"), b"hello from the system trust store").unwrap();
    let upload = |env: &[(&str, String)]| {
        bare(
            env,
            &[
                "upload",
                &h("hello.txt").display().to_string(),
                "--upload-url",
                dn.handle.url(),
                "--attempts",
                "1",
            ],
        )
    };
    let out = upload(&[]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("UnknownIssuer"),
        "an untrusted CA is refused: {}",
        show(&out)
    );
    let out = upload(&[("SSL_CERT_FILE", h("devnet-ca.pem").display().to_string())]);
    assert!(
        out.status.success(),
        "SSL_CERT_FILE is trusted: {}",
        show(&out)
    );
    assert_eq!(dn.handle.items().len(), 1);
    std::fs::create_dir_all(h("certs")).unwrap();
    std::fs::copy(h("devnet-ca.pem"), h("certs/devnet-ca.pem")).unwrap();
    let out = upload(&[("SSL_CERT_DIR", h("certs").display().to_string())]);
    assert!(
        out.status.success(),
        "SSL_CERT_DIR is trusted: {}",
        show(&out)
    );

    // MLflow behind TLS that requires a client certificate (uvicorn's own TLS).
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "mlflow test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let server =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "ario worker");
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    std::fs::write(h("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(h("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(h("server-key.pem"), server_key.serialize_pem()).unwrap();
    std::fs::write(
        h("client.pem"),
        format!("{}{}", client_cert.pem(), client_key.serialize_pem()),
    )
    .unwrap();
    let opts = format!(
        "--ssl-keyfile {} --ssl-certfile {} --ssl-ca-certs {} --ssl-cert-reqs 2",
        h("server-key.pem").display(),
        h("server.pem").display(),
        h("ca.pem").display()
    );
    let mlflow =
        MlflowServer::start_env(&venv, ArtifactMode::Proxy, &[], &["--uvicorn-opts", &opts]);
    assert!(mlflow.uri.starts_with("https://"));
    let dry = |env: &[(&str, String)]| {
        let mut all = vec![("MLFLOW_TRACKING_URI", mlflow.uri.clone())];
        all.extend(env.iter().cloned());
        bare(&all, &["backfill", "--dry-run"])
    };
    let trusted = [
        (
            "MLFLOW_TRACKING_SERVER_CERT_PATH",
            h("ca.pem").display().to_string(),
        ),
        (
            "MLFLOW_TRACKING_CLIENT_CERT_PATH",
            h("client.pem").display().to_string(),
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let out = loop {
        let out = dry(&trusted);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("would anchor"),
        "MLflow over mutual TLS: {}\nserver log: {}",
        show(&out),
        std::fs::read_to_string(mlflow.dir.path().join("server.log")).unwrap_or_default()
    );
    let out = dry(&trusted[1..]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("UnknownIssuer"),
        "without the CA: {}",
        show(&out)
    );
    let out = dry(&trusted[..1]);
    assert!(
        !out.status.success(),
        "without the client certificate the server refuses: {}",
        show(&out)
    );
    println!(
        "without a client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    std::fs::write(h("bad.pem"), "not a certificate").unwrap();
    let out = dry(&[(
        "MLFLOW_TRACKING_CLIENT_CERT_PATH",
        h("bad.pem").display().to_string(),
    )]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.code() == Some(2) && err.contains("MLFLOW_TRACKING_CLIENT_CERT_PATH"),
        "{}",
        show(&out)
    );
}
