use std::collections::BTreeMap;

use super::prepared::Prepared;
use super::*;

fn prepared(tx: &str) -> Prepared {
    Prepared {
        event_type: "training_complete".into(),
        subject: "r".into(),
        payload_hash: "h".into(),
        payload_bytes: b"{}".to_vec(),
        envelope: serde_json::json!({}),
        item: vec![1],
        tx_id: tx.into(),
        signed_writes: vec![],
        anchored_writes: vec![],
    }
}

#[test]
fn detection_is_idempotent_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = ChangeEvent::run("a");
    let b = ChangeEvent::TraceLogged {
        trace_id: "t".into(),
    };
    assert!(store.detect(&a).unwrap());
    assert!(store.detect(&b).unwrap());
    assert!(!store.detect(&a).unwrap(), "the same dedupe key is one job");
    let keys: Vec<String> = store.jobs().unwrap().into_iter().map(|j| j.key).collect();
    assert_eq!(keys, ["run/a", "trace/t"]);
    assert_eq!(store.job_count(), 2);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.job_count(), 2, "counted again on open");
}

#[test]
fn the_job_count_follows_restores_and_tombstones() {
    let source = Store::temporary().unwrap();
    for id in ["a", "b", "c"] {
        source.detect(&ChangeEvent::run(id)).unwrap();
    }
    let store = Store::temporary().unwrap();
    for job in source.jobs().unwrap() {
        store
            .restore(JournalEntry::Job(Box::new(job.clone())))
            .unwrap();
        // A later record of the same job replaces it.
        store.restore(JournalEntry::Job(Box::new(job))).unwrap();
    }
    assert_eq!(store.job_count(), 3);
    store
        .restore(JournalEntry::Removed {
            job: "run/b".into(),
        })
        .unwrap();
    store
        .restore(JournalEntry::Removed {
            job: "run/b".into(),
        })
        .unwrap();
    assert_eq!((store.job_count(), store.queue.len()), (2, 2));
    assert!(store.detect(&ChangeEvent::run("d")).unwrap());
    assert_eq!(store.job_count(), 3);
}

#[test]
fn jobs_waiting_on_parked_jobs_are_blocked_and_others_are_not() {
    let store = Store::temporary().unwrap();
    for id in ["a", "b"] {
        store.detect(&ChangeEvent::run(id)).unwrap();
    }
    for (name, on) in [("m", "run/a"), ("n", "run/b"), ("o", "mv/m/1")] {
        store
            .detect(&ChangeEvent::ModelVersionCreated {
                name: name.into(),
                version: "1".into(),
                created_ms: None,
            })
            .unwrap();
        store
            .update(&format!("mv/{name}/1"), |j| {
                j.state = JobState::Waiting {
                    on: on.into(),
                    since_ms: 0,
                }
            })
            .unwrap();
    }
    store
        .update("run/a", |j| {
            j.state = JobState::Parked { error: "x".into() }
        })
        .unwrap();
    let blocked: Vec<String> = store
        .blocked_on_parked()
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    // mv/m/1 waits on parked run/a; mv/o/1 waits on mv/m/1; mv/n/1 waits on open run/b.
    assert_eq!(blocked, ["mv/m/1", "mv/o/1"]);
}

#[test]
fn only_open_jobs_are_indexed_for_due_work() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for id in ["a", "b", "c"] {
            store.detect(&ChangeEvent::run(id)).unwrap();
        }
        assert_eq!(store.open_count(), 3);
        store.update("run/a", |j| j.state = JobState::Done).unwrap();
        store
            .update("run/b", |j| {
                j.state = JobState::Parked { error: "x".into() }
            })
            .unwrap();
        let due: Vec<String> = store
            .due(u64::MAX)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(due, ["run/c"]);
        assert_eq!(
            store.jobs().unwrap().len(),
            3,
            "closed jobs stay for status"
        );
        // Re-opening (retry) puts the job back in the index, in detection order.
        store
            .update("run/b", |j| j.state = JobState::Detected)
            .unwrap();
        let due: Vec<String> = store
            .due(u64::MAX)
            .unwrap()
            .into_iter()
            .map(|j| j.key)
            .collect();
        assert_eq!(due, ["run/b", "run/c"]);
        // A store written before the index existed: drop it and its marker.
        store.open.clear().unwrap();
        store
            .db
            .open_tree("meta")
            .unwrap()
            .remove("open_index")
            .unwrap();
        store.db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.open_count(), 2, "rebuilt from the jobs on open");
    let due: Vec<String> = store
        .due(u64::MAX)
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(due, ["run/b", "run/c"]);
}

