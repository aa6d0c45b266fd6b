//! Limits and isolation: exact stats under concurrency, slow and misbehaving endpoints, queues shared by instances.

use super::*;

backend_tests! {
    async fn attempts_in_flight_never_exceed_the_process_wide_limit(backend) {
        // Five endpoints allowed four attempts each could open 20 requests for six events
        // published at once (all handed over before the worker has counted any); the process
        // allows 8.
        let app = spawn(backend, |c| {
            c.delivery.concurrency = 8;
            c.delivery.endpoint_concurrency = 4;
            c.delivery.timeout_ms = 4_000;
            c.delivery.lease_ms = 10_000;
        })
        .await;
        let receiver = Receiver::start().await;
        receiver.reply_by_default(Reply::Slow(Duration::from_secs(1), 200));
        for n in 0..5 {
            app.create_webhook(&receiver.url(&format!("/{n}")), &["action.created"]).await;
        }
        let publish = |n: u32| app.publish("action.created", json!({ "n": n }));
        let published = tokio::join!(publish(0), publish(1), publish(2), publish(3), publish(4), publish(5));
        let published = [published.0, published.1, published.2, published.3, published.4, published.5];
        let deliveries: Vec<Value> = published
            .iter()
            .flat_map(|accepted| accepted["deliveryIds"].as_array().unwrap().clone())
            .collect();
        assert_eq!(deliveries.len(), 30);
        for id in &deliveries {
            app.delivery_when(id, "succeeded").await;
        }
        let most = receiver.most_open();
        assert!(most <= 8, "{most} requests were open at once; the limit is 8");
        assert!(most >= 4, "only {most} at once: endpoints did not run side by side");
    }

    async fn stats_stay_exact_under_concurrent_deliveries(backend) {
        let app = spawn(backend, |_| {}).await;
        let receiver = Receiver::start().await;
        let webhook = app.create_webhook(&receiver.url("/hook"), &["action.created"]).await;
        let url = app.url(&app.project_path("/events"));
        let mut publishes = tokio::task::JoinSet::new();
        for n in 0..40 {
            let request = app.client.post(&url).bearer_auth(&app.key)
                .json(&json!({ "event": "action.created", "data": { "n": n } }));
            publishes.spawn(async move { request.send().await.unwrap().status().as_u16() });
        }
        assert!(publishes.join_all().await.iter().all(|s| *s == 202));
        let stats = eventually(WAIT, "40 successful attempts", || async {
            let stats = app.webhook_details(&webhook["id"]).await["stats"].clone();
            (stats["totalDeliveries"] == 40).then_some(stats)
        })
        .await;
        assert_eq!(stats["successfulDeliveries"], 40);
        assert_eq!(stats["failedDeliveries"], 0);
    }

    async fn misbehaving_receivers_fail_their_attempts_and_hold_back_no_one(backend) {
        use crate::common::raw::{Misbehaviour, RawServer};
        let app = spawn(backend, |c| {
            c.delivery.timeout_ms = 3_000;
            c.delivery.lease_ms = 8_000;
            c.delivery.retry_max = Some(0);
        })
        .await;
        let mut healthy = Receiver::start().await;
        app.create_webhook(&healthy.url("/healthy"), &["action.updated"]).await;
        let cases = [
            (Misbehaviour::SlowBody, "http", "timed out"),
            (Misbehaviour::Reset, "http", "connection reset"),
            (Misbehaviour::Garbage, "https", "TLS error: handshake"),
            (Misbehaviour::HugeBody, "http", ""),
        ];
        let mut servers = Vec::new();
        for (misbehaviour, scheme, _) in &cases {
            let server = RawServer::start(*misbehaviour).await;
            let url = format!("{scheme}://127.0.0.1:{}/hook", server.port);
            app.create_webhook(&url, &["action.created", "action.updated"]).await;
            servers.push(server);
        }
        let accepted = app.publish("action.created", json!({})).await;
        assert_eq!(accepted["deliveries"], 4);
        let started = std::time::Instant::now();
        app.publish("action.updated", json!({})).await;
        healthy.expect(WAIT).await;
        // The slow receivers hold an attempt for the full 3 s timeout; the healthy one must not wait for them.
        assert!(started.elapsed() < Duration::from_secs(2), "the healthy endpoint waited {:?}", started.elapsed());

        for (index, (misbehaviour, _, error)) in cases.iter().enumerate() {
            let id = &accepted["deliveryIds"][index];
            let delivery = eventually(WAIT, "the attempt to finish", || async {
                let delivery = app.delivery(id).await;
                (delivery["status"] != "pending").then_some(delivery)
            })
            .await;
            let attempt = &delivery["attempts"][0];
            match misbehaviour {
                Misbehaviour::HugeBody => {
                    assert_eq!(delivery["status"], "succeeded", "{delivery}");
                    assert!(attempt["responseBody"].as_str().unwrap().len() <= 1024);
                    let written = servers[index].written.load(std::sync::atomic::Ordering::SeqCst);
                    assert!(written < 16 * 1024 * 1024, "read {written} bytes of a 100 MB body");
                }
                _ => {
                    assert_eq!(delivery["status"], "failed", "{misbehaviour:?}: {delivery}");
                    // The kind of failure only, without addresses or the OS's words.
                    let text = attempt["error"].as_str().unwrap();
                    assert!(text.starts_with(error), "{misbehaviour:?}: {text}");
                    assert!(!text.contains("127.0.0.1") && !text.contains("os error"), "{text}");
                }
            }
        }
    }

    async fn a_backed_up_slow_endpoint_leaves_room_for_the_others(backend) {
        // Room for 8 attempts in all and 2 per endpoint: the slow endpoint's 40 deliveries
        // must not take the other 6 slots while they wait for its 2.
        let app = spawn(backend, |c| {
            c.delivery.concurrency = 8;
            c.delivery.endpoint_concurrency = 2;
        })
        .await;
        let mut slow = Receiver::start().await;
        slow.reply_by_default(Reply::Slow(Duration::from_secs(5), 200));
        let mut healthy = Receiver::start().await;
        app.create_webhook(&slow.url("/slow"), &["action.created"]).await;
        app.create_webhook(&healthy.url("/healthy"), &["action.updated"]).await;
        for n in 0..40 {
            app.publish("action.created", json!({ "n": n })).await;
        }
        for n in 0..5 {
            app.publish("action.updated", json!({ "n": n })).await;
            healthy.expect(WAIT).await;
        }
        // The slow endpoint's first two attempts take 5 s; a healthy endpoint starved of slots
        // would only get its turn after them, when the next two have been sent.
        let slow_answered = slow.drain().len();
        assert!(slow_answered <= 2, "the healthy endpoint waited for the slow one ({slow_answered} sent to it first)");
    }
}

#[tokio::test]
async fn a_queue_behind_a_slow_endpoint_is_sent_once_across_instances() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = spawn(Backend::Postgres, |c| {
        c.delivery.endpoint_concurrency = 1;
        c.delivery.timeout_ms = 1_000;
        c.delivery.lease_ms = 1_500;
    })
    .await;
    let peer = app.spawn_peer().await;
    let mut receiver = Receiver::start().await;
    receiver.reply_by_default(Reply::Slow(Duration::from_millis(600), 200));
    app.create_webhook(&receiver.url("/queue"), &["action.created"])
        .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(app.publish("action.created", json!({ "n": n })).await["deliveryIds"][0].clone());
    }
    // Queued behind five 600 ms attempts, the last one waits past its 1.5 s lease; the peer may
    // take it over, and then only the peer sends it.
    for id in &ids {
        let delivery = app.delivery_when(id, "succeeded").await;
        assert_eq!(delivery["attemptCount"], 1);
    }
    let mut per_delivery = std::collections::HashMap::new();
    for request in receiver.drain() {
        *per_delivery
            .entry(request.header("x-devtune-delivery").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(per_delivery.len(), 6);
    assert!(per_delivery.values().all(|n| *n == 1), "{per_delivery:?}");
    drop(peer);
}
