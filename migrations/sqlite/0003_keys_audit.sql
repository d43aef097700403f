-- API keys (stored only as a hash) and the audit log of every write.
create table api_key (
    id blob primary key,
    project_id blob not null references project (id),
    name text not null,
    scopes text not null,
    prefix text not null,
    secret_hash text not null,
    created_at text not null,
    revoked_at text,
    constraint api_key_secret_hash_key unique (secret_hash)
);

create index api_key_prefix_idx on api_key (prefix);

create table audit_log (
    id integer primary key autoincrement,
    project_id blob not null references project (id),
    at text not null,
    key_id blob,
    key_name text not null,
    action text not null,
    target text not null,
    before text,
    after text
);

create index audit_log_project_id_idx on audit_log (project_id, id);
