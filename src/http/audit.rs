//! The project's audit log: who created, changed, deleted, rotated, tested or retried what.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::instrument;
use uuid::Uuid;

use super::AppState;
use super::auth::{Authorized, WebhooksRead};
use super::errors::ApiError;
use super::extract::ApiQuery;
use super::wire::{ApiTime, Envelope, page_params};
use crate::store::AuditRecord;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ActorView {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    id: String,
    at: ApiTime,
    actor: ActorView,
    channel: String,
    action: String,
    target_id: String,
    changes: Value,
}

impl From<AuditRecord> for AuditEntryView {
    fn from(record: AuditRecord) -> Self {
        Self {
            id: record.id.to_string(),
            at: ApiTime(record.at),
            actor: ActorView {
                kind: record.actor_type,
                id: record.actor_id,
            },
            channel: record.channel,
            action: record.action,
            target_id: record.target_id,
            changes: record.changes,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    entries: Vec<AuditEntryView>,
    next_cursor: Option<String>,
}

#[instrument(skip_all, fields(project_id = %auth.project_id))]
pub async fn list_audit_log(
    State(state): State<AppState>,
    auth: Authorized<WebhooksRead>,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Envelope<AuditPage>>, ApiError> {
    let (limit, before) =
        page_params::<Uuid>(query.limit, query.cursor.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let mut records = state
        .store
        .list_audit(auth.project_id, before, limit + 1)
        .await?;
    let page_size = limit as usize;
    let next_cursor = (records.len() > page_size).then(|| records[page_size - 1].id.to_string());
    records.truncate(page_size);
    let page = AuditPage {
        entries: records.into_iter().map(AuditEntryView::from).collect(),
        next_cursor,
    };
    Ok(Json(Envelope::new(
        page,
        auth.project_id,
        state.clock.now(),
    )))
}
