//! The HTTP listener and the guard's flags (`run`, `backfill`, `guard`), validated into the
//! service's [`SurfaceConfig`], and the guard built from `--config`'s `[guard]` table.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::connect::ArweaveHttpArgs;
use super::error::CmdError;
use super::settings::AnchorSettings;
use crate::arweave::{TurboClient, Wallet};
use crate::keys::EnvelopeKey;
use crate::service::surface::{GuardParts, SurfaceConfig};

/// The HTTP listener: metrics, probes, MLflow webhooks.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address of the HTTP listener (`/metrics`, `/healthz`, `/readyz`, `POST
    /// /v1/webhooks/mlflow`); `off` disables it. Loopback by default: put a proxy or a Service
    /// in front to expose it.
    #[arg(long, env = "ARIO_MLFLOW_LISTEN", default_value = crate::server::DEFAULT_LISTEN)]
    pub listen: String,
    /// Secret(s) MLflow signs webhook deliveries with, comma-separated (several during a
    /// rotation). Unset: the webhook route answers 404.
    #[arg(
        long,
        env = "ARIO_MLFLOW_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub webhook_secret: Vec<String>,
    /// Seconds a webhook's timestamp may differ from this machine's clock.
    #[arg(long, env = "ARIO_MLFLOW_WEBHOOK_TOLERANCE", default_value_t = 300)]
    pub webhook_tolerance: u64,
    /// Seconds between readiness probes of MLflow and Turbo; a check fails `/readyz` when it
    /// has not passed within three intervals.
    #[arg(long, env = "ARIO_MLFLOW_HEALTH_INTERVAL", default_value_t = 10.0)]
    pub health_interval: f64,
    /// Seconds without a pipeline tick after which `/healthz` answers 503.
    #[arg(long, env = "ARIO_MLFLOW_STUCK_AFTER", default_value_t = 300)]
    pub stuck_after: u64,
    /// Seconds between coverage passes exported as `ario_mlflow_worker_coverage_entities`
    /// (the gaps only: runs and traces without a TX tag, every version — a cost that follows
    /// the gaps, not the registry; `coverage` counts and verifies all); 0 turns it off.
    #[arg(long, env = "ARIO_MLFLOW_COVERAGE_INTERVAL", default_value_t = 300)]
    pub coverage_interval: u64,
    /// A file holding the management secret that `/v1/status`, `/v1/retry` and the guard's
    /// verify-status endpoint require (e.g. a Kubernetes Secret mounted read-only); unset:
    /// `<state-dir>/management-secret`, generated once.
    #[arg(long, env = "ARIO_MLFLOW_MANAGEMENT_SECRET_FILE", value_name = "FILE")]
    pub management_secret_file: Option<std::path::PathBuf>,
}

/// A `--listen` value: an address, or `None` for `off`; anything else is refused with what to
/// write instead.
pub(crate) fn parse_listen(value: &str) -> Result<Option<std::net::SocketAddr>, CmdError> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        CmdError::Usage(format!(
            "--listen {value:?} is not an address like 127.0.0.1:9847 (or `off`)"
        ))
    })
}

/// The listener and probe settings of `args`, checked: an address that does not parse is
/// refused with what to write instead. With a listener, the management secret is read from
/// `--management-secret-file` (which must exist) or from `<state_dir>/management-secret`
/// (generated there once).
pub(crate) fn surface_config(
    args: &ServerArgs,
    state_dir: &std::path::Path,
) -> Result<SurfaceConfig, CmdError> {
    let listen = parse_listen(&args.listen)?;
    if !args.health_interval.is_finite() {
        return Err(CmdError::Usage(format!(
            "--health-interval must be a number of seconds, not {}",
            args.health_interval
        )));
    }
    let management_secret = match (&listen, &args.management_secret_file) {
        (None, _) => None,
        (Some(_), Some(file)) => Some(crate::guard::read_management_secret(file)?),
        (Some(_), None) => Some(crate::guard::management_secret(state_dir)?),
    };
    Ok(SurfaceConfig {
        management_secret,
        listen,
        health_interval: Duration::from_secs_f64(args.health_interval.clamp(0.1, 3600.0)),
        stuck_after: Duration::from_secs(args.stuck_after.max(1)),
        coverage_interval: (args.coverage_interval > 0)
            .then(|| Duration::from_secs(args.coverage_interval)),
    })
}

