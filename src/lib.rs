//! ario-mlflow-worker: every MLflow lifecycle event gets a signed, publicly anchored proof,
//! without any change to user code (see `docs/architecture.md`).
//!
//! Pipeline layout: `proof` (pure kernel) ← `anchor` (builds and drives jobs) ← `feed`
//! (detects), with `store` (remembers) beside it; `mlflow` and `arweave` are clients at the
//! edge; `verify` only reads; `server` is the HTTP listener (metrics, probes, webhooks) and
//! `telemetry` names every metric.

#![warn(missing_docs)]

pub mod anchor;
pub mod arweave;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod devnet;
pub mod event;
pub mod feed;
pub mod guard;
pub mod keys;
pub mod mlflow;
pub mod profile;
pub mod proof;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod verify;
