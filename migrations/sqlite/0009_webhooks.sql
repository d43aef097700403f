-- Webhooks: endpoints, the outbox of events (written in the transaction of
-- the change each reports), one delivery per event and endpoint, and every
-- attempt at a delivery.
create table webhook (
    id blob primary key,
    project_id blob not null references project (id),
    url text not null,
    description text not null,
    events text not null,
    prompts text not null,
    enabled boolean not null,
    disabled_reason text,
    -- The signing secret, sealed with the configured key (never in clear).
    secret_sealed text not null,
    previous_secret_sealed text,
    previous_secret_until text,
    consecutive_failures integer not null default 0,
    created_at text not null,
    updated_at text not null,
    created_by text
);

create index webhook_project_id_idx on webhook (project_id);

create table webhook_event (
    id blob primary key,
    project_id blob not null references project (id),
    type text not null,
    payload text not null,
    created_at text not null
);

create table webhook_delivery (
    id blob primary key,
    webhook_id blob not null references webhook (id) on delete cascade,
    event_id blob not null references webhook_event (id),
    status text not null check (status in ('pending', 'succeeded', 'failed')),
    attempts integer not null default 0,
    next_attempt_at text not null,
    lease_owner text,
    lease_expires_at text,
    created_at text not null,
    updated_at text not null
);

create index webhook_delivery_due_idx on webhook_delivery (status, next_attempt_at);
create index webhook_delivery_webhook_id_idx on webhook_delivery (webhook_id, id);

create table webhook_attempt (
    id integer primary key autoincrement,
    delivery_id blob not null references webhook_delivery (id) on delete cascade,
    attempted_at text not null,
    status_code integer,
    latency_ms integer not null,
    response_excerpt text,
    error text
);

create index webhook_attempt_delivery_id_idx on webhook_attempt (delivery_id, id);
