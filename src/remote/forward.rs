//! Forwarding one pulled delivery to the developer's own receiver as a push would send it:
//! POST, the body bytes unchanged, the headers (signatures included), no redirects followed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::CliError;
use crate::report::error_chain;

/// The most of a local answer kept for the delivery log, as a push keeps it.
const EXCERPT_BYTES: usize = 1024;

/// Sends deliveries to the local receiver, as a push would: POST, the body bytes, the headers.
pub(super) struct Forwarder {
    url: String,
    http: reqwest::Client,
}

/// What the local receiver answered.
pub(super) struct LocalAnswer {
    pub status: u16,
    pub excerpt: String,
    pub retry_after: Option<String>,
}

pub(super) struct Forwarded {
    pub duration_ms: u64,
    /// The answer, or why there was none.
    pub outcome: Result<LocalAnswer, String>,
}

impl Forwarder {
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, CliError> {
        let parsed = url::Url::parse(url).map_err(|e| {
            format!(
                "--forward-to {url:?} is not a URL ({e}); give e.g. http://localhost:3000/webhooks"
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("--forward-to must be an http or https URL, got {url:?}").into());
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            // A push does not follow redirects either.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {}", error_chain(&e)))?;
        Ok(Self {
            url: url.to_owned(),
            http,
        })
    }

    pub(super) async fn forward(&self, delivery: &Value) -> Forwarded {
        let started = Instant::now();
        let mut request = self.http.post(&self.url);
        if let Some(headers) = delivery["headers"].as_object() {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
        }
        let body = delivery["body"].as_str().unwrap_or_default().to_owned();
        let outcome = match request.body(body).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let excerpt = match response.bytes().await {
                    Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)])
                        .into_owned(),
                    Err(_) => String::new(),
                };
                Ok(LocalAnswer {
                    status,
                    excerpt,
                    retry_after,
                })
            }
            Err(error) => Err(short_error(&error)),
        };
        Forwarded {
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome,
        }
    }
}

/// The innermost cause of a failed forward (e.g. "Connection refused (os error 111)"), which
/// is what a developer needs, without the request-building layers around it.
fn short_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
