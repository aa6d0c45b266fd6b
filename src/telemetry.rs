//! Sets up tracing once: text or JSON lines on stderr, filtered by HOOKRELAY_LOG, and, when
//! OTEL_EXPORTER_OTLP_ENDPOINT is set, spans exported over OTLP/HTTP with W3C trace context
//! carried from a publish to the attempts it causes.

mod otlp;

use std::io::IsTerminal;
use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Set once at start: whether spans are exported. When they are not, nothing here runs on the
/// request or delivery path beyond reading this flag.
static EXPORTING: OnceLock<bool> = OnceLock::new();

fn exporting() -> bool {
    EXPORTING.get().copied().unwrap_or(false)
}

/// Keeps the span exporter running; `shutdown` flushes what is still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered; call before the process exits.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The SDK waits for its export thread, whose requests run on this runtime: wait on
            // a blocking thread, so the runtime stays free to run them.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(error)) = flushed {
                eprintln!("could not export the last spans: {error}");
            }
        }
    }
}

/// Installs the subscriber. Within a tokio runtime when traces are exported.
pub fn init(config: &LogConfig) -> Telemetry {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|error| {
        eprintln!(
            "invalid log filter {:?} ({error}); using \"info\"",
            config.filter
        );
        EnvFilter::new("info")
    });
    let provider = config.otlp_endpoint.as_deref().map(|endpoint| {
        let exporter = otlp::OtlpJsonExporter::new(
            endpoint,
            &config.service_name,
            tokio::runtime::Handle::current(),
        );
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .build()
    });
    let _ = EXPORTING.set(provider.is_some());
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("hookrelay")));
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter).with(spans);
    match config.format {
        // The current span's fields once per line, not again in a list of every open span.
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    Telemetry { provider }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` continue the trace a caller's `traceparent` header names, if it sent one.
pub fn continue_request_trace(span: &tracing::Span, headers: &HeaderMap) {
    if exporting() && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
}

/// The W3C `traceparent` of the current span, to be stored with what it causes later.
pub fn current_traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let mut headers = HeaderMap::new();
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(&mut headers));
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Makes `span` a child of the span a stored `traceparent` names.
pub fn continue_stored_trace(span: &tracing::Span, traceparent: &str) {
    if !exporting() {
        return;
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(traceparent) {
        headers.insert("traceparent", value);
        let parent = TraceContextPropagator::new().extract(&Headers(&headers));
        let _ = span.set_parent(parent);
    }
}

/// Adds the current span's `traceparent` to a request about to be sent.
pub fn propagate(headers: &mut HeaderMap) {
    if exporting() {
        let context = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&context, &mut HeadersMut(headers));
    }
}
