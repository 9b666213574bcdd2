//! Evidence that outlives MLflow: `export` and `verify evidence`.
//!
//! * the family's `ario.evidence/v1` export vectors (ar-io-proof): the wrapper checked, the
//!   tampers of the wrapper failed, malformed bundles and the nesting bomb malformed, and not
//!   one vector reported verified (we do not verify that body type: partial at best);
//! * a real lifecycle on MLflow 3.17 + devnet — training, registration, an alias, three
//!   per-trace predictions and 1,000 checkpointed ones — exported, then MLflow stopped and its
//!   database and artifact store deleted: `verify evidence` passes offline and `--online`; a
//!   flipped byte in a payload, an envelope, an inclusion path or the verdict fails with the
//!   reason (also when the exporter re-signs its lie); a withheld payload is partial; the
//!   export chains to its predecessor and `--anchor` puts it on devnet.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use common::lab::{last_json_line, Lab, SEED_B64};
use common::mlflow::venv;
use common::run::{mlflow_data, show, worker};
use serde_json::{json, Value};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/evidence-export")
}

fn verify(env: &[(&str, String)], file: &Path, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = vec![
        "verify".to_string(),
        "evidence".into(),
        file.display().to_string(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = worker(env, &refs);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), report, out)
}

/// Every reason the report gives (wrapper findings, body findings, item notes).
fn reasons(report: &Value) -> String {
    let mut all = Vec::new();
    for f in report["findings"].as_array().into_iter().flatten() {
        if f["ok"] != Value::Bool(true) {
            all.push(f["reason"].as_str().unwrap_or("").to_string());
        }
    }
    for f in report["body"]["findings"].as_array().into_iter().flatten() {
        if f["ok"] != Value::Bool(true) {
            all.push(f["reason"].as_str().unwrap_or("").to_string());
        }
    }
    for i in report["body"]["items"].as_array().into_iter().flatten() {
        for n in i["notes"].as_array().into_iter().flatten() {
            all.push(n.as_str().unwrap_or("").to_string());
        }
    }
    all.join(" | ")
}

#[test]
fn family_vectors_get_the_wrapper_checks_and_none_is_verified_wrongly() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(vectors())
        .unwrap()
        .chain(std::fs::read_dir(vectors().join("negatives")).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 17, "{files:?}");
    let mut seen = 0;
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let doc: Value = match serde_json::from_slice(&std::fs::read(&f).unwrap()) {
            Ok(v) => v,
            // The nesting bomb is beyond serde_json's own limit: handed over as it is.
            Err(_) => Value::Null,
        };
        let bundle_file = dir.path().join(&name);
        match doc.get("bundle").or_else(|| doc.get("export")) {
            Some(b) => std::fs::write(&bundle_file, serde_json::to_vec(b).unwrap()).unwrap(),
            None => std::fs::copy(&f, &bundle_file).map(|_| ()).unwrap(),
        }
        let (code, report, out) = verify(&[], &bundle_file, &[]);
        let expected = doc["expected"]["exit_code"].as_i64();
        println!(
            "{name}: family expects {expected:?}, we say {code} {}",
            report["status"]
        );
        assert_ne!(
            code,
            0,
            "{name} must never be verified here: {}",
            show(&out)
        );
        assert_ne!(report["status"], "verified", "{name}");
        match name.as_str() {
            "evidence-export-tamper-wrapper-signature.json" => {
                assert_eq!(code, 1, "{name}: {}", show(&out));
                assert!(reasons(&report).contains("wrapper signature does not verify"));
            }
            "evidence-export-tamper-body-hash.json" => {
                assert_eq!(code, 1, "{name}: {}", show(&out));
                assert!(reasons(&report).contains("does not hash to body_hash"));
            }
            "evidence-export-tamper-source-linkage.json" => {
                assert_eq!(code, 1, "{name}: {}", show(&out));
                assert!(reasons(&report).contains("source_bundle_hash"));
            }
            "evidence-export-malformed-rsa-key.json"
            | "evidence-export-malformed-signature-alg.json"
            | "deep-nesting.json"
            | "rsa-pss-attestation.golden.json" => {
                assert_eq!(code, 2, "{name} is malformed: {}", show(&out));
                assert_eq!(report["status"], "malformed");
            }
            // Wrapper intact, body a type we do not verify: partial, saying so.
            _ => {
                if expected == Some(0) || expected == Some(3) || expected.is_none() {
                    assert_eq!(code, 3, "{name}: {}", show(&out));
                } else {
                    // The family kernel fails these on the attestations: never a pass here.
                    assert!(code == 1 || code == 3, "{name}: {}", show(&out));
                }
                if code == 3 {
                    assert!(
                        reasons(&report).contains("not verified by this tool")
                            || reasons(&report).contains("not fetched"),
                        "{name}: {}",
                        reasons(&report)
                    );
                }
            }
        }
        seen += 1;
    }
    assert!(seen >= 17);
}

