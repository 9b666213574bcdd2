//! Data-item signers: Ed25519 (ANS-104 signature type 2, what Solana wallets sign with in the
//! Python stack) and Arweave RSA-4096 (type 1, RSA-PSS-SHA-256). Both sign the 48-byte deep hash.
//!
//! Ed25519 is deterministic, so the same item always gets the same id. RSA-PSS uses a random
//! salt (478 bytes, the maximum, as arbundles and the Python SDK do); the *bytes* of a signed RSA
//! item are therefore fixed once signed and must be stored, never re-signed.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer as _;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256};

/// ANS-104 signature types this project signs and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum SignatureType {
    /// 1: Arweave RSA-PSS-SHA-256, 512-byte modulus owner, 512-byte signature.
    Arweave,
    /// 2: raw Ed25519 over the deep hash, 32-byte owner, 64-byte signature.
    Ed25519,
}

impl SignatureType {
    /// The wire value.
    pub fn code(self) -> u16 {
        match self {
            SignatureType::Arweave => 1,
            SignatureType::Ed25519 => 2,
        }
    }

    /// The type for a wire value, when supported.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            1 => Some(SignatureType::Arweave),
            2 => Some(SignatureType::Ed25519),
            _ => None,
        }
    }

    /// Signature length in bytes.
    pub fn signature_len(self) -> usize {
        match self {
            SignatureType::Arweave => 512,
            SignatureType::Ed25519 => 64,
        }
    }

    /// Owner (public key) length in bytes.
    pub fn owner_len(self) -> usize {
        match self {
            SignatureType::Arweave => 512,
            SignatureType::Ed25519 => 32,
        }
    }

    /// The Turbo `{token}` path segment for this type.
    pub fn token(self) -> &'static str {
        match self {
            SignatureType::Arweave => "arweave",
            SignatureType::Ed25519 => "solana",
        }
    }
}

/// PSS salt length arbundles and the Python SDK sign with (the maximum for 4096-bit keys).
pub const RSA_SIGNING_SALT_LEN: usize = 478;

/// Why a signer cannot be built or cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// Arweave keys are RSA-4096 with e = 65537.
    #[error("Arweave wallets must be RSA-4096 with e=65537 (modulus is {bits} bits)")]
    BadRsaKey {
        /// Modulus size found.
        bits: usize,
    },
    /// RSA signing failed.
    #[error("RSA-PSS signing failed: {0}")]
    RsaSign(String),
}

/// A key that signs data items. `Debug` never prints secrets.
pub enum ItemSigner {
    /// Ed25519 (signature type 2).
    Ed25519(ed25519_dalek::SigningKey),
    /// Arweave RSA-4096 (signature type 1).
    Arweave(RsaPrivateKey),
}

impl fmt::Debug for ItemSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ItemSigner({:?}, address {}, secret <redacted>)",
            self.signature_type(),
            self.native_address()
        )
    }
}

impl ItemSigner {
    /// An RSA signer, checked to be 4096-bit with e = 65537.
    pub fn arweave(key: RsaPrivateKey) -> Result<Self, SignerError> {
        let bits = key.n().bits();
        if key.size() != 512 || key.e() != &rsa::BigUint::from(65537u32) {
            return Err(SignerError::BadRsaKey { bits });
        }
        Ok(ItemSigner::Arweave(key))
    }

    /// The signature type items get.
    pub fn signature_type(&self) -> SignatureType {
        match self {
            ItemSigner::Ed25519(_) => SignatureType::Ed25519,
            ItemSigner::Arweave(_) => SignatureType::Arweave,
        }
    }

    /// The owner field: the Ed25519 public key, or the 512-byte big-endian RSA modulus.
    pub fn owner(&self) -> Vec<u8> {
        match self {
            ItemSigner::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            ItemSigner::Arweave(k) => k.n().to_bytes_be(),
        }
    }

    /// Signs the 48-byte deep hash.
    pub fn sign(&self, message: &[u8; 48]) -> Result<Vec<u8>, SignerError> {
        match self {
            ItemSigner::Ed25519(k) => Ok(k.sign(message).to_bytes().to_vec()),
            ItemSigner::Arweave(k) => {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                let signer = rsa::pss::BlindedSigningKey::<Sha256>::new_with_salt_len(
                    k.clone(),
                    RSA_SIGNING_SALT_LEN,
                );
                let sig = signer
                    .try_sign_with_rng(&mut rsa::rand_core::OsRng, message)
                    .map_err(|e| SignerError::RsaSign(e.to_string()))?;
                Ok(sig.to_vec())
            }
        }
    }

    /// The address Turbo bills: base58 public key (Ed25519/Solana) or base64url(SHA-256(n)) (Arweave).
    pub fn native_address(&self) -> String {
        match self {
            ItemSigner::Ed25519(k) => bs58::encode(k.verifying_key().as_bytes()).into_string(),
            ItemSigner::Arweave(_) => owner_address(&self.owner()),
        }
    }
}

/// The normalized owner address: base64url(SHA-256(owner bytes)) for every signature type.
pub fn owner_address(owner: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(owner))
}
