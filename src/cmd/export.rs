//! `export` and `verify evidence`: evidence that outlives MLflow.
//!
//! `export NAME/VERSION` (or `--run RUN_ID`, or a window `--since … --until …`) audits like
//! `audit`, keeping every byte the proofs rest on, and writes one signed `ario.evidence/v1`
//! bundle (body `ario.mlflow.audit/v1`); `--anchor` uploads it as a data item too, so the
//! export itself has witnessed time. `verify evidence FILE` judges a bundle offline, without
//! MLflow; `--online` also compares every TX with what the gateways serve.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::connect::ArweaveHttpArgs;
use super::error::{finish, CmdError};
use super::signer::SignerArgs;
use super::verify::{trusted_keys, VerifierArgs};
use crate::arweave::gateway::gateway_list;
use crate::arweave::turbo::{RetryPolicy, TurboConfig};
use crate::arweave::{DataItem, GatewayReader, Tag, TurboClient, UploadOutcome};
use crate::keys::KeySource;
use crate::profile::evidence::{self as format, Unsigned};
use crate::proof::jcs;
use crate::verify::audit::{Audit, PredictionSample};
use crate::verify::evidence::{audit_body, EvidenceLog};
use crate::verify::offline::{self, EvidenceReport, Status};
use crate::verify::report::{colour_wanted, esc};

/// Arguments of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model version, `NAME/VERSION` (split at the last `/`).
    pub model: Option<String>,
    /// Export one run (its datasets and training) instead of a model version.
    #[arg(long, conflicts_with = "model")]
    pub run: Option<String>,
    /// Window export: model versions registered at or after this time (RFC 3339 or
    /// YYYY-MM-DD, UTC).
    #[arg(long, requires = "until", conflicts_with_all = ["model", "run"])]
    pub since: Option<String>,
    /// Window export: … and before this time.
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Window export: only these registered models (repeatable).
    #[arg(long = "model", value_name = "NAME", requires = "since")]
    pub models: Vec<String>,
    /// Window export: only versions whose source run is in these experiments (ids, repeatable).
    #[arg(long = "experiment", value_name = "ID", requires = "since")]
    pub experiments: Vec<String>,
    /// Write the bundle here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Chain to the previous export of the same scope: its `previous_hash` is that bundle's
    /// hash (`GENESIS` without it).
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// Predictions to include per version: a number or `all` (config key `prediction_sample`).
    #[arg(long = "prediction-sample", visible_alias = "predictions", default_value = "all", value_parser = super::verify::parse_predictions)]
    pub prediction_sample: PredictionSample,
    /// Upload the bundle as a data item through Turbo too (its TX is printed).
    #[arg(long)]
    pub anchor: bool,
    /// Turbo upload service base URL (`--anchor`).
    #[arg(
        long,
        env = "ARIO_MLFLOW_UPLOAD_URL",
        default_value = "https://upload.ardrive.io"
    )]
    pub upload_url: url::Url,
    /// Arweave JWK or Solana id.json to sign the `--anchor` data item with [default:
    /// ~/.ario-mlflow/wallet.json].
    #[arg(long, env = "ARIO_MLFLOW_ARWEAVE_WALLET")]
    pub wallet: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: SignerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub verifier: VerifierArgs,
}

/// Output of `verify evidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvidenceFormat {
    /// Plain text.
    Text,
    /// JSON.
    Json,
    /// One self-contained HTML page.
    Html,
}

