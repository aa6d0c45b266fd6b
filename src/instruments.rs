//! The Prometheus metrics this process exports: one recorder per process, the names and help
//! texts of every metric, and the few helpers that record them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{PoolUsage, QueueDepth};

const ATTEMPTS: &str = "hookrelay_delivery_attempts_total";
const ATTEMPT_SECONDS: &str = "hookrelay_delivery_attempt_duration_seconds";
const IN_FLIGHT: &str = "hookrelay_delivery_attempts_in_flight";
const QUEUE_DUE: &str = "hookrelay_deliveries_due";
const QUEUE_SCHEDULED: &str = "hookrelay_deliveries_scheduled";
const OLDEST_DUE: &str = "hookrelay_oldest_due_delivery_age_seconds";
const THROTTLED: &str = "hookrelay_webhooks_throttled";
const EVENTS: &str = "hookrelay_events_accepted_total";
const HTTP_REQUESTS: &str = "hookrelay_http_requests_total";
const HTTP_SECONDS: &str = "hookrelay_http_request_duration_seconds";
const CONNECTIONS_OPEN: &str = "hookrelay_http_connections_open";
const CONNECTIONS_REFUSED: &str = "hookrelay_http_connections_refused_total";
const POOL_OPEN: &str = "hookrelay_db_pool_connections_open";
const POOL_IDLE: &str = "hookrelay_db_pool_connections_idle";
const POOL_MAX: &str = "hookrelay_db_pool_connections_max";
const BUILD_INFO: &str = "hookrelay_build_info";
const PULL_LEASED: &str = "hookrelay_pull_deliveries_leased_total";
const KEY_LOOKUPS: &str = "hookrelay_api_key_lookups_total";

/// From 0.5 ms (a loopback receiver) to the 10 s default attempt timeout.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process-wide recorder, installed on first use; every app in the process shares it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may have been installed by an embedding program; ours still
            // renders whatever it was given.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            crate::process_metrics::start_time();
            gauge!(
                BUILD_INFO,
                "version" => env!("CARGO_PKG_VERSION"),
                "commit" => env!("HOOKRELAY_COMMIT"),
            )
            .set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        ATTEMPTS,
        "Delivery attempts by mode (push: sent by a worker; pull: acknowledged by a poller) and outcome: succeeded, retrying (failed, another attempt is scheduled), throttled (the receiver asked us to slow down; no retry used) or failed (no attempt left)"
    );
    describe_counter!(
        PULL_LEASED,
        "Deliveries of pull webhooks leased to pollers (a delivery leased again after its lease ran out counts again)"
    );
    describe_counter!(
        KEY_LOOKUPS,
        "API keys presented, by where they were checked: cache (a key read as live in the last second) or database"
    );
    describe_gauge!(
        THROTTLED,
        "Webhooks whose receivers are holding back every attempt now (429, or 503 with Retry-After)"
    );
    describe_histogram!(
        ATTEMPT_SECONDS,
        "Duration of delivery attempts, from the request's start to the end of the response"
    );
    describe_gauge!(IN_FLIGHT, "Delivery attempts under way in this process");
    describe_gauge!(
        QUEUE_DUE,
        "Pending deliveries due now that nobody holds, by mode: push ones wait for a worker, pull ones for their webhook's poller"
    );
    describe_gauge!(
        QUEUE_SCHEDULED,
        "Pending deliveries waiting for a later retry time, by mode"
    );
    describe_gauge!(
        OLDEST_DUE,
        "How long the oldest due push delivery has been waiting for a worker (0 when none is due)"
    );
    describe_counter!(EVENTS, "Events accepted (202) by this process");
    describe_counter!(HTTP_REQUESTS, "HTTP requests by method, route and status");
    describe_histogram!(HTTP_SECONDS, "HTTP request duration by method and route");
    describe_gauge!(CONNECTIONS_OPEN, "Client connections open now");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Client connections closed at once because HOOKRELAY_MAX_CONNECTIONS were open"
    );
    describe_gauge!(POOL_OPEN, "Open database connections");
    describe_gauge!(POOL_IDLE, "Open database connections not in use");
    describe_gauge!(POOL_MAX, "Most database connections the pool opens");
    describe_gauge!(
        BUILD_INFO,
        "Always 1; its labels name the version and git commit of this binary"
    );
}

pub fn attempt_started() {
    gauge!(IN_FLIGHT).increment(1.0);
}

/// `outcome` is `succeeded`, `retrying` or `failed`.
pub fn attempt_finished(outcome: &'static str, took: Duration) {
    gauge!(IN_FLIGHT).decrement(1.0);
    counter!(ATTEMPTS, "mode" => "push", "outcome" => outcome).increment(1);
    histogram!(ATTEMPT_SECONDS).record(took.as_secs_f64());
}

/// A pull webhook's poller acknowledged an attempt; `outcome` as for `attempt_finished`.
pub fn attempt_acknowledged(outcome: &'static str) {
    counter!(ATTEMPTS, "mode" => "pull", "outcome" => outcome).increment(1);
}

pub fn deliveries_pulled(count: usize) {
    counter!(PULL_LEASED).increment(count as u64);
}

pub fn api_key_checked(in_cache: bool) {
    let source = if in_cache { "cache" } else { "database" };
    counter!(KEY_LOOKUPS, "source" => source).increment(1);
}

pub fn events_accepted() {
    counter!(EVENTS).increment(1);
}

pub fn http_request(method: &str, route: &str, status: u16, took: Duration) {
    let (method, route) = (method.to_owned(), route.to_owned());
    counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!(HTTP_SECONDS, "method" => method, "route" => route).record(took.as_secs_f64());
}

pub fn connection_opened() {
    gauge!(CONNECTIONS_OPEN).increment(1.0);
}

pub fn connection_closed() {
    gauge!(CONNECTIONS_OPEN).decrement(1.0);
}

pub fn connection_refused() {
    counter!(CONNECTIONS_REFUSED).increment(1);
}

/// Values read at scrape time, from the database and the pool.
pub fn scraped(queue: Option<QueueDepth>, pool: PoolUsage, now: chrono::DateTime<chrono::Utc>) {
    if let Some(queue) = queue {
        gauge!(QUEUE_DUE, "mode" => "push").set(queue.due as f64);
        gauge!(QUEUE_SCHEDULED, "mode" => "push").set(queue.scheduled as f64);
        gauge!(QUEUE_DUE, "mode" => "pull").set(queue.pull_due as f64);
        gauge!(QUEUE_SCHEDULED, "mode" => "pull").set(queue.pull_scheduled as f64);
        let age = queue.oldest_due_at.map_or(0.0, |at| {
            (now - at).to_std().unwrap_or_default().as_secs_f64()
        });
        gauge!(OLDEST_DUE).set(age);
        gauge!(THROTTLED).set(queue.throttled_webhooks as f64);
    }
    gauge!(POOL_OPEN).set(f64::from(pool.open));
    gauge!(POOL_IDLE).set(f64::from(pool.idle));
    gauge!(POOL_MAX).set(f64::from(pool.max));
}
