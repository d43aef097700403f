-- People who sign in to the web UI (a name, an argon2id password hash and a
-- role per project name), and the sessions the UI holds for them or for an
-- API key: the session id and CSRF token are random; only the id's hash is kept.
create table app_user (
    id blob primary key,
    name text not null,
    password_hash text not null,
    roles text not null,
    created_at text not null,
    updated_at text not null,
    constraint app_user_name_key unique (name)
);

create table ui_session (
    id_hash text primary key,
    user_id blob references app_user (id) on delete cascade,
    key_id blob references api_key (id),
    project_id blob not null references project (id),
    csrf_token text not null,
    created_at text not null,
    expires_at text not null,
    constraint ui_session_holder_check check ((user_id is null) <> (key_id is null))
);

create index ui_session_user_id_idx on ui_session (user_id);
create index ui_session_expires_at_idx on ui_session (expires_at);
