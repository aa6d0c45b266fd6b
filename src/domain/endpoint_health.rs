//! Endpoint health: the failure run of each webhook, folded attempt by attempt, and when a
//! failing endpoint is disabled (it answered 410 Gone, or it has failed every attempt for long
//! enough and often enough that more attempts only add noise).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::{AttemptResult, DeliveryId, WebhookId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    /// How long every attempt must have failed.
    pub after: TimeDelta,
    /// How many failures in a row that run must hold at least.
    pub min_failures: i64,
}

impl DisablePolicy {
    /// Why the endpoint should be disabled after this attempt, or `None` to keep it.
    pub fn reason(
        &self,
        gone: bool,
        consecutive_failures: i64,
        failing_since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if gone {
            return Some("the endpoint answered 410 Gone".into());
        }
        let since = failing_since?;
        let failing_for = now - since;
        (consecutive_failures >= self.min_failures && failing_for >= self.after).then(|| {
            format!(
                "every attempt failed for {} hours ({consecutive_failures} failures in a row)",
                failing_for.num_hours()
            )
        })
    }
}

/// A webhook's failure run: how many attempts failed in a row, and since when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureRun {
    pub consecutive: i64,
    pub since: Option<DateTime<Utc>>,
}

/// What endpoint health needs to know of one finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFacts {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub result: AttemptResult,
    /// The receiver answered 410 Gone.
    pub gone: bool,
    pub finished_at: DateTime<Utc>,
    pub policy: DisablePolicy,
}

/// What a batch of attempts changes on one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTally {
    pub webhook_id: WebhookId,
    pub total: i64,
    pub succeeded: i64,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The failure run after the batch.
    pub run: FailureRun,
    /// Set when the batch disables the webhook, at the first attempt that crossed the policy.
    pub disable: Option<Disable>,
}

impl WebhookTally {
    fn starting(webhook_id: WebhookId, run: FailureRun) -> Self {
        Self {
            webhook_id,
            total: 0,
            succeeded: 0,
            last_success_at: None,
            last_failure_at: None,
            run,
            disable: None,
        }
    }

    fn add(&mut self, attempt: &AttemptFacts) {
        self.total += 1;
        if attempt.result == AttemptResult::Succeeded {
            self.succeeded += 1;
            self.last_success_at = Some(attempt.finished_at);
            self.run = FailureRun::default();
            return;
        }
        self.last_failure_at = Some(attempt.finished_at);
        self.run.consecutive += 1;
        self.run.since = self.run.since.or(Some(attempt.finished_at));
        if self.disable.is_none() {
            self.disable = attempt
                .policy
                .reason(
                    attempt.gone,
                    self.run.consecutive,
                    self.run.since,
                    attempt.finished_at,
                )
                .map(|reason| Disable {
                    delivery_id: attempt.delivery_id,
                    at: attempt.finished_at,
                    reason,
                });
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disable {
    /// The attempt that disabled the webhook, and when it finished.
    pub delivery_id: DeliveryId,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// Folds attempts, in the order they finished, into one change per webhook (in order of first
/// appearance), starting from each webhook's failure run before them: attempt by attempt it
/// decides exactly what recording them one at a time would have.
pub fn tally_attempts(
    attempts: impl IntoIterator<Item = AttemptFacts>,
    runs_before: &HashMap<WebhookId, FailureRun>,
) -> Vec<WebhookTally> {
    let mut tallies: Vec<WebhookTally> = Vec::new();
    for attempt in attempts {
        let index = match tallies
            .iter()
            .position(|t| t.webhook_id == attempt.webhook_id)
        {
            Some(index) => index,
            None => {
                let run = runs_before
                    .get(&attempt.webhook_id)
                    .copied()
                    .unwrap_or_default();
                tallies.push(WebhookTally::starting(attempt.webhook_id, run));
                tallies.len() - 1
            }
        };
        tallies[index].add(&attempt);
    }
    tallies
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: DisablePolicy = DisablePolicy {
        after: TimeDelta::hours(72),
        min_failures: 20,
    };

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    #[test]
    fn gone_disables_at_once() {
        let reason = POLICY.reason(true, 1, Some(at(0)), at(0)).unwrap();
        assert!(reason.contains("410"));
    }

    #[test]
    fn needs_both_the_duration_and_the_count() {
        assert_eq!(POLICY.reason(false, 19, Some(at(0)), at(100)), None);
        assert_eq!(POLICY.reason(false, 500, Some(at(0)), at(71)), None);
        assert_eq!(POLICY.reason(false, 500, None, at(100)), None);
        let reason = POLICY.reason(false, 20, Some(at(0)), at(72)).unwrap();
        assert_eq!(
            reason,
            "every attempt failed for 72 hours (20 failures in a row)"
        );
    }

    fn attempt(webhook: WebhookId, result: AttemptResult, hours: i64) -> AttemptFacts {
        AttemptFacts {
            delivery_id: DeliveryId::generate(),
            webhook_id: webhook,
            result,
            gone: false,
            finished_at: at(hours),
            policy: POLICY,
        }
    }

    #[test]
    fn a_success_ends_the_failure_run_and_counts() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(
            webhook,
            FailureRun {
                consecutive: 7,
                since: Some(at(0)),
            },
        )]);
        let tallies = tally_attempts(
            [
                attempt(webhook, AttemptResult::Failed, 1),
                attempt(webhook, AttemptResult::Succeeded, 2),
                attempt(webhook, AttemptResult::RetryAt(at(3)), 3),
            ],
            &before,
        );
        assert_eq!(tallies.len(), 1);
        let tally = &tallies[0];
        assert_eq!((tally.total, tally.succeeded), (3, 1));
        assert_eq!(tally.last_success_at, Some(at(2)));
        assert_eq!(tally.last_failure_at, Some(at(3)));
        assert_eq!(
            tally.run,
            FailureRun {
                consecutive: 1,
                since: Some(at(3)),
            }
        );
        assert_eq!(tally.disable, None);
    }

    #[test]
    fn the_run_carries_over_from_before_the_batch_to_the_disable_decision() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(
            webhook,
            FailureRun {
                consecutive: 18,
                since: Some(at(0)),
            },
        )]);
        let first = attempt(webhook, AttemptResult::Failed, 71);
        let crossing = attempt(webhook, AttemptResult::Failed, 72);
        let later = attempt(webhook, AttemptResult::Failed, 73);
        let tallies = tally_attempts([first, crossing, later], &before);
        let disable = tallies[0]
            .disable
            .clone()
            .expect("the 20th failure at 72 h disables");
        assert_eq!(disable.delivery_id, crossing.delivery_id);
        assert_eq!(disable.at, at(72));
        assert_eq!(tallies[0].run.consecutive, 21);
    }

    #[test]
    fn gone_disables_on_the_first_failure_and_each_webhook_has_its_own_tally() {
        let (a, b) = (WebhookId::generate(), WebhookId::generate());
        let gone = AttemptFacts {
            gone: true,
            ..attempt(b, AttemptResult::Failed, 1)
        };
        let tallies = tally_attempts(
            [attempt(a, AttemptResult::Succeeded, 0), gone],
            &HashMap::new(),
        );
        assert_eq!(
            tallies.iter().map(|t| t.webhook_id).collect::<Vec<_>>(),
            [a, b]
        );
        assert_eq!(tallies[0].disable, None);
        assert_eq!(
            tallies[1].disable.as_ref().map(|d| d.delivery_id),
            Some(gone.delivery_id)
        );
    }
}
