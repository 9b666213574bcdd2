//! The change feed: sources that detect MLflow lifecycle events and hand them over as
//! [`ChangeEvent`](crate::event::ChangeEvent)s. A source only detects — it never builds a
//! payload, signs or uploads — and it writes what it detects into the store's inbox, where the
//! dedupe key makes a second detection (another source, a restart) a no-op.
//!
//! * [`poller`] — the MLflow REST poller (the default source, and `backfill`).
//! * [`kafka`] — the change feed as a Kafka topic: `feed --to-kafka` produces it, `run
//!   --source kafka` consumes it as a consumer group, with the partition state in a state topic.
//! * [`webhook`] — MLflow 3.x registry webhooks (signed deliveries), a latency hint over the poller.
//! * [`cloudevents`] — the change-event message (CloudEvents 1.0) both sides share.
//! * [`debezium`] — Debezium change events of MLflow's own tables (`--kafka-format debezium`),
//!   re-keyed onto the event topic by [`kafka::rekey`].

pub mod cloudevents;
pub mod debezium;
pub mod kafka;
pub mod poller;
pub mod webhook;
