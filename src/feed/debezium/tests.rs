use super::*;

const MAX: usize = 1 << 20;

/// The records captured from MLflow 3.17.2 → Debezium 3.6.1 (../shared/tools/cdc/events),
/// copied into tests/data/debezium.
fn captured(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/debezium/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    serde_json::to_vec(&file["value"]).unwrap()
}

fn events(name: &str) -> Vec<ChangeEvent> {
    let d = decode(Some(&captured(name)), MAX).unwrap();
    assert_eq!(d.skipped, None, "{name}");
    d.events
}

#[test]
fn captured_records_become_their_events() {
    assert_eq!(
        events("run_finished"),
        vec![ChangeEvent::run_finished(
            "7491ec8351d54323816f91bd70f9a22f",
            Some(1796115759852)
        )]
    );
    assert_eq!(
        events("model_version_created"),
        vec![ChangeEvent::ModelVersionCreated {
            name: "cdc-model".into(),
            version: "1".into(),
            created_ms: Some(1796115775040),
        }]
    );
    assert_eq!(
        events("stage_staging_to_production"),
        vec![ChangeEvent::StageChanged {
            name: "cdc-model".into(),
            version: "1".into(),
            from: "Staging".into(),
            to: "Production".into(),
            last_updated_ms: 1796115777437,
        }]
    );
    assert_eq!(
        events("alias_moved"),
        vec![ChangeEvent::AliasChanged {
            name: "cdc-model".into(),
            alias: "champion".into(),
            version: Some("2".into()),
            previous: Some("1".into()),
            seen_ms: 1796115787573,
        }]
    );
    assert_eq!(
        events("alias_deleted"),
        vec![ChangeEvent::AliasChanged {
            name: "cdc-model".into(),
            alias: "champion".into(),
            version: None,
            previous: Some("2".into()),
            seen_ms: 1796115788681,
        }]
    );
    assert_eq!(
        events("trace_created_ok"),
        vec![ChangeEvent::TraceLogged {
            trace_id: "tr-1eb0b75b1ebcbae8d6d0869406fede3b".into()
        }]
    );
    let d = decode(Some(&captured("alias_moved")), MAX).unwrap();
    assert_eq!(d.table, "registered_model_aliases");
    assert_eq!(
        d.position,
        Some(CommitPosition {
            commit_lsn: 28640992,
            lsn: 28640992
        })
    );
    assert_eq!(d.committed_ms, Some(1796115787573));
}

#[test]
fn a_snapshot_read_of_a_running_run_is_no_event() {
    let d = decode(Some(&captured("snapshot_read_run")), MAX).unwrap();
    assert!(d.events.is_empty());
    assert_eq!(d.skipped.unwrap().reason, "no_event");
}

#[test]
fn embedded_schemas_are_unwrapped() {
    let payload: Value = serde_json::from_slice(&captured("alias_moved")).unwrap();
    let wrapped = serde_json::json!({"schema": {"type": "struct"}, "payload": payload});
    let d = decode(Some(wrapped.to_string().as_bytes()), MAX).unwrap();
    assert_eq!(d.events, events("alias_moved"));
    let null = serde_json::json!({"schema": null, "payload": null});
    let d = decode(Some(null.to_string().as_bytes()), MAX).unwrap();
    assert_eq!(d.skipped.unwrap().reason, "tombstone");
}

fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Decoded {
    let mut v: Value = serde_json::from_slice(&captured(name)).unwrap();
    edit(&mut v);
    decode(Some(v.to_string().as_bytes()), MAX).unwrap()
}

#[test]
fn snapshot_of_a_promoted_version_is_its_registration_and_promotion() {
    let d = edited("stage_staging_to_production", |v| {
        v["op"] = "r".into();
        v["before"] = Value::Null;
    });
    assert_eq!(d.events.len(), 2);
    assert!(
        matches!(&d.events[1], ChangeEvent::StageChanged { from, to, .. } if from == "None" && to == "Production")
    );
}

#[test]
fn an_update_without_before_image_never_guesses_the_stage() {
    let d = edited("stage_staging_to_production", |v| v["before"] = Value::Null);
    assert_eq!(d.skipped.as_ref().unwrap().reason, "no_before_image");
    assert!(d.skipped.unwrap().is_warning());
    assert!(d
        .events
        .iter()
        .all(|e| !matches!(e, ChangeEvent::StageChanged { .. })));
    let d = edited("alias_deleted", |v| v["before"] = Value::Null);
    assert_eq!(d.skipped.unwrap().reason, "no_before_image");
}

