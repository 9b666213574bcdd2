//! Turbo upload receipts (spec/arweave-turbo.md §2.1): what Turbo signs when it accepts an item.
//!
//! Signed fields: RSA-PSS-SHA-256 with **salt 0** by the key in `public` over
//! `deepHash(["Bundlr", version, id, deadlineHeight, timestamp])`. `owner`, `winc`,
//! `dataCaches` and `fastFinalityIndexes` are not signed, so the client checks `id` and
//! `owner` against what it computed locally.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::data_item::{rsa_public_key, verify_rsa_pss};
use super::deep_hash::deep_hash_blobs;

/// A Turbo receipt, kept verbatim by the anchoring pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Data item id.
    pub id: String,
    /// base64url(SHA-256(owner)) of the item's signer.
    pub owner: String,
    /// Gateways the item was pushed to.
    #[serde(default)]
    pub data_caches: Vec<String>,
    /// Index hosts the header was pushed to.
    #[serde(default)]
    pub fast_finality_indexes: Vec<String>,
    /// Winston credits charged.
    #[serde(default)]
    pub winc: String,
    /// Milliseconds since the epoch when Turbo stored the item.
    pub timestamp: u64,
    /// Arweave height by which Turbo promises to bundle the item.
    pub deadline_height: u64,
    /// Receipt schema version.
    pub version: String,
    /// base64url RSA modulus of Turbo's receipt key.
    pub public: String,
    /// base64url RSA-PSS signature.
    pub signature: String,
}

/// Why a receipt is not trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The `public` or `signature` field is not base64url or not an RSA-4096 key.
    #[error("receipt field `{0}` is malformed")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("receipt signature does not verify with its public key")]
    BadSignature,
    /// A receipt could not be signed.
    #[error("cannot sign the receipt: {0}")]
    Signing(String),
}

impl Receipt {
    /// The deep hash the receipt signature is over.
    pub fn signing_message(
        id: &str,
        version: &str,
        deadline_height: u64,
        timestamp: u64,
    ) -> [u8; 48] {
        deep_hash_blobs(&[
            b"Bundlr",
            version.as_bytes(),
            id.as_bytes(),
            deadline_height.to_string().as_bytes(),
            timestamp.to_string().as_bytes(),
        ])
    }

    /// Verifies the receipt's RSA-PSS (salt 0) signature with its own `public` key.
    pub fn verify_signature(&self) -> Result<(), ReceiptError> {
        let modulus = URL_SAFE_NO_PAD
            .decode(&self.public)
            .map_err(|_| ReceiptError::Malformed("public"))?;
        let key = rsa_public_key(&modulus).map_err(|_| ReceiptError::Malformed("public"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| ReceiptError::Malformed("signature"))?;
        let message = Self::signing_message(
            &self.id,
            &self.version,
            self.deadline_height,
            self.timestamp,
        );
        if verify_rsa_pss(&key, &message, &signature, &[0]) {
            Ok(())
        } else {
            Err(ReceiptError::BadSignature)
        }
    }

    /// Issues a receipt signed with `key` (what devnet does on every accepted upload).
    pub fn issue(
        key: &rsa::RsaPrivateKey,
        id: &str,
        owner: &str,
        timestamp: u64,
        deadline_height: u64,
        data_caches: Vec<String>,
    ) -> Result<Receipt, ReceiptError> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let version = "0.2.0".to_string();
        let message = Self::signing_message(id, &version, deadline_height, timestamp);
        let signer = rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(key.clone(), 0);
        let signature = signer
            .try_sign_with_rng(&mut rsa::rand_core::OsRng, &message)
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok(Receipt {
            id: id.to_string(),
            owner: owner.to_string(),
            data_caches,
            fast_finality_indexes: Vec::new(),
            winc: "0".into(),
            timestamp,
            deadline_height,
            version,
            public: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            signature: URL_SAFE_NO_PAD.encode(signature.to_vec()),
        })
    }
}
