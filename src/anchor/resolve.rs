//! One code path per event type: what an event becomes, decided once for both callers — the
//! durable pipeline (`pipeline.rs`, which records the outcome in the store) and the one-shot
//! `anchor …` commands ([`Anchorer::anchor_event`], which act on it at once).
//!
//! Each event type's file (`training.rs`, `registration.rs`, …) holds its `resolve_*`: it reads
//! MLflow, recognises what is already anchored (by us, by the plugin, or by an earlier store
//! that was lost), and answers with a [`Resolution`]: sign this, seal this training draft onto
//! its chain, skip (and why), wait (on what, and which event would unblock it), or park.
//! Resolving never writes to MLflow, never uploads and never touches the store.

use std::collections::BTreeMap;
use std::time::Duration;

use super::checkpoint::Leaf;
use super::{AnchorError, AnchorStatus, Anchored, Anchorer};
use crate::event::{ChainOwner, ChangeEvent};
use crate::mlflow::Run;
use crate::profile::tags;
use crate::store::prepared::{Prepared, Write};

/// How long the resolvers wait for things that may never come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A dependency (a registration's training proof, a promotion's registration) is waited
    /// for this long, then the event is anchored on GENESIS with the reason logged.
    pub max_dependency_wait: Duration,
    /// A trace that is still IN_PROGRESS, or whose spans have not arrived, is waited for this
    /// long, then parked with the reason.
    pub max_trace_wait: Duration,
    /// Registry events of a run started with the plugin installed (`ario.enabled`) are left
    /// to the plugin's own background anchoring this long before we anchor them, so the two
    /// never anchor one event twice.
    pub plugin_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_dependency_wait: Duration::from_secs(3600),
            max_trace_wait: Duration::from_secs(900),
            plugin_grace: Duration::from_secs(120),
        }
    }
}

/// What the caller knows that a resolution depends on.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The bounds.
    pub limits: &'a Limits,
    /// Since when the job has been waiting (`None`: not waiting).
    pub waiting_since_ms: Option<u64>,
    /// Now (ms since the epoch).
    pub now_ms: u64,
    /// Registered models renamed since the store first saw them: former name → current name.
    pub renames: &'a BTreeMap<String, String>,
    /// The one-shot `anchor …` command: nothing is waited for (a dependency is anchored at
    /// once, a wait that has no dependency is an error).
    pub oneshot: bool,
}

/// No renames known.
pub static NO_RENAMES: BTreeMap<String, String> = BTreeMap::new();

impl Context<'_> {
    /// Whether a wait that began earlier has lasted longer than `limit` (always, one-shot).
    pub fn expired(&self, limit: Duration) -> bool {
        self.oneshot
            || self
                .waiting_since_ms
                .is_some_and(|since| self.now_ms.saturating_sub(since) > limit.as_millis() as u64)
    }

    /// The current name of a registered model known under `name` (following renames).
    pub fn current_name(&self, name: &str) -> Option<String> {
        let mut at = self.renames.get(name)?;
        for _ in 0..16 {
            match self.renames.get(at) {
                Some(next) if next != name => at = next,
                _ => break,
            }
        }
        Some(at.clone())
    }
}

/// What resolving an event decided.
#[derive(Debug)]
pub enum Resolution {
    /// Sign (or, for a proof signed elsewhere, adopt) this prepared event.
    Sign(Box<SignPlan>),
    /// A training payload to sign onto its chain's head when the job commits (the durable
    /// service signs one chain strictly in detection order).
    Seal(Box<TrainingDraft>),
    /// A prediction fixed as a leaf of its version's checkpoint batch.
    Leaf(Box<Leaf>),
    /// Nothing to anchor.
    Skip(Skip),
    /// Not yet.
    Wait(Wait),
    /// It cannot be anchored until someone acts; the reason says what happened.
    Park(String),
}

