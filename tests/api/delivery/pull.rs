//! Pull-mode webhooks: leased over the API, signed as pushes are, acknowledged into the same
//! attempts, retries, stats and delivery log; shared by pollers on one instance or several.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

/// A poller's view of the API: a base URL (this instance or a peer) and a key.
struct Poller<'a> {
    app: &'a TestApp,
    base: String,
    key: String,
}

impl<'a> Poller<'a> {
    fn of(app: &'a TestApp) -> Self {
        Self::at(app, &app.address)
    }

    fn at(app: &'a TestApp, base: &str) -> Self {
        Self {
            app,
            base: base.to_owned(),
            key: app.key.clone(),
        }
    }

    fn path(&self, webhook: &Value, rest: &str) -> String {
        let id = webhook["id"].as_str().unwrap();
        format!(
            "{}{}",
            self.base,
            self.app.project_path(&format!("/webhooks/{id}{rest}"))
        )
    }

    /// `GET …/poll?{query}`, as (status, body).
    async fn poll_raw(&self, webhook: &Value, query: &str) -> (u16, Value) {
        let response = self
            .app
            .client
            .get(format!("{}?{query}", self.path(webhook, "/poll")))
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(45))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    async fn poll(&self, webhook: &Value, query: &str) -> Vec<Value> {
        let (status, body) = self.poll_raw(webhook, query).await;
        assert_eq!(status, 200, "{body}");
        body["data"]["deliveries"].as_array().unwrap().clone()
    }

    async fn ack_raw(&self, webhook: &Value, results: Value) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(self.path(webhook, "/poll/ack"))
            .bearer_auth(&self.key)
            .json(&json!({ "results": results }))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    async fn ack(&self, webhook: &Value, results: Value) -> Value {
        let (status, body) = self.ack_raw(webhook, results).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }
}

/// An acknowledgement of `item` with an HTTP status.
fn answered(item: &Value, status: u16) -> Value {
    json!({ "deliveryId": item["deliveryId"], "leaseId": item["leaseId"], "status": status, "durationMs": 2 })
}

/// The same, as a client whose numbers are floats sends it: JSON Schema counts 204.0 as an
/// integer.
fn answered_in_floats(item: &Value, status: u16) -> Value {
    json!({ "deliveryId": item["deliveryId"], "leaseId": item["leaseId"], "status": f64::from(status), "durationMs": 2.0 })
}

