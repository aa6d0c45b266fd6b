//! Storage housekeeping: removes finished deliveries, their attempts and old events after the
//! retention period.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::clock::Clock;

const EVERY: Duration = Duration::from_secs(3600);

/// Purges once at start, then hourly, until `shutdown`.
pub async fn run(store: Arc<dyn Store>, days: u32, clock: Clock, shutdown: CancellationToken) {
    let keep = TimeDelta::days(i64::from(days));
    loop {
        match store.purge_finished(clock.now() - keep).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, days, "retention removed old delivery records"),
            Err(error) => tracing::warn!(%error, "retention could not purge old records"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
