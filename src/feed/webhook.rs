//! MLflow webhooks as a source (MLflow 3.x registry webhooks, spec/mlflow-rest.md §4).
//!
//! A delivery is `POST` with `X-MLflow-Delivery-Id`, `X-MLflow-Timestamp` (unix seconds) and
//! `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{raw body}")>`. The
//! receiver checks the signature in constant time against every configured secret (rotation),
//! refuses a timestamp outside the tolerance window and a delivery id it has already taken, and
//! only then decodes the body. `model_version.created` and `model_version_alias.created|deleted`
//! become change events in the store at once; everything else MLflow can send is acknowledged
//! and ignored. Webhooks are a latency hint: MLflow drops a delivery for good when the receiver
//! is down for more than a few seconds, so the poller stays the safety net and detects anything
//! a webhook missed (the dedupe key and the alias snapshot make a second detection a no-op).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::event::ChangeEvent;
use crate::store::{Store, StoreError};

/// Largest body taken (MLflow's payloads are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default tolerance between the delivery's timestamp and this machine's clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Delivery ids remembered for replay detection (beyond the window they are refused as stale).
const MAX_REMEMBERED: usize = 100_000;

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A header is missing or the signature matches no configured secret (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The timestamp is outside the tolerance window (HTTP 401: a replay or a skewed clock).
    #[error("stale delivery: timestamp {timestamp} is {skew_secs} s away from this machine's clock (tolerance {tolerance_secs} s)")]
    Stale {
        /// The delivery's timestamp.
        timestamp: i64,
        /// Distance from now.
        skew_secs: i64,
        /// Allowed distance.
        tolerance_secs: u64,
    },
    /// This delivery id was taken before (HTTP 409).
    #[error("replayed delivery {0}")]
    Replayed(String),
    /// The body is not an MLflow webhook payload (HTTP 400).
    #[error("malformed body: {0}")]
    Malformed(String),
    /// No secret configured (at start: deliveries could not be authenticated).
    #[error(
        "webhooks need a secret: set ARIO_MLFLOW_WEBHOOK_SECRET (comma-separated for rotation)"
    )]
    NoSecret,
    /// The store did not take the event (HTTP 503, MLflow retries).
    #[error("the store did not take the event: {0}")]
    Store(#[from] StoreError),
}

impl WebhookError {
    /// The metric/log label of the refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized(_) => "unauthorized",
            WebhookError::Stale { .. } => "stale",
            WebhookError::Replayed(_) => "replayed",
            WebhookError::Malformed(_) => "malformed",
            WebhookError::Store(_) => "unavailable",
            WebhookError::NoSecret => "no_secret",
        }
    }
}

/// The three headers of a delivery, as received.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    /// `X-MLflow-Delivery-Id`.
    pub id: Option<&'a str>,
    /// `X-MLflow-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-MLflow-Signature`.
    pub signature: Option<&'a str>,
}

/// What a delivery changed, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookChange {
    /// `model_version.created`.
    VersionCreated {
        /// Registered model.
        name: String,
        /// Version.
        version: String,
    },
    /// `model_version_alias.created` (set or moved).
    AliasSet {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
        /// Version it points at now.
        version: String,
    },
    /// `model_version_alias.deleted`.
    AliasDeleted {
        /// Registered model.
        name: String,
        /// Alias.
        alias: String,
    },
}

/// What happened to an authentic delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Change events recorded durably (their dedupe keys; empty when already known).
    Recorded(Vec<String>),
    /// An event type the worker does not anchor (`entity.action`).
    Ignored(String),
}

/// HMAC-SHA256 of `{id}.{timestamp}.{body}` with `secret`, base64 (what MLflow sends after `v1,`).
pub fn sign(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(secret, id, timestamp, body).finalize().into_bytes())
}

