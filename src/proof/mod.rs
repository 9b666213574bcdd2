//! The proof kernel: pure functions, no I/O.
//!
//! Everything this service signs and everything `verify` checks goes through here, so it is kept
//! exact to the byte against the ario-proof conformance corpus (`../shared/vectors/ario-proof`)
//! and the `ario.mlflow/v1` golden example (tests in `tests/proof_vectors.rs`).
//!
//! * [`jcs`] — RFC 8785 canonical JSON, with the depth and surrogate rejections of the spec;
//! * [`hash`] — SHA-256 helpers;
//! * [`spec_version`] — the fail-closed `spec_version` accept-set;
//! * [`envelope`] — signing and verifying envelopes, and the [`envelope::Verdict`];
//! * [`merkle`] — the RFC 9162 tree used by checkpoints.

pub mod envelope;
pub mod hash;
pub mod jcs;
pub mod merkle;
pub mod spec_version;

pub use envelope::{
    sign_envelope, verify_envelope, verify_envelope_text, EnvelopeSigner, SignError, SignerFailure,
    Verdict,
};
pub use hash::{sha256, sha256_hex};
pub use jcs::{canonicalize, JcsError};
pub use spec_version::{Profile, SpecVersion, SpecVersionStatus};
