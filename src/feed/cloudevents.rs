//! The change-event message on Kafka: one [`ChangeEvent`] per message, framed as a
//! CloudEvents 1.0 event (docs/kafka.md, schema in docs/change-event.schema.json).
//!
//! * **binary mode** (what `feed` produces): headers `ce_specversion` = `1.0`, `ce_id` (the
//!   dedupe key: a duplicate has the same id), `ce_source`, `ce_type` =
//!   `io.ario.mlflow.<event_type>`, `ce_subject`, `ce_time`, `content-type: application/json`;
//!   the body is the event's identities as JSON with `schema_version`.
//! * **structured mode**: `content-type: application/cloudevents+json`, the body one JSON
//!   object with the context attributes and the same identities under `data`.
//!
//! An event of an MLflow workspace other than the default travels on that workspace's own topic
//! (`KafkaSettings::in_workspace`) and says so: the extension attribute `mlflowworkspace`
//! (`ce_mlflowworkspace`) and a `source` of `<tracking uri>/workspaces/<name>` — the same
//! dedupe key (`id`) in two workspaces is two events. A consumer rejects a message of another
//! workspace than its topic's (`WorkspaceMismatch`); no attribute means the default workspace.
//!
//! The message key is the event's [`ChangeEvent::partition_key`] (its chain key), so one chain
//! lives in one partition; a message whose key disagrees is rejected — a run signed in the
//! wrong partition could fork its chain. Pure: no Kafka client here, so the codec is tested
//! without a broker and shared by the producer and the consumer.

use serde_json::{json, Map, Value};

use crate::event::ChangeEvent;
use crate::profile;

/// The body's schema version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// CloudEvents spec version.
pub const SPEC_VERSION: &str = "1.0";

/// Prefix of `ce_type`.
pub const TYPE_PREFIX: &str = "io.ario.mlflow.";

/// `content-type` of a structured-mode message.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The CloudEvents extension attribute naming the event's MLflow workspace (absent: the
/// default workspace).
pub const WORKSPACE_ATTRIBUTE: &str = "mlflowworkspace";

/// Default cap on a message's value (a change event is a few hundred bytes).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A message as it goes to (or came from) Kafka, without the client's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The key (the partition key).
    pub key: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The value.
    pub value: Vec<u8>,
}

/// How the event is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Context attributes in `ce_*` headers, the data as the body.
    #[default]
    Binary,
    /// One `application/cloudevents+json` body.
    Structured,
}

/// Why a message was rejected (it goes to the dead-letter topic with this as its error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// A stable class name (`__ario.errors.exception.class`).
    pub class: &'static str,
    /// What was wrong, for people.
    pub message: String,
}

fn reject(class: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        class,
        message: message.into(),
    }
}

/// The event type names `ce_type` may carry (after the prefix).
pub const EVENT_TYPES: [&str; 7] = [
    profile::training::EVENT_TYPE,
    profile::dataset::EVENT_TYPE,
    profile::registration::EVENT_TYPE,
    profile::promotion::EVENT_TYPE,
    profile::alias::EVENT_TYPE,
    profile::prediction::EVENT_TYPE,
    profile::rename::EVENT_TYPE,
];

/// The JSON body (the `data`): the event's identities plus the schema version.
pub fn data(event: &ChangeEvent) -> Value {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
    v
}

/// The workspace `workspace` names, `None` for the default one (which carries no attribute).
fn non_default(workspace: Option<&str>) -> Option<&str> {
    workspace.filter(|w| *w != crate::mlflow::DEFAULT_WORKSPACE)
}

/// The `source` of an event of `workspace` produced from the tracking server `source`.
pub fn workspace_source(source: &str, workspace: Option<&str>) -> String {
    match non_default(workspace) {
        Some(w) => format!("{}/workspaces/{w}", source.trim_end_matches('/')),
        None => source.to_string(),
    }
}

