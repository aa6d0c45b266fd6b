//! The black-box harness: a real server on a random port over a fresh database of either backend.

#![allow(dead_code)]

pub mod browser;
pub mod process;
pub mod proxy;
pub mod raw;
pub mod receiver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hookrelay::App;
use hookrelay::clock::Clock;
use hookrelay::config::{
    ConnectionConfig, DatabaseConfig, DeliveryConfig, LogConfig, LogFormat, ServeConfig,
};
use hookrelay::domain::{AccountId, Name, ProjectId, Scopes};
use hookrelay::store::Store;
use hookrelay::tenancy;
use reqwest::{Method, Response};
use serde_json::Value;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// True when Postgres tests cannot run here; fails instead when CI requires them.
pub fn skip_postgres() -> bool {
    if std::env::var("TEST_DATABASE_URL").is_ok() {
        return false;
    }
    if std::env::var("HOOKRELAY_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("HOOKRELAY_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set");
    }
    eprintln!("skipped: set TEST_DATABASE_URL=postgres://… to run the Postgres variant");
    true
}

/// Runs each test body once per backend, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! backend_tests {
    ($(async fn $name:ident($backend:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let $backend = $crate::common::Backend::Sqlite;
                $body
            }

            #[tokio::test]
            async fn postgres() {
                if $crate::common::skip_postgres() {
                    return;
                }
                let $backend = $crate::common::Backend::Postgres;
                $body
            }
        }
    )*};
}

/// A database that exists for one test and is removed when dropped.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    Database { admin_url: String, name: String },
}

/// The migrated Postgres database every test database is copied from, made once per schema:
/// its name carries a hash of the migrations, so a new migration makes a new template.
fn postgres_template(admin_url: &str) -> &'static str {
    static TEMPLATE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let admin_url = admin_url.to_owned();
        // Each test has its own runtime; the template is made once, on a runtime of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the template")
                .block_on(make_postgres_template(&admin_url))
        })
        .join()
        .expect("the template is made")
    })
}

fn migrations_hash() -> String {
    use sha2::{Digest, Sha256};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("migrations/postgres exists")
        .map(|entry| entry.expect("a readable entry").path())
        .collect();
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        hash.update(file.file_name().unwrap().as_encoded_bytes());
        hash.update(std::fs::read(&file).expect("a readable migration"));
    }
    hex::encode(&hash.finalize()[..6])
}

async fn make_postgres_template(admin_url: &str) -> String {
    let name = format!("hookrelay_template_{}", migrations_hash());
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("TEST_DATABASE_URL must accept connections");
    // Other test processes may be making the same template right now.
    sqlx::query("select pg_advisory_lock(20261201)")
        .execute(&mut conn)
        .await
        .expect("an advisory lock");
    let exists: Option<(i32,)> = sqlx::query_as("select 1 from pg_database where datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .expect("pg_database is readable");
    if exists.is_none() {
        let building = format!("{name}_building");
        for sql in [
            format!("drop database if exists {building} with (force)"),
            format!("create database {building}"),
        ] {
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .expect("the test role may create databases");
        }
        let url = database_url(admin_url, &building);
        let store = hookrelay::store::connect(
            &url,
            &hookrelay::store::PoolSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_secs(10),
            },
            hookrelay::store::cipher::SecretCipher::default(),
        )
        .await
        .expect("connect to the template");
        store.migrate().await.expect("migrate the template");
        store.close().await;
        sqlx::query(&format!("alter database {building} rename to {name}"))
            .execute(&mut conn)
            .await
            .expect("rename the template");
    }
    sqlx::query("select pg_advisory_unlock(20261201)")
        .execute(&mut conn)
        .await
        .expect("an advisory unlock");
    name
}

