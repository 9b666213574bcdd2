//! `devnet`: the project's own local Turbo-compatible upload service and gateway
//! (spec/arweave-turbo.md §6.2). The internet is unreachable here, so every test and the demo
//! upload to devnet; it must therefore be at least as strict as Turbo, so that anything it
//! accepts, Turbo accepts too.
//!
//! Routes: `POST /tx`, `/tx/{token}`, `/v1/tx`, `/v1/tx/{token}` (uploads, with a signed receipt),
//! `GET /v1/tx/{id}/status` and `/tx/{id}/status`, `GET /raw/{id}` (the data section),
//! `GET /{id}` (302 to a sandbox host, as gateways do), `GET /v1/info` and `/`. Admin routes under
//! `/admin/` list items, advance the status lifecycle, force "in flight", and manage faults.
//!
//! Accepted items are kept on disk ([`store`]); the receipt key and TLS material live in the
//! data directory too, so a restart changes nothing a client can see. Listens on loopback unless
//! told otherwise.

pub mod faults;
mod routes;
pub mod store;
pub mod tls;

pub use routes::UnknownStatus;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faults::{FaultRule, FaultTable};
use store::{ItemStore, StoredItem};

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1984";
/// Default free-tier limit on the whole item size (Turbo's ~100 KiB).
pub const DEFAULT_FREE_LIMIT: usize = 102_400;
/// How long an id stays "in flight" (Turbo's `IN_FLIGHT_DATA_ITEM_TTL_SECS`).
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

/// devnet configuration.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where items, the receipt key and TLS material are kept.
    pub data_dir: PathBuf,
    /// Serve https with a generated CA-signed certificate.
    pub tls: bool,
    /// Write the CA certificate PEM here (with `tls`).
    pub cert_out: Option<PathBuf>,
    /// Items larger than this are refused with 402 "Insufficient balance".
    pub free_limit: usize,
    /// RSA-4096 JWK that signs receipts; generated into the data directory when absent.
    pub receipt_key: Option<PathBuf>,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
}

impl DevnetConfig {
    /// Defaults for `data_dir`: loopback, free port, http, no faults.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DevnetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            tls: false,
            cert_out: None,
            free_limit: DEFAULT_FREE_LIMIT,
            receipt_key: None,
            faults: Vec::new(),
        }
    }
}

