//! Pausing a webhook: deliveries keep queuing, none starts, and resuming sends the backlog
//! oldest first; a test event still goes out while paused.

use super::*;

async fn set_enabled(app: &TestApp, webhook: &Value, enabled: bool) -> Value {
    let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
    let response = app
        .call(
            Method::PATCH,
            &path,
            Some(&app.key),
            Some(json!({ "enabled": enabled })),
        )
        .await;
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

backend_tests! {
    async fn a_paused_webhook_queues_events_and_resuming_sends_them_oldest_first(backend) {
        // One attempt at a time, so arrival order is sending order.
        let app = spawn(backend, |c| c.delivery.endpoint_concurrency = 1).await;
        let mut receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/paused"), &["action.created"]).await;

        let paused = set_enabled(&app, &webhook, false).await;
        assert_eq!(paused["enabled"], false);
        assert!(crate::common::is_api_timestamp(&paused["pausedAt"]), "{paused}");
        let mut ids = Vec::new();
        for seq in 0..20 {
            let accepted = app.publish("action.created", json!({ "seq": seq })).await;
            assert_eq!(accepted["deliveries"], 1, "a paused webhook still gets its deliveries");
            ids.push(accepted["deliveryIds"][0].clone());
        }

        // A test event is sent anyway, so a fix can be checked before resuming.
        let test = app.project_path(&format!("/webhooks/{}/test", webhook["id"].as_str().unwrap()));
        assert_eq!(app.call(Method::POST, &test, Some(&app.key), None).await.status(), 202);
        let request = receiver.expect(WAIT).await;
        assert_eq!(request.header("x-devtune-event"), "webhook.test");
        // Nothing else may arrive while paused: watch for a while, then read the queue.
        assert!(receiver.next(Duration::from_secs(1)).await.is_none(), "a paused webhook got an event");
        for id in &ids {
            let delivery = app.delivery(id).await;
            assert_eq!((&delivery["status"], &delivery["attemptCount"]), (&json!("pending"), &json!(0)));
        }
        let listed = status_and_json(app.get(&app.project_path("/webhooks")).await).await.1;
        assert_eq!(listed["data"]["webhooks"][0]["enabled"], false);

        let resumed = set_enabled(&app, &webhook, true).await;
        assert_eq!((&resumed["enabled"], &resumed["pausedAt"]), (&json!(true), &Value::Null));
        let mut seen = Vec::new();
        for _ in 0..20 {
            seen.push(receiver.expect(WAIT).await.json()["data"]["seq"].as_i64().unwrap());
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>(), "each once, oldest first");
        for id in &ids {
            app.delivery_when(id, "succeeded").await;
        }
        assert!(receiver.drain().is_empty(), "no duplicates");
    }
}