/// A pulled delivery as the request a push would have sent, for the signature checks.
fn as_request(item: &Value) -> Received {
    let mut headers = HeaderMap::new();
    for (name, value) in item["headers"].as_object().unwrap() {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    Received {
        path: String::new(),
        headers,
        body: item["body"].as_str().unwrap().to_owned().into(),
        at: Instant::now(),
    }
}

backend_tests! {
    async fn fifty_events_reach_a_poller_signed_as_pushes_and_acknowledged_into_the_stats(backend) {
        let app = spawn(backend, |_| {}).await;
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        assert_eq!(webhook["mode"], "pull");
        assert!(webhook.get("url").is_none(), "a pull webhook has no url: {webhook}");
        let secret = webhook["secret"].as_str().unwrap();
        // A rate-limited push webhook's deliveries go through the workers' queue reads, so once
        // they have all arrived the workers have read a queue that held the pull deliveries.
        let mut receiver = Receiver::start().await;
        let pushed = app
            .post(&app.project_path("/webhooks"), json!({ "url": receiver.url("/push"), "events": ["action.created"], "rateLimit": 1000 }))
            .await;
        assert_eq!(pushed.status(), 201);
        let mut published = HashSet::new();
        for n in 0..50 {
            let accepted = app.publish("action.created", json!({ "n": n })).await;
            for id in accepted["deliveryIds"].as_array().unwrap() {
                published.insert(id.as_str().unwrap().to_owned());
            }
        }
        for _ in 0..50 {
            let push = receiver.expect(WAIT).await;
            assert!(published.remove(push.header("x-devtune-delivery")), "a push of this test");
        }
        assert_eq!(published.len(), 50, "what is left is the pull webhook's");
        let waiting = app.webhook_details(&webhook["id"]).await;
        assert_eq!(waiting["queue"], json!({ "due": 50, "scheduled": 0, "leased": 0 }), "the workers left them alone");
        let poller = Poller::of(&app);
        let mut pulled = Vec::new();
        while pulled.len() < 50 {
            let batch = poller.poll(&webhook, "limit=100&wait=5").await;
            assert!(!batch.is_empty(), "the queue ran dry after {} of 50", pulled.len());
            pulled.extend(batch);
        }
        assert_eq!(pulled.len(), 50);
        let mut numbers = HashSet::new();
        for item in &pulled {
            assert_eq!(item["eventType"], "action.created");
            assert_eq!(item["attempt"], 1);
            let request = as_request(item);
            assert_eq!(request.header("x-devtune-delivery"), item["deliveryId"]);
            assert_eq!(request.header("content-type"), "application/json");
            assert_eq!(request.header("x-devtune-signature"), devtune_signature(secret, &request.body));
            assert!(standard_webhooks_verifies(&whsec(secret), &request), "{item}");
            numbers.insert(request.json()["data"]["n"].as_i64().unwrap());
        }
        let ids: HashSet<String> = pulled.iter().map(|i| i["deliveryId"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, published, "every delivery once");
        assert_eq!(numbers.len(), 50);

        let leased = app.webhook_details(&webhook["id"]).await;
        assert_eq!(leased["queue"], json!({ "due": 0, "scheduled": 0, "leased": 50 }));
        let mut results: Vec<Value> = pulled.iter().map(|item| answered(item, 200)).collect();
        // A second result for one delivery in the same body is reported, not recorded.
        results.push(answered(&pulled[0], 500));
        let acked = poller.ack(&webhook, Value::from(results)).await;
        assert_eq!(acked["recorded"], 50);
        assert_eq!(acked["ignored"], 1);
        let results = acked["results"].as_array().unwrap();
        assert!(results[..50].iter().all(|r| r["outcome"] == "succeeded"), "{acked}");
        assert_eq!(results[50]["reason"], "repeated");

        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(details["stats"]["totalDeliveries"], 50);
        assert_eq!(details["stats"]["successfulDeliveries"], 50);
        assert_eq!(details["queue"], json!({ "due": 0, "scheduled": 0, "leased": 0 }));
        let delivery = app.delivery(&pulled[0]["deliveryId"]).await;
        assert_eq!(delivery["status"], "succeeded");
        assert_eq!(delivery["attempts"][0]["responseStatus"], 200);
        // Nothing is left for a later poll.
        assert!(poller.poll(&webhook, "wait=0").await.is_empty());
    }

    async fn a_failed_ack_is_retried_on_schedule_and_an_unacknowledged_lease_comes_back(backend) {
        // The test schedule: 50 ms, then doubling.
        let app = spawn(backend, |_| {}).await;
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        let poller = Poller::of(&app);
        let accepted = app.publish("action.created", json!({})).await;
        let delivery_id = accepted["deliveryIds"][0].clone();

        let first = poller.poll(&webhook, "wait=5").await;
        assert_eq!(first.len(), 1);
        let mut failed = answered(&first[0], 500);
        failed["responseExcerpt"] = json!("boom");
        let acked = poller.ack(&webhook, json!([failed])).await;
        assert_eq!(acked["results"][0]["outcome"], "retrying", "{acked}");
        assert!(crate::common::is_api_timestamp(&acked["results"][0]["nextAttemptAt"]));
        let log = app.delivery(&delivery_id).await;
        assert_eq!(log["status"], "pending");
        assert_eq!(log["attempts"][0]["responseStatus"], 500);
        assert_eq!(log["attempts"][0]["responseBody"], "boom");

        // Due again after its retry delay, as attempt 2; this time it is leased and dropped.
        let retried = poller.poll(&webhook, "wait=10&lease=1").await;
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0]["deliveryId"], delivery_id);
        assert_eq!(retried[0]["attempt"], 2);
        eventually(WAIT, "the lease ends", || async {
            (app.webhook_details(&webhook["id"]).await["queue"]["due"] == 1).then_some(())
        })
        .await;
        // An answer under a lease that ended changes nothing, even before anyone leases again.
        let not_held = json!({ "deliveryId": delivery_id, "recorded": false, "reason": "lease_not_held" });
        let late = poller.ack(&webhook, json!([answered(&retried[0], 200)])).await;
        assert_eq!(late["results"][0], not_held);
        let back = poller.poll(&webhook, "wait=10").await;
        assert_eq!(back.len(), 1, "the lease ended and the delivery is due again");
        assert_eq!(back[0]["attempt"], 2, "an unacknowledged lease is not an attempt");
        assert_ne!(back[0]["leaseId"], retried[0]["leaseId"]);

        // The superseded lease's answer changes nothing; the current one's is recorded.
        let stale = poller.ack(&webhook, json!([answered(&retried[0], 200)])).await;
        assert_eq!(stale["results"][0], not_held);
        let acked = poller.ack(&webhook, json!([answered_in_floats(&back[0], 204)])).await;
        assert_eq!(acked["results"][0]["outcome"], "succeeded");
        let log = app.delivery(&delivery_id).await;
        assert_eq!(log["status"], "succeeded");
        let statuses: Vec<&Value> = log["attempts"].as_array().unwrap().iter().map(|a| &a["responseStatus"]).collect();
        assert_eq!(statuses, [&json!(500), &json!(204)]);
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
        assert_eq!((stats["totalDeliveries"].clone(), stats["successfulDeliveries"].clone()), (json!(2), json!(1)));
    }

    async fn a_waiting_poll_answers_once_a_delivery_is_published_and_empty_after_its_wait(backend) {
        let app = spawn(backend, |_| {}).await;
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        // On Postgres the poll waits on another instance, so the publish wakes it through
        // NOTIFY; on SQLite, in process.
        let base = match backend {
            Backend::Postgres => app.spawn_peer().await,
            Backend::Sqlite => app.address.clone(),
        };
        let poller = Poller::at(&app, &base);

        let started = Instant::now();
        let empty = poller.poll(&webhook, "wait=1").await;
        assert!(empty.is_empty());
        assert!(started.elapsed() >= Duration::from_secs(1), "it waited its second");

        let waiting = tokio::spawn({
            let (client, url, key) = (app.client.clone(), poller.path(&webhook, "/poll?wait=30"), app.key.clone());
            async move {
                let response = client.get(url).bearer_auth(key).timeout(Duration::from_secs(45)).send().await.unwrap();
                (Instant::now(), status_and_json(response).await)
            }
        });
        // The poll is waiting on an empty queue when the event is published.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "an empty queue keeps the poll waiting");
        let published_at = Instant::now();
        let accepted = app.publish("action.created", json!({})).await;
        let (answered_at, (status, body)) = waiting.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["deliveries"][0]["deliveryId"], accepted["deliveryIds"][0]);
        // Woken by the publish, not by the end of its 30 s wait.
        assert!(answered_at - published_at < Duration::from_secs(10), "{:?}", answered_at - published_at);
    }

    async fn two_pollers_share_a_thousand_deliveries_and_none_is_leased_twice(backend) {
        let app = spawn(backend, |_| {}).await;
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        // On Postgres the second poller uses a second instance on the same database.
        let second = match backend {
            Backend::Postgres => app.spawn_peer().await,
            Backend::Sqlite => app.address.clone(),
        };
        let mut published = HashSet::new();
        for n in 0..1000 {
            let accepted = app.publish("action.created", json!({ "n": n })).await;
            published.insert(accepted["deliveryIds"][0].as_str().unwrap().to_owned());
        }
        assert_eq!(published.len(), 1000);
        let pollers = [Poller::of(&app), Poller::at(&app, &second)];
        let (first, second) = tokio::join!(drain(&pollers[0], &webhook), drain(&pollers[1], &webhook));
        assert!(!first.is_empty() && !second.is_empty(), "both pollers took a share: {} and {}", first.len(), second.len());
        let mut seen = HashSet::new();
        for id in first.iter().chain(&second) {
            assert!(seen.insert(id.clone()), "{id} was leased twice");
        }
        assert_eq!(seen, published);
        let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
        assert_eq!(stats["successfulDeliveries"], 1000);
    }

    async fn pull_webhooks_refuse_push_fields_and_only_their_own_routes_lease(backend) {
        let app = spawn(backend, |_| {}).await;
        let webhooks = app.project_path("/webhooks");
        let refused = app.post(&webhooks, json!({ "mode": "pull", "url": "https://93.184.215.14/in", "rateLimit": 5, "events": ["action.created"] })).await;
        let body = assert_error(refused, 400, "validation_error").await;
        let fields: Vec<&str> = body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["url", "rateLimit"]);
        assert_error(app.post(&webhooks, json!({ "mode": "poll", "events": ["action.created"] })).await, 400, "validation_error").await;
        let push_without_url = assert_error(app.post(&webhooks, json!({ "events": ["action.created"] })).await, 400, "validation_error").await;
        assert_eq!(push_without_url["details"][0]["field"], "url");

        let pull = app.create_pull_webhook(&["action.created"]).await;
        let pull_path = app.project_path(&format!("/webhooks/{}", pull["id"].as_str().unwrap()));
        for (change, field) in [
            (json!({ "url": "https://93.184.215.14/in" }), "url"),
            (json!({ "maxConcurrency": 4 }), "maxConcurrency"),
            (json!({ "mode": "push" }), "mode"),
        ] {
            let body = assert_error(app.call(Method::PATCH, &pull_path, Some(&app.key), Some(change)).await, 400, "validation_error").await;
            assert_eq!(body["details"][0]["field"], field, "{body}");
        }
        let renamed = app.call(Method::PATCH, &pull_path, Some(&app.key), Some(json!({ "description": "laptop" }))).await;
        let (status, renamed) = status_and_json(renamed).await;
        assert_eq!(status, 200, "{renamed}");
        assert_eq!(renamed["data"]["mode"], "pull");

        // The DevTune list shows it, as what it is.
        let (_, listed) = status_and_json(app.get(&webhooks).await).await;
        let entry = &listed["data"]["webhooks"][0];
        assert_eq!((entry["mode"].clone(), entry.get("url")), (json!("pull"), None));
        assert_eq!(entry["queue"], json!({ "due": 0, "scheduled": 0, "leased": 0 }));

        let poller = Poller::of(&app);
        let push = app.create_webhook("https://93.184.215.14/in", &["action.created"]).await;
        let (status, body) = poller.poll_raw(&push, "").await;
        assert_eq!((status, body["error"].clone()), (409, json!("conflict")), "{body}");
        let (status, body) = poller.poll_raw(&pull, "limit=0&wait=31&lease=x").await;
        assert_eq!(status, 400);
        let fields: Vec<&str> = body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["limit", "wait", "lease"]);
        let missing = json!({ "id": uuid::Uuid::new_v4().to_string() });
        assert_eq!(poller.poll_raw(&missing, "").await.0, 404);

        let (status, body) = poller.ack_raw(&pull, json!([{ "deliveryId": "x", "status": 200, "error": "both" }, { "leaseId": 3 }])).await;
        assert_eq!(status, 400);
        let fields: Vec<&str> = body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["results[0].deliveryId", "results[0].leaseId", "results[0].error", "results[1].deliveryId", "results[1].leaseId", "results[1].status"]);
        let unknown = uuid::Uuid::new_v4().to_string();
        let twice = json!([{ "deliveryId": unknown, "leaseId": unknown, "status": 200 }, { "deliveryId": unknown, "leaseId": unknown, "error": "refused" }]);
        let twice = poller.ack(&pull, twice).await;
        assert_eq!(twice["results"][1], json!({ "deliveryId": unknown, "recorded": false, "reason": "repeated" }), "only a delivery's first result counts");
        let never = poller.ack(&pull, json!([{ "deliveryId": unknown, "leaseId": unknown, "error": "refused" }])).await;
        assert_eq!(never["results"][0]["reason"], "lease_not_held");

        // Polling needs webhooks.read and acknowledging webhooks.write.
        let reader = Poller { key: app.key_with_scopes(&["webhooks.read"]).await, ..Poller::of(&app) };
        assert_eq!(reader.poll_raw(&pull, "").await.0, 200);
        assert_eq!(reader.ack_raw(&pull, json!([{ "deliveryId": unknown, "leaseId": unknown, "status": 200 }])).await.0, 403);
        let publisher = Poller { key: app.key_with_scopes(&["events.write"]).await, ..Poller::of(&app) };
        assert_eq!(publisher.poll_raw(&pull, "").await.0, 403);
    }

    async fn a_paused_pull_webhook_leases_only_its_test_events(backend) {
        let app = spawn(backend, |_| {}).await;
        let webhook = app.create_pull_webhook(&["action.created"]).await;
        let path = app.project_path(&format!("/webhooks/{}", webhook["id"].as_str().unwrap()));
        let paused = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": false }))).await;
        assert_eq!(paused.status(), 200);
        app.publish("action.created", json!({})).await;
        let tested = app.post(&format!("{path}/test"), json!({})).await;
        assert_eq!(tested.status(), 202);
        let poller = Poller::of(&app);
        let leased = poller.poll(&webhook, "wait=0").await;
        assert_eq!(leased.len(), 1, "{leased:?}");
        assert_eq!(leased[0]["eventType"], "webhook.test");
        assert_eq!(app.webhook_details(&webhook["id"]).await["queue"]["due"], 1, "the event waits");
        let resumed = app.call(Method::PATCH, &path, Some(&app.key), Some(json!({ "enabled": true }))).await;
        assert_eq!(resumed.status(), 200);
        let leased = poller.poll(&webhook, "wait=5").await;
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0]["eventType"], "action.created");
    }
}

/// Polls and acknowledges until a poll finds nothing; returns the deliveries it leased.
async fn drain(poller: &Poller<'_>, webhook: &Value) -> Vec<String> {
    let mut leased = Vec::new();
    loop {
        // Leases outlast the test, so any delivery seen twice was leased twice.
        let batch = poller.poll(webhook, "limit=37&wait=1&lease=300").await;
        if batch.is_empty() {
            return leased;
        }
        let results: Vec<Value> = batch.iter().map(|item| answered(item, 200)).collect();
        let acked = poller.ack(webhook, Value::from(results)).await;
        assert_eq!(acked["ignored"], 0, "{acked}");
        leased.extend(
            batch
                .into_iter()
                .map(|i| i["deliveryId"].as_str().unwrap().to_owned()),
        );
    }
}
