//! `verify run|model|trace|tx` and `audit`: the auditor's commands (spec §5, stricter where §7
//! says the plugin is lenient). Exit 0 only when the verdict passes, 1 when it fails or nothing
//! is anchored, 2 for bad input or an unusable setup.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::connect::{ArweaveHttpArgs, MlflowArgs};
use super::error::{finish, CmdError};
use super::verify_envelope::VerifyEnvelopeArgs;

use crate::arweave::gateway::gateway_list;
use crate::arweave::GatewayReader;
use crate::profile::{prediction, registration, training};
use crate::verify::report::{audit_html, audit_text, chain_text, colour_wanted, verdict_text};
use crate::verify::{ArioVerifyClient, Entity, Verifier, VerifyError};

/// `verify …` subcommands.
#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Verify signed envelope files offline: spec version, payload hash and Ed25519 signature.
    ///
    /// Exit status: 0 all valid, 1 one is invalid, 2 one is unreadable or not JSON.
    Envelope(VerifyEnvelopeArgs),
    /// Verify a run's training proof (`ario.training_tx`).
    ///
    /// Exit status: 0 the verdict passes, 1 it fails or the run is not anchored, 2 bad input.
    Run(Box<VerifyRunArgs>),
    /// Verify a model version's registration proof (`ario.registration_tx`): `NAME/VERSION`
    /// (split at the last `/`) or `--name N --version V`.
    #[command(disable_version_flag = true)]
    Model(Box<VerifyModelArgs>),
    /// Verify a trace's prediction proof (`ario.prediction_tx`).
    Trace(Box<VerifyTraceArgs>),
    /// Verify the proof anchored as a TX, whatever it is about.
    Tx(Box<VerifyTxArgs>),
    /// Verify an `ario.evidence/v1` bundle (`export`'s output) offline, without MLflow: the
    /// wrapper, then every proof it carries, the verdict recomputed.
    ///
    /// Exit status: 0 verified, 1 failed, 2 malformed, 3 partial (withheld bytes, a body
    /// type this tool does not verify, no gateway reachable with --online).
    Evidence(Box<super::export::VerifyEvidenceArgs>),
}

/// What every MLflow-backed verification needs.
#[derive(Debug, Args)]
pub struct VerifierArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub mlflow: MlflowArgs,
    /// Read gateway `host[:port]` (https) or full URL; repeatable, tried in order.
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Comma-separated gateways, used when no `--gateway` is given.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    /// Host put first in the default gateway list (and used in TX links).
    #[arg(
        long,
        env = "ARIO_MLFLOW_GATEWAY_HOST",
        default_value = "turbo-gateway.com"
    )]
    pub gateway_host: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
    /// Pinned signer key (64 hex); repeatable or comma-separated in the env. An envelope
    /// signed by any other key fails.
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
    /// ar.io Verify base URL (check 4); unset = not run.
    #[arg(long, env = "ARIO_MLFLOW_ARIO_VERIFY_URL")]
    pub ario_verify_url: Option<String>,
    /// Attestation level check 4 needs.
    #[arg(long, default_value_t = 2)]
    pub min_attestation_level: u64,
}

