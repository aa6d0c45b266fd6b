//! Shapes shared by many responses: the envelope, its meta block and timestamps.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use super::errors::ApiError;
use crate::domain::ProjectId;

/// A timestamp as the DevTune documents write it: `2026-02-08T12:00:00.000Z`.
#[derive(Debug, Clone, Copy)]
pub struct ApiTime(pub DateTime<Utc>);

impl Serialize for ApiTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub timestamp: ApiTime,
    pub project_id: String,
}

/// `{data, meta}`, the body of every successful project-scoped response.
#[derive(Serialize)]
pub struct Envelope<T> {
    pub data: T,
    pub meta: Meta,
}

impl<T> Envelope<T> {
    pub fn new(data: T, project_id: ProjectId, now: DateTime<Utc>) -> Self {
        Self {
            data,
            meta: Meta {
                timestamp: ApiTime(now),
                project_id: project_id.to_string(),
            },
        }
    }
}

/// `{data}`, the body of admin responses.
#[derive(Serialize)]
pub struct Data<T> {
    pub data: T,
}

/// A page request: how many items (within `1..=max`) and the cursor of the previous page.
pub fn page_params<C: std::str::FromStr>(
    limit: Option<u32>,
    cursor: Option<&str>,
    default: u32,
    max: u32,
) -> Result<(u32, Option<C>), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        )));
    }
    let cursor = cursor.map(str::parse::<C>).transpose().map_err(|_| {
        ApiError::BadRequest("cursor must be a nextCursor value from a previous page".into())
    })?;
    Ok((limit, cursor))
}
