//! Debezium change events of MLflow's own database tables → [`ChangeEvent`]s
//! (`--kafka-format debezium`, docs/kafka.md "Change data capture").
//!
//! A Debezium record (Kafka Connect's `JsonConverter`, with or without embedded schemas) is
//! `{before, after, source{table, lsn, ts_ms, sequence, …}, op}`. Four of MLflow's tables carry
//! what deserves a proof; their columns are the same in MLflow 2.x and 3.x (3.x adds the
//! `workspace` key column to the registry's tables, which [`Decoded::workspace`] reports; runs
//! and traces belong to a workspace through their experiment, [`Decoded::experiment_id`]):
//!
//! | table | event |
//! |---|---|
//! | `runs` | `status` became `FINISHED` → [`ChangeEvent::RunFinished`] |
//! | `model_versions` | a `READY` version appeared → [`ChangeEvent::ModelVersionCreated`]; `current_stage` changed → [`ChangeEvent::StageChanged`] with the **`before` image's** stage as `from` |
//! | `registered_model_aliases` | created, moved (`version` updated in place) or deleted → [`ChangeEvent::AliasChanged`] |
//! | `trace_info` | `status` became `OK` → [`ChangeEvent::TraceLogged`] |
//! | `registered_models` | its `name` (the primary key) changed → [`ChangeEvent::ModelRenamed`] |
//!
//! A rename changes primary keys: Debezium emits it as a delete of the old key and a create of
//! the new one, marked by the `__debezium.newkey` / `__debezium.oldkey` headers — for the
//! registered model and for every version and alias that moved with it. Only the registered
//! model's becomes an event (the rename); the rows that moved with it are skipped as `renamed`
//! (they are not new versions, stages or aliases).
//!
//! Snapshot reads (`op = r`) are the backfill: a version read in a stage other than `None`
//! gives its registration and a `None → stage` promotion, as the poller's first pass does (the
//! history before the snapshot is not in the database). Everything else — tombstones, rows that
//! changed without producing an event, other tables, a row without a column the decoder needs —
//! is a [`Skip`] with a reason (counted, never a dead letter); only a value that is not a
//! Debezium change event at all is a [`Rejection`] (a dead letter).

use serde_json::{Map, Value};

use crate::event::ChangeEvent;
use crate::feed::cloudevents::Rejection;

/// Where a change sits in the database's commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct CommitPosition {
    /// The commit LSN Debezium reports first in `source.sequence` (PostgreSQL), else the
    /// change's LSN.
    pub commit_lsn: u64,
    /// The change's own LSN (`source.lsn`) within its transaction.
    pub lsn: u64,
}

/// A decoded Debezium record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The MLflow table (`source.table`; empty for a tombstone).
    pub table: String,
    /// The events the change carries (none, one, or a registration with its promotion).
    pub events: Vec<ChangeEvent>,
    /// Why nothing (or not everything) became an event.
    pub skipped: Option<Skip>,
    /// Commit order (`None`: the record has no LSN, e.g. MySQL's binlog coordinates).
    pub position: Option<CommitPosition>,
    /// `source.ts_ms`: when the change was committed (ms since the epoch).
    pub committed_ms: Option<i64>,
    /// The row's MLflow workspace (its `workspace` column: registry tables of MLflow 3); `None`
    /// for rows without one (MLflow 2.x, runs, traces).
    pub workspace: Option<String>,
    /// The experiment of a run or trace row (what places it in a workspace).
    pub experiment_id: Option<String>,
}

impl Decoded {
    /// The table as a metric label: one of [`TABLES`], `other`, or `none` (no table: a
    /// tombstone or heartbeat).
    pub fn table_label(&self) -> &'static str {
        match TABLES.iter().find(|t| **t == self.table) {
            Some(t) => t,
            None if self.table.is_empty() => "none",
            None => "other",
        }
    }
}

/// Why a record gave no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// A stable reason, the metric label: `tombstone`, `heartbeat`, `no_event`, `deleted`,
    /// `truncate`, `unknown_table`, `missing_column`, `no_before_image`, `other_workspace` (the
    /// CDC stage: a workspace this service does not anchor),
    /// `renamed`.
    pub reason: &'static str,
    /// What exactly, for the log.
    pub detail: String,
}

impl Skip {
    /// Whether an operator should hear about it (a warning) rather than a debug line: the
    /// decoder met a schema it does not know, or the connector lacks a setting proofs need.
    pub fn is_warning(&self) -> bool {
        matches!(
            self.reason,
            "unknown_table" | "missing_column" | "no_before_image"
        )
    }
}

