//! Anchoring: MLflow facts → canonical payload → signed envelope → data item → Turbo → MLflow
//! write-back. [`payload`] holds the pure per-event builders; [`event`] the envelope and tag
//! rules; [`oneshot`] drives one event end to end (the `anchor …` commands, reused by the
//! durable service).

pub mod event;
pub mod oneshot;
pub mod payload;
pub mod pipeline;
pub mod plan;
