//! An ordinary, messy registry (issue 23), every part real: MLflow 3.17.2, devnet, the plugin
//! 0.3.0 beside the service, and both verifiers. The scenarios are set up by
//! `tests/data/mlflow/messy.py`; each phase ends with our `verify`/`audit` and, where the plugin
//! can check it, `ar-io-mlflow verify`:
//!
//! 1. two versions registered from one run, the run registered into a second model, a copied
//!    version — every version has its own witness and verifies; the plugin's shared witness is
//!    the run's first registration's and is never overwritten;
//! 2. a model logged under another name than `model` — the registration commits to its files;
//! 3. a run re-opened after it was anchored — a new proof supersedes the first (both verify);
//! 4. a model deleted and re-created — its new version 1 is anchored, no false "Production →
//!    None" or "alias removed"; a run deleted before its job ran and restored later is anchored;
//! 5. traces: one with no model (skipped, "no model" in coverage), one that failed, one served
//!    by an unregistered model of a run whose other model is registered (not attributed to it);
//! 6. the plugin beside the service: its training, registration, promotions and prediction are
//!    never anchored a second time, also while the service runs;
//! 7. the state dir lost: a backfill on the anchored registry uploads nothing;
//! 8. a model renamed — in-flight and later events follow it, proofs made under the old name
//!    verify as `NEW/V` ("anchored as OLD/V");
//! 9. a prediction's `ario.payload_json` emptied — our verify fails it (the plugin's passes);
//!
//! and a LoggedModel with no run (its files committed and verified), one with no files (not
//! anchored). The same registry goes through the Kafka consumer in the second test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::lab::{last_json_line, Lab};
use common::metrics::settle;
use common::mlflow::venv;
use common::process::{free_port, Proc};
use common::run::{mlflow_data, show, wait_for, worker};
use serde_json::Value;

/// The messy registry's ids and the ways to act on it.
struct Messy<'a> {
    lab: &'a Lab,
    venv: PathBuf,
    suffix: String,
    ids: Value,
}

impl Messy<'_> {
    /// Runs `messy.py ACTION ARGS` with the plugin's environment; returns its JSON line.
    fn act(&self, action: &[&str]) -> Value {
        let mut args = vec![
            self.lab.server.uri.as_str(),
            self.lab.dn.handle.url(),
            self.suffix.as_str(),
        ];
        args.extend(action);
        let env = plugin_env(self.lab);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = self
            .lab
            .server
            .python(&self.venv, &mlflow_data("messy.py"), &args, &env);
        assert!(out.status.success(), "messy.py {action:?}: {}", show(&out));
        last_json_line(&out.stdout)
    }

    fn id(&self, key: &str) -> String {
        self.ids[key]
            .as_str()
            .unwrap_or_else(|| panic!("messy.py printed no {key}: {}", self.ids))
            .to_string()
    }
}

/// What the plugin (and its CLI) needs to reach devnet and sign with the test key.
fn plugin_env(lab: &Lab) -> Vec<(&'static str, String)> {
    common::plugin::lab_env(lab)
}

/// Our verifier's and the plugin's verdicts on one entity.
#[derive(Debug, Clone, PartialEq)]
struct Verdicts {
    ours: bool,
    ours_reason: String,
    plugin: bool,
    plugin_reason: String,
}