/// The tables the decoder knows.
pub const TABLES: [&str; 5] = [
    "runs",
    "model_versions",
    "registered_model_aliases",
    "trace_info",
    "registered_models",
];

/// The header Debezium puts on the create half of a primary-key change (the old key).
pub const OLD_KEY_HEADER: &str = "__debezium.oldkey";
/// The header Debezium puts on the delete half of a primary-key change (the new key).
pub const NEW_KEY_HEADER: &str = "__debezium.newkey";

fn reject(class: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        class,
        message: message.into(),
    }
}

fn skip(reason: &'static str, detail: impl Into<String>) -> Skip {
    Skip {
        reason,
        detail: detail.into(),
    }
}

/// Decodes one record value (`None`: a tombstone).
pub fn decode(value: Option<&[u8]>, max_bytes: usize) -> Result<Decoded, Rejection> {
    decode_with_headers(value, &[], max_bytes)
}

/// Decodes one record, its headers telling a primary-key change (a rename) from a real create
/// or delete.
pub fn decode_with_headers(
    value: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    max_bytes: usize,
) -> Result<Decoded, Rejection> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    };
    let old_key = header(OLD_KEY_HEADER).map(key_name);
    let mut decoded = decode_value(value, max_bytes, old_key.as_ref())?;
    if header(NEW_KEY_HEADER).is_some()
        || (old_key.is_some() && decoded.table != "registered_models")
    {
        decoded.events.clear();
        decoded.skipped = Some(skip(
            "renamed",
            format!(
                "a {} row moved with its registered model's rename (a primary-key change)",
                decoded.table
            ),
        ));
    }
    Ok(decoded)
}

/// The `name` in a primary key as the key converter wrote it (`{schema, payload}` or bare).
fn key_name(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let key = v.get("payload").filter(|p| p.is_object()).unwrap_or(&v);
    key.get("name").and_then(Value::as_str).map(str::to_owned)
}

fn decode_value(
    value: Option<&[u8]>,
    max_bytes: usize,
    old_key: Option<&Option<String>>,
) -> Result<Decoded, Rejection> {
    let nothing = |table: String, s: Skip| Decoded {
        table,
        events: Vec::new(),
        skipped: Some(s),
        position: None,
        committed_ms: None,
        workspace: None,
        experiment_id: None,
    };
    let Some(value) = value else {
        return Ok(nothing(
            String::new(),
            skip("tombstone", "tombstone (compaction marker after a delete)"),
        ));
    };
    if value.len() > max_bytes {
        return Err(reject(
            "MessageTooLarge",
            format!(
                "the record value is {} bytes, over the limit of {max_bytes} (--kafka-max-message-bytes)",
                value.len()
            ),
        ));
    }
    let parsed: Value = serde_json::from_slice(value)
        .map_err(|e| reject("InvalidJson", format!("the record value is not JSON: {e}")))?;
    // With `schemas.enable=true` the JsonConverter wraps the record: {schema, payload}.
    let record = match parsed {
        Value::Object(mut m) if m.contains_key("schema") && m.contains_key("payload") => {
            m.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    };
    let record = match record {
        Value::Null => {
            return Ok(nothing(
                String::new(),
                skip("tombstone", "tombstone (schema-wrapped null payload)"),
            ))
        }
        Value::Object(m) => m,
        _ => {
            return Err(reject(
                "NotDebezium",
                "the record value is not a JSON object (is --kafka-format debezium right for this topic?)",
            ))
        }
    };
    let op = record.get("op").and_then(Value::as_str);
    let source = record.get("source").and_then(Value::as_object);
    let (op, source) = match (op, source) {
        (Some(op), Some(source)) => (op, source),
        // A heartbeat record ({"ts_ms": …}) if the heartbeat topic is subscribed too.
        (None, None) if record.len() == 1 && record.contains_key("ts_ms") => {
            return Ok(nothing(String::new(), skip("heartbeat", "connector heartbeat")))
        }
        _ => {
            return Err(reject(
                "NotDebezium",
                "the record is not a Debezium change event (no op and source; is --kafka-format debezium right for this topic?)",
            ))
        }
    };
    let table = source
        .get("table")
        .and_then(Value::as_str)
        .ok_or_else(|| reject("NotDebezium", "the change event has no source.table"))?
        .to_string();
    let position = commit_position(source);
    let committed_ms = source.get("ts_ms").and_then(Value::as_i64);
    let row = |k: &str| record.get(k).and_then(Value::as_object);
    let change = Change {
        op,
        before: row("before"),
        after: row("after"),
        committed_ms: committed_ms.unwrap_or(0),
    };
    let result = match op {
        "c" | "u" | "d" | "r" => match table.as_str() {
            "runs" => change.run(),
            "model_versions" => change.model_version(),
            "registered_model_aliases" => change.alias(),
            "trace_info" => change.trace(),
            "registered_models" => change.registered_model(old_key),
            other => Err(skip(
                "unknown_table",
                format!(
                    "table {other} is not one the decoder knows ({}); drop it from table.include.list",
                    TABLES.join(", ")
                ),
            )),
        },
        "t" => Err(skip("truncate", format!("{table} truncated"))),
        other => Err(skip(
            "no_event",
            format!("operation {other:?} on {table} carries no event"),
        )),
    };
    let (events, skipped) = match result {
        Ok((events, skipped)) => (events, skipped),
        Err(s) => (Vec::new(), Some(s)),
    };
    let image = change.after.or(change.before);
    let column = |name: &str| {
        image.and_then(|r| match r.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(v @ Value::Number(_)) => Some(v.to_string()),
            _ => None,
        })
    };
    Ok(Decoded {
        workspace: column("workspace"),
        experiment_id: match table.as_str() {
            "runs" | "trace_info" => column("experiment_id"),
            _ => None,
        },
        table,
        events,
        skipped,
        position,
        committed_ms,
    })
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn commit_position(source: &Map<String, Value>) -> Option<CommitPosition> {
    let lsn = source.get("lsn").and_then(number)?;
    // PostgreSQL: sequence = "[\"<last commit lsn>\",\"<lsn>\"]" (first may be null).
    let commit_lsn = source
        .get("sequence")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Vec<Value>>(s).ok())
        .and_then(|seq| seq.first().and_then(number))
        .unwrap_or(lsn);
    Some(CommitPosition { commit_lsn, lsn })
}

