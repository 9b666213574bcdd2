//! Kafka: the change feed as a topic (docs/kafka.md).
//!
//! * [`producer`] — `feed --to-kafka`: the poller as an idempotent producer, one
//!   [CloudEvents](super::cloudevents) message per event, keyed by its chain key.
//! * [`consumer`] — `run --source kafka`: a consumer group member. Each owned partition gets a
//!   store of its own, replicated to the compacted **state topic** through the [`journal`]: every
//!   state record and the consumed offsets are written in one Kafka transaction, so an instance
//!   that lost a partition is fenced and the next owner restores the exact state before it takes
//!   an event.
//! * [`rekey`] — `--kafka-format debezium`: Debezium records of MLflow's own tables re-keyed
//!   onto the event topic by chain key, transactionally with the CDC offsets.
//!
//! Settings pass through to librdkafka (`--kafka-property key=value`); secrets among them are
//! never logged ([`redacted`]).

pub mod consumer;
mod error;
pub mod journal;
pub mod producer;
pub mod rekey;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use error::{KafkaRunError, KafkaSetupError, PropertyError};

/// Default event topic.
pub const DEFAULT_TOPIC: &str = "ario.mlflow.events";

/// Default consumer group.
pub const DEFAULT_GROUP: &str = "ario-mlflow-worker";

/// What the messages of the consumed topics are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KafkaFormat {
    /// The change events `feed` produces (CloudEvents 1.0).
    #[default]
    Cloudevents,
    /// Debezium change records of MLflow's own tables (change data capture), re-keyed onto the
    /// event topic first ([`rekey`]).
    Debezium,
}

/// What every Kafka command shares.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers (`ARIO_MLFLOW_KAFKA_BROKERS`).
    pub brokers: String,
    /// librdkafka properties passed through, in order (later wins).
    pub properties: Vec<(String, String)>,
    /// The event topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Dead-letter topic (default `<topic>.dlq`).
    pub dlq_topic: Option<String>,
    /// State topic (default `<topic>.state.<group>`).
    pub state_topic: Option<String>,
    /// Largest message value accepted (bigger ones are dead letters).
    pub max_message_bytes: usize,
    /// Partitions of a topic this process creates.
    pub partitions: i32,
    /// Replication factor of a topic this process creates.
    pub replication: i32,
    /// A stable name for this instance (its transactional id); default random per start.
    pub instance_id: Option<String>,
    /// The MLflow workspace whose events these topics carry (`None`: the default workspace, or
    /// a server without workspaces); set by [`KafkaSettings::in_workspace`].
    pub workspace: Option<String>,
}

impl KafkaSettings {
    /// The dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("{}.dlq", self.topic))
    }

    /// The settings of MLflow workspace `workspace`'s lane: the same for the default workspace
    /// (topics written before workspaces are its), else its own event topic
    /// `<topic>.workspace.<name>`, group `<group>.workspace.<name>`, and the dead-letter and state
    /// topics, instance id and any named topic suffixed the same way — so two workspaces'
    /// `fraud/3` never share a key, a partition, a dedupe key or a chain. (MLflow's workspace
    /// names are lowercase letters, digits and inner hyphens: no name makes another's suffix.)
    pub fn in_workspace(&self, workspace: &str) -> KafkaSettings {
        if workspace == crate::mlflow::DEFAULT_WORKSPACE {
            return self.clone();
        }
        let suffix = |name: &str| format!("{name}.workspace.{workspace}");
        KafkaSettings {
            topic: suffix(&self.topic),
            group: suffix(&self.group),
            dlq_topic: self.dlq_topic.as_deref().map(suffix),
            state_topic: self.state_topic.as_deref().map(suffix),
            instance_id: self.instance_id.as_deref().map(suffix),
            workspace: Some(workspace.to_string()),
            ..self.clone()
        }
    }

    /// The state topic: one per (event topic, group), co-partitioned with the event topic.
    pub fn state_topic(&self) -> String {
        self.state_topic
            .clone()
            .unwrap_or_else(|| format!("{}.state.{}", self.topic, self.group))
    }

    /// A client configuration: the brokers, then our defaults for `role`, then every
    /// `--kafka-property` (which wins).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        c.set("broker.address.family", "v4");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set_log_level(RDKafkaLogLevel::Warning);
        c
    }

    /// The pass-through properties with every secret replaced, for logs and `config check`.
    pub fn redacted_properties(&self) -> Vec<(String, String)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.clone(), redacted(k, v)))
            .collect()
    }
}

/// A property's value as it may be shown: secrets (`sasl.password`, `ssl.key.password`,
/// `ssl.key.pem`, OAuth client secrets, …) become `<redacted>`.
pub fn redacted(key: &str, value: &str) -> String {
    let k = key.to_ascii_lowercase();
    let secret = [
        "password",
        "secret",
        "ssl.key.pem",
        "sasl.oauthbearer.config",
        "jaas",
    ]
    .iter()
    .any(|s| k.contains(s));
    if secret {
        "<redacted>".into()
    } else {
        value.to_string()
    }
}

/// Parses `key=value` (a `--kafka-property`).
pub fn parse_property(text: &str) -> Result<(String, String), PropertyError> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(PropertyError {
            key: text.split('=').next().unwrap_or("").to_string(),
        }),
    }
}

