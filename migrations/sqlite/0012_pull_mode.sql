-- Pull-mode webhooks: their deliveries are leased to pollers over the API instead of being
-- sent, so a pull webhook has no URL (stored as '') and the worker never claims its deliveries.
alter table webhooks add column mode text not null default 'push' check (mode in ('push', 'pull'));
-- Copied from the webhook when the delivery is queued (a webhook's mode never changes), so the
-- worker's due index leaves pull deliveries out and a poll reads only its webhook's.
alter table deliveries add column pull integer not null default 0;
drop index deliveries_due_idx;
create index deliveries_due_idx on deliveries (next_attempt_at) where status = 'pending' and pull = 0;
create index deliveries_pull_due_idx on deliveries (webhook_id, next_attempt_at)
    where status = 'pending' and pull = 1;
