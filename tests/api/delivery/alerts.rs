//! Alert endpoints: notices when a webhook starts failing, is disabled and recovers; kept apart
//! from the DevTune webhook routes.

use super::*;

/// Retries come fast, and three failures in a row make a run worth a notice.
fn alerting(c: &mut hookrelay::config::ServeConfig) {
    c.delivery.failing_after = 3;
    c.delivery.retry_max = Some(3);
    c.delivery.retry_base_ms = Some(10);
}

impl TestApp {
    async fn create_alert_endpoint(&self, url: &str, events: &[&str]) -> Value {
        let response = self
            .post(
                &self.project_path("/alert-endpoints"),
                json!({ "url": url, "events": events }),
            )
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// The notices an alert endpoint was sent, oldest first, by event type.
    async fn notices_logged(&self, alert_endpoint: &Value) -> Vec<String> {
        let path = self.project_path(&format!(
            "/alert-endpoints/{}/deliveries",
            alert_endpoint["id"].as_str().unwrap()
        ));
        let (status, body) = status_and_json(self.get(&path).await).await;
        assert_eq!(status, 200, "{body}");
        let mut events: Vec<String> = body["data"]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["event"].as_str().unwrap().to_owned())
            .collect();
        events.reverse();
        events
    }
}

const ALL_NOTICES: [&str; 3] = ["webhook.failing", "webhook.disabled", "webhook.recovered"];

/// The next notice, checked as a receiver would: both signatures under the alert endpoint's
/// secret, the DevTune envelope, the event header matching the body.
async fn expect_notice(alerts: &mut Receiver, secret: &str, event: &str, webhook: &Value) -> Value {
    let request = alerts.expect(WAIT).await;
    assert_eq!(
        request.header("x-devtune-signature"),
        devtune_signature(secret, &request.body)
    );
    assert!(standard_webhooks_verifies(&whsec(secret), &request));
    let body = request.json();
    assert_eq!(body["event"], event, "{body}");
    assert_eq!(request.header("x-devtune-event"), event);
    assert_eq!(
        keys(&body),
        ["accountId", "data", "event", "projectId", "timestamp"]
    );
    assert_eq!(body["data"]["webhookId"], webhook["id"], "{body}");
    assert_eq!(body["data"]["url"], webhook["url"], "{body}");
    body
}

