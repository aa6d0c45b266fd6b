//! `hookrelay events send` and `hookrelay webhooks list`: one API call each.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Api, CALL_TIMEOUT};
use crate::cli::CliError;
use crate::config::ApiArgs;

/// Publishes one event and returns the API's answer.
pub async fn send_event(
    args: &ApiArgs,
    event: &str,
    data: &str,
    idempotency_key: Option<&str>,
) -> Result<Value, CliError> {
    let data: Value = serde_json::from_str(data)
        .map_err(|e| format!("--data must be a JSON object, e.g. '{{\"id\": 1}}' ({e})"))?;
    if !data.is_object() {
        return Err("--data must be a JSON object, e.g. '{\"id\": 1}'".into());
    }
    let api = Api::connect(args).await?;
    let headers: Vec<(&str, &str)> = idempotency_key
        .map(|key| ("idempotency-key", key))
        .into_iter()
        .collect();
    let body = json!({ "event": event, "data": data });
    Ok(api
        .call_with(
            Method::POST,
            &api.project_path("/events"),
            &headers,
            Some(&body),
        )
        .await?)
}

/// The project's webhooks: the API's answer with `json`, a table otherwise.
pub async fn list_webhooks(args: &ApiArgs, json: bool) -> Result<String, CliError> {
    let api = Api::connect(args).await?;
    let listed = api
        .call(
            Method::GET,
            &api.project_path("/webhooks"),
            None,
            CALL_TIMEOUT,
        )
        .await?;
    if json {
        return Ok(listed.to_string());
    }
    let webhooks = listed["data"]["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(table(&webhooks))
}

/// One line per webhook, columns aligned: id, mode, where deliveries go, events, state.
fn table(webhooks: &[Value]) -> String {
    if webhooks.is_empty() {
        return "no webhooks in this project".into();
    }
    let rows: Vec<[String; 5]> = webhooks
        .iter()
        .map(|webhook| {
            let text = |field: &str| webhook[field].as_str().unwrap_or_default().to_owned();
            let target = match webhook["queue"].as_object() {
                Some(queue) => format!("(pull: {} due, {} leased)", queue["due"], queue["leased"]),
                None => text("url"),
            };
            let events: Vec<&str> = webhook["events"]
                .as_array()
                .map(|events| events.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let state = if webhook["enabled"] == true {
                "enabled"
            } else if webhook["pausedAt"].is_string() {
                "paused"
            } else {
                "disabled"
            };
            [
                text("id"),
                text("mode"),
                target,
                events.join(","),
                state.into(),
            ]
        })
        .collect();
    let header = ["ID", "MODE", "URL", "EVENTS", "STATE"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or_default()
        })
        .collect();
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_shows_a_pull_webhooks_queue_instead_of_a_url() {
        let webhooks = [
            json!({"id": "a", "mode": "push", "url": "https://x.example/in",
                   "events": ["action.created", "visibility.changed"], "enabled": true}),
            json!({"id": "bb", "mode": "pull", "queue": {"due": 3, "scheduled": 0, "leased": 1},
                   "events": ["action.created"], "enabled": false, "pausedAt": "2026-12-01T00:00:00.000Z"}),
        ];
        let table = table(&webhooks);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].contains("https://x.example/in") && lines[1].ends_with("enabled"));
        assert!(lines[2].contains("(pull: 3 due, 1 leased)") && lines[2].ends_with("paused"));
        let mode_column = lines[0].find("MODE").unwrap();
        assert_eq!(lines[1].find("push"), Some(mode_column), "{table}");
        assert_eq!(lines[2].find("pull"), Some(mode_column), "{table}");
    }
}
