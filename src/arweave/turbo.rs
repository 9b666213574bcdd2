//! The Turbo upload client (spec/arweave-turbo.md §2, §6.3).
//!
//! `POST {upload_url}/v1/tx/{token}` with the signed item bytes. The id is computed locally
//! before anything is sent; the receipt must carry that id and the item's owner address, and its
//! RSA-PSS signature must verify. A 202 means "already in flight": the item is confirmed through
//! `GET {upload_url}/v1/tx/{id}/status`. 408, 429, 5xx and transport errors are retried with
//! exponential backoff and jitter (`backon`), honouring `Retry-After`, always re-sending the *same
//! bytes*; 400, 402, 403 and other 4xx are permanent and returned at once as typed errors.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use url::Url;

use super::data_item::DataItem;
use super::http::{build_client, retry_after, HttpSettings, HttpSetupError};
use super::receipt::{Receipt, ReceiptError};

/// Retry policy for transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Largest `Retry-After` honoured; longer requests are capped to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// Turbo client configuration.
#[derive(Debug, Clone)]
pub struct TurboConfig {
    /// Base URL of the upload service, e.g. `https://upload.ardrive.io`.
    pub upload_url: Url,
    /// Timeouts and trusted CA.
    pub http: HttpSettings,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

/// Turbo's answer to `GET /v1/tx/{id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxStatus {
    /// `CONFIRMED`, `FINALIZED` or `FAILED`.
    pub status: String,
    /// `new`, `pending`, `permanent` or `failed`.
    #[serde(default)]
    pub info: String,
    /// Bundle id once bundled.
    #[serde(rename = "bundleId", default, skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
}

/// A successful upload.
#[derive(Debug, Clone, PartialEq)]
pub enum UploadOutcome {
    /// 200 with a verified receipt.
    Accepted(Receipt),
    /// 202 (already in flight), confirmed through the status endpoint.
    AlreadyInFlight(TxStatus),
}

impl UploadOutcome {
    /// The receipt when Turbo issued one.
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            UploadOutcome::Accepted(r) => Some(r),
            UploadOutcome::AlreadyInFlight(_) => None,
        }
    }
}

/// Why an upload or status call failed. [`TurboError::is_permanent`] tells a pipeline whether
/// to park the job (permanent) or try again later (transient, retries exhausted).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TurboError {
    /// The bytes are not a data item this client can send.
    #[error("refusing to upload: not a valid data item: {0}")]
    NotADataItem(String),
    /// Turbo rejected the item (400, 402, 403 or another 4xx); retrying the same bytes cannot help.
    #[error("Turbo rejected data item {id} with HTTP {status}: {body}{hint}", hint = rejection_hint(*status))]
    Rejected {
        /// Local data item id.
        id: String,
        /// HTTP status.
        status: u16,
        /// Response body (first 300 characters).
        body: String,
    },
    /// Every attempt failed transiently.
    #[error("upload of {id} to {url} failed after {attempts} attempts; last error: {last}")]
    Exhausted {
        /// Local data item id.
        id: String,
        /// The URL tried.
        url: String,
        /// Attempts made.
        attempts: usize,
        /// The last transient cause.
        last: String,
    },
    /// The receipt is unsigned, badly signed, or for another item or owner.
    #[error("Turbo receipt for {id} is not trustworthy: {reason}")]
    BadReceipt {
        /// Local data item id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The status endpoint does not know the id.
    #[error("Turbo has no status for {0} (HTTP 404)")]
    UnknownId(String),
    /// The client could not be configured.
    #[error("{0}")]
    Setup(String),
    /// The service description (`/v1/info`) could not be read: the URL and what happened.
    #[error("{url} {reason}")]
    Info {
        /// The URL asked.
        url: String,
        /// Unreachable, the status and an excerpt of the body, or a body that is not JSON.
        reason: String,
    },
}

fn rejection_hint(status: u16) -> &'static str {
    match status {
        402 => " (the wallet is unfunded or the item is over the free-tier size)",
        403 => " (the signer is blocklisted or the item matched a spam rule)",
        400 => " (the item or request is malformed)",
        _ => "",
    }
}

impl TurboError {
    /// Whether retrying later with the same bytes cannot succeed.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            TurboError::NotADataItem(_)
                | TurboError::Rejected { .. }
                | TurboError::BadReceipt { .. }
                | TurboError::Setup(_)
        )
    }
}

