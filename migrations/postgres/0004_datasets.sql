-- Datasets: named, append-only collections of items (input variables, an
-- optional reference output, metadata) that evaluations run over.
create table dataset (
    id uuid primary key,
    project_id uuid not null references project (id),
    name text not null,
    description text not null default '',
    item_count bigint not null default 0,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint dataset_project_id_name_key unique (project_id, name)
);

create table dataset_item (
    id uuid primary key,
    dataset_id uuid not null references dataset (id),
    seq bigint not null,
    input jsonb not null,
    expected jsonb,
    metadata jsonb not null,
    created_at timestamptz not null,
    constraint dataset_item_dataset_id_seq_key unique (dataset_id, seq)
);
