use serde_json::{Map, Value};

use super::binding::subject_mismatch;
use super::gateway::data_item_check;
use super::live::changed_files;
use super::*;
use crate::arweave::DataItem;

#[test]
fn changed_model_files_are_named() {
    let m = |pairs: &[(&str, &str)]| -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    };
    let then = m(&[("MLmodel", "a"), ("model.pkl", "b"), ("gone.txt", "c")]);
    let now = m(&[("MLmodel", "x"), ("model.pkl", "b"), ("new.txt", "d")]);
    assert_eq!(
        changed_files(&then, &now),
        ["MLmodel (changed)", "gone.txt (missing)", "new.txt (added)"]
    );
}
use crate::arweave::{ItemSigner, Tag};

#[test]
fn served_bytes_are_checked_against_the_signed_item() {
    let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
    let tags = vec![Tag::new("Content-Type", "application/json")];
    let item = DataItem::sign(&signer, tags, b"{\"a\":1}".to_vec(), None, None).unwrap();
    let bytes = item.to_bytes();
    let id = item.id();
    assert_eq!(
        data_item_check(&id, &bytes, b"{\"a\":1}", "default").ok,
        Some(true)
    );
    let altered = data_item_check(&id, &bytes, b"{\"a\":2}", "default");
    assert_eq!(altered.ok, Some(false));
    assert!(altered.reason.contains("differ"), "{}", altered.reason);
    assert_eq!(
        data_item_check("x".repeat(43).as_str(), &bytes, b"{\"a\":1}", "default").ok,
        Some(false)
    );
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        data_item_check(&id, &tampered, b"{\"a\":1}", "default").ok,
        Some(false),
        "bad signature"
    );
    let page = data_item_check(&id, b"<html>not found</html>", b"{\"a\":1}", "default");
    assert_eq!(
        page.ok, None,
        "a gateway page is not evidence: {}",
        page.reason
    );
}

#[test]
fn a_proof_tagged_with_another_workspace_is_about_another_entity() {
    let signer = ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[5; 32]));
    let data = b"{\"a\":1}".to_vec();
    let tagged = DataItem::sign(
        &signer,
        vec![Tag::new("MLflow-Workspace", "team-b")],
        data.clone(),
        None,
        None,
    )
    .unwrap();
    let (bytes, id) = (tagged.to_bytes(), tagged.id());
    assert_eq!(data_item_check(&id, &bytes, &data, "team-b").ok, Some(true));
    let elsewhere = data_item_check(&id, &bytes, &data, "default");
    assert_eq!(elsewhere.ok, Some(false));
    assert!(
        elsewhere.reason.contains("\"team-b\""),
        "{}",
        elsewhere.reason
    );
    // No tag (the default workspace, the plugin, or before workspaces): nothing to hold against.
    let plain = DataItem::sign(&signer, Vec::new(), data.clone(), None, None).unwrap();
    let check = data_item_check(&plain.id(), &plain.to_bytes(), &data, "team-b");
    assert_eq!(check.ok, Some(true));
}

#[test]
fn a_proof_about_another_entity_is_refused() {
    let env = serde_json::json!({"subject": {"type": "mlflow_run", "run_id": "r1"}});
    assert!(subject_mismatch(&env, &Entity::Run("r1".into())).is_none());
    assert!(subject_mismatch(&env, &Entity::Run("r2".into())).is_some());
    assert!(subject_mismatch(&env, &Entity::Any).is_none());
    let mv =
        serde_json::json!({"subject": {"type": "mlflow_model_version", "name": "m", "version": 3}});
    assert!(subject_mismatch(&mv, &Entity::ModelVersion("m".into(), "3".into())).is_none());
    assert!(subject_mismatch(&mv, &Entity::ModelVersion("m".into(), "4".into())).is_some());
}