/// What the guard checks with (its assets come from the `[guard]` table of `--config`).
#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// Read gateway for the guard's checks (repeatable) [default: the gateway host,
    /// turbo-gateway.com, ardrive.net].
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Gateways, comma-separated (replaces the defaults).
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Pinned signer key (64 hex) for the guard's checks; repeatable or comma-separated in the env.
    #[arg(
        long = "trusted-key",
        env = "ARIO_MLFLOW_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
    /// A trusted key history (`keys history --json`: a pinned root key and its signed
    /// hand-overs): a proof passes when its signer was valid when it signed; one signed by a
    /// retired key after its retirement fails, saying so.
    #[arg(long, env = "ARIO_MLFLOW_TRUSTED_KEYS_FILE", value_name = "FILE")]
    pub trusted_keys_file: Option<std::path::PathBuf>,
    /// ar.io Verify base URL: the guard's checks then need this attestation level too.
    #[arg(long, env = "ARIO_MLFLOW_ARIO_VERIFY_URL")]
    pub ario_verify_url: Option<String>,
    /// Attestation level the guard's checks need (with `--ario-verify-url`).
    #[arg(long, default_value_t = 2)]
    pub min_attestation_level: u64,
}

/// The guard of `--config`'s `[guard]` table, with the verifier it checks through and the
/// management secret its endpoint requires; `None` without a policy.
pub(crate) async fn guard_from_config(
    config: Option<&std::path::Path>,
    args: &GuardArgs,
    mlflow: &crate::mlflow::MlflowClient,
    http: &ArweaveHttpArgs,
    gateway_host: &str,
    state_dir: &std::path::Path,
    signing: Option<(EnvelopeKey, Wallet, TurboClient)>,
) -> Result<Option<GuardParts>, CmdError> {
    let Some(path) = config else { return Ok(None) };
    let Some(policy) = crate::guard::policy::GuardPolicy::load(path)? else {
        return Ok(None);
    };
    let gateways = crate::arweave::gateway::gateway_list(
        &args.gateways,
        args.gateways_env.as_deref(),
        Some(gateway_host),
    )?;
    let http = super::connect::http_settings(http)?;
    let reader = crate::arweave::GatewayReader::new(gateways, &http)?;
    let trusted = super::verify::trusted_keys(&args.trusted_keys)?;
    let attestation = match &args.ario_verify_url {
        Some(url) => crate::verify::ArioVerifyClient::connect(url, &http).await?,
        None => None,
    };
    let verifier = crate::verify::Verifier {
        mlflow: mlflow.clone(),
        gateways: reader,
        trusted_keys: trusted,
        key_history: super::verify::key_history(args.trusted_keys_file.as_deref())?,
        attestation,
        min_attestation_level: args.min_attestation_level,
        checksum_memo: Some(crate::verify::ChecksumMemo::new(
            std::time::Duration::from_secs(1),
        )),
        evidence: None,
    };
    super::verify::check_history_online(&verifier, args.trusted_keys_file.as_deref()).await?;
    let guard = crate::guard::Guard::new(policy.clone());
    // The kept events are files: read (or created) on the blocking pool.
    let dir = state_dir.to_path_buf();
    let policy_hash = guard.policy_hash().to_string();
    let events = tokio::task::spawn_blocking(move || {
        signing
            .map(|(key, wallet, turbo)| {
                crate::guard::events::GuardEvents::open(
                    &dir,
                    key,
                    wallet.signer,
                    turbo,
                    &policy.tenant_id,
                    &policy.agent_id,
                    &policy_hash,
                )
            })
            .transpose()
    })
    .await
    .map_err(|e| CmdError::Setup(Box::new(crate::guard::GuardError::Task(e.to_string()))))??;
    tracing::info!(assets = guard.policy().assets.len(), policy_hash = %guard.policy_hash(), "guard: policy loaded");
    let guard = match events {
        Some(events) => guard.with_events(events),
        None => guard,
    };
    Ok(Some((Arc::new(guard), Arc::new(verifier))))
}

