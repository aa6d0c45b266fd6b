//! Endpoint health: the failure run of each webhook, folded attempt by attempt; when a failing
//! endpoint is disabled (it answered 410 Gone, or it has failed every attempt for long enough
//! and often enough that more attempts only add noise); and which changes are announced to the
//! project's alert endpoints.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{
    AttemptResult, DeliveryId, EventType, Hold, Notice, Pressure, WebhookId, adapt_concurrency,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How long every attempt must have failed before the endpoint is disabled.
    pub after: TimeDelta,
    /// How many failures in a row that run must hold at least.
    pub min_failures: i64,
    /// How many failures in a row make a run worth a `webhook.failing` notice.
    pub failing_after: i64,
}

impl HealthPolicy {
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

/// A webhook's failure run: how many attempts failed in a row, since when, and whether a notice
/// announced it (so it gets no second `webhook.failing`, and its end is announced).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureRun {
    pub consecutive: i64,
    pub since: Option<DateTime<Utc>>,
    pub announced: bool,
}

/// A webhook's health and flow before a batch of attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthBefore {
    pub run: FailureRun,
    /// Whether changes in its health are announced (see `WebhookKind::raises_notices`).
    pub raises_notices: bool,
    /// Health already disabled it: test events and manual retries still reach it, but they
    /// neither disable it again nor announce anything until a PATCH re-enables it.
    pub disabled: bool,
    /// The effective in-flight limit; `None` is the maximum.
    pub concurrency: Option<u32>,
    /// The current backoff for throttling without `Retry-After`.
    pub backoff: Option<Duration>,
}

/// What endpoint health needs to know of one finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptFacts {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub result: AttemptResult,
    /// The receiver answered 410 Gone.
    pub gone: bool,
    /// The receiver asked us to slow down: no failure, no success.
    pub throttled: bool,
    /// The hold that answer put on the webhook.
    pub hold: Option<Hold>,
    pub pressure: Pressure,
    /// The webhook's most attempts in flight.
    pub max_concurrency: u32,
    pub finished_at: DateTime<Utc>,
    pub policy: HealthPolicy,
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
    /// The effective in-flight limit after the batch.
    pub concurrency: u32,
    /// The latest hold a throttling answer put on the webhook in this batch.
    pub throttled_until: Option<DateTime<Utc>>,
    /// The backoff for throttling without `Retry-After` after the batch.
    pub backoff: Option<Duration>,
    /// What the batch changed that the project's alert endpoints are told, in order.
    pub notices: Vec<Notice>,
    raises_notices: bool,
    already_disabled: bool,
}

impl WebhookTally {
    fn starting(webhook_id: WebhookId, before: HealthBefore, max_concurrency: u32) -> Self {
        Self {
            webhook_id,
            total: 0,
            succeeded: 0,
            last_success_at: None,
            last_failure_at: None,
            run: before.run,
            disable: None,
            concurrency: before.concurrency.unwrap_or(max_concurrency),
            throttled_until: None,
            backoff: before.backoff,
            notices: Vec::new(),
            raises_notices: before.raises_notices,
            already_disabled: before.disabled,
        }
    }

    /// Records a notice about the current run, raised by `attempt`, if this webhook's health
    /// is announced.
    fn announce(&mut self, event: EventType, attempt: &AttemptFacts, reason: Option<String>) {
        if !self.raises_notices || self.already_disabled {
            return;
        }
        self.notices.push(Notice {
            event,
            delivery_id: attempt.delivery_id,
            at: attempt.finished_at,
            consecutive_failures: self.run.consecutive,
            failing_since: self.run.since,
            disabled_reason: reason,
        });
        self.run.announced = true;
    }

