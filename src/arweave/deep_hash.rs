//! Arweave's SHA-384 "deep hash" (arbundles `deepHash.js`), the message ANS-104 data items and
//! Turbo receipts are signed over (spec/arweave-turbo.md §1.3).
//!
//! `blob b  = SHA384(SHA384("blob" ‖ len(b)) ‖ SHA384(b))`
//! `list L  = fold(SHA384("list" ‖ len(L)), |acc, e| SHA384(acc ‖ deep(e)))`

use sha2::{Digest, Sha384};

/// A deep-hash input: a byte blob or a list of inputs.
#[derive(Debug, Clone, Copy)]
pub enum Chunk<'a> {
    /// Raw bytes.
    Blob(&'a [u8]),
    /// A nested list.
    List(&'a [Chunk<'a>]),
}

/// The 48-byte deep hash of `chunk`.
pub fn deep_hash(chunk: &Chunk<'_>) -> [u8; 48] {
    match chunk {
        Chunk::Blob(bytes) => {
            let tag = Sha384::digest(format!("blob{}", bytes.len()));
            let data = Sha384::digest(bytes);
            Sha384::new()
                .chain_update(tag)
                .chain_update(data)
                .finalize()
                .into()
        }
        Chunk::List(items) => {
            let mut acc: [u8; 48] = Sha384::digest(format!("list{}", items.len())).into();
            for item in *items {
                acc = Sha384::new()
                    .chain_update(acc)
                    .chain_update(deep_hash(item))
                    .finalize()
                    .into();
            }
            acc
        }
    }
}

/// Deep hash of a flat list of blobs (the only shape data items and receipts use).
pub fn deep_hash_blobs(blobs: &[&[u8]]) -> [u8; 48] {
    let chunks: Vec<Chunk<'_>> = blobs.iter().map(|b| Chunk::Blob(b)).collect();
    deep_hash(&Chunk::List(&chunks))
}
