//! The HTTP API: shared state, the route table and the router built from it.

pub mod admin;
pub mod alert_endpoints;
pub mod attempt_result;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod deliveries;
pub mod errors;
pub mod events;
pub mod extract;
pub mod headers;
pub mod health;
pub mod key_cache;
pub mod key_usage;
pub mod keys;
pub mod pull;
pub mod rate_limit;
pub mod recover;
pub mod replay;
pub mod request_metrics;
pub mod serve;
pub mod webhooks;
pub mod wire;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{MethodFilter, MethodRouter, on};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::delivery::replay::Replayer;
use crate::delivery::{Publisher, Puller};
use crate::domain::UrlPolicy;
use crate::store::Store;
use auth::AdminToken;
use metrics_exporter_prometheus::PrometheusHandle;
use rate_limit::RateLimiter;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<ApiSettings>,
    /// `None` when rate limiting is turned off.
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// Failed authentications per client address; `None` when that limit is turned off.
    pub auth_failures: Option<Arc<auth::FailureLimiter>>,
    pub clock: Clock,
    /// Where accepted events and manual retries go into the delivery queue.
    pub publisher: Publisher,
    /// Sends a delivery once to another URL.
    pub replayer: Replayer,
    /// Leases pull webhooks' deliveries to pollers and records their acknowledgements.
    pub puller: Arc<Puller>,
    pub metrics: PrometheusHandle,
    pub key_usage: Arc<key_usage::KeyUsage>,
    pub key_cache: Arc<key_cache::KeyCache>,
}

/// The request-path knobs of the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub url_policy: UrlPolicy,
    pub max_webhooks_per_project: u32,
    pub max_alert_endpoints_per_project: u32,
    pub max_event_bytes: usize,
    /// A webhook's most attempts in flight when it sets none.
    pub endpoint_concurrency: usize,
    /// How long finished deliveries are kept; 0 keeps them.
    pub retention_days: u32,
    /// The deadline of one delivery attempt.
    pub attempt_timeout: std::time::Duration,
    /// Browser origins allowed to call the API; empty sends no CORS headers.
    pub cors_origins: Vec<HeaderValue>,
}

/// One documented operation: the route table is the single source for the router and for the
/// test that keeps openapi/openapi.yaml equal to it.
struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    Route {
        method,
        path,
        handler: on(filter, handler),
    }
}

const WEBHOOKS: &str = "/api/v2/projects/{projectId}/webhooks";
const WEBHOOK: &str = "/api/v2/projects/{projectId}/webhooks/{webhookId}";
const ALERT_ENDPOINTS: &str = "/api/v2/projects/{projectId}/alert-endpoints";
const ALERT_ENDPOINT: &str = "/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}";

fn api_routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/api/v2/me", keys::get_current_key),
        route(Method::POST, WEBHOOKS, webhooks::create_webhook),
        route(Method::GET, WEBHOOKS, webhooks::list_webhooks),
        route(Method::GET, WEBHOOK, webhooks::get_webhook),
        route(Method::PATCH, WEBHOOK, webhooks::update_webhook),
        route(Method::DELETE, WEBHOOK, webhooks::delete_webhook),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/rotate-secret",
            webhooks::rotate_webhook_secret,
        ),
        route(
            Method::GET,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/deliveries",
            deliveries::list_webhook_deliveries,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/test",
            deliveries::send_test_event,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/recover",
            recover::recover_webhook_deliveries,
        ),
        route(
            Method::GET,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/poll",
            pull::poll_webhook,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/webhooks/{webhookId}/poll/ack",
            pull::ack_webhook_deliveries,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/deliveries/{deliveryId}/replay",
            replay::replay_delivery,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/deliveries/recover",
            recover::recover_project_deliveries,
        ),
        route(
            Method::POST,
            ALERT_ENDPOINTS,
            alert_endpoints::create_alert_endpoint,
        ),
        route(
            Method::GET,
            ALERT_ENDPOINTS,
            alert_endpoints::list_alert_endpoints,
        ),
        route(
            Method::GET,
            ALERT_ENDPOINT,
            alert_endpoints::get_alert_endpoint,
        ),
        route(
            Method::DELETE,
            ALERT_ENDPOINT,
            alert_endpoints::delete_alert_endpoint,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/rotate-secret",
            alert_endpoints::rotate_alert_endpoint_secret,
        ),
        route(
            Method::GET,
            "/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/deliveries",
            alert_endpoints::list_alert_endpoint_deliveries,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/alert-endpoints/{alertEndpointId}/test",
            alert_endpoints::send_alert_endpoint_test,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/events",
            events::create_event,
        ),
        route(
            Method::GET,
            "/api/v2/projects/{projectId}/audit-log",
            audit::list_audit_log,
        ),
        route(
            Method::GET,
            "/api/v2/projects/{projectId}/deliveries/{deliveryId}",
            deliveries::get_delivery,
        ),
        route(
            Method::POST,
            "/api/v2/projects/{projectId}/deliveries/{deliveryId}/retry",
            deliveries::retry_delivery,
        ),
    ]
}

