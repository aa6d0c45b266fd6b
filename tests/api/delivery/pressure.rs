//! Receivers that struggle: the retry schedule, throttling answers, per-webhook rate limits and
//! concurrency, and fair shares of the worker between tenants.

use std::time::Instant;

use super::*;

/// A webhook of `events` at `url` with these extra fields (limits, a schedule).
async fn webhook_with(app: &TestApp, url: &str, events: &[&str], extra: Value) -> Value {
    let mut body = json!({ "url": url, "events": events });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, created) =
        status_and_json(app.post(&app.project_path("/webhooks"), body).await).await;
    assert_eq!(status, 201, "{created}");
    created["data"].clone()
}

/// The service's default schedule: a throttled attempt that cost a retry would wait a minute.
fn default_schedule(c: &mut hookrelay::config::ServeConfig) {
    c.delivery.retry_max = None;
    c.delivery.retry_base_ms = None;
}

backend_tests! {
    async fn a_429_with_retry_after_is_waited_out_and_uses_no_retry(backend) {
        let app = spawn(backend, default_schedule).await;
        let mut receiver = Receiver::start().await;
        receiver.script(vec![Reply::Throttle(429, Some("1")); 3]);
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let id = &accepted["deliveryIds"][0];
        let mut arrivals = Vec::new();
        for _ in 0..4 {
            arrivals.push(receiver.expect(WAIT).await.at);
        }
        for gap in arrivals.windows(2).map(|w| w[1] - w[0]) {
            assert!(gap >= Duration::from_millis(900), "each hold lasts its Retry-After: {gap:?}");
        }
        let delivery = app.delivery_when(id, "succeeded").await;
        let attempts = delivery["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 4);
        for attempt in &attempts[..3] {
            assert_eq!(attempt["responseStatus"], 429);
            assert_eq!(attempt["throttled"], true);
            assert_eq!(attempt["retryAfter"], "1");
        }
        assert_eq!(attempts[3]["throttled"], false);
        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(details["stats"]["consecutiveFailures"], 0);
        assert_eq!(details["stats"]["failedDeliveries"], 0);
        assert_eq!(details["disabledAt"], Value::Null);
    }

    async fn a_receiver_limiting_itself_to_10_a_second_gets_every_event(backend) {
        let app = spawn(backend, default_schedule).await;
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::PerSecond(10));
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let publishes = (0..60).map(|n| app.publish("action.created", json!({ "n": n })));
        let mut deliveries = Vec::new();
        for accepted in futures_join(publishes).await {
            deliveries.push(accepted["deliveryIds"][0].clone());
        }
        for id in &deliveries {
            app.delivery_when(id, "succeeded").await;
        }
        let details = app.webhook_details(&webhook["id"]).await;
        assert_eq!(details["stats"]["failedDeliveries"], 0);
        assert_eq!(details["stats"]["consecutiveFailures"], 0);
        assert_eq!(details["stats"]["successfulDeliveries"], 60);
        assert_eq!(details["disabledAt"], Value::Null);
    }

    async fn a_rate_limit_spreads_deliveries_over_time(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        webhook_with(&app, &receiver.url("/hook"), &["action.created"], json!({ "rateLimit": 20 })).await;
        let started = Instant::now();
        let publishes = (0..100).map(|n| app.publish("action.created", json!({ "n": n })));
        futures_join(publishes).await;
        let mut arrivals = Vec::new();
        for _ in 0..100 {
            arrivals.push(receiver.expect(WAIT).await.at);
        }
        let took = arrivals[99] - started;
        assert!(took >= Duration::from_millis(4_400), "100 at 20/s took only {took:?}");
        // Slots bound when attempts start, not when they land (the receiver shares the test's
        // runtime): on a loaded machine a late attempt can land beside on-time ones.
        assert_no_second_holds_more_than(&arrivals, 25);
    }

    async fn max_concurrency_bounds_the_requests_open_at_once(backend) {
        let app = spawn(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Slow(Duration::from_millis(300), 200));
        webhook_with(&app, &receiver.url("/hook"), &["action.created"], json!({ "maxConcurrency": 2 })).await;
        let publishes = (0..10).map(|n| app.publish("action.created", json!({ "n": n })));
        let deliveries: Vec<Value> = futures_join(publishes).await.iter().map(|a| a["deliveryIds"][0].clone()).collect();
        for id in &deliveries {
            app.delivery_when(id, "succeeded").await;
        }
        assert_eq!(receiver.most_open(), 2, "two at a time, and no more");
    }

    async fn a_webhooks_own_schedule_decides_its_retries(backend) {
        let app = spawn(backend, |_| {}).await;
        let mut receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Status(500));
        let webhook = webhook_with(&app, &receiver.url("/hook"), &["action.created"], json!({ "retrySchedule": [1, 2] })).await;
        assert_eq!(app.webhook_details(&webhook["id"]).await["retrySchedule"], json!([1, 2]));
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        assert_eq!(delivery["attemptCount"], 3);
        let arrivals: Vec<std::time::Instant> = receiver.drain().iter().map(|r| r.at).collect();
        assert_eq!(arrivals.len(), 3);
        let (first, second) = (arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]);
        assert!(first >= Duration::from_millis(1_000) && first < Duration::from_millis(1_600), "{first:?}");
        assert!(second >= Duration::from_millis(2_000) && second < Duration::from_millis(2_700), "{second:?}");
    }

    async fn a_receiver_that_never_stops_throttling_is_given_up_on(backend) {
        let app = spawn(backend, |c| c.delivery.throttle_give_up = Duration::from_secs(2)).await;
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Throttle(429, Some("1")));
        app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let accepted = app.publish("action.created", json!({})).await;
        let delivery = app.delivery_when(&accepted["deliveryIds"][0], "failed").await;
        let reason = delivery["lastError"].as_str().unwrap();
        assert!(reason.contains("gave up") && reason.contains("throttling") && reason.contains("2s"), "{reason}");
        let attempts = delivery["attempts"].as_array().unwrap();
        assert!(attempts.len() >= 3, "held 1 s each time for 2 s: {}", attempts.len());
        assert!(attempts.iter().all(|a| a["responseStatus"] == 429));
    }

    async fn limits_are_validated_and_named(backend) {
        let app = TestApp::spawn(backend).await;
        let path = app.project_path("/webhooks");
        let base = json!({ "url": "https://93.184.215.14/hook", "events": ["action.created"] });
        let cases = [
            (json!({ "retrySchedule": "1m" }), "retrySchedule"),
            (json!({ "retrySchedule": [0] }), "retrySchedule"),
            (json!({ "retrySchedule": [86_401] }), "retrySchedule"),
            (json!({ "retrySchedule": vec![1; 13] }), "retrySchedule"),
            (json!({ "retrySchedule": [86_400, 86_400, 86_400, 86_400, 86_400, 86_400, 86_400, 1] }), "retrySchedule"),
            (json!({ "retrySchedule": [1, "2"] }), "retrySchedule"),
            (json!({ "rateLimit": 0 }), "rateLimit"),
            (json!({ "rateLimit": 10_001 }), "rateLimit"),
            (json!({ "rateLimit": 1.5 }), "rateLimit"),
            (json!({ "maxConcurrency": 0 }), "maxConcurrency"),
            (json!({ "maxConcurrency": 257 }), "maxConcurrency"),
            (json!({ "maxConcurrency": "4" }), "maxConcurrency"),
        ];
        for (extra, field) in cases {
            let mut body = base.clone();
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let error = assert_error(app.post(&path, body.clone()).await, 400, "validation_error").await;
            let named: Vec<&str> = error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
            assert_eq!(named, [field], "{body}");
        }
        let mut good = base.clone();
        good.as_object_mut().unwrap().extend(json!({ "retrySchedule": [], "rateLimit": 10_000, "maxConcurrency": 256.0 }).as_object().unwrap().clone());
        let (status, created) = status_and_json(app.post(&path, good).await).await;
        assert_eq!(status, 201, "{created}");
        let id = &created["data"]["id"];
        let webhook = app.project_path(&format!("/webhooks/{}", id.as_str().unwrap()));
        let (_, details) = status_and_json(app.get(&webhook).await).await;
        assert_eq!(details["data"]["retrySchedule"], json!([]));
        assert_eq!(details["data"]["rateLimit"], 10_000);
        assert_eq!(details["data"]["maxConcurrency"], 256);
        let patch = json!({ "rateLimit": null, "maxConcurrency": 3, "retrySchedule": null });
        let (status, patched) = status_and_json(app.call(Method::PATCH, &webhook, Some(&app.key), Some(patch)).await).await;
        assert_eq!(status, 200, "{patched}");
        assert_eq!(patched["data"]["rateLimit"], Value::Null);
        assert_eq!(patched["data"]["retrySchedule"], Value::Null);
        assert_eq!(patched["data"]["maxConcurrency"], 3);
        assert_eq!(patched["data"]["effectiveConcurrency"], 3);
        let bad_patch = json!({ "maxConcurrency": -1 });
        assert_error(app.call(Method::PATCH, &webhook, Some(&app.key), Some(bad_patch)).await, 400, "validation_error").await;
    }

    async fn one_tenants_slow_backlog_leaves_another_its_share(backend) {
        let app = fairness_app(backend).await;
        slow_backlog_beside_a_fast_tenant(&app, None).await;
    }
}

