//! Signatures: both schemes, tampering, rotations and their grace periods, secrets at rest, and the payloads as documented.

use super::*;

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
        // The create answer gives that key in the form Standard Webhooks libraries take.
        let standard = webhook["standardWebhooksSecret"].as_str().unwrap();
        assert_eq!(standard, whsec(secret));
        assert!(standard_webhooks_verifies(standard, &request));
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
        assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        assert!(standard_webhooks_verifies(&whsec(secret), &request), "the body as sent verifies");
        let mut body = request.body.to_vec();
        body[2] ^= 0x01;
        request.body = body.into();
        assert_ne!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
        assert!(!standard_webhooks_verifies(&whsec(secret), &request));
    }

    async fn an_attempt_after_a_rotation_is_signed_with_the_new_secret(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = Some(1_000)).await;
        let mut receiver = Receiver::start().await;
        receiver.script([Reply::Status(500)]);
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let old_secret = webhook["secret"].as_str().unwrap().to_owned();
        let accepted = app.publish("action.created", json!({})).await;
        let first = receiver.expect(WAIT).await;
        assert_eq!(first.header("x-devtune-delivery"), accepted["deliveryIds"][0]);
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

    async fn a_rotation_with_a_grace_period_signs_with_both_secrets_meanwhile(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let old_secret = webhook["secret"].as_str().unwrap().to_owned();
        let path = app.project_path(&format!("/webhooks/{}/rotate-secret", webhook["id"].as_str().unwrap()));
        let (status, rotated) = status_and_json(app.post(&path, json!({ "graceSeconds": 3600 })).await).await;
        assert_eq!(status, 200, "{rotated}");
        let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();
        assert_eq!(rotated["data"]["standardWebhooksSecret"], whsec(&new_secret));

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

        for bad in [
            json!({ "graceSeconds": -1 }),
            json!({ "graceSeconds": 604801 }),
            json!({ "graceSeconds": "60" }),
            json!({ "graceSeconds": 10.5 }),
        ] {
            let error = assert_error(app.post(&path, bad.clone()).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], "graceSeconds", "{bad}");
        }
        // JSON Schema counts 10.0 as an integer; so does the API.
        let (status, body) = status_and_json(app.post(&path, json!({ "graceSeconds": 10.0 })).await).await;
        assert_eq!(status, 200, "{body}");
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

    async fn a_secret_sealed_with_a_missing_key_fails_only_its_webhook_and_says_why(backend) {
        use base64::Engine;
        let encode = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let app = spawn(backend, |c| c.database.encryption_key = Some(encode(2))).await;
        // Another instance, configured with a key this one never had, seals the orphan's secret.
        let elsewhere = app
            .spawn_peer_with(|c| {
                c.database.encryption_key = Some(encode(1));
                c.delivery.worker = false;
            })
            .await;
        let mut receiver = Receiver::start().await;
        let created = app
            .client
            .post(format!("{elsewhere}{}", app.project_path("/webhooks")))
            .bearer_auth(&app.key)
            .json(&json!({ "url": receiver.url("/orphan"), "events": ["action.created"] }))
            .send()
            .await
            .unwrap();
        let (status, orphan) = status_and_json(created).await;
        assert_eq!(status, 201);
        let orphan = orphan["data"].clone();
        let healthy = app.create_webhook(&receiver.url("/healthy"), &["action.created"]).await;

        // One event for both, in one claim: the healthy webhook gets it.
        let accepted = app.publish("action.created", json!({ "actionId": "a" })).await;
        assert_eq!(accepted["deliveries"], 2);
        let request = receiver.expect(WAIT).await;
        assert_eq!(request.path, "/healthy");
        let secret = healthy["secret"].as_str().unwrap();
        assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));

        // The orphan's delivery fails unsent, naming the cause.
        let log = eventually(WAIT, "the orphan's failed attempt", || async {
            let log = delivery_log(&app, &orphan).await;
            log.first().filter(|d| d["attemptCount"] != 0).cloned()
        })
        .await;
        let error = log["lastError"].as_str().unwrap().to_owned();
        assert!(error.contains("encryption key") && error.contains("operator"), "{error}");
        assert_eq!(log["lastResponseStatus"], Value::Null);

        // Reads that need the secret say why they cannot answer; the healthy webhook's do not.
        let path = app.project_path(&format!("/webhooks/{}", orphan["id"].as_str().unwrap()));
        let error = assert_error(app.get(&path).await, 503, "service_unavailable").await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("HOOKRELAY_ENCRYPTION_OLD_KEYS"), "{message}");
        let path = app.project_path(&format!("/webhooks/{}", healthy["id"].as_str().unwrap()));
        assert_eq!(app.get(&path).await.status(), 200);
        assert!(receiver.drain().is_empty(), "nothing reached the orphan's URL");
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
}
