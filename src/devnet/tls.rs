//! devnet's TLS material: a small CA and a server certificate it signs for `127.0.0.1`, `::1`
//! and `localhost`. Clients trust the CA (`--cert-out` writes its PEM; Python uses it through
//! `REQUESTS_CA_BUNDLE`, this project through `--ca-cert`). A real CA plus a leaf — rather than
//! one self-signed leaf — passes both OpenSSL's strict checks and rustls/webpki (which refuses a
//! CA certificate used as a server certificate). Kept in `<data-dir>/tls/`, so restarts reuse it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::DevnetError;

fn setup(message: String) -> DevnetError {
    DevnetError::Setup(message)
}

/// PEM texts of the CA certificate, the server certificate and its key.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The server certificate.
    pub cert_pem: String,
    /// The server key (never logged).
    pub key_pem: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { key: <redacted> }")
    }
}

/// Loads `dir/{ca,cert,key}.pem` or creates and saves a fresh set.
pub fn load_or_create(dir: &Path) -> Result<TlsMaterial, DevnetError> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    if let (Ok(ca_pem), Ok(cert_pem), Ok(key_pem)) =
        (read("ca.pem"), read("cert.pem"), read("key.pem"))
    {
        return Ok(TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
        });
    }
    let material = generate()?;
    std::fs::create_dir_all(dir).map_err(|e| setup(format!("create {}: {e}", dir.display())))?;
    for (name, body) in [
        ("ca.pem", &material.ca_pem),
        ("cert.pem", &material.cert_pem),
        ("key.pem", &material.key_pem),
    ] {
        std::fs::write(dir.join(name), body)
            .map_err(|e| setup(format!("write {}: {e}", dir.join(name).display())))?;
    }
    Ok(material)
}

fn generate() -> Result<TlsMaterial, DevnetError> {
    let err = |e: rcgen::Error| DevnetError::Setup(e.to_string());
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "ario-mlflow-worker devnet CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(err)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// A rustls server configuration (ring provider, HTTP/1.1) for the material.
pub fn server_config(material: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, DevnetError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| setup(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|e| setup(format!("server key: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| setup(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| setup(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
