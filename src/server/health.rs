//! Liveness and readiness state, written by the service loop and the readiness probe, read by
//! `/healthz` and `/readyz`.
//!
//! Liveness is one question — is the pipeline loop still ticking? — answered from the time of
//! its last tick. Readiness is a set of named checks (store open, MLflow reachable, Turbo
//! reachable, Kafka partitions assigned, the CDC stage connected), each with the time it last passed, so "reachable
//! within the last interval" is a property of the state, not of one probe's luck.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The checks `/readyz` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// The state store is open and answers.
    Store,
    /// MLflow's REST API answered.
    Mlflow,
    /// The Turbo upload service answered.
    Turbo,
    /// This consumer group member owns partitions (Kafka mode only).
    Kafka,
    /// The CDC re-keying stage has a session: its consumer subscribed and its transactional
    /// producer initialised (`--kafka-format debezium` only).
    Cdc,
}

impl Check {
    /// The name in the JSON body and the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Check::Store => "store",
            Check::Mlflow => "mlflow",
            Check::Turbo => "turbo",
            Check::Kafka => "kafka",
            Check::Cdc => "cdc",
        }
    }
}

#[derive(Debug, Clone)]
struct CheckState {
    ok: bool,
    detail: String,
    last_ok: Option<Instant>,
    checked: Instant,
}

/// Shared health state.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_tick_ms: AtomicU64,
    stuck_after: Duration,
    fresh_for: Duration,
    checks: Mutex<BTreeMap<Check, CheckState>>,
}

impl Health {
    /// Liveness fails when the loop has not ticked for `stuck_after`; a readiness check fails
    /// when it has not passed within `fresh_for`. `required` checks start as "not checked yet".
    pub fn new(stuck_after: Duration, fresh_for: Duration, required: &[Check]) -> Health {
        let now = Instant::now();
        let checks = required
            .iter()
            .map(|c| {
                (
                    *c,
                    CheckState {
                        ok: false,
                        detail: "not checked yet".into(),
                        last_ok: None,
                        checked: now,
                    },
                )
            })
            .collect();
        Health {
            started: now,
            last_tick_ms: AtomicU64::new(0),
            stuck_after,
            fresh_for,
            checks: Mutex::new(checks),
        }
    }

    /// The pipeline loop made progress.
    pub fn tick(&self) {
        self.last_tick_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Records that a check passed.
    pub fn pass(&self, check: Check) {
        self.report(check, Ok::<(), std::convert::Infallible>(()));
    }

    /// Records a check's result.
    pub fn report<E: std::fmt::Display>(&self, check: Check, result: Result<(), E>) {
        let now = Instant::now();
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = checks.entry(check).or_insert(CheckState {
            ok: false,
            detail: String::new(),
            last_ok: None,
            checked: now,
        });
        entry.checked = now;
        match result {
            Ok(()) => {
                entry.ok = true;
                entry.detail = "ok".into();
                entry.last_ok = Some(now);
            }
            Err(e) => {
                entry.ok = false;
                entry.detail = e.to_string();
            }
        }
        crate::telemetry::ready(check.name(), entry.ok);
    }

    /// Whether `check` passed within `within` (a probe may then skip asking again: the poller
    /// reports MLflow after every successful poll).
    pub fn passed_within(&self, check: Check, within: Duration) -> bool {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks
            .get(&check)
            .and_then(|c| c.last_ok.filter(|_| c.ok))
            .is_some_and(|t| t.elapsed() < within)
    }

    /// `/healthz`: whether the loop ticked recently, and the JSON body.
    pub fn liveness(&self) -> (bool, Value) {
        let since = self.started.elapsed().saturating_sub(Duration::from_millis(
            self.last_tick_ms.load(Ordering::Relaxed),
        ));
        let alive = since <= self.stuck_after;
        (
            alive,
            json!({
                "status": if alive { "ok" } else { "stuck" },
                "last_tick_seconds_ago": (since.as_secs_f64() * 1000.0).round() / 1000.0,
                "stuck_after_seconds": self.stuck_after.as_secs(),
            }),
        )
    }

    /// `/readyz`: whether every check passed within its freshness window, and one JSON object
    /// per check.
    pub fn readiness(&self) -> (bool, Value) {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let mut ready = true;
        let mut body = serde_json::Map::new();
        for (check, state) in checks.iter() {
            let fresh = state.last_ok.is_some_and(|t| t.elapsed() <= self.fresh_for);
            let ok = state.ok && fresh;
            ready &= ok;
            let detail = if state.ok && !fresh {
                format!("no success in the last {} s", self.fresh_for.as_secs())
            } else {
                state.detail.clone()
            };
            body.insert(
                check.name().into(),
                json!({
                    "ok": ok,
                    "detail": detail,
                    "checked_seconds_ago": state.checked.elapsed().as_secs(),
                    "last_ok_seconds_ago": state.last_ok.map(|t| t.elapsed().as_secs()),
                }),
            );
        }
        (ready, json!({"ready": ready, "checks": body}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_check_fresh_and_liveness_needs_ticks() {
        let h = Health::new(
            Duration::from_millis(50),
            Duration::from_secs(60),
            &[Check::Store, Check::Mlflow],
        );
        assert!(!h.readiness().0, "nothing checked yet");
        h.pass(Check::Store);
        h.report(Check::Mlflow, Err("cannot reach http://127.0.0.1:1"));
        let (ready, body) = h.readiness();
        assert!(!ready);
        assert_eq!(body["checks"]["mlflow"]["ok"], false);
        assert!(body["checks"]["mlflow"]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot reach"));
        h.pass(Check::Mlflow);
        assert!(h.readiness().0);
        h.tick();
        assert!(h.liveness().0);
        std::thread::sleep(Duration::from_millis(80));
        let (alive, body) = h.liveness();
        assert!(!alive);
        assert_eq!(body["status"], "stuck");
    }
}
