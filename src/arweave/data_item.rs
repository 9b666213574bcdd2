//! ANS-104 data items: the binary form a proof leaves the machine in (spec/arweave-turbo.md §1).
//!
//! Layout (little-endian): `sig_type u16 · signature · owner · target? · anchor? · tag_count u64 ·
//! tag_bytes_len u64 · tags (Avro) · data`. The signature is over the deep hash of
//! `["dataitem", "1", "<sig_type>", owner, target|"", anchor|"", raw tag bytes, data]` — the list
//! the real implementations sign, not the one printed in the ANS-104 text. The id is
//! base64url(SHA-256(signature)).
//!
//! [`DataItem::parse`] is strict in the ways Turbo is and a little stricter where that is cheap
//! (presence bytes must be 0 or 1, the Avro must consume exactly the declared tag bytes);
//! [`DataItem::check_tag_limits`] adds the ANS-104 tag limits that Turbo does not enforce but
//! gateways may. Parsing never panics: every malformed input is a [`DataItemError`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use super::deep_hash::deep_hash_blobs;
use super::signer::{owner_address, ItemSigner, SignatureType, SignerError};
use super::tags::{self, Tag, TagDecodeError};

/// Smallest possible item (arbundles `MIN_BINARY_SIZE`).
pub const MIN_ITEM_SIZE: usize = 80;
/// Largest tag section (arbundles `MAX_TAG_BYTES`, Turbo `dataItemTagsByteLimit`).
pub const MAX_TAG_BYTES: usize = 4096;
/// ANS-104 §2.1: at most 128 tags.
pub const MAX_TAGS: usize = 128;
/// ANS-104 §2.1: tag name at most 1024 bytes.
pub const MAX_TAG_NAME_BYTES: usize = 1024;
/// ANS-104 §2.1: tag value at most 3072 bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 3072;
/// PSS salt lengths a verifier must try: Rust `rsa` (32), arbundles/Python (478), Turbo receipts (0).
pub const RSA_VERIFY_SALT_LENS: [usize; 3] = [32, 478, 0];

