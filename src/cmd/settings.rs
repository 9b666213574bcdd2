//! Flags shared by the commands that anchor (`anchor`, `run`, `backfill`, `guard`): the MLflow,
//! Turbo and key settings, the anchorer built from them, and the value parsers of durations,
//! dates and concurrency bounds.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::connect::{ArweaveHttpArgs, MlflowArgs};
use super::error::CmdError;
use super::signer::SignerArgs;
use crate::anchor::Anchorer;
use crate::arweave::turbo::{RetryPolicy, TurboConfig};
use crate::arweave::{TurboClient, Wallet};
use crate::keys::EnvelopeKey;
use crate::mlflow::{MlflowClient, MlflowConfig};

/// Parses a duration: `7d`, `12h`, `30m`, `45s`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, CmdError> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = number.parse().map_err(|_| {
        CmdError::Usage(format!(
            "{text:?} is not a duration (e.g. 7d, 12h, 30m, 45s, or seconds)"
        ))
    })?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => {
            return Err(CmdError::Usage(format!(
                "{text:?}: unknown unit {other:?} (use d, h, m or s)"
            )))
        }
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(CmdError::Usage(format!("{text:?} is not a duration")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--since`: `YYYY-MM-DD` (UTC midnight), RFC 3339, or epoch milliseconds.
pub fn parse_since(text: &str) -> Result<i64, CmdError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &date_format)
        .map(|d| (d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            CmdError::Usage(format!(
                "{text:?} is not a date (YYYY-MM-DD), an RFC 3339 time or epoch milliseconds"
            ))
        })
}

/// A concurrency bound: 1 to 256.
pub(crate) fn concurrency(text: &str) -> Result<usize, CmdError> {
    match text.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(CmdError::Usage(format!(
            "{text:?} is not a number from 1 to 256"
        ))),
    }
}

/// Everything needed to sign and upload (shared by `anchor`, `run`, `backfill`).
#[derive(Debug, Args)]
pub struct AnchorSettings {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    /// Turbo upload service base URL.
    #[arg(
        long,
        env = "ARIO_MLFLOW_UPLOAD_URL",
        default_value = "https://upload.ardrive.io"
    )]
    pub upload_url: url::Url,
    /// Host used in `ario.arweave_url` tags.
    #[arg(
        long,
        env = "ARIO_MLFLOW_GATEWAY_HOST",
        default_value = "turbo-gateway.com"
    )]
    pub gateway_host: String,
    /// What a prediction writes back to its trace: `minimal` (the payload witness artifact,
    /// `ario.payload_json`, `ario.prediction_tx`: 3 MLflow calls, enough for both `verify
    /// trace` commands) or `full` (also the plugin's mirror tags and the proof artifact: 12).
    #[arg(
        long,
        value_enum,
        env = "ARIO_MLFLOW_PREDICTION_TAGS",
        default_value = "minimal"
    )]
    pub prediction_tags: crate::anchor::prediction::PredictionTags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: SignerArgs,
    /// Arweave JWK or Solana id.json that signs data items [default: ~/.ario-mlflow/wallet.json].
    #[arg(long, global = true, env = "ARIO_MLFLOW_ARWEAVE_WALLET")]
    pub wallet: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// Builds the anchoring parts from flags; every startup error says what to fix.
pub fn anchorer(s: &AnchorSettings) -> Result<Anchorer, CmdError> {
    anchorer_with(s, super::connect::mlflow_config(&s.mlflow)?)
}

/// The anchoring parts with MLflow configured as `mlflow` says.
pub fn anchorer_with(s: &AnchorSettings, mlflow: MlflowConfig) -> Result<Anchorer, CmdError> {
    anchorer_keyed(s, mlflow, s.key.load()?)
}

impl AnchorSettings {
    /// The funding wallet: the file named (refused when group or others may read it, unless
    /// allowed) or the default one, created on first use.
    pub fn wallet(&self) -> Result<Wallet, CmdError> {
        super::signer::load_wallet(self.wallet.as_deref(), self.key.allow_open_key_files)
    }
}

/// The anchoring parts signing with `key` (loaded once: another workspace's lane shares it —
/// one token session pool, one key).
pub fn anchorer_keyed(
    s: &AnchorSettings,
    mlflow: MlflowConfig,
    key: EnvelopeKey,
) -> Result<Anchorer, CmdError> {
    let mlflow = MlflowClient::new(mlflow)?;
    let wallet = s.wallet()?;
    let http = super::connect::http_settings(&s.http)?;
    let turbo = TurboClient::new(TurboConfig {
        upload_url: s.upload_url.clone(),
        http,
        retry: RetryPolicy::default(),
    })?;
    Ok(Anchorer {
        mlflow,
        turbo,
        key,
        wallet,
        gateway_host: s.gateway_host.clone(),
        prediction_tags: s.prediction_tags,
        traces: Default::default(),
        served_models: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("7w")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
    }
}
