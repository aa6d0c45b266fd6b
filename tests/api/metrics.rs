//! GET /metrics: the Prometheus text of one server process, which has its own recorder.

use std::time::Duration;

use serde_json::json;

use crate::backend_tests;
use crate::common::TestDb;
use crate::common::process::{Server, hookrelay, provision_tenant};
use crate::common::receiver::{Receiver, Reply, eventually};

/// The value of the sample whose line starts with `series` (name and labels, as rendered).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

async fn scrape(client: &reqwest::Client, server: &Server) -> String {
    let response = client
        .get(format!("{}/metrics", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

backend_tests! {
    async fn metrics_count_deliveries_requests_and_the_queue(backend) {
        let db = TestDb::create(backend).await;
        let (project, key) = provision_tenant(&db.url);
        let mut command = hookrelay(&db.url);
        command
            .env("HOOKRELAY_BOOTSTRAP", "false")
            .env("HOOKRELAY_ALLOW_HTTP", "true")
            .env("HOOKRELAY_ALLOW_PRIVATE_TARGETS", "true")
            .env("HOOKRELAY_RETRY_BASE_MS", "3600000");
        let server = Server::start(command);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut receiver = Receiver::start().await;
        // Two successes, a failure that is retried an hour later, and a receiver asking us to
        // hold off for an hour.
        receiver.script([
            Reply::Status(200),
            Reply::Status(200),
            Reply::Status(503),
            Reply::Throttle(429, Some("3600")),
        ]);
        let webhooks = format!("{}/api/v2/projects/{project}/webhooks", server.address);
        let created = client
            .post(&webhooks)
            .bearer_auth(&key)
            .json(&json!({ "url": receiver.url("/hook"), "events": ["action.created"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        for n in 0..4 {
            let published = client
                .post(format!("{}/api/v2/projects/{project}/events", server.address))
                .bearer_auth(&key)
                .json(&json!({ "event": "action.created", "data": { "n": n } }))
                .send()
                .await
                .unwrap();
            assert_eq!(published.status(), 202);
            receiver.expect(Duration::from_secs(10)).await;
        }

        let text = eventually(Duration::from_secs(10), "the four outcomes are counted", || async {
            let text = scrape(&client, &server).await;
            (sample(&text, "hookrelay_deliveries_scheduled{mode=\"push\"}") == Some(2.0)).then_some(text)
        })
        .await;
        let outcome = |o: &str| sample(&text, &format!("hookrelay_delivery_attempts_total{{mode=\"push\",outcome=\"{o}\"}}"));
        assert_eq!(outcome("succeeded"), Some(2.0), "{text}");
        assert_eq!(outcome("retrying"), Some(1.0), "{text}");
        assert_eq!(outcome("throttled"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_webhooks_throttled"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_delivery_attempt_duration_seconds_count"), Some(4.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_delivery_attempts_in_flight"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_deliveries_due{mode=\"push\"}"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_deliveries_due{mode=\"pull\"}"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_oldest_due_delivery_age_seconds"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "hookrelay_events_accepted_total"), Some(4.0), "{text}");
        let events_route = "route=\"/api/v2/projects/{projectId}/events\"";
        let published = format!("hookrelay_http_requests_total{{method=\"POST\",{events_route},status=\"202\"}}");
        assert_eq!(sample(&text, &published), Some(4.0), "{text}");
        assert!(sample(&text, "hookrelay_db_pool_connections_max").is_some_and(|max| max >= 1.0), "{text}");
        assert!(text.contains("# HELP hookrelay_delivery_attempts_total"), "{text}");
        // The standard process figures, and the build: a number each, and the version labelled.
        assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|s| s > 0.0), "{text}");
        assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6), "{text}");
        assert!(sample(&text, "process_open_fds").is_some_and(|n| n >= 3.0), "{text}");
        let started = sample(&text, "process_start_time_seconds").expect("a start time");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(started <= now && now - started < 300.0, "started {started}, now {now}");
        let build = text.lines().find(|l| l.starts_with("hookrelay_build_info{")).expect("build info");
        assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && build.ends_with(" 1"), "{build}");

        let unknown = client.get(format!("{}/no/such/route", server.address)).send().await.unwrap();
        assert_eq!(unknown.status(), 404);
        let text = scrape(&client, &server).await;
        let unmatched = "hookrelay_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}";
        assert_eq!(sample(&text, unmatched), Some(1.0), "{text}");
        server.terminate();
    }

    async fn a_busy_key_is_read_from_the_database_about_once_a_second(backend) {
        let db = TestDb::create(backend).await;
        let (project, key) = provision_tenant(&db.url);
        let mut command = hookrelay(&db.url);
        command.env("HOOKRELAY_BOOTSTRAP", "false");
        let server = Server::start(command);
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let webhooks = format!("{}/api/v2/projects/{project}/webhooks", server.address);
        let started = std::time::Instant::now();
        for _ in 0..50 {
            let listed = client.get(&webhooks).bearer_auth(&key).send().await.unwrap();
            assert_eq!(listed.status(), 200);
        }
        let seconds = started.elapsed().as_secs_f64().ceil();
        let text = scrape(&client, &server).await;
        let checked = |source: &str| sample(&text, &format!("hookrelay_api_key_lookups_total{{source=\"{source}\"}}")).unwrap_or(0.0);
        let (cached, read) = (checked("cache"), checked("database"));
        assert_eq!(cached + read, 50.0, "{text}");
        assert!(read >= 1.0 && read <= seconds + 1.0, "{read} database lookups in {seconds} s");
        server.terminate();
    }
}