/// Another project of the same server, calling the instance at `base`.
struct OtherProject<'a> {
    app: &'a TestApp,
    base: String,
    project: hookrelay::domain::ProjectId,
    key: String,
}

impl<'a> OtherProject<'a> {
    async fn new(app: &'a TestApp, base: &str) -> Self {
        let (project, key) = app.other_project().await;
        Self {
            app,
            base: base.to_owned(),
            project,
            key,
        }
    }

    async fn post(&self, path: &str, body: Value) -> u16 {
        let url = format!("{}/api/v2/projects/{}{path}", self.base, self.project);
        let request = self.app.client.post(url).bearer_auth(&self.key).json(&body);
        request
            .send()
            .await
            .expect("the server answers")
            .status()
            .as_u16()
    }

    async fn create_webhook(&self, url: &str, events: &[&str]) {
        let status = self
            .post("/webhooks", json!({ "url": url, "events": events }))
            .await;
        assert_eq!(status, 201);
    }

    async fn publish(&self, event: &str, data: Value) {
        let status = self
            .post("/events", json!({ "event": event, "data": data }))
            .await;
        assert_eq!(status, 202);
    }
}

/// A server whose worker has 16 slots and 8 per endpoint, for the fairness tests.
async fn fairness_app(backend: Backend) -> TestApp {
    spawn(backend, |c| {
        c.delivery.concurrency = 16;
        c.delivery.endpoint_concurrency = 8;
        c.delivery.timeout_ms = 5_000;
        c.delivery.lease_ms = 20_000;
        c.delivery.shutdown_grace_ms = 100;
    })
    .await
}