backend_tests! {
    async fn a_broken_webhook_is_announced_failing_once_then_disabled_then_recovered(backend) {
        let app = spawn(backend, alerting).await;
        let mut alerts = Receiver::start().await;
        let alert_endpoint = app.create_alert_endpoint(&alerts.url("/ops"), &ALL_NOTICES).await;
        let secret = alert_endpoint["secret"].as_str().unwrap().to_owned();
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;

        let first = app.publish("action.created", json!({})).await;
        let failing = expect_notice(&mut alerts, &secret, "webhook.failing", &webhook).await;
        assert_eq!(failing["projectId"], app.project_id.to_string());
        assert_eq!(failing["accountId"], app.account_id.to_string());
        assert_eq!(failing["data"]["consecutiveFailures"], 3);
        assert!(failing["data"]["lastError"].as_str().unwrap().contains("500"), "{failing}");
        assert!(crate::common::is_api_timestamp(&failing["data"]["failingSince"]));
        assert_eq!(failing["data"]["disabledAt"], Value::Null);
        app.delivery_when(&first["deliveryIds"][0], "failed").await;

        // More failures in the same run, then a 410: no second failing notice comes first.
        receiver.script([Reply::Status(500), Reply::Status(410)]);
        let second = app.publish("action.created", json!({})).await;
        let disabled = expect_notice(&mut alerts, &secret, "webhook.disabled", &webhook).await;
        assert!(disabled["data"]["reason"].as_str().unwrap().contains("410"), "{disabled}");
        assert!(crate::common::is_api_timestamp(&disabled["data"]["disabledAt"]));
        assert_eq!(disabled["data"]["consecutiveFailures"], 6);
        app.delivery_when(&second["deliveryIds"][0], "failed").await;

        // A test event still reaches the disabled webhook; its failure disables nothing again.
        receiver.script([Reply::Status(410)]);
        let test = app.project_path(&format!("/webhooks/{}/test?wait=true", webhook["id"].as_str().unwrap()));
        let (status, tested) = status_and_json(app.call(Method::POST, &test, Some(&app.key), None).await).await;
        assert_eq!((status, &tested["data"]["result"]["outcome"]), (200, &json!("failed")), "{tested}");

        receiver.reply_by_default(Reply::Status(200));
        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        let (status, body) = status_and_json(
            app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": true }))).await,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let third = app.publish("action.created", json!({})).await;
        let recovered = expect_notice(&mut alerts, &secret, "webhook.recovered", &webhook).await;
        assert_eq!(recovered["data"]["consecutiveFailures"], 7, "the run the success ended, the test included");
        assert_eq!(recovered["data"]["lastError"], Value::Null);
        app.delivery_when(&third["deliveryIds"][0], "succeeded").await;
        let fourth = app.publish("action.created", json!({})).await;
        app.delivery_when(&fourth["deliveryIds"][0], "succeeded").await;

        assert_eq!(
            app.notices_logged(&alert_endpoint).await,
            ALL_NOTICES,
            "one notice per transition, and none for a success after the recovery"
        );
    }

    async fn a_failing_alert_endpoint_raises_no_notice_about_itself(backend) {
        let app = spawn(backend, alerting).await;
        let broken = Receiver::start().await;
        broken.reply_by_default(Reply::Status(503));
        let broken_endpoint = app.create_alert_endpoint(&broken.url("/ops"), &ALL_NOTICES).await;
        let mut healthy = Receiver::start().await;
        let healthy_endpoint = app.create_alert_endpoint(&healthy.url("/ops"), &["webhook.failing"]).await;
        let secret = healthy_endpoint["secret"].as_str().unwrap().to_owned();
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;

        let accepted = app.publish("action.created", json!({})).await;
        expect_notice(&mut healthy, &secret, "webhook.failing", &webhook).await;
        app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        let broken_log = eventually(WAIT, "the broken endpoint's notice to fail", || async {
            let path = app.project_path(&format!(
                "/alert-endpoints/{}/deliveries",
                broken_endpoint["id"].as_str().unwrap()
            ));
            let log = status_and_json(app.get(&path).await).await.1["data"]["deliveries"].clone();
            (log[0]["status"] == "failed").then_some(log)
        })
        .await;
        assert_eq!(broken_log[0]["attemptCount"], 4);
        let path = app.project_path(&format!("/alert-endpoints/{}", broken_endpoint["id"].as_str().unwrap()));
        let details = status_and_json(app.get(&path).await).await.1["data"].clone();
        assert!(details["stats"]["consecutiveFailures"].as_i64().unwrap() >= 3, "{details}");

        // The broken endpoint's run passed the threshold; had it raised a notice, it would be
        // in the healthy endpoint's log, recorded in the same transaction as its failure.
        assert_eq!(app.notices_logged(&healthy_endpoint).await, ["webhook.failing"]);
        assert!(healthy.drain().is_empty());
    }

    async fn alert_endpoints_have_routes_of_their_own_and_stay_off_the_devtune_ones(backend) {
        let app = spawn(backend, |c| c.max_webhooks_per_project = 1).await;
        let alerts = Receiver::start().await;
        let created = app.create_alert_endpoint(&alerts.url("/ops"), &["webhook.disabled"]).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(created["secret"].as_str().unwrap().len() >= 32, "{created}");
        assert_eq!(created["events"], json!(["webhook.disabled"]));
        assert_eq!(created["isActive"], true);
        let webhook = app.create_webhook(&alerts.url("/hook"), &["action.created"]).await;
        assert_eq!(keys(&created), keys(&webhook), "the same shape as a created webhook");

        // The DevTune routes neither take notice types nor see alert endpoints.
        let refused = app
            .post(&app.project_path("/webhooks"), json!({ "url": alerts.url("/x"), "events": ["webhook.failing"] }))
            .await;
        let error = assert_error(refused, 400, "validation_error").await;
        assert_eq!(error["details"][0]["field"], "events", "{error}");
        let listed = status_and_json(app.get(&app.project_path("/webhooks")).await).await.1;
        assert_eq!(listed["data"]["webhooks"].as_array().unwrap().len(), 1, "{listed}");
        let as_webhook = app.project_path(&format!("/webhooks/{id}"));
        assert_error(app.get(&as_webhook).await, 404, "not_found").await;
        let patch = app.call(Method::PATCH, &as_webhook, Some(&app.key), Some(json!({ "enabled": false }))).await;
        assert_error(patch, 404, "not_found").await;
        assert_error(app.call(Method::DELETE, &as_webhook, Some(&app.key), None).await, 404, "not_found").await;
        let webhook_as_alert = app.project_path(&format!("/alert-endpoints/{}", webhook["id"].as_str().unwrap()));
        assert_error(app.get(&webhook_as_alert).await, 404, "not_found").await;

        // Their own validation, in the documented Error shape.
        for (body, field) in [
            (json!({ "url": alerts.url("/x"), "events": ["action.created"] }), "events"),
            (json!({ "url": alerts.url("/x"), "events": [] }), "events"),
            (json!({ "events": ["webhook.failing"] }), "url"),
            (json!({ "url": "ftp://example.com/x", "events": ["webhook.failing"] }), "url"),
        ] {
            let error = assert_error(app.post(&app.project_path("/alert-endpoints"), body).await, 400, "validation_error").await;
            assert_eq!(error["details"][0]["field"], field, "{error}");
        }
        let reader = app.key_with_scopes(&["webhooks.read"]).await;
        let forbidden = app
            .call(Method::POST, &app.project_path("/alert-endpoints"), Some(&reader), Some(json!({ "url": alerts.url("/x"), "events": ["webhook.failing"] })))
            .await;
        assert_error(forbidden, 403, "forbidden").await;

        // Five per project, beside the webhook cap (1 here, and used).
        for _ in 0..4 {
            app.create_alert_endpoint(&alerts.url("/more"), &["webhook.failing"]).await;
        }
        let sixth = app.post(&app.project_path("/alert-endpoints"), json!({ "url": alerts.url("/x"), "events": ["webhook.failing"] })).await;
        let error = assert_error(sixth, 400, "webhook_limit_reached").await;
        assert!(error["message"].as_str().unwrap().contains("5 active alert endpoints"), "{error}");

        let one = app.project_path(&format!("/alert-endpoints/{id}"));
        let (status, details) = status_and_json(app.get(&one).await).await;
        assert_eq!(status, 200, "{details}");
        assert!(details["data"]["secretPreview"].as_str().unwrap().ends_with(&created["secret"].as_str().unwrap()[created["secret"].as_str().unwrap().len() - 4..]));
        let rotate = app.project_path(&format!("/alert-endpoints/{id}/rotate-secret"));
        let (status, rotated) = status_and_json(app.call(Method::POST, &rotate, Some(&app.key), None).await).await;
        assert_eq!(status, 200, "{rotated}");
        assert_ne!(rotated["data"]["secret"], created["secret"]);

        let test = app.project_path(&format!("/alert-endpoints/{id}/test?wait=true"));
        let (status, tested) = status_and_json(app.call(Method::POST, &test, Some(&app.key), None).await).await;
        assert_eq!(status, 200, "{tested}");
        assert_eq!(tested["data"]["result"]["outcome"], "succeeded", "{tested}");
        // Its deliveries replay like any other.
        let replay = app.project_path(&format!("/deliveries/{}/replay", tested["data"]["deliveryId"].as_str().unwrap()));
        let (status, replayed) = status_and_json(app.post(&replay, json!({ "url": alerts.url("/elsewhere") })).await).await;
        assert_eq!((status, &replayed["data"]["result"]["outcome"]), (200, &json!("succeeded")), "{replayed}");

        let (status, deleted) = status_and_json(app.call(Method::DELETE, &one, Some(&app.key), None).await).await;
        assert_eq!((status, deleted), (200, json!({ "deleted": true })));
        let listed = status_and_json(app.get(&app.project_path("/alert-endpoints")).await).await.1;
        assert_eq!(listed["data"]["alertEndpoints"].as_array().unwrap().len(), 4, "{listed}");
        assert!(listed["data"]["alertEndpoints"].as_array().unwrap().iter().all(|e| e["id"] != id.as_str()));

        let audit = status_and_json(app.get(&app.project_path("/audit-log")).await).await.1;
        let actions: Vec<&str> = audit["data"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["targetId"] == id.as_str())
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["alert_endpoint.deleted", "alert_endpoint.test_sent", "alert_endpoint.secret_rotated", "alert_endpoint.created"]
        );
    }
}

