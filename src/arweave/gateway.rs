//! Reading proofs back from ar.io gateways (spec/arweave-turbo.md §3, mlflow-profile §4.4).
//!
//! An ordered gateway list; `GET {gateway}/raw/{id}` on each in turn, falling through on any
//! error or 404 to the next; with an expected SHA-256 the bytes must match or the gateway is
//! skipped as serving altered data (the plugin does not check this; we do). Every failure is
//! kept, so the final error names each gateway and why it failed. Entries are `host[:port]`
//! (https, as the plugin) or full `http(s)://` URLs (which the plugin cannot use).

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use url::Url;

use super::http::{build_client, HttpSettings, HttpSetupError};

/// Default read gateways when nothing is configured (the plugin's defaults).
pub const DEFAULT_GATEWAYS: [&str; 2] = ["turbo-gateway.com", "ardrive.net"];

/// One read gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    base: Url,
}

impl Gateway {
    /// Parses `host[:port]` (https) or an `http(s)://host[:port][/prefix]` URL.
    pub fn parse(entry: &str) -> Result<Gateway, GatewayError> {
        let entry = entry.trim();
        let bad = |why: &str| GatewayError::BadEntry {
            entry: entry.to_string(),
            reason: why.to_string(),
        };
        if entry.is_empty() {
            return Err(bad("empty"));
        }
        let text = if entry.contains("://") {
            entry.to_string()
        } else {
            format!("https://{entry}")
        };
        let url = Url::parse(&text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https gateways are supported"));
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("expected host[:port] or an http(s) URL without query"));
        }
        Ok(Gateway { base: url })
    }

    /// `{base}/raw/{id}`.
    pub fn raw_url(&self, id: &str) -> String {
        format!("{}/raw/{id}", self.base.as_str().trim_end_matches('/'))
    }

    /// `{base}/dataitem/{id}` (the signed item; devnet serves it).
    pub fn data_item_url(&self, id: &str) -> String {
        format!("{}/dataitem/{id}", self.base.as_str().trim_end_matches('/'))
    }

    /// The host (and port), for `ario.arweave_url`-style links and messages.
    pub fn host(&self) -> String {
        match self.base.port() {
            Some(p) => format!("{}:{p}", self.base.host_str().unwrap_or_default()),
            None => self.base.host_str().unwrap_or_default().to_string(),
        }
    }
}

impl fmt::Display for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

/// The gateway list: explicit entries (flags) win, then `ARIO_MLFLOW_GATEWAYS` (comma-separated,
/// replaces the defaults), else `[gateway_host, turbo-gateway.com, ardrive.net]`; de-duplicated
/// in order.
pub fn gateway_list(
    explicit: &[String],
    env_list: Option<&str>,
    gateway_host: Option<&str>,
) -> Result<Vec<Gateway>, GatewayError> {
    let entries: Vec<String> = if !explicit.is_empty() {
        explicit
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::to_owned)
            .collect()
    } else if let Some(list) = env_list.filter(|l| !l.trim().is_empty()) {
        list.split(',').map(str::to_owned).collect()
    } else {
        gateway_host
            .into_iter()
            .chain(DEFAULT_GATEWAYS)
            .map(str::to_owned)
            .collect()
    };
    let mut out: Vec<Gateway> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let gw = Gateway::parse(entry)?;
        if !out.contains(&gw) {
            out.push(gw);
        }
    }
    if out.is_empty() {
        return Err(GatewayError::BadEntry {
            entry: String::new(),
            reason: "no gateways configured".into(),
        });
    }
    Ok(out)
}

/// One gateway's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFailure {
    /// The gateway.
    pub gateway: String,
    /// Why it failed.
    pub cause: String,
}

/// Why one gateway could not serve a read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The request did not complete: timed out, no connection, a broken body.
    #[error("{0}")]
    Transport(String),
    /// The gateway answered with an error status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The gateway redirected to another host (not followed: the bytes must come from it).
    #[error("HTTP {status} redirect to {to} not followed (other host)")]
    Redirect {
        /// The status.
        status: u16,
        /// Where to.
        to: String,
    },
}

impl From<reqwest::Error> for ReadError {
    fn from(e: reqwest::Error) -> ReadError {
        ReadError::Transport(describe(&e))
    }
}

/// Why a read failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// A configured entry is unusable.
    #[error("gateway entry {entry:?} is invalid: {reason}")]
    BadEntry {
        /// The entry as given.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The id is not a 43-character base64url data item id.
    #[error("{0:?} is not an Arweave id (43 base64url characters)")]
    BadId(String),
    /// Every gateway failed.
    #[error("no gateway served {id}: {}", .failures.iter().map(|f| format!("{}: {}", f.gateway, f.cause)).collect::<Vec<_>>().join("; "))]
    AllFailed {
        /// The id requested.
        id: String,
        /// One entry per gateway tried.
        failures: Vec<GatewayFailure>,
    },
    /// The HTTP client could not be configured.
    #[error("{0}")]
    Setup(String),
}

impl From<HttpSetupError> for GatewayError {
    fn from(e: HttpSetupError) -> Self {
        GatewayError::Setup(e.to_string())
    }
}

/// Bytes read from a gateway.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The payload bytes.
    pub bytes: Vec<u8>,
    /// The gateway that served them.
    pub gateway: String,
    /// `Content-Type` as served.
    pub content_type: Option<String>,
    /// Gateways tried before this one, and why each failed.
    pub failures: Vec<GatewayFailure>,
}

/// Reads `/raw/{id}` over an ordered gateway list.
#[derive(Debug, Clone)]
pub struct GatewayReader {
    http: reqwest::Client,
    gateways: Vec<Gateway>,
}

