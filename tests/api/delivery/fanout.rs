//! Who gets an event: subscriptions, filters, idempotency keys, bad events, test events and deleted webhooks.

use super::*;

backend_tests! {
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

    async fn an_idempotency_key_answers_with_the_first_event(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
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
        for accepted in [&first, &other] {
            app.delivery_when(&accepted["data"]["deliveryIds"][0], "succeeded").await;
        }
        assert_eq!(delivery_log(&app, &webhook).await.len(), 2, "the replay queued nothing");
        assert!(receiver.drain().is_empty());
    }

    async fn an_idempotency_key_reused_for_another_event_is_a_409(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created", "action.updated"]).await;
        let url = app.url(&app.project_path("/events"));
        let send = |body: Value| {
            app.client.post(&url).bearer_auth(&app.key).header("idempotency-key", "order-7").json(&body).send()
        };
        let first = send(json!({ "event": "action.created", "data": { "n": 1, "m": 2 } })).await.unwrap();
        assert_eq!(first.status(), 202);
        let same_in_another_order: Value = serde_json::from_str(r#"{ "event": "action.created", "data": { "m": 2, "n": 1 } }"#).unwrap();
        let replayed = send(same_in_another_order).await.unwrap();
        assert_eq!(replayed.status(), 202);
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        for other in [
            json!({ "event": "action.created", "data": { "n": 2, "m": 2 } }),
            json!({ "event": "action.updated", "data": { "n": 1, "m": 2 } }),
        ] {
            let error = assert_error(send(other).await.unwrap(), 409, "idempotency_key_reused").await;
            assert!(error["message"].as_str().unwrap().contains("different event"), "{error}");
        }
        receiver.expect(WAIT).await;
        let first: Value = first.json().await.unwrap();
        app.delivery_when(&first["data"]["deliveryIds"][0], "succeeded").await;
        assert_eq!(delivery_log(&app, &webhook).await.len(), 1, "the refused events queued nothing");
    }

    async fn bad_events_are_rejected_and_queue_nothing(backend) {
        let app = spawn(backend, |c| c.max_event_bytes = 1024).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
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
        assert!(delivery_log(&app, &webhook).await.is_empty(), "nothing was queued");
        assert!(receiver.drain().is_empty());
    }

    async fn a_test_event_goes_to_that_webhook_alone(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let target = app.create_webhook(&receiver.url("/target"), &["visibility.changed"]).await;
        let bystander = app.create_webhook(&receiver.url("/bystander"), &["visibility.changed"]).await;
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
        app.delivery_when(&body["data"]["deliveryIds"][0], "succeeded").await;
        assert!(delivery_log(&app, &bystander).await.is_empty(), "the bystander got nothing");
        assert!(receiver.drain().is_empty());

        let webhook_path = app.project_path(&format!("/webhooks/{}", target["id"].as_str().unwrap()));
        app.call(Method::DELETE, &webhook_path, Some(&app.key), None).await;
        assert_error(app.call(Method::POST, &path, Some(&app.key), None).await, 404, "not_found").await;
    }

    async fn deleting_a_webhook_cancels_its_pending_deliveries(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = Some(60_000)).await;
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
}
