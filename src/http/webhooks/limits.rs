//! Checking a webhook's delivery limits: its own retry schedule, rate limit and most attempts
//! in flight. Each is absent (left as it is), `null` (the service's default) or a value.

use serde_json::{Value, json};

use crate::domain::{FieldError, RetrySchedule};
use crate::http::extract::{keep_field, whole_number};
use crate::store::WebhookLimits;

const RATE_LIMIT: (u64, u64) = (1, 10_000);
const MAX_CONCURRENCY: (u64, u64) = (1, 256);

/// The limits a body sets; the outer `None` leaves a field as it is.
#[derive(Default)]
pub(super) struct LimitsInput {
    pub retry_schedule: Option<Option<RetrySchedule>>,
    pub rate_limit: Option<Option<u32>>,
    pub max_concurrency: Option<Option<u32>>,
}

impl LimitsInput {
    /// The limits of a new webhook: what is not given is the default.
    pub fn for_new_webhook(&self) -> WebhookLimits {
        WebhookLimits {
            retry_schedule: self.retry_schedule.clone().flatten(),
            rate_limit: self.rate_limit.flatten(),
            max_concurrency: self.max_concurrency.flatten(),
        }
    }

    /// Adds what is set to an audit entry's changes.
    pub fn describe(&self, changes: &mut serde_json::Map<String, Value>) {
        if let Some(schedule) = &self.retry_schedule {
            let seconds = schedule.as_ref().map(RetrySchedule::to_seconds);
            changes.insert("retrySchedule".into(), json!(seconds));
        }
        if let Some(rate) = self.rate_limit {
            changes.insert("rateLimit".into(), json!(rate));
        }
        if let Some(concurrency) = self.max_concurrency {
            changes.insert("maxConcurrency".into(), json!(concurrency));
        }
    }
}

fn bounded(value: &Value, (low, high): (u64, u64)) -> Result<Option<u32>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let number = whole_number(value)
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("must be an integer from {low} to {high}, or null"))?;
    Ok(Some(u32::try_from(number).expect("bounded below u32::MAX")))
}

fn schedule(value: &Value) -> Result<Option<RetrySchedule>, String> {
    const SHAPE: &str = "must be an array of delays in whole seconds, or null";
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => {
            let seconds = items
                .iter()
                .map(whole_number)
                .collect::<Option<Vec<u64>>>()
                .ok_or(SHAPE)?;
            RetrySchedule::from_seconds(&seconds).map(Some)
        }
        _ => Err(SHAPE.into()),
    }
}

/// Checks the three fields, recording each refusal under its own name.
pub(super) fn check_limits(
    retry_schedule: Option<&Value>,
    rate_limit: Option<&Value>,
    max_concurrency: Option<&Value>,
    errors: &mut Vec<FieldError>,
) -> LimitsInput {
    fn keep<T>(
        field: &str,
        checked: Option<Result<T, String>>,
        errors: &mut Vec<FieldError>,
    ) -> Option<T> {
        keep_field(field, checked?, errors)
    }
    LimitsInput {
        retry_schedule: keep("retrySchedule", retry_schedule.map(schedule), errors),
        rate_limit: keep(
            "rateLimit",
            rate_limit.map(|v| bounded(v, RATE_LIMIT)),
            errors,
        ),
        max_concurrency: keep(
            "maxConcurrency",
            max_concurrency.map(|v| bounded(v, MAX_CONCURRENCY)),
            errors,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Value) -> (LimitsInput, Vec<String>) {
        let mut errors = Vec::new();
        let limits = check_limits(
            body.get("retrySchedule"),
            body.get("rateLimit"),
            body.get("maxConcurrency"),
            &mut errors,
        );
        (limits, errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn absent_null_and_values_mean_keep_default_and_set() {
        let (limits, errors) = check(json!({}));
        assert!(errors.is_empty());
        assert!(limits.retry_schedule.is_none() && limits.rate_limit.is_none());
        assert!(limits.max_concurrency.is_none());
        let (limits, _) = check(json!({ "retrySchedule": null, "rateLimit": null }));
        assert_eq!(limits.retry_schedule, Some(None));
        assert_eq!(limits.rate_limit, Some(None));
        let (limits, errors) =
            check(json!({ "retrySchedule": [1, 2.0], "rateLimit": 20, "maxConcurrency": 256 }));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            limits
                .for_new_webhook()
                .retry_schedule
                .unwrap()
                .to_seconds(),
            [1, 2]
        );
        assert_eq!(limits.rate_limit, Some(Some(20)));
        assert_eq!(limits.max_concurrency, Some(Some(256)));
    }

    #[test]
    fn each_bad_field_is_named() {
        let (_, errors) = check(json!({
            "retrySchedule": [0],
            "rateLimit": 10_001,
            "maxConcurrency": "2"
        }));
        assert_eq!(errors, ["retrySchedule", "rateLimit", "maxConcurrency"]);
        let (_, errors) =
            check(json!({ "retrySchedule": "1m", "rateLimit": 0.5, "maxConcurrency": 0 }));
        assert_eq!(errors, ["retrySchedule", "rateLimit", "maxConcurrency"]);
        let (_, errors) = check(json!({ "retrySchedule": [1, "2"] }));
        assert_eq!(errors, ["retrySchedule"]);
    }
}
