-- Alert endpoints are webhooks of another kind: they receive notices about the project's
-- webhooks and are kept out of the DevTune routes.
alter table webhooks add column kind text not null default 'webhook'
    constraint webhooks_kind_check check (kind in ('webhook', 'alert_endpoint'));
-- Whether a notice announced the current failure run: it gets one webhook.failing, and the
-- success that ends it sends webhook.recovered.
alter table webhooks add column failure_announced boolean not null default false;