/// Why devnet could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// Data directory, receipt key or TLS material problem.
    #[error("devnet setup: {0}")]
    Setup(String),
    /// An unknown status lifecycle value.
    #[error(transparent)]
    Status(#[from] UnknownStatus),
    /// The item store refused.
    #[error("devnet store: {0}")]
    Store(#[from] store::StoreError),
    /// Binding the listen address failed.
    #[error("devnet cannot listen on {addr}: {source}")]
    Bind {
        /// Address requested.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Shared state of a running devnet.
pub(crate) struct State {
    pub(crate) store: ItemStore,
    pub(crate) receipt_key: rsa::RsaPrivateKey,
    pub(crate) faults: Mutex<FaultTable>,
    pub(crate) in_flight: Mutex<HashMap<String, Instant>>,
    pub(crate) raw_reads: Mutex<HashMap<String, u32>>,
    pub(crate) free_limit: usize,
    pub(crate) started: Instant,
    pub(crate) base_url: String,
}

impl State {
    /// A fake but monotonic Arweave height (one block per two minutes).
    pub(crate) fn height(&self) -> u64 {
        1_500_000 + self.started.elapsed().as_secs() / 120
    }

    pub(crate) fn faults(&self) -> std::sync::MutexGuard<'_, FaultTable> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running devnet. Dropping it does not stop the server; call [`DevnetHandle::shutdown`].
pub struct DevnetHandle {
    addr: SocketAddr,
    url: String,
    ca_pem: Option<String>,
    state: Arc<State>,
    server: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl DevnetHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate PEM clients must trust (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Metadata of every stored item.
    pub fn items(&self) -> Vec<StoredItem> {
        self.state.store.list()
    }

    /// Directory of stored `<id>.bin` items.
    pub fn items_dir(&self) -> &Path {
        self.state.store.items_dir()
    }

    /// Moves an item to `new`, `pending`, `permanent` or `failed`.
    pub fn set_status(&self, id: &str, info: &str) -> Result<(), DevnetError> {
        routes::check_info(info)?;
        self.state.store.set_info(id, info)?;
        Ok(())
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.state.faults().add(rule);
    }

    /// The fault rules still in force (counted rules disappear once used up).
    pub fn fault_rules(&self) -> Vec<FaultRule> {
        self.state.faults().rules().to_vec()
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state.faults().clear();
    }

    /// Marks `id` as in flight (uploads of it answer 202) for `ttl`.
    pub fn force_in_flight(&self, id: &str, ttl: Duration) {
        self.state
            .in_flight()
            .insert(id.to_string(), Instant::now() + ttl);
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits.
    pub async fn shutdown(self) {
        self.server.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.task.await;
    }

    /// Waits until the server stops (e.g. after a signal handled by the caller).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }

    /// The axum-server handle, to trigger shutdown from elsewhere.
    pub fn server_handle(&self) -> axum_server::Handle {
        self.server.clone()
    }
}

/// Starts devnet on the current tokio runtime.
pub async fn start(config: DevnetConfig) -> Result<DevnetHandle, DevnetError> {
    let setup = |e: String| DevnetError::Setup(e);
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| setup(format!("create {}: {e}", config.data_dir.display())))?;
    let data_dir = config.data_dir.clone();
    let receipt_path = config.receipt_key.clone();
    let (store, receipt_key) = tokio::task::spawn_blocking(move || -> Result<_, DevnetError> {
        let store = ItemStore::open(&data_dir)?;
        let key = load_or_create_receipt_key(receipt_path.as_deref(), &data_dir)?;
        Ok((store, key))
    })
    .await
    .map_err(|e| setup(e.to_string()))??;

    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| DevnetError::Bind {
            addr: config.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| DevnetError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| DevnetError::Bind {
        addr: config.listen,
        source,
    })?;
    let scheme = if config.tls { "https" } else { "http" };
    let url = format!("{scheme}://{addr}");

    let state = Arc::new(State {
        store,
        receipt_key,
        faults: Mutex::new(FaultTable::new(config.faults.clone())),
        in_flight: Mutex::new(HashMap::new()),
        raw_reads: Mutex::new(HashMap::new()),
        free_limit: config.free_limit,
        started: Instant::now(),
        base_url: url.clone(),
    });
    let app = routes::router(state.clone());
    let server = axum_server::Handle::new();
    let (task, ca_pem) = if config.tls {
        let material = tls::load_or_create(&config.data_dir.join("tls"))?;
        if let Some(out) = &config.cert_out {
            std::fs::write(out, &material.ca_pem)
                .map_err(|e| setup(format!("write CA to {}: {e}", out.display())))?;
        }
        let rustls_config =
            axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config(&material)?);
        let srv = axum_server::from_tcp_rustls(listener, rustls_config).handle(server.clone());
        (
            tokio::spawn(async move { srv.serve(app.into_make_service()).await }),
            Some(material.ca_pem),
        )
    } else {
        let srv = axum_server::from_tcp(listener).handle(server.clone());
        (
            tokio::spawn(async move { srv.serve(app.into_make_service()).await }),
            None,
        )
    };
    tracing::info!(%url, data_dir = %config.data_dir.display(), items = state.store.list().len(), "devnet listening");
    Ok(DevnetHandle {
        addr,
        url,
        ca_pem,
        state,
        server,
        task,
    })
}

fn load_or_create_receipt_key(
    explicit: Option<&Path>,
    data_dir: &Path,
) -> Result<rsa::RsaPrivateKey, DevnetError> {
    let setup = DevnetError::Setup;
    use crate::arweave::signer::ItemSigner;
    use crate::arweave::wallet::{jwk_for, load_file};
    let path = explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.join("receipt-jwk.json"));
    if explicit.is_some() || path.exists() {
        return match load_file(&path).map_err(|e| setup(e.to_string()))? {
            (ItemSigner::Arweave(key), _) => Ok(key),
            _ => Err(setup(format!(
                "receipt key {} must be an Arweave RSA-4096 JWK",
                path.display()
            ))),
        };
    }
    tracing::info!(path = %path.display(), "devnet: generating an RSA-4096 receipt key (once)");
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 4096)
        .map_err(|e| setup(e.to_string()))?;
    let body = serde_json::to_vec(&jwk_for(&key)).map_err(|e| setup(e.to_string()))?;
    std::fs::write(&path, body).map_err(|e| setup(format!("write {}: {e}", path.display())))?;
    Ok(key)
}
