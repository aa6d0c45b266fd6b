//! Checking a webhook's create and update body: every field at once, and the registration-time
//! lookup that refuses a host resolving to a non-public address.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::limits::{LimitsInput, check_limits};
use crate::domain::{
    CustomHeaders, DeliveryMode, EndpointUrl, EventTypes, FieldError, Filters, Metadata,
    forbidden_reason, redact_query,
};
use crate::http::AppState;
use crate::http::errors::ApiError;
use crate::http::extract::{keep_field, present};

#[derive(Deserialize)]
pub struct WebhookInput {
    /// Only on create: `"push"` (the default) or `"pull"`.
    #[serde(default, deserialize_with = "present")]
    mode: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    url: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    events: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    filters: Option<Value>,
    /// Only on PATCH: `false` pauses the webhook; `true` resumes it, or re-enables one that
    /// endpoint health disabled.
    #[serde(default, deserialize_with = "present")]
    enabled: Option<Value>,
    #[serde(default, rename = "retrySchedule", deserialize_with = "present")]
    retry_schedule: Option<Value>,
    #[serde(default, rename = "rateLimit", deserialize_with = "present")]
    rate_limit: Option<Value>,
    #[serde(default, rename = "maxConcurrency", deserialize_with = "present")]
    max_concurrency: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    metadata: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    headers: Option<Value>,
}

/// What an update asks to change, for the audit log.
pub(super) fn requested(checked: &CheckedInput) -> Value {
    let mut requested = serde_json::Map::new();
    if let Some(url) = &checked.url {
        requested.insert("url".into(), json!(redact_query(url.as_str())));
    }
    if let Some(events) = &checked.events {
        requested.insert("events".into(), json!(events.to_strings()));
    }
    if let Some(filters) = &checked.filters {
        let filters: BTreeMap<_, _> = filters.to_pairs().into_iter().collect();
        requested.insert("filters".into(), json!(filters));
    }
    if let Some(enabled) = checked.enabled {
        requested.insert("enabled".into(), json!(enabled));
    }
    checked.labels.describe(&mut requested);
    checked.limits.describe(&mut requested);
    requested.into()
}

impl WebhookInput {
    /// Whether the body sets a field that only a push webhook has, so an update must know the
    /// webhook's mode to check it.
    pub(super) fn sets_push_fields(&self) -> bool {
        self.url.is_some() || self.rate_limit.is_some() || self.max_concurrency.is_some()
    }
}

/// The validated parts of a `WebhookInput`; absent fields stay `None`.
pub(super) struct CheckedInput {
    /// On create, the mode asked for; on update, the webhook's.
    pub mode: DeliveryMode,
    pub url: Option<EndpointUrl>,
    pub events: Option<EventTypes>,
    pub filters: Option<Filters>,
    pub limits: LimitsInput,
    pub enabled: Option<bool>,
    pub labels: LabelsInput,
}

/// The description, metadata and custom headers a body sets; `None` leaves each as it is.
#[derive(Default)]
pub(super) struct LabelsInput {
    /// `Some(None)` removes the description.
    pub description: Option<Option<String>>,
    pub metadata: Option<Metadata>,
    pub headers: Option<CustomHeaders>,
}

impl LabelsInput {
    /// What the audit log keeps: custom header names, never their values.
    pub(super) fn describe(&self, requested: &mut serde_json::Map<String, Value>) {
        if let Some(description) = &self.description {
            requested.insert("description".into(), json!(description));
        }
        if let Some(metadata) = &self.metadata {
            requested.insert("metadata".into(), json!(metadata.entries()));
        }
        if let Some(headers) = &self.headers {
            let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
            requested.insert("headers".into(), json!(names));
        }
    }
}

fn check_description(value: Option<&Value>) -> FieldCheck<Option<String>> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => crate::domain::check_description(text)
            .map(|text| Some(Some(text).filter(|t| !t.is_empty()))),
        Some(_) => Err("must be a string or null".into()),
    }
}

/// A JSON object whose values are all strings.
fn string_pairs<'a>(value: &'a Value, what: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    let shape = || format!("must be an object of {what}");
    value
        .as_object()
        .ok_or_else(shape)?
        .iter()
        .map(|(key, value)| value.as_str().map(|v| (key.as_str(), v)).ok_or_else(shape))
        .collect()
}

