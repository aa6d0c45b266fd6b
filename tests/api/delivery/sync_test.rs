//! Testing an endpoint synchronously, and seeing what each attempt sent.

use super::*;

async fn test_and_wait(app: &TestApp, webhook: &Value) -> (u16, Value) {
    let path = app.project_path(&format!(
        "/webhooks/{}/test?wait=true",
        webhook["id"].as_str().unwrap()
    ));
    status_and_json(app.call(Method::POST, &path, Some(&app.key), None).await).await
}

backend_tests! {
    async fn a_synchronous_test_answers_with_how_the_attempt_went(backend) {
        let app = spawn(backend, |c| {
            c.delivery.timeout_ms = 500;
            c.delivery.retry_max = Some(0);
        })
        .await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let secret = webhook["secret"].as_str().unwrap();

        receiver.reply_by_default(Reply::Body(200, b"thanks".to_vec()));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "{answer}");
        let result = &answer["data"]["result"];
        assert_eq!(result["outcome"], "succeeded", "{answer}");
        assert_eq!(result["responseStatus"], 200);
        assert_eq!(result["responseExcerpt"], "thanks");
        assert_eq!(result["error"], Value::Null);
        let request = receiver.expect(WAIT).await;
        let headers = &result["requestHeaders"];
        assert_eq!(headers["x-devtune-signature"], devtune_signature(secret, &request.body));
        assert_eq!(headers["webhook-id"], answer["data"]["deliveryId"]);
        assert_eq!(headers["webhook-signature"], request.header("webhook-signature"));

        // The log shows the body exactly as sent, and each attempt's headers.
        let delivery = app.delivery(&answer["data"]["deliveryId"]).await;
        assert_eq!(delivery["payload"].as_str().unwrap().as_bytes(), &request.body[..]);
        assert_eq!(delivery["attempts"][0]["requestHeaders"], *headers);

        receiver.reply_by_default(Reply::Status(500));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["result"]["outcome"], "failed");
        assert_eq!(answer["data"]["result"]["responseStatus"], 500);

        // A receiver that never answers: the attempt's timeout ends it, and the answer says so.
        receiver.reply_by_default(Reply::Slow(Duration::from_secs(5), 200));
        let (status, answer) = test_and_wait(&app, &webhook).await;
        assert_eq!(status, 200, "answered within the timeout plus a second: {answer}");
        let result = &answer["data"]["result"];
        assert_eq!((&result["outcome"], &result["responseStatus"]), (&json!("failed"), &Value::Null));
        assert!(result["error"].as_str().unwrap().starts_with("timed out"), "{result}");

        // Without wait, a test is queued as before.
        let path = app.project_path(&format!("/webhooks/{}/test", webhook["id"].as_str().unwrap()));
        assert_eq!(app.call(Method::POST, &path, Some(&app.key), None).await.status(), 202);
        let bad = app.project_path(&format!("/webhooks/{}/test?wait=soon", webhook["id"].as_str().unwrap()));
        assert_error(app.call(Method::POST, &bad, Some(&app.key), None).await, 400, "bad_request").await;
    }
}

backend_tests! {
    async fn a_replay_sends_the_same_bytes_elsewhere_and_changes_nothing_here(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut original = Receiver::start().await;
        let mut staging = Receiver::start().await;
        let webhook = app.create_webhook(&original.url("/prod"), &["action.created"]).await;
        let secret = webhook["secret"].as_str().unwrap();
        let accepted = app.publish("action.created", json!({ "actionId": "a-1" })).await;
        let sent = original.expect(WAIT).await;
        let id = &accepted["deliveryIds"][0];
        let before = app.delivery_when(id, "succeeded").await;
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();

        let path = app.project_path(&format!("/deliveries/{}/replay", id.as_str().unwrap()));
        let (status, answer) = status_and_json(app.post(&path, json!({ "url": staging.url("/staging") })).await).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["result"]["outcome"], "succeeded");
        assert_eq!(answer["data"]["deliveryId"], *id);
        let replayed = staging.expect(WAIT).await;
        assert_eq!(replayed.body, sent.body, "byte for byte");
        assert_eq!(replayed.header("x-devtune-delivery"), id.as_str().unwrap());
        assert_eq!(replayed.header("x-devtune-signature"), devtune_signature(secret, &replayed.body));
        assert!(standard_webhooks_verifies(&whsec(secret), &replayed));

        assert!(original.next(Duration::from_millis(300)).await.is_none(), "the original got nothing");
        assert_eq!(app.delivery(id).await, before, "the delivery is as it was");
        assert_eq!(app.webhook_details(&webhook["id"]).await["stats"], stats);
        let (_, log) = status_and_json(app.get(&app.project_path("/audit-log")).await).await;
        assert_eq!(log["data"]["entries"][0]["action"], "delivery.replayed");
    }

    async fn a_replay_to_a_private_address_is_refused(backend) {
        let app = spawn(backend, |c| {
            c.allow_private_targets = false;
            c.delivery.worker = false;
        })
        .await;
        app.create_webhook("https://93.184.215.14/hook", &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let path = app.project_path(&format!("/deliveries/{}/replay", accepted["deliveryIds"][0].as_str().unwrap()));
        for url in ["http://127.0.0.1:9009/hook", "http://[::1]:9009/", "http://10.0.0.8:8080/"] {
            let error = assert_error(app.post(&path, json!({ "url": url })).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], "url", "{url}");
        }
        assert_error(app.post(&path, json!({})).await, 400, "validation_error").await;
        let unknown = app.project_path(&format!("/deliveries/{}/replay", uuid::Uuid::new_v4()));
        assert_error(app.post(&unknown, json!({ "url": "https://93.184.215.14/x" })).await, 404, "not_found").await;
    }
}