impl From<HttpSetupError> for TurboError {
    fn from(e: HttpSetupError) -> Self {
        TurboError::Setup(e.to_string())
    }
}

/// One attempt's failure, classified for the retry loop.
#[derive(Debug)]
enum Attempt {
    Transient {
        cause: String,
        retry_after: Option<Duration>,
    },
    Permanent(TurboError),
}

/// The Turbo upload client. Cheap to clone; connections are pooled.
#[derive(Debug, Clone)]
pub struct TurboClient {
    http: reqwest::Client,
    config: TurboConfig,
}

impl TurboClient {
    /// Builds a client.
    pub fn new(config: TurboConfig) -> Result<TurboClient, TurboError> {
        Ok(TurboClient {
            http: build_client(&config.http)?,
            config,
        })
    }

    /// The configured upload URL.
    pub fn upload_url(&self) -> &Url {
        &self.config.upload_url
    }

    fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.config.upload_url.as_str().trim_end_matches('/'),
            path
        )
    }

    /// Uploads signed data item bytes; returns the verified receipt or the in-flight status.
    pub async fn upload(&self, item_bytes: &[u8]) -> Result<UploadOutcome, TurboError> {
        let item =
            DataItem::parse(item_bytes).map_err(|e| TurboError::NotADataItem(e.to_string()))?;
        let id = item.id();
        let owner = item.owner_address();
        let url = self.endpoint(&format!("v1/tx/{}", item.signature_type.token()));
        let body = bytes::Bytes::copy_from_slice(item_bytes);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let started = std::time::Instant::now();
        let result = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.upload_once(&url, body.clone(), &id, &owner).await
        })
        .retry(self.backoff())
        .when(|a| matches!(a, Attempt::Transient { .. }))
        .adjust(|a, default| self.adjust_delay(a, default))
        .notify(|a, delay| {
            if let Attempt::Transient { cause, .. } = a {
                tracing::warn!(%id, %cause, retry_in_ms = delay.as_millis() as u64, "Turbo upload failed transiently; retrying");
            }
        })
        .await;
        crate::telemetry::upload(result.is_ok(), started.elapsed());
        match result {
            Ok(outcome) => Ok(outcome),
            Err(Attempt::Permanent(e)) => Err(e),
            Err(Attempt::Transient { cause, .. }) => Err(TurboError::Exhausted {
                id,
                url,
                attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
                last: cause,
            }),
        }
    }

    /// One `GET /v1/info` (Turbo's service description), not retried: the readiness probe.
    /// The error says what failed on which URL.
    pub async fn info(&self) -> Result<serde_json::Value, TurboError> {
        let url = self.endpoint("v1/info");
        let failed = |reason: String| TurboError::Info {
            url: url.clone(),
            reason,
        };
        let response = match self.http.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                crate::telemetry::turbo_response(None);
                return Err(failed(format!("is unreachable: {e}")));
            }
        };
        let status = response.status().as_u16();
        crate::telemetry::turbo_response(Some(status));
        let text = response.text().await.unwrap_or_default();
        if status != 200 {
            return Err(failed(format!(
                "answered HTTP {status}: {}",
                excerpt(&text)
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| failed(format!("answered a body that is not JSON: {e}")))
    }

    /// Turbo's status for an id, retried like uploads.
    pub async fn status(&self, id: &str) -> Result<TxStatus, TurboError> {
        let url = self.endpoint(&format!("v1/tx/{id}/status"));
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let result = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.status_once(&url, id).await
        })
        .retry(self.backoff())
        .when(|a| matches!(a, Attempt::Transient { .. }))
        .adjust(|a, default| self.adjust_delay(a, default))
        .await;
        match result {
            Ok(s) => Ok(s),
            Err(Attempt::Permanent(e)) => Err(e),
            Err(Attempt::Transient { cause, .. }) => Err(TurboError::Exhausted {
                id: id.to_string(),
                url,
                attempts: attempts.load(std::sync::atomic::Ordering::Relaxed),
                last: cause,
            }),
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let r = &self.config.retry;
        ExponentialBuilder::default()
            .with_min_delay(r.min_delay)
            .with_max_delay(r.max_delay)
            .with_max_times(r.max_attempts.saturating_sub(1))
            .with_jitter()
    }

    /// A server's `Retry-After` wins over the computed backoff (capped); exhaustion still stops.
    fn adjust_delay(&self, attempt: &Attempt, default: Option<Duration>) -> Option<Duration> {
        let default = default?;
        match attempt {
            Attempt::Transient {
                retry_after: Some(wait),
                ..
            } => Some((*wait).min(self.config.retry.max_retry_after)),
            _ => Some(default),
        }
    }

    async fn upload_once(
        &self,
        url: &str,
        body: bytes::Bytes,
        id: &str,
        owner: &str,
    ) -> Result<UploadOutcome, Attempt> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(body)
            .send()
            .await
            .inspect_err(|_| crate::telemetry::turbo_response(None))
            .map_err(transport)?;
        let status = response.status().as_u16();
        crate::telemetry::turbo_response(Some(status));
        let wait = retry_after(response.headers());
        let text = response.text().await.map_err(transport)?;
        match status {
            200 => {
                let receipt: Receipt = serde_json::from_str(&text).map_err(|e| {
                    Attempt::Permanent(TurboError::BadReceipt {
                        id: id.into(),
                        reason: format!("not a receipt: {e}"),
                    })
                })?;
                check_receipt(&receipt, id, owner).map_err(Attempt::Permanent)?;
                Ok(UploadOutcome::Accepted(receipt))
            }
            202 => match self
                .status_once(&self.endpoint(&format!("v1/tx/{id}/status")), id)
                .await
            {
                Ok(s) => Ok(UploadOutcome::AlreadyInFlight(s)),
                // In flight but not visible yet: try the POST again after a backoff.
                Err(Attempt::Permanent(TurboError::UnknownId(_))) => Err(Attempt::Transient {
                    cause: "HTTP 202 (in flight) but status unknown yet".into(),
                    retry_after: wait,
                }),
                Err(other) => Err(other),
            },
            408 | 429 | 500..=599 => Err(Attempt::Transient {
                cause: format!("HTTP {status}: {}", excerpt(&text)),
                retry_after: wait,
            }),
            _ => Err(Attempt::Permanent(TurboError::Rejected {
                id: id.into(),
                status,
                body: excerpt(&text),
            })),
        }
    }

    async fn status_once(&self, url: &str, id: &str) -> Result<TxStatus, Attempt> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .inspect_err(|_| crate::telemetry::turbo_response(None))
            .map_err(transport)?;
        let status = response.status().as_u16();
        crate::telemetry::turbo_response(Some(status));
        let wait = retry_after(response.headers());
        let text = response.text().await.map_err(transport)?;
        match status {
            200 => serde_json::from_str(&text).map_err(|e| Attempt::Transient {
                cause: format!("status is not JSON: {e}"),
                retry_after: None,
            }),
            404 => Err(Attempt::Permanent(TurboError::UnknownId(id.into()))),
            408 | 429 | 500..=599 => Err(Attempt::Transient {
                cause: format!("status HTTP {status}: {}", excerpt(&text)),
                retry_after: wait,
            }),
            _ => Err(Attempt::Permanent(TurboError::Rejected {
                id: id.into(),
                status,
                body: excerpt(&text),
            })),
        }
    }
}

/// Checks a receipt against the locally computed id and owner address.
pub fn check_receipt(receipt: &Receipt, id: &str, owner: &str) -> Result<(), TurboError> {
    let bad = |reason: String| TurboError::BadReceipt {
        id: id.to_string(),
        reason,
    };
    if receipt.id != id {
        return Err(bad(format!(
            "receipt id {} differs from the local id",
            receipt.id
        )));
    }
    if receipt.owner != owner {
        return Err(bad(format!(
            "receipt owner {} differs from the item's owner address {owner}",
            receipt.owner
        )));
    }
    receipt
        .verify_signature()
        .map_err(|e: ReceiptError| bad(e.to_string()))
}

fn transport(e: reqwest::Error) -> Attempt {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection dropped while reading the response"
    } else {
        "request failed"
    };
    let mut cause = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause.push_str(&format!(": {s}"));
        source = s.source();
    }
    Attempt::Transient {
        cause,
        retry_after: None,
    }
}

fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    t.trim().to_string()
}
