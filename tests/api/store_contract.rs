//! The Store contract, run against both backends directly, below the HTTP layer.

use hookrelay::domain::WebhookKind;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hookrelay::domain::{
    AccountId, ApiKey, ApiKeyId, Destination, EndpointUrl, EventId, EventTypes, Filters,
    HealthPolicy, Name, ProjectId, Scope, Scopes, UrlPolicy, WebhookId, WebhookSecret,
};
use hookrelay::domain::{AttemptResult, DeliveryStatus};
use hookrelay::store::cipher::SecretCipher;
use hookrelay::store::{
    self, Accepted, AcceptedEvent, Accepting, AttemptRecord, ClaimedDelivery, Entity, EventTarget,
    Lease, NewApiKey, NewEvent, NewWebhook, PoolSettings, Recorded, SecretRotation, Store,
    StoreError, StoreResult, WebhookChanges,
};
use hookrelay::tenancy;

use crate::backend_tests;

const NEVER_DISABLE: HealthPolicy = HealthPolicy {
    after: chrono::TimeDelta::MAX,
    min_failures: i64::MAX,
    failing_after: i64::MAX,
};
use crate::common::{Backend, TestDb, cli_actor, cli_audit};

fn pool() -> PoolSettings {
    PoolSettings {
        max_connections: 5,
        acquire_timeout: Duration::from_secs(3),
    }
}

