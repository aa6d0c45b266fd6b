//! Failed attempts: the retry schedule, timeouts, redirects, odd response bodies, shutdown.

use super::*;

backend_tests! {
    async fn fails_twice_then_succeeds_with_growing_gaps(backend) {
        let app = spawn(backend, |c| c.delivery.retry_base_ms = Some(300)).await;
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
        assert_eq!(ids, HashSet::from([accepted["deliveryIds"][0].as_str().unwrap()]), "one delivery id across retries");
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
            c.delivery.retry_max = Some(0);
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

    async fn a_refused_connection_is_logged_for_the_tenant_as_its_kind_alone(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = Some(0)).await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        app.create_webhook(&format!("http://{closed}/hook"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        assert_eq!(delivery["lastError"], "connection refused", "{delivery}");
        assert_eq!(delivery["attempts"][0]["error"], "connection refused");
    }

    async fn a_redirect_is_a_failure_and_is_not_followed(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = Some(0)).await;
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
}
