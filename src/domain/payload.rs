//! The body receivers get: the DevTune envelope, serialised once so every attempt sends the
//! same bytes.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{AccountId, ProjectId};

/// The envelope, in the DevTune field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    event: &'a str,
    project_id: String,
    account_id: String,
    timestamp: String,
    data: &'a Value,
}

/// The payload of an event of `event_type` raised at `at`.
pub fn render_payload(
    event_type: &str,
    project_id: ProjectId,
    account_id: AccountId,
    at: DateTime<Utc>,
    data: &Value,
) -> String {
    let payload = Payload {
        event: event_type,
        project_id: project_id.to_string(),
        account_id: account_id.to_string(),
        timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        data,
    };
    // A struct of strings and an already valid JSON value always serialises.
    serde_json::to_string(&payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_in_the_devtune_order() {
        let project = ProjectId::generate();
        let account = AccountId::generate();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let body = render_payload(
            "action.created",
            project,
            account,
            at,
            &serde_json::json!({"b": 1}),
        );
        assert_eq!(
            body,
            format!(
                "{{\"event\":\"action.created\",\"projectId\":\"{project}\",\"accountId\":\"{account}\",\
                 \"timestamp\":\"2027-01-15T08:00:00.000Z\",\"data\":{{\"b\":1}}}}"
            )
        );
    }
}
