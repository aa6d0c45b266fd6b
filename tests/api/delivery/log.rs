//! The delivery log and its controls: paging, filtering, manual retries.

use super::*;

backend_tests! {
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
        let app = spawn(backend, |c| c.delivery.retry_max = Some(0)).await;
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
        assert_eq!(delivery["nextAttemptAt"], Value::Null, "nothing more is scheduled");
        assert!(receiver.drain().is_empty(), "sent once");
    }
}