/// Why bytes are not a valid data item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataItemError {
    /// Fewer bytes than any item can have.
    #[error("data item is {0} bytes; the minimum is {MIN_ITEM_SIZE}")]
    TooShort(usize),
    /// A signature type other than 1 (Arweave) or 2 (Ed25519).
    #[error("unsupported signature type {0} (supported: 1 Arweave RSA, 2 Ed25519)")]
    UnsupportedSignatureType(u16),
    /// The bytes end inside a fixed-size field.
    #[error("data item truncated in field `{0}`")]
    Truncated(&'static str),
    /// A presence byte other than 0 or 1.
    #[error("{field} presence byte is {value}; must be 0 or 1")]
    BadPresenceByte {
        /// `target` or `anchor`.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// More than [`MAX_TAG_BYTES`] of tags.
    #[error("tag section is {0} bytes; the limit is {MAX_TAG_BYTES}")]
    TagBytesTooLarge(u64),
    /// The Avro tag bytes do not decode.
    #[error("tags do not decode: {0}")]
    TagDecode(#[from] TagDecodeError),
    /// The Avro decoding stopped before the declared tag bytes ended.
    #[error("tags decode from {used} of the {declared} declared tag bytes")]
    TagBytesNotConsumed {
        /// Declared tag bytes (field 9).
        declared: usize,
        /// Bytes the Avro array used.
        used: usize,
    },
    /// Field 8 disagrees with the decoded tags.
    #[error("tag count field says {declared}, the tags hold {decoded}")]
    TagCountMismatch {
        /// Field 8.
        declared: u64,
        /// Tags decoded.
        decoded: usize,
    },
    /// An ANS-104 tag limit is broken.
    #[error("tag limit: {0}")]
    TagLimit(String),
    /// The signature does not verify against the owner.
    #[error("signature does not verify for this owner")]
    InvalidSignature,
    /// The owner is not a usable public key.
    #[error("owner is not a valid public key: {0}")]
    BadOwner(String),
    /// Signing failed.
    #[error("cannot sign the data item: {0}")]
    Sign(String),
}

impl From<SignerError> for DataItemError {
    fn from(e: SignerError) -> Self {
        DataItemError::Sign(e.to_string())
    }
}

/// A parsed or freshly signed ANS-104 data item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataItem {
    /// Signature type (field 1).
    pub signature_type: SignatureType,
    /// Signature bytes (field 2).
    pub signature: Vec<u8>,
    /// Owner public key bytes (field 3).
    pub owner: Vec<u8>,
    /// Optional 32-byte target (fields 4–5).
    pub target: Option<[u8; 32]>,
    /// Optional 32-byte anchor (fields 6–7).
    pub anchor: Option<[u8; 32]>,
    /// Field 8 as written.
    pub tag_count: u64,
    /// The Avro tag bytes exactly as written (field 10), which the signature covers.
    pub raw_tags: Vec<u8>,
    /// Decoded tags.
    pub tags: Vec<Tag>,
    /// The payload (field 11).
    pub data: Vec<u8>,
}

impl DataItem {
    /// Builds and signs a data item. No random anchor is added: with an Ed25519 signer the same
    /// inputs always give the same bytes and id, so a retry re-sends the same item.
    pub fn sign(
        signer: &ItemSigner,
        tags: Vec<Tag>,
        data: Vec<u8>,
        target: Option<[u8; 32]>,
        anchor: Option<[u8; 32]>,
    ) -> Result<DataItem, DataItemError> {
        check_tag_limits(&tags)?;
        let raw_tags = tags::encode(&tags);
        if raw_tags.len() > MAX_TAG_BYTES {
            return Err(DataItemError::TagBytesTooLarge(raw_tags.len() as u64));
        }
        let mut item = DataItem {
            signature_type: signer.signature_type(),
            signature: Vec::new(),
            owner: signer.owner(),
            target,
            anchor,
            tag_count: tags.len() as u64,
            raw_tags,
            tags,
            data,
        };
        item.signature = signer.sign(&item.signing_message())?;
        Ok(item)
    }

    /// Parses the binary form, checking structure and tags (not the signature: see [`Self::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<DataItem, DataItemError> {
        if bytes.len() < MIN_ITEM_SIZE {
            return Err(DataItemError::TooShort(bytes.len()));
        }
        let mut r = Reader { bytes, pos: 0 };
        let code = u16::from_le_bytes(r.array::<2>("signature type")?);
        let signature_type =
            SignatureType::from_code(code).ok_or(DataItemError::UnsupportedSignatureType(code))?;
        let signature = r
            .take(signature_type.signature_len(), "signature")?
            .to_vec();
        let owner = r.take(signature_type.owner_len(), "owner")?.to_vec();
        let target = r.optional_32("target")?;
        let anchor = r.optional_32("anchor")?;
        let tag_count = u64::from_le_bytes(r.array::<8>("tag count")?);
        let tag_len = u64::from_le_bytes(r.array::<8>("tag bytes length")?);
        if tag_len > MAX_TAG_BYTES as u64 {
            return Err(DataItemError::TagBytesTooLarge(tag_len));
        }
        let raw_tags = r.take(tag_len as usize, "tags")?.to_vec();
        let (tags, used) = tags::decode(&raw_tags)?;
        if used != raw_tags.len() {
            return Err(DataItemError::TagBytesNotConsumed {
                declared: raw_tags.len(),
                used,
            });
        }
        if tags.len() as u64 != tag_count {
            return Err(DataItemError::TagCountMismatch {
                declared: tag_count,
                decoded: tags.len(),
            });
        }
        let data = bytes[r.pos..].to_vec();
        Ok(DataItem {
            signature_type,
            signature,
            owner,
            target,
            anchor,
            tag_count,
            raw_tags,
            tags,
            data,
        })
    }

    /// The binary form. For a parsed item this reproduces the input exactly.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + self.data.len());
        out.extend_from_slice(&self.signature_type.code().to_le_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.owner);
        for field in [&self.target, &self.anchor] {
            match field {
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(bytes);
                }
                None => out.push(0),
            }
        }
        out.extend_from_slice(&self.tag_count.to_le_bytes());
        out.extend_from_slice(&(self.raw_tags.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.raw_tags);
        out.extend_from_slice(&self.data);
        out
    }

    /// Bytes before the data section.
    pub fn header_len(&self) -> usize {
        2 + self.signature.len()
            + self.owner.len()
            + 1
            + self.target.map_or(0, |_| 32)
            + 1
            + self.anchor.map_or(0, |_| 32)
            + 16
            + self.raw_tags.len()
    }

    /// The 48-byte deep hash that is signed.
    pub fn signing_message(&self) -> [u8; 48] {
        let sig_type = self.signature_type.code().to_string();
        let target: &[u8] = self.target.as_ref().map_or(&[], |t| t.as_slice());
        let anchor: &[u8] = self.anchor.as_ref().map_or(&[], |a| a.as_slice());
        deep_hash_blobs(&[
            b"dataitem",
            b"1",
            sig_type.as_bytes(),
            &self.owner,
            target,
            anchor,
            &self.raw_tags,
            &self.data,
        ])
    }

    /// Verifies the signature against the owner (Ed25519 strictly; RSA-PSS with salt 32, 478 or 0).
    pub fn verify(&self) -> Result<(), DataItemError> {
        let message = self.signing_message();
        match self.signature_type {
            SignatureType::Ed25519 => {
                let owner: [u8; 32] = self
                    .owner
                    .as_slice()
                    .try_into()
                    .map_err(|_| DataItemError::BadOwner("length".into()))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&owner)
                    .map_err(|e| DataItemError::BadOwner(e.to_string()))?;
                let sig: [u8; 64] = self
                    .signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| DataItemError::InvalidSignature)?;
                key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
                    .map_err(|_| DataItemError::InvalidSignature)
            }
            SignatureType::Arweave => {
                let key = rsa_public_key(&self.owner)?;
                if verify_rsa_pss(&key, &message, &self.signature, &RSA_VERIFY_SALT_LENS) {
                    Ok(())
                } else {
                    Err(DataItemError::InvalidSignature)
                }
            }
        }
    }

    /// 32-byte raw id: SHA-256 of the signature.
    pub fn raw_id(&self) -> [u8; 32] {
        Sha256::digest(&self.signature).into()
    }

    /// The id: base64url (no padding) of SHA-256(signature), always 43 characters.
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.raw_id())
    }

    /// The normalized owner address, base64url(SHA-256(owner)) — Turbo's receipt `owner`.
    pub fn owner_address(&self) -> String {
        owner_address(&self.owner)
    }

    /// The first tag with this name, as text.
    pub fn tag(&self, name: &str) -> Option<String> {
        self.tags
            .iter()
            .find(|t| t.name == name.as_bytes())
            .map(|t| t.value_str().into_owned())
    }

    /// Checks the ANS-104 tag limits (count, non-empty UTF-8 names and values, sizes).
    pub fn check_tag_limits(&self) -> Result<(), DataItemError> {
        check_tag_limits(&self.tags)
    }
}

