//! The proof kernel against the ario-proof conformance corpus (`shared/vectors/ario-proof`),
//! the `ario.mlflow/v1` golden example of spec/mlflow-profile.md §1.7, the plugin's own stored
//! payloads, and the negative cases the rules imply. Byte for byte: every comparison is on
//! the exact canonical bytes, hashes and deterministic signatures.

mod common;

use ario_mlflow_worker::proof::envelope::{signed_scope_bytes, verify_envelope_text};
use ario_mlflow_worker::proof::{
    jcs, merkle, sha256_hex, sign_envelope, verify_envelope, SpecVersionStatus,
};
use common::*;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

/// The derived negatives of spec §6.2: each must fail. A top-level `_` key is a negative only
/// for profiles that keep `_` keys in scope (agent, events); the mlflow profile strips them.
fn assert_derived_negatives(name: &str, full: &Value, payload: Option<&[u8]>) {
    let mut flipped = full.clone();
    let mut sig = hex_bytes(&full["signature"]);
    sig[0] ^= 0x01;
    flipped["signature"] = json!(hex::encode(sig));
    let mut zero_key = full.clone();
    zero_key["public_key"] = json!("0".repeat(64));
    let mut unknown_major = full.clone();
    let major = str_of(&full["spec_version"])
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap();
    unknown_major["spec_version"] = json!(format!("{major}/v99"));
    let mut negatives = vec![
        ("flipped signature", flipped),
        ("zeroed key", zero_key),
        ("unknown major", unknown_major),
    ];
    let mut injected = full.clone();
    injected["_x"] = json!("injected");
    if major == "ario.mlflow" {
        assert!(
            verify_envelope(&injected, payload).overall,
            "{name}: mlflow strips top-level _ keys"
        );
    } else {
        negatives.push(("top-level _ key", injected));
    }
    for (what, env) in negatives {
        let verdict = verify_envelope(&env, payload);
        assert!(
            !verdict.overall,
            "{name}: {what} must fail, got {verdict:?}"
        );
    }
}

#[test]
fn agent_envelope_vectors_reproduce_byte_for_byte() {
    let files = vector_files("vectors/ario-proof", "envelope-");
    assert_eq!(files.len(), 6, "the corpus has six agent envelope vectors");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let vector: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let key = vector_key(&vector);
        let expected = &vector["expected_outputs"];
        let pre = &vector["inputs"]["envelope_pre_signature"];

        let payload_jcs = jcs::canonicalize(&pre["payload"]).unwrap();
        assert_eq!(
            hex::encode(&payload_jcs),
            str_of(&expected["payload_jcs_bytes_hex"]),
            "{name}: payload JCS"
        );
        assert_eq!(
            sha256_hex(&payload_jcs),
            str_of(&expected["payload_hash_hex"]),
            "{name}: payload hash"
        );

        let full = sign_envelope(pre, &key).unwrap();
        let scope = signed_scope_bytes(full.as_object().unwrap()).unwrap();
        assert_eq!(
            hex::encode(&scope),
            str_of(&expected["envelope_for_sig_jcs_bytes_hex"]),
            "{name}: scope"
        );
        assert_eq!(
            str_of(&full["signature"]),
            str_of(&expected["signature_hex"]),
            "{name}: signature"
        );

        let verdict = verify_envelope(&full, None);
        assert!(
            verdict.overall && verdict.signature_valid,
            "{name}: {verdict:?}"
        );
        assert_eq!(
            verdict.payload_hash_valid,
            Some(true),
            "{name}: inline payload re-hashed"
        );

        let mut tampered_payload = full.clone();
        tampered_payload["payload"]["_injected"] = json!(true);
        let v = verify_envelope(&tampered_payload, None);
        assert!(
            !v.overall && v.payload_hash_valid == Some(false),
            "{name}: payload injection must fail"
        );
        assert_derived_negatives(&name, &full, None);
    }
}

