//! The Postgres backend: the production store, shared safely by several service instances.

mod events;
mod log;
mod outcomes;
mod pull;
mod queue;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions};
use sqlx::query::Query;
use sqlx::{Connection, Postgres, Transaction};
use uuid::Uuid;

use super::cipher::SecretCipher;
use super::records::{DeliveryRows, KeyInfoRow, KeyRecordRow};
use super::{
    ApiKeyInfo, ApiKeyRecord, BootstrapTenant, Entity, NewAccount, NewApiKey, NewProject,
    PoolSettings, PoolUsage, ProjectNames, Store, StoreError, StoreResult,
};
use crate::domain::{ApiKeyId, AuditEntry, ProjectId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a pooled connection may sit idle before it is pinged again before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// The channel a commit announces deliveries for the workers on.
const WORK_CHANNEL: &str = "hookrelay_work";
/// The channel a commit announces pull webhooks' deliveries on: the payload names the webhook,
/// or is empty when any poller may have work.
const PULL_CHANNEL: &str = "hookrelay_pull";

/// Announces, once committed, what `rows` queued: work for the workers, and each pull webhook's
/// new deliveries to its pollers; one statement, or none when nobody needs waking.
pub(super) async fn announce_rows<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    rows: &DeliveryRows,
) -> StoreResult<()> {
    let (mut channels, mut payloads) = (Vec::new(), Vec::new());
    if rows.any_for_workers() {
        channels.push(WORK_CHANNEL);
        payloads.push(String::new());
    }
    for webhook in rows.pull_webhooks() {
        channels.push(PULL_CHANNEL);
        payloads.push(webhook.to_string());
    }
    if channels.is_empty() {
        return Ok(());
    }
    sqlx::query("select pg_notify(c, p) from unnest($1::text[], $2::text[]) as t(c, p)")
        .bind(&channels)
        .bind(&payloads)
        .execute(executor)
        .await?;
    Ok(())
}

/// Announces, once committed, deliveries made due again (a retry, a recovery): to the workers
/// and to every poller, since either may own them.
pub(super) async fn announce_requeued<'e>(executor: impl sqlx::PgExecutor<'e>) -> StoreResult<()> {
    sqlx::query("select pg_notify($1, ''), pg_notify($2, '')")
        .bind(WORK_CHANNEL)
        .bind(PULL_CHANNEL)
        .execute(executor)
        .await?;
    Ok(())
}

pub struct PostgresStore {
    pool: PgPool,
    cipher: SecretCipher,
}

/// Postgres classes 08 (connection), 40 (a deadlock or serialization failure, gone on a retry),
/// 53 (insufficient resources), 57 (operator intervention, e.g. shutdown) and 3D000 (the
/// database is gone) pass: the same statement may succeed shortly.
pub(super) fn is_transient(error: &(dyn DatabaseError + 'static)) -> bool {
    error
        .try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|e| {
            ["08", "40", "53", "57", "3D"]
                .iter()
                .any(|class| e.code().starts_with(class))
        })
}

