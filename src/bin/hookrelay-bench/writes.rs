//! Durable writes per delivery on Postgres over a measured phase: transactions that wrote (each
//! one a commit Postgres flushes to its WAL) and WAL bytes. Transaction ids are handed out only
//! to transactions that write, so their advance counts those commits exactly and at once, unlike
//! the statistics views, which lag by up to a second.

use serde::Serialize;
use sqlx::PgPool;

use crate::BenchResult;

/// Readings taken when a measured phase starts.
pub struct WriteMeter {
    pool: PgPool,
    xid: i64,
    lsn: String,
}

/// What was written between `WriteMeter::start` and `WriteMeter::stop`.
pub struct WritesSpent {
    commits: i64,
    wal_bytes: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WriteCost {
    pub commits_per_delivery: Option<f64>,
    pub wal_bytes_per_delivery: Option<f64>,
}

/// The next transaction id, and the WAL's current position. Reading the id assigns one to this
/// reading's own transaction.
async fn position(pool: &PgPool) -> BenchResult<(i64, String)> {
    let reading: (i64, String) =
        sqlx::query_as("select pg_current_xact_id()::text::bigint, pg_current_wal_lsn()::text")
            .fetch_one(pool)
            .await?;
    Ok(reading)
}

impl WriteMeter {
    pub async fn start(database_url: &str) -> BenchResult<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await?;
        let (xid, lsn) = position(&pool).await?;
        Ok(Self { pool, xid, lsn })
    }

    pub async fn stop(self) -> BenchResult<WritesSpent> {
        let (xid, _) = position(&self.pool).await?;
        let (wal_bytes,): (i64,) =
            sqlx::query_as("select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
                .bind(&self.lsn)
                .fetch_one(&self.pool)
                .await?;
        self.pool.close().await;
        Ok(WritesSpent {
            // Neither reading's own transaction is the service's.
            commits: xid - self.xid - 1,
            wal_bytes,
        })
    }
}

impl WritesSpent {
    pub fn per_delivery(&self, deliveries: u64) -> WriteCost {
        let per = |total: i64| (deliveries > 0).then(|| total as f64 / deliveries as f64);
        WriteCost {
            commits_per_delivery: per(self.commits),
            wal_bytes_per_delivery: per(self.wal_bytes),
        }
    }
}