/// Project B publishes to a fast endpoint while project A's events (through `a_via`, another
/// instance, when given) queue 100 deliveries to endpoints answering after 3 s: B's events
/// must not wait behind A's attempts.
async fn slow_backlog_beside_a_fast_tenant(app: &TestApp, a_via: Option<&str>) {
    let mut fast = Receiver::start().await;
    let slow = Receiver::start().await;
    slow.reply_by_default(Reply::Slow(Duration::from_secs(3), 200));
    app.create_webhook(&fast.url("/b"), &["visibility.changed"])
        .await;
    // B is publishing already when A's backlog arrives.
    let b_first = app.publish("visibility.changed", json!({})).await;
    fast.expect(WAIT).await;
    app.delivery_when(&b_first["deliveryIds"][0], "succeeded")
        .await;
    let a = OtherProject::new(app, a_via.unwrap_or(&app.address)).await;
    for n in 0..10 {
        a.create_webhook(&slow.url(&format!("/a{n}")), &["action.created"])
            .await;
    }
    for n in 0..10 {
        a.publish("action.created", json!({ "n": n })).await;
    }
    eventually(WAIT, "A's backlog to fill its slots", || async {
        (slow.most_open() >= 8).then_some(())
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let sent = Instant::now();
        app.publish("visibility.changed", json!({})).await;
        let arrived = fast.expect(WAIT).await.at;
        slowest = slowest.max(arrived - sent);
    }
    assert!(
        slowest < Duration::from_secs(1),
        "B waited {slowest:?} behind A's 3-second attempts"
    );
}

#[tokio::test]
async fn a_slow_backlog_in_another_instance_leaves_a_fast_tenant_its_share() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = fairness_app(Backend::Postgres).await;
    let peer = app.spawn_peer().await;
    slow_backlog_beside_a_fast_tenant(&app, Some(&peer)).await;
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn assert_no_second_holds_more_than(arrivals: &[Instant], most: usize) {
    for (n, start) in arrivals.iter().enumerate() {
        let within = arrivals[n..]
            .iter()
            .take_while(|t| **t - *start < Duration::from_secs(1))
            .count();
        assert!(
            within <= most,
            "{within} requests arrived within one second"
        );
    }
}

#[tokio::test]
async fn a_rate_limit_holds_across_two_instances_on_one_postgres() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = spawn(Backend::Postgres, |_| {}).await;
    let peer = app.spawn_peer().await;
    let mut receiver = Receiver::start().await;
    webhook_with(
        &app,
        &receiver.url("/hook"),
        &["action.created"],
        json!({ "rateLimit": 20 }),
    )
    .await;
    let started = Instant::now();
    let via_peer = format!("{peer}{}", app.project_path("/events"));
    let publishes = (0..100).map(|n| {
        let request = if n % 2 == 0 {
            app.client.post(app.url(&app.project_path("/events")))
        } else {
            app.client.post(&via_peer)
        };
        request
            .bearer_auth(&app.key)
            .json(&json!({ "event": "action.created", "data": { "n": n } }))
            .send()
    });
    for response in futures_join(publishes).await {
        assert_eq!(response.unwrap().status(), 202);
    }
    let mut arrivals = Vec::new();
    for _ in 0..100 {
        arrivals.push(receiver.expect(WAIT).await.at);
    }
    let took = arrivals[99] - started;
    assert!(
        took >= Duration::from_millis(4_400),
        "100 at 20/s took only {took:?}"
    );
    // Slots bound when attempts start, not when they land: under a loaded machine an attempt
    // that started late can land beside on-time ones, so a second may hold a few more.
    assert_no_second_holds_more_than(&arrivals, 25);
}