/// Arguments of `verify evidence`.
#[derive(Debug, Args)]
pub struct VerifyEvidenceArgs {
    /// The bundle (`export`'s output, or any `ario.evidence/v1` bundle).
    pub file: PathBuf,
    /// Also fetch every TX from the gateways and compare it with the bundle.
    #[arg(long)]
    pub online: bool,
    /// Pinned key (64 hex), repeatable: the bundle and every proof in it must be signed by one.
    #[arg(long = "trusted-key", value_delimiter = ',')]
    pub trusted_keys: Vec<String>,
    /// A trusted key history (`keys history --json`): the bundle and every proof in it must be
    /// signed by a key valid when it signed (the hand-overs' signatures are checked offline).
    #[arg(long, env = "ARIO_MLFLOW_TRUSTED_KEYS_FILE", value_name = "FILE")]
    pub trusted_keys_file: Option<PathBuf>,
    /// The previous export of the scope: the bundle's `previous_hash` must link to it.
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = EvidenceFormat::Text)]
    pub format: EvidenceFormat,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub report: Option<PathBuf>,
    /// Read gateway `host[:port]` or full URL (`--online`), repeatable.
    #[arg(long = "gateway")]
    pub gateways: Vec<String>,
    /// Comma-separated gateways, used when no `--gateway` is given.
    #[arg(long, env = "ARIO_MLFLOW_GATEWAYS", hide = true)]
    pub gateways_env: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: ArweaveHttpArgs,
}

/// `export`.
pub async fn export(args: ExportArgs) -> ExitCode {
    finish(run_export(args).await)
}

/// A date or RFC 3339 time as milliseconds since the epoch.
fn parse_time_ms(flag: &str, text: &str) -> Result<i64, CmdError> {
    use time::format_description::well_known::Rfc3339;
    let t = text.trim();
    let parsed = time::OffsetDateTime::parse(t, &Rfc3339).or_else(|_| {
        time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_utc())
    });
    parsed
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            CmdError::Usage(format!(
                "--{flag} {text:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor a date (2026-12-01)"
            ))
        })
}

async fn run_export(args: ExportArgs) -> Result<ExitCode, CmdError> {
    // Everything that can be checked without MLflow first.
    let previous = match &args.previous {
        Some(path) => Some(read_bundle(path)?),
        None => None,
    };
    let window = match (&args.since, &args.until) {
        (Some(s), Some(u)) => {
            let (since, until) = (parse_time_ms("since", s)?, parse_time_ms("until", u)?);
            if until <= since {
                return Err(CmdError::usage("--until must be after --since"));
            }
            Some((since, until))
        }
        _ => None,
    };
    if args.model.is_none() && args.run.is_none() && window.is_none() {
        return Err(CmdError::usage(
            "give NAME/VERSION, --run RUN_ID, or a window (--since DATE --until DATE)",
        ));
    }
    let key = args.key.load()?;
    if let KeySource::Generated(path) = key.source() {
        eprintln!(
            "warning: no envelope key was found, so a new one was generated at {}; the export is signed by a key no proof in it uses",
            path.display()
        );
    }
    let mut verifier = super::verify::verifier(&args.verifier).await?;
    let log = EvidenceLog::new();
    verifier.evidence = Some(log.clone());
    let host = args.verifier.gateway_host.clone();
    let (body, scope) = if let Some(m) = &args.model {
        let (name, version) = super::verify::model_target(Some(m), None, None)?;
        let audit = verifier
            .audit(&name, &version, args.prediction_sample, &host)
            .await?;
        (
            scoped(
                audit_body(&audit, &log),
                json!({"kind": "model_version", "name": name, "version": version}),
            ),
            format!("{name}/{version}"),
        )
    } else if let Some(run) = &args.run {
        let audit = verifier.audit_run(run, &host).await?;
        (
            scoped(
                audit_body(&audit, &log),
                json!({"kind": "run", "run_id": run}),
            ),
            format!("run {run}"),
        )
    } else {
        let (since, until) = window.unwrap_or_default();
        let audits = window_audits(&verifier, &args, since, until, &log).await?;
        let completeness = verifier.coverage(false, 4).await.map_err(|e| {
            CmdError::Usage(format!(
                "coverage of {}: {e}",
                verifier.mlflow.tracking_uri()
            ))
        })?;
        let body = json!({
            "schema": format::AUDIT_BODY_TYPE,
            "scope": {
                "kind": "window",
                "since": args.since, "until": args.until,
                "models": args.models, "experiments": args.experiments,
            },
            "tracking_uri": verifier.mlflow.tracking_uri().to_string(),
            "audits": audits.iter().map(|a| audit_body(a, &log)).collect::<Vec<_>>(),
            "completeness": {
                "scope": "registry",
                "note": "every entity MLflow held when exported, by event type (tags read, not verified): verifying/anchored, signed only, not anchored",
                "coverage": serde_json::to_value(&completeness).unwrap_or(Value::Null),
            },
            "generator": format!("ario-mlflow-worker/{}", env!("CARGO_PKG_VERSION")),
        });
        (
            body,
            format!("{} versions registered in the window", audits.len()),
        )
    };
    let generated_at = now_rfc3339();
    let verdict =
        offline::recompute(&body, offline::Keys::default()).wrapper_verdict(&generated_at);
    let status = verdict["status"].as_str().unwrap_or("").to_string();
    let previous_hash = match &previous {
        Some(p) => Some(
            format::chain_hash(p)
                .map_err(|e| CmdError::Usage(format!("the previous export: {e}")))?,
        ),
        None => None,
    };
    let bundle = format::sign_bundle(
        Unsigned {
            body_type: format::AUDIT_BODY_TYPE.into(),
            issuer: json!({
                "kind": format::ISSUER_KIND,
                "tracking_uri": verifier.mlflow.tracking_uri().to_string(),
                "generator": format!("ario-mlflow-worker/{}", env!("CARGO_PKG_VERSION")),
            }),
            generated_at,
            gateway: Some(format!("https://{host}")),
            verdict,
            body,
            previous_hash,
        },
        &key,
    )
    .map_err(|e| CmdError::Usage(e.to_string()))?;
    let bytes = jcs::canonicalize(&bundle).map_err(|e| CmdError::Usage(e.to_string()))?;
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| CmdError::write(path, e))?,
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(|e| CmdError::Usage(format!("standard output: {e}")))?;
        }
    }
    eprintln!(
        "exported {scope}: {} bytes, verdict {status}, signed by {}{}",
        bytes.len(),
        key.public_key_hex(),
        args.output
            .as_ref()
            .map(|p| format!(", written to {}", p.display()))
            .unwrap_or_default()
    );
    if args.anchor {
        let tx = anchor_bundle(&args, bytes).await?;
        eprintln!("anchored as {tx}");
        println!("{}", json!({"anchored_tx": tx}));
    }
    Ok(ExitCode::SUCCESS)
}