/// ANS-104 §2.1 limits that gateways may enforce; we enforce them when signing and in devnet.
pub fn check_tag_limits(tags: &[Tag]) -> Result<(), DataItemError> {
    if tags.len() > MAX_TAGS {
        return Err(DataItemError::TagLimit(format!(
            "{} tags; at most {MAX_TAGS}",
            tags.len()
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        let problem = if tag.name.is_empty() || tag.value.is_empty() {
            Some("empty name or value".to_string())
        } else if std::str::from_utf8(&tag.name).is_err()
            || std::str::from_utf8(&tag.value).is_err()
        {
            Some("name or value is not UTF-8".to_string())
        } else if tag.name.len() > MAX_TAG_NAME_BYTES {
            Some(format!(
                "name is {} bytes; at most {MAX_TAG_NAME_BYTES}",
                tag.name.len()
            ))
        } else if tag.value.len() > MAX_TAG_VALUE_BYTES {
            Some(format!(
                "value is {} bytes; at most {MAX_TAG_VALUE_BYTES}",
                tag.value.len()
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            return Err(DataItemError::TagLimit(format!(
                "tag #{i} ({}): {p}",
                tag.name_str()
            )));
        }
    }
    Ok(())
}

/// An RSA public key from a 512-byte big-endian modulus with e = 65537.
pub fn rsa_public_key(modulus: &[u8]) -> Result<rsa::RsaPublicKey, DataItemError> {
    if modulus.len() != 512 || modulus[0] == 0 {
        return Err(DataItemError::BadOwner(format!(
            "RSA modulus must be exactly 512 bytes (4096-bit), got {}",
            modulus.len()
        )));
    }
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(modulus),
        rsa::BigUint::from(65537u32),
    )
    .map_err(|e| DataItemError::BadOwner(e.to_string()))?;
    debug_assert_eq!(key.size(), 512);
    Ok(key)
}

/// RSA-PSS-SHA-256 (MGF1-SHA-256) verification, trying each salt length in turn.
pub fn verify_rsa_pss(
    key: &rsa::RsaPublicKey,
    message: &[u8],
    signature: &[u8],
    salt_lens: &[usize],
) -> bool {
    use rsa::signature::Verifier;
    let Ok(sig) = rsa::pss::Signature::try_from(signature) else {
        return false;
    };
    salt_lens.iter().any(|&salt| {
        rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key.clone(), salt)
            .verify(message, &sig)
            .is_ok()
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DataItemError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(DataItemError::Truncated(field))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DataItemError> {
        let slice = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn optional_32(&mut self, field: &'static str) -> Result<Option<[u8; 32]>, DataItemError> {
        match self.array::<1>(field)?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.array::<32>(field)?)),
            value => Err(DataItemError::BadPresenceByte { field, value }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> ItemSigner {
        ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let item = DataItem::sign(
            &signer(),
            vec![Tag::new("A", "b")],
            b"data".to_vec(),
            None,
            Some([9; 32]),
        )
        .unwrap();
        let bytes = item.to_bytes();
        let parsed = DataItem::parse(&bytes).unwrap();
        assert_eq!(parsed, item);
        assert!(parsed.verify().is_ok());
        assert_eq!(parsed.id().len(), 43);
        assert_eq!(parsed.tag("A").as_deref(), Some("b"));
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_rejected_without_panic() {
        let item = DataItem::sign(
            &signer(),
            vec![Tag::new("Content-Type", "application/json")],
            b"{\"a\":1}".to_vec(),
            None,
            None,
        )
        .unwrap();
        let bytes = item.to_bytes();
        for cut in 0..bytes.len() {
            let rejected = DataItem::parse(&bytes[..cut]).and_then(|i| i.verify());
            assert!(rejected.is_err(), "truncated to {cut}");
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            let rejected = DataItem::parse(&flipped).and_then(|i| i.verify());
            assert!(rejected.is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn tag_limits_are_enforced_when_signing() {
        let s = signer();
        assert!(DataItem::sign(&s, vec![Tag::new("", "x")], vec![], None, None).is_err());
        assert!(DataItem::sign(
            &s,
            vec![Tag::new("x", "v".repeat(3073))],
            vec![],
            None,
            None
        )
        .is_err());
        assert!(DataItem::sign(
            &s,
            (0..129).map(|i| Tag::new(format!("t{i}"), "v")).collect(),
            vec![],
            None,
            None
        )
        .is_err());
        let too_many_bytes: Vec<Tag> = (0..2)
            .map(|i| Tag::new(format!("t{i}"), "v".repeat(3000)))
            .collect();
        assert!(matches!(
            DataItem::sign(&s, too_many_bytes, vec![], None, None),
            Err(DataItemError::TagBytesTooLarge(_))
        ));
    }

    #[test]
    fn presence_bytes_other_than_0_or_1_are_rejected() {
        let item = DataItem::sign(&signer(), vec![], b"x".repeat(100), None, None).unwrap();
        let mut bytes = item.to_bytes();
        bytes[2 + 64 + 32] = 2;
        assert!(matches!(
            DataItem::parse(&bytes),
            Err(DataItemError::BadPresenceByte {
                field: "target",
                value: 2
            })
        ));
    }
}