fn mac(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether `header` (one or more space-separated `v1,<base64>` signatures) carries a valid
/// signature of the delivery under any of `secrets`; compared in constant time.
pub fn signature_matches(
    secrets: &[String],
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let candidates: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .collect();
    let mut matched = false;
    for secret in secrets {
        for candidate in &candidates {
            // `verify_slice` compares in constant time.
            matched |= mac(secret, id, timestamp, body)
                .verify_slice(candidate)
                .is_ok();
        }
    }
    matched
}

/// The workspace a delivery names (MLflow 3.10+: a top-level `workspace`); `None` before.
fn delivery_workspace(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["workspace"]
        .as_str()
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
}

/// Decodes a payload: `Ok(None)` for an event type the worker does not anchor.
pub fn decode(body: &[u8]) -> Result<(String, Option<WebhookChange>), WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    let field = |obj: &Value, k: &str| -> Result<String, WebhookError> {
        match &obj[k] {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(WebhookError::Malformed(format!(
                "`data.{k}` is missing or not a string"
            ))),
        }
    };
    let entity = v["entity"]
        .as_str()
        .ok_or_else(|| WebhookError::Malformed("`entity` is missing".into()))?;
    let action = v["action"]
        .as_str()
        .ok_or_else(|| WebhookError::Malformed("`action` is missing".into()))?;
    let data = &v["data"];
    if !data.is_object() {
        return Err(WebhookError::Malformed("`data` is not an object".into()));
    }
    let kind = format!("{entity}.{action}");
    let change = match kind.as_str() {
        "model_version.created" => Some(WebhookChange::VersionCreated {
            name: field(data, "name")?,
            version: field(data, "version")?,
        }),
        "model_version_alias.created" => Some(WebhookChange::AliasSet {
            name: field(data, "name")?,
            alias: field(data, "alias")?,
            version: field(data, "version")?,
        }),
        "model_version_alias.deleted" => Some(WebhookChange::AliasDeleted {
            name: field(data, "name")?,
            alias: field(data, "alias")?,
        }),
        _ => None,
    };
    Ok((kind, change))
}

/// The receiver: secrets, the replay window, and per MLflow workspace the store its
/// deliveries go to.
#[derive(Debug)]
pub struct WebhookReceiver {
    secrets: Vec<String>,
    tolerance: Duration,
    /// Workspace → where its deliveries go (a delivery names its workspace; MLflow before 3.10
    /// and a server without workspaces: the default).
    lanes: BTreeMap<String, WebhookLane>,
    seen: Mutex<Seen>,
}

