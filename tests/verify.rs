//! The auditor's commands against a real MLflow and devnet over TLS: proofs made by the plugin
//! and by our worker verify with `verify run|model|trace|tx` and `audit`; the tampering matrix
//! of the verify issue fails each case for the right reason; the HTML report renders in
//! headless Chromium.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ario_mlflow_worker::anchor::sign::{envelope_item, sign_event};
use ario_mlflow_worker::arweave::Wallet;
use ario_mlflow_worker::keys::{EnvelopeKey, KeySource};
use ario_mlflow_worker::mlflow::{MlflowClient, MlflowConfig};
use ario_mlflow_worker::proof::envelope::sign_envelope;
use base64::Engine;
use common::devnet::*;
use common::lab::{last_json_line, scenario, Lab, SEED_B64};
use common::mlflow::{venv, MlflowServer};
use common::run::{mlflow_data as data, show, worker};
use serde_json::{json, Value};

/// Runs a `--json` verify and returns (exit code, verdict).
fn verify_json(env: &[(&str, String)], args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let out = worker(env, &all);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", show(&out)));
    (out.status.code().unwrap_or(-1), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    match name {
        "proof_found" | "data_item" | "key_binding" => &v[name],
        _ => &v["checks"][name],
    }
}

fn sqlite(db: &Path, sql: &str, arg: &str) {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2], (sys.argv[3],)); c.commit()",
        ])
        .arg(db)
        .arg(sql)
        .arg(arg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

/// The plugin's environment: devnet's CA, the test key (so its key files are not rotated).
fn plugin_env(
    server: &MlflowServer,
    ca: &Path,
    home: &Path,
    gateway: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("REQUESTS_CA_BUNDLE", ca.display().to_string()),
        ("ARIO_MLFLOW_SIGNING_KEY", SEED_B64.to_string()),
        ("HOME", home.display().to_string()),
        ("ARIO_MLFLOW_GATEWAYS", gateway.to_string()),
        ("ARIO_MLFLOW_GATEWAY_HOST", gateway.to_string()),
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
    ]
}