/// One change, its rows borrowed from the record.
struct Change<'a> {
    op: &'a str,
    before: Option<&'a Map<String, Value>>,
    after: Option<&'a Map<String, Value>>,
    committed_ms: i64,
}

type Outcome = Result<(Vec<ChangeEvent>, Option<Skip>), Skip>;

fn text(row: &Map<String, Value>, table: &str, column: &str) -> Result<String, Skip> {
    match row.get(column) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ Value::Number(_)) => Ok(v.to_string()),
        _ => Err(skip(
            "missing_column",
            format!("{table} row without column {column} (a schema the decoder does not know)"),
        )),
    }
}

fn optional<'r>(row: &'r Map<String, Value>, column: &str) -> Option<&'r str> {
    row.get(column).and_then(Value::as_str)
}

fn none(detail: impl Into<String>) -> Outcome {
    Err(skip("no_event", detail))
}

impl<'a> Change<'a> {
    /// The row as it is now (`after`), or the skip for a delete.
    fn after(&self, table: &str) -> Result<&'a Map<String, Value>, Skip> {
        if self.op == "d" {
            return Err(skip("deleted", format!("a {table} row was deleted")));
        }
        let row = self.after.ok_or_else(|| {
            skip(
                "missing_column",
                format!("{table} change without an after image"),
            )
        })?;
        Ok(row)
    }

    /// Whether `column` reached `value` in this change (inserted or read with it, or updated
    /// to it from something else; without a `before` image every update that shows it counts —
    /// the dedupe key absorbs repeats).
    fn reached(&self, after: &Map<String, Value>, column: &str, value: &str) -> bool {
        if optional(after, column) != Some(value) {
            return false;
        }
        match (self.op, self.before) {
            ("u", Some(before)) => optional(before, column) != Some(value),
            _ => true,
        }
    }

    fn run(&self) -> Outcome {
        let after = self.after("runs")?;
        let run_id = text(after, "runs", "run_uuid")?;
        text(after, "runs", "status")?;
        if optional(after, "lifecycle_stage") == Some("deleted") {
            return none(format!("run {run_id} is deleted"));
        }
        if self.reached(after, "status", "FINISHED") {
            let end_time = after.get("end_time").and_then(Value::as_i64);
            Ok((vec![ChangeEvent::run_finished(run_id, end_time)], None))
        } else {
            none(format!("run {run_id} did not finish in this change"))
        }
    }

    fn model_version(&self) -> Outcome {
        let after = self.after("model_versions")?;
        let name = text(after, "model_versions", "name")?;
        let version = text(after, "model_versions", "version")?;
        let stage = text(after, "model_versions", "current_stage")?;
        let last_updated_ms = after
            .get("last_updated_time")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        // MLflow 2.x and 3.x both have `status`; a version without it is taken as READY.
        let ready = optional(after, "status").unwrap_or("READY") == "READY";
        let created = ChangeEvent::ModelVersionCreated {
            name: name.clone(),
            version: version.clone(),
            created_ms: after.get("creation_time").and_then(Value::as_i64),
        };
        let promoted = |from: String| ChangeEvent::StageChanged {
            name: name.clone(),
            version: version.clone(),
            from,
            to: stage.clone(),
            last_updated_ms,
        };
        match (self.op, self.before) {
            ("c" | "r", _) => {
                let mut events = Vec::new();
                if ready {
                    events.push(created);
                }
                if ready && stage != "None" {
                    // Read in a stage: its history is not in the database.
                    events.push(promoted("None".into()));
                }
                if events.is_empty() {
                    return none(format!("{name}/{version} is not READY yet"));
                }
                Ok((events, None))
            }
            (_, Some(before)) => {
                let mut events = Vec::new();
                if ready && optional(before, "status").unwrap_or("READY") != "READY" {
                    events.push(created);
                }
                let from = text(before, "model_versions", "current_stage")?;
                if ready && from != stage {
                    events.push(promoted(from));
                }
                if events.is_empty() {
                    return none(format!("{name}/{version} changed without a new stage"));
                }
                Ok((events, None))
            }
            (_, None) => {
                // Without REPLICA IDENTITY FULL an update carries no before image: the stage
                // it left is unknown, and a promotion proof with a guessed `from` is false.
                let events = if ready { vec![created] } else { Vec::new() };
                Ok((
                    events,
                    Some(skip(
                        "no_before_image",
                        format!(
                            "{name}/{version} updated (stage {stage}) without a before image: its previous stage is unknown, no promotion anchored — set REPLICA IDENTITY FULL on model_versions (deploy/debezium/README.md)"
                        ),
                    )),
                ))
            }
        }
    }

    fn alias(&self) -> Outcome {
        const TABLE: &str = "registered_model_aliases";
        let seen_ms = self.committed_ms;
        let changed = |row: &Map<String, Value>,
                       version: Option<String>,
                       previous: Option<String>|
         -> Result<ChangeEvent, Skip> {
            Ok(ChangeEvent::AliasChanged {
                name: text(row, TABLE, "name")?,
                alias: text(row, TABLE, "alias")?,
                version,
                previous,
                seen_ms,
            })
        };
        if self.op == "d" {
            // The key columns alone (default replica identity) do not say which version the
            // alias pointed at.
            let before = self.before.ok_or_else(|| {
                skip(
                    "no_before_image",
                    "alias deleted without a before image: set REPLICA IDENTITY FULL on registered_model_aliases",
                )
            })?;
            let previous = match text(before, TABLE, "version") {
                Ok(v) => v,
                Err(_) => {
                    return Err(skip(
                        "no_before_image",
                        "alias deleted, its version not in the before image: set REPLICA IDENTITY FULL on registered_model_aliases",
                    ))
                }
            };
            return Ok((vec![changed(before, None, Some(previous))?], None));
        }
        let after = self.after(TABLE)?;
        let version = text(after, TABLE, "version")?;
        let previous = match (self.op, self.before) {
            ("u", Some(before)) => Some(text(before, TABLE, "version")?),
            _ => None,
        };
        if previous.as_deref() == Some(version.as_str()) {
            return none("alias updated without moving");
        }
        Ok((vec![changed(after, Some(version), previous)?], None))
    }

    /// A registered model's row: only a rename (the create half of a primary-key change,
    /// `old_key` from its header) is an event.
    fn registered_model(&self, old_key: Option<&Option<String>>) -> Outcome {
        const TABLE: &str = "registered_models";
        let Some(old) = old_key else {
            return none("a registered model row changed without a rename");
        };
        let after = self.after(TABLE)?;
        let to = text(after, TABLE, "name")?;
        let Some(from) = old.clone().filter(|f| f != &to) else {
            return Err(skip(
                "missing_column",
                format!("{TABLE} key change without the old name in {OLD_KEY_HEADER}"),
            ));
        };
        let updated_ms = after
            .get("last_updated_time")
            .and_then(Value::as_i64)
            .unwrap_or(self.committed_ms);
        Ok((
            vec![ChangeEvent::ModelRenamed {
                from,
                to,
                updated_ms,
            }],
            None,
        ))
    }

    fn trace(&self) -> Outcome {
        let after = self.after("trace_info")?;
        let trace_id = text(after, "trace_info", "request_id")?;
        text(after, "trace_info", "status")?;
        if self.reached(after, "status", "OK") {
            Ok((vec![ChangeEvent::TraceLogged { trace_id }], None))
        } else {
            none(format!("trace {trace_id} did not reach OK in this change"))
        }
    }
}

#[cfg(test)]
mod tests;