/// Output and side-effect flags of `verify run|model|trace|tx`.
#[derive(Debug, Args)]
pub struct VerifyOutputArgs {
    /// Follow `previous_hash` back to GENESIS and report every link and break.
    #[arg(long)]
    pub chain: bool,
    /// On a passing verdict with a passing attestation, tag the entity
    /// `ario.verify_status=verified` plus the attestation fields.
    #[arg(long)]
    pub write_back: bool,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `verify run`.
#[derive(Debug, Args)]
pub struct VerifyRunArgs {
    /// Run id.
    pub run_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// A model version: `NAME/VERSION` or `--name N --version V`.
#[derive(Debug, Args)]
pub struct ModelTargetArgs {
    /// `NAME/VERSION` (the name may contain `/`: split at the last one).
    pub model: Option<String>,
    /// Registered model name (instead of `NAME/VERSION`).
    #[arg(long, requires = "version")]
    pub name: Option<String>,
    /// Version (with `--name`).
    #[arg(long, requires = "name")]
    pub version: Option<String>,
}

/// Arguments of `verify model`.
#[derive(Debug, Args)]
pub struct VerifyModelArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: ModelTargetArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Arguments of `verify trace`.
#[derive(Debug, Args)]
pub struct VerifyTraceArgs {
    /// Trace id (`tr-…`).
    pub trace_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Arguments of `verify tx`.
#[derive(Debug, Args)]
pub struct VerifyTxArgs {
    /// Data item id (base64url; may start with `-`).
    #[arg(allow_hyphen_values = true)]
    pub tx_id: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub output: VerifyOutputArgs,
}

/// Report formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Aligned rows for people.
    Text,
    /// `ario.mlflow.audit/v1` plus our additions.
    Json,
    /// One self-contained HTML page.
    Html,
}

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub target: ModelTargetArgs,
    /// Report format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Predictions to verify: a number (the first N found) or `all` (config key
    /// `prediction_sample`: `predictions` is `run`'s per-trace|batched).
    #[arg(long = "prediction-sample", visible_alias = "predictions", default_value = "5", value_parser = parse_predictions)]
    pub prediction_sample: crate::verify::audit::PredictionSample,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
}

pub(crate) fn parse_predictions(
    text: &str,
) -> Result<crate::verify::audit::PredictionSample, CmdError> {
    use crate::verify::audit::PredictionSample;
    if text == "all" {
        return Ok(PredictionSample::All);
    }
    text.parse()
        .map(PredictionSample::Count)
        .map_err(|_| CmdError::Usage(format!("{text:?} is neither a number nor `all`")))
}

/// Builds the verifier from flags; every error says what to fix.
pub(crate) async fn verifier(a: &VerifierArgs) -> Result<Verifier, CmdError> {
    let mlflow = super::connect::mlflow_client(&a.mlflow)?;
    let gateways = gateway_list(
        &a.gateways,
        a.gateways_env.as_deref(),
        Some(&a.gateway_host),
    )?;
    let http = super::connect::http_settings(&a.http)?;
    let reader = GatewayReader::new(gateways, &http)?;
    let trusted = trusted_keys(&a.trusted_keys)?;
    let attestation = match &a.ario_verify_url {
        Some(url) => ArioVerifyClient::connect(url, &http).await?,
        None => None,
    };
    let verifier = Verifier {
        mlflow,
        gateways: reader,
        trusted_keys: trusted,
        key_history: key_history(a.trusted_keys_file.as_deref())?,
        attestation,
        min_attestation_level: a.min_attestation_level,
        checksum_memo: None,
        evidence: None,
    };
    check_history_online(&verifier, a.trusted_keys_file.as_deref()).await?;
    Ok(verifier)
}

/// The key history's hand-overs, each checked against what the gateways serve.
pub(crate) async fn check_history_online(
    verifier: &Verifier,
    file: Option<&std::path::Path>,
) -> Result<(), CmdError> {
    let Some(path) = file.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    let history = super::keys_rotate::read_history(path)?;
    verifier
        .check_handovers(&history)
        .await
        .map_err(|e| CmdError::Usage(format!("the key history {}: {e}", path.display())))
}

/// `--trusted-keys-file`: the key history's validity windows, the chain checked.
pub(crate) fn key_history(
    file: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<Vec<crate::profile::key_history::KeyWindow>>>, CmdError> {
    let Some(path) = file.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let history = super::keys_rotate::read_history(path)?;
    let windows = history
        .windows()
        .map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))?;
    Ok(Some(std::sync::Arc::new(windows)))
}

/// `--trusted-key` values: lowercase 64-hex Ed25519 public keys (blanks skipped).
pub(crate) fn trusted_keys(keys: &[String]) -> Result<Vec<String>, CmdError> {
    let mut trusted = Vec::new();
    for k in keys {
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() {
            continue;
        }
        if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CmdError::Usage(format!(
                "--trusted-key {k:?} is not 64 hex characters (an Ed25519 public key)"
            )));
        }
        trusted.push(k);
    }
    Ok(trusted)
}

/// `NAME/VERSION` split at the last `/`, or `--name`/`--version`.
pub(crate) fn model_target(
    model: Option<&str>,
    name: Option<&str>,
    version: Option<&str>,
) -> Result<(String, String), CmdError> {
    match (model, name, version) {
        (None, Some(n), Some(v)) => Ok((n.to_string(), v.to_string())),
        (Some(m), None, None) => match m.rsplit_once('/') {
            Some((n, v)) if !n.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                Ok((n.to_string(), v.to_string()))
            }
            _ => Err(CmdError::Usage(format!(
                "{m:?} is not NAME/VERSION (a numeric version after the last '/'); or use --name and --version"
            ))),
        },
        _ => Err(CmdError::usage("give NAME/VERSION or --name and --version (not both)")),
    }
}