fn database_url(admin_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

impl TestDb {
    /// A fresh database with the schema already in place (on Postgres, a copy of a migrated
    /// template, which is much faster than migrating each one).
    pub async fn create(backend: Backend) -> TestDb {
        Self::make(backend, true).await
    }

    /// A fresh database with nothing in it.
    pub async fn create_empty(backend: Backend) -> TestDb {
        Self::make(backend, false).await
    }

    async fn make(backend: Backend, migrated: bool) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!(
                    "hookrelay-test-{}.db",
                    uuid::Uuid::new_v4().simple()
                ));
                let db = TestDb {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::File(path),
                };
                if migrated {
                    let pool = hookrelay::store::PoolSettings {
                        max_connections: 1,
                        acquire_timeout: std::time::Duration::from_secs(5),
                    };
                    let cipher = hookrelay::store::cipher::SecretCipher::default();
                    let store = hookrelay::store::connect(&db.url, &pool, cipher)
                        .await
                        .expect("a new SQLite file");
                    store.migrate().await.expect("the schema");
                    store.close().await;
                }
                db
            }
            Backend::Postgres => {
                let admin_url = std::env::var("TEST_DATABASE_URL")
                    .expect("Postgres tests run only when TEST_DATABASE_URL is set");
                let name = format!("hookrelay_test_{}", uuid::Uuid::new_v4().simple());
                let template = if migrated {
                    format!(" template {}", postgres_template(&admin_url))
                } else {
                    String::new()
                };
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .expect("TEST_DATABASE_URL must accept connections");
                sqlx::query(&format!("create database {name}{template}"))
                    .execute(&mut conn)
                    .await
                    .expect("the test role may create databases");
                TestDb {
                    url: database_url(&admin_url, &name),
                    cleanup: Cleanup::Database { admin_url, name },
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime, so the async cleanup gets its own thread.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime for cleanup");
                    runtime.block_on(async {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "drop database if exists {name} with (force)"
                            ))
                            .execute(&mut conn)
                            .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

pub fn test_config(database_url: &str) -> ServeConfig {
    ServeConfig {
        database: DatabaseConfig {
            url: database_url.to_owned(),
            max_connections: 5,
            acquire_timeout_ms: 3000,
            encryption_key: None,
            old_encryption_keys: Vec::new(),
        },
        log: LogConfig {
            format: LogFormat::Text,
            filter: "warn".into(),
            otlp_endpoint: None,
            service_name: "hookrelay".into(),
        },
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        bootstrap: false,
        admin_token: None,
        allow_http: false,
        allow_private_targets: false,
        allow_any_port: false,
        rate_limit_per_minute: 0,
        auth_failures_per_minute: 0,
        max_webhooks_per_project: 25,
        max_alert_endpoints_per_project: 5,
        cors_origins: Vec::new(),
        max_event_bytes: 256 * 1024,
        connections: ConnectionConfig {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_open: None,
        },
        delivery: DeliveryConfig {
            worker: true,
            timeout_ms: 2_000,
            retry_schedule: None,
            retry_max: Some(3),
            retry_base_ms: Some(50),
            throttle_give_up: Duration::from_secs(86_400),
            concurrency: 64,
            endpoint_concurrency: 8,
            lease_ms: 5_000,
            poll_interval_ms: 200,
            shutdown_grace_ms: 1_000,
            retention_days: 30,
            disable_after_hours: 72,
            disable_min_failures: 20,
            failing_after: 5,
        },
    }
}

/// A running server with one provisioned project and an all-scope key for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub account_id: AccountId,
    pub project_id: ProjectId,
    pub key: String,
    pub config: ServeConfig,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    // Declared last: the database goes after the server has been told to stop.
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        Self::spawn_with_clock(backend, Clock::system(), configure).await
    }

    /// A server that reads time from `clock`, e.g. a manual one the test moves.
    pub async fn spawn_with_clock(
        backend: Backend,
        clock: Clock,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> TestApp {
        let db = TestDb::create(backend).await;
        let mut config = test_config(&db.url);
        configure(&mut config);
        let app = App::build_with_clock(&config, clock)
            .await
            .expect("the app builds");
        config.listen = app.local_addr();
        let address = format!("http://{}", app.local_addr());
        let store = app.store();
        let shutdown = CancellationToken::new();
        let server = Some(tokio::spawn(app.run(shutdown.clone())));
        let now = Clock::system().now();
        let account_name = Name::parse("Test account").expect("valid name");
        let account_id = tenancy::create_account(store.as_ref(), account_name, now)
            .await
            .expect("account");
        let project_name = Name::parse("Test project").expect("valid name");
        let project_id = tenancy::create_project(store.as_ref(), account_id, project_name, now)
            .await
            .expect("project");
        let key = tenancy::create_key(store.as_ref(), project_id, Scopes::all(), cli_actor(), now)
            .await
            .expect("key");
        TestApp {
            address,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            store,
            account_id,
            project_id,
            key: key.key.expose().to_owned(),
            config,
            shutdown,
            server,
            _db: db,
        }
    }

    /// A second instance on the same database, as another replica would be; it stops with
    /// this one. Returns its base URL.
    pub async fn spawn_peer(&self) -> String {
        self.spawn_peer_with(|_| {}).await
    }

    /// As `spawn_peer`, with settings of its own.
    pub async fn spawn_peer_with(&self, configure: impl FnOnce(&mut ServeConfig)) -> String {
        let mut config = self.config.clone();
        config.listen = "127.0.0.1:0".parse().expect("a literal socket address");
        configure(&mut config);
        let peer = App::build(&config).await.expect("the peer builds");
        let address = format!("http://{}", peer.local_addr());
        tokio::spawn(peer.run(self.shutdown.child_token()));
        address
    }

    /// Shuts the server down as SIGTERM would and waits until it has stopped; the database
    /// stays for inspection through `reopen_store`.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("the server task ends");
        }
    }

    /// A fresh connection to this app's database, usable after `stop`.
    pub async fn reopen_store(&self) -> Arc<dyn Store> {
        let cipher = self.config.database.cipher().expect("valid keys");
        hookrelay::store::connect(
            &self.config.database.url,
            &self.config.database.pool(),
            cipher,
        )
        .await
        .expect("the database is still there")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The project's collection path, e.g. `webhooks_path("")`.
    pub fn project_path(&self, rest: &str) -> String {
        format!("/api/v2/projects/{}{rest}", self.project_id)
    }

    pub async fn key_with_scopes(&self, scopes: &[&str]) -> String {
        let scopes = Scopes::parse(scopes).expect("valid scopes");
        tenancy::create_key(
            self.store.as_ref(),
            self.project_id,
            scopes,
            cli_actor(),
            Clock::system().now(),
        )
        .await
        .expect("key")
        .key
        .expose()
        .to_owned()
    }

    /// Another project of the same account, with its own all-scope key.
    pub async fn other_project(&self) -> (ProjectId, String) {
        let now = Clock::system().now();
        let name = Name::parse("other").expect("valid name");
        let project = tenancy::create_project(self.store.as_ref(), self.account_id, name, now)
            .await
            .expect("project");
        let key = tenancy::create_key(
            self.store.as_ref(),
            project,
            Scopes::all(),
            cli_actor(),
            now,
        )
        .await
        .expect("key");
        (project, key.key.expose().to_owned())
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the server answers")
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(&self.key), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call(Method::GET, path, Some(&self.key), None).await
    }

    /// Creates a webhook and returns the 201 body's `data`.
    pub async fn create_webhook(&self, url: &str, events: &[&str]) -> Value {
        let response = self
            .post(
                &self.project_path("/webhooks"),
                serde_json::json!({ "url": url, "events": events }),
            )
            .await;
        assert_eq!(response.status(), 201, "creating {url}");
        response.json::<Value>().await.expect("json")["data"].clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads a response as `(status, JSON body)`.
pub async fn status_and_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("a JSON body");
    (status, body)
}

/// Asserts the documented Error shape and returns the body for more checks.
pub async fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "status of {body}");
    assert_eq!(body["error"], code, "error code of {body}");
    assert_eq!(body["status"], status, "status field of {body}");
    let message = body["message"].as_str().expect("message is a string");
    assert!(!message.is_empty(), "message is empty");
    body
}

