//! Nothing accepted is lost: several instances share one queue, and a killed server catches up.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::backend_tests;
use crate::common::TestDb;
use crate::common::process::{Server, hookrelay, provision_tenant};
use crate::common::receiver::{Receiver, Reply};
use crate::common::{TestApp, status_and_json};

/// Publishes `count` events through the given base URLs in turn, `parallel` at a time, and
/// returns the delivery ids of the accepted ones.
async fn publish_many(
    client: &reqwest::Client,
    bases: &[String],
    project: &str,
    key: &str,
    count: usize,
    parallel: usize,
) -> Vec<String> {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut publishes = tokio::task::JoinSet::new();
    for n in 0..count {
        let url = format!(
            "{}/api/v2/projects/{project}/events",
            bases[n % bases.len()]
        );
        let request = client
            .post(url)
            .bearer_auth(key)
            .json(&json!({ "event": "action.created", "data": { "n": n } }));
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        publishes.spawn(async move {
            let response = request.send().await.expect("the server answers");
            assert_eq!(response.status(), 202);
            let body: Value = response.json().await.unwrap();
            drop(permit);
            body["data"]["deliveryIds"][0].as_str().unwrap().to_owned()
        });
    }
    publishes.join_all().await
}

/// Receives until every expected delivery id arrived; returns how often each came.
async fn receive_all(
    receiver: &mut Receiver,
    expected: &HashSet<String>,
    timeout: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    let mut seen: HashMap<String, usize> = HashMap::new();
    while expected.iter().any(|id| !seen.contains_key(id)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(request) = receiver.next(left).await else {
            let missing = expected.iter().filter(|id| !seen.contains_key(*id)).count();
            panic!(
                "{missing} of {} accepted events never arrived",
                expected.len()
            );
        };
        *seen
            .entry(request.header("x-devtune-delivery").to_owned())
            .or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn two_instances_on_one_postgres_deliver_5000_events_exactly_once() {
    if crate::common::skip_postgres() {
        return;
    }
    let app = TestApp::spawn_with(crate::common::Backend::Postgres, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
        c.database.max_connections = 10;
    })
    .await;
    let peer = app.spawn_peer().await;
    let mut receiver = Receiver::start().await;
    let webhook = app
        .create_webhook(&receiver.url("/hook"), &["action.created"])
        .await;

    let bases = [app.address.clone(), peer];
    let project = app.project_id.to_string();
    let accepted = publish_many(&app.client, &bases, &project, &app.key, 5000, 32).await;
    let expected: HashSet<String> = accepted.into_iter().collect();
    assert_eq!(expected.len(), 5000);

    let seen = receive_all(&mut receiver, &expected, Duration::from_secs(180)).await;
    // Every attempt is recorded before its delivery leaves `pending`; once none is pending,
    // nothing more can arrive, so what the receiver holds is the final count.
    let pending = app.project_path(&format!(
        "/webhooks/{}/deliveries?status=pending&limit=1",
        webhook["id"].as_str().unwrap()
    ));
    crate::common::receiver::eventually(Duration::from_secs(30), "no pending delivery", || async {
        let (_, page) = status_and_json(app.get(&pending).await).await;
        (page["data"]["deliveries"] == json!([])).then_some(())
    })
    .await;
    let extra = receiver.drain().len();
    let duplicates: usize = seen.values().map(|n| n - 1).sum::<usize>() + extra;
    assert_eq!(seen.len(), 5000);
    assert_eq!(duplicates, 0, "each event is delivered exactly once");
}

backend_tests! {
    async fn a_server_killed_mid_delivery_loses_no_accepted_event(backend) {
        let db = TestDb::create(backend).await;
        let (project, key) = provision_tenant(&db.url);
        let serve = || {
            let mut command = hookrelay(&db.url);
            command
                .env("HOOKRELAY_BOOTSTRAP", "false")
                .env("HOOKRELAY_ALLOW_HTTP", "true")
                .env("HOOKRELAY_ALLOW_PRIVATE_TARGETS", "true")
                .env("HOOKRELAY_RATE_LIMIT_PER_MINUTE", "0")
                .env("HOOKRELAY_DELIVERY_TIMEOUT_MS", "1000")
                .env("HOOKRELAY_LEASE_MS", "2000")
                .env("HOOKRELAY_RETRY_BASE_MS", "100")
                .env("HOOKRELAY_ENDPOINT_CONCURRENCY", "32");
            Server::start(command)
        };

        let mut receiver = Receiver::start().await;
        // Slow enough (32 at a time, 200 ms each) that most deliveries are still queued or in
        // flight when the server is killed.
        receiver.reply_by_default(Reply::Slow(Duration::from_millis(200), 200));
        let server = serve();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let create = client
            .post(format!("{}/api/v2/projects/{project}/webhooks", server.address))
            .bearer_auth(&key)
            .json(&json!({ "url": receiver.url("/hook"), "events": ["action.created"] }))
            .send()
            .await
            .unwrap();
        assert_eq!(create.status(), 201);
        let accepted = publish_many(&client, std::slice::from_ref(&server.address), &project, &key, 2000, 16).await;
        let expected: HashSet<String> = accepted.into_iter().collect();

        let mut before_kill: HashMap<String, usize> = HashMap::new();
        while before_kill.len() < 200 {
            let request = receiver.expect(Duration::from_secs(30)).await;
            *before_kill.entry(request.header("x-devtune-delivery").to_owned()).or_default() += 1;
        }
        server.kill();
        let arrived_while_dying = receiver.drain();
        for request in arrived_while_dying {
            *before_kill.entry(request.header("x-devtune-delivery").to_owned()).or_default() += 1;
        }
        let delivered_before = before_kill.len();
        assert!(delivered_before < expected.len(), "the kill came before the end");

        let restarted = serve();
        let still_expected: HashSet<String> =
            expected.iter().filter(|id| !before_kill.contains_key(*id)).cloned().collect();
        let after = receive_all(&mut receiver, &still_expected, Duration::from_secs(180)).await;
        let lost = expected
            .iter()
            .filter(|id| !before_kill.contains_key(*id) && !after.contains_key(*id))
            .count();
        let duplicates: usize = before_kill.values().chain(after.values()).map(|n| n - 1).sum::<usize>()
            + after.keys().filter(|id| before_kill.contains_key(*id)).count();
        eprintln!(
            "{backend:?}: {} accepted, {delivered_before} delivered before kill -9, {} after restart, {lost} lost, {duplicates} duplicated",
            expected.len(),
            still_expected.len()
        );
        assert_eq!(lost, 0);
        restarted.terminate();
    }
}

#[tokio::test]
async fn postgres_going_away_is_a_prompt_503_and_nothing_accepted_is_lost() {
    if crate::common::skip_postgres() {
        return;
    }
    let db = TestDb::create(crate::common::Backend::Postgres).await;
    let mut direct = url::Url::parse(&db.url).unwrap();
    let upstream = format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    );
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = crate::common::proxy::Proxy::start(upstream).await;
    direct.set_host(Some("127.0.0.1")).unwrap();
    direct.set_port(Some(proxy.address.port())).unwrap();
    let through_proxy = direct.to_string();

    let mut config = crate::common::test_config(&through_proxy);
    config.allow_http = true;
    config.allow_private_targets = true;
    config.delivery.timeout_ms = 1_000;
    config.delivery.lease_ms = 2_000;
    config.delivery.retry_base_ms = Some(100);
    let app = hookrelay::App::build(&config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let store = app.store();
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let tenant = hookrelay::tenancy::bootstrap(store.as_ref(), chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    let (project, key) = (
        tenant.project_id.to_string(),
        tenant.key.key.expose().to_owned(),
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut receiver = Receiver::start().await;
    let created = client
        .post(format!("{base}/api/v2/projects/{project}/webhooks"))
        .bearer_auth(&key)
        .json(&json!({ "url": receiver.url("/hook"), "events": ["action.created"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let before = publish_many(&client, std::slice::from_ref(&base), &project, &key, 50, 8).await;

    proxy.cut();
    let started = Instant::now();
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["error"], "service_unavailable");
    let list = client
        .get(format!("{base}/api/v2/projects/{project}/webhooks"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 503);
    let publish = client
        .post(format!("{base}/api/v2/projects/{project}/events"))
        .bearer_auth(&key)
        .json(&json!({ "event": "action.created", "data": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        publish.status(),
        503,
        "nothing is accepted that cannot be stored"
    );
    assert!(
        // A hang would last the 3 s pool acquire timeout at least; answers come in milliseconds.
        started.elapsed() < Duration::from_secs(2),
        "three calls answered in {:?}",
        started.elapsed()
    );

    proxy.restore();
    crate::common::receiver::eventually(Duration::from_secs(30), "readiness", || async {
        let ready = client.get(format!("{base}/readyz")).send().await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    let after = publish_many(&client, std::slice::from_ref(&base), &project, &key, 50, 8).await;
    let expected: HashSet<String> = before.into_iter().chain(after).collect();
    let seen = receive_all(&mut receiver, &expected, Duration::from_secs(60)).await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("database outage: 100 accepted, 0 lost, {duplicates} duplicated");
    shutdown.cancel();
}

#[tokio::test]
async fn a_sqlite_write_lock_held_elsewhere_is_a_503_and_loses_nothing() {
    use sqlx::Connection;
    let app = TestApp::spawn_with(crate::common::Backend::Sqlite, |c| {
        c.allow_http = true;
        c.allow_private_targets = true;
        c.database.acquire_timeout_ms = 300;
    })
    .await;
    let mut receiver = Receiver::start().await;
    let webhook = app
        .create_webhook(&receiver.url("/hook"), &["action.created"])
        .await;
    let events = app.project_path("/events");
    let event = || json!({ "event": "action.created", "data": {} });

    let mut holder = sqlx::SqliteConnection::connect(&app.config.database.url)
        .await
        .unwrap();
    sqlx::query("begin immediate")
        .execute(&mut holder)
        .await
        .unwrap();
    // A plain event goes through a shared transaction, a keyed one alone: both are refused.
    let keyed = app
        .client
        .post(app.url(&events))
        .bearer_auth(&app.key)
        .header("idempotency-key", "while-locked")
        .json(&event())
        .send();
    for response in [keyed.await.unwrap(), app.post(&events, event()).await] {
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "service_unavailable");
        assert_eq!(body["status"], 503);
        assert!(
            body["message"].as_str().unwrap().contains("try again"),
            "{body}"
        );
    }
    sqlx::query("rollback").execute(&mut holder).await.unwrap();
    drop(holder);

    let (status, accepted) = status_and_json(app.post(&events, event()).await).await;
    assert_eq!(status, 202, "{accepted}");
    let request = receiver.expect(Duration::from_secs(15)).await;
    assert_eq!(
        request.header("x-devtune-delivery"),
        accepted["data"]["deliveryIds"][0]
    );
    let log = app.project_path(&format!(
        "/webhooks/{}/deliveries",
        webhook["id"].as_str().unwrap()
    ));
    let (_, log) = status_and_json(app.get(&log).await).await;
    assert_eq!(
        log["data"]["deliveries"].as_array().unwrap().len(),
        1,
        "the refused event left no trace"
    );
}

#[tokio::test]
async fn a_new_sqlite_database_and_its_wal_are_readable_by_their_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(crate::common::Backend::Sqlite).await;
    app.create_webhook("https://93.184.215.14/hook", &["action.created"])
        .await;
    let path = app
        .config
        .database
        .url
        .strip_prefix("sqlite://")
        .unwrap()
        .to_owned();
    for file in [path.clone(), format!("{path}-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}