/// Frames `event` of MLflow workspace `workspace` (`None`: the default) as a message from
/// `source` (a URI reference naming the producer: the tracking URI), at `time` (RFC 3339). The
/// event must have a partition key (a run's chain must be pinned).
pub fn encode(
    event: &ChangeEvent,
    source: &str,
    workspace: Option<&str>,
    time: &str,
    mode: Mode,
) -> Option<Message> {
    let key = event.partition_key()?.into_bytes();
    let ce_type = format!("{TYPE_PREFIX}{}", event.event_type());
    let id = event.dedupe_key();
    let subject = event.subject();
    let workspace = non_default(workspace);
    let source = workspace_source(source, workspace);
    Some(match mode {
        Mode::Binary => {
            let mut headers: Vec<(String, Vec<u8>)> = vec![
                ("ce_specversion".into(), SPEC_VERSION.into()),
                ("ce_id".into(), id.into_bytes()),
                ("ce_source".into(), source.into_bytes()),
                ("ce_type".into(), ce_type.into_bytes()),
                ("ce_subject".into(), subject.into_bytes()),
                ("ce_time".into(), time.as_bytes().to_vec()),
                ("content-type".into(), b"application/json".to_vec()),
            ];
            if let Some(w) = workspace {
                headers.push((format!("ce_{WORKSPACE_ATTRIBUTE}"), w.as_bytes().to_vec()));
            }
            Message {
                key,
                headers,
                value: data(event).to_string().into_bytes(),
            }
        }
        Mode::Structured => {
            let mut body = json!({
                "specversion": SPEC_VERSION,
                "id": id,
                "source": source,
                "type": ce_type,
                "subject": subject,
                "time": time,
                "datacontenttype": "application/json",
                "data": data(event),
            });
            if let Some(w) = workspace {
                body[WORKSPACE_ATTRIBUTE] = json!(w);
            }
            Message {
                key,
                headers: vec![("content-type".into(), STRUCTURED_CONTENT_TYPE.into())],
                value: body.to_string().into_bytes(),
            }
        }
    })
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

fn header_text<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Result<&'a str, Rejection> {
    let v = header(headers, name)
        .ok_or_else(|| reject("MissingAttribute", format!("header {name} is missing")))?;
    std::str::from_utf8(v)
        .map_err(|_| reject("InvalidAttribute", format!("header {name} is not UTF-8")))
}