fn check_metadata(value: Option<&Value>) -> FieldCheck<Metadata> {
    match value {
        None => Ok(None),
        Some(value) => {
            Metadata::parse(string_pairs(value, "string keys and string values")?).map(Some)
        }
    }
}

fn check_headers(value: Option<&Value>) -> FieldCheck<CustomHeaders> {
    match value {
        None => Ok(None),
        Some(value) => {
            CustomHeaders::parse(string_pairs(value, "header names and string values")?).map(Some)
        }
    }
}

/// Each field's check gives `Ok(None)` when the field is absent and allowed to be.
type FieldCheck<T> = Result<Option<T>, String>;

/// The mode a create asks for; an update cannot change it.
fn check_mode(mode: Option<&Value>, partial: bool) -> FieldCheck<DeliveryMode> {
    match (mode, partial) {
        (None, _) => Ok(None),
        (Some(_), true) => Err(
            "cannot be changed once the webhook exists; create a webhook with the mode you want"
                .into(),
        ),
        (Some(value), false) => value
            .as_str()
            .and_then(DeliveryMode::parse)
            .map(Some)
            .ok_or_else(|| "must be \"push\" or \"pull\"".into()),
    }
}

/// A field a pull webhook does not have.
fn refuse_for_pull<T>(value: Option<&Value>, why: &str) -> FieldCheck<T> {
    match value {
        None => Ok(None),
        Some(_) => Err(why.into()),
    }
}

fn check_enabled(enabled: Option<&Value>, partial: bool) -> FieldCheck<bool> {
    match (enabled, partial) {
        (None, _) => Ok(None),
        (Some(Value::Bool(enabled)), true) => Ok(Some(*enabled)),
        (Some(_), true) => {
            Err("must be true (resume, or re-enable a disabled webhook) or false (pause)".into())
        }
        (Some(_), false) => Err("is only accepted when updating a webhook".into()),
    }
}

pub(crate) async fn check_url(
    state: &AppState,
    url: Option<&Value>,
    partial: bool,
) -> FieldCheck<EndpointUrl> {
    let url = match url {
        None if !partial => return Err("is required".into()),
        None => return Ok(None),
        Some(Value::String(raw)) => EndpointUrl::parse(raw, state.settings.url_policy)?,
        Some(_) => return Err("must be a string".into()),
    };
    resolve_check(state, &url).await?;
    Ok(Some(url))
}

/// An `events` list, each name checked by `parse` (DevTune's types for webhooks, notice types
/// for alert endpoints).
pub(crate) fn check_events(
    events: Option<&Value>,
    partial: bool,
    parse: fn(&[&str]) -> Result<EventTypes, String>,
) -> FieldCheck<EventTypes> {
    const SHAPE: &str = "must be an array of event type strings";
    match events {
        None if !partial => Err("is required".into()),
        None => Ok(None),
        Some(Value::Array(items)) => {
            let names: Vec<&str> = items
                .iter()
                .map(Value::as_str)
                .collect::<Option<_>>()
                .ok_or(SHAPE)?;
            parse(&names).map(Some)
        }
        Some(_) => Err(SHAPE.into()),
    }
}

fn check_filters(filters: Option<&Value>) -> FieldCheck<Filters> {
    match filters {
        None => Ok(None),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| value.as_str().map(|v| (key.as_str(), v)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| "values must be strings of comma-separated accepted values".to_owned())
            .and_then(Filters::parse)
            .map(Some),
        Some(_) => Err("must be an object mapping data keys to accepted values".into()),
    }
}

/// Keeps a field's value, or records why it was refused.
fn keep<T>(field: &str, checked: FieldCheck<T>, errors: &mut Vec<FieldError>) -> Option<T> {
    keep_field(field, checked, errors).flatten()
}

