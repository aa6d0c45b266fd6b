-- Receivers that struggle: each webhook's own retry schedule and limits, the hold a throttling
-- receiver put on it, and its adaptive concurrency; each delivery's place in its schedule.
-- Times are milliseconds since the epoch, as everywhere in this schema.

-- A JSON array of seconds; null means the service's schedule.
alter table webhooks add column retry_schedule text;
-- Deliveries per second; null means no limit.
alter table webhooks add column rate_limit integer
    constraint webhooks_rate_limit_range check (rate_limit between 1 and 10000);
-- Attempts in flight; null means the service's endpoint concurrency.
alter table webhooks add column max_concurrency integer
    constraint webhooks_max_concurrency_range check (max_concurrency between 1 and 256);
-- No attempt starts before this while the receiver throttles.
alter table webhooks add column throttled_until integer;
-- The backoff of a 429 without Retry-After, doubled while throttling goes on.
alter table webhooks add column throttle_backoff_ms integer;
-- The in-flight limit as adapted to the receiver; null means the maximum.
alter table webhooks add column effective_concurrency integer;
-- The next send time free under the rate limit.
alter table webhooks add column rate_next_at integer;

-- Failed attempts: the position in the retry schedule (throttled ones do not count).
alter table deliveries add column failures integer not null default 0;
-- When the receiver first throttled this delivery, for giving up after a while.
alter table deliveries add column throttled_since integer;

alter table delivery_attempts add column throttled integer not null default 0;
-- The receiver's Retry-After, as it sent it.
alter table delivery_attempts add column retry_after text;

-- Deliveries already on their way keep their place in the schedule.
update deliveries set failures = attempt_count where status = 'pending';
