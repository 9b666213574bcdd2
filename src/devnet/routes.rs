//! devnet's HTTP routes: Turbo's upload/status/info API, the gateway's `/raw/{id}`, and admin.
//! Every check of spec/arweave-turbo.md §6.2 happens in [`upload`], in Turbo's order, with
//! Turbo's status codes and bodies (plus a detail in parentheses to help debugging).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::faults::{FaultKind, FaultPlan, FaultRoute, FaultRule};
use super::store::now_ms;
use super::{State, IN_FLIGHT_TTL};
use crate::arweave::data_item::{DataItem, DataItemError};
use crate::arweave::gateway::is_arweave_id;
use crate::arweave::receipt::Receipt;
use crate::arweave::signer::{owner_address, SignatureType};

type Shared = AxumState<Arc<State>>;

/// Turbo's spam shape: exactly this many bytes with no tags is refused with 403.
const SPAM_SIZE: usize = 100_372;

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(info))
        .route("/v1/info", get(info))
        .route("/tx", post(upload_any))
        .route("/v1/tx", post(upload_any))
        .route("/tx/{token}", post(upload_token))
        .route("/v1/tx/{token}", post(upload_token))
        .route("/tx/{id}/status", get(status))
        .route("/v1/tx/{id}/status", get(status))
        .route("/raw/{id}", get(raw))
        .route("/dataitem/{id}", get(data_item))
        .route("/health", get(health))
        .route("/api/v1/verify", post(ario_verify))
        .route("/{id}", get(sandbox_redirect))
        .route("/admin/items", get(admin_items))
        .route("/admin/items/{id}", get(data_item))
        .route("/admin/items/{id}/status", post(admin_set_status))
        .route(
            "/admin/faults",
            get(admin_faults)
                .post(admin_add_fault)
                .delete(admin_clear_faults),
        )
        .route("/admin/in-flight/{id}", post(admin_in_flight))
        .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// Applies a fault plan's delay, then returns the terminal fault's response if any.
async fn apply_faults(plan: &FaultPlan) -> Option<Response> {
    if plan.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
    }
    match &plan.terminal {
        Some(FaultKind::Status { code, retry_after }) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = text(status, format!("devnet injected fault: HTTP {code}"));
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Some(response)
        }
        Some(FaultKind::Reset) => Some(reset_response()),
        _ => None,
    }
}

/// A response whose body fails after the headers: the client sees the connection drop.
fn reset_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "devnet injected reset",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(1024u32));
    response
}

async fn upload_any(state: Shared, headers: HeaderMap, body: Bytes) -> Response {
    upload(state, None, headers, body).await
}

async fn upload_token(
    state: Shared,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    upload(state, Some(token), headers, body).await
}

async fn upload(
    AxumState(state): Shared,
    token: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        if ct.as_bytes() != b"application/octet-stream" {
            return text(StatusCode::BAD_REQUEST, "Invalid Content Type");
        }
    }
    match headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                "Content-Length required (devnet is stricter than Turbo)",
            )
        }
        Some(n) if n != body.len() => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "Content-Length {n} does not match the body ({} bytes)",
                    body.len()
                ),
            )
        }
        Some(_) => {}
    }
    let item = match DataItem::parse(&body).and_then(|item| {
        item.verify()?;
        item.check_tag_limits()?;
        Ok(item)
    }) {
        Ok(item) => item,
        Err(e) => {
            let message = match e {
                DataItemError::TagCountMismatch { .. }
                | DataItemError::InvalidSignature
                | DataItemError::BadOwner(_)
                | DataItemError::TagLimit(_) => "Invalid Data Item!",
                _ => "Data item parsing error!",
            };
            return text(StatusCode::BAD_REQUEST, format!("{message} ({e})"));
        }
    };
    if let Some(token) = token.as_deref() {
        let matches = match token {
            "arweave" => item.signature_type == SignatureType::Arweave,
            "solana" | "ed25519" => item.signature_type == SignatureType::Ed25519,
            "ethereum" => false,
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("Unknown token {other:?} (devnet accepts arweave, solana, ed25519)"),
                )
            }
        };
        if !matches {
            return text(
                StatusCode::BAD_REQUEST,
                format!("token {token:?} does not match signature type {} (devnet is stricter than Turbo)", item.signature_type.code()),
            );
        }
    }
    if body.len() == SPAM_SIZE && item.tags.is_empty() {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    if body.len() > state.free_limit {
        return text(StatusCode::PAYMENT_REQUIRED, "Insufficient balance");
    }

    let id = item.id();
    {
        let mut in_flight = state.in_flight();
        let now = Instant::now();
        in_flight.retain(|_, until| *until > now);
        if in_flight.contains_key(&id) {
            return (
                StatusCode::ACCEPTED,
                format!("Data item with ID {id} has already been uploaded to this service!"),
            )
                .into_response();
        }
        in_flight.insert(id.clone(), now + IN_FLIGHT_TTL);
    }
    // Cleared however the request ends, including when the client hangs up and hyper drops
    // this future mid-way (otherwise every retry would see "in flight" until the TTL).
    let _in_flight = InFlightGuard {
        state: state.clone(),
        id,
    };
    let plan = state.faults().plan(FaultRoute::Upload);
    match apply_faults(&plan).await {
        Some(fault) => fault,
        None => store_and_receipt(&state, item, body).await,
    }
}

