//! Human output (aligned PASS/FAIL/PENDING rows, colour only when asked) and the
//! self-contained HTML audit report (inline CSS, no external assets, opens offline).

use std::fmt::Write as _;

use super::audit::Audit;
use super::chain::ChainReport;
use super::{Check, ProofVerdict};

/// Row states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Not run, not applicable, or waiting (attestation below the bar).
    Pending,
}

impl Mark {
    /// The mark of a check.
    pub fn of(check: &Check) -> Mark {
        match check.ok {
            Some(true) => Mark::Pass,
            Some(false)
                if check
                    .reason
                    .starts_with("attestation_level_below_threshold") =>
            {
                Mark::Pending
            }
            Some(false) => Mark::Fail,
            None => Mark::Pending,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Mark::Pass => "PASS",
            Mark::Fail => "FAIL",
            Mark::Pending => "PENDING",
        }
    }

    fn paint(self, colour: bool) -> String {
        let w = format!("{:<7}", self.word());
        if !colour {
            return w;
        }
        let code = match self {
            Mark::Pass => 32,
            Mark::Fail => 31,
            Mark::Pending => 33,
        };
        format!("\x1b[{code}m{w}\x1b[0m")
    }
}

/// Whether to colour output: a terminal, and `NO_COLOR` unset or empty.
pub fn colour_wanted(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn row(out: &mut String, label: &str, check: &Check, colour: bool) {
    let _ = writeln!(
        out,
        "  {} {:<28} {}",
        Mark::of(check).paint(colour),
        label,
        check.reason
    );
}

/// The rows of one proof (the plugin's panel, plus our stricter rows).
pub fn verdict_text(title: &str, v: &ProofVerdict, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "  TX {}", v.tx_id);
    if let Some(t) = &v.event_type {
        let _ = writeln!(
            out,
            "  {t}, signed {} by {}",
            v.signed_at.as_deref().unwrap_or("?"),
            v.public_key.as_deref().unwrap_or("?")
        );
    }
    row(&mut out, "Proof Found", &v.proof_found, colour);
    if let Some(skipped) = v
        .proof_found
        .detail
        .get("skipped")
        .and_then(|s| s.as_array())
    {
        for s in skipped {
            let _ = writeln!(
                out,
                "  {:<7} {:<28} skipped {}: {}",
                "",
                "",
                s["gateway"].as_str().unwrap_or("?"),
                s["cause"].as_str().unwrap_or("?")
            );
        }
    }
    row(&mut out, "Data Item", &v.data_item, colour);
    let record = match v.event_type.as_deref() {
        Some("training_complete") => "Training Record Matches",
        Some("model_registered") => "Registration Record Matches",
        Some("prediction") => "Decision Record Matches",
        Some("stage_transition") => "Promotion Record Matches",
        Some("alias_changed") => "Alias Record Matches",
        Some("dataset") => "Dataset Record Matches",
        _ => "Record Matches",
    };
    row(&mut out, record, &v.record_matches(), colour);
    row(&mut out, "Signature Confirmed", &v.checks.signature, colour);
    row(&mut out, "Signer Key", &v.key_binding, colour);
    row(
        &mut out,
        "ar.io attestation",
        &v.checks.ario_attestation,
        colour,
    );
    let verdict = if v.overall_ok { Mark::Pass } else { Mark::Fail };
    let _ = writeln!(out, "  {} VERDICT", verdict.paint(colour));
    out
}

/// The chain walk as rows.
pub fn chain_text(c: &ChainReport, colour: bool) -> String {
    let mut out = String::new();
    let n = c.links.len();
    let _ = writeln!(
        out,
        "  chain ({n} predecessor{}):",
        if n == 1 { "" } else { "s" }
    );
    for l in &c.links {
        let mark = if l.ok { Mark::Pass } else { Mark::Fail };
        let _ = writeln!(
            out,
            "  {} {:<28} {} → {}",
            mark.paint(colour),
            l.event_type.as_deref().unwrap_or("?"),
            l.tx_id,
            l.previous_hash.as_deref().unwrap_or("?")
        );
    }
    for b in &c.breaks {
        let _ = writeln!(out, "  {} {:<28} {b}", Mark::Fail.paint(colour), "break");
    }
    let end = if c.reached_genesis {
        Mark::Pass
    } else {
        Mark::Fail
    };
    let _ = writeln!(
        out,
        "  {} {:<28} {}",
        end.paint(colour),
        "GENESIS",
        if c.reached_genesis {
            "reached"
        } else {
            "not reached"
        }
    );
    out
}

