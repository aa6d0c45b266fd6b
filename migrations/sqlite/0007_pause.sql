-- A tenant can pause a webhook: its deliveries still queue, but none starts until it resumes.
-- Times are milliseconds since the epoch, as everywhere in this schema.
alter table webhooks add column paused_at integer;
-- A test event goes to its webhook even while it is paused, so a fix can be checked first.
alter table deliveries add column ignores_pause integer not null default 0;
