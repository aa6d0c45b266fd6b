//! Ceilings: what the bench's own parts can do without hookrelay in between, so a result
//! near them says the limit may not be the server's: the receiver driven directly, and
//! single-row durable inserts on the same kind of database.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Postgres, Sqlite};
use tokio::task::JoinSet;

use super::phase::PhaseTimes;
use super::{Bench, sleep_until};
use crate::BenchResult;
use crate::args::Backend;
use crate::balance::Balance;
use crate::database::FreshDb;
use crate::receiver::Receiver;
use crate::report::{Section, num};

const RECEIVER_IN_FLIGHT: usize = 64;
const POSTGRES_CONNECTIONS: usize = 16;
/// About the size of the payloads the server stores per event.
const PAYLOAD_BYTES: usize = 256;

/// Requests or inserts done in the measured window.
#[derive(Default)]
struct Counter {
    measured: AtomicU64,
}

impl Counter {
    fn done(&self, times: &PhaseTimes, started: Instant) {
        if (times.measured_from..times.end).contains(&started) {
            self.measured.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn per_sec(&self, times: &PhaseTimes) -> f64 {
        self.measured.load(Ordering::Relaxed) as f64
            / (times.end - times.measured_from).as_secs_f64()
    }
}

pub async fn run(bench: &Bench, db: &FreshDb) -> BenchResult<Section> {
    let mut section = Section::new("ceilings", db.backend.name(), &["ceiling", "per second"]);
    let (requests_per_sec, balance, rejects) = receiver_ceiling(bench).await?;
    section.rows.push(vec![
        format!("receiver driven by the bench's reqwest client, {RECEIVER_IN_FLIGHT} in flight (requests/s)"),
        num(requests_per_sec),
    ]);
    section.balances.push(balance);
    (section.invalid_signatures, section.malformed) = rejects;
    let (label, inserts_per_sec) = match db.backend {
        Backend::Postgres => (
            format!(
                "single-row autocommit inserts, {POSTGRES_CONNECTIONS} connections (inserts/s)"
            ),
            postgres_inserts(bench, &db.url).await?,
        ),
        Backend::Sqlite => (
            "single-row inserts, WAL + synchronous=FULL, 1 connection (inserts/s)".to_owned(),
            sqlite_inserts(bench, &db.url).await?,
        ),
    };
    section.rows.push(vec![label, num(inserts_per_sec)]);
    section.details = json!({
        "receiver_requests_per_sec": requests_per_sec,
        "durable_inserts_per_sec": inserts_per_sec,
    });
    Ok(section)
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

/// Signed deliveries with fresh delivery ids, straight from the bench to its receiver.
async fn receiver_ceiling(bench: &Bench) -> BenchResult<(f64, Balance, (u64, u64))> {
    let receiver = Receiver::start(1).await?;
    let secret = random_secret();
    receiver.ledger().set_secret(0, &secret)?;
    let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    let url: Arc<str> = receiver.url(0).into();
    let times = bench.phase_times();
    let counter = Arc::new(Counter::default());
    let next_seq = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for _ in 0..RECEIVER_IN_FLIGHT {
        let (http, key, url) = (bench.http.clone(), key.clone(), url.clone());
        let (counter, next_seq, refused) = (counter.clone(), next_seq.clone(), refused.clone());
        senders.spawn(async move {
            sleep_until(times.start).await;
            while Instant::now() < times.end {
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let body =
                    format!(r#"{{"event":"action.created","data":{{"run":0,"seq":{seq}}}}}"#);
                let mut mac = key.clone();
                mac.update(body.as_bytes());
                let signature = hex::encode(mac.finalize().into_bytes());
                let started = Instant::now();
                let answer = http
                    .post(&*url)
                    .header("content-type", "application/json")
                    .header("x-devtune-signature", signature)
                    .header("x-devtune-delivery", uuid::Uuid::new_v4().to_string())
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => counter.done(&times, started),
                    _ => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    senders.join_all().await;
    let sent = next_seq.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    let delivered = receiver.ledger().unique(0, &[0]);
    let balance = Balance {
        phase: "receiver, direct".to_owned(),
        published: sent,
        accepted: sent - refused,
        refused,
        expected: sent - refused,
        delivered,
        missing: (sent - refused).saturating_sub(delivered),
        duplicates: receiver.ledger().duplicates(0, &[0]),
        unexpected: 0,
        waited_secs: 0.0,
    };
    let rejects = (receiver.ledger().invalid(), receiver.ledger().malformed());
    Ok((counter.per_sec(&times), balance, rejects))
}

fn payload() -> String {
    "x".repeat(PAYLOAD_BYTES)
}

async fn postgres_inserts(bench: &Bench, url: &str) -> BenchResult<f64> {
    let pool: Pool<Postgres> = PgPoolOptions::new()
        .max_connections(POSTGRES_CONNECTIONS as u32)
        .connect(url)
        .await?;
    sqlx::query("create table bench_inserts (id bigserial primary key, payload text)")
        .execute(&pool)
        .await?;
    let times = bench.phase_times();
    let counter = Arc::new(Counter::default());
    let mut writers = JoinSet::new();
    for _ in 0..POSTGRES_CONNECTIONS {
        let (pool, counter) = (pool.clone(), counter.clone());
        writers.spawn(async move {
            let mut connection = pool.acquire().await?;
            let payload = payload();
            sleep_until(times.start).await;
            while Instant::now() < times.end {
                let started = Instant::now();
                sqlx::query("insert into bench_inserts (payload) values ($1)")
                    .bind(&payload)
                    .execute(&mut *connection)
                    .await?;
                counter.done(&times, started);
            }
            Ok::<_, sqlx::Error>(())
        });
    }
    for finished in writers.join_all().await {
        finished?;
    }
    pool.close().await;
    Ok(counter.per_sec(&times))
}

async fn sqlite_inserts(bench: &Bench, url: &str) -> BenchResult<f64> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let pool: Pool<Sqlite> = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query("create table bench_inserts (id integer primary key, payload text)")
        .execute(&pool)
        .await?;
    let times = bench.phase_times();
    let counter = Counter::default();
    let payload = payload();
    let mut connection = pool.acquire().await?;
    sleep_until(times.start).await;
    while Instant::now() < times.end {
        let started = Instant::now();
        sqlx::query("insert into bench_inserts (payload) values ($1)")
            .bind(&payload)
            .execute(&mut *connection)
            .await?;
        counter.done(&times, started);
    }
    drop(connection);
    pool.close().await;
    Ok(counter.per_sec(&times))
}
