//! Who is calling: API keys for /api/v2 (with scopes and rate limits), the admin token for /admin.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use super::errors::ApiError;
use super::extract::ApiPath;
use super::rate_limit::{RateLimitStatus, RateLimiter};
use crate::domain::{AccountId, ApiKey, ApiKeyId, ProjectId, Scope, Scopes};
use crate::domain::{Actor, AuditEntry, Channel};

/// The authenticated key behind a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: ApiKeyId,
    pub project_id: ProjectId,
    pub account_id: AccountId,
    pub scopes: Scopes,
    /// `dashboard` when the dashboard says so in `X-Hookrelay-Channel`, else `api`.
    pub channel: Channel,
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "missing Authorization header; send Authorization: Bearer dtk_live_…".into(),
        )
    })?;
    let value = value.to_str().map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not readable text".into())
    })?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme".into(),
        )),
    }
}

async fn resolve_principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let key = ApiKey::parse(bearer_token(headers)?).ok_or_else(|| {
        ApiError::Unauthorized("the API key is malformed; keys look like dtk_live_…".into())
    })?;
    let record = state
        .key_cache
        .find(state.store.as_ref(), &key.hash())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the API key is unknown or revoked".into()))?;
    Ok(Principal {
        key_id: record.id,
        project_id: record.project_id,
        account_id: record.account_id,
        scopes: record.scopes,
        channel: match headers.get("x-hookrelay-channel") {
            Some(value) if value == "dashboard" => Channel::Dashboard,
            _ => Channel::Api,
        },
    })
}

/// Failed authentication attempts per client address and minute, beyond which a client gets
/// 429 without a database lookup: guessing keys or tokens costs the guesser, not the service.
pub type FailureLimiter = RateLimiter<IpAddr>;

fn client_address(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_canonical())
}

/// The 429 for a client that failed authentication too often this minute, if it has.
fn refused_for_failures(
    limiter: Option<&FailureLimiter>,
    client: Option<IpAddr>,
    now: u64,
) -> Option<Response> {
    let status = limiter?.exhausted(&client?, now)?;
    Some(
        ApiError::RateLimited {
            retry_after_secs: status.retry_after_secs(now),
        }
        .into_response(),
    )
}

fn count_failure(limiter: Option<&FailureLimiter>, client: Option<IpAddr>, now: u64) {
    if let (Some(limiter), Some(client)) = (limiter, client) {
        limiter.check(client, now);
    }
}

/// Authenticates every /api/v2 request, applies the per-key rate limit and sets its headers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let client = client_address(&req);
    let failures = state.auth_failures.as_deref();
    if let Some(refused) = refused_for_failures(failures, client, state.clock.unix_secs()) {
        return refused;
    }
    let principal = match resolve_principal(&state, req.headers()).await {
        Ok(principal) => principal,
        Err(error) => {
            if matches!(error, ApiError::Unauthorized(_)) {
                count_failure(failures, client, state.clock.unix_secs());
            }
            return error.into_response();
        }
    };
    state.key_usage.record(principal.key_id, state.clock.now());
    let now = state.clock.unix_secs();
    let limit = state
        .rate_limiter
        .as_ref()
        .map(|limiter| limiter.check(principal.key_id, now));
    let mut response = match limit {
        Some(status) if !status.allowed => ApiError::RateLimited {
            retry_after_secs: status.retry_after_secs(now),
        }
        .into_response(),
        _ => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
    };
    if let Some(status) = limit {
        set_rate_limit_headers(response.headers_mut(), status);
    }
    response
}

fn set_rate_limit_headers(headers: &mut HeaderMap, status: RateLimitStatus) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(status.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(status.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(status.reset));
}

/// A scope a handler requires, named by a marker type.
pub trait RequiredScope {
    const SCOPE: Scope;
}

pub struct WebhooksRead;
pub struct WebhooksWrite;
pub struct EventsWrite;

impl RequiredScope for WebhooksRead {
    const SCOPE: Scope = Scope::WebhooksRead;
}

impl RequiredScope for WebhooksWrite {
    const SCOPE: Scope = Scope::WebhooksWrite;
}

impl RequiredScope for EventsWrite {
    const SCOPE: Scope = Scope::EventsWrite;
}

/// A caller allowed to act on the path's project with scope `S`.
pub struct Authorized<S> {
    pub project_id: ProjectId,
    pub account_id: AccountId,
    pub key_id: ApiKeyId,
    pub channel: Channel,
    /// The key may change webhooks: it sees their URLs whole.
    pub writes_webhooks: bool,
    _scope: PhantomData<S>,
}

/// The path's project as sent: a value that is not a UUID is not the key's project either.
#[derive(Deserialize)]
struct ProjectPath {
    #[serde(rename = "projectId")]
    project_id: String,
}

impl<St, S> FromRequestParts<St> for Authorized<S>
where
    St: Send + Sync,
    S: RequiredScope,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal("route is not behind the authentication layer".into())
            })?;
        // A projectId that does not even decode is not the key's project either.
        let path = ApiPath::<ProjectPath>::from_request_parts(parts, state)
            .await
            .map(|ApiPath(path)| path)
            .ok();
        let project = path.and_then(|p| Uuid::parse_str(&p.project_id).ok().map(ProjectId::from));
        if project != Some(principal.project_id) {
            return Err(ApiError::Forbidden(
                "this API key does not belong to that project".into(),
            ));
        }
        if !principal.scopes.contains(S::SCOPE) {
            return Err(ApiError::Forbidden(format!(
                "this API key lacks the {} scope",
                S::SCOPE.as_str()
            )));
        }
        Ok(Self {
            project_id: principal.project_id,
            account_id: principal.account_id,
            key_id: principal.key_id,
            writes_webhooks: principal.scopes.contains(Scope::WebhooksWrite),
            channel: principal.channel,
            _scope: PhantomData,
        })
    }
}

impl<S> Authorized<S> {
    /// An audit entry for a change this caller makes now.
    pub fn audit(
        &self,
        action: &'static str,
        target_id: impl ToString,
        changes: serde_json::Value,
        at: chrono::DateTime<chrono::Utc>,
    ) -> AuditEntry {
        AuditEntry {
            actor: Actor {
                key: Some(self.key_id),
                channel: self.channel,
            },
            action,
            target_id: target_id.to_string(),
            changes,
            at,
        }
    }
}

/// The operator's admin token, compared in constant time.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8; 32]>);

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    fn matches(&self, presented: &str) -> bool {
        // Comparing digests keeps the comparison constant-time whatever the presented length.
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// Guards /admin/v1 with the admin token as a bearer token.
/// What guards the admin API: its token, and the limit on failed attempts.
#[derive(Clone)]
pub struct AdminGuard {
    pub token: AdminToken,
    pub failures: Option<Arc<FailureLimiter>>,
    pub clock: crate::clock::Clock,
}

pub async fn require_admin(State(guard): State<AdminGuard>, req: Request, next: Next) -> Response {
    let client = client_address(&req);
    let failures = guard.failures.as_deref();
    let now = guard.clock.unix_secs();
    if let Some(refused) = refused_for_failures(failures, client, now) {
        return refused;
    }
    let refusal = match bearer_token(req.headers()) {
        Ok(presented) if guard.token.matches(presented) => return next.run(req).await,
        Ok(_) => ApiError::Unauthorized("the admin token is not valid".into()),
        Err(error) => error,
    };
    count_failure(failures, client, now);
    refusal.into_response()
}