/// The guard of `config` with its signing parts (see [`guard_from_config`]).
pub(crate) async fn load_guard(
    config: Option<&std::path::Path>,
    args: &GuardArgs,
    anchor: &AnchorSettings,
    mlflow: &crate::mlflow::MlflowClient,
    turbo: &TurboClient,
    state_dir: &std::path::Path,
) -> Result<Option<GuardParts>, CmdError> {
    let signing = guard_signing(anchor, turbo)?;
    guard_from_config(
        config,
        args,
        mlflow,
        &anchor.http,
        &anchor.gateway_host,
        state_dir,
        Some(signing),
    )
    .await
}

/// The envelope key, the wallet and Turbo the guard signs and uploads its events with (loaded
/// like the anchorer's: the same files and environment).
fn guard_signing(
    s: &AnchorSettings,
    turbo: &TurboClient,
) -> Result<(EnvelopeKey, Wallet, TurboClient), CmdError> {
    let key = s.key.load()?;
    let wallet = s.wallet()?;
    Ok((key, wallet, turbo.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(listen: &str, health: f64, coverage: u64) -> ServerArgs {
        ServerArgs {
            listen: listen.into(),
            webhook_secret: Vec::new(),
            webhook_tolerance: 300,
            health_interval: health,
            stuck_after: 0,
            coverage_interval: coverage,
            management_secret_file: None,
        }
    }

    #[test]
    fn the_listener_is_an_address_or_off_and_intervals_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let surface_config = |args: &ServerArgs| super::surface_config(args, dir.path());
        let c = surface_config(&server("127.0.0.1:9847", 10.0, 300)).unwrap();
        assert_eq!(c.listen.unwrap().port(), 9847);
        assert_eq!(c.health_interval, Duration::from_secs(10));
        assert_eq!(c.stuck_after, Duration::from_secs(1));
        assert_eq!(c.coverage_interval, Some(Duration::from_secs(300)));
        let off = surface_config(&server("OFF", 10.0, 0)).unwrap();
        assert!(off.listen.is_none() && off.coverage_interval.is_none());
        let e = surface_config(&server("localhost", 10.0, 0)).unwrap_err();
        assert!(
            e.to_string().contains("not an address like 127.0.0.1:9847"),
            "{e}"
        );
        let e = surface_config(&server("off", f64::NAN, 0)).unwrap_err();
        assert!(e.to_string().contains("--health-interval"), "{e}");
        let tiny = surface_config(&server("off", 0.0, 0)).unwrap();
        assert_eq!(tiny.health_interval, Duration::from_millis(100));
        assert!(tiny.management_secret.is_none(), "no listener, no secret");
        assert_eq!(
            c.management_secret.as_deref().map(str::len),
            Some(64),
            "generated in the state dir"
        );
    }

    #[test]
    fn a_management_secret_file_is_read_never_generated() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        let mut args = server("127.0.0.1:9847", 10.0, 0);
        args.management_secret_file = Some(file.clone());
        let e = surface_config(&args, dir.path()).unwrap_err();
        assert!(e.to_string().contains(&file.display().to_string()), "{e}");
        assert!(!file.exists(), "a missing secret file is not created");
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = surface_config(&args, dir.path()).unwrap();
        assert_eq!(c.management_secret.as_deref(), Some("s3cret"));
        assert!(!dir.path().join("management-secret").exists());
    }
}