fn verdicts(lab: &Lab, venv: &Path, env: &[(&str, String)], kind: &str, target: &str) -> Verdicts {
    let out = worker(env, &["verify", kind, target, "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let ours_reason = ["proof_found", "data_item", "key_binding"]
        .iter()
        .map(|k| &json[k])
        .chain(
            ["signature", "anchored_bytes", "source_of_truth"]
                .iter()
                .map(|k| &json["checks"][k]),
        )
        .find(|c| c["ok"] == Value::Bool(false))
        .map(|c| c["reason"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
    if kind == "tx" {
        // The plugin verifies entities, not bare TXs.
        return Verdicts {
            ours: out.status.success() && json["overall_ok"] == Value::Bool(true),
            ours_reason,
            plugin: false,
            plugin_reason: "n/a (the plugin has no `verify tx`)".into(),
        };
    }
    let p = common::plugin::run(venv, &plugin_env(lab), &["verify", kind, target]);
    let text = String::from_utf8_lossy(&p.stdout).to_string() + &String::from_utf8_lossy(&p.stderr);
    let plugin_reason = text
        .lines()
        .find(|l| {
            l.contains("Record Matches") || l.contains("Not anchored") || l.contains("Could not")
        })
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Verdicts {
        ours: out.status.success() && json["overall_ok"] == Value::Bool(true),
        ours_reason,
        plugin: p.status.success(),
        plugin_reason,
    }
}

/// One line of the verdict table.
fn row(what: &str, v: &Verdicts) -> String {
    format!(
        "{what:<44} ours {:<4} {} | plugin {:<4} {}",
        if v.ours { "PASS" } else { "FAIL" },
        v.ours_reason,
        if v.plugin { "PASS" } else { "FAIL" },
        v.plugin_reason
    )
}

/// The ids of the items devnet holds now.
fn item_ids(lab: &Lab) -> std::collections::BTreeSet<String> {
    lab.dn.handle.items().into_iter().map(|i| i.id).collect()
}

/// The envelopes devnet accepted since `before` (its item ids then).
fn envelopes_since(lab: &Lab, before: &std::collections::BTreeSet<String>) -> Vec<Value> {
    lab.dn
        .handle
        .items()
        .iter()
        .filter(|item| !before.contains(&item.id))
        .map(|item| {
            let bytes =
                std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
            let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
            serde_json::from_slice(&parsed.data).unwrap()
        })
        .collect()
}

/// Every envelope on devnet.
fn envelopes(lab: &Lab) -> Vec<Value> {
    lab.dn
        .handle
        .items()
        .iter()
        .map(|item| {
            let bytes =
                std::fs::read(lab.dn.handle.items_dir().join(format!("{}.bin", item.id))).unwrap();
            let parsed = ario_mlflow_worker::arweave::DataItem::parse(&bytes).unwrap();
            serde_json::from_slice(&parsed.data).unwrap()
        })
        .collect()
}

/// Envelopes of `event_type` about `subject` (matched on the given subject fields).
fn about<'e>(all: &'e [Value], event_type: &str, subject: &[(&str, &str)]) -> Vec<&'e Value> {
    all.iter()
        .filter(|e| {
            e["event_type"] == event_type
                && subject
                    .iter()
                    .all(|(k, v)| e["subject"][*k].as_str() == Some(*v))
        })
        .collect()
}

/// The payload an envelope commits to, read from MLflow's witness (by its hash).
fn tag_of_version(lab: &Lab, name: &str, version: &str, key: &str) -> Option<String> {
    let url = format!(
        "{}/api/2.0/mlflow/model-versions/get?name={name}&version={version}",
        lab.server.uri
    );
    let body = lab
        .rt
        .block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["model_version"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .map(str::to_owned)
}

fn run_artifact(lab: &Lab, run: &str, path: &str) -> Option<Vec<u8>> {
    let url = format!("{}/get-artifact?run_uuid={run}&path={path}", lab.server.uri);
    lab.rt.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.bytes().await.ok().map(|b| b.to_vec())
    })
}

/// The worker as a service with a listener of its own: what the test settles on is its
/// `/metrics` (poll passes, open jobs); stopped with SIGTERM (killed on drop).
struct Service {
    proc: Proc,
    addr: String,
    log: PathBuf,
}

impl Service {
    fn start(env: &[(&str, String)], args: &[&str], log: PathBuf) -> Service {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut env = env.to_vec();
        env.push(("ARIO_MLFLOW_LISTEN", addr.clone()));
        Service {
            proc: Proc::worker(&env, args, &log),
            addr,
            log,
        }
    }

    /// Until the poller has seen everything and nothing is open (`run --source poll` only).
    fn settle(&self) {
        settle(&self.addr, Duration::from_secs(180));
    }

    fn stop(&mut self) {
        self.proc.sigterm(Duration::from_secs(30));
    }
}

fn status(env: &[(&str, String)]) -> Value {
    let out = worker(env, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", show(&out)))
}

/// Sets up the registry (phase 1's entities) and returns it.
fn messy<'a>(lab: &'a Lab, venv: &Path, suffix: &str) -> Messy<'a> {
    let mut m = Messy {
        lab,
        venv: venv.to_path_buf(),
        suffix: suffix.to_string(),
        ids: Value::Null,
    };
    m.ids = m.act(&["setup"]);
    m
}