/// The shared procedure of an `ario.events/v1` window or event vector.
fn check_events_vector(name: &str, vector: &Value, key: &SigningKey) {
    let expected = &vector["expected_outputs"];
    let record = &vector["inputs"]["event_record"];
    let record_jcs = jcs::canonicalize(record).unwrap();
    assert_eq!(
        hex::encode(&record_jcs),
        str_of(&expected["payload_jcs_bytes_hex"]),
        "{name}: record JCS"
    );
    assert_eq!(
        sha256_hex(&record_jcs),
        str_of(&expected["payload_hash_hex"]),
        "{name}: record hash"
    );

    let mut pre = vector["inputs"]["envelope_pre_signature"].clone();
    pre["payload_hash"] = json!(sha256_hex(&record_jcs));
    let full = sign_envelope(&pre, key).unwrap();
    let scope = signed_scope_bytes(full.as_object().unwrap()).unwrap();
    assert_eq!(
        hex::encode(&scope),
        str_of(&expected["envelope_for_sig_jcs_bytes_hex"]),
        "{name}: scope"
    );
    assert_eq!(
        str_of(&full["signature"]),
        str_of(&expected["signature_hex"]),
        "{name}: signature"
    );
    let full_jcs = jcs::canonicalize(&full).unwrap();
    assert_eq!(
        hex::encode(&full_jcs),
        str_of(&expected["envelope_jcs_bytes_hex"]),
        "{name}: full JCS"
    );

    let envelope_bytes = hex_bytes(&expected["envelope_jcs_bytes_hex"]);
    let bound = verify_envelope_text(&envelope_bytes, Some(&record_jcs)).unwrap();
    assert!(
        bound.overall && bound.payload_hash_valid == Some(true),
        "{name}: bound {bound:?}"
    );
    let undetermined = verify_envelope_text(&envelope_bytes, None).unwrap();
    assert!(
        undetermined.overall && undetermined.payload_hash_valid.is_none(),
        "{name}: undetermined"
    );
    let wrong = verify_envelope_text(&envelope_bytes, Some(b"wrong")).unwrap();
    assert!(!wrong.overall, "{name}: wrong bytes must fail");
    assert_derived_negatives(name, &full, Some(&record_jcs));

    if let Some(m) = vector.get("merkle") {
        check_merkle_section(name, m, record);
    }
}

/// A vector's `merkle` section: leaves are complete signed envelopes.
fn check_merkle_section(name: &str, m: &Value, record: &Value) {
    let leaves = m["leaves"].as_array().unwrap();
    let mut hashes = Vec::new();
    for leaf in leaves {
        let bytes = hex_bytes(&leaf["envelope_jcs_bytes_hex"]);
        let hash = merkle::leaf_hash(&bytes);
        assert_eq!(
            hex::encode(hash),
            str_of(&leaf["leaf_hash_hex"]),
            "{name}: leaf hash"
        );
        if let Some(env) = leaf.get("envelope") {
            assert_eq!(
                jcs::canonicalize(env).unwrap(),
                bytes,
                "{name}: leaf envelope JCS"
            );
            let record_bytes = jcs::canonicalize(&leaf["event_record"]).unwrap();
            assert!(
                verify_envelope(env, Some(&record_bytes)).overall,
                "{name}: leaf envelope verifies"
            );
        }
        hashes.push(hash);
    }
    let root = merkle::root(&hashes);
    assert_eq!(
        hex::encode(root),
        str_of(&m["expected_root_hex"]),
        "{name}: root"
    );
    assert_eq!(
        str_of(&record["event"]["merkle_root"]),
        str_of(&m["expected_root_hex"]),
        "{name}: record commits to root"
    );
    check_inclusion_proofs(name, &m["inclusion_proofs"], &hashes, &root);
}

