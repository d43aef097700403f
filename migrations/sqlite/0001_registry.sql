-- Projects, prompts, immutable versions, labels and their history.
create table project (
    id blob primary key,
    name text not null,
    created_at text not null,
    constraint project_name_key unique (name)
);

create table prompt (
    id blob primary key,
    project_id blob not null references project (id),
    name text not null,
    description text not null default '',
    tags text not null default '[]',
    archived_at text,
    created_at text not null,
    updated_at text not null,
    constraint prompt_project_id_name_key unique (project_id, name)
);

create table prompt_version (
    id blob primary key,
    prompt_id blob not null references prompt (id),
    version text not null,
    seq integer not null,
    prompt_type text not null check (prompt_type in ('text', 'chat')),
    engine text not null,
    template text,
    messages text,
    model_config text not null,
    input_schema text,
    output_schema text,
    message text,
    metadata text not null,
    parent_id blob references prompt_version (id),
    content_hash text not null,
    created_at text not null,
    created_by text,
    constraint prompt_version_prompt_id_version_key unique (prompt_id, version),
    constraint prompt_version_prompt_id_seq_key unique (prompt_id, seq)
);

create table label (
    prompt_id blob not null references prompt (id),
    name text not null,
    version_id blob not null references prompt_version (id),
    updated_at text not null,
    updated_by text,
    constraint label_pkey primary key (prompt_id, name)
);

create table label_move (
    id integer primary key autoincrement,
    prompt_id blob not null references prompt (id),
    label text not null,
    from_version_id blob references prompt_version (id),
    to_version_id blob references prompt_version (id),
    undoes_move_id integer references label_move (id),
    at text not null,
    by text
);

create index label_move_prompt_id_label_idx on label_move (prompt_id, label, id);
create index label_move_undoes_move_id_idx on label_move (undoes_move_id);
