//! The ar.io Verify client (spec §5.6): `GET <base>/health`, `POST <base>/api/v1/verify`
//! with `{"txId"}`; the answer normalized to the plugin's field names.

use std::time::Duration;

use serde_json::Value;

use super::{Check, VerifyError};
use crate::arweave::http::{build_client, HttpSettings};

/// A configured ar.io Verify service.
#[derive(Debug, Clone)]
pub struct ArioVerifyClient {
    base: String,
    http: reqwest::Client,
}

impl ArioVerifyClient {
    /// A client for `base` (trailing `/` stripped), or `None` when `base` is empty or the
    /// service's `/health` does not answer 200 (the plugin then disables it; we say so).
    pub async fn connect(
        base: &str,
        http: &HttpSettings,
    ) -> Result<Option<ArioVerifyClient>, VerifyError> {
        let base = base.trim().trim_end_matches('/').to_string();
        if base.is_empty() {
            return Ok(None);
        }
        let http = build_client(http)?;
        let health = http
            .get(format!("{base}/health"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match health {
            Ok(r) if r.status().as_u16() == 200 => Ok(Some(ArioVerifyClient { base, http })),
            Ok(r) => Err(VerifyError::Service {
                service: "ar.io Verify",
                reason: format!("is not healthy (HTTP {})", r.status().as_u16()),
                url: base,
            }),
            Err(e) => Err(VerifyError::Service {
                service: "ar.io Verify",
                reason: format!("is unreachable: {e}"),
                url: base,
            }),
        }
    }

    /// Check 4: submits `tx_id` and compares the attestation level with `min_level`.
    pub async fn attest(&self, tx_id: &str, min_level: u64) -> Check {
        let answer = self
            .http
            .post(format!("{}/api/v1/verify", self.base))
            .timeout(Duration::from_secs(30))
            .json(&serde_json::json!({"txId": tx_id}))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let body: Value = match answer {
            Ok(r) => match r.json().await {
                Ok(v) => v,
                Err(e) => return Check::fail(format!("ario_verify_returned_no_result: {e}")),
            },
            Err(e) => return Check::fail(format!("ario_verify_failed: {e}")),
        };
        if !body.is_object() {
            return Check::fail("ario_verify_returned_no_result");
        }
        let level = body["level"].as_u64().unwrap_or(0);
        let link = |v: &Value| {
            v.as_str().map(|s| {
                if s.starts_with("http") {
                    s.to_string()
                } else {
                    format!("{}{s}", self.base)
                }
            })
        };
        let attested_by = body["attestation"]["gateway"]
            .as_str()
            .unwrap_or("unknown")
            .to_string();
        let check = if level >= min_level {
            Check::pass(format!("Verified by {attested_by} (level {level})"))
        } else {
            Check::fail(format!(
                "attestation_level_below_threshold: level {level} < {min_level}; pending, re-run later"
            ))
        };
        check
            .with("attestation_level", level)
            .with("min_attestation_level", min_level)
            .with(
                "status",
                body["existence"]["status"].as_str().unwrap_or("unknown"),
            )
            .with("attested_by", attested_by)
            .with("attested_at", body["attestation"]["attestedAt"].clone())
            .with("report_url", link(&body["links"]["dashboard"]))
            .with("pdf_url", link(&body["links"]["pdf"]))
            .with("verification_id", body["verificationId"].clone())
    }
}