/// Removes an id from the in-flight set when the upload that added it ends.
struct InFlightGuard {
    state: Arc<State>,
    id: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.state.in_flight().remove(&self.id);
    }
}

async fn store_and_receipt(state: &Arc<State>, item: DataItem, body: Bytes) -> Response {
    let id = item.id();
    let owner = owner_address(&item.owner);
    let st = state.clone();
    let stored = tokio::task::spawn_blocking(move || st.store.put(&item, &body)).await;
    match stored {
        Ok(Ok(meta)) => tracing::debug!(%id, uploads = meta.uploads, "devnet stored item"),
        Ok(Err(e)) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("object store unavailable: {e}"),
            )
        }
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("object store unavailable: {e}"),
            )
        }
    }
    let host = state
        .base_url
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let key = state.receipt_key.clone();
    let height = state.height() + 200;
    let receipt = tokio::task::spawn_blocking(move || {
        Receipt::issue(&key, &id, &owner, now_ms(), height, vec![host])
    })
    .await;
    match receipt {
        Ok(Ok(receipt)) => (StatusCode::OK, Json(receipt)).into_response(),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot sign receipt: {e}"),
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot sign receipt: {e}"),
        ),
    }
}

async fn status(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    let plan = state.faults().plan(FaultRoute::Status);
    if let Some(fault) = apply_faults(&plan).await {
        return fault;
    }
    let Some(meta) = state.store.get(&id) else {
        return text(StatusCode::NOT_FOUND, "TX doesn't exist");
    };
    let mut body = json!({
        "status": meta.status(),
        "info": meta.info,
        "winc": "0",
        "rawContentLength": meta.size,
        "payloadContentType": meta.content_type().unwrap_or("application/octet-stream"),
        "payloadDataStart": meta.data_offset,
        "payloadContentLength": meta.data_len,
    });
    if matches!(meta.info.as_str(), "pending" | "permanent") {
        body["bundleId"] = json!(owner_address(format!("bundle-{id}").as_bytes()));
    }
    Json(body).into_response()
}

async fn raw(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    let not_found = || {
        let mut r = text(StatusCode::NOT_FOUND, "Not found");
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60, immutable"),
        );
        r
    };
    if !is_arweave_id(&id) {
        return not_found();
    }
    let plan = state.faults().plan(FaultRoute::Raw);
    if let Some(fault) = apply_faults(&plan).await {
        return fault;
    }
    if state.store.get(&id).is_none() {
        return not_found();
    }
    if let Some(n) = plan.not_found_first {
        let mut reads = state.raw_reads.lock().unwrap_or_else(|p| p.into_inner());
        let count = reads.entry(id.clone()).or_insert(0);
        *count += 1;
        if *count <= n {
            return not_found();
        }
    }
    let st = state.clone();
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || st.store.data(&lookup)).await {
        Ok(Ok((meta, data))) => {
            let ct = meta
                .content_type()
                .unwrap_or("application/octet-stream")
                .to_string();
            let data = if plan.alter { alter(data) } else { data };
            (StatusCode::OK, [(header::CONTENT_TYPE, ct)], data).into_response()
        }
        _ => not_found(),
    }
}

/// The bytes a dishonest gateway would serve: one hex digit in the second half changed.
fn alter(mut data: Vec<u8>) -> Vec<u8> {
    let half = data.len() / 2;
    if let Some(b) = data[half..].iter_mut().find(|b| b.is_ascii_hexdigit()) {
        *b = if *b == b'0' { b'1' } else { b'0' };
    } else if let Some(b) = data.last_mut() {
        *b ^= 1;
    }
    data
}