/// The body with what it is about.
fn scoped(mut body: Value, scope: Value) -> Value {
    body["scope"] = scope;
    body
}

/// The audits of every version registered in the window (filtered by model and experiment).
async fn window_audits(
    verifier: &crate::verify::Verifier,
    args: &ExportArgs,
    since: i64,
    until: i64,
    _log: &EvidenceLog,
) -> Result<Vec<Audit>, CmdError> {
    let mut versions = Vec::new();
    let filters: Vec<String> = if args.models.is_empty() {
        vec![String::new()]
    } else {
        args.models
            .iter()
            .map(|m| format!("name='{}'", m.replace('\'', "\\'")))
            .collect()
    };
    for f in &filters {
        let found = verifier
            .mlflow
            .search_model_versions(f)
            .await
            .map_err(|e| {
                CmdError::Usage(format!(
                    "model versions of {}: {e}",
                    verifier.mlflow.tracking_uri()
                ))
            })?;
        versions.extend(found.into_iter().filter(|mv| {
            mv.creation_timestamp
                .is_some_and(|t| t >= since && t < until)
        }));
    }
    versions.sort_by(|a, b| {
        (a.creation_timestamp, &a.name, &a.version).cmp(&(
            b.creation_timestamp,
            &b.name,
            &b.version,
        ))
    });
    let mut audits = Vec::new();
    for mv in versions {
        if !args.experiments.is_empty() {
            let in_scope = match verifier.mlflow.get_run(&mv.run_id).await {
                Ok(run) => args.experiments.contains(&run.info.experiment_id),
                Err(_) => false,
            };
            if !in_scope {
                continue;
            }
        }
        audits.push(
            verifier
                .audit(
                    &mv.name,
                    &mv.version,
                    args.prediction_sample,
                    &args.verifier.gateway_host,
                )
                .await?,
        );
    }
    Ok(audits)
}

