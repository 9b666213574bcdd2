//! Predictions at volume against a real MLflow 3.17 and devnet: served-model traces made with
//! MLflow's client (`set_active_model` + `@mlflow.trace`), anchored by `backfill` / `run`.
//!
//! * per trace: 200 traces over 2 versions, each anchored once, ≤ 5 MLflow calls per trace by
//!   the worker's own counter with `--prediction-tags minimal`; the plugin's `verify trace`
//!   passes on samples in `minimal` and in `full` mode;
//! * batched: 1,000 traces of one version with `--checkpoint-size 256` → exactly 4 checkpoints
//!   (3 full, 1 by interval), every trace in exactly one, each provable alone (`verify trace`);
//!   a tampered trace output fails naming its leaf; the plugin says "not anchored"; 500 more
//!   traces with the worker SIGKILLed 5 times while it seals → still every trace in exactly one
//!   checkpoint and the version's checkpoint chain linear.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{last_json_line, Lab};
use common::mlflow::venv;
use common::process::Proc;
use common::run::{mlflow_data, show, worker};
use serde_json::Value;

fn predictions(lab: &Lab, venv: &Path, args: &[&str]) -> Value {
    let out = lab
        .server
        .python(venv, &mlflow_data("predictions.py"), args, &[]);
    assert!(
        out.status.success(),
        "predictions.py {args:?}: {}",
        show(&out)
    );
    last_json_line(&out.stdout)
}