/// A client context that keeps the last error librdkafka reported (so a startup failure can
/// name its cause — an authentication failure, a refused connection) and sends librdkafka's
/// own log lines to `tracing`.
#[derive(Debug, Default, Clone)]
pub struct Reporting {
    last_error: Arc<Mutex<Option<String>>>,
}

impl Reporting {
    /// The last error reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for Reporting {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            _ => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_))
            || matches!(&error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF))
        {
            return;
        }
        tracing::warn!(target: "librdkafka", %error, "{reason}");
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the cause: "all brokers down" follows an authentication or TLS failure and
        // says less.
        let generic = matches!(
            error,
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)
                | KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)
        );
        if !(generic && last.as_deref().is_some_and(is_specific)) {
            *last = Some(reason.to_string());
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Reporting {}

impl rdkafka::producer::ProducerContext for Reporting {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Whether a client error names a cause worth keeping (authentication, TLS).
pub(crate) fn is_specific(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    ["authentication", "ssl", "certificate", "sasl"]
        .iter()
        .any(|w| r.contains(w))
}

/// A client loop on a thread of its own (every rdkafka call there may block), run until its
/// stop flag is set.
pub struct Background {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Background {
    /// Starts `run` on a thread named `name`; `run` gets the stop flag to watch.
    pub fn spawn(
        name: &str,
        run: impl FnOnce(Arc<std::sync::atomic::AtomicBool>) + Send + 'static,
    ) -> Result<Background, KafkaSetupError> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(flag))
            .map_err(|e| KafkaSetupError::Config(format!("cannot start thread {name}: {e}")))?;
        Ok(Background {
            thread: Some(thread),
            stop,
        })
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Sets the stop flag and waits (off the async runtime) for the loop to end.
    pub async fn shutdown(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Asks the cluster for `topic`'s partition count (`None`: no such topic), naming the cause
/// when the cluster cannot be reached (wrong address, TLS or SASL failure).
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    topic: &str,
    last_error: impl Fn() -> Option<String>,
) -> Result<Option<i32>, KafkaSetupError> {
    // Right after a CreateTopics, metadata can briefly show nothing: ask a few times.
    let mut last = None;
    for attempt in 0..5 {
        match client.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(md) => {
                let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
                    return Ok(None);
                };
                match t.error() {
                    None if !t.partitions().is_empty() => {
                        return Ok(Some(t.partitions().len() as i32))
                    }
                    None => {}
                    Some(e)
                        if RDKafkaErrorCode::from(e)
                            == RDKafkaErrorCode::UnknownTopicOrPartition =>
                    {
                        // Asked twice: it really does not exist.
                        if attempt >= 1 {
                            return Ok(None);
                        }
                        last = Some("unknown topic".into());
                    }
                    Some(e) => last = Some(format!("{:?}", RDKafkaErrorCode::from(e))),
                }
            }
            Err(e) => {
                let cause = last_error().unwrap_or_else(|| e.to_string());
                if matches!(e, KafkaError::MetadataFetch(_)) && attempt < 1 && !is_specific(&cause)
                {
                    last = Some(cause);
                    continue;
                }
                return Err(KafkaSetupError::Unreachable {
                    brokers: settings.brokers.clone(),
                    cause,
                });
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(KafkaSetupError::Unreachable {
        brokers: settings.brokers.clone(),
        cause: last.unwrap_or_else(|| format!("no metadata for topic {topic}")),
    })
}

/// Creates `topic` if it does not exist (`compact`: a compacted state topic; `extra`: more
/// topic configs). An existing topic is left as it is.
pub async fn create_topic(
    settings: &KafkaSettings,
    topic: &str,
    partitions: i32,
    compact: bool,
    extra: &[(&str, &str)],
) -> Result<(), KafkaSetupError> {
    let reporting = Reporting::default();
    let admin: AdminClient<Reporting> = settings
        .client_config(&[])
        .create_with_context(reporting.clone())?;
    let mut new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(settings.replication),
    );
    if compact {
        new = new
            .set("cleanup.policy", "compact")
            .set("min.cleanable.dirty.ratio", "0.1")
            .set("segment.ms", "600000")
            .set("max.message.bytes", "16777216");
    }
    for (k, v) in extra {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        admin
            .create_topics(&[new], &opts)
            .await
            .map_err(|e| KafkaSetupError::Unreachable {
                brokers: settings.brokers.clone(),
                cause: reporting.last_error().unwrap_or_else(|| e.to_string()),
            })?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, compact, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(KafkaSetupError::Config(format!(
                    "cannot create topic {t}: {code} (create it yourself with {partitions} partitions{})",
                    if compact { ", cleanup.policy=compact" } else { "" }
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_shown() {
        assert_eq!(redacted("sasl.password", "hunter2"), "<redacted>");
        assert_eq!(redacted("ssl.key.password", "k"), "<redacted>");
        assert_eq!(
            redacted("SASL.OAUTHBEARER.CLIENT.SECRET", "k"),
            "<redacted>"
        );
        assert_eq!(redacted("sasl.username", "alice"), "alice");
        assert_eq!(redacted("security.protocol", "SASL_SSL"), "SASL_SSL");
    }

    #[test]
    fn properties_parse_as_key_value() {
        assert_eq!(
            parse_property("a.b=c=d"),
            Ok(("a.b".to_string(), "c=d".to_string()))
        );
        assert!(parse_property("novalue").is_err());
        assert!(parse_property("=x").is_err());
    }
}