/// A prepared event and what signing it changes besides.
#[derive(Debug)]
pub struct SignPlan {
    /// The signed event.
    pub prepared: Prepared,
    /// The training chain whose head it moves.
    pub chain: Option<ChainMove>,
    /// Events derived from it (a run's dataset inputs).
    pub derived: Vec<ChangeEvent>,
    /// Signed elsewhere (the plugin, or this service before its store was lost) and adopted
    /// here: its stored bytes are uploaded, nothing is signed.
    pub adopted: bool,
}

impl SignPlan {
    /// A newly signed event with no chain and nothing derived.
    pub fn signed(prepared: Prepared) -> Resolution {
        Resolution::Sign(Box::new(SignPlan {
            prepared,
            chain: None,
            derived: Vec::new(),
            adopted: false,
        }))
    }

    /// A proof signed elsewhere, adopted to be uploaded.
    pub fn adopted(prepared: Prepared, chain: Option<ChainMove>) -> Resolution {
        Resolution::Sign(Box::new(SignPlan {
            prepared,
            chain,
            derived: Vec::new(),
            adopted: true,
        }))
    }
}

/// A training chain's head moving to `head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainMove {
    /// `rm/<name>` or `exp/<id>`.
    pub key: String,
    /// The new head (the payload hash).
    pub head: String,
    /// For a proof signed elsewhere and adopted here: the head it was signed onto. The chain
    /// moves only if that is the current head (the proof extends the chain); otherwise the
    /// proof is uploaded without moving the head, so nothing is signed on a stale head.
    pub extends: Option<String>,
}

/// A run's training payload, built concurrently, waiting for its chain head.
#[derive(Debug)]
pub struct TrainingDraft {
    /// The run as read.
    pub run: Run,
    /// The payload.
    pub payload: serde_json::Value,
    /// The model files it commits to.
    pub checksums: BTreeMap<String, String>,
    /// The chain.
    pub owner: ChainOwner,
    /// The head MLflow's tag gives, used when the caller knows no head for the chain.
    pub mlflow_head: String,
    /// The run's dataset inputs (name, digest).
    pub datasets: Vec<(String, String)>,
    /// Writes that keep an earlier proof of the run verifiable before this one replaces its
    /// witness (a run re-opened and finished again): copies of its witness files.
    pub keep_superseded: Vec<Write>,
}

/// Why nothing is anchored.
#[derive(Debug, Clone, PartialEq)]
pub struct Skip {
    /// For people and `status`.
    pub reason: String,
    /// For counting and for deciding whether a later detection may reopen the job.
    pub kind: SkipKind,
    /// What is on record, when already anchored.
    pub anchored: Option<Anchored>,
}

/// The kinds of skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// Already anchored, by us or by an earlier store.
    AlreadyAnchored,
    /// Anchored (or being anchored) by the Python plugin beside us.
    Plugin,
    /// The entity is gone or not in a state to anchor (deleted, re-opened, re-created): a
    /// later detection of the same key reopens the job.
    Gone,
    /// A trace served by no model: nothing to attribute the prediction to.
    NoModel,
    /// Not something that gets a proof (an ERROR trace, a version with no files).
    NotApplicable,
}

impl SkipKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SkipKind::AlreadyAnchored => "already_anchored",
            SkipKind::Plugin => "plugin",
            SkipKind::Gone => "gone",
            SkipKind::NoModel => "no_model",
            SkipKind::NotApplicable => "not_applicable",
        }
    }

    /// Whether a later detection of the same dedupe key may reopen the job (the entity may
    /// come back: a run restored or finished again).
    pub fn redetectable(self) -> bool {
        matches!(self, SkipKind::Gone)
    }
}

impl Skip {
    /// A skip of `kind`.
    pub fn because(kind: SkipKind, reason: impl Into<String>) -> Resolution {
        Resolution::Skip(Skip {
            reason: reason.into(),
            kind,
            anchored: None,
        })
    }

