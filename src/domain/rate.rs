//! Rate limits as send slots: a webhook limited to N deliveries a second hands out slots 1/N s
//! apart, from the first one still free, so every instance sharing the slot sends in step.

use chrono::{DateTime, TimeDelta, Utc};

/// A rate-limited webhook gives a claim at most this far ahead of now in slots.
pub const RATE_LOOKAHEAD: TimeDelta = TimeDelta::seconds(1);

/// The send slots of `count` deliveries to a webhook limited to `rate` per second, starting at
/// the first free slot (`next_free`, or `now` if that has passed), and the slot free after them.
pub fn rate_slots(
    next_free: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    rate: u32,
    count: usize,
) -> (Vec<DateTime<Utc>>, DateTime<Utc>) {
    let spacing = TimeDelta::microseconds(1_000_000 / i64::from(rate.max(1)));
    let start = next_free.map_or(now, |free| free.max(now));
    let slots: Vec<DateTime<Utc>> = (0..count)
        .map(|n| start + spacing * i32::try_from(n).unwrap_or(i32::MAX))
        .collect();
    let next = start + spacing * i32::try_from(count).unwrap_or(i32::MAX);
    (slots, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn slots_are_spaced_by_the_rate_from_now_when_none_is_pending() {
        let (slots, next) = rate_slots(None, at(0), 4, 3);
        assert_eq!(slots, [at(0), at(250), at(500)]);
        assert_eq!(next, at(750));
    }

    #[test]
    fn a_later_claim_continues_where_the_last_left_off() {
        let (slots, next) = rate_slots(Some(at(750)), at(100), 4, 2);
        assert_eq!(slots, [at(750), at(1_000)]);
        assert_eq!(next, at(1_250));
        let (idle, _) = rate_slots(Some(at(750)), at(5_000), 4, 1);
        assert_eq!(idle, [at(5_000)], "a slot in the past is not saved up");
    }

    #[test]
    fn no_second_holds_more_than_the_rate() {
        let (slots, _) = rate_slots(None, at(0), 20, 200);
        for window in slots.windows(21) {
            assert!(window[20] - window[0] >= TimeDelta::seconds(1));
        }
    }
}