/// Checks every field of a create (`partial == false`) or update body, reporting all at once.
/// An update passes the webhook's `mode`; a create's comes from the body.
pub(super) async fn check_input(
    state: &AppState,
    input: &WebhookInput,
    partial: bool,
    mode: DeliveryMode,
) -> Result<CheckedInput, ApiError> {
    let mut errors = Vec::new();
    let mode = keep(
        "mode",
        check_mode(input.mode.as_ref(), partial),
        &mut errors,
    )
    .unwrap_or(mode);
    let pull = mode == DeliveryMode::Pull;
    let url = if pull {
        refuse_for_pull(
            input.url.as_ref(),
            "must be left out: a pull webhook has no URL; pollers fetch its deliveries from \
             GET …/webhooks/{webhookId}/poll",
        )
    } else {
        check_url(state, input.url.as_ref(), partial).await
    };
    let url = keep("url", url, &mut errors);
    if pull {
        const PUSH_ONLY: &str =
            "applies to push webhooks only: a pull webhook's pollers decide how fast they take";
        keep::<u32>(
            "rateLimit",
            refuse_for_pull(input.rate_limit.as_ref(), PUSH_ONLY),
            &mut errors,
        );
        keep::<u32>(
            "maxConcurrency",
            refuse_for_pull(input.max_concurrency.as_ref(), PUSH_ONLY),
            &mut errors,
        );
    }
    let limits = check_limits(
        input.retry_schedule.as_ref(),
        input.rate_limit.as_ref().filter(|_| !pull),
        input.max_concurrency.as_ref().filter(|_| !pull),
        &mut errors,
    );
    let changes_nothing = input.mode.is_none()
        && input.url.is_none()
        && input.events.is_none()
        && input.filters.is_none()
        && input.enabled.is_none()
        && input.retry_schedule.is_none()
        && input.rate_limit.is_none()
        && input.max_concurrency.is_none()
        && input.description.is_none()
        && input.metadata.is_none()
        && input.headers.is_none();
    if partial && changes_nothing {
        errors.push(FieldError::new(
            "body",
            "give url, events, filters, enabled, retrySchedule, rateLimit, maxConcurrency, \
             description, metadata or headers to change",
        ));
    }
    let checked = CheckedInput {
        mode,
        url,
        events: keep(
            "events",
            check_events(input.events.as_ref(), partial, |names| {
                EventTypes::parse(names)
            }),
            &mut errors,
        ),
        filters: keep(
            "filters",
            check_filters(input.filters.as_ref()),
            &mut errors,
        ),
        limits,
        enabled: keep(
            "enabled",
            check_enabled(input.enabled.as_ref(), partial),
            &mut errors,
        ),
        labels: LabelsInput {
            description: keep(
                "description",
                check_description(input.description.as_ref()),
                &mut errors,
            ),
            metadata: keep(
                "metadata",
                check_metadata(input.metadata.as_ref()),
                &mut errors,
            ),
            headers: keep(
                "headers",
                check_headers(input.headers.as_ref()),
                &mut errors,
            ),
        },
    };
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn resolve_check(state: &AppState, url: &EndpointUrl) -> Result<(), String> {
    match url.domain() {
        Some(host) if !state.settings.url_policy.allow_private => {
            refuse_private_resolution(host, url.port_or_default()).await
        }
        _ => Ok(()),
    }
}

/// Resolution is a best-effort early warning at registration; it must not stall the request.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Refuses a host name that resolves to a loopback, private, link-local or similar address.
/// A name that does not resolve (yet) is accepted: the same check runs again at send time.
async fn refuse_private_resolution(host: &str, port: u16) -> Result<(), String> {
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await;
    match lookup {
        Ok(Ok(addresses)) => judge_resolution(host, addresses.map(|a| a.ip())),
        _ => Ok(()),
    }
}

fn judge_resolution(host: &str, addresses: impl IntoIterator<Item = IpAddr>) -> Result<(), String> {
    for ip in addresses {
        if let Some(reason) = forbidden_reason(ip) {
            return Err(format!(
                "must point at a public host; {host} resolves to {ip}, a {reason} address"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn localhost_by_name_is_refused() {
        let error = refuse_private_resolution("localhost", 443)
            .await
            .unwrap_err();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_name() {
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        let private: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(judge_resolution("hooks.test", [public]), Ok(()));
        assert_eq!(judge_resolution("hooks.test", []), Ok(()));
        let error = judge_resolution("hooks.test", [public, private]).unwrap_err();
        assert!(
            error.contains("10.1.2.3") && error.contains("private"),
            "{error}"
        );
    }
}
