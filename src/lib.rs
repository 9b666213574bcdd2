//! ario-mlflow-worker: every MLflow lifecycle event gets a signed, publicly anchored proof,
//! without any change to user code (see `docs/architecture.md`).
//!
//! Pipeline layout: `proof` (pure kernel) ← `anchor` (builds and drives jobs) ← `feed`
//! (detects), with `store` (remembers) beside it; `mlflow` and `arweave` are clients at the
//! edge; `verify` only reads. Today: the proof kernel, signing keys, the Arweave layer, devnet, the
//! MLflow client and one-shot anchoring; the durable service (`feed`, `store`) comes next.

#![warn(missing_docs)]

pub mod anchor;
pub mod arweave;
pub mod cli;
pub mod cmd;
pub mod devnet;
pub mod event;
pub mod feed;
pub mod keys;
pub mod mlflow;
pub mod profile;
pub mod proof;
pub mod store;
pub mod verify;