/// Phase 1's checks, after everything was anchored once (by whichever source).
fn check_first_pass(m: &Messy, env: &[(&str, String)], report: &mut Vec<String>) {
    let lab = m.lab;
    let all = envelopes(lab);
    // 1. Every version of the shared run verifies with ours; the plugin checks the first one
    // (its shared witness), and that witness was never overwritten.
    let two = m.id("two");
    for target in [
        format!("{two}/1"),
        format!("{two}/2"),
        format!("{}/1", m.id("other")),
        format!("{}/1", m.id("copy")),
    ] {
        let v = verdicts(lab, &m.venv, env, "model", &target);
        report.push(row(&format!("1. registration {target}"), &v));
        assert!(v.ours, "ours on {target}: {v:?}");
    }
    let first = verdicts(lab, &m.venv, env, "model", &format!("{two}/1"));
    assert!(
        first.plugin,
        "the plugin verifies the run's first registration: {first:?}"
    );
    let shared = run_artifact(lab, &m.id("two_run"), "ario/registration_payload.json").unwrap();
    assert_eq!(
        Some(ario_mlflow_worker::proof::sha256_hex(&shared)),
        tag_of_version(lab, &two, "1", "ario.payload_hash"),
        "the shared witness is the first registration's"
    );
    // 2. A model not named `model`: its registration commits to its own files.
    let clf = m.id("clf");
    let v = verdicts(lab, &m.venv, env, "model", &format!("{clf}/1"));
    report.push(row(&format!("2. registration {clf}/1"), &v));
    assert!(v.ours, "{v:?}");
    assert_eq!(
        tag_of_version(lab, &clf, "1", "ario.artifact_verified").as_deref(),
        Some("true"),
        "the clf version's files are the trained model's"
    );
    let v = verdicts(lab, &m.venv, env, "run", &m.id("clf_run"));
    report.push(row("2. training of the clf run", &v));
    assert!(v.ours && v.plugin, "{v:?}");
    // 5. Traces.
    let v = verdicts(lab, &m.venv, env, "trace", &m.id("trace_clf"));
    report.push(row("5. trace served by clf/1", &v));
    assert!(v.ours && v.plugin, "{v:?}");
    let unregistered = about(
        &all,
        "prediction",
        &[("trace_id", &m.id("trace_unregistered"))],
    );
    assert_eq!(
        unregistered.len(),
        1,
        "the unregistered model's trace is anchored once"
    );
    assert_eq!(
        unregistered[0]["previous_hash"], "GENESIS",
        "not attributed to the registered version of the same run"
    );
    let v = verdicts(lab, &m.venv, env, "trace", &m.id("trace_unregistered"));
    report.push(row("5. trace served by an unregistered model", &v));
    assert!(v.ours, "{v:?}");
    for key in ["trace_no_model", "trace_error"] {
        assert!(
            about(&all, "prediction", &[("trace_id", &m.id(key))]).is_empty(),
            "{key} is not anchored"
        );
    }
    // 6. The plugin's proofs, once each: ours added none.
    let plugin_run = m.id("plugin_run");
    let plug = m.id("plug");
    assert_eq!(
        about(&all, "training_complete", &[("run_id", &plugin_run)]).len(),
        1
    );
    assert_eq!(
        about(
            &all,
            "model_registered",
            &[("name", &plug), ("version", "1")]
        )
        .len(),
        1
    );
    assert_eq!(
        about(
            &all,
            "stage_transition",
            &[("name", &plug), ("version", "1")]
        )
        .len(),
        1
    );
    assert_eq!(
        about(&all, "prediction", &[("trace_id", &m.id("plugin_trace"))]).len(),
        1
    );
    for (kind, target) in [
        ("run", plugin_run.clone()),
        ("model", format!("{plug}/1")),
        ("trace", m.id("plugin_trace")),
    ] {
        let v = verdicts(lab, &m.venv, env, kind, &target);
        report.push(row(&format!("6. plugin's {kind} {target}"), &v));
        assert!(v.ours && v.plugin, "{v:?}");
    }
    // A LoggedModel with no run: its files committed and verified by ours; none, not anchored.
    let ext = m.id("ext");
    let v = verdicts(lab, &m.venv, env, "model", &format!("{ext}/1"));
    report.push(row(&format!("8. run-less LoggedModel {ext}/1"), &v));
    assert!(v.ours, "{v:?}");
    let app = m.id("app");
    let v = verdicts(lab, &m.venv, env, "model", &format!("{app}/1"));
    report.push(row(&format!("8. external model {app}/1"), &v));
    assert!(v.ours, "{v:?}");
    let gen = m.id("gen");
    assert!(
        about(&all, "model_registered", &[("name", &gen)]).is_empty(),
        "a LoggedModel with no files is not anchored"
    );
    // Nothing twice: one proof per (event type, subject) so far, except the re-created model.
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for e in &all {
        let mut subject = e["subject"].clone();
        if let Some(o) = subject.as_object_mut() {
            o.remove("event_id");
        }
        let stage = if e["event_type"] == "stage_transition" {
            e["signed_at"].to_string()
        } else {
            String::new()
        };
        *per.entry(format!("{} {} {stage}", e["event_type"], subject))
            .or_default() += 1;
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "anchored twice: {twice:?}");
}

