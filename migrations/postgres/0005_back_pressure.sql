-- Receivers that struggle: each webhook's own retry schedule and limits, the hold a throttling
-- receiver put on it, and its adaptive concurrency; each delivery's place in its schedule.
alter table webhooks
    -- A JSON array of seconds; null means the service's schedule.
    add column retry_schedule text,
    -- Deliveries per second across every instance; null means no limit.
    add column rate_limit integer constraint webhooks_rate_limit_range
        check (rate_limit between 1 and 10000),
    -- Attempts in flight; null means the service's endpoint concurrency.
    add column max_concurrency integer constraint webhooks_max_concurrency_range
        check (max_concurrency between 1 and 256),
    -- No attempt starts before this while the receiver throttles.
    add column throttled_until timestamptz,
    -- The backoff of a 429 without Retry-After, doubled while throttling goes on.
    add column throttle_backoff_ms integer,
    -- The in-flight limit as adapted to the receiver; null means the maximum.
    add column effective_concurrency integer,
    -- The next send time free under the rate limit, shared by every instance.
    add column rate_next_at timestamptz;

alter table deliveries
    -- Failed attempts: the position in the retry schedule (throttled ones do not count).
    add column failures integer not null default 0,
    -- When the receiver first throttled this delivery, for giving up after a while.
    add column throttled_since timestamptz;

alter table delivery_attempts
    add column throttled boolean not null default false,
    -- The receiver's Retry-After, as it sent it.
    add column retry_after text;

-- Deliveries already on their way keep their place in the schedule.
update deliveries set failures = attempt_count where status = 'pending';
