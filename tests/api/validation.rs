//! Bad input: every rule answers 400/404/405/413 in the Error shape and changes nothing.

use hookrelay::domain::WebhookKind;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::common::{TestApp, assert_error, status_and_json};

async fn rejected_fields(app: &TestApp, body: Value) -> Vec<String> {
    let response = app.post(&app.project_path("/webhooks"), body).await;
    let body = assert_error(response, 400, "validation_error").await;
    body["details"]
        .as_array()
        .expect("details is a list")
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            d["field"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn webhook_count(app: &TestApp) -> usize {
    let (_, body) = status_and_json(
        app.get(&app.project_path("/webhooks?includeInactive=true"))
            .await,
    )
    .await;
    body["data"]["webhooks"].as_array().unwrap().len()
}

const EVENTS: [&str; 1] = ["action.created"];

backend_tests! {
    async fn create_webhook_rejects_a_plain_http_url(backend) {
        let app = TestApp::spawn(backend).await;
        let fields = rejected_fields(&app, json!({ "url": "http://93.184.215.14/hook", "events": EVENTS })).await;
        assert_eq!(fields, ["url"]);
        assert_eq!(webhook_count(&app).await, 0);
    }

    async fn create_webhook_accepts_http_when_the_deployment_allows_it(backend) {
        let app = TestApp::spawn_with(backend, |c| c.allow_http = true).await;
        app.create_webhook("http://93.184.215.14/hook", &EVENTS).await;
    }

    async fn create_webhook_rejects_relative_and_non_web_urls(backend) {
        let app = TestApp::spawn(backend).await;
        for url in ["/hooks", "example.com/hook", "ftp://example.com/", "https://", "not a url"] {
            let fields = rejected_fields(&app, json!({ "url": url, "events": EVENTS })).await;
            assert_eq!(fields, ["url"], "{url}");
        }
    }

    async fn create_webhook_refuses_credentials_in_the_url(backend) {
        let app = TestApp::spawn(backend).await;
        for url in ["https://user:pass@93.184.215.14/hook", "https://token@93.184.215.14/hook"] {
            let response = app.post(&app.project_path("/webhooks"), json!({ "url": url, "events": EVENTS })).await;
            let error = assert_error(response, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], "url");
            assert!(error["details"][0]["message"].as_str().unwrap().contains("credentials"), "{error}");
        }
        assert!(app.store.list_webhooks(app.project_id, WebhookKind::Webhook, true).await.unwrap().is_empty(), "nothing was created");
        app.create_webhook("https://93.184.215.14/hook?token=kept", &EVENTS).await;
    }

    async fn create_webhook_allows_web_ports_and_unprivileged_ones_only(backend) {
        let app = TestApp::spawn(backend).await;
        for url in ["https://93.184.215.14:22/hook", "https://93.184.215.14:6379/hook".replace("6379", "1023").as_str()] {
            let fields = rejected_fields(&app, json!({ "url": url, "events": EVENTS })).await;
            assert_eq!(fields, ["url"], "{url}");
        }
        app.create_webhook("https://93.184.215.14:8443/hook", &EVENTS).await;
        app.create_webhook("https://93.184.215.14:9000/hook", &EVENTS).await;
        let open = TestApp::spawn_with(backend, |c| c.allow_any_port = true).await;
        open.create_webhook("https://93.184.215.14:22/hook", &EVENTS).await;
    }

    async fn create_webhook_rejects_urls_over_2048_characters(backend) {
        let app = TestApp::spawn(backend).await;
        let base = "https://93.184.215.14/";
        let longest = format!("{base}{}", "a".repeat(2048 - base.len()));
        app.create_webhook(&longest, &EVENTS).await;
        let fields = rejected_fields(&app, json!({ "url": format!("{longest}a"), "events": EVENTS })).await;
        assert_eq!(fields, ["url"]);
    }

    async fn create_webhook_rejects_private_and_metadata_targets(backend) {
        let app = TestApp::spawn(backend).await;
        for url in [
            "https://127.0.0.1/hook",
            "https://localhost/hook",
            "https://10.0.0.8/hook",
            "https://172.16.5.4/hook",
            "https://192.168.1.10/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::1]/hook",
            "https://[::ffff:127.0.0.1]/hook",
            "https://[fe80::1]/hook",
            "https://[fd00::1]/hook",
            "https://0x7f000001/hook",
        ] {
            let fields = rejected_fields(&app, json!({ "url": url, "events": EVENTS })).await;
            assert_eq!(fields, ["url"], "{url}");
        }
        assert_eq!(webhook_count(&app).await, 0);
    }

    async fn create_webhook_accepts_private_targets_when_allowed(backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.allow_http = true;
            c.allow_private_targets = true;
        })
        .await;
        app.create_webhook("http://127.0.0.1:9009/hook", &EVENTS).await;
        app.create_webhook("https://localhost/hook", &EVENTS).await;
    }

    async fn create_webhook_rejects_bad_event_lists(backend) {
        let app = TestApp::spawn(backend).await;
        let seven = json!([
            "search-tracking.completed", "visibility.changed", "action.created", "action.updated",
            "action.recommendation.created", "action.recommendation.updated", "action.created"
        ]);
        for events in [
            json!([]),
            json!(["action.created", "action.created"]),
            json!(["action.deleted"]),
            json!(["ACTION.CREATED"]),
            json!("action.created"),
            json!([1]),
            seven,
        ] {
            let fields = rejected_fields(&app, json!({ "url": "https://93.184.215.14/", "events": events })).await;
            assert_eq!(fields, ["events"], "{events}");
        }
        assert_eq!(webhook_count(&app).await, 0);
    }

    async fn create_webhook_names_every_bad_field_at_once(backend) {
        let app = TestApp::spawn(backend).await;
        assert_eq!(rejected_fields(&app, json!({})).await, ["url", "events"]);
        let both_bad = json!({ "url": 42, "events": ["nope"] });
        assert_eq!(rejected_fields(&app, both_bad).await, ["url", "events"]);
        let nulls = json!({ "url": null, "events": null });
        assert_eq!(rejected_fields(&app, nulls).await, ["url", "events"]);
    }

    async fn malformed_json_is_a_400_in_the_error_shape(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app
            .client
            .post(app.url(&app.project_path("/webhooks")))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body("{\"url\": ")
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
        for body in ["[]", "\"text\"", "null", "42"] {
            let response = app
                .client
                .post(app.url(&app.project_path("/webhooks")))
                .bearer_auth(&app.key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_error(response, 400, "bad_request").await;
        }
        assert_eq!(webhook_count(&app).await, 0);
    }

    async fn a_missing_or_wrong_content_type_is_a_400(backend) {
        let app = TestApp::spawn(backend).await;
        let body = json!({ "url": "https://93.184.215.14/", "events": EVENTS }).to_string();
        let url = app.url(&app.project_path("/webhooks"));
        let missing = app.client.post(&url).bearer_auth(&app.key).body(body.clone()).send().await.unwrap();
        let error = assert_error(missing, 400, "bad_request").await;
        assert!(error["message"].as_str().unwrap().contains("application/json"));
        let wrong = app
            .client
            .post(&url)
            .bearer_auth(&app.key)
            .header("content-type", "text/plain")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_error(wrong, 400, "bad_request").await;
        let with_charset = app
            .client
            .post(&url)
            .bearer_auth(&app.key)
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(with_charset.status(), 201);
    }

    async fn a_body_over_64_kib_is_a_413(backend) {
        let app = TestApp::spawn(backend).await;
        let padding = "a".repeat(64 * 1024);
        let body = json!({ "url": "https://93.184.215.14/", "events": EVENTS, "padding": padding });
        let response = app.post(&app.project_path("/webhooks"), body).await;
        assert_error(response, 413, "payload_too_large").await;
        assert_eq!(webhook_count(&app).await, 0);
    }

    async fn a_non_uuid_path_id_names_nothing_as_devtune_answers(backend) {
        let app = TestApp::spawn(backend).await;
        // Not a UUID, so not the key's project: DevTune's rotate documents 403, not 400.
        for method in [Method::GET, Method::POST] {
            let response = app.call(method, "/api/v2/projects/not-a-uuid/webhooks", Some(&app.key), Some(json!({}))).await;
            assert_error(response, 403, "forbidden").await;
        }
        let rotate = app.call(Method::POST, "/api/v2/projects/not-a-uuid/webhooks/123/rotate-secret", Some(&app.key), None).await;
        assert_error(rotate, 403, "forbidden").await;
        // Not a UUID, so no such webhook: DevTune's delete and rotate answer 404.
        for (method, path) in [
            (Method::GET, "/webhooks/123"),
            (Method::DELETE, "/webhooks/123"),
            (Method::POST, "/webhooks/123/rotate-secret"),
            (Method::GET, "/alert-endpoints/123"),
            (Method::GET, "/deliveries/123"),
        ] {
            let response = app.call(method, &app.project_path(path), Some(&app.key), None).await;
            let body = assert_error(response, 404, "not_found").await;
            assert!(body["message"].as_str().unwrap().contains("not found"), "{path}: {body}");
        }
    }

    async fn an_unknown_route_is_a_404_in_the_error_shape(backend) {
        let app = TestApp::spawn(backend).await;
        for path in ["/", "/api/v2", "/api/v3/projects", "/api/v2/projects/x/unknown"] {
            let response = app.get(path).await;
            assert_error(response, 404, "not_found").await;
        }
    }

    async fn a_wrong_method_is_a_405_in_the_error_shape(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.call(Method::PUT, &app.project_path("/webhooks"), Some(&app.key), None).await;
        assert!(response.headers().contains_key("allow"));
        assert_error(response, 405, "method_not_allowed").await;
        let response = app.call(Method::DELETE, "/healthz", None, None).await;
        assert_error(response, 405, "method_not_allowed").await;
    }

    async fn every_response_carries_a_request_id(backend) {
        let app = TestApp::spawn(backend).await;
        let ok = app.get("/healthz").await;
        let generated = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(generated.parse::<uuid::Uuid>().is_ok(), "{generated}");
        let error = app.get("/nowhere").await;
        assert!(error.headers().contains_key("x-request-id"));
        let echoed = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", "trace-me-42")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
        for unusable in ["x".repeat(129), "two words".to_owned(), "x".repeat(300_000)] {
            let replaced = app
                .client
                .get(app.url("/healthz"))
                .header("x-request-id", &unusable)
                .send()
                .await
                .unwrap();
            let id = replaced.headers()["x-request-id"].to_str().unwrap();
            assert!(id.parse::<uuid::Uuid>().is_ok(), "a generated id replaces {:.20}…", unusable);
        }
    }

    async fn api_answers_are_never_cached_or_sniffed(backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.admin_token = Some("an-admin-token-of-at-least-32-characters".into());
        })
        .await;
        let answers = [
            app.get(&app.project_path("/webhooks")).await,
            app.call(Method::GET, &app.project_path("/webhooks"), None, None).await,
            app.get("/api/v2/no/such/route").await,
            app.call(Method::POST, "/admin/v1/accounts", None, None).await,
        ];
        for answer in answers {
            let status = answer.status();
            assert_eq!(answer.headers()["cache-control"], "no-store", "{status}");
            assert_eq!(answer.headers()["x-content-type-options"], "nosniff", "{status}");
        }
        let probe = app.get("/healthz").await;
        assert!(!probe.headers().contains_key("cache-control"), "probes are not API answers");
    }
}

#[tokio::test]
async fn a_vanished_database_is_a_503_not_a_500() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = TestApp::spawn(crate::common::Backend::Postgres).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = app
        .config
        .database
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_error(app.get("/readyz").await, 503, "service_unavailable").await;
    assert_error(
        app.get(&app.project_path("/webhooks")).await,
        503,
        "service_unavailable",
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answers promptly"
    );
}