/// Where one workspace's deliveries are recorded: its poller's store, lock and wake.
#[derive(Debug)]
struct WebhookLane {
    store: Store,
    /// Held while the poller runs a cycle, so an alias snapshot is never updated under it.
    detect_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Notified when events were recorded (the service drains at once).
    wake: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl WebhookReceiver {
    /// A receiver over `store`; `secrets` must not be empty (there is no unsigned mode).
    pub fn new(
        secrets: Vec<String>,
        tolerance: Duration,
        store: Store,
        detect_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<WebhookReceiver, WebhookError> {
        let secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        if secrets.is_empty() {
            return Err(WebhookError::NoSecret);
        }
        let lane = WebhookLane {
            store,
            detect_lock,
            wake,
        };
        Ok(WebhookReceiver {
            secrets,
            tolerance,
            lanes: BTreeMap::from([(crate::mlflow::DEFAULT_WORKSPACE.to_string(), lane)]),
            seen: Mutex::new(Seen::default()),
        })
    }

    /// The store given to [`WebhookReceiver::new`] takes the deliveries of `workspace` (MLflow
    /// 3.10+ names it in every payload) instead of the default workspace's.
    pub fn in_workspace(mut self, workspace: &str) -> WebhookReceiver {
        let lanes = std::mem::take(&mut self.lanes);
        self.lanes = lanes
            .into_values()
            .map(|lane| (workspace.to_string(), lane))
            .collect();
        self
    }

    /// Records the deliveries of `workspace` too, in its own store (its poller's lock and
    /// wake). A delivery of a workspace the receiver has no store for is acknowledged and
    /// ignored.
    pub fn with_workspace(
        mut self,
        workspace: &str,
        store: Store,
        detect_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> WebhookReceiver {
        self.lanes.insert(
            workspace.to_string(),
            WebhookLane {
                store,
                detect_lock,
                wake,
            },
        );
        self
    }

    /// Authenticates, de-duplicates and records one delivery; resolves only once the change
    /// events are durable in the store.
    pub async fn receive(
        &self,
        delivery: Delivery<'_>,
        body: &[u8],
        now_secs: i64,
    ) -> Result<Accepted, WebhookError> {
        let missing = |h: &str| WebhookError::Unauthorized(format!("missing {h} header"));
        let id = delivery
            .id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("X-MLflow-Delivery-Id"))?;
        let ts_text = delivery
            .timestamp
            .ok_or_else(|| missing("X-MLflow-Timestamp"))?;
        let signature = delivery
            .signature
            .ok_or_else(|| missing("X-MLflow-Signature"))?;
        if !signature_matches(&self.secrets, id, ts_text, body, signature) {
            return Err(WebhookError::Unauthorized(
                "the signature matches no configured secret (check ARIO_MLFLOW_WEBHOOK_SECRET against the webhook's secret in MLflow)".into(),
            ));
        }
        let timestamp: i64 = ts_text.trim().parse().map_err(|_| {
            WebhookError::Unauthorized(format!(
                "X-MLflow-Timestamp {ts_text:?} is not unix seconds"
            ))
        })?;
        let skew = (now_secs - timestamp).abs();
        if skew as u64 > self.tolerance.as_secs() {
            return Err(WebhookError::Stale {
                timestamp,
                skew_secs: skew,
                tolerance_secs: self.tolerance.as_secs(),
            });
        }
        self.remember(id, timestamp, now_secs)?;
        let result = self.record(body).await;
        if result.is_err() {
            // Not taken: MLflow's retry of the same delivery must be accepted.
            self.forget(id);
        }
        result
    }

    fn remember(&self, id: &str, timestamp: i64, now_secs: i64) -> Result<(), WebhookError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let horizon = now_secs - self.tolerance.as_secs() as i64;
        while let Some((t, old)) = seen.order.front().cloned() {
            if t >= horizon && seen.order.len() < MAX_REMEMBERED {
                break;
            }
            seen.order.pop_front();
            if seen.ids.get(&old) == Some(&t) {
                seen.ids.remove(&old);
            }
        }
        if seen.ids.contains_key(id) {
            return Err(WebhookError::Replayed(id.to_string()));
        }
        seen.ids.insert(id.to_string(), timestamp.max(horizon));
        seen.order
            .push_back((timestamp.max(horizon), id.to_string()));
        Ok(())
    }

    fn forget(&self, id: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.ids.remove(id);
    }

    async fn record(&self, body: &[u8]) -> Result<Accepted, WebhookError> {
        let (kind, change) = decode(body)?;
        let workspace = delivery_workspace(body)
            .unwrap_or_else(|| crate::mlflow::DEFAULT_WORKSPACE.to_string());
        let Some(lane) = self.lanes.get(&workspace) else {
            tracing::debug!(kind, workspace = %workspace, "webhook: a delivery of a workspace this worker does not anchor; ignored");
            return Ok(Accepted::Ignored(format!("{kind} (workspace {workspace})")));
        };
        let Some(change) = change else {
            return Ok(Accepted::Ignored(kind));
        };
        let _poller_paused = lane.detect_lock.lock().await;
        let events = lane.events(&change)?;
        let mut recorded = Vec::new();
        for event in &events {
            if lane.store.detect(event)? {
                crate::telemetry::detected(event.event_type(), "webhook");
                recorded.push(event.dedupe_key());
            }
        }
        lane.update_snapshot(&change)?;
        lane.store.flush().await?;
        for key in &recorded {
            tracing::info!(job = %key, workspace = %workspace, "webhook: detected");
        }
        if !recorded.is_empty() {
            lane.wake.notify_one();
        }
        Ok(Accepted::Recorded(recorded))
    }
}

impl WebhookLane {
    /// The change events of a delivery; an alias change is judged against the poller's alias
    /// snapshot (the same state the poller diffs), so it is detected once by either source.
    fn events(&self, change: &WebhookChange) -> Result<Vec<ChangeEvent>, WebhookError> {
        let seen_ms = now_ms();
        Ok(match change {
            WebhookChange::VersionCreated { name, version } => {
                vec![ChangeEvent::ModelVersionCreated {
                    name: name.clone(),
                    version: version.clone(),
                    created_ms: None,
                }]
            }
            WebhookChange::AliasSet {
                name,
                alias,
                version,
            } => {
                let before = self.aliases(name)?;
                if before.get(alias) == Some(version) {
                    Vec::new()
                } else {
                    vec![ChangeEvent::AliasChanged {
                        name: name.clone(),
                        alias: alias.clone(),
                        version: Some(version.clone()),
                        previous: before.get(alias).cloned(),
                        seen_ms,
                    }]
                }
            }
            WebhookChange::AliasDeleted { name, alias } => {
                let before = self.aliases(name)?;
                match before.get(alias) {
                    Some(previous) => vec![ChangeEvent::AliasChanged {
                        name: name.clone(),
                        alias: alias.clone(),
                        version: None,
                        previous: Some(previous.clone()),
                        seen_ms,
                    }],
                    // Never seen set: nothing this worker anchored points at it.
                    None => Vec::new(),
                }
            }
        })
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(self
            .store
            .snapshot(&format!("aliases/{name}"))?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    fn update_snapshot(&self, change: &WebhookChange) -> Result<(), StoreError> {
        let (name, alias, version) = match change {
            WebhookChange::VersionCreated { .. } => return Ok(()),
            WebhookChange::AliasSet {
                name,
                alias,
                version,
            } => (name, alias, Some(version)),
            WebhookChange::AliasDeleted { name, alias } => (name, alias, None),
        };
        let mut aliases = self.aliases(name)?;
        match version {
            Some(v) => aliases.insert(alias.clone(), v.clone()),
            None => aliases.remove(alias),
        };
        self.store
            .set_snapshot(&format!("aliases/{name}"), &json!(aliases))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The REST call that registers this worker's webhook on an MLflow 3.x server, as `curl` — in
/// MLflow workspace `workspace` when one is named (webhooks are registered per workspace).
pub fn register_command(
    tracking_uri: &str,
    receiver_url: &str,
    name: &str,
    workspace: Option<&str>,
) -> String {
    let body = json!({
        "name": name,
        "description": "ario-mlflow-worker: anchor registry events at once (the poller stays the safety net)",
        "url": receiver_url,
        "events": [
            {"entity": "MODEL_VERSION", "action": "CREATED"},
            {"entity": "MODEL_VERSION_ALIAS", "action": "CREATED"},
            {"entity": "MODEL_VERSION_ALIAS", "action": "DELETED"},
        ],
        "secret": "__SECRET__",
    });
    let body = body
        .to_string()
        .replace("\"__SECRET__\"", "\"'\"$ARIO_MLFLOW_WEBHOOK_SECRET\"'\"");
    let workspace = workspace
        .map(|w| format!("  -H '{}: {w}' \\\n", crate::mlflow::WORKSPACE_HEADER))
        .unwrap_or_default();
    format!(
        "curl -fsS -X POST {}/api/2.0/mlflow/webhooks \\\n{workspace}  -H 'Content-Type: application/json' \\\n  -d '{}'",
        tracking_uri.trim_end_matches('/'),
        body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_captured_delivery_shape_decodes() {
        let body = br#"{"entity":"model_version","action":"created","timestamp":"2026-11-23T23:10:50.274326+00:00","data":{"name":"hooked-model","version":"1","source":"models:/m-1","run_id":"7a53","tags":{"t":"1"},"description":"via curl"}}"#;
        assert_eq!(
            decode(body).unwrap(),
            (
                "model_version.created".into(),
                Some(WebhookChange::VersionCreated {
                    name: "hooked-model".into(),
                    version: "1".into()
                })
            )
        );
        let body = br#"{"entity":"model_version_tag","action":"set","data":{"name":"m","version":"1","key":"k","value":"v"}}"#;
        assert_eq!(
            decode(body).unwrap(),
            ("model_version_tag.set".into(), None)
        );
        assert!(matches!(
            decode(b"{not json"),
            Err(WebhookError::Malformed(_))
        ));
        let body = br#"{"entity":"model_version_alias","action":"created","data":{"name":"m"}}"#;
        assert!(
            matches!(decode(body), Err(WebhookError::Malformed(m)) if m.contains("data.alias"))
        );
    }

    #[test]
    fn signatures_verify_under_any_configured_secret_and_nothing_else() {
        let body = b"{\"a\":1}";
        let sig = format!("v1,{}", sign("s3cr3t", "d-1", "1795475450", body));
        let secrets = vec!["old".to_string(), "s3cr3t".to_string()];
        assert!(signature_matches(&secrets, "d-1", "1795475450", body, &sig));
        assert!(signature_matches(
            &secrets,
            "d-1",
            "1795475450",
            body,
            &format!("v1,AAAA {sig}")
        ));
        assert!(!signature_matches(
            &["old".into()],
            "d-1",
            "1795475450",
            body,
            &sig
        ));
        assert!(!signature_matches(
            &secrets,
            "d-2",
            "1795475450",
            body,
            &sig
        ));
        assert!(!signature_matches(
            &secrets,
            "d-1",
            "1795475451",
            body,
            &sig
        ));
        assert!(!signature_matches(
            &secrets,
            "d-1",
            "1795475450",
            b"{\"a\":2}",
            &sig
        ));
        assert!(!signature_matches(
            &secrets,
            "d-1",
            "1795475450",
            body,
            sig.trim_start_matches("v1,")
        ));
    }

    #[tokio::test]
    async fn a_delivery_is_taken_once_and_a_stale_one_never() {
        let store = Store::temporary().unwrap();
        let rx = WebhookReceiver::new(
            vec!["k".into()],
            DEFAULT_TOLERANCE,
            store.clone(),
            Default::default(),
            Default::default(),
        )
        .unwrap();
        let body = br#"{"entity":"model_version_alias","action":"created","data":{"name":"m","alias":"prod","version":"2"}}"#;
        let now = 1_795_475_450;
        let ts = now.to_string();
        let sig = format!("v1,{}", sign("k", "d-1", &ts, body));
        let d = Delivery {
            id: Some("d-1"),
            timestamp: Some(&ts),
            signature: Some(&sig),
        };
        let first = rx.receive(d.clone(), body, now).await.unwrap();
        assert!(
            matches!(&first, Accepted::Recorded(keys) if keys.len() == 1 && keys[0].starts_with("alias/m/prod/2/"))
        );
        assert!(matches!(
            rx.receive(d, body, now).await,
            Err(WebhookError::Replayed(_))
        ));
        // A second delivery of the same alias state (e.g. MLflow's own retry under a new id) is a no-op.
        let sig2 = format!("v1,{}", sign("k", "d-2", &ts, body));
        let d2 = Delivery {
            id: Some("d-2"),
            timestamp: Some(&ts),
            signature: Some(&sig2),
        };
        assert_eq!(
            rx.receive(d2, body, now).await.unwrap(),
            Accepted::Recorded(vec![])
        );
        let old = (now - 301).to_string();
        let sig3 = format!("v1,{}", sign("k", "d-3", &old, body));
        let d3 = Delivery {
            id: Some("d-3"),
            timestamp: Some(&old),
            signature: Some(&sig3),
        };
        assert!(matches!(
            rx.receive(d3, body, now).await,
            Err(WebhookError::Stale { .. })
        ));
        assert_eq!(store.jobs().unwrap().len(), 1);
        let deleted = br#"{"entity":"model_version_alias","action":"deleted","data":{"name":"m","alias":"prod"}}"#;
        let sig4 = format!("v1,{}", sign("k", "d-4", &ts, deleted));
        let d4 = Delivery {
            id: Some("d-4"),
            timestamp: Some(&ts),
            signature: Some(&sig4),
        };
        let removed = rx.receive(d4, deleted, now).await.unwrap();
        assert!(
            matches!(&removed, Accepted::Recorded(keys) if keys.len() == 1 && keys[0].starts_with("alias/m/prod/-/"))
        );
    }
}