#[test]
fn a_messy_registry_is_anchored_right_through_the_poller() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let state = lab.home.path().join("state");
    let env = lab.worker_env(&state);
    let m = messy(&lab, &venv, "poll");
    // Phase 1: everything once. The pair run logged two models: its training proof parks (the
    // plugin's rule), and its registration waits for it only briefly here.
    let out = worker(&env, &["backfill", "--max-dependency-wait", "3"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    let mut report = Vec::new();
    check_first_pass(&m, &env, &mut report);
    let st = status(&env);
    let parked: Vec<&Value> = st["parked"].as_array().unwrap().iter().collect();
    assert!(
        parked.len() == 1
            && parked[0]["job"]
                .as_str()
                .unwrap()
                .contains(&m.id("pair_run"))
            && parked[0]["error"]
                .as_str()
                .unwrap()
                .contains("several models"),
        "only the two-model run parks, with its cause: {parked:?}"
    );
    let out = worker(&env, &["coverage", "--json", "--tags-only"]);
    let coverage: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        coverage["counts"]["prediction"]["no_model"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the trace with no model is its own category: {coverage}"
    );
    assert!(
        !coverage["unproven"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["entity"] == format!("trace/{}", m.id("trace_no_model"))),
        "…and not listed as unproven"
    );

    // 5. A trace whose spans never arrive: waited for, then parked with the reason.
    let spanless = m.act(&["trace-without-spans"])["trace"]
        .as_str()
        .unwrap()
        .to_string();
    // 4. A run deleted between detection and resolution, restored later.
    let late = m.act(&["finished-run", "late"]);
    let late_run = late["run"].as_str().unwrap().to_string();
    {
        let store = ario_mlflow_worker::store::Store::open(&state).unwrap();
        store
            .detect(&ario_mlflow_worker::event::ChangeEvent::run_finished(
                late_run.clone(),
                late["end_time"].as_i64(),
            ))
            .unwrap();
    }
    m.act(&["delete-run", &late_run]);

    // Phase 2, with the service running (and the plugin's grace on): the run re-opened, the
    // model re-created, the model renamed, the plugin promoting beside us.
    let before = item_ids(&lab);
    let mut service = Service::start(
        &env,
        &[
            "run",
            "--poll-interval",
            "1",
            "--plugin-grace",
            "20",
            "--max-dependency-wait",
            "30",
            "--max-trace-wait",
            "5",
        ],
        lab.home.path().join("run.log"),
    );
    let log = service.log.clone();
    let resumed = m.id("resumed_run");
    let first_training = tag_of_run(&lab, &resumed, "ario.training_tx").unwrap();
    m.act(&["resume", &resumed]);
    let re = m.id("re");
    m.act(&["recreate", &re]);
    let renamed = format!("messy-renamed-{}", m.suffix);
    m.act(&["rename", &m.id("ren"), &renamed]);
    let plug = m.id("plug");
    m.act(&["plugin-promote", &plug, "1", "Production"]);
    std::thread::sleep(Duration::from_secs(3));
    m.act(&["restore-run", &late_run]);
    wait_for(
        "phase 2 anchored",
        Duration::from_secs(180),
        Duration::from_millis(500),
        &[&log],
        || {
            tag_of_run(&lab, &resumed, "ario.training_tx").is_some_and(|t| t != first_training)
                && tag_of_version(&lab, &re, "1", "ario.registration_tx").is_some()
                && tag_of_version(&lab, &renamed, "2", "ario.alias_tx.live").is_some()
                && tag_of_run(&lab, &late_run, "ario.training_tx").is_some()
        },
    );
    // Nothing else is due: the plugin's grace has passed and the poller has seen it all.
    service.settle();
    service.stop();
    let new = &envelopes_since(&lab, &before);
    println!("phase 2 anchored {} proofs", new.len());
    // 3. The re-opened run: a new proof of its final state; the first one superseded.
    let v = verdicts(&lab, &venv, &env, "run", &resumed);
    report.push(row("3. re-opened run (newest proof)", &v));
    assert!(v.ours && v.plugin, "{v:?}");
    let v = verdicts(&lab, &venv, &env, "tx", &first_training);
    report.push(row("3. re-opened run (first proof, superseded)", &v));
    assert!(v.ours, "the superseded proof still verifies: {v:?}");
    let out = worker(&env, &["audit", &format!("{}/1", m.id("resumed_model"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("(superseded)"),
        "the audit lists the earlier proof as superseded, not failed: {}",
        show(&out)
    );
    let parked = status(&env)["parked"].as_array().unwrap().clone();
    assert!(
        parked
            .iter()
            .any(|p| p["job"] == format!("trace/{spanless}")
                && p["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("have not arrived")),
        "the span-less trace is parked with its reason: {parked:?}"
    );
    // 4. Re-created: the new version 1 anchored, no false events for the old one.
    let v = verdicts(&lab, &venv, &env, "model", &format!("{re}/1"));
    report.push(row(&format!("4. re-created {re}/1"), &v));
    assert!(v.ours && v.plugin, "{v:?}");
    let false_events: Vec<&Value> = new
        .iter()
        .filter(|e| {
            e["subject"]["name"] == re.as_str()
                && (e["event_type"] == "stage_transition" || e["event_type"] == "alias_changed")
        })
        .collect();
    assert!(
        false_events.is_empty(),
        "no false Production → None or alias removal for the deleted model: {false_events:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let v = verdicts(&lab, &venv, &env, "run", &late_run);
    report.push(row("4. run deleted, then restored", &v));
    assert!(v.ours && v.plugin, "{v:?}");
    // 6. The plugin's promotion while the service ran: once, by the plugin.
    assert_eq!(
        about(new, "stage_transition", &[("name", &plug)]).len(),
        1,
        "the plugin's Staging → Production anchored once (by the plugin)"
    );
    // 8. Renamed: one rename proof; v1's proofs (under the old name) verify as the new name;
    // v2's events anchored once; no stage or alias proof of v1 made again.
    assert_eq!(about(new, "model_renamed", &[("name", &renamed)]).len(), 1);
    for version in ["1", "2"] {
        let v = verdicts(&lab, &venv, &env, "model", &format!("{renamed}/{version}"));
        report.push(row(&format!("8. renamed {renamed}/{version}"), &v));
        assert!(v.ours, "{v:?}");
    }
    let out = worker(&env, &["verify", "model", &format!("{renamed}/1")]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("anchored as {}/1", m.id("ren"))),
        "{}",
        show(&out)
    );
    let out = worker(&env, &["audit", &format!("{renamed}/1")]);
    assert!(
        out.status.success(),
        "audit of the renamed version: {}",
        show(&out)
    );
    assert!(
        !new.iter().any(|e| e["subject"]["version"] == "1"
            && (e["subject"]["name"] == renamed.as_str()
                || e["subject"]["name"] == m.id("ren").as_str())
            && e["event_type"] != "model_renamed"),
        "nothing of version 1 anchored again after the rename"
    );

    // 7. The state dir lost: nothing is uploaded again (the span-less trace, logged longer ago
    // than --max-trace-wait, is parked at once, not waited for again).
    std::fs::remove_dir_all(&state).unwrap();
    let before = item_ids(&lab);
    let out = worker(
        &env,
        &[
            "backfill",
            "--max-dependency-wait",
            "3",
            "--max-trace-wait",
            "5",
        ],
    );
    assert!(out.status.success(), "backfill: {}", show(&out));
    let again: Vec<String> = envelopes_since(&lab, &before)
        .iter()
        .map(|e| format!("{} {}", e["event_type"], e["subject"]))
        .collect();
    assert!(again.is_empty(), "a lost store re-uploaded: {again:?}");
    report.push(format!(
        "7. state dir lost, backfill again: {} uploads",
        again.len()
    ));

    // 9. A prediction's live record emptied: ours fails it (the plugin overlays no keys).
    let trace = m.id("trace_clf");
    let original = trace_tag(&lab, &trace, "ario.payload_json").unwrap();
    m.act(&["set-trace-tag", &trace, "ario.payload_json", "{}"]);
    let v = verdicts(&lab, &venv, &env, "trace", &trace);
    report.push(row("9. ario.payload_json emptied", &v));
    assert!(
        !v.ours && v.ours_reason.contains("live_mlflow_mismatch"),
        "{v:?}"
    );
    m.act(&["set-trace-tag", &trace, "ario.payload_json", &original]);
    let v = verdicts(&lab, &venv, &env, "trace", &trace);
    assert!(v.ours, "restored: {v:?}");
    println!("verdicts (ours | the plugin's):\n  {}", report.join("\n  "));
    common::oracle::check_items(lab.dn.handle.items_dir());
}

fn tag_of_run(lab: &Lab, run: &str, key: &str) -> Option<String> {
    let url = format!("{}/api/2.0/mlflow/runs/get?run_id={run}", lab.server.uri);
    let body = lab
        .rt
        .block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["run"]["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
        .map(str::to_owned)
}

fn trace_tag(lab: &Lab, trace: &str, key: &str) -> Option<String> {
    let url = format!("{}/api/3.0/mlflow/traces/{trace}", lab.server.uri);
    let body = lab
        .rt
        .block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })?;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["trace"]["trace_info"]["tags"][key]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn a_messy_registry_is_anchored_right_through_the_kafka_consumer() {
    let Some(venv) = venv() else { return };
    let lab = Lab::start(&venv);
    let broker = common::kafka::start();
    let topic = "messy-events";
    broker.create_topic(topic, 3, &[]);
    let with_broker = |state: &str| {
        let mut env = lab.worker_env(&lab.home.path().join(state));
        env.push(("ARIO_MLFLOW_KAFKA_BROKERS", broker.bootstrap.clone()));
        env
    };
    let feed_env = with_broker("feed-state");
    let env = with_broker("consumer-state");
    let m = messy(&lab, &venv, "kafka");
    // The feed (the poller as a producer) and one member of the anchoring group.
    let feed = Service::start(
        &feed_env,
        &["feed", "--to-kafka", topic, "--poll-interval", "1"],
        lab.home.path().join("feed.log"),
    );
    let mut consumer = Service::start(
        &env,
        &[
            "run",
            "--source",
            "kafka",
            "--kafka-topic",
            topic,
            "--max-dependency-wait",
            "5",
        ],
        lab.home.path().join("consumer.log"),
    );
    let logs = [feed.log.clone(), consumer.log.clone()];
    let logs: Vec<&Path> = logs.iter().map(PathBuf::as_path).collect();
    let ext = m.id("ext");
    let pair = m.id("pair");
    wait_for(
        "phase 1 anchored through Kafka",
        Duration::from_secs(240),
        Duration::from_millis(500),
        &logs,
        || {
            [
                (m.id("two"), "2"),
                (m.id("copy"), "1"),
                (ext.clone(), "1"),
                (pair.clone(), "1"),
            ]
            .iter()
            .all(|(n, v)| tag_of_version(&lab, n, v, "ario.registration_tx").is_some())
                && trace_tag(&lab, &m.id("trace_unregistered"), "ario.prediction_tx").is_some()
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    let mut report = Vec::new();
    check_first_pass(&m, &env, &mut report);

    // Phase 2: re-opened, re-created, renamed — through the feed and the consumer.
    let before = item_ids(&lab);
    let resumed = m.id("resumed_run");
    let first_training = tag_of_run(&lab, &resumed, "ario.training_tx").unwrap();
    m.act(&["resume", &resumed]);
    let re = m.id("re");
    m.act(&["recreate", &re]);
    let renamed = format!("messy-renamed-{}", m.suffix);
    m.act(&["rename", &m.id("ren"), &renamed]);
    wait_for(
        "phase 2 anchored through Kafka",
        Duration::from_secs(180),
        Duration::from_millis(500),
        &logs,
        || {
            tag_of_run(&lab, &resumed, "ario.training_tx").is_some_and(|t| t != first_training)
                && tag_of_version(&lab, &re, "1", "ario.registration_tx").is_some()
                && tag_of_version(&lab, &renamed, "2", "ario.alias_tx.live").is_some()
        },
    );
    std::thread::sleep(Duration::from_secs(5));
    consumer.stop();
    let new = &envelopes_since(&lab, &before);
    for (kind, target, what) in [
        ("run", resumed.clone(), "3. re-opened run"),
        ("tx", first_training.clone(), "3. its superseded proof"),
        ("model", format!("{re}/1"), "4. re-created version 1"),
        (
            "model",
            format!("{renamed}/1"),
            "8. renamed, proofs under the old name",
        ),
        ("model", format!("{renamed}/2"), "8. renamed, version 2"),
    ] {
        let v = verdicts(&lab, &venv, &env, kind, &target);
        report.push(row(&format!("kafka {what}"), &v));
        assert!(v.ours, "{what}: {v:?}");
    }
    assert!(
        !new.iter().any(|e| e["subject"]["name"] == re.as_str()
            && (e["event_type"] == "stage_transition" || e["event_type"] == "alias_changed")),
        "no false events for the deleted model"
    );
    assert_eq!(about(new, "model_renamed", &[("name", &renamed)]).len(), 1);
    assert!(
        !new.iter().any(|e| e["subject"]["version"] == "1"
            && (e["subject"]["name"] == renamed.as_str()
                || e["subject"]["name"] == m.id("ren").as_str())
            && e["event_type"] != "model_renamed"),
        "nothing of version 1 anchored again after the rename"
    );
    println!("verdicts (ours | the plugin's):\n  {}", report.join("\n  "));
}
