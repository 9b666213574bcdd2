//! Property suite: ANS-104 data items (`arweave::DataItem`).
//!
//! - build → serialize → parse → verify round-trips for arbitrary tags (names and values up to
//!   the ANS-104 limits, unicode), data from 0 B to 100 KB, and optional target and anchor;
//! - arbitrary bytes given to the parser are an error or a well-formed item (one that
//!   serializes back to exactly those bytes), never a panic;
//! - a valid item with any bytes changed, cut or appended either fails to parse or fails to
//!   verify: nothing signed can be altered unnoticed.

#[path = "prop_support/mod.rs"]
mod prop_support;

use ario_mlflow_worker::arweave::data_item::{
    DataItemError, MAX_TAGS, MAX_TAG_BYTES, MAX_TAG_NAME_BYTES as MAX_NAME_BYTES,
    MAX_TAG_VALUE_BYTES as MAX_VALUE_BYTES,
};
use ario_mlflow_worker::arweave::{tags as avro_tags, DataItem, ItemSigner, Tag};
use prop_support::{any_string, cases, check};
use proptest::prelude::*;

/// A non-empty string of at most `max_bytes` UTF-8 bytes.
fn tag_text(max_bytes: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => any_string(12),
        1 => any_string(max_bytes / 4),
        1 => "[a-zA-Z0-9-]{1,3072}",
    ]
    .prop_map(move |s| {
        let mut s: String = s;
        while s.len() > max_bytes {
            s.pop();
        }
        if s.is_empty() {
            s.push('t');
        }
        s
    })
}

fn tags() -> impl Strategy<Value = Vec<Tag>> {
    prop_oneof![
        6 => proptest::collection::vec((tag_text(64), tag_text(256)), 0..8),
        1 => proptest::collection::vec((tag_text(MAX_NAME_BYTES), tag_text(MAX_VALUE_BYTES)), 0..4),
        1 => proptest::collection::vec((tag_text(8), tag_text(8)), MAX_TAGS - 2..=MAX_TAGS),
    ]
    .prop_map(|pairs| pairs.into_iter().map(|(n, v)| Tag::new(n, v)).collect())
}

/// Data from 0 B to 100 KB, mostly small; large ones made from a seed (cheap to draw).
fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..256),
        1 => (any::<u64>(), 0usize..=100 * 1024).prop_map(|(seed, len)| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..len).map(|_| rng.u8(..)).collect()
        }),
        1 => Just(vec![0u8; 100 * 1024]),
    ]
}

/// What an item is built from: tags, data, target, anchor.
type ItemInputs = (Vec<Tag>, Vec<u8>, Option<[u8; 32]>, Option<[u8; 32]>);

fn item_inputs() -> impl Strategy<Value = ItemInputs> {
    (
        tags(),
        data(),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of(any::<[u8; 32]>()),
    )
}

fn signer() -> ItemSigner {
    ItemSigner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&[3; 32]))
}

#[test]
fn items_round_trip_through_bytes_and_verify() {
    let signer = signer();
    check(
        "data item build/serialize/parse/verify",
        cases(1),
        item_inputs(),
        |(tags, data, target, anchor)| {
            let encoded = avro_tags::encode(&tags).len();
            let signed = DataItem::sign(&signer, tags.clone(), data.clone(), target, anchor);
            if encoded > MAX_TAG_BYTES {
                // Each tag within its limits, but more than 4 KiB together: the typed refusal.
                prop_assert!(
                    matches!(signed, Err(DataItemError::TagBytesTooLarge(n)) if n as usize == encoded),
                    "{} tag bytes: {:?}",
                    encoded,
                    signed.map(|i| i.id())
                );
                return Ok(());
            }
            let item =
                signed.map_err(|e| TestCaseError::fail(format!("within the limits, yet: {e}")))?;
            prop_assert!(item.verify().is_ok(), "a fresh item does not verify");
            let bytes = item.to_bytes();
            let parsed = DataItem::parse(&bytes)
                .map_err(|e| TestCaseError::fail(format!("own bytes do not parse: {e}")))?;
            prop_assert!(parsed.verify().is_ok(), "parsed item does not verify");
            prop_assert_eq!(parsed.id(), item.id());
            prop_assert_eq!(&parsed.tags, &tags);
            prop_assert_eq!(&parsed.data, &data);
            prop_assert_eq!((parsed.target, parsed.anchor), (target, anchor));
            prop_assert_eq!(parsed.to_bytes(), bytes);
            // Ed25519 items carry no randomness: the same inputs, the same id.
            let again = DataItem::sign(&signer, tags, data, target, anchor)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again.id(), item.id());
            Ok(())
        },
    );
}

#[test]
fn arbitrary_bytes_parse_to_an_error_or_a_well_formed_item() {
    check(
        "data item parse on arbitrary bytes",
        cases(1),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2_048),
            // A plausible header (Ed25519 type, presence bytes, counts) over random bytes.
            (
                proptest::collection::vec(any::<u8>(), 0..1_024),
                0u8..3,
                0u8..3,
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(rest, t, a, count, len)| {
                    let mut b = vec![2u8, 0];
                    b.extend([0u8; 64]);
                    b.extend([0u8; 32]);
                    b.push(t);
                    if t == 1 {
                        b.extend([1u8; 32]);
                    }
                    b.push(a);
                    if a == 1 {
                        b.extend([2u8; 32]);
                    }
                    b.extend((count % 300).to_le_bytes());
                    b.extend((len % 5_000).to_le_bytes());
                    b.extend(rest);
                    b
                }),
        ],
        |bytes| {
            if let Ok(item) = DataItem::parse(&bytes) {
                prop_assert_eq!(
                    item.to_bytes(),
                    bytes,
                    "parsed item does not re-serialize exactly"
                );
                prop_assert_eq!(item.tags.len() as u64, item.tag_count);
            }
            Ok(())
        },
    );
}

/// A change to a valid item's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Cut the item short.
    Truncate(prop::sample::Index),
    /// Append bytes (they would become data).
    Append(Vec<u8>),
    /// Insert a byte.
    Insert(prop::sample::Index, u8),
}

#[test]
fn no_change_to_a_signed_item_goes_unnoticed() {
    let signer = signer();
    let mutation = prop_oneof![
        6 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ];
    check(
        "data item tamper detection",
        cases(1),
        (
            proptest::collection::vec((tag_text(16), tag_text(32)), 0..6),
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
            mutation,
        ),
        |(pairs, data, target, anchor, mutation)| {
            let tags = pairs.into_iter().map(|(n, v)| Tag::new(n, v)).collect();
            let item = DataItem::sign(&signer, tags, data, target, anchor)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let original = item.to_bytes();
            let mut bytes = original.clone();
            match mutation {
                Mutation::Flip(i, mask) => {
                    let i = i.index(bytes.len());
                    bytes[i] ^= mask;
                }
                Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
                Mutation::Append(extra) => bytes.extend(extra),
                Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len()), b),
            }
            prop_assume!(bytes != original);
            if let Ok(parsed) = DataItem::parse(&bytes) {
                prop_assert!(
                    parsed.verify().is_err(),
                    "changed bytes parse and still verify (id {})",
                    parsed.id()
                );
            }
            Ok(())
        },
    );
}
