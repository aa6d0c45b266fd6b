-- Tenancy: accounts own projects; API keys belong to one project.
create table accounts (
    id uuid primary key,
    name text not null,
    created_at timestamptz not null
);

create table projects (
    id uuid primary key,
    account_id uuid not null constraint projects_account_fk references accounts (id),
    name text not null,
    created_at timestamptz not null
);
create index projects_account_idx on projects (account_id);

create table api_keys (
    id uuid primary key,
    project_id uuid not null constraint api_keys_project_fk references projects (id),
    key_hash bytea not null constraint api_keys_key_hash_key unique,
    display_prefix text not null,
    scopes text[] not null,
    created_at timestamptz not null,
    revoked_at timestamptz,
    last_used_at timestamptz
);
create index api_keys_project_idx on api_keys (project_id);

-- Written once by the first `serve` on an empty database, so concurrent first starts bootstrap once.
create table bootstrap_marker (
    id integer primary key constraint bootstrap_marker_single_row check (id = 1),
    created_at timestamptz not null
);

-- Webhooks are soft-deleted: is_active = false and deleted_at set; the row stays for the delivery log.
create table webhooks (
    id uuid primary key,
    project_id uuid not null constraint webhooks_project_fk references projects (id),
    url text not null,
    events text[] not null,
    filters jsonb not null default '{}'::jsonb,
    secret text not null,
    is_active boolean not null default true,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    deleted_at timestamptz,
    total_deliveries bigint not null default 0,
    successful_deliveries bigint not null default 0,
    failed_deliveries bigint not null default 0,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    consecutive_failures bigint not null default 0
);
create index webhooks_project_idx on webhooks (project_id, created_at, id);

-- Events keep the exact payload bytes, so every attempt signs and sends the same body.
create table events (
    id uuid primary key,
    project_id uuid not null constraint events_project_fk references projects (id),
    event_type text not null,
    payload text not null,
    idempotency_key text,
    created_at timestamptz not null,
    constraint events_idempotency_key unique (project_id, idempotency_key)
);
create index events_created_idx on events (created_at);

-- The durable delivery queue: one row per (event, webhook); a lease marks a claimed row.
create table deliveries (
    id uuid primary key,
    project_id uuid not null constraint deliveries_project_fk references projects (id),
    webhook_id uuid not null constraint deliveries_webhook_fk references webhooks (id),
    event_id uuid not null constraint deliveries_event_fk references events (id) on delete cascade,
    status text not null constraint deliveries_status_check
        check (status in ('pending', 'succeeded', 'failed', 'cancelled')),
    attempt_count integer not null default 0,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    -- Set per claimed batch; an outcome is recorded only by the holder of the current token.
    lease_token uuid,
    last_response_status integer,
    last_error text,
    created_at timestamptz not null,
    updated_at timestamptz not null
);
create index deliveries_due_idx on deliveries (next_attempt_at) where status = 'pending';
create index deliveries_webhook_idx on deliveries (webhook_id, id desc);
create index deliveries_event_idx on deliveries (event_id);
create index deliveries_finished_idx on deliveries (updated_at) where status <> 'pending';

create table delivery_attempts (
    delivery_id uuid not null constraint delivery_attempts_delivery_fk
        references deliveries (id) on delete cascade,
    attempt_number integer not null,
    started_at timestamptz not null,
    duration_ms integer not null,
    response_status integer,
    response_body text,
    error text,
    constraint delivery_attempts_pkey primary key (delivery_id, attempt_number)
);
