//! Delivery end to end: a real receiver on loopback, signatures checked the way receivers do.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::backend_tests;
use crate::common::receiver::{Received, Receiver, Reply, eventually};
use crate::common::{Backend, TestApp, assert_error, keys, status_and_json};

const WAIT: Duration = Duration::from_secs(15);

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut hookrelay::config::ServeConfig),
) -> TestApp {
    TestApp::spawn_with(backend, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
        configure(c);
    })
    .await
}

/// The DevTune guide's recipe: hex HMAC-SHA256 of the raw body, keyed with the secret's bytes.
fn devtune_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The Standard Webhooks recipe: the key is the base64 part of `whsec_…`, the content
/// `id.timestamp.body`, the signature list space-separated `v1,<base64>` entries.
fn standard_webhooks_verifies(whsec: &str, request: &Received) -> bool {
    let key = STANDARD
        .decode(whsec.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(request.header("webhook-id").as_bytes());
    mac.update(b".");
    mac.update(request.header("webhook-timestamp").as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    request
        .header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

fn whsec(secret: &str) -> String {
    format!("whsec_{}", STANDARD.encode(secret.as_bytes()))
}

impl TestApp {
    async fn publish(&self, event: &str, data: Value) -> Value {
        let response = self
            .post(
                &self.project_path("/events"),
                json!({ "event": event, "data": data }),
            )
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 202, "{body}");
        body["data"].clone()
    }

    async fn delivery(&self, id: &Value) -> Value {
        let path = self.project_path(&format!("/deliveries/{}", id.as_str().unwrap()));
        let (status, body) = status_and_json(self.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    async fn delivery_when(&self, id: &Value, status: &str) -> Value {
        eventually(WAIT, &format!("delivery status {status}"), || async {
            let delivery = self.delivery(id).await;
            (delivery["status"] == status).then_some(delivery)
        })
        .await
    }

    async fn webhook_details(&self, id: &Value) -> Value {
        let path = self.project_path(&format!("/webhooks/{}", id.as_str().unwrap()));
        status_and_json(self.get(&path).await).await.1["data"].clone()
    }
}

backend_tests! {
    async fn a_published_event_reaches_its_subscriber_signed_both_ways(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let secret = webhook["secret"].as_str().unwrap();
        let data = json!({ "actionId": "action-uuid", "origin": "user", "changedFields": [] });
        let accepted = app.publish("action.created", data.clone()).await;
        assert_eq!(accepted["deliveries"], 1);
        assert_eq!(accepted["event"], "action.created");
        let delivery_id = accepted["deliveryIds"][0].as_str().unwrap();

        let request = receiver.expect(WAIT).await;
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("user-agent"), "DevTune-Webhook/2.0");
        assert_eq!(request.header("x-devtune-event"), "action.created");
        assert_eq!(request.header("x-devtune-delivery"), delivery_id);
        assert_eq!(request.header("webhook-id"), delivery_id);
        assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        assert!(standard_webhooks_verifies(&whsec(secret), &request));
        let sent_at: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!((sent_at - chrono::Utc::now().timestamp()).abs() < 60);

        let body = request.json();
        assert_eq!(keys(&body), ["accountId", "data", "event", "projectId", "timestamp"]);
        assert_eq!(body["event"], "action.created");
        assert_eq!(body["projectId"], app.project_id.to_string());
        assert_eq!(body["accountId"], app.account_id.to_string());
        assert_eq!(body["data"], data);
        assert!(crate::common::is_api_timestamp(&body["timestamp"]));

        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "succeeded").await;
        assert_eq!(delivery["attemptCount"], 1);
        assert_eq!(delivery["lastResponseStatus"], 200);
        assert_eq!(delivery["nextAttemptAt"], Value::Null);
        assert_eq!(delivery["attempts"][0]["responseStatus"], 200);
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
        assert_eq!(stats["totalDeliveries"], 1);
        assert_eq!(stats["successfulDeliveries"], 1);
        assert!(crate::common::is_api_timestamp(&stats["lastSuccessAt"]));
    }

    async fn a_tampered_body_fails_both_signature_checks(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["visibility.changed"]).await;
        let secret = webhook["secret"].as_str().unwrap();
        app.publish("visibility.changed", json!({ "runId": "r" })).await;
        let mut request = receiver.expect(WAIT).await;
        let mut body = request.body.to_vec();
        body[2] ^= 0x01;
        request.body = body.into();
        assert_ne!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        assert!(!standard_webhooks_verifies(&whsec(secret), &request));
    }

    async fn only_subscribed_active_webhooks_with_matching_filters_get_an_event(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        app.create_webhook(&receiver.url("/all"), &["action.created"]).await;
        app.create_webhook(&receiver.url("/other-type"), &["visibility.changed"]).await;
        let filtered = json!({
            "url": receiver.url("/high"),
            "events": ["action.created"],
            "filters": { "priority": "high, urgent" }
        });
        let (status, created) = status_and_json(app.post(&app.project_path("/webhooks"), filtered).await).await;
        assert_eq!(status, 201, "{created}");
        let details = app.webhook_details(&created["data"]["id"]).await;
        assert_eq!(details["filters"], json!({ "priority": "high,urgent" }));
        let deleted = app.create_webhook(&receiver.url("/deleted"), &["action.created"]).await;
        let path = app.project_path(&format!("/webhooks/{}", deleted["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;

        let low = app.publish("action.created", json!({ "priority": "low" })).await;
        assert_eq!(low["deliveries"], 1);
        let high = app.publish("action.created", json!({ "priority": "urgent" })).await;
        assert_eq!(high["deliveries"], 2);
        let mut paths = Vec::new();
        for _ in 0..3 {
            paths.push(receiver.expect(WAIT).await.path);
        }
        paths.sort();
        assert_eq!(paths, ["/all", "/all", "/high"]);
        let none = app.publish("search-tracking.completed", json!({})).await;
        assert_eq!(none["deliveries"], 0);
    }

    async fn fails_twice_then_succeeds_with_growing_gaps(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = 300).await;
        let mut receiver = Receiver::start().await;
        receiver.script([Reply::Status(500), Reply::Status(502)]);
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.updated"]).await;
        let accepted = app.publish("action.updated", json!({ "n": 1 })).await;
        let attempts: Vec<Received> = vec![
            receiver.expect(WAIT).await,
            receiver.expect(WAIT).await,
            receiver.expect(WAIT).await,
        ];
        let ids: HashSet<&str> = attempts.iter().map(|a| a.header("x-devtune-delivery")).collect();
        assert_eq!(ids.len(), 1, "one delivery id across retries");
        let first_gap = attempts[1].at - attempts[0].at;
        let second_gap = attempts[2].at - attempts[1].at;
        assert!(first_gap >= Duration::from_millis(300), "{first_gap:?}");
        assert!(second_gap > first_gap, "{first_gap:?} then {second_gap:?}");

        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "succeeded").await;
        assert_eq!(delivery["attemptCount"], 3);
        let statuses: Vec<Value> = delivery["attempts"].as_array().unwrap().iter()
            .map(|a| a["responseStatus"].clone()).collect();
        assert_eq!(statuses, [json!(500), json!(502), json!(200)]);
        let numbers: Vec<Value> = delivery["attempts"].as_array().unwrap().iter()
            .map(|a| a["number"].clone()).collect();
        assert_eq!(numbers, [json!(1), json!(2), json!(3)]);
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
        assert_eq!(stats["totalDeliveries"], 3);
        assert_eq!(stats["successfulDeliveries"], 1);
        assert_eq!(stats["failedDeliveries"], 2);
        assert_eq!(stats["consecutiveFailures"], 0);
    }

    async fn always_failing_ends_failed_after_exactly_four_attempts(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(503));
        let webhook = app.create_webhook(&receiver.url("/down"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        assert_eq!(delivery["attemptCount"], 4);
        assert_eq!(delivery["attempts"].as_array().unwrap().len(), 4);
        assert_eq!(delivery["lastResponseStatus"], 503);
        assert_eq!(receiver.drain().len(), 4);
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
        assert_eq!(stats["consecutiveFailures"], 4);
        assert_eq!(stats["failedDeliveries"], 4);
        assert!(crate::common::is_api_timestamp(&stats["lastFailureAt"]));
    }

    async fn a_receiver_slower_than_the_timeout_is_a_failed_attempt(backend) {
        let app = spawn(backend, |c| {
            c.delivery.timeout_ms = 300;
            c.delivery.retry_max = 0;
        })
        .await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Slow(Duration::from_secs(3), 200));
        app.create_webhook(&receiver.url("/slow"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        receiver.expect(WAIT).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        let attempt = &delivery["attempts"][0];
        assert!(attempt["error"].as_str().unwrap().contains("timed out"), "{attempt}");
        assert_eq!(attempt["responseStatus"], Value::Null);
        assert!(attempt["durationMs"].as_u64().unwrap() < 3000);
    }

    async fn a_redirect_is_a_failure_and_is_not_followed(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = 0).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Redirect(receiver.url("/elsewhere")));
        app.create_webhook(&receiver.url("/moved"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        assert_eq!(delivery["lastResponseStatus"], 302);
        assert!(delivery["lastError"].as_str().unwrap().contains("redirect"));
        let paths: Vec<String> = receiver.drain().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["/moved"]);
    }

    async fn an_attempt_after_a_rotation_is_signed_with_the_new_secret(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = 1_000).await;
        let mut receiver = Receiver::start().await;
        receiver.script([Reply::Status(500)]);
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let old_secret = webhook["secret"].as_str().unwrap().to_owned();
        app.publish("action.created", json!({})).await;
        let first = receiver.expect(WAIT).await;
        assert_eq!(first.header("x-devtune-signature"), devtune_signature(&old_secret, &first.body));

        let path = app.project_path(&format!("/webhooks/{}/rotate-secret", webhook["id"].as_str().unwrap()));
        let (_, rotated) = status_and_json(app.call(Method::POST, &path, Some(&app.key), None).await).await;
        let new_secret = rotated["data"]["secret"].as_str().unwrap();

        let retry = receiver.expect(WAIT).await;
        assert_eq!(retry.header("x-devtune-delivery"), first.header("x-devtune-delivery"));
        assert_eq!(retry.header("x-devtune-signature"), devtune_signature(new_secret, &retry.body));
        assert_ne!(retry.header("x-devtune-signature"), devtune_signature(&old_secret, &retry.body));
        assert!(standard_webhooks_verifies(&whsec(new_secret), &retry));
        assert!(!standard_webhooks_verifies(&whsec(&old_secret), &retry));
    }

    async fn deleting_a_webhook_cancels_its_pending_deliveries(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = 60_000).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        receiver.expect(WAIT).await;
        eventually(WAIT, "the first attempt to be recorded", || async {
            let delivery = app.delivery(&accepted["deliveryIds"][0]).await;
            (delivery["attemptCount"] == 1).then_some(())
        })
        .await;
        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        let delivery = app.delivery(&accepted["deliveryIds"][0]).await;
        assert_eq!(delivery["status"], "cancelled");
        assert_eq!(delivery["nextAttemptAt"], Value::Null);
        let after = app.publish("action.created", json!({})).await;
        assert_eq!(after["deliveries"], 0);
    }

    async fn an_idempotency_key_answers_with_the_first_event(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let url = app.url(&app.project_path("/events"));
        let send = |key: &'static str| {
            app.client.post(&url).bearer_auth(&app.key).header("idempotency-key", key)
                .json(&json!({ "event": "action.created", "data": { "n": 1 } })).send()
        };
        let first = send("order-42").await.unwrap();
        assert_eq!(first.status(), 202);
        assert!(!first.headers().contains_key("idempotent-replayed"));
        let first: Value = first.json().await.unwrap();
        let again = send("order-42").await.unwrap();
        assert_eq!(again.status(), 202);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["data"], first["data"]);
        let other: Value = send("order-43").await.unwrap().json().await.unwrap();
        assert_ne!(other["data"]["id"], first["data"]["id"]);

        let mut delivered = HashSet::new();
        for _ in 0..2 {
            delivered.insert(receiver.expect(WAIT).await.header("x-devtune-delivery").to_owned());
        }
        assert_eq!(delivered.len(), 2);
        assert!(receiver.next(Duration::from_millis(500)).await.is_none(), "the replay queued nothing");
    }

    async fn bad_events_are_rejected_and_queue_nothing(backend) {
        let app = spawn(backend, |c| c.max_event_bytes = 1024).await;
        let mut receiver = Receiver::start().await;
        app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let path = app.project_path("/events");
        let cases = [
            (json!({ "event": "action.deleted", "data": {} }), vec!["event"]),
            (json!({ "event": "webhook.test", "data": {} }), vec!["event"]),
            (json!({ "event": "action.created", "data": [1] }), vec!["data"]),
            (json!({}), vec!["event", "data"]),
        ];
        for (body, fields) in cases {
            let error = assert_error(app.post(&path, body.clone()).await, 400, "validation_error").await;
            let named: Vec<&str> = error["details"].as_array().unwrap().iter()
                .map(|d| d["field"].as_str().unwrap()).collect();
            assert_eq!(named, fields, "{body}");
        }
        let big = json!({ "event": "action.created", "data": { "blob": "x".repeat(2000) } });
        assert_error(app.post(&path, big).await, 413, "payload_too_large").await;
        let long_key = "k".repeat(256);
        let response = app.client.post(app.url(&path)).bearer_auth(&app.key)
            .header("idempotency-key", long_key)
            .json(&json!({ "event": "action.created", "data": {} })).send().await.unwrap();
        assert_error(response, 400, "bad_request").await;
        let read_only = app.key_with_scopes(&["webhooks.read", "webhooks.write"]).await;
        let forbidden = app.call(Method::POST, &path, Some(&read_only),
            Some(json!({ "event": "action.created", "data": {} }))).await;
        assert_error(forbidden, 403, "forbidden").await;
        assert!(receiver.next(Duration::from_millis(500)).await.is_none());
    }

    async fn the_delivery_log_pages_newest_first_and_filters_by_status(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let mut published = Vec::new();
        for n in 0..5 {
            published.push(app.publish("action.created", json!({ "n": n })).await["deliveryIds"][0].clone());
        }
        for id in &published {
            app.delivery_when(id, "succeeded").await;
        }
        receiver.drain();
        let base = app.project_path(&format!("/webhooks/{}/deliveries", webhook["id"].as_str().unwrap()));
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("{base}?limit=2&cursor={c}"),
                None => format!("{base}?limit=2"),
            };
            let (status, page) = status_and_json(app.get(&path).await).await;
            assert_eq!(status, 200, "{page}");
            pages += 1;
            for d in page["data"]["deliveries"].as_array().unwrap() {
                assert_eq!(d["status"], "succeeded");
                assert_eq!(d["event"], "action.created");
                seen.push(d["id"].clone());
            }
            match page["data"]["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut newest_first = published.clone();
        newest_first.reverse();
        assert_eq!(seen, newest_first);

        let (_, failed) = status_and_json(app.get(&format!("{base}?status=failed")).await).await;
        assert_eq!(failed["data"]["deliveries"], json!([]));
        let (_, succeeded) = status_and_json(app.get(&format!("{base}?status=succeeded")).await).await;
        assert_eq!(succeeded["data"]["deliveries"].as_array().unwrap().len(), 5);
        for bad in ["limit=0", "limit=101", "status=done", "cursor=nope"] {
            assert_error(app.get(&format!("{base}?{bad}")).await, 400, "bad_request").await;
        }
        let unknown = app.project_path(&format!("/webhooks/{}/deliveries", uuid::Uuid::new_v4()));
        assert_error(app.get(&unknown).await, 404, "not_found").await;
        let unknown = app.project_path(&format!("/deliveries/{}", uuid::Uuid::new_v4()));
        assert_error(app.get(&unknown).await, 404, "not_found").await;
    }

    async fn a_failed_delivery_can_be_retried_by_hand(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = 0).await;
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let id = &accepted["deliveryIds"][0];
        app.delivery_when(id, "failed").await;
        receiver.reply_by_default(Reply::Status(204));

        let retry = app.project_path(&format!("/deliveries/{}/retry", id.as_str().unwrap()));
        let (status, body) = status_and_json(app.call(Method::POST, &retry, Some(&app.key), None).await).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["data"]["id"], *id);
        let delivery = app.delivery_when(id, "succeeded").await;
        assert_eq!(delivery["attemptCount"], 2);
        assert_eq!(delivery["lastResponseStatus"], 204);

        let read_only = app.key_with_scopes(&["webhooks.read"]).await;
        assert_error(app.call(Method::POST, &retry, Some(&read_only), None).await, 403, "forbidden").await;
        let unknown = app.project_path(&format!("/deliveries/{}/retry", uuid::Uuid::new_v4()));
        assert_error(app.call(Method::POST, &unknown, Some(&app.key), None).await, 404, "not_found").await;
        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        app.call(Method::DELETE, &path, Some(&app.key), None).await;
        assert_error(app.call(Method::POST, &retry, Some(&app.key), None).await, 409, "conflict").await;
    }

    async fn a_test_event_goes_to_that_webhook_alone(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let target = app.create_webhook(&receiver.url("/target"), &["visibility.changed"]).await;
        app.create_webhook(&receiver.url("/bystander"), &["visibility.changed"]).await;
        let path = app.project_path(&format!("/webhooks/{}/test", target["id"].as_str().unwrap()));
        let (status, body) = status_and_json(app.call(Method::POST, &path, Some(&app.key), None).await).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["data"]["event"], "webhook.test");
        assert_eq!(body["data"]["deliveries"], 1);
        let request = receiver.expect(WAIT).await;
        assert_eq!(request.path, "/target");
        assert_eq!(request.header("x-devtune-event"), "webhook.test");
        assert_eq!(request.json()["data"]["webhookId"], target["id"]);
        let secret = target["secret"].as_str().unwrap();
        assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        assert!(receiver.next(Duration::from_millis(300)).await.is_none());

        let webhook_path = app.project_path(&format!("/webhooks/{}", target["id"].as_str().unwrap()));
        app.call(Method::DELETE, &webhook_path, Some(&app.key), None).await;
        assert_error(app.call(Method::POST, &path, Some(&app.key), None).await, 404, "not_found").await;
    }

    async fn private_addresses_are_refused_at_send_time(backend) {
        let app = spawn(backend, |c| {
            c.allow_private_targets = false;
            c.delivery.retry_max = 0;
        })
        .await;
        let mut receiver = Receiver::start().await;
        // Stored directly: the API would refuse this URL at registration already.
        let webhook = app
            .store
            .create_webhook(
                app.project_id,
                hookrelay::store::NewWebhook {
                    id: hookrelay::domain::WebhookId::generate(),
                    url: hookrelay::domain::EndpointUrl::parse(
                        &receiver.url("/internal"),
                        hookrelay::domain::UrlPolicy { allow_http: true, allow_private: true },
                    )
                    .unwrap(),
                    events: hookrelay::domain::EventTypes::parse(&["action.created"]).unwrap(),
                    filters: hookrelay::domain::Filters::default(),
                    secret: hookrelay::domain::WebhookSecret::generate(),
                    created_at: chrono::Utc::now(),
                },
                25,
                crate::common::cli_audit("webhook.created"),
            )
            .await
            .unwrap();
        assert!(webhook.is_active);
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        let error = delivery["attempts"][0]["error"].as_str().unwrap();
        assert!(error.contains("refused") && error.contains("loopback"), "{error}");
        assert!(receiver.next(Duration::from_millis(300)).await.is_none());
    }

    async fn stats_stay_exact_under_concurrent_deliveries(backend) {
        let app = spawn(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let url = app.url(&app.project_path("/events"));
        let mut publishes = tokio::task::JoinSet::new();
        for n in 0..40 {
            let request = app.client.post(&url).bearer_auth(&app.key)
                .json(&json!({ "event": "action.created", "data": { "n": n } }));
            publishes.spawn(async move { request.send().await.unwrap().status().as_u16() });
        }
        assert!(publishes.join_all().await.iter().all(|s| *s == 202));
        let stats = eventually(WAIT, "40 successful attempts", || async {
            let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
            (stats["totalDeliveries"] == 40).then_some(stats)
        })
        .await;
        assert_eq!(stats["successfulDeliveries"], 40);
        assert_eq!(stats["failedDeliveries"], 0);
    }

    async fn shutdown_releases_the_claims_it_cannot_finish(backend) {
        let mut app = spawn(backend, |c| {
            c.delivery.shutdown_grace_ms = 100;
            c.delivery.lease_ms = 60_000;
        })
        .await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Slow(Duration::from_secs(30), 200));
        app.create_webhook(&receiver.url("/stuck"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        receiver.expect(WAIT).await;
        app.stop().await;

        let store = app.reopen_store().await;
        let id: hookrelay::domain::DeliveryId = accepted["deliveryIds"][0].as_str().unwrap().parse().unwrap();
        let delivery = store.get_delivery(app.project_id, id).await.unwrap();
        assert_eq!(delivery.summary.status, hookrelay::domain::DeliveryStatus::Pending);
        assert_eq!(delivery.summary.attempt_count, 0, "the abandoned attempt is not counted");
        let due = delivery.summary.next_attempt_at.unwrap();
        assert!(due <= chrono::Utc::now(), "released for another instance at once, not after the lease");
        store.close().await;
    }

    async fn every_devtune_payload_example_arrives_unchanged(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let all = [
            "search-tracking.completed", "visibility.changed", "action.created", "action.updated",
            "action.recommendation.created", "action.recommendation.updated",
        ];
        app.create_webhook(&receiver.url("/hook"), &all).await;
        let examples = [
            ("search-tracking.completed", json!({ "runId": "run-uuid", "finalStatus": "completed" })),
            ("visibility.changed", json!({
                "runId": "run-uuid", "capturedOn": "2026-02-10",
                "metrics": { "visibilityScore": 0.75, "citationCount": 12, "brandMentionCount": 5, "sampleCount": 20 },
                "previousMetrics": null
            })),
            ("action.updated", json!({
                "event": "action.updated", "actionId": "action-uuid", "origin": "user",
                "actor": { "type": "user", "userId": "user-uuid" },
                "changedFields": ["status", "assigned_to"],
                "action": { "id": "action-uuid", "title": "Update the pricing page integration section",
                            "status": "in_progress", "surface": "backlog", "priority": "high" },
                "links": { "apiActionContext": "/api/v2/projects/your-project-id/actions/list?detailLevel=context" }
            })),
            ("action.recommendation.updated", json!({
                "event": "action.recommendation.updated", "actionId": "action-uuid", "origin": "system",
                "actor": { "type": "system" }, "changedFields": ["target_label", "priority"],
                "recommendationContext": { "bucket": "do_now", "changeReasons": ["concrete_target_changed", "prompt_set_changed"] }
            })),
        ];
        for (event, data) in &examples {
            app.publish(event, data.clone()).await;
            let request = receiver.expect(WAIT).await;
            let body = request.json();
            assert_eq!(request.header("x-devtune-event"), *event);
            assert_eq!(body["event"], *event);
            assert_eq!(body["data"], *data, "{event}");
            assert_eq!(body["projectId"], app.project_id.to_string());
        }
    }

    async fn a_binary_response_body_is_logged_safely(backend) {
        let app = spawn(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let mut body = b"ok\0\xff".to_vec();
        body.extend(std::iter::repeat_n(b'x', 4096));
        receiver.reply_by_default(Reply::Body(200, body));
        app.create_webhook(&receiver.url("/binary"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "succeeded").await;
        let kept = delivery["attempts"][0]["responseBody"].as_str().unwrap();
        assert!(kept.starts_with("ok\u{FFFD}\u{FFFD}x"), "{kept:?}");
        assert!(kept.len() <= 1024 + 8, "at most 1 KiB is kept");
    }

    async fn retrying_a_delivery_in_flight_leaves_the_attempt_alone(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Slow(Duration::from_millis(1500), 200));
        app.create_webhook(&receiver.url("/slow"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        receiver.expect(WAIT).await;
        let id = &accepted["deliveryIds"][0];
        let retry = app.project_path(&format!("/deliveries/{}/retry", id.as_str().unwrap()));
        let (status, body) = status_and_json(app.call(Method::POST, &retry, Some(&app.key), None).await).await;
        assert_eq!(status, 202);
        assert_eq!(body["data"]["status"], "pending");
        assert_eq!(body["data"]["nextAttemptAt"], Value::Null, "in flight, not scheduled");
        let delivery = app.delivery_when(id, "succeeded").await;
        assert_eq!(delivery["attemptCount"], 1);
        assert!(receiver.next(Duration::from_millis(500)).await.is_none(), "sent once");
    }

    async fn a_410_gone_disables_the_webhook_until_a_patch_re_enables_it(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(410));
        let webhook = app.create_webhook(&receiver.url("/gone"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        assert_eq!(delivery["attemptCount"], 1, "Gone is not retried");
        let details = app.webhook_details(&webhook["id"]).await;
        assert!(details["disabledReason"].as_str().unwrap().contains("410"), "{details}");
        assert!(crate::common::is_api_timestamp(&details["disabledAt"]));
        assert_eq!(details["isActive"], true, "disabled is not deleted");
        assert_eq!(app.publish("action.created", json!({})).await["deliveries"], 0);

        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        let refuse = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": false }))).await;
        assert_error(refuse, 400, "validation_error").await;
        let (status, enabled) = status_and_json(
            app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": true }))).await,
        )
        .await;
        assert_eq!(status, 200, "{enabled}");
        assert_eq!(enabled["data"]["disabledAt"], Value::Null);
        receiver.drain();
        receiver.reply_by_default(Reply::Status(200));
        let again = app.publish("action.created", json!({})).await;
        assert_eq!(again["deliveries"], 1);
        assert_eq!(receiver.expect(WAIT).await.path, "/gone");
    }

    async fn an_endpoint_failing_long_enough_is_disabled_and_its_queue_cancelled(backend) {
        let app = spawn(backend, |c| {
            c.delivery.disable_after_hours = 0;
            c.delivery.disable_min_failures = 3;
            c.delivery.retry_max = 10;
            c.delivery.retry_base_ms = 10;
        })
        .await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(503));
        let webhook = app.create_webhook(&receiver.url("/down"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "cancelled").await;
        assert_eq!(delivery["attemptCount"], 3);
        assert!(delivery["lastError"].as_str().unwrap().contains("disabled"), "{delivery}");
        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(
            details["disabledReason"],
            "every attempt failed for 0 hours (3 failures in a row)"
        );
        assert_eq!(receiver.drain().len(), 3);
        let create_with_enabled = app
            .post(&app.project_path("/webhooks"), json!({ "url": receiver.url("/x"), "events": ["action.created"], "enabled": true }))
            .await;
        assert_error(create_with_enabled, 400, "validation_error").await;
    }

    async fn misbehaving_receivers_fail_their_attempts_and_hold_back_no_one(backend) {
        use crate::common::raw::{Misbehaviour, RawServer};
        let app = spawn(backend, |c| {
            c.delivery.timeout_ms = 3_000;
            c.delivery.lease_ms = 8_000;
            c.delivery.retry_max = 0;
        })
        .await;
        let mut healthy = Receiver::start().await;
        app.create_webhook(&healthy.url("/healthy"), &["action.updated"]).await;
        let cases = [
            (Misbehaviour::SlowBody, "http", "timed out"),
            (Misbehaviour::Reset, "http", "failed"),
            (Misbehaviour::Garbage, "https", "failed"),
            (Misbehaviour::HugeBody, "http", ""),
        ];
        let mut servers = Vec::new();
        for (misbehaviour, scheme, _) in &cases {
            let server = RawServer::start(*misbehaviour).await;
            let url = format!("{scheme}://127.0.0.1:{}/hook", server.port);
            app.create_webhook(&url, &["action.created", "action.updated"]).await;
            servers.push(server);
        }
        let accepted = app.publish("action.created", json!({})).await;
        assert_eq!(accepted["deliveries"], 4);
        let started = std::time::Instant::now();
        app.publish("action.updated", json!({})).await;
        healthy.expect(WAIT).await;
        // The slow receivers hold an attempt for the full 3 s timeout; the healthy one must not wait for them.
        assert!(started.elapsed() < Duration::from_secs(2), "the healthy endpoint waited {:?}", started.elapsed());

        for (index, (misbehaviour, _, error)) in cases.iter().enumerate() {
            let id = &accepted["deliveryIds"][index];
            let delivery = eventually(WAIT, "the attempt to finish", || async {
                let delivery = app.delivery(id).await;
                (delivery["status"] != "pending").then_some(delivery)
            })
            .await;
            let attempt = &delivery["attempts"][0];
            match misbehaviour {
                Misbehaviour::HugeBody => {
                    assert_eq!(delivery["status"], "succeeded", "{delivery}");
                    assert!(attempt["responseBody"].as_str().unwrap().len() <= 1024);
                    let written = servers[index].written.load(std::sync::atomic::Ordering::SeqCst);
                    assert!(written < 16 * 1024 * 1024, "read {written} bytes of a 100 MB body");
                }
                _ => {
                    assert_eq!(delivery["status"], "failed", "{misbehaviour:?}: {delivery}");
                    let text = attempt["error"].as_str().unwrap();
                    assert!(text.contains(error), "{misbehaviour:?}: {text}");
                }
            }
        }
    }

    async fn a_backed_up_slow_endpoint_leaves_room_for_the_others(backend) {
        // Room for 8 attempts in all and 2 per endpoint: the slow endpoint's 40 deliveries
        // must not take the other 6 slots while they wait for its 2.
        let app = spawn(backend, |c| {
            c.delivery.concurrency = 8;
            c.delivery.endpoint_concurrency = 2;
        })
        .await;
        let mut slow = Receiver::start().await;
        slow.reply_by_default(Reply::Slow(Duration::from_secs(5), 200));
        let mut healthy = Receiver::start().await;
        app.create_webhook(&slow.url("/slow"), &["action.created"]).await;
        app.create_webhook(&healthy.url("/healthy"), &["action.updated"]).await;
        for n in 0..40 {
            app.publish("action.created", json!({ "n": n })).await;
        }
        for n in 0..5 {
            app.publish("action.updated", json!({ "n": n })).await;
            healthy.expect(WAIT).await;
        }
        // The slow endpoint's first two attempts take 5 s; a healthy endpoint starved of slots
        // would only get its turn after them, when the next two have been sent.
        let slow_answered = slow.drain().len();
        assert!(slow_answered <= 2, "the healthy endpoint waited for the slow one ({slow_answered} sent to it first)");
    }

    async fn a_rotation_with_a_grace_period_signs_with_both_secrets_meanwhile(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let old_secret = webhook["secret"].as_str().unwrap().to_owned();
        let path = app.project_path(&format!("/webhooks/{}/rotate-secret", webhook["id"].as_str().unwrap()));
        let (status, rotated) = status_and_json(app.post(&path, json!({ "graceSeconds": 3600 })).await).await;
        assert_eq!(status, 200, "{rotated}");
        let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();

        app.publish("action.created", json!({})).await;
        let during = receiver.expect(WAIT).await;
        assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
        assert!(standard_webhooks_verifies(&whsec(&new_secret), &during));
        assert!(standard_webhooks_verifies(&whsec(&old_secret), &during));
        assert_eq!(during.header("x-devtune-signature"), devtune_signature(&new_secret, &during.body));

        // A rotation without a grace period retires the previous secret at once.
        let (_, again) = status_and_json(app.call(Method::POST, &path, Some(&app.key), None).await).await;
        let newest = again["data"]["secret"].as_str().unwrap().to_owned();
        app.publish("action.created", json!({})).await;
        let after = receiver.expect(WAIT).await;
        assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
        assert!(standard_webhooks_verifies(&whsec(&newest), &after));
        assert!(!standard_webhooks_verifies(&whsec(&new_secret), &after));

        for bad in [json!({ "graceSeconds": -1 }), json!({ "graceSeconds": 604801 }), json!({ "graceSeconds": "60" })] {
            let error = assert_error(app.post(&path, bad.clone()).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], "graceSeconds", "{bad}");
        }
    }

    async fn secrets_are_encrypted_at_rest_and_deliveries_still_verify(backend) {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let app = spawn(backend, |c| c.database.encryption_key = Some(key)).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let secret = webhook["secret"].as_str().unwrap();
        let id: uuid::Uuid = webhook["id"].as_str().unwrap().parse().unwrap();
        let stored = crate::common::stored_secret_column(&app.config.database.url, id).await;
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        assert!(!stored.contains(secret), "a database dump does not yield the secret");
        app.publish("action.created", json!({})).await;
        let request = receiver.expect(WAIT).await;
        assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(details["secretPreview"], format!("\u{2026}{}", &secret[60..]));
    }
}

#[tokio::test]
async fn a_queue_behind_a_slow_endpoint_is_sent_once_across_instances() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = spawn(Backend::Postgres, |c| {
        c.delivery.endpoint_concurrency = 1;
        c.delivery.timeout_ms = 1_000;
        c.delivery.lease_ms = 1_500;
    })
    .await;
    let peer = app.spawn_peer().await;
    let mut receiver = Receiver::start().await;
    receiver.reply_by_default(Reply::Slow(Duration::from_millis(600), 200));
    app.create_webhook(&receiver.url("/queue"), &["action.created"])
        .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(app.publish("action.created", json!({ "n": n })).await["deliveryIds"][0].clone());
    }
    // Queued behind five 600 ms attempts, the last one waits past its 1.5 s lease; the peer may
    // take it over, and then only the peer sends it.
    for id in &ids {
        let delivery = app.delivery_when(id, "succeeded").await;
        assert_eq!(delivery["attemptCount"], 1);
    }
    let mut per_delivery = std::collections::HashMap::new();
    for request in receiver.drain() {
        *per_delivery
            .entry(request.header("x-devtune-delivery").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(per_delivery.len(), 6);
    assert!(per_delivery.values().all(|n| *n == 1), "{per_delivery:?}");
    drop(peer);
}
