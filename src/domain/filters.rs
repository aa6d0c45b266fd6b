//! Per-webhook event filters: top-level `data` keys mapped to the values a webhook accepts.

use std::collections::BTreeMap;

const MAX_FILTERS: usize = 10;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 1024;

/// Every filter must match for an event to reach the webhook; no filters match every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `(key, "value1,value2")` pairs as written in the API.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut filters = BTreeMap::new();
        for (key, values) in pairs {
            if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
                return Err(format!(
                    "keys must be 1 to {MAX_KEY_CHARS} characters, got \"{key}\""
                ));
            }
            if key.chars().chain(values.chars()).any(char::is_control) {
                return Err(format!(
                    "\"{}\" must not contain control characters",
                    key.escape_debug()
                ));
            }
            if values.chars().count() > MAX_VALUE_CHARS {
                return Err(format!(
                    "the value of \"{key}\" must be at most {MAX_VALUE_CHARS} characters"
                ));
            }
            let accepted: Vec<String> = values
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
            if accepted.is_empty() {
                return Err(format!(
                    "the value of \"{key}\" must list at least one accepted value"
                ));
            }
            filters.insert(key.to_owned(), accepted);
        }
        if filters.len() > MAX_FILTERS {
            return Err(format!("at most {MAX_FILTERS} filters are allowed"));
        }
        Ok(Self(filters))
    }

    /// The filters as `(key, "value1,value2")` pairs, the form they are stored and shown in.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(key, values)| (key.clone(), values.join(",")))
            .collect()
    }

    /// `values_of(key)` gives the event's value(s) at `data.key` as text (empty when absent).
    pub fn matches(&self, values_of: impl Fn(&str) -> Vec<String>) -> bool {
        self.0.iter().all(|(key, accepted)| {
            values_of(key)
                .iter()
                .any(|value| accepted.iter().any(|a| a == value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(key: &str) -> Vec<String> {
        match key {
            "country" => vec!["US".into()],
            "tags" => vec!["a".into(), "b".into()],
            _ => vec![],
        }
    }

    #[test]
    fn no_filters_match_everything() {
        assert!(Filters::default().matches(data));
    }

    #[test]
    fn every_filter_must_accept_the_events_value() {
        let us = Filters::parse([("country", "GB, US")]).unwrap();
        assert!(us.matches(data));
        let gb = Filters::parse([("country", "GB")]).unwrap();
        assert!(!gb.matches(data));
        let both = Filters::parse([("country", "US"), ("tags", "b")]).unwrap();
        assert!(both.matches(data));
        let missing = Filters::parse([("country", "US"), ("plan", "pro")]).unwrap();
        assert!(!missing.matches(data));
    }

    #[test]
    fn rejects_empty_keys_and_values_and_too_many_filters() {
        assert!(Filters::parse([("", "x")]).is_err());
        assert!(Filters::parse([("k\u{0}", "x")]).is_err());
        assert!(Filters::parse([("k", "a\u{7}")]).is_err());
        assert!(Filters::parse([("k", " , ")]).is_err());
        let keys: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
        assert!(Filters::parse(keys.iter().map(|k| (k.as_str(), "v"))).is_err());
    }

    #[test]
    fn pairs_round_trip_in_canonical_form() {
        let filters = Filters::parse([("country", " US ,GB")]).unwrap();
        assert_eq!(
            filters.to_pairs(),
            [("country".to_owned(), "US,GB".to_owned())]
        );
    }
}
