-- Who changed what, per project: never a secret, only what changed.
create table audit_log (
    id blob primary key,
    project_id blob not null constraint audit_log_project_fk references projects (id),
    at integer not null,
    actor_type text not null constraint audit_log_actor_type_check
        check (actor_type in ('api_key', 'admin')),
    actor_id text,
    channel text not null constraint audit_log_channel_check
        check (channel in ('api', 'dashboard', 'admin', 'cli')),
    action text not null,
    target_id text not null,
    changes text not null default '{}'
);
create index audit_log_project_idx on audit_log (project_id, id desc);

alter table webhooks add column last_modified_by text;
alter table webhooks add column last_modified_via text;
