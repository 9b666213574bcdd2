//! Retention: Done jobs older than `--retain-done` keep only their summary
//! ([`crate::store::JobSummary`]); a journaled store tombstones them on the state topic.

use std::time::{Duration, Instant};

use crate::store::Store;

/// How often retention compacts the store: half the retention, between a minute and an hour.
pub fn compaction_every(retain: Duration) -> Duration {
    (retain / 2).clamp(Duration::from_secs(60), Duration::from_secs(3600))
}

/// Compacts the Done jobs of `store` older than `retain`, on the blocking pool (sled I/O).
pub async fn compact_store(store: &Store, retain: Duration) {
    let store = store.clone();
    let before = crate::store::now_ms().saturating_sub(retain.as_millis() as u64);
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || store.compact(before)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            jobs = n,
            took_ms = started.elapsed().as_millis() as u64,
            "store: done jobs past retention compacted"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "store compaction failed; retrying in an hour"),
        Err(e) => tracing::warn!(error = %e, "store compaction did not finish"),
    }
}

/// Compaction on a schedule: [`Retention::run_if_due`] runs a pass when one is due.
#[derive(Debug)]
pub struct Retention {
    retain: Duration,
    last: Option<Instant>,
}

impl Retention {
    /// Compacts what is older than `retain`; the first pass is due at once.
    pub fn new(retain: Duration) -> Retention {
        Retention { retain, last: None }
    }

    /// Runs a compaction pass of `store` when one is due.
    pub async fn run_if_due(&mut self, store: &Store) {
        if self
            .last
            .is_none_or(|t| t.elapsed() > compaction_every(self.retain))
        {
            self.last = Some(Instant::now());
            compact_store(store, self.retain).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_runs_every_half_retention_within_a_minute_and_an_hour() {
        assert_eq!(
            compaction_every(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
        assert_eq!(
            compaction_every(Duration::from_secs(1800)),
            Duration::from_secs(900)
        );
        assert_eq!(
            compaction_every(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(3600)
        );
    }
}
