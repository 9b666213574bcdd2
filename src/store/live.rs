//! The stores a running worker holds — one per MLflow workspace in poll mode, one per owned
//! Kafka partition in Kafka mode (they come and go with rebalances) — so its listener can
//! answer `status` and `retry` and its probe can export job gauges without the store's
//! exclusive lock changing hands.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Store;

/// Where a live store belongs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreScope {
    /// The MLflow workspace.
    pub workspace: String,
    /// The Kafka partition (Kafka mode), `None` for the poller's store.
    pub partition: Option<i32>,
}

/// A live store and what wakes its pipeline after a `retry`.
#[derive(Clone)]
pub struct LiveStore {
    /// The store.
    pub store: Store,
    /// Notified after jobs are re-queued (the pipeline otherwise finds them on its next pass).
    pub wake: Option<Arc<tokio::sync::Notify>>,
    generation: u64,
}

/// The registry (cheap to clone; clones share it).
#[derive(Clone, Default)]
pub struct LiveStores {
    stores: Arc<Mutex<BTreeMap<StoreScope, LiveStore>>>,
    next: Arc<AtomicU64>,
}

/// Returned by [`LiveStores::insert`]: removes exactly that entry (not a later one that took
/// the same scope after a rebalance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration(u64);

impl LiveStores {
    /// Registers `store` under `scope` (replacing what was there).
    pub fn insert(
        &self,
        scope: StoreScope,
        store: Store,
        wake: Option<Arc<tokio::sync::Notify>>,
    ) -> Registration {
        let generation = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            scope,
            LiveStore {
                store,
                wake,
                generation,
            },
        );
        Registration(generation)
    }

    /// Removes `scope` if it is still the entry `registration` made.
    pub fn remove(&self, scope: &StoreScope, registration: Registration) {
        let mut stores = self.lock();
        if stores
            .get(scope)
            .is_some_and(|s| s.generation == registration.0)
        {
            stores.remove(scope);
        }
    }

    /// Every live store, by workspace then partition.
    pub fn snapshot(&self) -> Vec<(StoreScope, LiveStore)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether no store is live.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StoreScope, LiveStore>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_registration_does_not_remove_its_successor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = LiveStores::default();
        let scope = StoreScope {
            workspace: "default".into(),
            partition: Some(3),
        };
        let first = live.insert(scope.clone(), store.clone(), None);
        let second = live.insert(scope.clone(), store.clone(), None);
        live.remove(&scope, first);
        assert_eq!(live.snapshot().len(), 1, "the newer entry stays");
        live.remove(&scope, second);
        assert!(live.is_empty());
    }
}
