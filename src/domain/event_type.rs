//! The six DevTune event types and the validated subscription list.

use std::collections::HashSet;

/// An event type a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    SearchTrackingCompleted,
    VisibilityChanged,
    ActionCreated,
    ActionUpdated,
    ActionRecommendationCreated,
    ActionRecommendationUpdated,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::SearchTrackingCompleted,
        EventType::VisibilityChanged,
        EventType::ActionCreated,
        EventType::ActionUpdated,
        EventType::ActionRecommendationCreated,
        EventType::ActionRecommendationUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SearchTrackingCompleted => "search-tracking.completed",
            EventType::VisibilityChanged => "visibility.changed",
            EventType::ActionCreated => "action.created",
            EventType::ActionUpdated => "action.updated",
            EventType::ActionRecommendationCreated => "action.recommendation.created",
            EventType::ActionRecommendationUpdated => "action.recommendation.updated",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// Every type's name, comma-separated, for messages that list the choices.
    pub fn known_list() -> String {
        Self::ALL.map(EventType::as_str).join(", ")
    }
}

/// A webhook's subscriptions: one to six distinct event types, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<EventType>);

impl EventTypes {
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must list at least one event type".into());
        }
        if raw.len() > EventType::ALL.len() {
            return Err(format!(
                "must list at most {} event types",
                EventType::ALL.len()
            ));
        }
        let mut seen = HashSet::new();
        let mut types = Vec::with_capacity(raw.len());
        for item in raw {
            let item = item.as_ref();
            let event_type = EventType::parse(item).ok_or_else(|| {
                format!(
                    "unknown event type \"{item}\"; expected one of: {}",
                    EventType::known_list()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("action.deleted"), None);
    }

    #[test]
    fn accepts_one_to_six_distinct_known_types() {
        let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
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
