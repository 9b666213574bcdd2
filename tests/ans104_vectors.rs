//! ANS-104 data items against the golden vectors in `shared/vectors/ans104` (made by arbundles,
//! the Python SDK and a Rust prototype): parse, re-serialize identically, verify (RSA salts 478
//! and 32 included), re-create every Ed25519 item byte for byte, reject the tampered item, and
//! reject every truncation and flipped byte without a panic.

mod common;

use ario_mlflow_worker::arweave::data_item::DataItem;
use ario_mlflow_worker::arweave::deep_hash::{deep_hash, Chunk};
use ario_mlflow_worker::arweave::signer::{ItemSigner, SignatureType};
use ario_mlflow_worker::arweave::wallet::{load_file, WalletType};
use ario_mlflow_worker::arweave::Tag;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::shared_dir;
use serde_json::Value;

fn vector(name: &str) -> Vec<u8> {
    let path = shared_dir().join("vectors/ans104").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// (file, expected id, valid) from the vectors' README.
const VECTORS: [(&str, &str, bool); 9] = [
    (
        "ed25519_basic.bin",
        "-Q_fs6C_lg6YaUGQ4ZWMkCzO10ST0XJPMy0jV_LroAs",
        true,
    ),
    (
        "ed25519_anchor_target.bin",
        "5t_7Arqsu9gpuHR-uwX6odSOWJkwGJMEtEafUp4O_bE",
        true,
    ),
    (
        "ed25519_notags.bin",
        "Wh1-p4TzWg90cnZIo-HV-3ppHBiNw3l98S6C-ffmEdU",
        true,
    ),
    (
        "ed25519_hard_tags_anchor.bin",
        "zXhpyHYaHTpWuQLa5WjHmi8oK4luKRPQoDiOKyWshx4",
        true,
    ),
    (
        "ed25519_notags_emptydata_anchor.bin",
        "EVltJ_Cn4r5uQBxMqFtxg6YYDRAytNQQlK7tFpBwpGk",
        true,
    ),
    (
        "python_sdk_ed25519_notags.bin",
        "mVAGbXYXaeDHrgg279I7a4sHHOdoh5ldUkYfacXkVNc",
        true,
    ),
    (
        "rsa_basic.bin",
        "k6IaKrFUJ0u9exaNVP1MXVoGa8WuESIUecYdnPsV-lk",
        true,
    ),
    (
        "rsa_salt32.bin",
        "AfxfO_inYp5UsPgyd0pTZHeEJPm_VmmD9WGJf7nUCYk",
        true,
    ),
    (
        "ed25519_tampered_INVALID.bin",
        "5CrqH_RyyBuwPDzAaNlIH_IsAm5zGUb5Ypee1Pkd4Yw",
        false,
    ),
];

#[test]
fn every_vector_parses_reserializes_and_verifies_as_expected() {
    for (file, id, valid) in VECTORS {
        let bytes = vector(file);
        let item = DataItem::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(
            item.to_bytes(),
            bytes,
            "{file}: re-serialization is identical"
        );
        assert_eq!(
            item.header_len() + item.data.len(),
            bytes.len(),
            "{file}: header length"
        );
        assert_eq!(item.id(), id, "{file}: id");
        assert_eq!(item.verify().is_ok(), valid, "{file}: verify");
        if valid {
            item.check_tag_limits()
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
    let files = std::fs::read_dir(shared_dir().join("vectors/ans104"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        });
    assert_eq!(files.count(), VECTORS.len(), "every .bin vector is covered");
}

#[test]
fn the_basic_vector_matches_its_annotated_layout_and_deep_hash() {
    let item = DataItem::parse(&vector("ed25519_basic.bin")).unwrap();
    assert_eq!(item.signature_type, SignatureType::Ed25519);
    assert_eq!(item.tag_count, 2);
    assert_eq!(item.raw_tags.len(), 54);
    assert_eq!(item.tag("App-Name").as_deref(), Some("proof-worker"));
    assert_eq!(item.data, br#"{"hello":"world"}"#);
    let hash = hex::encode(item.signing_message());
    assert!(
        hash.starts_with("fc40990e") && hash.ends_with("4143"),
        "{hash}"
    );
    // The deep hash of a list equals folding its blobs, and an empty blob differs from 32 zeros.
    assert_ne!(
        deep_hash(&Chunk::Blob(&[])),
        deep_hash(&Chunk::Blob(&[0; 32]))
    );
}

#[test]
fn python_sdk_empty_tag_encoding_is_accepted_and_kept() {
    let bytes = vector("python_sdk_ed25519_notags.bin");
    let item = DataItem::parse(&bytes).unwrap();
    assert_eq!((item.tag_count, item.raw_tags.as_slice()), (0, &[0u8][..]));
    assert!(item.verify().is_ok());
}

fn seed_signer(byte_pattern: impl Fn(usize) -> u8) -> ItemSigner {
    let seed: [u8; 32] = std::array::from_fn(byte_pattern);
    ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// (file, signer, tags, data, target, anchor).
type RecreateCase<'a> = (
    &'a str,
    &'a ItemSigner,
    Vec<Tag>,
    Vec<u8>,
    Option<[u8; 32]>,
    Option<[u8; 32]>,
);

#[test]
fn ed25519_vectors_are_recreated_byte_for_byte() {
    let seq = seed_signer(|i| i as u8);
    let fives = seed_signer(|_| 0x55);
    let json_tags = |v: Value| -> Vec<Tag> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| Tag::new(t["name"].as_str().unwrap(), t["value"].as_str().unwrap()))
            .collect()
    };
    let hard_tags = json_tags(serde_json::from_slice(&vector("tags_hard.json")).unwrap());
    let anchor_of = |file: &str| DataItem::parse(&vector(file)).unwrap().anchor;
    let target: [u8; 32] = URL_SAFE_NO_PAD
        .decode("v8qPYum69_cf0VLjgoAK0GxLhznSSZ980jsGS0sXzIg")
        .unwrap()
        .try_into()
        .unwrap();
    let anchor_ff: [u8; 32] =
        hex::decode("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100")
            .unwrap()
            .try_into()
            .unwrap();
    let cases: Vec<RecreateCase<'_>> = vec![
        (
            "ed25519_basic.bin",
            &seq,
            vec![
                Tag::new("Content-Type", "application/json"),
                Tag::new("App-Name", "proof-worker"),
            ],
            br#"{"hello":"world"}"#.to_vec(),
            None,
            None,
        ),
        (
            "ed25519_anchor_target.bin",
            &seq,
            vec![Tag::new("Content-Type", "application/json")],
            br#"{"a":1}"#.to_vec(),
            Some(target),
            Some(anchor_ff),
        ),
        (
            "ed25519_notags.bin",
            &seq,
            vec![],
            b"x".to_vec(),
            None,
            None,
        ),
        (
            "ed25519_hard_tags_anchor.bin",
            &fives,
            hard_tags,
            vector("data_hard.payload"),
            None,
            anchor_of("ed25519_hard_tags_anchor.bin"),
        ),
        (
            "ed25519_notags_emptydata_anchor.bin",
            &fives,
            vec![],
            vec![],
            None,
            anchor_of("ed25519_notags_emptydata_anchor.bin"),
        ),
    ];
    for (file, signer, tags, data, target, anchor) in cases {
        let item = DataItem::sign(signer, tags, data, target, anchor).unwrap();
        assert_eq!(item.to_bytes(), vector(file), "{file}: byte-for-byte");
    }
    let hard = DataItem::parse(&vector("ed25519_hard_tags_anchor.bin")).unwrap();
    assert_eq!(hard.tags.len(), 13);
    assert!(hard.anchor.is_some_and(|a| a[0] == 0xaa && a[31] == 0x55));
}

#[test]
fn truncations_and_flipped_bytes_are_rejected_without_panic() {
    let mut checked = 0;
    for (file, _, valid) in VECTORS.iter().filter(|v| v.2) {
        let bytes = vector(file);
        for cut in 0..bytes.len() {
            assert!(
                DataItem::parse(&bytes[..cut])
                    .and_then(|i| i.verify())
                    .is_err(),
                "{file} cut at {cut}"
            );
        }
        // Every byte of small items; a stride over the long RSA ones.
        let stride = if bytes.len() > 1500 { 7 } else { 1 };
        for i in (0..bytes.len()).step_by(stride) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            let outcome = DataItem::parse(&flipped).and_then(|item| item.verify());
            assert!(outcome.is_err(), "{file}: flipped byte {i} accepted");
            checked += 1;
        }
        assert!(valid);
    }
    assert!(checked > 3000, "{checked}");
}

#[test]
fn arweave_jwk_wallets_sign_items_that_verify() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/arweave-wallet-jwk.json");
    let (signer, kind) = load_file(&path).unwrap();
    assert_eq!(kind, WalletType::Arweave);
    let item = DataItem::sign(
        &signer,
        vec![Tag::new("Content-Type", "application/json")],
        b"{\"proof\":1}".to_vec(),
        None,
        None,
    )
    .unwrap();
    assert_eq!(item.signature_type, SignatureType::Arweave);
    assert_eq!((item.owner.len(), item.signature.len()), (512, 512));
    let parsed = DataItem::parse(&item.to_bytes()).unwrap();
    assert!(parsed.verify().is_ok());
    assert_eq!(signer.native_address(), parsed.owner_address());
}