#[test]
fn verify_and_audit_pass_for_honest_proofs_and_fail_each_tampering_for_its_reason() {
    let Some(venv) = venv() else { return };
    let Lab {
        server,
        rt,
        dn,
        home,
        ca,
        gateway,
    } = Lab::start(&venv);

    let ids = scenario(&server, &venv, "vfy");
    let s = |k: &str| ids[k].as_str().unwrap().to_string();
    let (parity_run, run, model, trace) = (s("parity_run"), s("run"), s("model_name"), s("trace"));
    let mv = format!("{model}/1");

    // The plugin anchors one run itself (its proof, its bytes); our worker anchors the rest.
    let plugin_env = plugin_env(&server, &ca, home.path(), &gateway);
    let plugin_env_ref: Vec<(&str, &str)> =
        plugin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = server.python(
        &venv,
        &data("plugin_anchor.py"),
        &[&server.uri, &parity_run, dn.handle.url()],
        &plugin_env_ref,
    );
    assert!(out.status.success(), "plugin anchor(): {}", show(&out));

    let mut env = common::lab::anchoring_env(
        &server.uri,
        &dn,
        &ca,
        &gateway,
        home.path(),
        &home.path().join("state"),
    );
    env.push(("ARIO_MLFLOW_GATEWAYS", gateway.clone()));
    let out = worker(&env, &["backfill"]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    let key: Value =
        serde_json::from_slice(&worker(&env, &["keys", "show", "--json"]).stdout).unwrap();
    let pubkey = key["public_key"].as_str().unwrap().to_string();
    let pinned = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--trusted-key", pubkey.as_str()]);
        verify_json(&env, &a)
    };

    // 1. Honest proofs pass: ours and the plugin's, with the key pinned and the chains walked.
    for (args, what) in [
        (
            vec!["verify", "run", run.as_str(), "--chain"],
            "our training",
        ),
        (
            vec!["verify", "run", parity_run.as_str(), "--chain"],
            "the plugin's training",
        ),
        (
            vec!["verify", "model", mv.as_str(), "--chain"],
            "our registration",
        ),
        (
            vec!["verify", "trace", trace.as_str(), "--chain"],
            "our prediction",
        ),
    ] {
        let (code, v) = pinned(&args);
        assert_eq!(code, 0, "{what} must pass: {v:#}");
        assert_eq!(v["overall_ok"], true);
        assert_eq!(check(&v, "data_item")["ok"], true, "{what}: {v:#}");
        assert_eq!(check(&v, "key_binding")["ok"], true);
        assert_eq!(
            v["chain"]["reached_genesis"], true,
            "{what}: {:#}",
            v["chain"]
        );
        println!(
            "verify {what}: PASS ({} predecessors to GENESIS), record: {}",
            v["chain"]["links"].as_array().unwrap().len(),
            check(&v, "source_of_truth")["reason"]
        );
    }
    let mlflow = MlflowClient::new(MlflowConfig::new(server.uri.parse().unwrap())).unwrap();
    let run_now = rt.block_on(mlflow.get_run(&run)).unwrap();
    let training_tx = run_now.tag("ario.training_tx").unwrap().to_string();
    let (code, v) = verify_json(&env, &["verify", "tx", &training_tx]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["event_type"], "training_complete");

    // The text form: aligned rows, no colour when not a terminal.
    let out = worker(&env, &["verify", "run", &run]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text.contains("PASS    Training Record Matches") && !text.contains('\x1b'),
        "{text}"
    );

    // 2. Check 4 and write-back: devnet answers like ar.io Verify (level 2).
    let mut att_env = env.clone();
    att_env.push(("ARIO_MLFLOW_ARIO_VERIFY_URL", dn.handle.url().to_string()));
    let (code, v) = verify_json(&att_env, &["verify", "run", &run, "--write-back"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(check(&v, "ario_attestation")["ok"], true, "{v:#}");
    let tagged = rt.block_on(mlflow.get_run(&run)).unwrap();
    assert_eq!(tagged.tag("ario.verify_status"), Some("verified"));
    assert_eq!(tagged.tag("ario.attestation_level"), Some("2"));
    // A higher bar than the service gives: pending, failing, and nothing written.
    let (code, v) = verify_json(
        &att_env,
        &[
            "verify",
            "model",
            &mv,
            "--write-back",
            "--min-attestation-level",
            "3",
        ],
    );
    assert_eq!(code, 1, "{v:#}");
    assert!(check(&v, "ario_attestation")["reason"]
        .as_str()
        .unwrap()
        .starts_with("attestation_level_below_threshold"));
    assert!(v["written_back"].as_array().unwrap().is_empty());
    let mv_now = rt.block_on(mlflow.get_model_version(&model, "1")).unwrap();
    assert_ne!(
        mv_now.tag("ario.verify_status"),
        Some("verified"),
        "no write-back below the bar"
    );
    assert_eq!(mv_now.tag("ario.attestation_level"), None);

    // 3. audit: every stage, in the plugin's JSON shape, as text, and as HTML.
    let out = worker(
        &env,
        &["audit", &mv, "--predictions", "all", "--format", "json"],
    );
    assert!(out.status.success(), "audit json: {}", show(&out));
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit["schema"], "ario.mlflow.audit/v1");
    assert_eq!(audit["overall_ok"], true);
    let stages: Vec<&str> = audit["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for want in [
        "dataset",
        "training",
        "registration",
        "promotion",
        "alias",
        "prediction",
    ] {
        assert!(stages.contains(&want), "audit lacks {want}: {stages:?}");
    }
    for st in audit["stages"].as_array().unwrap() {
        assert_eq!(st["ok"], true, "{st:#}");
        for c in [
            "signature",
            "anchored_bytes",
            "source_of_truth",
            "ario_attestation",
        ] {
            assert!(st["checks"][c].get("ok").is_some(), "{st:#}");
        }
    }
    let generated = audit["generated_at"].as_str().unwrap();
    assert!(
        generated.ends_with('Z') && generated.len() == 27,
        "{generated}"
    );
    let out = worker(&env, &["audit", &mv, "--predictions", "all"]);
    assert!(out.status.success(), "{}", show(&out));
    println!(
        "audit --format text:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let html = home.path().join("audit.html");
    let out = worker(
        &env,
        &[
            "audit",
            &mv,
            "--format",
            "html",
            "--output",
            html.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    render_html(&html, home.path());

    // 4. Tampering matrix.
    let db = server.db_path();
    // a. A param changed in MLflow's database.
    sqlite(
        &db,
        "update params set value = value || '-tampered' where run_uuid = ? and key = 'C'",
        &run,
    );
    expect_failure(&env, &["verify", "run", &run], "source_of_truth", "params");
    sqlite(
        &db,
        "update params set value = replace(value, '-tampered', '') where run_uuid = ? and key = 'C'",
        &run,
    );
    // b. A metric changed.
    sqlite(
        &db,
        "update latest_metrics set value = value + 0.5 where run_uuid = ?",
        &run,
    );
    expect_failure(&env, &["verify", "run", &run], "source_of_truth", "metrics");
    sqlite(
        &db,
        "update latest_metrics set value = value - 0.5 where run_uuid = ?",
        &run,
    );
    // c. An artifact file replaced (the logged model's MLmodel).
    let model_file = format!(
        "mlflow-artifacts:/{}/models/{}/artifacts/MLmodel",
        run_now.info.experiment_id,
        s("model_id")
    );
    let original = rt.block_on(mlflow.download_artifact(&model_file)).unwrap();
    rt.block_on(mlflow.upload_artifact(&model_file, b"tampered".to_vec()))
        .unwrap();
    expect_failure(
        &env,
        &["verify", "run", &run],
        "source_of_truth",
        "artifact_checksums",
    );
    expect_failure(
        &env,
        &["verify", "model", &mv],
        "source_of_truth",
        "artifact_verified",
    );
    rt.block_on(mlflow.upload_artifact(&model_file, original))
        .unwrap();
    // d. The witness artifact edited.
    let witness = rt
        .block_on(mlflow.download_run_artifact(&run_now, "ario/payload.json"))
        .unwrap();
    let mut edited = witness.clone();
    edited.pop();
    edited.extend_from_slice(b",\"x\":1}");
    let root = run_now.info.artifact_uri.trim_end_matches('/').to_string();
    rt.block_on(mlflow.upload_artifact(&format!("{root}/ario/payload.json"), edited))
        .unwrap();
    expect_failure(
        &env,
        &["verify", "run", &run],
        "anchored_bytes",
        "anchored_bytes_mismatch",
    );
    rt.block_on(mlflow.upload_artifact(&format!("{root}/ario/payload.json"), witness.clone()))
        .unwrap();
    let (code, v) = pinned(&["verify", "run", &run]);
    assert_eq!(code, 0, "restored: {v:#}");

    // e. The TX tag pointed at a proof of the same bytes signed by another key.
    let original_env: Value = {
        let bytes =
            std::fs::read(dn.handle.items_dir().join(format!("{training_tx}.bin"))).unwrap();
        serde_json::from_slice(
            &ario_mlflow_worker::arweave::DataItem::parse(&bytes)
                .unwrap()
                .data,
        )
        .unwrap()
    };
    let payload: Value = serde_json::from_slice(&witness).unwrap();
    let wallet =
        Wallet::load_or_create(None, Some(&home.path().join("attacker-wallet.json"))).unwrap();
    let attacker = EnvelopeKey::from_seed(&[7u8; 32], KeySource::Env);
    let forged = sign_event(
        "training_complete",
        original_env["subject"].clone(),
        original_env["previous_hash"].as_str().unwrap(),
        &payload,
        &attacker,
        &wallet.signer,
        None,
    )
    .unwrap();
    let turbo = turbo(&dn.handle, fast_retry(3), Duration::from_secs(10));
    rt.block_on(turbo.upload(&forged.item.to_bytes())).unwrap();
    let set_tag = |tx: &str| {
        rt.block_on(mlflow.set_run_tags(&run, &[("ario.training_tx".to_string(), tx.to_string())]))
            .unwrap()
    };
    set_tag(&forged.item.id());
    let (code, v) = verify_json(&env, &["verify", "run", &run]);
    assert_eq!(code, 0, "unpinned, checks 1-3 pass as in the plugin: {v:#}");
    assert!(
        check(&v, "key_binding")["reason"]
            .as_str()
            .unwrap()
            .contains("differs from the entity's ario.public_key tag"),
        "{v:#}"
    );
    expect_failure_pinned(
        &env,
        &pubkey,
        &["verify", "run", &run],
        "key_binding",
        "not a pinned key",
    );

    // f. An unknown spec major, signed by the right key over the right bytes.
    let mut unsigned = original_env.clone();
    let obj = unsigned.as_object_mut().unwrap();
    obj.remove("signature");
    obj.insert("spec_version".into(), json!("ario.mlflow/v2"));
    obj.insert("event_id".into(), json!(uuid_like()));
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(SEED_B64)
        .unwrap()
        .try_into()
        .unwrap();
    let legit = EnvelopeKey::from_seed(&seed, KeySource::Env);
    let v2 = sign_envelope(&unsigned, &legit).unwrap();
    let v2_item = envelope_item(&v2, &wallet.signer, None).unwrap();
    rt.block_on(turbo.upload(&v2_item.to_bytes())).unwrap();
    set_tag(&v2_item.id());
    expect_failure(
        &env,
        &["verify", "run", &run],
        "signature",
        "unsupported_spec_version",
    );
    set_tag(&training_tx);

    // A chain whose predecessor cannot be found: the walk reports the break and fails.
    let orphan = sign_event(
        "stage_transition",
        json!({"type": "mlflow_model_version", "name": model, "version": "1"}),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &json!({"event_type": "stage_transition", "model_name": model, "model_version": "1",
                "from_stage": "Staging", "to_stage": "Production"}),
        &legit,
        &wallet.signer,
        None,
    )
    .unwrap();
    rt.block_on(turbo.upload(&orphan.item.to_bytes())).unwrap();
    let (code, v) = verify_json(&env, &["verify", "tx", &orphan.item.id(), "--chain"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["chain"]["reached_genesis"], false, "{v:#}");
    let breaks = v["chain"]["breaks"].to_string();
    assert!(
        breaks.contains("AAAAAAAA") && breaks.contains("no gateway served"),
        "{breaks}"
    );
    println!("chain break reported: {breaks}");

    // g. A gateway serving altered bytes: with an honest second gateway the proof still passes
    //    (reported), alone it fails.
    let liar = rt.block_on(start_devnet(false, &["raw:alter"]));
    let liar_turbo = common::devnet::turbo(&liar.handle, fast_retry(3), Duration::from_secs(10));
    let item_bytes =
        std::fs::read(dn.handle.items_dir().join(format!("{training_tx}.bin"))).unwrap();
    rt.block_on(liar_turbo.upload(&item_bytes)).unwrap();
    let liar_url = liar.handle.url().to_string();
    let mut two = env.clone();
    two.retain(|(k, _)| *k != "ARIO_MLFLOW_GATEWAYS");
    two.push((
        "ARIO_MLFLOW_GATEWAYS",
        format!("{liar_url},{}", dn.handle.url()),
    ));
    let (code, v) = pinned_with(&two, &pubkey, &["verify", "run", &run]);
    assert_eq!(code, 0, "fallback to the honest gateway: {v:#}");
    let skipped = v["proof_found"]["detail"]["skipped"].to_string();
    assert!(
        skipped.contains("served altered bytes"),
        "reported: {skipped}"
    );
    let mut one = env.clone();
    one.retain(|(k, _)| *k != "ARIO_MLFLOW_GATEWAYS");
    one.push(("ARIO_MLFLOW_GATEWAYS", liar_url.clone()));
    let (code, v) = pinned_with(&one, &pubkey, &["verify", "run", &run]);
    assert_eq!(code, 1, "only a lying gateway: {v:#}");

    // h. A pruned trace: the live refetch cannot complete.
    let info = rt.block_on(mlflow.get_trace_info(&trace)).unwrap();
    let prediction_tx = info.tags["ario.prediction_tx"].clone();
    let run_of_trace: Value = rt
        .block_on(mlflow.call(
            "traces/get",
            ario_mlflow_worker::mlflow::client::Request::get(
                format!("api/3.0/mlflow/traces/{trace}"),
                &[],
            ),
        ))
        .unwrap_or(Value::Null);
    let experiment_id = run_of_trace["trace"]["trace_info"]["trace_location"]["mlflow_experiment"]
        ["experiment_id"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let deleted: Value = rt
        .block_on(mlflow.call(
            "traces/delete-traces",
            ario_mlflow_worker::mlflow::client::Request::post(
                "api/2.0/mlflow/traces/delete-traces",
                json!({"experiment_id": experiment_id, "request_ids": [trace]}),
            ),
        ))
        .unwrap();
    assert_eq!(deleted["traces_deleted"], 1, "{deleted}");
    expect_failure(
        &env,
        &["verify", "tx", &prediction_tx],
        "source_of_truth",
        "live_refetch_incomplete",
    );

    common::oracle::check_items(dn.handle.items_dir());
    rt.block_on(liar.handle.shutdown());
    rt.block_on(dn.handle.shutdown());
}

fn uuid_like() -> String {
    "00000000-0000-4000-8000-000000000002".to_string()
}

fn pinned_with(env: &[(&str, String)], key: &str, args: &[&str]) -> (i32, Value) {
    let mut a = args.to_vec();
    a.extend(["--trusted-key", key]);
    verify_json(env, &a)
}

fn expect_failure(env: &[(&str, String)], args: &[&str], name: &str, reason: &str) {
    let (code, v) = verify_json(env, args);
    assert_eq!(code, 1, "{args:?} must fail: {v:#}");
    let c = check(&v, name);
    assert_eq!(c["ok"], false, "{args:?}: {name} must fail: {v:#}");
    assert!(
        c["reason"].as_str().unwrap_or("").contains(reason),
        "{args:?}: {name} reason must mention {reason}: {c:#}"
    );
    println!(
        "tampering {args:?}: FAIL as expected — {name}: {}",
        c["reason"]
    );
}

fn expect_failure_pinned(
    env: &[(&str, String)],
    key: &str,
    args: &[&str],
    name: &str,
    reason: &str,
) {
    let mut a = args.to_vec();
    a.extend(["--trusted-key", key]);
    expect_failure(env, &a, name, reason);
}

/// Renders the report to a PNG in headless Chromium (Debian's package); required under CI.
fn render_html(html: &Path, dir: &Path) {
    let text = std::fs::read_to_string(html).unwrap();
    for external in ["<script", "<link", " src=", "@import", "url("] {
        assert!(
            !text.contains(external),
            "the report must be self-contained: found {external}"
        );
    }
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium for the HTML render test"
        );
        println!("chromium not installed: HTML render not checked");
        return;
    };
    let png = dir.join("audit.png");
    let profile = dir.join("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", show(&out));
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"),
        "chromium rendered {} bytes",
        bytes.len()
    );
    println!(
        "HTML report rendered by {chromium}: {} byte PNG",
        bytes.len()
    );
}

#[test]
fn a_lifecycle_anchored_by_the_plugin_verifies_with_our_commands() {
    let Some(venv) = venv() else { return };
    let Lab {
        server,
        rt,
        dn,
        home,
        ca,
        gateway,
    } = Lab::start(&venv);
    let plugin_env = plugin_env(&server, &ca, home.path(), &gateway);
    let plugin_env_ref: Vec<(&str, &str)> =
        plugin_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = server.python(
        &venv,
        &data("plugin_lifecycle.py"),
        &[&server.uri, dn.handle.url(), "p"],
        &plugin_env_ref,
    );
    assert!(out.status.success(), "plugin lifecycle: {}", show(&out));
    let ids = last_json_line(&out.stdout);
    assert_eq!(ids["proof_status"], "anchored", "{ids:#}");
    assert_eq!(ids["registration"]["status"], "anchored", "{ids:#}");
    assert_eq!(ids["promotion"]["status"], "anchored", "{ids:#}");
    let s = |k: &str| ids[k].as_str().unwrap().to_string();
    let mv = format!("{}/{}", s("model_name"), s("version"));
    let env = vec![
        ("MLFLOW_TRACKING_URI", server.uri.clone()),
        ("ARIO_MLFLOW_CA_CERT", ca.display().to_string()),
        ("ARIO_MLFLOW_GATEWAY_HOST", gateway.clone()),
        ("ARIO_MLFLOW_GATEWAYS", gateway.clone()),
        ("HOME", home.path().display().to_string()),
    ];
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(SEED_B64)
        .unwrap()
        .try_into()
        .unwrap();
    let pubkey = EnvelopeKey::from_seed(&seed, KeySource::Env).public_key_hex();
    for (args, what) in [
        (
            vec!["verify", "run", ids["run"].as_str().unwrap(), "--chain"],
            "training",
        ),
        (
            vec!["verify", "model", mv.as_str(), "--chain"],
            "registration",
        ),
        (
            vec!["verify", "trace", ids["trace"].as_str().unwrap(), "--chain"],
            "prediction",
        ),
        (
            vec!["verify", "tx", ids["promotion"]["tx_id"].as_str().unwrap()],
            "promotion",
        ),
    ] {
        let (code, v) = pinned_with(&env, &pubkey, &args);
        assert_eq!(code, 0, "the plugin's {what} proof must pass ours: {v:#}");
        assert_eq!(check(&v, "data_item")["ok"], true, "{v:#}");
        println!(
            "plugin-made {what}: PASS — record: {}, signature: {}",
            v["checks"]["source_of_truth"]["reason"], v["checks"]["signature"]["reason"]
        );
    }
    let out = worker(
        &env,
        &["audit", &mv, "--format", "json", "--trusted-key", &pubkey],
    );
    assert!(out.status.success(), "audit: {}", show(&out));
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages: Vec<(String, Value)> = audit["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap().to_string(), s["ok"].clone()))
        .collect();
    for want in [
        "dataset",
        "training",
        "registration",
        "promotion",
        "prediction",
    ] {
        assert!(
            stages.iter().any(|(s, ok)| s == want && ok == &json!(true)),
            "audit of the plugin's lifecycle lacks a passing {want}: {stages:?}"
        );
    }
    assert!(
        stages.iter().all(|(_, ok)| ok == &json!(true)),
        "{stages:?}"
    );
    println!("audit of the plugin's lifecycle: {stages:?}");
    rt.block_on(dn.handle.shutdown());
}
