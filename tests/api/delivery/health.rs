//! Endpoint health and safety: 410 Gone, long failure runs, private addresses at send time.

use super::*;

backend_tests! {
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
        // Pausing a disabled webhook keeps it disabled; it only adds the pause.
        let (status, paused) = status_and_json(
            app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": false }))).await,
        )
        .await;
        assert_eq!(status, 200, "{paused}");
        assert!(crate::common::is_api_timestamp(&paused["data"]["disabledAt"]));
        assert!(crate::common::is_api_timestamp(&paused["data"]["pausedAt"]));
        assert_eq!(paused["data"]["enabled"], false);
        let refuse = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": "yes" }))).await;
        assert_error(refuse, 400, "validation_error").await;
        let (status, enabled) = status_and_json(
            app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": true }))).await,
        )
        .await;
        assert_eq!(status, 200, "{enabled}");
        assert_eq!(enabled["data"]["disabledAt"], Value::Null);
        assert_eq!(enabled["data"]["pausedAt"], Value::Null);
        assert_eq!(enabled["data"]["enabled"], true);
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
            c.delivery.retry_max = Some(10);
            c.delivery.retry_base_ms = Some(10);
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

    async fn private_addresses_are_refused_at_send_time(backend) {
        let app = spawn(backend, |c| {
            c.allow_private_targets = false;
            c.delivery.retry_max = Some(0);
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
                    kind: hookrelay::domain::WebhookKind::Webhook,
                    destination: hookrelay::domain::Destination::Push(
                        hookrelay::domain::EndpointUrl::parse(
                            &receiver.url("/internal"),
                            hookrelay::domain::UrlPolicy { allow_http: true, allow_private: true, allow_any_port: false },
                        )
                        .unwrap(),
                    ),
                    events: hookrelay::domain::EventTypes::parse(&["action.created"]).unwrap(),
                    filters: hookrelay::domain::Filters::default(),
                    secret: hookrelay::domain::WebhookSecret::generate(),
                    created_at: chrono::Utc::now(),
                    limits: Default::default(),
                    labels: Default::default(),
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
        assert!(receiver.drain().is_empty(), "nothing reached the loopback receiver");
    }
}