/// Uploads the bundle as a data item; its id.
async fn anchor_bundle(args: &ExportArgs, bytes: Vec<u8>) -> Result<String, CmdError> {
    let wallet = super::signer::load_wallet(args.wallet.as_deref(), args.key.allow_open_key_files)?;
    let tags = vec![
        Tag::new("Content-Type", "application/json"),
        Tag::new("App-Name", crate::profile::APP_NAME),
        Tag::new("Spec-Version", format::SPEC_VERSION),
        Tag::new("Body-Type", format::AUDIT_BODY_TYPE),
    ];
    let item = DataItem::sign(&wallet.signer, tags, bytes, None, None)?;
    let http = super::connect::http_settings(&args.verifier.http)?;
    let client = TurboClient::new(TurboConfig {
        upload_url: args.upload_url.clone(),
        http,
        retry: RetryPolicy::default(),
    })?;
    let id = item.id();
    match client
        .upload(&item.to_bytes())
        .await
        .map_err(CmdError::failed)?
    {
        UploadOutcome::Accepted(_) | UploadOutcome::AlreadyInFlight(_) => Ok(id),
    }
}

fn read_bundle(path: &std::path::Path) -> Result<Value, CmdError> {
    let bytes = std::fs::read(path).map_err(|e| CmdError::read(path, e))?;
    format::parse(&bytes).map_err(|e| CmdError::Usage(format!("{}: {e}", path.display())))
}

fn now_rfc3339() -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_default()
}

/// `verify evidence`.
pub async fn verify_evidence(args: VerifyEvidenceArgs) -> ExitCode {
    match judge(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn judge(args: &VerifyEvidenceArgs) -> Result<ExitCode, CmdError> {
    let trusted = trusted_keys(&args.trusted_keys)?;
    let previous = match &args.previous {
        Some(p) => Some(read_bundle(p)?),
        None => None,
    };
    let bytes = std::fs::read(&args.file).map_err(|e| CmdError::read(&args.file, e))?;
    let key_history =
        super::verify::key_history(args.trusted_keys_file.as_deref())?.map(|w| w.as_ref().clone());
    let opts = offline::Options {
        trusted_keys: trusted,
        previous,
        key_history,
    };
    let started = std::time::Instant::now();
    let mut report = offline::verify_bytes(&bytes, &opts);
    if args.online && report.status != Status::Malformed {
        let gateways = gateway_list(&args.gateways, args.gateways_env.as_deref(), None)?;
        let http = super::connect::http_settings(&args.http)?;
        let reader = GatewayReader::new(gateways, &http)?;
        // Parsed again: a malformed bundle never reaches here.
        if let Ok(bundle) = format::parse(&bytes) {
            let online = offline::check_online(&bundle, &reader).await;
            report = report.with_online(online);
        }
    }
    let elapsed = started.elapsed();
    let colour = args.report.is_none() && colour_wanted(std::io::stdout().is_terminal());
    let out = match args.format {
        EvidenceFormat::Text => evidence_text(&args.file, &report, colour),
        EvidenceFormat::Json => {
            let mut t = serde_json::to_string_pretty(&report).unwrap_or_default();
            t.push('\n');
            t
        }
        EvidenceFormat::Html => evidence_html(&args.file, &report),
    };
    match &args.report {
        Some(path) => std::fs::write(path, &out).map_err(|e| CmdError::write(path, e))?,
        None => print!("{out}"),
    }
    eprintln!(
        "{} in {:.2} s",
        report.status.as_str(),
        elapsed.as_secs_f64()
    );
    Ok(ExitCode::from(report.status.exit_code()))
}

fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

fn status_line(s: Status) -> &'static str {
    match s {
        Status::Verified => "VERIFIED (exit 0)",
        Status::Failed => "FAILED (exit 1)",
        Status::Malformed => "MALFORMED (exit 2)",
        Status::Partial => "PARTIAL (exit 3): nothing failed, but not everything could be checked",
        Status::NotFound => "NOTHING ANCHORED (exit 3)",
    }
}

/// The report as text.
pub fn evidence_text(file: &std::path::Path, r: &EvidenceReport, colour: bool) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "Evidence bundle {}", file.display());
    if let Some(why) = &r.malformed {
        let _ = writeln!(o, "  {why}");
    } else {
        let _ = writeln!(
            o,
            "  {} · issued {} by {}\n  signed by {}; asserted verdict: {}",
            r.body_type.as_deref().unwrap_or("?"),
            r.generated_at.as_deref().unwrap_or("?"),
            r.issuer,
            r.public_key.as_deref().unwrap_or("?"),
            r.asserted_status.as_deref().unwrap_or("(none)")
        );
        for f in &r.findings {
            let _ = writeln!(o, "  {} {} {}: {}", mark(f.ok), f.scope, f.check, f.reason);
        }
        if let Some(b) = &r.body {
            for f in &b.findings {
                let _ = writeln!(o, "  {} {} {}: {}", mark(f.ok), f.scope, f.check, f.reason);
            }
            for i in &b.items {
                let _ = writeln!(
                    o,
                    "  {} {:<12} {}{}",
                    mark(i.ok),
                    i.kind,
                    i.label,
                    i.tx_id
                        .as_deref()
                        .map(|t| format!("  [{t}]"))
                        .unwrap_or_default()
                );
                for n in &i.notes {
                    let _ = writeln!(o, "        {n}");
                }
            }
            let c = &b.counts;
            let _ = writeln!(
                o,
                "  {} verified, {} failed, {} undetermined, {} not anchored",
                c.verified, c.failed, c.undetermined, c.not_anchored
            );
        }
    }
    let line = status_line(r.status);
    let painted = match (colour, r.status) {
        (false, _) => line.to_string(),
        (true, Status::Verified) => format!("\x1b[32m{line}\x1b[0m"),
        (true, Status::Failed | Status::Malformed) => format!("\x1b[31m{line}\x1b[0m"),
        (true, _) => format!("\x1b[33m{line}\x1b[0m"),
    };
    let _ = writeln!(o, "{painted}");
    o
}