    fn add(&mut self, attempt: &AttemptFacts) {
        self.concurrency =
            adapt_concurrency(self.concurrency, attempt.max_concurrency, attempt.pressure);
        if attempt.throttled {
            if let Some(hold) = attempt.hold {
                self.throttled_until = self.throttled_until.max(Some(hold.until));
                self.backoff = hold.backoff.or(self.backoff);
            }
            // A delivery given up on after throttling failed, though the endpoint did not.
            if attempt.result == AttemptResult::Failed {
                self.total += 1;
                self.last_failure_at = Some(attempt.finished_at);
            }
            return;
        }
        self.total += 1;
        if attempt.result == AttemptResult::Succeeded {
            self.succeeded += 1;
            self.last_success_at = Some(attempt.finished_at);
            if self.run.announced {
                self.announce(EventType::WebhookRecovered, attempt, None);
            }
            self.run = FailureRun::default();
            self.backoff = None;
            return;
        }
        self.last_failure_at = Some(attempt.finished_at);
        self.run.consecutive += 1;
        self.run.since = self.run.since.or(Some(attempt.finished_at));
        if !self.run.announced && self.run.consecutive >= attempt.policy.failing_after {
            self.announce(EventType::WebhookFailing, attempt, None);
        }
        if self.disable.is_none() && !self.already_disabled {
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
            if let Some(disable) = &self.disable {
                let reason = disable.reason.clone();
                self.announce(EventType::WebhookDisabled, attempt, Some(reason));
            }
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
    before: &HashMap<WebhookId, HealthBefore>,
) -> Vec<WebhookTally> {
    let mut tallies: Vec<WebhookTally> = Vec::new();
    for attempt in attempts {
        let index = match tallies
            .iter()
            .position(|t| t.webhook_id == attempt.webhook_id)
        {
            Some(index) => index,
            None => {
                let start = before.get(&attempt.webhook_id).copied().unwrap_or_default();
                tallies.push(WebhookTally::starting(
                    attempt.webhook_id,
                    start,
                    attempt.max_concurrency,
                ));
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

    const POLICY: HealthPolicy = HealthPolicy {
        after: TimeDelta::hours(72),
        min_failures: 20,
        failing_after: 5,
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
            throttled: false,
            hold: None,
            pressure: if result == AttemptResult::Succeeded {
                Pressure::Eased
            } else {
                Pressure::Neutral
            },
            max_concurrency: 16,
            finished_at: at(hours),
            policy: POLICY,
        }
    }

    fn run_before(consecutive: i64, since: DateTime<Utc>) -> HealthBefore {
        HealthBefore {
            run: FailureRun {
                consecutive,
                since: Some(since),
                announced: false,
            },
            ..HealthBefore::default()
        }
    }

    #[test]
    fn a_success_ends_the_failure_run_and_counts() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(webhook, run_before(7, at(0)))]);
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
                announced: false,
            }
        );
        assert_eq!(tally.disable, None);
    }

    #[test]
    fn the_run_carries_over_from_before_the_batch_to_the_disable_decision() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(webhook, run_before(18, at(0)))]);
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

    #[test]
    fn throttled_answers_hold_the_webhook_halve_its_concurrency_and_leave_its_health_alone() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(webhook, run_before(3, at(0)))]);
        let throttle = |hours: i64, until: i64, backoff: Option<u64>| AttemptFacts {
            throttled: true,
            hold: Some(Hold {
                until: at(until),
                backoff: backoff.map(Duration::from_secs),
            }),
            pressure: Pressure::Overloaded,
            ..attempt(webhook, AttemptResult::Throttled(at(until)), hours)
        };
        let tallies = tally_attempts([throttle(1, 5, Some(2)), throttle(2, 3, None)], &before);
        let tally = &tallies[0];
        assert_eq!(
            (tally.total, tally.succeeded),
            (0, 0),
            "throttled attempts are not counted"
        );
        assert_eq!(
            tally.run, before[&webhook].run,
            "the failure run is untouched"
        );
        assert_eq!(tally.last_failure_at, None);
        assert_eq!(tally.disable, None);
        assert_eq!(tally.throttled_until, Some(at(5)), "the latest hold wins");
        assert_eq!(tally.backoff, Some(Duration::from_secs(2)));
        assert_eq!(tally.concurrency, 4, "16 halved twice");
    }

    #[test]
    fn successes_climb_back_and_clear_the_backoff() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(
            webhook,
            HealthBefore {
                concurrency: Some(2),
                backoff: Some(Duration::from_secs(8)),
                ..HealthBefore::default()
            },
        )]);
        let ok = || attempt(webhook, AttemptResult::Succeeded, 1);
        let tallies = tally_attempts([ok(), ok(), ok()], &before);
        assert_eq!(tallies[0].concurrency, 5);
        assert_eq!(tallies[0].backoff, None);
        assert_eq!(tallies[0].throttled_until, None);
    }

    fn announced(before: HealthBefore) -> HealthBefore {
        HealthBefore {
            raises_notices: true,
            ..before
        }
    }

    fn notice_events(tally: &WebhookTally) -> Vec<EventType> {
        tally.notices.iter().map(|n| n.event).collect()
    }

    #[test]
    fn a_run_is_announced_failing_once_when_it_reaches_the_threshold() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(webhook, announced(run_before(3, at(0))))]);
        let attempts: Vec<AttemptFacts> = (1..=4)
            .map(|h| attempt(webhook, AttemptResult::Failed, h))
            .collect();
        let tallies = tally_attempts(attempts.clone(), &before);
        assert_eq!(notice_events(&tallies[0]), [EventType::WebhookFailing]);
        let notice = &tallies[0].notices[0];
        assert_eq!(
            notice.delivery_id, attempts[1].delivery_id,
            "the 5th failure"
        );
        assert_eq!(notice.consecutive_failures, 5);
        assert!(tallies[0].run.announced);

        let later = HashMap::from([(
            webhook,
            announced(HealthBefore {
                run: tallies[0].run,
                ..HealthBefore::default()
            }),
        )]);
        let more = tally_attempts([attempt(webhook, AttemptResult::Failed, 5)], &later);
        assert!(more[0].notices.is_empty(), "one notice per run");
    }

    #[test]
    fn the_end_of_an_announced_run_is_announced_and_an_unannounced_one_is_not() {
        let webhook = WebhookId::generate();
        let mut run = run_before(2, at(0));
        let quiet = HashMap::from([(webhook, announced(run))]);
        let ok = attempt(webhook, AttemptResult::Succeeded, 1);
        assert!(tally_attempts([ok], &quiet)[0].notices.is_empty());

        run.run.announced = true;
        run.run.consecutive = 7;
        let loud = HashMap::from([(webhook, announced(run))]);
        let tallies = tally_attempts([ok, attempt(webhook, AttemptResult::Succeeded, 2)], &loud);
        assert_eq!(notice_events(&tallies[0]), [EventType::WebhookRecovered]);
        assert_eq!(tallies[0].notices[0].consecutive_failures, 7);
        assert!(!tallies[0].run.announced);
    }

    #[test]
    fn a_disable_is_announced_with_its_reason_and_only_for_announced_kinds() {
        let webhook = WebhookId::generate();
        let gone = AttemptFacts {
            gone: true,
            ..attempt(webhook, AttemptResult::Failed, 1)
        };
        let before = HashMap::from([(webhook, announced(HealthBefore::default()))]);
        let tallies = tally_attempts([gone], &before);
        assert_eq!(notice_events(&tallies[0]), [EventType::WebhookDisabled]);
        assert!(
            tallies[0].notices[0]
                .disabled_reason
                .as_deref()
                .is_some_and(|r| r.contains("410"))
        );

        let silent = tally_attempts([gone], &HashMap::new());
        assert!(silent[0].disable.is_some());
        assert!(
            silent[0].notices.is_empty(),
            "alert endpoints raise no notices"
        );
    }

    #[test]
    fn a_webhook_already_disabled_is_neither_disabled_again_nor_announced() {
        let webhook = WebhookId::generate();
        let before = HashMap::from([(
            webhook,
            HealthBefore {
                disabled: true,
                ..announced(run_before(30, at(0)))
            },
        )]);
        let gone = AttemptFacts {
            gone: true,
            ..attempt(webhook, AttemptResult::Failed, 100)
        };
        let tallies = tally_attempts(
            [gone, attempt(webhook, AttemptResult::Succeeded, 101)],
            &before,
        );
        assert_eq!(
            tallies[0].disable, None,
            "a test event to it does not disable it again"
        );
        assert!(tallies[0].notices.is_empty(), "{:?}", tallies[0].notices);
    }
}
