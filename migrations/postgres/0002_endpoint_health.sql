-- Endpoint health: when the current run of failures began, and why a webhook was disabled.
alter table webhooks add column failing_since timestamptz;
alter table webhooks add column disabled_at timestamptz;
alter table webhooks add column disabled_reason text;
