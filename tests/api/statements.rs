//! The guard on the delivery path's database work: how many SQL statements each step issues,
//! counted from sqlx's own statement events, must not grow with the size of the batch.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use chrono::{TimeDelta, Utc};
use hookrelay::domain::AttemptResult;
use hookrelay::domain::HealthPolicy;
use hookrelay::store::{AttemptRecord, ClaimedDelivery, Store, StoreResult};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Instrument, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use crate::backend_tests;
use crate::store_contract::{event, new_project, new_webhook, open, unleased};

const GUARD_SPAN: &str = "statement_count";

/// The statements sqlx ran inside each `statement_count` span, by the span's `guard` field.
static STATEMENTS: OnceLock<Mutex<HashMap<u64, Vec<String>>>> = OnceLock::new();

fn statements() -> &'static Mutex<HashMap<u64, Vec<String>>> {
    STATEMENTS.get_or_init(|| {
        let layer = StatementLayer.with_filter(filter_fn(|meta| {
            meta.target() == "sqlx::query" || meta.name() == GUARD_SPAN
        }));
        tracing::subscriber::set_global_default(Registry::default().with(layer))
            .expect("no other global subscriber in the test binary");
        Mutex::new(HashMap::new())
    })
}

struct Guard(u64);

struct StatementLayer;

#[derive(Default)]
struct Fields {
    guard: Option<u64>,
    summary: Option<String>,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "guard" {
            self.guard = Some(value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.summary = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for StatementLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(guard), Some(span)) = (fields.guard, ctx.span(id)) {
            span.extensions_mut().insert(Guard(guard));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let guard = scope
            .from_root()
            .find_map(|span| span.extensions().get::<Guard>().map(|g| g.0));
        if let Some(guard) = guard {
            let mut fields = Fields::default();
            event.record(&mut fields);
            statements()
                .lock()
                .unwrap()
                .entry(guard)
                .or_default()
                .push(fields.summary.unwrap_or_default());
        }
    }
}

/// Runs `step` and returns the summaries of the SQL statements it issued.
async fn counted<T>(step: impl Future<Output = T>) -> (T, Vec<String>) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    statements();
    let guard = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let value = step
        .instrument(tracing::info_span!(GUARD_SPAN, guard))
        .await;
    let issued = statements()
        .lock()
        .unwrap()
        .remove(&guard)
        .unwrap_or_default();
    (value, issued)
}

fn outcome(claim: &ClaimedDelivery, n: usize) -> AttemptRecord {
    let now = Utc::now();
    let result = match n % 3 {
        0 => AttemptResult::Succeeded,
        1 => AttemptResult::RetryAt(now + TimeDelta::minutes(1)),
        _ => AttemptResult::Failed,
    };
    AttemptRecord {
        delivery_id: claim.id,
        webhook_id: claim.webhook_id,
        lease_token: claim.lease_token,
        attempt_number: claim.attempt_number,
        started_at: now,
        duration_ms: 2,
        response_status: Some(if n % 3 == 0 { 200 } else { 503 }),
        response_body: Some("body".into()),
        error: None,
        result,
        finished_at: now,
        health_policy: HealthPolicy {
            after: TimeDelta::MAX,
            min_failures: i64::MAX,
            failing_after: i64::MAX,
        },
        hold: None,
        retry_after: None,
        request_headers: None,
        pressure: hookrelay::domain::Pressure::Neutral,
        max_concurrency: 16,
    }
}

/// Statements per step of the delivery path for one batch size: publishing the events that make
/// `batch` deliveries together, claiming them, recording their outcomes.
async fn statements_per_step(store: &dyn Store, fan_out: usize, batch: u32) -> [Vec<String>; 3] {
    let project = new_project(store).await;
    for _ in 0..fan_out {
        store
            .create_webhook(
                project,
                new_webhook(&["action.created"]),
                1_000,
                crate::common::cli_audit("webhook.created"),
            )
            .await
            .unwrap();
    }
    let events: Vec<_> = (0..batch.div_ceil(fan_out as u32))
        .map(|n| event(project, serde_json::json!({ "n": n })))
        .collect();
    let count = events.len();
    let (accepted, published) = counted(store.accept_events(unleased(events))).await;
    let accepted = accepted
        .into_iter()
        .collect::<StoreResult<Vec<_>>>()
        .unwrap();
    assert_eq!(accepted.len(), count);
    assert!(
        accepted
            .iter()
            .all(|a| a.event.delivery_ids.len() == fan_out)
    );
    let now = Utc::now();
    let (claims, claimed) =
        counted(store.claim_due(now, now + TimeDelta::minutes(5), batch, batch, &[], &[])).await;
    let claims = claims.unwrap();
    assert_eq!(claims.len(), batch as usize);
    let records: Vec<AttemptRecord> = claims
        .iter()
        .enumerate()
        .map(|(n, c)| outcome(c, n))
        .collect();
    let (written, recorded) = counted(store.record_attempts(&records)).await;
    assert_eq!(written.unwrap().outcomes.len(), batch as usize);
    [published, claimed, recorded]
}

backend_tests! {
    async fn the_delivery_path_issues_a_fixed_number_of_statements_whatever_the_batch(backend) {
        let (store, _db) = open(backend).await;
        let small = statements_per_step(store.as_ref(), 1, 1).await;
        let large = statements_per_step(store.as_ref(), 50, 200).await;
        for (step, (one, many)) in ["publish", "claim", "record"].iter().zip(small.iter().zip(&large)) {
            assert!(!one.is_empty(), "{step}: statements are being counted");
            assert_eq!(one.len(), many.len(), "{step}: 1 delivery issued {one:?}, a batch of 200 issued {many:?}");
        }
        let [published, claimed, recorded] = large;
        // The event, its targets, its deliveries and on Postgres the wake-up of other instances,
        // plus begin and commit where the backend reports them as statements.
        assert!(published.len() <= 6, "publish: {published:?}");
        assert!(claimed.len() <= 4, "claim: {claimed:?}");
        // The deliveries' new states, the attempt log, the webhooks' failure runs and their
        // stats, plus begin and commit.
        assert!(recorded.len() <= 6, "record: {recorded:?}");
    }
}
