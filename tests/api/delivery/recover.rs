//! Recovering failed deliveries in bulk: a dry run that counts, filters that narrow, the same
//! delivery ids the second time, and refusals that change nothing.

use super::*;

async fn recover(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    status_and_json(app.post(&app.project_path(path), body).await).await
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Publishes `count` events of `event` and waits until each of their deliveries failed.
async fn failed_deliveries(app: &TestApp, event: &str, count: usize) -> Vec<Value> {
    let mut ids = Vec::new();
    for seq in 0..count {
        let accepted = app.publish(event, json!({ "seq": seq })).await;
        ids.extend(accepted["deliveryIds"].as_array().unwrap().iter().cloned());
    }
    for id in &ids {
        app.delivery_when(id, "failed").await;
    }
    ids
}

backend_tests! {
    async fn failed_deliveries_come_back_in_bulk_with_their_ids(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = Some(0)).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = app.create_webhook(&receiver.url("/down"), &["action.created", "action.updated"]).await;
        let route = format!("/webhooks/{}/recover", webhook["id"].as_str().unwrap());
        let start = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
        let mut ids = failed_deliveries(&app, "action.created", 15).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let middle = chrono::Utc::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        ids.extend(failed_deliveries(&app, "action.updated", 15).await);
        receiver.drain();

        // A dry run counts and changes nothing.
        let since = rfc3339(start);
        let (status, dry) = recover(&app, &route, json!({ "since": since, "dryRun": true })).await;
        assert_eq!(status, 200, "{dry}");
        assert_eq!(dry["data"], json!({ "matched": 30, "queued": 0, "truncated": false }));
        assert_eq!(app.delivery(&ids[0]).await["status"], "failed");

        // Each filter narrows the set.
        let narrowed = [
            (json!({ "since": rfc3339(middle) }), 15),
            (json!({ "since": since, "until": rfc3339(middle) }), 15),
            (json!({ "since": since, "events": ["action.updated"] }), 15),
            (json!({ "since": since, "statuses": ["cancelled"] }), 0),
            (json!({ "since": since, "statuses": ["failed", "cancelled"] }), 30),
        ];
        for (mut body, matched) in narrowed {
            body["dryRun"] = json!(true);
            let (status, answer) = recover(&app, &route, body.clone()).await;
            assert_eq!((status, &answer["data"]["matched"]), (200, &json!(matched)), "{body}");
        }

        // A paused webhook is refused, with nothing changed.
        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": false }))).await;
        let refused = app.post(&app.project_path(&route), json!({ "since": since })).await;
        let error = assert_error(refused, 409, "conflict").await;
        assert!(error["message"].as_str().unwrap().contains("paused"), "{error}");
        app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": true }))).await;
        assert_eq!(app.delivery(&ids[29]).await["status"], "failed");

        // The real call: every one comes back once, under its own delivery id.
        receiver.reply_by_default(Reply::Status(200));
        let (status, done) = recover(&app, &route, json!({ "since": since })).await;
        assert_eq!(status, 200, "{done}");
        assert_eq!(done["data"], json!({ "matched": 30, "queued": 30, "truncated": false }));
        let mut arrived = std::collections::HashSet::new();
        for _ in 0..30 {
            let request = receiver.expect(WAIT).await;
            assert_eq!(request.header("webhook-id"), request.header("x-devtune-delivery"));
            assert!(arrived.insert(request.header("x-devtune-delivery").to_owned()), "sent twice");
        }
        let expected: std::collections::HashSet<String> =
            ids.iter().map(|id| id.as_str().unwrap().to_owned()).collect();
        assert_eq!(arrived, expected, "the original delivery ids");
        for id in &ids {
            let delivery = app.delivery_when(id, "succeeded").await;
            assert_eq!(delivery["attemptCount"], 2, "the failed attempt stays in the log");
        }
        assert!(receiver.drain().is_empty());

        let (_, log) = status_and_json(app.get(&app.project_path("/audit-log")).await).await;
        let entry = &log["data"]["entries"][0];
        assert_eq!(entry["action"], "deliveries.recovered");
        assert_eq!(entry["targetId"], webhook["id"]);
        assert_eq!((&entry["changes"]["matched"], &entry["changes"]["queued"]), (&json!(30), &json!(30)));
        assert_eq!(entry["changes"]["statuses"], json!(["failed"]));
    }

    async fn a_project_wide_recover_takes_the_webhooks_it_is_given(backend) {
        let app = spawn(backend, |c| c.delivery.retry_max = Some(0)).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let first = app.create_webhook(&receiver.url("/first"), &["action.created"]).await;
        let second = app.create_webhook(&receiver.url("/second"), &["action.created"]).await;
        let since = rfc3339(chrono::Utc::now() - chrono::TimeDelta::seconds(1));
        failed_deliveries(&app, "action.created", 4).await;
        receiver.drain();

        let all = json!({ "since": since, "dryRun": true });
        let (status, answer) = recover(&app, "/deliveries/recover", all).await;
        assert_eq!((status, &answer["data"]["matched"]), (200, &json!(8)), "{answer}");
        receiver.reply_by_default(Reply::Status(200));
        let only_second = json!({ "since": since, "webhookIds": [second["id"]] });
        let (status, answer) = recover(&app, "/deliveries/recover", only_second).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["data"]["queued"], 4);
        for _ in 0..4 {
            assert_eq!(receiver.expect(WAIT).await.path, "/second");
        }
        let left = json!({ "since": since, "webhookIds": [first["id"], second["id"]], "dryRun": true });
        let (_, answer) = recover(&app, "/deliveries/recover", left).await;
        assert_eq!(answer["data"]["matched"], 4, "the first webhook's are still failed");

        let unknown = json!({ "since": since, "webhookIds": [uuid::Uuid::new_v4().to_string()] });
        assert_error(app.post(&app.project_path("/deliveries/recover"), unknown).await, 404, "not_found").await;
    }

    async fn bad_recover_requests_name_the_field_and_change_nothing(backend) {
        let app = spawn(backend, |c| c.delivery.worker = false).await;
        let webhook = app.create_webhook("https://93.184.215.14/hook", &["action.created"]).await;
        let route = app.project_path(&format!("/webhooks/{}/recover", webhook["id"].as_str().unwrap()));
        let now = chrono::Utc::now();
        let cases = [
            (json!({}), "since"),
            (json!({ "since": "yesterday" }), "since"),
            (json!({ "since": rfc3339(now - chrono::TimeDelta::days(31)) }), "since"),
            (json!({ "since": rfc3339(now), "until": rfc3339(now - chrono::TimeDelta::hours(1)) }), "until"),
            (json!({ "since": rfc3339(now), "statuses": ["pending"] }), "statuses"),
            (json!({ "since": rfc3339(now), "statuses": [] }), "statuses"),
            (json!({ "since": rfc3339(now), "events": ["nope.nope"] }), "events"),
            (json!({ "since": rfc3339(now), "dryRun": "yes" }), "dryRun"),
            (json!({ "since": rfc3339(now), "webhookIds": [webhook["id"]] }), "webhookIds"),
        ];
        for (body, field) in cases {
            let error = assert_error(app.post(&route, body.clone()).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], field, "{body}");
        }
        let read_only = app.key_with_scopes(&["webhooks.read"]).await;
        let refused = app.call(Method::POST, &route, Some(&read_only), Some(json!({ "since": rfc3339(now) }))).await;
        assert_error(refused, 403, "forbidden").await;
        let (_, log) = status_and_json(app.get(&app.project_path("/audit-log")).await).await;
        let recorded = log["data"]["entries"].as_array().unwrap().iter().any(|e| e["action"] == "deliveries.recovered");
        assert!(!recorded, "a refused call records nothing");
    }
}
