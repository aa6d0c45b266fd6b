//! hookrelay: a multi-tenant webhook subscription service speaking the DevTune API v2 webhook API.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod instruments;
pub mod process_metrics;
pub mod remote;
pub mod report;
pub mod store;
pub mod telemetry;
pub mod tenancy;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{DeliveryConfig, ServeConfig};
use crate::delivery::client::DeliveryClient;
use crate::delivery::replay::Replayer;
use crate::delivery::{Publisher, Puller, Queue, Worker, WorkerOptions, WorkerSettings};
use crate::domain::UrlPolicy;
use crate::http::auth::AdminToken;
use crate::http::key_usage::{self, KeyUsage};
use crate::http::rate_limit::RateLimiter;
use crate::http::serve::{ConnectionLimits, connection_cap, raise_open_file_limit, serve};
use crate::http::{ApiSettings, AppState};
use crate::store::{Store, StoreError, retention};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("cannot open the database")]
    Database(#[from] StoreError),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How stale a key's `last_used_at` may be: uses are written in batches this far apart.
const KEY_USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Histogram samples wait in the recorder until a scrape or this upkeep folds them in, so
/// without scrapes they would pile up.
async fn metrics_upkeep(shutdown: CancellationToken) {
    let handle = instruments::handle();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// The delivery settings as the worker takes them.
fn worker_options(config: &DeliveryConfig) -> WorkerOptions {
    WorkerOptions {
        concurrency: config.concurrency,
        endpoint_concurrency: config.endpoint_concurrency,
        lease_ms: config.lease_ms,
        retry_schedule: config.retry_schedule.clone(),
        retry_max: config.retry_max,
        retry_base_ms: config.retry_base_ms,
        throttle_give_up: config.throttle_give_up,
        poll_interval_ms: config.poll_interval_ms,
        shutdown_grace_ms: config.shutdown_grace_ms,
        disable_after_hours: config.disable_after_hours,
        disable_min_failures: config.disable_min_failures,
        failing_after: config.failing_after,
    }
}

/// The request-path settings as the API takes them.
fn api_settings(config: &ServeConfig) -> ApiSettings {
    ApiSettings {
        url_policy: UrlPolicy {
            allow_http: config.allow_http,
            allow_private: config.allow_private_targets,
            allow_any_port: config.allow_any_port,
        },
        max_webhooks_per_project: config.max_webhooks_per_project,
        max_alert_endpoints_per_project: config.max_alert_endpoints_per_project,
        max_event_bytes: config.max_event_bytes,
        endpoint_concurrency: config.delivery.endpoint_concurrency,
        retention_days: config.delivery.retention_days,
        attempt_timeout: Duration::from_millis(config.delivery.timeout_ms),
        // Each origin was checked when the configuration was parsed.
        cors_origins: config
            .cors_origins
            .iter()
            .filter_map(|origin| origin.parse().ok())
            .collect(),
    }
}

/// The connection limits, with the open-file limit raised and read; warns when it leaves
/// little room for clients.
fn connection_limits(config: &ServeConfig) -> ConnectionLimits {
    // Outgoing attempts hold a socket each, and the client keeps about as many idle ones.
    let reserved =
        u64::from(config.database.max_connections) + 2 * config.delivery.concurrency as u64;
    let cap = connection_cap(
        config.connections.max_open,
        raise_open_file_limit(),
        reserved,
    );
    if let Some(warning) = &cap.warning {
        tracing::warn!("{warning}");
    }
    ConnectionLimits {
        header_timeout: Duration::from_millis(config.connections.header_timeout_ms),
        body_timeout: Duration::from_millis(config.connections.body_timeout_ms),
        max_connections: cap.max_connections,
        drain: Duration::from_millis(config.delivery.shutdown_grace_ms),
    }
}

/// A migrated store, a bound listener and (unless turned off) the delivery worker.
pub struct App {
    listener: TcpListener,
    router: Router,
    connection_limits: ConnectionLimits,
    store: Arc<dyn Store>,
    queue: Arc<Queue>,
    worker: Option<Worker>,
    /// Cancelled once shutdown begins, so waiting polls answer at once.
    stopping: CancellationToken,
    retention_days: u32,
    clock: Clock,
    key_usage: Arc<KeyUsage>,
}

impl App {
    pub async fn build(config: &ServeConfig) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// As `build`, reading time from `clock` everywhere.
    pub async fn build_with_clock(
        config: &ServeConfig,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        config.delivery.validate().map_err(StartupError::Settings)?;
        let cipher = config.database.cipher().map_err(StartupError::Settings)?;
        if !cipher.encrypts() {
            tracing::warn!(
                "webhook signing secrets are stored in plain text; set HOOKRELAY_ENCRYPTION_KEY to encrypt them"
            );
        }
        let store = store::connect(&config.database.url, &config.database.pool(), cipher).await?;
        store.migrate().await?;
        Self::assemble(config, store, clock).await
    }

    /// The worker, the API and the listener around a migrated store.
    async fn assemble(
        config: &ServeConfig,
        store: Arc<dyn Store>,
        clock: Clock,
    ) -> Result<Self, StartupError> {
        let key_usage = Arc::new(KeyUsage::default());
        let queue = Queue::new(
            store.clone(),
            Duration::from_millis(config.delivery.lease_ms),
            clock.clone(),
        );
        let client = DeliveryClient::new(
            Duration::from_millis(config.delivery.timeout_ms),
            config.allow_private_targets,
        );
        let replayer = Replayer::new(store.clone(), client.clone(), clock.clone());
        let settings: WorkerSettings = worker_options(&config.delivery).into();
        let stopping = CancellationToken::new();
        let puller = Arc::new(Puller::new(
            queue.clone(),
            settings.verdicts(),
            stopping.clone(),
        ));
        let worker = config
            .delivery
            .worker
            .then(|| Worker::new(queue.clone(), client, settings));
        let state = AppState {
            store: store.clone(),
            settings: Arc::new(api_settings(config)),
            rate_limiter: (config.rate_limit_per_minute > 0)
                .then(|| Arc::new(RateLimiter::new(config.rate_limit_per_minute))),
            auth_failures: (config.auth_failures_per_minute > 0)
                .then(|| Arc::new(RateLimiter::new(config.auth_failures_per_minute))),
            clock: clock.clone(),
            publisher: Publisher::new(queue.clone(), worker.as_ref().map(Worker::handover)),
            replayer,
            puller,
            metrics: instruments::handle(),
            key_usage: key_usage.clone(),
            key_cache: Default::default(),
        };
        let admin_token = config
            .admin_token()
            .map_err(StartupError::Settings)?
            .map(AdminToken::new);
        let router = http::router(state, admin_token);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            router,
            connection_limits: connection_limits(config),
            store,
            queue,
            worker,
            stopping,
            retention_days: config.delivery.retention_days,
            clock: clock.clone(),
            key_usage,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// Serves until `shutdown` is cancelled, lets requests and attempts in flight finish, then
    /// closes the pool.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut background = tokio::task::JoinSet::new();
        background.spawn(metrics_upkeep(shutdown.clone()));
        // Workers and pollers alike hear what other instances queue.
        let listener = self.queue.listen(shutdown.clone());
        let (stopping, stop) = (self.stopping.clone(), shutdown.clone());
        background.spawn(async move {
            stop.cancelled().await;
            stopping.cancel();
        });
        background.spawn(key_usage::flush_periodically(
            self.key_usage.clone(),
            self.store.clone(),
            KEY_USAGE_FLUSH_INTERVAL,
            shutdown.clone(),
        ));
        if let Some(worker) = self.worker {
            background.spawn(worker.run(shutdown.clone()));
            if self.retention_days > 0 {
                let store = self.store.clone();
                background.spawn(retention::run(
                    store,
                    self.retention_days,
                    self.clock.clone(),
                    shutdown.clone(),
                ));
            }
        }
        serve(
            self.listener,
            self.router,
            self.connection_limits,
            shutdown.clone(),
        )
        .await;
        while background.join_next().await.is_some() {}
        let _ = listener.await;
        self.store.close().await;
    }
}
