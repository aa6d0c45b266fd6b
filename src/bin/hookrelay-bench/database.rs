//! Fresh databases, one per scenario: a new Postgres database through the admin URL (dropped
//! afterwards) or a new SQLite file in a temporary directory (removed afterwards).

use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use rand::Rng;
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use url::Url;

use crate::BenchResult;
use crate::args::Backend;

/// The admin connection and where fresh databases go.
pub struct Databases {
    admin: Option<(PgPool, Url)>,
    temp_root: PathBuf,
}

/// One scenario's database.
pub struct FreshDb {
    pub backend: Backend,
    pub url: String,
    /// The Postgres database name or the SQLite directory, for cleaning up.
    place: String,
}

#[derive(Debug, Serialize)]
pub struct PostgresFacts {
    pub version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub wal_sync_method: String,
    /// The `sslmode` of the bench's and the server's connections.
    pub sslmode: String,
}

#[derive(Debug, Serialize)]
pub struct SqliteFacts {
    pub version: String,
}

fn suffix() -> String {
    format!("{:08x}", rand::thread_rng().r#gen::<u32>())
}

impl Databases {
    /// Connects to the Postgres admin URL when a Postgres run is planned.
    pub async fn open(postgres_url: &str, with_postgres: bool) -> BenchResult<Self> {
        let admin = if with_postgres {
            let mut url = Url::parse(postgres_url)
                .map_err(|e| format!("--postgres-url is not a URL: {e}"))?;
            // A database on the same machine needs no TLS, which would cost both sides CPU on
            // every statement; an explicit sslmode in the URL is kept.
            if !url.query_pairs().any(|(key, _)| key == "sslmode") {
                url.query_pairs_mut().append_pair("sslmode", "disable");
            }
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .connect(url.as_str())
                .await
                .map_err(|e| format!("cannot connect to Postgres at --postgres-url: {e}"))?;
            Some((pool, url))
        } else {
            None
        };
        let temp_root = std::env::temp_dir().join(format!(
            "hookrelay-bench-{}-{}",
            std::process::id(),
            suffix()
        ));
        std::fs::create_dir_all(&temp_root)?;
        Ok(Self { admin, temp_root })
    }

    fn admin(&self) -> BenchResult<&(PgPool, Url)> {
        self.admin
            .as_ref()
            .ok_or_else(|| "no Postgres admin connection".into())
    }

    pub async fn create(&self, backend: Backend, scenario: &str) -> BenchResult<FreshDb> {
        match backend {
            Backend::Postgres => {
                let (pool, admin_url) = self.admin()?;
                let name = format!("hookrelay_bench_{scenario}_{}", suffix());
                sqlx::query(&format!("create database {name}"))
                    .execute(pool)
                    .await
                    .map_err(|e| format!("create database {name}: {e}"))?;
                let mut url = admin_url.clone();
                url.set_path(&format!("/{name}"));
                Ok(FreshDb {
                    backend,
                    url: url.to_string(),
                    place: name,
                })
            }
            Backend::Sqlite => {
                let dir = self.temp_root.join(format!("{scenario}-{}", suffix()));
                std::fs::create_dir_all(&dir)?;
                let url = format!("sqlite://{}", dir.join("hookrelay.db").display());
                Ok(FreshDb {
                    backend,
                    url,
                    place: dir.display().to_string(),
                })
            }
        }
    }

    /// Writes out what earlier scenarios left dirty (a Postgres checkpoint, then the OS's
    /// `sync`), so a scenario's fsyncs do not queue behind its predecessor's writes.
    pub async fn flush(&self) -> BenchResult<()> {
        if let Some((pool, _)) = &self.admin {
            // A role without the checkpoint privilege still gets the `sync` below.
            let _ = sqlx::query("checkpoint").execute(pool).await;
        }
        Command::new("sync").status()?;
        Ok(())
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn remove(&self, db: FreshDb) -> BenchResult<()> {
        match db.backend {
            Backend::Postgres => {
                let (pool, _) = self.admin()?;
                sqlx::query(&format!(
                    "drop database if exists {} with (force)",
                    db.place
                ))
                .execute(pool)
                .await?;
            }
            Backend::Sqlite => std::fs::remove_dir_all(&db.place)?,
        }
        Ok(())
    }

    pub async fn postgres_facts(&self) -> BenchResult<PostgresFacts> {
        let (pool, url) = self.admin()?;
        let show = |setting: &'static str| async move {
            sqlx::query_scalar::<_, String>(&format!("show {setting}"))
                .fetch_one(pool)
                .await
        };
        Ok(PostgresFacts {
            version: sqlx::query_scalar("select version()")
                .fetch_one(pool)
                .await?,
            synchronous_commit: show("synchronous_commit").await?,
            fsync: show("fsync").await?,
            wal_sync_method: show("wal_sync_method").await?,
            sslmode: url
                .query_pairs()
                .find(|(key, _)| key == "sslmode")
                .map_or_else(|| "prefer".to_owned(), |(_, mode)| mode.into_owned()),
        })
    }

    pub async fn sqlite_facts(&self) -> BenchResult<SqliteFacts> {
        let mut connection = SqliteConnectOptions::from_str("sqlite::memory:")?
            .connect()
            .await?;
        let version = sqlx::query_scalar("select sqlite_version()")
            .fetch_one(&mut connection)
            .await?;
        connection.close().await?;
        Ok(SqliteFacts { version })
    }

    /// Removes the temporary directory and closes the admin connection.
    pub async fn close(self) {
        let _ = std::fs::remove_dir_all(&self.temp_root);
        if let Some((pool, _)) = self.admin {
            pool.close().await;
        }
    }
}