/// `2026-02-08T12:00:00.000Z`: RFC 3339, milliseconds, UTC.
pub fn is_api_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// The sorted keys of a JSON object.
pub fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// A webhook's `secret` column exactly as stored, read past the application.
pub async fn stored_secret_column(database_url: &str, webhook: uuid::Uuid) -> String {
    stored_webhook_column(database_url, webhook, "secret")
        .await
        .expect("every webhook has a secret")
}

/// One text column of a webhook's row exactly as stored, read past the application.
pub async fn stored_webhook_column(
    database_url: &str,
    webhook: uuid::Uuid,
    column: &str,
) -> Option<String> {
    let sql = format!("select {column} from webhooks where id = $1");
    let (value,): (Option<String>,) = if database_url.starts_with("sqlite:") {
        let mut conn = <sqlx::SqliteConnection as Connection>::connect(database_url)
            .await
            .expect("the SQLite file opens");
        sqlx::query_as(&sql)
            .bind(webhook)
            .fetch_one(&mut conn)
            .await
            .expect("the webhook row")
    } else {
        let mut conn = sqlx::PgConnection::connect(database_url)
            .await
            .expect("the database accepts connections");
        sqlx::query_as(&sql)
            .bind(webhook)
            .fetch_one(&mut conn)
            .await
            .expect("the webhook row")
    };
    value
}

/// The audit entry tests pass when they call the store directly, as the CLI would.
pub fn cli_audit(action: &'static str) -> hookrelay::domain::AuditEntry {
    hookrelay::domain::AuditEntry {
        actor: hookrelay::domain::Actor::admin(hookrelay::domain::Channel::Cli),
        action,
        target_id: "test".into(),
        changes: serde_json::json!({}),
        at: chrono::Utc::now(),
    }
}

pub fn cli_actor() -> hookrelay::domain::Actor {
    hookrelay::domain::Actor::admin(hookrelay::domain::Channel::Cli)
}
