//! The Turbo client and gateway reader against devnet over http and https: round trips, every
//! fault kind (the client ends uploaded after transient faults, stops with the cause after
//! permanent ones, and never changes the id), 202 duplicates, gateway fallback, devnet's
//! strictness, restarts — and every item devnet accepted checked by the arbundles oracle.

mod common;

use std::time::{Duration, Instant};

use ario_mlflow_worker::arweave::gateway::{Gateway, GatewayError, GatewayReader};
use ario_mlflow_worker::arweave::turbo::check_receipt;
use ario_mlflow_worker::arweave::wallet::load_file;
use ario_mlflow_worker::arweave::{DataItem, ItemSigner, Tag, TurboError, UploadOutcome};
use ario_mlflow_worker::devnet::faults::FaultRule;
use common::devnet::*;
use common::oracle;
use sha2::{Digest, Sha256};

fn ed25519(seed: u8) -> ItemSigner {
    ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
}

fn proof_item(seed: u8, body: &str) -> DataItem {
    let tags = vec![
        Tag::new("Content-Type", "application/json"),
        Tag::new("App-Name", "ar-io-mlflow"),
        Tag::new("Event-Type", "test"),
    ];
    DataItem::sign(&ed25519(seed), tags, body.as_bytes().to_vec(), None, None).unwrap()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn receipt_of(outcome: &UploadOutcome) -> &ario_mlflow_worker::arweave::Receipt {
    outcome
        .receipt()
        .unwrap_or_else(|| panic!("expected a receipt, got {outcome:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_round_trip_over_http_and_https() {
    for tls in [false, true] {
        let dn = start_devnet(tls, &[]).await;
        let client = turbo(&dn.handle, fast_retry(3), Duration::from_secs(5));
        let item = proof_item(1, &format!(r#"{{"proof":"round trip","tls":{tls}}}"#));
        let outcome = client.upload(&item.to_bytes()).await.unwrap();
        let receipt = receipt_of(&outcome);
        assert_eq!(receipt.id, item.id());
        assert_eq!(receipt.owner, item.owner_address());
        receipt.verify_signature().unwrap();

        let status = client.status(&item.id()).await.unwrap();
        assert_eq!(
            (status.status.as_str(), status.info.as_str()),
            ("CONFIRMED", "new")
        );
        dn.handle.set_status(&item.id(), "permanent").unwrap();
        let status = client.status(&item.id()).await.unwrap();
        assert_eq!(status.status, "FINALIZED");
        assert!(status.bundle_id.is_some());

        let reader = GatewayReader::new(
            vec![Gateway::parse(dn.handle.url()).unwrap()],
            &http_for(&dn.handle, Duration::from_secs(5)),
        )
        .unwrap();
        let fetched = reader
            .fetch_raw(&item.id(), Some(&sha(&item.data)))
            .await
            .unwrap();
        assert_eq!(fetched.bytes, item.data);
        assert_eq!(fetched.content_type.as_deref(), Some("application/json"));
        assert!(fetched.failures.is_empty());
        assert!(matches!(
            client
                .status("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .await,
            Err(TurboError::UnknownId(_))
        ));
        assert_eq!(
            oracle::check_items(dn.handle.items_dir()),
            usize::from(oracle::script().is_some())
        );
        dn.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transient_fault_kind_ends_uploaded_with_the_same_id() {
    let dn = start_devnet(true, &[]).await;
    // 1 s client timeout so `delay=1500` is a timeout.
    let client = turbo(&dn.handle, fast_retry(10), Duration::from_secs(1));
    let faults = [
        "upload:503x2",
        "upload:500x1",
        "upload:502x1",
        "upload:504x1",
        "upload:408x1",
        "upload:429x2",
        "upload:resetx2",
        "upload:delay=1500x1",
    ];
    for (n, fault) in faults.iter().enumerate() {
        dn.handle.clear_faults();
        dn.handle.add_fault(FaultRule::parse(fault).unwrap());
        let item = proof_item(2, &format!(r#"{{"fault":"{fault}","n":{n}}}"#));
        let outcome = client
            .upload(&item.to_bytes())
            .await
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        if let UploadOutcome::Accepted(receipt) = &outcome {
            assert_eq!(receipt.id, item.id(), "{fault}");
        }
        assert!(
            dn.handle.fault_rules().is_empty(),
            "{fault}: the client met every injected fault"
        );
        let stored: Vec<_> = dn
            .handle
            .items()
            .into_iter()
            .filter(|i| i.id == item.id())
            .collect();
        assert_eq!(
            stored.len(),
            1,
            "{fault}: devnet holds the item under the locally computed id"
        );
    }
    assert_eq!(
        dn.handle.items().len(),
        faults.len(),
        "one stored item per upload: retries never changed the id"
    );
    assert_eq!(
        oracle::check_items(dn.handle.items_dir()),
        if oracle::script().is_some() {
            faults.len()
        } else {
            0
        }
    );
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let dn = start_devnet(false, &["upload:429/2x1"]).await;
    let client = turbo(&dn.handle, fast_retry(4), Duration::from_secs(5));
    let item = proof_item(3, r#"{"retry_after":2}"#);
    let started = Instant::now();
    client.upload(&item.to_bytes()).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "waited only {waited:?} despite Retry-After: 2"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    oracle::check_items(dn.handle.items_dir());
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rejections_stop_at_once_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ario_mlflow_worker::devnet::DevnetConfig::new(dir.path().join("data"));
    config.receipt_key = Some(receipt_key());
    config.free_limit = 2_000;
    let handle = ario_mlflow_worker::devnet::start(config).await.unwrap();
    let client = turbo(&handle, fast_retry(5), Duration::from_secs(5));

    let big = DataItem::sign(
        &ed25519(4),
        vec![Tag::new("Content-Type", "text/plain")],
        vec![b'x'; 3_000],
        None,
        None,
    )
    .unwrap();
    match client.upload(&big.to_bytes()).await {
        Err(e @ TurboError::Rejected { status: 402, .. }) => {
            assert!(e.is_permanent());
            let msg = e.to_string();
            assert!(
                msg.contains("Insufficient balance")
                    && msg.contains(&big.id())
                    && msg.contains("unfunded"),
                "{msg}"
            );
        }
        other => panic!("expected 402, got {other:?}"),
    }
    for (fault, status) in [
        ("upload:400x5", 400),
        ("upload:403x5", 403),
        ("upload:413x5", 413),
    ] {
        handle.clear_faults();
        handle.add_fault(FaultRule::parse(fault).unwrap());
        let item = proof_item(5, &format!(r#"{{"status":{status}}}"#));
        match client.upload(&item.to_bytes()).await {
            Err(e @ TurboError::Rejected { .. }) => {
                assert!(e.is_permanent());
                assert!(matches!(e, TurboError::Rejected { status: s, .. } if s == status));
            }
            other => panic!("{fault}: expected a rejection, got {other:?}"),
        }
        let url = format!("{}/admin/faults", handle.url());
        let rules: Vec<FaultRule> = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert_eq!(
            rules[0].count,
            Some(4),
            "{fault}: exactly one attempt, no retry"
        );
    }
    assert!(handle.items().is_empty());

    // Bytes that are not a data item never leave the machine.
    assert!(matches!(
        client.upload(b"not a data item").await,
        Err(TurboError::NotADataItem(_))
    ));
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_transient_with_the_last_cause() {
    let dn = start_devnet(false, &["upload:503"]).await;
    let client = turbo(&dn.handle, fast_retry(3), Duration::from_secs(5));
    let item = proof_item(6, r#"{"exhaust":true}"#);
    match client.upload(&item.to_bytes()).await {
        Err(e @ TurboError::Exhausted { attempts: 3, .. }) => {
            assert!(!e.is_permanent());
            assert!(e.to_string().contains("HTTP 503"), "{e}");
        }
        other => panic!("expected exhaustion after 3 attempts, got {other:?}"),
    }
    assert!(dn.handle.items().is_empty());
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_in_flight_answers_202_and_is_confirmed_through_status() {
    let dn = start_devnet(true, &[]).await;
    let client = turbo(&dn.handle, fast_retry(3), Duration::from_secs(5));
    let item = proof_item(7, r#"{"duplicate":true}"#);
    client.upload(&item.to_bytes()).await.unwrap();
    dn.handle
        .force_in_flight(&item.id(), Duration::from_secs(30));
    match client.upload(&item.to_bytes()).await.unwrap() {
        UploadOutcome::AlreadyInFlight(status) => assert_eq!(status.status, "CONFIRMED"),
        other => panic!("expected 202 handling, got {other:?}"),
    }
    // A re-upload after the in-flight window gets a fresh receipt, as Turbo does.
    let mut dn_handle_items = dn.handle.items();
    assert_eq!(dn_handle_items.len(), 1);
    assert_eq!(dn_handle_items.remove(0).uploads, 1);
    oracle::check_items(dn.handle.items_dir());
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_other_items_or_altered_fields_are_refused() {
    let dn = start_devnet(false, &[]).await;
    let client = turbo(&dn.handle, fast_retry(2), Duration::from_secs(5));
    let item = proof_item(8, r#"{"receipt":"check"}"#);
    let outcome = client.upload(&item.to_bytes()).await.unwrap();
    let receipt = receipt_of(&outcome).clone();
    check_receipt(&receipt, &item.id(), &item.owner_address()).unwrap();
    assert!(check_receipt(&receipt, &proof_item(9, "{}").id(), &item.owner_address()).is_err());
    assert!(check_receipt(&receipt, &item.id(), "someone-else").is_err());
    let mut altered = receipt.clone();
    altered.timestamp += 1;
    assert!(check_receipt(&altered, &item.id(), &item.owner_address())
        .unwrap_err()
        .to_string()
        .contains("signature"));
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_reads_fall_back_over_two_devnets_one_failing() {
    let failing = start_devnet(false, &["raw:503"]).await;
    let empty = start_devnet(true, &[]).await;
    let honest = start_devnet(true, &["raw:notfound-first=1"]).await;
    let item = proof_item(10, r#"{"gateway":"fallback"}"#);
    turbo(&honest.handle, fast_retry(2), Duration::from_secs(5))
        .upload(&item.to_bytes())
        .await
        .unwrap();

    // One client trusting both TLS devnets' CAs.
    let mut settings = http_for(&honest.handle, Duration::from_secs(5));
    let mut pems = honest.handle.ca_pem().unwrap().as_bytes().to_vec();
    pems.extend_from_slice(empty.handle.ca_pem().unwrap().as_bytes());
    settings.extra_ca_pem = Some(pems);
    let gateways = [&failing, &empty, &honest]
        .iter()
        .map(|d| Gateway::parse(d.handle.url()).unwrap())
        .collect();
    let reader = GatewayReader::new(gateways, &settings).unwrap();

    // First read: 503, 404 (not there), 404 (propagation) → every gateway named in the error.
    match reader.fetch_raw(&item.id(), None).await {
        Err(GatewayError::AllFailed { failures, .. }) => {
            let causes: Vec<&str> = failures.iter().map(|f| f.cause.as_str()).collect();
            assert_eq!(causes, ["HTTP 503", "HTTP 404", "HTTP 404"]);
        }
        other => panic!("expected all gateways to fail once, got {other:?}"),
    }
    let fetched = reader
        .fetch_raw(&item.id(), Some(&sha(&item.data)))
        .await
        .unwrap();
    assert_eq!(fetched.bytes, item.data);
    assert_eq!(fetched.gateway, honest.handle.url());
    assert_eq!(fetched.failures.len(), 2);
    assert_eq!(fetched.failures[0].gateway, failing.handle.url());

    // A gateway serving other bytes than expected is skipped and reported.
    match reader
        .fetch_raw(&item.id(), Some(&sha(b"something else")))
        .await
    {
        Err(GatewayError::AllFailed { failures, .. }) => {
            assert!(failures[2].cause.contains("altered bytes"), "{failures:?}")
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(matches!(
        reader.fetch_raw("../../etc/passwd", None).await,
        Err(GatewayError::BadId(_))
    ));

    // A gateway that resets connections also falls through.
    failing.handle.clear_faults();
    failing
        .handle
        .add_fault(FaultRule::parse("raw:reset").unwrap());
    let fetched = reader.fetch_raw(&item.id(), None).await.unwrap();
    assert_eq!(fetched.gateway, honest.handle.url());
    oracle::check_items(honest.handle.items_dir());
    for d in [failing, empty, honest] {
        d.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_refuses_what_turbo_would_refuse() {
    let dn = start_devnet(false, &[]).await;
    let http = reqwest::Client::new();
    let url = dn.handle.url().to_string();
    let post = |path: &str, body: Vec<u8>, ct: Option<&'static str>| {
        let mut req = http.post(format!("{url}{path}")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    let octet = Some("application/octet-stream");
    let good = proof_item(11, r#"{"strict":true}"#).to_bytes();
    let tampered =
        std::fs::read(common::shared_dir().join("vectors/ans104/ed25519_tampered_INVALID.bin"))
            .unwrap();

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "wrong content type",
            post("/v1/tx/solana", good.clone(), Some("application/json")),
            400,
            "Invalid Content Type",
        ),
        (
            "content type with parameters",
            post(
                "/v1/tx/solana",
                good.clone(),
                Some("application/octet-stream; charset=x"),
            ),
            400,
            "Invalid Content Type",
        ),
        (
            "tampered item",
            post("/v1/tx/solana", tampered, octet),
            400,
            "Invalid Data Item!",
        ),
        (
            "data cut short",
            post("/v1/tx/solana", good[..good.len() - 5].to_vec(), octet),
            400,
            "Invalid Data Item!",
        ),
        (
            "tags cut short",
            post("/v1/tx/solana", good[..good.len() - 40].to_vec(), octet),
            400,
            "Data item parsing error!",
        ),
        (
            "too short",
            post("/v1/tx/solana", good[..60].to_vec(), octet),
            400,
            "Data item parsing error!",
        ),
        (
            "token mismatch",
            post("/v1/tx/arweave", good.clone(), octet),
            400,
            "does not match signature type",
        ),
        (
            "unknown token",
            post("/v1/tx/dogecoin", good.clone(), octet),
            400,
            "Unknown token",
        ),
    ];
    for (what, request, status, body) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = response.text().await.unwrap();
        assert!(text.contains(body), "{what}: {text}");
    }
    // Missing Content-Length (chunked body) is refused: devnet is stricter than Turbo here.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(
        good.clone(),
    ))]);
    let chunked = http
        .post(format!("{url}/v1/tx/solana"))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream));
    assert_eq!(chunked.send().await.unwrap().status().as_u16(), 400);

    // Turbo's spam shape: exactly 100,372 bytes and no tags.
    let filler = 100_372 - (2 + 64 + 32 + 1 + 1 + 16);
    let spam = DataItem::sign(&ed25519(12), vec![], vec![b's'; filler], None, None)
        .unwrap()
        .to_bytes();
    assert_eq!(spam.len(), 100_372);
    assert_eq!(
        post("/tx/solana", spam, octet)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );

    // The same good item through every upload route; an RSA item to the arweave token.
    for path in ["/tx", "/v1/tx", "/tx/solana", "/v1/tx/ed25519"] {
        assert_eq!(
            post(path, good.clone(), octet)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200,
            "{path}"
        );
    }
    let (rsa, _) = load_file(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/arweave-wallet-jwk.json"),
    )
    .unwrap();
    let rsa_item = DataItem::sign(
        &rsa,
        vec![Tag::new("Content-Type", "application/json")],
        b"{\"rsa\":1}".to_vec(),
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        post("/v1/tx/arweave", rsa_item.to_bytes(), octet)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // GET /{id} redirects to a sandbox host, as gateways do; /raw/{id} serves the bytes.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let id = DataItem::parse(&good).unwrap().id();
    let r = no_redirect.get(format!("{url}/{id}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains(".sandbox."));
    let info: serde_json::Value = http
        .get(format!("{url}/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["freeUploadLimitBytes"], serde_json::json!(102_400));
    let items = dn.handle.items();
    assert_eq!(
        items.len(),
        2,
        "only the good Ed25519 and RSA items were stored"
    );
    assert_eq!(items.iter().find(|i| i.id == id).unwrap().uploads, 4);
    oracle::check_items(dn.handle.items_dir());
    dn.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_restart_loses_nothing() {
    let dn = start_devnet(true, &[]).await;
    let addr = dn.handle.addr();
    let item = proof_item(13, r#"{"restart":true}"#);
    turbo(&dn.handle, fast_retry(2), Duration::from_secs(5))
        .upload(&item.to_bytes())
        .await
        .unwrap();
    dn.handle.set_status(&item.id(), "pending").unwrap();
    let ca_before = dn.handle.ca_pem().unwrap().to_string();
    let common::devnet::TestDevnet { handle, dir } = dn;
    handle.shutdown().await;

    let again = start_in(dir, true, &[], Some(addr)).await;
    assert_eq!(
        again.handle.ca_pem(),
        Some(ca_before.as_str()),
        "same CA after restart"
    );
    let client = turbo(&again.handle, fast_retry(2), Duration::from_secs(5));
    assert_eq!(client.status(&item.id()).await.unwrap().info, "pending");
    let reader = GatewayReader::new(
        vec![Gateway::parse(again.handle.url()).unwrap()],
        &http_for(&again.handle, Duration::from_secs(5)),
    )
    .unwrap();
    assert_eq!(
        reader
            .fetch_raw(&item.id(), Some(&sha(&item.data)))
            .await
            .unwrap()
            .bytes,
        item.data
    );
    again.handle.shutdown().await;
}

/// Every kind of item the project can emit or receive, through devnet, then the oracle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracle_accepts_every_item_devnet_accepted() {
    let dn = start_devnet(true, &[]).await;
    let client = turbo(&dn.handle, fast_retry(3), Duration::from_secs(10));
    let (rsa, _) = load_file(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/arweave-wallet-jwk.json"),
    )
    .unwrap();
    let unicode = vec![
        Tag::new("Content-Type", "application/json"),
        Tag::new("Ünïcødé-клю", "値🚀".repeat(60)),
    ];
    let max_tags: Vec<Tag> = (0..128)
        .map(|i| Tag::new(format!("T{i}"), format!("v{i}")))
        .collect();
    let mut items = vec![
        DataItem::sign(
            &ed25519(20),
            unicode.clone(),
            br#"{"u":"\u00fc"}"#.to_vec(),
            None,
            None,
        )
        .unwrap(),
        DataItem::sign(&ed25519(21), max_tags, b"{}".to_vec(), None, None).unwrap(),
        DataItem::sign(&ed25519(22), vec![], b"x".to_vec(), None, None).unwrap(),
        DataItem::sign(
            &ed25519(23),
            vec![Tag::new("Content-Type", "application/json")],
            vec![],
            None,
            Some([7; 32]),
        )
        .unwrap(),
        DataItem::sign(
            &ed25519(24),
            vec![Tag::new("A", "b")],
            vec![b'z'; 100_000],
            Some([1; 32]),
            None,
        )
        .unwrap(),
        DataItem::sign(&rsa, unicode, br#"{"rsa":true}"#.to_vec(), None, None).unwrap(),
    ];
    let mut bytes: Vec<Vec<u8>> = items.drain(..).map(|i| i.to_bytes()).collect();
    for vector in [
        "ed25519_basic.bin",
        "ed25519_hard_tags_anchor.bin",
        "python_sdk_ed25519_notags.bin",
        "rsa_basic.bin",
        "rsa_salt32.bin",
    ] {
        bytes
            .push(std::fs::read(common::shared_dir().join("vectors/ans104").join(vector)).unwrap());
    }
    for b in &bytes {
        client.upload(b).await.unwrap();
    }
    assert_eq!(dn.handle.items().len(), bytes.len());
    let checked = oracle::check_items(dn.handle.items_dir());
    if oracle::script().is_some() {
        assert_eq!(checked, bytes.len());
    }
    dn.handle.shutdown().await;
}
