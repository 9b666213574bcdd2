//! Undecodable messages to the dead-letter topic: the original bytes (truncated past a bound, with their size and SHA-256), the error and the origin in headers.

use rdkafka::message::{BorrowedMessage, Message};

use super::OutRecord;
use crate::feed::cloudevents;

/// The dead-letter record: the original key, value and headers plus Kafka Connect-style error
/// headers.
pub(super) fn dead_letter(
    m: &BorrowedMessage<'_>,
    headers: Vec<(String, Vec<u8>)>,
    rejection: &cloudevents::Rejection,
    dlq_topic: &str,
) -> OutRecord {
    dead_letter_record(
        Origin {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            value: m.payload(),
        },
        headers,
        rejection,
        dlq_topic,
    )
}

/// Where a rejected message came from.
pub struct Origin<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
}

/// The dead-letter record of a message (its original key, value and headers plus Kafka
/// Connect-style error headers).
pub fn dead_letter_record(
    m: Origin<'_>,
    mut headers: Vec<(String, Vec<u8>)>,
    rejection: &cloudevents::Rejection,
    dlq_topic: &str,
) -> OutRecord {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    for (k, v) in [
        ("__ario.errors.topic", m.topic.to_string()),
        ("__ario.errors.partition", m.partition.to_string()),
        ("__ario.errors.offset", m.offset.to_string()),
        ("__ario.errors.exception.class", rejection.class.to_string()),
        ("__ario.errors.exception.message", rejection.message.clone()),
        ("__ario.errors.timestamp", now.to_string()),
    ] {
        headers.push((k.to_string(), v.into_bytes()));
    }
    let mut value = m.value.map(<[u8]>::to_vec);
    if let Some(v) = value.as_mut().filter(|v| v.len() > MAX_DEAD_LETTER_BYTES) {
        // Too big to forward whole: keep its head, its size and its hash.
        headers.push((
            "__ario.errors.value.original.bytes".into(),
            v.len().to_string().into_bytes(),
        ));
        headers.push((
            "__ario.errors.value.original.sha256".into(),
            crate::proof::sha256_hex(v).into_bytes(),
        ));
        v.truncate(MAX_DEAD_LETTER_BYTES);
    }
    OutRecord {
        topic: dlq_topic.to_string(),
        partition: None,
        key: m.key.unwrap_or_default().to_vec(),
        value,
        headers,
    }
}

/// Dead-letter values above this are truncated (with their size and SHA-256 in headers).
pub const MAX_DEAD_LETTER_BYTES: usize = 8 << 20;