/// Writes one audit entry inside the transaction that makes the change.
pub(super) async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    project: ProjectId,
    entry: &AuditEntry,
) -> StoreResult<()> {
    bind_audit(sqlx::query(&audit_insert(1, None)), project, entry)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The statement that writes an audit entry, its values the parameters from `$first` on (bound
/// by `bind_audit`). With `after`, the name of a data-modifying CTE, the entry is written only
/// if that CTE returned a row: a change and its audit entry become one statement, which
/// commits on its own.
pub(super) fn audit_insert(first: usize, after: Option<&str>) -> String {
    let values: Vec<String> = (first..first + 9).map(|n| format!("${n}")).collect();
    let columns = "insert into audit_log (id, project_id, at, actor_type, actor_id, channel, \
                   action, target_id, changes)";
    let values = format!("{}::jsonb", values.join(", "));
    match after {
        None => format!("{columns} values ({values})"),
        Some(change) => format!("{columns} select {values} from {change}"),
    }
}

/// Binds an audit entry's nine values, in `audit_insert`'s order.
pub(super) fn bind_audit<'q>(
    query: Query<'q, Postgres, PgArguments>,
    project: ProjectId,
    entry: &'q AuditEntry,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(Uuid::now_v7())
        .bind(project.as_uuid())
        .bind(entry.at)
        .bind(entry.actor.kind())
        .bind(entry.actor.key.map(|k| k.to_string()))
        .bind(entry.actor.channel.as_str())
        .bind(entry.action)
        .bind(&entry.target_id)
        .bind(entry.changes.to_string())
}

impl PostgresStore {
    pub async fn connect(
        url: &str,
        settings: &PoolSettings,
        cipher: SecretCipher,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("hookrelay");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx pings every connection it takes back into the pool, and by default pings
            // it again when handing it out: a round trip each, as dear as a statement. A
            // connection that came back moments ago passed the first ping; only one that sat
            // idle longer (across a database restart, say) is pinged before use.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Self { pool, cipher })
    }

    async fn insert_account(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewAccount,
    ) -> StoreResult<()> {
        sqlx::query("insert into accounts (id, name, created_at) values ($1, $2, $3)")
            .bind(new.id.as_uuid())
            .bind(new.name.as_str())
            .bind(new.created_at)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn insert_project(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewProject,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into projects (id, account_id, name, created_at) values ($1, $2, $3, $4)",
        )
        .bind(new.id.as_uuid())
        .bind(new.account_id.as_uuid())
        .bind(new.name.as_str())
        .bind(new.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::missing_parent(e, Entity::Account))?;
        Ok(())
    }

    async fn insert_api_key(
        tx: &mut Transaction<'_, Postgres>,
        new: &NewApiKey,
    ) -> StoreResult<()> {
        sqlx::query(
            "insert into api_keys (id, project_id, key_hash, display_prefix, scopes, created_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.id.as_uuid())
        .bind(new.project_id.as_uuid())
        .bind(&new.key_hash[..])
        .bind(&new.display_prefix)
        .bind(new.scopes.to_strings())
        .bind(new.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::missing_parent(e, Entity::Project))?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_account(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_project(&self, new: NewProject) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_project(&mut tx, &new).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_api_key(&self, new: NewApiKey, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        Self::insert_api_key(&mut tx, &new).await?;
        insert_audit(&mut tx, new.project_id, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_api_key(&self, id: ApiKeyId, audit: AuditEntry) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let revoked: Option<(Uuid,)> = sqlx::query_as(
            "update api_keys set revoked_at = $2 where id = $1 and revoked_at is null \
             returning project_id",
        )
        .bind(id.as_uuid())
        .bind(audit.at)
        .fetch_optional(&mut *tx)
        .await?;
        let (project,) = revoked.ok_or(StoreError::NotFound(Entity::ApiKey))?;
        insert_audit(&mut tx, project.into(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &[u8; 32]) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<KeyRecordRow> = sqlx::query_as(
            "select k.id, k.project_id, p.account_id, k.scopes, k.revoked_at \
             from api_keys k join projects p on p.id = k.project_id where k.key_hash = $1",
        )
        .bind(&key_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(ApiKeyRecord::try_from).transpose()
    }

    async fn touch_api_keys(&self, used: &[(ApiKeyId, DateTime<Utc>)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (id, at) in used {
            sqlx::query("update api_keys set last_used_at = greatest(coalesce(last_used_at, $2), $2) where id = $1")
                .bind(id.as_uuid())
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_api_keys(&self, project: ProjectId) -> StoreResult<Vec<ApiKeyInfo>> {
        let exists: Option<(Uuid,)> = sqlx::query_as("select id from projects where id = $1")
            .bind(project.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        exists.ok_or(StoreError::NotFound(Entity::Project))?;
        let rows: Vec<KeyInfoRow> = sqlx::query_as(
            "select id, display_prefix, scopes, created_at, last_used_at, revoked_at \
             from api_keys where project_id = $1 order by created_at, id",
        )
        .bind(project.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(ApiKeyInfo::try_from).collect()
    }

    async fn project_names(&self, project: ProjectId) -> StoreResult<ProjectNames> {
        let names: Option<ProjectNames> = sqlx::query_as(
            "select p.name as project, a.name as account from projects p \
             join accounts a on a.id = p.account_id where p.id = $1",
        )
        .bind(project.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        names.ok_or(StoreError::NotFound(Entity::Project))
    }

    async fn reseal_secrets(&self) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(Uuid, String, Option<String>)> =
            sqlx::query_as("select id, secret, previous_secret from webhooks")
                .fetch_all(&mut *tx)
                .await?;
        let mut changed = 0;
        for (id, secret, previous) in rows {
            let Some((secret, previous)) = self.cipher.reseal(&secret, previous.as_deref())? else {
                continue;
            };
            sqlx::query("update webhooks set secret = $2, previous_secret = $3 where id = $1")
                .bind(id)
                .bind(secret)
                .bind(previous)
                .execute(&mut *tx)
                .await?;
            changed += 1;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn bootstrap(&self, tenant: BootstrapTenant) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The marker row's primary key makes concurrent first starts agree on one winner.
        let claimed = sqlx::query(
            "insert into bootstrap_marker (id, created_at) values (1, $1) on conflict do nothing",
        )
        .bind(tenant.account.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let (accounts,): (i64,) = sqlx::query_as("select count(*) from accounts")
            .fetch_one(&mut *tx)
            .await?;
        if !claimed || accounts > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::insert_account(&mut tx, &tenant.account).await?;
        Self::insert_project(&mut tx, &tenant.project).await?;
        Self::insert_api_key(&mut tx, &tenant.key).await?;
        tx.commit().await?;
        Ok(true)
    }
}
