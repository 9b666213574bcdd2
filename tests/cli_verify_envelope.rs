//! `verify envelope` and `keys show` as a user runs them: the real binary, real files,
//! exit statuses 0 (valid), 1 (invalid), 2 (unreadable or not JSON).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use ario_mlflow_worker::proof::{jcs, sign_envelope};
use common::*;
use serde_json::{json, Value};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"));
    cmd.env_remove("ARIO_MLFLOW_SIGNING_KEY")
        .env_remove("ARIO_MLFLOW_KEY_DIR");
    cmd
}

fn verify(path: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("verify")
        .arg("envelope")
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

/// Every positive vector's full envelope, with its external payload bytes when it has one.
fn positive_envelopes() -> Vec<(String, Value, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for path in vector_files("vectors/ario-proof", "envelope-") {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let full = sign_envelope(&v["inputs"]["envelope_pre_signature"], &vector_key(&v)).unwrap();
        out.push((
            path.file_name().unwrap().to_string_lossy().into(),
            full,
            None,
        ));
    }
    for path in vector_files("vectors/ario-proof/ario.events-v1", "events-") {
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let windows = v
            .get("windows")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![v.clone()]);
        for (i, w) in windows.iter().enumerate() {
            let env =
                jcs::parse(&hex_bytes(&w["expected_outputs"]["envelope_jcs_bytes_hex"])).unwrap();
            let record = jcs::canonicalize(&w["inputs"]["event_record"]).unwrap();
            out.push((
                format!("{}#{i}", path.file_name().unwrap().to_string_lossy()),
                env,
                Some(record),
            ));
        }
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    out.push((
        "mlflow golden".into(),
        serde_json::from_slice(&std::fs::read(golden.join("training-envelope.json")).unwrap())
            .unwrap(),
        Some(std::fs::read(golden.join("training-payload.json")).unwrap()),
    ));
    out
}

fn derived_negatives(full: &Value) -> Vec<(&'static str, Value)> {
    let mut flipped = full.clone();
    let mut sig = hex_bytes(&full["signature"]);
    sig[0] ^= 1;
    flipped["signature"] = json!(hex::encode(sig));
    let mut zero_key = full.clone();
    zero_key["public_key"] = json!("0".repeat(64));
    let mut unknown_major = full.clone();
    let spec = str_of(&full["spec_version"]).to_string();
    unknown_major["spec_version"] = json!(format!("{}/v99", spec.split('/').next().unwrap()));
    let mut out = vec![
        ("flipped signature", flipped),
        ("zeroed key", zero_key),
        ("unknown major", unknown_major),
    ];
    if !spec.starts_with("ario.mlflow/") {
        let mut injected = full.clone();
        injected["_x"] = json!(1);
        out.push(("_ key injected", injected));
    }
    out
}

#[test]
fn positives_exit_0_and_derived_negatives_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (mut positives, mut negatives) = (0, 0);
    for (name, full, payload) in positive_envelopes() {
        let env_path = dir.path().join("envelope.json");
        std::fs::write(&env_path, serde_json::to_vec_pretty(&full).unwrap()).unwrap();
        let mut extra = Vec::new();
        let payload_path = dir.path().join("payload.json");
        if let Some(bytes) = &payload {
            std::fs::write(&payload_path, bytes).unwrap();
            extra = vec!["--payload", payload_path.to_str().unwrap()];
        }
        let out = verify(&env_path, &extra);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verdict["overall"], json!(true));
        if payload.is_some() {
            assert_eq!(verdict["payload_hash_valid"], json!(true), "{name}");
            std::fs::write(&payload_path, b"{\"tampered\":true}").unwrap();
            assert_eq!(
                verify(&env_path, &extra).status.code(),
                Some(1),
                "{name}: altered payload bytes"
            );
        }
        positives += 1;
        for (what, env) in derived_negatives(&full) {
            std::fs::write(&env_path, serde_json::to_vec(&env).unwrap()).unwrap();
            let out = verify(&env_path, &[]);
            assert_eq!(out.status.code(), Some(1), "{name}: {what}");
            negatives += 1;
        }
    }
    eprintln!("verify envelope CLI: {positives} positive envelopes exit 0, {negatives} derived negatives exit 1");
    assert!(positives >= 12 && negatives >= 40);
}

#[test]
fn unreadable_or_non_json_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.json");
    std::fs::write(&path, b"this is not json").unwrap();
    let out = verify(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a JSON envelope"));
    assert_eq!(
        verify(&dir.path().join("missing.json"), &[]).status.code(),
        Some(2)
    );
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/training-envelope.json");
    assert_eq!(
        verify(&golden, &["--payload", "/nonexistent/payload.json"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn non_object_json_and_rule_violations_exit_1_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.json");
    for (body, reason) in [
        (&b"[1,2,3]"[..], "envelope_not_a_json_object"),
        (
            br#"{"spec_version":"ario.mlflow/v1","payload_hash":"00","signed_at":"\uDC00"}"#,
            "lone_surrogate",
        ),
    ] {
        std::fs::write(&path, body).unwrap();
        let out = verify(&path, &[]);
        assert_eq!(out.status.code(), Some(1));
        let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(verdict["reason"], json!(reason));
    }
}

#[test]
fn stdin_and_text_summary() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut child = bin()
        .args(["verify", "envelope", "-", "--text", "--payload"])
        .arg(golden.join("training-payload.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(golden.join("training-envelope.json")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("PASS -: signature=valid payload_hash=bound spec_version=supported"),
        "{text}"
    );
}

#[test]
fn keys_show_reports_the_env_key_and_generates_once() {
    let out = bin()
        .args(["keys", "show", "--json"])
        .env(
            "ARIO_MLFLOW_SIGNING_KEY",
            "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8=",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["public_key"], json!(CORPUS_PUBLIC_HEX));
    assert!(str_of(&doc["source"]).contains("ARIO_MLFLOW_SIGNING_KEY"));

    let dir = tempfile::tempdir().unwrap();
    let show = || {
        bin()
            .args(["keys", "show", "--key-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let first = String::from_utf8(show().stdout).unwrap();
    let second = String::from_utf8(show().stdout).unwrap();
    assert!(first.contains("generated now"), "{first}");
    assert!(second.contains("key file"), "{second}");
    assert_eq!(
        first.lines().next(),
        second.lines().next(),
        "same public key both times"
    );

    std::fs::write(dir.path().join("ed25519_private.json"), b"garbage").unwrap();
    let out = show();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed"));
}