fn stage_mark(ok: Option<bool>) -> (&'static str, Mark) {
    match ok {
        Some(true) => ("PASS", Mark::Pass),
        Some(false) => ("FAIL", Mark::Fail),
        None => ("NOT ANCHORED", Mark::Pending),
    }
}

/// The audit as aligned text.
pub fn audit_text(a: &Audit, colour: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Audit of {}/{} — {}",
        a.model, a.version, a.tracking_uri
    );
    let _ = writeln!(
        out,
        "  run {}  stage {}  aliases {}  artifact hash {}",
        a.run_id.as_deref().unwrap_or("-"),
        a.current_stage,
        if a.aliases.is_empty() {
            "-".to_string()
        } else {
            a.aliases.join(",")
        },
        a.artifact_hash
            .as_deref()
            .map(|h| &h[..h.len().min(24)])
            .unwrap_or("-")
    );
    for s in &a.stages {
        let (word, mark) = stage_mark(s.ok());
        let painted = if colour {
            mark.paint(true).replace(mark.word(), word)
        } else {
            word.to_string()
        };
        let _ = writeln!(
            out,
            "{:<12} {:<13} {:<30} {}",
            painted,
            s.stage,
            truncate(&s.label, 30),
            s.tx_id.as_deref().unwrap_or("-")
        );
        if let Some(v) = &s.verdict {
            if !v.overall_ok {
                for (label, c) in checks_of(v) {
                    if c.ok == Some(false) {
                        let _ = writeln!(out, "{:<12} {:<13} {label}: {}", "", "", c.reason);
                    }
                }
            }
        }
    }
    if a.predictions_found > a.stages.iter().filter(|s| s.stage == "prediction").count() {
        let _ = writeln!(
            out,
            "  ({} predictions found; use --predictions all to verify every one)",
            a.predictions_found
        );
    }
    match &a.checkpoints.chain {
        None => {}
        Some(Ok(())) => {
            let _ = writeln!(
                out,
                "  {} Merkle checkpoints hold {} predictions; their chain is linear",
                a.checkpoints.count, a.checkpoints.predictions
            );
        }
        Some(Err(why)) => {
            let _ = writeln!(
                out,
                "  {} Merkle checkpoints hold {} predictions; chain broken: {why}",
                a.checkpoints.count, a.checkpoints.predictions
            );
        }
    }
    let verdict = if a.overall_ok { Mark::Pass } else { Mark::Fail };
    let _ = writeln!(out, "{} audit verdict", verdict.paint(colour));
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn checks_of(v: &ProofVerdict) -> Vec<(&'static str, &Check)> {
    vec![
        ("proof found", &v.proof_found),
        ("data item", &v.data_item),
        ("signer key", &v.key_binding),
        ("signature", &v.checks.signature),
        ("anchored bytes", &v.checks.anchored_bytes),
        ("live MLflow", &v.checks.source_of_truth),
        ("ar.io attestation", &v.checks.ario_attestation),
    ]
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1d232a;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.6em 0 .4em}\
table{border-collapse:collapse;width:100%}td,th{border:1px solid #d0d7de;padding:.35em .6em;vertical-align:top;text-align:left}\
th{background:#f6f8fa}.PASS{background:#dafbe1;color:#116329;font-weight:600}\
.FAIL{background:#ffebe9;color:#a40e26;font-weight:600}.PENDING,.NOT{background:#fff8c5;color:#7d4e00;font-weight:600}\
code{font:12px ui-monospace,monospace;word-break:break-all}.meta td:first-child{width:12em;font-weight:600}\
.timeline{list-style:none;padding:0;border-left:3px solid #d0d7de;margin-left:.5em}\
.timeline li{margin:0 0 .8em;padding-left:1em;position:relative}\
.timeline li:before{content:'';position:absolute;left:-.55em;top:.35em;width:.8em;height:.8em;border-radius:50%;background:#8c959f}\
.timeline li.t-PASS:before{background:#1a7f37}.timeline li.t-FAIL:before{background:#cf222e}\
.timeline li{background:none}footer{margin-top:2em;color:#57606a;font-size:12px}";

/// The audit as one self-contained HTML page.
pub fn audit_html(a: &Audit) -> String {
    let mut h = String::new();
    let verdict = if a.overall_ok { "PASS" } else { "FAIL" };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>Audit {m}/{v}</title><style>{CSS}</style></head><body>\
<h1>Audit of {m} version {v}: <span class=\"{verdict}\">{verdict}</span></h1>\
<table class=\"meta\">\
<tr><td>Generated</td><td>{g}</td></tr><tr><td>MLflow</td><td><code>{t}</code></td></tr>\
<tr><td>Source run</td><td><code>{r}</code></td></tr><tr><td>Current stage</td><td>{s}</td></tr>\
<tr><td>Aliases</td><td>{al}</td></tr><tr><td>Artifact hash</td><td><code>{ah}</code></td></tr></table>",
        m = esc(&a.model),
        v = esc(&a.version),
        g = esc(&a.generated_at),
        t = esc(&a.tracking_uri),
        r = esc(a.run_id.as_deref().unwrap_or("-")),
        s = esc(&a.current_stage),
        al = esc(&a.aliases.join(", ")),
        ah = esc(a.artifact_hash.as_deref().unwrap_or("-")),
    );
    h.push_str("<h2>Timeline</h2><ol class=\"timeline\">");
    for s in &a.stages {
        let (word, _) = stage_mark(s.ok());
        let class = word.split(' ').next().unwrap_or(word);
        let when = s
            .verdict
            .as_ref()
            .and_then(|v| v.signed_at.clone())
            .unwrap_or_default();
        let _ = write!(
            h,
            "<li class=\"t-{class}\"><b>{stage}</b> {label} — <span class=\"{class}\">{word}</span><br><small>{when}</small></li>",
            stage = esc(&s.stage),
            label = esc(&s.label),
            when = esc(&when)
        );
    }
    h.push_str("</ol><h2>Checks</h2>");
    let mut keys: Vec<String> = Vec::new();
    for s in &a.stages {
        let (word, _) = stage_mark(s.ok());
        let class = word.split(' ').next().unwrap_or(word);
        let _ = write!(
            h,
            "<h3>{} — {} <span class=\"{class}\">{word}</span></h3>",
            esc(&s.stage),
            esc(&s.label)
        );
        let Some(v) = &s.verdict else {
            h.push_str("<p>No proof anchored for this stage.</p>");
            continue;
        };
        let tx = esc(&v.tx_id);
        let _ = write!(
            h,
            "<p>TX <a href=\"https://{gw}/{tx}\"><code>{tx}</code></a> · event <code>{et}</code> · signed <code>{sa}</code><br>\
payload hash <code>{ph}</code><br>previous <code>{pv}</code></p><table><tr><th>Check</th><th>Result</th><th>Reason</th></tr>",
            gw = esc(&a.gateway_host),
            et = esc(v.event_type.as_deref().unwrap_or("?")),
            sa = esc(v.signed_at.as_deref().unwrap_or("?")),
            ph = esc(v.payload_hash.as_deref().unwrap_or("?")),
            pv = esc(v.previous_hash.as_deref().unwrap_or("?")),
        );
        for (label, c) in checks_of(v) {
            let m = Mark::of(c).word();
            let _ = write!(
                h,
                "<tr><td>{label}</td><td class=\"{m}\">{m}</td><td>{}</td></tr>",
                esc(&c.reason)
            );
        }
        h.push_str("</table>");
        if let Some(k) = &v.public_key {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    h.push_str("<h2>Signing keys</h2><ul>");
    for k in &keys {
        let _ = write!(h, "<li><code>{}</code></li>", esc(k));
    }
    let _ = write!(
        h,
        "</ul><p>A signature proves which key signed, not who holds it: compare these keys with the ones \
the model owner published through a trusted channel (or re-run with <code>--trusted-key</code>).</p>\
<footer>ario-mlflow-worker {} · ario.mlflow/v1 · this page has no external assets and works offline</footer></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_aligned_and_coloured_only_when_asked() {
        let pass = Check::pass("signature valid");
        let pending = Check::fail("attestation_level_below_threshold: level 1 < 2");
        let mut plain = String::new();
        row(&mut plain, "Signature Confirmed", &pass, false);
        row(&mut plain, "ar.io attestation", &pending, false);
        assert_eq!(
            plain,
            "  PASS    Signature Confirmed          signature valid\n  PENDING ar.io attestation            attestation_level_below_threshold: level 1 < 2\n"
        );
        let mut coloured = String::new();
        row(&mut coloured, "Signature Confirmed", &pass, true);
        assert!(coloured.contains("\x1b[32mPASS   \x1b[0m"), "{coloured:?}");
        assert!(!colour_wanted(false), "never colour off a terminal");
        assert_eq!(Mark::of(&Check::fail("x")), Mark::Fail);
        assert_eq!(Mark::of(&Check::skipped("n/a")), Mark::Pending);
    }

    #[test]
    fn html_escapes_everything_it_prints() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
