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

    // `status` reads one workspace's store at a time and names the others.
    let status = |args: &[&str]| -> Value {
        let out = worker(&env, &[&["status", "--json"], args].concat());
        assert!(out.status.success(), "status {args:?}: {}", show(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (mine, theirs) = (status(&[]), status(&["--workspace", OTHER]));
    assert_eq!(mine["workspace"], "default");
    assert_eq!(mine["other_workspaces"], json!([OTHER]));
    assert_eq!(theirs["workspace"], OTHER);
    assert_eq!(theirs["other_workspaces"], json!(["default"]));
    assert_eq!(
        theirs["jobs"], mine["jobs"],
        "the same lifecycle in each store"
    );
    let out = worker(&env, &["status", "--workspace", "../x"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

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

/// Creates MLflow workspace `name` on the lab's server.
fn create_workspace(lab: &Lab, name: &str) {
    let created = lab.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/3.0/mlflow/workspaces", lab.server.uri))
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(created, 201, "create workspace {name}");
}

/// A model version's tag, read in `workspace` (`None`: the default one, without the header).
fn version_tag(
    lab: &Lab,
    workspace: Option<&str>,
    model: &str,
    version: &str,
    tag: &str,
) -> Option<String> {
    let url = format!(
        "{}/api/2.0/mlflow/model-versions/get?name={model}&version={version}",
        lab.server.uri
    );
    let body: Value = lab.rt.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(w) = workspace {
            request = request.header("X-MLFLOW-WORKSPACE", w);
        }
        request.send().await.ok()?.json().await.ok()
    })?;
    body["model_version"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == tag)
        .and_then(|t| t["value"].as_str())
        .map(str::to_string)
}

/// Waits until the worker at `addr` reported the open jobs of every workspace in `workspaces`
/// and none is left: each workspace's backlog is anchored.
fn every_workspace_drained(addr: &str, workspaces: &[&str], within: std::time::Duration) {
    let started = std::time::Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < within {
        if let Some(text) = common::metrics::scrape(addr) {
            let reported = workspaces.iter().all(|w| {
                text.contains(&format!("ario_mlflow_worker_open_jobs{{workspace=\"{w}\""))
            });
            let open = common::metrics::sum(&text, "ario_mlflow_worker_open_jobs", &[]);
            if reported && open == 0.0 {
                return;
            }
            last = format!("reported by all: {reported}, {open} open jobs");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the worker at {addr} did not drain every workspace within {within:?} ({last})");
}

/// Webhooks are registered per workspace (`webhook register --workspace`), and a delivery is
/// recorded in its own workspace's store: with the poller idle, a version registered in each
/// workspace is anchored in that workspace. The guard checks an asset in the workspace it
/// names: the same `NAME/1` in two workspaces are two assets with two proofs.
#[test]
fn webhooks_and_guard_assets_are_per_workspace() {
    let Some(venv) = venv() else { return };
    let key = common::mlflow::fernet_key(&venv);
    let lab = Lab::around(MlflowServer::start_env(
        &venv,
        ArtifactMode::Proxy,
        &common::mlflow::webhook_env(&key),
        &["--enable-workspaces"],
    ));
    create_workspace(&lab, OTHER);
    let default_ids = seed(&lab, &venv, None);
    let other_ids = seed(&lab, &venv, Some(OTHER));
    let model = default_ids["model_name"].as_str().unwrap().to_string();
    let port = common::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let secret = "whsec-workspaces-0123456789";
    let state = lab.home.path().join("state");
    let mut env = lab.worker_env(&state);
    env.push(("ARIO_MLFLOW_WEBHOOK_SECRET", secret.to_string()));
    env.push(("ARIO_MLFLOW_LISTEN", listen.clone()));

    // 1. One webhook per workspace, each registered in its workspace.
    let receiver = format!("http://{listen}/v1/webhooks/mlflow");
    for workspace in [None, Some(OTHER)] {
        let mut env = env.clone();
        env.extend(workspace.map(|w| ("ARIO_MLFLOW_WORKSPACES", w.to_string())));
        let args = ["webhook", "register", "--receiver-url", receiver.as_str()];
        let out = worker(&env, &[&args[..], &["--print"]].concat());
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(
            printed.contains(&format!("X-MLFLOW-WORKSPACE: {OTHER}")),
            workspace.is_some(),
            "{printed}"
        );
        let out = worker(&env, &args);
        assert!(out.status.success(), "{}", show(&out));
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            said.contains(&format!("(MLflow workspace {OTHER})")),
            workspace.is_some(),
            "{said}"
        );
    }

    // 2. The worker: the poller once at start, then idle for 5 minutes; a guard asset of the
    //    same name in each workspace.
    let config = lab.home.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[guard]\ntenant_id = \"acme\"\nagent_id = \"ci\"\n\n\
[[guard.asset]]\nid = \"fraud-default\"\nmodel = \"{model}/1\"\ninterval = 1\n\n\
[[guard.asset]]\nid = \"fraud-{OTHER}\"\nmodel = \"{model}/1\"\nworkspace = \"{OTHER}\"\ninterval = 1\n"
        ),
    )
    .unwrap();
    let log = lab.home.path().join("run.log");
    let config_arg = config.display().to_string();
    let mut run = common::process::Proc::worker(
        &env,
        &["--config", &config_arg, "run", "--poll-interval", "300"],
        &log,
    );
    every_workspace_drained(
        &listen,
        &["default", OTHER],
        std::time::Duration::from_secs(240),
    );
    let before = lab.dn.handle.items().len();

    // 3. A version registered in each workspace, anchored through its workspace's webhook.
    let mut registered = Vec::new();
    for (workspace, ids) in [(None, &default_ids), (Some(OTHER), &other_ids)] {
        let env: Vec<(&str, &str)> = workspace
            .map(|w| ("MLFLOW_WORKSPACE", w))
            .into_iter()
            .collect();
        let run_id = ids["parity_run"].as_str().unwrap();
        let out = lab.server.python(
            &venv,
            &mlflow_data("registry_actions.py"),
            &[&lab.server.uri, "register", &model, run_id],
            &env,
        );
        assert!(out.status.success(), "{}", show(&out));
        let version = last_json_line(&out.stdout)["version"]
            .as_str()
            .unwrap()
            .to_string();
        registered.push((workspace, version));
    }
    let mut txs = Vec::new();
    for (workspace, version) in &registered {
        common::run::wait_for(
            &format!("{model}/{version} of {workspace:?} anchored through its webhook"),
            std::time::Duration::from_secs(90),
            std::time::Duration::from_millis(200),
            &[&log],
            || version_tag(&lab, *workspace, &model, version, "ario.registration_tx").is_some(),
        );
        txs.push(version_tag(&lab, *workspace, &model, version, "ario.registration_tx").unwrap());
    }
    assert_ne!(txs[0], txs[1], "two workspaces' versions, two proofs");
    assert_eq!(
        lab.dn.handle.items().len(),
        before + 2,
        "one proof per workspace's new version, with the poller idle"
    );
    let text = common::metrics::scrape(&listen).unwrap_or_default();
    let by_webhook = common::metrics::sum(
        &text,
        "ario_mlflow_worker_events_detected_total",
        &[("source", "webhook")],
    );
    assert!(by_webhook >= 2.0, "detected through webhooks: {by_webhook}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("webhook: detected") && logged.contains(&format!("workspace={OTHER}")),
        "{logged}"
    );

    // 4. The guard: each asset verified against its own workspace's proof.
    let secret = std::fs::read_to_string(state.join("management-secret"))
        .unwrap()
        .trim()
        .to_string();
    for (asset, workspace) in [
        ("fraud-default", None),
        (&*format!("fraud-{OTHER}"), Some(OTHER)),
    ] {
        let expected = version_tag(&lab, workspace, &model, "1", "ario.registration_tx").unwrap();
        let mut last = Value::Null;
        common::run::wait_for(
            &format!("guard asset {asset} verified"),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(200),
            &[&log],
            || {
                last = lab
                    .rt
                    .block_on(async {
                        let r = reqwest::Client::new()
                            .get(format!("http://{listen}/v1/verify-status/{asset}"))
                            .header("X-Ario-Management-Secret", &secret)
                            .send()
                            .await
                            .ok()?;
                        r.json::<Value>().await.ok()
                    })
                    .unwrap_or(Value::Null);
                last["outcome"] == "verified"
            },
        );
        assert_eq!(
            last["current_tx_id"].as_str(),
            Some(expected.as_str()),
            "{asset} checks its own workspace's proof: {last}"
        );
    }
    assert!(
        run.sigterm(std::time::Duration::from_secs(40)).success(),
        "{}",
        run.log()
    );
}

/// Kafka mode across workspaces: `feed` polls each workspace onto its own topic
/// (`<topic>.workspace.<name>`, the default keeps `<topic>`), its events saying their
/// workspace (`ce_mlflowworkspace`, `ce_source`); `run --source kafka` consumes each topic in a
/// group of its own and anchors every event once in its workspace. A workspace's event put on
/// another workspace's topic is a dead letter, never anchored there.
#[test]
fn kafka_keeps_each_workspace_on_its_own_topic_and_anchors_it_once() {
    let Some(venv) = venv() else { return };
    let lab = lab(&venv);
    create_workspace(&lab, OTHER);
    seed(&lab, &venv, None);
    seed(&lab, &venv, Some(OTHER));
    let broker = common::kafka::start();
    let topic = "ws.events";
    let other_topic = format!("{topic}.workspace.{OTHER}");
    let group = "ws-group";
    let kafka_env = |state: &Path| {
        let mut env = lab.worker_env(state);
        env.extend([
            ("ARIO_MLFLOW_KAFKA_BROKERS", broker.bootstrap.clone()),
            ("ARIO_MLFLOW_KAFKA_GROUP", group.to_string()),
            ("ARIO_MLFLOW_KAFKA_PARTITIONS", "3".to_string()),
        ]);
        env
    };

    // 1. The feed: one pass over both workspaces, each onto its topic.
    let feed_state = lab.home.path().join("feed-state");
    let out = worker(
        &kafka_env(&feed_state),
        &["feed", "--to-kafka", topic, "--once"],
    );
    assert!(out.status.success(), "feed: {}", show(&out));
    assert!(feed_state.join("workspaces").join(OTHER).is_dir());
    let (plain, other) = (broker.read_all(topic), broker.read_all(&other_topic));
    assert!(!plain.is_empty() && !other.is_empty(), "both topics fed");
    let ids = |records: &[common::kafka::Record]| -> Vec<String> {
        let mut ids: Vec<String> = records
            .iter()
            .filter_map(|r| r.header("ce_id"))
            .filter(|id| id.starts_with("mv/"))
            .collect();
        ids.sort();
        ids
    };
    // The same registry names in both: the same ids, told apart by topic and source.
    assert_eq!(ids(&plain), ids(&other));
    assert!(!ids(&plain).is_empty());
    for r in &plain {
        assert_eq!(r.header("ce_mlflowworkspace"), None);
        assert_eq!(
            r.header("ce_source")
                .unwrap_or_default()
                .trim_end_matches('/'),
            lab.server.uri.trim_end_matches('/')
        );
    }
    for r in &other {
        assert_eq!(r.header("ce_mlflowworkspace").as_deref(), Some(OTHER));
        assert_eq!(
            r.header("ce_source"),
            Some(format!(
                "{}/workspaces/{OTHER}",
                lab.server.uri.trim_end_matches('/')
            ))
        );
    }
    println!(
        "kafka: {} events on {topic}, {} on {other_topic}",
        plain.len(),
        other.len()
    );

    // 2. A team-b event misrouted onto the default workspace's topic.
    let stray = other
        .iter()
        .find(|r| r.header("ce_id").is_some_and(|id| id.starts_with("mv/")))
        .unwrap();
    broker.produce(
        topic,
        &[(
            stray.key.clone().unwrap_or_default(),
            stray
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stray.value.clone().unwrap_or_default(),
        )],
    );

    // 3. The consumer group anchors both workspaces.
    let port = common::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = kafka_env(&lab.home.path().join("run-state"));
    env.push(("ARIO_MLFLOW_LISTEN", listen.clone()));
    let log = lab.home.path().join("consumer.log");
    let mut run = common::process::Proc::worker(
        &env,
        &["run", "--source", "kafka", "--kafka-topic", topic],
        &log,
    );
    let other_group = format!("{group}.workspace.{OTHER}");
    common::run::wait_for(
        "both workspaces consumed",
        std::time::Duration::from_secs(180),
        std::time::Duration::from_millis(300),
        &[&log],
        || {
            let a = anchored(&lab);
            a.get("default").is_some_and(|l| l.len() >= 10)
                && a.get(OTHER).is_some_and(|l| l.len() >= 10)
        },
    );
    common::metrics::settle_consumer(&listen, std::time::Duration::from_secs(120), || {
        broker.lag(group, topic) + broker.lag(&other_group, &other_topic)
    });
    let proofs = anchored(&lab);
    assert_eq!(proofs.keys().collect::<Vec<_>>(), ["default", OTHER]);
    let (d, o) = (events(&proofs["default"]), events(&proofs[OTHER]));
    for (w, list) in [("default", &d), (OTHER, &o)] {
        let mut unique = list.clone();
        unique.dedup();
        assert_eq!(&unique, list, "an event of {w} anchored twice");
    }
    assert_eq!(d.len(), o.len(), "the same lifecycle in each: {d:?} {o:?}");
    // The stray message is a dead letter naming the mismatch.
    let dead = broker.read_all(&format!("{topic}.dlq"));
    assert!(
        dead.iter().any(|r| r
            .header("__ario.errors.exception.class")
            .is_some_and(|c| c == "WorkspaceMismatch")),
        "dead letters: {:?}",
        dead.iter()
            .map(|r| r.headers.keys().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    // Verified in its workspace, by ours and the plugin's verifier.
    let (tx, envelope) = proofs[OTHER]
        .iter()
        .find(|(_, e)| e["event_type"] == "model_registered")
        .unwrap();
    let mut in_other = lab.worker_env(&lab.home.path().join("verify-state"));
    in_other.push(("ARIO_MLFLOW_WORKSPACES", OTHER.to_string()));
    let out = worker(&in_other, &["verify", "tx", tx]);
    assert!(out.status.success(), "verify tx in {OTHER}: {}", show(&out));
    let version = format!(
        "{}/{}",
        envelope["subject"]["name"].as_str().unwrap_or(""),
        envelope["subject"]["version"].as_str().unwrap_or("")
    );
    assert!(
        plugin_verify(&lab, &venv, Some(OTHER), "model", &version),
        "the plugin verifies {version} in {OTHER}"
    );
    assert!(
        run.sigterm(std::time::Duration::from_secs(40)).success(),
        "{}",
        run.log()
    );
}