/// Decodes and validates a message into the event it carries; the message must be of MLflow
/// workspace `workspace` (`None`: the default), the one its topic carries.
pub fn decode(
    key: Option<&[u8]>,
    headers: &[(String, Vec<u8>)],
    value: Option<&[u8]>,
    max_bytes: usize,
    workspace: Option<&str>,
) -> Result<ChangeEvent, Rejection> {
    let value = value.ok_or_else(|| reject("EmptyMessage", "the message has no value"))?;
    if value.len() > max_bytes {
        return Err(reject(
            "MessageTooLarge",
            format!(
                "the message value is {} bytes, over the limit of {max_bytes} (--kafka-max-message-bytes)",
                value.len()
            ),
        ));
    }
    let structured = header(headers, "content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .is_some_and(|ct| ct.trim().starts_with(STRUCTURED_CONTENT_TYPE));
    let parsed: Value = serde_json::from_slice(value)
        .map_err(|e| reject("InvalidJson", format!("the message value is not JSON: {e}")))?;
    let (spec, ce_type, data, made_in) = if structured {
        let Value::Object(mut m) = parsed else {
            return Err(reject(
                "InvalidEnvelope",
                "a structured CloudEvent must be a JSON object",
            ));
        };
        let text = |m: &Map<String, Value>, k: &str| -> Result<String, Rejection> {
            m.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| reject("MissingAttribute", format!("attribute {k} is missing")))
        };
        let spec = text(&m, "specversion")?;
        let ce_type = text(&m, "type")?;
        text(&m, "id")?;
        text(&m, "source")?;
        let data = m
            .remove("data")
            .ok_or_else(|| reject("MissingIdentity", "the CloudEvent has no data"))?;
        let made_in = m
            .get(WORKSPACE_ATTRIBUTE)
            .map(|w| w.as_str().map(str::to_string))
            .map(|w| {
                w.ok_or_else(|| {
                    reject(
                        "InvalidAttribute",
                        format!("attribute {WORKSPACE_ATTRIBUTE} is not a string"),
                    )
                })
            })
            .transpose()?;
        (spec, ce_type, data, made_in)
    } else {
        let spec = header_text(headers, "ce_specversion")?.to_string();
        let ce_type = header_text(headers, "ce_type")?.to_string();
        header_text(headers, "ce_id")?;
        header_text(headers, "ce_source")?;
        let attribute = format!("ce_{WORKSPACE_ATTRIBUTE}");
        let made_in = match header(headers, &attribute) {
            Some(_) => Some(header_text(headers, &attribute)?.to_string()),
            None => None,
        };
        (spec, ce_type, parsed, made_in)
    };
    let made_in = non_default(made_in.as_deref());
    if made_in != non_default(workspace) {
        let name = |w: Option<&str>| w.unwrap_or(crate::mlflow::DEFAULT_WORKSPACE).to_string();
        return Err(reject(
            "WorkspaceMismatch",
            format!(
                "the event is of MLflow workspace {:?}, this topic carries workspace {:?}'s (each workspace has its own topic)",
                name(made_in),
                name(workspace)
            ),
        ));
    }
    if spec != SPEC_VERSION {
        return Err(reject(
            "UnsupportedSpecVersion",
            format!("CloudEvents specversion {spec:?}; this build reads {SPEC_VERSION}"),
        ));
    }
    let event_type = ce_type
        .strip_prefix(TYPE_PREFIX)
        .filter(|t| EVENT_TYPES.contains(t))
        .ok_or_else(|| {
            reject(
                "UnknownEventType",
                format!(
                    "type {ce_type:?} is not {TYPE_PREFIX}<one of {}>",
                    EVENT_TYPES.join("|")
                ),
            )
        })?;
    match data.get("schema_version").and_then(Value::as_u64) {
        Some(SCHEMA_VERSION) => {}
        other => {
            return Err(reject(
                "UnsupportedSchemaVersion",
                format!(
                    "schema_version {}; this build reads {SCHEMA_VERSION}",
                    other
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "missing".into())
                ),
            ))
        }
    }
    let event: ChangeEvent = serde_json::from_value(data).map_err(|e| {
        reject(
            "MissingIdentity",
            format!("the data does not name an event: {e}"),
        )
    })?;
    if event.event_type() != event_type {
        return Err(reject(
            "TypeMismatch",
            format!(
                "type says {event_type}, the data is a {}",
                event.event_type()
            ),
        ));
    }
    if identities(&event).iter().any(|s| s.trim().is_empty()) {
        return Err(reject(
            "MissingIdentity",
            "an identity of the event is empty",
        ));
    }
    let Some(expected) = event.partition_key() else {
        return Err(reject(
            "MissingChain",
            "a run_finished event must name its chain (rm/<name> or exp/<id>)",
        ));
    };
    if let ChangeEvent::RunFinished { chain: Some(c), .. } = &event {
        if crate::event::ChainOwner::from_chain_key(c).is_none() {
            return Err(reject(
                "InvalidChain",
                format!("chain {c:?} is neither rm/<name> nor exp/<id>"),
            ));
        }
    }
    if key != Some(expected.as_bytes()) {
        return Err(reject(
            "KeyMismatch",
            format!(
                "the message key is {:?}, the event's chain key is {expected:?} (a chain must live in one partition)",
                key.map(String::from_utf8_lossy).unwrap_or_default()
            ),
        ));
    }
    Ok(event)
}

