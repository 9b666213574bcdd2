//! The HTTP client `object_store` talks through: the worker's own reqwest 0.12 + rustls (ring)
//! stack, the same one every other client here uses.
//!
//! Why not `object_store`'s built-in client: since 0.13 it brings reqwest 0.13 with aws-lc-rs, a
//! second HTTP stack and a C library build (about 13 minutes cold on these machines, measured in
//! `../shared/S3.md`). Enabling only the `*-base` features plus `ring` and handing it this
//! connector keeps one TLS stack, one set of trusted roots and the extra CA the rest of the
//! worker accepts (`ARIO_MLFLOW_CA_CERT`).

use std::time::Duration;

use futures::TryStreamExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// Builds clients for `object_store` from the worker's HTTP settings.
#[derive(Debug, Clone)]
pub struct ReqwestConnector {
    /// Per-request timeout (a whole object body is streamed within it, so it is generous).
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM), besides the built-in roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl HttpConnector for ReqwestConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(!allow_http)
            .timeout(self.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ario-mlflow-worker/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &self.extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(generic)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(generic)?;
        Ok(HttpClient::new(Reqwest(client)))
    }
}

fn generic(e: reqwest::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "HTTP client",
        source: Box::new(e),
    }
}

/// reqwest 0.12 as an `object_store` HTTP service.
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl HttpService for Reqwest {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut request = reqwest::Request::new(parts.method, url);
        *request.headers_mut() = parts.headers;
        *request.body_mut() = Some(reqwest::Body::wrap(body));
        let response = self.0.execute(request).await.map_err(http_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let stream = response
            .bytes_stream()
            .map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
        let body = HttpResponseBody::new(http_body_util::StreamBody::new(
            stream.map_ok(http_body::Frame::data),
        ));
        let mut out = HttpResponse::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else {
        HttpErrorKind::Request
    };
    HttpError::new(kind, e.without_url())
}
