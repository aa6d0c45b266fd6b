-- Pull-mode webhooks: their deliveries are leased to pollers over the API instead of being
-- sent, so a pull webhook has no URL (stored as '') and the workers never claim its deliveries.
alter table webhooks add column mode text not null default 'push'
    constraint webhooks_mode_check check (mode in ('push', 'pull'));
alter table webhooks add constraint webhooks_pull_has_no_url check ((mode = 'pull') = (url = ''));
-- Copied from the webhook when the delivery is queued (a webhook's mode never changes), so the
-- workers' due index leaves pull deliveries out and a poll reads only its webhook's.
alter table deliveries add column pull boolean not null default false;
drop index deliveries_due_idx;
create index deliveries_due_idx on deliveries (next_attempt_at) where status = 'pending' and not pull;
create index deliveries_pull_due_idx on deliveries (webhook_id, next_attempt_at)
    where status = 'pending' and pull;
