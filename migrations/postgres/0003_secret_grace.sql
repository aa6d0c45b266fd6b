-- A rotated-out secret that still signs deliveries (beside the new one) until the grace ends.
alter table webhooks add column previous_secret text;
alter table webhooks add column previous_secret_until timestamptz;
