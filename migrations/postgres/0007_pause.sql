-- A tenant can pause a webhook: its deliveries still queue, but none starts until it resumes.
alter table webhooks add column paused_at timestamptz;
-- A test event goes to its webhook even while it is paused, so a fix can be checked first.
alter table deliveries add column ignores_pause boolean not null default false;
