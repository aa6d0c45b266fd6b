//! Keys, scopes, tenancy and rate limits: 401, 403 and 429 in the Error shape.

use chrono::{DateTime, Utc};
use hookrelay::clock::Clock;
use hookrelay::domain::WebhookKind;
use reqwest::Method;
use serde_json::json;

use crate::backend_tests;
use crate::common::{TestApp, assert_error, status_and_json};

/// A fixed time 10 s after a minute starts: rate-limit windows are calendar minutes.
fn ten_seconds_into_a_minute() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_010, 0).expect("a valid timestamp")
}

const BODY: fn() -> serde_json::Value =
    || json!({ "url": "https://93.184.215.14/hook", "events": ["action.created"] });

backend_tests! {
    async fn a_missing_key_is_a_401(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.call(Method::GET, &app.project_path("/webhooks"), None, None).await;
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "RFC 9110 names the scheme");
        let body = assert_error(response, 401, "unauthorized").await;
        assert!(body["message"].as_str().unwrap().contains("Authorization"));
    }

    async fn malformed_and_unknown_keys_are_401s(backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.project_path("/webhooks");
        let unknown = format!("dtk_live_{}", "A".repeat(40));
        for key in ["nonsense", "dtk_live_short", "dtk_test_0123456789abcdef0123456789abcdef", unknown.as_str()] {
            let response = app.call(Method::GET, &path, Some(key), None).await;
            assert_error(response, 401, "unauthorized").await;
        }
        let basic = app
            .client
            .get(app.url(&path))
            .header("authorization", format!("Basic {}", app.key))
            .send()
            .await
            .unwrap();
        assert_error(basic, 401, "unauthorized").await;
    }

    async fn a_revoked_key_is_a_401_at_once(backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.project_path("/webhooks");
        assert_eq!(app.get(&path).await.status(), 200);
        let record = app
            .store
            .find_api_key(&hookrelay::domain::ApiKey::parse(&app.key).unwrap().hash())
            .await
            .unwrap()
            .unwrap();
        // The key was just checked, so this instance holds it as live; the revoke outwaits that.
        let actor = crate::common::cli_actor();
        hookrelay::tenancy::revoke_key(app.store.as_ref(), record.id, actor, Utc::now()).await.unwrap();
        assert_error(app.get(&path).await, 401, "unauthorized").await;
    }

    async fn the_bearer_scheme_is_case_insensitive(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app
            .client
            .get(app.url(&app.project_path("/webhooks")))
            .header("authorization", format!("bearer {}", app.key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    async fn a_read_only_key_cannot_write(backend) {
        let app = TestApp::spawn(backend).await;
        let created = app.create_webhook("https://93.184.215.14/hook", &["action.created"]).await;
        let read_only = app.key_with_scopes(&["webhooks.read"]).await;
        let key = Some(read_only.as_str());
        let list = app.call(Method::GET, &app.project_path("/webhooks"), key, None).await;
        assert_eq!(list.status(), 200);
        let create = app.call(Method::POST, &app.project_path("/webhooks"), key, Some(BODY())).await;
        let body = assert_error(create, 403, "forbidden").await;
        assert!(body["message"].as_str().unwrap().contains("webhooks.write"));
        let path = app.project_path(&format!("/webhooks/{}", created["id"].as_str().unwrap()));
        let rotate = app.call(Method::POST, &format!("{path}/rotate-secret"), key, None).await;
        assert_error(rotate, 403, "forbidden").await;
        assert_error(app.call(Method::DELETE, &path, key, None).await, 403, "forbidden").await;
        let patch = app.call(Method::PATCH, &path, key, Some(json!({"events": ["action.updated"]}))).await;
        assert_error(patch, 403, "forbidden").await;
        let (_, details) = crate::common::status_and_json(app.get(&path).await).await;
        assert_eq!(details["data"]["isActive"], true, "nothing changed");
    }

    async fn a_write_only_key_cannot_list(backend) {
        let app = TestApp::spawn(backend).await;
        let write_only = app.key_with_scopes(&["webhooks.write"]).await;
        let key = Some(write_only.as_str());
        let create = app.call(Method::POST, &app.project_path("/webhooks"), key, Some(BODY())).await;
        assert_eq!(create.status(), 201);
        let list = app.call(Method::GET, &app.project_path("/webhooks"), key, None).await;
        let body = assert_error(list, 403, "forbidden").await;
        assert!(body["message"].as_str().unwrap().contains("webhooks.read"));
    }

    async fn an_events_only_key_cannot_touch_webhooks(backend) {
        let app = TestApp::spawn(backend).await;
        let events_only = app.key_with_scopes(&["events.write"]).await;
        let key = Some(events_only.as_str());
        let list = app.call(Method::GET, &app.project_path("/webhooks"), key, None).await;
        assert_error(list, 403, "forbidden").await;
        let create = app.call(Method::POST, &app.project_path("/webhooks"), key, Some(BODY())).await;
        assert_error(create, 403, "forbidden").await;
    }

    async fn a_key_on_another_projects_path_is_a_403_whether_it_exists_or_not(backend) {
        let app = TestApp::spawn(backend).await;
        let (other_project, _) = app.other_project().await;
        let missing_project = uuid::Uuid::new_v4();
        for project in [other_project.to_string(), missing_project.to_string()] {
            let path = format!("/api/v2/projects/{project}/webhooks");
            let list = app.call(Method::GET, &path, Some(&app.key), None).await;
            assert_error(list, 403, "forbidden").await;
            let create = app.call(Method::POST, &path, Some(&app.key), Some(BODY())).await;
            assert_error(create, 403, "forbidden").await;
        }
        let webhooks = app.store.list_webhooks(other_project, WebhookKind::Webhook, true).await.unwrap();
        assert!(webhooks.is_empty(), "nothing was created in the other project");
    }

    async fn responses_carry_rate_limit_headers(backend) {
        let clock = Clock::manual(ten_seconds_into_a_minute());
        let app = TestApp::spawn_with_clock(backend, clock.clone(), |c| c.rate_limit_per_minute = 100).await;
        let first = app.get(&app.project_path("/webhooks")).await;
        assert_eq!(first.headers()["x-ratelimit-limit"], "100");
        assert_eq!(first.headers()["x-ratelimit-remaining"], "99");
        let reset: u64 = first.headers()["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        assert_eq!(reset, clock.unix_secs() + 50, "the window ends with the calendar minute");
        let error = app.get(&app.project_path("/webhooks/not-a-uuid")).await;
        assert_eq!(error.headers()["x-ratelimit-remaining"], "98");
    }

    async fn over_the_limit_is_a_429_with_retry_after(backend) {
        let clock = Clock::manual(ten_seconds_into_a_minute());
        let app = TestApp::spawn_with_clock(backend, clock.clone(), |c| c.rate_limit_per_minute = 3).await;
        let path = app.project_path("/webhooks");
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..4 {
            let response = app.get(&path).await;
            statuses.push(response.status().as_u16());
            last = Some(response);
        }
        assert_eq!(statuses, [200, 200, 200, 429]);
        let response = last.unwrap();
        assert_eq!(response.headers()["retry-after"], "50", "until the minute ends");
        assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
        assert_error(response, 429, "rate_limited").await;
        let other = app.key_with_scopes(&["webhooks.read"]).await;
        let separate = app.call(Method::GET, &path, Some(&other), None).await;
        assert_eq!(separate.status(), 200, "each key has its own budget");
        clock.set(ten_seconds_into_a_minute() + chrono::TimeDelta::seconds(50));
        assert_eq!(app.get(&path).await.status(), 200, "a new minute, a new budget");
    }

    async fn repeated_failed_authentication_from_one_address_is_a_429(backend) {
        let clock = Clock::manual(ten_seconds_into_a_minute());
        let admin_token = "a".repeat(32);
        let app = TestApp::spawn_with_clock(backend, clock.clone(), |c| {
            c.auth_failures_per_minute = 3;
            c.admin_token = Some(admin_token.clone());
        })
        .await;
        let path = app.project_path("/webhooks");
        let guess = format!("dtk_live_{}", "A".repeat(40));
        for _ in 0..2 {
            assert_error(app.call(Method::GET, &path, Some(&guess), None).await, 401, "unauthorized").await;
        }
        let wrong_admin = app.call(Method::POST, "/admin/v1/accounts", Some("not-the-token"), Some(json!({ "name": "x" }))).await;
        assert_error(wrong_admin, 401, "unauthorized").await;
        let refused = app.call(Method::GET, &path, Some(&app.key), None).await;
        assert_eq!(refused.headers()["retry-after"], "50", "until the minute ends");
        assert_error(refused, 429, "rate_limited").await;
        let admin = app.call(Method::POST, "/admin/v1/accounts", Some(&admin_token), Some(json!({ "name": "x" }))).await;
        assert_error(admin, 429, "rate_limited").await;
        clock.set(ten_seconds_into_a_minute() + chrono::TimeDelta::seconds(50));
        let (status, _) = status_and_json(app.call(Method::GET, &path, Some(&app.key), None).await).await;
        assert_eq!(status, 200, "a new minute, a new budget");
    }

    async fn rate_limiting_off_sends_no_rate_headers(backend) {
        let app = TestApp::spawn(backend).await;
        let response = app.get(&app.project_path("/webhooks")).await;
        assert!(!response.headers().contains_key("x-ratelimit-limit"));
    }

    async fn me_describes_the_calling_key(backend) {
        let app = TestApp::spawn(backend).await;
        let key = app.key_with_scopes(&["webhooks.read"]).await;
        let (status, body) = crate::common::status_and_json(app.call(Method::GET, "/api/v2/me", Some(&key), None).await).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["projectId"], app.project_id.to_string());
        assert_eq!(body["data"]["accountId"], app.account_id.to_string());
        assert_eq!((&body["data"]["projectName"], &body["data"]["accountName"]), (&json!("Test project"), &json!("Test account")));
        assert_eq!(body["data"]["scopes"], json!(["webhooks.read"]));
        assert_eq!(body["meta"]["projectId"], app.project_id.to_string());
        assert_error(app.call(Method::GET, "/api/v2/me", None, None).await, 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn named_browser_origins_may_call_the_api_and_others_get_no_cors_headers() {
    let app = TestApp::spawn_with(crate::common::Backend::Sqlite, |c| {
        c.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let path = app.url(&app.project_path("/webhooks"));
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, &path)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    // A preflight carries no key: it is answered before authentication.
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );

    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    let call = app
        .client
        .get(&path)
        .bearer_auth(&app.key)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert_eq!(
        call.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = call.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("x-ratelimit-remaining"),
        "{exposed}"
    );
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let app = TestApp::spawn(crate::common::Backend::Sqlite).await;
    let call = app
        .client
        .get(app.url(&app.project_path("/webhooks")))
        .bearer_auth(&app.key)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(call.status(), 200);
    assert!(!call.headers().contains_key("access-control-allow-origin"));
}
