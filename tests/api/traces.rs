//! OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the binary exports its spans to a local
//! OTLP/HTTP collector (JSON encoding); a publish continues its caller's trace and the delivery
//! attempt continues the publish's, sending its own `traceparent` to the receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::TestDb;
use crate::common::process::{Server, hookrelay, provision_tenant};
use crate::common::receiver::{Receiver, eventually};
use crate::common::skip_postgres;

/// Collects every span POSTed to /v1/traces.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    async fn start(&self) -> String {
        async fn receive(State(collector): State<Collector>, body: String) -> &'static str {
            let request: Value = serde_json::from_str(&body).expect("OTLP JSON");
            let mut spans = collector.spans.lock().unwrap();
            for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                assert_eq!(
                    resource["resource"]["attributes"][0],
                    json!({ "key": "service.name", "value": { "stringValue": "relay-under-test" } })
                );
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    spans.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            "{}"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }

    fn spans(&self) -> Vec<Value> {
        self.spans.lock().unwrap().clone()
    }
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn publish_through(
    server: &Server,
    project: &str,
    key: &str,
    receiver_url: &str,
    traced: bool,
) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("{}/api/v2/projects/{project}", server.address);
    let created = client
        .post(format!("{base}/webhooks"))
        .bearer_auth(key)
        .json(&json!({ "url": receiver_url, "events": ["action.created"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let mut publish = client
        .post(format!("{base}/events"))
        .bearer_auth(key)
        .json(&json!({ "event": "action.created", "data": {} }));
    if traced {
        publish = publish.header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"));
    }
    assert_eq!(publish.send().await.unwrap().status(), 202);
}

fn traced_command(url: &str, collector: &str) -> std::process::Command {
    let mut command = hookrelay(url);
    command
        .env("HOOKRELAY_BOOTSTRAP", "false")
        .env("HOOKRELAY_ALLOW_HTTP", "true")
        .env("HOOKRELAY_ALLOW_PRIVATE_TARGETS", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
        .env("OTEL_SERVICE_NAME", "relay-under-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    command
}

// Multi-threaded: the collector must keep answering while a test thread waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_and_its_attempt_are_exported_in_the_callers_trace() {
    let db = TestDb::create(crate::common::Backend::Sqlite).await;
    let (project, key) = provision_tenant(&db.url);
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let server = Server::start(traced_command(&db.url, &endpoint));
    let mut receiver = Receiver::start().await;
    publish_through(&server, &project, &key, &receiver.url("/hook"), true).await;

    let request = receiver.expect(Duration::from_secs(15)).await;
    let traceparent = request.header("traceparent").to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], CALLER_TRACE,
        "the attempt is in the caller's trace: {traceparent}"
    );
    assert_ne!(parts[2], CALLER_SPAN, "with a span of its own");
    let attempt_span = parts[2].to_owned();

    let spans = eventually(
        Duration::from_secs(15),
        "the spans to be exported",
        || async {
            let spans = collector.spans();
            let attempt = spans
                .iter()
                .find(|s| s["spanId"] == attempt_span.as_str())
                .cloned();
            let publish = spans
                .iter()
                .find(|s| s["name"] == "request" && s["parentSpanId"] == CALLER_SPAN)
                .cloned();
            attempt.zip(publish)
        },
    )
    .await;
    let (attempt, publish) = spans;
    assert_eq!(publish["traceId"], CALLER_TRACE);
    assert_eq!(
        publish["kind"], 2,
        "the request span is a server span: {publish}"
    );
    assert_eq!(attempt["traceId"], CALLER_TRACE);
    assert_eq!(attempt["name"], "attempt");
    assert_eq!(
        attempt["kind"], 3,
        "the attempt span is a client span: {attempt}"
    );
    // The attempt descends from the publish: its parent is a span of the publish's request.
    let all = collector.spans();
    let mut ancestor = attempt["parentSpanId"].as_str().unwrap().to_owned();
    let mut reached_publish = false;
    for _ in 0..8 {
        if ancestor == publish["spanId"].as_str().unwrap() {
            reached_publish = true;
            break;
        }
        match all.iter().find(|s| s["spanId"] == ancestor.as_str()) {
            Some(parent) => ancestor = parent["parentSpanId"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert!(
        reached_publish,
        "the attempt descends from the publish: {attempt}"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_no_traceparent_is_sent() {
    let db = TestDb::create(crate::common::Backend::Sqlite).await;
    let (project, key) = provision_tenant(&db.url);
    let collector = Collector::default();
    collector.start().await;
    let mut command = traced_command(&db.url, "unused");
    command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    let server = Server::start(command);
    let mut receiver = Receiver::start().await;
    publish_through(&server, &project, &key, &receiver.url("/hook"), true).await;
    let request = receiver.expect(Duration::from_secs(15)).await;
    assert!(
        !request.headers.contains_key("traceparent"),
        "{:?}",
        request.headers
    );
    server.terminate();
    assert!(collector.spans().is_empty());
}

/// The trace survives the queue on Postgres too, and spans still buffered at SIGTERM are
/// exported before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_trace_survives_and_shutdown_exports_what_is_buffered() {
    if skip_postgres() {
        return;
    }
    let db = TestDb::create(crate::common::Backend::Postgres).await;
    let (project, key) = provision_tenant(&db.url);
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let mut command = traced_command(&db.url, &endpoint);
    // No scheduled export within the test: only the shutdown flush can deliver the spans.
    command.env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let server = Server::start(command);
    let mut receiver = Receiver::start().await;
    publish_through(&server, &project, &key, &receiver.url("/hook"), true).await;
    let request = receiver.expect(Duration::from_secs(15)).await;
    let traceparent = request.header("traceparent").to_owned();
    assert!(traceparent.contains(CALLER_TRACE), "{traceparent}");
    assert!(
        collector.spans().is_empty(),
        "nothing exported before the flush"
    );
    let (clean_exit, _) = server.terminate();
    assert!(clean_exit);
    let attempt_span = traceparent.split('-').nth(2).unwrap();
    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .any(|s| s["spanId"] == attempt_span && s["traceId"] == CALLER_TRACE),
        "the attempt's span was exported at shutdown: {spans:?}"
    );
}