fn python(lab: &Lab, venv: &Path, script: &str, args: &[&str]) -> Value {
    let out = lab.server.python(venv, &mlflow_data(script), args, &[]);
    assert!(out.status.success(), "{script} {args:?}: {}", show(&out));
    last_json_line(&out.stdout)
}

fn resign(bundle: &Value, recompute_verdict: bool) -> Value {
    use base64::Engine;
    let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(SEED_B64)
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let verdict = if recompute_verdict {
        ario_mlflow_worker::verify::offline::recompute(
            &bundle["body"],
            ario_mlflow_worker::verify::offline::Keys::default(),
        )
        .wrapper_verdict(bundle["generated_at"].as_str().unwrap())
    } else {
        bundle["verdict"].clone()
    };
    ario_mlflow_worker::profile::evidence::sign_bundle(
        ario_mlflow_worker::profile::evidence::Unsigned {
            body_type: bundle["body_type"].as_str().unwrap().into(),
            issuer: bundle["issuer"].clone(),
            generated_at: bundle["generated_at"].as_str().unwrap().into(),
            gateway: bundle["gateway"].as_str().map(str::to_owned),
            verdict,
            body: bundle["body"].clone(),
            previous_hash: bundle["previous_hash"].as_str().map(str::to_owned),
        },
        &key,
    )
    .unwrap()
}

/// Flips one hex digit of a string (so it stays hex).
fn flip(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap()
}

