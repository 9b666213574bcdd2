//! Flag groups that several commands share: how to reach MLflow (MLflow's own environment
//! names) and the HTTP settings of the Arweave-side services, with the constructors that turn
//! them into configured clients.

use std::path::{Path, PathBuf};

use clap::Args;

use super::error::CmdError;
use crate::arweave::http::HttpSettings;
use crate::mlflow::{MlflowClient, MlflowConfig};

/// How to reach MLflow (MLflow's own environment names).
#[derive(Debug, Clone, Args)]
pub struct MlflowArgs {
    /// MLflow tracking server.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_URI",
        default_value = "http://127.0.0.1:5000"
    )]
    pub tracking_uri: url::Url,
    /// Bearer token.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_token: Option<String>,
    /// Basic-auth user.
    #[arg(long, env = "MLFLOW_TRACKING_USERNAME", hide = true)]
    pub tracking_username: Option<String>,
    /// Basic-auth password.
    #[arg(
        long,
        env = "MLFLOW_TRACKING_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub tracking_password: Option<String>,
    /// S3-compatible endpoint for `s3://` artifact roots (MinIO, Ceph, …), as MLflow reads it.
    /// Credentials come from the usual `AWS_*` variables.
    #[arg(long, env = "MLFLOW_S3_ENDPOINT_URL")]
    pub s3_endpoint_url: Option<String>,
    /// Artifact files hashed at once per model directory.
    #[arg(long, env = "ARIO_MLFLOW_ARTIFACT_CONCURRENCY", default_value_t = 4)]
    pub artifact_concurrency: usize,
    /// CA bundle (PEM) to trust for MLflow, besides the system store (MLflow's own variable).
    #[arg(long, env = "MLFLOW_TRACKING_SERVER_CERT_PATH")]
    pub tracking_server_cert_path: Option<PathBuf>,
    /// Client certificate with its private key (PEM) for MLflow servers that require mutual
    /// TLS (MLflow's own variable).
    #[arg(long, env = "MLFLOW_TRACKING_CLIENT_CERT_PATH")]
    pub tracking_client_cert_path: Option<PathBuf>,
    /// Skip TLS verification towards MLflow.
    #[arg(long, env = "MLFLOW_TRACKING_INSECURE_TLS", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false", hide = true)]
    pub tracking_insecure_tls: bool,
    /// MLflow workspace (a server run with `--enable-workspaces`): repeatable or
    /// comma-separated for `run` and `backfill`, which anchor each; one for every other command.
    /// Unset: `MLFLOW_WORKSPACE`, then `run`/`backfill` anchor every workspace the credentials
    /// can see and the other commands use the server's default.
    #[arg(
        long = "workspace",
        env = "ARIO_MLFLOW_WORKSPACES",
        value_delimiter = ','
    )]
    pub workspaces: Vec<String>,
}

/// The workspaces named: `--workspace` / `ARIO_MLFLOW_WORKSPACES`, else MLflow's own
/// `MLFLOW_WORKSPACE`; empty when none is.
pub(crate) fn named_workspaces(args: &MlflowArgs) -> Vec<String> {
    let mut named: Vec<String> = args
        .workspaces
        .iter()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty())
        .collect();
    if named.is_empty() {
        named.extend(
            std::env::var("MLFLOW_WORKSPACE")
                .ok()
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty()),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    named.retain(|w| seen.insert(w.clone()));
    named
}

/// The workspaces `run`, `backfill` and `feed` work in, in order: the ones named (`--workspace`,
/// `ARIO_MLFLOW_WORKSPACES`, `MLFLOW_WORKSPACE`), else every workspace the credentials can see;
/// empty on a server without workspaces (no header is ever sent there). The default workspace
/// comes first: it keeps the state directory and the webhook route.
pub(crate) async fn anchored_workspaces(
    args: &MlflowArgs,
    mlflow: &crate::mlflow::MlflowClient,
) -> Result<Vec<String>, CmdError> {
    let named = named_workspaces(args);
    let mut list = if named.is_empty() {
        match mlflow.list_workspaces().await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Vec::new()),
            // Credentials that may not list workspaces: the server's default, said loudly.
            Err(crate::mlflow::MlflowError::Http {
                status: status @ (401 | 403),
                ..
            }) => {
                tracing::warn!(
                    status,
                    "these credentials may not list the MLflow workspaces: anchoring the default workspace only (name the others with --workspace)"
                );
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(CmdError::Setup(
                    format!(
                        "cannot list the MLflow workspaces at {}: {e} (name them with --workspace)",
                        mlflow.tracking_uri()
                    )
                    .into(),
                ))
            }
        }
    } else {
        named
    };
    for name in &list {
        check_workspace_name(Some(name))?;
    }
    list.sort_by_key(|w| w != crate::mlflow::DEFAULT_WORKSPACE);
    Ok(list)
}