fn env_of(lab: &Lab, state: &Path) -> Vec<(&'static str, String)> {
    let mut env = lab.worker_env(state);
    env.extend([
        ("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()),
        ("ARIO_MLFLOW_LISTEN", "127.0.0.1:0".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ]);
    env
}

/// The plugin's CLI with the lab's trust and keys.
fn plugin(lab: &Lab, venv: &Path, args: &[&str]) -> std::process::Output {
    common::plugin::run(venv, &common::plugin::lab_env(lab), args)
}

/// MLflow calls the backfill's last progress line reports.
fn calls_reported(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rfind(|l| l.contains("MLflow calls"))
        .expect("a progress line");
    line.trim_end_matches(" MLflow calls")
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a call count")
}

fn trace_tags(lab: &Lab, trace_id: &str) -> BTreeMap<String, String> {
    let mlflow = ario_mlflow_worker::mlflow::MlflowClient::new(
        ario_mlflow_worker::mlflow::MlflowConfig::new(lab.server.uri.parse().unwrap()),
    )
    .unwrap();
    let mut last = None;
    for _ in 0..5 {
        match lab.rt.block_on(mlflow.get_trace_info(trace_id)) {
            Ok(info) => return info.tags,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("trace {trace_id}: {last:?}")
}

/// Every checkpoint batch document under the artifact store.
fn batch_documents(root: &Path) -> Vec<Value> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.parent().and_then(|d| d.file_name()) == Some("checkpoints".as_ref()) {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    // A document being written (MLflow's proxy streams it to disk) is skipped until complete.
    files
        .iter()
        .filter_map(|f| serde_json::from_slice(&std::fs::read(f).ok()?).ok())
        .collect()
}

#[test]
fn per_trace_predictions_need_at_most_five_mlflow_calls_and_verify_with_the_plugin() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let seed = predictions(&lab, &venv, &[&lab.server.uri, "seed", "pt", "2"]);
    let name = seed["model_name"].as_str().unwrap().to_string();
    let ids: Vec<&str> = seed["model_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let models_env = env_of(&lab, &lab.home.path().join("state-models"));
    let out = worker(&models_env, &["backfill", "--model", &name]);
    assert!(out.status.success(), "backfill models: {}", show(&out));
    let before = lab.dn.handle.items().len();

    let traces = predictions(
        &lab,
        &venv,
        &[&lab.server.uri, "traces", "minimal", &ids.join(","), "100"],
    );
    let exp = traces["experiment_id"].as_str().unwrap().to_string();
    let trace_ids: Vec<String> = traces["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(trace_ids.len(), 200);
    let env = env_of(&lab, &lab.home.path().join("state-minimal"));
    let started = Instant::now();
    let out = worker(&env, &["backfill", "--experiment", &exp]);
    let secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "backfill traces: {}", show(&out));
    let calls = calls_reported(&out);
    let per_trace = calls as f64 / 200.0;
    println!(
        "minimal: 200 predictions in {secs:.1} s ({:.1}/s), {calls} MLflow calls = {per_trace:.2} per prediction",
        200.0 / secs
    );
    assert!(per_trace <= 5.0, "{per_trace} MLflow calls per prediction");
    assert_eq!(
        lab.dn.handle.items().len() - before,
        200,
        "one upload per trace"
    );
    let mut txs = BTreeSet::new();
    for t in &trace_ids {
        let tags = trace_tags(&lab, t);
        txs.insert(tags["ario.prediction_tx"].clone());
        assert!(tags.contains_key("ario.payload_json"));
        assert!(
            !tags.contains_key("ario.decision_id"),
            "minimal mode writes no mirror tags"
        );
    }
    assert_eq!(txs.len(), 200, "every trace anchored once, each its own TX");
    for t in [&trace_ids[0], &trace_ids[99], &trace_ids[150]] {
        let out = plugin(&lab, &venv, &["verify", "trace", t]);
        assert!(
            out.status.success(),
            "plugin verify trace {t}: {}",
            show(&out)
        );
        let ours = worker(&env, &["verify", "trace", t]);
        assert!(ours.status.success(), "verify trace {t}: {}", show(&ours));
    }
    // Again: nothing new.
    let again = worker(&env, &["backfill", "--experiment", &exp]);
    assert!(again.status.success());
    assert_eq!(lab.dn.handle.items().len() - before, 200);

    // Full mode: the plugin's mirror tags, and the plugin still verifies.
    let full = predictions(
        &lab,
        &venv,
        &[&lab.server.uri, "traces", "full", ids[1], "10"],
    );
    let exp = full["experiment_id"].as_str().unwrap().to_string();
    let env = env_of(&lab, &lab.home.path().join("state-full"));
    let out = worker(
        &env,
        &[
            "backfill",
            "--experiment",
            &exp,
            "--prediction-tags",
            "full",
        ],
    );
    assert!(out.status.success(), "backfill full: {}", show(&out));
    let per_trace = calls_reported(&out) as f64 / 10.0;
    println!("full: {per_trace:.1} MLflow calls per prediction");
    let t = full["traces"][3].as_str().unwrap();
    let tags = trace_tags(&lab, t);
    assert_eq!(tags["ario.decision_id"], t);
    assert_eq!(tags["ario.model_name"], name);
    assert_eq!(tags["ario.model_version"], "2");
    assert_eq!(tags["ario.proof_status"], "anchored");
    let out = plugin(&lab, &venv, &["verify", "trace", t]);
    assert!(
        out.status.success(),
        "plugin verify trace (full): {}",
        show(&out)
    );
}

#[test]
fn batched_predictions_seal_one_checkpoint_per_256_and_survive_sigkill() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let seed = predictions(&lab, &venv, &[&lab.server.uri, "seed", "bt", "1"]);
    let name = seed["model_name"].as_str().unwrap().to_string();
    let model_id = seed["model_ids"][0].as_str().unwrap().to_string();
    let models_env = env_of(&lab, &lab.home.path().join("state-models"));
    let out = worker(&models_env, &["backfill", "--model", &name]);
    assert!(out.status.success(), "backfill models: {}", show(&out));
    let registration_tx = {
        let mlflow = ario_mlflow_worker::mlflow::MlflowClient::new(
            ario_mlflow_worker::mlflow::MlflowConfig::new(lab.server.uri.parse().unwrap()),
        )
        .unwrap();
        let mv = lab
            .rt
            .block_on(mlflow.get_model_version(&name, "1"))
            .unwrap();
        mv.tag("ario.registration_tx").unwrap().to_string()
    };
    let before = lab.dn.handle.items().len();

    let made = Instant::now();
    let traces = predictions(
        &lab,
        &venv,
        &[&lab.server.uri, "traces", "batched", &model_id, "1000"],
    );
    println!("1000 traces made in {:.1} s", made.elapsed().as_secs_f64());
    let exp = traces["experiment_id"].as_str().unwrap().to_string();
    let trace_ids: Vec<String> = traces["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let state = lab.home.path().join("state-batched");
    let env = env_of(&lab, &state);
    let bin = env!("CARGO_BIN_EXE_ario-mlflow-worker");
    let spawn = || {
        let mut cmd = Command::new(bin);
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.args([
            "run",
            "--experiment",
            &exp,
            "--predictions",
            "batched",
            "--checkpoint-size",
            "256",
            "--checkpoint-interval",
            "4",
            "--poll-interval",
            "1",
        ]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info");
        let log = std::fs::File::create(lab.home.path().join("run-1000.log")).unwrap();
        Proc::new(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap())
    };
    let log_tail = |name: &str| {
        let text = std::fs::read_to_string(lab.home.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let tagged = |ids: &[String]| {
        ids.iter()
            .filter(|t| trace_tags(&lab, t).contains_key("ario.checkpoint_tx"))
            .count()
    };
    let started = Instant::now();
    let w = spawn();
    let deadline = Instant::now() + Duration::from_secs(180);
    let leaves = |docs: &[Value]| -> usize {
        docs.iter()
            .map(|d| d["leaves"].as_array().map_or(0, Vec::len))
            .sum()
    };
    while leaves(&batch_documents(&lab.server.artifact_dir())) < trace_ids.len()
        || lab.dn.handle.items().len() - before < 4
        || tagged(&trace_ids[trace_ids.len() - 1..]) == 0
    {
        if Instant::now() > deadline {
            let mlflow = ario_mlflow_worker::mlflow::MlflowClient::new(
                ario_mlflow_worker::mlflow::MlflowConfig::new(lab.server.uri.parse().unwrap()),
            )
            .unwrap();
            for filter in ["", "trace.status = 'OK'"] {
                let found = lab
                    .rt
                    .block_on(mlflow.search_traces(std::slice::from_ref(&exp), filter))
                    .unwrap();
                println!("search {filter:?}: {} traces", found.len());
            }
            let missing: Vec<&String> = trace_ids
                .iter()
                .filter(|t| {
                    !batch_documents(&lab.server.artifact_dir())
                        .iter()
                        .any(|d| d.to_string().contains(t.as_str()))
                })
                .take(3)
                .collect();
            for m in missing {
                let info = lab.rt.block_on(mlflow.get_trace_info(m));
                println!("not sealed: {m}: {info:?}");
            }
            panic!(
                "checkpoints not anchored in time: {}",
                log_tail("run-1000.log")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The last trace tags of the checkpoints' step 2 land at about the same time.
    common::run::wait_for(
        "every trace tagged with its checkpoint",
        Duration::from_secs(60),
        Duration::from_millis(200),
        &[],
        || tagged(&trace_ids) == trace_ids.len(),
    );
    let secs = started.elapsed().as_secs_f64();
    drop(w);
    assert_eq!(
        tagged(&trace_ids),
        trace_ids.len(),
        "every trace tagged with its checkpoint"
    );
    let docs = batch_documents(&lab.server.artifact_dir());
    let mut sizes: Vec<usize> = docs
        .iter()
        .map(|d| d["leaves"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    println!(
        "batched: 1000 predictions → {} checkpoints {sizes:?} in {secs:.1} s (with the poll and the 4 s interval), {} uploads",
        docs.len(),
        lab.dn.handle.items().len() - before
    );
    assert_eq!(
        sizes,
        [232, 256, 256, 256],
        "3 full checkpoints and 1 by interval"
    );
    // Every one of the 1,000 proves its inclusion: the envelope's signature, the record bytes
    // against its payload_hash, the leaf's payload → leaf hash → audit path → merkle_root.
    let mut proven = 0;
    for d in &docs {
        let doc: ario_mlflow_worker::profile::checkpoint::BatchDocument =
            serde_json::from_value(d.clone()).unwrap();
        assert!(ario_mlflow_worker::proof::verify_envelope(&doc.envelope, None).signature_valid);
        let signed = doc.envelope["payload_hash"].as_str().unwrap();
        for leaf in &doc.leaves {
            ario_mlflow_worker::profile::checkpoint::check_inclusion(&doc, signed, &leaf.trace_id)
                .unwrap_or_else(|e| panic!("{}: {e}", leaf.trace_id));
            proven += 1;
        }
    }
    assert_eq!(proven, 1000, "every trace proven by inclusion");
    assert_eq!(
        lab.dn.handle.items().len() - before,
        4,
        "one upload per checkpoint"
    );

    // Provable alone: payload → leaf → path → signed root → TX; the plugin cannot know it.
    for t in [&trace_ids[0], &trace_ids[511], &trace_ids[999]] {
        let out = worker(&env, &["verify", "trace", t, "--json"]);
        assert!(out.status.success(), "verify trace {t}: {}", show(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["overall_ok"], true);
        assert!(v["checks"]["anchored_bytes"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("leaf "));
        let p = plugin(&lab, &venv, &["verify", "trace", t]);
        assert!(!p.status.success());
        assert!(
            String::from_utf8_lossy(&p.stdout).contains("no ario.prediction_tx tag found"),
            "the plugin's answer on a checkpointed trace: {}",
            show(&p)
        );
    }
    // A tampered output (the span's stored content changed in MLflow's database).
    let victim = &trace_ids[300];
    let tamper = lab.server.python(
        &venv,
        &mlflow_data("predictions.py"),
        &[
            &lab.server.uri,
            "tamper",
            &lab.server.db_path().display().to_string(),
            victim,
        ],
        &[],
    );
    assert!(tamper.status.success(), "tamper: {}", show(&tamper));
    let out = worker(&env, &["verify", "trace", victim, "--json"]);
    assert!(!out.status.success(), "a tampered trace verified");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reason = v["checks"]["source_of_truth"]["reason"].as_str().unwrap();
    println!("tampered trace: {reason}");
    let leaf = v["checks"]["anchored_bytes"]["detail"]["leaf_index"]
        .as_u64()
        .unwrap();
    assert!(
        reason.starts_with(&format!("leaf {leaf}:")) && reason.contains("output"),
        "{reason}"
    );

    // 500 more traces; the worker SIGKILLed 5 times while it batches and seals.
    let more = predictions(
        &lab,
        &venv,
        &[&lab.server.uri, "traces", "batched", &model_id, "500"],
    );
    let more_ids: Vec<String> = more["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let env2: Vec<(&str, String)> = env.clone();
    let spawn_more = |log: &str| {
        let mut cmd = Command::new(bin);
        // Every run of the test venv carries the plugin's `ario.enabled`: no grace needed.
        cmd.env("ARIO_MLFLOW_PLUGIN_GRACE", "0");
        cmd.args([
            "run",
            "--experiment",
            more["experiment_id"].as_str().unwrap(),
            "--predictions",
            "batched",
            "--checkpoint-size",
            "64",
            "--checkpoint-interval",
            "2",
            "--poll-interval",
            "0.5",
        ]);
        for (k, v) in &env2 {
            cmd.env(k, v);
        }
        cmd.env("RUST_LOG", "info");
        let log = std::fs::File::create(lab.home.path().join(log)).unwrap();
        Proc::new(cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap())
    };
    // Each process is killed just after it sealed (or, with nothing left to seal, published)
    // its first checkpoint: mid-sealing, mid-publishing.
    let mut mid_stream = 0;
    for kill in 0..5u64 {
        let name = format!("run-kill-{kill}.log");
        let mut w = spawn_more(&name);
        let log = lab.home.path().join(&name);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(" sealed ") || text.contains("anchored job=checkpoint/") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(40 * kill));
        w.kill9();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let sealed = text.matches(" sealed ").count();
        let published = text.matches("anchored job=checkpoint/").count();
        println!("SIGKILL {kill}: that process had sealed {sealed} checkpoints and published {published}");
        if sealed > published {
            mid_stream += 1;
        }
    }
    println!("{mid_stream} of 5 SIGKILLs hit with sealed checkpoints not yet published");
    let w = spawn_more("run-more.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    while leaves(&batch_documents(&lab.server.artifact_dir())) < trace_ids.len() + more_ids.len()
        || tagged(&more_ids[more_ids.len() - 1..]) == 0
    {
        assert!(
            Instant::now() < deadline,
            "not every trace sealed after the kills"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    common::run::wait_for(
        "every trace tagged after the kills",
        Duration::from_secs(60),
        Duration::from_millis(200),
        &[],
        || tagged(&more_ids) == more_ids.len(),
    );
    drop(w);
    assert_eq!(
        tagged(&more_ids),
        more_ids.len(),
        "every trace tagged after the kills"
    );
    let docs = batch_documents(&lab.server.artifact_dir());
    assert_eq!(
        docs.len(),
        lab.dn.handle.items().len() - before,
        "every checkpoint uploaded has its batch document"
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for d in &docs {
        for l in d["leaves"].as_array().unwrap() {
            *seen
                .entry(l["trace_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let all: BTreeSet<&String> = trace_ids.iter().chain(&more_ids).collect();
    assert_eq!(seen.len(), all.len(), "every trace in a checkpoint");
    assert!(seen.values().all(|n| *n == 1), "a trace in two checkpoints");
    assert!(seen.keys().all(|k| all.contains(k)));
    // The checkpoint chain of the version is linear: one first (GENESIS, on the registration
    // TX), every other's previous_hash is exactly one checkpoint's record hash.
    let mut by_hash: BTreeMap<String, (String, String)> = BTreeMap::new();
    for d in &docs {
        let bytes = hex::decode(d["record_bytes"].as_str().unwrap()).unwrap();
        let record: Value = serde_json::from_slice(&bytes).unwrap();
        let hash = ario_mlflow_worker::proof::sha256_hex(&bytes);
        by_hash.insert(
            hash,
            (
                record["previous_hash"].as_str().unwrap().to_string(),
                record["metadata"]["previous_tx"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
        );
    }
    let firsts: Vec<_> = by_hash.values().filter(|(p, _)| p == "GENESIS").collect();
    assert_eq!(firsts.len(), 1, "one first checkpoint");
    assert_eq!(
        firsts[0].1, registration_tx,
        "the first links the registration TX"
    );
    let mut successors: BTreeMap<&String, usize> = BTreeMap::new();
    for (prev, _) in by_hash.values().filter(|(p, _)| p != "GENESIS") {
        assert!(
            by_hash.contains_key(prev),
            "a checkpoint chained to nothing"
        );
        *successors.entry(prev).or_default() += 1;
    }
    assert!(
        successors.values().all(|n| *n == 1),
        "a fork in the checkpoint chain"
    );
    println!(
        "after 5 SIGKILLs: {} checkpoints, {} traces each in exactly one, chain linear",
        docs.len(),
        seen.len()
    );
    let uploads = lab.dn.handle.items().len() - before;
    assert_eq!(uploads, docs.len(), "one upload per checkpoint");

    // The audit shows the version's checkpoints and their chain.
    let out = worker(&env, &["audit", &format!("{name}/1"), "--format", "json"]);
    let audit: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("audit JSON: {e}: {}", show(&out)));
    assert_eq!(
        audit["checkpoints"]["count"],
        docs.len(),
        "{}",
        audit["checkpoints"]
    );
    assert_eq!(audit["checkpoints"]["predictions"], 1500);
    assert_eq!(audit["checkpoints"]["chain"], "linear");
    let stages = audit["stages"].as_array().unwrap();
    let checkpoint_stages = stages.iter().filter(|s| s["stage"] == "checkpoint").count();
    assert_eq!(checkpoint_stages, docs.len());
    assert!(
        stages
            .iter()
            .filter(|s| s["stage"] == "checkpoint")
            .all(|s| s["ok"] == true),
        "{stages:#?}"
    );
    let text = worker(&env, &["audit", &format!("{name}/1")]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains("Merkle checkpoints hold 1500 predictions; their chain is linear"),
        "{text}"
    );
}

#[test]
fn on_mlflow_2_the_worker_says_once_that_there_are_no_traces_and_anchors_the_rest() {
    let Some(venv2) = common::mlflow::venv_mlflow2() else {
        return;
    };
    let lab = Lab::start(&venv2);
    let out = lab.server.python(
        &venv2,
        &mlflow_data("mlflow2_seed.py"),
        &[&lab.server.uri],
        &[],
    );
    assert!(out.status.success(), "mlflow2_seed.py: {}", show(&out));
    let ids = last_json_line(&out.stdout);
    assert!(ids["mlflow"].as_str().unwrap().starts_with("2."), "{ids}");
    let state = lab.home.path().join("state");
    let env = env_of(&lab, &state);
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill on MLflow 2: {}", show(&out));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        log.matches("no v3 traces API").count(),
        1,
        "said exactly once: {log}"
    );
    assert!(!log.contains("query failed"), "{log}");
    let status = worker(&env, &["status", "--json"]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let counts = &status["counts"];
    println!("MLflow {}: {counts}", ids["mlflow"]);
    assert_eq!(
        counts["training_complete"]["done"], 2,
        "both runs: {counts}"
    );
    assert_eq!(counts["model_registered"]["done"], 1, "{counts}");
    assert!(counts.get("prediction").is_none(), "{counts}");
}