/// The report as one self-contained HTML page.
pub fn evidence_html(file: &std::path::Path, r: &EvidenceReport) -> String {
    let mut rows = String::new();
    let row = |ok: Option<bool>, a: &str, b: &str| {
        format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            match ok {
                Some(true) => "ok",
                Some(false) => "bad",
                None => "unk",
            },
            mark(ok),
            esc(a),
            esc(b)
        )
    };
    if let Some(why) = &r.malformed {
        rows.push_str(&row(Some(false), "malformed", why));
    }
    for f in &r.findings {
        rows.push_str(&row(f.ok, &format!("{} {}", f.scope, f.check), &f.reason));
    }
    if let Some(b) = &r.body {
        for f in &b.findings {
            rows.push_str(&row(f.ok, &format!("{} {}", f.scope, f.check), &f.reason));
        }
        for i in &b.items {
            let what = format!("{} {}", i.kind, i.label);
            let detail = format!(
                "{}{}",
                i.tx_id.as_deref().unwrap_or("not anchored"),
                if i.notes.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", i.notes.join("; "))
                }
            );
            rows.push_str(&row(i.ok, &what, &detail));
        }
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Evidence: {title}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}}tr.ok td:first-child{{color:#080}}tr.bad td:first-child{{color:#b00}}tr.unk td:first-child{{color:#a60}}.status{{font-size:1.4em;font-weight:bold}}</style></head>\n<body><h1>Evidence bundle</h1>\n<p>{title}<br>{body_type} · issued {generated} · signed by <code>{key}</code> · asserted verdict: {asserted}</p>\n<p class=\"status\">{status}</p>\n<table>\n{rows}</table>\n<p>Verified offline against the keys embedded in the bundle; the verdict shown is the one recomputed, never the one asserted.</p></body></html>\n",
        title = esc(&file.display().to_string()),
        body_type = esc(r.body_type.as_deref().unwrap_or("?")),
        generated = esc(r.generated_at.as_deref().unwrap_or("?")),
        key = esc(r.public_key.as_deref().unwrap_or("?")),
        asserted = esc(r.asserted_status.as_deref().unwrap_or("(none)")),
        status = esc(status_line(r.status)),
    )
}