/// A usage error unless `name` (when given) is a name MLflow gives a workspace.
pub(crate) fn check_workspace_name(name: Option<&str>) -> Result<(), CmdError> {
    match name.filter(|w| !crate::mlflow::is_workspace_name(w)) {
        Some(bad) => Err(CmdError::Usage(format!(
            "{bad:?} is not an MLflow workspace name (2 to 63 lowercase letters, digits and inner hyphens)"
        ))),
        None => Ok(()),
    }
}

/// Where a workspace's store lives: the state directory itself for the default workspace (a
/// store written before workspaces is the default workspace's), `<state-dir>/workspaces/NAME`
/// for the others.
pub(crate) fn workspace_state_dir(
    state_dir: &std::path::Path,
    workspace: Option<&String>,
) -> PathBuf {
    match workspace {
        Some(w) if w != crate::mlflow::DEFAULT_WORKSPACE => state_dir.join("workspaces").join(w),
        _ => state_dir.to_path_buf(),
    }
}

/// MLflow configuration from the shared flags (reads the certificate files they name), in the
/// one workspace named (none: no header). Several named: a usage error — only `run` and
/// `backfill` take several ([`service_mlflow_config`]).
pub(crate) fn mlflow_config(args: &MlflowArgs) -> Result<MlflowConfig, CmdError> {
    let named = named_workspaces(args);
    if named.len() > 1 {
        return Err(CmdError::Usage(format!(
            "this command works in one MLflow workspace, not {} ({}): give one --workspace (run and backfill take several)",
            named.len(),
            named.join(", ")
        )));
    }
    let mut config = service_mlflow_config(args)?;
    // The default workspace is asked without the header (a server without workspaces refuses it).
    config.workspace = named
        .into_iter()
        .next()
        .filter(|w| w != crate::mlflow::DEFAULT_WORKSPACE);
    Ok(config)
}

/// MLflow configuration without a workspace (`run`/`backfill` make one client per workspace).
pub(crate) fn service_mlflow_config(args: &MlflowArgs) -> Result<MlflowConfig, CmdError> {
    let mut config = MlflowConfig::new(args.tracking_uri.clone());
    config.token = args.tracking_token.clone().filter(|t| !t.is_empty());
    config.username = args.tracking_username.clone().filter(|u| !u.is_empty());
    config.password = args.tracking_password.clone();
    config.insecure_tls = args.tracking_insecure_tls;
    config.artifact_stores.s3_endpoint_url = args.s3_endpoint_url.clone().filter(|u| !u.is_empty());
    config.artifact_stores.concurrency = args.artifact_concurrency.clamp(1, 64);
    let named = |p: &Option<PathBuf>| {
        p.as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| read(p))
            .transpose()
    };
    config.server_ca_pem = named(&args.tracking_server_cert_path)?;
    config.client_identity_pem = named(&args.tracking_client_cert_path)?;
    Ok(config)
}

/// MLflow client from the shared flags.
pub(crate) fn mlflow_client(args: &MlflowArgs) -> Result<MlflowClient, CmdError> {
    Ok(MlflowClient::new(mlflow_config(args)?)?)
}

/// HTTP settings shared by uploads and reads.
#[derive(Debug, Clone, Args)]
pub struct ArweaveHttpArgs {
    /// Extra trusted CA certificate (PEM), e.g. the one `devnet --tls --cert-out` writes. The
    /// system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set) and the web roots are trusted
    /// too.
    #[arg(long, env = "ARIO_MLFLOW_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30, env = "ARIO_MLFLOW_HTTP_TIMEOUT")]
    pub timeout_secs: u64,
}

