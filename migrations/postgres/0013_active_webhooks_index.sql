-- A deleted webhook keeps its row (its deliveries and audit entries refer to it), so a project
-- that creates and deletes webhooks over time collects inactive rows. Lists, the create's cap
-- count and every publish's fan-out read only the active ones: this index holds just those.
create index webhooks_active_idx on webhooks (project_id, kind, created_at, id) where is_active;