fn check_inclusion_proofs(
    name: &str,
    proofs: &Value,
    hashes: &[merkle::TreeHash],
    root: &merkle::TreeHash,
) {
    let n = hashes.len() as u64;
    let proofs = proofs.as_array().unwrap();
    assert!(
        !proofs.is_empty() || hashes.is_empty(),
        "{name}: vector has inclusion proofs"
    );
    for proof in proofs {
        let index = proof["leaf_index"].as_u64().unwrap();
        let path: Vec<merkle::TreeHash> = proof["audit_path_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hex_bytes(h).try_into().unwrap())
            .collect();
        let ours = merkle::audit_path(hashes, index as usize).unwrap();
        assert_eq!(ours, path, "{name}: audit path of leaf {index}");
        assert!(
            merkle::verify_inclusion(&hashes[index as usize], index, n, &path, root),
            "{name}: leaf {index} included"
        );
        if n > 1 {
            let wrong = (index + 1) % n;
            assert!(
                !merkle::verify_inclusion(&hashes[index as usize], wrong, n, &path, root),
                "{name}: wrong index {wrong} rejected"
            );
        }
    }
}

#[test]
fn events_vectors_reproduce_and_bind_external_payloads() {
    let files = vector_files("vectors/ario-proof/ario.events-v1", "events-");
    assert_eq!(files.len(), 4);
    let mut checked = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let vector: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let key = vector_key(&vector);
        if let Some(windows) = vector.get("windows") {
            // Chain vector: each window is an events vector; window 2 links to window 1's record.
            let windows = windows.as_array().unwrap();
            assert_eq!(windows.len(), 2);
            for (i, w) in windows.iter().enumerate() {
                check_events_vector(&format!("{name} window {}", i + 1), w, &key);
                assert_eq!(
                    str_of(&w["inputs"]["event_record"]["context"]["chain_key"]),
                    str_of(&vector["chain_key"])
                );
            }
            let w1_hash =
                sha256_hex(&jcs::canonicalize(&windows[0]["inputs"]["event_record"]).unwrap());
            assert_eq!(
                w1_hash,
                str_of(&vector["chain_link"]["window1_record_hash"])
            );
            assert_eq!(
                str_of(&windows[1]["inputs"]["event_record"]["previous_hash"]),
                w1_hash
            );
            assert_eq!(
                str_of(&vector["chain_link"]["window2_previous_hash"]),
                w1_hash
            );
        } else {
            check_events_vector(&name, &vector, &key);
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn merkle_tree_vectors_reproduce_roots_and_audit_paths() {
    let files = vector_files("vectors/ario-proof", "merkle-tree-");
    assert_eq!(files.len(), 7);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let vector: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let leaves = vector["leaves"].as_array().unwrap();
        assert_eq!(leaves.len() as u64, vector["leaf_count"].as_u64().unwrap());
        let hashes: Vec<merkle::TreeHash> = leaves
            .iter()
            .map(|leaf| {
                let h = merkle::leaf_hash(&jcs::canonicalize(&leaf["leaf_object"]).unwrap());
                assert_eq!(
                    hex::encode(h),
                    str_of(&leaf["leaf_hash_hex"]),
                    "{name}: leaf hash"
                );
                h
            })
            .collect();
        let root = merkle::root(&hashes);
        assert_eq!(
            hex::encode(root),
            str_of(&vector["expected_root_hex"]),
            "{name}: root"
        );
        check_inclusion_proofs(&name, &vector["inclusion_proofs"], &hashes, &root);
    }
}

/// spec/mlflow-profile.md §1.7, reproduced from its inputs.
#[test]
fn mlflow_golden_example_reproduces_byte_for_byte() {
    let key = SigningKey::from_bytes(&hex::decode(CORPUS_SEED_HEX).unwrap().try_into().unwrap());
    let checksums = json!({
        "MLmodel": "088f2db249a81e5458e71ac2fd2330fd43c39e389e8f35ed8262b338fa0cd9c6",
        "model.pkl": "32ad9eb9527f0f606ecf7c35c7dd5d734d2f563968a98f0ef3695a3c77427fa0",
        "requirements.txt": "b6ab5e88e450b666e6d60fdaa36f33f5962c592b8862c42d409442030549fc26"
    });
    let artifact_hash = sha256_hex(&jcs::canonicalize(&checksums).unwrap());
    assert_eq!(
        artifact_hash,
        "14c277ee735b66690dede9eaae6ddef9ecb726b55b6ead61b8c36fd265114ed4"
    );
    let schema = r#"{"mlflow_colspec": [{"type": "double", "name": "sepal_length"}]}"#;
    // §2.0.6: a schema string that parses is hashed as the JCS of the parsed value.
    let schema_hash =
        sha256_hex(&jcs::canonicalize(&jcs::parse(schema.as_bytes()).unwrap()).unwrap());
    assert_eq!(
        schema_hash,
        "b9117c5e8fb9b07b0477b92d004d39aa3dd8fce6bc4b5bace17ce0bcce626b3e"
    );

    let run_id = "3f2a9c1b7d4e4f0a8b6c5d4e3f2a1b0c";
    let payload = json!({
        "artifact_checksums": checksums,
        "dataset_inputs": [{"context": "training", "digest": "1a2b3c4d", "name": "iris", "schema_hash": schema_hash,
                            "source": "{\"uri\": \"s3://bucket/iris.csv\"}", "source_type": "s3"}],
        "event_type": "training_complete", "git_commit": "",
        "metrics": {"accuracy": 0.973333, "loss": 1.0},
        "params": {"C": "1.0", "max_iter": "200"}, "run_id": run_id, "source_name": "train.py"
    });
    let payload_jcs = jcs::canonicalize_to_string(&payload).unwrap();
    let expected_payload = concat!(
        r#"{"artifact_checksums":{"MLmodel":"088f2db249a81e5458e71ac2fd2330fd43c39e389e8f35ed8262b338fa0cd9c6","model.pkl":"32ad9eb9527f0f606ecf7c35c7dd5d734d2f563968a98f0ef3695a3c77427fa0","requirements.txt":"b6ab5e88e450b666e6d60fdaa36f33f5962c592b8862c42d409442030549fc26"},"#,
        r#""dataset_inputs":[{"context":"training","digest":"1a2b3c4d","name":"iris","schema_hash":"b9117c5e8fb9b07b0477b92d004d39aa3dd8fce6bc4b5bace17ce0bcce626b3e","source":"{\"uri\": \"s3://bucket/iris.csv\"}","source_type":"s3"}],"#,
        r#""event_type":"training_complete","git_commit":"","metrics":{"accuracy":0.973333,"loss":1},"params":{"C":"1.0","max_iter":"200"},"run_id":"3f2a9c1b7d4e4f0a8b6c5d4e3f2a1b0c","source_name":"train.py"}"#
    );
    assert_eq!(payload_jcs, expected_payload);
    let payload_hash = sha256_hex(payload_jcs.as_bytes());
    assert_eq!(
        payload_hash,
        "2ec532b19534698bd83d0e6480c0fba3774c1643dd73127856167ae77728ed6f"
    );

    let unsigned = json!({
        "event_id": "550e8400-e29b-41d4-a716-446655440000", "event_type": "training_complete",
        "subject": {"type": "mlflow_run", "run_id": run_id}, "payload_hash": payload_hash,
        "previous_hash": "GENESIS", "signed_at": "2026-06-10T12:00:00.123456+00:00", "spec_version": "ario.mlflow/v1"
    });
    let full = sign_envelope(&unsigned, &key).unwrap();
    let scope = String::from_utf8(signed_scope_bytes(full.as_object().unwrap()).unwrap()).unwrap();
    assert_eq!(
        scope,
        r#"{"event_id":"550e8400-e29b-41d4-a716-446655440000","event_type":"training_complete","payload_hash":"2ec532b19534698bd83d0e6480c0fba3774c1643dd73127856167ae77728ed6f","previous_hash":"GENESIS","public_key":"207a067892821e25d770f1fba0c47c11ff4b813e54162ece9eb839e076231ab6","signed_at":"2026-06-10T12:00:00.123456+00:00","spec_version":"ario.mlflow/v1","subject":{"run_id":"3f2a9c1b7d4e4f0a8b6c5d4e3f2a1b0c","type":"mlflow_run"}}"#
    );
    assert_eq!(
        str_of(&full["signature"]),
        "28e07a7aeacb5f07ef3d15311c1e9ae30abf1686a9499691c4642075967b8db6ee1293ac762d79e08863b725c334a5a224959b3dee0c3b45bccec98cd3e78e0a"
    );
    assert_eq!(jcs::canonicalize(&full).unwrap().len(), 570);
    let v = verify_envelope(&full, Some(payload_jcs.as_bytes()));
    assert!(v.overall && v.payload_hash_valid == Some(true) && !v.legacy_envelope);

    let mut annotated = full.clone();
    annotated["_tx_id"] = json!("abc");
    assert!(
        verify_envelope(&annotated, Some(payload_jcs.as_bytes())).overall,
        "_tx_id is outside the mlflow scope"
    );
    assert_derived_negatives("mlflow golden", &full, Some(payload_jcs.as_bytes()));

    // The shipped example used by README's main command is exactly this envelope.
    let example_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let shipped: Value =
        serde_json::from_slice(&std::fs::read(example_dir.join("training-envelope.json")).unwrap())
            .unwrap();
    assert_eq!(shipped, full);
    assert_eq!(
        std::fs::read(example_dir.join("training-payload.json")).unwrap(),
        payload_jcs.as_bytes()
    );

    let registration = json!({
        "artifact_hash": artifact_hash, "artifact_verified": true, "event_type": "model_registered",
        "model_name": "iris-clf", "model_version": "1", "source": format!("runs:/{run_id}/model"), "source_run_id": run_id
    });
    assert_eq!(
        sha256_hex(&jcs::canonicalize(&registration).unwrap()),
        "91e9cc60f088f6232578a4ad076aab4394a644ef0ee9b48c839afb30e43f458f"
    );
    let input = json!({"features": [78000, 0.18, 0.22, 72, 745]});
    assert_eq!(
        jcs::canonicalize_to_string(&input).unwrap(),
        r#"{"features":[78000,0.18,0.22,72,745]}"#
    );
    assert_eq!(
        sha256_hex(&jcs::canonicalize(&input).unwrap()),
        "f985913dd680572d6ba3c6c34df1b35fe0f407900e64d2ee320f858d38d6c523"
    );
    assert_eq!(
        sha256_hex(&jcs::canonicalize(&json!({"prediction": [1]})).unwrap()),
        "1eee05979bc26e5bc80028d7b598a5ed9e69af39e95bca31376655e31f6d8d1f"
    );
}

#[test]
fn plugin_written_payloads_are_already_canonical_and_match_their_tags() {
    let tags = load_json("vectors/plugin/plugin_training_tags.json");
    let stored =
        std::fs::read(shared_dir().join("vectors/plugin/plugin_training_payload.json")).unwrap();
    assert_eq!(
        sha256_hex(&stored),
        str_of(&tags["tags"]["ario.payload_hash"])
    );
    let parsed = jcs::parse(&stored).unwrap();
    assert_eq!(
        jcs::canonicalize(&parsed).unwrap(),
        stored,
        "re-canonicalizing the plugin's bytes is the identity"
    );
    let checksums = jcs::canonicalize(&parsed["artifact_checksums"]).unwrap();
    assert_eq!(
        sha256_hex(&checksums),
        str_of(&tags["tags"]["ario.artifact_hash"])
    );

    let with_dataset = std::fs::read(
        shared_dir().join("vectors/plugin/plugin_training_payload_with_dataset.json"),
    )
    .unwrap();
    assert_eq!(
        jcs::canonicalize(&jcs::parse(&with_dataset).unwrap()).unwrap(),
        with_dataset
    );
}

/// Negative cases from the rules (the corpus's own `negatives/` folder is not shipped here).
#[test]
fn rule_negatives_are_rejected() {
    let key = SigningKey::from_bytes(&hex::decode(CORPUS_SEED_HEX).unwrap().try_into().unwrap());
    let base = json!({
        "event_id": "n-1", "event_type": "training_complete", "subject": {"type": "mlflow_run", "run_id": "r"},
        "payload_hash": sha256_hex(b"{}"), "previous_hash": "GENESIS", "signed_at": "2026-01-01T00:00:00+00:00",
    });
    for minor in [
        "ario.mlflow/v1.",
        "ario.mlflow/v1.x",
        "ario.mlflow/v1.3abc",
        "ario.mlflow/v10",
        "ario.agent/v1.x",
    ] {
        let mut unsigned = base.clone();
        unsigned["spec_version"] = json!(minor);
        let v = verify_envelope(&sign_envelope(&unsigned, &key).unwrap(), None);
        assert!(v.signature_valid && !v.overall, "{minor}");
        assert_eq!(v.spec_version_status, SpecVersionStatus::Unsupported);
        assert_eq!(v.reason.as_deref(), Some("unsupported_spec_version"));
    }

    let mut signed = sign_envelope(
        &{
            let mut u = base.clone();
            u["spec_version"] = json!("ario.mlflow/v1");
            u
        },
        &key,
    )
    .unwrap();
    signed.as_object_mut().unwrap().remove("payload_hash");
    let v = verify_envelope(&signed, None);
    assert!(!v.overall);
    assert_eq!(v.reason.as_deref(), Some("missing_payload_hash"));

    let surrogate = br#"{"spec_version":"ario.mlflow/v1","payload_hash":"00","signed_at":"\uD800","public_key":"","signature":""}"#;
    let v = verify_envelope_text(surrogate, None).unwrap();
    assert!(!v.overall);
    assert_eq!(v.reason.as_deref(), Some("lone_surrogate"));

    // Depth: the envelope is depth 1, so a field holding 127 nested arrays is depth 128.
    let nest = |d: usize| "[".repeat(d) + &"]".repeat(d);
    let mut ok_unsigned = base.clone();
    ok_unsigned["spec_version"] = json!("ario.mlflow/v1");
    ok_unsigned["deep"] = jcs::parse(nest(127).as_bytes()).unwrap();
    let ok_env = sign_envelope(&ok_unsigned, &key).unwrap();
    let text = jcs::canonicalize(&ok_env).unwrap();
    assert!(
        verify_envelope_text(&text, None).unwrap().overall,
        "depth 128 accepted"
    );
    let too_deep = String::from_utf8(text)
        .unwrap()
        .replace(&nest(127), &nest(128));
    let v = verify_envelope_text(too_deep.as_bytes(), None).unwrap();
    assert!(!v.overall);
    assert_eq!(v.reason.as_deref(), Some("nesting_too_deep"));

    // NaN: not JSON as text, and a typed error when a producer tries to put one in a payload.
    assert!(verify_envelope_text(br#"{"payload_hash":NaN}"#, None).is_err());
    assert!(matches!(
        jcs::number(f64::NAN),
        Err(jcs::JcsError::NonFiniteNumber(_))
    ));
}
