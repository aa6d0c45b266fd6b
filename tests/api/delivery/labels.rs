//! A webhook's description, metadata and custom headers: kept, shown (headers masked), sent on
//! every attempt, sealed at rest, and refused when they would break a request.

use super::*;

backend_tests! {
    async fn custom_headers_go_on_every_attempt_and_stay_sealed_and_masked(backend) {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        let app = spawn(backend, |c| {
            c.database.encryption_key = Some(key);
            c.delivery.retry_max = Some(2);
        })
        .await;
        let mut receiver = Receiver::start().await;
        let body = json!({
            "url": receiver.url("/with-headers"),
            "events": ["action.created"],
            "description": "Billing sync",
            "metadata": { "team": "payments", "ticket": "PAY-12" },
            "headers": { "X-Api-Key": "key-abcd1234", "X-Tenant": "acme-0001" },
        });
        let (status, created) = status_and_json(app.post(&app.project_path("/webhooks"), body).await).await;
        assert_eq!(status, 201, "{created}");
        let webhook = created["data"].clone();
        assert_eq!(webhook["description"], "Billing sync");
        assert_eq!(webhook["metadata"], json!({ "team": "payments", "ticket": "PAY-12" }));
        assert!(!created.to_string().contains("key-abcd1234"), "values are never answered");

        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(details["headers"], json!({ "x-api-key": "\u{2026}1234", "x-tenant": "\u{2026}0001" }));
        let listed = status_and_json(app.get(&app.project_path("/webhooks")).await).await.1;
        assert_eq!(listed["data"]["webhooks"][0]["description"], "Billing sync");
        let id: uuid::Uuid = webhook["id"].as_str().unwrap().parse().unwrap();
        let stored = crate::common::stored_webhook_column(&app.config.database.url, id, "custom_headers")
            .await
            .expect("stored");
        assert!(stored.starts_with("enc:v1:") && !stored.contains("key-abcd1234"), "{stored}");

        // A failed first attempt and its retry both carry the headers.
        receiver.script([Reply::Status(500)]);
        let accepted = app.publish("action.created", json!({})).await;
        for _ in 0..2 {
            let request = receiver.expect(WAIT).await;
            assert_eq!(request.header("x-api-key"), "key-abcd1234");
            assert_eq!(request.header("x-tenant"), "acme-0001");
        }
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "succeeded").await;
        assert_eq!(delivery["attempts"][1]["requestHeaders"]["x-api-key"], "\u{2026}1234");

        // Removing them: an empty object, and null for the description.
        let path = app.project_path(&format!("/webhooks/{id}"));
        let changed = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "headers": {}, "description": null }))).await;
        let (status, changed) = status_and_json(changed).await;
        assert_eq!(status, 200, "{changed}");
        assert_eq!((&changed["data"]["headers"], &changed["data"]["description"]), (&json!({}), &Value::Null));
        assert_eq!(changed["data"]["metadata"]["team"], "payments", "metadata untouched");
        app.publish("action.created", json!({})).await;
        assert_eq!(receiver.expect(WAIT).await.headers.get("x-api-key"), None);
    }

    async fn bad_labels_and_headers_name_the_field_and_change_nothing(backend) {
        let app = spawn(backend, |c| c.delivery.worker = false).await;
        let url = "https://93.184.215.14/hook";
        let many: serde_json::Map<String, Value> = (0..17).map(|n| (format!("k{n}"), json!("v"))).collect();
        let cases = [
            (json!({ "headers": { "Host": "evil" } }), "headers"),
            (json!({ "headers": { "X-DevTune-Signature": "forged" } }), "headers"),
            (json!({ "headers": { "webhook-id": "x" } }), "headers"),
            (json!({ "headers": { "Content-Type": "text/plain" } }), "headers"),
            (json!({ "headers": { "X-Ok": "a\r\nInjected: yes" } }), "headers"),
            (json!({ "headers": { "X-Ok": "x".repeat(1025) } }), "headers"),
            (json!({ "headers": { "bad name": "v" } }), "headers"),
            (json!({ "headers": { "X-Ok": 5 } }), "headers"),
            (json!({ "description": "d".repeat(257) }), "description"),
            (json!({ "metadata": many }), "metadata"),
            (json!({ "metadata": { "k": 1 } }), "metadata"),
            (json!({ "description": "nul\u{0}byte" }), "description"),
            (json!({ "metadata": { "k": "nul\u{0}" } }), "metadata"),
        ];
        for (extra, field) in cases {
            let mut body = json!({ "url": url, "events": ["action.created"] });
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let error = assert_error(app.post(&app.project_path("/webhooks"), body.clone()).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], field, "{body}");
        }
        let listed = status_and_json(app.get(&app.project_path("/webhooks")).await).await.1;
        assert_eq!(listed["data"]["webhooks"], json!([]), "nothing was created");
    }
}
