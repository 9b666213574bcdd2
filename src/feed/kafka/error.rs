//! What can go wrong with Kafka: at start-up ([`KafkaSetupError`], exit 2) and while running
//! ([`KafkaRunError`]: a session or a transaction that failed; the caller rebuilds or restarts
//! it from the committed offsets).

use rdkafka::error::KafkaError;

use crate::store::StoreError;

/// Why Kafka could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A setting is wrong (exit 2).
    #[error("{0}")]
    Config(String),
    /// The cluster could not be reached or refused us (exit 2 at startup).
    #[error("cannot use Kafka at {brokers}: {cause}")]
    Unreachable {
        /// Bootstrap servers.
        brokers: String,
        /// The cause as the client reported it (never a secret).
        cause: String,
    },
    /// A client call failed.
    #[error("Kafka: {0}")]
    Client(#[from] KafkaError),
    /// The topic to consume does not exist (yet: `feed` creates it).
    #[error("the event topic {topic} does not exist on {brokers} (start `ario-mlflow-worker feed --to-kafka {topic}` — it creates it — or create it yourself)")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// Bootstrap servers.
        brokers: String,
    },
}

impl KafkaSetupError {
    /// Whether waiting may help: the cluster not reachable (yet), or the topic not created
    /// (yet). Refused credentials, TLS failures and wrong settings never get better.
    pub fn is_transient(&self) -> bool {
        match self {
            KafkaSetupError::Unreachable { cause, .. } => !super::is_specific(cause),
            KafkaSetupError::MissingTopic { .. } => true,
            KafkaSetupError::Config(_) | KafkaSetupError::Client(_) => false,
        }
    }
}

/// A running Kafka session or transaction failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KafkaRunError {
    /// A client call failed: which step, librdkafka's error and, where the client context
    /// reported one, its last error (the cause behind a generic failure).
    #[error("{step}: {source}{}", .reported.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Client {
        /// The step, e.g. `commit` or `seek ario.mlflow.events[3]`.
        step: String,
        /// librdkafka's error (boxed: it is large, and errors travel through hot paths).
        #[source]
        source: Box<KafkaError>,
        /// The client context's last reported error, if any.
        reported: Option<String>,
    },
    /// The transactional state cannot take a commit now.
    #[error("state transaction: {0}")]
    State(&'static str),
    /// A transaction failed; what waited for it fails with this.
    #[error("state transaction failed: {0}")]
    Transaction(String),
    /// The consumer has no group metadata (it is not a member of the group).
    #[error("the consumer has no group metadata")]
    NoGroupMetadata,
    /// A state record cannot be read back into the partition's store.
    #[error("state record {topic}[{partition}]@{offset}: {reason}")]
    StateRecord {
        /// The state topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Why it cannot be read.
        reason: String,
    },
    /// Restoring from the state topic did not reach the end of every partition in time.
    #[error("restoring {topic} did not reach the end of every partition in {seconds} s ({read} records read per partition)")]
    RestoreTimeout {
        /// The state topic.
        topic: String,
        /// The time allowed.
        seconds: u64,
        /// The records read so far, per partition.
        read: String,
    },
    /// The partition's store failed.
    #[error("store: {0}")]
    Store(String),
    /// An event cannot be encoded as a message (it has no chain key).
    #[error("{0}: no partition key")]
    NoPartitionKey(String),
    /// A finished run's chain could not be read from MLflow within the patience.
    #[error("cannot resolve run {run_id}'s chain: {cause}")]
    RunChain {
        /// The run.
        run_id: String,
        /// MLflow's answer.
        cause: String,
    },
    /// The session was stopped or is (re)starting.
    #[error("{0}")]
    Stopped(&'static str),
}

impl KafkaRunError {
    /// A failed client call at `step`.
    pub fn client(step: impl Into<String>, source: KafkaError) -> KafkaRunError {
        KafkaRunError::Client {
            step: step.into(),
            source: Box::new(source),
            reported: None,
        }
    }
}

impl From<StoreError> for KafkaRunError {
    fn from(e: StoreError) -> KafkaRunError {
        KafkaRunError::Store(e.to_string())
    }
}

/// A `--kafka-property` that is not `key=value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key:?} is not key=value (a librdkafka property, e.g. security.protocol=SASL_SSL)")]
pub struct PropertyError {
    /// What came before the first `=`.
    pub key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_can_fix_is_transient() {
        let unreachable = |cause: &str| KafkaSetupError::Unreachable {
            brokers: "b:9092".into(),
            cause: cause.into(),
        };
        assert!(unreachable("Connection refused").is_transient());
        assert!(KafkaSetupError::MissingTopic {
            topic: "t".into(),
            brokers: "b:9092".into()
        }
        .is_transient());
        assert!(!unreachable("SASL authentication error: Authentication failed").is_transient());
        assert!(!unreachable("SSL handshake failed: certificate verify failed").is_transient());
        assert!(!KafkaSetupError::Config("bad".into()).is_transient());
    }
}