    /// Already anchored as `tx` (payload hash `hash`).
    pub fn anchored(
        kind: SkipKind,
        reason: impl Into<String>,
        event_type: &str,
        subject: impl Into<String>,
        tx: &str,
        hash: &str,
    ) -> Resolution {
        Resolution::Skip(Skip {
            reason: reason.into(),
            kind,
            anchored: Some(Anchored {
                event_type: event_type.into(),
                subject: subject.into(),
                tx_id: tx.into(),
                payload_hash: hash.into(),
                status: AnchorStatus::AlreadyAnchored,
            }),
        })
    }
}

/// What a job waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    /// What (a job key, or a sentence).
    pub on: String,
    /// The event whose anchoring unblocks it, when one does (the caller detects it, or the
    /// one-shot command anchors it first).
    pub dependency: Option<ChangeEvent>,
}

impl Wait {
    /// A wait on `on` with no event that would end it sooner.
    pub fn on(on: impl Into<String>) -> Resolution {
        Resolution::Wait(Wait {
            on: on.into(),
            dependency: None,
        })
    }

    /// A wait that anchoring `dependency` ends.
    pub fn for_event(dependency: ChangeEvent) -> Resolution {
        Resolution::Wait(Wait {
            on: dependency.dedupe_key(),
            dependency: Some(dependency),
        })
    }
}

/// Whether the run was started with the plugin installed (its run-context provider's tags):
/// the plugin may then anchor the run's registrations and promotions itself.
pub fn plugin_present(run: &Run) -> bool {
    run.tag(tags::PLUGIN_ENABLED)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || run.tag(tags::PLUGIN_VERSION).is_some()
}

/// How many dependencies a one-shot command anchors first, at most (a prediction's
/// registration's training run is two).
const MAX_ONESHOT_DEPTH: usize = 4;

impl Anchorer {
    /// What `event` becomes now. `batched`: predictions go into checkpoint batches.
    pub async fn resolve(
        &self,
        event: &ChangeEvent,
        ctx: &Context<'_>,
        batched: bool,
    ) -> Result<Resolution, AnchorError> {
        match event {
            ChangeEvent::RunFinished {
                run_id,
                chain,
                end_time,
            } => {
                self.resolve_training(run_id, chain.as_deref(), *end_time, ctx)
                    .await
            }
            ChangeEvent::DatasetInput {
                run_id,
                name,
                digest,
            } => self.resolve_dataset(run_id, name, digest).await,
            ChangeEvent::ModelVersionCreated {
                name,
                version,
                created_ms,
            } => {
                self.resolve_registration(name, version, *created_ms, ctx)
                    .await
            }
            ChangeEvent::StageChanged {
                name,
                version,
                from,
                to,
                last_updated_ms,
            } => {
                self.resolve_promotion(name, version, from, to, *last_updated_ms, ctx)
                    .await
            }
            ChangeEvent::AliasChanged {
                name,
                alias,
                version,
                previous,
                seen_ms,
            } => {
                self.resolve_alias(
                    name,
                    alias,
                    version.as_deref(),
                    previous.as_deref(),
                    *seen_ms,
                    ctx,
                )
                .await
            }
            ChangeEvent::TraceLogged { trace_id } => {
                self.resolve_trace(trace_id, ctx, batched).await
            }
            ChangeEvent::ModelRenamed { from, to, .. } => self.resolve_rename(from, to).await,
            ChangeEvent::PredictionCheckpoint { .. } => Ok(Skip::because(
                SkipKind::NotApplicable,
                "a checkpoint is created signed; this one lost its prepared event",
            )),
        }
    }

    /// Anchors `event` now, end to end (the `anchor …` commands): dependencies first (a
    /// registration's training run, a promotion's registration), then the event itself, by the
    /// same resolution the durable service uses. Returns every event anchored or found anchored.
    pub async fn anchor_event(&self, event: &ChangeEvent) -> Result<Vec<Anchored>, AnchorError> {
        let mut out = Vec::new();
        self.anchor_event_into(event, 0, &mut out).await?;
        Ok(out)
    }