#[test]
fn a_lifecycle_exported_verifies_after_mlflow_is_gone_and_every_flip_fails() {
    let Some(venv) = venv() else { return };
    let mut lab = Lab::start(&venv);
    let seed = python(
        &lab,
        &venv,
        "predictions.py",
        &[&lab.server.uri, "seed", "ev", "1"],
    );
    let name = seed["model_name"].as_str().unwrap().to_string();
    let model_id = seed["model_ids"][0].as_str().unwrap().to_string();
    let run_id = seed["runs"][0].as_str().unwrap().to_string();
    python(
        &lab,
        &venv,
        "registry_actions.py",
        &[&lab.server.uri, "alias", &name, "champion", "1"],
    );
    let state = lab.home.path().join("state");
    let mut env = lab.worker_env(&state);
    env.push(("ARIO_MLFLOW_GATEWAYS", lab.gateway.clone()));
    env.push(("RUST_LOG", "warn".into()));
    let out = worker(&env, &["backfill", "--model", &name]);
    assert!(out.status.success(), "backfill: {}", show(&out));
    // Three predictions proven one by one, then 1,000 in checkpoints of 250.
    let few = python(
        &lab,
        &venv,
        "predictions.py",
        &[&lab.server.uri, "traces", "ev", &model_id, "3"],
    );
    let exp = few["experiment_id"].as_str().unwrap().to_string();
    let out = worker(&env, &["backfill", "--experiment", &exp]);
    assert!(out.status.success(), "backfill per trace: {}", show(&out));
    python(
        &lab,
        &venv,
        "predictions.py",
        &[&lab.server.uri, "traces", "ev", &model_id, "1000"],
    );
    let out = worker(
        &env,
        &[
            "backfill",
            "--experiment",
            &exp,
            "--predictions",
            "batched",
            "--checkpoint-size",
            "250",
        ],
    );
    assert!(out.status.success(), "backfill batched: {}", show(&out));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fraud-1.evidence.json");
    let t = Instant::now();
    let out = worker(
        &env,
        &[
            "export",
            &format!("{name}/1"),
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "export: {}", show(&out));
    let export_secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::read(&file).unwrap();
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(bundle["spec_version"], "ario.evidence/v1");
    assert_eq!(bundle["body_type"], "ario.mlflow.audit/v1");
    assert_eq!(bundle["previous_hash"], "GENESIS");
    assert_eq!(
        bundle["verdict"]["status"], "verified",
        "{}",
        bundle["verdict"]
    );
    let body = &bundle["body"];
    let stages = body["stages"].as_array().unwrap();
    let kinds: Vec<&str> = stages
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for k in [
        "training",
        "registration",
        "alias",
        "prediction",
        "checkpoint",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "prediction").count(), 3);
    let docs = body["checkpoints"]["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 4, "four checkpoints of 250");
    let leaves: usize = docs
        .iter()
        .map(|d| d["leaves"].as_array().unwrap().len())
        .sum();
    assert_eq!(leaves, 1000);
    let training = stages.iter().find(|s| s["stage"] == "training").unwrap();
    let ev = &training["evidence"];
    assert!(ev["payload"].is_string() && ev["data_item"].is_string() && ev["receipt"].is_object());
    assert!(ev["model_checksums"]
        .as_object()
        .is_some_and(|m| !m.is_empty()));

    // The run alone, and the next export of the version chained to this one and anchored.
    let run_file = dir.path().join("run.json");
    let out = worker(
        &env,
        &["export", "--run", &run_id, "-o", run_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "export --run: {}", show(&out));
    let run_bundle: Value = serde_json::from_slice(&std::fs::read(&run_file).unwrap()).unwrap();
    assert_eq!(
        run_bundle["verdict"]["status"], "verified",
        "{}",
        run_bundle["verdict"]
    );
    assert_eq!(run_bundle["body"]["scope"]["kind"], "run");
    // A window: every version of the model registered in it, with the registry's completeness.
    let window = dir.path().join("window.json");
    let out = worker(
        &env,
        &[
            "export",
            "--since",
            "2000-01-01",
            "--until",
            "2100-01-01",
            "--model",
            &name,
            "--predictions",
            "1",
            "-o",
            window.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "export window: {}", show(&out));
    let w: Value = serde_json::from_slice(&std::fs::read(&window).unwrap()).unwrap();
    assert_eq!(w["verdict"]["status"], "verified", "{}", w["verdict"]);
    assert_eq!(w["body"]["audits"].as_array().unwrap().len(), 1);
    assert!(
        w["body"]["completeness"]["coverage"]["counts"]["prediction"]["total"].as_u64()
            >= Some(1003)
    );
    let out = worker(
        &env,
        &[
            "export",
            "--since",
            "2000-01-01",
            "--until",
            "2000-02-01",
            "-o",
            window.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "empty window: {}", show(&out));
    let w: Value = serde_json::from_slice(&std::fs::read(&window).unwrap()).unwrap();
    assert_eq!(
        w["verdict"]["status"], "not_found",
        "nothing registered then"
    );
    let out = worker(
        &env,
        &["export", "--since", "2026-12-02", "--until", "2026-12-01"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--until must be after --since"));

    // The run's next export, chained to the first and anchored (under Turbo's free 100 KiB:
    // a bigger bundle needs a funded wallet, which devnet refuses like Turbo does).
    let next = dir.path().join("run.next.json");
    let out = worker(
        &env,
        &[
            "export",
            "--run",
            &run_id,
            "--previous",
            run_file.to_str().unwrap(),
            "--anchor",
            "-o",
            next.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "export --anchor: {}", show(&out));
    let tx = last_json_line(&out.stdout)["anchored_tx"]
        .as_str()
        .unwrap()
        .to_string();
    let next_bytes = std::fs::read(&next).unwrap();
    let next_bundle: Value = serde_json::from_slice(&next_bytes).unwrap();
    assert_eq!(
        next_bundle["previous_hash"].as_str().unwrap(),
        ario_mlflow_worker::profile::evidence::chain_hash(&run_bundle).unwrap()
    );
    let fetched = worker(&env, &["fetch", &tx]);
    assert!(fetched.status.success(), "fetch {tx}: {}", show(&fetched));
    assert_eq!(
        fetched.stdout, next_bytes,
        "the anchored item is the bundle"
    );

    // MLflow gone: the server stopped, its database and artifact store deleted.
    lab.server.stop();
    std::fs::remove_file(lab.server.db_path()).unwrap();
    std::fs::remove_dir_all(lab.server.artifact_dir()).unwrap();
    let offline_env: Vec<(&str, String)> = vec![("HOME", lab.home.path().display().to_string())];
    let t = Instant::now();
    let (code, report, out) = verify(&offline_env, &file, &[]);
    let verify_secs = t.elapsed().as_secs_f64();
    assert_eq!(code, 0, "offline: {}", show(&out));
    assert_eq!(report["status"], "verified");
    let verified = report["body"]["counts"]["verified"].as_u64().unwrap();
    assert!(verified >= 1000 + 3 + 3, "{}", report["body"]["counts"]);
    println!(
        "export of {name}/1 (3 per-trace + 1000 checkpointed predictions): {} bytes in {export_secs:.1} s; offline verify {verify_secs:.2} s ({verified} items verified)",
        bytes.len()
    );
    let mut online_env = offline_env.clone();
    online_env.push(("ARIO_MLFLOW_CA_CERT", lab.ca.display().to_string()));
    let (code, report, out) = verify(&online_env, &file, &["--online", "--gateway", &lab.gateway]);
    assert_eq!(code, 0, "online: {}", show(&out));
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["check"] == "online" && f["ok"] == true));
    // Pinned: the right key passes, another fails naming the signer.
    let key = bundle["public_key"].as_str().unwrap();
    let (code, _, out) = verify(&offline_env, &file, &["--trusted-key", key]);
    assert_eq!(code, 0, "{}", show(&out));
    let (code, report, _) = verify(&offline_env, &file, &["--trusted-key", &"ab".repeat(32)]);
    assert_eq!(code, 1);
    assert!(
        reasons(&report).contains("not a pinned key"),
        "{}",
        reasons(&report)
    );
    // A key history: the lab key as its root passes; a history of another key fails.
    let history = |root: &[u8; 32], path: &Path| {
        let h = ario_mlflow_worker::profile::key_history::KeyHistory::new(root);
        std::fs::write(path, serde_json::to_vec(&h).unwrap()).unwrap();
    };
    let ours: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
    let good = dir.path().join("history.json");
    history(&ours, &good);
    let (code, _, out) = verify(
        &offline_env,
        &file,
        &["--trusted-keys-file", good.to_str().unwrap()],
    );
    assert_eq!(code, 0, "key history: {}", show(&out));
    let other = dir.path().join("other-history.json");
    history(
        &ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
            .verifying_key()
            .to_bytes(),
        &other,
    );
    let (code, report, _) = verify(
        &offline_env,
        &file,
        &["--trusted-keys-file", other.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        reasons(&report).contains("not in the trusted key history"),
        "{}",
        reasons(&report)
    );
    // Linked to its predecessor; against another bundle as predecessor, the link fails.
    let (code, _, out) = verify(
        &offline_env,
        &next,
        &["--previous", run_file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "chained: {}", show(&out));
    let (code, report, _) = verify(&offline_env, &next, &["--previous", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        reasons(&report).contains("previous_hash is"),
        "{}",
        reasons(&report)
    );
    // The text and HTML forms say the same.
    let out = worker(
        &offline_env,
        &["verify", "evidence", file.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("VERIFIED (exit 0)"),
        "{}",
        show(&out)
    );
    let html = dir.path().join("r.html");
    let out = worker(
        &offline_env,
        &[
            "verify",
            "evidence",
            file.to_str().unwrap(),
            "--format",
            "html",
            "--report",
            html.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&html).unwrap().contains("VERIFIED"));

    // Flipped bytes. Each as it would arrive (the body no longer hashes to body_hash) and
    // re-signed by the exporter itself (the inner check must still catch it).
    let stage_at = |b: &Value, kind: &str| {
        b["body"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["stage"] == kind)
            .unwrap()
    };
    let ti = stage_at(&bundle, "training");
    let ri = stage_at(&bundle, "registration");
    type Tamper = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "payload",
            Box::new(move |b: &mut Value| {
                let p = b["body"]["stages"][ti]["evidence"]["payload"]
                    .as_str()
                    .unwrap()
                    .to_string();
                b["body"]["stages"][ti]["evidence"]["payload"] = json!(flip(&p, 40));
            }),
            "do not hash to the signed payload_hash",
        ),
        (
            "envelope",
            Box::new(move |b: &mut Value| {
                let e = &mut b["body"]["stages"][ri]["evidence"]["envelope"];
                let s = e["signed_at"].as_str().unwrap().to_string();
                e["signed_at"] = json!(s.replacen('2', "3", 1));
            }),
            "signature does not verify",
        ),
        (
            "inclusion path",
            Box::new(|b: &mut Value| {
                let leaf = &mut b["body"]["checkpoints"]["documents"][1]["leaves"][137];
                let p = leaf["audit_path"][2].as_str().unwrap().to_string();
                leaf["audit_path"][2] = json!(flip(&p, 10));
            }),
            "audit path does not lead to the signed merkle_root",
        ),
        (
            "leaf payload",
            Box::new(|b: &mut Value| {
                let leaf = &mut b["body"]["checkpoints"]["documents"][0]["leaves"][3];
                let p = leaf["payload"].as_str().unwrap().to_string();
                leaf["payload"] = json!(p.replacen("\"output_hash\":\"", "\"output_hash\":\"0", 1));
            }),
            "does not hash to the leaf hash",
        ),
    ];
    for (what, tamper, reason) in &cases {
        let mut b = bundle.clone();
        tamper(&mut b);
        let f = dir.path().join(format!("{what}.json"));
        std::fs::write(&f, serde_json::to_vec(&b).unwrap()).unwrap();
        let (code, report, out) = verify(&offline_env, &f, &[]);
        assert_eq!(code, 1, "{what} as sent: {}", show(&out));
        assert!(
            reasons(&report).contains("does not hash to body_hash"),
            "{what}: {}",
            reasons(&report)
        );
        let resigned = resign(&b, false);
        std::fs::write(&f, serde_json::to_vec(&resigned).unwrap()).unwrap();
        let (code, report, out) = verify(&offline_env, &f, &[]);
        assert_eq!(code, 1, "{what} re-signed: {}", show(&out));
        let r = reasons(&report);
        assert!(r.contains(reason), "{what}: {r}");
        assert!(!r.contains("does not hash to body_hash"), "{what}: {r}");
        println!("{what}: {}", r.chars().take(200).collect::<String>());
    }
    // The verdict flipped: the signature breaks; re-signed, the recomputed verdict disagrees.
    let mut b = bundle.clone();
    b["verdict"]["counts"]["verified"] = json!(verified + 1);
    let f = dir.path().join("verdict.json");
    std::fs::write(&f, serde_json::to_vec(&b).unwrap()).unwrap();
    let (code, report, _) = verify(&offline_env, &f, &[]);
    assert_eq!(code, 1);
    assert!(reasons(&report).contains("wrapper signature does not verify"));
    let mut b = bundle.clone();
    let ci = stage_at(&b, "checkpoint");
    b["body"]["stages"][ci]["evidence"]["envelope"]["payload_hash"] = json!("00".repeat(32));
    let mut lying = resign(&b, false);
    lying["verdict"] = bundle["verdict"].clone();
    let lying = resign(&lying, false);
    std::fs::write(&f, serde_json::to_vec(&lying).unwrap()).unwrap();
    let (code, report, _) = verify(&offline_env, &f, &[]);
    assert_eq!(code, 1);
    assert!(
        reasons(&report).contains("disagrees with the one recomputed"),
        "{}",
        reasons(&report)
    );

    // A payload withheld (the exporter honest about it): partial, exit 3.
    let mut b = bundle.clone();
    b["body"]["stages"][ti]["evidence"]["payload"] = Value::Null;
    let withheld = resign(&b, true);
    assert_eq!(withheld["verdict"]["status"], "partial");
    std::fs::write(&f, serde_json::to_vec(&withheld).unwrap()).unwrap();
    let (code, report, out) = verify(&offline_env, &f, &[]);
    assert_eq!(code, 3, "{}", show(&out));
    assert_eq!(report["status"], "partial");
    assert!(
        reasons(&report).contains("withheld"),
        "{}",
        reasons(&report)
    );
}
