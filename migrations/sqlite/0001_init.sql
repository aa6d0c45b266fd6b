-- The SQLite dialect of the Postgres schema: ids are 16-byte blobs, times are unix milliseconds,
-- lists are JSON text.
create table accounts (
    id blob primary key,
    name text not null,
    created_at integer not null
);

create table projects (
    id blob primary key,
    account_id blob not null constraint projects_account_fk references accounts (id),
    name text not null,
    created_at integer not null
);
create index projects_account_idx on projects (account_id);

create table api_keys (
    id blob primary key,
    project_id blob not null constraint api_keys_project_fk references projects (id),
    key_hash blob not null constraint api_keys_key_hash_key unique,
    display_prefix text not null,
    scopes text not null,
    created_at integer not null,
    revoked_at integer,
    last_used_at integer
);
create index api_keys_project_idx on api_keys (project_id);

create table bootstrap_marker (
    id integer primary key constraint bootstrap_marker_single_row check (id = 1),
    created_at integer not null
);

create table webhooks (
    id blob primary key,
    project_id blob not null constraint webhooks_project_fk references projects (id),
    url text not null,
    events text not null,
    filters text not null default '{}',
    secret text not null,
    is_active integer not null default 1,
    created_at integer not null,
    updated_at integer not null,
    deleted_at integer,
    total_deliveries integer not null default 0,
    successful_deliveries integer not null default 0,
    failed_deliveries integer not null default 0,
    last_success_at integer,
    last_failure_at integer,
    consecutive_failures integer not null default 0
);
create index webhooks_project_idx on webhooks (project_id, created_at, id);

create table events (
    id blob primary key,
    project_id blob not null constraint events_project_fk references projects (id),
    event_type text not null,
    payload text not null,
    idempotency_key text,
    created_at integer not null,
    constraint events_idempotency_key unique (project_id, idempotency_key)
);
create index events_created_idx on events (created_at);

create table deliveries (
    id blob primary key,
    project_id blob not null constraint deliveries_project_fk references projects (id),
    webhook_id blob not null constraint deliveries_webhook_fk references webhooks (id),
    event_id blob not null constraint deliveries_event_fk references events (id) on delete cascade,
    status text not null constraint deliveries_status_check
        check (status in ('pending', 'succeeded', 'failed', 'cancelled')),
    attempt_count integer not null default 0,
    next_attempt_at integer,
    lease_until integer,
    -- Set per claimed batch; an outcome is recorded only by the holder of the current token.
    lease_token blob,
    last_response_status integer,
    last_error text,
    created_at integer not null,
    updated_at integer not null
);
create index deliveries_due_idx on deliveries (next_attempt_at) where status = 'pending';
create index deliveries_webhook_idx on deliveries (webhook_id, id desc);
create index deliveries_event_idx on deliveries (event_id);
create index deliveries_finished_idx on deliveries (updated_at) where status <> 'pending';

create table delivery_attempts (
    delivery_id blob not null constraint delivery_attempts_delivery_fk
        references deliveries (id) on delete cascade,
    attempt_number integer not null,
    started_at integer not null,
    duration_ms integer not null,
    response_status integer,
    response_body text,
    error text,
    constraint delivery_attempts_pkey primary key (delivery_id, attempt_number)
);