#[test]
fn a_job_is_signed_once_and_its_chain_head_moves_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.detect(&ChangeEvent::run("a")).unwrap();
    let job = store
        .sign("run/a", &prepared("tx1"), Some(("rm/m", "hash-a")))
        .unwrap();
    assert_eq!(job.state, JobState::Signed);
    assert_eq!(
        store.chain_head("rm/m").unwrap().unwrap(),
        ChainHead {
            head: "hash-a".into(),
            job: "run/a".into()
        }
    );
    let again = store.sign("run/a", &prepared("tx2"), Some(("rm/m", "hash-b")));
    assert!(again.is_err(), "never signed twice");
    assert_eq!(
        store.chain_head("rm/m").unwrap().unwrap().head,
        "hash-a",
        "a refused signing leaves the head alone"
    );
    assert_eq!(
        store.job("run/a").unwrap().unwrap().prepared.unwrap().tx_id,
        "tx1"
    );
}

#[test]
fn everything_survives_a_reopen_and_a_second_opener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .detect(&ChangeEvent::ModelVersionCreated {
                name: "m".into(),
                version: "1".into(),
                created_ms: None,
            })
            .unwrap();
        store
            .update("mv/m/1", |j| {
                j.state = JobState::Parked {
                    error: "HTTP 402".into(),
                }
            })
            .unwrap();
        store
            .set_cursor("poller", &serde_json::json!({"wm": 5}))
            .unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_)) | Err(StoreError::Sled(_))
        ));
        futures::executor::block_on(store.flush()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.job("mv/m/1").unwrap().unwrap().state,
        JobState::Parked {
            error: "HTTP 402".into()
        }
    );
    assert_eq!(
        store.cursor("poller").unwrap(),
        Some(serde_json::json!({"wm": 5}))
    );
    assert!(
        store.due(u64::MAX).unwrap().is_empty(),
        "parked jobs are not due"
    );
}

#[test]
fn a_job_skipped_as_gone_reopens_when_seen_again_and_others_do_not() {
    let store = Store::temporary().unwrap();
    let run = ChangeEvent::run_finished("r", Some(5));
    assert!(store.detect(&run).unwrap());
    let skip = |redetect: bool| JobState::Skipped {
        reason: "run deleted".into(),
        kind: Some("gone".into()),
        redetect,
    };
    store.update("run/r@5", |j| j.state = skip(true)).unwrap();
    assert_eq!(store.open_count(), 0);
    assert!(store.detect(&run).unwrap(), "restored: reopened");
    let job = store.job("run/r@5").unwrap().unwrap();
    assert_eq!(job.state, JobState::Detected);
    assert_eq!(store.open_count(), 1);
    store.update("run/r@5", |j| j.state = skip(false)).unwrap();
    assert!(
        !store.detect(&run).unwrap(),
        "an ordinary skip absorbs repeats"
    );
}

#[test]
fn a_recreated_version_is_a_new_job_and_the_old_one_moves_aside() {
    let store = Store::temporary().unwrap();
    let mv = |created: Option<i64>| ChangeEvent::ModelVersionCreated {
        name: "m".into(),
        version: "1".into(),
        created_ms: created,
    };
    // A webhook (no creation time), then the poller: the same version, learnt.
    assert!(store.detect(&mv(None)).unwrap());
    assert!(!store.detect(&mv(Some(10))).unwrap());
    store
        .update("mv/m/1", |j| j.state = JobState::Done)
        .unwrap();
    assert!(!store.detect(&mv(Some(10))).unwrap());
    // Deleted and re-created: another creation time is another version.
    assert!(store.detect(&mv(Some(20))).unwrap());
    let new = store.job("mv/m/1").unwrap().unwrap();
    assert_eq!(new.state, JobState::Detected);
    assert!(matches!(
        &new.event,
        ChangeEvent::ModelVersionCreated {
            created_ms: Some(20),
            ..
        }
    ));
    let old = store.job("mv/m/1@10").unwrap().unwrap();
    assert_eq!(
        (old.key.as_str(), &old.state),
        ("mv/m/1@10", &JobState::Done)
    );
    assert_eq!(store.jobs().unwrap().len(), 2);
    assert_eq!(
        store.job_count(),
        store.queue.len(),
        "the counter follows the queue"
    );
}