/// `GET /dataitem/{id}`: the signed ANS-104 item as uploaded, so a verifier can check that the
/// payload served at `/raw/{id}` is the data of the item whose id is `id` (a devnet convention;
/// ar.io gateways document no such endpoint for bundled items).
async fn data_item(AxumState(state): Shared, Path(id): Path<String>) -> Response {
    if !is_arweave_id(&id) {
        return text(StatusCode::NOT_FOUND, "Not found");
    }
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.store.item_bytes(&id)).await {
        Ok(Ok(bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        _ => text(StatusCode::NOT_FOUND, "Not found"),
    }
}

async fn health() -> Response {
    text(StatusCode::OK, "ok")
}

#[derive(Deserialize)]
struct VerifyRequest {
    #[serde(rename = "txId")]
    tx_id: String,
}

/// `POST /api/v1/verify`: an ar.io Verify-shaped answer (spec §5.6). An item devnet holds was
/// checked in full at upload (signature, id, tags), so it is attested at level 2; an unknown id
/// gets level 0 and status `not_found`.
async fn ario_verify(AxumState(state): Shared, Json(req): Json<VerifyRequest>) -> Response {
    let held = is_arweave_id(&req.tx_id) && state.store.get(&req.tx_id).is_some();
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    Json(serde_json::json!({
        "verificationId": format!("devnet-{}", req.tx_id),
        "existence": {"status": if held { "found" } else { "not_found" }},
        "level": if held { 2 } else { 0 },
        "links": {"dashboard": format!("/report/{}", req.tx_id), "pdf": null},
        "attestation": {"gateway": "devnet", "attestedAt": now},
    }))
    .into_response()
}

async fn sandbox_redirect(Path(id): Path<String>) -> Response {
    if !is_arweave_id(&id) {
        return text(StatusCode::NOT_FOUND, "Not found");
    }
    let raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &id)
        .unwrap_or_default();
    let location = format!("https://{}.sandbox.devnet.invalid/{id}", base32_lower(&raw));
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn info(AxumState(state): Shared) -> Response {
    let plan = state.faults().plan(FaultRoute::Info);
    if let Some(fault) = apply_faults(&plan).await {
        return fault;
    }
    use rsa::traits::PublicKeyParts;
    let receipt_address = owner_address(&state.receipt_key.n().to_bytes_be());
    Json(json!({
        "version": "0.2.0",
        "addresses": { "arweave": receipt_address },
        "gateway": state.base_url,
        "freeUploadLimitBytes": state.free_limit,
        "devnet": true,
    }))
    .into_response()
}

async fn admin_items(AxumState(state): Shared) -> Response {
    Json(state.store.list()).into_response()
}

#[derive(Deserialize)]
struct StatusChange {
    info: String,
}

/// A status lifecycle value devnet does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status info {0:?} (new, pending, permanent, failed)")]
pub struct UnknownStatus(pub String);

/// The status lifecycle values devnet accepts.
pub(crate) fn check_info(info: &str) -> Result<(), UnknownStatus> {
    match info {
        "new" | "pending" | "permanent" | "failed" => Ok(()),
        other => Err(UnknownStatus(other.to_string())),
    }
}

async fn admin_set_status(
    AxumState(state): Shared,
    Path(id): Path<String>,
    Json(change): Json<StatusChange>,
) -> Response {
    if let Err(e) = check_info(&change.info) {
        return text(StatusCode::BAD_REQUEST, e.to_string());
    }
    match state.store.set_info(&id, &change.info) {
        Ok(meta) => Json(meta).into_response(),
        Err(e) => text(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn admin_faults(AxumState(state): Shared) -> Response {
    Json(state.faults().rules().to_vec()).into_response()
}

/// Body of `POST /admin/faults`: a rule object, or `{"spec": "upload:503x2"}` in flag grammar.
#[derive(Deserialize)]
#[serde(untagged)]
enum NewFault {
    Spec { spec: String },
    Rule(FaultRule),
}

async fn admin_add_fault(AxumState(state): Shared, Json(fault): Json<NewFault>) -> Response {
    let rule = match fault {
        NewFault::Rule(rule) => rule,
        NewFault::Spec { spec } => match FaultRule::parse(&spec) {
            Ok(rule) => rule,
            Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        },
    };
    state.faults().add(rule.clone());
    Json(rule).into_response()
}

async fn admin_clear_faults(AxumState(state): Shared) -> Response {
    state.faults().clear();
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct InFlightQuery {
    ttl_ms: Option<u64>,
}

async fn admin_in_flight(
    AxumState(state): Shared,
    Path(id): Path<String>,
    Query(q): Query<InFlightQuery>,
) -> Response {
    let ttl = q.ttl_ms.map(Duration::from_millis).unwrap_or(IN_FLIGHT_TTL);
    state.in_flight().insert(id, Instant::now() + ttl);
    StatusCode::NO_CONTENT.into_response()
}

/// RFC 4648 base32, lowercase, unpadded: the sandbox subdomain form gateways use.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}
