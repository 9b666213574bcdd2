//! Tag names and values that several event types share (spec/mlflow-profile.md §3). The tags
//! particular to one event type live in that event type's module.

/// SHA-256 hex of the canonical payload (runs, versions, traces).
pub const PAYLOAD_HASH: &str = "ario.payload_hash";
/// Hex Ed25519 public key of the envelope signer.
pub const PUBLIC_KEY: &str = "ario.public_key";
/// `signed` once the envelope exists, `anchored` once the upload service accepted it.
pub const VERIFY_STATUS: &str = "ario.verify_status";
/// `https://<gateway host>/<tx id>`.
pub const ARWEAVE_URL: &str = "ario.arweave_url";
/// How the data item was paid for and signed (`ARIO_MLFLOW_*` wallet mode).
pub const WALLET_MODE: &str = "ario.wallet_mode";
/// The data-item signer's type (`arweave`, `ethereum`, `solana`, `ed25519`).
pub const WALLET_TYPE: &str = "ario.wallet_type";
/// SHA-256 of the JCS of a run's `artifact_checksums` (only when non-empty).
pub const ARTIFACT_HASH: &str = "ario.artifact_hash";

/// [`VERIFY_STATUS`] once signed.
pub const STATUS_SIGNED: &str = "signed";
/// [`VERIFY_STATUS`] once uploaded.
pub const STATUS_ANCHORED: &str = "anchored";

/// Run tag the plugin's run-context provider sets on every run started with it installed
/// (`"true"`): the plugin may be anchoring this run's registrations and promotions itself.
pub const PLUGIN_ENABLED: &str = "ario.enabled";
/// Run tag: the plugin version that started the run.
pub const PLUGIN_VERSION: &str = "ario.version";