#[test]
fn a_rename_moves_snapshots_chains_and_open_jobs_and_keys_stay_one() {
    let store = Store::temporary().unwrap();
    store
        .set_snapshot("stage/old/1", &serde_json::json!("Staging"))
        .unwrap();
    store
        .set_snapshot("aliases/old", &serde_json::json!({"live": "1"}))
        .unwrap();
    store
        .detect(&ChangeEvent::ModelVersionCreated {
            name: "old".into(),
            version: "2".into(),
            created_ms: Some(3),
        })
        .unwrap();
    store.detect(&ChangeEvent::run("r")).unwrap();
    store
        .sign("run/r", &prepared("tx"), Some(("rm/old", "h1")))
        .unwrap();
    store.record_rename("old", "new").unwrap();
    assert_eq!(
        store.snapshot("stage/new/1").unwrap(),
        Some(serde_json::json!("Staging"))
    );
    assert_eq!(store.snapshot("stage/old/1").unwrap(), None);
    assert!(store.snapshot("aliases/new").unwrap().is_some());
    assert_eq!(store.chain_head("rm/new").unwrap().unwrap().head, "h1");
    let open = store.job("mv/old/2").unwrap().unwrap();
    assert_eq!(
        open.event.model_name(),
        Some("new"),
        "the open job follows the model"
    );
    // Seen again under the new name: the same job.
    assert!(!store
        .detect(&ChangeEvent::ModelVersionCreated {
            name: "new".into(),
            version: "2".into(),
            created_ms: Some(3),
        })
        .unwrap());
    assert_eq!(
        store.renames().unwrap().get("old").map(String::as_str),
        Some("new")
    );
    // Renamed again: the first name still keys it; back to the first name: no rename left.
    store.record_rename("new", "newer").unwrap();
    assert_eq!(store.first_name("newer").as_deref(), Some("old"));
    assert_eq!(
        store.renames().unwrap().get("old").map(String::as_str),
        Some("newer")
    );
    store.record_rename("newer", "old").unwrap();
    assert_eq!(store.first_name("old"), None);
    assert!(!store.renames().unwrap().contains_key("old"));
}

#[test]
fn done_jobs_past_retention_keep_only_their_summary_and_stay_deduped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in ["a", "b"] {
        store.detect(&ChangeEvent::run(id)).unwrap();
    }
    let mut p = prepared("tx-a");
    p.envelope = serde_json::json!({"previous_hash": "GENESIS"});
    p.payload_bytes = vec![7; 2000];
    store.sign("run/a", &p, Some(("exp/1", "h"))).unwrap();
    store.update("run/a", |j| j.state = JobState::Done).unwrap();
    store
        .update("run/b", |j| {
            j.state = JobState::Parked { error: "x".into() }
        })
        .unwrap();
    assert_eq!(store.parked_count(), 1);
    assert_eq!(store.uncompacted_done_count(), 1);
    let before = store.jobs.get("run/a").unwrap().unwrap().len();
    // Not due yet.
    assert_eq!(store.compact(0).unwrap(), 0);
    assert_eq!(store.compact(now_ms() + 1).unwrap(), 1);
    let job = store.job("run/a").unwrap().unwrap();
    assert!(job.prepared.is_none());
    assert_eq!(job.tx_id(), Some("tx-a"));
    assert_eq!(job.summary.as_ref().unwrap().previous_hash, "GENESIS");
    let after = store.jobs.get("run/a").unwrap().unwrap().len();
    assert!(after * 5 < before, "{before} → {after} bytes");
    assert!(
        !store.detect(&ChangeEvent::run("a")).unwrap(),
        "still deduped"
    );
    assert_eq!(store.uncompacted_done_count(), 0);
    assert_eq!(store.compact(now_ms() + 1).unwrap(), 0, "compacted once");
    // Retried, a parked job leaves the parked index.
    store
        .update("run/b", |j| j.state = JobState::Detected)
        .unwrap();
    assert_eq!(store.parked_count(), 0);
}

/// Records what a journaled store hands its journal, as the Kafka state topic would.
#[derive(Debug, Default)]
struct RecordingJournal(std::sync::Mutex<Vec<JournalEntry>>);

impl Journal for RecordingJournal {
    fn record(&self, entries: Vec<JournalEntry>) {
        self.0.lock().unwrap().extend(entries);
    }
    fn commit(&self) -> futures::future::BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn derived(&self, _: &ChangeEvent) -> bool {
        false
    }
}