fn operational_routes() -> Vec<Route> {
    vec![
        route(Method::GET, "/healthz", health::get_health),
        route(Method::GET, "/readyz", health::get_readiness),
        route(Method::GET, "/openapi.yaml", health::get_open_api),
        route(Method::GET, "/metrics", health::get_metrics),
        route(Method::GET, "/dashboard", dashboard::get_dashboard),
        route(
            Method::GET,
            "/dashboard/{asset}",
            dashboard::get_dashboard_asset,
        ),
    ]
}

fn admin_routes() -> Vec<Route> {
    vec![
        route(Method::POST, "/admin/v1/accounts", admin::create_account),
        route(Method::POST, "/admin/v1/projects", admin::create_project),
        route(
            Method::POST,
            "/admin/v1/projects/{projectId}/keys",
            admin::create_api_key,
        ),
        route(
            Method::DELETE,
            "/admin/v1/keys/{keyId}",
            admin::revoke_api_key,
        ),
    ]
}

/// Every (method, path) the router serves when the admin API is enabled.
pub fn route_inventory() -> Vec<(Method, &'static str)> {
    [api_routes(), operational_routes(), admin_routes()]
        .into_iter()
        .flatten()
        .map(|r| (r.method, r.path))
        .collect()
}

fn build(routes: Vec<Route>) -> Router<AppState> {
    routes
        .into_iter()
        .fold(Router::new(), |router, r| router.route(r.path, r.handler))
}

/// Lets the named browser origins call the API: preflights are answered before routing (and
/// so before authentication), and answers expose the headers a client reads.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-hookrelay-channel"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("x-ratelimit-limit"),
                HeaderName::from_static("x-ratelimit-remaining"),
                HeaderName::from_static("x-ratelimit-reset"),
                header::RETRY_AFTER,
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The whole service; the admin API exists only when an admin token is configured.
pub fn router(state: AppState, admin_token: Option<AdminToken>) -> Router {
    let admin_guard = admin_token.map(|token| auth::AdminGuard {
        token,
        failures: state.auth_failures.clone(),
        clock: state.clock.clone(),
    });
    let api =
        build(api_routes()).route_layer(from_fn_with_state(state.clone(), auth::authenticate));
    let mut app = build(operational_routes()).merge(api);
    if let Some(guard) = admin_guard {
        let admin =
            build(admin_routes()).route_layer(from_fn_with_state(guard, auth::require_admin));
        app = app.merge(admin);
    }
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let span = tracing::info_span!(
                "request",
                otel.kind = "server",
                method = %req.method(),
                path = %req.uri().path(),
                request_id,
            );
            crate::telemetry::continue_request_trace(&span, req.headers());
            span
        })
        .on_response(
            |response: &axum::http::Response<_>,
             latency: std::time::Duration,
             _: &tracing::Span| {
                tracing::info!(
                    status = response.status().as_u16(),
                    latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                    "request finished"
                );
            },
        );
    let mut app = app
        .fallback(errors::route_not_found)
        .method_not_allowed_fallback(errors::method_not_allowed);
    if let Some(cors) = cors(&state.settings.cors_origins) {
        app = app.layer(cors);
    }
    app.layer(from_fn(request_metrics::track))
        .layer(from_fn(headers::protect_api_answers))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(trace)
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(from_fn(headers::keep_usable_request_id))
        .with_state(state)
}
