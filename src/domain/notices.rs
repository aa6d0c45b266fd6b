//! Operational notices: what kind of subscriber a webhook row is, and what a project's alert
//! endpoints are told when one of its webhooks starts failing, is disabled or recovers.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{DeliveryId, EventType, WebhookId, redact_query};

/// What a subscription is for. Both kinds share the machinery (signing, retries, the delivery
/// log, endpoint health); only webhooks are DevTune's, and only alert endpoints get notices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookKind {
    Webhook,
    AlertEndpoint,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Webhook => "webhook",
            WebhookKind::AlertEndpoint => "alert_endpoint",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [WebhookKind::Webhook, WebhookKind::AlertEndpoint]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }

    /// Whether the health of this kind is announced: an alert endpoint's own failures are not,
    /// or a broken one would report on itself.
    pub fn raises_notices(self) -> bool {
        self == WebhookKind::Webhook
    }
}

/// One change in a webhook's health worth telling the tenant about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `webhook.failing`, `webhook.disabled` or `webhook.recovered`.
    pub event: EventType,
    /// The attempt whose outcome raised it.
    pub delivery_id: DeliveryId,
    pub at: DateTime<Utc>,
    /// The failures in a row: so far, or (on recovery) those the success ended.
    pub consecutive_failures: i64,
    pub failing_since: Option<DateTime<Utc>>,
    /// Set on `webhook.disabled`: why health disabled the webhook.
    pub disabled_reason: Option<String>,
}

/// The webhook a notice is about, as its payload names it.
pub struct NoticeSubject<'a> {
    pub webhook_id: WebhookId,
    /// `None` for a pull webhook, which has no URL.
    pub url: Option<&'a str>,
    /// What went wrong with the attempt that raised the notice, if it failed.
    pub last_error: Option<String>,
}

/// A notice's `data`, in the order receivers read it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoticeData<'a> {
    webhook_id: String,
    url: Option<String>,
    reason: &'a str,
    consecutive_failures: i64,
    failing_since: Option<String>,
    last_error: Option<String>,
    disabled_at: Option<String>,
}

fn api_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Notice {
    /// The sentence a notice's `reason` carries.
    fn reason(&self) -> String {
        let failures = self.consecutive_failures;
        match (&self.event, &self.disabled_reason) {
            (EventType::WebhookDisabled, Some(reason)) => reason.clone(),
            (EventType::WebhookRecovered, _) => {
                format!("an attempt succeeded after {failures} failures in a row")
            }
            _ => format!("{failures} attempts in a row failed"),
        }
    }

    /// The notice's `data`; a URL's query values are hidden, since they may carry credentials.
    pub fn data(&self, subject: &NoticeSubject<'_>) -> serde_json::Value {
        let reason = self.reason();
        let data = NoticeData {
            webhook_id: subject.webhook_id.to_string(),
            url: subject.url.map(redact_query),
            reason: &reason,
            consecutive_failures: self.consecutive_failures,
            failing_since: self.failing_since.map(api_time),
            last_error: subject.last_error.clone(),
            disabled_at: (self.event == EventType::WebhookDisabled).then(|| api_time(self.at)),
        };
        serde_json::to_value(data).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: EventType, reason: Option<&str>) -> Notice {
        Notice {
            event,
            delivery_id: DeliveryId::generate(),
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            consecutive_failures: 5,
            failing_since: DateTime::from_timestamp(1_799_999_000, 0),
            disabled_reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_data_names_the_webhook_and_hides_query_values() {
        let webhook_id = WebhookId::generate();
        let subject = NoticeSubject {
            webhook_id,
            url: Some("https://hooks.example.com/in?token=abc"),
            last_error: Some("HTTP 500".into()),
        };
        let data = notice(
            EventType::WebhookDisabled,
            Some("the endpoint answered 410 Gone"),
        )
        .data(&subject);
        assert_eq!(data["webhookId"], webhook_id.to_string());
        assert!(!data["url"].as_str().unwrap().contains("abc"), "{data}");
        assert_eq!(data["reason"], "the endpoint answered 410 Gone");
        assert_eq!(data["disabledAt"], "2027-01-15T08:00:00.000Z");
        assert_eq!(data["lastError"], "HTTP 500");

        let failing = notice(EventType::WebhookFailing, None).data(&subject);
        assert_eq!(failing["reason"], "5 attempts in a row failed");
        assert!(failing["disabledAt"].is_null());
        let recovered = notice(EventType::WebhookRecovered, None).data(&subject);
        assert!(recovered["reason"].as_str().unwrap().contains("succeeded"));
    }

    #[test]
    fn kinds_round_trip_and_only_webhooks_raise_notices() {
        for kind in [WebhookKind::Webhook, WebhookKind::AlertEndpoint] {
            assert_eq!(WebhookKind::parse(kind.as_str()), Some(kind));
        }
        assert!(WebhookKind::Webhook.raises_notices());
        assert!(!WebhookKind::AlertEndpoint.raises_notices());
    }
}
