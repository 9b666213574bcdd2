//! A partition's state read back from the state topic into its store before it takes events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaRunError, KafkaSettings, Reporting};
use crate::store::{JournalEntry, Store};

/// Reads the given partitions of the state topic from the start to their last stable offsets
/// into their stores. Returns the records read per partition.
pub(super) fn restore(
    settings: &KafkaSettings,
    state_topic: &str,
    stores: &[(i32, &Store)],
) -> Result<BTreeMap<i32, u64>, KafkaRunError> {
    let reader: BaseConsumer<Reporting> = settings
        .client_config(&[
            ("group.id", &format!("{}.restore", settings.group)),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "10"),
        ])
        .create_with_context(Reporting::default())
        .map_err(|e| KafkaRunError::client("create the state reader", e))?;
    let mut tpl = TopicPartitionList::new();
    for (p, _) in stores {
        tpl.add_partition_offset(state_topic, *p, Offset::Beginning)
            .map_err(|e| KafkaRunError::client(format!("assign {state_topic}[{p}]"), e))?;
    }
    reader
        .assign(&tpl)
        .map_err(|e| KafkaRunError::client(format!("assign {state_topic}"), e))?;
    let by_partition: BTreeMap<i32, &Store> = stores.iter().copied().collect();
    let mut counts: BTreeMap<i32, u64> = BTreeMap::new();
    let mut done = std::collections::BTreeSet::new();
    const PATIENCE: Duration = Duration::from_secs(120);
    let deadline = Instant::now() + PATIENCE;
    while done.len() < by_partition.len() {
        if Instant::now() > deadline {
            return Err(KafkaRunError::RestoreTimeout {
                topic: state_topic.to_string(),
                seconds: PATIENCE.as_secs(),
                read: format!("{counts:?}"),
            });
        }
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some(store) = by_partition.get(&p) else {
                    continue;
                };
                let Some(value) = m.payload() else {
                    // A tombstone: a job compacted away after its retention.
                    if let Some(job) = m
                        .key()
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|k| k.strip_prefix("job/"))
                    {
                        store.restore(JournalEntry::Removed {
                            job: job.to_string(),
                        })?;
                    }
                    continue;
                };
                let entry: JournalEntry =
                    serde_json::from_slice(value).map_err(|e| KafkaRunError::StateRecord {
                        topic: state_topic.to_string(),
                        partition: p,
                        offset: m.offset(),
                        reason: format!("not a state record: {e}"),
                    })?;
                store.restore(entry)?;
                *counts.entry(p).or_default() += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "kafka: restore read");
                std::thread::sleep(Duration::from_millis(50));
            }
            None => {}
        }
    }
    Ok(counts)
}
