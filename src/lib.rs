//! hookrelay: a multi-tenant webhook subscription service speaking the DevTune API v2 webhook API.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod store;
pub mod telemetry;
pub mod tenancy;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::ServeConfig;
use crate::domain::UrlPolicy;
use crate::http::auth::AdminToken;
use crate::http::rate_limit::RateLimiter;
use crate::http::{ApiSettings, AppState};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database")]
    Database(#[from] StoreError),
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A migrated store and a bound listener, ready to serve.
pub struct App {
    listener: TcpListener,
    router: Router,
    store: Arc<dyn Store>,
}

impl App {
    pub async fn build(config: &ServeConfig) -> Result<Self, StartupError> {
        let store = store::connect(&config.database.url, &config.database.pool()).await?;
        store.migrate().await?;
        let state = AppState {
            store: store.clone(),
            settings: Arc::new(ApiSettings {
                url_policy: UrlPolicy {
                    allow_http: config.allow_http,
                    allow_private: config.allow_private_targets,
                },
                max_webhooks_per_project: config.max_webhooks_per_project,
            }),
            rate_limiter: (config.rate_limit_per_minute > 0)
                .then(|| Arc::new(RateLimiter::new(config.rate_limit_per_minute))),
            clock: Clock,
        };
        let admin_token = config.admin_token.as_deref().map(AdminToken::new);
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
            store,
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

    /// Serves until `shutdown` is cancelled, lets requests in flight finish, then closes the pool.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        self.store.close().await;
        Ok(())
    }
}
