//! The change feed: sources that detect MLflow lifecycle events and hand them over as
//! [`ChangeEvent`](crate::event::ChangeEvent)s. A source only detects — it never builds a
//! payload, signs or uploads — and it writes what it detects into the store's inbox, where the
//! dedupe key makes a second detection (another source, a restart) a no-op.
//!
//! * [`poller`] — the MLflow REST poller (the default source, and `backfill`).

pub mod poller;