#[test]
fn unknown_schemas_are_skipped_and_garbage_rejected() {
    let d = edited("run_finished", |v| {
        v["source"]["table"] = "experiments".into()
    });
    assert_eq!(d.skipped.as_ref().unwrap().reason, "unknown_table");
    assert!(d.skipped.unwrap().is_warning());
    let d = edited("run_finished", |v| {
        v["after"].as_object_mut().unwrap().remove("status");
    });
    assert_eq!(d.skipped.unwrap().reason, "missing_column");
    let d = edited("trace_created_ok", |v| {
        v["op"] = "u".into();
        v["before"] = v["after"].clone();
    });
    assert_eq!(d.skipped.unwrap().reason, "no_event", "OK → OK is no event");
    assert_eq!(
        decode(None, MAX).unwrap().skipped.unwrap().reason,
        "tombstone"
    );
    assert_eq!(
        decode(Some(br#"{"ts_ms": 1}"#), MAX)
            .unwrap()
            .skipped
            .unwrap()
            .reason,
        "heartbeat"
    );
    for garbage in [&b"\x00\x01garbage"[..], b"[1,2]", br#"{"op":"c"}"#] {
        assert!(decode(Some(garbage), MAX).is_err(), "{garbage:?}");
    }
    assert_eq!(
        decode(Some(&captured("run_finished")), 10)
            .unwrap_err()
            .class,
        "MessageTooLarge"
    );
}

/// MLflow 2.22's columns (read from its own migrations' schema): no `workspace`, a
/// five-column `trace_info`. The records decode to the same events.
#[test]
fn mlflow2_rows_decode_the_same() {
    let columns_2x = |table: &str| -> &'static [&'static str] {
        match table {
            "runs" => &[
                "run_uuid",
                "name",
                "source_type",
                "source_name",
                "entry_point_name",
                "user_id",
                "status",
                "start_time",
                "end_time",
                "source_version",
                "lifecycle_stage",
                "artifact_uri",
                "experiment_id",
                "deleted_time",
            ],
            "model_versions" => &[
                "name",
                "version",
                "creation_time",
                "last_updated_time",
                "description",
                "user_id",
                "current_stage",
                "source",
                "run_id",
                "status",
                "status_message",
                "run_link",
                "storage_location",
            ],
            "registered_model_aliases" => &["alias", "version", "name"],
            _ => &[
                "request_id",
                "experiment_id",
                "timestamp_ms",
                "execution_time_ms",
                "status",
            ],
        }
    };
    for name in [
        "run_finished",
        "model_version_created",
        "stage_staging_to_production",
        "alias_moved",
        "alias_deleted",
        "trace_created_ok",
    ] {
        let d = edited(name, |v| {
            let table = v["source"]["table"].as_str().unwrap().to_string();
            for image in ["before", "after"] {
                if let Some(row) = v[image].as_object_mut() {
                    row.retain(|k, _| columns_2x(&table).contains(&k.as_str()));
                }
            }
        });
        assert_eq!(d.skipped, None, "{name}");
        assert_eq!(d.events, events(name), "{name}");
    }
}

#[test]
fn a_row_names_its_workspace_and_a_run_or_trace_its_experiment() {
    // The registry's rows carry MLflow 3's `workspace` column: the CDC stage routes on it.
    let d = edited("model_version_created", |v| {
        v["after"]["workspace"] = "team-b".into()
    });
    assert_eq!(d.skipped, None);
    assert_eq!(d.events.len(), 1);
    assert_eq!(d.workspace.as_deref(), Some("team-b"));
    assert_eq!(d.experiment_id, None);
    // Runs and traces have no workspace column: their experiment places them.
    let run = decode(Some(&captured("run_finished")), MAX).unwrap();
    assert_eq!(run.workspace, None);
    let experiment = run.experiment_id.expect("a run row names its experiment");
    assert!(
        experiment.bytes().all(|b| b.is_ascii_digit()),
        "{experiment}"
    );
    let trace = decode(Some(&captured("trace_created_ok")), MAX).unwrap();
    assert!(trace.experiment_id.is_some());
    // A deleted alias is known by its before image, workspace included.
    let gone = edited("alias_deleted", |v| {
        v["before"]["workspace"] = "team-b".into()
    });
    assert_eq!(gone.workspace.as_deref(), Some("team-b"));
}

#[test]
fn a_rename_is_one_event_and_the_rows_that_moved_with_it_are_not_new() {
    let record = |table: &str, op: &str, row: Value| {
        serde_json::to_vec(&serde_json::json!({
            "before": if op == "d" { row.clone() } else { Value::Null },
            "after": if op == "d" { Value::Null } else { row },
            "source": {"table": table, "ts_ms": 5, "lsn": 10},
            "op": op,
        }))
        .unwrap()
    };
    let old_key = |name: &str| {
        vec![(
            OLD_KEY_HEADER.to_string(),
            format!(r#"{{"schema":{{}},"payload":{{"workspace":"default","name":"{name}"}}}}"#)
                .into_bytes(),
        )]
    };
    let rm = serde_json::json!({"name": "new", "workspace": "default", "creation_time": 1, "last_updated_time": 9});
    let d = decode_with_headers(
        Some(&record("registered_models", "c", rm.clone())),
        &old_key("old"),
        MAX,
    )
    .unwrap();
    assert_eq!(
        d.events,
        vec![ChangeEvent::ModelRenamed {
            from: "old".into(),
            to: "new".into(),
            updated_ms: 9
        }]
    );
    // The version that moved with it is not a new registration, nor a stage change.
    let mv = serde_json::json!({"name": "new", "version": 1, "current_stage": "Production",
        "status": "READY", "creation_time": 1, "last_updated_time": 9});
    let d = decode_with_headers(
        Some(&record("model_versions", "c", mv.clone())),
        &old_key("old"),
        MAX,
    )
    .unwrap();
    assert!(d.events.is_empty());
    assert_eq!(d.skipped.unwrap().reason, "renamed");
    let new_key = vec![(NEW_KEY_HEADER.to_string(), br#"{"name":"new"}"#.to_vec())];
    let d = decode_with_headers(
        Some(&record(
            "registered_model_aliases",
            "d",
            serde_json::json!({"name": "old", "alias": "a", "version": "1"}),
        )),
        &new_key,
        MAX,
    )
    .unwrap();
    assert!(
        d.events.is_empty(),
        "the old key's delete is no alias removal"
    );
    assert_eq!(d.skipped.unwrap().reason, "renamed");
    // Without the header a registered model row is no event, and a version is registered.
    let d = decode(Some(&record("registered_models", "c", rm)), MAX).unwrap();
    assert!(d.events.is_empty());
    let d = decode(Some(&record("model_versions", "c", mv)), MAX).unwrap();
    assert_eq!(d.events.len(), 2, "registration + None → Production");
}
