//! The event types (DevTune's six, and the three notices about a webhook's health that alert
//! endpoints receive) and the validated subscription list.

use std::collections::HashSet;

/// An event type a webhook or an alert endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    SearchTrackingCompleted,
    VisibilityChanged,
    ActionCreated,
    ActionUpdated,
    ActionRecommendationCreated,
    ActionRecommendationUpdated,
    /// A webhook's failure run reached the alerting threshold.
    WebhookFailing,
    /// Endpoint health disabled a webhook.
    WebhookDisabled,
    /// A webhook that was announced failing or disabled delivered again.
    WebhookRecovered,
}

impl EventType {
    /// What tenants publish and webhooks subscribe to: DevTune's types, and only those.
    pub const DEVTUNE: [EventType; 6] = [
        EventType::SearchTrackingCompleted,
        EventType::VisibilityChanged,
        EventType::ActionCreated,
        EventType::ActionUpdated,
        EventType::ActionRecommendationCreated,
        EventType::ActionRecommendationUpdated,
    ];

    /// What the service itself raises about webhooks, for alert endpoints.
    pub const NOTICES: [EventType; 3] = [
        EventType::WebhookFailing,
        EventType::WebhookDisabled,
        EventType::WebhookRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SearchTrackingCompleted => "search-tracking.completed",
            EventType::VisibilityChanged => "visibility.changed",
            EventType::ActionCreated => "action.created",
            EventType::ActionUpdated => "action.updated",
            EventType::ActionRecommendationCreated => "action.recommendation.created",
            EventType::ActionRecommendationUpdated => "action.recommendation.updated",
            EventType::WebhookFailing => "webhook.failing",
            EventType::WebhookDisabled => "webhook.disabled",
            EventType::WebhookRecovered => "webhook.recovered",
        }
    }

    /// One of DevTune's types, the only ones a tenant publishes or a webhook subscribes to.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::parse_among(raw, &Self::DEVTUNE)
    }

    /// Any type, DevTune's or a notice, as stored.
    pub fn parse_stored(raw: &str) -> Option<Self> {
        Self::parse_among(raw, &Self::DEVTUNE).or_else(|| Self::parse_among(raw, &Self::NOTICES))
    }

    fn parse_among(raw: &str, choices: &[EventType]) -> Option<Self> {
        choices.iter().copied().find(|t| t.as_str() == raw)
    }

    /// DevTune's type names, comma-separated, for messages that list the choices.
    pub fn known_list() -> String {
        Self::list(&Self::DEVTUNE)
    }

    fn list(choices: &[EventType]) -> String {
        choices
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A subscription list: one or more distinct event types from one set, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<EventType>);

impl EventTypes {
    /// A webhook's subscriptions: one to six of DevTune's types.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        Self::parse_among(raw, &EventType::DEVTUNE)
    }

    /// An alert endpoint's subscriptions: one to three notice types.
    pub fn parse_notices<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        Self::parse_among(raw, &EventType::NOTICES)
    }

    fn parse_among<S: AsRef<str>>(raw: &[S], choices: &[EventType]) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must list at least one event type".into());
        }
        if raw.len() > choices.len() {
            return Err(format!("must list at most {} event types", choices.len()));
        }
        let mut seen = HashSet::new();
        let mut types = Vec::with_capacity(raw.len());
        for item in raw {
            let item = item.as_ref();
            let event_type = EventType::parse_among(item, choices).ok_or_else(|| {
                format!(
                    "unknown event type \"{item}\"; expected one of: {}",
                    EventType::list(choices)
                )
            })?;
            if !seen.insert(event_type) {
                return Err(format!("lists \"{item}\" more than once"));
            }
            types.push(event_type);
        }
        Ok(Self(types))
    }

    pub fn as_slice(&self) -> &[EventType] {
        &self.0
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|t| t.as_str().to_owned()).collect()
    }

    pub fn contains(&self, event_type: EventType) -> bool {
        self.0.contains(&event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in EventType::DEVTUNE {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        for t in EventType::DEVTUNE.into_iter().chain(EventType::NOTICES) {
            assert_eq!(EventType::parse_stored(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("action.deleted"), None);
        assert_eq!(
            EventType::parse("webhook.failing"),
            None,
            "tenants neither publish notices nor subscribe webhooks to them"
        );
    }

    #[test]
    fn notice_subscriptions_take_only_notice_types() {
        let all: Vec<&str> = EventType::NOTICES.iter().map(|t| t.as_str()).collect();
        assert_eq!(EventTypes::parse_notices(&all).unwrap().as_slice().len(), 3);
        let error = EventTypes::parse_notices(&["action.created"]).unwrap_err();
        assert!(error.contains("webhook.failing"), "{error}");
        assert!(EventTypes::parse(&["webhook.disabled"]).is_err());
    }

    #[test]
    fn accepts_one_to_six_distinct_known_types() {
        let all: Vec<&str> = EventType::DEVTUNE.iter().map(|t| t.as_str()).collect();
        assert_eq!(EventTypes::parse(&all).unwrap().as_slice().len(), 6);
        assert!(EventTypes::parse(&["action.created"]).is_ok());
    }

    #[test]
    fn rejects_empty_duplicate_unknown_and_oversized_lists() {
        assert!(EventTypes::parse::<&str>(&[]).is_err());
        assert!(EventTypes::parse(&["action.created", "action.created"]).is_err());
        assert!(EventTypes::parse(&["nope"]).unwrap_err().contains("nope"));
        let seven = ["action.created"; 7];
        assert!(EventTypes::parse(&seven).unwrap_err().contains("at most 6"));
    }
}
