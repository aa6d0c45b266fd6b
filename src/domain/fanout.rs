//! Fan-out planning: which subscribed webhooks each published event goes to, their filters
//! applied to the event's data.

use std::collections::HashMap;

use serde_json::Value;

use super::{Filters, ProjectId};

/// What fan-out needs to know of one event.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    pub project: ProjectId,
    pub event_type: &'a str,
    pub data: &'a Value,
}

/// A webhook of `project` subscribed to `event_type`, with its filters and what the caller
/// keeps of it (`target`).
#[derive(Debug, Clone)]
pub struct Subscriber<T> {
    pub project: ProjectId,
    pub event_type: String,
    pub filters: Filters,
    pub target: T,
}

/// The textual values of `data[key]`: a scalar, or each scalar of an array.
fn data_values(data: &Value, key: &str) -> Vec<String> {
    fn text(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match data.get(key) {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(value) => text(value).into_iter().collect(),
        None => Vec::new(),
    }
}

/// True when every filter accepts the event's data.
pub fn filters_accept(filters: &Filters, data: &Value) -> bool {
    filters.matches(|key| data_values(data, key))
}

/// The (project, event type) pairs of a batch of events, once each and sorted: what to look
/// subscribers up by.
pub fn subscription_pairs(events: &[Published<'_>]) -> Vec<(ProjectId, String)> {
    let mut pairs: Vec<(ProjectId, String)> = events
        .iter()
        .map(|e| (e.project, e.event_type.to_owned()))
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// For each event, in order, the targets of the subscribers of its (project, event type) whose
/// filters accept its data; subscribers keep the order they were given in.
pub fn plan_fanout<T: Clone>(
    events: &[Published<'_>],
    subscribers: Vec<Subscriber<T>>,
) -> Vec<Vec<T>> {
    let mut by_pair: HashMap<(ProjectId, String), Vec<(Filters, T)>> = HashMap::new();
    for subscriber in subscribers {
        by_pair
            .entry((subscriber.project, subscriber.event_type))
            .or_default()
            .push((subscriber.filters, subscriber.target));
    }
    events
        .iter()
        .map(|event| {
            by_pair
                .get(&(event.project, event.event_type.to_owned()))
                .map(|found| {
                    found
                        .iter()
                        .filter(|(filters, _)| filters_accept(filters, event.data))
                        .map(|(_, target)| target.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filters(pairs: &[(&str, &str)]) -> Filters {
        Filters::parse(pairs.iter().copied()).unwrap()
    }

    fn subscriber(
        project: ProjectId,
        event_type: &str,
        filter: &[(&str, &str)],
        name: &'static str,
    ) -> Subscriber<&'static str> {
        Subscriber {
            project,
            event_type: event_type.to_owned(),
            filters: filters(filter),
            target: name,
        }
    }

    #[test]
    fn filters_read_scalars_and_each_item_of_an_array_as_text() {
        let by_country = filters(&[("country", "US,CA")]);
        assert!(filters_accept(&by_country, &json!({"country": "CA"})));
        assert!(filters_accept(
            &by_country,
            &json!({"country": ["FR", "US"]})
        ));
        assert!(!filters_accept(&by_country, &json!({"country": "FR"})));
        assert!(!filters_accept(&by_country, &json!({})));
        let by_number = filters(&[("runs", "3"), ("live", "true")]);
        assert!(filters_accept(
            &by_number,
            &json!({"runs": 3, "live": true})
        ));
        assert!(!filters_accept(
            &by_number,
            &json!({"runs": 3, "live": {"x": 1}})
        ));
        assert!(filters_accept(&Filters::default(), &json!({"anything": 1})));
    }

    #[test]
    fn each_event_goes_to_its_own_projects_subscribers_that_accept_it() {
        let (mine, theirs) = (ProjectId::generate(), ProjectId::generate());
        let us = json!({"country": "US"});
        let fr = json!({"country": "FR"});
        let events = [
            Published {
                project: mine,
                event_type: "action.created",
                data: &us,
            },
            Published {
                project: mine,
                event_type: "action.created",
                data: &fr,
            },
            Published {
                project: theirs,
                event_type: "action.created",
                data: &us,
            },
            Published {
                project: mine,
                event_type: "visibility.changed",
                data: &us,
            },
        ];
        let plan = plan_fanout(
            &events,
            vec![
                subscriber(mine, "action.created", &[], "all of mine"),
                subscriber(mine, "action.created", &[("country", "US")], "my US"),
                subscriber(theirs, "action.created", &[("country", "FR")], "their FR"),
            ],
        );
        assert_eq!(
            plan,
            [
                vec!["all of mine", "my US"],
                vec!["all of mine"],
                vec![],
                vec![],
            ]
        );
    }

    #[test]
    fn pairs_are_listed_once() {
        let (a, b) = (ProjectId::generate(), ProjectId::generate());
        let data = json!({});
        let events = [
            Published {
                project: a,
                event_type: "x.y",
                data: &data,
            },
            Published {
                project: b,
                event_type: "x.y",
                data: &data,
            },
            Published {
                project: a,
                event_type: "x.y",
                data: &data,
            },
        ];
        let pairs = subscription_pairs(&events);
        assert_eq!(pairs.len(), 2);
        assert!(pairs.contains(&(a, "x.y".to_owned())) && pairs.contains(&(b, "x.y".to_owned())));
    }
}