/// HTTP settings from the shared flags; reads the CA file if one is named.
pub(crate) fn http_settings(args: &ArweaveHttpArgs) -> Result<HttpSettings, CmdError> {
    let extra_ca_pem = match &args.ca_cert {
        Some(path) => Some(read(path)?),
        None => None,
    };
    Ok(HttpSettings {
        request_timeout: std::time::Duration::from_secs(args.timeout_secs.max(1)),
        extra_ca_pem,
        ..HttpSettings::default()
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CmdError> {
    std::fs::read(path).map_err(|e| CmdError::read(path, e))
}

/// How to reach Kafka and which topics to use (`feed`, `run --source kafka`).
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap servers, `host:port[,host:port…]`.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Any librdkafka property, `key=value` (repeatable; wins over our defaults), e.g.
    /// `security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512`, `ssl.ca.location=ca.pem`.
    #[arg(long = "kafka-property", value_parser = crate::feed::kafka::parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// SASL user (sets `sasl.username`).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (sets `sasl.password`; never logged). Prefer the environment variable.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// The change-event topic.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_TOPIC", default_value = crate::feed::kafka::DEFAULT_TOPIC)]
    pub kafka_topic: String,
    /// The consumer group (`run --source kafka`).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_GROUP", default_value = crate::feed::kafka::DEFAULT_GROUP)]
    pub kafka_group: String,
    /// Dead-letter topic (default: `<topic>.dlq`).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_DLQ_TOPIC")]
    pub kafka_dlq_topic: Option<String>,
    /// Compacted state topic, co-partitioned with the event topic (default: `<topic>.state.<group>`).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_STATE_TOPIC")]
    pub kafka_state_topic: Option<String>,
    /// Largest message value taken; bigger ones are dead letters.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_MAX_MESSAGE_BYTES", default_value_t = crate::feed::cloudevents::DEFAULT_MAX_MESSAGE_BYTES)]
    pub kafka_max_message_bytes: usize,
    /// Partitions of the event topic when `feed` creates it.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// Replication factor of topics this process creates (-1: the broker's default).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_REPLICATION", default_value_t = -1, allow_negative_numbers = true)]
    pub kafka_replication: i32,
    /// A stable name for this instance: its transactional id and its static group membership
    /// (`group.instance.id`), so a restarted instance takes its partitions back at once and
    /// fences its previous incarnation [default: random per start, dynamic membership].
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_INSTANCE_ID")]
    pub kafka_instance_id: Option<String>,
    /// What the messages of --kafka-topic are: `cloudevents` (the change events `feed`
    /// produces) or `debezium` (Debezium change records of MLflow's tables: give every CDC topic,
    /// comma-separated, e.g. `mlflow.public.runs,mlflow.public.model_versions,…`).
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_FORMAT", value_enum, default_value_t = crate::feed::kafka::KafkaFormat::Cloudevents)]
    pub kafka_format: crate::feed::kafka::KafkaFormat,
    /// With `--kafka-format debezium`: the keyed event topic the CDC stage produces to (created
    /// when missing) and the consumer group anchors from.
    #[arg(long, env = "ARIO_MLFLOW_KAFKA_EVENTS_TOPIC", default_value = crate::feed::kafka::DEFAULT_TOPIC)]
    pub kafka_events_topic: String,
}

/// The CDC stage's configuration: `settings.topic` holds the Debezium topics (comma-separated),
/// `events_topic` is where the change events go.
pub(crate) fn rekey_config(
    settings: &crate::feed::kafka::KafkaSettings,
    events_topic: &str,
    mode: crate::feed::cloudevents::Mode,
    source: String,
) -> Result<crate::feed::kafka::rekey::RekeyConfig, CmdError> {
    let cdc_topics: Vec<String> = settings
        .topic
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if cdc_topics.is_empty() || settings.topic == crate::feed::kafka::DEFAULT_TOPIC {
        return Err(CmdError::Usage(format!(
            "--kafka-format debezium reads Debezium's topics: give them with --kafka-topic (comma-separated, e.g. mlflow.public.runs,mlflow.public.model_versions,mlflow.public.registered_model_aliases,mlflow.public.trace_info); the change events go to {events_topic}"
        )));
    }
    if let Some(t) = cdc_topics.iter().find(|t| *t == events_topic) {
        return Err(CmdError::Usage(format!(
            "{t} is both a Debezium topic (--kafka-topic) and the event topic: give the event topic its own name"
        )));
    }
    let mut kafka = settings.clone();
    kafka.topic = events_topic.to_string();
    Ok(crate::feed::kafka::rekey::RekeyConfig {
        kafka,
        cdc_topics,
        mode,
        source,
        workspaces: Vec::new(),
    })
}

/// Kafka settings from the shared flags; brokers are required.
pub(crate) fn kafka_settings(
    args: &KafkaArgs,
) -> Result<crate::feed::kafka::KafkaSettings, CmdError> {
    let brokers = args
        .kafka_brokers
        .clone()
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| {
            CmdError::usage("Kafka needs bootstrap servers: --kafka-brokers host:port (or ARIO_MLFLOW_KAFKA_BROKERS)")
        })?;
    let mut properties = Vec::new();
    if let Some(u) = &args.kafka_sasl_username {
        properties.push(("sasl.username".to_string(), u.clone()));
    }
    if let Some(p) = &args.kafka_sasl_password {
        properties.push(("sasl.password".to_string(), p.clone()));
    }
    properties.extend(args.kafka_properties.iter().cloned());
    if args.kafka_partitions < 1 {
        return Err(CmdError::Usage(format!(
            "--kafka-partitions {} must be at least 1",
            args.kafka_partitions
        )));
    }
    Ok(crate::feed::kafka::KafkaSettings {
        brokers,
        properties,
        topic: args.kafka_topic.clone(),
        group: args.kafka_group.clone(),
        dlq_topic: args.kafka_dlq_topic.clone(),
        state_topic: args.kafka_state_topic.clone(),
        max_message_bytes: args.kafka_max_message_bytes,
        partitions: args.kafka_partitions,
        replication: args.kafka_replication,
        instance_id: args.kafka_instance_id.clone(),
        workspace: None,
    })
}