    async fn anchor_event_into(
        &self,
        event: &ChangeEvent,
        depth: usize,
        out: &mut Vec<Anchored>,
    ) -> Result<(), AnchorError> {
        let limits = Limits::default();
        let ctx = Context {
            limits: &limits,
            waiting_since_ms: None,
            now_ms: crate::store::now_ms(),
            renames: &NO_RENAMES,
            oneshot: true,
        };
        // A dependency anchored now makes the next resolution go further; a fixed bound keeps
        // a dependency that never lands from looping.
        for _ in 0..=MAX_ONESHOT_DEPTH {
            let (prepared, adopted) = match self.resolve(event, &ctx, false).await? {
                Resolution::Sign(plan) => (plan.prepared, plan.adopted),
                Resolution::Seal(draft) => {
                    let head = draft.mlflow_head.clone();
                    (self.seal_training(&draft, &head)?, false)
                }
                Resolution::Skip(skip) => {
                    return match skip.anchored {
                        Some(a) => {
                            out.push(a);
                            Ok(())
                        }
                        None => Err(AnchorError::NotReady(format!(
                            "{}: not anchored: {}",
                            event.subject(),
                            skip.reason
                        ))),
                    }
                }
                Resolution::Wait(Wait {
                    dependency: Some(dep),
                    ..
                }) if depth < MAX_ONESHOT_DEPTH => {
                    Box::pin(self.anchor_event_into(&dep, depth + 1, out)).await?;
                    continue;
                }
                Resolution::Wait(w) => {
                    return Err(AnchorError::NotReady(format!(
                        "{}: not anchored yet: waiting on {}",
                        event.subject(),
                        w.on
                    )))
                }
                Resolution::Park(why) => return Err(AnchorError::Inconsistent(why)),
                Resolution::Leaf(_) => {
                    return Err(AnchorError::Inconsistent(
                        "a one-shot anchor does not batch predictions".into(),
                    ))
                }
            };
            self.publish(&prepared).await?;
            out.push(Self::anchored(
                &prepared,
                if adopted {
                    AnchorStatus::Resumed
                } else {
                    AnchorStatus::Anchored
                },
            ));
            return Ok(());
        }
        Err(AnchorError::NotReady(format!(
            "{}: its dependencies did not get anchored",
            event.subject()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_expire_after_their_limit_and_at_once_in_a_one_shot() {
        let limits = Limits::default();
        let renames = BTreeMap::new();
        let ctx = Context {
            limits: &limits,
            waiting_since_ms: Some(1_000),
            now_ms: 1_000 + 3_600_000,
            renames: &renames,
            oneshot: false,
        };
        assert!(!ctx.expired(limits.max_dependency_wait));
        let later = Context {
            now_ms: 1_000 + 3_600_001,
            ..ctx.clone()
        };
        assert!(later.expired(limits.max_dependency_wait));
        let fresh = Context {
            waiting_since_ms: None,
            ..ctx.clone()
        };
        assert!(!fresh.expired(Duration::ZERO));
        assert!(Context {
            oneshot: true,
            ..fresh
        }
        .expired(limits.max_dependency_wait));
    }

    #[test]
    fn renames_are_followed_to_the_current_name() {
        let limits = Limits::default();
        let renames: BTreeMap<String, String> = [("a", "b"), ("b", "c"), ("x", "y"), ("y", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ctx = Context {
            limits: &limits,
            waiting_since_ms: None,
            now_ms: 0,
            renames: &renames,
            oneshot: false,
        };
        assert_eq!(ctx.current_name("a").as_deref(), Some("c"));
        assert_eq!(ctx.current_name("c"), None);
        // A model renamed back and forth never loops.
        assert!(ctx.current_name("x").is_some());
    }
}