fn identities(event: &ChangeEvent) -> Vec<&str> {
    match event {
        ChangeEvent::RunFinished { run_id, .. } => vec![run_id],
        ChangeEvent::DatasetInput {
            run_id,
            name,
            digest,
        } => vec![run_id, name, digest],
        ChangeEvent::ModelVersionCreated { name, version, .. } => vec![name, version],
        ChangeEvent::ModelRenamed { from, to, .. } => vec![from, to],
        ChangeEvent::StageChanged {
            name,
            version,
            from,
            to,
            ..
        } => vec![name, version, from, to],
        ChangeEvent::AliasChanged { name, alias, .. } => vec![name, alias],
        ChangeEvent::TraceLogged { trace_id } => vec![trace_id],
        ChangeEvent::PredictionCheckpoint {
            name,
            version,
            tx_id,
        } => vec![name, version, tx_id],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<ChangeEvent> {
        vec![
            ChangeEvent::RunFinished {
                run_id: "r1".into(),
                chain: Some("rm/m".into()),
                end_time: None,
            },
            ChangeEvent::RunFinished {
                run_id: "r2".into(),
                chain: Some("exp/3".into()),
                end_time: Some(1_796_000_000_000),
            },
            ChangeEvent::DatasetInput {
                run_id: "r1".into(),
                name: "d".into(),
                digest: "ab".into(),
            },
            ChangeEvent::ModelVersionCreated {
                name: "m".into(),
                version: "1".into(),
                created_ms: Some(1_796_000_000_001),
            },
            ChangeEvent::ModelRenamed {
                from: "m-old".into(),
                to: "m".into(),
                updated_ms: 7,
            },
            ChangeEvent::StageChanged {
                name: "m".into(),
                version: "1".into(),
                from: "None".into(),
                to: "Staging".into(),
                last_updated_ms: 5,
            },
            ChangeEvent::AliasChanged {
                name: "m".into(),
                alias: "champion".into(),
                version: None,
                previous: Some("1".into()),
                seen_ms: 9,
            },
            ChangeEvent::TraceLogged {
                trace_id: "tr-1".into(),
            },
        ]
    }

    #[test]
    fn both_modes_round_trip_every_event_kind() {
        for mode in [Mode::Binary, Mode::Structured] {
            for ev in events() {
                let m = encode(
                    &ev,
                    "http://mlflow:5000",
                    None,
                    "2026-12-01T00:00:00Z",
                    mode,
                )
                .unwrap();
                assert_eq!(m.key, ev.partition_key().unwrap().into_bytes());
                let back = decode(Some(&m.key), &m.headers, Some(&m.value), 1 << 16, None);
                assert_eq!(back.as_ref(), Ok(&ev), "{mode:?} {ev:?}");
            }
        }
    }

    #[test]
    fn a_workspace_event_names_its_workspace_and_is_refused_on_another_topic() {
        let ev = ChangeEvent::ModelVersionCreated {
            name: "fraud".into(),
            version: "3".into(),
            created_ms: None,
        };
        for mode in [Mode::Binary, Mode::Structured] {
            let m = encode(&ev, "http://mlflow:5000/", Some("team-b"), "t", mode).unwrap();
            // Same key and id as the default workspace's fraud/3: the topic and the source
            // tell them apart.
            assert_eq!(m.key, b"rm/fraud");
            let headers: Vec<String> = m
                .headers
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect();
            let text = format!("{headers:?} {}", String::from_utf8_lossy(&m.value));
            assert!(
                text.contains("http://mlflow:5000/workspaces/team-b"),
                "{mode:?}: {text}"
            );
            let read = |w| decode(Some(&m.key), &m.headers, Some(&m.value), 1 << 16, w);
            assert_eq!(read(Some("team-b")), Ok(ev.clone()), "{mode:?}");
            for other in [None, Some("default"), Some("team-a")] {
                assert_eq!(
                    read(other).unwrap_err().class,
                    "WorkspaceMismatch",
                    "{mode:?}"
                );
            }
            // The default workspace's event (no attribute) is refused on team-b's topic.
            let plain = encode(&ev, "http://mlflow:5000", Some("default"), "t", mode).unwrap();
            assert!(!plain
                .headers
                .iter()
                .any(|(k, _)| k.contains("mlflowworkspace")));
            assert!(!String::from_utf8_lossy(&plain.value).contains("mlflowworkspace"));
            let read = |w| {
                decode(
                    Some(&plain.key),
                    &plain.headers,
                    Some(&plain.value),
                    1 << 16,
                    w,
                )
            };
            assert_eq!(read(Some("default")), Ok(ev.clone()));
            assert_eq!(read(Some("team-b")).unwrap_err().class, "WorkspaceMismatch");
        }
    }

    #[test]
    fn the_published_schema_names_every_kind_and_its_required_fields() {
        let schema: Value =
            serde_json::from_str(include_str!("../../docs/change-event.schema.json")).unwrap();
        let kinds: Vec<&str> = schema["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for ev in events() {
            let d = data(&ev);
            let kind = d["kind"].as_str().unwrap();
            assert!(kinds.contains(&kind), "{kind} missing from the schema");
            let branch = schema["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["properties"]["kind"]["const"] == kind)
                .unwrap();
            for field in branch["required"].as_array().unwrap() {
                let field = field.as_str().unwrap();
                assert!(
                    d.get(field).is_some(),
                    "{kind}: the schema requires {field}: {d}"
                );
            }
            for (field, _) in d.as_object().unwrap() {
                assert!(
                    field == "kind"
                        || field == "schema_version"
                        || branch["properties"].get(field).is_some(),
                    "{kind}: {field} is not in the schema"
                );
            }
        }
    }

    #[test]
    fn a_run_without_a_pinned_chain_has_no_message() {
        assert!(encode(&ChangeEvent::run("r"), "s", None, "t", Mode::Binary).is_none());
    }

    fn class_of(key: &[u8], headers: &[(String, Vec<u8>)], value: &[u8]) -> &'static str {
        decode(Some(key), headers, Some(value), 1024, None)
            .unwrap_err()
            .class
    }

    #[test]
    fn each_malformed_kind_is_rejected_with_its_class() {
        let ev = ChangeEvent::ModelVersionCreated {
            name: "m".into(),
            version: "1".into(),
            created_ms: None,
        };
        let good = encode(&ev, "s", None, "t", Mode::Binary).unwrap();
        let with_header = |name: &str, value: &str| {
            let mut h: Vec<_> = good
                .headers
                .iter()
                .filter(|(k, _)| k != name)
                .cloned()
                .collect();
            h.push((name.into(), value.as_bytes().to_vec()));
            h
        };
        assert_eq!(
            class_of(&good.key, &good.headers, b"not json"),
            "InvalidJson"
        );
        assert_eq!(
            class_of(
                &good.key,
                &with_header("ce_type", "io.ario.mlflow.nope"),
                &good.value
            ),
            "UnknownEventType"
        );
        assert_eq!(
            class_of(
                &good.key,
                &with_header("ce_specversion", "0.3"),
                &good.value
            ),
            "UnsupportedSpecVersion"
        );
        assert_eq!(
            class_of(
                &good.key,
                &good.headers,
                br#"{"kind":"model_version_created","name":"m","schema_version":1}"#
            ),
            "MissingIdentity"
        );
        assert_eq!(
            class_of(
                &good.key,
                &good.headers,
                br#"{"kind":"model_version_created","name":"m","version":"1","schema_version":2}"#
            ),
            "UnsupportedSchemaVersion"
        );
        assert_eq!(
            class_of(
                &good.key,
                &good.headers,
                br#"{"kind":"model_version_created","name":"","version":"1","schema_version":1}"#
            ),
            "MissingIdentity"
        );
        assert_eq!(
            class_of(
                &good.key,
                &with_header("ce_type", "io.ario.mlflow.prediction"),
                &good.value
            ),
            "TypeMismatch"
        );
        assert_eq!(
            class_of(b"rm/other", &good.headers, &good.value),
            "KeyMismatch"
        );
        let no_id: Vec<_> = good
            .headers
            .iter()
            .filter(|(k, _)| k != "ce_id")
            .cloned()
            .collect();
        assert_eq!(class_of(&good.key, &no_id, &good.value), "MissingAttribute");
        let big = vec![b' '; 2048];
        assert_eq!(class_of(&good.key, &good.headers, &big), "MessageTooLarge");
        assert_eq!(
            decode(Some(&good.key), &good.headers, None, 1024, None)
                .unwrap_err()
                .class,
            "EmptyMessage"
        );
        let run = br#"{"kind":"run_finished","run_id":"r","schema_version":1}"#;
        let run_headers = with_header("ce_type", "io.ario.mlflow.training_complete");
        assert_eq!(class_of(b"exp/1", &run_headers, run), "MissingChain");
        let bad_chain = br#"{"kind":"run_finished","run_id":"r","chain":"x/1","schema_version":1}"#;
        assert_eq!(class_of(b"x/1", &run_headers, bad_chain), "InvalidChain");
    }
}
