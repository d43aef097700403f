-- API keys (stored only as a hash) and the audit log of every write.
create table api_key (
    id uuid primary key,
    project_id uuid not null references project (id),
    name text not null,
    scopes jsonb not null,
    prefix text not null,
    secret_hash text not null,
    created_at timestamptz not null,
    revoked_at timestamptz,
    constraint api_key_secret_hash_key unique (secret_hash)
);

create index api_key_prefix_idx on api_key (prefix);

create table audit_log (
    id bigint generated always as identity primary key,
    project_id uuid not null references project (id),
    at timestamptz not null,
    key_id uuid,
    key_name text not null,
    action text not null,
    target text not null,
    before jsonb,
    after jsonb
);

create index audit_log_project_id_idx on audit_log (project_id, id);
