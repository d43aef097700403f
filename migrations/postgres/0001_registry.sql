-- Projects, prompts, immutable versions, labels and their history.
create table project (
    id uuid primary key,
    name text not null,
    created_at timestamptz not null,
    constraint project_name_key unique (name)
);

create table prompt (
    id uuid primary key,
    project_id uuid not null references project (id),
    name text not null,
    description text not null default '',
    tags jsonb not null default '[]',
    archived_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint prompt_project_id_name_key unique (project_id, name)
);

create index prompt_tags_idx on prompt using gin (tags jsonb_path_ops);

create table prompt_version (
    id uuid primary key,
    prompt_id uuid not null references prompt (id),
    version text not null,
    seq bigint not null,
    prompt_type text not null check (prompt_type in ('text', 'chat')),
    engine text not null,
    template text,
    messages jsonb,
    model_config jsonb not null,
    input_schema jsonb,
    output_schema jsonb,
    message text,
    metadata jsonb not null,
    parent_id uuid references prompt_version (id),
    content_hash text not null,
    created_at timestamptz not null,
    created_by text,
    constraint prompt_version_prompt_id_version_key unique (prompt_id, version),
    constraint prompt_version_prompt_id_seq_key unique (prompt_id, seq)
);

create table label (
    prompt_id uuid not null references prompt (id),
    name text not null,
    version_id uuid not null references prompt_version (id),
    updated_at timestamptz not null,
    updated_by text,
    constraint label_pkey primary key (prompt_id, name)
);

create table label_move (
    id bigint generated always as identity primary key,
    prompt_id uuid not null references prompt (id),
    label text not null,
    from_version_id uuid references prompt_version (id),
    to_version_id uuid references prompt_version (id),
    undoes_move_id bigint references label_move (id),
    at timestamptz not null,
    by text
);

create index label_move_prompt_id_label_idx on label_move (prompt_id, label, id);
create index label_move_undoes_move_id_idx on label_move (undoes_move_id);
