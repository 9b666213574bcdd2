//! `verify envelope <FILE|-> [--payload FILE] [--text]`: the offline kernel check of one
//! envelope. Exit 0 valid, 1 invalid, 2 when the envelope or payload cannot be read or the
//! envelope is not JSON.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::proof::{verify_envelope_text, Verdict};

/// Arguments of `verify envelope`.
#[derive(Debug, Args)]
pub struct VerifyEnvelopeArgs {
    /// Envelope JSON file(s), or `-` for standard input. With several files each gets a
    /// verdict (one JSON object per line, or one text line each).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The external payload's stored bytes (e.g. `ario/payload.json`), hashed as they are
    /// (one envelope file only).
    #[arg(long)]
    pub payload: Option<PathBuf>,
    /// Print a one-line human summary instead of the JSON verdict.
    #[arg(long)]
    pub text: bool,
}

/// Exit status for a valid envelope.
pub const EXIT_VALID: u8 = 0;
/// Exit status for an envelope that fails verification.
pub const EXIT_INVALID: u8 = 1;
/// Exit status when the input cannot be read or is not JSON.
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// Runs the command.
pub fn run(args: &VerifyEnvelopeArgs) -> ExitCode {
    if args.payload.is_some() && args.files.len() != 1 {
        return unreadable("--payload goes with exactly one envelope file");
    }
    let payload = match &args.payload {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => return unreadable(&format!("cannot read payload {}: {e}", path.display())),
        },
        None => None,
    };
    let single = args.files.len() == 1;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut worst = EXIT_VALID;
    for file in &args.files {
        let code = one(file, payload.as_deref(), args.text, single, &mut out);
        worst = worst.max(code);
    }
    let _ = out.flush();
    ExitCode::from(worst)
}

/// Verifies one file and prints its verdict; returns its exit status.
fn one(file: &Path, payload: Option<&[u8]>, text: bool, pretty: bool, out: &mut impl Write) -> u8 {
    let name = file.display().to_string();
    let envelope = match read_input(file) {
        Ok(bytes) => bytes,
        Err(e) => return unreadable_code(&format!("cannot read envelope {name}: {e}")),
    };
    let verdict = match verify_envelope_text(&envelope, payload) {
        Ok(v) => v,
        Err(e) => return unreadable_code(&format!("{name} is not a JSON envelope: {e}")),
    };
    let printed = if text {
        writeln!(out, "{}", summary(&name, &verdict))
    } else {
        let report = Report {
            file: name,
            verdict: &verdict,
        };
        let json = if pretty {
            serde_json::to_string_pretty(&report)
        } else {
            serde_json::to_string(&report)
        };
        match json {
            Ok(t) => writeln!(out, "{t}"),
            Err(e) => return unreadable_code(&format!("cannot print the verdict: {e}")),
        }
    };
    if let Err(e) = printed {
        return unreadable_code(&format!("cannot write the verdict: {e}"));
    }
    if verdict.overall {
        EXIT_VALID
    } else {
        EXIT_INVALID
    }
}

/// The one-line human summary printed with `--text`.
pub fn summary(name: &str, v: &Verdict) -> String {
    let payload = match v.payload_hash_valid {
        Some(true) => "bound",
        Some(false) => "MISMATCH",
        None => "not checked (no payload given)",
    };
    let status = if v.overall { "PASS" } else { "FAIL" };
    let reason = v
        .reason
        .as_deref()
        .map(|r| format!(" reason={r}"))
        .unwrap_or_default();
    let spec = serde_json::to_value(v.spec_version_status)
        .ok()
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{status} {name}: signature={} payload_hash={payload} spec_version={spec}{}{reason}",
        if v.signature_valid {
            "valid"
        } else {
            "INVALID"
        },
        if v.legacy_envelope {
            " (legacy envelope)"
        } else {
            ""
        },
    )
}

fn read_input(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path)
    }
}

fn unreadable(message: &str) -> ExitCode {
    ExitCode::from(unreadable_code(message))
}

fn unreadable_code(message: &str) -> u8 {
    eprintln!("error: {message}");
    EXIT_UNREADABLE
}
