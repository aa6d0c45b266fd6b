//! The `migrate` and `admin` subcommands: one store call each, JSON on stdout.

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::{
    AccountCommand, AdminArgs, AdminCommand, DatabaseConfig, KeyCommand, ProjectCommand,
};
use crate::domain::{AccountId, ApiKeyId, Name, ProjectId, Scopes};
use crate::domain::{Actor, Channel};
use crate::report::error_chain;
use crate::store::{self, Store};
use crate::tenancy;

pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// The URL as an error may show it: without its password.
fn shown_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// Where a SQLite URL's file is, when the URL names one.
fn sqlite_file(raw: &str) -> Option<std::path::PathBuf> {
    let rest = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.into())
}

/// Opens the database and brings its schema up to date. Only `migrate` (and `serve`) may create
/// it: the admin commands refuse a SQLite file that does not exist, naming it, rather than
/// provisioning tenants into a new empty file nobody serves.
async fn open(
    database: &DatabaseConfig,
    may_create: bool,
) -> Result<std::sync::Arc<dyn Store>, CliError> {
    if let Some(file) = sqlite_file(&database.url).filter(|_| !may_create) {
        if !file.exists() {
            return Err(format!(
                "no database at {}: run `hookrelay migrate` (or `hookrelay serve`) with this \
                 DATABASE_URL first, or point DATABASE_URL at the one the server uses",
                database.url
            )
            .into());
        }
    }
    let unreachable = |error: &dyn std::error::Error| -> CliError {
        format!(
            "cannot open the database at {}: {}",
            shown_url(&database.url),
            error_chain(error)
        )
        .into()
    };
    let store = store::connect(&database.url, &database.pool(), database.cipher()?)
        .await
        .map_err(|e| unreachable(&e))?;
    store.migrate().await.map_err(|e| unreachable(&e))?;
    Ok(store)
}

pub async fn migrate(database: &DatabaseConfig) -> Result<(), CliError> {
    let store = open(database, true).await?;
    store.close().await;
    Ok(())
}

fn parse_id<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, CliError> {
    raw.trim()
        .parse()
        .map_err(|_| format!("{what} must be a UUID, got {raw:?}").into())
}

/// Runs one admin command and returns what it prints.
pub async fn admin(args: &AdminArgs) -> Result<Value, CliError> {
    let store = open(&args.database, false).await?;
    let now = Clock::system().now();
    let result = match &args.command {
        AdminCommand::Account(AccountCommand::Create { name }) => {
            let name = Name::parse(name).map_err(|e| format!("--name {e}"))?;
            let id = tenancy::create_account(store.as_ref(), name, now).await?;
            json!({ "id": id.to_string() })
        }
        AdminCommand::Project(ProjectCommand::Create { account, name }) => {
            let account: AccountId = parse_id("--account", account)?;
            let name = Name::parse(name).map_err(|e| format!("--name {e}"))?;
            let id = tenancy::create_project(store.as_ref(), account, name, now).await?;
            json!({ "id": id.to_string() })
        }
        AdminCommand::Key(KeyCommand::Create { project, scopes }) => {
            let project: ProjectId = parse_id("--project", project)?;
            let scopes = match scopes {
                None => Scopes::all(),
                Some(list) => Scopes::parse(list).map_err(|e| format!("--scopes {e}"))?,
            };
            let issued = tenancy::create_key(
                store.as_ref(),
                project,
                scopes,
                Actor::admin(Channel::Cli),
                now,
            )
            .await?;
            json!({ "id": issued.id.to_string(), "key": issued.key.expose() })
        }
        AdminCommand::Key(KeyCommand::List { project }) => {
            let project: ProjectId = parse_id("--project", project)?;
            let keys = store.list_api_keys(project).await?;
            let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            };
            Value::Array(
                keys.into_iter()
                    .map(|key| {
                        json!({
                            "id": key.id.to_string(),
                            "prefix": key.display_prefix,
                            "scopes": key.scopes.to_strings(),
                            "createdAt": time(Some(key.created_at)),
                            "lastUsedAt": time(key.last_used_at),
                            "revokedAt": time(key.revoked_at),
                        })
                    })
                    .collect(),
            )
        }
        AdminCommand::Reencrypt => {
            let resealed = store.reseal_secrets().await?;
            json!({ "resealed": resealed })
        }
        AdminCommand::Key(KeyCommand::Revoke { id }) => {
            let id: ApiKeyId = parse_id("key id", id)?;
            tenancy::revoke_key(store.as_ref(), id, Actor::admin(Channel::Cli), now).await?;
            json!({ "id": id.to_string(), "revoked": true })
        }
    };
    store.close().await;
    Ok(result)
}