pub(crate) async fn open(backend: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::create(backend).await;
    let store = store::connect(&db.url, &pool(), SecretCipher::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

pub(crate) async fn new_project(store: &dyn Store) -> ProjectId {
    let now = Utc::now();
    let account = tenancy::create_account(store, Name::parse("a").unwrap(), now)
        .await
        .unwrap();
    tenancy::create_project(store, account, Name::parse("p").unwrap(), now)
        .await
        .unwrap()
}

/// A published `action.created` event with this data, for every subscriber.
pub(crate) fn event(project: ProjectId, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: EventId::generate(),
        project_id: project,
        event_type: "action.created".into(),
        payload: data.to_string(),
        data,
        idempotency_key: None,
        created_at: Utc::now(),
        trace_context: None,
        target: EventTarget::Subscribers,
        audit: None,
    }
}

/// Events to accept into the queue for any worker.
pub(crate) fn unleased(events: Vec<NewEvent>) -> Vec<Accepting> {
    events
        .into_iter()
        .map(|event| Accepting { event, lease: None })
        .collect()
}

pub(crate) async fn accept_one(store: &dyn Store, event: NewEvent) -> StoreResult<AcceptedEvent> {
    let mut results = store.accept_events(unleased(vec![event])).await;
    results.remove(0).map(|accepted| accepted.event)
}

/// The record of one attempt at a claimed delivery, answered with `status`, finished `at`.
fn attempt_at(
    claim: &hookrelay::store::ClaimedDelivery,
    webhook: hookrelay::domain::WebhookId,
    status: u16,
    result: AttemptResult,
    at: chrono::DateTime<Utc>,
) -> AttemptRecord {
    AttemptRecord {
        delivery_id: claim.id,
        webhook_id: webhook,
        lease_token: claim.lease_token,
        attempt_number: claim.attempt_number,
        started_at: at,
        duration_ms: 1,
        response_status: Some(status),
        response_body: None,
        error: None,
        result,
        finished_at: at,
        health_policy: NEVER_DISABLE,
        hold: None,
        retry_after: None,
        request_headers: None,
        pressure: hookrelay::domain::Pressure::Neutral,
        max_concurrency: 16,
    }
}

async fn accept_leased(store: &dyn Store, event: NewEvent, lease: Lease) -> Accepted {
    let accepting = Accepting {
        event,
        lease: Some(lease),
    };
    store
        .accept_events(vec![accepting])
        .await
        .remove(0)
        .unwrap()
}

fn outcome(claim: &ClaimedDelivery, result: AttemptResult, policy: HealthPolicy) -> AttemptRecord {
    let now = Utc::now();
    AttemptRecord {
        delivery_id: claim.id,
        webhook_id: claim.webhook_id,
        lease_token: claim.lease_token,
        attempt_number: claim.attempt_number,
        started_at: now,
        duration_ms: 1,
        response_status: Some(if result == AttemptResult::Succeeded {
            200
        } else {
            500
        }),
        response_body: None,
        error: None,
        result,
        finished_at: now,
        health_policy: policy,
        hold: None,
        retry_after: None,
        request_headers: None,
        pressure: hookrelay::domain::Pressure::Neutral,
        max_concurrency: 16,
    }
}

pub(crate) fn new_webhook(events: &[&str]) -> NewWebhook {
    NewWebhook {
        id: WebhookId::generate(),
        kind: WebhookKind::Webhook,
        destination: Destination::Push(
            EndpointUrl::parse("https://example.com/hook", UrlPolicy::default()).unwrap(),
        ),
        events: EventTypes::parse(events).unwrap(),
        filters: Filters::default(),
        secret: WebhookSecret::generate(),
        created_at: Utc::now(),
        limits: Default::default(),
        labels: Default::default(),
    }
}

#[test]
fn both_migration_folders_hold_the_same_file_names() {
    let names = |dir: &str| {
        let mut names: Vec<String> =
            std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
        names.sort();
        names
    };
    assert!(!names("postgres").is_empty());
    assert_eq!(names("postgres"), names("sqlite"));
}

backend_tests! {
    async fn migrating_twice_is_harmless(backend) {
        let (store, _db) = open(backend).await;
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
    }

    async fn a_project_needs_an_existing_account(backend) {
        let (store, _db) = open(backend).await;
        let result = tenancy::create_project(store.as_ref(), AccountId::generate(), Name::parse("p").unwrap(), Utc::now()).await;
        assert!(matches!(result, Err(StoreError::NotFound(Entity::Account))), "{result:?}");
    }

    async fn a_key_needs_an_existing_project(backend) {
        let (store, _db) = open(backend).await;
        let result = tenancy::create_key(store.as_ref(), ProjectId::generate(), Scopes::all(), cli_actor(), Utc::now()).await;
        assert!(matches!(result, Err(StoreError::NotFound(Entity::Project))), "{result:?}");
    }

    async fn keys_are_found_by_hash_with_their_scopes_until_revoked(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let scopes = Scopes::parse(&["webhooks.read", "events.write"]).unwrap();
        let issued = tenancy::create_key(store.as_ref(), project, scopes, cli_actor(), Utc::now()).await.unwrap();
        let found = store.find_api_key(&issued.key.hash()).await.unwrap().unwrap();
        assert_eq!(found.id, issued.id);
        assert_eq!(found.project_id, project);
        assert!(found.scopes.contains(Scope::EventsWrite));
        assert!(!found.scopes.contains(Scope::WebhooksWrite));
        assert!(!found.revoked);
        store.revoke_api_key(issued.id, cli_audit("api_key.revoked")).await.unwrap();
        assert!(store.find_api_key(&issued.key.hash()).await.unwrap().unwrap().revoked);
        let again = store.revoke_api_key(issued.id, cli_audit("api_key.revoked")).await;
        assert!(matches!(again, Err(StoreError::NotFound(_))));
        assert!(store.find_api_key(&ApiKey::generate().hash()).await.unwrap().is_none());
    }

    async fn a_duplicate_key_hash_is_a_conflict(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let key = ApiKey::generate();
        let record = || NewApiKey {
            id: ApiKeyId::generate(),
            project_id: project,
            key_hash: key.hash(),
            display_prefix: key.display_prefix(),
            scopes: Scopes::all(),
            created_at: Utc::now(),
        };
        store.create_api_key(record(), cli_audit("api_key.created")).await.unwrap();
        let duplicate = store.create_api_key(record(), cli_audit("api_key.created")).await;
        assert!(matches!(duplicate, Err(StoreError::Conflict(_))), "{duplicate:?}");
    }

    async fn bootstrap_runs_once_even_when_started_concurrently(backend) {
        let (store, _db) = open(backend).await;
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let store = store.clone();
            starts.spawn(async move { tenancy::bootstrap(store.as_ref(), Utc::now()).await });
        }
        let results = starts.join_all().await;
        let created: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(created.len(), 1);
        let tenant = &created[0];
        let found = store.find_api_key(&tenant.key.key.hash()).await.unwrap().unwrap();
        assert_eq!(found.project_id, tenant.project_id);
        assert_eq!(found.scopes, Scopes::all());
        assert!(tenancy::bootstrap(store.as_ref(), Utc::now()).await.unwrap().is_none());
    }

    async fn bootstrap_skips_a_database_that_already_has_accounts(backend) {
        let (store, _db) = open(backend).await;
        new_project(store.as_ref()).await;
        assert!(tenancy::bootstrap(store.as_ref(), Utc::now()).await.unwrap().is_none());
    }

    async fn webhooks_round_trip_and_are_scoped_to_their_project(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let other = new_project(store.as_ref()).await;
        let new = new_webhook(&["action.created", "visibility.changed"]);
        let (id, secret, created_at) = (new.id, new.secret.clone(), new.created_at);
        let created = store.create_webhook(project, new, 10, cli_audit("webhook.created")).await.unwrap();
        assert_eq!(created.id, id);
        assert_eq!(created.secret, secret);
        assert_eq!(created.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(), ["action.created", "visibility.changed"]);
        assert_eq!(created.created_at.timestamp_millis(), created_at.timestamp_millis());
        assert!(created.is_active);
        assert!(matches!(store.get_webhook(other, WebhookKind::Webhook, id).await, Err(StoreError::NotFound(_))));
        assert!(store.list_webhooks(other, WebhookKind::Webhook, true).await.unwrap().is_empty());
        assert_eq!(store.list_webhooks(project, WebhookKind::Webhook, false).await.unwrap().len(), 1);
    }

    async fn updates_rotations_and_deletes_touch_only_active_webhooks(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let webhook = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let changes = WebhookChanges {
            url: None,
            events: Some(EventTypes::parse(&["action.updated"]).unwrap()),
            filters: None,
            retry_schedule: None,
            rate_limit: None,
            max_concurrency: None,
            paused: None,
            description: None,
            metadata: None,
            headers: None,
            updated_at: Utc::now(),
        };
        let updated = store.update_webhook(project, webhook.id, changes, cli_audit("webhook.updated")).await.unwrap();
        assert_eq!(updated.url, webhook.url);
        assert_eq!(updated.events.len(), 1);
        let secret = WebhookSecret::generate();
        let rotation = SecretRotation { secret: secret.clone(), previous_valid_until: None, at: Utc::now() };
        store.rotate_webhook_secret(project, WebhookKind::Webhook, webhook.id, rotation, cli_audit("webhook.secret_rotated")).await.unwrap();
        assert_eq!(store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap().secret, secret);

        store.delete_webhook(project, WebhookKind::Webhook, webhook.id, cli_audit("webhook.deleted")).await.unwrap();
        let deleted = store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap();
        assert!(!deleted.is_active);
        assert!(deleted.deleted_at.is_some());
        assert!(matches!(store.delete_webhook(project, WebhookKind::Webhook, webhook.id, cli_audit("webhook.deleted")).await, Err(StoreError::NotFound(_))));
        let rotation = SecretRotation { secret: WebhookSecret::generate(), previous_valid_until: None, at: Utc::now() };
        let rotate = store.rotate_webhook_secret(project, WebhookKind::Webhook, webhook.id, rotation, cli_audit("webhook.secret_rotated")).await;
        assert!(matches!(rotate, Err(StoreError::NotFound(_))));
        let changes = WebhookChanges { url: None, events: None, filters: None, retry_schedule: None, rate_limit: None, max_concurrency: None, paused: None, description: None, metadata: None, headers: None, updated_at: Utc::now() };
        assert!(matches!(store.update_webhook(project, webhook.id, changes, cli_audit("webhook.updated")).await, Err(StoreError::NotFound(_))));
    }

    async fn the_webhook_cap_counts_only_active_webhooks(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let first = store.create_webhook(project, new_webhook(&["action.created"]), 1, cli_audit("webhook.created")).await.unwrap();
        let over = store.create_webhook(project, new_webhook(&["action.created"]), 1, cli_audit("webhook.created")).await;
        assert!(matches!(over, Err(StoreError::WebhookLimitReached { limit: 1, .. })), "{over:?}");
        store.delete_webhook(project, WebhookKind::Webhook, first.id, cli_audit("webhook.deleted")).await.unwrap();
        store.create_webhook(project, new_webhook(&["action.created"]), 1, cli_audit("webhook.created")).await.unwrap();
    }

    async fn retention_purges_finished_deliveries_and_their_events_only(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let webhook = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let accept = |n: u32| event(project, serde_json::json!({ "n": n }));
        let done = accept_one(store.as_ref(), accept(1)).await.unwrap();
        let waiting = accept_one(store.as_ref(), accept(2)).await.unwrap();
        let now = Utc::now();
        let claims = store.claim_due(now, now + chrono::TimeDelta::seconds(30), 10, 10, &[], &[]).await.unwrap();
        assert_eq!(claims.len(), 2);
        let finished = claims.iter().find(|c| c.id == done.delivery_ids[0]).unwrap();
        let recorded = store
            .record_attempts(&[AttemptRecord {
                response_body: Some("ok".into()),
                ..attempt_at(finished, webhook.id, 200, AttemptResult::Succeeded, now)
            }])
            .await
            .unwrap();
        assert_eq!(recorded.outcomes, [Recorded::Recorded]);

        let removed = store.purge_finished(Utc::now() + chrono::TimeDelta::minutes(1)).await.unwrap();
        assert_eq!(removed, 2, "the finished delivery and its event");
        assert!(matches!(
            store.get_delivery(project, done.delivery_ids[0]).await,
            Err(StoreError::NotFound(_))
        ));
        let kept = store.get_delivery(project, waiting.delivery_ids[0]).await.unwrap();
        assert_eq!(kept.summary.status, DeliveryStatus::Pending);
        assert_eq!(store.purge_finished(Utc::now() - chrono::TimeDelta::days(1)).await.unwrap(), 0);
    }

    async fn an_outcome_from_a_lost_lease_is_not_recorded(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let webhook = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let accepted = accept_one(store.as_ref(), event(project, serde_json::json!({}))).await.unwrap();
        let now = Utc::now();
        let first = store.claim_due(now, now, 10, 10, &[], &[]).await.unwrap();
        assert_eq!(first.len(), 1);
        // The lease ended at once, so a second worker takes the delivery over.
        let later = now + chrono::TimeDelta::milliseconds(1);
        let second = store.claim_due(later, later + chrono::TimeDelta::seconds(30), 10, 10, &[], &[]).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_ne!(first[0].lease_token, second[0].lease_token);
        let record = |claim| attempt_at(claim, webhook.id, 500, AttemptResult::Failed, now);
        assert_eq!(store.record_attempts(&[record(&first[0])]).await.unwrap().outcomes, [Recorded::Stale], "the stale holder is ignored");
        assert_eq!(store.record_attempts(&[record(&second[0])]).await.unwrap().outcomes, [Recorded::Recorded]);
        let details = store.get_delivery(project, accepted.delivery_ids[0]).await.unwrap();
        assert_eq!(details.attempts.len(), 1);
        assert_eq!(store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap().stats.total_deliveries, 1);
    }

    async fn a_batch_with_one_lost_lease_records_the_other_and_counts_only_it(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let webhook = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        for _ in 0..2 {
            accept_one(store.as_ref(), event(project, serde_json::json!({}))).await.unwrap();
        }
        let now = Utc::now();
        let first = store.claim_due(now, now, 10, 10, &[], &[]).await.unwrap();
        assert_eq!(first.len(), 2);
        // Both leases ended at once; a second worker takes one delivery over.
        let later = now + chrono::TimeDelta::milliseconds(1);
        let taken = store.claim_due(later, later + chrono::TimeDelta::seconds(30), 1, 10, &[], &[]).await.unwrap();
        assert_eq!(taken.len(), 1);
        let record = |claim| attempt_at(claim, webhook.id, 200, AttemptResult::Succeeded, now);
        let batch: Vec<AttemptRecord> = first.iter().map(record).collect();
        let outcomes = store.record_attempts(&batch).await.unwrap().outcomes;
        let expected: Vec<Recorded> = first.iter()
            .map(|claim| if claim.id == taken[0].id { Recorded::Stale } else { Recorded::Recorded })
            .collect();
        assert_eq!(outcomes, expected);
        let stats = store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap().stats;
        assert_eq!((stats.total_deliveries, stats.successful_deliveries), (1, 1), "only the held lease counts");
        let kept = first.iter().find(|claim| claim.id != taken[0].id).unwrap();
        assert_eq!(store.get_delivery(project, kept.id).await.unwrap().attempts.len(), 1);
        assert!(store.get_delivery(project, taken[0].id).await.unwrap().attempts.is_empty());
    }

    async fn an_event_accepted_under_a_lease_comes_back_claimed_and_stays_out_of_the_queue(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let webhook = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let now = Utc::now();
        let lease = Lease { token: uuid::Uuid::new_v4(), until: now + chrono::TimeDelta::seconds(30) };
        let accepted = accept_leased(store.as_ref(), event(project, serde_json::json!({ "n": 1 })), lease).await;
        assert_eq!(accepted.claims.len(), 1);
        let claim = &accepted.claims[0];
        assert_eq!((claim.id, claim.webhook_id, claim.lease_token), (accepted.event.delivery_ids[0], webhook.id, lease.token));
        assert_eq!((claim.payload.as_str(), claim.attempt_number), ("{\"n\":1}", 1));
        assert_eq!(claim.signing.as_ref().unwrap().current, webhook.secret);
        assert!(store.claim_due(now, lease.until, 10, 10, &[], &[]).await.unwrap().is_empty(), "a leased delivery is not due");
        let summary = store.get_delivery(project, claim.id).await.unwrap().summary;
        assert_eq!((summary.status, summary.next_attempt_at), (DeliveryStatus::Pending, None), "in flight");

        // Should this instance die, the lease runs out and any worker takes the delivery.
        let after_lease = lease.until + chrono::TimeDelta::milliseconds(1);
        let taken = store.claim_due(after_lease, after_lease + chrono::TimeDelta::seconds(30), 10, 10, &[], &[]).await.unwrap();
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [claim.id]);
        assert_eq!(store.record_attempts(&[outcome(claim, AttemptResult::Succeeded, NEVER_DISABLE)]).await.unwrap().outcomes, [Recorded::Stale]);
        assert_eq!(store.record_attempts(&[outcome(&taken[0], AttemptResult::Succeeded, NEVER_DISABLE)]).await.unwrap().outcomes, [Recorded::Recorded]);
    }

    async fn events_accepted_together_answer_in_order_and_keep_idempotency(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let created = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let keyed = || NewEvent { idempotency_key: Some("k-1".into()), ..event(project, serde_json::json!({ "n": "keyed" })) };
        let other_type = NewEvent { event_type: "action.updated".into(), ..event(project, serde_json::json!({})) };
        let events = vec![event(project, serde_json::json!({ "n": 0 })), keyed(), other_type, event(project, serde_json::json!({ "n": 3 }))];
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let results = store.accept_events(unleased(events)).await;
        let accepted: Vec<_> = results.into_iter().map(|r| r.unwrap().event).collect();
        assert_eq!(accepted.iter().map(|a| a.id).collect::<Vec<_>>(), ids, "one answer per event, in order");
        assert_eq!(accepted.iter().map(|a| a.delivery_ids.len()).collect::<Vec<_>>(), [1, 1, 0, 1]);
        for delivery in accepted.iter().flat_map(|a| &a.delivery_ids) {
            let summary = store.get_delivery(project, *delivery).await.unwrap().summary;
            assert_eq!(summary.webhook_id, created.id);
        }
        let again = accept_one(store.as_ref(), keyed()).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.id, ids[1]);
    }

    async fn a_batch_of_outcomes_counts_exactly_as_one_at_a_time(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let flaky = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let steady = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        for n in 0..4 {
            accept_one(store.as_ref(), event(project, serde_json::json!({ "n": n }))).await.unwrap();
        }
        let now = Utc::now();
        let claims = store.claim_due(now, now + chrono::TimeDelta::seconds(30), 100, 100, &[], &[]).await.unwrap();
        let (flaky_claims, steady_claims): (Vec<_>, Vec<_>) = claims.iter().partition(|c| c.webhook_id == flaky.id);
        assert_eq!((flaky_claims.len(), steady_claims.len()), (4, 4));
        // Two failures in a row disable the flaky webhook at once; it fails, fails (disabled
        // here), succeeds and fails again, all in one batch.
        let strict = HealthPolicy {
            after: chrono::TimeDelta::zero(),
            min_failures: 2,
            failing_after: i64::MAX,
        };
        let flaky_results = [AttemptResult::Failed, AttemptResult::Failed, AttemptResult::Succeeded, AttemptResult::Failed];
        let mut batch: Vec<AttemptRecord> = flaky_claims
            .iter()
            .zip(flaky_results)
            .map(|(claim, result)| outcome(claim, result, strict))
            .collect();
        batch.extend(steady_claims.iter().map(|c| outcome(c, AttemptResult::Succeeded, strict)));
        let recorded = store.record_attempts(&batch).await.unwrap().outcomes;
        assert_eq!(recorded[0], Recorded::Recorded);
        assert!(matches!(&recorded[1], Recorded::Disabled(reason) if reason.contains("2 failures in a row")), "{recorded:?}");
        assert!(recorded[2..].iter().all(|r| *r == Recorded::Recorded), "{recorded:?}");

        let flaky = store.get_webhook(project, WebhookKind::Webhook, flaky.id).await.unwrap();
        assert_eq!((flaky.stats.total_deliveries, flaky.stats.successful_deliveries, flaky.stats.failed_deliveries), (4, 1, 3));
        assert!(flaky.disabled.is_some());
        let steady = store.get_webhook(project, WebhookKind::Webhook, steady.id).await.unwrap();
        assert_eq!((steady.stats.total_deliveries, steady.stats.successful_deliveries), (4, 4));
        assert!(steady.disabled.is_none());
        for claim in &claims {
            let details = store.get_delivery(project, claim.id).await.unwrap();
            assert_eq!(details.attempts.len(), 1, "one attempt logged per outcome");
            assert_eq!(details.summary.attempt_count, 1);
        }
    }

    async fn a_claim_takes_at_most_its_share_of_one_webhook(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let busy = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        for n in 0..5 {
            accept_one(store.as_ref(), event(project, serde_json::json!({ "n": n }))).await.unwrap();
        }
        let quiet = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        accept_one(store.as_ref(), NewEvent { event_type: "action.created".into(), ..event(project, serde_json::json!({ "n": 5 })) }).await.unwrap();
        let now = Utc::now();
        let lease = now + chrono::TimeDelta::seconds(30);
        let claimed = store.claim_due(now, lease, 10, 2, &[], &[]).await.unwrap();
        let of = |webhook: WebhookId| claimed.iter().filter(|c| c.webhook_id == webhook).count();
        assert_eq!((of(busy.id), of(quiet.id)), (2, 1), "two of the busy webhook's six, the quiet one's one");
        let next = store.claim_due(now, lease, 10, 2, &[], &[]).await.unwrap();
        assert_eq!(next.len(), 2);
    }

    async fn claims_skip_excluded_webhooks_and_leased_rows(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let busy = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        let free = store.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        accept_one(store.as_ref(), event(project, serde_json::json!({}))).await.unwrap();
        let now = Utc::now();
        let lease = now + chrono::TimeDelta::seconds(30);
        let claimed = store.claim_due(now, lease, 10, 10, &[busy.id], &[]).await.unwrap();
        assert_eq!(claimed.iter().map(|c| c.webhook_id).collect::<Vec<_>>(), [free.id]);
        assert!(store.claim_due(now, lease, 10, 10, &[busy.id], &[]).await.unwrap().is_empty(), "leased rows are skipped");
        let rest = store.claim_due(now, lease, 10, 10, &[], &[]).await.unwrap();
        assert_eq!(rest.iter().map(|c| c.webhook_id).collect::<Vec<_>>(), [busy.id]);
        assert_eq!(rest[0].payload, "{}");
        assert_eq!(rest[0].signing.as_ref().unwrap().current, busy.secret);
    }

    async fn key_use_is_recorded_in_batches_and_never_moves_backwards(backend) {
        let (store, _db) = open(backend).await;
        let project = new_project(store.as_ref()).await;
        let issued = tenancy::create_key(store.as_ref(), project, Scopes::all(), cli_actor(), Utc::now()).await.unwrap();
        let later = Utc::now() + chrono::TimeDelta::minutes(5);
        let earlier = later - chrono::TimeDelta::minutes(1);
        store.touch_api_keys(&[(issued.id, later)]).await.unwrap();
        store.touch_api_keys(&[(issued.id, earlier)]).await.unwrap();
        let keys = store.list_api_keys(project).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].last_used_at.unwrap().timestamp_millis(), later.timestamp_millis());
        assert_eq!(keys[0].display_prefix, issued.key.display_prefix());
        assert!(keys[0].revoked_at.is_none());
        assert!(matches!(store.list_api_keys(ProjectId::generate()).await, Err(StoreError::NotFound(_))));
    }

    async fn reencrypting_moves_every_secret_to_the_new_key(backend) {
        use base64::Engine;
        let key = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        let db = TestDb::create(backend).await;
        let plain = store::connect(&db.url, &pool(), SecretCipher::default()).await.unwrap();
        plain.migrate().await.unwrap();
        let project = new_project(plain.as_ref()).await;
        let webhook = plain.create_webhook(project, new_webhook(&["action.created"]), 10, cli_audit("webhook.created")).await.unwrap();
        assert_eq!(crate::common::stored_secret_column(&db.url, webhook.id.as_uuid()).await, webhook.secret.expose());
        plain.close().await;

        let first = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let sealed = store::connect(&db.url, &pool(), first).await.unwrap();
        assert_eq!(sealed.reseal_secrets().await.unwrap(), 1);
        assert_eq!(sealed.reseal_secrets().await.unwrap(), 0, "already current");
        let stored = crate::common::stored_secret_column(&db.url, webhook.id.as_uuid()).await;
        assert!(stored.starts_with("enc:v1:") && !stored.contains(webhook.secret.expose()), "{stored}");
        sealed.close().await;

        let rotated = SecretCipher::from_base64(Some(&key(2)), &[key(1)]).unwrap();
        let store = store::connect(&db.url, &pool(), rotated).await.unwrap();
        assert_eq!(store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap().secret, webhook.secret);
        assert_eq!(store.reseal_secrets().await.unwrap(), 1);
        store.close().await;

        let only_new = SecretCipher::from_base64(Some(&key(2)), &[]).unwrap();
        let store = store::connect(&db.url, &pool(), only_new).await.unwrap();
        assert_eq!(store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.unwrap().secret, webhook.secret);
        store.close().await;
        let only_old = SecretCipher::from_base64(Some(&key(1)), &[]).unwrap();
        let store = store::connect(&db.url, &pool(), only_old).await.unwrap();
        assert!(store.get_webhook(project, WebhookKind::Webhook, webhook.id).await.is_err(), "the retired key alone cannot read it");
        store.close().await;
    }
}