/// The model version asked for and the verifier.
async fn model_and_verifier(
    target: &ModelTargetArgs,
    args: &VerifierArgs,
) -> Result<(Verifier, String, String), CmdError> {
    let (name, version) = model_target(
        target.model.as_deref(),
        target.name.as_deref(),
        target.version.as_deref(),
    )?;
    Ok((verifier(args).await?, name, version))
}

/// Verifies the TX found in `tag` of the entity and prints the verdict.
async fn verify_entity(
    v: Verifier,
    entity: Entity,
    tx: Option<String>,
    title: String,
    out: &VerifyOutputArgs,
) -> ExitCode {
    let Some(tx) = tx else {
        if out.json {
            println!(
                "{}",
                json!({"anchored": false, "overall_ok": false, "target": title})
            );
        }
        eprintln!("{title}: not anchored (no proof TX tag found)");
        return ExitCode::from(1);
    };
    let verdict = v.verify_tx(&tx, &entity).await;
    report_verdict(&v, &entity, verdict, title, out).await
}

/// Prints a verdict (text or JSON), walks its chain with `--chain`, writes back with
/// `--write-back`; exit 0 only for a passing verdict (and chain).
async fn report_verdict(
    v: &Verifier,
    entity: &Entity,
    verdict: crate::verify::ProofVerdict,
    title: String,
    out: &VerifyOutputArgs,
) -> ExitCode {
    let checkpointed = verdict.subject.as_ref().and_then(|s| s["type"].as_str())
        == Some("mlflow_prediction_checkpoint");
    let chain = match (&verdict.envelope, out.chain && !checkpointed) {
        (Some(env), true) => Some(v.walk_chain(env).await),
        _ => None,
    };
    let mut written = Vec::new();
    if out.write_back {
        match v.write_back(entity, &verdict).await {
            Ok(w) => written = w,
            Err(e) => eprintln!("warning: write-back failed: {e}"),
        }
    }
    let chain_ok = chain.as_ref().is_none_or(|c| c.reached_genesis);
    let ok = verdict.overall_ok && chain_ok;
    if out.json {
        let mut value = serde_json::to_value(&verdict).unwrap_or_default();
        value["target"] = json!(title);
        if let Some(c) = &chain {
            value["chain"] = serde_json::to_value(c).unwrap_or_default();
        }
        value["written_back"] = json!(written);
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        let colour = colour_wanted(std::io::stdout().is_terminal());
        print!("{}", verdict_text(&title, &verdict, colour));
        if let Some(c) = &chain {
            print!("{}", chain_text(c, colour));
        }
        if out.write_back {
            if written.is_empty() {
                println!("  nothing written back (needs a passing verdict and a passing ar.io attestation)");
            } else {
                println!("  written back: {}", written.join(", "));
            }
        }
    }
    ExitCode::from(if ok { 0 } else { 1 })
}

/// `verify run <run_id>`.
pub async fn run(args: VerifyRunArgs) -> ExitCode {
    finish(verify_run(args).await)
}

async fn verify_run(args: VerifyRunArgs) -> Result<ExitCode, CmdError> {
    let v = verifier(&args.verifier).await?;
    let run = v
        .mlflow
        .get_run(&args.run_id)
        .await
        .map_err(|e| VerifyError::mlflow(format!("run {}", args.run_id), e))?;
    let tx = run.tag(training::TX_TAG).map(str::to_owned);
    let title = format!("Training proof of run {}", args.run_id);
    Ok(verify_entity(v, Entity::Run(args.run_id.clone()), tx, title, &args.output).await)
}

/// `verify model <name>/<version>`.
pub async fn model(args: VerifyModelArgs) -> ExitCode {
    finish(verify_model(args).await)
}

async fn verify_model(args: VerifyModelArgs) -> Result<ExitCode, CmdError> {
    let (v, name, version) = model_and_verifier(&args.target, &args.verifier).await?;
    let mv = v
        .mlflow
        .get_model_version(&name, &version)
        .await
        .map_err(|e| VerifyError::mlflow(format!("model version {name}/{version}"), e))?;
    let tx = mv.tag(registration::TX_TAG).map(str::to_owned);
    let title = format!("Registration proof of {name}/{version}");
    Ok(verify_entity(
        v,
        Entity::ModelVersion(name, version),
        tx,
        title,
        &args.output,
    )
    .await)
}

/// `verify trace <trace_id>`.
pub async fn trace(args: VerifyTraceArgs) -> ExitCode {
    finish(verify_trace(args).await)
}