#[test]
fn a_compacted_job_is_a_tombstone_on_the_journal_and_a_restore_keeps_the_chain() {
    let journal = Arc::new(RecordingJournal::default());
    let store = Store::journaled(journal.clone()).unwrap();
    for id in ["a", "b"] {
        store.detect(&ChangeEvent::run(id)).unwrap();
    }
    let mut p = prepared("tx-a");
    p.envelope = serde_json::json!({"previous_hash": "GENESIS"});
    store.sign("run/a", &p, Some(("exp/1", "h-a"))).unwrap();
    store.update("run/a", |j| j.state = JobState::Done).unwrap();
    assert_eq!(store.compact(now_ms() + 1).unwrap(), 1);
    let entries = journal.0.lock().unwrap().clone();
    let last = entries.last().unwrap();
    assert!(last.is_tombstone(), "{last:?}");
    assert_eq!(last.key(), "job/run/a");
    // A compacted topic keeps the last record per key; a new owner restores from it.
    let mut latest: BTreeMap<String, JournalEntry> = BTreeMap::new();
    for e in entries {
        latest.insert(e.key(), e);
    }
    let restored = Store::journaled(Arc::new(RecordingJournal::default())).unwrap();
    for e in latest.into_values() {
        restored.restore(e).unwrap();
    }
    assert!(restored.job("run/a").unwrap().is_none(), "tombstoned");
    assert_eq!(restored.job_count(), 1, "run/b only");
    assert_eq!(restored.chain_head("exp/1").unwrap().unwrap().head, "h-a");
    assert!(restored
        .job("run/b")
        .unwrap()
        .is_some_and(|j| j.state.is_open()));
}

#[test]
fn an_old_store_migrates_on_open_keeping_dedupe_chains_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.detect(&ChangeEvent::run("a")).unwrap();
        store
            .sign("run/a", &prepared("tx-a"), Some(("exp/1", "h1")))
            .unwrap();
        store.detect(&ChangeEvent::run("p")).unwrap();
        store
            .update("run/p", |j| {
                j.state = JobState::Parked { error: "x".into() }
            })
            .unwrap();
        // As an older build wrote it: bytes as arrays of numbers, no indexes.
        let job = store.job("run/a").unwrap().unwrap();
        let mut v = serde_json::to_value(&job).unwrap();
        v["prepared"]["item"] = serde_json::json!([1, 2, 3]);
        v["prepared"]["payload_bytes"] = serde_json::json!([123, 125]);
        store
            .jobs
            .insert("run/a", serde_json::to_vec(&v).unwrap())
            .unwrap();
        store.parked.clear().unwrap();
        store
            .db
            .open_tree("meta")
            .unwrap()
            .remove("indexes_v2")
            .unwrap();
        store.db.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let job = store.job("run/a").unwrap().unwrap();
    assert_eq!(job.prepared.as_ref().unwrap().item, vec![1, 2, 3]);
    let raw = String::from_utf8(store.jobs.get("run/a").unwrap().unwrap().to_vec()).unwrap();
    assert!(raw.contains(r#""item":"AQID""#), "re-encoded: {raw}");
    assert_eq!(store.parked_count(), 1, "the parked index is built");
    assert_eq!(store.chain_head("exp/1").unwrap().unwrap().head, "h1");
    assert!(!store.detect(&ChangeEvent::run("a")).unwrap());
}

#[test]
fn alias_and_stage_changes_are_found_by_index() {
    let store = Store::temporary().unwrap();
    let alias = |version: &str, seen_ms| ChangeEvent::AliasChanged {
        name: "m".into(),
        alias: "champion".into(),
        version: Some(version.into()),
        previous: None,
        seen_ms,
    };
    store.detect(&alias("1", 1)).unwrap();
    store.detect(&alias("2", 2)).unwrap();
    let newest = store.newest_alias_job("m", "champion").unwrap().unwrap();
    assert_eq!(newest.key, "alias/m/champion/2/2");
    store
        .detect(&ChangeEvent::StageChanged {
            name: "m".into(),
            version: "1".into(),
            from: "None".into(),
            to: "Staging".into(),
            last_updated_ms: 5,
        })
        .unwrap();
    assert!(store.stage_change_seen("m", "1", "Staging", 5).unwrap());
    assert!(!store.stage_change_seen("m", "1", "Staging", 6).unwrap());
}
