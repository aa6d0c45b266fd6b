//! The HTTP client for attempts: shared keep-alive pools, no proxies, no redirects, a deadline
//! over the whole exchange, and connections only to addresses the network policy allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use super::failure::{LookupFailed, RefusedAddress, describe};
use crate::domain::{CustomHeaders, forbidden_reason, mask};

/// At most this much of a response body is read; the rest is dropped with the connection.
const MAX_READ_BYTES: usize = 64 * 1024;
/// This much of it is kept for the delivery log.
pub(crate) const KEPT_BYTES: usize = 1024;

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub status: Option<u16>,
    pub body_excerpt: Option<String>,
    pub error: Option<String>,
    /// The receiver's `Retry-After`, as it sent it (at most 64 characters).
    pub retry_after: Option<String>,
    /// No complete answer came within the timeout.
    pub timed_out: bool,
    /// For the log: the whole chain behind a coarse `error`.
    pub detail: Option<String>,
}

impl SendOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    pub(crate) fn failed(error: impl Into<String>) -> Self {
        Self {
            status: None,
            body_excerpt: None,
            error: Some(error.into()),
            retry_after: None,
            timed_out: false,
            detail: None,
        }
    }
}

/// Resolves names and refuses any that reach a non-public address. reqwest connects to what
/// this returns, so the address checked is the address used: a rebinding DNS gains nothing.
struct PolicyResolver {
    allow_private: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let looked_up = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(Iterator::collect::<Vec<SocketAddr>>);
            let addresses = match looked_up {
                Ok(addresses) => addresses,
                Err(source) => return Err(Box::new(LookupFailed { host, source }) as _),
            };
            if !allow_private {
                for address in &addresses {
                    if let Some(reason) = forbidden_reason(address.ip()) {
                        return Err(Box::new(RefusedAddress {
                            host,
                            ip: address.ip(),
                            reason,
                        })
                            as Box<dyn std::error::Error + Send + Sync>);
                    }
                }
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct DeliveryClient {
    http: reqwest::Client,
    timeout: Duration,
    allow_private: bool,
}

impl DeliveryClient {
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver { allow_private }))
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("the delivery client's settings are valid");
        Self {
            http,
            timeout,
            allow_private,
        }
    }

    /// POSTs `body` with `headers`; never fails, every problem becomes the outcome's error.
    pub async fn send(&self, url: &str, headers: HeaderMap, body: Vec<u8>) -> SendOutcome {
        if let Err(refusal) = self.check_literal_address(url) {
            return SendOutcome::failed(refusal);
        }
        let exchange = async {
            let response = self
                .http
                .post(url)
                .headers(headers)
                .body(body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect());
            let excerpt = read_excerpt(response).await;
            Ok::<_, reqwest::Error>((status, excerpt, retry_after))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => SendOutcome {
                timed_out: true,
                ..SendOutcome::failed(format!(
                    "timed out after {} ms without a complete response",
                    self.timeout.as_millis()
                ))
            },
            Ok(Err(error)) => {
                let described = describe(&error);
                SendOutcome {
                    timed_out: error.is_timeout(),
                    detail: Some(described.full),
                    ..SendOutcome::failed(described.coarse)
                }
            }
            Ok(Ok((status, excerpt, retry_after))) => SendOutcome {
                status: Some(status),
                body_excerpt: Some(excerpt),
                error: (300..400)
                    .contains(&status)
                    .then(|| format!("answered {status}: redirects are not followed")),
                retry_after,
                timed_out: false,
                detail: None,
            },
        }
    }

    /// The resolver never sees IP literals, so they are checked here.
    fn check_literal_address(&self, url: &str) -> Result<(), String> {
        let parsed = Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        if self.allow_private {
            return Ok(());
        }
        let ip = match parsed.host() {
            Some(Host::Ipv4(ip)) => ip.into(),
            Some(Host::Ipv6(ip)) => ip.into(),
            _ => return Ok(()),
        };
        match forbidden_reason(ip) {
            Some(reason) => Err(format!("refused: {ip} is a {reason} address")),
            None => Ok(()),
        }
    }
}

/// Reads up to `MAX_READ_BYTES` and keeps the first `KEPT_BYTES` as text.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut kept = Vec::with_capacity(KEPT_BYTES);
    let mut read = 0;
    while read < MAX_READ_BYTES {
        let Ok(Some(chunk)) = response.chunk().await else {
            break;
        };
        read += chunk.len();
        let room = KEPT_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The headers of an attempt as the delivery log keeps them: a JSON object, name to value,
/// with the tenant's own headers masked as reads show them.
pub fn headers_json(headers: &HeaderMap, custom: &CustomHeaders) -> String {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let shown = if custom.contains(name.as_str()) {
                mask(&value)
            } else {
                value.into_owned()
            };
            (name.as_str().to_owned(), shown.into())
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Builds a header map from pairs the caller knows to be valid header text.
pub fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(HeaderName::from_static(name), value);
        }
    }
    map
}