#[tokio::test]
async fn two_instances_on_one_postgres_send_each_notice_once() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = spawn(Backend::Postgres, |c| {
        c.delivery.failing_after = 3;
        c.delivery.retry_max = Some(0);
    })
    .await;
    let peer = app.spawn_peer().await;
    let mut alerts = Receiver::start().await;
    let alert_endpoint = app
        .create_alert_endpoint(&alerts.url("/ops"), &ALL_NOTICES)
        .await;
    let secret = alert_endpoint["secret"].as_str().unwrap().to_owned();
    let receiver = Receiver::start().await;
    receiver.reply_by_default(Reply::Status(500));
    let webhook = app
        .create_webhook(&receiver.url("/hook"), &["action.created"])
        .await;

    // Twenty failing deliveries, published to both instances at once, so both record failures
    // of the one webhook while its run crosses the threshold.
    let publish_to = |base: String| {
        let client = app.client.clone();
        let key = app.key.clone();
        let path = app.project_path("/events");
        async move {
            let response = client
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .json(&json!({ "event": "action.created", "data": {} }))
                .send()
                .await
                .unwrap();
            let (status, body) = status_and_json(response).await;
            assert_eq!(status, 202, "{body}");
            body["data"]["deliveryIds"][0].clone()
        }
    };
    let mut published = Vec::new();
    for n in 0..20 {
        let base = if n % 2 == 0 {
            app.address.clone()
        } else {
            peer.clone()
        };
        published.push(tokio::spawn(publish_to(base)));
    }
    let mut deliveries = Vec::new();
    for handle in published {
        deliveries.push(handle.await.unwrap());
    }
    for delivery in &deliveries {
        app.delivery_when(delivery, "failed").await;
    }
    expect_notice(&mut alerts, &secret, "webhook.failing", &webhook).await;

    receiver.reply_by_default(Reply::Status(200));
    let mut recovered = Vec::new();
    for n in 0..10 {
        let base = if n % 2 == 0 {
            app.address.clone()
        } else {
            peer.clone()
        };
        recovered.push(tokio::spawn(publish_to(base)));
    }
    for handle in recovered {
        let delivery = handle.await.unwrap();
        app.delivery_when(&delivery, "succeeded").await;
    }
    expect_notice(&mut alerts, &secret, "webhook.recovered", &webhook).await;
    let logged = eventually(WAIT, "both notices delivered", || async {
        let notices = app.notices_logged(&alert_endpoint).await;
        (notices.len() >= 2).then_some(notices)
    })
    .await;
    assert_eq!(logged, ["webhook.failing", "webhook.recovered"]);
    assert!(alerts.drain().is_empty(), "no notice was sent twice");
}
