//! The HTTP client settings shared by the Turbo client and the gateway reader: rustls, timeouts
//! on every request, optional extra trusted CA (e.g. devnet's), and no redirect to another host.

use std::time::Duration;

/// Connection settings for Arweave-side HTTP.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Extra trusted root certificate (PEM), added to the built-in web roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            extra_ca_pem: None,
        }
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The extra CA file is not a PEM certificate.
    #[error("the CA certificate is not valid PEM: {0}")]
    BadCa(String),
    /// reqwest refused the configuration.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// Builds a pooled client. Redirects are followed only within the same scheme, host and port
/// (at most 3), so a gateway cannot bounce a read to a host the operator did not choose.
pub fn build_client(settings: &HttpSettings) -> Result<reqwest::Client, HttpSetupError> {
    let redirect = reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > 3 || !same_origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(settings.request_timeout)
        .connect_timeout(settings.connect_timeout)
        .redirect(redirect)
        .user_agent(concat!("ario-mlflow-worker/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &settings.extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| HttpSetupError::BadCa(e.to_string()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| HttpSetupError::Build(e.to_string()))
}

/// A `Retry-After` header as a delay: delta-seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}
