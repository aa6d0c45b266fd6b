-- What an idempotency key was first used for (a SHA-256 of the event type and data), so the
-- same key with another event is refused instead of answered with the first.
alter table events add column request_hash text;
