//! When each API key was last used, gathered in memory and written in batches, so that
//! authenticating a request never costs a database write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::domain::ApiKeyId;
use crate::store::Store;

#[derive(Default)]
pub struct KeyUsage {
    latest: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
}

impl KeyUsage {
    pub fn record(&self, key: ApiKeyId, at: DateTime<Utc>) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let entry = latest.entry(key).or_insert(at);
        *entry = (*entry).max(at);
    }

    fn take(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.drain().collect()
    }

    async fn flush(&self, store: &dyn Store) {
        let used = self.take();
        if used.is_empty() {
            return;
        }
        if let Err(error) = store.touch_api_keys(&used).await {
            tracing::warn!(%error, keys = used.len(), "cannot record API key use");
        }
    }
}

/// Writes what was gathered every `every`, and once more at shutdown.
pub async fn flush_periodically(
    usage: Arc<KeyUsage>,
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => usage.flush(store.as_ref()).await,
        }
    }
    usage.flush(store.as_ref()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_latest_use_of_each_key() {
        let usage = KeyUsage::default();
        let key = ApiKeyId::generate();
        let early = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let late = DateTime::from_timestamp(1_800_000_060, 0).unwrap();
        usage.record(key, late);
        usage.record(key, early);
        assert_eq!(usage.take(), [(key, late)]);
        assert!(usage.take().is_empty());
    }
}