impl GatewayReader {
    /// Builds a reader (timeouts and trusted CA from `http`).
    pub fn new(gateways: Vec<Gateway>, http: &HttpSettings) -> Result<GatewayReader, GatewayError> {
        Ok(GatewayReader {
            http: build_client(http)?,
            gateways,
        })
    }

    /// The gateways, in order.
    pub fn gateways(&self) -> &[Gateway] {
        &self.gateways
    }

    /// Fetches the payload of `id`, trying each gateway once in order; with `expected_sha256`
    /// a gateway whose bytes differ counts as failed ("served altered bytes").
    pub async fn fetch_raw(
        &self,
        id: &str,
        expected_sha256: Option<&[u8; 32]>,
    ) -> Result<Fetched, GatewayError> {
        if !is_arweave_id(id) {
            return Err(GatewayError::BadId(id.to_string()));
        }
        let mut failures = Vec::new();
        for gateway in &self.gateways {
            match self.fetch_one(gateway, id).await {
                Ok((bytes, content_type)) => {
                    if let Some(expected) = expected_sha256 {
                        let got: [u8; 32] = Sha256::digest(&bytes).into();
                        if &got != expected {
                            failures.push(GatewayFailure {
                                gateway: gateway.to_string(),
                                cause: format!(
                                    "served altered bytes (sha256 {} ≠ expected {})",
                                    hex::encode(got),
                                    hex::encode(expected)
                                ),
                            });
                            continue;
                        }
                    }
                    if !failures.is_empty() {
                        tracing::info!(%id, gateway = %gateway, failed = failures.len(), "gateway failover succeeded");
                    }
                    return Ok(Fetched {
                        bytes,
                        gateway: gateway.to_string(),
                        content_type,
                        failures,
                    });
                }
                Err(cause) => failures.push(GatewayFailure {
                    gateway: gateway.to_string(),
                    cause: cause.to_string(),
                }),
            }
        }
        Err(GatewayError::AllFailed {
            id: id.to_string(),
            failures,
        })
    }

    /// The payload of `id` from one gateway, or why it could not be read.
    pub async fn fetch_from(
        &self,
        gateway: &Gateway,
        id: &str,
    ) -> Result<(Vec<u8>, Option<String>), ReadError> {
        self.fetch_one(gateway, id).await
    }

    /// The signed data item `id` from one gateway's `/dataitem/{id}` endpoint: `Ok(None)` when
    /// the gateway has no such endpoint or item (any 4xx), `Err` when it could not be asked.
    pub async fn fetch_data_item(
        &self,
        gateway: &Gateway,
        id: &str,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let url = gateway.data_item_url(id);
        let response = self.http.get(url).send().await?;
        let status = response.status();
        if status.is_client_error() || status.is_redirection() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ReadError::Status(status.as_u16()));
        }
        let bytes = response.bytes().await?;
        Ok(Some(bytes.to_vec()))
    }

    async fn fetch_one(
        &self,
        gateway: &Gateway,
        id: &str,
    ) -> Result<(Vec<u8>, Option<String>), ReadError> {
        let response = self.http.get(gateway.raw_url(id)).send().await?;
        let status = response.status();
        if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            return Err(ReadError::Redirect {
                status: status.as_u16(),
                to: to.to_string(),
            });
        }
        if !status.is_success() {
            return Err(ReadError::Status(status.as_u16()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        Ok((bytes.to_vec(), content_type))
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        let mut s = e.to_string();
        if let Some(src) = std::error::Error::source(e) {
            s.push_str(&format!(": {src}"));
        }
        s
    }
}

/// Whether `id` has the shape of an Arweave / data item id.
pub fn is_arweave_id(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Per-gateway timeout used when a caller does not set one.
pub const DEFAULT_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_as_plugin_hosts_or_full_urls() {
        assert_eq!(
            Gateway::parse("turbo-gateway.com").unwrap().raw_url("x"),
            "https://turbo-gateway.com/raw/x"
        );
        assert_eq!(
            Gateway::parse("127.0.0.1:1984").unwrap().raw_url("x"),
            "https://127.0.0.1:1984/raw/x"
        );
        assert_eq!(
            Gateway::parse("http://127.0.0.1:1984/")
                .unwrap()
                .raw_url("x"),
            "http://127.0.0.1:1984/raw/x"
        );
        assert!(Gateway::parse("ftp://x").is_err());
        assert!(Gateway::parse("").is_err());
    }

    #[test]
    fn list_precedence_and_dedup() {
        let hosts = |v: Vec<Gateway>| v.iter().map(|g| g.host()).collect::<Vec<_>>();
        assert_eq!(
            hosts(gateway_list(&[], None, None).unwrap()),
            ["turbo-gateway.com", "ardrive.net"]
        );
        assert_eq!(
            hosts(gateway_list(&[], None, Some("g.example")).unwrap()),
            ["g.example", "turbo-gateway.com", "ardrive.net"]
        );
        assert_eq!(
            hosts(gateway_list(&[], Some("a.io, b.io,,a.io"), Some("g.example")).unwrap()),
            ["a.io", "b.io"]
        );
        assert_eq!(
            hosts(gateway_list(&["c.io".into()], Some("a.io"), None).unwrap()),
            ["c.io"]
        );
    }

    #[test]
    fn ids_are_checked_before_any_request() {
        assert!(is_arweave_id("-Q_fs6C_lg6YaUGQ4ZWMkCzO10ST0XJPMy0jV_LroAs"));
        assert!(!is_arweave_id("../etc/passwd"));
        assert!(!is_arweave_id("-Q_fs6C_lg6YaUGQ4ZWMkCzO10ST0XJPMy0jV_LroA"));
    }
}
