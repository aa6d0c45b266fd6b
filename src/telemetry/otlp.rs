//! An OpenTelemetry span exporter speaking OTLP/HTTP with the JSON encoding: each batch the SDK
//! hands over becomes one `POST {endpoint}/v1/traces`. Written against the SDK's exporter trait
//! so the protobuf and gRPC stacks stay out of the build.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Value as Json, json};

/// How long one export may take before the batch is given up on.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct OtlpJsonExporter {
    client: reqwest::Client,
    traces_url: String,
    service_name: String,
    /// The SDK exports from a thread of its own; the request runs on the service's runtime.
    runtime: tokio::runtime::Handle,
}

impl OtlpJsonExporter {
    /// `endpoint` is OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL, to which the traces
    /// path is added as the OTLP specification says.
    pub fn new(endpoint: &str, service_name: &str, runtime: tokio::runtime::Handle) -> Self {
        Self {
            // The collector is the operator's own, often on a private address: none of the
            // delivery client's address rules apply.
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(EXPORT_TIMEOUT)
                .build()
                .unwrap_or_default(),
            traces_url: format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            service_name: service_name.to_owned(),
            runtime,
        }
    }
}

impl SpanExporter for OtlpJsonExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let body = request_body(&self.service_name, &batch).to_string();
        let request = self
            .client
            .post(&self.traces_url)
            .header("content-type", "application/json")
            .body(body);
        let sent = self.runtime.spawn(async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the collector answered {status}"))
            }
        });
        async move {
            match sent.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(OTelSdkError::InternalFailure(error)),
                Err(join) => Err(OTelSdkError::InternalFailure(join.to_string())),
            }
        }
    }
}

/// The `ExportTraceServiceRequest` of a batch, in OTLP's JSON mapping (ids in hex, times as
/// strings of nanoseconds).
fn request_body(service_name: &str, batch: &[SpanData]) -> Json {
    json!({
        "resourceSpans": [{
            "resource": {
                "attributes": [attribute(&KeyValue::new("service.name", service_name.to_owned()))],
            },
            "scopeSpans": [{
                "scope": { "name": "hookrelay", "version": env!("CARGO_PKG_VERSION") },
                "spans": batch.iter().map(span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn span(span: &SpanData) -> Json {
    let parent = if span.parent_span_id == SpanId::INVALID {
        String::new()
    } else {
        span.parent_span_id.to_string()
    };
    json!({
        "traceId": span.span_context.trace_id().to_string(),
        "spanId": span.span_context.span_id().to_string(),
        "parentSpanId": parent,
        "name": span.name,
        "kind": kind(&span.span_kind),
        "startTimeUnixNano": nanos(span.start_time),
        "endTimeUnixNano": nanos(span.end_time),
        "attributes": span.attributes.iter().map(attribute).collect::<Vec<_>>(),
        "links": span.links.iter().map(|link| json!({
            "traceId": link.span_context.trace_id().to_string(),
            "spanId": link.span_context.span_id().to_string(),
            "attributes": link.attributes.iter().map(attribute).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "status": status(&span.status),
    })
}

/// OTLP's `SpanKind` numbers.
fn kind(kind: &SpanKind) -> u8 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn status(status: &Status) -> Json {
    match status {
        Status::Unset => json!({ "code": 0 }),
        Status::Ok => json!({ "code": 1 }),
        Status::Error { description } => json!({ "code": 2, "message": description }),
    }
}

fn nanos(at: SystemTime) -> String {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .to_string()
}

fn attribute(pair: &KeyValue) -> Json {
    json!({ "key": pair.key.as_str(), "value": any_value(&pair.value) })
}

fn any_value(value: &Value) -> Json {
    match value {
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::I64(n) => json!({ "intValue": n.to_string() }),
        Value::F64(f) => json!({ "doubleValue": f }),
        Value::String(s) => json!({ "stringValue": s.as_str() }),
        Value::Array(array) => {
            let values: Vec<Json> = match array {
                Array::Bool(items) => items.iter().map(|b| json!({ "boolValue": b })).collect(),
                Array::I64(items) => items
                    .iter()
                    .map(|n| json!({ "intValue": n.to_string() }))
                    .collect(),
                Array::F64(items) => items.iter().map(|f| json!({ "doubleValue": f })).collect(),
                Array::String(items) => items
                    .iter()
                    .map(|s| json!({ "stringValue": s.as_str() }))
                    .collect(),
                _ => Vec::new(),
            };
            json!({ "arrayValue": { "values": values } })
        }
        _ => json!({ "stringValue": value.to_string() }),
    }
}