async fn verify_trace(args: VerifyTraceArgs) -> Result<ExitCode, CmdError> {
    let v = verifier(&args.verifier).await?;
    let info = v
        .mlflow
        .get_trace_info(&args.trace_id)
        .await
        .map_err(|e| VerifyError::mlflow(format!("trace {}", args.trace_id), e))?;
    let tx = info
        .tags
        .get(prediction::TX_TAG)
        .or_else(|| info.tags.get(prediction::LEGACY_TX_TAG))
        .cloned();
    let title = format!("Prediction proof of trace {}", args.trace_id);
    if let (None, Some(checkpoint)) = (
        &tx,
        info.tags
            .get(crate::profile::checkpoint::TX_TAG)
            .filter(|t| !t.is_empty()),
    ) {
        let verdict = v
            .verify_checkpointed_trace(&args.trace_id, checkpoint)
            .await;
        let title = format!("{title} (Merkle checkpoint)");
        return Ok(report_verdict(
            &v,
            &Entity::Trace(args.trace_id.clone()),
            verdict,
            title,
            &args.output,
        )
        .await);
    }
    Ok(verify_entity(
        v,
        Entity::Trace(args.trace_id.clone()),
        tx,
        title,
        &args.output,
    )
    .await)
}

/// `verify tx <tx_id>`.
pub async fn tx(args: VerifyTxArgs) -> ExitCode {
    finish(verify_tx(args).await)
}

async fn verify_tx(args: VerifyTxArgs) -> Result<ExitCode, CmdError> {
    let v = verifier(&args.verifier).await?;
    let title = format!("Proof {}", args.tx_id);
    Ok(verify_entity(
        v,
        Entity::Any,
        Some(args.tx_id.clone()),
        title,
        &args.output,
    )
    .await)
}

/// `audit <name>/<version>`.
pub async fn audit(args: AuditArgs) -> ExitCode {
    finish(audit_version(args).await)
}

async fn audit_version(args: AuditArgs) -> Result<ExitCode, CmdError> {
    let (v, name, version) = model_and_verifier(&args.target, &args.verifier).await?;
    let audit = v
        .audit(
            &name,
            &version,
            args.prediction_sample,
            &args.verifier.gateway_host,
        )
        .await?;
    let colour = args.output.is_none() && colour_wanted(std::io::stdout().is_terminal());
    let text = match args.format {
        AuditFormat::Text => audit_text(&audit, colour),
        AuditFormat::Json => {
            let mut t = serde_json::to_string_pretty(&audit.to_json()).unwrap_or_default();
            t.push('\n');
            t
        }
        AuditFormat::Html => audit_html(&audit),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| CmdError::write(path, e))?;
            eprintln!(
                "{} report written to {} ({})",
                match args.format {
                    AuditFormat::Text => "text",
                    AuditFormat::Json => "JSON",
                    AuditFormat::Html => "HTML",
                },
                path.display(),
                if audit.overall_ok { "PASS" } else { "FAIL" }
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::from(if audit.overall_ok { 0 } else { 1 }))
}

#[cfg(test)]
mod tests {
    use super::model_target;

    #[test]
    fn model_names_with_slashes_split_at_the_last_one() {
        assert_eq!(
            model_target(Some("team/fraud/model/12"), None, None).unwrap(),
            ("team/fraud/model".into(), "12".into())
        );
        assert_eq!(
            model_target(None, Some("a/b"), Some("3")).unwrap(),
            ("a/b".into(), "3".into())
        );
        assert!(model_target(Some("no-version"), None, None).is_err());
        assert!(model_target(Some("m/latest"), None, None).is_err());
        assert!(model_target(Some("m/1"), Some("m"), Some("1")).is_err());
    }
}

/// Arguments of `coverage`.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Only read the tags (anchored or not); verify nothing (fast on a big registry).
    #[arg(long)]
    pub tags_only: bool,
    /// Proofs verified at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
}

/// `coverage`: exit 0 when everything MLflow holds is anchored and verifies, 1 otherwise, 2 on
/// bad input or setup.
pub async fn coverage(args: CoverageArgs) -> ExitCode {
    finish(reconcile(args).await)
}

async fn reconcile(args: CoverageArgs) -> Result<ExitCode, CmdError> {
    let v = verifier(&args.verifier).await?;
    let c = v
        .coverage(!args.tags_only, args.concurrency)
        .await
        .map_err(|e| VerifyError::mlflow(format!("coverage of {}", v.mlflow.tracking_uri()), e))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
    } else {
        print!("{}", crate::verify::coverage::coverage_text(&c));
    }
    if let Some(path) = &args.html {
        std::fs::write(path, crate::verify::coverage::coverage_html(&c))
            .map_err(|e| CmdError::write(path, e))?;
    }
    Ok(if c.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
